import { InvariantError, KernelError, bug } from '../lib/errors.js';
import {
  IntList,
  LITTLE_ENDIAN,
  Numbering,
  RunWriter,
  array,
  bool,
  bytes,
  bytesOf,
  expandRuns,
  f64s,
  fail,
  finite,
  found,
  i32s,
  int,
  lowerBound,
  obj,
  str,
  u32s,
  ImageError,
} from '../lib/snapshot.js';
import { checkThpImage, type ThpImage } from './huge-memory.js';
import {
  MAX_MEMORY_MIB,
  MAX_PTE_PAYLOAD,
  PAGE_SIZE,
  PG_BUDDY,
  PG_DIRTY,
  PG_LRU,
  PG_OFFLINE,
  PG_RESERVED,
  PTE_MIGRATION,
  PTE_NONE,
  PTE_PRESENT,
  PTE_SPECIAL,
  PTE_SWAP,
  PTE_KIND_MASK,
  TASK_SIZE,
  hexAddr,
  ptePayload,
} from './constants.js';
import { MAX_BLOCK_MIB, MAX_SWAP_MIB, VMSTAT_KEYS, mergeDomainProblem, type HostKernel, type KernelOptions, type VmStat } from './kernel.js';
import { MmStruct, PMD_SIZE, PTRS_PER_PTE } from './mm.js';
import { lruListOfFlags, type MemoryBlock, type PageMapping, type PhysMem } from './physmem.js';
import { Process } from './process.js';
import { ContentChunks, ContentTable, type ContentsImage } from './snapshot-contents.js';
import type { DecodedSwap, SwapImage } from './swap.js';
import { AnonVma, ShmemFile, Vma } from './vma.js';

/*
 * Images of the simulated kernel: saveKernelImage() turns a HostKernel into a
 * KernelImage of plain data, restoreKernelImage() puts a new kernel (built with the
 * image's options) in exactly the saved state, so that it continues as the saved one
 * would have: the same operations afterwards give the same statistics, the same
 * bytes, the same pfns and the same swap slots.
 *
 * This file saves what the mm owns. A layer above it that keeps state of its own
 * registers a part (HostKernel.registerImagePart, like registerInvariantChecker):
 * its save, the check of an untrusted copy, and its restore step. KSM registers its
 * mm_slots, rmap_items, trees and ksmd (src/ksm/snapshot.ts); the mm never sees
 * what is inside a part. A part names the mm's objects it refers to by their index
 * in the image (ImageSaveContext.mm, .anonVma), and the frames that map one of its
 * objects (a KSM page's stable node) name it by the index the part gives it.
 *
 * The road not taken, and what it cost: format 1 wrote the whole kernel from
 * src/ksm, which was simpler to start with but made KSM read and write every mm
 * structure, forced mm fields public "for snapshot.ts only", and copied the mm's
 * bit layouts. Now each layer saves what it owns and knows only the indices of the
 * others' objects, and a layer added later (huge pages, a capture's state) adds a
 * part without touching this file.
 *
 * What the mm keeps, and how (objects refer to each other by their index in a table,
 * never by reference):
 *
 * - Frames. Only frames in use carry metadata and contents. Which frames are free
 *   is said by the free lists, kept per block in their exact order (the allocator
 *   hands out the head first) as runs of consecutive pfns; a frame of an online
 *   block that is on no free list is in use, and the per-frame arrays (flags, count,
 *   mapcount, mapping, index, content) list the frames in use in ascending pfn
 *   order. Frames of an offline block are all free and on no list. Free frames
 *   keep nothing else: their flags, counts and mapping are what freeing sets, and
 *   their bytes are never read before being written (every allocation either zeroes
 *   the frame or copies a page over it; a free frame holds the zero content).
 * - Contents: each distinct 4 KiB page once (snapshot-contents.ts); frames and swap
 *   slots refer to it by index. Numbered frames by pfn first, then swap slots by offset.
 * - Swap: every slot in use, its count and swap-cache frame and its bytes (not for
 *   a slot whose swap-cache page is dirty: those bytes are stale), and the slot
 *   allocator's cursor (SwapDevice.saveImage).
 * - The LRU lists, in order, as runs of pfns.
 * - Objects: anon_vmas (their vma lists in order, ksm_refcount, freed), shmem files
 *   (pages in insertion order), mm_structs with their areas and page tables (tables
 *   in the Map's order, empty ones too), processes in kernel.processes' order.
 * - Simulated time, the pid counter, the PRNG state, vmstat (HostKernel.saveState),
 *   contentsEpoch.
 * - NUMA: the options' `nodes`, each block's node (which `nodes` decides; an image
 *   whose blocks say otherwise is refused) and each mm's preferred node, from which
 *   its faults allocate (physmem.ts).
 *
 * What is dropped, and why that changes no decision:
 *
 * - Memos of pure functions of page contents: per-frame checksums, the mm's
 *   one-entry page-table cache. A restored kernel recomputes them.
 * - Counts the image implies: the frames in use (the free lists say), the swap
 *   device's size (the options say). Recomputed on restore.
 * - Object ids (mm, anon_vma, shmem): module-wide counters, used in messages only.
 *
 * Not savable: pins (get_user_pages references held by the caller: saving throws
 * EBUSY naming them), and a kernel in the middle of an operation (a page locked by
 * the model itself never outlives a call, so there is none at rest).
 */

/**
 * Version 4: frames' contents from the content store, no neverUsed runs (a free frame
 * holds the zero content). Version 3 added NUMA nodes (the options' `nodes`, each
 * block's node, each mm's node) and KSM's part naming its kernel version with the
 * state of every version (6.x's chains, zero pages, smart scan, advisor, per-node
 * trees). 2 had each layer's state in its own part, but kernels
 * of 2.6.33 only; 1 saved the whole kernel from src/ksm. Older versions are refused.
 */
export const KERNEL_IMAGE_VERSION = 4;

/** mem.mapping codes: index * 4 + kind. MAP_PART indexes the parts' objects (each part's mappings, parts in registration order, one after the other). */
const MAP_NONE = 0;
const MAP_ANON = 1;
const MAP_PART = 2;
const MAP_SHMEM = 3;

const TWO_POW_32 = 0x100000000;

// ---- the image -----------------------------------------------------------------------

