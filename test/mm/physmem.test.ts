/**
 * PhysMem: the frame allocator, the zero page, page references, contents and the
 * LRU lists (src/mm/physmem.ts).
 *
 * Most cases use 1 MiB of RAM in 1 MiB blocks: 256 frames, pfn 0 the zero page,
 * 255 frames free after boot.
 */
import { describe, expect, it } from 'vitest';
import { InvariantError } from '../../src/lib/errors.js';
import {
  PAGE_SIZE,
  PG_ACTIVE,
  PG_ANON,
  PG_BUDDY,
  PG_LRU,
  PG_OFFLINE,
  PG_RESERVED,
  PG_UNEVICTABLE,
} from '../../src/mm/constants.js';
import { LRU_ACTIVE_ANON, LRU_INACTIVE_ANON, LRU_UNEVICTABLE, PhysMem } from '../../src/mm/physmem.js';
import { HostKernel } from '../../src/mm/kernel.js';
import { expectErr } from './helpers.js';

function mem1(): PhysMem {
  return new PhysMem({ memoryMiB: 1, blockMiB: 1 });
}

/** The pfns on an LRU list, head (most recent) first, walked through lruNext. */
function lruList(mem: PhysMem, list: number): number[] {
  const out: number[] = [];
  for (let p = mem.lruHead[list]!; p >= 0; p = mem.lruNext[p]!) out.push(p);
  return out;
}

/** The same list walked backwards from the tail through lruPrev, reversed. */
function lruListBackwards(mem: PhysMem, list: number): number[] {
  const out: number[] = [];
  for (let p = mem.lruTail[list]!; p >= 0; p = mem.lruPrev[p]!) out.push(p);
  return out.reverse();
}

function fillPage(mem: PhysMem, pfn: number, byte: number): void {
  mem.fillBytes(pfn, 0, byte, PAGE_SIZE);
}

function pageBytes(mem: PhysMem, pfn: number): Buffer {
  return mem.readPage(pfn);
}

function pokeByte(mem: PhysMem, pfn: number, off: number, byte: number): void {
  mem.writeBytes(pfn, off, Buffer.from([byte]), 0, 1);
}

describe('PhysMem geometry', () => {
  it('1 MiB in 1 MiB blocks: 256 frames in one block of 256 pages, 255 free (pfn 0 is the zero page)', () => {
    const mem = mem1();
    expect(mem.nrFrames).toBe(256);
    expect(mem.blockPages).toBe(256);
    expect(mem.blockShift).toBe(8);
    expect(mem.blocks.length).toBe(1);
    expect(mem.nrFreeOnline).toBe(255);
    expect(mem.onlineFrames()).toBe(256);
  });

  it('4 MiB in 1 MiB blocks: 4 blocks starting at pfns 0, 256, 512, 768; pfn 700 lies in block 2', () => {
    const mem = new PhysMem({ memoryMiB: 4, blockMiB: 1 });
    expect(mem.blocks.map((b) => b.startPfn)).toEqual([0, 256, 512, 768]);
    expect(mem.blockOf(700).index).toBe(2);
    expect(mem.nrFreeOnline).toBe(1023);
  });

  it.each([
    ['blockMiB 3 (not a power of two)', { memoryMiB: 6, blockMiB: 3 }],
    ['blockMiB 0', { memoryMiB: 4, blockMiB: 0 }],
    ['blockMiB -2', { memoryMiB: 4, blockMiB: -2 }],
    ['blockMiB 1.5', { memoryMiB: 3, blockMiB: 1.5 }],
    ['memoryMiB 0', { memoryMiB: 0, blockMiB: 1 }],
    ['memoryMiB -4', { memoryMiB: -4, blockMiB: 1 }],
    ['blockMiB 4096 (beyond Linux\'s largest block, 2 GiB)', { memoryMiB: 4096, blockMiB: 4096 }],
    ['memoryMiB 2.5', { memoryMiB: 2.5, blockMiB: 1 }],
    ['memoryMiB NaN', { memoryMiB: Number.NaN, blockMiB: 1 }],
    ['memoryMiB 8 TiB (beyond the 2^30 frames a pte addresses)', { memoryMiB: 8 * 1024 * 1024, blockMiB: 1024 }],
  ])('bad options are EINVAL: %s', (_what, opts) => {
    const e = expectErr(() => new PhysMem(opts), 'EINVAL');
    expect(e.errno).toBe(22);
  });
});

