/**
 * ksmd's work counters (src/ksm/work.ts): what the kernel's ksmd would have done,
 * counted exactly, whatever Samepage memoizes. Every expected number is worked out
 * from 2.6.33 mm/ksm.c in the comment above it.
 */
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE, type Kernel, type KsmWorkCounts, type Process } from '../../src/index.js';
import { RUN, newKernel } from './helpers.js';
import { LEAD_STRIDE } from '../../src/mm/contents.js';

function work(k: Kernel): KsmWorkCounts {
  return k.ksmWork();
}

const NONE: KsmWorkCounts = {
  pagesScanned: 0,
  checksums: 0,
  stableTreeCompares: 0,
  unstableTreeCompares: 0,
  mergeCompares: 0,
  bytesCompared: 0,
  merges: 0,
  unmerges: 0,
  rmapItemsAllocated: 0,
  rmapItemsFreed: 0,
};

/** A process with one page per byte value in `fills`, registered MADV_MERGEABLE. */
function proc(k: Kernel, name: string, fills: number[]): { p: Process; base: number } {
  const p = k.spawn(name);
  const base = p.mmap(fills.length * PAGE_SIZE);
  fills.forEach((b, i) => p.memset(base + i * PAGE_SIZE, b, PAGE_SIZE));
  p.madvise(base, fills.length * PAGE_SIZE, 'MADV_MERGEABLE');
  return { p, base };
}

describe('ksmd work counters', () => {
  it('a kernel that has not scanned has done no work', () => {
    expect(work(newKernel())).toEqual(NONE);
  });

  it('count every step of three full scans of two processes, one pair merging', () => {
    const k = newKernel();
    // a: pages 0x61, 0x62; b: pages 0x61, 0x63. Scan order a0 a1 b0 b1.
    const a = proc(k, 'a', [0x61, 0x62]);
    proc(k, 'b', [0x61, 0x63]);
    k.sysfs.write(RUN, '1');

    // Scan 1: four new rmap_items; each page: stable tree empty (no compare), checksum,
    // which differs from the new item's 0, so it is only recorded.
    k.ksmd.runFullScans(1);
    expect(work(k)).toEqual({ ...NONE, pagesScanned: 4, checksums: 4, rmapItemsAllocated: 4 });

    // Scan 2, checksums unchanged:
    //  a0: unstable tree empty, inserted.
    //  a1: 0x62 against a0's 0x61: one compare, 1 byte (they differ at byte 0); inserted.
    //  b0: against a0: 4096 bytes, equal. try_to_merge_two_pages: b0 made KSM (merge 1),
    //      then a0 replaced by it after pages_identical (a compare of 4096 bytes, merge 2);
    //      stable_tree_insert into an empty tree.
    //  b1 (0x63): stable tree, the 0x61 page: 1 byte; unstable tree (now a1 alone): 1 byte.
    k.ksmd.runFullScans(1);
    expect(work(k)).toEqual({
      ...NONE,
      pagesScanned: 8,
      checksums: 8,
      stableTreeCompares: 1,
      unstableTreeCompares: 3,
      mergeCompares: 1,
      bytesCompared: 1 + 4096 + 4096 + 1 + 1,
      merges: 2,
      rmapItemsAllocated: 4,
    });

    // Scan 3: a0 and b0 are stable KSM pages: scanned, not offered to the trees. a1 and
    // b1: one stable compare each (1 byte), a checksum each; a1 goes into the fresh
    // unstable tree, b1 compares with it (1 byte).
    k.ksmd.runFullScans(1);
    expect(work(k)).toEqual({
      ...NONE,
      pagesScanned: 12,
      checksums: 10,
      stableTreeCompares: 3,
      unstableTreeCompares: 4,
      mergeCompares: 1,
      bytesCompared: 8195 + 3,
      merges: 2,
      rmapItemsAllocated: 4,
    });

    // MADV_UNMERGEABLE on a: break_ksm gives a0 its own copy (one unmerge). At the next
    // scan a has no mergeable area: its two rmap_items are freed; b0's KSM page, now
    // mapped once, is still stable and skipped; b1 as before (stable 1 byte, unstable
    // tree empty).
    a.p.madvise(a.base, 2 * PAGE_SIZE, 'MADV_UNMERGEABLE');
    expect(work(k).unmerges).toBe(1);
    k.ksmd.runFullScans(1);
    expect(work(k)).toEqual({
      ...NONE,
      pagesScanned: 14,
      checksums: 11,
      stableTreeCompares: 4,
      unstableTreeCompares: 4,
      mergeCompares: 1,
      bytesCompared: 8195 + 3 + 1,
      merges: 2,
      unmerges: 1,
      rmapItemsAllocated: 4,
      rmapItemsFreed: 2,
    });
  });

  it('bytes compared are the kernel memcmp’s: up to and including the first differing byte, wherever it is', () => {
    // Three pages in one process, zero but for one byte each: at offsets 100, 100 and
    // 4095 (values 1, 2, 1). Scan 2: p1 against p0 differs at byte 100 (101 bytes), p2
    // against p0 at byte 100 too (p2 has 0 there), then against p1 (which has 2 at 100
    // where p2 has 0): 101 bytes again.
    const k = newKernel();
    const p = k.spawn('p');
    const base = p.mmap(3 * PAGE_SIZE);
    p.write(base + 100, Uint8Array.of(1));
    p.write(base + PAGE_SIZE + 100, Uint8Array.of(2));
    p.write(base + 2 * PAGE_SIZE + 4095, Uint8Array.of(1));
    p.madvise(base, 3 * PAGE_SIZE, 'MADV_MERGEABLE');
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    // p1 > p0 (2 > 1 at byte 100): right of p0. p2 < p0 (0 < 1 at byte 100): left.
    expect(work(k)).toMatchObject({ unstableTreeCompares: 2, bytesCompared: 101 + 101 });
  });

  it('counts the same whether memcmp and checksum answers were remembered or not', () => {
    // Two kernels, identical work; in one, every memo is dropped before every batch.
    const run = (forget: boolean): KsmWorkCounts => {
      const k = newKernel();
      proc(k, 'a', [1, 2, 3, 4, 5, 1, 2]);
      proc(k, 'b', [1, 2, 3, 9, 9, 9, 0]);
      k.sysfs.write('/sys/kernel/mm/ksm/pages_to_scan', '3');
      k.sysfs.write(RUN, '1');
      for (let i = 0; i < 20; i++) {
        if (forget) {
          const mem = k.mem;
          mem.store.sumValid.fill(0);
          for (let id = 256; id < mem.store.idLimit; id++) mem.store.lead[id * LEAD_STRIDE] = -1;
          k.ksmEngine.memcmpEpoch.fill(-1);
        }
        k.advance(20);
      }
      return work(k);
    };
    const remembered = run(false);
    expect(remembered.pagesScanned).toBeGreaterThan(14);
    expect(run(true)).toEqual(remembered);
  });
});
