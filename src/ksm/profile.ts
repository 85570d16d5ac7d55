import { describe } from '../lib/validate.js';
import type { PageChecksum } from '../lib/checksum.js';
import { KernelError } from '../lib/errors.js';
import { JHASH2_PAGE_CHECKSUM } from '../lib/jhash.js';
import { UINT_MAX as MM_UINT_MAX, ULONG_MAX } from '../mm/sysfs.js';
import type { KsmStatName } from './stats.js';

/*
 * Kernel profiles: what differs between the Linux versions Samepage models, as data.
 *
 * A profile is chosen when the kernel is made (`new Kernel({ version })`, src/ksm/
 * kernel.ts) and never changes. It names:
 *
 * - the knobs: the read-write files of /sys/kernel/mm/ksm (KSM_ATTR, 0644), each with
 *   the kernel's parser, the limits that parser and its store() enforce, the value
 *   ksm_init() gives it, the engine field that holds it and what a write does;
 * - the statistics files: the read-only files (KSM_ATTR_RO, 0444), each showing one
 *   statistic of the record in stats.ts;
 * - calc_checksum()'s hash;
 * - the feature switches: behaviour later kernels added or changed. Every switch is
 *   off in 2.6.33; the engine reads those it implements, and refuses (bug) a profile
 *   that turns on one it does not (unimplementedFeatures below, checked when the
 *   engine is made), so a switch is never silently ignored.
 *
 * Only 2.6.33 exists so far. The engine, ksmd, sysfs and the VM manager read what
 * they need from here rather than assuming 2.6.33: the next profile is a new table
 * here plus the code behind its switches, not a hunt for hard-wired numbers.
 *
 * The road not taken: subclassing the engine per version. Most of mm/ksm.c did not
 * change between 2.6.33 and 6.18 (the scan, the trees, the keyhole, the rmap walk);
 * what changed is a handful of decisions inside those functions, which read better as
 * `if (features.x)` at the place the kernel changed than as overrides far from it.
 */

/** The kernel versions there are profiles for. */
export type KernelVersion = '2.6.33';

export const DEFAULT_KERNEL_VERSION: KernelVersion = '2.6.33';

/** The directory of KSM's sysfs files. */
export const KSM_SYSFS_DIR = '/sys/kernel/mm/ksm';

/** The engine fields that hold knobs (src/ksm/ksm.ts), with the type each holds. */
export interface KsmKnobValues {
  run: number;
  pagesToScan: number;
  sleepMillisecs: number;
  /** An unsigned long: a bigint, so that every value reads back exactly. */
  maxKernelPages: bigint;
}
export type KsmKnobField = keyof KsmKnobValues;

/**
 * How a knob's store() parses what is written: 2.6.33's strict_strtoul(buf, 10),
 * decimal digits and at most one trailing newline, any unsigned long (values beyond
 * ULONG_MAX are refused: see mm/sysfs.ts). The knob's min and max then narrow it
 * (2.6.33's stores refuse `> UINT_MAX` for the knobs held in an unsigned int). Later
 * kernels parse with kstrtouint, kstrtoul, kstrtobool or sysfs_streq.
 */
export type KnobParser = 'strict_strtoul';

/**
 * What a knob's store() does once the value parsed.
 *
 * - 'set': assigns it; ksmd reads it at its next batch (sleep_millisecs_store,
 *   pages_to_scan_store, max_kernel_pages_store).
 * - 'run': run_store(): above KSM_RUN_UNMERGE is EINVAL, EBUSY while memory goes
 *   offline, 2 unmerges everything, 1 wakes ksmd.
 */
export type KnobStore = 'set' | 'run';

/** What ksm_init() sets a knob to: a number, or a quarter of RAM in pages (2.6.33's max_kernel_pages). */
export type KnobInitial = number | 'totalram_pages/4';

/** One read-write file of /sys/kernel/mm/ksm (0644). */
export interface KnobSpec {
  /** The file name under KSM_SYSFS_DIR. */
  readonly file: string;
  /** The engine field that holds it. */
  readonly field: KsmKnobField;
  readonly parse: KnobParser;
  /** Accepted values after parsing (the parser's range unless the store narrows it), inclusive. */
  readonly min: bigint;
  readonly max: bigint;
  readonly initial: KnobInitial;
  readonly store: KnobStore;
}

/** One read-only file of /sys/kernel/mm/ksm (0444): a statistic of the record in stats.ts. */
export interface StatFileSpec {
  readonly file: string;
  readonly stat: KsmStatName;
}

/**
 * Behaviour that later kernels added or changed, all off in 2.6.33. Each says what
 * 6.18 does with it on; the engine must implement a switch before a profile may
 * turn it on (IMPLEMENTED_FEATURES).
 */
