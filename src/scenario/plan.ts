import { parse as parseYaml } from 'yaml';
import { DEFAULT_KSMD_COSTS, type KsmdCosts } from '../ksm/cost.js';
import { kernelProfile } from '../ksm/profile.js';
import { KernelError } from '../lib/errors.js';
import { ConfigError, formatDuration, formatSize, parseDuration } from '../vmm/config.js';
import type { ImageCatalog } from '../vmm/image.js';
import { runScenario } from './run.js';
import { parseScenario, type ParseScenarioOptions, type Scenario } from './schema.js';
import type { RunResult } from './types.js';

/*
 * `samepage plan`: the largest number of copies of one guest template that fit on a
 * scenario's host, found by a search over counts in which each trial is a whole,
 * deterministic run of the scenario with that count.
 *
 * "Fit" (judgeTrial): no OOM kill (of a guest or of a host process), no guest refused
 * at start, swap in use at most `maxSwapBytes` and free memory at least `minFreeBytes`
 * at every sample. Fit is taken to be monotone in the count (one more guest never
 * makes the others fit better): the search's answer N is a count that fits with N + 1
 * that does not, both run; where fit is not monotone (an OOM kill of a pressure
 * process that a bigger fleet would have spared, say) the answer is still such a
 * pair, not necessarily the largest count that fits.
 *
 * A trial's scenario (scenarioForCount): the template is the `guests:` entry named
 * NAME, with or without `count`.
 *  - With count: the count becomes N, and copies are named NAME-1..NAME-N as before.
 *    With a stagger, copy i starts at start + (i − 1) × stagger; when the last copy
 *    would start later than the original last one, the run is made longer by as much,
 *    so that every trial runs as long after its last start as the scenario did (a copy
 *    started just before the end would "fit" without having booted).
 *  - Without count: N = 1 is the scenario itself; more copies are added beside it,
 *    named NAME-2..NAME-N, starting with it, so that events naming NAME still apply.
 *  Events that name a copy the trial does not have (web-9 with N = 8) are left out.
 * The trial runs one policy: the scenario's (or the variant asked for), a swept value
 * of a knob, or ksmd off (run 0) for the answer without KSM.
 *
 * No I/O and no threads here: the command (src/cli/plan.ts) runs trials on a worker
 * pool; tests run them in place.
 */

/** What "fits" means: limits the user can set (`samepage plan --max-swap, --min-free`). */
export interface PlanLimits {
  /** Swap in use, at most, at every sample (bytes). */
  maxSwapBytes: number;
  /** Free memory, at least, at every sample (bytes). */
  minFreeBytes: number;
}

/** The defaults: nothing pushed to swap, 5% of the host's RAM left free. */
export const DEFAULT_MAX_SWAP_BYTES = 0;
export const DEFAULT_MIN_FREE_SHARE = 0.05;

/** How one trial went: enough to say whether it fits, why not, and what it cost. */
export interface TrialOutcome {
  count: number;
  fits: boolean;
  /** Each limit broken, in words: "OOM kill: web-3 at 1min 12s", "swap used 12 MiB at 1min 40s (limit 0 B)". */
  violations: string[];
  oomKills: { t: number; guest: string | null; what: string }[];
  refused: { t: number; guest: string; error: string }[];
  peakSwapBytes: number;
  peakSwapAt: number;
  minFreeBytes: number;
  minFreeAt: number;
  savedBytes: number;
  peakSavedBytes: number;
  peakSavedAt: number;
  saved90At: number | null;
  ksmdCpuAvg: number;
  ksmdCpuPeak: number;
  ksmdCpuPeakAt: number;
  ksmdCpuMs: number;
  durationMs: number;
  /** Wall time of the trial's run, ms (the only figure that is not deterministic). */
  wallMs: number;
}

/** One search's settings: which policy, and what the trial scenarios are made from. */
export interface TrialSpec {
  /** The raw scenario document (YAML parsed to plain data). */
  doc: Record<string, unknown>;
  file: string;
  template: string;
  /** ksm: block to use instead of the document's (a variant's, a swept knob's, ksmd off), or null. */
  ksm: Record<string, unknown> | null;
  /** host.kernel to use (a swept kernel), or null for the document's. */
  kernel: string | null;
}

