/**
 * The page-source seam (src/vmm/page-source.ts): a guest writes its boot image and its
 * dirtied pages through its source, and asks the source what kind each page is. The
 * synthetic generator is one implementation (SyntheticSource), and a source written
 * outside src/vmm plugs in the same way.
 */
import { describe, expect, it } from 'vitest';
import { Host, ImageCatalog, PAGE_SIZE, SyntheticSource, loadImageCatalog, parseImage, type PageFill, type PageSource, type SourceLayout } from '../../src/index.js';
import { dirtyPage, dirtyTarget, guestPage, imageDigest, layoutGuest, pageKind } from '../../src/vmm/image.js';

const images = loadImageCatalog(new URL('./fixtures', import.meta.url).pathname);
const tiny = images.get('tiny', '1');
const MiB = 1024 * 1024;
const W = PAGE_SIZE / 4;

describe('SyntheticSource: the generator behind the seam', () => {
  const source = images.source('tiny', '1');
  const layout = source.layout(16 * MiB);
  const direct = layoutGuest(tiny, 16 * MiB);

  it('names the image, its timing and its idle dirty rate', () => {
    expect([source.label, source.bootMs, source.minRamBytes, source.dirtyRate, layout.ramPages]).toEqual(['tiny 1', 2000, 16 * MiB, 10, 4096]);
    expect(source.ref).toEqual({ type: 'synthetic', name: 'tiny', version: '1', digest: imageDigest(tiny) });
    expect(images.source('tiny', '1')).toBe(source);
  });

  it('gives exactly the pages, kinds and dirty targets of the generator', () => {
    const a = new Uint32Array(W);
    const b = new Uint32Array(W);
    for (let gfn = 0; gfn < layout.ramPages; gfn++) {
      expect(layout.kindOf(gfn)).toBe(pageKind(tiny, direct, gfn));
      a.fill(7);
      b.fill(7);
      expect(layout.bootPage(gfn, 99, a)).toBe(guestPage(tiny, direct, gfn, 99, b));
      expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    }
    for (let i = 0; i < 100; i++) {
      const r1 = (i * 0x9e3779b1) >>> 0;
      const r2 = (i * 0x85ebca6b) >>> 0;
      expect(layout.dirtyTarget(r1, r2)).toBe(dirtyTarget(tiny, direct, r1, r2));
      layout.dirtyPage(5, i, a);
      dirtyPage(5, i, b);
      expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    }
  });

  it('a guest too small for the image: the layout says why', () => {
    expect(() => source.layout(8 * MiB)).toThrow('image tiny 1 needs at least 16 MiB of RAM, the guest has 8 MiB');
  });
});

describe('imageDigest: what decides the pages, and nothing else', () => {
  const text = (mix: string, description = 'A digest test'): string => `
name: dg
version: "1"
os: linux
description: ${description}
boot_time: 1s
min_ram: 4MiB
regions:
  - { name: data, size: rest, mix: { ${mix} } }
workload: { dirty_rate: 1, targets: { data: 1 } }
`;

  it('the same descriptor parsed twice, or from another file, or reworded: the same digest', () => {
    const d = imageDigest(parseImage(text('version: 0.5, zero: 0.5'), 'a.yaml'));
    expect(imageDigest(parseImage(text('version: 0.5, zero: 0.5'), 'b/c.yaml'))).toBe(d);
    expect(imageDigest(parseImage(text('version: 0.5, zero: 0.5', 'Reworded'), 'a.yaml'))).toBe(d);
    expect(d).toMatch(/^[0-9a-f]{64}$/);
  });

  it('another mix, boot time or version: another digest', () => {
    const base = parseImage(text('version: 0.5, zero: 0.5'), 'a.yaml');
    const digests = [
      base,
      parseImage(text('version: 0.6, zero: 0.4'), 'a.yaml'),
      { ...base, bootMs: 2000 },
      parseImage(text('version: 0.5, zero: 0.5').replace('version: "1"', 'version: "2"'), 'a.yaml'),
    ].map(imageDigest);
    expect(new Set(digests).size).toBe(4);
  });

  it('a catalog resolves a ref to its source, or says why not', () => {
    const ref = images.source('tiny', '2').ref;
    expect(images.resolve(ref)).toBe(images.source('tiny', '2'));
    expect(images.resolve({ ...ref, version: '3' })).toBe(`tiny 3 (sha256 ${ref.digest.slice(0, 12)}…) is not in the image catalog (it has tiny 1, tiny 2)`);
    const other = new ImageCatalog([{ ...images.get('tiny', '2'), bootMs: 1 }]);
    expect(other.resolve(ref)).toMatch(/^tiny 2 \(sha256 [0-9a-f]{12}…\) has changed since the snapshot: .*tiny-2\.json now describes other pages \(sha256 [0-9a-f]{12}…\)$/);
  });
});

