import { assert } from './errors.js';

/**
 * Non-negative least squares (Lawson and Hanson, "Solving Least Squares Problems",
 * 1974, chapter 23, algorithm NNLS): the x ≥ 0 that minimises |A x − b|².
 *
 * For fitting costs (a time per operation cannot be negative): plain least squares on
 * noisy timings happily returns a negative cost for an operation whose count moves
 * with another's, and a negative cost would make a busier ksmd look cheaper.
 *
 * Columns are scaled to unit norm first (counts of bytes and of merges differ by nine
 * orders of magnitude, and the normal equations would lose every digit of the small
 * ones), and the passive set's subproblem is solved by Householder QR rather than the
 * normal equations, for the same reason. Sizes here are tiny (a dozen rows, a handful
 * of columns), so nothing is clever about memory.
 *
 * `a` is row-major: a[i][j] is row i, column j. Returns x and the residual norm.
 */
export function nnls(a: readonly (readonly number[])[], b: readonly number[]): { x: number[]; residualNorm: number } {
  const m = a.length;
  assert(m === b.length, () => `nnls: ${m} rows but ${b.length} right-hand sides`);
  const n = m === 0 ? 0 : a[0]!.length;
  for (const row of a) assert(row.length === n, () => `nnls: rows of ${n} and ${row.length} columns`);
  const scale = new Array<number>(n).fill(0);
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let i = 0; i < m; i++) s += a[i]![j]! ** 2;
    scale[j] = s > 0 ? Math.sqrt(s) : 1;
  }
  const as = a.map((row) => row.map((v, j) => v / scale[j]!));

  const x = new Array<number>(n).fill(0);
  const passive = new Array<boolean>(n).fill(false);
  const tol = 1e-12 * Math.max(1, Math.sqrt(b.reduce((s, v) => s + v * v, 0)));
  const gradient = (): number[] => {
    const r = b.map((bi, i) => bi - as[i]!.reduce((s, aij, j) => s + aij * x[j]!, 0));
    return Array.from({ length: n }, (_, j) => as.reduce((s, row, i) => s + row[j]! * r[i]!, 0));
  };
  for (let outer = 0; outer < 3 * n + 10; outer++) {
    const w = gradient();
    let best = -1;
    for (let j = 0; j < n; j++) if (!passive[j] && w[j]! > tol && (best < 0 || w[j]! > w[best]!)) best = j;
    if (best < 0) break;
    passive[best] = true;
    for (let inner = 0; inner < 3 * n + 10; inner++) {
      const cols = passive.flatMap((p, j) => (p ? [j] : []));
      const z = leastSquares(
        as.map((row) => cols.map((j) => row[j]!)),
        b,
      );
      if (cols.every((_, k) => z[k]! > 0)) {
        for (let j = 0; j < n; j++) x[j] = 0;
        cols.forEach((j, k) => (x[j] = z[k]!));
        break;
      }
      // Step from x towards z as far as every passive variable stays ≥ 0, and drop
      // those that reach 0.
      let alpha = Infinity;
      cols.forEach((j, k) => {
        if (z[k]! <= 0) alpha = Math.min(alpha, x[j]! / (x[j]! - z[k]!));
      });
      cols.forEach((j, k) => (x[j] = x[j]! + alpha * (z[k]! - x[j]!)));
      for (const j of cols) {
        if (x[j]! <= 1e-15) {
          x[j] = 0;
          passive[j] = false;
        }
      }
    }
  }
  const r = b.map((bi, i) => bi - as[i]!.reduce((s, aij, j) => s + aij * x[j]!, 0));
  return { x: x.map((v, j) => v / scale[j]!), residualNorm: Math.sqrt(r.reduce((s, v) => s + v * v, 0)) };
}

/** Unconstrained least squares by Householder QR: the x minimising |A x − b|² (A has full column rank, or the dependent columns get 0). */
export function leastSquares(a: readonly (readonly number[])[], b: readonly number[]): number[] {
  const m = a.length;
  const n = m === 0 ? 0 : a[0]!.length;
  const r = a.map((row) => [...row]);
  const y = [...b];
  for (let k = 0; k < n && k < m; k++) {
    let norm = 0;
    for (let i = k; i < m; i++) norm += r[i]![k]! ** 2;
    norm = Math.sqrt(norm);
    if (norm === 0) continue;
    const alpha = r[k]![k]! > 0 ? -norm : norm;
    const v = new Array<number>(m).fill(0);
    for (let i = k; i < m; i++) v[i] = r[i]![k]!;
    v[k] = v[k]! - alpha;
    const vv = v.reduce((s, vi) => s + vi * vi, 0);
    if (vv === 0) continue;
    for (let j = k; j < n; j++) {
      let d = 0;
      for (let i = k; i < m; i++) d += v[i]! * r[i]![j]!;
      const f = (2 * d) / vv;
      for (let i = k; i < m; i++) r[i]![j] = r[i]![j]! - f * v[i]!;
    }
    let d = 0;
    for (let i = k; i < m; i++) d += v[i]! * y[i]!;
    const f = (2 * d) / vv;
    for (let i = k; i < m; i++) y[i] = y[i]! - f * v[i]!;
  }
  const x = new Array<number>(n).fill(0);
  for (let k = Math.min(n, m) - 1; k >= 0; k--) {
    const diag = r[k]![k]!;
    if (Math.abs(diag) < 1e-12) continue; // a column that adds nothing: leave its x at 0
    let s = y[k]!;
    for (let j = k + 1; j < n; j++) s -= r[k]![j]! * x[j]!;
    x[k] = s / diag;
  }
  return x;
}
