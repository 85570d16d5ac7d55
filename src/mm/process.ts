import { KernelError, assertNever, bug } from '../lib/errors.js';
import { MAX_RW_COUNT, checkAddr, checkBytes, checkInt, checkKnownKeys, checkOptions, checkString, describe } from '../lib/validate.js';
import {
  MMF_INIT_MASK,
  MMF_VM_MERGEABLE,
  PAGE_SIZE,
  PTE_DIRTY,
  PTE_KIND_MASK,
  PTE_PRESENT,
  PTE_SPECIAL,
  PTE_WRITE,
  PTE_YOUNG,
  TASK_SIZE,
  VM_DONTCOPY,
  VM_DONTEXPAND,
  VM_EXEC,
  VM_HUGETLB,
  VM_IO,
  VM_LOCKED,
  VM_MAYEXEC,
  VM_MAYREAD,
  VM_MAYSHARE,
  VM_MAYWRITE,
  VM_MERGEABLE,
  VM_MIXEDMAP,
  VM_PFNMAP,
  VM_READ,
  VM_SHARED,
  VM_WRITE,
  hexAddr,
  ptePayload,
  ptePresent,
  pteClear,
  pteSet,
} from './constants.js';
import type { HostKernel } from './kernel.js';
import {
  VM_FAULT_OOM,
  VM_FAULT_SIGBUS,
  VM_FAULT_WRITE,
  copyPageRange,
  handleMmFault,
  mlockVmaPage,
  munlockVmaPage,
  unlinkVma,
  zapRange,
} from './memory.js';
import type { PrctlOption } from './ksm-ops.js';
import { MmStruct } from './mm.js';
import { newMemSizeStats, pagemapFrames, smapGatherStats, type MemSizeStats } from './task-mmu.js';
import { ShmemFile, Vma } from './vma.js';
import { HPAGE_PMD_SIZE, hugepageMadvise, splitHugeAtBoundary, thpGetUnmappedArea } from './huge-memory.js';

export type Prot = 'none' | 'r' | 'rw';
export type Advice = 'MADV_MERGEABLE' | 'MADV_UNMERGEABLE' | 'MADV_DONTNEED' | 'MADV_NORMAL' | 'MADV_HUGEPAGE' | 'MADV_NOHUGEPAGE';

/** Device-like mappings, for what madvise and fork treat specially. */
export type MapSpecial = 'hugetlb' | 'pfnmap' | 'io' | 'dontexpand' | 'mixedmap' | 'dontcopy';

export interface MmapOptions {
  prot?: Prot;
  /** MAP_SHARED|MAP_ANONYMOUS instead of MAP_PRIVATE|MAP_ANONYMOUS. */
  shared?: boolean;
  /** vm_flags a driver or hugetlbfs would set on the area. */
  special?: readonly MapSpecial[];
}

/** A get_user_pages() pin: one extra reference on a frame until released. */
export interface Pin {
  readonly pfn: number;
  release(): void;
}

const SPECIAL_FLAGS: Record<MapSpecial, number> = {
  hugetlb: VM_HUGETLB,
  pfnmap: VM_PFNMAP | VM_IO,
  io: VM_IO,
  dontexpand: VM_DONTEXPAND,
  mixedmap: VM_MIXEDMAP,
  dontcopy: VM_DONTCOPY,
};

function protFlags(prot: Prot, what: string): number {
  switch (prot) {
    case 'none':
      return 0;
    case 'r':
      return VM_READ;
    case 'rw':
      return VM_READ | VM_WRITE;
    default:
      throw new KernelError('EINVAL', `${what}: prot must be 'none', 'r' or 'rw', got ${describe(prot)}`);
  }
}

function protName(flags: number): Prot {
  return (flags & VM_WRITE) !== 0 ? 'rw' : (flags & VM_READ) !== 0 ? 'r' : 'none';
}

/**
 * A process: a name, a pid and an address space, with the system calls the model
 * offers. Every call that fails throws KernelError before changing anything, except
 * where Linux itself applies part of a request first (mprotect, madvise and mlock
 * over a range with holes: the mapped parts are done, then ENOMEM).
 */
export class Process {
  readonly kernel: HostKernel;
  readonly pid: number;
  readonly name: string;
  readonly mm: MmStruct;
  alive: boolean;

  constructor(kernel: HostKernel, pid: number, name: string, mm: MmStruct | null) {
    this.kernel = kernel;
    this.pid = pid;
    this.name = name;
    this.mm = mm ?? new MmStruct(name);
    this.alive = true;
  }

  private live(what: string): void {
    if (!this.alive) throw new KernelError('ESRCH', `${what}: process ${this.name} (pid ${this.pid}) has exited`);
  }

