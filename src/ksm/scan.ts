import { PAGE_SIZE, VM_MERGEABLE } from '../mm/constants.js';
import { isThpFrame, splitHugePage, thpHead } from '../mm/huge-memory.js';
import { KSMD_NS_PER_PAGE, advisorStartScan, advisorStopScan } from './advisor.js';
import type { Ksm } from './ksm.js';
import { tryToMergeTwoPages, tryToMergeWithKsmPage, tryToMergeWithZeroPage } from './merge.js';
import { followPage, pageStableNode, scanChecksum, testExit } from './pages.js';
import { freeSlot, getNextRmapItem, removeRmapItemFromTree, removeTrailingRmapItems } from './rmap-item.js';
import {
  getKpfnNid,
  getKsmPage,
  isPageSharingCandidate,
  migrateListAdd,
  stableNodeDupDel,
  stableTreeAppend,
  stableTreeInsert,
  stableTreeInsertV6,
  stableTreeSearch,
  stableTreeSearchV6,
} from './stable-tree.js';
import { EBUSY, NODE_MIGRATE, NULL, RMAP_AGE_MAX, STABLE_FLAG, type RmapItem } from './structs.js';
import { breakCow } from './unmerge.js';
import { unstableTreeSearchInsert, type TreePageOut } from './unstable-tree.js';

/*
 * The scan (mm/ksm.c): ksmd's cursor walks every VM_MERGEABLE area of every mm on
 * the list, page by page, making or finding the rmap_item of each page it meets
 * (scan_get_next_rmap_item), and offers each page to the trees (cmp_and_merge_page).
 * A full scan ends when the cursor comes back round to the list head: full_scans
 * goes up and the unstable tree is thrown away.
 *
 * 6.x changed cmp_and_merge_page() in its order (the checksum gate comes first for a
 * page not yet KSM, then the zero page, then the stable tree) and in nearly every
 * step after (chains, NUMA trees, forked mappings past the cap): 2.6.33's is
 * cmpAndMergePage, 6.x's cmpAndMergePageV6, side by side below. The cursor's walk
 * is the same in both, with 6.x's smart-scan skip and advisor hooks in it.
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
  // (2.6.33)
  const mem = ksm.kernel.mem;
  const ri = ksm.rmapItemCache;
  removeRmapItemFromTree(ksm, item);

  // We first start with searching the page inside the stable tree.
  const domain = ksm.itemMm(item).ksmMergeDomain;
  let kpfn = stableTreeSearch(ksm, pfn, domain);
  if (kpfn >= 0) {
    const err = tryToMergeWithKsmPage(ksm, item, pfn, kpfn);
    if (err === 0) stableTreeAppend(ksm, item, pageStableNode(ksm, kpfn), false);
    mem.putPage(kpfn);
    return;
  }

  // A page whose checksum changed since the last scan is changing often: keep it
  // out of the unstable tree, and don't waste time searching it either.
  ksm.work.checksums++;
  const checksum = scanChecksum(ksm, pfn, item);
  if (ri.oldchecksum[item] !== checksum) {
    ri.oldchecksum[item] = checksum;
    return;
  }

  const out = scratchTreePage;
  const treeItem = unstableTreeSearchInsert(ksm, item, pfn, out);
  if (treeItem === NULL) return;
  const treePfn = out.pfn;
  out.pfn = -1;
  kpfn = tryToMergeTwoPages(ksm, item, pfn, treeItem, treePfn);
  mem.putPage(treePfn);
  // As soon as we merge this page, take the rmap_item of the page we merged with
  // out of the unstable tree, and insert it instead as a new stable node.
  if (kpfn >= 0) {
    removeRmapItemFromTree(ksm, treeItem);
    const node = stableTreeInsert(ksm, kpfn, domain);
    if (node !== NULL) {
      stableTreeAppend(ksm, treeItem, node, false);
      stableTreeAppend(ksm, item, node, false);
    } else {
      // Two virtual addresses now point to a KSM page outside the stable tree:
      // break COW on both.
      breakCow(ksm, treeItem);
      breakCow(ksm, item);
    }
  }
}

/**
 * cmp_and_merge_page() (6.x): for a page not yet KSM, the checksum gate first (a
 * page that changed since the last scan is not worth any search), then the zero
 * page (use_zero_pages), then the stable tree, then the unstable tree. A KSM page
 * already listed under its own node is left alone; one that moved to another NUMA
 * node goes to migrate_nodes to be placed again; one that a forked mm maps but
 * whose node does not list this rmap_item yet joins its node, past max_page_sharing
 * if need be.
 */
