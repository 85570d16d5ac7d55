import { PAGE_CHECKSUM_BATCH } from '../lib/checksum.js';
import { PAGE_SIZE, PG_ANON, PG_KSM, PTE_SPECIAL, VM_MERGEABLE, ptePayload, ptePresent } from '../mm/constants.js';
import type { MmStruct } from '../mm/mm.js';
import type { Vma } from '../mm/vma.js';
import type { Ksm } from './ksm.js';
import { NULL, type RmapItem, type StableNode } from './structs.js';

/*
 * What KSM does with one page, whichever tree it is headed for: find it (follow_page,
 * get_mergeable_page), tell whether it is KSM's (page_stable_node), checksum it
 * (calc_checksum) and compare it with another (memcmp_pages).
 */

/** scanChecksum()'s contents, in the order they were added to the batch. */
const scratchBatchIds = new Int32Array(PAGE_CHECKSUM_BATCH);

/** How far past the scanned page scanChecksum() looks for more pages to hash with it. */
const CHECKSUM_LOOKAHEAD_PTES = 32;

/** Slots in memcmpPages()'s memo (Ksm.memcmp*): well above one page's tree walks (~4 log2 N compares). */
export const MEMCMP_MEMO_BITS = 8;
export const MEMCMP_MEMO_SLOTS = 1 << MEMCMP_MEMO_BITS;

/** ksm_test_exit(): ksmd backs out of an mm as soon as its last user is gone. */
export function testExit(mm: MmStruct): boolean {
  return mm.mmUsers === 0;
}

/**
 * The stable node a KSM page's mapping points to (page_stable_node()), or NULL. A KSM
 * page's mapping holds its stable node's record number (structs.ts), or null while it
 * has none yet (set_page_stable_node(page, NULL) in try_to_merge_one_page()).
 */
export function pageStableNode(ksm: Ksm, pfn: number): StableNode {
  const mem = ksm.kernel.mem;
  if (!mem.isKsm(pfn)) return NULL;
  const m = mem.mappingOf(pfn);
  return typeof m === 'number' ? m : NULL;
}

/** set_page_stable_node(): upgrade an anonymous page to a KSM page. */
export function setPageStableNode(ksm: Ksm, pfn: number, node: StableNode): void {
  const mem = ksm.kernel.mem;
  mem.flags[pfn]! |= PG_ANON | PG_KSM;
  mem.setMapping(pfn, node === NULL ? null : node);
}

/**
 * follow_page(vma, addr, FOLL_GET): the page mapped at addr with a reference
 * taken, or -1. The zero page is not a normal page (vm_normal_page), and anything
 * but a present pte has no page to follow.
 */
export function followPage(ksm: Ksm, vma: Vma, addr: number): number {
  const pte = vma.mm.getPte(addr);
  if (!ptePresent(pte) || (pte & PTE_SPECIAL) !== 0) return -1;
  const pfn = ptePayload(pte);
  ksm.kernel.mem.getPage(pfn);
  return pfn;
}

/**
 * The VM_MERGEABLE area with an anon_vma that still covers addr in mm, or null
 * (also once mm has exited). 2.6.33 writes these checks out in both break_cow()
 * and get_mergeable_page(); later kernels share them as find_mergeable_vma(), as
 * we do.
 */
export function findMergeableVma(mm: MmStruct, addr: number): Vma | null {
  if (testExit(mm)) return null;
  const vma = mm.findVma(addr);
  if (vma === null || vma.start > addr) return null;
  if ((vma.flags & VM_MERGEABLE) === 0 || vma.anonVma === null) return null;
  return vma;
}

/** get_mergeable_page(): the anonymous page at rmap_item's address, with a reference, or -1. */
export function getMergeablePage(ksm: Ksm, item: RmapItem): number {
  const address = ksm.rmapItemCache.addressOf(item);
  const vma = findMergeableVma(ksm.itemMm(item), address);
  if (vma === null) return -1;
  const pfn = followPage(ksm, vma, address);
  if (pfn < 0) return -1;
  if (!ksm.kernel.mem.isAnon(pfn)) {
    ksm.kernel.mem.putPage(pfn);
    return -1;
  }
  return pfn;
}

/**
 * calc_checksum(): the profile's hash of the page (jhash2 over its 1024 words, initval
 * 17, in 2.6.33), memoized per content in the store (src/mm/contents.ts): a page
 * repeated in every guest is hashed once.
 */
