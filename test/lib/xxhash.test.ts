import { describe, expect, it } from 'vitest';
import { PAGE_CHECKSUM_BATCH } from '../../src/lib/checksum.js';
import { Prng } from '../../src/lib/prng.js';
import { XXHASH_PAGE_CHECKSUM, XxhashBatch, pageXxhash, xxh64 } from '../../src/lib/xxhash.js';

/*
 * XXH64, seed 0, as Linux 6.x's calc_checksum() uses it (the low 32 bits of
 * xxh64(page, 4096, 0)). Known values: the published XXH64 test vectors (xxHash's
 * own and python-xxhash's documentation) for short inputs; for whole pages, the
 * BigInt reference here, itself checked against those vectors.
 */

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('xxh64 (the BigInt reference)', () => {
  it.each([
    ['', 0xef46db3751d8e999n],
    ['a', 0xd24ec4f1a98c6e5bn],
    ['abc', 0x44bc2cf5ad770999n],
    ['Nobody inspects the spammish repetition', 0xfbcea83c8a378bf1n],
  ])('%j -> %s', (s, h) => {
    expect(xxh64(enc(s))).toBe(h);
  });
});

describe("6.x's calc_checksum(): xxhash of a page", () => {
  const page = new Uint32Array(1024);

  it('the zero page: zero_checksum', () => {
    page.fill(0);
    expect(pageXxhash(page, 0)).toBe(0x32d8bbdb);
    expect(XXHASH_PAGE_CHECKSUM.page(page, 0)).toBe(0x32d8bbdb);
  });

  it('word i = i * 2654435761: the WebAssembly kernel and the reference agree', () => {
    for (let i = 0; i < 1024; i++) page[i] = Math.imul(i, 2654435761) >>> 0;
    expect(pageXxhash(page, 0)).toBe(0x6c30014b);
    expect(Number(xxh64(new Uint8Array(page.buffer)) & 0xffffffffn)).toBe(0x6c30014b);
  });

  it('batches of 1 to 8 random pages, with WebAssembly and without, give the reference values', () => {
    const rng = new Prng(11);
    const words = new Uint32Array(1024 * PAGE_CHECKSUM_BATCH);
    for (let i = 0; i < words.length; i++) words[i] = rng.nextU32();
    const data = Buffer.from(words.buffer);
    const want = Array.from({ length: PAGE_CHECKSUM_BATCH }, (_, j) => Number(xxh64(new Uint8Array(words.buffer, j * 4096, 4096)) & 0xffffffffn));
    const wasm = new XxhashBatch();
    const big = new XxhashBatch(false);
    expect(wasm.usesWasm).toBe(true);
    expect(big.usesWasm).toBe(false);
    for (let n = 1; n <= PAGE_CHECKSUM_BATCH; n++) {
      for (const b of [wasm, big]) {
        b.clear();
        for (let j = 0; j < n; j++) b.add(data, words, j * 4096);
        b.run();
        expect([...b.sums.subarray(0, n)]).toEqual(want.slice(0, n));
      }
    }
    expect(() => {
      for (let j = 0; j <= PAGE_CHECKSUM_BATCH; j++) wasm.add(data, words, 0);
    }).toThrow(RangeError);
  });
});
