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
import { ULONG_MAX, UINT_MAX } from '../mm/sysfs.js';
import type { Ksm } from './ksm.js';
import type { Ksmd } from './ksmd.js';
import { MmSlot, NODE_TREE, StableNode, newRmapItem, type RmapItem } from './structs.js';

/*
 * KSM's part of the kernel image (src/ksm/kernel.ts composes the whole kernel's).
 *
 * The mm saves and restores its own state (src/mm/snapshot.ts); KSM registers this
 * part with the kernel (HostKernel.registerImagePart) for what mm/ksm.c and ksmd
 * hold: mm_slots in list order with their rmap_lists, every rmap_item's fields,
 * stable nodes with their hlists in order, both trees' exact shape and colours (a
 * pre-order walk, one byte per node: left child, right child, red), the scan cursor,
 * the counters and knobs, ksmd's next wakeup and batch count. It names the mm's
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
 */

/** KSM's part of the kernel image (KernelImage.parts.ksm). */
export interface KsmImage {
  pagesShared: number;
  pagesSharing: number;
  pagesUnshared: number;
  pagesScanned: number;
  seqnr: number;
  /** Decimal: an unsigned long. */
  maxKernelPages: string;
  pagesToScan: number;
  sleepMillisecs: number;
  run: number;
  offlineLock: boolean;
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
  /** Per stable node: u32 kpfn, u32 hlist length; the hlists concatenated (u32 item indices, first first). */
  nodeKpfn: Uint8Array;
  nodeHlistLength: Uint8Array;
  nodeHlist: Uint8Array;
  /** The stable tree: stable nodes 0..n-1 in pre-order, one shape byte each. */
  stableTree: Uint8Array;
  /** The unstable tree: u32 item indices in pre-order, and a shape byte each. */
  unstableItems: Uint8Array;
  unstableTree: Uint8Array;
  ksmd: { wakeAt: number | null; batches: number };
}

/** A KsmImage checked against its kernel image: its binary fields as typed arrays. */
interface DecodedKsm {
  img: KsmImage;
  itemAddress: Float64Array;
  itemFlags: Uint32Array;
  itemChecksum: Uint32Array;
  itemAnonVma: Int32Array;
  nodeKpfn: Uint32Array;
  nodeHlistLength: Uint32Array;
  nodeHlist: Uint32Array;
  stableTree: Uint8Array;
  unstableItems: Uint32Array;
  unstableTree: Uint8Array;
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
  if (ksm.mmHead.rmapList !== null) inconsistent('the mm_slot list head has rmap_items');

  // mm_slots and rmap_items in list order. An mm_slot's mm is numbered after the
  // processes': it may be the mm of a process that has exited, which ksmd has not
  // let go of yet.
  const slotList: MmSlot[] = [];
  let nItems = 0;
  for (let s = ksm.mmHead.next; s !== ksm.mmHead; s = s.next) {
    slotList.push(s);
    for (let it = s.rmapList; it !== null; it = it.rmapList) nItems++;
  }
  const itemIndex = new Map<RmapItem, number>();
  const itemAddress = new Float64Array(nItems);
  const itemFlags = new Uint32Array(nItems);
  const itemChecksum = new Uint32Array(nItems);
  const itemAnonVma = new Int32Array(nItems);
  const slots: { mm: number; items: number }[] = [];
  const slotFirst: number[] = [];
  let withHead = 0;
  let n = 0;
  for (const s of slotList) {
    slotFirst.push(n);
    const first = n;
    for (let it = s.rmapList; it !== null; it = it.rmapList) {
      if (it.mm !== s.mm) inconsistent(`rmap_item ${ksm.describeItem(it)} is on the rmap_list of ${s.mm!.owner}`);
      itemIndex.set(it, n);
      itemAddress[n] = it.address;
      itemFlags[n] = it.flags;
      itemChecksum[n] = it.oldchecksum;
      itemAnonVma[n] = it.anonVma === null ? -1 : ctx.anonVma(it.anonVma);
      if (it.head !== null) withHead++;
      n++;
    }
    slots.push({ mm: ctx.mm(s.mm!), items: n - first });
  }

