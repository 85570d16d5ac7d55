import { describe, expect, it } from 'vitest';
import { formatSummary, formatTable } from '../../src/report/table.js';
import type { RunResult } from '../../src/scenario/types.js';
import { FIXED, SINGLE, TUNED, ev } from './fixtures.js';

describe('formatTable', () => {
  it('pads each column to its widest cell, rules the header, aligns left and right', () => {
    const text = formatTable(
      ['name', 'size', 'note'],
      [
        ['a', '1 KiB', 'first'],
        ['longer', '512 MiB', ''],
      ],
      ['l', 'r', 'l'],
    );
    expect(text).toBe(['name       size  note', '------  -------  -----', 'a         1 KiB  first', 'longer  512 MiB'].join('\n'));
  });

  it('leaves no trailing spaces, even when the last column is left-aligned and empty', () => {
    const text = formatTable(['a', 'b'], [['x', ''], ['yy', 'z']], ['l', 'l']);
    for (const line of text.split('\n')) expect(line).toBe(line.trimEnd());
    expect(text).toBe('a   b\n--  -\nx\nyy  z');
  });

  it('pads a short row with empty cells', () => {
    expect(formatTable(['a', 'b'], [['1']], ['r', 'r'])).toBe('a  b\n-  -\n1');
  });

  it('has no final newline and prints the header and rule alone when there are no rows', () => {
    expect(formatTable(['guest', 'RAM'], [], ['l', 'r'])).toBe('guest  RAM\n-----  ---');
  });

  it('counts code points, not UTF-16 units: "≈ 𝟙" is three columns wide', () => {
    expect(formatTable(['x', 'y'], [['≈ 𝟙', '1']], ['l', 'r'])).toBe('x    y\n---  -\n≈ 𝟙  1');
  });

  it('throws when the alignments do not match the columns', () => {
    expect(() => formatTable(['a', 'b'], [], ['l'])).toThrow('expected 2 alignments (one per column), got 1');
  });

  it('throws when a row has more cells than there are columns', () => {
    expect(() => formatTable(['a'], [['1', '2']], ['l'])).toThrow('row 0 has 2 cells, expected at most 1');
  });
});

const SINGLE_SUMMARY = `web-pair: 5min simulated, seed 42, policy fixed: pages_to_scan 1250, sleep_millisecs 20

guest  image           state        RAM  resident     merged    saved  swap
-----  --------------  -------  -------  --------  ---------  -------  ----
web-1  fedora 13       running  1.5 GiB   900 MiB  316.5 MiB  280 MiB   0 B
web-2  fedora 13       running  1.5 GiB   900 MiB  316.5 MiB  280 MiB   0 B
host   promised 3 GiB             2 GiB   1.3 GiB             560 MiB   0 B

ksm: pages_shared 18688, pages_sharing 143360, pages_unshared 38000, pages_volatile 450, full_scans 6, pages scanned 750000
ksmd: 0.2% of a core on average, peak 0.2% at 3min 30s; 0.55 s of CPU (estimated from its work: 375000 checksums, 0 tree comparisons, 0 merges)
peak saved 576 MiB at 4min; overcommit 1.50 (3 GiB promised / 2 GiB RAM)
converged: 90% of the final saving at 3min; lowest free memory 280 MiB at 1min

1 error:
! 1min 30s: pressure 512 MiB: ENOMEM: out of memory: wanted 131072 pages, 98304 free and 0 reclaimable
`;

