import { RB_NIL, type RbLinks, type RbRootIdx } from './rbtree-indexed.js';

/*
 * Generic pieces of snapshot images, for every layer that saves its state (src/mm,
 * src/ksm): packing typed arrays into bytes, runs of consecutive numbers, the shape
 * of a red-black tree, objects numbered as they are met, and the checks an untrusted
 * image goes through, each naming the field's path when it fails.
 *
 * An image is plain data: numbers, strings, booleans, null, arrays, plain objects and
 * Uint8Array. Binary fields are Uint8Array holding little-endian u32, i32 or f64
 * arrays rather than Int32Array and friends: msgpackr's default pack() writes only
 * Uint8Array correctly (other typed arrays need its `moreTypes` option, and without
 * it come out garbled), and a Uint8Array travels through any msgpack encoder as
 * plain `bin`. Views are taken in the host's byte order, so images are made and read
 * on little-endian hosts only (LITTLE_ENDIAN).
 */

export const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

// ---- packing ----------------------------------------------------------------------------

/** The bytes of a typed array (a view, not a copy). */
export function bytesOf(a: Uint32Array | Int32Array | Float64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** A growable i32/u32 list; `done()` gives the bytes of exactly what was pushed. */
export class IntList {
  data: Int32Array;
  n: number;
  constructor(capacity = 16) {
    this.data = new Int32Array(Math.max(4, capacity));
    this.n = 0;
  }
  push(v: number): void {
    if (this.n === this.data.length) {
      const d = new Int32Array(this.data.length * 2);
      d.set(this.data);
      this.data = d;
    }
    this.data[this.n++] = v;
  }
  done(): Uint8Array {
    return bytesOf(this.data.slice(0, this.n));
  }
}

/**
 * A sequence of numbers as runs, i32 pairs: (start, +len) for start, start+1, ..;
 * (start, -len) for start, start-1, ... Free lists and LRU lists of frames are mostly
 * such runs (a fresh block's free list is one; pages faulted in order go on an LRU
 * list in order). expandRuns() reads them back.
 */
export class RunWriter {
  private readonly out = new IntList();
  private start = 0;
  private len = 0;
  push(p: number): void {
    const len = this.len;
    if (len !== 0) {
      const start = this.start;
      if (len === 1) {
        if (p === start + 1) {
          this.len = 2;
          return;
        }
        if (p === start - 1) {
          this.len = -2;
          return;
        }
      } else if (p === start + len) {
        // Ascending, the next is start + len; descending (len < 0), start - |len|.
        this.len = len > 0 ? len + 1 : len - 1;
        return;
      }
      this.out.push(start);
      this.out.push(len);
    }
    this.start = p;
    this.len = 1;
  }
  done(): Uint8Array {
    if (this.len !== 0) {
      this.out.push(this.start);
      this.out.push(this.len);
      this.len = 0;
    }
    return this.out.done();
  }
}

/** Objects numbered in the order they are first met: `list[of(x)]` is x. */
export class Numbering<T> {
  readonly index = new Map<T, number>();
  readonly list: T[] = [];
  of(x: T): number {
    let i = this.index.get(x);
    if (i === undefined) {
      i = this.list.length;
      this.index.set(x, i);
      this.list.push(x);
    }
    return i;
  }
}

// ---- tree shapes --------------------------------------------------------------------------

/** Shape byte of a tree node in pre-order: has a left child, a right child, is red. */
const SHAPE_LEFT = 1;
const SHAPE_RIGHT = 2;
const SHAPE_RED = 4;

/**
 * A red-black tree's exact shape and colours in pre-order (node, left subtree, right
 * subtree), one shape byte a node, calling `visit` on each node in that order. `limit`
 * is the table's record count: a link outside it is inconsistent. `inconsistent` is
 * called (and must throw) when a link does not point back or a record is met twice.
 */
export function treeShape(t: RbLinks, root: RbRootIdx, limit: number, visit: (n: number) => void, what: string, inconsistent: (msg: string) => never): Uint8Array {
  const stack: number[] = [];
  if (root.node !== RB_NIL) {
    if (root.node < 0 || root.node >= limit) inconsistent(`${what}: the root is record ${root.node}, outside the table`);
    if (t.rbParent[root.node] !== RB_NIL) inconsistent(`${what}: the root has a parent`);
    stack.push(root.node);
  }
  const out: number[] = [];
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (out.length >= limit) inconsistent(`${what}: more nodes than records (a cycle)`);
    visit(n);
    const l = t.rbLeft[n]!;
    const r = t.rbRight[n]!;
    out.push((l !== RB_NIL ? SHAPE_LEFT : 0) | (r !== RB_NIL ? SHAPE_RIGHT : 0) | (t.rbRed[n] !== 0 ? SHAPE_RED : 0));
    if (r !== RB_NIL) {
      if (r < 0 || r >= limit || t.rbParent[r] !== n) inconsistent(`${what}: a right child does not point back to its parent`);
      stack.push(r);
    }
    if (l !== RB_NIL) {
      if (l < 0 || l >= limit || t.rbParent[l] !== n) inconsistent(`${what}: a left child does not point back to its parent`);
      stack.push(l);
    }
  }
  return Uint8Array.from(out);
}

