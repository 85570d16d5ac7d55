import { KernelError, bug } from '../lib/errors.js';
import { Prng } from '../lib/prng.js';
import {
  PAGE_SIZE,
  PG_ANON,
  PG_BUDDY,
  PG_MLOCKED,
  PG_RESERVED,
  PG_SHMEM,
  PG_SWAPCACHE,
  MAX_MEMORY_MIB,
} from './constants.js';
import type { KsmOps } from './ksm-ops.js';
import type { KernelImagePart } from './snapshot.js';
import type { MmStruct } from './mm.js';
import { checkMmInvariants } from './check.js';
import { PhysMem } from './physmem.js';
import { Process } from './process.js';
import { SwapDevice } from './swap.js';
import { Sysfs, parseUintKnob } from './sysfs.js';
import { compactMemory, migratePage } from './migrate.js';
import { registerMemorySysfs, type MemoryNotifier, type MemoryNotify } from './hotplug.js';
import { shrinkPages } from './swapops.js';
import { TransparentHugepage, nrAnonThps, registerThpSysfs, restoreThpImage, saveThpImage, thpVmstatLines, type ThpImage, type ThpOptions } from './huge-memory.js';

export interface KernelOptions {
  /** RAM in MiB (a multiple of blockMiB). */
  memoryMiB?: number;
  /** Swap device size in MiB; 0 for none. */
  swapMiB?: number;
  /** Memory block size in MiB (a power of two; 128 as on x86-64 Linux). */
  blockMiB?: number;
  /** Seed of the kernel's PRNG. */
  seed?: number;
  /** NUMA nodes, each a run of whole memory blocks (physmem.ts); default 1. */
  nodes?: number;
  /**
   * Transparent huge pages (src/mm/huge-memory.ts), or null for a kernel without
   * them (2.6.33, the default). The KSM side sets it from the kernel profile.
   */
  thp?: ThpOptions | null;
}

/**
 * A kernel thread on simulated time: `nextWake()` says when it next wants to run
 * (null: asleep until something wakes it), `run(now)` does one slice of work.
 */
export interface KThread {
  readonly name: string;
  nextWake(): number | null;
  run(now: number): void;
}

/** /proc/vmstat counters kept by the model. */
export interface VmStat {
  pswpin: number;
  pswpout: number;
  pgmigrate_success: number;
  pgmigrate_fail: number;
  ksm_swpin_copy: number;
  pgfault: number;
  pgmajfault: number;
  cow_faults: number;
}

/** Every field of VmStat, so that a field added there must be added here. */
const VMSTAT_FIELDS: Record<keyof VmStat, true> = {
  pswpin: true,
  pswpout: true,
  pgmigrate_success: true,
  pgmigrate_fail: true,
  ksm_swpin_copy: true,
  pgfault: true,
  pgmajfault: true,
  cow_faults: true,
};
export const VMSTAT_KEYS = Object.keys(VMSTAT_FIELDS) as (keyof VmStat)[];

/** The kernel-wide scalars a kernel image keeps (saveState/restoreState). */
export interface KernelState {
  /** Simulated time, ms since boot. */
  now: number;
  nextPid: number;
  /** Prng.getState(). */
  prng: number[];
  vmstat: VmStat;
  /** Kernels with THP only: its mode and counters. */
  thp?: ThpImage;
}

/**
 * The simulated host kernel: physical memory, swap, processes and their address
 * spaces, sysfs/procfs files, and simulated time with its kernel threads.
 *
 * Time only moves in `advance(ms)`: every thread due in that span runs at its due
 * time, in due-time order (ties in registration order). Nothing reads a clock or
 * Math.random; `prng` is the one source of randomness.
 */
/** Longest KSM merge domain name (model-only: mm.ts ksmMergeDomain). */
export const MERGE_DOMAIN_MAX = 64;

/** Why `d` cannot name a KSM merge domain, or null: '' or 1–64 of [A-Za-z0-9._-]. */
export function mergeDomainProblem(d: unknown): string | null {
  if (typeof d !== 'string') return `must be a string, got ${typeof d}`;
  if (d.length > MERGE_DOMAIN_MAX || !/^[A-Za-z0-9._-]*$/.test(d)) return `must be at most ${MERGE_DOMAIN_MAX} of the characters A-Z a-z 0-9 . _ -, got ${JSON.stringify(d)}`;
  return null;
}

