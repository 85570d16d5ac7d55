/**
 * Memory hot-remove and hot-add with KSM pages in the block (2.6.33: "ksm: memory
 * hotremove migration only"), through the sysfs files Linux has.
 *
 * offline_pages(): the block is isolated (nothing new is allocated in it), the
 * notifiers hear MEM_GOING_OFFLINE (KSM takes ksm_thread_mutex: ksmd and
 * MADV_UNMERGEABLE wait), every page in use is migrated to another block — KSM
 * pages through the KSM rmap walk, their stable nodes following them — or, with no
 * free frame anywhere else, written to swap. Then MEM_OFFLINE: KSM prunes the stable
 * nodes still pointing into the block (stale ones: their KSM page was freed, and
 * ksmd has not noticed yet) and lets go of the mutex. A page that cannot leave
 * (pinned; or no room anywhere and no swap) cancels the offline: MEM_CANCEL_OFFLINE,
 * the block stays online, and the writer gets EBUSY.
 *
 * The frames: the zero page is pfn 0, in block 0, which can therefore never go
 * offline. The allocator takes the lowest block with a free frame, and in a fresh
 * block hands out ascending pfns; a freed frame is the next one handed out from its
 * block. So a filler process of 2047 pages fills block 0, and what comes after lands
 * in block 1 (pfns 2048 up, with 8 MiB blocks).
 */
import { describe, expect, it } from 'vitest';
import { Kernel, PAGE_SIZE } from '../../src/index.js';
import { RUN, errnoOf, st, stats } from '../ksm/helpers.js';
import { holdsPages, meminfo, mergeablePages, mergedTwins, pattern, range, swapUsedKb, unreachableKsmPage, vmstat } from './helpers.js';

const P = PAGE_SIZE;
const MEM = '/sys/devices/system/memory';
const state = (k: Kernel, block: number): string => k.sysfs.read(`${MEM}/memory${block}/state`);
const setState = (k: Kernel, block: number, s: string): void => k.sysfs.write(`${MEM}/memory${block}/state`, s);
const TAGS = [0, 1, 2, 3];

/**
 * 8 MiB blocks (2048 frames). Block 0 filled (2047 pages of a non-mergeable
 * filler), then two guests with the same 4 pages: guest-a's at 2048-2051, guest-b's
 * at 2052-2055. ksmd's second scan keeps guest-b's frames as the 4 KSM pages and
 * frees guest-a's.
 */
function ksmInBlock1(memoryMiB: number, swapMiB: number) {
  const k = new Kernel({ memoryMiB, swapMiB, blockMiB: 8, seed: 1 });
  const filler = k.spawn('filler');
  const fill = filler.mmap(2047 * P, { prot: 'rw' });
  filler.memset(fill, 0x11, 2047 * P);
  expect(filler.pfnOf(fill + 2046 * P)).toBe(2047);
  const { a, b, addrA, addrB, kpfns } = mergedTwins(k, TAGS, ['guest-a', 'guest-b']);
  expect(kpfns).toEqual([2052, 2053, 2054, 2055]);
  return { k, filler, a, b, addrA, addrB };
}

const pfns = (p: { pfnOf(a: number): number | null }, addr: number): (number | null)[] => range(4).map((i) => p.pfnOf(addr + i * P));

