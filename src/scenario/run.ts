import { KernelError } from '../lib/errors.js';
import { Host, describePolicy, type KsmPolicy } from '../vmm/host.js';
import { formatSize } from '../vmm/config.js';
import type { ImageCatalog } from '../vmm/image.js';
import type { HostSample } from '../vmm/types.js';
import type { Scenario, ScenarioAction } from './schema.js';
import type { GuestSummary, HostSummary, RunResult } from './types.js';

export interface RunOptions {
  images: ImageCatalog;
  /** Overrides the scenario's seed. */
  seed?: number;
  /** Run only this variant (by name). */
  variant?: string;
  /** Called after every sample with the simulated time reached. */
  onProgress?: (variant: string | null, t: number, durationMs: number) => void;
  /** Run the kernel's deep invariant check after every sample (slow; tests use it). */
  checkInvariants?: boolean;
}

/** Run every variant of a scenario (or the one asked for); one result each. */
export function runScenario(s: Scenario, opts: RunOptions): RunResult[] {
  const variants = opts.variant === undefined ? s.variants : s.variants.filter((v) => v.name === opts.variant);
  if (variants.length === 0) {
    throw new KernelError('ENOENT', `scenario ${s.name} has no variant ${JSON.stringify(opts.variant)} (variants: ${s.variants.map((v) => v.name ?? '(none)').join(', ')})`);
  }
  return variants.map((v) => runVariant(s, v.name, v.ksm, opts));
}

/** Build the scenario's host with its guests defined (none booted yet). */
export function buildHost(s: Scenario, ksm: KsmPolicy, images: ImageCatalog, seed: number): Host {
  const host = new Host({ memoryMiB: s.memoryMiB, swapMiB: s.swapMiB, blockMiB: s.blockMiB, seed, ksm, images, tickMs: s.tickMs });
  for (const g of s.guests) {
    host.createGuest({
      name: g.name,
      image: g.image,
      ...(g.version === null ? {} : { version: g.version }),
      memoryMiB: g.memoryMiB,
      memMerge: g.memMerge,
      workload: g.workload,
    });
  }
  return host;
}

/** The timeline: guest starts from the guest list, then the events, by time (ties: starts first, then file order). */
function timeline(s: Scenario): { at: number; action: ScenarioAction }[] {
  const starts = s.guests.filter((g) => g.startAt !== null).map((g) => ({ at: g.startAt!, action: { kind: 'start', guest: g.name } as ScenarioAction }));
  const all = [...starts, ...s.events];
  return all.map((e, i) => ({ e, i })).sort((a, b) => a.e.at - b.e.at || a.i - b.i).map((x) => x.e);
}

function runVariant(s: Scenario, variant: string | null, ksm: KsmPolicy, opts: RunOptions): RunResult {
  const seed = opts.seed ?? s.seed;
  const host = buildHost(s, ksm, opts.images, seed);
  const events = timeline(s);
  const samples: HostSample[] = [];
  const take = (): void => {
    if (opts.checkInvariants === true) host.checkInvariants();
    samples.push(host.sample());
    opts.onProgress?.(variant, host.now, s.durationMs);
  };
  take();
  let ei = 0;
  let nextSample = s.sampleEveryMs;
  for (;;) {
    const nextEvent = ei < events.length ? events[ei]!.at : Infinity;
    const next = Math.min(nextEvent, nextSample, s.durationMs);
    host.advance(next - host.now);
    while (ei < events.length && events[ei]!.at === next) apply(host, events[ei++]!.action);
    if (next === s.durationMs) break;
    if (next === nextSample) {
      take();
      nextSample += s.sampleEveryMs;
    }
  }
  take();
  return summarize(s, variant, ksm, seed, host, samples);
}

/**
 * Carry out one event. A KernelError (a guest that cannot be paused, a block that
 * will not go offline) is logged as a failed event and the run goes on, as an
 * operator's failed command would.
 */
