/**
 * A red-black tree over numbered records, shaped like Linux lib/rbtree.c (2.6.33),
 * with typed-array links instead of pointers.
 *
 * KSM's rmap_items and stable nodes are numbered records in typed arrays
 * (src/ksm/structs.ts), a few dozen bytes each instead of a JS object of ~80 B plus
 * boxed numbers. Their tree links are therefore indices too: record `n`'s links are
 * `links.rbParent[n]`, `rbLeft[n]`, `rbRight[n]`, and its colour `rbRed[n]` (1 = red,
 * 0 = black). The tree is tested node for node against the same algorithm over
 * objects (test/lib/rbtree-objects.ts), which was KSM's tree while its records were
 * objects.
 *
 * Record 0 is NIL, as NULL is 0 in C: a typed array starts all-NIL, and no record
 * of a table is ever numbered 0. RbLinks' arrays are read afresh on each call (the
 * table that owns them may grow, replacing them) but are stable within a call: the
 * tree never allocates, so nothing grows a table underneath it.
 *
 * As in Linux, the tree never compares: the caller descends from `root.node` with
 * its own comparison, links the new node at the empty slot it found
 * (rbLinkNode(links, node, parent, left, root)), then rebalances (rbInsertColor).
 *
 * Invariants (checked by rbCheck()):
 *  1. the root is black and its rbParent is NIL;
 *  2. a red node has no red child;
 *  3. every path from a node down to a NIL child passes the same number of black nodes;
 *  4. for every child c of n: rbParent[c] === n; no node is reachable twice.
 * A node in no tree has its links NIL and its colour black (rbInitNode; rbErase leaves
 * an erased node so). Resetting a tree is `root.node = RB_NIL`: its nodes keep stale
 * links until they are linked again (KSM's unstable tree).
 *
 * Every loop is iterative: no recursion anywhere, including rbCheck().
 */

import { bug } from './errors.js';

/** The index that means "no node" (NULL). */
export const RB_NIL = 0;

/** The link arrays of a table of records (all indexed by record number). */
export interface RbLinks {
  rbParent: Int32Array;
  rbLeft: Int32Array;
  rbRight: Int32Array;
  /** 1 = red, 0 = black. A node fresh from rbLinkNode is red. */
  rbRed: Uint8Array;
}

/** struct rb_root: the root's record number, or RB_NIL for an empty tree. */
export class RbRootIdx {
  node: number = RB_NIL;
}

/** Clears a node's links, as for a node in no tree. */
export function rbInitNode(t: RbLinks, n: number): void {
  t.rbParent[n] = RB_NIL;
  t.rbLeft[n] = RB_NIL;
  t.rbRight[n] = RB_NIL;
  t.rbRed[n] = 0;
}

/** include/linux/rbtree.h rb_link_node(): `node` becomes a red leaf at the slot found. */
export function rbLinkNode(t: RbLinks, node: number, parent: number, left: boolean, root: RbRootIdx): void {
  t.rbParent[node] = parent;
  t.rbLeft[node] = RB_NIL;
  t.rbRight[node] = RB_NIL;
  t.rbRed[node] = 1;
  if (parent === RB_NIL) root.node = node;
  else if (left) t.rbLeft[parent] = node;
  else t.rbRight[parent] = node;
}

// lib/rbtree.c __rb_rotate_left(): node's right child takes node's place.
function rotateLeft(t: RbLinks, node: number, root: RbRootIdx): void {
  const P = t.rbParent;
  const L = t.rbLeft;
  const R = t.rbRight;
  const right = R[node]!;
  const parent = P[node]!;
  const moved = L[right]!;
  R[node] = moved;
  if (moved !== RB_NIL) P[moved] = node;
  L[right] = node;
  P[right] = parent;
  if (parent === RB_NIL) root.node = right;
  else if (L[parent] === node) L[parent] = right;
  else R[parent] = right;
  P[node] = right;
}

// lib/rbtree.c __rb_rotate_right(): the mirror image of rotateLeft().
function rotateRight(t: RbLinks, node: number, root: RbRootIdx): void {
  const P = t.rbParent;
  const L = t.rbLeft;
  const R = t.rbRight;
  const left = L[node]!;
  const parent = P[node]!;
  const moved = R[left]!;
  L[node] = moved;
  if (moved !== RB_NIL) P[moved] = node;
  R[left] = node;
  P[left] = parent;
  if (parent === RB_NIL) root.node = left;
  else if (R[parent] === node) R[parent] = left;
  else L[parent] = left;
  P[node] = left;
}

