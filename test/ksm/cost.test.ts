/**
 * ksmd's CPU cost model (src/ksm/cost.ts) and the fit that calibrates it
 * (src/lib/nnls.ts), on synthetic measurements made from known costs.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_KSMD_COSTS, fitKsmdCosts, ksmdCpuNs, parseKsmdCosts, type KsmdCosts, type KsmdObservation } from '../../src/ksm/cost.js';
import { leastSquares, nnls } from '../../src/lib/nnls.js';
import type { KsmWorkCounts } from '../../src/ksm/work.js';
import { Prng } from '../../src/lib/prng.js';

const ZERO: KsmWorkCounts = {
  pagesScanned: 0,
  checksums: 0,
  stableTreeCompares: 0,
  unstableTreeCompares: 0,
  mergeCompares: 0,
  bytesCompared: 0,
  merges: 0,
  unmerges: 0,
  rmapItemsAllocated: 0,
  rmapItemsFreed: 0,
};

/** Costs a fit could find: merge compares none of their own, frees as allocations. */
const KNOWN: KsmdCosts = {
  pagesScanned: 150,
  checksums: 420,
  stableTreeCompares: 90,
  unstableTreeCompares: 60,
  mergeCompares: 0,
  bytesCompared: 0.05,
  merges: 2300,
  unmerges: 1800,
  rmapItemsAllocated: 110,
  rmapItemsFreed: 110,
};

/** Workloads shaped like the calibration's: phases of scans over 131072 pages. */
function workloads(): { name: string; work: KsmWorkCounts }[] {
  const P = 131072;
  return [
    { name: 'identical, first scan', work: { ...ZERO, pagesScanned: P, checksums: P, rmapItemsAllocated: P } },
    { name: 'identical, merging scan', work: { ...ZERO, pagesScanned: P, checksums: 2, stableTreeCompares: P - 2, mergeCompares: P - 2, bytesCompared: 4096 * (2 * P - 3), merges: P } },
    { name: 'identical, steady', work: { ...ZERO, pagesScanned: 20 * P } },
    { name: 'distinct head, steady', work: { ...ZERO, pagesScanned: 10 * P, checksums: 10 * P, unstableTreeCompares: 10 * P * 16, bytesCompared: 10 * P * 16 * 2 } },
    { name: 'distinct tail, steady', work: { ...ZERO, pagesScanned: 4 * P, checksums: 4 * P, unstableTreeCompares: 4 * P * 16, bytesCompared: 4 * P * 16 * 4090 } },
    { name: 'volatile, steady', work: { ...ZERO, pagesScanned: 10 * P, checksums: 10 * P } },
    { name: 'stable lookups, big stable tree', work: { ...ZERO, pagesScanned: 8 * P, checksums: 4 * P, stableTreeCompares: 4 * P * 15, unstableTreeCompares: 4 * P * 8, bytesCompared: 4 * P * 23 * 3 } },
    { name: 'stable lookups, small stable tree', work: { ...ZERO, pagesScanned: 8 * P, checksums: 6 * P, stableTreeCompares: 6 * P * 6, unstableTreeCompares: 6 * P * 16, bytesCompared: 6 * P * 22 * 3 } },
    { name: 'pairs, merging scan', work: { ...ZERO, pagesScanned: P, checksums: P, stableTreeCompares: 16 * P, unstableTreeCompares: 17 * P, mergeCompares: P / 2, bytesCompared: 33 * P * 4092, merges: P } },
  ];
}

describe('ksmd cost model', () => {
  it('ksmd CPU time is the sum of counts times costs', () => {
    expect(ksmdCpuNs({ ...ZERO, pagesScanned: 10, checksums: 2, bytesCompared: 1000 }, KNOWN)).toBe(10 * 150 + 2 * 420 + 1000 * 0.05);
    expect(ksmdCpuNs(ZERO)).toBe(0);
  });

  it('the fit finds the costs that made exact measurements', () => {
    const obs: KsmdObservation[] = workloads().map((w) => ({ ...w, cpuNs: ksmdCpuNs(w.work, KNOWN) }));
    const fit = fitKsmdCosts(obs, KNOWN.unmerges);
    for (const [k, v] of Object.entries(KNOWN)) expect(fit.costs[k as keyof KsmdCosts]).toBeCloseTo(v, 6);
    expect(fit.rmsRelativeError).toBeLessThan(1e-9);
    expect(fit.residuals.map((r) => r.name)).toEqual(workloads().map((w) => w.name));
  });

  it('with 2% noise on every measurement, every fitted cost is within 15% and the residuals say about 2%', () => {
    const prng = new Prng(42);
    const obs: KsmdObservation[] = [];
    for (let rep = 0; rep < 3; rep++) {
      for (const w of workloads()) obs.push({ ...w, cpuNs: ksmdCpuNs(w.work, KNOWN) * (1 + 0.02 * (2 * prng.next() - 1)) });
    }
    const fit = fitKsmdCosts(obs, KNOWN.unmerges);
    for (const k of ['pagesScanned', 'checksums', 'stableTreeCompares', 'unstableTreeCompares', 'bytesCompared', 'merges', 'rmapItemsAllocated'] as const) {
      expect(Math.abs(fit.costs[k] / KNOWN[k] - 1)).toBeLessThan(0.15);
    }
    expect(fit.rmsRelativeError).toBeGreaterThan(0.002);
    expect(fit.rmsRelativeError).toBeLessThan(0.02);
  });

  it('a cost that plain least squares would make negative is 0', () => {
    // b = 2·x0 exactly, with a third, noisy column that least squares uses with a
    // negative weight to absorb the noise.
    const a = [
      [1, 0, 1],
      [2, 1, 0],
      [3, 0, 2],
      [1, 1, 1],
    ];
    const b = [2, 4.2, 5.7, 2.1];
    expect(leastSquares(a, b).some((v) => v < 0)).toBe(true);
    const { x } = nnls(a, b);
    expect(x.every((v) => v >= 0)).toBe(true);
    expect(x.some((v) => v === 0)).toBe(true);
  });

  it('costs from a file: every operation, non-negative numbers, nothing else', () => {
    expect(parseKsmdCosts(KNOWN)).toEqual(KNOWN);
    expect(parseKsmdCosts({ costs: KNOWN })).toEqual(KNOWN);
    expect(parseKsmdCosts({ ...KNOWN, merges: -1 })).toBe('merges: expected a cost in ns (a number ≥ 0), got -1');
    expect(parseKsmdCosts({ ...KNOWN, bogus: 1 })).toMatch(/^bogus: not a ksmd operation/);
    expect(parseKsmdCosts([])).toBe('expected an object of ns per operation');
    expect(Object.keys(DEFAULT_KSMD_COSTS)).toEqual(Object.keys(ZERO));
  });
});
