/**
 * What the KSM tests share: a small kernel, the statistics as /sys/kernel/mm/ksm shows
 * them, and ways to drive ksmd one batch or one full scan at a time.
 *
 * Every expected number in these tests is worked out from 2.6.33 mm/ksm.c (the seed),
 * in the comment above the assertion; none was taken from the model's output.
 */
import { Kernel, KernelError, PAGE_SIZE, type Process } from '../../src/index.js';

export const KSM_DIR = '/sys/kernel/mm/ksm';
export const RUN = `${KSM_DIR}/run`;
export const PAGES_TO_SCAN = `${KSM_DIR}/pages_to_scan`;
export const SLEEP_MILLISECS = `${KSM_DIR}/sleep_millisecs`;
export const MAX_KERNEL_PAGES = `${KSM_DIR}/max_kernel_pages`;

/** 64 MiB of RAM in 16 MiB blocks, no swap: 16384 frames, fast to check. */
export function newKernel(memoryMiB = 64): Kernel {
  return new Kernel({ memoryMiB, swapMiB: 0, blockMiB: 16, seed: 1 });
}

/** One /sys/kernel/mm/ksm file as a number; it must be digits and one newline. */
export function readKsm(k: Kernel, file: string): number {
  const s = k.sysfs.read(`${KSM_DIR}/${file}`);
  if (!/^[0-9]+\n$/.test(s)) throw new Error(`${KSM_DIR}/${file} read ${JSON.stringify(s)}`);
  return Number(s.slice(0, -1));
}

export interface KsmStats {
  shared: number;
  sharing: number;
  unshared: number;
  volatile: number;
  fullScans: number;
}

/** pages_shared, pages_sharing, pages_unshared, pages_volatile and full_scans. */
export function stats(k: Kernel): KsmStats {
  return {
    shared: readKsm(k, 'pages_shared'),
    sharing: readKsm(k, 'pages_sharing'),
    unshared: readKsm(k, 'pages_unshared'),
    volatile: readKsm(k, 'pages_volatile'),
    fullScans: readKsm(k, 'full_scans'),
  };
}

export function st(shared: number, sharing: number, unshared: number, volatile: number, fullScans: number): KsmStats {
  return { shared, sharing, unshared, volatile, fullScans };
}

/** Let ksmd run exactly its next batch (it must be due: woken, or sleeping towards one). */
export function batch(k: Kernel): void {
  const when = k.ksmd.nextWake();
  if (when === null) throw new Error('ksmd is not due: it waits to be woken');
  k.advance(when - k.now);
}

/** The frames mapped at n consecutive pages from addr (pagemap). */
export function pfns(p: Process, addr: number, n: number): (number | null)[] {
  return Array.from({ length: n }, (_, i) => p.pfnOf(addr + i * PAGE_SIZE));
}

/** True when no frame appears twice (ksm_functional_tests' !range_maps_duplicates). */
export function allDistinct(list: (number | null)[]): boolean {
  const present = list.filter((x): x is number => x !== null);
  return new Set(present).size === present.length;
}

/** Does [addr, addr+len) read as `byte` throughout? */
export function filledWith(p: Process, addr: number, len: number, byte: number): boolean {
  return Buffer.from(p.read(addr, len)).equals(Buffer.alloc(len, byte));
}

/** An mm's place in ksm_mm_head's list, by process name, in scan order. */
export function slotOrder(k: Kernel): string[] {
  const names: string[] = [];
  k.ksmEngine.forEachSlot((slot) => names.push(slot.mm!.owner));
  return names;
}

/** mmap `pages` private anonymous pages, fill each with `byte`, madvise MADV_MERGEABLE. */
export function mergeableArea(p: Process, pages: number, byte: number): number {
  const addr = p.mmap(pages * PAGE_SIZE, { prot: 'rw' });
  p.memset(addr, byte, pages * PAGE_SIZE);
  p.madvise(addr, pages * PAGE_SIZE, 'MADV_MERGEABLE');
  return addr;
}

/** The KernelError code `fn` throws, or null when it returns; anything else is rethrown. */
export function errnoOf(fn: () => unknown): string | null {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
  return null;
}
