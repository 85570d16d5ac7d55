/**
 * What PhysMem knows about frame contents, and every way contents change.
 *
 * KSM's checksum memo (mem.checksumMemo/checksumValid) and memcmp memo (keyed by
 * mem.contentsEpoch) are only caches of functions of the bytes, so they are right
 * exactly when every write to a frame reports itself through contentsChanged() (or
 * copyPage). Each test here writes through one path the model has — a process's
 * write/memset/pokeMem, a COW fault's copy, a swap-in, a migration, a block coming
 * back online, a zeroing allocation — and checks that the memo of the frame written
 * is dropped (or, for copyPage, carried over) and that the epoch moved. KSM's
 * checkInvariants also recomputes every memoized checksum, which catches a path
 * that is missing here.
 *
 * And neverUsed: allocFrame(true) skips clearing a frame only while it has never
 * been handed out since its block came online.
 */
import { describe, expect, it } from 'vitest';
import { Kernel, PAGE_SIZE } from '../../src/index.js';
import { pageChecksum } from '../../src/lib/jhash.js';
import { PG_SWAPCACHE } from '../../src/mm/constants.js';
import { pattern } from './helpers.js';

const P = PAGE_SIZE;

function newKernel(): Kernel {
  return new Kernel({ memoryMiB: 64, swapMiB: 16, blockMiB: 16, seed: 1 });
}

/** The checksum of the frame's bytes as they are now, computed afresh. */
function bytesChecksum(k: Kernel, pfn: number): number {
  return pageChecksum(k.mem.wordsOf(pfn), k.mem.wordOffsetOf(pfn));
}

/** Memoize pfn's checksum (calc_checksum does), and return the epoch now. */
function memoize(k: Kernel, pfn: number): number {
  k.ksmEngine.calcChecksum(pfn);
  expect(k.mem.checksumValid[pfn]).toBe(1);
  return k.mem.contentsEpoch;
}

/** After a write: pfn's memo is gone, the epoch moved, and a fresh calc_checksum sees the new bytes. */
function expectForgotten(k: Kernel, pfn: number, epochBefore: number): void {
  expect(k.mem.checksumValid[pfn]).toBe(0);
  expect(k.mem.contentsEpoch).toBeGreaterThan(epochBefore);
  expect(k.ksmEngine.calcChecksum(pfn)).toBe(bytesChecksum(k, pfn));
}

