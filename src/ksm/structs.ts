import { bug } from '../lib/errors.js';
import type { MmStruct } from '../mm/mm.js';

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

/*
 * ---- KSM's records: rmap_items and stable nodes in typed arrays -------------------------
 *
 * mm/ksm.c allocates a struct ksm_rmap_item (64 B) per page it scans and a struct
 * ksm_stable_node per KSM page, from slab caches. As JS objects (an rmap_item of 16
 * fields with its boxed address, a StableNode of 17) they grew the heap by 187 B per
 * rmap_item and 164-202 B per merged page. So, as src/mm/physmem.ts does for frames,
 * each kind is a table of
 * numbered records, one typed array per field (struct of arrays), and a "pointer"
 * to one is its record number. The tables are Ksm.rmapItemCache and
 * Ksm.stableNodeCache, named for the kernel's rmap_item_cache and
 * stable_node_cache slabs.
 *
 * Numbering: record 0 is NULL. A new typed array is all zero, that is all-NULL, and
 * `x !== NULL` reads like the kernel's pointer tests; no record ever has number 0.
 * (The road not taken, -1 as NULL with record 0 in use, would need every array
 * filled with -1 on growth, and a signed array for every link.)
 *
 * Allocation: a table hands out the first record of its free list (freed records,
 * chained through one of their link fields, last freed first, like a slab's
 * freelist), else the next never-used record. When every record is in use it grows
 * by doubling: each array is replaced by one twice as long, the old contents copied
 * (so up to half a table is room not yet used: bench/ksm-metadata.ts reports both).
 * So the hot paths (a new rmap_item per newly scanned page, a stable node per merged
 * pair) allocate nothing but in the rare doubling, amortized O(1) per record, and a
 * table never shrinks (neither does a slab cache's high-water mark, much). Code that
 * holds a table's array in a local must not keep it across an allocation.
 *
 * Unions: fields the kernel overlays in a union share one array here, under each of
 * the kernel's names (the same Int32Array is `rbParent` and `head`): the names say
 * which member is meant, the sharing keeps the record small, and the invariant that
 * says which member is valid is the kernel's.
 *
 * What stays a JS object: an rmap_item's mm and anon_vma are objects of the mm
 * (MmStruct, AnonVma), so the record holds an index into a table of them (Ksm.mmTable,
 * Ksm.anonVmaTable; ObjectTable below). A KSM page's mapping (page->mapping) holds
 * its stable node's record number, a small integer in the frame's mapping slot.
 * A stable node's merge domain (model-only) is a small integer interned per kernel
 * (Ksm.domainId()); comparisons still order domains by name.
 */

// mm/ksm.c struct ksm_rmap_item
//
//   field                kernel                       here (per record)
//   rmap_list            struct ksm_rmap_item *       rmapList       Int32   next on its mm_slot's list; the free list's link when free
//   anon_vma | nid       union { anon_vma *; int }    anonVma | nid  Int32   STABLE: Ksm.anonVmaTable index; UNSTABLE: node of its tree
//   mm                   struct mm_struct *           mm             Int32   Ksm.mmTable index
//   address              unsigned long, low bits flags address       Uint32  page number (address >> 12), low 32 bits
//                                                     addressHigh    Uint8   page number bits 32..39 (a 47-bit address has 35)
//                        (flags in address's low 12)  flags          Uint16  SEQNR_MASK | UNSTABLE_FLAG | STABLE_FLAG
//   oldchecksum          unsigned int                 oldchecksum    Uint32
//   age                  rmap_age_t (u8)              age            Uint8
//   remaining_skips      rmap_age_t (u8)              remainingSkips Uint8
//   node | head+hlist    union { rb_node; {head; hlist_node} }
//                                                     rbParent | head       Int32  UNSTABLE: rb links; STABLE: its stable node,
//                                                     rbLeft | hlistNext    Int32  and the node's list (hlist) links
//                                                     rbRight | hlistPrev   Int32
//                        (colour in rb_parent_color)  rbRed          Uint8
//   38 B a record (the kernel's 64 B: its pointers are 8 B, its rb_node 24).

/** An rmap_item: its record number in Ksm.rmapItemCache (NULL: none). */
export type RmapItem = number;
/** A stable node: its record number in Ksm.stableNodeCache (NULL: none). */
export type StableNode = number;
/** The record number that means "none". */
export const NULL = 0;

/**
 * The first capacity of a record table (records, NULL's included); it doubles from
 * there. 257, not 256: with record 0 taken by NULL, a table of 2^k + 1 slots holds a
 * power of two of records, the sizes benchmarks and hosts come in, without doubling
 * into twice the room for the last one.
 */
