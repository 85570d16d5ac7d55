import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Host, KernelError, PAGE_SIZE, loadImageCatalog, type HostOptions } from '../../src/index.js';
import { countPageKinds, guestPage, layoutGuest } from '../../src/vmm/image.js';
import type { Guest } from '../../src/vmm/guest.js';
import { naiveKsm } from './helpers.js';
import { Ksmtuned } from '../../src/vmm/ksmtuned.js';

const images = loadImageCatalog(new URL('./fixtures', import.meta.url).pathname);
const tiny = images.get('tiny', '1');
const MiB = 1024 * 1024;
const STILL = { dirtyRate: 0, burst: null };

function newHost(opts: Partial<HostOptions> = {}): Host {
  return new Host({
    memoryMiB: 128,
    swapMiB: 64,
    blockMiB: 16,
    seed: 1,
    images,
    ksm: { policy: 'fixed', run: 1, pagesToScan: 1000, sleepMillisecs: 20, maxKernelPages: null },
    ...opts,
  });
}

/** Boot `names` as still (non-dirtying) tiny 1 guests of 16 MiB and let them finish booting. */
function bootStill(host: Host, names: string[], extra: { memMerge?: boolean; mergeDomain?: string } = {}): Guest[] {
  const guests = names.map((name) => {
    const g = host.createGuest({ name, image: 'tiny', version: '1', memoryMiB: 16, workload: STILL, ...extra });
    host.startGuest(name);
    return g;
  });
  host.advance(2000);
  return guests;
}

function digest(bytes: Uint8Array): string {
  return createHash('sha1').update(bytes).digest('hex');
}

/** pages_shared, pages_sharing and pages_unshared, in naiveKsm()'s shape. */
function ksmStats(host: Host): { shared: number; sharing: number; unshared: number } {
  const s = host.sample();
  return { shared: s.pagesShared, sharing: s.pagesSharing, unshared: s.pagesUnshared };
}

/** The sha1 of every page of a guest's RAM, in RAM order. */
function pageDigests(g: Guest): string[] {
  return Array.from({ length: g.ramPages }, (_, p) => digest(g.readPhys(p * PAGE_SIZE, PAGE_SIZE)));
}

describe('Host: guests boot from their image', () => {
  it('a booted guest holds exactly its image’s pages, and untouched pages are never allocated', () => {
    const host = newHost();
    const [g] = bootStill(host, ['a']);
    const layout = layoutGuest(tiny, 16 * MiB);
    const want = new Uint32Array(PAGE_SIZE / 4);
    let written = 0;
    for (let page = 0; page < g!.ramPages; page++) {
      const kind = guestPage(tiny, layout, page, g!.bootSeed, want);
      const present = g!.process!.pfnOf(g!.hvaOf(page * PAGE_SIZE)) !== null;
      expect(present).toBe(kind !== 'untouched');
      if (kind === 'untouched') continue;
      written++;
      expect(Buffer.from(g!.readPhys(page * PAGE_SIZE, PAGE_SIZE)).equals(Buffer.from(want.buffer))).toBe(true);
    }
    // tiny 1 in 16 MiB: 4096 pages, 915 of them untouched free memory.
    expect(written).toBe(3181);
    expect(g!.pagesWritten).toBe(3181);
    expect(host.sample().guests[0]!.residentBytes).toBe(3181 * PAGE_SIZE);
    host.checkInvariants();
  });

  it('boot takes the image’s boot time: booting until the tick that completes it, then running', () => {
    const host = newHost();
    const g = host.createGuest({ name: 'a', image: 'tiny', version: '1', memoryMiB: 16, workload: STILL });
    expect(g.state).toBe('created');
    host.startGuest('a');
    expect(g.state).toBe('booting');
    host.advance(1000);
    expect(g.state).toBe('booting');
    // Half the boot time: half of RAM's pages walked (the 10 ticks at 0..900 ms), and
    // the first half of tiny 1 has no untouched page.
    expect(g.pagesWritten).toBe(2048);
    host.advance(1000);
    expect(g.state).toBe('running');
    expect(host.log.map((e) => `${e.t} ${e.what}`)).toEqual(['0 create a (tiny 1, 16 MiB)', '0 start a', '1900 a booted']);
  });

  it('guest RAM is registered MADV_MERGEABLE with mem-merge on, and not with it off', () => {
    const host = newHost();
    const [on, off] = [
      host.createGuest({ name: 'on', image: 'tiny', version: '1', memoryMiB: 16 }),
      host.createGuest({ name: 'off', image: 'tiny', version: '1', memoryMiB: 16, memMerge: false }),
    ];
    host.startGuest('on');
    host.startGuest('off');
    expect(on.process!.maps().map((m) => m.mergeable)).toEqual([true]);
    expect(off.process!.maps().map((m) => m.mergeable)).toEqual([false]);
    expect(on.process!.name).toBe('qemu:on');
  });

  it('guest ids are 12-character nanoids, distinct, and the same for the same seed', () => {
    const ids = (seed: number): string[] => {
      const host = newHost({ seed });
      return ['a', 'b', 'c'].map((n) => host.createGuest({ name: n, image: 'tiny', version: '1', memoryMiB: 16 }).id);
    };
    const one = ids(1);
    expect(one.every((id) => /^[A-Za-z0-9_-]{12}$/.test(id))).toBe(true);
    expect(new Set(one).size).toBe(3);
    expect(ids(1)).toEqual(one);
    expect(ids(2)).not.toEqual(one);
  });
});

