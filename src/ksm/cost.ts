import { nnls } from '../lib/nnls.js';
import { KSM_WORK_FIELDS, type KsmWorkCounts } from './work.js';

/*
 * What ksmd costs in CPU: the work the engine counts (work.ts) times a cost per
 * operation, measured on a real ksmd.
 *
 * The model: ksmd's CPU time = Σ cost[f] × count[f] over the work counters, in ns. Its
 * share of one core over an interval is that time's growth over the interval's length
 * (ksmd is one kernel thread: it never uses more than one core).
 *
 * Linear in the counts on purpose. The road not taken was a per-page cost alone ("ksmd
 * costs X µs a page"), which is what operators quote; but a page costs 0.1 µs when it
 * is a KSM page ksmd only steps over and tens of µs when it walks two deep trees of
 * mostly-zero pages, so a per-page figure is right for one host and wrong for the
 * next. Counting the operations keeps the figure honest when the workload changes.
 *
 * What the costs cover, and what they leave out:
 *  - pagesScanned: finding the page (the page-table walk, the rmap_item lookup) and
 *    everything per page that no other counter covers, including cond_resched() and
 *    the start of each full scan spread over its pages.
 *  - checksums: one hash of a 4 KiB page (xxhash on 6.x, jhash2 on 2.6.33) and the
 *    rest of cmp_and_merge_page() around it.
 *  - stableTreeCompares, unstableTreeCompares: one step of a tree walk: taking the
 *    tree page (get_ksm_page, or follow_page for the unstable tree), memcmp's call,
 *    the rb-tree step; the bytes memcmp reads are bytesCompared.
 *  - mergeCompares cost nothing of their own: there is one in nearly every merge, so a
 *    fit cannot tell them apart from merges; their call is in `merges`, their bytes in
 *    bytesCompared.
 *  - merges: write_protect_page (a TLB flush), replace_page, the rmap and the page
 *    lock; unmerges: break_ksm's copy-on-write fault.
 *  - rmapItemsAllocated and rmapItemsFreed: the slab allocation and the list work; one
 *    cost for both (a fit sees frees only when processes exit).
 * ksmd's sleeps cost nothing, and its wakeups (tens of µs, at most 50 a second at the
 * default sleep_millisecs 20) are below what the fit can see.
 *
 * Unmerges are counted wherever break_ksm() runs: in ksmd (break_cow after a failed
 * merge, the only kind a scenario's ksmd does), but also for MADV_UNMERGEABLE and
 * run=2, which run in the caller's context: those are KSM's CPU, not ksmd's.
 */

/** ns per operation, one per KsmWorkCounts field. */
export type KsmdCosts = { readonly [K in keyof KsmWorkCounts]: number };

/** Where a set of costs was measured: the machine, the kernel, the date, how. */
export interface KsmdCostSource {
  machine: string;
  kernel: string;
  date: string;
  how: string;
}

/**
 * The costs measured on the development machine by `npm run bench`
 * (bench/calibrate-ksmd.ts: several workloads on the real ksmd, knobs as 2.6.33 has
 * them, ksmd's utime+stime from /proc/<pid>/stat against the counts Samepage gives
 * for the same memory, fitted by non-negative least squares; its report lists each
 * workload's residual). To recalibrate on another machine, run `npm run bench` (or
 * `npx tsx bench/calibrate-ksmd.ts`) as root and paste what it prints here, or pass
 * its JSON to `samepage run|plan --ksmd-costs FILE`.
 */
export const DEFAULT_KSMD_COSTS: KsmdCosts = {
  // Measured 2026-12-03 on the development machine (2 × AMD EPYC, 24 GiB, Linux
  // 6.18.44), 2.6.33's knobs, 31 observations over seven workloads of 512 MiB: the
  // typical error of a prediction is 6.9% (rms of the relative residuals, each
  // within ±16%); schedstat's exact run time gives the same costs to 2%.
  pagesScanned: 397,
  checksums: 665,
  stableTreeCompares: 136,
  unstableTreeCompares: 337,
  mergeCompares: 0,
  bytesCompared: 0.13,
  merges: 1414,
  // From run=2 in the writer's context (2284 ns an unmerge, 374 ns an rmap_item freed).
  unmerges: 2284,
  rmapItemsAllocated: 93.6,
  rmapItemsFreed: 93.6,
};

export const DEFAULT_KSMD_COST_SOURCE: KsmdCostSource = {
  machine: '2 × AMD EPYC, 24 GiB (the development machine)',
  kernel: 'Linux 6.18.44, knobs as 2.6.33 has them (xxhash checksums)',
  date: '2026-12-03',
  how: 'npm run bench (bench/calibrate-ksmd.ts): ksmd utime+stime against Samepage counts, non-negative least squares',
};

