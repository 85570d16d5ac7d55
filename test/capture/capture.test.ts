/**
 * `samepage capture pid:N` on a process whose memory we know (test/capture/pages.c):
 * run as a user runs it (node src/cli/main.ts), the file read back with readCapture,
 * and every page's presence, anon, THP, zero-page flags and contents checked against
 * what pages.c wrote.
 *
 * Needs root (pagemap's PFNs and /proc/kpageflags are root's) and a C compiler;
 * otherwise skipped, saying why. pages.c registers its memory MADV_MERGEABLE, which
 * would put its pages into the statistics of any real-KSM test running at the same
 * time, so the merging process lives only while this test holds the real-KSM lock
 * (withRealKsmLock, which configures nothing: ksmd stays as found, run 0 here).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { CP_ANON, CP_PRESENT, CP_THP, CP_THP_HEAD, CP_ZERO_PAGE, capturePage, readCapture, type Capture, type CapturedVma } from '../../src/vmm/capture-file.js';
import { thpMode } from '../../src/capture/proc.js';
import { realKsmAvailable, withRealKsmLock } from '../oracle/real.js';
import { HUGE_PAGES, PLAIN_PAGES, SMALL_PAGES, pagesAvailable, startPages, type PagesProcess } from './pages.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function why(): string | null {
  const uid = process.getuid?.() ?? -1;
  if (uid !== 0) return `not root (uid ${uid}): /proc/PID/pagemap PFNs and /proc/kpageflags need CAP_SYS_ADMIN`;
  return pagesAvailable();
}
const skip = why();
const ksmSkip = skip ?? (await realKsmAvailable());
if (skip !== null) console.warn(`test/capture/capture.test.ts: skipped: ${skip}`);
else if (ksmSkip !== null) console.warn(`test/capture/capture.test.ts: MADV_MERGEABLE cases skipped: ${ksmSkip}`);

const tmp = mkdtempSync(join(tmpdir(), 'samepage-capture-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

function samepage(args: string[]): Promise<Outcome> {
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

/** pages.c's "unique" page i of region r for tag t: the u32 (t << 16 | r << 12 | i) everywhere. */
function unique(tag: number, region: number, i: number): Buffer {
  const b = Buffer.alloc(4096);
  for (let o = 0; o < 4096; o += 4) b.writeUInt32LE(((tag << 16) | (region << 12) | i) >>> 0, o);
  return b;
}
const DUP = Buffer.alloc(4096, 0x5a);
const ZERO = Buffer.alloc(4096);

/** The VMA starting at `start`, and its entries as a map offset -> [flags, bytes]. */
function entries(c: Capture, start: number): { vma: CapturedVma; at: Map<number, { flags: number; bytes: Buffer }> } {
  const vma = c.processes[0]!.vmas.find((v) => v.start === start);
  if (vma === undefined) throw new Error(`no VMA at 0x${start.toString(16)} in ${c.processes[0]!.vmas.map((v) => v.start.toString(16)).join(', ')}`);
  const at = new Map<number, { flags: number; bytes: Buffer }>();
  for (let i = 0; i < vma.offsets.length; i++) at.set(vma.offsets[i]!, { flags: vma.flags[i]!, bytes: capturePage(c, vma.contents[i]!) });
  return { vma, at };
}

async function captureOf(p: PagesProcess, file: string, extra: string[] = []): Promise<{ out: Outcome; c: Capture }> {
  const out = await samepage(['capture', '-o', file, ...extra, `pages=pid:${p.pid}`]);
  expect(out.stderr).toMatch(/^pages: host view via pid, pid \d+: /);
  expect(out.code).toBe(0);
  return { out, c: readCapture(readFileSync(file), file) };
}

