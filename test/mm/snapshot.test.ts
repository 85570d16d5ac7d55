/**
 * The mm's own image (src/mm/snapshot.ts) and its registration hook, on a HostKernel
 * without KSM: the mm saves and restores its state alone, and a layer above adds its
 * part through registerImagePart() (KSM's part is tested in test/ksm/snapshot.test.ts).
 */
import { pack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { KernelError, PAGE_SIZE } from '../../src/index.js';
import { fail, int, obj } from '../../src/lib/snapshot.js';
import { HostKernel } from '../../src/mm/kernel.js';
import type { MmStruct } from '../../src/mm/mm.js';
import { decodeKernelImage, restoreKernelImage, saveKernelImage, type KernelImage, type KernelImagePart } from '../../src/mm/snapshot.js';
import { pattern } from './helpers.js';

const P = PAGE_SIZE;

/** Check, build a kernel with the same options and parts, restore: the new kernel. */
function restored(img: KernelImage, parts: (k: HostKernel) => void = () => {}): HostKernel {
  const probe = new HostKernel(img.options);
  parts(probe);
  const d = decodeKernelImage(img, probe.imageParts);
  if (typeof d === 'string') throw new Error(d);
  const k = new HostKernel(d.options);
  parts(k);
  restoreKernelImage(k, d);
  return k;
}

describe("the mm's image, without KSM", () => {
  function busy(): HostKernel {
    const k = new HostKernel({ memoryMiB: 16, swapMiB: 4, blockMiB: 4, seed: 3 });
    const a = k.spawn('a');
    const base = a.mmap(32 * P);
    for (let i = 0; i < 32; i++) a.write(base + i * P, pattern(i % 12));
    const b = a.fork('b');
    b.write(base + 3 * P, pattern(99));
    const shm = a.mmap(4 * P, { prot: 'rw', shared: true });
    a.memset(shm, 7, 4 * P);
    k.reclaim(10);
    return k;
  }

  it('restores to a kernel that saves the same image and reads the same bytes', () => {
    const k = busy();
    const img = saveKernelImage(k);
    expect(img.parts).toEqual({});
    const r = restored(img);
    r.checkInvariants();
    expect(Buffer.compare(pack(saveKernelImage(r)), pack(img))).toBe(0);
    for (const pid of [1, 2]) {
      const [p, q] = [k.processes.get(pid)!, r.processes.get(pid)!];
      const addr = p.maps()[0]!.start;
      expect(Buffer.from(q.read(addr, 32 * P)).equals(Buffer.from(p.read(addr, 32 * P)))).toBe(true);
    }
  });

  it('a kernel without KSM refuses an image with KSM in it, naming the part', () => {
    const img = saveKernelImage(busy());
    img.parts.ksm = {};
    expect(decodeKernelImage(img, [])).toBe('parts.ksm: no layer of this kernel restores it (it has none)');
  });
});

describe('registerImagePart: a layer above the mm saves and restores its part', () => {
  /**
   * A toy layer that holds on to one mm (mmgrab), as KSM's mm_slot does, and keeps a
   * number: enough to show the hook numbers mms a process no longer has.
   */
  class Holder {
    mm: MmStruct | null = null;
    note = 0;
    part(): KernelImagePart<{ mm: number; note: number }> {
      return {
        name: 'holder',
        save: (ctx) => ({ image: { mm: this.mm === null ? -1 : ctx.mm(this.mm), note: this.note }, mappings: 0, mappingIndex: () => -1 }),
        check: (x, ctx) => {
          const o = obj(x, ctx.path);
          const mm = int(o.mm, `${ctx.path}.mm`, -1, ctx.mms - 1);
          if (mm >= 0) ctx.holdMm(mm);
          const note = int(o.note, `${ctx.path}.note`, 0, 1000);
          if (note === 13) fail(`${ctx.path}.note`, 'unlucky');
          return { decoded: { mm, note }, mappings: 0 };
        },
        restore: (d, ctx) => {
          this.mm = d.mm < 0 ? null : ctx.mms[d.mm]!;
          this.note = d.note;
          return [];
        },
      };
    }
  }

  function held(): { k: HostKernel; h: Holder } {
    const k = new HostKernel({ memoryMiB: 8, blockMiB: 4, seed: 1 });
    const h = new Holder();
    k.registerImagePart(h.part());
    const a = k.spawn('a');
    a.mmap(4 * P);
    h.mm = a.mm;
    a.mm.mmCount++;
    h.note = 42;
    k.spawn('b').mmap(2 * P);
    a.exit();
    return { k, h };
  }

  it("the part's image is saved under its name, and the mm only it holds is numbered after the processes'", () => {
    const { k } = held();
    const img = saveKernelImage(k);
    expect(img.parts).toEqual({ holder: { mm: 1, note: 42 } });
    expect(img.processes.map((p) => [p.name, p.mm])).toEqual([['b', 0]]);
    expect(img.mms.map((m) => [m.owner, m.mmUsers])).toEqual([
      ['b', 1],
      ['a', 0],
    ]);
  });

  it('restored, the part gets the restored kernel’s objects', () => {
    const { k } = held();
    let h2: Holder | null = null;
    const r = restored(saveKernelImage(k), (kk) => {
      const h = new Holder();
      kk.registerImagePart(h.part());
      h2 = h;
    });
    expect([h2!.mm!.owner, h2!.mm!.mmUsers, h2!.note]).toEqual(['a', 0, 42]);
    expect(Buffer.compare(pack(saveKernelImage(r)), pack(saveKernelImage(k)))).toBe(0);
  });

  it("the part's check names its own fields, under parts.<name>", () => {
    const { k } = held();
    const img = saveKernelImage(k);
    (img.parts.holder as { note: number }).note = 13;
    const probe = new HostKernel(img.options);
    probe.registerImagePart(new Holder().part());
    expect(decodeKernelImage(img, probe.imageParts)).toBe('parts.holder.note: unlucky');
  });

  it('an mm no process has and no part declares it holds is refused', () => {
    const { k } = held();
    const img = saveKernelImage(k);
    const lax: KernelImagePart<null> = { name: 'holder', save: () => ({ image: null, mappings: 0, mappingIndex: () => -1 }), check: () => ({ decoded: null, mappings: 0 }), restore: () => [] };
    expect(decodeKernelImage(img, [lax])).toBe('mms[1]: belongs to no process, and no image part (an mm_slot) holds it');
  });

  it('two parts of one name: EBUSY', () => {
    const k = new HostKernel({ memoryMiB: 8, blockMiB: 4 });
    k.registerImagePart(new Holder().part());
    expect(() => k.registerImagePart(new Holder().part())).toThrow(new KernelError('EBUSY', 'an image part named holder is already registered'));
  });
});
