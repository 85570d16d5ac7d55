/**
 * The process/syscall surface of the simulated host kernel (src/mm/process.ts):
 * every system call, its error paths, faults, copy-on-write and pins.
 *
 * Every test runs on its own kernel of 8 MiB (one 8 MiB block: 2048 frames, pfn 0 the
 * zero page, so 2047 free at boot) with no swap, no KSM; after every test the deep
 * check `checkInvariants()` must pass. mmap hands out addresses top down from
 * MMAP_BASE (0x7f0000000000), so the first area of n pages starts at
 * MMAP_BASE - n * 4096.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  MMAP_BASE,
  PAGE_SIZE,
  PG_MLOCKED,
  PTE_KIND_MASK,
  PTE_PRESENT,
  PTE_SPECIAL,
  PTE_WRITE,
} from '../../src/mm/constants.js';
import { HostKernel } from '../../src/mm/kernel.js';
import type { Process } from '../../src/mm/process.js';
import { expectErr } from './helpers.js';

const P = PAGE_SIZE;
const FREE_AT_BOOT = 2047;

let k: HostKernel;

beforeEach(() => {
  k = new HostKernel({ memoryMiB: 8, blockMiB: 8, seed: 1 });
});

afterEach(() => {
  k.checkInvariants();
});

function bytes(n: number, v: number): Uint8Array {
  return new Uint8Array(n).fill(v);
}

/** Every byte of [addr, addr+len) read through the MMU equals v. */
function filled(p: Process, addr: number, len: number, v: number): boolean {
  return p.read(addr, len).every((b) => b === v);
}

function peekFilled(p: Process, addr: number, len: number, v: number): boolean {
  return p.peekMem(addr, len).every((b) => b === v);
}

function area(start: number, end: number, prot: 'none' | 'r' | 'rw', extra: Partial<{ shared: boolean; mergeable: boolean; locked: boolean }> = {}) {
  return { start, end, prot, shared: false, mergeable: false, locked: false, ...extra };
}

function free(): number {
  return k.mem.nrFreeOnline;
}

function pte(p: Process, addr: number): number {
  return p.mm.getPte(addr);
}

// ---- mmap -----------------------------------------------------------------------------

describe('mmap', () => {
  it('maps rw by default, top down from MMAP_BASE: 4 pages at MMAP_BASE - 4 pages', () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    expect(a).toBe(MMAP_BASE - 4 * P);
    expect(p.maps()).toEqual([area(a, a + 4 * P, 'rw')]);
  });

  it('the second area goes right below the first', () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    const b = p.mmap(2 * P, { prot: 'r' });
    expect(b).toBe(a - 2 * P);
    expect(p.maps()).toEqual([area(b, a, 'r'), area(a, a + 4 * P, 'rw')]);
  });

  it('rounds the length up to whole pages: 1 byte → 1 page, 4097 bytes → 2 pages', () => {
    const p = k.spawn('t');
    const a = p.mmap(1);
    const b = p.mmap(P + 1);
    // Top down: b's two pages sit right below a's one page, and vma_merge() joins the
    // two anonymous areas into one of three pages.
    expect(b).toBe(a - 2 * P);
    expect(p.maps()).toEqual([area(b, a + P, 'rw')]);
  });

  it('adjacent anonymous areas merge only when nothing tells them apart', () => {
    const p = k.spawn('t');
    const a = p.mmap(P, { prot: 'r' });
    const b = p.mmap(P, { prot: 'rw' });
    const c = p.mmap(P, { prot: 'rw' });
    expect([b, c]).toEqual([a - P, a - 2 * P]);
    expect(p.maps()).toEqual([area(c, b + P, 'rw'), area(a, a + P, 'r')]);
  });

  it('mapping allocates no frame', () => {
    const p = k.spawn('t');
    p.mmap(64 * P);
    expect(free()).toBe(FREE_AT_BOOT);
  });

  it("prot 'none': read and write are EFAULT", () => {
    const p = k.spawn('t');
    const a = p.mmap(P, { prot: 'none' });
    expect(p.maps()[0]!.prot).toBe('none');
    expectErr(() => p.read(a, 1), 'EFAULT');
    expectErr(() => p.write(a, bytes(1, 1)), 'EFAULT');
    expectErr(() => p.memset(a, 1, 1), 'EFAULT');
  });

  it("prot 'r': reads zeros, write is EFAULT", () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P, { prot: 'r' });
    expect(filled(p, a, 2 * P, 0)).toBe(true);
    expectErr(() => p.write(a, bytes(1, 1)), 'EFAULT');
    expect(free()).toBe(FREE_AT_BOOT);
  });

  it("prot 'rw': what is written is read back", () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P, { prot: 'rw' });
    p.write(a + P - 2, Uint8Array.of(1, 2, 3, 4));
    expect([...p.read(a + P - 3, 6)]).toEqual([0, 1, 2, 3, 4, 0]);
  });

  it('shared: shown as shared; a forked child and its parent see each other\'s writes', () => {
    const p = k.spawn('parent');
    const a = p.mmap(2 * P, { shared: true });
    expect(p.maps()).toEqual([area(a, a + 2 * P, 'rw', { shared: true })]);
    p.write(a, Uint8Array.of(0x41));
    const c = p.fork('child');
    expect(c.read(a, 1)[0]).toBe(0x41);
    c.write(a + 1, Uint8Array.of(0x42));
    expect([...p.read(a, 2)]).toEqual([0x41, 0x42]);
    expect(p.pfnOf(a)).toBe(c.pfnOf(a));
    expect(k.meminfo().Shmem).toBe(4);
  });

  it('shared: the pages live until the last mapper unmaps; then they are freed', () => {
    const p = k.spawn('parent');
    const a = p.mmap(2 * P, { shared: true });
    p.memset(a, 7, 2 * P);
    const c = p.fork('child');
    p.exit();
    expect(free()).toBe(FREE_AT_BOOT - 2);
    expect(filled(c, a, 2 * P, 7)).toBe(true);
    c.munmap(a, 2 * P);
    expect(free()).toBe(FREE_AT_BOOT);
  });

  it.each([
    ['0', 0],
    ['-4096', -P],
    ['1.5', 1.5],
    ['NaN', Number.NaN],
  ])('length %s is EINVAL and maps nothing', (_s, len) => {
    const p = k.spawn('t');
    expect(expectErr(() => p.mmap(len), 'EINVAL').errno).toBe(22);
    expect(p.maps()).toEqual([]);
  });

  it('an unknown prot is EINVAL', () => {
    const p = k.spawn('t');
    expectErr(() => p.mmap(P, { prot: 'wx' as never }), 'EINVAL');
    expect(p.maps()).toEqual([]);
  });

  it('an unknown special mapping is EINVAL', () => {
    const p = k.spawn('t');
    expectErr(() => p.mmap(P, { special: ['bogus' as never] }), 'EINVAL');
    expect(p.maps()).toEqual([]);
  });

  it('more than the address space below MMAP_BASE is ENOMEM', () => {
    const p = k.spawn('t');
    expectErr(() => p.mmap(MMAP_BASE), 'ENOMEM');
    expect(p.maps()).toEqual([]);
  });

  it('a hole left by munmap is reused by the next mmap that fits', () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    const b = p.mmap(4 * P);
    p.munmap(a, 4 * P);
    expect(p.mmap(2 * P)).toBe(a + 2 * P);
    expect(b).toBe(a - 4 * P);
  });
});

