import { bug } from '../lib/errors.js';
import { rbErase, rbFirst, rbInsertColor, rbLinkNode, rbNext, rbReplaceNode, type RbRootIdx } from '../lib/rbtree-indexed.js';
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
  NULL,
  STABLE_FLAG,
  STABLE_NODE_CHAIN,
  isStableNodeChain,
  isStableNodeDup,
  type RmapItem,
  type StableNode,
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

/**
 * hold_anon_vma(): an rmap_item entering the stable tree pins its anon_vma. The
 * rmap_item holds the anon_vma's number in ksm.anonVmaTable, given on the first
 * hold and taken back when KSM holds it no more.
 */
export function holdAnonVma(ksm: Ksm, item: RmapItem, anonVma: AnonVma): void {
  if (anonVma.ksmId === 0) anonVma.ksmId = ksm.anonVmaTable.add(anonVma);
  ksm.rmapItemCache.anonVma[item] = anonVma.ksmId;
  anonVma.ksmRefcount++;
}

/** drop_anon_vma(): the anon_vma is freed once neither vmas nor KSM use it. */
export function dropAnonVma(ksm: Ksm, item: RmapItem): void {
  const ri = ksm.rmapItemCache;
  const id = ri.anonVma[item]!;
  if (id === 0) bug(`drop_anon_vma on rmap_item ${ksm.describeItem(item)} holding none`);
  const av = ksm.anonVmaTable.get(id);
  ri.anonVma[item] = 0;
  av.ksmRefcount--;
  if (av.ksmRefcount < 0) bug(`anon_vma ${av.id} ksm refcount underflow`);
  if (av.ksmRefcount === 0) {
    ksm.anonVmaTable.remove(id);
    av.ksmId = 0;
  }
  av.freeIfUnused();
}

/** 6.x get_kpfn_nid(): the index of the trees a KSM page at kpfn belongs in. */
export function getKpfnNid(ksm: Ksm, kpfn: number): number {
  return ksm.mergeAcrossNodes !== 0 ? 0 : ksm.kernel.mem.nodeOf(kpfn);
}

// ---- chains and dups (6.x) ---------------------------------------------------------

/** stable_node_chain_add_dup(): hlist_add_head(&dup->hlist_dup, &chain->hlist). */
function stableNodeChainAddDup(ksm: Ksm, dup: StableNode, chain: StableNode): void {
  const sn = ksm.stableNodeCache;
  if (isStableNodeDup(sn, dup) || !isStableNodeChain(sn, chain)) bug(`stable_node_chain_add_dup of kpfn=${sn.kpfn[dup]} to a non-chain, or of a dup`);
  linkDupAtHead(ksm, dup, chain);
  ksm.stableNodeDups++;
}

/** Put an unlinked dup first on its chain's list (hlist_add_head of hlist_dup). */
function linkDupAtHead(ksm: Ksm, dup: StableNode, chain: StableNode): void {
  const sn = ksm.stableNodeCache;
  sn.linked[dup] = NODE_DUP;
  sn.chain[dup] = chain;
  sn.dupPrev[dup] = NULL;
  const first = sn.dupHead[chain]!;
  sn.dupNext[dup] = first;
  if (first !== NULL) sn.dupPrev[first] = dup;
  sn.dupHead[chain] = dup;
}

/** Take a dup off its chain's list (hlist_del of hlist_dup), leaving it unlinked. */
function unlinkDup(ksm: Ksm, dup: StableNode): void {
  const sn = ksm.stableNodeCache;
  const chain = sn.chain[dup]!;
  const prev = sn.dupPrev[dup]!;
  const next = sn.dupNext[dup]!;
  if (prev !== NULL) sn.dupNext[prev] = next;
  else sn.dupHead[chain] = next;
  if (next !== NULL) sn.dupPrev[next] = prev;
  sn.dupNext[dup] = NULL;
  sn.dupPrev[dup] = NULL;
  sn.chain[dup] = NULL;
  sn.linked[dup] = NODE_UNLINKED;
}

