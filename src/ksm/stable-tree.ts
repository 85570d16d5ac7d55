import { bug } from '../lib/errors.js';
import { rbErase, rbFirst, rbInsertColor, rbLinkNode, rbNext, rbReplaceNode, type RbNode, type RbRoot } from '../lib/rbtree.js';
import { PG_LOCKED } from '../mm/constants.js';
import type { AnonVma } from '../mm/vma.js';
import type { Ksm } from './ksm.js';
import { comparePagesInDomains, pageStableNode, setPageStableNode } from './pages.js';
import {
  EBUSY,
  NODE_DUP,
  NODE_MIGRATE,
  NODE_TREE,
  NODE_UNLINKED,
  STABLE_FLAG,
  STABLE_NODE_CHAIN,
  StableNode,
  isStableNodeChain,
  isStableNodeDup,
  type RmapItem,
} from './structs.js';

/*
 * The stable tree (mm/ksm.c): the KSM pages, write-protected and so never changing,
 * sorted by contents. A node holds no reference on its page and is looked at only
 * through the keyhole, get_ksm_page(): see there. Each node lists the rmap_items
 * mapping its page; every such rmap_item holds a reference on the anon_vma its page
 * was mapped through, so that the rmap walk can reach the ptes after the area is
 * gone from the scan's view.
 *
 * 6.x caps the mappings of one KSM page at max_page_sharing, so that an rmap walk
 * (swap, migration) of a KSM page never has to visit a million ptes. A content that
 * needs more gets more KSM pages ("dups") under one "chain" node standing in the
 * tree for them all: the tree has two dimensions, contents in the rbtree and the
 * dups of one content on the chain's list. stable_tree_search() merges into the
 * fullest dup still below the cap; when every dup is full, the page waits for a
 * partner in the unstable tree, and the pair becomes a new dup. Searches prune dups
 * whose page has gone, and a chain left with one dup collapses back into a plain
 * node. Forked mappings of a KSM page join it past the cap: they share the page
 * already, and refusing them would only break COW.
 *
 * With merge_across_nodes 0 (6.x, NUMA) there is one stable tree per node, each
 * holding KSM pages of that node only; a KSM page that migrates to another node
 * waits on migrate_nodes until ksmd meets it and places it in its new node's tree.
 *
 * 2.6.33 has neither: one tree, one KSM page per content, no cap. Its search and
 * insertion are kept as they were (stableTreeSearch, stableTreeInsert); 6.x's,
 * which differ in nearly every line, are stableTreeSearchV6 and stableTreeInsertV6.
 * The helpers below them serve both: in 2.6.33 every node is a regular node linked
 * in tree 0.
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

/** 6.x get_kpfn_nid(): the index of the trees a KSM page at kpfn belongs in. */
export function getKpfnNid(ksm: Ksm, kpfn: number): number {
  return ksm.mergeAcrossNodes !== 0 ? 0 : ksm.kernel.mem.nodeOf(kpfn);
}

// ---- chains and dups (6.x) ---------------------------------------------------------

/** stable_node_chain_add_dup(): hlist_add_head(&dup->hlist_dup, &chain->hlist). */
function stableNodeChainAddDup(ksm: Ksm, dup: StableNode, chain: StableNode): void {
  if (isStableNodeDup(dup) || !isStableNodeChain(chain)) bug(`stable_node_chain_add_dup of kpfn=${dup.kpfn} to a non-chain, or of a dup`);
  dup.linked = NODE_DUP;
  dup.chain = chain;
  dup.dupPrev = null;
  dup.dupNext = chain.dupHead;
  if (chain.dupHead !== null) chain.dupHead.dupPrev = dup;
  chain.dupHead = dup;
  ksm.stableNodeDups++;
}

/** Take a dup off its chain's list (hlist_del of hlist_dup), leaving it unlinked. */
function unlinkDup(dup: StableNode): void {
  const chain = dup.chain!;
  if (dup.dupPrev !== null) dup.dupPrev.dupNext = dup.dupNext;
  else chain.dupHead = dup.dupNext;
  if (dup.dupNext !== null) dup.dupNext.dupPrev = dup.dupPrev;
  dup.dupNext = null;
  dup.dupPrev = null;
  dup.chain = null;
  dup.linked = NODE_UNLINKED;
}

