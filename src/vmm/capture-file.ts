import { createHash } from 'node:crypto';
import { brotliCompressSync, brotliDecompressSync, constants as zc, crc32, deflateSync, inflateSync } from 'node:zlib';

/**
 * Capture files: what KSM would see of real processes (QEMU guests, or any process),
 * as `samepage capture` records it on a real host (src/capture/), for the model to
 * replay. This module only encodes and decodes: Buffer in, Buffer out, no I/O, so the
 * VM manager can read a capture as it reads a guest image.
 *
 * A capture holds processes; a process holds VMAs; a VMA lists its captured pages in
 * address order. Each page has flags (the CP_* bits below) and a content index:
 * 0 is the all-zero page, 1..pageCount a stored page, NO_CONTENT a page whose bytes
 * were not read (swapped out). Every distinct non-zero content is stored once, in
 * order of first appearance, whatever process or VMA it came from: the four guests
 * of a capture share most of their kernel's pages, so the file grows with what is
 * distinct, not with guest RAM.
 *
 * Two views (CapturedProcess.view):
 *  - 'host': read from /proc on the host (smaps, pagemap, kpageflags, mem). Pages
 *    listed are the present or swapped ones; a page not listed was never touched (no
 *    pte), and KSM never sees it. Flags say anon, THP, zero-page mapping, KSM.
 *  - 'guest': read through QMP (dump-guest-memory or pmemsave): guest-physical RAM
 *    as the guest sees it. Every page of each range is listed, with flags 0: the
 *    guest view has no presence, THP or zero-page data, and the file says so by
 *    this field rather than by guessing (a never-touched page reads as zeros, like a
 *    touched zero page).
 *
 * File layout, integers little-endian:
 *
 *   offset 0   8 bytes  magic "SPCAPTUR"
 *   offset 8   4 bytes  format version (CAPTURE_VERSION)
 *   offset 12  4 bytes  compression: 1 zlib (deflate), 2 brotli
 *   offset 16  4 bytes  body length, uncompressed
 *   offset 20  4 bytes  body length, compressed (the rest of the file)
 *   offset 24  4 bytes  CRC-32 of the uncompressed body
 *   offset 28  compressed body
 *
 * Body (uncompressed), offsets from the body's start:
 *   4 bytes   M, the metadata's length;  M bytes  metadata, UTF-8 JSON (CaptureMeta
 *             and, per process and VMA, everything but the page arrays)
 *   4 bytes   P, pageCount;              P × 4096 bytes  the stored pages, 1..P
 *   then for each VMA of each process, in order, with n = that VMA's `pages`:
 *             n × u32 page offsets within the VMA (strictly increasing)
 *             n × u32 content indexes
 *             n × u8  flags
 * Errors name the file, the byte offset (of the file for the header, of the
 * uncompressed body after it) and what was expected.
 */

export const CAPTURE_MAGIC = 'SPCAPTUR';
export const CAPTURE_VERSION = 1;
export const CAPTURE_PAGE_SIZE = 4096;
const HEADER_BYTES = 28;

export const COMPRESSION_ZLIB = 1;
export const COMPRESSION_BROTLI = 2;
export type CaptureCompression = 'zlib' | 'brotli';

/** Content index of a page whose bytes were not captured (CP_SWAPPED). */
export const NO_CONTENT = 0xffffffff;
/** Content index of the all-zero page, which is never stored. */
export const ZERO_CONTENT = 0;

/*
 * Page flags, one byte per captured page. Read: `(flags & CP_THP) !== 0`.
 *   bit 0  CP_PRESENT    pagemap bit 63: a pte maps a page
 *   bit 1  CP_SWAPPED    pagemap bit 62: a swap entry (then NO_CONTENT; never PRESENT)
 *   bit 2  CP_ANON       kpageflags ANON: an anonymous page (KSM's only candidates)
 *   bit 3  CP_THP        kpageflags THP: part of a transparent huge page
 *   bit 4  CP_THP_HEAD   kpageflags COMPOUND_HEAD with THP: the THP's first subpage
 *   bit 5  CP_ZERO_PAGE  kpageflags ZERO_PAGE: the shared zero page (or huge zero
 *                        page) is mapped; contents ZERO_CONTENT; not anon, so KSM
 *                        never counts it
 *   bit 6  CP_KSM        kpageflags KSM: already a KSM page when captured
 *   bit 7  CP_FILE       pagemap bit 61: a file page or shared anonymous memory
 * A guest-view process has every flag 0.
 */
