/**
 * LTP ksm01 (testcases/kernel/mem/ksm/ksm01.c -> mem/lib/mem.c create_same_memory())
 * with its three processes, at size 8 MiB per child instead of 128 (unit 1 MiB, as
 * LTP's default): 3 x 8 x 256 = 6144 pages.
 *
 * Each child mmaps size/unit areas of unit MiB, MADV_MERGEABLE each, and stops. The
 * parent sets run 1, pages_to_scan size*pages*num, sleep_millisecs 0. Then, stage by
 * stage, the children memset their memory (ksm_child_memset) and the parent waits
 * until the four statistics stop changing (wait_ksmd_done) and checks them
 * (group_check). The children then verify their memory. LTP's data and table:
 *
 *            child 0   child 1             child 2    run shared sharing         volatile unshared
 *   stage 0  'c'       'a'                 'a'        1   2      N - 2           0        0
 *   stage 1  'c'       'b'                 'a'        1   3      N - 3           0        0
 *   stage 2  'd'       'd'                 'd'        1   1      N - 1           0        0
 *   stage 3  'd'       'd', last byte 'e'  'd'        1   1      N - 2           0        1
 *   run=2                                             2   0      0               0        0
 *   run=0                                             0   0      0               0        0
 *
 * with N = size * num * pages, and sleep_millisecs 0, pages_to_scan N checked each
 * time. wait_ksmd_done() samples every 10 s; here a sample is taken after each full
 * scan, which is enough: no stage has two equal consecutive samples before it has
 * converged (worked out per stage below).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { PAGE_SIZE, type Process } from '../../src/index.js';
import { KSM_DIR, PAGES_TO_SCAN, RUN, SLEEP_MILLISECS, newKernel, readKsm, slotOrder } from './helpers.js';

const MB = 1024 * 1024;
const size = 8;
const num = 3;
const unit = 1;
const pages = MB / PAGE_SIZE;
const N = size * num * pages;

interface MergeData {
  data: string;
  mergeableSize: number;
}

// create_same_memory(): ksm_data0, ksm_data1, ksm_data2.
const ksmData: MergeData[][] = [
  [
    { data: 'c', mergeableSize: size * MB },
    { data: 'c', mergeableSize: size * MB },
    { data: 'd', mergeableSize: size * MB },
    { data: 'd', mergeableSize: size * MB },
  ],
  [
    { data: 'a', mergeableSize: size * MB },
    { data: 'b', mergeableSize: size * MB },
    { data: 'd', mergeableSize: size * MB },
    { data: 'd', mergeableSize: size * MB - 1 },
  ],
  [
    { data: 'a', mergeableSize: size * MB },
    { data: 'a', mergeableSize: size * MB },
    { data: 'd', mergeableSize: size * MB },
    { data: 'd', mergeableSize: size * MB },
  ],
];

interface Child {
  p: Process;
  memory: number[];
}

/** create_ksm_child() up to its first raise(SIGSTOP). */
function createKsmChild(k: ReturnType<typeof newKernel>, childNum: number): Child {
  const p = k.spawn(`ksm01-child${childNum}`);
  const totalUnit = size / unit;
  const memory: number[] = [];
  for (let j = 0; j < totalUnit; j++) {
    memory[j] = p.mmap(unit * MB, { prot: 'rw' });
    p.madvise(memory[j]!, unit * MB, 'MADV_MERGEABLE');
  }
  return { p, memory };
}

/** ksm_child_memset() */
function ksmChildMemset(child: Child, d: MergeData): void {
  const totalUnit = size / unit;
  for (let j = 0; j < totalUnit; j++) child.p.memset(child.memory[j]!, d.data.charCodeAt(0), unit * MB);
  // "if it contains unshared page, then set 'e' char at the end of the last page"
  if (d.mergeableSize < size * MB) child.p.memset(child.memory[totalUnit - 1]! + unit * MB - 1, 'e'.charCodeAt(0), 1);
}

