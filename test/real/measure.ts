/**
 * The measurements behind docs/real-guests.md, on this machine's real kernel, QEMU and
 * ksmd. Run as root (it holds the real-KSM lock and restores every knob):
 *
 *   npx tsx test/real/measure.ts thp                 pages.c: THP split, zero subpages
 *   npx tsx test/real/measure.ts guests [SET] [CFG]  QEMU guests: RAM blocks, presence,
 *                                                    THPs, and ksmd's statistics
 *     SET: stock (default: 128 MiB, the kernel's own command line) or
 *          small (96 MiB, nokaslr init_on_free=1: the shipped capture's guests)
 *     CFG: default (6.18's defaults) or zero (the same with use_zero_pages 1)
 *
 * Each prints what it measured as text, and the same as one JSON line at the end.
 */
import { readFileSync } from 'node:fs';
import { captureTargets } from '../../src/capture/capture.js';
import { parseSmaps } from '../../src/capture/proc.js';
import { CP_ANON, CP_KSM, CP_PRESENT, CP_THP, CP_THP_HEAD, CP_ZERO_PAGE, type CapturedProcess, type CapturedVma } from '../../src/vmm/capture-file.js';
import { DEFAULTS_6_18, withRealKsm, type KsmKnob } from '../oracle/real.js';
import { startPages } from '../capture/pages.js';
import { converge, readAllStats } from './ksm.js';
import { guestManifest, withRealGuests, type GuestSpec } from './qemu.js';

const CONFIGS: Record<string, ReadonlyArray<readonly [KsmKnob, string]>> = {
  default: DEFAULTS_6_18,
  zero: DEFAULTS_6_18.map(([k, v]) => [k, k === 'use_zero_pages' ? '1' : v] as const),
};

export interface VmaFacts {
  label: string;
  sizeKiB: number;
  present: number;
  anon: number;
  thpPages: number;
  thps: number;
  zeroPageMapped: number;
  zeroFilled: number;
  ksm: number;
}

export function vmaFacts(v: CapturedVma): VmaFacts {
  const f: VmaFacts = {
    label: v.block ?? (v.blockCandidates.length > 0 ? v.blockCandidates.join(' or ') : v.name || `0x${v.start.toString(16)}`),
    sizeKiB: (v.end - v.start) / 1024,
    present: 0,
    anon: 0,
    thpPages: 0,
    thps: 0,
    zeroPageMapped: 0,
    zeroFilled: 0,
    ksm: 0,
  };
  for (let i = 0; i < v.offsets.length; i++) {
    const fl = v.flags[i]!;
    if ((fl & CP_PRESENT) === 0) continue;
    f.present++;
    if ((fl & CP_ANON) !== 0) f.anon++;
    if ((fl & CP_THP) !== 0) f.thpPages++;
    if ((fl & CP_THP_HEAD) !== 0) f.thps++;
    if ((fl & CP_ZERO_PAGE) !== 0) f.zeroPageMapped++;
    else if (v.contents[i] === 0) f.zeroFilled++;
    if ((fl & CP_KSM) !== 0) f.ksm++;
  }
  return f;
}

function total(p: CapturedProcess): Omit<VmaFacts, 'label' | 'sizeKiB'> {
  const t = { present: 0, anon: 0, thpPages: 0, thps: 0, zeroPageMapped: 0, zeroFilled: 0, ksm: 0 };
  for (const v of p.vmas) {
    const f = vmaFacts(v);
    for (const k of Object.keys(t) as (keyof typeof t)[]) t[k] += f[k];
  }
  return t;
}

function printFacts(title: string, facts: VmaFacts[]): void {
  console.log(title);
  for (const f of facts) {
    console.log(
      `  ${f.label.padEnd(44)} ${String(f.sizeKiB).padStart(7)} KiB  present ${f.present}  anon ${f.anon}  THP subpages ${f.thpPages} (${f.thps} THPs)  zero-page ${f.zeroPageMapped}  zero-filled ${f.zeroFilled}  KSM ${f.ksm}`,
    );
  }
}

async function thp(): Promise<void> {
  const results: Record<string, unknown> = {};
  for (const [cfg, knobs] of Object.entries(CONFIGS)) {
    await withRealKsm({ pagesToScan: 100_000, sleepMillisecs: 0, run: 0, knobs }, async (k) => {
      const p = await startPages(1, true);
      try {
        const before = (await captureTargets([{ kind: 'pid', pid: p.pid, name: 'pages' }], { tool: 'measure' })).capture.processes[0]!;
        const { stats, rounds, ms } = await converge(k);
        const after = (await captureTargets([{ kind: 'pid', pid: p.pid, name: 'pages' }], { tool: 'measure' })).capture.processes[0]!;
        const name = (v: CapturedVma): string => (v.start === p.huge ? 'huge (2 THPs)' : v.start === p.small ? 'small' : `0x${v.start.toString(16)}`);
        const fb = before.vmas.map((v) => ({ ...vmaFacts(v), label: name(v) }));
        const fa = after.vmas.map((v) => ({ ...vmaFacts(v), label: name(v) }));
        console.log(`\n== pages.c, 6.18 ${cfg} configuration (${knobs.map(([a, b]) => `${a} ${b}`).join(', ')})`);
        printFacts('before ksmd:', fb);
        printFacts(`after convergence (${rounds} rounds, ${(ms / 1000).toFixed(1)} s):`, fa);
        console.log(`  stats: ${JSON.stringify(stats)}`);
        results[cfg] = { before: fb, after: fa, stats };
      } finally {
        await p.stop();
      }
    });
  }
  console.log(JSON.stringify({ thp: results }));
}

