import { PAGE_SIZE, decodeVmFlags, hexAddr } from './constants.js';
import type { MmStruct } from './mm.js';

let nextAnonVmaId = 1;
let nextShmemId = 1;

/**
 * anon_vma as in Linux 2.6.33 (before anon_vma_chain): one object per family of
 * private anonymous areas. A forked child's VMA joins its parent's anon_vma, so a
 * walk of `vmas` finds every pte that may map a page whose mapping is this anon_vma.
 *
 * `vmas` is the anon_vma's list head (anon_vma->head), in link order.
 * `ksmRefcount` counts KSM rmap_items in the stable tree that hold this anon_vma
 * (seed 001, "ksm: hold anon_vma in rmap_item"): the anon_vma is freed only when
 * both the list is empty and the count is zero, so it can outlive the areas that
 * used it while KSM still needs it for its rmap walk.
 * `freed` is set once it is freed; nothing may reach a freed anon_vma.
 */
export class AnonVma {
  readonly id: number;
  readonly vmas: Vma[];
  ksmRefcount: number;
  /** Its number in KSM's anon_vma table while KSM holds it (src/ksm/structs.ts ObjectTable), else 0. */
  ksmId: number;
  freed: boolean;

  constructor() {
    this.id = nextAnonVmaId++;
    this.vmas = [];
    this.ksmRefcount = 0;
    this.ksmId = 0;
    this.freed = false;
  }

  /** anon_vma_link() / __anon_vma_link() */
  link(vma: Vma): void {
    this.vmas.push(vma);
  }

  /** anon_vma_unlink(): returns true when the anon_vma was freed by this. */
  unlink(vma: Vma): boolean {
    const i = this.vmas.indexOf(vma);
    if (i >= 0) this.vmas.splice(i, 1);
    return this.freeIfUnused();
  }

  /** anon_vma_free() when unused: both no vma and no KSM reference. */
  freeIfUnused(): boolean {
    if (this.vmas.length === 0 && this.ksmRefcount === 0 && !this.freed) {
      this.freed = true;
      return true;
    }
    return false;
  }
}

/**
 * The object behind a shared anonymous mapping (shmem's "dev/zero" file): pages by
 * index, each holding one reference for the file. Areas that share it (by fork)
 * count in `users`; the last one to go releases the pages.
 */
export class ShmemFile {
  readonly id: number;
  readonly pages: Map<number, number>;
  users: number;

  constructor() {
    this.id = nextShmemId++;
    this.pages = new Map();
    this.users = 0;
  }
}

/**
 * vm_area_struct: [start, end) of one mm with one set of flags.
 *
 * `pgoff` is vm_pgoff: the linear page index of `start`. For private anonymous
 * memory it is start >> PAGE_SHIFT when mapped, and stays with the pages when the
 * area is split, so page->index == pgoff + ((addr - start) >> PAGE_SHIFT) for
 * every anonymous page the area maps.
 * `anonVma` is null until the first anonymous page is faulted in (anon_vma_prepare).
 * `shmem` is set for shared anonymous areas and null otherwise.
 */
export class Vma {
  mm: MmStruct;
  start: number;
  end: number;
  flags: number;
  pgoff: number;
  anonVma: AnonVma | null;
  shmem: ShmemFile | null;

  constructor(mm: MmStruct, start: number, end: number, flags: number, pgoff: number) {
    this.mm = mm;
    this.start = start;
    this.end = end;
    this.flags = flags;
    this.pgoff = pgoff;
    this.anonVma = null;
    this.shmem = null;
  }

  /** linear_page_index() */
  linearIndex(addr: number): number {
    return this.pgoff + (addr - this.start) / PAGE_SIZE;
  }

  /** vma_address(): where page index `index` sits in this area, or -1. */
  addressOf(index: number): number {
    const addr = this.start + (index - this.pgoff) * PAGE_SIZE;
    return addr >= this.start && addr < this.end ? addr : -1;
  }

  get pages(): number {
    return (this.end - this.start) / PAGE_SIZE;
  }

  toString(): string {
    return `vma ${hexAddr(this.start)}-${hexAddr(this.end)} [${decodeVmFlags(this.flags)}] of ${this.mm.owner}`;
  }
}
