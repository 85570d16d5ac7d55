/**
 * The child of snapshot-fuzz.test.ts (and of bench/snapshot-fuzz.ts): restores damaged
 * snapshot files, cases [from, to) of a seeded campaign, and says on stdout how each
 * went, one line before ("start i") and one after ("ok i <how>" or "bad i <what>"),
 * so that a parent watching the lines knows which case hangs.
 *
 * A case is fine when the file is refused with SnapshotError, or when it restores
 * into a run that passes the deep invariant check, runs to its end, and passes it
 * again. Anything else (a raw error, an InvariantError, a KernelError out of the
 * restored run) is "bad".
 *
 * Usage: tsx test/robust/snapshot-fuzz-child.ts FROM TO
 */
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { loadImageCatalog } from '../../src/scenario/images.js';
import { ScenarioRun } from '../../src/scenario/run.js';
import { parseScenario } from '../../src/scenario/schema.js';
import { Prng } from '../../src/lib/prng.js';
import { SNAPSHOT_VERSION, SnapshotError } from '../../src/vmm/snapshot.js';

const images = loadImageCatalog(fileURLToPath(new URL('../vmm/fixtures/', import.meta.url)));

/** A short run with two merging guests, a burst and pressure: saved mid-way. */
const SCENARIO = `
name: fuzz
seed: 5
host: { memory: 36MiB, block: 16MiB, swap: 8MiB }
ksm: { policy: fixed, run: 1, pages_to_scan: 500, sleep_millisecs: 20 }
duration: 6s
sample_every: 1s
guests:
  - { name: a, image: tiny, version: '1', memory: 16MiB }
  - { name: b, image: tiny, version: '1', memory: 16MiB }
events:
  - { at: 4s, burst: { guest: a, pages: 20, over: 500ms } }
  - { at: 4500ms, pressure: 4MiB }
`;

function baseFile(): Buffer {
  const s = parseScenario(SCENARIO, 'fuzz.yaml', images);
  const run = ScenarioRun.start(s, s.variants[0]!, images, s.seed);
  run.runTo(3500);
  return Buffer.from(run.save());
}

const packr = (): Packr => new Packr({ useRecords: true, moreTypes: true, mapsAsObjects: true });

/** A file with its body replaced, the header made consistent (length and CRC), so the decoder's own checks are what is tried. */
function withBody(body: Buffer): Buffer {
  const out = Buffer.alloc(20 + body.length);
  out.write('SAMEPAGE', 0, 'latin1');
  out.writeUInt32LE(SNAPSHOT_VERSION, 8);
  out.writeUInt32LE(body.length, 12);
  out.writeUInt32LE(crc32(body), 16);
  body.copy(out, 20);
  return out;
}

type Leaf = { parent: Record<string, unknown> | unknown[]; key: string | number; value: unknown };

/** Every leaf of the decoded tree: numbers, strings, booleans, nulls, byte arrays (as a whole). */
function leaves(v: unknown, out: Leaf[]): void {
  if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v)) return;
  const entries: [string | number, unknown][] = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v);
  for (const [k, x] of entries) {
    if (x === null || typeof x !== 'object' || ArrayBuffer.isView(x)) out.push({ parent: v as Record<string, unknown>, key: k, value: x });
    if (x !== null && typeof x === 'object' && !ArrayBuffer.isView(x)) leaves(x, out);
  }
}

const ODD_VALUES: unknown[] = [0, -1, 1, 2 ** 53, 2 ** 32, -(2 ** 31), 0.5, Number.NaN, Infinity, null, 'x', true, [], {}];

/** Case i: a damaged copy of `base`, and what was done to it. */
function damage(base: Buffer, i: number): [Buffer, string] {
  const prng = new Prng(i + 1);
  const kind = i % 5;
  if (kind === 0) {
    // Truncation anywhere.
    const n = prng.int(0, base.length);
    return [base.subarray(0, n), `truncated to ${n} bytes`];
  }
  if (kind === 1) {
    // A bit flipped; the CRC left as it was (the checksum must catch it).
    const b = Buffer.from(base);
    const at = prng.int(0, b.length);
    b[at]! ^= 1 << prng.int(0, 8);
    return [b, `bit flipped at ${at}`];
  }
  const body = packr().unpack(base.subarray(20)) as unknown;
  const all: Leaf[] = [];
  leaves(body, all);
  if (kind === 2) {
    // A byte field's byte changed (frame metadata, page tables, rmap_items...), the CRC fixed.
    const bytes = all.filter((l) => ArrayBuffer.isView(l.value) && (l.value as Uint8Array).byteLength > 0);
    const l = bytes[prng.int(0, bytes.length)]!;
    const arr = Buffer.from(l.value as Uint8Array);
    const at = prng.int(0, arr.length);
    const delta = [1, 255, 128][prng.int(0, 3)]!;
    arr[at] = (arr[at]! + delta) & 0xff;
    (l.parent as Record<string | number, unknown>)[l.key] = arr;
    return [withBody(packr().pack(body)), `byte ${at} of field ${String(l.key)} changed by ${delta}`];
  }
  // A scalar field set to an odd value, or off by one, or removed; the CRC fixed.
  const scalars = all.filter((l) => !ArrayBuffer.isView(l.value));
  const l = scalars[prng.int(0, scalars.length)]!;
  const p = l.parent as Record<string | number, unknown>;
  let what: string;
  if (kind === 3 && typeof l.value === 'number') {
    const d = prng.int(0, 2) === 0 ? 1 : -1;
    p[l.key] = l.value + d;
    what = `field ${String(l.key)} ${d > 0 ? '+1' : '-1'}`;
  } else if (prng.int(0, 8) === 0 && !Array.isArray(p)) {
    delete p[l.key];
    what = `field ${String(l.key)} removed`;
  } else {
    const v = ODD_VALUES[prng.int(0, ODD_VALUES.length)];
    p[l.key] = v;
    what = `field ${String(l.key)} set to ${JSON.stringify(v) ?? String(v)}`;
  }
  return [withBody(packr().pack(body)), what];
}

const [from, to] = process.argv.slice(2).map(Number) as [number, number];
const base = baseFile();
for (let i = from; i < to; i++) {
  const [file, what] = damage(base, i);
  process.stdout.write(`start ${i}\n`);
  let result: string;
  try {
    const run = ScenarioRun.resume(file, images);
    run.host.checkInvariants();
    run.finish();
    run.host.checkInvariants();
    result = `ok ${i} restored and ran (${what})`;
  } catch (e) {
    if (e instanceof SnapshotError) result = `ok ${i} ${e.problem} (${what})`;
    else result = `bad ${i} ${(e as Error).name}: ${(e as Error).message.split('\n')[0]!} (${what})`;
  }
  process.stdout.write(`${result}\n`);
}
