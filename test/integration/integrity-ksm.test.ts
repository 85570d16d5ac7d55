/**
 * Randomised integrity test of KSM inside the host kernel: merging and unmerging
 * (MADV_MERGEABLE / MADV_UNMERGEABLE, ksmd scanning through runFullScans and
 * advance, run=2), with writes, fork, exit, munmap, MADV_DONTNEED, pins, reclaim to
 * swap and swap-in, migration of random frames, compaction, and offlining and
 * onlining memory blocks — all of it on memory where most pages have one of a few
 * contents, so that KSM pages are everywhere: shared by many processes, forked
 * since ksmd passed, swapped out and read back, moved.
 *
 * The oracle is a shadow of every process's memory: its areas (start, end) and what
 * it wrote to each page (missing: zeros). fork copies the shadow; munmap and
 * MADV_DONTNEED drop its pages; nothing else changes what a process reads. Pages are
 * compared through the MMU after every write and on a sample after every operation
 * that moves pages (reclaim, migration, compaction, offline, ksmd); every 150
 * operations all memory of all processes is compared; checkInvariants() runs every
 * 25 operations (it checks every frame's counts, the swap map, both KSM trees and
 * every KSM statistic against a recount).
 *
 * Outcomes are predicted: migrating a free, offline or reserved frame is EINVAL, a
 * pinned one EAGAIN, and so is a KSM page with a pte no rmap walk reaches yet (see
 * reachablePtes); anything else in use succeeds and the mapping follows it;
 * offlining may be refused with EBUSY (a pinned page in the block), nothing else.
 * At the end every process exits, every pin is released, every block comes back
 * online, reclaim empties the swap cache, ksmd lets go of the exited mms: then every
 * frame but the zero page and every swap slot is free, and KSM counts nothing.
 */
import { describe, expect, it } from 'vitest';
import { Kernel, KernelError, PAGE_SIZE, type Pin, type Process } from '../../src/index.js';
import { Prng } from '../../src/lib/prng.js';
import { PG_BUDDY, PG_OFFLINE, PG_RESERVED, PTE_KIND_MASK, PTE_PRESENT, ptePayload } from '../../src/mm/constants.js';
import { SWAP_AGAIN } from '../../src/mm/rmap.js';
import { rmapWalk } from '../../src/mm/rmap.js';
import { pattern } from '../mm/helpers.js';

const P = PAGE_SIZE;
const ZEROS = new Uint8Array(P);
const KSM = '/sys/kernel/mm/ksm';
const MEM = '/sys/devices/system/memory';

interface Region {
  start: number;
  end: number;
}

interface Shadow {
  proc: Process;
  regions: Region[]; // sorted, non-overlapping
  /** Page address → contents. Arrays are never modified once stored: fork shares them. */
  pages: Map<number, Uint8Array>;
}

interface Config {
  seed: number;
  ops: number;
  maxProcs: number;
  maxRegions: number;
  maxRegionPages: number;
  maxPins: number;
  /** Distinct page contents most writes choose from. */
  palette: number;
}

interface Result {
  ops: number;
  pagesCompared: number;
  mismatches: string[];
  forks: number;
  exits: number;
  migrations: number;
  migrationsRefused: number;
  compactions: number;
  offlines: number;
  offlinesRefused: number;
  onlines: number;
  maxSharing: number;
  unmergeAll: number;
}

class KsmIntegrityRun {
  readonly k: Kernel;
  readonly rng: Prng;
  readonly procs: Shadow[] = [];
  readonly pins: Pin[] = [];
  readonly log: string[] = [];
  readonly palette: Uint8Array[];
  readonly res: Result = {
    ops: 0,
    pagesCompared: 0,
    mismatches: [],
    forks: 0,
    exits: 0,
    migrations: 0,
    migrationsRefused: 0,
    compactions: 0,
    offlines: 0,
    offlinesRefused: 0,
    onlines: 0,
    maxSharing: 0,
    unmergeAll: 0,
  };
  private nextName = 1;

