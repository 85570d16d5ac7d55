import type { KsmStats } from '../ksm/stats.js';
import type { KsmWorkCounts } from '../ksm/work.js';
import type { GuestState, HostEventKind, HostSample } from '../vmm/types.js';

/** Something that happened during a run, at simulated time `t` (ms). */
export interface RunEvent {
  t: number;
  /** What kind of entry (an action, an OOM kill, a refused guest, a governor's decision…). */
  kind: HostEventKind;
  /** The guest it concerns, or null. */
  guest: string | null;
  /** What the scenario asked for or the host did, e.g. "start web-3 (fedora 13)". */
  what: string;
  /** Set when the action failed (the run goes on): "ENOMEM: out of memory ...". */
  error: string | null;
}

export interface GuestSummary {
  name: string;
  /** "fedora 13". */
  image: string;
  state: GuestState;
  memMerge: boolean;
  ramBytes: number;
  residentBytes: number;
  mergedBytes: number;
  savedBytes: number;
  swapBytes: number;
}

/** The host at the end of a run, with every KSM statistic (KsmStats) as its last sample had them. */
export interface HostSummary extends KsmStats {
  ramBytes: number;
  swapBytes: number;
  /** Sum of the guests' RAM: what the host promised. */
  guestRamBytes: number;
  freeBytes: number;
  swapUsedBytes: number;
  savedBytes: number;
  /** The most KSM saved at any sample, and when. */
  peakSavedBytes: number;
  peakSavedAt: number;
  /** Convergence: the first sample at which the saving reached 90% of the final one (null when the final saving is 0). */
  saved90At: number | null;
  /** The lowest free memory at any sample, and when (the first such sample). */
  minFreeBytes: number;
  minFreeAt: number;
  /** ksmd's work over the run (src/ksm/work.ts), as the last sample had it. */
  work: KsmWorkCounts;
  /** ksmd's estimated CPU time over the run (ms), its average share of one core over the run, and the highest share over one sample interval, ending when. */
  ksmdCpuMs: number;
  ksmdCpuAvg: number;
  ksmdCpuPeak: number;
  ksmdCpuPeakAt: number;
}

/** One run of a scenario (one variant of it). */
export interface RunResult {
  /** The scenario's name. */
  scenario: string;
  /** The variant's name, or null for a scenario without variants. */
  variant: string | null;
  /** "fixed: pages_to_scan 1250, sleep_millisecs 20" or "ksmtuned". */
  policy: string;
  /** The kernel version the host ran: '2.6.33' or '6.18'. */
  kernel: string;
  seed: number;
  durationMs: number;
  samples: HostSample[];
  events: RunEvent[];
  /** Figures at the end of the run. */
  guests: GuestSummary[];
  host: HostSummary;
}
