import { assert, bug } from '../lib/errors.js';
import {
  PG_ANON,
  PG_DIRTY,
  PG_KSM,
  PG_MLOCKED,
  PG_REFERENCED,
  PTE_DIRTY,
  PTE_WRITE,
  PTE_YOUNG,
  VM_LOCKED,
  mkMigrationPte,
  ptePayload,
  ptePresent,
  pteClear,
} from './constants.js';
import type { ReferencedState } from './ksm-ops.js';
import type { HostKernel } from './kernel.js';
import { LRU_ACTIVE_ANON, LRU_UNEVICTABLE } from './physmem.js';
import type { AnonVma, Vma } from './vma.js';

/** Results of rmap walks and unmapping (include/linux/rmap.h). */
export const SWAP_SUCCESS = 0;
export const SWAP_AGAIN = 1;
export const SWAP_FAIL = 2;
export const SWAP_MLOCK = 3;

/** try_to_unmap() flags (enum ttu_flags). */
export const TTU_UNMAP = 0;
export const TTU_MIGRATION = 1;
export const TTU_IGNORE_MLOCK = 1 << 8;
export const TTU_IGNORE_ACCESS = 1 << 9;

/**
 * Reverse mapping (mm/rmap.c, 2.6.33): from a page to every pte that maps it.
 *
 * An anonymous page's `mapping` is its anon_vma and its `index` the linear page
 * index; every vma on that anon_vma's list that covers the index may map it, so a
 * walk visits those and checks the pte. A KSM page's `mapping` is its stable node
 * instead, and the walk is KSM's (rmap_walk_ksm and friends, reached through
 * kernel.ksm). Shared anonymous (shmem) pages are never walked in this model: they
 * are not reclaimed or migrated (see README, "Differences from Linux").
 */

/** page_add_new_anon_rmap(): a freshly allocated page's first mapping. */
export function pageAddNewAnonRmap(k: HostKernel, pfn: number, vma: Vma, addr: number): void {
  const mem = k.mem;
  assert(vma.anonVma !== null, () => `new anon rmap in ${vma} without anon_vma`);
  mem.mapcount[pfn] = 0;
  mem.flags[pfn]! |= PG_ANON;
  mem.setMapping(pfn, vma.anonVma);
  mem.index[pfn] = vma.linearIndex(addr);
  // lru_cache_add_active_or_unevictable()
  mem.lruAdd(pfn, (vma.flags & VM_LOCKED) !== 0 ? LRU_UNEVICTABLE : LRU_ACTIVE_ANON);
  if ((vma.flags & VM_LOCKED) !== 0) mem.flags[pfn]! |= PG_MLOCKED;
}

/**
 * page_add_anon_rmap(): one more pte maps an anonymous page. The first mapping of
 * a page that has none (a page read back from swap) sets its anon_vma and index.
 */
export function pageAddAnonRmap(k: HostKernel, pfn: number, vma: Vma, addr: number): void {
  const mem = k.mem;
  if (++mem.mapcount[pfn]! === 0 && (mem.flags[pfn]! & PG_ANON) === 0) {
    assert(vma.anonVma !== null, () => `anon rmap in ${vma} without anon_vma`);
    mem.flags[pfn]! |= PG_ANON;
    mem.setMapping(pfn, vma.anonVma);
    mem.index[pfn] = vma.linearIndex(addr);
  }
}

/** page_dup_rmap(): fork copied a pte. */
export function pageDupRmap(k: HostKernel, pfn: number): void {
  k.mem.mapcount[pfn]!++;
}

/** page_remove_rmap(): a pte no longer maps the page. */
export function pageRemoveRmap(k: HostKernel, pfn: number): void {
  const m = --k.mem.mapcount[pfn]!;
  if (m < -1) bug(`page_remove_rmap underflow on ${k.mem.describe(pfn)}`);
}

/** page_address_in_vma() for an anonymous page: where it would sit in vma, or -1. */
export function pageAddressInVma(k: HostKernel, pfn: number, vma: Vma): number {
  const mem = k.mem;
  if ((mem.flags[pfn]! & (PG_ANON | PG_KSM)) === PG_ANON) {
    if (vma.anonVma !== mem.mappingOf(pfn)) return -1;
  } else if ((mem.flags[pfn]! & PG_KSM) === 0) {
    return -1;
  }
  return vma.addressOf(mem.index[pfn]!);
}

