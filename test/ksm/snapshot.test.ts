/**
 * Kernel snapshots (src/ksm/snapshot.ts): saveKernel() turns a running kernel into a
 * KernelImage of plain data, restoreKernel() builds a kernel that continues exactly
 * as the saved one would have.
 *
 * "Exactly" is checked two ways. Round trip: saving a restored kernel gives the same
 * image, byte for byte once packed with msgpackr, for states that exercise each part
 * of the kernel (forked COW pages, a scan stopped midway with both trees populated,
 * KSM pages in swap and in the swap cache, an offline block, shared memory, mlocked
 * pages). Continuation: a kernel driven by a seeded random mix of system calls,
 * ksmd batches, reclaim, migration, compaction and hot-plug is snapshotted at
 * several points; each restored copy is then driven by the same operations as the
 * original, and after every step both show the same KSM statistics, memory
 * contents, pagemap, meminfo and vmstat, and at the end the same image.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { pack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { Kernel, KernelError, PAGE_SIZE, type Process } from '../../src/index.js';
import { Prng } from '../../src/lib/prng.js';
import { PG_DIRTY, PG_KSM, PG_MLOCKED, PG_SHMEM, PG_SWAPCACHE } from '../../src/mm/constants.js';
import { checkKernelImage, restoreKernel, saveKernel } from '../../src/ksm/kernel.js';
import type { KernelImage } from '../../src/mm/snapshot.js';
import type { KsmImage } from '../../src/ksm/snapshot.js';
import { RUN, PAGES_TO_SCAN, SLEEP_MILLISECS, stats } from './helpers.js';

const P = PAGE_SIZE;
const MEM = '/sys/devices/system/memory';

function newKernel(): Kernel {
  return new Kernel({ memoryMiB: 32, swapMiB: 8, blockMiB: 4, seed: 7 });
}

/** A page of `tag` bytes, told apart from a page of another tag by its first byte too. */
function page(tag: number): Uint8Array {
  const b = new Uint8Array(P).fill(tag & 0xff);
  b[0] = 0xee;
  b[1] = (tag >>> 8) & 0xff;
  return b;
}

/** mmap n pages, page i holding page(tags[i]), registered MADV_MERGEABLE. */
function mergeable(p: Process, tags: readonly number[]): number {
  const addr = p.mmap(tags.length * P);
  tags.forEach((t, i) => p.write(addr + i * P, page(t)));
  p.madvise(addr, tags.length * P, 'MADV_MERGEABLE');
  return addr;
}

const packed = (img: KernelImage): Buffer => pack(img);

/** Save, check, restore, check invariants, save again: the two images must pack to the same bytes. */
function roundTrip(k: Kernel): Kernel {
  const img = saveKernel(k);
  expect(checkKernelImage(img)).toBeNull();
  const r = restoreKernel(img);
  r.checkInvariants();
  expect(Buffer.compare(packed(saveKernel(r)), packed(img))).toBe(0);
  return r;
}

function countFrames(k: Kernel, mask: number): number {
  let n = 0;
  for (let p = 0; p < k.mem.nrFrames; p++) if ((k.mem.flags[p]! & mask) === mask) n++;
  return n;
}

