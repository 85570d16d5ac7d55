import { describe, expect, it } from 'vitest';
import { InvariantError } from '../../src/lib/errors.js';
import { Prng } from '../../src/lib/prng.js';
import * as obj from './rbtree-objects.js';
import {
  RB_NIL,
  RbRootIdx,
  rbCheck,
  rbCount,
  rbErase,
  rbFirst,
  rbInitNode,
  rbInsertColor,
  rbLast,
  rbLinkNode,
  rbNext,
  rbPrev,
  rbReplaceNode,
  type RbLinks,
} from '../../src/lib/rbtree-indexed.js';

/** A table of records 1..cap-1 (record 0 is NIL), each with a key. */
class Table implements RbLinks {
  rbParent: Int32Array;
  rbLeft: Int32Array;
  rbRight: Int32Array;
  rbRed: Uint8Array;
  key: Float64Array;
  constructor(readonly cap: number) {
    this.rbParent = new Int32Array(cap);
    this.rbLeft = new Int32Array(cap);
    this.rbRight = new Int32Array(cap);
    this.rbRed = new Uint8Array(cap);
    this.key = new Float64Array(cap);
  }
}

/** The caller's descent, as mm/ksm.c writes it: compare, then link and colour. */
function insert(t: Table, root: RbRootIdx, n: number): boolean {
  let parent = RB_NIL;
  let left = false;
  let cur = root.node;
  while (cur !== RB_NIL) {
    const c = t.key[n]! - t.key[cur]!;
    if (c === 0) return false;
    parent = cur;
    left = c < 0;
    cur = left ? t.rbLeft[cur]! : t.rbRight[cur]!;
  }
  rbLinkNode(t, n, parent, left, root);
  rbInsertColor(t, n, root);
  return true;
}

function keys(t: Table, root: RbRootIdx): number[] {
  const out: number[] = [];
  for (let n = rbFirst(t, root); n !== RB_NIL; n = rbNext(t, n)) out.push(t.key[n]!);
  return out;
}

function keysBackwards(t: Table, root: RbRootIdx): number[] {
  const out: number[] = [];
  for (let n = rbLast(t, root); n !== RB_NIL; n = rbPrev(t, n)) out.push(t.key[n]!);
  return out;
}

function depth(t: Table, root: RbRootIdx): number {
  let max = 0;
  const stack: [number, number][] = [];
  if (root.node !== RB_NIL) stack.push([root.node, 1]);
  while (stack.length > 0) {
    const [n, d] = stack.pop()!;
    if (d > max) max = d;
    if (t.rbLeft[n] !== RB_NIL) stack.push([t.rbLeft[n]!, d + 1]);
    if (t.rbRight[n] !== RB_NIL) stack.push([t.rbRight[n]!, d + 1]);
  }
  return max;
}

/** Record i+1 gets key ks[i]; all inserted in that order. */
function build(ks: number[]): { t: Table; root: RbRootIdx; rec: Map<number, number> } {
  const t = new Table(ks.length + 1);
  const root = new RbRootIdx();
  const rec = new Map<number, number>();
  ks.forEach((k, i) => {
    t.key[i + 1] = k;
    rec.set(k, i + 1);
    insert(t, root, i + 1);
  });
  return { t, root, rec };
}

const cmpOf = (t: Table) => (a: number, b: number): number => t.key[a]! - t.key[b]!;

function lowerBound(arr: number[], key: number): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// The object tree (rbtree-objects.ts), for the differential test: same algorithm, so the same
// operations must give the same shape and colours node for node.
class KeyNode implements obj.RbNode {
  rbParent: obj.RbNode | null = null;
  rbLeft: obj.RbNode | null = null;
  rbRight: obj.RbNode | null = null;
  rbRed = false;
  constructor(readonly key: number) {}
}
function objInsert(root: obj.RbRoot, node: KeyNode): void {
  let parent: obj.RbNode | null = null;
  let left = false;
  let cur = root.node;
  while (cur !== null) {
    parent = cur;
    left = node.key < (cur as KeyNode).key;
    cur = left ? cur.rbLeft : cur.rbRight;
  }
  obj.rbLinkNode(node, parent, left, root);
  obj.rbInsertColor(node, root);
}
/** Pre-order (key, colour) of the object tree and of the indexed tree. */
function objShape(root: obj.RbRoot): string[] {
  const out: string[] = [];
  const stack: (obj.RbNode | null)[] = [root.node];
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (n === null) {
      out.push('-');
      continue;
    }
    out.push(`${(n as KeyNode).key}${n.rbRed ? 'r' : 'b'}`);
    stack.push(n.rbRight, n.rbLeft);
  }
  return out;
}
function idxShape(t: Table, root: RbRootIdx): string[] {
  const out: string[] = [];
  const stack: number[] = [root.node];
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (n === RB_NIL) {
      out.push('-');
      continue;
    }
    out.push(`${t.key[n]}${t.rbRed[n] !== 0 ? 'r' : 'b'}`);
    stack.push(t.rbRight[n]!, t.rbLeft[n]!);
  }
  return out;
}

