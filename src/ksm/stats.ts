import { MMF_VM_MERGE_ANY, PAGE_SIZE, VM_MERGEABLE } from '../mm/constants.js';
import type { MmStruct } from '../mm/mm.js';
import type { Ksm } from './ksm.js';
import type { KernelProfile, KsmFeatures } from './profile.js';
import { STABLE_FLAG } from './structs.js';

/*
 * KSM's statistics, as one record.
 *
 * KSM_STATS is the one list of what the engine counts: a statistic is added here (its
 * name, how reports label it, how it is read from the engine), plus, when the kernel
 * shows it in /sys/kernel/mm/ksm, its line in the profile's statFiles (profile.ts).
 * Everything else follows from the list: the sysfs file, the `KsmStats` type, the
 * host's samples and the run summary (src/vmm, src/scenario, which extend KsmStats
 * rather than restating its fields), the JSON run file's keys and the summary line
 * (src/report), in this order.
 *
 * A statistic with no file in a profile is still counted: pagesScanned is not a
 * 2.6.33 file (6.x shows it as pages_scanned), but reports want ksmd's work.
 *
 * The statistics later kernels brought name the feature switch that brings them
 * (`feature`): a kernel whose profile has the switch off has no such statistic, and
 * its records leave it out rather than print it as 0 (so 2.6.33's outputs are what
 * they were before 6.18 existed). Their fields are optional in KsmStats; everything
 * that walks a record walks the statistics it holds (statsIn()).
 */

export interface KsmStatSpec {
  /** The field in KsmStats. */
  readonly name: string;
  /** How a report prints it: the sysfs file's name where there is one, else words. */
  readonly label: string;
  /** The feature switch a kernel needs to have it, or null when every kernel has it. */
  readonly feature: keyof KsmFeatures | null;
  /** Its value now. Reads only: no statistic is computed by changing the engine. */
  read(ksm: Ksm): number;
}

export const KSM_STATS = [
  { name: 'pagesShared', label: 'pages_shared', feature: null, read: (ksm) => ksm.pagesShared },
  { name: 'pagesSharing', label: 'pages_sharing', feature: null, read: (ksm) => ksm.pagesSharing },
  { name: 'pagesUnshared', label: 'pages_unshared', feature: null, read: (ksm) => ksm.pagesUnshared },
  { name: 'pagesVolatile', label: 'pages_volatile', feature: null, read: (ksm) => ksm.pagesVolatile },
  { name: 'fullScans', label: 'full_scans', feature: null, read: (ksm) => ksm.seqnr },
  { name: 'pagesScanned', label: 'pages scanned', feature: null, read: (ksm) => ksm.pagesScanned },
  // 6.x: pages smart scan skipped; KSM zero pages (ksm_zero_pages, the global
  // counter); stable node chains and their dups; general_profit, the kernel's
  // (pages_sharing + ksm_zero_pages) * PAGE_SIZE - ksm_rmap_items * sizeof(rmap_item).
  { name: 'pagesSkipped', label: 'pages_skipped', feature: 'smartScan', read: (ksm) => ksm.pagesSkipped },
  { name: 'ksmZeroPages', label: 'ksm_zero_pages', feature: 'zeroPages', read: (ksm) => ksm.ksmZeroPages },
  { name: 'stableNodeChains', label: 'stable_node_chains', feature: 'stableNodeChains', read: (ksm) => ksm.stableNodeChains },
  { name: 'stableNodeDups', label: 'stable_node_dups', feature: 'stableNodeChains', read: (ksm) => ksm.stableNodeDups },
  { name: 'generalProfit', label: 'general_profit', feature: 'procKsmStat', read: (ksm) => generalProfit(ksm) },
] as const satisfies readonly KsmStatSpec[];

export type KsmStatName = (typeof KSM_STATS)[number]['name'];

/** The statistics every kernel has. */
type CommonStatName = Extract<(typeof KSM_STATS)[number], { feature: null }>['name'];

/**
 * Every KSM statistic the kernel has at one instant, by name, in KSM_STATS order:
 * those of every kernel always, those a later kernel brought only when it has them.
 */
export type KsmStats = { [K in CommonStatName]: number } & { [K in Exclude<KsmStatName, CommonStatName>]?: number };

/** The statistics a kernel with this profile has, in KSM_STATS order. */
export function ksmStatsOf(profile: KernelProfile): KsmStatSpec[] {
  return KSM_STATS.filter((s) => s.feature === null || profile.features[s.feature]);
}

/** The statistics a record (a sample, a summary) holds, in KSM_STATS order. */
export function statsIn(record: KsmStats): (typeof KSM_STATS)[number][] {
  return KSM_STATS.filter((s) => record[s.name] !== undefined);
}

