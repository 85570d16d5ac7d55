import type { PageChecksumBatchLike } from '../lib/checksum.js';
import { KernelError, bug } from '../lib/errors.js';
import { RbRoot, rbFirst, rbNext } from '../lib/rbtree.js';
import type { HostKernel } from '../mm/kernel.js';
import type { KsmAdvice, KsmOps, PrctlOption } from '../mm/ksm-ops.js';
import type { MmStruct } from '../mm/mm.js';
import type { RmapWalkControl } from '../mm/rmap.js';
import type { Vma } from '../mm/vma.js';
import { ksmExit, ksmFork, ksmMadvise, ksmMightUnmapZeroPage, ksmPrctl, ksmVmaFlags } from './madvise.js';
import { MEMCMP_MEMO_SLOTS, calcChecksum } from './pages.js';
import { type KernelProfile, type KsmKnobField, type KsmKnobValues } from './profile.js';
import { ksmMightNeedToCopy, ksmMigratePage, rmapWalkKsm } from './rmap-walk.js';
import { ksmDoScan } from './scan.js';
import { pruneStableNodes } from './stable-tree.js';
import { readKsmProcessStats, readKsmStats, type KsmProcessStats, type KsmStats } from './stats.js';
import { KSM_RUN_MERGE, KSM_RUN_STOP, KSM_RUN_UNMERGE, MmSlot, decodeRmapFlags, type RmapItem, type RmapLink, type StableNode } from './structs.js';
import { unmergeAndRemoveAllRmapItems } from './unmerge.js';
import { KsmWork } from './work.js';

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
 *
 * Where the code is, along mm/ksm.c's own seams (each file opens with its notes):
 *
 *   ksm.ts           this file: the engine's state (mm/ksm.c's globals), and the
 *                    entry points the mm calls (KsmOps), each one line into the rest
 *   scan.ts          the scan: scan_get_next_rmap_item(), cmp_and_merge_page(),
 *                    ksm_do_scan()
 *   stable-tree.ts   stable_tree_search(), stable_tree_insert(), stable_tree_append(),
 *                    the keyhole get_ksm_page(), removing stale nodes
 *   unstable-tree.ts unstable_tree_search_insert()
 *   merge.ts         write_protect_page(), replace_page(), try_to_merge_*()
 *   unmerge.ts       break_ksm(), break_cow(), MADV_UNMERGEABLE, run=2
 *   rmap-item.ts     rmap_items and mm_slots: made, taken out of a tree, freed
 *   rmap-walk.ts     rmap_walk_ksm(), ksm_migrate_page(), ksm_might_need_to_copy()
 *   madvise.ts       ksm_madvise(), __ksm_enter(), __ksm_exit(), ksm_fork(), and the
 *                    later hooks (prctl, mmap, zap)
 *   pages.ts         follow_page(), get_mergeable_page(), calc_checksum(),
 *                    memcmp_pages()
 *   structs.ts       rmap_item, stable_node, mm_slot and their flag bits
 *   profile.ts       what differs between kernel versions; stats.ts the statistics
 *   ksmd.ts, sysfs.ts, check.ts, kernel.ts: the thread, the files, the deep check,
 *                    and ksm_init()
 */

/**
 * The KSM engine: the state of mm/ksm.c, one instance per kernel, and the KsmOps the
 * kernel's mm calls. It registers itself as the kernel's KsmOps; kernel.ts adds its
 * sysfs files, memory notifier, invariant checker and the ksmd thread.
 *
 * The state, all of it here (a snapshot saves and restores exactly these fields):
 * the trees and the mm_slot list, the scan cursor, the counters (work ones too), the
 * knobs and the offline lock. What follows them (the memos, the checksum batch) is derived from
 * page contents and is dropped and rebuilt freely.
 */
export class Ksm implements KsmOps {
  readonly kernel: HostKernel;
  /** The kernel version this engine behaves as (profile.ts). */
  readonly profile: KernelProfile;

  // ---- the trees and lists ----
  /** The stable and unstable trees of node 0: the only ones while merge_across_nodes is 1 (and in 2.6.33). */
  readonly rootStableTree: RbRoot;
  readonly rootUnstableTree: RbRoot;
  /**
   * 6.x root_stable_tree[] and root_unstable_tree[]: one per NUMA node, [0] being the
   * two above; only the first nrNodeIds are used (ksm_nr_node_ids: 1 while
   * merge_across_nodes is 1, the number of nodes while it is 0).
   */
  readonly stableRoots: RbRoot[];
  readonly unstableRoots: RbRoot[];
  nrNodeIds: number;
  /** 6.x migrate_nodes: the first stable node on it (NODE_MIGRATE), or null. */
  migrateNodes: StableNode | null;
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
  /** The page scan_get_next_rmap_item() found, with a reference held (-1 between pages). */
  scanPfn: number;