const INITIAL_RECORDS = 257;

/** A new typed array of twice `old`'s length, holding `old`'s contents. */
function doubled<T extends Int32Array | Uint32Array | Uint16Array | Uint8Array | Float64Array>(old: T): T {
  const next = new (old.constructor as new (n: number) => T)(old.length * 2);
  next.set(old);
  return next;
}

/**
 * Bytes of one record of a record table: the element sizes of its field arrays, each
 * array once (the members of a union share one).
 */
function recordBytes(table: object): number {
  const arrays = new Set<ArrayBufferView & { BYTES_PER_ELEMENT: number }>();
  for (const v of Object.values(table)) if (ArrayBuffer.isView(v)) arrays.add(v as ArrayBufferView & { BYTES_PER_ELEMENT: number });
  let n = 0;
  for (const a of arrays) n += a.BYTES_PER_ELEMENT;
  return n;
}

/**
 * rmap_item: KSM's reverse mapping for one virtual page of one mm.
 *
 * - It is on exactly one mm_slot's `rmapList`, which is sorted by address.
 * - It is in at most one tree: the unstable tree while UNSTABLE_FLAG is set (then the
 *   rb fields are valid, `nid` is the node of that tree, and the low bits of `flags`
 *   hold the scan's seqnr when it was inserted), or the list of one stable node
 *   while STABLE_FLAG is set (then `head` is that node, `hlistNext/hlistPrev` link it
 *   into the node's list, and `anonVma` holds a reference on the anon_vma its page
 *   was mapped by). With neither flag, `anonVma` is NULL and the link fields are
 *   meaningless (an rb link left from an unstable tree that was thrown away): read
 *   `head` only through headOf().
 * - `oldchecksum` is the page's checksum when last scanned (0 before the first).
 * - An UNSTABLE rmap_item is at most one full scan old: ksmd visits or frees every
 *   rmap_item in each full scan.
 * - 6.x: `age` counts the scans that found it not KSM (smart scan; saturates at
 *   RMAP_AGE_MAX) and `remainingSkips` the scans still to skip.
 * - A free record is on no list but the free list, with every field 0 but `rmapList`.
 */
export class RmapItemCache {
  /** Records in use. */
  count: number;
  /** Records ever handed out (1 + the highest record number used); the next new one. */
  top: number;
  /** The first free record below `top` (freed, its rmapList the next), or NULL. */
  freeList: RmapItem;

  rmapList!: Int32Array;
  anonVma!: Int32Array;
  nid!: Int32Array;
  mm!: Int32Array;
  address!: Uint32Array;
  addressHigh!: Uint8Array;
  flags!: Uint16Array;
  oldchecksum!: Uint32Array;
  age!: Uint8Array;
  remainingSkips!: Uint8Array;
  rbParent!: Int32Array;
  head!: Int32Array;
  rbLeft!: Int32Array;
  hlistNext!: Int32Array;
  rbRight!: Int32Array;
  hlistPrev!: Int32Array;
  rbRed!: Uint8Array;

  constructor() {
    this.count = 0;
    this.top = 1;
    this.freeList = NULL;
    this.setArrays(
      new Int32Array(INITIAL_RECORDS),
      new Int32Array(INITIAL_RECORDS),
      new Int32Array(INITIAL_RECORDS),
      new Uint32Array(INITIAL_RECORDS),
      new Uint8Array(INITIAL_RECORDS),
      new Uint16Array(INITIAL_RECORDS),
      new Uint32Array(INITIAL_RECORDS),
      new Uint8Array(INITIAL_RECORDS),
      new Uint8Array(INITIAL_RECORDS),
      new Int32Array(INITIAL_RECORDS),
      new Int32Array(INITIAL_RECORDS),
      new Int32Array(INITIAL_RECORDS),
      new Uint8Array(INITIAL_RECORDS),
    );
  }

  // Every array, in one order; each union's members get the same array.
  private setArrays(
    rmapList: Int32Array,
    anonVma: Int32Array,
    mm: Int32Array,
    address: Uint32Array,
    addressHigh: Uint8Array,
    flags: Uint16Array,
    oldchecksum: Uint32Array,
    age: Uint8Array,
    remainingSkips: Uint8Array,
    rbParent: Int32Array,
    rbLeft: Int32Array,
    rbRight: Int32Array,
    rbRed: Uint8Array,
  ): void {
    this.rmapList = rmapList;
    this.anonVma = anonVma;
    this.nid = anonVma;
    this.mm = mm;
    this.address = address;
    this.addressHigh = addressHigh;
    this.flags = flags;
    this.oldchecksum = oldchecksum;
    this.age = age;
    this.remainingSkips = remainingSkips;
    this.rbParent = rbParent;
    this.head = rbParent;
    this.rbLeft = rbLeft;
    this.hlistNext = rbLeft;
    this.rbRight = rbRight;
    this.hlistPrev = rbRight;
    this.rbRed = rbRed;
  }

