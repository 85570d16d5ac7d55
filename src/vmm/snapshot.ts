import { crc32 } from 'node:zlib';
import { Packr, RESERVE_START_SPACE } from 'msgpackr';
import { restoreUntrustedKernel, saveKernel } from '../ksm/kernel.js';
import { KERNEL_VERSIONS } from '../ksm/profile.js';
import { mergeDomainProblem } from '../mm/kernel.js';
import { KERNEL_IMAGE_VERSION, type KernelImage } from '../mm/snapshot.js';
import { GUEST_NAME, Host, checkKsmPolicy, type HostSnapshot } from './host.js';
import { KernelError } from '../lib/errors.js';
import { describe } from '../lib/validate.js';
import { PAGE_SIZE } from '../mm/constants.js';
import { MAX_DIRTY_RATE, checkWorkload } from './workload.js';
import { checkGovernorSnapshot } from './governor.js';
import type { ImageCatalog } from './image.js';
import { describeRef, type PageSource, type PageSourceCatalog } from './page-source.js';
import { GUEST_STATES as GUEST_STATE_LIST, HOST_EVENT_KINDS } from './types.js';

/**
 * Snapshot files: a whole simulated host — the kernel (frames in use and their
 * metadata, page tables, swap, anon_vmas, KSM's mm_slots, rmap_items, both trees, the
 * cursor, statistics, knobs, ksmd, time, PRNG state), the guests and their workloads,
 * the governor — saved mid-run and resumed bit for bit.
 *
 * A guest's page source (page-source.ts) is kept as a reference: its name and a hash
 * of what decides its pages. Restoring resolves each reference in the catalog it is
 * given, before the kernel is built; a source missing from it, or changed since,
 * throws SnapshotError `source` naming it. Everything a guest did is in the kernel's
 * frames and the guest's own state; only what it will still write comes from the
 * source.
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
 * parts are then checked field by field (host: checkHostSnapshot below; kernel: the
 * checks of checkKernelImage, as restoreUntrustedKernel decodes it) before a single
 * object is built, so a bad file throws SnapshotError and nothing is half-loaded.
 */

export const SNAPSHOT_MAGIC = 'SAMEPAGE';
/**
 * 4: the kernel image of KERNEL_IMAGE_VERSION 3 or later (3: the kernel's version and
 * the state of a 6.18 kernel, NUMA nodes; 4: frames name contents of the content
 * store; the kernel image's own version tells them apart and refuses the older). 3
 * had the kernel image in per-layer parts (KERNEL_IMAGE_VERSION 2), guests naming
 * their page source instead of carrying their images; 2 carried the governors' state
 * as data; 1 was the first. Files of older versions are refused with problem `version`.
 */
export const SNAPSHOT_VERSION = 4;
const HEADER_BYTES = 20;

/**
 * `source`: the file is sound, but a guest's page source cannot be found as it was
 * saved (not in the catalog given, or its descriptor changed since).
 */
export type SnapshotProblem = 'foreign' | 'version' | 'truncated' | 'corrupt' | 'invalid' | 'source';

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
  // time spent. Give it room for every byte field up front, and for the header, which
  // msgpackr leaves free at the start: the file is then the buffer itself. Packing
  // first and copying behind a header took a second buffer the file's size (4 s of a
  // 9 s save of a 1 GiB file, on a VM). What is not a byte field (records, numbers,
  // the log) fits the 1 MiB of slack; were it more, msgpackr would grow the buffer
  // once, the copy this avoids. The file, a view, holds on to at most the slack besides.
  const p = packr();
  p.useBuffer(Buffer.allocUnsafeSlow(HEADER_BYTES + byteFields(body) + 1024 * 1024));
  let out: Buffer;
  try {
    out = p.pack(body, RESERVE_START_SPACE | HEADER_BYTES);
  } catch (e) {
    // Only `extra` is the caller's: everything else is plain data of ours.
    throw new KernelError('EINVAL', `save: the extra data cannot be saved as plain data (${(e as Error).message})`);
  }
  out.write(SNAPSHOT_MAGIC, 0, 'latin1');
  out.writeUInt32LE(SNAPSHOT_VERSION, 8);
  out.writeUInt32LE(out.length - HEADER_BYTES, 12);
  out.writeUInt32LE(crc32(out.subarray(HEADER_BYTES)), 16);
  return out;
}

