/**
 * Page migration through the KSM rmap walk (2.6.33: "ksm: rmap_walk to
 * remove_migation_ptes", "ksm: memory hotremove migration only"), and compaction.
 *
 * unmap_and_move() replaces every pte mapping the page by a migration entry
 * (try_to_unmap with TTU_MIGRATION: for a KSM page, try_to_unmap_ksm()), copies the
 * page and its mapping to the new frame, lets KSM point the stable node at it
 * (ksm_migrate_page()), then remove_migration_ptes() walks the *new* page's rmap —
 * the same stable node, so the same rmap_items, both passes — and maps the new frame
 * wherever it finds a migration entry for the old one. Nothing about sharing changes:
 * the KSM statistics stay as they were.
 *
 * A page that cannot move now — locked, or holding references beyond its mappings
 * and the swap cache (pinned) — is refused with EAGAIN and counts as a failed
 * migration (pgmigrate_fail). A frame that is free, reserved (the zero page) or not
 * an anonymous page is no candidate at all: EINVAL, and no migration was attempted,
 * so no counter moves.
 */
import { describe, expect, it } from 'vitest';
import { Kernel, PAGE_SIZE, type Process } from '../../src/index.js';
import { RUN, errnoOf, st, stats } from '../ksm/helpers.js';
import { forkedAfterMerge, holdsPages, meminfo, mergeablePages, mergedTwins, range, unreachableKsmPage, vmstat, writePages } from './helpers.js';

const P = PAGE_SIZE;

function newKernel(memoryMiB = 64): Kernel {
  return new Kernel({ memoryMiB, swapMiB: 16, blockMiB: 16, seed: 1 });
}

/** The frames of the stable tree's nodes, in tree (content) order. */
function stableKpfns(k: Kernel): number[] {
  const out: number[] = [];
  k.ksmEngine.forEachStableNode((node) => out.push(k.ksmEngine.stableNodeCache.kpfn[node]!));
  return out;
}

/** Two processes with the same page (tag 7), merged into one KSM page. */
function twoMerged() {
  const k = newKernel();
  const { a, b, addrA, addrB, kpfns } = mergedTwins(k, [7]);
  return { k, a, b, addrA, addrB, kpfn: kpfns[0]! };
}