// ---- munmap -----------------------------------------------------------------------------

describe('munmap', () => {
  it('unmapping the middle two of four pages splits the area in two and frees their frames', () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    p.memset(a, 0x11, 4 * P);
    expect(free()).toBe(FREE_AT_BOOT - 4);
    p.munmap(a + P, 2 * P);
    expect(p.maps()).toEqual([area(a, a + P, 'rw'), area(a + 3 * P, a + 4 * P, 'rw')]);
    expect(free()).toBe(FREE_AT_BOOT - 2);
    expect(p.pfnOf(a + P)).toBe(null);
    expect(filled(p, a, P, 0x11)).toBe(true);
    expect(filled(p, a + 3 * P, P, 0x11)).toBe(true);
    expectErr(() => p.read(a + P, 1), 'EFAULT');
  });

  it('a length that is not a page multiple is rounded up', () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    p.munmap(a, P + 1);
    expect(p.maps()).toEqual([area(a + 2 * P, a + 4 * P, 'rw')]);
  });

  it('unmapping a range where nothing is mapped succeeds and changes nothing', () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    p.munmap(a - 16 * P, 8 * P);
    expect(p.maps()).toEqual([area(a, a + 4 * P, 'rw')]);
  });

  it('one munmap across two areas and the hole between them removes both', () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P);
    const b = p.mmap(2 * P, { prot: 'r' });
    p.munmap(b + P, P); // a hole inside b
    p.munmap(b, 4 * P);
    expect(p.maps()).toEqual([]);
  });

  it.each([
    ['an unaligned start', (p: Process, a: number) => p.munmap(a + 1, P)],
    ['length 0', (p: Process, a: number) => p.munmap(a, 0)],
    ['a negative length', (p: Process, a: number) => p.munmap(a, -P)],
    ['a range beyond the user address space', (p: Process, a: number) => p.munmap(a, 2 ** 47)],
  ])('%s is EINVAL and unmaps nothing', (_what, call) => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    expectErr(() => call(p, a), 'EINVAL');
    expect(p.maps()).toEqual([area(a, a + 4 * P, 'rw')]);
  });
});

// ---- mprotect ---------------------------------------------------------------------------

