import { KernelError } from '../lib/errors.js';
import { describe } from '../lib/validate.js';
import { PAGE_SIZE } from '../mm/constants.js';
import type { Process } from '../mm/process.js';
import type { Ksm } from './ksm.js';
import { KSM_SYSFS_DIR } from './profile.js';

/*
 * /dev/ksm: the ioctl interface of the first KSM posting (March 2009, seed 003: "add
 * ksm kernel shared memory driver"), as a compatibility device over the 2.6.33
 * engine.
 *
 * The review of that posting took the driver apart along one line: registering
 * memory is an unprivileged action of a process on its own memory, controlling the
 * scanner is an administrator's (Anthony Liguori: "registering a memory region ought
 * to be an unprivileged action whereas enabling/disabling KSM ought to be a
 * privileged action"). Registration became madvise(MADV_MERGEABLE), control became
 * /sys/kernel/mm/ksm. This device maps the 2009 calls onto exactly those:
 *
 *   KSM_GET_API_VERSION            1 (KSM_API_VERSION)
 *   KSM_CREATE_SHARED_MEMORY_AREA  a new shared memory area (the driver's SMA fd)
 *   KSM_REGISTER_MEMORY_REGION     on an SMA: madvise(MADV_MERGEABLE) of the pages
 *                                  holding [addr, addr + npages * PAGE_SIZE)
 *   KSM_REMOVE_MEMORY_REGION       on an SMA: madvise(MADV_UNMERGEABLE) of every region
 *                                  it registered (the driver removed them all), and
 *                                  closing the SMA does the same (ksm_sma_release())
 *   KSM_START_STOP_KTHREAD         run, pages_to_scan and sleep_millisecs
 *   KSM_GET_INFO_KTHREAD           the same, read back
 *
 * Where it cannot be exact (the README lists these too):
 * - Removing a region unmerges its pages (2.6.33's MADV_UNMERGEABLE breaks COW);
 *   the 2009 driver only forgot them, leaving merged pages shared until written.
 * - Registration is a flag on the areas, not a list of slots: two SMAs registering
 *   the same pages share one flag, so removing either unregisters both (the driver
 *   kept a slot for each, and scanned the pages twice).
 * - The driver never looked at addr or at what was mapped there: the scanner simply
 *   found no page at an unmapped address. Here too a region may cover holes (they
 *   are skipped, as madvise skips them), and an addr inside a page means that page.
 * - sleep is in µs; sleep_millisecs in ms: the µs are rounded up to whole ms, as
 *   usecs_to_jiffies() rounds them up to jiffies (HZ=1000). Reading back gives the
 *   rounded value, in µs.
 * - max_pages_to_merge ("stop this iteration after merging that many") has no
 *   counterpart in 2.6.33 (max_kernel_pages caps KSM pages in total, not merges per
 *   batch): it is kept and read back, and changes nothing.
 * - The driver checked no privilege; neither does the device, and the model has no
 *   credentials to check.
 * - Errors: the driver's codes for bad arguments: EINVAL for an unknown ioctl (the
 *   SMA's returned a positive EINVAL, a slip fixed here), EFAULT where its
 *   copy_from_user() would fault (no argument), EPERM for run with pages_to_scan 0
 *   (returned positive in the driver, likewise). Arguments a C caller could not
 *   pass (not 32-bit unsigned) are EINVAL.
 */

/** include/linux/ksm.h (2009) KSM_API_VERSION */
export const KSM_API_VERSION = 1;
/** ksm_kthread_info.flags: ksmd runs. */
export const KSM_CONTROL_FLAGS_RUN = 1;

/** struct ksm_memory_region: npages pages from addr. */
export interface KsmMemoryRegion {
  npages: number;
  addr: number;
}

/** struct ksm_kthread_info, as the posting's text describes it. */
export interface KsmKthreadInfo {
  /** µs to sleep between scanning batches. */
  sleep: number;
  /** Pages to scan per batch. */
  pages_to_scan: number;
  /** Most pages to merge per batch (kept, no effect: see above). */
  max_pages_to_merge: number;
  /** KSM_CONTROL_FLAGS_RUN or 0. */
  flags: number;
}

