import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { KernelError } from '../../src/lib/errors.js';
import { PAGE_SIZE } from '../../src/mm/constants.js';
import { loadImageCatalog } from '../../src/scenario/images.js';
import { buildHost, runScenario, type RunOptions } from '../../src/scenario/run.js';
import { parseScenario, type Scenario } from '../../src/scenario/schema.js';
import type { RunResult } from '../../src/scenario/types.js';
import { DEFAULT_KSMD_COSTS, ksmdCpuNs } from '../../src/ksm/cost.js';
import type { KsmWorkCounts } from '../../src/ksm/work.js';
import type { Host } from '../../src/vmm/host.js';
import { naiveKsm } from '../vmm/helpers.js';

/**
 * The timeline runner, src/scenario/run.ts, on small hosts (64 MiB in 16 MiB blocks)
 * with guests of the tiny test image (test/vmm/fixtures: 16 MiB, tiny 1 boots in 2s,
 * tiny 2 in 3s). Guests act on a 100ms grid and each tick's writes are done at its
 * start, so a guest started at t boots at t + boot_time − 100ms.
 *
 * Runs are shared by the tests of a describe block (computed once, on first use): a
 * run is deterministic, so each test reads one behaviour off the same run.
 */

const MiB = 1024 * 1024;
const images = loadImageCatalog(fileURLToPath(new URL('../vmm/fixtures/', import.meta.url)));

function scenario(text: string): Scenario {
  return parseScenario(text, 'test.yaml', images);
}

function run(s: Scenario, opts: Omit<RunOptions, 'images'> = {}): RunResult[] {
  return runScenario(s, { images, ...opts });
}

/** A value computed the first time it is asked for. */
function once<T>(fn: () => T): () => T {
  let v: { value: T } | null = null;
  return () => (v ??= { value: fn() }).value;
}

/** The log as "t what" lines, with ": error" on failed actions. */
function log(r: RunResult): string[] {
  return r.events.map((e) => `${e.t} ${e.what}${e.error === null ? '' : ` !! ${e.error}`}`);
}

/** One guest of tiny 1, 16 MiB, that writes nothing once booted: its memory holds still. */
function quiet(events: string, extra = ''): Scenario {
  return scenario(`
name: quiet
host: { memory: 64MiB, block: 16MiB }
duration: 20s
guests:
  - { name: a, image: tiny, version: "1", memory: 16MiB, workload: { dirty_rate: 0 } }
${extra}events: ${events}
`);
}

/** The quiet scenario with no events, run once for the tests that compare against it. */
const quietRun = once(() => run(quiet('[]'))[0]!);

