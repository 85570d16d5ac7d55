/**
 * Argument abuse, generated: every public method of Kernel, Process, Host and Guest
 * is called with one argument replaced by each bad value of its kind (NaN, ±Infinity,
 * fractions, negatives, 2^53 and 2^64, strings for numbers, null, undefined, a Symbol,
 * a BigInt, an object whose toString throws, a function, arrays...), the others valid.
 *
 * Each case must throw KernelError with the code its kind names, nothing else: not a
 * TypeError, not silence, not a hang. After every case the kernel's deep invariant
 * check passes and every byte of every process's memory equals its shadow copy; a
 * Host must still save a snapshot that restores.
 *
 * The harness is generic: the API tables below say which kind each argument is, and
 * a completeness check fails when a class grows a public method the tables do not
 * name, so new API joins by a line of data, not new harness code.
 */
import { describe, expect, it } from 'vitest';
import { Guest, Host, Kernel, KernelError, PAGE_SIZE, loadImageCatalog, type Process } from '../../src/index.js';
import { HostKernel } from '../../src/mm/kernel.js';
import { Process as ProcessClass } from '../../src/mm/process.js';
import { PROFILE_6_18, type KnobSpec } from '../../src/ksm/profile.js';
import { kstrtobool, kstrtoint, kstrtouint, kstrtoull, sysfsStreq, type KstrtoxResult } from '../../src/lib/kstrtox.js';

const images = loadImageCatalog(new URL('../vmm/fixtures', import.meta.url).pathname);

/** An object whose conversion to a string or number throws: what a careless formatter trips on. */
const HOSTILE = {
  toString(): string {
    throw new Error('toString of a hostile object');
  },
  valueOf(): number {
    throw new Error('valueOf of a hostile object');
  },
};

type Bad = readonly [label: string, value: unknown, code: string];

/** Values no number argument accepts, with EINVAL. */
const NOT_NUMBERS: Bad[] = [
  ['NaN', Number.NaN, 'EINVAL'],
  ['Infinity', Infinity, 'EINVAL'],
  ['-Infinity', -Infinity, 'EINVAL'],
  ['1.5', 1.5, 'EINVAL'],
  ["'4096'", '4096', 'EINVAL'],
  ['null', null, 'EINVAL'],
  ['undefined', undefined, 'EINVAL'],
  ['Symbol', Symbol('s'), 'EINVAL'],
  ['4096n', 4096n, 'EINVAL'],
  ['hostile object', HOSTILE, 'EINVAL'],
  ['{}', {}, 'EINVAL'],
  ['[4096]', [4096], 'EINVAL'],
  ['a function', () => 4096, 'EINVAL'],
];
const withCode = (list: Bad[], code: string): Bad[] => list.map(([l, v]) => [l, v, code] as const);

/** Argument kinds: a valid value in context, and the bad values with the code each must give. */
interface Ctx {
  /** A mapped, writable, mergeable area of 16 pages. */
  area: number;
  pid: number;
  pfn: number;
  nrFrames: number;
  /** The first process, alive. */
  proc: Process;
  /** A page generator registered with the kernel's content store. */
  generator: number;
}
interface Kind {
  valid: (c: Ctx) => unknown;
  bad: Bad[];
}

