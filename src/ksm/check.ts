import { InvariantError } from '../lib/errors.js';
import { rbCheck, rbCount, rbFirst, rbNext } from '../lib/rbtree.js';
import { MMF_VM_MERGEABLE, MMF_VM_MERGE_ANY, PAGE_SIZE } from '../mm/constants.js';
import { CONTENT_FREE } from '../mm/contents.js';
import type { MmStruct } from '../mm/mm.js';
import type { AnonVma } from '../mm/vma.js';
import type { Ksm } from './ksm.js';
import { isKsmZeroPte } from './madvise.js';
import { describeNodeLink } from './stable-tree.js';
import { NODE_MIGRATE, NODE_TREE, NODE_DUP, RMAP_AGE_MAX, SEQNR_MASK, STABLE_FLAG, UNSTABLE_FLAG, isStableNodeChain, type RmapItem, type StableNode } from './structs.js';


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
      // Smart scan (6.x): the age saturates at U8_MAX, and skip_age() gives at most 8.
      if (it.age < 0 || it.age > RMAP_AGE_MAX || it.remainingSkips < 0 || it.remainingSkips > 8) {
        fail(`rmap_item ${ksm.describeItem(it)} has age ${it.age} and ${it.remainingSkips} remaining skips`);
      }
      if (ksm.smartScan === 0 && !ksm.profile.features.smartScan && (it.age !== 0 || it.remainingSkips !== 0)) {
        fail(`rmap_item ${ksm.describeItem(it)} has a smart-scan age in a kernel without smart scan`);
      }
    }
  });
  if (slots !== ksm.mmSlots.size) fail(`${ksm.mmSlots.size} mm_slots hashed, ${slots} listed`);
  if (items !== ksm.rmapItems) fail(`ksm_rmap_items is ${ksm.rmapItems}, ${items} rmap_items listed`);
  if (unstable !== ksm.pagesUnshared) fail(`pages_unshared is ${ksm.pagesUnshared}, ${unstable} rmap_items have UNSTABLE_FLAG`);

  // ---- the unstable trees: this scan's insertions only ----
  let treeSize = 0;
  ksm.unstableRoots.forEach((root, nid) => {
    rbCheck(root, undefined, `unstable tree ${nid}`);
    if (nid >= ksm.nrNodeIds && root.node !== null) fail(`unstable tree ${nid} is not empty, but only ${ksm.nrNodeIds} trees are in use`);
    treeSize += rbCount(root);
    // rbCheck() passed, so the links can be followed.
    for (let n = rbFirst(root); n !== null; n = rbNext(n)) {
      const it = n as RmapItem;
      if (!inList.has(it)) fail(`unstable tree node ${ksm.describeItem(it)} is on no rmap_list`);
      if ((it.flags & UNSTABLE_FLAG) === 0 || ((ksm.seqnr - it.flags) & SEQNR_MASK) !== 0) {
        fail(`unstable tree node ${ksm.describeItem(it)} is not an UNSTABLE rmap_item of this scan`);
      }
      if (it.nid !== nid) fail(`unstable rmap_item ${ksm.describeItem(it)} says nid ${it.nid}, is in tree ${nid}`);
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
  /** One KSM page's node (a regular node, a dup, or one on migrate_nodes): its rmap_items and page; returns whether it is live. */
  const checkKsmNode = (node: StableNode, where: string): boolean => {
    if (isStableNodeChain(node)) fail(`${where}: a chain where a KSM page's node belongs`);
    let len = 0;
    for (let it = node.hlist; it !== null; it = it.hlistNext) {
      len++;
      if (listed.has(it)) fail(`rmap_item ${ksm.describeItem(it)} listed by two stable nodes, or twice`);
      listed.add(it);
      if (!inList.has(it)) fail(`stable node kpfn=${node.kpfn} lists a freed rmap_item ${ksm.describeItem(it)}`);
      if ((it.flags & STABLE_FLAG) === 0) fail(`expected STABLE_FLAG on rmap_item ${ksm.describeItem(it)} listed by stable node kpfn=${node.kpfn}`);
      if (it.head !== node) fail(`rmap_item ${ksm.describeItem(it)} listed by kpfn=${node.kpfn} points at another node`);
      if (it.mm.ksmMergeDomain !== node.domain) fail(`rmap_item ${ksm.describeItem(it)} of merge domain ${JSON.stringify(it.mm.ksmMergeDomain)} is listed by kpfn=${node.kpfn} of domain ${JSON.stringify(node.domain)}`);
      if (it.hlistNext !== null && it.hlistNext.hlistPrev !== it) fail(`hlist links broken at ${ksm.describeItem(it)}`);
      holds.set(it.anonVma!, (holds.get(it.anonVma!) ?? 0) + 1);
    }
    if (node.rmapHlistLen !== len) fail(`${where}: stable node kpfn=${node.kpfn} has rmap_hlist_len ${node.rmapHlistLen}, ${len} rmap_items on its list`);
    if (len > 0) {
      shared++;
      sharing += len - 1;
    }
    const live = mem.isKsm(node.kpfn) && mem.mappingOf(node.kpfn) === node;
    // A stale node (its page freed, swapped out or offlined) may stay until the
    // keyhole finds it.
    if (!live) return false;
    if (kpfns.has(node.kpfn)) fail(`two stable nodes for pfn ${node.kpfn}`);
    kpfns.add(node.kpfn);
    if (mem.count[node.kpfn]! <= 0) fail(`stable node's page ${mem.describe(node.kpfn)} is free`);
    return true;
  };
  ksm.stableRoots.forEach((root, nid) => {
    rbCheck(root, undefined, `stable tree ${nid}`);
    if (nid >= ksm.nrNodeIds && root.node !== null) fail(`stable tree ${nid} is not empty, but only ${ksm.nrNodeIds} trees are in use`);
    // Live pages in tree order, one per content of a merge domain: (domain, contents)
    // strictly increase (pages.ts comparePagesInDomains).
    let prevLive = -1;
    let prevDomain = '';
    for (let n = rbFirst(root); n !== null; n = rbNext(n)) {
      const node = n as StableNode;
      if (node.linked !== NODE_TREE) fail(`stable tree ${nid} holds kpfn=${node.kpfn}, which is ${describeNodeLink(node)}`);
      if (node.nid !== nid) fail(`stable node kpfn=${node.kpfn} says nid ${node.nid}, is in tree ${nid}`);
      let livePfn = -1;
      if (isStableNodeChain(node)) {
        chains++;
        if (node.hlist !== null || node.kpfn !== -1) fail(`chain in tree ${nid} has rmap_items or a page`);
        // A chain may have no dup left: the keyhole removes stale dups from their
        // chain, and the chain itself goes when a search next walks it.
        if (node.dupHead !== null && node.dupHead.dupPrev !== null) fail(`chain in tree ${nid}: its first dup has a predecessor`);
        for (let d: StableNode | null = node.dupHead; d !== null; d = d.dupNext) {
          dups++;
          if (d.linked !== NODE_DUP || d.chain !== node) fail(`dup kpfn=${d.kpfn} of a chain in tree ${nid} is ${describeNodeLink(d)}, or on another chain`);
          if (d.dupNext !== null && d.dupNext.dupPrev !== d) fail(`dup links broken at kpfn=${d.kpfn}`);
          if (d.nid !== nid) fail(`dup kpfn=${d.kpfn} says nid ${d.nid}, its chain is in tree ${nid}`);
          if (d.domain !== node.domain) fail(`dup kpfn=${d.kpfn} is of merge domain ${JSON.stringify(d.domain)}, its chain of ${JSON.stringify(node.domain)}`);
          if (checkKsmNode(d, `dup in tree ${nid}`)) {
            // "all dup stable_nodes in the chain->hlist point to pages that are
            // write protected and have the exact same content"
            if (livePfn >= 0 && mem.comparePages(livePfn, d.kpfn) !== 0) fail(`dups kpfn=${livePfn} and kpfn=${d.kpfn} of one chain differ`);
            livePfn = d.kpfn;
          }
        }
      } else if (checkKsmNode(node, `stable tree ${nid}`)) {
        livePfn = node.kpfn;
      }
      if (livePfn < 0) continue;
      if (prevLive >= 0) {
        const order = prevDomain !== node.domain ? (prevDomain < node.domain ? -1 : 1) : mem.comparePages(prevLive, livePfn);
        if (order >= 0) fail(`stable tree ${nid} out of (merge domain, content) order at kpfn=${prevLive} → kpfn=${livePfn}`);
      }
      prevLive = livePfn;
      prevDomain = node.domain;
    }
  });
  for (let node = ksm.migrateNodes; node !== null; node = node.migrateNext) {
    if (node.linked !== NODE_MIGRATE) fail(`migrate_nodes holds kpfn=${node.kpfn}, which is ${describeNodeLink(node)}`);
    if (node.migrateNext !== null && node.migrateNext.migratePrev !== node) fail(`migrate_nodes links broken at kpfn=${node.kpfn}`);
    checkKsmNode(node, 'migrate_nodes');
  }
  if (chains !== ksm.stableNodeChains) fail(`stable_node_chains is ${ksm.stableNodeChains}, recount ${chains}`);
  if (dups !== ksm.stableNodeDups) fail(`stable_node_dups is ${ksm.stableNodeDups}, recount ${dups}`);
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