describe('runScenario: the timeline', () => {
  // Two tiny 1 guests a second apart, a tiny 2 guest started by an event, and every
  // guest life event, some of which cannot be done.
  const lifecycle = once(() =>
    run(
      scenario(`
name: lifecycle
host: { memory: 64MiB, block: 16MiB }
duration: 25s
guests:
  - { name: a, count: 2, image: tiny, version: "1", memory: 16MiB, stagger: 1s }
  - { name: c, image: tiny, version: "2", memory: 16MiB, start: never }
events:
  - { at: 5s, pause: a-1 }
  - { at: 6s, resume: a-1 }
  - { at: 7s, stop: a-2 }
  - { at: 8s, pause: a-2 }
  - { at: 9s, start: c }
  - { at: 12s, destroy: a-2 }
  - { at: 13s, start: a-2 }
  - { at: 14s, offline: 0 }
  - { at: 15s, migrate: { guest: c, pages: 10 } }
  - { at: 16s, resume: c }
`),
    )[0]!,
  );

  it('samples at 0, every sample_every, and at the end', () => {
    expect(lifecycle().samples.map((x) => x.t)).toEqual([0, 10_000, 20_000, 25_000]);
  });

  it('samples at the end once when sample_every divides the duration, and at the end too when it does not', () => {
    const s = quiet('[]');
    expect(run({ ...s, durationMs: 10_000, sampleEveryMs: 5000 })[0]!.samples.map((x) => x.t)).toEqual([0, 5000, 10_000]);
    expect(run({ ...s, durationMs: 10_000, sampleEveryMs: 4000 })[0]!.samples.map((x) => x.t)).toEqual([0, 4000, 8000, 10_000]);
  });

  it('logs every start at its time, "booted" once the image has booted, and every life event', () => {
    expect(log(lifecycle()).filter((l) => !l.includes('!!'))).toEqual([
      '0 create a-1 (tiny 1, 16 MiB)',
      '0 create a-2 (tiny 1, 16 MiB)',
      '0 create c (tiny 2, 16 MiB)',
      '0 start a-1',
      '1000 start a-2',
      '1900 a-1 booted',
      '2900 a-2 booted',
      '5000 pause a-1',
      '6000 resume a-1',
      '7000 stop a-2',
      '9000 start c',
      '11900 c booted',
      '12000 destroy a-2',
      '15000 migrate c: 10 pages moved, 0 failed',
    ]);
  });

  it('logs an action that fails with its error, and goes on with the run', () => {
    expect(log(lifecycle()).filter((l) => l.includes('!!'))).toEqual([
      '8000 pause a-2 !! EINVAL: guest a-2: cannot pause a guest that is stopped (needs booting or running)',
      '13000 start a-2 !! ENOENT: no guest named a-2 (guests: a-1, c)',
      '14000 offline memory0 !! EBUSY: offlining memory0 cancelled: pfn 0 is reserved (the zero page)',
      '16000 resume c !! EINVAL: guest c: cannot resume a guest that is running (needs paused)',
    ]);
    expect(lifecycle().samples.at(-1)!.t).toBe(25_000);
  });

  it('logs a failure found before the host acts: a pressure size it refuses, a stopped guest to migrate', () => {
    const s = quiet('[{ at: 5s, stop: a }, { at: 6s, migrate: { guest: a, pages: 5 } }, { at: 7s, burst: { guest: a, pages: 5 } }]');
    // The schema refuses a pressure that is not whole pages; a hand-built scenario can still carry one.
    s.events.push({ at: 8000, action: { kind: 'pressure', bytes: 1000 } });
    expect(log(run(s)[0]!).slice(3)).toEqual([
      '5000 stop a',
      '6000 migrate a: 5 pages !! EINVAL: guest a is stopped: nothing to migrate',
      '7000 burst a: 5 pages over 0s !! EINVAL: guest a: cannot burst a guest that is stopped (needs booting or running or paused)',
      '8000 pressure 1000 B !! EINVAL: pressure needs a positive multiple of 4 KiB, got 1000',
    ]);
  });

  it('starts a guest before an event at the same time, so an event can act on a guest starting then', () => {
    const r = run(quiet('[{ at: 0s, pause: a }]'))[0]!;
    expect(log(r).slice(1, 3)).toEqual(['0 start a', '0 pause a']);
    expect(r.guests[0]!.state).toBe('paused');
  });

  it('summarises the guests left at the end (a destroyed one is gone) and what they were promised', () => {
    const r = lifecycle();
    expect(r.guests.map((g) => [g.name, g.image, g.state, g.ramBytes])).toEqual([
      ['a-1', 'tiny 1', 'running', 16 * MiB],
      ['c', 'tiny 2', 'running', 16 * MiB],
    ]);
    expect(r.host.guestRamBytes).toBe(32 * MiB);
  });

  it('calls onProgress after every sample with the variant and the time reached', () => {
    const seen: [string | null, number, number][] = [];
    run(quiet('[]'), { onProgress: (v, t, total) => seen.push([v, t, total]) });
    expect(seen).toEqual([
      [null, 0, 20_000],
      [null, 10_000, 20_000],
      [null, 20_000, 20_000],
    ]);
  });
});

describe('runScenario: onStep', () => {
  it('is told every simulated second between samples, with the guests booting, and changes nothing the run does', () => {
    const seen: [number, number][] = [];
    const stepped = run(quiet('[]'), { onStep: (_v, t, _total, booting) => seen.push([t, booting]) })[0]!;
    expect(seen.length).toBe(18); // 1..9 s and 11..19 s: samples are at 0, 10 and 20 s
    expect(seen.map(([t]) => t)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19].map((x) => x * 1000));
    expect(stepped).toEqual(quietRun());
  });
});

