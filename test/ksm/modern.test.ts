/**
 * Linux 6.18's KSM, behaviour by behaviour, with exact numbers. The sequences of
 * statistics marked "real" were recorded on the development machine's real 6.18
 * KSM running the same steps (a C program under the real-KSM lock, exact full scans:
 * pages_to_scan 1000000, run=0 in ksmd's nap after each one); the differential
 * tests (test/oracle/differential-6.18.test.ts) run most of them again on every run.
 */
import { describe, expect, it } from 'vitest';
import { Kernel, PAGE_SIZE, type Process } from '../../src/index.js';
import { KSMD_NS_PER_PAGE } from '../../src/ksm/advisor.js';
import { KSM_DIR, errnoOf } from './helpers.js';

const P = PAGE_SIZE;

function kernel618(knobs: Record<string, string> = {}, opts: { nodes?: number; memoryMiB?: number } = {}): Kernel {
  const k = new Kernel({ memoryMiB: opts.memoryMiB ?? 64, blockMiB: 16, version: '6.18', nodes: opts.nodes });
  k.sysfs.write(`${KSM_DIR}/pages_to_scan`, '1000000');
  for (const [f, v] of Object.entries(knobs)) k.sysfs.write(`${KSM_DIR}/${f}`, v);
  k.sysfs.write(`${KSM_DIR}/run`, '1');
  return k;
}

const num = (k: Kernel, f: string): number => Number(k.sysfs.read(`${KSM_DIR}/${f}`));

/** shared, sharing, unshared, volatile, ksm_zero_pages, chains, dups, general_profit */
function row(k: Kernel): number[] {
  k.checkInvariants();
  return ['pages_shared', 'pages_sharing', 'pages_unshared', 'pages_volatile', 'ksm_zero_pages', 'stable_node_chains', 'stable_node_dups', 'general_profit'].map((f) => num(k, f));
}

function scan(k: Kernel, n = 1): number[] {
  expect(k.ksmd.runFullScans(n)).toBe(n);
  return row(k);
}

function area(p: Process, pages: number, byte: number): number {
  const a = p.mmap(pages * P);
  p.memset(a, byte, pages * P);
  return a;
}

