/**
 * The 6.18 profile's files under /sys/kernel/mm/ksm, checked write by write against
 * the real files of the development machine (Linux 6.18): every knob was written
 * the same 23 or 24 values in this order, and after each write the result (ok or
 * the errno) and what the file then read were recorded (a C program under the
 * real-KSM lock; the knobs restored after). The model must give the same, in order.
 */
import { describe, expect, it } from 'vitest';
import { Kernel, PAGE_SIZE } from '../../src/index.js';
import { PROFILE_6_18 } from '../../src/ksm/profile.js';
import { KSM_DIR, errnoOf } from './helpers.js';

type Result = 'ok' | 'EINVAL' | 'ERANGE';

/** Per knob: [written, result, what the file reads after]. Recorded on the real 6.18. */
const REAL_6_18: Record<string, [string, Result, string][]> = {
  pages_to_scan: [["5", "ok", "5"], ["5\n", "ok", "5"], ["+5", "ok", "5"], ["-5", "EINVAL", "5"], [" 5", "EINVAL", "5"], ["5 ", "EINVAL", "5"], ["0x10", "EINVAL", "5"], ["010", "ok", "10"], ["4294967295", "ok", "4294967295"], ["4294967296", "EINVAL", "4294967295"], ["2147483647", "ok", "2147483647"], ["2147483648", "ok", "2147483648"], ["18446744073709551615", "EINVAL", "2147483648"], ["18446744073709551616", "EINVAL", "2147483648"], ["", "ok", "2147483648"], ["\n", "EINVAL", "2147483648"], ["y", "EINVAL", "2147483648"], ["Y", "EINVAL", "2147483648"], ["n", "EINVAL", "2147483648"], ["on", "EINVAL", "2147483648"], ["off", "EINVAL", "2147483648"], ["1\n", "ok", "1"], ["2", "ok", "2"], ["abc", "EINVAL", "2"]],
  sleep_millisecs: [["5", "ok", "5"], ["5\n", "ok", "5"], ["+5", "ok", "5"], ["-5", "EINVAL", "5"], [" 5", "EINVAL", "5"], ["5 ", "EINVAL", "5"], ["0x10", "EINVAL", "5"], ["010", "ok", "10"], ["4294967295", "ok", "4294967295"], ["4294967296", "EINVAL", "4294967295"], ["2147483647", "ok", "2147483647"], ["2147483648", "ok", "2147483648"], ["18446744073709551615", "EINVAL", "2147483648"], ["18446744073709551616", "EINVAL", "2147483648"], ["", "ok", "2147483648"], ["\n", "EINVAL", "2147483648"], ["y", "EINVAL", "2147483648"], ["Y", "EINVAL", "2147483648"], ["n", "EINVAL", "2147483648"], ["on", "EINVAL", "2147483648"], ["off", "EINVAL", "2147483648"], ["1\n", "ok", "1"], ["2", "ok", "2"], ["abc", "EINVAL", "2"]],
  max_page_sharing: [["5", "ok", "5"], ["5\n", "ok", "5"], ["+5", "ok", "5"], ["-5", "EINVAL", "5"], [" 5", "EINVAL", "5"], ["5 ", "EINVAL", "5"], ["0x10", "EINVAL", "5"], ["010", "ok", "10"], ["4294967295", "ERANGE", "10"], ["4294967296", "ERANGE", "10"], ["2147483647", "ok", "2147483647"], ["2147483648", "ERANGE", "2147483647"], ["18446744073709551615", "ERANGE", "2147483647"], ["18446744073709551616", "ERANGE", "2147483647"], ["", "ok", "2147483647"], ["\n", "EINVAL", "2147483647"], ["y", "EINVAL", "2147483647"], ["Y", "EINVAL", "2147483647"], ["n", "EINVAL", "2147483647"], ["on", "EINVAL", "2147483647"], ["off", "EINVAL", "2147483647"], ["1\n", "EINVAL", "2147483647"], ["2", "ok", "2"], ["abc", "EINVAL", "2"]],
  stable_node_chains_prune_millisecs: [["5", "ok", "5"], ["5\n", "ok", "5"], ["+5", "ok", "5"], ["-5", "EINVAL", "5"], [" 5", "EINVAL", "5"], ["5 ", "EINVAL", "5"], ["0x10", "EINVAL", "5"], ["010", "ok", "10"], ["4294967295", "ok", "4294967295"], ["4294967296", "EINVAL", "4294967295"], ["2147483647", "ok", "2147483647"], ["2147483648", "ok", "2147483648"], ["18446744073709551615", "EINVAL", "2147483648"], ["18446744073709551616", "EINVAL", "2147483648"], ["", "ok", "2147483648"], ["\n", "EINVAL", "2147483648"], ["y", "EINVAL", "2147483648"], ["Y", "EINVAL", "2147483648"], ["n", "EINVAL", "2147483648"], ["on", "EINVAL", "2147483648"], ["off", "EINVAL", "2147483648"], ["1\n", "ok", "1"], ["2", "ok", "2"], ["abc", "EINVAL", "2"]],
  use_zero_pages: [["5", "EINVAL", "0"], ["5\n", "EINVAL", "0"], ["+5", "EINVAL", "0"], ["-5", "EINVAL", "0"], [" 5", "EINVAL", "0"], ["5 ", "EINVAL", "0"], ["0x10", "ok", "0"], ["010", "ok", "0"], ["4294967295", "EINVAL", "0"], ["4294967296", "EINVAL", "0"], ["2147483647", "EINVAL", "0"], ["2147483648", "EINVAL", "0"], ["18446744073709551615", "ok", "1"], ["18446744073709551616", "ok", "1"], ["", "ok", "1"], ["\n", "EINVAL", "1"], ["y", "ok", "1"], ["Y", "ok", "1"], ["n", "ok", "0"], ["on", "ok", "1"], ["off", "ok", "0"], ["1\n", "ok", "1"], ["2", "EINVAL", "1"], ["abc", "EINVAL", "1"]],
  merge_across_nodes: [["5", "EINVAL", "1"], ["5\n", "EINVAL", "1"], ["+5", "EINVAL", "1"], ["-5", "EINVAL", "1"], [" 5", "EINVAL", "1"], ["5 ", "EINVAL", "1"], ["0x10", "EINVAL", "1"], ["010", "EINVAL", "1"], ["4294967295", "EINVAL", "1"], ["4294967296", "EINVAL", "1"], ["2147483647", "EINVAL", "1"], ["2147483648", "EINVAL", "1"], ["18446744073709551615", "EINVAL", "1"], ["18446744073709551616", "ERANGE", "1"], ["", "ok", "1"], ["\n", "EINVAL", "1"], ["y", "EINVAL", "1"], ["Y", "EINVAL", "1"], ["n", "EINVAL", "1"], ["on", "EINVAL", "1"], ["off", "EINVAL", "1"], ["1\n", "ok", "1"], ["2", "EINVAL", "1"], ["abc", "EINVAL", "1"]],
  smart_scan: [["5", "EINVAL", "1"], ["5\n", "EINVAL", "1"], ["+5", "EINVAL", "1"], ["-5", "EINVAL", "1"], [" 5", "EINVAL", "1"], ["5 ", "EINVAL", "1"], ["0x10", "ok", "0"], ["010", "ok", "0"], ["4294967295", "EINVAL", "0"], ["4294967296", "EINVAL", "0"], ["2147483647", "EINVAL", "0"], ["2147483648", "EINVAL", "0"], ["18446744073709551615", "ok", "1"], ["18446744073709551616", "ok", "1"], ["", "ok", "1"], ["\n", "EINVAL", "1"], ["y", "ok", "1"], ["Y", "ok", "1"], ["n", "ok", "0"], ["on", "ok", "1"], ["off", "ok", "0"], ["1\n", "ok", "1"], ["2", "EINVAL", "1"], ["abc", "EINVAL", "1"]],
  advisor_max_cpu: [["5", "ok", "5"], ["5\n", "ok", "5"], ["+5", "ok", "5"], ["-5", "EINVAL", "5"], [" 5", "EINVAL", "5"], ["5 ", "EINVAL", "5"], ["0x10", "EINVAL", "5"], ["010", "ok", "10"], ["4294967295", "ok", "4294967295"], ["4294967296", "ok", "0"], ["2147483647", "ok", "2147483647"], ["2147483648", "ok", "2147483648"], ["18446744073709551615", "ok", "4294967295"], ["18446744073709551616", "EINVAL", "4294967295"], ["", "ok", "4294967295"], ["\n", "EINVAL", "4294967295"], ["y", "EINVAL", "4294967295"], ["Y", "EINVAL", "4294967295"], ["n", "EINVAL", "4294967295"], ["on", "EINVAL", "4294967295"], ["off", "EINVAL", "4294967295"], ["1\n", "ok", "1"], ["2", "ok", "2"], ["abc", "EINVAL", "2"]],
  advisor_min_pages_to_scan: [["5", "ok", "5"], ["5\n", "ok", "5"], ["+5", "ok", "5"], ["-5", "EINVAL", "5"], [" 5", "EINVAL", "5"], ["5 ", "EINVAL", "5"], ["0x10", "EINVAL", "5"], ["010", "ok", "10"], ["4294967295", "ok", "4294967295"], ["4294967296", "ok", "4294967296"], ["2147483647", "ok", "2147483647"], ["2147483648", "ok", "2147483648"], ["18446744073709551615", "ok", "18446744073709551615"], ["18446744073709551616", "EINVAL", "18446744073709551615"], ["", "ok", "18446744073709551615"], ["\n", "EINVAL", "18446744073709551615"], ["y", "EINVAL", "18446744073709551615"], ["Y", "EINVAL", "18446744073709551615"], ["n", "EINVAL", "18446744073709551615"], ["on", "EINVAL", "18446744073709551615"], ["off", "EINVAL", "18446744073709551615"], ["1\n", "ok", "1"], ["2", "ok", "2"], ["abc", "EINVAL", "2"]],
  advisor_max_pages_to_scan: [["5", "ok", "5"], ["5\n", "ok", "5"], ["+5", "ok", "5"], ["-5", "EINVAL", "5"], [" 5", "EINVAL", "5"], ["5 ", "EINVAL", "5"], ["0x10", "EINVAL", "5"], ["010", "ok", "10"], ["4294967295", "ok", "4294967295"], ["4294967296", "ok", "4294967296"], ["2147483647", "ok", "2147483647"], ["2147483648", "ok", "2147483648"], ["18446744073709551615", "ok", "18446744073709551615"], ["18446744073709551616", "EINVAL", "18446744073709551615"], ["", "ok", "18446744073709551615"], ["\n", "EINVAL", "18446744073709551615"], ["y", "EINVAL", "18446744073709551615"], ["Y", "EINVAL", "18446744073709551615"], ["n", "EINVAL", "18446744073709551615"], ["on", "EINVAL", "18446744073709551615"], ["off", "EINVAL", "18446744073709551615"], ["1\n", "ok", "1"], ["2", "ok", "2"], ["abc", "EINVAL", "2"]],
  advisor_target_scan_time: [["5", "ok", "5"], ["5\n", "ok", "5"], ["+5", "ok", "5"], ["-5", "EINVAL", "5"], [" 5", "EINVAL", "5"], ["5 ", "EINVAL", "5"], ["0x10", "EINVAL", "5"], ["010", "ok", "10"], ["4294967295", "ok", "4294967295"], ["4294967296", "ok", "4294967296"], ["2147483647", "ok", "2147483647"], ["2147483648", "ok", "2147483648"], ["18446744073709551615", "ok", "18446744073709551615"], ["18446744073709551616", "EINVAL", "18446744073709551615"], ["", "ok", "18446744073709551615"], ["\n", "EINVAL", "18446744073709551615"], ["y", "EINVAL", "18446744073709551615"], ["Y", "EINVAL", "18446744073709551615"], ["n", "EINVAL", "18446744073709551615"], ["on", "EINVAL", "18446744073709551615"], ["off", "EINVAL", "18446744073709551615"], ["1\n", "ok", "1"], ["2", "ok", "2"], ["abc", "EINVAL", "2"]],
  run: [["5", "EINVAL", "0"], ["5\n", "EINVAL", "0"], ["+5", "EINVAL", "0"], ["-5", "EINVAL", "0"], [" 5", "EINVAL", "0"], ["5 ", "EINVAL", "0"], ["0x10", "EINVAL", "0"], ["010", "EINVAL", "0"], ["4294967295", "EINVAL", "0"], ["4294967296", "EINVAL", "0"], ["2147483647", "EINVAL", "0"], ["2147483648", "EINVAL", "0"], ["18446744073709551615", "EINVAL", "0"], ["18446744073709551616", "EINVAL", "0"], ["", "ok", "0"], ["\n", "EINVAL", "0"], ["n", "EINVAL", "0"], ["off", "EINVAL", "0"], ["abc", "EINVAL", "0"]],
};