  // ---- statistics (stats.ts reads them; pages_volatile is derived) ----
  pagesShared: number;
  pagesSharing: number;
  pagesUnshared: number;
  rmapItems: number;
  /** Pages ksmd has looked at (not in 2.6.33; 6.x's pages_scanned, for reports). */
  pagesScanned: number;
  /** 6.x: pages smart scan skipped (ksm_pages_skipped). */
  pagesSkipped: number;
  /** 6.x: the zero pages KSM has mapped (ksm_zero_pages), and per mm (mm->ksm_zero_pages; absent: 0). */
  ksmZeroPages: number;
  readonly mmZeroPages: Map<MmStruct, number>;
  /** 6.x: stable node chains and the dups on them (ksm_stable_node_chains, ksm_stable_node_dups). */
  stableNodeChains: number;
  stableNodeDups: number;
  /** 6.x: calc_checksum() of the zero page (zero_checksum), computed at ksm_init(). */
  readonly zeroChecksum: number;

  // ---- the scan-time advisor (6.x struct advisor_ctx) and what it measures ----
  /** Simulated ms when the current full scan started (advisor_ctx.start_scan). */
  advisorStartScan: number;
  /** advisor_ctx.scan_time (s), .change (%), .cpu_time (ns). */
  advisorScanTime: number;
  advisorChange: number;
  advisorCpuTime: number;
  /** ksmd's CPU time in ns, as the model charges it (advisor.ts: task_sched_runtime()). */
  ksmdCpuTime: number;
  /** What ksmd's work consisted of, counted (work.ts; not in Linux), for its CPU cost. */
  readonly work: KsmWork;

  // ---- knobs (profile.ts knobs name the files; a knob the profile lacks stays inert) ----
  /** An unsigned long, as the sysfs file takes it: a bigint so that every value reads back exactly. 0: no cap. */
  maxKernelPages: bigint;
  pagesToScan: number;
  sleepMillisecs: number;
  run: number;
  /** 6.x knobs; inert in 2.6.33 (no chains: sharing is unlimited; no zero pages, smart scan or advisor). */
  maxPageSharing: number;
  stableNodeChainsPruneMillisecs: number;
  useZeroPages: number;
  mergeAcrossNodes: number;
  smartScan: number;
  advisorMode: number;
  advisorMaxCpu: number;
  advisorMinPagesToScan: bigint;
  advisorMaxPagesToScan: bigint;
  advisorTargetScanTime: bigint;
  /** ksm_thread_mutex held by the memory hotplug callback (MEM_GOING_OFFLINE..). */
  offlineLock: boolean;

  // ---- derived from page contents: never saved ----
  /**
   * memcmpPages()'s memo (not in the kernel: see there). Slot s holds the sign of
   * memcmp(memcmpLo[s], memcmpHi[s]) (lo <= hi), true while mem.contentsEpoch is
   * still memcmpEpoch[s]; -1 marks a slot never used.
   */
  readonly memcmpLo: Int32Array;
  readonly memcmpHi: Int32Array;
  readonly memcmpSign: Int8Array;
  /** The bytes that memcmp read, to the first difference (1..PAGE_SIZE), for ksm.work. */
  readonly memcmpBytes: Int16Array;
  readonly memcmpEpoch: Float64Array;
  /** scanChecksum()'s batch, of the profile's checksum. */
  readonly checksumBatch: PageChecksumBatchLike;
  /** Where checkInvariants() resumes re-verifying memoized checksums (check.ts). */
  memoCheckCursor: number;

