import { assert, bug } from '../lib/errors.js';
import {
  PG_DIRTY,
  PG_LOCKED,
  PG_LRU,
  PG_MLOCKED,
  PG_SWAPBACKED,
  PG_SWAPCACHE,
  PG_UPTODATE,
  PTE_DIRTY,
  PTE_WRITE,
  PTE_YOUNG,
  VM_LOCKED,
  VM_WRITE,
  mkPte,
  ptePayload,
} from './constants.js';
import type { HostKernel } from './kernel.js';
import { isThpFrame, splitHugePmd } from './huge-memory.js';
import type { ReferencedState } from './ksm-ops.js';
import { VM_FAULT_MAJOR, VM_FAULT_MINOR, VM_FAULT_OOM, allocPage, anonVmaPrepare, deleteFromSwapCache, doWpPage, mlockVmaPage, reuseSwapPage } from './memory.js';
import { LRU_ACTIVE_ANON, LRU_INACTIVE_ANON, LRU_UNEVICTABLE } from './physmem.js';
import { SWAP_MLOCK, TTU_IGNORE_ACCESS, TTU_UNMAP, pageAddAnonRmap, pageReferenced, tryToUnmap } from './rmap.js';
import type { Vma } from './vma.js';

/**
 * Swap: reclaim writes anonymous pages to the swap device and frees them; a fault
 * on a swap pte reads them back (mm/vmscan.c shrink_page_list, mm/memory.c
 * do_swap_page, mm/swapfile.c; 2.6.33).
 *
 * A KSM page is reclaimed like any anonymous page, but page_referenced() and
 * try_to_unmap() reach its ptes through KSM's rmap walk, so the one page is written
 * to one swap slot for all its mappers. When it comes back, the first mapper to
 * fault gets the page; every other mapper whose anon_vma or index differs gets a
 * copy (ksm_might_need_to_copy), and ksmd merges them again later.
 */

export const SWAP_CLUSTER_MAX = 32;

const scratchRef: ReferencedState = { mapcount: 0, vmFlags: 0 };

/** add_to_swap(): give the page a slot and put it in the swap cache. False when swap is full. */
function addToSwap(k: HostKernel, pfn: number): boolean {
  const mem = k.mem;
  const off = k.swap!.allocSlot(pfn);
  if (off === 0) return false;
  mem.flags[pfn]! |= PG_SWAPCACHE | PG_DIRTY | PG_SWAPBACKED;
  mem.private[pfn] = off;
  mem.getPage(pfn); // the swap cache's reference
  return true;
}

type PageVerdict = 'freed' | 'activate' | 'keep' | 'cull';

/** shrink_page_list() for one page at the tail of the inactive list. */
function shrinkPage(k: HostKernel, pfn: number): PageVerdict {
  const mem = k.mem;
  if ((mem.flags[pfn]! & PG_LOCKED) !== 0) return 'keep';
  if ((mem.flags[pfn]! & PG_MLOCKED) !== 0) return 'cull';
  // A pinned page (get_user_pages) cannot be freed: leave it where it is.
  if (k.isPinned(pfn)) return 'activate';
  const referenced = pageReferenced(k, pfn, scratchRef);
  if ((scratchRef.vmFlags & VM_LOCKED) !== 0) return 'cull';
  if (referenced > 0 && mem.pageMapcount(pfn) > 0) return 'activate';
  if (!mem.isAnon(pfn)) return 'keep';
  // A THP is swapped out as small pages (see src/mm/huge-memory.ts).
  if (isThpFrame(mem.flags, pfn)) splitHugePmd(k, pfn);
  if ((mem.flags[pfn]! & PG_SWAPCACHE) === 0 && !addToSwap(k, pfn)) return 'activate';
  mem.lockPage(pfn);
  if (mem.pageMapcount(pfn) > 0) {
    const ret = tryToUnmap(k, pfn, TTU_UNMAP);
    if (ret !== 0) {
      mem.unlockPage(pfn);
      return ret === SWAP_MLOCK ? 'cull' : 'activate';
    }
  }
  // pageout(): write the contents to the slot if they differ from it.
  const off = mem.private[pfn]!;
  if ((mem.flags[pfn]! & PG_DIRTY) !== 0) {
    k.swap!.writeSlot(off, mem.content[pfn]!);
    mem.flags[pfn]! &= ~PG_DIRTY;
    k.vmstat.pswpout++;
  }
  mem.unlockPage(pfn);
  // __remove_mapping(): page_freeze_refs(page, 2): only the swap cache and our
  // isolation reference (shrinkPages' getPage) may still hold the page. It is off
  // the LRU already (isolated by shrinkPages), so there is nothing to unlink.
  if (mem.count[pfn] !== 2) return 'keep';
  deleteFromSwapCache(k, pfn);
  return 'freed';
}

