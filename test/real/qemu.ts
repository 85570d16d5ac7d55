/**
 * Real QEMU guests for tests and measurements: boot N small Linux guests under TCG
 * from the cache that scripts/real-guests/setup.sh fills, each with a QMP socket and
 * its serial console on a pipe; pause and resume them; and kill them, always.
 *
 * Lifetime rules (a QEMU left running holds hundreds of MiB and, with mem-merge on,
 * keeps the real ksmd busy for every later test):
 *  - every QEMU is started through `setpriv --pdeathsig KILL`, so the kernel kills it
 *    if this Node process dies, even by SIGKILL;
 *  - `withRealGuests` kills every guest it started by pid (SIGKILL) in a finally block,
 *    and from 'exit' and SIGINT/SIGTERM/SIGHUP handlers, synchronously;
 *  - while any guest has mem-merge on, the real-KSM lock (/tmp/samepage-real-ksm.lock,
 *    test/oracle/real.ts) is held for the guests' whole life, unless the caller already
 *    holds it (`lockHeld`: inside withRealKsm, taking it again would wait forever).
 *
 * Guests: the Debian kernel (vmlinuz from linux-image-amd64) with a busybox initramfs,
 * image 'a' or 'b' (b holds 1 MiB more file data; see setup.sh). /init prints
 * SAMEPAGE-READY on the console once user space runs, then a shell reads the console:
 * `RealGuest.shell()` types a command there and waits for its output.
 *
 * Why TCG: /dev/kvm exists on the development machine but cannot run stock guests.
 * TCG allocates guest RAM and QEMU's other RAM blocks exactly as KVM does (the same
 * qemu_ram_alloc, the same madvise calls; docs/real-guests.md), which is all that KSM sees.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Qmp } from '../../src/capture/qmp.js';
import { realKsmAvailable, withRealKsmLock } from '../oracle/real.js';

export const GUEST_CACHE = process.env.SAMEPAGE_GUEST_CACHE ?? '/var/cache/samepage/real-guests';
export const READY_MARK = 'SAMEPAGE-READY';

export interface GuestSpec {
  /** Names the guest in messages and in QEMU's -name. */
  name: string;
  /** Guest RAM. Default 128 MiB. */
  memoryMiB?: number;
  /** QEMU machine type. Default 'pc' (i440FX); 'q35' is the other common one. */
  machine?: 'pc' | 'q35';
  /** QEMU's mem-merge machine property (MADV_MERGEABLE on every RAM block). Default true. */
  memMerge?: boolean;
  /** Which initramfs image (setup.sh). Default 'a'. */
  initramfs?: 'a' | 'b';
  /** Extra kernel command line. */
  append?: string;
}

export interface RealGuest {
  readonly spec: Required<Omit<GuestSpec, 'append'>> & { append: string };
  /** QEMU's pid (setpriv execs QEMU, so it is the spawned process's pid). */
  readonly pid: number;
  /** The harness's own QMP connection (QEMU serves one client per QMP socket). */
  readonly qmpPath: string;
  readonly qmp: Qmp;
  /** A second QMP socket, left free for other clients: `samepage capture qmp:PATH`. */
  readonly capturePath: string;
  /** Everything the guest wrote on its serial console so far. */
  console(): string;
  /** QMP stop / cont. */
  stop(): Promise<void>;
  cont(): Promise<void>;
  /** Runs a shell command in the guest; resolves with its output (without the echo). */
  shell(command: string, timeoutMs?: number): Promise<string>;
}