  constructor(readonly cfg: Config) {
    // 4 MiB of RAM in four 1 MiB blocks (1024 frames), 16 MiB of swap: the
    // processes' pages together often exceed RAM, so reclaim also runs by itself.
    this.k = new Kernel({ memoryMiB: 4, blockMiB: 1, swapMiB: 16, seed: cfg.seed });
    this.rng = new Prng(cfg.seed);
    this.palette = Array.from({ length: cfg.palette }, (_, i) => pattern(i));
    this.k.sysfs.write(`${KSM}/pages_to_scan`, '200');
    this.k.sysfs.write(`${KSM}/sleep_millisecs`, '10');
    this.k.sysfs.write(`${KSM}/run`, '1');
  }

  // ---- the shadow ------------------------------------------------------------------------

  regionAt(sh: Shadow, addr: number): Region | null {
    for (const r of sh.regions) if (addr >= r.start && addr < r.end) return r;
    return null;
  }

  expected(sh: Shadow, pageAddr: number): Uint8Array {
    return sh.pages.get(pageAddr) ?? ZEROS;
  }

  /** Drop [start, end) from the shadow: areas split, pages forgotten. */
  removeRange(sh: Shadow, start: number, end: number, unmap: boolean): void {
    if (unmap) {
      const out: Region[] = [];
      for (const r of sh.regions) {
        if (r.end <= start || r.start >= end) out.push(r);
        else {
          if (r.start < start) out.push({ start: r.start, end: start });
          if (r.end > end) out.push({ start: end, end: r.end });
        }
      }
      sh.regions = out;
    }
    for (let a = start; a < end; a += P) sh.pages.delete(a);
  }

  /** A random run of pages inside one area of sh: [start, end). */
  pickRange(sh: Shadow, maxPages: number): { start: number; end: number } | null {
    if (sh.regions.length === 0) return null;
    const r = this.rng.pick(sh.regions);
    const pages = (r.end - r.start) / P;
    const first = this.rng.int(0, pages);
    const n = this.rng.int(1, Math.min(maxPages, pages - first) + 1);
    return { start: r.start + first * P, end: r.start + (first + n) * P };
  }

  randomPage(sh: Shadow): number | null {
    const range = this.pickRange(sh, 1);
    return range === null ? null : range.start;
  }

  // ---- checking ----------------------------------------------------------------------------

  fail(msg: string): never {
    throw new Error(`seed ${this.cfg.seed}, op ${this.res.ops}: ${msg}\nlast operations:\n  ${this.log.slice(-30).join('\n  ')}`);
  }

  comparePage(sh: Shadow, pageAddr: number): void {
    const got = sh.proc.read(pageAddr, P);
    const want = this.expected(sh, pageAddr);
    this.res.pagesCompared++;
    if (Buffer.compare(got, want) !== 0) {
      let at = 0;
      while (got[at] === want[at]) at++;
      const msg = `${sh.proc.name} page 0x${pageAddr.toString(16)}: byte ${at} is ${got[at]}, shadow has ${want[at]} (pfn ${sh.proc.pfnOf(pageAddr)})`;
      this.res.mismatches.push(msg);
      if (this.res.mismatches.length === 1) this.log.push(`MISMATCH ${msg}`);
    }
  }

  compareRange(sh: Shadow, start: number, end: number): void {
    for (let a = start; a < end; a += P) this.comparePage(sh, a);
  }

  compareAll(): void {
    for (const sh of this.procs) for (const r of sh.regions) this.compareRange(sh, r.start, r.end);
  }

  /** A few random pages of random processes: after anything that moves pages around. */
  compareSample(n: number): void {
    for (let i = 0; i < n && this.procs.length > 0; i++) {
      const sh = this.rng.pick(this.procs);
      const a = this.randomPage(sh);
      if (a !== null) this.comparePage(sh, a);
    }
  }

