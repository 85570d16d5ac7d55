import { KernelError, type ErrnoCode } from './errors.js';

/**
 * The one set of argument checks every public entry point uses (Kernel, Process,
 * sysfs, Host, Guest, workloads, scenario runs): a caller's mistake becomes a
 * KernelError with the code Linux would give, before any state changes.
 *
 * Why checks of their own and not a schema library: the scenario files have zod
 * (src/scenario/schema.ts) because a file's problems are reported together, with
 * file:line. A call's argument is one value, refused at once, with Linux's code;
 * and some of these run per call on paths a guest drives page after page (write,
 * pfnOf), where a closure or a parsed copy per call would cost more than the work.
 *
 * Every check returns the value it accepted, narrowed, so a caller writes
 * `const n = checkCount('reclaim: pages', pages)` and uses `n` from then on.
 *
 * The messages say what was expected and what was found; `describe()` formats any
 * value a caller may pass (a Symbol, a BigInt, an object whose toString throws, a
 * Proxy) without ever throwing itself.
 */

/** Linux's MAX_RW_COUNT (INT_MAX & PAGE_MASK): the most one read or write moves. */
export const MAX_RW_COUNT = 0x7ffff000;

/** An unsigned 32-bit value's limit, what sysfs's strict_strtoul knobs and prctl's ints take. */
export const UINT_MAX = 0xffffffff;

/**
 * The most wakeups (ksmd batches, host ticks) one advance() or runFullScans() may
 * need. Linux has no such limit; a simulation has to finish. 10^8 wakeups are 23
 * days of ksmd at sleep_millisecs 20, or 116 days of host ticks at 100 ms: beyond
 * any scenario, and a call that big takes minutes, not for ever.
 */
export const MAX_WAKEUPS_PER_CALL = 100_000_000;

/** A short, safe description of any value: never throws, never calls the value's own code. */
export function describe(v: unknown): string {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
    case 'number':
      return Object.is(v, -0) ? '-0' : String(v);
    case 'bigint':
      return `${String(v)}n (a BigInt)`;
    case 'boolean':
    case 'undefined':
      return String(v);
    case 'symbol':
      return `a Symbol`;
    case 'function':
      return 'a function';
    case 'object': {
      if (v === null) return 'null';
      if (Array.isArray(v)) return `an array of ${v.length}`;
      if (ArrayBuffer.isView(v)) return `a ${Object.prototype.toString.call(v).slice(8, -1)} of ${v.byteLength} bytes`;
      return `an object (${Object.prototype.toString.call(v).slice(8, -1)})`;
    }
    default:
      return 'a value of unknown type';
  }
}

function fail(code: ErrnoCode, what: string, expected: string, v: unknown): never {
  throw new KernelError(code, `${what}: expected ${expected}, found ${describe(v)}`);
}

/**
 * A safe integer in [min, max] (inclusive). EINVAL otherwise; a whole number above
 * `max` is `tooBig` when given (E2BIG for a request larger than the model does,
 * EOVERFLOW for one past what a field holds).
 */
export function checkInt(what: string, v: unknown, min: number, max: number, tooBig: ErrnoCode = 'EINVAL'): number {
  const range = `a whole number from ${min} to ${max}`;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) fail('EINVAL', what, range, v);
  if (v > max || !Number.isSafeInteger(v)) fail(tooBig, what, range, v);
  return v;
}

/** A whole number ≥ 0 (at most `max`, 2^53-1 by default). */
export function checkCount(what: string, v: unknown, max: number = Number.MAX_SAFE_INTEGER, tooBig: ErrnoCode = 'EINVAL'): number {
  return checkInt(what, v, 0, max, tooBig);
}

/** A finite number in [min, max]. */
export function checkFinite(what: string, v: unknown, min: number, max: number = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) fail('EINVAL', what, max === Number.MAX_VALUE ? `a finite number ≥ ${min}` : `a number from ${min} to ${max}`, v);
  return v;
}

/** A user address or length as the mm takes it: a whole number ≥ 0 (else EINVAL). */
export function checkAddr(what: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail('EINVAL', what, 'an address (a whole number ≥ 0)', v);
  return v;
}

/** true or false. */
export function checkBool(what: string, v: unknown): boolean {
  if (typeof v !== 'boolean') fail('EINVAL', what, 'true or false', v);
  return v;
}

/** A string (at most `maxLen` characters), matching `pattern` when given (`patternSays` describes it). */
export function checkString(what: string, v: unknown, maxLen = 4096, pattern: RegExp | null = null, patternSays = ''): string {
  if (typeof v !== 'string') fail('EINVAL', what, 'a string', v);
  if (v.length > maxLen) fail('EINVAL', what, `at most ${maxLen} characters`, v);
  if (pattern !== null && !pattern.test(v)) fail('EINVAL', what, patternSays, v);
  return v;
}

/** One of `choices`. */
export function checkOneOf<T extends string>(what: string, v: unknown, choices: readonly T[]): T {
  if (typeof v !== 'string' || !(choices as readonly string[]).includes(v)) fail('EINVAL', what, `one of ${choices.join(', ')}`, v);
  return v as T;
}

/** A plain record (not null, an array or a view). */
export function checkRecord(what: string, v: unknown): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || ArrayBuffer.isView(v)) fail('EINVAL', what, 'an options record', v);
  return v as Record<string, unknown>;
}

/** An options record or undefined (then `{}`): what `fn(x, opts = {})` takes. */
export function checkOptions(what: string, v: unknown): Record<string, unknown> {
  return v === undefined ? {} : checkRecord(what, v);
}

/** Refuse keys of `rec` not in `known`: a misspelt option would otherwise be silently ignored. */
export function checkKnownKeys(what: string, rec: Record<string, unknown>, known: readonly string[]): void {
  for (const k of Object.keys(rec)) {
    if (!known.includes(k)) throw new KernelError('EINVAL', `${what}: unknown option ${JSON.stringify(k)} (known: ${known.join(', ')})`);
  }
}

/**
 * Any ArrayBufferView, as the bytes it covers: a Uint16Array of 4 elements is 8
 * bytes, in memory order, as write(2) of its address would copy them. A Uint8Array
 * (a Buffer included) comes back as it is, so a caller reusing one Buffer page after
 * page allocates nothing.
 */
export function checkBytes(what: string, v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (!ArrayBuffer.isView(v)) fail('EINVAL', what, 'bytes (a Uint8Array, Buffer or other ArrayBufferView)', v);
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}
