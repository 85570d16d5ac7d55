/**
 * `samepage plan`: how many copies of a guest fit on a scenario's host. The search
 * and the verdicts are src/scenario/plan.ts; this file parses the command line, runs
 * the trials on a pool of worker threads (piscina) and prints the answers.
 */
import { availableParallelism, freemem } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Piscina } from 'piscina';
import type { KsmdCosts } from '../ksm/cost.js';
import { formatPlan, planToJson, type PlanAnswer, type PlanReport } from '../report/plan.js';
import { displayName, loadImageCatalog } from '../scenario/images.js';
import { loadScenario } from '../scenario/load.js';
import {
  DEFAULT_MAX_SWAP_BYTES,
  DEFAULT_MIN_FREE_SHARE,
  findTemplate,
  parseSweep,
  planDocument,
  searchLargestFit,
  trialScenario,
  type PlanLimits,
  type TrialOutcome,
  type TrialSpec,
} from '../scenario/plan.js';
import type { Scenario } from '../scenario/schema.js';
import { describePolicy } from '../vmm/host.js';
import { parseSize } from '../vmm/config.js';
import { checkOutputs, loadKsmdCosts, readText, writeOutput } from './outputs.js';
import { UsageError } from './usage.js';
import type { TrialTask } from './plan-worker.js';

export const PLAN_USAGE = `usage: samepage plan <scenario> --guest NAME [options]

Finds the largest number of copies of the guests: entry NAME (with or without
count) that fit on the scenario's host, at the scenario's KSM knobs or governor,
and the same without KSM (run 0). Each trial is a whole run of the scenario with
that many copies: an exponential probe up (1, 2, 4, ...), then a search between
the largest count that fits and the smallest that does not, trials in parallel.

A count fits when the run has no OOM kill, no guest refused at start, and at
every sample swap used and free memory within these limits:

options:
  --guest NAME        the guests: entry to copy (required)
  --max-swap SIZE     swap in use at most SIZE (default 0: nothing pushed to swap)
  --min-free SIZE|N%  free memory at least SIZE, or N% of the host's RAM
                      (default 5%)
  --max N             the most copies to try (default 256)
  --sweep NAME=V,...  answer once per value of a KSM knob of the scenario's
                      kernel (pages_to_scan=100,1000,10000) or per kernel
                      (kernel=2.6.33,6.18)
  --variant NAME      the variant whose KSM policy, kernel and merge_domains to use
  --seed N            override the scenario's seed
  --jobs N            trials at a time (default: one per core, fewer when the
                      machine's free memory would not hold that many hosts)
  --json FILE         write the answers as JSON ('-' for standard output; the
                      text then goes to standard error)
  --ksmd-costs FILE   ns per ksmd operation for the CPU figures
  --images DIR        guest image descriptors (default: the package's guests/)
  --quiet             no progress on standard error
  -h, --help          this text

Exit status: 0 with an answer, 1 when not even one guest fits (or a file
cannot be used or written), 2 for a usage error.
`;

/** Real memory a trial's host may take: its RAM and swap held as bytes, and the model's overhead. */
function trialBytes(s: Scenario): number {
  return (s.memoryMiB + s.swapMiB) * 1.25 * 1024 * 1024 + 256 * 1024 * 1024;
}

function wholeNumber(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) < min) throw new UsageError(`${name} needs a whole number of at least ${min}, got ${JSON.stringify(v)}`, PLAN_USAGE);
  return Number(v);
}

function size(name: string, v: string): number {
  const bytes = /^\d+$/.test(v) ? Number(v) * 1024 * 1024 : parseSize(v);
  if (bytes === null) throw new UsageError(`${name} needs a size like '512MiB' (a bare number is MiB), got ${JSON.stringify(v)}`, PLAN_USAGE);
  return bytes;
}

/** The worker module beside this one: plan-worker.ts under tsx, plan-worker.js once built. */
function workerFile(): string {
  const url = new URL(import.meta.url.endsWith('.ts') ? './plan-worker.ts' : './plan-worker.js', import.meta.url);
  return url.href;
}

