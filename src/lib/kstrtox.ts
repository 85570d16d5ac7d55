/**
 * lib/kstrtox.c and lib/string.c sysfs_streq(), as Linux 6.x parses what is written
 * to a sysfs file (base 10 only: every KSM store passes 10). Each returns the value,
 * or the errno the kernel function returns; the caller decides what its store()
 * makes of it (most KSM stores turn any error into EINVAL; max_page_sharing and
 * merge_across_nodes pass ERANGE on). Values are bigints: an unsigned long reads
 * back exactly.
 *
 * Checked against the real files of the development machine: test/ksm/
 * sysfs-6.18.test.ts lists what each write gives there.
 */

/** A parse: the value, or the errno (EINVAL: not a number; ERANGE: too big for the type). */
export type KstrtoxResult = bigint | 'EINVAL' | 'ERANGE';

const ULLONG_MAX = (1n << 64n) - 1n;
const UINT_MAX = (1n << 32n) - 1n;
const LLONG_MAX = (1n << 63n) - 1n;
const INT_MAX = (1n << 31n) - 1n;
const INT_MIN = -(1n << 31n);

/**
 * _kstrtoull(s, 10): decimal digits (at least one), then at most one '\n', then
 * nothing. No sign. ERANGE past ULLONG_MAX (_parse_integer's overflow flag).
 */
function kstrtoullNoSign(s: string): KstrtoxResult {
  let i = 0;
  let v = 0n;
  let overflow = false;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) break;
    v = v * 10n + BigInt(c - 0x30);
    if (v > ULLONG_MAX) overflow = true;
    i++;
  }
  if (overflow) return 'ERANGE';
  if (i === 0) return 'EINVAL';
  if (s.charCodeAt(i) === 0x0a) i++;
  if (i !== s.length) return 'EINVAL';
  return v;
}

/** kstrtoull(s, 10, &res) (kstrtoul on 64-bit): an optional leading '+'. */
export function kstrtoull(s: string): KstrtoxResult {
  return kstrtoullNoSign(s.startsWith('+') ? s.slice(1) : s);
}

/** kstrtouint(s, 10, &res): kstrtoull, ERANGE above UINT_MAX. */
export function kstrtouint(s: string): KstrtoxResult {
  const v = kstrtoull(s);
  if (typeof v !== 'bigint') return v;
  return v > UINT_MAX ? 'ERANGE' : v;
}

/**
 * kstrtoint(s, 10, &res): kstrtoll ('-' then digits, or kstrtoull), ERANGE outside
 * int. Note the kernel's asymmetry, kept: after a '-', no '+' is allowed.
 */
export function kstrtoint(s: string): KstrtoxResult {
  let v: bigint;
  if (s.startsWith('-')) {
    const u = kstrtoullNoSign(s.slice(1));
    if (typeof u !== 'bigint') return u;
    if (u > LLONG_MAX + 1n) return 'ERANGE';
    v = -u;
  } else {
    const u = kstrtoull(s);
    if (typeof u !== 'bigint') return u;
    if (u > LLONG_MAX) return 'ERANGE';
    v = u;
  }
  return v > INT_MAX || v < INT_MIN ? 'ERANGE' : v;
}

/**
 * kstrtobool(s, &res): the first character decides: 1 y Y t T e E true, 0 n N f F
 * d D false; "on"/"oN"... true and "of…" false by the second. Anything else EINVAL.
 * (So "0x10" is false and "18446744073709551616" true, as on the real files.)
 */
export function kstrtobool(s: string): KstrtoxResult {
  switch (s.charAt(0)) {
    case '1':
    case 'y':
    case 'Y':
    case 't':
    case 'T':
    case 'e':
    case 'E':
      return 1n;
    case '0':
    case 'n':
    case 'N':
    case 'f':
    case 'F':
    case 'd':
    case 'D':
      return 0n;
    case 'o':
    case 'O':
      switch (s.charAt(1)) {
        case 'n':
        case 'N':
          return 1n;
        case 'f':
        case 'F':
          return 0n;
        default:
          return 'EINVAL';
      }
    default:
      return 'EINVAL';
  }
}

/** sysfs_streq(s1, s2): equal, ignoring one trailing newline on either. */
export function sysfsStreq(s1: string, s2: string): boolean {
  const a = s1.endsWith('\n') ? s1.slice(0, -1) : s1;
  const b = s2.endsWith('\n') ? s2.slice(0, -1) : s2;
  return a === b;
}
