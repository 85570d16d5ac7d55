import { crc32, deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  CAPTURE_PAGE_SIZE,
  CP_ANON,
  CP_FILE,
  CP_KSM,
  CP_PRESENT,
  CP_SWAPPED,
  CP_THP,
  CP_THP_HEAD,
  CP_ZERO_PAGE,
  CaptureFormatError,
  NO_CONTENT,
  PageStore,
  capturePage,
  decodeCaptureFlags,
  encodeCapture,
  readCapture,
  summarizeCapture,
  type Capture,
  type CapturedProcess,
  type CapturedVma,
} from '../../src/vmm/capture-file.js';

/**
 * Capture files (src/vmm/capture-file.ts): a round trip keeps every field and byte;
 * pages are stored once; the summary counts what `samepage images` shows; and every
 * way a file can be wrong is an error naming the file, the byte and what was expected.
 */

const P = CAPTURE_PAGE_SIZE;
const HOST = CP_PRESENT | CP_ANON;

function fill(byte: number, tag = -1): Uint8Array {
  const b = new Uint8Array(P).fill(byte);
  if (tag >= 0) new DataView(b.buffer).setUint32(0, tag, true);
  return b;
}

function vma(start: number, pages: number, entries: Array<[offset: number, content: number, flags: number]>, extra: Partial<CapturedVma> = {}): CapturedVma {
  return {
    start,
    end: start + pages * P,
    perms: 'rw-p',
    name: '',
    vmFlags: ['rd', 'wr', 'hg', 'mg'],
    block: null,
    blockCandidates: [],
    smaps: { Size: pages * 4, Rss: entries.length * 4 },
    offsets: Uint32Array.from(entries.map((e) => e[0])),
    contents: Uint32Array.from(entries.map((e) => e[1])),
    flags: Uint8Array.from(entries.map((e) => e[2])),
    ...extra,
  };
}

/**
 * Two host-view guests and one guest-view guest over three stored pages:
 * A (1), B (2), C (3). g1 holds A twice, B, a zero-filled page, a zero-page mapping,
 * a swapped page and a THP head+tail; g2 holds A, C; g3 (guest view) holds B and zeros.
 */
function sample(): Omit<Capture, 'version'> {
  const store = new PageStore();
  const a = store.add(fill(0x61));
  const b = store.add(fill(0x62));
  const c = store.add(fill(0x63, 7));
  const g1: CapturedProcess = {
    name: 'g1',
    pid: 100,
    comm: 'qemu-system-x86',
    view: 'host',
    source: 'qmp',
    paused: true,
    qemu: { version: '7.2.22', ramBlocks: [{ name: 'pc.ram', usedBytes: 16 * P, maxBytes: 16 * P }] },
    allVmas: false,
    vmas: [
      vma(0x7f0000000000, 16, [
        [0, a, HOST | CP_THP | CP_THP_HEAD],
        [1, a, HOST | CP_THP],
        [2, b, HOST | CP_KSM],
        [3, 0, HOST],
        [4, 0, CP_PRESENT | CP_ZERO_PAGE],
        [9, NO_CONTENT, CP_SWAPPED],
      ], { block: 'pc.ram', blockCandidates: ['pc.ram'] }),
      vma(0x7f0000200000, 2, [[0, c, CP_PRESENT | CP_FILE]], { vmFlags: ['rd', 'mr'], name: '/usr/lib/x' }),
    ],
  };
  const g2: CapturedProcess = { ...g1, name: 'g2', pid: 101, source: 'pid', paused: false, qemu: null, vmas: [vma(0x10000, 4, [[0, a, HOST], [3, c, HOST]])] };
  const g3: CapturedProcess = {
    name: 'g3',
    pid: 0,
    comm: '',
    view: 'guest',
    source: 'dump-guest-memory',
    paused: true,
    qemu: { version: '7.2.22', ramBlocks: [] },
    allVmas: false,
    vmas: [vma(0, 2, [[0, b, 0], [1, 0, 0]], { perms: '', vmFlags: [], name: 'pc.ram', block: 'pc.ram', blockCandidates: ['pc.ram'], smaps: {} })],
  };
  return {
    meta: { tool: 'samepage test', createdAt: '2025-01-01T00:00:00.000Z', host: { kernel: '6.18.0', thp: 'madvise', pageSize: P }, note: 'made by a test' },
    processes: [g1, g2, g3],
    pageCount: store.count,
    pages: store.bytes(),
  };
}

