import { DEFAULT_KSMD_COSTS, ksmdCpuNs } from '../../src/ksm/cost.js';
import { KSM_STATS, pickKsmStats, type KsmStats } from '../../src/ksm/stats.js';
import type { KsmWorkCounts } from '../../src/ksm/work.js';
import type { RunEvent, RunResult } from '../../src/scenario/types.js';
import type { HostEventKind } from '../../src/vmm/types.js';
import type { GuestSample, HostSample } from '../../src/vmm/types.js';

/**
 * Hand-built results of one scenario, "web-pair": a 2 GiB host with 1 GiB of swap and
 * two Fedora 13 guests of 1.5 GiB each (3 GiB promised: overcommit 1.50), run for
 * 5 minutes and sampled every 30 s, under two KSM policies.
 *
 * - `FIXED`: fixed knobs. KSM saves up to 576 MiB (at 4min), then a little less as the
 *   guests dirty pages. At 1min 30s the scenario's 512 MiB of pressure fails (ENOMEM).
 * - `TUNED`: ksmtuned. It starts slower, so the pressure at 1min 30s pushes 512 MiB to
 *   swap (128 MiB of it stays there); it saves up to 608 MiB, at 5min.
 *
 * The figures are consistent where the report relies on it (saved = pages_sharing ×
 * 4 KiB, the summaries are the last sample, the peak is the first sample with the most
 * saved; ksmd's work is its pages scanned, half of them checksummed, and its CPU what
 * the default costs make of that), not a simulation.
 */

/** A run event; an action concerning no guest unless said otherwise. */
export function ev(t: number, what: string, error: string | null = null, kind: HostEventKind = 'action', guest: string | null = null): RunEvent {
  return { t, kind, guest, what, error };
}

/** ksmd's work in the fixtures: the pages scanned, every other one checksummed. */
export function fixtureWork(pagesScanned: number): KsmWorkCounts {
  return {
    pagesScanned,
    checksums: pagesScanned / 2,
    stableTreeCompares: 0,
    unstableTreeCompares: 0,
    mergeCompares: 0,
    bytesCompared: 0,
    merges: 0,
    unmerges: 0,
    rmapItemsAllocated: 0,
    rmapItemsFreed: 0,
  };
}

const MiB = 1024 * 1024;
const PAGE = 4096;
const HOST_RAM = 2048 * MiB;
const GUEST_RAM = 1536 * MiB;

interface Point {
  t: number;
  /** Each guest's resident RAM, MiB. */
  resident: number;
  /** Memory saved, MiB (pages_sharing × 4 KiB). */
  saved: number;
  pagesShared: number;
  pagesUnshared: number;
  pagesVolatile: number;
  fullScans: number;
  pagesScanned: number;
  /** Swap in use, MiB (split evenly between the guests). */
  swap: number;
  /** Host memory in use besides the guests' (the kernel, the pressure), MiB. */
  other: number;
}

function guest(name: string, id: string, p: Point): GuestSample {
  return {
    name,
    id,
    state: p.t === 0 ? 'booting' : 'running',
    ramBytes: GUEST_RAM,
    residentBytes: p.resident * MiB,
    mergedBytes: (p.saved * MiB + p.pagesShared * PAGE) / 2,
    savedBytes: (p.saved * MiB) / 2,
    swapBytes: (p.swap * MiB) / 2,
  };
}

/**
 * Every KSM statistic a 2.6.33 kernel has: those the fixture sets, 0 for any other
 * (the record may grow); a later kernel's statistics are left out, as such a run leaves them.
 */
function ksmStats(set: Partial<KsmStats>): KsmStats {
  return Object.fromEntries(KSM_STATS.filter((s) => s.feature === null).map((s) => [s.name, set[s.name] ?? 0])) as KsmStats;
}

function sample(p: Point, pagesToScan: number, sleepMillisecs: number, prev: HostSample | null): HostSample {
  const used = 2 * p.resident + p.other - p.saved;
  const work = fixtureWork(p.pagesScanned);
  const ksmdCpuMs = ksmdCpuNs(work, DEFAULT_KSMD_COSTS) / 1e6;
  return {
    t: p.t,
    ...ksmStats({
      pagesShared: p.pagesShared,
      pagesSharing: (p.saved * MiB) / PAGE,
      pagesUnshared: p.pagesUnshared,
      pagesVolatile: p.pagesVolatile,
      fullScans: p.fullScans,
      pagesScanned: p.pagesScanned,
    }),
    savedBytes: p.saved * MiB,
    totalBytes: HOST_RAM,
    freeBytes: HOST_RAM - used * MiB,
    swapUsedBytes: p.swap * MiB,
    run: 1,
    pagesToScan,
    sleepMillisecs,
    work,
    ksmdCpuMs,
    ksmdCpu: prev === null ? 0 : (ksmdCpuMs - prev.ksmdCpuMs) / (p.t - prev.t),
    guests: [guest('web-1', 'g-V1StGXR8', p), guest('web-2', 'g-Z_0IyP4w', p)],
  };
}

