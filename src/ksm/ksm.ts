import { KernelError, assert, assertNever, bug } from '../lib/errors.js';
import { PAGE_CHECKSUM_BATCH, PageChecksumBatch, pageChecksum } from '../lib/jhash.js';
import { RbRoot, rbErase, rbFirst, rbInitNode, rbInsertColor, rbLinkNode, rbNext, type RbNode } from '../lib/rbtree.js';
import {
  MMF_VM_MERGEABLE,
  PAGE_SIZE,
  PG_ANON,
  PG_KSM,
  PG_MLOCKED,
  PG_SWAPCACHE,
  PTE_SPECIAL,
  PTE_WRITE,
  VM_DONTEXPAND,
  VM_HUGETLB,
  VM_INSERTPAGE,
  VM_IO,
  VM_LOCKED,
  VM_MAYSHARE,
  VM_MERGEABLE,
  VM_MIXEDMAP,
  VM_NONLINEAR,
  VM_PFNMAP,
  VM_RESERVED,
  VM_SAO,
  VM_SHARED,
  mkPte,
  ptePayload,
  ptePresent,
} from '../mm/constants.js';
import type { HostKernel } from '../mm/kernel.js';
import type { KsmAdvice, KsmOps, ReferencedState, RmapOne } from '../mm/ksm-ops.js';
import { VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_WRITE, handleMmFault, mlockVmaPage, munlockVmaPage } from '../mm/memory.js';
import type { MmStruct } from '../mm/mm.js';
import { SWAP_AGAIN, SWAP_FAIL, pageAddAnonRmap, pageAddressInVma, pageReferencedOne, pageRemoveRmap, tryToUnmapOne } from '../mm/rmap.js';
import type { AnonVma, Vma } from '../mm/vma.js';
import { MmSlot, SEQNR_MASK, STABLE_FLAG, StableNode, UNSTABLE_FLAG, decodeRmapFlags, newRmapItem, type RmapItem, type RmapLink } from './structs.js';

/*
 * A few notes about the KSM scanning process (after mm/ksm.c):
 *
 * KSM sorts pages by content into two red-black trees. The stable tree holds the
 * merged, write-protected KSM pages: their contents cannot change, so it stays
 * sorted. The unstable tree holds pages that have not changed for one full scan
 * (their checksum matched the previous one) but are still writable: it can be
 * "corrupted" by writes, so it is thrown away at the start of every full scan and
 * rebuilt. Red-black balancing depends on colours, not contents, so a corrupted
 * unstable tree stays balanced; and a pair found there is checked byte by byte and
 * write-protected before it is merged, so a wrong answer costs a missed merge, never
 * a wrong one. Each scanned page is looked for first in the stable tree, then
 * (if its checksum is unchanged) in the unstable tree.
 *
 * The model runs single-threaded, so mmap_sem, ksm_thread_mutex and ksm_mmlist_lock
 * have nothing to exclude. The page lock is kept where KSM only *tries* it
 * (trylock_page in try_to_merge_one_page), because a page locked by someone else —
 * reclaim, migration, a test — must be skipped exactly as Linux skips it; where
 * Linux sleeps in lock_page() on a KSM page only to serialise against concurrent
 * rmap walkers, there is nothing to wait for and we do not lock.
 */

export const KSM_RUN_STOP = 0;
export const KSM_RUN_MERGE = 1;
export const KSM_RUN_UNMERGE = 2;

/** VM flags for which MADV_MERGEABLE is silently ignored ("be somewhat over-protective"). */
const KSM_UNMERGEABLE_VM_FLAGS =
  VM_MERGEABLE | VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_RESERVED | VM_HUGETLB | VM_INSERTPAGE | VM_NONLINEAR | VM_MIXEDMAP | VM_SAO;

/** Error of a merge step: 0 for success, as the kernel's -EFAULT otherwise. */
const EFAULT = -14;
const ENOMEM = -12;

/** Where stable_tree_search() / unstable_tree_search_insert() leave the tree page. */
interface TreePageOut {
  pfn: number;
}
const scratchTreePage: TreePageOut = { pfn: -1 };

/** scanChecksum()'s batch, and the frames in it in the order they were added. */
const scratchChecksumBatch = new PageChecksumBatch();
const scratchBatchPfns = new Int32Array(PAGE_CHECKSUM_BATCH);

/** How far past the scanned page scanChecksum() looks for more pages to hash with it. */
const CHECKSUM_LOOKAHEAD_PTES = 32;

/** Slots in memcmpPages()'s memo: well above one page's tree walks (~4 log2 N compares). */
const MEMCMP_MEMO_BITS = 8;
const MEMCMP_MEMO_SLOTS = 1 << MEMCMP_MEMO_BITS;

/**
 * The KSM engine: everything in mm/ksm.c. One instance per kernel; it registers
 * itself as the kernel's KsmOps, its sysfs files, its memory notifier, its
 * invariant checker and the ksmd thread.
 */
export class Ksm implements KsmOps {
  readonly kernel: HostKernel;

  // ---- the trees and lists ----
  readonly rootStableTree: RbRoot;
  readonly rootUnstableTree: RbRoot;
  /** mm_slots_hash */
  readonly mmSlots: Map<MmStruct, MmSlot>;
  /** ksm_mm_head: the list head, never scanned (mm is null). */
  readonly mmHead: MmSlot;

  // ---- the scan cursor (struct ksm_scan) ----
  scanSlot: MmSlot;
  scanAddress: number;
  /** The link to follow for the next rmap_item: ksm_scan.rmap_list. */
  scanLink: RmapLink;
  seqnr: number;
  /** The page scan_get_next_rmap_item() found, with a reference held. */
  private scanPfn: number;

  // ---- statistics ----
  pagesShared: number;
  pagesSharing: number;
  pagesUnshared: number;
  rmapItems: number;
  /** Pages ksmd has looked at (not in 2.6.33; 6.x's pages_scanned, for reports). */
  pagesScanned: number;