  /**
   * Validate [addr, addr+len) as madvise/mprotect/munmap take it, in the kernel's
   * order: the start's alignment, then the length (rounded up to pages; one that
   * wraps is EINVAL), then the end. Returns the page-aligned end.
   */
  private range(what: string, addr: unknown, len: unknown, zeroOk: boolean): number {
    if (typeof addr !== 'number' || !Number.isSafeInteger(addr) || addr < 0 || addr % PAGE_SIZE !== 0) {
      throw new KernelError('EINVAL', `${what}: expected a page-aligned start, found ${typeof addr === 'number' && Number.isSafeInteger(addr) && addr >= 0 ? hexAddr(addr) : describe(addr)}`);
    }
    if (typeof len !== 'number' || !Number.isSafeInteger(len) || len < 0 || (len === 0 && !zeroOk)) {
      throw new KernelError('EINVAL', `${what}: expected a length that is a ${zeroOk ? 'whole number ≥ 0' : 'positive whole number'}, found ${describe(len)}`);
    }
    const end = addr + Math.ceil(len / PAGE_SIZE) * PAGE_SIZE;
    if (end > TASK_SIZE) throw new KernelError('EINVAL', `${what}: range ${hexAddr(addr)}+${len} goes beyond the user address space`);
    return end;
  }

  // ---- mmap / munmap ------------------------------------------------------------------

  /** mmap(NULL, len, prot, MAP_PRIVATE|MAP_ANONYMOUS (or MAP_SHARED), -1, 0) */
  mmap(len: number, optsIn: MmapOptions = {}): number {
    this.live('mmap');
    // do_mmap_pgoff(): a length of 0 is EINVAL; one that rounds past the address
    // space is ENOMEM (found below, when no room is left).
    if (typeof len !== 'number' || !Number.isSafeInteger(len) || len <= 0) throw new KernelError('EINVAL', `mmap: expected a length that is a positive whole number, found ${describe(len)}`);
    const opts = checkOptions('mmap: options', optsIn) as MmapOptions;
    checkKnownKeys('mmap: options', opts as Record<string, unknown>, ['prot', 'shared', 'special']);
    let flags = protFlags(opts.prot ?? 'rw', 'mmap') | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
    if (opts.shared !== undefined && typeof opts.shared !== 'boolean') throw new KernelError('EINVAL', `mmap: shared: expected true or false, found ${describe(opts.shared)}`);
    if (opts.shared === true) flags |= VM_SHARED | VM_MAYSHARE;
    const special: unknown = opts.special ?? [];
    if (!Array.isArray(special)) throw new KernelError('EINVAL', `mmap: special: expected a list of special mappings, found ${describe(special)}`);
    for (const s of special as unknown[]) {
      const f = typeof s === 'string' && Object.prototype.hasOwnProperty.call(SPECIAL_FLAGS, s) ? SPECIAL_FLAGS[s as MapSpecial] : undefined;
      if (f === undefined) throw new KernelError('EINVAL', `mmap: unknown special mapping ${describe(s)} (known: ${Object.keys(SPECIAL_FLAGS).join(', ')})`);
      flags |= f;
    }
    // ksm_vma_flags(): with whole-process merging on, KSM makes the area
    // VM_MERGEABLE before it exists, so it can merge with mergeable neighbours.
    if (this.kernel.ksm !== null) flags = this.kernel.ksm.vmaFlags(this.mm, flags);
    const size = Math.ceil(len / PAGE_SIZE) * PAGE_SIZE;
    // __get_unmapped_area(): with THP (6.7+), a private anonymous mapping whose
    // length is a multiple of 2 MiB starts on a 2 MiB boundary.
    let addr = -1;
    if (this.kernel.thp !== null && opts.shared !== true && size % HPAGE_PMD_SIZE === 0) addr = thpGetUnmappedArea(this.mm, size);
    if (addr < 0) addr = this.mm.getUnmappedArea(size);
    if (addr < 0) throw new KernelError('ENOMEM', `mmap: no room for ${size} bytes in ${this.name}'s address space`);
    const vma = new Vma(this.mm, addr, addr + size, flags, addr / PAGE_SIZE);
    if (opts.shared === true) {
      vma.shmem = new ShmemFile();
      vma.shmem.users = 1;
      vma.pgoff = 0;
    }
    this.mm.insertVma(vma);
    // mmap_region() → vma_merge(): an anonymous area next to a compatible one (same
    // flags, contiguous pgoff, no conflicting anon_vma) extends it instead.
    if (vma.shmem === null) this.mergeAround(this.mm.vmas.indexOf(vma));
    return addr;
  }

  /** munmap(addr, len): unmapping nothing is not an error. */
  munmap(addr: number, len: number): void {
    this.live('munmap');
    const end = this.range('munmap', addr, len, false);
    this.unmapRange(addr, end);
  }

