/**
 * Reclaim of ordinary anonymous pages (mm/vmscan.c, mm/memory.c do_swap_page(),
 * mm/swapfile.c; 2.6.33): the order pages go in, how many one call frees, pages
 * shared by fork, and when a swap slot is given back. test/mm/swap.test.ts covers
 * KSM pages, allocation-driven reclaim, mlock and pins, and swap full.
 *
 * The facts every expected number below comes from:
 *
 * - A written page goes on the head of the active list with its pte young; the
 *   list's tail is the page faulted in longest ago.
 * - One kernel.reclaim(n) makes at most 3 passes, and stops as soon as n are freed.
 *   A pass first ages the active list: its tail goes to the inactive list's head,
 *   young bits cleared, while the active list is longer than the inactive one (so,
 *   with the inactive list empty, ceil(a / 2) of a active pages move). Then it scans the
 *   inactive list from its tail, once over each page that was on it: a page whose
 *   pte is young again (touched since it was aged) goes back to the active list;
 *   any other page gets a slot, its ptes become swap entries, it is written if
 *   dirty and freed. So 16 untouched pages give 8 + 4 + 2 = 14 in one call, 8 pages
 *   4 + 2 + 1 = 7, 4 pages 2 + 1 + 1 = 4.
 * - A page read back stays in the swap cache, holding its slot, while swap is at
 *   most half full (vm_swap_full()); /proc/meminfo SwapCached counts those pages.
 *   It leaves the swap cache when a write finds nobody else holding it or its slot
 *   (reuse_swap_page()), when its last pte is zapped and no swap pte needs the slot
 *   (free_swap_cache()), or when reclaim frees it (clean: no write).
 * - Zapping a swap pte (exit, munmap, MADV_DONTNEED) drops one reference to the
 *   slot; the last one frees it (free_swap_and_cache()).
 *
 * 16 MiB of RAM (4096 frames, 4095 free besides the zero page) and 16 MiB of swap
 * (4096 slots, SwapTotal 16384 kB) unless a test says otherwise.
 */
import { describe, expect, it } from 'vitest';
import { Kernel, PAGE_SIZE, type Process } from '../../src/index.js';
import { LRU_ACTIVE_ANON, LRU_INACTIVE_ANON } from '../../src/mm/physmem.js';
import { errnoOf } from '../ksm/helpers.js';
import { holdsPages, meminfo, pattern, range, swapUsedKb, vmstat, writePages } from './helpers.js';

const P = PAGE_SIZE;
const SWAP_TOTAL = 16384;
const FREE_FRAMES = 4095;

function newKernel(swapMiB = 16): Kernel {
  return new Kernel({ memoryMiB: 16, swapMiB, blockMiB: 16, seed: 1 });
}

/** Indices of the pages of [addr, addr + n pages) that are not present (swapped out). */
function swappedOut(p: Process, addr: number, n: number): number[] {
  return range(n).filter((i) => p.pfnOf(addr + i * P) === null);
}

/** [active, inactive] list lengths. */
function lruSizes(k: Kernel): [number, number] {
  return [k.mem.lruSize[LRU_ACTIVE_ANON]!, k.mem.lruSize[LRU_INACTIVE_ANON]!];
}

/** One process with `n` pages written, tags 100.., faulted in order 0..n-1. */
function written(n: number, swapMiB = 16) {
  const k = newKernel(swapMiB);
  const p = k.spawn('p');
  const addr = p.mmap(n * P, { prot: 'rw' });
  const tags = range(n, 100);
  writePages(p, addr, tags);
  expect(lruSizes(k)).toEqual([n, 0]);
  k.checkInvariants();
  return { k, p, addr, tags };
}

/** A parent with `n` pages written (tags 40..), then forked: parent and child map the same frames. */
function forked(n: number) {
  const k = newKernel();
  const parent = k.spawn('parent');
  const addr = parent.mmap(n * P, { prot: 'rw' });
  const tags = range(n, 40);
  writePages(parent, addr, tags);
  const child = parent.fork('child');
  for (const i of range(n)) expect(child.pfnOf(addr + i * P)).toBe(parent.pfnOf(addr + i * P));
  k.checkInvariants();
  return { k, parent, child, addr, tags };
}

