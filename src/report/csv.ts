import { KSM_STATS } from '../ksm/stats.js';
import { KSM_WORK_FIELDS } from '../ksm/work.js';
import type { RunResult } from '../scenario/types.js';
import type { HostSample } from '../vmm/types.js';

/**
 * The samples of a run as CSV (`samepage run --csv FILE|-`): one row per sample per
 * variant, in run order then time order, with a header row. RFC 4180: fields separated
 * by commas, rows by CRLF, a field quoted (with doubled quotes) only when it holds a
 * comma, a quote or a line break. Numbers are plain decimals as the JSON has them
 * (bytes, ms, counts; ksmd_cpu a fraction of one core).
 *
 * The columns, in order (CSV_COLUMNS): scenario, variant (empty without variants),
 * kernel, t_ms; every KSM statistic (pages_shared, pages_sharing, pages_unshared,
 * pages_volatile, full_scans, pages_scanned, then 6.x's pages_skipped, ksm_zero_pages,
 * stable_node_chains, stable_node_dups, general_profit: empty in a run whose kernel
 * has no such statistic, so that variants of both kernels share one header); saved_bytes, total_bytes, free_bytes,
 * swap_used_bytes; the knobs run, pages_to_scan, sleep_millisecs; ksmd_cpu (share of
 * one core since the previous sample), ksmd_cpu_ms (estimated CPU since the start);
 * ksmd's work counters as work_checksums, work_stable_tree_compares, … (cumulative);
 * then guests_running, guests_stopped, guests_oom_killed, guests_refused (how many
 * guests are in each state; booting and paused guests count as running).
 */

interface Column {
  readonly name: string;
  value(r: RunResult, s: HostSample): string;
}

/** camelCase to snake_case: pagesScanned → pages_scanned. */
function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

const num = (v: number): string => String(v);
const count = (s: HostSample, states: readonly string[]): string => String(s.guests.filter((g) => states.includes(g.state)).length);

export const CSV_COLUMNS: readonly Column[] = [
  { name: 'scenario', value: (r) => r.scenario },
  { name: 'variant', value: (r) => r.variant ?? '' },
  { name: 'kernel', value: (r) => r.kernel },
  { name: 't_ms', value: (_, s) => num(s.t) },
  ...KSM_STATS.map((k): Column => ({ name: snake(k.name), value: (_, s) => (s[k.name] === undefined ? '' : num(s[k.name]!)) })),
  { name: 'saved_bytes', value: (_, s) => num(s.savedBytes) },
  { name: 'total_bytes', value: (_, s) => num(s.totalBytes) },
  { name: 'free_bytes', value: (_, s) => num(s.freeBytes) },
  { name: 'swap_used_bytes', value: (_, s) => num(s.swapUsedBytes) },
  { name: 'run', value: (_, s) => num(s.run) },
  { name: 'pages_to_scan', value: (_, s) => num(s.pagesToScan) },
  { name: 'sleep_millisecs', value: (_, s) => num(s.sleepMillisecs) },
  { name: 'ksmd_cpu', value: (_, s) => num(s.ksmdCpu) },
  { name: 'ksmd_cpu_ms', value: (_, s) => num(s.ksmdCpuMs) },
  ...KSM_WORK_FIELDS.filter((f) => f !== 'pagesScanned').map((f): Column => ({ name: `work_${snake(f)}`, value: (_, s) => num(s.work[f]) })),
  { name: 'guests_running', value: (_, s) => count(s, ['booting', 'running', 'paused']) },
  { name: 'guests_stopped', value: (_, s) => count(s, ['stopped']) },
  { name: 'guests_oom_killed', value: (_, s) => count(s, ['oom-killed']) },
  { name: 'guests_refused', value: (_, s) => count(s, ['refused']) },
];

function field(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** The CSV text for every sample of every run, header first, each row ended by CRLF. */
export function toCsv(results: readonly RunResult[]): string {
  const rows = [CSV_COLUMNS.map((c) => c.name).join(',')];
  for (const r of results) for (const s of r.samples) rows.push(CSV_COLUMNS.map((c) => field(c.value(r, s))).join(','));
  return `${rows.join('\r\n')}\r\n`;
}