/** Bytes in the binary fields of a plain-data tree (an estimate of its packed size). */
export function byteFields(v: unknown): number {
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
  // A file shorter than the magic is foreign unless what it has is the magic's start:
  // 4 bytes of something else were never a snapshot, truncated or not.
  const head = Math.min(buf.length, 8);
  if (buf.length === 0 || buf.toString('latin1', 0, head) !== SNAPSHOT_MAGIC.slice(0, head)) {
    throw new SnapshotError('foreign', `not a Samepage snapshot: the file ${buf.length === 0 ? 'is empty' : 'does not start with "SAMEPAGE"'}`);
  }
  if (buf.length < HEADER_BYTES) throw new SnapshotError('truncated', `snapshot truncated: ${buf.length} bytes, shorter than its ${HEADER_BYTES}-byte header`);
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

const GUEST_STATES: readonly string[] = GUEST_STATE_LIST;
/** The states in which a guest has its QEMU process. */
const WITH_PROCESS = ['booting', 'running', 'paused'];

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isU32 = (v: unknown): v is number => isCount(v) && v < 0x100000000;
const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v) && !ArrayBuffer.isView(v);
const isPrngState = (v: unknown): boolean => Array.isArray(v) && v.length === 4 && v.every(isU32);

/** Where a host snapshot is not what toSnapshot() writes: a message, or null. */
export function checkHostSnapshot(h: unknown): string | null {
  if (!isRecord(h)) return 'host: not a record';
  const o = h;
  for (const k of ['memoryMiB', 'swapMiB', 'blockMiB', 'tickMs', 'nextTickAt', 'guestsCreated']) {
    if (!isInt(o[k])) return `host.${k}: expected a whole number, found ${JSON.stringify(o[k])}`;
  }
  for (const k of ['prng', 'idPrng']) if (!isPrngState(o[k])) return `host.${k}: expected 4 PRNG state words`;
  for (const k of ['hogs', 'log', 'guests']) if (!Array.isArray(o[k])) return `host.${k}: expected a list`;
  // The rules setPolicy() applies: a host never takes a policy its snapshot refuses.
  const policyProblem = problemOf(() => checkKsmPolicy('host.policy', o.policy));
  if (policyProblem !== null) return policyProblem;
  const policy = o.policy as Record<string, unknown>;
  if (o.governor !== null) {
    const problem = checkGovernorSnapshot(o.governor);
    if (problem !== null) return `host.governor: ${problem}`;
    // A governor's wakeups under a fixed policy would never be scheduled away.
    if ((o.governor as Record<string, unknown>).policy !== policy.policy) return `host.governor: a ${JSON.stringify((o.governor as Record<string, unknown>).policy)} governor under a ${JSON.stringify(policy.policy)} policy`;
  } else if (policy.policy !== 'fixed') return `host.governor: a ${JSON.stringify(policy.policy)} policy without its governor`;
  if ((o.tickMs as number) < 1 || (o.tickMs as number) > 24 * 3600 * 1000) return `host.tickMs: expected 1 to ${24 * 3600 * 1000} ms, found ${o.tickMs as number}`;
  for (const [i, x] of (o.hogs as unknown[]).entries()) {
    if (!isRecord(x) || !isInt(x.pid) || !isCount(x.bytes)) return `host.hogs[${i}]: expected a pid and bytes`;
  }
  for (const [i, e] of (o.log as unknown[]).entries()) {
    if (!isRecord(e) || !isNum(e.t) || !(HOST_EVENT_KINDS as readonly unknown[]).includes(e.kind) || (e.guest !== null && typeof e.guest !== 'string') || typeof e.what !== 'string' || (e.error !== null && typeof e.error !== 'string')) {
      return `host.log[${i}]: expected t, kind (${HOST_EVENT_KINDS.join(', ')}), guest (a string or null), what and error (a string or null)`;
    }
  }
  for (const [i, g] of (o.guests as unknown[]).entries()) {
    if (!isRecord(g)) return `host.guests[${i}]: not a record`;
    const gs = g;
    if (typeof gs.name !== 'string' || typeof gs.id !== 'string') return `host.guests[${i}]: name and id must be strings`;
    for (const k of ['ramBytes', 'bootSeed', 'boots', 'pagesWritten', 'bootCursor', 'dirtyCounter', 'pendingDirty']) {
      if (!isInt(gs[k])) return `host.guests[${i}].${k}: expected a whole number, found ${JSON.stringify(gs[k])}`;
    }
    for (const k of ['bootElapsed', 'runningMs', 'dirtyDebt']) if (!isNum(gs[k])) return `host.guests[${i}].${k}: expected a number`;
    if (typeof gs.memMerge !== 'boolean') return `host.guests[${i}].memMerge: expected true or false`;
    const domainProblem = mergeDomainProblem(gs.mergeDomain);
    if (domainProblem !== null) return `host.guests[${i}].mergeDomain: ${domainProblem}`;
    if (typeof gs.state !== 'string' || !GUEST_STATES.includes(gs.state)) return `host.guests[${i}].state: expected one of ${GUEST_STATES.join(', ')}, found ${JSON.stringify(gs.state)}`;
    if (gs.pausedFrom !== 'booting' && gs.pausedFrom !== 'running') return `host.guests[${i}].pausedFrom: expected booting or running, found ${JSON.stringify(gs.pausedFrom)}`;
    if (gs.pid !== null && !isInt(gs.pid)) return `host.guests[${i}].pid: expected a pid or null`;
    if ((gs.pid !== null) !== WITH_PROCESS.includes(gs.state)) return `host.guests[${i}].pid: a ${gs.state} guest ${gs.pid === null ? 'has a process, found null' : `has no process, found ${gs.pid}`}`;
    if (!isPrngState(gs.prng)) return `host.guests[${i}].prng: expected 4 PRNG state words`;
    if (!Array.isArray(gs.slotHvas) || !gs.slotHvas.every(isInt)) return `host.guests[${i}].slotHvas: expected addresses`;
    if (gs.qemu !== undefined) {
      const q = gs.qemu;
      if (!isRecord(q) || (q.nic !== 'none' && q.nic !== 'e1000') || !isInt(q.ramHva) || !Array.isArray(q.blockHvas) || !q.blockHvas.every(isInt)) {
        return `host.guests[${i}].qemu: expected nic (none or e1000), ramHva and blockHvas (addresses)`;
      }
    }
    if (gs.nextBurstAt !== null && !isNum(gs.nextBurstAt)) return `host.guests[${i}].nextBurstAt: expected a number or null`;
    if (typeof gs.name !== 'string' || !GUEST_NAME.test(gs.name)) return `host.guests[${i}].name: expected letters, digits, '.', '_' and '-', found ${JSON.stringify(gs.name)}`;
    const ramPages = (gs.ramBytes as number) / PAGE_SIZE;
    if (!Number.isSafeInteger(ramPages) || ramPages <= 0) return `host.guests[${i}].ramBytes: expected a positive multiple of ${PAGE_SIZE}, found ${gs.ramBytes as number}`;
    // The rules setWorkload() applies (a bounded rate, bursts of at most the RAM).
    const wProblem = problemOf(() => checkWorkload(gs.workload, `host.guests[${i}]`, ramPages));
    if (wProblem !== null) return wProblem;
    if (!Array.isArray(gs.bursts)) return `host.guests[${i}].bursts: expected a list`;
    for (const [j, x] of gs.bursts.entries()) {
      // rate and debt are Infinity for a burst over 0 ms; otherwise the debt is the
      // fraction of a page carried to the next tick.
      if (!isRecord(x) || !isCount(x.pages) || (x.pages as number) > ramPages || !isNonNegative(x.rate) || !isNonNegative(x.debt)) return `host.guests[${i}].bursts[${j}]: expected pages (at most the guest's ${ramPages}), rate and debt`;
      if (x.rate !== Infinity && !((x.debt as number) < 1)) return `host.guests[${i}].bursts[${j}].debt: expected a fraction of a page, found ${x.debt as number}`;
    }
    // What a tick can leave due: the steady rate's share plus every burst's pages.
    const dueMax = Math.ceil((MAX_DIRTY_RATE * (o.tickMs as number)) / 1000) + ramPages * (gs.bursts.length + 1);
    if ((gs.pendingDirty as number) < 0 || (gs.pendingDirty as number) > dueMax) return `host.guests[${i}].pendingDirty: expected 0 to ${dueMax}, found ${gs.pendingDirty as number}`;
    if (!((gs.dirtyDebt as number) >= 0 && (gs.dirtyDebt as number) < 1)) return `host.guests[${i}].dirtyDebt: expected a fraction of a page, found ${gs.dirtyDebt as number}`;
    if ((gs.bootCursor as number) < 0 || (gs.bootCursor as number) > ramPages) return `host.guests[${i}].bootCursor: expected 0 to ${ramPages}, found ${gs.bootCursor as number}`;
    const src = gs.source;
    if (!isRecord(src) || (src.type !== 'synthetic' && src.type !== 'capture') || typeof src.name !== 'string' || typeof src.version !== 'string' || typeof src.digest !== 'string' || !/^[0-9a-f]{64}$/.test(src.digest)) {
      return `host.guests[${i}].source: expected a page source: type 'synthetic' or 'capture', an image name and version (a capture file and guest), and a sha-256 digest (64 hex digits)`;
    }
  }
  return null;
}

