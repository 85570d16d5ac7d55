import { InvariantError } from '../lib/errors.js';
import { rbCheck, rbCount, rbFirst, rbNext } from '../lib/rbtree-indexed.js';
import { MMF_VM_MERGEABLE, MMF_VM_MERGE_ANY, PAGE_SIZE } from '../mm/constants.js';
import { CONTENT_FREE, LEAD_STRIDE } from '../mm/contents.js';
import type { MmStruct } from '../mm/mm.js';
import type { AnonVma } from '../mm/vma.js';
import type { Ksm } from './ksm.js';
import { isKsmZeroPte } from './madvise.js';
import { describeNodeLink } from './stable-tree.js';
import { NODE_MIGRATE, NODE_TREE, NODE_DUP, NULL, RMAP_AGE_MAX, SEQNR_MASK, STABLE_FLAG, UNSTABLE_FLAG, isStableNodeChain, type RmapItem, type StableNode } from './structs.js';


/**
 * Memoized checksums recomputed per check, at most. Rehashing every memo costs ~1 µs
 * a page, which for a test that has scanned a few hundred MiB would dwarf the rest of
 * the check; so each call takes the next CHECKED_MEMOS_PER_CALL memos round the
 * frames, from where the last call stopped, and over a test's many calls every memo
 * gets looked at. (test/mm/contents.test.ts checks each write path directly.)
 */
const CHECKED_MEMOS_PER_CALL = 8192;

/**
 * KSM's part of checkInvariants(): the trees (one stable and one unstable per NUMA
 * node in 6.x), every chain and dup, every rmap_item, every anon_vma reference KSM
 * holds, the KSM zero pages against the page tables, and every statistic against a
 * recount.
 */
