import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadImageCatalog } from '../../src/scenario/images.js';
import { loadCapture, loadScenario } from '../../src/scenario/load.js';
import { captureDigest } from '../../src/vmm/capture-source.js';
import { parseScenario, type Scenario } from '../../src/scenario/schema.js';
import { ConfigError } from '../../src/vmm/config.js';

/**
 * The scenario format: src/scenario/schema.ts. Scenarios use the tiny test image
 * (test/vmm/fixtures: tiny 1 as YAML, tiny 2 as JSON; 16 MiB minimum RAM). Every bad
 * input is checked against the whole message, line numbers and all: the message is
 * what a user reads.
 */

const MiB = 1024 * 1024;
const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const images = loadImageCatalog(fileURLToPath(new URL('../vmm/fixtures/', import.meta.url)));

/** Text of a scenario written indented inside a test: the common indentation and the first newline go. */
function text(s: string): string {
  const lines = s.replace(/^\n/, '').split('\n');
  const indent = Math.min(...lines.filter((l) => l.trim() !== '').map((l) => /^ */.exec(l)![0].length));
  return lines.map((l) => l.slice(indent)).join('\n');
}

/** The ConfigError parsing `t` as bad.yaml throws. */
function error(t: string): ConfigError {
  try {
    parseScenario(t, 'bad.yaml', images);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError, the scenario parsed');
}

const IDLE = { dirtyRate: null, burst: null };
const BOOT_TIME_KNOBS = { policy: 'fixed', run: 1, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: null } as const;

describe('parseScenario: a valid scenario', () => {
  // test/scenario/fixtures/full.yaml: every field, every event kind, count and stagger, variants.
  const full = parseScenario(readFileSync(join(FIXTURES, 'full.yaml'), 'utf8'), 'full.yaml', images);

  it('gives the host, KSM policy and timing in the library units (MiB, ms)', () => {
    expect({ ...full, guests: [], events: [], variants: [] }).toEqual({
      file: 'full.yaml',
      name: 'full',
      description: 'Every field and every event',
      seed: 42,
      memoryMiB: 128,
      swapMiB: 64,
      blockMiB: 32,
      kernel: '2.6.33',
      ksm: { policy: 'fixed', run: 1, pagesToScan: 250, sleepMillisecs: 50, maxKernelPages: 1000 },
      durationMs: 120_000,
      sampleEveryMs: 5000,
      tickMs: 50,
      guests: [],
      events: [],
      variants: [],
    } satisfies Scenario);
  });

  it('expands count into name-1..name-N, each starting a stagger later, and pins the newest version when none is named', () => {
    const web = { image: 'tiny', capture: null, version: '1', memoryMiB: 16, memMerge: true, mergeDomain: '', workload: { dirtyRate: 40, burst: { everyMs: 30_000, pages: 500, overMs: 2000 } } };
    expect(full.guests).toEqual([
      { name: 'web-1', ...web, startAt: 10_000 },
      { name: 'web-2', ...web, startAt: 15_000 },
      { name: 'web-3', ...web, startAt: 20_000 },
      { name: 'db', image: 'tiny', capture: null, version: '2', memoryMiB: 32, memMerge: false, mergeDomain: '', workload: IDLE, startAt: 0 },
      { name: 'spare', image: 'tiny', capture: null, version: '1', memoryMiB: 16, memMerge: true, mergeDomain: '', workload: IDLE, startAt: null },
    ]);
  });

  it('gives every kind of event, sorted by time, ties in file order', () => {
    expect(full.events).toEqual([
      { at: 20_000, action: { kind: 'pause', guest: 'web-2' } },
      { at: 25_000, action: { kind: 'resume', guest: 'web-2' } },
      { at: 30_000, action: { kind: 'start', guest: 'spare' } },
      { at: 40_000, action: { kind: 'burst', guest: 'db', pages: 2000, overMs: 10_000 } },
      { at: 40_000, action: { kind: 'burst', guest: 'web-2', pages: 100, overMs: 0 } },
      { at: 45_000, action: { kind: 'workload', guest: 'web-1', dirtyRate: 5, burst: null } },
      { at: 46_000, action: { kind: 'workload', guest: 'db', dirtyRate: undefined, burst: { everyMs: 60_000, pages: 10, overMs: 1000 } } },
      { at: 50_000, action: { kind: 'pressure', bytes: 64 * MiB } },
      { at: 55_000, action: { kind: 'release_pressure' } },
      { at: 56_000, action: { kind: 'reclaim', pages: 1000 } },
      { at: 57_000, action: { kind: 'compact' } },
      { at: 58_000, action: { kind: 'migrate', guest: 'db', pages: 300 } },
      { at: 60_000, action: { kind: 'stop', guest: 'web-1' } },
      { at: 65_000, action: { kind: 'offline', block: 3 } },
      { at: 70_000, action: { kind: 'online', block: 3 } },
      { at: 75_000, action: { kind: 'knobs', run: 2, pagesToScan: 1000, sleepMillisecs: 0, maxKernelPages: 0 } },
      {
        at: 80_000,
        action: {
          kind: 'ksm',
          policy: {
            policy: 'ksmtuned',
            config: { monitorInterval: 10, npagesBoost: 100, npagesDecay: -10, npagesMin: 32, npagesMax: 2000, sleepMsec: 20, thresCoef: 10, thresConst: 4096 },
            maxKernelPages: 500,
          },
        },
      },
      { at: 90_000, action: { kind: 'destroy', guest: 'web-3' } },
      { at: 120_000, action: { kind: 'knobs', pagesToScan: 10 } },
    ]);
  });

  it('gives one run per variant, fixed knobs defaulting to the boot-time ones and ksmtuned to its script defaults', () => {
    expect(full.variants).toEqual([
      { name: 'boot-time', ksm: BOOT_TIME_KNOBS, kernel: '2.6.33', mergeDomains: true },
      { name: 'tuned', ksm: { policy: 'ksmtuned', config: {}, maxKernelPages: null }, kernel: '2.6.33', mergeDomains: true },
    ]);
  });

  it('reads the same from JSON as from YAML', () => {
    const json = parseScenario(readFileSync(join(FIXTURES, 'full.json'), 'utf8'), 'full.json', images);
    expect({ ...json, file: 'full.yaml' }).toEqual(full);
    expect(json.file).toBe('full.json');
  });

  it('fills in every default: seed 1, no swap, 128 MiB blocks, a sample every 10s, 100ms ticks, ksm run 1/100/20, mem_merge on, idle', () => {
    const s = parseScenario(
      text(`
        name: minimal
        host: { memory: 256MiB }
        duration: 1min
        guests:
          - { name: a, image: tiny, memory: 16MiB }
      `),
      'minimal.yaml',
      images,
    );
    expect(s).toEqual({
      file: 'minimal.yaml',
      name: 'minimal',
      description: '',
      seed: 1,
      memoryMiB: 256,
      swapMiB: 0,
      blockMiB: 128,
      kernel: '2.6.33',
      ksm: BOOT_TIME_KNOBS,
      durationMs: 60_000,
      sampleEveryMs: 10_000,
      tickMs: 100,
      guests: [{ name: 'a', image: 'tiny', capture: null, version: '2', memoryMiB: 16, memMerge: true, mergeDomain: '', workload: IDLE, startAt: 0 }],
      events: [],
      variants: [{ name: null, ksm: BOOT_TIME_KNOBS, kernel: '2.6.33', mergeDomains: true }],
    } satisfies Scenario);
  });

  it('accepts an event at exactly the end of the scenario', () => {
    const s = parseScenario(
      text(`
        name: at-the-end
        host: { memory: 128MiB }
        duration: 30s
        guests:
          - { name: a, image: tiny, memory: 16MiB }
        events:
          - { at: 30s, stop: a }
      `),
      'end.yaml',
      images,
    );
    expect(s.events).toEqual([{ at: 30_000, action: { kind: 'stop', guest: 'a' } }]);
  });
});

describe('parseScenario: bad input gives file:line: field: what was expected', () => {
  it('a YAML syntax error, at the line where the parser found it', () => {
    expect(
      error(
        text(`
          name: broken
          host: { memory: 64MiB
          duration: 30s
        `),
      ).message,
    ).toBe('bad.yaml:3: not valid YAML or JSON: Flow map in block collection must be sufficiently indented and end with a }');
  });

  it('a JSON syntax error (a comma missing at the end of line 3)', () => {
    expect(error('{\n  "name": "broken",\n  "host": { "memory": "64MiB" }\n  "duration": "30s"\n}\n').message).toBe(
      'bad.yaml:4: not valid YAML or JSON: Missing , between flow map items',
    );
  });

  it('an empty file, and a file that is not a map', () => {
    expect(error('').message).toBe('bad.yaml: expected a scenario: a map with name, host, duration and guests, got an empty file');
    expect(error('- a\n- b\n').message).toBe('bad.yaml:1: expected a scenario: a map with name, host, duration and guests, got a list');
  });

  it('an unknown top-level field', () => {
    expect(
      error(
        text(`
          name: typo
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          sample_evry: 5s
          guests:
            - { name: a, image: tiny, memory: 16MiB }
        `),
      ).message,
    ).toBe('bad.yaml:4: sample_evry: unknown field (misspelt?)');
  });

  it('a misspelt guest field: the field it names is unknown, the one it meant is missing', () => {
    expect(
      error(
        text(`
          name: typo
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          guests:
            - name: a
              image: tiny
              memroy: 16MiB
        `),
      ).message,
    ).toBe(["bad.yaml:5: guests[0].memory: expected a size like '512MiB' or a number of MiB, got nothing", 'bad.yaml:7: guests[0].memroy: unknown field (misspelt?)'].join('\n'));
  });

  it('a missing required field is placed at the map it belongs in', () => {
    expect(
      error(
        text(`
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16MiB }
        `),
      ).message,
    ).toBe('bad.yaml:1: name: missing (expected string)');
  });

  it('a bad size: a word, a negative number, a unit QEMU does not have', () => {
    expect(
      error(
        text(`
          name: sizes
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: lots }
            - { name: b, image: tiny, memory: -16 }
            - { name: c, image: tiny, memory: 16Q }
        `),
      ).message,
    ).toBe(
      [
        "bad.yaml:5: guests[0].memory: expected a size like '512MiB' or a number of MiB, got \"lots\"",
        "bad.yaml:6: guests[1].memory: expected a size like '512MiB' or a number of MiB, got -16",
        "bad.yaml:7: guests[2].memory: expected a size like '512MiB' or a number of MiB, got \"16Q\"",
      ].join('\n'),
    );
  });

  it('a bad duration, and a bad start time', () => {
    expect(
      error(
        text(`
          name: durations
          host: { memory: 64MiB, block: 16MiB }
          duration: 1 minute
          guests:
            - { name: a, image: tiny, memory: 16MiB, start: soon }
        `),
      ).message,
    ).toBe(
      [
        "bad.yaml:3: duration: expected a duration like '10s' or '5min', got \"1 minute\"",
        "bad.yaml:5: guests[0].start: expected a time like '30s', or 'never', got \"soon\"",
      ].join('\n'),
    );
  });

  it('an unknown image: the message lists the known ones', () => {
    expect(
      error(
        text(`
          name: images
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          guests:
            - { name: a, image: fedora, memory: 16MiB }
        `),
      ).message,
    ).toBe('bad.yaml:5: guests[0].image: no image named "fedora"; known images: tiny 1, tiny 2');
  });

  it('an unknown version of a known image is placed at version', () => {
    expect(
      error(
        text(`
          name: versions
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          guests:
            - name: a
              image: tiny
              version: "3"
              memory: 16MiB
        `),
      ).message,
    ).toBe('bad.yaml:7: guests[0].version: no image tiny 3; known images: tiny 1, tiny 2');
  });

  it("guest RAM below the image's minimum", () => {
    expect(
      error(
        text(`
          name: small
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          guests:
            - { name: a, image: tiny, version: "1", memory: 8MiB }
        `),
      ).message,
    ).toBe('bad.yaml:5: guests[0].memory: image tiny 1 needs at least 16 MiB of RAM, the guest has 8 MiB');
  });

  it('guest RAM that is not a whole number of MiB', () => {
    expect(
      error(
        text(`
          name: odd
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16388KiB }
        `),
      ).message,
    ).toBe('bad.yaml:5: guests[0].memory: expected a whole number of MiB');
  });

  it('host memory that is not a whole number of blocks: the last block is partial, as on Linux', () => {
    const s = parseScenario(
      text(`
        name: blocks
        host:
          memory: 72MiB
          block: 16MiB
        duration: 30s
        guests:
          - { name: a, image: tiny, memory: 16MiB }
      `),
      'partial.yaml',
      images,
    );
    expect([s.memoryMiB, s.blockMiB]).toEqual([72, 16]);
  });

  it('host memory that is not whole MiB, and a block above 2 GiB', () => {
    expect(
      error(
        text(`
          name: blocks
          host:
            memory: 1.5MiB
            block: 4GiB
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16MiB }
        `),
      ).message,
    ).toBe(["bad.yaml:3: host.memory: expected a positive whole number of MiB, got 1.5 MiB", "bad.yaml:4: host.block: expected at most 2GiB (Linux's largest memory block), got 4 GiB"].join('\n'));
  });

  it('a block size that is not a power of two', () => {
    expect(
      error(
        text(`
          name: blocks
          host:
            memory: 96MiB
            block: 24MiB
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16MiB }
        `),
      ).message,
    ).toBe('bad.yaml:4: host.block: expected a power of two MiB (like 128MiB), got 24 MiB');
  });

  it('an event with two actions, and an event with none', () => {
    expect(
      error(
        text(`
          name: actions
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16MiB }
          events:
            - { at: 5s, stop: a, pause: a }
            - { at: 6s }
        `),
      ).message,
    ).toBe(
      [
        'bad.yaml:7: events[0]: expected one action per event, found stop and pause',
        'bad.yaml:8: events[1]: expected one action (start, stop, pause, resume, destroy, burst, workload, pressure, release_pressure, reclaim, compact, migrate, offline, online, knobs, ksm)',
      ].join('\n'),
    );
  });

  it('an event naming an unknown guest, in the string form and in the map form; names are those after count expansion', () => {
    expect(
      error(
        text(`
          name: who
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          guests:
            - { name: web, count: 2, image: tiny, memory: 16MiB }
          events:
            - { at: 5s, stop: web }
            - at: 6s
              burst: { guest: db, pages: 10 }
        `),
      ).message,
    ).toBe(
      [
        'bad.yaml:7: events[0].stop: no guest named "web" (guests: web-1, web-2)',
        'bad.yaml:9: events[1].burst.guest: no guest named "db" (guests: web-1, web-2)',
      ].join('\n'),
    );
  });

  it('an event after the end of the scenario', () => {
    expect(
      error(
        text(`
          name: late
          host: { memory: 64MiB, block: 16MiB }
          duration: 1min
          guests:
            - { name: a, image: tiny, memory: 16MiB }
          events:
            - { at: 1min 30s, stop: a }
        `),
      ).message,
    ).toBe('bad.yaml:7: events[0].at: after the end of the scenario (duration 60s)');
  });

  it('a guest starting after the end, and a stagger that takes the last of a count past it', () => {
    expect(
      error(
        text(`
          name: late
          host: { memory: 64MiB, block: 16MiB }
          duration: 1min
          guests:
            - { name: a, image: tiny, memory: 16MiB, start: 2min }
            - { name: b, count: 3, image: tiny, memory: 16MiB, start: 50s, stagger: 6s }
        `),
      ).message,
    ).toBe(
      [
        'bad.yaml:5: guests[0].start: after the end of the scenario (duration 60s)',
        'bad.yaml:6: guests[1].stagger: the last guest, b-3, would start at 62s, after the end of the scenario (duration 60s)',
      ].join('\n'),
    );
  });

  it('two guests with the same name once count is expanded', () => {
    expect(
      error(
        text(`
          name: twins
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          guests:
            - { name: web, count: 2, image: tiny, memory: 16MiB }
            - { name: web-2, image: tiny, memory: 16MiB }
        `),
      ).message,
    ).toBe('bad.yaml:6: guests[1].name: guest web-2 is already defined by guests[0]');
  });

  it('stagger without count', () => {
    expect(
      error(
        text(`
          name: stagger
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16MiB, stagger: 5s }
        `),
      ).message,
    ).toBe('bad.yaml:5: guests[0].stagger: only means something with count');
  });

  it('a KSM policy that is not one of the four, or missing, or not a map', () => {
    const scenario = (ksm: string): string => `name: policy\nhost: { memory: 64MiB, block: 16MiB }\nksm: ${ksm}\nduration: 30s\nguests:\n  - { name: a, image: tiny, memory: 16MiB }\n`;
    expect(error(scenario('{ policy: auto }')).message).toBe("bad.yaml:3: ksm.policy: expected 'fixed', 'ksmtuned', 'mom' or 'kubevirt', got \"auto\"");
    expect(error(scenario('{ run: 1 }')).message).toBe("bad.yaml:3: ksm.policy: expected 'fixed', 'ksmtuned', 'mom' or 'kubevirt', got nothing");
    expect(error(scenario('fixed')).message).toBe('bad.yaml:3: ksm: expected a map with policy: fixed, ksmtuned, mom or kubevirt, got "fixed"');
  });

  it('a burst period of 0s, for a guest and in a workload event', () => {
    const t = `name: bursts\nhost: { memory: 64MiB, block: 16MiB }\nduration: 30s\nguests:\n  - { name: a, image: tiny, memory: 16MiB, workload: { burst: { every: 0s, pages: 5, over: 1s } } }\nevents:\n  - { at: 1s, workload: { guest: a, burst: { every: 0s, pages: 1, over: 0s } } }\n`;
    expect(error(t).message).toBe('bad.yaml:5: guests[0].workload.burst.every: expected more than 0s\nbad.yaml:7: events[0].workload.burst.every: expected more than 0s');
  });

  it('ksmtuned with npages_min above npages_max (given or default)', () => {
    const scenario = (ksm: string): string => `name: tuned\nhost: { memory: 64MiB, block: 16MiB }\nksm: ${ksm}\nduration: 30s\nguests:\n  - { name: a, image: tiny, memory: 16MiB }\n`;
    expect(error(scenario('{ policy: ksmtuned, npages_min: 2000 }')).message).toBe('bad.yaml:3: ksm.npages_min: expected at most npages_max (1250), got 2000');
    expect(error(scenario('{ policy: ksmtuned, npages_min: 300, npages_max: 200 }')).message).toBe('bad.yaml:3: ksm.npages_min: expected at most npages_max (200), got 300');
  });

  it('run out of range, in the policy and in a knobs event', () => {
    expect(
      error(
        text(`
          name: run
          host: { memory: 64MiB, block: 16MiB }
          ksm: { policy: fixed, run: 2 }
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16MiB }
          variants:
            - { name: neg, ksm: { policy: fixed, run: -1 } }
          events:
            - { at: 5s, knobs: { run: 3 } }
        `),
      ).message,
    ).toBe(
      [
        'bad.yaml:3: ksm.run: expected 0 (stop) or 1 (merge), got 2',
        'bad.yaml:8: variants[0].ksm.run: expected 0 (stop) or 1 (merge), got -1',
        'bad.yaml:10: events[0].knobs.run: expected 0, 1 or 2',
      ].join('\n'),
    );
  });

  it('a ksmtuned monitor interval that is not a whole number of seconds (under 1s it would never stop adjusting)', () => {
    expect(
      error(
        text(`
          name: tuned
          host: { memory: 64MiB, block: 16MiB }
          ksm: { policy: ksmtuned, monitor_interval: 400ms }
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16MiB }
          events:
            - { at: 5s, ksm: { policy: ksmtuned, monitor_interval: 1500ms } }
        `),
      ).message,
    ).toBe(
      [
        'bad.yaml:3: ksm.monitor_interval: expected a whole number of seconds, 1s or more, got 400ms',
        'bad.yaml:8: events[0].ksm.monitor_interval: expected a whole number of seconds, 1s or more, got 1500ms',
      ].join('\n'),
    );
  });

  it('pressure that is not a positive whole number of pages', () => {
    expect(
      error(
        text(`
          name: pressure
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16MiB }
          events:
            - { at: 5s, pressure: 0MiB }
            - { at: 6s, pressure: 1000B }
        `),
      ).message,
    ).toBe(
      [
        'bad.yaml:7: events[0].pressure: expected a positive whole number of 4KiB pages, got 0 B',
        'bad.yaml:8: events[1].pressure: expected a positive whole number of 4KiB pages, got 1000 B',
      ].join('\n'),
    );
  });

  it('a workload that is neither idle nor a map, and a misspelt workload field', () => {
    expect(
      error(
        text(`
          name: work
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16MiB, workload: busy }
            - { name: b, image: tiny, memory: 16MiB, workload: { dirty_rat: 5 } }
        `),
      ).message,
    ).toBe(
      [
        "bad.yaml:5: guests[0].workload: expected 'idle' or a map with dirty_rate (pages per second) and/or burst, got \"busy\"",
        'bad.yaml:6: guests[1].workload.dirty_rat: unknown field (misspelt?)',
      ].join('\n'),
    );
  });

  it('a guest name with a space', () => {
    expect(
      error(
        text(`
          name: names
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          guests:
            - { name: "web 1", image: tiny, memory: 16MiB }
        `),
      ).message,
    ).toBe("bad.yaml:5: guests[0].name: expected a name of letters, digits, '.', '_' and '-', got \"web 1\"");
  });

  it('several problems at once: all of them, schema problems sorted by line', () => {
    expect(
      error(
        text(`
          name: many
          host: { memory: 64MiB, block: 16MiB }
          duration: 30s
          sample_evry: 5s
          guests:
            - { name: a, image: tiny, memory: lots }
            - { name: b, imag: tiny, memory: 16MiB }
          events:
            - { at: soon, stop: a }
        `),
      ).message,
    ).toBe(
      [
        'bad.yaml:4: sample_evry: unknown field (misspelt?)',
        "bad.yaml:6: guests[0].memory: expected a size like '512MiB' or a number of MiB, got \"lots\"",
        'bad.yaml:7: guests[1].imag: unknown field (misspelt?)',
        'bad.yaml:7: guests[1].image: missing (expected an image name, or capture: { file, guest })',
        "bad.yaml:9: events[0].at: expected a duration like '10s' or '5min', got \"soon\"",
      ].join('\n'),
    );
  });

  it('several problems the schema cannot see: all of them, sorted by line, each in the error\'s list', () => {
    const e = error(
      text(`
        name: many
        host: { memory: 64MiB, block: 16MiB }
        duration: 1min
        events:
          - { at: 2min, stop: a }
          - { at: 5s, stop: c }
        guests:
          - { name: b, image: nope, memory: 16MiB }
          - { name: a, image: tiny, memory: 8MiB }
      `),
    );
    expect(e.message).toBe(
      [
        'bad.yaml:5: events[0].at: after the end of the scenario (duration 60s)',
        'bad.yaml:6: events[1].stop: no guest named "c" (guests: b, a)',
        'bad.yaml:8: guests[0].image: no image named "nope"; known images: tiny 1, tiny 2',
        'bad.yaml:9: guests[1].memory: image tiny 2 needs at least 16 MiB of RAM, the guest has 8 MiB',
      ].join('\n'),
    );
    expect(e.file).toBe('bad.yaml');
    expect(e.problems.map((p) => [p.line, p.field])).toEqual([
      [5, 'events[0].at'],
      [6, 'events[1].stop'],
      [8, 'guests[0].image'],
      [9, 'guests[1].memory'],
    ]);
  });
});

describe('loadScenario', () => {
  it('reads and parses a file, naming it relative to the working directory', () => {
    const s = loadScenario(join(FIXTURES, 'full.yaml'), images);
    expect(s.file).toBe('test/scenario/fixtures/full.yaml');
    expect(s.guests.map((g) => g.name)).toEqual(['web-1', 'web-2', 'web-3', 'db', 'spare']);
  });

  it('on a missing file throws a ConfigError naming the file', () => {
    let thrown: unknown = null;
    try {
      loadScenario(join(FIXTURES, 'no-such.yaml'), images);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as ConfigError).message).toBe('test/scenario/fixtures/no-such.yaml: cannot read the file (ENOENT)');
    expect((thrown as ConfigError).file).toBe('test/scenario/fixtures/no-such.yaml');
  });
});

