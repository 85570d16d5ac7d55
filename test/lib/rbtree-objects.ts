/**
 * An intrusive red-black tree of objects, shaped like Linux lib/rbtree.c (2.6.33): the
 * reference KSM's tree (src/lib/rbtree-indexed.ts, the same algorithm over typed-array
 * links of numbered records) is tested against, node for node
 * (test/lib/rbtree-indexed.test.ts). It was KSM's tree while rmap_items and stable
 * nodes were objects; it lives with the tests now that nothing in src uses it.
 *
 * Intrusive: the tree links live in the objects it holds, which declare `rbParent,
 * rbLeft, rbRight, rbRed` as their first four fields so every node class has the same
 * leading shape. The tree never allocates: inserting and
 * erasing only rewire those fields.
 *
 * The tree never compares either. KSM's trees are keyed by page *contents*, compared
 * with memcmp while descending (mm/ksm.c stable_tree_search()), and the unstable tree
 * is not even a consistent order (pages change under it). So, exactly as in Linux, the
 * caller walks down from `root.node` with its own comparison, then calls
 * `rbLinkNode(node, parent, left, root)` at the empty slot it found, and
 * `rbInsertColor(node, root)` to rebalance.
 *
 * Invariants (checked by rbCheck()):
 *  1. the root is black and has rbParent === null;
 *  2. a red node has no red child;
 *  3. every path from a node down to a null child passes the same number of black nodes;
 *  4. for every child c of n: c.rbParent === n; no node is reachable twice.
 * 2 and 3 bound the depth by 2*log2(n+1), which is what lets a million-node tree be
 * walked without recursion worries and searched in ~40 steps.
 *
 * Linux packs the colour into the low bit of the parent pointer (rb_parent_color). We
 * keep a separate `rbRed` boolean: JavaScript has no pointer bits to steal, and a
 * boolean field keeps the object shape fixed.
 *
 * A node that is in no tree has all four fields cleared (rbInitNode); rbErase leaves the
 * erased node that way. Note that this differs from Linux's RB_CLEAR_NODE (parent
 * pointing at itself): KSM 2.6.33 tracks tree membership with its own flags
 * (STABLE_FLAG / UNSTABLE_FLAG on rmap_item->address), so we need no in-tree marker.
 *
 * Every loop is iterative: no recursion anywhere, including rbCheck().
 */

import { bug } from '../../src/lib/errors.js';

export interface RbNode {
  rbParent: RbNode | null;
  rbLeft: RbNode | null;
  rbRight: RbNode | null;
  /** false = black. A node fresh from rbLinkNode is red. */
  rbRed: boolean;
}

/**
 * struct rb_root. Resetting the whole tree is `root.node = null`: KSM throws the
 * unstable tree away at the start of every full scan that way (mm/ksm.c
 * scan_get_next_rmap_item(): `root_unstable_tree = RB_ROOT`) and never visits the
 * nodes, so nodes of a discarded tree keep stale links until they are relinked.
 */
export class RbRoot {
  node: RbNode | null = null;
}

/** Clears a node's links, as for a node in no tree. */
export function rbInitNode(n: RbNode): void {
  n.rbParent = null;
  n.rbLeft = null;
  n.rbRight = null;
  n.rbRed = false;
}

/**
 * include/linux/rbtree.h rb_link_node(): puts `node` in the empty slot the caller's
 * search ended at: `parent`'s left (left = true) or right child, or the root when
 * parent is null. The node becomes a red leaf; call rbInsertColor() next.
 */
export function rbLinkNode(node: RbNode, parent: RbNode | null, left: boolean, root: RbRoot): void {
  node.rbParent = parent;
  node.rbLeft = null;
  node.rbRight = null;
  node.rbRed = true;
  if (parent === null) root.node = node;
  else if (left) parent.rbLeft = node;
  else parent.rbRight = node;
}

// lib/rbtree.c __rb_rotate_left(): node's right child takes node's place; node becomes
// its left child. Colours are the caller's business.
function rotateLeft(node: RbNode, root: RbRoot): void {
  const right = node.rbRight!;
  const parent = node.rbParent;
  const moved = right.rbLeft;
  node.rbRight = moved;
  if (moved !== null) moved.rbParent = node;
  right.rbLeft = node;
  right.rbParent = parent;
  if (parent === null) root.node = right;
  else if (parent.rbLeft === node) parent.rbLeft = right;
  else parent.rbRight = right;
  node.rbParent = right;
}