/** What a validator (src/lib/validate.ts) says is wrong with a value, or null. */
function problemOf(check: () => unknown): string | null {
  try {
    check();
    return null;
  } catch (e) {
    if (e instanceof KernelError) return e.message.replace(/^[A-Z0-9]+: /, '');
    throw e;
  }
}

/** A number >= 0, Infinity included. */
function isNonNegative(v: unknown): boolean {
  return typeof v === 'number' && v >= 0;
}

/**
 * Restore a host saved by saveHost(). `catalog` has the page sources the guests name
 * (a snapshot keeps their refs, not the sources), and is what later createGuest()
 * calls may name. Throws SnapshotError naming what is wrong: `source` for a guest
 * whose source the catalog does not have, or has changed; on any error nothing is
 * returned and nothing outside is changed.
 */
export function restoreHost(bytes: Uint8Array, catalog: ImageCatalog | null = null, captures: PageSourceCatalog | null = null): { host: Host; extra: unknown } {
  if (!(bytes instanceof Uint8Array)) throw new KernelError('EINVAL', `restore: expected a snapshot's bytes (a Uint8Array or Buffer), found ${describe(bytes)}`);
  if (catalog !== null && (typeof catalog !== 'object' || typeof (catalog as ImageCatalog).resolve !== 'function')) {
    throw new KernelError('EINVAL', `restore: expected an image catalog or null, found ${describe(catalog)}`);
  }
  if (captures !== null && (typeof captures !== 'object' || typeof (captures as PageSourceCatalog).resolve !== 'function')) {
    throw new KernelError('EINVAL', `restore: expected a capture catalog or null, found ${describe(captures)}`);
  }
  const body = decode(bytes);
  const kernelVersion = (body.kernel as unknown as Record<string, unknown>).imageVersion;
  if (kernelVersion !== KERNEL_IMAGE_VERSION) {
    throw new SnapshotError('version', `snapshot kernel image version ${JSON.stringify(kernelVersion)}, but this Samepage reads version ${KERNEL_IMAGE_VERSION}`);
  }
  // A kernel of a version this Samepage has no profile for (a file from a later
  // Samepage): a version problem, like the format's, before anything is checked.
  const ksmVersion = (body.kernel as unknown as { parts?: { ksm?: { version?: unknown } } }).parts?.ksm?.version;
  if (typeof ksmVersion === 'string' && !(KERNEL_VERSIONS as readonly string[]).includes(ksmVersion)) {
    throw new SnapshotError('version', `snapshot kernel is Linux ${ksmVersion}, which this Samepage has no profile for (it has ${KERNEL_VERSIONS.join(', ')})`);
  }
  // The host first: it is small, and checked before the kernel's GiBs are built; so
  // are the guests' page sources.
  const hproblem = checkHostSnapshot(body.host);
  if (hproblem !== null) throw new SnapshotError('invalid', `snapshot ${hproblem}`);
  const sources = resolveSources(body.host, catalog, captures);
  const options = (body.kernel as unknown as Record<string, unknown>).options;
  for (const k of ['memoryMiB', 'swapMiB', 'blockMiB'] as const) {
    // A kernel image without options is refused below, naming the field.
    if (isRecord(options) && options[k] !== body.host[k]) throw new SnapshotError('invalid', `snapshot host.${k}: ${body.host[k]}, but the kernel has ${JSON.stringify(options[k])}`);
  }
  try {
    const kernel = restoreUntrustedKernel(body.kernel);
    if (typeof kernel === 'string') throw new SnapshotError('invalid', `snapshot kernel image: ${kernel}`);
    const host = Host.fromSnapshot(body.host, kernel, catalog, sources);
    return { host, extra: body.extra ?? null };
  } catch (e) {
    if (e instanceof SnapshotError) throw e;
    throw new SnapshotError('invalid', `snapshot does not restore: ${(e as Error).message}`);
  }
}

/** The page source each guest names, resolved in `catalog` (each distinct ref once); SnapshotError `source` for one it cannot give. */
function resolveSources(h: HostSnapshot, images: ImageCatalog | null, captures: PageSourceCatalog | null): PageSource[] {
  const found = new Map<string, PageSource>();
  return h.guests.map((g) => {
    const ref = g.source;
    const key = `${ref.name}\0${ref.version}\0${ref.digest}`;
    let source = found.get(key);
    if (source === undefined) {
      // A captured guest's ref names its capture file: the captures' catalog reads it.
      const catalog = ref.type === 'capture' ? captures : images;
      if (catalog === null) throw new SnapshotError('source', `snapshot guest ${g.name} boots from ${describeRef(ref)}: restoring it needs the ${ref.type === 'capture' ? 'capture file' : 'image catalog'} that has it`);
      const r = catalog.resolve(ref);
      if (typeof r === 'string') throw new SnapshotError('source', `snapshot guest ${g.name}: ${r}`);
      source = r;
      found.set(key, source);
    }
    return source;
  });
}