export class HostKernel {
  /** The options it was built with, defaults filled in (a snapshot rebuilds from them). */
  readonly options: Readonly<Required<Omit<KernelOptions, 'thp'>>>;
  /** Transparent huge pages: null in a kernel without them (2.6.33). */
  readonly thp: TransparentHugepage | null;
  readonly mem: PhysMem;
  readonly swap: SwapDevice | null;
  readonly sysfs: Sysfs;
  readonly prng: Prng;
  /** Simulated time in milliseconds since boot. */
  now: number;
  readonly threads: KThread[];
  readonly processes: Map<number, Process>;
  /** The KSM engine, once registered (CONFIG_KSM). */
  ksm: KsmOps | null;
  /** Extra references taken by get_user_pages pins, by pfn. */
  readonly pins: Map<number, number>;
  readonly memoryNotifiers: { prio: number; fn: MemoryNotifier }[];
  readonly invariantCheckers: { name: string; check: () => void }[];
  /** What the layers above keep in the kernel's image (src/mm/snapshot.ts), in registration order. */
  readonly imageParts: KernelImagePart<unknown>[];
  readonly vmstat: VmStat;
  /** The pid the next process gets. */
  private nextPid: number;

  constructor(opts: KernelOptions = {}) {
    const memoryMiB = opts.memoryMiB ?? 512;
    const blockMiB = opts.blockMiB ?? 128;
    const swapMiB = opts.swapMiB ?? 0;
    if (!Number.isInteger(swapMiB) || swapMiB < 0) {
      throw new KernelError('EINVAL', `swapMiB must be a non-negative integer, got ${swapMiB}`);
    }
    if (swapMiB > MAX_MEMORY_MIB) {
      throw new KernelError('EINVAL', `swapMiB ${swapMiB} exceeds the ${MAX_MEMORY_MIB} MiB (4 TiB) of slots a swap pte can address`);
    }
    const nodes = opts.nodes ?? 1;
    this.options = { memoryMiB, swapMiB, blockMiB, seed: opts.seed ?? 1, nodes };
    this.mem = new PhysMem({ memoryMiB, blockMiB, nodes });
    this.swap = swapMiB > 0 ? new SwapDevice(swapMiB, this.mem.store) : null;
    this.sysfs = new Sysfs();
    this.prng = new Prng(opts.seed ?? 1);
    this.now = 0;
    this.threads = [];
    this.processes = new Map();
    this.ksm = null;
    this.pins = new Map();
    this.memoryNotifiers = [];
    this.invariantCheckers = [];
    this.imageParts = [];
    this.vmstat = {
      pswpin: 0,
      pswpout: 0,
      pgmigrate_success: 0,
      pgmigrate_fail: 0,
      ksm_swpin_copy: 0,
      pgfault: 0,
      pgmajfault: 0,
      cow_faults: 0,
    };
    this.nextPid = 1;
    this.thp = opts.thp === undefined || opts.thp === null ? null : new TransparentHugepage(opts.thp);
    this.registerProcFiles();
    if (this.thp !== null) registerThpSysfs(this, this.thp);
    registerMemorySysfs(this);
  }

  // ---- reclaim, migration, compaction ------------------------------------------------

  /**
   * Reclaim up to `pages` anonymous pages to swap, like writing cgroup v2's
   * memory.reclaim. Returns the number freed (0 without a swap device).
   */
  reclaim(pages: number): number {
    if (!Number.isInteger(pages) || pages < 0) throw new KernelError('EINVAL', `reclaim() takes a non-negative number of pages, got ${pages}`);
    return shrinkPages(this, pages);
  }

  /**
   * Migrate one anonymous or KSM page to a new frame; returns the new frame. `node`:
   * the NUMA node to move it to (move_pages()); by default its own.
   */
  migratePage(pfn: number, node?: number): number {
    if (node !== undefined && (!Number.isInteger(node) || node < 0 || node >= this.mem.nrNodes)) {
      throw new KernelError('EINVAL', `migratePage: node must be an integer from 0 to ${this.mem.nrNodes - 1}, got ${node}`);
    }
    return migratePage(this, pfn, -1, node ?? -1);
  }