/** That a pre-order shape sequence describes one binary tree of exactly its length. */
export function checkTreeShape(shape: Uint8Array, path: string): void {
  let open = shape.length > 0 ? 1 : 0;
  for (let i = 0; i < shape.length; i++) {
    const s = shape[i]!;
    if (s > (SHAPE_LEFT | SHAPE_RIGHT | SHAPE_RED)) fail(`${path}[${i}]`, `expected a shape byte (0-7), found ${s}`);
    if (open === 0) fail(path, `the tree is complete after ${i} nodes, but ${shape.length} are listed`);
    open += ((s & SHAPE_LEFT) !== 0 ? 1 : 0) + ((s & SHAPE_RIGHT) !== 0 ? 1 : 0) - 1;
  }
  if (open !== 0) fail(path, `${open} child link(s) left with no node after all ${shape.length} nodes`);
}

/** Links records nodes[0..shape.length) into a tree of the given pre-order shape (checked by checkTreeShape) under root. */
export function buildTree(t: RbLinks, root: RbRootIdx, nodes: ArrayLike<number>, shape: Uint8Array): void {
  root.node = RB_NIL;
  if (shape.length === 0) return;
  const parents: number[] = [RB_NIL];
  const sides: number[] = [0]; // 0 root, 1 left, 2 right
  for (let i = 0; i < shape.length; i++) {
    const n = nodes[i]!;
    const s = shape[i]!;
    const parent = parents.pop()!;
    const side = sides.pop()!;
    t.rbParent[n] = parent;
    t.rbLeft[n] = RB_NIL;
    t.rbRight[n] = RB_NIL;
    t.rbRed[n] = (s & SHAPE_RED) !== 0 ? 1 : 0;
    if (side === 0) root.node = n;
    else if (side === 1) t.rbLeft[parent] = n;
    else t.rbRight[parent] = n;
    if ((s & SHAPE_RIGHT) !== 0) {
      parents.push(n);
      sides.push(2);
    }
    if ((s & SHAPE_LEFT) !== 0) {
      parents.push(n);
      sides.push(1);
    }
  }
}

// ---- checking an untrusted image ------------------------------------------------------------

/**
 * A problem with an image, its message starting with the path of the field: missing,
 * of the wrong type, out of range, or referring to something that is not there.
 */
export class ImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageError';
  }
}

export function fail(path: string, msg: string): never {
  throw new ImageError(`${path}: ${msg}`);
}

/** What was found, for a message: "null", "the string \"x\"", "an array of 3", "12 bytes". */
export function found(x: unknown): string {
  if (x === null) return 'null';
  if (x === undefined) return 'nothing (the field is missing)';
  if (Array.isArray(x)) return `an array of ${x.length}`;
  if (x instanceof Uint8Array) return `${x.byteLength} bytes`;
  if (ArrayBuffer.isView(x)) return `a ${x.constructor.name}`;
  if (typeof x === 'string') return `the string ${JSON.stringify(x.length > 40 ? `${x.slice(0, 40)}...` : x)}`;
  if (typeof x === 'object') return 'an object';
  return `${typeof x} ${String(x)}`;
}