describe('stable node chains and dups (max_page_sharing)', () => {
  it('real: 7 identical pages with max_page_sharing 3: two dups under a chain, a fork past the cap, pruning and collapse', () => {
    const k = kernel618({ max_page_sharing: '3' });
    const a = k.spawn('a');
    const addr = area(a, 7, 0x61);
    a.madvise(addr, 7 * P, 'MADV_MERGEABLE');
    // Scan 1 records checksums. Scan 2: pages 0+1 make K1, page 2 fills it to 3,
    // page 3 waits in the unstable tree (K1 is full), page 4 pairs with it: K2, a
    // dup beside K1 under a new chain; page 5 joins K2; page 6 finds both full.
    expect(scan(k)).toEqual([0, 0, 0, 7, 0, 0, 0, -448]);
    expect(scan(k)).toEqual([2, 4, 1, 0, 0, 1, 2, 15936]);
    expect(scan(k, 2)).toEqual([2, 4, 1, 0, 0, 1, 2, 15936]);
    // The child maps both KSM pages already: its six mappings join past the cap.
    const b = a.fork('b');
    expect(scan(k)).toEqual([2, 10, 0, 2, 0, 1, 2, 40064]);
    expect(scan(k, 2)).toEqual([2, 10, 1, 1, 0, 1, 2, 40064]);
    b.exit();
    expect(scan(k, 2)).toEqual([2, 4, 1, 0, 0, 1, 2, 15936]);
    for (const j of [4, 5, 6]) a.write(addr + j * P, Uint8Array.of(0x62));
    expect(scan(k)).toEqual([2, 2, 0, 3, 0, 1, 2, 7744]);
    expect(scan(k, 2)).toEqual([3, 3, 0, 1, 0, 1, 2, 11840]);
    for (const j of [0, 1, 2, 3]) a.write(addr + j * P, Uint8Array.of(0x63));
    // K1 and K2 went stale as their mappers left: the chain is empty until a search
    // walks it, frees it, and makes plain nodes again.
    expect(scan(k)).toEqual([1, 1, 0, 5, 0, 1, 0, 3648]);
    expect(scan(k)).toEqual([2, 3, 1, 1, 0, 0, 0, 11840]);
    expect(scan(k)).toEqual([2, 3, 0, 2, 0, 0, 0, 11840]);
  });

  it('real: 7 identical pages with max_page_sharing 2 and smart scan off: three dups', () => {
    const k = kernel618({ max_page_sharing: '2', smart_scan: '0' });
    const a = k.spawn('a');
    const addr = area(a, 7, 0x61);
    a.madvise(addr, 7 * P, 'MADV_MERGEABLE');
    expect(scan(k)).toEqual([0, 0, 0, 7, 0, 0, 0, -448]);
    expect(scan(k)).toEqual([3, 3, 1, 0, 0, 1, 3, 11840]);
    const b = a.fork('b');
    expect(scan(k)).toEqual([3, 9, 1, 1, 0, 1, 3, 35968]);
    b.exit();
    expect(scan(k)).toEqual([3, 3, 1, 0, 0, 1, 3, 11840]);
    for (const j of [4, 5, 6]) a.write(addr + j * P, Uint8Array.of(0x62));
    expect(scan(k)).toEqual([2, 2, 0, 3, 0, 1, 2, 7744]);
    expect(scan(k)).toEqual([3, 3, 1, 0, 0, 1, 2, 11840]);
  });

  it('real: 300 identical pages with the default 256 make two KSM pages under one chain', () => {
    const k = kernel618();
    const a = k.spawn('a');
    const addr = area(a, 300, 0x61);
    a.madvise(addr, 300 * P, 'MADV_MERGEABLE');
    expect(scan(k, 2)).toEqual([2, 298, 0, 0, 0, 1, 2, 298 * P - 300 * 64]);
  });

  it('a search walks every dup (pruning stale ones) at most once per stable_node_chains_prune_millisecs', () => {
    const chainOf = (k: Kernel) => k.ksmEngine.rootStableTree.node as unknown as { chainPruneTime: number; rmapHlistLen: number };
    const build = (prune: string): Kernel => {
      const k = kernel618({ max_page_sharing: '2', smart_scan: '0', stable_node_chains_prune_millisecs: prune, sleep_millisecs: '10' });
      const a = k.spawn('a');
      const addr = area(a, 7, 0x61);
      a.madvise(addr, 7 * P, 'MADV_MERGEABLE');
      k.ksmd.runFullScans(2);
      // Three dups of two mappings each under one chain; page 6 waits, unshared.
      expect(row(k).slice(0, 7)).toEqual([3, 3, 1, 0, 0, 1, 3]);
      expect(chainOf(k).rmapHlistLen).toBe(-1024);
      return k;
    };
    // Every scan, page 6 searches the chain (chain_prune()). With 0 ms every search
    // is a full walk, and stamps the chain with the time; with a long interval the
    // stamp stays the chain's creation time.
    const fast = build('0');
    const created = chainOf(fast).chainPruneTime;
    fast.ksmd.runFullScans(3);
    expect(chainOf(fast).chainPruneTime).toBeGreaterThan(created);
    expect(chainOf(fast).chainPruneTime).toBe(fast.now);
    const slow = build('1000000');
    const born = chainOf(slow).chainPruneTime;
    slow.ksmd.runFullScans(3);
    expect(chainOf(slow).chainPruneTime).toBe(born);
  });
});