describe('parseScenario: operators’ spellings', () => {
  const base = (guest: string, extra = ''): string => `name: q\nhost: { memory: 64MiB, block: 16MiB }\nduration: 30s\n${extra}guests:\n  - ${guest}\n`;

  it('mem_merge takes QEMU’s on and off as well as true and false', () => {
    const merge = (v: string): boolean => parseScenario(base(`{ name: a, image: tiny, memory: 16MiB, mem_merge: ${v} }`), 'q.yaml', images).guests[0]!.memMerge;
    expect([merge('on'), merge('off'), merge('true'), merge('false')]).toEqual([true, false, true, false]);
    expect(error(base('{ name: a, image: tiny, memory: 16MiB, mem_merge: maybe }')).message).toBe(
      'bad.yaml:5: guests[0].mem_merge: expected on or off (QEMU\'s mem-merge), or true or false, got "maybe"',
    );
  });

  it('merge_domain names a guest\'s KSM merge domain; a variant\'s merge_domains: off puts every guest in the common one', () => {
    const s = parseScenario(
      base('{ name: a, image: tiny, memory: 16MiB, merge_domain: tenant-a }', '') + '  - { name: b, image: tiny, memory: 16MiB }\nvariants:\n  - { name: apart, merge_domains: on }\n  - { name: together, merge_domains: off }\n',
      'q.yaml',
      images,
    );
    expect(s.guests.map((g) => g.mergeDomain)).toEqual(['tenant-a', '']);
    expect(s.variants.map((v) => [v.name, v.mergeDomains])).toEqual([['apart', true], ['together', false]]);
    expect(parseScenario(base('{ name: a, image: tiny, memory: 16MiB }'), 'q.yaml', images).variants[0]!.mergeDomains).toBe(true);
    expect(error(base('{ name: a, image: tiny, memory: 16MiB, merge_domain: "has space" }')).message).toBe(
      'bad.yaml:5: guests[0].merge_domain: expected a merge domain name of 1 to 64 letters, digits, \'.\', \'_\' and \'-\', got "has space"',
    );
    expect(error(base('{ name: a, image: tiny, memory: 16MiB }') + 'variants:\n  - { name: v, merge_domains: maybe }\n').message).toBe(
      'bad.yaml:7: variants[0].merge_domains: expected on (the guests\' merge_domain apply) or off (every guest in the common domain), got "maybe"',
    );
  });

  it('a bare number is MiB, as in QEMU’s -m 2048: guest memory, host memory, swap and block, pressure', () => {
    const s = parseScenario(
      text(`
        name: bare
        host: { memory: 64, swap: 32, block: 16 }
        duration: 30s
        guests:
          - { name: a, image: tiny, memory: 16 }
          - { name: b, image: tiny, memory: "24" }
          - { name: c, image: tiny, memory: 1.5G }
        events:
          - { at: 5s, pressure: 8 }
      `),
      'bare.yaml',
      images,
    );
    expect([s.memoryMiB, s.swapMiB, s.blockMiB]).toEqual([64, 32, 16]);
    expect(s.guests.map((g) => g.memoryMiB)).toEqual([16, 24, 1536]);
    expect(s.events).toEqual([{ at: 5000, action: { kind: 'pressure', bytes: 8 * MiB } }]);
  });

  it('half a MiB of guest memory is still refused', () => {
    expect(error(base('{ name: a, image: tiny, memory: 16.5 }')).message).toBe('bad.yaml:5: guests[0].memory: expected a whole number of MiB');
  });

  it('libvirt’s node-memory-tune names set pages_to_scan and sleep_millisecs, in the policy and in knobs events', () => {
    const s = parseScenario(
      text(`
        name: virsh
        host: { memory: 64MiB, block: 16MiB }
        ksm: { policy: fixed, shm_pages_to_scan: 1000, shm_sleep_millisecs: 50 }
        duration: 30s
        guests:
          - { name: a, image: tiny, memory: 16MiB }
        events:
          - { at: 5s, knobs: { shm_pages_to_scan: 200, shm_sleep_millisecs: 10 } }
      `),
      'virsh.yaml',
      images,
    );
    expect(s.ksm).toEqual({ policy: 'fixed', run: 1, pagesToScan: 1000, sleepMillisecs: 50, maxKernelPages: null });
    expect(s.events).toEqual([{ at: 5000, action: { kind: 'knobs', pagesToScan: 200, sleepMillisecs: 10 } }]);
  });

  it('libvirt’s names: set twice, a statistic, merge_across_nodes on a kernel without it', () => {
    expect(
      error(
        text(`
          name: virsh
          host: { memory: 64MiB, block: 16MiB }
          ksm:
            policy: fixed
            pages_to_scan: 100
            shm_pages_to_scan: 1000
            shm_merge_across_nodes: 0
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16MiB }
          events:
            - { at: 5s, knobs: { shm_pages_shared: 10 } }
            - { at: 6s, knobs: { sleep_millisecs: 10, shm_sleep_millisecs: 20 } }
        `),
      ).message,
    ).toBe(
      [
        "bad.yaml:6: ksm.shm_pages_to_scan: libvirt's name for pages_to_scan, which is set too (line 5): set one",
        "bad.yaml:7: ksm.shm_merge_across_nodes: libvirt's name for /sys/kernel/mm/ksm/merge_across_nodes, which this kernel (Linux 2.6.33) does not have; libvirt refuses it too: \"Parameter 'shm_merge_across_nodes' is not supported by this kernel\"",
        "bad.yaml:12: events[0].knobs.shm_pages_shared: libvirt's name for the read-only statistic pages_shared, not a knob",
        "bad.yaml:13: events[1].knobs.shm_sleep_millisecs: libvirt's name for sleep_millisecs, which is set too (line 13): set one",
      ].join('\n'),
    );
  });
});