  /** Call fn, which must succeed or fail with one of `allowed`; returns the code or null. */
  outcome(what: string, allowed: readonly string[], fn: () => void): string | null {
    try {
      fn();
      return null;
    } catch (e) {
      if (!(e instanceof KernelError)) throw e;
      if (!allowed.includes(e.code)) this.fail(`${what}: unexpected ${e.code}: ${e.message}`);
      return e.code;
    }
  }

  // ---- operations ---------------------------------------------------------------------------

  spawn(): void {
    const proc = this.k.spawn(`p${this.nextName++}`);
    this.procs.push({ proc, regions: [], pages: new Map() });
    this.log.push(`spawn ${proc.name}`);
  }

  opMmap(sh: Shadow): void {
    if (sh.regions.length >= this.cfg.maxRegions) return;
    const pages = this.rng.int(1, this.cfg.maxRegionPages + 1);
    const start = sh.proc.mmap(pages * P, { prot: 'rw' });
    sh.regions.push({ start, end: start + pages * P });
    sh.regions.sort((x, y) => x.start - y.start);
    const mergeable = this.rng.int(0, 10) < 8;
    if (mergeable) sh.proc.madvise(start, pages * P, 'MADV_MERGEABLE');
    this.log.push(`${sh.proc.name} mmap ${pages} pages at 0x${start.toString(16)}${mergeable ? ' mergeable' : ''}`);
    // Usually filled at once, like a guest's RAM after boot.
    if (this.rng.int(0, 10) < 7) this.writeRange(sh, start, start + pages * P);
  }

  /** Write [start, end) page by page: mostly a palette page, sometimes a few bytes. */
  writeRange(sh: Shadow, start: number, end: number): void {
    for (let a = start; a < end; a += P) {
      if (this.rng.int(0, 10) < 8) {
        const tag = this.rng.int(0, this.palette.length);
        sh.proc.write(a, this.palette[tag]!);
        sh.pages.set(a, this.palette[tag]!);
      } else {
        const off = this.rng.int(0, P);
        const len = this.rng.int(1, Math.min(64, P - off) + 1);
        const bytes = new Uint8Array(len);
        for (let i = 0; i < len; i++) bytes[i] = this.rng.int(0, 256);
        sh.proc.write(a + off, bytes);
        const page = new Uint8Array(this.expected(sh, a));
        page.set(bytes, off);
        sh.pages.set(a, page);
      }
    }
    this.compareRange(sh, start, end);
  }

  opWrite(sh: Shadow): void {
    const r = this.pickRange(sh, 16);
    if (r === null) return;
    this.log.push(`${sh.proc.name} write ${(r.end - r.start) / P} pages at 0x${r.start.toString(16)}`);
    this.writeRange(sh, r.start, r.end);
  }

  opRead(sh: Shadow): void {
    const r = this.pickRange(sh, 32);
    if (r === null) return;
    this.log.push(`${sh.proc.name} read 0x${r.start.toString(16)}-0x${r.end.toString(16)}`);
    this.compareRange(sh, r.start, r.end);
  }

  opMadvise(sh: Shadow): void {
    const r = this.pickRange(sh, 64);
    if (r === null) return;
    const advice = this.rng.pick(['MADV_MERGEABLE', 'MADV_MERGEABLE', 'MADV_UNMERGEABLE', 'MADV_DONTNEED'] as const);
    this.log.push(`${sh.proc.name} madvise ${advice} 0x${r.start.toString(16)}-0x${r.end.toString(16)}`);
    // MADV_UNMERGEABLE reports running out of memory while breaking COW as EAGAIN.
    this.outcome(`madvise ${advice}`, advice === 'MADV_UNMERGEABLE' ? ['EAGAIN'] : [], () => sh.proc.madvise(r.start, r.end - r.start, advice));
    if (advice === 'MADV_DONTNEED') this.removeRange(sh, r.start, r.end, false);
    this.compareRange(sh, r.start, r.end);
  }