/**
 * mm/rmap.c struct rmap_walk_control (Linux 3.x; 2.6.33 writes each walk out): what
 * an rmap walk does at each (vma, address) that may map the page, and when it may
 * stop early. One walk per kind of page (rmap_walk_anon here, rmap_walk_ksm in KSM)
 * serves page_referenced(), try_to_unmap(), munlock and migration alike.
 *
 * Callers on the reclaim path keep one control per kind of walk as a module scratch
 * object, its arguments in fields set before each walk: no closure or object is
 * made per page.
 */
export interface RmapWalkControl {
  /** rmap_one(): visit the page as mapped at `addr` in `vma`. SWAP_AGAIN goes on; anything else ends the walk and is its result. */
  rmapOne(pfn: number, vma: Vma, addr: number): number;
  /** done(): asked after each visit that went on; true ends the walk (with SWAP_AGAIN). */
  done(pfn: number): boolean;
}

/** rmap_walk_anon() */
function rmapWalkAnon(k: HostKernel, pfn: number, rwc: RmapWalkControl): number {
  const anonVma = k.mem.mappingOf(pfn) as AnonVma | null;
  if (anonVma === null) return SWAP_AGAIN;
  const index = k.mem.index[pfn]!;
  // The list may change under us only through rmapOne, which never unlinks vmas.
  for (const vma of anonVma.vmas) {
    const addr = vma.addressOf(index);
    if (addr < 0) continue;
    const ret = rwc.rmapOne(pfn, vma, addr);
    if (ret !== SWAP_AGAIN) return ret;
    if (rwc.done(pfn)) return SWAP_AGAIN;
  }
  return SWAP_AGAIN;
}

/** rmap_walk(): every (vma, address) that may map the page, through rwc. */
export function rmapWalk(k: HostKernel, pfn: number, rwc: RmapWalkControl): number {
  if (k.mem.isKsm(pfn)) {
    if (k.ksm === null) bug(`KSM page ${k.mem.describe(pfn)} with no KSM registered`);
    return k.ksm.rmapWalk(pfn, rwc);
  }
  if (!k.mem.isAnon(pfn)) return SWAP_AGAIN;
  return rmapWalkAnon(k, pfn, rwc);
}

/**
 * page_referenced_one(): test and clear the young bit of the pte mapping the page
 * at addr. A page in a VM_LOCKED area counts as referenced and reports VM_LOCKED,
 * so reclaim keeps it.
 */
export function pageReferencedOne(_k: HostKernel, pfn: number, vma: Vma, addr: number, state: ReferencedState): number {
  const mm = vma.mm;
  const pte = mm.getPte(addr);
  if (!ptePresent(pte) || ptePayload(pte) !== pfn) return 0;
  state.mapcount--;
  let referenced = 0;
  if ((vma.flags & VM_LOCKED) !== 0) {
    state.mapcount = 0; // break early from the walk
    state.vmFlags |= VM_LOCKED;
    return 1;
  }
  if ((pte & PTE_YOUNG) !== 0) {
    mm.setPte(addr, pteClear(pte, PTE_YOUNG));
    referenced = 1;
  }
  if (referenced !== 0) state.vmFlags |= vma.flags;
  return referenced;
}

/** page_referenced()'s walk: page_referenced_one() at each mapping, done when no mapping is left to look at. */
class ReferencedWalk implements RmapWalkControl {
  k: HostKernel | null = null;
  state: ReferencedState = { mapcount: 0, vmFlags: 0 };
  referenced = 0;

  rmapOne(pfn: number, vma: Vma, addr: number): number {
    this.referenced += pageReferencedOne(this.k!, pfn, vma, addr, this.state);
    return SWAP_AGAIN;
  }

  done(): boolean {
    return this.state.mapcount <= 0;
  }
}
const scratchReferencedWalk = new ReferencedWalk();

