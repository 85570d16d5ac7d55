/**
 * A page checksum as KSM's calc_checksum() takes it: which function a kernel has is
 * part of its profile (src/ksm/profile.ts). 2.6.33 hashes a page with
 * jhash2(page, 1024, 17) (lib/jhash.ts); 6.x with xxhash(page, PAGE_SIZE, 0).
 *
 * The number never leaves the kernel, and KSM only ever compares a page's checksum
 * with the same page's previous one, so any decent hash gives the same merging: the
 * exact function matters for a checksum printed by the model and checked against a
 * kernel module, and for what a stored `oldchecksum` means.
 *
 * Both ways of computing it must give the same numbers: `page()` for one page, and a
 * batch that hashes up to PAGE_CHECKSUM_BATCH pages side by side (the scan hashes a
 * few pages ahead at once; see src/ksm/pages.ts scanChecksum()).
 */
export interface PageChecksum {
  /** The kernel function, for messages: 'jhash2'. */
  readonly name: string;
  /** calc_checksum() of the page whose first word is words[wordOffset]. */
  page(words: Uint32Array, wordOffset: number): number;
  /** A batch to reuse: add() pages, run(), read sums[0..n), clear(). */
  newBatch(): PageChecksumBatchLike;
}

/** Most pages one batch hashes in one run() (lib/jhash.ts has the SIMD kernel for 8). */
export const PAGE_CHECKSUM_BATCH = 8;

/** What a PageChecksum's batch offers (lib/jhash.ts PageChecksumBatch has the details). */
export interface PageChecksumBatchLike {
  /** Pages added since clear(). */
  readonly n: number;
  /** After run(): sums[j] is the checksum of the j-th page added. */
  readonly sums: Uint32Array;
  /** Queue the page at byte `offset` of `data` (whose Uint32Array view is `words`). */
  add(data: Buffer, words: Uint32Array, offset: number): void;
  run(): void;
  clear(): void;
}
