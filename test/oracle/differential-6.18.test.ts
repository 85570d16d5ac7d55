/**
 * Differential tests of the 6.18 profile: each scenario runs on real processes under
 * this machine's KSM (Linux 6.18) in its default configuration (max_page_sharing 256,
 * smart_scan 1, use_zero_pages 0, advisor none) and in variants of it, and through
 * Samepage's 6.18 profile with the same knobs; the two must agree at every settle:
 * pages_shared, pages_sharing, pages_unshared + pages_volatile (smart scan moves a
 * skipped page's rmap_item from one to the other from scan to scan: the issue asks
 * for their sum; the model matches the split too, see test/ksm/modern.test.ts),
 * ksm_zero_pages, stable_node_chains, stable_node_dups, pages_scanned and
 * pages_skipped (counted from the run's start), general_profit, every live process's
 * /proc/<pid>/ksm_stat, and the digest of every live region.
 *
 * Unlike the 2.6.33-like suite (differential.test.ts), smart scan makes the result
 * depend on the exact number of full scans, not just on convergence: a settle here is
 * exactly its number of full scans on both sides. real.ts makes the real ksmd do that
 * (pages_to_scan above any scenario's pages, so one batch is one whole full scan;
 * sleep_millisecs 100, and the driver writes run=0 in the nap after the last one, and
 * fails the run if ksmd did one more).
 *
 * Where a scenario's statistics were also worked out on the real kernel by hand
 * (the EXPERIMENTS in real.ts and the notes here), they are stated literally and
 * checked against the model alone, so they mean something where the real KSM is
 * unavailable.
 */
import { describe, expect, it } from 'vitest';
import { runOnSamepage } from './model.js';
import { DEFAULTS_6_18, realKsmAvailable, runOnRealKernel, type KsmKnob } from './real.js';
import { shadowDigests } from './shadow.js';
import type { Advice, Prot, Scenario, StageResult, Step } from './scenario.js';

const skip = await realKsmAvailable();
if (skip !== null) console.warn(`test/oracle/differential-6.18.test.ts: real-kernel comparisons skipped: ${skip}`);
const real = it.skipIf(skip !== null);

/** The lock may be held by another test file for a while; a run takes a few seconds of naps. */
const TIMEOUT = 180_000;

// ---------------------------------------------------------------------------------
// Steps, briefly

const spawn = (proc: string): Step => ({ op: 'spawn', proc });
const mmap = (proc: string, region: string, pages: number, prot?: Prot): Step => ({ op: 'mmap', proc, region, pages, prot });
const munmap = (proc: string, region: string, first: number, count: number): Step => ({ op: 'munmap', proc, region, first, count });
const fill = (proc: string, region: string, first: number, count: number, byte: number, more: { tag?: number } = {}): Step => ({
  op: 'fill',
  proc,
  region,
  first,
  count,
  byte,
  ...more,
});
const write = (proc: string, region: string, offset: number, bytes: number[]): Step => ({ op: 'write', proc, region, offset, bytes });
const madvise = (proc: string, region: string, first: number, count: number, advice: Advice): Step => ({ op: 'madvise', proc, region, first, count, advice });
const mergeable = (proc: string, region: string, first: number, count: number): Step => madvise(proc, region, first, count, 'MADV_MERGEABLE');
const mprotect = (proc: string, region: string, first: number, count: number, prot: Prot): Step => ({ op: 'mprotect', proc, region, first, count, prot });
const fork = (proc: string, child: string): Step => ({ op: 'fork', proc, child });
const exit = (proc: string): Step => ({ op: 'exit', proc });
const prctl = (proc: string, on: boolean): Step => ({ op: 'prctl', proc, on });
const settle = (scans: number): Step => ({ op: 'settle', scans });
const P = 4096;

// ---------------------------------------------------------------------------------
// The configurations: 6.18's defaults, and the variants the issue asks for

interface Config {
  name: string;
  knobs: ReadonlyArray<readonly [KsmKnob, string]>;
}

function variant(name: string, knob: KsmKnob, value: string): Config {
  return { name, knobs: DEFAULTS_6_18.map(([k, v]) => [k, k === knob ? value : v] as const) };
}

