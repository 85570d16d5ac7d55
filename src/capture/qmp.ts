import { connect, type Socket } from 'node:net';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * A QMP client (the QEMU Machine Protocol, docs/interop/qmp-spec.rst): JSON objects,
 * one per line, over a Unix socket. The server greets ({"QMP": ...}); the client must
 * send qmp_capabilities before any other command; then each {"execute": ...} gets
 * exactly one {"return": ...} or {"error": ...}, in order, and {"event": ...} lines may
 * come between at any time.
 *
 * Invariants: commands are answered in the order they were sent, so `pending` is a
 * FIFO and the head is the command the next reply belongs to. One command is in
 * flight at a time per client in practice (callers await each), but the FIFO makes
 * pipelining safe too. Once the socket closes, every pending and later command fails
 * with the reason.
 */

export class QmpError extends Error {
  /** QMP's error class ("GenericError", "CommandNotFound", ...), or 'connection' / 'timeout'. */
  readonly qmpClass: string;
  constructor(qmpClass: string, message: string) {
    super(message);
    this.name = 'QmpError';
    this.qmpClass = qmpClass;
  }
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | null;
}

export interface QmpOptions {
  /** Per command (and for the greeting), in ms. Default 30 s. */
  timeoutMs?: number;
}

export class Qmp {
  readonly path: string;
  readonly version: string;
  private readonly socket: Socket;
  private readonly pending: Pending[] = [];
  private readonly timeoutMs: number;
  private closed: Error | null = null;
  private buffered = '';

  private constructor(path: string, socket: Socket, version: string, timeoutMs: number) {
    this.path = path;
    this.socket = socket;
    this.version = version;
    this.timeoutMs = timeoutMs;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('error', (e) => this.fail(new QmpError('connection', `QMP ${path}: ${e.message}`)));
    socket.on('close', () => this.fail(new QmpError('connection', `QMP ${path}: connection closed`)));
  }

  /** Connects, reads the greeting and negotiates capabilities. */
  static async connect(path: string, opts: QmpOptions = {}): Promise<Qmp> {
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const { socket, greeting, rest } = await new Promise<{ socket: Socket; greeting: string; rest: string }>((res, rej) => {
      const s = connect(path);
      let buf = '';
      const timer = setTimeout(() => {
        s.destroy();
        rej(new QmpError('timeout', `QMP ${path}: no greeting within ${timeoutMs} ms`));
      }, timeoutMs);
      const onError = (e: Error): void => {
        clearTimeout(timer);
        rej(new QmpError('connection', `QMP ${path}: ${e.message}`));
      };
      s.setEncoding('utf8');
      s.on('error', onError);
      const onData = (d: string): void => {
        buf += d;
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        clearTimeout(timer);
        s.off('data', onData);
        s.off('error', onError);
        res({ socket: s, greeting: buf.slice(0, nl), rest: buf.slice(nl + 1) });
      };
      s.on('data', onData);
    });
    let version = 'unknown';
    try {
      const g = JSON.parse(greeting) as { QMP?: { version?: { qemu?: { major: number; minor: number; micro: number } } } };
      const v = g.QMP?.version?.qemu;
      if (g.QMP === undefined) throw new Error('no "QMP" member');
      if (v !== undefined) version = `${v.major}.${v.minor}.${v.micro}`;
    } catch (e) {
      socket.destroy();
      throw new QmpError('connection', `QMP ${path}: expected a QMP greeting, got ${JSON.stringify(greeting.slice(0, 80))} (${(e as Error).message})`);
    }
    const qmp = new Qmp(path, socket, version, timeoutMs);
    if (rest.length > 0) qmp.onData(rest);
    await qmp.execute('qmp_capabilities');
    return qmp;
  }

  /** Runs one command; resolves with its "return" value, rejects with QmpError on "error". */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closed !== null) return Promise.reject(this.closed);
    return new Promise<T>((res, rej) => {
      const p: Pending = { command, resolve: res as (v: unknown) => void, reject: rej, timer: null };
      const ms = opts.timeoutMs ?? this.timeoutMs;
      p.timer = setTimeout(() => this.fail(new QmpError('timeout', `QMP ${this.path}: '${command}' got no reply within ${ms} ms`)), ms);
      this.pending.push(p);
      this.socket.write(`${JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args })}\n`);
    });
  }

  /** An HMP command through QMP (human-monitor-command): its text output. */
  hmp(commandLine: string): Promise<string> {
    return this.execute<string>('human-monitor-command', { 'command-line': commandLine });
  }

  /** query-status: 'running', 'paused', ... */
  async status(): Promise<string> {
    return (await this.execute<{ status: string }>('query-status')).status;
  }

  close(): void {
    this.fail(new QmpError('connection', `QMP ${this.path}: closed by us`));
  }

  private onData(d: string): void {
    this.buffered += d;
    for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (line.length === 0) continue;
      let msg: { event?: string; return?: unknown; error?: { class: string; desc: string } };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        this.fail(new QmpError('connection', `QMP ${this.path}: expected a JSON object, got ${JSON.stringify(line.slice(0, 80))}`));
        return;
      }
      if (msg.event !== undefined) continue;
      const p = this.pending.shift();
      if (p === undefined) continue; // a reply to nothing we sent: not ours to judge
      if (p.timer !== null) clearTimeout(p.timer);
      if (msg.error !== undefined) p.reject(new QmpError(msg.error.class, `QMP ${this.path}: '${p.command}' failed: ${msg.error.desc}`));
      else p.resolve(msg.return);
    }
  }

  private fail(e: Error): void {
    if (this.closed === null) this.closed = e;
    for (const p of this.pending.splice(0)) {
      if (p.timer !== null) clearTimeout(p.timer);
      p.reject(e);
    }
    this.socket.destroy();
  }
}

/**
 * The pid of the process listening on a Unix socket: /proc/net/unix maps the path to
 * the listening socket's inode, and the owner is the process with an fd open on
 * `socket:[inode]`. (QMP has no command that names QEMU's pid; SO_PEERCRED would, but
 * Node does not expose it.) null when no process in this pid namespace listens there.
 */
export function socketOwnerPid(path: string): number | null {
  const want = resolve(path);
  const inodes = new Set<string>();
  for (const line of readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
    // Num RefCount Protocol Flags Type St Inode Path
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && f[7] === want && f[3] === '00010000') inodes.add(f[6]!); // __SO_ACCEPTCON: listening
  }
  if (inodes.size === 0) return null;
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${e}/fd`);
    } catch {
      continue; // gone, or not ours to read
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${e}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m !== null && inodes.has(m[1]!)) return Number(e);
    }
  }
  return null;
}