/** lib/rbtree.c rb_insert_color(), over indices. */
export function rbInsertColor(t: RbLinks, node: number, root: RbRootIdx): void {
  const P = t.rbParent;
  const L = t.rbLeft;
  const R = t.rbRight;
  const red = t.rbRed;
  let parent: number;
  while ((parent = P[node]!) !== RB_NIL && red[parent] !== 0) {
    // A red parent is never the root, so the grandparent exists.
    const gparent = P[parent]!;
    if (parent === L[gparent]) {
      const uncle = R[gparent]!;
      if (uncle !== RB_NIL && red[uncle] !== 0) {
        red[uncle] = 0;
        red[parent] = 0;
        red[gparent] = 1;
        node = gparent;
        continue;
      }
      if (R[parent] === node) {
        // Inner grandchild: rotate it to the outside first, then the roles swap.
        rotateLeft(t, parent, root);
        const tmp = parent;
        parent = node;
        node = tmp;
      }
      red[parent] = 0;
      red[gparent] = 1;
      rotateRight(t, gparent, root);
    } else {
      const uncle = L[gparent]!;
      if (uncle !== RB_NIL && red[uncle] !== 0) {
        red[uncle] = 0;
        red[parent] = 0;
        red[gparent] = 1;
        node = gparent;
        continue;
      }
      if (L[parent] === node) {
        rotateRight(t, parent, root);
        const tmp = parent;
        parent = node;
        node = tmp;
      }
      red[parent] = 0;
      red[gparent] = 1;
      rotateLeft(t, gparent, root);
    }
  }
  red[root.node] = 0;
}

/** lib/rbtree.c __rb_erase_color(), over indices (node may be NIL). */
function eraseColor(t: RbLinks, node: number, parent: number, root: RbRootIdx): void {
  const P = t.rbParent;
  const L = t.rbLeft;
  const R = t.rbRight;
  const red = t.rbRed;
  while ((node === RB_NIL || red[node] === 0) && node !== root.node) {
    // node is not the root, so it has a parent, and its sibling exists.
    const p = parent;
    if (L[p] === node) {
      let other = R[p]!;
      if (red[other] !== 0) {
        red[other] = 0;
        red[p] = 1;
        rotateLeft(t, p, root);
        other = R[p]!;
      }
      const ol = L[other]!;
      const or = R[other]!;
      if ((ol === RB_NIL || red[ol] === 0) && (or === RB_NIL || red[or] === 0)) {
        red[other] = 1;
        node = p;
        parent = P[p]!;
      } else {
        if (or === RB_NIL || red[or] === 0) {
          red[ol] = 0;
          red[other] = 1;
          rotateRight(t, other, root);
          other = R[p]!;
        }
        red[other] = red[p]!;
        red[p] = 0;
        red[R[other]!] = 0;
        rotateLeft(t, p, root);
        node = root.node;
        break;
      }
    } else {
      let other = L[p]!;
      if (red[other] !== 0) {
        red[other] = 0;
        red[p] = 1;
        rotateRight(t, p, root);
        other = L[p]!;
      }
      const ol = L[other]!;
      const or = R[other]!;
      if ((ol === RB_NIL || red[ol] === 0) && (or === RB_NIL || red[or] === 0)) {
        red[other] = 1;
        node = p;
        parent = P[p]!;
      } else {
        if (ol === RB_NIL || red[ol] === 0) {
          red[or] = 0;
          red[other] = 1;
          rotateLeft(t, other, root);
          other = L[p]!;
        }
        red[other] = red[p]!;
        red[p] = 0;
        red[L[other]!] = 0;
        rotateRight(t, p, root);
        node = root.node;
        break;
      }
    }
  }
  if (node !== RB_NIL) red[node] = 0;
}

/**
 * lib/rbtree.c rb_erase(): removes `node`, then clears its links (rbInitNode). A node
 * with two children is replaced by its in-order successor, relinked into its place
 * (the records are the nodes: nothing is copied by value).
 */