const CONFIGS: Config[] = [
  { name: 'default', knobs: DEFAULTS_6_18 },
  variant('max_page_sharing 2', 'max_page_sharing', '2'),
  variant('max_page_sharing 3', 'max_page_sharing', '3'),
  variant('use_zero_pages 1', 'use_zero_pages', '1'),
  variant('smart_scan 0', 'smart_scan', '0'),
];

// ---------------------------------------------------------------------------------
// What is compared

/** One settle as compared: unshared and volatile as their sum. */
interface Compared {
  shared: number;
  sharing: number;
  unsharedOrVolatile: number;
  modern: StageResult['modern'];
  procs: StageResult['procs'];
  digests: Record<string, string>;
}

function compared(r: StageResult): Compared {
  return {
    shared: r.stats.pages_shared,
    sharing: r.stats.pages_sharing,
    unsharedOrVolatile: r.stats.pages_unshared + r.stats.pages_volatile,
    modern: r.modern,
    procs: r.procs,
    digests: r.digests,
  };
}

/** A settle's statistics, literally: shared, sharing, unshared, volatile, zero pages, chains, dups. */
type Row = [number, number, number, number, number, number, number];

function row(r: StageResult): Row {
  const m = r.modern!;
  return [r.stats.pages_shared, r.stats.pages_sharing, r.stats.pages_unshared, r.stats.pages_volatile, m.ksm_zero_pages, m.stable_node_chains, m.stable_node_dups];
}

// ---------------------------------------------------------------------------------
// The scenarios

interface Case {
  scenario: Scenario;
  /** Per configuration name, the rows worked out (and seen on the real kernel). */
  known: Record<string, Row[]>;
}

const cases: Case[] = [];
function scenario(name: string, steps: Step[], known: Record<string, Row[]> = {}): void {
  cases.push({ scenario: { name, steps }, known });
}

// The order in 6.x's cmp_and_merge_page: a page not yet KSM passes the checksum gate
// before any search. Four 'a' pages merge at the second scan (1 + 3). A fifth page,
// written after, is volatile for one scan (its checksum is new) and merges into the
// KSM page only at the next, although that page was there all along; 2.6.33 would
// have merged it at once. (Real kernel, 6.18 defaults: rows below.)
scenario(
  'a fresh page waits a scan before it merges into an existing KSM page',
  [spawn('a'), mmap('a', 'ram', 6), fill('a', 'ram', 0, 4, 0x61), mergeable('a', 'ram', 0, 6), settle(2), fill('a', 'ram', 4, 1, 0x61), settle(1), settle(1)],
  {
    default: [
      [1, 3, 0, 0, 0, 0, 0],
      [1, 3, 0, 1, 0, 0, 0],
      [1, 4, 0, 0, 0, 0, 0],
    ],
  },
);

// Smart scan: ten unique pages are scanned three times, then skipped for 1, 2, 4 and
// 8 scans between scans (skip_age()), leaving the unstable tree each time they are
// skipped; the KSM pages are never skipped. One full scan per settle. (Real kernel,
// 6.18 defaults: the rows below, pages_skipped +10 at scans 5, 7, 8, 10-13, ...)
scenario(
  'smart scan skips pages that keep failing to merge, longer and longer',
  [
    spawn('a'),
    mmap('a', 'ram', 14),
    fill('a', 'ram', 0, 4, 0x61),
    fill('a', 'ram', 4, 10, 0x75, { tag: 3 }),
    mergeable('a', 'ram', 0, 14),
    ...Array.from({ length: 14 }, () => settle(1)),
  ],
  {
    default: [
      [0, 0, 0, 14, 0, 0, 0],
      [1, 3, 10, 0, 0, 0, 0],
      [1, 3, 10, 0, 0, 0, 0],
      [1, 3, 10, 0, 0, 0, 0],
      [1, 3, 0, 10, 0, 0, 0],
      [1, 3, 10, 0, 0, 0, 0],
      [1, 3, 0, 10, 0, 0, 0],
      [1, 3, 0, 10, 0, 0, 0],
      [1, 3, 10, 0, 0, 0, 0],
      [1, 3, 0, 10, 0, 0, 0],
      [1, 3, 0, 10, 0, 0, 0],
      [1, 3, 0, 10, 0, 0, 0],
      [1, 3, 0, 10, 0, 0, 0],
      [1, 3, 10, 0, 0, 0, 0],
    ],
  },
);

