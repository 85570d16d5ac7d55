/**
 * The simulated sysfs/procfs (src/mm/sysfs.ts): lookup errors, read-only files, and
 * knob parsing as lib/vsprintf.c strict_strtoul() does it in 2.6.33 plus the
 * `> UINT_MAX` check the KSM store functions make.
 */
import { describe, expect, it } from 'vitest';
import { HostKernel } from '../../src/mm/kernel.js';
import { Sysfs, UINT_MAX, ULONG_MAX, parseUintKnob, strictStrtoul } from '../../src/mm/sysfs.js';
import { expectErr } from './helpers.js';

describe('Sysfs files', () => {
  it('reading an unknown path is ENOENT (errno 2)', () => {
    const k = new HostKernel({ memoryMiB: 8, blockMiB: 8 });
    expect(expectErr(() => k.sysfs.read('/sys/kernel/mm/nope'), 'ENOENT').errno).toBe(2);
  });

  it('writing an unknown path is ENOENT', () => {
    const k = new HostKernel({ memoryMiB: 8, blockMiB: 8 });
    expectErr(() => k.sysfs.write('/sys/kernel/mm/nope', '1'), 'ENOENT');
  });

  it('writing /proc/meminfo is EACCES (errno 13)', () => {
    const k = new HostKernel({ memoryMiB: 8, blockMiB: 8 });
    expect(expectErr(() => k.sysfs.write('/proc/meminfo', '1'), 'EACCES').errno).toBe(13);
  });

  it('/proc/meminfo reads like Linux: "Name:" padded to 16, value right-aligned in 8, " kB"', () => {
    const k = new HostKernel({ memoryMiB: 8, blockMiB: 8, swapMiB: 4 });
    expect(k.sysfs.read('/proc/meminfo')).toBe(
      'MemTotal:           8192 kB\n' +
        'MemFree:            8188 kB\n' +
        'SwapCached:            0 kB\n' +
        'AnonPages:             0 kB\n' +
        'Shmem:                 0 kB\n' +
        'Mlocked:               0 kB\n' +
        'SwapTotal:          4096 kB\n' +
        'SwapFree:           4096 kB\n',
    );
  });

  it('/proc/vmstat lists every counter as "name value"', () => {
    const k = new HostKernel({ memoryMiB: 8, blockMiB: 8 });
    const p = k.spawn('t');
    p.write(p.mmap(4096), Uint8Array.of(1));
    expect(k.sysfs.read('/proc/vmstat')).toBe(
      'pswpin 0\npswpout 0\npgmigrate_success 0\npgmigrate_fail 0\nksm_swpin_copy 0\npgfault 1\npgmajfault 0\ncow_faults 0\n',
    );
  });

  it('a write-only file reads as EACCES; a store receives the string as written', () => {
    const fs = new Sysfs();
    const got: string[] = [];
    fs.register('/proc/sys/vm/compact_memory', { store: (v) => got.push(v) });
    expectErr(() => fs.read('/proc/sys/vm/compact_memory'), 'EACCES');
    fs.write('/proc/sys/vm/compact_memory', '1\n');
    expect(got).toEqual(['1\n']);
  });

  it('registering a path twice is EEXIST; unregister removes it', () => {
    const fs = new Sysfs();
    fs.register('/sys/a', { show: () => 'x\n' });
    expectErr(() => fs.register('/sys/a', { show: () => 'y\n' }), 'EEXIST');
    expect(fs.read('/sys/a')).toBe('x\n');
    fs.unregister('/sys/a');
    expect(fs.has('/sys/a')).toBe(false);
    expectErr(() => fs.read('/sys/a'), 'ENOENT');
  });

  it('list() is `ls` of a directory: sorted, only what is under it', () => {
    const fs = new Sysfs();
    for (const p of ['/sys/k/b', '/sys/k/a', '/sys/kk/c', '/sys/k/sub/d']) fs.register(p, { show: () => '' });
    expect(fs.list('/sys/k')).toEqual(['/sys/k/a', '/sys/k/b', '/sys/k/sub/d']);
    expect(fs.list('/sys/k/')).toEqual(['/sys/k/a', '/sys/k/b', '/sys/k/sub/d']);
  });
});

describe('strict_strtoul', () => {
  it.each([
    ['0', 0n],
    ['42', 42n],
    ['42\n', 42n],
    ['007', 7n],
    ['4294967295', 4294967295n],
    ['4294967296', 4294967296n],
    ['18446744073709551615', ULONG_MAX],
    ['18446744073709551615\n', ULONG_MAX],
  ])('accepts %j as %s', (buf, v) => {
    expect(strictStrtoul('f', buf)).toBe(v);
  });

  it.each(['', '\n', ' 1', '1 ', '+1', '-1', '1.5', '0x10', 'abc', '1\n\n', '\n1', '1\r\n', '１', '18446744073709551616'])(
    'rejects %j with EINVAL (errno 22)',
    (buf) => {
      expect(expectErr(() => strictStrtoul('/sys/kernel/mm/ksm/pages_to_scan', buf), 'EINVAL').errno).toBe(22);
    },
  );

  it('the message names the file and what was written', () => {
    expect(expectErr(() => strictStrtoul('/sys/kernel/mm/ksm/run', 'abc'), 'EINVAL').message).toBe(
      'EINVAL: /sys/kernel/mm/ksm/run: expected an unsigned decimal number, got "abc"',
    );
  });
});

describe('parseUintKnob', () => {
  it.each([
    ['0', 0],
    ['42', 42],
    ['42\n', 42],
    ['4294967295', 4294967295],
    ['4294967295\n', UINT_MAX],
  ])('accepts %j as %d', (buf, v) => {
    expect(parseUintKnob('f', buf)).toBe(v);
  });

  it.each(['', ' 1', '1 ', '+1', '-1', '1.5', '0x10', 'abc', '4294967296', '18446744073709551615', '18446744073709551616'])(
    'rejects %j with EINVAL',
    (buf) => {
      expectErr(() => parseUintKnob('/sys/kernel/mm/ksm/sleep_millisecs', buf), 'EINVAL');
    },
  );

  it('a lower limit: run takes 0, 1, 2 and refuses 3', () => {
    expect(parseUintKnob('run', '2', 2)).toBe(2);
    expectErr(() => parseUintKnob('run', '3', 2), 'EINVAL');
  });
});
