/**
 * The real kernel as oracle: runs a Scenario on real processes under this machine's
 * KSM (test/oracle/ksm-driver.c) and returns what each `settle` observed.
 *
 * Everything that touches /sys/kernel/mm/ksm goes through `withRealKsm`: it serializes
 * users (an in-process queue plus flock(2) on LOCK_PATH, held by a small helper process
 * so that a crashed holder frees it), saves every knob it may change, configures the
 * kernel like 2.6.33, runs the caller, and restores the knobs in a finally block — and
 * also from SIGINT/SIGTERM/SIGHUP handlers and process 'exit', synchronously.
 *
 * Restore order matters: run=2 first (unmerges every KSM page and frees every
 * rmap_item; max_page_sharing refuses to change while KSM pages exist, and
 * smart_scan/use_zero_pages are documented to need it too), then the knobs, then `run`
 * back to what we found.
 *
 * ---------------------------------------------------------------------------------
 * Linux 6.x against 2.6.33, for the simple scenarios the differential tests run.
 * Checked on this machine (6.18) by experiment (EXPERIMENTS below) and against mm/ksm.c:
 *
 *  - Knobs that 2.6.33 lacks and that change merging, so we pin them:
 *    max_page_sharing (default 256): past 256 sharers of one content 6.x starts a
 *      second KSM page (a "stable_node chain" of dups), so pages_shared would be 2
 *      where 2.6.33 says 1. Pinned to 2147483647, chains never form.
 *    smart_scan (default 1): skips pages that did not merge in recent scans for an
 *      exponentially growing number of scans; pages_skipped counts them. Converged
 *      counts would mostly agree, but the scan work and timing would not. Pinned to 0.
 *    use_zero_pages (default 0): when 1, an all-zero page is replaced by the zero page
 *      (counted in ksm_zero_pages, not in pages_shared/pages_sharing). Kept 0.
 *    advisor_mode (default none): "scan-time" retunes pages_to_scan itself. Kept none.
 *  - Transparent huge pages do not exist in 2.6.33. With THP (or mTHP) enabled, 6.x
 *    may back an anonymous region with a huge folio, and KSM must split it before
 *    merging. The driver madvises every region MADV_NOHUGEPAGE, so every page is a
 *    small page as in 2.6.33.
 *  - The checksum gate is the same (a page enters the unstable tree on the second scan
 *    that finds its checksum unchanged), but the checksum is xxhash, not jhash2 with
 *    seed 17: only speed differs, never which pages merge.
 *  - pages_volatile is still computed as rmap_items - shared - sharing - unshared.
 *  - A page mapped only by a read fault is the zero page: not anon, so no rmap_item in
 *    either kernel (EXPERIMENTS: all four statistics 0).
 *  - A region with VM_MERGEABLE but no anon_vma is skipped in both.
 *  - PROT_NONE pages are merged, and a KSM page stays merged under PROT_NONE (x86:
 *    pte_present() is true for a PROT_NONE pte, so 2.6.33's follow_page returned the
 *    page too, and 6.x's folio walk does the same). Other architectures may differ.
 *  - A page COW-shared by fork is never merged with itself ("Don't substitute a ksm
 *    page for a forked page" is in both); the second rmap_item stays out of the trees
 *    and counts as volatile in both.
 *  - An mm whose VM_MERGEABLE vmas are all gone is dropped from the scan list by ksmd
 *    in both; then ksmd sleeps and full_scans stops advancing. The driver's settle
 *    handles that (it waits for every statistic to reach 0 instead).
 *  - 6.x merges across NUMA nodes only with merge_across_nodes=1 (2.6.33 always did);
 *    this machine has one node, and we leave the knob as found.
 *  - run=2 resets full_scans to 0 in both.
 *
 * EXPERIMENTS (Linux 6.18 on this machine; each a scenario run through runOnRealKernel;
 * shared/sharing/unshared/volatile after settle; "a" fills 10 pages of byte 0x61
 * unless said otherwise, then madvises them MADV_MERGEABLE):
 *   identical pages                                    1/9/0/0
 *   mprotect(PROT_NONE) before madvise                  1/9/0/0   (PROT_NONE merges)
 *   merged, then mprotect(PROT_NONE)                    1/9/0/0
 *   mprotect(PROT_READ) before madvise                  1/9/0/0
 *   never written, read only (zero page), madvised     0/0/0/0   (no rmap_items)
 *     ... then one byte written to page 0               0/0/1/0   (only that page)
 *   pages written with zeros (use_zero_pages 0)         1/9/0/0   (ordinary KSM page)
 *   10 unique pages, fork                               0/0/10/10 (child's items volatile)
 *     ... child exits                                   0/0/10/0
 *   identical pages, fork before any scan               1/19/0/0
 *   merged, then fork                                   1/19/0/0; child writes page 0: 1/18/1/0
 *   merged, then exit                                   0/0/0/0   (full_scans stops)
 *   merged, then MADV_UNMERGEABLE                       0/0/0/0
 *   merged, then MADV_DONTNEED of 4 pages               1/5/0/0
 *   merged, then munmap of 3 pages                      1/6/0/0
 *   300 identical pages, max_page_sharing 2147483647    1/299/0/0
 *   300 identical pages, max_page_sharing 256 (6.x default)
 *                                                       2/298/0/0 (stable_node_chains 1,
 *                                                                  stable_node_dups 2)
 * Reading the four files while ksmd runs can catch one rmap_item between its removal
 * from the unstable tree and its reinsertion (seen: unshared N, volatile 1 for a
 * moment): the driver pauses ksmd (run=0) around every read of the statistics.
 * ---------------------------------------------------------------------------------
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KsmStats, Scenario, StageResult, Step } from './scenario.js';

export const KSM_SYSFS = '/sys/kernel/mm/ksm';
export const LOCK_PATH = '/tmp/samepage-real-ksm.lock';
/**
 * The knobs a session found, written while it runs and removed once they are restored.
 * If it is still there when the next session holds the lock, its owner died without
 * restoring (SIGKILL): the next session restores these values first, and treats them
 * as the values found.
 */