describe('mprotect', () => {
  it("making page 1 of 4 read-only splits the area in three", () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    p.mprotect(a + P, P, 'r');
    expect(p.maps()).toEqual([area(a, a + P, 'rw'), area(a + P, a + 2 * P, 'r'), area(a + 2 * P, a + 4 * P, 'rw')]);
  });

  it('making it rw again merges the three back into one', () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    p.memset(a, 1, 4 * P); // give the area an anon_vma: the pieces must still merge
    p.mprotect(a + P, P, 'r');
    p.mprotect(a + P, P, 'rw');
    expect(p.maps()).toEqual([area(a, a + 4 * P, 'rw')]);
    expect(filled(p, a, 4 * P, 1)).toBe(true);
  });

  it('protecting the first half then the second half gives one area, merged with its left neighbour', () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    p.mprotect(a, 2 * P, 'none');
    p.mprotect(a + 2 * P, 2 * P, 'none');
    expect(p.maps()).toEqual([area(a, a + 4 * P, 'none')]);
  });

  it('the same prot again changes nothing', () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    p.mprotect(a + P, P, 'rw');
    expect(p.maps()).toEqual([area(a, a + 4 * P, 'rw')]);
  });

  it('mprotect of the lower of two adjacent areas to the upper\'s prot merges them (vma_merge)', () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P);
    const b = p.mmap(2 * P, { prot: 'r' }); // right below a
    p.mprotect(b, 2 * P, 'rw');
    // b's pgoff is b>>12, a's a>>12: contiguous, same flags, no anon_vma yet: vma_merge joins them.
    expect(p.maps()).toEqual([area(b, a + 2 * P, 'rw')]);
  });

  it('a range with a hole: ENOMEM, and the part before the hole was changed (the part after was not)', () => {
    const p = k.spawn('t');
    const a = p.mmap(3 * P);
    p.munmap(a + P, P);
    const e = expectErr(() => p.mprotect(a, 3 * P, 'r'), 'ENOMEM');
    expect(e.errno).toBe(12);
    expect(p.maps()).toEqual([area(a, a + P, 'r'), area(a + 2 * P, a + 3 * P, 'rw')]);
  });

  it('an unmapped start: ENOMEM and nothing changed', () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P);
    expectErr(() => p.mprotect(a - P, 3 * P, 'r'), 'ENOMEM');
    expect(p.maps()).toEqual([area(a, a + 2 * P, 'rw')]);
  });

  it('length 0 is a no-op, even where nothing is mapped', () => {
    const p = k.spawn('t');
    p.mprotect(0x10000, 0, 'r');
    expect(p.maps()).toEqual([]);
  });

  it('an unaligned start is EINVAL; an unknown prot is EINVAL', () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P);
    expectErr(() => p.mprotect(a + 8, P, 'r'), 'EINVAL');
    expectErr(() => p.mprotect(a, P, 'x' as never), 'EINVAL');
    expect(p.maps()).toEqual([area(a, a + 2 * P, 'rw')]);
  });

  it('rw → r write-protects the present ptes (same frames)', () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P);
    p.memset(a, 3, 2 * P);
    const before = [p.pfnOf(a), p.pfnOf(a + P)];
    expect(pte(p, a) & PTE_WRITE).toBe(PTE_WRITE);
    p.mprotect(a, 2 * P, 'r');
    expect(pte(p, a) & PTE_WRITE).toBe(0);
    expect(pte(p, a + P) & PTE_WRITE).toBe(0);
    expect([p.pfnOf(a), p.pfnOf(a + P)]).toEqual(before);
    expect(filled(p, a, 2 * P, 3)).toBe(true);
  });

  it('after mprotect r a write is EFAULT and the contents are unchanged', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    p.memset(a, 3, P);
    p.mprotect(a, P, 'r');
    expectErr(() => p.write(a, bytes(10, 9)), 'EFAULT');
    expectErr(() => p.memset(a, 9, 10), 'EFAULT');
    expect(filled(p, a, P, 3)).toBe(true);
  });

  it('r → rw leaves the ptes read-only; the next write fault reuses the same frame (no copy)', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    p.memset(a, 3, P);
    const pfn = p.pfnOf(a);
    p.mprotect(a, P, 'r');
    p.mprotect(a, P, 'rw');
    expect(pte(p, a) & PTE_WRITE).toBe(0);
    p.write(a, Uint8Array.of(4));
    expect(p.pfnOf(a)).toBe(pfn);
    expect(pte(p, a) & PTE_WRITE).toBe(PTE_WRITE);
    expect(k.vmstat.cow_faults).toBe(0);
    expect(p.read(a, 2)).toEqual(Uint8Array.of(4, 3));
  });

  it('PROT_NONE keeps the contents: back to r, they read as before', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    p.memset(a, 0x77, P);
    p.mprotect(a, P, 'none');
    expectErr(() => p.read(a, 1), 'EFAULT');
    p.mprotect(a, P, 'r');
    expect(filled(p, a, P, 0x77)).toBe(true);
  });
});

// ---- madvise ----------------------------------------------------------------------------

