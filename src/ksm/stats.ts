import type { MmStruct } from '../mm/mm.js';
import type { Ksm } from './ksm.js';
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
 * (When a profile brings statistics 2.6.33 does not have, keeping 2.6.33's outputs
 * byte for byte means leaving those out of its records, not printing them as 0.)
 */

export interface KsmStatSpec {
  /** The field in KsmStats. */
  readonly name: string;
  /** How a report prints it: the sysfs file's name where there is one, else words. */
  readonly label: string;
  /** Its value now. Reads only: no statistic is computed by changing the engine. */
  read(ksm: Ksm): number;
}

export const KSM_STATS = [
  { name: 'pagesShared', label: 'pages_shared', read: (ksm) => ksm.pagesShared },
  { name: 'pagesSharing', label: 'pages_sharing', read: (ksm) => ksm.pagesSharing },
  { name: 'pagesUnshared', label: 'pages_unshared', read: (ksm) => ksm.pagesUnshared },
  { name: 'pagesVolatile', label: 'pages_volatile', read: (ksm) => ksm.pagesVolatile },
  { name: 'fullScans', label: 'full_scans', read: (ksm) => ksm.seqnr },
  { name: 'pagesScanned', label: 'pages scanned', read: (ksm) => ksm.pagesScanned },
] as const satisfies readonly KsmStatSpec[];

export type KsmStatName = (typeof KSM_STATS)[number]['name'];

/** Every KSM statistic at one instant, by name, in KSM_STATS order. */
export type KsmStats = { [K in KsmStatName]: number };

/** Every statistic now. */
export function readKsmStats(ksm: Ksm): KsmStats {
  const out = {} as KsmStats;
  for (const s of KSM_STATS) out[s.name] = s.read(ksm);
  return out;
}

/** The KsmStats fields of a record that carries them (a host sample), and nothing else, in order. */
export function pickKsmStats(from: KsmStats): KsmStats {
  const out = {} as KsmStats;
  for (const s of KSM_STATS) out[s.name] = from[s.name];
  return out;
}

/**
 * KSM's view of one process: what /proc/<pid>/ksm_stat shows in kernels that have the
 * file (the profile's procKsmStat), reduced to what 2.6.33's engine keeps. Fields are
 * the file's lines in camelCase.
 *
 * - ksmRmapItems: the mm's rmap_items (6.x keeps mm->ksm_rmap_items, counted in
 *   alloc_rmap_item()/free_rmap_item()).
 * - ksmMergingPages: its rmap_items in the stable tree, i.e. its pages mapped to a
 *   KSM page as ksmd last saw them (6.x's mm->ksm_merging_pages, counted in
 *   stable_tree_append() and when an item leaves the stable tree).
 *
 * The kernel keeps both as counters in the mm_struct; here they are recounted from
 * the mm_slot's rmap_list, which gives the same numbers at every instant and keeps
 * the mm free of KSM's bookkeeping. 0 for an mm KSM has no slot for.
 */
export interface KsmProcessStats {
  ksmRmapItems: number;
  ksmMergingPages: number;
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
  return { ksmRmapItems: items, ksmMergingPages: merging };
}