  private unmapRange(start: number, end: number): void {
    const mm = this.mm;
    this.splitAt(start);
    this.splitAt(end);
    let i = mm.findVmaIndex(start);
    while (i < mm.vmas.length && mm.vmas[i]!.start < end) {
      const vma = mm.vmas[i]!;
      zapRange(this.kernel, vma, vma.start, vma.end);
      mm.vmas.splice(i, 1);
      unlinkVma(this.kernel, vma);
    }
  }

  /** split_vma() at addr when an area straddles it. */
  private splitAt(addr: number): void {
    const mm = this.mm;
    const vma = mm.vmaAt(addr);
    if (vma === null || vma.start === addr) return;
    // vma_adjust_trans_huge(): no THP may straddle the new boundary.
    splitHugeAtBoundary(this.kernel, mm, addr);
    const tail = new Vma(mm, addr, vma.end, vma.flags, vma.pgoff + (addr - vma.start) / PAGE_SIZE);
    tail.anonVma = vma.anonVma;
    tail.shmem = vma.shmem;
    if (tail.shmem !== null) tail.shmem.users++;
    vma.end = addr;
    if (tail.anonVma !== null) tail.anonVma.link(tail);
    mm.insertVma(tail);
  }

  /** vma_merge() of vmas[i] with its neighbours where nothing tells them apart. */
  private mergeAround(i: number): void {
    const mm = this.mm;
    if (i + 1 < mm.vmas.length && this.mergeable(mm.vmas[i]!, mm.vmas[i + 1]!)) this.mergeInto(mm.vmas[i]!, mm.vmas[i + 1]!);
    if (i > 0 && i < mm.vmas.length && this.mergeable(mm.vmas[i - 1]!, mm.vmas[i]!)) this.mergeInto(mm.vmas[i - 1]!, mm.vmas[i]!);
  }

  private mergeable(a: Vma, b: Vma): boolean {
    return (
      a.end === b.start &&
      a.flags === b.flags &&
      a.shmem === b.shmem &&
      a.pgoff + a.pages === b.pgoff &&
      (a.anonVma === null || b.anonVma === null || a.anonVma === b.anonVma)
    );
  }

  private mergeInto(a: Vma, b: Vma): void {
    a.end = b.end;
    if (a.anonVma === null && b.anonVma !== null) {
      a.anonVma = b.anonVma;
      a.anonVma.link(a);
    }
    this.mm.removeVma(b);
    if (b.anonVma !== null) b.anonVma.unlink(b);
    if (b.shmem !== null) b.shmem.users--;
  }

  /**
   * Apply `change` to every area overlapping [start, end): it returns the area's new
   * flags (or throws); areas whose flags change are split at the range's edges and
   * merged with neighbours afterwards. Returns false when the range had holes.
   * `stopAtHole` makes it stop at the first hole, as mprotect and mlock do.
   */
  private applyRange(start: number, end: number, stopAtHole: boolean, change: (vma: Vma, s: number, e: number) => number): boolean {
    const mm = this.mm;
    let addr = start;
    let holes = false;
    while (addr < end) {
      const vma = mm.findVma(addr);
      if (vma === null || vma.start >= end) {
        holes = true;
        break;
      }
      if (vma.start > addr) {
        holes = true;
        if (stopAtHole) break;
        addr = vma.start;
      }
      const s = addr;
      const e = Math.min(end, vma.end);
      const newFlags = change(vma, s, e);
      if (newFlags !== vma.flags) {
        this.splitAt(s);
        this.splitAt(e);
        const target = mm.vmaAt(s)!;
        target.flags = newFlags;
        this.mergeAround(mm.vmas.indexOf(target));
      }
      addr = e;
    }
    return !holes;
  }

  // ---- mprotect / madvise / mlock -----------------------------------------------------------

  /** mprotect(addr, len, prot) */
  mprotect(addr: number, len: number, prot: Prot): void {
    this.live('mprotect');
    const end = this.range('mprotect', addr, len, true);
    const bits = protFlags(prot, 'mprotect');
    if (end === addr) return;
    const first = this.mm.findVma(addr);
    if (first === null || first.start > addr) throw new KernelError('ENOMEM', `mprotect: ${hexAddr(addr)} is not mapped in ${this.name}`);
    const ok = this.applyRange(addr, end, true, (vma, s, e) => {
      const nf = (vma.flags & ~(VM_READ | VM_WRITE | VM_EXEC)) | bits;
      // change_protection(): dropping write permission write-protects the ptes;
      // granting it leaves them read-only, so a private page still faults and COWs.
      if ((nf & VM_WRITE) === 0 && (vma.flags & VM_WRITE) !== 0) {
        this.mm.forEachPte(s, e, (_a, pte, table, slot) => {
          if (ptePresent(pte)) table[slot] = pteClear(pte, PTE_WRITE);
        });
      }
      return nf;
    });
    if (!ok) throw new KernelError('ENOMEM', `mprotect: ${hexAddr(addr)}-${hexAddr(end)} has unmapped holes in ${this.name} (the mapped part before the first hole was changed)`);
  }

