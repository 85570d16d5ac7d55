import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Prng } from '../../src/lib/prng.js';
import { ConfigError } from '../../src/vmm/config.js';
import {
  ImageCatalog,
  compareVersions,
  countPageKinds,
  dirtyPage,
  dirtyTarget,
  guestPage,
  layoutGuest,
  pageKind,
  parseImage,
  type GuestImage,
  type GuestLayout,
  type PageFill,
} from '../../src/vmm/image.js';

const MiB = 1024 * 1024;

function fixtureText(name: string): string {
  return readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
}

function shipped(name: string): GuestImage {
  return parseImage(readFileSync(new URL(`../../guests/${name}`, import.meta.url), 'utf8'), `guests/${name}`);
}

const TINY = fixtureText('tiny-1.yaml');
const tiny = parseImage(TINY, 'tiny-1.yaml');

/** The message of what `fn` throws (it must throw a ConfigError). */
function configMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

function errorMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected an error, nothing was thrown');
}

/**
 * Two 32-bit hashes of the whole page in one 53-bit number: a set key for page
 * contents. FNV-1a on words, and the running sum of its states: one multiply a word.
 */
function pageKey(p: Uint32Array): number {
  let h1 = 0x811c9dc5;
  let h2 = 0;
  for (let i = 0; i < 1024; i++) {
    h1 = Math.imul(h1 ^ p[i]!, 0x01000193);
    h2 = (h2 + (h1 ^ (h1 >>> 16))) | 0;
  }
  return (h1 >>> 0) * 0x200000 + ((h2 >>> 0) & 0x1fffff);
}

function isZero(p: Uint32Array): boolean {
  for (let i = 0; i < 1024; i++) if (p[i] !== 0) return false;
  return true;
}

/**
 * The distinct contents a guest boots with (content key → kind); untouched pages left
 * out, and the zero kind hashed once (that zero pages are zeros is tested on its own).
 */
function guestPages(image: GuestImage, layout: GuestLayout, bootSeed: number): Map<number, PageFill> {
  const out = new Uint32Array(1024);
  const keys = new Map<number, PageFill>();
  let zeroSeen = false;
  for (let gfn = 0; gfn < layout.ramPages; gfn++) {
    const kind = guestPage(image, layout, gfn, bootSeed, out);
    if (kind === 'untouched' || (kind === 'zero' && zeroSeen)) continue;
    zeroSeen ||= kind === 'zero';
    keys.set(pageKey(out), kind);
  }
  return keys;
}

describe('parseImage', () => {
  it('reads a descriptor: identity, times, sizes, mixes and the workload', () => {
    expect({ name: tiny.name, version: tiny.version, os: tiny.os, description: tiny.description, file: tiny.file, bootMs: tiny.bootMs, minRamBytes: tiny.minRamBytes }).toEqual({
      name: 'tiny',
      version: '1',
      os: 'linux',
      description: 'A tiny test guest',
      file: 'tiny-1.yaml',
      bootMs: 2000,
      minRamBytes: 16 * MiB,
    });
    expect(tiny.regions.map((r) => [r.name, r.size, r.mix])).toEqual([
      ['kernel', { unit: 'bytes', bytes: 4 * MiB }, { image: 0, zero: 0.1, version: 0.9, unique: 0, untouched: 0 }],
      ['cache', { unit: 'percent', percent: 25 }, { image: 0.3, zero: 0, version: 0.4, unique: 0.3, untouched: 0 }],
      ['heap', { unit: 'bytes', bytes: 4 * MiB }, { image: 0, zero: 0.2, version: 0, unique: 0.8, untouched: 0 }],
      ['free', { unit: 'rest' }, { image: 0, zero: 0, version: 0, unique: 0.1, untouched: 0.9 }],
    ]);
    expect(tiny.workload.dirtyRate).toBe(10);
    expect(tiny.workload.targets.map((t) => [t.region, t.regionIndex, t.weight])).toEqual([
      ['heap', 2, 0.75],
      ['cache', 1, 0.25],
    ]);
  });

  it('reads a JSON descriptor too', () => {
    const im = parseImage(fixtureText('tiny-2.json'), 'tiny-2.json');
    expect([im.name, im.version, im.bootMs, im.regions.length, im.workload.dirtyRate]).toEqual(['tiny', '2', 3000, 4, 12]);
  });

  it('takes fractions that add up to 1 only in decimal (0.1 + 0.2 + 0.7) as 1', () => {
    const im = parseImage(TINY.replace('{ version: 0.9, zero: 0.1 }', '{ version: 0.1, image: 0.2, zero: 0.7 }'), 'tiny-1.yaml');
    expect(im.regions[0]!.mix.zero).toBe(0.7);
  });

  it('lists every problem of a file, in line order', () => {
    const e = (() => {
      try {
        parseImage(TINY.replace('os: linux', 'os: bsd').replace('size: 4MiB', 'size: lots'), 'tiny-1.yaml');
      } catch (err) {
        return err as ConfigError;
      }
      throw new Error('no error');
    })();
    expect(e.problems.map((p) => [p.line, p.field])).toEqual([
      [5, 'os'],
      [11, 'regions[0].size'],
    ]);
  });
});

