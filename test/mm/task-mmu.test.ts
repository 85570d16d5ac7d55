/**
 * What a process's memory looks like from outside (src/mm/task-mmu.ts): smaps,
 * smaps_rollup and pagemap figures, which the VM manager reads instead of page
 * tables.
 */
import { describe, expect, it } from 'vitest';
import { Kernel, PAGE_SIZE } from '../../src/index.js';
import { RUN } from '../ksm/helpers.js';
import { reclaimAll } from './helpers.js';

function kernel(swapMiB = 0): Kernel {
  return new Kernel({ memoryMiB: 64, blockMiB: 16, swapMiB, seed: 1 });
}

describe('smaps', () => {
  it('counts written pages as resident, and neither untouched nor zero-page ones', () => {
    const k = kernel();
    const p = k.spawn('p');
    const addr = p.mmap(8 * PAGE_SIZE);
    p.memset(addr, 0x61, 3 * PAGE_SIZE);
    p.read(addr + 3 * PAGE_SIZE, 2 * PAGE_SIZE); // the zero page
    expect(p.smaps(addr, 8 * PAGE_SIZE)).toEqual({ resident: 3, swap: 0, ksm: 0, anonHuge: 0, ksmSaved: 0, ksmZero: 0 });
    expect(p.smaps(addr + PAGE_SIZE, PAGE_SIZE)).toEqual({ resident: 1, swap: 0, ksm: 0, anonHuge: 0, ksmSaved: 0, ksmZero: 0 });
    expect(p.residentFrames(addr, 8 * PAGE_SIZE)).toEqual([p.pfnOf(addr), p.pfnOf(addr + PAGE_SIZE), p.pfnOf(addr + 2 * PAGE_SIZE)]);
  });

  it('counts swap ptes as swap', () => {
    const k = kernel(64);
    const p = k.spawn('p');
    const addr = p.mmap(4 * PAGE_SIZE);
    p.memset(addr, 0x61, 4 * PAGE_SIZE);
    expect(reclaimAll(k)).toBe(4);
    p.read(addr, 1);
    expect(p.smaps(addr, 4 * PAGE_SIZE)).toEqual({ resident: 1, swap: 3, ksm: 0, anonHuge: 0, ksmSaved: 0, ksmZero: 0 });
    expect(p.smapsRollup()).toEqual({ resident: 1, swap: 3, ksm: 0, anonHuge: 0, ksmSaved: 0, ksmZero: 0 });
  });

  it('counts KSM pages, and the share of each that sharing saves: (n - 1)/n for n mappers', () => {
    const k = kernel();
    const a = k.spawn('a');
    const b = k.spawn('b');
    for (const p of [a, b]) {
      const addr = p.mmap(3 * PAGE_SIZE);
      p.memset(addr, 0x61, 2 * PAGE_SIZE);
      p.memset(addr + 2 * PAGE_SIZE, p === a ? 0x62 : 0x63, PAGE_SIZE);
      p.madvise(addr, 3 * PAGE_SIZE, 'MADV_MERGEABLE');
    }
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    // One KSM page mapped four times (2 in a, 2 in b): each mapping saves 3/4 of a page.
    expect(a.smapsRollup()).toEqual({ resident: 3, swap: 0, ksm: 2, anonHuge: 0, ksmSaved: 1.5, ksmZero: 0 });
    expect(b.smapsRollup()).toEqual({ resident: 3, swap: 0, ksm: 2, anonHuge: 0, ksmSaved: 1.5, ksmZero: 0 });
  });

  it('adds several ranges into one record, in the order given', () => {
    const k = kernel();
    const p = k.spawn('p');
    const x = p.mmap(2 * PAGE_SIZE);
    const y = p.mmap(2 * PAGE_SIZE);
    p.memset(x, 1, 2 * PAGE_SIZE);
    p.memset(y, 2, PAGE_SIZE);
    const mss = p.smaps(x, 2 * PAGE_SIZE);
    expect(p.smaps(y, 2 * PAGE_SIZE, mss)).toBe(mss);
    expect(mss).toEqual({ resident: 3, swap: 0, ksm: 0, anonHuge: 0, ksmSaved: 0, ksmZero: 0 });
    const frames = p.residentFrames(y, 2 * PAGE_SIZE);
    expect(p.residentFrames(x, 2 * PAGE_SIZE, frames)).toBe(frames);
    expect(frames).toEqual([p.pfnOf(y), p.pfnOf(x), p.pfnOf(x + PAGE_SIZE)]);
  });
});
