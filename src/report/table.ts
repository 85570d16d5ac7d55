import { DEFAULT_KERNEL_VERSION } from '../ksm/profile.js';
import { statsIn } from '../ksm/stats.js';
import type { GuestSummary, RunEvent, RunResult } from '../scenario/types.js';
import { formatDuration, formatSize } from '../vmm/config.js';

/**
 * The text `samepage run` prints: per variant, a title line, a table of the guests and
 * the host at the end of the run, the KSM statistics, ksmd's estimated CPU, the peak
 * saving and the overcommit ratio, convergence (when the saving reached 90% of its
 * final value, the lowest free memory), the guests the OOM killer killed and those
 * refused at start, and the errors the run met; with several variants, a table that
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
  out.push(
    `ksmd: ${percent(h.ksmdCpuAvg)} of a core on average, peak ${percent(h.ksmdCpuPeak)} at ${formatDuration(h.ksmdCpuPeakAt)}; ` +
      `${seconds(h.ksmdCpuMs)} of CPU (estimated from its work: ${h.work.checksums} checksums, ${h.work.stableTreeCompares + h.work.unstableTreeCompares} tree comparisons, ${h.work.merges} merges)`,
  );
  // ksmd is one thread: more than a core means the real one would fall behind these knobs.
  if (h.ksmdCpuPeak > 1) out.push(`  more than one core: the real ksmd could not keep up with these knobs, and would merge more slowly than this run`);
  out.push(`peak saved ${formatSize(h.peakSavedBytes)} at ${formatDuration(h.peakSavedAt)}; ${overcommit(h.guestRamBytes, h.ramBytes)}`);
  const converged = h.saved90At === null ? 'nothing saved at the end' : `90% of the final saving at ${formatDuration(h.saved90At)}`;
  out.push(`converged: ${converged}; lowest free memory ${formatSize(h.minFreeBytes)} at ${formatDuration(h.minFreeAt)}`);
  out.push(...casualtyLines(r.events));
  const errors = r.events.filter((e) => e.error !== null);
  if (errors.length > 0) {
    out.push('');
    out.push(`${errors.length} ${errors.length === 1 ? 'error' : 'errors'}:`);
    for (const e of errors) out.push(`! ${formatDuration(e.t)}: ${e.what}: ${e.error!}`);
  }
  return out.join('\n');
}

/** "12.3%": a share of one core. */
function percent(share: number): string {
  return `${(100 * share).toFixed(1)}%`;
}

/** "7.4 s", "0.31 s", "120 s". */
function seconds(ms: number): string {
  const s = ms / 1000;
  return `${s >= 100 ? s.toFixed(0) : s >= 1 ? s.toFixed(1) : s.toFixed(2)} s`;
}

/**
 * "3 guests OOM-killed: web-3 at 1min 12s, …", the same for host processes the OOM
 * killer chose, and "1 guest refused at start: win at 30s (ENOMEM: …)". Nothing when
 * there were none.
 */
export function casualtyLines(events: readonly RunEvent[]): string[] {
  const out: string[] = [];
  const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`;
  const guestKills = events.filter((e) => e.kind === 'oom-kill' && e.guest !== null);
  if (guestKills.length > 0) out.push(`${plural(guestKills.length, 'guest', 'guests')} OOM-killed: ${guestKills.map((e) => `${e.guest!} at ${formatDuration(e.t)}`).join(', ')}`);
  const hostKills = events.filter((e) => e.kind === 'oom-kill' && e.guest === null);
  if (hostKills.length > 0) {
    const names = hostKills.map((e) => `${/killed (\S+)/.exec(e.what)?.[1] ?? e.what} at ${formatDuration(e.t)}`);
    out.push(`${plural(hostKills.length, 'host process', 'host processes')} OOM-killed: ${names.join(', ')}`);
  }
  const refused = events.filter((e) => e.kind === 'refused');
  if (refused.length > 0) out.push(`${plural(refused.length, 'guest', 'guests')} refused at start: ${refused.map((e) => `${e.guest!} at ${formatDuration(e.t)} (${e.error ?? 'failed'})`).join(', ')}`);
  return out;
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
      percent(h.ksmdCpuAvg),
      h.saved90At === null ? '-' : formatDuration(h.saved90At),
    ];
  });
  const table = showKernel
    ? formatTable(['variant', 'kernel', 'saved', 'peak saved', 'pages scanned', 'full scans', 'swap used', 'free', 'ksmd CPU', '90% saved at'], rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'])
    : formatTable(['variant', 'saved', 'peak saved', 'pages scanned', 'full scans', 'swap used', 'free', 'ksmd CPU', '90% saved at'], rows, ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']);
  return `${results.length} variants at the end of the run:\n\n${table}`;
}

/** The variant's name; the scenario's too when the results come from different scenarios; "#n" when nothing names it. */
function variantLabel(r: RunResult, i: number, sameScenario: boolean): string {
  if (r.variant === null) return sameScenario ? `#${i + 1}` : r.scenario;
  return sameScenario ? r.variant : `${r.scenario} ${r.variant}`;
}