describe('parseImage: a bad descriptor gives file:line: field: what was expected', () => {
  // Each case is the tiny 1 descriptor with one mistake in it (tiny 2 for JSON).
  const bad = (from: string, to: string): string => TINY.replace(from, to);
  const ONE_TO_ONE = '{ version: 0.9, zero: 0.1 }';
  const cases: { what: string; file?: string; text: string; message: string }[] = [
    { what: 'a bad size, naming the file as given', file: 'guests/tiny-1.yaml', text: bad('size: 4MiB', 'size: lots'), message: `guests/tiny-1.yaml:11: regions[0].size: expected a size like '64MiB', a share of guest RAM like '25%', or 'rest', got "lots"` },
    { what: 'a size that is not whole pages', text: bad('size: 4MiB', 'size: 5000B'), message: 'tiny-1.yaml:11: regions[0].size: expected a size that is a positive multiple of 4KiB, got "5000B"' },
    { what: 'a share of RAM of 100% or more', text: bad('size: 25%', 'size: 120%'), message: 'tiny-1.yaml:14: regions[1].size: expected a share of guest RAM above 0% and below 100%, got "120%"' },
    { what: 'a misspelt field: unknown, and the field it should have been missing', text: bad('boot_time: 2s', 'boot_tme: 2s'), message: 'tiny-1.yaml:3: boot_time: missing (expected string)\ntiny-1.yaml:7: boot_tme: unknown field (misspelt?)' },
    { what: 'an unknown page kind in a mix', text: bad(ONE_TO_ONE, '{ version: 0.9, zeros: 0.1 }'), message: 'tiny-1.yaml:12: regions[0].mix.zeros: unknown field (misspelt?)' },
    { what: 'a mix whose fractions do not add up to 1', text: bad(ONE_TO_ONE, '{ version: 0.9, zero: 0.05 }'), message: 'tiny-1.yaml:12: regions[0].mix: expected fractions that add up to 1, got 0.95' },
    { what: 'a fraction above 1, saying what it got', text: bad(ONE_TO_ONE, '{ version: 1.5 }'), message: 'tiny-1.yaml:12: regions[0].mix.version: expected a fraction between 0 and 1, got 1.5' },
    { what: 'two rest regions, at the second', text: bad('size: 25%', 'size: rest'), message: "tiny-1.yaml:20: regions[3].size: only one region may take 'rest', and regions[1] does already" },
    { what: 'no rest region', text: bad('size: rest', 'size: 4MiB'), message: "tiny-1.yaml:9: regions: expected one region with size 'rest', to take the RAM the others leave" },
    { what: 'a missing field', text: bad('boot_time: 2s\n', ''), message: 'tiny-1.yaml:3: boot_time: missing (expected string)' },
    { what: 'a missing field in a region', text: bad(`    mix: ${ONE_TO_ONE}\n`, ''), message: 'tiny-1.yaml:10: regions[0].mix: missing (expected object)' },
    { what: 'a rate of the wrong type', text: bad('dirty_rate: 10', 'dirty_rate: fast'), message: 'tiny-1.yaml:23: workload.dirty_rate: expected pages per second (a number, 0 or more), got "fast"' },
    { what: 'an os that is not one of the two', text: bad('os: linux', 'os: bsd'), message: "tiny-1.yaml:5: os: expected 'linux' or 'windows', got \"bsd\"" },
    { what: 'an unquoted version, which YAML reads as a number', text: bad('version: "1"', 'version: 10.10'), message: "tiny-1.yaml:4: version: expected a version in quotes like '10.04' (unquoted, YAML reads a number), got 10.1" },
    { what: 'a YAML syntax error, with its line', text: bad('boot_time: 2s', '\tboot_time: 2s'), message: 'tiny-1.yaml:7: not valid YAML or JSON: Tabs are not allowed as indentation' },
    { what: 'a field given twice', text: bad('os: linux', 'os: linux\nos: windows'), message: 'tiny-1.yaml:6: not valid YAML or JSON: Map keys must be unique' },
    { what: 'a problem in a JSON descriptor, with its line', file: 'tiny-2.json', text: fixtureText('tiny-2.json').replace('"min_ram": "16MiB"', '"min_ram": 16'), message: "tiny-2.json:7: min_ram: expected a size like '512MiB', got 16" },
    { what: 'a workload target that is not a region', text: bad('heap: 0.75', 'heapp: 0.75'), message: 'tiny-1.yaml:24: workload.targets.heapp: expected the name of a region (kernel, cache, heap, free), got "heapp"' },
    { what: 'workload weights that do not add up to 1', text: bad('heap: 0.75', 'heap: 0.7'), message: 'tiny-1.yaml:24: workload.targets: expected weights that add up to 1, got 0.95' },
    { what: 'a min_ram the regions do not fit in', text: bad('min_ram: 16MiB', 'min_ram: 8MiB'), message: 'tiny-1.yaml:8: min_ram: expected enough RAM for the regions, but at 8 MiB they need 10 MiB (8 MiB + 25% of RAM)' },
    { what: 'two regions of one name', text: bad('name: heap', 'name: kernel').replace('heap: 0.75', 'kernel: 0.75'), message: 'tiny-1.yaml:16: regions[2].name: "kernel" is already the name of regions[0]' },
    { what: 'an empty file', text: '', message: 'tiny-1.yaml: expected a guest image descriptor: a map with name, version, os, description, boot_time, min_ram, regions and workload, got an empty file' },
  ];
  for (const { what, file, text, message } of cases) {
    it(what, () => {
      expect(configMessage(() => parseImage(text, file ?? 'tiny-1.yaml'))).toBe(message);
    });
  }
});

