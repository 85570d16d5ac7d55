import { LineCounter, isMap, isNode, isPair, isScalar, parseDocument, visit, type Document } from 'yaml';
import { z } from 'zod';

/**
 * Configuration files (guest image descriptors, scenarios): YAML or JSON text,
 * parsed with `yaml` (JSON is YAML 1.2, so one parser serves both and keeps line
 * numbers for both), validated with a zod schema. Every problem is reported with
 * the file, the line, the field's path and what was expected:
 *
 *   guests/fedora-13.yaml:14: regions[2].size: expected a size like '64MiB' or '25%', got "lots"
 *
 * Parsing is pure: the caller reads the file and passes its text and name.
 */

export interface ConfigProblem {
  /** 1-based line, or 0 when the problem is not tied to a place in the file. */
  line: number;
  /** The field's path, like `guests[0].memory`; '' for the whole document. */
  field: string;
  message: string;
}

/** A configuration file that cannot be used: every problem found, in file order. */
export class ConfigError extends Error {
  readonly file: string;
  readonly problems: ConfigProblem[];

  constructor(file: string, problems: ConfigProblem[]) {
    super(problems.map((p) => formatProblem(file, p)).join('\n'));
    this.name = 'ConfigError';
    this.file = file;
    this.problems = problems;
  }
}

function formatProblem(file: string, p: ConfigProblem): string {
  const where = p.line > 0 ? `${file}:${p.line}` : file;
  return p.field === '' ? `${where}: ${p.message}` : `${where}: ${p.field}: ${p.message}`;
}

/** `a.b[2].c` from a zod/yaml path. */
function fieldName(path: readonly PropertyKey[]): string {
  let s = '';
  for (const k of path) {
    if (typeof k === 'number') s += `[${k}]`;
    else s += s === '' ? String(k) : `.${String(k)}`;
  }
  return s;
}

/** A parsed document that can say on which line any path lies. */
export class ConfigDocument {
  readonly file: string;
  readonly doc: Document.Parsed;
  private readonly lines: LineCounter;

  private constructor(file: string, doc: Document.Parsed, lines: LineCounter) {
    this.file = file;
    this.doc = doc;
    this.lines = lines;
  }

  /** Parse YAML or JSON text; syntax errors become a ConfigError. */
  static parse(text: string, file: string): ConfigDocument {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
    if (doc.errors.length > 0) {
      throw new ConfigError(
        file,
        doc.errors.map((e) => ({
          line: e.linePos?.[0]?.line ?? lines.linePos(e.pos[0]).line,
          field: '',
          message: `not valid YAML or JSON: ${e.message.split('\n')[0]!}`,
        })),
      );
    }
    return new ConfigDocument(file, doc, lines);
  }

  /**
   * The plain value of the document. An alias to no anchor (`*x` before or without
   * `&x`), or aliases that expand past 100 nodes (a "billion laughs" file), are the
   * file's problems: ConfigError at the first alias's line, not yaml's ReferenceError.
   */
  value(): unknown {
    try {
      return this.doc.toJS({ maxAliasCount: 100 }) as unknown;
    } catch (e) {
      if (!(e instanceof ReferenceError)) throw e;
      let line = 0;
      let unresolved = '';
      visit(this.doc, {
        Alias: (_key, node) => {
          if (node.resolve(this.doc) === undefined && unresolved === '') {
            unresolved = node.source;
            line = this.nodeLine(node);
            return visit.BREAK;
          }
          if (line === 0) line = this.nodeLine(node);
          return undefined;
        },
      });
      const message = unresolved !== ''
        ? `not valid YAML or JSON: alias *${unresolved} refers to no anchor &${unresolved} before it`
        : 'not valid YAML or JSON: its aliases expand to more than 100 nodes (a resource exhaustion attack, or a file too clever by half)';
      throw new ConfigError(this.file, [{ line, field: '', message }]);
    }
  }

  /**
   * The line of the node at `path` (the key's line for a key of a map), or of the
   * nearest ancestor that exists; 0 for an empty document.
   */
  lineOf(path: readonly PropertyKey[], key?: string): number {
    let node: unknown = this.doc.contents;
    let line = this.nodeLine(node);
    for (const k of path) {
      if (!isNode(node)) break;
      const child: unknown = (node as { get?: (k: unknown, keepScalar: boolean) => unknown }).get?.(k, true);
      const keyLine = isMap(node) ? this.keyLine(node, k) : 0;
      if (child === undefined || child === null) {
        if (keyLine > 0) line = keyLine;
        break;
      }
      node = child;
      const l = keyLine > 0 && !isScalar(child) ? keyLine : this.nodeLine(child);
      if (l > 0) line = l;
    }
    if (key !== undefined && isMap(node)) {
      const l = this.keyLine(node, key);
      if (l > 0) line = l;
    }
    return line;
  }

