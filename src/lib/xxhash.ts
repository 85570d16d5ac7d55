/**
 * XXH64 with seed 0, as Linux 6.x's mm/ksm.c calc_checksum() takes it:
 * `xxhash(addr, PAGE_SIZE, 0)`, which on a 64-bit kernel is xxh64() (lib/xxhash.c),
 * stored in the rmap_item's `unsigned int oldchecksum`: the low 32 bits.
 *
 * Only whole 4 KiB pages are hashed, so the input length is always a multiple of 32:
 * four accumulators take one 8-byte lane each of every 32-byte stripe, they are
 * merged, the length is added, and the result is avalanched. There is no tail.
 *
 * The arithmetic is u64 (wrapping multiplies, 64-bit rotates), which JavaScript
 * numbers cannot do exactly. Two ways of computing it, giving the same numbers:
 *
 * - A small WebAssembly module (assembled below from its instruction list, as
 *   lib/jhash.ts does, so that what runs is what you read), whose i64 arithmetic is
 *   the kernel's. One page is ~0.5 µs. It hashes up to PAGE_CHECKSUM_BATCH pages
 *   copied into its memory per call.
 * - Where WebAssembly is unavailable (node --jitless), BigInt arithmetic: exact and
 *   slow (tens of µs a page), there only so that the model still runs.
 *
 * The tests check both against the published XXH64 test vectors and each other.
 */

import { PAGE_CHECKSUM_BATCH, type PageChecksum, type PageChecksumBatchLike } from './checksum.js';
import { instantiateWasm, sleb128, sleb128Big, uleb128, wasmModule } from './wasm.js';

const PAGE_BYTES = 4096;

/** The five primes of XXH64 (lib/xxhash.c PRIME64_1..5), as unsigned 64-bit values. */
export const PRIME64_1 = 0x9e3779b185ebca87n;
export const PRIME64_2 = 0xc2b2ae3d27d4eb4fn;
export const PRIME64_3 = 0x165667b19e3779f9n;
export const PRIME64_4 = 0x85ebca77c2b2ae63n;
export const PRIME64_5 = 0x27d4eb2f165667c5n;

const M64 = (1n << 64n) - 1n;

function rotl64(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (64n - r))) & M64;
}

function round(acc: bigint, input: bigint): bigint {
  acc = (acc + input * PRIME64_2) & M64;
  acc = rotl64(acc, 31n);
  return (acc * PRIME64_1) & M64;
}

function mergeRound(acc: bigint, val: bigint): bigint {
  acc ^= round(0n, val);
  return (acc * PRIME64_1 + PRIME64_4) & M64;
}

/**
 * lib/xxhash.c xxh64(input, len, seed) for any byte string: the reference, with
 * BigInt. Returns the full unsigned 64-bit hash.
 */
export function xxh64(bytes: Uint8Array, seed = 0n): bigint {
  const len = bytes.length;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 0;
  let h: bigint;
  if (len >= 32) {
    let v1 = (seed + PRIME64_1 + PRIME64_2) & M64;
    let v2 = (seed + PRIME64_2) & M64;
    let v3 = seed & M64;
    let v4 = (seed - PRIME64_1) & M64;
    const limit = len - 32;
    do {
      v1 = round(v1, view.getBigUint64(p, true));
      v2 = round(v2, view.getBigUint64(p + 8, true));
      v3 = round(v3, view.getBigUint64(p + 16, true));
      v4 = round(v4, view.getBigUint64(p + 24, true));
      p += 32;
    } while (p <= limit);
    h = (rotl64(v1, 1n) + rotl64(v2, 7n) + rotl64(v3, 12n) + rotl64(v4, 18n)) & M64;
    h = mergeRound(h, v1);
    h = mergeRound(h, v2);
    h = mergeRound(h, v3);
    h = mergeRound(h, v4);
  } else {
    h = (seed + PRIME64_5) & M64;
  }
  h = (h + BigInt(len)) & M64;
  while (p + 8 <= len) {
    const k1 = round(0n, view.getBigUint64(p, true));
    h ^= k1;
    h = (rotl64(h, 27n) * PRIME64_1 + PRIME64_4) & M64;
    p += 8;
  }
  if (p + 4 <= len) {
    h ^= (BigInt(view.getUint32(p, true)) * PRIME64_1) & M64;
    h = (rotl64(h, 23n) * PRIME64_2 + PRIME64_3) & M64;
    p += 4;
  }
  while (p < len) {
    h ^= (BigInt(bytes[p]!) * PRIME64_5) & M64;
    h = (rotl64(h, 11n) * PRIME64_1) & M64;
    p++;
  }
  h ^= h >> 33n;
  h = (h * PRIME64_2) & M64;
  h ^= h >> 29n;
  h = (h * PRIME64_3) & M64;
  h ^= h >> 32n;
  return h;
}