function apply(host: Host, a: ScenarioAction): void {
  const before = host.log.length;
  try {
    switch (a.kind) {
      case 'start':
        host.startGuest(a.guest);
        break;
      case 'stop':
        host.stopGuest(a.guest);
        break;
      case 'destroy':
        host.destroyGuest(a.guest);
        break;
      case 'pause':
        logged(host, describeAction(a), () => host.guest(a.guest).pause());
        break;
      case 'resume':
        logged(host, describeAction(a), () => host.guest(a.guest).resume());
        break;
      case 'burst':
        logged(host, describeAction(a), () => host.guest(a.guest).burst(a.pages, a.overMs));
        break;
      case 'workload':
        logged(host, describeAction(a), () => {
          const g = host.guest(a.guest);
          g.workload = {
            dirtyRate: a.dirtyRate === undefined ? g.workload.dirtyRate : a.dirtyRate,
            burst: a.burst === undefined ? g.workload.burst : a.burst,
          };
        });
        break;
      case 'pressure':
        host.pressure(a.bytes);
        break;
      case 'release_pressure':
        host.releasePressure();
        break;
      case 'reclaim':
        host.reclaim(a.pages);
        break;
      case 'compact':
        host.compact();
        break;
      case 'migrate':
        host.migrateGuestPages(a.guest, a.pages);
        break;
      case 'offline':
        host.offlineBlock(a.block);
        break;
      case 'online':
        host.onlineBlock(a.block);
        break;
      case 'knobs': {
        const { kind: _kind, ...knobs } = a;
        logged(host, describeAction(a), () => host.setKnobs(knobs));
        break;
      }
      case 'ksm':
        logged(host, describeAction(a), () => host.setPolicy(a.policy));
        break;
      default:
        assertNeverAction(a);
    }
  } catch (e) {
    // Only a caller's mistake (KernelError) lets the run go on. The host logs most
    // failures where they happen, but one found before it got that far (a guest that
    // no longer exists, a pressure size it refuses, a stopped guest to migrate) would
    // otherwise vanish from the log: a failed action must always show in the report.
    if (!(e instanceof KernelError)) throw e;
    if (!host.log.slice(before).some((x) => x.error !== null)) host.log.push({ t: host.now, what: describeAction(a), error: e.message });
  }
}

/** How the log names an action (the host's own entries use the same words). */
function describeAction(a: ScenarioAction): string {
  switch (a.kind) {
    case 'start':
    case 'stop':
    case 'pause':
    case 'resume':
    case 'destroy':
      return `${a.kind} ${a.guest}`;
    case 'burst':
      return `burst ${a.guest}: ${a.pages} pages over ${a.overMs / 1000}s`;
    case 'workload':
      return `workload ${a.guest}`;
    case 'pressure':
      return `pressure ${formatSize(a.bytes)}`;
    case 'release_pressure':
      return 'release pressure';
    case 'reclaim':
      return `reclaim ${a.pages} pages`;
    case 'compact':
      return 'compact memory';
    case 'migrate':
      return `migrate ${a.guest}: ${a.pages} pages`;
    case 'offline':
    case 'online':
      return `${a.kind} memory${a.block}`;
    case 'knobs': {
      // Named as the scenario and /sys/kernel/mm/ksm name them, not by the fields here.
      const knobs: [string, number | undefined][] = [
        ['run', a.run],
        ['pages_to_scan', a.pagesToScan],
        ['sleep_millisecs', a.sleepMillisecs],
        ['max_kernel_pages', a.maxKernelPages],
      ];
      return `knobs ${knobs.filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`).join(' ')}`;
    }
    case 'ksm':
      return `ksm policy ${describePolicy(a.policy)}`;
    default:
      return assertNeverAction(a);
  }
}

function assertNeverAction(a: never): never {
  throw new Error(`unknown scenario action ${JSON.stringify(a)}`);
}

function logged(host: Host, what: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    host.log.push({ t: host.now, what, error: e instanceof Error ? e.message : String(e) });
    throw e;
  }
  host.log.push({ t: host.now, what, error: null });
}

function summarize(s: Scenario, variant: string | null, ksm: KsmPolicy, seed: number, host: Host, samples: HostSample[]): RunResult {
  const last = samples[samples.length - 1]!;
  const guests: GuestSummary[] = host.guests.map((g) => {
    const gs = last.guests.find((x) => x.name === g.name)!;
    return {
      name: g.name,
      image: g.imageName,
      state: g.state,
      memMerge: g.memMerge,
      ramBytes: g.ramBytes,
      residentBytes: gs.residentBytes,
      mergedBytes: gs.mergedBytes,
      savedBytes: gs.savedBytes,
      swapBytes: gs.swapBytes,
    };
  });
  let peak = samples[0]!;
  for (const x of samples) if (x.savedBytes > peak.savedBytes) peak = x;
  const hostSummary: HostSummary = {
    ramBytes: s.memoryMiB * 1024 * 1024,
    swapBytes: s.swapMiB * 1024 * 1024,
    guestRamBytes: host.guests.reduce((a, g) => a + g.ramBytes, 0),
    freeBytes: last.freeBytes,
    swapUsedBytes: last.swapUsedBytes,
    savedBytes: last.savedBytes,
    peakSavedBytes: peak.savedBytes,
    peakSavedAt: peak.t,
    pagesShared: last.pagesShared,
    pagesSharing: last.pagesSharing,
    pagesUnshared: last.pagesUnshared,
    pagesVolatile: last.pagesVolatile,
    fullScans: last.fullScans,
    pagesScanned: last.pagesScanned,
  };
  return {
    scenario: s.name,
    variant,
    policy: describePolicy(ksm),
    seed,
    durationMs: s.durationMs,
    samples,
    events: host.log.map((e) => ({ t: e.t, what: e.what, error: e.error })),
    guests,
    host: hostSummary,
  };
}
