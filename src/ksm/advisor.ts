import type { Ksm } from './ksm.js';

/*
 * The scan-time advisor (mm/ksm.c, 6.7+): with advisor_mode scan-time, ksmd retunes
 * pages_to_scan at the end of every full scan so that a full scan takes about
 * advisor_target_scan_time seconds, within a CPU budget (10% to advisor_max_cpu of
 * one CPU) and advisor_{min,max}_pages_to_scan. pages_to_scan refuses writes while
 * it runs.
 *
 * It measures two things the model has to supply:
 * - the scan's duration: ktime_get() at the start and end of the full scan. The
 *   model's clock is simulated time, in ms, exactly as ksmd's batches and sleeps
 *   advance it.
 * - ksmd's CPU time over the scan: task_sched_runtime(current). The model's ksmd
 *   takes no time to scan, so it is charged KSMD_NS_PER_PAGE per page it scans
 *   (Ksm.ksmdCpuTime): a fixed rate of the order of the real ksmd's (on the
 *   development machine the real ksmd's best-case ksmpages, npm run bench, spends
 *   about 1.5 µs a page visited). Real CPU time depends on the pages (a long memcmp
 *   costs more than a short one), the machine and what else runs; the model's is a
 *   fixed rate. That is the one place the advisor can differ from a real kernel's,
 *   and the README says so (Differences from Linux).
 */

/** ns of CPU the model charges ksmd per page it scans: see the comment above. */
export const KSMD_NS_PER_PAGE = 1000n;

/** KSM_ADVISOR_MIN_CPU: the least CPU share (%) the advisor keeps ksmd at. */
const KSM_ADVISOR_MIN_CPU = 10n;
/** EWMA_WEIGHT: the weight (%) of the newest scan-time change. */
const EWMA_WEIGHT = 30n;

/** advisor_mode values (enum ksm_advisor_type). */
export const KSM_ADVISOR_NONE = 0;
export const KSM_ADVISOR_SCAN_TIME = 1;

/** The DEFAULT_PAGES_TO_SCAN set_advisor_defaults() restores with advisor_mode none. */
const DEFAULT_PAGES_TO_SCAN = 100;

/** set_advisor_defaults(): after advisor_mode changed. */
export function setAdvisorDefaults(ksm: Ksm): void {
  if (ksm.advisorMode === KSM_ADVISOR_NONE) {
    ksm.pagesToScan = DEFAULT_PAGES_TO_SCAN;
  } else {
    ksm.advisorStartScan = 0;
    ksm.advisorScanTime = 0;
    ksm.advisorChange = 0;
    ksm.advisorCpuTime = 0;
    // ksm_thread_pages_to_scan (an unsigned int) = ksm_advisor_min_pages_to_scan.
    ksm.pagesToScan = Number(BigInt.asUintN(32, ksm.advisorMinPagesToScan));
  }
}

/** advisor_start_scan(): at the start of a full scan. */
export function advisorStartScan(ksm: Ksm): void {
  if (ksm.advisorMode === KSM_ADVISOR_SCAN_TIME) ksm.advisorStartScan = ksm.kernel.now;
}

/** advisor_stop_scan(): at the end of a full scan. */
export function advisorStopScan(ksm: Ksm): void {
  if (ksm.advisorMode === KSM_ADVISOR_SCAN_TIME) scanTimeAdvisor(ksm);
}

/** ewma() */
function ewma(prev: bigint, curr: bigint): bigint {
  return ((100n - EWMA_WEIGHT) * prev + EWMA_WEIGHT * curr) / 100n;
}

function atLeast1(x: bigint): bigint {
  return x !== 0n ? x : 1n;
}

function min(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

function max(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/**
 * scan_time_advisor(), in the kernel's unsigned long arithmetic (bigints: the knobs
 * are unsigned longs, and every division truncates as C's does):
 *
 *   new_pages_to_scan = pages_to_scan * (scan_time / target_scan_time) * change
 *
 * where change is a moving average of how the scan time changed, capped by the CPU
 * budget and the max/min pages.
 */
export function scanTimeAdvisor(ksm: Ksm): void {
  const scanMs = BigInt(Math.floor(ksm.kernel.now - ksm.advisorStartScan));
  const scanTime = atLeast1(scanMs / 1000n);
  const cpuTime = BigInt(ksm.ksmdCpuTime);
  const cpuTimeDiffMs = (cpuTime - BigInt(ksm.advisorCpuTime)) / 1000n / 1000n;
  const cpuPercent = atLeast1((cpuTimeDiffMs * 100n) / (scanTime * 1000n));
  const lastScanTime = ksm.advisorScanTime !== 0 ? BigInt(ksm.advisorScanTime) : scanTime;
  const factor = atLeast1((ksm.advisorTargetScanTime * 100n) / scanTime);
  let change = atLeast1((scanTime * 100n) / lastScanTime);
  change = ewma(BigInt(ksm.advisorChange), change);
  const pagesToScan = BigInt(ksm.pagesToScan);
  let pages = (pagesToScan * 100n) / factor;
  pages = (pages * change) / 100n;
  const perPageCost = atLeast1(pagesToScan / cpuPercent);
  pages = min(pages, perPageCost * BigInt(ksm.advisorMaxCpu));
  pages = max(pages, perPageCost * KSM_ADVISOR_MIN_CPU);
  pages = min(pages, ksm.advisorMaxPagesToScan);
  ksm.advisorChange = Number(change);
  ksm.advisorScanTime = Number(scanTime);
  ksm.advisorCpuTime = Number(cpuTime);
  ksm.pagesToScan = Number(BigInt.asUintN(32, pages));
}