describe('layoutGuest', () => {
  it('lays the regions out in order: absolute sizes, shares of RAM, the rest', () => {
    expect(layoutGuest(tiny, 16 * MiB)).toEqual({
      ramPages: 4096,
      regions: [
        { name: 'kernel', start: 0, pages: 1024 },
        { name: 'cache', start: 1024, pages: 1024 },
        { name: 'heap', start: 2048, pages: 1024 },
        { name: 'free', start: 3072, pages: 1024 },
      ],
    });
  });

  it('rounds a share of RAM down to whole pages and gives the remainder to the rest', () => {
    // 4099 pages: 25% is 1024.75 pages.
    expect(layoutGuest(tiny, 16 * MiB + 3 * 4096).regions).toEqual([
      { name: 'kernel', start: 0, pages: 1024 },
      { name: 'cache', start: 1024, pages: 1024 },
      { name: 'heap', start: 2048, pages: 1024 },
      { name: 'free', start: 3072, pages: 1027 },
    ]);
  });

  it('refuses a guest smaller than the image needs', () => {
    expect(errorMessage(() => layoutGuest(tiny, 8 * MiB))).toBe('image tiny 1 needs at least 16 MiB of RAM, the guest has 8 MiB');
    expect(errorMessage(() => layoutGuest(shipped('fedora-13.yaml'), 128 * MiB))).toBe('image fedora 13 needs at least 256 MiB of RAM, the guest has 128 MiB');
  });

  it('refuses RAM that is not whole pages', () => {
    expect(errorMessage(() => layoutGuest(tiny, 16 * MiB + 100))).toBe('image tiny 1: guest RAM must be a positive multiple of 4 KiB, got 16777316 bytes');
  });

  it('refuses a layout where every region the workload dirties is empty', () => {
    // At exactly min_ram the rest region has no pages.
    const im = parseImage(TINY.replace('min_ram: 16MiB', 'min_ram: 12MiB').replace('size: 4MiB', 'size: 5MiB').replace('{ heap: 0.75, cache: 0.25 }', '{ free: 1 }'), 'tiny-1.yaml');
    expect(errorMessage(() => layoutGuest(im, 12 * MiB))).toBe('image tiny 1: at 12 MiB every region its workload dirties (free) is empty');
  });
});