/** __stable_node_dup_del() */
function stableNodeDupDelFromChain(ksm: Ksm, dup: StableNode): void {
  if (!isStableNodeDup(ksm.stableNodeCache, dup)) bug(`__stable_node_dup_del of kpfn=${ksm.stableNodeCache.kpfn[dup]}, not a dup`);
  unlinkDup(ksm, dup);
  ksm.stableNodeDups--;
}

/** stable_node_dup_del(): off its chain, or out of its tree. */
export function stableNodeDupDel(ksm: Ksm, dup: StableNode): void {
  const sn = ksm.stableNodeCache;
  if (isStableNodeChain(sn, dup)) bug('stable_node_dup_del of a chain');
  if (isStableNodeDup(sn, dup)) {
    stableNodeDupDelFromChain(ksm, dup);
  } else {
    rbErase(sn, dup, ksm.stableRoots[sn.nid[dup]!]!);
    sn.linked[dup] = NODE_UNLINKED;
  }
}

/** list_add(&node->list, &migrate_nodes) */
export function migrateListAdd(ksm: Ksm, node: StableNode): void {
  const sn = ksm.stableNodeCache;
  sn.linked[node] = NODE_MIGRATE;
  sn.migratePrev[node] = NULL;
  sn.migrateNext[node] = ksm.migrateNodes;
  if (ksm.migrateNodes !== NULL) sn.migratePrev[ksm.migrateNodes] = node;
  ksm.migrateNodes = node;
}

/** list_del(&node->list) */
function migrateListDel(ksm: Ksm, node: StableNode): void {
  const sn = ksm.stableNodeCache;
  const prev = sn.migratePrev[node]!;
  const next = sn.migrateNext[node]!;
  if (prev !== NULL) sn.migrateNext[prev] = next;
  else ksm.migrateNodes = next;
  if (next !== NULL) sn.migratePrev[next] = prev;
  sn.migrateNext[node] = NULL;
  sn.migratePrev[node] = NULL;
  sn.linked[node] = NODE_UNLINKED;
}

/**
 * alloc_stable_node_chain(): put a chain in `dup`'s place in the tree and make dup
 * its first dup ("the invariant is that all dup stable_nodes in the chain->hlist
 * point to pages that are write protected and have the exact same content").
 */
function allocStableNodeChain(ksm: Ksm, dup: StableNode, root: RbRootIdx): StableNode {
  const sn = ksm.stableNodeCache;
  if (isStableNodeChain(sn, dup)) bug('alloc_stable_node_chain of a chain');
  const chain = sn.alloc(-1);
  sn.rmapHlistLen[chain] = STABLE_NODE_CHAIN;
  sn.chainPruneTime[chain] = ksm.kernel.now;
  sn.nid[chain] = sn.nid[dup]!;
  sn.domain[chain] = sn.domain[dup]!;
  ksm.stableNodeChains++;
  rbReplaceNode(sn, dup, chain, root);
  sn.linked[chain] = NODE_TREE;
  sn.linked[dup] = NODE_UNLINKED;
  stableNodeChainAddDup(ksm, dup, chain);
  return chain;
}

/** free_stable_node_chain() */
function freeStableNodeChain(ksm: Ksm, chain: StableNode, root: RbRootIdx): void {
  const sn = ksm.stableNodeCache;
  rbErase(sn, chain, root);
  sn.linked[chain] = NODE_UNLINKED;
  ksm.stableNodeChains--;
  sn.free(chain);
}

/**
 * remove_node_from_stable_tree(): the node's page is gone (or must go): every
 * rmap_item on it leaves the stable tree, and the node leaves its tree, its chain
 * or migrate_nodes.
 */
