import { release } from 'node:os';
import { CAPTURE_PAGE_SIZE, PageStore, encodeCapture, type Capture, type CaptureCompression, type CapturedProcess, type CaptureSource } from '../vmm/capture-file.js';
import { captureByDump, captureByPmemsave } from './guest-view.js';
import { CaptureError, captureProcPages, parseRamBlocks, readComm, thpMode } from './proc.js';
import { Qmp, QmpError, socketOwnerPid } from './qmp.js';

/**
 * `samepage capture`: records what KSM would see of running processes into one
 * capture file (src/vmm/capture-file.ts).
 *
 * Targets:
 *  - pid N: any process, read from /proc (host view). Not paused: a live reading.
 *  - qmp PATH: a QEMU guest by its QMP socket, read from /proc of the QEMU process
 *    that listens there (host view), with the guest paused (`stop`) for a consistent
 *    image, and its RAM blocks named (HMP `info ramblock`).
 *  - dump PATH / pmemsave PATH: a QEMU guest's own view through QMP alone (guest
 *    view), for when /proc cannot be read; paused as well.
 *
 * Every guest reached through QMP is paused before the first page of any target is
 * read and resumed after the last (only those that were running: a guest found
 * paused stays paused), so a capture of several guests is one instant of all of
 * them. Resuming happens in a finally block: an error, or SIGINT/SIGTERM during the
 * capture, still sends `cont`.
 */

export type CaptureTarget =
  | { kind: 'pid'; pid: number; name?: string }
  | { kind: 'qmp'; socket: string; name?: string }
  | { kind: 'dump'; socket: string; name?: string }
  | { kind: 'pmemsave'; socket: string; name?: string };

export interface CaptureOptions {
  /** Every VMA of host-view targets, not only VM_MERGEABLE ones. */
  allVmas?: boolean;
  /** Free text stored in the file. */
  note?: string;
  /** Pause QMP targets around the capture. Default true. */
  pause?: boolean;
  /** Where QEMU writes guest-view dumps (default the system's temp directory). */
  dumpDir?: string;
  /** "samepage X.Y.Z" for the file's metadata. */
  tool: string;
  /** Progress lines (one per target). */
  log?: (line: string) => void;
}

export interface CaptureResult {
  capture: Omit<Capture, 'version'>;
  /** Per target, in order: wall time of its page reading, ms. */
  times: number[];
}

const SOURCE: Record<CaptureTarget['kind'], CaptureSource> = { pid: 'pid', qmp: 'qmp', dump: 'dump-guest-memory', pmemsave: 'pmemsave' };

/** Parses a target as the command line gives it: "pid:N", "qmp:PATH", "dump:PATH", "pmemsave:PATH", optionally "NAME=" before. */
export function parseTarget(s: string): CaptureTarget {
  const m = /^(?:([A-Za-z0-9_.:-]+)=)?(pid|qmp|dump|pmemsave):(.+)$/.exec(s);
  if (m === null) throw new CaptureError(`expected a target like pid:1234, qmp:/path/to/qmp.sock, dump:PATH or pmemsave:PATH (optionally NAME= before), got ${JSON.stringify(s)}`);
  const name = m[1];
  const kind = m[2] as CaptureTarget['kind'];
  if (kind === 'pid') {
    if (!/^\d+$/.test(m[3]!) || Number(m[3]) <= 0) throw new CaptureError(`pid: expected a positive whole number, got ${JSON.stringify(m[3])}`);
    return name === undefined ? { kind, pid: Number(m[3]) } : { kind, pid: Number(m[3]), name };
  }
  return name === undefined ? { kind, socket: m[3]! } : { kind, socket: m[3]!, name };
}

interface Open {
  target: CaptureTarget;
  qmp: Qmp | null;
  /** We paused it, so we resume it. */
  resume: boolean;
}

