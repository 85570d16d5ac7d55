/**
 * `samepage capture` on real QEMU guests (npm run test:real): boots a mixed pair with
 * mem-merge on and a third guest with mem-merge off, captures them through QMP (paused
 * and resumed), by pid, and through the guest's own view (dump-guest-memory,
 * pmemsave), and checks the captures against smaps and against each other.
 *
 * Skipped, saying why, without root, QEMU and the guest cache (scripts/real-guests/
 * setup.sh), or the real-KSM lock (guests with mem-merge on hold it all their life).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSmaps } from '../../src/capture/proc.js';
import { CP_PRESENT, CP_THP, CP_ZERO_PAGE, capturePage, readCapture, type Capture, type CapturedProcess } from '../../src/vmm/capture-file.js';
import { realKsmAvailable } from '../oracle/real.js';
import { realGuestsAvailable, withRealGuests, type RealGuest } from './qemu.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const uid = process.getuid?.() ?? -1;
const skip = uid !== 0 ? `not root (uid ${uid}): capture reads /proc/PID/pagemap PFNs and /proc/kpageflags` : (realGuestsAvailable() ?? (await realKsmAvailable()));
if (skip !== null) console.warn(`test/real/capture.test.ts: skipped: ${skip}`);

const tmp = mkdtempSync(join(tmpdir(), 'samepage-real-capture-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function samepage(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function capture(name: string, args: string[]): Promise<Capture> {
  const file = join(tmp, `${name}.cap`);
  const out = await samepage(['capture', '-o', file, ...args]);
  if (out.code !== 0) throw new Error(`capture ${args.join(' ')} failed (${out.code}): ${out.stderr}`);
  return readCapture(readFileSync(file), file);
}

/** What smaps says of a process's VMAs, keyed by start address. */
function smapsOf(pid: number): Map<number, ReturnType<typeof parseSmaps>[number]> {
  return new Map(parseSmaps(readFileSync(`/proc/${pid}/smaps`, 'utf8')).map((v) => [v.start, v]));
}

/** Per VMA: [present pages that are not the zero page (smaps Rss), THP subpages (AnonHugePages)], in kB. */
function counted(p: CapturedProcess): Map<number, [number, number]> {
  return new Map(
    p.vmas.map((v) => {
      let rss = 0;
      let thp = 0;
      for (let i = 0; i < v.offsets.length; i++) {
        const f = v.flags[i]!;
        if ((f & CP_PRESENT) !== 0 && (f & CP_ZERO_PAGE) === 0) rss += 4;
        if ((f & CP_THP) !== 0) thp += 4;
      }
      return [v.start, [rss, thp]];
    }),
  );
}

const MIB = 1024 * 1024;

