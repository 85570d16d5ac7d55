import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { captureTargets, encodeCapture, parseTarget, type CaptureTarget } from '../capture/capture.js';
import { CaptureError } from '../capture/proc.js';
import { formatSize } from '../vmm/config.js';
import { CAPTURE_PAGE_SIZE, CP_PRESENT, CP_THP, CP_ZERO_PAGE, readCapture, summarizeCapture, type Capture, type CaptureCompression } from '../vmm/capture-file.js';

export const CAPTURE_USAGE = `usage: samepage capture -o FILE [options] TARGET...

Records what KSM would see of running processes into a capture file: for each
mergeable VMA (VmFlags mg; every VMA with --all-vmas), which pages are present and
anonymous, which sit in transparent huge pages, which map the zero page, which are
KSM pages, and their contents (each distinct page stored once). Run it as root on
the host: it reads /proc/PID/smaps, pagemap and mem, and /proc/kpageflags.

targets:
  pid:N            any process, read live from /proc
  qmp:PATH         a QEMU guest by its QMP socket: paused (stop) while its pages are
                   read and resumed (cont) after, even on error; its RAM blocks named
  dump:PATH        a QEMU guest's own view through QMP dump-guest-memory, where /proc
                   cannot be read: guest-physical pages only, no presence, THP or
                   zero-page data (the file says so)
  pmemsave:PATH    the same view through QMP pmemsave
  NAME=TARGET      the process's name in the capture (default QEMU's -name, or comm-pid)

options:
  -o, --output FILE     the capture file to write (required)
  --all-vmas            every VMA, not only the mergeable ones
  --no-pause            leave QMP targets running while their pages are read
  --compression KIND    brotli (default) or zlib
  --level N             zlib level 0-9 (default 6) or brotli quality 0-11 (default 5)
  --note TEXT           free text stored in the file (how the guests were made)
  -h, --help            this text

Describe a capture with 'samepage images FILE'.
`;

export class CaptureUsageError extends Error {}

