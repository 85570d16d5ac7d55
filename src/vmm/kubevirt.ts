import { KernelError } from '../lib/errors.js';
import { echoKnob, type GovernorNote, type GovernorPort, type KsmGovernor } from './governor.js';

/**
 * KubeVirt's KSM handler in virt-handler, re-expressed step by step. Source:
 * github.com/kubevirt/kubevirt, commit 16fe3a1162dc44eb15f9106972e0e66fd5819c7e,
 * pkg/virt-handler/ksm/ksm.go (the annotation names are in
 * staging/src/kubevirt.io/api/core/v1/types.go). The handler itself says it is
 * "inspired from" oVirt MOM's doc/ksm.rules (mom.ts); the differences are its own.
 *
 * On a node the KubeVirt CR's ksmConfiguration selects, the handler spins once when it
 * starts and then every 3 minutes (a time.Ticker; a configuration change spins at once
 * and resets the ticker, which here is a new `ksm:` policy). Each spin:
 *
 *  1. reads /sys/kernel/mm/ksm/run: KSM is "running" when it reads 1;
 *  2. reads MemTotal and MemAvailable from /proc/meminfo, and pages_to_scan;
 *  3. sleep = sleepMsBaseline × 16 GiB(kB) / (MemTotal − MemAvailable), in uint64,
 *     at least sleepMsBaseline / 10 (so with the default 100: at least 10 ms);
 *  4. if float32(available) > float32(total) × freePercent (no pressure):
 *       running: pages += pagesDecay; below nPagesMin it stops KSM (run 0);
 *       not running: run 0 (pages and sleep untouched);
 *     else (pressure):
 *       running: pages += pagesBoost, at most nPagesMax;
 *       not running: start at nPagesInit;
 *  5. writes sleep_millisecs, pages_to_scan, then run=1 when running, or run=0 alone;
 *     the first write that fails ends the spin (Go returns the error).
 *
 * Parameters come from node annotations (kubevirt.io/ksm-pages-boost-override, ...);
 * a value out of its bounds is logged and replaced by the default when the default is
 * strictly inside the bounds, else by the lower bound (boundCheck). The defaults:
 * boost 300, decay −50, min 64, max 1250, init 100, sleep baseline 100 ("10ms in oVirt
 * seemed really low"), free percent 0.2.
 *
 * Differences, named: Linux 2.6.33 has no MemAvailable (3.14 added it), and the real
 * handler fails its spin without it; the model reads MemAvailable when the kernel's
 * meminfo has it and MemFree otherwise (the model has no page cache or reclaimable
 * slab, the other terms of si_mem_available()). A spin with MemTotal equal to
 * MemAvailable would divide by zero and panic virt-handler; here it is logged as that
 * panic and nothing is written.
 */

export interface KubevirtConfig {
  /** kubevirt.io/ksm-pages-boost-override (300), bounds [0, MaxInt]. */
  pagesBoost: number;
  /** kubevirt.io/ksm-pages-decay-override (−50), bounds [MinInt, 0]. */
  pagesDecay: number;
  /** kubevirt.io/ksm-pages-min-override (64), bounds [0, MaxInt]. */
  nPagesMin: number;
  /** kubevirt.io/ksm-pages-max-override (1250), bounds [nPagesMin, MaxInt]. */
  nPagesMax: number;
  /** kubevirt.io/ksm-pages-init-override (100), bounds [nPagesMin, nPagesMax]. */
  nPagesInit: number;
  /** kubevirt.io/ksm-sleep-ms-baseline-override (100), bounds [1, MaxInt]. */
  sleepMsBaseline: number;
  /** kubevirt.io/ksm-free-percent-override (0.2, a float32 fraction), bounds [0, 1]. */
  freePercent: number;
  /** ksmLoopIntervalMinutes, in seconds (180): a constant of the source, a knob here for tests. */
  interval: number;
}

export const KUBEVIRT_DEFAULTS: Readonly<KubevirtConfig> = Object.freeze({
  pagesBoost: 300,
  pagesDecay: -50,
  nPagesMin: 64,
  nPagesMax: 1250,
  nPagesInit: 100,
  sleepMsBaseline: 100,
  freePercent: Math.fround(0.2),
  interval: 180,
});

