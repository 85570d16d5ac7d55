import { z } from 'zod';
import { assertNever } from '../lib/errors.js';
import { MAX_MEMORY_MIB } from '../mm/constants.js';
import { KSMTUNED_DEFAULTS, type KsmtunedConfig } from '../vmm/ksmtuned.js';
import { parseKsmtunedConf } from '../vmm/ksmtuned-conf.js';
import { KUBEVIRT_ANNOTATIONS, resolveKubevirtParams, type KubevirtConfig } from '../vmm/kubevirt.js';
import { MOM_DEFAULTS, type MomConfig } from '../vmm/mom.js';
import { NODE_MEMORY_PARAMS, nodeMemoryParamProblem } from '../vmm/node-memory-tune.js';
import { MAX_BLOCK_MIB } from '../mm/kernel.js';
import { DEFAULT_KERNEL_VERSION, KERNEL_VERSIONS, kernelProfile, type KernelVersion, type KsmKnobField } from '../ksm/profile.js';

/** The most guests one entry's count may make: a host of 4 TiB in guests of the smallest RAM, 16 MiB. */
const MAX_GUESTS = MAX_MEMORY_MIB / 16;
import { ConfigDocument, ConfigError, describe, formatSize, zCount, zDuration, zFraction, zSizeMiB, type ConfigProblem } from '../vmm/config.js';
import type { KsmKnobSettings, KsmPolicy } from '../vmm/host.js';
import { layoutGuest, type ImageCatalog } from '../vmm/image.js';
import type { Capture } from '../vmm/capture-file.js';
import { CaptureSource } from '../vmm/capture-source.js';
import type { WorkloadSpec } from '../vmm/workload.js';

/**
 * The scenario format (YAML or JSON): a host, its guests and their images, how KSM
 * is run, and a timeline of events. Documented in the README ("Scenario files").
 * Keys are snake_case like the sysfs knobs; durations carry units; sizes carry units
 * or are a bare number of MiB, as QEMU's `-m 2048`.
 */

const MiB = 1024 * 1024;
const UINT_MAX = 4294967295;

/**
 * The largest host the model can hold: a pte addresses 2^30 frames (4 TiB) and as many
 * swap slots (src/mm/constants.ts MAX_MEMORY_MIB). Swap slots name contents in the
 * kernel's content store, so no buffer of the device's size is ever made.
 */
const MAX_HOST_MEMORY = MAX_MEMORY_MIB * MiB;
const MAX_SWAP = MAX_MEMORY_MIB * MiB;

/** The files under /sys/kernel/mm/ksm of a kernel version, for its knobs and libvirt's names (node-memory-tune.ts). */
function ksmFiles(version: KernelVersion): Set<string> {
  const p = kernelProfile(version);
  return new Set([...p.knobs.map((k) => k.file), ...p.statFiles.map((f) => f.file)]);
}

const KERNEL_EXPECTED = (i: { input?: unknown }): string =>
  `expected a kernel version Samepage has a profile for: ${KERNEL_VERSIONS.map((v) => `"${v}"`).join(' or ')}, got ${describe(i.input)}`;
/** A kernel version: YAML reads 6.18 unquoted as a number, which is taken as written. */
const zKernel = z.union([z.enum(KERNEL_VERSIONS as unknown as [KernelVersion, ...KernelVersion[]], { error: KERNEL_EXPECTED }), z.number().transform(String).pipe(z.enum(KERNEL_VERSIONS as unknown as [KernelVersion, ...KernelVersion[]], { error: KERNEL_EXPECTED }))], { error: KERNEL_EXPECTED });

const RUN_EXPECTED = (i: { input?: unknown }): string => `expected 0 (stop) or 1 (merge), got ${describe(i.input)}`;

/** A knob the kernel stores as an unsigned int: more than UINT_MAX is EINVAL. */
function zUint(what: string): z.ZodNumber {
  return zCount(what).max(UINT_MAX, { error: (i) => `expected at most 4294967295 (UINT_MAX): the kernel refuses larger values with EINVAL, got ${describe(i.input)}` });
}

const BOOL_EXPECTED = (i: { input?: unknown }): string => `expected 0 or 1 (or false or true), got ${describe(i.input)}`;
/** A 6.x bool knob (kstrtobool): 0/1 or false/true, held as 0/1. */
const zBool = z.union([z.literal(0, { error: BOOL_EXPECTED }), z.literal(1, { error: BOOL_EXPECTED }), z.boolean({ error: BOOL_EXPECTED }).transform((b) => (b ? 1 : 0))], { error: BOOL_EXPECTED });

/**
 * libvirt's node-memory-tune names (src/vmm/node-memory-tune.ts) that a knob map
 * takes: the three libvirt can set. shm_merge_across_nodes needs a kernel with
 * merge_across_nodes (checked against the kernel, below); the statistics' names are
 * refused here, whatever the kernel.
 */
const zLibvirtNames = {
  shm_pages_to_scan: zUint('a number of pages').optional(),
  shm_sleep_millisecs: zUint('a number of milliseconds').optional(),
  shm_merge_across_nodes: zBool.optional(),
  ...Object.fromEntries(
    Object.keys(NODE_MEMORY_PARAMS)
      .filter((k) => !NODE_MEMORY_PARAMS[k]!.settable)
      .map((k) => [k, z.never({ error: nodeMemoryParamProblem(k, () => true, '')! }).optional()]),
  ),
} as const;

const ADVISOR_EXPECTED = (i: { input?: unknown }): string => `expected none or scan-time, got ${describe(i.input)}`;

/**
 * The knobs Linux 6.x added (src/ksm/profile.ts PROFILE_6_18), within what their
 * store() accepts; a kernel without one refuses it (checked against the kernel).
 */
