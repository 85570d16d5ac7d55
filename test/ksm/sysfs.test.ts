/**
 * /sys/kernel/mm/ksm as 2.6.33 has it: four knobs (KSM_ATTR, 0644) and five
 * statistics (KSM_ATTR_RO, 0444), every show() a sprintf("%u\n" / "%lu\n" / "%ld\n").
 *
 * The knobs parse with strict_strtoul(buf, 10): simple_strtoul's digits (no blanks,
 * no sign, no "0x" in base 10), then either the end of the buffer or exactly one
 * '\n' at its end. sleep_millisecs, pages_to_scan and run then refuse values above
 * UINT_MAX, run anything above KSM_RUN_UNMERGE; max_kernel_pages takes any unsigned
 * long. (2.6.33's simple_strtoul would silently wrap a number beyond ULONG_MAX; the
 * model refuses it, as kstrtoul does since 2.6.39, and so do these tests.)
 */
import { describe, expect, it } from 'vitest';
import { Kernel, PAGE_SIZE } from '../../src/index.js';
import { KSM_DIR, RUN, batch, errnoOf, mergeableArea, newKernel, readKsm, stats } from './helpers.js';

const KNOBS = ['max_kernel_pages', 'pages_to_scan', 'run', 'sleep_millisecs'] as const;
const STATS = ['full_scans', 'pages_shared', 'pages_sharing', 'pages_unshared', 'pages_volatile'] as const;

describe('/sys/kernel/mm/ksm', () => {
  it('holds exactly the nine files of 2.6.33', () => {
    const k = newKernel();
    expect(k.sysfs.list(KSM_DIR)).toEqual([...KNOBS, ...STATS].sort().map((f) => `${KSM_DIR}/${f}`));
  });

  it('reads the defaults, each with a trailing newline: run 0, pages_to_scan 100, sleep_millisecs 20, max_kernel_pages totalram/4, stats 0', () => {
    const k = newKernel();
    // ksm_init(): ksm_max_kernel_pages = totalram_pages / 4; 64 MiB = 16384 frames.
    expect(k.mem.nrFrames).toBe(16384);
    const expected: Record<string, string> = {
      run: '0\n',
      pages_to_scan: '100\n',
      sleep_millisecs: '20\n',
      max_kernel_pages: '4096\n',
      pages_shared: '0\n',
      pages_sharing: '0\n',
      pages_unshared: '0\n',
      pages_volatile: '0\n',
      full_scans: '0\n',
    };
    for (const [file, value] of Object.entries(expected)) expect(k.sysfs.read(`${KSM_DIR}/${file}`)).toBe(value);
  });

  it('max_kernel_pages defaults to a quarter of the frames for other sizes too', () => {
    // 48 MiB = 12288 frames: 3072.
    const k = new Kernel({ memoryMiB: 48, blockMiB: 16, seed: 1 });
    expect(k.sysfs.read(`${KSM_DIR}/max_kernel_pages`)).toBe('3072\n');
  });

  it('every file reads as digits and one newline after a scenario too', () => {
    const k = newKernel();
    const p = k.spawn('p');
    mergeableArea(p, 8, 0x61);
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    // 8 equal pages: one KSM page and 7 sharing it.
    const read = Object.fromEntries([...KNOBS, ...STATS].map((f) => [f, k.sysfs.read(`${KSM_DIR}/${f}`)]));
    expect(read).toEqual({
      max_kernel_pages: '4096\n',
      pages_to_scan: '100\n',
      run: '1\n',
      sleep_millisecs: '20\n',
      full_scans: '2\n',
      pages_shared: '1\n',
      pages_sharing: '7\n',
      pages_unshared: '0\n',
      pages_volatile: '0\n',
    });
    k.checkInvariants();
  });
});