describe('Host: merge domains', () => {
  it('guests merge only within their merge domain: the counts are the naive oracle\'s per domain, summed; a snapshot keeps each guest\'s domain', () => {
    const host = newHost();
    const guests = [...bootStill(host, ['a1', 'a2'], { mergeDomain: 'tenant-a' }), ...bootStill(host, ['b1', 'b2'], { mergeDomain: 'tenant-b' }), ...bootStill(host, ['c1'])];
    expect(guests.map((g) => [g.mergeDomain, g.process!.mergeDomain])).toEqual([
      ['tenant-a', 'tenant-a'],
      ['tenant-a', 'tenant-a'],
      ['tenant-b', 'tenant-b'],
      ['tenant-b', 'tenant-b'],
      ['', ''],
    ]);
    host.kernel.ksmd.runFullScans(3);
    const per = ['tenant-a', 'tenant-b', ''].map((d) => naiveKsm(guests.filter((g) => g.mergeDomain === d)));
    const sum = per.reduce((x, y) => ({ shared: x.shared + y.shared, sharing: x.sharing + y.sharing, unshared: x.unshared + y.unshared }));
    expect(ksmStats(host)).toEqual(sum);
    // tiny 1 (see below): per pair of guests 1326 + 300 + 1 KSM pages; c1 alone merges its own 269 zero pages.
    expect(sum).toEqual({ shared: 2 * (1326 + 300 + 1) + 1, sharing: 2 * (1326 + 300 + 2 * 269 - 1) + 268, unshared: 5 * 1286 + 1326 + 300 });
    host.checkInvariants();
    const b = Host.restore(host.save(), images);
    expect(b.guests.map((g) => g.mergeDomain)).toEqual(['tenant-a', 'tenant-a', 'tenant-b', 'tenant-b', '']);
    b.checkInvariants();
  });

  it('a guest with a bad merge domain is refused (EINVAL) and nothing is created', () => {
    const host = newHost();
    expect(() => host.createGuest({ name: 'x', image: 'tiny', version: '1', memoryMiB: 16, mergeDomain: 'a b' })).toThrow(
      new KernelError('EINVAL', 'guest x: merge domain must be at most 64 of the characters A-Z a-z 0-9 . _ -, got "a b"'),
    );
    expect(host.guests).toEqual([]);
  });
});

