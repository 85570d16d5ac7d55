import { InvariantError, KernelError } from '../lib/errors.js';
import { PAGE_CHECKSUM_BATCH, PageChecksumBatch } from '../lib/jhash.js';
import type { RbNode, RbRoot } from '../lib/rbtree.js';
import {
  PAGE_SIZE,
  PG_ACTIVE,
  PG_BUDDY,
  PG_DIRTY,
  PG_LRU,
  PG_OFFLINE,
  PG_RESERVED,
  PG_UNEVICTABLE,
  PTE_KIND_MASK,
  PTE_MIGRATION,
  PTE_NONE,
  PTE_PRESENT,
  PTE_SPECIAL,
  PTE_SWAP,
  hexAddr,
} from '../mm/constants.js';
import type { VmStat } from '../mm/kernel.js';
import { MmStruct, PTRS_PER_PTE } from '../mm/mm.js';
import { LRU_ACTIVE_ANON, LRU_INACTIVE_ANON, LRU_UNEVICTABLE, type MemoryBlock, type PhysMem } from '../mm/physmem.js';
import { Process } from '../mm/process.js';
import { ULONG_MAX, UINT_MAX } from '../mm/sysfs.js';
import { AnonVma, ShmemFile, Vma } from '../mm/vma.js';
import { Kernel } from './kernel.js';
import { MmSlot, NODE_TREE, StableNode, newRmapItem, type RmapItem } from './structs.js';

/*
 * Snapshots of the whole simulated kernel: saveKernel() turns a Kernel into a
 * KernelImage of plain data, restoreKernel() builds a new Kernel from one that then
 * continues exactly as the saved one would have: the same operations afterwards give
 * the same statistics, the same bytes, the same pfns and the same swap slots.
 *
 * What is kept, and how (the image is plain data: objects refer to each other by
 * their index in a table, never by reference):
 *
 * - Frames. Only frames in use carry metadata and contents. Which frames are free
 *   is said by the free lists, kept per block in their exact order (the allocator
 *   hands out the head first) as runs of consecutive pfns; a frame of an online
 *   block that is on no free list is in use, and the per-frame arrays (flags, count,
 *   mapcount, mapping, index, content) list the frames in use in ascending pfn
 *   order. Frames of an offline block are all free and on no list. Free frames
 *   keep nothing else: their flags, counts and mapping are what freeing sets, and
 *   their bytes are never read before being written (every allocation either zeroes
 *   the frame or copies a page over it). `neverUsed` is kept exactly (as runs), so
 *   that a restored kernel zeroes, and bumps contentsEpoch for, the same frames.
 * - Contents. Each distinct 4 KiB page is stored once, in a content table cut into
 *   chunks of `chunkPages` pages; frames and swap slots refer to it by index. Pages
 *   are told apart by their jhash2 (the KSM checksum, taken from the frame's memo when
 *   valid) and confirmed equal with Buffer.compare. Contents are numbered in the
 *   order they are first met (frames by pfn, then swap slots by offset), which
 *   depends on the bytes only, never on which memos happened to be valid.
 * - Swap. Every slot in use: its swap_map count, its swap-cache frame, and its bytes;
 *   except a slot whose swap-cache page is dirty: those bytes are stale and are
 *   never read (the page is written out before it leaves the swap cache while a swap
 *   pte still needs the slot), so they are not kept. The slot allocator's cursor.
 * - The LRU lists, in order, as runs of pfns.
 * - Objects: anon_vmas (their vma lists in order, ksm_refcount, freed), shmem files
 *   (pages in insertion order), mm_structs with their areas and page tables (tables
 *   in the Map's order, empty ones too), processes in kernel.processes' order, the
 *   pid counter.
 * - KSM: mm_slots in list order with their rmap_lists, every rmap_item's fields,
 *   stable nodes with their hlists in order, both trees' exact shape and colours (a
 *   pre-order walk, one byte per node: left child, right child, red), the scan
 *   cursor, counters and knobs. ksmd's next wakeup and batch count.
 * - Simulated time, the PRNG state, vmstat, contentsEpoch.
 *
 * What is dropped, and why that changes no decision:
 *
 * - Memos of pure functions of page contents: per-frame checksums, KSM's memcmp
 *   memo, the mm's one-entry page-table cache. A restored kernel recomputes them.
 * - rb links of rmap_items that are not in the current unstable tree. KSM throws
 *   the unstable tree away by resetting its root, so the items it held keep stale
 *   links; nothing reads them (an item is relinked by rb_link_node before it is
 *   in a tree again), and they may point at freed items. Restored, they are null.
 * - The scan cursor's link while the cursor is at the list head: the next scan
 *   resets it before any use (it may point at freed memory, as in Linux).
 * - Object ids (mm, anon_vma, shmem): module-wide counters, used in messages only.
 *
 * Not savable: pins (get_user_pages references held by the caller: saveKernel
 * throws EBUSY naming them), and a kernel in the middle of an operation (a page
 * locked by the model itself never outlives a call, so there is none at rest).
 *
 * Binary fields are Uint8Array holding little-endian u32, i32 or f64 arrays, as each
 * field's comment says, rather than Int32Array and friends: msgpackr's default
 * pack() writes only Uint8Array correctly (other typed arrays need its `moreTypes`
 * option, and without it come out garbled), and a Uint8Array travels through any
 * msgpack encoder as plain `bin`.
 */

export const KERNEL_IMAGE_VERSION = 1;

/** Pages per content chunk: 16 MiB, so no single buffer of the image gets huge. */
const CONTENT_CHUNK_PAGES = 4096;

/**
 * Chunks are views into slabs of up to this many chunks (1 GiB). Every ArrayBuffer
 * allocated counts as external memory to V8, which answers growth of it with a full
 * collection; with a big kernel on the heap each costs ~100 ms, and allocating the
 * table 16 MiB at a time (one per chunk) cost a 4 GiB host seconds of them. A slab
 * is sized for the worst case (every remaining page distinct) up to this cap; the
 * pages of it never written are never touched, so they cost address space only.
 */
const SLAB_CHUNKS = 64;

/** Shape byte of a tree node in pre-order: has a left child, a right child, is red. */
const SHAPE_LEFT = 1;
const SHAPE_RIGHT = 2;
const SHAPE_RED = 4;

/** mem.mapping codes: index * 4 + kind. */
const MAP_NONE = 0;
const MAP_ANON = 1;
const MAP_STABLE = 2;
const MAP_SHMEM = 3;

/** x86-64 user address space, as process.ts. */
const TASK_SIZE = 0x800000000000;
const PMD_SIZE = PTRS_PER_PTE * PAGE_SIZE;
const TWO_POW_32 = 0x100000000;

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

// ---- the image -----------------------------------------------------------------------

/** The frames: metadata of those in use, free lists, LRU lists. */
export interface MemImage {
  contentsEpoch: number;
  /** One per memory block. `free`: the block's free list, head first, as runs (i32 pairs: start pfn, +len ascending or -len descending). Empty for an offline block. */
  blocks: { online: boolean; isolated: boolean; free: Uint8Array }[];
  /** neverUsed over every frame, as u32 run lengths alternating 0s and 1s, 0s first. */
  neverUsed: Uint8Array;
  /** Frames in use: every frame of an online block that is on no free list. */
  nrUsed: number;
  /** Per frame in use, in ascending pfn order: u32 page flags. */
  flags: Uint8Array;
  /** i32 _count. */
  count: Uint8Array;
  /** i32 _mapcount (-1: unmapped). */
  mapcount: Uint8Array;
  /** u32 mapping: 0 none, else index * 4 + 1 (anonVmas), 2 (ksm.stableNodes), 3 (shmems). */
  mapping: Uint8Array;
  /** f64 page->index. */
  index: Uint8Array;
  /** u32 index into the content table. */
  content: Uint8Array;
  /** page->private where not 0: u32 pairs (pfn, value). */
  private: Uint8Array;
  /** LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_UNEVICTABLE, head first, as runs like `free`. */
  lru: Uint8Array[];
}

/** Distinct 4 KiB pages; content i is page i % chunkPages of chunks[i / chunkPages]. */
export interface ContentsImage {
  pages: number;
  chunkPages: number;
  /** Each chunkPages * 4096 bytes long, but the last, which holds the rest. */
  chunks: Uint8Array[];
}

/** The swap device's slots in use. */
export interface SwapImage {
  nrSlots: number;
  /** The slot allocator's cursor (cluster_next). */
  next: number;
  /** u32 offsets of the slots in use, ascending. */
  slots: Uint8Array;
  /** Per slot in use: i32 swap_map count. */
  refs: Uint8Array;
  /** i32 swap-cache frame, or -1. */
  cache: Uint8Array;
  /** i32 content index, or -1 for a slot whose swap-cache page is dirty (stale bytes). */
  content: Uint8Array;
}

export interface AnonVmaImage {
  /** Global vma indices (mms in order, each mm's vmas in order), in anon_vma list order. */
  vmas: number[];
  ksmRefcount: number;
  freed: boolean;
}

export interface ShmemImage {
  users: number;
  /** f64 page indices and u32 frames, in the pages Map's order. */
  indices: Uint8Array;
  pfns: Uint8Array;
}

export interface VmaImage {
  start: number;
  end: number;
  flags: number;
  pgoff: number;
  /** Index into anonVmas, or -1. */
  anonVma: number;
  /** Index into shmems, or -1. */
  shmem: number;
}

export interface MmImage {
  owner: string;
  mmUsers: number;
  mmCount: number;
  flags: number;
  vmas: VmaImage[];
  /** f64 pmd numbers (address / 2 MiB) of the page tables, in the Map's order. */
  pmds: Uint8Array;
  /** u32 ptes, 512 per table, tables in `pmds` order. */
  ptes: Uint8Array;
}

export interface ProcessImage {
  pid: number;
  name: string;
  /** Index into mms. */
  mm: number;
}

export interface KsmImage {
  pagesShared: number;
  pagesSharing: number;
  pagesUnshared: number;
  rmapItems: number;
  pagesScanned: number;
  seqnr: number;
  /** Decimal: an unsigned long. */
  maxKernelPages: string;
  pagesToScan: number;
  sleepMillisecs: number;
  run: number;
  offlineLock: boolean;
  /** mm_slots in list order; each owns the next `items` rmap_items, in rmap_list order. */
  slots: { mm: number; items: number }[];
  /** Index into slots of ksm_scan.mm_slot, or -1 for the list head. */
  scanSlot: number;
  scanAddress: number;
  /** ksm_scan.rmap_list: -1 for the slot itself, else the rmap_item whose link it is. */
  scanLink: number;
  /** Per rmap_item: f64 address, u32 flags, u32 oldchecksum, i32 anonVmas index or -1. */
  itemAddress: Uint8Array;
  itemFlags: Uint8Array;
  itemChecksum: Uint8Array;
  itemAnonVma: Uint8Array;
  /** Per stable node: u32 kpfn, u32 hlist length; the hlists concatenated (u32 item indices, first first). */
  nodeKpfn: Uint8Array;
  nodeHlistLength: Uint8Array;
  nodeHlist: Uint8Array;
  /** The stable tree: stable nodes 0..n-1 in pre-order, one shape byte each. */
  stableTree: Uint8Array;
  /** The unstable tree: u32 item indices in pre-order, and a shape byte each. */
  unstableItems: Uint8Array;
  unstableTree: Uint8Array;
}

