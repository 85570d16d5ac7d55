/**
 * The model side of the differential tests: runs a Scenario (scenario.ts) through
 * Samepage's public API and returns what each `settle` observed, in the form
 * runOnRealKernel() returns for the real kernel.
 *
 * It mirrors test/oracle/ksm-driver.c step by step, so that the two sides can only
 * differ where the kernels do:
 *  - Each process keeps its own region table (address, and per page: mapped, prot);
 *    `fork` gives the child a copy of the parent's table, as fork(2) gives the
 *    driver's child a copy of its memory. A region stays in the table after munmap,
 *    even of all its pages, and then digests to FNV's offset basis.
 *  - munmap clears a page's state (not mapped); mprotect keeps "mapped" and replaces
 *    the prot bits. Both are recorded only after the call succeeded.
 *  - fill/write refuse a page the table does not have mapped writable, as the driver
 *    does (it fails the scenario there rather than take SIGSEGV).
 *  - Digests read each mapped, readable page through the MMU with `read`: an
 *    untouched page faults in the zero page on both sides (no rmap_item), and
 *    PROT_NONE or unmapped pages are skipped (scenario.ts, "Digest rule").
 *  - `settle`: ksmd runs `scans` full scans (default 4) with pages_to_scan high and
 *    sleep_millisecs 0. Between steps no simulated time passes, so the model's ksmd
 *    runs only inside a settle; the real ksmd runs all the time. Scenarios must
 *    therefore converge to the same state whatever ksmd did between two steps.
 *    When ksmd has nothing left to scan, runFullScans returns early, as the real
 *    side stops waiting for full_scans and waits for the statistics to reach 0.
 *
 * kernel.checkInvariants() runs after every step.
 */
import { Kernel, PAGE_SIZE, type Process } from '../../src/index.js';
import {
  SCENARIO_PAGE_SIZE,
  fillPage,
  parseKsmStat,
  regionDigest,
  type KsmStats,
  type ModernStats,
  type Prot,
  type Scenario,
  type StageResult,
  type Step,
} from './scenario.js';

/** Per-page state bits of a region table, as ksm-driver.c's PG_*. */
const PG_MAPPED = 0x1;
const PG_READ = 0x2;
const PG_WRITE = 0x4;

const KSM = '/sys/kernel/mm/ksm';

/** A region as one process sees it: where its mmap put it, and each page's state. */
interface Region {
  addr: number;
  pages: number;
  st: Uint8Array;
}

interface ModelProc {
  proc: Process;
  /** Regions in order of first appearance in the scenario, as the driver digests them. */
  regions: Map<string, Region>;
}

function protBits(p: Prot): number {
  switch (p) {
    case 'none':
      return 0;
    case 'r':
      return PG_READ;
    case 'rw':
      return PG_READ | PG_WRITE;
    default: {
      const never: never = p;
      throw new Error(`bad prot ${String(never)}`);
    }
  }
}

export interface ModelOptions {
  /** Kernel size; small keeps checkInvariants() (a walk of every frame) cheap. */
  memoryMiB?: number;
  blockMiB?: number;
  seed?: number;
  /** The kernel version (default 2.6.33). 6.18 runs also report 6.x's statistics and every ksm_stat. */
  version?: '2.6.33' | '6.18';
  /** Knobs to write before ksmd starts (6.18's defaults are the profile's own), as real.ts sets them. */
  knobs?: ReadonlyArray<readonly [string, string]>;
}

