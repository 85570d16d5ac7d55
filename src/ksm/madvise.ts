import { KernelError, assertNever } from '../lib/errors.js';
import {
  MMF_VM_MERGEABLE,
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
import { MmSlot } from './structs.js';
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
  // setting up and tearing down an rmap_list.
  const cursor = ksm.scanSlot;
  slot.prev = cursor.prev;
  slot.next = cursor;
  cursor.prev.next = slot;
  cursor.prev = slot;
  mm.flags |= MMF_VM_MERGEABLE;
  mm.mmCount++;
  if (needsWakeup) ksm.onWakeup();
}

/** include/linux/ksm.h ksm_fork() */
export function ksmFork(ksm: Ksm, mm: MmStruct, oldmm: MmStruct): void {
  if ((oldmm.flags & MMF_VM_MERGEABLE) !== 0) ksmEnter(ksm, mm);
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
 * does not know the option, and prctl() answers an unknown option with EINVAL: so
 * does every profile there is (kernel.ts refuses a profile whose mergeAny is on
 * before ksm_enable_merge_any() is implemented).
 */
export function ksmPrctl(ksm: Ksm, _mm: MmStruct, option: PrctlOption): number {
  throw new KernelError('EINVAL', `prctl(${option}): Linux ${ksm.profile.version} has no such option (whole-process merging came later)`);
}

/**
 * include/linux/ksm.h ksm_vma_flags() (ksm_add_vma() before 6.17): the flags of an
 * area mmap is about to make. With whole-process merging on for the mm, later
 * kernels add VM_MERGEABLE here, so the new area is mergeable from birth (and merges
 * with neighbours that are too). 2.6.33 has no such hook: the flags stay as they are.
 */
export function ksmVmaFlags(_ksm: Ksm, _mm: MmStruct, vmFlags: number): number {
  return vmFlags;
}

/**
 * ksm_might_unmap_zero_page(): a zap or a COW is dropping a pte that maps no normal
 * page. In kernels with use_zero_pages, a KSM zero page (the zero page mapped by
 * KSM, marked dirty) is uncounted here, per mm and globally. 2.6.33 never maps the
 * zero page for KSM, so there is nothing to count.
 */
export function ksmMightUnmapZeroPage(_ksm: Ksm, _mm: MmStruct, _pte: number): void {
  // Nothing: see above.
}
