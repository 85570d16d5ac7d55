/**
 * Snapshots of a Linux 6.18 kernel: everything 6.x adds to KSM's state (stable node
 * chains and dups, KSM zero pages, smart scan's ages and skips, the scan-time
 * advisor, whole-process merging, per-node trees on two NUMA nodes, every knob) is
 * saved and restored, so that a restored kernel goes on exactly as the original: the
 * same statistics, the same ksm_stat, the same bytes and the same pfns. Follows the
 * 2.6.33 continuation tests of snapshot.test.ts.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { pack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { Kernel, KernelError, PAGE_SIZE, type Process } from '../../src/index.js';
import { Prng } from '../../src/lib/prng.js';
import { checkKernelImage, restoreKernel, saveKernel } from '../../src/ksm/kernel.js';
import type { KsmImage } from '../../src/ksm/snapshot.js';
import type { KernelImage } from '../../src/mm/snapshot.js';
import { loadImageCatalog } from '../../src/scenario/images.js';
import { ScenarioRun, runScenario } from '../../src/scenario/run.js';
import { loadScenario } from '../../src/scenario/load.js';
import { KSM_DIR } from './helpers.js';

const P = PAGE_SIZE;
const KSM_FILES_618 = [
  'pages_scanned',
  'pages_shared',
  'pages_sharing',
  'pages_unshared',
  'pages_volatile',
  'pages_skipped',
  'ksm_zero_pages',
  'full_scans',
  'stable_node_chains',
  'stable_node_dups',
  'general_profit',
  'run',
  'pages_to_scan',
  'sleep_millisecs',
  'max_page_sharing',
  'stable_node_chains_prune_millisecs',
  'use_zero_pages',
  'merge_across_nodes',
  'smart_scan',
  'advisor_mode',
  'advisor_max_cpu',
  'advisor_min_pages_to_scan',
  'advisor_max_pages_to_scan',
  'advisor_target_scan_time',
];

const packed = (img: KernelImage): Buffer => pack(img);

/**
 * A 6.18 kernel on two NUMA nodes (blocks 0-3 node 0, 4-7 node 1), per-node trees
 * (merge_across_nodes 0), max_page_sharing 2 so that chains come quickly, zero pages
 * on, smart scan on (its default).
 */
function newKernel(): Kernel {
  const k = new Kernel({ memoryMiB: 32, swapMiB: 8, blockMiB: 4, seed: 11, version: '6.18', nodes: 2 });
  for (const [f, v] of [
    ['merge_across_nodes', '0'],
    ['max_page_sharing', '2'],
    ['use_zero_pages', '1'],
    ['pages_to_scan', '40'],
    ['sleep_millisecs', '5'],
    ['stable_node_chains_prune_millisecs', '30'],
    ['run', '1'],
  ]) {
    k.sysfs.write(`${KSM_DIR}/${f}`, v!);
  }
  return k;
}

/** Save, check, restore, check invariants, save again: the two images must pack to the same bytes. */
function roundTrip(k: Kernel): Kernel {
  const img = saveKernel(k);
  expect(checkKernelImage(img)).toBeNull();
  const r = restoreKernel(img);
  expect(r.version).toBe(k.version);
  r.checkInvariants();
  expect(Buffer.compare(packed(saveKernel(r)), packed(img))).toBe(0);
  return r;
}

/** Everything a user can see: every KSM file, each process's ksm_stat, node, areas, pagemap and bytes, meminfo, vmstat. */
function observe(k: Kernel): unknown {
  return {
    now: k.now,
    ksm: KSM_FILES_618.map((f) => `${f} ${k.sysfs.read(`${KSM_DIR}/${f}`).trim()}`),
    meminfo: k.meminfo(),
    vmstat: { ...k.vmstat },
    processes: [...k.processes.values()].map((p) => {
      const maps = p.maps();
      const pfns: (number | null)[] = [];
      for (const m of maps) for (let a = m.start; a < m.end; a += P) pfns.push(p.pfnOf(a));
      // pagemap first: reading faults pages in.
      const digest = createHash('sha256');
      for (const m of maps) digest.update(p.peekMem(m.start, m.end - m.start));
      return {
        pid: p.pid,
        name: p.name,
        node: p.node,
        ksmStat: k.sysfs.read(`/proc/${p.pid}/ksm_stat`),
        mergeAny: p.prctl('PR_GET_MEMORY_MERGE'),
        maps,
        pfns,
        bytes: digest.digest('hex'),
      };
    }),
  };
}