/** __stable_node_dup_del() */
function stableNodeDupDelFromChain(ksm: Ksm, dup: StableNode): void {
  if (!isStableNodeDup(dup)) bug(`__stable_node_dup_del of kpfn=${dup.kpfn}, not a dup`);
  unlinkDup(dup);
  ksm.stableNodeDups--;
}

/** stable_node_dup_del(): off its chain, or out of its tree. */
export function stableNodeDupDel(ksm: Ksm, dup: StableNode): void {
  if (isStableNodeChain(dup)) bug('stable_node_dup_del of a chain');
  if (isStableNodeDup(dup)) {
    stableNodeDupDelFromChain(ksm, dup);
  } else {
    rbErase(dup, ksm.stableRoots[dup.nid]!);
    dup.linked = NODE_UNLINKED;
  }
}

/** list_add(&node->list, &migrate_nodes) */
export function migrateListAdd(ksm: Ksm, node: StableNode): void {
  node.linked = NODE_MIGRATE;
  node.migratePrev = null;
  node.migrateNext = ksm.migrateNodes;
  if (ksm.migrateNodes !== null) ksm.migrateNodes.migratePrev = node;
  ksm.migrateNodes = node;
}

/** list_del(&node->list) */
function migrateListDel(ksm: Ksm, node: StableNode): void {
  if (node.migratePrev !== null) node.migratePrev.migrateNext = node.migrateNext;
  else ksm.migrateNodes = node.migrateNext;
  if (node.migrateNext !== null) node.migrateNext.migratePrev = node.migratePrev;
  node.migrateNext = null;
  node.migratePrev = null;
  node.linked = NODE_UNLINKED;
}

/**
 * alloc_stable_node_chain(): put a chain in `dup`'s place in the tree and make dup
 * its first dup ("the invariant is that all dup stable_nodes in the chain->hlist
 * point to pages that are write protected and have the exact same content").
 */
function allocStableNodeChain(ksm: Ksm, dup: StableNode, root: RbRoot): StableNode {
  if (isStableNodeChain(dup)) bug('alloc_stable_node_chain of a chain');
  const chain = new StableNode(-1);
  chain.rmapHlistLen = STABLE_NODE_CHAIN;
  chain.chainPruneTime = ksm.kernel.now;
  chain.nid = dup.nid;
  chain.domain = dup.domain;
  ksm.stableNodeChains++;
  rbReplaceNode(dup, chain, root);
  chain.linked = NODE_TREE;
  dup.linked = NODE_UNLINKED;
  stableNodeChainAddDup(ksm, dup, chain);
  return chain;
}

/** free_stable_node_chain() */
function freeStableNodeChain(ksm: Ksm, chain: StableNode, root: RbRoot): void {
  rbErase(chain, root);
  chain.linked = NODE_UNLINKED;
  ksm.stableNodeChains--;
}

/**
 * remove_node_from_stable_tree(): the node's page is gone (or must go): every
 * rmap_item on it leaves the stable tree, and the node leaves its tree, its chain
 * or migrate_nodes.
 */
export function removeNodeFromStableTree(ksm: Ksm, node: StableNode): void {
  if (node.rmapHlistLen < 0) bug(`remove_node_from_stable_tree of a chain`);
  for (let item = node.hlist; item !== null; ) {
    const next = item.hlistNext;
    if (next !== null) ksm.pagesSharing--;
    else ksm.pagesShared--;
    node.rmapHlistLen--;
    dropAnonVma(ksm, item);
    item.flags = 0;
    item.head = null;
    item.hlistNext = null;
    item.hlistPrev = null;
    item = next;
  }
  node.hlist = null;
  if (node.rmapHlistLen !== 0) bug(`stable node kpfn=${node.kpfn} counted ${node.rmapHlistLen} rmap_items past its list`);
  node.rmapHlistLen = 0;
  if (node.linked === NODE_MIGRATE) migrateListDel(ksm, node);
  else stableNodeDupDel(ksm, node);
}

