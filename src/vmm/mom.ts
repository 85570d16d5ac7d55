import { KernelError } from '../lib/errors.js';
import { checkWhole, echoKnob, type GovernorNote, type GovernorPort, type KsmGovernor } from './governor.js';

/**
 * oVirt MOM (the Memory Overcommitment Manager) running its KSM policy, re-expressed
 * step by step. Source: github.com/oVirt/mom, commit
 * 3de1c8e6bcb9da716b0aec96f8c38df6e79ef55a:
 *
 *  - doc/ksm.rules               the policy (MOM's Lisp-like policy language)
 *  - mom/Controllers/KSM.py      the controller that applies the policy's outputs
 *  - mom/Collectors/HostMemory.py, HostKSM.py   what the policy reads
 *  - mom/Entity.py (StatAvg), mom/Monitor.py    the sample history and its average
 *  - mom/HostMonitor.py, mom/PolicyEngine.py, mom/__init__.py (the default intervals)
 *  - mom/HypervisorInterfaces/libvirtInterface.py ksmTune()   the sysfs writes
 *
 * Three loops, in simulated time from the moment the policy starts (t0):
 *
 *  1. The host monitor collects a sample at t0 and then every host-monitor-interval
 *     (5 s), keeping the last sample-history-length (10) samples. A sample holds
 *     mem_available (MemTotal), mem_free (MemFree + Buffers + Cached), the ksm_* sysfs
 *     values, and ksm_shareable: the summed VSZ (ps -ovsz, kB) of `pgrep qemu`.
 *  2. The policy engine sleeps policy-engine-interval (10 s) and then evaluates the
 *     rules against the monitor's samples (`Host.x` is the latest sample's x,
 *     `Host.StatAvg "mem_free"` the average over the history), and hands the outputs
 *     (`Host.Control`) to the KSM controller. When both loops are due at one instant
 *     the sample is taken first (the real threads race; this is the order that makes
 *     the policy see the freshest figures).
 *  3. The controller writes each output that differs from the latest sample's value,
 *     in the order run, pages_to_scan, sleep_millisecs; a failed write is logged and
 *     the next one is still made.
 *
 * The rules, with their arithmetic as Python 3 evaluates it (`/` is true division;
 * the controller truncates with int()):
 *
 *     threshold = mem_available × ksm_free_percent            (a float)
 *     if threshold + ksm_shareable < mem_available and StatAvg(mem_free) > threshold:
 *         ksm_run = 0
 *     else:
 *         ksm_run = 1
 *         ksm_sleep_millisecs = int(ksm_sleep_ms_baseline × 16777216 / mem_available)
 *         ksm_pages_to_scan = clamp(pages_to_scan + (boost if StatAvg(mem_free) < threshold
 *                                                    else decay), npages_min, npages_max)
 *
 * Unlike ksmtuned, the step starts from the kernel's current pages_to_scan (so from
 * the boot-time 100 the first boost writes 400), there is no 10 ms floor on the
 * sleep, and "committed" is the guests' virtual size, not their RSS.
 *
 * Differences, named: MOM's HostKSM collector at this commit also opens
 * /sys/kernel/mm/ksm/merge_across_nodes and refuses to run without it (Linux 3.9
 * added the file); the model reads only what the rules use, so MOM runs on a 2.6.33
 * host. oVirt's vdsm ships its own variant of the rules (static/etc/vdsm/mom.d/
 * 03-ksm.policy: a 10 ms floor on the sleep, and merge_across_nodes handling); this
 * is the rules file of the mom repository.
 */

export interface MomConfig {
  /** (defvar ksm_pages_boost 300) */
  pagesBoost: number;
  /** (defvar ksm_pages_decay -50) */
  pagesDecay: number;
  /** (defvar ksm_npages_min 64) */
  npagesMin: number;
  /** (defvar ksm_npages_max 1250) */
  npagesMax: number;
  /** (defvar ksm_sleep_ms_baseline 10): the sleep for a 16 GiB host. */
  sleepMsBaseline: number;
  /** (defvar ksm_free_percent 0.20): a fraction, despite the name. */
  freePercent: number;
  /** [main] host-monitor-interval, seconds (5). */
  hostMonitorInterval: number;
  /** [main] policy-engine-interval, seconds (10). */
  policyEngineInterval: number;
  /** [main] sample-history-length (10). */
  sampleHistoryLength: number;
}

/** doc/ksm.rules' defvars and mom/__init__.py's [main] defaults. */
export const MOM_DEFAULTS: Readonly<MomConfig> = Object.freeze({
  pagesBoost: 300,
  pagesDecay: -50,
  npagesMin: 64,
  npagesMax: 1250,
  sleepMsBaseline: 10,
  freePercent: 0.2,
  hostMonitorInterval: 5,
  policyEngineInterval: 10,
  sampleHistoryLength: 10,
});

