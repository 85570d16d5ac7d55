/**
 * samepage plan's search and trials (src/scenario/plan.ts): the trial documents, the
 * verdicts, the search over counts on synthetic verdicts, and the answer for a small
 * scenario checked independently: a run of the answer's count has no OOM kill, a run of
 * one more has one.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadImageCatalog } from '../../src/scenario/images.js';
import { parseSweep, planDocument, searchLargestFit, trialDocument, trialScenario, findTemplate, judgeTrial, type TrialOutcome, type TrialSpec } from '../../src/scenario/plan.js';
import { runScenario } from '../../src/scenario/run.js';
import { parseScenario } from '../../src/scenario/schema.js';

const images = loadImageCatalog(fileURLToPath(new URL('../vmm/fixtures/', import.meta.url)));
const PLAN = fileURLToPath(new URL('../cli/fixtures/plan.yaml', import.meta.url));
const text = readFileSync(PLAN, 'utf8');

/** A verdict for the search: fits up to `limit`. */
function verdict(n: number, limit: number): TrialOutcome {
  return {
    count: n,
    fits: n <= limit,
    violations: n <= limit ? [] : [`too many (${n})`],
    oomKills: [],
    refused: [],
    peakSwapBytes: 0,
    peakSwapAt: 0,
    minFreeBytes: 0,
    minFreeAt: 0,
    savedBytes: 0,
    peakSavedBytes: 0,
    peakSavedAt: 0,
    saved90At: null,
    ksmdCpuAvg: 0,
    ksmdCpuPeak: 0,
    ksmdCpuPeakAt: 0,
    ksmdCpuMs: 0,
    durationMs: 0,
    wallMs: 0,
  };
}

describe('plan: the search over counts', () => {
  it('probes 1, 2, 4, … then narrows to adjacent counts; every count at most once', async () => {
    for (const width of [1, 2, 3, 4]) {
      for (const limit of [0, 1, 2, 3, 7, 8, 9, 100, 255]) {
        const asked: number[] = [];
        const a = await searchLargestFit(
          async (n) => {
            asked.push(n);
            return verdict(n, limit);
          },
          256,
          width,
        );
        expect([a.count, a.atLeast, a.fit?.count ?? 0, a.next?.count]).toEqual([limit, false, limit, limit + 1]);
        expect(new Set(asked).size).toBe(asked.length);
        expect(a.trials.length).toBe(asked.length);
      }
    }
  });

  it('one at a time it is an exponential probe and a bisection: 9 fits, 10 does not', async () => {
    const asked: number[] = [];
    await searchLargestFit(async (n) => (asked.push(n), verdict(n, 9)), 256, 1);
    expect(asked).toEqual([1, 2, 4, 8, 16, 12, 10, 9]);
  });

  it('says "at least" when the most it may try fits, and tries max itself', async () => {
    const asked: number[] = [];
    const a = await searchLargestFit(async (n) => (asked.push(n), verdict(n, 1000)), 20, 1);
    expect([a.count, a.atLeast, a.next]).toEqual([20, true, null]);
    expect(asked).toEqual([1, 2, 4, 8, 16, 20]);
  });
});