describe('parseScenario: values the kernel would refuse, hosts the model cannot hold', () => {
  it('pages_to_scan and sleep_millisecs above UINT_MAX, in the policy, a variant and a knobs event', () => {
    expect(
      error(
        text(`
          name: big
          host: { memory: 64MiB, block: 16MiB }
          ksm: { policy: fixed, pages_to_scan: 4294967296 }
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16MiB }
          variants:
            - { name: v, ksm: { policy: fixed, sleep_millisecs: 5000000000 } }
          events:
            - { at: 5s, knobs: { pages_to_scan: 4294967295, sleep_millisecs: 4294967296 } }
        `),
      ).message,
    ).toBe(
      [
        'bad.yaml:3: ksm.pages_to_scan: expected at most 4294967295 (UINT_MAX): the kernel refuses larger values with EINVAL, got 4294967296',
        'bad.yaml:8: variants[0].ksm.sleep_millisecs: expected at most 4294967295 (UINT_MAX): the kernel refuses larger values with EINVAL, got 5000000000',
        'bad.yaml:10: events[0].knobs.sleep_millisecs: expected at most 4294967295 (UINT_MAX): the kernel refuses larger values with EINVAL, got 4294967296',
      ].join('\n'),
    );
  });

  it('a governor whose figures on this host would be refused: ksmtuned npages_max, its sleep, MOM’s sleep', () => {
    expect(
      error(
        text(`
          name: big
          host: { memory: 64MiB, block: 16MiB }
          ksm: { policy: ksmtuned, npages_max: 4294967296 }
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16MiB }
          variants:
            - { name: slow, ksm: { policy: ksmtuned, sleep_msec: 20000000 } }
            - { name: mom, ksm: { policy: mom, sleep_ms_baseline: 20000000 } }
        `),
      ).message,
    ).toBe(
      [
        'bad.yaml:3: ksm.npages_max: expected at most 4294967295 (UINT_MAX): the kernel refuses larger values with EINVAL, got 4294967296',
        'bad.yaml:8: variants[0].ksm.sleep_msec: ksmtuned would write sleep_millisecs 5120000000 on this host (KSM_SLEEP_MSEC 20000000 × 16 GiB / MemTotal), above UINT_MAX: the kernel refuses it',
        'bad.yaml:9: variants[1].ksm.sleep_ms_baseline: MOM would write sleep_millisecs 5120000000 on this host (20000000 × 16 GiB / MemTotal), above UINT_MAX: the kernel refuses it',
      ].join('\n'),
    );
  });

  it('512 GiB of memory and 8 GiB of swap are a host the model holds', () => {
    expect(() => parseScenario(text(`
          name: big
          host:
            memory: 512GiB
            swap: 8GiB
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16MiB }
        `), 'big.yaml', images)).not.toThrow();
  });

  it('host memory and swap beyond what a pte addresses (4 TiB)', () => {
    expect(
      error(
        text(`
          name: huge
          host:
            memory: 8TiB
            swap: 5TiB
          duration: 30s
          guests:
            - { name: a, image: tiny, memory: 16MiB }
        `),
      ).message,
    ).toBe(
      [
        'bad.yaml:3: host.memory: expected at most 4 TiB: a pte addresses 2^30 frames of 4 KiB, got 8 TiB',
        'bad.yaml:4: host.swap: expected at most 4 TiB: a swap pte addresses 2^30 slots of 4 KiB, got 5 TiB',
      ].join('\n'),
    );
  });
});