const zModernKnobs = {
  max_page_sharing: zCount('a number of mappings')
    .min(2, { error: 'expected at least 2: a KSM page is made shared by two mappings (the kernel refuses less with EINVAL)' })
    .max(2147483647, { error: (i) => `expected at most 2147483647 (INT_MAX): the kernel refuses larger values with ERANGE, got ${describe(i.input)}` })
    .optional(),
  stable_node_chains_prune_millisecs: zUint('a number of milliseconds').optional(),
  use_zero_pages: zBool.optional(),
  merge_across_nodes: zBool.optional(),
  smart_scan: zBool.optional(),
  advisor_mode: z.enum(['none', 'scan-time'], { error: ADVISOR_EXPECTED }).transform((v) => (v === 'none' ? 0 : 1)).optional(),
  advisor_max_cpu: zUint('a percentage of one CPU').optional(),
  advisor_min_pages_to_scan: zCount('a number of pages').optional(),
  advisor_max_pages_to_scan: zCount('a number of pages').optional(),
  advisor_target_scan_time: zCount('a number of seconds').min(1, { error: 'expected at least 1 (the kernel refuses 0 with EINVAL)' }).optional(),
} as const;
type ModernKnobName = keyof typeof zModernKnobs;
const MODERN_KNOB_FIELDS: Readonly<Record<ModernKnobName, KsmKnobField>> = {
  max_page_sharing: 'maxPageSharing',
  stable_node_chains_prune_millisecs: 'stableNodeChainsPruneMillisecs',
  use_zero_pages: 'useZeroPages',
  merge_across_nodes: 'mergeAcrossNodes',
  smart_scan: 'smartScan',
  advisor_mode: 'advisorMode',
  advisor_max_cpu: 'advisorMaxCpu',
  advisor_min_pages_to_scan: 'advisorMinPagesToScan',
  advisor_max_pages_to_scan: 'advisorMaxPagesToScan',
  advisor_target_scan_time: 'advisorTargetScanTime',
};

/** The knobs of a knob map beyond run/pages_to_scan/sleep_millisecs/max_kernel_pages, by the engine's names (shm_merge_across_nodes as merge_across_nodes). */
function modernKnobs(k: Partial<Record<ModernKnobName | 'shm_merge_across_nodes', number>>): KsmKnobSettings {
  const out: KsmKnobSettings = {};
  for (const name of Object.keys(MODERN_KNOB_FIELDS) as ModernKnobName[]) {
    const v = name === 'merge_across_nodes' ? (k.merge_across_nodes ?? k.shm_merge_across_nodes) : k[name];
    if (v !== undefined) out[MODERN_KNOB_FIELDS[name]] = v;
  }
  return out;
}

const zKsmFixed = z.strictObject({
  policy: z.literal('fixed'),
  run: z.number({ error: RUN_EXPECTED }).int({ error: RUN_EXPECTED }).min(0, { error: RUN_EXPECTED }).max(1, { error: RUN_EXPECTED }).default(1),
  pages_to_scan: zUint('a number of pages').optional(),
  sleep_millisecs: zUint('a number of milliseconds').optional(),
  max_kernel_pages: zCount('a number of pages').optional(),
  ...zModernKnobs,
  ...zLibvirtNames,
});

const zKsmtuned = z.strictObject({
  policy: z.literal('ksmtuned'),
  /** A ksmtuned.conf, relative to the scenario file; the keys below override it. */
  conf: z.string().optional(),
  monitor_interval: zDuration.optional(),
  npages_boost: z.number().int().optional(),
  npages_decay: z.number().int().optional(),
  npages_min: zUint('a number of pages').optional(),
  npages_max: zUint('a number of pages').optional(),
  sleep_msec: zCount().optional(),
  thres_coef: zCount().optional(),
  thres_const: zCount('a number of kB').optional(),
  max_kernel_pages: zCount('a number of pages').optional(),
});

const zMom = z.strictObject({
  policy: z.literal('mom'),
  pages_boost: z.number().int().optional(),
  pages_decay: z.number().int().optional(),
  npages_min: zUint('a number of pages').optional(),
  npages_max: zUint('a number of pages').optional(),
  sleep_ms_baseline: zCount('a number of milliseconds').optional(),
  free_percent: zFraction.optional(),
  host_monitor_interval: zDuration.optional(),
  policy_engine_interval: zDuration.optional(),
  sample_history_length: zCount('a number of samples').min(1, { error: 'expected 1 or more' }).optional(),
  max_kernel_pages: zCount('a number of pages').optional(),
});

const zKubevirt = z.strictObject({
  policy: z.literal('kubevirt'),
  pages_boost: z.number().int().optional(),
  pages_decay: z.number().int().optional(),
  npages_min: z.number().int().optional(),
  npages_max: z.number().int().optional(),
  npages_init: z.number().int().optional(),
  sleep_ms_baseline: z.number().int().optional(),
  free_percent: z.number().optional(),
  interval: zDuration.optional(),
  max_kernel_pages: zCount('a number of pages').optional(),
});

const POLICIES = "'fixed', 'ksmtuned', 'mom' or 'kubevirt'";

// A bad or missing policy is reported at ksm.policy, so the message does not name the field again.
const zKsm = z.discriminatedUnion('policy', [zKsmFixed, zKsmtuned, zMom, zKubevirt], {
  error: (i) =>
    i.code === 'invalid_union'
      ? `expected ${POLICIES}, got ${describe((i.input as Record<string, unknown>).policy)}`
      : `expected a map with policy: ${POLICIES.replace(/'/g, '')}, got ${describe(i.input)}`,
});

const WORKLOAD_EXPECTED = (i: { input?: unknown }): string => `expected 'idle' or a map with dirty_rate (pages per second) and/or burst, got ${describe(i.input)}`;

// config.ts reports a union by its first branch's issue when no branch got further, so
// that branch (the literal) carries the message that names both forms.
/** A burst period: a duration of more than 0 (0 would start bursts without end). */
const zPeriod = zDuration.refine((ms) => ms > 0, { error: 'expected more than 0s' });

const zWorkload = z.union(
  [
    z.literal('idle', { error: WORKLOAD_EXPECTED }),
    z.strictObject({
      dirty_rate: zCount('pages per second').optional(),
      burst: z
        .strictObject({
          every: zPeriod,
          pages: zCount('a number of pages'),
          over: zDuration,
        })
        .optional(),
    }),
  ],
  { error: WORKLOAD_EXPECTED },
);

const MEM_MERGE_EXPECTED = (i: { input?: unknown }): string => `expected on or off (QEMU's mem-merge), or true or false, got ${describe(i.input)}`;
/** QEMU's `mem-merge=on|off` spelling, or a boolean. */
const zMemMerge = z.union([z.boolean({ error: MEM_MERGE_EXPECTED }), z.enum(['on', 'off'], { error: MEM_MERGE_EXPECTED }).transform((v) => v === 'on')], { error: MEM_MERGE_EXPECTED });