describe('Host: KSM merges the guests', () => {
  it('three identical guests converge to the naive count of identical pages', () => {
    const host = newHost();
    const guests = bootStill(host, ['a', 'b', 'c']);
    host.kernel.ksmd.runFullScans(3);
    const s = host.sample();
    const oracle = naiveKsm(guests);
    expect(ksmStats(host)).toEqual(oracle);
    // By kind (tiny 1): 1326 version pages and 300 image pages, each in 3 guests, plus
    // 269 zero pages per guest all on one KSM page; 1286 unique pages per guest.
    expect(oracle).toEqual({ shared: 1326 + 300 + 1, sharing: 2 * 1326 + 2 * 300 + (3 * 269 - 1), unshared: 3 * 1286 });
    expect(s.pagesVolatile).toBe(0);
    expect(s.savedBytes).toBe(4058 * PAGE_SIZE);
    host.checkInvariants();
  });

  it('each guest is credited its share of the saving: merged pages × (mappers − 1) / mappers', () => {
    const host = newHost();
    bootStill(host, ['a', 'b', 'c']);
    host.kernel.ksmd.runFullScans(3);
    const s = host.sample();
    for (const g of s.guests) {
      // 1626 pages on 3-way KSM pages (2/3 each) + 269 on the zero KSM page (806/807 each).
      expect(g.mergedBytes).toBe((1626 + 269) * PAGE_SIZE);
      expect(g.savedBytes).toBe(Math.round((1626 * (2 / 3) + 269 * (806 / 807)) * PAGE_SIZE));
    }
    // Each share is rounded to a byte: 1352.67 pages is 5540522.67 bytes, rounded up, so
    // the three shares come to one byte more than the 4058 pages saved.
    expect(s.savedBytes).toBe(4058 * PAGE_SIZE);
    expect(s.guests.map((g) => g.savedBytes)).toEqual([5_540_523, 5_540_523, 5_540_523]);
    expect(3 * 5_540_523).toBe(s.savedBytes + 1);
  });

  it('a guest with mem-merge off is never merged and counts in no statistic', () => {
    const host = newHost();
    const guests = [...bootStill(host, ['a', 'b']), ...bootStill(host, ['nosharing'], { memMerge: false })];
    host.kernel.ksmd.runFullScans(3);
    expect(host.sample().guests.find((g) => g.name === 'nosharing')!.mergedBytes).toBe(0);
    const oracle = naiveKsm(guests);
    expect(ksmStats(host)).toEqual(oracle);
    expect(oracle).toEqual({ shared: 1627, sharing: 1626 + 2 * 269 - 1, unshared: 2 * 1286 });
  });

  it('two versions of an image share their image pages, not their version pages', () => {
    const host = newHost();
    host.createGuest({ name: 'v1', image: 'tiny', version: '1', memoryMiB: 16, workload: STILL });
    host.createGuest({ name: 'v2', image: 'tiny', version: '2', memoryMiB: 16, workload: STILL });
    host.startGuest('v1');
    host.startGuest('v2');
    host.advance(3000);
    host.kernel.ksmd.runFullScans(3);
    const [v1, v2] = [host.guest('v1'), host.guest('v2')];
    const tiny2 = images.get('tiny', '2');
    const l1 = layoutGuest(tiny, 16 * MiB);
    const l2 = layoutGuest(tiny2, 16 * MiB);
    const scratch = new Uint32Array(PAGE_SIZE / 4);
    let sameFrame = 0;
    let versionPairs = 0;
    for (let page = 0; page < 4096; page++) {
      const k1 = guestPage(tiny, l1, page, 0, scratch);
      const k2 = guestPage(tiny2, l2, page, 0, scratch);
      const f1 = v1.process!.pfnOf(v1.hvaOf(page * PAGE_SIZE));
      const f2 = v2.process!.pfnOf(v2.hvaOf(page * PAGE_SIZE));
      if (k1 === 'image' && k2 === 'image') {
        expect(f1).toBe(f2);
        sameFrame++;
      }
      if (k1 === 'version' && k2 === 'version') {
        expect(f1).not.toBe(f2);
        versionPairs++;
      }
    }
    // The kinds are cut from one hash, image first: tiny 2's image pages (0.2 of the
    // cache) are a subset of tiny 1's (0.3), so every one of them shares a frame.
    const imagePages = (im: typeof tiny, l: typeof l1): number => countPageKinds(im, l).reduce((n, r) => n + r.kinds.image, 0);
    expect([imagePages(tiny, l1), imagePages(tiny2, l2)]).toEqual([300, 196]);
    expect(sameFrame).toBe(196);
    // Every one of tiny 1's 1326 version pages is a version page in tiny 2 too (the
    // kernel regions have the same mix; tiny 1's cache cut [0.3, 0.7) lies inside
    // tiny 2's [0.2, 0.7)), each on a frame of its own.
    expect(versionPairs).toBe(1326);
  });
});

