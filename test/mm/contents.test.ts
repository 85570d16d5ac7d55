/**
 * The content store (src/mm/contents.ts) and every way a frame's contents change.
 *
 * KSM's checksum memo (per content: store.sum/sumValid) and memcmp memo (keyed by
 * mem.contentsEpoch) are only caches of functions of the bytes, so they are right
 * exactly when every write goes through the store's writers (PhysMem.writeBytes,
 * fillBytes, setContent, copyPage). Each test here writes through one path the model
 * has — a process's write/memset/pokeMem, a COW fault, a swap-in, a migration, a
 * free and a new allocation — and checks what content the frame ends up naming, that
 * the epoch moved, and that the memo, where valid, is the hash of the bytes. KSM's
 * checkInvariants also recomputes memoized checksums, which catches a path missing here.
 */
import { describe, expect, it } from 'vitest';
import { Kernel, PAGE_SIZE } from '../../src/index.js';
import { JHASH2_PAGE_CHECKSUM, pageChecksum } from '../../src/lib/jhash.js';
import { XXHASH_PAGE_CHECKSUM } from '../../src/lib/xxhash.js';
import { saveKernel } from '../../src/ksm/kernel.js';
import { PG_SWAPCACHE } from '../../src/mm/constants.js';
import { CONTENT_SOURCE, CONTENT_STORED, CONTENT_ZERO, ContentStore, LEAD_STRIDE, type PageGenerator } from '../../src/mm/contents.js';
import { pattern } from './helpers.js';

const P = PAGE_SIZE;

function newKernel(): Kernel {
  return new Kernel({ memoryMiB: 64, swapMiB: 16, blockMiB: 16, seed: 1 });
}

/** The checksum of the frame's bytes as they are now, computed afresh. */
function bytesChecksum(k: Kernel, pfn: number): number {
  const v = k.mem.view(pfn);
  return pageChecksum(v.words, v.wordOff);
}

function memoValid(k: Kernel, pfn: number): boolean {
  return k.mem.store.sumValid[k.mem.content[pfn]!] === 1;
}

/** Memoize pfn's checksum (calc_checksum does), and return the epoch now. */
function memoize(k: Kernel, pfn: number): number {
  k.ksmEngine.calcChecksum(pfn);
  expect(memoValid(k, pfn)).toBe(true);
  return k.mem.contentsEpoch;
}

/** After a write: the epoch moved, and calc_checksum (memo or not) gives the hash of the new bytes. */
function expectFresh(k: Kernel, pfn: number, epochBefore: number): void {
  expect(k.mem.contentsEpoch).toBeGreaterThan(epochBefore);
  expect(k.ksmEngine.calcChecksum(pfn)).toBe(bytesChecksum(k, pfn));
}

/** A generator of pages from 4 key words: word i is k0 + i * k1 (k2, k3 mixed into word 0). */
const stepGenerator: PageGenerator = {
  name: 'step',
  keyIsHead: false,
  generate(k0, k1, k2, k3, out, off) {
    for (let i = 0; i < 1024; i++) out[off + i] = (k0 + Math.imul(i, k1)) >>> 0;
    out[off] = (out[off]! ^ k2 ^ Math.imul(k3, 3)) >>> 0;
  },
};

function stepPage(k0: number, k1: number, k2: number, k3: number): Buffer {
  const w = new Uint32Array(1024);
  stepGenerator.generate(k0, k1, k2, k3, w, 0);
  return Buffer.from(w.buffer);
}

