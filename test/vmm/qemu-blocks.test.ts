/**
 * QEMU's RAM blocks (src/vmm/qemu-blocks.ts): a guest that maps them has guest RAM
 * as one 2 MiB-aligned block and the firmware blocks measured in
 * docs/real-guests.md, each MADV_MERGEABLE (mem-merge on) and MADV_HUGEPAGE (a
 * kernel with THP), with the measured pages present, zero and in THPs.
 */
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/index.js';
import { VM_HUGEPAGE, VM_MERGEABLE } from '../../src/mm/constants.js';
import { Host } from '../../src/vmm/host.js';
import type { PageFill, PageSource, SourceLayout } from '../../src/vmm/page-source.js';
import { qemuFirmwareBlocks } from '../../src/vmm/qemu-blocks.js';

const MiB = 1024 * 1024;

/** Guest RAM whose first 300 pages hold their gfn, the rest untouched. */
class SmallSource implements PageSource {
  readonly ref = { type: 'synthetic' as const, name: 'small', version: '1', digest: '0'.repeat(64) };
  readonly label = 'small 1';
  readonly bootMs = 0;
  readonly minRamBytes = PAGE_SIZE;
  readonly dirtyRate = 0;
  /** Key word 0 is the word the page holds everywhere. */
  readonly generator = { name: 'small', keyIsHead: false, generate: (k0: number, _k1: number, _k2: number, _k3: number, out: Uint32Array, off: number) => out.fill(k0, off, off + PAGE_SIZE / 4) };
  layout(ramBytes: number): SourceLayout {
    return {
      ramPages: ramBytes / PAGE_SIZE,
      kindOf: (gfn): PageFill => (gfn < 300 ? 'unique' : 'untouched'),
      bootPage(gfn, _seed, out): PageFill {
        const kind = this.kindOf(gfn);
        if (kind !== 'untouched') out.fill(gfn + 1);
        return kind;
      },
      dirtyTarget: () => 0,
      dirtyPage: (_seed, counter, out) => out.fill(0xd1000000 + counter),
      bootKey(gfn, _seed, key): PageFill {
        const kind = this.kindOf(gfn);
        if (kind !== 'untouched') key[0] = gfn + 1;
        return kind;
      },
      dirtyKey: (_seed, counter, key) => {
        key[0] = 0xd1000000 + counter;
      },
    };
  }
}

const FIXED = { policy: 'fixed' as const, run: 0, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: null };

/** A host whose kernel is 6.18 (THP) or 2.6.33 (none). */
function hostWith(thp: boolean): Host {
  return new Host({ memoryMiB: 64, blockMiB: 16, seed: 1, images: null, ksm: FIXED, version: thp ? '6.18' : '2.6.33' });
}

function boot(host: Host, opts: { qemuBlocks?: boolean; memMerge?: boolean; nic?: 'none' | 'e1000' } = {}) {
  const g = host.createGuest({ name: 'g', image: new SmallSource(), memoryMiB: 8, ...opts });
  host.startGuest('g');
  host.advance(100);
  expect(g.state).toBe('running');
  return g;
}