const zGuest = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { error: (i) => `expected a name of letters, digits, '.', '_' and '-', got ${describe(i.input)}` }),
  count: zCount('a number of guests', 1).max(MAX_GUESTS, { error: (i) => `expected a number of guests (1 to ${MAX_GUESTS}), got ${describe(i.input)}` }).optional(),
  image: z.string().optional(),
  /** A guest of a capture file (`samepage capture`) instead of an image. */
  capture: z.strictObject({ file: z.string().min(1), guest: z.string().min(1) }).optional(),
  version: z.union([z.string(), z.number().transform(String)]).optional(),
  memory: zSizeMiB,
  mem_merge: zMemMerge.default(true),
  merge_domain: z
    .string({ error: (i) => `expected a merge domain name, got ${describe(i.input)}` })
    .regex(/^[A-Za-z0-9._-]{1,64}$/, { error: (i) => `expected a merge domain name of 1 to 64 letters, digits, '.', '_' and '-', got ${describe(i.input)}` })
    .optional(),
  workload: zWorkload.default('idle'),
  start: z.union([z.literal('never', { error: (i) => `expected a time like '30s', or 'never', got ${describe(i.input)}` }), zDuration]).default(0),
  stagger: zDuration.optional(),
});

const zBurst = z.strictObject({ guest: z.string(), pages: zCount('a number of pages'), over: zDuration.default(0) });
const zMigrate = z.strictObject({ guest: z.string(), pages: zCount('a number of pages') });
const zWorkloadChange = z.strictObject({
  guest: z.string(),
  dirty_rate: zCount('pages per second').optional(),
  burst: z.strictObject({ every: zPeriod, pages: zCount('a number of pages'), over: zDuration }).nullable().optional(),
});
const zKnobs = z.strictObject({
  run: zCount().max(2, { error: 'expected 0, 1 or 2' }).optional(),
  pages_to_scan: zUint('a number of pages').optional(),
  sleep_millisecs: zUint('a number of milliseconds').optional(),
  max_kernel_pages: zCount().optional(),
  ...zModernKnobs,
  ...zLibvirtNames,
});

/** Every action an event may carry; exactly one per event. */
const EVENT_ACTIONS = {
  start: z.string(),
  stop: z.string(),
  pause: z.string(),
  resume: z.string(),
  destroy: z.string(),
  burst: zBurst,
  workload: zWorkloadChange,
  pressure: zSizeMiB,
  release_pressure: z.literal(true),
  reclaim: zCount('a number of pages'),
  compact: z.literal(true),
  migrate: zMigrate,
  offline: zCount('a memory block number'),
  online: zCount('a memory block number'),
  knobs: zKnobs,
  ksm: zKsm,
} as const;
type ActionName = keyof typeof EVENT_ACTIONS;
const ACTION_NAMES = Object.keys(EVENT_ACTIONS) as ActionName[];

const zEvent = z.strictObject({ at: zDuration, ...partial(EVENT_ACTIONS) });

function partial<T extends Record<string, z.ZodType>>(shape: T): { [K in keyof T]: z.ZodOptional<T[K]> } {
  const out: Record<string, z.ZodType> = {};
  for (const [k, v] of Object.entries(shape)) out[k] = v.optional();
  return out as { [K in keyof T]: z.ZodOptional<T[K]> };
}

const MERGE_DOMAINS_EXPECTED = (i: { input?: unknown }): string => `expected on (the guests' merge_domain apply) or off (every guest in the common domain), got ${describe(i.input)}`;
/**
 * A variant: its own KSM policy, its own kernel, whether the guests' merge domains
 * apply (merge_domains: off puts every guest in the common domain, to see what the
 * domains cost), or any of these (the scenario's where left out).
 */
const zVariant = z.strictObject({
  name: z.string().min(1),
  ksm: zKsm.optional(),
  kernel: zKernel.optional(),
  merge_domains: z.union([z.boolean({ error: MERGE_DOMAINS_EXPECTED }), z.enum(['on', 'off'], { error: MERGE_DOMAINS_EXPECTED }).transform((v) => v === 'on')], { error: MERGE_DOMAINS_EXPECTED }).optional(),
});

const zHost = z.strictObject({
  memory: zSizeMiB,
  swap: zSizeMiB.default(0),
  block: zSizeMiB.default(128 * MiB),
  kernel: zKernel.default(DEFAULT_KERNEL_VERSION),
});

/** The scenario's top level; each field is validated on its own (see parseScenario). */
const zScenario = z.strictObject({
  name: z.string().min(1),
  description: z.string().default(''),
  seed: zCount('a seed (a whole number)').default(1),
  host: zHost,
  ksm: zKsm.default({ policy: 'fixed', run: 1 }),
  duration: zDuration,
  sample_every: zDuration.default(10_000),
  tick: zDuration.default(100),
  guests: z.array(z.unknown()).min(1, { error: 'expected at least one guest' }),
  events: z.array(z.unknown()).default([]),
  variants: z.array(z.unknown()).optional(),
});

const SCENARIO_EXPECTED = (v: unknown): string => `expected a scenario: a map with name, host, duration and guests, got ${v === null || v === undefined ? 'an empty file' : describe(v)}`;

type RawKsm = z.output<typeof zKsm>;
/** A policy whose fields are the valid ones of a map that failed validation as a whole. */
type PartialKsm = { [P in RawKsm['policy']]: { policy: P } & Partial<Extract<RawKsm, { policy: P }>> }[RawKsm['policy']];
const KSM_BRANCHES = { fixed: zKsmFixed, ksmtuned: zKsmtuned, mom: zMom, kubevirt: zKubevirt } as const;
type RawGuest = z.output<typeof zGuest>;
type RawEvent = z.output<typeof zEvent>;

export interface ScenarioGuest {
  name: string;
  /** The image's name; for a captured guest, its label ('id-1 (captures/busybox-4.cap)'). */
  image: string;
  /**
   * A captured guest (src/vmm/capture-source.ts): the capture file (the path as
   * resolved against the scenario's directory), the guest's name in it and the
   * sha-256 of the file read at parse time; null for an image.
   */
  capture: { file: string; guest: string; digest: string } | null;
  version: string | null;
  memoryMiB: number;
  memMerge: boolean;
  /** Its KSM merge domain ('' the common one: merge_domain left out). */
  mergeDomain: string;
  workload: WorkloadSpec;
  /** When it boots, or null: only when an event starts it. */
  startAt: number | null;
}

