import { InvariantError } from '../lib/errors.js';
import { rbCheck, rbCount, rbFirst, rbNext } from '../lib/rbtree.js';
import { MMF_VM_MERGEABLE, PAGE_SIZE } from '../mm/constants.js';
import { CONTENT_FREE } from '../mm/contents.js';
import type { AnonVma } from '../mm/vma.js';
import type { Ksm } from './ksm.js';
import { SEQNR_MASK, STABLE_FLAG, UNSTABLE_FLAG, type RmapItem, type StableNode } from './structs.js';


/**
 * Memoized checksums recomputed per check, at most. Rehashing every memo costs ~1 µs
 * a page, which for a test that has scanned a few hundred MiB would dwarf the rest of
 * the check; so each call takes the next CHECKED_MEMOS_PER_CALL memos round the
 * frames, from where the last call stopped, and over a test's many calls every memo
 * gets looked at. (test/mm/contents.test.ts checks each write path directly.)
 */
const CHECKED_MEMOS_PER_CALL = 8192;

/**
 * KSM's part of checkInvariants(): both trees, every rmap_item, every anon_vma
 * reference KSM holds, and every statistic against a recount.
 */
export function checkKsmInvariants(ksm: Ksm): void {
  const mem = ksm.kernel.mem;
  const fail = (msg: string): never => {
    throw new InvariantError(`ksm: ${msg}`);
  };

  // ---- mm_slots and rmap_items ----
  const inList = new Set<RmapItem>();
  let items = 0;
  let unstable = 0;
  let unstableThisScan = 0;
  let slots = 0;
  ksm.forEachSlot((slot) => {
    slots++;
    if (slot.mm === null) return fail('a listed mm_slot has no mm');
    const mm = slot.mm;
    if (ksm.mmSlots.get(mm) !== slot) fail(`mm_slot of ${mm.owner} is listed but not hashed`);
    if ((mm.flags & MMF_VM_MERGEABLE) === 0) fail(`${mm.owner} has an mm_slot without MMF_VM_MERGEABLE`);
    if (slot.next.prev !== slot || slot.prev.next !== slot) fail(`mm_slot list links broken at ${mm.owner}`);
    let prevAddr = -1;
    for (let it = slot.rmapList; it !== null; it = it.rmapList) {
      items++;
      if (inList.has(it)) fail(`rmap_item ${ksm.describeItem(it)} listed twice`);
      inList.add(it);
      if (it.mm !== mm) fail(`rmap_item ${ksm.describeItem(it)} on the list of ${mm.owner}`);
      if (it.address <= prevAddr) fail(`rmap_list of ${mm.owner} not sorted at ${ksm.describeItem(it)}`);
      prevAddr = it.address;
      const st = (it.flags & STABLE_FLAG) !== 0;
      const un = (it.flags & UNSTABLE_FLAG) !== 0;
      if (st && un) fail(`rmap_item ${ksm.describeItem(it)} in both trees`);
      if (un) {
        unstable++;
        const age = (ksm.seqnr - it.flags) & 0xff;
        if (age > 1) fail(`unstable rmap_item ${ksm.describeItem(it)} is ${age} scans old`);
        if (age === 0) unstableThisScan++;
      }
      if (st) {
        if (it.head === null) fail(`expected a stable node on STABLE rmap_item ${ksm.describeItem(it)}`);
        if (it.anonVma === null || it.anonVma.freed) fail(`STABLE rmap_item ${ksm.describeItem(it)} holds no live anon_vma`);
      } else if (it.anonVma !== null) {
        fail(`rmap_item ${ksm.describeItem(it)} holds an anon_vma outside the stable tree`);
      }
    }
  });
  if (slots !== ksm.mmSlots.size) fail(`${ksm.mmSlots.size} mm_slots hashed, ${slots} listed`);
  if (items !== ksm.rmapItems) fail(`ksm_rmap_items is ${ksm.rmapItems}, ${items} rmap_items listed`);
  if (unstable !== ksm.pagesUnshared) fail(`pages_unshared is ${ksm.pagesUnshared}, ${unstable} rmap_items have UNSTABLE_FLAG`);

  // ---- the unstable tree: this scan's insertions only ----
  rbCheck(ksm.rootUnstableTree, undefined, 'unstable tree');
  const treeSize = rbCount(ksm.rootUnstableTree);
  if (treeSize !== unstableThisScan) fail(`unstable tree holds ${treeSize} nodes, ${unstableThisScan} rmap_items were inserted this scan`);
  // rbCheck() passed, so the links can be followed.
  for (let n = rbFirst(ksm.rootUnstableTree); n !== null; n = rbNext(n)) {
    const it = n as RmapItem;
    if (!inList.has(it)) fail(`unstable tree node ${ksm.describeItem(it)} is on no rmap_list`);
    if ((it.flags & UNSTABLE_FLAG) === 0 || ((ksm.seqnr - it.flags) & SEQNR_MASK) !== 0) {
      fail(`unstable tree node ${ksm.describeItem(it)} is not an UNSTABLE rmap_item of this scan`);
    }
  }

  // ---- the stable tree ----
  rbCheck(ksm.rootStableTree, undefined, 'stable tree');
  let shared = 0;
  let sharing = 0;
  const holds = new Map<AnonVma, number>();
  let prevLive: StableNode | null = null;
  const kpfns = new Set<number>();
  const listed = new Set<RmapItem>();
  ksm.forEachStableNode((node) => {
    let len = 0;
    for (let it = node.hlist; it !== null; it = it.hlistNext) {
      len++;
      if (listed.has(it)) fail(`rmap_item ${ksm.describeItem(it)} listed by two stable nodes, or twice`);
      listed.add(it);
      if (!inList.has(it)) fail(`stable node kpfn=${node.kpfn} lists a freed rmap_item ${ksm.describeItem(it)}`);
      if ((it.flags & STABLE_FLAG) === 0) fail(`expected STABLE_FLAG on rmap_item ${ksm.describeItem(it)} listed by stable node kpfn=${node.kpfn}`);
      if (it.head !== node) fail(`rmap_item ${ksm.describeItem(it)} listed by kpfn=${node.kpfn} points at another node`);
      if (it.hlistNext !== null && it.hlistNext.hlistPrev !== it) fail(`hlist links broken at ${ksm.describeItem(it)}`);
      holds.set(it.anonVma!, (holds.get(it.anonVma!) ?? 0) + 1);
    }
    if (len > 0) {
      shared++;
      sharing += len - 1;
    }
    const live = mem.isKsm(node.kpfn) && mem.mappingOf(node.kpfn) === node;
    // A stale node (its page freed, swapped out or offlined) may stay until the
    // keyhole finds it; a live one must be in content order with the other live ones.
    if (!live) return;
    if (kpfns.has(node.kpfn)) fail(`two stable nodes for pfn ${node.kpfn}`);
    kpfns.add(node.kpfn);
    if (mem.count[node.kpfn]! <= 0) fail(`stable node's page ${mem.describe(node.kpfn)} is free`);
    if (prevLive !== null && mem.comparePages(prevLive.kpfn, node.kpfn) >= 0) {
      fail(`stable tree out of content order at kpfn=${prevLive.kpfn} → kpfn=${node.kpfn}`);
    }
    prevLive = node;
  });
  if (shared !== ksm.pagesShared) fail(`pages_shared is ${ksm.pagesShared}, recount ${shared}`);
  if (sharing !== ksm.pagesSharing) fail(`pages_sharing is ${ksm.pagesSharing}, recount ${sharing}`);
  for (const it of inList) {
    if ((it.flags & STABLE_FLAG) !== 0 && !listed.has(it)) fail(`STABLE rmap_item ${ksm.describeItem(it)} is on no stable node's list`);
  }
  for (const [av, n] of holds) {
    if (av.freed) fail(`anon_vma ${av.id} is freed but ${n} stable rmap_items hold it`);
    if (av.ksmRefcount !== n) fail(`anon_vma ${av.id} ksm_refcount ${av.ksmRefcount}, ${n} stable rmap_items hold it`);
  }
  // Every anon_vma still in use by an area: its KSM references are all accounted for.
  for (const p of ksm.kernel.processes.values()) {
    for (const vma of p.mm.vmas) {
      const av = vma.anonVma;
      if (av !== null && av.ksmRefcount !== (holds.get(av) ?? 0)) {
        fail(`anon_vma ${av.id} of ${vma} has ksm_refcount ${av.ksmRefcount}, ${holds.get(av) ?? 0} stable rmap_items hold it`);
      }
    }
  }

  // ---- the memos: every remembered answer is still the right one ----
  // A wrong one means some write to a content's bytes bypassed the store's writers
  // (PhysMem.writeBytes/fillBytes/setContent), which drop the memo.
  const store = mem.store;
  let checked = 0;
  const limit = store.idLimit;
  const start = ksm.memoCheckCursor < limit ? ksm.memoCheckCursor : 0;
  let id = start;
  do {
    const z = store.zeroWords[id]!;
    if (z >= 0 && store.kind[id] !== CONTENT_FREE) {
      const v = store.view(id);
      let actual = 0;
      while (actual < PAGE_SIZE / 4 && v.words[v.wordOff + actual] === 0) actual++;
      if (actual !== z) fail(`memoized zero words of ${store.describe(id)}: ${z}, its bytes have ${actual}: a write skipped the store's writers`);
    }
    if (store.sumValid[id] !== 0 && store.kind[id] !== CONTENT_FREE) {
      const v = store.view(id);
      const sum = ksm.profile.checksum.page(v.words, v.wordOff);
      if (sum !== store.sum[id]) {
        fail(`memoized checksum of ${store.describe(id)} is 0x${store.sum[id]!.toString(16)}, its bytes hash to 0x${sum.toString(16)}: a write skipped the store's writers`);
      }
      checked++;
    }
    id = id + 1 < limit ? id + 1 : 0;
  } while (id !== start && checked < CHECKED_MEMOS_PER_CALL);
  ksm.memoCheckCursor = id;
  for (let s = 0; s < ksm.memcmpEpoch.length; s++) {
    if (ksm.memcmpEpoch[s] !== mem.contentsEpoch) continue;
    const lo = ksm.memcmpLo[s]!;
    const hi = ksm.memcmpHi[s]!;
    const sign = Math.sign(mem.comparePages(lo, hi));
    if (sign !== ksm.memcmpSign[s]) fail(`memcmp memo says ${ksm.memcmpSign[s]} for pfns ${lo} and ${hi}, memcmp says ${sign}: a write skipped the store's writers`);
    const at = mem.firstDifference(lo, hi);
    const bytes = at === PAGE_SIZE ? PAGE_SIZE : at + 1;
    if (bytes !== ksm.memcmpBytes[s]) fail(`memcmp memo says ${ksm.memcmpBytes[s]} bytes read for pfns ${lo} and ${hi}, memcmp reads ${bytes}: a write skipped the store's writers`);
  }
}