const KINDS: Record<string, Kind> = {
  // munmap/mprotect/madvise's start: page aligned (EINVAL).
  rangeStart: { valid: (c) => c.area, bad: [...NOT_NUMBERS, ['-4096', -4096, 'EINVAL'], ['unaligned', 4097, 'EINVAL'], ['2^53', 2 ** 53, 'EINVAL'], ['2^64', 2 ** 64, 'EINVAL']] },
  rangeLen: { valid: () => PAGE_SIZE, bad: [...NOT_NUMBERS, ['-1', -1, 'EINVAL'], ['2^53', 2 ** 53, 'EINVAL'], ['2^64', 2 ** 64, 'EINVAL']] },
  // mlock/munlock round the start down: only non-addresses are refused.
  lockStart: { valid: (c) => c.area, bad: [...NOT_NUMBERS, ['-4096', -4096, 'EINVAL'], ['2^64', 2 ** 64, 'EINVAL']] },
  lockLen: { valid: () => PAGE_SIZE, bad: [...NOT_NUMBERS, ['-1', -1, 'EINVAL'], ['2^53', 2 ** 53, 'EINVAL']] },
  mmapLen: { valid: () => PAGE_SIZE, bad: [...NOT_NUMBERS, ['0', 0, 'EINVAL'], ['-1', -1, 'EINVAL'], ['2^53', 2 ** 53, 'EINVAL'], ['2^50 (beyond the address space)', 2 ** 50, 'ENOMEM']] },
  mmapOpts: {
    valid: () => ({ prot: 'rw' }),
    bad: [
      ['null', null, 'EINVAL'],
      ['5', 5, 'EINVAL'],
      ["'rw'", 'rw', 'EINVAL'],
      ['{ prot: 7 }', { prot: 7 }, 'EINVAL'],
      ["{ prot: 'rwx' }", { prot: 'rwx' }, 'EINVAL'],
      ["{ shared: 'yes' }", { shared: 'yes' }, 'EINVAL'],
      ["{ special: 'io' }", { special: 'io' }, 'EINVAL'],
      ["{ special: ['toString'] }", { special: ['toString'] }, 'EINVAL'],
      ['{ bogus: 1 }', { bogus: 1 }, 'EINVAL'],
      ['{ prot: Symbol }', { prot: Symbol('p') }, 'EINVAL'],
    ],
  },
  prot: { valid: () => 'r', bad: [['7', 7, 'EINVAL'], ["'rwx'", 'rwx', 'EINVAL'], ['null', null, 'EINVAL'], ['Symbol', Symbol('p'), 'EINVAL'], ['hostile object', HOSTILE, 'EINVAL']] },
  advice: { valid: () => 'MADV_NORMAL', bad: [['12', 12, 'EINVAL'], ["'MADV_BOGUS'", 'MADV_BOGUS', 'EINVAL'], ['null', null, 'EINVAL'], ['Symbol', Symbol('a'), 'EINVAL'], ['hostile object', HOSTILE, 'EINVAL']] },
  name: { valid: () => 'child', bad: [['5', 5, 'EINVAL'], ['null', null, 'EINVAL'], ['Symbol', Symbol('n'), 'EINVAL'], ['hostile object', HOSTILE, 'EINVAL'], ['a long string', 'x'.repeat(5000), 'EINVAL']] },
  // Pointers into the address space: EFAULT when they are not one.
  accessAddr: { valid: (c) => c.area, bad: [...withCode(NOT_NUMBERS, 'EFAULT'), ['-1', -1, 'EFAULT'], ['0 (unmapped)', 0, 'EFAULT'], ['2^53', 2 ** 53, 'EFAULT'], ['2^64', 2 ** 64, 'EFAULT']] },
  // Counts: EINVAL when not one; a negative size_t runs off the address space (EFAULT).
  accessLen: { valid: () => 8, bad: [...NOT_NUMBERS, ['-1', -1, 'EFAULT'], ['2^40 (beyond MAX_RW_COUNT)', 2 ** 40, 'EINVAL'], ['17 pages (past the area)', 17 * PAGE_SIZE, 'EFAULT']] },
  bytes: {
    valid: () => Uint8Array.of(1),
    bad: [['null', null, 'EINVAL'], ['undefined', undefined, 'EINVAL'], ["'abc'", 'abc', 'EINVAL'], ['[1, 2, 3]', [1, 2, 3], 'EINVAL'], ['an ArrayBuffer', new ArrayBuffer(4), 'EINVAL'], ['5', 5, 'EINVAL'], ['Symbol', Symbol('b'), 'EINVAL'], ['hostile object', HOSTILE, 'EINVAL']],
  },
  byteValue: { valid: () => 0x61, bad: [...NOT_NUMBERS, ['2^40', 2 ** 40, 'EINVAL']] },
  pagemapAddr: { valid: (c) => c.area, bad: [...NOT_NUMBERS, ['-1', -1, 'EINVAL'], ['2^53', 2 ** 53, 'EINVAL']] },
  addr: { valid: (c) => c.area, bad: [...NOT_NUMBERS, ['-1', -1, 'EINVAL']] },
  len: { valid: () => PAGE_SIZE, bad: [...NOT_NUMBERS, ['-1', -1, 'EINVAL']] },
  pinOpts: { valid: () => ({ write: false }), bad: [['null', null, 'EINVAL'], ['5', 5, 'EINVAL'], ["{ write: 'yes' }", { write: 'yes' }, 'EINVAL'], ['{ bogus: 1 }', { bogus: 1 }, 'EINVAL']] },
  prctlOption: { valid: () => 'PR_GET_MEMORY_MERGE', bad: [['67', 67, 'EINVAL'], ["'PR_BOGUS'", 'PR_BOGUS', 'EINVAL'], ['null', null, 'EINVAL'], ['Symbol', Symbol('o'), 'EINVAL'], ['hostile object', HOSTILE, 'EINVAL']] },
  ulong: { valid: () => 0, bad: [['NaN', Number.NaN, 'EINVAL'], ['-1', -1, 'EINVAL'], ['1.5', 1.5, 'EINVAL'], ["'1'", '1', 'EINVAL'], ['Symbol', Symbol('u'), 'EINVAL'], ['hostile object', HOSTILE, 'EINVAL']] },
  ms: { valid: () => 20, bad: [...NOT_NUMBERS.filter(([l]) => l !== '1.5'), ['-1', -1, 'EINVAL'], ['2^60 (time past 2^53 ms)', 2 ** 60, 'EOVERFLOW'], ['1e12 (5e10 ksmd batches)', 1e12, 'E2BIG']] },
  fullScans: { valid: () => 1, bad: [...NOT_NUMBERS, ['-1', -1, 'EINVAL'], ['2^53', 2 ** 53, 'E2BIG'], ['2^64', 2 ** 64, 'E2BIG'], ['1e9', 1e9, 'E2BIG']] },
  pages: { valid: () => 1, bad: [...NOT_NUMBERS, ['-1', -1, 'EINVAL'], ['2^64', 2 ** 64, 'EINVAL']] },
  pfn: { valid: (c) => c.pfn, bad: [...NOT_NUMBERS, ['-1', -1, 'EINVAL'], ['nrFrames', 1 << 30, 'EINVAL']] },
  pid: { valid: (c) => c.pid, bad: [['NaN', Number.NaN, 'ESRCH'], ['-1', -1, 'ESRCH'], ['1.5', 1.5, 'ESRCH'], ["'1'", '1', 'ESRCH'], ['Symbol', Symbol('p'), 'ESRCH'], ['hostile object', HOSTILE, 'ESRCH'], ['999', 999, 'ESRCH']] },
  // The content store's page writes: a page-aligned pointer (EFAULT when not one), a
  // registered generator, a key of 32-bit words, a fill byte.
  pageAddr: { valid: (c) => c.area, bad: [...withCode(NOT_NUMBERS, 'EFAULT'), ['-1', -1, 'EFAULT'], ['0 (unmapped)', 0, 'EFAULT'], ['2^53', 2 ** 53, 'EFAULT']] },
  generator: { valid: (c) => c.generator, bad: [...NOT_NUMBERS, ['-1', -1, 'EINVAL'], ['99 (none registered)', 99, 'EINVAL']] },
  u32: { valid: () => 7, bad: [...NOT_NUMBERS, ['-1', -1, 'EINVAL'], ['2^32', 2 ** 32, 'EINVAL']] },
  fillByte: { valid: () => 0x61, bad: [...NOT_NUMBERS, ['-1', -1, 'EINVAL'], ['256', 256, 'EINVAL']] },
  // migratePage's NUMA node: optional (undefined is "its own"), else one the kernel has.
  node: { valid: () => 0, bad: [...NOT_NUMBERS.filter(([l]) => l !== 'undefined'), ['-1', -1, 'EINVAL'], ['1 (one node)', 1, 'EINVAL']] },
  spawnOpts: {
    valid: () => ({ node: 0, mergeDomain: 'd' }),
    bad: [
      ['null', null, 'EINVAL'],
      ['5', 5, 'EINVAL'],
      ["'d'", 'd', 'EINVAL'],
      ['{ node: 1 } (one node)', { node: 1 }, 'EINVAL'],
      ['{ node: -1 }', { node: -1 }, 'EINVAL'],
      ['{ node: 0.5 }', { node: 0.5 }, 'EINVAL'],
      ["{ node: '0' }", { node: '0' }, 'EINVAL'],
      ["{ mergeDomain: 'a b' }", { mergeDomain: 'a b' }, 'EINVAL'],
      ['{ mergeDomain: 65 characters }', { mergeDomain: 'x'.repeat(65) }, 'EINVAL'],
      ['{ mergeDomain: 5 }', { mergeDomain: 5 }, 'EINVAL'],
      ['{ mergeDomain: Symbol }', { mergeDomain: Symbol('d') }, 'EINVAL'],
      ['{ mergeDomain: hostile object }', { mergeDomain: HOSTILE }, 'EINVAL'],
      ['{ bogus: 1 }', { bogus: 1 }, 'EINVAL'],
    ],
  },
  // open("/dev/ksm") by a process: a live one of this kernel (ESRCH otherwise).
  devProcess: { valid: (c) => c.proc, bad: [['null', null, 'ESRCH'], ['5', 5, 'ESRCH'], ['{}', {}, 'ESRCH'], ["'a'", 'a', 'ESRCH'], ['Symbol', Symbol('p'), 'ESRCH'], ['hostile object', HOSTILE, 'ESRCH']] },
  devCmd: { valid: () => 'KSM_START_STOP_KTHREAD', bad: [["'KSM_BOGUS'", 'KSM_BOGUS', 'EINVAL'], ['5', 5, 'EINVAL'], ['null', null, 'EINVAL'], ['Symbol', Symbol('c'), 'EINVAL'], ['hostile object', HOSTILE, 'EINVAL']] },
  kthreadInfo: {
    valid: () => ({ sleep: 20000, pages_to_scan: 100, max_pages_to_merge: 0, flags: 1 }),
    bad: [
      ['null', null, 'EFAULT'],
      ['undefined', undefined, 'EFAULT'],
      ['5', 5, 'EFAULT'],
      ['{}', {}, 'EINVAL'],
      ['hostile object', HOSTILE, 'EINVAL'],
      ['sleep -1', { sleep: -1, pages_to_scan: 100, max_pages_to_merge: 0, flags: 1 }, 'EINVAL'],
      ['pages_to_scan 2^32', { sleep: 20000, pages_to_scan: 2 ** 32, max_pages_to_merge: 0, flags: 1 }, 'EINVAL'],
      ["flags '1'", { sleep: 20000, pages_to_scan: 100, max_pages_to_merge: 0, flags: '1' }, 'EINVAL'],
      ['max_pages_to_merge NaN', { sleep: 20000, pages_to_scan: 100, max_pages_to_merge: Number.NaN, flags: 1 }, 'EINVAL'],
      ['run with pages_to_scan 0', { sleep: 20000, pages_to_scan: 0, max_pages_to_merge: 0, flags: 1 }, 'EPERM'],
    ],
  },
  smaCmd: { valid: () => 'KSM_REGISTER_MEMORY_REGION', bad: [["'KSM_BOGUS'", 'KSM_BOGUS', 'EINVAL'], ['5', 5, 'EINVAL'], ['null', null, 'EINVAL'], ['Symbol', Symbol('c'), 'EINVAL'], ['hostile object', HOSTILE, 'EINVAL']] },
  region: {
    valid: (c) => ({ npages: 16, addr: c.area }),
    bad: [
      ['null', null, 'EFAULT'],
      ['5', 5, 'EFAULT'],
      ['{}', {}, 'EINVAL'],
      ['hostile object', HOSTILE, 'EINVAL'],
      ['npages -1', { npages: -1, addr: 0 }, 'EINVAL'],
      ['npages 1.5', { npages: 1.5, addr: 0 }, 'EINVAL'],
      ['npages 2^32', { npages: 2 ** 32, addr: 0 }, 'EINVAL'],
      ['addr -1', { npages: 1, addr: -1 }, 'EINVAL'],
      ['addr NaN', { npages: 1, addr: Number.NaN }, 'EINVAL'],
      ["addr '0'", { npages: 1, addr: '0' }, 'EINVAL'],
      ['addr 2^60', { npages: 1, addr: 2 ** 60 }, 'EINVAL'],
      ['addr past the address space', { npages: 1, addr: 2 ** 52 }, 'EINVAL'],
    ],
  },
  // 6.18's madvise: MADV_HUGEPAGE valid (a kernel with THP), the same bad advice.
  adviceThp: { valid: () => 'MADV_HUGEPAGE', bad: [['12', 12, 'EINVAL'], ["'MADV_BOGUS'", 'MADV_BOGUS', 'EINVAL'], ['null', null, 'EINVAL'], ['Symbol', Symbol('a'), 'EINVAL'], ['hostile object', HOSTILE, 'EINVAL']] },
  // 2.6.33's madvise: no THP, so MADV_HUGEPAGE and MADV_NOHUGEPAGE are unknown advice.
  adviceNoThp: {
    valid: () => 'MADV_NORMAL',
    bad: [['12', 12, 'EINVAL'], ["'MADV_BOGUS'", 'MADV_BOGUS', 'EINVAL'], ['null', null, 'EINVAL'], ['Symbol', Symbol('a'), 'EINVAL'], ['hostile object', HOSTILE, 'EINVAL'], ["'MADV_HUGEPAGE'", 'MADV_HUGEPAGE', 'EINVAL'], ["'MADV_NOHUGEPAGE'", 'MADV_NOHUGEPAGE', 'EINVAL']],
  },
  sysfsPath: { valid: () => '/sys/kernel/mm/ksm/pages_to_scan', bad: [['5', 5, 'ENOENT'], ['null', null, 'ENOENT'], ['Symbol', Symbol('p'), 'ENOENT'], ['hostile object', HOSTILE, 'ENOENT'], ["'/sys/kernel/mm/ksm/nope'", '/sys/kernel/mm/ksm/nope', 'ENOENT']] },
  sysfsValue: {
    valid: () => '100',
    bad: [['100 (a number)', 100, 'EINVAL'], ['null', null, 'EINVAL'], ['Symbol', Symbol('v'), 'EINVAL'], ['hostile object', HOSTILE, 'EINVAL'], ["'-1'", '-1', 'EINVAL'], ["'1e3'", '1e3', 'EINVAL'], ['2^32 as text', '4294967296', 'EINVAL'], ['5000 characters', '1'.repeat(5000), 'EINVAL']],
  },
};

