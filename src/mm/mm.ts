import { MMAP_BASE, MMAP_MIN_ADDR, PAGE_SIZE, PTE_NONE, hexAddr } from './constants.js';
import type { Vma } from './vma.js';

/** Pages per page table (one pmd entry's worth: 2 MiB of address space). */
export const PTRS_PER_PTE = 512;
/** Address space one page table maps (2 MiB). */
export const PMD_SIZE = PTRS_PER_PTE * PAGE_SIZE;

let nextMmId = 1;

/**
 * mm_struct: one address space.
 *
 * `vmas` is sorted by address and never overlapping (the mmap list; find_vma is a
 * binary search). Page tables are `pgtables`: pmd index (addr / 2 MiB) → a
 * Float64Array of 512 ptes (constants.ts has the pte layout: wider than 32 bits, for
 * 4 TiB of frames); a table exists once
 * any pte in its range was set and is dropped when its area is unmapped.
 *
 * `mmUsers` counts users of the address space (the process; 0 once it exited:
 * ksm_test_exit). `mmCount` counts references to the struct itself (mmgrab/mmdrop):
 * one for the users together, one for KSM's mm_slot while it has one.
 * `flags` holds MMF_ bits.
 */
export class MmStruct {
  readonly id: number;
  /** Name of the owning process, for messages. */
  readonly owner: string;
  readonly vmas: Vma[];
  readonly pgtables: Map<number, Float64Array>;
  mmUsers: number;
  mmCount: number;
  flags: number;
  /** Highest address that mmap may use (mmap_base), searched top down. */
  readonly mmapBase: number;
  /**
   * The NUMA node this address space's pages come from first: its task's memory
   * policy (MPOL_PREFERRED), kept on the mm since a model process is one task.
   */
  node: number;
  /**
   * The KSM merge domain of this address space ('' the common one): KSM merges a
   * page only with pages of mms in the same domain. Not in Linux (see ksm/pages.ts
   * comparePagesInDomains): a model of VMware's page-sharing salt, set at spawn and
   * inherited over fork, like the mm's other KSM state.
   */
  ksmMergeDomain: string;
  /** A one-entry cache of the last page table looked up (a TLB for the simulator). */
  private cachedPmd: number;
  private cachedTable: Float64Array | null;

  constructor(owner: string) {
    this.id = nextMmId++;
    this.owner = owner;
    this.vmas = [];
    this.pgtables = new Map();
    this.mmUsers = 1;
    this.mmCount = 1;
    this.flags = 0;
    this.mmapBase = MMAP_BASE;
    this.node = 0;
    this.ksmMergeDomain = '';
    this.cachedPmd = -1;
    this.cachedTable = null;
  }

