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
  WORDS_PER_PAGE,
  decodePageFlags,
} from './constants.js';

/**
 * Physical memory: frames numbered 0..nrFrames-1, grouped in memory blocks.
 *
 * Contents live per block: one ArrayBuffer of `blockPages * 4096` bytes, seen as a
 * Buffer (for compare/fill/copy) and as a Uint32Array (for hashing), so no page ever
 * needs an object of its own. Offlining a block drops its buffer; onlining makes a
 * new, zeroed one.
 *
 * Metadata is one flat array per field, indexed by pfn (FLATMEM's mem_map rather
 * than per-section arrays: we never hot-add beyond the memory we boot with, so one
 * array per field is simpler and one indirection cheaper on every access).
 *
 *   flags[pfn]     page flags (constants.ts)
 *   count[pfn]     _count: references. 0 exactly when the frame is free (PG_BUDDY).
 *   mapcount[pfn]  _mapcount as Linux keeps it: -1 when no pte maps the page;
 *                  page_mapcount() is mapcount + 1.
 *   mapping[pfn]   anon_vma (PG_ANON), stable node (PG_ANON|PG_KSM, may be null),
 *                  ShmemFile (PG_SHMEM), or null. Freeing a frame resets it to null:
 *                  KSM's keyhole reference (get_ksm_page) relies on that.
 *   index[pfn]     page->index: the linear page index in its anon_vma or file.
 *   private[pfn]   the swap entry while PG_SWAPCACHE is set.
 *   lruPrev/Next   the frame's links in its LRU list (-1 when not on one).
 *
 * Facts about the contents, kept so that they need not be recomputed:
 *
 *   contentsEpoch      bumped by every write to any frame's bytes. Anything
 *                      computed from frame contents stays true while it holds
 *                      (KSM's memcmp memo relies on it).
 *   checksumMemo[pfn]  the frame's KSM checksum (jhash2 of its 4096 bytes), valid
 *   checksumValid[pfn] while this is 1. A pure function of the bytes, so using it
 *                      cannot change what KSM decides.
 *   zeroWords[pfn]     how many of the frame's 32-bit words, from its start, are 0
 *                      (0..1024), or -1 when not known. firstDifference() uses it
 *                      to find where two mostly-zero pages part without reading
 *                      their zeros again.
 *   neverUsed[pfn]     1 while the frame has not been handed out since its block
 *                      came online: its bytes are still the zeros of the fresh
 *                      buffer, so allocFrame(true) need not clear them. Cleared by
 *                      every allocator, so it does not rely on writers reporting.
 *
 * Every write to a frame's bytes goes through contentsChanged() (copyPage and
 * onlineBlock do the same themselves): it bumps the epoch and clears the frame's
 * checksum and zero-words memos. Whoever writes through dataOf()/wordsOf() must call it too;
 * KSM's checkInvariants recomputes every memoized checksum to catch one who did not.
 *
 * Always true: a free frame has count 0, mapcount -1, mapping null, flags exactly
 * PG_BUDDY (plus PG_OFFLINE when its block is offline); the zero page (pfn 0) is
 * PG_RESERVED, count 1, mapcount -1, and is never freed.
 */
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
  /** Page contents, or null while the block is offline. */
  data: Buffer | null;
  words: Uint32Array | null;
  online: boolean;
  /** Isolated for offlining: the allocator skips it (MIGRATE_ISOLATE). */
  isolated: boolean;
  /**
   * Free frames of this block: a list through the frames' lruPrev/lruNext links
   * (a free frame is on no LRU list, so, as the buddy allocator reuses page->lru,
   * its links are free to serve), headed by `freeHead`, `nrFree` long.
   */
  freeHead: number;
  nrFree: number;

  constructor(index: number, startPfn: number, nrPages: number) {
    this.index = index;
    this.startPfn = startPfn;
    this.nrPages = nrPages;
    this.data = null;
    this.words = null;
    this.online = false;
    this.isolated = false;
    this.freeHead = -1;
    this.nrFree = 0;
  }

  attachBuffer(): void {
    const ab = new ArrayBuffer(this.nrPages * PAGE_SIZE);
    this.data = Buffer.from(ab);
    this.words = new Uint32Array(ab);
  }

  releaseBuffer(): void {
    this.data = null;
    this.words = null;
  }
}

/** Words comparePages() looks at itself before calling Buffer.compare for the rest. */
const COMPARE_PREFIX_WORDS = 16;