  /** madvise(addr, len, advice) */
  madvise(addr: number, len: number, advice: Advice): void {
    this.live('madvise');
    // sys_madvise(): the advice first (madvise_behavior_valid), then the range.
    if (advice !== 'MADV_MERGEABLE' && advice !== 'MADV_UNMERGEABLE' && advice !== 'MADV_DONTNEED' && advice !== 'MADV_NORMAL' && advice !== 'MADV_HUGEPAGE' && advice !== 'MADV_NOHUGEPAGE') {
      throw new KernelError('EINVAL', `madvise: unknown advice ${describe(advice)}`);
    }
    // madvise_behavior_valid(): a kernel without THP (2.6.33) knows no such advice.
    if ((advice === 'MADV_HUGEPAGE' || advice === 'MADV_NOHUGEPAGE') && this.kernel.thp === null) {
      throw new KernelError('EINVAL', `madvise: ${advice} needs transparent huge pages, and this kernel has none`);
    }
    const end = this.range('madvise', addr, len, true);
    const ksm = this.kernel.ksm;
    if ((advice === 'MADV_MERGEABLE' || advice === 'MADV_UNMERGEABLE') && ksm === null) {
      throw new KernelError('EINVAL', `madvise: ${advice} needs KSM, and this kernel has none (CONFIG_KSM=n)`);
    }
    if (end === addr) return;
    // Linux zaps area by area and stops at a locked one with EINVAL, the areas before
    // it already emptied. Here every area is checked first, so a refused
    // MADV_DONTNEED discards nothing (a difference the README lists).
    if (advice === 'MADV_DONTNEED') {
      for (const vma of this.mm.vmas) {
        if (vma.end <= addr || vma.start >= end) continue;
        if ((vma.flags & (VM_LOCKED | VM_HUGETLB | VM_PFNMAP)) !== 0) {
          throw new KernelError('EINVAL', `madvise(MADV_DONTNEED): ${vma} is locked, hugetlb or pfnmap (nothing was discarded)`);
        }
      }
    }
    const ok = this.applyRange(addr, end, false, (vma, s, e) => {
      switch (advice) {
        case 'MADV_DONTNEED':
          if ((vma.flags & (VM_LOCKED | VM_HUGETLB | VM_PFNMAP)) !== 0) {
            throw new KernelError('EINVAL', `madvise(MADV_DONTNEED): ${vma} is locked, hugetlb or pfnmap`);
          }
          zapRange(this.kernel, vma, s, e);
          return vma.flags;
        case 'MADV_NORMAL':
          return vma.flags;
        case 'MADV_MERGEABLE':
        case 'MADV_UNMERGEABLE':
          return ksm!.madvise(vma, s, e, advice, vma.flags);
        case 'MADV_HUGEPAGE':
        case 'MADV_NOHUGEPAGE':
          // hugepage_madvise(): only the flags; THPs already there stay.
          return hugepageMadvise(vma.flags, advice);
        default:
          return assertNever(advice, 'madvise advice');
      }
    });
    if (!ok) throw new KernelError('ENOMEM', `madvise: ${hexAddr(addr)}-${hexAddr(end)} has unmapped holes in ${this.name} (the mapped parts were advised)`);
  }

