import { Packr } from 'msgpackr';
import { readFileSync } from 'node:fs';
import { crc32, gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { Host, ImageCatalog, PAGE_SIZE, loadImageCatalog, type HostOptions } from '../../src/index.js';
import { imageDigest } from '../../src/vmm/image.js';
import { ScenarioRun, runScenario } from '../../src/scenario/run.js';
import { parseScenario } from '../../src/scenario/schema.js';
import { SNAPSHOT_VERSION, SnapshotError, restoreHost } from '../../src/vmm/snapshot.js';
import { Ksmtuned } from '../../src/vmm/ksmtuned.js';

const images = loadImageCatalog(new URL('./fixtures', import.meta.url).pathname);

function newHost(opts: Partial<HostOptions> = {}): Host {
  const host = new Host({
    memoryMiB: 64,
    swapMiB: 64,
    blockMiB: 16,
    seed: 5,
    images,
    ksm: { policy: 'fixed', run: 1, pagesToScan: 300, sleepMillisecs: 20, maxKernelPages: null },
    ...opts,
  });
  for (const n of ['a', 'b', 'c']) {
    host.createGuest({ name: n, image: 'tiny', version: '1', memoryMiB: 16, workload: { dirtyRate: 40, burst: { everyMs: 1500, pages: 100, overMs: 300 } } });
    host.startGuest(n);
  }
  return host;
}

/** Everything a user can observe of a host: the sample, each guest's RAM digest and frames. */
function observe(host: Host): unknown {
  return {
    sample: host.sample(),
    guests: host.guests.map((g) => {
      if (g.process === null) return g.state;
      let h = 0;
      const frames: (number | null)[] = [];
      for (let p = 0; p < g.ramPages; p += 7) {
        const bytes = g.readPhys(p * PAGE_SIZE, PAGE_SIZE);
        h = (Math.imul(h, 31) + crc32(bytes)) | 0;
        frames.push(g.process.pfnOf(g.hvaOf(p * PAGE_SIZE)));
      }
      return { state: g.state, written: g.pagesWritten, h, frames };
    }),
    log: host.log.length,
    meminfo: host.kernel.meminfo(),
    vmstat: { ...host.kernel.vmstat },
  };
}

describe('host snapshots: save and resume exactly', () => {
  for (const t of [0, 950, 2345, 6001]) {
    it(`saved at ${t} ms (booting, mid-scan, running) and restored, it continues exactly as the original`, () => {
      const a = newHost();
      a.advance(t);
      const bytes = a.save();
      const b = Host.restore(bytes, images);
      b.checkInvariants();
      expect(observe(b)).toEqual(observe(a));
      for (const step of [777, 1, 1234, 3000]) {
        a.advance(step);
        b.advance(step);
        expect(observe(b)).toEqual(observe(a));
      }
      // The same state, byte for byte.
      expect(Buffer.compare(Buffer.from(a.save()), Buffer.from(b.save()))).toBe(0);
      b.checkInvariants();
    });
  }

  it('a restored host goes on through pressure, swap, a paused guest and the ksmtuned governor', () => {
    const make = (): Host => newHost({ ksm: { policy: 'ksmtuned', config: { monitorInterval: 1, npagesMax: 2000 }, maxKernelPages: null } });
    const a = make();
    a.advance(2500);
    a.pressure(24 * 1024 * 1024);
    a.guest('b').pause();
    a.advance(1500);
    const b = Host.restore(a.save(), images);
    for (const h of [a, b]) {
      h.guest('b').resume();
      h.advance(2000);
      h.releasePressure();
      h.stopGuest('c');
      h.advance(2000);
    }
    expect(observe(b)).toEqual(observe(a));
    expect((b.governor as Ksmtuned).npages).toBe((a.governor as Ksmtuned).npages);
    expect(b.log).toEqual(a.log);
    b.checkInvariants();
  });

  it('the restored host keeps guest ids, names, images and the nanoid sequence', () => {
    const a = newHost();
    a.advance(1000);
    const b = Host.restore(a.save(), images);
    expect(b.guests.map((g) => [g.id, g.name, g.imageName, g.bootSeed])).toEqual(a.guests.map((g) => [g.id, g.name, g.imageName, g.bootSeed]));
    const next = [a, b].map((h) => h.createGuest({ name: 'd', image: 'tiny', version: '2', memoryMiB: 16 }).id);
    expect(next[1]).toBe(next[0]);
  });

});

describe('page sources: a snapshot names each guest’s source, and restoring finds it again', () => {
  const tiny1 = images.get('tiny', '1');
  const tiny2 = images.get('tiny', '2');
  const digest = images.source('tiny', '1').ref.digest;
  const short = `tiny 1 (sha256 ${digest.slice(0, 12)}…)`;
  const a = newHost();
  a.advance(3000);
  const bytes = a.save();

  const sourceProblem = (catalog: ImageCatalog | null): SnapshotError => {
    try {
      Host.restore(bytes, catalog);
    } catch (e) {
      expect(e).toBeInstanceOf(SnapshotError);
      return e as SnapshotError;
    }
    throw new Error('restore succeeded');
  };

  it('the file holds a reference (name, version, sha-256 of the descriptor), not the image', () => {
    const body = new Packr({ useRecords: true, moreTypes: true, mapsAsObjects: true }).unpack(Buffer.from(bytes).subarray(20)) as Record<string, any>;
    expect(body.host.guests.map((g: Record<string, unknown>) => g.source)).toEqual([0, 1, 2].map(() => ({ type: 'synthetic', name: 'tiny', version: '1', digest })));
    expect(digest).toBe(imageDigest(tiny1));
    expect(digest).toMatch(/^[0-9a-f]{64}$/);
    expect('images' in body.host).toBe(false);
    expect(JSON.stringify(body.host)).not.toContain('regions');
  });

  it('restored with the catalog that has the source, it continues exactly', () => {
    const b = Host.restore(bytes, images);
    expect(b.guests.map((g) => g.source)).toEqual([0, 1, 2].map(() => images.source('tiny', '1')));
    a.advance(2000);
    b.advance(2000);
    expect(observe(b)).toEqual(observe(a));
  });

  it('without a catalog: SnapshotError source, naming the guest and its source', () => {
    const e = sourceProblem(null);
    expect([e.problem, e.message]).toEqual(['source', `snapshot guest a boots from ${short}: restoring it needs the image catalog that has it`]);
  });

  it('a catalog without the source: SnapshotError source, listing what the catalog has', () => {
    const e = sourceProblem(new ImageCatalog([tiny2]));
    expect([e.problem, e.message]).toEqual(['source', `snapshot guest a: ${short} is not in the image catalog (it has tiny 2)`]);
  });

  it('a catalog whose descriptor of the source has changed since (another boot time): SnapshotError source', () => {
    const changed = new ImageCatalog([{ ...tiny1, bootMs: 3000 }, tiny2]);
    const now = changed.source('tiny', '1').ref.digest;
    expect(now).not.toBe(digest);
    const e = sourceProblem(changed);
    expect([e.problem, e.message]).toEqual(['source', `snapshot guest a: ${short} has changed since the snapshot: ${tiny1.file} now describes other pages (sha256 ${now.slice(0, 12)}…)`]);
  });

  it('a descriptor reworded or moved (description, file) is the same source', () => {
    const b = Host.restore(bytes, new ImageCatalog([{ ...tiny1, description: 'reworded', file: 'elsewhere/tiny-1.yaml' }, tiny2]));
    expect(b.guests[0]!.source.ref.digest).toBe(digest);
  });
});

describe('scenario runs: saved at T and resumed give the uninterrupted run’s results', () => {
  const text = `
name: snap
seed: 4
host: { memory: 64MiB, swap: 64MiB, block: 16MiB }
ksm: { policy: fixed, run: 1, pages_to_scan: 400, sleep_millisecs: 20 }
duration: 20s
sample_every: 2s
guests:
  - { name: g, count: 3, image: tiny, version: "1", memory: 16MiB, stagger: 1s, workload: { dirty_rate: 30 } }
events:
  - { at: 6s, burst: { guest: g-1, pages: 800, over: 2s } }
  - { at: 9s, pressure: 16MiB }
  - { at: 12s, compact: true }
  - { at: 13s, release_pressure: true }
  - { at: 14s, stop: g-3 }
  - { at: 15s, knobs: { pages_to_scan: 1000 } }
`;
  const scenario = parseScenario(text, 'snap.yaml', images);
  const whole = runScenario(scenario, { images });

  for (const saveAt of [0, 1500, 6000, 9001, 14_999, 20_000]) {
    it(`saved at ${saveAt} ms`, () => {
      let snap: Uint8Array | null = null;
      const straight = runScenario(scenario, { images, saveAt, onSave: (b) => (snap = b) });
      expect(straight).toEqual(whole);
      const resumed = ScenarioRun.resume(snap!, images).finish({ checkInvariants: true });
      expect([resumed]).toEqual(whole);
    });
  }

  it('a snapshot of a resumed run resumes too (save, resume, save again, resume)', () => {
    const run = ScenarioRun.start(scenario, scenario.variants[0]!, images, scenario.seed);
    run.runTo(5000);
    const second = ScenarioRun.resume(run.save(), images);
    second.runTo(11_000);
    const third = ScenarioRun.resume(second.save(), images);
    expect([third.finish()]).toEqual(whole);
  });

  it('start refuses what resume would refuse: a scenario, variant, seed or catalog that is not one', () => {
    const v = scenario.variants[0]!;
    const start = (sc: unknown, vv: unknown, im: unknown, seed: unknown) => () => ScenarioRun.start(sc as typeof scenario, vv as typeof v, im as typeof images, seed as number);
    expect(start({ ...scenario, sampleEveryMs: 0 }, v, images, 1)).toThrow(/^EINVAL: ScenarioRun.start: scenario.sampleEveryMs: expected more than 0 ms, found 0$/);
    expect(start({ ...scenario, guests: null }, v, images, 1)).toThrow(/^EINVAL: ScenarioRun.start: scenario: guests, events and variants must be lists$/);
    expect(start(null, v, images, 1)).toThrow(/^EINVAL: ScenarioRun.start: no scenario$/);
    expect(start(scenario, v, images, Number.NaN)).toThrow(/^EINVAL: ScenarioRun.start: seed: expected a whole number$/);
    expect(start(scenario, { ...v, ksm: { ...v.ksm, policy: 'bogus' } }, images, 1)).toThrow(/^EINVAL: ScenarioRun.start: .*policy/);
    expect(start(scenario, null, images, 1)).toThrow(/^EINVAL: ScenarioRun.start: expected a variant/);
    expect(start(scenario, v, {}, 1)).toThrow(/^EINVAL: ScenarioRun.start: expected an image catalog/);
    expect(ScenarioRun.start(scenario, v, images, scenario.seed).isFinished).toBe(false);
  });

  it('runTo refuses a time before the run or after its end', () => {
    const run = ScenarioRun.start(scenario, scenario.variants[0]!, images, scenario.seed);
    run.runTo(3000);
    expect(() => run.runTo(2000)).toThrow(/EINVAL: a run can stop between its current time \(3000 ms\) and its end \(20000 ms\), not at 2000/);
    expect(() => run.runTo(20_001)).toThrow(/EINVAL/);
  });
});

describe('bad snapshot files: SnapshotError naming what is wrong, nothing half-loaded', () => {
  const host = newHost();
  host.advance(2000);
  const good = Buffer.from(host.save());

  const problem = (bytes: Uint8Array): SnapshotError => {
    try {
      restoreHost(bytes, images);
    } catch (e) {
      expect(e).toBeInstanceOf(SnapshotError);
      return e as SnapshotError;
    }
    throw new Error('restore succeeded');
  };

  it('starts with the magic "SAMEPAGE" and the format version', () => {
    expect(good.toString('latin1', 0, 8)).toBe('SAMEPAGE');
    expect(good.readUInt32LE(8)).toBe(SNAPSHOT_VERSION);
    expect(good.readUInt32LE(12)).toBe(good.length - 20);
  });

  it('a foreign file', () => {
    const e = problem(Buffer.from('{"format": "samepage-run", "version": 1}\n'));
    expect([e.problem, e.message]).toEqual(['foreign', 'not a Samepage snapshot: the file does not start with "SAMEPAGE"']);
  });

  it('a truncated file, cut in the header or in the body', () => {
    expect(problem(good.subarray(0, 12)).message).toBe('snapshot truncated: 12 bytes, shorter than its 20-byte header');
    const e = problem(good.subarray(0, good.length - 1000));
    expect(e.problem).toBe('truncated');
    expect(e.message).toBe(`snapshot truncated: the body should be ${good.length - 20} bytes, the file has ${good.length - 1020}`);
  });

  it('a corrupt body (one bit flipped) fails its CRC', () => {
    const bad = Buffer.from(good);
    bad[Math.floor(bad.length / 2)]! ^= 0x10;
    const e = problem(bad);
    expect(e.problem).toBe('corrupt');
    expect(e.message).toMatch(/^snapshot corrupt: body CRC-32 is 0x[0-9a-f]{8}, the header says 0x[0-9a-f]{8}$/);
  });

  it('bytes after the body', () => {
    expect(problem(Buffer.concat([good, Buffer.from([0])])).message).toBe('snapshot has 1 bytes after its body');
  });

  it('another format version', () => {
    const bad = Buffer.from(good);
    bad.writeUInt32LE(SNAPSHOT_VERSION + 1, 8);
    const e = problem(bad);
    expect([e.problem, e.message]).toEqual(['version', `snapshot format version ${SNAPSHOT_VERSION + 1}, but this Samepage reads version ${SNAPSHOT_VERSION}`]);
  });

  it('a file of format 1 (saved before per-layer kernel images and page-source references) is refused by its version', () => {
    const old = gunzipSync(readFileSync(new URL('../fixtures/snapshot-v1/run-v1.snap.gz', import.meta.url)));
    expect([old.toString('latin1', 0, 8), old.readUInt32LE(8)]).toEqual(['SAMEPAGE', 1]);
    const e = problem(old);
    expect([e.problem, e.message]).toEqual(['version', `snapshot format version 1, but this Samepage reads version ${SNAPSHOT_VERSION}`]);
    expect(() => ScenarioRun.resume(old, images)).toThrow(new SnapshotError('version', `snapshot format version 1, but this Samepage reads version ${SNAPSHOT_VERSION}`));
  });

  it('a file of format 3 (kernel image version 2: kernels of 2.6.33 only, no NUMA nodes) is refused by its version', () => {
    const old = gunzipSync(readFileSync(new URL('../fixtures/snapshot-v2/run-v3.snap.gz', import.meta.url)));
    expect([old.toString('latin1', 0, 8), old.readUInt32LE(8)]).toEqual(['SAMEPAGE', 3]);
    const e = problem(old);
    expect([e.problem, e.message]).toEqual(['version', `snapshot format version 3, but this Samepage reads version ${SNAPSHOT_VERSION}`]);
    expect(SNAPSHOT_VERSION).toBe(4);
  });

  it('a file of format 4 holding a kernel image of version 3 (before the content store) is refused by the image version', () => {
    const old = gunzipSync(readFileSync(new URL('../fixtures/snapshot-v3/run-v4.snap.gz', import.meta.url)));
    expect([old.toString('latin1', 0, 8), old.readUInt32LE(8)]).toEqual(['SAMEPAGE', 4]);
    const e = problem(old);
    expect([e.problem, e.message]).toEqual(['version', 'snapshot kernel image version 3, but this Samepage reads version 4']);
    expect(() => ScenarioRun.resume(old, images)).toThrow(new SnapshotError('version', 'snapshot kernel image version 3, but this Samepage reads version 4'));
  });

  /** Re-pack a changed body with a valid header and CRC: only the contents are wrong. */
  const repack = (change: (body: Record<string, any>) => void): Buffer => {
    const packr = new Packr({ useRecords: true, moreTypes: true, mapsAsObjects: true });
    const body = packr.unpack(good.subarray(20)) as Record<string, any>;
    change(body);
    const packed = packr.pack(body);
    const out = Buffer.alloc(20 + packed.length);
    good.copy(out, 0, 0, 12);
    out.writeUInt32LE(packed.length, 12);
    out.writeUInt32LE(crc32(packed), 16);
    packed.copy(out, 20);
    return out;
  };

  it('a host record with a field of the wrong type', () => {
    const e = problem(repack((b) => (b.host.guests[1].bootSeed = 'x')));
    expect([e.problem, e.message]).toEqual(['invalid', 'snapshot host.guests[1].bootSeed: expected a whole number, found "x"']);
  });

  // Records that decode and pass the CRC but would crash or corrupt a restored host:
  // each is refused before anything is built, naming the field.
  const malformed: [string, (body: Record<string, any>) => void, string][] = [
    ['a guest with no workload', (b) => delete b.host.guests[0].workload, 'snapshot host.guests[0]: workload: expected an options record, found undefined'],
    ['a workload whose bursts come every 0 ms', (b) => (b.host.guests[1].workload.burst.everyMs = 0), 'snapshot host.guests[1]: bursts must repeat after more than 0 ms, got 0'],
    ['a burst in progress that is not a record', (b) => (b.host.guests[2].bursts = [null]), "snapshot host.guests[2].bursts[0]: expected pages (at most the guest's 4096), rate and debt"],
    ['a burst in progress with pages missing', (b) => (b.host.guests[2].bursts = [{ rate: 1, debt: 0 }]), "snapshot host.guests[2].bursts[0]: expected pages (at most the guest's 4096), rate and debt"],
    ['a guest in no known state', (b) => (b.host.guests[0].state = 'sleeping'), 'snapshot host.guests[0].state: expected one of created, booting, running, paused, stopped, oom-killed, refused, destroyed, found "sleeping"'],
    ['a running guest without a process', (b) => (b.host.guests[0].pid = null), 'snapshot host.guests[0].pid: a running guest has a process, found null'],
    ['a guest PRNG word that is not a u32', (b) => (b.host.guests[0].prng[2] = -1), 'snapshot host.guests[0].prng: expected 4 PRNG state words'],
    ['a log entry that is not a record', (b) => (b.host.log = [42]), 'snapshot host.log[0]: expected t, kind (action, guest, oom-kill, refused, governor, governor-idle), guest (a string or null), what and error (a string or null)'],
    ['a log entry of no known kind', (b) => (b.host.log[0].kind = 'rumour'), 'snapshot host.log[0]: expected t, kind (action, guest, oom-kill, refused, governor, governor-idle), guest (a string or null), what and error (a string or null)'],
    ['a fixed policy with a knob missing', (b) => delete b.host.policy.pagesToScan, 'snapshot host.policy: pagesToScan: expected a whole number from 0 to 4294967295, found undefined'],
    ['a governor that is not a record', (b) => (b.host.governor = 'ksmtuned'), 'snapshot host.governor: expected a governor record'],
    ['a pressure process with no pid', (b) => (b.host.hogs = [{ bytes: 4096 }]), 'snapshot host.hogs[0]: expected a pid and bytes'],
    ['a guest whose page source has no digest', (b) => delete b.host.guests[1].source.digest, "snapshot host.guests[1].source: expected a page source: type 'synthetic' or 'capture', an image name and version (a capture file and guest), and a sha-256 digest (64 hex digits)"],
    ['a guest whose page source is of an unknown type', (b) => (b.host.guests[0].source.type = 'tape'), "snapshot host.guests[0].source: expected a page source: type 'synthetic' or 'capture', an image name and version (a capture file and guest), and a sha-256 digest (64 hex digits)"],
    ['a host whose RAM is not its kernel’s', (b) => (b.host.memoryMiB = 128), 'snapshot host.memoryMiB: 128, but the kernel has 64'],
  ];
  for (const [what, change, message] of malformed) {
    it(`a malformed host record: ${what}`, () => {
      const e = problem(repack(change));
      expect([e.problem, e.message]).toEqual(['invalid', message]);
    });
  }

  it('a guest whose process is not in the kernel', () => {
    const e = problem(repack((b) => (b.host.guests[0].pid = 9999)));
    expect(e.message).toBe('snapshot does not restore: guest a: its process 9999 is not in the kernel');
  });

  it('a kernel image of another version in a file of this one', () => {
    const e = problem(repack((b) => (b.kernel.imageVersion = 1)));
    expect([e.problem, e.message]).toEqual(['version', 'snapshot kernel image version 1, but this Samepage reads version 4']);
  });

  it('a kernel of a version this Samepage has no profile for', () => {
    const e = problem(repack((b) => (b.kernel.parts.ksm.version = '7.2')));
    expect([e.problem, e.message]).toEqual(['version', 'snapshot kernel is Linux 7.2, which this Samepage has no profile for (it has 2.6.33, 6.18)']);
  });

  it('a kernel image with a field missing', () => {
    const e = problem(repack((b) => delete b.kernel.mem));
    expect(e.problem).toBe('invalid');
    expect(e.message).toMatch(/^snapshot kernel image: .*mem/);
  });

  it('a host snapshot is not a scenario run: resume says so', () => {
    expect(() => ScenarioRun.resume(good, images)).toThrow('snapshot run position: missing (a host snapshot, not a scenario run)');
  });

  it('after any failed restore the original host is untouched and consistent', () => {
    const before = observe(host);
    for (const bytes of [good.subarray(0, 100), repack((b) => (b.host.guests[0].pid = 9999))]) expect(() => restoreHost(bytes, images)).toThrow(SnapshotError);
    expect(observe(host)).toEqual(before);
    host.checkInvariants();
  });
});
