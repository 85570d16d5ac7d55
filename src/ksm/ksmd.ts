import { MAX_WAKEUPS_PER_CALL, checkCount } from '../lib/validate.js';
import type { HostKernel, KThread } from '../mm/kernel.js';
import type { Ksm } from './ksm.js';

/** What a kernel image keeps of ksmd. */
export interface KsmdState {
  wakeAt: number | null;
  batches: number;
}

/**
 * ksmd on simulated time (mm/ksm.c ksm_scan_thread()).
 *
 * Each wakeup scans one batch of `pages_to_scan` pages, then sleeps
 * `sleep_millisecs` if there is still work, or waits to be woken (by
 * MADV_MERGEABLE registering the first mm, or by run=1). With sleep_millisecs 0 the
 * real ksmd goes straight on to the next batch; simulated time must move, so here
 * batches are at least one jiffy (1 ms, HZ=1000) apart.
 */
export class Ksmd implements KThread {
  readonly name = 'ksmd';
  private readonly kernel: HostKernel;
  private readonly ksm: Ksm;
  /** When the next batch is due; null while waiting to be woken. */
  private wakeAt: number | null;
  /** Batches run since boot. */
  batches: number;

  constructor(kernel: HostKernel, ksm: Ksm) {
    this.kernel = kernel;
    this.ksm = ksm;
    this.wakeAt = null;
    this.batches = 0;
    ksm.onWakeup = () => {
      // wake_up_interruptible(&ksm_thread_wait) reaches ksmd only while it waits.
      if (this.wakeAt === null) this.wakeAt = this.kernel.now;
    };
    ksm.onSleepChanged = () => {
      // wake_up_interruptible(&ksm_iter_wait) reaches ksmd only while it naps
      // between batches: its next batch is now.
      if (this.wakeAt !== null && this.wakeAt > this.kernel.now) this.wakeAt = this.kernel.now;
    };
  }

  /** ksmd's state for the kernel image (src/ksm/snapshot.ts). */
  saveState(): KsmdState {
    return { wakeAt: this.wakeAt, batches: this.batches };
  }

  /** Set what saveState() gave (checked by src/ksm/snapshot.ts), on a ksmd being restored. */
  restoreState(s: KsmdState): void {
    this.wakeAt = s.wakeAt;
    this.batches = s.batches;
  }

  nextWake(): number | null {
    return this.wakeAt;
  }

  /** One batch per sleep_millisecs (at least a jiffy) while it has work; none while it waits. */
  wakeupsWithin(ms: number): number {
    if (this.wakeAt === null || !this.ksm.shouldRun()) return 0;
    return Math.floor(ms / Math.max(1, this.ksm.sleepMillisecs)) + 1;
  }

  run(now: number): void {
    const ksm = this.ksm;
    if (ksm.shouldRun()) {
      ksm.doScan(ksm.pagesToScan);
      this.batches++;
    }
    this.wakeAt = ksm.shouldRun() ? now + Math.max(1, ksm.sleepMillisecs) : null;
  }

  /** Current full_scans. */
  get fullScans(): number {
    return this.ksm.seqnr;
  }

  /**
   * Drive ksmd, batch after batch on simulated time, until full_scans has advanced
   * by `n`. Returns the number of full scans completed: fewer than `n` when ksmd
   * has nothing to do (run is not 1, no mm is registered, or pages_to_scan is 0).
   * Other kernel threads due meanwhile run too, as with advance(). Each full scan
   * takes at least one batch, so more than MAX_WAKEUPS_PER_CALL is refused up front
   * (E2BIG), as advance() refuses a span that needs more.
   */
  runFullScans(n: number): number {
    checkCount('runFullScans: n', n, MAX_WAKEUPS_PER_CALL, 'E2BIG');
    const ksm = this.ksm;
    let done = 0;
    while (done < n) {
      if (!ksm.shouldRun() || ksm.pagesToScan === 0) break;
      // ksmd_should_run() holds, so ksmd is due or sleeping between batches; were
      // it ever left waiting, driving it is what a wakeup would do.
      if (this.wakeAt === null) this.wakeAt = this.kernel.now;
      const wake = this.wakeAt;
      const before = ksm.seqnr;
      this.kernel.advance(Math.max(0, wake - this.kernel.now));
      // run=2 resets full_scans: count what we saw advance, not the difference.
      if (ksm.seqnr > before) done += ksm.seqnr - before;
      else if (ksm.seqnr < before) break;
    }
    return done;
  }
}