export function cmpAndMergePageV6(ksm: Ksm, pfn: number, item: RmapItem): void {
  const mem = ksm.kernel.mem;
  const ri = ksm.rmapItemCache;
  const sn = ksm.stableNodeCache;
  let maxPageSharingBypass = false;
  const stableNode = pageStableNode(ksm, pfn);
  if (stableNode !== NULL) {
    if (sn.linked[stableNode] !== NODE_MIGRATE && getKpfnNid(ksm, sn.kpfn[stableNode]!) !== sn.nid[stableNode]) {
      stableNodeDupDel(ksm, stableNode);
      migrateListAdd(ksm, stableNode);
    }
    if (sn.linked[stableNode] !== NODE_MIGRATE && ri.headOf(item) === stableNode) return;
    // A KSM fork may go over the sharing limit, without warnings.
    if (!isPageSharingCandidate(ksm, stableNode)) maxPageSharingBypass = true;
  } else {
    removeRmapItemFromTree(ksm, item);
    // A page whose checksum changed since the last scan is changing often: keep it
    // out of the unstable tree, and don't waste time searching for it either.
    ksm.work.checksums++;
    const checksum = scanChecksum(ksm, pfn, item);
    if (ri.oldchecksum[item] !== checksum) {
      ri.oldchecksum[item] = checksum;
      return;
    }
    if (tryToMergeWithZeroPage(ksm, item, pfn) === 0) return;
  }

  // Start by searching for the page in the stable tree.
  const domain = ksm.itemMm(item).ksmMergeDomain;
  const kpfn = stableTreeSearchV6(ksm, pfn, domain);
  if (kpfn === pfn && ri.headOf(item) === stableNode) {
    mem.putPage(kpfn);
    return;
  }
  removeRmapItemFromTree(ksm, item);
  if (kpfn === EBUSY) return;
  if (kpfn >= 0) {
    const err = tryToMergeWithKsmPage(ksm, item, pfn, kpfn);
    // The page was merged: add its rmap_item to the stable tree.
    if (err === 0) stableTreeAppend(ksm, item, pageStableNode(ksm, kpfn), maxPageSharingBypass);
    mem.putPage(kpfn);
    return;
  }

  const out = scratchTreePage;
  const treeItem = unstableTreeSearchInsert(ksm, item, pfn, out);
  if (treeItem === NULL) return;
  const treePfn = out.pfn;
  out.pfn = -1;
  const newKpfn = tryToMergeTwoPages(ksm, item, pfn, treeItem, treePfn);
  // Both pages in one THP: the merge took two references on it, so its split
  // failed; with the tree page's reference dropped, split it now, and merge at a
  // later scan. trylock: a locked page is better skipped than waited for.
  const split = isThpFrame(mem.flags, pfn) && isThpFrame(mem.flags, treePfn) && thpHead(pfn) === thpHead(treePfn);
  mem.putPage(treePfn);
  if (newKpfn < 0 && split && mem.trylockPage(pfn)) {
    splitHugePage(ksm.kernel, pfn, pfn);
    mem.unlockPage(pfn);
  }
  if (newKpfn >= 0) {
    // The pages were merged: insert a new node in the stable tree and add both
    // rmap_items. (6.x's insertion cannot fail but for lack of memory.)
    const node = stableTreeInsertV6(ksm, newKpfn, domain);
    stableTreeAppend(ksm, treeItem, node, false);
    stableTreeAppend(ksm, item, node, false);
  }
}

/** skip_age(): how many scans to skip a page that failed to merge `age` times. */
function skipAge(age: number): number {
  if (age <= 3) return 1;
  if (age <= 5) return 2;
  if (age <= 8) return 4;
  return 8;
}

/**
 * should_skip_rmap_item() (6.x smart scan): skip this page in this scan? A page that
 * has been scanned three times without becoming KSM is then scanned only every
 * 2nd, 3rd, 5th, then 9th scan (skip_age()); KSM pages are never skipped. A skipped
 * page leaves whichever tree held it, and counts in pages_skipped.
 */
