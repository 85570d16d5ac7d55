import type { PlanLimits, SearchAnswer, TrialOutcome } from '../scenario/plan.js';
import { formatDuration, formatSize } from '../vmm/config.js';
import { formatTable } from './table.js';

/**
 * What `samepage plan` prints, as text for people and as JSON for machines:
 *
 *   {
 *     "format": "samepage-plan",
 *     "version": 1,
 *     "samepage": "0.1.0",
 *     ...PlanReport
 *   }
 *
 * Pure functions of the report: the same answers give the same bytes, except the
 * wall times, which the report carries as measured.
 */

export const PLAN_FORMAT = 'samepage-plan';
export const PLAN_FORMAT_VERSION = 1;

/** One search: a policy (the scenario's, a swept value's) and its answer. */
export interface PlanAnswer {
  /** The swept knob or kernel and its value, or null. */
  sweep: { name: string; value: string } | null;
  /** The policy the trials ran, as a run's title names it. */
  policy: string;
  answer: SearchAnswer;
}

export interface PlanReport {
  scenario: string;
  file: string;
  guest: string;
  /** The template: "fedora 13", its RAM. */
  image: string;
  guestRamBytes: number;
  hostRamBytes: number;
  hostSwapBytes: number;
  limits: PlanLimits;
  /** The largest count tried. */
  max: number;
  withKsm: PlanAnswer[];
  /** ksmd off (run 0): one per kernel the searches ran. */
  withoutKsm: PlanAnswer[];
  trials: number;
  jobs: number;
  wallMs: number;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** "7.4 s", "0.31 s". */
function cpuSeconds(ms: number): string {
  const sec = ms / 1000;
  return `${sec >= 100 ? sec.toFixed(0) : sec >= 1 ? sec.toFixed(1) : sec.toFixed(2)} s`;
}

function percent(share: number): string {
  return `${(100 * share).toFixed(1)}%`;
}

/** "9 guests fit", "at least 64 guests fit (the most tried)", "not even 1 guest fits". */
function headline(a: SearchAnswer): string {
  if (a.count === 0) return 'not even 1 guest fits';
  return a.atLeast ? `at least ${plural(a.count, 'guest')} fit (the most tried)` : `${plural(a.count, 'guest')} fit${a.count === 1 ? 's' : ''}`;
}

/** The margin at the answer: free memory and swap against their limits. */
function margin(o: TrialOutcome, limits: PlanLimits): string {
  return `lowest free memory ${formatSize(o.minFreeBytes)} at ${formatDuration(o.minFreeAt)} (limit ${formatSize(limits.minFreeBytes)}), swap used at most ${formatSize(o.peakSwapBytes)} (limit ${formatSize(limits.maxSwapBytes)})`;
}

function answerLines(label: string, p: PlanAnswer, limits: PlanLimits, withCost: boolean): string[] {
  const a = p.answer;
  const out = [`${label}: ${headline(a)}`];
  if (a.fit !== null) out.push(`  at ${a.fit.count}: ${margin(a.fit, limits)}`);
  if (a.next !== null) out.push(`  at ${a.next.count}: does not fit: ${a.next.violations.join('; ')}`);
  if (a.fit !== null && withCost) {
    const f = a.fit;
    const conv = f.saved90At === null ? '' : `, 90% of it by ${formatDuration(f.saved90At)}`;
    out.push(`  saved at ${f.count}: ${formatSize(f.savedBytes)} at the end (peak ${formatSize(f.peakSavedBytes)} at ${formatDuration(f.peakSavedAt)}${conv})`);
    out.push(`  ksmd at ${f.count}: ${percent(f.ksmdCpuAvg)} of a core on average, peak ${percent(f.ksmdCpuPeak)} at ${formatDuration(f.ksmdCpuPeakAt)} (${cpuSeconds(f.ksmdCpuMs)} of CPU in ${formatDuration(f.durationMs)})`);
    if (f.ksmdCpuPeak > 1) out.push('  (more than one core: the real ksmd could not keep up with these knobs, and would merge more slowly)');
  }
  return out;
}

/** The text `samepage plan` prints. Ends with a newline. */
export function formatPlan(r: PlanReport): string {
  const out: string[] = [];
  out.push(`plan: how many ${r.guest} guests (${r.image}, ${formatSize(r.guestRamBytes)} each) fit on ${r.scenario}'s host (${formatSize(r.hostRamBytes)} RAM, ${formatSize(r.hostSwapBytes)} swap)`);
  out.push(`fit: no OOM kill, no guest refused at start, swap used at most ${formatSize(r.limits.maxSwapBytes)} and free memory at least ${formatSize(r.limits.minFreeBytes)} at every sample`);
  out.push('');
  for (const p of r.withKsm) {
    const label = p.sweep === null ? `with KSM (${p.policy})` : `with KSM, ${p.sweep.name} ${p.sweep.value} (${p.policy})`;
    out.push(...answerLines(label, p, r.limits, true));
  }
  for (const p of r.withoutKsm) {
    const label = p.sweep === null ? 'without KSM (run 0)' : `without KSM (run 0), ${p.sweep.name} ${p.sweep.value}`;
    out.push(...answerLines(label, p, r.limits, false));
  }
  if (r.withKsm.length > 1) {
    out.push('');
    const name = r.withKsm[0]!.sweep!.name;
    const rows = r.withKsm.map((p) => {
      const f = p.answer.fit;
      return [
        p.sweep!.value,
        `${p.answer.atLeast ? '≥' : ''}${p.answer.count}`,
        f === null ? '-' : formatSize(f.savedBytes),
        f === null ? '-' : percent(f.ksmdCpuAvg),
        f === null ? '-' : percent(f.ksmdCpuPeak),
        p.answer.next === null ? '-' : (p.answer.next.violations[0] ?? '-'),
      ];
    });
    out.push(formatTable([name, 'fit', 'saved at fit', 'ksmd avg', 'ksmd peak', 'one more: first limit broken'], rows, ['l', 'r', 'r', 'r', 'r', 'l']));
  }
  const withTrials = r.withKsm.reduce((n, p) => n + p.answer.trials.length, 0);
  out.push('');
  out.push(`${plural(r.trials, 'trial')} (${withTrials} with KSM, ${r.trials - withTrials} without), up to ${r.max} guests, ${r.jobs} at a time, in ${(r.wallMs / 1000).toFixed(1)} s`);
  return `${out.join('\n')}\n`;
}

/** The JSON document for machines: the whole report, pretty-printed, ending in a newline. */
export function planToJson(r: PlanReport, samepageVersion: string): string {
  return `${JSON.stringify({ format: PLAN_FORMAT, version: PLAN_FORMAT_VERSION, samepage: samepageVersion, ...r }, null, 2)}\n`;
}