function newKernel618(): Kernel {
  return new Kernel({ memoryMiB: 64, blockMiB: 16, version: '6.18' });
}

function write(k: Kernel, file: string, value: string): string {
  try {
    k.sysfs.write(`${KSM_DIR}/${file}`, value);
    return 'ok';
  } catch (e) {
    return errnoOf(() => {
      throw e;
    }) ?? 'not a KernelError';
  }
}

const read = (k: Kernel, file: string): string => k.sysfs.read(`${KSM_DIR}/${file}`).replace(/\n$/, '');

describe('Linux 6.18: /sys/kernel/mm/ksm', () => {
  it("has exactly 6.18's files: 13 knobs, 11 statistics, no max_kernel_pages", () => {
    const k = newKernel618();
    expect(k.version).toBe('6.18');
    expect(k.sysfs.list(KSM_DIR).map((p) => p.slice(KSM_DIR.length + 1))).toEqual([
      'advisor_max_cpu',
      'advisor_max_pages_to_scan',
      'advisor_min_pages_to_scan',
      'advisor_mode',
      'advisor_target_scan_time',
      'full_scans',
      'general_profit',
      'ksm_zero_pages',
      'max_page_sharing',
      'merge_across_nodes',
      'pages_scanned',
      'pages_shared',
      'pages_sharing',
      'pages_skipped',
      'pages_to_scan',
      'pages_unshared',
      'pages_volatile',
      'run',
      'sleep_millisecs',
      'smart_scan',
      'stable_node_chains',
      'stable_node_chains_prune_millisecs',
      'stable_node_dups',
      'use_zero_pages',
    ]);
    expect(PROFILE_6_18.knobs).toHaveLength(13);
    expect(PROFILE_6_18.statFiles).toHaveLength(11);
  });

  it("reads 6.18's initial values", () => {
    const k = newKernel618();
    const initial = Object.fromEntries(k.sysfs.list(KSM_DIR).map((p) => [p.slice(KSM_DIR.length + 1), read(k, p.slice(KSM_DIR.length + 1))]));
    expect(initial).toEqual({
      advisor_max_cpu: '70',
      advisor_max_pages_to_scan: '30000',
      advisor_min_pages_to_scan: '500',
      advisor_mode: '[none] scan-time',
      advisor_target_scan_time: '200',
      full_scans: '0',
      general_profit: '0',
      ksm_zero_pages: '0',
      max_page_sharing: '256',
      merge_across_nodes: '1',
      pages_scanned: '0',
      pages_shared: '0',
      pages_sharing: '0',
      pages_skipped: '0',
      pages_to_scan: '100',
      pages_unshared: '0',
      pages_volatile: '0',
      run: '0',
      sleep_millisecs: '20',
      smart_scan: '1',
      stable_node_chains: '0',
      stable_node_chains_prune_millisecs: '2000',
      stable_node_dups: '0',
      use_zero_pages: '0',
    });
  });

  for (const [file, writes] of Object.entries(REAL_6_18)) {
    it(`${file}: every write gives what the real file gave (kstrto*, limits, C types)`, () => {
      const k = newKernel618();
      const got = writes.map(([value]) => {
        const r = write(k, file, value);
        return [value, r, read(k, file)];
      });
      expect(got).toEqual(writes);
    });
  }

  it('advisor_mode: sysfs_streq of its two words; a change resets pages_to_scan, which the advisor then owns', () => {
    const k = newKernel618();
    // As on the real files: scan-time sets pages_to_scan to advisor_min_pages_to_scan
    // (500) and refuses writes to it; none gives it back, at DEFAULT_PAGES_TO_SCAN.
    expect(write(k, 'pages_to_scan', '1000000')).toBe('ok');
    expect([write(k, 'advisor_mode', 'scan-time'), read(k, 'advisor_mode'), read(k, 'pages_to_scan')]).toEqual(['ok', 'none [scan-time]', '500']);
    expect([write(k, 'pages_to_scan', '100'), read(k, 'pages_to_scan')]).toEqual(['EINVAL', '500']);
    expect(write(k, 'pages_to_scan', 'junk')).toBe('EINVAL');
    // The same mode again changes nothing (pages_to_scan stays).
    expect([write(k, 'advisor_mode', 'scan-time\n'), read(k, 'pages_to_scan')]).toEqual(['ok', '500']);
    expect([write(k, 'advisor_mode', 'none'), read(k, 'advisor_mode'), read(k, 'pages_to_scan')]).toEqual(['ok', '[none] scan-time', '100']);
    for (const bad of ['None', ' none', 'none\n\n', 'scan_time']) expect(write(k, 'advisor_mode', bad)).toBe('EINVAL');
    expect(read(k, 'advisor_mode')).toBe('[none] scan-time');
  });

  it('max_page_sharing and merge_across_nodes: EBUSY while KSM pages are shared, the same value a no-op; run=2 lets them change', () => {
    const k = newKernel618();
    const p = k.spawn('p');
    const a = p.mmap(4 * PAGE_SIZE);
    p.memset(a, 0x61, 4 * PAGE_SIZE);
    p.madvise(a, 4 * PAGE_SIZE, 'MADV_MERGEABLE');
    expect(write(k, 'run', '1')).toBe('ok');
    k.ksmd.runFullScans(3);
    expect([read(k, 'pages_shared'), read(k, 'pages_sharing')]).toEqual(['1', '3']);
    // As on the real files (the same sequence): the statistics are read-only (EACCES).
    expect(
      [
        ['pages_shared', '1'],
        ['max_page_sharing', '256'],
        ['max_page_sharing', '300'],
        ['merge_across_nodes', '1'],
        ['merge_across_nodes', '0'],
        ['use_zero_pages', '1'],
        ['smart_scan', '0'],
        ['smart_scan', '1'],
        ['use_zero_pages', '0'],
        ['max_page_sharing', '1'],
        ['max_page_sharing', 'abc'],
        ['run', '2'],
        ['max_page_sharing', '300'],
        ['max_page_sharing', '256'],
      ].map(([f, v]) => [f, v, write(k, f!, v!), read(k, f!)]),
    ).toEqual([
      ['pages_shared', '1', 'EACCES', '1'],
      ['max_page_sharing', '256', 'ok', '256'],
      ['max_page_sharing', '300', 'EBUSY', '256'],
      ['merge_across_nodes', '1', 'ok', '1'],
      ['merge_across_nodes', '0', 'EBUSY', '1'],
      ['use_zero_pages', '1', 'ok', '1'],
      ['smart_scan', '0', 'ok', '0'],
      ['smart_scan', '1', 'ok', '1'],
      ['use_zero_pages', '0', 'ok', '0'],
      ['max_page_sharing', '1', 'EINVAL', '256'],
      ['max_page_sharing', 'abc', 'EINVAL', '256'],
      ['run', '2', 'ok', '2'],
      ['max_page_sharing', '300', 'ok', '300'],
      ['max_page_sharing', '256', 'ok', '256'],
    ]);
    expect(read(k, 'full_scans')).toBe('0');
    k.checkInvariants();
  });
});
