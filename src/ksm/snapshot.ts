import {
  IntList,
  Numbering,
  array,
  bool,
  buildTree,
  bytes,
  bytesOf,
  checkTreeShape,
  f64s,
  fail,
  finite,
  found,
  i32s,
  int,
  obj,
  str,
  treeShape,
  u32s,
} from '../lib/snapshot.js';
import { assertNever, bug } from '../lib/errors.js';
import { PAGE_SIZE, TASK_SIZE, hexAddr } from '../mm/constants.js';
import type {
  ImageCheckContext,
  ImagePartChecked,
  ImagePartChecker,
  ImageRestoreContext,
  ImageSaveContext,
  ImagePartSaved,
  KernelImagePart,
} from '../mm/snapshot.js';
import { mergeDomainProblem } from '../mm/kernel.js';
import type { AnonVma } from '../mm/vma.js';
import { ULONG_MAX, UINT_MAX } from '../mm/sysfs.js';
import { INERT_KNOBS, setKnobField, type Ksm } from './ksm.js';
import type { Ksmd } from './ksmd.js';
import { KERNEL_VERSIONS, findKnob, kernelProfile, type KernelProfile, type KernelVersion, type KnobSpec, type KsmKnobField } from './profile.js';
import { allocMmSlot } from './rmap-item.js';
import { MmSlot, NODE_DUP, NODE_MIGRATE, NODE_TREE, NODE_UNLINKED, NULL, STABLE_FLAG, STABLE_NODE_CHAIN, UNSTABLE_FLAG, isStableNodeChain, type RmapItem, type StableNode } from './structs.js';
import { KSM_WORK_COUNTERS } from './work.js';

/*
 * KSM's part of the kernel image (src/ksm/kernel.ts composes the whole kernel's).
 *
 * The mm saves and restores its own state (src/mm/snapshot.ts); KSM registers this
 * part with the kernel (HostKernel.registerImagePart) for what mm/ksm.c and ksmd
 * hold: the kernel version whose KSM this is (restoring builds a kernel of that
 * version), mm_slots in list order with their rmap_lists, every rmap_item's fields
 * (6.x: its unstable tree's node, its smart-scan age and skips), stable nodes with
 * their hlists in order (6.x: chains with their dups in order and prune times, the
 * node of the tree each is in, migrate_nodes in order), every tree's exact shape and
 * colours (a pre-order walk, one byte per node: left child, right child, red; one
 * stable and one unstable tree per NUMA node), the scan cursor, the counters (6.x:
 * KSM zero pages globally and per mm, pages skipped, chains and dups) and every
 * knob, the scan-time advisor's state, ksmd's next wakeup and batch count. It names the mm's
 * objects by their index in the image: the mm of each mm_slot, the anon_vma each
 * stable rmap_item holds; and the frames of KSM pages name their stable node by its
 * index here (the part's `mappings`).
 *
 * Everything read from the engine is read in saveKsm(), and everything written to
 * it is written in restoreKsm(): a change to the engine's fields is followed here in
 * those two functions (and in the image format, checkKsmImage()).
 *
 * What is dropped, and why that changes no decision:
 *
 * - KSM's memcmp memo: a memo of a pure function of page contents.
 * - rb links of rmap_items that are not in the current unstable tree. KSM throws
 *   the unstable tree away by resetting its root, so the items it held keep stale
 *   links; nothing reads them (an item is relinked by rb_link_node before it is
 *   in a tree again), and they may point at freed items. Restored, they are null.
 * - The scan cursor's link while the cursor is at the list head: the next scan
 *   resets it before any use (it may point at freed memory, as in Linux).
 * - ksm_rmap_items: the rmap_items listed on the mm_slots are all of them; the
 *   count is restored from them.
 * - zero_checksum: a function of the zero page, computed by every kernel of the
 *   version at ksm_init().
 * - An rmap_item's `nid` is meaningful only while it is UNSTABLE; it is kept for
 *   every item anyway, as cheap as proving it unread.
 *
 * The road not taken: one image format per kernel version. A 2.6.33 kernel's image
 * has the 6.x fields at their inert values (checked), so one decoder serves both and
 * a field added for a later version cannot be forgotten by the other's.
 */

