import { describe, expect, it } from 'vitest';
import { InvariantError } from '../../src/lib/errors.js';
import { Prng } from '../../src/lib/prng.js';
import {
  RbRoot,
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
  type RbNode,
} from './rbtree-objects.js';

/** A test node: the four tree fields first, as every real node class declares them. */
class KeyNode implements RbNode {
  rbParent: RbNode | null = null;
  rbLeft: RbNode | null = null;
  rbRight: RbNode | null = null;
  rbRed = false;
  constructor(readonly key: number) {}
}

const cmp = (a: RbNode, b: RbNode): number => (a as KeyNode).key - (b as KeyNode).key;

/** The user-written search, as mm/ksm.c does it: descend comparing, then link and colour. */
function insert(root: RbRoot, node: KeyNode): boolean {
  let parent: RbNode | null = null;
  let left = false;
  let cur = root.node;
  while (cur !== null) {
    const c = node.key - (cur as KeyNode).key;
    if (c === 0) return false;
    parent = cur;
    left = c < 0;
    cur = left ? cur.rbLeft : cur.rbRight;
  }
  rbLinkNode(node, parent, left, root);
  rbInsertColor(node, root);
  return true;
}

function keys(root: RbRoot): number[] {
  const out: number[] = [];
  for (let n = rbFirst(root); n !== null; n = rbNext(n)) out.push((n as KeyNode).key);
  return out;
}

function keysBackwards(root: RbRoot): number[] {
  const out: number[] = [];
  for (let n = rbLast(root); n !== null; n = rbPrev(n)) out.push((n as KeyNode).key);
  return out;
}

/** Deepest root-to-node path, in nodes, walked without recursion. */
function depth(root: RbRoot): number {
  let max = 0;
  const stack: [RbNode, number][] = [];
  if (root.node !== null) stack.push([root.node, 1]);
  while (stack.length > 0) {
    const [n, d] = stack.pop()!;
    if (d > max) max = d;
    if (n.rbLeft !== null) stack.push([n.rbLeft, d + 1]);
    if (n.rbRight !== null) stack.push([n.rbRight, d + 1]);
  }
  return max;
}

function build(ks: number[]): { root: RbRoot; nodes: Map<number, KeyNode> } {
  const root = new RbRoot();
  const nodes = new Map<number, KeyNode>();
  for (const k of ks) {
    const n = new KeyNode(k);
    nodes.set(k, n);
    insert(root, n);
  }
  return { root, nodes };
}

/** Index of the first element >= key (the array is sorted). */
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