/** Every statistic the kernel has, now. */
export function readKsmStats(ksm: Ksm): KsmStats {
  const out = {} as Record<KsmStatName, number>;
  for (const s of KSM_STATS) if (s.feature === null || ksm.profile.features[s.feature]) out[s.name] = s.read(ksm);
  return out as KsmStats;
}

/** The KsmStats fields of a record that carries them (a host sample), and nothing else, in order. */
export function pickKsmStats(from: KsmStats): KsmStats {
  const out = {} as Record<KsmStatName, number>;
  for (const s of statsIn(from)) out[s.name] = from[s.name]!;
  return out as KsmStats;
}

/** general_profit_show() */
export function generalProfit(ksm: Ksm): number {
  return (ksm.pagesSharing + ksm.ksmZeroPages) * PAGE_SIZE - ksm.rmapItems * ksm.profile.rmapItemSize;
}

/**
 * KSM's view of one process: what /proc/<pid>/ksm_stat shows in kernels that have the
 * file (the profile's procKsmStat). Fields are the file's lines in camelCase; a
 * 2.6.33 kernel has only the two its engine keeps.
 *
 * - ksmRmapItems: the mm's rmap_items (6.x keeps mm->ksm_rmap_items, counted in
 *   alloc_rmap_item()/free_rmap_item()).
 * - ksmMergingPages: its rmap_items in the stable tree, i.e. its pages mapped to a
 *   KSM page as ksmd last saw them (6.x's mm->ksm_merging_pages, counted in
 *   stable_tree_append() and when an item leaves the stable tree).
 * - 6.x: ksmZeroPages (mm->ksm_zero_pages: the KSM zero pages it maps),
 *   ksmProcessProfit (ksm_process_profit(): (merging + zero pages) * PAGE_SIZE -
 *   rmap_items * sizeof(struct ksm_rmap_item)), ksmMergeAny (MMF_VM_MERGE_ANY: the
 *   prctl is on) and ksmMergeable (ksm_process_mergeable(): some area is
 *   VM_MERGEABLE).
 *
 * The kernel keeps the first two as counters in the mm_struct (reset on fork since
 * 6.18: the child has no rmap_items of its own); here they are recounted from the
 * mm_slot's rmap_list, which gives the same numbers at every instant and keeps the
 * mm free of KSM's bookkeeping. The zero-page count cannot be recounted (the
 * kernel's can drift from the ptes: see madvise.ts ksmFork()), so KSM keeps it per
 * mm (Ksm.mmZeroPages). 0 for an mm KSM has no slot for.
 */
export interface KsmProcessStats {
  ksmRmapItems: number;
  ksmMergingPages: number;
  ksmZeroPages?: number;
  ksmProcessProfit?: number;
  ksmMergeAny?: boolean;
  ksmMergeable?: boolean;
}

export function readKsmProcessStats(ksm: Ksm, mm: MmStruct): KsmProcessStats {
  let items = 0;
  let merging = 0;
  const slot = ksm.mmSlots.get(mm);
  if (slot !== undefined) {
    for (let it = slot.rmapList; it !== null; it = it.rmapList) {
      items++;
      if ((it.flags & STABLE_FLAG) !== 0) merging++;
    }
  }
  if (!ksm.profile.features.procKsmStat) return { ksmRmapItems: items, ksmMergingPages: merging };
  const zero = ksm.mmZeroPages.get(mm) ?? 0;
  return {
    ksmRmapItems: items,
    ksmMergingPages: merging,
    ksmZeroPages: zero,
    // ksm_process_profit()
    ksmProcessProfit: (merging + zero) * PAGE_SIZE - items * ksm.profile.rmapItemSize,
    ksmMergeAny: (mm.flags & MMF_VM_MERGE_ANY) !== 0,
    ksmMergeable: mm.vmas.some((v) => (v.flags & VM_MERGEABLE) !== 0),
  };
}

/**
 * proc_pid_ksm_stat(): /proc/<pid>/ksm_stat as 6.18 prints it (the last two lines
 * have a colon, the others not: the kernel's own seq_printf formats).
 */
export function formatKsmStat(s: KsmProcessStats): string {
  return (
    `ksm_rmap_items ${s.ksmRmapItems}\n` +
    `ksm_zero_pages ${s.ksmZeroPages ?? 0}\n` +
    `ksm_merging_pages ${s.ksmMergingPages}\n` +
    `ksm_process_profit ${s.ksmProcessProfit ?? 0}\n` +
    `ksm_merge_any: ${s.ksmMergeAny === true ? 'yes' : 'no'}\n` +
    `ksm_mergeable: ${s.ksmMergeable === true ? 'yes' : 'no'}\n`
  );
}
