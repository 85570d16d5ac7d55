/**
 * What the swap, migration and hot-plug tests share: /proc/meminfo and /proc/vmstat
 * read as a user reads them (text, parsed), page contents that tell every page
 * apart, so a page mapped at the wrong address or copied from the wrong frame shows,
 * and the KSM states they all start from (two processes merged, a child forked
 * after merging, a KSM page no rmap_item reaches).
 */
import { expect } from 'vitest';
import type { Kernel, Process } from '../../src/index.js';
import { KernelError, PAGE_SIZE } from '../../src/index.js';
import { RUN, st, stats } from '../ksm/helpers.js';

/** /proc/meminfo as numbers (kB), by field name. */
export function meminfo(k: Kernel): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of k.sysfs.read('/proc/meminfo').split('\n')) {
    if (line === '') continue;
    const m = /^(\w+):\s+(\d+) kB$/.exec(line);
    if (m === null) throw new Error(`unexpected /proc/meminfo line ${JSON.stringify(line)}`);
    out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** SwapTotal - SwapFree, in kB. */
export function swapUsedKb(k: Kernel): number {
  const m = meminfo(k);
  return m.SwapTotal! - m.SwapFree!;
}

/** /proc/vmstat as numbers, by counter name. */
export function vmstat(k: Kernel): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of k.sysfs.read('/proc/vmstat').split('\n')) {
    if (line === '') continue;
    const m = /^(\w+) (\d+)$/.exec(line);
    if (m === null) throw new Error(`unexpected /proc/vmstat line ${JSON.stringify(line)}`);
    out[m[1]!] = Number(m[2]);
  }
  return out;
}

/**
 * A page of contents determined by `tag`: no two tags give the same page, and no
 * tag gives a page of one repeated byte, so equal pages are equal on purpose.
 */
export function pattern(tag: number): Uint8Array {
  const page = new Uint8Array(PAGE_SIZE);
  let x = (tag * 0x9e3779b1 + 0x7f4a7c15) >>> 0;
  for (let i = 0; i < PAGE_SIZE; i += 4) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    page[i] = x & 0xff;
    page[i + 1] = (x >>> 8) & 0xff;
    page[i + 2] = (x >>> 16) & 0xff;
    page[i + 3] = tag & 0xff;
  }
  page[0] = tag & 0xff;
  page[1] = (tag >>> 8) & 0xff;
  return page;
}

/** Write pattern(tags[i]) into page i of [addr, addr + tags.length pages). */
export function writePages(p: Process, addr: number, tags: readonly number[]): void {
  tags.forEach((tag, i) => p.write(addr + i * PAGE_SIZE, pattern(tag)));
}

/** Does page i of the range read back as pattern(tags[i]), for every i? */
export function holdsPages(p: Process, addr: number, tags: readonly number[]): boolean {
  const got = Buffer.from(p.read(addr, tags.length * PAGE_SIZE));
  return tags.every((tag, i) => got.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE).equals(pattern(tag)));
}

/** mmap `tags.length` pages, write the patterns, madvise MADV_MERGEABLE. */
export function mergeablePages(p: Process, tags: readonly number[]): number {
  const addr = p.mmap(tags.length * PAGE_SIZE, { prot: 'rw' });
  writePages(p, addr, tags);
  p.madvise(addr, tags.length * PAGE_SIZE, 'MADV_MERGEABLE');
  return addr;
}

/** 0, 1, ..., n-1 (plus `base`). */
export function range(n: number, base = 0): number[] {
  return Array.from({ length: n }, (_, i) => base + i);
}

/**
 * Reclaim until a pass frees nothing (memory.reclaim written again and again):
 * one pass ages only part of the active list, so it may leave reclaimable pages.
 * Returns the pages freed in all.
 */
export function reclaimAll(k: Pick<Kernel, 'reclaim'>): number {
  let total = 0;
  for (;;) {
    const n = k.reclaim(1024);
    if (n === 0) return total;
    total += n;
  }
}