describe('round trip: saving a restored kernel gives the same image', () => {
  it('a fresh kernel, its PRNG moved on from the seed', () => {
    const k = newKernel();
    for (let i = 0; i < 5; i++) k.prng.nextU32();
    const r = roundTrip(k);
    expect(r.options).toEqual({ memoryMiB: 32, swapMiB: 8, blockMiB: 4, seed: 7, nodes: 1 });
    expect(r.meminfo()).toEqual(k.meminfo());
    expect(r.prng.nextU32()).toBe(k.prng.nextU32());
  });

  it('forked processes sharing copy-on-write pages, some of them broken', () => {
    const k = newKernel();
    const a = k.spawn('a');
    const base = a.mmap(64 * P);
    for (let i = 0; i < 64; i++) a.write(base + i * P, page(i));
    const b = a.fork('b');
    const c = b.fork('c');
    b.memset(base, 0x42, 8 * P);
    c.write(base + 40 * P, page(999));
    expect(a.pfnOf(base + 20 * P)).toBe(c.pfnOf(base + 20 * P));
    const r = roundTrip(k);
    const [ra, rb, rc] = [...r.processes.values()];
    expect([ra!.name, rb!.name, rc!.name]).toEqual(['a', 'b', 'c']);
    expect(rc!.pfnOf(base + 20 * P)).toBe(c.pfnOf(base + 20 * P));
    expect(Buffer.from(rb!.read(base, 64 * P)).equals(Buffer.from(b.read(base, 64 * P)))).toBe(true);
    // Still copy-on-write after the restore: a write in the copy breaks the sharing there only.
    rc!.write(base + 20 * P, page(7));
    expect(rc!.pfnOf(base + 20 * P)).not.toBe(ra!.pfnOf(base + 20 * P));
    expect(Buffer.from(ra!.read(base + 20 * P, P)).equals(Buffer.from(page(20)))).toBe(true);
    r.checkInvariants();
  });

  it('a full scan stopped midway, with rmap_items in both trees and the cursor inside an mm', () => {
    const k = newKernel();
    const a = k.spawn('a');
    const b = k.spawn('b');
    // 48 pages alike in a and b (they merge), 48 unique to each (they go to the unstable tree).
    mergeable(a, [...Array.from({ length: 48 }, (_, i) => i), ...Array.from({ length: 48 }, (_, i) => 1000 + i)]);
    mergeable(b, [...Array.from({ length: 48 }, (_, i) => i), ...Array.from({ length: 48 }, (_, i) => 2000 + i)]);
    k.sysfs.write(PAGES_TO_SCAN, '20');
    k.sysfs.write(RUN, '1');
    expect(k.ksmd.runFullScans(2)).toBe(2);
    for (let i = 0; i < 7; i++) k.advance(k.ksmd.nextWake()! - k.now); // 140 pages into the third scan
    const ksm = k.ksmEngine;
    expect(ksm.rootStableTree.node).not.toBeNull();
    expect(ksm.rootUnstableTree.node).not.toBeNull();
    expect(ksm.scanSlot).not.toBe(ksm.mmHead);
    expect(ksm.scanLink).not.toBe(ksm.scanSlot);
    const r = roundTrip(k);
    expect(stats(r)).toEqual(stats(k));
    expect(r.ksmd.nextWake()).toBe(k.ksmd.nextWake());
  });

  it('KSM pages swapped out, and KSM pages back in the swap cache', () => {
    const k = newKernel();
    const a = k.spawn('a');
    const b = k.spawn('b');
    const tags = Array.from({ length: 32 }, (_, i) => i);
    const A = mergeable(a, tags);
    const B = mergeable(b, tags);
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    expect(stats(k).sharing).toBe(32);
    while (k.reclaim(1000) > 0);
    // b takes 8 pages back from swap, a gets copies of them (ksm_swpin_copy) and 8 more;
    // ksmd then merges b's swap-cache pages with a's copies: KSM pages in the swap cache.
    b.read(B, 8 * P);
    a.read(A, 16 * P);
    k.ksmd.runFullScans(2);
    expect(countFrames(k, PG_KSM | PG_SWAPCACHE)).toBe(8);
    expect(k.swap!.usedSlots).toBe(32);
    roundTrip(k);
  });

  it('a memory block offline', () => {
    const k = newKernel();
    const a = k.spawn('a');
    const base = a.mmap(1500 * P);
    a.memset(base, 0x33, 1500 * P); // fills block 0 and part of block 1
    k.sysfs.write(`${MEM}/memory1/state`, 'offline');
    expect(k.mem.blocks[1]!.online).toBe(false);
    const r = roundTrip(k);
    expect(r.sysfs.read(`${MEM}/memory1/state`)).toBe('offline\n');
    expect(r.mem.blocks[1]!.online).toBe(false);
    r.sysfs.write(`${MEM}/memory1/state`, 'online');
    r.checkInvariants();
  });

  it('MAP_SHARED memory shared with a forked child', () => {
    const k = newKernel();
    const a = k.spawn('a');
    const base = a.mmap(16 * P, { shared: true });
    a.memset(base, 0x5a, 16 * P);
    const b = a.fork('b');
    b.write(base + 3 * P, page(3));
    expect(countFrames(k, PG_SHMEM)).toBe(16);
    const r = roundTrip(k);
    const [ra, rb] = [...r.processes.values()];
    rb!.write(base + 5 * P, page(5));
    expect(Buffer.from(ra!.read(base + 5 * P, P)).equals(Buffer.from(page(5)))).toBe(true);
    expect(ra!.pfnOf(base + 5 * P)).toBe(rb!.pfnOf(base + 5 * P));
  });

  it('mlocked pages, merged and not', () => {
    const k = newKernel();
    const a = k.spawn('a');
    const b = k.spawn('b');
    const A = mergeable(a, [1, 2, 3, 4, 5, 6, 7, 8]);
    mergeable(b, [1, 2, 3, 4, 9, 10, 11, 12]);
    a.mlock(A, 8 * P);
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    expect(stats(k).sharing).toBe(4);
    expect(countFrames(k, PG_MLOCKED)).toBe(8);
    const r = roundTrip(k);
    expect(r.meminfo().Mlocked).toBe(k.meminfo().Mlocked);
  });

  it('a dirty swap-cache page: its stale slot is not kept, and is rewritten before it is needed', () => {
    const k = newKernel();
    const a = k.spawn('a');
    const base = a.mmap(4 * P);
    for (let i = 0; i < 4; i++) a.write(base + i * P, page(i));
    const c = a.fork('c');
    while (k.reclaim(1000) > 0);
    a.read(base, 4 * P); // back in the swap cache; c's ptes still name the slots
    const pfn = a.pfnOf(base)!;
    expect(k.mem.flags[pfn]! & PG_SWAPCACHE).not.toBe(0);
    // A dirty swap-cache page: its slot's bytes are stale (as after add_to_swap()).
    k.mem.flags[pfn]! |= PG_DIRTY;
    const r = roundTrip(k);
    const rc = [...r.processes.values()].find((p) => p.name === 'c')!;
    while (r.reclaim(1000) > 0);
    expect(Buffer.from(rc.read(base, 4 * P)).equals(Buffer.from(c.read(base, 4 * P)))).toBe(true);
  });

  it('survives msgpackr: an image packed and unpacked restores the same kernel', () => {
    const k = newKernel();
    const a = k.spawn('a');
    mergeable(a, [1, 1, 2, 2, 3]);
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    const bytes = packed(saveKernel(k));
    const img = unpack(bytes) as KernelImage;
    expect(checkKernelImage(img)).toBeNull();
    const r = restoreKernel(img);
    r.checkInvariants();
    expect(Buffer.compare(packed(saveKernel(r)), bytes)).toBe(0);
  });

  it('restoring leaves the image alone: the kernel shares no memory with it', () => {
    const k = newKernel();
    const a = k.spawn('a');
    const base = mergeable(a, [1, 2, 3, 4]);
    const img = saveKernel(k);
    const before = packed(img);
    const r = restoreKernel(img);
    const ra = [...r.processes.values()][0]!;
    ra.memset(base, 0x77, 4 * P);
    ra.munmap(base, 2 * P);
    r.reclaim(100);
    expect(Buffer.compare(packed(img), before)).toBe(0);
    expect(Buffer.compare(packed(saveKernel(restoreKernel(img))), before)).toBe(0);
    // Saving reads the kernel only.
    expect(Buffer.compare(packed(saveKernel(k)), before)).toBe(0);
  });
});

