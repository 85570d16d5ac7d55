/**
 * Derives a synthetic guest image (guests/*.yaml) from a capture of real guests:
 * the page mix of one guest's RAM, region by region, as the image descriptor's kinds.
 *
 *   npx tsx scripts/real-guests/calibrate-image.ts captures/busybox-4.cap id-1 mix-b [MiB per region]
 *
 * For each page of GUEST's RAM (its pc.ram): not captured (never touched) is
 * 'untouched'; zero-filled (or the zero page) is 'zero'; contents also found in
 * OTHER (a guest booted from another image: the mixed pair's other side) is 'image'
 * (the same whatever the image's version); contents found in no other guest is
 * 'unique'; the rest (contents another guest of the same image has) is 'version'.
 * Pages are counted in regions of N MiB (default 8) of guest-physical RAM, and each
 * region's fractions rounded to 1/1000, the largest taking the rounding remainder.
 * Prints the regions as YAML.
 */
import { readFileSync } from 'node:fs';
import { CP_ZERO_PAGE, readCapture } from '../../src/vmm/capture-file.js';
import { guestRamVma } from '../../src/vmm/capture-source.js';

const [file, guest, other, mibArg] = process.argv.slice(2);
if (file === undefined || guest === undefined || other === undefined) {
  console.error('usage: calibrate-image.ts FILE GUEST OTHER [MiB per region]');
  process.exit(2);
}
const c = readCapture(readFileSync(file), file);
const proc = (n: string) => {
  const p = c.processes.find((x) => x.name === n);
  if (p === undefined) throw new Error(`${file} has no guest ${n}`);
  return p;
};
const g = guestRamVma(proc(guest))!;
const o = guestRamVma(proc(other))!;
// Content index -> in how many guests other than GUEST it appears, and whether OTHER has it.
const inOther = new Set<number>();
for (let i = 0; i < o.offsets.length; i++) inOther.add(o.contents[i]!);
const inRest = new Set<number>();
for (const p of c.processes) {
  if (p.name === guest) continue;
  const v = guestRamVma(p)!;
  for (let i = 0; i < v.offsets.length; i++) inRest.add(v.contents[i]!);
}
const pages = (g.end - g.start) / 4096;
const per = (Number(mibArg ?? 8) * 1048576) / 4096;
const kinds = ['version', 'image', 'unique', 'zero', 'untouched'] as const;
type Kind = (typeof kinds)[number];
const kindOf = new Array<Kind>(pages).fill('untouched');
for (let i = 0; i < g.offsets.length; i++) {
  const ct = g.contents[i]!;
  const gfn = g.offsets[i]!;
  if ((g.flags[i]! & CP_ZERO_PAGE) !== 0 || ct === 0) kindOf[gfn] = 'zero';
  else if (inOther.has(ct)) kindOf[gfn] = 'image';
  else if (inRest.has(ct)) kindOf[gfn] = 'version';
  else kindOf[gfn] = 'unique';
}
const totals: Record<Kind, number> = { version: 0, image: 0, unique: 0, zero: 0, untouched: 0 };
for (const k of kindOf) totals[k]++;
console.log(`# ${guest} of ${file}: ${pages} pages: ${kinds.map((k) => `${k} ${totals[k]}`).join(', ')}`);
for (let start = 0, r = 0; start < pages; start += per, r++) {
  const end = Math.min(pages, start + per);
  const n: Record<Kind, number> = { version: 0, image: 0, unique: 0, zero: 0, untouched: 0 };
  for (let p = start; p < end; p++) n[kindOf[p]!]++;
  // Kinds under half a thousandth are left out: the descriptor's fractions are thousandths.
  const present = kinds.filter((k) => n[k] * 2000 >= end - start);
  const thousandths = present.map((k) => Math.floor((n[k] * 1000) / (end - start)));
  let left = 1000 - thousandths.reduce((a, b) => a + b, 0);
  // The remainder goes to the largest kinds first.
  const order = present.map((k, i) => ({ k, i })).sort((a, b) => n[b.k] - n[a.k]);
  for (let j = 0; left > 0; j = (j + 1) % order.length, left--) thousandths[order[j]!.i]!++;
  const mix = present.map((k, i) => `${k}: ${(thousandths[i]! / 1000).toString()}`).join(', ');
  console.log(`  - name: ram_${String(r).padStart(2, '0')}\n    size: ${((end - start) * 4096) / 1048576}MiB\n    mix: { ${mix} }`);
}
