import { bug } from '../lib/errors.js';
import { PG_HEAD, PG_KSM, PG_TAIL, PTE_DIRTY, PTE_KIND_MASK, PTE_MIGRATION, PTE_PRESENT, PTE_SPECIAL, PTE_SWAP, ptePayload } from './constants.js';
import type { HostKernel } from './kernel.js';
import type { MmStruct } from './mm.js';

/*
 * What a process's memory looks like from outside (fs/proc/task_mmu.c): the figures
 * /proc/<pid>/smaps and smaps_rollup add up from the page tables, and the frames
 * /proc/<pid>/pagemap shows. The VM manager asks these instead of reading page
 * tables and mapcounts itself.
 */

/**
 * struct mem_size_stats, in pages, over the ranges gathered into it.
 *
 * - resident: Rss, present ptes that map a normal page. The zero page is not a
 *   normal page (vm_normal_page()), and Linux counts it in no process's RSS.
 * - swap: Swap, swap ptes.
 * - ksm: present ptes that map a KSM page (6.x's smaps "KSM:" line).
 * - anonHuge: AnonHugePages, the resident pages that belong to a THP (pmd-mapped:
 *   the model maps a THP whole or not at all, src/mm/huge-memory.ts).
 * - ksmSaved: over those KSM pages, the sum of (n − 1)/n, n the page's mappers in
 *   all processes: the part of them this range does not pay for, its share of what
 *   sharing saves (Rss − Pss over the KSM pages). Summed in address order, range by
 *   range as gathered, so the same walk gives the same float every time.
 * - ksmZero: ptes KSM pointed at the zero page (6.x use_zero_pages; the dirty bit
 *   marks them, include/linux/ksm.h is_ksm_zero_pte()). Not resident, as the zero
 *   page never is; each is a page saved whole.
 */
export interface MemSizeStats {
  resident: number;
  swap: number;
  ksm: number;
  anonHuge: number;
  ksmSaved: number;
  ksmZero: number;
}

export function newMemSizeStats(): MemSizeStats {
  return { resident: 0, swap: 0, ksm: 0, anonHuge: 0, ksmSaved: 0, ksmZero: 0 };
}

/**
 * smap_gather_stats() over [start, end) of mm, added into `mss`. Migration entries
 * never outlive a migration (nothing runs between its unmap and its remap), so
 * meeting one is a bug.
 */
export function smapGatherStats(k: HostKernel, mm: MmStruct, start: number, end: number, mss: MemSizeStats): void {
  const mem = k.mem;
  mm.forEachPte(start, end, (addr, pte) => {
    switch (pte & PTE_KIND_MASK) {
      case PTE_PRESENT: {
        if ((pte & PTE_SPECIAL) !== 0) {
          if ((pte & PTE_DIRTY) !== 0 && ptePayload(pte) === mem.zeroPfn) mss.ksmZero++;
          return;
        }
        const pfn = ptePayload(pte);
        mss.resident++;
        if ((mem.flags[pfn]! & (PG_HEAD | PG_TAIL)) !== 0) mss.anonHuge++;
        if ((mem.flags[pfn]! & PG_KSM) !== 0) {
          mss.ksm++;
          const mappers = mem.mapcount[pfn]! + 1;
          mss.ksmSaved += (mappers - 1) / mappers;
        }
        return;
      }
      case PTE_SWAP:
        mss.swap++;
        return;
      case PTE_MIGRATION:
        bug(`smaps of ${mm.owner}: a migration entry at 0x${addr.toString(16)} outlived its migration`);
        return;
      default:
        bug(`smaps of ${mm.owner}: unknown pte ${pte} at 0x${addr.toString(16)}`);
    }
  });
}

/**
 * pagemap_read() over [start, end) of mm, keeping what the VM manager wants of it:
 * the frames of normal pages mapped there, in address order, appended to `out`.
 */
export function pagemapFrames(mm: MmStruct, start: number, end: number, out: number[]): void {
  mm.forEachPte(start, end, (_addr, pte) => {
    if ((pte & PTE_KIND_MASK) === PTE_PRESENT && (pte & PTE_SPECIAL) === 0) out.push(ptePayload(pte));
  });
}