describe('parseScenario: the mom and kubevirt policies', () => {
  const scenario = (ksm: string): string => `name: gov\nhost: { memory: 64MiB, block: 16MiB }\nksm: ${ksm}\nduration: 30s\nguests:\n  - { name: a, image: tiny, memory: 16MiB }\n`;

  it('mom: every key, in the library’s names; none gives the rules file’s defaults', () => {
    const s = parseScenario(
      scenario(
        '{ policy: mom, pages_boost: 500, pages_decay: -20, npages_min: 32, npages_max: 4000, sleep_ms_baseline: 20, free_percent: 0.3, host_monitor_interval: 2s, policy_engine_interval: 4s, sample_history_length: 3, max_kernel_pages: 0 }',
      ),
      'gov.yaml',
      images,
    );
    expect(s.ksm).toEqual({
      policy: 'mom',
      config: { pagesBoost: 500, pagesDecay: -20, npagesMin: 32, npagesMax: 4000, sleepMsBaseline: 20, freePercent: 0.3, hostMonitorInterval: 2, policyEngineInterval: 4, sampleHistoryLength: 3 },
      maxKernelPages: 0,
    });
    expect(parseScenario(scenario('{ policy: mom }'), 'gov.yaml', images).ksm).toEqual({ policy: 'mom', config: {}, maxKernelPages: null });
  });

  it('mom: intervals in whole seconds, npages_min not above npages_max, a fraction for free_percent', () => {
    expect(error(scenario('{ policy: mom, policy_engine_interval: 500ms, npages_min: 2000, free_percent: 20 }')).message).toBe(
      [
        'bad.yaml:3: ksm.free_percent: expected a fraction between 0 and 1, got 20',
        'bad.yaml:3: ksm.policy_engine_interval: expected a whole number of seconds, 1s or more, got 500ms',
        'bad.yaml:3: ksm.npages_min: expected at most npages_max (1250), got 2000',
      ].join('\n'),
    );
  });

  it('kubevirt: every key', () => {
    const s = parseScenario(
      scenario('{ policy: kubevirt, pages_boost: 100, pages_decay: -10, npages_min: 10, npages_max: 2000, npages_init: 50, sleep_ms_baseline: 200, free_percent: 0.5, interval: 1min }'),
      'gov.yaml',
      images,
    );
    expect(s.ksm).toEqual({
      policy: 'kubevirt',
      config: { pagesBoost: 100, pagesDecay: -10, nPagesMin: 10, nPagesMax: 2000, nPagesInit: 50, sleepMsBaseline: 200, freePercent: 0.5, interval: 60 },
      maxKernelPages: null,
    });
  });

  it('kubevirt: an annotation value out of its bounds is refused, saying what the handler would do with it', () => {
    expect(error(scenario('{ policy: kubevirt, pages_decay: 50, npages_min: 100, npages_init: 20, free_percent: 1.5, sleep_ms_baseline: 0 }')).message).toBe(
      [
        'bad.yaml:3: ksm.pages_decay: expected 0 or less, got 50: KubeVirt\'s handler would log "kubevirt.io/ksm-pages-decay-override override value out of bounds, using default (-50)"',
        'bad.yaml:3: ksm.npages_init: expected between npages_min (100) and npages_max (1250), got 20: KubeVirt\'s handler would log "kubevirt.io/ksm-pages-init-override override value out of bounds, using lowest possible value (100)"',
        'bad.yaml:3: ksm.sleep_ms_baseline: expected 1 or more, got 0: KubeVirt\'s handler would log "kubevirt.io/ksm-sleep-ms-baseline-override override value out of bounds, using default (100)"',
        'bad.yaml:3: ksm.free_percent: expected a fraction between 0 and 1, got 1.5: KubeVirt\'s handler would log "kubevirt.io/ksm-free-percent-override override value out of bounds, using default (0.20000000298023224)"',
      ].join('\n'),
    );
  });
});