describe('reclaim order and how much one call frees', () => {
  it('16 untouched pages: reclaim(16) frees 14 (8 + 4 + 2 over three passes), the 14 oldest', () => {
    const { k, p, addr } = written(16);
    expect(k.reclaim(16)).toBe(14);
    k.checkInvariants();
    // Pass 1 ages pages 0..7 and frees them; pass 2 ages 8..11 of the 8 left; pass
    // 3 ages 12, 13 of the 4 left. Pages 14 and 15 were never aged: still active.
    expect(swappedOut(p, addr, 16)).toEqual(range(14));
    expect(lruSizes(k)).toEqual([2, 0]);
    expect(vmstat(k)).toMatchObject({ pswpout: 14, pswpin: 0 });
    expect(meminfo(k)).toMatchObject({ AnonPages: 2 * 4, MemFree: (FREE_FRAMES - 2) * 4, SwapFree: SWAP_TOTAL - 14 * 4, SwapCached: 0 });
  });

  it('what one call leaves the next takes: after reclaim(16) frees 14 of 16, reclaim(16) frees the last 2, and then 0', () => {
    const { k, p, addr, tags } = written(16);
    expect(k.reclaim(16)).toBe(14);
    k.checkInvariants();
    // Active list 14, 15 (tail 14): pass 1 ages and frees 14, pass 2 page 15.
    expect(k.reclaim(16)).toBe(2);
    k.checkInvariants();
    expect(swappedOut(p, addr, 16)).toEqual(range(16));
    expect(lruSizes(k)).toEqual([0, 0]);
    expect(k.reclaim(16)).toBe(0);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpout: 16 });
    expect(meminfo(k)).toMatchObject({ AnonPages: 0, MemFree: FREE_FRAMES * 4, SwapFree: SWAP_TOTAL - 16 * 4 });
    expect(holdsPages(p, addr, tags)).toBe(true);
    k.checkInvariants();
  });

  it('8 untouched pages: reclaim(8) frees 7 (4 + 2 + 1), leaving the newest', () => {
    const { k, p, addr } = written(8);
    expect(k.reclaim(8)).toBe(7);
    k.checkInvariants();
    expect(swappedOut(p, addr, 8)).toEqual(range(7));
    expect(lruSizes(k)).toEqual([1, 0]);
    expect(vmstat(k)).toMatchObject({ pswpout: 7 });
  });

  it('4 untouched pages: reclaim(4) frees all 4 (2 + 1 + 1)', () => {
    const { k, p, addr } = written(4);
    expect(k.reclaim(4)).toBe(4);
    k.checkInvariants();
    expect(swappedOut(p, addr, 4)).toEqual(range(4));
    expect(lruSizes(k)).toEqual([0, 0]);
    expect(meminfo(k)).toMatchObject({ AnonPages: 0, SwapFree: SWAP_TOTAL - 4 * 4 });
  });

  it('reclaim(10) of 16 pages frees pages 0..9: 8 in the first pass, then the 2 oldest of the 4 the second pass ages', () => {
    const { k, p, addr } = written(16);
    expect(k.reclaim(10)).toBe(10);
    k.checkInvariants();
    expect(swappedOut(p, addr, 16)).toEqual(range(10));
    // Pages 10 and 11 were aged but not reached; 12..15 are still active.
    expect(lruSizes(k)).toEqual([4, 2]);
    expect(vmstat(k)).toMatchObject({ pswpout: 10 });
  });

  it('pages read again after a reclaim pass aged them are kept: the next reclaim(4) takes 6..9 instead of 4, 5', () => {
    const { k, p, addr, tags } = written(16);
    // Pass 1 ages pages 0..7 (young bits cleared) and frees 0..3; 4..7 wait on the
    // inactive list.
    expect(k.reclaim(4)).toBe(4);
    k.checkInvariants();
    expect(swappedOut(p, addr, 16)).toEqual(range(4));
    expect(lruSizes(k)).toEqual([8, 4]);

    // Pages 4 and 5 are read: their ptes are young again.
    expect(holdsPages(p, addr + 4 * P, tags.slice(4, 6))).toBe(true);
    k.checkInvariants();

    // Ageing moves 8 and 9 (active 8 > inactive 4 until 6 = 6). The scan from the
    // tail: 4 and 5 are referenced, back to the active list; 6, 7, 8, 9 are freed.
    expect(k.reclaim(4)).toBe(4);
    k.checkInvariants();
    expect(swappedOut(p, addr, 16)).toEqual([0, 1, 2, 3, 6, 7, 8, 9]);
    expect(lruSizes(k)).toEqual([8, 0]);
    expect(vmstat(k)).toMatchObject({ pswpout: 8, pswpin: 0 });
    expect(holdsPages(p, addr, tags)).toBe(true);
    k.checkInvariants();
  });

  it('when every inactive page was written again, the call ages a second time: reclaim(4) frees 8, 9 and then 10, 11', () => {
    const { k, p, addr, tags } = written(16);
    expect(k.reclaim(4)).toBe(4);
    k.checkInvariants();
    // Pages 4..7, waiting on the inactive list, are written again (same contents).
    writePages(p, addr + 4 * P, tags.slice(4, 8));
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ cow_faults: 0 });

    // Pass 1: ageing moves 8, 9; the scan activates 4..7 and frees 8, 9: 2 of 4.
    // Pass 2: the active list is 10..15 and 4..7 (10 pages): ageing moves its 5
    // oldest, 10..14; the scan frees 10 and 11, and the call has its 4.
    expect(k.reclaim(4)).toBe(4);
    k.checkInvariants();
    expect(swappedOut(p, addr, 16)).toEqual([0, 1, 2, 3, 8, 9, 10, 11]);
    expect(lruSizes(k)).toEqual([5, 3]);
    expect(vmstat(k)).toMatchObject({ pswpout: 8 });
    expect(holdsPages(p, addr, tags)).toBe(true);
    k.checkInvariants();
  });
});

