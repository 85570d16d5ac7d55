import { describe, expect, it } from 'vitest';
import { KSM_STATS } from '../../src/ksm/stats.js';
import { parseRunJson, toJson } from '../../src/report/json.js';
import type { RunResult } from '../../src/scenario/types.js';
import { FIXED, SINGLE, TUNED } from './fixtures.js';

const META = { file: 'examples/web-pair.yaml', samepageVersion: '0.1.0' };

/** The same object with its keys in reverse order, all the way down. */
function reversed(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(reversed);
  if (typeof v !== 'object' || v === null) return v;
  return Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reversed(x)]));
}

/** toJson's text with one edit made to the parsed document. */
function edited(edit: (doc: { [k: string]: unknown; runs: Record<string, unknown>[] }) => void): string {
  const doc = JSON.parse(toJson([FIXED], META)) as { [k: string]: unknown; runs: Record<string, unknown>[] };
  edit(doc);
  return JSON.stringify(doc);
}

describe('toJson', () => {
  it('opens with format, version, samepage and file, pretty-printed with two spaces, and ends with a newline', () => {
    const text = toJson([SINGLE], META);
    expect(text.startsWith('{\n  "format": "samepage-run",\n  "version": 3,\n  "samepage": "0.1.0",\n  "file": "examples/web-pair.yaml",\n  "runs": [\n    {\n      "scenario": "web-pair",\n      "variant": null,\n')).toBe(true);
    expect(text.endsWith('\n  ]\n}\n')).toBe(true);
  });

  it('writes file: null for a scenario that came from no file', () => {
    expect(toJson([], { file: null, samepageVersion: '1.2.3' })).toBe('{\n  "format": "samepage-run",\n  "version": 3,\n  "samepage": "1.2.3",\n  "file": null,\n  "runs": []\n}\n');
  });

  it('writes keys in the order the types declare them, whatever order the objects have', () => {
    const text = toJson([FIXED, TUNED], META);
    expect(toJson(reversed([FIXED, TUNED]) as RunResult[], META)).toBe(text);
    const run = (JSON.parse(text) as { runs: Record<string, unknown>[] }).runs[0]!;
    expect(Object.keys(run)).toEqual(['scenario', 'variant', 'policy', 'kernel', 'seed', 'durationMs', 'samples', 'events', 'guests', 'host']);
    // A 2.6.33 run's samples have the statistics every kernel has, and no later kernel's.
    expect(Object.keys((run.samples as object[])[0]!)).toEqual([
      't', ...KSM_STATS.filter((x) => x.feature === null).map((x) => x.name),
      'savedBytes', 'totalBytes', 'freeBytes', 'swapUsedBytes', 'run', 'pagesToScan', 'sleepMillisecs', 'work', 'ksmdCpuMs', 'ksmdCpu', 'guests',
    ]);
    expect(Object.keys((run.samples as { work: object }[])[0]!.work)).toEqual([
      'pagesScanned', 'checksums', 'stableTreeCompares', 'unstableTreeCompares', 'mergeCompares', 'bytesCompared', 'merges', 'unmerges', 'rmapItemsAllocated', 'rmapItemsFreed',
    ]);
    expect(Object.keys((run.events as object[])[0]!)).toEqual(['t', 'kind', 'guest', 'what', 'error']);
    expect(Object.keys(run.host as object)).toEqual([
      'ramBytes', 'swapBytes', 'guestRamBytes', 'freeBytes', 'swapUsedBytes', 'savedBytes', 'peakSavedBytes', 'peakSavedAt', 'saved90At', 'minFreeBytes', 'minFreeAt',
      ...KSM_STATS.filter((x) => x.feature === null).map((x) => x.name), 'work', 'ksmdCpuMs', 'ksmdCpuAvg', 'ksmdCpuPeak', 'ksmdCpuPeakAt',
    ]);
  });

  it('refuses a result that could not be read back, naming the field', () => {
    const bad = { ...FIXED, host: { ...FIXED.host, freeBytes: Number.NaN } };
    expect(() => toJson([FIXED, bad], META)).toThrow('runs[1].host.freeBytes: expected a finite number, got NaN');
    const extra = { ...FIXED, colour: 'red' } as RunResult;
    expect(() => toJson([extra], META)).toThrow('runs[0].colour: unknown field');
  });
});