describe(`samepage capture on a process${skip === null ? '' : ` [skipped: ${skip}]`}`, () => {
  it.skipIf(ksmSkip !== null)('records each mergeable VMA: presence, anon, THPs, zero-page mappings and every byte', async () => {
    await withRealKsmLock(async () => {
      const p = await startPages(7, true);
      try {
        const file = join(tmp, 'merge.cap');
        const { out, c } = await captureOf(p, file);
        expect(out.stdout).toMatch(/^wrote .*merge\.cap: 1 process, 1034 pages \(4\.0 MiB\), 529 distinct non-zero pages stored \(2\.1 MiB\), file /);
        const proc = c.processes[0]!;
        expect(proc).toMatchObject({ name: 'pages', pid: p.pid, comm: 'pages', view: 'host', source: 'pid', paused: false, qemu: null, allVmas: false });
        // Only the two MADV_MERGEABLE VMAs: plain is not captured.
        expect(proc.vmas.map((v) => [v.start, v.end - v.start])).toEqual(
          [
            [p.huge, HUGE_PAGES * 4096],
            [p.small, SMALL_PAGES * 4096],
          ].sort((a, b) => a[0]! - b[0]!),
        );
        const huge = entries(c, p.huge);
        expect(huge.vma.vmFlags).toContain('mg');
        expect(huge.vma.vmFlags).toContain('hg');
        expect(huge.at.size).toBe(HUGE_PAGES); // a THP fault makes all 512 subpages present
        const thp = thpMode() === 'always' || thpMode() === 'madvise';
        for (let i = 0; i < HUGE_PAGES; i++) {
          const e = huge.at.get(i)!;
          const want = i < 16 ? DUP : i < 32 ? unique(7, 1, i) : i < 512 ? ZERO : unique(7, 2, i - 512);
          expect(Buffer.compare(e.bytes, want), `huge page ${i}`).toBe(0);
          const thpFlags = thp ? CP_THP | (i % 512 === 0 ? CP_THP_HEAD : 0) : 0;
          expect(e.flags, `huge page ${i}`).toBe(CP_PRESENT | CP_ANON | thpFlags);
        }
        expect(huge.vma.smaps.AnonHugePages).toBe(thp ? 4096 : 0);
        const small = entries(c, p.small);
        expect(small.vma.vmFlags).toContain('mg');
        expect(small.vma.vmFlags).toContain('nh');
        expect([...small.at.keys()]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]); // 10..15 never touched
        for (let i = 0; i < 4; i++) expect([small.at.get(i)!.flags, Buffer.compare(small.at.get(i)!.bytes, DUP)]).toEqual([CP_PRESENT | CP_ANON, 0]);
        for (let i = 4; i < 8; i++) expect([small.at.get(i)!.flags, Buffer.compare(small.at.get(i)!.bytes, ZERO)]).toEqual([CP_PRESENT | CP_ANON, 0]);
        for (let i = 8; i < 10; i++) expect([small.at.get(i)!.flags, small.vma.contents[i]]).toEqual([CP_PRESENT | CP_ZERO_PAGE, 0]);
        // Each distinct content once: dup, 16 + 512 unique; zeros are never stored.
        expect(c.pageCount).toBe(1 + 16 + 512);

        const images = await samepage(['images', file]);
        expect(images.code).toBe(0);
        const row = images.stdout.split('\n').find((l) => l.startsWith('pages '))!;
        expect(row.split(/\s{2,}/)).toEqual(['pages', 'host', 'pid', '2', '4.0 MiB', '4.0 MiB', '1.9 MiB', '8 KiB', thp ? '4 MiB (2)' : '0 B (0)', '0 B', '76 KiB', '0 B', '2.1 MiB']);
        const json = JSON.parse((await samepage(['images', '--json', file])).stdout) as { processes: unknown[] };
        expect(json.processes[0]).toEqual({
          name: 'pages', view: 'host', vmas: 2, sizeBytes: (HUGE_PAGES + SMALL_PAGES) * 4096,
          pages: 1034, anon: 1032, zero: 484, zeroPageMapped: 2, thpPages: thp ? 1024 : 0, thps: thp ? 2 : 0, ksm: 0, swapped: 0,
          // 20 dup pages: 19 beyond the first; nothing across (one process); 529 distinct.
          dupWithin: 19, dupAcross: 0, distinct: 529,
        });
        expect(images.stdout).toContain('A naive merge of identical non-zero candidates (no THP, zero-page or max_page_sharing rules): pages_shared 1, pages_sharing 19.');
      } finally {
        await p.stop();
      }
    });
  });
});