describe('madvise', () => {
  it('MADV_DONTNEED frees the frames, empties the ptes, and the pages read back as zeros', () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    p.memset(a, 0xee, 4 * P);
    expect(free()).toBe(FREE_AT_BOOT - 4);
    p.madvise(a + P, 2 * P, 'MADV_DONTNEED');
    expect(free()).toBe(FREE_AT_BOOT - 2);
    expect([p.pfnOf(a + P), p.pfnOf(a + 2 * P)]).toEqual([null, null]);
    expect(p.maps()).toEqual([area(a, a + 4 * P, 'rw')]);
    expect(filled(p, a + P, 2 * P, 0)).toBe(true);
    expect(p.pfnOf(a + P)).toBe(k.mem.zeroPfn);
    expect(filled(p, a, P, 0xee)).toBe(true);
    expect(filled(p, a + 3 * P, P, 0xee)).toBe(true);
  });

  it('MADV_DONTNEED in a forked child frees nothing (the parent still maps the frames) and leaves the parent\'s data', () => {
    const p = k.spawn('parent');
    const a = p.mmap(2 * P);
    p.memset(a, 5, 2 * P);
    const c = p.fork('child');
    c.madvise(a, 2 * P, 'MADV_DONTNEED');
    expect(free()).toBe(FREE_AT_BOOT - 2);
    expect(filled(c, a, 2 * P, 0)).toBe(true);
    expect(filled(p, a, 2 * P, 5)).toBe(true);
  });

  it.each(['MADV_MERGEABLE', 'MADV_UNMERGEABLE'] as const)('%s is EINVAL on a kernel without KSM', (advice) => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P);
    expect(k.ksm).toBe(null);
    expectErr(() => p.madvise(a, 2 * P, advice), 'EINVAL');
    expect(p.maps()).toEqual([area(a, a + 2 * P, 'rw')]);
  });

  it('an unknown advice is EINVAL', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    expectErr(() => p.madvise(a, P, 'MADV_RANDOM' as never), 'EINVAL');
  });

  it('MADV_NORMAL changes nothing', () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P);
    p.memset(a, 1, 2 * P);
    p.madvise(a, 2 * P, 'MADV_NORMAL');
    expect(p.maps()).toEqual([area(a, a + 2 * P, 'rw')]);
    expect(filled(p, a, 2 * P, 1)).toBe(true);
  });

  it('a range with a hole: both mapped parts are zapped, then ENOMEM', () => {
    const p = k.spawn('t');
    const a = p.mmap(3 * P);
    p.memset(a, 9, 3 * P);
    p.munmap(a + P, P);
    expectErr(() => p.madvise(a - P, 4 * P, 'MADV_DONTNEED'), 'ENOMEM');
    expect([p.pfnOf(a), p.pfnOf(a + 2 * P)]).toEqual([null, null]);
    expect(free()).toBe(FREE_AT_BOOT);
  });

  it('MADV_DONTNEED on an mlocked area is EINVAL and leaves the page', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    p.memset(a, 9, P);
    p.mlock(a, P);
    const pfn = p.pfnOf(a);
    expectErr(() => p.madvise(a, P, 'MADV_DONTNEED'), 'EINVAL');
    expect(p.pfnOf(a)).toBe(pfn);
    expect(filled(p, a, P, 9)).toBe(true);
  });

  it.each([['hugetlb'], ['pfnmap']] as const)('MADV_DONTNEED on a %s area is EINVAL', (special) => {
    const p = k.spawn('t');
    const a = p.mmap(P, { special: [special] });
    expectErr(() => p.madvise(a, P, 'MADV_DONTNEED'), 'EINVAL');
  });

  it('unaligned start is EINVAL; length 0 is a no-op', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    p.memset(a, 9, P);
    expectErr(() => p.madvise(a + 1, P, 'MADV_DONTNEED'), 'EINVAL');
    p.madvise(a, 0, 'MADV_DONTNEED');
    expect(filled(p, a, P, 9)).toBe(true);
  });
});

// ---- mlock / munlock ---------------------------------------------------------------------