  /** Compact every online memory block (writing /proc/sys/vm/compact_memory); returns pages moved. */
  compactMemory(): number {
    return compactMemory(this);
  }

  // ---- processes -------------------------------------------------------------------

  /**
   * A new process with an empty address space (think: exec of a fresh program).
   * `node`: the NUMA node its memory comes from first (physmem.ts; default 0), as
   * with `numactl --preferred=node`. `mergeDomain`: the KSM merge domain of its
   * mm (mm.ts ksmMergeDomain; default '', the common one), inherited over fork.
   */
  spawn(name: string, opts: { node?: number; mergeDomain?: string } = {}): Process {
    const node = opts.node ?? 0;
    if (!Number.isInteger(node) || node < 0 || node >= this.mem.nrNodes) {
      throw new KernelError('EINVAL', `spawn: node must be an integer from 0 to ${this.mem.nrNodes - 1}, got ${String(node)}`);
    }
    const domain = opts.mergeDomain ?? '';
    const problem = mergeDomainProblem(domain);
    if (problem !== null) throw new KernelError('EINVAL', `spawn: mergeDomain ${problem}`);
    const p = new Process(this, this.nextPid++, name, null);
    p.mm.node = node;
    p.mm.ksmMergeDomain = domain;
    this.processes.set(p.pid, p);
    return p;
  }

  /** The live process with this pid (what /proc/<pid> finds); ESRCH when there is none. */
  liveProcess(pid: number): Process {
    const p = this.processes.get(pid);
    if (p === undefined) throw new KernelError('ESRCH', `no process with pid ${String(pid)}`);
    return p;
  }

  /** Used by fork. */
  newProcess(name: string, mm: MmStruct): Process {
    const p = new Process(this, this.nextPid++, name, mm);
    this.processes.set(p.pid, p);
    return p;
  }

  // ---- KSM and notifiers ---------------------------------------------------------------

  registerKsm(ops: KsmOps): void {
    if (this.ksm !== null) throw new KernelError('EBUSY', 'a KSM engine is already registered');
    this.ksm = ops;
  }

  /** register_memory_notifier(): higher priority runs first. */
  registerMemoryNotifier(fn: MemoryNotifier, prio: number): void {
    this.memoryNotifiers.push({ prio, fn });
    this.memoryNotifiers.sort((a, b) => b.prio - a.prio);
  }

  notifyMemory(action: number, arg: MemoryNotify): void {
    for (const n of this.memoryNotifiers) n.fn(action, arg);
  }

  /** Add a deep check run by checkInvariants() (KSM adds its trees and counters). */
  registerInvariantChecker(name: string, check: () => void): void {
    this.invariantCheckers.push({ name, check });
  }

  /**
   * Add a layer's part of the kernel's image: what it saves beside the mm's state,
   * how an untrusted copy is checked, and its restore step (KSM adds its mm_slots,
   * rmap_items, trees and ksmd). src/mm/snapshot.ts has the contract.
   */
  registerImagePart<D>(part: KernelImagePart<D>): void {
    if (this.imageParts.some((p) => p.name === part.name)) throw new KernelError('EBUSY', `an image part named ${part.name} is already registered`);
    this.imageParts.push(part);
  }

  /** The kernel-wide scalars of the image (src/mm/snapshot.ts): time, the pid counter, the PRNG, vmstat. */
  saveState(): KernelState {
    const s: KernelState = { now: this.now, nextPid: this.nextPid, prng: this.prng.getState(), vmstat: { ...this.vmstat } };
    // Only a kernel with THP says anything of it: 2.6.33's images stay as they were.
    if (this.thp !== null) s.thp = saveThpImage(this.thp);
    return s;
  }

  /** Set what saveState() gave (checked by src/mm/snapshot.ts), on a kernel being restored. */
  restoreState(s: KernelState): void {
    this.now = s.now;
    this.nextPid = s.nextPid;
    this.prng.setState(s.prng);
    for (const key of VMSTAT_KEYS) this.vmstat[key] = s.vmstat[key];
    if (this.thp !== null && s.thp !== undefined) restoreThpImage(this.thp, s.thp);
  }

  // ---- time ------------------------------------------------------------------------------

  registerThread(t: KThread): void {
    this.threads.push(t);
  }