// lib/rbtree.c __rb_rotate_right(): the mirror image of rotateLeft().
function rotateRight(node: RbNode, root: RbRoot): void {
  const left = node.rbLeft!;
  const parent = node.rbParent;
  const moved = left.rbRight;
  node.rbLeft = moved;
  if (moved !== null) moved.rbParent = node;
  left.rbRight = node;
  left.rbParent = parent;
  if (parent === null) root.node = left;
  else if (parent.rbRight === node) parent.rbRight = left;
  else parent.rbLeft = left;
  node.rbParent = left;
}

/**
 * lib/rbtree.c rb_insert_color(): restores the invariants after rbLinkNode() added a
 * red leaf. The only possible violation is a red node under a red parent; a red uncle
 * lets us push the red up two levels by recolouring, a black uncle is fixed for good
 * with one or two rotations.
 */
export function rbInsertColor(node: RbNode, root: RbRoot): void {
  let parent: RbNode | null;
  while ((parent = node.rbParent) !== null && parent.rbRed) {
    // A red parent is never the root, so the grandparent exists.
    const gparent = parent.rbParent!;
    if (parent === gparent.rbLeft) {
      const uncle = gparent.rbRight;
      if (uncle !== null && uncle.rbRed) {
        uncle.rbRed = false;
        parent.rbRed = false;
        gparent.rbRed = true;
        node = gparent;
        continue;
      }
      if (parent.rbRight === node) {
        // Inner grandchild: rotate it to the outside first, then the roles swap.
        rotateLeft(parent, root);
        const tmp = parent;
        parent = node;
        node = tmp;
      }
      parent.rbRed = false;
      gparent.rbRed = true;
      rotateRight(gparent, root);
    } else {
      const uncle = gparent.rbLeft;
      if (uncle !== null && uncle.rbRed) {
        uncle.rbRed = false;
        parent.rbRed = false;
        gparent.rbRed = true;
        node = gparent;
        continue;
      }
      if (parent.rbLeft === node) {
        rotateRight(parent, root);
        const tmp = parent;
        parent = node;
        node = tmp;
      }
      parent.rbRed = false;
      gparent.rbRed = true;
      rotateLeft(gparent, root);
    }
  }
  root.node!.rbRed = false;
}

/**
 * lib/rbtree.c __rb_erase_color(): a black node was removed from above `node` (which
 * may be null, hence the separate `parent`), so paths through `node` are one black
 * short. Walk up until a red node can absorb the deficit or a rotation borrows a black
 * from the sibling's side.
 */
function eraseColor(node: RbNode | null, parent: RbNode | null, root: RbRoot): void {
  while ((node === null || !node.rbRed) && node !== root.node) {
    // node is not the root, so it has a parent; and since paths through node are one
    // black short while its sibling's are not, the sibling exists.
    const p = parent!;
    if (p.rbLeft === node) {
      let other = p.rbRight!;
      if (other.rbRed) {
        other.rbRed = false;
        p.rbRed = true;
        rotateLeft(p, root);
        other = p.rbRight!;
      }
      const ol = other.rbLeft;
      const or = other.rbRight;
      if ((ol === null || !ol.rbRed) && (or === null || !or.rbRed)) {
        other.rbRed = true;
        node = p;
        parent = p.rbParent;
      } else {
        if (or === null || !or.rbRed) {
          ol!.rbRed = false;
          other.rbRed = true;
          rotateRight(other, root);
          other = p.rbRight!;
        }
        other.rbRed = p.rbRed;
        p.rbRed = false;
        other.rbRight!.rbRed = false;
        rotateLeft(p, root);
        node = root.node;
        break;
      }
    } else {
      let other = p.rbLeft!;
      if (other.rbRed) {
        other.rbRed = false;
        p.rbRed = true;
        rotateRight(p, root);
        other = p.rbLeft!;
      }
      const ol = other.rbLeft;
      const or = other.rbRight;
      if ((ol === null || !ol.rbRed) && (or === null || !or.rbRed)) {
        other.rbRed = true;
        node = p;
        parent = p.rbParent;
      } else {
        if (ol === null || !ol.rbRed) {
          or!.rbRed = false;
          other.rbRed = true;
          rotateLeft(other, root);
          other = p.rbLeft!;
        }
        other.rbRed = p.rbRed;
        p.rbRed = false;
        other.rbLeft!.rbRed = false;
        rotateRight(p, root);
        node = root.node;
        break;
      }
    }
  }
  if (node !== null) node.rbRed = false;
}