describe('writing the knobs', () => {
  const junk = ['', ' 1', '1 ', '+1', '-1', '1.5', '0x10', 'abc', '\n', '1\n\n', '\n1', '1\r\n', '１'];

  for (const file of KNOBS) {
    it(`${file}: every malformed number is EINVAL and leaves the file as it was`, () => {
      const k = newKernel();
      const path = `${KSM_DIR}/${file}`;
      const before = k.sysfs.read(path);
      for (const bad of junk) {
        expect(errnoOf(() => k.sysfs.write(path, bad)), JSON.stringify(bad)).toBe('EINVAL');
        expect(k.sysfs.read(path)).toBe(before);
      }
      k.checkInvariants();
    });
  }

  for (const file of ['run', 'pages_to_scan', 'sleep_millisecs'] as const) {
    it(`${file}: 4294967296 (UINT_MAX + 1) is EINVAL`, () => {
      const k = newKernel();
      const path = `${KSM_DIR}/${file}`;
      const before = k.sysfs.read(path);
      expect(errnoOf(() => k.sysfs.write(path, '4294967296'))).toBe('EINVAL');
      expect(errnoOf(() => k.sysfs.write(path, '18446744073709551616'))).toBe('EINVAL');
      expect(k.sysfs.read(path)).toBe(before);
    });
  }

  for (const file of ['pages_to_scan', 'sleep_millisecs'] as const) {
    it(`${file}: takes 0, UINT_MAX and a value with one trailing newline`, () => {
      const k = newKernel();
      const path = `${KSM_DIR}/${file}`;
      k.sysfs.write(path, '0');
      expect(k.sysfs.read(path)).toBe('0\n');
      k.sysfs.write(path, '4294967295');
      expect(k.sysfs.read(path)).toBe('4294967295\n');
      k.sysfs.write(path, '1234\n');
      expect(k.sysfs.read(path)).toBe('1234\n');
      k.sysfs.write(path, '007');
      expect(k.sysfs.read(path)).toBe('7\n');
    });
  }

  it('run: 3 and above are EINVAL; 0, 1, 2 and "1\\n" are taken', () => {
    const k = newKernel();
    for (const bad of ['3', '4', '4294967295']) {
      expect(errnoOf(() => k.sysfs.write(RUN, bad))).toBe('EINVAL');
      expect(k.sysfs.read(RUN)).toBe('0\n');
    }
    k.sysfs.write(RUN, '1\n');
    expect(k.sysfs.read(RUN)).toBe('1\n');
    k.sysfs.write(RUN, '2');
    expect(k.sysfs.read(RUN)).toBe('2\n');
    k.sysfs.write(RUN, '0');
    expect(k.sysfs.read(RUN)).toBe('0\n');
    k.checkInvariants();
  });

  it('max_kernel_pages: values above UINT_MAX are taken (no UINT_MAX check in max_kernel_pages_store)', () => {
    const k = newKernel();
    const path = `${KSM_DIR}/max_kernel_pages`;
    k.sysfs.write(path, '4294967296');
    expect(k.sysfs.read(path)).toBe('4294967296\n');
    k.sysfs.write(path, '0\n');
    expect(k.sysfs.read(path)).toBe('0\n');
  });

  it('max_kernel_pages: ULONG_MAX is taken and reads back exactly, as sprintf("%lu\\n") prints it', () => {
    const k = newKernel();
    const path = `${KSM_DIR}/max_kernel_pages`;
    k.sysfs.write(path, '18446744073709551615');
    expect(k.sysfs.read(path)).toBe('18446744073709551615\n');
    // 2^53 + 1: the first integer a double cannot hold.
    k.sysfs.write(path, '9007199254740993');
    expect(k.sysfs.read(path)).toBe('9007199254740993\n');
  });

  it('max_kernel_pages: 18446744073709551616 (ULONG_MAX + 1) is EINVAL', () => {
    const k = newKernel();
    const path = `${KSM_DIR}/max_kernel_pages`;
    expect(errnoOf(() => k.sysfs.write(path, '18446744073709551616'))).toBe('EINVAL');
    expect(k.sysfs.read(path)).toBe('4096\n');
  });

  it('a rejected write to run changes nothing: ksmd stays stopped, nothing is unmerged', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const map = mergeableArea(p, 4, 0x61);
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    const merged = p.pfnOf(map);
    expect(errnoOf(() => k.sysfs.write(RUN, '2 '))).toBe('EINVAL');
    expect(errnoOf(() => k.sysfs.write(RUN, '3'))).toBe('EINVAL');
    expect(k.sysfs.read(RUN)).toBe('1\n');
    expect(p.pfnOf(map + 3 * PAGE_SIZE)).toBe(merged);
    expect(stats(k)).toEqual({ shared: 1, sharing: 3, unshared: 0, volatile: 0, fullScans: 2 });
    k.checkInvariants();
  });
});

describe('read-only and unknown files', () => {
  for (const file of STATS) {
    it(`writing ${file} is EACCES (0444) and changes nothing`, () => {
      const k = newKernel();
      expect(errnoOf(() => k.sysfs.write(`${KSM_DIR}/${file}`, '0'))).toBe('EACCES');
      expect(errnoOf(() => k.sysfs.write(`${KSM_DIR}/${file}`, '5'))).toBe('EACCES');
      expect(k.sysfs.read(`${KSM_DIR}/${file}`)).toBe('0\n');
    });
  }

  it('an unknown file is ENOENT, to read and to write', () => {
    const k = newKernel();
    for (const f of ['max_page_sharing', 'use_zero_pages', 'merge_across_nodes', 'pages_scanned', 'Run', 'run/']) {
      expect(errnoOf(() => k.sysfs.read(`${KSM_DIR}/${f}`)), f).toBe('ENOENT');
      expect(errnoOf(() => k.sysfs.write(`${KSM_DIR}/${f}`, '1')), f).toBe('ENOENT');
    }
  });
});

describe('pages_volatile', () => {
  it('is rmap_items - shared - sharing - unshared, never negative, at every batch of a busy scenario', () => {
    const k = newKernel();
    const a = k.spawn('a');
    const b = k.spawn('b');
    const mapA = mergeableArea(a, 12, 0x61);
    const mapB = mergeableArea(b, 12, 0x61);
    b.memset(mapB + 6 * PAGE_SIZE, 0x62, 6 * PAGE_SIZE);
    k.sysfs.write(`${KSM_DIR}/pages_to_scan`, '5');
    k.sysfs.write(RUN, '1');
    for (let i = 0; i < 40; i++) {
      batch(k);
      // Every few batches someone writes: pages change, KSM pages are copied.
      if (i % 7 === 3) a.memset(mapA + (i % 12) * PAGE_SIZE, i, 1);
      if (i === 20) b.exit();
      const e = k.ksmEngine;
      const s = stats(k);
      // The difference itself (the file could not show a negative one: see the next test).
      const volatile = e.rmapItems - e.pagesShared - e.pagesSharing - e.pagesUnshared;
      expect(volatile).toBeGreaterThanOrEqual(0);
      expect(s.volatile).toBe(volatile);
      k.checkInvariants();
    }
  });

  it('conceals a negative difference as 0 (pages_volatile_show)', () => {
    const k = newKernel();
    const p = k.spawn('p');
    mergeableArea(p, 4, 0x61);
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    expect(readKsm(k, 'pages_volatile')).toBe(0);
    // The unlocked read can see the counters mid-update: shared already counted,
    // rmap_items not. Stage that moment by hand, then put it back.
    const e = k.ksmEngine;
    e.pagesShared += 3;
    expect(k.sysfs.read(`${KSM_DIR}/pages_volatile`)).toBe('0\n');
    e.pagesShared -= 3;
    k.checkInvariants();
  });
});