  // Stable nodes: the stable tree's in pre-order (its nodes are stable nodes
  // 0..len-1), then those only frames still point at.
  const nodes = new Numbering<StableNode>();
  const stableTree = treeShape(ksm.rootStableTree, (node) => nodes.of(node as StableNode), 'stable tree', inconsistent);
  for (const m of ctx.frameMappings) if (m instanceof StableNode) nodes.of(m);
  // The unstable tree, over rmap_items.
  const unstableItems = new IntList();
  const unstableTree = treeShape(
    ksm.rootUnstableTree,
    (node) => {
      const i = itemIndex.get(node as RmapItem);
      if (i === undefined) inconsistent(`the unstable tree holds rmap_item ${ksm.describeItem(node as RmapItem)}, which is on no rmap_list`);
      unstableItems.push(i);
    },
    'unstable tree',
    inconsistent,
  );

  // The hlists of the stable nodes.
  const nodeHlist = new IntList();
  const nodeLengths = new Uint32Array(nodes.list.length);
  const nodeKpfn = new Uint32Array(nodes.list.length);
  let inHlists = 0;
  for (let i = 0; i < nodes.list.length; i++) {
    const node = nodes.list[i]!;
    let len = 0;
    let prev: RmapItem | null = null;
    for (let it = node.hlist; it !== null; it = it.hlistNext) {
      const idx = itemIndex.get(it);
      if (idx === undefined) inconsistent(`stable node kpfn=${node.kpfn} lists rmap_item ${ksm.describeItem(it)}, which is on no rmap_list`);
      if (it.head !== node || it.hlistPrev !== prev) inconsistent(`hlist of stable node kpfn=${node.kpfn} broken at ${ksm.describeItem(it)}`);
      if (++len > nItems) inconsistent(`hlist of stable node kpfn=${node.kpfn} has a cycle`);
      nodeHlist.push(idx);
      prev = it;
    }
    nodeLengths[i] = len;
    nodeKpfn[i] = node.kpfn;
    inHlists += len;
  }
  if (inHlists !== withHead) inconsistent(`${withHead} rmap_items have a stable node, ${inHlists} are on stable nodes' hlists`);

  // The scan cursor.
  let scanSlot = -1;
  let scanLink = -1;
  if (ksm.scanSlot !== ksm.mmHead) {
    scanSlot = slotList.indexOf(ksm.scanSlot);
    if (scanSlot < 0) inconsistent('the scan cursor is on an mm_slot that is not listed');
    if (ksm.scanLink !== ksm.scanSlot) {
      const i = itemIndex.get(ksm.scanLink as RmapItem);
      if (i === undefined || i < slotFirst[scanSlot]! || i >= slotFirst[scanSlot]! + slots[scanSlot]!.items) {
        inconsistent("the scan cursor links to an rmap_item that is not on its mm_slot's list");
      }
      scanLink = i;
    }
  }

  const image: KsmImage = {
    pagesShared: ksm.pagesShared,
    pagesSharing: ksm.pagesSharing,
    pagesUnshared: ksm.pagesUnshared,
    pagesScanned: ksm.pagesScanned,
    seqnr: ksm.seqnr,
    maxKernelPages: ksm.maxKernelPages.toString(),
    pagesToScan: ksm.pagesToScan,
    sleepMillisecs: ksm.sleepMillisecs,
    run: ksm.run,
    offlineLock: ksm.offlineLock,
    slots,
    scanSlot,
    scanAddress: ksm.scanAddress,
    scanLink,
    itemAddress: bytesOf(itemAddress),
    itemFlags: bytesOf(itemFlags),
    itemChecksum: bytesOf(itemChecksum),
    itemAnonVma: bytesOf(itemAnonVma),
    nodeKpfn: bytesOf(nodeKpfn),
    nodeHlistLength: bytesOf(nodeLengths),
    nodeHlist: nodeHlist.done(),
    stableTree,
    unstableItems: unstableItems.done(),
    unstableTree,
    ksmd: ksmd.saveState(),
  };
  const nodeIndex = nodes.index;
  return { image, mappings: nodes.list.length, mappingIndex: (o) => nodeIndex.get(o as StableNode) ?? -1 };
}