export const CP_PRESENT = 1 << 0;
export const CP_SWAPPED = 1 << 1;
export const CP_ANON = 1 << 2;
export const CP_THP = 1 << 3;
export const CP_THP_HEAD = 1 << 4;
export const CP_ZERO_PAGE = 1 << 5;
export const CP_KSM = 1 << 6;
export const CP_FILE = 1 << 7;

const FLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [CP_PRESENT, 'PRESENT'],
  [CP_SWAPPED, 'SWAPPED'],
  [CP_ANON, 'ANON'],
  [CP_THP, 'THP'],
  [CP_THP_HEAD, 'THP_HEAD'],
  [CP_ZERO_PAGE, 'ZERO_PAGE'],
  [CP_KSM, 'KSM'],
  [CP_FILE, 'FILE'],
];

export function decodeCaptureFlags(flags: number): string {
  const names = FLAG_NAMES.filter(([bit]) => (flags & bit) !== 0).map(([, n]) => n);
  return names.length === 0 ? '0' : names.join('|');
}

export type CaptureView = 'host' | 'guest';
/** How a process was captured: /proc by pid (paused through QMP or not), or QMP's guest view. */
export type CaptureSource = 'pid' | 'qmp' | 'dump-guest-memory' | 'pmemsave';

export interface CaptureMeta {
  /** "samepage 0.1.0" */
  tool: string;
  /** When the capture was taken, ISO 8601 (the file records it; nothing replays it). */
  createdAt: string;
  /** The host it was taken on: uname release, THP mode ("madvise"), page size. */
  host: { kernel: string; thp: string; pageSize: number };
  /** Free text: how the capture was made. */
  note: string;
}

/** A QEMU RAM block as QEMU lists it (HMP `info ramblock`). */
export interface RamBlock {
  name: string;
  usedBytes: number;
  maxBytes: number;
}

export interface CapturedVma {
  /** Host virtual addresses for view 'host'; guest-physical for view 'guest'. */
  start: number;
  end: number;
  /** smaps' permissions ("rw-p"), or "" for a guest-view range. */
  perms: string;
  /** smaps' pathname column ("[heap]", a file, ""), or the RAM block for a guest-view range. */
  name: string;
  /** smaps' VmFlags ("rd", "wr", "hg", "mg", ...), in smaps' order. */
  vmFlags: string[];
  /**
   * The QEMU RAM block this VMA holds, when the capture knew QEMU's blocks and only
   * one block has this VMA's size; null otherwise. `blockCandidates` lists every
   * block of that size (several when sizes tie: see src/capture/proc.ts).
   */
  block: string | null;
  blockCandidates: string[];
  /** smaps' counters, in kB as smaps prints them (Rss, AnonHugePages, Swap, ...). */
  smaps: Record<string, number>;
  /** Page offsets within the VMA, strictly increasing; parallel to contents and flags. */
  offsets: Uint32Array;
  contents: Uint32Array;
  flags: Uint8Array;
}

export interface CapturedProcess {
  /** The name it is known by in the capture (a guest's name, or comm-pid). */
  name: string;
  /** Its pid on the host when captured; 0 if unknown (guest view without host access). */
  pid: number;
  /** /proc/PID/comm, or "" if unknown. */
  comm: string;
  view: CaptureView;
  source: CaptureSource;
  /** True if the process was paused (QMP stop) while its pages were read. */
  paused: boolean;
  /** QEMU's version and RAM blocks, when captured through QMP; null otherwise. */
  qemu: { version: string; ramBlocks: RamBlock[] } | null;
  /** Every VMA when captured with all VMAs; otherwise only those with VmFlags mg. */
  allVmas: boolean;
  vmas: CapturedVma[];
}

export interface Capture {
  version: number;
  meta: CaptureMeta;
  processes: CapturedProcess[];
  /** Number of stored pages; content index i (1..pageCount) is at (i-1)×4096 in `pages`. */
  pageCount: number;
  pages: Buffer;
}

/** A capture file that cannot be used: names the file, where and what was expected. */
export class CaptureFormatError extends Error {
  readonly file: string;
  readonly offset: number;
  constructor(file: string, offset: number, message: string) {
    super(`${file}: byte ${offset}: ${message}`);
    this.name = 'CaptureFormatError';
    this.file = file;
    this.offset = offset;
  }
}

