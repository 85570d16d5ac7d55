import { KSM_STATS, type KsmStats } from '../ksm/stats.js';
import { KSM_WORK_FIELDS, type KsmWorkCounts } from '../ksm/work.js';
import { assertNever } from '../lib/errors.js';
import type { GuestSummary, HostSummary, RunEvent, RunResult } from '../scenario/types.js';
import { GUEST_STATES, HOST_EVENT_KINDS, type GuestSample, type HostSample } from '../vmm/types.js';

/**
 * The run file `samepage run --json` writes, and its reader:
 *
 *   {
 *     "format": "samepage-run",
 *     "version": 1,
 *     "samepage": "0.1.0",
 *     "file": "examples/web-fleet.yaml",
 *     "runs": [ RunResult, ... ]
 *   }
 *
 * Keys come in the order the types declare them, whatever order the objects were built
 * in, so two runs with the same seed give the same bytes and files diff well. Both
 * directions go through one description of the types (the SHAPES below), whose mapped
 * types make the compiler insist that it names every field: a field added to RunResult
 * and forgotten here is a type error, not a silently missing key.
 *
 * `version` changes when a field is renamed, removed or changes meaning, or is added
 * (this reader refuses unknown fields, so an older one would refuse the file anyway);
 * readers refuse versions they do not know rather than misread them. Version 2 added
 * the guest states oom-killed and refused, each event's kind and guest, ksmd's work
 * and CPU in samples and summaries, and the convergence figures. Version 3: each run
 * says which kernel it ran (`kernel`), and samples and summaries carry a later
 * kernel's statistics (pages_skipped, ksm_zero_pages, ...) when it has them.
 */

export const RUN_FORMAT = 'samepage-run';
export const RUN_FORMAT_VERSION = 3;

// ---- the shapes ------------------------------------------------------------------------------

type Kind = NumberKind | OptionalNumberKind | NumberOrNullKind | StringKind | BooleanKind | StringOrNullKind | EnumKind | ListKind | ObjectKind;
interface NumberKind { type: 'number' }
/** A number a record may leave out (a KSM statistic the run's kernel does not have). */
interface OptionalNumberKind { type: 'number?' }
interface NumberOrNullKind { type: 'number|null' }
interface StringKind { type: 'string' }
interface BooleanKind { type: 'boolean' }
interface StringOrNullKind { type: 'string|null' }
interface EnumKind { type: 'enum'; values: readonly string[] }
interface ListKind { type: 'list'; of: Shape }
interface ObjectKind { type: 'object'; shape: Shape }
type Shape = Readonly<Record<string, Kind>>;

/**
 * A field per key of T, in T's declaration order (the object literal's order is the
 * file's), each of the kind its type calls for: the compiler rejects a missing, extra
 * or mistyped field.
 */
type ShapeOf<T> = { readonly [K in keyof T]-?: KindFor<T[K]> };
type KindFor<V> = [V] extends [number]
  ? NumberKind
  : [V] extends [number | undefined]
    ? OptionalNumberKind
  : [V] extends [number | null]
    ? NumberOrNullKind
  : [V] extends [boolean]
    ? BooleanKind
    : [V] extends [string]
      ? string extends V
        ? StringKind
        : EnumKind
      : [V] extends [string | null]
        ? StringOrNullKind
        : [V] extends [readonly (infer E)[]]
          ? ListKind & { of: ShapeOf<E> }
          : ObjectKind & { shape: ShapeOf<V> };

const num: NumberKind = { type: 'number' };
const optNum: OptionalNumberKind = { type: 'number?' };
const numOrNull: NumberOrNullKind = { type: 'number|null' };
const str: StringKind = { type: 'string' };
const bool: BooleanKind = { type: 'boolean' };
const strOrNull: StringOrNullKind = { type: 'string|null' };

const guestState: EnumKind = { type: 'enum', values: GUEST_STATES };
const eventKind: EnumKind = { type: 'enum', values: HOST_EVENT_KINDS };

