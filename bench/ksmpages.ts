/**
 * ksmpages (seeds/003) through Samepage: the same two processes and the same page
 * contents as bench/real-ksmpages.c, the same knobs (pages_to_scan 100000,
 * sleep_millisecs 0), timed from writing run=1 until the same "fully merged"
 * condition, checked after every ksmd batch (the real side polls every millisecond).
 *
 * In the 6.18 profile (`version` '6.18', its default knobs: max_page_sharing 256,
 * smart_scan 1) the best case makes a KSM page per 256 mappings under one chain, so
 * "fully merged" is every page in the stable tree: pages_shared + pages_sharing = 2N.
 *
 *   npx tsx bench/ksmpages.ts [MIB] [worst|best|distinct ...] [--6.18]   (default 1024 worst best)
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { Kernel, PAGE_SIZE } from '../src/index.js';

export type Mode = 'worst' | 'best' | 'distinct';

export interface SamepageKsmpages {
  seconds: number;
  fullScans: number;
  pagesShared: number;
  pagesSharing: number;
  pagesUnshared: number;
  pagesVolatile: number;
  setupSeconds: number;
}

function stat(k: Kernel, f: string): number {
  return Number(k.sysfs.read(`/sys/kernel/mm/ksm/${f}`));
}

/**
 * The two ksmpages processes of `mib` each, written for `mode`, mergeable, and the knobs
 * set (run still 0): what both this benchmark and bench/ksm-metadata.ts start from.
 */
export function ksmpagesKernel(mib: number, mode: Mode, version: '2.6.33' | '6.18'): Kernel {
  const n = (mib * 1024 * 1024) / PAGE_SIZE;
  const blockMiB = 128;
  const memoryMiB = Math.ceil((2 * mib + 64) / blockMiB) * blockMiB;
  const k = new Kernel({ memoryMiB, blockMiB, seed: 1, version });
  const procs = [k.spawn('ksmpages-1'), k.spawn('ksmpages-2')];
  const tail = new Uint8Array(8);
  const tv = new DataView(tail.buffer);
  procs.forEach((p, pi) => {
    const base = p.mmap(mib * 1024 * 1024);
    if (mode === 'best') {
      p.memset(base, 1, mib * 1024 * 1024);
    } else {
      p.memset(base, 0, mib * 1024 * 1024);
      tv.setUint32(0, mode === 'distinct' ? 1 + pi : 1, true);
      for (let i = 0; i < n; i++) {
        tv.setUint32(4, i, true);
        p.write(base + i * PAGE_SIZE + PAGE_SIZE - 8, tail);
      }
    }
    p.madvise(base, mib * 1024 * 1024, 'MADV_MERGEABLE');
  });
  k.sysfs.write('/sys/kernel/mm/ksm/pages_to_scan', '100000');
  k.sysfs.write('/sys/kernel/mm/ksm/sleep_millisecs', '0');
  // 2.6.33 caps KSM pages at a quarter of RAM (max_kernel_pages); 6.x has no such
  // cap, and the worst case needs N of them: lift it, as the real side has none.
  if (version === '2.6.33') k.sysfs.write('/sys/kernel/mm/ksm/max_kernel_pages', '0');
  return k;
}

export function samepageKsmpages(mib: number, mode: Mode, version: '2.6.33' | '6.18' = '2.6.33'): SamepageKsmpages {
  const n = (mib * 1024 * 1024) / PAGE_SIZE;
  const t0 = performance.now();
  const k = ksmpagesKernel(mib, mode, version);
  const setupSeconds = (performance.now() - t0) / 1000;

  const done = (): boolean => {
    switch (mode) {
      case 'worst':
        return k.ksmEngine.pagesShared === n && k.ksmEngine.pagesSharing === n;
      case 'best':
        return version === '2.6.33' ? k.ksmEngine.pagesShared === 1 && k.ksmEngine.pagesSharing === 2 * n - 1 : k.ksmEngine.pagesShared + k.ksmEngine.pagesSharing === 2 * n;
      case 'distinct':
        return k.ksmEngine.pagesUnshared === 2 * n;
    }
  };
  const start = performance.now();
  k.sysfs.write('/sys/kernel/mm/ksm/run', '1');
  while (!done()) {
    k.advance(1);
    if (k.ksmEngine.seqnr > 4) throw new Error(`ksmpages ${mode}: not converged after 4 full scans`);
  }
  const seconds = (performance.now() - start) / 1000;
  const fullScans = stat(k, 'full_scans');
  const res: SamepageKsmpages = {
    seconds,
    fullScans,
    pagesShared: stat(k, 'pages_shared'),
    pagesSharing: stat(k, 'pages_sharing'),
    pagesUnshared: stat(k, 'pages_unshared'),
    pagesVolatile: stat(k, 'pages_volatile'),
    setupSeconds,
  };
  k.checkInvariants();
  return res;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2).filter((a) => a !== '--6.18');
  const version = process.argv.includes('--6.18') ? '6.18' : '2.6.33';
  const mib = Number(args[0] ?? 1024);
  const modes = (args.length > 1 ? args.slice(1) : ['worst', 'best']) as Mode[];
  for (const m of modes) {
    const r = samepageKsmpages(mib, m, version);
    console.log(`${m} 2x${mib} MiB: ${r.seconds.toFixed(2)} s, full scans ${r.fullScans}, shared ${r.pagesShared} sharing ${r.pagesSharing} unshared ${r.pagesUnshared} volatile ${r.pagesVolatile} (setup ${r.setupSeconds.toFixed(1)} s)`);
  }
}