/** The annotation each parameter is read from, for messages. */
export const KUBEVIRT_ANNOTATIONS: Readonly<Record<Exclude<keyof KubevirtConfig, 'interval'>, string>> = {
  pagesBoost: 'kubevirt.io/ksm-pages-boost-override',
  pagesDecay: 'kubevirt.io/ksm-pages-decay-override',
  nPagesMin: 'kubevirt.io/ksm-pages-min-override',
  nPagesMax: 'kubevirt.io/ksm-pages-max-override',
  nPagesInit: 'kubevirt.io/ksm-pages-init-override',
  sleepMsBaseline: 'kubevirt.io/ksm-sleep-ms-baseline-override',
  freePercent: 'kubevirt.io/ksm-free-percent-override',
};

// Go's int on a 64-bit node; JavaScript numbers hold every value a scenario can give exactly.
const MAX_INT = Number.MAX_SAFE_INTEGER;
const MIN_INT = Number.MIN_SAFE_INTEGER;

/** The parameters a spin uses, and what the handler logged resolving them. */
export interface KubevirtParams {
  readonly config: Readonly<KubevirtConfig>;
  /** boundCheck's "override value out of bounds, using default (...)" lines. */
  readonly warnings: readonly string[];
}

/** getIntParam/getFloatParam with boundCheck, in the source's order (max's bounds use min, init's both). */
export function resolveKubevirtParams(overrides: Partial<KubevirtConfig>): KubevirtParams {
  const warnings: string[] = [];
  const bound = (key: Exclude<keyof KubevirtConfig, 'interval'>, v: number | undefined, lower: number, upper: number): number => {
    const def = KUBEVIRT_DEFAULTS[key];
    if (v === undefined) return def;
    if (v < lower || v > upper) {
      if (def > lower && def < upper) {
        warnings.push(`${KUBEVIRT_ANNOTATIONS[key]} override value out of bounds, using default (${def})`);
        return def;
      }
      warnings.push(`${KUBEVIRT_ANNOTATIONS[key]} override value out of bounds, using lowest possible value (${lower})`);
      return lower;
    }
    return v;
  };
  const o = overrides;
  const pagesBoost = bound('pagesBoost', o.pagesBoost, 0, MAX_INT);
  const pagesDecay = bound('pagesDecay', o.pagesDecay, MIN_INT, 0);
  const nPagesMin = bound('nPagesMin', o.nPagesMin, 0, MAX_INT);
  const nPagesMax = bound('nPagesMax', o.nPagesMax, nPagesMin, MAX_INT);
  const nPagesInit = bound('nPagesInit', o.nPagesInit, nPagesMin, nPagesMax);
  const sleepMsBaseline = bound('sleepMsBaseline', o.sleepMsBaseline, 1, MAX_INT);
  // strconv.ParseFloat(override, 32): the value as a float32.
  const freePercent = bound('freePercent', o.freePercent === undefined ? undefined : Math.fround(o.freePercent), 0, 1);
  const interval = overrides.interval ?? KUBEVIRT_DEFAULTS.interval;
  return { config: Object.freeze({ pagesBoost, pagesDecay, nPagesMin, nPagesMax, nPagesInit, sleepMsBaseline, freePercent, interval }), warnings };
}

/** ksmState plus which branch of calculateNewRunSleepAndPages was taken. */
export type KubevirtDecision =
  | { action: 'start' | 'boost' | 'decay'; running: true; sleep: number; pages: number }
  | { action: 'stop'; running: false; sleep: number; pages: number }
  | { action: 'off'; running: false; sleep: 0; pages: 0 }
  | { action: 'panic'; message: string };

/**
 * calculateNewRunSleepAndPages(): pure, from the parameters, whether KSM runs now, and
 * what /proc/meminfo (kB) and pages_to_scan say.
 */
export function calculateNewRunSleepAndPages(c: Readonly<KubevirtConfig>, running: boolean, total: number, available: number, pages: number): KubevirtDecision {
  // uint64 arithmetic: total - available wraps if available were larger; / by 0 panics.
  const used = BigInt.asUintN(64, BigInt(total) - BigInt(available));
  if (used === 0n) return { action: 'panic', message: 'runtime error: integer divide by zero (MemTotal equals MemAvailable)' };
  const baseline = BigInt(c.sleepMsBaseline);
  let sleep = BigInt.asUintN(64, baseline * 16777216n) / used;
  if (sleep < baseline / 10n) sleep = baseline / 10n;
  const sleepMs = Number(sleep);
  if (Math.fround(available) > Math.fround(Math.fround(total) * c.freePercent)) {
    // No memory pressure: reduce or stop KSM activity.
    if (running) {
      const p = pages + c.pagesDecay;
      if (p < c.nPagesMin) return { action: 'stop', running: false, sleep: sleepMs, pages: c.nPagesMin };
      return { action: 'decay', running: true, sleep: sleepMs, pages: p };
    }
    return { action: 'off', running: false, sleep: 0, pages: 0 };
  }
  // Memory pressure: increase or start KSM activity.
  if (running) {
    let p = pages + c.pagesBoost;
    if (p > c.nPagesMax) p = c.nPagesMax;
    return { action: 'boost', running: true, sleep: sleepMs, pages: p };
  }
  return { action: 'start', running: true, sleep: sleepMs, pages: c.nPagesInit };
}

