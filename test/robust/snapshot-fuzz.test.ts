/**
 * Damaged snapshot files, a small seeded campaign (bench/snapshot-fuzz.ts runs a
 * large one): truncations, bit flips (the CRC must catch them), bytes of the kernel's
 * byte fields changed and scalar fields set to odd values, off by one or removed
 * (with the CRC fixed, so that the decoder's own checks and the deep invariant check
 * after restore are what is tried). Each file is restored as a scenario run in a
 * child process under a watchdog; it must be refused with SnapshotError, or restore
 * into a consistent run that finishes. Never a raw error, an InvariantError or a hang.
 */
import { describe, expect, it } from 'vitest';
import { fuzzSnapshots } from './fuzz-runner.js';

describe('damaged snapshot files', () => {
  it('30 seeded damages: each refused with SnapshotError or restored into a run that finishes consistent', async () => {
    const report = await fuzzSnapshots(0, 30, { batch: 15, silenceMs: 60_000 });
    expect(report.bad).toEqual([]);
    expect(report.cases).toBe(30);
    // Each kind of damage is met: truncation and flips by the header, field damage by the checks.
    expect(report.outcomes.truncated).toBe(6);
    expect(report.outcomes.corrupt).toBe(6);
    expect((report.outcomes.invalid ?? 0) + (report.outcomes['restored and ran'] ?? 0)).toBe(18);
  }, 300_000);
});