/**
 * The whole kernel as plain data (see the notes at the top of src/ksm/snapshot.ts).
 * Nothing but numbers, strings, booleans, null, arrays, plain objects and Uint8Array.
 */
export interface KernelImage {
  imageVersion: number;
  options: { memoryMiB: number; swapMiB: number; blockMiB: number; seed: number };
  now: number;
  nextPid: number;
  prng: number[];
  vmstat: VmStat;
  mem: MemImage;
  contents: ContentsImage;
  swap: SwapImage | null;
  anonVmas: AnonVmaImage[];
  shmems: ShmemImage[];
  mms: MmImage[];
  processes: ProcessImage[];
  ksm: KsmImage;
  ksmd: { wakeAt: number | null; batches: number };
}

// ---- small binary helpers ---------------------------------------------------------------

function bytesOf(a: Uint32Array | Int32Array | Float64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** A growable i32/u32 list; `done()` gives the bytes of exactly what was pushed. */
class IntList {
  data: Int32Array;
  n: number;
  constructor(capacity = 16) {
    this.data = new Int32Array(Math.max(4, capacity));
    this.n = 0;
  }
  push(v: number): void {
    if (this.n === this.data.length) {
      const d = new Int32Array(this.data.length * 2);
      d.set(this.data);
      this.data = d;
    }
    this.data[this.n++] = v;
  }
  done(): Uint8Array {
    return bytesOf(this.data.slice(0, this.n));
  }
}

/**
 * A sequence of pfns as runs: (start, +len) for start, start+1, ..; (start, -len) for
 * start, start-1, ... Free lists and LRU lists are mostly such runs (a fresh block's
 * free list is one; pages faulted in order go on an LRU list in order).
 */
class RunWriter {
  private readonly out = new IntList();
  private start = 0;
  private len = 0;
  push(p: number): void {
    const len = this.len;
    if (len !== 0) {
      const start = this.start;
      if (len === 1) {
        if (p === start + 1) {
          this.len = 2;
          return;
        }
        if (p === start - 1) {
          this.len = -2;
          return;
        }
      } else if (p === start + len) {
        // Ascending, the next is start + len; descending (len < 0), start - |len|.
        this.len = len > 0 ? len + 1 : len - 1;
        return;
      }
      this.out.push(start);
      this.out.push(len);
    }
    this.start = p;
    this.len = 1;
  }
  done(): Uint8Array {
    if (this.len !== 0) {
      this.out.push(this.start);
      this.out.push(this.len);
      this.len = 0;
    }
    return this.out.done();
  }
}

// ---- the content table --------------------------------------------------------------------

/** Distinct pages, found by hash and confirmed by Buffer.compare. */
class ContentTable {
  /** Chunk c: CONTENT_CHUNK_PAGES pages from byte 0, a view into a slab. */
  readonly chunks: Buffer[];
  pages: number;
  /** At most this many pages will be interned (frames in use plus swap slots). */
  private readonly maxPages: number;
  private hashes: Uint32Array;
  /** Open addressing: content index + 1, 0 for an empty slot. */
  private slots: Int32Array;
  private mask: number;

  constructor(maxPages: number) {
    this.chunks = [];
    this.pages = 0;
    this.maxPages = maxPages;
    let cap = 1024;
    while (cap < maxPages * 2) cap *= 2;
    this.slots = new Int32Array(cap);
    this.mask = cap - 1;
    this.hashes = new Uint32Array(Math.max(1024, maxPages));
  }

  /** The index of the page at data[off, off + 4096) whose jhash2 is h, added if new. */
  intern(data: Buffer, off: number, h: number): number {
    const mask = this.mask;
    let s = (Math.imul(h, 0x9e3779b1) >>> 0) & mask;
    for (;;) {
      const e = this.slots[s]!;
      if (e === 0) break;
      const i = e - 1;
      if (this.hashes[i] === h) {
        const o = (i % CONTENT_CHUNK_PAGES) * PAGE_SIZE;
        if (data.compare(this.chunks[(i / CONTENT_CHUNK_PAGES) | 0]!, o, o + PAGE_SIZE, off, off + PAGE_SIZE) === 0) return i;
      }
      s = (s + 1) & mask;
    }
    const i = this.pages++;
    if (i % CONTENT_CHUNK_PAGES === 0) this.newChunk(i);
    data.copy(this.chunks[this.chunks.length - 1]!, (i % CONTENT_CHUNK_PAGES) * PAGE_SIZE, off, off + PAGE_SIZE);
    if (i === this.hashes.length) {
      const hs = new Uint32Array(this.hashes.length * 2);
      hs.set(this.hashes);
      this.hashes = hs;
    }
    this.hashes[i] = h;
    this.slots[s] = i + 1;
    if (this.pages * 2 > this.slots.length) this.grow();
    return i;
  }

  /** The chunk for content i onwards: the next part of the slab, or a new slab. */
  private newChunk(i: number): void {
    const c = this.chunks.length;
    if (c % SLAB_CHUNKS !== 0) {
      const prev = this.chunks[c - 1]!;
      const at = prev.byteOffset + prev.byteLength;
      if (at < prev.buffer.byteLength) {
        this.chunks.push(Buffer.from(prev.buffer, at, Math.min(CONTENT_CHUNK_PAGES * PAGE_SIZE, prev.buffer.byteLength - at)));
        return;
      }
    }
    // Worst case, every page still to come is new; a chunk at least, a slab at most.
    const left = Math.max(1, this.maxPages - i);
    const pages = Math.min(SLAB_CHUNKS * CONTENT_CHUNK_PAGES, Math.ceil(left / CONTENT_CHUNK_PAGES) * CONTENT_CHUNK_PAGES);
    const slab = Buffer.allocUnsafeSlow(pages * PAGE_SIZE);
    this.chunks.push(Buffer.from(slab.buffer, slab.byteOffset, Math.min(CONTENT_CHUNK_PAGES * PAGE_SIZE, slab.byteLength)));
  }

  private grow(): void {
    const slots = new Int32Array(this.slots.length * 2);
    const mask = slots.length - 1;
    for (let i = 0; i < this.pages; i++) {
      let s = (Math.imul(this.hashes[i]!, 0x9e3779b1) >>> 0) & mask;
      while (slots[s] !== 0) s = (s + 1) & mask;
      slots[s] = i + 1;
    }
    this.slots = slots;
    this.mask = mask;
  }

  image(): ContentsImage {
    const chunks: Uint8Array[] = [];
    const n = Math.ceil(this.pages / CONTENT_CHUNK_PAGES);
    // A slab used less than half (many duplicates) is copied out to its used size,
    // so the image does not hold on to the rest.
    let copyFrom = n;
    if (n > 0) {
      const last = this.chunks[n - 1]!;
      const slabFirst = n - 1 - ((n - 1) % SLAB_CHUNKS);
      const usedBytes = (this.pages - slabFirst * CONTENT_CHUNK_PAGES) * PAGE_SIZE;
      if (usedBytes * 2 < last.buffer.byteLength) copyFrom = slabFirst;
    }
    for (let c = 0; c < n; c++) {
      const chunk = this.chunks[c]!;
      const bytes = Math.min(CONTENT_CHUNK_PAGES, this.pages - c * CONTENT_CHUNK_PAGES) * PAGE_SIZE;
      chunks.push(c >= copyFrom ? new Uint8Array(chunk.subarray(0, bytes)) : new Uint8Array(chunk.buffer, chunk.byteOffset, bytes));
    }
    return { pages: this.pages, chunkPages: CONTENT_CHUNK_PAGES, chunks };
  }
}

/** Pages hashed a window at a time; the window is then interned in page order. */
const HASH_WINDOW = 64;
const scratchBatch = new PageChecksumBatch();
const scratchBatchPos = new Int32Array(PAGE_CHECKSUM_BATCH);
const scratchWindowHash = new Uint32Array(HASH_WINDOW);
const scratchPage = new Uint32Array(PAGE_SIZE / 4);
const scratchPageBytes = Buffer.from(scratchPage.buffer);

function batchAdd(slot: number, data: Buffer, words: Uint32Array, off: number): void {
  const batch = scratchBatch;
  scratchBatchPos[batch.n] = slot;
  batch.add(data, words, off);
  if (batch.n === PAGE_CHECKSUM_BATCH) batchFlush();
}

function batchFlush(): void {
  const batch = scratchBatch;
  batch.run();
  for (let j = 0; j < batch.n; j++) scratchWindowHash[scratchBatchPos[j]!] = batch.sums[j]!;
  batch.clear();
}

// ---- saving --------------------------------------------------------------------------------

/** Objects numbered in the order they are first met: `list[of(x)]` is x. */
class Numbering<T> {
  readonly index = new Map<T, number>();
  readonly list: T[] = [];
  of(x: T): number {
    let i = this.index.get(x);
    if (i === undefined) {
      i = this.list.length;
      this.index.set(x, i);
      this.list.push(x);
    }
    return i;
  }
}

/** Index tables for the objects, filled as they are met. */
class ObjectTables {
  readonly mms = new Numbering<MmStruct>();
  readonly vmas = new Map<Vma, number>();
  readonly anonVmas = new Numbering<AnonVma>();
  readonly shmems = new Numbering<ShmemFile>();
  readonly nodes = new Numbering<StableNode>();
}

function inconsistent(msg: string): never {
  throw new InvariantError(`saveKernel: the kernel is inconsistent, not saved: ${msg}`);
}

/**
 * The whole kernel as a KernelImage. Reads the kernel only (no memo is filled, no
 * counter moves). Throws KernelError EBUSY while any get_user_pages pin is held.
 */
export function saveKernel(k: Kernel): KernelImage {
  if (!LITTLE_ENDIAN) throw new KernelError('EINVAL', 'kernel snapshots need a little-endian host');
  if (k.pins.size > 0) {
    const pins = [...k.pins].sort((a, b) => a[0] - b[0]).map(([pfn, n]) => (n > 1 ? `${pfn} (x${n})` : String(pfn)));
    throw new KernelError('EBUSY', `cannot save the kernel while pages are pinned (get_user_pages): pfn ${pins.join(', ')}; release the pins first`);
  }
  const t = new ObjectTables();
  const mem = k.mem;
  const ksm = k.ksmEngine;

  // mm_structs: the processes' first, in kernel.processes' order, then those only
  // KSM still holds (exited, their mm_slot not yet freed).
  const processes: ProcessImage[] = [];
  for (const p of k.processes.values()) {
    if (!p.alive) inconsistent(`process ${p.name} (pid ${p.pid}) has exited but is listed`);
    if (t.mms.index.has(p.mm)) inconsistent(`two processes share mm ${p.mm.describe()}`);
    processes.push({ pid: p.pid, name: p.name, mm: t.mms.of(p.mm) });
  }
  for (let s = ksm.mmHead.next; s !== ksm.mmHead; s = s.next) t.mms.of(s.mm!);
  if (ksm.mmHead.rmapList !== null) inconsistent('the mm_slot list head has rmap_items');

  // Areas, and through them anon_vmas and shmem files.
  const mms: MmImage[] = [];
  for (const mm of t.mms.list) {
    const vmas: VmaImage[] = [];
    for (const vma of mm.vmas) {
      if (vma.mm !== mm) inconsistent(`${vma} is listed by ${mm.describe()}`);
      t.vmas.set(vma, t.vmas.size);
      vmas.push({
        start: vma.start,
        end: vma.end,
        flags: vma.flags,
        pgoff: vma.pgoff,
        anonVma: vma.anonVma === null ? -1 : t.anonVmas.of(vma.anonVma),
        shmem: vma.shmem === null ? -1 : t.shmems.of(vma.shmem),
      });
    }
    const pmds = new Float64Array(mm.pgtables.size);
    const ptes = new Uint32Array(mm.pgtables.size * PTRS_PER_PTE);
    let i = 0;
    for (const [pmd, table] of mm.pgtables) {
      pmds[i] = pmd;
      ptes.set(table, i * PTRS_PER_PTE);
      i++;
    }
    mms.push({ owner: mm.owner, mmUsers: mm.mmUsers, mmCount: mm.mmCount, flags: mm.flags, vmas, pmds: bytesOf(pmds), ptes: bytesOf(ptes) });
  }

  // KSM: slots and rmap_items in list order.
  const slotList: MmSlot[] = [];
  let nItems = 0;
  for (let s = ksm.mmHead.next; s !== ksm.mmHead; s = s.next) {
    slotList.push(s);
    for (let it = s.rmapList; it !== null; it = it.rmapList) nItems++;
  }
  const itemIndex = new Map<RmapItem, number>();
  const itemAddress = new Float64Array(nItems);
  const itemFlags = new Uint32Array(nItems);
  const itemChecksum = new Uint32Array(nItems);
  const itemAnonVma = new Int32Array(nItems);
  const slots: { mm: number; items: number }[] = [];
  const slotFirst: number[] = [];
  let withHead = 0;
  let n = 0;
  for (const s of slotList) {
    slotFirst.push(n);
    const first = n;
    for (let it = s.rmapList; it !== null; it = it.rmapList) {
      if (it.mm !== s.mm) inconsistent(`rmap_item ${ksm.describeItem(it)} is on the rmap_list of ${s.mm!.owner}`);
      itemIndex.set(it, n);
      itemAddress[n] = it.address;
      itemFlags[n] = it.flags;
      itemChecksum[n] = it.oldchecksum;
      itemAnonVma[n] = it.anonVma === null ? -1 : t.anonVmas.of(it.anonVma);
      if (it.head !== null) withHead++;
      n++;
    }
    slots.push({ mm: t.mms.of(s.mm!), items: n - first });
  }

  // The stable tree in pre-order: its nodes are stable nodes 0..len-1.
  const stableTree = preorder(ksm.rootStableTree, (node) => t.nodes.of(node as StableNode), 'stable tree');
  // The unstable tree, over rmap_items.
  const unstableItems = new IntList();
  const unstableTree = preorder(
    ksm.rootUnstableTree,
    (node) => {
      const i = itemIndex.get(node as RmapItem);
      if (i === undefined) inconsistent(`the unstable tree holds rmap_item ${ksm.describeItem(node as RmapItem)}, which is on no rmap_list`);
      unstableItems.push(i);
      return i;
    },
    'unstable tree',
  );

  // Frames. First which are free: the free lists, in order.
  const nrFrames = mem.nrFrames;
  const free = new Uint8Array(nrFrames);
  const blocks: MemImage['blocks'] = [];
  for (const block of mem.blocks) {
    const runs = new RunWriter();
    let listed = 0;
    const end = block.startPfn + mem.framesIn(block);
    for (let p = block.freeHead; p >= 0; p = mem.lruNext[p]!) {
      if (p < block.startPfn || p >= end || free[p] !== 0 || (mem.flags[p]! & PG_BUDDY) === 0) inconsistent(`memory${block.index}'s free list holds pfn ${p}`);
      free[p] = 1;
      runs.push(p);
      listed++;
    }
    if (listed !== block.nrFree) inconsistent(`memory${block.index} counts ${block.nrFree} free frames, its list holds ${listed}`);
    if (!block.online) {
      if (listed !== 0) inconsistent(`offline memory${block.index} has a free list`);
      free.fill(1, block.startPfn, end);
    }
    blocks.push({ online: block.online, isolated: block.isolated, free: runs.done() });
  }
  let nrUsed = 0;
  for (let p = 0; p < nrFrames; p++) if (free[p] === 0) nrUsed++;
  const usedPfns = new Int32Array(nrUsed);
  for (let p = 0, u = 0; p < nrFrames; p++) if (free[p] === 0) usedPfns[u++] = p;

  const flags = new Uint32Array(nrUsed);
  const count = new Int32Array(nrUsed);
  const mapcount = new Int32Array(nrUsed);
  const mapping = new Uint32Array(nrUsed);
  const index = new Float64Array(nrUsed);
  const content = new Uint32Array(nrUsed);
  const priv = new IntList();
  for (let u = 0; u < nrUsed; u++) {
    const pfn = usedPfns[u]!;
    const f = mem.flags[pfn]!;
    if ((f & (PG_BUDDY | PG_OFFLINE)) !== 0) inconsistent(`${mem.describe(pfn)} is on no free list`);
    flags[u] = f;
    count[u] = mem.count[pfn]!;
    mapcount[u] = mem.mapcount[pfn]!;
    index[u] = mem.index[pfn]!;
    const m = mem.mapping[pfn]!;
    if (m === null) mapping[u] = MAP_NONE;
    else if (m instanceof AnonVma) mapping[u] = t.anonVmas.of(m) * 4 + MAP_ANON;
    else if (m instanceof StableNode) mapping[u] = t.nodes.of(m) * 4 + MAP_STABLE;
    else if (m instanceof ShmemFile) mapping[u] = t.shmems.of(m) * 4 + MAP_SHMEM;
    else inconsistent(`${mem.describe(pfn)} has a mapping that is no anon_vma, stable node or shmem file`);
    if (mem.private[pfn] !== 0) {
      priv.push(pfn);
      priv.push(mem.private[pfn]!);
    }
  }

  // Contents: frames in use by pfn, then swap slots by offset.
  const sw = k.swap;
  const swapSlots = new IntList();
  if (sw !== null) for (let off = 1; off <= sw.nrSlots; off++) if (sw.refs[off]! > 0 || sw.cache[off] !== -1) swapSlots.push(off);
  const table = new ContentTable(nrUsed + swapSlots.n);
  internFrames(mem, usedPfns, content, table);
  let swap: SwapImage | null = null;
  if (sw !== null) {
    const ns = swapSlots.n;
    const offs = swapSlots.data;
    const refs = new Int32Array(ns);
    const cache = new Int32Array(ns);
    const slotContent = new Int32Array(ns);
    for (let i = 0; i < ns; i++) {
      const off = offs[i]!;
      refs[i] = sw.refs[off]!;
      cache[i] = sw.cache[off]!;
    }
    internSlots(k, offs, ns, cache, slotContent, table);
    swap = {
      nrSlots: sw.nrSlots,
      next: sw.next,
      slots: bytesOf(offs.slice(0, ns)),
      refs: bytesOf(refs),
      cache: bytesOf(cache),
      content: bytesOf(slotContent),
    };
  }

  // LRU lists.
  const lru: Uint8Array[] = [];
  for (let l = 0; l < 3; l++) {
    const runs = new RunWriter();
    let walked = 0;
    for (let p = mem.lruHead[l]!; p >= 0; p = mem.lruNext[p]!) {
      if (++walked > nrFrames || free[p] !== 0) inconsistent(`LRU list ${l} is broken at pfn ${p}`);
      runs.push(p);
    }
    if (walked !== mem.lruSize[l]) inconsistent(`LRU list ${l} has size ${mem.lruSize[l]}, ${walked} frames on it`);
    lru.push(runs.done());
  }

  // neverUsed, as alternating run lengths.
  const never = new IntList();
  {
    let bit = 0;
    let len = 0;
    for (let p = 0; p < nrFrames; p++) {
      if (mem.neverUsed[p] === bit) len++;
      else {
        never.push(len);
        bit ^= 1;
        len = 1;
      }
    }
    never.push(len);
  }

  // Stable nodes met through rmap_items' heads, then the hlists of all.
  const nodeHlist = new IntList();
  const nodeLengths: number[] = [];
  let inHlists = 0;
  for (let i = 0; i < t.nodes.list.length; i++) {
    const node = t.nodes.list[i]!;
    let len = 0;
    let prev: RmapItem | null = null;
    for (let it = node.hlist; it !== null; it = it.hlistNext) {
      const idx = itemIndex.get(it);
      if (idx === undefined) inconsistent(`stable node kpfn=${node.kpfn} lists rmap_item ${ksm.describeItem(it)}, which is on no rmap_list`);
      if (it.head !== node || it.hlistPrev !== prev) inconsistent(`hlist of stable node kpfn=${node.kpfn} broken at ${ksm.describeItem(it)}`);
      if (++len > nItems) inconsistent(`hlist of stable node kpfn=${node.kpfn} has a cycle`);
      nodeHlist.push(idx);
      prev = it;
    }
    nodeLengths.push(len);
    inHlists += len;
  }
  if (inHlists !== withHead) inconsistent(`${withHead} rmap_items have a stable node, ${inHlists} are on stable nodes' hlists`);
  const nodeKpfn = new Uint32Array(t.nodes.list.length);
  for (let i = 0; i < t.nodes.list.length; i++) nodeKpfn[i] = t.nodes.list[i]!.kpfn;

  // The scan cursor.
  let scanSlot = -1;
  let scanLink = -1;
  if (ksm.scanSlot !== ksm.mmHead) {
    scanSlot = slotList.indexOf(ksm.scanSlot);
    if (scanSlot < 0) inconsistent('the scan cursor is on an mm_slot that is not listed');
    if (ksm.scanLink !== ksm.scanSlot) {
      const i = itemIndex.get(ksm.scanLink as RmapItem);
      if (i === undefined || i < slotFirst[scanSlot]! || i >= slotFirst[scanSlot]! + slots[scanSlot]!.items) {
        inconsistent('the scan cursor links to an rmap_item that is not on its mm_slot\'s list');
      }
      scanLink = i;
    }
  }

  // anon_vmas and shmem files, now that all have been met.
  const anonVmas: AnonVmaImage[] = t.anonVmas.list.map((av) => ({
    vmas: av.vmas.map((vma) => {
      const i = t.vmas.get(vma);
      if (i === undefined) inconsistent(`anon_vma ${av.id} lists ${vma}, which no mm maps`);
      return i;
    }),
    ksmRefcount: av.ksmRefcount,
    freed: av.freed,
  }));
  const shmems: ShmemImage[] = t.shmems.list.map((f) => {
    const indices = new Float64Array(f.pages.size);
    const pfns = new Uint32Array(f.pages.size);
    let i = 0;
    for (const [idx, pfn] of f.pages) {
      indices[i] = idx;
      pfns[i] = pfn;
      i++;
    }
    return { users: f.users, indices: bytesOf(indices), pfns: bytesOf(pfns) };
  });

  return {
    imageVersion: KERNEL_IMAGE_VERSION,
    options: { memoryMiB: k.options.memoryMiB, swapMiB: k.options.swapMiB, blockMiB: k.options.blockMiB, seed: k.options.seed },
    now: k.now,
    nextPid: k.nextPid,
    prng: k.prng.getState(),
    vmstat: { ...k.vmstat },
    mem: {
      contentsEpoch: mem.contentsEpoch,
      blocks,
      neverUsed: never.done(),
      nrUsed,
      flags: bytesOf(flags),
      count: bytesOf(count),
      mapcount: bytesOf(mapcount),
      mapping: bytesOf(mapping),
      index: bytesOf(index),
      content: bytesOf(content),
      private: priv.done(),
      lru,
    },
    contents: table.image(),
    swap,
    anonVmas,
    shmems,
    mms,
    processes,
    ksm: {
      pagesShared: ksm.pagesShared,
      pagesSharing: ksm.pagesSharing,
      pagesUnshared: ksm.pagesUnshared,
      rmapItems: ksm.rmapItems,
      pagesScanned: ksm.pagesScanned,
      seqnr: ksm.seqnr,
      maxKernelPages: ksm.maxKernelPages.toString(),
      pagesToScan: ksm.pagesToScan,
      sleepMillisecs: ksm.sleepMillisecs,
      run: ksm.run,
      offlineLock: ksm.offlineLock,
      slots,
      scanSlot,
      scanAddress: ksm.scanAddress,
      scanLink,
      itemAddress: bytesOf(itemAddress),
      itemFlags: bytesOf(itemFlags),
      itemChecksum: bytesOf(itemChecksum),
      itemAnonVma: bytesOf(itemAnonVma),
      nodeKpfn: bytesOf(nodeKpfn),
      nodeHlistLength: bytesOf(Uint32Array.from(nodeLengths)),
      nodeHlist: nodeHlist.done(),
      stableTree,
      unstableItems: unstableItems.done(),
      unstableTree,
    },
    ksmd: { wakeAt: k.ksmd.wakeAt, batches: k.ksmd.batches },
  };
}

/** A tree's shape in pre-order (node, left subtree, right subtree), visiting each node. */
function preorder(root: RbRoot, visit: (n: RbNode) => number, what: string): Uint8Array {
  const stack: RbNode[] = [];
  if (root.node !== null) {
    if (root.node.rbParent !== null) inconsistent(`${what}: the root has a parent`);
    stack.push(root.node);
  }
  const out: number[] = [];
  while (stack.length > 0) {
    const n = stack.pop()!;
    visit(n);
    out.push((n.rbLeft !== null ? SHAPE_LEFT : 0) | (n.rbRight !== null ? SHAPE_RIGHT : 0) | (n.rbRed ? SHAPE_RED : 0));
    if (n.rbRight !== null) {
      if (n.rbRight.rbParent !== n) inconsistent(`${what}: a right child does not point back to its parent`);
      stack.push(n.rbRight);
    }
    if (n.rbLeft !== null) {
      if (n.rbLeft.rbParent !== n) inconsistent(`${what}: a left child does not point back to its parent`);
      stack.push(n.rbLeft);
    }
  }
  return Uint8Array.from(out);
}

/** content[u] = the content index of frame usedPfns[u], interning new pages. */
function internFrames(mem: PhysMem, usedPfns: Int32Array, content: Uint32Array, table: ContentTable): void {
  const n = usedPfns.length;
  const hash = scratchWindowHash;
  scratchBatch.clear();
  for (let base = 0; base < n; base += HASH_WINDOW) {
    const w = Math.min(HASH_WINDOW, n - base);
    for (let i = 0; i < w; i++) {
      const pfn = usedPfns[base + i]!;
      if (mem.checksumValid[pfn] !== 0) hash[i] = mem.checksumMemo[pfn]!;
      else batchAdd(i, mem.dataOf(pfn), mem.wordsOf(pfn), mem.offsetOf(pfn));
    }
    batchFlush();
    for (let i = 0; i < w; i++) {
      const pfn = usedPfns[base + i]!;
      content[base + i] = table.intern(mem.dataOf(pfn), mem.offsetOf(pfn), hash[i]!);
    }
  }
}

/** slotContent[i] for the ns slots offs[0..ns): a content index, or -1 (dirty swap-cache page). */
function internSlots(k: Kernel, offs: Int32Array, ns: number, cache: Int32Array, slotContent: Int32Array, table: ContentTable): void {
  const sw = k.swap!;
  const mem = k.mem;
  const data = sw.data;
  const aligned = data.byteOffset % 4 === 0;
  const words = aligned ? new Uint32Array(data.buffer, data.byteOffset, data.length >>> 2) : scratchPage;
  const hash = scratchWindowHash;
  scratchBatch.clear();
  for (let base = 0; base < ns; base += HASH_WINDOW) {
    const w = Math.min(HASH_WINDOW, ns - base);
    for (let i = 0; i < w; i++) {
      const off = offs[base + i]!;
      const c = cache[base + i]!;
      // A dirty swap-cache page has not been written to its slot since it changed:
      // the slot's bytes are stale, and are never read before being written.
      if (c !== -1 && (mem.flags[c]! & PG_DIRTY) !== 0) continue;
      const at = (off - 1) * PAGE_SIZE;
      if (aligned) batchAdd(i, data, words, at);
      else {
        batchFlush();
        data.copy(scratchPageBytes, 0, at, at + PAGE_SIZE);
        batchAdd(i, scratchPageBytes, scratchPage, 0);
        batchFlush();
      }
    }
    batchFlush();
    for (let i = 0; i < w; i++) {
      const off = offs[base + i]!;
      const c = cache[base + i]!;
      if (c !== -1 && (mem.flags[c]! & PG_DIRTY) !== 0) slotContent[base + i] = -1;
      else slotContent[base + i] = table.intern(data, (off - 1) * PAGE_SIZE, hash[i]!);
    }
  }
}

// ---- checking an untrusted image ---------------------------------------------------------

/** A problem with an image, named by the field's path. */
class ImageError extends Error {}

function fail(path: string, msg: string): never {
  throw new ImageError(`${path}: ${msg}`);
}

function found(x: unknown): string {
  if (x === null) return 'null';
  if (x === undefined) return 'nothing (the field is missing)';
  if (Array.isArray(x)) return `an array of ${x.length}`;
  if (x instanceof Uint8Array) return `${x.byteLength} bytes`;
  if (ArrayBuffer.isView(x)) return `a ${x.constructor.name}`;
  if (typeof x === 'string') return `the string ${JSON.stringify(x.length > 40 ? `${x.slice(0, 40)}...` : x)}`;
  if (typeof x === 'object') return 'an object';
  return `${typeof x} ${String(x)}`;
}

function obj(x: unknown, path: string): Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x) || ArrayBuffer.isView(x)) fail(path, `expected an object, found ${found(x)}`);
  return x as Record<string, unknown>;
}