export type DevKsmIoctl = 'KSM_GET_API_VERSION' | 'KSM_CREATE_SHARED_MEMORY_AREA' | 'KSM_START_STOP_KTHREAD' | 'KSM_GET_INFO_KTHREAD';
export type SmaIoctl = 'KSM_REGISTER_MEMORY_REGION' | 'KSM_REMOVE_MEMORY_REGION';

const U32_MAX = 0xffffffff;

function isU32(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= U32_MAX;
}

/** The state the device keeps for the whole kernel: what 2.6.33 has no knob for. */
export interface DevKsmState {
  maxPagesToMerge: number;
}

/**
 * /dev/ksm opened by a process (ksm_dev_ioctl()). Any process may open it; its
 * SMAs register that process's memory.
 */
export class DevKsm {
  private readonly ksm: Ksm;
  private readonly state: DevKsmState;
  readonly process: Process;

  constructor(ksm: Ksm, state: DevKsmState, process: Process) {
    this.ksm = ksm;
    this.state = state;
    this.process = process;
  }

  ioctl(cmd: 'KSM_GET_API_VERSION'): number;
  ioctl(cmd: 'KSM_CREATE_SHARED_MEMORY_AREA'): SharedMemoryArea;
  ioctl(cmd: 'KSM_START_STOP_KTHREAD', info: KsmKthreadInfo): number;
  ioctl(cmd: 'KSM_GET_INFO_KTHREAD'): KsmKthreadInfo;
  ioctl(cmd: DevKsmIoctl, arg?: KsmKthreadInfo): number | SharedMemoryArea | KsmKthreadInfo;
  ioctl(cmd: DevKsmIoctl, arg?: KsmKthreadInfo): number | SharedMemoryArea | KsmKthreadInfo {
    switch (cmd) {
      case 'KSM_GET_API_VERSION':
        return KSM_API_VERSION;
      case 'KSM_CREATE_SHARED_MEMORY_AREA':
        return new SharedMemoryArea(this.process);
      case 'KSM_START_STOP_KTHREAD':
        return this.startStopKthread(arg);
      case 'KSM_GET_INFO_KTHREAD':
        return this.getInfoKthread();
      default:
        return badIoctl(cmd, '/dev/ksm');
    }
  }

  /** ksm_dev_ioctl_start_stop_kthread() */
  private startStopKthread(info: KsmKthreadInfo | undefined): number {
    if (info === undefined || info === null || typeof info !== 'object') {
      throw new KernelError('EFAULT', 'KSM_START_STOP_KTHREAD: expected a struct ksm_kthread_info { sleep, pages_to_scan, max_pages_to_merge, flags }, got none');
    }
    for (const field of ['sleep', 'pages_to_scan', 'max_pages_to_merge', 'flags'] as const) {
      if (!isU32(info[field])) throw new KernelError('EINVAL', `KSM_START_STOP_KTHREAD: ${field} must be a 32-bit unsigned integer, got ${describe(info[field])}`);
    }
    const run = (info.flags & KSM_CONTROL_FLAGS_RUN) !== 0;
    // "if (info->flags & ksm_control_flags_run) if (!info->pages_to_scan) ret = EPERM"
    if (run && info.pages_to_scan === 0) throw new KernelError('EPERM', 'KSM_START_STOP_KTHREAD: running ksmd needs pages_to_scan above 0');
    const sysfs = this.ksm.kernel.sysfs;
    // usecs_to_jiffies() rounds up; the model's jiffy is 1 ms.
    sysfs.write(`${KSM_SYSFS_DIR}/sleep_millisecs`, String(Math.ceil(info.sleep / 1000)));
    sysfs.write(`${KSM_SYSFS_DIR}/pages_to_scan`, String(info.pages_to_scan));
    this.state.maxPagesToMerge = info.max_pages_to_merge;
    sysfs.write(`${KSM_SYSFS_DIR}/run`, run ? '1' : '0');
    return 0;
  }

  /** ksm_dev_ioctl_get_info_kthread(): a view of the engine's knobs. */
  private getInfoKthread(): KsmKthreadInfo {
    return {
      sleep: this.ksm.sleepMillisecs * 1000,
      pages_to_scan: this.ksm.pagesToScan,
      max_pages_to_merge: this.state.maxPagesToMerge,
      flags: this.ksm.run === 1 ? KSM_CONTROL_FLAGS_RUN : 0,
    };
  }
}