/** null when real guests can be booted here; otherwise why not. */
export function realGuestsAvailable(): string | null {
  if (process.env.SAMEPAGE_NO_REAL_GUESTS) return 'SAMEPAGE_NO_REAL_GUESTS is set';
  if (process.platform !== 'linux' || process.arch !== 'x64') return `not Linux on x86-64 (${process.platform} ${process.arch})`;
  for (const f of ['manifest', 'vmlinuz', 'initramfs-a.cpio.gz', 'initramfs-b.cpio.gz']) {
    if (!fs.existsSync(path.join(GUEST_CACHE, f))) return `${path.join(GUEST_CACHE, f)} is missing: run scripts/real-guests/setup.sh (as root)`;
  }
  for (const tool of ['qemu-system-x86_64', 'setpriv']) {
    const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) return `${tool} is not installed (scripts/real-guests/setup.sh installs QEMU)`;
  }
  return null;
}

/** The guest kernel and QEMU versions the cache holds (its manifest), for reports. */
export function guestManifest(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(path.join(GUEST_CACHE, 'manifest'), 'utf8').split('\n')) {
    const m = /^(format|kernel|qemu|busybox-static) (.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** QEMU's command line for one guest. */
export function qemuArgs(spec: RealGuest['spec'], qmpPath: string, capturePath: string): string[] {
  return [
    '-accel', 'tcg',
    '-machine', `${spec.machine},mem-merge=${spec.memMerge ? 'on' : 'off'}`,
    '-m', `${spec.memoryMiB}M`,
    '-smp', '1',
    '-name', spec.name,
    '-display', 'none',
    '-monitor', 'none',
    '-serial', 'stdio',
    '-no-reboot',
    '-nic', 'none',
    '-qmp', `unix:${qmpPath},server=on,wait=off`,
    '-qmp', `unix:${capturePath},server=on,wait=off`,
    '-kernel', path.join(GUEST_CACHE, 'vmlinuz'),
    '-initrd', path.join(GUEST_CACHE, `initramfs-${spec.initramfs}.cpio.gz`),
    '-append', `console=ttyS0 panic=-1 quiet ${spec.append}`.trim(),
  ];
}

// ---------------------------------------------------------------------------------
// every QEMU this process started and has not yet seen exit

const live = new Map<number, ChildProcess>();

function killAllNow(): void {
  for (const pid of live.keys()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

const onExit = (): void => killAllNow();
const onSignal = (sig: NodeJS.Signals): void => {
  killAllNow();
  uninstall();
  process.kill(process.pid, sig);
};
let installed = 0;
function install(): void {
  if (installed++ > 0) return;
  process.on('exit', onExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
}
function uninstall(): void {
  if (--installed > 0) return;
  installed = 0;
  process.off('exit', onExit);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('SIGHUP', onSignal);
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.pid !== undefined) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await waitExit(child);
  if (child.pid !== undefined) live.delete(child.pid);
}

async function waitFor(what: string, ms: number, test: () => boolean, dead: () => string | null): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    if (test()) return;
    const d = dead();
    if (d !== null) throw new Error(`${what}: ${d}`);
    if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function boot(spec: RealGuest['spec'], dir: string, children: ChildProcess[], bootTimeoutMs: number): Promise<RealGuest> {
  const qmpPath = path.join(dir, `${spec.name}.qmp`);
  const capturePath = path.join(dir, `${spec.name}.capture.qmp`);
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'qemu-system-x86_64', ...qemuArgs(spec, qmpPath, capturePath)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.push(child);
  if (child.pid !== undefined) live.set(child.pid, child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('latin1');
  child.stdout!.on('data', (d: string) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin!.on('error', () => undefined);
  child.once('exit', () => {
    if (child.pid !== undefined) live.delete(child.pid);
  });
  const dead = (): string | null =>
    child.exitCode !== null || child.signalCode !== null ? `QEMU exited (${child.exitCode ?? child.signalCode}): ${err.trim() || out.slice(-500)}` : null;
  await waitFor(`guest ${spec.name}: QMP socket ${qmpPath}`, 10_000, () => fs.existsSync(qmpPath), dead);
  // The socket file exists from bind(); until QEMU's listen() a connect is refused.
  let qmp: Qmp | null = null;
  for (let tries = 0; qmp === null; tries++) {
    try {
      qmp = await Qmp.connect(qmpPath);
    } catch (e) {
      if (tries >= 100 || dead() !== null || !/ECONNREFUSED/.test((e as Error).message)) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await waitFor(`guest ${spec.name}: '${READY_MARK}' on the console`, bootTimeoutMs, () => out.includes(READY_MARK), dead);
  let seq = 0;
  let shellQueue: Promise<unknown> = Promise.resolve();
  const guest: RealGuest = {
    spec,
    pid: child.pid!,
    qmpPath,
    qmp,
    capturePath,
    console: () => out,
    stop: async () => void (await qmp.execute('stop')),
    cont: async () => void (await qmp.execute('cont')),
    shell(command, timeoutMs = 60_000) {
      // Serialized: the console is one stream. Markers around the output, so that the
      // shell's echo of the command line and its prompt are not taken for output.
      const run = shellQueue.then(async () => {
        const n = ++seq;
        const begin = `@@${n}<<`;
        const end = `@@${n}>>`;
        const from = out.length;
        child.stdin!.write(`echo '${begin}'; ${command}; echo '${end}'\n`);
        const find = (): number => out.indexOf(`\n${end}`, from);
        await waitFor(`guest ${spec.name}: shell '${command}'`, timeoutMs, () => find() >= 0, dead);
        const text = out.slice(from, find());
        const b = text.indexOf(`\n${begin}`);
        return text.slice(b < 0 ? 0 : b + begin.length + 1).replace(/\r/g, '').replace(/^\n/, '');
      });
      shellQueue = run.catch(() => undefined);
      return run;
    },
  };
  return guest;
}

export interface WithGuestsOptions {
  /** The caller already holds /tmp/samepage-real-ksm.lock (inside withRealKsm). */
  lockHeld?: boolean;
  /** Per guest, from QEMU's start to READY. Default 120 s (4 guests share 2 cores). */
  bootTimeoutMs?: number;
}

/**
 * Boots `specs` (all at once), runs `fn`, then kills every guest, whatever happens.
 * Holds the real-KSM lock for the whole time when any guest has mem-merge on.
 */
export async function withRealGuests<T>(specs: readonly GuestSpec[], fn: (guests: RealGuest[]) => Promise<T>, opts: WithGuestsOptions = {}): Promise<T> {
  const reason = realGuestsAvailable();
  if (reason !== null) throw new Error(`real guests are unavailable: ${reason}`);
  const full = specs.map((s) => ({
    name: s.name,
    memoryMiB: s.memoryMiB ?? 128,
    machine: s.machine ?? 'pc',
    memMerge: s.memMerge ?? true,
    initramfs: s.initramfs ?? 'a',
    append: s.append ?? '',
  }));
  const names = new Set(full.map((s) => s.name));
  if (names.size !== full.length) throw new Error(`guest names must be unique: ${full.map((s) => s.name).join(', ')}`);
  const run = async (): Promise<T> => {
    const dir = fs.mkdtempSync(path.join(tmpdir(), 'samepage-guests-'));
    const children: ChildProcess[] = [];
    install();
    try {
      const timeout = opts.bootTimeoutMs ?? 120_000;
      const booted = await Promise.allSettled(full.map((s) => boot(s, dir, children, timeout)));
      const failed = booted.find((b): b is PromiseRejectedResult => b.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
      const guests = booted.map((b) => (b as PromiseFulfilledResult<RealGuest>).value);
      try {
        return await fn(guests);
      } finally {
        for (const g of guests) g.qmp.close();
      }
    } finally {
      await Promise.all(children.map(kill));
      uninstall();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
  if (opts.lockHeld === true || !full.some((s) => s.memMerge)) return run();
  const ksm = await realKsmAvailable();
  if (ksm !== null) throw new Error(`guests with mem-merge on need the real-KSM lock, which needs the real KSM: ${ksm}`);
  return withRealKsmLock(run);
}