  /** Records the arrays have room for (record 0 included). */
  get capacity(): number {
    return this.rmapList.length;
  }

  /** Bytes of one record, summed over the arrays (a union counted once). */
  static readonly RECORD_BYTES = recordBytes(new RmapItemCache());

  /** alloc_rmap_item(): a record with every field 0 (kmem_cache_zalloc) but mm and address. */
  alloc(mm: number, address: number): RmapItem {
    let r = this.freeList;
    if (r !== NULL) {
      this.freeList = this.rmapList[r]!;
      this.rmapList[r] = NULL;
    } else {
      if (this.top === this.rmapList.length) this.grow();
      r = this.top++;
    }
    this.count++;
    this.mm[r] = mm;
    this.setAddress(r, address);
    return r;
  }

  /** free_rmap_item(): the record goes to the head of the free list, every field 0. */
  free(r: RmapItem): void {
    this.anonVma[r] = 0;
    this.mm[r] = 0;
    this.address[r] = 0;
    this.addressHigh[r] = 0;
    this.flags[r] = 0;
    this.oldchecksum[r] = 0;
    this.age[r] = 0;
    this.remainingSkips[r] = 0;
    this.rbParent[r] = NULL;
    this.rbLeft[r] = NULL;
    this.rbRight[r] = NULL;
    this.rbRed[r] = 0;
    this.rmapList[r] = this.freeList;
    this.freeList = r;
    this.count--;
  }

  private grow(): void {
    this.setArrays(
      doubled(this.rmapList),
      doubled(this.anonVma),
      doubled(this.mm),
      doubled(this.address),
      doubled(this.addressHigh),
      doubled(this.flags),
      doubled(this.oldchecksum),
      doubled(this.age),
      doubled(this.remainingSkips),
      doubled(this.rbParent),
      doubled(this.rbLeft),
      doubled(this.rbRight),
      doubled(this.rbRed),
    );
  }

  /** rmap_item->address & PAGE_MASK: the page-aligned user address. */
  addressOf(r: RmapItem): number {
    return (this.addressHigh[r]! * 0x100000000 + this.address[r]!) * 4096;
  }

  setAddress(r: RmapItem, addr: number): void {
    const page = addr / 4096;
    this.address[r] = page >>> 0;
    this.addressHigh[r] = Math.floor(page / 0x100000000);
  }

  /** rmap_item->head where it is valid (STABLE_FLAG), else NULL. */
  headOf(r: RmapItem): StableNode {
    return (this.flags[r]! & STABLE_FLAG) !== 0 ? this.head[r]! : NULL;
  }
}

// mm/ksm.c struct ksm_stable_node
//
//   field                  kernel                              here (per record)
//   node | head+hlist_dup  union { rb_node; { list_head *head;   rbParent | chain        Int32  TREE: rb links; DUP: its chain,
//        | head+list                { hlist_dup | list } } }      rbLeft | dupNext | migrateNext   Int32  and the chain's list;
//                                                                 rbRight | dupPrev | migratePrev  Int32  MIGRATE: migrate_nodes
//                          (colour in rb_parent_color)            rbRed                  Uint8
//                          (head's value says which member)       linked                 Uint8  NODE_* below
//   hlist                  struct hlist_head                      hlist                  Int32  first rmap_item (a chain: 0)
//                          (a chain's dups: the same hlist)       dupHead                Int32  a chain's first dup
//   kpfn | chain_prune_time union { unsigned long; unsigned long } kpfn                   Int32  (a chain's: -1)
//                                                                 chainPruneTime         Float64
//   rmap_hlist_len         int                                    rmapHlistLen           Int32
//   nid                    int                                    nid                    Uint8
//   (not in Linux)                                                domain                 Uint16 interned merge domain
//   41 B a record. Two of the kernel's unions are not kept. kpfn and chain_prune_time:
//   a time needs a Float64, and kpfn read from a Float64Array is a double that every
//   frame array it indexes must convert (and box, passed to a call not inlined) on the
//   keyhole's hot path; an Int32 kpfn costs 8 B more per KSM page. And dupHead:
//   sharing `hlist` as the kernel does would save 4 B but make every reader of `hlist`
//   ask whether the node is a chain first.