/**
 * try_to_free_pages() / memory.reclaim: reclaim up to `nr` anonymous pages,
 * returning how many were freed. Active pages are aged onto the inactive list
 * (their young bits cleared), then the inactive list is scanned from its tail;
 * a page referenced since it was last looked at goes back to the active list.
 */
export function shrinkPages(k: HostKernel, nr: number): number {
  if (k.swap === null) return 0;
  const mem = k.mem;
  let freed = 0;
  for (let priority = 0; priority < 3 && freed < nr; priority++) {
    // shrink_active_list(): anonymous pages are deactivated whether referenced or not.
    while (mem.lruSize[LRU_ACTIVE_ANON]! > mem.lruSize[LRU_INACTIVE_ANON]!) {
      const pfn = mem.lruTail[LRU_ACTIVE_ANON]!;
      pageReferenced(k, pfn, scratchRef);
      mem.lruMove(pfn, LRU_INACTIVE_ANON);
    }
    let scan = mem.lruSize[LRU_INACTIVE_ANON]!;
    while (scan-- > 0 && freed < nr) {
      const pfn = mem.lruTail[LRU_INACTIVE_ANON]!;
      if (pfn < 0) break;
      // Take it off the list while we work on it (isolate_lru_page), so the
      // verdict can put it back at the right place.
      mem.lruDel(pfn);
      mem.getPage(pfn);
      const verdict = shrinkPage(k, pfn);
      if (verdict === 'freed') {
        freed++;
        mem.putPage(pfn);
        continue;
      }
      mem.lruAdd(pfn, verdict === 'activate' ? LRU_ACTIVE_ANON : verdict === 'cull' ? LRU_UNEVICTABLE : LRU_INACTIVE_ANON);
      mem.putPage(pfn);
    }
  }
  return freed;
}

/**
 * free_swap_and_cache(): a swap pte is being zapped. When that was the last
 * reference to the slot, the swap-cache page (if any, and unmapped) goes too.
 */
export function freeSwapAndCache(k: HostKernel, off: number): void {
  const swp = k.swap!;
  swp.free(off);
  const pfn = swp.cache[off]!;
  if (pfn >= 0 && swp.refs[off] === 0 && k.mem.pageMapcount(pfn) === 0 && (k.mem.flags[pfn]! & PG_LOCKED) === 0) {
    if ((k.mem.flags[pfn]! & PG_LRU) !== 0) k.mem.lruDel(pfn);
    deleteFromSwapCache(k, pfn);
  }
}

/** try_to_free_swap(): drop the page's slot when no swap pte refers to it any more. */
export function tryToFreeSwap(k: HostKernel, pfn: number): void {
  const mem = k.mem;
  if ((mem.flags[pfn]! & PG_SWAPCACHE) === 0) return;
  if (k.swap!.refs[mem.private[pfn]!]! !== 0) return;
  deleteFromSwapCache(k, pfn);
  mem.flags[pfn]! |= PG_DIRTY;
}

