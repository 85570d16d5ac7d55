/**
 * Transparent huge pages in the mm (src/mm/huge-memory.ts), on a HostKernel built
 * with THP as the 6.18 profile builds it: the mode file, MADV_HUGEPAGE, THP faults,
 * 2 MiB-aligned mmaps, the two kinds of split, AnonHugePages, invariants, images.
 */
import { describe, expect, it } from 'vitest';
import { InvariantError, KernelError, PAGE_SIZE } from '../../src/index.js';
import { PG_HEAD, PG_TAIL } from '../../src/mm/constants.js';
import { HPAGE_PMD_SIZE, splitHugePage } from '../../src/mm/huge-memory.js';
import { HostKernel, type KernelOptions } from '../../src/mm/kernel.js';
import { decodeKernelImage, restoreKernelImage, saveKernelImage } from '../../src/mm/snapshot.js';
import { pattern } from './helpers.js';

const P = PAGE_SIZE;
const H = HPAGE_PMD_SIZE;
const THP = '/sys/kernel/mm/transparent_hugepage/enabled';

function thpKernel(opts: KernelOptions = {}): HostKernel {
  return new HostKernel({ memoryMiB: 32, blockMiB: 16, thp: { remapZeroSubpages: true }, ...opts });
}

function vmstat(k: HostKernel): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of k.sysfs.read('/proc/vmstat').trim().split('\n')) {
    const [key, v] = line.split(' ');
    out[key!] = Number(v);
  }
  return out;
}

function anonHugeKb(k: HostKernel): number {
  const m = /AnonHugePages:\s+(\d+) kB/.exec(k.sysfs.read('/proc/meminfo'));
  return m === null ? -1 : Number(m[1]);
}

/** A process with a 4 MiB MADV_HUGEPAGE area (2 MiB-aligned, as 6.7+ places it). */
function hugeArea(k: HostKernel): { p: ReturnType<HostKernel['spawn']>; base: number } {
  const p = k.spawn('qemu');
  const base = p.mmap(2 * H);
  p.madvise(base, 2 * H, 'MADV_HUGEPAGE');
  return { p, base };
}

describe('the THP mode file', () => {
  it("reads 'always [madvise] never' by default and takes each mode", () => {
    const k = thpKernel();
    expect(k.sysfs.read(THP)).toBe('always [madvise] never\n');
    k.sysfs.write(THP, 'always\n');
    expect(k.sysfs.read(THP)).toBe('[always] madvise never\n');
    k.sysfs.write(THP, 'never');
    expect(k.sysfs.read(THP)).toBe('always madvise [never]\n');
    expect(k.sysfs.read('/sys/kernel/mm/transparent_hugepage/hpage_pmd_size')).toBe('2097152\n');
  });

  it('refuses anything else with EINVAL, leaving the mode', () => {
    const k = thpKernel();
    for (const bad of ['', 'Always', 'madvise ', '[madvise]', '1']) {
      expect(() => k.sysfs.write(THP, bad)).toThrow(KernelError);
    }
    expect(k.sysfs.read(THP)).toBe('always [madvise] never\n');
  });

  it('a kernel without THP (2.6.33) has no such file, no AnonHugePages, and refuses MADV_HUGEPAGE', () => {
    const k = new HostKernel({ memoryMiB: 32, blockMiB: 16 });
    expect(() => k.sysfs.read(THP)).toThrow(/no such file/);
    expect(k.sysfs.read('/proc/meminfo')).not.toContain('AnonHugePages');
    const p = k.spawn('a');
    const base = p.mmap(2 * H);
    expect(() => p.madvise(base, H, 'MADV_HUGEPAGE')).toThrow(/needs transparent huge pages/);
    p.memset(base, 1, 2 * H);
    for (let i = 0; i < 1024; i++) expect(k.mem.flags[p.pfnOf(base + i * P)!]! & (PG_HEAD | PG_TAIL)).toBe(0);
    k.checkInvariants();
  });
});

