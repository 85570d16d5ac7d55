import { KernelError, assert } from '../lib/errors.js';
import {
  PG_ANON,
  PG_BUDDY,
  PG_DIRTY,
  PG_KSM,
  PG_LOCKED,
  PG_LRU,
  PG_MLOCKED,
  PG_OFFLINE,
  PG_REFERENCED,
  PG_RESERVED,
  PG_SHMEM,
  PG_SWAPBACKED,
  PG_SWAPCACHE,
  PG_UPTODATE,
  PTE_KIND_MASK,
  PTE_MIGRATION,
  PTE_WRITE,
  decodePageFlags,
  mkPte,
  ptePayload,
} from './constants.js';
import type { HostKernel } from './kernel.js';
import { isThpFrame, splitHugePmd } from './huge-memory.js';
import { SWAP_AGAIN, TTU_IGNORE_MLOCK, TTU_MIGRATION, pageAddAnonRmap, rmapWalk, tryToUnmap, type RmapWalkControl } from './rmap.js';
import type { Vma } from './vma.js';

/**
 * Page migration (mm/migrate.c, 2.6.33): move an anonymous or KSM page to another
 * frame while every process keeps mapping it.
 *
 * unmap_and_move(): lock the page, replace every pte mapping it by a migration
 * entry (try_to_unmap with TTU_MIGRATION — KSM pages through try_to_unmap_ksm),
 * move the mapping, swap-cache slot and flags to the new frame, copy the contents,
 * let KSM move its stable node (ksm_migrate_page), then remove_migration_ptes():
 * walk the rmap again — the new page has the same `mapping`, so the same walk,
 * KSM's two passes included — and point every migration entry at the new frame.
 *
 * Nothing runs between the unmap and the remap in the model, so no fault ever
 * meets a migration entry.
 */

/** Page flags that travel with the page (migrate_page_copy()). */
const MIGRATE_FLAGS = PG_ANON | PG_KSM | PG_DIRTY | PG_REFERENCED | PG_UPTODATE | PG_SWAPBACKED | PG_SWAPCACHE | PG_MLOCKED;

/** Why a page cannot be migrated now, or null when it can (isolate + refcount checks). */
export function migrationBlocker(k: HostKernel, pfn: number): { code: 'EINVAL' | 'EBUSY' | 'EAGAIN'; why: string } | null {
  const mem = k.mem;
  if (!Number.isInteger(pfn) || pfn < 0 || pfn >= mem.nrFrames) return { code: 'EINVAL', why: `pfn ${pfn} is not a frame of this machine` };
  if (mem.untouched(pfn)) return { code: 'EINVAL', why: `pfn ${pfn} is free` };
  const f = mem.flags[pfn]!;
  if ((f & (PG_BUDDY | PG_OFFLINE)) !== 0) return { code: 'EINVAL', why: `pfn ${pfn} is free` };
  if ((f & PG_RESERVED) !== 0) return { code: 'EINVAL', why: `pfn ${pfn} is reserved (the zero page)` };
  if ((f & PG_SHMEM) !== 0 || (f & PG_ANON) === 0) return { code: 'EINVAL', why: `pfn ${pfn} is not an anonymous or KSM page (${decodePageFlags(f)})` };
  if ((f & PG_LRU) === 0) return { code: 'EBUSY', why: `pfn ${pfn} is not on an LRU list (isolated by someone else)` };
  if ((f & PG_LOCKED) !== 0) return { code: 'EAGAIN', why: `pfn ${pfn} is locked` };
  const expected = mem.pageMapcount(pfn) + ((f & PG_SWAPCACHE) !== 0 ? 1 : 0);
  if (mem.count[pfn] !== expected) {
    return { code: 'EAGAIN', why: `pfn ${pfn} has ${mem.count[pfn]! - expected} reference(s) beyond its mappings (pinned)` };
  }
  return null;
}

/**
 * Migrate the page at `pfn` to `newPfn` (a frame already allocated for us, count 1),
 * or to a frame of the allocator's choice when newPfn is -1: on node `nid`, or on
 * the page's own node when nid is -1, falling back as allocation does. Returns the
 * new frame.
 * Throws KernelError (EINVAL, EBUSY, EAGAIN, ENOMEM) with nothing changed.
 */
