/**
 * KSM behaviour that the selftests do not reach, scenario by scenario, each with the
 * numbers 2.6.33 mm/ksm.c gives. A "batch" is one ksmd wakeup: ksm_do_scan() of
 * pages_to_scan pages, which returns early when scan_get_next_rmap_item() reaches
 * the end of the list (that call does ksm_scan.seqnr++, i.e. full_scans + 1).
 */
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/index.js';
import {
  MAX_KERNEL_PAGES,
  PAGES_TO_SCAN,
  RUN,
  SLEEP_MILLISECS,
  allDistinct,
  batch,
  errnoOf,
  filledWith,
  mergeableArea,
  newKernel,
  pfns,
  readKsm,
  slotOrder,
  st,
  stats,
} from './helpers.js';

describe('ksm_exit while ksmd is scanning', () => {
  it('exit of the mm at the cursor: the slot stays until ksmd backs out of it, then its rmap_items go', () => {
    const k = newKernel();
    const free0 = k.mem.nrFreeOnline;
    const a = k.spawn('a');
    const b = k.spawn('b');
    const mapA = mergeableArea(a, 8, 0x61);
    const mapB = mergeableArea(b, 8, 0x61);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    // One KSM page (a's page 1) for all 16 pages.
    expect(stats(k)).toEqual(st(1, 15, 0, 0, 2));
    const kpfn = a.pfnOf(mapA + PAGE_SIZE);
    expect(k.mem.nrFreeOnline).toBe(free0 - 1);
    k.checkInvariants();

    // One batch of 4: a's pages 0..3 (KSM pages in the stable tree: skipped). The
    // cursor now sits on a's mm_slot.
    k.sysfs.write(PAGES_TO_SCAN, '4');
    batch(k);
    expect(k.ksmEngine.scanSlot.mm).toBe(a.mm);
    expect(stats(k)).toEqual(st(1, 15, 0, 0, 2));

    // __ksm_exit: ksm_scan.mm_slot == mm_slot, so neither the easy free nor the
    // list_move: the slot stays where it is, with its 8 rmap_items.
    a.exit();
    expect(slotOrder(k)).toEqual(['a', 'b']);
    expect(stats(k)).toEqual(st(1, 15, 0, 0, 2));
    expect(pfns(b, mapB, 8)).toEqual(Array(8).fill(kpfn));
    k.checkInvariants();

    // Next batch: ksm_test_exit(a) -> address 0, every rmap_item of a is trailing.
    // Each comes off the stable node while b's 8 still hang there (hlist not empty):
    // pages_sharing - 8, pages_shared stays 1. a's slot is freed, and the batch goes
    // on into b: b's pages 0..3.
    batch(k);
    expect(slotOrder(k)).toEqual(['b']);
    expect(stats(k)).toEqual(st(1, 7, 0, 0, 2));
    expect(k.ksmEngine.scanSlot.mm).toBe(b.mm);
    k.checkInvariants();

    // b exits at the cursor too; its exit frees the KSM page (nothing maps it), so
    // every frame is back at once. The next batch finds the node stale through the
    // keyhole: all stats 0, b's slot freed, end of the list: full scan 3.
    b.exit();
    expect(k.mem.nrFreeOnline).toBe(free0);
    expect(stats(k)).toEqual(st(1, 7, 0, 0, 2));
    k.checkInvariants();
    batch(k);
    expect(stats(k)).toEqual(st(0, 0, 0, 0, 3));
    expect(slotOrder(k)).toEqual([]);
    expect(k.ksmEngine.mmSlots.size).toBe(0);
    expect(k.ksmd.runFullScans(1)).toBe(0);
    expect(k.mem.nrFreeOnline).toBe(free0);
    k.checkInvariants();
  });

  it('exit of an mm with rmap_items behind the cursor: list_move puts it next, ksmd frees it in the same full scan', () => {
    const k = newKernel();
    const free0 = k.mem.nrFreeOnline;
    const a = k.spawn('a');
    const b = k.spawn('b');
    mergeableArea(a, 8, 0x61);
    const mapB = mergeableArea(b, 8, 0x62);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(2, 14, 0, 0, 2));
    k.checkInvariants();

    // Batches of 4: a 0..3, a 4..7, then b 0..3: the cursor is on b.
    k.sysfs.write(PAGES_TO_SCAN, '4');
    batch(k);
    batch(k);
    batch(k);
    expect(k.ksmEngine.scanSlot.mm).toBe(b.mm);

    // __ksm_exit(a): not at the cursor, has rmap_items: list_move to just after the
    // cursor, so this very full scan reaches it next. a's KSM page is freed with a's
    // page tables; its stable node is now stale.
    a.exit();
    expect(slotOrder(k)).toEqual(['b', 'a']);
    expect(stats(k)).toEqual(st(2, 14, 0, 0, 2));
    expect(k.mem.nrFreeOnline).toBe(free0 - 1);
    k.checkInvariants();

    // b 4..7.
    batch(k);
    expect(stats(k)).toEqual(st(2, 14, 0, 0, 2));
    // End of b, then a: exiting, so all of a's rmap_items are trailing; the first one
    // finds the stale node and remove_node_from_stable_tree takes 1 shared + 7
    // sharing. Then ksm_mm_head: full scan 3 ends with a already gone.
    batch(k);
    expect(stats(k)).toEqual(st(1, 7, 0, 0, 3));
    expect(slotOrder(k)).toEqual(['b']);
    expect(pfns(b, mapB, 8)).toEqual(Array(8).fill(b.pfnOf(mapB)));
    k.checkInvariants();

    b.exit();
    expect(k.mem.nrFreeOnline).toBe(free0);
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 0, 4));
    expect(slotOrder(k)).toEqual([]);
    k.checkInvariants();
  });

  it('exit of an mm with no rmap_items, not at the cursor: the easy path frees its slot at once', () => {
    const k = newKernel();
    const free0 = k.mem.nrFreeOnline;
    const a = k.spawn('a');
    mergeableArea(a, 8, 0x61);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(1, 7, 0, 0, 2));

    // d registers between full scans: behind the cursor (ksm_mm_head), i.e. last.
    const d = k.spawn('d');
    mergeableArea(d, 8, 0x61);
    expect(slotOrder(k)).toEqual(['a', 'd']);
    expect(k.mem.nrFreeOnline).toBe(free0 - 1 - 8);
    k.checkInvariants();

    // No rmap_items yet: hlist_del + list_del + free_mm_slot right in __ksm_exit.
    d.exit();
    expect(slotOrder(k)).toEqual(['a']);
    expect(k.ksmEngine.mmSlots.size).toBe(1);
    expect(k.mem.nrFreeOnline).toBe(free0 - 1);
    k.checkInvariants();
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(1, 7, 0, 0, 3));
    k.checkInvariants();
  });
});