const GUEST_SAMPLE: ShapeOf<GuestSample> = {
  name: str,
  id: str,
  state: guestState,
  ramBytes: num,
  residentBytes: num,
  mergedBytes: num,
  savedBytes: num,
  swapBytes: num,
};

/**
 * Every KSM statistic, in KSM_STATS order: the record a sample and a summary carry.
 * Those a later kernel brought are left out of a run whose kernel lacks them.
 */
const KSM_STATS_SHAPE = Object.fromEntries(KSM_STATS.map((s) => [s.name, s.feature === null ? num : optNum])) as unknown as ShapeOf<KsmStats>;

/** ksmd's work counters, in KSM_WORK_FIELDS order. */
const KSM_WORK_SHAPE = Object.fromEntries(KSM_WORK_FIELDS.map((f) => [f, num])) as ShapeOf<KsmWorkCounts>;

const HOST_SAMPLE: ShapeOf<HostSample> = {
  t: num,
  ...KSM_STATS_SHAPE,
  savedBytes: num,
  totalBytes: num,
  freeBytes: num,
  swapUsedBytes: num,
  run: num,
  pagesToScan: num,
  sleepMillisecs: num,
  work: { type: 'object', shape: KSM_WORK_SHAPE },
  ksmdCpuMs: num,
  ksmdCpu: num,
  guests: { type: 'list', of: GUEST_SAMPLE },
};

const RUN_EVENT: ShapeOf<RunEvent> = {
  t: num,
  kind: eventKind,
  guest: strOrNull,
  what: str,
  error: strOrNull,
};

const GUEST_SUMMARY: ShapeOf<GuestSummary> = {
  name: str,
  image: str,
  state: guestState,
  memMerge: bool,
  ramBytes: num,
  residentBytes: num,
  mergedBytes: num,
  savedBytes: num,
  swapBytes: num,
};

const HOST_SUMMARY: ShapeOf<HostSummary> = {
  ramBytes: num,
  swapBytes: num,
  guestRamBytes: num,
  freeBytes: num,
  swapUsedBytes: num,
  savedBytes: num,
  peakSavedBytes: num,
  peakSavedAt: num,
  saved90At: numOrNull,
  minFreeBytes: num,
  minFreeAt: num,
  ...KSM_STATS_SHAPE,
  work: { type: 'object', shape: KSM_WORK_SHAPE },
  ksmdCpuMs: num,
  ksmdCpuAvg: num,
  ksmdCpuPeak: num,
  ksmdCpuPeakAt: num,
};

const RUN_RESULT: ShapeOf<RunResult> = {
  scenario: str,
  variant: strOrNull,
  policy: str,
  kernel: str,
  seed: num,
  durationMs: num,
  samples: { type: 'list', of: HOST_SAMPLE },
  events: { type: 'list', of: RUN_EVENT },
  guests: { type: 'list', of: GUEST_SUMMARY },
  host: { type: 'object', shape: HOST_SUMMARY },
};

// ---- writing ---------------------------------------------------------------------------------

/**
 * The run file for `results`, pretty-printed with two spaces, ending in a newline.
 * Throws if a result does not fit its type (a NaN, a missing field): such a file could
 * not be read back, and the bug is better found where it was made.
 */
