import { InvariantError, KernelError, bug } from '../lib/errors.js';
import { Prng } from '../lib/prng.js';
import {
  PAGE_SIZE,
  PG_ANON,
  PG_BUDDY,
  PG_KSM,
  PG_LRU,
  PG_MLOCKED,
  PG_OFFLINE,
  PG_RESERVED,
  PG_SHMEM,
  PG_SWAPCACHE,
  PTE_KIND_MASK,
  PTE_MIGRATION,
  PTE_PRESENT,
  PTE_SPECIAL,
  PTE_SWAP,
  decodePte,
  hexAddr,
  ptePayload,
} from './constants.js';
import type { KsmOps } from './ksm-ops.js';
import type { MmStruct } from './mm.js';
import { PhysMem } from './physmem.js';
import { Process } from './process.js';
import { SwapDevice } from './swap.js';
import { Sysfs, parseUintKnob } from './sysfs.js';
import { compactMemory, migratePage } from './migrate.js';
import { registerMemorySysfs } from './hotplug.js';
import { shrinkPages } from './swapops.js';
import type { AnonVma, ShmemFile } from './vma.js';

export interface KernelOptions {
  /** RAM in MiB (a multiple of blockMiB). */
  memoryMiB?: number;
  /** Swap device size in MiB; 0 for none. */
  swapMiB?: number;
  /** Memory block size in MiB (a power of two; 128 as on x86-64 Linux). */
  blockMiB?: number;
  /** Seed of the kernel's PRNG. */
  seed?: number;
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

/** Memory notifier actions (include/linux/memory.h). */
export const MEM_ONLINE = 1 << 0;
export const MEM_GOING_OFFLINE = 1 << 1;
export const MEM_CANCEL_ONLINE = 1 << 2;
export const MEM_OFFLINE = 1 << 3;
export const MEM_GOING_ONLINE = 1 << 4;
export const MEM_CANCEL_OFFLINE = 1 << 5;

export interface MemoryNotify {
  startPfn: number;
  nrPages: number;
}

export type MemoryNotifier = (action: number, arg: MemoryNotify) => void;

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

/**
 * The simulated host kernel: physical memory, swap, processes and their address
 * spaces, sysfs/procfs files, and simulated time with its kernel threads.
 *
 * Time only moves in `advance(ms)`: every thread due in that span runs at its due
 * time, in due-time order (ties in registration order). Nothing reads a clock or
 * Math.random; `prng` is the one source of randomness.
 */
export class HostKernel {
  /** The options it was built with, defaults filled in (a snapshot rebuilds from them). */
  readonly options: Readonly<Required<KernelOptions>>;
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
  readonly vmstat: VmStat;
  /** The pid the next process gets. Public for src/ksm/snapshot.ts only. */
  nextPid: number;

  constructor(opts: KernelOptions = {}) {
    const memoryMiB = opts.memoryMiB ?? 512;
    const blockMiB = opts.blockMiB ?? 128;
    const swapMiB = opts.swapMiB ?? 0;
    if (!Number.isInteger(swapMiB) || swapMiB < 0) {
      throw new KernelError('EINVAL', `swapMiB must be a non-negative integer, got ${swapMiB}`);
    }
    this.options = { memoryMiB, swapMiB, blockMiB, seed: opts.seed ?? 1 };
    this.mem = new PhysMem({ memoryMiB, blockMiB });
    this.swap = swapMiB > 0 ? new SwapDevice(swapMiB) : null;
    this.sysfs = new Sysfs();
    this.prng = new Prng(opts.seed ?? 1);
    this.now = 0;
    this.threads = [];
    this.processes = new Map();
    this.ksm = null;
    this.pins = new Map();
    this.memoryNotifiers = [];
    this.invariantCheckers = [];
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
    this.registerProcFiles();
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

  /** Migrate one anonymous or KSM page to a new frame; returns the new frame. */
  migratePage(pfn: number): number {
    return migratePage(this, pfn);
  }

  /** Compact every online memory block (writing /proc/sys/vm/compact_memory); returns pages moved. */
  compactMemory(): number {
    return compactMemory(this);
  }

  // ---- processes -------------------------------------------------------------------

  /** A new process with an empty address space (think: exec of a fresh program). */
  spawn(name: string): Process {
    const p = new Process(this, this.nextPid++, name, null);
    this.processes.set(p.pid, p);
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
          .join(''),
    });
  }