export type ScenarioAction =
  | { kind: 'start' | 'stop' | 'pause' | 'resume' | 'destroy'; guest: string }
  | { kind: 'burst'; guest: string; pages: number; overMs: number }
  | { kind: 'workload'; guest: string; dirtyRate: number | null | undefined; burst: WorkloadSpec['burst'] | undefined }
  | { kind: 'pressure'; bytes: number }
  | { kind: 'release_pressure' }
  | { kind: 'reclaim'; pages: number }
  | { kind: 'compact' }
  | { kind: 'migrate'; guest: string; pages: number }
  | { kind: 'offline' | 'online'; block: number }
  | ({ kind: 'knobs' } & KsmKnobSettings)
  | { kind: 'ksm'; policy: KsmPolicy };

export interface ScenarioEvent {
  at: number;
  action: ScenarioAction;
}

/** A validated scenario, in the library's units (bytes, ms, MiB). */
export interface Scenario {
  file: string;
  name: string;
  description: string;
  seed: number;
  memoryMiB: number;
  swapMiB: number;
  blockMiB: number;
  /** The kernel version of the host (host.kernel), unless a variant says otherwise. */
  kernel: KernelVersion;
  ksm: KsmPolicy;
  durationMs: number;
  sampleEveryMs: number;
  tickMs: number;
  guests: ScenarioGuest[];
  /** Events in the order they happen (ties in file order). */
  events: ScenarioEvent[];
  /** Runs to make: one per variant, or one with the scenario's own ksm and kernel (name null). */
  variants: ScenarioVariant[];
}

/** One run of a scenario: its name (null without variants), KSM policy and kernel. */
export interface ScenarioVariant {
  name: string | null;
  ksm: KsmPolicy;
  kernel: KernelVersion;
  /** Whether the guests' merge domains apply (false: every guest in the common domain). */
  mergeDomains: boolean;
}

/** Options for parseScenario. */
export interface ParseScenarioOptions {
  /**
   * Read a file a scenario names (a ksmtuned.conf), given the path as written in the
   * scenario: loadScenario resolves it against the scenario's directory. Without it,
   * a scenario that names a file is refused.
   */
  readFile?: (path: string) => string;
  /**
   * Read a capture file a guest names: its bytes, and the path to keep for it (as
   * resolved). Without it, a scenario with a captured guest is refused.
   */
  readCapture?: (path: string) => { path: string; capture: Capture; digest: string };
}

function toPolicy(k: RawKsm, conf: Partial<KsmtunedConfig> = {}): KsmPolicy {
  const maxKernelPages = k.max_kernel_pages ?? null;
  switch (k.policy) {
    case 'fixed': {
      const knobs = modernKnobs(k);
      return {
        policy: 'fixed',
        run: k.run,
        pagesToScan: k.pages_to_scan ?? k.shm_pages_to_scan ?? 100,
        sleepMillisecs: k.sleep_millisecs ?? k.shm_sleep_millisecs ?? 20,
        maxKernelPages,
        ...(Object.keys(knobs).length > 0 ? { knobs } : {}),
      };
    }
    case 'ksmtuned': {
      const config: Partial<KsmtunedConfig> = { ...conf };
      if (k.monitor_interval !== undefined) config.monitorInterval = Math.round(k.monitor_interval / 1000);
      if (k.npages_boost !== undefined) config.npagesBoost = k.npages_boost;
      if (k.npages_decay !== undefined) config.npagesDecay = k.npages_decay;
      if (k.npages_min !== undefined) config.npagesMin = k.npages_min;
      if (k.npages_max !== undefined) config.npagesMax = k.npages_max;
      if (k.sleep_msec !== undefined) config.sleepMsec = k.sleep_msec;
      if (k.thres_coef !== undefined) config.thresCoef = k.thres_coef;
      if (k.thres_const !== undefined) config.thresConst = k.thres_const;
      return { policy: 'ksmtuned', config, maxKernelPages };
    }
    case 'mom': {
      const config: Partial<MomConfig> = {};
      if (k.pages_boost !== undefined) config.pagesBoost = k.pages_boost;
      if (k.pages_decay !== undefined) config.pagesDecay = k.pages_decay;
      if (k.npages_min !== undefined) config.npagesMin = k.npages_min;
      if (k.npages_max !== undefined) config.npagesMax = k.npages_max;
      if (k.sleep_ms_baseline !== undefined) config.sleepMsBaseline = k.sleep_ms_baseline;
      if (k.free_percent !== undefined) config.freePercent = k.free_percent;
      if (k.host_monitor_interval !== undefined) config.hostMonitorInterval = Math.round(k.host_monitor_interval / 1000);
      if (k.policy_engine_interval !== undefined) config.policyEngineInterval = Math.round(k.policy_engine_interval / 1000);
      if (k.sample_history_length !== undefined) config.sampleHistoryLength = k.sample_history_length;
      return { policy: 'mom', config, maxKernelPages };
    }
    case 'kubevirt': {
      const config: Partial<KubevirtConfig> = {};
      if (k.pages_boost !== undefined) config.pagesBoost = k.pages_boost;
      if (k.pages_decay !== undefined) config.pagesDecay = k.pages_decay;
      if (k.npages_min !== undefined) config.nPagesMin = k.npages_min;
      if (k.npages_max !== undefined) config.nPagesMax = k.npages_max;
      if (k.npages_init !== undefined) config.nPagesInit = k.npages_init;
      if (k.sleep_ms_baseline !== undefined) config.sleepMsBaseline = k.sleep_ms_baseline;
      if (k.free_percent !== undefined) config.freePercent = k.free_percent;
      if (k.interval !== undefined) config.interval = Math.round(k.interval / 1000);
      return { policy: 'kubevirt', config, maxKernelPages };
    }
    default:
      return assertNever(k, 'KSM policy');
  }
}

function toWorkload(w: RawGuest['workload']): WorkloadSpec {
  if (w === 'idle') return { dirtyRate: null, burst: null };
  return {
    dirtyRate: w.dirty_rate ?? null,
    burst: w.burst === undefined ? null : { everyMs: w.burst.every, pages: w.burst.pages, overMs: w.burst.over },
  };
}