// ---- checking an untrusted image ---------------------------------------------------------

/** That an untrusted KsmImage can be restored (lib/snapshot.ts fail() names the field otherwise). */
function checkKsmImage(x: unknown, ctx: ImageCheckContext): ImagePartChecked<DecodedKsm> {
  const p = ctx.path;
  const k = obj(x, p);
  for (const key of ['pagesShared', 'pagesSharing', 'pagesUnshared', 'seqnr', 'pagesScanned'] as const) {
    int(k[key], `${p}.${key}`, 0, Number.MAX_SAFE_INTEGER);
  }
  const mkp = str(k.maxKernelPages, `${p}.maxKernelPages`);
  if (!/^[0-9]{1,20}$/.test(mkp) || BigInt(mkp) > ULONG_MAX) fail(`${p}.maxKernelPages`, `expected an unsigned long in decimal, found ${found(mkp)}`);
  int(k.pagesToScan, `${p}.pagesToScan`, 0, UINT_MAX);
  int(k.sleepMillisecs, `${p}.sleepMillisecs`, 0, UINT_MAX);
  int(k.run, `${p}.run`, 0, 2);
  bool(k.offlineLock, `${p}.offlineLock`);
  const nMms = ctx.mms;
  const nAnon = ctx.anonVmas;
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
  for (let s = 0; s < slotsImg.length; s++) {
    for (let i = slotFirst[s]!; i < slotFirst[s + 1]!; i++) {
      const a = itemAddress[i]!;
      if (!Number.isSafeInteger(a) || a < 0 || a % PAGE_SIZE !== 0 || a >= TASK_SIZE) fail(`${p}.itemAddress[${i}]`, `bad address ${a}`);
      if (i > slotFirst[s]! && a <= itemAddress[i - 1]!) fail(`${p}.itemAddress[${i}]`, `rmap_list of ${p}.slots[${s}] not sorted at ${hexAddr(a)}`);
      if (itemAnonVma[i]! < -1 || itemAnonVma[i]! >= nAnon) fail(`${p}.itemAnonVma[${i}]`, `anon_vma ${itemAnonVma[i]} is past the ${nAnon} there are`);
    }
  }
  const nodeKpfn = u32s(k.nodeKpfn, `${p}.nodeKpfn`);
  const nNodes = nodeKpfn.length;
  for (let i = 0; i < nNodes; i++) if (nodeKpfn[i]! >= ctx.nrFrames) fail(`${p}.nodeKpfn[${i}]`, `pfn ${nodeKpfn[i]} is beyond memory (${ctx.nrFrames} frames)`);
  const nodeHlistLength = u32s(k.nodeHlistLength, `${p}.nodeHlistLength`, nNodes);
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
  const stableTree = bytes(k.stableTree, `${p}.stableTree`);
  if (stableTree.length > nNodes) fail(`${p}.stableTree`, `${stableTree.length} nodes in the tree, but only ${nNodes} stable nodes`);
  checkTreeShape(stableTree, `${p}.stableTree`);
  const unstableItems = u32s(k.unstableItems, `${p}.unstableItems`);
  const unstableTree = bytes(k.unstableTree, `${p}.unstableTree`);
  if (unstableTree.length !== unstableItems.length) fail(`${p}.unstableTree`, `${unstableTree.length} shape bytes for ${unstableItems.length} nodes`);
  checkTreeShape(unstableTree, `${p}.unstableTree`);
  for (let i = 0; i < unstableItems.length; i++) {
    const it = unstableItems[i]!;
    if (it >= nItems) fail(`${p}.unstableItems[${i}]`, `rmap_item ${it} is past the ${nItems} there are`);
    if (inTree[it] !== 0) fail(`${p}.unstableItems[${i}]`, `rmap_item ${it} is in two places (trees or hlists)`);
    inTree[it] = 1;
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
      itemAddress,
      itemFlags,
      itemChecksum,
      itemAnonVma,
      nodeKpfn,
      nodeHlistLength,
      nodeHlist,
      stableTree,
      unstableItems,
      unstableTree,
    },
    mappings: nNodes,
  };
}

