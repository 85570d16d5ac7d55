/**
 * The seeded pseudo-random generator behind every random choice in the model.
 *
 * Two runs with the same seed must be identical (DESIGN.md "Time"), so nothing below
 * src/vmm calls Math.random: randomness is a Prng passed in. The generator is sfc32
 * (Chris Doty-Humphrey's Small Fast Counting generator, 32-bit): four u32 words of
 * state, a period of at least 2^32 thanks to the counter word, and it passes
 * PractRand/BigCrush; it is also all 32-bit integer adds, shifts and xors, which
 * JavaScript does quickly without BigInt. xoshiro128** would do as well; sfc32 was
 * picked because its counter rules out the short cycles a bad seed could otherwise hit.
 *
 * State: `a, b, c` are free u32 words, `d` the counter, incremented once per output.
 * The whole state is the four numbers getState() returns, so a snapshot can store it
 * and fromState() resumes the exact sequence.
 *
 * Streams: fork(label) derives a child generator from the parent's current state and
 * the label, without advancing the parent. So adding a fork (say, one stream per
 * guest) does not shift the numbers any other consumer of the parent sees, and forks
 * with different labels are unrelated streams.
 */

import { KernelError } from './errors.js';

const TWO_POW_32 = 0x100000000;

// An integer hash from Chris Wellons' hash-prospector (xorshift 16/15/15 around two odd
// multiplies). Each step is invertible, so it is a bijection on u32: distinct inputs
// stay distinct, and nearby seeds (1, 2, 3) come out unrelated.
function mix32(x: number): number {
  x = (x ^ (x >>> 16)) | 0;
  x = Math.imul(x, 0x21f0aaad);
  x = (x ^ (x >>> 15)) | 0;
  x = Math.imul(x, 0x735a2d97);
  x = (x ^ (x >>> 15)) | 0;
  return x >>> 0;
}

export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /**
   * Any safe integer is a valid seed (negative too). Its low and high words are hashed
   * into the state words, then a few outputs are discarded so the first values do not
   * echo the seeding.
   */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) {
      throw new KernelError('EINVAL', `Prng seed must be a safe integer, found ${String(seed)}`);
    }
    const lo = seed >>> 0;
    const hi = Math.floor(seed / TWO_POW_32) >>> 0;
    // a is a bijection of lo, and b of hi once a is fixed: no two seeds share a state.
    this.a = mix32((lo ^ 0x6a09e667) >>> 0);
    this.b = mix32((hi ^ 0xbb67ae85 ^ this.a) >>> 0);
    this.c = mix32((this.a + this.b + 0x3c6ef372) >>> 0);
    this.d = 1;
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  /** Resumes from a state taken with getState(): the next outputs are the same. */
  static fromState(state: number[]): Prng {
    const p = new Prng(0);
    p.setState(state);
    return p;
  }

  /**
   * Resumes this generator from a state taken with getState(), in place (for an owner
   * that holds it in a readonly field, as a restored kernel does).
   */
  setState(state: readonly number[]): void {
    if (state.length !== 4 || !state.every((w) => Number.isInteger(w) && w >= 0 && w < TWO_POW_32)) {
      throw new KernelError('EINVAL', `Prng state must be 4 u32 words, found [${state.join(', ')}]`);
    }
    this.a = state[0]!;
    this.b = state[1]!;
    this.c = state[2]!;
    this.d = state[3]!;
  }

  /** The four u32 state words [a, b, c, counter]. */
  getState(): number[] {
    return [this.a, this.b, this.c, this.d];
  }

  /** sfc32 step: a uniformly distributed u32. */
  nextU32(): number {
    const a = this.a | 0;
    const b = this.b | 0;
    const c = this.c | 0;
    const d = this.d | 0;
    const t = (((a + b) | 0) + d) | 0;
    this.d = (d + 1) >>> 0;
    this.a = (b ^ (b >>> 9)) >>> 0;
    this.b = (c + (c << 3)) >>> 0;
    this.c = (((c << 21) | (c >>> 11)) + t) >>> 0;
    return t >>> 0;
  }

  /** A double in [0, 1) with 53 random bits (two outputs), so every double step is reachable. */
  next(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /**
   * A uniform integer in [lo, hiExclusive). Unbiased: draws that fall in the last,
   * incomplete copy of the range are rejected rather than folded in with `%`, which
   * would favour small results for ranges that do not divide 2^32.
   */
  int(lo: number, hiExclusive: number): number {
    const range = hiExclusive - lo;
    if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hiExclusive) || !(range > 0) || !Number.isSafeInteger(range)) {
      throw new KernelError('EINVAL', `Prng.int needs safe integers lo < hiExclusive, found [${lo}, ${hiExclusive})`);
    }
    if (range <= TWO_POW_32) {
      const limit = TWO_POW_32 - (TWO_POW_32 % range);
      let x = this.nextU32();
      while (x >= limit) x = this.nextU32();
      return lo + (x % range);
    }
    // Wider than 32 bits: build a 53-bit draw and reject the same way.
    const TWO_POW_53 = 9007199254740992;
    const limit = TWO_POW_53 - (TWO_POW_53 % range);
    for (;;) {
      const x = (this.nextU32() >>> 11) * TWO_POW_32 + this.nextU32();
      if (x < limit) return lo + (x % range);
    }
  }

  /** A uniformly chosen element. */
  pick<T>(arr: readonly T[]): T {
    if (arr.length === 0) throw new KernelError('EINVAL', 'Prng.pick from an empty array');
    return arr[this.int(0, arr.length)]!;
  }

  /**
   * An independent generator for `label` (any safe integer), derived from this one's
   * current state without advancing it. Same state and label, same child.
   */
  fork(label: number): Prng {
    if (!Number.isSafeInteger(label)) {
      throw new KernelError('EINVAL', `Prng.fork label must be a safe integer, found ${String(label)}`);
    }
    const child = new Prng(0);
    const lo = label >>> 0;
    const hi = Math.floor(label / TWO_POW_32) >>> 0;
    // Hash the parent's words with the label the same way a seed is hashed: different
    // labels give different child states, and each child word depends on the parent.
    child.a = mix32((this.a ^ mix32(lo ^ 0x510e527f)) >>> 0);
    child.b = mix32((this.b ^ mix32(hi ^ 0x9b05688c) ^ child.a) >>> 0);
    child.c = mix32((this.c ^ mix32((this.d + lo) >>> 0) ^ child.b) >>> 0);
    child.d = 1;
    for (let i = 0; i < 12; i++) child.nextU32();
    return child;
  }
}
