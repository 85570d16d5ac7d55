import { bug } from '../lib/errors.js';
import { PAGE_SIZE, WORDS_PER_PAGE } from './constants.js';

/**
 * The content store: what the bytes of every frame and swap slot are, each distinct
 * content held once, and contents a generator can make again not held at all.
 *
 * A frame (PhysMem.content[pfn]) and a swap slot (SwapDevice.content[off]) name a
 * content by its id, a u32. A content is one of:
 *
 *   FILL     ids 0..255: every byte of the page is the id (a page memset to one
 *            value). Id 0 is the zero page's contents, and what a free or never used
 *            frame holds, so a fresh typed array of ids means "all zero" with no
 *            walk. Fills are never freed and carry no reference count.
 *   SOURCE   a page a registered generator makes from a 4-word key (a synthetic
 *            image's page is decided by its four header words). Interned by
 *            (generator, key): every guest that boots the same page names one
 *            content. No bytes are kept; a bounded cache holds recently made ones.
 *   STORED   bytes of their own, in a slot of a slab chunk. The only kind ever
 *            written in place, and only while one reference holds it.
 *
 * Reference counts (refs[id]) count frames and swap slots naming the content; a
 * SOURCE or STORED content whose count drops to 0 is freed at once (its slot goes
 * back, its id is reused). The store never decides anything KSM or the mm sees:
 * contents are what a reader of the bytes would see, byte for byte, however held.
 *
 * Facts kept per content, each a pure function of its bytes and so safe to reuse
 * while the content is not written (a STORED content written in place drops them):
 *
 *   sum[id], sumValid[id]  KSM's checksum (the profile's calc_checksum(), of the
 *                          function sumName names: 'jhash2', or 6.x's 'xxhash'):
 *                          computed once per content, not per frame, so the same
 *                          page in 24 guests is hashed once. One kind at a time: a
 *                          kernel has one KSM, whose profile names it
 *                          (useChecksum()); a reader wanting another kind (the
 *                          snapshot's content table wants jhash2) uses the memo
 *                          only when sumName says it holds that kind. The road not
 *                          taken, an array per kind, would cost 5 B per content for
 *                          a memo only a snapshot of a 6.x kernel would read.
 *   lead[4id..4id+3]       its abbreviated key (firstDifference()): z, its run of
 *                          leading zero words (0..1024, or -1 when not known), then
 *                          words z, z+1 and z+2 (0 past the page's end). Two contents
 *                          part within those words, or agree on them, without a look
 *                          at either page: a tree walk over pages read once reads
 *                          16 bytes a node from one array instead of missing the
 *                          cache on each page (PostgreSQL's "abbreviated keys" for
 *                          sorting are the same idea). Kept up to date by the
 *                          store's own writers (writeBytes(), fillBytes()), which
 *                          know where they wrote; the first comparison makes it
 *                          for a content written any other way.
 *
 * Always true: kind[id] is FILL exactly for id < 256; a live SOURCE or STORED content
 * has refs >= 1; a STORED content's slot is in use by it alone; every id on the free
 * list has refs 0 and kind FREE.
 *
 * The road not taken: keeping the 4 KiB per frame (as before) costs a 96 GiB host
 * 96 GB, most of it zeros and pages repeated across guests. Hashing every write to
 * find duplicates of STORED pages was also left out: a write is usually followed by
 * more writes, and KSM finds the duplicates that matter anyway.
 */

export const CONTENT_FILL = 0;
export const CONTENT_SOURCE = 1;
export const CONTENT_STORED = 2;
/** An id on the free list. */
export const CONTENT_FREE = 3;

/** Ids 0..FILL_CONTENTS-1 are the byte fills; id b fills every byte with b. */
export const FILL_CONTENTS = 256;
/** The all-zero page. */
export const CONTENT_ZERO = 0;

/** A page generator: makes page `key` (4 u32) into out[wordOffset, wordOffset + 1024). */
export interface PageGenerator {
  /** For messages and snapshots: 'synthetic'. */
  readonly name: string;
  /**
   * True when every page it makes begins with its key, word for word (the synthetic
   * images' pages do: their four header words are the key). Then the key is the
   * page's first 16 bytes, and comparisons read it instead of making the page.
   */
  readonly keyIsHead: boolean;
  generate(k0: number, k1: number, k2: number, k3: number, out: Uint32Array, wordOffset: number): void;
}

/** Pages per slab chunk: 1 MiB, so an empty chunk given back is worth giving back. */
const CHUNK_SHIFT = 8;
const CHUNK_PAGES = 1 << CHUNK_SHIFT;

/** Pages the materialization cache holds (16 MiB). */
const CACHE_PAGES = 4096;
/** Views of SOURCE contents a caller may hold at once: the most recent ones are never evicted. */
const VIEWS_HELD = 16;

/** The bytes of a content, as materialize() leaves them: buf[off, off+4096), words from wordOff. */
export interface ContentView {
  buf: Buffer;
  words: Uint32Array;
  off: number;
  wordOff: number;
}