/** KSM's part of the kernel image (KernelImage.parts.ksm). */
export interface KsmImage {
  /** The kernel version whose KSM this is (profile.ts). */
  version: KernelVersion;
  pagesShared: number;
  pagesSharing: number;
  pagesUnshared: number;
  pagesScanned: number;
  /** ksmd's work counters (work.ts), in KSM_WORK_COUNTERS order. */
  work: number[];
  seqnr: number;
  /** 6.x counters (0 in 2.6.33): ksm_pages_skipped, ksm_zero_pages, stable_node_chains, stable_node_dups. */
  pagesSkipped: number;
  ksmZeroPages: number;
  stableNodeChains: number;
  stableNodeDups: number;
  /** mm->ksm_zero_pages where not 0, in the engine's order: the mm by index in the image's mms. */
  zeroPages: { mm: number; pages: number }[];
  /** ksm_nr_node_ids: how many of the per-node trees are in use. */
  nrNodeIds: number;
  /**
   * Every knob field (profile.ts KsmKnobValues): a number, or an unsigned long in
   * decimal. A knob the version does not have holds its inert value (ksm.ts INERT_KNOBS).
   */
  knobs: Record<KsmKnobField, number | string>;
  offlineLock: boolean;
  /** The scan-time advisor (advisor.ts): advisor_ctx, and ksmd's CPU time as charged. */
  advisor: { startScan: number; scanTime: number; change: number; cpuTime: number; ksmdCpuTime: number };
  /** mm_slots in list order (its mm by index in the image's mms); each owns the next `items` rmap_items, in rmap_list order. */
  slots: { mm: number; items: number }[];
  /** Index into slots of ksm_scan.mm_slot, or -1 for the list head. */
  scanSlot: number;
  scanAddress: number;
  /** ksm_scan.rmap_list: -1 for the slot itself, else the rmap_item whose link it is. */
  scanLink: number;
  /** Per rmap_item: f64 address, u32 flags, u32 oldchecksum, i32 index in the image's anonVmas or -1. */
  itemAddress: Uint8Array;
  itemFlags: Uint8Array;
  itemChecksum: Uint8Array;
  itemAnonVma: Uint8Array;
  /** Per rmap_item (6.x): u32 nid, and one byte each of smart-scan age and remaining skips. */
  itemNid: Uint8Array;
  itemAge: Uint8Array;
  itemSkips: Uint8Array;
  /**
   * Per stable node: i32 kpfn (-1 exactly for a chain), one byte of where it is linked
   * (structs.ts NODE_*), u32 nid, f64 chain prune time, u32 hlist length (0 for a
   * chain); the hlists concatenated (u32 item indices, first first); u32 dups per node
   * (0 unless a chain) and the dups concatenated (u32 node indices, first first).
   */
  nodeKpfn: Uint8Array;
  nodeLinked: Uint8Array;
  nodeNid: Uint8Array;
  nodePruneTime: Uint8Array;
  nodeHlistLength: Uint8Array;
  nodeHlist: Uint8Array;
  nodeDupCount: Uint8Array;
  nodeDups: Uint8Array;
  /**
   * Merge domains (model-only, pages.ts comparePagesInDomains): the names in use,
   * '' (the common domain) first, and per stable node the u32 index of its own.
   */
  domains: string[];
  nodeDomain: Uint8Array;
  /** migrate_nodes: u32 node indices, head first. */
  migrateNodes: Uint8Array;
  /**
   * The stable trees, one per NUMA node: their nodes are stable nodes 0.. in
   * pre-order, tree 0's first, then tree 1's, and so on; one shape byte each. The
   * stable nodes after them are dups, on migrate_nodes, or mapped by frames only.
   */
  stableTrees: Uint8Array[];
  /** The unstable trees, one per NUMA node: u32 item indices in pre-order, and a shape byte each. */
  unstableItems: Uint8Array[];
  unstableTrees: Uint8Array[];
  ksmd: { wakeAt: number | null; batches: number };
}

/** A KsmImage checked against its kernel image: its binary fields as typed arrays. */
interface DecodedKsm {
  img: KsmImage;
  profile: KernelProfile;
  knobs: Record<KsmKnobField, bigint>;
  itemAddress: Float64Array;
  itemFlags: Uint32Array;
  itemChecksum: Uint32Array;
  itemAnonVma: Int32Array;
  itemNid: Uint32Array;
  itemAge: Uint8Array;
  itemSkips: Uint8Array;
  nodeKpfn: Int32Array;
  nodeLinked: Uint8Array;
  nodeNid: Uint32Array;
  domains: string[];
  nodeDomain: Uint32Array;
  nodePruneTime: Float64Array;
  nodeHlistLength: Uint32Array;
  nodeHlist: Uint32Array;
  nodeDupCount: Uint32Array;
  nodeDups: Uint32Array;
  migrateNodes: Uint32Array;
  stableTrees: Uint8Array[];
  unstableItems: Uint32Array[];
  unstableTrees: Uint8Array[];
}

/** Every knob field, in INERT_KNOBS' order. */
const KNOB_FIELDS = Object.keys(INERT_KNOBS) as KsmKnobField[];

/** The kernel version a checked KSM part names (what checkKsmImage() decoded): restoring builds a kernel of it. */
export function decodedKsmVersion(d: unknown): KernelVersion {
  return (d as DecodedKsm).profile.version;
}

/** The part Kernel registers (ksm_init()). */
export function ksmImagePart(ksm: Ksm, ksmd: Ksmd): KernelImagePart<DecodedKsm> {
  return {
    name: 'ksm',
    save: (ctx) => saveKsm(ksm, ksmd, ctx),
    check: checkKsmImage,
    restore: (d, ctx) => restoreKsm(ksm, ksmd, d, ctx),
  };
}

// ---- saving --------------------------------------------------------------------------------

