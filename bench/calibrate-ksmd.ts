/**
 * Calibrates ksmd's CPU cost model (src/ksm/cost.ts) on this machine's real ksmd.
 *
 * For each workload below, the same memory is built twice: in a real process
 * (bench/ksmd-workload.c, under the real ksmd) and inside Samepage (2.6.33 profile,
 * which counts the work: src/ksm/work.ts). The real KSM is configured as 2.6.33 has it
 * (test/oracle/real.ts: max_page_sharing 2147483647, smart_scan 0, use_zero_pages 0,
 * advisor none) and every knob is restored afterwards, under the real-KSM lock.
 *
 * Each workload is measured in phases, each an observation (work counted by Samepage,
 * CPU measured on ksmd):
 *  - "scan 1" and "scan 2": pages_to_scan above the workload's pages, so that each
 *    ksmd wakeup is exactly one full scan, and sleep_millisecs 400, so that ksmd is
 *    asleep when full_scans ticks and its CPU time can be read between two scans.
 *  - "steady": later scans repeat the same work page for page, so ksmd then runs
 *    flat out (sleep_millisecs 0) for STEADY_MS and the work is Samepage's per-page
 *    counts of one steady scan times the pages the real ksmd scanned meanwhile
 *    (/sys/kernel/mm/ksm/pages_scanned, 6.x).
 *  - the "volatile" workload rewrites every page between scans, so that each scan
 *    computes checksums and nothing else; its scans are measured one by one.
 * ksmd's CPU time is utime + stime from /proc/<ksmd pid>/stat (clock ticks); the
 * scheduler's exact runtime (/proc/<pid>/schedstat, ns) is read beside it and the
 * same fit run on it, as a check of the tick-based figure.
 *
 * The workloads are chosen so that the operations vary independently: scanning alone
 * (merged pages), checksums alone (volatile pages), new rmap_items (first scans),
 * shallow and deep comparisons (pages differing in their first or last bytes), stable
 * against unstable tree walks (a big stable tree beside few pages, and the reverse),
 * merges (identical pages, pairs).
 *
 * Unmerges are not ksmd's work in any of these (break_cow only follows a failed merge),
 * so their cost is measured apart: run=2 unmerges every KSM page in the writer's
 * context, and this process's own CPU time around that write is fitted against the
 * unmerges and rmap_item frees Samepage counts for the same run=2.
 *
 *   npx tsx bench/calibrate-ksmd.ts [--json FILE]     (root; run by npm run bench)
 *
 * Prints the measurements, the fit and its residuals, and the costs as a TypeScript
 * literal for DEFAULT_KSMD_COSTS.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Kernel, PAGE_SIZE, type KsmWorkCounts, type Process } from '../src/index.js';
import { fitKsmdCosts, type KsmdCosts, type KsmdObservation } from '../src/ksm/cost.js';
import { leastSquares } from '../src/lib/nnls.js';
import { KSM_WORK_FIELDS } from '../src/ksm/work.js';
import { buildHelper, lineReader, realKsmAvailable, withRealKsm, type RealKsm } from '../test/oracle/real.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const STEADY_MS = Number(process.env.CALIBRATE_STEADY_MS ?? 3000);
const SLEEP_BETWEEN_SCANS_MS = 400;
/** Pages per workload: 131072 (512 MiB); CALIBRATE_PAGES for a quick run. */
const P = Number(process.env.CALIBRATE_PAGES ?? 131072);

type Pattern = { kind: 'same' | 'head' | 'tail'; arg: number };
interface Region {
  pages: number;
  pattern: Pattern;
}

interface Workload {
  name: string;
  regions: Region[];
  /** Scans measured one by one after the first two ("volatile" rewrites region 0 before each). */
  volatileScans: number;
  /** Measure flat-out scanning after the first two scans. */
  steady: boolean;
}

const WORKLOADS: Workload[] = [
  { name: 'identical', regions: [{ pages: P, pattern: { kind: 'same', arg: 1 } }], volatileScans: 0, steady: true },
  { name: 'distinct head', regions: [{ pages: P, pattern: { kind: 'head', arg: 1 } }], volatileScans: 0, steady: true },
  { name: 'distinct tail', regions: [{ pages: P, pattern: { kind: 'tail', arg: 1 } }], volatileScans: 0, steady: true },
  {
    name: 'pairs tail',
    regions: [
      { pages: P / 2, pattern: { kind: 'tail', arg: 1 } },
      { pages: P / 2, pattern: { kind: 'tail', arg: 1 } },
    ],
    volatileScans: 0,
    steady: true,
  },
  { name: 'volatile', regions: [{ pages: P, pattern: { kind: 'head', arg: 2 } }], volatileScans: 4, steady: false },
  {
    name: 'big stable tree',
    regions: [
      { pages: P / 2, pattern: { kind: 'head', arg: 3 } },
      { pages: P / 2, pattern: { kind: 'head', arg: 3 } },
      { pages: P / 8, pattern: { kind: 'head', arg: 4 } },
    ],
    volatileScans: 0,
    steady: true,
  },
  {
    name: 'small stable tree',
    regions: [
      { pages: 1024, pattern: { kind: 'head', arg: 3 } },
      { pages: 1024, pattern: { kind: 'head', arg: 3 } },
      { pages: P, pattern: { kind: 'head', arg: 4 } },
    ],
    volatileScans: 0,
    steady: true,
  },
];

