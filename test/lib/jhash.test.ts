import { describe, expect, it } from 'vitest';
import { PAGE_CHECKSUM_BATCH, PageChecksumBatch, jhash2, pageChecksum, pageChecksums2 } from '../../src/lib/jhash.js';
import { Prng } from '../../src/lib/prng.js';

/*
 * Known values: computed by a small C program implementing the Linux 2.6.33
 * include/linux/jhash.h jhash2() (lookup2: golden ratio 0x9e3779b9, __jhash_mix with
 * 13/8/13/12/16/5/3/10/15 shifts, `c += length * 4` before the tail, a final mix always),
 * compiled with gcc on x86-64. Not the lookup3 jhash2 of 2.6.37 and later.
 */

const PAGE_WORDS = 1024;

function page(fill: (i: number) => number): Uint32Array {
  const p = new Uint32Array(PAGE_WORDS);
  for (let i = 0; i < PAGE_WORDS; i++) p[i] = fill(i);
  return p;
}

const zeroPage = page(() => 0);
const aPage = page(() => 0x61616161); // memset(page, 0x61, 4096): 'a' bytes
const goldenPage = page((i) => Math.imul(i, 2654435761) >>> 0); // word i = i * 2654435761 (mod 2^32)
const words = new Uint32Array([0x01234567, 0x89abcdef, 0xdeadbeef, 0xcafef00d]);

describe('jhash2 (2.6.33 lookup2)', () => {
  it('all-zero page, initval 17 (the KSM checksum of a zero page)', () => {
    expect(jhash2(zeroPage, 0, PAGE_WORDS, 17)).toBe(0x31cbe0fa);
  });

  it('all-zero page, initval 0', () => {
    expect(jhash2(zeroPage, 0, PAGE_WORDS, 0)).toBe(0xf952a8ca);
  });

  it('page of 0x61 bytes, initval 17 and 0', () => {
    expect(jhash2(aPage, 0, PAGE_WORDS, 17)).toBe(0xdfd17da6);
    expect(jhash2(aPage, 0, PAGE_WORDS, 0)).toBe(0x4b79d586);
  });

  it('page with word i = i * 2654435761, initval 17 and 0', () => {
    expect(jhash2(goldenPage, 0, PAGE_WORDS, 17)).toBe(0xde65de83);
    expect(jhash2(goldenPage, 0, PAGE_WORDS, 0)).toBe(0xe5149272);
  });

  it('zero page with the last word set to 1: the tail word is hashed', () => {
    const p = page((i) => (i === PAGE_WORDS - 1 ? 1 : 0));
    expect(jhash2(p, 0, PAGE_WORDS, 17)).toBe(0x66eeaa48);
  });

  // words = 01234567 89abcdef deadbeef cafef00d; lengths 0..4 cover every tail case
  // (0, 1 and 2 leftover words) with and without a full 3-word group.
  it.each([
    [0, 0xbd49d10d, 0xce8ba1ac],
    [1, 0xacdccd99, 0x1d9a325c],
    [2, 0x674ed414, 0x6813c793],
    [3, 0x61780cf4, 0x6349a1cd],
    [4, 0x10718267, 0x758aa77d],
  ])('%i word(s): initval 0 -> %d, initval 17 -> %d', (n, h0, h17) => {
    expect(jhash2(words, 0, n, 0)).toBe(h0);
    expect(jhash2(words, 0, n, 17)).toBe(h17);
  });

  it('one word 0xffffffff with initval 0xffffffff (unsigned wrap-around everywhere)', () => {
    expect(jhash2(new Uint32Array([0xffffffff]), 0, 1, 0xffffffff)).toBe(0x9182db53);
  });

  it('always returns an unsigned 32-bit integer', () => {
    const h = jhash2(zeroPage, 0, PAGE_WORDS, 0);
    expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true);
  });
});

describe('pageChecksum (mm/ksm.c calc_checksum)', () => {
  it('is jhash2 over 1024 words with initval 17', () => {
    expect(pageChecksum(goldenPage, 0)).toBe(0xde65de83);
    expect(pageChecksum(zeroPage, 0)).toBe(0x31cbe0fa);
  });

  it('reads the page at the given word offset inside a larger array, and only that page', () => {
    // Three pages side by side, as in a memory block's buffer: junk, the golden page, junk.
    const block = new Uint32Array(3 * PAGE_WORDS);
    block.fill(0xa5a5a5a5);
    block.set(goldenPage, PAGE_WORDS);
    expect(pageChecksum(block, PAGE_WORDS)).toBe(0xde65de83);
    block.set(aPage, 2 * PAGE_WORDS);
    expect(pageChecksum(block, 2 * PAGE_WORDS)).toBe(0xdfd17da6);
    // The neighbours do not leak in: changing them leaves the middle checksum alone.
    block[PAGE_WORDS - 1] = 1;
    block[2 * PAGE_WORDS] = 2;
    expect(pageChecksum(block, PAGE_WORDS)).toBe(0xde65de83);
  });

  it('changes when one word of the page changes', () => {
    const p = Uint32Array.from(goldenPage);
    p[512]! ^= 1;
    expect(pageChecksum(p, 0)).not.toBe(0xde65de83);
  });
});

