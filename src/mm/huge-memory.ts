import { InvariantError, KernelError, assert } from '../lib/errors.js';
import {
  PAGE_SIZE,
  PG_ANON,
  PG_BUDDY,
  PG_HEAD,
  PG_KSM,
  PG_MLOCKED,
  PG_OFFLINE,
  PG_SHMEM,
  PG_SWAPCACHE,
  PG_TAIL,
  PTE_DIRTY,
  PTE_KIND_MASK,
  PTE_PRESENT,
  PTE_SPECIAL,
  PTE_WRITE,
  PTE_YOUNG,
  VM_HUGEPAGE,
  VM_HUGETLB,
  VM_LOCKED,
  VM_NOHUGEPAGE,
  VM_SHARED,
  VM_WRITE,
  decodePte,
  hexAddr,
  mkPte,
  ptePayload,
} from './constants.js';
import type { HostKernel } from './kernel.js';
import { PMD_SIZE, PTRS_PER_PTE, type MmStruct } from './mm.js';
import { SWAP_AGAIN, pageAddNewAnonRmap, pageRemoveRmap, rmapWalk, type RmapWalkControl } from './rmap.js';
import { fail, found, int, obj } from '../lib/snapshot.js';
import type { AnonVma, Vma } from './vma.js';

/*
 * Transparent huge pages (mm/huge_memory.c, as of Linux 6.18), for anonymous memory.
 *
 * What a THP is here. 512 frames from a 512-aligned pfn, the first flagged PG_HEAD,
 * the others PG_TAIL, made by one order-9 allocation at a write fault and mapped
 * whole at a 2 MiB-aligned address of one area. Linux maps it with one pmd entry and
 * keeps its references and mappings on the folio (entire_mapcount); the model keeps
 * the 512 ptes and a count and mapcount per frame, exactly as if each subpage were
 * mapped by its own pte. Every mm path (rmap, fork, zap, COW, smaps, KSM's scan)
 * then works on a THP's subpages unchanged, and a THP is told apart by its flags.
 * The road not taken: a pmd-level entry in the page tables, which every pte walker
 * (fork, zap, mprotect, smaps, pagemap, KSM's scan, snapshots) would have to learn.
 *
 * Invariants (checkHugeInvariants):
 * - a kernel without THP (`k.thp === null`: 2.6.33) has no PG_HEAD or PG_TAIL frame;
 * - the 512 frames of a THP are anonymous, of one anon_vma, with consecutive
 *   indexes, the same mapcount, never KSM, shmem, free or in the swap cache;
 * - every pte that maps a subpage sits where a pmd mapping would put it, and the
 *   pte that maps the head is followed by the 511 that map the tails, in order:
 *   a THP is mapped whole or not at all, in every mm that maps it.
 *
 * So anything that would map a THP in part splits it first:
 * - split_huge_page() proper (splitHugePage) where Linux splits the folio: KSM, to
 *   merge a subpage. It fails when a subpage has references beyond its mappings and
 *   the caller's one (a pin). In 6.12+ (`remapZeroSubpages`) every zero-filled
 *   subpage then maps the shared zero page instead, in every mm (mm/migrate.c
 *   try_to_map_unused_to_zeropage()), unless mlocked: such pages leave every
 *   statistic, KSM's included.
 * - splitHugePmd, where Linux splits only the pmd and leaves a pte-mapped large folio
 *   for the deferred split: munmap, mprotect or madvise of part of a THP, a COW fault
 *   on a THP that fork shares, and (a simplification) reclaim, migration, compaction
 *   and offlining, which Linux can do to a THP whole. The model cannot hold a
 *   pte-mapped large folio, so it makes small pages at once, with no zero-page
 *   remap (the deferred split's shrinker would remap, under memory pressure only).
 *   README, "Differences from Linux", lists both.
 */

/** Subpages of a PMD-sized THP (HPAGE_PMD_NR) and its allocation order. */
export const HPAGE_PMD_NR = PTRS_PER_PTE;
export const HPAGE_PMD_ORDER = 9;
export const HPAGE_PMD_SIZE = PMD_SIZE;

/** /sys/kernel/mm/transparent_hugepage/enabled. */
export type ThpMode = 'always' | 'madvise' | 'never';
export const THP_MODES: readonly ThpMode[] = ['always', 'madvise', 'never'];

