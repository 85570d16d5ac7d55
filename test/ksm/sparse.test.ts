/**
 * Sparse mergeable areas: ksmd's walk skips empty page tables as the kernel's does,
 * so an area of 256 GiB (or 4 TiB, all the memory the content store lets a host
 * have) holding a few pages costs its tables, not its 2^26 (2^30) addresses, and
 * decides exactly what a dense area with the same pages decides: on 2.6.33's scan and
 * on 6.18's (smart scan skipping pages, zero pages merged with the zero page).
 * MADV_UNMERGEABLE's walk (unmerge_ksm_pages) skips them the same way.
 */
import { describe, expect, it } from 'vitest';
import { Kernel, PAGE_SIZE } from '../../src/index.js';

const GiB = 1024 ** 3;
const TiB = 1024 * GiB;

interface Scan {
  stats: ReturnType<Kernel['ksmStats']>;
  /** ksmd's statistics after MADV_UNMERGEABLE over both areas. */
  unmerged: ReturnType<Kernel['ksmStats']>;
  /** Pages still mapping a KSM page or the zero page after MADV_UNMERGEABLE. */
  stillMerged: number;
  ms: number;
}

/**
 * Pages at these offsets of one mergeable area of `size` bytes, in two processes
 * (contents 1, 2, 1, 2, ...; `zeroAt` offsets written with zeros); ksmd's statistics
 * after `scans` full scans, and after both areas are made unmergeable.
 */
function scan(size: number, offsets: number[], opts: { version?: string; knobs?: Record<string, string>; zeroAt?: number[]; ownAt?: number[]; scans?: number } = {}): Scan {
  const all = (): number[] => [...offsets, ...(opts.zeroAt ?? []), ...(opts.ownAt ?? [])];
  const k = new Kernel({ memoryMiB: 64, blockMiB: 16, seed: 2, ...(opts.version === undefined ? {} : { version: opts.version }) });
  const areas: [ReturnType<Kernel['spawn']>, number, Buffer][] = [];
  for (const name of ['a', 'b']) {
    const p = k.spawn(name);
    const a = p.mmap(size);
    offsets.forEach((off, i) => p.memset(a + off, 1 + (i % 2), PAGE_SIZE));
    for (const off of opts.zeroAt ?? []) p.memset(a + off, 0, PAGE_SIZE);
    for (const off of opts.ownAt ?? []) p.memset(a + off, 0x70 + areas.length, PAGE_SIZE);
    p.madvise(a, size, 'MADV_MERGEABLE');
    areas.push([p, a, Buffer.concat(all().map((off) => p.read(a + off, PAGE_SIZE)))]);
  }
  for (const [file, v] of Object.entries(opts.knobs ?? {})) k.sysfs.write(`/sys/kernel/mm/ksm/${file}`, v);
  k.sysfs.write('/sys/kernel/mm/ksm/run', '1');
  const t = performance.now();
  const scans = opts.scans ?? 3;
  expect(k.ksmd.runFullScans(scans)).toBe(scans);
  const stats = k.ksmStats();
  for (const [p, a] of areas) p.madvise(a, size, 'MADV_UNMERGEABLE');
  const ms = performance.now() - t;
  k.checkInvariants();
  // Every page still holds what its owner wrote.
  let stillMerged = 0;
  for (const [p, a, want] of areas) {
    expect(Buffer.concat(all().map((off) => p.read(a + off, PAGE_SIZE))).equals(want)).toBe(true);
    for (const off of all()) {
      const pfn = p.pfnOf(a + off);
      if (pfn === null || pfn === k.mem.zeroPfn || k.mem.isKsm(pfn)) stillMerged++;
    }
  }
  return { stats, unmerged: k.ksmStats(), stillMerged, ms };
}

describe('sparse mergeable areas', () => {
  it('2.6.33: a 256 GiB area holding 3 pages per process: three full scans and an unmerge in well under a second of work, the same statistics as a dense area', () => {
    const sparse = scan(256 * GiB, [5 * PAGE_SIZE, 100 * GiB, 255 * GiB + 7 * PAGE_SIZE]);
    const dense = scan(16 * PAGE_SIZE, [0, 5 * PAGE_SIZE, 11 * PAGE_SIZE]);
    expect(sparse.stats).toEqual(dense.stats);
    expect(sparse.unmerged).toEqual(dense.unmerged);
    expect([sparse.stats.pagesShared, sparse.stats.pagesSharing]).toEqual([2, 4]);
    expect([sparse.stillMerged, dense.stillMerged]).toEqual([0, 0]);
    // Page by page this was 2^26 addresses per pass per process: minutes.
    expect(sparse.ms).toBeLessThan(5000);
  });

  it('6.18 with smart scan and zero pages: a 256 GiB area decides as a dense one (skips, zero pages, merges), scans and unmerges fast', () => {
    const knobs = { use_zero_pages: '1', smart_scan: '1' };
    const offsets = [5 * PAGE_SIZE, 100 * GiB, 255 * GiB + 7 * PAGE_SIZE];
    const zeroAt = [3 * GiB, 200 * GiB + PAGE_SIZE];
    const sparse = scan(256 * GiB, offsets, { version: '6.18', knobs, zeroAt, ownAt: [128 * GiB], scans: 8 });
    // The same order of contents: 1, zero, 2, own, zero, 1.
    const dense = scan(32 * PAGE_SIZE, [0, 10 * PAGE_SIZE, 20 * PAGE_SIZE], { version: '6.18', knobs, zeroAt: [5 * PAGE_SIZE, 15 * PAGE_SIZE], ownAt: [12 * PAGE_SIZE], scans: 8 });
    expect(sparse.stats).toEqual(dense.stats);
    expect(sparse.unmerged).toEqual(dense.unmerged);
    // Two KSM pages shared by the four copies each, and four zero pages merged with the zero page.
    expect([sparse.stats.pagesShared, sparse.stats.pagesSharing, sparse.stats.ksmZeroPages]).toEqual([2, 4, 4]);
    // Eight scans: the smart scan has begun skipping the page of each process's own that never changes.
    expect(sparse.stats.pagesSkipped).toBeGreaterThan(0);
    expect([sparse.stillMerged, sparse.unmerged.ksmZeroPages]).toEqual([0, 0]);
    expect(sparse.ms).toBeLessThan(5000);
  });

  it('a 4 TiB area (the most RAM the content store lets a host have) with 3 pages per process, on 6.18: scanned and unmerged fast', () => {
    const sparse = scan(4 * TiB, [0, 2 * TiB + 9 * PAGE_SIZE, 4 * TiB - PAGE_SIZE], { version: '6.18' });
    const dense = scan(16 * PAGE_SIZE, [0, 9 * PAGE_SIZE, 15 * PAGE_SIZE], { version: '6.18' });
    expect(sparse.stats).toEqual(dense.stats);
    expect(sparse.unmerged).toEqual(dense.unmerged);
    expect([sparse.stats.pagesShared, sparse.stats.pagesSharing]).toEqual([2, 4]);
    expect(sparse.ms).toBeLessThan(5000);
  });
});