describe('THP faults', () => {
  it('a 2 MiB-multiple anonymous mmap starts 2 MiB-aligned; others do not need to', () => {
    const k = thpKernel();
    const p = k.spawn('a');
    const odd = p.mmap(3 * P);
    expect(odd % H).not.toBe(0);
    const big = p.mmap(2 * H);
    expect(big % H).toBe(0);
  });

  it('the first write in a MADV_HUGEPAGE area maps a whole THP of zeroed subpages', () => {
    const k = thpKernel();
    const { p, base } = hugeArea(k);
    p.write(base + 5 * P + 7, Uint8Array.of(42));
    const head = p.pfnOf(base)!;
    expect(head % 512).toBe(0);
    for (let i = 0; i < 512; i++) expect(p.pfnOf(base + i * P)).toBe(head + i);
    expect(k.mem.flags[head]! & PG_HEAD).toBe(PG_HEAD);
    expect(k.mem.flags[head + 511]! & PG_TAIL).toBe(PG_TAIL);
    expect(p.pfnOf(base + H)).toBeNull(); // the second 2 MiB is untouched
    expect(p.read(base + 5 * P + 7, 1)[0]).toBe(42);
    expect(p.read(base + 100 * P, 4)).toEqual(new Uint8Array(4));
    expect(anonHugeKb(k)).toBe(2048);
    expect(p.smaps(base, 2 * H).anonHuge).toBe(512);
    expect(p.smaps(base, 2 * H).resident).toBe(512);
    expect(vmstat(k).thp_fault_alloc).toBe(1);
    k.checkInvariants();
  });

  it("'madvise' mode gives no THP where MADV_HUGEPAGE was not asked; 'always' does; MADV_NOHUGEPAGE never", () => {
    const k = thpKernel();
    const p = k.spawn('a');
    const a = p.mmap(H);
    p.memset(a, 1, P);
    expect(p.smaps(a, H).anonHuge).toBe(0);
    k.sysfs.write(THP, 'always');
    const b = p.mmap(H);
    p.memset(b, 1, P);
    expect(p.smaps(b, H).anonHuge).toBe(512);
    const c = p.mmap(H);
    p.madvise(c, H, 'MADV_NOHUGEPAGE');
    p.memset(c, 1, P);
    expect(p.smaps(c, H).anonHuge).toBe(0);
    expect(p.maps().map((m) => m.start)).toContain(c);
    k.checkInvariants();
  });

  it('a range only partly inside the area falls back to small pages', () => {
    const k = thpKernel();
    k.sysfs.write(THP, 'always');
    const p = k.spawn('a');
    const base = p.mmap(H + 4 * P); // not a multiple of 2 MiB: no alignment promised
    p.memset(base, 3, H + 4 * P);
    const s = p.smaps(base, H + 4 * P);
    expect(s.resident).toBe(516);
    // Placed top down, unaligned: the aligned 2 MiB at its top is a THP, the 4
    // pages below it are not.
    expect(base % H).toBe(H - 4 * P);
    expect(s.anonHuge).toBe(512);
    expect(k.mem.flags[p.pfnOf(base)!]! & (PG_HEAD | PG_TAIL)).toBe(0);
    k.checkInvariants();
  });

  it('falls back (thp_fault_fallback) when no aligned 2 MiB of free frames is left', () => {
    const k = new HostKernel({ memoryMiB: 4, blockMiB: 4, thp: { remapZeroSubpages: true } });
    const { p, base } = hugeArea(k);
    p.memset(base, 9, P); // frames 0 (zero page) and up: the first aligned run is 512..1023
    p.memset(base + H, 9, P);
    expect(vmstat(k).thp_fault_alloc).toBe(1);
    expect(vmstat(k).thp_fault_fallback).toBe(1);
    expect(p.smaps(base, 2 * H).anonHuge).toBe(512);
    expect(p.smaps(base, 2 * H).resident).toBe(513);
    k.checkInvariants();
  });
});