/** KSM's state as a KsmImage, and its stable nodes (what KSM pages' frames map). Reads the engine only. */
function saveKsm(ksm: Ksm, ksmd: Ksmd, ctx: ImageSaveContext): ImagePartSaved {
  const inconsistent: (msg: string) => never = ctx.inconsistent;
  const ri = ksm.rmapItemCache;
  const sn = ksm.stableNodeCache;
  if (ksm.mmHead.rmapList !== NULL) inconsistent('the mm_slot list head has rmap_items');

  // mm_slots and rmap_items in list order. An mm_slot's mm is numbered after the
  // processes': it may be the mm of a process that has exited, which ksmd has not
  // let go of yet.
  const slotList: MmSlot[] = [];
  let nItems = 0;
  for (let s = ksm.mmHead.next; s !== ksm.mmHead; s = s.next) {
    slotList.push(s);
    for (let it = s.rmapList; it !== NULL; it = ri.rmapList[it]!) {
      if (++nItems > ri.count) inconsistent(`the rmap_lists hold more than the ${ri.count} rmap_items in use (a cycle)`);
    }
  }
  const itemIndex = new Map<RmapItem, number>();
  const itemAddress = new Float64Array(nItems);
  const itemFlags = new Uint32Array(nItems);
  const itemChecksum = new Uint32Array(nItems);
  const itemAnonVma = new Int32Array(nItems);
  const itemNid = new Uint32Array(nItems);
  const itemAge = new Uint8Array(nItems);
  const itemSkips = new Uint8Array(nItems);
  const slots: { mm: number; items: number }[] = [];
  const slotFirst: number[] = [];
  let withHead = 0;
  let n = 0;
  for (const s of slotList) {
    slotFirst.push(n);
    const first = n;
    for (let it = s.rmapList; it !== NULL; it = ri.rmapList[it]!) {
      if (ri.mm[it] !== s.mmId) inconsistent(`rmap_item ${ksm.describeItem(it)} is on the rmap_list of ${s.mm!.owner}`);
      itemIndex.set(it, n);
      const flags = ri.flags[it]!;
      itemAddress[n] = ri.addressOf(it);
      itemFlags[n] = flags;
      itemChecksum[n] = ri.oldchecksum[it]!;
      // anon_vma and nid share a field: each is saved where it is valid, else -1 and 0.
      const av = ksm.itemAnonVma(it);
      itemAnonVma[n] = av === null ? -1 : ctx.anonVma(av);
      itemNid[n] = (flags & UNSTABLE_FLAG) !== 0 ? ri.nid[it]! : 0;
      itemAge[n] = ri.age[it]!;
      itemSkips[n] = ri.remainingSkips[it]!;
      if (ri.headOf(it) !== NULL) withHead++;
      n++;
    }
    slots.push({ mm: ctx.mm(s.mm!), items: n - first });
  }

  // Stable nodes: each stable tree's in pre-order, tree after tree; then the dups of
  // the chains among them, chain by chain in list order; then migrate_nodes in list
  // order; then those only frames still point at.
  const nodes = new Numbering<StableNode>();
  const stableTrees = ksm.stableRoots.map((root, nid) => treeShape(sn, root, sn.top, (node) => nodes.of(node), `stable tree ${nid}`, inconsistent));
  const inTrees = nodes.list.length;
  const nodeDupCount = new Uint32Array(inTrees);
  const nodeDups = new IntList();
  for (let i = 0; i < inTrees; i++) {
    const node = nodes.list[i]!;
    if (!isStableNodeChain(sn, node)) continue;
    for (let d = sn.dupHead[node]!; d !== NULL; d = sn.dupNext[d]!) {
      if (sn.chain[d] !== node || nodes.index.has(d)) inconsistent(`dup kpfn=${sn.kpfn[d]} is on a chain it does not point back to, or listed twice`);
      nodeDups.push(nodes.of(d));
      nodeDupCount[i] = nodeDupCount[i]! + 1;
    }
  }
  const migrateNodes = new IntList();
  for (let node = ksm.migrateNodes; node !== NULL; node = sn.migrateNext[node]!) {
    if (nodes.index.has(node)) inconsistent(`stable node kpfn=${sn.kpfn[node]} is on migrate_nodes and elsewhere, or listed twice`);
    migrateNodes.push(nodes.of(node));
  }
  // Every stable node in use is in a tree, on a chain or on migrate_nodes (check.ts);
  // a KSM page's mapping may only name one of those.
  for (const m of ctx.frameMappings) {
    if (typeof m === 'number' && !nodes.index.has(m)) inconsistent(`a KSM page maps stable node record ${m}, which is in no stable tree, chain or migrate_nodes`);
  }
  const nNodes = nodes.list.length;
  // The unstable trees, over rmap_items.
  const unstableItems: Uint8Array[] = [];
  const unstableTrees = ksm.unstableRoots.map((root, nid) => {
    const list = new IntList();
    const shape = treeShape(
      ri,
      root,
      ri.top,
      (node) => {
        const i = itemIndex.get(node);
        if (i === undefined) inconsistent(`unstable tree ${nid} holds rmap_item ${ksm.describeItem(node)}, which is on no rmap_list`);
        list.push(i);
      },
      `unstable tree ${nid}`,
      inconsistent,
    );
    unstableItems.push(list.done());
    return shape;
  });

  // Each stable node's fields and hlist.
  const nodeHlist = new IntList();
  const nodeLengths = new Uint32Array(nNodes);
  const nodeKpfn = new Int32Array(nNodes);
  const nodeLinked = new Uint8Array(nNodes);
  const nodeNid = new Uint32Array(nNodes);
  const nodeDomain = new Uint32Array(nNodes);
  const domains = new Map<string, number>([['', 0]]);
  const nodePruneTime = new Float64Array(nNodes);
  const nodeDupCounts = new Uint32Array(nNodes);
  nodeDupCounts.set(nodeDupCount);
  let inHlists = 0;
  for (let i = 0; i < nNodes; i++) {
    const node = nodes.list[i]!;
    const chain = isStableNodeChain(sn, node);
    const kpfn = sn.kpfn[node]!;
    if (i < inTrees !== (sn.linked[node] === NODE_TREE)) inconsistent(`stable node kpfn=${kpfn} is linked ${sn.linked[node]}, ${i < inTrees ? '' : 'not '}in a stable tree`);
    let len = 0;
    let prev: RmapItem = NULL;
    for (let it = sn.hlist[node]!; it !== NULL; it = ri.hlistNext[it]!) {
      const idx = itemIndex.get(it);
      if (idx === undefined) inconsistent(`stable node kpfn=${kpfn} lists rmap_item ${ksm.describeItem(it)}, which is on no rmap_list`);
      if (ri.headOf(it) !== node || ri.hlistPrev[it] !== prev) inconsistent(`hlist of stable node kpfn=${kpfn} broken at ${ksm.describeItem(it)}`);
      if (++len > nItems) inconsistent(`hlist of stable node kpfn=${kpfn} has a cycle`);
      nodeHlist.push(idx);
      prev = it;
    }
    if (chain ? len !== 0 : sn.rmapHlistLen[node] !== len) inconsistent(`stable node kpfn=${kpfn} has rmap_hlist_len ${sn.rmapHlistLen[node]}, ${len} rmap_items on its list`);
    nodeLengths[i] = len;
    // The image keeps the fields apart: kpfn -1 and the prune time for a chain, the kpfn and 0 for the rest.
    nodeKpfn[i] = kpfn;
    nodeLinked[i] = sn.linked[node]!;
    nodeNid[i] = sn.nid[node]!;
    const name = ksm.domainNames[sn.domain[node]!]!;
    let domain = domains.get(name);
    if (domain === undefined) domains.set(name, (domain = domains.size));
    nodeDomain[i] = domain;
    nodePruneTime[i] = chain ? sn.chainPruneTime[node]! : 0;
    inHlists += len;
  }
  if (inHlists !== withHead) inconsistent(`${withHead} rmap_items have a stable node, ${inHlists} are on stable nodes' hlists`);

  // The scan cursor.
  let scanSlot = -1;
  let scanLink = -1;
  if (ksm.scanSlot !== ksm.mmHead) {
    scanSlot = slotList.indexOf(ksm.scanSlot);
    if (scanSlot < 0) inconsistent('the scan cursor is on an mm_slot that is not listed');
    if (ksm.scanLink !== NULL) {
      const i = itemIndex.get(ksm.scanLink);
      if (i === undefined || i < slotFirst[scanSlot]! || i >= slotFirst[scanSlot]! + slots[scanSlot]!.items) {
        inconsistent("the scan cursor links to an rmap_item that is not on its mm_slot's list");
      }
      scanLink = i;
    }
  }

  const zeroPages: { mm: number; pages: number }[] = [];
  for (const [mm, pages] of ksm.mmZeroPages) zeroPages.push({ mm: ctx.mm(mm), pages });
  const knobs = {} as Record<KsmKnobField, number | string>;
  for (const f of KNOB_FIELDS) {
    const v = ksm[f];
    knobs[f] = typeof v === 'bigint' ? v.toString() : v;
  }

  const image: KsmImage = {
    version: ksm.profile.version,
    pagesShared: ksm.pagesShared,
    pagesSharing: ksm.pagesSharing,
    pagesUnshared: ksm.pagesUnshared,
    pagesScanned: ksm.pagesScanned,
    work: KSM_WORK_COUNTERS.map((c) => ksm.work[c]),
    seqnr: ksm.seqnr,
    pagesSkipped: ksm.pagesSkipped,
    ksmZeroPages: ksm.ksmZeroPages,
    stableNodeChains: ksm.stableNodeChains,
    stableNodeDups: ksm.stableNodeDups,
    zeroPages,
    nrNodeIds: ksm.nrNodeIds,
    knobs,
    offlineLock: ksm.offlineLock,
    advisor: {
      startScan: ksm.advisorStartScan,
      scanTime: ksm.advisorScanTime,
      change: ksm.advisorChange,
      cpuTime: ksm.advisorCpuTime,
      ksmdCpuTime: ksm.ksmdCpuTime,
    },
    slots,
    scanSlot,
    scanAddress: ksm.scanAddress,
    scanLink,
    itemAddress: bytesOf(itemAddress),
    itemFlags: bytesOf(itemFlags),
    itemChecksum: bytesOf(itemChecksum),
    itemAnonVma: bytesOf(itemAnonVma),
    itemNid: bytesOf(itemNid),
    itemAge,
    itemSkips,
    nodeKpfn: bytesOf(nodeKpfn),
    nodeLinked,
    nodeNid: bytesOf(nodeNid),
    domains: [...domains.keys()],
    nodeDomain: bytesOf(nodeDomain),
    nodePruneTime: bytesOf(nodePruneTime),
    nodeHlistLength: bytesOf(nodeLengths),
    nodeHlist: nodeHlist.done(),
    nodeDupCount: bytesOf(nodeDupCounts),
    nodeDups: nodeDups.done(),
    migrateNodes: migrateNodes.done(),
    stableTrees,
    unstableItems,
    unstableTrees,
    ksmd: ksmd.saveState(),
  };
  const nodeIndex = nodes.index;
  return { image, mappings: nNodes, mappingIndex: (o) => (typeof o === 'number' ? (nodeIndex.get(o) ?? -1) : -1) };
}

