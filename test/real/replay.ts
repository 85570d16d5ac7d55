/**
 * The model's side of the real-host differential test: captured guests replayed on a
 * modelled Linux 6.18 host (src/vmm/capture-source.ts), KSM configured as the real
 * one was, and ksmd driven to convergence the way test/real/ksm.ts converge() drives
 * the real one: readings `scansPerRound` full scans apart until the statistics read
 * the same `stableRounds` times in a row.
 *
 *   npx tsx test/real/replay.ts [--2.6.33] FILE [default|like-2.6.33|zero] [GUEST...]
 *
 * prints the converged statistics of the guests of a capture file (all by default);
 * --2.6.33 replays them on the 2.6.33 model instead (no THP, guest RAM alone: the model
 * before issue 12), for the error it would make.
 */
import { readFileSync } from 'node:fs';
import { Kernel } from '../../src/index.js';
import { readCapture, type Capture } from '../../src/vmm/capture-file.js';
import { CaptureSource, captureDigest } from '../../src/vmm/capture-source.js';
import { Guest } from '../../src/vmm/guest.js';
import { Prng } from '../../src/lib/prng.js';
import { DEFAULTS_6_18, LIKE_2_6_33, type KsmKnob } from '../oracle/real.js';
import { STAT_NAMES, type RealKsmAllStats } from './ksm.js';

export const REPLAY_CONFIGS: Record<string, ReadonlyArray<readonly [KsmKnob, string]>> = {
  default: DEFAULTS_6_18,
  'like-2.6.33': LIKE_2_6_33,
  zero: DEFAULTS_6_18.map(([k, v]) => [k, k === 'use_zero_pages' ? '1' : v] as const),
};

export interface ReplayResult {
  stats: RealKsmAllStats;
  rounds: number;
  /** THPs left whole in the guests' RAM blocks after convergence. */
  thps: number;
}

/**
 * Boot `guests` of `capture` (each a QEMU process mapping its captured RAM blocks)
 * on a 6.18 kernel, set `knobs`, run ksmd to convergence. Guests are created in the
 * order given, as the real ones were started, so ksmd meets their mms in that order.
 */
export function replayConverge(
  capture: Capture,
  file: string,
  digest: string,
  guests: readonly string[],
  knobs: ReadonlyArray<readonly [KsmKnob, string]>,
  opts: { scansPerRound?: number; stableRounds?: number; maxRounds?: number; version?: '6.18' | '2.6.33' } = {},
): ReplayResult {
  let ramMiB = 0;
  const sources = guests.map((g) => new CaptureSource(capture, g, file, digest));
  for (const s of sources) ramMiB += s.minRamBytes / 1048576 + 24;
  const memoryMiB = Math.ceil((ramMiB + 64) / 128) * 128;
  const k = new Kernel({ memoryMiB, blockMiB: 128, seed: 1, version: opts.version ?? '6.18' });
  const prng = new Prng(7);
  const gs = sources.map((s, i) => {
    const g = new Guest(k, prng.fork(i + 1), `g${i}`, { name: guests[i]!, source: s, ramBytes: s.minRamBytes });
    g.boot();
    g.tick(0);
    g.work();
    return g;
  });
  const sysfs = (f: string, v: string | number): void => k.sysfs.write(`/sys/kernel/mm/ksm/${f}`, String(v));
  // A knob the kernel does not have (6.18's, in 2.6.33) is left out, as the real
  // harness leaves out a knob an older kernel lacks.
  for (const [name, v] of knobs) if (k.sysfs.has(`/sys/kernel/mm/ksm/${name}`)) sysfs(name, v);
  sysfs('pages_to_scan', 100_000);
  sysfs('sleep_millisecs', 0);
  sysfs('run', 1);
  const perRound = opts.scansPerRound ?? 10;
  const want = opts.stableRounds ?? 3;
  let prev: string | null = null;
  let same = 0;
  let rounds = 0;
  for (;;) {
    k.ksmd.runFullScans(perRound);
    rounds++;
    const stats = readModelStats(k);
    const { full_scans: _f, ...rest } = stats;
    const key = JSON.stringify(rest);
    same = key === prev ? same + 1 : 1;
    prev = key;
    if (same >= want || rounds >= (opts.maxRounds ?? 40)) {
      k.checkInvariants();
      let thps = 0;
      for (const g of gs) thps += g.process!.smapsRollup().anonHuge / 512;
      return { stats, rounds, thps };
    }
  }
}

/** The model's /sys/kernel/mm/ksm statistics, by the real files' names. */
export function readModelStats(k: Kernel): RealKsmAllStats {
  const out = {} as Record<(typeof STAT_NAMES)[number], number>;
  // 2.6.33 has no chains, dups or KSM zero pages: 0.
  for (const name of STAT_NAMES) out[name] = k.sysfs.has(`/sys/kernel/mm/ksm/${name}`) ? Number(k.sysfs.read(`/sys/kernel/mm/ksm/${name}`)) : 0;
  return out as RealKsmAllStats;
}

if (process.argv[1] !== undefined && import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const old = args[0] === '--2.6.33';
  if (old) args.shift();
  const [file, cfg = 'default', ...names] = args;
  if (file === undefined || REPLAY_CONFIGS[cfg] === undefined) {
    console.error(`usage: replay.ts FILE [${Object.keys(REPLAY_CONFIGS).join('|')}] [GUEST...]`);
    process.exit(2);
  }
  const bytes = readFileSync(file);
  const c = readCapture(bytes, file);
  const guests = names.length > 0 ? names : c.processes.map((p) => p.name);
  const t0 = Date.now();
  const r = replayConverge(c, file, captureDigest(bytes), guests, REPLAY_CONFIGS[cfg]!, { version: old ? '2.6.33' : '6.18' });
  console.log(JSON.stringify({ file, cfg, guests, ...r, ms: Date.now() - t0 }));
}