/** The frames: metadata of those in use, free lists, LRU lists. */
export interface MemImage {
  contentsEpoch: number;
  /**
   * One per memory block. `free`: the block's free list, head first, as runs (lib/snapshot.ts
   * RunWriter). Empty for an offline block. `node`: its NUMA node, which the options'
   * `nodes` decide (physmem.ts); kept so that an image says where every frame is.
   */
  blocks: { online: boolean; isolated: boolean; node: number; free: Uint8Array }[];
  /** Per frame in use (every frame of an online block that is on no free list), in ascending pfn order: u32 page flags. */
  flags: Uint8Array;
  /** i32 _count. */
  count: Uint8Array;
  /** i32 _mapcount (-1: unmapped). */
  mapcount: Uint8Array;
  /** u32 mapping: 0 none, else index * 4 + 1 (anonVmas), 2 (the parts' objects), 3 (shmems). */
  mapping: Uint8Array;
  /** f64 page->index. */
  index: Uint8Array;
  /** u32 index into the content table. */
  content: Uint8Array;
  /** page->private where not 0: u32 pairs (pfn, value). */
  private: Uint8Array;
  /** LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_UNEVICTABLE, head first, as runs like `free`. */
  lru: Uint8Array[];
}

export interface AnonVmaImage {
  /** Global vma indices (mms in order, each mm's vmas in order), in anon_vma list order. */
  vmas: number[];
  ksmRefcount: number;
  freed: boolean;
}

export interface ShmemImage {
  users: number;
  /** f64 page indices and u32 frames, in the pages Map's order. */
  indices: Uint8Array;
  pfns: Uint8Array;
}

export interface VmaImage {
  start: number;
  end: number;
  flags: number;
  pgoff: number;
  /** Index into anonVmas, or -1. */
  anonVma: number;
  /** Index into shmems, or -1. */
  shmem: number;
}

export interface MmImage {
  owner: string;
  mmUsers: number;
  mmCount: number;
  flags: number;
  /** The NUMA node its pages come from first (MmStruct.node). */
  node: number;
  /** Its KSM merge domain (MmStruct.ksmMergeDomain; '' the common one). */
  mergeDomain: string;
  vmas: VmaImage[];
  /** f64 pmd numbers (address / 2 MiB) of the page tables, in the Map's order. */
  pmds: Uint8Array;
  /** f64 ptes (constants.ts: wider than 32 bits), 512 per table, tables in `pmds` order. */
  ptes: Uint8Array;
}

export interface ProcessImage {
  pid: number;
  name: string;
  /** Index into mms. */
  mm: number;
}

/**
 * The whole kernel as plain data (see the notes at the top of src/mm/snapshot.ts).
 * Nothing but numbers, strings, booleans, null, arrays, plain objects and Uint8Array.
 */
export interface KernelImage {
  imageVersion: number;
  options: Required<Omit<KernelOptions, 'thp'>>;
  now: number;
  nextPid: number;
  prng: number[];
  vmstat: VmStat;
  /** Kernels with transparent huge pages only: their mode and counters. */
  thp?: ThpImage;
  mem: MemImage;
  contents: ContentsImage;
  swap: SwapImage | null;
  anonVmas: AnonVmaImage[];
  shmems: ShmemImage[];
  mms: MmImage[];
  processes: ProcessImage[];
  /** Each registered part's own image, by its name (KSM's is `ksm`). */
  parts: Record<string, unknown>;
}

// ---- the parts of the layers above --------------------------------------------------------

/**
 * A layer's part of the kernel image (HostKernel.registerImagePart): v86's
 * get_state/set_state for one device. `D` is what its check makes of an untrusted
 * copy, and what its restore step builds from.
 *
 * - save(): its image, reading the layer only. It names the mm's objects it holds
 *   through `ctx` (numbering those no process has, such as the mm of an exited
 *   process that an mm_slot still holds), and numbers its objects that frames may
 *   map (page->mapping of a KSM page: its stable node), every one of its own in
 *   ctx.frameMappings included.
 * - check(): that an untrusted copy can be restored, throwing ImageError (lib/
 *   snapshot.ts fail()) with a path under ctx.path; it declares which mms it holds
 *   (ctx.holdMm) and how many objects frames may map. What it accepts, restore must
 *   build without failing.
 * - restore(): on a kernel fresh from its constructor whose mm state has just been
 *   restored, set the layer's state; returns its objects frames map, by index.
 */
export interface KernelImagePart<D> {
  readonly name: string;
  save(ctx: ImageSaveContext): ImagePartSaved;
  check(x: unknown, ctx: ImageCheckContext): ImagePartChecked<D>;
  restore(d: D, ctx: ImageRestoreContext): readonly PageMapping[];
}

/** What checking an image needs of a part: its name and its check (no kernel). */
export type ImagePartChecker = Pick<KernelImagePart<unknown>, 'name' | 'check'>;

export interface ImagePartSaved {
  image: unknown;
  /** How many of its objects frames may map: they are numbered 0..mappings-1. */
  mappings: number;
  /** The number of such an object, or -1 for an object that is not the part's. */
  mappingIndex(obj: PageMapping): number;
}

export interface ImagePartChecked<D> {
  decoded: D;
  /** How many objects frames may map (the length of what restore() returns). */
  mappings: number;
}

export interface ImageSaveContext {
  /** The index of `mm` in the image's mms, numbering it if no process has it. */
  mm(mm: MmStruct): number;
  /** The index of `av` in the image's anon_vmas, numbering it if new. */
  anonVma(av: AnonVma): number;
  /** What frames map that is no anon_vma or shmem file, in pfn order (an object mapped by several frames is listed for each). */
  readonly frameMappings: readonly PageMapping[];
  /** The kernel is not in a state that can be saved: throws InvariantError. */
  inconsistent(msg: string): never;
}

export interface ImageCheckContext {
  /** Where the part lies in the image, for messages: `parts.ksm`. */
  readonly path: string;
  readonly nrFrames: number;
  /** NUMA nodes (the options' `nodes`). */
  readonly nodes: number;
  readonly mms: number;
  readonly anonVmas: number;
  /** The part holds mm `i` (an mm no process has must be held by some part). */
  holdMm(i: number): void;
}

export interface ImageRestoreContext {
  readonly mms: readonly MmStruct[];
  readonly anonVmas: readonly AnonVma[];
}

// ---- saving --------------------------------------------------------------------------------

function inconsistent(msg: string): never {
  throw new InvariantError(`saveKernel: the kernel is inconsistent, not saved: ${msg}`);
}

/**
 * The whole kernel as a KernelImage: the mm's state, then each registered part's.
 * Reads the kernel only (no memo is filled, no counter moves). Throws KernelError
 * EBUSY while any get_user_pages pin is held.
 */
