/**
 * The real-kernel harness itself, on this machine's KSM: does a scenario run on real
 * processes give the numbers KSM must give, the bytes the scenario wrote, and leave
 * every knob as it found it? Skipped, with the reason printed, where the real KSM
 * cannot be used (not root, no CONFIG_KSM, no C compiler).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readSavedKnobs, realKsmAvailable, runOnRealKernel, withRealKsmLock } from './real.js';
import { SCENARIO_PAGE_SIZE, fillPage, regionDigest, type Scenario, type Step } from './scenario.js';

const skip = await realKsmAvailable();
if (skip !== null) console.warn(`test/oracle/real.test.ts: skipped: ${skip}`);
const real = it.skipIf(skip !== null);
const why = skip === null ? '' : ` [skipped: ${skip}]`;

/** Pages of a region as the scenario filled them, one Uint8Array per page. */
function pages(count: number, page: (i: number, out: Uint8Array) => void): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => {
    const out = new Uint8Array(SCENARIO_PAGE_SIZE);
    page(i, out);
    return out;
  });
}

const mergeable = (proc: string, first: number, count: number): Step => ({
  op: 'madvise',
  proc,
  region: 'ram',
  first,
  count,
  advice: 'MADV_MERGEABLE',
});

const tenIdentical: Scenario = {
  name: 'ten identical pages',
  steps: [
    { op: 'spawn', proc: 'a' },
    { op: 'mmap', proc: 'a', region: 'ram', pages: 10 },
    { op: 'fill', proc: 'a', region: 'ram', first: 0, count: 10, byte: 0x61 },
    mergeable('a', 0, 10),
    { op: 'settle' },
  ],
};