function run(variant: string | null, policy: string, points: Point[], events: RunResult['events'], knobs: [number, number]): RunResult {
  const samples: HostSample[] = [];
  for (const p of points) samples.push(sample(p, knobs[0], knobs[1], samples.at(-1) ?? null));
  const last = samples[samples.length - 1]!;
  let peak = samples[0]!;
  for (const s of samples) if (s.savedBytes > peak.savedBytes) peak = s;
  let minFree = samples[0]!;
  for (const s of samples) if (s.freeBytes < minFree.freeBytes) minFree = s;
  let cpuPeak = samples[0]!;
  for (const s of samples) if (s.ksmdCpu > cpuPeak.ksmdCpu) cpuPeak = s;
  return {
    scenario: 'web-pair',
    variant,
    policy,
    kernel: '2.6.33',
    seed: 42,
    durationMs: 300_000,
    samples,
    events,
    guests: last.guests.map((g) => ({
      name: g.name,
      image: 'fedora 13',
      state: g.state,
      memMerge: true,
      ramBytes: g.ramBytes,
      residentBytes: g.residentBytes,
      mergedBytes: g.mergedBytes,
      savedBytes: g.savedBytes,
      swapBytes: g.swapBytes,
    })),
    host: {
      ramBytes: HOST_RAM,
      swapBytes: 1024 * MiB,
      guestRamBytes: 2 * GUEST_RAM,
      freeBytes: last.freeBytes,
      swapUsedBytes: last.swapUsedBytes,
      savedBytes: last.savedBytes,
      peakSavedBytes: peak.savedBytes,
      peakSavedAt: peak.t,
      saved90At: samples.find((s) => s.savedBytes >= 0.9 * last.savedBytes)!.t,
      minFreeBytes: minFree.freeBytes,
      minFreeAt: minFree.t,
      ...pickKsmStats(last),
      work: last.work,
      ksmdCpuMs: last.ksmdCpuMs,
      ksmdCpuAvg: last.ksmdCpuMs / last.t,
      ksmdCpuPeak: cpuPeak.ksmdCpu,
      ksmdCpuPeakAt: cpuPeak.t,
    },
  };
}

const START_EVENTS: RunResult['events'] = [
  ev(0, 'start web-1 (fedora 13)', null, 'action', 'web-1'),
  ev(0, 'start web-2 (fedora 13)', null, 'action', 'web-2'),
];

// t (s), resident, saved, shared, unshared, volatile, full scans, scanned (k pages), swap, other
const FIXED_POINTS: Point[] = [
  [0, 0, 0, 0, 0, 0, 0, 0, 0, 128],
  [30, 640, 64, 4096, 90_000, 2_000, 0, 75, 0, 128],
  [60, 900, 160, 9_216, 150_000, 1_500, 1, 150, 0, 128],
  [90, 900, 256, 12_288, 120_000, 1_200, 1, 225, 0, 128],
  [120, 900, 352, 14_336, 95_000, 900, 2, 300, 0, 128],
  [150, 900, 448, 16_384, 70_000, 700, 3, 375, 0, 128],
  [180, 900, 512, 17_408, 50_000, 600, 3, 450, 0, 128],
  [210, 900, 560, 18_432, 40_000, 500, 4, 525, 0, 128],
  [240, 900, 576, 18_944, 36_000, 400, 5, 600, 0, 128],
  [270, 900, 576, 18_944, 36_100, 300, 6, 675, 0, 128],
  [300, 900, 560, 18_688, 38_000, 450, 6, 750, 0, 128],
].map(point);

const TUNED_POINTS: Point[] = [
  [0, 0, 0, 0, 0, 0, 0, 0, 0, 128],
  [30, 640, 8, 1_024, 20_000, 9_000, 0, 9, 0, 128],
  [60, 900, 24, 2_048, 60_000, 6_000, 0, 24, 0, 128],
  [90, 644, 64, 4_096, 90_000, 4_000, 0, 60, 512, 640],
  [120, 644, 160, 8_192, 110_000, 3_000, 1, 120, 512, 640],
  [150, 836, 288, 12_288, 90_000, 2_000, 1, 195, 128, 128],
  [180, 836, 416, 15_360, 70_000, 1_500, 2, 270, 128, 128],
  [210, 836, 512, 17_408, 52_000, 1_000, 2, 345, 128, 128],
  [240, 836, 576, 18_432, 42_000, 800, 3, 420, 128, 128],
  [270, 836, 600, 19_200, 37_000, 600, 3, 495, 128, 128],
  [300, 836, 608, 19_456, 35_000, 500, 4, 570, 128, 128],
].map(point);

function point(a: number[]): Point {
  const [t, resident, saved, pagesShared, pagesUnshared, pagesVolatile, fullScans, scannedK, swap, other] = a as [number, number, number, number, number, number, number, number, number, number];
  return { t: t * 1000, resident, saved, pagesShared, pagesUnshared, pagesVolatile, fullScans, pagesScanned: scannedK * 1000, swap, other };
}

/** Fixed knobs, with a failed pressure step at 1min 30s. */
export const FIXED: RunResult = run(
  'fixed',
  'fixed: pages_to_scan 1250, sleep_millisecs 20',
  FIXED_POINTS,
  [
    ...START_EVENTS,
    ev(90_000, 'pressure 512 MiB', 'ENOMEM: out of memory: wanted 131072 pages, 98304 free and 0 reclaimable'),
    ev(120_000, 'release pressure'),
  ],
  [1250, 20],
);

/** ksmtuned, no errors, swap in use from 1min 30s. */
export const TUNED: RunResult = run(
  'ksmtuned',
  'ksmtuned',
  TUNED_POINTS,
  [...START_EVENTS, ev(90_000, 'pressure 512 MiB'), ev(150_000, 'release pressure')],
  [64, 80],
);

/** The same fleet as a scenario without variants. */
export const SINGLE: RunResult = { ...FIXED, variant: null };