/** Which kind each argument of each public method is; [] for none. 'internal' names friend methods of the layers below. */
type Api = Record<string, readonly string[] | 'internal' | 'ends'>;

const PROCESS_API: Api = {
  mmap: ['mmapLen', 'mmapOpts'],
  munmap: ['rangeStart', 'rangeLen'],
  mprotect: ['rangeStart', 'rangeLen', 'prot'],
  madvise: ['rangeStart', 'rangeLen', 'adviceNoThp'],
  mlock: ['lockStart', 'lockLen'],
  munlock: ['lockStart', 'lockLen'],
  fork: ['name'],
  exit: 'ends',
  read: ['accessAddr', 'accessLen'],
  peekMem: ['accessAddr', 'accessLen'],
  write: ['accessAddr', 'bytes'],
  pokeMem: ['accessAddr', 'bytes'],
  writeGeneratedPage: ['pageAddr', 'generator', 'u32', 'u32', 'u32', 'u32'],
  writeFilledPage: ['pageAddr', 'fillByte'],
  memset: ['accessAddr', 'byteValue', 'accessLen'],
  pfnOf: ['pagemapAddr'],
  smaps: ['addr', 'len'],
  smapsRollup: [],
  residentFrames: ['addr', 'len'],
  pin: ['accessAddr', 'pinOpts'],
  prctl: ['prctlOption', 'ulong', 'ulong', 'ulong', 'ulong'],
  maps: [],
  // Private helpers (TypeScript's `private` is not hidden at run time).
  live: 'internal',
  range: 'internal',
  unmapRange: 'internal',
  splitAt: 'internal',
  mergeAround: 'internal',
  mergeable: 'internal',
  mergeInto: 'internal',
  applyRange: 'internal',
  checkAccess: 'internal',
  faultIn: 'internal',
  vmaFor: 'internal',
  copyOut: 'internal',
  copyIn: 'internal',
};

