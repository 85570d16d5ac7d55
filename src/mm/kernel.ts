import { KernelError, bug } from '../lib/errors.js';
import { Prng } from '../lib/prng.js';
import { MAX_WAKEUPS_PER_CALL, checkBool, checkCount, checkFinite, checkInt, checkKnownKeys, checkOneOf, checkOptions, checkRecord, checkString, describe } from '../lib/validate.js';
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
import { THP_MODES, TransparentHugepage, nrAnonThps, registerThpSysfs, restoreThpImage, saveThpImage, thpVmstatLines, type ThpImage, type ThpOptions } from './huge-memory.js';

export interface KernelOptions {
  /**
   * RAM in MiB, at most 4 TiB (MAX_MEMORY_MIB). Memory blocks of blockMiB each, the
   * last one partial when blockMiB does not divide it (32 MiB is one partial 128 MiB block).
   */
  memoryMiB?: number;
  /** Swap device size in MiB (at most 4 TiB); 0 for none. */
  swapMiB?: number;
  /** Memory block size in MiB: a power of two up to 2048 (Linux's largest, 2 GiB); 128 as on x86-64. */
  blockMiB?: number;
  /** Seed of the kernel's PRNG. */
  seed?: number;
  /** NUMA nodes, each a run of whole memory blocks (physmem.ts): 1 to the number of blocks; default 1. */
  nodes?: number;
  /**
   * Transparent huge pages (src/mm/huge-memory.ts), or null for a kernel without
   * them (2.6.33, the default). The KSM side sets it from the kernel profile.
   */
  thp?: ThpOptions | null;
}

/** The largest memory block Linux has (x86-64's MAX_BLOCK_SIZE): 2 GiB. */
export const MAX_BLOCK_MIB = 2048;
/** The most swap a kernel (and its image) takes: as many slots as a swap pte addresses (constants.ts). */
export const MAX_SWAP_MIB = MAX_MEMORY_MIB;

const KERNEL_OPTIONS = ['memoryMiB', 'swapMiB', 'blockMiB', 'seed', 'nodes', 'thp'] as const;
const THP_OPTIONS = ['mode', 'remapZeroSubpages'] as const;
const SPAWN_OPTIONS = ['node', 'mergeDomain'] as const;

/**
 * KernelOptions checked, defaults filled in. The same limits bind a kernel image's
 * options (src/mm/snapshot.ts), so a kernel this accepts always saves an image that
 * restores.
 */