describe('partial memory blocks', () => {
  it('memoryMiB 3 with blockMiB 2: a full block and a partial one of 1 MiB', () => {
    const mem = new PhysMem({ memoryMiB: 3, blockMiB: 2 });
    expect(mem.nrFrames).toBe(768);
    expect(mem.blocks.map((b) => [b.startPfn, mem.framesIn(b)])).toEqual([
      [0, 512],
      [512, 256],
    ]);
    expect(mem.nrFreeOnline).toBe(767);
  });

  it('32 MiB with the default 128 MiB blocks is one partial block, as Linux has', () => {
    const k = new HostKernel({ memoryMiB: 32 });
    expect(k.mem.blocks.map((b) => [b.startPfn, k.mem.framesIn(b)])).toEqual([[0, 8192]]);
    expect(k.sysfs.read('/sys/devices/system/memory/block_size_bytes')).toBe('8000000\n');
    const p = k.spawn('t');
    const a = p.mmap(8 * 4096);
    p.write(a, Uint8Array.of(1, 2, 3));
    expect([...p.read(a, 3)]).toEqual([1, 2, 3]);
    k.checkInvariants();
  });

  it('a 2 GiB block (Linux\'s largest) is accepted, with a partial block after it; 4 GiB is refused', () => {
    const mem = new PhysMem({ memoryMiB: 2048 + 4, blockMiB: 2048 });
    expect(mem.blocks.map((b) => [b.startPfn, mem.framesIn(b)])).toEqual([
      [0, 524288],
      [524288, 1024],
    ]);
    expect(() => new PhysMem({ memoryMiB: 8192, blockMiB: 4096 })).toThrow(/blockMiB must be a power of two up to 2048, got 4096/);
  });
});

describe('zero page', () => {
  it('pfn 0 is reserved with one reference forever and no mapping', () => {
    const mem = mem1();
    expect(mem.zeroPfn).toBe(0);
    expect(mem.flags[0]).toBe(PG_RESERVED);
    expect(mem.count[0]).toBe(1);
    expect(mem.mapcount[0]).toBe(-1);
    expect(mem.mappingOf(0)).toBe(null);
    expect(pageBytes(mem, 0).every((b) => b === 0)).toBe(true);
  });

  it('allocating every frame never hands out pfn 0', () => {
    const mem = mem1();
    const got: number[] = [];
    for (let pfn = mem.allocFrame(false); pfn >= 0; pfn = mem.allocFrame(false)) got.push(pfn);
    expect(got.length).toBe(255);
    expect(got.includes(0)).toBe(false);
  });

  it('freeing the zero page is an InvariantError (PG_RESERVED)', () => {
    const mem = mem1();
    mem.count[0] = 0; // as if someone dropped its reference
    expect(() => mem.freeFrame(0)).toThrow(InvariantError);
  });
});