describe('plan: trial scenarios', () => {
  const doc = planDocument(text, 'plan.yaml');
  const spec: TrialSpec = { doc, file: 'plan.yaml', template: 'web', ksm: null, kernel: null };

  it('a template with count: N copies, the run longer by the later starts', () => {
    const d = trialDocument(spec, 8, 5000);
    expect((d.guests as { count: number }[])[0]!.count).toBe(8);
    // 6 more copies, 500 ms apart: the last starts 3 s later than before.
    expect(d.duration).toBe('8000ms');
    expect((doc.guests as { count: number }[])[0]!.count).toBe(2); // the document is left alone
    const s = trialScenario(spec, 8, 5000, images);
    expect(s.guests.map((g) => [g.name, g.startAt])).toEqual(Array.from({ length: 8 }, (_, i) => [`web-${i + 1}`, i * 500]));
    expect(s.durationMs).toBe(8000);
  });

  it('a template without count: copies beside it, starting with it; events naming copies it lacks are left out', () => {
    const d = planDocument(
      `name: t
host: { memory: 64MiB, block: 16MiB }
duration: 5s
guests:
  - { name: solo, image: tiny, version: "1", memory: 16MiB, start: 1s }
  - { name: pair, count: 3, image: tiny, version: "1", memory: 16MiB }
events:
  - { at: 2s, stop: solo }
  - { at: 2s, stop: pair-3 }
  - { at: 3s, burst: { guest: pair-2, pages: 10, over: 1s } }
`,
      't.yaml',
    );
    const solo = trialScenario({ doc: d, file: 't.yaml', template: 'solo', ksm: null, kernel: null }, 3, 5000, images);
    expect(solo.guests.map((g) => [g.name, g.startAt])).toEqual([
      ['solo', 1000],
      ['solo-2', 1000],
      ['solo-3', 1000],
      ['pair-1', 0],
      ['pair-2', 0],
      ['pair-3', 0],
    ]);
    expect(solo.events.length).toBe(3);
    const pair = trialScenario({ doc: d, file: 't.yaml', template: 'pair', ksm: { policy: 'fixed', run: 0 }, kernel: null }, 1, 5000, images);
    expect(pair.guests.map((g) => g.name)).toEqual(['solo', 'pair-1']);
    expect(pair.events.map((e) => e.action)).toEqual([{ kind: 'stop', guest: 'solo' }]);
    expect(pair.ksm).toEqual({ policy: 'fixed', run: 0, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: null });
  });

  it('a template must exist and start', () => {
    expect(findTemplate(doc, 'db')).toBe('the scenario has no guests: entry named "db" (entries: web)');
    const never = planDocument('guests: [{ name: late, start: never }]', 'x.yaml');
    expect(findTemplate(never, 'late')).toBe('guests: entry late starts never (only an event starts it): plan needs a template that starts');
  });

  it('--sweep takes a knob of the kernel profile, or kernel with versions Samepage has', () => {
    expect(parseSweep('pages_to_scan=100,1000,10000', '2.6.33')).toEqual({ name: 'pages_to_scan', values: ['100', '1000', '10000'] });
    expect(parseSweep('max_kernel_pages=0,1000', '2.6.33')).toEqual({ name: 'max_kernel_pages', values: ['0', '1000'] });
    expect(parseSweep('kernel=2.6.33', '2.6.33')).toEqual({ name: 'kernel', values: ['2.6.33'] });
    expect(parseSweep('max_page_sharing=256', '2.6.33')).toBe('--sweep max_page_sharing: not a KSM knob of Linux 2.6.33 (knobs: max_kernel_pages, pages_to_scan, sleep_millisecs, run; or kernel)');
    expect(parseSweep('pages_to_scan=100,x', '2.6.33')).toBe('--sweep pages_to_scan: expected whole numbers, got "x"');
    expect(parseSweep('pages_to_scan=100,100', '2.6.33')).toBe('--sweep pages_to_scan: a value given twice in "100,100"');
    expect(parseSweep('pages_to_scan', '2.6.33')).toBe('--sweep needs NAME=VALUE,VALUE,... (a KSM knob or kernel), got "pages_to_scan"');
    expect(parseSweep('kernel=1.0', '2.6.33')).toMatch(/^--sweep kernel: EINVAL: /);
  });
});

describe('plan: the answer for plan-tiny, checked independently', () => {
  // The plan (test/cli/cli.test.ts runs it) answers 7 with KSM. Here, without the
  // planner: the scenario file with count 7 and with count 8, each run as long after its
  // last start as the original (5 s after a last start at 0.5 s: 7.5 s and 8 s).
  const withCount = (n: number, duration: string): string => text.replace('count: 2,', `count: ${n},`).replace('duration: 5s', `duration: ${duration}`);
  const run = (yaml: string) => runScenario(parseScenario(yaml, 'plan.yaml', images), { images })[0]!;
  const limits = { maxSwapBytes: 0, minFreeBytes: Math.round(0.05 * 48 * 1024 * 1024) };

  it('7 guests: no OOM kill, no swap, free memory above 5% at every sample', () => {
    const r = run(withCount(7, '7500ms'));
    expect(r.events.filter((e) => e.kind === 'oom-kill' || e.kind === 'refused')).toEqual([]);
    expect(Math.min(...r.samples.map((s) => s.freeBytes))).toBeGreaterThanOrEqual(limits.minFreeBytes);
    expect(r.guests.every((g) => g.state === 'running')).toBe(true);
    expect(judgeTrial(7, r, limits, 0).fits).toBe(true);
  });

  it('8 guests: the OOM killer kills one', () => {
    const r = run(withCount(8, '8s'));
    const kills = r.events.filter((e) => e.kind === 'oom-kill');
    expect(kills.map((e) => [e.t, e.guest])).toEqual([[4900, 'web-1']]);
    expect(r.guests.find((g) => g.name === 'web-1')!.state).toBe('oom-killed');
    expect(judgeTrial(8, r, limits, 0).violations[0]).toBe('OOM kill: web-1 at 4.9s');
  });
});