/**
 * A source that is no synthetic image: page g holds g in every word, every third page
 * is untouched, and the workload rewrites page 0 with the counter. What a captured
 * guest will do through the same interface, in a dozen lines.
 */
class CountingSource implements PageSource {
  readonly ref = { type: 'synthetic' as const, name: 'counting', version: '1', digest: 'c'.repeat(64) };
  readonly label = 'counting 1';
  readonly bootMs = 0;
  readonly minRamBytes = PAGE_SIZE;
  readonly dirtyRate = 10;
  /** Key word 0 is the word the page holds everywhere. */
  readonly generator = { name: 'counting', keyIsHead: false, generate: (k0: number, _k1: number, _k2: number, _k3: number, out: Uint32Array, off: number) => out.fill(k0, off, off + W) };
  layout(ramBytes: number): SourceLayout {
    return {
      ramPages: ramBytes / PAGE_SIZE,
      kindOf: (gfn): PageFill => (gfn % 3 === 2 ? 'untouched' : 'unique'),
      bootPage(gfn, _seed, out): PageFill {
        const kind = this.kindOf(gfn);
        if (kind !== 'untouched') out.fill(gfn);
        return kind;
      },
      dirtyTarget: () => 0,
      dirtyPage: (_seed, counter, out) => out.fill(0xd1000000 + counter),
      bootKey(gfn, _seed, key): PageFill {
        const kind = this.kindOf(gfn);
        if (kind !== 'untouched') key[0] = gfn;
        return kind;
      },
      dirtyKey: (_seed, counter, key) => {
        key[0] = 0xd1000000 + counter;
      },
    };
  }
}

describe('another source behind the seam', () => {
  it('a guest writes what its source says, leaves untouched pages unallocated, and dirties through it', () => {
    const host = new Host({ memoryMiB: 32, blockMiB: 16, seed: 2, images: null, ksm: { policy: 'fixed', run: 0, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: null } });
    const g = host.createGuest({ name: 'c', image: new CountingSource(), memoryMiB: 1 });
    expect(g.imageName).toBe('counting 1');
    host.startGuest('c');
    host.advance(100);
    expect(g.state).toBe('running');
    for (let gfn = 0; gfn < 256; gfn++) {
      const present = g.process!.pfnOf(g.hvaOf(gfn * PAGE_SIZE)) !== null;
      expect(present).toBe(gfn % 3 !== 2);
      if (present && gfn > 0) expect(new Uint32Array(g.readPhys(gfn * PAGE_SIZE, PAGE_SIZE).buffer)[W - 1]).toBe(gfn);
    }
    // Ten pages a second: after 1.1 s of running, page 0 holds the 11th dirtied page (counter 10).
    host.advance(1100);
    expect(new Uint32Array(g.readPhys(0, PAGE_SIZE).buffer)[0]).toBe(0xd1000000 + 10);
    expect(g.pagesWritten).toBe(171 + 11);
  });

  it('createGuest takes an image descriptor as a source too', () => {
    const host = new Host({ memoryMiB: 32, blockMiB: 16, seed: 2, images: null });
    const g = host.createGuest({ name: 't', image: tiny, memoryMiB: 16 });
    expect(g.source).toBeInstanceOf(SyntheticSource);
    expect(g.source.ref).toEqual(images.source('tiny', '1').ref);
  });
});
