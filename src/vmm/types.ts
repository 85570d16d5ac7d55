import type { KsmStats } from '../ksm/stats.js';

/**
 * What a host reports about itself and its guests at one instant of simulated time.
 * Pages are 4 KiB; byte figures are exact multiples of the page size except
 * `savedBytes` of a guest, which is that guest's share of what KSM saves.
 */

/** A guest's life: created → booting → running ⇄ paused → stopped (→ booting again) → destroyed. */
export type GuestState = 'created' | 'booting' | 'running' | 'paused' | 'stopped' | 'destroyed';

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

/** The host at one instant: every KSM statistic (KsmStats, src/ksm/stats.ts), memory, swap and the knobs. */
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
  guests: GuestSample[];
}