/**
 * lib/rbtree.c rb_erase(): removes `node` from the tree rooted at `root`, then clears
 * its links (rbInitNode) so a stale pointer into the tree cannot survive in it.
 *
 * A node with two children is not swapped by value (the tree is intrusive: the
 * caller's object *is* the node). Instead its in-order successor is unlinked from its
 * own spot and put in the node's place, taking over its children and colour; the
 * rebalancing then concerns the successor's old spot.
 */
export function rbErase(node: RbNode, root: RbRoot): void {
  let child: RbNode | null;
  let parent: RbNode | null;
  let wasRed: boolean;

  if (node.rbLeft === null || node.rbRight === null) {
    child = node.rbLeft === null ? node.rbRight : node.rbLeft;
    parent = node.rbParent;
    wasRed = node.rbRed;
    if (child !== null) child.rbParent = parent;
    if (parent === null) root.node = child;
    else if (parent.rbLeft === node) parent.rbLeft = child;
    else parent.rbRight = child;
  } else {
    let succ = node.rbRight;
    while (succ.rbLeft !== null) succ = succ.rbLeft;

    const oldParent = node.rbParent;
    if (oldParent === null) root.node = succ;
    else if (oldParent.rbLeft === node) oldParent.rbLeft = succ;
    else oldParent.rbRight = succ;

    // succ has no left child; its right child moves up into succ's old spot.
    child = succ.rbRight;
    wasRed = succ.rbRed;
    if (succ.rbParent === node) {
      // succ is node's right child: it keeps its right subtree, and the deficit (if
      // any) is under succ itself.
      parent = succ;
    } else {
      parent = succ.rbParent!;
      if (child !== null) child.rbParent = parent;
      parent.rbLeft = child;
      succ.rbRight = node.rbRight;
      node.rbRight!.rbParent = succ;
    }
    succ.rbParent = oldParent;
    succ.rbRed = node.rbRed;
    succ.rbLeft = node.rbLeft;
    node.rbLeft!.rbParent = succ;
  }

  if (!wasRed) eraseColor(child, parent, root);
  rbInitNode(node);
}

/**
 * lib/rbtree.c rb_replace_node(): `victim`'s place in the tree, colour and children go
 * to `replacement`, which must be in no tree; no rebalancing is needed. `victim` is
 * left with no links. Only valid when replacement sorts where victim did (KSM: a
 * chain standing in for the dup it replaces, or the reverse).
 */
export function rbReplaceNode(victim: RbNode, replacement: RbNode, root: RbRoot): void {
  const parent = victim.rbParent;
  if (parent === null) root.node = replacement;
  else if (parent.rbLeft === victim) parent.rbLeft = replacement;
  else parent.rbRight = replacement;
  if (victim.rbLeft !== null) victim.rbLeft.rbParent = replacement;
  if (victim.rbRight !== null) victim.rbRight.rbParent = replacement;
  replacement.rbParent = parent;
  replacement.rbLeft = victim.rbLeft;
  replacement.rbRight = victim.rbRight;
  replacement.rbRed = victim.rbRed;
  rbInitNode(victim);
}

/** lib/rbtree.c rb_first(): the leftmost node, or null for an empty tree. */
export function rbFirst(root: RbRoot): RbNode | null {
  let n = root.node;
  if (n === null) return null;
  while (n.rbLeft !== null) n = n.rbLeft;
  return n;
}

/** lib/rbtree.c rb_last(): the rightmost node, or null for an empty tree. */
export function rbLast(root: RbRoot): RbNode | null {
  let n = root.node;
  if (n === null) return null;
  while (n.rbRight !== null) n = n.rbRight;
  return n;
}