// ---- the WebAssembly kernel -----------------------------------------------------------

/** Where hash(n) writes the n checksums (u32): after the pages. */
const OUT_BASE = PAGE_CHECKSUM_BATCH * PAGE_BYTES;

/**
 * The body of `hash(n)`: for j in 0..n, the low 32 bits of xxh64 of the 4096 bytes
 * at j * 4096, stored as a u32 at OUT_BASE + 4j.
 */
function xxhashBody(): number[] {
  const code: number[] = [];
  const op = (...b: number[]): void => {
    code.push(...b);
  };
  const get = (i: number): void => op(0x20, i);
  const set = (i: number): void => op(0x21, i);
  const i32 = (n: number): void => {
    op(0x41);
    sleb128(n, code);
  };
  const i64 = (n: bigint): void => {
    op(0x42);
    sleb128Big(BigInt.asIntN(64, n), code);
  };
  const I64_ADD = 0x7c;
  const I64_MUL = 0x7e;
  const I64_XOR = 0x85;
  const I64_SHR_U = 0x88;
  const I64_ROTL = 0x89;
  // Locals: 0 n (param), 1 j, 2 p, 3 end (i32); 4..7 v1..v4, 8 h (i64).
  const N = 0;
  const J = 1;
  const P = 2;
  const END = 3;
  const V = [4, 5, 6, 7] as const;
  const H = 8;
  op(2, 3, 0x7f, 5, 0x7e); // 3 i32 locals, 5 i64 locals
  /** acc = rotl(acc + input * P2, 31) * P1, with input on the stack below nothing: pushes the new acc. */
  const roundOnStack = (acc: () => void, input: () => void): void => {
    acc();
    input();
    i64(PRIME64_2);
    op(I64_MUL);
    op(I64_ADD);
    i64(31n);
    op(I64_ROTL);
    i64(PRIME64_1);
    op(I64_MUL);
  };
  op(0x02, 0x40); // block
  get(N);
  op(0x45); // i32.eqz
  op(0x0d, 0); // br_if 0: nothing to hash
  op(0x03, 0x40); // loop over pages
  // p = j * 4096; end = p + 4096
  get(J);
  i32(PAGE_BYTES);
  op(0x6c); // i32.mul
  op(0x22, P); // local.tee p
  i32(PAGE_BYTES);
  op(0x6a); // i32.add
  set(END);
  i64(PRIME64_1 + PRIME64_2);
  set(V[0]);
  i64(PRIME64_2);
  set(V[1]);
  i64(0n);
  set(V[2]);
  i64(-PRIME64_1);
  set(V[3]);
  op(0x03, 0x40); // loop over stripes
  for (let lane = 0; lane < 4; lane++) {
    roundOnStack(
      () => get(V[lane]!),
      () => {
        get(P);
        op(0x29); // i64.load
        uleb128(3, code);
        uleb128(8 * lane, code);
      },
    );
    set(V[lane]!);
  }
  get(P);
  i32(32);
  op(0x6a); // i32.add
  op(0x22, P); // local.tee p
  get(END);
  op(0x49); // i32.lt_u
  op(0x0d, 0); // br_if 0: next stripe
  op(0x0b); // end stripes
  // h = rotl(v1,1) + rotl(v2,7) + rotl(v3,12) + rotl(v4,18)
  const rot = [1n, 7n, 12n, 18n];
  for (let lane = 0; lane < 4; lane++) {
    get(V[lane]!);
    i64(rot[lane]!);
    op(I64_ROTL);
    if (lane > 0) op(I64_ADD);
  }
  set(H);
  // mergeRound: h = (h ^ round(0, v)) * P1 + P4
  for (let lane = 0; lane < 4; lane++) {
    get(H);
    roundOnStack(
      () => i64(0n),
      () => get(V[lane]!),
    );
    op(I64_XOR);
    i64(PRIME64_1);
    op(I64_MUL);
    i64(PRIME64_4);
    op(I64_ADD);
    set(H);
  }
  // h += len; avalanche
  get(H);
  i64(BigInt(PAGE_BYTES));
  op(I64_ADD);
  set(H);
  const xorShift = (s: bigint): void => {
    get(H);
    get(H);
    i64(s);
    op(I64_SHR_U);
    op(I64_XOR);
    set(H);
  };
  const mulBy = (m: bigint): void => {
    get(H);
    i64(m);
    op(I64_MUL);
    set(H);
  };
  xorShift(33n);
  mulBy(PRIME64_2);
  xorShift(29n);
  mulBy(PRIME64_3);
  xorShift(32n);
  // out[j] = (u32) h
  get(J);
  i32(4);
  op(0x6c); // i32.mul
  get(H);
  op(0xa7); // i32.wrap_i64
  op(0x36); // i32.store
  uleb128(2, code);
  uleb128(OUT_BASE, code);
  // j++; loop while j < n
  get(J);
  i32(1);
  op(0x6a);
  op(0x22, J);
  get(N);
  op(0x49); // i32.lt_u
  op(0x0d, 0);
  op(0x0b); // end pages
  op(0x0b); // end block
  op(0x0b); // end function
  return code;
}