/** The KernelError `fn` throws, its code checked; anything else is rethrown, and returning fails. */
export function expectErr(fn: () => unknown, code: string): KernelError {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof KernelError)) throw e;
    expect(e.code).toBe(code);
    return e;
  }
  throw new Error(`expected KernelError ${code}, nothing was thrown`);
}

/**
 * Two processes `names` with the same pages (pattern(tags[i]), all different),
 * merged on a fresh kernel: ksmd's second full scan finds each of b's pages' twin in
 * the unstable tree, and b's page (the one scanned) is kept as the KSM page, mapped
 * by both: shared n, sharing n. `kpfns` are those frames.
 */
export function mergedTwins(k: Kernel, tags: readonly number[], names: readonly [string, string] = ['a', 'b']) {
  const a = k.spawn(names[0]);
  const b = k.spawn(names[1]);
  const addrA = mergeablePages(a, tags);
  const addrB = mergeablePages(b, tags);
  const kpfns = tags.map((_, i) => b.pfnOf(addrB + i * PAGE_SIZE)!);
  k.sysfs.write(RUN, '1');
  expect(k.ksmd.runFullScans(2)).toBe(2);
  expect(stats(k)).toEqual(st(tags.length, tags.length, 0, 0, 2));
  expect(tags.map((_, i) => a.pfnOf(addrA + i * PAGE_SIZE))).toEqual(kpfns);
  k.checkInvariants();
  return { a, b, addrA, addrB, kpfns };
}

/**
 * One process with two equal pages (tag 5), merged into one KSM page (shared 1,
 * sharing 1: two rmap_items, both holding the process's anon_vma); then fork. The
 * child's ptes map the KSM page too, but ksmd has no rmap_item for the child yet:
 * only the second pass of the rmap walk (search_new_forks) finds its area, on the
 * same anon_vma.
 */
export function forkedAfterMerge(k: Kernel) {
  const parent = k.spawn('parent');
  const addr = mergeablePages(parent, [5, 5]);
  k.sysfs.write(RUN, '1');
  expect(k.ksmd.runFullScans(2)).toBe(2);
  expect(stats(k)).toEqual(st(1, 1, 0, 0, 2));
  const kpfn = parent.pfnOf(addr)!;
  const child = parent.fork('child');
  expect([child.pfnOf(addr), child.pfnOf(addr + PAGE_SIZE)]).toEqual([kpfn, kpfn]);
  expect(k.mem.pageMapcount(kpfn)).toBe(4);
  k.checkInvariants();
  return { parent, child, addr, kpfn };
}

/**
 * On a fresh kernel, processes a and b share KSM page `kpfn` (tag 7: mergedTwins;
 * b's frame, which must be `kpfnWanted`). Reclaim unmaps it from both while a reference
 * (writeback in flight) keeps it, still KSM, in the swap cache. ksmd's next scan
 * finds swap ptes at both addresses: it frees both rmap_items (the node stays, live,
 * with an empty list: shared 0, sharing 0). Then both fault: a KSM page in the swap
 * cache is mapped as it is (page_anon_vma() of a KSM page is NULL: nothing for
 * ksm_might_need_to_copy() to compare). Now two ptes map it and no rmap_item leads
 * to them: until ksmd comes round again, no rmap walk can.
 */
export function unreachableKsmPage(k: Kernel, kpfnWanted: number) {
  const { a, b, addrA, addrB, kpfns } = mergedTwins(k, [7]);
  const kpfn = kpfns[0]!;
  expect(kpfn).toBe(kpfnWanted);
  k.mem.getPage(kpfn);
  expect(k.reclaim(1)).toBe(0);
  k.mem.putPage(kpfn);
  expect(k.ksmd.runFullScans(1)).toBe(1);
  expect(stats(k)).toEqual(st(0, 0, 0, 0, 3));
  expect(holdsPages(a, addrA, [7]) && holdsPages(b, addrB, [7])).toBe(true);
  expect([a.pfnOf(addrA), b.pfnOf(addrB)]).toEqual([kpfn, kpfn]);
  expect(vmstat(k)).toMatchObject({ pswpin: 0, ksm_swpin_copy: 0 });
  k.checkInvariants();
  return { a, b, addrA, addrB, kpfn };
}