/** A guest template as the document has it. */
interface RawGuest {
  name: string;
  count?: number;
  stagger?: unknown;
  start?: unknown;
  [k: string]: unknown;
}

/** The scenario document as plain data, for planning. Throws ConfigError for a file that is not a YAML mapping. */
export function planDocument(text: string, file: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(text, { maxAliasCount: 100 }) as unknown;
  } catch (e) {
    throw new ConfigError(file, [{ line: 0, field: '', message: `not YAML: ${(e as Error).message}` }]);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(file, [{ line: 0, field: '', message: 'expected a scenario (a mapping of name, host, guests...)' }]);
  return doc as Record<string, unknown>;
}

/** The template entry named `name`, or a message naming those there are. */
export function findTemplate(doc: Record<string, unknown>, name: string): RawGuest | string {
  const guests = Array.isArray(doc.guests) ? (doc.guests as unknown[]) : [];
  const named = guests.filter((g): g is RawGuest => g !== null && typeof g === 'object' && typeof (g as RawGuest).name === 'string');
  const t = named.find((g) => g.name === name);
  if (t === undefined) return `the scenario has no guests: entry named ${JSON.stringify(name)} (entries: ${named.map((g) => g.name).join(', ') || 'none'})`;
  if (t.start === 'never') return `guests: entry ${name} starts never (only an event starts it): plan needs a template that starts`;
  return t;
}

/** The guest an event names (start/stop/… take a name; burst, workload and migrate a { guest }), or null. */
function eventGuest(e: unknown): string | null {
  if (e === null || typeof e !== 'object') return null;
  const r = e as Record<string, unknown>;
  for (const k of ['start', 'stop', 'pause', 'resume', 'destroy']) if (typeof r[k] === 'string') return r[k] as string;
  for (const k of ['burst', 'workload', 'migrate']) {
    const v = r[k];
    if (v !== null && typeof v === 'object' && typeof (v as Record<string, unknown>).guest === 'string') return (v as Record<string, string>).guest!;
  }
  return null;
}

/**
 * The raw document for a trial of `n` copies (see the module comment). Pure: `spec.doc`
 * is not changed. The result still has to pass parseScenario.
 */
export function trialDocument(spec: TrialSpec, n: number, durationMs: number): Record<string, unknown> {
  const doc = structuredClone(spec.doc);
  const guests = doc.guests as RawGuest[];
  const i = guests.findIndex((g) => g !== null && typeof g === 'object' && g.name === spec.template);
  const t = guests[i]!;
  const names = new Set<string>();
  let extraMs = 0;
  if (t.count !== undefined) {
    const original = t.count;
    t.count = n;
    for (let k = 1; k <= n; k++) names.add(`${t.name}-${k}`);
    const gone = new Set<string>();
    for (let k = n + 1; k <= original; k++) gone.add(`${t.name}-${k}`);
    if (Array.isArray(doc.events)) doc.events = (doc.events as unknown[]).filter((e) => !gone.has(eventGuest(e) ?? ''));
    if (n > original && t.stagger !== undefined) extraMs = (n - original) * staggerMs(t.stagger);
  } else {
    const copies: RawGuest[] = [];
    for (let k = 2; k <= n; k++) copies.push({ ...structuredClone(t), name: `${t.name}-${k}` });
    guests.splice(i + 1, 0, ...copies);
  }
  if (spec.ksm !== null) {
    doc.ksm = spec.ksm;
    delete doc.variants;
  }
  if (spec.kernel !== null) {
    const host = (doc.host !== null && typeof doc.host === 'object' ? doc.host : {}) as Record<string, unknown>;
    doc.host = { ...host, kernel: spec.kernel };
  }
  if (extraMs > 0) doc.duration = `${durationMs + extraMs}ms`;
  return doc;
}

/** A stagger as the document writes it ("10s", "1min 30s"); 0 for what the schema will refuse anyway. */
function staggerMs(v: unknown): number {
  return typeof v === 'string' ? (parseDuration(v) ?? 0) : 0;
}