export function saveKernelImage(k: HostKernel): KernelImage {
  if (!LITTLE_ENDIAN) throw new KernelError('EINVAL', 'kernel snapshots need a little-endian host');
  if (k.pins.size > 0) {
    const pins = [...k.pins].sort((a, b) => a[0] - b[0]).map(([pfn, n]) => (n > 1 ? `${pfn} (x${n})` : String(pfn)));
    throw new KernelError('EBUSY', `cannot save the kernel while pages are pinned (get_user_pages): pfn ${pins.join(', ')}; release the pins first`);
  }
  const mem = k.mem;
  // The image lists every frame: blocks never used get their (free) metadata first.
  mem.initAllBlocks();
  const mms = new Numbering<MmStruct>();
  const anonVmas = new Numbering<AnonVma>();
  const shmems = new Numbering<ShmemFile>();

  // Processes, in kernel.processes' order: their mms are numbered first.
  const processes: ProcessImage[] = [];
  for (const p of k.processes.values()) {
    if (!p.alive) inconsistent(`process ${p.name} (pid ${p.pid}) has exited but is listed`);
    if (mms.index.has(p.mm)) inconsistent(`two processes share mm ${p.mm.describe()}`);
    processes.push({ pid: p.pid, name: p.name, mm: mms.of(p.mm) });
  }

  // Frames. First which are free: the free lists, in order. What frames map that the
  // mm does not own is for the parts to say.
  const frames = saveFrames(mem);
  const { usedPfns, free } = frames;
  const nrUsed = usedPfns.length;
  const ctx: ImageSaveContext = {
    mm: (mm) => mms.of(mm),
    anonVma: (av) => anonVmas.of(av),
    frameMappings: frames.foreign,
    inconsistent,
  };
  const parts: Record<string, unknown> = {};
  const saved: { base: number; part: ImagePartSaved }[] = [];
  let nPartMappings = 0;
  for (const part of k.imageParts) {
    const s = part.save(ctx);
    parts[part.name] = s.image;
    saved.push({ base: nPartMappings, part: s });
    nPartMappings += s.mappings;
  }

  // Areas, and through them anon_vmas and shmem files: every mm is numbered by now.
  const vmaIndex = new Map<Vma, number>();
  const mmImages: MmImage[] = [];
  for (const mm of mms.list) {
    const vmas: VmaImage[] = [];
    for (const vma of mm.vmas) {
      if (vma.mm !== mm) inconsistent(`${vma} is listed by ${mm.describe()}`);
      vmaIndex.set(vma, vmaIndex.size);
      vmas.push({
        start: vma.start,
        end: vma.end,
        flags: vma.flags,
        pgoff: vma.pgoff,
        anonVma: vma.anonVma === null ? -1 : anonVmas.of(vma.anonVma),
        shmem: vma.shmem === null ? -1 : shmems.of(vma.shmem),
      });
    }
    const pmds = new Float64Array(mm.pgtables.size);
    const ptes = new Float64Array(mm.pgtables.size * PTRS_PER_PTE);
    let i = 0;
    for (const [pmd, table] of mm.pgtables) {
      pmds[i] = pmd;
      ptes.set(table, i * PTRS_PER_PTE);
      i++;
    }
    mmImages.push({ owner: mm.owner, mmUsers: mm.mmUsers, mmCount: mm.mmCount, flags: mm.flags, node: mm.node, mergeDomain: mm.ksmMergeDomain, vmas, pmds: bytesOf(pmds), ptes: bytesOf(ptes) });
  }

  // What each frame in use maps, now that everything is numbered.
  const mapping = new Uint32Array(nrUsed);
  for (let u = 0; u < nrUsed; u++) {
    const pfn = usedPfns[u]!;
    const m = mem.mappingOf(pfn);
    if (m === null) mapping[u] = MAP_NONE;
    else if (m instanceof AnonVma) mapping[u] = anonVmas.of(m) * 4 + MAP_ANON;
    else if (m instanceof ShmemFile) mapping[u] = shmems.of(m) * 4 + MAP_SHMEM;
    else mapping[u] = partMappingIndex(saved, m, mem, pfn) * 4 + MAP_PART;
  }

  // Contents: frames in use by pfn, then swap slots by offset.
  const sw = k.swap;
  const table = new ContentTable(nrUsed + (sw === null ? 0 : sw.usedSlots));
  const content = new Uint32Array(nrUsed);
  const frameIds = new Uint32Array(nrUsed);
  for (let u = 0; u < nrUsed; u++) frameIds[u] = mem.content[usedPfns[u]!]!;
  table.internContents(mem.store, frameIds, content);
  const swap = sw === null ? null : sw.saveImage(table, (pfn) => (mem.flags[pfn]! & PG_DIRTY) !== 0);

  // LRU lists.
  const lru: Uint8Array[] = [];
  for (let l = 0; l < 3; l++) {
    const runs = new RunWriter();
    let walked = 0;
    for (let p = mem.lruHead[l]!; p >= 0; p = mem.lruNext[p]!) {
      if (++walked > mem.nrFrames || free[p] !== 0) inconsistent(`LRU list ${l} is broken at pfn ${p}`);
      runs.push(p);
    }
    if (walked !== mem.lruSize[l]) inconsistent(`LRU list ${l} has size ${mem.lruSize[l]}, ${walked} frames on it`);
    lru.push(runs.done());
  }

  // anon_vmas and shmem files, now that all have been met.
  const anonVmaImages: AnonVmaImage[] = anonVmas.list.map((av) => ({
    vmas: av.vmas.map((vma) => {
      const i = vmaIndex.get(vma);
      if (i === undefined) inconsistent(`anon_vma ${av.id} lists ${vma}, which no mm maps`);
      return i;
    }),
    ksmRefcount: av.ksmRefcount,
    freed: av.freed,
  }));
  const shmemImages: ShmemImage[] = shmems.list.map((f) => {
    const indices = new Float64Array(f.pages.size);
    const pfns = new Uint32Array(f.pages.size);
    let i = 0;
    for (const [idx, pfn] of f.pages) {
      indices[i] = idx;
      pfns[i] = pfn;
      i++;
    }
    return { users: f.users, indices: bytesOf(indices), pfns: bytesOf(pfns) };
  });

  return {
    imageVersion: KERNEL_IMAGE_VERSION,
    options: { ...k.options },
    ...k.saveState(),
    mem: {
      contentsEpoch: mem.contentsEpoch,
      blocks: frames.blocks,
      flags: bytesOf(frames.flags),
      count: bytesOf(frames.count),
      mapcount: bytesOf(frames.mapcount),
      mapping: bytesOf(mapping),
      index: bytesOf(frames.index),
      content: bytesOf(content),
      private: frames.priv,
      lru,
    },
    contents: table.image(),
    swap,
    anonVmas: anonVmaImages,
    shmems: shmemImages,
    mms: mmImages,
    processes,
    parts,
  };
}

