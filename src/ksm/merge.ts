import { PG_MLOCKED, PG_SWAPCACHE, PTE_DIRTY, PTE_SPECIAL, PTE_WRITE, VM_LOCKED, VM_MERGEABLE, mkPte, ptePayload, ptePresent, pteClear } from '../mm/constants.js';
import { mlockVmaPage, munlockVmaPage } from '../mm/memory.js';
import { isThpFrame, splitHugePage } from '../mm/huge-memory.js';
import { pageAddAnonRmap, pageAddressInVma, pageRemoveRmap } from '../mm/rmap.js';
import type { Vma } from '../mm/vma.js';
import type { Ksm } from './ksm.js';
import { ksmMapZeroPage } from './madvise.js';
import { findMergeableVma, memcmpPages, setPageStableNode, testExit } from './pages.js';
import { removeRmapItemFromTree } from './rmap-item.js';
import { holdAnonVma } from './stable-tree.js';
import { EFAULT, type RmapItem } from './structs.js';
import { breakCow } from './unmerge.js';

/*
 * Merging (mm/ksm.c): write-protect a page, check it still has the contents it was
 * matched on, and map the KSM page in its place. Each step can fail because the
 * page changed, gained a reference (a pin: it must not be merged), or went; a
 * failure is a missed merge, found again at a later scan.
 */

/**
 * write_protect_page(): make the pte mapping page in vma read-only, unless the page
 * has references beyond its mappings, the reference we hold and the swap cache's
 * (O_DIRECT or a get_user_pages pin in flight): such a page must not be merged,
 * since the pinner would write to a page that is no longer the process's.
 * Returns the resulting pte, or -1.
 */
function writeProtectPage(ksm: Ksm, vma: Vma, pfn: number): number {
  const mem = ksm.kernel.mem;
  const mm = vma.mm;
  const addr = pageAddressInVma(ksm.kernel, pfn, vma);
  if (addr < 0) return -1;
  let pte = mm.getPte(addr);
  if (!ptePresent(pte) || ptePayload(pte) !== pfn) return -1;
  if ((pte & PTE_WRITE) !== 0) {
    const swapped = (mem.flags[pfn]! & PG_SWAPCACHE) !== 0 ? 1 : 0;
    // The kernel clears the pte and flushes the TLB before this check so that no
    // get_user_pages_fast() can slip in after it; nothing runs concurrently here.
    if (mem.pageMapcount(pfn) + 1 + swapped !== mem.count[pfn]) return -1;
    pte = pteClear(pte, PTE_WRITE);
    mm.setPte(addr, pte);
  }
  return pte;
}

/**
 * replace_page(): map kpage instead of page at page's address in vma. 0 or EFAULT.
 * kpage may be the zero page (6.x use_zero_pages): that is mapped as the zero page
 * always is, special and with no reference or rmap, and marked dirty, which is how
 * KSM later tells its zero pages from those a read fault mapped (is_ksm_zero_pte()).
 */
function replacePage(ksm: Ksm, vma: Vma, pfn: number, kpfn: number, origPte: number): number {
  const k = ksm.kernel;
  const mm = vma.mm;
  const addr = pageAddressInVma(k, pfn, vma);
  if (addr < 0) return EFAULT;
  if (mm.getPte(addr) !== origPte) return EFAULT;
  if (kpfn !== k.mem.zeroPfn) {
    k.mem.getPage(kpfn);
    pageAddAnonRmap(k, kpfn, vma, addr);
    // mk_pte(kpage, vma->vm_page_prot): read-only (a private mapping's protection
    // never includes write: that is what makes the first write fault and COW).
    mm.setPte(addr, mkPte(kpfn, 0));
  } else {
    mm.setPte(addr, mkPte(kpfn, PTE_SPECIAL | PTE_DIRTY));
    ksmMapZeroPage(ksm, mm);
  }
  pageRemoveRmap(k, pfn);
  k.mem.putPage(pfn);
  return 0;
}

/**
 * try_to_merge_one_page(): replace `pfn` in vma by the KSM page `kpfn` (or, in 6.x,
 * the zero page); or, when kpfn is -1, turn `pfn` itself into a KSM page (with no
 * stable node yet).
 */