export interface KubevirtSnapshot {
  policy: 'kubevirt';
  config: Partial<KubevirtConfig>;
  nextAt: number;
}

export class Kubevirt implements KsmGovernor {
  readonly policy = 'kubevirt';
  /** The overrides as given (the annotations); `params` is what a spin uses. */
  readonly overrides: Readonly<Partial<KubevirtConfig>>;
  readonly params: KubevirtParams;
  nextAt: number;

  /** EINVAL for a configuration the handler could not run with. */
  constructor(overrides: Partial<KubevirtConfig>) {
    for (const [k, v] of Object.entries(overrides)) {
      if (v === undefined) continue;
      if (k === 'freePercent' ? !Number.isFinite(v) : !Number.isSafeInteger(v)) throw new KernelError('EINVAL', `kubevirt: ${k} must be a ${k === 'freePercent' ? 'number' : 'whole number'}, got ${String(v)}`);
    }
    if (overrides.interval !== undefined && overrides.interval < 1) throw new KernelError('EINVAL', `kubevirt: interval must be 1 second or more, got ${overrides.interval}`);
    this.overrides = Object.freeze({ ...overrides });
    this.params = resolveKubevirtParams(overrides);
    this.nextAt = Infinity;
  }

  /** The handler's loop(): spin() at once, then on the ticker. */
  static start(overrides: Partial<KubevirtConfig>, now: number): Kubevirt {
    const k = new Kubevirt(overrides);
    k.nextAt = now;
    return k;
  }

  static fromSnapshot(s: KubevirtSnapshot): Kubevirt {
    const k = new Kubevirt(s.config);
    k.nextAt = s.nextAt;
    return k;
  }

  snapshot(): KubevirtSnapshot {
    return { policy: 'kubevirt', config: { ...this.overrides }, nextAt: this.nextAt };
  }

  /** spin(): the node is eligible (the policy selects it), so handleNodePressure(). */
  wake(port: GovernorPort, now: number): GovernorNote[] {
    const c = this.params.config;
    this.nextAt = now + c.interval * 1000;
    const notes: GovernorNote[] = this.params.warnings.map((w) => ({ what: `kubevirt: ${w}`, error: null }));
    const running = port.readKsm('run') === 1;
    const mi = port.meminfo();
    const d = calculateNewRunSleepAndPages(c, running, mi.MemTotal!, mi.MemAvailable ?? mi.MemFree!, port.readKsm('pages_to_scan'));
    if (d.action === 'panic') return [...notes, { what: 'kubevirt: spin', error: d.message }];
    // writeKsmValuesToFiles(): sleep and pages only when running; the first error returns.
    const writes: [string, number][] = d.running ? [['sleep_millisecs', d.sleep], ['pages_to_scan', d.pages], ['run', 1]] : [['run', 0]];
    let error: string | null = null;
    for (const [file, v] of writes) {
      error = echoKnob(port, file, v);
      if (error !== null) break;
    }
    const what =
      d.action === 'off' ? 'kubevirt: no memory pressure, ksmd off' : d.action === 'stop' ? 'kubevirt: stop ksmd' : `kubevirt: ${d.action}, pages_to_scan ${d.pages}, sleep_millisecs ${d.sleep}`;
    notes.push({ what, error });
    return notes;
  }
}

/** Where a KubeVirt snapshot is not what snapshot() writes: a message, or null. */
export function checkKubevirtSnapshot(r: Record<string, unknown>): string | null {
  const c = r.config;
  if (c === null || typeof c !== 'object') return 'config: expected a record';
  for (const [k, v] of Object.entries(c)) {
    if (!(k in KUBEVIRT_DEFAULTS)) return `config.${k}: not a KubeVirt parameter`;
    if (!Number.isFinite(v)) return `config.${k}: expected a number, found ${JSON.stringify(v)}`;
  }
  return null;
}