/** The offset of the lowest non-zero byte of a non-zero little-endian word: memcmp order is byte order. */
function lowestByteSet(x: number): number {
  return (31 - Math.clz32(x & -x)) >>> 3;
}

export interface PhysMemOptions {
  memoryMiB: number;
  blockMiB: number;
}

export class PhysMem {
  readonly nrFrames: number;
  readonly blockPages: number;
  readonly blockShift: number;
  readonly blocks: MemoryBlock[];

  readonly flags: Uint32Array;
  readonly count: Int32Array;
  readonly mapcount: Int32Array;
  readonly mapping: (object | null)[];
  readonly index: Float64Array;
  readonly private: Uint32Array;
  readonly lruPrev: Int32Array;
  readonly lruNext: Int32Array;
  readonly checksumMemo: Uint32Array;
  readonly checksumValid: Uint8Array;
  readonly zeroWords: Int16Array;
  readonly neverUsed: Uint8Array;
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
    // HostKernel's checkKernelOptions() has checked both (types and limits); these
    // are what the arithmetic below relies on.
    if (!Number.isInteger(blockMiB) || blockMiB <= 0 || blockMiB > 2048 || (blockMiB & (blockMiB - 1)) !== 0) {
      throw new KernelError('EINVAL', `blockMiB must be a power of two up to 2048, got ${blockMiB}`);
    }
    if (!Number.isInteger(memoryMiB) || memoryMiB <= 0) {
      throw new KernelError('EINVAL', `memoryMiB must be a positive whole number, got ${memoryMiB}`);
    }
    this.blockPages = (blockMiB * 1024 * 1024) / PAGE_SIZE;
    this.blockShift = Math.log2(this.blockPages);
    this.nrFrames = (memoryMiB * 1024 * 1024) / PAGE_SIZE;
    if (this.nrFrames > 1 << 26) {
      throw new KernelError('EINVAL', `memoryMiB ${memoryMiB} exceeds the 256 GiB a pte can address`);
    }
    const n = this.nrFrames;
    this.flags = new Uint32Array(n);
    this.count = new Int32Array(n);
    this.mapcount = new Int32Array(n).fill(-1);
    this.mapping = new Array<object | null>(n).fill(null);
    this.index = new Float64Array(n);
    this.private = new Uint32Array(n);
    this.lruPrev = new Int32Array(n).fill(-1);
    this.lruNext = new Int32Array(n).fill(-1);
    this.checksumMemo = new Uint32Array(n);
    this.checksumValid = new Uint8Array(n);
    this.zeroWords = new Int16Array(n).fill(-1);
    this.neverUsed = new Uint8Array(n);
    this.contentsEpoch = 0;
    this.lruHead = new Int32Array(3).fill(-1);
    this.lruTail = new Int32Array(3).fill(-1);
    this.lruSize = new Int32Array(3);
    this.blocks = [];
    this.nrFreeOnline = 0;
    // Linux's memory blocks are all one size, but the last may be only partly
    // populated (a machine with 32 MiB and 128 MiB blocks has one block, a quarter
    // present). Here the last block simply has fewer frames.
    for (let b = 0; b * this.blockPages < n; b++) {
      const block = new MemoryBlock(b, b * this.blockPages, Math.min(this.blockPages, n - b * this.blockPages));
      this.blocks.push(block);
      this.onlineBlock(block);
    }
    // The zero page: reserved, one reference held forever, never mapped "normally".
    if (!this.allocSpecificFrame(this.zeroPfn)) bug(`pfn ${this.zeroPfn} is not free at boot`);
    this.flags[this.zeroPfn] = PG_RESERVED;
  }

  blockOf(pfn: number): MemoryBlock {
    return this.blocks[pfn >>> this.blockShift]!;
  }

  /** Byte offset of pfn's contents inside its block's buffer. */
  offsetOf(pfn: number): number {
    // A multiplication, not `<< PAGE_SHIFT`: in a 2 GiB block the offset reaches
    // 2^31, where a 32-bit shift turns negative.
    return (pfn & (this.blockPages - 1)) * PAGE_SIZE;
  }

  /**
   * The block buffer holding pfn (online blocks only). Reading is free; whoever writes
   * a frame's bytes through it must call contentsChanged(pfn).
   */
  dataOf(pfn: number): Buffer {
    const data = this.blocks[pfn >>> this.blockShift]!.data;
    if (data === null) bug(`pfn ${pfn} lies in offline memory block ${pfn >>> this.blockShift}`);
    return data;
  }

  wordsOf(pfn: number): Uint32Array {
    const words = this.blocks[pfn >>> this.blockShift]!.words;
    if (words === null) bug(`pfn ${pfn} lies in offline memory block ${pfn >>> this.blockShift}`);
    return words;
  }

  wordOffsetOf(pfn: number): number {
    return (pfn & (this.blockPages - 1)) * WORDS_PER_PAGE;
  }

  // ---- allocator -----------------------------------------------------------------

  /**
   * alloc_page(): a frame with count 1, flags 0, zeroed contents when `zero`.
   * Returns -1 when no online block has a free frame (the caller decides between
   * reclaim and ENOMEM). Lowest block first, so that tests see stable numbers.
   */
  allocFrame(zero: boolean): number {
    for (let b = 0; b < this.blocks.length; b++) {
      const block = this.blocks[b]!;
      if (block.nrFree === 0 || !block.online || block.isolated) continue;
      const pfn = block.freeHead;
      // A frame never used since its block came online is zero already.
      if (!this.handOut(block, pfn) && zero) {
        const off = this.offsetOf(pfn);
        block.data!.fill(0, off, off + PAGE_SIZE);
        this.contentsChanged(pfn);
      }
      return pfn;
    }
    return -1;
  }

  /** Allocate from anywhere but `avoid` (migration target for offlining). */
  allocFrameOutside(avoid: MemoryBlock): number {
    for (let b = 0; b < this.blocks.length; b++) {
      const block = this.blocks[b]!;
      if (block === avoid || block.nrFree === 0 || !block.online || block.isolated) continue;
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
    if ((this.flags[pfn]! & (PG_BUDDY | PG_OFFLINE)) !== PG_BUDDY || !block.online || block.isolated) return false;
    this.handOut(block, pfn);
    return true;
  }

  /**
   * What every allocator does with the free frame it picked (in an online,
   * non-isolated block): off the free list, count 1, flags 0, and no longer
   * never-used. Returns whether it was never used, i.e. its bytes are still zero.
   */
  private handOut(block: MemoryBlock, pfn: number): boolean {
    this.unlinkFree(block, pfn);
    this.nrFreeOnline--;
    this.flags[pfn] = 0;
    this.count[pfn] = 1;
    const fresh = this.neverUsed[pfn] !== 0;
    this.neverUsed[pfn] = 0;
    return fresh;
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
    this.mapping[pfn] = null;
    this.index[pfn] = 0;
    this.private[pfn] = 0;
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

  /** memcmp of two frames: <0, 0, >0. */
  comparePages(a: number, b: number): number {
    const offA = this.offsetOf(a);
    const offB = this.offsetOf(b);
    // Most pages a tree walk meets differ within their first few words, where the
    // native call's own cost (~90 ns) would dominate: look at the first 64 bytes
    // here, a word at a time, and leave the rest to Buffer.compare. memcmp order is
    // byte order: in a little-endian word the first differing byte is the lowest.
    const wa = this.wordsOf(a);
    const wb = this.wordsOf(b);
    const ia = offA >>> 2;
    const ib = offB >>> 2;
    for (let i = 0; i < COMPARE_PREFIX_WORDS; i++) {
      const x = wa[ia + i]!;
      const y = wb[ib + i]!;
      if (x !== y) {
        const shift = (31 - Math.clz32((x ^ y) & -(x ^ y))) & ~7;
        return ((x >>> shift) & 0xff) < ((y >>> shift) & 0xff) ? -1 : 1;
      }
    }
    const skip = COMPARE_PREFIX_WORDS * 4;
    return this.dataOf(a).compare(this.dataOf(b), offB + skip, offB + PAGE_SIZE, offA + skip, offA + PAGE_SIZE);
  }

  /**
   * Where memcmp of two frames stops: the offset of the first byte that differs, or
   * PAGE_SIZE when none does (the sign is then the order of the two bytes there).
   * KSM counts the bytes its memcmp reads with it (ksm/work.ts), so it must be the
   * exact byte, not the word, and cost little more than comparePages().
   *
   * Buffer.compare answers only "equal or not", and looking for the word in JS costs
   * ~3 µs a page, against ~0.1 µs for the native compare. Pages that agree past their
   * first 64 bytes and then part are mostly mostly-zero pages (a tree walk over
   * zero-filled pages with a little data each: the ksmpages benchmark is nothing
   * else). So: the first 64 bytes here, a word at a time (most comparisons end there);
   * then each page's run of leading zero words (zeroWords, memoized per frame): if
   * the runs differ, the shorter one ends at the first difference; if not, the
   * native compare from the end of the run, and only if that finds a difference,
   * the JS search for it, from there.
   */
  firstDifference(a: number, b: number): number {
    const wa = this.wordsOf(a);
    const wb = this.wordsOf(b);
    const ia = this.offsetOf(a) >>> 2;
    const ib = this.offsetOf(b) >>> 2;
    for (let i = 0; i < COMPARE_PREFIX_WORDS; i++) {
      const x = wa[ia + i]!;
      const y = wb[ib + i]!;
      if (x !== y) return i * 4 + lowestByteSet(x ^ y);
    }
    const za = this.leadingZeroWords(a);
    const zb = this.leadingZeroWords(b);
    // A run that ends first ends at a non-zero word where the other page holds 0.
    if (za < zb) return za * 4 + lowestByteSet(wa[ia + za]!);
    if (zb < za) return zb * 4 + lowestByteSet(wb[ib + zb]!);
    const from = za > COMPARE_PREFIX_WORDS ? za : COMPARE_PREFIX_WORDS;
    if (from === PAGE_SIZE / 4) return PAGE_SIZE; // both all zero
    const offA = ia << 2;
    const offB = ib << 2;
    if (this.dataOf(a).compare(this.dataOf(b), offB + from * 4, offB + PAGE_SIZE, offA + from * 4, offA + PAGE_SIZE) === 0) return PAGE_SIZE;
    for (let i = from; i < PAGE_SIZE / 4; i++) {
      const x = wa[ia + i]!;
      const y = wb[ib + i]!;
      if (x !== y) return i * 4 + lowestByteSet(x ^ y);
    }
    return bug(`frames ${a} and ${b}: Buffer.compare found a difference past word ${from} that their words do not show`);
  }

  /** How many words from the frame's start are 0 (memoized in zeroWords). */
  leadingZeroWords(pfn: number): number {
    let z = this.zeroWords[pfn]!;
    if (z >= 0) return z;
    const w = this.wordsOf(pfn);
    const i0 = this.offsetOf(pfn) >>> 2;
    z = 0;
    while (z < PAGE_SIZE / 4 && w[i0 + z] === 0) z++;
    this.zeroWords[pfn] = z;
    return z;
  }

  /** copy_highpage(dst, src): dst's checksum memo becomes src's (same bytes). */
  copyPage(dst: number, src: number): void {
    const offS = this.offsetOf(src);
    this.dataOf(src).copy(this.dataOf(dst), this.offsetOf(dst), offS, offS + PAGE_SIZE);
    this.checksumMemo[dst] = this.checksumMemo[src]!;
    this.checksumValid[dst] = this.checksumValid[src]!;
    this.zeroWords[dst] = this.zeroWords[src]!;
    this.contentsEpoch++;
  }

  /** The frame's bytes were written: forget what we knew of them. */
  contentsChanged(pfn: number): void {
    this.checksumValid[pfn] = 0;
    this.zeroWords[pfn] = -1;
    this.contentsEpoch++;
  }

  // ---- blocks ------------------------------------------------------------------------

  /** Bring a block's frames into service: a fresh zeroed buffer, every frame free. */
  onlineBlock(block: MemoryBlock): void {
    assert(!block.online, () => `memory block ${block.index} already online`);
    block.attachBuffer();
    this.contentsEpoch++;
    block.online = true;
    block.isolated = false;
    block.nrFree = 0;
    block.freeHead = -1;
    const end = Math.min(block.startPfn + block.nrPages, this.nrFrames);
    // Push in descending order so that allocation hands out ascending pfns.
    for (let pfn = end - 1; pfn >= block.startPfn; pfn--) {
      this.checksumValid[pfn] = 0;
      this.zeroWords[pfn] = -1;
      this.neverUsed[pfn] = 1;
      this.flags[pfn] = PG_BUDDY;
      this.count[pfn] = 0;
      this.mapcount[pfn] = -1;
      this.mapping[pfn] = null;
      this.pushFree(block, pfn);
    }
    this.nrFreeOnline += block.nrFree;
  }

  /** Isolate a block so that nothing new is allocated from it. */
  isolateBlock(block: MemoryBlock): void {
    if (block.isolated) return;
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
      this.checksumValid[pfn] = 0;
      this.zeroWords[pfn] = -1;
      this.neverUsed[pfn] = 0;
    }
    block.nrFree = 0;
    block.freeHead = -1;
    block.online = false;
    block.isolated = false;
    block.releaseBuffer();
    this.contentsEpoch++;
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
