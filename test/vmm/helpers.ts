import { createHash } from 'node:crypto';
import { PAGE_SIZE } from '../../src/index.js';
import type { Guest } from '../../src/vmm/guest.js';

/**
 * The naive oracle for converged KSM statistics: every page a mergeable guest has
 * written (resident, not the zero page), grouped by its contents read back through
 * the guest. A group of n is one KSM page with n − 1 sharing it; a group of one is
 * an unshared page.
 */
export function naiveKsm(guests: readonly Guest[]): { shared: number; sharing: number; unshared: number } {
  const groups = new Map<string, number>();
  for (const g of guests) {
    if (!g.memMerge || g.process === null) continue;
    const zero = g.process.kernel.mem.zeroPfn;
    for (let page = 0; page < g.ramPages; page++) {
      const pfn = g.process.pfnOf(g.hvaOf(page * PAGE_SIZE));
      if (pfn === null || pfn === zero) continue;
      const key = createHash('sha1').update(g.readPhys(page * PAGE_SIZE, PAGE_SIZE)).digest('hex');
      groups.set(key, (groups.get(key) ?? 0) + 1);
    }
  }
  let shared = 0;
  let sharing = 0;
  let unshared = 0;
  for (const n of groups.values()) {
    if (n > 1) {
      shared++;
      sharing += n - 1;
    } else {
      unshared++;
    }
  }
  return { shared, sharing, unshared };
}
