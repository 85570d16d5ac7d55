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

/** Describe a workload for reports: "idle", "30 pages/s + 2000 pages every 1min". */
export function describeWorkload(w: WorkloadSpec, imageRate: number): string {
  const base = w.dirtyRate === null ? `idle (${imageRate} pages/s)` : `${w.dirtyRate} pages/s`;
  if (w.burst === null) return base;
  return `${base} + ${w.burst.pages} pages every ${w.burst.everyMs / 1000}s`;
}
