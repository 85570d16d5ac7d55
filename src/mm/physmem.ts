import { KernelError, assert, bug } from '../lib/errors.js';
import {
  PAGE_SIZE,
  PG_ANON,
  PG_BUDDY,
  PG_KSM,
  PG_ACTIVE,
  PG_LOCKED,
  PG_LRU,
  PG_OFFLINE,
  PG_UNEVICTABLE,
  PG_RESERVED,
  MAX_MEMORY_MIB,
  decodePageFlags,
} from './constants.js';
import { CONTENT_ZERO, ContentStore, type ContentView } from './contents.js';

/**
 * Physical memory: frames numbered 0..nrFrames-1, grouped in memory blocks.
 *
 * Contents live in the content store (contents.ts): content[pfn] names the frame's
 * bytes there, identical contents once, generated ones not at all. A free frame
 * holds CONTENT_ZERO (freeing gives its content back), so a frame is handed out
 * zeroed without a write, and a never-used frame costs nothing: 0 is the default
 * of the fresh array. Copying a page shares its content; a write first makes the
 * frame's content its own (copy-on-write inside the store).
 *
 * Metadata is one flat array per field, indexed by pfn (FLATMEM's mem_map rather
 * than per-section arrays: we never hot-add beyond the memory we boot with, so one
 * array per field is simpler and one indirection cheaper on every access).
 *
 *   flags[pfn]     page flags (constants.ts)
 *   count[pfn]     _count: references. 0 exactly when the frame is free (PG_BUDDY).
 *   mapcount[pfn]  _mapcount as Linux keeps it: -1 when no pte maps the page;
 *                  page_mapcount() is mapcount + 1.
 *   mappingOf(pfn) anon_vma (PG_ANON), stable node (PG_ANON|PG_KSM: its record number
 *                  in KSM's table, a small integer, src/ksm/structs.ts; may be null),
 *                  ShmemFile (PG_SHMEM), or null. Freeing a frame resets it to null:
 *                  KSM's keyhole reference (get_ksm_page) relies on that.
 *   index[pfn]     page->index: the linear page index in its anon_vma or file.
 *   private[pfn]   the swap entry while PG_SWAPCACHE is set.
 *   lruPrev/Next   the frame's links in its LRU list (-1 when not on one).
 *
 *   content[pfn]   the frame's content id (contents.ts); CONTENT_ZERO when free.
 *
 * Facts about the contents, kept so that they need not be recomputed:
 *
 *   contentsEpoch  bumped by every change to any frame's content (a new content
 *                  named, or bytes written in place). Anything computed from
 *                  frame contents stays true while it holds (KSM's memcmp memo
 *                  relies on it).
 *   KSM's checksum is memoized per content in the store (store.sum/sumValid), not
 *   per frame: a pure function of the bytes, so using it cannot change a decision.
 *
 * Every change to a frame's bytes goes through setContent(), writeBytes() or
 * fillBytes(), which keep the epoch and the store's memos; there is no other way
 * to reach a frame's bytes for writing.
 *
 * Frames at scale: a block's frames get their metadata (PG_BUDDY, mapcount -1, free
 * list links, a mapping array) when the block is first used (initBlock), not at boot:
 * the typed arrays are zeroed by the OS page by page as they are first written, so
 * a 512 GiB host with a few GiB touched commits a few GiB's worth of metadata. A
 * block not yet initialized (`block.initialized` false) is online and wholly free;
 * whoever reads its frames' metadata directly (checks, statistics, hot-remove,
 * compaction) initializes it or skips it as free. `mapping` is per block for the
 * same reason: one JS array of references for every frame would cost 8 bytes a
 * frame at boot (1 GiB for 512 GiB).
 *
 * Always true: a free frame has count 0, mapcount -1, mapping null, flags exactly
 * PG_BUDDY (plus PG_OFFLINE when its block is offline); the zero page (pfn 0) is
 * PG_RESERVED, count 1, mapcount -1, and is never freed.
 */
/**
 * What page->mapping holds: an object of the mm (AnonVma, ShmemFile), or a record
 * number for subsystems that keep their objects in numbered tables (KSM's stable
 * nodes). A number in a JS array slot is a small integer, stored without allocation.
 */