export const SAVED_PATH = '/tmp/samepage-real-ksm.saved.json';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const BUILD_DIR = path.join(HERE, 'build');
const DRIVER_SRC = path.join(HERE, 'ksm-driver.c');

/** Writable files of /sys/kernel/mm/ksm that we may change (and so save and restore). */
export type KsmKnob =
  | 'run'
  | 'pages_to_scan'
  | 'sleep_millisecs'
  | 'max_page_sharing'
  | 'smart_scan'
  | 'use_zero_pages'
  | 'advisor_mode'
  | 'merge_across_nodes';

/** Read-only counters. */
export type KsmCounter =
  | 'pages_shared'
  | 'pages_sharing'
  | 'pages_unshared'
  | 'pages_volatile'
  | 'full_scans'
  | 'pages_scanned'
  | 'pages_skipped'
  | 'ksm_zero_pages'
  | 'stable_node_chains'
  | 'stable_node_dups';

/** Saved before and restored after every session, in this order of saving. */
const SAVED_KNOBS: readonly KsmKnob[] = [
  'run',
  'pages_to_scan',
  'sleep_millisecs',
  'max_page_sharing',
  'smart_scan',
  'use_zero_pages',
  'advisor_mode',
  'merge_across_nodes',
];

/** 2.6.33 has none of these: the values that make 6.x behave like it (see above). */
export const LIKE_2_6_33: ReadonlyArray<readonly [KsmKnob, string]> = [
  ['max_page_sharing', '2147483647'],
  ['smart_scan', '0'],
  ['use_zero_pages', '0'],
  ['advisor_mode', 'none'],
];