describe(`samepage capture on real QEMU guests${skip === null ? '' : ` [skipped: ${skip}]`}`, () => {
  it.skipIf(skip !== null)('captures paused guests by QMP and by pid, their own view by dump and pmemsave, all agreeing with smaps and each other', async () => {
    await withRealGuests(
      [
        { name: 'mix-a', initramfs: 'a' },
        { name: 'mix-b', initramfs: 'b' },
        { name: 'nomerge', memMerge: false },
      ],
      async ([a, b, off]: RealGuest[]) => {
        // Through QMP: both paused for the capture, and running again after.
        const q = await capture('qmp', [`qmp:${a!.capturePath}`, `qmp:${b!.capturePath}`, `qmp:${off!.capturePath}`]);
        expect(await a!.qmp.status()).toBe('running');
        expect(await b!.qmp.status()).toBe('running');
        expect(q.processes.map((p) => [p.name, p.pid, p.view, p.source, p.paused])).toEqual([
          ['mix-a', a!.pid, 'host', 'qmp', true],
          ['mix-b', b!.pid, 'host', 'qmp', true],
          ['nomerge', off!.pid, 'host', 'qmp', true],
        ]);
        // QEMU registers every RAM block mergeable and huge; with mem-merge off, none.
        const qa = q.processes[0]!;
        expect(qa.qemu!.version).toBe('7.2.22');
        expect(qa.qemu!.ramBlocks.map((r) => r.name).sort()).toEqual(
          ['/rom@etc/acpi/rsdp', '/rom@etc/acpi/tables', '/rom@etc/table-loader', '0000:00:02.0/vga.rom', '0000:00:02.0/vga.vram', 'pc.bios', 'pc.ram', 'pc.rom'].sort(),
        );
        expect(qa.vmas.length).toBe(8);
        for (const v of qa.vmas) expect(v.vmFlags.filter((f) => f === 'hg' || f === 'mg')).toEqual(['hg', 'mg']);
        const ram = qa.vmas.find((v) => v.block === 'pc.ram')!;
        expect(ram.end - ram.start).toBe(128 * MIB);
        expect(qa.vmas.find((v) => v.block === '0000:00:02.0/vga.vram')!.end - qa.vmas.find((v) => v.block === '0000:00:02.0/vga.vram')!.start).toBe(16 * MIB);
        expect(qa.vmas.filter((v) => v.block === null).map((v) => v.blockCandidates)).toEqual([
          ['0000:00:02.0/vga.rom', '/rom@etc/table-loader'],
          ['0000:00:02.0/vga.rom', '/rom@etc/table-loader'],
        ]);
        expect(q.processes[2]!.vmas).toEqual([]);
        // Never-touched guest RAM is not present; touched guest RAM is all in THPs.
        const present = ram.offsets.length;
        expect(present).toBeGreaterThan(0);
        expect(present).toBeLessThan((128 * MIB) / 4096);
        expect(present % 512).toBe(0);
        for (let i = 0; i < present; i++) expect(ram.flags[i]! & CP_THP).toBe(CP_THP);
        // mix-b's initramfs holds 1 MiB that mix-a's does not: more distinct pages.
        const summary = JSON.parse((await samepage(['images', '--json', join(tmp, 'qmp.cap')])).stdout) as { processes: Array<{ distinct: number; dupAcross: number }> };
        expect(summary.processes[1]!.distinct).toBeGreaterThan(summary.processes[0]!.distinct + 200);
        expect(summary.processes[0]!.dupAcross).toBeGreaterThan(1000);

        // Paused by the harness: the same pages by pid, and smaps agrees page for page.
        await a!.stop();
        try {
          const p1 = await capture('pid', [`mix-a=pid:${a!.pid}`, `nomerge=pid:${off!.pid}`]);
          const all = await capture('all', ['--all-vmas', `nomerge=pid:${off!.pid}`]);
          const smaps = smapsOf(a!.pid);
          const host = p1.processes[0]!;
          expect(host.source).toBe('pid');
          for (const [start, [rss, thp]] of counted(host)) {
            const s = smaps.get(start)!;
            expect([start, rss, thp]).toEqual([start, s.counters.Rss, s.counters.AnonHugePages]);
          }
          // Unchanged while paused: a QMP capture now (of a guest found paused, so left
          // paused) and the pid capture hold the same pages, byte for byte.
          const q2 = await capture('qmp-paused', [`qmp:${a!.capturePath}`]);
          expect(await a!.qmp.status()).toBe('paused');
          const ramP = host.vmas.find((v) => v.start === ram.start)!;
          const ramQ = q2.processes[0]!.vmas.find((v) => v.start === ram.start)!;
          expect(Array.from(ramP.offsets)).toEqual(Array.from(ramQ.offsets));
          expect(Array.from(ramP.flags)).toEqual(Array.from(ramQ.flags));
          for (let i = 0; i < ramP.offsets.length; i++) {
            if (Buffer.compare(capturePage(p1, ramP.contents[i]!), capturePage(q2, ramQ.contents[i]!)) !== 0) throw new Error(`pc.ram page ${ramP.offsets[i]} differs between the pid and QMP captures`);
          }
          // mem-merge off: guest RAM is still madvised huge, never mergeable.
          const offRam = all.processes[0]!.vmas.find((v) => v.end - v.start === 128 * MIB)!;
          expect(offRam.vmFlags).toContain('hg');
          expect(offRam.vmFlags).not.toContain('mg');

          // The guest's own view: pc.ram at guest-physical address x is the host page at
          // offset x of the pc.ram VMA, or zeros where the host has no page.
          for (const how of ['dump', 'pmemsave'] as const) {
            const g = await capture(how, [`${how}:${a!.capturePath}`]);
            const gp = g.processes[0]!;
            expect([gp.view, gp.source, gp.paused]).toEqual(['guest', how === 'dump' ? 'dump-guest-memory' : 'pmemsave', true]);
            const hostAt = new Map<number, number>();
            for (let i = 0; i < ramP.offsets.length; i++) hostAt.set(ramP.offsets[i]!, ramP.contents[i]!);
            const low = gp.vmas.filter((v) => v.block === 'pc.ram');
            expect(low.map((v) => [v.start, v.end])).toEqual([
              [0, 0xa0000],
              [0xc0000, 128 * MIB],
            ]);
            let compared = 0;
            for (const v of low) {
              for (let i = 0; i < v.offsets.length; i++) {
                const gpa = v.start / 4096 + v.offsets[i]!;
                const h = hostAt.get(gpa);
                const want = h === undefined ? Buffer.alloc(4096) : capturePage(p1, h);
                if (Buffer.compare(capturePage(g, v.contents[i]!), want) !== 0) throw new Error(`${how}: guest page 0x${(gpa * 4096).toString(16)} differs from the host's`);
                compared++;
              }
            }
            expect(compared).toBe((128 * MIB - 0x20000) / 4096);
            // A guest found paused stays paused.
            expect(await a!.qmp.status()).toBe('paused');
          }
        } finally {
          await a!.cont();
        }

        // An error half-way (a pid that does not exist) still resumes the guests it paused.
        const bad = await samepage(['capture', '-o', join(tmp, 'bad.cap'), `qmp:${b!.capturePath}`, 'pid:999999999']);
        expect(bad.code).toBe(1);
        expect(bad.stderr.split('\n').slice(-2)).toEqual(['samepage: cannot read /proc/999999999/comm: ENOENT (no such process?)', '']);
        expect(await b!.qmp.status()).toBe('running');
      },
    );
  });
});
