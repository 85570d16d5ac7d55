import { accessSync, constants as fsConstants, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DEFAULT_KSMD_COSTS, parseKsmdCosts, type KsmdCosts } from '../ksm/cost.js';
import type { RunResult } from '../scenario/types.js';
import { UsageError } from './usage.js';

/*
 * What the commands share about files: reading inputs, checking outputs before any
 * work starts, writing them (or standard output for '-'), and the costs file.
 */

/** A file's text; one that cannot be read is the user's to fix. */
export function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`samepage: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** Write an output file ('-': standard output); a path that cannot be written is the user's to fix, not a crash with a stack trace. */
export function writeOutput(path: string, text: string | Uint8Array): void {
  if (path === '-') {
    process.stdout.write(text);
    return;
  }
  try {
    writeFileSync(path, text);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(`samepage: cannot write ${path} (${code ?? (e as Error).message})`);
  }
}

/**
 * Check, before anything runs, that every output can be written: an existing file
 * must be a writable file, a new one must go in an existing, writable directory.
 * Nothing is created (a run that fails later must not leave empty files behind).
 * '-' is standard output, allowed where `dashOk`, for one output at most.
 */
export function checkOutputs(outputs: readonly { option: string; path: string | undefined; dashOk: boolean }[], usage: string): void {
  const dashes = outputs.filter((o) => o.path === '-');
  for (const o of dashes) if (!o.dashOk) throw new UsageError(`${o.option} needs a file: its output is binary, not for standard output`, usage);
  if (dashes.length > 1) throw new UsageError(`only one output can go to standard output, got ${dashes.map((o) => `${o.option} -`).join(' and ')}`, usage);
  for (const o of outputs) {
    if (o.path === undefined || o.path === '-') continue;
    const fail = (why: string): never => {
      throw new Error(`samepage: cannot write ${o.path!} (${why}), given to ${o.option}: nothing was run`);
    };
    let isDir = false;
    try {
      isDir = statSync(o.path).isDirectory();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') fail((e as NodeJS.ErrnoException).code ?? (e as Error).message);
      // A new file: its directory must exist and be writable.
      const dir = dirname(resolve(o.path));
      try {
        if (!statSync(dir).isDirectory()) fail(`${dir} is not a directory`);
        accessSync(dir, fsConstants.W_OK);
      } catch (e2) {
        if (e2 instanceof Error && e2.message.startsWith('samepage:')) throw e2;
        fail(`${(e2 as NodeJS.ErrnoException).code ?? (e2 as Error).message} for ${dir}`);
      }
      continue;
    }
    if (isDir) fail('EISDIR');
    try {
      accessSync(o.path, fsConstants.W_OK);
    } catch (e) {
      fail((e as NodeJS.ErrnoException).code ?? (e as Error).message);
    }
  }
}

/** --ksmd-costs FILE: the costs in it, or the defaults. */
export function loadKsmdCosts(path: string | undefined): KsmdCosts {
  if (path === undefined) return DEFAULT_KSMD_COSTS;
  let doc: unknown;
  try {
    doc = JSON.parse(readText(path)) as unknown;
  } catch (e) {
    if (e instanceof Error && e.message.startsWith('samepage:')) throw e;
    throw new Error(`samepage: ${path}: not JSON (${(e as Error).message})`);
  }
  const costs = parseKsmdCosts(doc);
  if (typeof costs === 'string') throw new Error(`samepage: ${path}: ${costs}`);
  return costs;
}

/** Any guest OOM-killed or refused at start, in any run: --fail-on-oom's question. */
export function guestCasualties(results: readonly RunResult[]): number {
  return results.reduce((n, r) => n + r.events.filter((e) => (e.kind === 'oom-kill' && e.guest !== null) || e.kind === 'refused').length, 0);
}