describe('the order in cmp_and_merge_page and smart scan', () => {
  it('real: a fresh page merges into an existing KSM page only at its second scan', () => {
    const k = kernel618();
    const a = k.spawn('a');
    const addr = a.mmap(6 * P);
    a.memset(addr, 0x61, 4 * P);
    a.madvise(addr, 6 * P, 'MADV_MERGEABLE');
    k.ksmd.runFullScans(2);
    expect(row(k).slice(0, 4)).toEqual([1, 3, 0, 0]);
    a.memset(addr + 4 * P, 0x61, P);
    // The checksum gate comes first: a new checksum, so no search at all.
    expect(scan(k).slice(0, 4)).toEqual([1, 3, 0, 1]);
    expect(scan(k).slice(0, 4)).toEqual([1, 4, 0, 0]);
  });

  it('real: unique pages are skipped for 1, 2, 4, then 8 scans; KSM pages never', () => {
    const k = kernel618();
    const a = k.spawn('a');
    const addr = a.mmap(14 * P);
    a.memset(addr, 0x61, 4 * P);
    for (let i = 4; i < 14; i++) {
      a.memset(addr + i * P, 0x75, P);
      a.write(addr + i * P, Uint8Array.of(i));
    }
    a.madvise(addr, 14 * P, 'MADV_MERGEABLE');
    const seen: [number, number, number, number][] = [];
    for (let s = 1; s <= 24; s++) {
      k.ksmd.runFullScans(1);
      k.checkInvariants();
      seen.push([num(k, 'pages_unshared'), num(k, 'pages_volatile'), num(k, 'pages_scanned'), num(k, 'pages_skipped')]);
    }
    // As the real ksmd did: each unique page is scanned at scans 1-4, 6, 9, 14, 23
    // and skipped at the others (out of the unstable tree, so volatile then).
    const scanned = [1, 2, 3, 4, 6, 9, 14, 23];
    let total = 0;
    let skipped = 0;
    seen.forEach(([unshared, vol, sc, sk], i) => {
      const s = i + 1;
      const hit = scanned.includes(s);
      total += 4 + (hit ? 10 : 0);
      skipped += hit ? 0 : 10;
      expect([sc, sk]).toEqual([total, skipped]);
      if (s === 1) expect([unshared, vol]).toEqual([0, 14]);
      else expect([unshared, vol]).toEqual(hit ? [10, 0] : [0, 10]);
    });
  });

  it('smart_scan 0 scans every page every time', () => {
    const k = kernel618({ smart_scan: '0' });
    const a = k.spawn('a');
    const addr = a.mmap(10 * P);
    for (let i = 0; i < 10; i++) a.write(addr + i * P, Uint8Array.of(i + 1));
    a.madvise(addr, 10 * P, 'MADV_MERGEABLE');
    k.ksmd.runFullScans(12);
    expect([num(k, 'pages_scanned'), num(k, 'pages_skipped'), num(k, 'pages_unshared')]).toEqual([120, 0, 10]);
  });
});

