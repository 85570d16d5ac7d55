/**
 * Merge domains (model-only; src/ksm/pages.ts comparePagesInDomains): KSM merges a
 * page only with pages of processes in the same domain, in both kernel profiles, as
 * VMware's page-sharing salt does; fork inherits the domain; snapshots keep it.
 */
import { describe, expect, it } from 'vitest';
import { Kernel, KernelError, PAGE_SIZE, type Process } from '../../src/index.js';
import { checkKernelImage, restoreKernel, saveKernel } from '../../src/ksm/kernel.js';
import type { KsmImage } from '../../src/ksm/snapshot.js';
import type { KernelImage } from '../../src/mm/snapshot.js';
import { KSM_DIR } from './helpers.js';

const P = PAGE_SIZE;
const PAGES = 8;

function kernel(version: '2.6.33' | '6.18'): Kernel {
  const k = new Kernel({ memoryMiB: 64, blockMiB: 16, version, seed: 3 });
  k.sysfs.write(`${KSM_DIR}/pages_to_scan`, '100000');
  k.sysfs.write(`${KSM_DIR}/run`, '1');
  return k;
}

/** PAGES pages, page j filled with 0x10 + j: equal across processes, distinct within one. */
function fill(p: Process): number {
  const a = p.mmap(PAGES * P);
  for (let j = 0; j < PAGES; j++) p.memset(a + j * P, 0x10 + j, P);
  p.madvise(a, PAGES * P, 'MADV_MERGEABLE');
  return a;
}

/** pages_shared, pages_sharing, pages_unshared, pages_volatile */
function stats(k: Kernel): number[] {
  k.checkInvariants();
  return ['pages_shared', 'pages_sharing', 'pages_unshared', 'pages_volatile'].map((f) => Number(k.sysfs.read(`${KSM_DIR}/${f}`)));
}

function bytesOf(p: Process, a: number): number[] {
  const out: number[] = [];
  for (let j = 0; j < PAGES; j++) out.push(...new Set(p.read(a + j * P, P)));
  return out;
}

describe.each(['2.6.33', '6.18'] as const)('merge domains, Linux %s profile', (version) => {
  it('pages merge within a domain only; the common domain is one more domain; fork inherits', () => {
    const k = kernel(version);
    const [a, b, c, d] = [k.spawn('a', { mergeDomain: 'red' }), k.spawn('b', { mergeDomain: 'red' }), k.spawn('c', { mergeDomain: 'blue' }), k.spawn('d')];
    expect([a.mergeDomain, b.mergeDomain, c.mergeDomain, d.mergeDomain]).toEqual(['red', 'red', 'blue', '']);
    const addrs = [a, b, c, d].map(fill);
    k.ksmd.runFullScans(2);
    // Without domains: 8 KSM pages of 4 mappings each (shared 8, sharing 24). With
    // them: red's 8 pages merge; blue's and the common domain's have no partner.
    expect(stats(k)).toEqual([8, 8, 16, 0]);
    // c's child is blue too; once it has pages of its own (rewritten: COW copies),
    // they merge with c's, and nothing else changes.
    const c2 = c.fork('c2');
    expect(c2.mergeDomain).toBe('blue');
    for (let j = 0; j < PAGES; j++) c2.memset(addrs[2]! + j * P, 0x10 + j, P);
    k.ksmd.runFullScans(2);
    expect(stats(k)).toEqual([16, 16, 8, 0]);
    // Every process still reads what it wrote.
    for (const [p, at] of [[a, addrs[0]!], [b, addrs[1]!], [c, addrs[2]!], [c2, addrs[2]!], [d, addrs[3]!]] as const) {
      expect(bytesOf(p, at)).toEqual([0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17]);
    }
  });

  it('a snapshot keeps each mm\'s domain and each stable node\'s, and the restored kernel goes on as the original', () => {
    const run = (k: Kernel, steps: (k: Kernel) => void): number[] => {
      steps(k);
      return stats(k);
    };
    const k = kernel(version);
    const ps = [k.spawn('a', { mergeDomain: 'red' }), k.spawn('b', { mergeDomain: 'red' }), k.spawn('c', { mergeDomain: 'blue' })];
    ps.forEach(fill);
    k.ksmd.runFullScans(2);
    expect(stats(k)).toEqual([8, 8, 8, 0]);
    const img = saveKernel(k);
    expect((img.parts.ksm as KsmImage).domains).toEqual(['', 'red']);
    const r = restoreKernel(img);
    // A fourth process in blue: its pages merge with c's (blue), not with red's KSM pages.
    const more = (kk: Kernel): void => {
      fill(kk.spawn('e', { mergeDomain: 'blue' }));
      kk.ksmd.runFullScans(2);
    };
    expect(run(r, more)).toEqual([16, 16, 0, 0]);
    expect(run(k, more)).toEqual([16, 16, 0, 0]);
    expect([...r.processes.values()].map((p) => p.mergeDomain)).toEqual(['red', 'red', 'blue', 'blue']);
  });
});

describe('merge domain names', () => {
  it('spawn refuses what is not a domain name (EINVAL) and makes no process', () => {
    const k = new Kernel({ memoryMiB: 64, blockMiB: 16 });
    for (const bad of ['has space', 'x'.repeat(65), 'ü', 7 as unknown as string]) {
      expect(() => k.spawn('p', { mergeDomain: bad })).toThrow(KernelError);
    }
    expect(k.processes.size).toBe(0);
    expect(k.spawn('p', { mergeDomain: 'tenant-a.1_x' }).mergeDomain).toBe('tenant-a.1_x');
  });

  it('a kernel image with a bad domain name or a node of a domain not named is refused, naming the field', () => {
    const k = kernel('2.6.33');
    [k.spawn('a', { mergeDomain: 'red' }), k.spawn('b', { mergeDomain: 'red' })].forEach(fill);
    k.ksmd.runFullScans(2);
    const img = saveKernel(k);
    const ksm = img.parts.ksm as KsmImage;
    const withKsm = (change: Partial<KsmImage>): KernelImage => ({ ...img, parts: { ...img.parts, ksm: { ...ksm, ...change } } });
    expect(checkKernelImage(img)).toBeNull();
    expect(checkKernelImage(withKsm({ domains: ['', 'no good'] }))).toMatch(/^parts\.ksm\.domains\[1\]: must be at most 64 of the characters/);
    expect(checkKernelImage(withKsm({ domains: ['red', ''] }))).toMatch(/^parts\.ksm\.domains: expected distinct names, '' first/);
    expect(checkKernelImage(withKsm({ nodeDomain: new Uint8Array(ksm.nodeDomain.length).fill(9) }))).toMatch(/^parts\.ksm\.nodeDomain\[0\]: domain 151587081 is past the 2 named/);
  });
});