describe('a page shared by fork', () => {
  it('reclaim writes it once to one slot, and both ptes become swap entries', () => {
    const { k, parent, child, addr } = forked(1);
    expect(k.mem.pageMapcount(parent.pfnOf(addr)!)).toBe(2);
    // One page on the active list: aged, then unmapped from both through the
    // anon_vma parent and child share.
    expect(k.reclaim(1)).toBe(1);
    k.checkInvariants();
    expect(parent.pfnOf(addr)).toBeNull();
    expect(child.pfnOf(addr)).toBeNull();
    expect(vmstat(k)).toMatchObject({ pswpout: 1, pswpin: 0 });
    expect(swapUsedKb(k)).toBe(4);
    expect(meminfo(k)).toMatchObject({ AnonPages: 0, MemFree: FREE_FRAMES * 4, SwapCached: 0 });
  });

  it('swap-in: the first to fault reads it into the swap cache, the second finds it there and maps the same frame', () => {
    const { k, parent, child, addr, tags } = forked(1);
    expect(k.reclaim(1)).toBe(1);
    k.checkInvariants();

    // The parent faults: one read, one major fault; the page takes the shared
    // anon_vma and index, and stays in the swap cache (swap is far from half full).
    expect(holdsPages(parent, addr, tags)).toBe(true);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpin: 1, pgmajfault: 1 });
    expect(child.pfnOf(addr)).toBeNull();
    expect(meminfo(k)).toMatchObject({ SwapCached: 4, AnonPages: 4 });
    const frame = parent.pfnOf(addr)!;

    // The child finds it in the swap cache: same anon_vma, same index, so it maps
    // that very page (no I/O, no copy).
    expect(holdsPages(child, addr, tags)).toBe(true);
    k.checkInvariants();
    expect(child.pfnOf(addr)).toBe(frame);
    expect(k.mem.pageMapcount(frame)).toBe(2);
    expect(vmstat(k)).toMatchObject({ pswpin: 1, pgmajfault: 1, ksm_swpin_copy: 0, cow_faults: 0 });
    expect(meminfo(k)).toMatchObject({ SwapCached: 4, AnonPages: 4, MemFree: (FREE_FRAMES - 1) * 4 });
    // No swap pte is left, but the swap cache still holds the slot.
    expect(swapUsedKb(k)).toBe(4);
  });
});