describe('use_zero_pages: KSM zero pages', () => {
  it('real: zero pages are mapped to the zero page, counted per mm; fork copies them; writes, DONTNEED and UNMERGEABLE undo them', () => {
    const k = kernel618({ use_zero_pages: '1' });
    const a = k.spawn('a');
    const addr = a.mmap(8 * P);
    a.memset(addr, 0, 4 * P);
    a.memset(addr + 4 * P, 0x61, 4 * P);
    a.madvise(addr, 8 * P, 'MADV_MERGEABLE');
    const stat = (p: Process): string => k.sysfs.read(`/proc/${p.pid}/ksm_stat`);
    expect(stat(a)).toBe('ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages 0\nksm_process_profit 0\nksm_merge_any: no\nksm_mergeable: yes\n');
    expect(scan(k)).toEqual([0, 0, 0, 8, 0, 0, 0, -512]);
    // The zero pages are on the zero page now, their rmap_items volatile until the
    // next scan frees them (the zero page is not a page KSM scans).
    expect(scan(k)).toEqual([1, 3, 0, 4, 4, 0, 0, 28160]);
    expect(scan(k)).toEqual([1, 3, 0, 0, 4, 0, 0, 28416]);
    expect(a.pfnOf(addr)).toBe(k.mem.zeroPfn);
    expect(stat(a)).toBe('ksm_rmap_items 4\nksm_zero_pages 4\nksm_merging_pages 4\nksm_process_profit 32512\nksm_merge_any: no\nksm_mergeable: yes\n');
    // The child has none of the parent's rmap_items, but its zero pages (fork copied the ptes).
    const b = a.fork('b');
    expect(stat(b)).toBe('ksm_rmap_items 0\nksm_zero_pages 4\nksm_merging_pages 0\nksm_process_profit 16384\nksm_merge_any: no\nksm_mergeable: yes\n');
    b.write(addr, Uint8Array.of(1));
    expect(row(k)).toEqual([1, 3, 0, 0, 7, 0, 0, 40704]);
    expect(scan(k, 2)).toEqual([1, 7, 1, 0, 7, 0, 0, 56768]);
    expect(stat(b)).toBe('ksm_rmap_items 5\nksm_zero_pages 3\nksm_merging_pages 4\nksm_process_profit 28352\nksm_merge_any: no\nksm_mergeable: yes\n');
    b.exit();
    expect(row(k)).toEqual([1, 7, 1, 0, 4, 0, 0, 44480]);
    expect(scan(k, 2)).toEqual([1, 3, 0, 0, 4, 0, 0, 28416]);
    a.write(addr + P, Uint8Array.of(5));
    expect(row(k)).toEqual([1, 3, 0, 0, 3, 0, 0, 24320]);
    a.madvise(addr + 2 * P, P, 'MADV_DONTNEED');
    expect(row(k)).toEqual([1, 3, 0, 0, 2, 0, 0, 20224]);
    a.madvise(addr, 8 * P, 'MADV_UNMERGEABLE');
    expect(row(k)).toEqual([1, 3, 0, 0, 0, 0, 0, 12032]);
    expect(stat(a)).toBe('ksm_rmap_items 4\nksm_zero_pages 0\nksm_merging_pages 4\nksm_process_profit 16128\nksm_merge_any: no\nksm_mergeable: no\n');
    expect(k.sysfs.read(`/proc/${a.pid}/ksm_merging_pages`)).toBe('4\n');
    // Contents as written throughout.
    expect([...a.read(addr, 2)]).toEqual([0, 0]);
    expect([...a.read(addr + P, 1)]).toEqual([5]);
  });

  it('run=2 and exit undo them; use_zero_pages 0 makes an ordinary KSM page of zero pages', () => {
    const k = kernel618({ use_zero_pages: '1' });
    const a = k.spawn('a');
    const addr = a.mmap(4 * P);
    a.memset(addr, 0, 4 * P);
    a.madvise(addr, 4 * P, 'MADV_MERGEABLE');
    expect(scan(k, 2).slice(0, 5)).toEqual([0, 0, 0, 4, 4]);
    k.sysfs.write(`${KSM_DIR}/run`, '2');
    expect(row(k).slice(0, 5)).toEqual([0, 0, 0, 0, 0]);
    expect(a.pfnOf(addr)).not.toBe(k.mem.zeroPfn);
    k.sysfs.write(`${KSM_DIR}/run`, '1');
    expect(scan(k, 2).slice(0, 5)).toEqual([0, 0, 0, 4, 4]);
    a.exit();
    expect(num(k, 'ksm_zero_pages')).toBe(0);
    k.checkInvariants();
    const k0 = kernel618();
    const b = k0.spawn('b');
    const baddr = b.mmap(4 * P);
    b.memset(baddr, 0, 4 * P);
    b.madvise(baddr, 4 * P, 'MADV_MERGEABLE');
    expect(scan(k0, 2).slice(0, 5)).toEqual([1, 3, 0, 0, 0]);
  });
});

describe('prctl(PR_SET_MEMORY_MERGE): whole-process merging', () => {
  it('makes existing and later areas mergeable, is inherited over fork, and when turned off unmerges everything, madvised areas too', () => {
    const k = kernel618();
    const a = k.spawn('a');
    const one = area(a, 4, 0x61);
    expect(a.prctl('PR_GET_MEMORY_MERGE')).toBe(0);
    expect(a.prctl('PR_SET_MEMORY_MERGE', 1)).toBe(0);
    expect(a.prctl('PR_GET_MEMORY_MERGE')).toBe(1);
    const two = area(a, 4, 0x61);
    expect(a.maps().map((m) => m.mergeable)).toEqual([true]); // one area: the two merged as neighbours
    expect(scan(k, 2).slice(0, 4)).toEqual([1, 7, 0, 0]);
    const b = a.fork('b');
    expect(b.prctl('PR_GET_MEMORY_MERGE')).toBe(1);
    const three = area(b, 2, 0x61);
    expect(b.maps().find((m) => m.start === three)!.mergeable).toBe(true);
    expect(scan(k, 2).slice(0, 4)).toEqual([1, 17, 0, 0]);
    a.madvise(two, 4 * P, 'MADV_MERGEABLE');
    expect(a.prctl('PR_SET_MEMORY_MERGE', 0)).toBe(0);
    expect(a.maps().every((m) => !m.mergeable)).toBe(true);
    expect(a.pfnOf(one)).not.toBe(b.pfnOf(one));
    expect(k.sysfs.read(`/proc/${a.pid}/ksm_stat`)).toContain('ksm_merge_any: no\nksm_mergeable: no\n');
    expect(scan(k, 2).slice(0, 4)).toEqual([1, 9, 0, 0]);
    k.checkInvariants();
  });

  it('refuses bad arguments with EINVAL; 2.6.33 has no such option', () => {
    const k = kernel618();
    const a = k.spawn('a');
    expect(errnoOf(() => a.prctl('PR_SET_MEMORY_MERGE', 1, 1))).toBe('EINVAL');
    expect(errnoOf(() => a.prctl('PR_SET_MEMORY_MERGE', 1, 0, 0, 1))).toBe('EINVAL');
    expect(errnoOf(() => a.prctl('PR_GET_MEMORY_MERGE', 1))).toBe('EINVAL');
    expect(errnoOf(() => a.prctl('PR_GET_MEMORY_MERGE', 0, 0, 1))).toBe('EINVAL');
    expect(errnoOf(() => a.prctl('PR_SET_MEMORY_MERGE', -1))).toBe('EINVAL');
    // Any non-zero arg2 turns it on.
    expect(a.prctl('PR_SET_MEMORY_MERGE', 7)).toBe(0);
    expect(a.prctl('PR_GET_MEMORY_MERGE', 0, 0, 0, 0)).toBe(1);
    const old = new Kernel({ memoryMiB: 64, blockMiB: 16 }).spawn('x');
    expect(errnoOf(() => old.prctl('PR_SET_MEMORY_MERGE', 1))).toBe('EINVAL');
  });
});