describe('PageStore', () => {
  it('stores each distinct non-zero page once, in order of first appearance; zero is index 0', () => {
    const s = new PageStore();
    expect(s.add(fill(0))).toBe(0);
    expect(s.add(fill(1))).toBe(1);
    expect(s.add(fill(2))).toBe(2);
    expect(s.add(fill(1))).toBe(1);
    expect(s.count).toBe(2);
    expect(s.bytes().length).toBe(2 * P);
    expect(s.page(2)[0]).toBe(2);
  });

  it('keeps pages apart past its 1024-page chunks', () => {
    const s = new PageStore();
    for (let i = 0; i < 2100; i++) expect(s.add(fill(1, i))).toBe(i + 1);
    for (let i = 0; i < 2100; i += 350) expect(s.add(fill(1, i))).toBe(i + 1);
    const all = s.bytes();
    expect(all.length).toBe(2100 * P);
    expect(all.readUInt32LE(2099 * P)).toBe(2099);
  });

  it('refuses a page that is not 4096 bytes', () => {
    expect(() => new PageStore().add(new Uint8Array(100))).toThrow('a page is 4096 bytes, got 100');
  });
});

describe('capture files: round trip', () => {
  for (const compression of ['zlib', 'brotli'] as const) {
    it(`reads back exactly what was written (${compression})`, () => {
      const c = sample();
      const back = readCapture(encodeCapture(c, { compression }), 'x.cap');
      expect(back.version).toBe(1);
      expect(back.meta).toEqual(c.meta);
      expect(back.pageCount).toBe(3);
      expect(Buffer.compare(back.pages, c.pages)).toBe(0);
      expect(back.processes).toEqual(c.processes);
      expect(capturePage(back, 3).readUInt32LE(0)).toBe(7);
      expect(capturePage(back, 0).every((x) => x === 0)).toBe(true);
    });
  }

  it('compresses repeated structure: 4 MiB of pages of one pattern is a few KiB', () => {
    const store = new PageStore();
    const entries: Array<[number, number, number]> = [];
    for (let i = 0; i < 1024; i++) entries.push([i, store.add(fill(0x11, i)), HOST]);
    const c = sample();
    c.processes = [{ ...c.processes[1]!, vmas: [vma(0x100000, 1024, entries)] }];
    c.pageCount = store.count;
    c.pages = store.bytes();
    const bytes = encodeCapture(c);
    expect(store.count).toBe(1024);
    expect(bytes.length).toBeLessThan(64 * 1024);
    expect(readCapture(bytes).processes[0]!.vmas[0]!.contents[1023]).toBe(1024);
  });

  it('decodes flags by name', () => {
    expect(decodeCaptureFlags(HOST | CP_THP | CP_THP_HEAD)).toBe('PRESENT|ANON|THP|THP_HEAD');
    expect(decodeCaptureFlags(0)).toBe('0');
  });
});

describe('summarizeCapture', () => {
  it('counts present, zero, THP, KSM and duplicates within and across processes', () => {
    const s = summarizeCapture(readCapture(encodeCapture(sample())));
    const [g1, g2, g3] = s.processes;
    // g1: pages with contents: 5 in pc.ram (not the swapped one) + 1 file page.
    expect(g1).toEqual({
      name: 'g1', view: 'host', vmas: 2, sizeBytes: 18 * P, pages: 6, anon: 4, zero: 1, zeroPageMapped: 1,
      thpPages: 2, thps: 1, ksm: 1, swapped: 1,
      // candidates (present anon, not zero page, non-zero): A, A, B -> A twice: 1 within.
      dupWithin: 1,
      // A is in g2 too (2 pages), B is in g3 (1 page).
      dupAcross: 3,
      distinct: 2,
    });
    expect(g2).toEqual({ name: 'g2', view: 'host', vmas: 1, sizeBytes: 4 * P, pages: 2, anon: 2, zero: 0, zeroPageMapped: 0, thpPages: 0, thps: 0, ksm: 0, swapped: 0, dupWithin: 0, dupAcross: 1, distinct: 2 });
    expect(g3).toEqual({ name: 'g3', view: 'guest', vmas: 1, sizeBytes: 2 * P, pages: 2, anon: 0, zero: 1, zeroPageMapped: 0, thpPages: 0, thps: 0, ksm: 0, swapped: 0, dupWithin: 0, dupAcross: 1, distinct: 1 });
    // Contents among candidates: A ×3, B ×2, C ×1 (g2; g1's C is a file page) -> shared 2, sharing 3.
    expect(s.totals).toEqual({ pages: 10, distinct: 3, stored: 3, naiveShared: 2, naiveSharing: 3 });
  });
});

