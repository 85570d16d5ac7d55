/**
 * npm run bench: every benchmark, each figure beside the machine's real kernel where
 * there is one. Sizes are those of the issues' targets; pass a smaller MiB as the first
 * argument for a quick run (npm run bench -- 256).
 */
import { DEFAULTS_6_18 } from '../test/oracle/real.js';
import { samepageKsmpages, type Mode } from './ksmpages.js';
import { realKsmpages } from './realKsmpages.js';

const mib = Number(process.argv[2] ?? 1024);
/** `npx tsx bench/run.ts MIB 6.18`: only ksmpages in the 6.18 profile beside the real ksmd's defaults. */
const only618 = process.argv[3] === '6.18';

/** ksmpages in the 6.18 profile beside the real ksmd in its default configuration. */
async function ksmpages618(): Promise<void> {
  console.log(`\nksmpages, Linux 6.18 profile beside the real ksmd in its default configuration (max_page_sharing 256, smart_scan 1), 2 × ${mib} MiB, pages_to_scan 100000, sleep_millisecs 0`);
  for (const mode of ['worst', 'best'] as Mode[]) {
    const s = samepageKsmpages(mib, mode, '6.18');
    const r = await realKsmpages(mib, mode, { knobs: DEFAULTS_6_18 });
    const real = 'skipped' in r ? `real ksmd: skipped (${r.skipped})` : `real ksmd ${r.seconds.toFixed(2)} s (${r.fullScans} full scans, shared ${r.pagesShared}, sharing ${r.pagesSharing})`;
    console.log(`  ${mode.padEnd(6)} Samepage ${s.seconds.toFixed(2)} s (${s.fullScans} full scans, shared ${s.pagesShared}, sharing ${s.pagesSharing})   ${real}`);
  }
}

async function main(): Promise<void> {
  if (only618) {
    await ksmpages618();
    return;
  }
  try {
    const { benchMm } = await import('./mm.js');
    console.log('host kernel (src/mm)');
    for (const r of await benchMm()) console.log(`  ${r.name.padEnd(44)} ${String(r.value).padStart(10)} ${r.unit.padEnd(6)} target ${r.target}`);
  } catch (e) {
    console.log(`  (mm benchmarks unavailable: ${(e as Error).message})`);
  }
  console.log(`\nksmpages, 2 × ${mib} MiB, pages_to_scan 100000, sleep_millisecs 0`);
  for (const mode of ['worst', 'best'] as Mode[]) {
    const s = samepageKsmpages(mib, mode);
    const r = await realKsmpages(mib, mode);
    const real = 'skipped' in r ? `real ksmd: skipped (${r.skipped})` : `real ksmd ${r.seconds.toFixed(2)} s (${r.fullScans} full scans)`;
    console.log(`  ${mode.padEnd(6)} Samepage ${s.seconds.toFixed(2)} s (${s.fullScans} full scans, shared ${s.pagesShared}, sharing ${s.pagesSharing}, ~${s.ksmBytesPerPage.toFixed(0)} B KSM metadata per page)   ${real}`);
  }
  await ksmpages618();
  // ksmd's CPU cost model, calibrated on the real ksmd (src/ksm/cost.ts ships the figures).
  console.log('\nksmd CPU cost calibration (bench/calibrate-ksmd.ts)');
  const { calibrateKsmd, describeCalibration } = await import('./calibrate-ksmd.js');
  const cal = await calibrateKsmd((line) => console.log(line));
  console.log('skipped' in cal ? `  skipped (${cal.skipped})` : describeCalibration(cal));
  // Snapshots: a host with 4 GiB of guest RAM (8 guests × mib/2), saved and restored.
  const { benchHostSnapshot } = await import('./snapshot-host.js');
  const f = benchHostSnapshot(Math.max(128, mib / 2));
  console.log(`\nsnapshot of a host with ${f.guestRamMiB} MiB of guest RAM (${f.inUseMiB.toFixed(0)} MiB in use, KSM saving ${f.savedByKsmMiB.toFixed(0)} MiB)`);
  console.log(`  file ${(f.fileBytes / 1048576).toFixed(0)} MiB, host.save() ${(f.saveMs / 1000).toFixed(2)} s, Host.restore() ${(f.restoreMs / 1000).toFixed(2)} s, continues identically: ${f.identical}`);
  // Issue 13's sizes: metadata per page, full-scan cost against host size, the 256 GiB
  // and 96 GiB hosts (each in a child process, stopped past 10 GB of RSS).
  console.log('\nhost sizes (bench/store.ts)');
  const { benchStore } = await import('./store.js');
  await benchStore(64);
}

await main();
