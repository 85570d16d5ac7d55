/**
 * KSM metadata per merged page (issue 13: at most 64 B; struct ksm_rmap_item alone is
 * 64 B in the kernel). Two processes of N pages each merge completely, as in
 * ksmpages (seeds/003): `worst`, page i of one with page i of the other (N KSM pages,
 * one stable node per two rmap_items), or `best`, every page alike (one KSM page in
 * 2.6.33; one per 256 mappings under a chain in 6.18).
 *
 * Two figures, each divided by the 2N merged pages:
 *  - records: the bytes of KSM's record tables as allocated (src/ksm/structs.ts:
 *    every typed array's byteLength, at its current capacity, so the slack of the last
 *    doubling counts; plus the mm and anon_vma tables' slots), and as used (records in
 *    use times the record size);
 *
 * And a figure measured from the outside: the growth of V8's heap plus array buffers
 * from run=1 until done, after a full GC (each mode in a fresh process with
 * --expose-gc), per merged page (best) or per rmap_item (`distinct`: every page
 * different, so nothing merges and every page ends in the unstable tree). Not for
 * worst: merging N distinct pairs frees N stored page contents, which would net out
 * of it. In best the pages are fills, and freeing their frames frees no bytes.
 *
 *   npx tsx bench/ksm-metadata.ts [MIB] [--6.18]   (default 256; each mode in a child
 *   process with --expose-gc)
 */
import { spawn } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PAGE_SIZE } from '../src/index.js';
import { ksmpagesKernel } from './ksmpages.js';
import { RmapItemCache, StableNodeCache } from '../src/ksm/structs.js';

export interface KsmMetadataFigures {
  mode: 'worst' | 'best' | 'distinct';
  mergedPages: number;
  rmapItems: number;
  stableNodes: number;
  /** Bytes of the record tables as allocated, per merged page. */
  allocatedPerPage: number;
  /** Bytes of the records in use, per merged page. */
  usedPerPage: number;
  /** best and distinct: heap + array buffer growth per merged page or rmap_item (null without --expose-gc, and for worst). */
  heapPerItem: number | null;
}

function memory(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

export function ksmMetadata(mib: number, mode: 'worst' | 'best' | 'distinct', version: '2.6.33' | '6.18'): KsmMetadataFigures {
  const n = (mib * 1024 * 1024) / PAGE_SIZE;
  const k = ksmpagesKernel(mib, mode, version);
  const gc = globalThis.gc;
  // Twice on each side: one full GC can leave the setup's garbage (a figure of -9 B
  // per rmap_item once came of it).
  gc?.();
  gc?.();
  const before = memory();
  const ksm = k.ksmEngine;
  k.sysfs.write('/sys/kernel/mm/ksm/run', '1');
  const done = (): boolean => (mode === 'distinct' ? ksm.pagesUnshared === 2 * n : ksm.pagesShared + ksm.pagesSharing === 2 * n);
  while (!done()) {
    k.advance(1);
    if (ksm.seqnr > 4) throw new Error(`${mode}: not done after 4 full scans`);
  }
  gc?.();
  gc?.();
  const after = memory();
  const ri = ksm.rmapItemCache;
  const sn = ksm.stableNodeCache;
  // distinct merges nothing: its figures are per rmap_item.
  const merged = mode === 'distinct' ? ri.count : ksm.pagesShared + ksm.pagesSharing;
  // Each table's arrays, a union's counted once; the object tables' slots at 8 B (a
  // JS array element, uncompressed pointers: the upper bound).
  const allocated =
    ri.capacity * RmapItemCache.RECORD_BYTES + sn.capacity * StableNodeCache.RECORD_BYTES + 8 * (ksm.mmTable.objects.length + ksm.anonVmaTable.objects.length);
  const used = ri.count * RmapItemCache.RECORD_BYTES + sn.count * StableNodeCache.RECORD_BYTES;
  k.checkInvariants();
  return {
    mode,
    mergedPages: merged,
    rmapItems: ri.count,
    stableNodes: sn.count,
    allocatedPerPage: allocated / merged,
    usedPerPage: used / merged,
    heapPerItem: gc === undefined || mode === 'worst' ? null : (after - before) / merged,
  };
}

/** One mode in a fresh process: a heap figure is only clean when nothing of an earlier run is left to collect. */
function inChild(mib: number, mode: string, version: string): Promise<KsmMetadataFigures> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', fileURLToPath(import.meta.url), String(mib), `--mode=${mode}`, `--${version}`, '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as KsmMetadataFigures) : reject(new Error(`ksm-metadata ${mode}: exit ${code}`))));
  });
}

/** Every mode of one profile, each in its own process; one line each. */
export async function benchKsmMetadata(mib: number, version: '2.6.33' | '6.18', log: (line: string) => void): Promise<KsmMetadataFigures[]> {
  const figures: KsmMetadataFigures[] = [];
  for (const mode of ['worst', 'best', 'distinct'] as const) {
    const f = await inChild(mib, mode, version);
    figures.push(f);
    const per = mode === 'distinct' ? 'rmap_item (nothing merges)' : 'merged page';
    const heap = f.heapPerItem === null ? '' : `; heap+buffers grew ${f.heapPerItem.toFixed(1)} B per ${mode === 'distinct' ? 'rmap_item' : 'merged page'}`;
    log(
      `  Linux ${version} ${mode.padEnd(8)} 2x${mib} MiB: ${f.mergedPages} ${mode === 'distinct' ? 'pages scanned' : 'merged pages'}, ${f.rmapItems} rmap_items, ${f.stableNodes} stable nodes: ` +
        `records ${f.usedPerPage.toFixed(1)} B used, ${f.allocatedPerPage.toFixed(1)} B allocated per ${per}${heap}`,
    );
  }
  return figures;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const version = process.argv.includes('--6.18') ? '6.18' : '2.6.33';
  const mib = Number(args[0] ?? 256);
  const mode = process.argv.find((a) => a.startsWith('--mode='))?.slice('--mode='.length);
  if (mode !== undefined) {
    const f = ksmMetadata(mib, mode as 'worst' | 'best' | 'distinct', version);
    if (process.argv.includes('--json')) process.stdout.write(JSON.stringify(f));
    else console.log(f);
  } else {
    await benchKsmMetadata(mib, version, (line) => console.log(line));
  }
}