  opMunmap(sh: Shadow): void {
    const r = this.pickRange(sh, 64);
    if (r === null) return;
    this.log.push(`${sh.proc.name} munmap 0x${r.start.toString(16)}-0x${r.end.toString(16)}`);
    sh.proc.munmap(r.start, r.end - r.start);
    this.removeRange(sh, r.start, r.end, true);
  }

  opFork(sh: Shadow): void {
    if (this.procs.length >= this.cfg.maxProcs) return;
    const child = sh.proc.fork(`p${this.nextName++}`);
    this.procs.push({ proc: child, regions: sh.regions.map((r) => ({ ...r })), pages: new Map(sh.pages) });
    this.res.forks++;
    this.log.push(`${sh.proc.name} fork → ${child.name}`);
  }

  opExit(sh: Shadow): void {
    this.log.push(`${sh.proc.name} exit`);
    sh.proc.exit();
    this.procs.splice(this.procs.indexOf(sh), 1);
    this.res.exits++;
    if (this.procs.length === 0) this.spawn();
  }

  opPin(sh: Shadow): void {
    if (this.pins.length >= this.cfg.maxPins || this.rng.int(0, 2) === 0) {
      if (this.pins.length === 0) return;
      const i = this.rng.int(0, this.pins.length);
      this.log.push(`release pin of pfn ${this.pins[i]!.pfn}`);
      this.pins[i]!.release();
      this.pins.splice(i, 1);
      return;
    }
    const a = this.randomPage(sh);
    if (a === null) return;
    const write = this.rng.int(0, 2) === 0;
    const pin = sh.proc.pin(a, { write });
    this.pins.push(pin);
    this.log.push(`${sh.proc.name} pin 0x${a.toString(16)}${write ? ' for write' : ''} → pfn ${pin.pfn}`);
    this.comparePage(sh, a);
  }

  opKsmd(): void {
    if (this.rng.int(0, 3) === 0) {
      const ms = this.rng.int(1, 200);
      this.log.push(`advance ${ms} ms`);
      this.k.advance(ms);
    } else {
      this.log.push('runFullScans(1)');
      this.k.ksmd.runFullScans(1);
    }
    const sharing = Number(this.k.sysfs.read(`${KSM}/pages_sharing`));
    if (sharing > this.res.maxSharing) this.res.maxSharing = sharing;
    this.compareSample(8);
  }

  opUnmergeAll(): void {
    this.log.push('run=2, run=1');
    this.k.sysfs.write(`${KSM}/run`, '2');
    if (this.k.sysfs.read(`${KSM}/pages_shared`) !== '0\n') this.fail('run=2 left KSM pages');
    this.k.sysfs.write(`${KSM}/run`, '1');
    this.res.unmergeAll++;
    this.compareSample(8);
  }

  opReclaim(): void {
    const n = this.rng.int(1, 128);
    const freed = this.k.reclaim(n);
    this.log.push(`reclaim(${n}) → ${freed}`);
    if (freed < 0 || freed > n) this.fail(`reclaim(${n}) returned ${freed}`);
    this.compareSample(8);
  }