export const THP_SYSFS_DIR = '/sys/kernel/mm/transparent_hugepage';

/** What a kernel with THP is built with (the KSM side chooses it from the kernel profile). */
export interface ThpOptions {
  /** The boot-time mode (CONFIG_TRANSPARENT_HUGEPAGE_MADVISE: 'madvise', as Debian builds it). */
  mode?: ThpMode;
  /** 6.12+: split_huge_page() maps zero-filled subpages to the shared zero page. */
  remapZeroSubpages: boolean;
}

/** /proc/vmstat's THP counters the model keeps (include/linux/vm_event_item.h). */
export interface ThpVmStat {
  thp_fault_alloc: number;
  thp_fault_fallback: number;
  thp_split_page: number;
  thp_split_page_failed: number;
  thp_split_pmd: number;
}
const THP_VMSTAT_KEYS: readonly (keyof ThpVmStat)[] = ['thp_fault_alloc', 'thp_fault_fallback', 'thp_split_page', 'thp_split_page_failed', 'thp_split_pmd'];

/** The kernel's THP state: its mode, its build switches and its counters. */
export class TransparentHugepage {
  mode: ThpMode;
  readonly remapZeroSubpages: boolean;
  readonly vmstat: ThpVmStat;

  constructor(opts: ThpOptions) {
    this.mode = opts.mode ?? 'madvise';
    this.remapZeroSubpages = opts.remapZeroSubpages;
    this.vmstat = { thp_fault_alloc: 0, thp_fault_fallback: 0, thp_split_page: 0, thp_split_page_failed: 0, thp_split_pmd: 0 };
  }
}

/** VM_FAULT_FALLBACK: no THP here; the caller maps a small page. */
export const VM_FAULT_FALLBACK = 0x0800;

/** PageTransCompound(): the frame is part of a THP. */
export function isThpFrame(flags: Uint32Array, pfn: number): boolean {
  return (flags[pfn]! & (PG_HEAD | PG_TAIL)) !== 0;
}

/** compound_head() of a THP frame. */
export function thpHead(pfn: number): number {
  return pfn - (pfn & (HPAGE_PMD_NR - 1));
}

/**
 * thp_vma_allowable_order() for an anonymous private area: MADV_NOHUGEPAGE never;
 * 'always' everywhere else; 'madvise' only where MADV_HUGEPAGE asked.
 */
export function thpVmaAllowable(thp: TransparentHugepage, vma: Vma): boolean {
  if ((vma.flags & (VM_NOHUGEPAGE | VM_HUGETLB | VM_SHARED)) !== 0 || vma.shmem !== null) return false;
  switch (thp.mode) {
    case 'always':
      return true;
    case 'madvise':
      return (vma.flags & VM_HUGEPAGE) !== 0;
    case 'never':
      return false;
    default: {
      const never: never = thp.mode;
      return never;
    }
  }
}

/**
 * __alloc_pages(order 9): 512 free frames from a 512-aligned pfn, zeroed, each with
 * count 1. The model's allocator keeps a free list per memory block, not buddy lists,
 * so it looks for the lowest aligned run of free frames (lowest block first, as for
 * single frames). No compaction or reclaim is tried for it: with defrag `madvise`
 * Linux would compact for a MADV_HUGEPAGE area first (README, "Differences").
 * Returns the head, or -1.
 */
function allocHugeFrames(k: HostKernel): number {
  const mem = k.mem;
  for (const block of mem.blocks) {
    if (!block.online || block.isolated || block.nrFree < HPAGE_PMD_NR) continue;
    mem.initBlock(block); // the store gives a block its frames' metadata at first use
    const end = block.startPfn + mem.framesIn(block);
    let head = block.startPfn + ((HPAGE_PMD_NR - (block.startPfn & (HPAGE_PMD_NR - 1))) & (HPAGE_PMD_NR - 1));
    for (; head + HPAGE_PMD_NR <= end; head += HPAGE_PMD_NR) {
      let free = true;
      for (let i = 0; i < HPAGE_PMD_NR; i++) {
        if ((mem.flags[head + i]! & (PG_BUDDY | PG_OFFLINE)) !== PG_BUDDY) {
          free = false;
          break;
        }
      }
      if (!free) continue;
      for (let i = 0; i < HPAGE_PMD_NR; i++) {
        const pfn = head + i;
        const got = mem.allocSpecificFrame(pfn);
        assert(got, () => `order-9 allocation: pfn ${pfn} was free and then was not`);
        // clear_huge_page(): every subpage zeroed, whatever it held before (the zero fill in the store).
        mem.fillBytes(pfn, 0, 0, PAGE_SIZE);
      }
      return head;
    }
  }
  return -1;
}