describe('runScenario: final figures', () => {
  // Two tiny 1 guests and a tiny 2 guest that write nothing after boot, so ksmd
  // converges: 5000 pages/s (100 pages every 20ms) against 9543 resident pages.
  const converge = scenario(`
name: converge
host: { memory: 64MiB, block: 16MiB }
duration: 20s
guests:
  - { name: a, count: 2, image: tiny, version: "1", memory: 16MiB, stagger: 1s, workload: { dirty_rate: 0 } }
  - { name: b, image: tiny, version: "2", memory: 16MiB, start: 2s, workload: { dirty_rate: 0 } }
`);
  const result = once(() => run(converge, { checkInvariants: true })[0]!);
  // ksmd's work at 10 s and at the end. Checked against the statistics below: every
  // resident page got one rmap_item (3 × 3181); each KSM page took one merge to become
  // one and each sharer one more (1627 + 2628), after one pages_identical each (2628);
  // nothing was unmerged or freed.
  const WORK_AT_10S: KsmWorkCounts = {
    pagesScanned: 49_311,
    checksums: 35_097,
    stableTreeCompares: 333_382,
    unstableTreeCompares: 297_247,
    mergeCompares: 2628,
    bytesCompared: 24_612_927,
    merges: 4255,
    unmerges: 0,
    rmapItemsAllocated: 9543,
    rmapItemsFreed: 0,
  };
  const WORK: KsmWorkCounts = {
    pagesScanned: 99_026,
    checksums: 62_272,
    stableTreeCompares: 706_682,
    unstableTreeCompares: 621_891,
    mergeCompares: 2628,
    bytesCompared: 27_665_582,
    merges: 4255,
    unmerges: 0,
    rmapItemsAllocated: 9543,
    rmapItemsFreed: 0,
  };

  it('are exactly these, for this seed', () => {
    const r = result();
    expect(r.host).toEqual({
      ramBytes: 64 * MiB,
      swapBytes: 0,
      guestRamBytes: 48 * MiB,
      freeBytes: 38_780_928,
      swapUsedBytes: 0,
      savedBytes: 2628 * PAGE_SIZE,
      peakSavedBytes: 2628 * PAGE_SIZE,
      peakSavedAt: 10_000,
      pagesShared: 1627,
      pagesSharing: 2628,
      pagesUnshared: 5288,
      pagesVolatile: 0,
      fullScans: 16,
      pagesScanned: 99_026,
      saved90At: 10_000,
      minFreeBytes: 38_780_928,
      minFreeAt: 10_000,
      work: WORK,
      ksmdCpuMs: ksmdCpuNs(WORK, DEFAULT_KSMD_COSTS) / 1e6,
      ksmdCpuAvg: ksmdCpuNs(WORK, DEFAULT_KSMD_COSTS) / 1e6 / 20_000,
      ksmdCpuPeak: ksmdCpuNs(WORK_AT_10S, DEFAULT_KSMD_COSTS) / 1e6 / 10_000,
      ksmdCpuPeakAt: 10_000,
    });
    expect(r.guests.map((g) => [g.name, g.residentBytes / PAGE_SIZE, g.mergedBytes / PAGE_SIZE, g.savedBytes, g.swapBytes])).toEqual([
      ['a-1', 3181, 1895, 4_564_309, 0],
      ['a-2', 3181, 1895, 4_564_309, 0],
      ['b', 3181, 465, 1_635_669, 0],
    ]);
    expect(r.samples.map((x) => [x.t, x.pagesShared, x.pagesSharing, x.pagesUnshared, x.pagesVolatile])).toEqual([
      [0, 0, 0, 0, 0],
      [10_000, 1627, 2628, 5288, 0],
      [20_000, 1627, 2628, 5288, 0],
    ]);
    expect(WORK.rmapItemsAllocated).toBe(3 * 3181);
    expect(WORK.merges).toBe(r.host.pagesShared + r.host.pagesSharing);
    expect(WORK.mergeCompares).toBe(r.host.pagesSharing);
    expect(r.samples.map((x) => x.work)).toEqual([{ ...WORK, pagesScanned: 0, checksums: 0, stableTreeCompares: 0, unstableTreeCompares: 0, mergeCompares: 0, bytesCompared: 0, merges: 0, rmapItemsAllocated: 0 }, WORK_AT_10S, WORK]);
    // Each sample's share of a core is its interval's CPU over the interval's length.
    const cpu = (w: KsmWorkCounts): number => ksmdCpuNs(w, DEFAULT_KSMD_COSTS) / 1e6;
    expect(r.samples.map((x) => x.ksmdCpu)).toEqual([0, cpu(WORK_AT_10S) / 10_000, (cpu(WORK) - cpu(WORK_AT_10S)) / 10_000]);
  });

  it('match a naive count of identical pages in the guests’ RAM, read back through buildHost', () => {
    // Reproduce the run: the same host, the same starts, the same time.
    const host: Host = buildHost(converge, converge.ksm, images, converge.seed);
    host.startGuest('a-1');
    host.advance(1000);
    host.startGuest('a-2');
    host.advance(1000);
    host.startGuest('b');
    host.advance(18_000);
    expect(host.sample(result().samples.at(-2)!)).toEqual(result().samples.at(-1));

    // Every resident page (not the zero page), grouped by its contents.
    const { shared, sharing, unshared } = naiveKsm(host.guests);
    const h = result().host;
    expect({ shared, sharing, unshared }).toEqual({ shared: h.pagesShared, sharing: h.pagesSharing, unshared: h.pagesUnshared });
  });

  it('are the same for the same seed, run after run', () => {
    expect(run(quiet('[]'))[0]).toEqual(quietRun());
  });
});