describe('rbtree-indexed: small cases', () => {
  it('an empty tree has no first, last or nodes, and passes rbCheck', () => {
    const t = new Table(4);
    const root = new RbRootIdx();
    expect(rbFirst(t, root)).toBe(RB_NIL);
    expect(rbLast(t, root)).toBe(RB_NIL);
    expect(rbCount(t, root)).toBe(0);
    expect(() => rbCheck(t, root, t.cap, cmpOf(t))).not.toThrow();
  });

  it('a single node becomes a black root with NIL links', () => {
    const { t, root } = build([5]);
    expect(root.node).toBe(1);
    expect([t.rbParent[1], t.rbLeft[1], t.rbRight[1], t.rbRed[1]]).toEqual([0, 0, 0, 0]);
    expect(rbNext(t, 1)).toBe(RB_NIL);
    expect(rbPrev(t, 1)).toBe(RB_NIL);
  });

  it('inserting 1, 2, 3 in order rotates left: 2 a black root with two red children', () => {
    const { t, root, rec } = build([1, 2, 3]);
    expect(root.node).toBe(rec.get(2));
    expect(t.rbRed[root.node]).toBe(0);
    expect(t.rbLeft[root.node]).toBe(rec.get(1));
    expect(t.rbRight[root.node]).toBe(rec.get(3));
    expect([t.rbRed[rec.get(1)!], t.rbRed[rec.get(3)!]]).toEqual([1, 1]);
    expect(t.rbParent[rec.get(1)!]).toBe(rec.get(2));
  });

  it('inserting 3, 2, 1 in order rotates right to the same shape', () => {
    const { t, root, rec } = build([3, 2, 1]);
    expect(idxShape(t, root)).toEqual(['2b', '1r', '-', '-', '3r', '-', '-']);
    expect(root.node).toBe(rec.get(2));
  });

  it('inner grandchildren double-rotate: 3, 1, 2 and 1, 3, 2', () => {
    for (const ks of [[3, 1, 2], [1, 3, 2]]) {
      const { t, root } = build(ks);
      expect(idxShape(t, root)).toEqual(['2b', '1r', '-', '-', '3r', '-', '-']);
      rbCheck(t, root, t.cap, cmpOf(t));
    }
  });

  it('a red uncle recolours: 4 under 1,2,3 makes 1 and 3 black, 4 red', () => {
    const { t, root } = build([1, 2, 3, 4]);
    expect(idxShape(t, root)).toEqual(['2b', '1b', '-', '-', '3b', '-', '4r', '-', '-']);
  });

  it('walks in key order both ways whatever the insertion order', () => {
    const { t, root } = build([50, 20, 80, 10, 30, 70, 90, 25, 35, 5, 95, 60]);
    const sorted = [5, 10, 20, 25, 30, 35, 50, 60, 70, 80, 90, 95];
    expect(keys(t, root)).toEqual(sorted);
    expect(keysBackwards(t, root)).toEqual([...sorted].reverse());
    expect(rbCount(t, root)).toBe(12);
    rbCheck(t, root, t.cap, cmpOf(t), 'test tree');
  });

  it('erasing a leaf, a one-child node, a two-child node (successor not its right child) and the root', () => {
    const { t, root, rec } = build([50, 20, 80, 10, 30, 70, 90, 25]);
    rbErase(t, rec.get(10)!, root);
    rbCheck(t, root, t.cap, cmpOf(t));
    expect(keys(t, root)).toEqual([20, 25, 30, 50, 70, 80, 90]);
    rbErase(t, rec.get(30)!, root);
    rbCheck(t, root, t.cap, cmpOf(t));
    expect(keys(t, root)).toEqual([20, 25, 50, 70, 80, 90]);
    rbErase(t, rec.get(80)!, root);
    rbCheck(t, root, t.cap, cmpOf(t));
    expect(keys(t, root)).toEqual([20, 25, 50, 70, 90]);
    rbErase(t, root.node, root);
    rbCheck(t, root, t.cap, cmpOf(t));
    expect(rbCount(t, root)).toBe(4);
  });

  it('erasing a two-child node whose successor is deep moves the successor into its place', () => {
    const { t, root, rec } = build([40, 20, 60, 10, 30, 50, 70, 45, 55]);
    const before = idxShape(t, root);
    expect(before[0]).toBe('40b');
    rbErase(t, rec.get(40)!, root);
    // 45, the leftmost of 40's right subtree, now heads the tree in 40's colour.
    expect(root.node).toBe(rec.get(45));
    expect(t.rbRed[rec.get(45)!]).toBe(0);
    expect(keys(t, root)).toEqual([10, 20, 30, 45, 50, 55, 60, 70]);
    rbCheck(t, root, t.cap, cmpOf(t));
  });

  it('rbErase clears the erased node, which can be inserted again', () => {
    const { t, root, rec } = build([1, 2, 3, 4, 5]);
    const n = rec.get(2)!;
    rbErase(t, n, root);
    expect([t.rbParent[n], t.rbLeft[n], t.rbRight[n], t.rbRed[n]]).toEqual([0, 0, 0, 0]);
    expect(insert(t, root, n)).toBe(true);
    expect(keys(t, root)).toEqual([1, 2, 3, 4, 5]);
    rbCheck(t, root, t.cap, cmpOf(t));
  });

  it('erasing the only node leaves an empty tree', () => {
    const { t, root } = build([7]);
    rbErase(t, 1, root);
    expect(root.node).toBe(RB_NIL);
  });

  it('rbInitNode clears links and colour', () => {
    const { t, rec } = build([1, 2, 3]);
    const n = rec.get(1)!;
    rbInitNode(t, n);
    expect([t.rbParent[n], t.rbLeft[n], t.rbRight[n], t.rbRed[n]]).toEqual([0, 0, 0, 0]);
  });

  it('rbReplaceNode puts a record in another\'s place, colour and children, and clears the victim', () => {
    const t = new Table(10);
    const root = new RbRootIdx();
    [20, 10, 30, 5].forEach((k, i) => {
      t.key[i + 1] = k;
      insert(t, root, i + 1);
    });
    // Record 9, key 10 too, replaces record 2 (key 10): it has a left child (5).
    t.key[9] = 10;
    const red2 = t.rbRed[2]!;
    rbReplaceNode(t, 2, 9, root);
    expect([t.rbParent[9], t.rbLeft[9], t.rbRight[9], t.rbRed[9]]).toEqual([1, 4, 0, red2]);
    expect(t.rbLeft[1]).toBe(9);
    expect(t.rbParent[4]).toBe(9);
    expect([t.rbParent[2], t.rbLeft[2], t.rbRight[2], t.rbRed[2]]).toEqual([0, 0, 0, 0]);
    rbCheck(t, root, t.cap, cmpOf(t));
    // ...and the root itself.
    rbReplaceNode(t, 1, 8, root);
    expect(root.node).toBe(8);
    expect([t.rbLeft[8], t.rbRight[8], t.rbRed[8]]).toEqual([9, 3, 0]);
    t.key[8] = 20;
    rbCheck(t, root, t.cap, cmpOf(t));
  });

  it('root.node = RB_NIL resets the tree; old records relink over their stale links', () => {
    const { t, root, rec } = build([1, 2, 3, 4, 5, 6, 7, 8]);
    root.node = RB_NIL;
    expect(rbCount(t, root)).toBe(0);
    for (const k of [8, 3, 5]) insert(t, root, rec.get(k)!);
    expect(keys(t, root)).toEqual([3, 5, 8]);
    rbCheck(t, root, t.cap, cmpOf(t));
  });

  it('100000 ascending keys stay within 2*log2(n+1) depth', () => {
    const n = 100_000;
    const t = new Table(n + 1);
    const root = new RbRootIdx();
    for (let k = 1; k <= n; k++) {
      t.key[k] = k;
      insert(t, root, k);
    }
    rbCheck(t, root, t.cap, cmpOf(t));
    expect(rbCount(t, root)).toBe(n);
    expect(depth(t, root)).toBeLessThanOrEqual(2 * Math.log2(n + 1));
  });
});

