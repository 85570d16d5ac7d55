/**
 * ksmtuned: the governor shipped with qemu-kvm in Fedora/RHEL (a shell script by
 * Dan Kenigsberg, 2009), re-expressed step by step. It decides *whether* ksmd runs
 * and *how hard*:
 *
 * - At start it derives from MemTotal (kB) a sleep between ksmd batches,
 *   `sleep = KSM_SLEEP_MSEC × 16 GiB / total` (at least 10 ms: "bigger servers
 *   sleep less"), and a free-memory threshold, `thres = total × KSM_THRES_COEF / 100`
 *   but no less than KSM_THRES_CONST.
 * - Every KSM_MONITOR_INTERVAL seconds, `adjust` reads free memory
 *   (MemFree + Buffers + Cached) and the memory committed to qemu processes (the sum
 *   of their RSS). If committed + thres < total and free > thres, the guests fit
 *   comfortably: ksmd is stopped (run=0). Otherwise ksmd runs: pages_to_scan grows by
 *   KSM_NPAGES_BOOST while free < thres, and shrinks by KSM_NPAGES_DECAY (a negative
 *   number) once free memory is back, always clamped to [KSM_NPAGES_MIN, KSM_NPAGES_MAX].
 *
 * All arithmetic is the script's: integer kB, truncating division (bash `$[ ]`).
 * `npages` starts at 0 and is not reset when ksmd is stopped, as in the script.
 *
 * Source: ksmtuned/ksmtuned, commit 018d0ed5876aee27b106c46c8889780d89ddcca2,
 * src/ksmtuned.sh.in (and data/ksmtuned.conf for the variables; ksmtuned-conf.ts reads
 * that file).
 */

import { KernelError } from '../lib/errors.js';
import { echoKnob, type GovernorNote, type GovernorPort, type KsmGovernor } from './governor.js';

export interface KsmtunedConfig {
  /** KSM_MONITOR_INTERVAL, seconds between adjustments (60). */
  monitorInterval: number;
  /** KSM_NPAGES_BOOST (300). */
  npagesBoost: number;
  /** KSM_NPAGES_DECAY (−50). */
  npagesDecay: number;
  /** KSM_NPAGES_MIN (64). */
  npagesMin: number;
  /** KSM_NPAGES_MAX (1250). */
  npagesMax: number;
  /** KSM_SLEEP_MSEC, the sleep for a 16 GiB host (10). */
  sleepMsec: number;
  /** KSM_THRES_COEF, percent of MemTotal (20). */
  thresCoef: number;
  /** KSM_THRES_CONST, kB (2048). */
  thresConst: number;
}

/** The script's defaults (/etc/ksmtuned.conf commented out). */
export const KSMTUNED_DEFAULTS: Readonly<KsmtunedConfig> = Object.freeze({
  monitorInterval: 60,
  npagesBoost: 300,
  npagesDecay: -50,
  npagesMin: 64,
  npagesMax: 1250,
  sleepMsec: 10,
  thresCoef: 20,
  thresConst: 2048,
});

/** What one adjust() did, with the figures it decided on. */
export type KsmtunedDecision =
  | { action: 'stop'; free: number; committed: number }
  | { action: 'boost' | 'decay'; free: number; committed: number; npages: number; sleep: number };

/** bash `$[a / b]` for the non-negative operands the script uses: truncating division. */
function idiv(a: number, b: number): number {
  return Math.trunc(a / b);
}

/** A ksmtuned governor as plain data (src/vmm/snapshot.ts carries it). */
export interface KsmtunedSnapshot {
  policy: 'ksmtuned';
  config: KsmtunedConfig;
  total: number;
  npages: number;
  nextAt: number;
}

export class Ksmtuned implements KsmGovernor {
  readonly policy = 'ksmtuned';
  readonly config: Readonly<KsmtunedConfig>;
  /** MemTotal in kB when the governor started. */
  readonly total: number;
  /** sleep_millisecs it writes whenever it starts ksmd. */
  readonly sleep: number;
  /** The free-memory threshold, kB. */
  readonly thres: number;
  /** pages_to_scan it last decided (0 before the first start). */
  npages: number;
  /** When loop() next calls adjust(), simulated ms. */
  nextAt: number;