export function calcChecksum(ksm: Ksm, pfn: number): number {
  const store = ksm.kernel.mem.store;
  const c = ksm.kernel.mem.content[pfn]!;
  if (store.sumValid[c] !== 0) return store.sum[c]!;
  const v = store.view(c);
  const sum = ksm.profile.checksum.page(v.words, v.wordOff);
  store.sum[c] = sum;
  store.sumValid[c] = 1;
  return sum;
}

/**
 * calc_checksum() of the page ksmd is scanning, `pfn` mapped at item's address.
 * Not the kernel's way, but the kernel's numbers: the checksum is a pure function
 * of the page's bytes, the store memoizes it per content until the bytes change, and so
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
export function scanChecksum(ksm: Ksm, pfn: number, item: RmapItem): number {
  const mem = ksm.kernel.mem;
  const store = mem.store;
  const c0 = mem.content[pfn]!;
  if (store.sumValid[c0] !== 0) return store.sum[c0]!;
  const batch = ksm.checksumBatch;
  const ids = scratchBatchIds;
  batch.clear(); // empty, unless an exception left it half-filled
  ids[0] = c0;
  let v = store.view(c0);
  batch.add(v.buf, v.words, v.off);
  const mm = ksm.itemMm(item);
  const address = ksm.rmapItemCache.addressOf(item);
  const vma = mm.findVma(address);
  if (vma !== null) {
    const limit = Math.min(vma.end, address + CHECKSUM_LOOKAHEAD_PTES * PAGE_SIZE);
    for (let addr = address + PAGE_SIZE; addr < limit && batch.n < PAGE_CHECKSUM_BATCH; addr += PAGE_SIZE) {
      const pte = mm.getPte(addr);
      if (!ptePresent(pte) || (pte & PTE_SPECIAL) !== 0) continue;
      const p = ptePayload(pte);
      const c = mem.content[p]!;
      if ((mem.flags[p]! & (PG_ANON | PG_KSM)) !== PG_ANON || store.sumValid[c] !== 0) continue;
      ids[batch.n] = c;
      v = store.view(c);
      batch.add(v.buf, v.words, v.off);
    }
  }
  batch.run();
  for (let j = 0; j < batch.n; j++) {
    store.sum[ids[j]!] = batch.sums[j]!;
    store.sumValid[ids[j]!] = 1;
  }
  batch.clear();
  return store.sum[c0]!;
}

/**
 * Merge domains (not in Linux): memcmp_pages() as the trees see it when pages
 * belong to mms of different merge domains (mm.ts ksmMergeDomain). A page of one
 * domain never compares equal to a page of another; ordering by domain first, then
 * by bytes, keeps every tree a total order, so each tree holds one sorted run per
 * domain and a search only ever meets equal contents within its own domain. This
 * is VMware's page-sharing salt (a page's hash is salted per VM group) moved to the
 * comparison: every scan, checksum and decision within a domain is the kernel's.
 * The road not taken, one pair of trees per domain (like 6.x's per-node trees),
 * would cost a root per domain in every search path and in the snapshot.
 *
 * With every mm in the common domain ('') this is memcmpPages itself.
 */
export function comparePagesInDomains(ksm: Ksm, a: number, domainA: string, b: number, domainB: string): number {
  if (domainA !== domainB) return domainA < domainB ? -1 : 1;
  return memcmpPages(ksm, a, b);
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
 *
 * Each call, remembered or not, counts in ksm.work.bytesCompared the bytes the
 * kernel's memcmp would have read (the memo keeps them beside the sign).
 */
export function memcmpPages(ksm: Ksm, a: number, b: number): number {
  const mem = ksm.kernel.mem;
  const lo = a < b ? a : b;
  const hi = a < b ? b : a;
  const slot = Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> (32 - MEMCMP_MEMO_BITS);
  const epoch = mem.contentsEpoch;
  let sign: number;
  if (ksm.memcmpEpoch[slot] === epoch && ksm.memcmpLo[slot] === lo && ksm.memcmpHi[slot] === hi) {
    sign = ksm.memcmpSign[slot]!;
  } else {
    const at = mem.firstDifference(lo, hi);
    sign = mem.lastOrder();
    ksm.memcmpLo[slot] = lo;
    ksm.memcmpHi[slot] = hi;
    ksm.memcmpSign[slot] = sign;
    // The kernel's memcmp reads up to and including the first byte that differs.
    ksm.memcmpBytes[slot] = at === PAGE_SIZE ? PAGE_SIZE : at + 1;
    ksm.memcmpEpoch[slot] = epoch;
  }
  ksm.work.bytesCompared += ksm.memcmpBytes[slot]!;
  return a === lo ? sign : 0 - sign;
}