  constructor(kernel: HostKernel, profile: KernelProfile) {
    // 6.x's cmp_and_merge_page() is one piece: the checksum-first order and the chains.
    if (profile.features.checksumBeforeStableTreeSearch !== profile.features.stableNodeChains) {
      bug(`the Linux ${profile.version} profile turns on one of checksumBeforeStableTreeSearch and stableNodeChains without the other: the engine implements them together`);
    }
    this.kernel = kernel;
    this.profile = profile;
    this.rootStableTree = new RbRoot();
    this.rootUnstableTree = new RbRoot();
    const nodes = kernel.mem.nrNodes;
    this.stableRoots = [this.rootStableTree];
    this.unstableRoots = [this.rootUnstableTree];
    for (let nid = 1; nid < nodes; nid++) {
      this.stableRoots.push(new RbRoot());
      this.unstableRoots.push(new RbRoot());
    }
    this.nrNodeIds = 1;
    this.migrateNodes = null;
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
    this.pagesSkipped = 0;
    this.ksmZeroPages = 0;
    this.mmZeroPages = new Map();
    this.stableNodeChains = 0;
    this.stableNodeDups = 0;
    // ksm_init(): zero_checksum = calc_checksum(ZERO_PAGE(0)).
    let zeroSum = 0;
    if (profile.features.zeroPages) {
      const v = kernel.mem.view(kernel.mem.zeroPfn);
      zeroSum = profile.checksum.page(v.words, v.wordOff);
    }
    this.zeroChecksum = zeroSum;
    this.advisorStartScan = 0;
    this.advisorScanTime = 0;
    this.advisorChange = 0;
    this.advisorCpuTime = 0;
    this.ksmdCpuTime = 0;
    this.work = new KsmWork();
    // ksm_init(): every knob of the profile starts at its initial value; one the
    // kernel does not have keeps the value that makes it do nothing.
    this.maxKernelPages = INERT_KNOBS.maxKernelPages;
    this.pagesToScan = INERT_KNOBS.pagesToScan;
    this.sleepMillisecs = INERT_KNOBS.sleepMillisecs;
    this.run = INERT_KNOBS.run;
    this.maxPageSharing = INERT_KNOBS.maxPageSharing;
    this.stableNodeChainsPruneMillisecs = INERT_KNOBS.stableNodeChainsPruneMillisecs;
    this.useZeroPages = INERT_KNOBS.useZeroPages;
    this.mergeAcrossNodes = INERT_KNOBS.mergeAcrossNodes;
    this.smartScan = INERT_KNOBS.smartScan;
    this.advisorMode = INERT_KNOBS.advisorMode;
    this.advisorMaxCpu = INERT_KNOBS.advisorMaxCpu;
    this.advisorMinPagesToScan = INERT_KNOBS.advisorMinPagesToScan;
    this.advisorMaxPagesToScan = INERT_KNOBS.advisorMaxPagesToScan;
    this.advisorTargetScanTime = INERT_KNOBS.advisorTargetScanTime;
    for (const knob of profile.knobs) {
      const v = knob.initial === 'totalram_pages/4' ? Math.floor(kernel.mem.nrFrames / 4) : knob.initial;
      setKnobField(this, knob.field, BigInt(v));
    }
    this.offlineLock = false;
    this.memcmpLo = new Int32Array(MEMCMP_MEMO_SLOTS);
    this.memcmpHi = new Int32Array(MEMCMP_MEMO_SLOTS);
    this.memcmpSign = new Int8Array(MEMCMP_MEMO_SLOTS);
    this.memcmpBytes = new Int16Array(MEMCMP_MEMO_SLOTS);
    this.memcmpEpoch = new Float64Array(MEMCMP_MEMO_SLOTS).fill(-1);
    this.checksumBatch = profile.checksum.newBatch();
    // The store's per-content checksum memo holds the profile's checksum (what else reads the
    // memo, the snapshot's content table, uses it only if it is jhash2).
    kernel.mem.store.useChecksum(profile.checksum.name);
    this.memoCheckCursor = 0;
  }

  // =====================================================================================
  // Entry points from the mm (KsmOps): each is its mm/ksm.c function, elsewhere
  // =====================================================================================

  /** ksm_madvise() (madvise.ts) */
  madvise(vma: Vma, start: number, end: number, advice: KsmAdvice, vmFlags: number): number {
    return ksmMadvise(this, vma, start, end, advice, vmFlags);
  }

  /** include/linux/ksm.h ksm_fork() (madvise.ts) */
  fork(mm: MmStruct, oldmm: MmStruct): void {
    ksmFork(this, mm, oldmm);
  }

  /** ksm_exit() → __ksm_exit() (madvise.ts) */
  exit(mm: MmStruct): void {
    ksmExit(this, mm);
  }

  /** prctl(PR_SET/GET_MEMORY_MERGE) (madvise.ts) */
  prctl(mm: MmStruct, option: PrctlOption, arg2: number, arg3: number, arg4: number, arg5: number): number {
    return ksmPrctl(this, mm, option, arg2, arg3, arg4, arg5);
  }

  /** ksm_vma_flags() (madvise.ts) */
  vmaFlags(mm: MmStruct, vmFlags: number): number {
    return ksmVmaFlags(this, mm, vmFlags);
  }

  /** ksm_might_unmap_zero_page() (madvise.ts) */
  mightUnmapZeroPage(mm: MmStruct, pte: number): void {
    ksmMightUnmapZeroPage(this, mm, pte);
  }

