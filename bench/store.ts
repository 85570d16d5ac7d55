/**
 * Issue 13's size benchmarks: real memory and wall time of big hosts, the cost of a
 * full scan against host size, and the estimate beside each measurement.
 *
 *   tsx bench/store.ts host FILE          one scenario in this process: prints JSON
 *   tsx bench/store.ts scan MIB           one full-scan measurement: prints JSON
 *   tsx bench/store.ts [all] [MAXGIB]     everything, each part in a child process
 *                                         (so each peak RSS is its own), the scan
 *                                         sizes up to MAXGIB (default 64)
 *
 * Every child stops itself when its RSS passes RSS_LIMIT (the machine is shared).
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Kernel, PAGE_SIZE } from '../src/index.js';
import type { PageGenerator } from '../src/mm/contents.js';
import { defaultGuestsDir, loadImageCatalog } from '../src/scenario/images.js';
import { loadScenario } from '../src/scenario/load.js';
import { estimateRun } from '../src/scenario/estimate.js';
import { runScenario } from '../src/scenario/run.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const RSS_LIMIT = 10 * GiB;
const HERE = fileURLToPath(new URL('.', import.meta.url));

function guardRss(what: string): void {
  const rss = process.memoryUsage().rss;
  if (rss > RSS_LIMIT) {
    console.log(JSON.stringify({ aborted: `${what}: RSS ${(rss / GiB).toFixed(1)} GiB passed the ${RSS_LIMIT / GiB} GiB limit` }));
    process.exit(3);
  }
}

function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** Run one scenario; wall time, peak RSS, and the run's figures. */
function hostChild(file: string): void {
  const images = loadImageCatalog(defaultGuestsDir());
  const s = loadScenario(file, images);
  const est = estimateRun(s, images);
  let lastLog = Date.now();
  const t0 = Date.now();
  const [r] = runScenario(s, {
    images,
    onStep: (_v, t, _total, booting) => {
      guardRss(`${s.name} at ${t / 1000} s (${booting} guests booting)`);
    },
    onProgress: (_v, t) => {
      guardRss(`${s.name} at ${t / 1000} s`);
      if (Date.now() - lastLog > 20_000) {
        lastLog = Date.now();
        process.stderr.write(`  ${s.name}: ${(t / 1000).toFixed(0)} s simulated, ${((Date.now() - t0) / 1000).toFixed(0)} s wall, RSS ${(process.memoryUsage().rss / GiB).toFixed(2)} GiB\n`);
      }
    },
  });
  const seconds = (Date.now() - t0) / 1000;
  const h = r!.host;
  console.log(
    JSON.stringify({
      name: s.name,
      seconds,
      peakRss: peakRss(),
      simulatedMs: s.durationMs,
      modelledBytes: (s.memoryMiB + s.swapMiB) * MiB,
      pagesShared: h.pagesShared,
      pagesSharing: h.pagesSharing,
      fullScans: h.fullScans,
      pagesScanned: h.pagesScanned,
      swapUsedBytes: h.swapUsedBytes,
      estimateBytes: est.bytes,
      estimateSeconds: est.seconds,
    }),
  );
}

/** Pages for scanChild: word 0 is k0, word 1 is k1, word 512 a constant, the rest zero. */
const scanGenerator: PageGenerator = {
  name: 'scan-bench',
  keyIsHead: false, // words 2 and 3 are 0, not k2 and k3
  generate(k0, k1, _k2, _k3, out, off) {
    out.fill(0, off, off + 1024);
    out[off] = k0;
    out[off + 1] = k1;
    out[off + 512] = 0x5a5a5a5a;
  },
};

/**
 * One full scan of a host of `mib`: 3/4 of it written by 256 MiB processes with
 * generated pages, as guests write them (a quarter never written, half repeated across
 * processes, a quarter unique), then the time of a full scan once merged (the steady
 * state: every checksum memoized, every stable page found in the tree).
 */
