/**
 * A large campaign of damaged snapshot files (npm test runs 30 of them):
 * `npm run fuzz:snapshots -- [CASES] [FROM]`, 600 cases from 0 by default. Prints the
 * outcomes and every case that went wrong; exits 1 when one did.
 */
import { fuzzSnapshots } from '../test/robust/fuzz-runner.js';

const cases = Number(process.argv[2] ?? 600);
const from = Number(process.argv[3] ?? 0);
const started = Date.now();
const report = await fuzzSnapshots(from, from + cases, { batch: 50, silenceMs: 60_000 });
console.log(`${report.cases} damaged snapshot files in ${((Date.now() - started) / 1000).toFixed(0)} s`);
for (const [how, n] of Object.entries(report.outcomes).sort()) console.log(`  ${how.padEnd(18)} ${n}`);
console.log(`  wrong              ${report.bad.length}`);
for (const b of report.bad) console.log(`    ${b}`);
process.exitCode = report.bad.length === 0 ? 0 : 1;