/**
 * A shared memory area (struct ksm_sma, the driver's anonymous "ksm-sma" fd): the
 * regions one process registered through it.
 */
export class SharedMemoryArea {
  readonly process: Process;
  /** Each region's [start, end), page aligned, in the order registered. */
  private readonly regions: [number, number][];
  private closed: boolean;

  constructor(process: Process) {
    this.process = process;
    this.regions = [];
    this.closed = false;
  }

  ioctl(cmd: 'KSM_REGISTER_MEMORY_REGION', region: KsmMemoryRegion): number;
  ioctl(cmd: 'KSM_REMOVE_MEMORY_REGION'): number;
  ioctl(cmd: SmaIoctl, arg?: KsmMemoryRegion): number;
  ioctl(cmd: SmaIoctl, arg?: KsmMemoryRegion): number {
    if (this.closed) throw new KernelError('EBADF', `${cmd}: this shared memory area was closed`);
    switch (cmd) {
      case 'KSM_REGISTER_MEMORY_REGION':
        return this.register(arg);
      case 'KSM_REMOVE_MEMORY_REGION':
        this.removeAll();
        return 0;
      default:
        return badIoctl(cmd, 'a shared memory area');
    }
  }

  /** The regions registered, as [start, end) byte ranges. */
  get registered(): readonly (readonly [number, number])[] {
    return this.regions;
  }

  /** close(): ksm_sma_release() removes every region. */
  close(): void {
    if (this.closed) throw new KernelError('EBADF', 'close: this shared memory area was closed already');
    this.removeAll();
    this.closed = true;
  }

  /** ksm_sma_ioctl_register_memory_region(): madvise(MADV_MERGEABLE) of the region's pages. */
  private register(mem: KsmMemoryRegion | undefined): number {
    if (mem === undefined || mem === null || typeof mem !== 'object') {
      throw new KernelError('EFAULT', 'KSM_REGISTER_MEMORY_REGION: expected a struct ksm_memory_region { npages, addr }, got none');
    }
    if (!isU32(mem.npages)) throw new KernelError('EINVAL', `KSM_REGISTER_MEMORY_REGION: npages must be a 32-bit unsigned integer, got ${describe(mem.npages)}`);
    if (typeof mem.addr !== 'number' || !Number.isSafeInteger(mem.addr) || mem.addr < 0) {
      throw new KernelError('EINVAL', `KSM_REGISTER_MEMORY_REGION: addr must be an address, got ${describe(mem.addr)}`);
    }
    // get_task_mm(current) is NULL for an exiting task: the driver's EPERM.
    if (!this.process.alive) throw new KernelError('EPERM', `KSM_REGISTER_MEMORY_REGION: process ${this.process.name} has exited`);
    // The driver scanned the page holding addr + i * PAGE_SIZE for each i.
    const start = mem.addr - (mem.addr % PAGE_SIZE);
    const end = start + mem.npages * PAGE_SIZE;
    // Recorded once advised: a region madvise refuses is not registered.
    if (end > start) advise(this.process, start, end, 'MADV_MERGEABLE');
    this.regions.push([start, end]);
    return 0;
  }

  /** ksm_sma_ioctl_remove_memory_region(): every region of this area goes. */
  private removeAll(): void {
    for (const [start, end] of this.regions) if (end > start && this.process.alive) advise(this.process, start, end, 'MADV_UNMERGEABLE');
    this.regions.length = 0;
  }
}

/**
 * madvise over a region, as the scanner saw it: unmapped parts are skipped (madvise
 * does the mapped ones and reports ENOMEM for the holes, which the driver never
 * noticed).
 */
function advise(p: Process, start: number, end: number, advice: 'MADV_MERGEABLE' | 'MADV_UNMERGEABLE'): void {
  try {
    p.madvise(start, end - start, advice);
  } catch (e) {
    if (!(e instanceof KernelError) || e.code !== 'ENOMEM') throw e;
  }
}

/**
 * The end of an ioctl switch: unreachable for a typed caller (the compiler checks
 * every command is handled, as assertNever does), but a JavaScript caller can pass
 * any string, and the driver answered an unknown command with EINVAL.
 */
function badIoctl(cmd: never, what: string): never {
  throw new KernelError('EINVAL', `ioctl: ${what} has no command ${describe(cmd)}`);
}