const TWO_SUMMARY = `web-pair (variant fixed): 5min simulated, seed 42, policy fixed: pages_to_scan 1250, sleep_millisecs 20

guest  image           state        RAM  resident     merged    saved  swap
-----  --------------  -------  -------  --------  ---------  -------  ----
web-1  fedora 13       running  1.5 GiB   900 MiB  316.5 MiB  280 MiB   0 B
web-2  fedora 13       running  1.5 GiB   900 MiB  316.5 MiB  280 MiB   0 B
host   promised 3 GiB             2 GiB   1.3 GiB             560 MiB   0 B

ksm: pages_shared 18688, pages_sharing 143360, pages_unshared 38000, pages_volatile 450, full_scans 6, pages scanned 750000
ksmd: 0.2% of a core on average, peak 0.2% at 3min 30s; 0.55 s of CPU (estimated from its work: 375000 checksums, 0 tree comparisons, 0 merges)
peak saved 576 MiB at 4min; overcommit 1.50 (3 GiB promised / 2 GiB RAM)
converged: 90% of the final saving at 3min; lowest free memory 280 MiB at 1min

1 error:
! 1min 30s: pressure 512 MiB: ENOMEM: out of memory: wanted 131072 pages, 98304 free and 0 reclaimable

web-pair (variant ksmtuned): 5min simulated, seed 42, policy ksmtuned

guest  image           state        RAM  resident   merged    saved     swap
-----  --------------  -------  -------  --------  -------  -------  -------
web-1  fedora 13       running  1.5 GiB   836 MiB  342 MiB  304 MiB   64 MiB
web-2  fedora 13       running  1.5 GiB   836 MiB  342 MiB  304 MiB   64 MiB
host   promised 3 GiB             2 GiB   1.2 GiB           608 MiB  128 MiB

ksm: pages_shared 19456, pages_sharing 155648, pages_unshared 35000, pages_volatile 500, full_scans 4, pages scanned 570000
ksmd: 0.1% of a core on average, peak 0.2% at 4min 30s; 0.42 s of CPU (estimated from its work: 285000 checksums, 0 tree comparisons, 0 merges)
peak saved 608 MiB at 5min; overcommit 1.50 (3 GiB promised / 2 GiB RAM)
converged: 90% of the final saving at 4min; lowest free memory 144 MiB at 1min

2 variants at the end of the run:

variant     saved       peak saved  pages scanned  full scans  swap used     free  ksmd CPU  90% saved at
--------  -------  ---------------  -------------  ----------  ---------  -------  --------  ------------
fixed     560 MiB  576 MiB at 4min         750000           6        0 B  680 MiB      0.2%          3min
ksmtuned  608 MiB  608 MiB at 5min         570000           4    128 MiB  856 MiB      0.1%          4min
`;

