/**
 * The kernel selftests' KSM cases (tools/testing/selftests/mm/ksm_tests.c and
 * ksm_functional_tests.c) on the model, at a few pages instead of megabytes.
 *
 * Both selftests wait for two full scans after MADV_MERGEABLE + run=1 ("merging
 * occurs only after 2 scans"). Why two, in 2.6.33: a new rmap_item starts with
 * oldchecksum 0, so the first scan only records each page's checksum
 * (cmp_and_merge_page returns at the checksum gate: every page volatile). In the
 * second scan the first page of a content goes into the unstable tree, the second
 * finds it there and try_to_merge_two_pages() makes the *scanned* page (the second
 * one) the KSM page and maps it in place of the first; every later page of that
 * content finds it in the stable tree. So N equal pages give pages_shared 1,
 * pages_sharing N-1, and all N map the frame that was the second page's.
 *
 * 2.6.33 has no max_page_sharing (one KSM page may be shared without limit) and no
 * use_zero_pages: ksm_tests' assert_ksm_pages_count() reduces to shared 1,
 * sharing N-1 for N duplicates.
 */
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/index.js';
import { RUN, allDistinct, filledWith, mergeableArea, newKernel, pfns, slotOrder, st, stats } from './helpers.js';

describe('ksm_tests -M: check_ksm_merge()', () => {
  it('10 pages of "*": after two full scans pages_shared 1, pages_sharing 9, all ten on one frame', () => {
    const k = newKernel();
    const p = k.spawn('ksm_tests');
    // allocate_memory(): mmap(PROT_WRITE), memset('*'), mprotect(prot "rw").
    const map = p.mmap(10 * PAGE_SIZE, { prot: 'rw' });
    p.memset(map, 0x2a, 10 * PAGE_SIZE);
    p.mprotect(map, 10 * PAGE_SIZE, 'rw');
    const second = p.pfnOf(map + PAGE_SIZE);
    k.checkInvariants();
    // ksm_merge_pages(): madvise(MADV_MERGEABLE), run=1, wait for 2 full scans.
    p.madvise(map, 10 * PAGE_SIZE, 'MADV_MERGEABLE');
    k.sysfs.write(RUN, '1');
    k.checkInvariants();

    // Scan 1: ten rmap_items, each only gets its first checksum.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 10, 1));
    k.checkInvariants();

    // Scan 2: page 0 into the unstable tree, page 1 merges with it (page 1's frame
    // becomes the KSM page), pages 2..9 find it in the stable tree.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(1, 9, 0, 0, 2));
    expect(pfns(p, map, 10)).toEqual(Array(10).fill(second));
    expect(filledWith(p, map, 10 * PAGE_SIZE, 0x2a)).toBe(true);
    k.checkInvariants();
  });
});

describe('ksm_tests -U: check_ksm_unmerge()', () => {
  it('writing one byte into each of 2 merged pages gives each a private copy; the next scan drops the stale KSM page', () => {
    const k = newKernel();
    const p = k.spawn('ksm_tests');
    const map = mergeableArea(p, 2, 0x2a);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    // Page 1's frame is the KSM page; page 0's rmap_item went into the stable tree
    // first (pages_shared), page 1's second (pages_sharing).
    expect(stats(k)).toEqual(st(1, 1, 0, 0, 2));
    const kpfn = p.pfnOf(map + PAGE_SIZE);
    expect(p.pfnOf(map)).toBe(kpfn);
    k.checkInvariants();

    // memset(map, '-', 1); memset(map + page_size, '+', 1): do_wp_page never reuses a
    // KSM page, so each write copies. After the second copy nothing maps the KSM page
    // and it is freed, but ksmd has not looked yet: the counts still say 1 and 1, and
    // the stable node is stale (its keyhole no longer fits).
    p.memset(map, 0x2d, 1);
    p.memset(map + PAGE_SIZE, 0x2b, 1);
    const after = pfns(p, map, 2);
    expect(allDistinct([...after, kpfn])).toBe(true);
    expect(stats(k)).toEqual(st(1, 1, 0, 0, 2));
    k.checkInvariants();

    // Scan 3: page 0's rmap_item is STABLE but its page is no KSM page, so
    // cmp_and_merge_page -> remove_rmap_item_from_tree -> get_ksm_page finds the node
    // stale -> remove_node_from_stable_tree takes both rmap_items out (sharing 0,
    // shared 0). Both pages' checksums changed: volatile 2. (assert_ksm_pages_count(0).)
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 2, 3));
    k.checkInvariants();

    // Scan 4: checksums unchanged; '-***' and '+***' differ, so both go into the
    // unstable tree.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 2, 0, 4));
    expect(pfns(p, map, 2)).toEqual(after);
    expect(p.read(map, 2)).toEqual(new Uint8Array([0x2d, 0x2a]));
    expect(p.read(map + PAGE_SIZE, 2)).toEqual(new Uint8Array([0x2b, 0x2a]));
    k.checkInvariants();
  });
});