const SETS: Record<string, { memoryMiB: number; append: string }> = {
  stock: { memoryMiB: 128, append: '' },
  small: { memoryMiB: 96, append: 'nokaslr init_on_free=1' },
};

async function guests(set: string, cfg: string): Promise<void> {
  const s = SETS[set];
  const knobs = CONFIGS[cfg];
  if (s === undefined || knobs === undefined) throw new Error(`usage: measure.ts guests [${Object.keys(SETS).join('|')}] [${Object.keys(CONFIGS).join('|')}]`);
  const fleets: Record<string, GuestSpec[]> = {
    'four identical': [1, 2, 3, 4].map((i) => ({ name: `id-${i}`, memoryMiB: s.memoryMiB, append: s.append })),
    'mixed pair': [
      { name: 'mix-a', memoryMiB: s.memoryMiB, append: s.append, initramfs: 'a' },
      { name: 'mix-b', memoryMiB: s.memoryMiB, append: s.append, initramfs: 'b' },
    ],
  };
  const results: Record<string, unknown> = {};
  console.log(`guests: ${JSON.stringify(guestManifest())}, set ${set} ${JSON.stringify(s)}, KSM ${cfg}: ${knobs.map(([a, b]) => `${a} ${b}`).join(', ')}`);
  for (const [fleet, specs] of Object.entries(fleets)) {
    await withRealKsm({ pagesToScan: 100_000, sleepMillisecs: 0, run: 0, knobs }, async (k) => {
      const t0 = Date.now();
      await withRealGuests(
        specs,
        async (gs) => {
          const bootMs = Date.now() - t0;
          for (const g of gs) await g.stop();
          // What QEMU registered, from smaps of the first guest.
          const smaps = parseSmaps(readFileSync(`/proc/${gs[0]!.pid}/smaps`, 'utf8'));
          const heap = smaps.filter((v) => v.name === '[heap]').map((v) => ({ sizeKiB: v.counters.Size, flags: v.vmFlags.join(' ') }));
          const hgNotMg = smaps.filter((v) => v.vmFlags.includes('hg') && !v.vmFlags.includes('mg')).map((v) => ({ sizeKiB: v.counters.Size, rssKiB: v.counters.Rss, name: v.name }));
          const mgCount = smaps.filter((v) => v.vmFlags.includes('mg')).length;
          const mgNotHg = smaps.filter((v) => v.vmFlags.includes('mg') && !v.vmFlags.includes('hg')).length;
          const targets = gs.map((g) => ({ kind: 'qmp' as const, socket: g.capturePath, name: g.spec.name }));
          const t1 = Date.now();
          const before = (await captureTargets(targets, { tool: 'measure' })).capture;
          const captureMs = Date.now() - t1;
          const zero = readAllStats(k);
          const { stats, rounds, ms } = await converge(k, { timeoutMs: 600_000 });
          const after = (await captureTargets(targets, { tool: 'measure' })).capture;
          console.log(`\n== ${fleet} (${specs.length} guests), booted in ${(bootMs / 1000).toFixed(1)} s, paused; capture ${(captureMs / 1000).toFixed(1)} s`);
          console.log(`QEMU pid ${gs[0]!.pid}: ${mgCount} VMAs with mg (${mgNotHg} of them without hg); [heap] ${JSON.stringify(heap)}; hg without mg: ${JSON.stringify(hgNotMg)}`);
          printFacts(`${gs[0]!.spec.name} before ksmd:`, before.processes[0]!.vmas.map(vmaFacts));
          printFacts(`${gs[0]!.spec.name} after convergence:`, after.processes[0]!.vmas.map(vmaFacts));
          const totals = { before: before.processes.map((p) => ({ name: p.name, ...total(p) })), after: after.processes.map((p) => ({ name: p.name, ...total(p) })) };
          for (const t of totals.before) console.log(`  before ${JSON.stringify(t)}`);
          for (const t of totals.after) console.log(`  after  ${JSON.stringify(t)}`);
          console.log(`stats before ksmd: ${JSON.stringify(zero)}`);
          console.log(`stats at convergence (${rounds} rounds, ${(ms / 1000).toFixed(1)} s): ${JSON.stringify(stats)}`);
          results[fleet] = { bootMs, captureMs, heap, hgNotMg, mgCount, mgNotHg, first: { before: before.processes[0]!.vmas.map(vmaFacts), after: after.processes[0]!.vmas.map(vmaFacts) }, totals, stats, rounds, convergeMs: ms };
        },
        { lockHeld: true },
      );
    });
  }
  console.log(JSON.stringify({ guests: { set, cfg, results } }));
}

const [what, a, b] = process.argv.slice(2);
if (what === 'thp') await thp();
else if (what === 'guests') await guests(a ?? 'stock', b ?? 'default');
else {
  console.error('usage: npx tsx test/real/measure.ts thp | guests [stock|small] [default|zero]');
  process.exitCode = 2;
}
