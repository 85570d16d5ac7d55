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
 */

import { KernelError } from '../lib/errors.js';

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

export class Ksmtuned {
  readonly config: Readonly<KsmtunedConfig>;
  /** MemTotal in kB when the governor started. */
  readonly total: number;
  /** sleep_millisecs it writes whenever it starts ksmd. */
  readonly sleep: number;
  /** The free-memory threshold, kB. */
  readonly thres: number;
  /** pages_to_scan it last decided (0 before the first start). */
  npages: number;

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