export type PageMapping = object | number;

export const LRU_INACTIVE_ANON = 0;
export const LRU_ACTIVE_ANON = 1;
export const LRU_UNEVICTABLE = 2;

/** The LRU list a page with flags `f` belongs on while PG_LRU is set: PG_UNEVICTABLE first, then PG_ACTIVE. */
export function lruListOfFlags(f: number): number {
  return (f & PG_UNEVICTABLE) !== 0 ? LRU_UNEVICTABLE : (f & PG_ACTIVE) !== 0 ? LRU_ACTIVE_ANON : LRU_INACTIVE_ANON;
}

export class MemoryBlock {
  readonly index: number;
  readonly startPfn: number;
  readonly nrPages: number;
  /** The NUMA node the block belongs to (see PhysMem: nodes). */
  readonly node: number;
  online: boolean;
  /** Isolated for offlining: the allocator skips it (MIGRATE_ISOLATE). */
  isolated: boolean;
  /** Its frames have their metadata (PhysMem.initBlock); until then all are free. */
  initialized: boolean;
  /**
   * Free frames of this block: a list through the frames' lruPrev/lruNext links
   * (a free frame is on no LRU list, so, as the buddy allocator reuses page->lru,
   * its links are free to serve), headed by `freeHead`, `nrFree` long.
   */
  freeHead: number;
  nrFree: number;

  constructor(index: number, startPfn: number, nrPages: number, node: number) {
    this.index = index;
    this.startPfn = startPfn;
    this.nrPages = nrPages;
    this.node = node;
    this.online = false;
    this.isolated = false;
    this.initialized = false;
    this.freeHead = -1;
    this.nrFree = 0;
  }

}

export interface PhysMemOptions {
  memoryMiB: number;
  blockMiB: number;
  /** NUMA nodes (default 1). */
  nodes?: number;
}

/*
 * NUMA nodes, the model's way. A node is a run of whole memory blocks: memory is cut
 * into `nodes` contiguous parts as equal as the blocks allow (block b belongs to node
 * floor(b * nodes / blocks)), as firmware lays out each node's memory as one physical
 * range. There are no CPUs, so no "local" node: an allocation names the node it
 * prefers (the faulting process's, Process.node, like a task's MPOL_PREFERRED
 * policy; 0 unless set), is served from that node's blocks first, lowest block first,
 * and falls back to the next nodes in turn (node+1, node+2, ... wrapping), as the
 * zonelist falls back when the preferred node is full. With one node this is the
 * plain lowest-block-first order the model always had.
 *
 * The road not taken: zones and distances. KSM only asks which node a page is on
 * (pfn_to_nid(), for merge_across_nodes 0); nothing in the model weighs distance.
 */

export class PhysMem {
  readonly nrFrames: number;
  readonly blockPages: number;
  readonly blockShift: number;
  readonly blocks: MemoryBlock[];
  readonly nrNodes: number;
  /** The first block of each node (nodeFirstBlock[nrNodes] is blocks.length). */
  readonly nodeFirstBlock: Int32Array;

  readonly flags: Uint32Array;
  readonly count: Int32Array;
  readonly mapcount: Int32Array;
  /** Per block: its frames' mapping, allocated with the block's metadata (initBlock), else null. */
  private readonly mappings: ((PageMapping | null)[] | null)[];
  readonly index: Float64Array;
  readonly private: Uint32Array;
  readonly lruPrev: Int32Array;
  readonly lruNext: Int32Array;
  readonly content: Uint32Array;
  readonly store: ContentStore;
  contentsEpoch: number;

  /**
   * LRU lists (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_UNEVICTABLE), doubly linked
   * through lruPrev/lruNext; a frame is on one exactly when PG_LRU is set, and on the
   * active list exactly when PG_ACTIVE is also set (PG_UNEVICTABLE for the third).
   */
  readonly lruHead: Int32Array;
  readonly lruTail: Int32Array;
  readonly lruSize: Int32Array;