describe('rbtree: small cases', () => {
  it('an empty tree has no first, last or nodes, and passes rbCheck', () => {
    const root = new RbRoot();
    expect(rbFirst(root)).toBeNull();
    expect(rbLast(root)).toBeNull();
    expect(rbCount(root)).toBe(0);
    expect(() => rbCheck(root, cmp)).not.toThrow();
  });

  it('a single node becomes a black root with no links', () => {
    const { root, nodes } = build([5]);
    const n = nodes.get(5)!;
    expect(root.node).toBe(n);
    expect(n.rbRed).toBe(false);
    expect(n.rbParent).toBeNull();
    expect(rbFirst(root)).toBe(n);
    expect(rbLast(root)).toBe(n);
    expect(rbNext(n)).toBeNull();
    expect(rbPrev(n)).toBeNull();
  });

  it('inserting 1, 2, 3 in order rotates 2 up to a black root with two red children', () => {
    const { root, nodes } = build([1, 2, 3]);
    expect(root.node).toBe(nodes.get(2));
    expect(root.node!.rbRed).toBe(false);
    expect(root.node!.rbLeft).toBe(nodes.get(1));
    expect(root.node!.rbRight).toBe(nodes.get(3));
    expect(nodes.get(1)!.rbRed).toBe(true);
    expect(nodes.get(3)!.rbRed).toBe(true);
    rbCheck(root, cmp);
  });

  it('inserting 3, 1, 2 (inner grandchild) double-rotates 2 up to the root', () => {
    const { root, nodes } = build([3, 1, 2]);
    expect(root.node).toBe(nodes.get(2));
    expect(keys(root)).toEqual([1, 2, 3]);
    rbCheck(root, cmp);
  });

  it('a red uncle is handled by recolouring: 4 under 1,2,3 makes 1 and 3 black', () => {
    const { root, nodes } = build([1, 2, 3, 4]);
    expect(root.node).toBe(nodes.get(2));
    expect(nodes.get(1)!.rbRed).toBe(false);
    expect(nodes.get(3)!.rbRed).toBe(false);
    expect(nodes.get(4)!.rbRed).toBe(true);
    rbCheck(root, cmp);
  });

  it('rbFirst/rbNext and rbLast/rbPrev walk in key order whatever the insertion order', () => {
    const { root } = build([50, 20, 80, 10, 30, 70, 90, 25, 35, 5, 95, 60]);
    const sorted = [5, 10, 20, 25, 30, 35, 50, 60, 70, 80, 90, 95];
    expect(keys(root)).toEqual(sorted);
    expect(keysBackwards(root)).toEqual([...sorted].reverse());
    expect(rbCount(root)).toBe(12);
    rbCheck(root, cmp, 'test tree');
  });

  it('erasing a leaf, a node with one child, a node with two children and the root keeps order', () => {
    const { root, nodes } = build([50, 20, 80, 10, 30, 70, 90, 25]);
    rbErase(nodes.get(10)!, root); // leaf
    rbCheck(root, cmp);
    expect(keys(root)).toEqual([20, 25, 30, 50, 70, 80, 90]);
    rbErase(nodes.get(30)!, root);
    rbCheck(root, cmp);
    expect(keys(root)).toEqual([20, 25, 50, 70, 80, 90]);
    rbErase(nodes.get(80)!, root); // two children
    rbCheck(root, cmp);
    expect(keys(root)).toEqual([20, 25, 50, 70, 90]);
    rbErase(root.node!, root);
    rbCheck(root, cmp);
    expect(rbCount(root)).toBe(4);
  });

  it('rbErase clears the erased node, which can then be inserted again', () => {
    const { root, nodes } = build([1, 2, 3, 4, 5]);
    const n = nodes.get(2)!;
    rbErase(n, root);
    expect([n.rbParent, n.rbLeft, n.rbRight, n.rbRed]).toEqual([null, null, null, false]);
    expect(insert(root, n)).toBe(true);
    expect(keys(root)).toEqual([1, 2, 3, 4, 5]);
    rbCheck(root, cmp);
  });

  it('erasing the only node leaves an empty tree', () => {
    const { root, nodes } = build([7]);
    rbErase(nodes.get(7)!, root);
    expect(root.node).toBeNull();
    expect(rbCount(root)).toBe(0);
  });

  it('rbInitNode clears all four fields', () => {
    const { nodes } = build([1, 2, 3]);
    const n = nodes.get(2)!;
    rbInitNode(n);
    expect([n.rbParent, n.rbLeft, n.rbRight, n.rbRed]).toEqual([null, null, null, false]);
  });

  it('root.node = null resets the tree in one step, and the old nodes can be relinked', () => {
    // mm/ksm.c drops the whole unstable tree at each full scan exactly like this.
    const { root, nodes } = build([1, 2, 3, 4, 5, 6, 7, 8]);
    root.node = null;
    expect(rbCount(root)).toBe(0);
    expect(rbFirst(root)).toBeNull();
    // Nodes still carry stale links; rbLinkNode overwrites them.
    for (const k of [8, 3, 5]) insert(root, nodes.get(k)!);
    expect(keys(root)).toEqual([3, 5, 8]);
    rbCheck(root, cmp);
  });

  it('a tree of 100000 ascending keys stays within 2*log2(n+1) depth', () => {
    const root = new RbRoot();
    const n = 100_000;
    for (let k = 0; k < n; k++) insert(root, new KeyNode(k));
    rbCheck(root, cmp);
    expect(rbCount(root)).toBe(n);
    expect(depth(root)).toBeLessThanOrEqual(2 * Math.log2(n + 1));
  });
});