/**
 * Parse and validate a scenario's text. Every problem in the file is reported in one
 * pass, in line order: the schema's (each part of the file is validated on its own, so
 * a bad field does not hide the rest) and those the schema cannot see (unknown images,
 * guests too small for their image, events naming unknown guests, memory not a whole
 * number of blocks, values the kernel would refuse, a host larger than the model can
 * hold). A cross-field check runs whenever the fields it reads are valid.
 */
export function parseScenario(text: string, file: string, images: ImageCatalog, opts: ParseScenarioOptions = {}): Scenario {
  const doc = ConfigDocument.parse(text, file);
  const root = doc.value();
  if (root === null || typeof root !== 'object' || Array.isArray(root)) {
    throw new ConfigError(file, [{ line: doc.lineOf([]), field: '', message: SCENARIO_EXPECTED(root) }]);
  }
  const rootMap = root as Record<string, unknown>;
  const problems: ConfigProblem[] = [];
  const top = doc.fields(zScenario, [], problems, root)!;
  const at = (path: readonly PropertyKey[], message: string): void => {
    problems.push(doc.problem(path, message));
  };
  const duration = top.duration;

  // ---- host ----
  let blockMiB: number | undefined;
  // Field by field, so that one bad field leaves the others' checks running (problems
  // zScenario found here too are the same ones, and reported once).
  const host = rootMap.host === undefined ? null : doc.fields(zHost, ['host'], problems, root);
  if (host !== null) {
    if (host.block !== undefined) {
      const b = host.block / MiB;
      if (!Number.isInteger(b) || b <= 0 || (b & (b - 1)) !== 0) at(['host', 'block'], `expected a power of two MiB (like 128MiB), got ${formatSize(host.block)}`);
      else if (b > MAX_BLOCK_MIB) at(['host', 'block'], `expected at most 2GiB (Linux's largest memory block), got ${formatSize(host.block)}`);
      else blockMiB = b;
    }
    if (host.memory !== undefined) {
      if (host.memory > MAX_HOST_MEMORY) {
        at(['host', 'memory'], `expected at most 4 TiB: a pte addresses 2^30 frames of 4 KiB, got ${formatSize(host.memory)}`);
      } else if (host.memory % MiB !== 0 || host.memory === 0) {
        // The last memory block may be partial (src/mm/physmem.ts), as on Linux.
        at(['host', 'memory'], `expected a positive whole number of MiB, got ${formatSize(host.memory)}`);
      }
    }
    if (host.swap !== undefined) {
      if (host.swap % MiB !== 0) at(['host', 'swap'], 'expected a whole number of MiB');
      else if (host.swap > MAX_SWAP) at(['host', 'swap'], `expected at most ${formatSize(MAX_SWAP)}: a swap pte addresses 2^30 slots of 4 KiB, got ${formatSize(host.swap)}`);
    }
  }
  const memoryKb = host?.memory !== undefined && host.memory <= MAX_HOST_MEMORY ? host.memory / 1024 : null;

  // ---- kernels: the host's, and each variant's ----
  // A knob must exist in every kernel it will be written to: a variant's policy in its
  // kernel, the scenario's policy in those of the variants that keep it, an event in
  // every run's.
  const hostKernel: KernelVersion | null = host === null ? DEFAULT_KERNEL_VERSION : (host.kernel ?? null);
  const rawVariantList = Array.isArray(rootMap.variants) ? (rootMap.variants as unknown[]) : null;
  const variantKernel = (i: number): KernelVersion | null => {
    const raw = valueAt(root, ['variants', i, 'kernel']);
    if (raw === undefined) return hostKernel;
    const r = zKernel.safeParse(raw);
    return r.success ? r.data : null;
  };
  const known = (vs: (KernelVersion | null)[]): KernelVersion[] => [...new Set(vs.filter((v): v is KernelVersion => v !== null))];
  const runKernels: KernelVersion[] = rawVariantList === null ? known([hostKernel]) : known(rawVariantList.map((_, i) => variantKernel(i)));
  const scenarioPolicyKernels: KernelVersion[] =
    rawVariantList === null ? known([hostKernel]) : known(rawVariantList.map((v, i) => (v !== null && typeof v === 'object' && (v as Record<string, unknown>).ksm !== undefined ? null : variantKernel(i))));
  /** Every knob of the knob map at `path` must be a file of each kernel; libvirt's names too. */
  const checkKnobNames = (path: readonly PropertyKey[], kernels: readonly KernelVersion[]): void => {
    const map = valueAt(root, path);
    if (map === null || typeof map !== 'object') return;
    for (const key of Object.keys(map)) {
      for (const version of kernels) {
        const files = ksmFiles(version);
        let message: string | null = null;
        if (Object.hasOwn(NODE_MEMORY_PARAMS, key)) {
          if (NODE_MEMORY_PARAMS[key]!.settable) message = nodeMemoryParamProblem(key, (f) => files.has(f), version);
        } else if (Object.hasOwn(zModernKnobs, key) || key === 'max_kernel_pages') {
          if (!files.has(key)) message = `Linux ${version} has no ${key} (its knobs: ${kernelProfile(version).knobs.map((k) => k.file).join(', ')})`;
        }
        if (message !== null) {
          at([...path, key], message);
          break;
        }
      }
    }
  };

  if (top.sample_every !== undefined && top.sample_every <= 0) at(['sample_every'], 'expected more than 0s');
  if (top.tick !== undefined && top.tick <= 0) at(['tick'], 'expected more than 0ms');
  if (duration !== undefined && duration <= 0) at(['duration'], 'expected more than 0s');

  // ---- KSM policies ----
  const policyAt = (path: readonly PropertyKey[], kernels: readonly KernelVersion[]): KsmPolicy | null => {
    checkKnobNames(path, kernels);
    const r = doc.check(zKsm, path, problems, root);
    let k: PartialKsm;
    if (r !== null) k = r.value;
    else {
      // The checks across its fields still run on the fields that are valid (their
      // own problems are already reported).
      const policy = (valueAt(root, [...path, 'policy']) ?? null) as string | null;
      if (policy === null || !Object.hasOwn(KSM_BRANCHES, policy)) return null;
      const branch = KSM_BRANCHES[policy as RawKsm['policy']] as unknown as z.ZodObject<z.ZodRawShape>;
      const fields = doc.fields(branch, path, [], root);
      if (fields === null) return null;
      k = { ...fields, policy } as PartialKsm;
    }
    const conf = k.policy === 'ksmtuned' && k.conf !== undefined ? readConf(k.conf, [...path, 'conf']) : {};
    checkKsm(k, path, conf ?? {});
    return r === null || conf === null ? null : toPolicy(r.value, conf);
  };
  const readConf = (confPath: string, path: readonly PropertyKey[]): Partial<KsmtunedConfig> | null => {
    if (opts.readFile === undefined) {
      at(path, 'a ksmtuned.conf can only be read from a scenario file (loadScenario)');
      return null;
    }
    let confText: string;
    try {
      confText = opts.readFile(confPath);
    } catch (e) {
      at(path, `cannot read ${confPath} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      return null;
    }
    try {
      return parseKsmtunedConf(confText, confPath).config;
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      for (const p of e.problems) at(path, `${confPath}${p.line > 0 ? `:${p.line}` : ''}: ${p.field === '' ? '' : `${p.field}: `}${p.message}`);
      return null;
    }
  };
  const wholeSeconds = (path: readonly PropertyKey[], key: string, ms: number | undefined): void => {
    // The daemons sleep whole seconds; under 1s a governor would be due again at once, forever.
    if (ms !== undefined && (ms < 1000 || ms % 1000 !== 0)) at([...path, key], `expected a whole number of seconds, 1s or more, got ${ms}ms`);
  };
  const checkKsm = (k: PartialKsm, path: readonly PropertyKey[], conf: Partial<KsmtunedConfig>): void => {
    switch (k.policy) {
      case 'fixed':
        for (const [name, alias] of [['pages_to_scan', 'shm_pages_to_scan'], ['sleep_millisecs', 'shm_sleep_millisecs'], ['merge_across_nodes', 'shm_merge_across_nodes']] as const) {
          if (k[name] !== undefined && k[alias] !== undefined) at([...path, alias], `libvirt's name for ${name}, which is set too (line ${doc.lineOf([...path, name])}): set one`);
        }
        break;
      case 'ksmtuned': {
        wholeSeconds(path, 'monitor_interval', k.monitor_interval);
        // increase_npages() clamps to min first: with min above max, pages_to_scan would sit at min.
        const min = k.npages_min ?? conf.npagesMin ?? KSMTUNED_DEFAULTS.npagesMin;
        const max = k.npages_max ?? conf.npagesMax ?? KSMTUNED_DEFAULTS.npagesMax;
        if (min > max) at([...path, k.npages_min !== undefined ? 'npages_min' : 'npages_max'], k.npages_min !== undefined ? `expected at most npages_max (${max}), got ${min}` : `expected at least npages_min (${min}), got ${max}`);
        const sleepMsec = k.sleep_msec ?? conf.sleepMsec ?? KSMTUNED_DEFAULTS.sleepMsec;
        const sleep = memoryKb === null ? 0 : Math.trunc((sleepMsec * 16 * 1024 * 1024) / memoryKb);
        if (sleep > UINT_MAX) {
          at([...path, k.sleep_msec !== undefined ? 'sleep_msec' : 'conf'], `ksmtuned would write sleep_millisecs ${sleep} on this host (KSM_SLEEP_MSEC ${sleepMsec} × 16 GiB / MemTotal), above UINT_MAX: the kernel refuses it`);
        }
        break;
      }
      case 'mom': {
        wholeSeconds(path, 'host_monitor_interval', k.host_monitor_interval);
        wholeSeconds(path, 'policy_engine_interval', k.policy_engine_interval);
        const min = k.npages_min ?? MOM_DEFAULTS.npagesMin;
        const max = k.npages_max ?? MOM_DEFAULTS.npagesMax;
        // change_npages clamps to max first, then min: min wins, as it does in ksmtuned.
        if (min > max) at([...path, k.npages_min !== undefined ? 'npages_min' : 'npages_max'], k.npages_min !== undefined ? `expected at most npages_max (${max}), got ${min}` : `expected at least npages_min (${min}), got ${max}`);
        const baseline = k.sleep_ms_baseline ?? MOM_DEFAULTS.sleepMsBaseline;
        const sleep = memoryKb === null ? 0 : Math.trunc((baseline * 16777216) / memoryKb);
        if (sleep > UINT_MAX) at([...path, 'sleep_ms_baseline'], `MOM would write sleep_millisecs ${sleep} on this host (${baseline} × 16 GiB / MemTotal), above UINT_MAX: the kernel refuses it`);
        break;
      }
      case 'kubevirt': {
        wholeSeconds(path, 'interval', k.interval);
        // boundCheck (kubevirt.ts): an override out of bounds is logged and replaced;
        // a scenario is told instead, with what KubeVirt would do.
        const kp = toPolicy({ max_kernel_pages: undefined, ...k });
        const kv = (kp.policy === 'kubevirt' ? kp.config : {}) as Partial<KubevirtConfig>;
        const resolved = resolveKubevirtParams(kv);
        const keys: [keyof typeof KUBEVIRT_ANNOTATIONS, string][] = [
          ['pagesBoost', 'pages_boost'],
          ['pagesDecay', 'pages_decay'],
          ['nPagesMin', 'npages_min'],
          ['nPagesMax', 'npages_max'],
          ['nPagesInit', 'npages_init'],
          ['sleepMsBaseline', 'sleep_ms_baseline'],
          ['freePercent', 'free_percent'],
        ];
        for (const [field, key] of keys) {
          const w = resolved.warnings.find((x) => x.startsWith(`${KUBEVIRT_ANNOTATIONS[field]} `));
          if (w === undefined) continue;
          const bounds = KUBEVIRT_BOUNDS[field](resolved.config);
          at([...path, key], `expected ${bounds}, got ${String(kv[field])}: KubeVirt's handler would log "${w}"`);
        }
        for (const key of ['npages_max', 'npages_init'] as const) {
          const v = k[key];
          if (v !== undefined && v > UINT_MAX) at([...path, key], `expected at most 4294967295 (UINT_MAX): the kernel refuses larger pages_to_scan values, got ${v}`);
        }
        break;
      }
      default:
        assertNever(k, 'KSM policy');
    }
  };

  const ksm = rootMap.ksm === undefined ? null : policyAt(['ksm'], scenarioPolicyKernels);

  // ---- guests ----
  const guests: ScenarioGuest[] = [];
  const names = new Map<string, number>();
  // Events are checked against guest names only when every guest's name could be read.
  let namesKnown = true;
  const rawGuests = Array.isArray(rootMap.guests) ? (rootMap.guests as unknown[]) : [];
  rawGuests.forEach((_, i) => {
    const g = doc.fields(zGuest, ['guests', i], problems, root);
    if (g === null || g.name === undefined || (g.count === undefined && valueAt(root, ['guests', i, 'count']) !== undefined)) {
      namesKnown = false;
      if (g === null) return;
    }
    let image = null;
    let captured: { file: string; guest: string; digest: string; label: string; ramBytes: number } | null = null;
    const hasImage = valueAt(root, ['guests', i, 'image']) !== undefined;
    const hasCapture = valueAt(root, ['guests', i, 'capture']) !== undefined;
    if (hasImage && hasCapture) at(['guests', i, 'capture'], 'expected image or capture, not both');
    else if (!hasImage && !hasCapture) at(['guests', i, 'image'], 'missing (expected an image name, or capture: { file, guest })');
    if (g.capture !== undefined && !hasImage) {
      if (opts.readCapture === undefined) at(['guests', i, 'capture', 'file'], 'captured guests need the scenario read from a file');
      else {
        try {
          const r = opts.readCapture(g.capture.file);
          const src = new CaptureSource(r.capture, g.capture.guest, r.path, r.digest);
          captured = { file: r.path, guest: g.capture.guest, digest: r.digest, label: src.label, ramBytes: src.minRamBytes };
        } catch (e) {
          at(['guests', i, 'capture', (e as Error).message.includes(' has no guest ') ? 'guest' : 'file'], (e as Error).message);
        }
      }
    }
    if (g.image !== undefined) {
      try {
        image = images.get(g.image, g.version);
      } catch (e) {
        at(['guests', i, g.version !== undefined && images.list().some((x) => x.name === g.image) ? 'version' : 'image'], (e as Error).message);
      }
    }
    if (g.memory !== undefined) {
      if (g.memory % MiB !== 0) at(['guests', i, 'memory'], 'expected a whole number of MiB');
      else if (captured !== null && g.memory < captured.ramBytes) at(['guests', i, 'memory'], `${captured.label} has ${captured.ramBytes / MiB} MiB of RAM; expected at least that`);
      else if (image !== null) {
        try {
          layoutGuest(image, g.memory);
        } catch (e) {
          at(['guests', i, 'memory'], (e as Error).message);
        }
      }
    }
    if (g.stagger !== undefined && valueAt(root, ['guests', i, 'count']) === undefined) at(['guests', i, 'stagger'], 'only means something with count');
    const count = g.count ?? 1;
    if (g.start !== undefined && g.start !== 'never' && duration !== undefined) {
      // A guest due to start after the end would silently never run.
      const last = g.start + (count - 1) * (g.stagger ?? 0);
      if (g.start > duration) at(['guests', i, 'start'], `after the end of the scenario (duration ${duration / 1000}s)`);
      else if (last > duration) {
        at(['guests', i, 'stagger'], `the last guest, ${g.name ?? '?'}-${count}, would start at ${last / 1000}s, after the end of the scenario (duration ${duration / 1000}s)`);
      }
    }
    if (g.name === undefined) return;
    for (let j = 0; j < count; j++) {
      const name = g.count === undefined ? g.name : `${g.name}-${j + 1}`;
      if (names.has(name)) {
        at(['guests', i, 'name'], `guest ${name} is already defined by guests[${names.get(name)!}]`);
        continue;
      }
      names.set(name, i);
      if ((g.image === undefined && captured === null) || g.memory === undefined || g.mem_merge === undefined || g.workload === undefined || g.start === undefined) continue;
      guests.push({
        name,
        image: captured !== null ? captured.label : g.image!,
        capture: captured === null ? null : { file: captured.file, guest: captured.guest, digest: captured.digest },
        version: image?.version ?? g.version ?? null,
        memoryMiB: g.memory / MiB,
        memMerge: g.mem_merge,
        mergeDomain: g.merge_domain ?? '',
        workload: toWorkload(g.workload),
        startAt: g.start === 'never' ? null : g.start + j * (g.stagger ?? 0),
      });
    }
  });

  // ---- events ----
  const events: ScenarioEvent[] = [];
  const rawEvents = Array.isArray(rootMap.events) ? (rootMap.events as unknown[]) : [];
  rawEvents.forEach((_, i) => {
    const e = doc.fields(zEvent, ['events', i], problems, root);
    if (e === null) return;
    const raw = valueAt(root, ['events', i]) as Record<string, unknown>;
    const given = ACTION_NAMES.filter((k) => raw[k] !== undefined);
    if (given.length !== 1) {
      at(['events', i], given.length === 0 ? `expected one action (${ACTION_NAMES.join(', ')})` : `expected one action per event, found ${given.join(' and ')}`);
    }
    if (e.at !== undefined && duration !== undefined && e.at > duration) at(['events', i, 'at'], `after the end of the scenario (duration ${duration / 1000}s)`);
    if (given.length !== 1) return;
    const key = given[0]!;
    if (key === 'ksm') {
      // Validated (and its conf read) by policyAt, not by the event's fields.
      const p = policyAt(['events', i, 'ksm'], runKernels);
      if (p !== null && e.at !== undefined) events.push({ at: e.at, action: { kind: 'ksm', policy: p } });
      return;
    }
    // Knob names are checked against the kernels even when a value is bad.
    if (key === 'knobs') checkKnobNames(['events', i, 'knobs'], runKernels);
    if (e[key] === undefined) return;
    const action = toAction(e as RawEvent);
    if ('guest' in action && namesKnown && !names.has(action.guest)) {
      const path = typeof raw[key] === 'string' ? ['events', i, key] : ['events', i, key, 'guest'];
      at(path, `no guest named ${describe(action.guest)} (guests: ${[...names.keys()].join(', ')})`);
    }
    if (action.kind === 'pressure' && (action.bytes === 0 || action.bytes % 4096 !== 0)) {
      at(['events', i, 'pressure'], `expected a positive whole number of 4KiB pages, got ${formatSize(action.bytes)}`);
    }
    if (action.kind === 'knobs' && e.knobs !== undefined) {
      for (const [name, alias] of [['pages_to_scan', 'shm_pages_to_scan'], ['sleep_millisecs', 'shm_sleep_millisecs'], ['merge_across_nodes', 'shm_merge_across_nodes']] as const) {
        if (e.knobs[name] !== undefined && e.knobs[alias] !== undefined) {
          at(['events', i, 'knobs', alias], `libvirt's name for ${name}, which is set too (line ${doc.lineOf(['events', i, 'knobs', name])}): set one`);
        }
      }
    }
    if (e.at !== undefined) events.push({ at: e.at, action });
  });

  // ---- variants ----
  const variants: ScenarioVariant[] = [];
  const rawVariants = rawVariantList ?? [];
  rawVariants.forEach((_, i) => {
    const v = doc.fields(zVariant, ['variants', i], problems, root);
    const raw = valueAt(root, ['variants', i]);
    const own = raw !== null && typeof raw === 'object' && (raw as Record<string, unknown>).ksm !== undefined;
    const kernel = variantKernel(i);
    const p = own ? policyAt(['variants', i, 'ksm'], known([kernel])) : (ksm ?? toPolicy({ policy: 'fixed', run: 1 }));
    if (raw !== null && typeof raw === 'object' && !own && (raw as Record<string, unknown>).kernel === undefined && (raw as Record<string, unknown>).merge_domains === undefined) {
      at(['variants', i], 'expected ksm, kernel, merge_domains or several: a variant that changes nothing runs the scenario again');
    }
    if (v !== null && v.name !== undefined && p !== null && kernel !== null) variants.push({ name: v.name, ksm: p, kernel, mergeDomains: v.merge_domains ?? true });
  });
  const names2 = new Map<string, number>();
  rawVariants.forEach((_, i) => {
    const name = valueAt(root, ['variants', i, 'name']);
    if (typeof name !== 'string') return;
    if (names2.has(name)) at(['variants', i, 'name'], `variant ${name} is already defined by variants[${names2.get(name)!}]`);
    else names2.set(name, i);
  });

  if (problems.length > 0) throw new ConfigError(file, orderProblems(problems));
  // Stable: ties keep file order.
  events.sort((a, b) => a.at - b.at);

  const policy = ksm ?? toPolicy({ policy: 'fixed', run: 1 });
  return {
    file,
    name: top.name!,
    description: top.description!,
    seed: top.seed!,
    memoryMiB: host!.memory! / MiB,
    swapMiB: host!.swap! / MiB,
    blockMiB: blockMiB!,
    kernel: hostKernel!,
    ksm: policy,
    durationMs: duration!,
    sampleEveryMs: top.sample_every!,
    tickMs: top.tick!,
    guests,
    events,
    variants: top.variants === undefined ? [{ name: null, ksm: policy, kernel: hostKernel!, mergeDomains: true }] : variants,
  };
}