// ---- Samepage's side -------------------------------------------------------------------------

/** Page i of a region, as ksmd-workload.c writes it, into `page`. */
function writePage(p: Process, addr: number, pat: Pattern, i: number, gen: number, page: Buffer): void {
  if (pat.kind === 'same') {
    page.fill(pat.arg);
  } else {
    page.fill(0);
    if (pat.kind === 'head') {
      page.writeUInt32LE(i >>> 0, 0);
      page.writeUInt32LE(pat.arg, 4);
      page.writeUInt32LE(gen, 8);
    } else {
      page.writeUInt32LE(pat.arg, PAGE_SIZE - 8);
      page.writeUInt32LE(i >>> 0, PAGE_SIZE - 4);
    }
  }
  p.write(addr, page);
}

class ModelWorkload {
  readonly k: Kernel;
  readonly p: Process;
  readonly base: number;
  private readonly page = Buffer.alloc(PAGE_SIZE);
  constructor(readonly w: Workload) {
    const total = w.regions.reduce((s, r) => s + r.pages, 0);
    const mib = Math.ceil(((total * PAGE_SIZE) / 1048576 + 64) / 128) * 128;
    this.k = new Kernel({ memoryMiB: mib, blockMiB: 128, seed: 1 });
    this.p = this.k.spawn('ksmd-workload');
    this.base = this.p.mmap(total * PAGE_SIZE);
    let first = 0;
    for (const r of w.regions) {
      for (let i = 0; i < r.pages; i++) writePage(this.p, this.base + (first + i) * PAGE_SIZE, r.pattern, i, 0, this.page);
      first += r.pages;
    }
    this.p.madvise(this.base, total * PAGE_SIZE, 'MADV_MERGEABLE');
    this.k.sysfs.write('/sys/kernel/mm/ksm/max_kernel_pages', '0');
    this.k.sysfs.write('/sys/kernel/mm/ksm/pages_to_scan', String(total + 16));
    this.k.sysfs.write('/sys/kernel/mm/ksm/run', '1');
  }
  /** The work of the next full scan. */
  scan(): KsmWorkCounts {
    const before = this.k.ksmWork();
    this.k.ksmd.runFullScans(1);
    return minus(this.k.ksmWork(), before);
  }
  rewrite(region: number, gen: number): void {
    const r = this.w.regions[region]!;
    const first = this.w.regions.slice(0, region).reduce((s, x) => s + x.pages, 0);
    for (let i = 0; i < r.pages; i++) writePage(this.p, this.base + (first + i) * PAGE_SIZE, { kind: 'head', arg: r.pattern.arg }, i, gen, this.page);
  }
  unmergeAll(): KsmWorkCounts {
    const before = this.k.ksmWork();
    this.k.sysfs.write('/sys/kernel/mm/ksm/run', '2');
    return minus(this.k.ksmWork(), before);
  }
}

function minus(a: KsmWorkCounts, b: KsmWorkCounts): KsmWorkCounts {
  return Object.fromEntries(KSM_WORK_FIELDS.map((f) => [f, a[f] - b[f]])) as unknown as KsmWorkCounts;
}

function scale(a: KsmWorkCounts, by: number): KsmWorkCounts {
  return Object.fromEntries(KSM_WORK_FIELDS.map((f) => [f, a[f] * by])) as unknown as KsmWorkCounts;
}

// ---- the real side ---------------------------------------------------------------------------

interface KsmdCpu {
  /** utime + stime, ns (clock ticks × 10^9 / CLK_TCK). */
  statNs: number;
  /** /proc/<pid>/schedstat's run time, ns, or NaN without it. */
  schedNs: number;
}

/** CLK_TCK: Linux reports utime and stime in USER_HZ, 100 on every architecture that matters. */
const CLK_TCK = 100;

