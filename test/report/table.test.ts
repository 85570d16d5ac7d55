import { describe, expect, it } from 'vitest';
import { formatSummary, formatTable } from '../../src/report/table.js';
import type { RunResult } from '../../src/scenario/types.js';
import { FIXED, SINGLE, TUNED } from './fixtures.js';

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
peak saved 576 MiB at 4min; overcommit 1.50 (3 GiB promised / 2 GiB RAM)

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
peak saved 576 MiB at 4min; overcommit 1.50 (3 GiB promised / 2 GiB RAM)

1 error:
! 1min 30s: pressure 512 MiB: ENOMEM: out of memory: wanted 131072 pages, 98304 free and 0 reclaimable

web-pair (variant ksmtuned): 5min simulated, seed 42, policy ksmtuned

guest  image           state        RAM  resident   merged    saved     swap
-----  --------------  -------  -------  --------  -------  -------  -------
web-1  fedora 13       running  1.5 GiB   836 MiB  342 MiB  304 MiB   64 MiB
web-2  fedora 13       running  1.5 GiB   836 MiB  342 MiB  304 MiB   64 MiB
host   promised 3 GiB             2 GiB   1.2 GiB           608 MiB  128 MiB

ksm: pages_shared 19456, pages_sharing 155648, pages_unshared 35000, pages_volatile 500, full_scans 4, pages scanned 570000
peak saved 608 MiB at 5min; overcommit 1.50 (3 GiB promised / 2 GiB RAM)

2 variants at the end of the run:

variant     saved       peak saved  pages scanned  full scans  swap used     free
--------  -------  ---------------  -------------  ----------  ---------  -------
fixed     560 MiB  576 MiB at 4min         750000           6        0 B  680 MiB
ksmtuned  608 MiB  608 MiB at 5min         570000           4    128 MiB  856 MiB
`;

describe('formatSummary', () => {
  it('one run without variants: title, guests and host, KSM figures, peak and overcommit, the failed step', () => {
    expect(formatSummary([SINGLE])).toBe(SINGLE_SUMMARY);
  });

  it('two variants: each run in turn, then a table comparing them', () => {
    expect(formatSummary([FIXED, TUNED])).toBe(TWO_SUMMARY);
  });

  it('a run without errors has no error list: it ends at the peak and overcommit line', () => {
    // TUNED alone is its block of TWO_SUMMARY, without the comparison after it.
    const block = TWO_SUMMARY.slice(TWO_SUMMARY.indexOf('web-pair (variant ksmtuned)'), TWO_SUMMARY.indexOf('\n2 variants'));
    expect(block.endsWith('overcommit 1.50 (3 GiB promised / 2 GiB RAM)\n')).toBe(true);
    expect(formatSummary([TUNED])).toBe(block);
  });

  it('lists every failed event, in order, and only those', () => {
    const r: RunResult = {
      ...SINGLE,
      events: [
        { t: 500, what: 'start web-3 (fedora 13)', error: 'ENOMEM: no room for 1.5 GiB' },
        { t: 1000, what: 'pause web-1', error: null },
        { t: 3_600_000, what: 'offline block 3', error: 'EBUSY: memory block 3 holds unmovable pages' },
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

variant    saved       peak saved  pages scanned  full scans  swap used     free
-------  -------  ---------------  -------------  ----------  ---------  -------
#1       560 MiB  576 MiB at 4min         750000           6        0 B  680 MiB
#2       560 MiB  576 MiB at 4min         750000           6        0 B  680 MiB
`);
    expect(comparison([FIXED, { ...TUNED, scenario: 'db-pair' }])).toBe(`2 variants at the end of the run:

variant             saved       peak saved  pages scanned  full scans  swap used     free
----------------  -------  ---------------  -------------  ----------  ---------  -------
web-pair fixed    560 MiB  576 MiB at 4min         750000           6        0 B  680 MiB
db-pair ksmtuned  608 MiB  608 MiB at 5min         570000           4    128 MiB  856 MiB
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