export interface RealKsmConfig {
  /** pages_to_scan while the session runs. Default 100000. */
  pagesToScan?: number;
  /** sleep_millisecs while the session runs. Default 0. */
  sleepMillisecs?: number;
  /** `run` once configured: 1 (ksmd scanning) by default; 0 to start it yourself. */
  run?: 0 | 1;
  /** How long to wait for another user of the real KSM. Default 10 minutes. */
  lockTimeoutMs?: number;
  /**
   * The feature knobs to set (after run=2), instead of the 2.6.33-like ones:
   * e.g. the 6.18 defaults (max_page_sharing 256, smart_scan 1, use_zero_pages 0,
   * advisor_mode none), or those with use_zero_pages 1. Default LIKE_2_6_33.
   */
  knobs?: ReadonlyArray<readonly [KsmKnob, string]>;
}

export interface RealKsmStats extends KsmStats {
  full_scans: number;
}

/** A configured real KSM, valid inside `withRealKsm`'s callback. */
export interface RealKsm {
  /** Knob values found before the session configured anything. */
  readonly found: Readonly<Partial<Record<KsmKnob, string>>>;
  /** A knob or counter, trimmed (advisor_mode: the selected mode only). */
  read(name: KsmKnob | KsmCounter): string;
  readNumber(name: KsmKnob | KsmCounter): number;
  write(knob: KsmKnob, value: number | string): void;
  stats(): RealKsmStats;
  /** child_process.spawn, but killed (SIGKILL) if the session ends or is interrupted first. */
  spawn(file: string, args: readonly string[]): ChildProcess;
}

// ---------------------------------------------------------------------------------
// sysfs

function knobPath(name: string): string {
  return path.join(KSM_SYSFS, name);
}

function knobExists(name: string): boolean {
  return fs.existsSync(knobPath(name));
}

function readKnob(name: KsmKnob | KsmCounter): string {
  const raw = fs.readFileSync(knobPath(name), 'utf8').trim();
  if (name === 'advisor_mode') {
    // "[none] scan-time": the selected one is bracketed.
    const m = /\[([^\]]+)\]/.exec(raw);
    return m ? m[1]! : raw;
  }
  return raw;
}

function readNumber(name: KsmKnob | KsmCounter): number {
  const s = readKnob(name);
  const n = Number(s);
  if (!Number.isFinite(n)) throw new Error(`${knobPath(name)}: expected a number, found '${s}'`);
  return n;
}

function writeKnob(name: KsmKnob, value: number | string): void {
  try {
    fs.writeFileSync(knobPath(name), String(value));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new Error(`write ${knobPath(name)} = ${value}: ${code}`, { cause: e });
  }
}

function readStats(): RealKsmStats {
  return {
    pages_shared: readNumber('pages_shared'),
    pages_sharing: readNumber('pages_sharing'),
    pages_unshared: readNumber('pages_unshared'),
    pages_volatile: readNumber('pages_volatile'),
    full_scans: readNumber('full_scans'),
  };
}

/** The current value of every knob in SAVED_KNOBS that this kernel has. */
export function readSavedKnobs(): Partial<Record<KsmKnob, string>> {
  const out: Partial<Record<KsmKnob, string>> = {};
  for (const k of SAVED_KNOBS) if (knobExists(k)) out[k] = readKnob(k);
  return out;
}

/**
 * Puts back `saved`. Synchronous, so that it can run from a signal handler or 'exit'.
 * Tries every step even when one fails; returns the failures.
 */
function restoreKnobs(saved: Partial<Record<KsmKnob, string>>): string[] {
  const errors: string[] = [];
  const attempt = (f: () => void): void => {
    try {
      f();
    } catch (e) {
      errors.push((e as Error).message);
    }
  };
  attempt(() => writeKnob('run', 2));
  const order: KsmKnob[] = [
    'merge_across_nodes',
    'max_page_sharing',
    'smart_scan',
    'use_zero_pages',
    'pages_to_scan', // before advisor_mode: an active advisor refuses pages_to_scan
    'sleep_millisecs',
    'advisor_mode',
  ];
  for (const k of order) {
    const v = saved[k];
    if (v === undefined) continue;
    attempt(() => {
      if (readKnob(k) !== v) writeKnob(k, v);
    });
  }
  if (saved.run !== undefined) attempt(() => writeKnob('run', saved.run!));
  for (const k of SAVED_KNOBS) {
    const v = saved[k];
    if (v === undefined) continue;
    attempt(() => {
      const now = readKnob(k);
      if (now !== v) throw new Error(`${k} is ${now} after restore, was ${v}`);
    });
  }
  return errors;
}