// ---- continuation under a random mix of operations -------------------------------------------

type OpKind =
  | 'write'
  | 'memset'
  | 'fork'
  | 'exit'
  | 'spawn'
  | 'mmap'
  | 'madvise'
  | 'mprotect'
  | 'munmap'
  | 'mlock'
  | 'advance'
  | 'reclaim'
  | 'migrate'
  | 'compact'
  | 'hotplug'
  | 'knob'
  | 'pin';

/** Weighted: writes and ksmd dominate, as on a host. */
const OP_KINDS: OpKind[] = [
  ...Array<OpKind>(6).fill('write'),
  ...Array<OpKind>(3).fill('memset'),
  'fork',
  'exit',
  'spawn',
  'mmap',
  ...Array<OpKind>(3).fill('madvise'),
  'mprotect',
  'munmap',
  'mlock',
  ...Array<OpKind>(6).fill('advance'),
  ...Array<OpKind>(2).fill('reclaim'),
  ...Array<OpKind>(2).fill('migrate'),
  'compact',
  'hotplug',
  'knob',
  'pin',
];

interface Op {
  kind: OpKind;
  a: number;
  b: number;
  c: number;
  d: number;
}

function genOp(rng: Prng): Op {
  return { kind: rng.pick(OP_KINDS), a: rng.nextU32(), b: rng.nextU32(), c: rng.nextU32(), d: rng.nextU32() };
}