describe('parseScenario: ksmtuned from a ksmtuned.conf', () => {
  const scenario = (ksm: string): string => `name: conf\nhost: { memory: 64MiB, block: 16MiB }\nksm: ${ksm}\nduration: 30s\nguests:\n  - { name: a, image: tiny, memory: 16MiB }\n`;
  const files: Record<string, string> = {
    'tuned.conf': '# Configuration file for ksmtuned.\nKSM_MONITOR_INTERVAL=10\nKSM_NPAGES_MAX=2000\nKSM_THRES_COEF=50\nLOGFILE=/var/log/ksmtuned\n',
    'typo.conf': 'KSM_MONITOR_INTERVAL=10\nKSM_NPAGE_MAX=2000\n',
  };
  const readFile = (p: string): string => {
    const t = files[p];
    if (t === undefined) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    return t;
  };

  it('conf: gives the file’s settings; keys beside it override them', () => {
    const s = parseScenario(scenario('{ policy: ksmtuned, conf: tuned.conf, npages_max: 3000 }'), 'conf.yaml', images, { readFile });
    expect(s.ksm).toEqual({ policy: 'ksmtuned', config: { monitorInterval: 10, npagesMax: 3000, thresCoef: 50 }, maxKernelPages: null });
  });

  it('a conf file’s problems are reported at conf:, each with the conf file’s own line', () => {
    expect(error2(scenario('{ policy: ksmtuned, conf: typo.conf }'), readFile).message).toBe(
      'bad.yaml:3: ksm.conf: typo.conf:2: KSM_NPAGE_MAX: unknown variable (ksmtuned reads KSM_MONITOR_INTERVAL, KSM_NPAGES_BOOST, KSM_NPAGES_DECAY, KSM_NPAGES_MIN, KSM_NPAGES_MAX, KSM_SLEEP_MSEC, KSM_THRES_COEF, KSM_THRES_CONST, LOGFILE, DEBUG and PIDFILE)',
    );
    expect(error2(scenario('{ policy: ksmtuned, conf: gone.conf }'), readFile).message).toBe('bad.yaml:3: ksm.conf: cannot read gone.conf (ENOENT)');
    expect(error(scenario('{ policy: ksmtuned, conf: tuned.conf }')).message).toBe('bad.yaml:3: ksm.conf: a ksmtuned.conf can only be read from a scenario file (loadScenario)');
  });

  it('loadScenario reads conf: relative to the scenario’s directory', () => {
    const s = loadScenario(join(FIXTURES, 'ksmtuned-conf.yaml'), images);
    expect(s.ksm).toEqual({ policy: 'ksmtuned', config: { monitorInterval: 10, npagesBoost: 500, npagesMax: 2000 }, maxKernelPages: null });
  });
});

