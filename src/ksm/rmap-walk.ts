import { assert } from '../lib/errors.js';
import { PG_DIRTY, PG_SWAPBACKED, PG_UPTODATE } from '../mm/constants.js';
import { allocPage } from '../mm/memory.js';
import { LRU_ACTIVE_ANON } from '../mm/physmem.js';
import { SWAP_AGAIN, type RmapWalkControl } from '../mm/rmap.js';
import type { Vma } from '../mm/vma.js';
import type { Ksm } from './ksm.js';
import { pageStableNode } from './pages.js';

/*
 * How the mm reaches a KSM page's ptes (mm/ksm.c): the stable node lists an
 * rmap_item per mapping ksmd has seen, each with the anon_vma its page was mapped
 * through; the walk visits every area of that anon_vma covering the item's address.
 * A KSM page is never anonymous-walked: its `mapping` is its stable node.
 */

/**
 * rmap_walk_ksm(), with Linux 3.x's rmap_walk_control: one walk for
 * page_referenced(), try_to_unmap(), munlock and migration (2.6.33 writes the same
 * two-pass loop out three times, as page_referenced_ksm(), try_to_unmap_ksm() and
 * rmap_walk_ksm(); what differed between them is what rwc.rmapOne() does at each
 * mapping and when rwc.done() ends the walk).
 *
 * Two passes over the node's rmap_items: first only the area that covers each
 * rmap_item in its own mm; then, if the walk is not done, covering areas in other
 * mms: forked from the original since ksmd last passed, so no rmap_item of theirs
 * is listed yet. Returns SWAP_AGAIN when every visit said to go on, else what the
 * visit that stopped the walk returned.
 *
 * (page_referenced_ksm() in 2.6.33 also breaks out of an rmap_item's areas after
 * its first visit in the first pass. In that pass only one area can match, the one
 * of the item's own mm that covers its address, so the break changes nothing.)
 */
export function rmapWalkKsm(ksm: Ksm, pfn: number, rwc: RmapWalkControl): number {
  const node = pageStableNode(ksm, pfn);
  if (node === null) return SWAP_AGAIN;
  for (let searchNewForks = 0; searchNewForks < 2; searchNewForks++) {
    for (let item = node.hlist; item !== null; item = item.hlistNext) {
      const av = item.anonVma!;
      for (const vma of av.vmas) {
        if (item.address < vma.start || item.address >= vma.end) continue;
        if ((item.mm === vma.mm) === (searchNewForks === 1)) continue;
        const ret = rwc.rmapOne(pfn, vma, item.address);
        if (ret !== SWAP_AGAIN) return ret;
        if (rwc.done(pfn)) return SWAP_AGAIN;
      }
    }
  }
  return SWAP_AGAIN;
}

/** ksm_migrate_page(): the KSM page moved: the stable node follows it. */
export function ksmMigratePage(ksm: Ksm, newPfn: number, oldPfn: number): void {
  const mem = ksm.kernel.mem;
  assert(mem.mappingOf(newPfn) === mem.mappingOf(oldPfn), () => `ksm_migrate_page: mappings differ for ${oldPfn} → ${newPfn}`);
  const node = pageStableNode(ksm, newPfn);
  if (node !== null) {
    assert(node.kpfn === oldPfn, () => `ksm_migrate_page: stable node kpfn ${node.kpfn}, expected ${oldPfn}`);
    node.kpfn = newPfn;
  }
}

/**
 * include/linux/ksm.h ksm_might_need_to_copy() (2.6.33): a page read back from swap
 * may be mapped here as it is when it has no anon_vma yet (this fault will give it
 * ours), is a KSM page still in the swap cache, or already belongs to this very
 * anon_vma and index. Otherwise it was a KSM page shared with other mappers: they
 * keep it, and this mapper gets its own copy (ksm_does_need_to_copy()), which ksmd
 * merges again later. Takes the caller's reference on `pfn`; returns the page to map
 * (holding one reference for the caller), or -1 when out of memory.
 */
export function ksmMightNeedToCopy(ksm: Ksm, pfn: number, vma: Vma, addr: number): number {
  const k = ksm.kernel;
  const mem = k.mem;
  if (!mem.isAnon(pfn) || mem.isKsm(pfn)) return pfn;
  if (mem.mappingOf(pfn) === vma.anonVma && mem.index[pfn] === vma.linearIndex(addr)) return pfn;
  // mm/ksm.c ksm_does_need_to_copy()
  const copy = allocPage(k, false, vma.mm.node);
  if (copy >= 0) {
    mem.copyPage(copy, pfn);
    mem.flags[copy]! |= PG_DIRTY | PG_UPTODATE | PG_SWAPBACKED;
    mem.lruAdd(copy, LRU_ACTIVE_ANON);
    k.vmstat.ksm_swpin_copy++;
  }
  mem.putPage(pfn);
  return copy;
}
