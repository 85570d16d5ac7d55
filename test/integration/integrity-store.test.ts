/**
 * Randomised integrity test of the content store (src/mm/contents.ts) under KSM:
 * many processes writing to contents they share — generated source pages named by
 * the same keys, fills, stored bytes, fork's copy-on-write, KSM's merges — then
 * writing over them a byte or a page at a time, while pages go out to swap and come
 * back, migrate, compact, leave an offlined block, and the whole kernel goes through
 * a snapshot round trip.
 *
 * The oracle is a shadow of every process's bytes (one Buffer per process, its one
 * area). Every 40 operations, and at the end, every page of every process is read back
 * through the MMU (peekMem) and compared, and checkInvariants() runs (it recounts
 * every content's references from the frames and swap slots naming it, and rehashes
 * memoized checksums). At the end, once every process has exited and reclaim has let
 * the swap cache go, the store holds nothing: no stored bytes, no source contents.
 */
import { describe, expect, it } from 'vitest';
import { KernelError } from '../../src/lib/errors.js';
import { Prng } from '../../src/lib/prng.js';
import { PAGE_SIZE } from '../../src/mm/constants.js';
import { Kernel } from '../../src/index.js';
import type { PageGenerator } from '../../src/mm/contents.js';
import type { Process } from '../../src/mm/process.js';
import { saveKernel, restoreKernel } from '../../src/ksm/kernel.js';
import { reclaimAll } from '../mm/helpers.js';

const P = PAGE_SIZE;
const PAGES = 48;