function int(x: unknown, path: string, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min || x > max) fail(path, `expected an integer in [${min}, ${max}], found ${found(x)}`);
  return x;
}

function finite(x: unknown, path: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x)) fail(path, `expected a finite number, found ${found(x)}`);
  return x;
}

function bool(x: unknown, path: string): boolean {
  if (typeof x !== 'boolean') fail(path, `expected a boolean, found ${found(x)}`);
  return x;
}

function str(x: unknown, path: string): string {
  if (typeof x !== 'string') fail(path, `expected a string, found ${found(x)}`);
  return x;
}

function array(x: unknown, path: string, length?: number): unknown[] {
  if (!Array.isArray(x)) fail(path, `expected an array, found ${found(x)}`);
  if (length !== undefined && x.length !== length) fail(path, `expected an array of ${length}, found an array of ${x.length}`);
  return x;
}

function bytes(x: unknown, path: string): Uint8Array {
  if (!(x instanceof Uint8Array)) fail(path, `expected bytes (a Uint8Array), found ${found(x)}`);
  return x;
}

type WordArray<T> = { new (n: number): T; new (buffer: ArrayBuffer, byteOffset: number, length: number): T; readonly BYTES_PER_ELEMENT: number };

/** A little-endian typed array held in bytes: a view when aligned, else a copy. */
function words<T>(x: unknown, path: string, ctor: WordArray<T>, what: string, length?: number): T {
  const b = bytes(x, path);
  const size = ctor.BYTES_PER_ELEMENT;
  if (b.byteLength % size !== 0) fail(path, `expected ${what} values (${size} bytes each), found ${b.byteLength} bytes`);
  const n = b.byteLength / size;
  if (length !== undefined && n !== length) fail(path, `expected ${length} ${what} values (${length * size} bytes), found ${n} (${b.byteLength} bytes)`);
  if (b.byteOffset % size === 0) return new ctor(b.buffer as ArrayBuffer, b.byteOffset, n);
  const copy = new Uint8Array(b.byteLength);
  copy.set(b);
  return new ctor(copy.buffer, 0, n);
}