interface XxhashWasm {
  hash: (n: number) => void;
  memory: { buffer: ArrayBuffer };
}

let xxhashBytes: Uint8Array | null = null;

/** A fresh instance of the kernel (each batch has its own memory), or null without WebAssembly. */
function instantiateXxhash(): XxhashWasm | null {
  xxhashBytes ??= wasmModule({ params: [0x7f], functions: [{ name: 'hash', body: xxhashBody() }], memoryPages: 1 });
  return instantiateWasm(xxhashBytes) as XxhashWasm | null;
}

// ---- one page, and batches -------------------------------------------------------------

/** The low 32 bits of xxh64 of the page whose first word is words[wordOffset], with BigInt. */
function pageXxhashBig(words: Uint32Array, wordOffset: number): number {
  const bytes = new Uint8Array(words.buffer, words.byteOffset + wordOffset * 4, PAGE_BYTES);
  return Number(xxh64(bytes) & 0xffffffffn);
}

/**
 * A batch of up to PAGE_CHECKSUM_BATCH pages: add() them, run(), read sums[0..n),
 * clear(). Pages are copied into the WebAssembly memory as they are added; nothing
 * is allocated per page but the view Buffer.copy makes.
 */
export class XxhashBatch implements PageChecksumBatchLike {
  n: number;
  readonly sums: Uint32Array;
  private readonly wasm: XxhashWasm | null;
  private readonly bytes: Buffer | null;
  private readonly out: Uint32Array | null;
  /** The pages, for the BigInt fallback. */
  private readonly words: (Uint32Array | null)[];
  private readonly wordOffsets: Int32Array;

  /** `useWasm: false` forces the BigInt fallback (for tests). */
  constructor(useWasm = true) {
    this.n = 0;
    this.sums = new Uint32Array(PAGE_CHECKSUM_BATCH);
    this.wasm = useWasm ? instantiateXxhash() : null;
    this.bytes = this.wasm !== null ? Buffer.from(this.wasm.memory.buffer) : null;
    this.out = this.wasm !== null ? new Uint32Array(this.wasm.memory.buffer, OUT_BASE, PAGE_CHECKSUM_BATCH) : null;
    this.words = new Array<Uint32Array | null>(PAGE_CHECKSUM_BATCH).fill(null);
    this.wordOffsets = new Int32Array(PAGE_CHECKSUM_BATCH);
  }

  get usesWasm(): boolean {
    return this.wasm !== null;
  }

  add(data: Buffer, words: Uint32Array, offset: number): void {
    const j = this.n;
    if (j >= PAGE_CHECKSUM_BATCH) throw new RangeError(`an XxhashBatch holds at most ${PAGE_CHECKSUM_BATCH} pages`);
    this.n = j + 1;
    if (this.bytes !== null) {
      data.copy(this.bytes, j * PAGE_BYTES, offset, offset + PAGE_BYTES);
    } else {
      this.words[j] = words;
      this.wordOffsets[j] = offset >>> 2;
    }
  }

  run(): void {
    const n = this.n;
    if (n === 0) return;
    if (this.wasm !== null) {
      this.wasm.hash(n);
      for (let j = 0; j < n; j++) this.sums[j] = this.out![j]!;
      return;
    }
    for (let j = 0; j < n; j++) this.sums[j] = pageXxhashBig(this.words[j]!, this.wordOffsets[j]!);
  }

  clear(): void {
    for (let j = 0; j < this.n; j++) this.words[j] = null;
    this.n = 0;
  }
}

/** One batch kept for single pages. */
let scratchSingle: XxhashBatch | null = null;

/** 6.x's calc_checksum() of one page: the low 32 bits of xxh64(page, 4096, 0). */
export function pageXxhash(words: Uint32Array, wordOffset: number): number {
  scratchSingle ??= new XxhashBatch();
  const b = scratchSingle;
  b.clear();
  const data = Buffer.from(words.buffer, words.byteOffset, words.byteLength);
  b.add(data, words, wordOffset * 4);
  b.run();
  const sum = b.sums[0]!;
  b.clear();
  return sum;
}

/** 6.x's calc_checksum(): xxhash(page, PAGE_SIZE, 0), one page or a batch. */
export const XXHASH_PAGE_CHECKSUM: PageChecksum = {
  name: 'xxhash',
  page: pageXxhash,
  newBatch: () => new XxhashBatch(),
};