function ksmdPid(): number {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/comm`, 'utf8').trim() === 'ksmd') return Number(d);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error('no ksmd thread in /proc');
}

function ksmdCpu(pid: number): KsmdCpu {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The fields after the ")" that ends comm: state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]);
  let schedNs = NaN;
  try {
    schedNs = Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    // CONFIG_SCHED_INFO off
  }
  return { statNs: (ticks * 1e9) / CLK_TCK, schedNs };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Measured {
  name: string;
  work: KsmWorkCounts;
  statNs: number;
  schedNs: number;
}

async function waitFullScans(k: RealKsm, n: number, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  while (k.readNumber('full_scans') < n) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`full_scans did not reach ${n} in ${timeoutMs} ms`);
    await sleep(2);
  }
}

async function measureWorkload(k: RealKsm, bin: string, w: Workload, log: (s: string) => void): Promise<{ phases: Measured[]; unmerge: { work: KsmWorkCounts; cpuNs: number } }> {
  const model = new ModelWorkload(w);
  const total = w.regions.reduce((s, r) => s + r.pages, 0);
  k.write('run', 0);
  k.write('run', 2); // nothing merged, full_scans 0
  const child = k.spawn(bin, w.regions.map((r) => `${r.pages}:${r.pattern.kind}:${r.pattern.arg}`));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const readLine = lineReader(child);
  const next = async (): Promise<string> => (await readLine()) ?? `ksmd-workload exited (${child.exitCode ?? child.signalCode})`;
  const ready = await next().then((l) => (l.startsWith('ready') ? l : `${l}: ${stderr}`));
  if (!ready.startsWith('ready')) throw new Error(`ksmd-workload ${w.name}: ${ready}`);
  const pid = ksmdPid();
  k.write('pages_to_scan', total + 16);
  k.write('sleep_millisecs', SLEEP_BETWEEN_SCANS_MS);
  const phases: Measured[] = [];
  let c0 = ksmdCpu(pid);
  const phase = async (name: string, scans: number, work: KsmWorkCounts): Promise<void> => {
    await waitFullScans(k, scans, 120_000);
    const c1 = ksmdCpu(pid);
    phases.push({ name: `${w.name}, ${name}`, work, statNs: c1.statNs - c0.statNs, schedNs: c1.schedNs - c0.schedNs });
    log(`  ${`${w.name}, ${name}`.padEnd(34)} ksmd ${((c1.statNs - c0.statNs) / 1e6).toFixed(0).padStart(6)} ms (schedstat ${((c1.schedNs - c0.schedNs) / 1e6).toFixed(1)} ms), ${work.pagesScanned} pages`);
    c0 = c1;
  };
  k.write('run', 1);
  await phase('scan 1', 1, model.scan());
  await phase('scan 2', 2, model.scan());
  for (let s = 0; s < w.volatileScans; s++) {
    // ksmd sleeps 400 ms after a scan: rewrite, then let it go on.
    child.stdin!.write(`rewrite 0 ${s + 1}\n`);
    const done = await next();
    if (done !== 'done') throw new Error(`ksmd-workload rewrite: ${done}`);
    model.rewrite(0, s + 1);
    await phase(`scan ${3 + s}`, 3 + s, model.scan());
  }
  if (w.steady) {
    // One steady scan in the model gives the work per page; the real ksmd scans flat out.
    const perScan = model.scan();
    const perPage = scale(perScan, 1 / perScan.pagesScanned);
    const s0 = k.readNumber('pages_scanned');
    const cA = ksmdCpu(pid);
    k.write('sleep_millisecs', 0);
    await sleep(STEADY_MS);
    k.write('sleep_millisecs', SLEEP_BETWEEN_SCANS_MS);
    const cB = ksmdCpu(pid);
    const s1 = k.readNumber('pages_scanned');
    const pages = s1 - s0;
    phases.push({ name: `${w.name}, steady`, work: scale(perPage, pages), statNs: cB.statNs - cA.statNs, schedNs: cB.schedNs - cA.schedNs });
    log(`  ${`${w.name}, steady`.padEnd(34)} ksmd ${((cB.statNs - cA.statNs) / 1e6).toFixed(0).padStart(6)} ms (schedstat ${((cB.schedNs - cA.schedNs) / 1e6).toFixed(1)} ms), ${pages} pages`);
  }
  k.write('run', 0);
  // run=2 unmerges in this process's context: its own CPU time is the cost.
  const u0 = process.cpuUsage();
  k.write('run', 2);
  const u1 = process.cpuUsage(u0);
  const unmerge = { work: model.unmergeAll(), cpuNs: (u1.user + u1.system) * 1000 };
  log(`  ${`${w.name}, run=2`.padEnd(34)} writer ${(unmerge.cpuNs / 1e6).toFixed(1).padStart(6)} ms, ${unmerge.work.unmerges} unmerges, ${unmerge.work.rmapItemsFreed} rmap_items freed`);
  child.stdin!.end();
  await new Promise<void>((r) => (child.exitCode !== null ? r() : child.once('close', () => r())));
  return { phases, unmerge };
}

export interface Calibration {
  machine: string;
  kernel: string;
  date: string;
  measurements: Measured[];
  /** Fit on utime+stime: the shipped figures. */
  fit: ReturnType<typeof fitKsmdCosts>;
  /** The same fit on schedstat's run time, as a check. */
  schedFit: ReturnType<typeof fitKsmdCosts> | null;
  unmergeNs: number;
  rmapFreeNsInRun2: number;
}

export async function calibrateKsmd(log: (s: string) => void = console.log): Promise<Calibration | { skipped: string }> {
  const reason = await realKsmAvailable();
  if (reason !== null) return { skipped: reason };
  const bin = buildHelper(path.join(HERE, 'ksmd-workload.c'), 'ksmd-workload');
  const measurements: Measured[] = [];
  const unmerges: { work: KsmWorkCounts; cpuNs: number }[] = [];
  await withRealKsm({ pagesToScan: 100, sleepMillisecs: SLEEP_BETWEEN_SCANS_MS, run: 0 }, async (k) => {
    for (const w of WORKLOADS) {
      const r = await measureWorkload(k, bin, w, log);
      measurements.push(...r.phases);
      unmerges.push(r.unmerge);
    }
  });
  // run=2: writer CPU = unmerges × u + frees × f (least squares, two unknowns).
  const [u, f] = leastSquares(
    unmerges.map((x) => [x.work.unmerges, x.work.rmapItemsFreed]),
    unmerges.map((x) => x.cpuNs),
  );
  const unmergeNs = Math.max(0, u!);
  const fit = fitKsmdCosts(
    measurements.map((m) => ({ name: m.name, work: m.work, cpuNs: m.statNs })),
    unmergeNs,
  );
  const schedOk = measurements.every((m) => Number.isFinite(m.schedNs));
  const schedFit = schedOk ? fitKsmdCosts(measurements.map((m): KsmdObservation => ({ name: m.name, work: m.work, cpuNs: m.schedNs })), unmergeNs) : null;
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return {
    machine: `${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    kernel: `Linux ${os.release()}`,
    date: new Date().toISOString().slice(0, 10),
    measurements,
    fit,
    schedFit,
    unmergeNs,
    rmapFreeNsInRun2: Math.max(0, f!),
  };
}

