/**
 * npm run bench: every benchmark, each figure beside the machine's real kernel where
 * there is one. Sizes are those of the issues' targets; pass a smaller MiB as the first
 * argument for a quick run (npm run bench -- 256).
 */
import { DEFAULTS_6_18 } from '../test/oracle/real.js';
import { samepageKsmpages, type Mode } from './ksmpages.js';
import { realKsmpages } from './realKsmpages.js';

const mib = Number(process.argv[2] ?? 1024);
/**
 * `npx tsx bench/run.ts MIB 6.18`: only ksmpages in the 6.18 profile beside the real
 * ksmd's defaults; `... MIB ksmpages`: only ksmpages, in both profiles.
 */
const only618 = process.argv[3] === '6.18';
const onlyKsmpages = process.argv[3] === 'ksmpages';

/** ksmpages in the 2.6.33 profile beside the real ksmd configured like 2.6.33. */
async function ksmpages2633(): Promise<void> {
  console.log(`\nksmpages, 2 × ${mib} MiB, pages_to_scan 100000, sleep_millisecs 0`);
  for (const mode of ['worst', 'best'] as Mode[]) {
    const s = samepageKsmpages(mib, mode);
    const r = await realKsmpages(mib, mode);
    const real = 'skipped' in r ? `real ksmd: skipped (${r.skipped})` : `real ksmd ${r.seconds.toFixed(2)} s (${r.fullScans} full scans), Samepage/real ${(s.seconds / r.seconds).toFixed(2)}`;
    console.log(`  ${mode.padEnd(6)} Samepage ${s.seconds.toFixed(2)} s (${s.fullScans} full scans, shared ${s.pagesShared}, sharing ${s.pagesSharing})   ${real}`);
  }
}

/** ksmpages in the 6.18 profile beside the real ksmd in its default configuration. */
async function ksmpages618(): Promise<void> {
  console.log(`\nksmpages, Linux 6.18 profile beside the real ksmd in its default configuration (max_page_sharing 256, smart_scan 1), 2 × ${mib} MiB, pages_to_scan 100000, sleep_millisecs 0`);
  for (const mode of ['worst', 'best'] as Mode[]) {
    const s = samepageKsmpages(mib, mode, '6.18');
    const r = await realKsmpages(mib, mode, { knobs: DEFAULTS_6_18 });
    const real = 'skipped' in r ? `real ksmd: skipped (${r.skipped})` : `real ksmd ${r.seconds.toFixed(2)} s (${r.fullScans} full scans, shared ${r.pagesShared}, sharing ${r.pagesSharing}), Samepage/real ${(s.seconds / r.seconds).toFixed(2)}`;
    console.log(`  ${mode.padEnd(6)} Samepage ${s.seconds.toFixed(2)} s (${s.fullScans} full scans, shared ${s.pagesShared}, sharing ${s.pagesSharing})   ${real}`);
  }
}

async function main(): Promise<void> {
  if (only618 || onlyKsmpages) {
    if (onlyKsmpages) await ksmpages2633();
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
  await ksmpages2633();
  await ksmpages618();
  // KSM metadata per merged page, from the record tables and the heap (each case in a child process).
  console.log('\nKSM metadata per merged page (bench/ksm-metadata.ts, 2 × 256 MiB)');
  const { benchKsmMetadata } = await import('./ksm-metadata.js');
  for (const v of ['2.6.33', '6.18'] as const) await benchKsmMetadata(256, v, (line) => console.log(line));
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
