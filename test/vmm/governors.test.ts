import { describe, expect, it } from 'vitest';
import { Host, KernelError, loadImageCatalog, type HostOptions } from '../../src/index.js';
import type { GovernorPort } from '../../src/vmm/governor.js';
import { KSMTUNED_DEFAULTS, Ksmtuned } from '../../src/vmm/ksmtuned.js';
import { parseKsmtunedConf } from '../../src/vmm/ksmtuned-conf.js';
import { KUBEVIRT_DEFAULTS, Kubevirt, calculateNewRunSleepAndPages, resolveKubevirtParams } from '../../src/vmm/kubevirt.js';
import { MOM_DEFAULTS, Mom, evaluateKsmRules, statAvg, type MomSample } from '../../src/vmm/mom.js';

/**
 * The three governors step by step against their sources' arithmetic (cited in
 * src/vmm/ksmtuned.ts, mom.ts, kubevirt.ts). Each expected figure is worked out by
 * hand in the comment beside it.
 */

const images = loadImageCatalog(new URL('./fixtures', import.meta.url).pathname);
const UINT_MAX = 4294967295;

/** A host as a governor sees it: meminfo, the qemu processes, the KSM files. */
class FakeHost implements GovernorPort {
  mem: Record<string, number>;
  qemu: { rssKb: number; vszKb: number }[] = [];
  knobs: Record<string, number> = { run: 0, pages_to_scan: 100, sleep_millisecs: 20 };
  writes: string[] = [];
  constructor(mem: Record<string, number>) {
    this.mem = mem;
  }
  meminfo(): Record<string, number> {
    return { ...this.mem };
  }
  qemuProcesses(): { rssKb: number; vszKb: number }[] {
    return this.qemu;
  }
  readKsm(file: string): number {
    return this.knobs[file]!;
  }
  writeKsm(file: string, value: number): void {
    if (value > UINT_MAX || value < 0) throw new KernelError('EINVAL', 'bad value');
    this.writes.push(`${file}=${value}`);
    this.knobs[file] = value;
  }
}

