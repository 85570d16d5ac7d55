import { PROFILE_6_18 } from '../ksm/profile.js';
import { pickKsmStats } from '../ksm/stats.js';
import { KernelError, assertNever } from '../lib/errors.js';
import { Host, checkKsmPolicy, describePolicy, type KsmPolicy } from '../vmm/host.js';
import { MAX_DURATION_MS, formatSize } from '../vmm/config.js';
import type { ImageCatalog } from '../vmm/image.js';
import { CaptureSource } from '../vmm/capture-source.js';
import type { PageSource, PageSourceCatalog, PageSourceRef } from '../vmm/page-source.js';
import { loadCapture } from './load.js';
import { DEFAULT_KSMD_COSTS, type KsmdCosts } from '../ksm/cost.js';
import { SnapshotError, restoreHost, saveHost } from '../vmm/snapshot.js';
import type { HostSample } from '../vmm/types.js';
import type { Scenario, ScenarioAction, ScenarioVariant } from './schema.js';
import type { GuestSummary, HostSummary, RunResult } from './types.js';

export interface RunOptions {
  images: ImageCatalog;
  /** Overrides the scenario's seed. */
  seed?: number;
  /** Run only this variant (by name). */
  variant?: string;
  /** Called after every sample with the simulated time reached. */
  onProgress?: (variant: string | null, t: number, durationMs: number) => void;
  /**
   * Called every simulated second between samples, with how many guests are still
   * booting: a big host's boot (guest setup) takes minutes of wall time inside one
   * sample interval, and a progress bar should move meanwhile.
   */
  onStep?: (variant: string | null, t: number, durationMs: number, booting: number) => void;
  /** Run the kernel's deep invariant check after every sample (slow; tests use it). */
  checkInvariants?: boolean;
  /** ns per ksmd operation, for the CPU estimate (default: src/ksm/cost.ts's, measured on the development machine). */
  ksmdCosts?: KsmdCosts;
  /** Stop each run at this simulated time, hand its snapshot to onSave, then go on. */
  saveAt?: number;
  onSave?: (snapshot: Uint8Array, variant: string | null) => void;
}

/** How far onStep's steps go. */
const STEP_MS = 1000;

/** Run every variant of a scenario (or the one asked for); one result each. */
export function runScenario(s: Scenario, opts: RunOptions): RunResult[] {
  const variants = opts.variant === undefined ? s.variants : s.variants.filter((v) => v.name === opts.variant);
  if (variants.length === 0) {
    throw new KernelError('ENOENT', `scenario ${s.name} has no variant ${JSON.stringify(opts.variant)} (variants: ${s.variants.map((v) => v.name ?? '(none)').join(', ')})`);
  }
  return variants.map((v) => {
    const run = ScenarioRun.start(s, v, opts.images, opts.seed ?? s.seed, opts);
    if (opts.saveAt !== undefined) {
      run.runTo(opts.saveAt, opts);
      opts.onSave?.(run.save(), v.name);
    }
    return run.finish(opts);
  });
}

/** A captured guest's page source, its file read again (cached) and checked against the digest taken when the scenario was read. */
export function captureSource(c: { file: string; guest: string; digest: string }): CaptureSource {
  const r = loadCapture(c.file);
  if (r.digest !== c.digest) throw new Error(`capture ${c.file} has changed since the scenario was read (sha256 ${r.digest.slice(0, 12)}…, was ${c.digest.slice(0, 12)}…)`);
  return new CaptureSource(r.capture, c.guest, c.file, c.digest);
}

/** Captured guests' refs resolved again from their files (samepage resume). */
const CAPTURE_CATALOG: PageSourceCatalog = {
  resolve(ref: PageSourceRef): PageSource | string {
    try {
      return captureSource({ file: ref.name, guest: ref.version, digest: ref.digest });
    } catch (e) {
      return (e as Error).message;
    }
  },
};

/**
 * Build the scenario's host, on the given kernel, with its guests defined (none booted
 * yet), each in its merge domain unless `mergeDomains` is false (a variant's
 * merge_domains: off).
 */