describe('mlock / munlock', () => {
  it('mlock of 4 untouched rw pages faults them in: Mlocked 16 kB, area locked, 4 frames used', () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    p.mlock(a, 4 * P);
    expect(k.meminfo().Mlocked).toBe(16);
    expect(p.maps()).toEqual([area(a, a + 4 * P, 'rw', { locked: true })]);
    expect(free()).toBe(FREE_AT_BOOT - 4);
    for (let i = 0; i < 4; i++) expect(k.mem.flags[p.pfnOf(a + i * P)!]! & PG_MLOCKED).toBe(PG_MLOCKED);
    expect(k.mem.lruSize[2]).toBe(4); // LRU_UNEVICTABLE
  });

  it('munlock clears it: Mlocked 0, pages back on the active list', () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    p.mlock(a, 4 * P);
    p.munlock(a, 4 * P);
    expect(k.meminfo().Mlocked).toBe(0);
    expect(p.maps()).toEqual([area(a, a + 4 * P, 'rw')]);
    expect([k.mem.lruSize[0], k.mem.lruSize[1], k.mem.lruSize[2]]).toEqual([0, 4, 0]);
  });

  it('mlock of an unaligned address and length locks the pages it touches: 1 byte before a page boundary + 2 bytes → 2 pages', () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    p.mlock(a + P - 1, 2);
    expect(p.maps()).toEqual([area(a, a + 2 * P, 'rw', { locked: true }), area(a + 2 * P, a + 4 * P, 'rw')]);
    expect(k.meminfo().Mlocked).toBe(8);
  });

  it('mlock of a read-only area maps the zero page and locks no frame', () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P, { prot: 'r' });
    p.mlock(a, 2 * P);
    expect(p.pfnOf(a)).toBe(k.mem.zeroPfn);
    expect(k.meminfo().Mlocked).toBe(0);
    expect(free()).toBe(FREE_AT_BOOT);
  });

  it('mlock of a PROT_NONE area locks it but faults nothing in', () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P, { prot: 'none' });
    p.mlock(a, 2 * P);
    expect(p.maps()[0]!.locked).toBe(true);
    expect(p.pfnOf(a)).toBe(null);
  });

  it('mlock of a forked writable area breaks COW: the child gets its own copies, the parent keeps its frames unlocked', () => {
    const p = k.spawn('parent');
    const a = p.mmap(2 * P);
    p.memset(a, 0x33, 2 * P);
    const c = p.fork('child');
    const shared = [p.pfnOf(a), p.pfnOf(a + P)];
    expect([c.pfnOf(a), c.pfnOf(a + P)]).toEqual(shared);
    c.mlock(a, 2 * P);
    expect(c.pfnOf(a)).not.toBe(shared[0]);
    expect(c.pfnOf(a + P)).not.toBe(shared[1]);
    expect([p.pfnOf(a), p.pfnOf(a + P)]).toEqual(shared);
    expect(k.meminfo().Mlocked).toBe(8);
    expect(k.mem.flags[shared[0]!]! & PG_MLOCKED).toBe(0);
    expect(filled(c, a, 2 * P, 0x33)).toBe(true);
    expect(free()).toBe(FREE_AT_BOOT - 4);
    expect(k.vmstat.cow_faults).toBe(2);
  });

  it('a forked child does not inherit the lock; its mapping of a locked page keeps the page mlocked for the parent', () => {
    const p = k.spawn('parent');
    const a = p.mmap(P);
    p.mlock(a, P);
    const c = p.fork('child');
    expect(c.maps()).toEqual([area(a, a + P, 'rw')]);
    c.exit();
    expect(k.meminfo().Mlocked).toBe(4);
  });

  it('exit of an mlocking process frees its locked pages', () => {
    const p = k.spawn('t');
    const a = p.mmap(4 * P);
    p.mlock(a, 4 * P);
    p.exit();
    expect(k.meminfo().Mlocked).toBe(0);
    expect(free()).toBe(FREE_AT_BOOT);
  });

  it('mlock with an unmapped start is ENOMEM and locks nothing', () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P);
    expectErr(() => p.mlock(a - P, 2 * P), 'ENOMEM');
    expect(p.maps()).toEqual([area(a, a + 2 * P, 'rw')]);
    expect(free()).toBe(FREE_AT_BOOT);
  });

  it('mlock over a hole locks and populates the part before it, then ENOMEM', () => {
    const p = k.spawn('t');
    const a = p.mmap(3 * P);
    p.munmap(a + P, P);
    expectErr(() => p.mlock(a, 3 * P), 'ENOMEM');
    expect(p.maps()).toEqual([area(a, a + P, 'rw', { locked: true }), area(a + 2 * P, a + 3 * P, 'rw')]);
    expect(k.meminfo().Mlocked).toBe(4);
  });

  it('munlock with an unmapped start is ENOMEM; over a hole it unlocks the part before it, then ENOMEM', () => {
    const p = k.spawn('t');
    const a = p.mmap(3 * P);
    p.mlock(a, 3 * P);
    p.munmap(a + P, P);
    expectErr(() => p.munlock(a - P, P), 'ENOMEM');
    expect(k.meminfo().Mlocked).toBe(8);
    expectErr(() => p.munlock(a, 3 * P), 'ENOMEM');
    expect(p.maps()).toEqual([area(a, a + P, 'rw'), area(a + 2 * P, a + 3 * P, 'rw', { locked: true })]);
    expect(k.meminfo().Mlocked).toBe(4);
  });

  it('a shared area: mlock counts the shared page once; munlock clears it', () => {
    const p = k.spawn('t');
    const a = p.mmap(P, { shared: true });
    p.memset(a, 1, P);
    p.mlock(a, P);
    expect(k.meminfo().Mlocked).toBe(4);
    p.munlock(a, P);
    expect(k.meminfo().Mlocked).toBe(0);
  });

  it('munlock of a page that another locked area still maps keeps PG_mlocked (try_to_munlock)', () => {
    // A read-only private area shared by fork: mlock faults it for read, so no COW,
    // and parent and child lock the very same frame.
    const p = k.spawn('parent');
    const a = p.mmap(P);
    p.memset(a, 1, P);
    p.mprotect(a, P, 'r');
    const c = p.fork('child');
    p.mlock(a, P);
    c.mlock(a, P);
    const pfn = p.pfnOf(a)!;
    expect(c.pfnOf(a)).toBe(pfn);
    p.munlock(a, P);
    expect(k.mem.flags[pfn]! & PG_MLOCKED).toBe(PG_MLOCKED);
    expect(k.meminfo().Mlocked).toBe(4);
    c.munlock(a, P);
    expect(k.mem.flags[pfn]! & PG_MLOCKED).toBe(0);
    expect(k.meminfo().Mlocked).toBe(0);
  });

  it('munmap of the last locked mapping of a page clears PG_mlocked', () => {
    const p = k.spawn('parent');
    const a = p.mmap(P);
    p.memset(a, 1, P);
    p.mprotect(a, P, 'r');
    const c = p.fork('child');
    p.mlock(a, P);
    const pfn = p.pfnOf(a)!;
    p.munmap(a, P);
    expect(c.pfnOf(a)).toBe(pfn);
    expect(k.mem.flags[pfn]! & PG_MLOCKED).toBe(0);
  });

  it('a negative length is EINVAL for mlock and munlock', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    expectErr(() => p.mlock(a, -1), 'EINVAL');
    expectErr(() => p.munlock(a, -1), 'EINVAL');
    expect(p.maps()).toEqual([area(a, a + P, 'rw')]);
  });

  it('length 0 is a no-op for mlock and munlock', () => {
    const p = k.spawn('t');
    p.mlock(0x10000, 0);
    p.munlock(0x10000, 0);
    expect(k.meminfo().Mlocked).toBe(0);
  });
});

// ---- faults -------------------------------------------------------------------------------

