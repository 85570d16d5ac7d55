import type { Ksm } from './ksm.js';

/*
 * ksmd's work, counted: what the kernel's ksmd spends its CPU on, one counter per kind
 * of operation, so that src/ksm/cost.ts can turn the counts into a share of a core.
 *
 * Linux keeps no such counters (6.x shows pages_scanned, nothing finer); they are the
 * model's, and they count what the kernel does, not what Samepage does. Samepage
 * memoizes checksums per frame, hashes pages ahead in SIMD batches and remembers
 * memcmp results (pages.ts): none of that changes a count. A checksum is counted
 * where cmp_and_merge_page() calls calc_checksum(), memoized or not; a comparison
 * where memcmp_pages() is called, remembered or not, and its bytes as the kernel's
 * memcmp reads them: up to and including the first byte that differs, the whole page
 * when none does.
 *
 * Invariants: every field only grows (a snapshot saves them; nothing resets them, not
 * even run=2, which resets full_scans); each is incremented at exactly one site,
 * named beside it below. pagesScanned is not here: it is the statistic ksm.pagesScanned
 * (6.x's pages_scanned), and readKsmWork() reads it from there.
 *
 * Cheap by construction: a fixed-shape object of numbers, one `++` (or `+=`) per
 * operation, nothing allocated.
 */
export class KsmWork {
  /** calc_checksum() in cmp_and_merge_page() (scan.ts: 2.6.33's and 6.x's). */
  checksums: number;
  /** memcmp_pages() in stable_tree_search() and stable_tree_insert() (stable-tree.ts: 2.6.33's and 6.x's). */
  stableTreeCompares: number;
  /** memcmp_pages() in unstable_tree_search_insert() (unstable-tree.ts). */
  unstableTreeCompares: number;
  /** pages_identical() in try_to_merge_one_page(): the check after write-protecting (merge.ts). */
  mergeCompares: number;
  /** Bytes every memcmp_pages() above read, to the first difference (pages.ts). */
  bytesCompared: number;
  /**
   * try_to_merge_one_page() that succeeded (merge.ts): a page became a KSM page, or a
   * pte was switched to one (replace_page). Merging two pages is two; a page forked
   * from a KSM page (already the same page) is none.
   */
  merges: number;
  /** break_ksm() faults that gave a process its own copy of a KSM page (unmerge.ts). */
  unmerges: number;
  /** alloc_rmap_item() and free_rmap_item() (rmap-item.ts). */
  rmapItemsAllocated: number;
  rmapItemsFreed: number;

  constructor() {
    this.checksums = 0;
    this.stableTreeCompares = 0;
    this.unstableTreeCompares = 0;
    this.mergeCompares = 0;
    this.bytesCompared = 0;
    this.merges = 0;
    this.unmerges = 0;
    this.rmapItemsAllocated = 0;
    this.rmapItemsFreed = 0;
  }
}

/** The counters KsmWork keeps, by name (what a snapshot saves). */
export const KSM_WORK_COUNTERS = [
  'checksums',
  'stableTreeCompares',
  'unstableTreeCompares',
  'mergeCompares',
  'bytesCompared',
  'merges',
  'unmerges',
  'rmapItemsAllocated',
  'rmapItemsFreed',
] as const satisfies readonly (keyof KsmWork)[];

/** ksmd's work so far, as plain data: pages scanned, then every KsmWork counter, in this order. */
export interface KsmWorkCounts {
  pagesScanned: number;
  checksums: number;
  stableTreeCompares: number;
  unstableTreeCompares: number;
  mergeCompares: number;
  bytesCompared: number;
  merges: number;
  unmerges: number;
  rmapItemsAllocated: number;
  rmapItemsFreed: number;
}

/** Every field of KsmWorkCounts, in order: reports (JSON, CSV) list them from here. */
export const KSM_WORK_FIELDS = ['pagesScanned', ...KSM_WORK_COUNTERS] as const satisfies readonly (keyof KsmWorkCounts)[];

/** The engine's work so far. */
export function readKsmWork(ksm: Ksm): KsmWorkCounts {
  const w = ksm.work;
  return {
    pagesScanned: ksm.pagesScanned,
    checksums: w.checksums,
    stableTreeCompares: w.stableTreeCompares,
    unstableTreeCompares: w.unstableTreeCompares,
    mergeCompares: w.mergeCompares,
    bytesCompared: w.bytesCompared,
    merges: w.merges,
    unmerges: w.unmerges,
    rmapItemsAllocated: w.rmapItemsAllocated,
    rmapItemsFreed: w.rmapItemsFreed,
  };
}
