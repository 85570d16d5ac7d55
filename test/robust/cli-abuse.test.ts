/**
 * The command under odd command lines and odd files, as a new user (or a script gone
 * wrong) would give them: each must end with the documented exit status (0 done, 1 a
 * file that cannot be used, 2 a usage error) and a message, never a stack trace and
 * never "internal error" (exit 70, kept for our own bugs).
 *
 * And the example scenarios, mutated at random (a scalar set to an odd value, a key
 * removed, a list entry doubled): each must parse into a scenario or be refused with
 * ConfigError naming file:line, never a raw error.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isMap, isScalar, isSeq, parseDocument, visit } from 'yaml';
import { ConfigError, defaultGuestsDir, loadImageCatalog, parseScenario } from '../../src/index.js';
import { Prng } from '../../src/lib/prng.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'samepage-cli-abuse-'));
const file = (name: string, content: string | Buffer): string => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};

/** The built command when `npm test` has just built it (a third of tsx's start-up), else the sources through tsx. */
const BUILT = join(ROOT, 'dist', 'cli', 'main.js');
const newest = (files: string[]): number => Math.max(...files.map((f) => statSync(join(ROOT, 'src', 'cli', f)).mtimeMs));
const COMMAND = existsSync(BUILT) && statSync(BUILT).mtimeMs >= newest(['main.ts', 'commands.ts']) ? [BUILT] : ['--import', 'tsx', 'src/cli/main.ts'];

/**
 * A command line run in this process: main() of src/cli/commands.ts with stdout and
 * stderr captured. What the process around it adds (src/cli/main.ts: the exit status,
 * EPIPE) is tried by the few lines run as a real process (SPAWNED); the rest run here,
 * a millisecond each instead of half a second of Node's start-up.
 */
async function inProcess(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const { main } = await import('../../src/cli/commands.js');
  let out = '';
  let err = '';
  const stdout = process.stdout.write;
  const stderr = process.stderr.write;
  process.stdout.write = ((chunk: string | Uint8Array): boolean => ((out += chunk.toString()), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array): boolean => ((err += chunk.toString()), true)) as typeof process.stderr.write;
  let code: number;
  try {
    code = await main(args);
  } catch (e) {
    // main() never throws; if it did, a real process would die with a stack trace.
    code = -1;
    err += `thrown: ${(e as Error)?.stack ?? String(e)}`;
  } finally {
    process.stdout.write = stdout;
    process.stderr.write = stderr;
  }
  return { code, out, err };
}

function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...COMMAND, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