describe('parseScenario: every problem in one pass', () => {
  it('schema problems do not hide the checks that need other fields: all are reported, by line', () => {
    expect(
      error(
        text(`
          name: many
          seed: -1
          host:
            memory: 72MiB
            block: 16MiB
            swap: lots
          ksm: { policy: fixed, run: 7 }
          duration: 1min
          guests:
            - { name: a, image: tiny, memory: 8MiB, start: soon }
            - { name: b, image: nope, memory: 16MiB }
            - { name: c, image: tiny, memory: 16MiB, start: 2min, colour: red }
          events:
            - { at: 5s, stop: d }
            - { at: 2min, burst: { guest: a, pages: many } }
            - { at: 70s, pause: b }
        `),
      ).message,
    ).toBe(
      [
        'bad.yaml:2: seed: expected a seed (a whole number) (0 or more), got -1',
        "bad.yaml:6: host.swap: expected a size like '512MiB' or a number of MiB, got \"lots\"",
        'bad.yaml:7: ksm.run: expected 0 (stop) or 1 (merge), got 7',
        "bad.yaml:10: guests[0].start: expected a time like '30s', or 'never', got \"soon\"",
        'bad.yaml:10: guests[0].memory: image tiny 2 needs at least 16 MiB of RAM, the guest has 8 MiB',
        'bad.yaml:11: guests[1].image: no image named "nope"; known images: tiny 1, tiny 2',
        'bad.yaml:12: guests[2].colour: unknown field (misspelt?)',
        'bad.yaml:12: guests[2].start: after the end of the scenario (duration 60s)',
        'bad.yaml:14: events[0].stop: no guest named "d" (guests: a, b, c)',
        'bad.yaml:15: events[1].burst.pages: expected a number of pages (0 or more), got "many"',
        'bad.yaml:15: events[1].at: after the end of the scenario (duration 60s)',
        'bad.yaml:16: events[2].at: after the end of the scenario (duration 60s)',
      ].join('\n'),
    );
  });
});

