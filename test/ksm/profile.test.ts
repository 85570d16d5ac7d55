/**
 * The kernel-profile seam (src/ksm/profile.ts): which kernel KSM behaves as is chosen
 * when the kernel is made, and everything version-specific (files, parsers, initial
 * values, checksum, feature switches) comes from the profile.
 */
import { describe, expect, it } from 'vitest';
import { InvariantError, Kernel, KernelError, PAGE_SIZE } from '../../src/index.js';
import { Ksm } from '../../src/ksm/ksm.js';
import { PROFILE_2_6_33, findKnob, kernelProfile, knobFile, type KernelProfile } from '../../src/ksm/profile.js';
import { KSM_STATS } from '../../src/ksm/stats.js';
import { registerKsmSysfs } from '../../src/ksm/sysfs.js';
import { JHASH2_PAGE_CHECKSUM } from '../../src/lib/jhash.js';
import { HostKernel } from '../../src/mm/kernel.js';
import { KSM_DIR, RUN, batch, errnoOf, mergeableArea, newKernel, st, stats } from './helpers.js';

/** 2.6.33 with one switch changed: the engine reads its profile as it decides. */
function withFeature(k: Kernel, feature: keyof KernelProfile['features']): void {
  const profile: KernelProfile = { ...PROFILE_2_6_33, features: { ...PROFILE_2_6_33.features, [feature]: true } };
  Object.assign(k.ksmEngine, { profile });
}

describe('choosing the kernel version', () => {
  it("defaults to 2.6.33 and says so in kernel.version", () => {
    expect(newKernel().version).toBe('2.6.33');
    expect(new Kernel({ memoryMiB: 64, blockMiB: 16, version: '2.6.33' }).version).toBe('2.6.33');
    expect(newKernel().ksmEngine.profile).toBe(PROFILE_2_6_33);
  });

  it('refuses a version there is no profile for with EINVAL, naming the ones there are', () => {
    for (const v of ['6.1', '2.6.32', '', '2.6.33 ', '6.18.0']) {
      expect(() => new Kernel({ memoryMiB: 64, blockMiB: 16, version: v })).toThrow(KernelError);
      expect(errnoOf(() => new Kernel({ memoryMiB: 64, blockMiB: 16, version: v }))).toBe('EINVAL');
    }
    expect(() => kernelProfile('6.1')).toThrow(`EINVAL: version: expected one of '2.6.33', '6.18' (the kernels Samepage has profiles for), got "6.1"`);
  });

  it('2.6.33 hashes with jhash2 and has every later feature off', () => {
    expect(PROFILE_2_6_33.checksum).toBe(JHASH2_PAGE_CHECKSUM);
    expect(Object.values(PROFILE_2_6_33.features).every((on) => !on)).toBe(true);
    expect(Object.keys(PROFILE_2_6_33.features).sort()).toEqual([
      'advisor',
      'checksumBeforeStableTreeSearch',
      'mergeAny',
      'numaTrees',
      'procKsmStat',
      'restartStableTreeSearch',
      'smartScan',
      'stableNodeChains',
      'zeroPages',
    ]);
  });
});

describe('what the profile decides', () => {
  it("/sys/kernel/mm/ksm holds exactly the profile's knobs and statistics files", () => {
    const k = newKernel();
    const files = [...PROFILE_2_6_33.knobs.map((f) => f.file), ...PROFILE_2_6_33.statFiles.map((f) => f.file)];
    expect(files.sort()).toEqual(['full_scans', 'max_kernel_pages', 'pages_shared', 'pages_sharing', 'pages_to_scan', 'pages_unshared', 'pages_volatile', 'run', 'sleep_millisecs']);
    expect(k.sysfs.list(KSM_DIR)).toEqual(files.map((f) => `${KSM_DIR}/${f}`));
  });

  it('a profile without a knob has no file for it, and the engine keeps the knob inert (max_kernel_pages 0: no cap)', () => {
    const profile: KernelProfile = { ...PROFILE_2_6_33, knobs: PROFILE_2_6_33.knobs.filter((f) => f.file !== 'max_kernel_pages') };
    const k = new HostKernel({ memoryMiB: 64, blockMiB: 16 });
    const ksm = new Ksm(k, profile);
    registerKsmSysfs(k.sysfs, ksm);
    expect(k.sysfs.has(`${KSM_DIR}/max_kernel_pages`)).toBe(false);
    expect(k.sysfs.list(KSM_DIR)).toHaveLength(8);
    expect(ksm.maxKernelPages).toBe(0n);
    expect(ksm.pagesToScan).toBe(100);
    expect(ksm.sleepMillisecs).toBe(20);
    expect(findKnob(profile, 'maxKernelPages')).toBe(null);
    expect(() => knobFile(profile, 'maxKernelPages')).toThrow('EINVAL: maxKernelPages: Linux 2.6.33 has no such KSM knob (its knobs: pages_to_scan, sleep_millisecs, run)');
    expect(knobFile(PROFILE_2_6_33, 'maxKernelPages')).toBe(`${KSM_DIR}/max_kernel_pages`);
  });

  it('refuses (InvariantError) the two halves of 6.x cmp_and_merge_page apart', () => {
    const k = new HostKernel({ memoryMiB: 64, blockMiB: 16 });
    const half: KernelProfile = { ...PROFILE_2_6_33, features: { ...PROFILE_2_6_33.features, checksumBeforeStableTreeSearch: true } };
    expect(() => new Ksm(k, half)).toThrow(InvariantError);
    expect(() => new Ksm(k, half)).toThrow(
      'the Linux 2.6.33 profile turns on one of checksumBeforeStableTreeSearch and stableNodeChains without the other: the engine implements them together',
    );
  });
});