describe('offlining a memory block that holds KSM pages', () => {
  it('the sysfs files: block_size_bytes in hex, every block online and removable but block 0', () => {
    const { k } = ksmInBlock1(32, 0);
    expect(k.sysfs.read(`${MEM}/block_size_bytes`)).toBe('800000\n');
    expect(range(4).map((b) => state(k, b))).toEqual(Array(4).fill('online\n'));
    expect(range(4).map((b) => k.sysfs.read(`${MEM}/memory${b}/removable`))).toEqual(['0\n', '1\n', '1\n', '1\n']);
    expect(errnoOf(() => setState(k, 1, 'gone'))).toBe('EINVAL');
  });

  it('succeeds: pages migrate to block 2, contents intact, the stale stable node in the block is pruned, MemTotal drops by 8 MiB', () => {
    const { k, a, b, addrA, addrB } = ksmInBlock1(32, 0);
    // Both guests write page 0: each gets a copy (guest-a 2051, guest-b 2050: the
    // frames freed last come back first), and KSM page 2052 is freed. Its stable
    // node is stale, still counted, until ksmd or the offline finds it.
    a.write(addrA, new Uint8Array([0xaa]));
    b.write(addrB, new Uint8Array([0xbb]));
    expect(pfns(a, addrA)).toEqual([2051, 2053, 2054, 2055]);
    expect(pfns(b, addrB)).toEqual([2050, 2053, 2054, 2055]);
    expect(stats(k)).toEqual(st(4, 4, 0, 0, 2));
    k.checkInvariants();
    const before = meminfo(k);
    expect(before).toMatchObject({ MemTotal: 32768, MemFree: (8191 - 2047 - 5) * 4 });

    // Block 0 is full: the 5 pages in use go to block 2, in pfn order.
    setState(k, 1, 'offline');
    k.checkInvariants();
    expect(state(k, 1)).toBe('offline\n');
    expect(pfns(a, addrA)).toEqual([4097, 4098, 4099, 4100]);
    expect(pfns(b, addrB)).toEqual([4096, 4098, 4099, 4100]);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 5, pgmigrate_fail: 0 });
    // MEM_OFFLINE pruned the stale node (both its rmap_items leave the stable tree,
    // their pages no longer shared: volatile); the three live ones moved with
    // their pages.
    expect(stats(k)).toEqual(st(3, 3, 0, 2, 2));
    expect(meminfo(k)).toMatchObject({ MemTotal: 32768 - 8192, MemFree: before.MemFree! - 8192 });
    const written = (byte: number): Buffer => {
      const page = Buffer.from(pattern(0));
      page[0] = byte;
      return page;
    };
    expect(Buffer.from(a.read(addrA, P)).equals(written(0xaa))).toBe(true);
    expect(Buffer.from(b.read(addrB, P)).equals(written(0xbb))).toBe(true);
    expect(holdsPages(a, addrA + P, [1, 2, 3]) && holdsPages(b, addrB + P, [1, 2, 3])).toBe(true);

    // ksmd runs again (the offline released ksm_thread_mutex): the two written
    // pages changed since scan 1, so they only get new checksums.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(3, 3, 0, 2, 3));
    k.checkInvariants();
  });

  it('onlining brings MemTotal back, and the block is used again: a fresh frame from its bottom', () => {
    const { k } = ksmInBlock1(32, 0);
    const free = meminfo(k).MemFree!;
    setState(k, 1, 'offline');
    expect(meminfo(k)).toMatchObject({ MemTotal: 24576, MemFree: free - 8192 });
    setState(k, 1, 'online');
    k.checkInvariants();
    expect(state(k, 1)).toBe('online\n');
    expect(meminfo(k)).toMatchObject({ MemTotal: 32768, MemFree: free });
    const c = k.spawn('c');
    const addr = c.mmap(P, { prot: 'rw' });
    c.memset(addr, 0x42, P);
    expect(c.pfnOf(addr)).toBe(2048);
    expect(errnoOf(() => setState(k, 1, 'online'))).toBe('EINVAL');
    k.checkInvariants();
  });

  it('a pinned page in the block cancels the offline: EBUSY, still online, contents intact, ksmd runs again', () => {
    const { k, a, b, addrA, addrB } = ksmInBlock1(32, 0);
    const pin = b.pin(addrB + 2 * P);
    expect(pin.pfn).toBe(2054);
    // 2052 and 2053 move to block 2 before 2054 is found pinned; what moved stays moved.
    expect(errnoOf(() => setState(k, 1, 'offline'))).toBe('EBUSY');
    k.checkInvariants();
    expect(state(k, 1)).toBe('online\n');
    expect(meminfo(k)).toMatchObject({ MemTotal: 32768 });
    expect(pfns(a, addrA)).toEqual([4096, 4097, 2054, 2055]);
    expect(pfns(b, addrB)).toEqual([4096, 4097, 2054, 2055]);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 2 });
    expect(stats(k)).toEqual(st(4, 4, 0, 0, 2));
    expect(holdsPages(a, addrA, TAGS) && holdsPages(b, addrB, TAGS)).toBe(true);
    // MEM_CANCEL_OFFLINE released KSM's lock: ksmd scans, run can be written.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(4, 4, 0, 0, 3));
    k.sysfs.write(RUN, '1');
    // The block is not isolated any more: it hands out frames again, the one freed
    // last (2053, left by migration) first.
    const c = k.spawn('c');
    const addr = c.mmap(P, { prot: 'rw' });
    c.memset(addr, 0x42, P);
    expect(c.pfnOf(addr)).toBe(2053);
    k.checkInvariants();
    pin.release();
  });

  it('once the pin is released the offline completes', () => {
    const { k, a, b, addrA, addrB } = ksmInBlock1(32, 0);
    const pin = b.pin(addrB + 2 * P);
    expect(errnoOf(() => setState(k, 1, 'offline'))).toBe('EBUSY');
    pin.release();
    setState(k, 1, 'offline');
    k.checkInvariants();
    expect(state(k, 1)).toBe('offline\n');
    expect(pfns(a, addrA)).toEqual([4096, 4097, 4098, 4099]);
    expect(pfns(b, addrB)).toEqual([4096, 4097, 4098, 4099]);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 4 });
    expect(stats(k)).toEqual(st(4, 4, 0, 0, 2));
    expect(holdsPages(a, addrA, TAGS) && holdsPages(b, addrB, TAGS)).toBe(true);
  });

  it('with no free frame outside the block and no swap the offline is cancelled: EBUSY, nothing lost, ksmd runs again', () => {
    // Two blocks: block 0 full, the KSM pages in block 1.
    const { k, a, b, addrA, addrB } = ksmInBlock1(16, 0);
    expect(errnoOf(() => setState(k, 1, 'offline'))).toBe('EBUSY');
    k.checkInvariants();
    expect(state(k, 1)).toBe('online\n');
    expect(meminfo(k)).toMatchObject({ MemTotal: 16384, MemFree: (4095 - 2047 - 4) * 4 });
    expect(pfns(a, addrA)).toEqual([2052, 2053, 2054, 2055]);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 0, pgmigrate_fail: 0 });
    expect(stats(k)).toEqual(st(4, 4, 0, 0, 2));
    expect(holdsPages(a, addrA, TAGS) && holdsPages(b, addrB, TAGS)).toBe(true);
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(4, 4, 0, 0, 3));
    k.checkInvariants();
  });

  it('with no free frame outside the block but swap, the KSM pages are swapped out (one slot each) and the offline succeeds', () => {
    const { k, a, b, addrA, addrB } = ksmInBlock1(16, 16);
    setState(k, 1, 'offline');
    k.checkInvariants();
    expect(state(k, 1)).toBe('offline\n');
    expect(meminfo(k)).toMatchObject({ MemTotal: 8192, MemFree: 0 });
    expect(vmstat(k)).toMatchObject({ pswpout: 4, pgmigrate_success: 0 });
    expect(swapUsedKb(k)).toBe(4 * 4);
    expect([...pfns(a, addrA), ...pfns(b, addrB)]).toEqual(Array(8).fill(null));
    // Their frames were freed, so all four stable nodes were stale: pruned.
    expect(stats(k)).toEqual(st(0, 0, 0, 8, 2));

    // Reading back needs frames: reclaim writes 32 of the filler's (the oldest) to
    // swap. guest-a reads each page back, guest-b gets copies.
    expect(holdsPages(a, addrA, TAGS) && holdsPages(b, addrB, TAGS)).toBe(true);
    k.checkInvariants();
    expect(vmstat(k)).toMatchObject({ pswpout: 4 + 32, pswpin: 4, ksm_swpin_copy: 4 });
    // And ksmd merges them again: guest-a's into the unstable tree, guest-b's copies
    // find them (both kept scan 1's checksums: same contents).
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(4, 4, 0, 0, 3));
    expect(pfns(a, addrA)).toEqual(pfns(b, addrB));
    k.checkInvariants();
  });

  it('a KSM page the rmap walk cannot reach (mapped again from the swap cache, no rmap_item yet) cancels the offline cleanly: EBUSY; after ksmd\'s next scan it succeeds', () => {
    const k = new Kernel({ memoryMiB: 24, swapMiB: 16, blockMiB: 8, seed: 1 });
    // The filler is mlocked: reclaim must find only the KSM page.
    const filler = k.spawn('filler');
    const fill = filler.mmap(2047 * P, { prot: 'rw' });
    filler.memset(fill, 0x11, 2047 * P);
    filler.mlock(fill, 2047 * P);
    // Reclaim while a reference keeps the page in the swap cache; ksmd's next scan
    // finds swap ptes and drops both rmap_items; both processes fault the KSM page
    // back as it is (helpers.ts has the steps).
    const { a, b, addrA, addrB, kpfn } = unreachableKsmPage(k, 2049);

    // The page would migrate to block 2 (block 0 is full), but try_to_unmap reaches
    // neither pte: migration fails, and the offline is cancelled.
    expect(errnoOf(() => setState(k, 1, 'offline'))).toBe('EBUSY');
    k.checkInvariants();
    expect(state(k, 1)).toBe('online\n');
    expect([a.pfnOf(addrA), b.pfnOf(addrB)]).toEqual([kpfn, kpfn]);
    expect(holdsPages(a, addrA, [7]) && holdsPages(b, addrB, [7])).toBe(true);
    // KSM's lock was released: ksmd scans, and gives both mappers rmap_items.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(1, 1, 0, 0, 4));
    // Now the walk reaches both ptes: the page moves to block 2, the offline succeeds.
    setState(k, 1, 'offline');
    k.checkInvariants();
    expect(state(k, 1)).toBe('offline\n');
    expect([a.pfnOf(addrA), b.pfnOf(addrB)]).toEqual([4096, 4096]);
    expect(stats(k)).toEqual(st(1, 1, 0, 0, 4));
    expect(holdsPages(a, addrA, [7]) && holdsPages(b, addrB, [7])).toBe(true);
    k.checkInvariants();
  });

  it('block 0 holds the zero page: it is not removable and never goes offline (EBUSY)', () => {
    const { k } = ksmInBlock1(16, 16);
    expect(k.sysfs.read(`${MEM}/memory0/removable`)).toBe('0\n');
    expect(errnoOf(() => setState(k, 0, 'offline'))).toBe('EBUSY');
    expect(state(k, 0)).toBe('online\n');
    expect(meminfo(k)).toMatchObject({ MemTotal: 16384 });
    expect(k.ksmd.runFullScans(1)).toBe(1);
    k.checkInvariants();
  });
});