describe('Host: workloads', () => {
  it('a steady writer dirties exactly its rate: 50 pages per simulated second', () => {
    const host = newHost();
    const g = host.createGuest({ name: 'w', image: 'tiny', version: '1', memoryMiB: 16, workload: { dirtyRate: 50, burst: null } });
    host.startGuest('w');
    host.advance(2000);
    const before = g.pagesWritten;
    host.advance(1000);
    expect(g.pagesWritten - before).toBe(50);
    host.advance(10_000);
    expect(g.pagesWritten - before).toBe(550);
  });

  it('an idle guest dirties at its image’s rate (tiny 1: 10 pages/s)', () => {
    const host = newHost();
    const g = host.createGuest({ name: 'idle', image: 'tiny', version: '1', memoryMiB: 16 });
    host.startGuest('idle');
    host.advance(2000);
    const before = g.pagesWritten;
    host.advance(5000);
    expect(g.pagesWritten - before).toBe(50);
  });

  it('a one-off burst adds its pages evenly over its duration', () => {
    const host = newHost();
    const [g] = bootStill(host, ['b']);
    const before = g!.pagesWritten;
    g!.burst(1000, 2000);
    host.advance(1000);
    expect(g!.pagesWritten - before).toBe(500);
    host.advance(5000);
    expect(g!.pagesWritten - before).toBe(1000);
  });

  it('periodic bursts start one period after boot and repeat', () => {
    const host = newHost();
    const g = host.createGuest({ name: 'p', image: 'tiny', version: '1', memoryMiB: 16, workload: { dirtyRate: 0, burst: { everyMs: 3000, pages: 300, overMs: 1000 } } });
    host.startGuest('p');
    host.advance(2000);
    const booted = g.pagesWritten;
    host.advance(2900);
    expect(g.pagesWritten - booted).toBe(0);
    host.advance(1100);
    expect(g.pagesWritten - booted).toBe(300);
    host.advance(3000);
    expect(g.pagesWritten - booted).toBe(600);
  });

  it('dirtied pages get fresh contents: merged pages break out copy-on-write and the others keep theirs', () => {
    const host = newHost();
    const [a, b] = bootStill(host, ['a', 'b']);
    host.kernel.ksmd.runFullScans(3);
    // 1626 two-way KSM pages and the zero page's, with 2 × 269 mappers.
    expect(ksmStats(host)).toEqual({ shared: 1627, sharing: 1626 + 2 * 269 - 1, unshared: 2 * 1286 });
    const pfnsOf = (g: Guest): (number | null)[] => Array.from({ length: g.ramPages }, (_, p) => g.process!.pfnOf(g.hvaOf(p * PAGE_SIZE)));
    const bPfns = pfnsOf(b!);
    // a's merged pages are those on b's frame at the same gfn: 1326 version, 300 image, 269 zero.
    const merged = pfnsOf(a!).map((pfn, p) => pfn !== null && pfn === bPfns[p]);
    expect(merged.filter(Boolean).length).toBe(1326 + 300 + 269);
    const [aBefore, bBefore] = [pageDigests(a!), pageDigests(b!)];
    const written = a!.pagesWritten;
    a!.burst(2000, 0);
    host.advance(100);
    expect(a!.pagesWritten - written).toBe(2000);
    const aAfter = pageDigests(a!);
    const changed = aAfter.flatMap((d, p) => (d === aBefore[p] ? [] : [p]));
    // Every page a rewrote is on a frame of its own; b reads exactly as before.
    const aNow = pfnsOf(a!);
    expect(changed.filter((p) => aNow[p] === bPfns[p])).toEqual([]);
    expect(pageDigests(b!)).toEqual(bBefore);
    // Once ksmd has been round again: each merged page a rewrote has left its KSM page
    // (b still maps it, so pages_shared stays) and is unshared, its contents unique.
    const broke = changed.filter((p) => merged[p]).length;
    // The seeded draws: about 1500 of the 2000 into the heap's 1024 pages and 500 into
    // the cache's 1024 hit 1181 distinct pages (1183 expected), 402 of them merged (zero
    // pages of the heap, version and image pages of the cache: 405 expected).
    expect([changed.length, broke]).toEqual([1181, 402]);
    host.kernel.ksmd.runFullScans(3);
    expect(ksmStats(host)).toEqual({ shared: 1627, sharing: 2163 - broke, unshared: 2572 + broke });
    host.checkInvariants();
  });

  it('a paused guest writes nothing; resumed, it goes on', () => {
    const host = newHost();
    const g = host.createGuest({ name: 'w', image: 'tiny', version: '1', memoryMiB: 16, workload: { dirtyRate: 100, burst: null } });
    host.startGuest('w');
    host.advance(2000);
    g.pause();
    const at = g.pagesWritten;
    host.advance(5000);
    expect(g.pagesWritten).toBe(at);
    g.resume();
    host.advance(1000);
    expect(g.pagesWritten - at).toBe(100);
  });
});

