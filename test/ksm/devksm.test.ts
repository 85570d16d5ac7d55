/**
 * /dev/ksm, the 2009 driver's ioctls (seed 003), as a compatibility device over the
 * 2.6.33 engine (src/ksm/devksm.ts): registration is madvise(MADV_MERGEABLE),
 * control is /sys/kernel/mm/ksm, as the review of the posting asked.
 */
import { describe, expect, it } from 'vitest';
import { KSM_API_VERSION, Kernel, PAGE_SIZE } from '../../src/index.js';
import { KSM_DIR, errnoOf, newKernel, stats, st } from './helpers.js';

const P = PAGE_SIZE;

describe('/dev/ksm', () => {
  it('the seed test program: two processes register a region each, start ksmd, and their identical pages merge', () => {
    const k = newKernel();
    const run = (name: string): { addr: number; dev: ReturnType<Kernel['openDevKsm']> } => {
      const p = k.spawn(name);
      const addr = p.mmap(8 * P);
      p.memset(addr, 0x61, 8 * P);
      const dev = k.openDevKsm(p);
      expect(dev.ioctl('KSM_GET_API_VERSION')).toBe(KSM_API_VERSION);
      const sma = dev.ioctl('KSM_CREATE_SHARED_MEMORY_AREA');
      expect(sma.ioctl('KSM_REGISTER_MEMORY_REGION', { npages: 8, addr })).toBe(0);
      expect(p.maps()[0]!.mergeable).toBe(true);
      return { addr, dev };
    };
    const a = run('a');
    run('b');
    // sleep 5000 µs: 5 ms; 100 pages a batch; run.
    expect(a.dev.ioctl('KSM_START_STOP_KTHREAD', { sleep: 5000, pages_to_scan: 100, max_pages_to_merge: 50, flags: 1 })).toBe(0);
    expect([k.sysfs.read(`${KSM_DIR}/run`), k.sysfs.read(`${KSM_DIR}/pages_to_scan`), k.sysfs.read(`${KSM_DIR}/sleep_millisecs`)]).toEqual(['1\n', '100\n', '5\n']);
    expect(a.dev.ioctl('KSM_GET_INFO_KTHREAD')).toEqual({ sleep: 5000, pages_to_scan: 100, max_pages_to_merge: 50, flags: 1 });
    k.ksmd.runFullScans(2);
    expect(stats(k)).toEqual(st(1, 15, 0, 0, 2));
    // Stop: ksmd stops scanning, and what is merged stays merged.
    expect(a.dev.ioctl('KSM_START_STOP_KTHREAD', { sleep: 1, pages_to_scan: 0, max_pages_to_merge: 0, flags: 0 })).toBe(0);
    // 1 µs rounds up to one jiffy (1 ms).
    expect(a.dev.ioctl('KSM_GET_INFO_KTHREAD')).toEqual({ sleep: 1000, pages_to_scan: 0, max_pages_to_merge: 0, flags: 0 });
    expect(k.ksmd.runFullScans(1)).toBe(0);
    expect(stats(k)).toEqual(st(1, 15, 0, 0, 2));
    k.checkInvariants();
  });

  it('KSM_REMOVE_MEMORY_REGION and closing the area unregister every region of it (2.6.33 unmerges them)', () => {
    const k = newKernel();
    const p = k.spawn('p');
    const addr = p.mmap(8 * P);
    p.memset(addr, 0x62, 8 * P);
    const dev = k.openDevKsm(p);
    const sma = dev.ioctl('KSM_CREATE_SHARED_MEMORY_AREA');
    // Two regions; an addr inside a page stands for that page, as the driver scanned it.
    sma.ioctl('KSM_REGISTER_MEMORY_REGION', { npages: 4, addr: addr + 12 });
    sma.ioctl('KSM_REGISTER_MEMORY_REGION', { npages: 4, addr: addr + 4 * P });
    expect(sma.registered).toEqual([
      [addr, addr + 4 * P],
      [addr + 4 * P, addr + 8 * P],
    ]);
    dev.ioctl('KSM_START_STOP_KTHREAD', { sleep: 20000, pages_to_scan: 100, max_pages_to_merge: 0, flags: 1 });
    k.ksmd.runFullScans(2);
    expect(stats(k)).toEqual(st(1, 7, 0, 0, 2));
    expect(sma.ioctl('KSM_REMOVE_MEMORY_REGION')).toBe(0);
    expect(sma.registered).toEqual([]);
    expect(p.maps().every((m) => !m.mergeable)).toBe(true);
    expect(new Set([0, 1, 2, 3].map((i) => p.pfnOf(addr + i * P))).size).toBe(4);
    // A region over a hole: the mapped part is registered, the hole skipped.
    const other = dev.ioctl('KSM_CREATE_SHARED_MEMORY_AREA');
    p.munmap(addr + 6 * P, 2 * P);
    expect(other.ioctl('KSM_REGISTER_MEMORY_REGION', { npages: 100, addr })).toBe(0);
    expect(p.maps().map((m) => m.mergeable)).toEqual([true]);
    other.close();
    expect(p.maps().map((m) => m.mergeable)).toEqual([false]);
    expect(errnoOf(() => other.close())).toBe('EBADF');
    expect(errnoOf(() => other.ioctl('KSM_REMOVE_MEMORY_REGION'))).toBe('EBADF');
    k.checkInvariants();
  });

  it("answers bad arguments with the driver's codes", () => {
    const k = newKernel();
    const p = k.spawn('p');
    const dev = k.openDevKsm(p);
    const sma = dev.ioctl('KSM_CREATE_SHARED_MEMORY_AREA');
    // run with pages_to_scan 0: EPERM, and nothing changes.
    expect(errnoOf(() => dev.ioctl('KSM_START_STOP_KTHREAD', { sleep: 1000, pages_to_scan: 0, max_pages_to_merge: 0, flags: 1 }))).toBe('EPERM');
    expect(k.sysfs.read(`${KSM_DIR}/run`)).toBe('0\n');
    // No struct: copy_from_user() faults.
    expect(errnoOf(() => (dev.ioctl as (c: string) => unknown)('KSM_START_STOP_KTHREAD'))).toBe('EFAULT');
    expect(errnoOf(() => (sma.ioctl as (c: string) => unknown)('KSM_REGISTER_MEMORY_REGION'))).toBe('EFAULT');
    // Unknown commands: EINVAL on either file.
    expect(errnoOf(() => (dev.ioctl as (c: string) => unknown)('KSM_REGISTER_MEMORY_REGION'))).toBe('EINVAL');
    expect(errnoOf(() => (sma.ioctl as (c: string) => unknown)('KSM_GET_API_VERSION'))).toBe('EINVAL');
    // What a C caller could not pass.
    expect(errnoOf(() => dev.ioctl('KSM_START_STOP_KTHREAD', { sleep: -1, pages_to_scan: 1, max_pages_to_merge: 0, flags: 1 }))).toBe('EINVAL');
    expect(errnoOf(() => sma.ioctl('KSM_REGISTER_MEMORY_REGION', { npages: 2 ** 32, addr: 0x10000 }))).toBe('EINVAL');
    // An exited process: get_task_mm() finds no mm (EPERM).
    p.exit();
    expect(errnoOf(() => sma.ioctl('KSM_REGISTER_MEMORY_REGION', { npages: 1, addr: 0x10000 }))).toBe('EPERM');
    expect(errnoOf(() => k.openDevKsm(p))).toBe('ESRCH');
  });

  it('exists only over the 2.6.33 profile', () => {
    const k = new Kernel({ memoryMiB: 64, blockMiB: 16, version: '6.18' });
    expect(errnoOf(() => k.openDevKsm(k.spawn('p')))).toBe('ENOENT');
  });
});