  /** Run every kernel thread due within the next `ms` milliseconds, then set the clock. */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new KernelError('EINVAL', `advance() takes a non-negative number of ms, got ${ms}`);
    const end = this.now + ms;
    for (;;) {
      const t = this.nextDueThread(end);
      if (t === null) break;
      const when = t.nextWake()!;
      if (when > this.now) this.now = when;
      t.run(this.now);
    }
    this.now = end;
  }

  /** The thread due soonest, no later than `end`, or null. */
  nextDueThread(end: number): KThread | null {
    let best: KThread | null = null;
    let bestWhen = Infinity;
    for (const t of this.threads) {
      const w = t.nextWake();
      if (w !== null && w <= end && w < bestWhen) {
        best = t;
        bestWhen = w;
      }
    }
    return best;
  }

  // ---- statistics ----------------------------------------------------------------------------

  /** /proc/meminfo figures, in kB as Linux prints them. */
  meminfo(): Record<string, number> {
    const mem = this.mem;
    let anon = 0;
    let mlocked = 0;
    let shmem = 0;
    let swapCached = 0;
    for (let pfn = 0; pfn < mem.nrFrames; pfn++) {
      if (mem.untouched(pfn)) {
        const b = mem.blockOf(pfn);
        pfn = b.startPfn + mem.framesIn(b) - 1; // a block never used holds nothing
        continue;
      }
      const f = mem.flags[pfn]!;
      if ((f & (PG_BUDDY | PG_RESERVED)) !== 0) continue;
      if ((f & PG_ANON) !== 0 && mem.mapcount[pfn]! >= 0) anon++;
      if ((f & PG_SHMEM) !== 0) shmem++;
      if ((f & PG_MLOCKED) !== 0) mlocked++;
      if ((f & PG_SWAPCACHE) !== 0) swapCached++;
    }
    const kb = PAGE_SIZE / 1024;
    const swapTotal = this.swap === null ? 0 : this.swap.nrSlots;
    const swapFree = this.swap === null ? 0 : this.swap.nrFree;
    return {
      MemTotal: mem.onlineFrames() * kb,
      MemFree: mem.nrFreeOnline * kb,
      SwapCached: swapCached * kb,
      AnonPages: anon * kb,
      Shmem: shmem * kb,
      Mlocked: mlocked * kb,
      SwapTotal: swapTotal * kb,
      SwapFree: swapFree * kb,
      // Kernels with THP only (2.6.33's meminfo had no such line).
      ...(this.thp !== null ? { AnonHugePages: nrAnonThps(this) * 2048 } : {}),
    };
  }

  private registerProcFiles(): void {
    this.sysfs.register('/proc/meminfo', {
      show: () =>
        Object.entries(this.meminfo())
          .map(([k, v]) => `${(k + ':').padEnd(16)}${String(v).padStart(8)} kB\n`)
          .join(''),
    });
    this.sysfs.register('/proc/sys/vm/compact_memory', {
      store: (v) => {
        parseUintKnob('compact_memory', v);
        compactMemory(this);
      },
    });
    this.sysfs.register('/proc/vmstat', {
      show: () =>
        Object.entries(this.vmstat)
          .map(([k, v]) => `${k} ${v}\n`)
          .join('') + (this.thp !== null ? thpVmstatLines(this.thp) : ''),
    });
  }

  // ---- invariants ------------------------------------------------------------------------------

  /**
   * The deep check: the mm's own (check.ts: every frame's references and mappings
   * recounted from the page tables, swap cache, shmem files and pins; every area,
   * anon_vma, LRU list and swap slot), then every registered checker (KSM's).
   * Throws InvariantError naming the first thing that broke.
   */
  checkInvariants(): void {
    checkMmInvariants(this);
    for (const c of this.invariantCheckers) c.check();
  }

  /** Pins: get_user_pages' extra references. */
  addPin(pfn: number): void {
    this.mem.getPage(pfn);
    this.pins.set(pfn, (this.pins.get(pfn) ?? 0) + 1);
  }

  dropPin(pfn: number): void {
    const c = this.pins.get(pfn);
    if (c === undefined) bug(`unpin of pfn ${pfn} which holds no pin`);
    if (c === 1) this.pins.delete(pfn);
    else this.pins.set(pfn, c - 1);
    this.mem.putPage(pfn);
  }

  isPinned(pfn: number): boolean {
    return this.pins.has(pfn);
  }
}