export function migratePage(k: HostKernel, pfn: number, newPfn = -1, nid = -1): number {
  const mem = k.mem;
  const blocker = migrationBlocker(k, pfn);
  // A THP moves as small pages (see src/mm/huge-memory.ts): split it once it is
  // known the page can move.
  if (blocker === null && isThpFrame(mem.flags, pfn)) splitHugePmd(k, pfn);
  if (blocker !== null) {
    if (newPfn >= 0) mem.putPage(newPfn);
    // Only a page taken for migration that then could not move (EAGAIN: locked or
    // pinned) is a failed migration. A free, reserved, non-anonymous or isolated
    // frame never became a candidate (isolate_lru_page() refused it, as move_pages
    // and offlining do before migrate_pages()): no counter moves.
    if (blocker.code === 'EAGAIN') k.vmstat.pgmigrate_fail++;
    throw new KernelError(blocker.code, `cannot migrate: ${blocker.why}`);
  }
  if (newPfn < 0) {
    // The page's own node unless told otherwise (move_pages()): migration for
    // compaction stays on the node.
    newPfn = mem.allocFrame(false, nid >= 0 ? nid : mem.nodeOf(pfn));
    if (newPfn < 0) {
      k.vmstat.pgmigrate_fail++;
      throw new KernelError('ENOMEM', `cannot migrate pfn ${pfn}: no free frame to move it to`);
    }
  }
  // isolate_lru_page(): off its list, with a reference of ours.
  const list = mem.lruListOf(pfn);
  mem.lruDel(pfn);
  mem.getPage(pfn);
  mem.lockPage(pfn);
  mem.lockPage(newPfn);

  const mapped = mem.pageMapcount(pfn);
  if (mapped > 0) tryToUnmap(k, pfn, TTU_MIGRATION | TTU_IGNORE_MLOCK);
  if (mem.pageMapcount(pfn) !== 0) {
    // Some pte could not be reached: put back every migration entry and give up.
    removeMigrationPtes(k, pfn, pfn);
    mem.unlockPage(newPfn);
    mem.putPage(newPfn);
    mem.unlockPage(pfn);
    mem.lruAdd(pfn, list);
    mem.putPage(pfn);
    k.vmstat.pgmigrate_fail++;
    throw new KernelError('EAGAIN', `cannot migrate pfn ${pfn}: ${mem.pageMapcount(pfn)} mapping(s) not reached by the rmap walk`);
  }

  // migrate_page_move_mapping() + migrate_page_copy()
  const oldFlags = mem.flags[pfn]!;
  mem.flags[newPfn]! |= oldFlags & MIGRATE_FLAGS;
  mem.setMapping(newPfn, mem.mappingOf(pfn));
  mem.index[newPfn] = mem.index[pfn]!;
  if ((oldFlags & PG_SWAPCACHE) !== 0) {
    const off = mem.private[pfn]!;
    mem.private[newPfn] = off;
    k.swap!.cache[off] = newPfn;
    mem.flags[pfn]! &= ~PG_SWAPCACHE;
    mem.private[pfn] = 0;
    mem.getPage(newPfn); // the swap cache's reference moves with it
    mem.putPage(pfn);
  }
  mem.copyPage(newPfn, pfn);
  if ((oldFlags & PG_KSM) !== 0 && k.ksm !== null) k.ksm.migratePage(newPfn, pfn);
  // The old page is no longer anything's: it keeps no mapping or flags that a
  // keyhole or an rmap walk could mistake for the live page.
  mem.flags[pfn]! &= ~(MIGRATE_FLAGS & ~PG_LOCKED);
  mem.setMapping(pfn, null);

  removeMigrationPtes(k, pfn, newPfn);
  assert(mem.pageMapcount(newPfn) === mapped, () => `migration of pfn ${pfn}: ${mapped} mappings before, ${mem.pageMapcount(newPfn)} after`);

  mem.unlockPage(pfn);
  mem.unlockPage(newPfn);
  // putback_lru_page(): onto the list the old page was isolated from (isolating it
  // cleared its PG_active / PG_unevictable, so `list` is the one record of it).
  mem.lruAdd(newPfn, list);
  mem.putPage(newPfn); // the allocation's reference: the ptes and swap cache hold it now
  mem.putPage(pfn); // ours: the old frame is free
  k.vmstat.pgmigrate_success++;
  return newPfn;
}

/** remove_migration_ptes()'s walk: each migration entry for oldPfn becomes a pte of newPfn. */
class RemoveMigrationWalk implements RmapWalkControl {
  k: HostKernel | null = null;
  oldPfn = -1;

  rmapOne(newPfn: number, vma: Vma, addr: number): number {
    const k = this.k!;
    const pte = vma.mm.getPte(addr);
    if ((pte & PTE_KIND_MASK) !== PTE_MIGRATION || ptePayload(pte) !== this.oldPfn) return SWAP_AGAIN;
    k.mem.getPage(newPfn);
    vma.mm.setPte(addr, mkPte(newPfn, pte & PTE_WRITE));
    pageAddAnonRmap(k, newPfn, vma, addr);
    return SWAP_AGAIN;
  }

  done(): boolean {
    return false;
  }
}
const scratchRemoveMigrationWalk = new RemoveMigrationWalk();

/**
 * remove_migration_ptes(old, new): every migration entry for `old` found by the
 * rmap walk of `new` becomes a pte mapping `new`, writable if the original was.
 */
function removeMigrationPtes(k: HostKernel, oldPfn: number, newPfn: number): void {
  const w = scratchRemoveMigrationWalk;
  w.k = k;
  w.oldPfn = oldPfn;
  rmapWalk(k, newPfn, w);
  w.k = null;
}

/**
 * /proc/sys/vm/compact_memory: in each online block, the migrate scanner walks up
 * from the bottom taking movable pages, the free scanner walks down from the top
 * taking free frames, and each page found below a free frame moves up into it,
 * until the scanners meet (mm/compaction.c, 2.6.35). Returns pages moved.
 */
export function compactMemory(k: HostKernel): number {
  const mem = k.mem;
  let moved = 0;
  for (const block of mem.blocks) {
    // A block never used has nothing to move (and its free frames no metadata yet).
    if (!block.online || block.isolated || !block.initialized) continue;
    let low = block.startPfn;
    let high = block.startPfn + mem.framesIn(block) - 1;
    for (;;) {
      while (low < high && migrationBlocker(k, low) !== null) low++;
      while (high > low && (mem.flags[high]! & PG_BUDDY) === 0) high--;
      if (low >= high) break;
      if (!mem.allocSpecificFrame(high)) break;
      try {
        migratePage(k, low, high);
        moved++;
        high--;
      } catch (e) {
        // A page the rmap walk cannot fully reach (a KSM page faulted back from the
        // swap cache by a process ksmd has not yet given an rmap_item) fails with
        // EAGAIN, everything put back and `high` freed again: compaction puts such a
        // page back on the LRU and goes on (putback_lru_pages), it never fails.
        if (!(e instanceof KernelError) || e.code !== 'EAGAIN') throw e;
      }
      low++;
    }
  }
  return moved;
}
