/**
 * The README stays true: the default scenario's summary it quotes is the one the
 * golden output holds (which examples.test.ts checks against a fresh run), and
 * the examples it lists are exactly those in examples/.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = new URL('..', import.meta.url).pathname;
const readme = readFileSync(join(root, 'README.md'), 'utf8');

describe('README', () => {
  it('quotes the default scenario’s summary exactly as the golden output has it', () => {
    const golden = readFileSync(join(root, 'test/scenario/golden/overcommit.txt'), 'utf8');
    const summary = golden.slice(0, golden.indexOf('\n# timeline')).trimEnd();
    expect(readme).toContain(summary);
  });

  it('names npm start’s scenario as package.json runs it', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe('node dist/cli/main.js run examples/overcommit.yaml');
    expect(readme).toContain('runs the default scenario (examples/overcommit.yaml)');
  });

  it('lists every example scenario, and only those that exist', () => {
    const listed = [...readme.matchAll(/`([a-z-]+\.yaml)`/g)].map((m) => m[1]!);
    const examples = readdirSync(join(root, 'examples')).filter((f) => f.endsWith('.yaml'));
    expect([...listed].sort()).toEqual(examples.sort());
  });
});