describe('rbtree-indexed: against a sorted array, and against the object tree', () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`seed ${seed}: 6000 random inserts and erases match the oracle and the object tree's shape after every op`, () => {
      const rng = new Prng(seed);
      const keySpace = 1500;
      const t = new Table(keySpace + 1);
      const root = new RbRootIdx();
      const oroot = new obj.RbRoot();
      const onodes: KeyNode[] = [];
      for (let k = 0; k < keySpace; k++) {
        t.key[k + 1] = k;
        onodes.push(new KeyNode(k));
      }
      const live = new Uint8Array(keySpace);
      const oracle: number[] = [];
      for (let op = 0; op < 6000; op++) {
        const k = rng.int(0, keySpace);
        if (live[k] === 0 && rng.next() < 0.6) {
          expect(insert(t, root, k + 1)).toBe(true);
          objInsert(oroot, onodes[k]!);
          live[k] = 1;
          oracle.splice(lowerBound(oracle, k), 0, k);
        } else if (live[k] !== 0) {
          rbErase(t, k + 1, root);
          obj.rbErase(onodes[k]!, oroot);
          live[k] = 0;
          oracle.splice(lowerBound(oracle, k), 1);
        }
        rbCheck(t, root, t.cap, cmpOf(t), `seed ${seed} op ${op}`);
        if (op % 50 === 0) {
          expect(keys(t, root)).toEqual(oracle);
          expect(idxShape(t, root)).toEqual(objShape(oroot));
        }
      }
      expect(keys(t, root)).toEqual(oracle);
      expect(keysBackwards(t, root)).toEqual([...oracle].reverse());
      expect(idxShape(t, root)).toEqual(objShape(oroot));
      expect(depth(t, root)).toBeLessThanOrEqual(2 * Math.log2(oracle.length + 1));
    });
  }

  it('erasing 3000 records in random order down to empty keeps every invariant', () => {
    const rng = new Prng(99);
    const n = 3000;
    const order = Array.from({ length: n }, (_, i) => i * 7);
    const shuffle = (a: number[]): void => {
      for (let i = a.length - 1; i > 0; i--) {
        const j = rng.int(0, i + 1);
        [a[i], a[j]] = [a[j]!, a[i]!];
      }
    };
    shuffle(order);
    const { t, root, rec } = build(order);
    const oracle = [...order].sort((x, y) => x - y);
    shuffle(order);
    for (let i = 0; i < n; i++) {
      const k = order[i]!;
      rbErase(t, rec.get(k)!, root);
      oracle.splice(lowerBound(oracle, k), 1);
      rbCheck(t, root, t.cap, cmpOf(t), `erase #${i}`);
      if (i % 100 === 0) expect(keys(t, root)).toEqual(oracle);
    }
    expect(root.node).toBe(RB_NIL);
  });
});