describe('ksm_functional_tests: test_unmerge()', () => {
  it('MADV_UNMERGEABLE on 32 merged pages leaves no two pages on one frame; the next scan drops the mm', () => {
    const k = newKernel();
    const p = k.spawn('ksm_functional_tests');
    const size = 32 * PAGE_SIZE;
    const map = mergeableArea(p, 32, 0xcf);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(1, 31, 0, 0, 2));
    expect(new Set(pfns(p, map, 32)).size).toBe(1);
    k.checkInvariants();

    // unmerge_ksm_pages() breaks COW on every page; the rmap_items are left for ksmd,
    // so the counts do not move yet.
    p.madvise(map, size, 'MADV_UNMERGEABLE');
    expect(allDistinct(pfns(p, map, 32))).toBe(true);
    expect(pfns(p, map, 32).includes(null)).toBe(false);
    expect(p.maps()[0]!.mergeable).toBe(false);
    expect(stats(k)).toEqual(st(1, 31, 0, 0, 2));
    expect(filledWith(p, map, size, 0xcf)).toBe(true);
    k.checkInvariants();

    // Next scan: no VM_MERGEABLE area, so ksm_scan.address stays 0: every rmap_item is
    // trailing (the first finds the stable node stale and takes all 32 out), and the
    // mm_slot is freed as __ksm_exit would.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 0, 3));
    expect(slotOrder(k)).toEqual([]);
    expect(k.ksmd.runFullScans(1)).toBe(0);
    k.checkInvariants();
  });
});

describe('ksm_functional_tests: test_unmerge_discarded()', () => {
  it('MADV_DONTNEED on half the merged pages, then MADV_UNMERGEABLE: holes stay holes, the rest are distinct', () => {
    const k = newKernel();
    const p = k.spawn('ksm_functional_tests');
    const size = 32 * PAGE_SIZE;
    const map = mergeableArea(p, 32, 0xcf);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(1, 31, 0, 0, 2));
    k.checkInvariants();

    // Discard the first half: pte_none there; the KSM page is still mapped 16 times.
    p.madvise(map, size / 2, 'MADV_DONTNEED');
    expect(pfns(p, map, 16)).toEqual(Array(16).fill(null));
    expect(new Set(pfns(p, map + size / 2, 16)).size).toBe(1);
    expect(stats(k)).toEqual(st(1, 31, 0, 0, 2));
    k.checkInvariants();

    // break_ksm() finds no page at the holes and leaves them; the 16 others are copied.
    p.madvise(map, size, 'MADV_UNMERGEABLE');
    const after = pfns(p, map, 32);
    expect(after.slice(0, 16)).toEqual(Array(16).fill(null));
    expect(after.slice(16).includes(null)).toBe(false);
    expect(allDistinct(after)).toBe(true);
    expect(stats(k)).toEqual(st(1, 31, 0, 0, 2));
    k.checkInvariants();

    // As in test_unmerge: one scan drops all 32 rmap_items and the mm_slot.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 0, 3));
    expect(filledWith(p, map, size / 2, 0)).toBe(true);
    expect(filledWith(p, map + size / 2, size / 2, 0xcf)).toBe(true);
    k.checkInvariants();
  });
});

