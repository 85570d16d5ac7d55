import { KernelError, assertNever } from '../lib/errors.js';
import { Kubevirt, type KubevirtConfig, type KubevirtSnapshot, checkKubevirtSnapshot } from './kubevirt.js';
import { Ksmtuned, type KsmtunedConfig, type KsmtunedSnapshot, checkKsmtunedSnapshot } from './ksmtuned.js';
import { Mom, type MomConfig, type MomSnapshot, checkMomSnapshot } from './mom.js';

/**
 * KSM governors: the user-space daemons that decide whether ksmd runs and how hard,
 * each re-expressed step by step from its source (ksmtuned.ts, mom.ts, kubevirt.ts
 * cite theirs). They share one shape:
 *
 *  - A governor sees the host only through a GovernorPort: the files the real daemon
 *    reads (/proc/meminfo, /sys/kernel/mm/ksm/*, ps of the qemu processes) and the
 *    knob files it writes. A write can fail as the kernel's store would (EINVAL for a
 *    value over UINT_MAX); each daemon handles that as its source does.
 *  - It wakes at simulated times of its own choosing (`nextAt`, absolute ms): the
 *    host calls wake() at exactly that instant, on its grid, before the guests write
 *    for that tick. What it did comes back as log entries.
 *  - Its whole state is plain data (snapshot()), so a saved host resumes it exactly.
 *
 * Invariant: nextAt is finite and greater than the `now` of the last wake().
 */

/** What a governor can read and write on its host, as the real daemon would. */
export interface GovernorPort {
  /** /proc/meminfo, in kB. */
  meminfo(): Readonly<Record<string, number>>;
  /** The processes `pgrep qemu` finds, with `ps -o rsz,vsz` (kB). */
  qemuProcesses(): readonly { readonly rssKb: number; readonly vszKb: number }[];
  /** /sys/kernel/mm/ksm/<file>, read as a number. */
  readKsm(file: string): number;
  /** Write /sys/kernel/mm/ksm/<file>; throws the KernelError the store returns. */
  writeKsm(file: string, value: number): void;
}

/** One line of the host's log: what the governor did, and the error of a write that failed. */
export interface GovernorNote {
  readonly what: string;
  readonly error: string | null;
}

export interface KsmGovernor {
  readonly policy: 'ksmtuned' | 'mom' | 'kubevirt';
  /** When it next wakes, in simulated ms since the host started. */
  readonly nextAt: number;
  /** Do what is due at `now` (the host calls exactly at nextAt). */
  wake(port: GovernorPort, now: number): GovernorNote[];
  snapshot(): GovernorSnapshot;
}

export type GovernorSnapshot = KsmtunedSnapshot | MomSnapshot | KubevirtSnapshot;

/** The governed policies: which daemon, configured how (unset fields: the source's defaults). */
export type GovernedPolicy =
  | { policy: 'ksmtuned'; config: Partial<KsmtunedConfig> }
  | { policy: 'mom'; config: Partial<MomConfig> }
  | { policy: 'kubevirt'; config: Partial<KubevirtConfig> };

/**
 * Start a governor at simulated time `now`, as its daemon starts: ksmtuned derives its
 * figures from MemTotal and first adjusts one interval later; MOM collects at once and
 * first evaluates its policy one policy-engine interval later; KubeVirt's handler spins
 * at once. EINVAL for a configuration the daemon could not run with.
 */
export function startGovernor(p: GovernedPolicy, port: GovernorPort, now: number): KsmGovernor {
  switch (p.policy) {
    case 'ksmtuned':
      return Ksmtuned.start(p.config, port, now);
    case 'mom':
      return Mom.start(p.config, now);
    case 'kubevirt':
      return Kubevirt.start(p.config, now);
    default:
      return assertNever(p, 'KSM policy');
  }
}

/** A governor from snapshot(); the caller has checked it with checkGovernorSnapshot. */
export function restoreGovernor(s: GovernorSnapshot): KsmGovernor {
  switch (s.policy) {
    case 'ksmtuned':
      return Ksmtuned.fromSnapshot(s);
    case 'mom':
      return Mom.fromSnapshot(s);
    case 'kubevirt':
      return Kubevirt.fromSnapshot(s);
    default:
      return assertNever(s, 'governor snapshot');
  }
}

/** Where a governor snapshot is not what snapshot() writes: a message, or null. */
export function checkGovernorSnapshot(s: unknown): string | null {
  if (s === null || typeof s !== 'object') return 'expected a governor record';
  const r = s as Record<string, unknown>;
  if (!Number.isFinite(r.nextAt)) return `nextAt: expected a time, found ${JSON.stringify(r.nextAt)}`;
  switch (r.policy) {
    case 'ksmtuned':
      return checkKsmtunedSnapshot(r);
    case 'mom':
      return checkMomSnapshot(r);
    case 'kubevirt':
      return checkKubevirtSnapshot(r);
    default:
      return `policy: expected ksmtuned, mom or kubevirt, found ${JSON.stringify(r.policy)}`;
  }
}

/**
 * Write one knob as a daemon's `echo value > file` does: a refused value is an error
 * for the log, and the caller decides whether to go on (a shell script does, a Go
 * function returns).
 */
export function echoKnob(port: GovernorPort, file: string, value: number): string | null {
  try {
    port.writeKsm(file, value);
    return null;
  } catch (e) {
    if (!(e instanceof KernelError)) throw e;
    return `write ${value} to /sys/kernel/mm/ksm/${file}: ${e.message}`;
  }
}

/** Whole numbers only, where the daemon's language has no fractions (bash, Go int). */
export function checkWhole(who: string, c: Readonly<Record<string, number>>, fields: readonly string[]): void {
  for (const k of fields) {
    const v = c[k];
    if (v === undefined || !Number.isSafeInteger(v)) throw new KernelError('EINVAL', `${who}: ${k} must be a whole number, got ${String(v)}`);
  }
}