/** A range of whole pages inside one of p's areas, from the op's numbers. */
function pickRange(p: Process, op: Op, maxPages: number): { addr: number; len: number } | null {
  const maps = p.maps();
  if (maps.length === 0) return null;
  const m = maps[op.b % maps.length]!;
  const pages = (m.end - m.start) / P;
  const first = op.c % pages;
  const n = 1 + (op.d % Math.min(maxPages, pages - first));
  return { addr: m.start + first * P, len: n * P };
}

/** Apply one operation, interpreted against k's own state; returns what happened. */
function applyOp(k: Kernel, op: Op): string {
  const procs = [...k.processes.values()];
  const p = procs.length > 0 ? procs[op.a % procs.length]! : null;
  try {
    switch (op.kind) {
      case 'write': {
        const r = p && pickRange(p, op, 1);
        if (r === null) return 'none';
        const bytes = new Uint8Array(1 + (op.d % 300)).fill(op.d >>> 24);
        p!.write(r.addr + (op.d % (P - bytes.length)), bytes);
        return 'ok';
      }
      case 'memset': {
        const r = p && pickRange(p, op, 6);
        if (r === null) return 'none';
        // A few fill values only, so that pages come out equal and merge.
        p!.memset(r.addr, [0, 0x11, 0x22, 0x33][op.a % 4]!, r.len);
        return 'ok';
      }
      case 'fork':
        if (p === null || procs.length >= 6) return 'none';
        return `pid ${p.fork(`${p.name}.${op.b % 10}`).pid}`;
      case 'exit':
        if (p === null || procs.length <= 2) return 'none';
        p.exit();
        return 'ok';
      case 'spawn': {
        if (procs.length >= 6) return 'none';
        const q = k.spawn(`s${op.b % 100}`);
        const addr = q.mmap(24 * P);
        q.memset(addr, [0, 0x11, 0x22][op.c % 3]!, 24 * P);
        q.madvise(addr, 24 * P, 'MADV_MERGEABLE');
        return `pid ${q.pid}`;
      }
      case 'mmap': {
        if (p === null) return 'none';
        const n = 1 + (op.b % 24);
        const addr = p.mmap(n * P, { shared: op.c % 5 === 0, prot: op.c % 7 === 0 ? 'r' : 'rw' });
        if (op.c % 7 !== 0) p.memset(addr, op.d & 0x33, n * P);
        return `at ${addr}`;
      }
      case 'madvise': {
        const r = p && pickRange(p, op, 40);
        if (r === null) return 'none';
        p!.madvise(r.addr, r.len, (['MADV_MERGEABLE', 'MADV_MERGEABLE', 'MADV_UNMERGEABLE', 'MADV_DONTNEED'] as const)[op.a % 4]!);
        return 'ok';
      }
      case 'mprotect': {
        const r = p && pickRange(p, op, 8);
        if (r === null) return 'none';
        p!.mprotect(r.addr, r.len, (['none', 'r', 'rw', 'rw'] as const)[op.a % 4]!);
        return 'ok';
      }
      case 'munmap': {
        const r = p && pickRange(p, op, 4);
        if (r === null) return 'none';
        p!.munmap(r.addr, r.len);
        return 'ok';
      }
      case 'mlock': {
        const r = p && pickRange(p, op, 4);
        if (r === null) return 'none';
        if (op.a % 2 === 0) p!.mlock(r.addr, r.len);
        else p!.munlock(r.addr, r.len);
        return 'ok';
      }
      case 'advance':
        k.advance(1 + (op.b % 40));
        return 'ok';
      case 'reclaim':
        return `freed ${k.reclaim(1 + (op.b % 64))}`;
      case 'migrate': {
        const r = p && pickRange(p, op, 1);
        const pfn = r === null ? null : p!.pfnOf(r.addr);
        if (pfn === null || pfn === 0) return 'none';
        return `to ${k.migratePage(pfn)}`;
      }
      case 'compact':
        return `moved ${k.compactMemory()}`;
      case 'hotplug': {
        const block = 1 + (op.b % (k.mem.blocks.length - 1));
        const online = k.mem.blocks[block]!.online;
        k.sysfs.write(`${MEM}/memory${block}/state`, online ? 'offline' : 'online');
        return 'ok';
      }
      case 'knob':
        k.sysfs.write(op.a % 2 === 0 ? PAGES_TO_SCAN : SLEEP_MILLISECS, String(op.a % 2 === 0 ? 1 + (op.b % 64) : op.b % 30));
        return 'ok';
      case 'pin': {
        const r = p && pickRange(p, op, 1);
        if (r === null) return 'none';
        const pin = p!.pin(r.addr, { write: op.c % 2 === 0 });
        pin.release();
        return `pfn ${pin.pfn}`;
      }
      default:
        throw new Error(`op ${op.kind as string}`);
    }
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
}

/** Everything a user can see: statistics, meminfo, vmstat, and per process its areas, pagemap and bytes. */
function observe(k: Kernel): unknown {
  const ksmFiles = ['pages_shared', 'pages_sharing', 'pages_unshared', 'pages_volatile', 'full_scans', 'run', 'pages_to_scan', 'sleep_millisecs', 'max_kernel_pages'];
  return {
    now: k.now,
    ksm: ksmFiles.map((f) => k.sysfs.read(`/sys/kernel/mm/ksm/${f}`)),
    meminfo: k.meminfo(),
    vmstat: { ...k.vmstat },
    processes: [...k.processes.values()].map((p) => {
      const maps = p.maps();
      const pfns: (number | null)[] = [];
      for (const m of maps) for (let a = m.start; a < m.end; a += P) pfns.push(p.pfnOf(a));
      // pagemap first: reading faults pages in.
      const digest = createHash('sha256');
      for (const m of maps) digest.update(p.peekMem(m.start, m.end - m.start));
      return { pid: p.pid, name: p.name, maps, pfns, bytes: digest.digest('hex') };
    }),
  };
}

describe('continuation: a restored kernel goes on exactly like the original', () => {
  it('under 160 random operations, snapshotted at four points (mid-scan and with pages in swap among them)', () => {
    const k = newKernel();
    const setup = k.spawn('guest');
    mergeable(setup, Array.from({ length: 64 }, (_, i) => i % 20));
    setup.fork('guest.1');
    k.sysfs.write(PAGES_TO_SCAN, '16');
    k.sysfs.write(SLEEP_MILLISECS, '5');
    k.sysfs.write(RUN, '1');
    const rng = new Prng(2024);
    const twins: { at: number; k: Kernel }[] = [];
    let midScan = false;
    let inSwap = false;
    const STEPS = 160;
    for (let step = 0; step < STEPS; step++) {
      const op = genOp(rng);
      const outcome = applyOp(k, op);
      for (const t of twins) expect(`${step} ${op.kind} ${applyOp(t.k, op)}`).toBe(`${step} ${op.kind} ${outcome}`);
      // Snapshot at fixed steps, and at the first step that leaves the scan midway or
      // pages in swap: taken after the operation, before anything reads memory.
      const ksm = k.ksmEngine;
      const isMidScan = op.kind === 'advance' && ksm.scanSlot !== ksm.mmHead && ksm.scanLink !== ksm.scanSlot;
      const isInSwap = op.kind === 'reclaim' && k.swap!.usedSlots > 0;
      if (step === 40 || step === 100 || (isMidScan && !midScan) || (isInSwap && !inSwap && step > 20)) {
        midScan ||= isMidScan;
        inSwap ||= isInSwap;
        const r = restoreKernel(saveKernel(k));
        r.checkInvariants();
        twins.push({ at: step, k: r });
      }
      const seen = observe(k);
      for (const t of twins) expect(observe(t.k)).toEqual(seen);
      if (step % 40 === 39) {
        k.checkInvariants();
        for (const t of twins) t.k.checkInvariants();
      }
    }
    expect(midScan).toBe(true);
    expect(inSwap).toBe(true);
    // The seeded mix left the scan midway first at step 3 and pages in swap first at 26.
    expect(twins.map((t) => t.at)).toEqual([3, 26, 40, 100]);
    // The run did what it should: merging happened, and so did swapping.
    expect(k.vmstat.pswpout).toBe(220);
    expect(k.sysfs.read('/sys/kernel/mm/ksm/full_scans')).toBe('9\n');
    const final = packed(saveKernel(k));
    for (const t of twins) expect(Buffer.compare(packed(saveKernel(t.k)), final)).toBe(0);
  });
});

// ---- size -----------------------------------------------------------------------------------

describe('contents are stored once each', () => {
  it('1000 identical pages are one entry of the content table', () => {
    const k = newKernel();
    const a = k.spawn('a');
    const base = a.mmap(1000 * P);
    a.memset(base, 0x61, 1000 * P);
    const img = saveKernel(k);
    expect(img.mem.flags.byteLength / 4).toBe(1001); // frames in use: the zero page and the 1000
    expect(img.contents.pages).toBe(2); // zeros, and the page of 0x61
    expect(img.contents.chunks.reduce((n, c) => n + c.byteLength, 0)).toBe(2 * P);
  });

  it('the image grows with distinct contents, not with frames', () => {
    const sized = (pages: number, distinct: boolean): number => {
      const k = newKernel();
      const a = k.spawn('a');
      const base = a.mmap(pages * P);
      if (distinct) for (let i = 0; i < pages; i++) a.write(base + i * P, page(i));
      else a.memset(base, 0x61, pages * P);
      return packed(saveKernel(k)).length;
    };
    const same1000 = sized(1000, false);
    const same2000 = sized(2000, false);
    const distinct1000 = sized(1000, true);
    // 1000 more frames of the same page cost metadata only: well under 64 bytes a frame.
    expect(same2000 - same1000).toBeLessThan(1000 * 64);
    expect(distinct1000 - same1000).toBeGreaterThan(999 * P);
    expect(distinct1000 - same1000).toBeLessThan(1000 * P + 4096);
  });

  it('free frames cost nothing: a kernel four times larger, equally used, gives an image of about the same size', () => {
    const img = (memoryMiB: number): number => {
      const k = new Kernel({ memoryMiB, swapMiB: 0, blockMiB: 4, seed: 1 });
      const a = k.spawn('a');
      mergeable(a, Array.from({ length: 100 }, (_, i) => i));
      return packed(saveKernel(k)).length;
    };
    expect(img(128) - img(32)).toBeLessThan(4096);
  });
});

// ---- what cannot be saved, and bad images ------------------------------------------------------

describe('pins', () => {
  it('a held get_user_pages pin makes saving fail with EBUSY naming the frame; released, it succeeds', () => {
    const k = newKernel();
    const a = k.spawn('a');
    const base = a.mmap(4 * P);
    a.memset(base, 1, 4 * P);
    const pin = a.pin(base + 2 * P, { write: true });
    expect(() => saveKernel(k)).toThrow(new KernelError('EBUSY', `cannot save the kernel while pages are pinned (get_user_pages): pfn ${pin.pfn}; release the pins first`));
    pin.release();
    roundTrip(k);
  });
});

describe('bad images are refused, naming what is wrong', () => {
  /** A small image with every part populated, freshly made each time (tests mutate it). */
  function image(): KernelImage {
    const k = newKernel();
    const a = k.spawn('a');
    const b = k.spawn('b');
    mergeable(a, [1, 2, 3, 4, 5, 6]);
    mergeable(b, [1, 2, 3, 7, 8, 9]);
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    return saveKernel(k);
  }

  /** checkKernelImage() says `message`, and restoreKernel() refuses the image with it. */
  function refused(img: unknown, message: string): void {
    expect(checkKernelImage(img)).toBe(message);
    expect(() => restoreKernel(img as KernelImage)).toThrow(new KernelError('EINVAL', `bad kernel image: ${message}`));
  }

  it('a truncated content table', () => {
    const img = image();
    const c = img.contents.chunks[0]!;
    img.contents.chunks[0] = c.subarray(0, c.byteLength - P);
    // image() holds 10 distinct pages: the zero page, 1..9.
    refused(img, 'contents.chunks[0]: the content table is truncated or padded: expected 40960 bytes (10 pages), found 36864');
  });

  it('a content table with a chunk missing', () => {
    const img = image();
    img.contents.chunks = [];
    refused(img, 'contents.chunks: expected an array of 1, found an array of 0');
  });

  it('a frame index past the end of memory', () => {
    const img = image();
    const runs = new Int32Array(img.mem.lru[1]!.slice().buffer);
    runs[0] = 8192 + 5; // 32 MiB is 8192 frames
    img.mem.lru[1] = new Uint8Array(runs.buffer);
    // The run was 9 frames counting down: it now reads 8197 down to 8189.
    refused(img, 'mem.lru[1][0]: frames 8197..8189 are out of range: expected pfns in [0, 8192)');
  });

  it("a stable node's frame past the end of memory", () => {
    const img = image();
    const ksm = img.parts.ksm as KsmImage;
    const kpfn = new Uint32Array(ksm.nodeKpfn.slice().buffer);
    kpfn[0] = 1 << 20;
    ksm.nodeKpfn = new Uint8Array(kpfn.buffer);
    refused(img, 'parts.ksm.nodeKpfn[0]: pfn 1048576 is beyond memory (8192 frames)');
  });

  it('a content index past the content table', () => {
    const img = image();
    const content = new Uint32Array(img.mem.content.slice().buffer);
    content[3] = img.contents.pages;
    img.mem.content = new Uint8Array(content.buffer);
    refused(img, 'mem.content[3]: content index 10 of pfn 6 is past the content table (10 pages)');
  });

  it('a field of the wrong type', () => {
    const img = image();
    (img.parts.ksm as KsmImage).knobs.pagesToScan = '100';
    refused(img, 'parts.ksm.knobs.pagesToScan: expected an integer in [0, 4294967295], found the string "100"');
  });

  it('binary data of the wrong type', () => {
    const img = image();
    (img.mem as unknown as Record<string, unknown>).flags = Array.from(new Uint32Array(img.mem.flags.slice().buffer));
    refused(img, 'mem.flags: expected bytes (a Uint8Array), found an array of 10');
  });

  it('a per-frame array of the wrong length', () => {
    const img = image();
    img.mem.count = img.mem.count.subarray(0, img.mem.count.byteLength - 4);
    refused(img, 'mem.count: expected 10 i32 values (40 bytes), found 9 (36 bytes)');
  });

  it('a missing field', () => {
    const img = image();
    delete (img.parts.ksm as Record<string, unknown>).ksmd;
    refused(img, 'parts.ksm.ksmd: expected an object, found nothing (the field is missing)');
  });

  it('a pte naming a swap slot that is not in use', () => {
    const img = image();
    const mm = img.mms[0]!;
    const ptes = new Float64Array(mm.ptes.slice().buffer);
    const i = ptes.findIndex((p) => p !== 0);
    ptes[i] = 5 * 64 + 2; // swap entry, slot 5
    mm.ptes = new Uint8Array(ptes.buffer);
    refused(img, `mms[0].ptes[${i}]: swap pte at 0x7effffffa000 names slot 5, which is not in use`);
  });

  it('not an image at all', () => {
    refused(null, 'image: expected an object, found null');
    refused({ imageVersion: 99 }, 'imageVersion: expected 4, found number 99');
  });

  it('an image of format 1 (the whole kernel saved from src/ksm, before per-layer parts): refused by its version', () => {
    const old = unpack(gunzipSync(readFileSync(new URL('../fixtures/snapshot-v1/kernel-v1.msgpack.gz', import.meta.url)))) as Record<string, unknown>;
    expect([old.imageVersion, Object.keys(old).includes('ksm'), Object.keys(old).includes('parts')]).toEqual([1, true, false]);
    refused(old, 'imageVersion: expected 4, found number 1');
  });

  it('an image of format 2 (per-layer parts, but no kernel version, NUMA nodes or 6.18 state): refused by its version', () => {
    const old = unpack(gunzipSync(readFileSync(new URL('../fixtures/snapshot-v2/kernel-v2.msgpack.gz', import.meta.url)))) as KernelImage;
    expect([old.imageVersion, Object.keys(old.parts), 'version' in (old.parts.ksm as object)]).toEqual([2, ['ksm'], false]);
    refused(old, 'imageVersion: expected 4, found number 2');
  });

  it('an image of format 3 (a 6.18 kernel, frames indexing a content table, before the content store): refused by its version', () => {
    const old = unpack(gunzipSync(readFileSync(new URL('../fixtures/snapshot-v3/kernel-v3.msgpack.gz', import.meta.url)))) as KernelImage;
    expect([old.imageVersion, Object.keys(old.parts), (old.parts.ksm as { version: string }).version]).toEqual([3, ['ksm'], '6.18']);
    refused(old, 'imageVersion: expected 4, found number 3');
  });

  it('a part no layer of this kernel restores', () => {
    const img = image();
    img.parts.thp = {};
    refused(img, 'parts.thp: no layer of this kernel restores it (it has ksm)');
  });

  it("KSM's part missing", () => {
    const img = image();
    delete img.parts.ksm;
    refused(img, 'parts.ksm: expected an object, found nothing (the field is missing)');
  });

  it('an mm_struct that no process has and no mm_slot holds', () => {
    const img = image();
    img.mms.push({ ...img.mms[0]!, vmas: [], pmds: new Uint8Array(0), ptes: new Uint8Array(0) });
    refused(img, 'mms[2]: belongs to no process, and no image part (an mm_slot) holds it');
  });

  it('a KSM page whose stable node is not in the image', () => {
    const img = image();
    const ksm = img.parts.ksm as KsmImage;
    const nodes = ksm.nodeKpfn.byteLength / 4;
    const mapping = new Uint32Array(img.mem.mapping.slice().buffer);
    const u = mapping.findIndex((code) => (code & 3) === 2);
    mapping[u] = nodes * 4 + 2;
    img.mem.mapping = new Uint8Array(mapping.buffer);
    // image() merges pages 1, 2 and 3 of both processes: three KSM pages, three stable
    // nodes; the first KSM page is the fifth frame in use, pfn 7.
    expect([nodes, u]).toEqual([3, 4]);
    refused(img, 'mem.mapping[4]: pfn 7 maps the objects of the image parts (stable nodes)[3], past the 3 there are');
  });

  it('mm_slots listing more rmap_items than the image holds', () => {
    const img = image();
    const ksm = img.parts.ksm as KsmImage;
    ksm.slots[1]!.items++;
    // 6 pages in each of two processes: 12 rmap_items, now 13.
    refused(img, 'parts.ksm.itemAddress: expected 13 f64 values (104 bytes), found 12 (96 bytes)');
  });

  it('a per-frame array one frame short of the frames the free lists leave in use', () => {
    const img = image();
    img.mem.flags = img.mem.flags.subarray(0, img.mem.flags.byteLength - 4);
    refused(img, 'mem.flags: expected 10 u32 values (40 bytes), found 9 (36 bytes)');
  });

  it('a swap slot past the device the options describe', () => {
    const img = image();
    // 8 MiB of swap: slots 1..2048.
    img.swap!.slots = new Uint8Array(new Uint32Array([2049]).buffer);
    img.swap!.refs = new Uint8Array(new Int32Array([1]).buffer);
    img.swap!.cache = new Uint8Array(new Int32Array([-1]).buffer);
    img.swap!.content = new Uint8Array(new Int32Array([0]).buffer);
    refused(img, 'swap.slots[0]: slot 2049 is not on the device (1..2048)');
  });
});
