/**
 * `samepage demo`: KSM on the bare simulated kernel, without the VM manager. Two
 * QEMU-like processes whose RAM is mostly identical are registered MADV_MERGEABLE,
 * ksmd merges them, and the command prints /sys/kernel/mm/ksm and the memory saved.
 */
import { Kernel } from '../ksm/kernel.js';
import { PAGE_SIZE } from '../mm/constants.js';

export const DEMO_USAGE = `usage: samepage demo [--mib N] [--shared-percent P] [--seed S]

Runs two processes of N MiB (default 64) whose pages are P% (default 75) identical
across them, registers their memory MADV_MERGEABLE, runs ksmd to convergence and
prints the KSM statistics and the memory saved.
`;

interface DemoOptions {
  mib: number;
  sharedPercent: number;
  seed: number;
}

function parseDemoArgs(argv: string[]): DemoOptions | 'help' {
  const opts: DemoOptions = { mib: 64, sharedPercent: 75, seed: 1 };
  const args = argv;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--help' || a === '-h') return 'help';
    const next = (): number => {
      const v = args[++i];
      const n = Number(v);
      if (v === undefined || !Number.isInteger(n) || n < 0) throw new Error(`${a} needs a non-negative integer, got ${JSON.stringify(v)}`);
      return n;
    };
    if (a === '--mib') opts.mib = next();
    else if (a === '--shared-percent') opts.sharedPercent = next();
    else if (a === '--seed') opts.seed = next();
    else throw new Error(`unknown argument ${JSON.stringify(a)}`);
  }
  if (opts.mib < 1 || opts.mib > 4096) throw new Error(`--mib must be 1..4096, got ${opts.mib}`);
  if (opts.sharedPercent > 100) throw new Error(`--shared-percent must be 0..100, got ${opts.sharedPercent}`);
  return opts;
}

function demo(o: DemoOptions): void {
  const pages = (o.mib * 1024 * 1024) / PAGE_SIZE;
  const sharedPages = Math.floor((pages * o.sharedPercent) / 100);
  const blockMiB = 128;
  const memoryMiB = Math.ceil((2 * o.mib + 64) / blockMiB) * blockMiB;
  const kernel = new Kernel({ memoryMiB, blockMiB, seed: o.seed });
  const ksm = (f: string): string => kernel.sysfs.read(`/sys/kernel/mm/ksm/${f}`).trim();

  console.log(`Samepage: KSM (Linux 2.6.33 mm/ksm.c) on a simulated host with ${memoryMiB} MiB of RAM\n`);
  const page = new Uint8Array(PAGE_SIZE);
  const view = new DataView(page.buffer);
  for (const [gi, name] of ['qemu-a', 'qemu-b'].entries()) {
    const p = kernel.spawn(name);
    const base = p.mmap(pages * PAGE_SIZE, { prot: 'rw' });
    for (let i = 0; i < pages; i++) {
      // Shared pages: the same bytes in both guests (think kernel text, libraries,
      // zeroed-then-initialised tables); the rest: unique per guest and page.
      const unique = i >= sharedPages;
      const key = unique ? (o.seed * 7919 + (gi + 1) * 1048576 + i) >>> 0 : (o.seed * 31 + i) >>> 0;
      let x = (Math.imul(key, 2654435761) + 0x9e3779b9) >>> 0 || 1;
      for (let w = 0; w < PAGE_SIZE; w += 4) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        view.setUint32(w, x >>> 0, true);
      }
      p.write(base + i * PAGE_SIZE, page);
    }
    p.madvise(base, pages * PAGE_SIZE, 'MADV_MERGEABLE');
    console.log(`  ${name}: ${o.mib} MiB guest RAM mapped at 0x${base.toString(16)}, MADV_MERGEABLE`);
  }
  const before = kernel.meminfo();
  kernel.sysfs.write('/sys/kernel/mm/ksm/pages_to_scan', '1000');
  kernel.sysfs.write('/sys/kernel/mm/ksm/sleep_millisecs', '20');
  kernel.sysfs.write('/sys/kernel/mm/ksm/run', '1');
  let scans = 0;
  while (scans < 20) {
    const shared = ksm('pages_shared');
    const sharing = ksm('pages_sharing');
    scans += kernel.ksmd.runFullScans(1);
    if (scans >= 3 && ksm('pages_shared') === shared && ksm('pages_sharing') === sharing) break;
  }
  kernel.checkInvariants();
  const after = kernel.meminfo();
  console.log(`\nksmd ran ${(kernel.now / 1000).toFixed(2)} s of simulated time (pages_to_scan 1000, sleep_millisecs 20)\n`);
  console.log('/sys/kernel/mm/ksm:');
  for (const f of ['run', 'pages_shared', 'pages_sharing', 'pages_unshared', 'pages_volatile', 'full_scans']) {
    console.log(`  ${f.padEnd(16)}${ksm(f)}`);
  }
  const savedKiB = Number(ksm('pages_sharing')) * (PAGE_SIZE / 1024);
  console.log(`\nmemory saved: ${(savedKiB / 1024).toFixed(1)} MiB (pages_sharing × 4 KiB)`);
  console.log(`MemFree: ${(before.MemFree! / 1024).toFixed(1)} MiB before merging, ${(after.MemFree! / 1024).toFixed(1)} MiB after`);
  console.log(`AnonPages: ${(before.AnonPages! / 1024).toFixed(1)} MiB → ${(after.AnonPages! / 1024).toFixed(1)} MiB`);
}

/** Run `samepage demo` with its arguments; returns the exit code. */
export function demoCommand(argv: string[]): number {
  const opts = parseDemoArgs(argv);
  if (opts === 'help') {
    process.stdout.write(DEMO_USAGE);
    return 0;
  }
  demo(opts);
  return 0;
}