describe('swap slots given back', () => {
  it('a write fault on a swapped-out page only one process maps reuses the page read back and frees its slot', () => {
    const { k, p, addr, tags } = written(1);
    expect(k.reclaim(1)).toBe(1);
    k.checkInvariants();
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL - 4 });
    expect(vmstat(k)).toMatchObject({ pgfault: 1 });

    // 16 bytes written at offset 100: the page is read from its slot (one major
    // fault); nothing else maps it and our swap pte is the slot's only reference,
    // so reuse_swap_page() takes it out of the swap cache and the slot is freed.
    const bytes = new Uint8Array(16).fill(0xee);
    p.write(addr + 100, bytes);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpin: 1, pgmajfault: 1, pgfault: 2, cow_faults: 0 });
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL, SwapCached: 0, AnonPages: 4 });
    const expected = pattern(tags[0]!);
    expected.set(bytes, 100);
    expect(Buffer.from(p.read(addr, P)).equals(Buffer.from(expected))).toBe(true);

    // The pte is writable already: another write takes no fault.
    p.write(addr + 200, bytes);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pgfault: 2 });
  });

  it('the page reused by a write is dirty and has no slot: reclaimed again, it is written again to a new slot', () => {
    const { k, p, addr } = written(1);
    expect(k.reclaim(1)).toBe(1);
    p.write(addr + 100, new Uint8Array(16).fill(0xee));
    k.checkInvariants();
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL });
    expect(k.reclaim(1)).toBe(1);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpout: 2, pswpin: 1 });
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL - 4, AnonPages: 0 });
  });

  it('exit of a process with swapped-out pages frees their slots: SwapFree returns to SwapTotal', () => {
    const { k, p, addr, tags } = written(16);
    expect(k.reclaim(16)).toBe(14);
    // Page 0 is read back: mapped, in the swap cache, still holding its slot.
    expect(holdsPages(p, addr, tags.slice(0, 1))).toBe(true);
    k.checkInvariants();
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL - 14 * 4, SwapCached: 4, AnonPages: 3 * 4 });

    // 13 swap ptes zapped (the last reference to each slot), page 0's last pte
    // zapped (its slot goes with the swap cache), pages 14 and 15 freed.
    p.exit();
    k.checkInvariants();
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL, SwapCached: 0, AnonPages: 0, MemFree: FREE_FRAMES * 4 });
  });

  it('a slot shared with a fork child is freed only when the last of the two exits', () => {
    const { k, parent, child } = forked(4);
    expect(k.reclaim(4)).toBe(4);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpout: 4 });
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL - 4 * 4 });

    // The child's swap ptes each drop one of a slot's two references.
    child.exit();
    k.checkInvariants();
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL - 4 * 4 });

    parent.exit();
    k.checkInvariants();
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL, SwapCached: 0, MemFree: FREE_FRAMES * 4 });
  });

  it('MADV_DONTNEED on swapped-out pages frees their slots; the pages then read as zeroes with no swap-in', () => {
    const { k, p, addr, tags } = written(8);
    // Pass 1 ages pages 0..3 and frees them.
    expect(k.reclaim(4)).toBe(4);
    k.checkInvariants();
    expect(swappedOut(p, addr, 8)).toEqual(range(4));
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL - 4 * 4 });

    p.madvise(addr, 4 * P, 'MADV_DONTNEED');
    k.checkInvariants();
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL, SwapCached: 0, AnonPages: 4 * 4 });
    expect(Buffer.from(p.read(addr, 4 * P)).equals(Buffer.alloc(4 * P))).toBe(true);
    k.checkInvariants();
    expect(p.pfnOf(addr)).toBe(k.mem.zeroPfn);
    expect(vmstat(k)).toMatchObject({ pswpin: 0, pgmajfault: 0 });
    expect(holdsPages(p, addr + 4 * P, tags.slice(4))).toBe(true);
  });

  it('MADV_DONTNEED on a page read back (mapped and in the swap cache) frees its slot with it', () => {
    const { k, p, addr, tags } = written(4);
    expect(k.reclaim(4)).toBe(4);
    expect(holdsPages(p, addr, tags.slice(0, 1))).toBe(true);
    k.checkInvariants();
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL - 4 * 4, SwapCached: 4, AnonPages: 4 });

    p.madvise(addr, P, 'MADV_DONTNEED');
    k.checkInvariants();
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL - 3 * 4, SwapCached: 0, AnonPages: 0, MemFree: FREE_FRAMES * 4 });
    expect(holdsPages(p, addr + P, tags.slice(1))).toBe(true);
    k.checkInvariants();
  });
});