/**
 * do_huge_pmd_anonymous_page(): a write fault at `addr` in an area that may have
 * THPs, whose aligned 2 MiB range lies inside the area and maps nothing yet
 * (pmd_none), gets a whole THP: 512 zeroed subpages, writable, young and dirty.
 * VM_FAULT_FALLBACK when any of that does not hold or no order-9 block is free
 * (thp_fault_fallback), and the caller maps a small page.
 */
export function doHugePmdAnonymousPage(k: HostKernel, vma: Vma, addr: number, anonVmaPrepare: (vma: Vma) => AnonVma): number {
  const thp = k.thp;
  if (thp === null || (vma.flags & VM_WRITE) === 0 || !thpVmaAllowable(thp, vma)) return VM_FAULT_FALLBACK;
  const haddr = addr - (addr % HPAGE_PMD_SIZE);
  if (haddr < vma.start || haddr + HPAGE_PMD_SIZE > vma.end) return VM_FAULT_FALLBACK;
  const mm = vma.mm;
  const table = mm.table(haddr);
  if (table !== null) {
    for (let i = 0; i < PTRS_PER_PTE; i++) if (table[i] !== 0) return VM_FAULT_FALLBACK;
  }
  anonVmaPrepare(vma);
  const head = allocHugeFrames(k);
  if (head < 0) {
    thp.vmstat.thp_fault_fallback++;
    return VM_FAULT_FALLBACK;
  }
  thp.vmstat.thp_fault_alloc++;
  const mem = k.mem;
  for (let i = 0; i < HPAGE_PMD_NR; i++) {
    const pfn = head + i;
    const a = haddr + i * PAGE_SIZE;
    mm.setPte(a, mkPte(pfn, PTE_YOUNG | PTE_WRITE | PTE_DIRTY));
    pageAddNewAnonRmap(k, pfn, vma, a);
    mem.flags[pfn]! |= i === 0 ? PG_HEAD : PG_TAIL;
  }
  return 0x0008; // VM_FAULT_WRITE
}

/** Clear the compound bits of the THP holding `pfn`: its frames become small pages. */
function demote(k: HostKernel, head: number): void {
  const flags = k.mem.flags;
  for (let i = 0; i < HPAGE_PMD_NR; i++) flags[head + i]! &= ~(PG_HEAD | PG_TAIL);
}

/**
 * The model's split_huge_pmd() (see the notes above): the THP holding `pfn` becomes
 * 512 small pages, mapped where they were, in every mm. Cannot fail.
 */
export function splitHugePmd(k: HostKernel, pfn: number): void {
  if (!isThpFrame(k.mem.flags, pfn)) return;
  demote(k, thpHead(pfn));
  k.thp!.vmstat.thp_split_pmd++;
}

/** try_to_map_unused_to_zeropage() over every pte that maps one subpage. */
class ZeroRemapWalk implements RmapWalkControl {
  k: HostKernel | null = null;

  rmapOne(pfn: number, vma: Vma, addr: number): number {
    const k = this.k!;
    const mm = vma.mm;
    const pte = mm.getPte(addr);
    if ((pte & PTE_KIND_MASK) !== PTE_PRESENT || (pte & PTE_SPECIAL) !== 0 || ptePayload(pte) !== pfn) return SWAP_AGAIN;
    if ((vma.flags & VM_LOCKED) !== 0) return SWAP_AGAIN;
    // pte_mkspecial(pfn_pte(zero_pfn)): not dirty, which keeps it apart from the zero
    // pages KSM maps (is_ksm_zero_pte() wants the dirty bit): no KSM statistic counts it.
    mm.setPte(addr, mkPte(k.mem.zeroPfn, PTE_SPECIAL));
    pageRemoveRmap(k, pfn);
    k.mem.putPage(pfn);
    return SWAP_AGAIN;
  }