describe('faults', () => {
  it('reading untouched memory maps the shared zero page (special pte) and returns zeros', () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P);
    expect(p.pfnOf(a)).toBe(null);
    expect(filled(p, a, 2 * P, 0)).toBe(true);
    expect(p.pfnOf(a)).toBe(k.mem.zeroPfn);
    expect(p.pfnOf(a + P)).toBe(k.mem.zeroPfn);
    expect(pte(p, a) & PTE_SPECIAL).toBe(PTE_SPECIAL);
    expect(free()).toBe(FREE_AT_BOOT);
    expect(k.mem.count[k.mem.zeroPfn]).toBe(1);
  });

  it('the first write allocates one zeroed frame', () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P);
    p.write(a + 10, Uint8Array.of(0xab));
    const pfn = p.pfnOf(a)!;
    expect(pfn).not.toBe(k.mem.zeroPfn);
    expect(p.pfnOf(a + P)).toBe(null);
    expect(free()).toBe(FREE_AT_BOOT - 1);
    const page = p.read(a, P);
    expect(page[10]).toBe(0xab);
    expect(page.filter((b) => b !== 0).length).toBe(1);
    expect(k.mem.count[pfn]).toBe(1);
    expect(k.mem.pageMapcount(pfn)).toBe(1);
    expect(k.meminfo().AnonPages).toBe(4);
  });

  it('a write after a read replaces the zero page with a new frame; the zero page stays all zeros', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    p.read(a, 1);
    p.memset(a, 0xff, P);
    expect(p.pfnOf(a)).not.toBe(k.mem.zeroPfn);
    expect(k.mem.comparePages(k.mem.zeroPfn, k.mem.zeroPfn)).toBe(0);
    expect(k.mem.readPage(0).every((b) => b === 0)).toBe(true);
    expect(k.vmstat.cow_faults).toBe(1);
  });

  it('running out of memory with no swap is ENOMEM', () => {
    const small = new HostKernel({ memoryMiB: 1, blockMiB: 1, seed: 1 }); // 255 free frames
    const p = small.spawn('hog');
    const a = p.mmap(300 * P);
    expectErr(() => p.memset(a, 1, 300 * P), 'ENOMEM');
    expect(small.mem.nrFreeOnline).toBe(0);
    small.checkInvariants();
    p.exit();
    expect(small.mem.nrFreeOnline).toBe(255);
    small.checkInvariants();
  });
});

// ---- fork and copy-on-write -----------------------------------------------------------------------

describe('fork and copy-on-write', () => {
  function forked(): { p: Process; c: Process; a: number } {
    const p = k.spawn('parent');
    const a = p.mmap(2 * P);
    p.memset(a, 0x10, 2 * P);
    const c = p.fork('child');
    return { p, c, a };
  }

  it('the child sees the parent\'s memory and shares its frames, write-protected in both', () => {
    const { p, c, a } = forked();
    expect(c.maps()).toEqual(p.maps());
    expect(filled(c, a, 2 * P, 0x10)).toBe(true);
    expect(c.pfnOf(a)).toBe(p.pfnOf(a));
    expect(pte(p, a) & PTE_WRITE).toBe(0);
    expect(pte(c, a) & PTE_WRITE).toBe(0);
    expect(k.mem.pageMapcount(p.pfnOf(a)!)).toBe(2);
    expect(k.mem.count[p.pfnOf(a)!]).toBe(2);
    expect(free()).toBe(FREE_AT_BOOT - 2);
  });

  it('the child\'s write copies the page: parent and child each see their own data, frames differ', () => {
    const { p, c, a } = forked();
    const before = p.pfnOf(a);
    c.write(a, Uint8Array.of(0xcc));
    expect(c.pfnOf(a)).not.toBe(before);
    expect(p.pfnOf(a)).toBe(before);
    expect(c.read(a, 2)).toEqual(Uint8Array.of(0xcc, 0x10));
    expect(p.read(a, 2)).toEqual(Uint8Array.of(0x10, 0x10));
    expect(k.vmstat.cow_faults).toBe(1);
    expect(free()).toBe(FREE_AT_BOOT - 3);
  });

  it('the parent\'s write copies too, the child keeps the original', () => {
    const { p, c, a } = forked();
    const before = p.pfnOf(a);
    p.write(a, Uint8Array.of(0xdd));
    expect(c.pfnOf(a)).toBe(before);
    expect(p.pfnOf(a)).not.toBe(before);
    expect(c.read(a, 1)[0]).toBe(0x10);
    expect(p.read(a, 1)[0]).toBe(0xdd);
  });

  it('after the child has written its own copy, the parent\'s write reuses the original frame (no second copy)', () => {
    const { p, c, a } = forked();
    const orig = p.pfnOf(a);
    c.write(a, Uint8Array.of(1));
    p.write(a, Uint8Array.of(2));
    expect(p.pfnOf(a)).toBe(orig);
    expect(k.vmstat.cow_faults).toBe(1);
    expect(p.read(a, 1)[0]).toBe(2);
    expect(c.read(a, 1)[0]).toBe(1);
  });

  it('after the child has exited, the parent\'s write reuses the original frame', () => {
    const { p, c, a } = forked();
    const orig = p.pfnOf(a);
    c.exit();
    p.memset(a, 0x20, 2 * P);
    expect(p.pfnOf(a)).toBe(orig);
    expect(k.vmstat.cow_faults).toBe(0);
    expect(free()).toBe(FREE_AT_BOOT - 2);
  });

  it('a grandchild shares too; three writers end with three frames per page', () => {
    const { p, c, a } = forked();
    const g = c.fork('grandchild');
    expect(k.mem.pageMapcount(p.pfnOf(a)!)).toBe(3);
    p.write(a, Uint8Array.of(1));
    c.write(a, Uint8Array.of(2));
    g.write(a, Uint8Array.of(3));
    expect(new Set([p.pfnOf(a), c.pfnOf(a), g.pfnOf(a)]).size).toBe(3);
    expect([p.read(a, 1)[0], c.read(a, 1)[0], g.read(a, 1)[0]]).toEqual([1, 2, 3]);
    // The last writer found itself alone on the original and reused it.
    expect(k.vmstat.cow_faults).toBe(2);
  });

  it('untouched and zero-page-only areas are not copied: the child faults its own', () => {
    const p = k.spawn('parent');
    const a = p.mmap(2 * P);
    p.read(a, 1); // zero page, no anon_vma
    const c = p.fork('child');
    expect(c.pfnOf(a)).toBe(null);
    expect(filled(c, a, 2 * P, 0)).toBe(true);
  });

  it('a dontcopy area is not inherited', () => {
    const p = k.spawn('parent');
    const a = p.mmap(P, { special: ['dontcopy'] });
    const b = p.mmap(P);
    const c = p.fork('child');
    expect(c.maps()).toEqual([area(b, b + P, 'rw')]);
    expectErr(() => c.read(a, 1), 'EFAULT');
  });

  it('fork of a read-only private area keeps it read-only and shared until a forced write', () => {
    const p = k.spawn('parent');
    const a = p.mmap(P);
    p.memset(a, 0x44, P);
    p.mprotect(a, P, 'r');
    const c = p.fork('child');
    expect(c.pfnOf(a)).toBe(p.pfnOf(a));
    expect(c.maps()).toEqual([area(a, a + P, 'r')]);
  });

  it('exit of both frees every frame', () => {
    const { p, c, a } = forked();
    c.write(a, Uint8Array.of(1));
    p.exit();
    c.exit();
    expect(free()).toBe(FREE_AT_BOOT);
    expect(k.processes.size).toBe(0);
  });
});

