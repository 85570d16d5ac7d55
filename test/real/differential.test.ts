/**
 * The real-host differential test (issue 12): real QEMU guests, the real ksmd, and the
 * model replaying a capture of the very same guests.
 *
 * For each KSM configuration (6.18's defaults, a 2.6.33-like one, use_zero_pages 1):
 * boot four real guests under TCG (QEMU 7.2, Debian's 6.1 kernel, busybox; 96 MiB,
 * `nokaslr init_on_free=1`, as captures/busybox-4.cap): id-1, id-2 and mix-a boot
 * initramfs a (identical guests), mix-b initramfs b (with mix-a, a mixed pair);
 * pause them (QMP stop) and capture them with `samepage capture`'s code; drive the
 * real ksmd to convergence (test/real/ksm.ts converge(): readings 10 full scans apart,
 * 3 equal in a row); then replay the capture on a modelled 6.18 host with the same
 * knobs and drive the model's ksmd the same way (test/real/replay.ts). The model's
 * pages_shared, pages_sharing, pages_unshared + pages_volatile, stable_node_chains,
 * stable_node_dups and ksm_zero_pages must equal the real kernel's. (pages_unshared
 * and pages_volatile apart depend on where a reading falls in smart scan's skips:
 * docs/real-guests.md.) Every configuration boots fresh guests: ksmd splits THPs for
 * good, so a second configuration on the same guests would start from other memory.
 *
 * Each configuration's figures (real beside model) go to out/real-differential.json,
 * which the README's table comes from. Runs under the real-KSM lock, restoring every
 * knob (test/oracle/real.ts). Skipped, saying why, without root, QEMU and the guest
 * cache (scripts/real-guests/setup.sh), or a writable KSM.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { captureTargets } from '../../src/capture/capture.js';
import { encodeCapture, type Capture } from '../../src/vmm/capture-file.js';
import { realKsmAvailable, withRealKsm } from '../oracle/real.js';
import { converge, type RealKsmAllStats } from './ksm.js';
import { realGuestsAvailable, withRealGuests, type GuestSpec } from './qemu.js';
import { REPLAY_CONFIGS, replayConverge } from './replay.js';

const uid = process.getuid?.() ?? -1;
const skip = uid !== 0 ? `not root (uid ${uid}): capture reads /proc/PID/pagemap PFNs and /proc/kpageflags` : (realGuestsAvailable() ?? (await realKsmAvailable()));
if (skip !== null) console.warn(`test/real/differential.test.ts: skipped: ${skip}`);

const APPEND = 'nokaslr init_on_free=1';
const SPECS: GuestSpec[] = [
  { name: 'id-1', memoryMiB: 96, append: APPEND, initramfs: 'a' },
  { name: 'id-2', memoryMiB: 96, append: APPEND, initramfs: 'a' },
  { name: 'mix-a', memoryMiB: 96, append: APPEND, initramfs: 'a' },
  { name: 'mix-b', memoryMiB: 96, append: APPEND, initramfs: 'b' },
];

type Compared = Pick<RealKsmAllStats, 'pages_shared' | 'pages_sharing' | 'stable_node_chains' | 'stable_node_dups' | 'ksm_zero_pages'> & { unshared_volatile: number };
const compared = (s: RealKsmAllStats): Compared => ({
  pages_shared: s.pages_shared,
  pages_sharing: s.pages_sharing,
  unshared_volatile: s.pages_unshared + s.pages_volatile,
  stable_node_chains: s.stable_node_chains,
  stable_node_dups: s.stable_node_dups,
  ksm_zero_pages: s.ksm_zero_pages,
});

const results: Record<string, unknown> = {};
afterAll(() => {
  if (Object.keys(results).length === 0) return;
  mkdirSync('out', { recursive: true });
  writeFileSync('out/real-differential.json', JSON.stringify(results, null, 2) + '\n');
});

describe.skipIf(skip !== null)('the model against the real ksmd, on captures of the same real guests', () => {
  for (const cfg of ['default', 'like-2.6.33', 'zero'] as const) {
    it(`${cfg}: the converged statistics are the real kernel's`, async () => {
      const knobs = REPLAY_CONFIGS[cfg]!;
      const t0 = Date.now();
      let capture: Omit<Capture, 'version'> | null = null;
      let real: { stats: RealKsmAllStats; rounds: number; ms: number } | null = null;
      let bootMs = 0;
      await withRealKsm({ pagesToScan: 100_000, sleepMillisecs: 0, run: 0, knobs }, async (k) => {
        await withRealGuests(
          SPECS,
          async (gs) => {
            bootMs = Date.now() - t0;
            for (const g of gs) await g.stop();
            capture = (await captureTargets(gs.map((g) => ({ kind: 'qmp' as const, socket: g.capturePath, name: g.spec.name })), { tool: 'differential' })).capture;
            real = await converge(k, { timeoutMs: 600_000 });
          },
          { lockHeld: true },
        );
      });
      const t1 = Date.now();
      const model = replayConverge({ ...capture!, version: 1 }, 'real-differential', '0'.repeat(64), SPECS.map((s) => s.name), knobs, { maxRounds: 60 });
      const r = real!;
      // What the model made of guests before issue 12: the 2.6.33 profile, no THP, RAM alone.
      const t2 = Date.now();
      const old = cfg === 'like-2.6.33' ? replayConverge({ ...capture!, version: 1 }, 'real-differential', '0'.repeat(64), SPECS.map((s) => s.name), [], { version: '2.6.33' }) : null;
      results[cfg] = {
        knobs: Object.fromEntries(knobs),
        real: r.stats,
        realRounds: r.rounds,
        model: model.stats,
        modelRounds: model.rounds,
        modelThpsLeft: model.thps,
        bootMs,
        realConvergeMs: r.ms,
        modelMs: t2 - t1,
        ...(old !== null ? { model2633: old.stats, model2633Ms: Date.now() - t2 } : {}),
      };
      // The capture, for looking again at what the two kernels made of it.
      writeFileSync(`/tmp/samepage-real-differential-${cfg}.cap`, encodeCapture(capture!, { compression: 'zlib', level: 1 }));
      console.log(`${cfg}: real ${JSON.stringify(r.stats)} (${r.rounds} rounds); model ${JSON.stringify(model.stats)} (${model.rounds} rounds, ${model.thps} THPs left)`);
      expect(compared(model.stats)).toEqual(compared(r.stats));
    });
  }
});