describe('migrating a KSM page', () => {
  it('one KSM page shared by 121 processes (selftests/mm/rmap.c migrate.ksm): every process maps the new frame, pgmigrate_success 1, statistics unchanged', () => {
    const k = newKernel();
    // propagate_children() with every process at levels 1-4 forking MAX_CHILDREN (3):
    // 1 + 3 + 9 + 27 + 81 = 121 processes. Each then maps its own page and fills it
    // with 0xcf (prepare_local_region), mergeable (PR_SET_MEMORY_MERGE).
    const procs: Process[] = [];
    const grow = (p: Process, level: number): void => {
      procs.push(p);
      if (level === 5) return;
      for (let c = 0; c < 3; c++) grow(p.fork(`${p.name}.${c}`), level + 1);
    };
    grow(k.spawn('rmap'), 1);
    expect(procs.length).toBe(121);
    const region = new Map<Process, number>();
    for (const p of procs) {
      const addr = p.mmap(P, { prot: 'rw' });
      p.memset(addr, 0xcf, P);
      p.madvise(addr, P, 'MADV_MERGEABLE');
      region.set(p, addr);
    }
    // merge_and_migrate(): ksm_start() waits for two full scans. The second merges
    // the first two pages into one KSM page (the second process's frame) and 119
    // more find it in the stable tree: pages_shared 1, pages_sharing 120.
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(1, 120, 0, 0, 2));
    const kpfn = procs[1]!.pfnOf(region.get(procs[1]!)!)!;
    expect(procs.every((p) => p.pfnOf(region.get(p)!) === kpfn)).toBe(true);
    expect(k.mem.pageMapcount(kpfn)).toBe(121);
    const free = meminfo(k).MemFree;
    k.checkInvariants();

    // try_to_move_page() from a worker deep in the tree; has_same_pfn() in all.
    const worker = procs[77]!;
    const newPfn = k.migratePage(worker.pfnOf(region.get(worker)!)!);
    k.checkInvariants();
    expect(newPfn).not.toBe(kpfn);
    expect(procs.filter((p) => p.pfnOf(region.get(p)!) !== newPfn).map((p) => p.name)).toEqual([]);
    expect(k.mem.pageMapcount(newPfn)).toBe(121);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 1, pgmigrate_fail: 0 });
    expect(stats(k)).toEqual(st(1, 120, 0, 0, 2));
    expect(stableKpfns(k)).toEqual([newPfn]);
    expect(meminfo(k).MemFree).toBe(free);
    expect(procs.every((p) => Buffer.from(p.read(region.get(p)!, P)).equals(Buffer.alloc(P, 0xcf)))).toBe(true);
    // ksmd finds nothing to redo: every rmap_item is STABLE on a live KSM page.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(1, 120, 0, 0, 3));
    k.checkInvariants();
  });

  it('a child forked after merging, not yet visited by ksmd, is found by the second pass: it maps the new frame', () => {
    const k = newKernel();
    // The first pass of the walk reaches the parent's two ptes (the areas of the
    // rmap_items' own mm), the second the child's, on the same anon_vma.
    const { parent, child, addr, kpfn } = forkedAfterMerge(k);
    const newPfn = k.migratePage(kpfn);
    k.checkInvariants();
    expect([child.pfnOf(addr), child.pfnOf(addr + P), parent.pfnOf(addr), parent.pfnOf(addr + P)]).toEqual([newPfn, newPfn, newPfn, newPfn]);
    expect(k.mem.pageMapcount(newPfn)).toBe(4);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 1 });
    expect(stats(k)).toEqual(st(1, 1, 0, 0, 2));
    expect(holdsPages(child, addr, [5, 5]) && holdsPages(parent, addr, [5, 5])).toBe(true);
  });

  it('the anon_vma a stable rmap_item holds still leads to the child after the parent unmapped its area', () => {
    const k = newKernel();
    const parent = k.spawn('parent');
    const addr = mergeablePages(parent, [5, 5]);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    const kpfn = parent.pfnOf(addr)!;
    const child = parent.fork('child');
    const av = child.mm.vmas[0]!.anonVma!;
    // The parent's area goes: its vma leaves the anon_vma, the child's stays on it.
    // Both rmap_items still name the parent's mm, and hold the anon_vma.
    parent.munmap(addr, 2 * P);
    k.checkInvariants();
    expect(av.vmas.map((v) => v.mm.owner)).toEqual(['child']);
    expect(av.ksmRefcount).toBe(2);
    expect(k.mem.pageMapcount(kpfn)).toBe(2);

    const newPfn = k.migratePage(kpfn);
    k.checkInvariants();
    expect([child.pfnOf(addr), child.pfnOf(addr + P)]).toEqual([newPfn, newPfn]);
    expect(holdsPages(child, addr, [5, 5])).toBe(true);
    expect(stats(k)).toEqual(st(1, 1, 0, 0, 2));
  });

  it('an anonymous page that is not KSM moves too: new frame, same contents, the old frame free', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const addr = p.mmap(2 * P, { prot: 'rw' });
    writePages(p, addr, [1, 2]);
    const old = p.pfnOf(addr)!;
    const free = meminfo(k).MemFree;
    const newPfn = k.migratePage(old);
    k.checkInvariants();
    expect(newPfn).not.toBe(old);
    expect(p.pfnOf(addr)).toBe(newPfn);
    expect(holdsPages(p, addr, [1, 2])).toBe(true);
    expect(meminfo(k).MemFree).toBe(free);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 1, pgmigrate_fail: 0 });
    // The old frame is free now: migrating it is EINVAL.
    expect(errnoOf(() => k.migratePage(old))).toBe('EINVAL');
  });
});