describe('/proc/<pid>', () => {
  it('pids are positive and unique among live processes; a dead pid has no ksm_stat (ENOENT)', () => {
    const k = kernel618();
    const a = k.spawn('a');
    const b = a.fork('b');
    const c = k.spawn('c');
    expect(new Set([a.pid, b.pid, c.pid]).size).toBe(3);
    expect([a.pid, b.pid, c.pid].every((p) => Number.isInteger(p) && p > 0)).toBe(true);
    const pid = b.pid;
    b.exit();
    expect(errnoOf(() => k.sysfs.read(`/proc/${pid}/ksm_stat`))).toBe('ENOENT');
    expect(errnoOf(() => k.sysfs.read(`/proc/${pid}/ksm_merging_pages`))).toBe('ENOENT');
    expect(errnoOf(() => k.sysfs.write(`/proc/${a.pid}/ksm_stat`, '1'))).toBe('EACCES');
    expect(k.ksmStat(a.pid)).toEqual({ ksmRmapItems: 0, ksmMergingPages: 0, ksmZeroPages: 0, ksmProcessProfit: 0, ksmMergeAny: false, ksmMergeable: false });
    // 2.6.33 has no such files.
    const old = new Kernel({ memoryMiB: 64, blockMiB: 16 });
    const o = old.spawn('o');
    expect(errnoOf(() => old.sysfs.read(`/proc/${o.pid}/ksm_stat`))).toBe('ENOENT');
  });
});

describe('the scan-time advisor', () => {
  it("retunes pages_to_scan after each full scan from the scan's simulated time and ksmd's CPU time", () => {
    const k = kernel618();
    const a = k.spawn('a');
    const addr = a.mmap(2000 * P);
    for (let i = 0; i < 2000; i++) a.write(addr + i * P, Uint8Array.of(i & 0xff, i >> 8, 1));
    a.madvise(addr, 2000 * P, 'MADV_MERGEABLE');
    k.sysfs.write(`${KSM_DIR}/advisor_mode`, 'scan-time');
    k.sysfs.write(`${KSM_DIR}/advisor_min_pages_to_scan`, '100');
    k.sysfs.write(`${KSM_DIR}/advisor_mode`, 'none');
    k.sysfs.write(`${KSM_DIR}/advisor_mode`, 'scan-time');
    expect(num(k, 'pages_to_scan')).toBe(100);
    // The first full scan: 2000 pages, 100 a batch every 20 ms: 20 batches, the
    // last ending at 380 ms: scan_time = 380 / 1000 -> 0 -> 1 s. CPU: 2000 pages at
    // KSMD_NS_PER_PAGE (1 µs): 2 ms -> cpu_percent = 2 * 100 / 1000 = 0 -> 1.
    // factor = 200 * 100 / 1 = 20000; change = ewma(0, 100) = 30; pages = 100 * 100
    // / 20000 * 30 / 100 = 0; per_page_cost = 100 / 1 = 100; min(0, 100 * 70) = 0,
    // max(0, 100 * 10) = 1000, min(1000, 30000) = 1000.
    expect(KSMD_NS_PER_PAGE).toBe(1000n);
    k.ksmd.runFullScans(1);
    expect(num(k, 'pages_to_scan')).toBe(1000);
    expect([k.ksmEngine.advisorScanTime, k.ksmEngine.advisorChange, k.ksmEngine.advisorCpuTime]).toEqual([1, 30, 2_000_000]);
    // The second: 2 batches of 1000 (the new rate from the next batch on): 20 ms;
    // scan_time 1 s again, change = ewma(30, 100) = 51, pages = 1000 * 100 / 20000
    // * 51 / 100 = 2; the floor: per_page_cost 1000 -> at least 10000.
    k.ksmd.runFullScans(1);
    expect(num(k, 'pages_to_scan')).toBe(10000);
    expect(k.ksmEngine.advisorChange).toBe(51);
    expect(errnoOf(() => k.sysfs.write(`${KSM_DIR}/pages_to_scan`, '5'))).toBe('EINVAL');
  });
});

