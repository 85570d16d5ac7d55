/**
 * Kernel snapshots at scale: a host of 4 GiB whose three processes hold 1 GiB each,
 * three quarters of every process's pages equal across all three (so about half of
 * the 3 GiB in use are duplicates), merged by ksmd; then saveKernel(), msgpackr
 * pack(), unpack(), checkKernelImage() and restoreKernel(), each timed, and the
 * packed size. The saved kernel is dropped before unpacking, as for a restore from a
 * file. The restored kernel is checked outside the timings: checkInvariants, the same
 * statistics, and its own image packs to the same bytes.
 *
 *   npx tsx bench/snapshot-kernel.ts [MIB_PER_PROCESS]     (default 1024)
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { Packr, pack, unpack } from 'msgpackr';
import { Kernel, PAGE_SIZE } from '../src/index.js';
import { checkKernelImage, restoreKernel, saveKernel } from '../src/ksm/kernel.js';
import type { KernelImage } from '../src/mm/snapshot.js';
import { byteFields } from '../src/vmm/snapshot.js';

export interface SnapshotFigures {
  mibPerProcess: number;
  framesInUse: number;
  distinctContents: number;
  saveMs: number;
  /** msgpackr pack() as is, growing its buffer as it goes. */
  packMs: number;
  /** msgpackr with its output buffer sized beforehand (Packr.useBuffer). */
  packPresizedMs: number;
  packedBytes: number;
  unpackMs: number;
  checkMs: number;
  restoreMs: number;
  setupSeconds: number;
  /** For scale: writing as many bytes as the content table into fresh memory, here. */
  touchMs: number;
}

/**
 * Both saving and restoring write every distinct page into memory the process has
 * never touched (the content table; the restored kernel's blocks), and the cost of
 * first-touching memory varies a lot between machines (on a VM, 0.3-13 µs a page):
 * measured here so that the figures can be read against it.
 */
function touchFresh(bytes: number): number {
  const t = performance.now();
  const b = Buffer.allocUnsafeSlow(bytes);
  for (let off = 0; off < bytes; off += PAGE_SIZE) b[off] = 1;
  return performance.now() - t;
}

const PROCESSES = 3;

function stat(k: Kernel, f: string): number {
  return Number(k.sysfs.read(`/sys/kernel/mm/ksm/${f}`));
}

/** Page i of process p: shared by all processes when i % 4 < 3, else its own. */
function tagOf(p: number, i: number): number {
  return i % 4 < 3 ? i : (p + 1) * 0x1000000 + i;
}

function merged(mibPerProcess: number): { k: Kernel; bases: number[] } {
  const n = (mibPerProcess * 1024 * 1024) / PAGE_SIZE;
  const memoryMiB = Math.max(4096, Math.ceil((PROCESSES * mibPerProcess + 512) / 128) * 128);
  const k = new Kernel({ memoryMiB, blockMiB: 128, swapMiB: 0, seed: 1 });
  const tag = new Uint8Array(8);
  const tv = new DataView(tag.buffer);
  const procs = Array.from({ length: PROCESSES }, (_, p) => k.spawn(`guest-${p}`));
  const bases = procs.map((proc, p) => {
    const base = proc.mmap(n * PAGE_SIZE);
    proc.memset(base, 0, n * PAGE_SIZE);
    // The tag at the start of the page, so that memcmp tells pages apart at once.
    for (let i = 0; i < n; i++) {
      tv.setFloat64(0, tagOf(p, i), true);
      proc.write(base + i * PAGE_SIZE, tag);
    }
    proc.madvise(base, n * PAGE_SIZE, 'MADV_MERGEABLE');
    return base;
  });
  k.sysfs.write('/sys/kernel/mm/ksm/pages_to_scan', '100000');
  k.sysfs.write('/sys/kernel/mm/ksm/sleep_millisecs', '0');
  k.sysfs.write('/sys/kernel/mm/ksm/max_kernel_pages', '0');
  k.sysfs.write('/sys/kernel/mm/ksm/run', '1');
  k.ksmd.runFullScans(2);
  // Stop partway through a third scan, so the image holds a live cursor and an unstable tree.
  k.advance(4);
  const shared = (n / 4) * 3;
  if (stat(k, 'pages_shared') !== shared || stat(k, 'pages_sharing') !== shared * (PROCESSES - 1)) {
    throw new Error(`not merged: pages_shared ${stat(k, 'pages_shared')} pages_sharing ${stat(k, 'pages_sharing')}, expected ${shared} and ${shared * (PROCESSES - 1)}`);
  }
  return { k, bases };
}

