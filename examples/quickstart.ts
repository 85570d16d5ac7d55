/**
 * The README's library example, runnable: npx tsx examples/quickstart.ts
 *
 * Two QEMU-like processes map guest RAM, fill most of it identically, register it
 * MADV_MERGEABLE and let ksmd merge it; then one guest writes to a merged page and
 * gets its own copy back (copy-on-write), while the other keeps the shared one.
 */
import { Kernel, KernelError, PAGE_SIZE } from '../src/index.js';

const kernel = new Kernel({ memoryMiB: 256, swapMiB: 64, blockMiB: 64, seed: 1 });
const ksm = (f: string): string => kernel.sysfs.read(`/sys/kernel/mm/ksm/${f}`).trim();

const pages = 64;
const a = kernel.spawn('qemu-a');
const base = a.mmap(pages * PAGE_SIZE, { prot: 'rw' });
a.memset(base, 0x61, pages * PAGE_SIZE);
a.madvise(base, pages * PAGE_SIZE, 'MADV_MERGEABLE');
const b = a.fork('qemu-b'); // inherits the mapping, MADV_MERGEABLE and all

kernel.sysfs.write('/sys/kernel/mm/ksm/run', '1');
kernel.ksmd.runFullScans(2);
console.log(`after 2 full scans: pages_shared ${ksm('pages_shared')}, pages_sharing ${ksm('pages_sharing')}`);
console.log(`qemu-a and qemu-b map page 0 at frame ${a.pfnOf(base)} and ${b.pfnOf(base)}`);

b.write(base, new TextEncoder().encode('hello'));
console.log(`after qemu-b writes page 0: qemu-a reads "${String.fromCharCode(...a.read(base, 5))}", qemu-b reads "${new TextDecoder().decode(b.read(base, 5))}"`);
console.log(`frames now ${a.pfnOf(base)} and ${b.pfnOf(base)}`);

try {
  a.madvise(base + 1, PAGE_SIZE, 'MADV_MERGEABLE');
} catch (e) {
  if (e instanceof KernelError) console.log(`an unaligned madvise fails as on Linux: ${e.code} (errno ${e.errno})`);
}

const swapped = kernel.reclaim(1000);
console.log(`reclaim wrote ${swapped} pages to swap; qemu-a still reads ${a.read(base + PAGE_SIZE, 1)[0]!.toString(16)}`);
kernel.checkInvariants();
console.log('invariants hold');