describe(`samepage capture --all-vmas${skip === null ? '' : ` [skipped: ${skip}]`}`, () => {
  it.skipIf(skip !== null)('records every VMA, mergeable or not; a process with no mergeable VMA has none without it', async () => {
    const p = await startPages(9, false);
    try {
      const none = await captureOf(p, join(tmp, 'none.cap'));
      expect(none.c.processes[0]!.vmas).toEqual([]);
      const { c } = await captureOf(p, join(tmp, 'all.cap'), ['--all-vmas']);
      const proc = c.processes[0]!;
      expect(proc.allVmas).toBe(true);
      expect(proc.vmas.some((v) => v.name === '[stack]')).toBe(true);
      expect(proc.vmas.every((v) => !v.vmFlags.includes('mg'))).toBe(true);
      const huge = entries(c, p.huge);
      expect(huge.at.size).toBe(HUGE_PAGES);
      expect(Buffer.compare(huge.at.get(600)!.bytes, unique(9, 2, 88))).toBe(0);
      // small and plain are adjacent with the same flags (no MADV_MERGEABLE to tell them
      // apart), so the kernel may have merged them into one VMA: find plain's pages by address.
      const v = proc.vmas.find((x) => x.start <= p.plain && p.plain < x.end)!;
      const first = (p.plain - v.start) / 4096;
      const at = new Map<number, number>();
      for (let i = 0; i < v.offsets.length; i++) at.set(v.offsets[i]!, i);
      for (let i = 0; i < PLAIN_PAGES; i++) {
        const k = at.get(first + i)!;
        expect(v.flags[k]).toBe(CP_PRESENT | CP_ANON);
        expect(Buffer.compare(capturePage(c, v.contents[k]!), unique(9, 3, i))).toBe(0);
      }
    } finally {
      await p.stop();
    }
  });

  it.skipIf(skip !== null)('a pid that does not exist is an error naming it, exit 1', async () => {
    const out = await samepage(['capture', '-o', join(tmp, 'x.cap'), 'pid:999999999']);
    expect(out).toEqual({ code: 1, stdout: '', stderr: 'samepage: cannot read /proc/999999999/comm: ENOENT (no such process?)\n' });
  });
});

describe('samepage capture: usage', () => {
  it('needs -o and a target, and says what a target looks like', async () => {
    const a = await samepage(['capture', 'pid:1']);
    expect([a.code, a.stderr.split('\n')[0]]).toEqual([2, 'samepage: capture needs -o FILE']);
    const b = await samepage(['capture', '-o', join(tmp, 'y.cap')]);
    expect([b.code, b.stderr.split('\n')[0]]).toEqual([2, 'samepage: capture needs at least one target (pid:N, qmp:PATH, dump:PATH, pmemsave:PATH)']);
    const c = await samepage(['capture', '-o', join(tmp, 'y.cap'), 'proc:12']);
    expect([c.code, c.stderr.split('\n')[0]]).toEqual([
      2,
      'samepage: expected a target like pid:1234, qmp:/path/to/qmp.sock, dump:PATH or pmemsave:PATH (optionally NAME= before), got "proc:12"',
    ]);
    const d = await samepage(['capture', '-o', join(tmp, 'y.cap'), '--compression', 'xz', 'pid:1']);
    expect([d.code, d.stderr.split('\n')[0]]).toEqual([2, 'samepage: --compression: expected zlib or brotli, got "xz"']);
  });

  it('images names a bad capture file, the byte and what was expected', async () => {
    const out = await samepage(['images', 'package.json']);
    expect(out).toEqual({ code: 1, stdout: '', stderr: 'samepage: package.json: byte 0: expected a Samepage capture (magic "SPCAPTUR"), found "{\\n  \\"nam"\n' });
  });
});
