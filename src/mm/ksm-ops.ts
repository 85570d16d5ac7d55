import type { MmStruct } from './mm.js';
import type { Vma } from './vma.js';

/**
 * What the host kernel's mm needs from KSM, declared here so that src/mm never
 * imports src/ksm: the KSM engine implements this and registers itself with
 * `kernel.registerKsm()`, exactly as Linux's mm calls into mm/ksm.c through
 * include/linux/ksm.h. With nothing registered the kernel behaves as one built
 * without CONFIG_KSM: MADV_MERGEABLE and MADV_UNMERGEABLE fail with EINVAL.
 */

export type KsmAdvice = 'MADV_MERGEABLE' | 'MADV_UNMERGEABLE';

/** One step of an rmap walk: the page as mapped at `addr` in `vma`. Returns SWAP_AGAIN to go on. */
export type RmapOne = (pfn: number, vma: Vma, addr: number) => number;

/** page_referenced() state shared by the walk, like its `mapcount` and `vm_flags` out-parameters. */
export interface ReferencedState {
  mapcount: number;
  vmFlags: number;
}

export interface KsmOps {
  /** mm/ksm.c ksm_madvise(): the area's new vm_flags; throws KernelError on failure. */
  madvise(vma: Vma, start: number, end: number, advice: KsmAdvice, vmFlags: number): number;
  /** include/linux/ksm.h ksm_fork(): called by fork before copying areas. */
  fork(mm: MmStruct, oldmm: MmStruct): void;
  /** include/linux/ksm.h ksm_exit(): called when the last user of an mm goes. */
  exit(mm: MmStruct): void;
  /** mm/ksm.c page_referenced_ksm() */
  pageReferenced(pfn: number, state: ReferencedState): number;
  /** mm/ksm.c try_to_unmap_ksm() */
  tryToUnmap(pfn: number, flags: number): number;
  /** mm/ksm.c rmap_walk_ksm() */
  rmapWalk(pfn: number, rmapOne: RmapOne): number;
  /** mm/ksm.c ksm_migrate_page() */
  migratePage(newPfn: number, oldPfn: number): void;
}
