import { defineConfig } from 'vitest/config';

/**
 * `npm run test:real`: tests that boot real QEMU guests (test/real), which take minutes
 * and hold the real-KSM lock while guests with mem-merge on run. One file at a time:
 * guests under TCG are CPU-bound, and the machine has few cores.
 */
export default defineConfig({
  test: {
    include: ['test/real/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 1,
    testTimeout: 900_000,
    hookTimeout: 900_000,
    reporters: ['default', 'json'],
    outputFile: { json: 'out/vitest-real.json' },
  },
});
