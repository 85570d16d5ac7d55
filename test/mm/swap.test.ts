/**
 * Swap through the KSM rmap walk (2.6.33: "ksm: let shared pages be swappable",
 * "ksm: hold anon_vma in rmap_item"), and reclaim in general.
 *
 * The facts every expected number below comes from:
 *
 * - A KSM page is on the LRU like any anonymous page. Reclaim reaches its ptes
 *   through page_referenced_ksm() and try_to_unmap_ksm(): the stable node's
 *   rmap_items, each with the anon_vma it held when it entered the stable tree,
 *   first the area of the rmap_item's own mm, then (search_new_forks) areas of other
 *   mms on that anon_vma — children forked since ksmd passed. So the one page goes
 *   to one swap slot, every mapper's pte becomes that slot's swap entry, and the
 *   frame is freed: its stable node is stale until ksmd next looks.
 * - Swap-in (do_swap_page → ksm_might_need_to_copy): the page read back is no KSM
 *   page (freeing cleared that) and has no anon_vma; the first mapper to fault gets
 *   it and gives it its own anon_vma and index. Another mapper gets it as it is only
 *   if it has that same anon_vma and index (a fork relative, at the same address);
 *   anyone else gets a copy (ksm_does_need_to_copy; vmstat ksm_swpin_copy). A page
 *   read back stays in the swap cache while its mapper keeps it (2.6.33 frees the
 *   slot at swap-in only when swap is more than half full: vm_swap_full()).
 * - A KSM page still in the swap cache when a mapper faults (writeback not done,
 *   or someone held a reference) is mapped again as it is: page_anon_vma() of a KSM
 *   page is NULL, so ksm_might_need_to_copy() has nothing to compare.
 * - Reclaim ages the active list onto the inactive list (its oldest pages first,
 *   their young bits cleared) until the inactive list is no shorter, then frees from
 *   the inactive list's tail: the least recently used pages go first. An allocation
 *   that finds no free frame reclaims SWAP_CLUSTER_MAX (32) pages and tries again.
 */
import { describe, expect, it } from 'vitest';
import { Kernel, PAGE_SIZE, type Process } from '../../src/index.js';
import { PG_SWAPCACHE } from '../../src/mm/constants.js';
import { errnoOf, st, stats } from '../ksm/helpers.js';
import { forkedAfterMerge, holdsPages, meminfo, mergedTwins, pattern, range, reclaimAll, swapUsedKb, vmstat, writePages } from './helpers.js';

const P = PAGE_SIZE;
const N = 8;

/** 64 MiB of RAM, 16 MiB of swap (4096 slots), in 16 MiB blocks. */
function newKernel(): Kernel {
  return new Kernel({ memoryMiB: 64, swapMiB: 16, blockMiB: 16, seed: 1 });
}

function pfnsOf(p: Process, addr: number, n: number): (number | null)[] {
  return range(n).map((i) => p.pfnOf(addr + i * P));
}

/**
 * Two guests with the same 8 pages (tags 0..7, all different from each other),
 * merged: ksmd's second full scan puts guest-a's pages in the unstable tree, then
 * each of guest-b's finds its twin there and becomes the KSM page (the scanned page
 * is the one kept), mapped by both. 64 MiB of RAM, 16 MiB of swap (4096 slots).
 */
function twoMergedGuests() {
  const k = newKernel();
  const tags = range(N);
  return { k, tags, ...mergedTwins(k, tags, ['guest-a', 'guest-b']) };
}

/** twoMergedGuests(), then every KSM page reclaimed. */
function reclaimedGuests() {
  const g = twoMergedGuests();
  expect(reclaimAll(g.k)).toBe(N);
  g.k.checkInvariants();
  return g;
}