  done(): boolean {
    return false;
  }
}
const scratchZeroRemapWalk = new ZeroRemapWalk();

/**
 * split_huge_page(page) (mm/huge_memory.c __folio_split(), 6.18): split the THP
 * holding `pfn` into small pages. `held` is a frame the caller holds one reference
 * on (KSM holds the page it merges), or -1. can_split_folio(): every subpage must
 * have no reference beyond its mappings (and the caller's): a pinned THP stays
 * whole and the split fails (false, thp_split_page_failed). Then, 6.12+, each
 * zero-filled subpage that no VM_LOCKED area maps and that is not mlocked is
 * replaced in every mm by the shared zero page (remap_page() with
 * RMP_USE_SHARED_ZEROPAGE); a subpage nobody else holds is freed. `held` is no
 * exception: a caller must check its page is still mapped where it was.
 */
export function splitHugePage(k: HostKernel, pfn: number, held: number): boolean {
  const mem = k.mem;
  const thp = k.thp!;
  const head = thpHead(pfn);
  for (let i = 0; i < HPAGE_PMD_NR; i++) {
    const p = head + i;
    if (mem.count[p] !== mem.mapcount[p]! + 1 + (p === held ? 1 : 0)) {
      thp.vmstat.thp_split_page_failed++;
      return false;
    }
  }
  demote(k, head);
  thp.vmstat.thp_split_page++;
  if (!thp.remapZeroSubpages) return true;
  const w = scratchZeroRemapWalk;
  w.k = k;
  for (let i = 0; i < HPAGE_PMD_NR; i++) {
    const p = head + i;
    if (mem.mapcount[p]! < 0 || (mem.flags[p]! & PG_MLOCKED) !== 0) continue;
    if (mem.firstDifference(p, mem.zeroPfn) !== PAGE_SIZE) continue; // not all zero
    // Hold it across the walk: the last mapping's put must not free a frame the
    // walk is still looking at.
    mem.getPage(p);
    rmapWalk(k, p, w);
    mem.putPage(p);
  }
  w.k = null;
  return true;
}

/**
 * vma_adjust_trans_huge() / the split before a partial zap: a THP that [start, end)
 * of mm covers only in part is split (splitHugePmd), and so is one it covers whole
 * whose frames hold references beyond their mappings (a pin): zapping would free
 * the others and leave that frame a lone part of a THP.
 */
export function splitHugeForRange(k: HostKernel, mm: MmStruct, start: number, end: number): void {
  if (k.thp === null || start >= end) return;
  splitHugeAt(k, mm, start, start, end);
  if (Math.floor((end - 1) / HPAGE_PMD_SIZE) !== Math.floor(start / HPAGE_PMD_SIZE)) splitHugeAt(k, mm, end - 1, start, end);
  // Whole THPs inside: only pins matter.
  const first = Math.ceil(start / HPAGE_PMD_SIZE) * HPAGE_PMD_SIZE;
  const mem = k.mem;
  for (let h = first; h + HPAGE_PMD_SIZE <= end; h += HPAGE_PMD_SIZE) {
    const t = mm.table(h);
    if (t === null) continue;
    const pte = t[0]!;
    if ((pte & PTE_KIND_MASK) !== PTE_PRESENT || (pte & PTE_SPECIAL) !== 0) continue;
    const pfn = ptePayload(pte);
    if ((mem.flags[pfn]! & PG_HEAD) === 0) continue;
    for (let i = 0; i < HPAGE_PMD_NR; i++) {
      if (mem.count[pfn + i] !== mem.mapcount[pfn + i]! + 1) {
        splitHugePmd(k, pfn);
        break;
      }
    }
  }
}

/** Split the THP mapped at `addr` unless [start, end) covers all of it. */
function splitHugeAt(k: HostKernel, mm: MmStruct, addr: number, start: number, end: number): void {
  const haddr = addr - (addr % HPAGE_PMD_SIZE);
  if (haddr >= start && haddr + HPAGE_PMD_SIZE <= end) return;
  const pte = mm.getPte(addr);
  if ((pte & PTE_KIND_MASK) !== PTE_PRESENT || (pte & PTE_SPECIAL) !== 0) return;
  splitHugePmd(k, ptePayload(pte));
}

