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
 */

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
  | { op: 'settle'; scans?: number };

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

/** What one `settle` step observed. */
export interface StageResult {
  stats: KsmStats;
  /** `${proc}/${region}` → FNV-1a 32-bit hex digest of the region's bytes (readable pages only). */
  digests: Record<string, string>;
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