  // ---- knobs ----
  /** An unsigned long, as the sysfs file takes it: a bigint so that every value reads back exactly. */
  maxKernelPages: bigint;
  pagesToScan: number;
  sleepMillisecs: number;
  run: number;
  /** ksm_thread_mutex held by the memory hotplug callback (MEM_GOING_OFFLINE..). */
  offlineLock: boolean;
  /**
   * memcmpPages()'s memo (not in the kernel: see there). Slot s holds the sign of
   * memcmp(memcmpLo[s], memcmpHi[s]) (lo <= hi), true while mem.contentsEpoch is
   * still memcmpEpoch[s]; -1 marks a slot never used.
   */
  readonly memcmpLo: Int32Array;
  readonly memcmpHi: Int32Array;
  readonly memcmpSign: Int8Array;
  readonly memcmpEpoch: Float64Array;
  /** Where checkInvariants() resumes re-verifying memoized checksums (check.ts). */
  memoCheckCursor: number;

  constructor(kernel: HostKernel) {
    this.kernel = kernel;
    this.rootStableTree = new RbRoot();
    this.rootUnstableTree = new RbRoot();
    this.mmSlots = new Map();
    this.mmHead = new MmSlot(null);
    this.scanSlot = this.mmHead;
    this.scanAddress = 0;
    this.scanLink = this.mmHead;
    this.seqnr = 0;
    this.scanPfn = -1;
    this.pagesShared = 0;
    this.pagesSharing = 0;
    this.pagesUnshared = 0;
    this.rmapItems = 0;
    this.pagesScanned = 0;
    // ksm_init(): ksm_max_kernel_pages = totalram_pages / 4
    this.maxKernelPages = BigInt(Math.floor(kernel.mem.nrFrames / 4));
    this.pagesToScan = 100;
    this.sleepMillisecs = 20;
    this.run = KSM_RUN_STOP;
    this.offlineLock = false;
    this.memcmpLo = new Int32Array(MEMCMP_MEMO_SLOTS);
    this.memcmpHi = new Int32Array(MEMCMP_MEMO_SLOTS);
    this.memcmpSign = new Int8Array(MEMCMP_MEMO_SLOTS);
    this.memcmpEpoch = new Float64Array(MEMCMP_MEMO_SLOTS).fill(-1);
    this.memoCheckCursor = 0;
  }

  // =====================================================================================
  // Allocation and small helpers
  // =====================================================================================

  /** alloc_rmap_item() */
  private allocRmapItem(mm: MmStruct, address: number): RmapItem {
    this.rmapItems++;
    return newRmapItem(mm, address);
  }

  /** free_rmap_item() */
  private freeRmapItem(item: RmapItem): void {
    this.rmapItems--;
    item.rmapList = null;
  }

  /** ksm_test_exit(): ksmd backs out of an mm as soon as its last user is gone. */
  private testExit(mm: MmStruct): boolean {
    return mm.mmUsers === 0;
  }

  /** hold_anon_vma(): an rmap_item entering the stable tree pins its anon_vma. */
  private holdAnonVma(item: RmapItem, anonVma: AnonVma): void {
    item.anonVma = anonVma;
    anonVma.ksmRefcount++;
  }

  /** drop_anon_vma(): the anon_vma is freed once neither vmas nor KSM use it. */
  private dropAnonVma(item: RmapItem): void {
    const av = item.anonVma;
    if (av === null) bug(`drop_anon_vma on rmap_item ${this.describeItem(item)} holding none`);
    item.anonVma = null;
    av.ksmRefcount--;
    if (av.ksmRefcount < 0) bug(`anon_vma ${av.id} ksm refcount underflow`);
    av.freeIfUnused();
  }

  /** The stable node a KSM page's mapping points to (page_stable_node()), or null. */
  private pageStableNode(pfn: number): StableNode | null {
    return this.kernel.mem.isKsm(pfn) ? (this.kernel.mem.mapping[pfn] as StableNode | null) : null;
  }

  /** set_page_stable_node(): upgrade an anonymous page to a KSM page. */
  private setPageStableNode(pfn: number, node: StableNode | null): void {
    const mem = this.kernel.mem;
    mem.flags[pfn]! |= PG_ANON | PG_KSM;
    mem.mapping[pfn] = node;
  }

  /**
   * follow_page(vma, addr, FOLL_GET): the page mapped at addr with a reference
   * taken, or -1. The zero page is not a normal page (vm_normal_page), and anything
   * but a present pte has no page to follow.
   */
  private followPage(vma: Vma, addr: number): number {
    const pte = vma.mm.getPte(addr);
    if (!ptePresent(pte) || (pte & PTE_SPECIAL) !== 0) return -1;
    const pfn = ptePayload(pte);
    this.kernel.mem.getPage(pfn);
    return pfn;
  }

  /** calc_checksum(): jhash2 over the page's 1024 words, initval 17 (memoized per frame). */
  calcChecksum(pfn: number): number {
    const mem = this.kernel.mem;
    if (mem.checksumValid[pfn] !== 0) return mem.checksumMemo[pfn]!;
    const sum = pageChecksum(mem.wordsOf(pfn), mem.wordOffsetOf(pfn));
    mem.checksumMemo[pfn] = sum;
    mem.checksumValid[pfn] = 1;
    return sum;
  }

