/**
 * Sparse mergeable areas: ksmd's walk skips empty page tables as the kernel's does,
 * so an area of 256 GiB holding a few pages costs its tables, not its 2^26 addresses,
 * and decides exactly what a dense area with the same pages decides.
 */
import { describe, expect, it } from 'vitest';
import { Kernel, PAGE_SIZE } from '../../src/index.js';

const GiB = 1024 ** 3;

/** Pages at these offsets of one mergeable area of `size` bytes, in two processes; ksmd's statistics after 3 full scans. */
function scan(size: number, offsets: number[]): { stats: ReturnType<Kernel['ksmStats']>; ms: number } {
  const k = new Kernel({ memoryMiB: 64, blockMiB: 16, seed: 2 });
  for (const name of ['a', 'b']) {
    const p = k.spawn(name);
    const a = p.mmap(size);
    offsets.forEach((off, i) => p.memset(a + off, 1 + (i % 2), PAGE_SIZE));
    p.madvise(a, size, 'MADV_MERGEABLE');
  }
  k.sysfs.write('/sys/kernel/mm/ksm/run', '1');
  const t = performance.now();
  expect(k.ksmd.runFullScans(3)).toBe(3);
  const ms = performance.now() - t;
  k.checkInvariants();
  return { stats: k.ksmStats(), ms };
}

describe('sparse mergeable areas', () => {
  it('a 256 GiB area holding 3 pages per process: three full scans in well under a second of work, the same statistics as a dense area', () => {
    const sparse = scan(256 * GiB, [5 * PAGE_SIZE, 100 * GiB, 255 * GiB + 7 * PAGE_SIZE]);
    const dense = scan(16 * PAGE_SIZE, [0, 5 * PAGE_SIZE, 11 * PAGE_SIZE]);
    expect(sparse.stats).toEqual(dense.stats);
    expect([sparse.stats.pagesShared, sparse.stats.pagesSharing]).toEqual([2, 4]);
    // Page by page this was 2^26 addresses per pass per process: minutes.
    expect(sparse.ms).toBeLessThan(5000);
  });
});