describe('every write to a frame leaves it naming the right content, the epoch moved', () => {
  it('write(): one byte written into a page is written in place (its only reference)', () => {
    const k = newKernel();
    const p = k.spawn('writer');
    const addr = p.mmap(2 * P);
    p.write(addr, pattern(1));
    const pfn = p.pfnOf(addr)!;
    const c = k.mem.content[pfn]!;
    expect(k.mem.store.kind[c]).toBe(CONTENT_STORED);
    const epoch = memoize(k, pfn);
    p.write(addr + 100, new Uint8Array([0xee]));
    expect(p.pfnOf(addr)).toBe(pfn);
    expect(k.mem.content[pfn]).toBe(c); // in place
    expect(memoValid(k, pfn)).toBe(false);
    expectFresh(k, pfn, epoch);
  });

  it('write() across a page boundary: both frames leave their fill for stored bytes', () => {
    const k = newKernel();
    const p = k.spawn('writer');
    const addr = p.mmap(2 * P);
    p.memset(addr, 7, 2 * P);
    const [a, b] = [p.pfnOf(addr)!, p.pfnOf(addr + P)!];
    expect([k.mem.content[a], k.mem.content[b]]).toEqual([7, 7]);
    memoize(k, a);
    const epoch = memoize(k, b);
    p.write(addr + P - 2, new Uint8Array([1, 2, 3, 4]));
    expect(k.mem.store.kind[k.mem.content[a]!]).toBe(CONTENT_STORED);
    expect(k.mem.store.kind[k.mem.content[b]!]).toBe(CONTENT_STORED);
    expectFresh(k, a, epoch);
    expectFresh(k, b, epoch);
    expect(Array.from(p.read(addr + P - 3, 6))).toEqual([7, 1, 2, 3, 4, 7]);
  });

  it('memset() of part of a page makes stored bytes; of a whole page, a fill again', () => {
    const k = newKernel();
    const p = k.spawn('writer');
    const addr = p.mmap(P);
    p.memset(addr, 1, P);
    const pfn = p.pfnOf(addr)!;
    const epoch = memoize(k, pfn);
    p.memset(addr + 8, 2, 8);
    expect(k.mem.store.kind[k.mem.content[pfn]!]).toBe(CONTENT_STORED);
    expectFresh(k, pfn, epoch);
    p.memset(addr, 0, P);
    expect(k.mem.content[pfn]).toBe(CONTENT_ZERO);
    expect(k.mem.store.nrStored).toBe(0);
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
    expectFresh(k, pfn, epoch);
    expect(p.read(addr, 2)).toEqual(new Uint8Array([9, 1]));
  });

  it('a COW fault: the copy shares the content (and its memo), then the write gives the copy its own', () => {
    const k = newKernel();
    const parent = k.spawn('parent');
    const addr = parent.mmap(P);
    parent.write(addr, pattern(2));
    const shared = parent.pfnOf(addr)!;
    const c = k.mem.content[shared]!;
    const child = parent.fork('child');
    memoize(k, shared);
    const epoch = k.mem.contentsEpoch;
    child.write(addr, new Uint8Array([0x55]));
    const copy = child.pfnOf(addr)!;
    expect(copy).not.toBe(shared);
    expect(k.mem.content[copy]).not.toBe(c);
    expect(k.mem.content[shared]).toBe(c);
    expect(k.mem.store.refs[c]).toBe(1);
    expectFresh(k, copy, epoch);
    // The parent's content was only read: its memo stands.
    expect(memoValid(k, shared)).toBe(true);
    expect(k.ksmEngine.calcChecksum(shared)).toBe(bytesChecksum(k, shared));
    expect(parent.read(addr, P)).toEqual(pattern(2));
  });

  it("copyPage(): the destination names the source's content, memo and all", () => {
    const k = newKernel();
    const p = k.spawn('writer');
    const addr = p.mmap(2 * P);
    p.write(addr, pattern(3));
    p.write(addr + P, pattern(4));
    const [src, dst] = [p.pfnOf(addr)!, p.pfnOf(addr + P)!];
    const old = k.mem.content[dst]!;
    const epoch = memoize(k, src);
    k.mem.copyPage(dst, src);
    expect(k.mem.contentsEpoch).toBeGreaterThan(epoch);
    expect(k.mem.content[dst]).toBe(k.mem.content[src]);
    expect(k.mem.store.kind[old]).toBe(3); // the old content had no other reference: freed
    expect(memoValid(k, dst)).toBe(true);
    expect(k.mem.comparePages(dst, src)).toBe(0);
  });

  it('swap-out shares the content with the slot; swap-in gives it back to the frame', () => {
    const k = newKernel();
    const p = k.spawn('swapper');
    const addr = p.mmap(P);
    p.write(addr, pattern(5));
    const pfn0 = p.pfnOf(addr)!;
    const c = k.mem.content[pfn0]!;
    const before = bytesChecksum(k, pfn0);
    expect(k.reclaim(64)).toBe(1); // the only anonymous page there is
    expect(p.pfnOf(addr)).toBe(null);
    expect(k.mem.content[pfn0]).toBe(CONTENT_ZERO);
    expect(k.mem.store.refs[c]).toBe(1); // the slot's
    const epoch = k.mem.contentsEpoch;
    p.read(addr, 1);
    const pfn = p.pfnOf(addr)!;
    expect(k.mem.flags[pfn]! & PG_SWAPCACHE).not.toBe(0);
    expect(k.mem.content[pfn]).toBe(c);
    expect(k.mem.store.refs[c]).toBe(2); // the frame's and the slot's
    expectFresh(k, pfn, epoch);
    expect(bytesChecksum(k, pfn)).toBe(before);
    k.checkInvariants();
  });

  it("migration: the new frame names the old one's content", () => {
    const k = newKernel();
    const p = k.spawn('mover');
    const addr = p.mmap(P);
    p.write(addr, pattern(6));
    const old = p.pfnOf(addr)!;
    const c = k.mem.content[old]!;
    const epoch = memoize(k, old);
    const moved = k.migratePage(old);
    expect(p.pfnOf(addr)).toBe(moved);
    expect(k.mem.contentsEpoch).toBeGreaterThan(epoch);
    expect(k.mem.content[moved]).toBe(c);
    expect(k.mem.content[old]).toBe(CONTENT_ZERO);
    expect(k.mem.store.refs[c]).toBe(1);
    expect(memoValid(k, moved)).toBe(true);
  });

  it('freeing a frame gives its bytes back: the store holds nothing, the next allocation is zero', () => {
    const k = newKernel();
    const p = k.spawn('writer');
    const addr = p.mmap(P);
    p.write(addr, pattern(7));
    const pfn = p.pfnOf(addr)!;
    expect(k.mem.store.nrStored).toBe(1);
    p.munmap(addr, P);
    expect(k.mem.store.nrStored).toBe(0);
    expect(k.mem.store.storedBytes).toBe(0);
    const again = k.mem.allocFrame(true);
    expect(again).toBe(pfn); // the free stack hands the frame just freed back first
    expect(bytesChecksum(k, pfn)).toBe(0x31cbe0fa); // jhash2 of a zero page
  });

  it('checkInvariants catches a write that went behind the store', () => {
    const k = newKernel();
    const p = k.spawn('writer');
    const addr = p.mmap(P);
    p.write(addr, pattern(8));
    const pfn = p.pfnOf(addr)!;
    memoize(k, pfn);
    k.checkInvariants();
    const c = k.mem.content[pfn]!;
    k.mem.store.storedBuf(c)[k.mem.store.storedOffset(c) + 17]! ^= 1;
    expect(() => k.checkInvariants()).toThrow(/memoized checksum of content \d+ \(stored\).*a write skipped the store's writers/);
  });

  it('checkInvariants catches a content whose count does not match the frames naming it', () => {
    const k = newKernel();
    const p = k.spawn('writer');
    const addr = p.mmap(P);
    p.write(addr, pattern(9));
    const c = k.mem.content[p.pfnOf(addr)!]!;
    k.mem.store.refs[c]!++;
    expect(() => k.checkInvariants()).toThrow(`content ${c} (stored) has 2 references, 1 frames and swap slots name it`);
  });
});

describe("the checksum memo names its kind (a 6.18 kernel's KSM memoizes xxhash)", () => {
  it("the memo holds the profile's checksum, and the snapshot's content table (jhash2) uses it only when it is jhash2", () => {
    for (const [version, name, page] of [
      ['2.6.33', 'jhash2', JHASH2_PAGE_CHECKSUM.page],
      ['6.18', 'xxhash', XXHASH_PAGE_CHECKSUM.page],
    ] as const) {
      const k = new Kernel({ memoryMiB: 64, swapMiB: 16, blockMiB: 16, seed: 1, version });
      const pfns: number[] = [];
      for (const name of ['a', 'b']) {
        const p = k.spawn(name);
        const at = p.mmap(P);
        p.write(at, pattern(7));
        pfns.push(p.pfnOf(at)!);
      }
      expect(k.mem.content[pfns[0]!]).not.toBe(k.mem.content[pfns[1]!]); // equal bytes, two stored contents
      const sum = k.ksmEngine.calcChecksum(pfns[0]!);
      const v = k.mem.view(pfns[0]!);
      expect([k.mem.store.sumName, sum]).toEqual([name, page(v.words, v.wordOff)]);
      // Had the table taken the xxhash memo for jhash2, the two copies would be two pages.
      expect(saveKernel(k).contents.pages).toBe(2); // the zero page and pattern(7)
    }
  });
});

describe('ContentStore', () => {
  it('SOURCE contents are interned by (generator, key): one content for every frame naming the page', () => {
    const s = new ContentStore();
    const g = s.registerGenerator(stepGenerator);
    const a = s.internSource(g, 1, 2, 3, 4);
    const b = s.internSource(g, 1, 2, 3, 4);
    const c = s.internSource(g, 1, 2, 3, 5);
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    expect(s.refs[a]).toBe(2);
    expect(s.kind[a]).toBe(CONTENT_SOURCE);
    expect(s.storedBytes).toBe(0);
    const v = s.view(a);
    expect(Buffer.from(v.buf.subarray(v.off, v.off + P))).toEqual(stepPage(1, 2, 3, 4));
    s.put(a);
    s.put(a);
    expect(s.kind[a]).toBe(3);
    expect(s.internSource(g, 1, 2, 3, 4)).not.toBe(c); // made again after being freed
  });

  it('compare() is memcmp: same id 0 at once, fills by their byte, bytes otherwise', () => {
    const s = new ContentStore();
    const g = s.registerGenerator(stepGenerator);
    const a = s.internSource(g, 0x100, 1, 0, 0);
    const b = s.internSource(g, 0x100, 2, 0, 0);
    const ref = stepPage(0x100, 1, 0, 0).compare(stepPage(0x100, 2, 0, 0));
    expect(s.compare(a, b)).toBe(ref);
    expect(s.compare(b, a)).toBe(-ref);
    expect(s.compare(a, a)).toBe(0);
    expect(s.compare(3, 200)).toBe(-1);
    expect(s.compare(0, a)).toBe(-1);
    const stored = s.fromBytes(stepPage(0x100, 1, 0, 0), 0);
    expect(s.kind[stored]).toBe(CONTENT_STORED);
    expect(s.compare(stored, a)).toBe(0);
  });

  it('a SOURCE content written becomes a private STORED copy; the others keep the source page', () => {
    const s = new ContentStore();
    const g = s.registerGenerator(stepGenerator);
    const a = s.internSource(g, 9, 9, 9, 9);
    s.get(a);
    const w = s.writable(a);
    expect(w).not.toBe(a);
    expect(s.refs[a]).toBe(1);
    expect(s.kind[w]).toBe(CONTENT_STORED);
    s.storedBuf(w)[s.storedOffset(w)] = 0;
    expect(s.compare(w, a)).not.toBe(0);
  });

  it('slab chunks emptied are given back: 300 stored pages freed leave no bytes held', () => {
    const s = new ContentStore();
    const ids: number[] = [];
    for (let i = 0; i < 300; i++) ids.push(s.fromBytes(Buffer.from(pattern(i + 1)), 0));
    expect(s.storedBytes).toBe(2 * 256 * P);
    for (const id of ids) s.put(id);
    expect(s.storedBytes).toBe(0);
    expect(s.nrStored).toBe(0);
    // And slots come from a chunk again afterwards.
    const again = s.fromBytes(Buffer.from(pattern(1)), 0);
    expect(s.storedBytes).toBe(256 * P);
    expect(s.compare(again, s.fromBytes(Buffer.from(pattern(1)), 0))).toBe(0);
  });

  it('every other stored page freed: the slabs are compacted, the contents moved keep their bytes', () => {
    const s = new ContentStore();
    const ids: number[] = [];
    for (let i = 0; i < 2048; i++) ids.push(s.fromBytes(Buffer.from(pattern(i + 1)), 0));
    expect(s.storedBytes).toBe(2048 * P);
    for (let i = 0; i < 2048; i += 2) s.put(ids[i]!);
    // 1024 pages left: 4 chunks of 256, and at most 2 chunks' worth of holes.
    expect(s.storedBytes).toBeLessThanOrEqual((1024 + 2 * 256) * P);
    expect(s.storedBytes).toBeLessThan(2048 * P);
    for (let i = 1; i < 2048; i += 2) {
      const v = s.view(ids[i]!);
      expect(Buffer.from(v.buf.subarray(v.off, v.off + P)).equals(Buffer.from(pattern(i + 1)))).toBe(true);
    }
  });

  it('a comparison never loses its first page to the second: 3 rounds over 5000 distinct source pages, every neighbour differs', () => {
    const s = new ContentStore();
    const g = s.registerGenerator(stepGenerator);
    const ids: number[] = [];
    for (let i = 0; i < 5000; i++) ids.push(s.internSource(g, 0x1000, 3, i, 0));
    let equal = 0;
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i + 1 < ids.length; i++) {
        if (s.compare(ids[i]!, ids[i + 1]!) === 0) equal++;
        if (s.firstDifference(ids[i]!, ids[i + 1]!) === PAGE_SIZE) equal++;
      }
    }
    expect(equal).toBe(0);
  });

  it("a keyed generator's pages are told apart by their keys: 5000 pages (past the 16 MiB cache) compared twice, none made, every answer memcmp's", () => {
    let made = 0;
    /** Words 0..3 are the key (as the synthetic images' pages), the rest depends on k0 alone. */
    const keyed: PageGenerator = {
      name: 'keyed',
      keyIsHead: true,
      generate(k0, k1, k2, k3, out, off) {
        made++;
        out[off] = k0;
        out[off + 1] = k1;
        out[off + 2] = k2;
        out[off + 3] = k3;
        for (let i = 4; i < 1024; i++) out[off + i] = Math.imul(k0 + i, 0x9e3779b1) >>> 0;
      },
    };
    const bytes = (k: number[]): Buffer => {
      const w = new Uint32Array(1024);
      keyed.generate(k[0]!, k[1]!, k[2]!, k[3]!, w, 0);
      return Buffer.from(w.buffer);
    };
    /** memcmp's stopping offset over real bytes. */
    const firstDiff = (x: Buffer, y: Buffer): number => {
      let i = 0;
      while (i < P && x[i] === y[i]) i++;
      return i;
    };
    const s = new ContentStore();
    const g = s.registerGenerator(keyed);
    const keys: number[][] = [];
    for (let i = 0; i < 5000; i++) keys.push([0x1000 + (i >>> 3), i & 7, i % 3 === 0 ? 0x100 : 0x200, 0]);
    const ids = keys.map((k) => s.internSource(g, k[0]!, k[1]!, k[2]!, k[3]!));
    const want: number[] = [];
    for (let i = 0; i + 1 < ids.length; i++) {
      const x = bytes(keys[i]!);
      const y = bytes(keys[i + 1]!);
      const at = firstDiff(x, y);
      want.push(at, x[at]!, y[at]!);
    }
    made = 0;
    for (let round = 0; round < 2; round++) {
      const got: number[] = [];
      for (let i = 0; i + 1 < ids.length; i++) {
        const at = s.firstDifference(ids[i]!, ids[i + 1]!);
        got.push(at, s.byteAt(ids[i]!, at), s.byteAt(ids[i + 1]!, at));
      }
      expect(got).toEqual(want);
    }
    expect(made).toBe(0);
    // Fills and stored pages against a generated page: their heads are known too.
    // (Page 0 begins 00 10 00 00: its key word 0x1000, little-endian.)
    expect([s.firstDifference(0, ids[0]!), s.byteAt(ids[0]!, 1)]).toEqual([1, 0x10]);
    expect([s.firstDifference(0x10, ids[0]!), s.byteAt(0x10, 0), s.byteAt(ids[0]!, 0)]).toEqual([0, 0x10, 0x00]);
    // A stored copy that differs only past the head: the page is made, the answer exact.
    const original = bytes(keys[7]!);
    const copy = Buffer.from(original);
    copy[2000] = copy[2000]! ^ 0xff;
    const stored = s.fromBytes(copy, 0);
    made = 0;
    expect([s.firstDifference(stored, ids[7]!), s.byteAt(stored, 2000) ^ 0xff, s.byteAt(ids[7]!, 2000)]).toEqual([2000, original[2000], original[2000]]);
    expect(made).toBe(1);
  });

  it('the materialization cache is only a cache: 5000 distinct source pages read in turn all read right', () => {
    const s = new ContentStore();
    const g = s.registerGenerator(stepGenerator);
    const ids: number[] = [];
    for (let i = 0; i < 5000; i++) ids.push(s.internSource(g, i, 7, 0, 0));
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 5000; i += 997) {
        const v = s.view(ids[i]!);
        expect(v.words[v.wordOff + 1]).toBe((i + 7) >>> 0);
      }
    }
  });
});