describe('guestPage', () => {
  const layout = layoutGuest(tiny, 16 * MiB);

  it('gives each region its mix of kinds (exact counts for the tiny image)', () => {
    expect(countPageKinds(tiny, layout)).toEqual([
      { name: 'kernel', pages: 1024, kinds: { image: 0, zero: 91, version: 933, unique: 0, untouched: 0 } },
      { name: 'cache', pages: 1024, kinds: { image: 300, zero: 0, version: 393, unique: 331, untouched: 0 } },
      { name: 'heap', pages: 1024, kinds: { image: 0, zero: 178, version: 0, unique: 846, untouched: 0 } },
      { name: 'free', pages: 1024, kinds: { image: 0, zero: 0, version: 0, unique: 109, untouched: 915 } },
    ]);
  });

  it('returns the kind pageKind predicts, fills zero pages with zeros and leaves untouched pages alone', () => {
    const out = new Uint32Array(1024);
    const seen: Record<PageFill, number> = { image: 0, zero: 0, version: 0, unique: 0, untouched: 0 };
    let wrong = 0; // expect() in a loop of 4096 would cost more than the test
    for (let gfn = 0; gfn < layout.ramPages; gfn++) {
      out.fill(0xdeadbeef);
      const kind = guestPage(tiny, layout, gfn, 7, out);
      seen[kind]++;
      if (kind !== pageKind(tiny, layout, gfn)) wrong++;
      else if (kind === 'zero' ? !isZero(out) : kind === 'untouched' ? !out.every((w) => w === 0xdeadbeef) : isZero(out)) wrong++;
    }
    expect(wrong).toBe(0);
    expect(seen).toEqual({ image: 300, zero: 269, version: 1326, unique: 1286, untouched: 915 });
  });

  it('is deterministic: the same image, gfn and seed give the same bytes', () => {
    const a = new Uint32Array(1024);
    const b = new Uint32Array(1024);
    for (const gfn of [0, 1500, 2500, 3500]) {
      guestPage(tiny, layout, gfn, 99, a);
      guestPage(parseImage(TINY, 'other-name.yaml'), layout, gfn, 99, b);
      expect(Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer))).toBe(0);
    }
  });

  it('refuses a gfn outside the guest', () => {
    expect(errorMessage(() => guestPage(tiny, layout, 4096, 1, new Uint32Array(1024)))).toBe("gfn 4096 is outside the guest's RAM (0..4095)");
  });

  it('same image and version, two boots: identical version, image and zero pages at every gfn; unique pages all differ', () => {
    const im = shipped('fedora-13.yaml');
    const l = layoutGuest(im, 256 * MiB);
    const a = new Uint32Array(1024);
    const b = new Uint32Array(1024);
    const ab = Buffer.from(a.buffer);
    const bb = Buffer.from(b.buffer);
    const same: Record<PageFill, number> = { image: 0, zero: 0, version: 0, unique: 0, untouched: 0 };
    const differ: Record<PageFill, number> = { image: 0, zero: 0, version: 0, unique: 0, untouched: 0 };
    let kindsDiffer = 0;
    for (let gfn = 0; gfn < l.ramPages; gfn++) {
      const ka = guestPage(im, l, gfn, 1, a);
      const kb = guestPage(im, l, gfn, 2, b);
      if (kb !== ka) kindsDiffer++;
      if (ka === 'untouched') continue;
      if (ab.equals(bb)) same[ka]++;
      else differ[ka]++;
    }
    // fedora 13 in 256 MiB writes 6520 image, 5216 zero, 19449 version and 16199 unique pages.
    expect(kindsDiffer).toBe(0);
    expect(same).toEqual({ image: 6520, zero: 5216, version: 19449, unique: 0, untouched: 0 });
    expect(differ).toEqual({ image: 0, zero: 0, version: 0, unique: 16_199, untouched: 0 });
    expect(countPageKinds(im, l).reduce((n, r) => n + r.kinds.unique, 0)).toBe(16_199);
    // And no unique page of one boot equals any page of the other.
    const pagesA = guestPages(im, l, 1);
    let uniqueShared = 0;
    for (const [key, kind] of guestPages(im, l, 2)) if (kind === 'unique' && pagesA.has(key)) uniqueShared++;
    expect(uniqueShared).toBe(0);
  });

  it('two versions of fedora share exactly the image pages at region indices both versions have as image', () => {
    const f12 = shipped('fedora-12.yaml');
    const f13 = shipped('fedora-13.yaml');
    const l12 = layoutGuest(f12, 256 * MiB);
    const l13 = layoutGuest(f13, 256 * MiB);
    // Predicted from the kinds alone.
    let predicted = 0;
    l13.regions.forEach((r13) => {
      const r12 = l12.regions.find((r) => r.name === r13.name)!;
      for (let i = 0; i < Math.min(r12.pages, r13.pages); i++) {
        if (pageKind(f13, l13, r13.start + i) === 'image' && pageKind(f12, l12, r12.start + i) === 'image') predicted++;
      }
    });
    // Found by content.
    const pages12 = guestPages(f12, l12, 1);
    const shared: Record<PageFill, number> = { image: 0, zero: 0, version: 0, unique: 0, untouched: 0 };
    for (const [key, kind] of guestPages(f13, l13, 2)) {
      const other = pages12.get(key);
      if (other === undefined) continue;
      shared[other === kind ? kind : 'untouched']++; // 'untouched' counts pairs of different kinds
    }
    // page_cache has image 0.15 in both, so all 819 image pages of fedora 12's shorter
    // region; libraries has 0.38 and 0.35, so fedora 13's image pages among the 15360
    // indices both have: 5277.
    expect(predicted).toBe(819 + 5277);
    expect(shared).toEqual({ image: predicted, zero: 1, version: 0, unique: 0, untouched: 0 });
  });

  it('different images share nothing but the zero page', () => {
    const names = ['fedora-13.yaml', 'ubuntu-10.04.yaml', 'debian-6.0.yaml', 'windows-2008.yaml'];
    const owner = new Map<number, string>();
    let crossShared = 0;
    for (const name of names) {
      const im = shipped(name);
      const pages = guestPages(im, layoutGuest(im, im.minRamBytes), 1);
      for (const [key, kind] of pages) {
        if (kind === 'zero') continue;
        const o = owner.get(key);
        if (o !== undefined && o !== name) crossShared++;
        owner.set(key, name);
      }
    }
    expect(crossShared).toBe(0);
    // Every version, image and unique page of the four is distinct: 42168 (fedora 13)
    // + 27744 (ubuntu) + 22024 (debian) + 74662 (windows) of them.
    expect(owner.size).toBe(42_168 + 27_744 + 22_024 + 74_662);
  });

  it('a Windows-like guest writes its whole free region as zero pages; a Linux guest leaves its free region untouched', () => {
    const win = shipped('windows-2008.yaml');
    const lw = layoutGuest(win, 512 * MiB);
    expect(countPageKinds(win, lw).find((r) => r.name === 'free')).toEqual({ name: 'free', pages: 45_737, kinds: { image: 0, zero: 45_737, version: 0, unique: 0, untouched: 0 } });
    const fed = shipped('fedora-13.yaml');
    expect(countPageKinds(fed, layoutGuest(fed, 512 * MiB)).find((r) => r.name === 'free')).toEqual({
      name: 'free',
      pages: 82_639,
      kinds: { image: 0, zero: 0, version: 0, unique: 0, untouched: 82_639 },
    });
  });
});