// ---- checking an untrusted image ---------------------------------------------------------

/** The values a knob field may hold in a kernel whose profile has it (`run`: what run_store() accepts). */
function knobRange(spec: KnobSpec): [bigint, bigint] {
  if (spec.field === 'run') return [0n, 2n];
  let cmax: bigint;
  switch (spec.ctype) {
    case 'unsigned long':
      cmax = ULONG_MAX;
      break;
    case 'unsigned int':
      cmax = BigInt(UINT_MAX);
      break;
    case 'int':
      cmax = 2147483647n;
      break;
    case 'bool':
      cmax = 1n;
      break;
    case 'enum':
      cmax = BigInt(spec.choices!.length - 1);
      break;
    default:
      return assertNever(spec.ctype, 'knob C type');
  }
  return [spec.min, spec.max < cmax ? spec.max : cmax];
}

/** The knobs of an untrusted image: each in its knob's range, or (a knob the version lacks) at its inert value. */
function checkKnobs(x: unknown, path: string, profile: KernelProfile): Record<KsmKnobField, bigint> {
  const o = obj(x, path);
  const out = {} as Record<KsmKnobField, bigint>;
  for (const key of Object.keys(o)) {
    if (!(KNOB_FIELDS as string[]).includes(key)) fail(`${path}.${key}`, `no such knob field (there are ${KNOB_FIELDS.join(', ')})`);
  }
  for (const f of KNOB_FIELDS) {
    const p = `${path}.${f}`;
    const inert = INERT_KNOBS[f];
    const spec = findKnob(profile, f);
    const [lo, hi] = spec === null ? [BigInt(inert), BigInt(inert)] : knobRange(spec);
    let v: bigint;
    if (typeof inert === 'bigint') {
      const s = str(o[f], p);
      if (!/^[0-9]{1,20}$/.test(s) || BigInt(s) > ULONG_MAX) fail(p, `expected an unsigned long in decimal, found ${found(s)}`);
      v = BigInt(s);
    } else {
      v = BigInt(int(o[f], p, spec === null ? Number.MIN_SAFE_INTEGER : Number(lo), spec === null ? Number.MAX_SAFE_INTEGER : Number(hi)));
    }
    if (v < lo || v > hi) fail(p, spec === null ? `Linux ${profile.version} has no such knob: expected ${inert} (inert), found ${v}` : `expected ${lo} to ${hi}, found ${v}`);
    out[f] = v;
  }
  return out;
}

