import { z } from 'zod';
import { KSMTUNED_DEFAULTS } from '../vmm/ksmtuned.js';
import { ConfigDocument, ConfigError, describe, formatSize, zCount, zDuration, zSize, type ConfigProblem } from '../vmm/config.js';
import type { KsmPolicy } from '../vmm/host.js';
import { layoutGuest, type ImageCatalog } from '../vmm/image.js';
import type { WorkloadSpec } from '../vmm/workload.js';

/**
 * The scenario format (YAML or JSON): a host, its guests and their images, how KSM
 * is run, and a timeline of events. Documented in the README ("Scenario files").
 * Keys are snake_case like the sysfs knobs; sizes and durations carry units.
 */

const MiB = 1024 * 1024;

const RUN_EXPECTED = (i: { input?: unknown }): string => `expected 0 (stop) or 1 (merge), got ${describe(i.input)}`;

const zKsmFixed = z.strictObject({
  policy: z.literal('fixed'),
  run: z.number({ error: RUN_EXPECTED }).int({ error: RUN_EXPECTED }).min(0, { error: RUN_EXPECTED }).max(1, { error: RUN_EXPECTED }).default(1),
  pages_to_scan: zCount('a number of pages').default(100),
  sleep_millisecs: zCount('a number of milliseconds').default(20),
  max_kernel_pages: zCount('a number of pages').optional(),
});

const zKsmtuned = z.strictObject({
  policy: z.literal('ksmtuned'),
  monitor_interval: zDuration.optional(),
  npages_boost: z.number().int().optional(),
  npages_decay: z.number().int().optional(),
  npages_min: zCount().optional(),
  npages_max: zCount().optional(),
  sleep_msec: zCount().optional(),
  thres_coef: zCount().optional(),
  thres_const: zCount('a number of kB').optional(),
  max_kernel_pages: zCount('a number of pages').optional(),
}).superRefine((k, ctx) => {
  // increase_npages() clamps to min first: with min above max, pages_to_scan would sit at min.
  const min = k.npages_min ?? KSMTUNED_DEFAULTS.npagesMin;
  const max = k.npages_max ?? KSMTUNED_DEFAULTS.npagesMax;
  if (min > max) ctx.addIssue({ code: 'custom', path: ['npages_min'], message: `expected at most npages_max (${max}), got ${min}` });
});