describe('dirtyPage', () => {
  it('is never all-zero and differs for every counter', () => {
    const out = new Uint32Array(1024);
    const keys = new Set<number>();
    let zero = 0;
    for (let c = 0; c < 10_000; c++) {
      dirtyPage(42, c, out);
      if (isZero(out)) zero++;
      keys.add(pageKey(out));
    }
    expect([zero, keys.size]).toEqual([0, 10_000]);
  });

  it('depends on the seed, and is the same for the same seed and counter', () => {
    const a = new Uint32Array(1024);
    const b = new Uint32Array(1024);
    dirtyPage(1, 5, a);
    dirtyPage(1, 5, b);
    expect(Array.from(a)).toEqual(Array.from(b));
    dirtyPage(2, 5, b);
    expect(pageKey(a)).not.toBe(pageKey(b));
    // Counters past 2^32 still differ.
    dirtyPage(1, 2 ** 32 + 5, b);
    expect(pageKey(a)).not.toBe(pageKey(b));
  });

  it('never equals a page a guest boots with', () => {
    const layout = layoutGuest(tiny, 16 * MiB);
    const boot = guestPages(tiny, layout, 3);
    const out = new Uint32Array(1024);
    let equal = 0;
    for (let c = 0; c < 4096; c++) {
      dirtyPage(3, c, out);
      if (boot.has(pageKey(out))) equal++;
    }
    expect(equal).toBe(0);
  });
});