describe('rbtree: property test against a sorted array', () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`seed ${seed}: 6000 random inserts and erases match the oracle after every op`, () => {
      const rng = new Prng(seed);
      const root = new RbRoot();
      const live = new Map<number, KeyNode>();
      const oracle: number[] = [];
      const keySpace = 1500; // small enough that both inserts of present keys and erases happen
      for (let op = 0; op < 6000; op++) {
        const k = rng.int(0, keySpace);
        const present = live.get(k);
        if (present === undefined && rng.next() < 0.6) {
          const n = new KeyNode(k);
          expect(insert(root, n)).toBe(true);
          live.set(k, n);
          oracle.splice(lowerBound(oracle, k), 0, k);
        } else if (present !== undefined) {
          rbErase(present, root);
          live.delete(k);
          oracle.splice(lowerBound(oracle, k), 1);
        }
        // Every op: the full invariant check; the in-order walk every 50 (it is O(n) too,
        // but the check already proves order, so this is the oracle's say).
        rbCheck(root, cmp, `seed ${seed} op ${op}`);
        if (op % 50 === 0) expect(keys(root)).toEqual(oracle);
      }
      expect(keys(root)).toEqual(oracle);
      expect(keysBackwards(root)).toEqual([...oracle].reverse());
      expect(rbCount(root)).toBe(oracle.length);
      expect(depth(root)).toBeLessThanOrEqual(2 * Math.log2(oracle.length + 1));
    });
  }

  it('erasing 3000 nodes in random order down to empty keeps every invariant', () => {
    const rng = new Prng(99);
    const n = 3000;
    const order = Array.from({ length: n }, (_, i) => i * 7);
    // Fisher-Yates with the seeded generator: one insertion order, another erase order.
    const shuffle = (a: number[]): void => {
      for (let i = a.length - 1; i > 0; i--) {
        const j = rng.int(0, i + 1);
        [a[i], a[j]] = [a[j]!, a[i]!];
      }
    };
    shuffle(order);
    const { root, nodes } = build(order);
    const oracle = [...order].sort((x, y) => x - y);
    rbCheck(root, cmp);
    expect(keys(root)).toEqual(oracle);
    shuffle(order);
    for (let i = 0; i < n; i++) {
      const k = order[i]!;
      rbErase(nodes.get(k)!, root);
      oracle.splice(lowerBound(oracle, k), 1);
      rbCheck(root, cmp, `erase #${i}`);
      if (i % 100 === 0) expect(keys(root)).toEqual(oracle);
    }
    expect(root.node).toBeNull();
    expect(rbCount(root)).toBe(0);
  });
});

describe('rbCheck catches corruption', () => {
  it('a red root', () => {
    const { root } = build([1, 2, 3]);
    root.node!.rbRed = true;
    expect(() => rbCheck(root, cmp, 'stable tree')).toThrow(InvariantError);
    expect(() => rbCheck(root, cmp, 'stable tree')).toThrow(/stable tree: expected a black root/);
  });

  it('a manually recoloured node: red under red', () => {
    const { root, nodes } = build([1, 2, 3, 4]); // 2 black root, 1 and 3 black, 4 red under 3
    nodes.get(3)!.rbRed = true;
    expect(() => rbCheck(root, cmp)).toThrow(InvariantError);
    expect(() => rbCheck(root, cmp)).toThrow(/red node with red child/);
  });

  it('a manually recoloured node: unequal black heights', () => {
    const { root, nodes } = build([1, 2, 3, 4]);
    nodes.get(4)!.rbRed = false; // the path through 3 to 4's children gains a black
    expect(() => rbCheck(root, cmp)).toThrow(/unequal black heights/);
  });

  it('a child whose parent pointer is wrong', () => {
    const { root, nodes } = build([1, 2, 3, 4, 5, 6, 7]);
    nodes.get(1)!.rbParent = nodes.get(6)!;
    expect(() => rbCheck(root, cmp)).toThrow(/parent pointers inconsistent/);
  });

  it('a node linked twice (a cycle in the node graph) instead of looping forever', () => {
    const { root, nodes } = build([1, 2, 3]);
    // 2's right link now also points at 1, whose parent link still says 2.
    nodes.get(2)!.rbRight = nodes.get(1)!;
    expect(() => rbCheck(root, cmp)).toThrow(/cycle/);
  });

  it('keys out of order, only when a comparison is given', () => {
    const { root, nodes } = build([1, 2, 3]);
    // Swap the keys' places without touching links or colours.
    const n1 = nodes.get(1)!;
    const n3 = nodes.get(3)!;
    const r = root.node!;
    r.rbLeft = n3;
    r.rbRight = n1;
    n1.rbParent = r;
    n3.rbParent = r;
    expect(() => rbCheck(root)).not.toThrow();
    expect(() => rbCheck(root, cmp)).toThrow(/in-order sequence not strictly increasing/);
  });
});