describe('migration refused', () => {
  it('a locked KSM page is not migrated (EAGAIN) and nothing changes', () => {
    const { k, a, b, addrA, addrB, kpfn } = twoMerged();
    const free = meminfo(k).MemFree;
    expect(k.mem.trylockPage(kpfn)).toBe(true);
    expect(errnoOf(() => k.migratePage(kpfn))).toBe('EAGAIN');
    k.checkInvariants();
    expect([a.pfnOf(addrA), b.pfnOf(addrB)]).toEqual([kpfn, kpfn]);
    expect(stats(k)).toEqual(st(1, 1, 0, 0, 2));
    expect(meminfo(k).MemFree).toBe(free);
    expect(stableKpfns(k)).toEqual([kpfn]);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 0, pgmigrate_fail: 1 });
    expect(holdsPages(a, addrA, [7]) && holdsPages(b, addrB, [7])).toBe(true);

    // Unlocked, it moves.
    k.mem.unlockPage(kpfn);
    const newPfn = k.migratePage(kpfn);
    expect([a.pfnOf(addrA), b.pfnOf(addrB)]).toEqual([newPfn, newPfn]);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 1, pgmigrate_fail: 1 });
    k.checkInvariants();
  });

  it('a pinned KSM page is not migrated (EAGAIN) and nothing changes', () => {
    const { k, a, b, addrA, addrB, kpfn } = twoMerged();
    const free = meminfo(k).MemFree;
    const pin = a.pin(addrA);
    expect(pin.pfn).toBe(kpfn);
    expect(errnoOf(() => k.migratePage(kpfn))).toBe('EAGAIN');
    k.checkInvariants();
    expect([a.pfnOf(addrA), b.pfnOf(addrB)]).toEqual([kpfn, kpfn]);
    expect(stats(k)).toEqual(st(1, 1, 0, 0, 2));
    expect(meminfo(k).MemFree).toBe(free);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 0, pgmigrate_fail: 1 });

    pin.release();
    const newPfn = k.migratePage(kpfn);
    expect([a.pfnOf(addrA), b.pfnOf(addrB)]).toEqual([newPfn, newPfn]);
    expect(holdsPages(a, addrA, [7]) && holdsPages(b, addrB, [7])).toBe(true);
    k.checkInvariants();
  });

  it('a free frame, the zero page, or no frame at all: EINVAL, and no migration was attempted', () => {
    const { k } = twoMerged();
    const last = k.mem.nrFrames - 1; // never allocated: the allocator starts at the bottom
    // In use: the zero page and the KSM page; every other frame is free.
    expect(meminfo(k).MemFree).toBe((k.mem.nrFrames - 2) * 4);
    expect(errnoOf(() => k.migratePage(last))).toBe('EINVAL');
    expect(errnoOf(() => k.migratePage(0))).toBe('EINVAL'); // the zero page
    expect(errnoOf(() => k.migratePage(k.mem.nrFrames))).toBe('EINVAL');
    expect(errnoOf(() => k.migratePage(-1))).toBe('EINVAL');
    expect(errnoOf(() => k.migratePage(1.5))).toBe('EINVAL');
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 0, pgmigrate_fail: 0 });
    k.checkInvariants();
  });
});

describe('compaction (/proc/sys/vm/compact_memory)', () => {
  it('moves every movable page to the top of its block; KSM pages keep their stable nodes and statistics', () => {
    // One 16 MiB block: 4096 frames, the zero page at 0.
    const k = new Kernel({ memoryMiB: 16, swapMiB: 0, blockMiB: 16, seed: 1 });
    const a = k.spawn('a');
    const b = k.spawn('b');
    // a: 4 mergeable pages (frames 1-4) and 4 private ones (5-8); b: the same 4
    // mergeable pages (9-12). Merging keeps b's frames as the KSM pages and frees 1-4.
    const shared = mergeablePages(a, [0, 1, 2, 3]);
    const priv = a.mmap(4 * P, { prot: 'rw' });
    writePages(a, priv, [10, 11, 12, 13]);
    const sharedB = mergeablePages(b, [0, 1, 2, 3]);
    expect(range(4).map((i) => a.pfnOf(priv + i * P))).toEqual([5, 6, 7, 8]);
    expect(range(4).map((i) => b.pfnOf(sharedB + i * P))).toEqual([9, 10, 11, 12]);
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    expect(stats(k)).toEqual(st(4, 4, 0, 0, 2));
    expect(range(4).map((i) => a.pfnOf(shared + i * P))).toEqual([9, 10, 11, 12]);
    const free = meminfo(k).MemFree;

    // The migrate scanner walks up from frame 0 (the zero page and frames 1-4 are
    // no candidates), the free scanner down from 4095: 5→4095, 6→4094, ...,
    // 12→4088, and then they meet.
    k.sysfs.write('/proc/sys/vm/compact_memory', '1');
    k.checkInvariants();
    expect(range(4).map((i) => a.pfnOf(priv + i * P))).toEqual([4095, 4094, 4093, 4092]);
    expect(range(4).map((i) => a.pfnOf(shared + i * P))).toEqual([4091, 4090, 4089, 4088]);
    expect(range(4).map((i) => b.pfnOf(sharedB + i * P))).toEqual([4091, 4090, 4089, 4088]);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 8, pgmigrate_fail: 0 });
    expect(stats(k)).toEqual(st(4, 4, 0, 0, 2));
    expect(stableKpfns(k).sort((x, y) => x - y)).toEqual([4088, 4089, 4090, 4091]);
    expect(meminfo(k).MemFree).toBe(free);
    expect(holdsPages(a, shared, [0, 1, 2, 3]) && holdsPages(a, priv, [10, 11, 12, 13]) && holdsPages(b, sharedB, [0, 1, 2, 3])).toBe(true);

    // The stable tree still finds them: a newcomer with page 2's contents merges
    // into the moved KSM page at its first scan (stable_tree_search comes before
    // the checksum gate).
    const c = k.spawn('c');
    const addrC = mergeablePages(c, [2]);
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(c.pfnOf(addrC)).toBe(4089);
    expect(stats(k)).toEqual(st(4, 5, 0, 0, 3));
    k.checkInvariants();
  });

  it('a second compaction finds nothing to move', () => {
    const k = new Kernel({ memoryMiB: 16, swapMiB: 0, blockMiB: 16, seed: 1 });
    const p = k.spawn('p');
    const addr = p.mmap(8 * P, { prot: 'rw' });
    writePages(p, addr, range(8));
    expect(k.compactMemory()).toBe(8);
    expect(k.compactMemory()).toBe(0);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 8 });
    expect(holdsPages(p, addr, range(8))).toBe(true);
    k.checkInvariants();
  });
});

