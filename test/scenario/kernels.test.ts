/**
 * Scenarios that choose the kernel version (host.kernel, a variant's kernel) and the
 * knobs of Linux 6.18: each knob is checked against every kernel it will be written
 * to, libvirt's shm_merge_across_nodes maps to merge_across_nodes where the kernel
 * has it, and every problem is reported in one pass with its line.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadImageCatalog } from '../../src/scenario/images.js';
import { runScenario } from '../../src/scenario/run.js';
import { parseScenario } from '../../src/scenario/schema.js';
import { ConfigError } from '../../src/vmm/config.js';
import { Host } from '../../src/vmm/host.js';

const images = loadImageCatalog(fileURLToPath(new URL('../vmm/fixtures/', import.meta.url)));

function text(s: string): string {
  const lines = s.replace(/^\n/, '').split('\n');
  const indent = Math.min(...lines.filter((l) => l.trim() !== '').map((l) => /^ */.exec(l)![0].length));
  return lines.map((l) => l.slice(indent)).join('\n');
}

function problems(t: string): string {
  try {
    parseScenario(t, 'bad.yaml', images);
  } catch (e) {
    if (e instanceof ConfigError) return e.message;
    throw e;
  }
  throw new Error('expected a ConfigError, the scenario parsed');
}

describe('choosing the kernel', () => {
  it('host.kernel defaults to 2.6.33; 6.18 quoted or not; variants may change it and keep the scenario policy', () => {
    const s = parseScenario(
      text(`
        name: k
        host: { memory: 64MiB, block: 16MiB, kernel: 6.18 }
        ksm: { policy: fixed, pages_to_scan: 50, max_page_sharing: 2, use_zero_pages: true, smart_scan: 0, advisor_mode: none, shm_merge_across_nodes: 1 }
        duration: 10s
        guests: [{ name: a, image: tiny, memory: 16MiB }]
        variants:
          - { name: new, kernel: "6.18" }
          - { name: old, kernel: "2.6.33", ksm: { policy: fixed, max_kernel_pages: 100 } }
      `),
      'k.yaml',
      images,
    );
    expect(s.kernel).toBe('6.18');
    expect(s.ksm).toEqual({
      policy: 'fixed',
      run: 1,
      pagesToScan: 50,
      sleepMillisecs: 20,
      maxKernelPages: null,
      knobs: { maxPageSharing: 2, useZeroPages: 1, mergeAcrossNodes: 1, smartScan: 0, advisorMode: 0 },
    });
    expect(s.variants.map((v) => [v.name, v.kernel, v.ksm === s.ksm])).toEqual([
      ['new', '6.18', true],
      ['old', '2.6.33', false],
    ]);
    const d = parseScenario(text(`
      name: d
      host: { memory: 64MiB, block: 16MiB }
      duration: 10s
      guests: [{ name: a, image: tiny, memory: 16MiB }]
    `), 'd.yaml', images);
    expect([d.kernel, d.variants[0]!.kernel]).toEqual(['2.6.33', '2.6.33']);
  });

  it('every problem in one pass: an unknown version, knobs the kernel lacks, values the kernel refuses, a variant that changes nothing', () => {
    expect(
      problems(
        text(`
          name: k
          host: { memory: 64MiB, block: 16MiB, kernel: "6.1" }
          ksm: { policy: fixed, max_page_sharing: 1, advisor_mode: fast, use_zero_pages: 2 }
          duration: 10s
          guests: [{ name: a, image: tiny, memory: 16MiB }]
          events:
            - { at: 1s, knobs: { smart_scan: 0, max_kernel_pages: 5 } }
            - { at: 2s, knobs: { shm_merge_across_nodes: 0, advisor_target_scan_time: 0 } }
          variants:
            - { name: old, kernel: "2.6.33", ksm: { policy: fixed, max_page_sharing: 3 } }
            - { name: new, kernel: "6.18", ksm: { policy: fixed, max_kernel_pages: 9, merge_across_nodes: 1, shm_merge_across_nodes: 1 } }
            - { name: same }
        `),
      ),
    ).toBe(
      [
        `bad.yaml:2: host.kernel: expected a kernel version Samepage has a profile for: "2.6.33" or "6.18", got "6.1"`,
        'bad.yaml:3: ksm.max_page_sharing: expected at least 2: a KSM page is made shared by two mappings (the kernel refuses less with EINVAL)',
        'bad.yaml:3: ksm.use_zero_pages: expected 0 or 1 (or false or true), got 2',
        'bad.yaml:3: ksm.advisor_mode: expected none or scan-time, got "fast"',
        'bad.yaml:7: events[0].knobs.smart_scan: Linux 2.6.33 has no smart_scan (its knobs: max_kernel_pages, pages_to_scan, sleep_millisecs, run)',
        'bad.yaml:7: events[0].knobs.max_kernel_pages: Linux 6.18 has no max_kernel_pages (its knobs: sleep_millisecs, pages_to_scan, merge_across_nodes, max_page_sharing, stable_node_chains_prune_millisecs, use_zero_pages, smart_scan, advisor_mode, advisor_max_cpu, advisor_min_pages_to_scan, advisor_max_pages_to_scan, advisor_target_scan_time, run)',
        'bad.yaml:8: events[1].knobs.advisor_target_scan_time: expected at least 1 (the kernel refuses 0 with EINVAL)',
        `bad.yaml:8: events[1].knobs.shm_merge_across_nodes: libvirt's name for /sys/kernel/mm/ksm/merge_across_nodes, which this kernel (Linux 2.6.33) does not have; libvirt refuses it too: "Parameter 'shm_merge_across_nodes' is not supported by this kernel"`,
        'bad.yaml:8: events[1].knobs.advisor_target_scan_time: Linux 2.6.33 has no advisor_target_scan_time (its knobs: max_kernel_pages, pages_to_scan, sleep_millisecs, run)',
        'bad.yaml:10: variants[0].ksm.max_page_sharing: Linux 2.6.33 has no max_page_sharing (its knobs: max_kernel_pages, pages_to_scan, sleep_millisecs, run)',
        'bad.yaml:11: variants[1].ksm.max_kernel_pages: Linux 6.18 has no max_kernel_pages (its knobs: sleep_millisecs, pages_to_scan, merge_across_nodes, max_page_sharing, stable_node_chains_prune_millisecs, use_zero_pages, smart_scan, advisor_mode, advisor_max_cpu, advisor_min_pages_to_scan, advisor_max_pages_to_scan, advisor_target_scan_time, run)',
        "bad.yaml:11: variants[1].ksm.shm_merge_across_nodes: libvirt's name for merge_across_nodes, which is set too (line 11): set one",
        'bad.yaml:12: variants[2]: expected ksm, kernel, merge_domains or several: a variant that changes nothing runs the scenario again',
      ].join('\n'),
    );
  });
});

