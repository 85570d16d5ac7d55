import { KernelError } from '../lib/errors.js';

/**
 * What a running guest does to its memory. The image boots the guest (its pages are
 * written progressively over the image's boot time); after that the workload dirties
 * pages: a steady rate, optional periodic bursts, and one-off bursts the host asks for.
 * A dirtied page gets fresh unique contents, so KSM must unmerge it (copy-on-write)
 * if it was merged, and cannot merge it again until it stops changing.
 */
export interface WorkloadSpec {
  /** Pages dirtied per simulated second while running; null: the image's own rate (an idle guest). */
  dirtyRate: number | null;
  /** Periodic bursts on top of the steady rate, or null. */
  burst: PeriodicBurst | null;
}

export interface PeriodicBurst {
  /** Time from one burst's start to the next (the first starts one period after boot). */
  everyMs: number;
  /** Pages dirtied by each burst. */
  pages: number;
  /** How long each burst lasts. */
  overMs: number;
}

/**
 * Refuse a workload that cannot run: a negative or non-finite rate, or a periodic
 * burst whose period is not positive (it would start bursts forever within one tick).
 */
export function checkWorkload(w: WorkloadSpec, who: string): void {
  if (w.dirtyRate !== null && (!Number.isFinite(w.dirtyRate) || w.dirtyRate < 0)) {
    throw new KernelError('EINVAL', `${who}: dirty rate must be a number of pages per second ≥ 0, got ${w.dirtyRate}`);
  }
  const b = w.burst;
  if (b === null) return;
  if (!Number.isFinite(b.everyMs) || b.everyMs <= 0) throw new KernelError('EINVAL', `${who}: bursts must repeat after more than 0 ms, got ${b.everyMs}`);
  if (!Number.isSafeInteger(b.pages) || b.pages < 0) throw new KernelError('EINVAL', `${who}: burst pages must be a whole number ≥ 0, got ${b.pages}`);
  if (!Number.isFinite(b.overMs) || b.overMs < 0) throw new KernelError('EINVAL', `${who}: burst duration must be ≥ 0 ms, got ${b.overMs}`);
}

/** The image's own behaviour: an idle guest. */
export const IDLE_WORKLOAD: Readonly<WorkloadSpec> = Object.freeze({ dirtyRate: null, burst: null });

/** A burst in progress: `pages` left to dirty at a fixed rate until `endAt`. */
export interface ActiveBurst {
  /** Pages still to dirty. */
  pages: number;
  /** Pages per ms. */
  rate: number;
  /** Fractional pages carried between ticks. */
  debt: number;
}

/** A burst starting now: `pages` dirtied evenly over `overMs` ms (0: all at the next tick). */
export function startBurst(pages: number, overMs: number): ActiveBurst {
  return { pages, rate: overMs === 0 ? Infinity : pages / overMs, debt: 0 };
}