/**
 * get_ksm_page() (6.x ksm_get_folio()): is the stable node's frame still its KSM
 * page? The node holds no reference on the page — if it did, swapping the page out
 * would have to wait for ksmd to come round and drop it, seconds or minutes later.
 * Instead it peeks through a keyhole: the page is ours only while its `mapping` still
 * points back to this node, which freeing a page resets. If so, take a reference and
 * return the frame; if not, the node is stale: remove it from the tree and return -1.
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
 * ksm_get_folio(KSM_GET_FOLIO_TRYLOCK) then folio_unlock(): as getKsmPage(), but a
 * page locked by someone else gives EBUSY (with no reference kept) rather than a wait.
 */
function getKsmPageTrylock(ksm: Ksm, node: StableNode): number {
  const pfn = getKsmPage(ksm, node);
  if (pfn < 0) return -1;
  if ((ksm.kernel.mem.flags[pfn]! & PG_LOCKED) !== 0) {
    ksm.kernel.mem.putPage(pfn);
    return EBUSY;
  }
  return pfn;
}

/**
 * stable_tree_search() (2.6.33): the KSM page with the same contents as `pfn`, with
 * a reference held, or -1. A page that is already KSM (forked) is its own answer.
 * `domain`: the merge domain of the mm scanned (pages.ts comparePagesInDomains).
 */
export function stableTreeSearch(ksm: Ksm, pfn: number, domain: string): number {
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
      const ret = comparePagesInDomains(ksm, pfn, domain, treePfn, node.domain);
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

/** stable_tree_insert() (2.6.33): a new stable node for KSM page kpfn (of merge domain `domain`), or null. */
export function stableTreeInsert(ksm: Ksm, kpfn: number, domain: string): StableNode | null {
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
      const ret = comparePagesInDomains(ksm, kpfn, domain, treePfn, cur.domain);
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
    node.domain = domain;
    rbLinkNode(node, parent, left, ksm.rootStableTree);
    rbInsertColor(node, ksm.rootStableTree);
    node.linked = NODE_TREE;
    setPageStableNode(ksm, kpfn, node);
    return node;
  }
}

/**
 * stable_tree_append(): one more rmap_item maps this stable node's KSM page.
 * `maxPageSharingBypass` (6.x): a forked mapping joining past the cap, on purpose.
 */