describe('Host: guest life and errors', () => {
  it('stop frees the guest’s RAM; booting again gives new unique pages and the same image pages', () => {
    const host = newHost({ ksm: { policy: 'fixed', run: 0, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: null } });
    const free0 = host.sample().freeBytes;
    const [g] = bootStill(host, ['a']);
    const layout = layoutGuest(tiny, 16 * MiB);
    const scratch = new Uint32Array(PAGE_SIZE / 4);
    const kinds = Array.from({ length: 4096 }, (_, p) => guestPage(tiny, layout, p, 0, scratch));
    const first = kinds.map((_, p) => (kinds[p] === 'untouched' ? null : digest(g!.readPhys(p * PAGE_SIZE, PAGE_SIZE))));
    host.stopGuest('a');
    expect(g!.state).toBe('stopped');
    expect(host.sample().freeBytes).toBe(free0);
    host.startGuest('a');
    host.advance(2000);
    expect(g!.boots).toBe(2);
    for (let p = 0; p < 4096; p++) {
      if (kinds[p] === 'untouched') continue;
      const now = digest(g!.readPhys(p * PAGE_SIZE, PAGE_SIZE));
      if (kinds[p] === 'unique') expect(now).not.toBe(first[p]);
      else expect(now).toBe(first[p]);
    }
    host.checkInvariants();
  });

  it('destroy removes the guest from the host', () => {
    const host = newHost();
    bootStill(host, ['a', 'b']);
    host.destroyGuest('a');
    expect(host.guests.map((g) => g.name)).toEqual(['b']);
    expect(() => host.guest('a')).toThrow(/ENOENT: no guest named a \(guests: b\)/);
    host.checkInvariants();
  });

  it('mistakes are KernelErrors with Linux codes, and change nothing', () => {
    const host = newHost();
    const [g] = bootStill(host, ['a']);
    /** What `fn` throws: a KernelError's code and message. */
    const failure = (fn: () => unknown): [string, string] => {
      try {
        fn();
      } catch (e) {
        if (e instanceof KernelError) return [e.code, e.message];
        throw e;
      }
      throw new Error('expected a KernelError, nothing was thrown');
    };
    expect([
      failure(() => host.createGuest({ name: 'a', image: 'tiny', version: '1', memoryMiB: 16 })),
      failure(() => host.createGuest({ name: 'x', image: 'gentoo', memoryMiB: 16 })),
      failure(() => host.createGuest({ name: 'x', image: 'tiny', version: '1', memoryMiB: 8 })),
      failure(() => host.createGuest({ name: 'bad name', image: 'tiny', version: '1', memoryMiB: 16 })),
      failure(() => g!.resume()),
      failure(() => g!.boot()),
      failure(() => g!.readPhys(16 * MiB, 1)),
      // The last 2 bytes of RAM and 2 beyond: refused whole, nothing written.
      failure(() => g!.writePhys(16 * MiB - 2, new Uint8Array(4))),
      failure(() => host.advance(-1)),
    ]).toEqual([
      ['EEXIST', 'EEXIST: a guest named a already exists'],
      ['ENOENT', 'ENOENT: guest x: no image named "gentoo"; known images: tiny 1, tiny 2'],
      ['EINVAL', 'EINVAL: guest x: image tiny 1 needs at least 16 MiB of RAM, the guest has 8 MiB'],
      ['EINVAL', `EINVAL: guest name "bad name": use letters, digits, '.', '_' and '-'`],
      ['EINVAL', 'EINVAL: guest a: cannot resume a guest that is running (needs paused)'],
      ['EINVAL', 'EINVAL: guest a: cannot boot a guest that is running (needs created or stopped or oom-killed or refused)'],
      ['EFAULT', 'EFAULT: guest a: guest-physical 0x1000000 is not RAM'],
      ['EFAULT', 'EFAULT: guest a: guest-physical 0x1000000 is not RAM'],
      ['EINVAL', 'EINVAL: Host.advance(ms): expected a finite number ≥ 0, found -1'],
    ]);
    expect(host.guests.map((x) => x.name)).toEqual(['a']);
    expect(g!.state).toBe('running');
    host.checkInvariants();
  });

  it('guest RAM above 3 GiB lies in a second slot above the 4 GiB hole', () => {
    const host = newHost();
    const g = host.createGuest({ name: 'big', image: 'tiny', version: '1', memoryMiB: 3 * 1024 + 16, workload: STILL });
    expect(g.slots.map((s) => [s.gpa, s.size, s.firstPage])).toEqual([
      [0, 3 * 1024 * MiB, 0],
      [4 * 1024 * MiB, 16 * MiB, (3 * 1024 * MiB) / PAGE_SIZE],
    ]);
    host.startGuest('big'); // maps the slots; nothing is written until time passes
    g.writePhys(4 * 1024 * MiB + 100, new TextEncoder().encode('above the hole'));
    expect(new TextDecoder().decode(g.readPhys(4 * 1024 * MiB + 100, 14))).toBe('above the hole');
    expect(() => g.readPhys(3 * 1024 * MiB, 1)).toThrow('EFAULT: guest big: guest-physical 0xc0000000 is not RAM');
    // Two mmaps side by side with the same flags: vma_merge() makes them one area.
    expect(g.process!.maps().length).toBe(1);
  });
});

