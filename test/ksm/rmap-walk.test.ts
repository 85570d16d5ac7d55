/**
 * rmap_walk_ksm() with an rmap_walk_control (src/ksm/rmap-walk.ts): the one walk
 * behind page_referenced, try_to_unmap, munlock and migration of a KSM page.
 */
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/index.js';
import { SWAP_AGAIN, SWAP_FAIL, rmapWalk, type RmapWalkControl } from '../../src/mm/rmap.js';
import { RUN, mergeableArea, newKernel } from './helpers.js';

/** A control that records each visit as "owner@page" and stops as told. */
function recorder(stopAfter: number, ret: number = SWAP_AGAIN): RmapWalkControl & { seen: string[] } {
  const seen: string[] = [];
  return {
    seen,
    rmapOne: (_pfn, vma, addr) => {
      seen.push(`${vma.mm.owner}@${(addr - vma.start) / PAGE_SIZE}`);
      return seen.length === stopAfter ? ret : SWAP_AGAIN;
    },
    done: () => ret === SWAP_AGAIN && seen.length === stopAfter,
  };
}

describe('rmap_walk_ksm', () => {
  // A and B each map two pages of the same contents: one KSM page, four rmap_items.
  // C is forked from A afterwards: it maps the KSM page too, with no rmap_item.
  function merged() {
    const k = newKernel();
    const a = k.spawn('a');
    const b = k.spawn('b');
    const addr = mergeableArea(a, 2, 0x61);
    mergeableArea(b, 2, 0x61);
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    a.fork('c');
    return { k, pfn: a.pfnOf(addr)! };
  }

  it("visits each rmap_item's own area first, then areas of forks in a second pass", () => {
    const { k, pfn } = merged();
    const w = recorder(Infinity);
    expect(rmapWalk(k, pfn, w)).toBe(SWAP_AGAIN);
    // hlist order is newest first: B's second page, B's first, A's second, A's first.
    // Then the second pass finds C through A's items' anon_vma.
    expect(w.seen).toEqual(['b@1', 'b@0', 'a@1', 'a@0', 'c@1', 'c@0']);
  });

  it('done() ends the walk after the visit that says so', () => {
    const { k, pfn } = merged();
    const w = recorder(3);
    expect(rmapWalk(k, pfn, w)).toBe(SWAP_AGAIN);
    expect(w.seen).toEqual(['b@1', 'b@0', 'a@1']);
  });

  it('a visit that does not say SWAP_AGAIN ends the walk with its answer', () => {
    const { k, pfn } = merged();
    const w = recorder(5, SWAP_FAIL);
    expect(rmapWalk(k, pfn, w)).toBe(SWAP_FAIL);
    expect(w.seen).toEqual(['b@1', 'b@0', 'a@1', 'a@0', 'c@1']);
  });
});