describe('pinned pages', () => {
  it('a page pinned for write is never merged while pinned (write_protect_page sees the extra count), and merges after release', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const map = mergeableArea(p, 4, 0x61);
    const pin = p.pin(map + 2 * PAGE_SIZE, { write: true });
    const pinned = p.pfnOf(map + 2 * PAGE_SIZE);
    expect(pin.pfn).toBe(pinned);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 4, 1));
    k.checkInvariants();

    // Scan 2: pages 0 and 1 merge. Page 2 finds the KSM page in the stable tree, but
    // page_mapcount 1 + 1 + 0 != page_count 3: write_protect_page fails, the rmap_item
    // stays in no tree (the stable-tree branch returns before the checksum gate).
    // Page 3 merges.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(1, 2, 0, 1, 2));
    const kpfn = p.pfnOf(map + PAGE_SIZE);
    expect(pfns(p, map, 4)).toEqual([kpfn, kpfn, pinned, kpfn]);
    k.checkInvariants();
    expect(k.ksmd.runFullScans(3)).toBe(3);
    expect(stats(k)).toEqual(st(1, 2, 0, 1, 5));
    expect(p.pfnOf(map + 2 * PAGE_SIZE)).toBe(pinned);
    k.checkInvariants();

    pin.release();
    k.checkInvariants();
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(1, 3, 0, 0, 6));
    expect(pfns(p, map, 4)).toEqual(Array(4).fill(kpfn));
    expect(filledWith(p, map, 4 * PAGE_SIZE, 0x61)).toBe(true);
    k.checkInvariants();
  });
});