export function checkKernelOptions(optsIn: unknown): Required<Omit<KernelOptions, 'thp'>> & { thp: ThpOptions | null } {
  const o = checkOptions('Kernel options', optsIn);
  checkKnownKeys('Kernel options', o, KERNEL_OPTIONS);
  const blockMiB = o.blockMiB === undefined ? 128 : checkInt('Kernel options: blockMiB', o.blockMiB, 1, MAX_BLOCK_MIB);
  if ((blockMiB & (blockMiB - 1)) !== 0) throw new KernelError('EINVAL', `Kernel options: blockMiB: expected a power of two up to ${MAX_BLOCK_MIB}, found ${blockMiB}`);
  const memoryMiB = o.memoryMiB === undefined ? 512 : checkInt('Kernel options: memoryMiB', o.memoryMiB, 1, Number.MAX_SAFE_INTEGER);
  if (memoryMiB > MAX_MEMORY_MIB) throw new KernelError('EINVAL', `Kernel options: memoryMiB ${memoryMiB} exceeds the ${MAX_MEMORY_MIB} MiB (4 TiB) a pte can address`);
  const swapMiB = o.swapMiB === undefined ? 0 : checkInt('Kernel options: swapMiB', o.swapMiB, 0, Number.MAX_SAFE_INTEGER);
  if (swapMiB > MAX_SWAP_MIB) throw new KernelError('EINVAL', `Kernel options: swapMiB ${swapMiB} exceeds the ${MAX_SWAP_MIB} MiB (4 TiB) of slots a swap pte can address`);
  const seed = o.seed === undefined ? 1 : checkInt('Kernel options: seed', o.seed, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  const nodes = o.nodes === undefined ? 1 : checkInt('Kernel options: nodes (one memory block at least each)', o.nodes, 1, Math.ceil(memoryMiB / blockMiB));
  let thp: ThpOptions | null = null;
  if (o.thp !== undefined && o.thp !== null) {
    const t = checkRecord('Kernel options: thp', o.thp);
    checkKnownKeys('Kernel options: thp', t, THP_OPTIONS);
    thp = {
      remapZeroSubpages: checkBool('Kernel options: thp.remapZeroSubpages', t.remapZeroSubpages),
      ...(t.mode === undefined ? {} : { mode: checkOneOf('Kernel options: thp.mode', t.mode, THP_MODES) }),
    };
  }
  return { memoryMiB, swapMiB, blockMiB, seed, nodes, thp };
}

/** A KSM merge domain name (mergeDomainProblem's rules), else EINVAL. */
export function checkMergeDomain(what: string, d: unknown): string {
  const problem = mergeDomainProblem(d);
  if (problem !== null) throw new KernelError('EINVAL', `${what} ${problem}`);
  return d as string;
}

/**
 * A kernel thread on simulated time: `nextWake()` says when it next wants to run
 * (null: asleep until something wakes it), `run(now)` does one slice of work.
 */
export interface KThread {
  readonly name: string;
  nextWake(): number | null;
  run(now: number): void;
  /** About how many times it would run in the next `ms` if nothing changed (advance()'s bound). */
  wakeupsWithin(ms: number): number;
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

  constructor(optsIn: KernelOptions = {}) {
    const opts = checkKernelOptions(optsIn);
    const { memoryMiB, blockMiB, swapMiB, nodes } = opts;
    this.options = { memoryMiB, swapMiB, blockMiB, seed: opts.seed, nodes };
    this.mem = new PhysMem({ memoryMiB, blockMiB, nodes });
    this.swap = swapMiB > 0 ? new SwapDevice(swapMiB, this.mem.store) : null;
    this.sysfs = new Sysfs();
    this.prng = new Prng(opts.seed);
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
    // memory.reclaim takes any size; more pages than exist is simply all it can do.
    return shrinkPages(this, checkCount('reclaim: pages', pages));
  }

  /**
   * Migrate one anonymous or KSM page to a new frame; returns the new frame. `node`:
   * the NUMA node to move it to (move_pages()); by default its own.
   */
  migratePage(pfn: number, node?: number): number {
    const p = checkInt('migratePage: pfn', pfn, 0, this.mem.nrFrames - 1);
    const nid = node === undefined ? -1 : checkInt('migratePage: node', node, 0, this.mem.nrNodes - 1);
    return migratePage(this, p, -1, nid);
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
  spawn(name: string, optsIn: { node?: number; mergeDomain?: string } = {}): Process {
    checkString('spawn: name', name);
    const opts = checkOptions('spawn: options', optsIn);
    checkKnownKeys('spawn: options', opts, SPAWN_OPTIONS);
    const node = opts.node === undefined ? 0 : checkInt('spawn: node', opts.node, 0, this.mem.nrNodes - 1);
    const domain = opts.mergeDomain === undefined ? '' : checkMergeDomain('spawn: mergeDomain', opts.mergeDomain);
    const p = new Process(this, this.nextPid++, name, null);
    p.mm.node = node;
    p.mm.ksmMergeDomain = domain;
    this.processes.set(p.pid, p);
    return p;
  }

  /** The live process with this pid (what /proc/<pid> finds); ESRCH when there is none. */
  liveProcess(pid: number): Process {
    const p = this.processes.get(pid);
    if (p === undefined) throw new KernelError('ESRCH', `no process with pid ${describe(pid)}`);
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
    const end = this.checkSpan('advance', ms);
    for (;;) {
      const t = this.nextDueThread(end);
      if (t === null) break;
      const when = t.nextWake()!;
      if (when > this.now) this.now = when;
      t.run(this.now);
    }
    this.now = end;
  }

  /**
   * Check a span of simulated time about to be run; returns when it ends. Refused up
   * front: a span that is not a number ≥ 0 (EINVAL); one ending past 2^53 ms, where
   * times stop being exact and a thread's next wakeup would equal now (EOVERFLOW);
   * one whose threads would need more than MAX_WAKEUPS_PER_CALL wakeups (E2BIG):
   * ksmd wakes every sleep_millisecs (at least 1 ms) while it has work.
   */
  checkSpan(what: string, ms: unknown): number {
    const span = checkFinite(`${what}(ms)`, ms, 0, Number.MAX_VALUE);
    const end = this.now + span;
    if (end > Number.MAX_SAFE_INTEGER) {
      throw new KernelError('EOVERFLOW', `${what}: simulated time would reach ${end} ms, past 2^53 ms where it stops being exact (now ${this.now} ms)`);
    }
    let wakeups = 0;
    for (const t of this.threads) wakeups += t.wakeupsWithin(span);
    if (wakeups > MAX_WAKEUPS_PER_CALL) {
      throw new KernelError('E2BIG', `${what}(${describe(ms)}): the kernel's threads would wake about ${Math.round(wakeups)} times, more than the ${MAX_WAKEUPS_PER_CALL} one call may take; advance in smaller steps`);
    }
    return end;
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