/** One host-monitor sample: the fields of HostMemory and HostKSM the rules read. */
export interface MomSample {
  /** mem_available: MemTotal, kB. */
  memAvailable: number;
  /** mem_free: MemFree + Buffers + Cached, kB. */
  memFree: number;
  ksmRun: number;
  ksmPagesToScan: number;
  ksmSleepMillisecs: number;
  /** ksm_shareable: summed VSZ of the qemu processes, kB. */
  ksmShareable: number;
}

/** What one evaluation of the rules asked for (`Host.Control`). */
export type MomControls =
  | { action: 'stop'; threshold: number; avgFree: number; run: 0 }
  | { action: 'boost' | 'decay'; threshold: number; avgFree: number; run: 1; sleepMillisecs: number; pagesToScan: number };

export interface MomSnapshot {
  policy: 'mom';
  config: MomConfig;
  history: MomSample[];
  nextCollectAt: number;
  nextPolicyAt: number;
  nextAt: number;
}

/**
 * doc/ksm.rules, evaluated on the latest sample and the history's mem_free average.
 * Pure: the figures in, the controls out.
 */
export function evaluateKsmRules(c: Readonly<MomConfig>, latest: MomSample, avgFree: number): MomControls {
  // (defvar ksm_pressure_threshold (* Host.mem_available ksm_free_percent))
  const threshold = latest.memAvailable * c.freePercent;
  // (defvar ksm_committed Host.ksm_shareable)
  const committed = latest.ksmShareable;
  if (threshold + committed < latest.memAvailable && avgFree > threshold) return { action: 'stop', threshold, avgFree, run: 0 };
  // (/ (* ksm_sleep_ms_baseline 16777216) Host.mem_available): a float, truncated by
  // the controller's int().
  const sleepMillisecs = Math.trunc((c.sleepMsBaseline * 16777216) / latest.memAvailable);
  const boost = avgFree < threshold;
  // change_npages: max first, then min.
  let newval = latest.ksmPagesToScan + (boost ? c.pagesBoost : c.pagesDecay);
  if (newval > c.npagesMax) newval = c.npagesMax;
  if (newval < c.npagesMin) newval = c.npagesMin;
  return { action: boost ? 'boost' : 'decay', threshold, avgFree, run: 1, sleepMillisecs, pagesToScan: newval };
}

/** Entity.StatAvg("mem_free"): float(total / len) over the samples kept. */
export function statAvg(history: readonly MomSample[]): number {
  let total = 0;
  for (const s of history) total += s.memFree;
  return total / history.length;
}

export class Mom implements KsmGovernor {
  readonly policy = 'mom';
  readonly config: Readonly<MomConfig>;
  /** The host monitor's samples, oldest first; at most sampleHistoryLength. */
  readonly history: MomSample[];
  nextCollectAt: number;
  nextPolicyAt: number;

  /** EINVAL for a configuration MOM could not run with. */
  constructor(config: Partial<MomConfig>) {
    const c = { ...MOM_DEFAULTS, ...config };
    checkWhole('mom', c as unknown as Record<string, number>, ['pagesBoost', 'pagesDecay', 'npagesMin', 'npagesMax', 'sleepMsBaseline', 'hostMonitorInterval', 'policyEngineInterval', 'sampleHistoryLength']);
    if (!Number.isFinite(c.freePercent)) throw new KernelError('EINVAL', `mom: freePercent must be a number, got ${c.freePercent}`);
    // time.sleep(0) in a loop would evaluate forever at one instant.
    if (c.hostMonitorInterval < 1 || c.policyEngineInterval < 1) {
      throw new KernelError('EINVAL', `mom: intervals must be 1 second or more, got host-monitor ${c.hostMonitorInterval}, policy-engine ${c.policyEngineInterval}`);
    }
    if (c.sampleHistoryLength < 1) throw new KernelError('EINVAL', `mom: sampleHistoryLength must be 1 or more, got ${c.sampleHistoryLength}`);
    this.config = Object.freeze(c);
    this.history = [];
    this.nextCollectAt = Infinity;
    this.nextPolicyAt = Infinity;
  }

  static start(config: Partial<MomConfig>, now: number): Mom {
    const m = new Mom(config);
    m.nextCollectAt = now;
    m.nextPolicyAt = now + m.config.policyEngineInterval * 1000;
    return m;
  }

  static fromSnapshot(s: MomSnapshot): Mom {
    const m = new Mom(s.config);
    for (const x of s.history) m.history.push({ ...x });
    m.nextCollectAt = s.nextCollectAt;
    m.nextPolicyAt = s.nextPolicyAt;
    return m;
  }