describe('max_kernel_pages', () => {
  it('pages_shared stops at max_kernel_pages; the pairs left over stay volatile; 0 lifts the limit', () => {
    const k = newKernel();
    const p = k.spawn('p');
    // Four contents A B C D, three pages each, in that order.
    const map = p.mmap(12 * PAGE_SIZE, { prot: 'rw' });
    for (let g = 0; g < 4; g++) p.memset(map + g * 3 * PAGE_SIZE, 0x41 + g, 3 * PAGE_SIZE);
    p.madvise(map, 12 * PAGE_SIZE, 'MADV_MERGEABLE');
    k.sysfs.write(MAX_KERNEL_PAGES, '2');
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 12, 1));
    k.checkInvariants();

    // Scan 2: A0 unstable, A1 merges (shared 1), A2 stable; B the same (shared 2,
    // sharing 4). C0 goes into the unstable tree; C1 finds it, but
    // try_to_merge_two_pages refuses: max_kernel_pages 2 <= pages_shared 2; C1 was not
    // inserted (the search found a match), so it is volatile; C2 likewise. D0 unstable,
    // D1 and D2 volatile. unshared 2 (C0, D0), volatile 12 - 2 - 4 - 2 = 4.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(2, 4, 2, 4, 2));
    k.checkInvariants();
    // And so on every scan: C0 and D0 leave the old unstable tree and enter the new one.
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(2, 4, 2, 4, 4));
    const c = pfns(p, map + 6 * PAGE_SIZE, 6);
    expect(allDistinct(c)).toBe(true);
    k.checkInvariants();

    // ksm_max_kernel_pages 0 means no limit: C and D merge in the next scan.
    k.sysfs.write(MAX_KERNEL_PAGES, '0');
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(4, 8, 0, 0, 5));
    for (let g = 0; g < 4; g++) {
      expect(new Set(pfns(p, map + g * 3 * PAGE_SIZE, 3)).size).toBe(1);
      expect(filledWith(p, map + g * 3 * PAGE_SIZE, 3 * PAGE_SIZE, 0x41 + g)).toBe(true);
    }
    k.checkInvariants();
  });
});