export class ContentStore {
  /** Per id: CONTENT_FILL, _SOURCE, _STORED or _FREE. */
  kind: Uint8Array;
  refs: Int32Array;
  /** STORED: its slot; SOURCE: its generator's index. */
  slot: Int32Array;
  /** SOURCE: its key, 4 words per id. */
  keys: Uint32Array;
  sum: Uint32Array;
  sumValid: Uint8Array;
  /** The checksum sum[] holds ('jhash2' unless KSM says otherwise: src/ksm/ksm.ts). */
  sumName: string;
  /**
   * Per id, LEAD_STRIDE entries: its run of leading zero words (0..1024, or -1 when
   * not known), and the three words after the run (0 past the page's end).
   */
  lead: Int32Array;
  /** The materialization cache slot holding this content, or -1. */
  private cacheSlotOf: Int32Array;
  private capacity: number;
  /** Ids never used yet start here; freed ids go on freeIds. */
  private nextId: number;
  private freeIds: Int32Array;
  private nrFreeIds: number;

  /** Slab chunks, null where given back. */
  private readonly chunks: (Buffer | null)[];
  private readonly chunkWords: (Uint32Array | null)[];
  private chunkUsed: Int32Array;
  /** Per slot: the next free slot of its chunk, -1 ends. Per chunk: its free list head. */
  private slotNext: Int32Array;
  /** Per slot: the STORED content in it, or -1 (for compaction, which moves contents). */
  private slotOwner: Int32Array;
  /** Free slots in live chunks, and slots in live chunks. */
  private freeSlots: number;
  private liveSlots: number;
  private chunkFreeHead: Int32Array;
  /** Chunks with a free slot, as a stack (lowest pushed last is not promised). */
  private readonly openChunks: number[];
  private inOpen: Uint8Array;

  /** compactSlabs() is running (it frees slots itself). */
  private compacting: boolean;

  private readonly generators: PageGenerator[];
  /** SOURCE interning: open addressing on (generator, key); entries are id + 1. */
  private srcTable: Int32Array;
  private srcMask: number;
  private nrSource: number;

  /**
   * The materialization cache: CACHE_PAGES pages, filled round-robin; allocated when
   * the first SOURCE content is read (a kernel without generators never pays for it).
   */
  private cacheBuf: Buffer | null;
  private cacheWords: Uint32Array | null;
  private readonly cacheOwner: Int32Array;
  /** When each slot was last returned by view() (viewClock then). */
  private readonly cacheUsed: Float64Array;
  private viewClock: number;
  private cacheNext: number;
  /** The byte fills' pages, each made on first read (the same 4 KiB for every frame). */
  private readonly fillBufs: (Buffer | null)[];
  private readonly fillWords: (Uint32Array | null)[];

  /** Live contents by kind, for statistics and estimates. */
  nrStored: number;
  nrSourceLive: number;
  /** Bumped by every write in place; anything computed from contents holds while it stands. */
  epoch: number;

  constructor() {
    this.capacity = 1024;
    this.kind = new Uint8Array(this.capacity);
    this.refs = new Int32Array(this.capacity);
    this.slot = new Int32Array(this.capacity);
    this.keys = new Uint32Array(this.capacity * 4);
    this.sum = new Uint32Array(this.capacity);
    this.sumValid = new Uint8Array(this.capacity);
    this.sumName = 'jhash2';
    this.lead = new Int32Array(this.capacity * LEAD_STRIDE);
    for (let id = FILL_CONTENTS; id < this.capacity; id++) this.lead[id * LEAD_STRIDE] = -1;
    // The fills' keys: the zero page is one run of 1024 zero words; fill b is b
    // repeated from its first word.
    this.lead[0] = WORDS_PER_PAGE;
    for (let b = 1; b < FILL_CONTENTS; b++) this.lead.fill(Math.imul(b, 0x01010101) | 0, b * LEAD_STRIDE + 1, b * LEAD_STRIDE + LEAD_STRIDE);
    this.cacheSlotOf = new Int32Array(this.capacity).fill(-1);
    this.nextId = FILL_CONTENTS;
    this.freeIds = new Int32Array(256);
    this.nrFreeIds = 0;
    this.chunks = [];
    this.chunkWords = [];
    this.chunkUsed = new Int32Array(16);
    this.slotNext = new Int32Array(16 * CHUNK_PAGES);
    this.slotOwner = new Int32Array(16 * CHUNK_PAGES).fill(-1);
    this.freeSlots = 0;
    this.liveSlots = 0;
    this.chunkFreeHead = new Int32Array(16).fill(-1);
    this.openChunks = [];
    this.inOpen = new Uint8Array(16);
    this.compacting = false;
    this.generators = [];
    this.srcTable = new Int32Array(1024);
    this.srcMask = 1023;
    this.nrSource = 0;
    this.cacheBuf = null;
    this.cacheWords = null;
    this.cacheOwner = new Int32Array(CACHE_PAGES).fill(-1);
    this.cacheUsed = new Float64Array(CACHE_PAGES).fill(-CACHE_PAGES);
    this.viewClock = 0;
    this.cacheNext = 0;
    this.fillBufs = new Array<Buffer | null>(FILL_CONTENTS).fill(null);
    this.fillWords = new Array<Uint32Array | null>(FILL_CONTENTS).fill(null);
    this.nrStored = 0;
    this.nrSourceLive = 0;
    this.epoch = 0;
  }

  /**
   * The checksum the memo holds from now on (KSM's profile's, when the engine is made):
   * a different one forgets every memoized sum.
   */
  useChecksum(name: string): void {
    if (name === this.sumName) return;
    this.sumName = name;
    this.sumValid.fill(0);
  }

  // ---- ids ---------------------------------------------------------------------------

  private newId(kind: number): number {
    let id: number;
    if (this.nrFreeIds > 0) id = this.freeIds[--this.nrFreeIds]!;
    else {
      if (this.nextId === this.capacity) this.growIds();
      id = this.nextId++;
    }
    this.kind[id] = kind;
    this.refs[id] = 1;
    this.sumValid[id] = 0;
    this.lead[id * LEAD_STRIDE] = -1;
    return id;
  }