/** split_vma() at addr: a THP straddling it is split (__split_huge_pmd of vma_adjust_trans_huge()). */
export function splitHugeAtBoundary(k: HostKernel, mm: MmStruct, addr: number): void {
  if (k.thp === null || addr % HPAGE_PMD_SIZE === 0) return;
  const pte = mm.getPte(addr);
  if ((pte & PTE_KIND_MASK) !== PTE_PRESENT || (pte & PTE_SPECIAL) !== 0) return;
  splitHugePmd(k, ptePayload(pte));
}

/**
 * thp_get_unmapped_area() for an anonymous private mapping whose length is a
 * multiple of 2 MiB (6.7+, limited to such lengths by 6.12): look for len + 2 MiB
 * and round the start up to 2 MiB, so the area can hold THPs from its first byte.
 * Returns -1 when there is no room (the caller then takes any gap, as Linux does).
 */
export function thpGetUnmappedArea(mm: MmStruct, len: number): number {
  const base = mm.getUnmappedArea(len + HPAGE_PMD_SIZE);
  if (base < 0) return -1;
  return base + ((HPAGE_PMD_SIZE - (base % HPAGE_PMD_SIZE)) % HPAGE_PMD_SIZE);
}

/** THPs mapped by anyone (NR_ANON_THPS), for /proc/meminfo's AnonHugePages. */
export function nrAnonThps(k: HostKernel): number {
  const mem = k.mem;
  let n = 0;
  for (let pfn = 0; pfn < mem.nrFrames; pfn += HPAGE_PMD_NR) {
    if ((mem.flags[pfn]! & PG_HEAD) !== 0 && mem.mapcount[pfn]! >= 0) n++;
  }
  return n;
}

/** hugepage_madvise(): MADV_HUGEPAGE / MADV_NOHUGEPAGE's new flags for an area. */
export function hugepageMadvise(flags: number, advice: 'MADV_HUGEPAGE' | 'MADV_NOHUGEPAGE'): number {
  return advice === 'MADV_HUGEPAGE' ? (flags & ~VM_NOHUGEPAGE) | VM_HUGEPAGE : (flags & ~VM_HUGEPAGE) | VM_NOHUGEPAGE;
}

/** The files of /sys/kernel/mm/transparent_hugepage the model has. */
export function registerThpSysfs(k: HostKernel, thp: TransparentHugepage): void {
  k.sysfs.register(`${THP_SYSFS_DIR}/enabled`, {
    show: () => THP_MODES.map((m) => (m === thp.mode ? `[${m}]` : m)).join(' ') + '\n',
    // enabled_store(): sysfs_streq() against each mode: a trailing newline is fine.
    store: (v) => {
      const s = v.endsWith('\n') ? v.slice(0, -1) : v;
      const m = THP_MODES.find((x) => x === s);
      if (m === undefined) throw new KernelError('EINVAL', `${THP_SYSFS_DIR}/enabled: expected always, madvise or never, got ${JSON.stringify(v)}`);
      thp.mode = m;
    },
  });
  k.sysfs.register(`${THP_SYSFS_DIR}/hpage_pmd_size`, { show: () => `${HPAGE_PMD_SIZE}\n` });
}

/** /proc/vmstat lines for THP. */
export function thpVmstatLines(thp: TransparentHugepage): string {
  return THP_VMSTAT_KEYS.map((key) => `${key} ${thp.vmstat[key]}\n`).join('');
}

