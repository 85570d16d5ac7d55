import type { RbNode } from '../lib/rbtree.js';
import type { MmStruct } from '../mm/mm.js';
import type { AnonVma } from '../mm/vma.js';

/**
 * KSM's three kinds of object (mm/ksm.c), with the same fields and the same rules:
 * 2.6.33's, plus what 6.x added (stable node chains and dups, the smart-scan age of
 * an rmap_item, NUMA node ids), which a 2.6.33 engine leaves at their initial values.
 * In the kernel the flags live in the low bits of rmap_item->address; here
 * `address` is the page-aligned address and `flags` holds them, which keeps the
 * comparison in get_next_rmap_item() a plain number compare.
 */

/** rmap_item->address low bits (mm/ksm.c) */
export const SEQNR_MASK = 0x0ff; // low bits of the unstable tree seqnr
export const UNSTABLE_FLAG = 0x100; // is a node of the unstable tree
export const STABLE_FLAG = 0x200; // is listed from the stable tree

/** ksm_run: what `run` holds (mm/ksm.c). */
export const KSM_RUN_STOP = 0;
export const KSM_RUN_MERGE = 1;
export const KSM_RUN_UNMERGE = 2;

/** Errors of a merge step, as the kernel's negative errnos (0 is success). */
export const EFAULT = -14;
export const ENOMEM = -12;
export const EBUSY = -16;

/**
 * stable_node->rmap_hlist_len of a chain (mm/ksm.c STABLE_NODE_CHAIN): "any negative
 * number, but better not -1 to be able to reliably detect underflows".
 */
export const STABLE_NODE_CHAIN = -1024;

/**
 * Where a stable node is linked (6.x), the kernel's `head` overlaying the rb_node:
 *   NODE_TREE     an rb node of a stable tree: a regular node, or a chain;
 *   NODE_DUP      a dup on a chain's list (head == STABLE_NODE_DUP_HEAD);
 *   NODE_MIGRATE  on migrate_nodes: its KSM page moved to another NUMA node while
 *                 merge_across_nodes is 0, pending placement in that node's tree
 *                 (head == &migrate_nodes);
 *   NODE_UNLINKED freed, or not linked yet.
 */
export const NODE_UNLINKED = 0;
export const NODE_TREE = 1;
export const NODE_DUP = 2;
export const NODE_MIGRATE = 3;

/** The largest rmap_item age (rmap_age_t is a u8: it saturates at U8_MAX). */
export const RMAP_AGE_MAX = 255;

export function decodeRmapFlags(flags: number): string {
  const parts: string[] = [];
  if ((flags & STABLE_FLAG) !== 0) parts.push('STABLE');
  if ((flags & UNSTABLE_FLAG) !== 0) parts.push('UNSTABLE');
  parts.push(`seq ${flags & SEQNR_MASK}`);
  return parts.join('|');
}

/**
 * rmap_item: KSM's reverse mapping for one virtual page of one mm.
 *
 * - It is on exactly one mm_slot's `rmapList`, which is sorted by address.
 * - It is in at most one tree: the unstable tree while UNSTABLE_FLAG is set (then the
 *   rb fields are valid, and the low bits of `flags` hold the scan's seqnr when it
 *   was inserted), or the stable tree's list of one stable node while STABLE_FLAG is
 *   set (then `head` is that node, `hlistNext/hlistPrev` link it into the node's
 *   list, and `anonVma` holds a reference on the anon_vma its page was mapped by).
 * - `oldchecksum` is the page's checksum when last scanned (0 before the first).
 * - An UNSTABLE rmap_item is at most one full scan old: ksmd visits or frees every
 *   rmap_item in each full scan.
 * - 6.x: `nid` is the NUMA node of the unstable tree holding it (valid while
 *   UNSTABLE_FLAG is set); `age` counts the scans that found it not KSM (smart
 *   scan; saturates at RMAP_AGE_MAX) and `remainingSkips` the scans still to skip.
 */
export interface RmapItem extends RbNode {
  rbParent: RbNode | null;
  rbLeft: RbNode | null;
  rbRight: RbNode | null;
  rbRed: boolean;
  rmapList: RmapItem | null;
  anonVma: AnonVma | null;
  mm: MmStruct;
  address: number;
  flags: number;
  oldchecksum: number;
  head: StableNode | null;
  hlistNext: RmapItem | null;
  hlistPrev: RmapItem | null;
  nid: number;
  age: number;
  remainingSkips: number;
}

/**
 * A new rmap_item, every field set, in one order (alloc_rmap_item()).
 *
 * An object literal rather than a class and `new`, for the garbage collector: V8
 * keeps allocation-site feedback for literals, sees that nearly every rmap_item
 * outlives its first collections (one lives as long as its page stays mapped), and
 * then allocates them straight into the old generation. Objects from `new` always
 * start young, and a full scan's worth of them are each copied by two scavenges
 * before they settle. Measured on ksmpages best, 2x1 GiB: scavenging 120-260 ms
 * with `new`, 40 ms with the literal.
 */
