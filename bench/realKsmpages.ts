/**
 * Andrea Arcangeli's ksmpages benchmark (seeds/003, March 2009) on this machine's real
 * KSM, to print beside Samepage's figure for the same work. The memory is built by
 * bench/real-ksmpages.c (its header says what every page holds); knobs, locking and
 * restoring go through test/oracle/real.ts like every other use of the real KSM.
 *
 * What is timed, precisely:
 *  1. withRealKsm configures KSM like 2.6.33 (max_page_sharing 2147483647, smart_scan 0,
 *     use_zero_pages 0) with pages_to_scan 100000, sleep_millisecs 0 and run=0: ksmd
 *     stays idle. run=2 on the way in has reset full_scans to 0.
 *  2. Two processes of `mib` MiB each fill their pages and madvise them MADV_MERGEABLE
 *     (not timed).
 *  3. t0 = just before writing run=1. Then the statistics are polled every millisecond.
 *  4. t1 = the first poll at which the pages are "fully merged" (compared
 *     while ksmd runs; the figures returned are read again after run=0, see below):
 *       worst:    pages_shared = N and pages_sharing = N (N = pages per process):
 *                 page i of one process merged with page i of the other, for every i;
 *       best:     pages_shared = 1 and pages_sharing = 2N - 1;
 *       distinct: pages_unshared = 2N (nothing can merge; every page has passed the
 *                 checksum gate and sits in the unstable tree).
 *     `seconds` = t1 - t0. Then run=0 stops ksmd between two batches and the figures
 *     returned are read: `fullScans` = full scans COMPLETED. In all three modes the
 *     first scan only records checksums (the gate) and the merging (for distinct, the
 *     unstable-tree insertion) happens during the second, whose last page completes
 *     the condition just before full_scans ticks: expect fullScans 2.
 *
 * A Samepage figure for the same work is: build the same two processes, start ksmd
 * with the same knobs, and count simulated-to-wall time until the same condition.
 *
 * With --6.18 (opts.knobs DEFAULTS_6_18) the real KSM runs in its own default
 * configuration (max_page_sharing 256, smart_scan 1) instead, for the 6.18 profile's
 * figure: the best case is then fully merged when every page is in the stable tree.
 *
 *   npx tsx bench/realKsmpages.ts [MIB] [worst|best|distinct ...] [--6.18]   (default 1024 worst best)
 */
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DEFAULTS_6_18, LIKE_2_6_33, buildHelper, realKsmAvailable, withRealKsm, type KsmKnob, type RealKsmStats } from '../test/oracle/real.js';

export type KsmpagesMode = 'worst' | 'best' | 'distinct';

export interface KsmpagesFigures {
  seconds: number;
  fullScans: number;
  pagesShared: number;
  pagesSharing: number;
  pagesUnshared: number;
  pagesVolatile: number;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PAGES_PER_MIB = 256;

function fullyMerged(mode: KsmpagesMode, n: number, s: RealKsmStats, capped: boolean): boolean {
  switch (mode) {
    case 'worst':
      return s.pages_shared === n && s.pages_sharing === n;
    case 'best':
      // With max_page_sharing 256 (6.18's default) the 2N mappings take 2N / 256 KSM pages.
      return capped ? s.pages_shared + s.pages_sharing === 2 * n : s.pages_shared === 1 && s.pages_sharing === 2 * n - 1;
    case 'distinct':
      return s.pages_unshared === 2 * n;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function realKsmpages(
  mib: number,
  mode: KsmpagesMode,
  opts: { timeoutMs?: number; knobs?: ReadonlyArray<readonly [KsmKnob, string]> } = {},
): Promise<KsmpagesFigures | { skipped: string }> {
  const reason = await realKsmAvailable();
  if (reason !== null) return { skipped: reason };
  const bin = buildHelper(path.join(HERE, 'real-ksmpages.c'), 'real-ksmpages');
  const n = mib * PAGES_PER_MIB;
  const timeoutMs = opts.timeoutMs ?? 600_000;

  const knobs = opts.knobs ?? LIKE_2_6_33;
  const capped = knobs !== LIKE_2_6_33;
  return withRealKsm({ pagesToScan: 100_000, sleepMillisecs: 0, run: 0, knobs }, async (k) => {
    const child = k.spawn(bin, [String(mib), mode]);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const ready = await new Promise<boolean>((resolve) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.startsWith('ready'));
      });
      child.once('close', () => resolve(false));
    });
    if (!ready) throw new Error(`real-ksmpages ${mib} ${mode} failed: ${stderr.trim()}`);

    const t0 = performance.now();
    k.write('run', 1);
    let s = k.stats();
    while (!fullyMerged(mode, n, s, capped)) {
      if (performance.now() - t0 > timeoutMs) {
        throw new Error(
          `ksmpages ${mode} ${mib} MiB: not fully merged after ${timeoutMs} ms: ${JSON.stringify(s)}`,
        );
      }
      await sleep(1);
      s = k.stats();
    }
    const seconds = (performance.now() - t0) / 1000;
    // Stop ksmd (the write waits for its current batch), then read a consistent set:
    // the polls above read five files while ksmd runs, and can catch an rmap_item of
    // the next scan between its removal from the unstable tree and its reinsertion.
    k.write('run', 0);
    s = k.stats();
    child.stdin!.end();
    await new Promise<void>((r) => (child.exitCode !== null ? r() : child.once('close', () => r())));
    return {
      seconds,
      fullScans: s.full_scans,
      pagesShared: s.pages_shared,
      pagesSharing: s.pages_sharing,
      pagesUnshared: s.pages_unshared,
      pagesVolatile: s.pages_volatile,
    };
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const args = process.argv.slice(2).filter((a) => a !== '--6.18');
  const defaults = process.argv.includes('--6.18');
  const mib = Number(args[0] ?? 1024);
  const modes = (args.length > 1 ? args.slice(1) : ['worst', 'best']) as KsmpagesMode[];
  for (const mode of modes) {
    const r = await realKsmpages(mib, mode, defaults ? { knobs: DEFAULTS_6_18 } : {});
    if ('skipped' in r) {
      console.log(`real ksmpages ${mode}: skipped (${r.skipped})`);
      continue;
    }
    console.log(
      `real ksmpages ${mode.padEnd(8)} 2 x ${mib} MiB: ${r.seconds.toFixed(2)} s, ` +
        `${r.fullScans} full scans completed, shared ${r.pagesShared} sharing ${r.pagesSharing} ` +
        `unshared ${r.pagesUnshared} volatile ${r.pagesVolatile}`,
    );
  }
}