describe('Host: time', () => {
  it('how advance() is split changes nothing: one call, 1 ms steps or uneven steps', () => {
    const run = (steps: number[]): unknown => {
      const host = newHost({ seed: 9 });
      for (const n of ['a', 'b']) {
        host.createGuest({ name: n, image: 'tiny', version: '1', memoryMiB: 16, workload: { dirtyRate: 37, burst: { everyMs: 1500, pages: 77, overMs: 333 } } });
        host.startGuest(n);
      }
      for (const s of steps) host.advance(s);
      return { sample: host.sample(), written: host.guests.map((g) => g.pagesWritten), pfns: host.guests.map((g) => g.process!.pfnOf(g.hvaOf(0))) };
    };
    const whole = run([6000]);
    expect(run(Array.from({ length: 6000 }, () => 1))).toEqual(whole);
    expect(run([33, 967, 1, 2999, 2000])).toEqual(whole);
  });

  it('the same seed gives the same run; another seed other unique pages but the same statistics shape', () => {
    const run = (seed: number): { stats: number[]; page: string } => {
      const host = newHost({ seed });
      bootStill(host, ['a', 'b']);
      host.kernel.ksmd.runFullScans(2);
      const s = host.sample();
      return { stats: [s.pagesShared, s.pagesSharing, s.pagesUnshared], page: digest(host.guest('a').readPhys(3 * 1024 * PAGE_SIZE, PAGE_SIZE * 64)) };
    };
    const one = run(1);
    expect(run(1)).toEqual(one);
    const two = run(2);
    expect(two.stats).toEqual(one.stats);
    expect(two.page).not.toBe(one.page);
  });
});