describe('ksmtuned.conf, read as the script sources it', () => {
  it('the shipped file (every line commented out) sets nothing', () => {
    const shipped = [
      '# Configuration file for ksmtuned.',
      '',
      '# How long ksmtuned should sleep between tuning adjustments',
      '# KSM_MONITOR_INTERVAL=60',
      '',
      '# KSM_NPAGES_BOOST=300',
      '# KSM_THRES_CONST=2048',
      '',
      '# LOGFILE=/var/log/ksmtuned',
      '# DEBUG=1',
    ].join('\n');
    expect(parseKsmtunedConf(shipped, 'ksmtuned.conf')).toEqual({ config: {}, lines: {} });
  });

  it('quotes, export, several assignments on a line, a trailing comment; the last assignment wins; empty means the default', () => {
    const conf = parseKsmtunedConf(
      ['KSM_MONITOR_INTERVAL="30"', "export KSM_NPAGES_BOOST='1000'", 'KSM_NPAGES_MIN=32; KSM_NPAGES_MAX=5000 # tuned', 'KSM_NPAGES_MAX=6000', 'KSM_THRES_COEF=50', 'KSM_THRES_COEF=', 'LOGFILE=/var/log/ksmtuned DEBUG=1'].join('\n'),
      'ksmtuned.conf',
    );
    expect(conf).toEqual({
      config: { monitorInterval: 30, npagesBoost: 1000, npagesMin: 32, npagesMax: 6000 },
      lines: { KSM_MONITOR_INTERVAL: 1, KSM_NPAGES_BOOST: 2, KSM_NPAGES_MIN: 3, KSM_NPAGES_MAX: 4, KSM_THRES_COEF: 6 },
    });
  });

  it('every problem, with its line: a typo, a word, octal, an expansion, a command, an open quote', () => {
    let message = '';
    try {
      parseKsmtunedConf(
        ['KSM_NPAGE_MAX=2000', 'KSM_NPAGES_BOOST=lots', 'KSM_NPAGES_MIN=064', 'KSM_SLEEP_MSEC=$SLEEP', 'systemctl restart ksm', 'KSM_THRES_COEF="20'].join('\n'),
        'ksmtuned.conf',
      );
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toBe(
      [
        'ksmtuned.conf:1: KSM_NPAGE_MAX: unknown variable (ksmtuned reads KSM_MONITOR_INTERVAL, KSM_NPAGES_BOOST, KSM_NPAGES_DECAY, KSM_NPAGES_MIN, KSM_NPAGES_MAX, KSM_SLEEP_MSEC, KSM_THRES_COEF, KSM_THRES_CONST, LOGFILE, DEBUG and PIDFILE)',
        'ksmtuned.conf:2: KSM_NPAGES_BOOST: expected a whole number, got "lots"',
        'ksmtuned.conf:3: KSM_NPAGES_MIN: 064 has a leading zero: bash arithmetic would read it as octal; write it without',
        'ksmtuned.conf:4: KSM_SLEEP_MSEC: expected a whole number, got "$SLEEP": expansions are not evaluated here',
        'ksmtuned.conf:5: "systemctl" is not an assignment: ksmtuned sources this file, and only NAME=value settings are understood',
        'ksmtuned.conf:6: not valid shell: unterminated double quote (no closing ")',
      ].join('\n'),
    );
  });

  it('settings the script could not run with: interval 0, npages outside 0..UINT_MAX, min above max', () => {
    const problems = (t: string): string => {
      try {
        parseKsmtunedConf(t, 'k.conf');
        return '';
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(problems('KSM_MONITOR_INTERVAL=0')).toBe('k.conf:1: KSM_MONITOR_INTERVAL: expected 1 (second) or more, got 0: the script would adjust again at once, forever');
    expect(problems('KSM_NPAGES_MAX=4294967296')).toBe('k.conf:1: KSM_NPAGES_MAX: expected 0 to 4294967295 (UINT_MAX): the kernel refuses other pages_to_scan values, got 4294967296');
    expect(problems('KSM_NPAGES_MIN=2000')).toBe('k.conf:1: KSM_NPAGES_MIN: KSM_NPAGES_MIN (2000) is above KSM_NPAGES_MAX (1250): pages_to_scan would be pinned at the minimum');
  });
});

describe('ksmtuned on a GovernorPort: loop() and KSMCTL', () => {
  it('first adjusts one KSM_MONITOR_INTERVAL after it starts; each echo its own command', () => {
    // 1 GiB: sleep = 10 × 16777216 / 1048576 = 160; thres = 209715 kB.
    const h = new FakeHost({ MemTotal: 1048576, MemFree: 100000, Shmem: 0 });
    h.qemu = [{ rssKb: 900000, vszKb: 1100000 }];
    const g = Ksmtuned.start({}, h, 5000);
    expect(g.nextAt).toBe(65_000);
    // committed 900000 + 209715 ≥ 1048576, free 100000 < thres: boost 0 → 300.
    expect(g.wake(h, 65_000)).toEqual([{ what: 'ksmtuned: boost, pages_to_scan 300, sleep_millisecs 160', error: null }]);
    expect(h.writes).toEqual(['pages_to_scan=300', 'sleep_millisecs=160', 'run=1']);
    expect(g.nextAt).toBe(125_000);
    expect(g.snapshot()).toEqual({ policy: 'ksmtuned', config: KSMTUNED_DEFAULTS, total: 1048576, npages: 300, nextAt: 125_000 });
  });

  it('a sleep the kernel refuses fails its echo alone: pages_to_scan and run are still written', () => {
    // KSM_SLEEP_MSEC 300000 on a 1 GiB host: sleep = 300000 × 16 = 4800000 ms, fine;
    // on a 1 MiB MemTotal it is 300000 × 16384 = 4915200000 > UINT_MAX.
    const h = new FakeHost({ MemTotal: 1024, MemFree: 10, Shmem: 0 });
    h.qemu = [{ rssKb: 1000, vszKb: 1000 }];
    const g = Ksmtuned.start({ sleepMsec: 300000 }, h, 0);
    expect(g.wake(h, 60_000)).toEqual([
      { what: 'ksmtuned: boost, pages_to_scan 300, sleep_millisecs 4915200000', error: 'write 4915200000 to /sys/kernel/mm/ksm/sleep_millisecs: EINVAL: bad value' },
    ]);
    expect(h.writes).toEqual(['pages_to_scan=300', 'run=1']);
  });
});

describe('MOM: doc/ksm.rules evaluated', () => {
  // A 1 GiB host: mem_available 1048576 kB; threshold = 1048576 × 0.2 = 209715.2 (a float).
  const sample = (over: Partial<MomSample>): MomSample => ({ memAvailable: 1048576, memFree: 900000, ksmRun: 0, ksmPagesToScan: 100, ksmSleepMillisecs: 20, ksmShareable: 0, ...over });

  it('the guests fit (threshold + shareable < available) and free memory is above the threshold: ksm_run 0', () => {
    expect(evaluateKsmRules(MOM_DEFAULTS, sample({ ksmShareable: 800000 }), 900000)).toEqual({ action: 'stop', threshold: 209715.2, avgFree: 900000, run: 0 });
  });

  it('committed memory alone starts ksmd: decay from the kernel’s pages_to_scan, 100 − 50 → 64 (min); sleep 10 × 16777216 / 1048576 = 160', () => {
    // 209715.2 + 900000 ≥ 1048576: run; avg free 900000 > threshold: decay.
    expect(evaluateKsmRules(MOM_DEFAULTS, sample({ ksmShareable: 900000 }), 900000)).toEqual({ action: 'decay', threshold: 209715.2, avgFree: 900000, run: 1, sleepMillisecs: 160, pagesToScan: 64 });
  });

  it('free memory below the threshold boosts from the current pages_to_scan, clamped at npages_max', () => {
    expect(evaluateKsmRules(MOM_DEFAULTS, sample({ ksmPagesToScan: 100 }), 200000)).toMatchObject({ action: 'boost', pagesToScan: 400 });
    expect(evaluateKsmRules(MOM_DEFAULTS, sample({ ksmPagesToScan: 1000 }), 200000)).toMatchObject({ action: 'boost', pagesToScan: 1250 });
  });

  it('the sleep is true division truncated by the controller, with no floor: 3 GiB gives 53 (53.33), 256 GiB gives 0', () => {
    expect(evaluateKsmRules(MOM_DEFAULTS, sample({ memAvailable: 3 * 1048576, ksmShareable: 3 * 1048576 }), 0)).toMatchObject({ sleepMillisecs: 53 });
    expect(evaluateKsmRules(MOM_DEFAULTS, sample({ memAvailable: 256 * 1048576, ksmShareable: 256 * 1048576 }), 0)).toMatchObject({ sleepMillisecs: 0 });
  });

  it('StatAvg is the mean of the samples kept', () => {
    expect(statAvg([sample({ memFree: 900000 }), sample({ memFree: 100000 }), sample({ memFree: 100000 })])).toBeCloseTo(366666.6667, 4);
  });
});

describe('MOM: the monitor, the policy engine and the KSM controller over time', () => {
  it('samples every 5 s, evaluates every 10 s on the averaged history, writes only what changed', () => {
    const h = new FakeHost({ MemTotal: 1048576, MemFree: 900000, Shmem: 0 });
    h.qemu = [{ rssKb: 500000, vszKb: 1100000 }];
    const m = Mom.start({}, 0);
    expect(m.nextAt).toBe(0);
    expect(m.wake(h, 0)).toEqual([]); // a sample only
    expect(m.nextAt).toBe(5000);
    h.mem.MemFree = 100000;
    expect(m.wake(h, 5000)).toEqual([]);
    // t=10s: third sample (free 100000), then the rules: avg free (900000 + 100000 + 100000) / 3
    // = 366666.7 > 209715.2, shareable 1100000 commits: decay 100 → 64, sleep 160, run 1.
    expect(m.wake(h, 10_000)).toEqual([{ what: 'mom: decay, run 1, pages_to_scan 64, sleep_millisecs 160', error: null }]);
    expect(h.writes).toEqual(['run=1', 'pages_to_scan=64', 'sleep_millisecs=160']);
    m.wake(h, 15_000);
    // t=20s: samples 900000, 100000 ×4: avg 260000 > threshold: decay again, 64 − 50 → 64.
    // run, pages_to_scan and sleep already read 1, 64, 160: nothing to write, nothing logged.
    expect(m.wake(h, 20_000)).toEqual([]);
    h.mem.MemFree = 50000;
    m.wake(h, 25_000);
    // t=30s: samples 900000, 100000 ×4, 50000 ×2: avg 1400000 / 7 = 200000 < 209715.2: boost 64 → 364.
    expect(m.wake(h, 30_000)).toEqual([{ what: 'mom: boost, pages_to_scan 364', error: null }]);
    m.wake(h, 35_000);
    // t=40s: samples 900000, 100000 ×4, 50000 ×4: avg 1500000 / 9 = 166667: boost 364 → 664.
    expect(m.wake(h, 40_000)).toEqual([{ what: 'mom: boost, pages_to_scan 664', error: null }]);
    expect(m.history).toHaveLength(9);
  });

  it('keeps at most sample-history-length samples: the oldest goes', () => {
    const h = new FakeHost({ MemTotal: 1048576, MemFree: 900000, Shmem: 0 });
    const m = Mom.start({ sampleHistoryLength: 2, policyEngineInterval: 100 }, 0);
    for (let t = 0; t <= 10_000; t += 5000) {
      h.mem.MemFree = 1000 + t;
      m.wake(h, t);
    }
    expect(m.history.map((s) => s.memFree)).toEqual([6000, 11000]);
  });

  it('the guests fit: ksm_run 0 is written only when ksmd runs', () => {
    const h = new FakeHost({ MemTotal: 1048576, MemFree: 900000, Shmem: 0 });
    h.knobs.run = 1;
    const m = Mom.start({}, 0);
    m.wake(h, 0);
    m.wake(h, 5000);
    expect(m.wake(h, 10_000)).toEqual([{ what: 'mom: stop ksmd, run 0', error: null }]);
    m.wake(h, 15_000);
    expect(m.wake(h, 20_000)).toEqual([]);
  });
});

describe('KubeVirt: calculateNewRunSleepAndPages', () => {
  // A 16 GiB node (16777216 kB) with 2000000 kB available: used 14777216 kB, sleep =
  // 100 × 16777216 / 14777216 = 113 (uint64 division); 20% of total = 3355443.2.
  const c = KUBEVIRT_DEFAULTS;

  it('under pressure, not running: start at nPagesInit (100)', () => {
    expect(calculateNewRunSleepAndPages(c, false, 16777216, 2000000, 55)).toEqual({ action: 'start', running: true, sleep: 113, pages: 100 });
  });

  it('under pressure, running: boost from the kernel’s pages_to_scan by 300, at most 1250', () => {
    expect(calculateNewRunSleepAndPages(c, true, 16777216, 2000000, 100)).toEqual({ action: 'boost', running: true, sleep: 113, pages: 400 });
    expect(calculateNewRunSleepAndPages(c, true, 16777216, 2000000, 1000)).toEqual({ action: 'boost', running: true, sleep: 113, pages: 1250 });
  });

  it('no pressure, running: decay by 50; below nPagesMin it stops', () => {
    // available 8000000 > 3355443.2; used 8777216: sleep = 1677721600 / 8777216 = 191.
    expect(calculateNewRunSleepAndPages(c, true, 16777216, 8000000, 1250)).toEqual({ action: 'decay', running: true, sleep: 191, pages: 1200 });
    expect(calculateNewRunSleepAndPages(c, true, 16777216, 8000000, 100)).toEqual({ action: 'stop', running: false, sleep: 191, pages: 64 });
  });

  it('no pressure, not running: run 0, nothing else', () => {
    expect(calculateNewRunSleepAndPages(c, false, 16777216, 8000000, 100)).toEqual({ action: 'off', running: false, sleep: 0, pages: 0 });
  });

  it('the sleep floor is sleepMsBaseline / 10: a 1 TiB node with 973741824 kB used sleeps 10, not 1', () => {
    // 1677721600 / 973741824 = 1 (uint64); 100 / 10 = 10. Available 100000000 < 20%: pressure.
    expect(calculateNewRunSleepAndPages(c, false, 1073741824, 100000000, 100)).toEqual({ action: 'start', running: true, sleep: 10, pages: 100 });
  });

  it('the pressure test is in float32: 64 GiB with 13421773 kB available is under pressure (float64 would say not)', () => {
    // float32(67108864) × float32(0.2) = 13421773 in float32; 13421773 > 13421773 is false.
    expect(13421773 > 67108864 * 0.2).toBe(true);
    expect(calculateNewRunSleepAndPages(c, false, 67108864, 13421773, 100)).toMatchObject({ action: 'start' });
  });

  it('MemTotal equal to MemAvailable divides by zero: the spin panics', () => {
    expect(calculateNewRunSleepAndPages(c, false, 1000, 1000, 100)).toEqual({ action: 'panic', message: 'runtime error: integer divide by zero (MemTotal equals MemAvailable)' });
  });

  it('boundCheck: out-of-bounds overrides fall back to the default when it lies strictly inside the bounds, else to the lower bound', () => {
    expect(resolveKubevirtParams({ pagesDecay: 50, nPagesMin: 200, nPagesInit: 20 })).toEqual({
      config: { ...KUBEVIRT_DEFAULTS, nPagesMin: 200, nPagesInit: 200 },
      warnings: [
        'kubevirt.io/ksm-pages-decay-override override value out of bounds, using default (-50)',
        'kubevirt.io/ksm-pages-init-override override value out of bounds, using lowest possible value (200)',
      ],
    });
  });
});

describe('KubeVirt: the handler’s loop over time', () => {
  it('spins at start, then every 3 minutes; writes sleep, pages, then run', () => {
    const h = new FakeHost({ MemTotal: 16777216, MemFree: 2000000 });
    const k = Kubevirt.start({}, 1000);
    expect(k.nextAt).toBe(1000);
    expect(k.wake(h, 1000)).toEqual([{ what: 'kubevirt: start, pages_to_scan 100, sleep_millisecs 113', error: null }]);
    expect(h.writes).toEqual(['sleep_millisecs=113', 'pages_to_scan=100', 'run=1']);
    expect(k.nextAt).toBe(181_000);
    expect(k.wake(h, 181_000)).toEqual([{ what: 'kubevirt: boost, pages_to_scan 400, sleep_millisecs 113', error: null }]);
    h.mem.MemFree = 8000000;
    expect(k.wake(h, 361_000)).toEqual([{ what: 'kubevirt: decay, pages_to_scan 350, sleep_millisecs 191', error: null }]);
  });

  it('MemAvailable is used when the kernel’s meminfo has it', () => {
    const h = new FakeHost({ MemTotal: 16777216, MemFree: 2000000, MemAvailable: 8000000 });
    expect(Kubevirt.start({}, 0).wake(h, 0)).toEqual([{ what: 'kubevirt: no memory pressure, ksmd off', error: null }]);
    expect(h.writes).toEqual(['run=0']);
  });

  it('the first write that fails ends the spin, as the Go function returns', () => {
    // sleepMsBaseline 1000000 on a node with 999 kB used: sleep = 16777216000000 / 999 = 16794010010 > UINT_MAX.
    const h = new FakeHost({ MemTotal: 1000, MemFree: 1 });
    expect(Kubevirt.start({ sleepMsBaseline: 1000000 }, 0).wake(h, 0)).toEqual([
      { what: 'kubevirt: start, pages_to_scan 100, sleep_millisecs 16794010010', error: 'write 16794010010 to /sys/kernel/mm/ksm/sleep_millisecs: EINVAL: bad value' },
    ]);
    expect(h.writes).toEqual([]);
  });
});

describe('Host: the mom and kubevirt policies', () => {
  const newHost = (ksm: HostOptions['ksm']): Host => new Host({ memoryMiB: 64, swapMiB: 64, blockMiB: 16, seed: 1, images, ksm });
  const boot = (host: Host, names: string[]): void => {
    for (const name of names) {
      host.createGuest({ name, image: 'tiny', version: '1', memoryMiB: 16, workload: { dirtyRate: 0, burst: null } });
      host.startGuest(name);
    }
  };

  it('mom: ksm_shareable is the guests’ VSZ (16 MiB each), so four guests of 64 MiB commit the host and ksmd runs', () => {
    const host = newHost({ policy: 'mom', config: { policyEngineInterval: 2, hostMonitorInterval: 1 }, maxKernelPages: null });
    boot(host, ['a', 'b', 'c', 'd']);
    host.advance(4500);
    // 64 MiB: available 65536 kB, threshold 13107.2; shareable 4 × 16384 = 65536 ≥ 65536 − 13107.2.
    // sleep = 10 × 16777216 / 65536 = 2560. Free memory stays above the threshold while the
    // guests boot: decay, from the boot-time 100 to 64.
    expect(host.log.filter((e) => e.what.startsWith('mom')).map((e) => `${e.t} ${e.what}`)).toEqual(['2000 mom: decay, run 1, pages_to_scan 64, sleep_millisecs 2560']);
    expect(host.kernel.sysfs.read('/sys/kernel/mm/ksm/run')).toBe('1\n');
  });

  it('kubevirt: spins when the policy starts; with the model’s MemFree as MemAvailable', () => {
    const host = newHost({ policy: 'kubevirt', config: { interval: 2 }, maxKernelPages: null });
    host.advance(100);
    expect(host.log.map((e) => `${e.t} ${e.what}`)).toEqual(['0 kubevirt: no memory pressure, ksmd off']);
  });

  it('a host under a governor saved mid-run resumes identically (mom and kubevirt)', () => {
    for (const ksm of [
      { policy: 'mom', config: { policyEngineInterval: 2, hostMonitorInterval: 1 }, maxKernelPages: null },
      { policy: 'kubevirt', config: { interval: 1 }, maxKernelPages: null },
    ] as const) {
      const a = newHost(ksm);
      boot(a, ['a', 'b', 'c', 'd']);
      a.advance(3300);
      const b = Host.restore(a.save(), images);
      a.advance(4000);
      b.advance(4000);
      expect(b.log).toEqual(a.log);
      expect(b.sample()).toEqual(a.sample());
      expect(b.governor!.snapshot()).toEqual(a.governor!.snapshot());
    }
  });
});
