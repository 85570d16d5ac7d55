import { KernelError } from '../lib/errors.js';
import { checkCount, checkFinite, checkKnownKeys, checkRecord, describe } from '../lib/validate.js';

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
 * The fastest a workload may dirty pages: 10^7 pages a second, 40 GB/s, beyond what
 * one guest's vCPUs write through a memory bus. Each dirtied page is one write the
 * simulation does, so a rate without a bound is a run without an end.
 */
export const MAX_DIRTY_RATE = 10_000_000;

/**
 * Refuse a workload that cannot run: not a record of dirtyRate and burst; a rate
 * that is negative, not finite or above MAX_DIRTY_RATE; a periodic burst whose
 * period is not positive (it would start bursts forever within one tick), or of
 * more pages than the guest has (`ramPages`, when known). Returns a fresh copy, so
 * a caller changing their record later changes nothing. The same rules check a
 * snapshot's workloads.
 */
export function checkWorkload(wIn: unknown, who: string, ramPages: number = Number.MAX_SAFE_INTEGER): WorkloadSpec {
  const w = checkRecord(`${who}: workload`, wIn);
  checkKnownKeys(`${who}: workload`, w, ['dirtyRate', 'burst']);
  if (w.dirtyRate === undefined) throw new KernelError('EINVAL', `${who}: workload: dirtyRate: expected pages per second or null, found undefined`);
  if (w.burst === undefined) throw new KernelError('EINVAL', `${who}: workload: burst: expected a periodic burst or null, found undefined`);
  const dirtyRate = w.dirtyRate === null ? null : checkFinite(`${who}: dirty rate (pages per second)`, w.dirtyRate, 0, MAX_DIRTY_RATE);
  if (w.burst === null) return { dirtyRate, burst: null };
  const b = checkRecord(`${who}: burst`, w.burst);
  checkKnownKeys(`${who}: burst`, b, ['everyMs', 'pages', 'overMs']);
  if (typeof b.everyMs !== 'number' || !Number.isFinite(b.everyMs) || b.everyMs <= 0) throw new KernelError('EINVAL', `${who}: bursts must repeat after more than 0 ms, got ${describe(b.everyMs)}`);
  const pages = checkBurstPages(who, b.pages, ramPages);
  const overMs = checkFinite(`${who}: burst duration (ms)`, b.overMs, 0);
  return { dirtyRate, burst: { everyMs: b.everyMs, pages, overMs } };
}

/** A burst's pages: a whole number, at most the guest's RAM pages (a burst dirties each page once at most). */
export function checkBurstPages(who: string, pages: unknown, ramPages: number): number {
  return checkCount(`${who}: burst pages`, pages, ramPages);
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