describe(`the real KSM through ksm-driver${why}`, () => {
  real('merges 10 identical pages of one process into one KSM page: shared 1, sharing 9', async () => {
    const [stage] = await runOnRealKernel(tenIdentical);
    expect(stage!.stats).toEqual({ pages_shared: 1, pages_sharing: 9, pages_unshared: 0, pages_volatile: 0 });
    const expected = regionDigest(pages(10, (_, p) => fillPage(p, 0, 0, 0x61)));
    expect(stage!.digests).toEqual({ 'a/ram': expected });
  });

  real('two processes, 32 unique + 16 common pages each: the 32 common pages become one KSM page', async () => {
    // a/ram and b/ram: pages 0..31 unique (tag 1 in a, tag 2 in b), 32..47 all 0x5a.
    // Unique: 64 rmap_items in the unstable tree. Common: 2 x 16 equal pages -> one
    // KSM page (shared 1) mapped by the other 31 (sharing 31).
    const steps: Step[] = [];
    for (const [proc, tag] of [['a', 1], ['b', 2]] as const) {
      steps.push(
        { op: 'spawn', proc },
        { op: 'mmap', proc, region: 'ram', pages: 48 },
        { op: 'fill', proc, region: 'ram', first: 0, count: 32, byte: 0, tag },
        { op: 'fill', proc, region: 'ram', first: 32, count: 16, byte: 0x5a },
        mergeable(proc, 0, 48),
      );
    }
    steps.push({ op: 'settle' });
    const [stage] = await runOnRealKernel({ name: 'two processes', steps });
    expect(stage!.stats).toEqual({ pages_shared: 1, pages_sharing: 31, pages_unshared: 64, pages_volatile: 0 });
    const expected = (tag: number): string =>
      regionDigest(pages(48, (i, p) => (i < 32 ? fillPage(p, 0, i, 0, tag) : fillPage(p, 0, i, 0x5a))));
    expect(stage!.digests).toEqual({ 'a/ram': expected(1), 'b/ram': expected(2) });
  });

  real('does not merge a page with its fork-shared self: the child\'s rmap_items stay volatile', async () => {
    // 10 unique pages, then fork: each page is mapped twice (COW). The parent's
    // rmap_items enter the unstable tree; the child's find the same page there and stay
    // out ("don't substitute a ksm page for a forked page"). After the child exits,
    // its rmap_items are gone.
    const stages = await runOnRealKernel({
      name: 'fork',
      steps: [
        { op: 'spawn', proc: 'a' },
        { op: 'mmap', proc: 'a', region: 'ram', pages: 10 },
        { op: 'fill', proc: 'a', region: 'ram', first: 0, count: 10, byte: 0, tag: 7 },
        mergeable('a', 0, 10),
        { op: 'fork', proc: 'a', child: 'b' },
        { op: 'settle' },
        { op: 'exit', proc: 'b' },
        { op: 'settle' },
      ],
    });
    expect(stages.map((s) => s.stats)).toEqual([
      { pages_shared: 0, pages_sharing: 0, pages_unshared: 10, pages_volatile: 10 },
      { pages_shared: 0, pages_sharing: 0, pages_unshared: 10, pages_volatile: 0 },
    ]);
    const expected = regionDigest(pages(10, (i, p) => fillPage(p, 0, i, 0, 7)));
    expect(stages[0]!.digests).toEqual({ 'a/ram': expected, 'b/ram': expected });
    expect(stages[1]!.digests).toEqual({ 'a/ram': expected });
  });

  real('settles with nothing mergeable left (ksmd stops scanning): all statistics 0', async () => {
    const stages = await runOnRealKernel({
      name: 'exit',
      steps: [...tenIdentical.steps, { op: 'exit', proc: 'a' }, { op: 'settle' }],
    });
    expect(stages[1]).toEqual({
      stats: { pages_shared: 0, pages_sharing: 0, pages_unshared: 0, pages_volatile: 0 },
      digests: {},
    });
  });

  real('digests only readable pages: PROT_NONE and unmapped pages are skipped', async () => {
    const stages = await runOnRealKernel({
      name: 'digest rule',
      steps: [
        { op: 'spawn', proc: 'a' },
        { op: 'mmap', proc: 'a', region: 'ram', pages: 6 },
        { op: 'fill', proc: 'a', region: 'ram', first: 0, count: 6, byte: 0, tag: 3 },
        { op: 'mprotect', proc: 'a', region: 'ram', first: 1, count: 1, prot: 'none' },
        { op: 'mprotect', proc: 'a', region: 'ram', first: 2, count: 1, prot: 'r' },
        { op: 'munmap', proc: 'a', region: 'ram', first: 4, count: 2 },
        { op: 'mmap', proc: 'a', region: 'gone', pages: 1 },
        { op: 'munmap', proc: 'a', region: 'gone', first: 0, count: 1 },
        { op: 'settle', scans: 1 },
      ],
    });
    const all = pages(6, (i, p) => fillPage(p, 0, i, 0, 3));
    expect(stages[0]!.digests).toEqual({
      'a/ram': regionDigest([all[0]!, null, all[2]!, all[3]!, null, null]),
      'a/gone': '811c9dc5',
    });
  });

  real('reports a failing step by index and op, and still restores the knobs', async () => {
    const before = await withRealKsmLock(readSavedKnobs);
    await expect(
      runOnRealKernel({
        name: 'fill after PROT_NONE',
        steps: [
          { op: 'spawn', proc: 'a' },
          { op: 'mmap', proc: 'a', region: 'ram', pages: 2 },
          { op: 'mprotect', proc: 'a', region: 'ram', first: 0, count: 2, prot: 'none' },
          { op: 'fill', proc: 'a', region: 'ram', first: 0, count: 2, byte: 1 },
        ],
      }),
    ).rejects.toThrow(/step 3 \(fill\).*not mapped writable/);
    expect(await withRealKsmLock(readSavedKnobs)).toEqual(before);
  });

  real('leaves every knob as it found it', async () => {
    const before = await withRealKsmLock(readSavedKnobs);
    await runOnRealKernel(tenIdentical);
    const after = await withRealKsmLock(readSavedKnobs);
    expect(after).toEqual(before);
  });

  /** Starts a session in another process that sets pages_to_scan 1234 and waits forever. */
  async function sessionInChild(): Promise<ChildProcess> {
    const realTs = fileURLToPath(new URL('./real.ts', import.meta.url));
    const code = `
      import { withRealKsm } from ${JSON.stringify(realTs)};
      setInterval(() => {}, 1000);
      await withRealKsm({ pagesToScan: 1234 }, async (k) => {
        console.log('configured ' + k.read('pages_to_scan'));
        await new Promise(() => {});
      });`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const line = await new Promise<string>((resolve) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      child.once('close', () => resolve(out.trim()));
    });
    expect(line).toBe('configured 1234');
    return child;
  }

  for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
    real(`restores every knob when the process using it gets ${sig}`, async () => {
      // SIGTERM: its handler restores at once. SIGKILL: nothing can run; the next holder
      // of the lock finds SAVED_PATH and restores from it.
      const before = await withRealKsmLock(readSavedKnobs);
      const child = await sessionInChild();
      child.kill(sig);
      const signal = await new Promise((r) => child.once('close', (_c, s) => r(s)));
      expect(signal).toBe(sig);
      expect(await withRealKsmLock(readSavedKnobs, { expectLeftover: true })).toEqual(before);
    });
  }
});