/** Runs `s` through Samepage; one StageResult per `settle`, in order. */
export function runOnSamepage(s: Scenario, opts: ModelOptions = {}): StageResult[] {
  if (PAGE_SIZE !== SCENARIO_PAGE_SIZE) throw new Error(`PAGE_SIZE ${PAGE_SIZE} is not the scenario's ${SCENARIO_PAGE_SIZE}`);
  const version = opts.version ?? '2.6.33';
  const modern = version !== '2.6.33';
  const kernel = new Kernel({ memoryMiB: opts.memoryMiB ?? 32, swapMiB: 0, blockMiB: opts.blockMiB ?? 16, seed: opts.seed ?? 1, version });
  // Like real.ts configures the real KSM: the knobs, pages_to_scan high, no sleep
  // (ksmd's naps are simulated time: they change nothing here), running.
  for (const [knob, value] of opts.knobs ?? []) kernel.sysfs.write(`${KSM}/${knob}`, value);
  kernel.sysfs.write(`${KSM}/pages_to_scan`, modern ? '1000000' : '100000');
  kernel.sysfs.write(`${KSM}/sleep_millisecs`, '0');
  kernel.sysfs.write(`${KSM}/run`, '1');

  /** Live processes, in order of first appearance (the driver's slots). */
  const procs = new Map<string, ModelProc>();
  const results: StageResult[] = [];

  const live = (name: string, i: number): ModelProc => {
    const p = procs.get(name);
    if (p === undefined) throw new Error(`step ${i}: process '${name}' is not alive`);
    return p;
  };
  const region = (p: ModelProc, name: string, first: number, count: number, i: number): Region => {
    const g = p.regions.get(name);
    if (g === undefined) throw new Error(`step ${i}: process has no region '${name}'`);
    if (!Number.isInteger(first) || !Number.isInteger(count) || first < 0 || count < 0 || first + count > g.pages) {
      throw new Error(`step ${i}: pages ${first}+${count} outside region '${name}' of ${g.pages} pages`);
    }
    return g;
  };
  const allPages = (g: Region, first: number, count: number, need: number): boolean => {
    for (let j = first; j < first + count; j++) if ((g.st[j]! & need) !== need) return false;
    return true;
  };

  s.steps.forEach((st: Step, i) => {
    try {
      runStep(st, i);
    } catch (e) {
      throw new Error(`model, scenario '${s.name}', step ${i} (${st.op}): ${(e as Error).message}`, { cause: e });
    }
    kernel.checkInvariants();
  });
  return results;

  function runStep(st: Step, i: number): void {
    switch (st.op) {
      case 'spawn': {
        if (procs.has(st.proc)) throw new Error(`process ${st.proc} already exists`);
        procs.set(st.proc, { proc: kernel.spawn(st.proc), regions: new Map() });
        return;
      }
      case 'mmap': {
        const p = live(st.proc, i);
        if (p.regions.has(st.region)) throw new Error(`region ${st.region} already exists in this process`);
        const prot = st.prot ?? 'rw';
        const addr = p.proc.mmap(st.pages * PAGE_SIZE, { prot });
        p.regions.set(st.region, { addr, pages: st.pages, st: new Uint8Array(st.pages).fill(PG_MAPPED | protBits(prot)) });
        return;
      }
      case 'munmap': {
        const p = live(st.proc, i);
        const g = region(p, st.region, st.first, st.count, i);
        p.proc.munmap(g.addr + st.first * PAGE_SIZE, st.count * PAGE_SIZE);
        g.st.fill(0, st.first, st.first + st.count);
        return;
      }
      case 'fill': {
        const p = live(st.proc, i);
        const g = region(p, st.region, st.first, st.count, i);
        if (!allPages(g, st.first, st.count, PG_MAPPED | PG_WRITE)) throw new Error('fill of a page that is not mapped writable (EFAULT)');
        const buf = new Uint8Array(st.count * PAGE_SIZE);
        for (let j = 0; j < st.count; j++) fillPage(buf, j * PAGE_SIZE, st.first + j, st.byte, st.tag, st.tailTag);
        p.proc.write(g.addr + st.first * PAGE_SIZE, buf);
        return;
      }
      case 'write': {
        const p = live(st.proc, i);
        const g = p.regions.get(st.region);
        if (g === undefined) throw new Error(`process has no region '${st.region}'`);
        const n = st.bytes.length;
        if (st.offset < 0 || st.offset + n > g.pages * PAGE_SIZE) throw new Error('write outside the region');
        if (n > 0) {
          const first = Math.floor(st.offset / PAGE_SIZE);
          const last = Math.floor((st.offset + n - 1) / PAGE_SIZE);
          if (!allPages(g, first, last - first + 1, PG_MAPPED | PG_WRITE)) throw new Error('write to a page that is not mapped writable (EFAULT)');
          p.proc.write(g.addr + st.offset, Uint8Array.from(st.bytes));
        }
        return;
      }
      case 'madvise': {
        const p = live(st.proc, i);
        const g = region(p, st.region, st.first, st.count, i);
        p.proc.madvise(g.addr + st.first * PAGE_SIZE, st.count * PAGE_SIZE, st.advice);
        return;
      }
      case 'mprotect': {
        const p = live(st.proc, i);
        const g = region(p, st.region, st.first, st.count, i);
        p.proc.mprotect(g.addr + st.first * PAGE_SIZE, st.count * PAGE_SIZE, st.prot);
        const bits = protBits(st.prot);
        for (let j = st.first; j < st.first + st.count; j++) g.st[j] = (g.st[j]! & PG_MAPPED) | bits;
        return;
      }
      case 'fork': {
        const p = live(st.proc, i);
        if (procs.has(st.child)) throw new Error(`process ${st.child} already exists`);
        const regions = new Map<string, Region>();
        for (const [name, g] of p.regions) regions.set(name, { addr: g.addr, pages: g.pages, st: g.st.slice() });
        procs.set(st.child, { proc: p.proc.fork(st.child), regions });
        return;
      }
      case 'exit': {
        live(st.proc, i).proc.exit();
        procs.delete(st.proc);
        return;
      }
      case 'settle': {
        kernel.ksmd.runFullScans(st.scans ?? 4);
        const r: StageResult = { stats: readStats(), digests: digests() };
        if (modern) {
          r.modern = readModern();
          r.procs = {};
          for (const [name, p] of procs) r.procs[name] = parseKsmStat(kernel.sysfs.read(`/proc/${p.proc.pid}/ksm_stat`));
        }
        results.push(r);
        return;
      }
      case 'prctl': {
        const p = live(st.proc, i);
        p.proc.prctl('PR_SET_MEMORY_MERGE', st.on ? 1 : 0);
        return;
      }
      default: {
        const never: never = st;
        throw new Error(`unknown step ${JSON.stringify(never)}`);
      }
    }
  }

  function readStats(): KsmStats {
    const n = (f: string): number => Number(kernel.sysfs.read(`${KSM}/${f}`).trim());
    return {
      pages_shared: n('pages_shared'),
      pages_sharing: n('pages_sharing'),
      pages_unshared: n('pages_unshared'),
      pages_volatile: n('pages_volatile'),
    };
  }

  function readModern(): ModernStats {
    const n = (f: string): number => Number(kernel.sysfs.read(`${KSM}/${f}`).trim());
    return {
      ksm_zero_pages: n('ksm_zero_pages'),
      stable_node_chains: n('stable_node_chains'),
      stable_node_dups: n('stable_node_dups'),
      pages_scanned: n('pages_scanned'),
      pages_skipped: n('pages_skipped'),
      general_profit: n('general_profit'),
    };
  }

  function digests(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [pname, p] of procs) {
      for (const [rname, g] of p.regions) {
        const pages: (Uint8Array | null)[] = [];
        for (let j = 0; j < g.pages; j++) {
          const readable = (g.st[j]! & (PG_MAPPED | PG_READ)) === (PG_MAPPED | PG_READ);
          pages.push(readable ? p.proc.read(g.addr + j * PAGE_SIZE, PAGE_SIZE) : null);
        }
        out[`${pname}/${rname}`] = regionDigest(pages);
      }
    }
    return out;
  }
}
