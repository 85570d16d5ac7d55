/**
 * The shadow: what every process's memory must hold at each settle of a Scenario,
 * kept with no kernel at all (bytes as written, zeros where never written or dropped
 * by MADV_DONTNEED, copied on fork), as digests by scenario.ts's rule. The
 * differential tests check the model against it where the real KSM is unavailable.
 */
import { SCENARIO_PAGE_SIZE, fillPage, regionDigest, type Prot, type Scenario } from './scenario.js';

const P = SCENARIO_PAGE_SIZE;

interface ShadowRegion {
  pages: number;
  /** Per page: 0 unmapped, else 1 | (readable ? 2 : 0). */
  st: Uint8Array;
  data: Uint8Array;
}

/** Per settle, the digests scenario.ts's rule gives for the bytes the scenario wrote. */
export function shadowDigests(s: Scenario): Record<string, string>[] {
  const procs = new Map<string, Map<string, ShadowRegion>>();
  const out: Record<string, string>[] = [];
  const readable = (p: Prot): number => (p === 'none' ? 1 : 3);
  for (const st of s.steps) {
    switch (st.op) {
      case 'spawn':
        procs.set(st.proc, new Map());
        break;
      case 'mmap':
        procs.get(st.proc)!.set(st.region, {
          pages: st.pages,
          st: new Uint8Array(st.pages).fill(readable(st.prot ?? 'rw')),
          data: new Uint8Array(st.pages * P),
        });
        break;
      case 'munmap': {
        const g = procs.get(st.proc)!.get(st.region)!;
        g.st.fill(0, st.first, st.first + st.count);
        g.data.fill(0, st.first * P, (st.first + st.count) * P);
        break;
      }
      case 'fill': {
        const g = procs.get(st.proc)!.get(st.region)!;
        for (let j = st.first; j < st.first + st.count; j++) fillPage(g.data, j * P, j, st.byte, st.tag, st.tailTag);
        break;
      }
      case 'write':
        procs.get(st.proc)!.get(st.region)!.data.set(st.bytes, st.offset);
        break;
      case 'madvise':
        if (st.advice === 'MADV_DONTNEED') procs.get(st.proc)!.get(st.region)!.data.fill(0, st.first * P, (st.first + st.count) * P);
        break;
      case 'mprotect': {
        const g = procs.get(st.proc)!.get(st.region)!;
        for (let j = st.first; j < st.first + st.count; j++) if (g.st[j] !== 0) g.st[j] = readable(st.prot);
        break;
      }
      case 'fork': {
        const copy = new Map<string, ShadowRegion>();
        for (const [n, g] of procs.get(st.proc)!) copy.set(n, { pages: g.pages, st: g.st.slice(), data: g.data.slice() });
        procs.set(st.child, copy);
        break;
      }
      case 'exit':
        procs.delete(st.proc);
        break;
      case 'settle': {
        const d: Record<string, string> = {};
        for (const [pn, regions] of procs) {
          for (const [rn, g] of regions) {
            const pages = Array.from({ length: g.pages }, (_, j) => (g.st[j] === 3 ? g.data.subarray(j * P, (j + 1) * P) : null));
            d[`${pn}/${rn}`] = regionDigest(pages);
          }
        }
        out.push(d);
        break;
      }
      case 'prctl':
        // Merging policy only: no byte changes.
        break;
      default: {
        const never: never = st;
        throw new Error(`unknown step ${JSON.stringify(never)}`);
      }
    }
  }
  return out;
}

