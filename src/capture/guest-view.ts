import { closeSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CAPTURE_PAGE_SIZE, type CapturedVma, type PageStore } from '../vmm/capture-file.js';
import { CaptureError } from './proc.js';
import type { Qmp } from './qmp.js';

/**
 * The guest's view of its memory, through QMP alone: for when /proc of the QEMU
 * process cannot be read (another user's QEMU, a container). QEMU writes guest-physical
 * memory to a file; we read it back. There is no presence, THP or zero-page data in
 * this view (a page the guest never touched reads as zeros, like one it zeroed), so
 * the capture marks these processes view 'guest' and every page's flags 0.
 *
 *  - dump-guest-memory (format elf, paging false): an ELF core with one PT_LOAD per
 *    guest-physical RAM range QEMU knows (guest RAM below and above the PCI hole,
 *    and the other RAM regions mapped into the address space: VGA memory, the BIOS).
 *  - pmemsave: raw bytes of a guest-physical range. The ranges come from HMP
 *    `info mtree -f`: the flat view of address space "memory", entries of kind ram or
 *    rom, merged where contiguous in the same block.
 * Either way each range becomes a CapturedVma at its guest-physical address, named
 * after the RAM block mapped there.
 */

export interface FlatRange {
  start: number;
  /** Exclusive. */
  end: number;
  kind: 'ram' | 'rom';
  /** The RAM block (memory region) mapped there. */
  block: string;
  /** Offset within the block. */
  offset: number;
}

