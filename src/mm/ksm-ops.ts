import type { MmStruct } from './mm.js';
import type { RmapWalkControl } from './rmap.js';
import type { Vma } from './vma.js';

/**
 * What the host kernel's mm needs from KSM, declared here so that src/mm never
 * imports src/ksm: the KSM engine implements this and registers itself with
 * `kernel.registerKsm()`, exactly as Linux's mm calls into mm/ksm.c through
 * include/linux/ksm.h. With nothing registered the kernel behaves as one built
 * without CONFIG_KSM: MADV_MERGEABLE, MADV_UNMERGEABLE and the memory-merge prctls
 * fail with EINVAL, and the other hooks are not called.
 *
 * The hooks are the union of what the kernel versions Samepage models call; a
 * version without one implements it as that version behaves (2.6.33 has no prctl
 * and no KSM zero pages: see src/ksm/madvise.ts).
 */

export type KsmAdvice = 'MADV_MERGEABLE' | 'MADV_UNMERGEABLE';

/** The prctl() options KSM answers (include/uapi/linux/prctl.h: 67 and 68). */
export type PrctlOption = 'PR_SET_MEMORY_MERGE' | 'PR_GET_MEMORY_MERGE';

/** page_referenced() state shared by the walk, like its `mapcount` and `vm_flags` out-parameters. */
export interface ReferencedState {
  mapcount: number;
  vmFlags: number;
}

export interface KsmOps {
  /** mm/ksm.c ksm_madvise(): the area's new vm_flags; throws KernelError on failure. */
  madvise(vma: Vma, start: number, end: number, advice: KsmAdvice, vmFlags: number): number;
  /** include/linux/ksm.h ksm_fork(): called by fork before copying areas, when the parent's mm is MMF_VM_MERGEABLE. */
  fork(mm: MmStruct, oldmm: MmStruct): void;
  /** include/linux/ksm.h ksm_exit(): called when the last user of an MMF_VM_MERGEABLE mm goes. */
  exit(mm: MmStruct): void;
  /**
   * kernel/sys.c prctl(option, arg2..arg5) for the memory-merge options: their
   * result (0, or PR_GET_MEMORY_MERGE's 0 or 1); throws KernelError (EINVAL for a
   * kernel without them, or bad arguments).
   */
  prctl(mm: MmStruct, option: PrctlOption, arg2: number, arg3: number, arg4: number, arg5: number): number;
  /**
   * include/linux/ksm.h ksm_vma_flags() (ksm_add_vma() before 6.17): mmap asks for
   * the flags of the area it is about to make, so whole-process merging can make it
   * VM_MERGEABLE from the start.
   */
  vmaFlags(mm: MmStruct, vmFlags: number): number;
  /**
   * include/linux/ksm.h ksm_might_unmap_zero_page(): a zap or a copy-on-write is
   * dropping `pte`, which maps no normal page (the zero page): KSM uncounts it if it
   * was one of its zero pages.
   */
  mightUnmapZeroPage(mm: MmStruct, pte: number): void;
  /**
   * include/linux/ksm.h ksm_might_need_to_copy(): a page read back from swap is
   * about to be mapped at addr of vma. Takes the caller's reference on `pfn`; returns
   * the page to map (the same one, or a private copy), holding one reference for the
   * caller, or -1 when out of memory.
   */
  mightNeedToCopy(pfn: number, vma: Vma, addr: number): number;
  /** mm/ksm.c rmap_walk_ksm(): every (vma, address) that may map KSM page pfn, through rwc. */
  rmapWalk(pfn: number, rwc: RmapWalkControl): number;
  /** mm/ksm.c ksm_migrate_page() */
  migratePage(newPfn: number, oldPfn: number): void;
}