describe('dirtyTarget', () => {
  it('hits only the target regions, with their weights, over the whole of each', () => {
    const layout = layoutGuest(tiny, 16 * MiB);
    const prng = new Prng(11);
    const hits = new Map<string, number>();
    let lowest = Infinity;
    let highest = -1;
    const n = 100_000;
    for (let i = 0; i < n; i++) {
      const gfn = dirtyTarget(tiny, layout, prng.nextU32(), prng.nextU32());
      const region = layout.regions.find((r) => gfn >= r.start && gfn < r.start + r.pages)!;
      hits.set(region.name, (hits.get(region.name) ?? 0) + 1);
      if (region.name === 'heap') {
        lowest = Math.min(lowest, gfn);
        highest = Math.max(highest, gfn);
      }
    }
    expect([...hits.keys()].sort()).toEqual(['cache', 'heap']);
    expect(hits.get('heap')! / n).toBeCloseTo(0.75, 2);
    expect(hits.get('cache')! / n).toBeCloseTo(0.25, 2);
    expect([lowest, highest]).toEqual([2048, 3071]);
  });

  it('maps the extreme draws to the first and last page of the chosen region', () => {
    const layout = layoutGuest(tiny, 16 * MiB);
    expect(dirtyTarget(tiny, layout, 0, 0)).toBe(2048);
    expect(dirtyTarget(tiny, layout, 0, 0xffffffff)).toBe(3071);
    expect(dirtyTarget(tiny, layout, 0xffffffff, 0)).toBe(1024);
    expect(dirtyTarget(tiny, layout, 0xffffffff, 0xffffffff)).toBe(2047);
  });

  it('passes the share of an empty target region to the next one', () => {
    const im = parseImage(TINY.replace('min_ram: 16MiB', 'min_ram: 12MiB').replace('size: 4MiB', 'size: 5MiB').replace('{ heap: 0.75, cache: 0.25 }', '{ free: 0.5, cache: 0.5 }'), 'tiny-1.yaml');
    const layout = layoutGuest(im, 12 * MiB);
    expect(dirtyTarget(im, layout, 0, 0)).toBe(1280);
    expect(dirtyTarget(im, layout, 0xffffffff, 0)).toBe(1280);
  });
});

describe('ImageCatalog', () => {
  const tiny2 = parseImage(fixtureText('tiny-2.json'), 'tiny-2.json');
  const f12 = shipped('fedora-12.yaml');
  const f13 = shipped('fedora-13.yaml');

  it('lists images by name, then version', () => {
    const cat = new ImageCatalog([tiny2, f13, tiny, f12]);
    expect(cat.list().map((i) => `${i.name} ${i.version}`)).toEqual(['fedora 12', 'fedora 13', 'tiny 1', 'tiny 2']);
  });

  it('gets the newest version when none is named, or the one named', () => {
    const cat = new ImageCatalog([f13, f12]);
    expect(cat.get('fedora').version).toBe('13');
    expect(cat.get('fedora', '12')).toBe(f12);
  });

  it('names the known images when asked for an unknown one', () => {
    const cat = new ImageCatalog([f13, f12, tiny]);
    expect(errorMessage(() => cat.get('gentoo'))).toBe('no image named "gentoo"; known images: fedora 12, fedora 13, tiny 1');
    expect(errorMessage(() => cat.get('fedora', '14'))).toBe('no image fedora 14; known images: fedora 12, fedora 13, tiny 1');
  });

  it('refuses two descriptions of one image and version, naming both files', () => {
    expect(errorMessage(() => new ImageCatalog([tiny, parseImage(TINY, 'copy.yaml')]))).toBe('image tiny 1 is described twice: in tiny-1.yaml and in copy.yaml');
  });

  it('compares versions numerically, part by part', () => {
    expect(['12', '10.10', '9', '10.04', '10', '10.4.1'].sort(compareVersions)).toEqual(['9', '10', '10.04', '10.4.1', '10.10', '12']);
  });
});