type OpKind = 'write' | 'memset' | 'fork' | 'exit' | 'spawn' | 'mmap' | 'madvise' | 'prctl' | 'advance' | 'reclaim' | 'migrate' | 'knob';

const OP_KINDS: OpKind[] = [
  ...Array<OpKind>(5).fill('write'),
  ...Array<OpKind>(3).fill('memset'),
  'fork',
  'exit',
  'spawn',
  'mmap',
  ...Array<OpKind>(2).fill('madvise'),
  'prctl',
  ...Array<OpKind>(7).fill('advance'),
  'reclaim',
  ...Array<OpKind>(2).fill('migrate'),
  'knob',
];

interface Op {
  kind: OpKind;
  a: number;
  b: number;
  c: number;
  d: number;
}

function genOp(rng: Prng): Op {
  return { kind: rng.pick(OP_KINDS), a: rng.nextU32(), b: rng.nextU32(), c: rng.nextU32(), d: rng.nextU32() };
}

function pickRange(p: Process, op: Op, maxPages: number): { addr: number; len: number } | null {
  const maps = p.maps();
  if (maps.length === 0) return null;
  const m = maps[op.b % maps.length]!;
  const pages = (m.end - m.start) / P;
  const first = op.c % pages;
  const n = 1 + (op.d % Math.min(maxPages, pages - first));
  return { addr: m.start + first * P, len: n * P };
}

/** 6.18 knob writes: some refused (EBUSY while pages are shared, EINVAL for pages_to_scan under the advisor). */
const KNOB_WRITES: readonly [string, string][] = [
  ['pages_to_scan', '25'],
  ['pages_to_scan', '60'],
  ['sleep_millisecs', '3'],
  ['use_zero_pages', '0'],
  ['use_zero_pages', '1'],
  ['smart_scan', '0'],
  ['smart_scan', '1'],
  ['stable_node_chains_prune_millisecs', '10'],
  ['advisor_mode', 'scan-time'],
  ['advisor_mode', 'none'],
  ['max_page_sharing', '3'],
  ['merge_across_nodes', '1'],
];

