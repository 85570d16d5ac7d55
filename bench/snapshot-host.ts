/**
 * Host snapshots at the scale: a host with 4 GiB of guest RAM — eight guests
 * of 512 MiB (Fedora 13, Fedora 12, Ubuntu 10.04 and a Windows-like guest, two of
 * each) on 4 GiB of RAM — booted and merged by ksmd, then host.save() (saveKernel,
 * the host's state, msgpackr with records, CRC) and Host.restore(), timed, with the
 * file's size. The restored host is checked against the original outside the
 * timings: the same sample, and both go on for a simulated second identically.
 *
 *   node --expose-gc --import tsx bench/snapshot-host.ts [GUEST_MIB]    (default 512)
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { Host, loadImageCatalog } from '../src/index.js';

export interface HostSnapshotFigures {
  guestRamMiB: number;
  inUseMiB: number;
  savedByKsmMiB: number;
  fileBytes: number;
  saveMs: number;
  restoreMs: number;
  setupSeconds: number;
  identical: boolean;
}

export function benchHostSnapshot(guestMiB = 512): HostSnapshotFigures {
  const t0 = performance.now();
  const images = loadImageCatalog();
  const host = new Host({
    memoryMiB: 4096,
    swapMiB: 1024,
    blockMiB: 128,
    seed: 11,
    images,
    ksm: { policy: 'fixed', run: 1, pagesToScan: 20000, sleepMillisecs: 20, maxKernelPages: 0 },
  });
  const fleet: [string, string][] = [['fedora', '13'], ['fedora', '12'], ['ubuntu', '10.04'], ['windows', '2008']];
  let i = 0;
  for (const [image, version] of fleet) {
    for (let k = 0; k < 2; k++) {
      const name = `${image}-${version}-${k + 1}`.replace(/\./g, '');
      host.createGuest({ name, image, version, memoryMiB: guestMiB });
      host.startGuest(name);
      i++;
    }
  }
  host.advance(90_000);
  const setupSeconds = (performance.now() - t0) / 1000;
  const before = host.sample();
  globalThis.gc?.();
  const s0 = performance.now();
  const bytes = host.save();
  const saveMs = performance.now() - s0;
  globalThis.gc?.();
  const r0 = performance.now();
  const restored = Host.restore(bytes, images);
  const restoreMs = performance.now() - r0;
  const same = JSON.stringify(restored.sample()) === JSON.stringify(before);
  host.advance(1000);
  restored.advance(1000);
  const identical = same && JSON.stringify(restored.sample()) === JSON.stringify(host.sample());
  return {
    guestRamMiB: i * guestMiB,
    inUseMiB: (before.totalBytes - before.freeBytes) / 1048576,
    savedByKsmMiB: before.savedBytes / 1048576,
    fileBytes: bytes.length,
    saveMs,
    restoreMs,
    setupSeconds,
    identical,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const f = benchHostSnapshot(Number(process.argv[2] ?? 512));
  console.log(
    `host snapshot: ${f.guestRamMiB} MiB of guest RAM, ${f.inUseMiB.toFixed(0)} MiB in use (KSM saves ${f.savedByKsmMiB.toFixed(0)} MiB): ` +
      `file ${(f.fileBytes / 1048576).toFixed(0)} MiB, save ${(f.saveMs / 1000).toFixed(2)} s, restore ${(f.restoreMs / 1000).toFixed(2)} s, ` +
      `continues identically: ${f.identical} (setup ${f.setupSeconds.toFixed(0)} s)`,
  );
}