  /** ksm_might_need_to_copy() (rmap-walk.ts) */
  mightNeedToCopy(pfn: number, vma: Vma, addr: number): number {
    return ksmMightNeedToCopy(this, pfn, vma, addr);
  }

  /** rmap_walk_ksm() (rmap-walk.ts) */
  rmapWalk(pfn: number, rwc: RmapWalkControl): number {
    return rmapWalkKsm(this, pfn, rwc);
  }

  /** ksm_migrate_page() (rmap-walk.ts) */
  migratePage(newPfn: number, oldPfn: number): void {
    ksmMigratePage(this, newPfn, oldPfn);
  }

  /** ksm_memory_callback(MEM_OFFLINE)'s pruning (stable-tree.ts); returns the nodes removed. */
  pruneStableNodes(startPfn: number, endPfn: number): number {
    return pruneStableNodes(this, startPfn, endPfn);
  }

  // =====================================================================================
  // ksmd, run=, and its wakeups
  // =====================================================================================

  /** ksm_do_scan() (scan.ts): scan up to `npages` pages; returns how many were scanned. */
  doScan(npages: number): number {
    return ksmDoScan(this, npages);
  }

  /** ksmd_should_run() */
  shouldRun(): boolean {
    return (this.run & KSM_RUN_MERGE) !== 0 && this.mmHead.next !== this.mmHead && !this.offlineLock;
  }

  /** Called when ksmd should re-check ksmd_should_run() (wake_up_interruptible(&ksm_thread_wait)). */
  onWakeup: () => void = () => {};

  /** 6.x: sleep_millisecs changed: ksmd's nap ends now (wake_up_interruptible(&ksm_iter_wait)). */
  onSleepChanged: () => void = () => {};

  /** run_store() after validation. */
  setRun(flags: number): void {
    if (this.run !== flags) {
      this.run = flags;
      if ((flags & KSM_RUN_UNMERGE) !== 0) {
        const err = unmergeAndRemoveAllRmapItems(this);
        if (err !== 0) {
          this.run = KSM_RUN_STOP;
          throw new KernelError('ENOMEM', 'run=2: out of memory while unmerging; run is now 0');
        }
      }
    }
    if ((flags & KSM_RUN_MERGE) !== 0) this.onWakeup();
  }

  // =====================================================================================
  // Statistics and introspection
  // =====================================================================================

  /** calc_checksum() of a frame (pages.ts). */
  calcChecksum(pfn: number): number {
    return calcChecksum(this, pfn);
  }

  /** pages_volatile, as the sysfs file shows it (never negative). */
  get pagesVolatile(): number {
    const v = this.rmapItems - this.pagesShared - this.pagesSharing - this.pagesUnshared;
    return v < 0 ? 0 : v;
  }

  /** Every statistic now (stats.ts). */
  stats(): KsmStats {
    return readKsmStats(this);
  }

  /** KSM's view of one process (/proc/<pid>/ksm_stat; stats.ts). */
  processStats(mm: MmStruct): KsmProcessStats {
    return readKsmProcessStats(this, mm);
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

/**
 * What a knob the profile does not have holds: the value that makes the engine do
 * nothing with it (2.6.33 has no chains, so max_page_sharing 0 never caps; no zero
 * pages, smart scan or advisor; merge_across_nodes 1: one tree). A kernel image keeps
 * every knob field, and one the profile lacks must hold this (src/ksm/snapshot.ts).
 */
export const INERT_KNOBS: Readonly<KsmKnobValues> = {
  run: KSM_RUN_STOP,
  pagesToScan: 0,
  sleepMillisecs: 0,
  maxKernelPages: 0n,
  maxPageSharing: 0,
  stableNodeChainsPruneMillisecs: 0,
  useZeroPages: 0,
  mergeAcrossNodes: 1,
  smartScan: 0,
  advisorMode: 0,
  advisorMaxCpu: 0,
  advisorMinPagesToScan: 0n,
  advisorMaxPagesToScan: 0n,
  advisorTargetScanTime: 0n,
};

/** The fields that hold an unsigned long, as bigints (the rest are numbers). */
const BIGINT_KNOBS: ReadonlySet<KsmKnobField> = new Set<KsmKnobField>(['maxKernelPages', 'advisorMinPagesToScan', 'advisorMaxPagesToScan', 'advisorTargetScanTime']);

/** Set a knob's engine field from a value its store accepted (a bigint either way). */
export function setKnobField(ksm: Ksm, field: KsmKnobField, v: bigint): void {
  if (BIGINT_KNOBS.has(field)) (ksm as unknown as Record<KsmKnobField, bigint>)[field] = v;
  else (ksm as unknown as Record<KsmKnobField, number>)[field] = Number(v);
}