export function snapshotKernel(mibPerProcess: number): SnapshotFigures {
  const t0 = performance.now();
  let k: Kernel | null = merged(mibPerProcess).k;
  const setupSeconds = (performance.now() - t0) / 1000;

  globalThis.gc?.();
  const n = (mibPerProcess * 1024 * 1024) / PAGE_SIZE;
  const touchMs = touchFresh(((n / 4) * 3 + PROCESSES * (n / 4)) * PAGE_SIZE); // the distinct pages
  globalThis.gc?.();
  let t = performance.now();
  let img: KernelImage | null = saveKernel(k);
  const saveMs = performance.now() - t;
  const figures = { framesInUse: img.mem.flags.byteLength / 4, distinctContents: img.contents.pages };
  t = performance.now();
  let bytes: Buffer = pack(img);
  const packMs = performance.now() - t;
  bytes = Buffer.alloc(0);
  globalThis.gc?.();
  const packr = new Packr({ useRecords: false }); // what pack() uses
  t = performance.now();
  packr.useBuffer(Buffer.allocUnsafeSlow(byteFields(img) + (1 << 20)));
  bytes = packr.pack(img);
  const packPresizedMs = performance.now() - t;
  const packedBytes = bytes.length;

  // Restore as a fresh process would from a file: the saved kernel is gone.
  const stats = ['pages_shared', 'pages_sharing', 'pages_unshared', 'pages_volatile', 'full_scans'].map((f) => stat(k!, f));
  k = null;
  img = null;
  globalThis.gc?.();
  t = performance.now();
  const decoded = unpack(bytes) as KernelImage;
  const unpackMs = performance.now() - t;
  t = performance.now();
  const problem = checkKernelImage(decoded);
  const checkMs = performance.now() - t;
  if (problem !== null) throw new Error(`image refused: ${problem}`);
  t = performance.now();
  const r = restoreKernel(decoded);
  const restoreMs = performance.now() - t;

  // Outside the timings: the restored kernel is the saved one. Its image packs to the
  // same bytes, its checks pass, and it has the same statistics.
  r.checkInvariants();
  const again = ['pages_shared', 'pages_sharing', 'pages_unshared', 'pages_volatile', 'full_scans'].map((f) => stat(r, f));
  if (again.join() !== stats.join()) throw new Error(`statistics ${again.join()} restored, ${stats.join()} saved`);
  packr.useBuffer(Buffer.allocUnsafeSlow(packedBytes + (1 << 20)));
  if (Buffer.compare(packr.pack(saveKernel(r)), bytes) !== 0) throw new Error('the restored kernel saves a different image');
  return { mibPerProcess, ...figures, saveMs, packMs, packPresizedMs, packedBytes, unpackMs, checkMs, restoreMs, setupSeconds, touchMs };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const mib = Number(process.argv[2] ?? 1024);
  const f = snapshotKernel(mib);
  const mb = (b: number): string => `${(b / 1024 / 1024).toFixed(0)} MiB`;
  console.log(`kernel snapshot, ${PROCESSES} x ${mib} MiB merged by KSM (${f.framesInUse} frames in use, ${f.distinctContents} distinct contents = ${mb(f.distinctContents * PAGE_SIZE)}):`);
  console.log(`  saveKernel ${f.saveMs.toFixed(0)} ms; msgpackr pack ${f.packMs.toFixed(0)} ms (${f.packPresizedMs.toFixed(0)} ms into a buffer sized beforehand); packed ${mb(f.packedBytes)} (${f.packedBytes} bytes)`);
  console.log(`  unpack ${f.unpackMs.toFixed(0)} ms, checkKernelImage ${f.checkMs.toFixed(0)} ms, restoreKernel ${f.restoreMs.toFixed(0)} ms (includes the check)`);
  console.log(`  (setup and merging ${f.setupSeconds.toFixed(1)} s; for scale, first-touching ${mb(f.distinctContents * PAGE_SIZE)} of fresh memory takes ${f.touchMs.toFixed(0)} ms on this machine)`);
}
