import { KernelError, assertNever, bug } from '../lib/errors.js';
import {
  MMF_VM_MERGEABLE,
  MMF_VM_MERGE_ANY,
  PTE_DIRTY,
  VM_DONTCOPY,
  ptePayload,
  ptePresent,
  VM_DONTEXPAND,
  VM_HUGETLB,
  VM_INSERTPAGE,
  VM_IO,
  VM_MAYSHARE,
  VM_MERGEABLE,
  VM_MIXEDMAP,
  VM_NONLINEAR,
  VM_PFNMAP,
  VM_RESERVED,
  VM_SAO,
  VM_SHARED,
} from '../mm/constants.js';
import type { KsmAdvice, PrctlOption } from '../mm/ksm-ops.js';
import type { MmStruct } from '../mm/mm.js';
import type { Vma } from '../mm/vma.js';
import type { Ksm } from './ksm.js';
import { freeSlot } from './rmap-item.js';
import { KSM_RUN_UNMERGE, MmSlot } from './structs.js';
import { unmergeKsmPages } from './unmerge.js';

/*
 * Where the mm calls into KSM for a process (include/linux/ksm.h, mm/ksm.c): madvise
 * registers an area and its mm (__ksm_enter), fork registers the child, exit lets
 * go; and the hooks later kernels added for whole-process merging (prctl, mmap) and
 * KSM zero pages (zap), which 2.6.33 does not have.
 */

/** VM flags for which MADV_MERGEABLE is silently ignored ("be somewhat over-protective"). */
const KSM_UNMERGEABLE_VM_FLAGS =
  VM_MERGEABLE | VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_RESERVED | VM_HUGETLB | VM_INSERTPAGE | VM_NONLINEAR | VM_MIXEDMAP | VM_SAO;

/** ksm_madvise(): the area's new vm_flags; throws KernelError on failure. */
export function ksmMadvise(ksm: Ksm, vma: Vma, start: number, end: number, advice: KsmAdvice, vmFlags: number): number {
  switch (advice) {
    case 'MADV_MERGEABLE':
      if ((vmFlags & KSM_UNMERGEABLE_VM_FLAGS) !== 0) return vmFlags; // just ignore the advice
      if ((vma.mm.flags & MMF_VM_MERGEABLE) === 0) ksmEnter(ksm, vma.mm);
      return vmFlags | VM_MERGEABLE;
    case 'MADV_UNMERGEABLE':
      if ((vmFlags & VM_MERGEABLE) === 0) return vmFlags; // just ignore the advice
      if (vma.anonVma !== null) {
        if (ksm.offlineLock) throw new KernelError('EBUSY', 'MADV_UNMERGEABLE while memory is going offline');
        const err = unmergeKsmPages(ksm, vma, start, end);
        // madvise_behavior() reports an internal ENOMEM as EAGAIN: ENOMEM from
        // madvise means "part of the range is not mapped".
        if (err !== 0) throw new KernelError('EAGAIN', `MADV_UNMERGEABLE of ${vma}: out of memory breaking COW`);
      }
      return vmFlags & ~VM_MERGEABLE;
    default:
      return assertNever(advice, 'ksm_madvise advice');
  }
}

/** __ksm_enter(): start scanning this mm, just behind the cursor. */
export function ksmEnter(ksm: Ksm, mm: MmStruct): void {
  const needsWakeup = ksm.mmHead.next === ksm.mmHead;
  const slot = new MmSlot(mm);
  ksm.mmSlots.set(mm, slot);
  // Insert just behind the scanning cursor, to let the area settle down a little;
  // when fork is followed by immediate exec, we don't want ksmd to waste time
  // setting up and tearing down an rmap_list. 6.x: while run=2 unmerges, ahead of
  // its cursor instead (at the end of the list), or KSM pages in newly forked mms
  // would be missed.
  const cursor = (ksm.run & KSM_RUN_UNMERGE) !== 0 && ksm.profile.features.stableNodeChains ? ksm.mmHead : ksm.scanSlot;
  slot.prev = cursor.prev;
  slot.next = cursor;
  cursor.prev.next = slot;
  cursor.prev = slot;
  mm.flags |= MMF_VM_MERGEABLE;
  mm.mmCount++;
  if (needsWakeup) ksm.onWakeup();
}