/**
 * page_referenced(): how many ptes had the page young, clearing them; plus the
 * page's own PG_referenced. Anonymous pages are walked through their anon_vma,
 * KSM pages through KSM's walk (page_referenced_ksm()).
 */
export function pageReferenced(k: HostKernel, pfn: number, state: ReferencedState): number {
  const mem = k.mem;
  let referenced = 0;
  if ((mem.flags[pfn]! & PG_REFERENCED) !== 0) {
    mem.flags[pfn]! &= ~PG_REFERENCED;
    referenced++;
  }
  state.mapcount = mem.pageMapcount(pfn);
  state.vmFlags = 0;
  if (state.mapcount === 0) return referenced;
  if (!mem.isKsm(pfn) && !mem.isAnon(pfn)) return referenced;
  const w = scratchReferencedWalk;
  w.k = k;
  w.state = state;
  w.referenced = 0;
  rmapWalk(k, pfn, w);
  w.k = null;
  return referenced + w.referenced;
}

/**
 * try_to_unmap_one(): replace the pte mapping the page at addr by a swap entry
 * (reclaim: the page is in the swap cache and `private` holds its entry) or by a
 * migration entry (TTU_MIGRATION), dropping the mapping's reference.
 */
export function tryToUnmapOne(k: HostKernel, pfn: number, vma: Vma, addr: number, flags: number): number {
  const mem = k.mem;
  const mm = vma.mm;
  const pte = mm.getPte(addr);
  if (!ptePresent(pte) || ptePayload(pte) !== pfn) return SWAP_AGAIN;
  const migration = (flags & 0xff) === TTU_MIGRATION;
  if (!migration && (flags & TTU_IGNORE_MLOCK) === 0) {
    if ((vma.flags & VM_LOCKED) !== 0) return SWAP_MLOCK;
    // Reclaim does not take a page away from a process that just used it.
    if ((flags & TTU_IGNORE_ACCESS) === 0 && (pte & PTE_YOUNG) !== 0) {
      mm.setPte(addr, pteClear(pte, PTE_YOUNG));
      return SWAP_FAIL;
    }
  }
  if ((pte & PTE_DIRTY) !== 0) mem.flags[pfn]! |= PG_DIRTY;
  if (migration) {
    mm.setPte(addr, mkMigrationPte(pfn, (pte & PTE_WRITE) !== 0));
  } else {
    const swp = k.swap;
    if (swp === null) bug(`try_to_unmap for reclaim with no swap device: ${mem.describe(pfn)}`);
    const entry = mem.private[pfn]!;
    swp.duplicate(entry);
    mm.setPte(addr, swp.pteFor(entry));
  }
  pageRemoveRmap(k, pfn);
  mem.putPage(pfn);
  return SWAP_AGAIN;
}

/** try_to_unmap()'s walk: try_to_unmap_one() at each mapping, done once the page is mapped nowhere. */
class UnmapWalk implements RmapWalkControl {
  k: HostKernel | null = null;
  flags = 0;

  rmapOne(pfn: number, vma: Vma, addr: number): number {
    return tryToUnmapOne(this.k!, pfn, vma, addr, this.flags);
  }

  done(pfn: number): boolean {
    return this.k!.mem.pageMapcount(pfn) === 0;
  }
}
const scratchUnmapWalk = new UnmapWalk();

/**
 * try_to_unmap(): unmap the page from every pte (try_to_unmap_anon, or KSM's walk:
 * try_to_unmap_ksm). SWAP_SUCCESS (0) once nothing maps it; else SWAP_MLOCK, or
 * SWAP_FAIL for a page still mapped somewhere.
 */
export function tryToUnmap(k: HostKernel, pfn: number, flags: number): number {
  const mem = k.mem;
  if (!mem.isKsm(pfn) && !mem.isAnon(pfn)) return SWAP_FAIL;
  const w = scratchUnmapWalk;
  w.k = k;
  w.flags = flags;
  const ret = rmapWalk(k, pfn, w);
  w.k = null;
  if (ret !== SWAP_MLOCK && mem.pageMapcount(pfn) === 0) return 0; // SWAP_SUCCESS
  return ret === SWAP_AGAIN ? SWAP_FAIL : ret;
}
