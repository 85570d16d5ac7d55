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
  madvise: ['rangeStart', 'rangeLen', 'advice'],
  mlock: ['lockStart', 'lockLen'],
  munlock: ['lockStart', 'lockLen'],
  fork: ['name'],
  exit: 'ends',
  read: ['accessAddr', 'accessLen'],
  peekMem: ['accessAddr', 'accessLen'],
  write: ['accessAddr', 'bytes'],
  pokeMem: ['accessAddr', 'bytes'],
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
  migratePage: ['pfn'],
  compactMemory: [],
  spawn: ['name'],
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
  return { k, procs, areas, shadow, ctx: { area: areas[0]!, pid: procs[0]!.pid, pfn: procs[0]!.pfnOf(areas[0]!)!, nrFrames: k.mem.nrFrames } };
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

  it('ksmd and sysfs: runFullScans and every file write refuse bad values, changing nothing', () => {
    const cases = { n: 0 };
    const wrong = [
      ...abuse({ runFullScans: ['fullScans'] }, (w) => w.k.ksmd, cases),
      ...abuse({ write: ['sysfsPath', 'sysfsValue'], read: ['sysfsPath'] }, (w) => w.k.sysfs, cases),
    ];
    expect(wrong).toEqual([]);
    expect(cases.n).toBeGreaterThan(30);
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

function hostWorld(): HostWorld {
  const host = new Host({ memoryMiB: 64, swapMiB: 16, blockMiB: 16, images, ksm: { policy: 'fixed', run: 1, pagesToScan: 200, sleepMillisecs: 20, maxKernelPages: null } });
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

/**
 * Each field of a valid options record set to each never-valid value: the call
 * must be EINVAL, and the host intact, consistent and still saving a snapshot that
 * restores. Returns the cases that went wrong.
 */
function abuseRecord(what: string, valid: Record<string, unknown>, call: (hw: HostWorld, rec: unknown) => unknown, cases: { n: number }): string[] {
  const wrong: string[] = [];
  const variants: [string, unknown][] = [
    ['null', null],
    ['5', 5],
    ["'x'", 'x'],
    ...fieldPaths(valid).flatMap((path) => NEVER_VALID.map(([l, v]) => [`${path.join('.')}: ${l}`, withField(valid, path, v)] as [string, unknown])),
    ['an unknown field', { ...valid, bogus: 1 }],
  ];
  const hw = hostWorld();
  for (const [label, rec] of variants) {
    cases.n++;
    const before = hw.host.log.length;
    const got = outcome(() => call(hw, rec));
    if (got !== 'EINVAL') wrong.push(`${what} ${label}: ${got}`);
    // A refusal must leave the host consistent; anything accepted must also save a
    // snapshot that restores (a save nothing can restore is lost work).
    const after = outcome(() => {
      hw.host.checkInvariants();
      if (got === 'ok') Host.restore(hw.host.save(), images).checkInvariants();
    });
    if (after !== 'ok') wrong.push(`${what} ${label}: afterwards ${after}`);
    if (hw.host.log.length > before + 1) wrong.push(`${what} ${label}: logged ${hw.host.log.length - before} entries`);
  }
  return wrong;
}

describe('the VM manager refuses at the door what its snapshot would refuse', () => {
  it('createGuest, setPolicy, setKnobs and setWorkload: every field of their records', () => {
    const cases = { n: 0 };
    const wrong = [
      ...abuseRecord('createGuest', { name: 'b', image: 'tiny', version: '1', memoryMiB: 16, memMerge: true, workload: { dirtyRate: 1, burst: { everyMs: 1000, pages: 2, overMs: 10 } } }, (hw, r) => hw.host.createGuest(r as never), cases),
      ...abuseRecord('setPolicy fixed', { policy: 'fixed', run: 1, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: 1000 }, (hw, r) => hw.host.setPolicy(r as never), cases),
      ...abuseRecord('setPolicy ksmtuned', { policy: 'ksmtuned', config: { monitorInterval: 60 }, maxKernelPages: null }, (hw, r) => hw.host.setPolicy(r as never), cases),
      ...abuseRecord('setKnobs', { run: 1, pagesToScan: 100, sleepMillisecs: 20 }, (hw, r) => hw.host.setKnobs(r as never), cases),
      ...abuseRecord('setWorkload', { dirtyRate: 1, burst: { everyMs: 1000, pages: 2, overMs: 10 } }, (hw, r) => hw.guest.setWorkload(r as never), cases),
    ];
    expect(wrong).toEqual([]);
    expect(cases.n).toBeGreaterThan(100);
  });

  it('Host options: every field, before anything boots', () => {
    const valid = { memoryMiB: 64, swapMiB: 16, blockMiB: 16, seed: 1, tickMs: 100, ksm: { policy: 'fixed', run: 0, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: null } };
    const wrong: string[] = [];
    for (const path of fieldPaths(valid)) {
      for (const [l, v] of NEVER_VALID) {
        if (path[0] === 'seed' && l === '-1') continue; // any safe integer seeds the PRNG
        const got = outcome(() => new Host(withField(valid, path, v) as never));
        if (got !== 'EINVAL') wrong.push(`${path.join('.')}: ${l}: ${got}`);
      }
    }
    for (const [l, v] of [['null', null], ['undefined', undefined], ['5', 5], ['{}', {}], ['blockMiB 4096', { ...valid, blockMiB: 4096 }], ['a guest name for images', { ...valid, images: 'guests' }]] as [string, unknown][]) {
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