describe('running on 6.18', () => {
  it('a Host takes the version; its samples carry 6.18 statistics and the policy writes 6.18 knobs', () => {
    const host = new Host({ memoryMiB: 64, blockMiB: 16, version: '6.18', images, ksm: { policy: 'fixed', run: 1, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: null, knobs: { maxPageSharing: 3, advisorMode: 1 } } });
    expect(host.kernel.version).toBe('6.18');
    expect(host.kernel.sysfs.read('/sys/kernel/mm/ksm/max_page_sharing')).toBe('3\n');
    expect(host.kernel.sysfs.read('/sys/kernel/mm/ksm/advisor_mode')).toBe('none [scan-time]\n');
    const s = host.sample();
    expect(Object.keys(s).slice(1, 12)).toEqual(['pagesShared', 'pagesSharing', 'pagesUnshared', 'pagesVolatile', 'fullScans', 'pagesScanned', 'pagesSkipped', 'ksmZeroPages', 'stableNodeChains', 'stableNodeDups', 'generalProfit']);
    // max_kernel_pages is 2.6.33's.
    expect(() => host.setKnobs({ maxKernelPages: 5 })).toThrow('EINVAL: maxKernelPages: Linux 6.18 has no such KSM knob');
    host.setKnobs({ advisorMode: 0, useZeroPages: 1 });
    expect(host.kernel.sysfs.read('/sys/kernel/mm/ksm/advisor_mode')).toBe('[none] scan-time\n');
    expect(host.kernel.sysfs.read('/sys/kernel/mm/ksm/pages_to_scan')).toBe('100\n');
  });

  it('a run says its kernel; a knobs event names 6.18 knobs by their files', () => {
    const s = parseScenario(
      text(`
        name: k
        host: { memory: 64MiB, block: 16MiB, kernel: "6.18" }
        duration: 2s
        sample_every: 1s
        guests: [{ name: a, image: tiny, memory: 16MiB }]
        events:
          - { at: 1s, knobs: { max_page_sharing: 5, advisor_mode: scan-time, smart_scan: false } }
      `),
      'k.yaml',
      images,
    );
    const [r] = runScenario(s, { images });
    expect(r!.kernel).toBe('6.18');
    expect(r!.events.map((e) => e.what).filter((w) => w.startsWith('knobs'))).toEqual(['knobs max_page_sharing=5 smart_scan=0 advisor_mode=scan-time']);
    expect(r!.host.stableNodeDups).toBe(0);
  });
});
