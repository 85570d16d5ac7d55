import { describe } from '../lib/validate.js';
import type { PageChecksum } from '../lib/checksum.js';
import type { ThpOptions } from '../mm/huge-memory.js';
import { KernelError } from '../lib/errors.js';
import { JHASH2_PAGE_CHECKSUM } from '../lib/jhash.js';
import { XXHASH_PAGE_CHECKSUM } from '../lib/xxhash.js';
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
 *   off in 2.6.33 and on in 6.18, and the engine reads each one; a new switch comes
 *   with the code that reads it.
 *
 * Two exist: 2.6.33 (the seeds' kernel, the default) and 6.18 (this machine's). The
 * engine, ksmd, sysfs and the VM manager read what they need from here rather than
 * assuming either: a further profile is a new table here plus the code behind any
 * new switch, not a hunt for hard-wired numbers.
 *
 * The road not taken: subclassing the engine per version. Most of mm/ksm.c did not
 * change between 2.6.33 and 6.18 (the scan, the trees, the keyhole, the rmap walk);
 * what changed is a handful of decisions inside those functions, which read better as
 * `if (features.x)` at the place the kernel changed than as overrides far from it.
 */

/** The kernel versions there are profiles for. */
export type KernelVersion = '2.6.33' | '6.18';

export const DEFAULT_KERNEL_VERSION: KernelVersion = '2.6.33';

/** Every version there is a profile for, oldest first (for messages and the CLI). */
export const KERNEL_VERSIONS: readonly KernelVersion[] = ['2.6.33', '6.18'];

/** The directory of KSM's sysfs files. */
export const KSM_SYSFS_DIR = '/sys/kernel/mm/ksm';

/**
 * The engine fields that hold knobs (src/ksm/ksm.ts), with the type each holds: an
 * unsigned long knob is a bigint, so that every value reads back exactly; the rest
 * are numbers (a bool or an enum as 0/1).
 */
export interface KsmKnobValues {
  run: number;
  pagesToScan: number;
  sleepMillisecs: number;
  /** 2.6.33 only. */
  maxKernelPages: bigint;
  /** 6.x: stable node chains. */
  maxPageSharing: number;
  stableNodeChainsPruneMillisecs: number;
  /** 6.x: bools, 0 or 1. */
  useZeroPages: number;
  mergeAcrossNodes: number;
  smartScan: number;
  /** 6.x: KSM_ADVISOR_NONE (0) or KSM_ADVISOR_SCAN_TIME (1). */
  advisorMode: number;
  advisorMaxCpu: number;
  advisorMinPagesToScan: bigint;
  advisorMaxPagesToScan: bigint;
  advisorTargetScanTime: bigint;
}
export type KsmKnobField = keyof KsmKnobValues;

/**
 * How a knob's store() parses what is written (src/lib/kstrtox.ts has each):
 *
 * - 'strict_strtoul': 2.6.33's strict_strtoul(buf, 10): decimal digits and at most
 *   one trailing newline, any unsigned long.
 * - 'kstrtouint', 'kstrtoul', 'kstrtoint': later kernels' lib/kstrtox.c with base 10:
 *   an optional '+' (and '-' for kstrtoint), decimal digits, at most one newline;
 *   ERANGE for a value the type cannot hold.
 * - 'kstrtobool': the first character decides (1 y t e / 0 n f d, "on" / "of…").
 * - 'sysfs_streq': one of the knob's `choices`, with or without one trailing newline.
 */
export type KnobParser = 'strict_strtoul' | 'kstrtouint' | 'kstrtoul' | 'kstrtoint' | 'kstrtobool' | 'sysfs_streq';

/**
 * What a store() returns when its parser fails: 'EINVAL' for stores that write
 * `if (err) return -EINVAL;`, 'returned' for those that pass the parser's error on
 * (`if (err) return err;`: ERANGE reaches the caller). Limits (min/max) are EINVAL
 * either way.
 */
export type KnobParseErrors = 'EINVAL' | 'returned';

/**
 * The C type of the variable a store() assigns: a value the parser accepted is
 * converted as C converts it ('unsigned int' from an unsigned long keeps the low 32
 * bits: advisor_max_cpu).
 */
export type KnobCType = 'unsigned int' | 'unsigned long' | 'int' | 'bool' | 'enum';

/**
 * What a knob's store() does once the value parsed.
 *
 * - 'set': assigns it; ksmd reads it at its next batch.
 * - 'run': run_store(): above KSM_RUN_UNMERGE is EINVAL, EBUSY while memory goes
 *   offline, 2 unmerges everything, 1 wakes ksmd.
 * - 'sleep': 6.x's sleep_millisecs_store(): assigns it and wakes ksmd from its nap
 *   (ksm_iter_wait), which then sleeps the new value from then on.
 * - 'pages_to_scan': 6.x's pages_to_scan_store(): EINVAL while an advisor runs.
 * - 'stable_tree': max_page_sharing_store(), merge_across_nodes_store(): the same
 *   value is a no-op; another one is EBUSY while any KSM page is shared or a stable
 *   node cannot be removed (remove_all_stable_nodes()).
 * - 'advisor_mode': advisor_mode_store(): a change of mode resets pages_to_scan
 *   (set_advisor_defaults()).
 */
