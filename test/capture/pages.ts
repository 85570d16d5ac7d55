/**
 * Starts test/capture/pages.c (a process with known memory; its header documents the
 * layout) and stops it. The binary is compiled on first use into test/oracle/build.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { buildHelper } from '../oracle/real.js';

export const HUGE_PAGES = 1024; // 4 MiB: two THPs
export const SMALL_PAGES = 16;
export const PLAIN_PAGES = 8;

export interface PagesProcess {
  pid: number;
  huge: number;
  small: number;
  plain: number;
  child: ChildProcess;
  /** Closes its stdin (it exits) and waits. */
  stop(): Promise<void>;
}

/** null when pages.c can be built and run here; otherwise why not. */
export function pagesAvailable(): string | null {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  const cc = spawnSync('cc', ['--version'], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) return 'no C compiler (`cc`) to build test/capture/pages.c';
  return null;
}

export async function startPages(tag: number, merge: boolean): Promise<PagesProcess> {
  const bin = buildHelper('test/capture/pages.c', 'pages');
  const child = spawn(bin, [String(tag), merge ? '1' : '0'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    child.once('exit', (code) => reject(new Error(`pages exited (${code}) before it was ready: ${err.trim()}`)));
  });
  const m = /^ready ([0-9a-f]+) ([0-9a-f]+) ([0-9a-f]+)$/.exec(line);
  if (m === null) throw new Error(`pages: expected "ready HUGE SMALL PLAIN", got ${JSON.stringify(line)}`);
  const exited = new Promise<void>((r) => (child.exitCode !== null ? r() : child.once('exit', () => r())));
  return {
    pid: child.pid!,
    huge: parseInt(m[1]!, 16),
    small: parseInt(m[2]!, 16),
    plain: parseInt(m[3]!, 16),
    child,
    async stop() {
      child.stdin!.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