/** The bytes of content index `i` (a view into the capture; zeros for ZERO_CONTENT). */
export function capturePage(c: Capture, i: number): Buffer {
  if (i === ZERO_CONTENT) return ZERO_PAGE_BYTES;
  if (!Number.isInteger(i) || i < 1 || i > c.pageCount) throw new RangeError(`content index ${i} is not 0..${c.pageCount}`);
  return c.pages.subarray((i - 1) * CAPTURE_PAGE_SIZE, i * CAPTURE_PAGE_SIZE);
}
const ZERO_PAGE_BYTES = Buffer.alloc(CAPTURE_PAGE_SIZE);

// ---------------------------------------------------------------------------------
// building

/**
 * Collects pages, storing each distinct content once. Invariant: `stored` holds
 * `count` pages, none all-zero and no two equal; `index` maps the MD5 of each to the
 * content indexes with that digest (MD5 only to find candidates: equality is decided
 * by comparing the bytes, so a collision costs a comparison, never a wrong page).
 */
export class PageStore {
  private chunks: Buffer[] = [];
  private current: Buffer = Buffer.alloc(0);
  private used = 0;
  private readonly index = new Map<string, number[]>();
  count = 0;

  /** The content index for these 4096 bytes, storing them if new. */
  add(page: Uint8Array): number {
    if (page.length !== CAPTURE_PAGE_SIZE) throw new RangeError(`a page is ${CAPTURE_PAGE_SIZE} bytes, got ${page.length}`);
    if (isZero(page)) return ZERO_CONTENT;
    const key = createHash('md5').update(page).digest('base64');
    const same = this.index.get(key);
    if (same !== undefined) {
      for (const i of same) if (Buffer.compare(this.page(i), page) === 0) return i;
    }
    if (this.used === this.current.length) {
      if (this.current.length > 0) this.chunks.push(this.current);
      this.current = Buffer.allocUnsafe(1024 * CAPTURE_PAGE_SIZE);
      this.used = 0;
    }
    this.current.set(page, this.used);
    this.used += CAPTURE_PAGE_SIZE;
    this.count++;
    if (same === undefined) this.index.set(key, [this.count]);
    else same.push(this.count);
    return this.count;
  }

  /** Content index i (1..count). */
  page(i: number): Buffer {
    const at = (i - 1) * CAPTURE_PAGE_SIZE;
    const chunkBytes = 1024 * CAPTURE_PAGE_SIZE;
    const c = Math.floor(at / chunkBytes);
    const buf = c < this.chunks.length ? this.chunks[c]! : this.current;
    const off = at - c * chunkBytes;
    return buf.subarray(off, off + CAPTURE_PAGE_SIZE);
  }

  /** All stored pages, 1..count, in one buffer. */
  bytes(): Buffer {
    return Buffer.concat([...this.chunks, this.current.subarray(0, this.used)]);
  }
}

export function isZero(page: Uint8Array): boolean {
  for (let i = 0; i < page.length; i++) if (page[i] !== 0) return false;
  return true;
}

export interface EncodeOptions {
  compression?: CaptureCompression;
  /** zlib level 0..9 (default 6) or brotli quality 0..11 (default 5). */
  level?: number;
}