/** lib/rbtree.c rb_next(): the in-order successor, or null after the last node. */
export function rbNext(node: RbNode): RbNode | null {
  let n = node.rbRight;
  if (n !== null) {
    while (n.rbLeft !== null) n = n.rbLeft;
    return n;
  }
  // No right subtree: go up until we come from a left child.
  let cur = node;
  let parent = cur.rbParent;
  while (parent !== null && parent.rbRight === cur) {
    cur = parent;
    parent = cur.rbParent;
  }
  return parent;
}

/** lib/rbtree.c rb_prev(): the in-order predecessor, or null before the first node. */
export function rbPrev(node: RbNode): RbNode | null {
  let n = node.rbLeft;
  if (n !== null) {
    while (n.rbRight !== null) n = n.rbRight;
    return n;
  }
  let cur = node;
  let parent = cur.rbParent;
  while (parent !== null && parent.rbLeft === cur) {
    cur = parent;
    parent = cur.rbParent;
  }
  return parent;
}

/** Number of nodes, by an in-order walk: O(n), for checks and statistics, not hot paths. */
export function rbCount(root: RbRoot): number {
  let count = 0;
  for (let n = rbFirst(root); n !== null; n = rbNext(n)) count++;
  return count;
}

/**
 * Deep check of every invariant listed at the top of this file, plus (given `cmp`)
 * that the in-order sequence is strictly increasing. Throws InvariantError naming the
 * tree (`what`), the broken rule and where: the in-order position and depth of the
 * offending node. It trusts no link: the walk uses its own stack rather than rbNext(),
 * so a corrupted parent pointer is reported rather than followed, and a visited set
 * turns a cycle into an error instead of an endless loop.
 */
export function rbCheck(root: RbRoot, cmp?: (a: RbNode, b: RbNode) => number, what = 'rbtree'): void {
  const top = root.node;
  if (top === null) return;
  if (top.rbParent !== null) bug(`${what}: expected the root to have no parent, found a parent link`);
  if (top.rbRed) bug(`${what}: expected a black root, found it red`);

  const seen = new Set<RbNode>();
  const stack: RbNode[] = [];
  const stackBlacks: number[] = [];
  const stackDepths: number[] = [];
  let blackHeight = -1; // black nodes on every root-to-null path, once the first is seen
  let position = 0; // in-order index of the next node visited
  let prev: RbNode | null = null;

  const where = (depth: number): string => `node at depth ${depth} (in-order position ~${position})`;

  // A null child ends a path: all such paths must carry the same number of blacks.
  const leaf = (blacks: number, depth: number, side: string): void => {
    if (blackHeight < 0) blackHeight = blacks;
    else if (blacks !== blackHeight) {
      bug(
        `${what}: unequal black heights: the path to the ${side} null child of the ` +
          `${where(depth)} has ${blacks} black nodes, expected ${blackHeight} as on the first path`,
      );
    }
  };

  let cur: RbNode | null = top;
  let blacksAbove = 0;
  let depth = 0;
  while (cur !== null || stack.length > 0) {
    // Go down the left spine, checking each node on the way.
    while (cur !== null) {
      if (seen.has(cur)) bug(`${what}: cycle: the ${where(depth)} was already reached by another path`);
      seen.add(cur);
      const blacks = blacksAbove + (cur.rbRed ? 0 : 1);
      const l: RbNode | null = cur.rbLeft;
      const r: RbNode | null = cur.rbRight;
      if (l !== null && l.rbParent !== cur) {
        bug(`${what}: parent pointers inconsistent: the left child of the ${where(depth)} does not point back to it`);
      }
      if (r !== null && r.rbParent !== cur) {
        bug(`${what}: parent pointers inconsistent: the right child of the ${where(depth)} does not point back to it`);
      }
      if (cur.rbRed && ((l !== null && l.rbRed) || (r !== null && r.rbRed))) {
        bug(`${what}: red node with red child: the ${where(depth)} is red and so is its ${l !== null && l.rbRed ? 'left' : 'right'} child`);
      }
      if (l === null) leaf(blacks, depth, 'left');
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
    if (cmp !== undefined && prev !== null && !(cmp(prev, n) < 0)) {
      bug(`${what}: in-order sequence not strictly increasing at the ${where(d)}: it does not compare above its predecessor`);
    }
    prev = n;
    position++;
    if (n.rbRight === null) leaf(blacks, d, 'right');
    cur = n.rbRight;
    blacksAbove = blacks;
    depth = d + 1;
  }
}