/** Apply one operation, interpreted against k's own state; returns what happened. */
function applyOp(k: Kernel, op: Op): string {
  const procs = [...k.processes.values()];
  const p = procs.length > 0 ? procs[op.a % procs.length]! : null;
  try {
    switch (op.kind) {
      case 'write': {
        const r = p && pickRange(p, op, 1);
        if (r === null) return 'none';
        const bytes = new Uint8Array(1 + (op.d % 300)).fill(op.d >>> 24);
        p!.write(r.addr + (op.d % (P - bytes.length)), bytes);
        return 'ok';
      }
      case 'memset': {
        const r = p && pickRange(p, op, 6);
        if (r === null) return 'none';
        // Zero pages among a few fill values, so that pages come out equal.
        p!.memset(r.addr, [0, 0, 0x11, 0x22][op.a % 4]!, r.len);
        return 'ok';
      }
      case 'fork':
        if (p === null || procs.length >= 6) return 'none';
        return `pid ${p.fork(`${p.name}.${op.b % 10}`).pid}`;
      case 'exit':
        if (p === null || procs.length <= 2) return 'none';
        p.exit();
        return 'ok';
      case 'spawn': {
        if (procs.length >= 6) return 'none';
        const q = k.spawn(`s${op.b % 100}`, { node: op.c % 2 });
        // Whole-process merging for one in two: the area is mergeable from birth.
        if (op.d % 2 === 0) q.prctl('PR_SET_MEMORY_MERGE', 1);
        const addr = q.mmap(16 * P);
        q.memset(addr, [0, 0x11, 0x22][op.c % 3]!, 16 * P);
        if (op.d % 2 !== 0) q.madvise(addr, 16 * P, 'MADV_MERGEABLE');
        return `pid ${q.pid}`;
      }
      case 'mmap': {
        if (p === null) return 'none';
        const n = 1 + (op.b % 16);
        const addr = p.mmap(n * P);
        p.memset(addr, op.d & 0x33, n * P);
        return `at ${addr}`;
      }
      case 'madvise': {
        const r = p && pickRange(p, op, 24);
        if (r === null) return 'none';
        p!.madvise(r.addr, r.len, (['MADV_MERGEABLE', 'MADV_MERGEABLE', 'MADV_UNMERGEABLE', 'MADV_DONTNEED'] as const)[op.a % 4]!);
        return 'ok';
      }
      case 'prctl':
        if (p === null) return 'none';
        return `${p.prctl('PR_SET_MEMORY_MERGE', op.b % 3 === 0 ? 0 : 1)}`;
      case 'advance':
        k.advance(1 + (op.b % 40));
        return 'ok';
      case 'reclaim':
        return `freed ${k.reclaim(1 + (op.b % 32))}`;
      case 'migrate': {
        const r = p && pickRange(p, op, 1);
        const pfn = r === null ? null : p!.pfnOf(r.addr);
        if (pfn === null || pfn === 0) return 'none';
        return `to ${k.migratePage(pfn, op.c % 2)}`;
      }
      case 'knob': {
        const [f, v] = KNOB_WRITES[op.b % KNOB_WRITES.length]!;
        k.sysfs.write(`${KSM_DIR}/${f}`, v);
        return 'ok';
      }
      default:
        throw new Error(`op ${op.kind as string}`);
    }
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
}

/** The 6.x state a snapshot at this moment carries. */
function features(k: Kernel): { chains: boolean; zeroPages: boolean; skips: boolean; mergeAny: boolean; nodeTrees: boolean } {
  const ksm = k.ksmEngine;
  let skips = false;
  for (let s = ksm.mmHead.next; s !== ksm.mmHead; s = s.next) for (let it = s.rmapList; it !== null; it = it.rmapList) if (it.remainingSkips > 0) skips = true;
  return {
    chains: ksm.stableNodeChains > 0,
    zeroPages: ksm.ksmZeroPages > 0,
    skips,
    mergeAny: [...k.processes.values()].some((p) => p.prctl('PR_GET_MEMORY_MERGE') === 1),
    nodeTrees: ksm.nrNodeIds === 2 && ksm.stableRoots[1]!.node !== null,
  };
}

describe('a 6.18 kernel: round trips', () => {
  it('chains and dups, zero pages, smart-scan skips, prctl and two per-node trees all survive, and save to the same bytes', () => {
    const k = newKernel();
    const a = k.spawn('a', { node: 0 });
    a.prctl('PR_SET_MEMORY_MERGE', 1);
    const b = k.spawn('b', { node: 1 });
    for (const p of [a, b]) {
      const addr = p.mmap(24 * P);
      // 8 pages of one content (chains at max_page_sharing 2), 8 zero pages, 8 unique.
      p.memset(addr, 0x5a, 8 * P);
      p.memset(addr + 8 * P, 0, 8 * P);
      for (let i = 16; i < 24; i++) p.write(addr + i * P, Uint8Array.of(p.pid, i, 1));
      if (p === b) p.madvise(addr, 24 * P, 'MADV_MERGEABLE');
    }
    expect(k.ksmd.runFullScans(4)).toBe(4);
    expect(features(k)).toEqual({ chains: true, zeroPages: true, skips: true, mergeAny: true, nodeTrees: true });
    const r = roundTrip(k);
    expect(observe(r)).toEqual(observe(k));
    // The image says what it is.
    const img = saveKernel(k);
    const part = img.parts.ksm as KsmImage;
    expect([part.version, img.options.nodes, img.mem.blocks.map((bl) => bl.node), img.mms.map((m) => m.node)]).toEqual(['6.18', 2, [0, 0, 0, 0, 1, 1, 1, 1], [0, 1]]);
    expect([part.stableNodeChains, part.stableNodeDups, part.ksmZeroPages, part.nrNodeIds, part.knobs.maxPageSharing, part.knobs.mergeAcrossNodes]).toEqual([2, 8, 16, 2, 2, 0]);
    // Both go on alike.
    for (const kk of [k, r]) {
      kk.processes.get(a.pid)!.write(kk.processes.get(a.pid)!.maps()[0]!.start, Uint8Array.of(9));
      expect(kk.ksmd.runFullScans(3)).toBe(3);
    }
    expect(observe(r)).toEqual(observe(k));
  });

  it('a 2.6.33 image says 2.6.33 and carries the 6.x fields at their inert values', () => {
    const k = new Kernel({ memoryMiB: 16, blockMiB: 4 });
    const part = saveKernel(k).parts.ksm as KsmImage;
    expect([part.version, part.nrNodeIds, part.knobs]).toEqual([
      '2.6.33',
      1,
      {
        run: 0,
        pagesToScan: 100,
        sleepMillisecs: 20,
        maxKernelPages: '1024',
        maxPageSharing: 0,
        stableNodeChainsPruneMillisecs: 0,
        useZeroPages: 0,
        mergeAcrossNodes: 1,
        smartScan: 0,
        advisorMode: 0,
        advisorMaxCpu: 0,
        advisorMinPagesToScan: '0',
        advisorMaxPagesToScan: '0',
        advisorTargetScanTime: '0',
      },
    ]);
    expect(restoreKernel(saveKernel(k)).version).toBe('2.6.33');
  });
});

describe('a 6.18 kernel: continuation under random operations', () => {
  it('under 200 random operations, snapshotted at five points, each twin goes on exactly like the original', () => {
    const k = newKernel();
    const setup = k.spawn('guest', { node: 0 });
    setup.prctl('PR_SET_MEMORY_MERGE', 1);
    const addr = setup.mmap(48 * P);
    for (let i = 0; i < 48; i++) setup.memset(addr + i * P, i % 3 === 0 ? 0 : i % 5, P);
    setup.fork('guest.1');
    const other = k.spawn('other', { node: 1 });
    const oaddr = other.mmap(32 * P);
    for (let i = 0; i < 32; i++) other.memset(oaddr + i * P, i % 4, P);
    other.madvise(oaddr, 32 * P, 'MADV_MERGEABLE');
    const rng = new Prng(618);
    const twins: { at: number; k: Kernel; seen: ReturnType<typeof features> }[] = [];
    const STEPS = 200;
    for (let step = 0; step < STEPS; step++) {
      const op = genOp(rng);
      const outcome = applyOp(k, op);
      for (const t of twins) expect(`${step} ${op.kind} ${applyOp(t.k, op)}`).toBe(`${step} ${op.kind} ${outcome}`);
      if (step === 15 || step === 50 || step === 90 || step === 130 || step === 170) {
        const r = restoreKernel(saveKernel(k));
        r.checkInvariants();
        twins.push({ at: step, k: r, seen: features(k) });
      }
      const seen = observe(k);
      for (const t of twins) expect(observe(t.k)).toEqual(seen);
      if (step % 40 === 39) {
        k.checkInvariants();
        for (const t of twins) t.k.checkInvariants();
      }
    }
    // What the snapshots carried (the seeded mix decides): every kind of 6.x state, in most.
    const all = { chains: true, zeroPages: true, skips: true, mergeAny: true, nodeTrees: true };
    expect(twins.map((t) => [t.at, t.seen])).toEqual([
      [15, { ...all, skips: false }],
      [50, all],
      [90, all],
      [130, { ...all, zeroPages: false }],
      [170, all],
    ]);
    // The run did what it should: merging into chains, skipping, zero pages, swapping.
    expect(['full_scans', 'pages_sharing', 'stable_node_dups', 'pages_skipped', 'ksm_zero_pages'].map((f) => Number(k.sysfs.read(`${KSM_DIR}/${f}`)))).toEqual([163, 123, 47, 1885, 18]);
    expect(k.vmstat.pswpout).toBe(67);
    const final = packed(saveKernel(k));
    for (const t of twins) expect(Buffer.compare(packed(saveKernel(t.k)), final)).toBe(0);
  });
});

describe('a 6.18 host: the kernels.yaml fleet saved and resumed', () => {
  const images = loadImageCatalog();
  const scenario = loadScenario(fileURLToPath(new URL('../../examples/kernels.yaml', import.meta.url)), images);

  // Saved mid-run (both guests up, ksmd mid-way through its merging) and resumed, each
  // 6.18 variant ends as its uninterrupted run: every sample, event and summary line.
  for (const variant of ['linux-6.18', 'linux-6.18-zero-pages']) {
    it(`${variant}: saved at 17 s and resumed, it ends as the uninterrupted run`, () => {
      const [whole] = runScenario(scenario, { images, variant });
      let snap: Uint8Array | null = null;
      const [straight] = runScenario(scenario, { images, variant, saveAt: 17_000, onSave: (b) => (snap = b) });
      expect(straight).toEqual(whole);
      const resumed = ScenarioRun.resume(snap!, images);
      expect(resumed.host.kernel.version).toBe('6.18');
      expect(resumed.finish({ checkInvariants: true })).toEqual(whole);
    });
  }
});

describe('bad 6.18 images are refused, naming what is wrong', () => {
  /** A 6.18 kernel on two nodes with chains, zero pages and both trees in use. */
  function image(): KernelImage {
    const k = newKernel();
    for (const node of [0, 1]) {
      const p = k.spawn(`p${node}`, { node });
      const addr = p.mmap(12 * P);
      p.memset(addr, 0x5a, 8 * P);
      p.memset(addr + 8 * P, 0, 4 * P);
      p.madvise(addr, 12 * P, 'MADV_MERGEABLE');
    }
    expect(k.ksmd.runFullScans(3)).toBe(3);
    return saveKernel(k);
  }
  const ksmOf = (img: KernelImage): KsmImage => img.parts.ksm as KsmImage;

  function refused(img: unknown, message: string): void {
    expect(checkKernelImage(img)).toBe(message);
    expect(() => restoreKernel(img as KernelImage)).toThrow(new KernelError('EINVAL', `bad kernel image: ${message}`));
  }

  it('the image is sound to start with', () => {
    const img = image();
    expect(checkKernelImage(img)).toBeNull();
    const ksm = ksmOf(img);
    expect([ksm.stableNodeChains, ksm.stableNodeDups, ksm.ksmZeroPages, ksm.nrNodeIds]).toEqual([2, 8, 8, 2]);
  });

  it('a kernel version there is no profile for', () => {
    const img = image();
    (ksmOf(img) as { version: string }).version = '7.2';
    refused(img, 'parts.ksm.version: Linux 7.2: this Samepage has profiles for 2.6.33, 6.18 only');
  });

  it('a 6.x knob set in a 2.6.33 image', () => {
    const img = saveKernel(new Kernel({ memoryMiB: 16, blockMiB: 4 }));
    ksmOf(img).knobs.maxPageSharing = 256;
    refused(img, 'parts.ksm.knobs.maxPageSharing: Linux 2.6.33 has no such knob: expected 0 (inert), found 256');
  });

  it('a knob out of its range', () => {
    const img = image();
    ksmOf(img).knobs.maxPageSharing = 1;
    refused(img, 'parts.ksm.knobs.maxPageSharing: expected an integer in [2, 2147483647], found number 1');
    const img2 = image();
    ksmOf(img2).knobs.advisorTargetScanTime = '0';
    refused(img2, 'parts.ksm.knobs.advisorTargetScanTime: expected 1 to 18446744073709551615, found 0');
  });

  it('per-node trees in use that merge_across_nodes says are one', () => {
    const img = image();
    ksmOf(img).knobs.mergeAcrossNodes = 1;
    refused(img, 'parts.ksm.nrNodeIds: expected 1 with merge_across_nodes 1 and 2 nodes, found 2');
  });

  it('a dup on two chains', () => {
    const img = image();
    const ksm = ksmOf(img);
    const dups = new Uint32Array(ksm.nodeDups.slice().buffer);
    dups[1] = dups[0]!;
    ksm.nodeDups = new Uint8Array(dups.buffer);
    refused(img, `parts.ksm.nodeDups[1]: stable node ${dups[0]} is past the ${ksm.nodeKpfn.byteLength / 4} there are, not linked as a dup, or on two chains`);
  });

  it('a chain counted that is not there', () => {
    const img = image();
    ksmOf(img).stableNodeChains = 3;
    refused(img, 'parts.ksm.stableNodeChains: 2 chains in the image, stable_node_chains is 3');
  });

  it('KSM zero pages the mms do not account for', () => {
    const img = image();
    ksmOf(img).ksmZeroPages = 9;
    refused(img, 'parts.ksm.zeroPages: the mms count 8 KSM zero pages, ksm_zero_pages is 9');
  });

  it('a smart-scan skip count skip_age() never gives', () => {
    const img = image();
    const skips = ksmOf(img).itemSkips.slice();
    skips[0] = 9;
    ksmOf(img).itemSkips = skips;
    refused(img, 'parts.ksm.itemSkips[0]: expected at most 8 scans to skip, found 9');
  });

  it('a memory block on another node than the options make it', () => {
    const img = image();
    img.mem.blocks[4]!.node = 0;
    refused(img, 'mem.blocks[4].node: expected 1 (block 4 of 8 with 2 nodes), found number 0');
  });

  it('a process on a node there is not', () => {
    const img = image();
    img.mms[1]!.node = 2;
    refused(img, 'mms[1].node: expected an integer in [0, 1], found number 2');
  });
});