/** Word i of page (k0, k1, k2, k3) is a hash of the key and i: distinct keys, distinct pages. */
const hashGenerator: PageGenerator = {
  name: 'hash',
  keyIsHead: false,
  generate(k0, k1, k2, k3, out, off) {
    let x = (Math.imul(k0 ^ 0x9e3779b1, 0x85ebca6b) ^ Math.imul(k1, 0xc2b2ae35) ^ Math.imul(k2, 0x27d4eb2f) ^ k3) | 0;
    for (let i = 0; i < 1024; i++) {
      x = (x + 0x6d2b79f5) | 0;
      let t = Math.imul(x ^ (x >>> 15), x | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      out[off + i] = (t ^ (t >>> 14)) >>> 0;
    }
  },
};

function generated(k: number[]): Buffer {
  const w = new Uint32Array(1024);
  hashGenerator.generate(k[0]!, k[1]!, k[2]!, k[3]!, w, 0);
  return Buffer.from(w.buffer);
}

interface Shadow {
  proc: Process;
  addr: number;
  bytes: Buffer;
}

function run(seed: number, ops: number): void {
  let k = new Kernel({ memoryMiB: 8, swapMiB: 4, blockMiB: 2, seed });
  let g = k.mem.store.registerGenerator(hashGenerator);
  const prng = new Prng(seed);
  let shadows: Shadow[] = [];
  let serial = 0;
  const log: string[] = [];

  const spawn = (): void => {
    const proc = k.spawn(`w${serial++}`);
    const addr = proc.mmap(PAGES * P);
    proc.madvise(addr, PAGES * P, 'MADV_MERGEABLE');
    shadows.push({ proc, addr, bytes: Buffer.alloc(PAGES * P) });
  };
  const verify = (): void => {
    for (const s of shadows) {
      const got = Buffer.from(s.proc.peekMem(s.addr, PAGES * P));
      if (!got.equals(s.bytes)) {
        let at = 0;
        while (got[at] === s.bytes[at]) at++;
        throw new Error(`${s.proc.name}: byte ${at} (page ${Math.floor(at / P)}) reads ${got[at]}, wrote ${s.bytes[at]}; last ops:\n${log.slice(-12).join('\n')}`);
      }
    }
    k.checkInvariants();
  };

  for (let i = 0; i < 3; i++) spawn();
  for (let op = 0; op < ops; op++) {
    const s = shadows[prng.int(0, shadows.length)]!;
    const page = prng.int(0, PAGES);
    const at = s.addr + page * P;
    const r = prng.int(0, 100);
    try {
      if (r < 25) {
        // A generated page, its key from a small set: many writers share each content.
        const key = [prng.int(0, 6), 7, prng.int(0, 2), 0];
        log.push(`${s.proc.name} page ${page} := source ${key.join(',')}`);
        s.proc.writeGeneratedPage(at, g, key[0]!, key[1]!, key[2]!, key[3]!);
        generated(key).copy(s.bytes, page * P);
      } else if (r < 40) {
        const v = prng.int(0, 3);
        log.push(`${s.proc.name} page ${page} := fill ${v}`);
        s.proc.memset(at, v, P);
        s.bytes.fill(v, page * P, (page + 1) * P);
      } else if (r < 60) {
        // A few bytes over whatever is there: the shared content gets a private copy.
        const off = prng.int(0, P - 8);
        const b = Buffer.from([prng.int(0, 256), prng.int(0, 256), prng.int(0, 256)]);
        log.push(`${s.proc.name} page ${page} +${off} := ${b.toString('hex')}`);
        s.proc.write(at + off, b);
        b.copy(s.bytes, page * P + off);
      } else if (r < 66) {
        log.push(`${s.proc.name} page ${page} := copy of another process's page`);
        const o = shadows[prng.int(0, shadows.length)]!;
        const src = prng.int(0, PAGES);
        const b = Buffer.from(o.proc.peekMem(o.addr + src * P, P));
        s.proc.write(at, b);
        b.copy(s.bytes, page * P);
      } else if (r < 72 && shadows.length < 6) {
        log.push(`fork ${s.proc.name}`);
        const child = s.proc.fork(`w${serial++}`);
        shadows.push({ proc: child, addr: s.addr, bytes: Buffer.from(s.bytes) });
      } else if (r < 76 && shadows.length > 2) {
        log.push(`exit ${s.proc.name}`);
        s.proc.exit();
        shadows = shadows.filter((x) => x !== s);
      } else if (r < 84) {
        log.push('ksmd: a full scan');
        k.sysfs.write('/sys/kernel/mm/ksm/run', '1');
        k.sysfs.write('/sys/kernel/mm/ksm/pages_to_scan', '1000');
        k.ksmd.runFullScans(1);
      } else if (r < 89) {
        log.push('reclaim 64');
        k.reclaim(64);
      } else if (r < 92) {
        const pfn = s.proc.pfnOf(at);
        log.push(`migrate ${s.proc.name} page ${page} (pfn ${pfn})`);
        if (pfn !== null && pfn !== k.mem.zeroPfn) k.migratePage(pfn);
      } else if (r < 94) {
        log.push('compact');
        k.compactMemory();
      } else if (r < 97) {
        const b = prng.int(1, 4);
        log.push(`offline block ${b}, online again`);
        k.sysfs.write(`/sys/devices/system/memory/memory${b}/state`, 'offline');
        k.sysfs.write(`/sys/devices/system/memory/memory${b}/state`, 'online');
      } else {
        log.push('snapshot round trip');
        const img = saveKernel(k);
        const r2 = restoreKernel(img);
        const procs = [...r2.processes.values()];
        shadows = shadows.map((x) => ({ ...x, proc: procs.find((p) => p.name === x.proc.name)! }));
        k = r2;
        g = k.mem.store.registerGenerator(hashGenerator);
      }
    } catch (e) {
      // Offlining a block something pins, or running out of memory and swap, fail
      // cleanly: the bytes written before stay written (verified below).
      if (!(e instanceof KernelError) || (e.code !== 'EBUSY' && e.code !== 'ENOMEM' && e.code !== 'EAGAIN' && e.code !== 'EINVAL')) throw e;
      log.push(`  -> ${e.code}`);
    }
    if (op % 40 === 39) verify();
  }
  verify();
  for (const s of shadows) s.proc.exit();
  k.sysfs.write('/sys/kernel/mm/ksm/run', '2');
  // Swap-cache pages outlive their last mapper until reclaim lets them go, as in Linux.
  reclaimAll(k);
  k.checkInvariants();
  const held: string[] = [];
  for (let pfn = 0; pfn < k.mem.nrFrames; pfn++) if (k.mem.content[pfn]! >= 256) held.push(k.mem.describe(pfn));
  for (let off = 1; off <= k.swap!.nrSlots; off++) if (k.swap!.content[off]! >= 256) held.push(`slot ${off} refs ${k.swap!.refs[off]} cache ${k.swap!.cache[off]}`);
  expect(held).toEqual([]);
  expect([k.mem.store.nrStored, k.mem.store.nrSourceLive, k.mem.store.storedBytes]).toEqual([0, 0, 0]);
  expect(k.swap!.usedSlots).toBe(0);
}

describe('the content store under many writers, KSM, swap, migration, hot-remove and snapshots', () => {
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: 600 operations, every byte as written`, () => run(seed, 600));
  }
});