/**
 * Memory blocks for the batch tests: `pages` random pages in one buffer, seen as a
 * Buffer and a Uint32Array as PhysMem keeps them. Some pages get the patterns that
 * stress unsigned arithmetic (all ones, high bits only) and the known pages above.
 */
function randomBlock(seed: number, pages: number): { data: Buffer; words: Uint32Array } {
  const prng = new Prng(seed);
  const words = new Uint32Array(pages * PAGE_WORDS);
  for (let i = 0; i < words.length; i++) words[i] = prng.nextU32();
  if (pages > 3) {
    words.fill(0xffffffff, 0, PAGE_WORDS);
    words.fill(0x80000000, PAGE_WORDS, 2 * PAGE_WORDS);
    words.set(goldenPage, 2 * PAGE_WORDS);
    words.set(zeroPage, 3 * PAGE_WORDS);
  }
  return { data: Buffer.from(words.buffer, words.byteOffset, words.byteLength), words };
}

describe('pageChecksums2 (two interleaved chains)', () => {
  it('gives pageChecksum of each page, over 64 random and special pages in two blocks', () => {
    const x = randomBlock(1, 32);
    const y = randomBlock(2, 32);
    const out = new Uint32Array(3);
    for (let p = 0; p < 32; p++) {
      const q = 31 - p;
      pageChecksums2(x.words, p * PAGE_WORDS, y.words, q * PAGE_WORDS, out, 1);
      expect([out[1], out[2]]).toEqual([pageChecksum(x.words, p * PAGE_WORDS), pageChecksum(y.words, q * PAGE_WORDS)]);
    }
    expect(out[0]).toBe(0); // writes only out[outIndex] and the one after
  });

  it('hashes the same page twice to the same number', () => {
    const out = new Uint32Array(2);
    pageChecksums2(goldenPage, 0, goldenPage, 0, out, 0);
    expect([out[0], out[1]]).toEqual([0xde65de83, 0xde65de83]);
  });
});

describe.each([
  ['WebAssembly SIMD', true],
  ['scalar fallback', false],
])('PageChecksumBatch (%s)', (_name, simd) => {
  it(`uses ${simd ? 'SIMD' : 'no SIMD'}`, () => {
    expect(new PageChecksumBatch(simd).usesSimd).toBe(simd);
  });

  it('gives pageChecksum of every page, for every batch size 1..8, pages from two blocks in any order', () => {
    const blocks = [randomBlock(3, 24), randomBlock(4, 24)];
    const batch = new PageChecksumBatch(simd);
    const prng = new Prng(5);
    for (let round = 0; round < 40; round++) {
      const n = 1 + (round % PAGE_CHECKSUM_BATCH);
      const expected: number[] = [];
      for (let j = 0; j < n; j++) {
        const b = blocks[prng.nextU32() & 1]!;
        const page = prng.nextU32() % 24;
        batch.add(b.data, b.words, page * 4096);
        expected.push(pageChecksum(b.words, page * PAGE_WORDS));
      }
      expect(batch.n).toBe(n);
      batch.run();
      expect(Array.from(batch.sums.subarray(0, n))).toEqual(expected);
      batch.clear();
      expect(batch.n).toBe(0);
    }
  });

  it('runs of neighbouring pages (copied in one go) and jumps between them', () => {
    const x = randomBlock(6, 16);
    const y = randomBlock(7, 16);
    const batch = new PageChecksumBatch(simd);
    const pages: [typeof x, number][] = [[x, 3], [x, 4], [x, 5], [x, 9], [x, 10], [y, 11], [y, 12], [x, 13]];
    for (const [b, p] of pages) batch.add(b.data, b.words, p * 4096);
    batch.run();
    expect(Array.from(batch.sums)).toEqual(pages.map(([b, p]) => pageChecksum(b.words, p * PAGE_WORDS)));
    batch.clear();
    // After clear() nothing of the last run is left over.
    batch.add(y.data, y.words, 13 * 4096);
    batch.add(y.data, y.words, 14 * 4096);
    batch.run();
    expect([batch.sums[0], batch.sums[1]]).toEqual([pageChecksum(y.words, 13 * PAGE_WORDS), pageChecksum(y.words, 14 * PAGE_WORDS)]);
  });

  it('known checksums: zero page, 0x61 page, golden page', () => {
    const batch = new PageChecksumBatch(simd);
    for (const p of [zeroPage, aPage, goldenPage, zeroPage, aPage]) {
      batch.add(Buffer.from(p.buffer), p, 0);
    }
    batch.run();
    expect(Array.from(batch.sums.subarray(0, 5))).toEqual([0x31cbe0fa, 0xdfd17da6, 0xde65de83, 0x31cbe0fa, 0xdfd17da6]);
  });

  it('refuses a ninth page', () => {
    const batch = new PageChecksumBatch(simd);
    for (let j = 0; j < PAGE_CHECKSUM_BATCH; j++) batch.add(Buffer.from(zeroPage.buffer), zeroPage, 0);
    expect(() => batch.add(Buffer.from(zeroPage.buffer), zeroPage, 0)).toThrow(RangeError);
  });
});