  private growIds(): void {
    const cap = this.capacity * 2;
    const grow = <T extends Uint8Array | Int32Array | Uint32Array>(a: T, n: number, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.kind = grow(this.kind, cap, (n) => new Uint8Array(n));
    this.refs = grow(this.refs, cap, (n) => new Int32Array(n));
    this.slot = grow(this.slot, cap, (n) => new Int32Array(n));
    this.keys = grow(this.keys, cap * 4, (n) => new Uint32Array(n));
    this.sum = grow(this.sum, cap, (n) => new Uint32Array(n));
    this.sumValid = grow(this.sumValid, cap, (n) => new Uint8Array(n));
    const lead = new Int32Array(cap * LEAD_STRIDE);
    lead.set(this.lead);
    for (let id = this.capacity; id < cap; id++) lead[id * LEAD_STRIDE] = -1;
    this.lead = lead;
    const c = new Int32Array(cap).fill(-1);
    c.set(this.cacheSlotOf);
    this.cacheSlotOf = c;
    this.capacity = cap;
  }

  /** One more reference to `id` (a frame or a swap slot names it). */
  get(id: number): void {
    if (id >= FILL_CONTENTS) this.refs[id]!++;
  }

  /** One reference less; frees a SOURCE or STORED content when it was the last. */
  put(id: number): void {
    if (id < FILL_CONTENTS) return;
    const r = --this.refs[id]!;
    if (r > 0) return;
    if (r < 0) bug(`content ${id} put with no references`);
    const kind = this.kind[id]!;
    if (kind === CONTENT_STORED) {
      this.freeSlot(this.slot[id]!);
      this.nrStored--;
    } else if (kind === CONTENT_SOURCE) {
      this.unhashSource(id);
      this.nrSourceLive--;
    } else bug(`content ${id} of kind ${kind} put to 0`);
    const cs = this.cacheSlotOf[id]!;
    if (cs >= 0) {
      this.cacheOwner[cs] = -1;
      this.cacheSlotOf[id] = -1;
    }
    this.kind[id] = CONTENT_FREE;
    this.sumValid[id] = 0;
    if (this.nrFreeIds === this.freeIds.length) {
      const f = new Int32Array(this.freeIds.length * 2);
      f.set(this.freeIds);
      this.freeIds = f;
    }
    this.freeIds[this.nrFreeIds++] = id;
  }

  // ---- slabs -------------------------------------------------------------------------

  /** A free slot for content `id` (in any chunk but `except`), now owned by it. */
  private allocSlot(id: number, except = -1): number {
    let c = -1;
    for (let i = this.openChunks.length - 1; i >= 0; i--) {
      const top = this.openChunks[i]!;
      if (this.chunkFreeHead[top]! >= 0 && this.chunks[top] !== null) {
        if (top === except) continue;
        c = top;
        break;
      }
      // Full or given back: off the stack (only ever the top one or the one below `except`).
      this.openChunks.splice(i, 1);
      this.inOpen[top] = 0;
    }
    if (c < 0) c = this.newChunk();
    const s = this.chunkFreeHead[c]!;
    this.chunkFreeHead[c] = this.slotNext[s]!;
    this.chunkUsed[c]!++;
    this.slotOwner[s] = id;
    this.freeSlots--;
    return s;
  }

  /** A chunk for more slots: one given back earlier if any, else a new one. */
  private newChunk(): number {
    let c = this.chunks.indexOf(null);
    if (c < 0) {
      c = this.chunks.length;
      this.chunks.push(null);
      this.chunkWords.push(null);
      if (c === this.chunkUsed.length) {
        const n = c * 2;
        const used = new Int32Array(n);
        used.set(this.chunkUsed);
        this.chunkUsed = used;
        const head = new Int32Array(n).fill(-1);
        head.set(this.chunkFreeHead);
        this.chunkFreeHead = head;
        const next = new Int32Array(n * CHUNK_PAGES);
        next.set(this.slotNext);
        this.slotNext = next;
        const owner = new Int32Array(n * CHUNK_PAGES).fill(-1);
        owner.set(this.slotOwner);
        this.slotOwner = owner;
        const open = new Uint8Array(n);
        open.set(this.inOpen);
        this.inOpen = open;
      }
    }
    const ab = new ArrayBuffer(CHUNK_PAGES * PAGE_SIZE);
    this.chunks[c] = Buffer.from(ab);
    this.chunkWords[c] = new Uint32Array(ab);
    this.chunkUsed[c] = 0;
    const base = c << CHUNK_SHIFT;
    for (let i = 0; i < CHUNK_PAGES; i++) this.slotNext[base + i] = i + 1 < CHUNK_PAGES ? base + i + 1 : -1;
    this.chunkFreeHead[c] = base;
    this.openChunks.push(c);
    this.inOpen[c] = 1;
    this.freeSlots += CHUNK_PAGES;
    this.liveSlots += CHUNK_PAGES;
    return c;
  }

  /** A slot back on its chunk's free list; a chunk left empty is given back to the OS. */
  private freeSlot(s: number): void {
    this.releaseSlot(s);
    // Contents are freed in any order (KSM frees every other page of a run of pairs),
    // so chunks rarely empty by themselves: when a third of the slots held are free,
    // move the contents of the emptiest chunks into the others' holes and give the
    // emptied chunks back. Contents are named by id, never by slot, so moving one is
    // a copy and two stores (slot[id], slotOwner).
    if (this.freeSlots > 2 * CHUNK_PAGES && this.freeSlots * 3 > this.liveSlots && !this.compacting) this.compactSlabs();
  }

  private releaseSlot(s: number): void {
    const c = s >>> CHUNK_SHIFT;
    this.slotNext[s] = this.chunkFreeHead[c]!;
    this.chunkFreeHead[c] = s;
    this.slotOwner[s] = -1;
    this.freeSlots++;
    const used = --this.chunkUsed[c]!;
    if (used === 0) {
      this.chunks[c] = null;
      this.chunkWords[c] = null;
      this.chunkFreeHead[c] = -1;
      this.freeSlots -= CHUNK_PAGES;
      this.liveSlots -= CHUNK_PAGES;
    } else if (this.inOpen[c] === 0) {
      this.openChunks.push(c);
      this.inOpen[c] = 1;
    }
  }

  /** Empty the least used chunks into the others' free slots until less than a chunk's worth is free. */
  private compactSlabs(): void {
    this.compacting = true;
    while (this.freeSlots >= 2 * CHUNK_PAGES) {
      let src = -1;
      for (let c = 0; c < this.chunks.length; c++) {
        if (this.chunks[c] !== null && (src < 0 || this.chunkUsed[c]! < this.chunkUsed[src]!)) src = c;
      }
      if (src < 0 || this.freeSlots - (CHUNK_PAGES - this.chunkUsed[src]!) < this.chunkUsed[src]!) break;
      const base = src << CHUNK_SHIFT;
      const from = this.chunks[src]!;
      for (let i = 0; i < CHUNK_PAGES && this.chunks[src] !== null; i++) {
        const id = this.slotOwner[base + i]!;
        if (id < 0) continue;
        const to = this.allocSlot(id, src);
        from.copy(this.chunks[to >>> CHUNK_SHIFT]!, (to & (CHUNK_PAGES - 1)) << 12, i << 12, (i + 1) << 12);
        this.slot[id] = to;
        this.releaseSlot(base + i);
      }
    }
    this.compacting = false;
  }

  /** Bytes held in slab chunks (what STORED contents cost). */
  get storedBytes(): number {
    let n = 0;
    for (const c of this.chunks) if (c !== null) n += c.length;
    return n;
  }

  // ---- making contents ----------------------------------------------------------------

  /** A new STORED content with refs 1, its bytes a copy of content `from`. */
  storedCopyOf(from: number): number {
    const id = this.newId(CONTENT_STORED);
    const s = this.allocSlot(id);
    this.slot[id] = s;
    this.nrStored++;
    const dst = this.chunks[s >>> CHUNK_SHIFT]!;
    const doff = (s & (CHUNK_PAGES - 1)) << 12;
    if (from < FILL_CONTENTS) dst.fill(from, doff, doff + PAGE_SIZE);
    else {
      const v = this.view(from);
      v.buf.copy(dst, doff, v.off, v.off + PAGE_SIZE);
    }
    if (this.sumValid[from] !== 0) {
      this.sum[id] = this.sum[from]!;
      this.sumValid[id] = 1;
    }
    this.lead.copyWithin(id * LEAD_STRIDE, from * LEAD_STRIDE, from * LEAD_STRIDE + LEAD_STRIDE);
    return id;
  }

  /** Register a generator; SOURCE contents name it by the number returned. */
  registerGenerator(gen: PageGenerator): number {
    const i = this.generators.indexOf(gen);
    if (i >= 0) return i;
    this.generators.push(gen);
    return this.generators.length - 1;
  }

  /** How many generators are registered (their ids are 0 to this - 1). */
  nrGenerators(): number {
    return this.generators.length;
  }

  generatorName(g: number): string {
    return this.generators[g]!.name;
  }

  /** The SOURCE content (generator g, key), with one more reference (made when new). */
  internSource(g: number, k0: number, k1: number, k2: number, k3: number): number {
    if (g < 0 || g >= this.generators.length) bug(`no page generator ${g}`);
    const mask = this.srcMask;
    let h = Math.imul(g + 1, 0x9e3779b1) ^ k0;
    h = Math.imul(h ^ (h >>> 15), 0x85ebca6b) ^ k1;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) ^ k2;
    h = Math.imul(h ^ (h >>> 16), 0x27d4eb2f) ^ k3;
    h ^= h >>> 15;
    let p = h & mask;
    const keys = this.keys;
    for (;;) {
      const e = this.srcTable[p]!;
      if (e === 0) break;
      const id = e - 1;
      const k = id * 4;
      if (this.slot[id] === g && keys[k] === k0 && keys[k + 1] === k1 && keys[k + 2] === k2 && keys[k + 3] === k3) {
        this.refs[id]!++;
        return id;
      }
      p = (p + 1) & mask;
    }
    const id = this.newId(CONTENT_SOURCE);
    this.slot[id] = g;
    const k = id * 4;
    this.keys[k] = k0 >>> 0;
    this.keys[k + 1] = k1 >>> 0;
    this.keys[k + 2] = k2 >>> 0;
    this.keys[k + 3] = k3 >>> 0;
    // A keyed generator's page begins with its key: its abbreviated key is there too
    // unless the key's first two words are both 0 (word 4 is not in the key).
    // (this.keys: newId() may have grown the arrays since `keys` was read.)
    if (this.generators[g]!.keyIsHead) {
      const kw = this.keys;
      const z = kw[k] !== 0 ? 0 : kw[k + 1] !== 0 ? 1 : -1;
      if (z >= 0) {
        const l = id * LEAD_STRIDE;
        this.lead[l] = z;
        this.lead[l + 1] = kw[k + z]! | 0;
        this.lead[l + 2] = kw[k + z + 1]! | 0;
        this.lead[l + 3] = kw[k + z + 2]! | 0;
      }
    }
    this.srcTable[p] = id + 1;
    this.nrSource++;
    this.nrSourceLive++;
    if (this.nrSource * 2 > this.srcTable.length) this.rehashSource(this.srcTable.length * 2);
    return id;
  }

