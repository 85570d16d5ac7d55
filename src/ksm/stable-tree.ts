import { bug } from '../lib/errors.js';
import { rbErase, rbFirst, rbInsertColor, rbLinkNode, rbNext, type RbNode } from '../lib/rbtree.js';
import type { AnonVma } from '../mm/vma.js';
import type { Ksm } from './ksm.js';
import { memcmpPages, pageStableNode, setPageStableNode } from './pages.js';
import { STABLE_FLAG, StableNode, type RmapItem } from './structs.js';

/*
 * The stable tree (mm/ksm.c): the KSM pages, write-protected and so never changing,
 * sorted by contents. A node holds no reference on its page and is looked at only
 * through the keyhole, get_ksm_page(): see there. Each node lists the rmap_items
 * mapping its page; every such rmap_item holds a reference on the anon_vma its page
 * was mapped through, so that the rmap walk can reach the ptes after the area is
 * gone from the scan's view.
 */

/** hold_anon_vma(): an rmap_item entering the stable tree pins its anon_vma. */
export function holdAnonVma(item: RmapItem, anonVma: AnonVma): void {
  item.anonVma = anonVma;
  anonVma.ksmRefcount++;
}

/** drop_anon_vma(): the anon_vma is freed once neither vmas nor KSM use it. */
export function dropAnonVma(ksm: Ksm, item: RmapItem): void {
  const av = item.anonVma;
  if (av === null) bug(`drop_anon_vma on rmap_item ${ksm.describeItem(item)} holding none`);
  item.anonVma = null;
  av.ksmRefcount--;
  if (av.ksmRefcount < 0) bug(`anon_vma ${av.id} ksm refcount underflow`);
  av.freeIfUnused();
}

/** remove_node_from_stable_tree() */
export function removeNodeFromStableTree(ksm: Ksm, node: StableNode): void {
  for (let item = node.hlist; item !== null; ) {
    const next = item.hlistNext;
    if (next !== null) ksm.pagesSharing--;
    else ksm.pagesShared--;
    dropAnonVma(ksm, item);
    item.flags = 0;
    item.head = null;
    item.hlistNext = null;
    item.hlistPrev = null;
    item = next;
  }
  node.hlist = null;
  rbErase(node, ksm.rootStableTree);
}

/**
 * get_ksm_page(): is the stable node's frame still its KSM page? The node holds no
 * reference on the page — if it did, swapping the page out would have to wait for
 * ksmd to come round and drop it, seconds or minutes later. Instead it peeks
 * through a keyhole: the page is ours only while its `mapping` still points back
 * to this node, which freeing a page resets. If so, take a reference and return
 * the frame; if not, the node is stale: remove it from the tree and return -1.
 */
export function getKsmPage(ksm: Ksm, node: StableNode): number {
  const mem = ksm.kernel.mem;
  const pfn = node.kpfn;
  if (!mem.isKsm(pfn) || mem.mappingOf(pfn) !== node || !mem.getPageUnlessZero(pfn)) {
    removeNodeFromStableTree(ksm, node);
    return -1;
  }
  return pfn;
}

/**
 * stable_tree_search(): the KSM page with the same contents as `pfn`, with a
 * reference held, or -1. A page that is already KSM (forked) is its own answer.
 */
export function stableTreeSearch(ksm: Ksm, pfn: number): number {
  const mem = ksm.kernel.mem;
  if (pageStableNode(ksm, pfn) !== null) {
    mem.getPage(pfn);
    return pfn;
  }
  again: for (;;) {
    let node = ksm.rootStableTree.node as StableNode | null;
    while (node !== null) {
      const treePfn = getKsmPage(ksm, node);
      if (treePfn < 0) {
        // A stale node was just removed and the tree rebalanced under us. 2.6.33
        // gives up this search (the merge is found at a later scan); later kernels
        // start again from the root rather than miss it.
        if (ksm.profile.features.restartStableTreeSearch) continue again;
        return -1;
      }
      ksm.work.stableTreeCompares++;
      const ret = memcmpPages(ksm, pfn, treePfn);
      if (ret < 0) {
        mem.putPage(treePfn);
        node = node.rbLeft as StableNode | null;
      } else if (ret > 0) {
        mem.putPage(treePfn);
        node = node.rbRight as StableNode | null;
      } else {
        return treePfn;
      }
    }
    return -1;
  }
}

/** stable_tree_insert(): a new stable node for KSM page kpfn, or null. */
export function stableTreeInsert(ksm: Ksm, kpfn: number): StableNode | null {
  const mem = ksm.kernel.mem;
  again: for (;;) {
    let parent: RbNode | null = null;
    let left = false;
    let cur = ksm.rootStableTree.node as StableNode | null;
    while (cur !== null) {
      const treePfn = getKsmPage(ksm, cur);
      if (treePfn < 0) {
        // As in stable_tree_search(): 2.6.33 gives up (the caller breaks COW on both
        // pages); later kernels restart rather than make a false negative.
        if (ksm.profile.features.restartStableTreeSearch) continue again;
        return null;
      }
      ksm.work.stableTreeCompares++;
      const ret = memcmpPages(ksm, kpfn, treePfn);
      mem.putPage(treePfn);
      parent = cur;
      if (ret < 0) {
        left = true;
        cur = cur.rbLeft as StableNode | null;
      } else if (ret > 0) {
        left = false;
        cur = cur.rbRight as StableNode | null;
      } else {
        // Not a bug that stable_tree_search() missed it: our page was not yet
        // write-protected then, and may have changed since.
        return null;
      }
    }
    const node = new StableNode(kpfn);
    rbLinkNode(node, parent, left, ksm.rootStableTree);
    rbInsertColor(node, ksm.rootStableTree);
    setPageStableNode(ksm, kpfn, node);
    return node;
  }
}

/** stable_tree_append(): one more rmap_item maps this stable node's KSM page. */
export function stableTreeAppend(ksm: Ksm, item: RmapItem, node: StableNode): void {
  item.head = node;
  item.flags |= STABLE_FLAG;
  // hlist_add_head()
  item.hlistPrev = null;
  item.hlistNext = node.hlist;
  if (node.hlist !== null) node.hlist.hlistPrev = item;
  node.hlist = item;
  if (item.hlistNext !== null) ksm.pagesSharing++;
  else ksm.pagesShared++;
}

/**
 * ksm_memory_callback(MEM_OFFLINE): remove every stable node whose kpfn lies in
 * [startPfn, endPfn), one at a time in tree order, as the kernel's loop over
 * ksm_check_stable_tree() does. Returns how many were removed.
 */
export function pruneStableNodes(ksm: Ksm, startPfn: number, endPfn: number): number {
  let pruned = 0;
  let node: StableNode | null;
  while ((node = checkStableTree(ksm, startPfn, endPfn)) !== null) {
    removeNodeFromStableTree(ksm, node);
    pruned++;
  }
  return pruned;
}

/** ksm_check_stable_tree(): the first stable node, in tree order, with kpfn in [startPfn, endPfn). */
function checkStableTree(ksm: Ksm, startPfn: number, endPfn: number): StableNode | null {
  for (let n = rbFirst(ksm.rootStableTree); n !== null; n = rbNext(n)) {
    const node = n as StableNode;
    if (node.kpfn >= startPfn && node.kpfn < endPfn) return node;
  }
  return null;
}
