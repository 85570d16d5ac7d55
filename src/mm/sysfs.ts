import { KernelError } from '../lib/errors.js';
import { checkString, describe } from '../lib/validate.js';

/**
 * The simulated sysfs and procfs: a registry of files, each a `show` (what a read
 * returns) and, when writable, a `store` that validates and applies a write. Paths
 * are absolute ('/sys/kernel/mm/ksm/run', '/proc/meminfo').
 *
 * Reading an unknown path is ENOENT; writing a file without `store` is EACCES (the
 * 0444 mode of KSM_ATTR_RO files); a file without `show` (write-only, like
 * /proc/sys/vm/compact_memory) reads as EACCES too.
 */
export interface SysfsFile {
  show?: () => string;
  store?: (value: string) => void;
}

/**
 * Files that exist per object, like /proc/<pid>/ksm_stat: a pattern over the path,
 * and the file for a match, or null when there is no such object (ENOENT).
 */
export interface SysfsPattern {
  readonly pattern: RegExp;
  resolve(match: RegExpExecArray): SysfsFile | null;
}

export class Sysfs {
  private readonly files = new Map<string, SysfsFile>();
  private readonly patterns: SysfsPattern[] = [];

  register(path: string, file: SysfsFile): void {
    if (this.files.has(path)) throw new KernelError('EEXIST', `sysfs file ${path} is already registered`);
    this.files.set(path, file);
  }

  /** Files made on lookup, for paths that name an object (a pid). Exact files come first. */
  registerPattern(pattern: RegExp, resolve: (match: RegExpExecArray) => SysfsFile | null): void {
    this.patterns.push({ pattern, resolve });
  }

  private lookup(path: string): SysfsFile | undefined {
    const f = this.files.get(path);
    if (f !== undefined) return f;
    for (const p of this.patterns) {
      const m = p.pattern.exec(path);
      if (m !== null) return p.resolve(m) ?? undefined;
    }
    return undefined;
  }

  unregister(path: string): void {
    this.files.delete(path);
  }

  has(path: string): boolean {
    return this.lookup(path) !== undefined;
  }

  read(path: string): string {
    const f = typeof path === 'string' ? this.lookup(path) : undefined;
    if (f === undefined) throw new KernelError('ENOENT', `no such file: ${describe(path)}`);
    if (f.show === undefined) throw new KernelError('EACCES', `${path} is write-only`);
    return f.show();
  }

  write(path: string, value: string): void {
    const f = typeof path === 'string' ? this.lookup(path) : undefined;
    if (f === undefined) throw new KernelError('ENOENT', `no such file: ${describe(path)}`);
    if (f.store === undefined) throw new KernelError('EACCES', `${path} is read-only`);
    // What write(2) hands a store(): bytes, a page at most (sysfs's buffer is one page).
    f.store(checkString(`${path}: value`, value, 4096));
  }

  /** Every registered path under a directory prefix, sorted: `ls` (files made by a pattern are not listed). */
  list(prefix: string): string[] {
    const dir = prefix.endsWith('/') ? prefix : prefix + '/';
    return [...this.files.keys()].filter((p) => p.startsWith(dir)).sort();
  }
}

export const ULONG_MAX = 18446744073709551615n;
export const UINT_MAX = 4294967295;

/**
 * lib/vsprintf.c strict_strtoul(buf, 10, &val) as of 2.6.33: the whole buffer must be
 * decimal digits, optionally followed by one newline (what `echo` appends). No sign,
 * no blanks, no "0x", no decimals, nothing empty. Values beyond ULONG_MAX are refused
 * too (simple_strtoul would wrap them silently; refusing is the later kstrtoul's
 * behaviour and the only one a user can act on).
 *
 * Returns a bigint so callers can apply their own limit (UINT_MAX for most knobs).
 */
export function strictStrtoul(file: string, buf: string): bigint {
  const s = buf.endsWith('\n') ? buf.slice(0, -1) : buf;
  if (s.length === 0 || !/^[0-9]+$/.test(s)) {
    throw new KernelError('EINVAL', `${file}: expected an unsigned decimal number, got ${describe(buf)}`);
  }
  const v = BigInt(s);
  if (v > ULONG_MAX) {
    throw new KernelError('EINVAL', `${file}: ${s} does not fit in an unsigned long`);
  }
  return v;
}

/** strict_strtoul plus the `> UINT_MAX` check the KSM knobs make. */
export function parseUintKnob(file: string, buf: string, max: number = UINT_MAX): number {
  const v = strictStrtoul(file, buf);
  if (v > BigInt(max)) {
    throw new KernelError('EINVAL', `${file}: ${v} is above the largest accepted value ${max}`);
  }
  return Number(v);
}
