import { PAGE_SIZE, VM_MERGEABLE } from '../mm/constants.js';
import { VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_WRITE, handleMmFault } from '../mm/memory.js';
import type { Vma } from '../mm/vma.js';
import type { Ksm } from './ksm.js';
import { findMergeableVma, followPage, testExit } from './pages.js';
import { freeSlot, removeTrailingRmapItems } from './rmap-item.js';
import { isKsmZeroPte } from './madvise.js';
import { dropAnonVma, removeAllStableNodes } from './stable-tree.js';
import { ENOMEM, NULL, type RmapItem } from './structs.js';

/*
 * Unmerging (mm/ksm.c): breaking COW on a KSM page gives the faulting process its
 * own copy, exactly as its next write would. MADV_UNMERGEABLE does it over a range,
 * run=2 over everything KSM has ever registered, and a failed merge to undo half a
 * merge.
 */

/**
 * break_ksm(): fault a write on addr until the KSM page there is replaced by a
 * private copy. Touches only a KSM page, in case the area was remapped meanwhile.
 * Returns ENOMEM when the copy could not be had, 0 otherwise. (6.x faults with
 * FAULT_FLAG_UNSHARE, which copies without making the pte writable; the model's
 * write fault gives the same page and contents, and a writable pte where the area
 * is writable: the next write then faults no more, which nothing observes.)
 */
export function breakKsm(ksm: Ksm, vma: Vma, addr: number): number {
  const mem = ksm.kernel.mem;
  let ret: number;
  do {
    const pfn = followPage(ksm, vma, addr);
    // 6.x: a KSM zero page is KSM's too (folio_walk_start(FW_ZEROPAGE) finds it),
    // and is broken like a KSM page: the write gets a fresh zeroed page.
    const ksmPage = pfn < 0 ? isKsmZeroPte(ksm, vma.mm.getPte(addr)) : mem.isKsm(pfn);
    if (pfn < 0 && !ksmPage) break;
    if (ksmPage) {
      ret = handleMmFault(ksm.kernel, vma, addr, true);
      if ((ret & VM_FAULT_WRITE) !== 0) ksm.work.unmerges++;
    } else {
      ret = VM_FAULT_WRITE;
    }
    if (pfn >= 0) mem.putPage(pfn);
    if ((ret & VM_FAULT_OOM) !== 0) return ENOMEM;
  } while ((ret & (VM_FAULT_WRITE | VM_FAULT_SIGBUS | VM_FAULT_OOM)) === 0);
  return 0;
}

/** break_cow(): undo a merge of rmap_item's page; drops its anon_vma reference. */
export function breakCow(ksm: Ksm, item: RmapItem): void {
  // It is no accident that whenever we break COW to undo, we also drop the anon_vma.
  dropAnonVma(ksm, item);
  const address = ksm.rmapItemCache.addressOf(item);
  const vma = findMergeableVma(ksm.itemMm(item), address);
  if (vma !== null) breakKsm(ksm, vma, address);
}

/**
 * unmerge_ksm_pages(): break COW on every KSM page in [start, end) of vma. The
 * rmap_items are left for ksmd to clean up on its next pass.
 */
export function unmergeKsmPages(ksm: Ksm, vma: Vma, start: number, end: number): number {
  let err = 0;
  const mm = vma.mm;
  for (let addr = start; addr < end && err === 0; ) {
    if (testExit(mm)) break;
    // The loop is per address, but the walk under break_ksm() finds an empty page
    // table at once (pmd_none; 6.18's folio_walk_start() the same): skip to the next
    // table, so unmerging a sparse area of TiBs costs its tables, not its addresses.
    // Nothing changes: an address without a table has no page to break.
    const next = mm.nextTableAddr(addr, end);
    if (next > addr) {
      addr = next;
      continue;
    }
    err = breakKsm(ksm, vma, addr);
    addr += PAGE_SIZE;
  }
  return err;
}

/** unmerge_and_remove_all_rmap_items(): run=2. */
export function unmergeAndRemoveAllRmapItems(ksm: Ksm): number {
  ksm.scanSlot = ksm.mmHead.next;
  for (let slot = ksm.scanSlot; slot !== ksm.mmHead; slot = ksm.scanSlot) {
    const mm = slot.mm!;
    for (const vma of [...mm.vmas]) {
      if (testExit(mm)) break;
      if ((vma.flags & VM_MERGEABLE) === 0 || vma.anonVma === null) continue;
      const err = unmergeKsmPages(ksm, vma, vma.start, vma.end);
      if (err !== 0) {
        ksm.scanSlot = ksm.mmHead;
        return err;
      }
    }
    removeTrailingRmapItems(ksm, slot, NULL);
    ksm.scanSlot = slot.next;
    if (testExit(mm)) freeSlot(ksm, slot);
  }
  // 6.x: clean up stable nodes, but don't worry if some are still busy.
  if (ksm.profile.features.stableNodeChains) removeAllStableNodes(ksm);
  ksm.seqnr = 0;
  for (const root of ksm.unstableRoots) root.node = NULL; // empty already: every rmap_item is gone
  return 0;
}
