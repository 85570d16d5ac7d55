import { PAGE_SIZE, VM_MERGEABLE } from '../mm/constants.js';
import type { Ksm } from './ksm.js';
import { tryToMergeTwoPages, tryToMergeWithKsmPage } from './merge.js';
import { followPage, pageStableNode, scanChecksum, testExit } from './pages.js';
import { freeSlot, getNextRmapItem, removeRmapItemFromTree, removeTrailingRmapItems } from './rmap-item.js';
import { stableTreeAppend, stableTreeInsert, stableTreeSearch } from './stable-tree.js';
import { STABLE_FLAG, type RmapItem } from './structs.js';
import { breakCow } from './unmerge.js';
import { unstableTreeSearchInsert, type TreePageOut } from './unstable-tree.js';

/*
 * The scan (mm/ksm.c): ksmd's cursor walks every VM_MERGEABLE area of every mm on
 * the list, page by page, making or finding the rmap_item of each page it meets
 * (scan_get_next_rmap_item), and offers each page to the trees (cmp_and_merge_page).
 * A full scan ends when the cursor comes back round to the list head: full_scans
 * goes up and the unstable tree is thrown away.
 */

/** Where unstableTreeSearchInsert() leaves the tree page. */
const scratchTreePage: TreePageOut = { pfn: -1 };

/**
 * cmp_and_merge_page(): first see if the page can be merged into the stable tree;
 * if not, compare its checksum with the previous one and, if unchanged, see if it
 * can be inserted into the unstable tree, or merged with a page already there and
 * both moved to the stable tree.
 */
export function cmpAndMergePage(ksm: Ksm, pfn: number, item: RmapItem): void {
  const mem = ksm.kernel.mem;
  removeRmapItemFromTree(ksm, item);

  // We first start with searching the page inside the stable tree.
  let kpfn = stableTreeSearch(ksm, pfn);
  if (kpfn >= 0) {
    const err = tryToMergeWithKsmPage(ksm, item, pfn, kpfn);
    if (err === 0) stableTreeAppend(ksm, item, pageStableNode(ksm, kpfn)!);
    mem.putPage(kpfn);
    return;
  }

  // A page whose checksum changed since the last scan is changing often: keep it
  // out of the unstable tree, and don't waste time searching it either.
  ksm.work.checksums++;
  const checksum = scanChecksum(ksm, pfn, item);
  if (item.oldchecksum !== checksum) {
    item.oldchecksum = checksum;
    return;
  }

  const out = scratchTreePage;
  const treeItem = unstableTreeSearchInsert(ksm, item, pfn, out);
  if (treeItem === null) return;
  const treePfn = out.pfn;
  out.pfn = -1;
  kpfn = tryToMergeTwoPages(ksm, item, pfn, treeItem, treePfn);
  mem.putPage(treePfn);
  // As soon as we merge this page, take the rmap_item of the page we merged with
  // out of the unstable tree, and insert it instead as a new stable node.
  if (kpfn >= 0) {
    removeRmapItemFromTree(ksm, treeItem);
    const node = stableTreeInsert(ksm, kpfn);
    if (node !== null) {
      stableTreeAppend(ksm, treeItem, node);
      stableTreeAppend(ksm, item, node);
    } else {
      // Two virtual addresses now point to a KSM page outside the stable tree:
      // break COW on both.
      breakCow(ksm, treeItem);
      breakCow(ksm, item);
    }
  }
}

/**
 * scan_get_next_rmap_item(): advance the cursor to the next anonymous page in a
 * VM_MERGEABLE area; returns its rmap_item (the page, referenced, in ksm.scanPfn),
 * or null at the end of a full scan.
 */
export function scanGetNextRmapItem(ksm: Ksm): RmapItem | null {
  const mem = ksm.kernel.mem;
  if (ksm.mmHead.next === ksm.mmHead) return null;
  let slot = ksm.scanSlot;
  if (slot === ksm.mmHead) {
    ksm.rootUnstableTree.node = null;
    slot = ksm.mmHead.next;
    ksm.scanSlot = slot;
    ksm.scanAddress = 0;
    ksm.scanLink = slot;
  }
  for (;;) {
    const mm = slot.mm!;
    if (!testExit(mm)) {
      const vmas = mm.vmas;
      for (let i = mm.findVmaIndex(ksm.scanAddress); i < vmas.length; i++) {
        const vma = vmas[i]!;
        if ((vma.flags & VM_MERGEABLE) === 0) continue;
        if (ksm.scanAddress < vma.start) ksm.scanAddress = vma.start;
        if (vma.anonVma === null) ksm.scanAddress = vma.end;
        while (ksm.scanAddress < vma.end) {
          const pfn = followPage(ksm, vma, ksm.scanAddress);
          if (pfn >= 0 && mem.isAnon(pfn)) {
            const item = getNextRmapItem(ksm, slot, ksm.scanLink, ksm.scanAddress);
            ksm.scanLink = item;
            ksm.scanAddress += PAGE_SIZE;
            ksm.scanPfn = pfn;
            return item;
          }
          if (pfn >= 0) {
            mem.putPage(pfn);
          } else {
            // 2.6.33's loop is per address, but follow_page() finds an empty page
            // table at once (pmd_none): skip to the next table, so a sparse area of
            // 256 GiB costs its tables, not its 2^26 addresses. No decision changes:
            // every address skipped would have found no page.
            const next = mm.nextTableAddr(ksm.scanAddress, vma.end);
            if (next > ksm.scanAddress) {
              ksm.scanAddress = next;
              continue;
            }
          }
          ksm.scanAddress += PAGE_SIZE;
        }
      }
    } else {
      ksm.scanAddress = 0;
      ksm.scanLink = slot;
    }
    // Nuke all the rmap_items above this one: there are no VM_MERGEABLE areas
    // with such addresses any more.
    removeTrailingRmapItems(ksm, ksm.scanLink);
    ksm.scanSlot = slot.next;
    if (ksm.scanAddress === 0) {
      // A whole pass found no VM_MERGEABLE area (or the mm exited): do what
      // __ksm_exit would, and drop the mm from our lists now.
      freeSlot(ksm, slot);
    }
    slot = ksm.scanSlot;
    if (slot === ksm.mmHead) break;
    ksm.scanAddress = 0;
    ksm.scanLink = slot;
  }
  ksm.seqnr++;
  // Linux resets the unstable root only when the next full scan starts; nothing
  // searches it in between, and every rmap_item still in it is now a scan old and
  // will never be rb_erased, so dropping it here is unobservable, and it keeps
  // "the unstable tree holds exactly this scan's insertions" true at all times.
  ksm.rootUnstableTree.node = null;
  return null;
}

/** ksm_do_scan(): scan up to `npages` pages; returns how many were scanned. */
export function ksmDoScan(ksm: Ksm, npages: number): number {
  const mem = ksm.kernel.mem;
  let scanned = 0;
  while (npages-- > 0) {
    const item = scanGetNextRmapItem(ksm);
    if (item === null) break;
    const pfn = ksm.scanPfn;
    ksm.scanPfn = -1;
    scanned++;
    if (!mem.isKsm(pfn) || (item.flags & STABLE_FLAG) === 0) cmpAndMergePage(ksm, pfn, item);
    mem.putPage(pfn);
  }
  ksm.pagesScanned += scanned;
  return scanned;
}