  private hashOf(id: number): number {
    const k = id * 4;
    const keys = this.keys;
    let h = Math.imul(this.slot[id]! + 1, 0x9e3779b1) ^ keys[k]!;
    h = Math.imul(h ^ (h >>> 15), 0x85ebca6b) ^ keys[k + 1]!;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) ^ keys[k + 2]!;
    h = Math.imul(h ^ (h >>> 16), 0x27d4eb2f) ^ keys[k + 3]!;
    h ^= h >>> 15;
    return h;
  }

  /** Take a SOURCE content out of the interning table (linear probing: re-seat what follows). */
  private unhashSource(id: number): void {
    const mask = this.srcMask;
    let p = this.hashOf(id) & mask;
    while (this.srcTable[p] !== id + 1) {
      if (this.srcTable[p] === 0) bug(`SOURCE content ${id} missing from its table`);
      p = (p + 1) & mask;
    }
    this.srcTable[p] = 0;
    this.nrSource--;
    for (let q = (p + 1) & mask; this.srcTable[q] !== 0; q = (q + 1) & mask) {
      const e = this.srcTable[q]!;
      this.srcTable[q] = 0;
      let r = this.hashOf(e - 1) & mask;
      while (this.srcTable[r] !== 0) r = (r + 1) & mask;
      this.srcTable[r] = e;
    }
    if (this.srcTable.length > 1024 && this.nrSource * 8 < this.srcTable.length) this.rehashSource(this.srcTable.length / 2);
  }

  private rehashSource(size: number): void {
    const old = this.srcTable;
    this.srcTable = new Int32Array(size);
    this.srcMask = size - 1;
    for (let i = 0; i < old.length; i++) {
      const e = old[i]!;
      if (e === 0) continue;
      let r = this.hashOf(e - 1) & this.srcMask;
      while (this.srcTable[r] !== 0) r = (r + 1) & this.srcMask;
      this.srcTable[r] = e;
    }
  }

  /**
   * The content holding the 4096 bytes at buf[off..]: a fill when every byte is one
   * value, else a new STORED content. With one reference.
   */
  fromBytes(buf: Buffer, off: number): number {
    const b = fillByteOf(buf, off);
    if (b >= 0) return b;
    const id = this.newId(CONTENT_STORED);
    const s = this.allocSlot(id);
    this.slot[id] = s;
    this.nrStored++;
    buf.copy(this.chunks[s >>> CHUNK_SHIFT]!, (s & (CHUNK_PAGES - 1)) << 12, off, off + PAGE_SIZE);
    return id;
  }

  // ---- reading -------------------------------------------------------------------------

  /**
   * Where content `id`'s bytes can be read: `scratchView` filled in and returned (no
   * allocation). For a SOURCE content the bytes are made into the cache; they stay
   * valid for the next VIEWS_HELD views at least, so a caller may hold a few views at
   * once (a comparison two, a checksum batch eight), never keep one. (A plain round
   * robin once evicted the first page of a comparison to make the second, one time
   * in 4096, and two different pages compared equal.)
   */
  view(id: number, into: ContentView = scratchView): ContentView {
    const kind = this.kind[id]!;
    if (kind === CONTENT_STORED) {
      const s = this.slot[id]!;
      const c = s >>> CHUNK_SHIFT;
      into.buf = this.chunks[c]!;
      into.words = this.chunkWords[c]!;
      into.off = (s & (CHUNK_PAGES - 1)) << 12;
      into.wordOff = into.off >>> 2;
      return into;
    }
    if (kind === CONTENT_FILL) {
      let buf = this.fillBufs[id]!;
      if (buf === null) {
        const ab = new ArrayBuffer(PAGE_SIZE);
        buf = Buffer.from(ab);
        buf.fill(id);
        this.fillBufs[id] = buf;
        this.fillWords[id] = new Uint32Array(ab);
      }
      into.buf = buf;
      into.words = this.fillWords[id]!;
      into.off = 0;
      into.wordOff = 0;
      return into;
    }
    if (kind !== CONTENT_SOURCE) bug(`reading content ${id}, which is free`);
    let cs = this.cacheSlotOf[id]!;
    if (this.cacheBuf === null) {
      const ab = new ArrayBuffer(CACHE_PAGES * PAGE_SIZE);
      this.cacheBuf = Buffer.from(ab);
      this.cacheWords = new Uint32Array(ab);
    }
    const clock = ++this.viewClock;
    if (cs < 0) {
      // Round robin, but never a slot a caller may still hold: one of the last
      // VIEWS_HELD views (a comparison holds two, a checksum batch eight).
      cs = this.cacheNext;
      while (clock - this.cacheUsed[cs]! <= VIEWS_HELD) cs = (cs + 1) % CACHE_PAGES;
      this.cacheNext = (cs + 1) % CACHE_PAGES;
      const prev = this.cacheOwner[cs]!;
      if (prev >= 0) this.cacheSlotOf[prev] = -1;
      this.cacheOwner[cs] = id;
      this.cacheSlotOf[id] = cs;
      const k = id * 4;
      const keys = this.keys;
      this.generators[this.slot[id]!]!.generate(keys[k]!, keys[k + 1]!, keys[k + 2]!, keys[k + 3]!, this.cacheWords!, cs * WORDS_PER_PAGE);
    }
    this.cacheUsed[cs] = clock;
    into.buf = this.cacheBuf;
    into.words = this.cacheWords!;
    into.off = cs * PAGE_SIZE;
    into.wordOff = cs * WORDS_PER_PAGE;
    return into;
  }

  /** memcmp of two contents: -1, 0 or 1 (firstDifference()'s sign). */
  compare(a: number, b: number): number {
    this.firstDifference(a, b);
    return this.lastOrder;
  }

  /**
   * Where memcmp of two contents stops: the offset of the first byte that differs, or
   * PAGE_SIZE when none does (the sign is then the order of the two bytes there).
   * KSM counts the bytes its memcmp reads with it (ksm/work.ts), so it must be the
   * exact byte, not the word, and cost little more than compare().
   *
   * Buffer.compare answers only "equal or not", and looking for the word in JS costs
   * ~3 µs a page, against ~0.1 µs for the native compare. So: the same content at
   * once; then the two abbreviated keys (lead[]: the run of leading zero words and
   * the three words after it), which settle most comparisons without reading either
   * page: runs that differ part where the shorter ends, equal runs part at the first
   * of the next three words that differ. Only contents agreeing that far are read: the
   * next COMPARE_PREFIX_WORDS words a word at a time, then the native compare for the
   * rest, and only if that finds a difference, the JS search for it.
   */
  firstDifference(a: number, b: number): number {
    if (a === b) return this.differ(PAGE_SIZE, 0);
    if (a < FILL_CONTENTS && b < FILL_CONTENTS) return this.differ(0, a < b ? -1 : 1);
    const lead = this.lead;
    const pa = a * LEAD_STRIDE;
    const pb = b * LEAD_STRIDE;
    let za = lead[pa]!;
    let zb = lead[pb]!;
    if (za < 0 || zb < 0) {
      // A key to make, which means reading a page: unless a generated page's head
      // tells the two apart first (two different generated pages always part there:
      // their keys differ), so that one that fell out of the cache is not made again
      // just for that.
      if (this.headsKnown(a, b)) {
        const at = this.partInHeads(a, b, 0);
        if (at >= 0) return at;
      }
      if (za < 0) za = this.makeLead(a);
      if (zb < 0) zb = this.makeLead(b);
    }
    if (za < zb) return this.differWords(za, lead[pa + 1]!, 0);
    if (zb < za) return this.differWords(zb, 0, lead[pb + 1]!);
    // Both zero up to word za; then the key's words, as far as the page goes.
    if (za === WORDS_PER_PAGE) return this.differ(PAGE_SIZE, 0);
    if (lead[pa + 1] !== lead[pb + 1]) return this.differWords(za, lead[pa + 1]!, lead[pb + 1]!);
    if (za + 1 === WORDS_PER_PAGE) return this.differ(PAGE_SIZE, 0);
    if (lead[pa + 2] !== lead[pb + 2]) return this.differWords(za + 1, lead[pa + 2]!, lead[pb + 2]!);
    if (za + 2 === WORDS_PER_PAGE) return this.differ(PAGE_SIZE, 0);
    if (lead[pa + 3] !== lead[pb + 3]) return this.differWords(za + 2, lead[pa + 3]!, lead[pb + 3]!);
    if (za + 3 === WORDS_PER_PAGE) return this.differ(PAGE_SIZE, 0);
    let from = za + 3;
    // The keys agree. A generated page's head words past them are still known without
    // making it (two pages of one image agree on its tag and part in the next words).
    if (from < KEY_WORDS && this.headsKnown(a, b)) {
      const at = this.partInHeads(a, b, from);
      if (at >= 0) return at;
      from = KEY_WORDS;
    }
    // Read the pages from there (a STORED content's view is its slot, in place).
    const va = this.view(a, scratchViewA);
    const vb = this.view(b, scratchViewB);
    const wa = va.words;
    const wb = vb.words;
    const ia = va.wordOff;
    const ib = vb.wordOff;
    // The next COMPARE_PREFIX_WORDS words here, a word at a time (most comparisons that
    // get this far end there, and the native call's own cost, ~90 ns, would dominate);
    // a short rest likewise; a long one by Buffer.compare, and only if that finds a
    // difference, the JS search for it.
    const end = WORDS_PER_PAGE - from <= COMPARE_TAIL_WORDS ? WORDS_PER_PAGE : from + COMPARE_PREFIX_WORDS;
    for (let i = from; i < end; i++) {
      const x = wa[ia + i]!;
      const y = wb[ib + i]!;
      if (x !== y) return this.differWords(i, x, y);
    }
    if (end === WORDS_PER_PAGE) return this.differ(PAGE_SIZE, 0);
    // (A view of a SOURCE page made above is still valid: nothing was made since.)
    if (va.buf.compare(vb.buf, vb.off + end * 4, vb.off + PAGE_SIZE, va.off + end * 4, va.off + PAGE_SIZE) === 0) return this.differ(PAGE_SIZE, 0);
    for (let i = end; i < WORDS_PER_PAGE; i++) {
      const x = wa[ia + i]!;
      const y = wb[ib + i]!;
      if (x !== y) return this.differWords(i, x, y);
    }
    return bug(`contents ${a} and ${b}: Buffer.compare found a difference past word ${end} that their words do not show`);
  }

  /**
   * memcmp's sign for the last firstDifference(): -1, 0 or 1 (a against b). Read it
   * right after the call; the next call replaces it.
   */
  lastOrder = 0;

  /** firstDifference()'s answer: offset `at`, and memcmp's sign in lastOrder. */
  private differ(at: number, order: number): number {
    this.lastOrder = order;
    return at;
  }

  /** The pages differ first in word i, whose values are x (a's) and y (b's): memcmp order is byte order. */
  private differWords(i: number, x: number, y: number): number {
    const byte = lowestByteSet(x ^ y);
    const shift = byte << 3;
    this.lastOrder = ((x >>> shift) & 0xff) < ((y >>> shift) & 0xff) ? -1 : 1;
    return i * 4 + byte;
  }

  /** A generated page is one of the two, and both heads are known without making a page (headWord()). */
  private headsKnown(a: number, b: number): boolean {
    return (this.kind[a] === CONTENT_SOURCE || this.kind[b] === CONTENT_SOURCE) && this.headKnown(a) && this.headKnown(b);
  }

  /** Where two contents whose heads are known (headsKnown()) part within words [from, KEY_WORDS), or -1. */
  private partInHeads(a: number, b: number, from: number): number {
    for (let i = from; i < KEY_WORDS; i++) {
      const x = this.headWord(a, i);
      const y = this.headWord(b, i);
      if (x !== y) return this.differWords(i, x, y);
    }
    return -1;
  }

  /** Make content id's abbreviated key (lead[]) from its bytes; returns its zero run. */
  private makeLead(id: number): number {
    const v = this.view(id);
    return this.leadFrom(id, v.words, v.wordOff, 0);
  }

  /**
   * Set content id's key knowing its first `from` words are 0 (w[i0..] are its words):
   * the run is counted on from there. Returns the run.
   */
  private leadFrom(id: number, w: Uint32Array, i0: number, from: number): number {
    let z = from;
    // Two words a step from an even word (WORDS_PER_PAGE is even), then the odd one out.
    if ((z & 1) !== 0 && z < WORDS_PER_PAGE && w[i0 + z] === 0) z++;
    if ((z & 1) === 0) {
      while (z < WORDS_PER_PAGE && (w[i0 + z]! | w[i0 + z + 1]!) === 0) z += 2;
      if (z < WORDS_PER_PAGE && w[i0 + z] === 0) z++;
    }
    const p = id * LEAD_STRIDE;
    this.lead[p] = z;
    this.lead[p + 1] = z < WORDS_PER_PAGE ? w[i0 + z]! : 0;
    this.lead[p + 2] = z + 1 < WORDS_PER_PAGE ? w[i0 + z + 1]! : 0;
    this.lead[p + 3] = z + 2 < WORDS_PER_PAGE ? w[i0 + z + 2]! : 0;
    return z;
  }

  /**
   * Content id's key after a write of bytes [off, off + len) (its bytes are written,
   * its key is the one from before the write): unchanged when the write began past
   * the key's words; else counted again from where the old run and the write leave
   * zeros for certain (the words are in cache: they were just written).
   */
  private leadAfterWrite(id: number, off: number, len: number): void {
    const p = id * LEAD_STRIDE;
    const z = this.lead[p]!;
    if (z < 0 || len === 0) return;
    const ws = off >>> 2;
    if (ws > z + 2) return;
    const v = this.view(id);
    this.leadFrom(id, v.words, v.wordOff, ws < z ? ws : z);
  }

  /**
   * Can headWord() tell content id's first KEY_WORDS words without reading its page?
   * A fill's (its byte, repeated), a keyed generator's page's (its key), and a
   * STORED content's (its slot, read in place): all but the pages of generators whose
   * pages do not begin with their key.
   */
  private headKnown(id: number): boolean {
    const kind = this.kind[id]!;
    return kind !== CONTENT_SOURCE || this.generators[this.slot[id]!]!.keyIsHead;
  }

  /** Word i (< KEY_WORDS) of content id, whose head is known (headKnown()): never makes a page. */
  private headWord(id: number, i: number): number {
    if (id < FILL_CONTENTS) return Math.imul(id, 0x01010101) >>> 0;
    if (this.kind[id] === CONTENT_SOURCE) return this.keys[id * 4 + i]!;
    const s = this.slot[id]!;
    return this.chunkWords[s >>> CHUNK_SHIFT]![((s & (CHUNK_PAGES - 1)) << 10) + i]!;
  }

  /** Byte `off` of content `id`. */
  byteAt(id: number, off: number): number {
    if (id < FILL_CONTENTS) return id;
    // memcmp's sign after firstDifference(): most differences are in the head.
    if (off < KEY_WORDS * 4 && this.headKnown(id)) return (this.headWord(id, off >>> 2) >>> ((off & 3) << 3)) & 0xff;
    const v = this.view(id);
    return v.buf[v.off + off]!;
  }

  // ---- writing -------------------------------------------------------------------------

  /**
   * Make `id` writable by one holder: itself when it is STORED and the only reference
   * holds it, else a STORED copy (the caller's reference moves to the copy). Returns
   * the id to write; its memos are dropped, as the caller is about to write it.
   */
  writable(id: number): number {
    const w = this.writableKeepingLead(id);
    this.lead[w * LEAD_STRIDE] = -1;
    return w;
  }

  /** writable(), but the key stays (the caller brings it up to date: leadAfterWrite()). */
  private writableKeepingLead(id: number): number {
    if (id >= FILL_CONTENTS && this.kind[id] === CONTENT_STORED && this.refs[id] === 1) {
      this.sumValid[id] = 0;
      this.epoch++;
      return id;
    }
    const copy = this.storedCopyOf(id);
    this.put(id);
    this.sumValid[copy] = 0;
    this.epoch++;
    return copy;
  }

  /**
   * Write src[srcStart, srcStart + len) at byte `pageOff` of content `id` (0 < len <
   * PAGE_SIZE: a whole page is fromBytes()). The caller's reference moves to the id
   * returned, which holds the bytes.
   */
  writeBytes(id: number, pageOff: number, src: Buffer, srcStart: number, len: number): number {
    const w = this.writableKeepingLead(id);
    src.copy(this.storedBuf(w), this.storedOffset(w) + pageOff, srcStart, srcStart + len);
    this.leadAfterWrite(w, pageOff, len);
    return w;
  }

  /** memset() len bytes at byte `pageOff` of content `id` with byte `v`; as writeBytes(). */
  fillBytes(id: number, pageOff: number, v: number, len: number): number {
    const w = this.writableKeepingLead(id);
    const off = this.storedOffset(w) + pageOff;
    this.storedBuf(w).fill(v, off, off + len);
    this.leadAfterWrite(w, pageOff, len);
    return w;
  }

  /** Slab chunk and offset of a STORED content, for writing (after writable()). */
  storedBuf(id: number): Buffer {
    return this.chunks[this.slot[id]! >>> CHUNK_SHIFT]!;
  }

  storedOffset(id: number): number {
    return (this.slot[id]! & (CHUNK_PAGES - 1)) << 12;
  }

  /**
   * A STORED content just written whole: when every byte is one value, give it up for
   * the fill (the caller's reference moves). Returns the id to keep.
   */
  settle(id: number): number {
    if (this.kind[id] !== CONTENT_STORED) return id;
    const b = fillByteOf(this.storedBuf(id), this.storedOffset(id));
    if (b < 0) return id;
    this.put(id);
    return b;
  }

  // ---- checks -------------------------------------------------------------------------

  /** Ids below this have been handed out at some time (fills included). */
  get idLimit(): number {
    return this.nextId;
  }

  /** Live SOURCE and STORED contents (those with references). */
  get nrLive(): number {
    return this.nrStored + this.nrSourceLive;
  }

  /** Ids in use past the fills, for checks: calls f(id) for each live content. */
  forEachLive(f: (id: number) => void): void {
    for (let id = FILL_CONTENTS; id < this.nextId; id++) if (this.kind[id] === CONTENT_SOURCE || this.kind[id] === CONTENT_STORED) f(id);
  }

  /** Check the store against the references the mm counted (refsSeen[id] per live id). */
  check(refsSeen: Map<number, number>, fail: (msg: string) => never): void {
    for (let id = FILL_CONTENTS; id < this.nextId; id++) {
      const k = this.kind[id]!;
      const seen = refsSeen.get(id) ?? 0;
      if (k === CONTENT_FREE) {
        if (seen !== 0) fail(`content ${id} is free but ${seen} frames or swap slots name it`);
        continue;
      }
      if (this.refs[id] !== seen) fail(`content ${id} (${kindName(k)}) has ${this.refs[id]} references, ${seen} frames and swap slots name it`);
    }
    for (const id of refsSeen.keys()) if (id >= this.nextId) fail(`content ${id} is named but was never made`);
  }

  describe(id: number): string {
    return `content ${id} (${kindName(id < FILL_CONTENTS ? CONTENT_FILL : this.kind[id]!)}${id < FILL_CONTENTS ? ` 0x${id.toString(16)}` : ''})`;
  }
}