  private keyLine(map: unknown, key: PropertyKey): number {
    if (!isMap(map)) return 0;
    for (const pair of map.items) {
      if (!isPair(pair)) continue;
      const k = pair.key;
      const name = isScalar(k) ? k.value : k;
      if (name === key || String(name) === String(key)) return this.nodeLine(k);
    }
    return 0;
  }

  private nodeLine(node: unknown): number {
    if (!isNode(node) || node.range === undefined || node.range === null) return 0;
    return this.lines.linePos(node.range[0]).line;
  }

  /** Validate against a zod schema; throws ConfigError listing every problem. */
  validate<S extends z.ZodType>(schema: S): z.output<S> {
    const value = this.value();
    const r = schema.safeParse(value);
    if (r.success) return r.data;
    throw new ConfigError(this.file, this.problems(r.error.issues, value, []));
  }

  /**
   * Validate the part of the document at `path`, adding its problems to `out`: the
   * value, or null when it is not valid. Validating part by part lets a caller go on
   * and check what it can of the rest, so every problem is reported in one pass.
   */
  check<S extends z.ZodType>(schema: S, path: readonly PropertyKey[], out: ConfigProblem[], root: unknown = this.value()): { value: z.output<S> } | null {
    const r = schema.safeParse(valueAt(root, path));
    if (r.success) return { value: r.data };
    out.push(...this.problems(r.error.issues, root, path));
    return null;
  }

  /**
   * Validate a map field by field against an object schema: unknown keys and bad fields
   * go to `out`, and the fields that are valid come back (a bad one is left out, a
   * missing one gets its default); null when the value is not a map at all.
   */
  fields<T extends z.ZodRawShape>(schema: z.ZodObject<T>, path: readonly PropertyKey[], out: ConfigProblem[], root: unknown = this.value()): { [K in keyof T]?: z.output<T[K]> } | null {
    const v = valueAt(root, path);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      this.check(schema, path, out, root);
      return null;
    }
    const result: Record<string, unknown> = {};
    // Fields in the schema's order, then unknown keys: the order zod reports them in.
    for (const [key, field] of Object.entries(schema.shape)) {
      const r = this.check(field as z.ZodType, [...path, key], out, root);
      if (r !== null && r.value !== undefined) result[key] = r.value;
    }
    for (const key of Object.keys(v)) {
      if (!Object.hasOwn(schema.shape, key)) out.push({ line: this.lineOf(path, key), field: fieldName([...path, key]), message: 'unknown field (misspelt?)' });
    }
    return result as { [K in keyof T]?: z.output<T[K]> };
  }

  /** A problem found after validation (a cross-field check), placed at `path`. */
  problem(path: readonly PropertyKey[], message: string): ConfigProblem {
    return { line: this.lineOf(path), field: fieldName(path), message };
  }

  private problems(issues: readonly z.core.$ZodIssue[], value: unknown, prefix: readonly PropertyKey[]): ConfigProblem[] {
    const out: ConfigProblem[] = [];
    for (const issue of issues) {
      const path = [...prefix, ...issue.path];
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) {
          out.push({
            line: this.lineOf(path, key),
            field: fieldName([...path, key]),
            message: 'unknown field (misspelt?)',
          });
        }
        continue;
      }
      const missing = issue.code === 'invalid_type' && valueAt(value, path) === undefined;
      out.push({
        line: this.lineOf(path),
        field: fieldName(path),
        message: missing ? `missing (expected ${issue.expected})` : issueMessage(issue),
      });
    }
    out.sort((a, b) => a.line - b.line);
    return out;
  }
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let v = value;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function issueMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_union' && issue.errors.length > 0) {
    // The branch that got furthest says the most.
    const best = issue.errors.reduce((a, b) => (b.length < a.length ? b : a));
    const first = best[0];
    if (first !== undefined) return issueMessage(first);
  }
  const m = issue.message.replace(/^Invalid input: /, '');
  return m;
}

// ---- units ---------------------------------------------------------------------------------

const SIZE_UNITS: Record<string, number> = {
  B: 1,
  K: 1024,
  KB: 1024,
  KIB: 1024,
  M: 1024 ** 2,
  MB: 1024 ** 2,
  MIB: 1024 ** 2,
  G: 1024 ** 3,
  GB: 1024 ** 3,
  GIB: 1024 ** 3,
  T: 1024 ** 4,
  TB: 1024 ** 4,
  TIB: 1024 ** 4,
};

/** '512MiB', '2 GiB', '4096B' → bytes (binary units; MB means MiB, as QEMU's -m does). null if not a size. */
export function parseSize(s: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$/.exec(s);
  if (m === null) return null;
  const unit = SIZE_UNITS[m[2]!.toUpperCase()];
  if (unit === undefined) return null;
  const v = Number(m[1]) * unit;
  return Number.isSafeInteger(v) ? v : null;
}

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  min: 60_000,
  m: 60_000,
  h: 3_600_000,
};