describe('a KSM page mapped again from the swap cache by mappers ksmd no longer tracks', () => {
  // unreachableKsmPage() (helpers.ts) makes the state: a KSM page two ptes map
  // again from the swap cache, with no rmap_item leading to either.

  it('migration is refused with EAGAIN (the walk reaches neither pte) and nothing changes; after ksmd\'s next scan it moves', () => {
    const k = newKernel();
    const { a, b, addrA, addrB, kpfn } = unreachableKsmPage(k, 2);
    const free = meminfo(k).MemFree;
    expect(errnoOf(() => k.migratePage(kpfn))).toBe('EAGAIN');
    k.checkInvariants();
    expect([a.pfnOf(addrA), b.pfnOf(addrB)]).toEqual([kpfn, kpfn]);
    expect(meminfo(k).MemFree).toBe(free);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 0, pgmigrate_fail: 1 });
    expect(holdsPages(a, addrA, [7]) && holdsPages(b, addrB, [7])).toBe(true);

    // Scan 4: each address maps a KSM page with no rmap_item: stable_tree_search()
    // answers with the page itself ("ksm page forked"), and the new rmap_items join
    // its node, each holding its process's anon_vma.
    expect(k.ksmd.runFullScans(1)).toBe(1);
    expect(stats(k)).toEqual(st(1, 1, 0, 0, 4));
    const newPfn = k.migratePage(kpfn);
    expect([a.pfnOf(addrA), b.pfnOf(addrB)]).toEqual([newPfn, newPfn]);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 1, pgmigrate_fail: 1 });
    k.checkInvariants();
  });

  it('compaction leaves it where it is and moves the pages it can', () => {
    const k = new Kernel({ memoryMiB: 16, swapMiB: 16, blockMiB: 16, seed: 1 });
    const { a, b, addrA, addrB, kpfn } = unreachableKsmPage(k, 2);
    // Another page, in the frame the merge freed (1).
    const c = k.spawn('c');
    const addrC = c.mmap(P, { prot: 'rw' });
    writePages(c, addrC, [3]);
    expect(c.pfnOf(addrC)).toBe(1);
    // The scanners: frame 1 → 4095; frame 2 cannot move (its target, 4094, is freed
    // again); then they meet.
    k.sysfs.write('/proc/sys/vm/compact_memory', '1');
    k.checkInvariants();
    expect(c.pfnOf(addrC)).toBe(4095);
    expect([a.pfnOf(addrA), b.pfnOf(addrB)]).toEqual([kpfn, kpfn]);
    expect(vmstat(k)).toMatchObject({ pgmigrate_success: 1, pgmigrate_fail: 1 });
    expect(holdsPages(a, addrA, [7]) && holdsPages(b, addrB, [7]) && holdsPages(c, addrC, [3])).toBe(true);
  });
});