describe('two guests\' merged pages, reclaimed and read back', () => {
  it('reclaim writes each KSM page once: one swap slot per KSM page, pswpout 8, every mapper\'s pte a swap entry', () => {
    const { k, a, b, addrA, addrB } = twoMergedGuests();
    // Merged: 8 KSM pages are all the anonymous memory there is (the 8 frames
    // guest-a had were freed by the merge); 16384 frames less the zero page.
    expect(meminfo(k)).toMatchObject({ MemTotal: 65536, MemFree: (16383 - 8) * 4, AnonPages: 8 * 4, SwapTotal: 16384, SwapFree: 16384 });

    // Only the 8 KSM pages are on the LRU: reclaim takes all 8. Each is unmapped
    // from both guests through the stable node's two rmap_items and written once.
    expect(reclaimAll(k)).toBe(N);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpout: 8, pswpin: 0, ksm_swpin_copy: 0 });
    expect(swapUsedKb(k)).toBe(8 * 4);
    expect(meminfo(k)).toMatchObject({ MemFree: 16383 * 4, AnonPages: 0, SwapCached: 0 });
    expect(pfnsOf(a, addrA, N)).toEqual(Array(N).fill(null));
    expect(pfnsOf(b, addrB, N)).toEqual(Array(N).fill(null));
    // ksmd has not looked since: the stable nodes are stale but still counted.
    expect(stats(k)).toEqual(st(N, N, 0, 0, 2));
  });

  it('swap-in: the first mapper to fault gets the page read back, the other guest gets a copy (ksm_swpin_copy)', () => {
    const { k, a, b, tags, addrA, addrB } = reclaimedGuests();

    // guest-a faults first: each page is read from its slot (8 major faults) and
    // mapped as it is; it now belongs to guest-a's anon_vma and stays in the swap
    // cache (swap is far from half full), still holding its slot.
    expect(holdsPages(a, addrA, tags)).toBe(true);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpin: 8, pgmajfault: 8, ksm_swpin_copy: 0 });
    expect(meminfo(k)).toMatchObject({ SwapCached: 8 * 4, AnonPages: 8 * 4 });
    expect(swapUsedKb(k)).toBe(8 * 4);
    const readBack = pfnsOf(a, addrA, N) as number[];
    expect(readBack.every((f) => f !== null && (k.mem.flags[f]! & PG_SWAPCACHE) !== 0)).toBe(true);

    // guest-b finds each page in the swap cache (no I/O), but it is guest-a's now:
    // another anon_vma, so guest-b gets a copy of each.
    expect(holdsPages(b, addrB, tags)).toBe(true);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpin: 8, pgmajfault: 8, ksm_swpin_copy: 8 });
    const copies = pfnsOf(b, addrB, N) as number[];
    expect(new Set([...readBack, ...copies]).size).toBe(2 * N);
    expect(meminfo(k)).toMatchObject({ SwapCached: 8 * 4, AnonPages: 16 * 4 });
    // Every swap pte is gone, but the swap cache keeps the 8 slots.
    expect(swapUsedKb(k)).toBe(8 * 4);
  });

  it('after one more full scan the guests share 8 KSM pages again: the copies, pages_shared 8, pages_sharing 8', () => {
    const { k, a, b, tags, addrA, addrB } = reclaimedGuests();
    expect(holdsPages(a, addrA, tags)).toBe(true);
    expect(holdsPages(b, addrB, tags)).toBe(true);
    const copies = pfnsOf(b, addrB, N);

    // Scan 3. guest-a's rmap_items are still STABLE: removing each from the tree
    // finds its node stale through the keyhole and removes the node with both
    // rmap_items (guest-b's too); stable_tree_search() meets another stale node at
    // the root, removes it and gives up. So each of guest-a's 8 pages removes at
    // least one stale node, and all 8 are gone by the time guest-b is scanned.
    // guest-a's pages keep the checksums of scan 1 (same contents): into the
    // unstable tree. guest-b's copies find them there: each copy becomes the KSM
    // page and guest-a's pte is pointed at it.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    k.checkInvariants();
    expect(stats(k)).toEqual(st(N, N, 0, 0, 3));
    expect(pfnsOf(a, addrA, N)).toEqual(copies);
    expect(pfnsOf(b, addrB, N)).toEqual(copies);
    expect(holdsPages(a, addrA, tags)).toBe(true);
    expect(holdsPages(b, addrB, tags)).toBe(true);
    expect(meminfo(k)).toMatchObject({ AnonPages: 8 * 4 });
    // guest-a's read-back pages are unmapped now, but still in the swap cache.
    expect(meminfo(k)).toMatchObject({ SwapCached: 8 * 4 });
    expect(swapUsedKb(k)).toBe(8 * 4);
  });

  it('the read-back pages KSM replaced are reclaimed from the swap cache without being written again', () => {
    const { k, a, b, tags, addrA, addrB } = reclaimedGuests();
    expect(holdsPages(a, addrA, tags)).toBe(true);
    expect(holdsPages(b, addrB, tags)).toBe(true);
    expect(k.ksmd.runFullScans(1)).toBe(1);

    // The LRU holds guest-a's 8 read-back pages (older) and the 8 copies (now the
    // KSM pages). Ageing takes the 8 oldest to the inactive list; they are clean,
    // unmapped swap-cache pages: freed with no write, their slots released.
    expect(k.reclaim(N)).toBe(N);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpout: 8 });
    expect(swapUsedKb(k)).toBe(0);
    expect(meminfo(k)).toMatchObject({ SwapCached: 0, AnonPages: 8 * 4 });
    expect(stats(k)).toEqual(st(N, N, 0, 0, 3));
  });

  it('a KSM page still in the swap cache when its mappers fault is mapped again as it was: no read, no copy', () => {
    const k = newKernel();
    const { a, b, addrA, addrB, kpfns } = mergedTwins(k, [7], ['guest-a', 'guest-b']);
    const kpfn = kpfns[0]!;

    // A reference held across reclaim (writeback still in flight, a pfn walker's
    // get_page): both ptes become swap entries and the page is written, but
    // __remove_mapping() finds the extra reference and keeps the page, still KSM
    // and still in the swap cache.
    k.mem.getPage(kpfn);
    expect(k.reclaim(1)).toBe(0);
    k.mem.putPage(kpfn);
    k.checkInvariants();
    expect(a.pfnOf(addrA)).toBeNull();
    expect(b.pfnOf(addrB)).toBeNull();
    expect(vmstat(k)).toMatchObject({ pswpout: 1 });
    expect(meminfo(k)).toMatchObject({ SwapCached: 4 });

    expect(holdsPages(a, addrA, [7])).toBe(true);
    expect(holdsPages(b, addrB, [7])).toBe(true);
    k.checkInvariants();
    expect(a.pfnOf(addrA)).toBe(kpfn);
    expect(b.pfnOf(addrB)).toBe(kpfn);
    expect(vmstat(k)).toMatchObject({ pswpin: 0, pgmajfault: 0, ksm_swpin_copy: 0 });
    // The stable node never went stale: nothing for ksmd to redo.
    expect(stats(k)).toEqual(st(1, 1, 0, 0, 2));
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(1, 1, 0, 0, 3));
    k.checkInvariants();
  });
});