describe('run', () => {
  function twoProcesses() {
    const k = newKernel();
    const a = k.spawn('a');
    const b = k.spawn('b');
    // a: 8 pages 'x' and 1 page unique to it; b: 8 pages 'x'.
    const mapA = mergeableArea(a, 9, 0x78);
    a.memset(mapA + 8 * PAGE_SIZE, 0x75, PAGE_SIZE);
    const mapB = mergeableArea(b, 8, 0x78);
    return { k, a, b, mapA, mapB };
  }

  it('run=2 unmerges everything: every page on its own frame, all stats 0, full_scans 0, contents intact', () => {
    const { k, a, b, mapA, mapB } = twoProcesses();
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    // 16 'x' pages: one KSM page; a's unique page in the unstable tree.
    expect(stats(k)).toEqual(st(1, 15, 1, 0, 2));
    k.checkInvariants();

    // unmerge_and_remove_all_rmap_items(): break_ksm on every page of every mergeable
    // area, remove_trailing_rmap_items of every slot (the unique page's rmap_item is
    // one scan old: no rb_erase, just pages_unshared--), ksm_scan.seqnr = 0. The
    // mm_slots stay on the list.
    k.sysfs.write(RUN, '2');
    expect(k.sysfs.read(RUN)).toBe('2\n');
    expect(stats(k)).toEqual(st(0, 0, 0, 0, 0));
    const all = [...pfns(a, mapA, 9), ...pfns(b, mapB, 8)];
    expect(all.includes(null)).toBe(false);
    expect(allDistinct(all)).toBe(true);
    expect(filledWith(a, mapA, 8 * PAGE_SIZE, 0x78)).toBe(true);
    expect(filledWith(a, mapA + 8 * PAGE_SIZE, PAGE_SIZE, 0x75)).toBe(true);
    expect(filledWith(b, mapB, 8 * PAGE_SIZE, 0x78)).toBe(true);
    expect(slotOrder(k)).toEqual(['a', 'b']);
    k.checkInvariants();

    // ksmd does not run with run=2 (ksm_run & KSM_RUN_MERGE is 0).
    k.advance(1000);
    expect(k.ksmd.runFullScans(1)).toBe(0);
    expect(stats(k)).toEqual(st(0, 0, 0, 0, 0));
    k.checkInvariants();
  });

  it('run=1 after run=2 merges again from scratch: two full scans, as the first time', () => {
    const { k, a, b, mapA, mapB } = twoProcesses();
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    k.sysfs.write(RUN, '2');
    k.checkInvariants();

    k.sysfs.write(RUN, '1');
    // The rmap_items were freed: new ones start with oldchecksum 0.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 17, 1));
    k.checkInvariants();
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(1, 15, 1, 0, 2));
    const kpfn = a.pfnOf(mapA + PAGE_SIZE);
    expect(pfns(a, mapA, 8)).toEqual(Array(8).fill(kpfn));
    expect(pfns(b, mapB, 8)).toEqual(Array(8).fill(kpfn));
    k.checkInvariants();
  });

  it('run=0 stops ksmd: advance() scans nothing and the stats stay as they were', () => {
    const k = newKernel();
    const p = k.spawn('p');
    mergeableArea(p, 8, 0x61);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 8, 1));

    k.sysfs.write(RUN, '0');
    k.advance(10_000);
    expect(stats(k)).toEqual(st(0, 0, 0, 8, 1));
    expect(k.ksmd.runFullScans(1)).toBe(0);
    expect(k.ksmd.nextWake()).toBe(null);
    k.checkInvariants();
  });

  it('with run=1 and no mm registered, ksmd does nothing: full_scans stays 0', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const map = p.mmap(8 * PAGE_SIZE, { prot: 'rw' });
    p.memset(map, 0x61, 8 * PAGE_SIZE);
    k.sysfs.write(RUN, '1');
    k.advance(10_000);
    expect(stats(k)).toEqual(st(0, 0, 0, 0, 0));
    expect(k.ksmd.batches).toBe(0);
    expect(k.ksmd.runFullScans(3)).toBe(0);
    k.checkInvariants();
  });

  it('once the last mergeable area is unmapped, one scan drops the mm and ksmd goes idle', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const map = mergeableArea(p, 8, 0x61);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(1)).toBe(1);
    p.munmap(map, 8 * PAGE_SIZE);
    k.checkInvariants();
    // No VM_MERGEABLE area: address stays 0, the 8 rmap_items are trailing, the slot
    // is freed; the scan still completes (full_scans 2).
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 0, 2));
    expect(slotOrder(k)).toEqual([]);
    expect(k.ksmd.runFullScans(5)).toBe(0);
    expect(readKsm(k, 'full_scans')).toBe(2);
    k.checkInvariants();
  });
});

describe('ksmd on simulated time', () => {
  it('run=1 wakes ksmd at once, then a batch every sleep_millisecs: 10 pages at pages_to_scan 4 take 3 batches per full scan', () => {
    const k = newKernel();
    const p = k.spawn('p');
    mergeableArea(p, 10, 0x61);
    k.sysfs.write(PAGES_TO_SCAN, '4');
    expect(k.now).toBe(0);
    k.sysfs.write(RUN, '1');

    // t=0: batch 1, pages 0..3 get rmap_items.
    k.advance(0);
    expect(stats(k)).toEqual(st(0, 0, 0, 4, 0));
    // t=20: pages 4..7; t=40: pages 8, 9, then the end of the list: full scan 1.
    k.advance(40);
    expect(stats(k)).toEqual(st(0, 0, 0, 10, 1));
    k.checkInvariants();
    // t=60: pages 0..3 again: 0 unstable, 1 merges with it, 2 and 3 from the stable
    // tree; t=80: pages 4..7 from the stable tree. t=99: nothing more is due.
    k.advance(59);
    expect(stats(k)).toEqual(st(1, 7, 0, 2, 1));
    k.checkInvariants();
    // t=100: pages 8 and 9, end of the list: full scan 2.
    k.advance(1);
    expect(stats(k)).toEqual(st(1, 9, 0, 0, 2));
    expect(k.ksmd.batches).toBe(6);
    k.checkInvariants();
  });

  it('a new sleep_millisecs applies from the next sleep: ksmd is already sleeping the old one', () => {
    const k = newKernel();
    const p = k.spawn('p');
    mergeableArea(p, 10, 0x61);
    k.sysfs.write(PAGES_TO_SCAN, '4');
    k.sysfs.write(RUN, '1');
    k.advance(0); // batch 1 at t=0, then schedule_timeout(20 ms)
    k.sysfs.write(SLEEP_MILLISECS, '100');
    k.advance(19);
    expect(k.ksmd.batches).toBe(1);
    k.advance(1); // t=20: batch 2, then sleeps 100 ms
    expect(k.ksmd.batches).toBe(2);
    k.advance(99);
    expect(k.ksmd.batches).toBe(2);
    k.advance(1); // t=120: batch 3 ends full scan 1
    expect(k.ksmd.batches).toBe(3);
    expect(readKsm(k, 'full_scans')).toBe(1);
    k.checkInvariants();
  });
});