/** Encodes a capture (which `readCapture` gives back equal). Checks it first, as the reader would. */
export function encodeCapture(c: Omit<Capture, 'version'>, opts: EncodeOptions = {}): Buffer {
  const meta = JSON.stringify({
    version: CAPTURE_VERSION,
    meta: c.meta,
    pageCount: c.pageCount,
    processes: c.processes.map((p) => ({ ...p, vmas: p.vmas.map(({ offsets, contents: _c, flags: _f, ...v }) => ({ ...v, pages: offsets.length })) })),
  });
  const metaBytes = Buffer.from(meta, 'utf8');
  if (c.pages.length !== c.pageCount * CAPTURE_PAGE_SIZE) throw new RangeError(`pages holds ${c.pages.length} bytes, expected pageCount × 4096 = ${c.pageCount * CAPTURE_PAGE_SIZE}`);
  const parts: Buffer[] = [u32(metaBytes.length), metaBytes, u32(c.pageCount), c.pages];
  for (const p of c.processes) {
    for (const v of p.vmas) {
      parts.push(Buffer.from(v.offsets.buffer, v.offsets.byteOffset, v.offsets.byteLength));
      parts.push(Buffer.from(v.contents.buffer, v.contents.byteOffset, v.contents.byteLength));
      parts.push(Buffer.from(v.flags.buffer, v.flags.byteOffset, v.flags.byteLength));
    }
  }
  const body = Buffer.concat(parts);
  // The writer's own output must read back: a bad capture is caught where it is made.
  parseBody(body, '<capture being written>', 0);
  const compression = opts.compression ?? 'brotli';
  const packed =
    compression === 'zlib'
      ? deflateSync(body, { level: opts.level ?? 6 })
      : brotliCompressSync(body, {
          params: {
            [zc.BROTLI_PARAM_QUALITY]: opts.level ?? 5,
            [zc.BROTLI_PARAM_LGWIN]: 24,
            [zc.BROTLI_PARAM_SIZE_HINT]: body.length,
          },
        });
  const head = Buffer.alloc(HEADER_BYTES);
  head.write(CAPTURE_MAGIC, 0, 'latin1');
  head.writeUInt32LE(CAPTURE_VERSION, 8);
  head.writeUInt32LE(compression === 'zlib' ? COMPRESSION_ZLIB : COMPRESSION_BROTLI, 12);
  head.writeUInt32LE(body.length, 16);
  head.writeUInt32LE(packed.length, 20);
  head.writeUInt32LE(crc32(body), 24);
  return Buffer.concat([head, packed]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

// ---------------------------------------------------------------------------------
// reading

/** Parses and validates a capture file. `file` names it in errors. No I/O. */
export function readCapture(bytes: Uint8Array, file = '<capture>'): Capture {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (offset: number, msg: string): never => {
    throw new CaptureFormatError(file, offset, msg);
  };
  if (buf.length < 8 || buf.toString('latin1', 0, 8) !== CAPTURE_MAGIC) {
    fail(0, `expected a Samepage capture (magic "${CAPTURE_MAGIC}"), found ${JSON.stringify(buf.toString('latin1', 0, Math.min(8, buf.length)))}`);
  }
  if (buf.length < HEADER_BYTES) fail(buf.length, `expected a ${HEADER_BYTES}-byte header, the file ends after ${buf.length} bytes`);
  const version = buf.readUInt32LE(8);
  if (version !== CAPTURE_VERSION) fail(8, `expected format version ${CAPTURE_VERSION}, found ${version}`);
  const compression = buf.readUInt32LE(12);
  if (compression !== COMPRESSION_ZLIB && compression !== COMPRESSION_BROTLI) {
    fail(12, `expected compression ${COMPRESSION_ZLIB} (zlib) or ${COMPRESSION_BROTLI} (brotli), found ${compression}`);
  }
  const bodyLength = buf.readUInt32LE(16);
  const packedLength = buf.readUInt32LE(20);
  if (buf.length - HEADER_BYTES < packedLength) {
    fail(buf.length, `truncated: expected ${packedLength} bytes of compressed body after the header, found ${buf.length - HEADER_BYTES}`);
  }
  if (buf.length - HEADER_BYTES > packedLength) {
    fail(HEADER_BYTES + packedLength, `expected the end of the file after the ${packedLength}-byte body, found ${buf.length - HEADER_BYTES - packedLength} more bytes`);
  }
  const packed = buf.subarray(HEADER_BYTES);
  let body: Buffer;
  try {
    body = compression === COMPRESSION_ZLIB ? inflateSync(packed, { maxOutputLength: bodyLength + 1 }) : brotliDecompressSync(packed, { maxOutputLength: bodyLength + 1 });
  } catch (e) {
    return fail(HEADER_BYTES, `expected a ${compression === COMPRESSION_ZLIB ? 'zlib' : 'brotli'} stream, it does not decompress (${(e as Error).message})`);
  }
  if (body.length !== bodyLength) fail(16, `expected a body of ${bodyLength} bytes (header), it decompresses to ${body.length === bodyLength + 1 ? 'more' : body.length}`);
  const want = buf.readUInt32LE(24);
  const got = crc32(body);
  if (got !== want) fail(24, `expected body CRC-32 0x${hex8(want)} (header), found 0x${hex8(got)}`);
  return parseBody(body, file, HEADER_BYTES);
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

/**
 * Validates and decodes an uncompressed body. Offsets in errors are the body's
 * (the reader's caller knows the body follows the header); `base` is only used to
 * say so in the message.
 */
function parseBody(body: Buffer, file: string, base: number): Capture {
  const where = base === 0 ? 'body' : 'uncompressed body';
  const fail = (offset: number, msg: string): never => {
    throw new CaptureFormatError(file, offset, `(${where}) ${msg}`);
  };
  let at = 0;
  const need = (n: number, what: string): void => {
    if (body.length - at < n) fail(at, `expected ${what} (${n} bytes), the body ends after ${body.length - at}`);
  };
  need(4, 'the metadata length');
  const metaLength = body.readUInt32LE(at);
  at += 4;
  need(metaLength, 'the metadata');
  const metaAt = at;
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString('utf8', at, at + metaLength));
  } catch (e) {
    return fail(metaAt, `expected JSON metadata, ${(e as Error).message}`);
  }
  at += metaLength;
  const m = new MetaChecker(metaAt, fail);
  const top = m.record(raw, 'metadata');
  const version = m.int(top, 'version', 'metadata');
  if (version !== CAPTURE_VERSION) fail(metaAt, `metadata.version: expected ${CAPTURE_VERSION}, found ${version}`);
  const metaRec = m.record(top.meta, 'metadata.meta');
  const hostRec = m.record(metaRec.host, 'metadata.meta.host');
  const meta: CaptureMeta = {
    tool: m.str(metaRec, 'tool', 'metadata.meta'),
    createdAt: m.str(metaRec, 'createdAt', 'metadata.meta'),
    host: { kernel: m.str(hostRec, 'kernel', 'metadata.meta.host'), thp: m.str(hostRec, 'thp', 'metadata.meta.host'), pageSize: m.int(hostRec, 'pageSize', 'metadata.meta.host') },
    note: m.str(metaRec, 'note', 'metadata.meta'),
  };
  if (meta.host.pageSize !== CAPTURE_PAGE_SIZE) fail(metaAt, `metadata.meta.host.pageSize: expected ${CAPTURE_PAGE_SIZE}, found ${meta.host.pageSize}`);
  const pageCountMeta = m.int(top, 'pageCount', 'metadata');
  need(4, 'the page count');
  const pageCount = body.readUInt32LE(at);
  if (pageCount !== pageCountMeta) fail(at, `expected the page count the metadata gives (${pageCountMeta}), found ${pageCount}`);
  at += 4;
  need(pageCount * CAPTURE_PAGE_SIZE, `${pageCount} stored pages`);
  const pagesAt = at;
  const pages = body.subarray(at, at + pageCount * CAPTURE_PAGE_SIZE);
  at += pages.length;
  for (let i = 0; i < pageCount; i++) {
    if (isZero(pages.subarray(i * CAPTURE_PAGE_SIZE, (i + 1) * CAPTURE_PAGE_SIZE))) {
      fail(pagesAt + i * CAPTURE_PAGE_SIZE, `stored page ${i + 1} is all zeros: expected zero pages as content index 0, never stored`);
    }
  }
  const referenced = new Uint8Array(pageCount + 1);

  if (!Array.isArray(top.processes)) return fail(metaAt, 'metadata.processes: expected an array');
  const processes: CapturedProcess[] = [];
  const names = new Set<string>();
  top.processes.forEach((rawP: unknown, pi: number) => {
    const ctx = `metadata.processes[${pi}]`;
    const pr = m.record(rawP, ctx);
    const view = m.oneOf(pr, 'view', ['host', 'guest'] as const, ctx);
    const source = m.oneOf(pr, 'source', ['pid', 'qmp', 'dump-guest-memory', 'pmemsave'] as const, ctx);
    if ((view === 'guest') !== (source === 'dump-guest-memory' || source === 'pmemsave')) {
      fail(metaAt, `${ctx}: expected view 'guest' exactly for sources dump-guest-memory and pmemsave, found view '${view}' with source '${source}'`);
    }
    const name = m.str(pr, 'name', ctx);
    if (name.length === 0) fail(metaAt, `${ctx}.name: expected a non-empty name`);
    if (names.has(name)) fail(metaAt, `${ctx}.name: expected unique process names, '${name}' appears twice`);
    names.add(name);
    let qemu: CapturedProcess['qemu'] = null;
    if (pr.qemu !== null) {
      const q = m.record(pr.qemu, `${ctx}.qemu`);
      if (!Array.isArray(q.ramBlocks)) fail(metaAt, `${ctx}.qemu.ramBlocks: expected an array`);
      qemu = {
        version: m.str(q, 'version', `${ctx}.qemu`),
        ramBlocks: (q.ramBlocks as unknown[]).map((b, bi) => {
          const bc = `${ctx}.qemu.ramBlocks[${bi}]`;
          const r = m.record(b, bc);
          const blk = { name: m.str(r, 'name', bc), usedBytes: m.int(r, 'usedBytes', bc), maxBytes: m.int(r, 'maxBytes', bc) };
          if (blk.usedBytes > blk.maxBytes) fail(metaAt, `${bc}: expected usedBytes ≤ maxBytes, found ${blk.usedBytes} > ${blk.maxBytes}`);
          return blk;
        }),
      };
    }
    const p: CapturedProcess = {
      name,
      pid: m.int(pr, 'pid', ctx),
      comm: m.str(pr, 'comm', ctx),
      view,
      source,
      paused: m.bool(pr, 'paused', ctx),
      qemu,
      allVmas: m.bool(pr, 'allVmas', ctx),
      vmas: [],
    };
    if (!Array.isArray(pr.vmas)) fail(metaAt, `${ctx}.vmas: expected an array`);
    let prevEnd = 0;
    (pr.vmas as unknown[]).forEach((rawV, vi) => {
      const vc = `${ctx}.vmas[${vi}]`;
      const vr = m.record(rawV, vc);
      const start = m.int(vr, 'start', vc);
      const end = m.int(vr, 'end', vc);
      if (start % CAPTURE_PAGE_SIZE !== 0 || end % CAPTURE_PAGE_SIZE !== 0 || end <= start) {
        fail(metaAt, `${vc}: expected page-aligned start < end, found 0x${start.toString(16)}-0x${end.toString(16)}`);
      }
      if (start < prevEnd) fail(metaAt, `${vc}: expected VMAs in address order without overlap, 0x${start.toString(16)} starts before the previous one ends (0x${prevEnd.toString(16)})`);
      prevEnd = end;
      if (!Array.isArray(vr.vmFlags) || !vr.vmFlags.every((f: unknown) => typeof f === 'string')) fail(metaAt, `${vc}.vmFlags: expected an array of strings`);
      if (!Array.isArray(vr.blockCandidates) || !vr.blockCandidates.every((f: unknown) => typeof f === 'string')) fail(metaAt, `${vc}.blockCandidates: expected an array of strings`);
      const smapsRec = m.record(vr.smaps, `${vc}.smaps`);
      const smaps: Record<string, number> = {};
      for (const [k, val] of Object.entries(smapsRec)) {
        if (typeof val !== 'number' || !Number.isSafeInteger(val) || val < 0) fail(metaAt, `${vc}.smaps.${k}: expected a whole number of kB, found ${JSON.stringify(val)}`);
        smaps[k] = val as number;
      }
      const block = vr.block === null ? null : m.str(vr, 'block', vc);
      const n = m.int(vr, 'pages', vc);
      const span = (end - start) / CAPTURE_PAGE_SIZE;
      if (n > span) fail(metaAt, `${vc}.pages: expected at most the VMA's ${span} pages, found ${n}`);
      need(n * 9, `${vc}'s ${n} page entries`);
      const offsets = new Uint32Array(n);
      const contents = new Uint32Array(n);
      const flags = new Uint8Array(n);
      const offAt = at;
      const conAt = at + 4 * n;
      const flAt = at + 8 * n;
      for (let i = 0; i < n; i++) {
        const o = body.readUInt32LE(offAt + 4 * i);
        if (o >= span) fail(offAt + 4 * i, `${vc} page ${i}: expected an offset below the VMA's ${span} pages, found ${o}`);
        if (i > 0 && o <= offsets[i - 1]!) fail(offAt + 4 * i, `${vc} page ${i}: expected offsets strictly increasing, found ${o} after ${offsets[i - 1]!}`);
        offsets[i] = o;
        const c = body.readUInt32LE(conAt + 4 * i);
        const f = body[flAt + i]!;
        flags[i] = f;
        contents[i] = c;
        const bad = (off: number, msg: string): never => fail(off, `${vc} page ${i} (offset ${o}, flags ${decodeCaptureFlags(f)}): ${msg}`);
        if (c !== NO_CONTENT && c > pageCount) bad(conAt + 4 * i, `expected a content index 0..${pageCount} or 0x${hex8(NO_CONTENT)}, found ${c}`);
        if (view === 'guest') {
          if (f !== 0) bad(flAt + i, 'expected flags 0 in a guest-view process (no presence, THP or zero-page data)');
          if (c === NO_CONTENT) bad(conAt + 4 * i, 'expected contents for every page of a guest view');
        } else {
          const present = (f & CP_PRESENT) !== 0;
          const swapped = (f & CP_SWAPPED) !== 0;
          if (present === swapped) bad(flAt + i, 'expected exactly one of PRESENT and SWAPPED');
          if (swapped && f !== CP_SWAPPED) bad(flAt + i, 'expected a swapped page to have no other flag');
          if ((c === NO_CONTENT) !== swapped) bad(conAt + 4 * i, `expected no contents (0x${hex8(NO_CONTENT)}) exactly for a swapped page, found ${c}`);
          if ((f & CP_THP_HEAD) !== 0 && (f & CP_THP) === 0) bad(flAt + i, 'expected THP with THP_HEAD');
          if ((f & CP_ZERO_PAGE) !== 0 && (c !== ZERO_CONTENT || (f & (CP_ANON | CP_KSM | CP_FILE)) !== 0)) {
            bad(flAt + i, 'expected a zero-page mapping to have contents 0 and none of ANON, KSM, FILE');
          }
        }
        if (c !== NO_CONTENT) referenced[c] = 1;
      }
      at += 9 * n;
      p.vmas.push({
        start,
        end,
        perms: m.str(vr, 'perms', vc),
        name: m.str(vr, 'name', vc),
        vmFlags: vr.vmFlags as string[],
        block,
        blockCandidates: vr.blockCandidates as string[],
        smaps,
        offsets,
        contents,
        flags,
      });
    });
    processes.push(p);
  });
  if (at !== body.length) fail(at, `expected the end of the body after the last VMA's pages, found ${body.length - at} more bytes`);
  for (let i = 1; i <= pageCount; i++) {
    if (referenced[i] === 0) fail(pagesAt + (i - 1) * CAPTURE_PAGE_SIZE, `stored page ${i} is used by no page: expected every stored page to be referenced`);
  }
  return { version, meta, processes, pageCount, pages };
}

type Fail = (offset: number, msg: string) => never;

/** Typed field reads from the metadata JSON; errors point at the metadata's offset. */
class MetaChecker {
  constructor(
    private readonly at: number,
    private readonly fail: Fail,
  ) {}

  record(v: unknown, ctx: string): Record<string, unknown> {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return this.fail(this.at, `${ctx}: expected an object, found ${describe(v)}`);
    return v as Record<string, unknown>;
  }

  str(r: Record<string, unknown>, k: string, ctx: string): string {
    const v = r[k];
    if (typeof v !== 'string') return this.fail(this.at, `${ctx}.${k}: expected a string, found ${describe(v)}`);
    return v;
  }

  int(r: Record<string, unknown>, k: string, ctx: string): number {
    const v = r[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return this.fail(this.at, `${ctx}.${k}: expected a whole number ≥ 0, found ${describe(v)}`);
    return v;
  }

  bool(r: Record<string, unknown>, k: string, ctx: string): boolean {
    const v = r[k];
    if (typeof v !== 'boolean') return this.fail(this.at, `${ctx}.${k}: expected true or false, found ${describe(v)}`);
    return v;
  }

  oneOf<T extends string>(r: Record<string, unknown>, k: string, allowed: readonly T[], ctx: string): T {
    const v = r[k];
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      return this.fail(this.at, `${ctx}.${k}: expected ${allowed.map((a) => `'${a}'`).join(' or ')}, found ${describe(v)}`);
    }
    return v as T;
  }
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

// ---------------------------------------------------------------------------------
// describing

export interface CaptureSummary {
  name: string;
  view: CaptureView;
  /** VMAs captured, and their size (bytes of address space). */
  vmas: number;
  sizeBytes: number;
  /** Pages listed with contents (present, or every page of a guest view). */
  pages: number;
  /** Present anonymous pages (host view): what KSM can scan. */
  anon: number;
  /** Pages whose contents are all zero (host view: zero-filled anon pages, not zero-page mappings). */
  zero: number;
  /** Zero-page mappings (host view). */
  zeroPageMapped: number;
  /** Pages in transparent huge pages, and the THPs (heads). */
  thpPages: number;
  thps: number;
  ksm: number;
  swapped: number;
  /** Non-zero pages whose contents appear again in this process. */
  dupWithin: number;
  /** Non-zero pages whose contents appear in another process of the capture. */
  dupAcross: number;
  /** Distinct non-zero contents in this process. */
  distinct: number;
}

/** Is this entry a page KSM could merge (host view: present anon, not a zero-page mapping)? Guest view: every page. */
function candidate(view: CaptureView, f: number): boolean {
  return view === 'guest' || ((f & CP_PRESENT) !== 0 && (f & CP_ANON) !== 0 && (f & CP_ZERO_PAGE) === 0);
}

/**
 * Per process: what it holds, and how much of it is duplicated. Duplicates count
 * pages (entries) beyond the first of each content: within the process, and with any
 * other process (a page counted across if its content occurs in another process).
 * Only KSM's candidates count as duplicates (host view: present, anon, not the
 * zero page); zero-filled pages are reported apart, as KSM treats them apart.
 */
export function summarizeCapture(c: Capture): { processes: CaptureSummary[]; totals: { pages: number; distinct: number; stored: number; naiveShared: number; naiveSharing: number } } {
  // content -> bitmask of processes (first 31) and count per process
  const perProcess = c.processes.map(() => new Map<number, number>());
  const owners = new Map<number, Set<number>>();
  c.processes.forEach((p, pi) => {
    for (const v of p.vmas) {
      for (let i = 0; i < v.offsets.length; i++) {
        const cont = v.contents[i]!;
        if (cont === NO_CONTENT || cont === ZERO_CONTENT || !candidate(p.view, v.flags[i]!)) continue;
        perProcess[pi]!.set(cont, (perProcess[pi]!.get(cont) ?? 0) + 1);
        let o = owners.get(cont);
        if (o === undefined) owners.set(cont, (o = new Set()));
        o.add(pi);
      }
    }
  });
  const processes = c.processes.map((p, pi): CaptureSummary => {
    const s: CaptureSummary = {
      name: p.name,
      view: p.view,
      vmas: p.vmas.length,
      sizeBytes: 0,
      pages: 0,
      anon: 0,
      zero: 0,
      zeroPageMapped: 0,
      thpPages: 0,
      thps: 0,
      ksm: 0,
      swapped: 0,
      dupWithin: 0,
      dupAcross: 0,
      distinct: perProcess[pi]!.size,
    };
    for (const v of p.vmas) {
      s.sizeBytes += v.end - v.start;
      for (let i = 0; i < v.offsets.length; i++) {
        const f = v.flags[i]!;
        const cont = v.contents[i]!;
        if (cont !== NO_CONTENT) s.pages++;
        if ((f & CP_SWAPPED) !== 0) s.swapped++;
        if ((f & CP_ZERO_PAGE) !== 0) s.zeroPageMapped++;
        else if (cont === ZERO_CONTENT) s.zero++;
        if ((f & CP_ANON) !== 0 && (f & CP_PRESENT) !== 0) s.anon++;
        if ((f & CP_THP) !== 0) s.thpPages++;
        if ((f & CP_THP_HEAD) !== 0) s.thps++;
        if ((f & CP_KSM) !== 0) s.ksm++;
      }
    }
    for (const [cont, n] of perProcess[pi]!) {
      s.dupWithin += n - 1;
      if (owners.get(cont)!.size > 1) s.dupAcross += n;
    }
    return s;
  });
  // A naive KSM without THP, zero-page or max_page_sharing rules: every content held by
  // two or more candidate pages becomes one KSM page shared by all of them.
  let naiveShared = 0;
  let naiveSharing = 0;
  const total = new Map<number, number>();
  for (const m of perProcess) for (const [cont, n] of m) total.set(cont, (total.get(cont) ?? 0) + n);
  for (const n of total.values()) {
    if (n >= 2) {
      naiveShared++;
      naiveSharing += n - 1;
    }
  }
  return {
    processes,
    totals: { pages: processes.reduce((a, s) => a + s.pages, 0), distinct: total.size, stored: c.pageCount, naiveShared, naiveSharing },
  };
}