const LAUGHS = ['a: &a [x, x, x, x, x, x, x, x, x]', ...['b', 'c', 'd', 'e'].map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcd'[i]}`).join(', ')}]`)].join('\n');

/** 100000 guests of 16 GiB on a 4 TiB host: about 2 TiB of real memory by the estimate, never run. */
const FLEET = 'name: fleet\nhost: { memory: 4TiB }\nduration: 10s\nguests:\n  - { name: g, count: 100000, image: debian, version: "6.0", memory: 16GiB }\n';

const CASES: [args: string[], code: number, says: RegExp][] = [
  [[], 2, /usage: samepage/],
  [['nope'], 2, /unknown command "nope"/],
  [['run'], 2, /run needs a scenario file/],
  [['run', join(dir, 'missing.yaml')], 1, /missing\.yaml/],
  [['run', dir], 1, /samepage-cli-abuse/],
  [['run', 'examples/overcommit.yaml', '--variant', 'nope'], 2, /^samepage: examples\/overcommit\.yaml has no variant "nope" \(it has no variants\)/],
  [['run', 'examples/overcommit.yaml', '--seed', 'x'], 2, /--seed needs a whole number, got "x"/],
  [['run', 'examples/overcommit.yaml', '--bogus'], 2, /--bogus/],
  [['run', 'examples/overcommit.yaml', '--save-at', 'soon', '--save', join(dir, 's.snap')], 2, /--save-at needs a time/],
  [['run', 'examples/overcommit.yaml', '--json', join(dir, 'no', 'such', 'dir.json')], 1, /--json/],
  [['run', file('alias.yaml', 'name: x\nhost: { memory: *m }\n')], 1, /alias\.yaml:2: not valid YAML or JSON: alias \*m refers to no anchor &m before it/],
  [['run', file('laughs.yaml', `${LAUGHS}\n`)], 1, /laughs\.yaml:\d+: not valid YAML or JSON: its aliases expand to more than 100 nodes/],
  [['run', file('binary.yaml', Buffer.from([0, 1, 2, 0xff, 0xfe]))], 1, /binary\.yaml/],
  [['run', file('list.yaml', '- 1\n- 2\n')], 1, /list\.yaml/],
  [['run', file('huge.yaml', 'name: h\nhost: { memory: 1GiB }\nduration: 99999999999999999999min\nguests: []\n')], 1, /huge\.yaml:3: duration: expected a duration of at most 100 days/],
  [['resume'], 2, /resume needs a snapshot file/],
  [['resume', file('four.snap', 'abcd')], 1, /four\.snap: not a Samepage snapshot/],
  [['resume', file('empty.snap', '')], 1, /empty\.snap: not a Samepage snapshot: the file is empty/],
  [['resume', file('short.snap', 'SAMEPA')], 1, /short\.snap: snapshot truncated/],
  [['resume', 'examples/overcommit.yaml'], 1, /overcommit\.yaml: not a Samepage snapshot/],
  [['help', 'nope'], 2, /no help for "nope"/],
  [['run', 'examples/captured-guests.yaml', '--estimate'], 0, /^captured-guests: estimated real memory/],
  [['run', file('fleet.yaml', FLEET)], 1, /^samepage: fleet would need about [\d.]+ [GT]iB of real memory, .* not run \(--force runs it anyway/],
  [['run', join(dir, 'fleet.yaml'), '--estimate'], 0, /it does not fit in the memory available: samepage run refuses it without --force/],
  [['run', 'examples/kernels.yaml', '--estimate', '--variant', 'nope'], 2, /kernels\.yaml has no variant "nope"/],
  [['--version'], 0, /^samepage \d+\.\d+\.\d+/],
];

/** Lines also run as a real process: usage, a file error, a YAML error, --version. */
const SPAWNED = new Set([0, 3, 10, CASES.length - 1]);

describe('odd command lines', () => {
  it(`${CASES.length} command lines (${SPAWNED.size} of them also as a real process): the documented exit status and a message, never a stack trace`, async () => {
    type Line = (typeof CASES)[number];
    const results: { line: Line; how: string; r: { code: number; out: string; err: string } }[] = [];
    for (const line of CASES) results.push({ line, how: 'in-process', r: await inProcess(line[0]) });
    // The real processes together: each is half a second of Node's start-up.
    const spawned = [...SPAWNED].map((i) => CASES[i]!);
    (await Promise.all(spawned.map(([args]) => cli(args)))).forEach((r, i) => results.push({ line: spawned[i]!, how: 'process', r }));
    const wrong: string[] = [];
    for (const { line, how, r } of results) {
      const [args, code, says] = line;
      const text = code === 0 ? r.out : r.err;
      if (r.code !== code || !says.test(text) || /^\s+at /m.test(r.err) || /internal error/.test(r.err)) {
        wrong.push(`samepage ${args.join(' ')} (${how}): exit ${r.code} (expected ${code}): ${r.err.split('\n').slice(0, 3).join(' | ')}`);
      }
    }
    expect(wrong).toEqual([]);
    expect(results.length).toBe(CASES.length + SPAWNED.size);
  }, 120_000);
});

describe('mutated example scenarios', () => {
  const images = loadImageCatalog(defaultGuestsDir());
  const examples = readdirSync(join(ROOT, 'examples')).filter((f) => f.endsWith('.yaml'));
  const ODD: unknown[] = [-1, 0, 1.5, 2 ** 53, 1e12, 'x', '', null, true, '99999999999999999999min', '-5MiB', '1e3GiB', [], {}];

  it('each of 40 mutations per example parses into a scenario or is a ConfigError at file:line', () => {
    const wrong: string[] = [];
    let accepted = 0;
    let refused = 0;
    for (const name of examples) {
      const text = readFileSync(join(ROOT, 'examples', name), 'utf8');
      for (let i = 0; i < 40; i++) {
        const prng = new Prng(i * 7919 + name.length);
        const doc = parseDocument(text);
        const scalars: { parent: unknown; key: unknown }[] = [];
        visit(doc, {
          Pair: (_k, pair, path) => {
            const parent = path[path.length - 1];
            if (isScalar(pair.value) || isMap(pair.value) || isSeq(pair.value)) scalars.push({ parent, key: pair.key });
          },
        });
        const target = scalars[prng.int(0, scalars.length)]!;
        const map = target.parent as { set: (k: unknown, v: unknown) => void; delete: (k: unknown) => boolean };
        let what: string;
        if (prng.int(0, 6) === 0) {
          map.delete(target.key);
          what = `removed ${String(target.key)}`;
        } else {
          const v = ODD[prng.int(0, ODD.length)];
          map.set(target.key, doc.createNode(v));
          what = `${String(target.key)} = ${JSON.stringify(v)}`;
        }
        const mutated = doc.toString();
        try {
          parseScenario(mutated, name, images);
          accepted++;
        } catch (e) {
          if (e instanceof ConfigError && /^\S+\.yaml:\d+: /m.test(e.message)) refused++;
          else wrong.push(`${name} (${what}): ${(e as Error).name}: ${(e as Error).message.split('\n')[0]!}`);
        }
      }
    }
    expect(wrong).toEqual([]);
    expect(accepted + refused).toBe(40 * examples.length);
    expect(refused).toBeGreaterThan(accepted);
  });
});