/** The number, among all the parts' objects, of one a frame maps (a KSM page's stable node). */
function partMappingIndex(saved: readonly { base: number; part: ImagePartSaved }[], m: PageMapping, mem: PhysMem, pfn: number): number {
  for (const { base, part } of saved) {
    const i = part.mappingIndex(m);
    if (i >= 0) return base + i;
  }
  inconsistent(`${mem.describe(pfn)} has a mapping that is no anon_vma, shmem file or object of an image part (a stable node)`);
}

/**
 * The free lists (which say which frames are in use), the metadata of the frames in
 * use, and what they map that is no anon_vma or shmem file (`foreign`, in pfn order).
 */
function saveFrames(mem: PhysMem): {
  blocks: MemImage['blocks'];
  free: Uint8Array;
  usedPfns: Int32Array;
  flags: Uint32Array;
  count: Int32Array;
  mapcount: Int32Array;
  index: Float64Array;
  priv: Uint8Array;
  foreign: PageMapping[];
} {
  const nrFrames = mem.nrFrames;
  const free = new Uint8Array(nrFrames);
  const blocks: MemImage['blocks'] = [];
  for (const block of mem.blocks) {
    const runs = new RunWriter();
    let listed = 0;
    const end = block.startPfn + mem.framesIn(block);
    for (let p = block.freeHead; p >= 0; p = mem.lruNext[p]!) {
      if (p < block.startPfn || p >= end || free[p] !== 0 || (mem.flags[p]! & PG_BUDDY) === 0) inconsistent(`memory${block.index}'s free list holds pfn ${p}`);
      free[p] = 1;
      runs.push(p);
      listed++;
    }
    if (listed !== block.nrFree) inconsistent(`memory${block.index} counts ${block.nrFree} free frames, its list holds ${listed}`);
    if (!block.online) {
      if (listed !== 0) inconsistent(`offline memory${block.index} has a free list`);
      free.fill(1, block.startPfn, end);
    }
    blocks.push({ online: block.online, isolated: block.isolated, node: block.node, free: runs.done() });
  }
  let nrUsed = 0;
  for (let p = 0; p < nrFrames; p++) if (free[p] === 0) nrUsed++;
  const usedPfns = new Int32Array(nrUsed);
  for (let p = 0, u = 0; p < nrFrames; p++) if (free[p] === 0) usedPfns[u++] = p;

  const flags = new Uint32Array(nrUsed);
  const count = new Int32Array(nrUsed);
  const mapcount = new Int32Array(nrUsed);
  const index = new Float64Array(nrUsed);
  const priv = new IntList();
  const foreign: PageMapping[] = [];
  for (let u = 0; u < nrUsed; u++) {
    const pfn = usedPfns[u]!;
    const f = mem.flags[pfn]!;
    if ((f & (PG_BUDDY | PG_OFFLINE)) !== 0) inconsistent(`${mem.describe(pfn)} is on no free list`);
    flags[u] = f;
    count[u] = mem.count[pfn]!;
    mapcount[u] = mem.mapcount[pfn]!;
    index[u] = mem.index[pfn]!;
    if (mem.private[pfn] !== 0) {
      priv.push(pfn);
      priv.push(mem.private[pfn]!);
    }
    const m = mem.mappingOf(pfn);
    if (m !== null && !(m instanceof AnonVma) && !(m instanceof ShmemFile)) foreign.push(m);
  }
  return { blocks, free, usedPfns, flags, count, mapcount, index, priv: priv.done(), foreign };
}

// ---- checking an untrusted image ---------------------------------------------------------

/** What an image decodes to: its typed arrays as views (or aligned copies), and derived facts. */
export interface DecodedKernelImage {
  readonly options: Required<Omit<KernelOptions, 'thp'>>;
  readonly img: KernelImage;
  readonly freeLists: Int32Array[];
  readonly usedPfns: Int32Array;
  readonly flags: Uint32Array;
  readonly count: Int32Array;
  readonly mapcount: Int32Array;
  readonly mapping: Uint32Array;
  readonly index: Float64Array;
  readonly content: Uint32Array;
  readonly priv: Uint32Array;
  readonly lru: Int32Array[];
  readonly contents: ContentChunks;
  readonly swap: DecodedSwap | null;
  readonly shmems: { indices: Float64Array; pfns: Uint32Array }[];
  readonly mms: { pmds: Float64Array; ptes: Float64Array }[];
  /** Each part's decoded image, in the order of the checkers. */
  readonly parts: { name: string; decoded: unknown }[];
}

/**
 * Check an untrusted image field by field and decode it, with `parts` checking the
 * parts of the layers above: the decoded image, or what is wrong, naming the field
 * (missing, of the wrong type, out of range, or referring to something that is not
 * there). What it accepts, restoreKernelImage() builds without failing. It checks
 * structure and references, not every count against a recount: that is what
 * checkInvariants() does.
 */
export function decodeKernelImage(x: unknown, parts: readonly ImagePartChecker[]): DecodedKernelImage | string {
  try {
    return decode(x, parts);
  } catch (e) {
    if (e instanceof ImageError) return e.message;
    throw e;
  }
}