// ---- /proc/pid/mem --------------------------------------------------------------------------------

describe('pokeMem / peekMem', () => {
  it('pokeMem into a read-only area writes (the area stays read-only)', () => {
    const p = k.spawn('t');
    const a = p.mmap(P, { prot: 'r' });
    p.pokeMem(a + 5, Uint8Array.of(9));
    expect(p.read(a + 4, 3)).toEqual(Uint8Array.of(0, 9, 0));
    expect(p.maps()).toEqual([area(a, a + P, 'r')]);
    expect(pte(p, a) & PTE_WRITE).toBe(0);
    expectErr(() => p.write(a, Uint8Array.of(1)), 'EFAULT');
  });

  it('pokeMem over the zero page allocates a frame; the zero page and other readers stay zero', () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P, { prot: 'r' });
    p.read(a, 2 * P);
    p.pokeMem(a, bytes(P, 0xaa));
    expect(p.pfnOf(a)).not.toBe(k.mem.zeroPfn);
    expect(p.pfnOf(a + P)).toBe(k.mem.zeroPfn);
    expect(filled(p, a + P, P, 0)).toBe(true);
    expect(k.mem.readPage(0).every((b) => b === 0)).toBe(true);
  });

  it('pokeMem into a forked read-only area copies: the other process still sees the old contents', () => {
    const p = k.spawn('parent');
    const a = p.mmap(P);
    p.memset(a, 0x01, P);
    p.mprotect(a, P, 'r');
    const c = p.fork('child');
    const orig = p.pfnOf(a);
    c.pokeMem(a, Uint8Array.of(0x02));
    expect(c.read(a, 2)).toEqual(Uint8Array.of(0x02, 0x01));
    expect(p.read(a, 2)).toEqual(Uint8Array.of(0x01, 0x01));
    expect(p.pfnOf(a)).toBe(orig);
    expect(c.pfnOf(a)).not.toBe(orig);
  });

  it('pokeMem into a forked PROT_NONE area copies as well', () => {
    const p = k.spawn('parent');
    const a = p.mmap(P);
    p.memset(a, 0x01, P);
    p.mprotect(a, P, 'none');
    const c = p.fork('child');
    p.pokeMem(a, Uint8Array.of(0x03));
    expect(p.peekMem(a, 1)[0]).toBe(0x03);
    expect(c.peekMem(a, 1)[0]).toBe(0x01);
  });

  it('peekMem reads PROT_NONE memory that read() refuses', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    p.memset(a, 0x5e, P);
    p.mprotect(a, P, 'none');
    expectErr(() => p.read(a, 1), 'EFAULT');
    expect(peekFilled(p, a, P, 0x5e)).toBe(true);
  });

  it('peekMem and pokeMem of unmapped memory are EFAULT', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    expectErr(() => p.peekMem(a - P, 1), 'EFAULT');
    expectErr(() => p.pokeMem(a + P - 1, Uint8Array.of(1, 2)), 'EFAULT');
    expect(p.pfnOf(a)).toBe(null);
  });
});

// ---- pins --------------------------------------------------------------------------------------------

describe('pin (get_user_pages)', () => {
  it('takes an extra reference on the frame', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    p.memset(a, 1, P);
    const pin = p.pin(a + 100);
    expect(pin.pfn).toBe(p.pfnOf(a));
    expect(k.mem.count[pin.pfn]).toBe(2);
    pin.release();
    expect(k.mem.count[pin.pfn]).toBe(1);
  });

  it('the pinned frame outlives the process until released, keeping its contents', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    p.memset(a, 0x42, P);
    const pin = p.pin(a);
    p.exit();
    expect(free()).toBe(FREE_AT_BOOT - 1);
    expect(k.mem.count[pin.pfn]).toBe(1);
    expect(k.mem.pageMapcount(pin.pfn)).toBe(0);
    expect(k.mem.readPage(pin.pfn)[0]).toBe(0x42);
    k.checkInvariants();
    pin.release();
    expect(free()).toBe(FREE_AT_BOOT);
  });

  it('releasing twice is EINVAL', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    const pin = p.pin(a, { write: true });
    pin.release();
    expectErr(() => pin.release(), 'EINVAL');
    expect(k.pins.size).toBe(0);
  });

  it('a read pin of untouched memory pins the zero page', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    const pin = p.pin(a);
    expect(pin.pfn).toBe(k.mem.zeroPfn);
    expect(k.mem.count[0]).toBe(2);
    k.checkInvariants(); // the zero page's count is 1 + its pins
    pin.release();
    expect(k.mem.count[0]).toBe(1);
  });

  it('a write pin of a forked page breaks COW first and pins the private copy', () => {
    const p = k.spawn('parent');
    const a = p.mmap(P);
    p.memset(a, 1, P);
    const c = p.fork('child');
    const shared = c.pfnOf(a);
    const pin = c.pin(a, { write: true });
    expect(pin.pfn).toBe(c.pfnOf(a));
    expect(pin.pfn).not.toBe(shared);
    pin.release();
  });

  it('a write pin of a read-only area, or any pin of PROT_NONE or unmapped memory, is EFAULT', () => {
    const p = k.spawn('t');
    const r = p.mmap(P, { prot: 'r' });
    const n = p.mmap(P, { prot: 'none' });
    expectErr(() => p.pin(r, { write: true }), 'EFAULT');
    expectErr(() => p.pin(n), 'EFAULT');
    expectErr(() => p.pin(n - P), 'EFAULT');
    expect(k.pins.size).toBe(0);
  });
});