/** ksmd's CPU time for this much work, in ns. */
export function ksmdCpuNs(work: KsmWorkCounts, costs: KsmdCosts = DEFAULT_KSMD_COSTS): number {
  let ns = 0;
  for (const f of KSM_WORK_FIELDS) ns += work[f] * costs[f];
  return ns;
}

/**
 * The parameters a calibration fits, each a sum of counters sharing one cost (see the
 * notes above: mergeCompares have none of their own, frees cost what allocations do;
 * unmerges are not ksmd's work in any calibration workload, so they are fitted apart).
 */
export const KSMD_FIT_PARAMETERS = [
  { name: 'pagesScanned', counters: ['pagesScanned'] },
  { name: 'checksums', counters: ['checksums'] },
  { name: 'stableTreeCompares', counters: ['stableTreeCompares'] },
  { name: 'unstableTreeCompares', counters: ['unstableTreeCompares'] },
  { name: 'bytesCompared', counters: ['bytesCompared'] },
  { name: 'merges', counters: ['merges'] },
  { name: 'rmapItems', counters: ['rmapItemsAllocated', 'rmapItemsFreed'] },
] as const satisfies readonly { name: string; counters: readonly (keyof KsmWorkCounts)[] }[];

/** One measurement: the work done (counts over the interval) and the CPU it took. */
export interface KsmdObservation {
  name: string;
  work: KsmWorkCounts;
  cpuNs: number;
}

export interface KsmdFit {
  /** Costs for every counter: fitted ones, tied ones, `unmerges` as given. */
  costs: KsmdCosts;
  /** Per observation: measured − predicted, ns. */
  residuals: { name: string; measuredNs: number; predictedNs: number; residualNs: number }[];
  /** sqrt(mean of squared relative residuals): the typical error of a prediction. */
  rmsRelativeError: number;
}

/**
 * Fit the per-operation costs to observations by non-negative least squares, each
 * observation weighted by 1 / its measured time, so that the fit minimises relative
 * errors (a short workload's 10 ms matter as much as a long one's 10 s).
 * `unmergeNs` is the cost of an unmerge, measured apart.
 */
export function fitKsmdCosts(observations: readonly KsmdObservation[], unmergeNs: number): KsmdFit {
  const rows = observations.map((o) => {
    const w = 1 / Math.max(o.cpuNs, 1);
    return KSMD_FIT_PARAMETERS.map((p) => w * p.counters.reduce((s, c) => s + o.work[c], 0));
  });
  const rhs = observations.map(() => 1);
  const { x } = nnls(rows, rhs);
  const c: Record<string, number> = {};
  KSMD_FIT_PARAMETERS.forEach((p, i) => {
    for (const counter of p.counters) c[counter] = x[i]!;
  });
  c.mergeCompares = 0;
  c.unmerges = unmergeNs;
  const costs = Object.fromEntries(KSM_WORK_FIELDS.map((f) => [f, c[f] ?? 0])) as KsmdCosts;
  const residuals = observations.map((o) => {
    const predictedNs = ksmdCpuNs(o.work, costs);
    return { name: o.name, measuredNs: o.cpuNs, predictedNs, residualNs: o.cpuNs - predictedNs };
  });
  const rel = residuals.map((r) => r.residualNs / Math.max(r.measuredNs, 1));
  const rmsRelativeError = rel.length === 0 ? 0 : Math.sqrt(rel.reduce((s, v) => s + v * v, 0) / rel.length);
  return { costs, residuals, rmsRelativeError };
}

/** Costs from a JSON object (as `--ksmd-costs FILE` holds): every field a non-negative number. Returns a problem or the costs. */
export function parseKsmdCosts(value: unknown): KsmdCosts | string {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'expected an object of ns per operation';
  const v = (value as { costs?: unknown }).costs ?? value;
  if (v === null || typeof v !== 'object') return 'expected an object of ns per operation';
  const r = v as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!(KSM_WORK_FIELDS as readonly string[]).includes(k)) return `${k}: not a ksmd operation (${KSM_WORK_FIELDS.join(', ')})`;
  const out: Record<string, number> = {};
  for (const f of KSM_WORK_FIELDS) {
    const x = r[f];
    if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) return `${f}: expected a cost in ns (a number ≥ 0), got ${JSON.stringify(x)}`;
    out[f] = x;
  }
  return out as KsmdCosts;
}