  /** The shared zero page (ZERO_PAGE(0)). */
  readonly zeroPfn = 0;
  /** Frames free across online, non-isolated blocks. */
  nrFreeOnline: number;

  constructor(opts: PhysMemOptions) {
    const { memoryMiB, blockMiB } = opts;
    const nodes = opts.nodes ?? 1;
    // HostKernel's checkKernelOptions() has checked both (types and limits); these
    // are what the arithmetic below relies on. Linux's largest memory block is 2 GiB.
    if (!Number.isInteger(blockMiB) || blockMiB <= 0 || blockMiB > 2048 || (blockMiB & (blockMiB - 1)) !== 0) {
      throw new KernelError('EINVAL', `blockMiB must be a power of two up to 2048, got ${blockMiB}`);
    }
    if (!Number.isInteger(memoryMiB) || memoryMiB <= 0) {
      throw new KernelError('EINVAL', `memoryMiB must be a positive whole number, got ${memoryMiB}`);
    }
    this.blockPages = (blockMiB * 1024 * 1024) / PAGE_SIZE;
    this.blockShift = Math.log2(this.blockPages);
    this.nrFrames = (memoryMiB * 1024 * 1024) / PAGE_SIZE;
    if (memoryMiB > MAX_MEMORY_MIB) {
      throw new KernelError('EINVAL', `memoryMiB ${memoryMiB} exceeds the ${MAX_MEMORY_MIB} MiB (4 TiB) a pte can address`);
    }
    const nrBlocks = Math.ceil(this.nrFrames / this.blockPages);
    if (!Number.isInteger(nodes) || nodes < 1 || nodes > nrBlocks) {
      throw new KernelError('EINVAL', `nodes must be an integer from 1 to the number of memory blocks (${nrBlocks}), got ${nodes}`);
    }
    this.nrNodes = nodes;
    this.nodeFirstBlock = new Int32Array(nodes + 1);
    for (let nid = 0; nid <= nodes; nid++) this.nodeFirstBlock[nid] = Math.ceil((nid * nrBlocks) / nodes);
    const n = this.nrFrames;
    this.flags = new Uint32Array(n);
    this.count = new Int32Array(n);
    this.mapcount = new Int32Array(n);
    this.mappings = [];
    this.index = new Float64Array(n);
    this.private = new Uint32Array(n);
    this.lruPrev = new Int32Array(n);
    this.lruNext = new Int32Array(n);
    this.content = new Uint32Array(n);
    this.store = new ContentStore();
    this.contentsEpoch = 0;
    this.lruHead = new Int32Array(3).fill(-1);
    this.lruTail = new Int32Array(3).fill(-1);
    this.lruSize = new Int32Array(3);
    this.blocks = [];
    this.nrFreeOnline = 0;
    // Linux's memory blocks are all one size, but the last may be only partly
    // populated (a machine with 32 MiB and 128 MiB blocks has one block, a quarter
    // present). The last block keeps the common size; framesIn() counts the frames it has.
    for (let b = 0; b * this.blockPages < n; b++) {
      const block = new MemoryBlock(b, b * this.blockPages, this.blockPages, Math.floor((b * nodes) / nrBlocks));
      this.blocks.push(block);
      this.mappings.push(null);
      this.onlineBlock(block);
    }
    // The zero page: reserved, one reference held forever, never mapped "normally".
    if (!this.allocSpecificFrame(this.zeroPfn)) bug(`pfn ${this.zeroPfn} is not free at boot`);
    this.flags[this.zeroPfn] = PG_RESERVED;
  }

  /** page->mapping (see the layout above). */
  mappingOf(pfn: number): PageMapping | null {
    const m = this.mappings[pfn >>> this.blockShift]!;
    return m === null ? null : m[pfn & (this.blockPages - 1)]!;
  }

  setMapping(pfn: number, to: PageMapping | null): void {
    const b = pfn >>> this.blockShift;
    let m = this.mappings[b]!;
    if (m === null) {
      if (to === null) return;
      m = new Array<PageMapping | null>(this.blockPages).fill(null);
      this.mappings[b] = m;
    }
    m[pfn & (this.blockPages - 1)] = to;
  }