describe('ksm_madvise', () => {
  it('MADV_MERGEABLE is ignored for a shared mapping: no mm_slot, nothing scanned', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const map = p.mmap(8 * PAGE_SIZE, { prot: 'rw', shared: true });
    p.memset(map, 0x61, 8 * PAGE_SIZE);
    const before = pfns(p, map, 8);
    p.madvise(map, 8 * PAGE_SIZE, 'MADV_MERGEABLE');
    expect(p.maps()[0]!.mergeable).toBe(false);
    expect(slotOrder(k)).toEqual([]);
    k.sysfs.write(RUN, '1');
    k.advance(1000);
    expect(stats(k)).toEqual(st(0, 0, 0, 0, 0));
    expect(pfns(p, map, 8)).toEqual(before);
    expect(allDistinct(before)).toBe(true);
    k.checkInvariants();
  });

  it('next to a mergeable private area, the shared area is left alone: only the private pages merge', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const priv = mergeableArea(p, 4, 0x61);
    const shm = p.mmap(4 * PAGE_SIZE, { prot: 'rw', shared: true });
    p.memset(shm, 0x61, 4 * PAGE_SIZE);
    p.madvise(shm, 4 * PAGE_SIZE, 'MADV_MERGEABLE');
    const shmPfns = pfns(p, shm, 4);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(1, 3, 0, 0, 2));
    expect(new Set(pfns(p, priv, 4)).size).toBe(1);
    expect(pfns(p, shm, 4)).toEqual(shmPfns);
    expect(allDistinct([...shmPfns, p.pfnOf(priv)])).toBe(true);
    k.checkInvariants();
  });

  for (const special of ['hugetlb', 'pfnmap', 'io', 'dontexpand', 'mixedmap'] as const) {
    it(`MADV_MERGEABLE is ignored for a ${special} area: no VM_MERGEABLE, no mm_slot`, () => {
      const k = newKernel();
      const p = k.spawn('p');
      const map = p.mmap(8 * PAGE_SIZE, { prot: 'rw', special: [special] });
      p.madvise(map, 8 * PAGE_SIZE, 'MADV_MERGEABLE');
      expect(p.maps()[0]!.mergeable).toBe(false);
      expect(slotOrder(k)).toEqual([]);
      k.sysfs.write(RUN, '1');
      expect(k.ksmd.runFullScans(1)).toBe(0);
      expect(stats(k)).toEqual(st(0, 0, 0, 0, 0));
      k.checkInvariants();
    });
  }

  it('MADV_UNMERGEABLE on an area that is not VM_MERGEABLE is a no-op, even beside merged pages', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const merged = mergeableArea(p, 4, 0x61);
    const plain = p.mmap(4 * PAGE_SIZE, { prot: 'rw' });
    p.memset(plain, 0x61, 4 * PAGE_SIZE);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(1, 3, 0, 0, 2));
    const mergedPfns = pfns(p, merged, 4);
    const plainPfns = pfns(p, plain, 4);
    const mapsBefore = p.maps();

    p.madvise(plain, 4 * PAGE_SIZE, 'MADV_UNMERGEABLE');
    expect(p.maps()).toEqual(mapsBefore);
    expect(pfns(p, merged, 4)).toEqual(mergedPfns);
    expect(pfns(p, plain, 4)).toEqual(plainPfns);
    expect(stats(k)).toEqual(st(1, 3, 0, 0, 2));
    k.checkInvariants();

    // A process KSM has never seen: still nothing, and no mm_slot appears.
    const q = k.spawn('q');
    const qmap = q.mmap(4 * PAGE_SIZE, { prot: 'rw' });
    q.memset(qmap, 0x61, 4 * PAGE_SIZE);
    q.madvise(qmap, 4 * PAGE_SIZE, 'MADV_UNMERGEABLE');
    expect(slotOrder(k)).toEqual(['p']);
    k.checkInvariants();
  });

  it('MADV_MERGEABLE over a range with a hole: the mapped parts become mergeable, then ENOMEM', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const map = p.mmap(8 * PAGE_SIZE, { prot: 'rw' });
    p.memset(map, 0x61, 8 * PAGE_SIZE);
    p.munmap(map + 3 * PAGE_SIZE, 2 * PAGE_SIZE);
    k.checkInvariants();

    expect(errnoOf(() => p.madvise(map, 8 * PAGE_SIZE, 'MADV_MERGEABLE'))).toBe('ENOMEM');
    expect(p.maps().map((m) => [m.start, m.end, m.mergeable])).toEqual([
      [map, map + 3 * PAGE_SIZE, true],
      [map + 5 * PAGE_SIZE, map + 8 * PAGE_SIZE, true],
    ]);
    expect(slotOrder(k)).toEqual(['p']);
    k.checkInvariants();

    // Both parts are scanned: 6 equal pages, one KSM page.
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(1, 5, 0, 0, 2));
    const merged = [...pfns(p, map, 3), ...pfns(p, map + 5 * PAGE_SIZE, 3)];
    expect(new Set(merged).size).toBe(1);
    k.checkInvariants();
  });

  it('__ksm_enter puts a new mm just behind the cursor: mid-scan, it waits for the next full scan, then comes first', () => {
    const k = newKernel();
    const a = k.spawn('a');
    const b = k.spawn('b');
    mergeableArea(a, 8, 0x61);
    mergeableArea(b, 8, 0x62);
    k.sysfs.write(PAGES_TO_SCAN, '4');
    k.sysfs.write(RUN, '1');
    batch(k); // a 0..3
    expect(k.ksmEngine.scanSlot.mm).toBe(a.mm);
    expect(stats(k)).toEqual(st(0, 0, 0, 4, 0));

    // list_add_tail(&c's slot, &ksm_scan.mm_slot->mm_list): before a.
    const c = k.spawn('c');
    mergeableArea(c, 8, 0x63);
    expect(slotOrder(k)).toEqual(['c', 'a', 'b']);
    k.checkInvariants();

    batch(k); // a 4..7
    expect(stats(k)).toEqual(st(0, 0, 0, 8, 0));
    batch(k); // b 0..3
    batch(k); // b 4..7
    expect(stats(k)).toEqual(st(0, 0, 0, 16, 0));
    batch(k); // end of b, back at ksm_mm_head: full scan 1, c never scanned
    expect(stats(k)).toEqual(st(0, 0, 0, 16, 1));
    k.checkInvariants();
    batch(k); // the new full scan starts with c: c 0..3
    expect(stats(k)).toEqual(st(0, 0, 0, 20, 1));
    expect(k.ksmEngine.scanSlot.mm).toBe(c.mm);
    k.checkInvariants();
  });
});

