import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { checkKernelImage, restoreKernel, saveKernel, type KernelImage } from '../ksm/snapshot.js';
import { Host, type HostSnapshot } from './host.js';
import type { ImageCatalog } from './image.js';

/**
 * Snapshot files: a whole simulated host — the kernel (frames in use and their
 * metadata, page tables, swap, anon_vmas, KSM's mm_slots, rmap_items, both trees, the
 * cursor, statistics, knobs, ksmd, time, PRNG state), the guests and their workloads,
 * the governor — saved mid-run and resumed bit for bit.
 *
 * Layout, all integers little-endian:
 *
 *   offset 0   8 bytes  magic "SAMEPAGE"
 *   offset 8   4 bytes  format version (SNAPSHOT_VERSION)
 *   offset 12  4 bytes  body length in bytes
 *   offset 16  4 bytes  CRC-32 of the body
 *   offset 20  body     msgpackr, with records: { kernel, host, extra }
 *
 * The CRC catches truncation and corruption before anything is decoded; the decoded
 * parts are then checked field by field (kernel: checkKernelImage; host: below)
 * before a single object is built, so a bad file throws SnapshotError and nothing is
 * half-loaded.
 */

export const SNAPSHOT_MAGIC = 'SAMEPAGE';
export const SNAPSHOT_VERSION = 1;
const HEADER_BYTES = 20;

export type SnapshotProblem = 'foreign' | 'version' | 'truncated' | 'corrupt' | 'invalid';

/** A snapshot that cannot be used; `problem` says which way, the message what exactly. */
export class SnapshotError extends Error {
  readonly problem: SnapshotProblem;
  constructor(problem: SnapshotProblem, message: string) {
    super(message);
    this.name = 'SnapshotError';
    this.problem = problem;
  }
}

interface SnapshotBody {
  kernel: KernelImage;
  host: HostSnapshot;
  extra: unknown;
}

function packr(): Packr {
  return new Packr({ useRecords: true, moreTypes: true, mapsAsObjects: true });
}

/** Save a host, with `extra` plain data of the caller's (a scenario run's position). */
export function saveHost(host: Host, extra: unknown = null): Uint8Array {
  const body: SnapshotBody = { kernel: saveKernel(host.kernel), host: host.toSnapshot(), extra };
  // msgpackr grows its buffer 1.25× at a time: for a host of GiBs that is most of the
  // time spent. Give it room for every byte field up front.
  const p = packr();
  p.useBuffer(Buffer.allocUnsafeSlow(byteFields(body) + 16 * 1024 * 1024));
  const packed = p.pack(body);
  const out = Buffer.alloc(HEADER_BYTES + packed.length);
  out.write(SNAPSHOT_MAGIC, 0, 'latin1');
  out.writeUInt32LE(SNAPSHOT_VERSION, 8);
  out.writeUInt32LE(packed.length, 12);
  out.writeUInt32LE(crc32(packed), 16);
  packed.copy(out, HEADER_BYTES);
  return out;
}

/** Bytes in the binary fields of a plain-data tree (an estimate of its packed size). */
function byteFields(v: unknown): number {
  if (ArrayBuffer.isView(v)) return v.byteLength;
  if (Array.isArray(v)) {
    let n = 0;
    for (const x of v) if (x !== null && typeof x === 'object') n += byteFields(x);
    return n;
  }
  if (v !== null && typeof v === 'object') {
    let n = 0;
    for (const x of Object.values(v)) if (x !== null && typeof x === 'object') n += byteFields(x);
    return n;
  }
  return 0;
}

/** Check the header and decode the body; throws SnapshotError. */
function decode(bytes: Uint8Array): SnapshotBody {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < HEADER_BYTES) {
    if (buf.length >= 8 && buf.toString('latin1', 0, 8) !== SNAPSHOT_MAGIC) throw new SnapshotError('foreign', 'not a Samepage snapshot: the file does not start with "SAMEPAGE"');
    throw new SnapshotError('truncated', `snapshot truncated: ${buf.length} bytes, shorter than its ${HEADER_BYTES}-byte header`);
  }
  if (buf.toString('latin1', 0, 8) !== SNAPSHOT_MAGIC) throw new SnapshotError('foreign', 'not a Samepage snapshot: the file does not start with "SAMEPAGE"');
  const version = buf.readUInt32LE(8);
  if (version !== SNAPSHOT_VERSION) {
    throw new SnapshotError('version', `snapshot format version ${version}, but this Samepage reads version ${SNAPSHOT_VERSION}`);
  }
  const len = buf.readUInt32LE(12);
  if (buf.length - HEADER_BYTES < len) {
    throw new SnapshotError('truncated', `snapshot truncated: the body should be ${len} bytes, the file has ${buf.length - HEADER_BYTES}`);
  }
  if (buf.length - HEADER_BYTES > len) {
    throw new SnapshotError('corrupt', `snapshot has ${buf.length - HEADER_BYTES - len} bytes after its body`);
  }
  const body = buf.subarray(HEADER_BYTES);
  const want = buf.readUInt32LE(16);
  const got = crc32(body);
  if (want !== got) {
    throw new SnapshotError('corrupt', `snapshot corrupt: body CRC-32 is 0x${got.toString(16).padStart(8, '0')}, the header says 0x${want.toString(16).padStart(8, '0')}`);
  }
  let decoded: unknown;
  try {
    decoded = packr().unpack(body);
  } catch (e) {
    throw new SnapshotError('corrupt', `snapshot body does not decode: ${(e as Error).message}`);
  }
  if (decoded === null || typeof decoded !== 'object') throw new SnapshotError('invalid', 'snapshot body is not a record');
  const d = decoded as Record<string, unknown>;
  for (const k of ['kernel', 'host'] as const) {
    if (d[k] === null || typeof d[k] !== 'object') throw new SnapshotError('invalid', `snapshot has no ${k} record`);
  }
  return d as unknown as SnapshotBody;
}