  /**
   * Give a block's frames their metadata, once (see "Frames at scale" above): every
   * frame free (or offline), on the free list so that allocation hands out ascending
   * pfns, exactly as if it had been done at boot.
   */
  initBlock(block: MemoryBlock): void {
    if (block.initialized) return;
    block.initialized = true;
    const end = block.startPfn + this.framesIn(block);
    const flags = block.online ? PG_BUDDY : PG_BUDDY | PG_OFFLINE;
    for (let pfn = end - 1; pfn >= block.startPfn; pfn--) {
      this.flags[pfn] = flags;
      this.mapcount[pfn] = -1;
      if (block.online) {
        const head = block.freeHead;
        this.lruPrev[pfn] = -1;
        this.lruNext[pfn] = head;
        if (head >= 0) this.lruPrev[head] = pfn;
        block.freeHead = pfn;
      } else {
        this.lruPrev[pfn] = -1;
        this.lruNext[pfn] = -1;
      }
    }
  }

  /** No frame of the block maps anything (a kernel image being restored). */
  clearMappings(block: MemoryBlock): void {
    this.mappings[block.index] = null;
  }

  /** Whether pfn lies in a block whose frames have no metadata yet (all free). */
  untouched(pfn: number): boolean {
    return !this.blocks[pfn >>> this.blockShift]!.initialized;
  }

  /** Every block initialized (a kernel image lists every frame's state). */
  initAllBlocks(): void {
    for (const b of this.blocks) this.initBlock(b);
  }

  blockOf(pfn: number): MemoryBlock {
    return this.blocks[pfn >>> this.blockShift]!;
  }

  /** pfn_to_nid() */
  nodeOf(pfn: number): number {
    return this.blocks[pfn >>> this.blockShift]!.node;
  }

  /**
   * Where pfn's bytes can be read (contents.ts view(): valid until a few more contents
   * are made; read, never keep, never write).
   */
  view(pfn: number, into?: ContentView): ContentView {
    return this.store.view(this.content[pfn]!, into);
  }

  /** A copy of pfn's 4096 bytes (tests, messages). */
  readPage(pfn: number): Buffer {
    const v = this.view(pfn);
    return Buffer.from(v.buf.subarray(v.off, v.off + PAGE_SIZE));
  }

  // ---- allocator -----------------------------------------------------------------

  /**
   * alloc_page(): a frame with count 1, flags 0, and zeroed contents, asked for
   * (`_zero`, __GFP_ZERO) or not: a free frame holds CONTENT_ZERO.
   * Returns -1 when no online block has a free frame (the caller decides between
   * reclaim and ENOMEM). From node `nid` first, then the next nodes (see NUMA
   * above); lowest block first within, so that tests see stable numbers.
   */
  allocFrame(_zero: boolean, nid = 0): number {
    const nb = this.blocks.length;
    const first = this.nodeFirstBlock[nid]!;
    for (let i = 0; i < nb; i++) {
      const b = first + i < nb ? first + i : first + i - nb;
      const block = this.blocks[b]!;
      if (block.nrFree === 0 || !block.online || block.isolated) continue;
      if (!block.initialized) this.initBlock(block);
      const pfn = block.freeHead;
      this.handOut(block, pfn);
      return pfn;
    }
    return -1;
  }

  /** Allocate from anywhere but `avoid` (migration target for offlining). */
  allocFrameOutside(avoid: MemoryBlock): number {
    for (let b = 0; b < this.blocks.length; b++) {
      const block = this.blocks[b]!;
      if (block === avoid || block.nrFree === 0 || !block.online || block.isolated) continue;
      if (!block.initialized) this.initBlock(block);
      const pfn = block.freeHead;
      this.handOut(block, pfn);
      return pfn;
    }
    return -1;
  }

  /**
   * Allocate one particular free frame (compaction's free scanner picks its targets
   * from the top of memory). Returns false when it is not free or not allocatable.
   */
  allocSpecificFrame(pfn: number): boolean {
    const block = this.blocks[pfn >>> this.blockShift]!;
    if (!block.initialized) this.initBlock(block);
    if ((this.flags[pfn]! & (PG_BUDDY | PG_OFFLINE)) !== PG_BUDDY || !block.online || block.isolated) return false;
    this.handOut(block, pfn);
    return true;
  }