// ---------------------------------------------------------------------------------
// bad files

interface Raw {
  meta: Record<string, unknown>;
  pageCount: number;
  pages: Buffer;
  arrays: Array<[Uint32Array, Uint32Array, Uint8Array]>;
  trailing?: Buffer;
}

function raw(): Raw {
  const c = sample();
  return {
    meta: JSON.parse(
      JSON.stringify({
        version: 1,
        meta: c.meta,
        pageCount: c.pageCount,
        processes: c.processes.map((p) => ({ ...p, vmas: p.vmas.map(({ offsets, contents: _c, flags: _f, ...v }) => ({ ...v, pages: offsets.length })) })),
      }),
    ) as Record<string, unknown>,
    pageCount: c.pageCount,
    pages: Buffer.from(c.pages),
    arrays: c.processes.flatMap((p) => p.vmas.map((v) => [Uint32Array.from(v.offsets), Uint32Array.from(v.contents), Uint8Array.from(v.flags)] as [Uint32Array, Uint32Array, Uint8Array])),
  };
}

function body(r: Raw): Buffer {
  const meta = Buffer.from(JSON.stringify(r.meta));
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  return Buffer.concat([
    u32(meta.length),
    meta,
    u32(r.pageCount),
    r.pages,
    ...r.arrays.flatMap(([o, c, f]) => [Buffer.from(o.buffer), Buffer.from(c.buffer), Buffer.from(f.buffer)]),
    r.trailing ?? Buffer.alloc(0),
  ]);
}

function file(b: Buffer, opts: { version?: number; compression?: number; bodyLength?: number; crc?: number } = {}): Buffer {
  const packed = deflateSync(b);
  const h = Buffer.alloc(28);
  h.write('SPCAPTUR', 0, 'latin1');
  h.writeUInt32LE(opts.version ?? 1, 8);
  h.writeUInt32LE(opts.compression ?? 1, 12);
  h.writeUInt32LE(opts.bodyLength ?? b.length, 16);
  h.writeUInt32LE(packed.length, 20);
  h.writeUInt32LE(opts.crc ?? crc32(b), 24);
  return Buffer.concat([h, packed]);
}

/** The error reading `bytes` throws, as [offset, message]. */
function failure(bytes: Buffer): [number, string] {
  try {
    readCapture(bytes, 'bad.cap');
  } catch (e) {
    if (!(e instanceof CaptureFormatError)) throw e;
    expect(e.file).toBe('bad.cap');
    expect(e.message.startsWith(`bad.cap: byte ${e.offset}: `)).toBe(true);
    return [e.offset, e.message.slice(`bad.cap: byte ${e.offset}: `.length)];
  }
  throw new Error('expected a CaptureFormatError');
}

/** The error for a raw body changed by `change`, the body's offset of the metadata being 4. */
function bodyFailure(change: (r: Raw) => void): [number, string] {
  const r = raw();
  change(r);
  return failure(file(body(r)));
}

const procs = (r: Raw): Array<Record<string, unknown>> => r.meta.processes as Array<Record<string, unknown>>;
const vmaOf = (r: Raw, p: number, v: number): Record<string, unknown> => (procs(r)[p]!.vmas as Array<Record<string, unknown>>)[v]!;