function scanChild(mib: number): void {
  const k = new Kernel({ memoryMiB: mib, blockMiB: Math.min(128, mib), seed: 1 });
  const perProc = Math.min(256, (mib * 3) / 4);
  const procs = Math.max(1, Math.floor((mib * 3) / 4 / perProc));
  const pages = (perProc * MiB) / PAGE_SIZE;
  const g = k.mem.store.registerGenerator(scanGenerator);
  for (let i = 0; i < procs; i++) {
    const p = k.spawn(`p${i}`);
    const a = p.mmap(perProc * MiB);
    p.madvise(a, perProc * MiB, 'MADV_MERGEABLE');
    for (let j = 0; j < pages; j++) {
      const kind = j & 3;
      if (kind === 0) continue; // never written: no frame
      p.writeGeneratedPage(a + j * PAGE_SIZE, g, kind === 3 ? i : 0xffff, j, 0, 0);
    }
    guardRss(`scan ${mib} MiB`);
  }
  k.sysfs.write('/sys/kernel/mm/ksm/pages_to_scan', '100000');
  k.sysfs.write('/sys/kernel/mm/ksm/run', '1');
  const t1 = Date.now();
  k.ksmd.runFullScans(2);
  const converge = (Date.now() - t1) / 1000;
  guardRss(`scan ${mib} MiB`);
  const t2 = Date.now();
  k.ksmd.runFullScans(1);
  const steady = (Date.now() - t2) / 1000;
  console.log(JSON.stringify({ mib, scannedPages: (procs * pages * 3) / 4, convergeSeconds: converge, steadySeconds: steady, peakRss: peakRss() }));
}

function child(args: string[]): Record<string, number | string> {
  let out: string;
  try {
    out = execFileSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
  } catch (e) {
    // A child that stopped itself past RSS_LIMIT exits 3 with its reason on stdout.
    out = String((e as { stdout?: string }).stdout ?? '');
    if (out.trim() === '') return { aborted: `child ${args.join(' ')} failed: ${(e as Error).message}` };
  }
  return JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, number | string>;
}

/** Least-squares slope of log(y) against log(x): the exponent of y ∝ x^e. */
function exponent(xs: number[], ys: number[]): number {
  const lx = xs.map(Math.log);
  const ly = ys.map(Math.log);
  const mx = lx.reduce((a, b) => a + b) / lx.length;
  const my = ly.reduce((a, b) => a + b) / ly.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < lx.length; i++) {
    num += (lx[i]! - mx) * (ly[i]! - my);
    den += (lx[i]! - mx) ** 2;
  }
  return num / den;
}

/** A log-log plot of seconds against host size, with the fitted line. */
function plot(xs: number[], ys: number[], e: number): string {
  const W = 560;
  const H = 360;
  const m = { l: 70, r: 20, t: 30, b: 50 };
  const lx0 = Math.log10(xs[0]!);
  const lx1 = Math.log10(xs.at(-1)!);
  const ly0 = Math.floor(Math.log10(Math.min(...ys)));
  const ly1 = Math.ceil(Math.log10(Math.max(...ys)));
  const X = (x: number): number => m.l + ((Math.log10(x) - lx0) / (lx1 - lx0)) * (W - m.l - m.r);
  const Y = (y: number): number => H - m.b - ((Math.log10(y) - ly0) / (ly1 - ly0)) * (H - m.t - m.b);
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="white"/>`];
  for (let d = ly0; d <= ly1; d++) {
    const y = Y(10 ** d);
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${y}" y2="${y}" stroke="#ddd"/><text x="${m.l - 6}" y="${y + 4}" text-anchor="end">${10 ** d >= 1 ? 10 ** d : (10 ** d).toPrecision(1)} s</text>`);
  }
  for (const x of xs) parts.push(`<line x1="${X(x)}" x2="${X(x)}" y1="${m.t}" y2="${H - m.b}" stroke="#eee"/><text x="${X(x)}" y="${H - m.b + 16}" text-anchor="middle">${x >= 1024 ? `${x / 1024} GiB` : `${x} MiB`}</text>`);
  // The fit through the mean point.
  const mx = xs.map(Math.log).reduce((a, b) => a + b) / xs.length;
  const my = ys.map(Math.log).reduce((a, b) => a + b) / ys.length;
  const fit = (x: number): number => Math.exp(my + e * (Math.log(x) - mx));
  parts.push(`<line x1="${X(xs[0]!)}" y1="${Y(fit(xs[0]!))}" x2="${X(xs.at(-1)!)}" y2="${Y(fit(xs.at(-1)!))}" stroke="#c33" stroke-dasharray="5,4"/>`);
  parts.push(`<polyline fill="none" stroke="#236" stroke-width="2" points="${xs.map((x, i) => `${X(x)},${Y(ys[i]!)}`).join(' ')}"/>`);
  for (let i = 0; i < xs.length; i++) parts.push(`<circle cx="${X(xs[i]!)}" cy="${Y(ys[i]!)}" r="3.5" fill="#236"/>`);
  parts.push(`<text x="${W / 2}" y="${m.t - 10}" text-anchor="middle" font-weight="bold">One full scan (steady state) against host size: time ∝ size^${e.toFixed(2)}</text>`);
  parts.push(`<text x="${W / 2}" y="${H - 12}" text-anchor="middle">host memory (3/4 of it written, log scale)</text>`);
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

