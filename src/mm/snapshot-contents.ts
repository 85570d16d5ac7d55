import { JHASH2_PAGE_CHECKSUM, PAGE_CHECKSUM_BATCH, PageChecksumBatch, pageChecksum } from '../lib/jhash.js';
import { PAGE_SIZE } from './constants.js';
import type { ContentStore } from './contents.js';

/*
 * The content table of a kernel image: each distinct 4 KiB page once, in chunks;
 * frames in use and swap slots refer to their contents by index. Pages are told
 * apart by their jhash2 (the KSM checksum, taken from a frame's memo when valid) and
 * confirmed equal with Buffer.compare. Contents are numbered in the order they are
 * first met, which depends on the bytes only, never on which memos happened to be
 * valid.
 */

/** Distinct 4 KiB pages; content i is page i % chunkPages of chunks[i / chunkPages]. */
export interface ContentsImage {
  pages: number;
  chunkPages: number;
  /** Each chunkPages * 4096 bytes long, but the last, which holds the rest. */
  chunks: Uint8Array[];
}

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

/**
 * Pages to intern, by position 0..n-1 (the frames in use; the swap slots in use).
 * Page i is bytes [offset(i), offset(i) + 4096) of data(i); words(i) is the same
 * memory seen as u32 (offset(i) / 4 into it), or null where that memory is not
 * 4-byte aligned.
 */
export interface PagesToIntern {
  readonly n: number;
  /** null for a page whose bytes are not kept (interned as -1). */
  data(i: number): Buffer | null;
  words(i: number): Uint32Array | null;
  offset(i: number): number;
  /** Its jhash2 when already known (a valid checksum memo), else -1. */
  knownHash(i: number): number;
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

/** Distinct pages, found by hash and confirmed by Buffer.compare. */
export class ContentTable {
  /** Chunk c: CONTENT_CHUNK_PAGES pages from byte 0, a view into a slab. */
  private readonly chunks: Buffer[];
  private pages: number;
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

  /**
   * out[i] = the content index of page i of `pages`, interning the new ones, or -1
   * for a page whose bytes are not kept. Hashes a window of pages at a time in the
   * checksum batch's SIMD lanes, then interns the window in order.
   */
  internAll(pages: PagesToIntern, out: Int32Array | Uint32Array): void {
    const n = pages.n;
    const hash = scratchWindowHash;
    scratchBatch.clear();
    for (let base = 0; base < n; base += HASH_WINDOW) {
      const w = Math.min(HASH_WINDOW, n - base);
      for (let i = 0; i < w; i++) {
        const known = pages.knownHash(base + i);
        if (known >= 0) {
          hash[i] = known;
          continue;
        }
        const data = pages.data(base + i);
        if (data === null) continue;
        const words = pages.words(base + i);
        const off = pages.offset(base + i);
        if (words !== null) batchAdd(i, data, words, off);
        else {
          batchFlush();
          data.copy(scratchPageBytes, 0, off, off + PAGE_SIZE);
          batchAdd(i, scratchPageBytes, scratchPage, 0);
          batchFlush();
        }
      }
      batchFlush();
      for (let i = 0; i < w; i++) {
        const data = pages.data(base + i);
        out[base + i] = data === null ? -1 : this.intern(data, pages.offset(base + i), hash[i]!);
      }
    }
  }

  /**
   * out[i] = the content index of the store's content ids[i], interning the new ones,
   * or -1 where ids[i] is -1 (bytes not kept). Each distinct id is read and hashed
   * once: 24 guests' copies of a page cost one lookup each after the first. The
   * store's checksum memo is the table's own hash only while it holds jhash2 (a 6.x
   * kernel's KSM memoizes xxhash: then each distinct content is hashed here).
   */
  internContents(store: ContentStore, ids: Int32Array | Uint32Array, out: Int32Array | Uint32Array): void {
    const seen = new Map<number, number>();
    const memoIsJhash2 = store.sumName === JHASH2_PAGE_CHECKSUM.name;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id < 0) {
        out[i] = -1;
        continue;
      }
      let t = seen.get(id);
      if (t === undefined) {
        const v = store.view(id);
        const h = memoIsJhash2 && store.sumValid[id] !== 0 ? store.sum[id]! : pageChecksum(v.words, v.wordOff);
        t = this.intern(v.buf, v.off, h);
        seen.set(id, t);
      }
      out[i] = t;
    }
  }

  /** The index of the page at data[off, off + 4096) whose jhash2 is h, added if new. */
  private intern(data: Buffer, off: number, h: number): number {
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

/** A decoded content table (checked: every chunk has its size): copies content c out. */
export class ContentChunks {
  readonly pages: number;
  private readonly chunks: readonly Buffer[];
  private readonly chunkPages: number;
  /** contentIn()'s memo: the store content made for each entry, -1 before. */
  private made: Int32Array | null;
  private madeIn: ContentStore | null;

  constructor(pages: number, chunkPages: number, chunks: readonly Buffer[]) {
    this.pages = pages;
    this.chunkPages = chunkPages;
    this.chunks = chunks;
    this.made = null;
    this.madeIn = null;
  }

  /** The store's content for table entry c, with a reference for the caller (made once per entry). */
  contentIn(store: ContentStore, c: number): number {
    if (this.made === null || this.madeIn !== store) {
      this.made = new Int32Array(this.pages).fill(-1);
      this.madeIn = store;
    }
    const id = this.made[c]!;
    if (id >= 0) {
      store.get(id);
      return id;
    }
    const cp = this.chunkPages;
    const made = store.fromBytes(this.chunks[(c / cp) | 0]!, (c % cp) * PAGE_SIZE);
    this.made[c] = made;
    return made;
  }

  /** Copy content c to dst[dstOffset, dstOffset + 4096). */
  copy(c: number, dst: Buffer, dstOffset: number): void {
    const cp = this.chunkPages;
    const from = (c % cp) * PAGE_SIZE;
    this.chunks[(c / cp) | 0]!.copy(dst, dstOffset, from, from + PAGE_SIZE);
  }
}