/**
 * stable_node: one KSM page in the stable tree; in 6.x also a chain of them.
 *
 * A regular node (2.6.33's only kind):
 * - `kpfn` is the frame of the KSM page. The node holds no reference on it: the
 *   frame is this node's KSM page only while its `mapping` still holds this node's
 *   number (the keyhole, get_ksm_page()); otherwise the node is stale and is
 *   removed when next looked at.
 * - `hlist` is the first of the rmap_items mapping this KSM page (hlist_head.first),
 *   `rmapHlistLen` long (6.x keeps the length; 2.6.33 counts nothing, and the field
 *   stays 0).
 * - Live nodes are ordered by (merge domain, page contents); KSM pages are
 *   write-protected, so their contents, and so the order, never change.
 *
 * 6.x adds two roles, told apart by `rmapHlistLen` and `linked`:
 * - A chain (rmapHlistLen === STABLE_NODE_CHAIN) stands in the tree for a content
 *   with more than one KSM page: `dupHead` lists its dups (hlist_dup), all with the
 *   same contents, each a regular node with its own rmap_items. A chain has no page:
 *   kpfn is -1; `chainPruneTime` is when its dups were last all walked.
 * - A dup (linked NODE_DUP) is a regular node on a chain's list: `chain` is that
 *   chain, `dupNext`/`dupPrev` its links. It is in no tree itself.
 * - A node whose KSM page migrated to another NUMA node while merge_across_nodes is
 *   0 waits on migrate_nodes (linked NODE_MIGRATE, `migrateNext`/`migratePrev`).
 * `nid` is the node of the tree it is linked in (0 with merge_across_nodes 1).
 * A chain may be left with no dup until a search walks it and frees it; a dup is
 * never a chain. Only the link member that `linked` names is valid; a node changing
 * role leaves the old one (rbErase, unlinkDup, migrateListDel clear it) before it
 * joins the new.
 * - A free record has every field 0 but `hlist`, the free list's link.
 */
export class StableNodeCache {
  count: number;
  top: number;
  freeList: StableNode;

  rbParent!: Int32Array;
  chain!: Int32Array;
  rbLeft!: Int32Array;
  dupNext!: Int32Array;
  migrateNext!: Int32Array;
  rbRight!: Int32Array;
  dupPrev!: Int32Array;
  migratePrev!: Int32Array;
  rbRed!: Uint8Array;
  linked!: Uint8Array;
  hlist!: Int32Array;
  dupHead!: Int32Array;
  kpfn!: Int32Array;
  chainPruneTime!: Float64Array;
  rmapHlistLen!: Int32Array;
  nid!: Uint8Array;
  domain!: Uint16Array;

  constructor() {
    this.count = 0;
    this.top = 1;
    this.freeList = NULL;
    this.setArrays(
      new Int32Array(INITIAL_RECORDS),
      new Int32Array(INITIAL_RECORDS),
      new Int32Array(INITIAL_RECORDS),
      new Uint8Array(INITIAL_RECORDS),
      new Uint8Array(INITIAL_RECORDS),
      new Int32Array(INITIAL_RECORDS),
      new Int32Array(INITIAL_RECORDS),
      new Int32Array(INITIAL_RECORDS),
      new Float64Array(INITIAL_RECORDS),
      new Int32Array(INITIAL_RECORDS),
      new Uint8Array(INITIAL_RECORDS),
      new Uint16Array(INITIAL_RECORDS),
    );
  }

  private setArrays(
    rbParent: Int32Array,
    rbLeft: Int32Array,
    rbRight: Int32Array,
    rbRed: Uint8Array,
    linked: Uint8Array,
    hlist: Int32Array,
    dupHead: Int32Array,
    kpfn: Int32Array,
    chainPruneTime: Float64Array,
    rmapHlistLen: Int32Array,
    nid: Uint8Array,
    domain: Uint16Array,
  ): void {
    this.rbParent = rbParent;
    this.chain = rbParent;
    this.rbLeft = rbLeft;
    this.dupNext = rbLeft;
    this.migrateNext = rbLeft;
    this.rbRight = rbRight;
    this.dupPrev = rbRight;
    this.migratePrev = rbRight;
    this.rbRed = rbRed;
    this.linked = linked;
    this.hlist = hlist;
    this.dupHead = dupHead;
    this.kpfn = kpfn;
    this.chainPruneTime = chainPruneTime;
    this.rmapHlistLen = rmapHlistLen;
    this.nid = nid;
    this.domain = domain;
  }