const u32s = (x: unknown, path: string, length?: number): Uint32Array => words(x, path, Uint32Array, 'u32', length);
const i32s = (x: unknown, path: string, length?: number): Int32Array => words(x, path, Int32Array, 'i32', length);
const f64s = (x: unknown, path: string, length?: number): Float64Array => words(x, path, Float64Array, 'f64', length);

/** Every field of VmStat, so that a field added there must be added here. */
const VMSTAT_FIELDS: Record<keyof VmStat, true> = {
  pswpin: true,
  pswpout: true,
  pgmigrate_success: true,
  pgmigrate_fail: true,
  ksm_swpin_copy: true,
  pgfault: true,
  pgmajfault: true,
  cow_faults: true,
};
const VMSTAT_KEYS = Object.keys(VMSTAT_FIELDS) as (keyof VmStat)[];

/**
 * Expand runs (see RunWriter) into the pfns they stand for, each in [lo, hi), at
 * most `max` of them.
 */
function expandRuns(x: unknown, path: string, lo: number, hi: number, max: number): Int32Array {
  const runs = i32s(x, path);
  if (runs.length % 2 !== 0) fail(path, `expected (start, length) pairs, found ${runs.length} numbers`);
  let total = 0;
  for (let r = 0; r < runs.length; r += 2) {
    const start = runs[r]!;
    const len = runs[r + 1]!;
    const last = start + (len > 0 ? len - 1 : len + 1);
    if (len === 0) fail(`${path}[${r / 2}]`, 'a run of length 0');
    if (start < lo || start >= hi || last < lo || last >= hi) fail(`${path}[${r / 2}]`, `frames ${start}..${last} are out of range: expected pfns in [${lo}, ${hi})`);
    total += Math.abs(len);
    if (total > max) fail(path, `lists more than the ${max} frames there can be`);
  }
  const out = new Int32Array(total);
  let o = 0;
  for (let r = 0; r < runs.length; r += 2) {
    const start = runs[r]!;
    const len = runs[r + 1]!;
    if (len > 0) for (let i = 0; i < len; i++) out[o++] = start + i;
    else for (let i = 0; i < -len; i++) out[o++] = start - i;
  }
  return out;
}