export async function benchStore(maxGiB = 64): Promise<void> {
  const { metadataPerPage } = await import('./mm.js');
  const md = metadataPerPage();
  console.log(`metadata per touched page (frame + pte + mapping): measured ${md.measuredBytesPerPage.toFixed(1)} B, computed ${md.computedBytesPerPage.toFixed(1)} B (target ≤ 64 B); ${JSON.stringify(md.breakdown)}`);

  const sizes = [256, 1024, 4096, 16384, 65536].filter((m) => m <= maxGiB * 1024);
  const rows: Record<string, number | string>[] = [];
  console.log('\nfull scan against host size (3/4 written; steady state = a full scan once merged)');
  console.log(`  ${'host'.padStart(8)} ${'pages'.padStart(10)} ${'converge'.padStart(10)} ${'steady'.padStart(9)} ${'ns/page'.padStart(8)} ${'peak RSS'.padStart(9)}`);
  for (const mib of sizes) {
    const r = child(['scan', String(mib)]);
    if ('aborted' in r) {
      console.log(`  ${mib} MiB: ${r.aborted as string}`);
      break;
    }
    rows.push(r);
    const ns = ((r.steadySeconds as number) * 1e9) / (r.scannedPages as number);
    console.log(`  ${(mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`).padStart(8)} ${String(r.scannedPages).padStart(10)} ${(r.convergeSeconds as number).toFixed(2).padStart(9)}s ${(r.steadySeconds as number).toFixed(3).padStart(8)}s ${ns.toFixed(0).padStart(8)} ${((r.peakRss as number) / GiB).toFixed(2).padStart(7)}GiB`);
  }
  if (rows.length >= 2) {
    const xs = rows.map((r) => r.mib as number);
    const ys = rows.map((r) => r.steadySeconds as number);
    const e = exponent(xs, ys);
    console.log(`  fitted exponent: time ∝ size^${e.toFixed(3)}`);
    writeFileSync(`${HERE}/../docs/full-scan-cost.svg`, plot(xs, ys, e));
  }

  for (const file of ['host-256g.yaml', 'host-96g.yaml']) {
    const r = child(['host', `${HERE}/scenarios/${file}`]);
    if ('aborted' in r) {
      console.log(`\n${file}: ${r.aborted as string}`);
      continue;
    }
    const min = (r.simulatedMs as number) / 60000;
    console.log(`\n${r.name as string}: ${(r.modelledBytes as number) / GiB} GiB of RAM and swap modelled`);
    console.log(`  wall time ${(r.seconds as number).toFixed(1)} s (${((r.seconds as number) / min).toFixed(1)} s per simulated minute; estimate ${(r.estimateSeconds as number).toFixed(0)} s)`);
    console.log(`  peak RSS ${((r.peakRss as number) / GiB).toFixed(2)} GiB (estimate ${((r.estimateBytes as number) / GiB).toFixed(2)} GiB): simulated RAM / real memory = ${((r.modelledBytes as number) / (r.peakRss as number)).toFixed(1)}×`);
    console.log(`  pages_shared ${r.pagesShared}, pages_sharing ${r.pagesSharing}, full_scans ${r.fullScans}, pages scanned ${r.pagesScanned}, swap used ${((r.swapUsedBytes as number) / GiB).toFixed(2)} GiB`);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [cmd, arg] = process.argv.slice(2);
  if (cmd === 'host') hostChild(arg!);
  else if (cmd === 'scan') scanChild(Number(arg));
  else await benchStore(Number(cmd === 'all' ? (arg ?? 64) : (cmd ?? 64)));
}