  /** Migrate a frame: mostly one a process maps, sometimes any frame at all. */
  opMigrate(): void {
    const mem = this.k.mem;
    let pfn: number;
    let sh: Shadow | null = null;
    let addr = -1;
    if (this.rng.int(0, 10) > 0 && this.procs.length > 0) {
      sh = this.rng.pick(this.procs);
      const a = this.randomPage(sh);
      if (a === null) return;
      const f = sh.proc.pfnOf(a);
      if (f === null) return;
      pfn = f;
      addr = a;
    } else {
      pfn = this.rng.int(0, mem.nrFrames);
    }
    const f = mem.flags[pfn]!;
    const expect =
      (f & (PG_BUDDY | PG_OFFLINE | PG_RESERVED)) !== 0 ? 'EINVAL' : this.k.isPinned(pfn) || this.reachablePtes(pfn) < mem.pageMapcount(pfn) ? 'EAGAIN' : null;
    let newPfn = -1;
    const got = this.outcome(`migratePage(${pfn})`, ['EINVAL', 'EAGAIN'], () => {
      newPfn = this.k.migratePage(pfn);
    });
    this.log.push(`migratePage(${pfn}) → ${got ?? newPfn}`);
    if (got !== expect) this.fail(`migratePage(${pfn}) (${mem.describe(pfn)}): expected ${expect ?? 'success'}, got ${got ?? 'success'}`);
    if (got === null) {
      this.res.migrations++;
      if (sh !== null && sh.proc.pfnOf(addr) !== newPfn) this.fail(`after migrating ${pfn} → ${newPfn}, ${sh.proc.name} maps ${sh.proc.pfnOf(addr)}`);
      if (sh !== null) this.comparePage(sh, addr);
    } else {
      this.res.migrationsRefused++;
    }
    this.compareSample(4);
  }

  /**
   * How many distinct ptes mapping pfn the rmap walk reaches. Fewer than the page's
   * mapcount when a KSM page was faulted back from the swap cache by a process that
   * has no rmap_item for it yet (ksmd dropped it while the pte was a swap entry):
   * as in Linux, nothing reaches that pte until ksmd next scans it, so migration
   * fails with EAGAIN.
   */
  reachablePtes(pfn: number): number {
    const seen = new Set<string>();
    rmapWalk(this.k, pfn, {
      rmapOne: (p, vma, addr) => {
        const pte = vma.mm.getPte(addr);
        if ((pte & PTE_KIND_MASK) === PTE_PRESENT && ptePayload(pte) === p) seen.add(`${vma.mm.id}:${addr}`);
        return SWAP_AGAIN;
      },
      done: () => false,
    });
    return seen.size;
  }

  opCompact(): void {
    this.log.push('compact_memory');
    this.k.sysfs.write('/proc/sys/vm/compact_memory', '1');
    this.res.compactions++;
    this.compareSample(8);
  }

  opHotplug(): void {
    const b = this.rng.int(1, this.k.mem.blocks.length);
    const path = `${MEM}/memory${b}/state`;
    if (this.k.sysfs.read(path) === 'online\n') {
      const got = this.outcome(`offline memory${b}`, ['EBUSY'], () => this.k.sysfs.write(path, 'offline'));
      this.log.push(`offline memory${b} → ${got ?? 'ok'}`);
      if (got === null) this.res.offlines++;
      else this.res.offlinesRefused++;
      const want = got === null ? 'offline\n' : 'online\n';
      if (this.k.sysfs.read(path) !== want) this.fail(`memory${b} reads ${this.k.sysfs.read(path)} after offline → ${got ?? 'ok'}`);
    } else {
      this.k.sysfs.write(path, 'online');
      this.log.push(`online memory${b}`);
      this.res.onlines++;
    }
    this.compareSample(8);
  }

  step(): void {
    const sh = this.rng.pick(this.procs);
    const r = this.rng.int(0, 100);
    if (r < 8) this.opMmap(sh);
    else if (r < 30) this.opWrite(sh);
    else if (r < 38) this.opRead(sh);
    else if (r < 46) this.opMadvise(sh);
    else if (r < 50) this.opMunmap(sh);
    else if (r < 54) this.opFork(sh);
    else if (r < 57) this.opExit(sh);
    else if (r < 59) this.spawn();
    else if (r < 62) this.opPin(sh);
    else if (r < 74) this.opKsmd();
    else if (r < 75) this.opUnmergeAll();
    else if (r < 82) this.opReclaim();
    else if (r < 92) this.opMigrate();
    else if (r < 94) this.opCompact();
    else this.opHotplug();
  }