describe('firstDifference() of pages that differ only in their last words', () => {
  /** A stored page, zero but for `tail` at its end. */
  const zeroBut = (s: ContentStore, tail: number[], at = PAGE_SIZE - tail.length): number => {
    const b = Buffer.alloc(PAGE_SIZE);
    tail.forEach((x, i) => (b[at + i] = x));
    return s.fromBytes(b, 0);
  };

  it('finds the byte within the last words (compared in JS), and equal tails equal', () => {
    const s = new ContentStore();
    const a = zeroBut(s, [0, 0, 0, 1, 7, 0, 0, 0]);
    const b = zeroBut(s, [0, 0, 0, 1, 9, 0, 0, 0]);
    const c = zeroBut(s, [0, 0, 0, 1, 7, 0, 0, 0]);
    expect([s.firstDifference(a, b), s.byteAt(a, 4092), s.byteAt(b, 4092)]).toEqual([4092, 7, 9]);
    expect(s.firstDifference(b, a)).toBe(4092);
    expect(s.firstDifference(a, c)).toBe(PAGE_SIZE);
  });

  it('gives the same answers either side of the 64-word boundary between the JS loop and Buffer.compare', () => {
    const s = new ContentStore();
    // Both pages zero for 1024 - 64 = 960 words, then differing at word 1000 (JS loop).
    const p1 = zeroBut(s, [1, 2, 3, 4], 960 * 4);
    const p2 = Buffer.alloc(PAGE_SIZE);
    p2.set([1, 2, 3, 4], 960 * 4);
    p2[1000 * 4 + 2] = 5;
    const q1 = s.fromBytes(p2, 0);
    expect(s.firstDifference(p1, q1)).toBe(4002);
    // Zero for 959 words, so 65 words are left (Buffer.compare), differing at word 1000.
    const r1 = zeroBut(s, [1], 959 * 4);
    const r2b = Buffer.alloc(PAGE_SIZE);
    r2b[959 * 4] = 1;
    r2b[1000 * 4 + 2] = 5;
    const r2 = s.fromBytes(r2b, 0);
    expect(s.firstDifference(r1, r2)).toBe(4002);
    const r3 = zeroBut(s, [1], 959 * 4);
    expect(s.firstDifference(r1, r3)).toBe(PAGE_SIZE);
  });
});

