/**
 * Host-kernel (src/mm) benchmarks: the costs every guest pays before KSM does anything.
 *
 *   memset 1 GiB      one process maps 1 GiB rw and memsets all of it through the MMU:
 *                     262144 write faults (alloc + zero + anon rmap + LRU) and 1 GiB of
 *                     fill. Target ≤ 1.5 s (a kernel of 1536 MiB).
 *   fork 1 GiB        fork() of that process: copy_page_range over 262144 present ptes
 *                     (get_page, page_dup_rmap, write-protect both sides). Target ≤ 0.5 s.
 *   metadata / page   bytes of bookkeeping per touched page, beside its 4096 bytes of
 *                     contents: the frame metadata arrays, the ptes and page tables.
 *                     Measured from heap + arrayBuffers growth over a 1 GiB kernel with
 *                     ~1 GiB touched (minus the content buffers), and computed from the
 *                     arrays' element sizes.
 *
 * Each timed step runs once after a small warm-up run (so the JIT has compiled the
 * fault path); wall time from performance.now().
 *
 *   npx tsx bench/mm.ts          standalone: prints a table
 *   import { benchMm }           from bench/run.ts: rows { name, value, unit, target }
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { PAGE_SIZE } from '../src/mm/constants.js';
import { HostKernel } from '../src/mm/kernel.js';
import { PTRS_PER_PTE } from '../src/mm/mm.js';

export interface Row {
  name: string;
  value: number;
  unit: string;
  target: string;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** A callable gc(), without needing node --expose-gc on the command line. */
function getGc(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === 'function') return g;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