describe('every write to a frame drops its checksum memo and moves contentsEpoch', () => {
  it('write(): one byte written into a page', () => {
    const k = newKernel();
    const p = k.spawn('writer');
    const addr = p.mmap(2 * P);
    p.write(addr, pattern(1));
    const pfn = p.pfnOf(addr)!;
    const epoch = memoize(k, pfn);
    p.write(addr + 100, new Uint8Array([0xee]));
    expect(p.pfnOf(addr)).toBe(pfn); // written in place
    expectForgotten(k, pfn, epoch);
  });

  it('write() across a page boundary: both frames', () => {
    const k = newKernel();
    const p = k.spawn('writer');
    const addr = p.mmap(2 * P);
    p.memset(addr, 7, 2 * P);
    const [a, b] = [p.pfnOf(addr)!, p.pfnOf(addr + P)!];
    memoize(k, a);
    const epoch = memoize(k, b);
    p.write(addr + P - 2, new Uint8Array([1, 2, 3, 4]));
    expectForgotten(k, a, epoch);
    expectForgotten(k, b, epoch);
  });

  it('memset()', () => {
    const k = newKernel();
    const p = k.spawn('writer');
    const addr = p.mmap(P);
    p.memset(addr, 1, P);
    const pfn = p.pfnOf(addr)!;
    const epoch = memoize(k, pfn);
    p.memset(addr + 8, 2, 8);
    expectForgotten(k, pfn, epoch);
  });

  it('pokeMem() (/proc/pid/mem) into a read-only area', () => {
    const k = newKernel();
    const p = k.spawn('writer');
    const addr = p.mmap(P);
    p.memset(addr, 1, P);
    p.mprotect(addr, P, 'r');
    const pfn = p.pfnOf(addr)!;
    const epoch = memoize(k, pfn);
    p.pokeMem(addr, new Uint8Array([9]));
    expect(p.pfnOf(addr)).toBe(pfn);
    expectForgotten(k, pfn, epoch);
  });

  it('a COW fault: the copy carries the memo over, then the write drops it', () => {
    const k = newKernel();
    const parent = k.spawn('parent');
    const addr = parent.mmap(P);
    parent.write(addr, pattern(2));
    const shared = parent.pfnOf(addr)!;
    const child = parent.fork('child');
    memoize(k, shared);
    const epoch = k.mem.contentsEpoch;
    child.write(addr, new Uint8Array([0x55]));
    const copy = child.pfnOf(addr)!;
    expect(copy).not.toBe(shared);
    expectForgotten(k, copy, epoch);
    // The parent's frame was only read.
    expect(k.mem.checksumValid[shared]).toBe(1);
    expect(k.mem.checksumMemo[shared]).toBe(bytesChecksum(k, shared));
  });

  it('copyPage(): the destination gets the source\'s memo, since it gets its bytes', () => {
    const k = newKernel();
    const p = k.spawn('writer');
    const addr = p.mmap(2 * P);
    p.write(addr, pattern(3));
    p.write(addr + P, pattern(4));
    const [src, dst] = [p.pfnOf(addr)!, p.pfnOf(addr + P)!];
    memoize(k, dst);
    const epoch = memoize(k, src);
    k.mem.copyPage(dst, src);
    expect(k.mem.contentsEpoch).toBeGreaterThan(epoch);
    expect(k.mem.checksumValid[dst]).toBe(1);
    expect(k.mem.checksumMemo[dst]).toBe(bytesChecksum(k, dst));
    expect(bytesChecksum(k, dst)).toBe(bytesChecksum(k, src));
    // And a source without a memo leaves the destination without one.
    k.mem.contentsChanged(src);
    k.mem.copyPage(dst, src);
    expect(k.mem.checksumValid[dst]).toBe(0);
  });

  it('swap-in: the frame the slot is read into', () => {
    const k = newKernel();
    const p = k.spawn('swapper');
    const addr = p.mmap(P);
    p.write(addr, pattern(5));
    const before = bytesChecksum(k, p.pfnOf(addr)!);
    expect(k.reclaim(64)).toBe(1); // the only anonymous page there is
    expect(p.pfnOf(addr)).toBe(null);
    // Whatever frame the page comes back to: give it a stale memo first.
    const next = k.mem.allocFrame(false);
    k.mem.checksumMemo[next] = 0x12345678;
    k.mem.checksumValid[next] = 1;
    k.mem.count[next] = 0;
    k.mem.freeFrame(next);
    const epoch = k.mem.contentsEpoch;
    p.read(addr, 1);
    const pfn = p.pfnOf(addr)!;
    expect(pfn).toBe(next);
    expect(k.mem.flags[pfn]! & PG_SWAPCACHE).not.toBe(0);
    expectForgotten(k, pfn, epoch);
    expect(bytesChecksum(k, pfn)).toBe(before);
  });

  it('migration: the new frame gets the old one\'s memo with its bytes', () => {
    const k = newKernel();
    const p = k.spawn('mover');
    const addr = p.mmap(P);
    p.write(addr, pattern(6));
    const old = p.pfnOf(addr)!;
    const epoch = memoize(k, old);
    const moved = k.migratePage(old);
    expect(p.pfnOf(addr)).toBe(moved);
    expect(k.mem.contentsEpoch).toBeGreaterThan(epoch);
    expect(k.mem.checksumValid[moved]).toBe(1);
    expect(k.mem.checksumMemo[moved]).toBe(bytesChecksum(k, moved));
  });

  it('a block offlined and onlined again: a fresh buffer, no memo survives', () => {
    const k = newKernel();
    const block = k.mem.blocks[3]!;
    const pfn = block.startPfn + 5;
    k.mem.checksumMemo[pfn] = 0x31cbe0fa; // the zero page's checksum: true of the fresh buffer
    k.mem.checksumValid[pfn] = 1;
    const epoch = k.mem.contentsEpoch;
    k.sysfs.write('/sys/devices/system/memory/memory3/state', 'offline');
    expect(k.mem.checksumValid[pfn]).toBe(0);
    k.sysfs.write('/sys/devices/system/memory/memory3/state', 'online');
    expect(k.mem.checksumValid[pfn]).toBe(0);
    expect(k.mem.contentsEpoch).toBeGreaterThan(epoch);
  });

  it('allocFrame(true) of a used frame clears it, and drops its memo', () => {
    const k = newKernel();
    const p = k.spawn('writer');
    const addr = p.mmap(P);
    p.write(addr, pattern(7));
    const pfn = p.pfnOf(addr)!;
    const epoch = memoize(k, pfn);
    p.munmap(addr, P);
    expect(k.mem.checksumValid[pfn]).toBe(1); // freeing writes nothing
    const again = k.mem.allocFrame(true);
    expect(again).toBe(pfn); // the free stack hands the frame just freed back first
    expectForgotten(k, pfn, epoch);
    expect(bytesChecksum(k, pfn)).toBe(0x31cbe0fa);
  });

  it('checkInvariants catches a write that did not report itself', () => {
    const k = newKernel();
    const p = k.spawn('writer');
    const addr = p.mmap(P);
    p.write(addr, pattern(8));
    const pfn = p.pfnOf(addr)!;
    memoize(k, pfn);
    k.checkInvariants();
    k.mem.dataOf(pfn)[k.mem.offsetOf(pfn) + 17]! ^= 1; // behind PhysMem's back
    expect(() => k.checkInvariants()).toThrow(/memoized checksum of pfn \d+ .*a write skipped contentsChanged/);
  });
});