export function rbErase(t: RbLinks, node: number, root: RbRootIdx): void {
  const P = t.rbParent;
  const L = t.rbLeft;
  const R = t.rbRight;
  const red = t.rbRed;
  let child: number;
  let parent: number;
  let wasRed: number;
  if (L[node] === RB_NIL || R[node] === RB_NIL) {
    child = L[node] === RB_NIL ? R[node]! : L[node]!;
    parent = P[node]!;
    wasRed = red[node]!;
    if (child !== RB_NIL) P[child] = parent;
    if (parent === RB_NIL) root.node = child;
    else if (L[parent] === node) L[parent] = child;
    else R[parent] = child;
  } else {
    let succ = R[node]!;
    while (L[succ] !== RB_NIL) succ = L[succ]!;
    const oldParent = P[node]!;
    if (oldParent === RB_NIL) root.node = succ;
    else if (L[oldParent] === node) L[oldParent] = succ;
    else R[oldParent] = succ;
    // succ has no left child; its right child moves up into succ's old spot.
    child = R[succ]!;
    wasRed = red[succ]!;
    if (P[succ] === node) {
      parent = succ;
    } else {
      parent = P[succ]!;
      if (child !== RB_NIL) P[child] = parent;
      L[parent] = child;
      R[succ] = R[node]!;
      P[R[node]!] = succ;
    }
    P[succ] = oldParent;
    red[succ] = red[node]!;
    L[succ] = L[node]!;
    P[L[node]!] = succ;
  }
  if (wasRed === 0) eraseColor(t, child, parent, root);
  rbInitNode(t, node);
}

/**
 * lib/rbtree.c rb_replace_node(): `replacement` (in no tree) takes `victim`'s place,
 * colour and children; victim is left with no links.
 */
export function rbReplaceNode(t: RbLinks, victim: number, replacement: number, root: RbRootIdx): void {
  const P = t.rbParent;
  const L = t.rbLeft;
  const R = t.rbRight;
  const parent = P[victim]!;
  if (parent === RB_NIL) root.node = replacement;
  else if (L[parent] === victim) L[parent] = replacement;
  else R[parent] = replacement;
  const l = L[victim]!;
  const r = R[victim]!;
  if (l !== RB_NIL) P[l] = replacement;
  if (r !== RB_NIL) P[r] = replacement;
  P[replacement] = parent;
  L[replacement] = l;
  R[replacement] = r;
  t.rbRed[replacement] = t.rbRed[victim]!;
  rbInitNode(t, victim);
}

/** lib/rbtree.c rb_first(): the leftmost node, or RB_NIL. */
export function rbFirst(t: RbLinks, root: RbRootIdx): number {
  let n = root.node;
  if (n === RB_NIL) return RB_NIL;
  const L = t.rbLeft;
  while (L[n] !== RB_NIL) n = L[n]!;
  return n;
}

/** lib/rbtree.c rb_last(): the rightmost node, or RB_NIL. */
export function rbLast(t: RbLinks, root: RbRootIdx): number {
  let n = root.node;
  if (n === RB_NIL) return RB_NIL;
  const R = t.rbRight;
  while (R[n] !== RB_NIL) n = R[n]!;
  return n;
}

/** lib/rbtree.c rb_next(): the in-order successor, or RB_NIL. */
export function rbNext(t: RbLinks, node: number): number {
  const P = t.rbParent;
  const L = t.rbLeft;
  const R = t.rbRight;
  let n = R[node]!;
  if (n !== RB_NIL) {
    while (L[n] !== RB_NIL) n = L[n]!;
    return n;
  }
  let cur = node;
  let parent = P[cur]!;
  while (parent !== RB_NIL && R[parent] === cur) {
    cur = parent;
    parent = P[cur]!;
  }
  return parent;
}

/** lib/rbtree.c rb_prev(): the in-order predecessor, or RB_NIL. */
export function rbPrev(t: RbLinks, node: number): number {
  const P = t.rbParent;
  const L = t.rbLeft;
  const R = t.rbRight;
  let n = L[node]!;
  if (n !== RB_NIL) {
    while (R[n] !== RB_NIL) n = R[n]!;
    return n;
  }
  let cur = node;
  let parent = P[cur]!;
  while (parent !== RB_NIL && L[parent] === cur) {
    cur = parent;
    parent = P[cur]!;
  }
  return parent;
}