describe('allocator', () => {
  it('hands out ascending pfns 1, 2, 3 with count 1, mapcount -1 and flags 0', () => {
    const mem = mem1();
    const a = mem.allocFrame(true);
    const b = mem.allocFrame(true);
    const c = mem.allocFrame(false);
    expect([a, b, c]).toEqual([1, 2, 3]);
    for (const pfn of [a, b, c]) {
      expect(mem.count[pfn]).toBe(1);
      expect(mem.mapcount[pfn]).toBe(-1);
      expect(mem.flags[pfn]).toBe(0);
    }
    expect(mem.nrFreeOnline).toBe(252);
  });

  it('returns -1 (ENOMEM for the caller to report) once all 255 frames are taken, and keeps nrFreeOnline at 0', () => {
    const mem = mem1();
    for (let i = 0; i < 255; i++) expect(mem.allocFrame(false)).toBe(i + 1);
    expect(mem.nrFreeOnline).toBe(0);
    expect(mem.allocFrame(true)).toBe(-1);
    expect(mem.allocFrame(false)).toBe(-1);
    expect(mem.nrFreeOnline).toBe(0);
  });

  it('a freed frame is free again (PG_BUDDY, count 0) and is the next one handed out', () => {
    const mem = mem1();
    for (let i = 0; i < 10; i++) mem.allocFrame(false);
    mem.putPage(5);
    expect(mem.flags[5]).toBe(PG_BUDDY);
    expect(mem.count[5]).toBe(0);
    expect(mem.nrFreeOnline).toBe(246);
    expect(mem.allocFrame(false)).toBe(5);
    expect(mem.allocFrame(false)).toBe(11);
  });

  it('after exhaustion, freeing one frame makes exactly that one allocatable', () => {
    const mem = mem1();
    while (mem.allocFrame(false) >= 0);
    mem.putPage(200);
    expect(mem.nrFreeOnline).toBe(1);
    expect(mem.allocFrame(false)).toBe(200);
    expect(mem.allocFrame(false)).toBe(-1);
  });

  it('freeing resets mapping, index and private (the keyhole get_ksm_page relies on)', () => {
    const mem = mem1();
    const pfn = mem.allocFrame(false);
    const owner = {};
    mem.flags[pfn] = PG_ANON;
    mem.setMapping(pfn, owner);
    mem.index[pfn] = 1234;
    mem.private[pfn] = 7;
    mem.putPage(pfn);
    expect(mem.flags[pfn]).toBe(PG_BUDDY);
    expect(mem.mappingOf(pfn)).toBe(null);
    expect(mem.index[pfn]).toBe(0);
    expect(mem.private[pfn]).toBe(0);
  });

  it('freeing a frame gives its content back to the store; both allocators hand out zeros', () => {
    const mem = mem1();
    const pfn = mem.allocFrame(false);
    pokeByte(mem, pfn, 5, 0x5a);
    expect(mem.store.nrStored).toBe(1);
    mem.putPage(pfn);
    expect(mem.store.nrStored).toBe(0);
    expect(mem.content[pfn]).toBe(0);
    expect(mem.allocFrame(false)).toBe(pfn);
    expect(pageBytes(mem, pfn).every((b) => b === 0)).toBe(true);
    mem.putPage(pfn);
    expect(mem.allocFrame(true)).toBe(pfn);
    expect(pageBytes(mem, pfn).every((b) => b === 0)).toBe(true);
  });

  it('fills the lowest block first: with 2 blocks of 256, the 256th allocation is pfn 256', () => {
    const mem = new PhysMem({ memoryMiB: 2, blockMiB: 1 });
    let last = -1;
    for (let i = 0; i < 256; i++) last = mem.allocFrame(false);
    expect(last).toBe(256);
    expect(mem.blocks[0]!.nrFree).toBe(0);
    expect(mem.blocks[1]!.nrFree).toBe(255);
  });

  it('an isolated block is skipped by the allocator and not counted in nrFreeOnline', () => {
    const mem = new PhysMem({ memoryMiB: 2, blockMiB: 1 });
    mem.isolateBlock(mem.blocks[0]!);
    expect(mem.nrFreeOnline).toBe(256);
    expect(mem.allocFrame(false)).toBe(256);
    mem.unisolateBlock(mem.blocks[0]!);
    expect(mem.nrFreeOnline).toBe(255 + 255);
    expect(mem.allocFrame(false)).toBe(1);
  });

  it('allocFrameOutside(block 0) takes from block 1', () => {
    const mem = new PhysMem({ memoryMiB: 2, blockMiB: 1 });
    expect(mem.allocFrameOutside(mem.blocks[0]!)).toBe(256);
    expect(mem.allocFrameOutside(mem.blocks[1]!)).toBe(1);
  });

  it('an isolated, all-free block goes offline: its frames PG_BUDDY|PG_OFFLINE', () => {
    const mem = new PhysMem({ memoryMiB: 2, blockMiB: 1 });
    const b1 = mem.blocks[1]!;
    mem.isolateBlock(b1);
    mem.offlineBlock(b1);
    expect(b1.online).toBe(false);
    expect(mem.flags[300]).toBe(PG_BUDDY | PG_OFFLINE);
    expect(mem.onlineFrames()).toBe(256);
    expect(mem.nrFreeOnline).toBe(255);
    mem.onlineBlock(b1);
    expect(mem.nrFreeOnline).toBe(511);
    expect(mem.flags[300]).toBe(PG_BUDDY);
  });

  it('offlining a block with a frame in use is an InvariantError', () => {
    const mem = new PhysMem({ memoryMiB: 2, blockMiB: 1 });
    mem.isolateBlock(mem.blocks[0]!);
    expect(() => mem.offlineBlock(mem.blocks[0]!)).toThrow(InvariantError); // the zero page
  });
});