/** do_swap_page(): a fault on a swap pte. */
export function doSwapPage(k: HostKernel, vma: Vma, addr: number, pte: number, write: boolean): number {
  const mem = k.mem;
  const swp = k.swap;
  if (swp === null) bug(`swap pte at ${addr} in ${vma} with no swap device`);
  const off = ptePayload(pte);
  let ret = VM_FAULT_MINOR;
  let pfn = swp.cache[off]!;
  if (pfn >= 0) {
    mem.getPage(pfn);
  } else {
    // read_swap_cache_async(): a new page, into the swap cache, read from the slot.
    pfn = allocPage(k, false, vma.mm.node);
    if (pfn < 0) return VM_FAULT_OOM;
    if (vma.mm.getPte(addr) !== pte) {
      // Reclaim during the allocation changed things; let the caller retry.
      mem.putPage(pfn);
      return VM_FAULT_MINOR;
    }
    mem.setContent(pfn, swp.readSlot(off));
    mem.flags[pfn]! |= PG_SWAPCACHE | PG_UPTODATE | PG_SWAPBACKED;
    mem.private[pfn] = off;
    swp.setCache(off, pfn);
    mem.getPage(pfn); // the swap cache's reference; the allocation's is ours
    mem.lruAdd(pfn, LRU_ACTIVE_ANON);
    k.vmstat.pswpin++;
    k.vmstat.pgmajfault++;
    ret = VM_FAULT_MAJOR;
  }
  anonVmaPrepare(vma);
  // A KSM page comes back to its first mapper; the others may need a copy
  // (ksm_might_need_to_copy(): KSM decides; without KSM there is nothing to copy).
  const page = k.ksm === null ? pfn : k.ksm.mightNeedToCopy(pfn, vma, addr);
  if (page < 0) return VM_FAULT_OOM;
  assert(vma.mm.getPte(addr) === pte, () => `swap pte at ${addr} changed under do_swap_page`);
  const writable = (vma.flags & VM_WRITE) !== 0;
  let bits = PTE_YOUNG;
  let wantWrite = write;
  if (write && page === pfn && reuseSwapPage(k, page)) {
    bits |= writable ? PTE_WRITE | PTE_DIRTY : 0;
    wantWrite = false;
  } else if (write && page !== pfn) {
    // The private copy is ours alone: write to it straight away.
    bits |= writable ? PTE_WRITE | PTE_DIRTY : 0;
    wantWrite = false;
  }
  vma.mm.setPte(addr, mkPte(page, bits));
  // The reference we hold becomes the pte's.
  pageAddAnonRmap(k, page, vma, addr);
  swp.free(off);
  if (swp.refs[off] === 0 && swp.cache[off] === pfn && page !== pfn && mem.pageMapcount(pfn) === 0) {
    // We copied, and nobody else waits for this slot: the original can go.
    if ((mem.flags[pfn]! & PG_LRU) !== 0) mem.lruDel(pfn);
    deleteFromSwapCache(k, pfn);
  }
  if ((vma.flags & VM_LOCKED) !== 0) {
    mlockVmaPage(k, page);
    tryToFreeSwap(k, page);
  } else if (swp.nrFree * 2 < swp.nrSlots) {
    tryToFreeSwap(k, page); // vm_swap_full()
  }
  if (wantWrite) return ret | doWpPage(k, vma, addr, vma.mm.getPte(addr));
  return ret;
}

/**
 * Write one page to swap and free it, whatever its referenced bits say (memory
 * offlining with no room elsewhere: the page must leave). Returns false when it
 * cannot: not anonymous, locked, mlocked, pinned, or swap full.
 */
export function swapOutPage(k: HostKernel, pfn: number): boolean {
  const mem = k.mem;
  if (k.swap === null || !mem.isAnon(pfn)) return false;
  if ((mem.flags[pfn]! & (PG_LOCKED | PG_MLOCKED)) !== 0 || k.isPinned(pfn)) return false;
  if (isThpFrame(mem.flags, pfn)) splitHugePmd(k, pfn);
  const list = mem.lruListOf(pfn);
  const onLru = (mem.flags[pfn]! & PG_LRU) !== 0;
  if (onLru) mem.lruDel(pfn);
  mem.getPage(pfn);
  const hadSlot = (mem.flags[pfn]! & PG_SWAPCACHE) !== 0;
  if (!hadSlot && !addToSwap(k, pfn)) {
    if (onLru) mem.lruAdd(pfn, list);
    mem.putPage(pfn);
    return false;
  }
  mem.lockPage(pfn);
  if (mem.pageMapcount(pfn) > 0 && tryToUnmap(k, pfn, TTU_UNMAP | TTU_IGNORE_ACCESS) !== 0) {
    mem.unlockPage(pfn);
    if (onLru) mem.lruAdd(pfn, list);
    mem.putPage(pfn);
    return false;
  }
  const off = mem.private[pfn]!;
  if ((mem.flags[pfn]! & PG_DIRTY) !== 0) {
    k.swap.writeSlot(off, mem.content[pfn]!);
    mem.flags[pfn]! &= ~PG_DIRTY;
    k.vmstat.pswpout++;
  }
  mem.unlockPage(pfn);
  deleteFromSwapCache(k, pfn);
  mem.putPage(pfn);
  return true;
}