  // ---- invariants ------------------------------------------------------------------------------

  /**
   * The deep check: recount every frame's references and mappings from the page
   * tables, the swap cache, shmem files and pins, and compare with the metadata;
   * check every mm's areas and every anon_vma; then run registered checkers (KSM).
   * Throws InvariantError naming the first thing that broke.
   */
  checkInvariants(): void {
    const mem = this.mem;
    const n = mem.nrFrames;
    const mapped = new Int32Array(n);
    const refs = new Int32Array(n);
    const swapRefs = this.swap === null ? null : new Int32Array(this.swap.nrSlots + 1);
    const anonVmas = new Set<AnonVma>();
    const shmems = new Set<ShmemFile>();

    for (const p of this.processes.values()) {
      const mm = p.mm;
      let prevEnd = 0;
      for (const vma of mm.vmas) {
        const where = `${vma}`;
        if (vma.mm !== mm) throw new InvariantError(`${where}: vma.mm is ${vma.mm.owner}`);
        if (vma.start % PAGE_SIZE !== 0 || vma.end % PAGE_SIZE !== 0 || vma.end <= vma.start) {
          throw new InvariantError(`${where}: bad bounds`);
        }
        if (vma.start < prevEnd) throw new InvariantError(`${where}: overlaps or is out of order`);
        prevEnd = vma.end;
        if (vma.anonVma !== null) {
          if (vma.anonVma.freed) throw new InvariantError(`${where}: uses freed anon_vma ${vma.anonVma.id}`);
          if (!vma.anonVma.vmas.includes(vma)) throw new InvariantError(`${where}: not on its anon_vma ${vma.anonVma.id}'s list`);
          anonVmas.add(vma.anonVma);
        }
        if (vma.shmem !== null) shmems.add(vma.shmem);
      }
      // The messages below name the pte as `${where}`; the string is built only when
      // one is thrown (every pte of every process passes here on each check).
      const where = { addr: 0, pte: 0, toString: (): string => `${mm.owner} ${hexAddr(where.addr)} (${decodePte(where.pte)})` };
      mm.forEachPte(0, Number.MAX_SAFE_INTEGER, (addr, pte) => {
        const vma = mm.vmaAt(addr);
        where.addr = addr;
        where.pte = pte;
        if (vma === null) throw new InvariantError(`${where}: pte outside any vma`);
        switch (pte & PTE_KIND_MASK) {
          case PTE_PRESENT: {
            const pfn = ptePayload(pte);
            if (pfn >= n) throw new InvariantError(`${where}: pfn beyond memory`);
            if ((pte & PTE_SPECIAL) !== 0) {
              if (pfn !== mem.zeroPfn) throw new InvariantError(`${where}: special pte not on the zero page`);
              return;
            }
            if ((mem.flags[pfn]! & (PG_BUDDY | PG_OFFLINE)) !== 0) {
              throw new InvariantError(`${where}: maps a free frame: ${mem.describe(pfn)}`);
            }
            mapped[pfn]!++;
            refs[pfn]!++;
            const f = mem.flags[pfn]!;
            if ((f & PG_ANON) !== 0 && (f & PG_KSM) === 0) {
              if (mem.mapping[pfn] !== vma.anonVma) {
                throw new InvariantError(`${where}: anon page's anon_vma is not the area's: ${mem.describe(pfn)}`);
              }
              if (vma.addressOf(mem.index[pfn]!) !== addr) {
                throw new InvariantError(`${where}: page index ${mem.index[pfn]} does not map back to this address`);
              }
            } else if ((f & PG_KSM) !== 0) {
              if (vma.anonVma === null) throw new InvariantError(`${where}: KSM page in an area without anon_vma`);
            } else if ((f & PG_SHMEM) === 0) {
              throw new InvariantError(`${where}: maps a page that is neither anon nor shmem: ${mem.describe(pfn)}`);
            }
            return;
          }
          case PTE_SWAP: {
            const off = ptePayload(pte);
            if (swapRefs === null || off < 1 || off > swapRefs.length - 1) throw new InvariantError(`${where}: swap entry with no such slot`);
            swapRefs[off]!++;
            return;
          }
          case PTE_MIGRATION:
            throw new InvariantError(`${where}: migration entry left behind`);
          default:
            throw new InvariantError(`${where}: unknown pte kind`);
        }
      });
    }
    for (const av of anonVmas) {
      for (const vma of av.vmas) {
        if (vma.anonVma !== av) throw new InvariantError(`anon_vma ${av.id} lists ${vma} which uses another anon_vma`);
        if (!vma.mm.vmas.includes(vma)) throw new InvariantError(`anon_vma ${av.id} lists ${vma} which is no longer mapped`);
      }
    }
    for (const sf of shmems) {
      for (const pfn of sf.pages.values()) refs[pfn]!++;
    }
    for (const [pfn, c] of this.pins) refs[pfn]! += c;
    if (this.swap !== null) {
      const sw = this.swap;
      let used = 0;
      for (let off = 1; off <= sw.nrSlots; off++) {
        if (sw.refs[off] !== swapRefs![off]) {
          throw new InvariantError(`swap slot ${off}: swap_map count ${sw.refs[off]} but ${swapRefs![off]} swap ptes`);
        }
        const c = sw.cache[off]!;
        if (c !== -1) {
          refs[c]!++;
          if ((mem.flags[c]! & PG_SWAPCACHE) === 0 || mem.private[c] !== off) {
            throw new InvariantError(`swap slot ${off}: cached by ${mem.describe(c)} which does not point back`);
          }
        }
        if (sw.refs[off]! > 0 || c !== -1) used++;
      }
      if (used !== sw.usedSlots) throw new InvariantError(`swap: ${sw.usedSlots} slots counted in use, ${used} really`);
    }
    // Frames
    let free = 0;
    const lruCount = new Int32Array(3);
    for (let pfn = 0; pfn < n; pfn++) {
      const f = mem.flags[pfn]!;
      if ((f & PG_BUDDY) !== 0) {
        if (mem.count[pfn] !== 0 || mem.mapcount[pfn] !== -1 || mem.mapping[pfn] !== null || (f & ~(PG_BUDDY | PG_OFFLINE)) !== 0) {
          throw new InvariantError(`free frame in use: ${mem.describe(pfn)}`);
        }
        const b = mem.blockOf(pfn);
        if (b.online && !b.isolated) free++;
        continue;
      }
      if (pfn === mem.zeroPfn) {
        // Its own reference, plus get_user_pages pins (follow_page() takes a
        // reference on the zero page too); special ptes never count.
        if (mem.count[pfn] !== 1 + refs[pfn]! || mem.mapcount[pfn] !== -1 || (f & PG_RESERVED) === 0) {
          throw new InvariantError(`zero page disturbed: ${mem.describe(pfn)} (expected count ${1 + refs[pfn]!})`);
        }
        continue;
      }
      if (mem.pageMapcount(pfn) !== mapped[pfn]) {
        throw new InvariantError(`${mem.describe(pfn)}: mapcount ${mem.pageMapcount(pfn)} but ${mapped[pfn]} ptes map it`);
      }
      if (mem.count[pfn] !== refs[pfn]) {
        throw new InvariantError(`${mem.describe(pfn)}: count ${mem.count[pfn]} but ${refs[pfn]} references (ptes, swap cache, shmem, pins)`);
      }
      if (refs[pfn] === 0) throw new InvariantError(`${mem.describe(pfn)}: in use with no reference`);
      if ((f & PG_LRU) !== 0) lruCount[mem.lruListOf(pfn)]!++;
    }
    if (free !== mem.nrFreeOnline) throw new InvariantError(`allocator counts ${mem.nrFreeOnline} free frames, ${free} really`);
    for (let l = 0; l < 3; l++) {
      let walked = 0;
      for (let p = mem.lruHead[l]!; p >= 0; p = mem.lruNext[p]!) {
        if (++walked > n) throw new InvariantError(`LRU list ${l} has a cycle`);
        if ((mem.flags[p]! & PG_LRU) === 0 || mem.lruListOf(p) !== l) throw new InvariantError(`LRU list ${l} holds ${mem.describe(p)}`);
      }
      if (walked !== lruCount[l] || walked !== mem.lruSize[l]) {
        throw new InvariantError(`LRU list ${l}: size ${mem.lruSize[l]}, walked ${walked}, flagged ${lruCount[l]}`);
      }
    }
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
