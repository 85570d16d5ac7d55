/**
 * Bob Jenkins' lookup2 hash as Linux 2.6.33 has it in include/linux/jhash.h.
 *
 * mm/ksm.c calc_checksum() hashes a whole page with `jhash2(addr, PAGE_SIZE / 4, 17)`
 * and only lets a page into the unstable tree once that checksum has stayed the same
 * for one full scan. The number itself never leaves the kernel, so any decent hash
 * would give the same merging behaviour; we keep the exact 2.6.33 function anyway so
 * that a checksum printed by the model can be checked against a kernel module (and a
 * stored `oldchecksum` in a snapshot means the same thing it did in the kernel).
 *
 * Note the era: 2.6.37 replaced this with lookup3 (0xdeadbeef seed, rol32-based mix,
 * a separate final()). That version gives different numbers; this is the older one:
 *  - a = b = the golden ratio 0x9e3779b9, c = initval;
 *  - __jhash_mix over each full group of three words;
 *  - then `c += length * 4` (length in words, so the byte count), the 0..2 leftover
 *    words go into b and a, and one more __jhash_mix runs even when nothing is left.
 *
 * Hot path: this is the innermost loop of the KSM scan (once per scanned page), so it
 * allocates nothing, keeps a, b, c in local int32 variables and writes the mix out in
 * full. A double holds the exact sum or difference of a few int32s, and the `| 0` or
 * `^` that follows wraps it modulo 2^32, which is C's u32 arithmetic; the bit pattern
 * is what matters, so the values live as int32 and only the result is made unsigned.
 * The right shifts are `>>>` because C shifts a u32 logically.
 */

/** include/linux/jhash.h JHASH_GOLDEN_RATIO, as an int32. */
const GOLDEN_RATIO = 0x9e3779b9 | 0;

/** Words in one 4 KiB page. */
const PAGE_WORDS = 1024;

/** mm/ksm.c calc_checksum() passes 17 as initval; nothing else depends on the choice. */
const KSM_CHECKSUM_INITVAL = 17;

/**
 * include/linux/jhash.h (2.6.33) jhash2(): hashes words[start .. start+length).
 * Returns an unsigned 32-bit value.
 */
export function jhash2(words: Uint32Array, start: number, length: number, initval: number): number {
  let a = GOLDEN_RATIO;
  let b = GOLDEN_RATIO;
  let c = initval | 0;
  let i = start;
  const whole = start + length - (length % 3);

  while (i < whole) {
    a = (a + words[i]) | 0;
    b = (b + words[i + 1]) | 0;
    c = (c + words[i + 2]) | 0;
    i += 3;
    // __jhash_mix(a, b, c), written out: a call per group would cost more than the mix.
    a = (a - b - c) ^ (c >>> 13);
    b = (b - c - a) ^ (a << 8);
    c = (c - a - b) ^ (b >>> 13);
    a = (a - b - c) ^ (c >>> 12);
    b = (b - c - a) ^ (a << 16);
    c = (c - a - b) ^ (b >>> 5);
    a = (a - b - c) ^ (c >>> 3);
    b = (b - c - a) ^ (a << 10);
    c = (c - a - b) ^ (b >>> 15);
  }

  // The kernel adds the length in bytes (length * 4) before the tail.
  c = (c + length * 4) | 0;
  switch (length % 3) {
    case 2:
      b = (b + words[i + 1]) | 0;
      a = (a + words[i]) | 0;
      break;
    case 1:
      a = (a + words[i]) | 0;
      break;
    default:
      break;
  }
  // The final __jhash_mix runs whatever the tail length, including 0.
  a = (a - b - c) ^ (c >>> 13);
  b = (b - c - a) ^ (a << 8);
  c = (c - a - b) ^ (b >>> 13);
  a = (a - b - c) ^ (c >>> 12);
  b = (b - c - a) ^ (a << 16);
  c = (c - a - b) ^ (b >>> 5);
  a = (a - b - c) ^ (c >>> 3);
  b = (b - c - a) ^ (a << 10);
  c = (c - a - b) ^ (b >>> 15);
  return c >>> 0;
}

/**
 * mm/ksm.c calc_checksum(): the checksum of one 4 KiB page whose first word is
 * words[wordOffset]. Callers pass the shared Uint32Array view of a memory block's
 * buffer and `(frame index within the block) * 1024`, so no view is made per page.
 */
export function pageChecksum(words: Uint32Array, wordOffset: number): number {
  return jhash2(words, wordOffset, PAGE_WORDS, KSM_CHECKSUM_INITVAL);
}