/** That an untrusted KsmImage can be restored (lib/snapshot.ts fail() names the field otherwise). */
function checkKsmImage(x: unknown, ctx: ImageCheckContext): ImagePartChecked<DecodedKsm> {
  const p = ctx.path;
  const k = obj(x, p);
  const version = str(k.version, `${p}.version`);
  if (!(KERNEL_VERSIONS as readonly string[]).includes(version)) {
    fail(`${p}.version`, `Linux ${version}: this Samepage has profiles for ${KERNEL_VERSIONS.join(', ')} only`);
  }
  const profile = kernelProfile(version);
  const features = profile.features;
  for (const key of ['pagesShared', 'pagesSharing', 'pagesUnshared', 'seqnr', 'pagesScanned', 'pagesSkipped', 'ksmZeroPages', 'stableNodeChains', 'stableNodeDups'] as const) {
    int(k[key], `${p}.${key}`, 0, Number.MAX_SAFE_INTEGER);
  }
  if (!Array.isArray(k.work) || k.work.length !== KSM_WORK_COUNTERS.length) fail(`${p}.work`, `expected ${KSM_WORK_COUNTERS.length} counters (${KSM_WORK_COUNTERS.join(', ')}), found ${found(k.work)}`);
  KSM_WORK_COUNTERS.forEach((c, i) => int((k.work as unknown[])[i], `${p}.work[${i}] (${c})`, 0, Number.MAX_SAFE_INTEGER));
  const knobs = checkKnobs(k.knobs, `${p}.knobs`, profile);
  bool(k.offlineLock, `${p}.offlineLock`);
  const nodes = ctx.nodes;
  const nrNodeIds = int(k.nrNodeIds, `${p}.nrNodeIds`, 1, nodes);
  // ksm_nr_node_ids follows merge_across_nodes (sysfs.ts).
  const wantNodeIds = knobs.mergeAcrossNodes !== 0n ? 1 : nodes;
  if (nrNodeIds !== wantNodeIds) fail(`${p}.nrNodeIds`, `expected ${wantNodeIds} with merge_across_nodes ${knobs.mergeAcrossNodes} and ${nodes} nodes, found ${nrNodeIds}`);
  const adv = obj(k.advisor, `${p}.advisor`);
  finite(adv.startScan, `${p}.advisor.startScan`);
  for (const key of ['scanTime', 'change', 'cpuTime', 'ksmdCpuTime'] as const) int(adv[key], `${p}.advisor.${key}`, 0, Number.MAX_SAFE_INTEGER);
  const nMms = ctx.mms;
  const nAnon = ctx.anonVmas;
  const zeroImg = array(k.zeroPages, `${p}.zeroPages`);
  const zeroMm = new Uint8Array(nMms);
  let zeroTotal = 0;
  zeroImg.forEach((z, i) => {
    const zi = obj(z, `${p}.zeroPages[${i}]`);
    const mm = int(zi.mm, `${p}.zeroPages[${i}].mm`, 0, nMms - 1);
    if (zeroMm[mm] !== 0) fail(`${p}.zeroPages[${i}].mm`, `mm ${mm} is counted twice`);
    zeroMm[mm] = 1;
    zeroTotal += int(zi.pages, `${p}.zeroPages[${i}].pages`, 1, Number.MAX_SAFE_INTEGER);
  });
  if (zeroTotal !== k.ksmZeroPages) fail(`${p}.zeroPages`, `the mms count ${zeroTotal} KSM zero pages, ksm_zero_pages is ${k.ksmZeroPages as number}`);
  if (!features.zeroPages && zeroTotal !== 0) fail(`${p}.ksmZeroPages`, `Linux ${version} maps no KSM zero pages, found ${zeroTotal}`);
  const slotsImg = array(k.slots, `${p}.slots`);
  const slotMm = new Uint8Array(nMms);
  const slotFirst: number[] = [];
  let nItems = 0;
  slotsImg.forEach((s, i) => {
    const path = `${p}.slots[${i}]`;
    const si = obj(s, path);
    const mm = int(si.mm, `${path}.mm`, 0, nMms - 1);
    if (slotMm[mm] !== 0) fail(`${path}.mm`, `mm ${mm} has two mm_slots`);
    slotMm[mm] = 1;
    ctx.holdMm(mm);
    slotFirst.push(nItems);
    nItems += int(si.items, `${path}.items`, 0, 0x7fffffff);
  });
  slotFirst.push(nItems);
  const itemAddress = f64s(k.itemAddress, `${p}.itemAddress`, nItems);
  const itemFlags = u32s(k.itemFlags, `${p}.itemFlags`, nItems);
  const itemChecksum = u32s(k.itemChecksum, `${p}.itemChecksum`, nItems);
  const itemAnonVma = i32s(k.itemAnonVma, `${p}.itemAnonVma`, nItems);
  const itemNid = u32s(k.itemNid, `${p}.itemNid`, nItems);
  const itemAge = bytes(k.itemAge, `${p}.itemAge`);
  const itemSkips = bytes(k.itemSkips, `${p}.itemSkips`);
  if (itemAge.length !== nItems) fail(`${p}.itemAge`, `expected ${nItems} bytes, found ${itemAge.length}`);
  if (itemSkips.length !== nItems) fail(`${p}.itemSkips`, `expected ${nItems} bytes, found ${itemSkips.length}`);
  for (let s = 0; s < slotsImg.length; s++) {
    for (let i = slotFirst[s]!; i < slotFirst[s + 1]!; i++) {
      const a = itemAddress[i]!;
      if (!Number.isSafeInteger(a) || a < 0 || a % PAGE_SIZE !== 0 || a >= TASK_SIZE) fail(`${p}.itemAddress[${i}]`, `bad address ${a}`);
      if (i > slotFirst[s]! && a <= itemAddress[i - 1]!) fail(`${p}.itemAddress[${i}]`, `rmap_list of ${p}.slots[${s}] not sorted at ${hexAddr(a)}`);
      if (itemAnonVma[i]! < -1 || itemAnonVma[i]! >= nAnon) fail(`${p}.itemAnonVma[${i}]`, `anon_vma ${itemAnonVma[i]} is past the ${nAnon} there are`);
      if (itemNid[i]! >= nodes) fail(`${p}.itemNid[${i}]`, `node ${itemNid[i]} is past the ${nodes} there are`);
      // skip_age() skips at most 8 scans.
      if (itemSkips[i]! > 8) fail(`${p}.itemSkips[${i}]`, `expected at most 8 scans to skip, found ${itemSkips[i]}`);
      if (!features.smartScan && (itemAge[i] !== 0 || itemSkips[i] !== 0)) fail(`${p}.itemAge[${i}]`, `Linux ${version} has no smart scan, but rmap_item ${i} has an age`);
    }
  }

  // Stable nodes: kinds, links, nodes.
  const nodeKpfn = i32s(k.nodeKpfn, `${p}.nodeKpfn`);
  const nNodes = nodeKpfn.length;
  const nodeLinked = bytes(k.nodeLinked, `${p}.nodeLinked`);
  if (nodeLinked.length !== nNodes) fail(`${p}.nodeLinked`, `expected ${nNodes} bytes, found ${nodeLinked.length}`);
  const nodeNid = u32s(k.nodeNid, `${p}.nodeNid`, nNodes);
  const domainsImg = array(k.domains, `${p}.domains`);
  const domains = domainsImg.map((x, i) => {
    const problem = mergeDomainProblem(x);
    if (problem !== null) fail(`${p}.domains[${i}]`, problem);
    return x as string;
  });
  if (domains[0] !== '' || new Set(domains).size !== domains.length) fail(`${p}.domains`, `expected distinct names, '' first, found ${found(domains)}`);
  const nodeDomain = u32s(k.nodeDomain, `${p}.nodeDomain`, nNodes);
  for (let i = 0; i < nNodes; i++) if (nodeDomain[i]! >= domains.length) fail(`${p}.nodeDomain[${i}]`, `domain ${nodeDomain[i]} is past the ${domains.length} named`);
  const nodePruneTime = f64s(k.nodePruneTime, `${p}.nodePruneTime`, nNodes);
  const nodeHlistLength = u32s(k.nodeHlistLength, `${p}.nodeHlistLength`, nNodes);
  const stableTreesImg = array(k.stableTrees, `${p}.stableTrees`, nodes);
  const stableTrees: Uint8Array[] = [];
  let inTrees = 0;
  stableTreesImg.forEach((t, nid) => {
    const path = `${p}.stableTrees[${nid}]`;
    const shape = bytes(t, path);
    checkTreeShape(shape, path);
    if (nid >= nrNodeIds && shape.length > 0) fail(path, `only ${nrNodeIds} stable tree(s) are in use, but tree ${nid} has ${shape.length} nodes`);
    if (inTrees + shape.length > nNodes) fail(path, `${inTrees + shape.length} nodes in the trees, but only ${nNodes} stable nodes`);
    for (let i = inTrees; i < inTrees + shape.length; i++) {
      if (nodeNid[i] !== nid) fail(`${p}.nodeNid[${i}]`, `stable node ${i} is in tree ${nid} but says node ${nodeNid[i]}`);
    }
    inTrees += shape.length;
    stableTrees.push(shape);
  });
  let chains = 0;
  for (let i = 0; i < nNodes; i++) {
    const kpfn = nodeKpfn[i]!;
    const linked = nodeLinked[i]!;
    if (kpfn === -1) {
      chains++;
      if (linked !== NODE_TREE) fail(`${p}.nodeLinked[${i}]`, `chain ${i} is not in a stable tree (linked ${linked})`);
      if (nodeHlistLength[i] !== 0) fail(`${p}.nodeHlistLength[${i}]`, `chain ${i} has rmap_items`);
    } else if (kpfn < 0 || kpfn >= ctx.nrFrames) {
      fail(`${p}.nodeKpfn[${i}]`, `pfn ${kpfn >>> 0} is beyond memory (${ctx.nrFrames} frames)`);
    }
    if (linked !== NODE_UNLINKED && linked !== NODE_TREE && linked !== NODE_DUP && linked !== NODE_MIGRATE) fail(`${p}.nodeLinked[${i}]`, `expected 0 to 3, found ${linked}`);
    if (i < inTrees !== (linked === NODE_TREE)) fail(`${p}.nodeLinked[${i}]`, `stable node ${i} is ${i < inTrees ? '' : 'not '}in a stable tree, but linked ${linked}`);
    if (nodeNid[i]! >= nodes) fail(`${p}.nodeNid[${i}]`, `node ${nodeNid[i]} is past the ${nodes} there are`);
    if (!Number.isFinite(nodePruneTime[i]!)) fail(`${p}.nodePruneTime[${i}]`, `expected a time, found ${nodePruneTime[i]}`);
  }
  if (chains !== k.stableNodeChains) fail(`${p}.stableNodeChains`, `${chains} chains in the image, stable_node_chains is ${k.stableNodeChains as number}`);
  if (!features.stableNodeChains && chains !== 0) fail(`${p}.nodeKpfn`, `Linux ${version} has no stable node chains, found ${chains}`);
  let hlistTotal = 0;
  for (let i = 0; i < nNodes; i++) hlistTotal += nodeHlistLength[i]!;
  const nodeHlist = u32s(k.nodeHlist, `${p}.nodeHlist`, hlistTotal);
  const inTree = new Uint8Array(nItems);
  for (let i = 0; i < hlistTotal; i++) {
    const it = nodeHlist[i]!;
    if (it >= nItems) fail(`${p}.nodeHlist[${i}]`, `rmap_item ${it} is past the ${nItems} there are`);
    if (inTree[it] !== 0) fail(`${p}.nodeHlist[${i}]`, `rmap_item ${it} is on two hlists`);
    inTree[it] = 1;
  }
  // Chains' dups: every NODE_DUP node on exactly one chain, of the chain's tree;
  // every NODE_MIGRATE node on migrate_nodes once.
  const nodeDupCount = u32s(k.nodeDupCount, `${p}.nodeDupCount`, nNodes);
  let dupTotal = 0;
  for (let i = 0; i < nNodes; i++) {
    if (nodeDupCount[i] !== 0 && nodeKpfn[i] !== -1) fail(`${p}.nodeDupCount[${i}]`, `stable node ${i} is no chain but has ${nodeDupCount[i]} dups`);
    dupTotal += nodeDupCount[i]!;
  }
  const nodeDups = u32s(k.nodeDups, `${p}.nodeDups`, dupTotal);
  const listed = new Uint8Array(nNodes);
  for (let i = 0, d = 0; i < nNodes; i++) {
    for (let j = nodeDupCount[i]!; j > 0; j--, d++) {
      const dup = nodeDups[d]!;
      if (dup >= nNodes || nodeLinked[dup] !== NODE_DUP || listed[dup] !== 0) fail(`${p}.nodeDups[${d}]`, `stable node ${dup} is past the ${nNodes} there are, not linked as a dup, or on two chains`);
      if (nodeNid[dup] !== nodeNid[i]) fail(`${p}.nodeDups[${d}]`, `dup ${dup} says node ${nodeNid[dup]}, its chain is in tree ${nodeNid[i]}`);
      if (nodeDomain[dup] !== nodeDomain[i]) fail(`${p}.nodeDups[${d}]`, `dup ${dup} is of merge domain ${found(domains[nodeDomain[dup]!])}, its chain of ${found(domains[nodeDomain[i]!])}`);
      listed[dup] = 1;
    }
  }
  if (dupTotal !== k.stableNodeDups) fail(`${p}.stableNodeDups`, `${dupTotal} dups on the chains, stable_node_dups is ${k.stableNodeDups as number}`);
  const migrateNodes = u32s(k.migrateNodes, `${p}.migrateNodes`);
  for (let i = 0; i < migrateNodes.length; i++) {
    const m = migrateNodes[i]!;
    if (m >= nNodes || nodeLinked[m] !== NODE_MIGRATE || listed[m] !== 0) fail(`${p}.migrateNodes[${i}]`, `stable node ${m} is past the ${nNodes} there are, not linked on migrate_nodes, or listed twice`);
    listed[m] = 1;
  }
  for (let i = 0; i < nNodes; i++) {
    if ((nodeLinked[i] === NODE_DUP || nodeLinked[i] === NODE_MIGRATE) && listed[i] === 0) fail(`${p}.nodeLinked[${i}]`, `stable node ${i} is linked ${nodeLinked[i]} but on no chain and not on migrate_nodes`);
  }

  // The unstable trees.
  const unstableItemsImg = array(k.unstableItems, `${p}.unstableItems`, nodes);
  const unstableTreesImg = array(k.unstableTrees, `${p}.unstableTrees`, nodes);
  const unstableItems: Uint32Array[] = [];
  const unstableTrees: Uint8Array[] = [];
  for (let nid = 0; nid < nodes; nid++) {
    const path = `${p}.unstableItems[${nid}]`;
    const list = u32s(unstableItemsImg[nid], path);
    const shape = bytes(unstableTreesImg[nid], `${p}.unstableTrees[${nid}]`);
    if (shape.length !== list.length) fail(`${p}.unstableTrees[${nid}]`, `${shape.length} shape bytes for ${list.length} nodes`);
    checkTreeShape(shape, `${p}.unstableTrees[${nid}]`);
    if (nid >= nrNodeIds && shape.length > 0) fail(`${p}.unstableTrees[${nid}]`, `only ${nrNodeIds} unstable tree(s) are in use, but tree ${nid} has ${shape.length} nodes`);
    for (let i = 0; i < list.length; i++) {
      const it = list[i]!;
      if (it >= nItems) fail(`${path}[${i}]`, `rmap_item ${it} is past the ${nItems} there are`);
      if (inTree[it] !== 0) fail(`${path}[${i}]`, `rmap_item ${it} is in two places (trees or hlists)`);
      if (itemNid[it] !== nid) fail(`${path}[${i}]`, `rmap_item ${it} is in unstable tree ${nid} but says node ${itemNid[it]}`);
      inTree[it] = 1;
    }
    unstableItems.push(list);
    unstableTrees.push(shape);
  }

  const scanSlot = int(k.scanSlot, `${p}.scanSlot`, -1, slotsImg.length - 1);
  finite(k.scanAddress, `${p}.scanAddress`);
  const scanLink = int(k.scanLink, `${p}.scanLink`, -1, nItems - 1);
  if (scanLink >= 0 && (scanSlot < 0 || scanLink < slotFirst[scanSlot]! || scanLink >= slotFirst[scanSlot + 1]!)) {
    fail(`${p}.scanLink`, `rmap_item ${scanLink} is not on the scanned mm_slot's list`);
  }
  const kd = obj(k.ksmd, `${p}.ksmd`);
  if (kd.wakeAt !== null) finite(kd.wakeAt, `${p}.ksmd.wakeAt`);
  int(kd.batches, `${p}.ksmd.batches`, 0, Number.MAX_SAFE_INTEGER);
  return {
    decoded: {
      img: k as unknown as KsmImage,
      profile,
      knobs,
      itemAddress,
      itemFlags,
      itemChecksum,
      itemAnonVma,
      itemNid,
      itemAge,
      itemSkips,
      nodeKpfn,
      nodeLinked,
      nodeNid,
      domains,
      nodeDomain,
      nodePruneTime,
      nodeHlistLength,
      nodeHlist,
      nodeDupCount,
      nodeDups,
      migrateNodes,
      stableTrees,
      unstableItems,
      unstableTrees,
    },
    mappings: nNodes,
  };
}