// A bad or missing policy is reported at ksm.policy, so the message does not name the field again.
const zKsm = z.discriminatedUnion('policy', [zKsmFixed, zKsmtuned], {
  error: (i) =>
    i.code === 'invalid_union'
      ? `expected 'fixed' or 'ksmtuned', got ${describe((i.input as Record<string, unknown>).policy)}`
      : `expected a map with policy: fixed or ksmtuned, got ${describe(i.input)}`,
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

const zGuest = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { error: (i) => `expected a name of letters, digits, '.', '_' and '-', got ${describe(i.input)}` }),
  count: zCount('a number of guests').min(1, { error: 'expected at least 1' }).optional(),
  image: z.string(),
  version: z.union([z.string(), z.number().transform(String)]).optional(),
  memory: zSize,
  mem_merge: z.boolean().default(true),
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
  pages_to_scan: zCount().optional(),
  sleep_millisecs: zCount().optional(),
  max_kernel_pages: zCount().optional(),
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
  pressure: zSize,
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

const zEvent = z.strictObject({ at: zDuration, ...partial(EVENT_ACTIONS) }).superRefine((e, ctx) => {
  const given = ACTION_NAMES.filter((k) => (e as Record<string, unknown>)[k] !== undefined);
  if (given.length !== 1) {
    ctx.addIssue({
      code: 'custom',
      message: given.length === 0 ? `expected one action (${ACTION_NAMES.join(', ')})` : `expected one action per event, found ${given.join(' and ')}`,
    });
  }
});

function partial<T extends Record<string, z.ZodType>>(shape: T): { [K in keyof T]: z.ZodOptional<T[K]> } {
  const out: Record<string, z.ZodType> = {};
  for (const [k, v] of Object.entries(shape)) out[k] = v.optional();
  return out as { [K in keyof T]: z.ZodOptional<T[K]> };
}

const zVariant = z.strictObject({ name: z.string().min(1), ksm: zKsm });

const zScenario = z.strictObject({
  name: z.string().min(1),
  description: z.string().default(''),
  seed: zCount('a seed (a whole number)').default(1),
  host: z.strictObject({
    memory: zSize,
    swap: zSize.default(0),
    block: zSize.default(128 * MiB),
  }),
  ksm: zKsm.default({ policy: 'fixed', run: 1, pages_to_scan: 100, sleep_millisecs: 20 }),
  duration: zDuration,
  sample_every: zDuration.default(10_000),
  tick: zDuration.default(100),
  guests: z.array(zGuest).min(1, { error: 'expected at least one guest' }),
  events: z.array(zEvent).default([]),
  variants: z.array(zVariant).optional(),
}, { error: (i) => `expected a scenario: a map with name, host, duration and guests, got ${i.input === null || i.input === undefined ? 'an empty file' : describe(i.input)}` });

type RawScenario = z.output<typeof zScenario>;
type RawKsm = z.output<typeof zKsm>;

/** One guest of a scenario, after `count` is expanded. */
export interface ScenarioGuest {
  name: string;
  image: string;
  version: string | null;
  memoryMiB: number;
  memMerge: boolean;
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
  | { kind: 'knobs'; run?: number; pagesToScan?: number; sleepMillisecs?: number; maxKernelPages?: number }
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
  ksm: KsmPolicy;
  durationMs: number;
  sampleEveryMs: number;
  tickMs: number;
  guests: ScenarioGuest[];
  /** Events in the order they happen (ties in file order). */
  events: ScenarioEvent[];
  /** Runs to make: one per variant, or one with the scenario's own ksm (name null). */
  variants: { name: string | null; ksm: KsmPolicy }[];
}

function toPolicy(k: RawKsm): KsmPolicy {
  if (k.policy === 'fixed') {
    return { policy: 'fixed', run: k.run, pagesToScan: k.pages_to_scan, sleepMillisecs: k.sleep_millisecs, maxKernelPages: k.max_kernel_pages ?? null };
  }
  const config: Record<string, number> = {};
  if (k.monitor_interval !== undefined) config.monitorInterval = Math.round(k.monitor_interval / 1000);
  if (k.npages_boost !== undefined) config.npagesBoost = k.npages_boost;
  if (k.npages_decay !== undefined) config.npagesDecay = k.npages_decay;
  if (k.npages_min !== undefined) config.npagesMin = k.npages_min;
  if (k.npages_max !== undefined) config.npagesMax = k.npages_max;
  if (k.sleep_msec !== undefined) config.sleepMsec = k.sleep_msec;
  if (k.thres_coef !== undefined) config.thresCoef = k.thres_coef;
  if (k.thres_const !== undefined) config.thresConst = k.thres_const;
  return { policy: 'ksmtuned', config, maxKernelPages: k.max_kernel_pages ?? null };
}

function toWorkload(w: RawScenario['guests'][number]['workload']): WorkloadSpec {
  if (w === 'idle') return { dirtyRate: null, burst: null };
  return {
    dirtyRate: w.dirty_rate ?? null,
    burst: w.burst === undefined ? null : { everyMs: w.burst.every, pages: w.burst.pages, overMs: w.burst.over },
  };
}

/**
 * Parse and validate a scenario's text. Problems the schema cannot see (unknown
 * images, guests too small for their image, events naming unknown guests, memory
 * not a whole number of blocks) are reported the same way, with file and line.
 */
export function parseScenario(text: string, file: string, images: ImageCatalog): Scenario {
  const doc = ConfigDocument.parse(text, file);
  const raw = doc.validate(zScenario);
  const problems: ConfigProblem[] = [];

  const blockMiB = raw.host.block / MiB;
  if (!Number.isInteger(blockMiB) || blockMiB <= 0 || (blockMiB & (blockMiB - 1)) !== 0) {
    problems.push(doc.problem(['host', 'block'], `expected a power of two MiB (like 128MiB), got ${formatSize(raw.host.block)}`));
  } else if (raw.host.memory % raw.host.block !== 0 || raw.host.memory === 0) {
    problems.push(doc.problem(['host', 'memory'], `expected a whole number of ${blockMiB} MiB memory blocks`));
  }
  if (raw.host.swap % MiB !== 0) problems.push(doc.problem(['host', 'swap'], 'expected a whole number of MiB'));
  if (raw.sample_every <= 0) problems.push(doc.problem(['sample_every'], 'expected more than 0s'));
  if (raw.tick <= 0) problems.push(doc.problem(['tick'], 'expected more than 0ms'));
  if (raw.duration <= 0) problems.push(doc.problem(['duration'], 'expected more than 0s'));
  const checkKsm = (k: RawKsm, path: readonly PropertyKey[]): void => {
    // ksmtuned sleeps whole seconds; under 1s the governor would be due again at once, forever.
    if (k.policy === 'ksmtuned' && k.monitor_interval !== undefined && (k.monitor_interval < 1000 || k.monitor_interval % 1000 !== 0)) {
      problems.push(doc.problem([...path, 'monitor_interval'], `expected a whole number of seconds, 1s or more, got ${k.monitor_interval}ms`));
    }
  };
  checkKsm(raw.ksm, ['ksm']);
  raw.variants?.forEach((v, i) => checkKsm(v.ksm, ['variants', i, 'ksm']));

  const guests: ScenarioGuest[] = [];
  const names = new Map<string, number>();
  raw.guests.forEach((g, i) => {
    let image = null;
    try {
      image = images.get(g.image, g.version);
    } catch (e) {
      problems.push(doc.problem(['guests', i, g.version !== undefined && images.list().some((x) => x.name === g.image) ? 'version' : 'image'], (e as Error).message));
    }
    if (g.memory % MiB !== 0) problems.push(doc.problem(['guests', i, 'memory'], 'expected a whole number of MiB'));
    else if (image !== null) {
      try {
        layoutGuest(image, g.memory);
      } catch (e) {
        problems.push(doc.problem(['guests', i, 'memory'], (e as Error).message));
      }
    }
    if (g.stagger !== undefined && g.count === undefined) problems.push(doc.problem(['guests', i, 'stagger'], 'only means something with count'));
    const count = g.count ?? 1;
    if (g.start !== 'never') {
      // A guest due to start after the end would silently never run.
      const last = g.start + (count - 1) * (g.stagger ?? 0);
      if (g.start > raw.duration) problems.push(doc.problem(['guests', i, 'start'], `after the end of the scenario (duration ${raw.duration / 1000}s)`));
      else if (last > raw.duration) {
        problems.push(doc.problem(['guests', i, 'stagger'], `the last guest, ${g.name}-${count}, would start at ${last / 1000}s, after the end of the scenario (duration ${raw.duration / 1000}s)`));
      }
    }
    for (let j = 0; j < count; j++) {
      const name = g.count === undefined ? g.name : `${g.name}-${j + 1}`;
      if (names.has(name)) {
        problems.push(doc.problem(['guests', i, 'name'], `guest ${name} is already defined by guests[${names.get(name)!}]`));
        continue;
      }
      names.set(name, i);
      guests.push({
        name,
        image: g.image,
        version: image?.version ?? g.version ?? null,
        memoryMiB: g.memory / MiB,
        memMerge: g.mem_merge,
        workload: toWorkload(g.workload),
        startAt: g.start === 'never' ? null : g.start + j * (g.stagger ?? 0),
      });
    }
  });

  const events: ScenarioEvent[] = [];
  raw.events.forEach((e, i) => {
    const action = toAction(e);
    if ('guest' in action && !names.has(action.guest)) {
      const key = ACTION_NAMES.find((k) => (e as Record<string, unknown>)[k] !== undefined)!;
      const path = typeof (e as Record<string, unknown>)[key] === 'string' ? ['events', i, key] : ['events', i, key, 'guest'];
      problems.push(doc.problem(path, `no guest named ${describe(action.guest)} (guests: ${[...names.keys()].join(', ')})`));
    }
    if (e.at > raw.duration) problems.push(doc.problem(['events', i, 'at'], `after the end of the scenario (duration ${raw.duration / 1000}s)`));
    if (action.kind === 'pressure' && (action.bytes === 0 || action.bytes % 4096 !== 0)) {
      problems.push(doc.problem(['events', i, 'pressure'], `expected a positive whole number of 4KiB pages, got ${formatSize(action.bytes)}`));
    }
    if (e.ksm !== undefined) checkKsm(e.ksm, ['events', i, 'ksm']);
    events.push({ at: e.at, action });
  });
  if (problems.length > 0) {
    problems.sort((a, b) => a.line - b.line);
    throw new ConfigError(file, problems);
  }
  // Stable: ties keep file order.
  events.sort((a, b) => a.at - b.at);

  const ksm = toPolicy(raw.ksm);
  return {
    file,
    name: raw.name,
    description: raw.description,
    seed: raw.seed,
    memoryMiB: raw.host.memory / MiB,
    swapMiB: raw.host.swap / MiB,
    blockMiB,
    ksm,
    durationMs: raw.duration,
    sampleEveryMs: raw.sample_every,
    tickMs: raw.tick,
    guests,
    events,
    variants: raw.variants === undefined ? [{ name: null, ksm }] : raw.variants.map((v) => ({ name: v.name, ksm: toPolicy(v.ksm) })),
  };
}

function toAction(e: z.output<typeof zEvent>): ScenarioAction {
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
      ...(k.pages_to_scan === undefined ? {} : { pagesToScan: k.pages_to_scan }),
      ...(k.sleep_millisecs === undefined ? {} : { sleepMillisecs: k.sleep_millisecs }),
      ...(k.max_kernel_pages === undefined ? {} : { maxKernelPages: k.max_kernel_pages }),
    };
  }
  if (e.ksm !== undefined) return { kind: 'ksm', policy: toPolicy(e.ksm) };
  // superRefine guarantees one action.
  throw new Error('event without an action');
}
