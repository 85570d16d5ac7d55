/**
 * Driving the real ksmd to convergence and reading every statistic, for the real-host
 * measurements (test/real/measure.ts) and tests. Call inside withRealKsm (test/oracle/
 * real.ts), which saves, configures and restores the knobs.
 */
import type { RealKsm } from '../oracle/real.js';

/** Every statistic /sys/kernel/mm/ksm has on 6.18, as numbers. */
export interface RealKsmAllStats {
  pages_shared: number;
  pages_sharing: number;
  pages_unshared: number;
  pages_volatile: number;
  stable_node_chains: number;
  stable_node_dups: number;
  ksm_zero_pages: number;
  full_scans: number;
}

export const STAT_NAMES = ['pages_shared', 'pages_sharing', 'pages_unshared', 'pages_volatile', 'stable_node_chains', 'stable_node_dups', 'ksm_zero_pages', 'full_scans'] as const;

export function readAllStats(k: RealKsm): RealKsmAllStats {
  const out = {} as RealKsmAllStats;
  for (const n of STAT_NAMES) out[n] = k.readNumber(n);
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface ConvergeOptions {
  /**
   * Full scans between two readings. Default 10. Without smart_scan two would do (a
   * page needs at most two after its last change); with it (6.18's default) a page
   * that did not merge is skipped for up to 8 scans (mm/ksm.c skip_age()), so a
   * reading two scans after another can repeat it while skipped pages are still to
   * come: measured, four identical guests looked converged after 22 full scans with
   * 11 to 16 whole THPs per guest, which later scans split.
   */
  scansPerRound?: number;
  /** Equal readings in a row that count as converged. Default 3. */
  stableRounds?: number;
  /** Give up (throw) after this long. Default 5 minutes. */
  timeoutMs?: number;
}

/**
 * Runs ksmd (run=1) until the statistics (all but full_scans) read the same
 * `stableRounds` times in a row, `scansPerRound` full scans apart. Each reading is
 * taken with ksmd stopped (run=0 returns between two batches), so no rmap_item is
 * caught between trees. Returns the last reading, ksmd left at run=0, and the rounds.
 */
export async function converge(k: RealKsm, opts: ConvergeOptions = {}): Promise<{ stats: RealKsmAllStats; rounds: number; ms: number }> {
  const perRound = opts.scansPerRound ?? 10;
  const want = opts.stableRounds ?? 3;
  const started = Date.now();
  const until = started + (opts.timeoutMs ?? 300_000);
  let prev: string | null = null;
  let same = 0;
  let rounds = 0;
  for (;;) {
    const from = k.readNumber('full_scans');
    k.write('run', 1);
    while (k.readNumber('full_scans') < from + perRound) {
      if (Date.now() > until) {
        k.write('run', 0);
        throw new Error(`ksmd did not finish ${perRound} full scans within the time limit (full_scans ${k.readNumber('full_scans')}, from ${from})`);
      }
      await sleep(20);
    }
    k.write('run', 0);
    rounds++;
    const stats = readAllStats(k);
    const { full_scans: _f, ...rest } = stats;
    const key = JSON.stringify(rest);
    same = key === prev ? same + 1 : 1;
    prev = key;
    if (same >= want) return { stats, rounds, ms: Date.now() - started };
    if (Date.now() > until) throw new Error(`ksmd did not converge within the time limit: last ${key}`);
  }
}
