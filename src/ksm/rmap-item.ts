import { bug } from '../lib/errors.js';
import { rbErase, rbInitNode } from '../lib/rbtree-indexed.js';
import { MMF_VM_MERGEABLE, MMF_VM_MERGE_ANY } from '../mm/constants.js';
import type { MmStruct } from '../mm/mm.js';
import type { Ksm } from './ksm.js';
import { dropAnonVma, getKsmPage } from './stable-tree.js';
import { MmSlot, NULL, STABLE_FLAG, UNSTABLE_FLAG, type RmapItem } from './structs.js';

/*
 * The life of rmap_items and mm_slots (mm/ksm.c): an rmap_item is made when the scan
 * first meets a page at its address (get_next_rmap_item), taken out of whichever tree
 * holds it when its page is scanned again or goes (remove_rmap_item_from_tree), and
 * freed when the scan finds its address no longer mapped (get_next_rmap_item,
 * remove_trailing_rmap_items). An mm_slot goes when its mm has left and its list is
 * empty.
 *
 * A "link" (the kernel's `struct rmap_item **`) is an rmap_item whose rmapList is
 * meant, or NULL for the mm_slot's own rmapList.
 */

/** alloc_rmap_item() */
export function allocRmapItem(ksm: Ksm, slot: MmSlot, address: number): RmapItem {
  ksm.rmapItems++;
  ksm.work.rmapItemsAllocated++;
  return ksm.rmapItemCache.alloc(slot.mmId, address);
}

/** free_rmap_item() */
export function freeRmapItem(ksm: Ksm, item: RmapItem): void {
  ksm.rmapItems--;
  ksm.work.rmapItemsFreed++;
  ksm.rmapItemCache.free(item);
}

/** remove_rmap_item_from_tree(): take the rmap_item out of whichever tree holds it. */
export function removeRmapItemFromTree(ksm: Ksm, item: RmapItem): void {
  const ri = ksm.rmapItemCache;
  const flags = ri.flags[item]!;
  if ((flags & STABLE_FLAG) !== 0) {
    const sn = ksm.stableNodeCache;
    const node = ri.head[item]!;
    const pfn = getKsmPage(ksm, node);
    // A stale node was removed with all its rmap_items, this one included.
    if (pfn < 0) return;
    // hlist_del()
    const next = ri.hlistNext[item]!;
    const prev = ri.hlistPrev[item]!;
    if (prev !== NULL) ri.hlistNext[prev] = next;
    else sn.hlist[node] = next;
    if (next !== NULL) ri.hlistPrev[next] = prev;
    ri.hlistNext[item] = NULL;
    ri.hlistPrev[item] = NULL;
    ri.head[item] = NULL;
    ksm.kernel.mem.putPage(pfn);
    if (sn.hlist[node] !== NULL) ksm.pagesSharing--;
    else ksm.pagesShared--;
    sn.rmapHlistLen[node] = sn.rmapHlistLen[node]! - 1;
    if (sn.rmapHlistLen[node]! < 0) bug(`stable node kpfn=${sn.kpfn[node]} rmap_hlist_len underflow at ${ksm.describeItem(item)}`);
    dropAnonVma(ksm, item);
    ri.flags[item] = 0;
  } else if ((flags & UNSTABLE_FLAG) !== 0) {
    // Usually the rb_erase is not needed: the unstable tree was reset at the start
    // of this full scan. But an rmap_item inserted by this very scan is still in
    // it (an mm exiting, or unmerging, can get here), and must be erased.
    const age = (ksm.seqnr - flags) & 0xff;
    if (age > 1) bug(`unstable rmap_item ${ksm.describeItem(item)} is ${age} scans old`);
    // nid shares its field with anon_vma. 3.9+ keep them apart ("unstable nid is in
    // union with stable anon_vma: remove first", try_to_merge_with_ksm_page()), and
    // nid goes back to 0 here so that anon_vma reads NULL. 2.6.33 has no nid (one
    // tree) and holds the tree page's anon_vma before this removal: the field is
    // the anon_vma's then, and stays.
    let nid = 0;
    if (ksm.profile.features.checksumBeforeStableTreeSearch) {
      nid = ri.nid[item]!;
      ri.nid[item] = 0;
    }
    if (age === 0) rbErase(ri, item, ksm.unstableRoots[nid]!);
    else rbInitNode(ri, item);
    ksm.pagesUnshared--;
    ri.flags[item] = 0;
  }
}

/** The rmap_item after `link` (NULL: the slot's first). */
function linkNext(ksm: Ksm, slot: MmSlot, link: RmapItem): RmapItem {
  return link === NULL ? slot.rmapList : ksm.rmapItemCache.rmapList[link]!;
}

function setLinkNext(ksm: Ksm, slot: MmSlot, link: RmapItem, to: RmapItem): void {
  if (link === NULL) slot.rmapList = to;
  else ksm.rmapItemCache.rmapList[link] = to;
}

/** remove_trailing_rmap_items(): free every rmap_item after `link` (NULL: all of slot's). */
export function removeTrailingRmapItems(ksm: Ksm, slot: MmSlot, link: RmapItem): void {
  let item: RmapItem;
  while ((item = linkNext(ksm, slot, link)) !== NULL) {
    setLinkNext(ksm, slot, link, ksm.rmapItemCache.rmapList[item]!);
    removeRmapItemFromTree(ksm, item);
    freeRmapItem(ksm, item);
  }
}

/**
 * get_next_rmap_item(): the rmap_item for addr, found after `link` (NULL: from the
 * slot's first), or a new one inserted there. Items on the way for addresses below
 * addr are for pages that have gone: they are freed as the cursor passes.
 */
export function getNextRmapItem(ksm: Ksm, slot: MmSlot, link: RmapItem, addr: number): RmapItem {
  const ri = ksm.rmapItemCache;
  let item: RmapItem;
  while ((item = linkNext(ksm, slot, link)) !== NULL) {
    const a = ri.addressOf(item);
    if (a === addr) return item;
    if (a > addr) break;
    setLinkNext(ksm, slot, link, ri.rmapList[item]!);
    removeRmapItemFromTree(ksm, item);
    freeRmapItem(ksm, item);
  }
  const fresh = allocRmapItem(ksm, slot, addr);
  ri.rmapList[fresh] = linkNext(ksm, slot, link);
  setLinkNext(ksm, slot, link, fresh);
  return fresh;
}

/** A new mm_slot for mm (alloc_mm_slot()), its mm numbered in ksm.mmTable. */
export function allocMmSlot(ksm: Ksm, mm: MmStruct): MmSlot {
  return new MmSlot(mm, ksm.mmTable.add(mm));
}

/** Unlink an mm_slot from the hash and the list, and let go of its mm. */
export function freeSlot(ksm: Ksm, slot: MmSlot): void {
  const mm = slot.mm!;
  ksm.mmSlots.delete(mm);
  slot.prev.next = slot.next;
  slot.next.prev = slot.prev;
  slot.prev = slot;
  slot.next = slot;
  ksm.mmTable.remove(slot.mmId);
  // 6.x clears MMF_VM_MERGE_ANY with it: an mm that leaves KSM stops merging anything.
  mm.flags &= ~(MMF_VM_MERGEABLE | MMF_VM_MERGE_ANY);
  mm.mmCount--; // mmdrop()
}