export function describeCalibration(c: Calibration): string {
  const out: string[] = [];
  const costLine = (costs: KsmdCosts): string => KSM_WORK_FIELDS.map((f) => `${f} ${fmt(costs[f])}`).join(', ');
  out.push(`ksmd costs (ns per operation), fitted on utime+stime: ${costLine(c.fit.costs)}`);
  out.push(`  typical error of a prediction (rms of relative residuals): ${(100 * c.fit.rmsRelativeError).toFixed(1)}%`);
  for (const r of c.fit.residuals) {
    out.push(`  ${r.name.padEnd(34)} measured ${(r.measuredNs / 1e6).toFixed(1).padStart(8)} ms, predicted ${(r.predictedNs / 1e6).toFixed(1).padStart(8)} ms (${(r.residualNs >= 0 ? '+' : '') + (100 * (r.residualNs / Math.max(r.measuredNs, 1))).toFixed(1)}%)`);
  }
  if (c.schedFit !== null) {
    out.push(`the same fit on schedstat run time: ${costLine(c.schedFit.costs)} (rms ${(100 * c.schedFit.rmsRelativeError).toFixed(1)}%)`);
  }
  out.push(`run=2 in the writer: ${fmt(c.unmergeNs)} ns per unmerge, ${fmt(c.rmapFreeNsInRun2)} ns per rmap_item freed`);
  out.push('');
  out.push(`// Measured ${c.date} on ${c.machine}, ${c.kernel}, by bench/calibrate-ksmd.ts`);
  out.push('export const DEFAULT_KSMD_COSTS: KsmdCosts = {');
  for (const f of KSM_WORK_FIELDS) out.push(`  ${f}: ${fmt(c.fit.costs[f])},`);
  out.push('};');
  return out.join('\n');
}

function fmt(ns: number): string {
  return ns >= 100 ? ns.toFixed(0) : ns >= 1 ? ns.toFixed(1) : ns.toPrecision(3);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const jsonAt = process.argv.indexOf('--json');
  const r = await calibrateKsmd();
  if ('skipped' in r) {
    console.log(`ksmd calibration: skipped (${r.skipped})`);
  } else {
    console.log(describeCalibration(r));
    if (jsonAt > 0) {
      fs.writeFileSync(process.argv[jsonAt + 1]!, `${JSON.stringify({ costs: r.fit.costs, source: { machine: r.machine, kernel: r.kernel, date: r.date }, calibration: r }, null, 2)}\n`);
    }
  }
}
