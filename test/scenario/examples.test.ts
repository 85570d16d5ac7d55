/**
 * Golden ("baseline") outputs of the example scenarios: each example is run and its
 * summary, event log and a compact timeline are compared with the accepted text in
 * test/scenario/golden/. A difference means behaviour changed: if on purpose,
 * accept the new output with `UPDATE_GOLDEN=1 npx vitest run test/scenario/examples.test.ts`
 * and review the diff like code.
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatSummary, loadImageCatalog, loadScenario, runScenario, type RunResult } from '../../src/index.js';
import { statsIn } from '../../src/ksm/stats.js';
import { formatDuration } from '../../src/vmm/config.js';

const root = new URL('../..', import.meta.url).pathname;
const examples = readdirSync(join(root, 'examples')).filter((f) => f.endsWith('.yaml')).sort();
const images = loadImageCatalog();

function timeline(results: RunResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    // A later kernel's statistics follow, named, where the run's kernel has them.
    const modern = r.samples.length > 0 ? statsIn(r.samples[0]!).filter((x) => x.feature !== null) : [];
    lines.push(
      `# timeline${r.variant === null ? '' : ` (${r.variant})`}: t shared sharing unshared volatile full_scans free_kB swap_kB run pages_to_scan sleep${modern.map((x) => ` ${x.label}`).join('')}`,
    );
    for (const s of r.samples) {
      lines.push(
        [formatDuration(s.t), s.pagesShared, s.pagesSharing, s.pagesUnshared, s.pagesVolatile, s.fullScans, s.freeBytes / 1024, s.swapUsedBytes / 1024, s.run, s.pagesToScan, s.sleepMillisecs, ...modern.map((x) => s[x.name])].join(' '),
      );
    }
    lines.push(`# events${r.variant === null ? '' : ` (${r.variant})`}`);
    for (const e of r.events) lines.push(`${formatDuration(e.t)} ${e.what}${e.error === null ? '' : ` ! ${e.error}`}`);
  }
  return `${lines.join('\n')}\n`;
}

describe('example scenarios against their golden outputs', () => {
  it('has one golden output per example, and none for an example that is gone', () => {
    const goldens = readdirSync(join(root, 'test', 'scenario', 'golden')).sort();
    expect(examples).toEqual(['captured-guests.yaml', 'fast-dirtying.yaml', 'kernels.yaml', 'ksmtuned-vs-fixed.yaml', 'merge-domains.yaml', 'mixed-fleet.yaml', 'overcommit.yaml', 'pressure-and-hotplug.yaml']);
    expect(goldens).toEqual(examples.map((f) => f.replace(/\.yaml$/, '.txt')));
  });

  for (const file of examples) {
    it(`examples/${file}`, () => {
      const scenario = loadScenario(join(root, 'examples', file), images);
      const results = runScenario(scenario, { images });
      const text = `${formatSummary(results)}\n${timeline(results)}`;
      const golden = join(root, 'test', 'scenario', 'golden', file.replace(/\.yaml$/, '.txt'));
      if (process.env.UPDATE_GOLDEN === '1' || !existsSync(golden)) {
        writeFileSync(golden, text);
        if (process.env.UPDATE_GOLDEN !== '1') throw new Error(`no golden output for ${file}: wrote ${golden}; review it and run again`);
      }
      expect(text).toBe(readFileSync(golden, 'utf8'));
    });
  }
});