  /** Index of the first vma with end > addr, or vmas.length. */
  findVmaIndex(addr: number): number {
    const v = this.vmas;
    let lo = 0;
    let hi = v.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (v[mid]!.end <= addr) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** find_vma(): the first vma with end > addr (it may start above addr), or null. */
  findVma(addr: number): Vma | null {
    const i = this.findVmaIndex(addr);
    return i < this.vmas.length ? this.vmas[i]! : null;
  }

  /** The vma containing addr, or null. */
  vmaAt(addr: number): Vma | null {
    const vma = this.findVma(addr);
    return vma !== null && vma.start <= addr ? vma : null;
  }

  insertVma(vma: Vma): void {
    const i = this.findVmaIndex(vma.start);
    this.vmas.splice(i, 0, vma);
  }

  removeVma(vma: Vma): void {
    const i = this.vmas.indexOf(vma);
    if (i >= 0) this.vmas.splice(i, 1);
  }

  /** get_unmapped_area(), top down: the highest gap of `len` bytes below mmapBase. */
  getUnmappedArea(len: number): number {
    // Every area lies below mmapBase (mmap is the only way to create one), so the
    // gaps, top down, are [vmas[i].end, vmas[i+1].start) with mmapBase above the last.
    let high = this.mmapBase;
    for (let i = this.vmas.length - 1; i >= -1; i--) {
      const low = i >= 0 ? this.vmas[i]!.end : MMAP_MIN_ADDR;
      if (high - low >= len) return high - len;
      if (i >= 0) high = this.vmas[i]!.start;
    }
    return -1;
  }

  // ---- page tables ------------------------------------------------------------------

  /** The page table covering addr, or null when none was ever set up. */
  table(addr: number): Float64Array | null {
    const pmd = Math.floor(addr / PMD_SIZE);
    if (pmd === this.cachedPmd) return this.cachedTable;
    const t = this.pgtables.get(pmd) ?? null;
    if (t !== null) {
      this.cachedPmd = pmd;
      this.cachedTable = t;
    }
    return t;
  }

  /**
   * Where a page-table walk from addr toward end next finds a page table: addr itself
   * when its table exists, else the start of the first table after it (end when there
   * is none). The kernel's walk skips an empty table in one step (pmd_none), so a walk
   * over a sparse area costs its tables, not its addresses. Over a range wider than the
   * tables there are, the tables are searched instead of the range.
   */
  nextTableAddr(addr: number, end: number): number {
    let pmd = Math.floor(addr / PMD_SIZE);
    if (this.table(addr) !== null) return addr;
    const lastPmd = Math.floor((end - 1) / PMD_SIZE);
    if (lastPmd - pmd <= this.pgtables.size) {
      for (pmd++; pmd <= lastPmd; pmd++) if (this.pgtables.has(pmd)) return pmd * PMD_SIZE;
      return end;
    }
    let best = Infinity;
    for (const p of this.pgtables.keys()) if (p > pmd && p <= lastPmd && p < best) best = p;
    return best === Infinity ? end : best * PMD_SIZE;
  }

  /** pte_alloc(): the page table covering addr, created when missing. */
  tableAlloc(addr: number): Float64Array {
    const t = this.table(addr);
    if (t !== null) return t;
    const pmd = Math.floor(addr / PMD_SIZE);
    const n = new Float64Array(PTRS_PER_PTE);
    this.pgtables.set(pmd, n);
    this.cachedPmd = pmd;
    this.cachedTable = n;
    return n;
  }

  getPte(addr: number): number {
    const t = this.table(addr);
    return t === null ? PTE_NONE : t[(addr / PAGE_SIZE) & (PTRS_PER_PTE - 1)]!;
  }

  setPte(addr: number, pte: number): void {
    this.tableAlloc(addr)[(addr / PAGE_SIZE) & (PTRS_PER_PTE - 1)] = pte;
  }

  /** free_pgtables() for [start, end): drop tables that are now entirely empty. */
  freePgtables(start: number, end: number): void {
    const first = Math.floor(start / PMD_SIZE);
    const last = Math.floor((end - 1) / PMD_SIZE);
    for (let pmd = first; pmd <= last; pmd++) {
      const t = this.pgtables.get(pmd);
      if (t === undefined) continue;
      let empty = true;
      for (let i = 0; i < PTRS_PER_PTE; i++) {
        if (t[i] !== PTE_NONE) {
          empty = false;
          break;
        }
      }
      if (empty) {
        this.pgtables.delete(pmd);
        if (this.cachedPmd === pmd) {
          this.cachedPmd = -1;
          this.cachedTable = null;
        }
      }
    }
  }

  /** Every (address, pte) with a non-none pte, in address order; for checks and fork. */
  forEachPte(start: number, end: number, fn: (addr: number, pte: number, table: Float64Array, slot: number) => void): void {
    if (start >= end) return;
    const firstPmd = Math.floor(start / PMD_SIZE);
    const lastPmd = Math.floor((end - 1) / PMD_SIZE);
    // A range wider than the tables there are (checkInvariants walks the whole
    // address space: 2^52 pmds up to MAX_SAFE_INTEGER) is walked table by table, in
    // address order, rather than pmd by pmd. Tables are only read here, so fn may
    // clear ptes, but must not free or add tables.
    if (lastPmd - firstPmd >= this.pgtables.size) {
      const pmds: number[] = [];
      for (const pmd of this.pgtables.keys()) if (pmd >= firstPmd && pmd <= lastPmd) pmds.push(pmd);
      pmds.sort((x, y) => x - y);
      for (const pmd of pmds) this.forEachPteInTable(pmd, Math.max(start, pmd * PMD_SIZE), Math.min(end, (pmd + 1) * PMD_SIZE), fn);
      return;
    }
    for (let pmd = firstPmd; pmd <= lastPmd; pmd++) {
      this.forEachPteInTable(pmd, Math.max(start, pmd * PMD_SIZE), Math.min(end, (pmd + 1) * PMD_SIZE), fn);
    }
  }

  private forEachPteInTable(pmd: number, from: number, to: number, fn: (addr: number, pte: number, table: Float64Array, slot: number) => void): void {
    const t = this.pgtables.get(pmd);
    if (t === undefined) return;
    for (let addr = from; addr < to; addr += PAGE_SIZE) {
      const slot = (addr / PAGE_SIZE) & (PTRS_PER_PTE - 1);
      const pte = t[slot]!;
      if (pte !== PTE_NONE) fn(addr, pte, t, slot);
    }
  }

  describe(): string {
    return `mm ${this.id} of ${this.owner} (${this.vmas.length} vmas${this.vmas.length > 0 ? ` ${hexAddr(this.vmas[0]!.start)}..${hexAddr(this.vmas[this.vmas.length - 1]!.end)}` : ''}, users ${this.mmUsers})`;
  }
}