export interface KsmFeatures {
  /**
   * stable_tree_search() and stable_tree_insert() that walk over a stale stable node
   * (the keyhole found its page gone, and removing the node rebalanced the tree) start
   * again from the root, as later kernels do ("goto again"). Off: 2.6.33 gives up the
   * search (a missed merge, found at a later scan) or the insertion (both pages get
   * COW broken).
   */
  readonly restartStableTreeSearch: boolean;
  /**
   * 6.x's cmp_and_merge_page(): the checksum gate comes before the stable-tree
   * search for a page that is not yet KSM, so a page whose contents just changed
   * waits a scan even when an identical KSM page exists. Off: 2.6.33 searches the
   * stable tree first, and gates only the unstable tree.
   */
  readonly checksumBeforeStableTreeSearch: boolean;
  /**
   * Stable node chains and dups: a KSM page takes sharers only up to
   * max_page_sharing, then a new dup of the same contents is made under a chain
   * (files max_page_sharing, stable_node_chains, stable_node_dups,
   * stable_node_chains_prune_millisecs).
   */
  readonly stableNodeChains: boolean;
  /**
   * use_zero_pages: a zero-filled page is mapped to the zero page itself, with no
   * stable node, counted per mm and in ksm_zero_pages (unmapping one goes through
   * KsmOps.mightUnmapZeroPage).
   */
  readonly zeroPages: boolean;
  /** smart_scan: pages that failed to merge are skipped for a growing number of scans (pages_skipped). */
  readonly smartScan: boolean;
  /** The scan-time advisor: advisor_mode scan-time drives pages_to_scan. */
  readonly advisor: boolean;
  /**
   * Whole-process merging: prctl(PR_SET_MEMORY_MERGE) makes every existing and
   * later area of the process mergeable (KsmOps.prctl, KsmOps.vmaFlags), inherited
   * over fork.
   */
  readonly mergeAny: boolean;
  /** NUMA: merge_across_nodes 0 keeps one stable and one unstable tree per node. */
  readonly numaTrees: boolean;
  /** /proc/<pid>/ksm_stat and /proc/<pid>/ksm_merging_pages exist (stats.ts has the view either way). */
  readonly procKsmStat: boolean;
}

export interface KernelProfile {
  readonly version: KernelVersion;
  /**
   * The read-write files, in the order a caller setting several at once writes them
   * (the VM manager's writeKnobs): `run` last, since its store is the one that acts
   * on the others (run=1 starts ksmd with them; run=2 cannot be taken back).
   */
  readonly knobs: readonly KnobSpec[];
  /** The read-only files, in ksm_attrs[] order. */
  readonly statFiles: readonly StatFileSpec[];
  /** calc_checksum()'s hash. */
  readonly checksum: PageChecksum;
  readonly features: KsmFeatures;
}

const UINT_MAX = BigInt(MM_UINT_MAX);

/**
 * Linux 2.6.33 (mm/ksm.c as of v2.6.33, Documentation/vm/ksm.txt): four knobs and
 * five statistics, jhash2, none of the later features.
 */
export const PROFILE_2_6_33: KernelProfile = {
  version: '2.6.33',
  knobs: [
    // ksm_init(): ksm_max_kernel_pages = totalram_pages / 4. max_kernel_pages_store
    // takes any unsigned long: no UINT_MAX check.
    { file: 'max_kernel_pages', field: 'maxKernelPages', parse: 'strict_strtoul', min: 0n, max: ULONG_MAX, initial: 'totalram_pages/4', store: 'set' },
    { file: 'pages_to_scan', field: 'pagesToScan', parse: 'strict_strtoul', min: 0n, max: UINT_MAX, initial: 100, store: 'set' },
    { file: 'sleep_millisecs', field: 'sleepMillisecs', parse: 'strict_strtoul', min: 0n, max: UINT_MAX, initial: 20, store: 'set' },
    // run_store() narrows this to 0..KSM_RUN_UNMERGE, with its own message.
    { file: 'run', field: 'run', parse: 'strict_strtoul', min: 0n, max: UINT_MAX, initial: 0, store: 'run' },
  ],
  statFiles: [
    { file: 'pages_shared', stat: 'pagesShared' },
    { file: 'pages_sharing', stat: 'pagesSharing' },
    { file: 'pages_unshared', stat: 'pagesUnshared' },
    { file: 'pages_volatile', stat: 'pagesVolatile' },
    { file: 'full_scans', stat: 'fullScans' },
  ],
  checksum: JHASH2_PAGE_CHECKSUM,
  features: {
    restartStableTreeSearch: false,
    checksumBeforeStableTreeSearch: false,
    stableNodeChains: false,
    zeroPages: false,
    smartScan: false,
    advisor: false,
    mergeAny: false,
    numaTrees: false,
    procKsmStat: false,
  },
};

const PROFILES: Readonly<Record<KernelVersion, KernelProfile>> = {
  '2.6.33': PROFILE_2_6_33,
};

/** The profile of `version`; EINVAL for a version there is no profile for. */
export function kernelProfile(version: string): KernelProfile {
  const known = Object.keys(PROFILES) as KernelVersion[];
  if (!(known as string[]).includes(version)) {
    throw new KernelError('EINVAL', `version: expected one of ${known.map((v) => `'${v}'`).join(', ')} (the kernels Samepage has profiles for), got ${describe(version)}`);
  }
  return PROFILES[version as KernelVersion];
}

/** The switches the engine implements: a profile may turn on only these. */
export const IMPLEMENTED_FEATURES: ReadonlySet<keyof KsmFeatures> = new Set<keyof KsmFeatures>(['restartStableTreeSearch']);

/** The features a profile turns on that the engine does not implement (empty for a usable profile). */
export function unimplementedFeatures(profile: KernelProfile): (keyof KsmFeatures)[] {
  return (Object.keys(profile.features) as (keyof KsmFeatures)[]).filter((f) => profile.features[f] && !IMPLEMENTED_FEATURES.has(f));
}

/** The knob of `profile` held in `field`, or null when the kernel has no such file. */
export function findKnob(profile: KernelProfile, field: KsmKnobField): KnobSpec | null {
  return profile.knobs.find((k) => k.field === field) ?? null;
}

/**
 * The sysfs file of a knob a caller (the VM manager) wants to set; EINVAL naming the
 * kernel when its profile has no such knob (6.x has no max_kernel_pages).
 */
export function knobFile(profile: KernelProfile, field: KsmKnobField): string {
  const spec = findKnob(profile, field);
  if (spec === null) {
    throw new KernelError('EINVAL', `${field}: Linux ${profile.version} has no such KSM knob (its knobs: ${profile.knobs.map((k) => k.file).join(', ')})`);
  }
  return `${KSM_SYSFS_DIR}/${spec.file}`;
}