// ---- restoring ----------------------------------------------------------------------------

/**
 * Set KSM's state, on an engine fresh from its constructor whose kernel's mm state
 * has just been restored; returns the stable nodes (what KSM pages' frames map).
 */
function restoreKsm(ksm: Ksm, ksmd: Ksmd, d: DecodedKsm, ctx: ImageRestoreContext): StableNode[] {
  const ki = d.img;
  const head = ksm.mmHead;
  const slots: MmSlot[] = [];
  const items: RmapItem[] = new Array<RmapItem>(d.itemAddress.length);
  let n = 0;
  for (const si of ki.slots) {
    const mm = ctx.mms[si.mm]!;
    const slot = new MmSlot(mm);
    slot.prev = head.prev;
    slot.next = head;
    head.prev.next = slot;
    head.prev = slot;
    ksm.mmSlots.set(mm, slot);
    let link: MmSlot | RmapItem = slot;
    for (let j = 0; j < si.items; j++, n++) {
      const it = newRmapItem(mm, d.itemAddress[n]!);
      it.flags = d.itemFlags[n]!;
      it.oldchecksum = d.itemChecksum[n]!;
      const av = d.itemAnonVma[n]!;
      it.anonVma = av < 0 ? null : ctx.anonVmas[av]!;
      link.rmapList = it;
      link = it;
      items[n] = it;
    }
    slots.push(slot);
  }
  const nodes: StableNode[] = new Array<StableNode>(d.nodeKpfn.length);
  for (let i = 0, h = 0; i < nodes.length; i++) {
    const node = new StableNode(d.nodeKpfn[i]!);
    node.rmapHlistLen = d.nodeHlistLength[i]!;
    node.linked = NODE_TREE;
    let prev: RmapItem | null = null;
    for (let j = d.nodeHlistLength[i]!; j > 0; j--, h++) {
      const it = items[d.nodeHlist[h]!]!;
      it.head = node;
      it.hlistPrev = prev;
      if (prev === null) node.hlist = it;
      else prev.hlistNext = it;
      prev = it;
    }
    nodes[i] = node;
  }
  buildTree(ksm.rootStableTree, nodes, d.stableTree);
  const unstable: RmapItem[] = new Array<RmapItem>(d.unstableItems.length);
  for (let i = 0; i < unstable.length; i++) unstable[i] = items[d.unstableItems[i]!]!;
  buildTree(ksm.rootUnstableTree, unstable, d.unstableTree);
  ksm.scanSlot = ki.scanSlot < 0 ? head : slots[ki.scanSlot]!;
  ksm.scanLink = ki.scanLink < 0 ? ksm.scanSlot : items[ki.scanLink]!;
  ksm.scanAddress = ki.scanAddress;
  ksm.seqnr = ki.seqnr;
  ksm.pagesShared = ki.pagesShared;
  ksm.pagesSharing = ki.pagesSharing;
  ksm.pagesUnshared = ki.pagesUnshared;
  ksm.rmapItems = items.length;
  ksm.pagesScanned = ki.pagesScanned;
  ksm.maxKernelPages = BigInt(ki.maxKernelPages);
  ksm.pagesToScan = ki.pagesToScan;
  ksm.sleepMillisecs = ki.sleepMillisecs;
  ksm.run = ki.run;
  ksm.offlineLock = ki.offlineLock;
  ksmd.restoreState(ki.ksmd);
  return nodes;
}

/** What checking an image needs of KSM's part before any kernel is built (src/ksm/kernel.ts). */
export const KSM_IMAGE_CHECKER: ImagePartChecker = { name: 'ksm', check: checkKsmImage };