/** verify(): the child's memory holds `data` everywhere, and 'e' at the end when so written. */
function verifyChild(child: Child, d: MergeData): boolean {
  const totalUnit = size / unit;
  for (let j = 0; j < totalUnit; j++) {
    const expected = Buffer.alloc(unit * MB, d.data);
    if (d.mergeableSize < size * MB && j === totalUnit - 1) expected[unit * MB - 1] = 'e'.charCodeAt(0);
    if (!Buffer.from(child.p.read(child.memory[j]!, unit * MB)).equals(expected)) return false;
  }
  return true;
}

interface GroupCheck {
  run: number;
  pages_shared: number;
  pages_sharing: number;
  pages_volatile: number;
  pages_unshared: number;
  sleep_millisecs: number;
  pages_to_scan: number;
}

function groupValues(k: ReturnType<typeof newKernel>): GroupCheck {
  return {
    run: readKsm(k, 'run'),
    pages_shared: readKsm(k, 'pages_shared'),
    pages_sharing: readKsm(k, 'pages_sharing'),
    pages_volatile: readKsm(k, 'pages_volatile'),
    pages_unshared: readKsm(k, 'pages_unshared'),
    sleep_millisecs: readKsm(k, 'sleep_millisecs'),
    pages_to_scan: readKsm(k, 'pages_to_scan'),
  };
}

/** group_check()'s expectations, argument for argument. */
function expected(run: number, shared: number, sharing: number, volatile: number, unshared: number, sleepMs: number, toScan: number): GroupCheck {
  return {
    run,
    pages_shared: shared,
    pages_sharing: sharing,
    pages_volatile: volatile,
    pages_unshared: unshared,
    sleep_millisecs: sleepMs,
    pages_to_scan: toScan,
  };
}

/**
 * wait_ksmd_done(): sample the four statistics until two samples in a row agree
 * (the first is compared with zeros). Returns the number of samples taken.
 */
function waitKsmdDone(k: ReturnType<typeof newKernel>): number {
  let old = [0, 0, 0, 0];
  for (let count = 1; ; count++) {
    k.ksmd.runFullScans(1);
    const now = ['pages_shared', 'pages_sharing', 'pages_volatile', 'pages_unshared'].map((f) => readKsm(k, f));
    if (now.every((v, i) => v === old[i])) return count;
    old = now;
    if (count > 20) throw new Error('KSM statistics never settle');
  }
}