const KERNEL_API: Api = {
  advance: ['ms'],
  reclaim: ['pages'],
  migratePage: ['pfn', 'node'],
  compactMemory: [],
  spawn: ['name', 'spawnOpts'],
  openDevKsm: ['devProcess'],
  liveProcess: ['pid'],
  ksmStat: ['pid'],
  ksmStats: [],
  ksmWork: [],
  meminfo: [],
  checkInvariants: [],
  checkSpan: 'internal',
  // The layers' friend API (KSM registers itself, hooks and image parts; the mm's own bookkeeping).
  newProcess: 'internal',
  registerKsm: 'internal',
  registerMemoryNotifier: 'internal',
  notifyMemory: 'internal',
  registerInvariantChecker: 'internal',
  registerImagePart: 'internal',
  saveState: 'internal',
  restoreState: 'internal',
  registerThread: 'internal',
  nextDueThread: 'internal',
  registerProcFiles: 'internal',
  addPin: 'internal',
  dropPin: 'internal',
  isPinned: 'internal',
};

/** 6.18: THP's advice is valid; /dev/ksm is 2.6.33's (ENOENT whatever the argument, tested in test/ksm/devksm.test.ts). */
const PROCESS_API_6_18: Api = { ...PROCESS_API, madvise: ['rangeStart', 'rangeLen', 'adviceThp'] };
const KERNEL_API_6_18: Api = { ...KERNEL_API, openDevKsm: [] };

/** Public methods of a class and its ancestors (up to Object), without the constructor and accessors. */
function methodsOf(proto: object): string[] {
  const out = new Set<string>();
  for (let p: object | null = proto; p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    for (const name of Object.getOwnPropertyNames(p)) {
      const d = Object.getOwnPropertyDescriptor(p, name)!;
      if (name !== 'constructor' && typeof d.value === 'function') out.add(name);
    }
  }
  return [...out].sort();
}

/** The pattern byte of page i of process n: every page tells its owner and place apart, pairs merge. */
const pattern = (i: number): number => 0x40 + (i % 4);

interface World {
  k: Kernel;
  procs: Process[];
  areas: number[];
  shadow: Uint8Array[];
  ctx: Ctx;
}

/** Two processes with 16 mergeable pages each, merged by ksmd; ksmd left running. */
function world(version?: string): World {
  const k = new Kernel({ memoryMiB: 16, blockMiB: 4, swapMiB: 4, seed: 3, ...(version === undefined ? {} : { version }) });
  const procs = [k.spawn('a'), k.spawn('b')];
  const areas = procs.map((p) => {
    const a = p.mmap(16 * PAGE_SIZE);
    for (let i = 0; i < 16; i++) p.memset(a + i * PAGE_SIZE, pattern(i), PAGE_SIZE);
    p.write(a + 15 * PAGE_SIZE, Uint8Array.of(p.pid)); // one page of each its own
    p.madvise(a, 16 * PAGE_SIZE, 'MADV_MERGEABLE');
    return a;
  });
  k.sysfs.write('/sys/kernel/mm/ksm/pages_to_scan', '100');
  k.sysfs.write('/sys/kernel/mm/ksm/run', '1');
  k.ksmd.runFullScans(3);
  expect(k.ksmStats().pagesSharing).toBeGreaterThan(0);
  const shadow = procs.map((p, i) => p.peekMem(areas[i]!, 16 * PAGE_SIZE));
  const generator = k.mem.store.registerGenerator({
    name: 'abuse',
    keyIsHead: false,
    generate: (k0, _k1, _k2, _k3, out, off) => out.fill(k0, off, off + PAGE_SIZE / 4),
  });
  return { k, procs, areas, shadow, ctx: { area: areas[0]!, pid: procs[0]!.pid, pfn: procs[0]!.pfnOf(areas[0]!)!, nrFrames: k.mem.nrFrames, proc: procs[0]!, generator } };
}

/** Everything still as the owners wrote it, and consistent. */
function intact(w: World): void {
  w.k.checkInvariants();
  w.procs.forEach((p, i) => {
    if (!p.alive) return;
    const now = p.peekMem(w.areas[i]!, 16 * PAGE_SIZE);
    if (Buffer.compare(now, w.shadow[i]!) !== 0) throw new Error(`process ${p.name}'s memory changed`);
  });
}

/** What a call did: 'ok', a KernelError's code, or what else it threw. */
function outcome(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    return `raw ${(e as Error)?.name ?? typeof e}: ${(e as Error)?.message ?? ''}`;
  }
}