// Stable node chains: seven identical pages. A fork adds the child's mappings to
// the KSM pages past the cap; its exit takes them away; rewriting the last three
// pages frees a dup (pruned when the keyhole meets it), rewriting the rest leaves
// chains with one dup, which collapse into plain nodes. (Real kernel,
// max_page_sharing 3 and 2: the rows below; with 256 no chain ever forms.)
scenario(
  'chains and dups: a cap on sharing, forked mappings past it, dups pruned, chains collapsed',
  [
    spawn('a'),
    mmap('a', 'ram', 7),
    fill('a', 'ram', 0, 7, 0x61),
    mergeable('a', 'ram', 0, 7),
    settle(1),
    settle(3),
    fork('a', 'b'),
    settle(1),
    settle(2),
    exit('b'),
    settle(2),
    ...[4, 5, 6].map((j) => write('a', 'ram', j * P, [0x62])),
    settle(1),
    settle(2),
    ...[0, 1, 2, 3].map((j) => write('a', 'ram', j * P, [0x63])),
    settle(1),
    settle(1),
    settle(1),
  ],
  {
    'max_page_sharing 3': [
      [0, 0, 0, 7, 0, 0, 0],
      [2, 4, 1, 0, 0, 1, 2],
      [2, 10, 0, 2, 0, 1, 2],
      [2, 10, 1, 1, 0, 1, 2],
      [2, 4, 1, 0, 0, 1, 2],
      [2, 2, 0, 3, 0, 1, 2],
      [3, 3, 0, 1, 0, 1, 2],
      [1, 1, 0, 5, 0, 1, 0],
      [2, 3, 1, 1, 0, 0, 0],
      [2, 3, 0, 2, 0, 0, 0],
    ],
  },
);

// More sharers than the default cap: 300 identical pages make two KSM pages under
// one chain, 256 + 44 mappings (Real kernel, 6.18 defaults: 2/298, 1 chain, 2 dups;
// real.ts EXPERIMENTS.)
scenario(
  'three hundred identical pages: more than max_page_sharing makes a second KSM page',
  [spawn('a'), mmap('a', 'ram', 300), fill('a', 'ram', 0, 300, 0x61), mergeable('a', 'ram', 0, 300), settle(3)],
  { default: [[2, 298, 0, 0, 0, 1, 2]] },
);

// Zero-filled pages. With use_zero_pages 1 they are mapped to the zero page (no
// stable node; ksm_zero_pages counts them, globally and per process); fork copies
// them and the count; a write, MADV_DONTNEED, MADV_UNMERGEABLE and exit each undo
// them. With use_zero_pages 0 they are one ordinary KSM page.
scenario(
  'zero-filled pages: KSM zero pages, fork, writes, DONTNEED, UNMERGEABLE, exit',
  [
    spawn('a'),
    mmap('a', 'ram', 8),
    fill('a', 'ram', 0, 4, 0x00),
    fill('a', 'ram', 4, 4, 0x61),
    mergeable('a', 'ram', 0, 8),
    settle(2),
    settle(1),
    fork('a', 'b'),
    write('b', 'ram', 0, [1]),
    settle(2),
    exit('b'),
    settle(2),
    write('a', 'ram', P, [5]),
    madvise('a', 'ram', 2, 1, 'MADV_DONTNEED'),
    settle(1),
    madvise('a', 'ram', 0, 8, 'MADV_UNMERGEABLE'),
    settle(1),
  ],
  {
    'use_zero_pages 1': [
      [1, 3, 0, 4, 4, 0, 0],
      [1, 3, 0, 0, 4, 0, 0],
      [1, 7, 1, 0, 7, 0, 0],
      [1, 3, 0, 0, 4, 0, 0],
      [1, 3, 0, 1, 2, 0, 0],
      [0, 0, 0, 0, 0, 0, 0],
    ],
  },
);