/** The parsed scenario of a trial of `n` copies. Throws ConfigError naming the count when the trial's scenario does not validate. */
export function trialScenario(spec: TrialSpec, n: number, durationMs: number, images: ImageCatalog, opts: ParseScenarioOptions = {}): Scenario {
  const doc = trialDocument(spec, n, durationMs);
  try {
    return parseScenario(JSON.stringify(doc), spec.file, images, opts);
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`${spec.file} with ${n} × ${spec.template}`, e.problems.map((p) => ({ ...p, line: 0 })));
    throw e;
  }
}

/** Whether a run fits the limits, and its figures. `wallMs` is the caller's measurement. */
export function judgeTrial(count: number, r: RunResult, limits: PlanLimits, wallMs: number): TrialOutcome {
  const violations: string[] = [];
  const oomKills = r.events.filter((e) => e.kind === 'oom-kill').map((e) => ({ t: e.t, guest: e.guest, what: e.what }));
  const refused = r.events.filter((e) => e.kind === 'refused').map((e) => ({ t: e.t, guest: e.guest ?? '?', error: e.error ?? '' }));
  for (const k of oomKills) violations.push(`OOM kill: ${k.guest ?? /killed (\S+)/.exec(k.what)?.[1] ?? 'a host process'} at ${formatDuration(k.t)}`);
  for (const x of refused) violations.push(`refused at start: ${x.guest} at ${formatDuration(x.t)} (${x.error})`);
  let peakSwap = r.samples[0]!;
  for (const s of r.samples) if (s.swapUsedBytes > peakSwap.swapUsedBytes) peakSwap = s;
  if (peakSwap.swapUsedBytes > limits.maxSwapBytes) violations.push(`swap used ${formatSize(peakSwap.swapUsedBytes)} at ${formatDuration(peakSwap.t)} (limit ${formatSize(limits.maxSwapBytes)})`);
  const h = r.host;
  if (h.minFreeBytes < limits.minFreeBytes) violations.push(`free memory ${formatSize(h.minFreeBytes)} at ${formatDuration(h.minFreeAt)} (limit ${formatSize(limits.minFreeBytes)})`);
  return {
    count,
    fits: violations.length === 0,
    violations,
    oomKills,
    refused,
    peakSwapBytes: peakSwap.swapUsedBytes,
    peakSwapAt: peakSwap.t,
    minFreeBytes: h.minFreeBytes,
    minFreeAt: h.minFreeAt,
    savedBytes: h.savedBytes,
    peakSavedBytes: h.peakSavedBytes,
    peakSavedAt: h.peakSavedAt,
    saved90At: h.saved90At,
    ksmdCpuAvg: h.ksmdCpuAvg,
    ksmdCpuPeak: h.ksmdCpuPeak,
    ksmdCpuPeakAt: h.ksmdCpuPeakAt,
    ksmdCpuMs: h.ksmdCpuMs,
    durationMs: r.durationMs,
    wallMs,
  };
}

/** A trial run in place: what a pool worker does. */
export function runTrial(scenario: Scenario, count: number, images: ImageCatalog, limits: PlanLimits, costs: KsmdCosts = DEFAULT_KSMD_COSTS, clock: () => number = () => 0): TrialOutcome {
  const t0 = clock();
  const [r] = runScenario(scenario, { images, ksmdCosts: costs });
  return judgeTrial(count, r!, limits, clock() - t0);
}

/** The answer of one search. */
export interface SearchAnswer {
  /** The largest count found to fit (0: not even one). */
  count: number;
  /** True when `max` itself fit: the answer is "at least count". */
  atLeast: boolean;
  /** The trial at `count` (null for 0) and at count + 1 (null when atLeast). */
  fit: TrialOutcome | null;
  next: TrialOutcome | null;
  /** Every trial this search asked for, in the order they finished. */
  trials: TrialOutcome[];
}

/**
 * The largest n in 1..max whose trial fits, assuming fit is monotone: an exponential
 * probe up (1, 2, 4, …, `width` counts at a time), then a `width`-ary search between
 * the largest fitting count and the smallest failing one, `width` trials at a time,
 * until they are adjacent. Trials of one count are asked for once.
 */