function tryToMergeOnePage(ksm: Ksm, vma: Vma, pfn: number, kpfn: number): number {
  const k = ksm.kernel;
  const mem = k.mem;
  if (pfn === kpfn) return 0; // ksm page forked
  if ((vma.flags & VM_MERGEABLE) === 0) return EFAULT;
  if (!mem.isAnon(pfn)) return EFAULT;
  // trylock, not lock: rather than wait, go on scanning and come back to this
  // page when it is unlocked.
  if (!mem.trylockPage(pfn)) return EFAULT;
  let err = EFAULT;
  let lockedPfn = pfn;
  // A page of a transparent huge page is split out first (split_huge_page(), under
  // the page lock; 2.6.33 had no THPs, so only later profiles get here). The caller
  // holds a reference on pfn. A failed split (another subpage pinned or held: the
  // tree page of the same THP) fails the merge; a zero-filled pfn that the split
  // mapped to the zero page (6.12+) fails it in write_protect_page(), which no
  // longer finds pfn mapped.
  const split = !isThpFrame(mem.flags, pfn) || splitHugePage(k, pfn, pfn);
  const origPte = split ? writeProtectPage(ksm, vma, pfn) : -1;
  if (origPte >= 0) {
    if (kpfn < 0) {
      // While we hold the page lock, upgrade page from PageAnon+anon_vma to
      // PageKsm+NULL stable_node: stable_tree_insert() will set the node.
      setPageStableNode(ksm, pfn, null);
      err = 0;
    } else {
      ksm.work.mergeCompares++;
      if (memcmpPages(ksm, pfn, kpfn) === 0) err = replacePage(ksm, vma, pfn, kpfn, origPte);
    }
  }
  if (err === 0) ksm.work.merges++;
  // The zero page is never mlocked: it is not on any LRU list.
  if ((vma.flags & VM_LOCKED) !== 0 && kpfn >= 0 && kpfn !== mem.zeroPfn && err === 0) {
    munlockVmaPage(k, pfn, vma);
    if ((mem.flags[kpfn]! & PG_MLOCKED) === 0) {
      mem.unlockPage(pfn);
      lockedPfn = -1;
      mlockVmaPage(k, kpfn);
    }
  }
  if (lockedPfn >= 0) mem.unlockPage(lockedPfn);
  return err;
}

/** try_to_merge_with_ksm_page(): like try_to_merge_two_pages, but kpage is already KSM. */
export function tryToMergeWithKsmPage(ksm: Ksm, item: RmapItem, pfn: number, kpfn: number): number {
  const mm = item.mm;
  if (testExit(mm)) return EFAULT;
  const vma = mm.findVma(item.address);
  if (vma === null || vma.start > item.address) return EFAULT;
  const err = tryToMergeOnePage(ksm, vma, pfn, kpfn);
  if (err !== 0) return err;
  // 6.x takes the rmap_item out of the unstable tree here, where 2.6.33's caller
  // does it after both pages merged: the same item, a little sooner.
  if (ksm.profile.features.checksumBeforeStableTreeSearch) removeRmapItemFromTree(ksm, item);
  // Must get the anon_vma reference while the area is known to be there.
  holdAnonVma(item, vma.anonVma!);
  return 0;
}

/**
 * try_to_merge_with_zero_page() (6.x): with use_zero_pages on, a page whose
 * checksum is the zero page's is mapped to the zero page itself. 0 when merged, or
 * when its area has gone (nothing left to merge: no point trying the trees);
 * EFAULT otherwise, and the page goes on to the trees.
 */
export function tryToMergeWithZeroPage(ksm: Ksm, item: RmapItem, pfn: number): number {
  if (ksm.useZeroPages === 0 || item.oldchecksum !== ksm.zeroChecksum) return EFAULT;
  const vma = findMergeableVma(item.mm, item.address);
  // If the vma is out of date, we do not need to continue.
  if (vma === null) return 0;
  return tryToMergeOnePage(ksm, vma, pfn, ksm.kernel.mem.zeroPfn);
}

/**
 * try_to_merge_two_pages(): make `pfn` a KSM page and map it in place of
 * `treePfn` too. Returns the KSM page, or -1.
 */
export function tryToMergeTwoPages(ksm: Ksm, item: RmapItem, pfn: number, treeItem: RmapItem, treePfn: number): number {
  // The number of nodes in the stable tree is the number of kernel pages we hold.
  // (max_kernel_pages is 2.6.33's: a profile without the knob leaves it 0, no cap.)
  if (ksm.maxKernelPages !== 0n && ksm.maxKernelPages <= ksm.pagesShared) return -1;
  let err = tryToMergeWithKsmPage(ksm, item, pfn, -1);
  if (err === 0) {
    err = tryToMergeWithKsmPage(ksm, treeItem, treePfn, pfn);
    // If that fails, we have a KSM page with only one pte pointing to it: break it.
    if (err !== 0) breakCow(ksm, item);
  }
  return err !== 0 ? -1 : pfn;
}