/** That a pre-order shape sequence describes one binary tree of exactly its length. */
function checkShape(shape: Uint8Array, path: string): void {
  let open = shape.length > 0 ? 1 : 0;
  for (let i = 0; i < shape.length; i++) {
    const s = shape[i]!;
    if (s > (SHAPE_LEFT | SHAPE_RIGHT | SHAPE_RED)) fail(`${path}[${i}]`, `expected a shape byte (0-7), found ${s}`);
    if (open === 0) fail(path, `the tree is complete after ${i} nodes, but ${shape.length} are listed`);
    open += ((s & SHAPE_LEFT) !== 0 ? 1 : 0) + ((s & SHAPE_RIGHT) !== 0 ? 1 : 0) - 1;
  }
  if (open !== 0) fail(path, `${open} child link(s) left with no node after all ${shape.length} nodes`);
}

/** What an image decodes to: its typed arrays as views (or aligned copies), and derived facts. */
interface Decoded {
  img: KernelImage;
  freeLists: Int32Array[];
  usedPfns: Int32Array;
  neverUsed: Uint32Array;
  flags: Uint32Array;
  count: Int32Array;
  mapcount: Int32Array;
  mapping: Uint32Array;
  index: Float64Array;
  content: Uint32Array;
  priv: Uint32Array;
  lru: Int32Array[];
  chunks: Buffer[];
  chunkPages: number;
  swap: { slots: Uint32Array; refs: Int32Array; cache: Int32Array; content: Int32Array } | null;
  shmems: { indices: Float64Array; pfns: Uint32Array }[];
  mms: { pmds: Float64Array; ptes: Uint32Array }[];
  itemAddress: Float64Array;
  itemFlags: Uint32Array;
  itemChecksum: Uint32Array;
  itemAnonVma: Int32Array;
  nodeKpfn: Uint32Array;
  nodeHlistLength: Uint32Array;
  nodeHlist: Uint32Array;
  stableTree: Uint8Array;
  unstableItems: Uint32Array;
  unstableTree: Uint8Array;
}

/**
 * Check an untrusted image field by field and decode it; throws ImageError naming
 * the first field that is missing, of the wrong type, out of range, or that refers
 * to something that is not there. What it accepts, restore can build without
 * failing. It checks structure and references, not every count against a recount:
 * that is what checkInvariants() does.
 */