/**
 * include/linux/ksm.h ksm_fork(). 6.18 also resets the child's KSM counters, which
 * dup_mm() copied with the rest of the mm_struct: it has no rmap_items of its own
 * yet (the model recounts those: nothing to reset), but fork copies the parent's
 * KSM zero ptes, so its ksm_zero_pages stays and is added to the global count.
 *
 * Linux counts every zero pte of the parent, including those in areas fork does
 * not copy (MADV_DONTFORK); the child's count then never drops back to 0 and
 * ksm_zero_pages leaks them. The model counts the ptes the child gets (Differences
 * from Linux, README), so the counts always match the page tables.
 */
export function ksmFork(ksm: Ksm, mm: MmStruct, oldmm: MmStruct): void {
  if ((oldmm.flags & MMF_VM_MERGEABLE) === 0) return;
  let zero = ksm.mmZeroPages.get(oldmm) ?? 0;
  if (zero > 0) {
    for (const vma of oldmm.vmas) {
      if ((vma.flags & VM_DONTCOPY) === 0) continue;
      oldmm.forEachPte(vma.start, vma.end, (_addr, pte) => {
        if (isKsmZeroPte(ksm, pte)) zero--;
      });
    }
    if (zero > 0) {
      ksm.mmZeroPages.set(mm, zero);
      ksm.ksmZeroPages += zero;
    }
  }
  ksmEnter(ksm, mm);
}

/** ksm_exit() → __ksm_exit() */
export function ksmExit(ksm: Ksm, mm: MmStruct): void {
  if ((mm.flags & MMF_VM_MERGEABLE) === 0) return;
  const slot = ksm.mmSlots.get(mm);
  // Straightforward when ksmd never got to it: free the slot now. If it is at the
  // cursor or has rmap_items, leave it on the list for ksmd to free; ksmd backs
  // out of an mm as soon as mm_users is zero.
  if (slot === undefined || ksm.scanSlot === slot) return;
  if (slot.rmapList === null) {
    freeSlot(ksm, slot);
  } else {
    // list_move() to just after the cursor: ksmd frees it at its next step.
    slot.prev.next = slot.next;
    slot.next.prev = slot.prev;
    const cursor = ksm.scanSlot;
    slot.prev = cursor;
    slot.next = cursor.next;
    cursor.next.prev = slot;
    cursor.next = slot;
  }
}

/**
 * kernel/sys.c prctl(PR_SET_MEMORY_MERGE / PR_GET_MEMORY_MERGE): whole-process
 * merging, in kernels that have it (the profile's mergeAny). A kernel without it
 * does not know the options, and prctl() answers an unknown option with EINVAL.
 * PR_SET takes arg2 (0 off, anything else on) and wants arg3..arg5 zero; PR_GET
 * wants every argument zero and answers 0 or 1.
 */
export function ksmPrctl(ksm: Ksm, mm: MmStruct, option: PrctlOption, arg2: number, arg3: number, arg4: number, arg5: number): number {
  if (!ksm.profile.features.mergeAny) {
    throw new KernelError('EINVAL', `prctl(${option}): Linux ${ksm.profile.version} has no such option (whole-process merging came later)`);
  }
  switch (option) {
    case 'PR_SET_MEMORY_MERGE':
      if (arg3 !== 0 || arg4 !== 0 || arg5 !== 0) throw new KernelError('EINVAL', `prctl(PR_SET_MEMORY_MERGE): arg3, arg4 and arg5 must be 0, got ${arg3}, ${arg4}, ${arg5}`);
      if (arg2 !== 0) ksmEnableMergeAny(ksm, mm);
      else ksmDisableMergeAny(ksm, mm);
      return 0;
    case 'PR_GET_MEMORY_MERGE':
      if (arg2 !== 0 || arg3 !== 0 || arg4 !== 0 || arg5 !== 0) {
        throw new KernelError('EINVAL', `prctl(PR_GET_MEMORY_MERGE): arg2..arg5 must be 0, got ${arg2}, ${arg3}, ${arg4}, ${arg5}`);
      }
      return (mm.flags & MMF_VM_MERGE_ANY) !== 0 ? 1 : 0;
    default:
      return assertNever(option, 'prctl option');
  }
}

/** vma_ksm_compatible() (6.x): the flags KSM refuses to merge in. */
const KSM_INCOMPATIBLE_VM_FLAGS_V6 = VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_HUGETLB | VM_MIXEDMAP | VM_SAO;

function vmaKsmCompatible(vmFlags: number): boolean {
  return (vmFlags & KSM_INCOMPATIBLE_VM_FLAGS_V6) === 0;
}