export function obj(x: unknown, path: string): Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x) || ArrayBuffer.isView(x)) fail(path, `expected an object, found ${found(x)}`);
  return x as Record<string, unknown>;
}

export function int(x: unknown, path: string, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min || x > max) fail(path, `expected an integer in [${min}, ${max}], found ${found(x)}`);
  return x;
}

export function finite(x: unknown, path: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x)) fail(path, `expected a finite number, found ${found(x)}`);
  return x;
}

export function bool(x: unknown, path: string): boolean {
  if (typeof x !== 'boolean') fail(path, `expected a boolean, found ${found(x)}`);
  return x;
}

export function str(x: unknown, path: string): string {
  if (typeof x !== 'string') fail(path, `expected a string, found ${found(x)}`);
  return x;
}

export function array(x: unknown, path: string, length?: number): unknown[] {
  if (!Array.isArray(x)) fail(path, `expected an array, found ${found(x)}`);
  if (length !== undefined && x.length !== length) fail(path, `expected an array of ${length}, found an array of ${x.length}`);
  return x;
}

export function bytes(x: unknown, path: string): Uint8Array {
  if (!(x instanceof Uint8Array)) fail(path, `expected bytes (a Uint8Array), found ${found(x)}`);
  return x;
}

type WordArray<T> = { new (n: number): T; new (buffer: ArrayBuffer, byteOffset: number, length: number): T; readonly BYTES_PER_ELEMENT: number };

/** A little-endian typed array held in bytes: a view when aligned, else a copy. */
function words<T>(x: unknown, path: string, ctor: WordArray<T>, what: string, length?: number): T {
  const b = bytes(x, path);
  const size = ctor.BYTES_PER_ELEMENT;
  if (b.byteLength % size !== 0) fail(path, `expected ${what} values (${size} bytes each), found ${b.byteLength} bytes`);
  const n = b.byteLength / size;
  if (length !== undefined && n !== length) fail(path, `expected ${length} ${what} values (${length * size} bytes), found ${n} (${b.byteLength} bytes)`);
  if (b.byteOffset % size === 0) return new ctor(b.buffer as ArrayBuffer, b.byteOffset, n);
  const copy = new Uint8Array(b.byteLength);
  copy.set(b);
  return new ctor(copy.buffer, 0, n);
}

export const u32s = (x: unknown, path: string, length?: number): Uint32Array => words(x, path, Uint32Array, 'u32', length);
export const i32s = (x: unknown, path: string, length?: number): Int32Array => words(x, path, Int32Array, 'i32', length);
export const f64s = (x: unknown, path: string, length?: number): Float64Array => words(x, path, Float64Array, 'f64', length);

/**
 * Expand runs (see RunWriter) of frame numbers into the pfns they stand for, each in
 * [lo, hi), at most `max` of them.
 */
export function expandRuns(x: unknown, path: string, lo: number, hi: number, max: number): Int32Array {
  const runs = i32s(x, path);
  if (runs.length % 2 !== 0) fail(path, `expected (start, length) pairs, found ${runs.length} numbers`);
  let total = 0;
  for (let r = 0; r < runs.length; r += 2) {
    const start = runs[r]!;
    const len = runs[r + 1]!;
    const last = start + (len > 0 ? len - 1 : len + 1);
    if (len === 0) fail(`${path}[${r / 2}]`, 'a run of length 0');
    if (start < lo || start >= hi || last < lo || last >= hi) fail(`${path}[${r / 2}]`, `frames ${start}..${last} are out of range: expected pfns in [${lo}, ${hi})`);
    total += Math.abs(len);
    if (total > max) fail(path, `lists more than the ${max} frames there can be`);
  }
  const out = new Int32Array(total);
  let o = 0;
  for (let r = 0; r < runs.length; r += 2) {
    const start = runs[r]!;
    const len = runs[r + 1]!;
    if (len > 0) for (let i = 0; i < len; i++) out[o++] = start + i;
    else for (let i = 0; i < -len; i++) out[o++] = start - i;
  }
  return out;
}

/** Index of p in the ascending array a (p is known to be there). */
export function lowerBound(a: Int32Array, p: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < p) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