describe('ksm_functional_tests: test_prot_none()', () => {
  it('a PROT_NONE area merges; ptrace writes and MADV_UNMERGEABLE then unshare every page', () => {
    const k = newKernel();
    const p = k.spawn('ksm_functional_tests');
    const size = 16 * PAGE_SIZE;
    // mmap_and_merge_range(0x11, size, PROT_NONE): memset, mprotect(PROT_NONE), madvise.
    const map = p.mmap(size, { prot: 'rw' });
    p.memset(map, 0x11, size);
    p.mprotect(map, size, 'none');
    p.madvise(map, size, 'MADV_MERGEABLE');
    k.sysfs.write(RUN, '1');
    k.checkInvariants();

    // ksm_madvise() does not look at the protection, follow_page() finds the present
    // ptes, write_protect_page() has nothing to write-protect: all 16 merge.
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(1, 15, 0, 0, 2));
    expect(new Set(pfns(p, map, 16)).size).toBe(1);
    k.checkInvariants();

    // "Store a unique value in each page on one half using ptrace": a forced write
    // breaks COW even without PROT_WRITE.
    for (let i = 0; i < size / 2; i += PAGE_SIZE) {
      const v = new Uint8Array(4);
      new DataView(v.buffer).setInt32(0, i, true);
      p.pokeMem(map + i, v);
    }
    k.checkInvariants();
    // "Trigger unsharing on the other half."
    p.madvise(map + size / 2, size / 2, 'MADV_UNMERGEABLE');
    expect(allDistinct(pfns(p, map, 16))).toBe(true);
    expect(pfns(p, map, 16).includes(null)).toBe(false);
    expect(stats(k)).toEqual(st(1, 15, 0, 0, 2));
    k.checkInvariants();

    // Scan 3: the first page finds the stable node stale: all 16 rmap_items leave the
    // stable tree. The first half (still VM_MERGEABLE) changed checksums: volatile.
    // The second half is no longer VM_MERGEABLE: its 8 rmap_items are trailing, freed.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 8, 3));
    // Scan 4: the 8 written pages are all different: the unstable tree holds them.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 8, 0, 4));
    for (let i = 0; i < 8; i++) {
      const page = Buffer.alloc(PAGE_SIZE, 0x11);
      page.writeInt32LE(i * PAGE_SIZE, 0);
      expect(Buffer.from(p.peekMem(map + i * PAGE_SIZE, PAGE_SIZE)).equals(page)).toBe(true);
    }
    expect(Buffer.from(p.peekMem(map + size / 2, size / 2)).equals(Buffer.alloc(size / 2, 0x11))).toBe(true);
    k.checkInvariants();
  });
});

describe('fork after merging', () => {
  it('the child maps the same KSM pages, and joins their stable node when ksmd reaches it: sharing +10', () => {
    const k = newKernel();
    const parent = k.spawn('parent');
    const map = mergeableArea(parent, 10, 0x5a);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(1, 9, 0, 0, 2));
    const kpfn = parent.pfnOf(map)!;
    k.checkInvariants();

    // ksm_fork() -> __ksm_enter(child): the cursor is at ksm_mm_head between full
    // scans, so the child goes in just behind it, at the end of the list.
    const child = parent.fork('child');
    expect(pfns(child, map, 10)).toEqual(Array(10).fill(kpfn));
    expect(slotOrder(k)).toEqual(['parent', 'child']);
    // Nothing is counted for the child until ksmd reaches it.
    expect(stats(k)).toEqual(st(1, 9, 0, 0, 2));
    k.checkInvariants();

    // Scan 3: the parent's pages are KSM pages in the stable tree: skipped. Each child
    // page is a KSM page ("ksm page forked"): stable_tree_search returns the page
    // itself, try_to_merge_one_page(page == kpage) succeeds at once, and the new
    // rmap_item is appended to the stable node: pages_sharing 9 + 10.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(1, 19, 0, 0, 3));
    expect(pfns(child, map, 10)).toEqual(Array(10).fill(kpfn));
    expect(pfns(parent, map, 10)).toEqual(Array(10).fill(kpfn));
    expect(filledWith(child, map, 10 * PAGE_SIZE, 0x5a)).toBe(true);
    k.checkInvariants();
  });
});

