import type { RbNode } from '../lib/rbtree.js';
import type { MmStruct } from '../mm/mm.js';
import type { AnonVma } from '../mm/vma.js';

/**
 * KSM's three kinds of object (mm/ksm.c, 2.6.33), with the same fields and the same
 * rules. In the kernel the flags live in the low bits of rmap_item->address; here
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
  };
}

/**
 * stable_node: one KSM page in the stable tree.
 *
 * - `kpfn` is the frame of the KSM page. The node holds no reference on it: the
 *   frame is this node's KSM page only while its `mapping` still points back here
 *   (the keyhole, get_ksm_page()); otherwise the node is stale and is removed when
 *   next looked at.
 * - `hlist` heads the list of rmap_items mapping this KSM page (hlist_head.first).
 * - Live nodes are ordered by page contents; KSM pages are write-protected, so
 *   their contents, and so the order, never change.
 */
export class StableNode implements RbNode {
  rbParent: RbNode | null;
  rbLeft: RbNode | null;
  rbRight: RbNode | null;
  rbRed: boolean;
  hlist: RmapItem | null;
  kpfn: number;

  constructor(kpfn: number) {
    this.rbParent = null;
    this.rbLeft = null;
    this.rbRight = null;
    this.rbRed = false;
    this.hlist = null;
    this.kpfn = kpfn;
  }
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
