import { bug } from '../lib/errors.js';
import { rbErase, rbInitNode } from '../lib/rbtree.js';
import { MMF_VM_MERGEABLE, MMF_VM_MERGE_ANY } from '../mm/constants.js';
import type { MmStruct } from '../mm/mm.js';
import type { Ksm } from './ksm.js';
import { dropAnonVma, getKsmPage } from './stable-tree.js';
import { STABLE_FLAG, UNSTABLE_FLAG, newRmapItem, type MmSlot, type RmapItem, type RmapLink } from './structs.js';

/*
 * The life of rmap_items and mm_slots (mm/ksm.c): an rmap_item is made when the scan
 * first meets a page at its address (get_next_rmap_item), taken out of whichever tree
 * holds it when its page is scanned again or goes (remove_rmap_item_from_tree), and
 * freed when the scan finds its address no longer mapped (get_next_rmap_item,
 * remove_trailing_rmap_items). An mm_slot goes when its mm has left and its list is
 * empty.
 */

/** alloc_rmap_item() */
export function allocRmapItem(ksm: Ksm, mm: MmStruct, address: number): RmapItem {
  ksm.rmapItems++;
  ksm.work.rmapItemsAllocated++;
  return newRmapItem(mm, address);
}

/** free_rmap_item() */
export function freeRmapItem(ksm: Ksm, item: RmapItem): void {
  ksm.rmapItems--;
  ksm.work.rmapItemsFreed++;
  item.rmapList = null;
}

/** remove_rmap_item_from_tree(): take the rmap_item out of whichever tree holds it. */
export function removeRmapItemFromTree(ksm: Ksm, item: RmapItem): void {
  if ((item.flags & STABLE_FLAG) !== 0) {
    const node = item.head!;
    const pfn = getKsmPage(ksm, node);
    // A stale node was removed with all its rmap_items, this one included.
    if (pfn < 0) return;
    // hlist_del()
    if (item.hlistPrev !== null) item.hlistPrev.hlistNext = item.hlistNext;
    else node.hlist = item.hlistNext;
    if (item.hlistNext !== null) item.hlistNext.hlistPrev = item.hlistPrev;
    item.hlistNext = null;
    item.hlistPrev = null;
    item.head = null;
    ksm.kernel.mem.putPage(pfn);
    if (node.hlist !== null) ksm.pagesSharing--;
    else ksm.pagesShared--;
    node.rmapHlistLen--;
    if (node.rmapHlistLen < 0) bug(`stable node kpfn=${node.kpfn} rmap_hlist_len underflow at ${ksm.describeItem(item)}`);
    dropAnonVma(ksm, item);
    item.flags = 0;
  } else if ((item.flags & UNSTABLE_FLAG) !== 0) {
    // Usually the rb_erase is not needed: the unstable tree was reset at the start
    // of this full scan. But an rmap_item inserted by this very scan is still in
    // it (an mm exiting, or unmerging, can get here), and must be erased.
    const age = (ksm.seqnr - item.flags) & 0xff;
    if (age > 1) bug(`unstable rmap_item ${ksm.describeItem(item)} is ${age} scans old`);
    if (age === 0) rbErase(item, ksm.unstableRoots[item.nid]!);
    else rbInitNode(item);
    ksm.pagesUnshared--;
    item.flags = 0;
  }
}

/** remove_trailing_rmap_items(): free every rmap_item from `link` on. */
export function removeTrailingRmapItems(ksm: Ksm, link: RmapLink): void {
  while (link.rmapList !== null) {
    const item = link.rmapList;
    link.rmapList = item.rmapList;
    removeRmapItemFromTree(ksm, item);
    freeRmapItem(ksm, item);
  }
}

/**
 * get_next_rmap_item(): the rmap_item for addr, found at or after `link`, or a new
 * one inserted there. Items on the way for addresses below addr are for pages
 * that have gone: they are freed as the cursor passes.
 */
export function getNextRmapItem(ksm: Ksm, slot: MmSlot, link: RmapLink, addr: number): RmapItem {
  while (link.rmapList !== null) {
    const item = link.rmapList;
    if (item.address === addr) return item;
    if (item.address > addr) break;
    link.rmapList = item.rmapList;
    removeRmapItemFromTree(ksm, item);
    freeRmapItem(ksm, item);
  }
  const item = allocRmapItem(ksm, slot.mm!, addr);
  item.rmapList = link.rmapList;
  link.rmapList = item;
  return item;
}

/** Unlink an mm_slot from the hash and the list, and let go of its mm. */
export function freeSlot(ksm: Ksm, slot: MmSlot): void {
  const mm = slot.mm!;
  ksm.mmSlots.delete(mm);
  slot.prev.next = slot.next;
  slot.next.prev = slot.prev;
  slot.prev = slot;
  slot.next = slot;
  // 6.x clears MMF_VM_MERGE_ANY with it: an mm that leaves KSM stops merging anything.
  mm.flags &= ~(MMF_VM_MERGEABLE | MMF_VM_MERGE_ANY);
  mm.mmCount--; // mmdrop()
}