export function newRmapItem(mm: MmStruct, address: number): RmapItem {
  return {
    rbParent: null,
    rbLeft: null,
    rbRight: null,
    rbRed: false,
    rmapList: null,
    anonVma: null,
    mm,
    address,
    flags: 0,
    oldchecksum: 0,
    head: null,
    hlistNext: null,
    hlistPrev: null,
    nid: 0,
    age: 0,
    remainingSkips: 0,
  };
}

/**
 * stable_node: one KSM page in the stable tree; in 6.x also a chain of them.
 *
 * A regular node (2.6.33's only kind):
 * - `kpfn` is the frame of the KSM page. The node holds no reference on it: the
 *   frame is this node's KSM page only while its `mapping` still points back here
 *   (the keyhole, get_ksm_page()); otherwise the node is stale and is removed when
 *   next looked at.
 * - `hlist` heads the list of rmap_items mapping this KSM page (hlist_head.first),
 *   `rmapHlistLen` long (6.x keeps the length; 2.6.33 counts nothing, and the
 *   field stays 0).
 * - Live nodes are ordered by page contents; KSM pages are write-protected, so
 *   their contents, and so the order, never change.
 *
 * 6.x adds two roles, told apart by `rmapHlistLen` and `linked`:
 * - A chain (rmapHlistLen === STABLE_NODE_CHAIN) stands in the tree for a content
 *   with more than one KSM page: `dupHead` lists its dups (hlist_dup), all with the
 *   same contents, each a regular node with its own rmap_items. A chain has no
 *   page: kpfn is -1; `chainPruneTime` is when its dups were last all walked.
 * - A dup (linked NODE_DUP) is a regular node on a chain's list: `chain` is that
 *   chain, `dupNext`/`dupPrev` its links. It is in no tree itself.
 * - A node whose KSM page migrated to another NUMA node while merge_across_nodes is
 *   0 waits on migrate_nodes (linked NODE_MIGRATE, `migrateNext`/`migratePrev`).
 * `nid` is the node of the tree it is linked in (0 with merge_across_nodes 1).
 * A chain may be left with no dup (the keyhole removes a stale dup from its chain,
 * as from a tree) until a search walks it and frees it; a dup is never a chain.
 */
export class StableNode implements RbNode {
  rbParent: RbNode | null;
  rbLeft: RbNode | null;
  rbRight: RbNode | null;
  rbRed: boolean;
  hlist: RmapItem | null;
  kpfn: number;
  rmapHlistLen: number;
  linked: number;
  nid: number;
  /** The merge domain of the mms mapping its page (model-only: pages.ts comparePagesInDomains). */
  domain: string;
  chainPruneTime: number;
  dupHead: StableNode | null;
  chain: StableNode | null;
  dupNext: StableNode | null;
  dupPrev: StableNode | null;
  migrateNext: StableNode | null;
  migratePrev: StableNode | null;

  constructor(kpfn: number) {
    this.rbParent = null;
    this.rbLeft = null;
    this.rbRight = null;
    this.rbRed = false;
    this.hlist = null;
    this.kpfn = kpfn;
    this.rmapHlistLen = 0;
    this.linked = NODE_UNLINKED;
    this.nid = 0;
    this.domain = '';
    this.chainPruneTime = 0;
    this.dupHead = null;
    this.chain = null;
    this.dupNext = null;
    this.dupPrev = null;
    this.migrateNext = null;
    this.migratePrev = null;
  }
}

/** is_stable_node_chain() */
export function isStableNodeChain(node: StableNode): boolean {
  return node.rmapHlistLen === STABLE_NODE_CHAIN;
}

/** is_stable_node_dup() */
export function isStableNodeDup(node: StableNode): boolean {
  return node.linked === NODE_DUP;
}

/**
 * mm_slot: KSM's information about one mm it scans.
 *
 * - Listed in `Ksm.mmSlots` (the hash, keyed by mm) exactly while on the circular
 *   mm list rooted at the head slot (whose `mm` is null), and exactly while the mm
 *   has MMF_VM_MERGEABLE.
 * - While it exists it holds one mm_count reference on its mm (mmgrab), so the mm
 *   outlives its process until ksmd lets go.
 * - `rmapList` is the first rmap_item of this mm, sorted by address. MmSlot and
 *   RmapItem both have a `rmapList` field: the scan cursor keeps "the link to follow"
 *   as the object owning it, as the kernel keeps a `struct rmap_item **`.
 */
export class MmSlot {
  mm: MmStruct | null;
  prev: MmSlot;
  next: MmSlot;
  rmapList: RmapItem | null;

  constructor(mm: MmStruct | null) {
    this.mm = mm;
    this.prev = this;
    this.next = this;
    this.rmapList = null;
  }
}

/** Something with a `rmapList` link: an MmSlot (its first item) or an RmapItem (the next). */
export interface RmapLink {
  rmapList: RmapItem | null;
}