/** The deep check of THPs (the invariants at the top of this file). */
export function checkHugeInvariants(k: HostKernel): void {
  const mem = k.mem;
  const flags = mem.flags;
  let thps = 0;
  for (let pfn = 0; pfn < mem.nrFrames; pfn++) {
    const f = flags[pfn]!;
    if ((f & (PG_HEAD | PG_TAIL)) === 0) continue;
    if (k.thp === null) throw new InvariantError(`${mem.describe(pfn)}: part of a THP in a kernel without THP`);
    thps++;
    const head = thpHead(pfn);
    const i = pfn - head;
    if ((f & PG_HEAD) !== 0 && i !== 0) throw new InvariantError(`${mem.describe(pfn)}: PG_HEAD on a frame that is not 512-aligned`);
    if ((f & PG_TAIL) !== 0 && (i === 0 || (flags[head]! & PG_HEAD) === 0)) throw new InvariantError(`${mem.describe(pfn)}: PG_TAIL without a head at pfn ${head}`);
    if ((f & PG_HEAD) !== 0) {
      for (let j = 1; j < HPAGE_PMD_NR; j++) {
        if ((flags[pfn + j]! & (PG_HEAD | PG_TAIL)) !== PG_TAIL) throw new InvariantError(`THP at pfn ${pfn}: subpage ${j} is ${mem.describe(pfn + j)}`);
      }
    }
    if ((f & (PG_ANON | PG_KSM | PG_SHMEM | PG_BUDDY | PG_SWAPCACHE)) !== PG_ANON) throw new InvariantError(`THP subpage ${mem.describe(pfn)} must be anonymous, not KSM, shmem, free or swap cache`);
    if (mem.mappingOf(pfn) !== mem.mappingOf(head)) throw new InvariantError(`THP subpage ${mem.describe(pfn)} has another anon_vma than its head`);
    if (mem.index[pfn] !== mem.index[head]! + i) throw new InvariantError(`THP subpage ${mem.describe(pfn)} has index ${mem.index[pfn]}, expected ${mem.index[head]! + i}`);
    if (mem.mapcount[pfn] !== mem.mapcount[head]) throw new InvariantError(`THP subpage ${mem.describe(pfn)}: mapcount differs from its head's (${mem.pageMapcount(head)}): mapped in part`);
  }
  if (thps === 0) return;
  for (const p of k.processes.values()) {
    const mm = p.mm;
    mm.forEachPte(0, Number.MAX_SAFE_INTEGER, (addr, pte) => {
      if ((pte & PTE_KIND_MASK) !== PTE_PRESENT || (pte & PTE_SPECIAL) !== 0) return;
      const pfn = ptePayload(pte);
      if ((flags[pfn]! & (PG_HEAD | PG_TAIL)) === 0) return;
      const where = `${mm.owner} ${hexAddr(addr)} (${decodePte(pte)})`;
      if (((addr / PAGE_SIZE) & (HPAGE_PMD_NR - 1)) !== (pfn & (HPAGE_PMD_NR - 1))) throw new InvariantError(`${where}: THP subpage mapped where no pmd mapping would put it`);
      if ((flags[pfn]! & PG_HEAD) === 0) return;
      const vma = mm.vmaAt(addr);
      if (vma === null || addr + HPAGE_PMD_SIZE > vma.end) throw new InvariantError(`${where}: THP mapped beyond its area`);
      const t = mm.table(addr)!;
      for (let j = 1; j < HPAGE_PMD_NR; j++) {
        const q = t[j]!;
        if ((q & PTE_KIND_MASK) !== PTE_PRESENT || (q & PTE_SPECIAL) !== 0 || ptePayload(q) !== pfn + j) throw new InvariantError(`${where}: THP mapped in part (pte ${j}: ${decodePte(q)})`);
      }
    });
  }
}

/** What the kernel's image keeps of THP, beside the frames' flags: the mode and the counters. */
export interface ThpImage {
  mode: ThpMode;
  vmstat: ThpVmStat;
}

export function saveThpImage(thp: TransparentHugepage): ThpImage {
  return { mode: thp.mode, vmstat: { ...thp.vmstat } };
}

/** Check an untrusted ThpImage (throws ImageError naming the field). */
export function checkThpImage(x: unknown, path: string): ThpImage {
  const o = obj(x, path);
  const mode = THP_MODES.find((m) => m === o.mode);
  if (mode === undefined) fail(`${path}.mode`, `expected always, madvise or never, found ${found(o.mode)}`);
  const vs = obj(o.vmstat, `${path}.vmstat`);
  const vmstat = {} as ThpVmStat;
  for (const key of THP_VMSTAT_KEYS) vmstat[key] = int(vs[key], `${path}.vmstat.${key}`, 0, Number.MAX_SAFE_INTEGER);
  return { mode: mode!, vmstat };
}

export function restoreThpImage(thp: TransparentHugepage, img: ThpImage): void {
  thp.mode = img.mode;
  for (const key of THP_VMSTAT_KEYS) thp.vmstat[key] = img.vmstat[key];
}
