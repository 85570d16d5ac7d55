import { describe, expect, it } from 'vitest';
import { InvariantError } from '../../src/lib/errors.js';
import { NODE_UNLINKED, NULL, ObjectTable, RmapItemCache, STABLE_FLAG, STABLE_NODE_CHAIN, StableNodeCache, UNSTABLE_FLAG } from '../../src/ksm/structs.js';

describe('RmapItemCache: rmap_items as numbered records', () => {
  it('numbers records from 1 (0 is NULL), every field 0 but mm and address', () => {
    const c = new RmapItemCache();
    const a = c.alloc(3, 0x7f0000201000);
    const b = c.alloc(4, 0x1000);
    expect([a, b]).toEqual([1, 2]);
    expect([c.count, c.top, c.freeList]).toEqual([2, 3, NULL]);
    expect([c.mm[a], c.addressOf(a), c.flags[a], c.oldchecksum[a], c.anonVma[a], c.rmapList[a], c.head[a], c.age[a], c.remainingSkips[a]]).toEqual([3, 0x7f0000201000, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('keeps a 47-bit page-aligned address as a page number: the top page of TASK_SIZE round-trips', () => {
    const c = new RmapItemCache();
    const top = 0x800000000000 - 4096;
    const r = c.alloc(1, top);
    expect(c.addressOf(r)).toBe(top);
    expect(c.address[r]).toBe(0xffffffff);
    expect(c.addressHigh[r]).toBe(7);
    c.setAddress(r, 0x100000000000); // 2^44: page 2^32
    expect([c.address[r], c.addressHigh[r], c.addressOf(r)]).toEqual([0, 1, 0x100000000000]);
  });

  it('reuses freed records last-freed first, zeroed, with the free list chained through rmapList', () => {
    const c = new RmapItemCache();
    const r = [c.alloc(1, 0x1000), c.alloc(1, 0x2000), c.alloc(1, 0x3000)];
    c.flags[r[1]!] = STABLE_FLAG | 5;
    c.oldchecksum[r[1]!] = 0xdeadbeef;
    c.head[r[1]!] = 9;
    c.free(r[1]!);
    c.free(r[0]!);
    expect([c.freeList, c.rmapList[r[0]!], c.rmapList[r[1]!], c.count]).toEqual([r[0], r[1], NULL, 1]);
    expect([c.flags[r[1]!], c.oldchecksum[r[1]!], c.head[r[1]!], c.mm[r[1]!], c.addressOf(r[1]!)]).toEqual([0, 0, 0, 0, 0]);
    expect(c.alloc(2, 0x5000)).toBe(r[0]);
    const again = c.alloc(2, 0x6000);
    expect(again).toBe(r[1]);
    expect([c.rmapList[again], c.flags[again], c.mm[again], c.addressOf(again)]).toEqual([NULL, 0, 2, 0x6000]);
    expect(c.alloc(2, 0x7000)).toBe(4); // free list empty: the next new record
    expect([c.count, c.top]).toEqual([4, 5]);
  });

  it('grows by doubling when full, keeping every field of every record', () => {
    const c = new RmapItemCache();
    const cap0 = c.capacity;
    expect(cap0).toBe(257); // 256 records and NULL
    for (let i = 1; i < cap0; i++) {
      const r = c.alloc(i & 0xffff, i * 4096);
      c.oldchecksum[r] = i * 7;
      c.rbLeft[r] = i - 1;
    }
    expect(c.capacity).toBe(cap0);
    const before = c.oldchecksum;
    const r = c.alloc(5, 0x9000);
    expect(r).toBe(cap0);
    expect(c.capacity).toBe(2 * cap0);
    expect(c.oldchecksum).not.toBe(before);
    for (let i = 1; i < cap0; i++) {
      expect([c.addressOf(i), c.oldchecksum[i], c.rbLeft[i]]).toEqual([i * 4096, i * 7, i - 1]);
    }
    // The unions still share their arrays after growing.
    expect(c.head).toBe(c.rbParent);
    expect(c.hlistNext).toBe(c.rbLeft);
    expect(c.hlistPrev).toBe(c.rbRight);
    expect(c.nid).toBe(c.anonVma);
  });

  it('union members are one field: head is rbParent, nid is anon_vma; headOf() reads head only under STABLE_FLAG', () => {
    const c = new RmapItemCache();
    const r = c.alloc(1, 0x1000);
    c.rbParent[r] = 7; // an unstable tree's parent link...
    c.flags[r] = UNSTABLE_FLAG;
    expect(c.head[r]).toBe(7); // ...is what head reads
    expect(c.headOf(r)).toBe(NULL);
    c.flags[r] = STABLE_FLAG;
    expect(c.headOf(r)).toBe(7);
    c.nid[r] = 1;
    expect(c.anonVma[r]).toBe(1);
  });

  it('a record is 38 bytes, the sum of its arrays', () => {
    const c = new RmapItemCache();
    const arrays = [c.rmapList, c.anonVma, c.mm, c.address, c.addressHigh, c.flags, c.oldchecksum, c.age, c.remainingSkips, c.rbParent, c.rbLeft, c.rbRight, c.rbRed];
    expect(arrays.reduce((s, a) => s + a.BYTES_PER_ELEMENT, 0)).toBe(38);
    expect(RmapItemCache.RECORD_BYTES).toBe(38);
  });
});

describe('StableNodeCache: stable nodes as numbered records', () => {
  it('allocates an unlinked regular node of a kpfn; a chain has kpfn -1 and a prune time of its own', () => {
    const c = new StableNodeCache();
    const n = c.alloc(1234);
    expect([n, c.kpfn[n], c.linked[n], c.hlist[n], c.rmapHlistLen[n]]).toEqual([1, 1234, NODE_UNLINKED, NULL, 0]);
    const chain = c.alloc(-1);
    c.rmapHlistLen[chain] = STABLE_NODE_CHAIN;
    c.chainPruneTime[chain] = 5000.5;
    expect([c.kpfn[chain], c.chainPruneTime[chain], c.chainPruneTime[n]]).toEqual([-1, 5000.5, 0]);
  });

  it('frees to a list chained through hlist, every field zeroed, and reuses the record', () => {
    const c = new StableNodeCache();
    const a = c.alloc(10);
    const b = c.alloc(11);
    c.rmapHlistLen[b] = 3;
    c.domain[b] = 2;
    c.nid[b] = 1;
    c.free(b);
    expect([c.freeList, c.hlist[b], c.rmapHlistLen[b], c.domain[b], c.nid[b], c.kpfn[b], c.count]).toEqual([b, NULL, 0, 0, 0, 0, 1]);
    expect(c.alloc(12)).toBe(b);
    expect([c.hlist[b], c.kpfn[b]]).toEqual([NULL, 12]);
    expect(a).toBe(1);
  });

  it('grows by doubling; dup and migrate links are the rb links', () => {
    const c = new StableNodeCache();
    for (let i = 1; i <= 256; i++) c.alloc(i);
    expect(c.capacity).toBe(257);
    for (let i = 257; i <= 300; i++) c.alloc(i);
    expect(c.capacity).toBe(514);
    for (let i = 1; i <= 300; i++) expect(c.kpfn[i]).toBe(i);
    expect(c.chain).toBe(c.rbParent);
    expect(c.dupNext).toBe(c.rbLeft);
    expect(c.migrateNext).toBe(c.rbLeft);
    expect(c.dupPrev).toBe(c.rbRight);
    expect(c.migratePrev).toBe(c.rbRight);
    expect(StableNodeCache.RECORD_BYTES).toBe(41);
  });
});

describe('ObjectTable', () => {
  it('numbers objects from 1, reuses freed numbers, and reports a missing one as a bug', () => {
    const t = new ObjectTable<{ name: string }>();
    const a = { name: 'a' };
    const b = { name: 'b' };
    expect([t.add(a), t.add(b), t.size]).toEqual([1, 2, 2]);
    t.remove(1);
    expect(t.size).toBe(1);
    expect(() => t.get(1)).toThrow(InvariantError);
    expect(() => t.get(1)).toThrow(/expected an object numbered 1/);
    const c = { name: 'c' };
    expect(t.add(c)).toBe(1);
    expect(t.get(1)).toBe(c);
    expect(t.get(2)).toBe(b);
  });
});