export function removeNodeFromStableTree(ksm: Ksm, node: StableNode): void {
  const sn = ksm.stableNodeCache;
  const ri = ksm.rmapItemCache;
  if (sn.rmapHlistLen[node]! < 0) bug(`remove_node_from_stable_tree of a chain`);
  for (let item = sn.hlist[node]!; item !== NULL; ) {
    const next = ri.hlistNext[item]!;
    if (next !== NULL) ksm.pagesSharing--;
    else ksm.pagesShared--;
    sn.rmapHlistLen[node] = sn.rmapHlistLen[node]! - 1;
    dropAnonVma(ksm, item);
    ri.flags[item] = 0;
    ri.head[item] = NULL;
    ri.hlistNext[item] = NULL;
    ri.hlistPrev[item] = NULL;
    item = next;
  }
  sn.hlist[node] = NULL;
  if (sn.rmapHlistLen[node] !== 0) bug(`stable node kpfn=${sn.kpfn[node]} counted ${sn.rmapHlistLen[node]} rmap_items past its list`);
  sn.rmapHlistLen[node] = 0;
  if (sn.linked[node] === NODE_MIGRATE) migrateListDel(ksm, node);
  else stableNodeDupDel(ksm, node);
  // free_stable_node(): no page's mapping holds its number (the keyhole's callers
  // saw that, or cleared it), and no rmap_item its number (above): it can be reused.
  sn.free(node);
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
  const pfn = peekKsmPage(ksm, node);
  if (pfn >= 0) ksm.kernel.mem.getPage(pfn);
  return pfn;
}

/**
 * getKsmPage() without the reference: the frame, or -1 after removing the stale node.
 * Not the kernel's way (it takes the reference in the same step, and drops it again
 * for a dup it passes over), but its answers: nothing runs between this look and
 * the caller's getPage(), so the page cannot be freed in between. stable_node_dup()
 * walks every dup of a chain whose dups are full, and a reference taken and dropped
 * per dup was two writes for nothing.
 */