export type KnobStore = 'set' | 'run' | 'sleep' | 'pages_to_scan' | 'stable_tree' | 'advisor_mode';

/** What ksm_init() sets a knob to: a number, or a quarter of RAM in pages (2.6.33's max_kernel_pages). */
export type KnobInitial = number | 'totalram_pages/4';

/** One read-write file of /sys/kernel/mm/ksm (0644). */
export interface KnobSpec {
  /** The file name under KSM_SYSFS_DIR. */
  readonly file: string;
  /** The engine field that holds it. */
  readonly field: KsmKnobField;
  readonly parse: KnobParser;
  readonly parseErrors: KnobParseErrors;
  /** Accepted values after parsing (the parser's range unless the store narrows it), inclusive. */
  readonly min: bigint;
  readonly max: bigint;
  readonly ctype: KnobCType;
  /** For 'sysfs_streq': the words, in the order show() lists them; the value is the index. */
  readonly choices: readonly string[] | null;
  readonly initial: KnobInitial;
  readonly store: KnobStore;
}

/** One read-only file of /sys/kernel/mm/ksm (0444): a statistic of the record in stats.ts. */
export interface StatFileSpec {
  readonly file: string;
  readonly stat: KsmStatName;
}

/**
 * Behaviour that later kernels added or changed, all off in 2.6.33 and all on in
 * 6.18; the engine reads every one.
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
   * stable_node_chains_prune_millisecs). Also 6.x's unmerging: run=2 and the
   * stable_tree stores remove every stable node (remove_all_stable_nodes()).
   */
  readonly stableNodeChains: boolean;
  /**
   * use_zero_pages: a zero-filled page is mapped to the zero page itself, with no
   * stable node, counted per mm and in ksm_zero_pages (unmapping one goes through
   * KsmOps.mightUnmapZeroPage; unmerging breaks it like a KSM page).
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
  /**
   * /proc/<pid>/ksm_stat and /proc/<pid>/ksm_merging_pages exist, and the
   * profits (general_profit, ksm_process_profit); stats.ts has the view either way.
   */
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
  /**
   * Transparent huge pages in the mm underneath (src/mm/huge-memory.ts): null for a
   * kernel without them (2.6.33; THP came in 2.6.38). A THP is the mm's business,
   * but which kernel has one, and whether its split maps zero-filled subpages to the
   * zero page (6.12+), is the version's.
   */
  readonly thp: ThpOptions | null;
  /**
   * sizeof(struct ksm_rmap_item) on x86_64, for the profits: 64 in 6.x (the
   * kernel's own slab object; 2.6.33 shows no profit).
   */
  readonly rmapItemSize: number;
}

const UINT_MAX = BigInt(MM_UINT_MAX);
const INT_MAX = 2147483647n;

/** A knob with the defaults of the common case: an unsigned int parsed by `parse`, EINVAL on any parse error, set. */
function knob(file: string, field: KsmKnobField, parse: KnobParser, initial: KnobInitial, more: Partial<KnobSpec> = {}): KnobSpec {
  return {
    file,
    field,
    parse,
    parseErrors: 'EINVAL',
    min: 0n,
    max: parse === 'kstrtoul' ? ULONG_MAX : UINT_MAX,
    ctype: 'unsigned int',
    choices: null,
    initial,
    store: 'set',
    ...more,
  };
}

/**
 * Linux 2.6.33 (mm/ksm.c as of v2.6.33, Documentation/vm/ksm.txt): four knobs and
 * five statistics, jhash2, none of the later features.
 */