function decode(x: unknown, partCheckers: readonly ImagePartChecker[]): DecodedKernelImage {
  if (!LITTLE_ENDIAN) fail('image', 'kernel snapshots need a little-endian host');
  const img = obj(x, 'image');
  if (img.imageVersion !== KERNEL_IMAGE_VERSION) fail('imageVersion', `expected ${KERNEL_IMAGE_VERSION}, found ${found(img.imageVersion)}`);

  // ---- options, time, pids, prng, vmstat ----
  const o = obj(img.options, 'options');
  // The limits checkKernelOptions() sets on a new kernel: what it accepts, its image restores.
  const blockMiB = int(o.blockMiB, 'options.blockMiB', 1, MAX_BLOCK_MIB);
  if ((blockMiB & (blockMiB - 1)) !== 0) fail('options.blockMiB', `expected a power of two, found ${blockMiB}`);
  const memoryMiB = int(o.memoryMiB, 'options.memoryMiB', 1, MAX_MEMORY_MIB);
  const swapMiB = int(o.swapMiB, 'options.swapMiB', 0, MAX_SWAP_MIB);
  const seed = int(o.seed, 'options.seed', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  const nrFrames = (memoryMiB * 1024 * 1024) / PAGE_SIZE;
  const blockPages = (blockMiB * 1024 * 1024) / PAGE_SIZE;
  // The last block is partial when blockMiB does not divide the memory.
  const nBlocks = Math.ceil(memoryMiB / blockMiB);
  const nodes = int(o.nodes, 'options.nodes', 1, nBlocks);
  const nrSlots = (swapMiB * 1024 * 1024) / PAGE_SIZE;
  const now = finite(img.now, 'now');
  if (now < 0) fail('now', `expected a time >= 0, found ${now}`);
  const nextPid = int(img.nextPid, 'nextPid', 1, Number.MAX_SAFE_INTEGER);
  const prng = array(img.prng, 'prng', 4);
  prng.forEach((w, i) => int(w, `prng[${i}]`, 0, TWO_POW_32 - 1));
  const vmstat = obj(img.vmstat, 'vmstat');
  for (const key of VMSTAT_KEYS) int(vmstat[key], `vmstat.${key}`, 0, Number.MAX_SAFE_INTEGER);
  // A kernel with transparent huge pages keeps their mode and counters (src/mm/huge-memory.ts).
  if (img.thp !== undefined) checkThpImage(img.thp, 'thp');

  // ---- table sizes, needed to check references ----
  const anonVmasImg = array(img.anonVmas, 'anonVmas');
  const shmemsImg = array(img.shmems, 'shmems');
  const mmsImg = array(img.mms, 'mms');
  const c = obj(img.contents, 'contents');
  const pages = int(c.pages, 'contents.pages', 0, 0x7fffffff);
  const chunkPages = int(c.chunkPages, 'contents.chunkPages', 1, 1 << 20);
  const chunksImg = array(c.chunks, 'contents.chunks', Math.ceil(pages / chunkPages));
  const chunks: Buffer[] = chunksImg.map((ch, i) => {
    const b = bytes(ch, `contents.chunks[${i}]`);
    const want = Math.min(chunkPages, pages - i * chunkPages);
    if (b.byteLength !== want * PAGE_SIZE) {
      fail(`contents.chunks[${i}]`, `the content table is truncated or padded: expected ${want * PAGE_SIZE} bytes (${want} pages), found ${b.byteLength}`);
    }
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  });

  // ---- the parts of the layers above: what they hold, how many objects frames may map ----
  const partsImg = obj(img.parts, 'parts');
  for (const key of Object.keys(partsImg)) {
    if (!partCheckers.some((p) => p.name === key)) fail(`parts.${key}`, `no layer of this kernel restores it (it has ${partCheckers.length === 0 ? 'none' : partCheckers.map((p) => p.name).join(', ')})`);
  }
  const held = new Uint8Array(mmsImg.length);
  const parts: { name: string; decoded: unknown }[] = [];
  let nPartMappings = 0;
  for (const part of partCheckers) {
    const checked = part.check(partsImg[part.name], {
      path: `parts.${part.name}`,
      nrFrames,
      nodes,
      mms: mmsImg.length,
      anonVmas: anonVmasImg.length,
      holdMm: (i) => {
        held[i] = 1;
      },
    });
    parts.push({ name: part.name, decoded: checked.decoded });
    nPartMappings += checked.mappings;
  }

  // ---- frames: free lists first, which say which frames are in use ----
  const m = obj(img.mem, 'mem');
  int(m.contentsEpoch, 'mem.contentsEpoch', 0, Number.MAX_SAFE_INTEGER);
  const blocksImg = array(m.blocks, 'mem.blocks', nBlocks);
  const free = new Uint8Array(nrFrames); // 1: free or offline
  const freeLists: Int32Array[] = [];
  for (let b = 0; b < nBlocks; b++) {
    const path = `mem.blocks[${b}]`;
    const bi = obj(blocksImg[b], path);
    const online = bool(bi.online, `${path}.online`);
    const isolated = bool(bi.isolated, `${path}.isolated`);
    const node = Math.floor((b * nodes) / nBlocks);
    if (bi.node !== node) fail(`${path}.node`, `expected ${node} (block ${b} of ${nBlocks} with ${nodes} node${nodes === 1 ? '' : 's'}), found ${found(bi.node)}`);
    if (isolated && !online) fail(`${path}.isolated`, 'an offline block cannot be isolated');
    const start = b * blockPages;
    const end = Math.min(start + blockPages, nrFrames);
    const list = expandRuns(bi.free, `${path}.free`, start, end, end - start);
    if (!online && list.length > 0) fail(`${path}.free`, 'an offline block has no free list');
    for (let i = 0; i < list.length; i++) {
      const p = list[i]!;
      if (free[p] !== 0) fail(`${path}.free`, `pfn ${p} is listed twice`);
      free[p] = 1;
    }
    if (!online) free.fill(1, start, end);
    freeLists.push(list);
  }
  // The frames in use are those the free lists leave; every per-frame array has one entry each.
  let nrUsed = 0;
  for (let p = 0; p < nrFrames; p++) if (free[p] === 0) nrUsed++;
  if (free[0] !== 0) fail('mem.blocks[0].free', 'pfn 0, the zero page, must stay in use');
  const usedPfns = new Int32Array(nrUsed);
  for (let p = 0, u = 0; p < nrFrames; p++) if (free[p] === 0) usedPfns[u++] = p;

  const flags = u32s(m.flags, 'mem.flags', nrUsed);
  const count = i32s(m.count, 'mem.count', nrUsed);
  const mapcount = i32s(m.mapcount, 'mem.mapcount', nrUsed);
  const mapping = u32s(m.mapping, 'mem.mapping', nrUsed);
  const index = f64s(m.index, 'mem.index', nrUsed);
  const content = u32s(m.content, 'mem.content', nrUsed);
  const tableSize = [0, anonVmasImg.length, nPartMappings, shmemsImg.length];
  const tableName = ['', 'anonVmas', 'the objects of the image parts (stable nodes)', 'shmems'];
  let onLru = 0;
  for (let u = 0; u < nrUsed; u++) {
    const pfn = usedPfns[u]!;
    const f = flags[u]!;
    if ((f & (PG_BUDDY | PG_OFFLINE)) !== 0) fail(`mem.flags[${u}]`, `pfn ${pfn} is on no free list but is flagged free or offline (0x${f.toString(16)})`);
    if ((f & PG_LRU) !== 0) onLru++;
    if (count[u]! < 1) fail(`mem.count[${u}]`, `pfn ${pfn} is in use with count ${count[u]}`);
    if (mapcount[u]! < -1) fail(`mem.mapcount[${u}]`, `pfn ${pfn} has mapcount ${mapcount[u]} (expected >= -1)`);
    if (!Number.isFinite(index[u]!)) fail(`mem.index[${u}]`, `pfn ${pfn} has index ${index[u]}`);
    if (content[u]! >= pages) fail(`mem.content[${u}]`, `content index ${content[u]} of pfn ${pfn} is past the content table (${pages} pages)`);
    const code = mapping[u]!;
    const kind = code & 3;
    const i = code >>> 2;
    if (kind === MAP_NONE ? i !== 0 : i >= tableSize[kind]!) {
      fail(`mem.mapping[${u}]`, kind === MAP_NONE ? `bad mapping code ${code} for pfn ${pfn}` : `pfn ${pfn} maps ${tableName[kind]}[${i}], past the ${tableSize[kind]} there are`);
    }
  }
  if ((flags[0]! & PG_RESERVED) === 0) fail('mem.flags[0]', 'pfn 0, the zero page, must be reserved');

  const priv = u32s(m.private, 'mem.private');
  if (priv.length % 2 !== 0) fail('mem.private', `expected (pfn, value) pairs, found ${priv.length} numbers`);
  const privOf = new Map<number, number>();
  for (let i = 0; i < priv.length; i += 2) {
    const pfn = priv[i]!;
    if (pfn >= nrFrames || free[pfn] !== 0) fail(`mem.private[${i / 2}]`, `pfn ${pfn} is not a frame in use`);
    if (i > 0 && pfn <= priv[i - 2]!) fail(`mem.private[${i / 2}]`, `pfn ${pfn} out of order (expected ascending pfns)`);
    if (priv[i + 1]! < 1 || priv[i + 1]! > nrSlots) fail(`mem.private[${i / 2}]`, `swap entry ${priv[i + 1]} of pfn ${pfn} is not a slot of the swap device (1..${nrSlots})`);
    privOf.set(pfn, priv[i + 1]!);
  }

  const lruImg = array(m.lru, 'mem.lru', 3);
  const onList = new Uint8Array(nrFrames);
  const lru: Int32Array[] = [];
  let listed = 0;
  for (let l = 0; l < 3; l++) {
    const path = `mem.lru[${l}]`;
    const list = expandRuns(lruImg[l], path, 0, nrFrames, nrUsed);
    for (let i = 0; i < list.length; i++) {
      const p = list[i]!;
      if (free[p] !== 0) fail(path, `pfn ${p} is free`);
      if (onList[p] !== 0) fail(path, `pfn ${p} is on an LRU list twice`);
      onList[p] = 1;
      const f = flags[lowerBound(usedPfns, p)]!;
      if ((f & PG_LRU) === 0 || lruListOfFlags(f) !== l) {
        fail(path, `pfn ${p} is on LRU list ${l} but its flags (0x${f.toString(16)}) say otherwise`);
      }
    }
    listed += list.length;
    lru.push(list);
  }
  if (listed !== onLru) fail('mem.lru', `${onLru} frames are flagged PG_LRU, ${listed} are on the lists`);

  // ---- swap ----
  let swap: DecodedSwap | null = null;
  const slotInUse = new Uint8Array(nrSlots + 1);
  if (swapMiB === 0) {
    if (img.swap !== null) fail('swap', `expected null (no swap device), found ${found(img.swap)}`);
  } else {
    const s = obj(img.swap, 'swap');
    const next = int(s.next, 'swap.next', 1, nrSlots);
    const slots = u32s(s.slots, 'swap.slots');
    const ns = slots.length;
    const refs = i32s(s.refs, 'swap.refs', ns);
    const cache = i32s(s.cache, 'swap.cache', ns);
    const slotContent = i32s(s.content, 'swap.content', ns);
    const cached = new Uint8Array(nrFrames);
    for (let i = 0; i < ns; i++) {
      const off = slots[i]!;
      if (off < 1 || off > nrSlots) fail(`swap.slots[${i}]`, `slot ${off} is not on the device (1..${nrSlots})`);
      if (i > 0 && off <= slots[i - 1]!) fail(`swap.slots[${i}]`, `slot ${off} out of order (expected ascending offsets)`);
      slotInUse[off] = 1;
      if (refs[i]! < 0) fail(`swap.refs[${i}]`, `slot ${off} has count ${refs[i]}`);
      const pfn = cache[i]!;
      if (pfn !== -1) {
        if (pfn < 0 || pfn >= nrFrames || free[pfn] !== 0) fail(`swap.cache[${i}]`, `slot ${off} is cached by pfn ${pfn}, which is not a frame in use`);
        if (cached[pfn] !== 0) fail(`swap.cache[${i}]`, `pfn ${pfn} caches two slots`);
        cached[pfn] = 1;
        if (privOf.get(pfn) !== off) fail(`swap.cache[${i}]`, `slot ${off} is cached by pfn ${pfn}, whose private (${privOf.get(pfn) ?? 0}) does not point back`);
      } else if (refs[i] === 0) {
        fail(`swap.refs[${i}]`, `slot ${off} is listed in use but has neither count nor swap-cache page`);
      }
      const ci = slotContent[i]!;
      if (ci === -1 ? pfn === -1 : ci < 0 || ci >= pages) {
        fail(`swap.content[${i}]`, ci === -1 ? `slot ${off} has no contents and no swap-cache page` : `content index ${ci} of slot ${off} is past the content table (${pages} pages)`);
      }
    }
    swap = { next, slots, refs, cache, content: slotContent };
  }

  // ---- mm_structs, areas, page tables ----
  const nAnon = anonVmasImg.length;
  const nShmem = shmemsImg.length;
  const vmaAnon: number[] = [];
  const mms: DecodedKernelImage['mms'] = [];
  for (let i = 0; i < mmsImg.length; i++) {
    const path = `mms[${i}]`;
    const mi = obj(mmsImg[i], path);
    str(mi.owner, `${path}.owner`);
    int(mi.mmUsers, `${path}.mmUsers`, 0, 0x7fffffff);
    int(mi.mmCount, `${path}.mmCount`, 0, 0x7fffffff);
    int(mi.flags, `${path}.flags`, 0, 0x7fffffff);
    int(mi.node, `${path}.node`, 0, nodes - 1);
    const domainProblem = mergeDomainProblem(mi.mergeDomain);
    if (domainProblem !== null) fail(`${path}.mergeDomain`, domainProblem);
    const vmasImg = array(mi.vmas, `${path}.vmas`);
    const starts: number[] = [];
    const ends: number[] = [];
    let prevEnd = 0;
    vmasImg.forEach((v, j) => {
      const vp = `${path}.vmas[${j}]`;
      const vi = obj(v, vp);
      const start = int(vi.start, `${vp}.start`, 0, TASK_SIZE);
      const end = int(vi.end, `${vp}.end`, 0, TASK_SIZE);
      if (start % PAGE_SIZE !== 0 || end % PAGE_SIZE !== 0 || end <= start) fail(vp, `bad bounds ${hexAddr(start)}-${hexAddr(end)}`);
      if (start < prevEnd) fail(vp, `${hexAddr(start)}-${hexAddr(end)} overlaps or is out of order`);
      prevEnd = end;
      int(vi.flags, `${vp}.flags`, -0x80000000, 0xffffffff);
      int(vi.pgoff, `${vp}.pgoff`, 0, Number.MAX_SAFE_INTEGER);
      vmaAnon.push(int(vi.anonVma, `${vp}.anonVma`, -1, nAnon - 1));
      int(vi.shmem, `${vp}.shmem`, -1, nShmem - 1);
      starts.push(start);
      ends.push(end);
    });
    const pmds = f64s(mi.pmds, `${path}.pmds`);
    const ptes = f64s(mi.ptes, `${path}.ptes`, pmds.length * PTRS_PER_PTE);
    const seen = new Set<number>();
    for (let t = 0; t < pmds.length; t++) {
      const pmd = pmds[t]!;
      if (!Number.isInteger(pmd) || pmd < 0 || pmd >= TASK_SIZE / PMD_SIZE || seen.has(pmd)) fail(`${path}.pmds[${t}]`, `bad or repeated page table number ${pmd}`);
      seen.add(pmd);
      for (let e = 0; e < PTRS_PER_PTE; e++) {
        const pte = ptes[t * PTRS_PER_PTE + e]!;
        if (pte === PTE_NONE) continue;
        const addr = pmd * PMD_SIZE + e * PAGE_SIZE;
        if (!Number.isSafeInteger(pte) || pte < 0 || ptePayload(pte) > MAX_PTE_PAYLOAD) fail(`${path}.ptes[${t * PTRS_PER_PTE + e}]`, `pte ${pte} at ${hexAddr(addr)} is no pte`);
        // The vma containing addr: vmas are sorted (tables need not be).
        let lo = 0;
        let hi = ends.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (ends[mid]! <= addr) lo = mid + 1;
          else hi = mid;
        }
        if (lo >= ends.length || starts[lo]! > addr) fail(`${path}.ptes[${t * PTRS_PER_PTE + e}]`, `pte at ${hexAddr(addr)} lies outside every vma`);
        const payload = ptePayload(pte);
        switch (pte & PTE_KIND_MASK) {
          case PTE_PRESENT:
            if ((pte & PTE_SPECIAL) !== 0) {
              if (payload !== 0) fail(`${path}.ptes[${t * PTRS_PER_PTE + e}]`, `special pte at ${hexAddr(addr)} maps pfn ${payload}, not the zero page`);
            } else if (payload >= nrFrames || free[payload] !== 0) {
              fail(`${path}.ptes[${t * PTRS_PER_PTE + e}]`, `pte at ${hexAddr(addr)} maps pfn ${payload}, which is not a frame in use`);
            }
            break;
          case PTE_SWAP:
            if (payload < 1 || payload > nrSlots || slotInUse[payload] === 0) fail(`${path}.ptes[${t * PTRS_PER_PTE + e}]`, `swap pte at ${hexAddr(addr)} names slot ${payload}, which is not in use`);
            break;
          case PTE_MIGRATION:
            fail(`${path}.ptes[${t * PTRS_PER_PTE + e}]`, `migration entry at ${hexAddr(addr)}: a kernel at rest has none`);
            break;
          default:
            fail(`${path}.ptes[${t * PTRS_PER_PTE + e}]`, `pte 0x${pte.toString(16)} at ${hexAddr(addr)} has no valid kind`);
        }
      }
    }
    mms.push({ pmds, ptes });
  }
  const nVmas = vmaAnon.length;

  // ---- anon_vmas and shmem files ----
  const onAnonList = new Uint8Array(nVmas);
  let anonListed = 0;
  anonVmasImg.forEach((a, i) => {
    const path = `anonVmas[${i}]`;
    const ai = obj(a, path);
    const vl = array(ai.vmas, `${path}.vmas`);
    vl.forEach((v, j) => {
      const vi = int(v, `${path}.vmas[${j}]`, 0, nVmas - 1);
      if (vmaAnon[vi] !== i) fail(`${path}.vmas[${j}]`, `lists vma ${vi}, whose anon_vma is ${vmaAnon[vi]}`);
      if (onAnonList[vi] !== 0) fail(`${path}.vmas[${j}]`, `vma ${vi} is listed twice`);
      onAnonList[vi] = 1;
      anonListed++;
    });
    int(ai.ksmRefcount, `${path}.ksmRefcount`, 0, 0x7fffffff);
    bool(ai.freed, `${path}.freed`);
  });
  let withAnon = 0;
  for (const a of vmaAnon) if (a >= 0) withAnon++;
  if (withAnon !== anonListed) fail('anonVmas', `${withAnon} vmas have an anon_vma, ${anonListed} are on anon_vma lists`);
  const shmems: DecodedKernelImage['shmems'] = shmemsImg.map((s, i) => {
    const path = `shmems[${i}]`;
    const si = obj(s, path);
    int(si.users, `${path}.users`, 0, 0x7fffffff);
    const indices = f64s(si.indices, `${path}.indices`);
    const pfns = u32s(si.pfns, `${path}.pfns`, indices.length);
    const seen = new Set<number>();
    for (let j = 0; j < indices.length; j++) {
      const idx = indices[j]!;
      if (!Number.isSafeInteger(idx) || idx < 0 || seen.has(idx)) fail(`${path}.indices[${j}]`, `bad or repeated page index ${idx}`);
      seen.add(idx);
      if (pfns[j]! >= nrFrames || free[pfns[j]!] !== 0) fail(`${path}.pfns[${j}]`, `pfn ${pfns[j]} is not a frame in use`);
    }
    return { indices, pfns };
  });

  // ---- processes ----
  const procs = array(img.processes, 'processes');
  const pids = new Set<number>();
  const owned = new Uint8Array(mmsImg.length);
  procs.forEach((p, i) => {
    const path = `processes[${i}]`;
    const pi = obj(p, path);
    const pid = int(pi.pid, `${path}.pid`, 1, nextPid - 1);
    if (pids.has(pid)) fail(`${path}.pid`, `pid ${pid} is used twice`);
    pids.add(pid);
    str(pi.name, `${path}.name`);
    const mm = int(pi.mm, `${path}.mm`, 0, mmsImg.length - 1);
    if (owned[mm] !== 0) fail(`${path}.mm`, `mm ${mm} belongs to two processes`);
    owned[mm] = 1;
  });
  for (let i = 0; i < mmsImg.length; i++) {
    if (owned[i] === 0 && held[i] === 0) fail(`mms[${i}]`, 'belongs to no process, and no image part (an mm_slot) holds it');
  }

  return {
    options: { memoryMiB, swapMiB, blockMiB, seed, nodes },
    img: img as unknown as KernelImage,
    freeLists,
    usedPfns,
    flags,
    count,
    mapcount,
    mapping,
    index,
    content,
    priv,
    lru,
    contents: new ContentChunks(pages, chunkPages, chunks),
    swap,
    shmems,
    mms,
    parts,
  };
}

