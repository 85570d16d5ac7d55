import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

/*
 * The house rules that a reviewer would otherwise have to remember (DESIGN.md,
 * "Layers and folders"):
 *
 * - Imports point one way: lib ← mm ← ksm ← vmm ← capture ← scenario ← report ← cli, and
 *   src/index.ts above them all. A module may import its own layer and the layers
 *   below it, never one above.
 * - The core (src/lib, src/mm, src/ksm) is deterministic and does no I/O: it imports
 *   no Node module and no package but its own layers', and never reads a clock or
 *   Math.random.
 */

const SRC = join(import.meta.dirname, '..', 'src');
const LAYERS = ['lib', 'mm', 'ksm', 'vmm', 'capture', 'scenario', 'report', 'cli'] as const;
const CORE = new Set(['lib', 'mm', 'ksm']);

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out.sort();
}

/** The layer rank of a file under src/ (index.ts ranks above every layer). */
function rankOf(file: string): number {
  const rel = relative(SRC, file).split(sep);
  if (rel.length === 1) return LAYERS.length;
  const i = LAYERS.indexOf(rel[0] as (typeof LAYERS)[number]);
  if (i < 0) throw new Error(`${file}: not in a known layer (${LAYERS.join(', ')})`);
  return i;
}

function layerName(rank: number): string {
  return rank === LAYERS.length ? 'src/index.ts' : `src/${LAYERS[rank]}`;
}

/** Every module specifier a file imports or re-exports, with its line. */
function specifiers(text: string): { spec: string; line: number }[] {
  const out: { spec: string; line: number }[] = [];
  const re = /(?:^|\n)\s*(?:import|export)\b[^'";]*?from\s*'([^']+)'|\bimport\(\s*'([^']+)'\s*\)|(?:^|\n)\s*import\s*'([^']+)'/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    out.push({ spec, line: text.slice(0, m.index + m[0].length).split('\n').length });
  }
  return out;
}

/** Code with comments and string contents blanked out, so that prose mentioning Date.now is not flagged. */
function codeOnly(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' '))
    .replace(/\/\/[^\n]*/g, '')
    .replace(/`(?:\\.|[^`\\])*`|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"/g, (s) => s.replace(/[^\n]/g, ' '));
}

const CLOCKS = /\b(?:Date\.now|new Date|performance\.now|process\.hrtime|Math\.random|setTimeout|setInterval|setImmediate)\b/;

describe('layering', () => {
  const files = sourceFiles(SRC);

  it('finds the source tree', () => {
    expect(files.length).toBeGreaterThan(30);
    expect(files.some((f) => f.endsWith(join('ksm', 'ksm.ts')))).toBe(true);
  });

  it('no import points up a layer', () => {
    const problems: string[] = [];
    for (const file of files) {
      const rank = rankOf(file);
      for (const { spec, line } of specifiers(readFileSync(file, 'utf8'))) {
        if (!spec.startsWith('.')) continue;
        const target = join(file, '..', spec).replace(/\.js$/, '.ts');
        const tr = rankOf(target);
        if (tr > rank) problems.push(`${relative(SRC, file)}:${line} imports ${spec} (${layerName(tr)} is above ${layerName(rank)})`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('the core (lib, mm, ksm) imports no Node module or package', () => {
    const problems: string[] = [];
    for (const file of files) {
      const layer = relative(SRC, file).split(sep)[0]!;
      if (!CORE.has(layer)) continue;
      for (const { spec, line } of specifiers(readFileSync(file, 'utf8'))) {
        if (!spec.startsWith('.')) problems.push(`${relative(SRC, file)}:${line} imports ${spec}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('the core reads no clock and no Math.random', () => {
    const problems: string[] = [];
    for (const file of files) {
      const layer = relative(SRC, file).split(sep)[0]!;
      if (!CORE.has(layer)) continue;
      codeOnly(readFileSync(file, 'utf8'))
        .split('\n')
        .forEach((text, i) => {
          const m = CLOCKS.exec(text);
          if (m !== null) problems.push(`${relative(SRC, file)}:${i + 1} uses ${m[0]}`);
        });
    }
    expect(problems).toEqual([]);
  });

  it('the checks catch what they are for', () => {
    expect(specifiers("import { x } from '../vmm/host.js';\nexport * from './a.js';\nconst m = await import('node:fs');")).toEqual([
      { spec: '../vmm/host.js', line: 1 },
      { spec: './a.js', line: 2 },
      { spec: 'node:fs', line: 3 },
    ]);
    expect(CLOCKS.test(codeOnly('const t = Date.now();'))).toBe(true);
    expect(CLOCKS.test(codeOnly('// Date.now() is not used here'))).toBe(false);
    expect(CLOCKS.test(codeOnly("const s = 'Math.random';"))).toBe(false);
  });
});