describe('a child forked after merging, not yet visited by ksmd', () => {
  // forkedAfterMerge() (helpers.ts): the parent's two equal pages merged, then fork.
  const forked = () => {
    const k = newKernel();
    return { k, ...forkedAfterMerge(k) };
  };

  it('reclaim unmaps the KSM page from the child too: its ptes become swap entries, one slot for all four', () => {
    const { k, parent, child, addr } = forked();
    expect(k.reclaim(1)).toBe(1);
    k.checkInvariants();
    expect(child.pfnOf(addr)).toBeNull();
    expect(child.pfnOf(addr + P)).toBeNull();
    expect(parent.pfnOf(addr)).toBeNull();
    expect(parent.pfnOf(addr + P)).toBeNull();
    expect(vmstat(k)).toMatchObject({ pswpout: 1 });
    expect(swapUsedKb(k)).toBe(4);
    expect(holdsPages(child, addr, [5, 5])).toBe(true);
    expect(holdsPages(parent, addr, [5, 5])).toBe(true);
    k.checkInvariants();
  });

  it('swap-in: parent and child share the anon_vma, so at the same address they share the page read back; at the other address each gets a copy', () => {
    const { k, parent, child, addr } = forked();
    expect(k.reclaim(1)).toBe(1);
    // The child faults first at addr: the page read back takes the shared anon_vma
    // and addr's index. At addr + 4096 the index differs: a copy. The parent at
    // addr matches both: the same page. At addr + 4096: another copy.
    expect(holdsPages(child, addr, [5, 5])).toBe(true);
    expect(holdsPages(parent, addr, [5, 5])).toBe(true);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpin: 1, ksm_swpin_copy: 2 });
    expect(parent.pfnOf(addr)).toBe(child.pfnOf(addr));
    const frames = [child.pfnOf(addr), child.pfnOf(addr + P), parent.pfnOf(addr + P)];
    expect(new Set(frames).size).toBe(3);
  });
});

