import { describe, expect, it } from 'vitest';
import { KernelError } from '../../src/lib/errors.js';
import { Prng } from '../../src/lib/prng.js';

function take(p: Prng, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(p.nextU32());
  return out;
}

describe('Prng', () => {
  it('the same seed gives the same sequence', () => {
    expect(take(new Prng(42), 100)).toEqual(take(new Prng(42), 100));
  });

  it('different seeds give different sequences, including neighbouring and large seeds', () => {
    const seeds = [0, 1, 2, -1, 2 ** 32, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER];
    const firsts = seeds.map((s) => take(new Prng(s), 4).join(','));
    expect(new Set(firsts).size).toBe(seeds.length);
  });

  it('nextU32 returns unsigned 32-bit integers', () => {
    for (const x of take(new Prng(7), 1000)) {
      expect(Number.isInteger(x) && x >= 0 && x <= 0xffffffff).toBe(true);
    }
  });

  it('getState/fromState resumes the exact sequence', () => {
    const p = new Prng(123);
    take(p, 37);
    const state = p.getState();
    expect(state).toHaveLength(4);
    const q = Prng.fromState(state);
    expect(take(q, 50)).toEqual(take(p, 50));
    // The state is a copy: advancing p did not change what we saved.
    expect(take(Prng.fromState(state), 5)).toEqual(take(Prng.fromState(state), 5));
  });

  it('fromState rejects a malformed state with EINVAL', () => {
    expect(() => Prng.fromState([1, 2, 3])).toThrow(KernelError);
    expect(() => Prng.fromState([1, 2, 3, -1])).toThrow(/4 u32 words/);
    expect(() => Prng.fromState([1, 2, 3, 2 ** 32])).toThrow(KernelError);
  });

  it('rejects a seed that is not a safe integer', () => {
    expect(() => new Prng(1.5)).toThrow(KernelError);
    expect(() => new Prng(Number.NaN)).toThrow(KernelError);
  });

  it('next() is in [0, 1) with mean near 1/2', () => {
    const p = new Prng(5);
    let sum = 0;
    let min = 1;
    let max = 0;
    const n = 100_000;
    for (let i = 0; i < n; i++) {
      const x = p.next();
      sum += x;
      if (x < min) min = x;
      if (x > max) max = x;
    }
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeLessThan(1);
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.01);
  });

  it('int(lo, hi) stays in [lo, hi) and hits both ends', () => {
    const p = new Prng(9);
    const seen = new Set<number>();
    for (let i = 0; i < 10_000; i++) {
      const x = p.int(-3, 4);
      expect(Number.isInteger(x) && x >= -3 && x < 4).toBe(true);
      seen.add(x);
    }
    expect([...seen].sort((a, b) => a - b)).toEqual([-3, -2, -1, 0, 1, 2, 3]);
    expect(p.int(10, 11)).toBe(10);
  });

  it('int() is roughly uniform: 10 buckets of 100000 draws within 3% of 10000', () => {
    const p = new Prng(11);
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < 100_000; i++) counts[p.int(0, 10)]!++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(300);
  });

  it('int() handles ranges of 2^32 and wider than 32 bits', () => {
    const p = new Prng(13);
    for (let i = 0; i < 1000; i++) {
      const x = p.int(0, 2 ** 32);
      expect(x >= 0 && x < 2 ** 32).toBe(true);
      const y = p.int(0, 2 ** 40);
      expect(Number.isInteger(y) && y >= 0 && y < 2 ** 40).toBe(true);
    }
  });

  it('int() rejects an empty or reversed range', () => {
    const p = new Prng(1);
    expect(() => p.int(5, 5)).toThrow(KernelError);
    expect(() => p.int(5, 4)).toThrow(KernelError);
    expect(() => p.int(0, 1.5)).toThrow(KernelError);
  });

  it('pick() returns elements of the array, each of them eventually, and rejects []', () => {
    const p = new Prng(17);
    const arr = ['a', 'b', 'c'] as const;
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) seen.add(p.pick(arr));
    expect([...seen].sort()).toEqual(['a', 'b', 'c']);
    expect(() => p.pick([])).toThrow(KernelError);
  });

  it('fork() is deterministic, differs by label and from the parent, and leaves the parent alone', () => {
    const p = new Prng(21);
    const before = p.getState();
    const f1 = take(p.fork(1), 20);
    expect(p.getState()).toEqual(before);
    expect(take(p.fork(1), 20)).toEqual(f1);
    expect(take(p.fork(2), 20)).not.toEqual(f1);
    expect(take(new Prng(21).fork(1), 20)).toEqual(f1);
    expect(take(p, 20)).not.toEqual(f1);
    // After the parent moves on, the same label gives a new stream.
    expect(take(p.fork(1), 20)).not.toEqual(f1);
  });
});