  /**
   * calc_checksum() of the page ksmd is scanning, `pfn` mapped at item's address.
   * Not the kernel's way, but the kernel's numbers: the checksum is a pure function
   * of the page's bytes, PhysMem memoizes it per frame until the bytes change, and so
   * where and when it is computed cannot change any decision.
   *
   * That lets us compute it early and in bulk. jhash2 is one long serial chain of
   * adds, shifts and xors, so a lone page leaves most of the CPU idle; several pages
   * hashed side by side in SIMD lanes cost about a quarter each (lib/jhash.ts). So on
   * a miss, the next pages the scan will reach in this area whose memo is missing —
   * present, anonymous, not KSM — are hashed along with this one, and memoized. They
   * are only read: no reference, no young bit, no rmap_item. A page that changes or
   * gets merged before ksmd reaches it only wastes its share of the batch.
   *
   * The memo pays twice in a steady scan: a page unchanged since the last full scan
   * (the common case, and the only case that can enter the unstable tree) is not
   * hashed again.
   */
  private scanChecksum(pfn: number, item: RmapItem): number {
    const mem = this.kernel.mem;
    if (mem.checksumValid[pfn] !== 0) return mem.checksumMemo[pfn]!;
    const batch = scratchChecksumBatch;
    const pfns = scratchBatchPfns;
    batch.clear(); // empty, unless an exception left it half-filled
    pfns[0] = pfn;
    batch.add(mem.dataOf(pfn), mem.wordsOf(pfn), mem.offsetOf(pfn));
    const mm = item.mm;
    const vma = mm.findVma(item.address);
    if (vma !== null) {
      const limit = Math.min(vma.end, item.address + CHECKSUM_LOOKAHEAD_PTES * PAGE_SIZE);
      for (let addr = item.address + PAGE_SIZE; addr < limit && batch.n < PAGE_CHECKSUM_BATCH; addr += PAGE_SIZE) {
        const pte = mm.getPte(addr);
        if (!ptePresent(pte) || (pte & PTE_SPECIAL) !== 0) continue;
        const p = ptePayload(pte);
        if ((mem.flags[p]! & (PG_ANON | PG_KSM)) !== PG_ANON || mem.checksumValid[p] !== 0) continue;
        pfns[batch.n] = p;
        batch.add(mem.dataOf(p), mem.wordsOf(p), mem.offsetOf(p));
      }
    }
    batch.run();
    for (let j = 0; j < batch.n; j++) {
      mem.checksumMemo[pfns[j]!] = batch.sums[j]!;
      mem.checksumValid[pfns[j]!] = 1;
    }
    batch.clear();
    return mem.checksumMemo[pfn]!;
  }

  /**
   * memcmp_pages(), memoized. Not the kernel's way, but its answers: a comparison is
   * a function of the two frames' bytes, and while mem.contentsEpoch stands no byte
   * of any frame has changed, so a remembered sign is the sign memcmp would give.
   *
   * It pays because cmp_and_merge_page() asks the same questions twice: after
   * stable_tree_search() found kpage equal, try_to_merge_one_page() compares the two
   * again; after unstable_tree_search_insert() found a match, so does the merge; and
   * stable_tree_insert() walks the very path that the failed stable_tree_search() of
   * the same page just walked (nothing in between writes a page: write-protecting,
   * replacing a pte and freeing the old page leave every byte alone). The kernel
   * compares again because another CPU may have written the page meanwhile; here a
   * write would have moved the epoch, and the memo would miss.
   */
  private memcmpPages(a: number, b: number): number {
    const mem = this.kernel.mem;
    const lo = a < b ? a : b;
    const hi = a < b ? b : a;
    const slot = Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> (32 - MEMCMP_MEMO_BITS);
    const epoch = mem.contentsEpoch;
    let sign: number;
    if (this.memcmpEpoch[slot] === epoch && this.memcmpLo[slot] === lo && this.memcmpHi[slot] === hi) {
      sign = this.memcmpSign[slot]!;
    } else {
      sign = Math.sign(mem.comparePages(lo, hi));
      this.memcmpLo[slot] = lo;
      this.memcmpHi[slot] = hi;
      this.memcmpSign[slot] = sign;
      this.memcmpEpoch[slot] = epoch;
    }
    return a === lo ? sign : 0 - sign;
  }

  // =====================================================================================
  // Breaking COW
  // =====================================================================================

  /**
   * break_ksm(): fault a write on addr until the KSM page there is replaced by a
   * private copy. Touches only a KSM page, in case the area was remapped meanwhile.
   * Returns ENOMEM when the copy could not be had, 0 otherwise.
   */
  private breakKsm(vma: Vma, addr: number): number {
    const mem = this.kernel.mem;
    let ret: number;
    do {
      const pfn = this.followPage(vma, addr);
      if (pfn < 0) break;
      if (mem.isKsm(pfn)) ret = handleMmFault(this.kernel, vma, addr, true);
      else ret = VM_FAULT_WRITE;
      mem.putPage(pfn);
      if ((ret & VM_FAULT_OOM) !== 0) return ENOMEM;
    } while ((ret & (VM_FAULT_WRITE | VM_FAULT_SIGBUS | VM_FAULT_OOM)) === 0);
    return 0;
  }

  /** break_cow(): undo a merge of rmap_item's page; drops its anon_vma reference. */
  private breakCow(item: RmapItem): void {
    // It is no accident that whenever we break COW to undo, we also drop the anon_vma.
    this.dropAnonVma(item);
    const vma = this.findMergeableVma(item.mm, item.address);
    if (vma !== null) this.breakKsm(vma, item.address);
  }

  /**
   * The VM_MERGEABLE area with an anon_vma that still covers addr in mm, or null
   * (also once mm has exited). 2.6.33 writes these checks out in both break_cow()
   * and get_mergeable_page(); later kernels share them as find_mergeable_vma(), as
   * we do.
   */
  private findMergeableVma(mm: MmStruct, addr: number): Vma | null {
    if (this.testExit(mm)) return null;
    const vma = mm.findVma(addr);
    if (vma === null || vma.start > addr) return null;
    if ((vma.flags & VM_MERGEABLE) === 0 || vma.anonVma === null) return null;
    return vma;
  }