/** In line order (problems without a line first), each once. */
function orderProblems(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  const out: ConfigProblem[] = [];
  for (const p of problems) {
    const key = `${p.line}\0${p.field}\0${p.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(p);
  }
  return out.sort((a, b) => a.line - b.line);
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let v = value;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

/** What boundCheck accepts for each KubeVirt parameter, in words. */
const KUBEVIRT_BOUNDS: Record<keyof typeof KUBEVIRT_ANNOTATIONS, (c: Readonly<KubevirtConfig>) => string> = {
  pagesBoost: () => '0 or more',
  pagesDecay: () => '0 or less',
  nPagesMin: () => '0 or more',
  nPagesMax: (c) => `at least npages_min (${c.nPagesMin})`,
  nPagesInit: (c) => `between npages_min (${c.nPagesMin}) and npages_max (${c.nPagesMax})`,
  sleepMsBaseline: () => '1 or more',
  freePercent: () => 'a fraction between 0 and 1',
};

function toAction(e: RawEvent): ScenarioAction {
  if (e.start !== undefined) return { kind: 'start', guest: e.start };
  if (e.stop !== undefined) return { kind: 'stop', guest: e.stop };
  if (e.pause !== undefined) return { kind: 'pause', guest: e.pause };
  if (e.resume !== undefined) return { kind: 'resume', guest: e.resume };
  if (e.destroy !== undefined) return { kind: 'destroy', guest: e.destroy };
  if (e.burst !== undefined) return { kind: 'burst', guest: e.burst.guest, pages: e.burst.pages, overMs: e.burst.over };
  if (e.workload !== undefined) {
    const b = e.workload.burst;
    return {
      kind: 'workload',
      guest: e.workload.guest,
      dirtyRate: e.workload.dirty_rate,
      burst: b === undefined ? undefined : b === null ? null : { everyMs: b.every, pages: b.pages, overMs: b.over },
    };
  }
  if (e.pressure !== undefined) return { kind: 'pressure', bytes: e.pressure };
  if (e.release_pressure !== undefined) return { kind: 'release_pressure' };
  if (e.reclaim !== undefined) return { kind: 'reclaim', pages: e.reclaim };
  if (e.compact !== undefined) return { kind: 'compact' };
  if (e.migrate !== undefined) return { kind: 'migrate', guest: e.migrate.guest, pages: e.migrate.pages };
  if (e.offline !== undefined) return { kind: 'offline', block: e.offline };
  if (e.online !== undefined) return { kind: 'online', block: e.online };
  if (e.knobs !== undefined) {
    const k = e.knobs;
    return {
      kind: 'knobs',
      ...(k.run === undefined ? {} : { run: k.run }),
      ...(k.pages_to_scan === undefined && k.shm_pages_to_scan === undefined ? {} : { pagesToScan: k.pages_to_scan ?? k.shm_pages_to_scan! }),
      ...(k.sleep_millisecs === undefined && k.shm_sleep_millisecs === undefined ? {} : { sleepMillisecs: k.sleep_millisecs ?? k.shm_sleep_millisecs! }),
      ...(k.max_kernel_pages === undefined ? {} : { maxKernelPages: k.max_kernel_pages }),
      ...modernKnobs(k),
    };
  }
  if (e.ksm !== undefined) return { kind: 'ksm', policy: toPolicy(e.ksm) };
  // superRefine guarantees one action.
  throw new Error('event without an action');
}
