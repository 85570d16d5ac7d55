/**
 * Differential scenarios: one description, run twice — on real processes under the
 * machine's KSM (real.ts) and through Samepage (model.ts) — and compared stage by stage.
 *
 * Processes are named; regions are named per process and inherited by a forked child
 * (same name, same pages). Addresses never appear: each side maps regions where its
 * own mmap puts them. Page numbers are indexes into a region.
 *
 * Page contents are described so that both sides can build them byte for byte:
 *  fill { byte }              every byte of each page is `byte`
 *  fill { byte, tag }         as above, then the first 8 bytes of page i are the
 *                             little-endian u32 `tag` and the little-endian u32
 *                             `first + i` (the page's index in the region): a page
 *                             unique per (tag, index)
 *  fill { byte, tailTag }     as `byte`, then the LAST 8 bytes of page i are u32 tag,
 *                             u32 index (ksmpages' worst case: equal but for the tail)
 *  write { offset, bytes }    raw bytes at a byte offset inside the region
 *
 * `settle` waits until KSM has converged (real: full_scans advanced by `scans`,
 * default 4, with pages_to_scan high and sleep_millisecs 0; model: runFullScans of the
 * same count) and records the four statistics and a digest of every live region.
 * When no live process has a VM_MERGEABLE page left, ksmd drops every mm from its list
 * and stops scanning, so full_scans stops too: the real side then waits until all four
 * statistics are 0 instead (the model's runFullScans returns early there).
 *
 * Digest rule (both sides): for every region of every live process — each region it
 * mmapped or inherited by fork, even if since munmapped entirely — `digests` holds
 * `${proc}/${region}` → hex32 of FNV-1a over the bytes of the region's pages that are
 * mapped and readable (prot 'r' or 'rw'), in page order; unmapped and PROT_NONE pages
 * are skipped (contribute nothing). A region with no readable page digests to
 * '811c9dc5'. A never-written readable page reads as zeros. `regionDigest` below is
 * the rule in code. Exited processes have no entries.
 */

/** Page size of both sides. */
export const SCENARIO_PAGE_SIZE = 4096;

export type Prot = 'none' | 'r' | 'rw';
export type Advice = 'MADV_MERGEABLE' | 'MADV_UNMERGEABLE' | 'MADV_DONTNEED';

export type Step =
  | { op: 'spawn'; proc: string }
  | { op: 'mmap'; proc: string; region: string; pages: number; prot?: Prot }
  | { op: 'munmap'; proc: string; region: string; first: number; count: number }
  | {
      op: 'fill';
      proc: string;
      region: string;
      first: number;
      count: number;
      byte: number;
      tag?: number;
      tailTag?: number;
    }
  | { op: 'write'; proc: string; region: string; offset: number; bytes: number[] }
  | { op: 'madvise'; proc: string; region: string; first: number; count: number; advice: Advice }
  | { op: 'mprotect'; proc: string; region: string; first: number; count: number; prot: Prot }
  | { op: 'fork'; proc: string; child: string }
  | { op: 'exit'; proc: string }
  | { op: 'settle'; scans?: number }
  /** prctl(PR_SET_MEMORY_MERGE, on ? 1 : 0, 0, 0, 0): Linux 6.x only. */
  | { op: 'prctl'; proc: string; on: boolean };

export interface Scenario {
  name: string;
  steps: Step[];
}

export interface KsmStats {
  pages_shared: number;
  pages_sharing: number;
  pages_unshared: number;
  pages_volatile: number;
}

/**
 * 6.x's further statistics at a settle. pages_scanned and pages_skipped are counted
 * from the start of the run (the real counters run from boot).
 */
export interface ModernStats {
  ksm_zero_pages: number;
  stable_node_chains: number;
  stable_node_dups: number;
  pages_scanned: number;
  pages_skipped: number;
  general_profit: number;
}

/** /proc/PID/ksm_stat of one process, its yes/no lines as 1/0. */
export interface ProcKsmStat {
  ksm_rmap_items: number;
  ksm_zero_pages: number;
  ksm_merging_pages: number;
  ksm_process_profit: number;
  ksm_merge_any: number;
  ksm_mergeable: number;
}

/** What one `settle` step observed. */
export interface StageResult {
  stats: KsmStats;
  /** `${proc}/${region}` → FNV-1a 32-bit hex digest of the region's bytes (readable pages only). */
  digests: Record<string, string>;
  /** Linux 6.x runs only: 6.x's statistics, and every live process's ksm_stat by name. */
  modern?: ModernStats;
  procs?: Record<string, ProcKsmStat>;
}

/** /proc/PID/ksm_stat text as a ProcKsmStat. */
export function parseKsmStat(text: string): ProcKsmStat {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const m = /^([a-z_]+):? (.*)$/.exec(line);
    if (m === null) throw new Error(`ksm_stat: unexpected line ${JSON.stringify(line)}`);
    out[m[1]!] = m[2] === 'yes' ? 1 : m[2] === 'no' ? 0 : Number(m[2]);
  }
  return out as unknown as ProcKsmStat;
}

/** FNV-1a, 32 bits: cheap to write identically in C and TypeScript. */
export function fnv1a32(bytes: Uint8Array, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export function hex32(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

/**
 * The bytes of page `index` of a `fill` step (see the header), into `out` at `offset`.
 * Little-endian u32s, as both sides write them.
 */
export function fillPage(
  out: Uint8Array,
  offset: number,
  index: number,
  byte: number,
  tag?: number,
  tailTag?: number,
): void {
  out.fill(byte, offset, offset + SCENARIO_PAGE_SIZE);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  if (tag !== undefined) {
    view.setUint32(offset, tag >>> 0, true);
    view.setUint32(offset + 4, index >>> 0, true);
  }
  if (tailTag !== undefined) {
    view.setUint32(offset + SCENARIO_PAGE_SIZE - 8, tailTag >>> 0, true);
    view.setUint32(offset + SCENARIO_PAGE_SIZE - 4, index >>> 0, true);
  }
}

/**
 * The digest rule: `pages` yields, in page order, each page's bytes, or null for a page
 * that is unmapped or PROT_NONE (skipped).
 */
export function regionDigest(pages: Iterable<Uint8Array | null>): string {
  let h = 0x811c9dc5;
  for (const p of pages) if (p !== null) h = fnv1a32(p, h);
  return hex32(h);
}