function decode(x: unknown): Decoded {
  if (!LITTLE_ENDIAN) fail('image', 'kernel snapshots need a little-endian host');
  const img = obj(x, 'image');
  if (img.imageVersion !== KERNEL_IMAGE_VERSION) fail('imageVersion', `expected ${KERNEL_IMAGE_VERSION}, found ${found(img.imageVersion)}`);

  // ---- options, time, pids, prng, vmstat ----
  const o = obj(img.options, 'options');
  const blockMiB = int(o.blockMiB, 'options.blockMiB', 1, 1 << 20);
  if ((blockMiB & (blockMiB - 1)) !== 0) fail('options.blockMiB', `expected a power of two, found ${blockMiB}`);
  const memoryMiB = int(o.memoryMiB, 'options.memoryMiB', blockMiB, 256 * 1024);
  if (memoryMiB % blockMiB !== 0) fail('options.memoryMiB', `expected a multiple of blockMiB (${blockMiB}), found ${memoryMiB}`);
  const swapMiB = int(o.swapMiB, 'options.swapMiB', 0, 256 * 1024 - 1);
  int(o.seed, 'options.seed', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  const nrFrames = (memoryMiB * 1024 * 1024) / PAGE_SIZE;
  const blockPages = (blockMiB * 1024 * 1024) / PAGE_SIZE;
  const nBlocks = memoryMiB / blockMiB;
  const nrSlots = (swapMiB * 1024 * 1024) / PAGE_SIZE;
  const now = finite(img.now, 'now');
  if (now < 0) fail('now', `expected a time >= 0, found ${now}`);
  const nextPid = int(img.nextPid, 'nextPid', 1, Number.MAX_SAFE_INTEGER);
  const prng = array(img.prng, 'prng', 4);
  prng.forEach((w, i) => int(w, `prng[${i}]`, 0, TWO_POW_32 - 1));
  const vmstat = obj(img.vmstat, 'vmstat');
  for (const key of VMSTAT_KEYS) int(vmstat[key], `vmstat.${key}`, 0, Number.MAX_SAFE_INTEGER);

  // ---- table sizes, needed to check references ----
  const anonVmasImg = array(img.anonVmas, 'anonVmas');
  const shmemsImg = array(img.shmems, 'shmems');
  const mmsImg = array(img.mms, 'mms');
  const k = obj(img.ksm, 'ksm');
  const nodeKpfn = u32s(k.nodeKpfn, 'ksm.nodeKpfn');
  const nNodes = nodeKpfn.length;
  const c = obj(img.contents, 'contents');
  const pages = int(c.pages, 'contents.pages', 0, 0x7fffffff);
  const chunkPages = int(c.chunkPages, 'contents.chunkPages', 1, 1 << 20);
  const chunksImg = array(c.chunks, 'contents.chunks', Math.ceil(pages / chunkPages));
  const chunks: Buffer[] = chunksImg.map((ch, i) => {
    const b = bytes(ch, `contents.chunks[${i}]`);
    const want = Math.min(chunkPages, pages - i * chunkPages);
    if (b.byteLength !== want * PAGE_SIZE) {
      fail(`contents.chunks[${i}]`, `the content table is truncated or padded: expected ${want * PAGE_SIZE} bytes (${want} pages), found ${b.byteLength}`);
    }
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  });

  // ---- frames: free lists first, which says which frames are in use ----
  const m = obj(img.mem, 'mem');
  int(m.contentsEpoch, 'mem.contentsEpoch', 0, Number.MAX_SAFE_INTEGER);
  const blocksImg = array(m.blocks, 'mem.blocks', nBlocks);
  const free = new Uint8Array(nrFrames); // 1: free or offline
  const freeLists: Int32Array[] = [];
  for (let b = 0; b < nBlocks; b++) {
    const path = `mem.blocks[${b}]`;
    const bi = obj(blocksImg[b], path);
    const online = bool(bi.online, `${path}.online`);
    const isolated = bool(bi.isolated, `${path}.isolated`);
    if (isolated && !online) fail(`${path}.isolated`, 'an offline block cannot be isolated');
    const start = b * blockPages;
    const end = Math.min(start + blockPages, nrFrames);
    const list = expandRuns(bi.free, `${path}.free`, start, end, end - start);
    if (!online && list.length > 0) fail(`${path}.free`, 'an offline block has no free list');
    for (let i = 0; i < list.length; i++) {
      const p = list[i]!;
      if (free[p] !== 0) fail(`${path}.free`, `pfn ${p} is listed twice`);
      free[p] = 1;
    }
    if (!online) free.fill(1, start, end);
    freeLists.push(list);
  }
  const neverUsed = u32s(m.neverUsed, 'mem.neverUsed');
  let neverTotal = 0;
  for (let i = 0; i < neverUsed.length; i++) neverTotal += neverUsed[i]!;
  if (neverTotal !== nrFrames) fail('mem.neverUsed', `the runs cover ${neverTotal} frames, expected ${nrFrames}`);
  const nrUsed = int(m.nrUsed, 'mem.nrUsed', 0, nrFrames);
  let used = 0;
  for (let p = 0; p < nrFrames; p++) if (free[p] === 0) used++;
  if (used !== nrUsed) fail('mem.nrUsed', `the free lists leave ${used} frames in use, the image says ${nrUsed}`);
  if (free[0] !== 0) fail('mem.blocks[0].free', 'pfn 0, the zero page, must stay in use');
  const usedPfns = new Int32Array(nrUsed);
  for (let p = 0, u = 0; p < nrFrames; p++) if (free[p] === 0) usedPfns[u++] = p;

  const flags = u32s(m.flags, 'mem.flags', nrUsed);
  const count = i32s(m.count, 'mem.count', nrUsed);
  const mapcount = i32s(m.mapcount, 'mem.mapcount', nrUsed);
  const mapping = u32s(m.mapping, 'mem.mapping', nrUsed);
  const index = f64s(m.index, 'mem.index', nrUsed);
  const content = u32s(m.content, 'mem.content', nrUsed);
  const tableSize = [0, anonVmasImg.length, nNodes, shmemsImg.length];
  const tableName = ['', 'anonVmas', 'ksm.nodeKpfn (stable nodes)', 'shmems'];
  let onLru = 0;
  for (let u = 0; u < nrUsed; u++) {
    const pfn = usedPfns[u]!;
    const f = flags[u]!;
    if ((f & (PG_BUDDY | PG_OFFLINE)) !== 0) fail(`mem.flags[${u}]`, `pfn ${pfn} is on no free list but is flagged free or offline (0x${f.toString(16)})`);
    if ((f & PG_LRU) !== 0) onLru++;
    if (count[u]! < 1) fail(`mem.count[${u}]`, `pfn ${pfn} is in use with count ${count[u]}`);
    if (mapcount[u]! < -1) fail(`mem.mapcount[${u}]`, `pfn ${pfn} has mapcount ${mapcount[u]} (expected >= -1)`);
    if (!Number.isFinite(index[u]!)) fail(`mem.index[${u}]`, `pfn ${pfn} has index ${index[u]}`);
    if (content[u]! >= pages) fail(`mem.content[${u}]`, `content index ${content[u]} of pfn ${pfn} is past the content table (${pages} pages)`);
    const code = mapping[u]!;
    const kind = code & 3;
    const i = code >>> 2;
    if (kind === MAP_NONE ? i !== 0 : i >= tableSize[kind]!) {
      fail(`mem.mapping[${u}]`, kind === MAP_NONE ? `bad mapping code ${code} for pfn ${pfn}` : `pfn ${pfn} maps ${tableName[kind]}[${i}], past the ${tableSize[kind]} there are`);
    }
  }
  if ((flags[0]! & PG_RESERVED) === 0) fail('mem.flags[0]', 'pfn 0, the zero page, must be reserved');

  const priv = u32s(m.private, 'mem.private');
  if (priv.length % 2 !== 0) fail('mem.private', `expected (pfn, value) pairs, found ${priv.length} numbers`);
  const privOf = new Map<number, number>();
  for (let i = 0; i < priv.length; i += 2) {
    const pfn = priv[i]!;
    if (pfn >= nrFrames || free[pfn] !== 0) fail(`mem.private[${i / 2}]`, `pfn ${pfn} is not a frame in use`);
    if (i > 0 && pfn <= priv[i - 2]!) fail(`mem.private[${i / 2}]`, `pfn ${pfn} out of order (expected ascending pfns)`);
    if (priv[i + 1]! < 1 || priv[i + 1]! > nrSlots) fail(`mem.private[${i / 2}]`, `swap entry ${priv[i + 1]} of pfn ${pfn} is not a slot of the swap device (1..${nrSlots})`);
    privOf.set(pfn, priv[i + 1]!);
  }

  const lruImg = array(m.lru, 'mem.lru', 3);
  const onList = new Uint8Array(nrFrames);
  const lru: Int32Array[] = [];
  let listed = 0;
  for (let l = 0; l < 3; l++) {
    const path = `mem.lru[${l}]`;
    const list = expandRuns(lruImg[l], path, 0, nrFrames, nrUsed);
    for (let i = 0; i < list.length; i++) {
      const p = list[i]!;
      if (free[p] !== 0) fail(path, `pfn ${p} is free`);
      if (onList[p] !== 0) fail(path, `pfn ${p} is on an LRU list twice`);
      onList[p] = 1;
      const f = flags[lowerBound(usedPfns, p)]!;
      // lruListOf(): PG_UNEVICTABLE first, then PG_ACTIVE.
      const flagList = (f & PG_UNEVICTABLE) !== 0 ? LRU_UNEVICTABLE : (f & PG_ACTIVE) !== 0 ? LRU_ACTIVE_ANON : LRU_INACTIVE_ANON;
      if ((f & PG_LRU) === 0 || flagList !== l) {
        fail(path, `pfn ${p} is on LRU list ${l} but its flags (0x${f.toString(16)}) say otherwise`);
      }
    }
    listed += list.length;
    lru.push(list);
  }
  if (listed !== onLru) fail('mem.lru', `${onLru} frames are flagged PG_LRU, ${listed} are on the lists`);

  // ---- swap ----
  let swap: Decoded['swap'] = null;
  const slotInUse = new Uint8Array(nrSlots + 1);
  if (swapMiB === 0) {
    if (img.swap !== null) fail('swap', `expected null (no swap device), found ${found(img.swap)}`);
  } else {
    const s = obj(img.swap, 'swap');
    int(s.nrSlots, 'swap.nrSlots', nrSlots, nrSlots);
    int(s.next, 'swap.next', 1, nrSlots);
    const slots = u32s(s.slots, 'swap.slots');
    const ns = slots.length;
    const refs = i32s(s.refs, 'swap.refs', ns);
    const cache = i32s(s.cache, 'swap.cache', ns);
    const slotContent = i32s(s.content, 'swap.content', ns);
    const cached = new Uint8Array(nrFrames);
    for (let i = 0; i < ns; i++) {
      const off = slots[i]!;
      if (off < 1 || off > nrSlots) fail(`swap.slots[${i}]`, `slot ${off} is not on the device (1..${nrSlots})`);
      if (i > 0 && off <= slots[i - 1]!) fail(`swap.slots[${i}]`, `slot ${off} out of order (expected ascending offsets)`);
      slotInUse[off] = 1;
      if (refs[i]! < 0) fail(`swap.refs[${i}]`, `slot ${off} has count ${refs[i]}`);
      const pfn = cache[i]!;
      if (pfn !== -1) {
        if (pfn < 0 || pfn >= nrFrames || free[pfn] !== 0) fail(`swap.cache[${i}]`, `slot ${off} is cached by pfn ${pfn}, which is not a frame in use`);
        if (cached[pfn] !== 0) fail(`swap.cache[${i}]`, `pfn ${pfn} caches two slots`);
        cached[pfn] = 1;
        if (privOf.get(pfn) !== off) fail(`swap.cache[${i}]`, `slot ${off} is cached by pfn ${pfn}, whose private (${privOf.get(pfn) ?? 0}) does not point back`);
      } else if (refs[i] === 0) {
        fail(`swap.refs[${i}]`, `slot ${off} is listed in use but has neither count nor swap-cache page`);
      }
      const ci = slotContent[i]!;
      if (ci === -1 ? pfn === -1 : ci < 0 || ci >= pages) {
        fail(`swap.content[${i}]`, ci === -1 ? `slot ${off} has no contents and no swap-cache page` : `content index ${ci} of slot ${off} is past the content table (${pages} pages)`);
      }
    }
    swap = { slots, refs, cache, content: slotContent };
  }

  // ---- mm_structs, areas, page tables ----
  const nAnon = anonVmasImg.length;
  const nShmem = shmemsImg.length;
  const vmaAnon: number[] = [];
  const mms: Decoded['mms'] = [];
  for (let i = 0; i < mmsImg.length; i++) {
    const path = `mms[${i}]`;
    const mi = obj(mmsImg[i], path);
    str(mi.owner, `${path}.owner`);
    int(mi.mmUsers, `${path}.mmUsers`, 0, 0x7fffffff);
    int(mi.mmCount, `${path}.mmCount`, 0, 0x7fffffff);
    int(mi.flags, `${path}.flags`, 0, 0x7fffffff);
    const vmasImg = array(mi.vmas, `${path}.vmas`);
    const starts: number[] = [];
    const ends: number[] = [];
    let prevEnd = 0;
    vmasImg.forEach((v, j) => {
      const vp = `${path}.vmas[${j}]`;
      const vi = obj(v, vp);
      const start = int(vi.start, `${vp}.start`, 0, TASK_SIZE);
      const end = int(vi.end, `${vp}.end`, 0, TASK_SIZE);
      if (start % PAGE_SIZE !== 0 || end % PAGE_SIZE !== 0 || end <= start) fail(vp, `bad bounds ${hexAddr(start)}-${hexAddr(end)}`);
      if (start < prevEnd) fail(vp, `${hexAddr(start)}-${hexAddr(end)} overlaps or is out of order`);
      prevEnd = end;
      int(vi.flags, `${vp}.flags`, -0x80000000, 0xffffffff);
      int(vi.pgoff, `${vp}.pgoff`, 0, Number.MAX_SAFE_INTEGER);
      vmaAnon.push(int(vi.anonVma, `${vp}.anonVma`, -1, nAnon - 1));
      int(vi.shmem, `${vp}.shmem`, -1, nShmem - 1);
      starts.push(start);
      ends.push(end);
    });
    const pmds = f64s(mi.pmds, `${path}.pmds`);
    const ptes = u32s(mi.ptes, `${path}.ptes`, pmds.length * PTRS_PER_PTE);
    const seen = new Set<number>();
    for (let t = 0; t < pmds.length; t++) {
      const pmd = pmds[t]!;
      if (!Number.isInteger(pmd) || pmd < 0 || pmd >= TASK_SIZE / PMD_SIZE || seen.has(pmd)) fail(`${path}.pmds[${t}]`, `bad or repeated page table number ${pmd}`);
      seen.add(pmd);
      for (let e = 0; e < PTRS_PER_PTE; e++) {
        const pte = ptes[t * PTRS_PER_PTE + e]!;
        if (pte === PTE_NONE) continue;
        const addr = pmd * PMD_SIZE + e * PAGE_SIZE;
        // The vma containing addr: vmas are sorted (tables need not be).
        let lo = 0;
        let hi = ends.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (ends[mid]! <= addr) lo = mid + 1;
          else hi = mid;
        }
        if (lo >= ends.length || starts[lo]! > addr) fail(`${path}.ptes[${t * PTRS_PER_PTE + e}]`, `pte at ${hexAddr(addr)} lies outside every vma`);
        const payload = pte >>> 6;
        switch (pte & PTE_KIND_MASK) {
          case PTE_PRESENT:
            if ((pte & PTE_SPECIAL) !== 0) {
              if (payload !== 0) fail(`${path}.ptes[${t * PTRS_PER_PTE + e}]`, `special pte at ${hexAddr(addr)} maps pfn ${payload}, not the zero page`);
            } else if (payload >= nrFrames || free[payload] !== 0) {
              fail(`${path}.ptes[${t * PTRS_PER_PTE + e}]`, `pte at ${hexAddr(addr)} maps pfn ${payload}, which is not a frame in use`);
            }
            break;
          case PTE_SWAP:
            if (payload < 1 || payload > nrSlots || slotInUse[payload] === 0) fail(`${path}.ptes[${t * PTRS_PER_PTE + e}]`, `swap pte at ${hexAddr(addr)} names slot ${payload}, which is not in use`);
            break;
          case PTE_MIGRATION:
            fail(`${path}.ptes[${t * PTRS_PER_PTE + e}]`, `migration entry at ${hexAddr(addr)}: a kernel at rest has none`);
            break;
          default:
            fail(`${path}.ptes[${t * PTRS_PER_PTE + e}]`, `pte 0x${pte.toString(16)} at ${hexAddr(addr)} has no valid kind`);
        }
      }
    }
    mms.push({ pmds, ptes });
  }
  const nVmas = vmaAnon.length;

  // ---- anon_vmas and shmem files ----
  const onAnonList = new Uint8Array(nVmas);
  let anonListed = 0;
  anonVmasImg.forEach((a, i) => {
    const path = `anonVmas[${i}]`;
    const ai = obj(a, path);
    const vl = array(ai.vmas, `${path}.vmas`);
    vl.forEach((v, j) => {
      const vi = int(v, `${path}.vmas[${j}]`, 0, nVmas - 1);
      if (vmaAnon[vi] !== i) fail(`${path}.vmas[${j}]`, `lists vma ${vi}, whose anon_vma is ${vmaAnon[vi]}`);
      if (onAnonList[vi] !== 0) fail(`${path}.vmas[${j}]`, `vma ${vi} is listed twice`);
      onAnonList[vi] = 1;
      anonListed++;
    });
    int(ai.ksmRefcount, `${path}.ksmRefcount`, 0, 0x7fffffff);
    bool(ai.freed, `${path}.freed`);
  });
  let withAnon = 0;
  for (const a of vmaAnon) if (a >= 0) withAnon++;
  if (withAnon !== anonListed) fail('anonVmas', `${withAnon} vmas have an anon_vma, ${anonListed} are on anon_vma lists`);
  const shmems: Decoded['shmems'] = shmemsImg.map((s, i) => {
    const path = `shmems[${i}]`;
    const si = obj(s, path);
    int(si.users, `${path}.users`, 0, 0x7fffffff);
    const indices = f64s(si.indices, `${path}.indices`);
    const pfns = u32s(si.pfns, `${path}.pfns`, indices.length);
    const seen = new Set<number>();
    for (let j = 0; j < indices.length; j++) {
      const idx = indices[j]!;
      if (!Number.isSafeInteger(idx) || idx < 0 || seen.has(idx)) fail(`${path}.indices[${j}]`, `bad or repeated page index ${idx}`);
      seen.add(idx);
      if (pfns[j]! >= nrFrames || free[pfns[j]!] !== 0) fail(`${path}.pfns[${j}]`, `pfn ${pfns[j]} is not a frame in use`);
    }
    return { indices, pfns };
  });

  // ---- processes ----
  const procs = array(img.processes, 'processes');
  const pids = new Set<number>();
  const owned = new Uint8Array(mmsImg.length);
  procs.forEach((p, i) => {
    const path = `processes[${i}]`;
    const pi = obj(p, path);
    const pid = int(pi.pid, `${path}.pid`, 1, nextPid - 1);
    if (pids.has(pid)) fail(`${path}.pid`, `pid ${pid} is used twice`);
    pids.add(pid);
    str(pi.name, `${path}.name`);
    const mm = int(pi.mm, `${path}.mm`, 0, mmsImg.length - 1);
    if (owned[mm] !== 0) fail(`${path}.mm`, `mm ${mm} belongs to two processes`);
    owned[mm] = 1;
  });

  // ---- KSM ----
  for (const key of ['pagesShared', 'pagesSharing', 'pagesUnshared', 'rmapItems', 'seqnr', 'pagesScanned'] as const) {
    int(k[key], `ksm.${key}`, 0, Number.MAX_SAFE_INTEGER);
  }
  const mkp = str(k.maxKernelPages, 'ksm.maxKernelPages');
  if (!/^[0-9]{1,20}$/.test(mkp) || BigInt(mkp) > ULONG_MAX) fail('ksm.maxKernelPages', `expected an unsigned long in decimal, found ${found(mkp)}`);
  int(k.pagesToScan, 'ksm.pagesToScan', 0, UINT_MAX);
  int(k.sleepMillisecs, 'ksm.sleepMillisecs', 0, UINT_MAX);
  int(k.run, 'ksm.run', 0, 2);
  bool(k.offlineLock, 'ksm.offlineLock');
  const slotsImg = array(k.slots, 'ksm.slots');
  const slotMm = new Uint8Array(mmsImg.length);
  const slotFirst: number[] = [];
  let nItems = 0;
  slotsImg.forEach((s, i) => {
    const path = `ksm.slots[${i}]`;
    const si = obj(s, path);
    const mm = int(si.mm, `${path}.mm`, 0, mmsImg.length - 1);
    if (slotMm[mm] !== 0) fail(`${path}.mm`, `mm ${mm} has two mm_slots`);
    slotMm[mm] = 1;
    slotFirst.push(nItems);
    nItems += int(si.items, `${path}.items`, 0, 0x7fffffff);
  });
  slotFirst.push(nItems);
  for (let i = 0; i < mmsImg.length; i++) {
    if (owned[i] === 0 && slotMm[i] === 0) fail(`mms[${i}]`, 'belongs to no process and no mm_slot');
  }
  const itemAddress = f64s(k.itemAddress, 'ksm.itemAddress', nItems);
  const itemFlags = u32s(k.itemFlags, 'ksm.itemFlags', nItems);
  const itemChecksum = u32s(k.itemChecksum, 'ksm.itemChecksum', nItems);
  const itemAnonVma = i32s(k.itemAnonVma, 'ksm.itemAnonVma', nItems);
  for (let s = 0; s < slotsImg.length; s++) {
    for (let i = slotFirst[s]!; i < slotFirst[s + 1]!; i++) {
      const a = itemAddress[i]!;
      if (!Number.isSafeInteger(a) || a < 0 || a % PAGE_SIZE !== 0 || a >= TASK_SIZE) fail(`ksm.itemAddress[${i}]`, `bad address ${a}`);
      if (i > slotFirst[s]! && a <= itemAddress[i - 1]!) fail(`ksm.itemAddress[${i}]`, `rmap_list of ksm.slots[${s}] not sorted at ${hexAddr(a)}`);
      if (itemAnonVma[i]! < -1 || itemAnonVma[i]! >= nAnon) fail(`ksm.itemAnonVma[${i}]`, `anon_vma ${itemAnonVma[i]} is past the ${nAnon} there are`);
    }
  }
  for (let i = 0; i < nNodes; i++) if (nodeKpfn[i]! >= nrFrames) fail(`ksm.nodeKpfn[${i}]`, `pfn ${nodeKpfn[i]} is beyond memory (${nrFrames} frames)`);
  const nodeHlistLength = u32s(k.nodeHlistLength, 'ksm.nodeHlistLength', nNodes);
  let hlistTotal = 0;
  for (let i = 0; i < nNodes; i++) hlistTotal += nodeHlistLength[i]!;
  const nodeHlist = u32s(k.nodeHlist, 'ksm.nodeHlist', hlistTotal);
  const inTree = new Uint8Array(nItems);
  for (let i = 0; i < hlistTotal; i++) {
    const it = nodeHlist[i]!;
    if (it >= nItems) fail(`ksm.nodeHlist[${i}]`, `rmap_item ${it} is past the ${nItems} there are`);
    if (inTree[it] !== 0) fail(`ksm.nodeHlist[${i}]`, `rmap_item ${it} is on two hlists`);
    inTree[it] = 1;
  }
  const stableTree = bytes(k.stableTree, 'ksm.stableTree');
  if (stableTree.length > nNodes) fail('ksm.stableTree', `${stableTree.length} nodes in the tree, but only ${nNodes} stable nodes`);
  checkShape(stableTree, 'ksm.stableTree');
  const unstableItems = u32s(k.unstableItems, 'ksm.unstableItems');
  const unstableTree = bytes(k.unstableTree, 'ksm.unstableTree');
  if (unstableTree.length !== unstableItems.length) fail('ksm.unstableTree', `${unstableTree.length} shape bytes for ${unstableItems.length} nodes`);
  checkShape(unstableTree, 'ksm.unstableTree');
  for (let i = 0; i < unstableItems.length; i++) {
    const it = unstableItems[i]!;
    if (it >= nItems) fail(`ksm.unstableItems[${i}]`, `rmap_item ${it} is past the ${nItems} there are`);
    if (inTree[it] !== 0) fail(`ksm.unstableItems[${i}]`, `rmap_item ${it} is in two places (trees or hlists)`);
    inTree[it] = 1;
  }
  const scanSlot = int(k.scanSlot, 'ksm.scanSlot', -1, slotsImg.length - 1);
  finite(k.scanAddress, 'ksm.scanAddress');
  const scanLink = int(k.scanLink, 'ksm.scanLink', -1, nItems - 1);
  if (scanLink >= 0 && (scanSlot < 0 || scanLink < slotFirst[scanSlot]! || scanLink >= slotFirst[scanSlot + 1]!)) {
    fail('ksm.scanLink', `rmap_item ${scanLink} is not on the scanned mm_slot's list`);
  }
  const kd = obj(img.ksmd, 'ksmd');
  if (kd.wakeAt !== null) finite(kd.wakeAt, 'ksmd.wakeAt');
  int(kd.batches, 'ksmd.batches', 0, Number.MAX_SAFE_INTEGER);

  return {
    img: img as unknown as KernelImage,
    freeLists,
    usedPfns,
    neverUsed,
    flags,
    count,
    mapcount,
    mapping,
    index,
    content,
    priv,
    lru,
    chunks,
    chunkPages,
    swap,
    shmems,
    mms,
    itemAddress,
    itemFlags,
    itemChecksum,
    itemAnonVma,
    nodeKpfn,
    nodeHlistLength,
    nodeHlist,
    stableTree,
    unstableItems,
    unstableTree,
  };
}