describe('zero pages', () => {
  it('pages never written are not merged: no page to follow, or only the zero page, which is not anonymous', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const map = p.mmap(10 * PAGE_SIZE, { prot: 'rw' });
    p.madvise(map, 10 * PAGE_SIZE, 'MADV_MERGEABLE');
    // Read five of them: the zero page is mapped there (no anon_vma is set up).
    expect(filledWith(p, map, 5 * PAGE_SIZE, 0)).toBe(true);
    expect(pfns(p, map, 5)).toEqual(Array(5).fill(k.mem.zeroPfn));
    expect(pfns(p, map + 5 * PAGE_SIZE, 5)).toEqual(Array(5).fill(null));
    k.sysfs.write(RUN, '1');
    k.checkInvariants();

    // The area has no anon_vma: scan_get_next_rmap_item skips it to vm_end, so no
    // rmap_item is ever made, yet the mm stays listed (address is not 0) and full
    // scans go on.
    expect(k.ksmd.runFullScans(3)).toBe(3);
    expect(stats(k)).toEqual(st(0, 0, 0, 0, 3));
    expect(slotOrder(k)).toEqual(['p']);
    k.checkInvariants();
  });

  it('pages written with zeros are ordinary pages and merge (2.6.33 has no use_zero_pages)', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const map = mergeableArea(p, 10, 0x00);
    const second = p.pfnOf(map + PAGE_SIZE);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(1, 9, 0, 0, 2));
    expect(pfns(p, map, 10)).toEqual(Array(10).fill(second));
    expect(second).not.toBe(k.mem.zeroPfn);
    k.checkInvariants();
  });
});

describe('merging across processes', () => {
  it('two processes with 10 equal pages each: pages_shared 1, pages_sharing 19, one frame', () => {
    const k = newKernel();
    const a = k.spawn('a');
    const b = k.spawn('b');
    const mapA = mergeableArea(a, 10, 0x61);
    const mapB = mergeableArea(b, 10, 0x61);
    // a registered first, so a's page 1 is the page that becomes the KSM page.
    const kpfn = a.pfnOf(mapA + PAGE_SIZE);
    expect(slotOrder(k)).toEqual(['a', 'b']);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(0, 0, 0, 20, 1));
    k.checkInvariants();
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(1, 19, 0, 0, 2));
    expect(pfns(a, mapA, 10)).toEqual(Array(10).fill(kpfn));
    expect(pfns(b, mapB, 10)).toEqual(Array(10).fill(kpfn));
    expect(filledWith(b, mapB, 10 * PAGE_SIZE, 0x61)).toBe(true);
    k.checkInvariants();
  });

  it('two processes with different contents: one KSM page per content', () => {
    const k = newKernel();
    const a = k.spawn('a');
    const b = k.spawn('b');
    const mapA = mergeableArea(a, 10, 0x61);
    const mapB = mergeableArea(b, 10, 0x62);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(2, 18, 0, 0, 2));
    expect(new Set(pfns(a, mapA, 10)).size).toBe(1);
    expect(new Set(pfns(b, mapB, 10)).size).toBe(1);
    expect(a.pfnOf(mapA)).not.toBe(b.pfnOf(mapB));
    k.checkInvariants();
  });
});

describe('one content shared by many processes', () => {
  it('16 processes x 8 equal pages: one KSM page for all 128 (no max_page_sharing in 2.6.33)', () => {
    const k = newKernel();
    const procs = Array.from({ length: 16 }, (_, i) => k.spawn(`p${i}`));
    const maps = procs.map((p) => mergeableArea(p, 8, 0x77));
    const kpfn = procs[0]!.pfnOf(maps[0]! + PAGE_SIZE);
    k.sysfs.write(RUN, '1');
    // 128 pages at pages_to_scan 100: each full scan takes two batches; the unstable
    // tree lives across them, so the result is the same as in one batch.
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(1, 127, 0, 0, 2));
    procs.forEach((p, i) => expect(pfns(p, maps[i]!, 8)).toEqual(Array(8).fill(kpfn)));
    k.checkInvariants();
  });
});