describe('splitting a THP', () => {
  function filled(k: HostKernel): { p: ReturnType<HostKernel['spawn']>; base: number; head: number } {
    const { p, base } = hugeArea(k);
    for (let i = 0; i < 16; i++) p.write(base + i * P, pattern(i + 1));
    return { p, base, head: p.pfnOf(base)! };
  }

  it('split_huge_page (6.12+) maps every zero-filled subpage to the zero page and frees it', () => {
    const k = thpKernel();
    const { p, base, head } = filled(k);
    const free = k.mem.nrFreeOnline;
    expect(splitHugePage(k, head, -1)).toBe(true);
    for (let i = 0; i < 16; i++) expect(p.pfnOf(base + i * P)).toBe(head + i);
    for (let i = 16; i < 512; i++) expect(p.pfnOf(base + i * P)).toBe(k.mem.zeroPfn);
    expect(k.mem.nrFreeOnline).toBe(free + 496);
    expect(p.smaps(base, H)).toMatchObject({ resident: 16, anonHuge: 0 });
    expect(anonHugeKb(k)).toBe(0);
    expect(vmstat(k).thp_split_page).toBe(1);
    for (let i = 0; i < 16; i++) expect(Buffer.from(p.read(base + i * P, P)).equals(Buffer.from(pattern(i + 1)))).toBe(true);
    expect(p.read(base + 300 * P, 8)).toEqual(new Uint8Array(8));
    // A write to a remapped subpage gets a fresh page, as after any zero-page read fault.
    p.write(base + 300 * P, Uint8Array.of(5));
    expect(p.read(base + 300 * P, 1)[0]).toBe(5);
    k.checkInvariants();
  });

  it('without the 6.12 remap (remapZeroSubpages false) every subpage stays', () => {
    const k = thpKernel({ thp: { remapZeroSubpages: false } });
    const { p, base, head } = filled(k);
    expect(splitHugePage(k, head + 3, -1)).toBe(true);
    for (let i = 0; i < 512; i++) expect(p.pfnOf(base + i * P)).toBe(head + i);
    expect(p.smaps(base, H)).toMatchObject({ resident: 512, anonHuge: 0 });
    k.checkInvariants();
  });

  it('fails while a subpage is pinned (can_split_folio), and keeps the THP whole', () => {
    const k = thpKernel();
    const { p, base, head } = filled(k);
    const pin = p.pin(base + 200 * P);
    expect(splitHugePage(k, head, -1)).toBe(false);
    expect(vmstat(k).thp_split_page_failed).toBe(1);
    expect(p.smaps(base, H).anonHuge).toBe(512);
    k.checkInvariants();
    pin.release();
    // The caller's own reference on the page it splits is allowed for.
    k.mem.getPage(head + 3);
    expect(splitHugePage(k, head + 3, head + 3)).toBe(true);
    k.mem.putPage(head + 3);
    k.checkInvariants();
  });

  it('a zero-filled subpage in an mlocked area is not remapped', () => {
    const k = thpKernel();
    const { p, base, head } = filled(k);
    p.mlock(base, H);
    expect(splitHugePage(k, head, -1)).toBe(true);
    expect(p.pfnOf(base + 400 * P)).toBe(head + 400);
    k.checkInvariants();
  });

  it('munmap of part of a THP splits it (thp_split_pmd) and keeps the rest mapped, unremapped', () => {
    const k = thpKernel();
    const { p, base, head } = filled(k);
    p.munmap(base + 8 * P, P);
    expect(vmstat(k).thp_split_pmd).toBe(1);
    expect(p.pfnOf(base + 8 * P)).toBeNull();
    expect(p.pfnOf(base + 9 * P)).toBe(head + 9);
    expect(p.pfnOf(base + 400 * P)).toBe(head + 400);
    expect(p.smaps(base, H).anonHuge).toBe(0);
    expect(Buffer.from(p.read(base + 9 * P, P)).equals(Buffer.from(pattern(10)))).toBe(true);
    k.checkInvariants();
  });

  it('madvise(MADV_MERGEABLE) over part of a THP splits it at the new area boundary', () => {
    const k = thpKernel();
    const { p, base } = filled(k);
    p.mprotect(base, 4 * P, 'r');
    expect(vmstat(k).thp_split_pmd).toBe(1);
    expect(p.smaps(base, H).anonHuge).toBe(0);
    k.checkInvariants();
  });

  it('munmap of a whole THP frees it without a split; MADV_DONTNEED of part splits first', () => {
    const k = thpKernel();
    const { p, base } = filled(k);
    const free = k.mem.nrFreeOnline;
    p.madvise(base + 4 * P, 4 * P, 'MADV_DONTNEED');
    expect(vmstat(k).thp_split_pmd).toBe(1);
    expect(k.mem.nrFreeOnline).toBe(free + 4);
    p.munmap(base, 2 * H);
    k.checkInvariants();
    const q = k.spawn('b');
    const b = q.mmap(H);
    q.madvise(b, H, 'MADV_HUGEPAGE');
    q.memset(b, 1, P);
    const before = k.mem.nrFreeOnline;
    q.munmap(b, H);
    expect(k.mem.nrFreeOnline).toBe(before + 512);
    expect(vmstat(k).thp_split_pmd).toBe(1);
    k.checkInvariants();
  });

  it('fork shares a THP; a write in the child splits it and copies one page', () => {
    const k = thpKernel();
    const { p, base, head } = filled(k);
    const c = p.fork('child');
    expect(c.pfnOf(base + 7 * P)).toBe(head + 7);
    k.checkInvariants();
    c.write(base + 7 * P, pattern(77));
    expect(vmstat(k).thp_split_pmd).toBe(1);
    expect(c.pfnOf(base + 7 * P)).not.toBe(head + 7);
    expect(c.pfnOf(base + 8 * P)).toBe(head + 8);
    expect(Buffer.from(p.read(base + 7 * P, P)).equals(Buffer.from(pattern(8)))).toBe(true);
    expect(Buffer.from(c.read(base + 7 * P, P)).equals(Buffer.from(pattern(77)))).toBe(true);
    k.checkInvariants();
  });

  it('reclaim and migration take a THP as small pages', () => {
    const k = thpKernel({ swapMiB: 8 });
    const { p, base, head } = filled(k);
    const moved = k.migratePage(head + 2);
    expect(moved).not.toBe(head + 2);
    expect(p.smaps(base, H).anonHuge).toBe(0);
    expect(k.reclaim(64)).toBe(64);
    for (let i = 0; i < 16; i++) expect(Buffer.from(p.read(base + i * P, P)).equals(Buffer.from(pattern(i + 1)))).toBe(true);
    k.checkInvariants();
  });
});