describe('get_page / put_page', () => {
  it('getPage twice then putPage twice: count 1 → 3 → 1, the frame stays allocated', () => {
    const mem = mem1();
    const pfn = mem.allocFrame(false);
    mem.getPage(pfn);
    mem.getPage(pfn);
    expect(mem.count[pfn]).toBe(3);
    mem.putPage(pfn);
    mem.putPage(pfn);
    expect(mem.count[pfn]).toBe(1);
    expect(mem.flags[pfn]! & PG_BUDDY).toBe(0);
    expect(mem.nrFreeOnline).toBe(254);
  });

  it('the last putPage frees the frame', () => {
    const mem = mem1();
    const pfn = mem.allocFrame(false);
    mem.putPage(pfn);
    expect(mem.count[pfn]).toBe(0);
    expect(mem.flags[pfn]).toBe(PG_BUDDY);
    expect(mem.nrFreeOnline).toBe(255);
  });

  it('putPage on a free frame underflows: InvariantError', () => {
    const mem = mem1();
    expect(() => mem.putPage(42)).toThrow(InvariantError);
  });

  it('getPageUnlessZero fails on a free frame and takes a reference on a used one', () => {
    const mem = mem1();
    expect(mem.getPageUnlessZero(9)).toBe(false);
    expect(mem.count[9]).toBe(0);
    const pfn = mem.allocFrame(false);
    expect(mem.getPageUnlessZero(pfn)).toBe(true);
    expect(mem.count[pfn]).toBe(2);
  });

  it('freeing a frame that is still mapped (mapcount 0) is an InvariantError', () => {
    const mem = mem1();
    const pfn = mem.allocFrame(false);
    mem.mapcount[pfn] = 0;
    expect(() => mem.putPage(pfn)).toThrow(/still mapped/);
  });

  it('freeing a frame with references left is an InvariantError', () => {
    const mem = mem1();
    const pfn = mem.allocFrame(false);
    expect(() => mem.freeFrame(pfn)).toThrow(/count 1/);
  });

  it('pageMapcount is _mapcount + 1', () => {
    const mem = mem1();
    const pfn = mem.allocFrame(false);
    expect(mem.pageMapcount(pfn)).toBe(0);
    mem.mapcount[pfn] = 2;
    expect(mem.pageMapcount(pfn)).toBe(3);
  });
});

describe('page lock', () => {
  it('trylock succeeds once, lock of a locked page is an InvariantError, unlock of an unlocked one too', () => {
    const mem = mem1();
    const pfn = mem.allocFrame(false);
    expect(mem.trylockPage(pfn)).toBe(true);
    expect(mem.trylockPage(pfn)).toBe(false);
    expect(() => mem.lockPage(pfn)).toThrow(InvariantError);
    mem.unlockPage(pfn);
    expect(() => mem.unlockPage(pfn)).toThrow(InvariantError);
  });
});