/** Index of p in the ascending array a (p is known to be there). */
function lowerBound(a: Int32Array, p: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < p) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * null when `img` (say, just decoded from a file) can be restored; otherwise what is
 * wrong with it, naming the field: missing, of the wrong type, out of range, or
 * referring to something that is not there.
 */
export function checkKernelImage(img: unknown): string | null {
  try {
    decode(img);
    return null;
  } catch (e) {
    if (e instanceof ImageError) return e.message;
    throw e;
  }
}

// ---- restoring ----------------------------------------------------------------------------

/**
 * A new Kernel, built with the image's options, in exactly the saved state: it
 * continues as the saved kernel would have. The image is checked in full first
 * (checkKernelImage), and a bad one throws KernelError EINVAL naming the problem
 * before anything is built. The kernel never shares memory with the image.
 */
export function restoreKernel(img: KernelImage): Kernel {
  const k = restoreUntrustedKernel(img);
  if (typeof k === 'string') throw new KernelError('EINVAL', `bad kernel image: ${k}`);
  return k;
}

/**
 * restoreKernel() for an image not yet checked (say, just decoded from a file): the
 * kernel, or what checkKernelImage() would say is wrong with the image. The image is
 * decoded once; checkKernelImage() then restoreKernel() would check it twice, which
 * for a host of GiBs is about half a second.
 */
