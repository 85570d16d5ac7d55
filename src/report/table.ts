import { DEFAULT_KERNEL_VERSION } from '../ksm/profile.js';
import { statsIn } from '../ksm/stats.js';
import type { GuestSummary, RunResult } from '../scenario/types.js';
import { formatDuration, formatSize } from '../vmm/config.js';

/**
 * The text `samepage run` prints: per variant, a title line, a table of the guests and
 * the host at the end of the run, the KSM statistics, the peak saving and the
 * overcommit ratio, and the errors the run met; with several variants, a table that
 * compares them.
 *
 * Everything here is a pure function of the results: same results, same bytes. No
 * colours and no terminal widths; the caller may add either. Numbers are printed the
 * way the kernel prints them (plain decimal, no grouping), so they can be pasted beside
 * a real `/sys/kernel/mm/ksm` and compared by eye.
 */

/** Columns are separated by this; it is also what keeps a right-aligned column off its left neighbour. */
const GAP = '  ';

/**
 * Plain-text columns: the header, a rule of dashes under it, then the rows, each
 * column padded to its widest cell and aligned left ('l') or right ('r'). Lines are
 * joined with '\n', have no trailing spaces and there is no final newline, so tables
 * compose with other text. A row shorter than the header is padded with empty cells.
 * Widths count code points, not UTF-16 units, so "≈" or "é" do not skew a column.
 */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[], align: readonly ('l' | 'r')[]): string {
  if (align.length !== header.length) {
    throw new Error(`formatTable: expected ${header.length} alignments (one per column), got ${align.length}`);
  }
  rows.forEach((row, i) => {
    if (row.length > header.length) {
      throw new Error(`formatTable: row ${i} has ${row.length} cells, expected at most ${header.length} (one per column)`);
    }
  });
  const width = header.map((h, c) => Math.max(textWidth(h), ...rows.map((r) => textWidth(r[c] ?? ''))));
  const line = (cells: readonly string[]): string =>
    header
      .map((_, c) => {
        const cell = cells[c] ?? '';
        const pad = ' '.repeat(width[c]! - textWidth(cell));
        return align[c] === 'r' ? pad + cell : cell + pad;
      })
      .join(GAP)
      .trimEnd();
  return [line(header), line(width.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

function textWidth(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/**
 * The summary of one run per variant, then (with two or more) the comparison table.
 * Ends with a newline. See the module comment; test/report/table.test.ts has the whole
 * output for one and for two variants.
 */
export function formatSummary(results: readonly RunResult[]): string {
  // Which kernel ran is said wherever a run is not the default 2.6.33 (so runs of
  // 2.6.33 alone print as they always did).
  const showKernel = results.some((r) => r.kernel !== DEFAULT_KERNEL_VERSION);
  const blocks = results.map((r) => formatResult(r, showKernel));
  if (results.length >= 2) blocks.push(formatComparison(results, showKernel));
  return blocks.length === 0 ? '' : `${blocks.join('\n\n')}\n`;
}

function formatResult(r: RunResult, showKernel: boolean): string {
  const out: string[] = [];
  out.push(titleLine(r, showKernel));
  out.push('');
  out.push(guestTable(r));
  out.push('');
  const h = r.host;
  out.push(`ksm: ${statsIn(h).map((s) => `${s.label} ${h[s.name]}`).join(', ')}`);
  out.push(`peak saved ${formatSize(h.peakSavedBytes)} at ${formatDuration(h.peakSavedAt)}; ${overcommit(h.guestRamBytes, h.ramBytes)}`);
  const errors = r.events.filter((e) => e.error !== null);
  if (errors.length > 0) {
    out.push('');
    out.push(`${errors.length} ${errors.length === 1 ? 'error' : 'errors'}:`);
    for (const e of errors) out.push(`! ${formatDuration(e.t)}: ${e.what}: ${e.error!}`);
  }
  return out.join('\n');
}

/** "web-fleet (variant ksmtuned): 5min simulated, seed 42, policy ksmtuned". The policy is free text, so it goes last. */
function titleLine(r: RunResult, showKernel: boolean): string {
  const variant = r.variant === null ? '' : ` (variant ${r.variant})`;
  const kernel = showKernel ? `Linux ${r.kernel}, ` : '';
  return `${r.scenario}${variant}: ${formatDuration(r.durationMs)} simulated, seed ${r.seed}, ${kernel}policy ${r.policy}`;
}

/**
 * One row per guest, then the host. The host row puts each host figure under the guest
 * column it is the counterpart of: its RAM under RAM, what is in use (total − free, the
 * guests' resident pages and everything else) under resident, what KSM saves under saved,
 * swap in use under swap; and what the guests were promised in the image column, since
 * it is the sum of the RAM column and would otherwise have nowhere to go.
 */
function guestTable(r: RunResult): string {
  const h = r.host;
  const rows = r.guests.map(guestRow);
  rows.push(['host', `promised ${formatSize(h.guestRamBytes)}`, '', formatSize(h.ramBytes), formatSize(h.ramBytes - h.freeBytes), '', formatSize(h.savedBytes), formatSize(h.swapUsedBytes)]);
  return formatTable(['guest', 'image', 'state', 'RAM', 'resident', 'merged', 'saved', 'swap'], rows, ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'r']);
}

function guestRow(g: GuestSummary): string[] {
  // A guest started with mem-merge=off never has merged pages; "off" says why its column is empty.
  const merged = !g.memMerge && g.mergedBytes === 0 ? 'off' : formatSize(g.mergedBytes);
  return [g.name, g.image, g.state, formatSize(g.ramBytes), formatSize(g.residentBytes), merged, formatSize(g.savedBytes), formatSize(g.swapBytes)];
}

/** "overcommit 1.50 (6 GiB promised / 4 GiB RAM)". */
function overcommit(guestRam: number, hostRam: number): string {
  const ratio = hostRam > 0 ? (guestRam / hostRam).toFixed(2) : 'n/a';
  return `overcommit ${ratio} (${formatSize(guestRam)} promised / ${formatSize(hostRam)} RAM)`;
}

function formatComparison(results: readonly RunResult[], showKernel: boolean): string {
  const sameScenario = results.every((r) => r.scenario === results[0]!.scenario);
  const rows = results.map((r, i) => {
    const h = r.host;
    return [
      variantLabel(r, i, sameScenario),
      ...(showKernel ? [r.kernel] : []),
      formatSize(h.savedBytes),
      `${formatSize(h.peakSavedBytes)} at ${formatDuration(h.peakSavedAt)}`,
      String(h.pagesScanned),
      String(h.fullScans),
      formatSize(h.swapUsedBytes),
      formatSize(h.freeBytes),
    ];
  });
  const table = showKernel
    ? formatTable(['variant', 'kernel', 'saved', 'peak saved', 'pages scanned', 'full scans', 'swap used', 'free'], rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r'])
    : formatTable(['variant', 'saved', 'peak saved', 'pages scanned', 'full scans', 'swap used', 'free'], rows, ['l', 'r', 'r', 'r', 'r', 'r', 'r']);
  return `${results.length} variants at the end of the run:\n\n${table}`;
}

/** The variant's name; the scenario's too when the results come from different scenarios; "#n" when nothing names it. */
function variantLabel(r: RunResult, i: number, sameScenario: boolean): string {
  if (r.variant === null) return sameScenario ? `#${i + 1}` : r.scenario;
  return sameScenario ? r.variant : `${r.scenario} ${r.variant}`;
}