describe('reclaim(n) arguments', () => {
  it('reclaim(0) frees nothing and ages nothing', () => {
    const { k, p, addr } = written(16);
    const frames = range(16).map((i) => p.pfnOf(addr + i * P));
    expect(k.reclaim(0)).toBe(0);
    k.checkInvariants();
    expect(lruSizes(k)).toEqual([16, 0]);
    expect(range(16).map((i) => p.pfnOf(addr + i * P))).toEqual(frames);
    expect(vmstat(k)).toMatchObject({ pswpout: 0 });
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL });
  });

  it('reclaim(-1) throws EINVAL and changes nothing', () => {
    const { k } = written(4);
    expect(errnoOf(() => k.reclaim(-1))).toBe('EINVAL');
    k.checkInvariants();
    expect(lruSizes(k)).toEqual([4, 0]);
    expect(meminfo(k)).toMatchObject({ SwapFree: SWAP_TOTAL, AnonPages: 4 * 4 });
  });

  it('a count that is not an integer (1.5, NaN) throws EINVAL', () => {
    const { k } = written(4);
    expect(errnoOf(() => k.reclaim(1.5))).toBe('EINVAL');
    expect(errnoOf(() => k.reclaim(Number.NaN))).toBe('EINVAL');
    k.checkInvariants();
    expect(lruSizes(k)).toEqual([4, 0]);
  });

  it('without a swap device reclaim returns 0 before ageing anything: the pages stay on the active list', () => {
    const { k } = written(16, 0);
    expect(k.reclaim(16)).toBe(0);
    k.checkInvariants();
    expect(lruSizes(k)).toEqual([16, 0]);
    expect(meminfo(k)).toMatchObject({ SwapTotal: 0, SwapFree: 0, SwapCached: 0, AnonPages: 16 * 4 });
  });
});

describe('/proc/meminfo SwapCached', () => {
  it('counts the pages read back that still hold their slots', () => {
    const { k, p, addr, tags } = written(4);
    expect(k.reclaim(4)).toBe(4);
    k.checkInvariants();
    expect(meminfo(k)).toMatchObject({ SwapCached: 0, SwapFree: SWAP_TOTAL - 4 * 4 });

    expect(holdsPages(p, addr, tags.slice(0, 2))).toBe(true);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpin: 2 });
    expect(meminfo(k)).toMatchObject({ SwapCached: 2 * 4, AnonPages: 2 * 4, SwapFree: SWAP_TOTAL - 4 * 4 });
  });

  it('a write to a read-back page that only one pte maps takes it out of the swap cache, and its slot goes', () => {
    const { k, p, addr, tags } = written(4);
    expect(k.reclaim(4)).toBe(4);
    expect(holdsPages(p, addr, tags.slice(0, 2))).toBe(true);
    k.checkInvariants();
    const frame = p.pfnOf(addr);

    // Read-mapped, so the write is a write-protect fault: reuse_swap_page() finds
    // one mapping and no swap pte on the slot, and reuses the page.
    p.write(addr, pattern(7));
    k.checkInvariants();
    expect(p.pfnOf(addr)).toBe(frame);
    expect(vmstat(k)).toMatchObject({ cow_faults: 0, pswpin: 2 });
    expect(meminfo(k)).toMatchObject({ SwapCached: 4, SwapFree: SWAP_TOTAL - 3 * 4 });
  });

  it('a clean read-back page is reclaimed without being written: SwapCached drops, its slot stays in use', () => {
    const { k, p, addr, tags } = written(4);
    expect(k.reclaim(4)).toBe(4);
    expect(holdsPages(p, addr, tags.slice(0, 1))).toBe(true);
    k.checkInvariants();
    expect(meminfo(k)).toMatchObject({ SwapCached: 4, SwapFree: SWAP_TOTAL - 4 * 4 });

    expect(k.reclaim(1)).toBe(1);
    k.checkInvariants();
    expect(p.pfnOf(addr)).toBeNull();
    expect(vmstat(k)).toMatchObject({ pswpout: 4, pswpin: 1 });
    expect(meminfo(k)).toMatchObject({ SwapCached: 0, AnonPages: 0, SwapFree: SWAP_TOTAL - 4 * 4 });
    expect(holdsPages(p, addr, tags)).toBe(true);
    k.checkInvariants();
  });

  it('with swap more than half full, a page read back leaves the swap cache at once (vm_swap_full)', () => {
    // 4 MiB of RAM, 1 MiB of swap (256 slots). 200 pages; reclaim(200) frees
    // 100 + 50 + 25 = 175, leaving 81 slots free: 81 * 2 < 256.
    const k = new Kernel({ memoryMiB: 4, swapMiB: 1, blockMiB: 4, seed: 1 });
    const p = k.spawn('p');
    const addr = p.mmap(200 * P, { prot: 'rw' });
    const tags = range(200, 100);
    writePages(p, addr, tags);
    expect(k.reclaim(200)).toBe(175);
    k.checkInvariants();
    expect(meminfo(k)).toMatchObject({ SwapTotal: 1024, SwapFree: 81 * 4 });

    expect(holdsPages(p, addr, tags.slice(0, 1))).toBe(true);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpin: 1 });
    expect(meminfo(k)).toMatchObject({ SwapCached: 0, SwapFree: 82 * 4, AnonPages: 26 * 4 });
  });
});