/** Where a host snapshot is not what toSnapshot() writes: a message, or null. */
export function checkHostSnapshot(h: unknown): string | null {
  const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
  if (h === null || typeof h !== 'object') return 'host: not a record';
  const o = h as Record<string, unknown>;
  for (const k of ['memoryMiB', 'swapMiB', 'blockMiB', 'tickMs', 'nextTickAt', 'guestsCreated']) {
    if (!isInt(o[k])) return `host.${k}: expected a whole number, found ${JSON.stringify(o[k])}`;
  }
  if (o.governorAt !== null && !isNum(o.governorAt)) return 'host.governorAt: expected a number or null';
  for (const k of ['prng', 'idPrng']) {
    const v = o[k];
    if (!Array.isArray(v) || v.length !== 4 || !v.every(isInt)) return `host.${k}: expected 4 PRNG state words`;
  }
  for (const k of ['hogs', 'log', 'images', 'guests']) if (!Array.isArray(o[k])) return `host.${k}: expected a list`;
  const policy = o.policy as Record<string, unknown> | null;
  if (policy === null || typeof policy !== 'object' || (policy.policy !== 'fixed' && policy.policy !== 'ksmtuned')) return 'host.policy: expected a fixed or ksmtuned policy';
  for (const [i, g] of (o.guests as unknown[]).entries()) {
    if (g === null || typeof g !== 'object') return `host.guests[${i}]: not a record`;
    const gs = g as Record<string, unknown>;
    if (typeof gs.name !== 'string' || typeof gs.id !== 'string') return `host.guests[${i}]: name and id must be strings`;
    for (const k of ['ramBytes', 'bootSeed', 'boots', 'pagesWritten', 'bootCursor', 'dirtyCounter', 'pendingDirty']) {
      if (!isInt(gs[k])) return `host.guests[${i}].${k}: expected a whole number, found ${JSON.stringify(gs[k])}`;
    }
    for (const k of ['bootElapsed', 'runningMs', 'dirtyDebt']) if (!isNum(gs[k])) return `host.guests[${i}].${k}: expected a number`;
    if (gs.pid !== null && !isInt(gs.pid)) return `host.guests[${i}].pid: expected a pid or null`;
    if (!Array.isArray(gs.prng) || gs.prng.length !== 4) return `host.guests[${i}].prng: expected 4 PRNG state words`;
    if (!Array.isArray(gs.slotHvas) || !gs.slotHvas.every(isInt)) return `host.guests[${i}].slotHvas: expected addresses`;
    if (!Array.isArray(gs.bursts)) return `host.guests[${i}].bursts: expected a list`;
    const img = gs.image as Record<string, unknown> | null;
    if (img === null || typeof img !== 'object' || typeof img.name !== 'string' || typeof img.version !== 'string') return `host.guests[${i}].image: expected a name and version`;
  }
  return null;
}

/**
 * Restore a host saved by saveHost(). `catalog` is what later createGuest() calls may
 * name (the guests already there carry their own images). Throws SnapshotError naming
 * what is wrong; on any error nothing is returned and nothing outside is changed.
 */
export function restoreHost(bytes: Uint8Array, catalog: ImageCatalog | null = null): { host: Host; extra: unknown } {
  const body = decode(bytes);
  const kproblem = checkKernelImage(body.kernel);
  if (kproblem !== null) throw new SnapshotError('invalid', `snapshot kernel image: ${kproblem}`);
  const hproblem = checkHostSnapshot(body.host);
  if (hproblem !== null) throw new SnapshotError('invalid', `snapshot ${hproblem}`);
  try {
    const kernel = restoreKernel(body.kernel);
    const host = Host.fromSnapshot(body.host, kernel, catalog);
    return { host, extra: body.extra ?? null };
  } catch (e) {
    if (e instanceof SnapshotError) throw e;
    throw new SnapshotError('invalid', `snapshot does not restore: ${(e as Error).message}`);
  }
}