  /** get_mergeable_page(): the anonymous page at rmap_item's address, with a reference, or -1. */
  private getMergeablePage(item: RmapItem): number {
    const vma = this.findMergeableVma(item.mm, item.address);
    if (vma === null) return -1;
    const pfn = this.followPage(vma, item.address);
    if (pfn < 0) return -1;
    if (!this.kernel.mem.isAnon(pfn)) {
      this.kernel.mem.putPage(pfn);
      return -1;
    }
    return pfn;
  }

  // =====================================================================================
  // The stable tree, through the keyhole
  // =====================================================================================

  /** remove_node_from_stable_tree() */
  private removeNodeFromStableTree(node: StableNode): void {
    for (let item = node.hlist; item !== null; ) {
      const next = item.hlistNext;
      if (next !== null) this.pagesSharing--;
      else this.pagesShared--;
      this.dropAnonVma(item);
      item.flags = 0;
      item.head = null;
      item.hlistNext = null;
      item.hlistPrev = null;
      item = next;
    }
    node.hlist = null;
    rbErase(node, this.rootStableTree);
  }

  /**
   * get_ksm_page(): is the stable node's frame still its KSM page? The node holds no
   * reference on the page — if it did, swapping the page out would have to wait for
   * ksmd to come round and drop it, seconds or minutes later. Instead it peeks
   * through a keyhole: the page is ours only while its `mapping` still points back
   * to this node, which freeing a page resets. If so, take a reference and return
   * the frame; if not, the node is stale: remove it from the tree and return -1.
   */
  private getKsmPage(node: StableNode): number {
    const mem = this.kernel.mem;
    const pfn = node.kpfn;
    if (!mem.isKsm(pfn) || mem.mapping[pfn] !== node || !mem.getPageUnlessZero(pfn)) {
      this.removeNodeFromStableTree(node);
      return -1;
    }
    return pfn;
  }

  /** remove_rmap_item_from_tree(): take the rmap_item out of whichever tree holds it. */
  private removeRmapItemFromTree(item: RmapItem): void {
    if ((item.flags & STABLE_FLAG) !== 0) {
      const node = item.head!;
      const pfn = this.getKsmPage(node);
      // A stale node was removed with all its rmap_items, this one included.
      if (pfn < 0) return;
      // hlist_del()
      if (item.hlistPrev !== null) item.hlistPrev.hlistNext = item.hlistNext;
      else node.hlist = item.hlistNext;
      if (item.hlistNext !== null) item.hlistNext.hlistPrev = item.hlistPrev;
      item.hlistNext = null;
      item.hlistPrev = null;
      item.head = null;
      this.kernel.mem.putPage(pfn);
      if (node.hlist !== null) this.pagesSharing--;
      else this.pagesShared--;
      this.dropAnonVma(item);
      item.flags = 0;
    } else if ((item.flags & UNSTABLE_FLAG) !== 0) {
      // Usually the rb_erase is not needed: the unstable tree was reset at the start
      // of this full scan. But an rmap_item inserted by this very scan is still in
      // it (an mm exiting, or unmerging, can get here), and must be erased.
      const age = (this.seqnr - item.flags) & 0xff;
      if (age > 1) bug(`unstable rmap_item ${this.describeItem(item)} is ${age} scans old`);
      if (age === 0) rbErase(item, this.rootUnstableTree);
      else rbInitNode(item);
      this.pagesUnshared--;
      item.flags = 0;
    }
  }

  /** remove_trailing_rmap_items(): free every rmap_item from `link` on. */
  private removeTrailingRmapItems(link: RmapLink): void {
    while (link.rmapList !== null) {
      const item = link.rmapList;
      link.rmapList = item.rmapList;
      this.removeRmapItemFromTree(item);
      this.freeRmapItem(item);
    }
  }

  // =====================================================================================
  // Unmerging
  // =====================================================================================

  /**
   * unmerge_ksm_pages(): break COW on every KSM page in [start, end) of vma. The
   * rmap_items are left for ksmd to clean up on its next pass.
   */
  private unmergeKsmPages(vma: Vma, start: number, end: number): number {
    let err = 0;
    for (let addr = start; addr < end && err === 0; addr += PAGE_SIZE) {
      if (this.testExit(vma.mm)) break;
      err = this.breakKsm(vma, addr);
    }
    return err;
  }

  /** unmerge_and_remove_all_rmap_items(): run=2. */
  private unmergeAndRemoveAllRmapItems(): number {
    this.scanSlot = this.mmHead.next;
    for (let slot = this.scanSlot; slot !== this.mmHead; slot = this.scanSlot) {
      const mm = slot.mm!;
      for (const vma of [...mm.vmas]) {
        if (this.testExit(mm)) break;
        if ((vma.flags & VM_MERGEABLE) === 0 || vma.anonVma === null) continue;
        const err = this.unmergeKsmPages(vma, vma.start, vma.end);
        if (err !== 0) {
          this.scanSlot = this.mmHead;
          return err;
        }
      }
      this.removeTrailingRmapItems(slot);
      this.scanSlot = slot.next;
      if (this.testExit(mm)) this.freeSlot(slot);
    }
    this.seqnr = 0;
    this.rootUnstableTree.node = null; // empty already: every rmap_item is gone
    return 0;
  }

  // =====================================================================================
  // Merging
  // =====================================================================================

  /**
   * write_protect_page(): make the pte mapping page in vma read-only, unless the page
   * has references beyond its mappings, the reference we hold and the swap cache's
   * (O_DIRECT or a get_user_pages pin in flight): such a page must not be merged,
   * since the pinner would write to a page that is no longer the process's.
   * Returns the resulting pte, or -1.
   */
  private writeProtectPage(vma: Vma, pfn: number): number {
    const mem = this.kernel.mem;
    const mm = vma.mm;
    const addr = pageAddressInVma(this.kernel, pfn, vma);
    if (addr < 0) return -1;
    let pte = mm.getPte(addr);
    if (!ptePresent(pte) || ptePayload(pte) !== pfn) return -1;
    if ((pte & PTE_WRITE) !== 0) {
      const swapped = (mem.flags[pfn]! & PG_SWAPCACHE) !== 0 ? 1 : 0;
      // The kernel clears the pte and flushes the TLB before this check so that no
      // get_user_pages_fast() can slip in after it; nothing runs concurrently here.
      if (mem.pageMapcount(pfn) + 1 + swapped !== mem.count[pfn]) return -1;
      pte = pte & ~PTE_WRITE;
      mm.setPte(addr, pte);
    }
    return pte;
  }