// ---- exited processes ---------------------------------------------------------------------------------

describe('an exited process', () => {
  const calls: [string, (p: Process, a: number) => unknown][] = [
    ['mmap', (p) => p.mmap(P)],
    ['munmap', (p, a) => p.munmap(a, P)],
    ['mprotect', (p, a) => p.mprotect(a, P, 'r')],
    ['madvise', (p, a) => p.madvise(a, P, 'MADV_DONTNEED')],
    ['mlock', (p, a) => p.mlock(a, P)],
    ['munlock', (p, a) => p.munlock(a, P)],
    ['fork', (p) => p.fork()],
    ['exit', (p) => p.exit()],
    ['read', (p, a) => p.read(a, 1)],
    ['write', (p, a) => p.write(a, Uint8Array.of(1))],
    ['memset', (p, a) => p.memset(a, 1, 1)],
    ['peekMem', (p, a) => p.peekMem(a, 1)],
    ['pokeMem', (p, a) => p.pokeMem(a, Uint8Array.of(1))],
    ['pin', (p, a) => p.pin(a)],
  ];
  it.each(calls)('%s is ESRCH', (_name, call) => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    p.exit();
    expect(expectErr(() => call(p, a), 'ESRCH').errno).toBe(3);
    expect(free()).toBe(FREE_AT_BOOT);
  });

  it('has an empty address space and is gone from the process table', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    p.memset(a, 1, P);
    p.exit();
    expect(p.maps()).toEqual([]);
    expect(p.pfnOf(a)).toBe(null);
    expect(k.processes.has(p.pid)).toBe(false);
    expect(p.mm.mmUsers).toBe(0);
  });
});

// ---- EFAULT before anything is written ------------------------------------------------------------------

describe('EFAULT before anything is written', () => {
  it('a 2-page write whose second page is unmapped writes nothing and allocates nothing', () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P);
    p.munmap(a + P, P);
    expectErr(() => p.write(a, bytes(2 * P, 0xab)), 'EFAULT');
    expect(p.pfnOf(a)).toBe(null);
    expect(free()).toBe(FREE_AT_BOOT);
    expect(filled(p, a, P, 0)).toBe(true);
  });

  it('a memset running into a read-only area writes nothing', () => {
    const p = k.spawn('t');
    const a = p.mmap(2 * P);
    p.memset(a, 1, 2 * P);
    p.mprotect(a + P, P, 'r');
    expectErr(() => p.memset(a, 2, 2 * P), 'EFAULT');
    expect(filled(p, a, 2 * P, 1)).toBe(true);
  });

  it('a pokeMem whose last page is unmapped writes nothing, even into a forked page', () => {
    const p = k.spawn('parent');
    const a = p.mmap(2 * P);
    p.memset(a, 1, 2 * P);
    const c = p.fork('child');
    c.munmap(a + P, P);
    const shared = c.pfnOf(a);
    expectErr(() => c.pokeMem(a, bytes(P + 1, 2)), 'EFAULT');
    expect(c.pfnOf(a)).toBe(shared);
    expect(filled(c, a, P, 1)).toBe(true);
  });

  it('a read running past the end of an area is EFAULT', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    expectErr(() => p.read(a + P - 1, 2), 'EFAULT');
    expect(p.pfnOf(a)).toBe(null);
  });

  it('a negative or non-integer address is EFAULT', () => {
    const p = k.spawn('t');
    expectErr(() => p.read(-4096, 1), 'EFAULT');
    expectErr(() => p.write(1.5, Uint8Array.of(1)), 'EFAULT');
    expectErr(() => p.memset(0x10000, 1, -1), 'EFAULT');
  });

  it('a zero-length access anywhere is fine and touches nothing', () => {
    const p = k.spawn('t');
    expect(p.read(0x10000, 0).length).toBe(0);
    p.write(0x10000, new Uint8Array(0));
    p.memset(0x10000, 1, 0);
    expect(free()).toBe(FREE_AT_BOOT);
  });
});

// ---- pagemap ------------------------------------------------------------------------------------------------

describe('pfnOf', () => {
  it('is null for nothing mapped, the frame for a present pte, for any address inside the page', () => {
    const p = k.spawn('t');
    const a = p.mmap(P);
    expect(p.pfnOf(a)).toBe(null);
    p.memset(a, 1, P);
    const pfn = p.pfnOf(a);
    expect(pfn).not.toBe(null);
    expect(p.pfnOf(a + P - 1)).toBe(pfn);
    expect(pte(p, a) & PTE_KIND_MASK).toBe(PTE_PRESENT);
  });
});
