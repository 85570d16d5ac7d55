/**
 * KSM's records in use (src/ksm/structs.ts) against what the kernel would hold: an
 * rmap_item per page scanned, a stable node per KSM page, no record leaked through
 * merging, unmerging, exit and re-merging, and freed records reused.
 */
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/index.js';
import { RmapItemCache, StableNodeCache } from '../../src/ksm/structs.js';
import { RUN, newKernel, st, stats } from './helpers.js';

/** Two processes of `pages` pages; page i of each differs from every other page i' but equals the other process's page i. */
function pairs(k: ReturnType<typeof newKernel>, pages: number): number[] {
  const addrs: number[] = [];
  for (const name of ['a', 'b']) {
    const p = k.spawn(name);
    const addr = p.mmap(pages * PAGE_SIZE, { prot: 'rw' });
    p.memset(addr, 0, pages * PAGE_SIZE);
    const tail = new Uint8Array(4);
    for (let i = 0; i < pages; i++) {
      new DataView(tail.buffer).setUint32(0, i + 1, true);
      p.write(addr + i * PAGE_SIZE + PAGE_SIZE - 4, tail);
    }
    p.madvise(addr, pages * PAGE_SIZE, 'MADV_MERGEABLE');
    addrs.push(addr);
  }
  return addrs;
}

describe('KSM records', () => {
  it('300 pairs merged: 600 rmap_items and 300 stable nodes in use, 58.5 B of records per merged page', () => {
    const k = newKernel();
    pairs(k, 300);
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    expect(stats(k)).toEqual(st(300, 300, 0, 0, 2));
    const ksm = k.ksmEngine;
    expect([ksm.rmapItemCache.count, ksm.rmapItemCache.top]).toEqual([600, 601]);
    expect([ksm.stableNodeCache.count, ksm.stableNodeCache.top]).toEqual([300, 301]);
    // 257 slots, doubled once for the rmap_items (600 > 256), once for the nodes (300 > 256).
    expect([ksm.rmapItemCache.capacity, ksm.stableNodeCache.capacity]).toEqual([1028, 514]);
    const used = ksm.rmapItemCache.count * RmapItemCache.RECORD_BYTES + ksm.stableNodeCache.count * StableNodeCache.RECORD_BYTES;
    expect(used / 600).toBe(58.5); // 38 + 41 / 2
    expect([ksm.mmTable.size, ksm.anonVmaTable.size]).toEqual([2, 2]);
    k.checkInvariants();
  });

  it('run=2 frees every record and number; merging again reuses them without growing a table', () => {
    const k = newKernel();
    pairs(k, 300);
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    const ksm = k.ksmEngine;
    k.sysfs.write(RUN, '2');
    expect(stats(k)).toEqual(st(0, 0, 0, 0, 0));
    expect([ksm.rmapItemCache.count, ksm.stableNodeCache.count, ksm.anonVmaTable.size]).toEqual([0, 0, 0]);
    // Every record handed out is on a free list (check.ts walks them).
    k.checkInvariants();
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    expect(stats(k)).toEqual(st(300, 300, 0, 0, 2));
    expect([ksm.rmapItemCache.top, ksm.stableNodeCache.top]).toEqual([601, 301]);
    expect([ksm.rmapItemCache.capacity, ksm.stableNodeCache.capacity]).toEqual([1028, 514]);
    k.checkInvariants();
  });

  it("a process's exit frees its rmap_items; the stable nodes left with one mapping stay, those with none go", () => {
    const k = newKernel();
    pairs(k, 10);
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    const ksm = k.ksmEngine;
    expect([ksm.rmapItemCache.count, ksm.stableNodeCache.count]).toEqual([20, 10]);
    k.processes.get([...k.processes.keys()][0]!)!.exit();
    k.ksmd.runFullScans(1);
    // b's 10 pages are each the only mapping of their KSM page: 10 nodes of one rmap_item.
    expect(stats(k)).toEqual(st(10, 0, 0, 0, 3));
    expect([ksm.rmapItemCache.count, ksm.stableNodeCache.count, ksm.mmTable.size]).toEqual([10, 10, 1]);
    // The freed rmap_items are the free list, the last freed first.
    let free = 0;
    for (let r = ksm.rmapItemCache.freeList; r !== 0; r = ksm.rmapItemCache.rmapList[r]!) free++;
    expect(free).toBe(10);
    k.checkInvariants();
  });
});