function shouldSkipRmapItem(ksm: Ksm, pfn: number, item: RmapItem): boolean {
  if (ksm.smartScan === 0) return false;
  // Never skip pages that are already KSM: cmp_and_merge_page() will essentially
  // ignore them, but they still have to be processed properly.
  if (ksm.kernel.mem.isKsm(pfn)) return false;
  const ri = ksm.rmapItemCache;
  const age = ri.age[item]!;
  if (age !== RMAP_AGE_MAX) ri.age[item] = age + 1;
  // Smaller ages are not skipped: they need their chance to go through the phases
  // of merging (checksum, unstable tree, merge).
  if (age < 3) return false;
  // Still allowed to skip? If not, don't, and work out how often it may be next.
  const skips = ri.remainingSkips[item]!;
  if (skips === 0) {
    ri.remainingSkips[item] = skipAge(age);
    return false;
  }
  ksm.pagesSkipped++;
  ri.remainingSkips[item] = skips - 1;
  removeRmapItemFromTree(ksm, item);
  return true;
}

/**
 * scan_get_next_rmap_item(): advance the cursor to the next anonymous page in a
 * VM_MERGEABLE area; returns its rmap_item (the page, referenced, in ksm.scanPfn),
 * or NULL at the end of a full scan.
 */
export function scanGetNextRmapItem(ksm: Ksm): RmapItem {
  const mem = ksm.kernel.mem;
  if (ksm.mmHead.next === ksm.mmHead) return NULL;
  let slot = ksm.scanSlot;
  if (slot === ksm.mmHead) {
    advisorStartScan(ksm);
    // 6.x: stale nodes on migrate_nodes are never met by a tree search: prune them
    // once before each full scan.
    if (ksm.mergeAcrossNodes === 0) {
      for (let node = ksm.migrateNodes; node !== NULL; ) {
        const next = ksm.stableNodeCache.migrateNext[node]!;
        const kpfn = getKsmPage(ksm, node);
        if (kpfn >= 0) mem.putPage(kpfn);
        node = next;
      }
    }
    for (const root of ksm.unstableRoots) root.node = NULL;
    slot = ksm.mmHead.next;
    ksm.scanSlot = slot;
    ksm.scanAddress = 0;
    ksm.scanLink = NULL;
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
            if (shouldSkipRmapItem(ksm, pfn, item)) {
              mem.putPage(pfn);
              continue;
            }
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
      ksm.scanLink = NULL;
    }
    // Nuke all the rmap_items above this one: there are no VM_MERGEABLE areas
    // with such addresses any more.
    removeTrailingRmapItems(ksm, slot, ksm.scanLink);
    ksm.scanSlot = slot.next;
    if (ksm.scanAddress === 0) {
      // A whole pass found no VM_MERGEABLE area (or the mm exited): do what
      // __ksm_exit would, and drop the mm from our lists now.
      freeSlot(ksm, slot);
    }
    slot = ksm.scanSlot;
    if (slot === ksm.mmHead) break;
    ksm.scanAddress = 0;
    ksm.scanLink = NULL;
  }
  advisorStopScan(ksm);
  ksm.seqnr++;
  // Linux resets the unstable root only when the next full scan starts; nothing
  // searches it in between, and every rmap_item still in it is now a scan old and
  // will never be rb_erased, so dropping it here is unobservable, and it keeps
  // "the unstable tree holds exactly this scan's insertions" true at all times.
  for (const root of ksm.unstableRoots) root.node = NULL;
  return NULL;
}

/**
 * ksm_do_scan(): scan up to `npages` pages; returns how many were scanned. 2.6.33
 * passes over a KSM page already in the stable tree here; 6.x's
 * cmp_and_merge_page() sees every page and decides itself.
 */
export function ksmDoScan(ksm: Ksm, npages: number): number {
  const mem = ksm.kernel.mem;
  const v6 = ksm.profile.features.stableNodeChains;
  let scanned = 0;
  while (npages-- > 0) {
    const item = scanGetNextRmapItem(ksm);
    if (item === NULL) break;
    const pfn = ksm.scanPfn;
    ksm.scanPfn = -1;
    scanned++;
    if (v6) cmpAndMergePageV6(ksm, pfn, item);
    else if (!mem.isKsm(pfn) || (ksm.rmapItemCache.flags[item]! & STABLE_FLAG) === 0) cmpAndMergePage(ksm, pfn, item);
    mem.putPage(pfn);
  }
  ksm.pagesScanned += scanned;
  // The CPU time the advisor measures (advisor.ts).
  if (ksm.profile.features.advisor) ksm.ksmdCpuTime += Number(BigInt(scanned) * KSMD_NS_PER_PAGE);
  return scanned;
}
