/**
 * Frames at scale (src/mm/physmem.ts "Frames at scale", src/mm/contents.ts): a host's
 * real memory grows with the frames it uses and the distinct contents it holds, not
 * with the memory it models. A 512 GiB host, 4 TiB of address space in its ptes,
 * runs here with a few hundred MiB touched in a small budget of real memory.
 */
import { describe, expect, it } from 'vitest';
import { Kernel, PAGE_SIZE } from '../../src/index.js';
import { MAX_MEMORY_MIB, mkPte, ptePayload, pteClear, pteSet, PTE_DIRTY, PTE_WRITE, PTE_YOUNG } from '../../src/mm/constants.js';

const MiB = 1024 * 1024;

function rssMiB(): number {
  return process.memoryUsage().rss / MiB;
}

describe('a large sparse host', () => {
  it('512 GiB, 256 MiB written (half zero, half one repeated page), KSM merging it: under 300 MiB of real memory more', () => {
    const before = rssMiB();
    const k = new Kernel({ memoryMiB: 512 * 1024, swapMiB: 16 * 1024, blockMiB: 128, seed: 1 });
    expect(k.meminfo().MemTotal).toBe(512 * 1024 * 1024);
    const p = k.spawn('big');
    const len = 256 * MiB;
    const a = p.mmap(len);
    p.madvise(a, len, 'MADV_MERGEABLE');
    p.memset(a, 0, len / 2);
    const page = Buffer.alloc(PAGE_SIZE, 0);
    page.write('the same page everywhere', 7);
    for (let off = len / 2; off < len; off += PAGE_SIZE) p.write(a + off, page);
    k.sysfs.write('/sys/kernel/mm/ksm/pages_to_scan', '100000');
    k.sysfs.write('/sys/kernel/mm/ksm/run', '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    // 65536 pages: the 32768 zero pages merge into one KSM page, the 32768 copies of
    // the written page into another.
    expect(k.sysfs.read('/sys/kernel/mm/ksm/pages_shared')).toBe('2\n');
    expect(k.sysfs.read('/sys/kernel/mm/ksm/pages_sharing')).toBe('65534\n');
    expect(Buffer.from(p.read(a + len - PAGE_SIZE, PAGE_SIZE))).toEqual(page);
    k.checkInvariants();
    // Each written page was stored on its own (a write does not look for duplicates);
    // KSM freed all but one, and the store gave their bytes back.
    expect(k.mem.store.nrStored).toBe(1);
    const grown = rssMiB() - before;
    expect(grown).toBeLessThan(300);
  });

  it('ptes carry frames up to 4 TiB: flags set and cleared without touching the payload', () => {
    expect(MAX_MEMORY_MIB).toBe(4 * 1024 * 1024);
    const top = 2 ** 30 - 1;
    const pte = mkPte(top, PTE_WRITE);
    expect(ptePayload(pte)).toBe(top);
    expect(pte & PTE_WRITE).not.toBe(0);
    const y = pteSet(pte, PTE_YOUNG | PTE_DIRTY);
    expect(ptePayload(y)).toBe(top);
    expect(y & (PTE_YOUNG | PTE_DIRTY)).toBe(PTE_YOUNG | PTE_DIRTY);
    const ro = pteClear(y, PTE_WRITE);
    expect(ptePayload(ro)).toBe(top);
    expect(ro & PTE_WRITE).toBe(0);
  });

  it('a 4 TiB host is accepted; one more block is refused with the limit', () => {
    const before = rssMiB();
    const k = new Kernel({ memoryMiB: 4 * 1024 * 1024, blockMiB: 1024, seed: 1 });
    const p = k.spawn('top');
    const a = p.mmap(4 * MiB);
    p.memset(a, 0x5a, 4 * MiB);
    expect(p.read(a + 4 * MiB - 1, 1)[0]).toBe(0x5a);
    expect(rssMiB() - before).toBeLessThan(300);
    expect(() => new Kernel({ memoryMiB: 4 * 1024 * 1024 + 1024, blockMiB: 1024 })).toThrow('exceeds the 4194304 MiB (4 TiB) a pte can address');
  });
});