function heapAndBuffers(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Warm the fault, memset and fork paths up on a small kernel. */
function warmUp(): void {
  const k = new HostKernel({ memoryMiB: 64, blockMiB: 64, seed: 1 });
  const p = k.spawn('warm-up');
  for (let i = 0; i < 3; i++) {
    const a = p.mmap(32 * MiB);
    p.memset(a, i + 1, 32 * MiB);
    const c = p.fork('warm-up-child');
    c.memset(a, 0x7f, 4 * MiB);
    c.exit();
    p.munmap(a, 32 * MiB);
  }
  p.exit();
}

export interface MemsetForkResult {
  memsetSeconds: number;
  forkSeconds: number;
  pages: number;
}

/** memset of `bytes` through the MMU in a fresh process, then fork() of it. */
export function memsetAndFork(bytes: number = GiB): MemsetForkResult {
  const k = new HostKernel({ memoryMiB: 1536, blockMiB: 128, seed: 1 });
  const p = k.spawn('memset');
  const a = p.mmap(bytes);
  const t0 = performance.now();
  p.memset(a, 0x5a, bytes);
  const t1 = performance.now();
  const c = p.fork('child');
  const t2 = performance.now();
  // Sanity: the child shares every frame, write-protected.
  if (c.pfnOf(a + bytes - PAGE_SIZE) !== p.pfnOf(a + bytes - PAGE_SIZE)) throw new Error('fork did not share the last page');
  c.exit();
  p.exit();
  return { memsetSeconds: (t1 - t0) / 1000, forkSeconds: (t2 - t1) / 1000, pages: bytes / PAGE_SIZE };
}

export interface MetadataResult {
  /** (heap + arrayBuffers growth − content buffers) / touched pages. */
  measuredBytesPerPage: number;
  /** From the arrays' element sizes: frame metadata + pte + page-table overhead. */
  computedBytesPerPage: number;
  breakdown: Record<string, number>;
  touchedPages: number;
}

/**
 * Bytes of bookkeeping per touched page. A kernel of `memoryMiB` is built and all but
 * one block of it touched (one process, rw, memset), so nearly every frame carries a
 * page; the growth of heap + arrayBuffers from before the kernel existed, minus the
 * bytes the content store holds (none: memset pages are fills), is the metadata.
 */
export function metadataPerPage(memoryMiB = 1024, blockMiB = 128): MetadataResult {
  const gc = getGc();
  gc();
  gc();
  const before = heapAndBuffers();
  const k = new HostKernel({ memoryMiB, blockMiB, seed: 1 });
  const p = k.spawn('meta');
  const bytes = (memoryMiB - blockMiB) * MiB;
  const a = p.mmap(bytes);
  p.memset(a, 1, bytes);
  gc();
  gc();
  const after = heapAndBuffers();
  const touched = bytes / PAGE_SIZE;
  const frames = k.mem.nrFrames;
  // Every page is memset to one value: a fill content, no bytes stored (contents.ts).
  const contents = k.mem.store.storedBytes;
  const measured = (after - before - contents) / touched;

  // Computed: every per-frame array of PhysMem, by its element size; `mapping` is a
  // JS array of references (8 bytes each on a 64-bit V8 without pointer compression,
  // as Node ships; one array per block in use). Free lists reuse the LRU links. Page
  // tables are one Float64Array(512) per 2 MiB touched: 8 bytes per pte (4 TiB of
  // frames need more than 32 bits) plus the table's own object and its Map entry
  // (about 160 bytes, shared by 512 pages).
  const mem = k.mem;
  const perFrame: Record<string, number> = {
    flags: mem.flags.BYTES_PER_ELEMENT,
    count: mem.count.BYTES_PER_ELEMENT,
    mapcount: mem.mapcount.BYTES_PER_ELEMENT,
    mapping: 8,
    index: mem.index.BYTES_PER_ELEMENT,
    private: mem.private.BYTES_PER_ELEMENT,
    lruPrev: mem.lruPrev.BYTES_PER_ELEMENT,
    lruNext: mem.lruNext.BYTES_PER_ELEMENT,
    content: mem.content.BYTES_PER_ELEMENT,
  };
  const tables = p.mm.pgtables.size;
  const ptes = tables * PTRS_PER_PTE * Float64Array.BYTES_PER_ELEMENT;
  const tableOverhead = tables * 160;
  const frameBytes = Object.values(perFrame).reduce((x, y) => x + y, 0) * frames;
  const computed = (frameBytes + ptes + tableOverhead) / touched;
  const breakdown: Record<string, number> = {};
  for (const [name, size] of Object.entries(perFrame)) breakdown[name] = round((size * frames) / touched, 2);
  breakdown.pte = round(ptes / touched, 2);
  breakdown.pageTableObjects = round(tableOverhead / touched, 2);
  p.exit();
  return { measuredBytesPerPage: measured, computedBytesPerPage: computed, breakdown, touchedPages: touched };
}

/** The last metadataPerPage() result, for the standalone breakdown. */
let lastMetadata: MetadataResult | null = null;

export async function benchMm(): Promise<Row[]> {
  warmUp();
  const mf = memsetAndFork(GiB);
  const md = metadataPerPage();
  lastMetadata = md;
  return [
    { name: 'memset 1 GiB through the MMU', value: round(mf.memsetSeconds, 3), unit: 's', target: '≤ 1.5 s' },
    { name: 'fork of a process with 1 GiB touched', value: round(mf.forkSeconds, 3), unit: 's', target: '≤ 0.5 s' },
    { name: 'metadata per touched page (measured)', value: round(md.measuredBytesPerPage, 1), unit: 'B', target: 'report' },
    { name: 'metadata per touched page (computed)', value: round(md.computedBytesPerPage, 1), unit: 'B', target: 'report' },
  ];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const rows = await benchMm();
  console.log(`${'benchmark'.padEnd(44)} ${'value'.padStart(10)} unit   target`);
  for (const r of rows) console.log(`${r.name.padEnd(44)} ${String(r.value).padStart(10)} ${r.unit.padEnd(6)} ${r.target}`);
  const md = lastMetadata!;
  console.log(`\nmetadata per touched page (${md.touchedPages} pages touched), computed, by field (B): ${JSON.stringify(md.breakdown)}`);
}