/** Number of nodes, by an in-order walk: for checks and statistics, not hot paths. */
export function rbCount(t: RbLinks, root: RbRootIdx): number {
  let count = 0;
  for (let n = rbFirst(t, root); n !== RB_NIL; n = rbNext(t, n)) count++;
  return count;
}

/**
 * Deep check of every invariant above, plus (given `cmp`) a strictly increasing
 * in-order sequence; `limit` is the table's record count (a link at or past it, or
 * negative, is reported rather than followed). Like the object tree's rbCheck() it trusts no
 * link: its own stack, and a visited set that turns a cycle into an error.
 */
export function rbCheck(t: RbLinks, root: RbRootIdx, limit: number, cmp?: (a: number, b: number) => number, what = 'rbtree'): void {
  const top = root.node;
  if (top === RB_NIL) return;
  const P = t.rbParent;
  const L = t.rbLeft;
  const R = t.rbRight;
  const red = t.rbRed;
  const inRange = (n: number): boolean => n > 0 && n < limit;
  if (!inRange(top)) bug(`${what}: expected the root to be a record 1..${limit - 1}, found ${top}`);
  if (P[top] !== RB_NIL) bug(`${what}: expected the root to have no parent, found a parent link to ${P[top]}`);
  if (red[top] !== 0) bug(`${what}: expected a black root, found record ${top} red`);

  const seen = new Uint8Array(limit);
  const stack: number[] = [];
  const stackBlacks: number[] = [];
  const stackDepths: number[] = [];
  let blackHeight = -1;
  let position = 0;
  let prev = RB_NIL;
  const where = (n: number, depth: number): string => `record ${n} at depth ${depth} (in-order position ~${position})`;
  const leaf = (blacks: number, n: number, depth: number, side: string): void => {
    if (blackHeight < 0) blackHeight = blacks;
    else if (blacks !== blackHeight) {
      bug(`${what}: unequal black heights: the path to the ${side} NIL child of the ${where(n, depth)} has ${blacks} black nodes, expected ${blackHeight} as on the first path`);
    }
  };

  let cur = top;
  let blacksAbove = 0;
  let depth = 0;
  while (cur !== RB_NIL || stack.length > 0) {
    while (cur !== RB_NIL) {
      if (!inRange(cur)) bug(`${what}: a link points to record ${cur}, outside 1..${limit - 1}`);
      if (seen[cur] !== 0) bug(`${what}: cycle: the ${where(cur, depth)} was already reached by another path`);
      seen[cur] = 1;
      const blacks = blacksAbove + (red[cur] !== 0 ? 0 : 1);
      const l = L[cur]!;
      const r = R[cur]!;
      if (l !== RB_NIL && !inRange(l)) bug(`${what}: a link points to record ${l}, outside 1..${limit - 1}`);
      if (r !== RB_NIL && !inRange(r)) bug(`${what}: a link points to record ${r}, outside 1..${limit - 1}`);
      if (l !== RB_NIL && P[l] !== cur) bug(`${what}: parent pointers inconsistent: the left child of the ${where(cur, depth)} does not point back to it`);
      if (r !== RB_NIL && P[r] !== cur) bug(`${what}: parent pointers inconsistent: the right child of the ${where(cur, depth)} does not point back to it`);
      if (red[cur] !== 0 && ((l !== RB_NIL && red[l] !== 0) || (r !== RB_NIL && red[r] !== 0))) {
        bug(`${what}: red node with red child: the ${where(cur, depth)} is red and so is its ${l !== RB_NIL && red[l] !== 0 ? 'left' : 'right'} child`);
      }
      if (l === RB_NIL) leaf(blacks, cur, depth, 'left');
      stack.push(cur);
      stackBlacks.push(blacks);
      stackDepths.push(depth);
      cur = l;
      blacksAbove = blacks;
      depth++;
    }
    const n = stack.pop()!;
    const blacks = stackBlacks.pop()!;
    const d = stackDepths.pop()!;
    if (cmp !== undefined && prev !== RB_NIL && !(cmp(prev, n) < 0)) {
      bug(`${what}: in-order sequence not strictly increasing at the ${where(n, d)}: it does not compare above its predecessor`);
    }
    prev = n;
    position++;
    if (R[n] === RB_NIL) leaf(blacks, n, d, 'right');
    cur = R[n]!;
    blacksAbove = blacks;
    depth = d + 1;
  }
}