interface Case {
  method: string;
  arg: number;
  label: string;
  expected: string;
  got: string;
}

/** Run every bad value of every argument of every method in `api` on `target(w)`; returns the cases that went wrong. */
function abuse(api: Api, target: (w: World) => object, cases: { n: number }, version?: string): Case[] {
  const wrong: Case[] = [];
  // A refused call changes nothing, so the next case runs on the same world; only a
  // case that went wrong (and may have changed it) makes a new one.
  let w = world(version);
  for (const [method, kinds] of Object.entries(api)) {
    if (typeof kinds === 'string') continue;
    kinds.forEach((kind, arg) => {
      const spec = KINDS[kind]!;
      for (const [label, value, expected] of spec.bad) {
        const args = kinds.map((k2) => KINDS[k2]!.valid(w.ctx));
        args[arg] = value;
        const t = target(w) as Record<string, (...a: unknown[]) => unknown>;
        let got = outcome(() => t[method]!(...args));
        if (got !== 'ok' && !got.startsWith('raw')) {
          const broken = outcome(() => intact(w));
          if (broken !== 'ok') got = `${got}, then broken: ${broken}`;
        }
        cases.n++;
        if (got !== expected) {
          wrong.push({ method, arg, label, expected, got });
          w = world(version);
        }
      }
    });
  }
  return wrong;
}

describe('argument abuse, generated from the API tables', () => {
  it('the tables name every method of Process and Kernel', () => {
    const named = (api: Api): string[] => Object.keys(api).sort();
    expect(methodsOf(ProcessClass.prototype)).toEqual(named(PROCESS_API));
    expect(methodsOf(Kernel.prototype)).toEqual(named(KERNEL_API));
    expect(methodsOf(HostKernel.prototype).every((m) => m in KERNEL_API)).toBe(true);
  });

  it('every bad argument of every Process method is its KernelError, and nothing changes', () => {
    const cases = { n: 0 };
    const wrong = abuse(PROCESS_API, (w) => w.procs[0]!, cases);
    expect(wrong).toEqual([]);
    expect(cases.n).toBeGreaterThan(250);
  });

  it('every bad argument of every Kernel method is its KernelError, and nothing changes', () => {
    const cases = { n: 0 };
    const wrong = abuse(KERNEL_API, (w) => w.k, cases);
    expect(wrong).toEqual([]);
    expect(cases.n).toBeGreaterThan(60);
  });

  it('6.18: every bad argument of every Process and Kernel method (prctl, THP advice) is its KernelError, and nothing changes', () => {
    const cases = { n: 0 };
    const wrong = [...abuse(PROCESS_API_6_18, (w) => w.procs[0]!, cases, '6.18'), ...abuse(KERNEL_API_6_18, (w) => w.k, cases, '6.18')];
    expect(wrong).toEqual([]);
    expect(cases.n).toBeGreaterThan(300);
  });

  it('/dev/ksm (2.6.33): every bad ioctl command or argument, of the device and of a shared memory area, is its KernelError', () => {
    const cases = { n: 0 };
    const wrong = [
      ...abuse({ ioctl: ['devCmd', 'kthreadInfo'] }, (w) => w.k.openDevKsm(w.procs[0]!), cases),
      ...abuse({ ioctl: ['smaCmd', 'region'] }, (w) => w.k.openDevKsm(w.procs[0]!).ioctl('KSM_CREATE_SHARED_MEMORY_AREA'), cases),
    ];
    expect(wrong).toEqual([]);
    expect(cases.n).toBeGreaterThan(30);
  });

  it('ksmd and sysfs: runFullScans and every file write refuse bad values, changing nothing', () => {
    const cases = { n: 0 };
    const wrong = [
      ...abuse({ runFullScans: ['fullScans'] }, (w) => w.k.ksmd, cases),
      ...abuse({ write: ['sysfsPath', 'sysfsValue'], read: ['sysfsPath'] }, (w) => w.k.sysfs, cases),
    ];
    expect(wrong).toEqual([]);
    expect(cases.n).toBeGreaterThan(30);
  });

  it('Kernel options (version, nodes; the mm\'s thp): every field, before any memory is set up', () => {
    const valid = { memoryMiB: 16, blockMiB: 4, swapMiB: 4, seed: 3, nodes: 2, version: '6.18' };
    const wrong: string[] = [];
    let n = 0;
    const expectCode = (label: string, fn: () => unknown, code: string): void => {
      n++;
      const got = outcome(fn);
      if (got !== code) wrong.push(`${label}: expected ${code}, got ${got}`);
    };
    for (const path of fieldPaths(valid)) {
      for (const [l, v] of NEVER_VALID) {
        if (path[0] === 'seed' && l === '-1') continue; // any safe integer seeds the PRNG
        expectCode(`${path.join('.')}: ${l}`, () => new Kernel(withField(valid, path, v) as never), 'EINVAL');
      }
    }
    for (const [l, v] of [
      ['null', null],
      ['5', 5],
      ["version '5.10'", { ...valid, version: '5.10' }],
      ['nodes 5 (4 blocks)', { ...valid, nodes: 5 }],
      ['nodes 0', { ...valid, nodes: 0 }],
      ['thp (the version decides it)', { ...valid, thp: { remapZeroSubpages: true } }],
      ['memoryMiB past 4 TiB', { ...valid, memoryMiB: 4 * 1024 * 1024 + 1 }],
      ['swapMiB past 4 TiB', { ...valid, swapMiB: 4 * 1024 * 1024 + 1 }],
      ['blockMiB 4096', { ...valid, memoryMiB: 8192, blockMiB: 4096 }],
      ['blockMiB 3', { ...valid, blockMiB: 3 }],
      ['an unknown option', { ...valid, bogus: 1 }],
    ] as [string, unknown][]) {
      expectCode(l, () => new Kernel(v as never), 'EINVAL');
    }
    // The mm's own thp options (what the KSM side passes from the profile).
    for (const [l, thp] of [
      ['5', 5],
      ["mode 'sometimes'", { mode: 'sometimes', remapZeroSubpages: true }],
      ["remapZeroSubpages 'yes'", { remapZeroSubpages: 'yes' }],
      ['remapZeroSubpages missing', { mode: 'always' }],
      ['an unknown option', { remapZeroSubpages: true, bogus: 1 }],
    ] as [string, unknown][]) {
      expectCode(`thp ${l}`, () => new HostKernel({ memoryMiB: 16, blockMiB: 4, thp } as never), 'EINVAL');
    }
    // A partial memory block, as Linux has: 18 MiB is four blocks of 4 MiB and a half one.
    expectCode('memoryMiB 18 with blockMiB 4', () => new Kernel({ memoryMiB: 18, blockMiB: 4, nodes: 5 }).checkInvariants(), 'ok');
    expect(wrong).toEqual([]);
    expect(n).toBeGreaterThan(50);
  });

  it('an exited process refuses every call with ESRCH', () => {
    const w = world();
    const p = w.procs[1]!;
    p.exit();
    for (const [method, kinds] of Object.entries(PROCESS_API)) {
      if (typeof kinds === 'string' || kinds.length === 0 || ['pfnOf', 'smaps', 'residentFrames'].includes(method)) continue;
      const args = kinds.map((k2) => KINDS[k2]!.valid(w.ctx));
      expect([method, outcome(() => (p as unknown as Record<string, (...a: unknown[]) => unknown>)[method]!(...args))]).toEqual([method, 'ESRCH']);
    }
    intact(w);
  });
});