export async function planCommand(argv: string[], samepageVersion: string): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        help: { type: 'boolean', short: 'h' },
        guest: { type: 'string' },
        'max-swap': { type: 'string' },
        'min-free': { type: 'string' },
        max: { type: 'string' },
        sweep: { type: 'string' },
        variant: { type: 'string' },
        seed: { type: 'string' },
        jobs: { type: 'string' },
        json: { type: 'string' },
        'ksmd-costs': { type: 'string' },
        images: { type: 'string' },
        quiet: { type: 'boolean' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify a positional argument.*$/, ''), PLAN_USAGE);
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    process.stdout.write(PLAN_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'plan needs a scenario file' : `plan takes one scenario file, got ${positionals.length}`, PLAN_USAGE);
  if (values.guest === undefined) throw new UsageError('plan needs --guest NAME: the guests: entry to copy', PLAN_USAGE);
  const path = positionals[0]!;
  const max = wholeNumber('--max', values.max, 1) ?? 256;
  const jobsAsked = wholeNumber('--jobs', values.jobs, 1);
  const seed = wholeNumber('--seed', values.seed, 0);
  checkOutputs([{ option: '--json', path: values.json, dashOk: true }], PLAN_USAGE);
  const costs: KsmdCosts = loadKsmdCosts(values['ksmd-costs']);
  const imagesDir = values.images ?? null;
  const images = imagesDir === null ? loadImageCatalog() : loadImageCatalog(imagesDir);

  // The scenario as it is must be valid; the trials are made from its document.
  const base = loadScenario(path, images);
  const file = displayName(path);
  const doc = planDocument(readText(path), file);
  if (seed !== undefined) doc.seed = seed;
  const template = findTemplate(doc, values.guest);
  if (typeof template === 'string') throw new UsageError(`--guest ${values.guest}: ${template}`, PLAN_USAGE);
  const first = base.guests.find((g) => g.name === values.guest || g.name === `${values.guest}-1`)!;

  // The policy: the scenario's, or the variant's.
  let ksm: Record<string, unknown> | null = null;
  if (values.variant !== undefined) {
    const v = base.variants.find((x) => x.name === values.variant);
    if (v === undefined) throw new UsageError(`--variant ${values.variant}: the scenario's variants are ${base.variants.map((x) => x.name ?? '(none)').join(', ')}`, PLAN_USAGE);
    const raw = (doc.variants as Record<string, unknown>[]).find((x) => x.name === values.variant)!;
    ksm = (raw.ksm as Record<string, unknown> | undefined) ?? null;
    // The variant's kernel, and with merge_domains off every guest in the common domain.
    if (raw.kernel !== undefined) doc.host = { ...((doc.host ?? {}) as Record<string, unknown>), kernel: v.kernel };
    if (!v.mergeDomains && Array.isArray(doc.guests)) {
      doc.guests = (doc.guests as unknown[]).map((g) => {
        if (g === null || typeof g !== 'object') return g;
        const { merge_domain: _, ...rest } = g as Record<string, unknown>;
        return rest;
      });
    }
  } else if (base.variants.length > 1) {
    throw new UsageError(`${file} has ${base.variants.length} variants (${base.variants.map((x) => x.name).join(', ')}): say whose KSM policy to plan with, --variant NAME`, PLAN_USAGE);
  }
  const baseKsm = ksm ?? ((doc.ksm as Record<string, unknown> | undefined) ?? { policy: 'fixed', run: 1 });
  const host = (doc.host ?? {}) as Record<string, unknown>;
  const kernel = typeof host.kernel === 'string' ? host.kernel : '2.6.33';

  // The searches: one per swept value (or one), and one without KSM per kernel.
  const withSpecs: { spec: TrialSpec; sweep: PlanAnswer['sweep'] }[] = [];
  const withoutSpecs: { spec: TrialSpec; sweep: PlanAnswer['sweep'] }[] = [];
  const off = { policy: 'fixed', run: 0 };
  const specOf = (k: Record<string, unknown> | null, kern: string | null): TrialSpec => ({ doc, file, template: values.guest!, ksm: k, kernel: kern });
  if (values.sweep !== undefined) {
    const sweep = parseSweep(values.sweep, kernel);
    if (typeof sweep === 'string') throw new UsageError(sweep, PLAN_USAGE);
    for (const value of sweep.values) {
      if (sweep.name === 'kernel') {
        withSpecs.push({ spec: specOf(ksm, value), sweep: { name: 'kernel', value } });
        withoutSpecs.push({ spec: specOf(off, value), sweep: { name: 'kernel', value } });
      } else {
        withSpecs.push({ spec: specOf({ ...baseKsm, [sweep.name]: Number(value) }, null), sweep: { name: sweep.name, value } });
      }
    }
    if (sweep.name !== 'kernel') withoutSpecs.push({ spec: specOf(off, null), sweep: null });
  } else {
    withSpecs.push({ spec: specOf(ksm, null), sweep: null });
    withoutSpecs.push({ spec: specOf(off, null), sweep: null });
  }

  const readFile = (p: string): string => readFileSync(isAbsolute(p) ? p : join(dirname(path), p), 'utf8');
  const scenarioOf = (spec: TrialSpec, n: number): Scenario => trialScenario(spec, n, base.durationMs, images, { readFile });
  // Every search's scenario must validate before anything runs (one copy stands for all).
  const policies = [...withSpecs, ...withoutSpecs].map(({ spec }) => describePolicy(scenarioOf(spec, 1).ksm));

  const limits: PlanLimits = {
    maxSwapBytes: values['max-swap'] === undefined ? DEFAULT_MAX_SWAP_BYTES : size('--max-swap', values['max-swap']),
    minFreeBytes: 0,
  };
  const minFree = values['min-free'] ?? `${DEFAULT_MIN_FREE_SHARE * 100}%`;
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(minFree);
  if (pct !== null) {
    if (Number(pct[1]) > 100) throw new UsageError(`--min-free ${minFree}: at most 100%`, PLAN_USAGE);
    limits.minFreeBytes = Math.round((Number(pct[1]) / 100) * base.memoryMiB * 1024 * 1024);
  } else limits.minFreeBytes = size('--min-free', minFree);

  const cores = availableParallelism();
  const byMemory = Math.max(1, Math.floor((0.5 * freemem()) / trialBytes(base)));
  const jobs = jobsAsked ?? Math.max(1, Math.min(cores, byMemory));
  const searches = withSpecs.length + withoutSpecs.length;
  const width = Math.max(1, Math.floor(jobs / searches));

  const started = performance.now();
  const pool = new Piscina<TrialTask, TrialOutcome>({ filename: workerFile(), minThreads: 0, maxThreads: jobs, idleTimeout: 1000 });
  let trialsRun = 0;
  const quiet = values.quiet === true || values.json === '-';
  const search = async (spec: TrialSpec, label: string): Promise<PlanAnswer['answer']> =>
    searchLargestFit(
      async (n) => {
        const o = await pool.run({ scenario: scenarioOf(spec, n), count: n, imagesDir, limits, costs });
        trialsRun++;
        if (!quiet) process.stderr.write(`trial ${trialsRun}: ${n} × ${values.guest} ${label}: ${o.fits ? 'fits' : `does not fit (${o.violations[0]!})`}, ${(o.wallMs / 1000).toFixed(1)} s\n`);
        return o;
      },
      max,
      width,
    );
  let withKsm: PlanAnswer[];
  let withoutKsm: PlanAnswer[];
  try {
    const label = (s: PlanAnswer['sweep'], what: string): string => (s === null ? what : `${what}, ${s.name} ${s.value}`);
    const all = await Promise.all([
      ...withSpecs.map((w, i) => search(w.spec, label(w.sweep, 'with KSM')).then((answer): PlanAnswer => ({ sweep: w.sweep, policy: policies[i]!, answer }))),
      ...withoutSpecs.map((w, i) => search(w.spec, label(w.sweep, 'without KSM')).then((answer): PlanAnswer => ({ sweep: w.sweep, policy: policies[withSpecs.length + i]!, answer }))),
    ]);
    withKsm = all.slice(0, withSpecs.length);
    withoutKsm = all.slice(withSpecs.length);
  } finally {
    await pool.destroy();
  }
  const report: PlanReport = {
    scenario: base.name,
    file,
    guest: values.guest,
    image: `${first.image} ${first.version ?? images.get(first.image).version}`,
    guestRamBytes: first.memoryMiB * 1024 * 1024,
    hostRamBytes: base.memoryMiB * 1024 * 1024,
    hostSwapBytes: base.swapMiB * 1024 * 1024,
    limits,
    max,
    withKsm,
    withoutKsm,
    trials: trialsRun,
    jobs,
    wallMs: performance.now() - started,
  };
  const text = formatPlan(report);
  if (values.json === '-') {
    process.stderr.write(text);
    writeOutput('-', planToJson(report, samepageVersion));
  } else {
    process.stdout.write(text);
    if (values.json !== undefined) {
      writeOutput(values.json, planToJson(report, samepageVersion));
      process.stdout.write(`answers written to ${values.json}\n`);
    }
  }
  return withKsm.some((p) => p.answer.count > 0) ? 0 : 1;
}