/** Linux 6.18's defaults for the same knobs: the configuration a real host runs. */
export const DEFAULTS_6_18: ReadonlyArray<readonly [KsmKnob, string]> = [
  ['max_page_sharing', '256'],
  ['smart_scan', '1'],
  ['use_zero_pages', '0'],
  ['advisor_mode', 'none'],
];

function configure(cfg: Required<Omit<RealKsmConfig, 'lockTimeoutMs'>>): void {
  // run=2 first: max_page_sharing (and, per the kernel docs, smart_scan and
  // use_zero_pages) return EBUSY while KSM pages exist.
  writeKnob('run', 2);
  for (const [k, v] of cfg.knobs) {
    if (!knobExists(k)) continue; // an older 6.x, or 5.x: the knob does not exist yet
    if (readKnob(k) !== v) writeKnob(k, v);
  }
  writeKnob('pages_to_scan', cfg.pagesToScan);
  writeKnob('sleep_millisecs', cfg.sleepMillisecs);
  writeKnob('run', cfg.run);
}

// ---------------------------------------------------------------------------------
// building the C helpers

/**
 * Compiles `src` (a path relative to the repository, or absolute) with `cc -O2` into
 * test/oracle/build/`name` when the binary is missing or older than the source.
 * Concurrent callers (vitest workers) compile to private names and rename atomically.
 */
export function buildHelper(src: string, name: string): string {
  const srcPath = path.isAbsolute(src) ? src : path.join(ROOT, src);
  const out = path.join(BUILD_DIR, name);
  const srcTime = fs.statSync(srcPath).mtimeMs;
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs >= srcTime) return out;
  fs.mkdirSync(BUILD_DIR, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  const r = spawnSync('cc', ['-O2', '-Wall', '-Wextra', '-o', tmp, srcPath], { encoding: 'utf8' });
  if (r.error) throw new Error(`cc: ${r.error.message}`);
  if (r.status !== 0) {
    fs.rmSync(tmp, { force: true });
    throw new Error(`cc -O2 ${path.relative(ROOT, srcPath)} failed:\n${r.stderr}`);
  }
  fs.renameSync(tmp, out);
  return out;
}

function driverPath(): string {
  return buildHelper(DRIVER_SRC, 'ksm-driver');
}

// ---------------------------------------------------------------------------------
// availability

let availability: Promise<string | null> | null = null;

/** null when the real KSM can be used here; otherwise why not (tests print it and skip). */
export function realKsmAvailable(): Promise<string | null> {
  availability ??= Promise.resolve().then(checkAvailable);
  return availability;
}

function checkAvailable(): string | null {
  if (process.env.SAMEPAGE_NO_REAL_KSM) return 'SAMEPAGE_NO_REAL_KSM is set';
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  if (!knobExists('run')) return `${KSM_SYSFS} is missing (a kernel without CONFIG_KSM)`;
  const uid = process.getuid?.() ?? -1;
  if (uid !== 0) return `not root (uid ${uid}): ${KSM_SYSFS} is writable only by root`;
  try {
    fs.accessSync(knobPath('run'), fs.constants.W_OK);
  } catch (e) {
    return `${knobPath('run')} is not writable: ${(e as Error).message}`;
  }
  const cc = spawnSync('cc', ['--version'], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) return 'no C compiler (`cc`) to build test/oracle/ksm-driver.c';
  try {
    driverPath();
  } catch (e) {
    return (e as Error).message;
  }
  return null;
}

