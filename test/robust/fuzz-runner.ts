/**
 * Runs snapshot-fuzz-child.ts over cases [from, to) in child processes with a
 * watchdog: a child silent for `silenceMs` is killed, its current case recorded as
 * a hang, and a new child goes on from the next case. Shared by the test (a small
 * campaign) and bench/snapshot-fuzz.ts (a large one).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface FuzzReport {
  cases: number;
  /** How the fine cases went: 'restored and ran', or the SnapshotError's problem. */
  outcomes: Record<string, number>;
  /** Lines of cases that went wrong: raw errors, invariant failures, hangs. */
  bad: string[];
}

const CHILD = fileURLToPath(new URL('./snapshot-fuzz-child.ts', import.meta.url));

function runChild(from: number, to: number, silenceMs: number, report: FuzzReport): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, String(from), String(to)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let current = from;
    let done = from;
    let buf = '';
    let stderr = '';
    let timer = setTimeout(() => child.kill('SIGKILL'), silenceMs * 4); // startup builds the base file
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => child.kill('SIGKILL'), silenceMs);
    };
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /^(start|ok|bad) (\d+) ?(.*)$/.exec(line);
        if (m === null) continue;
        if (m[1] === 'start') {
          current = Number(m[2]);
          arm();
          continue;
        }
        report.cases++;
        done = Number(m[2]) + 1;
        if (m[1] === 'bad') report.bad.push(`case ${m[2]}: ${m[3]}`);
        else {
          const how = /^(restored and ran|\w+)/.exec(m[3]!)![1]!;
          report.outcomes[how] = (report.outcomes[how] ?? 0) + 1;
        }
      }
    });
    child.on('close', (_code, signal) => {
      clearTimeout(timer);
      if (done >= to) return resolve(to);
      // Killed by the watchdog, or died: the case it was on is the culprit.
      report.cases++;
      report.bad.push(`case ${current}: ${signal === 'SIGKILL' ? `hung (silent for ${silenceMs} ms)` : `child died: ${stderr.split('\n').find((l) => l.trim() !== '') ?? 'no message'}`}`);
      resolve(current + 1);
    });
  });
}

/** Cases [from, to), `batch` per child, children one at a time. */
export async function fuzzSnapshots(from: number, to: number, opts: { batch: number; silenceMs: number }): Promise<FuzzReport> {
  const report: FuzzReport = { cases: 0, outcomes: {}, bad: [] };
  let next = from;
  while (next < to) next = await runChild(next, Math.min(to, next + opts.batch), opts.silenceMs, report);
  return report;
}