/** The ConfigError parsing `t` as bad.yaml with a file reader throws. */
function error2(t: string, readFile: (p: string) => string): ConfigError {
  try {
    parseScenario(t, 'bad.yaml', images, { readFile });
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError, the scenario parsed');
}

describe('parseScenario: captured guests', () => {
  const cap = 'captures/busybox-4.cap';
  const readCapture = (p: string) => loadCapture(p === 'busybox-4.cap' ? cap : p);
  const scenario = (guest: string, extra = ''): string =>
    text(`
      name: cap
      host: { memory: 512MiB }
      duration: 10s
      guests:
        - { name: g, capture: { file: busybox-4.cap, guest: ${guest} }, memory: 96MiB${extra} }
    `);

  it('takes a guest of a capture file: its label, the file and the sha-256 of its bytes', () => {
    const s = parseScenario(scenario('mix-b'), 'cap.yaml', images, { readCapture });
    expect(s.guests[0]).toMatchObject({ name: 'g', image: `mix-b (${cap})`, capture: { file: cap, guest: 'mix-b', digest: captureDigest(readFileSync(cap)) }, memoryMiB: 96 });
  });

  it('names a guest the file does not have, RAM smaller than the captured guest, and image with capture', () => {
    const e = (t: string): string => {
      try {
        parseScenario(t, 'cap.yaml', images, { readCapture });
      } catch (x) {
        return (x as Error).message;
      }
      return 'parsed';
    };
    expect(e(scenario('id-9'))).toBe(`cap.yaml:5: guests[0].capture.guest: ${cap} has no guest id-9 (it has id-1, id-2, mix-a, mix-b)`);
    expect(e(scenario('id-1').replace('96MiB', '64MiB'))).toBe(`cap.yaml:5: guests[0].memory: id-1 (${cap}) has 96 MiB of RAM; expected at least that`);
    expect(e(scenario('id-1', ', image: tiny'))).toBe('cap.yaml:5: guests[0].capture: expected image or capture, not both');
    expect(e(scenario('id-1').replace('busybox-4.cap', 'nope.cap'))).toBe('cap.yaml:5: guests[0].capture.file: cannot read capture nope.cap (ENOENT)');
  });
});
