import { describe, expect, it } from 'vitest';
import { CSV_COLUMNS, toCsv } from '../../src/report/csv.js';
import { FIXED, SINGLE, TUNED } from './fixtures.js';

describe('toCsv', () => {
  it('has a header, then one row per sample per variant, CRLF after each', () => {
    const text = toCsv([FIXED, TUNED]);
    expect(text.endsWith('\r\n')).toBe(true);
    const rows = text.slice(0, -2).split('\r\n');
    expect(rows.length).toBe(1 + FIXED.samples.length + TUNED.samples.length);
    expect(rows[0]).toBe(
      'scenario,variant,kernel,t_ms,pages_shared,pages_sharing,pages_unshared,pages_volatile,full_scans,pages_scanned,' +
        'pages_skipped,ksm_zero_pages,stable_node_chains,stable_node_dups,general_profit,saved_bytes,total_bytes,free_bytes,swap_used_bytes,' +
        'run,pages_to_scan,sleep_millisecs,ksmd_cpu,ksmd_cpu_ms,work_checksums,work_stable_tree_compares,work_unstable_tree_compares,work_merge_compares,' +
        'work_bytes_compared,work_merges,work_unmerges,work_rmap_items_allocated,work_rmap_items_freed,guests_running,guests_stopped,guests_oom_killed,guests_refused',
    );
    // The fixed variant at 30 s: 75000 pages scanned, half checksummed; ksmd's CPU from the
    // default costs (397 ns a page, 665 a checksum): 54.7125 ms, over 30 s.
    // A 2.6.33 run has no 6.x statistics: their columns are empty.
    expect(rows[2]).toBe(`web-pair,fixed,2.6.33,30000,4096,16384,90000,2000,0,75000,,,,,,67108864,2147483648,738197504,0,1,1250,20,${54.7125 / 30_000},54.7125,37500,0,0,0,0,0,0,0,0,2,0,0,0`);
    expect(rows[1 + FIXED.samples.length]!.startsWith('web-pair,ksmtuned,2.6.33,0,')).toBe(true);
    expect(rows.every((r) => r.split(',').length === CSV_COLUMNS.length)).toBe(true);
  });

  it('quotes a field with a comma or a quote, doubling the quote; a run without variants has an empty variant', () => {
    const rows = toCsv([SINGLE, { ...SINGLE, variant: 'a,"b"' }]).split('\r\n');
    expect(rows[1]!.startsWith('web-pair,,2.6.33,0,')).toBe(true);
    expect(rows[1 + SINGLE.samples.length]!.startsWith('web-pair,"a,""b""",2.6.33,0,')).toBe(true);
  });

  it('counts guests by state: booting and paused as running', () => {
    const s = FIXED.samples[1]!;
    const states = ['booting', 'paused', 'stopped', 'oom-killed', 'oom-killed', 'refused'] as const;
    const guests = states.map((state, i) => ({ ...s.guests[0]!, name: `g${i}`, state }));
    const row = toCsv([{ ...FIXED, samples: [{ ...s, guests }] }]).split('\r\n')[1]!.split(',');
    expect(row.slice(-4)).toEqual(['2', '1', '2', '1']);
  });
});