describe('what is never merged', () => {
  it('a page COW-shared by fork before MADV_MERGEABLE is never merged with itself', () => {
    const k = newKernel();
    const parent = k.spawn('parent');
    const map = parent.mmap(PAGE_SIZE, { prot: 'rw' });
    parent.memset(map, 0x61, PAGE_SIZE);
    const child = parent.fork('child');
    const frame = parent.pfnOf(map);
    expect(child.pfnOf(map)).toBe(frame);
    parent.madvise(map, PAGE_SIZE, 'MADV_MERGEABLE');
    child.madvise(map, PAGE_SIZE, 'MADV_MERGEABLE');
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 2, 1));

    // Scan 2: the parent's rmap_item goes into the unstable tree. The child's finds
    // that node's page is its own page ("Don't substitute a ksm page for a forked
    // page"): unstable_tree_search_insert returns NULL without inserting it.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 1, 1, 2));
    k.checkInvariants();
    // And so on for ever.
    expect(k.ksmd.runFullScans(3)).toBe(3);
    expect(stats(k)).toEqual(st(0, 0, 1, 1, 5));
    expect(parent.pfnOf(map)).toBe(frame);
    expect(child.pfnOf(map)).toBe(frame);
    expect(k.mem.isKsm(frame!)).toBe(false);
    k.checkInvariants();
  });

  it('checksum gate: a page that changes between every two scans never enters the unstable tree, even when equal to another at scan time', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const map = p.mmap(2 * PAGE_SIZE, { prot: 'rw' });
    p.memset(map, 0x11, PAGE_SIZE);
    p.memset(map + PAGE_SIZE, 0x22, PAGE_SIZE);
    p.madvise(map, 2 * PAGE_SIZE, 'MADV_MERGEABLE');
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 2, 1));

    // Before each scan page 1 flips between 0x11 (page 0's contents) and 0x22: its
    // checksum always differs from the one recorded in the scan before, so
    // cmp_and_merge_page returns at the gate. Page 0 is in the unstable tree.
    for (let scan = 2; scan <= 7; scan++) {
      p.memset(map + PAGE_SIZE, scan % 2 === 0 ? 0x11 : 0x22, PAGE_SIZE);
      expect(k.ksmd.runFullScans(1)).toBe(1);
      expect(stats(k)).toEqual(st(0, 0, 1, 1, scan));
      expect(p.pfnOf(map)).not.toBe(p.pfnOf(map + PAGE_SIZE));
      k.checkInvariants();
    }
    // Page 1 was last written 0x22 (before scan 7). Make it 0x11 once more: scan 8
    // records its checksum; scan 9 sees it unchanged and merges it with page 0.
    p.memset(map + PAGE_SIZE, 0x11, PAGE_SIZE);
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 1, 1, 8));
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(1, 1, 0, 0, 9));
    expect(p.pfnOf(map)).toBe(p.pfnOf(map + PAGE_SIZE));
    k.checkInvariants();
  });
});