  /**
   * What every allocator does with the free frame it picked (in an online,
   * non-isolated block): off the free list, count 1, flags 0. Its content is
   * CONTENT_ZERO already (freeFrame saw to it).
   */
  private handOut(block: MemoryBlock, pfn: number): void {
    this.unlinkFree(block, pfn);
    this.nrFreeOnline--;
    this.flags[pfn] = 0;
    this.count[pfn] = 1;
  }

  /** __free_page(): only for a frame whose count has dropped to 0. */
  freeFrame(pfn: number): void {
    // Hot (KSM frees a page per merge): `if (..) bug()` rather than assert(), whose
    // message closure would be allocated on every call.
    if (this.count[pfn] !== 0) bug(`freeing pfn ${pfn} with count ${this.count[pfn]}`);
    if (this.mapcount[pfn] !== -1) bug(`freeing pfn ${pfn} still mapped (mapcount ${this.mapcount[pfn]! + 1})`);
    if ((this.flags[pfn]! & (PG_BUDDY | PG_RESERVED | PG_LOCKED)) !== 0) bug(`freeing pfn ${pfn} with flags ${decodePageFlags(this.flags[pfn]!)}`);
    // __page_cache_release(): a page leaves its LRU list when its last reference goes.
    if ((this.flags[pfn]! & PG_LRU) !== 0) this.lruDel(pfn);
    this.flags[pfn] = PG_BUDDY;
    this.setMapping(pfn, null);
    this.index[pfn] = 0;
    this.private[pfn] = 0;
    // The frame's bytes go back to the store: RSS falls when KSM frees frames. Nothing
    // reads a free frame's bytes (every allocation is either used zeroed or has a
    // page copied over it), so the old bytes need not outlive it, as Linux's do.
    const c = this.content[pfn]!;
    if (c !== CONTENT_ZERO) {
      this.content[pfn] = CONTENT_ZERO;
      this.store.put(c);
      this.contentsEpoch++;
    }
    const block = this.blocks[pfn >>> this.blockShift]!;
    this.pushFree(block, pfn);
    if (block.online && !block.isolated) this.nrFreeOnline++;
  }

  /** Put a free frame at the head of its block's free list (handed out first). */
  private pushFree(block: MemoryBlock, pfn: number): void {
    const head = block.freeHead;
    this.lruPrev[pfn] = -1;
    this.lruNext[pfn] = head;
    if (head >= 0) this.lruPrev[head] = pfn;
    block.freeHead = pfn;
    block.nrFree++;
  }

  /** Take a free frame off its block's free list, wherever it is on it. */
  private unlinkFree(block: MemoryBlock, pfn: number): void {
    const prev = this.lruPrev[pfn]!;
    const next = this.lruNext[pfn]!;
    if (prev >= 0) this.lruNext[prev] = next;
    else block.freeHead = next;
    if (next >= 0) this.lruPrev[next] = prev;
    this.lruPrev[pfn] = -1;
    this.lruNext[pfn] = -1;
    block.nrFree--;
  }

  /** get_page() */
  getPage(pfn: number): void {
    this.count[pfn]!++;
  }

  /** put_page(): drops a reference, freeing the frame when it was the last. */
  putPage(pfn: number): void {
    const c = --this.count[pfn]!;
    if (c === 0) this.freeFrame(pfn);
    else if (c < 0) bug(`put_page on pfn ${pfn} underflowed`);
  }

  /** get_page_unless_zero() */
  getPageUnlessZero(pfn: number): boolean {
    if (this.count[pfn] === 0) return false;
    this.count[pfn]!++;
    return true;
  }

  pageMapcount(pfn: number): number {
    return this.mapcount[pfn]! + 1;
  }

  isAnon(pfn: number): boolean {
    return (this.flags[pfn]! & PG_ANON) !== 0;
  }