export function buildHost(s: Scenario, ksm: KsmPolicy, images: ImageCatalog, seed: number, kernel: string = s.kernel, mergeDomains = true): Host {
  const host = new Host({ memoryMiB: s.memoryMiB, swapMiB: s.swapMiB, blockMiB: s.blockMiB, seed, ksm, images, tickMs: s.tickMs, version: kernel });
  for (const g of s.guests) {
    host.createGuest({
      name: g.name,
      image: g.capture === null ? g.image : captureSource(g.capture),
      ...(g.version === null || g.capture !== null ? {} : { version: g.version }),
      memoryMiB: g.memoryMiB,
      memMerge: g.memMerge,
      ...(mergeDomains && g.mergeDomain !== '' ? { mergeDomain: g.mergeDomain } : {}),
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

/** Where a run stands, as plain data: what a snapshot carries beside the host. */
export interface RunPosition {
  format: 'samepage-run-position';
  scenario: Scenario;
  variant: string | null;
  ksm: KsmPolicy;
  seed: number;
  /** The next timeline entry to apply. */
  eventIndex: number;
  /** When the next periodic sample is due. */
  nextSample: number;
  samples: HostSample[];
  finished: boolean;
}

type RunHooks = Pick<RunOptions, 'onProgress' | 'onStep' | 'checkInvariants' | 'ksmdCosts'>;

/**
 * One run of one variant, step by step. The timeline is a list of points: the
 * events, the periodic samples and the end. step() moves the host to the next point
 * and does what is due there: the events at that time (in order), then the sample.
 * A run can stop anywhere (runTo), be saved with its host (save), and be resumed
 * (resume) to finish exactly as it would have without the stop: the host's time grid
 * makes the split invisible, and the position is all the runner keeps.
 */
export class ScenarioRun {
  readonly host: Host;
  readonly scenario: Scenario;
  readonly variant: string | null;
  readonly ksm: KsmPolicy;
  readonly seed: number;
  readonly samples: HostSample[];
  private readonly events: { at: number; action: ScenarioAction }[];
  private eventIndex: number;
  private nextSample: number;
  private finished: boolean;

  private constructor(host: Host, pos: Omit<RunPosition, 'format'>) {
    this.host = host;
    this.scenario = pos.scenario;
    this.variant = pos.variant;
    this.ksm = pos.ksm;
    this.seed = pos.seed;
    this.samples = pos.samples;
    this.events = timeline(pos.scenario);
    this.eventIndex = pos.eventIndex;
    this.nextSample = pos.nextSample;
    this.finished = pos.finished;
  }

  /** Build the host for one variant (its policy and kernel) and take the first sample, at time 0. */
  static start(s: Scenario, v: ScenarioVariant, images: ImageCatalog, seed: number, hooks: RunHooks = {}): ScenarioRun {
    // The rules resume() applies to a saved position, at the door: a run that starts
    // can be saved and resumed. (A Scenario from loadScenario() always passes.)
    if (v === null || typeof v !== 'object') throw new KernelError('EINVAL', `ScenarioRun.start: expected a variant of the scenario, found ${String(v)}`);
    if (images === null || typeof images !== 'object' || typeof (images as Partial<ImageCatalog>).resolve !== 'function') throw new KernelError('EINVAL', 'ScenarioRun.start: expected an image catalog (loadImageCatalog())');
    if (hooks === null || typeof hooks !== 'object') throw new KernelError('EINVAL', `ScenarioRun.start: expected hooks as a record, found ${String(hooks)}`);
    const problem = checkPosition({ format: 'samepage-run-position', scenario: s, variant: v.name, ksm: v.ksm, seed, eventIndex: 0, nextSample: 0, samples: [], finished: false });
    if (problem !== null) throw new KernelError('EINVAL', `ScenarioRun.start: ${problem}`);
    const run = new ScenarioRun(buildHost(s, v.ksm, images, seed, v.kernel, v.mergeDomains), { scenario: s, variant: v.name, ksm: v.ksm, seed, eventIndex: 0, nextSample: s.sampleEveryMs, samples: [], finished: false });
    run.take(hooks);
    return run;
  }

  /**
   * Resume a run saved with save(), with the image catalog the run used (its guests'
   * page sources are resolved in it); throws SnapshotError for a file that cannot be used.
   */
  static resume(bytes: Uint8Array, images: ImageCatalog | null): ScenarioRun {
    const { host, extra } = restoreHost(bytes, images, CAPTURE_CATALOG);
    const problem = checkPosition(extra) ?? checkSamples((extra as RunPosition).samples, host.sample());
    if (problem !== null) throw new SnapshotError('invalid', `snapshot run position: ${problem}`);
    const pos = extra as RunPosition;
    return new ScenarioRun(host, pos);
  }

  /** The host and where the run stands, in one snapshot file's bytes. */
  save(): Uint8Array {
    const pos: RunPosition = {
      format: 'samepage-run-position',
      scenario: this.scenario,
      variant: this.variant,
      ksm: this.ksm,
      seed: this.seed,
      eventIndex: this.eventIndex,
      nextSample: this.nextSample,
      samples: this.samples,
      finished: this.finished,
    };
    return saveHost(this.host, pos);
  }

  get isFinished(): boolean {
    return this.finished;
  }

  private take(hooks: RunHooks): void {
    if (hooks.checkInvariants === true) this.host.checkInvariants();
    const prev = this.samples.length === 0 ? null : this.samples[this.samples.length - 1]!;
    this.samples.push(this.host.sample(prev, hooks.ksmdCosts ?? DEFAULT_KSMD_COSTS));
    hooks.onProgress?.(this.variant, this.host.now, this.scenario.durationMs);
  }

  private nextPoint(): number {
    const nextEvent = this.eventIndex < this.events.length ? this.events[this.eventIndex]!.at : Infinity;
    return Math.min(nextEvent, this.nextSample, this.scenario.durationMs);
  }

  /** Go to the next point of the timeline and do what is due there. */
  private step(hooks: RunHooks): void {
    const s = this.scenario;
    const next = this.nextPoint();
    if (hooks.onStep === undefined) this.host.advance(next - this.host.now);
    else {
      // A simulated second at a time, telling onStep after each. Host.advance() may be
      // split anywhere (a run saved mid-interval resumes identically), so this changes
      // nothing the run does.
      while (this.host.now < next) {
        this.host.advance(Math.min(next, this.host.now + STEP_MS) - this.host.now);
        if (this.host.now < next) {
          let booting = 0;
          for (const g of this.host.guests) if (g.state === 'booting') booting++;
          hooks.onStep(this.variant, this.host.now, s.durationMs, booting);
        }
      }
    }
    while (this.eventIndex < this.events.length && this.events[this.eventIndex]!.at === next) apply(this.host, this.events[this.eventIndex++]!.action);
    if (next === s.durationMs) {
      this.take(hooks);
      this.finished = true;
    } else if (next === this.nextSample) {
      this.take(hooks);
      this.nextSample += s.sampleEveryMs;
    }
  }

  /**
   * Run every point before simulated time `t`, then bring the host to `t`. What is
   * due exactly at `t` is left for the next call (or for finish()).
   */
  runTo(t: number, hooks: RunHooks = {}): void {
    if (!Number.isFinite(t) || t < this.host.now || t > this.scenario.durationMs) {
      throw new KernelError('EINVAL', `a run can stop between its current time (${this.host.now} ms) and its end (${this.scenario.durationMs} ms), not at ${t}`);
    }
    while (!this.finished && this.nextPoint() < t) this.step(hooks);
    if (!this.finished && this.host.now < t) this.host.advance(t - this.host.now);
  }

  /** Run to the end and summarize. */
  finish(hooks: RunHooks = {}): RunResult {
    while (!this.finished) this.step(hooks);
    return summarize(this.scenario, this.variant, this.ksm, this.seed, this.host, this.samples);
  }
}

/** The action kinds a scenario can hold (ScenarioAction). */
const ACTION_KINDS: readonly ScenarioAction['kind'][] = ['start', 'stop', 'pause', 'resume', 'destroy', 'burst', 'workload', 'pressure', 'release_pressure', 'reclaim', 'compact', 'migrate', 'offline', 'online', 'knobs', 'ksm'];

const isRec = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v);

/**
 * Where a saved run position is not one save() writes, or one that could not finish:
 * a message, or null. The actions' own fields are checked when they are carried out,
 * by the host's validators (a bad one is a failed event, as a bad command is); here,
 * what the runner itself relies on: every list holds records, every action has a
 * known kind, the times are bounded and samples come at all (sampleEveryMs > 0).
 */
function checkPosition(x: unknown): string | null {
  if (x === null || typeof x !== 'object') return 'missing (a host snapshot, not a scenario run)';
  const p = x as Record<string, unknown>;
  if (p.format !== 'samepage-run-position') return `format ${JSON.stringify(p.format)}, expected "samepage-run-position"`;
  if (!isRec(p.scenario)) return 'no scenario';
  const sc = p.scenario;
  for (const k of ['durationMs', 'sampleEveryMs', 'tickMs', 'seed']) if (!Number.isSafeInteger(sc[k])) return `scenario.${k}: expected a whole number`;
  if ((sc.durationMs as number) < 0 || (sc.durationMs as number) > MAX_DURATION_MS) return `scenario.durationMs: expected 0 to ${MAX_DURATION_MS} (100 days), found ${sc.durationMs as number}`;
  if ((sc.sampleEveryMs as number) <= 0) return `scenario.sampleEveryMs: expected more than 0 ms, found ${sc.sampleEveryMs as number}`;
  if ((sc.tickMs as number) <= 0) return `scenario.tickMs: expected more than 0 ms, found ${sc.tickMs as number}`;
  if (typeof sc.name !== 'string') return 'scenario.name: expected a string';
  if (!Array.isArray(sc.guests) || !Array.isArray(sc.events) || !Array.isArray(sc.variants)) return 'scenario: guests, events and variants must be lists';
  for (const [i, g] of sc.guests.entries()) {
    if (!isRec(g) || typeof g.name !== 'string') return `scenario.guests[${i}]: expected a guest with a name`;
    if (g.startAt !== null && !(Number.isFinite(g.startAt) && (g.startAt as number) >= 0)) return `scenario.guests[${i}].startAt: expected a time ≥ 0 or null`;
  }
  for (const [i, v] of sc.variants.entries()) if (!isRec(v) || (v.name !== null && typeof v.name !== 'string')) return `scenario.variants[${i}]: expected a variant with a name or null`;
  for (const [i, e] of sc.events.entries()) {
    if (!isRec(e) || !Number.isFinite(e.at) || (e.at as number) < 0) return `scenario.events[${i}]: expected an event with a time (at) ≥ 0`;
    if (!isRec(e.action) || !(ACTION_KINDS as readonly unknown[]).includes(e.action.kind)) return `scenario.events[${i}].action: expected an action of a known kind (${ACTION_KINDS.join(', ')})`;
  }
  // eventIndex counts the timeline: the guests' starts, then the events.
  const timelineLength = sc.events.length + sc.guests.filter((g) => (g as Record<string, unknown>).startAt !== null).length;
  if (!Number.isSafeInteger(p.eventIndex) || (p.eventIndex as number) < 0 || (p.eventIndex as number) > timelineLength) return `eventIndex: expected 0 to ${timelineLength}`;
  if (!Number.isSafeInteger(p.nextSample) || (p.nextSample as number) < 0) return 'nextSample: expected a whole number ≥ 0';
  if (!Array.isArray(p.samples)) return 'samples: expected a list';
  if (typeof p.finished !== 'boolean') return 'finished: expected true or false';
  if (!Number.isSafeInteger(p.seed)) return 'seed: expected a whole number';
  if (p.variant !== null && typeof p.variant !== 'string') return 'variant: expected a name or null';
  // The rules Host.setPolicy() applies (the run applies this policy, and reports it).
  for (const [where, policy] of [['ksm', p.ksm] as const, ...sc.variants.map((v, i) => [`scenario.variants[${i}].ksm`, (v as Record<string, unknown>).ksm] as const)]) {
    try {
      checkKsmPolicy(where, policy);
    } catch (e) {
      if (e instanceof KernelError) return e.message.replace(/^[A-Z0-9]+: /, '');
      throw e;
    }
  }
  return null;
}

/**
 * Each saved sample has the shape of `template` (a sample the restored host takes
 * now): the same fields, numbers where it has numbers, strings where it has strings,
 * its guests records shaped as its guests are. What summarize() reads is then there.
 */
function checkSamples(samples: unknown[], template: HostSample): string | null {
  const guestTemplate = template.guests[0] ?? null;
  for (const [i, x] of samples.entries()) {
    if (!isRec(x)) return `samples[${i}]: expected a sample record`;
    const problem = shapeProblem(template, x, `samples[${i}]`, ['guests']);
    if (problem !== null) return problem;
    if (!Array.isArray(x.guests)) return `samples[${i}].guests: expected a list`;
    for (const [j, g] of x.guests.entries()) {
      if (!isRec(g)) return `samples[${i}].guests[${j}]: expected a guest sample`;
      if (guestTemplate !== null) {
        const gp = shapeProblem(guestTemplate, g, `samples[${i}].guests[${j}]`, []);
        if (gp !== null) return gp;
      }
    }
  }
  return null;
}

function shapeProblem(template: object, x: Record<string, unknown>, path: string, skip: readonly string[]): string | null {
  for (const [k, t] of Object.entries(template)) {
    if (skip.includes(k)) continue;
    const v = x[k];
    // A figure the host reports is never negative, so neither is a saved one.
    if (typeof t === 'number' ? typeof v !== 'number' || Number.isNaN(v) || (t >= 0 && v < 0) : typeof t === 'string' ? typeof v !== 'string' : typeof t === 'boolean' ? typeof v !== 'boolean' : t === null ? false : isRec(t) ? !isRec(v) : false) {
      return `${path}.${k}: expected a ${t === null ? 'value' : typeof t}, found ${v === null ? 'null' : typeof v}`;
    }
    if (isRec(t) && isRec(v)) {
      const p = shapeProblem(t, v, `${path}.${k}`, []);
      if (p !== null) return p;
    }
  }
  return null;
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
        logged(host, a, () => host.guest(a.guest).pause());
        break;
      case 'resume':
        logged(host, a, () => host.guest(a.guest).resume());
        break;
      case 'burst':
        logged(host, a, () => host.guest(a.guest).burst(a.pages, a.overMs));
        break;
      case 'workload':
        logged(host, a, () => {
          const g = host.guest(a.guest);
          g.setWorkload({
            dirtyRate: a.dirtyRate === undefined ? g.workload.dirtyRate : a.dirtyRate,
            burst: a.burst === undefined ? g.workload.burst : a.burst,
          });
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
        logged(host, a, () => host.setKnobs(knobs));
        break;
      }
      case 'ksm':
        logged(host, a, () => host.setPolicy(a.policy));
        break;
      default:
        assertNever(a, 'scenario action');
    }
  } catch (e) {
    // Only a caller's mistake (KernelError) lets the run go on. The host logs most
    // failures where they happen, but one found before it got that far (a guest that
    // no longer exists, a pressure size it refuses, a stopped guest to migrate) would
    // otherwise vanish from the log: a failed action must always show in the report.
    if (!(e instanceof KernelError)) throw e;
    if (!host.log.slice(before).some((x) => x.error !== null)) host.log.push({ t: host.now, kind: 'action', guest: actionGuest(a), what: describeAction(a), error: e.message });
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
      const knobs: [string, number | string | undefined][] = [
        ['run', a.run],
        ['pages_to_scan', a.pagesToScan],
        ['sleep_millisecs', a.sleepMillisecs],
        ['max_kernel_pages', a.maxKernelPages],
      ];
      // Then a later kernel's knobs, in its profile's order.
      for (const spec of PROFILE_6_18.knobs) {
        const v = a[spec.field];
        if (v === undefined || ['run', 'pagesToScan', 'sleepMillisecs'].includes(spec.field)) continue;
        knobs.push([spec.file, spec.choices === null ? v : (spec.choices[v] ?? v)]);
      }
      return `knobs ${knobs.filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`).join(' ')}`;
    }
    case 'ksm':
      return `ksm policy ${describePolicy(a.policy)}`;
    default:
      return assertNever(a, 'scenario action');
  }
}


/** The guest an action names, or null. */
function actionGuest(a: ScenarioAction): string | null {
  return 'guest' in a ? a.guest : null;
}

function logged(host: Host, a: ScenarioAction, fn: () => void): void {
  const what = describeAction(a);
  const guest = actionGuest(a);
  try {
    fn();
  } catch (e) {
    host.log.push({ t: host.now, kind: 'action', guest, what, error: e instanceof Error ? e.message : String(e) });
    throw e;
  }
  host.log.push({ t: host.now, kind: 'action', guest, what, error: null });
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
  let minFree = samples[0]!;
  for (const x of samples) if (x.freeBytes < minFree.freeBytes) minFree = x;
  let cpuPeak = samples[0]!;
  for (const x of samples) if (x.ksmdCpu > cpuPeak.ksmdCpu) cpuPeak = x;
  const saved90 = last.savedBytes > 0 ? samples.find((x) => x.savedBytes >= 0.9 * last.savedBytes)! : null;
  const span = last.t - samples[0]!.t;
  const hostSummary: HostSummary = {
    ramBytes: s.memoryMiB * 1024 * 1024,
    swapBytes: s.swapMiB * 1024 * 1024,
    guestRamBytes: host.guests.reduce((a, g) => a + g.ramBytes, 0),
    freeBytes: last.freeBytes,
    swapUsedBytes: last.swapUsedBytes,
    savedBytes: last.savedBytes,
    peakSavedBytes: peak.savedBytes,
    peakSavedAt: peak.t,
    saved90At: saved90 === null ? null : saved90.t,
    minFreeBytes: minFree.freeBytes,
    minFreeAt: minFree.t,
    ...pickKsmStats(last),
    work: last.work,
    ksmdCpuMs: last.ksmdCpuMs - samples[0]!.ksmdCpuMs,
    ksmdCpuAvg: span > 0 ? (last.ksmdCpuMs - samples[0]!.ksmdCpuMs) / span : 0,
    ksmdCpuPeak: cpuPeak.ksmdCpu,
    ksmdCpuPeakAt: cpuPeak.t,
  };
  return {
    scenario: s.name,
    variant,
    policy: describePolicy(ksm),
    kernel: host.kernel.version,
    seed,
    durationMs: s.durationMs,
    samples,
    events: host.log.map((e) => ({ t: e.t, kind: e.kind, guest: e.guest, what: e.what, error: e.error })),
    guests,
    host: hostSummary,
  };
}