describe('invariants and images', () => {
  it('checkInvariants finds a THP mapped in part', () => {
    const k = thpKernel();
    const { p, base } = hugeArea(k);
    p.memset(base, 1, P);
    const mm = k.processes.get(p.pid)!.mm;
    const [a, b] = [mm.getPte(base + 3 * P), mm.getPte(base + 4 * P)];
    mm.setPte(base + 3 * P, b);
    mm.setPte(base + 4 * P, a);
    expect(() => k.checkInvariants()).toThrow(InvariantError);
  });

  it('an image keeps THPs, the mode and the counters; 2.6.33 images say nothing of THP', () => {
    const k = thpKernel();
    const { p, base } = hugeArea(k);
    p.write(base + P, pattern(3));
    k.sysfs.write(THP, 'always');
    const img = saveKernelImage(k);
    expect(img.thp).toEqual({ mode: 'always', vmstat: { thp_fault_alloc: 1, thp_fault_fallback: 0, thp_split_page: 0, thp_split_page_failed: 0, thp_split_pmd: 0 } });
    const d = decodeKernelImage(img, []);
    if (typeof d === 'string') throw new Error(d);
    const r = new HostKernel({ ...d.options, thp: { remapZeroSubpages: true } });
    restoreKernelImage(r, d);
    r.checkInvariants();
    expect(r.sysfs.read(THP)).toBe('[always] madvise never\n');
    const q = r.processes.get(p.pid)!;
    expect(q.smaps(base, 2 * H).anonHuge).toBe(512);
    expect(Buffer.from(q.read(base + P, P)).equals(Buffer.from(pattern(3)))).toBe(true);
    expect('thp' in saveKernelImage(new HostKernel({ memoryMiB: 16, blockMiB: 16 }))).toBe(false);
    const bad = { ...img, thp: { mode: 'sometimes', vmstat: img.thp!.vmstat } };
    expect(decodeKernelImage(bad, [])).toBe('thp.mode: expected always, madvise or never, found the string "sometimes"');
  });
});