/** '250ms', '10s', '5min', '1h 30min' → milliseconds. null if not a duration. */
export function parseDuration(s: string): number | null {
  const parts = s.trim().split(/\s+/);
  if (parts.length === 0 || parts[0] === '') return null;
  let total = 0;
  for (const part of parts) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|sec|min|m|h)$/.exec(part);
    if (m === null) return null;
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
  }
  return Number.isFinite(total) ? Math.round(total) : null;
}

/** Format bytes with a binary unit, as the reports print them. */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const s = i === 0 ? String(v) : Number.isInteger(v) ? String(v) : v.toFixed(1);
  return `${s} ${units[i]!}`;
}

/** Format milliseconds of simulated time: '0s', '90s' → '1min 30s', '250ms'. */
export function formatDuration(ms: number): string {
  if (ms < 1000 && ms !== 0) return `${ms}ms`;
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const min = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const rest = ms % 1000;
  const parts: string[] = [];
  if (h > 0) parts.push(`${h}h`);
  if (min > 0) parts.push(`${min}min`);
  if (s > 0 || parts.length === 0) parts.push(rest > 0 ? `${s}.${String(rest).padStart(3, '0').replace(/0+$/, '')}s` : `${s}s`);
  return parts.join(' ');
}

// ---- zod building blocks -------------------------------------------------------------------

/**
 * A size in bytes, as a scenario takes it: a string with a binary unit ('512MiB',
 * '2G'), or a bare number of MiB, as QEMU's `-m 2048` reads one (a number as a
 * string, "2048", too). The result must be a whole number of bytes.
 */
const SIZE_MIB_EXPECTED = (i: { input?: unknown }): string => `expected a size like '512MiB' or a number of MiB, got ${describe(i.input)}`;
export const zSizeMiB = z.union([z.number({ error: SIZE_MIB_EXPECTED }), z.string({ error: SIZE_MIB_EXPECTED })], { error: SIZE_MIB_EXPECTED }).transform((v, ctx) => {
  const bytes = typeof v === 'number' || /^\s*\d+(\.\d+)?\s*$/.test(v) ? Number(v) * 1024 * 1024 : parseSize(v);
  if (bytes === null || !Number.isSafeInteger(bytes) || bytes < 0) {
    ctx.addIssue({ code: 'custom', message: `expected a size like '512MiB' or a number of MiB, got ${describe(v)}` });
    return z.NEVER;
  }
  return bytes;
});

/** A size in bytes: a string with a binary unit ('512MiB'). */
export const zSize = z.string({ error: (i) => `expected a size like '512MiB', got ${describe(i.input)}` }).transform((s, ctx) => {
  const v = parseSize(s);
  if (v === null) {
    ctx.addIssue({ code: 'custom', message: `expected a size like '512MiB', got ${describe(s)}` });
    return z.NEVER;
  }
  return v;
});

/** A duration in ms: a string with a unit ('10s', '5min', '1min 30s'). */
/**
 * The longest duration a file may give: 100 days. Simulated time is exact to 2^53
 * ms, but a run must also finish: 100 days are 86 million host ticks of 100 ms,
 * within what one advance() takes (MAX_WAKEUPS_PER_CALL, src/lib/validate.ts).
 */
export const MAX_DURATION_MS = 100 * 24 * 3600 * 1000;

export const zDuration = z.string({ error: (i) => `expected a duration like '10s' or '5min', got ${describe(i.input)}` }).transform((s, ctx) => {
  const v = parseDuration(s);
  if (v === null) {
    ctx.addIssue({ code: 'custom', message: `expected a duration like '10s' or '5min', got ${describe(s)}` });
    return z.NEVER;
  }
  if (v > MAX_DURATION_MS) {
    ctx.addIssue({ code: 'custom', message: `expected a duration of at most 100 days, got ${describe(s)}` });
    return z.NEVER;
  }
  return v;
});

/** A fraction in [0, 1]. Every message says what it got: "1.5" tells where the typo is. */
const fractionError = (i: { input?: unknown }): string => `expected a fraction between 0 and 1, got ${describe(i.input)}`;
export const zFraction = z.number({ error: fractionError }).min(0, { error: fractionError }).max(1, { error: fractionError });

/** An integer ≥ min (0 by default); every refusal says the same range. */
export function zCount(what = 'a whole number', min = 0): z.ZodNumber {
  const range = `expected ${what} (${min} or more)`;
  return z.number({ error: (i) => `${range}, got ${describe(i.input)}` }).int({ error: (i) => `${range}, got ${describe(i.input)}` }).min(min, { error: (i) => `${range}, got ${describe(i.input)}` });
}

/** A value quoted for a message: strings in quotes, others as JSON. */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  return String(v);
}