describe('neverUsed: allocFrame(true) clears only frames that may hold old bytes', () => {
  it('every frame of a fresh kernel is zero when handed out, without being cleared', () => {
    const k = newKernel();
    const pfn = k.mem.allocFrame(true);
    expect(k.mem.neverUsed[pfn]).toBe(0);
    expect(k.mem.dataOf(pfn).subarray(k.mem.offsetOf(pfn), k.mem.offsetOf(pfn) + P).every((b) => b === 0)).toBe(true);
  });

  it('a frame written, freed and handed out again is cleared, even if the write went behind PhysMem\'s back', () => {
    const k = newKernel();
    const pfn = k.mem.allocFrame(false);
    k.mem.dataOf(pfn).fill(0xab, k.mem.offsetOf(pfn), k.mem.offsetOf(pfn) + P);
    k.mem.count[pfn] = 0;
    k.mem.freeFrame(pfn);
    expect(k.mem.allocFrame(true)).toBe(pfn);
    expect(k.mem.dataOf(pfn).subarray(k.mem.offsetOf(pfn), k.mem.offsetOf(pfn) + P).every((b) => b === 0)).toBe(true);
  });

  it('allocFrame(false) and allocSpecificFrame() also end a frame\'s never-used state', () => {
    const k = newKernel();
    const a = k.mem.allocFrame(false);
    expect(k.mem.neverUsed[a]).toBe(0);
    const b = k.mem.nrFrames - 1;
    expect(k.mem.neverUsed[b]).toBe(1);
    expect(k.mem.allocSpecificFrame(b)).toBe(true);
    expect(k.mem.neverUsed[b]).toBe(0);
  });

  it('a block onlined again: its frames are fresh zeros once more', () => {
    const k = newKernel();
    const block = k.mem.blocks[2]!;
    k.sysfs.write('/sys/devices/system/memory/memory2/state', 'offline');
    k.sysfs.write('/sys/devices/system/memory/memory2/state', 'online');
    for (let pfn = block.startPfn; pfn < block.startPfn + block.nrPages; pfn++) expect(k.mem.neverUsed[pfn]).toBe(1);
  });
});