export function restoreUntrustedKernel(img: unknown): Kernel | string {
  let d: Decoded;
  try {
    d = decode(img);
  } catch (e) {
    if (e instanceof ImageError) return e.message;
    throw e;
  }
  return build(d);
}

/** Links nodes[0..shape.length) into a tree of the given pre-order shape under root. */
function buildTree(root: RbRoot, nodes: readonly RbNode[], shape: Uint8Array): void {
  root.node = null;
  if (shape.length === 0) return;
  const parents: (RbNode | null)[] = [null];
  const sides: number[] = [0]; // 0 root, 1 left, 2 right
  for (let i = 0; i < shape.length; i++) {
    const n = nodes[i]!;
    const s = shape[i]!;
    const parent = parents.pop()!;
    const side = sides.pop()!;
    n.rbParent = parent;
    n.rbLeft = null;
    n.rbRight = null;
    n.rbRed = (s & SHAPE_RED) !== 0;
    if (side === 0) root.node = n;
    else if (side === 1) parent!.rbLeft = n;
    else parent!.rbRight = n;
    if ((s & SHAPE_RIGHT) !== 0) {
      parents.push(n);
      sides.push(2);
    }
    if ((s & SHAPE_LEFT) !== 0) {
      parents.push(n);
      sides.push(1);
    }
  }
}

/** Links the frames of `list` in its order through lruPrev/lruNext (free lists and LRU lists share them). */
function linkList(mem: PhysMem, list: Int32Array): void {
  for (let i = 0; i < list.length; i++) {
    const p = list[i]!;
    mem.lruPrev[p] = i > 0 ? list[i - 1]! : -1;
    mem.lruNext[p] = i + 1 < list.length ? list[i + 1]! : -1;
  }
}

function build(d: Decoded): Kernel {
  const img = d.img;
  const k = new Kernel({ ...img.options });
  const mem = k.mem;

  // ---- frames: every frame reset as free, then the free lists, then those in use ----
  for (let b = 0; b < mem.blocks.length; b++) {
    const block: MemoryBlock = mem.blocks[b]!;
    const bi = img.mem.blocks[b]!;
    const start = block.startPfn;
    const end = start + mem.framesIn(block);
    mem.flags.fill(bi.online ? PG_BUDDY : PG_BUDDY | PG_OFFLINE, start, end);
    mem.count.fill(0, start, end);
    mem.mapcount.fill(-1, start, end);
    mem.mapping.fill(null, start, end);
    mem.index.fill(0, start, end);
    mem.private.fill(0, start, end);
    mem.lruPrev.fill(-1, start, end);
    mem.lruNext.fill(-1, start, end);
    mem.checksumValid.fill(0, start, end);
    const list = d.freeLists[b]!;
    linkList(mem, list);
    block.freeHead = list.length > 0 ? list[0]! : -1;
    block.nrFree = list.length;
    block.isolated = bi.isolated;
    if (!bi.online) {
      block.online = false;
      block.releaseBuffer();
    }
  }
  let nrFreeOnline = 0;
  for (const block of mem.blocks) if (block.online && !block.isolated) nrFreeOnline += block.nrFree;
  mem.nrFreeOnline = nrFreeOnline;
  {
    let p = 0;
    let bit = 0;
    for (let r = 0; r < d.neverUsed.length; r++) {
      const len = d.neverUsed[r]!;
      mem.neverUsed.fill(bit, p, p + len);
      p += len;
      bit ^= 1;
    }
  }
  mem.contentsEpoch = img.mem.contentsEpoch;
  const used = d.usedPfns;
  const chunks = d.chunks;
  const cp = d.chunkPages;
  for (let u = 0; u < used.length; u++) {
    const pfn = used[u]!;
    mem.flags[pfn] = d.flags[u]!;
    mem.count[pfn] = d.count[u]!;
    mem.mapcount[pfn] = d.mapcount[u]!;
    mem.index[pfn] = d.index[u]!;
    const c = d.content[u]!;
    const from = (c % cp) * PAGE_SIZE;
    chunks[(c / cp) | 0]!.copy(mem.dataOf(pfn), mem.offsetOf(pfn), from, from + PAGE_SIZE);
  }
  for (let i = 0; i < d.priv.length; i += 2) mem.private[d.priv[i]!] = d.priv[i + 1]!;
  for (let l = 0; l < 3; l++) {
    const list = d.lru[l]!;
    linkList(mem, list);
    mem.lruHead[l] = list.length > 0 ? list[0]! : -1;
    mem.lruTail[l] = list.length > 0 ? list[list.length - 1]! : -1;
    mem.lruSize[l] = list.length;
  }

  // ---- swap ----
  if (d.swap !== null) {
    const sw = k.swap!;
    const s = d.swap;
    sw.refs.fill(0);
    sw.cache.fill(-1);
    for (let i = 0; i < s.slots.length; i++) {
      const off = s.slots[i]!;
      sw.refs[off] = s.refs[i]!;
      sw.cache[off] = s.cache[i]!;
      const c = s.content[i]!;
      if (c >= 0) {
        const from = (c % cp) * PAGE_SIZE;
        chunks[(c / cp) | 0]!.copy(sw.data, (off - 1) * PAGE_SIZE, from, from + PAGE_SIZE);
      }
    }
    sw.nrFree = sw.nrSlots - s.slots.length;
    sw.next = img.swap!.next;
  }

  // ---- objects ----
  const anonVmas = img.anonVmas.map((a) => {
    const av = new AnonVma();
    av.ksmRefcount = a.ksmRefcount;
    av.freed = a.freed;
    return av;
  });
  const shmems = img.shmems.map((s, i) => {
    const f = new ShmemFile();
    f.users = s.users;
    const { indices, pfns } = d.shmems[i]!;
    for (let j = 0; j < indices.length; j++) f.pages.set(indices[j]!, pfns[j]!);
    return f;
  });
  const vmaList: Vma[] = [];
  const mms = img.mms.map((mi, i) => {
    const mm = new MmStruct(mi.owner);
    mm.mmUsers = mi.mmUsers;
    mm.mmCount = mi.mmCount;
    mm.flags = mi.flags;
    for (const vi of mi.vmas) {
      const vma = new Vma(mm, vi.start, vi.end, vi.flags, vi.pgoff);
      vma.anonVma = vi.anonVma < 0 ? null : anonVmas[vi.anonVma]!;
      vma.shmem = vi.shmem < 0 ? null : shmems[vi.shmem]!;
      mm.vmas.push(vma);
      vmaList.push(vma);
    }
    const { pmds, ptes } = d.mms[i]!;
    for (let t = 0; t < pmds.length; t++) mm.pgtables.set(pmds[t]!, ptes.slice(t * PTRS_PER_PTE, (t + 1) * PTRS_PER_PTE));
    return mm;
  });
  img.anonVmas.forEach((a, i) => {
    for (const v of a.vmas) anonVmas[i]!.vmas.push(vmaList[v]!);
  });
  for (const pi of img.processes) k.processes.set(pi.pid, new Process(k, pi.pid, pi.name, mms[pi.mm]!));
  k.nextPid = img.nextPid;

  // ---- KSM ----
  const ksm = k.ksmEngine;
  const ki = img.ksm;
  const head = ksm.mmHead;
  const slots: MmSlot[] = [];
  const items: RmapItem[] = new Array<RmapItem>(d.itemAddress.length);
  let n = 0;
  for (const si of ki.slots) {
    const mm = mms[si.mm]!;
    const slot = new MmSlot(mm);
    slot.prev = head.prev;
    slot.next = head;
    head.prev.next = slot;
    head.prev = slot;
    ksm.mmSlots.set(mm, slot);
    let link: MmSlot | RmapItem = slot;
    for (let j = 0; j < si.items; j++, n++) {
      const it = newRmapItem(mm, d.itemAddress[n]!);
      it.flags = d.itemFlags[n]!;
      it.oldchecksum = d.itemChecksum[n]!;
      const av = d.itemAnonVma[n]!;
      it.anonVma = av < 0 ? null : anonVmas[av]!;
      link.rmapList = it;
      link = it;
      items[n] = it;
    }
    slots.push(slot);
  }
  const nodes: StableNode[] = new Array<StableNode>(d.nodeKpfn.length);
  for (let i = 0, h = 0; i < nodes.length; i++) {
    const node = new StableNode(d.nodeKpfn[i]!);
    node.rmapHlistLen = d.nodeHlistLength[i]!;
    node.linked = NODE_TREE;
    let prev: RmapItem | null = null;
    for (let j = d.nodeHlistLength[i]!; j > 0; j--, h++) {
      const it = items[d.nodeHlist[h]!]!;
      it.head = node;
      it.hlistPrev = prev;
      if (prev === null) node.hlist = it;
      else prev.hlistNext = it;
      prev = it;
    }
    nodes[i] = node;
  }
  buildTree(ksm.rootStableTree, nodes, d.stableTree);
  const unstable: RmapItem[] = new Array<RmapItem>(d.unstableItems.length);
  for (let i = 0; i < unstable.length; i++) unstable[i] = items[d.unstableItems[i]!]!;
  buildTree(ksm.rootUnstableTree, unstable, d.unstableTree);
  ksm.scanSlot = ki.scanSlot < 0 ? head : slots[ki.scanSlot]!;
  ksm.scanLink = ki.scanLink < 0 ? ksm.scanSlot : items[ki.scanLink]!;
  ksm.scanAddress = ki.scanAddress;
  ksm.seqnr = ki.seqnr;
  ksm.pagesShared = ki.pagesShared;
  ksm.pagesSharing = ki.pagesSharing;
  ksm.pagesUnshared = ki.pagesUnshared;
  ksm.rmapItems = ki.rmapItems;
  ksm.pagesScanned = ki.pagesScanned;
  ksm.maxKernelPages = BigInt(ki.maxKernelPages);
  ksm.pagesToScan = ki.pagesToScan;
  ksm.sleepMillisecs = ki.sleepMillisecs;
  ksm.run = ki.run;
  ksm.offlineLock = ki.offlineLock;
  k.ksmd.wakeAt = img.ksmd.wakeAt;
  k.ksmd.batches = img.ksmd.batches;

  // ---- what frames point at, now that it exists ----
  for (let u = 0; u < used.length; u++) {
    const code = d.mapping[u]!;
    const kind = code & 3;
    const i = code >>> 2;
    mem.mapping[used[u]!] = kind === MAP_ANON ? anonVmas[i]! : kind === MAP_STABLE ? nodes[i]! : kind === MAP_SHMEM ? shmems[i]! : null;
  }

  // ---- time, randomness, counters ----
  k.now = img.now;
  k.prng.setState(img.prng);
  for (const key of VMSTAT_KEYS) k.vmstat[key] = img.vmstat[key];
  return k;
}