describe(`LTP ksm01: create_same_memory(size ${size}, num ${num}, unit ${unit}), N = ${N}`, () => {
  const k = newKernel(64);
  const free0 = k.mem.nrFreeOnline;
  const children: Child[] = [];

  beforeAll(() => {
    for (let i = 0; i < num; i++) children.push(createKsmChild(k, i));
    // "KSM merging..."
    k.sysfs.write(RUN, '1');
    k.sysfs.write(PAGES_TO_SCAN, `${size * pages * num}`);
    k.sysfs.write(SLEEP_MILLISECS, '0');
    k.checkInvariants();
  });

  /** Resume the children: each memsets its data for `stage`. */
  function resume(stage: number): void {
    for (let i = 0; i < num; i++) ksmChildMemset(children[i]!, ksmData[i]![stage]!);
    k.checkInvariants();
  }

  it("stage 0 ('c', 'a', 'a'): pages_shared 2, pages_sharing N - 2, volatile 0, unshared 0", () => {
    resume(0);
    // Samples: scan 1 records checksums (volatile N); scan 2 merges each content
    // into one KSM page; scan 3 changes nothing.
    expect(waitKsmdDone(k)).toBe(3);
    expect(groupValues(k)).toEqual(expected(1, 2, size * num * pages - 2, 0, 0, 0, size * pages * num));
    children.forEach((c, i) => expect(verifyChild(c, ksmData[i]![0]!)).toBe(true));
    expect(new Set(children.flatMap((c) => c.memory.map((m) => c.p.pfnOf(m)))).size).toBe(2);
    k.checkInvariants();
  });

  it("stage 1 ('c', 'b', 'a'): pages_shared 3, pages_sharing N - 3, volatile 0, unshared 0", () => {
    resume(1);
    // Scan 1: child 1's rmap_items leave the 'a' node, which child 2 still maps
    // (pages_sharing - 2048); 'b' checksums recorded (volatile 2048). Scan 2: 'b'
    // merges. Scan 3: no change.
    expect(waitKsmdDone(k)).toBe(3);
    expect(groupValues(k)).toEqual(expected(1, 3, size * num * pages - 3, 0, 0, 0, size * pages * num));
    children.forEach((c, i) => expect(verifyChild(c, ksmData[i]![1]!)).toBe(true));
    k.checkInvariants();
  });

  it("stage 2 ('d', 'd', 'd'): pages_shared 1, pages_sharing N - 1, volatile 0, unshared 0", () => {
    resume(2);
    // Scan 1: every KSM page was copied away and freed; the stale nodes go as they
    // are met; new checksums everywhere (volatile N). Scan 2: one 'd' KSM page.
    expect(waitKsmdDone(k)).toBe(3);
    expect(groupValues(k)).toEqual(expected(1, 1, size * num * pages - 1, 0, 0, 0, size * pages * num));
    children.forEach((c, i) => expect(verifyChild(c, ksmData[i]![2]!)).toBe(true));
    k.checkInvariants();
  });

  it("stage 3 ('d', 'd' but one 'e', 'd'): pages_shared 1, pages_sharing N - 2, volatile 0, unshared 1", () => {
    resume(3);
    // Scan 1: the old 'd' node is stale; checksums of 'd' pages are unchanged, so they
    // merge at once; the page ending in 'e' has a new checksum (volatile 1). Scan 2:
    // it goes into the unstable tree (unshared 1). Scan 3: no change.
    expect(waitKsmdDone(k)).toBe(3);
    expect(groupValues(k)).toEqual(expected(1, 1, size * num * pages - 2, 0, 1, 0, size * pages * num));
    children.forEach((c, i) => expect(verifyChild(c, ksmData[i]![3]!)).toBe(true));
    k.checkInvariants();
  });

  it('run=2 ("KSM unmerging..."): all 0, the children read back their stage-3 memory and exit', () => {
    k.sysfs.write(RUN, '2');
    k.checkInvariants();
    // resume_ksm_children(): each child verifies its last stage and finishes.
    children.forEach((c, i) => expect(verifyChild(c, ksmData[i]![3]!)).toBe(true));
    const frames = children.flatMap((c) => c.memory.flatMap((m) => Array.from({ length: unit * pages }, (_, x) => c.p.pfnOf(m + x * PAGE_SIZE))));
    expect(new Set(frames).size).toBe(N);
    for (const c of children) c.p.exit();
    k.checkInvariants();
    // ksmd does not run with run=2: the first sample already equals the zeros.
    expect(waitKsmdDone(k)).toBe(1);
    expect(groupValues(k)).toEqual(expected(2, 0, 0, 0, 0, 0, size * pages * num));
    // Their rmap_items were all freed by run=2, so __ksm_exit freed the slots at once.
    expect(slotOrder(k)).toEqual([]);
    expect(k.mem.nrFreeOnline).toBe(free0);
  });

  it('run=0 ("stop KSM."): all 0', () => {
    k.sysfs.write(RUN, '0');
    expect(waitKsmdDone(k)).toBe(1);
    expect(groupValues(k)).toEqual(expected(0, 0, 0, 0, 0, 0, size * pages * num));
    expect(k.sysfs.read(`${KSM_DIR}/full_scans`)).toBe('0\n');
    k.checkInvariants();
  });
});