  /** PageKsm(): mapping carries both PAGE_MAPPING_ANON and PAGE_MAPPING_KSM. */
  isKsm(pfn: number): boolean {
    return (this.flags[pfn]! & (PG_ANON | PG_KSM)) === (PG_ANON | PG_KSM);
  }

  trylockPage(pfn: number): boolean {
    if ((this.flags[pfn]! & PG_LOCKED) !== 0) return false;
    this.flags[pfn]! |= PG_LOCKED;
    return true;
  }

  /**
   * lock_page(): nothing in the model runs concurrently, so a page found locked here
   * is locked by someone who will not unlock it before we return: that is a bug,
   * not a wait.
   */
  lockPage(pfn: number): void {
    if (!this.trylockPage(pfn)) bug(`lock_page(pfn ${pfn}) would sleep forever: already locked`);
  }

  unlockPage(pfn: number): void {
    if ((this.flags[pfn]! & PG_LOCKED) === 0) bug(`unlock_page(pfn ${pfn}) not locked`);
    this.flags[pfn]! &= ~PG_LOCKED;
  }

  // ---- LRU lists -------------------------------------------------------------------

  /** Which list a page on the LRU is on, from its flags. */
  lruListOf(pfn: number): number {
    return lruListOfFlags(this.flags[pfn]!);
  }

  /** add_page_to_lru_list(): at the head (most recently used end). */
  lruAdd(pfn: number, list: number): void {
    assert((this.flags[pfn]! & PG_LRU) === 0, () => `pfn ${pfn} already on an LRU list`);
    let f = (this.flags[pfn]! | PG_LRU) & ~(PG_ACTIVE | PG_UNEVICTABLE);
    if (list === LRU_ACTIVE_ANON) f |= PG_ACTIVE;
    else if (list === LRU_UNEVICTABLE) f |= PG_UNEVICTABLE;
    this.flags[pfn] = f;
    const head = this.lruHead[list]!;
    this.lruPrev[pfn] = -1;
    this.lruNext[pfn] = head;
    if (head >= 0) this.lruPrev[head] = pfn;
    else this.lruTail[list] = pfn;
    this.lruHead[list] = pfn;
    this.lruSize[list]!++;
  }

  /** del_page_from_lru_list() */
  lruDel(pfn: number): void {
    const list = this.lruListOf(pfn);
    const prev = this.lruPrev[pfn]!;
    const next = this.lruNext[pfn]!;
    if (prev >= 0) this.lruNext[prev] = next;
    else this.lruHead[list] = next;
    if (next >= 0) this.lruPrev[next] = prev;
    else this.lruTail[list] = prev;
    this.lruPrev[pfn] = -1;
    this.lruNext[pfn] = -1;
    this.lruSize[list]!--;
    this.flags[pfn]! &= ~(PG_LRU | PG_ACTIVE | PG_UNEVICTABLE);
  }

  /** Move a page to the head of another (or the same) list. */
  lruMove(pfn: number, list: number): void {
    if ((this.flags[pfn]! & PG_LRU) !== 0) this.lruDel(pfn);
    this.lruAdd(pfn, list);
  }

  // ---- contents --------------------------------------------------------------------

  /** memcmp of two frames: <0, 0, >0 (frames sharing a content compare equal without a look). */
  comparePages(a: number, b: number): number {
    return this.store.compare(this.content[a]!, this.content[b]!);
  }

  /** Where memcmp of two frames stops: the first differing byte's offset, or PAGE_SIZE (contents.ts firstDifference()). */
  firstDifference(a: number, b: number): number {
    return this.store.firstDifference(this.content[a]!, this.content[b]!);
  }

  /** memcmp's sign (-1, 0, 1) for the last firstDifference() (contents.ts lastOrder). */
  lastOrder(): number {
    return this.store.lastOrder;
  }

  /** Byte `off` of the frame. */
  byteAt(pfn: number, off: number): number {
    return this.store.byteAt(this.content[pfn]!, off);
  }

  /** copy_highpage(dst, src): dst names src's content (shared, copy-on-write in the store). */
  copyPage(dst: number, src: number): void {
    const c = this.content[src]!;
    this.store.get(c);
    this.setContent(dst, c);
  }