  /** replace_page(): map kpage instead of page at page's address in vma. 0 or EFAULT. */
  private replacePage(vma: Vma, pfn: number, kpfn: number, origPte: number): number {
    const k = this.kernel;
    const mm = vma.mm;
    const addr = pageAddressInVma(k, pfn, vma);
    if (addr < 0) return EFAULT;
    if (mm.getPte(addr) !== origPte) return EFAULT;
    k.mem.getPage(kpfn);
    pageAddAnonRmap(k, kpfn, vma, addr);
    // mk_pte(kpage, vma->vm_page_prot): read-only (a private mapping's protection
    // never includes write: that is what makes the first write fault and COW).
    mm.setPte(addr, mkPte(kpfn, 0));
    pageRemoveRmap(k, pfn);
    k.mem.putPage(pfn);
    return 0;
  }

  /**
   * try_to_merge_one_page(): replace `pfn` in vma by the KSM page `kpfn`; or, when
   * kpfn is -1, turn `pfn` itself into a KSM page (with no stable node yet).
   */
  private tryToMergeOnePage(vma: Vma, pfn: number, kpfn: number): number {
    const k = this.kernel;
    const mem = k.mem;
    if (pfn === kpfn) return 0; // ksm page forked
    if ((vma.flags & VM_MERGEABLE) === 0) return EFAULT;
    if (!mem.isAnon(pfn)) return EFAULT;
    // trylock, not lock: rather than wait, go on scanning and come back to this
    // page when it is unlocked.
    if (!mem.trylockPage(pfn)) return EFAULT;
    let err = EFAULT;
    let lockedPfn = pfn;
    const origPte = this.writeProtectPage(vma, pfn);
    if (origPte >= 0) {
      if (kpfn < 0) {
        // While we hold the page lock, upgrade page from PageAnon+anon_vma to
        // PageKsm+NULL stable_node: stable_tree_insert() will set the node.
        this.setPageStableNode(pfn, null);
        err = 0;
      } else if (this.memcmpPages(pfn, kpfn) === 0) {
        err = this.replacePage(vma, pfn, kpfn, origPte);
      }
    }
    if ((vma.flags & VM_LOCKED) !== 0 && kpfn >= 0 && err === 0) {
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
  private tryToMergeWithKsmPage(item: RmapItem, pfn: number, kpfn: number): number {
    const mm = item.mm;
    if (this.testExit(mm)) return EFAULT;
    const vma = mm.findVma(item.address);
    if (vma === null || vma.start > item.address) return EFAULT;
    const err = this.tryToMergeOnePage(vma, pfn, kpfn);
    if (err !== 0) return err;
    // Must get the anon_vma reference while the area is known to be there.
    this.holdAnonVma(item, vma.anonVma!);
    return 0;
  }

  /**
   * try_to_merge_two_pages(): make `pfn` a KSM page and map it in place of
   * `treePfn` too. Returns the KSM page, or -1.
   */
  private tryToMergeTwoPages(item: RmapItem, pfn: number, treeItem: RmapItem, treePfn: number): number {
    // The number of nodes in the stable tree is the number of kernel pages we hold.
    if (this.maxKernelPages !== 0n && this.maxKernelPages <= this.pagesShared) return -1;
    let err = this.tryToMergeWithKsmPage(item, pfn, -1);
    if (err === 0) {
      err = this.tryToMergeWithKsmPage(treeItem, treePfn, pfn);
      // If that fails, we have a KSM page with only one pte pointing to it: break it.
      if (err !== 0) this.breakCow(item);
    }
    return err !== 0 ? -1 : pfn;
  }

  /**
   * stable_tree_search(): the KSM page with the same contents as `pfn`, with a
   * reference held, or -1. A page that is already KSM (forked) is its own answer.
   */
  private stableTreeSearch(pfn: number): number {
    const mem = this.kernel.mem;
    if (this.pageStableNode(pfn) !== null) {
      mem.getPage(pfn);
      return pfn;
    }
    let node = this.rootStableTree.node as StableNode | null;
    while (node !== null) {
      const treePfn = this.getKsmPage(node);
      // A stale node was just removed and the tree rebalanced under us: give up
      // this search, as the kernel does, rather than restart it.
      if (treePfn < 0) return -1;
      const ret = this.memcmpPages(pfn, treePfn);
      if (ret < 0) {
        mem.putPage(treePfn);
        node = node.rbLeft as StableNode | null;
      } else if (ret > 0) {
        mem.putPage(treePfn);
        node = node.rbRight as StableNode | null;
      } else {
        return treePfn;
      }
    }
    return -1;
  }

  /** stable_tree_insert(): a new stable node for KSM page kpfn, or null. */
  private stableTreeInsert(kpfn: number): StableNode | null {
    const mem = this.kernel.mem;
    let parent: RbNode | null = null;
    let left = false;
    let cur = this.rootStableTree.node as StableNode | null;
    while (cur !== null) {
      const treePfn = this.getKsmPage(cur);
      if (treePfn < 0) return null;
      const ret = this.memcmpPages(kpfn, treePfn);
      mem.putPage(treePfn);
      parent = cur;
      if (ret < 0) {
        left = true;
        cur = cur.rbLeft as StableNode | null;
      } else if (ret > 0) {
        left = false;
        cur = cur.rbRight as StableNode | null;
      } else {
        // Not a bug that stable_tree_search() missed it: our page was not yet
        // write-protected then, and may have changed since.
        return null;
      }
    }
    const node = new StableNode(kpfn);
    rbLinkNode(node, parent, left, this.rootStableTree);
    rbInsertColor(node, this.rootStableTree);
    this.setPageStableNode(kpfn, node);
    return node;
  }

  /**
   * unstable_tree_search_insert(): an rmap_item in the unstable tree whose page has
   * the same contents as `pfn` (its page, with a reference, in scratchTreePage), or
   * null after inserting `item` into the tree.
   */
  private unstableTreeSearchInsert(item: RmapItem, pfn: number, out: TreePageOut): RmapItem | null {
    const mem = this.kernel.mem;
    let parent: RbNode | null = null;
    let left = false;
    let cur = this.rootUnstableTree.node as RmapItem | null;
    while (cur !== null) {
      const treePfn = this.getMergeablePage(cur);
      if (treePfn < 0) return null;
      // Don't substitute a KSM page for a forked page: it is the same page.
      if (treePfn === pfn) {
        mem.putPage(treePfn);
        return null;
      }
      const ret = this.memcmpPages(pfn, treePfn);
      parent = cur;
      if (ret < 0) {
        mem.putPage(treePfn);
        left = true;
        cur = cur.rbLeft as RmapItem | null;
      } else if (ret > 0) {
        mem.putPage(treePfn);
        left = false;
        cur = cur.rbRight as RmapItem | null;
      } else {
        out.pfn = treePfn;
        return cur;
      }
    }
    item.flags |= UNSTABLE_FLAG | (this.seqnr & SEQNR_MASK);
    rbLinkNode(item, parent, left, this.rootUnstableTree);
    rbInsertColor(item, this.rootUnstableTree);
    this.pagesUnshared++;
    return null;
  }

  /** stable_tree_append(): one more rmap_item maps this stable node's KSM page. */
  private stableTreeAppend(item: RmapItem, node: StableNode): void {
    item.head = node;
    item.flags |= STABLE_FLAG;
    // hlist_add_head()
    item.hlistPrev = null;
    item.hlistNext = node.hlist;
    if (node.hlist !== null) node.hlist.hlistPrev = item;
    node.hlist = item;
    if (item.hlistNext !== null) this.pagesSharing++;
    else this.pagesShared++;
  }

  /**
   * cmp_and_merge_page(): first see if the page can be merged into the stable tree;
   * if not, compare its checksum with the previous one and, if unchanged, see if it
   * can be inserted into the unstable tree, or merged with a page already there and
   * both moved to the stable tree.
   */
  private cmpAndMergePage(pfn: number, item: RmapItem): void {
    const mem = this.kernel.mem;
    this.removeRmapItemFromTree(item);

    // We first start with searching the page inside the stable tree.
    let kpfn = this.stableTreeSearch(pfn);
    if (kpfn >= 0) {
      const err = this.tryToMergeWithKsmPage(item, pfn, kpfn);
      if (err === 0) this.stableTreeAppend(item, this.pageStableNode(kpfn)!);
      mem.putPage(kpfn);
      return;
    }

    // A page whose checksum changed since the last scan is changing often: keep it
    // out of the unstable tree, and don't waste time searching it either.
    const checksum = this.scanChecksum(pfn, item);
    if (item.oldchecksum !== checksum) {
      item.oldchecksum = checksum;
      return;
    }

    const out = scratchTreePage;
    const treeItem = this.unstableTreeSearchInsert(item, pfn, out);
    if (treeItem === null) return;
    const treePfn = out.pfn;
    out.pfn = -1;
    kpfn = this.tryToMergeTwoPages(item, pfn, treeItem, treePfn);
    mem.putPage(treePfn);
    // As soon as we merge this page, take the rmap_item of the page we merged with
    // out of the unstable tree, and insert it instead as a new stable node.
    if (kpfn >= 0) {
      this.removeRmapItemFromTree(treeItem);
      const node = this.stableTreeInsert(kpfn);
      if (node !== null) {
        this.stableTreeAppend(treeItem, node);
        this.stableTreeAppend(item, node);
      } else {
        // Two virtual addresses now point to a KSM page outside the stable tree:
        // break COW on both.
        this.breakCow(treeItem);
        this.breakCow(item);
      }
    }
  }

  // =====================================================================================
  // The scan
  // =====================================================================================

  /**
   * get_next_rmap_item(): the rmap_item for addr, found at or after `link`, or a new
   * one inserted there. Items on the way for addresses below addr are for pages
   * that have gone: they are freed as the cursor passes.
   */
  private getNextRmapItem(slot: MmSlot, link: RmapLink, addr: number): RmapItem {
    while (link.rmapList !== null) {
      const item = link.rmapList;
      if (item.address === addr) return item;
      if (item.address > addr) break;
      link.rmapList = item.rmapList;
      this.removeRmapItemFromTree(item);
      this.freeRmapItem(item);
    }
    const item = this.allocRmapItem(slot.mm!, addr);
    item.rmapList = link.rmapList;
    link.rmapList = item;
    return item;
  }

  /** Unlink an mm_slot from the hash and the list, and let go of its mm. */
  private freeSlot(slot: MmSlot): void {
    const mm = slot.mm!;
    this.mmSlots.delete(mm);
    slot.prev.next = slot.next;
    slot.next.prev = slot.prev;
    slot.prev = slot;
    slot.next = slot;
    mm.flags &= ~MMF_VM_MERGEABLE;
    mm.mmCount--; // mmdrop()
  }

  /**
   * scan_get_next_rmap_item(): advance the cursor to the next anonymous page in a
   * VM_MERGEABLE area; returns its rmap_item (the page, referenced, in scanPfn), or
   * null at the end of a full scan.
   */
  private scanGetNextRmapItem(): RmapItem | null {
    const mem = this.kernel.mem;
    if (this.mmHead.next === this.mmHead) return null;
    let slot = this.scanSlot;
    if (slot === this.mmHead) {
      this.rootUnstableTree.node = null;
      slot = this.mmHead.next;
      this.scanSlot = slot;
      this.scanAddress = 0;
      this.scanLink = slot;
    }
    for (;;) {
      const mm = slot.mm!;
      if (!this.testExit(mm)) {
        const vmas = mm.vmas;
        for (let i = mm.findVmaIndex(this.scanAddress); i < vmas.length; i++) {
          const vma = vmas[i]!;
          if ((vma.flags & VM_MERGEABLE) === 0) continue;
          if (this.scanAddress < vma.start) this.scanAddress = vma.start;
          if (vma.anonVma === null) this.scanAddress = vma.end;
          while (this.scanAddress < vma.end) {
            const pfn = this.followPage(vma, this.scanAddress);
            if (pfn >= 0 && mem.isAnon(pfn)) {
              const item = this.getNextRmapItem(slot, this.scanLink, this.scanAddress);
              this.scanLink = item;
              this.scanAddress += PAGE_SIZE;
              this.scanPfn = pfn;
              return item;
            }
            if (pfn >= 0) mem.putPage(pfn);
            this.scanAddress += PAGE_SIZE;
          }
        }
      } else {
        this.scanAddress = 0;
        this.scanLink = slot;
      }
      // Nuke all the rmap_items above this one: there are no VM_MERGEABLE areas
      // with such addresses any more.
      this.removeTrailingRmapItems(this.scanLink);
      this.scanSlot = slot.next;
      if (this.scanAddress === 0) {
        // A whole pass found no VM_MERGEABLE area (or the mm exited): do what
        // __ksm_exit would, and drop the mm from our lists now.
        this.freeSlot(slot);
      }
      slot = this.scanSlot;
      if (slot === this.mmHead) break;
      this.scanAddress = 0;
      this.scanLink = slot;
    }
    this.seqnr++;
    // Linux resets the unstable root only when the next full scan starts; nothing
    // searches it in between, and every rmap_item still in it is now a scan old and
    // will never be rb_erased, so dropping it here is unobservable, and it keeps
    // "the unstable tree holds exactly this scan's insertions" true at all times.
    this.rootUnstableTree.node = null;
    return null;
  }

  /** ksm_do_scan(): scan up to `npages` pages; returns how many were scanned. */
  doScan(npages: number): number {
    const mem = this.kernel.mem;
    let scanned = 0;
    while (npages-- > 0) {
      const item = this.scanGetNextRmapItem();
      if (item === null) break;
      const pfn = this.scanPfn;
      this.scanPfn = -1;
      scanned++;
      if (!mem.isKsm(pfn) || (item.flags & STABLE_FLAG) === 0) this.cmpAndMergePage(pfn, item);
      mem.putPage(pfn);
    }
    this.pagesScanned += scanned;
    return scanned;
  }

  /** ksmd_should_run() */
  shouldRun(): boolean {
    return (this.run & KSM_RUN_MERGE) !== 0 && this.mmHead.next !== this.mmHead && !this.offlineLock;
  }

  // =====================================================================================
  // Entry points from the mm (KsmOps)
  // =====================================================================================

  /** ksm_madvise() */
  madvise(vma: Vma, start: number, end: number, advice: KsmAdvice, vmFlags: number): number {
    switch (advice) {
      case 'MADV_MERGEABLE':
        if ((vmFlags & KSM_UNMERGEABLE_VM_FLAGS) !== 0) return vmFlags; // just ignore the advice
        if ((vma.mm.flags & MMF_VM_MERGEABLE) === 0) this.enter(vma.mm);
        return vmFlags | VM_MERGEABLE;
      case 'MADV_UNMERGEABLE':
        if ((vmFlags & VM_MERGEABLE) === 0) return vmFlags; // just ignore the advice
        if (vma.anonVma !== null) {
          if (this.offlineLock) throw new KernelError('EBUSY', 'MADV_UNMERGEABLE while memory is going offline');
          const err = this.unmergeKsmPages(vma, start, end);
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
  enter(mm: MmStruct): void {
    const needsWakeup = this.mmHead.next === this.mmHead;
    const slot = new MmSlot(mm);
    this.mmSlots.set(mm, slot);
    // Insert just behind the scanning cursor, to let the area settle down a little;
    // when fork is followed by immediate exec, we don't want ksmd to waste time
    // setting up and tearing down an rmap_list.
    const cursor = this.scanSlot;
    slot.prev = cursor.prev;
    slot.next = cursor;
    cursor.prev.next = slot;
    cursor.prev = slot;
    mm.flags |= MMF_VM_MERGEABLE;
    mm.mmCount++;
    if (needsWakeup) this.onWakeup();
  }

  /** include/linux/ksm.h ksm_fork() */
  fork(mm: MmStruct, oldmm: MmStruct): void {
    if ((oldmm.flags & MMF_VM_MERGEABLE) !== 0) this.enter(mm);
  }

  /** ksm_exit() → __ksm_exit() */
  exit(mm: MmStruct): void {
    if ((mm.flags & MMF_VM_MERGEABLE) === 0) return;
    const slot = this.mmSlots.get(mm);
    // Straightforward when ksmd never got to it: free the slot now. If it is at the
    // cursor or has rmap_items, leave it on the list for ksmd to free; ksmd backs
    // out of an mm as soon as mm_users is zero.
    if (slot === undefined || this.scanSlot === slot) return;
    if (slot.rmapList === null) {
      this.freeSlot(slot);
    } else {
      // list_move() to just after the cursor: ksmd frees it at its next step.
      slot.prev.next = slot.next;
      slot.next.prev = slot.prev;
      const cursor = this.scanSlot;
      slot.prev = cursor;
      slot.next = cursor.next;
      cursor.next.prev = slot;
      cursor.next = slot;
    }
  }

  /** page_referenced_ksm(): both passes of the stable node's rmap walk. */
  pageReferenced(pfn: number, state: ReferencedState): number {
    const node = this.pageStableNode(pfn);
    if (node === null) return 0;
    let referenced = 0;
    for (let searchNewForks = 0; searchNewForks < 2; searchNewForks++) {
      for (let item = node.hlist; item !== null; item = item.hlistNext) {
        const av = item.anonVma!;
        for (const vma of av.vmas) {
          if (item.address < vma.start || item.address >= vma.end) continue;
          // First only the area that covers this rmap_item in its own mm; then, if
          // there is still work to do, covering areas in other mms: forked from the
          // original since ksmd passed.
          if ((item.mm === vma.mm) === (searchNewForks === 1)) continue;
          referenced += pageReferencedOne(this.kernel, pfn, vma, item.address, state);
          if (searchNewForks === 0 || state.mapcount <= 0) break;
        }
        if (state.mapcount <= 0) return referenced;
      }
    }
    return referenced;
  }

  /** try_to_unmap_ksm() */
  tryToUnmap(pfn: number, flags: number): number {
    const node = this.pageStableNode(pfn);
    if (node === null) return SWAP_FAIL;
    const mem = this.kernel.mem;
    let ret = SWAP_AGAIN;
    for (let searchNewForks = 0; searchNewForks < 2; searchNewForks++) {
      for (let item = node.hlist; item !== null; item = item.hlistNext) {
        const av = item.anonVma!;
        for (const vma of av.vmas) {
          if (item.address < vma.start || item.address >= vma.end) continue;
          if ((item.mm === vma.mm) === (searchNewForks === 1)) continue;
          ret = tryToUnmapOne(this.kernel, pfn, vma, item.address, flags);
          if (ret !== SWAP_AGAIN || mem.pageMapcount(pfn) === 0) return ret;
        }
      }
    }
    return ret;
  }

  /** rmap_walk_ksm() */
  rmapWalk(pfn: number, rmapOne: RmapOne): number {
    const node = this.pageStableNode(pfn);
    if (node === null) return SWAP_AGAIN;
    for (let searchNewForks = 0; searchNewForks < 2; searchNewForks++) {
      for (let item = node.hlist; item !== null; item = item.hlistNext) {
        const av = item.anonVma!;
        for (const vma of av.vmas) {
          if (item.address < vma.start || item.address >= vma.end) continue;
          if ((item.mm === vma.mm) === (searchNewForks === 1)) continue;
          const ret = rmapOne(pfn, vma, item.address);
          if (ret !== SWAP_AGAIN) return ret;
        }
      }
    }
    return SWAP_AGAIN;
  }

  /** ksm_migrate_page(): the KSM page moved: the stable node follows it. */
  migratePage(newPfn: number, oldPfn: number): void {
    const mem = this.kernel.mem;
    assert(mem.mapping[newPfn] === mem.mapping[oldPfn], () => `ksm_migrate_page: mappings differ for ${oldPfn} → ${newPfn}`);
    const node = this.pageStableNode(newPfn);
    if (node !== null) {
      assert(node.kpfn === oldPfn, () => `ksm_migrate_page: stable node kpfn ${node.kpfn}, expected ${oldPfn}`);
      node.kpfn = newPfn;
    }
  }

  /**
   * ksm_memory_callback(MEM_OFFLINE): remove every stable node whose kpfn lies in
   * [startPfn, endPfn), one at a time in tree order, as the kernel's loop over
   * ksm_check_stable_tree() does. Returns how many were removed.
   */
  pruneStableNodes(startPfn: number, endPfn: number): number {
    let pruned = 0;
    let node: StableNode | null;
    while ((node = this.checkStableTree(startPfn, endPfn)) !== null) {
      this.removeNodeFromStableTree(node);
      pruned++;
    }
    return pruned;
  }

  /** ksm_check_stable_tree(): the first stable node, in tree order, with kpfn in [startPfn, endPfn). */
  private checkStableTree(startPfn: number, endPfn: number): StableNode | null {
    for (let n = rbFirst(this.rootStableTree); n !== null; n = rbNext(n)) {
      const node = n as StableNode;
      if (node.kpfn >= startPfn && node.kpfn < endPfn) return node;
    }
    return null;
  }

  // =====================================================================================
  // run=, and ksmd's wakeups
  // =====================================================================================

  /** Called when ksmd should re-check ksmd_should_run() (wake_up_interruptible). */
  onWakeup: () => void = () => {};

  /** run_store() after validation. */
  setRun(flags: number): void {
    if (this.run !== flags) {
      this.run = flags;
      if ((flags & KSM_RUN_UNMERGE) !== 0) {
        const err = this.unmergeAndRemoveAllRmapItems();
        if (err !== 0) {
          this.run = KSM_RUN_STOP;
          throw new KernelError('ENOMEM', 'run=2: out of memory while unmerging; run is now 0');
        }
      }
    }
    if ((flags & KSM_RUN_MERGE) !== 0) this.onWakeup();
  }

  // =====================================================================================
  // Introspection
  // =====================================================================================

  /** pages_volatile, as the sysfs file shows it (never negative). */
  get pagesVolatile(): number {
    const v = this.rmapItems - this.pagesShared - this.pagesSharing - this.pagesUnshared;
    return v < 0 ? 0 : v;
  }

  /** Every stable node, in tree order. `fn` must not change the tree. */
  forEachStableNode(fn: (node: StableNode) => void): void {
    for (let n = rbFirst(this.rootStableTree); n !== null; n = rbNext(n)) fn(n as StableNode);
  }

  forEachSlot(fn: (slot: MmSlot) => void): void {
    for (let s = this.mmHead.next; s !== this.mmHead; s = s.next) fn(s);
  }

  describeItem(item: RmapItem): string {
    return `mm=${item.mm.owner} addr=0x${item.address.toString(16)} (flags=${decodeRmapFlags(item.flags)})`;
  }
}