  /**
   * prctl(option, arg2, arg3, arg4, arg5) for the options KSM answers
   * (PR_SET_MEMORY_MERGE, PR_GET_MEMORY_MERGE): their result. The arguments are
   * unsigned longs. A kernel without KSM, or whose KSM predates whole-process
   * merging, does not know the options: EINVAL, as prctl() answers any unknown one.
   */
  prctl(option: PrctlOption, arg2 = 0, arg3 = 0, arg4 = 0, arg5 = 0): number {
    this.live('prctl');
    if (option !== 'PR_SET_MEMORY_MERGE' && option !== 'PR_GET_MEMORY_MERGE') {
      throw new KernelError('EINVAL', `prctl: unknown option ${describe(option)} (this model knows PR_SET_MEMORY_MERGE and PR_GET_MEMORY_MERGE)`);
    }
    const args = [arg2, arg3, arg4, arg5];
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (!Number.isSafeInteger(a) || a! < 0) throw new KernelError('EINVAL', `prctl(${option}): arg${i + 2} must be an unsigned long, got ${describe(a)}`);
    }
    const ksm = this.kernel.ksm;
    if (ksm === null) throw new KernelError('EINVAL', `prctl(${option}) needs KSM, and this kernel has none (CONFIG_KSM=n)`);
    return ksm.prctl(this.mm, option, arg2, arg3, arg4, arg5);
  }

  /** mlock(addr, len): lock the areas and fault every page in (writable private pages are COWed now). */
  mlock(addr: number, len: number): void {
    this.live('mlock');
    // sys_mlock(): the start is rounded down to its page and the length grows by as much.
    checkAddr('mlock: start', addr);
    checkAddr('mlock: length', len);
    const start = Math.floor(addr / PAGE_SIZE) * PAGE_SIZE;
    const end = this.range('mlock', start, len + (addr - start), true);
    if (end === start) return;
    const first = this.mm.findVma(start);
    if (first === null || first.start > start) throw new KernelError('ENOMEM', `mlock: ${hexAddr(start)} is not mapped in ${this.name}`);
    const ok = this.applyRange(start, end, true, (vma) => vma.flags | VM_LOCKED);
    // __mlock_vma_pages_range(): populate; write-fault where the area is private and writable.
    for (let a = start; a < end; a += PAGE_SIZE) {
      const vma = this.mm.vmaAt(a);
      if (vma === null) break;
      if ((vma.flags & (VM_READ | VM_WRITE)) === 0) continue;
      const write = (vma.flags & (VM_WRITE | VM_SHARED)) === VM_WRITE;
      const pfn = this.faultIn(vma, a, write, false);
      if (pfn !== this.kernel.mem.zeroPfn) mlockVmaPage(this.kernel, pfn);
    }
    if (!ok) throw new KernelError('ENOMEM', `mlock: ${hexAddr(start)}-${hexAddr(end)} has unmapped holes in ${this.name}`);
  }

  /** munlock(addr, len) */
  munlock(addr: number, len: number): void {
    this.live('munlock');
    // sys_munlock(): the start is rounded down to its page and the length grows by as much.
    checkAddr('munlock: start', addr);
    checkAddr('munlock: length', len);
    const start = Math.floor(addr / PAGE_SIZE) * PAGE_SIZE;
    const end = this.range('munlock', start, len + (addr - start), true);
    if (end === start) return;
    const first = this.mm.findVma(start);
    if (first === null || first.start > start) throw new KernelError('ENOMEM', `munlock: ${hexAddr(start)} is not mapped in ${this.name}`);
    const ok = this.applyRange(start, end, true, (vma, s, e) => {
      if ((vma.flags & VM_LOCKED) === 0) return vma.flags;
      this.mm.forEachPte(s, e, (_a, pte) => {
        if (ptePresent(pte) && (pte & PTE_SPECIAL) === 0) munlockVmaPage(this.kernel, ptePayload(pte), vma);
      });
      return vma.flags & ~VM_LOCKED;
    });
    if (!ok) throw new KernelError('ENOMEM', `munlock: ${hexAddr(start)}-${hexAddr(end)} has unmapped holes in ${this.name}`);
  }

  // ---- fork / exit ----------------------------------------------------------------------

  /** fork(): a child whose address space is a copy-on-write copy of ours. */
  fork(name: string = this.name): Process {
    this.live('fork');
    checkString('fork: name', name);
    const k = this.kernel;
    const mm = new MmStruct(name);
    // dup_mm(): the child's mm starts as a copy of ours, of which the flags in
    // MMF_INIT_MASK survive mm_init() (a 6.x whole-process merge is inherited).
    mm.flags = this.mm.flags & MMF_INIT_MASK;
    // The child's memory policy is its parent's.
    mm.node = this.mm.node;
    // So is its KSM merge domain (model-only, mm.ts).
    mm.ksmMergeDomain = this.mm.ksmMergeDomain;
    // dup_mmap() calls ksm_fork() before copying any area.
    if ((this.mm.flags & MMF_VM_MERGEABLE) !== 0 && k.ksm !== null) k.ksm.fork(mm, this.mm);
    for (const vma of this.mm.vmas) {
      if ((vma.flags & VM_DONTCOPY) !== 0) continue;
      const nv = new Vma(mm, vma.start, vma.end, vma.flags & ~VM_LOCKED, vma.pgoff);
      nv.anonVma = vma.anonVma;
      if (nv.anonVma !== null) nv.anonVma.link(nv);
      nv.shmem = vma.shmem;
      if (nv.shmem !== null) nv.shmem.users++;
      mm.vmas.push(nv);
      copyPageRange(k, mm, this.mm, vma);
    }
    return k.newProcess(name, mm);
  }

  /** exit(): mmput() — ksm_exit() first, then exit_mmap() tears the address space down. */
  exit(): void {
    this.live('exit');
    const k = this.kernel;
    const mm = this.mm;
    this.alive = false;
    mm.mmUsers = 0;
    if ((mm.flags & MMF_VM_MERGEABLE) !== 0 && k.ksm !== null) k.ksm.exit(mm);
    for (const vma of mm.vmas) zapRange(k, vma, vma.start, vma.end);
    for (const vma of mm.vmas) unlinkVma(k, vma);
    mm.vmas.length = 0;
    mm.pgtables.clear();
    mm.mmCount--; // mmdrop()
    k.processes.delete(this.pid);
  }

  // ---- memory access -------------------------------------------------------------------------

  /**
   * Check that every page of [addr, addr+len) is mapped with the access needed
   * (`force`: /proc/pid/mem, which only needs the area to exist). Throws EFAULT
   * before anything is touched.
   */
  private checkAccess(what: string, addr: number, len: number, write: boolean, force: boolean): void {
    // The length is the caller's count (EINVAL when it is not one; above MAX_RW_COUNT
    // too, see the README's differences); the address is a pointer, EFAULT when bad.
    // A negative count is, as a size_t, a range past the end of memory: EFAULT.
    if (typeof len !== 'number' || !Number.isSafeInteger(len) || len > MAX_RW_COUNT) {
      throw new KernelError('EINVAL', `${what}: expected a length from 0 to ${MAX_RW_COUNT} (MAX_RW_COUNT), found ${describe(len)}`);
    }
    if (typeof addr !== 'number' || !Number.isSafeInteger(addr) || addr < 0 || len < 0 || addr + len > TASK_SIZE) {
      throw new KernelError('EFAULT', `${what}: bad address range ${describe(addr)}+${len}`);
    }
    const mm = this.mm;
    let a = addr;
    const end = addr + len;
    while (a < end) {
      const vma = mm.vmaAt(a);
      if (vma === null) throw new KernelError('EFAULT', `${what} of ${len} bytes at ${hexAddr(addr)}: nothing mapped at ${hexAddr(a)} in ${this.name}`);
      const need = force ? 0 : write ? VM_WRITE : VM_READ;
      if ((vma.flags & need) !== need) {
        throw new KernelError('EFAULT', `${what} of ${len} bytes at ${hexAddr(addr)}: ${vma} has prot ${protName(vma.flags)}`);
      }
      if (force && write && (vma.flags & VM_MAYWRITE) === 0) {
        throw new KernelError('EFAULT', `${what} at ${hexAddr(a)}: ${vma} may never be written`);
      }
      a = vma.end;
    }
  }

  /**
   * get_user_pages() for one page: fault until the pte maps a page we may read (or,
   * for write, a page that is ours to write: COW broken). Returns its pfn.
   */
  private faultIn(vma: Vma, addr: number, write: boolean, force: boolean): number {
    const mm = this.mm;
    for (let tries = 0; tries < 8; tries++) {
      const pte = mm.getPte(addr);
      if (ptePresent(pte)) {
        if (!write) {
          if ((pte & PTE_YOUNG) === 0) mm.setPte(addr, pteSet(pte, PTE_YOUNG));
          return ptePayload(pte);
        }
        if ((pte & PTE_WRITE) !== 0) {
          if ((pte & (PTE_YOUNG | PTE_DIRTY)) !== (PTE_YOUNG | PTE_DIRTY)) mm.setPte(addr, pteSet(pte, PTE_YOUNG | PTE_DIRTY));
          return ptePayload(pte);
        }
      }
      const r = handleMmFault(this.kernel, vma, addr, write);
      if ((r & VM_FAULT_OOM) !== 0) throw new KernelError('ENOMEM', `out of memory faulting ${hexAddr(addr)} in ${this.name}`);
      if ((r & VM_FAULT_SIGBUS) !== 0) throw new KernelError('EFAULT', `SIGBUS at ${hexAddr(addr)} in ${this.name}`);
      // A forced write into an area without VM_WRITE leaves a private, read-only pte.
      if (write && (force || (vma.flags & VM_WRITE) === 0) && (r & VM_FAULT_WRITE) !== 0) {
        return ptePayload(mm.getPte(addr));
      }
    }
    return bug(`fault at ${hexAddr(addr)} in ${this.name} does not settle (pte ${mm.getPte(addr)})`);
  }

  private vmaFor(addr: number, cached: Vma | null): Vma {
    if (cached !== null && addr >= cached.start && addr < cached.end) return cached;
    const vma = this.mm.vmaAt(addr);
    if (vma === null) bug(`checked range lost its mapping at ${hexAddr(addr)}`);
    return vma;
  }

  /** Read len bytes at addr through the MMU. */
  read(addr: number, length: number): Uint8Array {
    this.live('read');
    this.checkAccess('read', addr, length, false, false);
    return this.copyOut(addr, length);
  }

  /** Read even PROT_NONE memory, as /proc/pid/mem does. */
  peekMem(addr: number, length: number): Uint8Array {
    this.live('peek');
    this.checkAccess('read of /proc/pid/mem', addr, length, false, true);
    return this.copyOut(addr, length);
  }

  private copyOut(addr: number, length: number): Uint8Array {
    const mem = this.kernel.mem;
    const out = new Uint8Array(length);
    const outBuf = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    let vma: Vma | null = null;
    let done = 0;
    while (done < length) {
      const a = addr + done;
      const pageAddr = a - (a % PAGE_SIZE);
      const inPage = Math.min(PAGE_SIZE - (a - pageAddr), length - done);
      vma = this.vmaFor(a, vma);
      const pfn = this.faultIn(vma, pageAddr, false, false);
      const v = mem.view(pfn);
      const off = v.off + (a - pageAddr);
      v.buf.copy(outBuf, done, off, off + inPage);
      done += inPage;
    }
    return out;
  }

  /** Write bytes at addr through the MMU. */
  write(addr: number, bytes: ArrayBufferView): void {
    this.live('write');
    const b = checkBytes('write: bytes', bytes);
    this.checkAccess('write', addr, b.byteLength, true, false);
    this.copyIn(addr, b, false);
  }

  /** Write like /proc/pid/mem: ignores PROT_NONE and read-only, still copy-on-write. */
  pokeMem(addr: number, bytes: ArrayBufferView): void {
    this.live('poke');
    const b = checkBytes('write to /proc/pid/mem: bytes', bytes);
    this.checkAccess('write to /proc/pid/mem', addr, b.byteLength, true, true);
    this.copyIn(addr, b, true);
  }

  private copyIn(addr: number, bytes: Uint8Array, force: boolean): void {
    const mem = this.kernel.mem;
    // A Buffer is used as it is: callers writing page after page (a guest booting)
    // pass one reused Buffer, so nothing is allocated per page.
    const src = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let vma: Vma | null = null;
    let done = 0;
    while (done < bytes.length) {
      const a = addr + done;
      const pageAddr = a - (a % PAGE_SIZE);
      const inPage = Math.min(PAGE_SIZE - (a - pageAddr), bytes.length - done);
      vma = this.vmaFor(a, vma);
      const pfn = this.faultIn(vma, pageAddr, true, force);
      mem.writeBytes(pfn, a - pageAddr, src, done, inPage);
      done += inPage;
    }
  }

  /**
   * Write a whole page at `addr` (page-aligned) whose bytes generator `g` of the
   * kernel's content store (store.registerGenerator) makes from the key k0..k3: the
   * same fault as write() of those 4096 bytes, so every mm and KSM decision is the
   * same, but the frame names the generated content instead of holding a copy
   * (identical pages of many guests name one content, and none of it is stored).
   */
  writeGeneratedPage(addr: number, g: number, k0: number, k1: number, k2: number, k3: number): void {
    this.live('write');
    this.checkAccess('write', addr, PAGE_SIZE, true, false);
    if (addr % PAGE_SIZE !== 0) throw new KernelError('EINVAL', `writeGeneratedPage: expected a page-aligned address, got ${hexAddr(addr)}`);
    checkInt('writeGeneratedPage: generator', g, 0, this.kernel.mem.store.nrGenerators() - 1);
    // The key is four 32-bit words, as the store keeps it: another number would name
    // a content no generator was asked for.
    checkInt('writeGeneratedPage: k0', k0, 0, 0xffffffff);
    checkInt('writeGeneratedPage: k1', k1, 0, 0xffffffff);
    checkInt('writeGeneratedPage: k2', k2, 0, 0xffffffff);
    checkInt('writeGeneratedPage: k3', k3, 0, 0xffffffff);
    const pfn = this.faultIn(this.vmaFor(addr, null), addr, true, false);
    this.kernel.mem.setContent(pfn, this.kernel.mem.store.internSource(g, k0, k1, k2, k3));
  }

  /** write() of a whole page (page-aligned `addr`) every byte of which is `value`: the frame names the fill. */
  writeFilledPage(addr: number, value: number): void {
    this.live('write');
    this.checkAccess('write', addr, PAGE_SIZE, true, false);
    if (addr % PAGE_SIZE !== 0) throw new KernelError('EINVAL', `writeFilledPage: expected a page-aligned address, got ${hexAddr(addr)}`);
    checkInt('writeFilledPage: value (a byte)', value, 0, 0xff);
    const pfn = this.faultIn(this.vmaFor(addr, null), addr, true, false);
    this.kernel.mem.fillBytes(pfn, 0, value, PAGE_SIZE);
  }

  /** memset(addr, value, len) through the MMU. */
  memset(addr: number, value: number, length: number): void {
    this.live('memset');
    // memset(3) takes an int and stores it as an unsigned char.
    checkInt('memset: value', value, -0x80000000, 0xffffffff);
    this.checkAccess('memset', addr, length, true, false);
    const mem = this.kernel.mem;
    const mm = this.mm;
    const v = value & 0xff;
    let vma: Vma | null = null;
    let done = 0;
    while (done < length) {
      const a = addr + done;
      const pageAddr = a - (a % PAGE_SIZE);
      const inPage = Math.min(PAGE_SIZE - (a - pageAddr), length - done);
      // Fast path: a present, writable pte needs no fault.
      const pte = mm.getPte(pageAddr);
      let pfn: number;
      if ((pte & (PTE_KIND_MASK | PTE_WRITE)) === (PTE_PRESENT | PTE_WRITE)) {
        if ((pte & (PTE_YOUNG | PTE_DIRTY)) !== (PTE_YOUNG | PTE_DIRTY)) mm.setPte(pageAddr, pteSet(pte, PTE_YOUNG | PTE_DIRTY));
        pfn = ptePayload(pte);
      } else {
        vma = this.vmaFor(a, vma);
        pfn = this.faultIn(vma, pageAddr, true, false);
      }
      mem.fillBytes(pfn, a - pageAddr, v, inPage);
      done += inPage;
    }
  }

  /** The NUMA node this process's pages come from first (spawn's `node`, inherited over fork). */
  get node(): number {
    return this.mm.node;
  }

  /** The KSM merge domain of this process's mm (spawn's `mergeDomain`, inherited over fork). */
  get mergeDomain(): string {
    return this.mm.ksmMergeDomain;
  }

  /** Like /proc/pid/pagemap: the frame mapped at addr, or null (none, or swapped out). */
  pfnOf(addr: number): number | null {
    // A pagemap read at an offset past the address space reads nothing: EINVAL here.
    if (typeof addr !== 'number' || !Number.isSafeInteger(addr) || addr < 0 || addr >= TASK_SIZE) {
      throw new KernelError('EINVAL', `pfnOf: expected a user address below ${hexAddr(TASK_SIZE)}, found ${describe(addr)}`);
    }
    const pte = this.mm.getPte(addr - (addr % PAGE_SIZE));
    return ptePresent(pte) ? ptePayload(pte) : null;
  }

  /**
   * /proc/<pid>/smaps over [addr, addr+len): resident, swapped and KSM pages there
   * (mm/task-mmu.ts), added into `into` when given (to sum several ranges, as
   * smaps_rollup does). Unmapped parts count nothing.
   */
  smaps(addr: number, len: number, into: MemSizeStats = newMemSizeStats()): MemSizeStats {
    checkAddr('smaps: start', addr);
    checkAddr('smaps: length', len);
    smapGatherStats(this.kernel, this.mm, addr, addr + len, into);
    return into;
  }

  /** /proc/<pid>/smaps_rollup: smaps() over every area, in address order. */
  smapsRollup(): MemSizeStats {
    const mss = newMemSizeStats();
    for (const vma of this.mm.vmas) smapGatherStats(this.kernel, this.mm, vma.start, vma.end, mss);
    return mss;
  }

  /**
   * /proc/<pid>/pagemap over [addr, addr+len): the frames of the normal pages mapped
   * there, in address order, appended to `into` when given.
   */
  residentFrames(addr: number, len: number, into: number[] = []): number[] {
    checkAddr('pagemap: start', addr);
    checkAddr('pagemap: length', len);
    if (!Array.isArray(into)) throw new KernelError('EINVAL', `pagemap: expected a list to append to, found ${describe(into)}`);
    pagemapFrames(this.mm, addr, addr + len, into);
    return into;
  }

  /** get_user_pages(): fault the page in (breaking COW for write) and hold it. */
  pin(addr: number, optsIn: { write?: boolean } = {}): Pin {
    this.live('pin');
    const opts = checkOptions('pin: options', optsIn);
    checkKnownKeys('pin: options', opts, ['write']);
    if (opts.write !== undefined && typeof opts.write !== 'boolean') throw new KernelError('EINVAL', `pin: write: expected true or false, found ${describe(opts.write)}`);
    const write = opts.write === true;
    this.checkAccess('get_user_pages', addr, 1, write, false);
    const pageAddr = addr - (addr % PAGE_SIZE);
    const pfn = this.faultIn(this.mm.vmaAt(pageAddr)!, pageAddr, write, false);
    const k = this.kernel;
    k.addPin(pfn);
    let held = true;
    return {
      pfn,
      release: () => {
        if (!held) throw new KernelError('EINVAL', `pin of pfn ${pfn} already released`);
        held = false;
        k.dropPin(pfn);
      },
    };
  }

  /** The areas, like /proc/pid/maps. */
  maps(): { start: number; end: number; prot: Prot; shared: boolean; mergeable: boolean; locked: boolean }[] {
    return this.mm.vmas.map((v) => ({
      start: v.start,
      end: v.end,
      prot: protName(v.flags),
      shared: (v.flags & VM_SHARED) !== 0,
      mergeable: (v.flags & VM_MERGEABLE) !== 0,
      locked: (v.flags & VM_LOCKED) !== 0,
    }));
  }
}