export async function searchLargestFit(trial: (n: number) => Promise<TrialOutcome>, max: number, width: number): Promise<SearchAnswer> {
  if (!Number.isSafeInteger(max) || max < 1) throw new KernelError('EINVAL', `plan: the largest count to try must be a whole number ≥ 1, got ${max}`);
  if (!Number.isSafeInteger(width) || width < 1) throw new KernelError('EINVAL', `plan: trials at a time must be a whole number ≥ 1, got ${width}`);
  const done = new Map<number, TrialOutcome>();
  const trials: TrialOutcome[] = [];
  const runAll = async (counts: number[]): Promise<void> => {
    await Promise.all(
      counts
        .filter((n) => !done.has(n))
        .map(async (n) => {
          const o = await trial(n);
          done.set(n, o);
          trials.push(o);
        }),
    );
  };
  let lo = 0; // the largest count known to fit below hi (0: none)
  let hi = max + 1; // the smallest count known to fail (max + 1: none)
  const settle = (): void => {
    for (const [n, o] of done) if (!o.fits && n < hi) hi = n;
    lo = largestFitBelow(done, hi);
  };
  // Probe up: 1, 2, 4, …, then max itself, `width` at a time, until one fails.
  let next = 1;
  while (hi === max + 1 && next <= max) {
    const batch: number[] = [];
    while (batch.length < width && next <= max) {
      batch.push(next);
      next = next === max ? max + 1 : Math.min(max, next * 2);
    }
    await runAll(batch);
    settle();
  }
  // Narrow (lo, hi) with `width` evenly spaced counts at a time.
  while (hi - lo > 1) {
    const gap = hi - lo;
    const k = Math.min(width, gap - 1);
    const batch: number[] = [];
    for (let j = 1; j <= k; j++) batch.push(lo + Math.round((j * gap) / (k + 1)));
    await runAll([...new Set(batch)]);
    settle();
  }
  const atLeast = hi === max + 1;
  return { count: lo, atLeast, fit: lo > 0 ? done.get(lo)! : null, next: atLeast ? null : done.get(hi) ?? null, trials };
}

/** The largest count below `hi` known to fit, 0 if none. */
function largestFitBelow(done: Map<number, TrialOutcome>, hi: number): number {
  let lo = 0;
  for (const [n, o] of done) if (o.fits && n < hi && n > lo) lo = n;
  return lo;
}

/** A knob or the kernel, swept over values: `--sweep pages_to_scan=100,1000`. */
export interface Sweep {
  name: string;
  values: string[];
}

/**
 * Parse `--sweep NAME=V1,V2,…`. NAME is `kernel` or a KSM knob file of the scenario's
 * kernel profile (for kernel sweeps, of every swept kernel); returns the sweep or a
 * message for a usage error.
 */
export function parseSweep(arg: string, scenarioKernel: string): Sweep | string {
  const m = /^([a-z_0-9]+)=(.+)$/.exec(arg);
  if (m === null) return `--sweep needs NAME=VALUE,VALUE,... (a KSM knob or kernel), got ${JSON.stringify(arg)}`;
  const name = m[1]!;
  const values = m[2]!.split(',').map((v) => v.trim());
  if (values.some((v) => v === '')) return `--sweep ${name}: an empty value in ${JSON.stringify(m[2])}`;
  if (new Set(values).size !== values.length) return `--sweep ${name}: a value given twice in ${JSON.stringify(m[2])}`;
  if (name === 'kernel') {
    for (const v of values) {
      try {
        kernelProfile(v);
      } catch (e) {
        return `--sweep kernel: ${(e as Error).message}`;
      }
    }
    return { name, values };
  }
  let profile;
  try {
    profile = kernelProfile(scenarioKernel);
  } catch (e) {
    return (e as Error).message;
  }
  const knobs = profile.knobs.map((k) => k.file);
  if (!knobs.includes(name)) return `--sweep ${name}: not a KSM knob of Linux ${profile.version} (knobs: ${knobs.join(', ')}; or kernel)`;
  for (const v of values) if (!/^\d+$/.test(v)) return `--sweep ${name}: expected whole numbers, got ${JSON.stringify(v)}`;
  return { name, values };
}