describe('Host: memory pressure, swap and the OOM killer', () => {
  it('pressure pushes guest pages to swap; after it is released every guest page still holds what the guest wrote', () => {
    const host = newHost({ memoryMiB: 64, swapMiB: 128 });
    const guests = bootStill(host, ['a', 'b']);
    host.kernel.ksmd.runFullScans(2);
    const before = guests.map(pageDigests);
    // 16383 frames (the zero page is reserved) less 2 × 3181 guest pages, 2163 of them merged away.
    expect(host.sample().freeBytes).toBe(12_184 * PAGE_SIZE);
    expect(host.pressure(48 * MiB)).toBe(48 * MiB);
    // 12288 pages wanted, 104 more than were free: reclaim frees SWAP_CLUSTER_MAX (32)
    // frames at a go, so 4 rounds, 128 frames to swap, and 24 left free.
    const s = host.sample();
    expect([s.swapUsedBytes, s.freeBytes]).toEqual([128 * PAGE_SIZE, 24 * PAGE_SIZE]);
    // The 128 are KSM pages: the zero page's (269 ptes in each guest) and 127 two-way
    // ones, so each guest has 269 + 127 ptes that are swap entries.
    expect(s.guests.map((g) => g.swapBytes / PAGE_SIZE)).toEqual([396, 396]);
    host.checkInvariants();
    host.releasePressure();
    expect(guests.map(pageDigests)).toEqual(before);
    host.checkInvariants();
  });

  it('with RAM and swap full, the OOM killer stops the biggest guest and the rest go on', () => {
    const host = newHost({ memoryMiB: 32, swapMiB: 0, ksm: { policy: 'fixed', run: 0, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: null } });
    for (const n of ['a', 'b', 'c']) {
      host.createGuest({ name: n, image: 'tiny', version: '1', memoryMiB: 16, workload: STILL });
      host.startGuest(n);
    }
    host.advance(3000);
    // 8191 free frames. Each 100 ms tick a, b then c walk 205 more pages of their
    // 4096 (none untouched before 3072): after the tick at 1200 they hold 2662 each
    // (7986 frames); at 1300 a reaches 2867 and takes the last frame, b's next write
    // finds none, and the biggest, a, is killed. b and c then fit: 2 × 3181 pages.
    expect(host.log.filter((e) => e.t > 0).map((e) => `${e.t} ${e.kind} ${e.guest} ${e.what}`)).toEqual([
      '1300 oom-kill a Out of memory: killed qemu:a (guest a, 11.2 MiB resident+swap)',
      '1900 guest b b booted',
      '1900 guest c c booted',
    ]);
    // Killed, not stopped: its own state, which a sample shows too.
    expect(host.guests.map((g) => [g.name, g.state, g.pagesWritten])).toEqual([
      ['a', 'oom-killed', 2867],
      ['b', 'running', 3181],
      ['c', 'running', 3181],
    ]);
    expect(host.sample().freeBytes).toBe((8191 - 2 * 3181) * PAGE_SIZE);
    expect(host.sample().guests.map((g) => g.state)).toEqual(['oom-killed', 'running', 'running']);
    host.checkInvariants();
    // An OOM-killed guest can be started again, like a stopped one.
    host.startGuest('a');
    expect(host.guest('a').state).toBe('booting');
    host.checkInvariants();
  });

  it('a guest whose QEMU cannot map its RAM is refused at start, logged so, and can be tried again', () => {
    const host = newHost();
    // 129 TiB of RAM: more than the 128 TiB of a process's address space.
    host.createGuest({ name: 'huge', image: 'tiny', version: '1', memoryMiB: 129 * 1024 * 1024, workload: STILL });
    expect(() => host.startGuest('huge')).toThrow(KernelError);
    const refusal = "ENOMEM: mmap: no room for 141833778757632 bytes in qemu:huge's address space";
    expect(host.log.at(-1)).toEqual({ t: 0, kind: 'refused', guest: 'huge', what: 'start huge', error: refusal });
    expect(host.guest('huge').state).toBe('refused');
    expect(host.guest('huge').process).toBeNull();
    expect(() => host.startGuest('huge')).toThrow(KernelError);
    expect(host.guest('huge').state).toBe('refused');
    // Starting a guest that is already up fails as an action: it is not refused, it runs on.
    bootStill(host, ['a']);
    expect(() => host.startGuest('a')).toThrow(KernelError);
    expect(host.log.at(-1)!.kind).toBe('action');
    expect(host.guest('a').state).toBe('running');
    host.checkInvariants();
  });

  it('pressure the OOM killer chooses is reported with ENOMEM and holds nothing', () => {
    const host = newHost({ memoryMiB: 32, swapMiB: 0, ksm: { policy: 'fixed', run: 0, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: null } });
    bootStill(host, ['a']);
    // 8191 − 3181 = 5010 free frames: 19 chunks of 256 pages (19 MiB) and 146 pages of
    // the 20th, then no frame and no swap. The pressure process (5010 pages, 19.6 MiB)
    // is bigger than the guest (3181), so it is the one killed.
    expect(host.sample().freeBytes).toBe(5010 * PAGE_SIZE);
    expect(host.pressure(64 * MiB)).toBe(0);
    expect(host.log.slice(-2)).toEqual([
      { t: 2000, kind: 'oom-kill', guest: null, what: 'Out of memory: killed stress-1 (19.6 MiB resident+swap)', error: null },
      { t: 2000, kind: 'action', guest: null, what: 'pressure 64 MiB', error: 'ENOMEM: the OOM killer chose the pressure process after 19 MiB' },
    ]);
    expect(host.sample().freeBytes).toBe(5010 * PAGE_SIZE);
    expect(host.guest('a').state).toBe('running');
    host.checkInvariants();
  });
});

describe('Host: the ksmtuned policy', () => {
  it('adjusts every monitor interval from free and committed memory, writing the knobs', () => {
    const host = newHost({ memoryMiB: 64, swapMiB: 64, ksm: { policy: 'ksmtuned', config: { monitorInterval: 1 }, maxKernelPages: null } });
    const g = host.governor as Ksmtuned;
    // 64 MiB: sleep = 10 × 16 GiB / 64 MiB = 2560 ms; thres = 20% of 65536 kB.
    expect([g.total, g.sleep, g.thres]).toEqual([65536, 2560, 13107]);
    bootStill(host, ['a', 'b']);
    host.advance(1000);
    const decisions = host.log.filter((e) => e.what.startsWith('ksmtuned'));
    // 2 guests of 3181 resident pages commit ~25 MiB + thres 12.8 MiB < 64 MiB, and
    // free memory is above thres: the governor keeps ksmd stopped.
    expect(decisions.map((e) => `${e.t} ${e.what}`)).toEqual(['1000 ksmtuned: stop ksmd', '2000 ksmtuned: stop ksmd']);
    expect(host.kernel.sysfs.read('/sys/kernel/mm/ksm/run')).toBe('0\n');
    // Three more guests commit enough (5 × 12.4 MiB + thres > 64 MiB) that ksmd must run,
    // and leave free memory below thres: boost, from 0 to 300 pages, at 2560 ms.
    bootStill(host, ['c', 'd', 'e']);
    host.advance(1000);
    // They boot over [3000, 5000): at 4000 half booted, still stop; at 5000 all booted.
    expect(host.log.filter((e) => e.what.startsWith('ksmtuned')).map((e) => `${e.t} ${e.what}`)).toEqual([
      '1000 ksmtuned: stop ksmd',
      '2000 ksmtuned: stop ksmd',
      '3000 ksmtuned: stop ksmd',
      '4000 ksmtuned: stop ksmd',
      '5000 ksmtuned: boost, pages_to_scan 300, sleep_millisecs 2560',
    ]);
    expect(host.kernel.sysfs.read('/sys/kernel/mm/ksm/run')).toBe('1\n');
    expect(host.kernel.sysfs.read('/sys/kernel/mm/ksm/sleep_millisecs')).toBe('2560\n');
  });
});