  /** The frame's content becomes `id`, whose reference the caller took; the old one is put. */
  setContent(pfn: number, id: number): void {
    const old = this.content[pfn]!;
    this.content[pfn] = id;
    this.store.put(old);
    this.contentsEpoch++;
  }

  /** Write src[srcStart, srcStart + len) at byte `pageOff` of the frame. */
  writeBytes(pfn: number, pageOff: number, src: Buffer, srcStart: number, len: number): void {
    const store = this.store;
    if (len === PAGE_SIZE) {
      // A whole page: a new content (a fill when it is one), nothing copied first.
      this.setContent(pfn, store.fromBytes(src, srcStart));
      return;
    }
    this.content[pfn] = store.writeBytes(this.content[pfn]!, pageOff, src, srcStart, len);
    this.contentsEpoch++;
  }

  /** memset() len bytes at byte `pageOff` of the frame with `value`. */
  fillBytes(pfn: number, pageOff: number, value: number, len: number): void {
    const v = value & 0xff;
    if (len === PAGE_SIZE) {
      this.setContent(pfn, v);
      return;
    }
    this.content[pfn] = this.store.fillBytes(this.content[pfn]!, pageOff, v, len);
    this.contentsEpoch++;
  }

  // ---- blocks ------------------------------------------------------------------------

  /** Bring a block's frames into service: a fresh zeroed buffer, every frame free. */
  onlineBlock(block: MemoryBlock): void {
    assert(!block.online, () => `memory block ${block.index} already online`);
    block.online = true;
    block.isolated = false;
    block.nrFree = 0;
    block.freeHead = -1;
    if (!block.initialized) {
      // Never used: its frames get their metadata when first allocated (initBlock).
      block.nrFree = this.framesIn(block);
      this.nrFreeOnline += block.nrFree;
      return;
    }
    const end = Math.min(block.startPfn + block.nrPages, this.nrFrames);
    // Push in descending order so that allocation hands out ascending pfns.
    for (let pfn = end - 1; pfn >= block.startPfn; pfn--) {
      this.flags[pfn] = PG_BUDDY;
      this.count[pfn] = 0;
      this.mapcount[pfn] = -1;
      this.pushFree(block, pfn);
    }
    this.nrFreeOnline += block.nrFree;
  }

  /** Isolate a block so that nothing new is allocated from it. */
  isolateBlock(block: MemoryBlock): void {
    if (block.isolated) return;
    this.initBlock(block);
    block.isolated = true;
    this.nrFreeOnline -= block.nrFree;
  }

  unisolateBlock(block: MemoryBlock): void {
    if (!block.isolated) return;
    block.isolated = false;
    this.nrFreeOnline += block.nrFree;
  }

  /** Take an offline-ready block (every frame free) out of service. */
  offlineBlock(block: MemoryBlock): void {
    assert(block.isolated, () => `offlining memory block ${block.index} that is not isolated`);
    assert(block.nrFree === this.framesIn(block), () => `offlining memory block ${block.index} with frames in use`);
    for (let pfn = block.startPfn; pfn < block.startPfn + this.framesIn(block); pfn++) {
      this.flags[pfn] = PG_BUDDY | PG_OFFLINE;
      this.lruPrev[pfn] = -1;
      this.lruNext[pfn] = -1;
    }
    block.nrFree = 0;
    block.freeHead = -1;
    block.online = false;
    block.isolated = false;
    // Every frame is free: no mapping left to keep.
    this.mappings[block.index] = null;
  }

  framesIn(block: MemoryBlock): number {
    return Math.min(block.nrPages, this.nrFrames - block.startPfn);
  }

  onlineFrames(): number {
    let n = 0;
    for (const b of this.blocks) if (b.online) n += this.framesIn(b);
    return n;
  }

  describe(pfn: number): string {
    return `pfn ${pfn} (flags=${decodePageFlags(this.flags[pfn]!)} count=${this.count[pfn]} mapcount=${this.pageMapcount(pfn)})`;
  }
}