describe('parseRunJson', () => {
  it('reads back exactly what toJson wrote', () => {
    expect(parseRunJson(toJson([FIXED, TUNED], META))).toEqual({ runs: [FIXED, TUNED] });
    expect(parseRunJson(toJson([SINGLE], { file: null, samepageVersion: 'x' })).runs).toEqual([SINGLE]);
  });

  it('rejects text that is not JSON, or not an object', () => {
    expect(() => parseRunJson('{"format": ')).toThrow(/^not a samepage run file: not JSON/);
    expect(() => parseRunJson('[1, 2]')).toThrow('not a samepage run file: expected a JSON object, got a list');
  });

  it('rejects another format, naming it', () => {
    expect(() => parseRunJson(edited((d) => (d.format = 'samepage-images')))).toThrow('not a samepage run file: format is "samepage-images", expected "samepage-run"');
    expect(() => parseRunJson(edited((d) => delete d.format))).toThrow('not a samepage run file: format is nothing, expected "samepage-run"');
  });

  it('rejects a version it does not know', () => {
    // Version 1 files predate ksmd's work and event kinds; version 2 files, the run's `kernel`.
    expect(() => parseRunJson(edited((d) => (d.version = 1)))).toThrow('samepage run file version 1 is not supported: this reader knows version 3');
    expect(() => parseRunJson(edited((d) => (d.version = 2)))).toThrow('samepage run file version 2 is not supported: this reader knows version 3');
    expect(() => parseRunJson(edited((d) => (d.version = '3')))).toThrow('samepage run file version "3" is not supported');
  });

  it('names a missing, mistyped or unknown field by its path', () => {
    expect(() => parseRunJson(edited((d) => delete (d.runs[0]!.host as Record<string, unknown>).fullScans))).toThrow('runs[0].host.fullScans: missing');
    expect(() => parseRunJson(edited((d) => ((d.runs[0]!.samples as Record<string, unknown>[])[3]!.freeBytes = 'x')))).toThrow(
      'runs[0].samples[3].freeBytes: expected a finite number, got "x"',
    );
    expect(() => parseRunJson(edited((d) => ((d.runs[0]!.guests as Record<string, unknown>[])[1]!.state = 'sleeping')))).toThrow(
      'runs[0].guests[1].state: expected one of created, booting, running, paused, stopped, oom-killed, refused, destroyed, got "sleeping"',
    );
    expect(() => parseRunJson(edited((d) => ((d.runs[0]!.events as Record<string, unknown>[])[0]!.kind = 'rumour')))).toThrow(
      'runs[0].events[0].kind: expected one of action, guest, oom-kill, refused, governor, governor-idle, got "rumour"',
    );
    expect(() => parseRunJson(edited((d) => ((d.runs[0]!.host as Record<string, unknown>).saved90At = 'soon')))).toThrow('runs[0].host.saved90At: expected a finite number or null, got "soon"');
    expect(() => parseRunJson(edited((d) => ((d.runs[0]!.events as Record<string, unknown>[])[0]!.error = 5)))).toThrow('runs[0].events[0].error: expected a string or null, got 5');
    expect(() => parseRunJson(edited((d) => (d.runs[0]!.samples = {})))).toThrow('runs[0].samples: expected a list, got an object');
    expect(() => parseRunJson(edited((d) => (d.runs[0]!.extra = 1)))).toThrow('runs[0].extra: unknown field');
    expect(() => parseRunJson(edited((d) => (d.comment = 'hi')))).toThrow('comment: unknown field in a samepage run file');
    expect(() => parseRunJson(edited((d) => ((d as Record<string, unknown>).runs = null)))).toThrow('runs: expected a list, got null');
  });
});
