/**
 * Replay (src/vmm/capture-source.ts): the guests of captures/busybox-4.cap placed on a
 * modelled host come back page for page: what was present, zero, a zero-page
 * mapping, in a THP, and QEMU's other blocks; copies are the same guest again; a
 * 2 MiB range the real host held in small pages stays small.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/index.js';
import { CP_PRESENT, CP_THP, CP_THP_HEAD, CP_ZERO_PAGE, readCapture, type Capture } from '../../src/vmm/capture-file.js';
import { CaptureSource, captureDigest } from '../../src/vmm/capture-source.js';
import { Host } from '../../src/vmm/host.js';

const FILE = 'captures/busybox-4.cap';
const FIXED = { policy: 'fixed' as const, run: 0, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: null };
const bytes = readFileSync(FILE);
const capture = readCapture(bytes, FILE);
const digest = captureDigest(bytes);

/** A 6.18 host: THP in madvise mode, QEMU's blocks for every guest. */
function thpHost(memoryMiB: number): Host {
  return new Host({ memoryMiB, blockMiB: 128, seed: 1, images: null, ksm: FIXED, version: '6.18' });
}

describe('a captured guest replayed', () => {
  it('has the real guest RAM page for page: 24 576 present, all in 48 THPs; its blocks as captured', () => {
    const host = thpHost(256);
    const src = new CaptureSource(capture, 'id-1', FILE, digest);
    expect(src.ref).toEqual({ type: 'capture', name: FILE, version: 'id-1', digest });
    const g = host.createGuest({ name: 'a', image: src, memoryMiB: 96 });
    host.startGuest('a');
    host.advance(100);
    expect(g.state).toBe('running');
    const p = g.process!;
    const ram = p.smaps(g.hvaOf(0), 96 * 1024 * 1024);
    expect(ram).toMatchObject({ resident: 24576, anonHuge: 24576 });
    // Every page holds the captured bytes.
    const vma = capture.processes[0]!.vmas.find((v) => v.block === 'pc.ram')!;
    for (const i of [0, 1, 777, 12345, 24575]) {
      const ct = vma.contents[i]!;
      const want = ct === 0 ? Buffer.alloc(PAGE_SIZE) : capture.pages.subarray((ct - 1) * PAGE_SIZE, ct * PAGE_SIZE);
      expect(Buffer.from(g.readPhys(vma.offsets[i]! * PAGE_SIZE, PAGE_SIZE)).equals(want)).toBe(true);
    }
    // QEMU's other blocks, as the capture has them: VGA and ACPI tables one THP each, the BIOS's 64 pages small.
    expect(g.firmware.map((b) => [b.name, b.pages.length])).toEqual([
      ['/rom@etc/acpi/rsdp', 1],
      ['0000:00:02.0/vga.rom|/rom@etc/table-loader', 16],
      ['/rom@etc/acpi/tables', 512],
      ['0000:00:02.0/vga.vram', 512],
      ['0000:00:02.0/vga.rom|/rom@etc/table-loader', 10],
      ['pc.rom', 0],
      ['pc.bios', 64],
    ]);
    const all = p.smapsRollup();
    expect(all).toMatchObject({ resident: 24576 + 1 + 16 + 512 + 512 + 10 + 64, anonHuge: 24576 + 1024 });
    host.kernel.checkInvariants();
  });

  it('copies of one captured guest are the same guest; the mixed pair differs', () => {
    const host = thpHost(512);
    const a = host.createGuest({ name: 'a', image: new CaptureSource(capture, 'mix-a', FILE, digest), memoryMiB: 96 });
    const b = host.createGuest({ name: 'b', image: new CaptureSource(capture, 'mix-a', FILE, digest), memoryMiB: 96 });
    const c = host.createGuest({ name: 'c', image: new CaptureSource(capture, 'mix-b', FILE, digest), memoryMiB: 96 });
    for (const n of ['a', 'b', 'c']) host.startGuest(n);
    host.advance(100);
    let sameAB = 0;
    let sameAC = 0;
    for (let gfn = 0; gfn < 24576; gfn += 97) {
      const x = Buffer.from(a.readPhys(gfn * PAGE_SIZE, PAGE_SIZE));
      if (x.equals(Buffer.from(b.readPhys(gfn * PAGE_SIZE, PAGE_SIZE)))) sameAB++;
      if (x.equals(Buffer.from(c.readPhys(gfn * PAGE_SIZE, PAGE_SIZE)))) sameAC++;
    }
    expect(sameAB).toBe(254);
    expect(sameAC).toBeLessThan(254);
  });

  it('a range the host held small stays small; zero-page mappings are read, not written', () => {
    // id-1 altered: in the first 2 MiB of RAM no page is in a THP, and page 3 maps the zero page.
    const proc = structuredClone(capture.processes[0]!);
    const v = proc.vmas.find((x) => x.block === 'pc.ram')!;
    for (let i = 0; i < 512; i++) v.flags[i] = v.flags[i]! & ~(CP_THP | CP_THP_HEAD);
    v.flags[3] = CP_ZERO_PAGE | CP_PRESENT;
    v.contents[3] = 0;
    const cap: Capture = { ...capture, processes: [proc] };
    const host = thpHost(256);
    const g = host.createGuest({ name: 'a', image: new CaptureSource(cap, 'id-1', 'altered', digest), memoryMiB: 96 });
    host.startGuest('a');
    host.advance(100);
    const p = g.process!;
    expect(p.smaps(g.hvaOf(0), 2 * 1024 * 1024)).toMatchObject({ resident: 511, anonHuge: 0 });
    expect(p.pfnOf(g.hvaOf(3 * PAGE_SIZE))).toBe(host.kernel.mem.zeroPfn);
    expect(p.smaps(g.hvaOf(2 * 1024 * 1024), 2 * 1024 * 1024)).toMatchObject({ resident: 512, anonHuge: 512 });
    host.kernel.checkInvariants();
  });

  it('refuses a guest the capture does not have, and RAM smaller than the captured guest', () => {
    expect(() => new CaptureSource(capture, 'nope', FILE, digest)).toThrow(`${FILE} has no guest nope (it has id-1, id-2, mix-a, mix-b)`);
    const host = thpHost(256);
    expect(() => host.createGuest({ name: 'a', image: new CaptureSource(capture, 'id-1', FILE, digest), memoryMiB: 64 })).toThrow(/has 96 MiB of RAM; a guest of 64 MiB cannot hold it/);
  });
});