export function kindName(k: number): string {
  return k === CONTENT_FILL ? 'fill' : k === CONTENT_SOURCE ? 'source' : k === CONTENT_STORED ? 'stored' : 'free';
}

/** Words compare() looks at itself before calling Buffer.compare for the rest. */
const COMPARE_PREFIX_WORDS = 16;
/** A rest of a page at most this long is compared in JS rather than by Buffer.compare (firstDifference()). */
const COMPARE_TAIL_WORDS = 64;
/** Entries of lead[] per content: its zero run and three words. */
export const LEAD_STRIDE = 4;
/** The words of a SOURCE key, which a keyed generator's page begins with. */
const KEY_WORDS = 4;

/** The offset of the lowest non-zero byte of a non-zero little-endian word: memcmp order is byte order. */
function lowestByteSet(x: number): number {
  return (31 - Math.clz32(x & -x)) >>> 3;
}

const scratchView: ContentView = { buf: Buffer.alloc(0), words: new Uint32Array(0), off: 0, wordOff: 0 };
const scratchViewA: ContentView = { buf: Buffer.alloc(0), words: new Uint32Array(0), off: 0, wordOff: 0 };
const scratchViewB: ContentView = { buf: Buffer.alloc(0), words: new Uint32Array(0), off: 0, wordOff: 0 };

/** The byte every one of the 4096 bytes at buf[off..] is, or -1 when they differ. */
export function fillByteOf(buf: Buffer, off: number): number {
  const b = buf[off]!;
  const end = off + PAGE_SIZE;
  // Bytes, not words: buf need not be aligned. Most pages differ within a few bytes.
  for (let i = off + 1; i < end; i++) if (buf[i] !== b) return -1;
  return b;
}