// ---------------------------------------------------------------------------------
// sessions: lock, save, configure, restore

interface Session {
  saved: Partial<Record<KsmKnob, string>>;
  children: Set<ChildProcess>;
  restored: boolean;
}

let active: Session | null = null;
let queue: Promise<unknown> = Promise.resolve();

/** Synchronous: kill our children, restore the knobs. For signals and 'exit'. */
function emergencyRestore(): void {
  const s = active;
  if (!s || s.restored) return;
  s.restored = true;
  for (const c of s.children) c.kill('SIGKILL');
  const errors = restoreKnobs(s.saved);
  if (errors.length === 0) fs.rmSync(SAVED_PATH, { force: true });
  if (errors.length) process.stderr.write(`samepage real KSM: restore failed: ${errors.join('; ')}\n`);
}

/** Called with the lock held: a previous session that died unrestored left SAVED_PATH. */
function recoverLeftover(expected = false): void {
  let text: string;
  try {
    text = fs.readFileSync(SAVED_PATH, 'utf8');
  } catch {
    return;
  }
  const saved = JSON.parse(text) as Partial<Record<KsmKnob, string>>;
  // A test that kills its own session on purpose expects this: it restores quietly.
  if (!expected) process.stderr.write(`samepage real KSM: a previous session died unrestored; restoring ${text}\n`);
  const errors = restoreKnobs(saved);
  if (errors.length) throw new Error(`restoring the knobs a dead session left in ${SAVED_PATH}: ${errors.join('; ')}`);
  fs.rmSync(SAVED_PATH, { force: true });
}

const onExit = (): void => emergencyRestore();
const onSignal = (sig: NodeJS.Signals): void => {
  emergencyRestore();
  removeHandlers();
  // Let the signal do what it would have done without us (usually: terminate).
  process.kill(process.pid, sig);
};

function installHandlers(): void {
  process.on('exit', onExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
}

function removeHandlers(): void {
  process.off('exit', onExit);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('SIGHUP', onSignal);
}

/** Lines of a child's stdout, one at a time; null once it has closed. */
export function lineReader(child: ChildProcess): () => Promise<string | null> {
  let buf = '';
  const lines: string[] = [];
  let ended = false;
  let wake: (() => void) | null = null;
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    wake?.();
  });
  child.stdout!.on('close', () => {
    ended = true;
    wake?.();
  });
  return async () => {
    while (lines.length === 0 && !ended) await new Promise<void>((r) => (wake = r));
    wake = null;
    return lines.shift() ?? null;
  };
}

function waitExit(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('close', (code) => resolve(code)));
}