export async function captureCommand(argv: string[], tool: string): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        help: { type: 'boolean', short: 'h' },
        output: { type: 'string', short: 'o' },
        'all-vmas': { type: 'boolean' },
        'no-pause': { type: 'boolean' },
        compression: { type: 'string' },
        level: { type: 'string' },
        note: { type: 'string' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    throw new CaptureUsageError((e as Error).message.replace(/\. To specify a positional argument.*$/, ''));
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    process.stdout.write(CAPTURE_USAGE);
    return 0;
  }
  const output = values.output as string | undefined;
  if (output === undefined) throw new CaptureUsageError('capture needs -o FILE');
  if (positionals.length === 0) throw new CaptureUsageError('capture needs at least one target (pid:N, qmp:PATH, dump:PATH, pmemsave:PATH)');
  const compression = (values.compression as string | undefined) ?? 'brotli';
  if (compression !== 'zlib' && compression !== 'brotli') throw new CaptureUsageError(`--compression: expected zlib or brotli, got ${JSON.stringify(compression)}`);
  const levelText = values.level as string | undefined;
  const maxLevel = compression === 'zlib' ? 9 : 11;
  if (levelText !== undefined && (!/^\d+$/.test(levelText) || Number(levelText) > maxLevel)) {
    throw new CaptureUsageError(`--level: expected 0-${maxLevel} for ${compression}, got ${JSON.stringify(levelText)}`);
  }
  let targets: CaptureTarget[];
  try {
    targets = positionals.map(parseTarget);
  } catch (e) {
    throw new CaptureUsageError((e as Error).message.replace(/^samepage: /, ''));
  }
  const started = Date.now();
  const { capture } = await captureTargets(targets, {
    tool,
    allVmas: values['all-vmas'] === true,
    pause: values['no-pause'] !== true,
    note: (values.note as string | undefined) ?? '',
    log: (line) => process.stderr.write(`${line}\n`),
  });
  const read = Date.now();
  const bytes = encodeCapture(capture, { compression: compression as CaptureCompression, ...(levelText === undefined ? {} : { level: Number(levelText) }) });
  try {
    writeFileSync(output, bytes);
  } catch (e) {
    throw new CaptureError(`cannot write ${output} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const pages = capture.processes.reduce((a, p) => a + p.vmas.reduce((b, v) => b + v.offsets.length, 0), 0);
  process.stdout.write(
    `wrote ${output}: ${capture.processes.length} process${capture.processes.length === 1 ? '' : 'es'}, ${pages} pages (${formatSize(pages * CAPTURE_PAGE_SIZE)}), ` +
      `${capture.pageCount} distinct non-zero pages stored (${formatSize(capture.pageCount * CAPTURE_PAGE_SIZE)}), file ${formatSize(bytes.length)}; ` +
      `read in ${((read - started) / 1000).toFixed(1)} s, ${compression} in ${((Date.now() - read) / 1000).toFixed(1)} s\n`,
  );
  return 0;
}

/** Reads and validates a capture file, with errors that name it. */
export function loadCapture(path: string): Capture {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new CaptureError(`cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return readCapture(bytes, path);
}

function table(header: string[], rows: string[][], rightAlign: ReadonlySet<number>): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]): string => r.map((x, c) => (rightAlign.has(c) ? x.padStart(widths[c]!) : x.padEnd(widths[c]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** `samepage images FILE`: what a capture holds, per process and per VMA. */
export function describeCapture(c: Capture, file: string, json: boolean): string {
  const s = summarizeCapture(c);
  if (json) return `${JSON.stringify({ file, meta: c.meta, ...s }, null, 2)}\n`;
  const mib = (pages: number): string => formatSize(pages * CAPTURE_PAGE_SIZE);
  const out: string[] = [];
  out.push(`${file}: capture format ${c.version}, ${c.meta.tool}, ${c.meta.createdAt}, host kernel ${c.meta.host.kernel}, THP ${c.meta.host.thp}`);
  if (c.meta.note.length > 0) out.push(c.meta.note);
  out.push('');
  const right = new Set([3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  out.push(
    table(
      ['process', 'view', 'source', 'VMAs', 'pages', 'anon', 'zero', 'zero-page', 'in THPs', 'KSM', 'dup within', 'dup across', 'distinct'],
      s.processes.map((p, i) => {
        const cp = c.processes[i]!;
        const host = p.view === 'host';
        return [
          p.name,
          p.view,
          cp.source + (cp.paused ? ', paused' : ''),
          String(p.vmas),
          mib(p.pages),
          host ? mib(p.anon) : '-',
          mib(p.zero),
          host ? mib(p.zeroPageMapped) : '-',
          host ? `${mib(p.thpPages)} (${p.thps})` : '-',
          host ? mib(p.ksm) : '-',
          mib(p.dupWithin),
          mib(p.dupAcross),
          mib(p.distinct),
        ];
      }),
      right,
    ),
  );
  if (c.processes.some((p) => p.view === 'guest')) {
    out.push('', 'guest view: guest-physical pages read through QMP; no presence, THP or zero-page data (never-touched memory reads as zero).');
  }
  out.push(
    '',
    `${s.totals.pages} pages with contents, ${s.totals.distinct} distinct non-zero contents among KSM's candidates, ${c.pageCount} stored (${mib(c.pageCount)}).`,
    `A naive merge of identical non-zero candidates (no THP, zero-page or max_page_sharing rules): pages_shared ${s.totals.naiveShared}, pages_sharing ${s.totals.naiveSharing}.`,
    '',
  );
  for (const p of c.processes) {
    out.push(`${p.name} (${p.view} view${p.pid ? `, pid ${p.pid}` : ''}${p.qemu ? `, QEMU ${p.qemu.version}` : ''}):`);
    out.push(
      table(
        ['start', 'size', 'perms', 'block / name', 'VmFlags', 'present', 'zero', 'in THPs'],
        p.vmas.map((v) => {
          let present = 0;
          let zero = 0;
          let thp = 0;
          for (let i = 0; i < v.offsets.length; i++) {
            const f = v.flags[i]!;
            if (p.view === 'guest' || (f & CP_PRESENT) !== 0) present++;
            if (v.contents[i] === 0 && (f & CP_ZERO_PAGE) === 0) zero++;
            if ((f & CP_THP) !== 0) thp++;
          }
          const label = v.block ?? (v.blockCandidates.length > 0 ? v.blockCandidates.join(' or ') : v.name);
          return [`0x${v.start.toString(16)}`, formatSize(v.end - v.start), v.perms || '-', label || '-', v.vmFlags.join(' ') || '-', mib(present), mib(zero), p.view === 'guest' ? '-' : mib(thp)];
        }),
        new Set([1, 5, 6, 7]),
      ),
    );
    out.push('');
  }
  return out.join('\n');
}