describe('an anon_vma held by KSM outlives the areas that used it, until KSM drops it', () => {
  /** One process, two equal pages merged: both rmap_items hold its anon_vma. */
  function mergedPair(k: Kernel) {
    const p = k.spawn('p');
    const addr = mergeablePages(p, [5, 5]);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(1, 1, 0, 0, 2));
    const av = p.mm.vmas[0]!.anonVma!;
    expect(av.ksmRefcount).toBe(2);
    return { p, addr, av };
  }

  it('munmap of the only area: the anon_vma stays (no vma, ksm_refcount 2) until the next scan removes the rmap_items', () => {
    const k = new Kernel({ memoryMiB: 64, swapMiB: 0, blockMiB: 16, seed: 1 });
    const { p, addr, av } = mergedPair(k);
    const kpfn = p.pfnOf(addr)!;
    p.munmap(addr, 2 * P);
    k.checkInvariants();
    // The KSM page went with its last mapping; its node is stale, still counted.
    expect(k.mem.count[kpfn]).toBe(0);
    expect(av.vmas.length).toBe(0);
    expect(av.freed).toBe(false);
    expect(av.ksmRefcount).toBe(2);
    expect(stats(k)).toEqual(st(1, 1, 0, 0, 2));

    // Scan 3: the mm has no VM_MERGEABLE area left: its rmap_items are removed (the
    // node found stale, dropping both anon_vma references) and its mm_slot freed.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    k.checkInvariants();
    expect(av.ksmRefcount).toBe(0);
    expect(av.freed).toBe(true);
    expect(stats(k)).toEqual(st(0, 0, 0, 0, 3));
  });

  it('or until offlining the block that held the KSM page prunes the stale node', () => {
    const k = new Kernel({ memoryMiB: 16, swapMiB: 0, blockMiB: 8, seed: 1 });
    const filler = k.spawn('filler');
    filler.memset(filler.mmap(2047 * P, { prot: 'rw' }), 0x11, 2047 * P);
    const { p, addr, av } = mergedPair(k);
    expect(p.pfnOf(addr)).toBe(2049); // in block 1: the second page's frame is kept
    p.munmap(addr, 2 * P);
    expect(av.freed).toBe(false);
    // Nothing is left in block 1; MEM_OFFLINE prunes the node pointing into it.
    setState(k, 1, 'offline');
    k.checkInvariants();
    expect(av.ksmRefcount).toBe(0);
    expect(av.freed).toBe(true);
    expect(stats(k)).toEqual(st(0, 0, 0, 2, 2));
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 0, 3));
    k.checkInvariants();
  });
});