describe('rbtree-indexed: rbCheck catches corruption', () => {
  it('a red root', () => {
    const { t, root } = build([1, 2, 3]);
    t.rbRed[root.node] = 1;
    expect(() => rbCheck(t, root, t.cap, cmpOf(t), 'stable tree')).toThrow(InvariantError);
    expect(() => rbCheck(t, root, t.cap, cmpOf(t), 'stable tree')).toThrow(/stable tree: expected a black root/);
  });

  it('red under red', () => {
    const { t, root, rec } = build([1, 2, 3, 4]);
    t.rbRed[rec.get(3)!] = 1;
    expect(() => rbCheck(t, root, t.cap)).toThrow(/red node with red child/);
  });

  it('unequal black heights', () => {
    const { t, root, rec } = build([1, 2, 3, 4]);
    t.rbRed[rec.get(4)!] = 0;
    expect(() => rbCheck(t, root, t.cap)).toThrow(/unequal black heights/);
  });

  it('a wrong parent link', () => {
    const { t, root, rec } = build([1, 2, 3, 4, 5, 6, 7]);
    t.rbParent[rec.get(1)!] = rec.get(6)!;
    expect(() => rbCheck(t, root, t.cap)).toThrow(/parent pointers inconsistent/);
  });

  it('a record linked twice', () => {
    const { t, root, rec } = build([1, 2, 3]);
    t.rbRight[rec.get(2)!] = rec.get(1)!;
    expect(() => rbCheck(t, root, t.cap)).toThrow(/cycle/);
  });

  it('a link out of the table', () => {
    const { t, root, rec } = build([1, 2, 3]);
    t.rbLeft[rec.get(3)!] = 77;
    expect(() => rbCheck(t, root, t.cap)).toThrow(/record 77, outside 1\.\.3/);
  });

  it('keys out of order, only with a comparison', () => {
    const { t, root, rec } = build([1, 2, 3]);
    const r = root.node;
    t.rbLeft[r] = rec.get(3)!;
    t.rbRight[r] = rec.get(1)!;
    expect(() => rbCheck(t, root, t.cap)).not.toThrow();
    expect(() => rbCheck(t, root, t.cap, cmpOf(t))).toThrow(/in-order sequence not strictly increasing/);
  });
});