export function checkKsmInvariants(ksm: Ksm): void {
  const mem = ksm.kernel.mem;
  const ri = ksm.rmapItemCache;
  const sn = ksm.stableNodeCache;
  const fail = (msg: string): never => {
    throw new InvariantError(`ksm: ${msg}`);
  };
  const domainOf = (node: StableNode): string => ksm.domainNames[sn.domain[node]!] ?? `#${sn.domain[node]}`;

  // ---- the record tables: counts, free lists ----
  const checkFreeList = (what: string, first: number, next: Int32Array, top: number, count: number): void => {
    let free = 0;
    for (let r = first; r !== NULL; r = next[r]!) {
      if (r <= 0 || r >= top) fail(`${what} free list reaches record ${r}, outside 1..${top - 1}`);
      if (++free > top) fail(`${what} free list has a cycle`);
    }
    if (count + free !== top - 1) fail(`${what}: ${count} records in use and ${free} free, but ${top - 1} handed out`);
  };
  checkFreeList('rmap_item', ri.freeList, ri.rmapList, ri.top, ri.count);
  checkFreeList('stable node', sn.freeList, sn.hlist, sn.top, sn.count);
  if (ri.count !== ksm.rmapItems) fail(`${ri.count} rmap_item records in use, ksm_rmap_items is ${ksm.rmapItems}`);

  // ---- mm_slots and rmap_items ----
  const inList = new Set<RmapItem>();
  const mmIds = new Set<number>();
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
    if (ksm.mmTable.objects[slot.mmId] !== mm) fail(`mm_slot of ${mm.owner} has mm number ${slot.mmId}, which names ${ksm.mmTable.objects[slot.mmId]?.owner ?? 'nothing'}`);
    mmIds.add(slot.mmId);
    let prevAddr = -1;
    for (let it = slot.rmapList; it !== NULL; it = ri.rmapList[it]!) {
      items++;
      if (it <= 0 || it >= ri.top) fail(`rmap_list of ${mm.owner} reaches record ${it}, outside 1..${ri.top - 1}`);
      if (inList.has(it)) fail(`rmap_item ${ksm.describeItem(it)} listed twice`);
      inList.add(it);
      if (ri.mm[it] !== slot.mmId) fail(`rmap_item ${ksm.describeItem(it)} on the list of ${mm.owner}`);
      const address = ri.addressOf(it);
      if (address <= prevAddr) fail(`rmap_list of ${mm.owner} not sorted at ${ksm.describeItem(it)}`);
      prevAddr = address;
      const flags = ri.flags[it]!;
      const st = (flags & STABLE_FLAG) !== 0;
      const un = (flags & UNSTABLE_FLAG) !== 0;
      if (st && un) fail(`rmap_item ${ksm.describeItem(it)} in both trees`);
      if (un) {
        unstable++;
        const age = (ksm.seqnr - flags) & 0xff;
        if (age > 1) fail(`unstable rmap_item ${ksm.describeItem(it)} is ${age} scans old`);
        if (age === 0) unstableThisScan++;
      }
      if (st) {
        if (ri.head[it] === NULL) fail(`expected a stable node on STABLE rmap_item ${ksm.describeItem(it)}`);
        const av = ksm.itemAnonVma(it);
        if (av === null || av.freed || av.ksmId !== ri.anonVma[it]) fail(`STABLE rmap_item ${ksm.describeItem(it)} holds no live anon_vma`);
      } else if (!un && ri.anonVma[it] !== 0) {
        fail(`rmap_item ${ksm.describeItem(it)} holds an anon_vma outside the stable tree`);
      }
      // Smart scan (6.x): the age saturates at U8_MAX, and skip_age() gives at most 8.
      const age = ri.age[it]!;
      const skips = ri.remainingSkips[it]!;
      if (age > RMAP_AGE_MAX || skips > 8) {
        fail(`rmap_item ${ksm.describeItem(it)} has age ${age} and ${skips} remaining skips`);
      }
      if (ksm.smartScan === 0 && !ksm.profile.features.smartScan && (age !== 0 || skips !== 0)) {
        fail(`rmap_item ${ksm.describeItem(it)} has a smart-scan age in a kernel without smart scan`);
      }
    }
  });
  if (slots !== ksm.mmSlots.size) fail(`${ksm.mmSlots.size} mm_slots hashed, ${slots} listed`);
  if (ksm.mmTable.size !== slots) fail(`${ksm.mmTable.size} mms numbered, ${slots} mm_slots listed`);
  if (items !== ksm.rmapItems) fail(`ksm_rmap_items is ${ksm.rmapItems}, ${items} rmap_items listed`);
  if (unstable !== ksm.pagesUnshared) fail(`pages_unshared is ${ksm.pagesUnshared}, ${unstable} rmap_items have UNSTABLE_FLAG`);

  // ---- the unstable trees: this scan's insertions only ----
  let treeSize = 0;
  ksm.unstableRoots.forEach((root, nid) => {
    rbCheck(ri, root, ri.top, undefined, `unstable tree ${nid}`);
    if (nid >= ksm.nrNodeIds && root.node !== NULL) fail(`unstable tree ${nid} is not empty, but only ${ksm.nrNodeIds} trees are in use`);
    treeSize += rbCount(ri, root);
    // rbCheck() passed, so the links can be followed.
    for (let it = rbFirst(ri, root); it !== NULL; it = rbNext(ri, it)) {
      if (!inList.has(it)) fail(`unstable tree node ${ksm.describeItem(it)} is on no rmap_list`);
      if ((ri.flags[it]! & UNSTABLE_FLAG) === 0 || ((ksm.seqnr - ri.flags[it]!) & SEQNR_MASK) !== 0) {
        fail(`unstable tree node ${ksm.describeItem(it)} is not an UNSTABLE rmap_item of this scan`);
      }
      if (ri.nid[it] !== nid) fail(`unstable rmap_item ${ksm.describeItem(it)} says nid ${ri.nid[it]}, is in tree ${nid}`);
    }
  });
  if (treeSize !== unstableThisScan) fail(`unstable trees hold ${treeSize} nodes, ${unstableThisScan} rmap_items were inserted this scan`);

  // ---- the stable trees, their chains and dups, migrate_nodes ----
  let shared = 0;
  let sharing = 0;
  let chains = 0;
  let dups = 0;
  const holds = new Map<AnonVma, number>();
  const kpfns = new Set<number>();
  const listed = new Set<RmapItem>();
  const nodesSeen = new Set<StableNode>();
  const noteNode = (node: StableNode, where: string): void => {
    if (node <= 0 || node >= sn.top) fail(`${where} reaches stable node record ${node}, outside 1..${sn.top - 1}`);
    if (nodesSeen.has(node)) fail(`${where}: stable node record ${node} reached twice`);
    nodesSeen.add(node);
  };
  /** One KSM page's node (a regular node, a dup, or one on migrate_nodes): its rmap_items and page; returns whether it is live. */
  const checkKsmNode = (node: StableNode, where: string): boolean => {
    if (isStableNodeChain(sn, node)) fail(`${where}: a chain where a KSM page's node belongs`);
    const kpfn = sn.kpfn[node]!;
    let len = 0;
    for (let it = sn.hlist[node]!; it !== NULL; it = ri.hlistNext[it]!) {
      len++;
      if (listed.has(it)) fail(`rmap_item ${ksm.describeItem(it)} listed by two stable nodes, or twice`);
      listed.add(it);
      if (!inList.has(it)) fail(`stable node kpfn=${kpfn} lists a freed rmap_item ${ksm.describeItem(it)}`);
      if ((ri.flags[it]! & STABLE_FLAG) === 0) fail(`expected STABLE_FLAG on rmap_item ${ksm.describeItem(it)} listed by stable node kpfn=${kpfn}`);
      if (ri.head[it] !== node) fail(`rmap_item ${ksm.describeItem(it)} listed by kpfn=${kpfn} points at another node`);
      const itemDomain = ksm.itemMm(it).ksmMergeDomain;
      if (itemDomain !== domainOf(node)) fail(`rmap_item ${ksm.describeItem(it)} of merge domain ${JSON.stringify(itemDomain)} is listed by kpfn=${kpfn} of domain ${JSON.stringify(domainOf(node))}`);
      const next = ri.hlistNext[it]!;
      if (next !== NULL && ri.hlistPrev[next] !== it) fail(`hlist links broken at ${ksm.describeItem(it)}`);
      const av = ksm.itemAnonVma(it)!;
      holds.set(av, (holds.get(av) ?? 0) + 1);
    }
    if (sn.rmapHlistLen[node] !== len) fail(`${where}: stable node kpfn=${kpfn} has rmap_hlist_len ${sn.rmapHlistLen[node]}, ${len} rmap_items on its list`);
    if (len > 0) {
      shared++;
      sharing += len - 1;
    }
    const live = mem.isKsm(kpfn) && mem.mappingOf(kpfn) === node;
    // A stale node (its page freed, swapped out or offlined) may stay until the
    // keyhole finds it.
    if (!live) return false;
    if (kpfns.has(kpfn)) fail(`two stable nodes for pfn ${kpfn}`);
    kpfns.add(kpfn);
    if (mem.count[kpfn]! <= 0) fail(`stable node's page ${mem.describe(kpfn)} is free`);
    return true;
  };
  ksm.stableRoots.forEach((root, nid) => {
    rbCheck(sn, root, sn.top, undefined, `stable tree ${nid}`);
    if (nid >= ksm.nrNodeIds && root.node !== NULL) fail(`stable tree ${nid} is not empty, but only ${ksm.nrNodeIds} trees are in use`);
    // Live pages in tree order, one per content of a merge domain: (domain, contents)
    // strictly increase (pages.ts comparePagesInDomains).
    let prevLive = -1;
    let prevDomain = '';
    for (let node = rbFirst(sn, root); node !== NULL; node = rbNext(sn, node)) {
      noteNode(node, `stable tree ${nid}`);
      if (sn.linked[node] !== NODE_TREE) fail(`stable tree ${nid} holds kpfn=${sn.kpfn[node]}, which is ${describeNodeLink(ksm, node)}`);
      if (sn.nid[node] !== nid) fail(`stable node kpfn=${sn.kpfn[node]} says nid ${sn.nid[node]}, is in tree ${nid}`);
      let livePfn = -1;
      if (isStableNodeChain(sn, node)) {
        chains++;
        if (sn.hlist[node] !== NULL || sn.kpfn[node] !== -1) fail(`chain in tree ${nid} has rmap_items or a page`);
        // A chain may have no dup left: the keyhole removes stale dups from their
        // chain, and the chain itself goes when a search next walks it.
        const first = sn.dupHead[node]!;
        if (first !== NULL && sn.dupPrev[first] !== NULL) fail(`chain in tree ${nid}: its first dup has a predecessor`);
        for (let d = first; d !== NULL; d = sn.dupNext[d]!) {
          noteNode(d, `chain in tree ${nid}`);
          dups++;
          const dk = sn.kpfn[d]!;
          if (sn.linked[d] !== NODE_DUP || sn.chain[d] !== node) fail(`dup kpfn=${dk} of a chain in tree ${nid} is ${describeNodeLink(ksm, d)}, or on another chain`);
          const dn = sn.dupNext[d]!;
          if (dn !== NULL && sn.dupPrev[dn] !== d) fail(`dup links broken at kpfn=${dk}`);
          if (sn.nid[d] !== nid) fail(`dup kpfn=${dk} says nid ${sn.nid[d]}, its chain is in tree ${nid}`);
          if (sn.domain[d] !== sn.domain[node]) fail(`dup kpfn=${dk} is of merge domain ${JSON.stringify(domainOf(d))}, its chain of ${JSON.stringify(domainOf(node))}`);
          if (checkKsmNode(d, `dup in tree ${nid}`)) {
            // "all dup stable_nodes in the chain->hlist point to pages that are
            // write protected and have the exact same content"
            if (livePfn >= 0 && mem.comparePages(livePfn, dk) !== 0) fail(`dups kpfn=${livePfn} and kpfn=${dk} of one chain differ`);
            livePfn = dk;
          }
        }
      } else if (checkKsmNode(node, `stable tree ${nid}`)) {
        livePfn = sn.kpfn[node]!;
      }
      if (livePfn < 0) continue;
      const domain = domainOf(node);
      if (prevLive >= 0) {
        const order = prevDomain !== domain ? (prevDomain < domain ? -1 : 1) : mem.comparePages(prevLive, livePfn);
        if (order >= 0) fail(`stable tree ${nid} out of (merge domain, content) order at kpfn=${prevLive} → kpfn=${livePfn}`);
      }
      prevLive = livePfn;
      prevDomain = domain;
    }
  });
  for (let node = ksm.migrateNodes; node !== NULL; node = sn.migrateNext[node]!) {
    noteNode(node, 'migrate_nodes');
    if (sn.linked[node] !== NODE_MIGRATE) fail(`migrate_nodes holds kpfn=${sn.kpfn[node]}, which is ${describeNodeLink(ksm, node)}`);
    const next = sn.migrateNext[node]!;
    if (next !== NULL && sn.migratePrev[next] !== node) fail(`migrate_nodes links broken at kpfn=${sn.kpfn[node]}`);
    checkKsmNode(node, 'migrate_nodes');
  }
  // Every stable node in use is in a tree, on a chain or on migrate_nodes.
  if (nodesSeen.size !== sn.count) fail(`${sn.count} stable node records in use, ${nodesSeen.size} reached from the trees and migrate_nodes`);
  if (chains !== ksm.stableNodeChains) fail(`stable_node_chains is ${ksm.stableNodeChains}, recount ${chains}`);
  if (dups !== ksm.stableNodeDups) fail(`stable_node_dups is ${ksm.stableNodeDups}, recount ${dups}`);
  if (shared !== ksm.pagesShared) fail(`pages_shared is ${ksm.pagesShared}, recount ${shared}`);
  if (sharing !== ksm.pagesSharing) fail(`pages_sharing is ${ksm.pagesSharing}, recount ${sharing}`);
  for (const it of inList) {
    if ((ri.flags[it]! & STABLE_FLAG) !== 0 && !listed.has(it)) fail(`STABLE rmap_item ${ksm.describeItem(it)} is on no stable node's list`);
  }
  if (ksm.anonVmaTable.size !== holds.size) fail(`${ksm.anonVmaTable.size} anon_vmas numbered, ${holds.size} held by stable rmap_items`);
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

  // ---- KSM zero pages (6.x): the counts are the dirty zero-page ptes ----
  let zeroTotal = 0;
  const seenMms = new Set<MmStruct>();
  for (const p of ksm.kernel.processes.values()) {
    const mm = p.mm;
    seenMms.add(mm);
    let n = 0;
    mm.forEachPte(0, Number.MAX_SAFE_INTEGER, (_addr, pte) => {
      if (isKsmZeroPte(ksm, pte)) n++;
    });
    if (n > 0 && !ksm.profile.features.zeroPages) fail(`${mm.owner} maps ${n} KSM zero pages in a kernel without use_zero_pages`);
    if ((ksm.mmZeroPages.get(mm) ?? 0) !== n) fail(`ksm_zero_pages of ${mm.owner} is ${ksm.mmZeroPages.get(mm) ?? 0}, its page tables map ${n} KSM zero pages`);
    zeroTotal += n;
    if ((mm.flags & MMF_VM_MERGE_ANY) !== 0 && (mm.flags & MMF_VM_MERGEABLE) === 0) fail(`${mm.owner} has MMF_VM_MERGE_ANY without MMF_VM_MERGEABLE`);
  }
  for (const [mm, n] of ksm.mmZeroPages) {
    if (!seenMms.has(mm)) fail(`${mm.owner} has exited but is counted for ${n} KSM zero pages`);
    if (n <= 0) fail(`${mm.owner} is counted for ${n} KSM zero pages (an entry of 0 is removed)`);
  }
  if (zeroTotal !== ksm.ksmZeroPages) fail(`ksm_zero_pages is ${ksm.ksmZeroPages}, the page tables map ${zeroTotal}`);

  // ---- the memos: every remembered answer is still the right one ----
  // A wrong one means some write to a content's bytes bypassed the store's writers
  // (PhysMem.writeBytes/fillBytes/setContent), which drop the memo.
  const store = mem.store;
  let checked = 0;
  const limit = store.idLimit;
  const start = ksm.memoCheckCursor < limit ? ksm.memoCheckCursor : 0;
  let id = start;
  do {
    const z = store.lead[id * LEAD_STRIDE]!;
    if (z >= 0 && store.kind[id] !== CONTENT_FREE) {
      const v = store.view(id);
      let actual = 0;
      while (actual < PAGE_SIZE / 4 && v.words[v.wordOff + actual] === 0) actual++;
      if (actual !== z) fail(`memoized zero words of ${store.describe(id)}: ${z}, its bytes have ${actual}: a write skipped the store's writers`);
      // Then its key's words: the three after the run (0 past the page's end).
      const hex = (x: number): string => `0x${(x >>> 0).toString(16)}`;
      for (let j = 1; j < LEAD_STRIDE; j++) {
        const at = actual + j - 1;
        const want = at < PAGE_SIZE / 4 ? v.words[v.wordOff + at]! | 0 : 0;
        const got = store.lead[id * LEAD_STRIDE + j]!;
        if (got !== want) fail(`memoized key word ${j} of ${store.describe(id)}: ${hex(got)}, its bytes have ${hex(want)}: a write skipped the store's writers`);
      }
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