function peekKsmPage(ksm: Ksm, node: StableNode): number {
  const mem = ksm.kernel.mem;
  const pfn = ksm.stableNodeCache.kpfn[node]!;
  if (!mem.isKsm(pfn) || mem.mappingOf(pfn) !== node || mem.count[pfn] === 0) {
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
  const sn = ksm.stableNodeCache;
  if (pageStableNode(ksm, pfn) !== NULL) {
    mem.getPage(pfn);
    return pfn;
  }
  again: for (;;) {
    let node: StableNode = ksm.rootStableTree.node;
    while (node !== NULL) {
      const treePfn = getKsmPage(ksm, node);
      if (treePfn < 0) {
        // A stale node was just removed and the tree rebalanced under us. 2.6.33
        // gives up this search (the merge is found at a later scan); later kernels
        // start again from the root rather than miss it.
        if (ksm.profile.features.restartStableTreeSearch) continue again;
        return -1;
      }
      ksm.work.stableTreeCompares++;
      const ret = comparePagesInDomains(ksm, pfn, domain, treePfn, ksm.domainNames[sn.domain[node]!]!);
      if (ret < 0) {
        mem.putPage(treePfn);
        node = sn.rbLeft[node]!;
      } else if (ret > 0) {
        mem.putPage(treePfn);
        node = sn.rbRight[node]!;
      } else {
        return treePfn;
      }
    }
    return -1;
  }
}

/** stable_tree_insert() (2.6.33): a new stable node for KSM page kpfn (of merge domain `domain`), or NULL. */
export function stableTreeInsert(ksm: Ksm, kpfn: number, domain: string): StableNode {
  const mem = ksm.kernel.mem;
  const sn = ksm.stableNodeCache;
  again: for (;;) {
    let parent: StableNode = NULL;
    let left = false;
    let cur: StableNode = ksm.rootStableTree.node;
    while (cur !== NULL) {
      const treePfn = getKsmPage(ksm, cur);
      if (treePfn < 0) {
        // As in stable_tree_search(): 2.6.33 gives up (the caller breaks COW on both
        // pages); later kernels restart rather than make a false negative.
        if (ksm.profile.features.restartStableTreeSearch) continue again;
        return NULL;
      }
      ksm.work.stableTreeCompares++;
      const ret = comparePagesInDomains(ksm, kpfn, domain, treePfn, ksm.domainNames[sn.domain[cur]!]!);
      mem.putPage(treePfn);
      parent = cur;
      if (ret < 0) {
        left = true;
        cur = sn.rbLeft[cur]!;
      } else if (ret > 0) {
        left = false;
        cur = sn.rbRight[cur]!;
      } else {
        // Not a bug that stable_tree_search() missed it: our page was not yet
        // write-protected then, and may have changed since.
        return NULL;
      }
    }
    const node = sn.alloc(kpfn);
    sn.domain[node] = ksm.domainId(domain);
    rbLinkNode(sn, node, parent, left, ksm.rootStableTree);
    rbInsertColor(sn, node, ksm.rootStableTree);
    sn.linked[node] = NODE_TREE;
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
  const sn = ksm.stableNodeCache;
  const ri = ksm.rmapItemCache;
  if (sn.rmapHlistLen[node]! < 0) bug(`stable_tree_append to a chain (record ${node})`);
  const len = sn.rmapHlistLen[node]! + 1;
  sn.rmapHlistLen[node] = len;
  if (!maxPageSharingBypass && ksm.profile.features.stableNodeChains && len > ksm.maxPageSharing) {
    bug(`stable node kpfn=${sn.kpfn[node]} has ${len} mappings, max_page_sharing is ${ksm.maxPageSharing}`);
  }
  // head shares its field with the rb links: from here on they are the stable tree's.
  ri.head[item] = node;
  ri.rbRed[item] = 0;
  ri.flags[item] = ri.flags[item]! | STABLE_FLAG;
  // hlist_add_head()
  const first = sn.hlist[node]!;
  ri.hlistPrev[item] = NULL;
  ri.hlistNext[item] = first;
  if (first !== NULL) ri.hlistPrev[first] = item;
  sn.hlist[node] = item;
  if (first !== NULL) ksm.pagesSharing++;
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
  const len = ksm.stableNodeCache.rmapHlistLen[node]!;
  if (len < 0) bug(`is_page_sharing_candidate of a chain`);
  return len !== 0 && len + offset < ksm.maxPageSharing;
}

/** is_page_sharing_candidate() */
export function isPageSharingCandidate(ksm: Ksm, node: StableNode): boolean {
  return isPageSharingCandidateOffset(ksm, node, 0);
}

/** The in-out parameters of __stable_node_chain(): the node (a chain may collapse into its dup) and the dup found. */
interface ChainLookup {
  node: StableNode;
  dup: StableNode;
}
const scratchChain: ChainLookup = { node: NULL, dup: NULL };

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
function stableNodeDup(ksm: Ksm, look: ChainLookup, root: RbRootIdx, prune: boolean): number {
  const mem = ksm.kernel.mem;
  const sn = ksm.stableNodeCache;
  const chain = look.node;
  const now = ksm.kernel.now;
  if (!prune || now < sn.chainPruneTime[chain]! + ksm.stableNodeChainsPruneMillisecs) prune = false;
  else sn.chainPruneTime[chain] = now;
  let found: StableNode = NULL;
  let foundLen = 0;
  let treePfn = -1;
  for (let dup = sn.dupHead[chain]!; dup !== NULL; ) {
    // A _safe walk: the keyhole may remove (and free) this dup.
    const next = sn.dupNext[dup]!;
    // The kernel takes a reference on each dup's page and drops it on the ones it
    // passes over; here only the one found holds one, taken after the walk.
    const pfn = peekKsmPage(ksm, dup);
    if (pfn >= 0 && (found === NULL || (isPageSharingCandidate(ksm, dup) && (!isPageSharingCandidate(ksm, found) || sn.rmapHlistLen[dup]! > foundLen)))) {
      found = dup;
      foundLen = sn.rmapHlistLen[dup]!;
      treePfn = pfn;
      if (!prune && isPageSharingCandidate(ksm, found)) break;
    }
    dup = next;
  }
  if (found !== NULL) {
    mem.getPage(treePfn);
    if (sn.dupHead[chain] === found && sn.dupNext[found] === NULL) {
      // There's just one dup, below the deduplication limit or not: drop the chain.
      unlinkDup(ksm, found);
      rbReplaceNode(sn, chain, found, root);
      sn.linked[found] = NODE_TREE;
      sn.linked[chain] = NODE_UNLINKED;
      ksm.stableNodeChains--;
      ksm.stableNodeDups--;
      sn.free(chain);
      look.node = found;
    } else if (sn.dupHead[chain] !== found && isPageSharingCandidateOffset(ksm, found, 1)) {
      // hlist_del() then hlist_add_head(): first on the list for the next lookup.
      unlinkDup(ksm, found);
      linkDupAtHead(ksm, found, chain);
    }
  } else {
    // Its list must be empty when nothing was found.
    if (sn.dupHead[chain] !== NULL) bug('stable_node_dup found no dup on a non-empty chain');
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
function stableNodeChain(ksm: Ksm, look: ChainLookup, root: RbRootIdx, prune: boolean): number {
  const node = look.node;
  if (!isStableNodeChain(ksm.stableNodeCache, node)) {
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
  const sn = ksm.stableNodeCache;
  const pageNode = pageStableNode(ksm, pfn);
  if (pageNode !== NULL && sn.linked[pageNode] !== NODE_MIGRATE) {
    // ksm page forked
    mem.getPage(pfn);
    return pfn;
  }
  const nid = getKpfnNid(ksm, pfn);
  const root = ksm.stableRoots[nid]!;
  const look = scratchChain;
  let node: StableNode;
  let dup: StableNode;
  let parent: StableNode;
  let left: boolean;
  search: for (;;) {
    parent = NULL;
    left = false;
    let cur: StableNode = root.node;
    while (cur !== NULL) {
      look.node = cur;
      const treePfn = stableNodeChain(ksm, look, root, true);
      if (treePfn < 0) {
        // We walked over a stale stable_node: the keyhole erased it and the tree
        // may have rebalanced under us. Restart rather than make a false negative.
        continue search;
      }
      node = look.node;
      dup = look.dup;
      ksm.work.stableTreeCompares++;
      const ret = comparePagesInDomains(ksm, pfn, domain, treePfn, ksm.domainNames[sn.domain[node]!]!);
      mem.putPage(treePfn);
      parent = node;
      if (ret < 0) {
        left = true;
        cur = sn.rbLeft[node]!;
      } else if (ret > 0) {
        left = false;
        cur = sn.rbRight[node]!;
      } else {
        // A migrated KSM page mapped more than once joins the chain as a dup of its
        // own; one mapped once can merge into a dup with room.
        if (pageNode !== NULL && mem.pageMapcount(pfn) > 1) return chainAppend(ksm, pfn, pageNode, node, dup, root, nid);
        // Every dup is full: wait for the page to find a partner in the unstable
        // tree, and make a new dup of the pair.
        if (!isPageSharingCandidate(ksm, dup)) return -1;
        const tree = getKsmPageTrylock(ksm, dup);
        if (tree === EBUSY) return EBUSY;
        if (tree < 0) continue search;
        if (getKpfnNid(ksm, sn.kpfn[dup]!) !== sn.nid[dup]) {
          mem.putPage(tree);
          return replaceMigrated(ksm, pfn, pageNode, node, dup, root, nid);
        }
        return tree;
      }
    }
    break;
  }
  if (pageNode === NULL) return -1;
  migrateListDel(ksm, pageNode);
  sn.nid[pageNode] = nid;
  rbLinkNode(sn, pageNode, parent, left, root);
  rbInsertColor(sn, pageNode, root);
  sn.linked[pageNode] = NODE_TREE;
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
function replaceMigrated(ksm: Ksm, pfn: number, pageNode: StableNode, node: StableNode, dup: StableNode, root: RbRootIdx, nid: number): number {
  const sn = ksm.stableNodeCache;
  let result = -1;
  if (dup === node) {
    // No chain (or it collapsed): a plain node in the tree.
    if (pageNode !== NULL) {
      migrateListDel(ksm, pageNode);
      sn.nid[pageNode] = nid;
      rbReplaceNode(sn, dup, pageNode, root);
      sn.linked[pageNode] = NODE_TREE;
      sn.linked[dup] = NODE_UNLINKED;
      result = sharingCandidateOrNone(ksm, pfn, pageNode);
    } else {
      rbErase(sn, dup, root);
      sn.linked[dup] = NODE_UNLINKED;
    }
  } else {
    stableNodeDupDelFromChain(ksm, dup);
    if (pageNode !== NULL) {
      migrateListDel(ksm, pageNode);
      sn.nid[pageNode] = nid;
      stableNodeChainAddDup(ksm, pageNode, node);
      result = sharingCandidateOrNone(ksm, pfn, pageNode);
    }
  }
  migrateListAdd(ksm, dup);
  return result;
}

/** stable_tree_search()'s `chain_append:`: a migrated KSM page joins this content's chain (made if needed) as a dup. */
function chainAppend(ksm: Ksm, pfn: number, pageNode: StableNode, node: StableNode, dup: StableNode, root: RbRootIdx, nid: number): number {
  let chain = node;
  if (dup === node) chain = allocStableNodeChain(ksm, dup, root);
  migrateListDel(ksm, pageNode);
  ksm.stableNodeCache.nid[pageNode] = nid;
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
  const sn = ksm.stableNodeCache;
  const nid = getKpfnNid(ksm, kpfn);
  const root = ksm.stableRoots[nid]!;
  const look = scratchChain;
  let parent: StableNode;
  let left: boolean;
  let same: StableNode;
  search: for (;;) {
    parent = NULL;
    left = false;
    same = NULL;
    let cur: StableNode = root.node;
    while (cur !== NULL) {
      look.node = cur;
      const treePfn = stableNodeChain(ksm, look, root, false);
      if (treePfn < 0) continue search;
      const node = look.node;
      ksm.work.stableTreeCompares++;
      const ret = comparePagesInDomains(ksm, kpfn, domain, treePfn, ksm.domainNames[sn.domain[node]!]!);
      mem.putPage(treePfn);
      parent = node;
      if (ret < 0) {
        left = true;
        cur = sn.rbLeft[node]!;
      } else if (ret > 0) {
        left = false;
        cur = sn.rbRight[node]!;
      } else {
        same = node;
        break;
      }
    }
    break;
  }
  const dup = sn.alloc(kpfn);
  sn.nid[dup] = nid;
  sn.domain[dup] = ksm.domainId(domain);
  if (same === NULL) {
    rbLinkNode(sn, dup, parent, left, root);
    rbInsertColor(sn, dup, root);
    sn.linked[dup] = NODE_TREE;
  } else {
    const chain = isStableNodeChain(sn, same) ? same : allocStableNodeChain(ksm, same, root);
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
    setPageStableNode(ksm, pfn, NULL);
    removeNodeFromStableTree(ksm, node);
    err = 0;
  }
  mem.putPage(pfn);
  return err;
}

/** remove_stable_node_chain(): true (busy) when a node could not be removed. */
function removeStableNodeChain(ksm: Ksm, node: StableNode, root: RbRootIdx): boolean {
  const sn = ksm.stableNodeCache;
  if (!isStableNodeChain(sn, node)) return removeStableNode(ksm, node) !== 0;
  for (let dup = sn.dupHead[node]!; dup !== NULL; ) {
    const next = sn.dupNext[dup]!;
    if (removeStableNode(ksm, dup) !== 0) return true;
    dup = next;
  }
  if (sn.dupHead[node] !== NULL) bug('remove_stable_node_chain left dups on the chain');
  freeStableNodeChain(ksm, node, root);
  return false;
}

/** remove_all_stable_nodes(): 0, or EBUSY when some node's page is still mapped. */
export function removeAllStableNodes(ksm: Ksm): number {
  let err = 0;
  for (let nid = 0; nid < ksm.nrNodeIds; nid++) {
    const root = ksm.stableRoots[nid]!;
    while (root.node !== NULL) {
      if (removeStableNodeChain(ksm, root.node, root)) {
        err = EBUSY;
        break; // proceed to next nid
      }
    }
  }
  for (let node = ksm.migrateNodes; node !== NULL; ) {
    const next = ksm.stableNodeCache.migrateNext[node]!;
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
  let node: StableNode;
  while ((node = checkStableTree(ksm, startPfn, endPfn)) !== NULL) {
    removeNodeFromStableTree(ksm, node);
    pruned++;
  }
  return pruned;
}

/** ksm_check_stable_tree() (2.6.33): the first stable node, in tree order, with kpfn in [startPfn, endPfn). */
function checkStableTree(ksm: Ksm, startPfn: number, endPfn: number): StableNode {
  const sn = ksm.stableNodeCache;
  for (let node = rbFirst(sn, ksm.rootStableTree); node !== NULL; node = rbNext(sn, node)) {
    if (sn.kpfn[node]! >= startPfn && sn.kpfn[node]! < endPfn) return node;
  }
  return NULL;
}

/** ksm_check_stable_tree() (6.x), with stable_node_chain_remove_range(); returns the nodes removed. */
function checkStableTreeV6(ksm: Ksm, startPfn: number, endPfn: number): number {
  let pruned = 0;
  const sn = ksm.stableNodeCache;
  const inRange = (node: StableNode): boolean => sn.kpfn[node]! >= startPfn && sn.kpfn[node]! < endPfn;
  for (let nid = 0; nid < ksm.nrNodeIds; nid++) {
    const root = ksm.stableRoots[nid]!;
    let node = rbFirst(sn, root);
    while (node !== NULL) {
      let rebalanced = false;
      if (!isStableNodeChain(sn, node)) {
        if (inRange(node)) {
          // Don't use the keyhole: the page has already gone.
          removeNodeFromStableTree(ksm, node);
          pruned++;
          rebalanced = true;
        }
      } else {
        for (let dup = sn.dupHead[node]!; dup !== NULL; ) {
          const next = sn.dupNext[dup]!;
          if (inRange(dup)) {
            removeNodeFromStableTree(ksm, dup);
            pruned++;
          }
          dup = next;
        }
        if (sn.dupHead[node] === NULL) {
          freeStableNodeChain(ksm, node, root);
          rebalanced = true;
        }
      }
      node = rebalanced ? rbFirst(sn, root) : rbNext(sn, node);
    }
  }
  for (let node = ksm.migrateNodes; node !== NULL; ) {
    const next = sn.migrateNext[node]!;
    if (inRange(node)) {
      removeNodeFromStableTree(ksm, node);
      pruned++;
    }
    node = next;
  }
  return pruned;
}

/** The dups of a chain, or the node itself, for walks that want every KSM page (checks, snapshots). */
export function forEachKsmNode(ksm: Ksm, node: StableNode, fn: (n: StableNode) => void): void {
  const sn = ksm.stableNodeCache;
  if (!isStableNodeChain(sn, node)) {
    fn(node);
    return;
  }
  for (let d = sn.dupHead[node]!; d !== NULL; d = sn.dupNext[d]!) fn(d);
}

/** The mark of a node kept on a chain (for describe). */
export function describeNodeLink(ksm: Ksm, node: StableNode): string {
  const sn = ksm.stableNodeCache;
  switch (sn.linked[node]) {
    case NODE_TREE:
      return isStableNodeChain(sn, node) ? 'chain' : 'tree';
    case NODE_DUP:
      return 'dup';
    case NODE_MIGRATE:
      return 'migrate_nodes';
    default:
      return 'unlinked';
  }
}