  /**
   * EINVAL for a config the script could not run: its arithmetic is bash integers, it
   * sleeps KSM_MONITOR_INTERVAL whole seconds (0 would have the host adjust again at
   * the same instant, forever), and increase_npages() clamps to min first, so a min
   * above max would pin pages_to_scan at min.
   */
  constructor(config: Partial<KsmtunedConfig>, totalKb: number) {
    const c = { ...KSMTUNED_DEFAULTS, ...config };
    for (const [k, v] of Object.entries(c)) {
      if (!Number.isSafeInteger(v)) throw new KernelError('EINVAL', `ksmtuned: ${k} must be a whole number, got ${String(v)}`);
    }
    if (c.monitorInterval < 1) throw new KernelError('EINVAL', `ksmtuned: monitorInterval must be 1 second or more, got ${c.monitorInterval}`);
    if (c.npagesMin < 0 || c.npagesMin > c.npagesMax) {
      throw new KernelError('EINVAL', `ksmtuned: expected 0 <= npagesMin <= npagesMax, got npagesMin ${c.npagesMin}, npagesMax ${c.npagesMax}`);
    }
    this.config = Object.freeze(c);
    this.total = totalKb;
    let sleep = idiv(c.sleepMsec * 16 * 1024 * 1024, totalKb);
    if (sleep <= 10) sleep = 10;
    this.sleep = sleep;
    let thres = idiv(totalKb * c.thresCoef, 100);
    if (c.thresConst > thres) thres = c.thresConst;
    this.thres = thres;
    this.npages = 0;
    this.nextAt = Infinity;
  }

  /**
   * The script starting at simulated time `now`: MemTotal read once, then loop()
   * sleeps KSM_MONITOR_INTERVAL before its first adjust.
   */
  static start(config: Partial<KsmtunedConfig>, port: GovernorPort, now: number): Ksmtuned {
    const g = new Ksmtuned(config, port.meminfo().MemTotal!);
    g.nextAt = now + g.config.monitorInterval * 1000;
    return g;
  }

  static fromSnapshot(s: KsmtunedSnapshot): Ksmtuned {
    const g = new Ksmtuned(s.config, s.total);
    g.npages = s.npages;
    g.nextAt = s.nextAt;
    return g;
  }

  snapshot(): KsmtunedSnapshot {
    return { policy: 'ksmtuned', config: { ...this.config }, total: this.total, npages: this.npages, nextAt: this.nextAt };
  }

  /**
   * One turn of loop(): adjust() with free_memory() and committed_memory() read from
   * the host, then KSMCTL's echoes. Each echo is its own command, so one the kernel
   * refuses (a sleep over UINT_MAX) does not stop the next, as in the script.
   */
  wake(port: GovernorPort, now: number): GovernorNote[] {
    const mi = port.meminfo();
    // free_memory(): MemFree + Buffers + Cached. A kernel without Buffers and Cached
    // lines (the model's 2.6.33 has neither) counts its shmem, which Linux's Cached holds.
    const free = mi.MemFree! + (mi.Buffers ?? 0) + (mi.Cached ?? mi.Shmem ?? 0);
    // committed_memory(): the summed RSS (ps -o rsz) of the qemu processes.
    let committed = 0;
    for (const p of port.qemuProcesses()) committed += p.rssKb;
    const d = this.adjust(free, committed);
    this.nextAt = now + this.config.monitorInterval * 1000;
    const errors: string[] = [];
    const echo = (file: string, v: number): void => {
      const e = echoKnob(port, file, v);
      if (e !== null) errors.push(e);
    };
    if (d.action === 'stop') echo('run', 0);
    else {
      echo('pages_to_scan', d.npages);
      echo('sleep_millisecs', d.sleep);
      echo('run', 1);
    }
    const what = d.action === 'stop' ? 'ksmtuned: stop ksmd' : `ksmtuned: ${d.action}, pages_to_scan ${d.npages}, sleep_millisecs ${d.sleep}`;
    return [{ what, error: errors.length === 0 ? null : errors.join('; ') }];
  }

  /** increase_npages(): add delta and clamp to [min, max]. */
  private increaseNpages(delta: number): number {
    let n = this.npages + delta;
    if (n < this.config.npagesMin) n = this.config.npagesMin;
    else if (n > this.config.npagesMax) n = this.config.npagesMax;
    return n;
  }

  /** adjust(): one monitoring step, given free and committed memory in kB. */
  adjust(free: number, committed: number): KsmtunedDecision {
    if (committed + this.thres < this.total && free > this.thres) {
      return { action: 'stop', free, committed };
    }
    const boost = free < this.thres;
    this.npages = this.increaseNpages(boost ? this.config.npagesBoost : this.config.npagesDecay);
    return { action: boost ? 'boost' : 'decay', free, committed, npages: this.npages, sleep: this.sleep };
  }
}

const isInt = (v: unknown): boolean => Number.isSafeInteger(v);

/** Where a ksmtuned snapshot is not what snapshot() writes: a message, or null. */
export function checkKsmtunedSnapshot(r: Record<string, unknown>): string | null {
  const c = r.config;
  if (c === null || typeof c !== 'object') return 'config: expected a record';
  for (const k of Object.keys(KSMTUNED_DEFAULTS)) {
    if (!isInt((c as Record<string, unknown>)[k])) return `config.${k}: expected a whole number, found ${JSON.stringify((c as Record<string, unknown>)[k])}`;
  }
  if (!isInt(r.total) || (r.total as number) <= 0) return `total: expected MemTotal in kB, found ${JSON.stringify(r.total)}`;
  if (!isInt(r.npages) || (r.npages as number) < 0) return `npages: expected a whole number, found ${JSON.stringify(r.npages)}`;
  return null;
}