describe('reclaim', () => {
  it('on demand, least recently used first: reclaim(4) of 16 written pages swaps out the first 4 written', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const addr = p.mmap(16 * P, { prot: 'rw' });
    writePages(p, addr, range(16, 100));
    expect(meminfo(k)).toMatchObject({ AnonPages: 16 * 4, MemFree: (16383 - 16) * 4 });

    // Ageing moves the 8 oldest to the inactive list; its tail (page 0) goes first.
    expect(k.reclaim(4)).toBe(4);
    k.checkInvariants();
    expect(pfnsOf(p, addr, 16).map((f) => f === null)).toEqual([...Array(4).fill(true), ...Array(12).fill(false)]);
    expect(vmstat(k)).toMatchObject({ pswpout: 4, pswpin: 0 });
    expect(meminfo(k)).toMatchObject({ AnonPages: 12 * 4, MemFree: (16383 - 12) * 4, SwapTotal: 16384, SwapFree: 16384 - 4 * 4 });

    // Reading page 0 back is one major fault; its slot stays with it in the swap cache.
    expect(holdsPages(p, addr, [100])).toBe(true);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpin: 1, pgmajfault: 1 });
    expect(meminfo(k)).toMatchObject({ AnonPages: 13 * 4, SwapCached: 4 });
    expect(holdsPages(p, addr, range(16, 100))).toBe(true);
  });

  it('without a swap device nothing is reclaimed', () => {
    const k = new Kernel({ memoryMiB: 64, swapMiB: 0, blockMiB: 16, seed: 1 });
    const p = k.spawn('p');
    const addr = p.mmap(4 * P, { prot: 'rw' });
    writePages(p, addr, range(4));
    expect(k.reclaim(4)).toBe(0);
    expect(meminfo(k)).toMatchObject({ SwapTotal: 0, SwapFree: 0, AnonPages: 16 });
    expect(pfnsOf(p, addr, 4).every((f) => f !== null)).toBe(true);
    k.checkInvariants();
  });

  it('automatically when an allocation finds no free frame: 400 pages in 255 free frames, 5 reclaims of 32 pages', () => {
    // 1 MiB of RAM: 256 frames, 255 free besides the zero page; 4 MiB of swap.
    const k = new Kernel({ memoryMiB: 1, swapMiB: 4, blockMiB: 1, seed: 1 });
    const p = k.spawn('p');
    const addr = p.mmap(400 * P, { prot: 'rw' });
    const tags = range(400, 1000);
    // Pages 0..254 take every free frame. Page 255's allocation fails: reclaim ages
    // 128 pages and frees 32 (pages 0..31); 31 are left after page 255 takes one.
    // So it goes, 32 pages a time, at pages 255, 287, 319, 351 and 383: 160 pages
    // written out, and pages 384..399 leave 15 frames free.
    writePages(p, addr, tags);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpout: 160, pswpin: 0 });
    expect(meminfo(k)).toMatchObject({ MemTotal: 1024, MemFree: 15 * 4, AnonPages: 240 * 4, SwapTotal: 4096, SwapFree: 4096 - 160 * 4 });
    expect(pfnsOf(p, addr, 400).filter((f) => f === null).length).toBe(160);

    // Everything reads back, swapping in and out as it goes.
    expect(holdsPages(p, addr, tags)).toBe(true);
    k.checkInvariants();
    // Read in order, 400 pages through 255 frames: each reclaim takes the oldest
    // pages, which are always the ones still to be read, so every read misses. The
    // other 240 pages are written out once each; a page read back stays clean in
    // its slot, and leaving again costs no write.
    expect(vmstat(k)).toMatchObject({ pswpin: 400, pgmajfault: 400, pswpout: 160 + 240 });
  });

  it('mlocked and pinned pages are not reclaimed', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const locked = p.mmap(4 * P, { prot: 'rw' });
    const pinned = p.mmap(4 * P, { prot: 'rw' });
    const plain = p.mmap(4 * P, { prot: 'rw' });
    writePages(p, locked, range(4, 10));
    writePages(p, pinned, range(4, 20));
    writePages(p, plain, range(4, 30));
    p.mlock(locked, 4 * P);
    const pins = range(4).map((i) => p.pin(pinned + i * P));
    const lockedFrames = pfnsOf(p, locked, 4);
    const pinnedFrames = pfnsOf(p, pinned, 4);
    expect(meminfo(k)).toMatchObject({ Mlocked: 4 * 4, AnonPages: 12 * 4 });
    k.checkInvariants();

    // The mlocked pages sit on the unevictable list; the pinned ones are put back
    // on the active list each time reclaim meets them. Only the plain 4 go.
    expect(k.reclaim(12)).toBe(4);
    k.checkInvariants();
    expect(pfnsOf(p, locked, 4)).toEqual(lockedFrames);
    expect(pfnsOf(p, pinned, 4)).toEqual(pinnedFrames);
    expect(pfnsOf(p, plain, 4)).toEqual(Array(4).fill(null));
    expect(vmstat(k)).toMatchObject({ pswpout: 4 });
    expect(meminfo(k)).toMatchObject({ Mlocked: 4 * 4, AnonPages: 8 * 4 });
    expect(swapUsedKb(k)).toBe(4 * 4);

    // Released and unlocked, they are ordinary pages again.
    for (const pin of pins) pin.release();
    p.munlock(locked, 4 * P);
    expect(meminfo(k)).toMatchObject({ Mlocked: 0 });
    expect(reclaimAll(k)).toBe(8);
    expect(swapUsedKb(k)).toBe(12 * 4);
    expect(holdsPages(p, locked, range(4, 10)) && holdsPages(p, pinned, range(4, 20)) && holdsPages(p, plain, range(4, 30))).toBe(true);
    k.checkInvariants();
  });

  it('with swap full and nothing reclaimable the faulting write fails with ENOMEM, and nothing already written is lost', () => {
    // 255 free frames and 256 swap slots: room for 511 pages.
    const k = new Kernel({ memoryMiB: 1, swapMiB: 1, blockMiB: 1, seed: 1 });
    const hog = k.spawn('hog');
    const hogAddr = hog.mmap(64 * P, { prot: 'rw' });
    writePages(hog, hogAddr, range(64, 5000));
    const p = k.spawn('p');
    const addr = p.mmap(512 * P, { prot: 'rw' });
    // 64 + 447 = 511 pages fit; the 448th of p's finds no frame, and reclaim can
    // free none: every page left is dirty and has no slot, and swap is full.
    const tags = range(447, 1);
    writePages(p, addr, tags);
    k.checkInvariants();
    expect(meminfo(k)).toMatchObject({ MemFree: 0, SwapFree: 0 });
    expect(vmstat(k)).toMatchObject({ pswpout: 256 });
    expect(errnoOf(() => p.write(addr + 447 * P, pattern(9999)))).toBe('ENOMEM');
    k.checkInvariants();
    // Nothing was mapped, and trying again finds no more room.
    expect(p.pfnOf(addr + 447 * P)).toBeNull();
    expect(errnoOf(() => p.write(addr + 447 * P, pattern(9999)))).toBe('ENOMEM');

    // The hog goes (its pages were the oldest: all 64 are in swap), which frees 64
    // slots: enough for reclaim to make room, page by page, to read everything back.
    hog.exit();
    k.checkInvariants();
    expect(meminfo(k)).toMatchObject({ SwapFree: 64 * 4 });
    expect(holdsPages(p, addr, tags)).toBe(true);
    expect(Buffer.from(p.read(addr + 447 * P, 65 * P)).equals(Buffer.alloc(65 * P))).toBe(true);
    k.checkInvariants();
  });
});