export function toJson(results: readonly RunResult[], meta: { file: string | null; samepageVersion: string }): string {
  const doc = {
    format: RUN_FORMAT,
    version: RUN_FORMAT_VERSION,
    samepage: meta.samepageVersion,
    file: meta.file,
    runs: results.map((r, i) => conform(r, RUN_RESULT, `runs[${i}]`)),
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

// ---- reading ---------------------------------------------------------------------------------

/**
 * Read a run file. Throws an Error that says what is wrong and where: not JSON, not a
 * run file, a version this reader does not know, or a field that is missing, unknown or
 * of the wrong type (`runs[0].samples[3].freeBytes: expected a finite number, got "x"`).
 */
export function parseRunJson(text: string): { runs: RunResult[] } {
  let doc: unknown;
  try {
    doc = JSON.parse(text) as unknown;
  } catch (e) {
    throw new Error(`not a samepage run file: not JSON (${(e as Error).message})`);
  }
  if (!isRecord(doc)) throw new Error(`not a samepage run file: expected a JSON object, got ${describe(doc)}`);
  if (doc.format !== RUN_FORMAT) {
    throw new Error(`not a samepage run file: format is ${describe(doc.format)}, expected ${JSON.stringify(RUN_FORMAT)}`);
  }
  if (doc.version !== RUN_FORMAT_VERSION) {
    throw new Error(`samepage run file version ${describe(doc.version)} is not supported: this reader knows version ${RUN_FORMAT_VERSION}`);
  }
  for (const key of Object.keys(doc)) {
    if (!['format', 'version', 'samepage', 'file', 'runs'].includes(key)) throw new Error(`${key}: unknown field in a samepage run file`);
  }
  if (typeof doc.samepage !== 'string') throw new Error(`samepage: expected a string (the version that wrote the file), got ${describe(doc.samepage)}`);
  if (doc.file !== null && typeof doc.file !== 'string') throw new Error(`file: expected a string or null, got ${describe(doc.file)}`);
  if (!Array.isArray(doc.runs)) throw new Error(`runs: expected a list, got ${describe(doc.runs)}`);
  const runs = doc.runs.map((r: unknown, i: number) => conform(r, RUN_RESULT, `runs[${i}]`) as unknown as RunResult);
  return { runs };
}

// ---- the walk --------------------------------------------------------------------------------

/** A copy of `value` with exactly the shape's keys, in its order; throws naming the first field that does not fit. */
function conform(value: unknown, shape: Shape, path: string): Record<string, unknown> {
  if (!isRecord(value)) throw new Error(`${path}: expected an object, got ${describe(value)}`);
  for (const key of Object.keys(value)) {
    if (!Object.hasOwn(shape, key)) throw new Error(`${path}.${key}: unknown field`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, kind] of Object.entries(shape)) {
    const where = `${path}.${key}`;
    const absent = !Object.hasOwn(value, key) || value[key] === undefined;
    if (absent && kind.type === 'number?') continue;
    if (absent) throw new Error(`${where}: missing`);
    out[key] = conformKind(value[key], kind, where);
  }
  return out;
}

function conformKind(v: unknown, kind: Kind, where: string): unknown {
  switch (kind.type) {
    case 'number':
    case 'number?':
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${where}: expected a finite number, got ${describe(v)}`);
      return v;
    case 'number|null':
      if (v !== null && (typeof v !== 'number' || !Number.isFinite(v))) throw new Error(`${where}: expected a finite number or null, got ${describe(v)}`);
      return v;
    case 'string':
      if (typeof v !== 'string') throw new Error(`${where}: expected a string, got ${describe(v)}`);
      return v;
    case 'boolean':
      if (typeof v !== 'boolean') throw new Error(`${where}: expected true or false, got ${describe(v)}`);
      return v;
    case 'string|null':
      if (v !== null && typeof v !== 'string') throw new Error(`${where}: expected a string or null, got ${describe(v)}`);
      return v;
    case 'enum':
      if (typeof v !== 'string' || !kind.values.includes(v)) throw new Error(`${where}: expected one of ${kind.values.join(', ')}, got ${describe(v)}`);
      return v;
    case 'list':
      if (!Array.isArray(v)) throw new Error(`${where}: expected a list, got ${describe(v)}`);
      return v.map((x: unknown, i: number) => conform(x, kind.of, `${where}[${i}]`));
    case 'object':
      return conform(v, kind.shape, where);
    default:
      return assertNever(kind, 'field kind');
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A value quoted for a message. */
function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return JSON.stringify(v);
}