  get nextAt(): number {
    return Math.min(this.nextCollectAt, this.nextPolicyAt);
  }

  snapshot(): MomSnapshot {
    return { policy: 'mom', config: { ...this.config }, history: this.history.map((x) => ({ ...x })), nextCollectAt: this.nextCollectAt, nextPolicyAt: this.nextPolicyAt, nextAt: this.nextAt };
  }

  wake(port: GovernorPort, now: number): GovernorNote[] {
    const notes: GovernorNote[] = [];
    if (this.nextCollectAt === now) {
      this.collect(port);
      this.nextCollectAt = now + this.config.hostMonitorInterval * 1000;
    }
    if (this.nextPolicyAt === now) {
      const note = this.doControls(port);
      if (note !== null) notes.push(note);
      this.nextPolicyAt = now + this.config.policyEngineInterval * 1000;
    }
    return notes;
  }

  /** Monitor.collect(): HostMemory and HostKSM, appended to the history. */
  private collect(port: GovernorPort): void {
    const mi = port.meminfo();
    let shareable = 0;
    for (const p of port.qemuProcesses()) shareable += p.vszKb;
    this.history.push({
      memAvailable: mi.MemTotal!,
      // HostMemory: MemFree + Buffers + Cached; the model's 2.6.33 meminfo has neither
      // Buffers nor Cached, and its shmem is what Linux's Cached would hold.
      memFree: mi.MemFree! + (mi.Buffers ?? 0) + (mi.Cached ?? mi.Shmem ?? 0),
      ksmRun: port.readKsm('run'),
      ksmPagesToScan: port.readKsm('pages_to_scan'),
      ksmSleepMillisecs: port.readKsm('sleep_millisecs'),
      ksmShareable: shareable,
    });
    if (this.history.length > this.config.sampleHistoryLength) this.history.shift();
  }

  /**
   * PolicyEngine.do_controls(): evaluate the rules, then the KSM controller's
   * process(). Returns the controller's "Updating KSM configuration" line, or null
   * when nothing changed (MOM logs nothing then).
   */
  private doControls(port: GovernorPort): GovernorNote | null {
    const latest = this.history[this.history.length - 1]!;
    const ctl = evaluateKsmRules(this.config, latest, statAvg(this.history));
    // KSM.process(): each control that differs from the latest sample, in key order.
    const outputs: [string, number][] = [];
    if (ctl.run !== latest.ksmRun) outputs.push(['run', ctl.run]);
    if (ctl.action !== 'stop') {
      if (ctl.pagesToScan !== latest.ksmPagesToScan) outputs.push(['pages_to_scan', ctl.pagesToScan]);
      if (ctl.sleepMillisecs !== latest.ksmSleepMillisecs) outputs.push(['sleep_millisecs', ctl.sleepMillisecs]);
    }
    if (outputs.length === 0) return null;
    const errors: string[] = [];
    for (const [file, v] of outputs) {
      const e = echoKnob(port, file, v);
      if (e !== null) errors.push(e);
    }
    const what = `mom: ${ctl.action === 'stop' ? 'stop ksmd' : ctl.action}, ${outputs.map(([k, v]) => `${k} ${v}`).join(', ')}`;
    return { what, error: errors.length === 0 ? null : errors.join('; ') };
  }
}

const isInt = (v: unknown): boolean => Number.isSafeInteger(v);

/** Where a MOM snapshot is not what snapshot() writes: a message, or null. */
export function checkMomSnapshot(r: Record<string, unknown>): string | null {
  const c = r.config;
  if (c === null || typeof c !== 'object') return 'config: expected a record';
  for (const k of Object.keys(MOM_DEFAULTS)) {
    if (!Number.isFinite((c as Record<string, unknown>)[k])) return `config.${k}: expected a number, found ${JSON.stringify((c as Record<string, unknown>)[k])}`;
  }
  if (!Number.isFinite(r.nextCollectAt) || !Number.isFinite(r.nextPolicyAt)) return 'nextCollectAt, nextPolicyAt: expected times';
  // Empty only between start() and the first collection.
  if (!Array.isArray(r.history)) return 'history: expected a list of samples';
  for (const [i, x] of (r.history as unknown[]).entries()) {
    const s = x as Record<string, unknown> | null;
    if (s === null || typeof s !== 'object') return `history[${i}]: expected a sample`;
    for (const k of ['memAvailable', 'memFree', 'ksmRun', 'ksmPagesToScan', 'ksmSleepMillisecs', 'ksmShareable']) {
      if (!isInt(s[k])) return `history[${i}].${k}: expected a whole number, found ${JSON.stringify(s[k])}`;
    }
  }
  return null;
}