/** flock(LOCK_EX) on LOCK_PATH, held by `ksm-driver lock` until its stdin closes. */
async function takeLock(timeoutMs: number): Promise<ChildProcess> {
  const helper = spawn(driverPath(), ['lock', LOCK_PATH, String(timeoutMs)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  helper.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const next = lineReader(helper);
  for (;;) {
    const line = await next();
    if (line === 'locked') return helper;
    if (line !== null && line.startsWith('waiting')) {
      process.stderr.write(`samepage real KSM: waiting for ${LOCK_PATH} (${line.slice(8)})\n`);
      continue;
    }
    helper.kill('SIGKILL');
    throw new Error(
      line === 'timeout'
        ? `another user held ${LOCK_PATH} for over ${timeoutMs} ms`
        : `lock helper failed: ${stderr.trim() || line}`,
    );
  }
}

function serialized<T>(fn: () => Promise<T>): Promise<T> {
  const run = queue.then(fn);
  queue = run.catch(() => undefined);
  return run;
}

async function releaseLock(lock: ChildProcess): Promise<void> {
  lock.stdin!.end();
  await waitExit(lock);
}

/**
 * Runs `fn` holding the real-KSM lock, configuring nothing: for reading the knobs
 * while no other session can be changing them.
 */
/** `expectLeftover`: the caller killed a session on purpose, so finding what it left is no news. */
export function withRealKsmLock<T>(fn: () => T | Promise<T>, opts: { lockTimeoutMs?: number; expectLeftover?: boolean } = {}): Promise<T> {
  return serialized(async () => {
    const reason = await realKsmAvailable();
    if (reason !== null) throw new Error(`the real KSM is unavailable: ${reason}`);
    const lock = await takeLock(opts.lockTimeoutMs ?? 600_000);
    try {
      recoverLeftover(opts.expectLeftover === true);
      return await fn();
    } finally {
      await releaseLock(lock);
    }
  });
}

/**
 * Runs `fn` with the real KSM to itself, configured like 2.6.33 with `config`, and
 * restores every knob afterwards (also on SIGINT/SIGTERM/SIGHUP and 'exit').
 * Throws if the real KSM is unavailable (callers check realKsmAvailable() first).
 */
export function withRealKsm<T>(config: RealKsmConfig, fn: (k: RealKsm) => Promise<T>): Promise<T> {
  return serialized(() => session(config, fn));
}

async function session<T>(config: RealKsmConfig, fn: (k: RealKsm) => Promise<T>): Promise<T> {
  const reason = await realKsmAvailable();
  if (reason !== null) throw new Error(`the real KSM is unavailable: ${reason}`);
  const lock = await takeLock(config.lockTimeoutMs ?? 600_000);
  const s: Session = { saved: {}, children: new Set(), restored: false };
  let failure: unknown = null;
  let result: T | undefined;
  try {
    recoverLeftover();
    s.saved = readSavedKnobs();
    fs.writeFileSync(SAVED_PATH, JSON.stringify(s.saved));
    active = s;
    installHandlers();
    configure({
      pagesToScan: config.pagesToScan ?? 100_000,
      sleepMillisecs: config.sleepMillisecs ?? 0,
      run: config.run ?? 1,
      knobs: config.knobs ?? LIKE_2_6_33,
    });
    const k: RealKsm = {
      found: { ...s.saved },
      read: readKnob,
      readNumber,
      write: writeKnob,
      stats: readStats,
      spawn(file, args) {
        const c = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
        s.children.add(c);
        c.once('close', () => s.children.delete(c));
        return c;
      },
    };
    result = await fn(k);
  } catch (e) {
    failure = e;
  } finally {
    // Children first: their memory should be gone before run=2 would unmerge it.
    for (const c of s.children) c.kill('SIGKILL');
    await Promise.all([...s.children].map(waitExit));
    let errors: string[] = [];
    if (!s.restored) {
      s.restored = true;
      errors = restoreKnobs(s.saved);
      if (errors.length === 0) fs.rmSync(SAVED_PATH, { force: true });
    }
    removeHandlers();
    active = null;
    await releaseLock(lock);
    if (errors.length) {
      const msg = `restoring /sys/kernel/mm/ksm failed: ${errors.join('; ')}`;
      failure = failure ? new Error(`${(failure as Error).message}\n(and ${msg})`, { cause: failure }) : new Error(msg);
    }
  }
  if (failure) throw failure;
  return result as T;
}

// ---------------------------------------------------------------------------------
// scenarios

const NAME = /^[A-Za-z0-9_.:-]+$/;
const ADVICE: Record<string, number> = { MADV_MERGEABLE: 12, MADV_UNMERGEABLE: 13, MADV_DONTNEED: 4 };

function u32OrDash(v: number | undefined, what: string): string {
  if (v === undefined) return '-';
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`${what} must be a u32, found ${v}`);
  return String(v);
}

/**
 * The line form ksm-driver reads (its header comment documents it). Process and region
 * names become indexes in order of first appearance; names must match NAME because the
 * driver writes them into JSON unescaped.
 */
export function encodeScenario(s: Scenario, opts: { timeoutMs?: number; pauseForStats?: boolean; modern?: boolean } = {}): string {
  const procs = new Map<string, number>();
  const regions = new Map<string, number>();
  const proc = (name: string, create: boolean, i: number): number => {
    if (!NAME.test(name)) throw new Error(`step ${i}: process name '${name}' must match ${NAME}`);
    let p = procs.get(name);
    if (p === undefined) {
      if (!create) throw new Error(`step ${i}: process '${name}' was never spawned or forked`);
      p = procs.size;
      procs.set(name, p);
    }
    return p;
  };
  const region = (name: string, create: boolean, i: number): number => {
    if (!NAME.test(name)) throw new Error(`step ${i}: region name '${name}' must match ${NAME}`);
    let r = regions.get(name);
    if (r === undefined) {
      if (!create) throw new Error(`step ${i}: region '${name}' was never mmapped`);
      r = regions.size;
      regions.set(name, r);
    }
    return r;
  };
  const int = (v: number, what: string, i: number): number => {
    if (!Number.isInteger(v) || v < 0) throw new Error(`step ${i}: ${what} must be a non-negative integer, found ${v}`);
    return v;
  };

  const body: string[] = [];
  s.steps.forEach((st: Step, i) => {
    const pre = `step ${i} ${st.op}`;
    switch (st.op) {
      case 'spawn':
        body.push(`${pre} ${proc(st.proc, true, i)}`);
        break;
      case 'mmap':
        body.push(`${pre} ${proc(st.proc, false, i)} ${region(st.region, true, i)} ${int(st.pages, 'pages', i)} ${st.prot ?? 'rw'}`);
        break;
      case 'munmap':
        body.push(`${pre} ${proc(st.proc, false, i)} ${region(st.region, false, i)} ${int(st.first, 'first', i)} ${int(st.count, 'count', i)}`);
        break;
      case 'fill':
        if (!Number.isInteger(st.byte) || st.byte < 0 || st.byte > 255) throw new Error(`step ${i}: byte must be 0..255`);
        body.push(
          `${pre} ${proc(st.proc, false, i)} ${region(st.region, false, i)} ${int(st.first, 'first', i)} ${int(st.count, 'count', i)} ` +
            `${st.byte} ${u32OrDash(st.tag, 'tag')} ${u32OrDash(st.tailTag, 'tailTag')}`,
        );
        break;
      case 'write': {
        const hex = Buffer.from(st.bytes).toString('hex');
        if (st.bytes.some((b) => !Number.isInteger(b) || b < 0 || b > 255)) throw new Error(`step ${i}: bytes must be 0..255`);
        body.push(`${pre} ${proc(st.proc, false, i)} ${region(st.region, false, i)} ${int(st.offset, 'offset', i)} ${hex || '-'}`);
        break;
      }
      case 'madvise':
        body.push(
          `${pre} ${proc(st.proc, false, i)} ${region(st.region, false, i)} ${int(st.first, 'first', i)} ${int(st.count, 'count', i)} ${ADVICE[st.advice]}`,
        );
        break;
      case 'mprotect':
        body.push(`${pre} ${proc(st.proc, false, i)} ${region(st.region, false, i)} ${int(st.first, 'first', i)} ${int(st.count, 'count', i)} ${st.prot}`);
        break;
      case 'fork':
        body.push(`${pre} ${proc(st.proc, false, i)} ${proc(st.child, true, i)}`);
        break;
      case 'exit':
        body.push(`${pre} ${proc(st.proc, false, i)}`);
        break;
      case 'settle':
        body.push(`${pre} ${int(st.scans ?? 4, 'scans', i)}`);
        break;
      case 'prctl':
        body.push(`${pre} ${proc(st.proc, false, i)} ${st.on ? 1 : 0}`);
        break;
      default: {
        const never: never = st;
        throw new Error(`unknown step ${JSON.stringify(never)}`);
      }
    }
  });

  const head = [
    'samepage-scenario 1',
    `timeout_ms ${opts.timeoutMs ?? 60_000}`,
    `pause_for_stats ${opts.pauseForStats === false ? 0 : 1}`,
    ...(opts.modern === true ? ['modern 1'] : []),
    `procs ${procs.size}`,
    ...[...procs].map(([n, p]) => `proc ${p} ${n}`),
    `regions ${regions.size}`,
    ...[...regions].map(([n, r]) => `region ${r} ${n}`),
  ];
  return [...head, ...body, 'end', ''].join('\n');
}

export interface RunOptions {
  /** pages_to_scan for the run. Default 100000 (1000000 with `knobs`). */
  pagesToScan?: number;
  /** Per step; a settle may take this long to converge. Default 60 s. */
  timeoutMs?: number;
  /**
   * Run in 6.18's own configuration: these feature knobs (DEFAULTS_6_18, or a
   * variant of them) instead of the 2.6.33-like ones; each settle then does exactly
   * its full scans (one batch of pages_to_scan 1000000 is one full scan, and
   * sleep_millisecs 100 gives the driver a nap to stop ksmd in) and reports 6.x's
   * statistics and every process's ksm_stat.
   */
  knobs?: ReadonlyArray<readonly [KsmKnob, string]>;
}

/** One settle as the driver printed it: StageResult plus the full_scans it waited over. */
interface DriverStage extends StageResult {
  step: number;
  fullScans: [number, number];
}

/**
 * Runs `s` on real processes under the real KSM and returns one StageResult per
 * `settle`, in order. Throws (naming the step) if the driver fails.
 */
export async function runOnRealKernel(s: Scenario, opts: RunOptions = {}): Promise<StageResult[]> {
  // A 6.x settle must end in ksmd's nap after its last full scan. On a machine so
  // busy that the driver is not scheduled within the 100 ms nap, ksmd starts one scan
  // too many and the driver refuses the settle (it never reports inexact figures):
  // then the whole session runs again with a nap three times as long, twice at most.
  for (let nap = 100, attempt = 1; ; nap *= 3, attempt++) {
    try {
      return await runOnRealKernelOnce(s, opts, nap);
    } catch (e) {
      if (opts.knobs === undefined || attempt === 3 || !(e instanceof Error) || !e.message.includes('settle wanted exactly')) throw e;
      process.stderr.write(`samepage real KSM: ${e.message}; running '${s.name}' again with a ${nap * 3} ms nap\n`);
    }
  }
}

async function runOnRealKernelOnce(s: Scenario, opts: RunOptions, napMillisecs: number): Promise<StageResult[]> {
  const modern = opts.knobs !== undefined;
  const input = encodeScenario(s, { timeoutMs: opts.timeoutMs, modern });
  const driver = driverPath();
  const config: RealKsmConfig = modern
    ? { pagesToScan: opts.pagesToScan ?? 1_000_000, sleepMillisecs: napMillisecs, run: 0, knobs: opts.knobs }
    : { pagesToScan: opts.pagesToScan ?? 100_000, sleepMillisecs: 0, run: 0 };
  return withRealKsm(config, async (k) => {
    // pages_scanned and pages_skipped count from boot: report them from here on.
    const scanned0 = modern ? k.readNumber('pages_scanned') : 0;
    const skipped0 = modern ? k.readNumber('pages_skipped') : 0;
    const child = k.spawn(driver, ['run']);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin!.on('error', () => undefined); // EPIPE if it dies early: reported below
    child.stdin!.end(input);
    const code = await waitExit(child);
    if (code !== 0) {
      throw new Error(`ksm-driver failed on scenario '${s.name}' (exit ${code ?? child.signalCode}): ${stderr.trim()}`);
    }
    return stdout
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => {
        const d = JSON.parse(l) as DriverStage;
        const r: StageResult = { stats: d.stats, digests: d.digests };
        if (d.modern !== undefined) {
          r.modern = { ...d.modern, pages_scanned: d.modern.pages_scanned - scanned0, pages_skipped: d.modern.pages_skipped - skipped0 };
          r.procs = d.procs;
        }
        return r;
      });
  });
}