describe('contents', () => {
  it('comparePages of two zeroed frames is 0', () => {
    const mem = mem1();
    expect(mem.comparePages(mem.allocFrame(true), mem.allocFrame(true))).toBe(0);
  });

  it('comparePages orders by the first differing byte, like memcmp', () => {
    const mem = mem1();
    const a = mem.allocFrame(true);
    const b = mem.allocFrame(true);
    pokeByte(mem, a, 4095, 1);
    expect(mem.comparePages(a, b)).toBe(1);
    expect(mem.comparePages(b, a)).toBe(-1);
    pokeByte(mem, b, 100, 1);
    expect(mem.comparePages(a, b)).toBe(-1);
  });

  it('comparePages does not look past the page: a difference in the next frame does not count', () => {
    const mem = mem1();
    const a = mem.allocFrame(true); // 1
    const b = mem.allocFrame(true); // 2
    const c = mem.allocFrame(true); // 3, right after b
    fillPage(mem, c, 0xff);
    expect(mem.comparePages(a, b)).toBe(0);
  });

  it('firstDifference is where memcmp stops: the first differing byte, or PAGE_SIZE, for every kind of page pair; lastOrder is memcmp\'s sign', () => {
    const mem = mem1();
    const a = mem.allocFrame(true);
    const b = mem.allocFrame(true);
    let orders = 0;
    const firstDifference = (x: number, y: number): number => {
      const at = mem.firstDifference(x, y);
      expect(mem.lastOrder()).toBe(Math.sign(Buffer.compare(Buffer.from(pageBytes(mem, x)), Buffer.from(pageBytes(mem, y)))));
      orders++;
      return at;
    };
    const naive = (): number => {
      const x = pageBytes(mem, a);
      const y = pageBytes(mem, b);
      for (let i = 0; i < PAGE_SIZE; i++) if (x[i] !== y[i]) return i;
      return PAGE_SIZE;
    };
    const set = (pfn: number, at: number, v: number): void => pokeByte(mem, pfn, at, v);
    expect(firstDifference(a, b)).toBe(PAGE_SIZE); // both zero
    // One byte apart at every offset class: in the first 64 bytes, in the zero runs
    // (either page's run the shorter), both runs equal and a difference after them,
    // and a common non-zero prefix with the difference deep in the page.
    for (const at of [0, 1, 3, 63, 64, 65, 100, 2047, 4092, 4095]) {
      set(a, at, 7);
      expect(firstDifference(a, b)).toBe(at);
      expect(firstDifference(b, a)).toBe(at);
      set(b, at, 7);
      expect(firstDifference(a, b)).toBe(PAGE_SIZE);
      set(b, at, 0);
      set(a, at, 0);
    }
    // Same leading zero run (both non-zero at byte 200), differing later.
    set(a, 200, 1);
    set(b, 200, 1);
    for (const at of [201, 1000, 4095]) {
      set(b, at, 9);
      expect(firstDifference(a, b)).toBe(naive());
      expect(naive()).toBe(at);
      set(b, at, 0);
    }
    // Non-zero from byte 0 in both, differing at byte 3000.
    fillPage(mem, a, 0x5a);
    fillPage(mem, b, 0x5a);
    set(b, 3000, 0x5b);
    expect(firstDifference(a, b)).toBe(3000);
    expect(firstDifference(b, a)).toBe(3000);
    expect(orders).toBe(36);
  });

  it('copyPage copies all 4096 bytes, across blocks, and nothing else', () => {
    const mem = new PhysMem({ memoryMiB: 2, blockMiB: 1 });
    const src = 7;
    const dst = 300;
    const data = Buffer.alloc(PAGE_SIZE);
    for (let i = 0; i < PAGE_SIZE; i++) data[i] = (i * 7) & 0xff;
    mem.writeBytes(src, 0, data, 0, PAGE_SIZE);
    mem.copyPage(dst, src);
    expect(mem.comparePages(dst, src)).toBe(0);
    expect(pageBytes(mem, dst)[4095]).toBe((4095 * 7) & 0xff);
    expect(pageBytes(mem, 301).every((b) => b === 0)).toBe(true);
    expect(pageBytes(mem, 299).every((b) => b === 0)).toBe(true);
  });

  it('copyPage shares the content; a write to either frame then makes its own copy', () => {
    const mem = mem1();
    const a = mem.allocFrame(true);
    const b = mem.allocFrame(true);
    pokeByte(mem, a, 8, 0xef);
    mem.copyPage(b, a);
    expect(mem.content[b]).toBe(mem.content[a]);
    expect(mem.store.refs[mem.content[a]!]).toBe(2);
    pokeByte(mem, b, 9, 0xbe);
    expect(mem.content[b]).not.toBe(mem.content[a]);
    expect(mem.store.nrStored).toBe(2);
    expect(pageBytes(mem, a)[9]).toBe(0);
    expect(pageBytes(mem, b)[8]).toBe(0xef);
    expect(pageBytes(mem, b)[9]).toBe(0xbe);
  });

  it('a whole page of one byte value is a fill: no bytes stored', () => {
    const mem = mem1();
    const a = mem.allocFrame(true);
    mem.writeBytes(a, 0, Buffer.alloc(PAGE_SIZE, 0x33), 0, PAGE_SIZE);
    expect(mem.content[a]).toBe(0x33);
    expect(mem.store.nrStored).toBe(0);
    fillPage(mem, a, 0);
    expect(mem.content[a]).toBe(0);
  });
});