// ---- restoring ----------------------------------------------------------------------------

/**
 * Set KSM's state, on an engine of the image's version fresh from its constructor
 * whose kernel's mm state has just been restored; returns the stable nodes (what KSM
 * pages' frames map).
 */
function restoreKsm(ksm: Ksm, ksmd: Ksmd, d: DecodedKsm, ctx: ImageRestoreContext): StableNode[] {
  const ki = d.img;
  if (ksm.profile !== d.profile) bug(`restoreKsm: a Linux ${ksm.profile.version} engine given an image of Linux ${d.profile.version}`);
  const ri = ksm.rmapItemCache;
  const sn = ksm.stableNodeCache;
  if (ri.count !== 0 || sn.count !== 0) bug('restoreKsm: the engine already has records');
  const head = ksm.mmHead;
  const slots: MmSlot[] = [];
  const items = new Int32Array(d.itemAddress.length);
  let n = 0;
  for (const si of ki.slots) {
    const mm = ctx.mms[si.mm]!;
    const slot = allocMmSlot(ksm, mm);
    slot.prev = head.prev;
    slot.next = head;
    head.prev.next = slot;
    head.prev = slot;
    ksm.mmSlots.set(mm, slot);
    let link: RmapItem = NULL;
    for (let j = 0; j < si.items; j++, n++) {
      const it = ri.alloc(slot.mmId, d.itemAddress[n]!);
      const flags = d.itemFlags[n]!;
      ri.flags[it] = flags;
      ri.oldchecksum[it] = d.itemChecksum[n]!;
      // anon_vma and nid share a field: the one the flags make valid is restored.
      const av = d.itemAnonVma[n]!;
      if ((flags & STABLE_FLAG) !== 0 && av >= 0) holdAnonVmaNumber(ksm, it, ctx.anonVmas[av]!);
      else if ((flags & UNSTABLE_FLAG) !== 0) ri.nid[it] = d.itemNid[n]!;
      ri.age[it] = d.itemAge[n]!;
      ri.remainingSkips[it] = d.itemSkips[n]!;
      if (link === NULL) slot.rmapList = it;
      else ri.rmapList[link] = it;
      link = it;
      items[n] = it;
    }
    slots.push(slot);
  }
  const nodes: StableNode[] = new Array<StableNode>(d.nodeKpfn.length);
  for (let i = 0, h = 0; i < nodes.length; i++) {
    const kpfn = d.nodeKpfn[i]!;
    const node = sn.alloc(kpfn);
    const len = d.nodeHlistLength[i]!;
    sn.rmapHlistLen[node] = kpfn === -1 ? STABLE_NODE_CHAIN : len;
    if (kpfn === -1) sn.chainPruneTime[node] = d.nodePruneTime[i]!;
    sn.linked[node] = d.nodeLinked[i]!;
    sn.nid[node] = d.nodeNid[i]!;
    sn.domain[node] = ksm.domainId(d.domains[d.nodeDomain[i]!]!);
    let prev: RmapItem = NULL;
    for (let j = len; j > 0; j--, h++) {
      const it = items[d.nodeHlist[h]!]!;
      ri.head[it] = node;
      ri.hlistPrev[it] = prev;
      if (prev === NULL) sn.hlist[node] = it;
      else ri.hlistNext[prev] = it;
      prev = it;
    }
    nodes[i] = node;
  }
  let first = 0;
  d.stableTrees.forEach((shape, nid) => {
    buildTree(sn, ksm.stableRoots[nid]!, nodes.slice(first, first + shape.length), shape);
    first += shape.length;
  });
  for (let i = 0, k = 0; i < nodes.length; i++) {
    const chain = nodes[i]!;
    let prev: StableNode = NULL;
    for (let j = d.nodeDupCount[i]!; j > 0; j--, k++) {
      const dup = nodes[d.nodeDups[k]!]!;
      sn.chain[dup] = chain;
      sn.dupPrev[dup] = prev;
      if (prev === NULL) sn.dupHead[chain] = dup;
      else sn.dupNext[prev] = dup;
      prev = dup;
    }
  }
  let prevMigrate: StableNode = NULL;
  for (let i = 0; i < d.migrateNodes.length; i++) {
    const node = nodes[d.migrateNodes[i]!]!;
    sn.migratePrev[node] = prevMigrate;
    if (prevMigrate === NULL) ksm.migrateNodes = node;
    else sn.migrateNext[prevMigrate] = node;
    prevMigrate = node;
  }
  d.unstableTrees.forEach((shape, nid) => {
    const list = d.unstableItems[nid]!;
    const unstable = new Int32Array(list.length);
    for (let i = 0; i < unstable.length; i++) unstable[i] = items[list[i]!]!;
    buildTree(ri, ksm.unstableRoots[nid]!, unstable, shape);
  });
  ksm.nrNodeIds = ki.nrNodeIds;
  ksm.scanSlot = ki.scanSlot < 0 ? head : slots[ki.scanSlot]!;
  ksm.scanLink = ki.scanLink < 0 ? NULL : items[ki.scanLink]!;
  ksm.scanAddress = ki.scanAddress;
  ksm.seqnr = ki.seqnr;
  ksm.pagesShared = ki.pagesShared;
  ksm.pagesSharing = ki.pagesSharing;
  ksm.pagesUnshared = ki.pagesUnshared;
  ksm.rmapItems = items.length;
  ksm.pagesScanned = ki.pagesScanned;
  ksm.pagesSkipped = ki.pagesSkipped;
  ksm.ksmZeroPages = ki.ksmZeroPages;
  ksm.stableNodeChains = ki.stableNodeChains;
  ksm.stableNodeDups = ki.stableNodeDups;
  for (const z of ki.zeroPages) ksm.mmZeroPages.set(ctx.mms[z.mm]!, z.pages);
  KSM_WORK_COUNTERS.forEach((c, i) => (ksm.work[c] = ki.work[i]!));
  for (const f of KNOB_FIELDS) setKnobField(ksm, f, d.knobs[f]);
  ksm.offlineLock = ki.offlineLock;
  ksm.advisorStartScan = ki.advisor.startScan;
  ksm.advisorScanTime = ki.advisor.scanTime;
  ksm.advisorChange = ki.advisor.change;
  ksm.advisorCpuTime = ki.advisor.cpuTime;
  ksm.ksmdCpuTime = ki.advisor.ksmdCpuTime;
  ksmd.restoreState(ki.ksmd);
  return nodes;
}

/**
 * An rmap_item of a restored image holds its anon_vma: the number, given on first
 * sight, without a new reference (the mm's image restored ksm_refcount already).
 */
function holdAnonVmaNumber(ksm: Ksm, item: RmapItem, av: AnonVma): void {
  if (av.ksmId === 0) av.ksmId = ksm.anonVmaTable.add(av);
  ksm.rmapItemCache.anonVma[item] = av.ksmId;
}

/** What checking an image needs of KSM's part before any kernel is built (src/ksm/kernel.ts). */
export const KSM_IMAGE_CHECKER: ImagePartChecker = { name: 'ksm', check: checkKsmImage };
