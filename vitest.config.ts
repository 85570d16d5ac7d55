import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Tests that boot real QEMU guests take minutes: `npm run test:real` (vitest.real.config.ts).
    exclude: ['test/real/**', '**/node_modules/**'],
    pool: 'forks',
    // Every core: the suite is CPU-bound, and vitest's default leaves one idle (on a
    // 2-core machine, half the machine). The one shared resource, the real KSM, is
    // taken under a lock (test/oracle/real.ts).
    maxWorkers: availableParallelism(),
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // The JSON report lets .ci/run print a plain "N passed, N failed" closing line.
    reporters: ['default', 'json'],
    outputFile: { json: 'out/vitest.json' },
  },
});
