import { assert, bug } from '../lib/errors.js';
import { bytesOf } from '../lib/snapshot.js';
import { PAGE_SIZE, mkSwapPte } from './constants.js';
import type { ContentStore } from './contents.js';
import type { ContentChunks, ContentTable } from './snapshot-contents.js';

/** The swap device in a kernel image (src/mm/snapshot.ts): its slots in use. */
export interface SwapImage {
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

/** A SwapImage checked against the kernel it is restored into (src/mm/snapshot.ts). */
export interface DecodedSwap {
  next: number;
  slots: Uint32Array;
  refs: Int32Array;
  cache: Int32Array;
  content: Int32Array;
}

/**
 * One swap device (mm/swapfile.c, much simplified): `nrSlots` page slots holding
 * real contents, addressed by offset 1..nrSlots (offset 0 is the header, never an
 * entry, so 0 can mean "no entry" in page->private).
 *
 *   content[offset]  the slot's bytes: a content id in the kernel's store
 *                    (contents.ts), holding a reference; CONTENT_ZERO while free.
 *                    Writing a page out shares its content, O(1) and no copy: a
 *                    device of any size costs 4 bytes a slot, not 4 KiB (a single
 *                    Buffer of the device stopped at 4 GiB).
 *   refs[offset]   swap_map's count: how many swap ptes refer to the slot.
 *   cache[offset]  the frame in the swap cache for this slot (SWAP_HAS_CACHE), or -1.
 *
 * A slot is free exactly when refs is 0 and it has no swap-cache page. A page in
 * the swap cache has PG_SWAPCACHE, `private` = its offset, and one reference held
 * by the cache.
 */
export class SwapDevice {
  readonly nrSlots: number;
  readonly content: Uint32Array;
  private readonly store: ContentStore;
  readonly refs: Int32Array;
  readonly cache: Int32Array;
  nrFree: number;
  /** Where the next search for a free slot starts (scan_swap_map's cluster_next). */
  private next: number;

  constructor(swapMiB: number, store: ContentStore) {
    this.nrSlots = (swapMiB * 1024 * 1024) / PAGE_SIZE;
    this.content = new Uint32Array(this.nrSlots + 1);
    this.store = store;
    this.refs = new Int32Array(this.nrSlots + 1);
    this.cache = new Int32Array(this.nrSlots + 1).fill(-1);
    this.nrFree = this.nrSlots;
    this.next = 1;
  }

  /** get_swap_page(): a free slot, now held by the swap cache; 0 when swap is full. */
  allocSlot(pfn: number): number {
    if (this.nrFree === 0) return 0;
    for (let i = 0; i < this.nrSlots; i++) {
      const off = ((this.next - 1 + i) % this.nrSlots) + 1;
      if (this.refs[off] === 0 && this.cache[off] === -1) {
        this.cache[off] = pfn;
        this.nrFree--;
        this.next = (off % this.nrSlots) + 1;
        return off;
      }
    }
    bug(`swap: nrFree ${this.nrFree} but no free slot`);
  }

  /** swap_duplicate(): one more swap pte refers to the slot. */
  duplicate(off: number): void {
    assert(this.inUse(off), () => `swap_duplicate of free slot ${off}`);
    this.refs[off]!++;
  }

  /** swap_free(): one swap pte less. Frees the slot when nothing refers to it. */
  free(off: number): void {
    assert(this.refs[off]! > 0, () => `swap_free of slot ${off} with no references`);
    this.refs[off]!--;
    this.maybeRelease(off);
  }

  /** The swap cache lets go of the slot (delete_from_swap_cache). */
  dropCache(off: number): void {
    assert(this.cache[off] !== -1, () => `swap slot ${off} has no swap-cache page`);
    this.cache[off] = -1;
    this.maybeRelease(off);
  }

  /** add_to_swap_cache() for a page read back from an existing slot. */
  setCache(off: number, pfn: number): void {
    assert(this.cache[off] === -1, () => `swap slot ${off} already cached by pfn ${this.cache[off]}`);
    this.cache[off] = pfn;
  }

  private maybeRelease(off: number): void {
    if (this.refs[off] === 0 && this.cache[off] === -1) {
      this.nrFree++;
      // A free slot's bytes are never read again: give them back to the store.
      const c = this.content[off]!;
      this.content[off] = 0;
      this.store.put(c);
    }
  }

  inUse(off: number): boolean {
    return off >= 1 && off <= this.nrSlots && (this.refs[off]! > 0 || this.cache[off] !== -1);
  }

  pteFor(off: number): number {
    return mkSwapPte(off);
  }

  /** swap_writepage(): the slot holds content `c` (shared with the page written). */
  writeSlot(off: number, c: number): void {
    this.store.get(c);
    const old = this.content[off]!;
    this.content[off] = c;
    this.store.put(old);
  }

  /** swap_readpage(): the slot's content, with a reference for the reader. */
  readSlot(off: number): number {
    const c = this.content[off]!;
    this.store.get(c);
    return c;
  }

  get usedSlots(): number {
    return this.nrSlots - this.nrFree;
  }

  // ---- the kernel image (src/mm/snapshot.ts) ----------------------------------------------

  /**
   * The slots in use, in offset order, their bytes interned in `table`, and the
   * allocator's cursor. A slot whose swap-cache page is dirty (`dirty(pfn)`) keeps no
   * bytes: they are stale, and are never read before being written (the page is
   * written out before it leaves the swap cache while a swap pte still needs the
   * slot). Reads the device only.
   */
  saveImage(table: ContentTable, dirty: (pfn: number) => boolean): SwapImage {
    let ns = 0;
    for (let off = 1; off <= this.nrSlots; off++) if (this.inUse(off)) ns++;
    const slots = new Uint32Array(ns);
    const refs = new Int32Array(ns);
    const cache = new Int32Array(ns);
    for (let off = 1, i = 0; off <= this.nrSlots; off++) {
      if (!this.inUse(off)) continue;
      slots[i] = off;
      refs[i] = this.refs[off]!;
      cache[i] = this.cache[off]!;
      i++;
    }
    const ids = new Int32Array(ns);
    for (let i = 0; i < ns; i++) ids[i] = cache[i] !== -1 && dirty(cache[i]!) ? -1 : this.content[slots[i]!]!;
    const content = new Int32Array(ns);
    table.internContents(this.store, ids, content);
    return { next: this.next, slots: bytesOf(slots), refs: bytesOf(refs), cache: bytesOf(cache), content: bytesOf(content) };
  }

  /** Restore a device fresh from the constructor to a saved state (checked by src/mm/snapshot.ts). */
  restoreImage(s: DecodedSwap, contents: ContentChunks): void {
    this.refs.fill(0);
    this.cache.fill(-1);
    for (let i = 0; i < s.slots.length; i++) {
      const off = s.slots[i]!;
      this.refs[off] = s.refs[i]!;
      this.cache[off] = s.cache[i]!;
      const c = s.content[i]!;
      if (c >= 0) {
        const old = this.content[off]!;
        this.content[off] = contents.contentIn(this.store, c);
        this.store.put(old);
      }
    }
    this.nrFree = this.nrSlots - s.slots.length;
    this.next = s.next;
  }
}