describe('NUMA: merge_across_nodes and per-node trees', () => {
  it('with merge_across_nodes 0, identical pages on two nodes make one KSM page per node', () => {
    const k = kernel618({}, { nodes: 2 });
    expect(k.mem.nrNodes).toBe(2);
    k.sysfs.write(`${KSM_DIR}/run`, '2');
    k.sysfs.write(`${KSM_DIR}/merge_across_nodes`, '0');
    k.sysfs.write(`${KSM_DIR}/run`, '1');
    const a = k.spawn('a', { node: 0 });
    const b = k.spawn('b', { node: 1 });
    const pa = area(a, 4, 0x61);
    const pb = area(b, 4, 0x61);
    expect(k.mem.nodeOf(a.pfnOf(pa)!)).toBe(0);
    expect(k.mem.nodeOf(b.pfnOf(pb)!)).toBe(1);
    a.madvise(pa, 4 * P, 'MADV_MERGEABLE');
    b.madvise(pb, 4 * P, 'MADV_MERGEABLE');
    expect(scan(k, 2).slice(0, 4)).toEqual([2, 6, 0, 0]);
    expect(a.pfnOf(pa)).not.toBe(b.pfnOf(pb));
    // Across nodes again: one KSM page for all eight.
    k.sysfs.write(`${KSM_DIR}/run`, '2');
    k.sysfs.write(`${KSM_DIR}/merge_across_nodes`, '1');
    k.sysfs.write(`${KSM_DIR}/run`, '1');
    expect(scan(k, 2).slice(0, 4)).toEqual([1, 7, 0, 0]);
  });

  it('a KSM page migrated to the other node waits on migrate_nodes, then joins that node’s tree', () => {
    const k = kernel618({}, { nodes: 2 });
    k.sysfs.write(`${KSM_DIR}/run`, '2');
    k.sysfs.write(`${KSM_DIR}/merge_across_nodes`, '0');
    k.sysfs.write(`${KSM_DIR}/run`, '1');
    const a = k.spawn('a', { node: 0 });
    const b = k.spawn('b', { node: 1 });
    const pa = area(a, 2, 0x61);
    const pb = area(b, 2, 0x61);
    a.madvise(pa, 2 * P, 'MADV_MERGEABLE');
    b.madvise(pb, 2 * P, 'MADV_MERGEABLE');
    expect(scan(k, 2).slice(0, 4)).toEqual([2, 2, 0, 0]);
    // Move node 0's KSM page to node 1 (migration allocates where it is told).
    const moved = k.migratePage(a.pfnOf(pa)!, 1);
    expect(k.mem.nodeOf(moved)).toBe(1);
    // ksmd meets it, sends it to migrate_nodes, and the search places it in node 1's
    // tree as a dup beside node 1's own KSM page: two pages of the same content.
    expect(scan(k, 1).slice(0, 7)).toEqual([2, 2, 0, 0, 0, 1, 2]);
    expect(scan(k, 2).slice(0, 4)).toEqual([2, 2, 0, 0]);
    expect([...a.read(pa, 1), ...b.read(pb, 1)]).toEqual([0x61, 0x61]);
  });
});