describe('abbreviated keys (lead[]: the zero run and the three words after it)', () => {
  /** memcmp of two buffers' pages: [first differing byte or PAGE_SIZE, sign]. */
  const memcmp = (x: Buffer, y: Buffer): [number, number] => {
    for (let i = 0; i < PAGE_SIZE; i++) if (x[i] !== y[i]) return [i, x[i]! < y[i]! ? -1 : 1];
    return [PAGE_SIZE, 0];
  };
  /** The key made afresh from the bytes. */
  const keyOf = (b: Buffer): number[] => {
    const w = new Int32Array(b.buffer, b.byteOffset, 1024);
    let z = 0;
    while (z < 1024 && w[z] === 0) z++;
    return [z, z < 1024 ? w[z]! : 0, z + 1 < 1024 ? w[z + 1]! : 0, z + 2 < 1024 ? w[z + 2]! : 0];
  };

  it('stay the bytes\' keys through writes and fills at every distance from them, and every comparison is memcmp', () => {
    // Pages zero up to a run end drawn near the end, the middle or the start, then a
    // few small values (so that keys tie often and the pages must be read past them).
    // Then writes of 1 to 12 bytes, of zeros or small values, around each page's key;
    // after each, every key is checked against its bytes and a page compared with all.
    const s = new ContentStore();
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const shadow: Buffer[] = [];
    const ids: number[] = [];
    for (let i = 0; i < 40; i++) {
      const b = Buffer.alloc(PAGE_SIZE);
      const z = [1024, 1023, 1022, 1021, 1000, 960, 959, 512, 3, 1, 0][rnd(11)]!;
      for (let w = z; w < 1024; w++) if (rnd(3) === 0) b[w * 4 + rnd(4)] = 1 + rnd(2);
      shadow.push(b);
      // Half made whole (fromBytes: key made on first comparison), half written into a
      // zero page (key kept by the writer).
      if (i % 2 === 0) ids.push(s.fromBytes(b, 0));
      else ids.push(s.writeBytes(CONTENT_ZERO, 0, b, 0, PAGE_SIZE - 1));
      if (i % 2 === 1 && b[PAGE_SIZE - 1] !== 0) ids[i] = s.fillBytes(ids[i]!, PAGE_SIZE - 1, b[PAGE_SIZE - 1]!, 1);
    }
    let compared = 0;
    for (let round = 0; round < 400; round++) {
      const i = rnd(ids.length);
      const b = shadow[i]!;
      const key = keyOf(b);
      const w = Math.max(0, Math.min(1023, key[0]! - 2 + rnd(5)));
      const off = Math.min(PAGE_SIZE - 1, w * 4 + rnd(4));
      const len = Math.min(PAGE_SIZE - off, 1 + rnd(12));
      if (rnd(2) === 0) {
        const v = rnd(3);
        b.fill(v, off, off + len);
        ids[i] = s.fillBytes(ids[i]!, off, v, len);
      } else {
        const src = Buffer.alloc(len);
        for (let j = 0; j < len; j++) src[j] = rnd(3);
        src.copy(b, off);
        ids[i] = s.writeBytes(ids[i]!, off, src, 0, len);
      }
      for (let j = 0; j < ids.length; j++) {
        const [at, sign] = memcmp(shadow[i]!, shadow[j]!);
        expect([s.firstDifference(ids[i]!, ids[j]!), s.lastOrder]).toEqual([at, sign]);
        expect(s.compare(ids[j]!, ids[i]!)).toBe(0 - sign);
        compared++;
      }
      for (let j = 0; j < ids.length; j++) {
        const p = ids[j]! * LEAD_STRIDE;
        if (s.lead[p]! >= 0) expect([...s.lead.subarray(p, p + LEAD_STRIDE)]).toEqual(keyOf(shadow[j]!));
      }
    }
    expect(compared).toBe(400 * 40);
  });

  it('a fill\'s key is its byte from word 0 (the zero page: one run of 1024), and fills against stored pages compare as memcmp', () => {
    const s = new ContentStore();
    expect([...s.lead.subarray(0, 4)]).toEqual([1024, 0, 0, 0]);
    expect([s.lead[0xab * LEAD_STRIDE], s.lead[0xab * LEAD_STRIDE + 1]! >>> 0]).toEqual([0, 0xabababab]);
    const b = Buffer.alloc(PAGE_SIZE, 0x10);
    b[9] = 0x11;
    const id = s.fromBytes(b, 0);
    expect([s.firstDifference(0x10, id), s.lastOrder]).toEqual([9, -1]);
    expect([s.firstDifference(id, 0x10), s.lastOrder]).toEqual([9, 1]);
    expect([s.firstDifference(id, 0x11), s.lastOrder]).toEqual([0, -1]);
    expect([s.firstDifference(0, id), s.lastOrder]).toEqual([0, -1]);
  });

  it("a keyed generator's page has its key from its interning (none when its first two words are 0), and compares as memcmp", () => {
    let made = 0;
    const keyed: PageGenerator = {
      name: 'keyed',
      keyIsHead: true,
      generate(k0, k1, k2, k3, out, off) {
        made++;
        out.set([k0, k1, k2, k3], off);
        for (let i = 4; i < 1024; i++) out[off + i] = i < 8 ? 0 : Math.imul(k0 + k3 + i, 0x9e3779b1) >>> 0;
      },
    };
    const s = new ContentStore();
    const g = s.registerGenerator(keyed);
    const keys = [
      [5, 6, 7, 8],
      [5, 6, 7, 9],
      [0, 6, 7, 8],
      [0, 0, 7, 8],
      [0, 0, 7, 0],
      [0, 0, 0, 8],
      [0, 0, 0, 9],
      [0, 0, 0, 0],
    ];
    const ids = keys.map((k) => s.internSource(g, k[0]!, k[1]!, k[2]!, k[3]!));
    const lead = (id: number): number[] => [...s.lead.subarray(id * LEAD_STRIDE, id * LEAD_STRIDE + LEAD_STRIDE)];
    expect(ids.map((id) => lead(id)[0])).toEqual([0, 0, 1, -1, -1, -1, -1, -1]);
    expect([lead(ids[1]!), lead(ids[2]!)]).toEqual([
      [0, 5, 6, 7],
      [1, 6, 7, 8],
    ]);
    expect(made).toBe(0);
    const bytes = keys.map((k) => {
      const w = new Uint32Array(1024);
      keyed.generate(k[0]!, k[1]!, k[2]!, k[3]!, w, 0);
      return Buffer.from(w.buffer);
    });
    made = 0;
    for (let i = 0; i < ids.length; i++) {
      for (let j = 0; j < ids.length; j++) {
        let at = 0;
        while (at < PAGE_SIZE && bytes[i]![at] === bytes[j]![at]) at++;
        const sign = at === PAGE_SIZE ? 0 : bytes[i]![at]! < bytes[j]![at]! ? -1 : 1;
        expect([i, j, s.firstDifference(ids[i]!, ids[j]!), s.lastOrder]).toEqual([i, j, at, sign]);
      }
    }
    // None was made: every pair parts within the four key words.
    expect(made).toBe(0);
    expect(ids.slice(3).map((id) => lead(id)[0])).toEqual([-1, -1, -1, -1, -1]);
    // A stored page agreeing with the zero-keyed one past its key: that page is made
    // (once) and gets its key; it is zero up to word 8.
    const copy = Buffer.from(bytes[7]!);
    copy[50] = copy[50]! ^ 1;
    const stored = s.fromBytes(copy, 0);
    expect([s.firstDifference(stored, ids[7]!), s.firstDifference(ids[7]!, stored)]).toEqual([50, 50]);
    expect(made).toBe(1);
    expect(lead(ids[7]!)).toEqual([8, bytes[7]!.readInt32LE(32), bytes[7]!.readInt32LE(36), bytes[7]!.readInt32LE(40)]);
  });

  it('a write into the words a key holds keeps it right without reading the page again; a write past them leaves it alone', () => {
    const s = new ContentStore();
    const key = (id: number): number[] => [...s.lead.subarray(id * LEAD_STRIDE, id * LEAD_STRIDE + LEAD_STRIDE)];
    // Zero but for word 1022 = 1 and word 1023 = 5 (ksmpages' worst case).
    const tail = Buffer.alloc(8);
    tail.writeUInt32LE(1, 0);
    tail.writeUInt32LE(5, 4);
    const id = s.writeBytes(CONTENT_ZERO, PAGE_SIZE - 8, tail, 0, 8);
    expect(key(id)).toEqual([1022, 1, 5, 0]);
    // Its only reference: written in place, the key follows the write.
    expect(s.fillBytes(id, PAGE_SIZE - 8, 0, 4)).toBe(id);
    expect(key(id)).toEqual([1023, 5, 0, 0]);
    expect(s.fillBytes(id, 40, 7, 1)).toBe(id);
    expect(key(id)).toEqual([10, 7, 0, 0]);
    // Past word 12: the key stays as it was (word 13 is not in it).
    expect(s.fillBytes(id, 52, 9, 4)).toBe(id);
    expect(key(id)).toEqual([10, 7, 0, 0]);
    // Word 12 is: it changes.
    expect(s.fillBytes(id, 48, 3, 1)).toBe(id);
    expect(key(id)).toEqual([10, 7, 0, 3]);
    // writable() (a caller writing by itself) forgets it: the next comparison makes it.
    expect(s.writable(id)).toBe(id);
    expect(s.lead[id * LEAD_STRIDE]).toBe(-1);
    expect(s.firstDifference(id, CONTENT_ZERO)).toBe(40);
    expect(key(id)).toEqual([10, 7, 0, 3]);
  });
});
