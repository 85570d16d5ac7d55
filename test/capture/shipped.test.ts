/**
 * The capture that ships with the repository (captures/busybox-4.cap, made by
 * scripts/real-guests/make-capture.ts): it reads, it is what its note says, and it
 * stays within the 20 MB the repository allows it.
 */
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CP_ANON, CP_PRESENT, CP_THP, CP_THP_HEAD, readCapture, summarizeCapture } from '../../src/vmm/capture-file.js';

const FILE = fileURLToPath(new URL('../../captures/busybox-4.cap', import.meta.url));

describe('captures/busybox-4.cap', () => {
  it('holds 4 paused busybox guests of 96 MiB, their QEMU RAM blocks mergeable and huge, in at most 20 MB', () => {
    expect(statSync(FILE).size).toBeLessThanOrEqual(20_000_000);
    const c = readCapture(readFileSync(FILE), FILE);
    expect(c.meta.host.thp).toBe('madvise');
    expect(c.meta.note).toContain('nokaslr init_on_free=1');
    expect(c.processes.map((p) => [p.name, p.view, p.source, p.paused, p.vmas.length])).toEqual([
      ['id-1', 'host', 'qmp', true, 8],
      ['id-2', 'host', 'qmp', true, 8],
      ['mix-a', 'host', 'qmp', true, 8],
      ['mix-b', 'host', 'qmp', true, 8],
    ]);
    for (const p of c.processes) {
      for (const v of p.vmas) expect(v.vmFlags).toEqual(expect.arrayContaining(['hg', 'mg']));
      const ram = p.vmas.find((v) => v.block === 'pc.ram')!;
      expect(ram.end - ram.start).toBe(96 * 1024 * 1024);
      // init_on_free=1 zeroes all free memory at boot, so every page of guest RAM is
      // touched, and present as part of a THP: 48 of them.
      expect(ram.offsets.length).toBe((96 * 1024 * 1024) / 4096);
      expect(ram.flags.every((f) => (f & ~CP_THP_HEAD) === (CP_PRESENT | CP_ANON | CP_THP))).toBe(true);
      expect(ram.flags.filter((f) => (f & CP_THP_HEAD) !== 0).length).toBe(48);
    }
    const s = summarizeCapture(c);
    expect(s.totals.stored).toBe(c.pageCount);
    // 48 THPs of guest RAM, one of ACPI tables, one of VGA memory.
    expect(s.processes.map((p) => p.thps)).toEqual([50, 50, 50, 50]);
  });
});