// ---- restoring ----------------------------------------------------------------------------

/** Links the frames of `list` in its order through lruPrev/lruNext (free lists and LRU lists share them). */
function linkList(mem: PhysMem, list: Int32Array): void {
  for (let i = 0; i < list.length; i++) {
    const p = list[i]!;
    mem.lruPrev[p] = i > 0 ? list[i - 1]! : -1;
    mem.lruNext[p] = i + 1 < list.length ? list[i + 1]! : -1;
  }
}

/**
 * Put `k`, fresh from its constructor with d.options and the same image parts
 * registered as the checkers d was decoded with, in the saved state: the mm's, then
 * each part's restore step. The kernel never shares memory with the image.
 */
export function restoreKernelImage(k: HostKernel, d: DecodedKernelImage): void {
  const img = d.img;
  const opts = k.options;
  if (opts.memoryMiB !== d.options.memoryMiB || opts.swapMiB !== d.options.swapMiB || opts.blockMiB !== d.options.blockMiB || opts.seed !== d.options.seed || opts.nodes !== d.options.nodes) {
    bug(`restoreKernelImage: the kernel was built with ${JSON.stringify(opts)}, the image has ${JSON.stringify(d.options)}`);
  }
  if (k.imageParts.length !== d.parts.length || k.imageParts.some((p, i) => p.name !== d.parts[i]!.name)) {
    bug(`restoreKernelImage: the kernel has image parts ${k.imageParts.map((p) => p.name).join(', ')}, the image was checked with ${d.parts.map((p) => p.name).join(', ')}`);
  }
  const mem = k.mem;
  mem.initAllBlocks();

  // ---- frames: every frame reset as free, then the free lists, then those in use ----
  for (let b = 0; b < mem.blocks.length; b++) {
    const block: MemoryBlock = mem.blocks[b]!;
    const bi = img.mem.blocks[b]!;
    const start = block.startPfn;
    const end = start + mem.framesIn(block);
    mem.flags.fill(bi.online ? PG_BUDDY : PG_BUDDY | PG_OFFLINE, start, end);
    mem.count.fill(0, start, end);
    mem.mapcount.fill(-1, start, end);
    mem.clearMappings(block);
    mem.index.fill(0, start, end);
    mem.private.fill(0, start, end);
    mem.lruPrev.fill(-1, start, end);
    mem.lruNext.fill(-1, start, end);
    for (let p = start; p < end; p++) {
      const c = mem.content[p]!;
      if (c !== 0) {
        mem.content[p] = 0;
        mem.store.put(c);
      }
    }
    const list = d.freeLists[b]!;
    linkList(mem, list);
    block.freeHead = list.length > 0 ? list[0]! : -1;
    block.nrFree = list.length;
    block.isolated = bi.isolated;
    if (!bi.online) {
      block.online = false;
    }
  }
  let nrFreeOnline = 0;
  for (const block of mem.blocks) if (block.online && !block.isolated) nrFreeOnline += block.nrFree;
  mem.nrFreeOnline = nrFreeOnline;
  mem.contentsEpoch = img.mem.contentsEpoch;
  const used = d.usedPfns;
  const contents = d.contents;
  for (let u = 0; u < used.length; u++) {
    const pfn = used[u]!;
    mem.flags[pfn] = d.flags[u]!;
    mem.count[pfn] = d.count[u]!;
    mem.mapcount[pfn] = d.mapcount[u]!;
    mem.index[pfn] = d.index[u]!;
    mem.content[pfn] = contents.contentIn(mem.store, d.content[u]!);
  }
  for (let i = 0; i < d.priv.length; i += 2) mem.private[d.priv[i]!] = d.priv[i + 1]!;
  for (let l = 0; l < 3; l++) {
    const list = d.lru[l]!;
    linkList(mem, list);
    mem.lruHead[l] = list.length > 0 ? list[0]! : -1;
    mem.lruTail[l] = list.length > 0 ? list[list.length - 1]! : -1;
    mem.lruSize[l] = list.length;
  }

  // ---- swap ----
  if (d.swap !== null) k.swap!.restoreImage(d.swap, contents);

  // ---- objects ----
  const anonVmas = img.anonVmas.map((a) => {
    const av = new AnonVma();
    av.ksmRefcount = a.ksmRefcount;
    av.freed = a.freed;
    return av;
  });
  const shmems = img.shmems.map((s, i) => {
    const f = new ShmemFile();
    f.users = s.users;
    const { indices, pfns } = d.shmems[i]!;
    for (let j = 0; j < indices.length; j++) f.pages.set(indices[j]!, pfns[j]!);
    return f;
  });
  const vmaList: Vma[] = [];
  const mms = img.mms.map((mi, i) => {
    const mm = new MmStruct(mi.owner);
    mm.mmUsers = mi.mmUsers;
    mm.mmCount = mi.mmCount;
    mm.flags = mi.flags;
    mm.node = mi.node;
    mm.ksmMergeDomain = mi.mergeDomain;
    for (const vi of mi.vmas) {
      const vma = new Vma(mm, vi.start, vi.end, vi.flags, vi.pgoff);
      vma.anonVma = vi.anonVma < 0 ? null : anonVmas[vi.anonVma]!;
      vma.shmem = vi.shmem < 0 ? null : shmems[vi.shmem]!;
      mm.vmas.push(vma);
      vmaList.push(vma);
    }
    const { pmds, ptes } = d.mms[i]!;
    for (let t = 0; t < pmds.length; t++) mm.pgtables.set(pmds[t]!, ptes.slice(t * PTRS_PER_PTE, (t + 1) * PTRS_PER_PTE));
    return mm;
  });
  img.anonVmas.forEach((a, i) => {
    for (const v of a.vmas) anonVmas[i]!.vmas.push(vmaList[v]!);
  });
  for (const pi of img.processes) k.processes.set(pi.pid, new Process(k, pi.pid, pi.name, mms[pi.mm]!));
  k.restoreState({ now: img.now, nextPid: img.nextPid, prng: img.prng, vmstat: img.vmstat, ...(img.thp !== undefined ? { thp: img.thp } : {}) });

  // ---- the parts of the layers above ----
  const ctx: ImageRestoreContext = { mms, anonVmas };
  const partObjects: PageMapping[] = [];
  k.imageParts.forEach((part, i) => {
    for (const o of part.restore(d.parts[i]!.decoded, ctx)) partObjects.push(o);
  });

  // ---- what frames point at, now that it exists ----
  for (let u = 0; u < used.length; u++) {
    const code = d.mapping[u]!;
    const kind = code & 3;
    const i = code >>> 2;
    mem.setMapping(used[u]!, kind === MAP_ANON ? anonVmas[i]! : kind === MAP_PART ? partObjects[i]! : kind === MAP_SHMEM ? shmems[i]! : null);
  }
}