  run(): Result {
    for (let i = 0; i < 3; i++) this.spawn();
    for (let op = 0; op < this.cfg.ops; op++) {
      this.res.ops = op;
      this.step();
      if (this.log.length > 200) this.log.splice(0, 100);
      if (op % 25 === 24) {
        try {
          this.k.checkInvariants();
        } catch (e) {
          this.fail(`checkInvariants: ${(e as Error).message}`);
        }
      }
      if (op % 150 === 149) this.compareAll();
      if (this.res.mismatches.length > 0) this.fail(this.res.mismatches[0]!);
    }
    this.compareAll();
    this.k.checkInvariants();
    this.teardown();
    return this.res;
  }

  teardown(): void {
    const k = this.k;
    for (const sh of [...this.procs]) sh.proc.exit();
    this.procs.length = 0;
    for (const pin of this.pins) pin.release();
    this.pins.length = 0;
    for (const block of k.mem.blocks) {
      const path = `${MEM}/memory${block.index}/state`;
      if (k.sysfs.read(path) === 'offline\n') k.sysfs.write(path, 'online');
    }
    // Pages that KSM took the place of may still sit, unmapped, in the swap cache;
    // reclaim drops them. ksmd lets go of the exited mms.
    while (k.reclaim(1024) > 0);
    k.ksmd.runFullScans(1);
    k.checkInvariants();
  }
}

describe('KSM integrity with swap, migration, compaction and hot-remove, against a shadow of every process', () => {
  // What each seed's run did: the most pages_sharing seen, forks, exits, migrations
  // asked for and pages migrated (those and compaction's and offlining's), compactions,
  // offlines, run=2 unmerges, pages compared, pages swapped out and in, and swap-ins
  // copied for a KSM page's other mappers (ksm_swpin_copy).
  it.each([
    { seed: 1, did: { maxSharing: 258, forks: 45, exits: 146, migrations: 141, migrated: 2684, compactions: 94, offlines: 143, unmergeAll: 54, pagesCompared: 32_767, pswpout: 5082, pswpin: 9777, swpinCopies: 3578 } },
    { seed: 2, did: { maxSharing: 237, forks: 52, exits: 156, migrations: 124, migrated: 2929, compactions: 96, offlines: 161, unmergeAll: 39, pagesCompared: 29_284, pswpout: 5079, pswpin: 9118, swpinCopies: 2873 } },
    { seed: 3, did: { maxSharing: 276, forks: 29, exits: 137, migrations: 150, migrated: 3046, compactions: 89, offlines: 151, unmergeAll: 41, pagesCompared: 33_412, pswpout: 5910, pswpin: 10_493, swpinCopies: 4065 } },
  ])('seed $seed: 5000 random operations; every byte as the shadow says; every frame and swap slot free at the end', ({ seed, did }) => {
    const run = new KsmIntegrityRun({ seed, ops: 5000, maxProcs: 6, maxRegions: 4, maxRegionPages: 48, maxPins: 4, palette: 12 });
    const res = run.run();
    expect(res.mismatches).toEqual([]);
    const k = run.k;
    const vm = k.vmstat;
    expect({
      maxSharing: res.maxSharing,
      forks: res.forks,
      exits: res.exits,
      migrations: res.migrations,
      migrated: vm.pgmigrate_success,
      compactions: res.compactions,
      offlines: res.offlines,
      unmergeAll: res.unmergeAll,
      pagesCompared: res.pagesCompared,
      pswpout: vm.pswpout,
      pswpin: vm.pswpin,
      swpinCopies: vm.ksm_swpin_copy,
    }).toEqual(did);
    // Everything is free again.
    expect(k.processes.size).toBe(0);
    expect(k.mem.nrFreeOnline).toBe(k.mem.nrFrames - 1);
    expect(k.swap!.usedSlots).toBe(0);
    expect(['pages_shared', 'pages_sharing', 'pages_unshared', 'pages_volatile'].map((f) => k.sysfs.read(`${KSM}/${f}`))).toEqual(['0\n', '0\n', '0\n', '0\n']);
  });
});