/**
 * A stale stable node at the root, met by stable_tree_search() for a page that
 * matches the node below it. E (registered first, so scanned first) has one page;
 * P has [X, X, Y, Y]. Two scans merge P's pairs: X's node is inserted first and is
 * the root, Y's its child. Then E's page becomes Y and P unmaps its X pages: the
 * X KSM page is freed and its node is stale, still the root.
 */
function staleRoot(): { k: Kernel; e: ReturnType<Kernel['spawn']>; eAddr: number } {
  const k = newKernel();
  const e = k.spawn('e');
  const eAddr = mergeableArea(e, 1, 0x5a);
  const p = k.spawn('p');
  const pAddr = mergeableArea(p, 4, 0x58);
  p.memset(pAddr + 2 * PAGE_SIZE, 0x59, 2 * PAGE_SIZE);
  k.sysfs.write(`${KSM_DIR}/pages_to_scan`, '5');
  k.sysfs.write(RUN, '1');
  k.ksmd.runFullScans(2);
  // Two KSM pages, each shared by two of P's pages; E's page unshared.
  expect(stats(k)).toEqual(st(2, 2, 1, 0, 2));
  e.memset(eAddr, 0x59, PAGE_SIZE);
  p.munmap(pAddr, 2 * PAGE_SIZE);
  return { k, e, eAddr };
}

describe('the stale-node rule in stable_tree_search (restartStableTreeSearch)', () => {
  it('2.6.33 gives the search up at the stale root: E merges only a scan later', () => {
    const { k } = staleRoot();
    // One batch: E's page, then P's Y pages (X's rmap_items are freed on the way,
    // already out of the tree), then the end of the full scan.
    batch(k);
    // E's search met the stale root, removed it and gave up; its checksum changed,
    // so it stays out of the unstable tree and is volatile. Y is shared by P alone.
    expect(stats(k)).toEqual(st(1, 1, 0, 1, 3));
    batch(k);
    // The next scan finds Y's node at the root, and E's page merges with it.
    expect(stats(k)).toEqual(st(1, 2, 0, 0, 4));
    k.checkInvariants();
  });

  it('a kernel that restarts the search merges E in the same scan', () => {
    const { k } = staleRoot();
    withFeature(k, 'restartStableTreeSearch');
    batch(k);
    // The search removed the stale root, started again from Y's node and matched.
    expect(stats(k)).toEqual(st(1, 2, 0, 0, 3));
    k.checkInvariants();
  });
});

describe('the statistics record (src/ksm/stats.ts)', () => {
  it('kernel.ksmStats() is every statistic in KSM_STATS order, equal to what the files show', () => {
    const k = newKernel();
    const p = k.spawn('p');
    mergeableArea(p, 6, 0x61);
    const q = k.spawn('q');
    mergeableArea(q, 3, 0x62);
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    const s = k.ksmStats();
    // 2.6.33 has the statistics every kernel has, and none of those 6.x brought.
    expect(Object.keys(s)).toEqual(KSM_STATS.filter((x) => x.feature === null).map((x) => x.name));
    // P's 6 pages share one KSM page, Q's 3 another; 9 pages scanned per full scan.
    expect(s).toEqual({ pagesShared: 2, pagesSharing: 7, pagesUnshared: 0, pagesVolatile: 0, fullScans: 2, pagesScanned: 18 });
    for (const f of PROFILE_2_6_33.statFiles) expect(k.sysfs.read(`${KSM_DIR}/${f.file}`)).toBe(`${s[f.stat]}\n`);
  });

  it("kernel.ksmStat(pid) is KSM's view of one process: its rmap_items and its pages in the stable tree", () => {
    const k = newKernel();
    const a = k.spawn('a');
    mergeableArea(a, 4, 0x61);
    const b = k.spawn('b');
    const bAddr = mergeableArea(b, 3, 0x61);
    b.memset(bAddr + 2 * PAGE_SIZE, 0x7e, PAGE_SIZE);
    const c = k.spawn('c');
    c.mmap(2 * PAGE_SIZE);
    expect(k.ksmStat(a.pid)).toEqual({ ksmRmapItems: 0, ksmMergingPages: 0 });
    k.sysfs.write(RUN, '1');
    k.ksmd.runFullScans(2);
    // A's 4 pages and B's first 2 share one KSM page; B's third page is unique.
    expect(k.ksmStat(a.pid)).toEqual({ ksmRmapItems: 4, ksmMergingPages: 4 });
    expect(k.ksmStat(b.pid)).toEqual({ ksmRmapItems: 3, ksmMergingPages: 2 });
    // C never asked for merging: KSM knows nothing of it.
    expect(k.ksmStat(c.pid)).toEqual({ ksmRmapItems: 0, ksmMergingPages: 0 });
    // B writes one merged page: it keeps its rmap_item in the stable tree until ksmd
    // passes (as mm->ksm_merging_pages does), then the item goes unstable.
    b.memset(bAddr, 0x7f, PAGE_SIZE);
    expect(k.ksmStat(b.pid)).toEqual({ ksmRmapItems: 3, ksmMergingPages: 2 });
    k.ksmd.runFullScans(1);
    expect(k.ksmStat(b.pid)).toEqual({ ksmRmapItems: 3, ksmMergingPages: 1 });
    const pid = b.pid;
    b.exit();
    expect(errnoOf(() => k.ksmStat(pid))).toBe('ESRCH');
    k.checkInvariants();
  });
});
