import type { KsmStats } from '../ksm/stats.js';
import type { KsmWorkCounts } from '../ksm/work.js';

/**
 * What a host reports about itself and its guests at one instant of simulated time.
 * Pages are 4 KiB; byte figures are exact multiples of the page size except
 * `savedBytes` of a guest, which is that guest's share of what KSM saves.
 */

/**
 * A guest's life: created → booting → running ⇄ paused → stopped (→ booting again) →
 * destroyed. Two ends are not the operator's doing and have their own states:
 * `oom-killed` (the OOM killer chose its QEMU process: no process, as stopped) and
 * `refused` (starting it failed: QEMU could not map its RAM, or any other failure of
 * boot; it never had a process this time). Either can be started again.
 */
export type GuestState = 'created' | 'booting' | 'running' | 'paused' | 'stopped' | 'oom-killed' | 'refused' | 'destroyed';

/** Every GuestState, in life order (reports and file readers list them from here). */
export const GUEST_STATES = ['created', 'booting', 'running', 'paused', 'stopped', 'oom-killed', 'refused', 'destroyed'] as const satisfies readonly GuestState[];

/**
 * What a host log entry records:
 *  - action:        something asked of the host (start, stop, pressure, knobs, a policy…)
 *  - guest:         a guest's own progress (created, booted)
 *  - oom-kill:      the OOM killer killed a process (a guest's QEMU, or a host process)
 *  - refused:       a guest that could not start
 *  - governor:      a KSM governor's decision that changed a knob
 *  - governor-idle: a governor's decision that left every knob as it was
 */
export type HostEventKind = 'action' | 'guest' | 'oom-kill' | 'refused' | 'governor' | 'governor-idle';

export const HOST_EVENT_KINDS = ['action', 'guest', 'oom-kill', 'refused', 'governor', 'governor-idle'] as const satisfies readonly HostEventKind[];

export interface GuestSample {
  name: string;
  id: string;
  state: GuestState;
  /** Guest RAM configured (`-m`). */
  ramBytes: number;
  /** Guest RAM resident in host frames (present ptes), like the QEMU process's RSS for its RAM. */
  residentBytes: number;
  /** Guest RAM mapped to KSM pages. */
  mergedBytes: number;
  /**
   * This guest's share of the memory KSM saves: a KSM page mapped n times saves
   * n − 1 frames, and each mapping is credited (n − 1)/n of a page.
   */
  savedBytes: number;
  /** Guest RAM swapped out (swap ptes). */
  swapBytes: number;
}

/**
 * The host at one instant: every KSM statistic (KsmStats, src/ksm/stats.ts), memory,
 * swap, the knobs, and ksmd's work and its estimated CPU (src/ksm/work.ts, cost.ts).
 */
export interface HostSample extends KsmStats {
  /** Simulated time, ms since the host started. */
  t: number;
  /** Memory KSM saves: pages_sharing × 4 KiB. */
  savedBytes: number;
  /** MemTotal and MemFree. */
  totalBytes: number;
  freeBytes: number;
  /** SwapTotal − SwapFree. */
  swapUsedBytes: number;
  /** The knobs at this instant. */
  run: number;
  pagesToScan: number;
  sleepMillisecs: number;
  /** ksmd's work since the kernel started (cumulative counts). */
  work: KsmWorkCounts;
  /** ksmd's CPU time since the kernel started, estimated from `work` (ms). */
  ksmdCpuMs: number;
  /** The share of one core ksmd used since the previous sample (0 at the first): Δ ksmdCpuMs / Δ t. */
  ksmdCpu: number;
  guests: GuestSample[];
}