/**
 * What Linux 6.18's store() of `knob` answers to `buf` (mm/ksm.c, lib/kstrtox.c): the
 * knob's spec in the profile says which parser, which limits, whether the parser's
 * own error is returned, and what its store does; the parsers are lib/kstrtox.ts's.
 * 'ok' or the errno.
 */
function linuxStore(knob: KnobSpec, buf: string, state: { value: bigint; pagesShared: number }): string {
  if (buf.length > 4096) return 'EINVAL'; // one page at most reaches a store() (README: differences)
  if (buf === '') return 'ok'; // kernfs returns 0 before any store()
  let r: KstrtoxResult;
  switch (knob.parse) {
    case 'kstrtouint':
      r = kstrtouint(buf);
      break;
    case 'kstrtoul':
      r = kstrtoull(buf);
      break;
    case 'kstrtoint':
      r = kstrtoint(buf);
      break;
    case 'kstrtobool':
      r = kstrtobool(buf);
      break;
    case 'sysfs_streq': {
      const i = knob.choices!.findIndex((c) => sysfsStreq(c, buf));
      r = i < 0 ? 'EINVAL' : BigInt(i);
      break;
    }
    default:
      throw new Error(`6.18 has no ${knob.parse} knob`);
  }
  if (typeof r !== 'bigint') return knob.parseErrors === 'returned' ? r : 'EINVAL';
  if (r > knob.max || r < knob.min) return 'EINVAL';
  if (knob.store === 'run' && r > 2n) return 'EINVAL';
  if (knob.store === 'stable_tree' && r !== state.value && state.pagesShared !== 0) return 'EBUSY';
  return 'ok';
}

const KNOB_WRITES = ['', '0', '1', '2', '3', '-1', '+5', '1e3', 'y', 'on', 'of', 'scan-time', 'none\n', '20\n', '20\n\n', ' 1', '0x10', '2147483648', '4294967295', '4294967296', '18446744073709551616', 'x'.repeat(5000)];

describe('6.18 sysfs knobs, every one of the profile', () => {
  it('each odd write answers what Linux 6.18 answers (its parsers and limits, from the profile); a refused write changes nothing', () => {
    const wrong: string[] = [];
    let n = 0;
    for (const knob of PROFILE_6_18.knobs) {
      const w = world('6.18');
      const path = `/sys/kernel/mm/ksm/${knob.file}`;
      for (const buf of KNOB_WRITES) {
        n++;
        const ksm = w.k.ksmEngine;
        const before = w.k.sysfs.read(path);
        const expected = linuxStore(knob, buf, { value: BigInt(ksm[knob.field] as number), pagesShared: ksm.pagesShared });
        let got = outcome(() => w.k.sysfs.write(path, buf));
        if (got !== 'ok') {
          const after = outcome(() => intact(w));
          if (after !== 'ok') got = `${got}, then broken: ${after}`;
          if (w.k.sysfs.read(path) !== before) got = `${got}, and the file changed`;
        }
        if (got !== expected) wrong.push(`${knob.file} <- ${JSON.stringify(buf.slice(0, 20))}: expected ${expected}, got ${got}`);
        // Put an accepted value back (ksmd's knobs only: every page is as it was).
        if (got === 'ok' && w.k.sysfs.read(path) !== before) {
          const old = knob.choices === null ? before.trim() : /\[([^\]]+)\]/.exec(before)![1]!;
          w.k.sysfs.write(path, old);
        }
      }
      intact(w);
    }
    expect(wrong).toEqual([]);
    expect(n).toBe(PROFILE_6_18.knobs.length * KNOB_WRITES.length);
  });
});

describe('any ArrayBufferView is written byte for byte', () => {
  const views: [string, (b: ArrayBuffer) => ArrayBufferView][] = [
    ['Uint16Array', (b) => new Uint16Array(b)],
    ['Float64Array', (b) => new Float64Array(b)],
    ['Int32Array at an offset', (b) => new Int32Array(b, 8, 4)],
    ['DataView', (b) => new DataView(b, 3, 17)],
    ['Buffer', (b) => Buffer.from(b, 5, 11)],
  ];
  for (const [name, make] of views) {
    it(`${name}: write and pokeMem store its bytes in memory order`, () => {
      const w = world();
      const p = w.procs[0]!;
      const ab = new ArrayBuffer(64);
      new Uint8Array(ab).forEach((_, i, a) => (a[i] = (i * 7 + 1) & 0xff));
      const v = make(ab);
      const want = new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice();
      p.write(w.areas[0]! + 100, v);
      expect([...p.read(w.areas[0]! + 100, want.length)]).toEqual([...want]);
      p.pokeMem(w.areas[0]! + 5000, v);
      expect([...p.peekMem(w.areas[0]! + 5000, want.length)]).toEqual([...want]);
      // The bytes around are untouched.
      expect(p.read(w.areas[0]! + 100 + want.length, 1)[0]).toBe(pattern(0));
      w.k.checkInvariants();
    });
  }
});

// ---- the VM manager ----------------------------------------------------------------------

const STILL = { dirtyRate: 0, burst: null };

interface HostWorld {
  host: Host;
  guest: Guest;
}