describe("a guest with QEMU's RAM blocks", () => {
  it('maps pc.ram and the seven firmware blocks of -machine pc, 2 MiB-aligned, mergeable and huge', () => {
    const host = hostWith(true);
    const g = boot(host);
    expect(g.qemuBlocks).toBe(true);
    expect(g.firmware.map((b) => [b.name, b.bytes])).toEqual([
      ['/rom@etc/acpi/rsdp', 4096],
      ['/rom@etc/table-loader', 65536],
      ['/rom@etc/acpi/tables', 2 * MiB],
      ['0000:00:02.0/vga.vram', 16 * MiB],
      ['0000:00:02.0/vga.rom', 65536],
      ['pc.rom', 131072],
      ['pc.bios', 262144],
    ]);
    // Each block is followed by its PROT_NONE guard page.
    const all = g.process!.mm.vmas;
    expect(all.map((v) => (v.end - v.start) / 4096)).toEqual([2048, 1, 1, 1, 16, 1, 512, 1, 4096, 1, 16, 1, 32, 1, 64, 1]);
    const vmas = all.filter((_v, i) => i % 2 === 0);
    for (const v of vmas) {
      expect(v.start % (2 * MiB)).toBe(0);
      expect(v.flags & VM_MERGEABLE).toBe(VM_MERGEABLE);
      expect(v.flags & VM_HUGEPAGE).toBe(VM_HUGEPAGE);
    }
    // pc.ram is the lowest; its first 300 pages lie in one 2 MiB range: one THP.
    expect(g.hvaOf(0)).toBe(vmas[0]!.start);
    const p = g.process!;
    const at = (i: number) => p.smaps(vmas[i]!.start, vmas[i]!.end - vmas[i]!.start);
    expect(at(0)).toMatchObject({ resident: 512, anonHuge: 512 });
    expect(at(1)).toMatchObject({ resident: 1, anonHuge: 0 });
    expect(at(2)).toMatchObject({ resident: 16, anonHuge: 0 });
    expect(at(3)).toMatchObject({ resident: 512, anonHuge: 512 });
    expect(at(4)).toMatchObject({ resident: 512, anonHuge: 512 });
    expect(at(5)).toMatchObject({ resident: 10, anonHuge: 0 });
    expect(at(6)).toMatchObject({ resident: 0, anonHuge: 0 });
    expect(at(7)).toMatchObject({ resident: 64, anonHuge: 0 });
    // The sample counts every block of the QEMU process.
    expect(g.sample().residentBytes).toBe((512 + 1 + 16 + 512 + 512 + 10 + 64) * PAGE_SIZE);
    host.kernel.checkInvariants();
  });

  it('firmware pages are equal across guests and blocks as measured: 8 vram pages of one content, 18 zero BIOS pages', () => {
    const blocks = qemuFirmwareBlocks('none');
    const vram = blocks.find((b) => b.name === '0000:00:02.0/vga.vram')!;
    expect(vram.pages.filter((pg) => pg.content === 9).length).toBe(8);
    expect(vram.pages.filter((pg) => pg.content === 0).length).toBe(496);
    const bios = blocks.find((b) => b.name === 'pc.bios')!;
    expect(bios.pages.filter((pg) => pg.content === 0).length).toBe(18);
    const a = new Uint32Array(1024);
    const b = new Uint32Array(1024);
    qemuFirmwareBlocks('none')[3]!.fill(9, a);
    vram.fill(9, b);
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    vram.fill(8, b);
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(false);
  });

  it('-nic e1000 adds its 256 KiB option ROM; mem-merge off registers no block', () => {
    const host = hostWith(true);
    const g = boot(host, { nic: 'e1000', memMerge: false });
    expect(g.firmware.map((b) => b.name)).toContain('0000:00:03.0/e1000.rom');
    const vmas = g.process!.mm.vmas.filter((_v, i) => i % 2 === 0);
    expect(vmas.length).toBe(9);
    for (const v of vmas) {
      expect(v.flags & VM_MERGEABLE).toBe(0);
      expect(v.flags & VM_HUGEPAGE).toBe(VM_HUGEPAGE);
    }
    host.kernel.checkInvariants();
  });

  it('a 2.6.33 kernel maps RAM slots alone unless asked; asked, the blocks come without MADV_HUGEPAGE or THP', () => {
    const host = hostWith(false);
    const g = boot(host);
    expect(g.qemuBlocks).toBe(false);
    expect(g.process!.mm.vmas.length).toBe(1);
    const host2 = hostWith(false);
    const g2 = boot(host2, { qemuBlocks: true });
    const vmas = g2.process!.mm.vmas.filter((_v, i) => i % 2 === 0);
    expect(vmas.length).toBe(8);
    for (const v of vmas) expect(v.flags & VM_HUGEPAGE).toBe(0);
    expect(g2.process!.smapsRollup().anonHuge).toBe(0);
    host2.kernel.checkInvariants();
  });
});