describe('LRU lists', () => {
  function three(mem: PhysMem): [number, number, number] {
    return [mem.allocFrame(false), mem.allocFrame(false), mem.allocFrame(false)];
  }

  it('lruAdd puts pages at the head: adding 1, 2, 3 gives head→tail [3, 2, 1]', () => {
    const mem = mem1();
    const [a, b, c] = three(mem);
    mem.lruAdd(a, LRU_ACTIVE_ANON);
    mem.lruAdd(b, LRU_ACTIVE_ANON);
    mem.lruAdd(c, LRU_ACTIVE_ANON);
    expect(lruList(mem, LRU_ACTIVE_ANON)).toEqual([c, b, a]);
    expect(lruListBackwards(mem, LRU_ACTIVE_ANON)).toEqual([c, b, a]);
    expect(mem.lruHead[LRU_ACTIVE_ANON]).toBe(c);
    expect(mem.lruTail[LRU_ACTIVE_ANON]).toBe(a);
    expect(mem.lruSize[LRU_ACTIVE_ANON]).toBe(3);
    expect(mem.lruSize[LRU_INACTIVE_ANON]).toBe(0);
  });

  it('the list a page is on shows in its flags: active PG_LRU|PG_ACTIVE, inactive PG_LRU, unevictable PG_LRU|PG_UNEVICTABLE', () => {
    const mem = mem1();
    const [a, b, c] = three(mem);
    mem.lruAdd(a, LRU_ACTIVE_ANON);
    mem.lruAdd(b, LRU_INACTIVE_ANON);
    mem.lruAdd(c, LRU_UNEVICTABLE);
    expect(mem.flags[a]).toBe(PG_LRU | PG_ACTIVE);
    expect(mem.flags[b]).toBe(PG_LRU);
    expect(mem.flags[c]).toBe(PG_LRU | PG_UNEVICTABLE);
    expect([mem.lruListOf(a), mem.lruListOf(b), mem.lruListOf(c)]).toEqual([LRU_ACTIVE_ANON, LRU_INACTIVE_ANON, LRU_UNEVICTABLE]);
  });

  it('lruDel of the middle page relinks its neighbours', () => {
    const mem = mem1();
    const [a, b, c] = three(mem);
    for (const p of [a, b, c]) mem.lruAdd(p, LRU_INACTIVE_ANON);
    mem.lruDel(b);
    expect(lruList(mem, LRU_INACTIVE_ANON)).toEqual([c, a]);
    expect(lruListBackwards(mem, LRU_INACTIVE_ANON)).toEqual([c, a]);
    expect(mem.lruSize[LRU_INACTIVE_ANON]).toBe(2);
    expect(mem.flags[b]).toBe(0);
    expect([mem.lruPrev[b], mem.lruNext[b]]).toEqual([-1, -1]);
  });

  it('lruDel of the head and of the tail moves head and tail', () => {
    const mem = mem1();
    const [a, b, c] = three(mem);
    for (const p of [a, b, c]) mem.lruAdd(p, LRU_INACTIVE_ANON);
    mem.lruDel(c);
    expect(mem.lruHead[LRU_INACTIVE_ANON]).toBe(b);
    mem.lruDel(a);
    expect(mem.lruTail[LRU_INACTIVE_ANON]).toBe(b);
    expect(lruList(mem, LRU_INACTIVE_ANON)).toEqual([b]);
    mem.lruDel(b);
    expect([mem.lruHead[LRU_INACTIVE_ANON], mem.lruTail[LRU_INACTIVE_ANON], mem.lruSize[LRU_INACTIVE_ANON]]).toEqual([-1, -1, 0]);
  });

  it('lruMove from the inactive tail to the active head', () => {
    const mem = mem1();
    const [a, b, c] = three(mem);
    for (const p of [a, b, c]) mem.lruAdd(p, LRU_INACTIVE_ANON);
    const d = mem.allocFrame(false);
    mem.lruAdd(d, LRU_ACTIVE_ANON);
    mem.lruMove(a, LRU_ACTIVE_ANON);
    expect(lruList(mem, LRU_INACTIVE_ANON)).toEqual([c, b]);
    expect(lruList(mem, LRU_ACTIVE_ANON)).toEqual([a, d]);
    expect(lruListBackwards(mem, LRU_ACTIVE_ANON)).toEqual([a, d]);
    expect(mem.flags[a]).toBe(PG_LRU | PG_ACTIVE);
    expect([mem.lruSize[0], mem.lruSize[1], mem.lruSize[2]]).toEqual([2, 2, 0]);
  });

  it('lruMove within the same list brings the page to the head', () => {
    const mem = mem1();
    const [a, b, c] = three(mem);
    for (const p of [a, b, c]) mem.lruAdd(p, LRU_UNEVICTABLE);
    mem.lruMove(a, LRU_UNEVICTABLE);
    expect(lruList(mem, LRU_UNEVICTABLE)).toEqual([a, c, b]);
    expect(mem.lruSize[LRU_UNEVICTABLE]).toBe(3);
  });

  it('lruMove of a page on no list just adds it', () => {
    const mem = mem1();
    const a = mem.allocFrame(false);
    mem.lruMove(a, LRU_INACTIVE_ANON);
    expect(lruList(mem, LRU_INACTIVE_ANON)).toEqual([a]);
    expect(mem.flags[a]).toBe(PG_LRU);
  });

  it('adding a page that is already on a list is an InvariantError', () => {
    const mem = mem1();
    const a = mem.allocFrame(false);
    mem.lruAdd(a, LRU_ACTIVE_ANON);
    expect(() => mem.lruAdd(a, LRU_INACTIVE_ANON)).toThrow(InvariantError);
    expect(mem.lruSize[LRU_ACTIVE_ANON]).toBe(1);
    expect(mem.lruSize[LRU_INACTIVE_ANON]).toBe(0);
  });

  it('freeing a page takes it off its list (__page_cache_release)', () => {
    const mem = mem1();
    const [a, b, c] = three(mem);
    for (const p of [a, b, c]) mem.lruAdd(p, LRU_ACTIVE_ANON);
    mem.putPage(b);
    expect(lruList(mem, LRU_ACTIVE_ANON)).toEqual([c, a]);
    expect(mem.lruSize[LRU_ACTIVE_ANON]).toBe(2);
    expect(mem.flags[b]).toBe(PG_BUDDY);
  });
});

describe('describe', () => {
  it('names flags, count and mapcount', () => {
    const mem = mem1();
    expect(mem.describe(0)).toBe('pfn 0 (flags=reserved count=1 mapcount=0)');
    expect(mem.describe(1)).toBe('pfn 1 (flags=buddy count=0 mapcount=0)');
  });
});