function hostWorld(version = '2.6.33'): HostWorld {
  const host = new Host({ memoryMiB: 64, swapMiB: 16, blockMiB: 16, images, version, ksm: { policy: 'fixed', run: 1, pagesToScan: 200, sleepMillisecs: 20, maxKernelPages: null } });
  host.createGuest({ name: 'a', image: 'tiny', version: '1', memoryMiB: 16, workload: STILL });
  host.startGuest('a');
  host.advance(3000);
  return { host, guest: host.guest('a') };
}

/** Values no field of an options record accepts. */
const NEVER_VALID: [string, unknown][] = [
  ['NaN', Number.NaN],
  ['Infinity', Infinity],
  ['-1', -1],
  ['Symbol', Symbol('f')],
  ['4n', 4n],
  ['hostile object', HOSTILE],
  ['a function', () => 1],
  ['[]', []],
];

/** Every field path of a record, nested records included. */
function fieldPaths(rec: Record<string, unknown>, prefix: string[] = []): string[][] {
  const out: string[][] = [];
  for (const [k, v] of Object.entries(rec)) {
    out.push([...prefix, k]);
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) out.push(...fieldPaths(v as Record<string, unknown>, [...prefix, k]));
  }
  return out;
}

function withField(rec: Record<string, unknown>, path: string[], value: unknown): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...rec };
  if (path.length === 1) copy[path[0]!] = value;
  else copy[path[0]!] = withField(rec[path[0]!] as Record<string, unknown>, path.slice(1), value);
  return copy;
}

/** What the host shows of itself: its guests (name, state, workload), its policy, every KSM knob file. */
function state(hw: HostWorld): string {
  const h = hw.host;
  const knobs = h.kernel.sysfs.list('/sys/kernel/mm/ksm').map((f) => `${f}=${h.kernel.sysfs.read(f)}`);
  return JSON.stringify({ guests: h.guests.map((g) => [g.name, g.state, g.workload]), policy: h.policy, knobs });
}

/**
 * Each field of a valid options record set to each never-valid value: the call
 * must be EINVAL, and the host intact, consistent and still saving a snapshot that
 * restores. Returns the cases that went wrong.
 */
function abuseRecord(what: string, valid: Record<string, unknown>, call: (hw: HostWorld, rec: unknown) => unknown, cases: { n: number }, version?: string): string[] {
  const wrong: string[] = [];
  const variants: [string, unknown][] = [
    ['null', null],
    ['5', 5],
    ["'x'", 'x'],
    ...fieldPaths(valid).flatMap((path) => NEVER_VALID.map(([l, v]) => [`${path.join('.')}: ${l}`, withField(valid, path, v)] as [string, unknown])),
    ['an unknown field', { ...valid, bogus: 1 }],
  ];
  const hw = hostWorld(version);
  let fingerprint = state(hw);
  for (const [label, rec] of variants) {
    cases.n++;
    const before = hw.host.log.length;
    const got = outcome(() => call(hw, rec));
    if (got !== 'EINVAL') wrong.push(`${what} ${label}: ${got}`);
    // A refusal must change nothing the host shows (its guests, policy, workloads and
    // knobs: compared after every case, cheaply; the deep check runs once at the end);
    // anything accepted must also save a snapshot that restores (a save nothing can
    // restore is lost work).
    const after = outcome(() => {
      if (got === 'ok') Host.restore(hw.host.save(), images).checkInvariants();
      else if (state(hw) !== fingerprint) throw new Error('the host changed');
    });
    if (after !== 'ok') wrong.push(`${what} ${label}: afterwards ${after}`);
    if (hw.host.log.length > before + 1) wrong.push(`${what} ${label}: logged ${hw.host.log.length - before} entries`);
    if (got === 'ok') fingerprint = state(hw);
  }
  hw.host.checkInvariants();
  return wrong;
}