describe('formatSummary', () => {
  it('one run without variants: title, guests and host, KSM figures, peak and overcommit, the failed step', () => {
    expect(formatSummary([SINGLE])).toBe(SINGLE_SUMMARY);
  });

  it('two variants: each run in turn, then a table comparing them', () => {
    expect(formatSummary([FIXED, TUNED])).toBe(TWO_SUMMARY);
  });

  it('a run without errors or casualties has no list of them: it ends at the convergence line', () => {
    // TUNED alone is its block of TWO_SUMMARY, without the comparison after it.
    const block = TWO_SUMMARY.slice(TWO_SUMMARY.indexOf('web-pair (variant ksmtuned)'), TWO_SUMMARY.indexOf('\n2 variants'));
    expect(block.endsWith('converged: 90% of the final saving at 4min; lowest free memory 144 MiB at 1min\n')).toBe(true);
    expect(formatSummary([TUNED])).toBe(block);
  });

  it('says which guests the OOM killer killed and when, which host processes, and which guests were refused at start', () => {
    const r: RunResult = {
      ...TUNED,
      events: [
        ev(72_000, 'Out of memory: killed qemu:web-3 (guest web-3, 1.2 GiB resident+swap)', null, 'oom-kill', 'web-3'),
        ev(80_000, 'Out of memory: killed stress-1 (512 MiB resident+swap)', null, 'oom-kill'),
        ev(90_500, 'Out of memory: killed qemu:web-1 (guest web-1, 1.1 GiB resident+swap)', null, 'oom-kill', 'web-1'),
        ev(120_000, 'start web-9', "ENOMEM: mmap: no room for 1 TiB in qemu:web-9's address space", 'refused', 'web-9'),
      ],
    };
    const lines = formatSummary([r]).trimEnd().split('\n');
    // The refused start is a failed step too, so it is also in the list of errors.
    expect(lines.slice(-7)).toEqual([
      'converged: 90% of the final saving at 4min; lowest free memory 144 MiB at 1min',
      '2 guests OOM-killed: web-3 at 1min 12s, web-1 at 1min 30.5s',
      '1 host process OOM-killed: stress-1 at 1min 20s',
      "1 guest refused at start: web-9 at 2min (ENOMEM: mmap: no room for 1 TiB in qemu:web-9's address space)",
      '',
      '1 error:',
      "! 2min: start web-9: ENOMEM: mmap: no room for 1 TiB in qemu:web-9's address space",
    ]);
  });

  it('lists every failed event, in order, and only those', () => {
    const r: RunResult = {
      ...SINGLE,
      events: [
        ev(500, 'start web-3 (fedora 13)', 'ENOMEM: no room for 1.5 GiB'),
        ev(1000, 'pause web-1'),
        ev(3_600_000, 'offline block 3', 'EBUSY: memory block 3 holds unmovable pages'),
      ],
    };
    const lines = formatSummary([r]).split('\n');
    expect(lines.slice(lines.indexOf('2 errors:'))).toEqual([
      '2 errors:',
      '! 500ms: start web-3 (fedora 13): ENOMEM: no room for 1.5 GiB',
      '! 1h: offline block 3: EBUSY: memory block 3 holds unmovable pages',
      '',
    ]);
  });

  it('marks a guest started with mem-merge off, and says n/a for the overcommit of a host without RAM', () => {
    const r: RunResult = {
      ...SINGLE,
      guests: [{ ...SINGLE.guests[0]!, memMerge: false, mergedBytes: 0, savedBytes: 0 }],
      host: { ...SINGLE.host, ramBytes: 0, freeBytes: 0 },
      events: [],
    };
    const text = formatSummary([r]);
    expect(text).toContain('web-1  fedora 13       running  1.5 GiB   900 MiB     off      0 B   0 B');
    expect(text).toContain('overcommit n/a (3 GiB promised / 0 B RAM)');
  });

  it('names unnamed variants by position, and variants of different scenarios by scenario too', () => {
    const comparison = (results: RunResult[]): string => {
      const text = formatSummary(results);
      return text.slice(text.indexOf('2 variants at the end of the run:'));
    };
    expect(comparison([SINGLE, SINGLE])).toBe(`2 variants at the end of the run:

variant    saved       peak saved  pages scanned  full scans  swap used     free  ksmd CPU  90% saved at
-------  -------  ---------------  -------------  ----------  ---------  -------  --------  ------------
#1       560 MiB  576 MiB at 4min         750000           6        0 B  680 MiB      0.2%          3min
#2       560 MiB  576 MiB at 4min         750000           6        0 B  680 MiB      0.2%          3min
`);
    expect(comparison([FIXED, { ...TUNED, scenario: 'db-pair' }])).toBe(`2 variants at the end of the run:

variant             saved       peak saved  pages scanned  full scans  swap used     free  ksmd CPU  90% saved at
----------------  -------  ---------------  -------------  ----------  ---------  -------  --------  ------------
web-pair fixed    560 MiB  576 MiB at 4min         750000           6        0 B  680 MiB      0.2%          3min
db-pair ksmtuned  608 MiB  608 MiB at 5min         570000           4    128 MiB  856 MiB      0.1%          4min
`);
  });

  it('prints nothing for no results', () => {
    expect(formatSummary([])).toBe('');
  });

  it('has no trailing spaces and no control characters anywhere', () => {
    const text = formatSummary([FIXED, TUNED]);
    for (const line of text.split('\n')) expect(line).toBe(line.trimEnd());
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/);
  });
});