export const PROFILE_2_6_33: KernelProfile = {
  version: '2.6.33',
  knobs: [
    // ksm_init(): ksm_max_kernel_pages = totalram_pages / 4. max_kernel_pages_store
    // takes any unsigned long: no UINT_MAX check.
    knob('max_kernel_pages', 'maxKernelPages', 'strict_strtoul', 'totalram_pages/4', { max: ULONG_MAX, ctype: 'unsigned long' }),
    knob('pages_to_scan', 'pagesToScan', 'strict_strtoul', 100),
    knob('sleep_millisecs', 'sleepMillisecs', 'strict_strtoul', 20),
    // run_store() narrows this to 0..KSM_RUN_UNMERGE, with its own message.
    knob('run', 'run', 'strict_strtoul', 0, { store: 'run' }),
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
  rmapItemSize: 0,
  thp: null,
};

/**
 * Linux 6.18 (mm/ksm.c, Documentation/admin-guide/mm/ksm.rst), as the development
 * machine runs it, CONFIG_NUMA on: thirteen knobs and eleven statistics files, each
 * parsed as its store() parses it (checked write by write against the real files:
 * test/ksm/sysfs-6.18.test.ts), xxhash, every later feature.
 */
export const PROFILE_6_18: KernelProfile = {
  version: '6.18',
  // ksm_attrs[] order, but `run` last (see KernelProfile.knobs).
  knobs: [
    knob('sleep_millisecs', 'sleepMillisecs', 'kstrtouint', 20, { store: 'sleep' }),
    knob('pages_to_scan', 'pagesToScan', 'kstrtouint', 100, { store: 'pages_to_scan' }),
    // merge_across_nodes_store(): kstrtoul, its error returned; above 1 EINVAL.
    knob('merge_across_nodes', 'mergeAcrossNodes', 'kstrtoul', 1, { parseErrors: 'returned', max: 1n, store: 'stable_tree' }),
    // max_page_sharing_store(): kstrtoint, its error returned (ERANGE above INT_MAX);
    // below 2 EINVAL ("a KSM page is created shared by 2 mappings").
    knob('max_page_sharing', 'maxPageSharing', 'kstrtoint', 256, { parseErrors: 'returned', min: 2n, max: INT_MAX, ctype: 'int', store: 'stable_tree' }),
    knob('stable_node_chains_prune_millisecs', 'stableNodeChainsPruneMillisecs', 'kstrtouint', 2000),
    knob('use_zero_pages', 'useZeroPages', 'kstrtobool', 0, { max: 1n, ctype: 'bool' }),
    knob('smart_scan', 'smartScan', 'kstrtobool', 1, { max: 1n, ctype: 'bool' }),
    knob('advisor_mode', 'advisorMode', 'sysfs_streq', 0, { max: 1n, ctype: 'enum', choices: ['none', 'scan-time'], store: 'advisor_mode' }),
    // advisor_max_cpu is an unsigned int set from kstrtoul: C keeps the low 32 bits.
    knob('advisor_max_cpu', 'advisorMaxCpu', 'kstrtoul', 70),
    knob('advisor_min_pages_to_scan', 'advisorMinPagesToScan', 'kstrtoul', 500, { ctype: 'unsigned long' }),
    knob('advisor_max_pages_to_scan', 'advisorMaxPagesToScan', 'kstrtoul', 30000, { ctype: 'unsigned long' }),
    // advisor_target_scan_time_store(): below 1 EINVAL.
    knob('advisor_target_scan_time', 'advisorTargetScanTime', 'kstrtoul', 200, { min: 1n, ctype: 'unsigned long' }),
    knob('run', 'run', 'kstrtouint', 0, { store: 'run' }),
  ],
  statFiles: [
    { file: 'pages_scanned', stat: 'pagesScanned' },
    { file: 'pages_shared', stat: 'pagesShared' },
    { file: 'pages_sharing', stat: 'pagesSharing' },
    { file: 'pages_unshared', stat: 'pagesUnshared' },
    { file: 'pages_volatile', stat: 'pagesVolatile' },
    { file: 'pages_skipped', stat: 'pagesSkipped' },
    { file: 'ksm_zero_pages', stat: 'ksmZeroPages' },
    { file: 'full_scans', stat: 'fullScans' },
    { file: 'stable_node_chains', stat: 'stableNodeChains' },
    { file: 'stable_node_dups', stat: 'stableNodeDups' },
    { file: 'general_profit', stat: 'generalProfit' },
  ],
  checksum: XXHASH_PAGE_CHECKSUM,
  features: {
    restartStableTreeSearch: true,
    checksumBeforeStableTreeSearch: true,
    stableNodeChains: true,
    zeroPages: true,
    smartScan: true,
    advisor: true,
    mergeAny: true,
    numaTrees: true,
    procKsmStat: true,
  },
  rmapItemSize: 64,
  // CONFIG_TRANSPARENT_HUGEPAGE_MADVISE, as Debian and the development machine build it.
  thp: { mode: 'madvise', remapZeroSubpages: true },
};

const PROFILES: Readonly<Record<KernelVersion, KernelProfile>> = {
  '2.6.33': PROFILE_2_6_33,
  '6.18': PROFILE_6_18,
};

/** The profile of `version`; EINVAL for a version there is no profile for. */
export function kernelProfile(version: string): KernelProfile {
  const known = Object.keys(PROFILES) as KernelVersion[];
  if (!(known as string[]).includes(version)) {
    throw new KernelError('EINVAL', `version: expected one of ${known.map((v) => `'${v}'`).join(', ')} (the kernels Samepage has profiles for), got ${describe(version)}`);
  }
  return PROFILES[version as KernelVersion];
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