describe('the VM manager refuses at the door what its snapshot would refuse', () => {
  it('createGuest, setPolicy, setKnobs and setWorkload: every field of their records', () => {
    const cases = { n: 0 };
    const wrong = [
      ...abuseRecord('createGuest', { name: 'b', image: 'tiny', version: '1', memoryMiB: 16, memMerge: true, mergeDomain: 'd', qemuBlocks: false, nic: 'none', workload: { dirtyRate: 1, burst: { everyMs: 1000, pages: 2, overMs: 10 } } }, (hw, r) => hw.host.createGuest(r as never), cases),
      // 6.18: a guest with QEMU's blocks, the later knobs in policies and setKnobs.
      ...abuseRecord('createGuest on 6.18', { name: 'b', image: 'tiny', version: '1', memoryMiB: 16, mergeDomain: 'd', qemuBlocks: true, nic: 'e1000' }, (hw, r) => hw.host.createGuest(r as never), cases, '6.18'),
      ...abuseRecord('setPolicy fixed on 6.18', { policy: 'fixed', run: 1, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: null, knobs: { maxPageSharing: 256, useZeroPages: 1, smartScan: 1, advisorMode: 0 } }, (hw, r) => hw.host.setPolicy(r as never), cases, '6.18'),
      ...abuseRecord('setPolicy mom on 6.18', { policy: 'mom', config: {}, maxKernelPages: null, knobs: { useZeroPages: 1 } }, (hw, r) => hw.host.setPolicy(r as never), cases, '6.18'),
      ...abuseRecord('setKnobs on 6.18', { useZeroPages: 1, smartScan: 0, maxPageSharing: 256, stableNodeChainsPruneMillisecs: 2000, advisorMaxCpu: 70 }, (hw, r) => hw.host.setKnobs(r as never), cases, '6.18'),
      ...abuseRecord('setPolicy fixed', { policy: 'fixed', run: 1, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: 1000 }, (hw, r) => hw.host.setPolicy(r as never), cases),
      ...abuseRecord('setPolicy ksmtuned', { policy: 'ksmtuned', config: { monitorInterval: 60 }, maxKernelPages: null }, (hw, r) => hw.host.setPolicy(r as never), cases),
      ...abuseRecord('setKnobs', { run: 1, pagesToScan: 100, sleepMillisecs: 20 }, (hw, r) => hw.host.setKnobs(r as never), cases),
      ...abuseRecord('setWorkload', { dirtyRate: 1, burst: { everyMs: 1000, pages: 2, overMs: 10 } }, (hw, r) => hw.guest.setWorkload(r as never), cases),
    ];
    expect(wrong).toEqual([]);
    expect(cases.n).toBeGreaterThan(100);
  });

  it('Host options: every field, before anything boots', () => {
    const valid = { memoryMiB: 64, swapMiB: 16, blockMiB: 16, seed: 1, version: '6.18', tickMs: 100, ksm: { policy: 'fixed', run: 0, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: null, knobs: { useZeroPages: 1 } } };
    const wrong: string[] = [];
    for (const path of fieldPaths(valid)) {
      for (const [l, v] of NEVER_VALID) {
        if (path[0] === 'seed' && l === '-1') continue; // any safe integer seeds the PRNG
        const got = outcome(() => new Host(withField(valid, path, v) as never));
        if (got !== 'EINVAL') wrong.push(`${path.join('.')}: ${l}: ${got}`);
      }
    }
    for (const [l, v] of [
      ['null', null],
      ['undefined', undefined],
      ['5', 5],
      ['{}', {}],
      ['blockMiB 4096', { ...valid, blockMiB: 4096 }],
      ['a guest name for images', { ...valid, images: 'guests' }],
      ["version '5.10'", { ...valid, version: '5.10' }],
      ['max_kernel_pages on 6.18', { ...valid, ksm: { ...valid.ksm, maxKernelPages: 100 } }],
      ['use_zero_pages on 2.6.33', { ...valid, version: '2.6.33' }],
      ['max_page_sharing 1', { ...valid, ksm: { ...valid.ksm, knobs: { maxPageSharing: 1 } } }],
      ['an unknown knob', { ...valid, ksm: { ...valid.ksm, knobs: { bogus: 1 } } }],
      ['advisor_mode 2', { ...valid, ksm: { ...valid.ksm, knobs: { advisorMode: 2 } } }],
    ] as [string, unknown][]) {
      const got = outcome(() => new Host(v as never));
      if (got !== 'EINVAL') wrong.push(`${l}: ${got}`);
    }
    expect(wrong).toEqual([]);
  });

  it('Host and Guest methods: each bad argument is EINVAL (ENOENT for a guest name), nothing changes, the snapshot restores', () => {
    const hw = hostWorld();
    const g = hw.guest;
    const shadow = g.readPhys(0, 16 * 1024 * 1024);
    const calls: [string, () => unknown, string][] = [];
    for (const [l, v, code] of [...NOT_NUMBERS, ['-1', -1, 'EINVAL'], ['2^64', 2 ** 64, 'EINVAL']] as Bad[]) {
      calls.push([`burst(${l}, 0)`, () => g.burst(v as number, 0), code]);
      calls.push([`burst(1, ${l})`, () => g.burst(1, v as number), l === '1.5' ? 'ok' : code]);
      calls.push([`readPhys(0, ${l})`, () => g.readPhys(0, v as number), code]);
      calls.push([`readPhys(${l}, 1)`, () => g.readPhys(v as number, 1), code]);
      calls.push([`writePhys(${l}, bytes)`, () => g.writePhys(v as number, Uint8Array.of(1)), code]);
      calls.push([`pressure(${l})`, () => hw.host.pressure(v as number), code]);
      calls.push([`reclaim(${l})`, () => hw.host.reclaim(v as number), code]);
      calls.push([`offlineBlock(${l})`, () => hw.host.offlineBlock(v as number), code]);
      calls.push([`migrateGuestPages('a', ${l})`, () => hw.host.migrateGuestPages('a', v as number), code]);
    }
    for (const [l, v] of [['null', null], ["'str'", 'str'], ['[1]', [1]], ['Symbol', Symbol('b')]] as [string, unknown][]) {
      calls.push([`writePhys(0, ${l})`, () => g.writePhys(0, v as Uint8Array), 'EINVAL']);
      calls.push([`guest(${l})`, () => hw.host.guest(v as string), 'ENOENT']);
      calls.push([`stopGuest(${l})`, () => hw.host.stopGuest(v as string), 'ENOENT']);
    }
    // Page sources built by hand: the shape the guest calls page after page, checked at the door.
    const src = images.source('tiny', '1');
    const like = (over: Record<string, unknown>): unknown => Object.assign(Object.create(Object.getPrototypeOf(src) as object) as object, src, over);
    const guestOf = (image: unknown) => (): unknown => hw.host.createGuest({ name: 'hand', image: image as never, memoryMiB: 16, workload: STILL });
    calls.push(['a page source without a generator', guestOf(like({ generator: undefined })), 'EINVAL']);
    calls.push(['a page source without a ref', guestOf(like({ ref: null })), 'EINVAL']);
    calls.push(['a page source with bootMs NaN', guestOf(like({ bootMs: Number.NaN })), 'EINVAL']);
    calls.push(['a page source whose layout has no bootKey', guestOf(like({ layout: (r: number) => ({ ramPages: r / PAGE_SIZE, kindOf: () => 'zero' }) })), 'EINVAL']);
    calls.push(['a page source whose layout has the wrong size', guestOf(like({ layout: (r: number) => ({ ...src.layout(r), ramPages: 1 }) })), 'EINVAL']);
    calls.push(['a page source whose layout() is not a function', guestOf({ layout: 5 }), 'EINVAL']);
    calls.push(['burst(1e12, 0)', () => g.burst(1e12, 0), 'EINVAL']);
    calls.push(['Host.advance(2^53)', () => hw.host.advance(2 ** 53), 'EOVERFLOW']);
    calls.push(['Host.advance(1e13)', () => hw.host.advance(1e13), 'E2BIG']);
    calls.push(['setWorkload dirtyRate 1e12', () => g.setWorkload({ dirtyRate: 1e12, burst: null }), 'EINVAL']);
    calls.push(['offlineBlock(99)', () => hw.host.offlineBlock(99), 'EINVAL']);
    calls.push(['Host.restore(null)', () => Host.restore(null as never, images), 'EINVAL']);
    const wrong: string[] = [];
    for (const [label, fn, code] of calls) {
      const got = outcome(fn);
      if (got !== code) wrong.push(`${label}: expected ${code}, got ${got}`);
    }
    expect(wrong).toEqual([]);
    expect(Buffer.compare(g.readPhys(0, 16 * 1024 * 1024), shadow)).toBe(0);
    hw.host.checkInvariants();
    Host.restore(hw.host.save(), images).checkInvariants();
    expect(calls.length).toBeGreaterThan(120);
  });
});