// prctl(PR_SET_MEMORY_MERGE): an area that exists and one mapped after are both
// mergeable without madvise; the forked child inherits it; turning it off unmerges
// everything, the area madvised explicitly too, and ksmd then lets the mm go.
scenario(
  'prctl(PR_SET_MEMORY_MERGE): existing and later areas, inherited by fork, off unmerges all',
  [
    spawn('a'),
    mmap('a', 'one', 4),
    fill('a', 'one', 0, 4, 0x61),
    prctl('a', true),
    mmap('a', 'two', 4),
    fill('a', 'two', 0, 4, 0x61),
    mmap('a', 'three', 2),
    fill('a', 'three', 0, 2, 0x62),
    mergeable('a', 'three', 0, 2),
    settle(2),
    fork('a', 'b'),
    mmap('b', 'four', 2),
    fill('b', 'four', 0, 2, 0x62),
    settle(3),
    prctl('a', false),
    settle(2),
  ],
);

// The ways a merged page stops being merged: munmap, MADV_DONTNEED, MADV_UNMERGEABLE;
// read-only pages stay merged.
scenario(
  'munmap, MADV_DONTNEED, MADV_UNMERGEABLE and mprotect on merged pages',
  [
    spawn('a'),
    mmap('a', 'ram', 12),
    fill('a', 'ram', 0, 12, 0x61),
    mergeable('a', 'ram', 0, 12),
    settle(2),
    munmap('a', 'ram', 0, 2),
    madvise('a', 'ram', 2, 2, 'MADV_DONTNEED'),
    mprotect('a', 'ram', 4, 2, 'r'),
    madvise('a', 'ram', 6, 2, 'MADV_UNMERGEABLE'),
    settle(2),
  ],
);

// Two processes whose halves are the same: one KSM page per content across them.
// b rewrites two shared pages and a unique one.
scenario(
  'two processes share half their pages; one rewrites some',
  [
    spawn('a'),
    spawn('b'),
    mmap('a', 'ram', 8),
    mmap('b', 'ram', 8),
    fill('a', 'ram', 0, 4, 0x11),
    fill('b', 'ram', 0, 4, 0x11),
    fill('a', 'ram', 4, 4, 0x22, { tag: 1 }),
    fill('b', 'ram', 4, 4, 0x22, { tag: 2 }),
    mergeable('a', 'ram', 0, 8),
    mergeable('b', 'ram', 0, 8),
    settle(3),
    fill('b', 'ram', 0, 2, 0x33),
    fill('b', 'ram', 7, 1, 0x44),
    settle(2),
  ],
);

// ---------------------------------------------------------------------------------

describe.sequential('differential, Linux 6.18: the real KSM and Samepage agree at every settle', () => {
  it(`has ${cases.length} scenarios, each named once, and ${CONFIGS.length} configurations`, () => {
    expect(cases.length).toBe(8);
    expect(new Set(cases.map((c) => c.scenario.name)).size).toBe(cases.length);
    expect(CONFIGS.map((c) => c.name)).toEqual(['default', 'max_page_sharing 2', 'max_page_sharing 3', 'use_zero_pages 1', 'smart_scan 0']);
    for (const c of cases) {
      for (const [config, rows] of Object.entries(c.known)) {
        expect(CONFIGS.some((x) => x.name === config)).toBe(true);
        expect(rows.length).toBe(c.scenario.steps.filter((s) => s.op === 'settle').length);
      }
    }
  });

  for (const { scenario: s, known } of cases) {
    describe(s.name, () => {
      for (const config of CONFIGS) {
        describe(config.name, () => {
          it('model: memory as written; the statistics worked out on the real kernel', () => {
            const model = runOnSamepage(s, { version: '6.18', knobs: config.knobs, memoryMiB: 32 });
            expect(model.map((r) => r.digests)).toEqual(shadowDigests(s));
            const rows = known[config.name];
            if (rows !== undefined) expect(model.map(row)).toEqual(rows);
          });

          real(
            `real kernel: equal to the model at every settle${skip === null ? '' : ` [skipped: ${skip}]`}`,
            async () => {
              const model = runOnSamepage(s, { version: '6.18', knobs: config.knobs, memoryMiB: 32 });
              const onReal = await runOnRealKernel(s, { knobs: config.knobs });
              expect(onReal.map(compared)).toEqual(model.map(compared));
            },
            TIMEOUT,
          );
        });
      }
    });
  }
});