describe('Host: images', () => {
  it('countPageKinds agrees with what boot writes', () => {
    const layout = layoutGuest(tiny, 16 * MiB);
    const kinds = countPageKinds(tiny, layout);
    const untouched = kinds.reduce((a, r) => a + r.kinds.untouched, 0);
    expect(4096 - untouched).toBe(3181);
  });
});

describe('Host: a refused request changes nothing', () => {
  const knobs = (host: Host): string[] =>
    ['run', 'pages_to_scan', 'sleep_millisecs', 'max_kernel_pages'].map((f) => host.kernel.sysfs.read(`/sys/kernel/mm/ksm/${f}`));

  it('setKnobs with one bad value writes none of them', () => {
    const host = newHost();
    const before = knobs(host);
    expect(before).toEqual(['1\n', '1000\n', '20\n', '8192\n']);
    expect(() => host.setKnobs({ maxKernelPages: 5, sleepMillisecs: 7, pagesToScan: 5e9 })).toThrow(/^EINVAL: /);
    expect(knobs(host)).toEqual(before);
  });

  it('a refused guest does not move the id sequence: the next guest gets the id it would have had', () => {
    const ids = (refuseFirst: boolean): string => {
      const host = newHost();
      if (refuseFirst) expect(() => host.createGuest({ name: 'x', image: 'tiny', version: '1', memoryMiB: 8 })).toThrow(/EINVAL/);
      return host.createGuest({ name: 'a', image: 'tiny', version: '1', memoryMiB: 16 }).id;
    };
    expect(ids(true)).toBe(ids(false));
  });

  it('a workload whose bursts repeat every 0 ms is refused (it would never let time move)', () => {
    const host = newHost();
    const zero = { dirtyRate: 0, burst: { everyMs: 0, pages: 10, overMs: 0 } };
    expect(() => host.createGuest({ name: 'a', image: 'tiny', version: '1', memoryMiB: 16, workload: zero })).toThrow(
      'EINVAL: guest a: bursts must repeat after more than 0 ms, got 0',
    );
    const [g] = bootStill(host, ['b']);
    expect(() => g!.setWorkload(zero)).toThrow('EINVAL: guest b: bursts must repeat after more than 0 ms, got 0');
    expect(() => g!.setWorkload({ dirtyRate: -1, burst: null })).toThrow('EINVAL: guest b: dirty rate (pages per second): expected a number from 0 to 10000000, found -1');
    expect(g!.workload).toEqual(STILL);
  });

  it('small pressure is logged in its own unit: 4 KiB', () => {
    const host = newHost();
    expect(host.pressure(4096)).toBe(4096);
    expect(host.log.at(-1)).toEqual({ t: 0, kind: 'action', guest: null, what: 'pressure 4 KiB', error: null });
  });
});

describe('Host: changing a workload while the guest runs', () => {
  it('a periodic burst added at 3 s starts one period later, at 4 s, and repeats', () => {
    const host = newHost();
    const [g] = bootStill(host, ['a']);
    host.advance(1000);
    const at = g!.pagesWritten;
    g!.setWorkload({ dirtyRate: 0, burst: { everyMs: 1000, pages: 100, overMs: 0 } });
    host.advance(900);
    expect(g!.pagesWritten - at).toBe(0);
    host.advance(200);
    expect(g!.pagesWritten - at).toBe(100);
    host.advance(1000);
    expect(g!.pagesWritten - at).toBe(200);
    g!.setWorkload(STILL);
    host.advance(5000);
    expect(g!.pagesWritten - at).toBe(200);
  });
});