describe('capture files: every error names the file, the byte and what was expected', () => {
  const good = encodeCapture(sample());

  it('the untouched sample reads', () => {
    expect(readCapture(file(body(raw())), 'ok.cap').processes.length).toBe(3);
  });

  it('header', () => {
    expect(failure(Buffer.from('SAMEPAGE and more'))).toEqual([0, 'expected a Samepage capture (magic "SPCAPTUR"), found "SAMEPAGE"']);
    expect(failure(Buffer.alloc(0))).toEqual([0, 'expected a Samepage capture (magic "SPCAPTUR"), found ""']);
    expect(failure(good.subarray(0, 20))).toEqual([20, 'expected a 28-byte header, the file ends after 20 bytes']);
    expect(failure(file(body(raw()), { version: 2 }))).toEqual([8, 'expected format version 1, found 2']);
    expect(failure(file(body(raw()), { compression: 3 }))).toEqual([12, 'expected compression 1 (zlib) or 2 (brotli), found 3']);
  });

  it('length, truncation, trailing bytes, compression, CRC', () => {
    const packed = good.length - 28;
    expect(failure(good.subarray(0, good.length - 10))).toEqual([good.length - 10, `truncated: expected ${packed} bytes of compressed body after the header, found ${packed - 10}`]);
    expect(failure(Buffer.concat([good, Buffer.from('xyz')]))).toEqual([good.length, `expected the end of the file after the ${packed}-byte body, found 3 more bytes`]);
    const junk = Buffer.from(good);
    junk.fill(0x55, 28, 60);
    const [off, msg] = failure(junk);
    expect(off).toBe(28);
    expect(msg).toMatch(/^expected a brotli stream, it does not decompress \(/);
    const b = body(raw());
    expect(failure(file(b, { bodyLength: b.length - 1 }))).toEqual([16, `expected a body of ${b.length - 1} bytes (header), it decompresses to more`]);
    expect(failure(file(b, { bodyLength: b.length + 5 }))).toEqual([16, `expected a body of ${b.length + 5} bytes (header), it decompresses to ${b.length}`]);
    expect(failure(file(b, { crc: 0x12345678 }))).toEqual([24, `expected body CRC-32 0x12345678 (header), found 0x${crc32(b).toString(16).padStart(8, '0')}`]);
  });

  it('metadata: JSON, version, fields and their types', () => {
    const notJson = Buffer.concat([Buffer.from([3, 0, 0, 0]), Buffer.from('{x}')]);
    const [o, m] = failure(file(notJson));
    expect(o).toBe(4);
    expect(m).toMatch(/^\(uncompressed body\) expected JSON metadata, /);
    expect(failure(file(Buffer.from([9, 0, 0, 0, 1])))).toEqual([4, '(uncompressed body) expected the metadata (9 bytes), the body ends after 1']);
    expect(failure(file(Buffer.from([1, 0])))).toEqual([0, '(uncompressed body) expected the metadata length (4 bytes), the body ends after 2']);
    expect(bodyFailure((r) => (r.meta.version = 2))).toEqual([4, '(uncompressed body) metadata.version: expected 1, found 2']);
    expect(bodyFailure((r) => (r.meta.meta = 'x'))).toEqual([4, '(uncompressed body) metadata.meta: expected an object, found "x"']);
    expect(bodyFailure((r) => delete (r.meta.meta as Record<string, unknown>).tool)).toEqual([4, '(uncompressed body) metadata.meta.tool: expected a string, found nothing']);
    expect(bodyFailure((r) => ((r.meta.meta as { host: { pageSize: number } }).host.pageSize = 65536))).toEqual([4, '(uncompressed body) metadata.meta.host.pageSize: expected 4096, found 65536']);
    expect(bodyFailure((r) => (r.meta.pageCount = -1))).toEqual([4, '(uncompressed body) metadata.pageCount: expected a whole number ≥ 0, found -1']);
    expect(bodyFailure((r) => (r.meta.processes = {}))).toEqual([4, '(uncompressed body) metadata.processes: expected an array']);
  });

  it('page count and stored pages', () => {
    const metaEnd = (r: Raw): number => 4 + Buffer.byteLength(JSON.stringify(r.meta));
    const r0 = raw();
    expect(bodyFailure((r) => (r.meta.pageCount = 4))).toEqual([metaEnd(r0), '(uncompressed body) expected the page count the metadata gives (4), found 3']);
    expect(bodyFailure((r) => r.pages.fill(0, P, 2 * P))).toEqual([metaEnd(r0) + 4 + P, '(uncompressed body) stored page 2 is all zeros: expected zero pages as content index 0, never stored']);
    expect(
      bodyFailure((r) => {
        r.pageCount = 4;
        r.meta.pageCount = 4;
        r.pages = Buffer.concat([r.pages, Buffer.from(fill(0x77))]);
      }),
    ).toEqual([metaEnd(r0) + 4 + 3 * P, '(uncompressed body) stored page 4 is used by no page: expected every stored page to be referenced']);
    const short = body(raw()).subarray(0, metaEnd(r0) + 4 + P);
    expect(failure(file(short))).toEqual([metaEnd(r0) + 4, '(uncompressed body) expected 3 stored pages (12288 bytes), the body ends after 4096']);
  });

  it('processes', () => {
    expect(bodyFailure((r) => (procs(r)[0]!.view = 'vm'))).toEqual([4, "(uncompressed body) metadata.processes[0].view: expected 'host' or 'guest', found \"vm\""]);
    expect(bodyFailure((r) => (procs(r)[0]!.source = 'pmemsave'))).toEqual([
      4,
      "(uncompressed body) metadata.processes[0]: expected view 'guest' exactly for sources dump-guest-memory and pmemsave, found view 'host' with source 'pmemsave'",
    ]);
    expect(bodyFailure((r) => (procs(r)[1]!.name = ''))).toEqual([4, '(uncompressed body) metadata.processes[1].name: expected a non-empty name']);
    expect(bodyFailure((r) => (procs(r)[1]!.name = 'g1'))).toEqual([4, "(uncompressed body) metadata.processes[1].name: expected unique process names, 'g1' appears twice"]);
    expect(bodyFailure((r) => (procs(r)[0]!.paused = 1))).toEqual([4, '(uncompressed body) metadata.processes[0].paused: expected true or false, found 1']);
    expect(bodyFailure((r) => ((procs(r)[0]!.qemu as { ramBlocks: unknown }).ramBlocks = null))).toEqual([4, '(uncompressed body) metadata.processes[0].qemu.ramBlocks: expected an array']);
    expect(bodyFailure((r) => ((procs(r)[0]!.qemu as { ramBlocks: Array<{ usedBytes: number }> }).ramBlocks[0]!.usedBytes = 1 << 30))).toEqual([
      4,
      `(uncompressed body) metadata.processes[0].qemu.ramBlocks[0]: expected usedBytes ≤ maxBytes, found ${1 << 30} > ${16 * P}`,
    ]);
    expect(bodyFailure((r) => (procs(r)[0]!.vmas = null))).toEqual([4, '(uncompressed body) metadata.processes[0].vmas: expected an array']);
  });

  it('VMAs', () => {
    expect(bodyFailure((r) => (vmaOf(r, 0, 0).start = 0x7f0000000001))).toEqual([4, '(uncompressed body) metadata.processes[0].vmas[0]: expected page-aligned start < end, found 0x7f0000000001-0x7f0000010000']);
    expect(bodyFailure((r) => (vmaOf(r, 0, 1).start = 0x7f0000001000))).toEqual([
      4,
      '(uncompressed body) metadata.processes[0].vmas[1]: expected VMAs in address order without overlap, 0x7f0000001000 starts before the previous one ends (0x7f0000010000)',
    ]);
    expect(bodyFailure((r) => (vmaOf(r, 0, 0).vmFlags = ['rd', 3]))).toEqual([4, '(uncompressed body) metadata.processes[0].vmas[0].vmFlags: expected an array of strings']);
    expect(bodyFailure((r) => (vmaOf(r, 0, 0).blockCandidates = 'pc.ram'))).toEqual([4, '(uncompressed body) metadata.processes[0].vmas[0].blockCandidates: expected an array of strings']);
    expect(bodyFailure((r) => ((vmaOf(r, 0, 0).smaps as Record<string, unknown>).Rss = '24 kB'))).toEqual([4, '(uncompressed body) metadata.processes[0].vmas[0].smaps.Rss: expected a whole number of kB, found "24 kB"']);
    expect(bodyFailure((r) => (vmaOf(r, 0, 0).block = 5))).toEqual([4, '(uncompressed body) metadata.processes[0].vmas[0].block: expected a string, found 5']);
    expect(bodyFailure((r) => (vmaOf(r, 1, 0).pages = 5))).toEqual([4, "(uncompressed body) metadata.processes[1].vmas[0].pages: expected at most the VMA's 4 pages, found 5"]);
  });

  /** Body offset of VMA number `k` (in file order)'s arrays. */
  function arraysAt(k: number): number {
    const r = raw();
    let at = 4 + Buffer.byteLength(JSON.stringify(r.meta)) + 4 + r.pages.length;
    for (let i = 0; i < k; i++) at += 9 * r.arrays[i]![0].length;
    return at;
  }

  it('page entries: offsets, content indexes', () => {
    const at = arraysAt(0); // g1's pc.ram: 6 entries
    expect(bodyFailure((r) => (r.arrays[0]![0][5] = 16))).toEqual([at + 20, "(uncompressed body) metadata.processes[0].vmas[0] page 5: expected an offset below the VMA's 16 pages, found 16"]);
    expect(bodyFailure((r) => (r.arrays[0]![0][2] = 1))).toEqual([at + 8, '(uncompressed body) metadata.processes[0].vmas[0] page 2: expected offsets strictly increasing, found 1 after 1']);
    expect(bodyFailure((r) => (r.arrays[0]![1][2] = 9))).toEqual([
      at + 24 + 8,
      '(uncompressed body) metadata.processes[0].vmas[0] page 2 (offset 2, flags PRESENT|ANON|KSM): expected a content index 0..3 or 0xffffffff, found 9',
    ]);
    const r0 = raw();
    const end = body(r0).length;
    expect(failure(file(body(r0).subarray(0, end - 3)))).toEqual([arraysAt(3), "(uncompressed body) expected metadata.processes[2].vmas[0]'s 2 page entries (18 bytes), the body ends after 15"]);
    expect(bodyFailure((r) => (r.trailing = Buffer.from([1, 2])))).toEqual([end, "(uncompressed body) expected the end of the body after the last VMA's pages, found 2 more bytes"]);
  });

  it('page entries: flags that cannot go together', () => {
    const at = arraysAt(0);
    const flagAt = (i: number): number => at + 48 + i;
    const contentAt = (i: number): number => at + 24 + 4 * i;
    const e = '(uncompressed body) metadata.processes[0].vmas[0] page';
    expect(bodyFailure((r) => (r.arrays[0]![2][3] = CP_ANON))).toEqual([flagAt(3), `${e} 3 (offset 3, flags ANON): expected exactly one of PRESENT and SWAPPED`]);
    expect(bodyFailure((r) => (r.arrays[0]![2][3] = CP_PRESENT | CP_SWAPPED))).toEqual([flagAt(3), `${e} 3 (offset 3, flags PRESENT|SWAPPED): expected exactly one of PRESENT and SWAPPED`]);
    expect(bodyFailure((r) => (r.arrays[0]![2][5] = CP_SWAPPED | CP_ANON))).toEqual([flagAt(5), `${e} 5 (offset 9, flags SWAPPED|ANON): expected a swapped page to have no other flag`]);
    expect(bodyFailure((r) => (r.arrays[0]![1][5] = 1))).toEqual([contentAt(5), `${e} 5 (offset 9, flags SWAPPED): expected no contents (0xffffffff) exactly for a swapped page, found 1`]);
    expect(bodyFailure((r) => (r.arrays[0]![1][3] = NO_CONTENT))).toEqual([contentAt(3), `${e} 3 (offset 3, flags PRESENT|ANON): expected no contents (0xffffffff) exactly for a swapped page, found 4294967295`]);
    expect(bodyFailure((r) => (r.arrays[0]![2][1] = HOST | CP_THP_HEAD))).toEqual([flagAt(1), `${e} 1 (offset 1, flags PRESENT|ANON|THP_HEAD): expected THP with THP_HEAD`]);
    expect(bodyFailure((r) => (r.arrays[0]![2][4] = CP_PRESENT | CP_ZERO_PAGE | CP_ANON))).toEqual([
      flagAt(4),
      `${e} 4 (offset 4, flags PRESENT|ANON|ZERO_PAGE): expected a zero-page mapping to have contents 0 and none of ANON, KSM, FILE`,
    ]);
    expect(bodyFailure((r) => (r.arrays[0]![1][4] = 2))).toEqual([flagAt(4), `${e} 4 (offset 4, flags PRESENT|ZERO_PAGE): expected a zero-page mapping to have contents 0 and none of ANON, KSM, FILE`]);
  });

  it('guest view: flags 0 and contents for every page', () => {
    const at = arraysAt(3);
    const e = '(uncompressed body) metadata.processes[2].vmas[0] page';
    expect(bodyFailure((r) => (r.arrays[3]![2][0] = CP_PRESENT))).toEqual([at + 16, `${e} 0 (offset 0, flags PRESENT): expected flags 0 in a guest-view process (no presence, THP or zero-page data)`]);
    expect(bodyFailure((r) => (r.arrays[3]![1][1] = NO_CONTENT))).toEqual([at + 12, `${e} 1 (offset 1, flags 0): expected contents for every page of a guest view`]);
  });

  it('the writer refuses what the reader would refuse', () => {
    const c = sample();
    c.processes[0]!.vmas[0]!.flags[1] = CP_THP_HEAD;
    expect(() => encodeCapture(c)).toThrow(CaptureFormatError);
    const d = sample();
    d.pageCount = 2;
    expect(() => encodeCapture(d)).toThrow('pages holds 12288 bytes, expected pageCount × 4096 = 8192');
  });
});