describe('runScenario: seeds and variants', () => {
  it('takes the seed from the options over the scenario, and reports it', () => {
    const one = quietRun();
    const [two] = run(quiet('[]'), { seed: 2 });
    expect([one.seed, two!.seed]).toEqual([1, 2]);
    // A guest that writes nothing after boot merges the same pages whatever its unique pages hold.
    expect(two!.samples.map((x) => x.pagesSharing)).toEqual(one.samples.map((x) => x.pagesSharing));
  });

  it("changes a guest's unique pages with the seed, but not its image and version pages", () => {
    const s = quiet('[]');
    const booted = (seed: number): Host => {
      const host = buildHost(s, s.ksm, images, seed);
      host.startGuest('a');
      host.advance(2000);
      return host;
    };
    const one = booted(1).guest('a');
    const two = booted(2).guest('a');
    const first = (kind: string): number => {
      for (let gfn = 0; gfn < one.ramPages; gfn++) if (one.layout.kindOf(gfn) === kind) return gfn;
      throw new Error(`no ${kind} page`);
    };
    const page = (g: typeof one, gfn: number): Buffer => Buffer.from(g.readPhys(gfn * PAGE_SIZE, PAGE_SIZE));
    expect(page(one, first('version')).equals(page(two, first('version')))).toBe(true);
    expect(page(one, first('image')).equals(page(two, first('image')))).toBe(true);
    expect(page(one, first('unique')).equals(page(two, first('unique')))).toBe(false);
  });

  // One quiet guest for 10s: ksmd at 200 pages a batch, or not running at all.
  const variants = scenario(`
name: variants
host: { memory: 64MiB, block: 16MiB }
duration: 10s
guests:
  - { name: a, image: tiny, version: "1", memory: 16MiB, workload: { dirty_rate: 0 } }
variants:
  - { name: fast, ksm: { policy: fixed, pages_to_scan: 200 } }
  - { name: off, ksm: { policy: fixed, run: 0 } }
`);

  it('gives one result per variant, in order, each with its name and policy', () => {
    const rs = run(variants);
    expect(rs.map((r) => [r.scenario, r.variant, r.policy, r.host.pagesSharing])).toEqual([
      ['variants', 'fast', 'fixed: run 1, pages_to_scan 200, sleep_millisecs 20', 268],
      ['variants', 'off', 'fixed: run 0, pages_to_scan 100, sleep_millisecs 20', 0],
    ]);
  });

  it('runs only the variant asked for', () => {
    expect(run(variants, { variant: 'off' }).map((r) => r.variant)).toEqual(['off']);
  });

  it('refuses a variant the scenario does not have with ENOENT, listing those it has', () => {
    let thrown: unknown = null;
    try {
      run(variants, { variant: 'slow' });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(KernelError);
    expect((thrown as KernelError).code).toBe('ENOENT');
    expect((thrown as KernelError).message).toBe('ENOENT: scenario variants has no variant "slow" (variants: fast, off)');
  });

  it('names a scenario without variants "(none)" when a variant is asked of it', () => {
    expect(() => run(quiet('[]'), { variant: 'fast' })).toThrow('ENOENT: scenario quiet has no variant "fast" (variants: (none))');
  });
});

describe('runScenario: events have their effect', () => {
  // Two tiny 1 guests on 64 MiB with 32 MiB of swap, and one host operation after
  // another, each with a sample between it and the next that could undo it. The deep
  // invariant check runs at every sample.
  const ops = once(
    () =>
      run(
        scenario(`
name: operations
host: { memory: 64MiB, swap: 32MiB, block: 16MiB }
duration: 60s
guests:
  - { name: a, count: 2, image: tiny, version: "1", memory: 16MiB }
events:
  - { at: 5s, knobs: { pages_to_scan: 500, sleep_millisecs: 50 } }
  - { at: 12s, pressure: 56MiB }
  - { at: 25s, release_pressure: true }
  - { at: 26s, reclaim: 500 }
  - { at: 27s, compact: true }
  - { at: 28s, migrate: { guest: a-1, pages: 20 } }
  - { at: 32s, offline: 3 }
  - { at: 45s, online: 3 }
  - { at: 46s, ksm: { policy: ksmtuned, monitor_interval: 5s } }
`),
        { checkInvariants: true },
      )[0]!,
  );
  const at = (t: number) => ops().samples.find((x) => x.t === t)!;
  const logAt = (t: number) => log(ops()).filter((l) => l.startsWith(`${t} `));

  it('passes the deep invariant check at every sample', () => {
    // With checkInvariants an InvariantError would have ended the run at the sample that broke.
    expect(ops().samples.map((x) => x.t)).toEqual([0, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000]);
  });

  it('knobs: pages_to_scan and sleep_millisecs change by the next sample', () => {
    expect([at(0).pagesToScan, at(0).sleepMillisecs]).toEqual([100, 20]);
    expect([at(10_000).pagesToScan, at(10_000).sleepMillisecs]).toEqual([500, 50]);
    expect(logAt(5000)).toEqual(['5000 knobs pages_to_scan=500 sleep_millisecs=50']);
  });

  it('pressure: a host process takes memory, and guest pages go to swap', () => {
    expect(at(10_000).swapUsedBytes).toBe(0);
    expect(logAt(12_000)).toEqual(['12000 pressure 56 MiB']);
    // 14336 pages wanted against 12112 free: most of each guest goes to swap, and
    // every page of it is either resident or there (3181 pages a guest).
    const s = at(20_000);
    expect(s.guests.map((g) => [g.residentBytes / PAGE_SIZE, g.swapBytes / PAGE_SIZE])).toEqual([
      [979, 2202],
      [1017, 2164],
    ]);
    // Fewer slots than swapped ptes: a KSM page goes to swap once, for all its mappers.
    expect([s.swapUsedBytes / PAGE_SIZE, s.freeBytes / PAGE_SIZE]).toEqual([2319, 28]);
  });

  it('release_pressure: the process exits and frees what it held', () => {
    expect(logAt(25_000)).toEqual(['25000 release pressure (56 MiB)']);
    // The pressure process's 14336 pages stayed resident (the newest, last on the LRU):
    // 21 pages free before the release, 14357 after it, 500 more from the reclaim at
    // 26s, less 68 that the guests faulted back in by 30s.
    expect(at(30_000).freeBytes / PAGE_SIZE).toBe(21 + 14_336 + 500 - 68);
  });

  it('reclaim, compact and migrate: each logged with what it did', () => {
    expect([...logAt(26_000), ...logAt(27_000), ...logAt(28_000)]).toEqual([
      '26000 reclaim 500 pages: 500 freed',
      '27000 compact memory: 1451 pages moved',
      '28000 migrate a-1: 20 pages moved, 0 failed',
    ]);
  });

  it('offline and online: a 16 MiB block leaves MemTotal, then comes back', () => {
    expect(logAt(32_000)).toEqual(['32000 offline memory3']);
    expect(logAt(45_000)).toEqual(['45000 online memory3']);
    expect([at(30_000).totalBytes, at(40_000).totalBytes, at(50_000).totalBytes]).toEqual([64 * MiB, 48 * MiB, 64 * MiB]);
  });

  it('ksm: switching to ksmtuned logs its decisions, one per monitor interval', () => {
    expect(log(ops()).filter((l) => /ksm(tuned)?[: ]/.test(l))).toEqual([
      '46000 ksm policy ksmtuned: monitor 5s, npages 64..1250 (+300/-50), thres 20%',
      '51000 ksmtuned: stop ksmd',
      '56000 ksmtuned: stop ksmd',
    ]);
    // The knobs stay as they were until the governor's first adjust, one interval on.
    expect([at(50_000).run, at(60_000).run]).toEqual([1, 0]);
  });

  it('burst: the pages it dirties are unmerged (a quiet guest, with and without a burst)', () => {
    const without = quietRun();
    const [withBurst] = run(quiet('[{ at: 10s, burst: { guest: a, pages: 1000, over: 1s } }]'));
    expect(log(withBurst!).at(-1)).toBe('10000 burst a: 1000 pages over 1s');
    expect([without.host.pagesSharing, withBurst!.host.pagesSharing]).toEqual([268, 172]);
    expect([without.guests[0]!.mergedBytes / PAGE_SIZE, withBurst!.guests[0]!.mergedBytes / PAGE_SIZE]).toEqual([269, 173]);
  });

  it('workload: a new dirty rate keeps pages changing, so some stay volatile', () => {
    const [r] = run(quiet('[{ at: 10s, workload: { guest: a, dirty_rate: 200 } }]'));
    expect(log(r!).at(-1)).toBe('10000 workload a');
    expect(r!.samples.map((x) => [x.t, x.pagesSharing, x.pagesVolatile])).toEqual([
      [0, 0, 0],
      [10_000, 268, 0],
      [20_000, 130, 128],
    ]);
  });
});