/** Captures every target (see the module comment); the result encodes with encodeCapture. */
export async function captureTargets(targets: readonly CaptureTarget[], opts: CaptureOptions): Promise<CaptureResult> {
  if (targets.length === 0) throw new CaptureError('capture needs at least one target');
  const log = opts.log ?? ((): void => undefined);
  const opened: Open[] = [];
  const resumeAll = async (): Promise<string[]> => {
    const errors: string[] = [];
    for (const o of opened) {
      if (!o.resume || o.qmp === null) continue;
      try {
        await o.qmp.execute('cont');
        o.resume = false;
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    return errors;
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    void resumeAll().finally(() => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.kill(process.pid, sig);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let failure: unknown = null;
  let result: CaptureResult | null = null;
  try {
    for (const t of targets) {
      const qmp = t.kind === 'pid' ? null : await Qmp.connect(t.socket);
      opened.push({ target: t, qmp, resume: false });
    }
    if (opts.pause !== false) {
      for (const o of opened) {
        if (o.qmp === null) continue;
        if ((await o.qmp.status()) === 'running') {
          await o.qmp.execute('stop');
          o.resume = true;
        }
      }
    }
    result = await captureOpened(opened, opts, log);
  } catch (e) {
    failure = e;
  } finally {
    const errors = await resumeAll();
    for (const o of opened) o.qmp?.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (errors.length > 0) {
      const msg = `resuming the guests failed: ${errors.join('; ')}`;
      failure = failure === null ? new CaptureError(msg) : new CaptureError(`${(failure as Error).message.replace(/^samepage: /, '')} (and ${msg})`);
    }
  }
  if (failure !== null) {
    if (failure instanceof QmpError) throw new CaptureError(failure.message);
    throw failure;
  }
  return result!;
}

async function captureOpened(opened: readonly Open[], opts: CaptureOptions, log: (line: string) => void): Promise<CaptureResult> {
  const store = new PageStore();
  const processes: CapturedProcess[] = [];
  const times: number[] = [];
  const names = new Set<string>();
  for (const o of opened) {
    const t0 = Date.now();
    const t = o.target;
    let p: CapturedProcess;
    if (t.kind === 'pid') {
      const comm = readComm(t.pid);
      p = {
        name: t.name ?? `${comm}-${t.pid}`,
        pid: t.pid,
        comm,
        view: 'host',
        source: 'pid',
        paused: false,
        qemu: null,
        allVmas: opts.allVmas === true,
        vmas: captureProcPages(t.pid, store, { allVmas: opts.allVmas === true }),
      };
    } else {
      const qmp = o.qmp!;
      const ramBlocks = parseRamBlocks(await qmp.hmp('info ramblock'));
      const qname = (await qmp.execute<{ name?: string }>('query-name')).name;
      const name = t.name ?? qname ?? `qemu-${qmp.path}`;
      const paused = (await qmp.status()) !== 'running';
      if (t.kind === 'qmp') {
        const pid = socketOwnerPid(t.socket);
        if (pid === null) throw new CaptureError(`no process in this pid namespace listens on ${t.socket}: use dump:${t.socket} for the guest's own view`);
        p = {
          name,
          pid,
          comm: readComm(pid),
          view: 'host',
          source: 'qmp',
          paused,
          qemu: { version: qmp.version, ramBlocks },
          allVmas: opts.allVmas === true,
          vmas: captureProcPages(pid, store, { allVmas: opts.allVmas === true, ramBlocks }),
        };
      } else {
        const pid = socketOwnerPid(t.socket) ?? 0;
        let comm = '';
        try {
          if (pid !== 0) comm = readComm(pid);
        } catch {
          // the guest view needs no /proc access; the comm is only a label
        }
        p = {
          name,
          pid,
          comm,
          view: 'guest',
          source: SOURCE[t.kind],
          paused,
          qemu: { version: qmp.version, ramBlocks },
          allVmas: false,
          vmas: t.kind === 'dump' ? await captureByDump(qmp, store, opts.dumpDir) : await captureByPmemsave(qmp, store, opts.dumpDir),
        };
      }
    }
    if (names.has(p.name)) throw new CaptureError(`two targets are named '${p.name}': name them (NAME=pid:N, NAME=qmp:PATH)`);
    names.add(p.name);
    processes.push(p);
    times.push(Date.now() - t0);
    const pages = p.vmas.reduce((a, v) => a + v.offsets.length, 0);
    log(`${p.name}: ${p.view} view via ${p.source}${p.pid ? `, pid ${p.pid}` : ''}: ${p.vmas.length} VMAs, ${pages} pages (${((pages * CAPTURE_PAGE_SIZE) / 1048576).toFixed(1)} MiB) in ${((Date.now() - t0) / 1000).toFixed(2)} s`);
  }
  return {
    capture: {
      meta: { tool: opts.tool, createdAt: new Date().toISOString(), host: { kernel: release(), thp: thpMode(), pageSize: CAPTURE_PAGE_SIZE }, note: opts.note ?? '' },
      processes,
      pageCount: store.count,
      pages: store.bytes(),
    },
    times,
  };
}

export { encodeCapture, type CaptureCompression };
