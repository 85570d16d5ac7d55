import { describe, expect, it } from 'vitest';
import { kstrtobool, kstrtoint, kstrtouint, kstrtoull, sysfsStreq } from '../../src/lib/kstrtox.js';

/* lib/kstrtox.c with base 10, as 6.x's KSM stores call it (their files' behaviour is checked against the real ones in test/ksm/sysfs-6.18.test.ts). */

describe('kstrtoull / kstrtouint / kstrtoint', () => {
  it.each([
    ['5', 5n, 5n, 5n],
    ['5\n', 5n, 5n, 5n],
    ['+5', 5n, 5n, 5n],
    ['010', 10n, 10n, 10n],
    ['-5', 'EINVAL', 'EINVAL', -5n],
    ['-0', 'EINVAL', 'EINVAL', 0n],
    ['-+5', 'EINVAL', 'EINVAL', 'EINVAL'],
    [' 5', 'EINVAL', 'EINVAL', 'EINVAL'],
    ['5 ', 'EINVAL', 'EINVAL', 'EINVAL'],
    ['5\n\n', 'EINVAL', 'EINVAL', 'EINVAL'],
    ['0x10', 'EINVAL', 'EINVAL', 'EINVAL'],
    ['', 'EINVAL', 'EINVAL', 'EINVAL'],
    ['\n', 'EINVAL', 'EINVAL', 'EINVAL'],
    ['4294967295', 4294967295n, 4294967295n, 'ERANGE'],
    ['4294967296', 4294967296n, 'ERANGE', 'ERANGE'],
    ['2147483647', 2147483647n, 2147483647n, 2147483647n],
    ['-2147483648', 'EINVAL', 'EINVAL', -2147483648n],
    ['-2147483649', 'EINVAL', 'EINVAL', 'ERANGE'],
    ['18446744073709551615', 18446744073709551615n, 'ERANGE', 'ERANGE'],
    ['18446744073709551616', 'ERANGE', 'ERANGE', 'ERANGE'],
    ['99999999999999999999999', 'ERANGE', 'ERANGE', 'ERANGE'],
  ])('%j: ull %s, uint %s, int %s', (s, ull, uint, int) => {
    expect(kstrtoull(s)).toBe(ull);
    expect(kstrtouint(s)).toBe(uint);
    expect(kstrtoint(s)).toBe(int);
  });
});

describe('kstrtobool', () => {
  it.each([
    ['1', 1n], ['y', 1n], ['Y', 1n], ['t', 1n], ['T', 1n], ['e', 1n], ['E', 1n], ['on', 1n], ['ON', 1n], ['yes please', 1n], ['18446744073709551616', 1n],
    ['0', 0n], ['n', 0n], ['N', 0n], ['f', 0n], ['F', 0n], ['d', 0n], ['D', 0n], ['off', 0n], ['oF', 0n], ['0x10', 0n],
    ['o', 'EINVAL'], ['ox', 'EINVAL'], ['2', 'EINVAL'], ['5', 'EINVAL'], ['-1', 'EINVAL'], [' 1', 'EINVAL'], ['', 'EINVAL'], ['\n', 'EINVAL'],
  ])('%j -> %s', (s, v) => {
    expect(kstrtobool(s)).toBe(v);
  });
});

describe('sysfs_streq', () => {
  it('ignores one trailing newline on either side, nothing else', () => {
    expect(sysfsStreq('none', 'none')).toBe(true);
    expect(sysfsStreq('none', 'none\n')).toBe(true);
    expect(sysfsStreq('none\n', 'none')).toBe(true);
    expect(sysfsStreq('none', 'none\n\n')).toBe(false);
    expect(sysfsStreq('none', ' none')).toBe(false);
    expect(sysfsStreq('none', 'None')).toBe(false);
  });
});