/**
 * ksm_enable_merge_any(): register the mm (if it is not yet) and make every
 * compatible area mergeable (ksm_add_vmas(): the flag is set in place, areas are
 * not split or merged).
 */
function ksmEnableMergeAny(ksm: Ksm, mm: MmStruct): void {
  if ((mm.flags & MMF_VM_MERGE_ANY) !== 0) return;
  if ((mm.flags & MMF_VM_MERGEABLE) === 0) ksmEnter(ksm, mm);
  mm.flags |= MMF_VM_MERGE_ANY;
  for (const vma of mm.vmas) if ((vma.flags & VM_MERGEABLE) === 0 && vmaKsmCompatible(vma.flags)) vma.flags |= VM_MERGEABLE;
}

/**
 * ksm_disable_merge_any(): unmerge every area, madvised ones too, and clear
 * VM_MERGEABLE on them (ksm_del_vmas()); if unmerging fails, everything is made
 * mergeable again and the prctl fails (EAGAIN, as madvise reports an internal ENOMEM).
 * The mm stays registered: ksmd drops it when it finds no mergeable area.
 */
function ksmDisableMergeAny(ksm: Ksm, mm: MmStruct): void {
  if ((mm.flags & MMF_VM_MERGE_ANY) === 0) return;
  for (const vma of mm.vmas) {
    if ((vma.flags & VM_MERGEABLE) === 0) continue;
    if (vma.anonVma !== null && unmergeKsmPages(ksm, vma, vma.start, vma.end) !== 0) {
      for (const v of mm.vmas) if ((v.flags & VM_MERGEABLE) === 0 && vmaKsmCompatible(v.flags)) v.flags |= VM_MERGEABLE;
      throw new KernelError('EAGAIN', `prctl(PR_SET_MEMORY_MERGE, 0): out of memory unmerging ${vma}`);
    }
    vma.flags &= ~VM_MERGEABLE;
  }
  mm.flags &= ~MMF_VM_MERGE_ANY;
}

/**
 * include/linux/ksm.h ksm_vma_flags() (ksm_add_vma() before 6.17): the flags of an
 * area mmap is about to make. With whole-process merging on for the mm, 6.x adds
 * VM_MERGEABLE here, so the new area is mergeable from birth (and merges with
 * neighbours that are too). 2.6.33 has no such hook: the flags stay as they are.
 */
export function ksmVmaFlags(ksm: Ksm, mm: MmStruct, vmFlags: number): number {
  if (!ksm.profile.features.mergeAny) return vmFlags;
  if ((mm.flags & MMF_VM_MERGE_ANY) !== 0 && vmaKsmCompatible(vmFlags)) return vmFlags | VM_MERGEABLE;
  return vmFlags;
}

/** include/linux/ksm.h is_ksm_zero_pte(): the zero page, mapped by KSM (the dirty bit says so). */
export function isKsmZeroPte(ksm: Ksm, pte: number): boolean {
  return ptePresent(pte) && ptePayload(pte) === ksm.kernel.mem.zeroPfn && (pte & PTE_DIRTY) !== 0;
}

/** include/linux/ksm.h ksm_map_zero_page(): count one more KSM zero page, globally and for mm. */
export function ksmMapZeroPage(ksm: Ksm, mm: MmStruct): void {
  ksm.ksmZeroPages++;
  ksm.mmZeroPages.set(mm, (ksm.mmZeroPages.get(mm) ?? 0) + 1);
}

/**
 * ksm_might_unmap_zero_page(): a zap or a COW is dropping a pte that maps no normal
 * page. A KSM zero page (6.x use_zero_pages) is uncounted here, per mm and globally.
 * 2.6.33 never maps the zero page for KSM: no read-fault zero page is dirty.
 */
export function ksmMightUnmapZeroPage(ksm: Ksm, mm: MmStruct, pte: number): void {
  if (!ksm.profile.features.zeroPages || !isKsmZeroPte(ksm, pte)) return;
  ksm.ksmZeroPages--;
  const n = (ksm.mmZeroPages.get(mm) ?? 0) - 1;
  if (n < 0 || ksm.ksmZeroPages < 0) bug(`ksm_zero_pages underflow unmapping a KSM zero page of ${mm.owner}`);
  if (n === 0) ksm.mmZeroPages.delete(mm);
  else ksm.mmZeroPages.set(mm, n);
}
