/**
 * What the swap, migration and hot-plug tests share: /proc/meminfo and /proc/vmstat
 * read as a user reads them (text, parsed), and page contents that tell every page
 * apart, so a page mapped at the wrong address or copied from the wrong frame shows.
 */
import type { Kernel, Process } from '../../src/index.js';
import { PAGE_SIZE } from '../../src/index.js';

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
export function reclaimAll(k: Kernel): number {
  let total = 0;
  for (;;) {
    const n = k.reclaim(1024);
    if (n === 0) return total;
    total += n;
  }
}