/** The RAM and ROM ranges of the flat view of address space "memory" in `info mtree -f`. */
export function parseFlatView(text: string): FlatRange[] {
  const views = text.split(/\n(?=FlatView #)/);
  const view = views.find((v) => /AS "memory"/.test(v));
  if (view === undefined) throw new CaptureError('info mtree -f has no flat view of address space "memory"');
  const out: FlatRange[] = [];
  for (const line of view.split('\n')) {
    const m = /^\s*([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, (ram|rom)\): (\S+)(?: @([0-9a-f]+))?/.exec(line);
    if (m === null) continue;
    const start = parseInt(m[1]!, 16);
    const end = parseInt(m[2]!, 16) + 1;
    const r: FlatRange = { start, end, kind: m[3] as 'ram' | 'rom', block: m[4]!, offset: m[5] === undefined ? 0 : parseInt(m[5], 16) };
    const prev = out[out.length - 1];
    // pc.ram shows as ram and rom pieces (the BIOS shadow at 0xc0000-0xfffff): one
    // range as far as memory goes, when the pieces are contiguous in the block too.
    if (prev !== undefined && prev.block === r.block && prev.end === r.start && prev.offset + (prev.end - prev.start) === r.offset) prev.end = r.end;
    else out.push(r);
  }
  return out;
}

export interface ElfLoad {
  paddr: number;
  fileOffset: number;
  size: number;
}

/** The PT_LOAD segments of an ELF64 little-endian core, from its first bytes. */
export function parseElfLoads(head: Buffer, file: string): ElfLoad[] {
  if (head.length < 64 || head.readUInt32BE(0) !== 0x7f454c46) throw new CaptureError(`${file}: expected an ELF file from dump-guest-memory`);
  if (head[4] !== 2 || head[5] !== 1) throw new CaptureError(`${file}: expected ELF64 little-endian (class ${head[4]}, data ${head[5]})`);
  const phoff = Number(head.readBigUInt64LE(32));
  const phentsize = head.readUInt16LE(54);
  const phnum = head.readUInt16LE(56);
  if (phoff + phentsize * phnum > head.length) throw new CaptureError(`${file}: program headers end at ${phoff + phentsize * phnum}, past the ${head.length} bytes read`);
  const out: ElfLoad[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (head.readUInt32LE(at) !== 1) continue; // PT_LOAD
    out.push({ fileOffset: Number(head.readBigUInt64LE(at + 8)), paddr: Number(head.readBigUInt64LE(at + 24)), size: Number(head.readBigUInt64LE(at + 32)) });
  }
  return out.sort((a, b) => a.paddr - b.paddr);
}

/** Reads `size` bytes at `fileOffset` of `path` page by page into the store. */
function storeRange(path: string, fileOffset: number, size: number, store: PageStore): { offsets: Uint32Array; contents: Uint32Array } {
  const n = size / CAPTURE_PAGE_SIZE;
  const offsets = new Uint32Array(n);
  const contents = new Uint32Array(n);
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(1024 * CAPTURE_PAGE_SIZE);
  try {
    for (let first = 0; first < n; first += 1024) {
      const k = Math.min(1024, n - first);
      let got = 0;
      while (got < k * CAPTURE_PAGE_SIZE) {
        const r = readSync(fd, buf, got, k * CAPTURE_PAGE_SIZE - got, fileOffset + first * CAPTURE_PAGE_SIZE + got);
        if (r === 0) throw new CaptureError(`${path} ends before the ${size} bytes QEMU should have written`);
        got += r;
      }
      for (let i = 0; i < k; i++) {
        offsets[first + i] = first + i;
        contents[first + i] = store.add(buf.subarray(i * CAPTURE_PAGE_SIZE, (i + 1) * CAPTURE_PAGE_SIZE));
      }
    }
  } finally {
    closeSync(fd);
  }
  return { offsets, contents };
}

function rangeVma(start: number, size: number, block: string, pages: { offsets: Uint32Array; contents: Uint32Array }): CapturedVma {
  return {
    start,
    end: start + size,
    perms: '',
    name: block,
    vmFlags: [],
    block,
    blockCandidates: [block],
    smaps: {},
    offsets: pages.offsets,
    contents: pages.contents,
    flags: new Uint8Array(pages.offsets.length),
  };
}

function checkAligned(start: number, size: number, what: string): void {
  if (start % CAPTURE_PAGE_SIZE !== 0 || size % CAPTURE_PAGE_SIZE !== 0) {
    throw new CaptureError(`${what} 0x${start.toString(16)}+0x${size.toString(16)} is not page-aligned`);
  }
}

/** The guest view through `dump-guest-memory`. `dir` is where QEMU may write (it must be able to). */
export async function captureByDump(qmp: Qmp, store: PageStore, dir?: string): Promise<CapturedVma[]> {
  const flat = parseFlatView(await qmp.hmp('info mtree -f'));
  const tmp = mkdtempSync(join(dir ?? tmpdir(), 'samepage-dump-'));
  const file = join(tmp, 'guest.elf');
  try {
    await qmp.execute('dump-guest-memory', { paging: false, protocol: `file:${file}`, format: 'elf' }, { timeoutMs: 600_000 });
    const headBytes = Math.min(statSync(file).size, 1 << 20);
    const head = Buffer.alloc(headBytes);
    const fd = openSync(file, 'r');
    try {
      readSync(fd, head, 0, headBytes, 0);
    } finally {
      closeSync(fd);
    }
    return parseElfLoads(head, 'dump-guest-memory').map((l) => {
      checkAligned(l.paddr, l.size, 'dump-guest-memory PT_LOAD');
      const block = flat.find((r) => r.start <= l.paddr && l.paddr < r.end)?.block ?? 'unknown';
      return rangeVma(l.paddr, l.size, block, storeRange(file, l.fileOffset, l.size, store));
    });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The guest view through `pmemsave`, one range of the flat view at a time. */
export async function captureByPmemsave(qmp: Qmp, store: PageStore, dir?: string): Promise<CapturedVma[]> {
  const flat = parseFlatView(await qmp.hmp('info mtree -f'));
  const tmp = mkdtempSync(join(dir ?? tmpdir(), 'samepage-pmem-'));
  try {
    const out: CapturedVma[] = [];
    for (const [i, r] of flat.entries()) {
      const size = r.end - r.start;
      checkAligned(r.start, size, `guest-physical range of ${r.block}`);
      const file = join(tmp, `range-${i}.bin`);
      await qmp.execute('pmemsave', { val: r.start, size, filename: file }, { timeoutMs: 600_000 });
      out.push(rangeVma(r.start, size, r.block, storeRange(file, 0, size, store)));
      rmSync(file, { force: true });
    }
    return out;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
