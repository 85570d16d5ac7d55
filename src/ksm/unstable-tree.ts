import { rbInsertColor, rbLinkNode, type RbNode } from '../lib/rbtree.js';
import type { Ksm } from './ksm.js';
import { comparePagesInDomains, getMergeablePage } from './pages.js';
import { getKpfnNid } from './stable-tree.js';
import { SEQNR_MASK, UNSTABLE_FLAG, type RmapItem } from './structs.js';

/*
 * The unstable tree (mm/ksm.c): pages whose checksum stayed the same for a full scan,
 * still writable, sorted by the contents they had when inserted. Writes can leave it
 * out of order ("corrupted"), so it is thrown away at every full scan and rebuilt;
 * red-black balancing depends on colours, not contents, so it stays balanced, and a
 * match found in it is compared again byte by byte after write-protecting both pages,
 * so a wrong answer costs a missed merge, never a wrong one.
 */

/** Where unstable_tree_search_insert() leaves the tree page. */
export interface TreePageOut {
  pfn: number;
}

/**
 * unstable_tree_search_insert(): an rmap_item in the unstable tree whose page has
 * the same contents as `pfn` (its page, with a reference, in out.pfn), or null
 * after inserting `item` into the tree.
 */
export function unstableTreeSearchInsert(ksm: Ksm, item: RmapItem, pfn: number, out: TreePageOut): RmapItem | null {
  const mem = ksm.kernel.mem;
  // 6.x with merge_across_nodes 0: the tree of the page's node (2.6.33: tree 0).
  const nid = getKpfnNid(ksm, pfn);
  const root = ksm.unstableRoots[nid]!;
  let parent: RbNode | null = null;
  let left = false;
  let cur = root.node as RmapItem | null;
  while (cur !== null) {
    const treePfn = getMergeablePage(ksm, cur);
    if (treePfn < 0) return null;
    // Don't substitute a KSM page for a forked page: it is the same page.
    if (treePfn === pfn) {
      mem.putPage(treePfn);
      return null;
    }
    ksm.work.unstableTreeCompares++;
    const ret = comparePagesInDomains(ksm, pfn, item.mm.ksmMergeDomain, treePfn, cur.mm.ksmMergeDomain);
    parent = cur;
    if (ret < 0) {
      mem.putPage(treePfn);
      left = true;
      cur = cur.rbLeft as RmapItem | null;
    } else if (ret > 0) {
      mem.putPage(treePfn);
      left = false;
      cur = cur.rbRight as RmapItem | null;
    } else if (ksm.mergeAcrossNodes === 0 && mem.nodeOf(treePfn) !== nid) {
      // The tree page has migrated to another node: it will be flushed out and put
      // in the right unstable tree next time; only merge with it across nodes.
      mem.putPage(treePfn);
      return null;
    } else {
      out.pfn = treePfn;
      return cur;
    }
  }
  item.flags |= UNSTABLE_FLAG | (ksm.seqnr & SEQNR_MASK);
  item.nid = nid;
  rbLinkNode(item, parent, left, root);
  rbInsertColor(item, root);
  ksm.pagesUnshared++;
  return null;
}