  get capacity(): number {
    return this.hlist.length;
  }

  /** Bytes of one record, summed over the arrays (a union counted once). */
  static readonly RECORD_BYTES = recordBytes(new StableNodeCache());

  /** alloc_stable_node(): a regular node of KSM page kpfn, unlinked, every other field 0. */
  alloc(kpfn: number): StableNode {
    let n = this.freeList;
    if (n !== NULL) {
      this.freeList = this.hlist[n]!;
      this.hlist[n] = NULL;
    } else {
      if (this.top === this.hlist.length) this.grow();
      n = this.top++;
    }
    this.count++;
    this.kpfn[n] = kpfn;
    return n;
  }

  /** free_stable_node(): to the head of the free list, every field 0. */
  free(n: StableNode): void {
    this.rbParent[n] = NULL;
    this.rbLeft[n] = NULL;
    this.rbRight[n] = NULL;
    this.rbRed[n] = 0;
    this.linked[n] = NODE_UNLINKED;
    this.dupHead[n] = NULL;
    this.kpfn[n] = 0;
    this.chainPruneTime[n] = 0;
    this.rmapHlistLen[n] = 0;
    this.nid[n] = 0;
    this.domain[n] = 0;
    this.hlist[n] = this.freeList;
    this.freeList = n;
    this.count--;
  }

  private grow(): void {
    this.setArrays(
      doubled(this.rbParent),
      doubled(this.rbLeft),
      doubled(this.rbRight),
      doubled(this.rbRed),
      doubled(this.linked),
      doubled(this.hlist),
      doubled(this.dupHead),
      doubled(this.kpfn),
      doubled(this.chainPruneTime),
      doubled(this.rmapHlistLen),
      doubled(this.nid),
      doubled(this.domain),
    );
  }
}

/** is_stable_node_chain() */
export function isStableNodeChain(c: StableNodeCache, node: StableNode): boolean {
  return c.rmapHlistLen[node] === STABLE_NODE_CHAIN;
}

/** is_stable_node_dup() */
export function isStableNodeDup(c: StableNodeCache, node: StableNode): boolean {
  return c.linked[node] === NODE_DUP;
}

/**
 * A table of JS objects named by small integers, for records that point at objects
 * (an rmap_item's mm and anon_vma). 0 is NULL; freed numbers are reused, last freed
 * first. Interning is the caller's: it keeps the number on the object's side (the
 * mm_slot's mmId, the anon_vma's ksmId).
 */
export class ObjectTable<T extends object> {
  readonly objects: (T | null)[];
  private readonly freeIds: number[];

  constructor() {
    this.objects = [null];
    this.freeIds = [];
  }

  add(o: T): number {
    const id = this.freeIds.length > 0 ? this.freeIds.pop()! : this.objects.length;
    if (id === this.objects.length) this.objects.push(o);
    else this.objects[id] = o;
    return id;
  }

  get(id: number): T {
    const o = this.objects[id];
    if (o === null || o === undefined) bug(`expected an object numbered ${id} in the table, found none`);
    return o;
  }

  remove(id: number): void {
    this.objects[id] = null;
    this.freeIds.push(id);
  }

  /** Entries in use. */
  get size(): number {
    return this.objects.length - 1 - this.freeIds.length;
  }
}

/**
 * mm_slot: KSM's information about one mm it scans.
 *
 * - Listed in `Ksm.mmSlots` (the hash, keyed by mm) exactly while on the circular
 *   mm list rooted at the head slot (whose `mm` is null), and exactly while the mm
 *   has MMF_VM_MERGEABLE.
 * - While it exists it holds one mm_count reference on its mm (mmgrab), so the mm
 *   outlives its process until ksmd lets go; and its mm is number `mmId` in
 *   Ksm.mmTable, the number its rmap_items hold (0 for the head).
 * - `rmapList` is the first rmap_item of this mm, sorted by address (NULL: none).
 *   The scan cursor keeps "the link to follow" as an rmap_item, or NULL for the
 *   slot's own rmapList, as the kernel keeps a `struct rmap_item **`.
 */
export class MmSlot {
  mm: MmStruct | null;
  mmId: number;
  prev: MmSlot;
  next: MmSlot;
  rmapList: RmapItem;

  constructor(mm: MmStruct | null, mmId: number) {
    this.mm = mm;
    this.mmId = mmId;
    this.prev = this;
    this.next = this;
    this.rmapList = NULL;
  }
}