export function stableTreeAppend(ksm: Ksm, item: RmapItem, node: StableNode, maxPageSharingBypass: boolean): void {
  // rmap won't find this mapping if we don't insert the rmap_item in the right
  // stable_node dup: a negative length is a chain, or memory corruption.
  if (node.rmapHlistLen < 0) bug(`stable_tree_append to a chain (kpfn=${node.kpfn})`);
  node.rmapHlistLen++;
  if (!maxPageSharingBypass && ksm.profile.features.stableNodeChains && node.rmapHlistLen > ksm.maxPageSharing) {
    bug(`stable node kpfn=${node.kpfn} has ${node.rmapHlistLen} mappings, max_page_sharing is ${ksm.maxPageSharing}`);
  }
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

// ---- 6.x: search and insertion with chains, NUMA trees, migrate_nodes ---------------

/**
 * __is_page_sharing_candidate(): the node has at least one mapping ("otherwise
 * there's no much point to merge and share with this stable_node, as the
 * underlying tree_page of the other sharer is going to be freed soon"), and room
 * for `offset` more below max_page_sharing.
 */
function isPageSharingCandidateOffset(ksm: Ksm, node: StableNode, offset: number): boolean {
  if (node.rmapHlistLen < 0) bug(`is_page_sharing_candidate of a chain`);
  return node.rmapHlistLen !== 0 && node.rmapHlistLen + offset < ksm.maxPageSharing;
}

/** is_page_sharing_candidate() */
export function isPageSharingCandidate(ksm: Ksm, node: StableNode): boolean {
  return isPageSharingCandidateOffset(ksm, node, 0);
}

/** The in-out parameters of __stable_node_chain(): the node (a chain may collapse into its dup) and the dup found. */
interface ChainLookup {
  node: StableNode;
  dup: StableNode | null;
}
const scratchChain: ChainLookup = { node: null as unknown as StableNode, dup: null };

/**
 * stable_node_dup(): the best dup of chain `look.node` to merge into, its page
 * referenced (returned), or -1. The best is a sharing candidate with the most
 * mappings (filling dups up rather than spreading over them), else any live dup.
 * Stale dups met on the way are pruned; a walk of every dup (to prune them all) is
 * made at most once per stable_node_chains_prune_millisecs, and otherwise the walk
 * stops at the first candidate. A chain left with one dup collapses into it
 * (look.node becomes that dup); one left with none is freed (-1). A candidate with
 * room for one more merge after this one moves to the head of the list, so the next
 * search stops there at once.
 */
function stableNodeDup(ksm: Ksm, look: ChainLookup, root: RbRoot, prune: boolean): number {
  const mem = ksm.kernel.mem;
  const chain = look.node;
  const now = ksm.kernel.now;
  if (!prune || now < chain.chainPruneTime + ksm.stableNodeChainsPruneMillisecs) prune = false;
  else chain.chainPruneTime = now;
  let found: StableNode | null = null;
  let foundLen = 0;
  let treePfn = -1;
  for (let dup = chain.dupHead; dup !== null; ) {
    // A _safe walk: the keyhole may remove this dup from the list.
    const next: StableNode | null = dup.dupNext;
    const pfn = getKsmPage(ksm, dup);
    if (pfn >= 0) {
      if (found === null || (isPageSharingCandidate(ksm, dup) && (!isPageSharingCandidate(ksm, found) || dup.rmapHlistLen > foundLen))) {
        if (found !== null) mem.putPage(treePfn);
        found = dup;
        foundLen = dup.rmapHlistLen;
        treePfn = pfn;
        if (!prune && isPageSharingCandidate(ksm, found)) break;
      } else {
        mem.putPage(pfn);
      }
    }
    dup = next;
  }
  if (found !== null) {
    if (chain.dupHead === found && found.dupNext === null) {
      // There's just one dup, below the deduplication limit or not: drop the chain.
      unlinkDup(found);
      rbReplaceNode(chain, found, root);
      found.linked = NODE_TREE;
      chain.linked = NODE_UNLINKED;
      ksm.stableNodeChains--;
      ksm.stableNodeDups--;
      look.node = found;
    } else if (chain.dupHead !== found && isPageSharingCandidateOffset(ksm, found, 1)) {
      unlinkDup(found);
      found.linked = NODE_DUP;
      found.chain = chain;
      found.dupNext = chain.dupHead;
      if (chain.dupHead !== null) chain.dupHead.dupPrev = found;
      chain.dupHead = found;
    }
  } else {
    // Its list must be empty when nothing was found.
    if (chain.dupHead !== null) bug('stable_node_dup found no dup on a non-empty chain');
    freeStableNodeChain(ksm, chain, root);
  }
  look.dup = found;
  return treePfn;
}

/**
 * __stable_node_chain(): for a regular node, itself and its page; for a chain,
 * stable_node_dup(). Like the keyhole, it may free look.node (then -1).
 * chain_prune() is this with pruning allowed, chain() without.
 */
function stableNodeChain(ksm: Ksm, look: ChainLookup, root: RbRoot, prune: boolean): number {
  const node = look.node;
  if (!isStableNodeChain(node)) {
    look.dup = node;
    return getKsmPage(ksm, node);
  }
  return stableNodeDup(ksm, look, root, prune);
}

/**
 * stable_tree_search() (6.x): the KSM page to merge `pfn` into, referenced, or -1
 * (none with the same contents, or every dup of them full), or EBUSY (its page is
 * locked). A page that is already KSM (forked) is its own answer, unless it waits
 * on migrate_nodes: then this search also places it in its node's tree.
 */
export function stableTreeSearchV6(ksm: Ksm, pfn: number, domain: string): number {
  const mem = ksm.kernel.mem;
  const pageNode = pageStableNode(ksm, pfn);
  if (pageNode !== null && pageNode.linked !== NODE_MIGRATE) {
    // ksm page forked
    mem.getPage(pfn);
    return pfn;
  }
  const nid = getKpfnNid(ksm, pfn);
  const root = ksm.stableRoots[nid]!;
  const look = scratchChain;
  let node: StableNode;
  let dup: StableNode;
  let parent: RbNode | null;
  let left: boolean;
  search: for (;;) {
    parent = null;
    left = false;
    let cur = root.node as StableNode | null;
    while (cur !== null) {
      look.node = cur;
      const treePfn = stableNodeChain(ksm, look, root, true);
      if (treePfn < 0) {
        // We walked over a stale stable_node: the keyhole erased it and the tree
        // may have rebalanced under us. Restart rather than make a false negative.
        continue search;
      }
      node = look.node;
      dup = look.dup!;
      ksm.work.stableTreeCompares++;
      const ret = comparePagesInDomains(ksm, pfn, domain, treePfn, node.domain);
      mem.putPage(treePfn);
      parent = node;
      if (ret < 0) {
        left = true;
        cur = node.rbLeft as StableNode | null;
      } else if (ret > 0) {
        left = false;
        cur = node.rbRight as StableNode | null;
      } else {
        // A migrated KSM page mapped more than once joins the chain as a dup of its
        // own; one mapped once can merge into a dup with room.
        if (pageNode !== null && mem.pageMapcount(pfn) > 1) return chainAppend(ksm, pfn, pageNode, node, dup, root, nid);
        // Every dup is full: wait for the page to find a partner in the unstable
        // tree, and make a new dup of the pair.
        if (!isPageSharingCandidate(ksm, dup)) return -1;
        const tree = getKsmPageTrylock(ksm, dup);
        if (tree === EBUSY) return EBUSY;
        if (tree < 0) continue search;
        if (getKpfnNid(ksm, dup.kpfn) !== dup.nid) {
          mem.putPage(tree);
          return replaceMigrated(ksm, pfn, pageNode, node, dup, root, nid);
        }
        return tree;
      }
    }
    break;
  }
  if (pageNode === null) return -1;
  migrateListDel(ksm, pageNode);
  pageNode.nid = nid;
  rbLinkNode(pageNode, parent, left, root);
  rbInsertColor(pageNode, root);
  pageNode.linked = NODE_TREE;
  return sharingCandidateOrNone(ksm, pfn, pageNode);
}

/** stable_tree_search()'s `out:`: the migrated page itself if it can take a merge. */
function sharingCandidateOrNone(ksm: Ksm, pfn: number, pageNode: StableNode): number {
  if (isPageSharingCandidate(ksm, pageNode)) {
    ksm.kernel.mem.getPage(pfn);
    return pfn;
  }
  return -1;
}

/**
 * stable_tree_search()'s `replace:`: the dup found has itself migrated off this
 * node's tree. It goes to migrate_nodes, and the page being searched (if it is a
 * migrated KSM page) takes its place.
 */
function replaceMigrated(ksm: Ksm, pfn: number, pageNode: StableNode | null, node: StableNode, dup: StableNode, root: RbRoot, nid: number): number {
  let result = -1;
  if (dup === node) {
    // No chain (or it collapsed): a plain node in the tree.
    if (pageNode !== null) {
      migrateListDel(ksm, pageNode);
      pageNode.nid = nid;
      rbReplaceNode(dup, pageNode, root);
      pageNode.linked = NODE_TREE;
      dup.linked = NODE_UNLINKED;
      result = sharingCandidateOrNone(ksm, pfn, pageNode);
    } else {
      rbErase(dup, root);
      dup.linked = NODE_UNLINKED;
    }
  } else {
    stableNodeDupDelFromChain(ksm, dup);
    if (pageNode !== null) {
      migrateListDel(ksm, pageNode);
      pageNode.nid = nid;
      stableNodeChainAddDup(ksm, pageNode, node);
      result = sharingCandidateOrNone(ksm, pfn, pageNode);
    }
  }
  migrateListAdd(ksm, dup);
  return result;
}

/** stable_tree_search()'s `chain_append:`: a migrated KSM page joins this content's chain (made if needed) as a dup. */
function chainAppend(ksm: Ksm, pfn: number, pageNode: StableNode, node: StableNode, dup: StableNode, root: RbRoot, nid: number): number {
  let chain = node;
  if (dup === node) chain = allocStableNodeChain(ksm, dup, root);
  migrateListDel(ksm, pageNode);
  pageNode.nid = nid;
  stableNodeChainAddDup(ksm, pageNode, chain);
  return sharingCandidateOrNone(ksm, pfn, pageNode);
}

/**
 * stable_tree_insert() (6.x): a new stable node for KSM page kpfn. Where a node of
 * the same contents exists (its dups were all full when this page searched), the
 * new node becomes another dup of its chain, made now if it was a plain node.
 */
export function stableTreeInsertV6(ksm: Ksm, kpfn: number, domain: string): StableNode {
  const mem = ksm.kernel.mem;
  const nid = getKpfnNid(ksm, kpfn);
  const root = ksm.stableRoots[nid]!;
  const look = scratchChain;
  let parent: RbNode | null;
  let left: boolean;
  let same: StableNode | null;
  search: for (;;) {
    parent = null;
    left = false;
    same = null;
    let cur = root.node as StableNode | null;
    while (cur !== null) {
      look.node = cur;
      const treePfn = stableNodeChain(ksm, look, root, false);
      if (treePfn < 0) continue search;
      const node = look.node;
      ksm.work.stableTreeCompares++;
      const ret = comparePagesInDomains(ksm, kpfn, domain, treePfn, node.domain);
      mem.putPage(treePfn);
      parent = node;
      if (ret < 0) {
        left = true;
        cur = node.rbLeft as StableNode | null;
      } else if (ret > 0) {
        left = false;
        cur = node.rbRight as StableNode | null;
      } else {
        same = node;
        break;
      }
    }
    break;
  }
  const dup = new StableNode(kpfn);
  dup.nid = nid;
  dup.domain = domain;
  if (same === null) {
    rbLinkNode(dup, parent, left, root);
    rbInsertColor(dup, root);
    dup.linked = NODE_TREE;
  } else {
    const chain = isStableNodeChain(same) ? same : allocStableNodeChain(ksm, same, root);
    stableNodeChainAddDup(ksm, dup, chain);
  }
  setPageStableNode(ksm, kpfn, dup);
  return dup;
}

// ---- removing stable nodes: max_page_sharing, merge_across_nodes, run=2 (6.x) -----------

/**
 * remove_stable_node(): drop a stable node whose page nobody maps any more (it may
 * linger in the swap cache). EBUSY when the page is still mapped: a process between
 * ksm_exit() and exit_mmap(), or one whose rmap_items ksmd has not yet met.
 */
function removeStableNode(ksm: Ksm, node: StableNode): number {
  const mem = ksm.kernel.mem;
  const pfn = getKsmPage(ksm, node);
  // getKsmPage removed a stale node itself.
  if (pfn < 0) return 0;
  let err = EBUSY;
  if (mem.mapcount[pfn]! < 0) {
    // Not yet stale to the keyhole (an unmapped KSM page is its node's until it
    // is freed), but safe to remove.
    setPageStableNode(ksm, pfn, null);
    removeNodeFromStableTree(ksm, node);
    err = 0;
  }
  mem.putPage(pfn);
  return err;
}

/** remove_stable_node_chain(): true (busy) when a node could not be removed. */
function removeStableNodeChain(ksm: Ksm, node: StableNode, root: RbRoot): boolean {
  if (!isStableNodeChain(node)) return removeStableNode(ksm, node) !== 0;
  for (let dup = node.dupHead; dup !== null; ) {
    const next: StableNode | null = dup.dupNext;
    if (removeStableNode(ksm, dup) !== 0) return true;
    dup = next;
  }
  if (node.dupHead !== null) bug('remove_stable_node_chain left dups on the chain');
  freeStableNodeChain(ksm, node, root);
  return false;
}

/** remove_all_stable_nodes(): 0, or EBUSY when some node's page is still mapped. */
export function removeAllStableNodes(ksm: Ksm): number {
  let err = 0;
  for (let nid = 0; nid < ksm.nrNodeIds; nid++) {
    const root = ksm.stableRoots[nid]!;
    while (root.node !== null) {
      if (removeStableNodeChain(ksm, root.node as StableNode, root)) {
        err = EBUSY;
        break; // proceed to next nid
      }
    }
  }
  for (let node = ksm.migrateNodes; node !== null; ) {
    const next: StableNode | null = node.migrateNext;
    if (removeStableNode(ksm, node) !== 0) err = EBUSY;
    node = next;
  }
  return err;
}

// ---- memory hot-remove -------------------------------------------------------------------

/**
 * ksm_memory_callback(MEM_OFFLINE): remove every stable node whose kpfn lies in
 * [startPfn, endPfn), as ksm_check_stable_tree() does: 2.6.33 one at a time from the
 * first such node in tree order; 6.x tree by tree, chain by chain, then the nodes
 * waiting on migrate_nodes. Returns how many were removed.
 */
export function pruneStableNodes(ksm: Ksm, startPfn: number, endPfn: number): number {
  if (ksm.profile.features.stableNodeChains) return checkStableTreeV6(ksm, startPfn, endPfn);
  let pruned = 0;
  let node: StableNode | null;
  while ((node = checkStableTree(ksm, startPfn, endPfn)) !== null) {
    removeNodeFromStableTree(ksm, node);
    pruned++;
  }
  return pruned;
}

/** ksm_check_stable_tree() (2.6.33): the first stable node, in tree order, with kpfn in [startPfn, endPfn). */
function checkStableTree(ksm: Ksm, startPfn: number, endPfn: number): StableNode | null {
  for (let n = rbFirst(ksm.rootStableTree); n !== null; n = rbNext(n)) {
    const node = n as StableNode;
    if (node.kpfn >= startPfn && node.kpfn < endPfn) return node;
  }
  return null;
}

/** ksm_check_stable_tree() (6.x), with stable_node_chain_remove_range(); returns the nodes removed. */
function checkStableTreeV6(ksm: Ksm, startPfn: number, endPfn: number): number {
  let pruned = 0;
  const inRange = (node: StableNode): boolean => node.kpfn >= startPfn && node.kpfn < endPfn;
  for (let nid = 0; nid < ksm.nrNodeIds; nid++) {
    const root = ksm.stableRoots[nid]!;
    let n = rbFirst(root);
    while (n !== null) {
      const node = n as StableNode;
      let rebalanced = false;
      if (!isStableNodeChain(node)) {
        if (inRange(node)) {
          // Don't use the keyhole: the page has already gone.
          removeNodeFromStableTree(ksm, node);
          pruned++;
          rebalanced = true;
        }
      } else {
        for (let dup = node.dupHead; dup !== null; ) {
          const next: StableNode | null = dup.dupNext;
          if (inRange(dup)) {
            removeNodeFromStableTree(ksm, dup);
            pruned++;
          }
          dup = next;
        }
        if (node.dupHead === null) {
          freeStableNodeChain(ksm, node, root);
          rebalanced = true;
        }
      }
      n = rebalanced ? rbFirst(root) : rbNext(n);
    }
  }
  for (let node = ksm.migrateNodes; node !== null; ) {
    const next: StableNode | null = node.migrateNext;
    if (inRange(node)) {
      removeNodeFromStableTree(ksm, node);
      pruned++;
    }
    node = next;
  }
  return pruned;
}

/** The dups of a chain, or the node itself, for walks that want every KSM page (checks, snapshots). */
export function forEachKsmNode(node: StableNode, fn: (n: StableNode) => void): void {
  if (!isStableNodeChain(node)) {
    fn(node);
    return;
  }
  for (let d = node.dupHead; d !== null; d = d.dupNext) fn(d);
}

/** The mark of a node kept on a chain (for describe). */
export function describeNodeLink(node: StableNode): string {
  switch (node.linked) {
    case NODE_TREE:
      return isStableNodeChain(node) ? 'chain' : 'tree';
    case NODE_DUP:
      return 'dup';
    case NODE_MIGRATE:
      return 'migrate_nodes';
    default:
      return 'unlinked';
  }
}