describe('stale stable nodes', () => {
  it('all sharers write their copies: the KSM page is freed, and the next scan removes its stable node', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const map = mergeableArea(p, 3, 0x33);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(1, 2, 0, 0, 2));
    const kpfn = p.pfnOf(map)!;
    const free0 = k.mem.nrFreeOnline;

    // Each write copies the KSM page (three new frames); the third leaves it unmapped
    // and it is freed: its mapping no longer points at the stable node.
    for (let i = 0; i < 3; i++) p.write(map + i * PAGE_SIZE, new Uint8Array([i + 1]));
    expect(k.mem.nrFreeOnline).toBe(free0 - 2);
    expect(k.mem.count[kpfn]).toBe(0);
    expect(k.ksmEngine.rootStableTree.node).not.toBe(0);
    expect(stats(k)).toEqual(st(1, 2, 0, 0, 2));
    k.checkInvariants();

    // Scan 3: get_ksm_page() finds the keyhole empty: remove_node_from_stable_tree.
    // The three pages have new checksums: volatile 3.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 3, 3));
    expect(k.ksmEngine.rootStableTree.node).toBe(0);
    k.checkInvariants();
    // Scan 4: three different pages, all in the unstable tree.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 3, 0, 4));
    for (let i = 0; i < 3; i++) expect(p.read(map + i * PAGE_SIZE, 2)).toEqual(new Uint8Array([i + 1, 0x33]));
    k.checkInvariants();
  });
});

describe('calc_checksum', () => {
  it('jhash2(page, 1024, 17) of a page of 0x61 bytes is 0xdfd17da6', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const map = p.mmap(PAGE_SIZE, { prot: 'rw' });
    p.memset(map, 0x61, PAGE_SIZE);
    expect(k.ksmEngine.calcChecksum(p.pfnOf(map)!)).toBe(0xdfd17da6);
  });

  it('jhash2(page, 1024, 17) of an all-zero page is 0x31cbe0fa', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const map = p.mmap(PAGE_SIZE, { prot: 'rw' });
    p.memset(map, 0, PAGE_SIZE);
    expect(k.ksmEngine.calcChecksum(p.pfnOf(map)!)).toBe(0x31cbe0fa);
    expect(k.ksmEngine.calcChecksum(k.mem.zeroPfn)).toBe(0x31cbe0fa);
  });
});
