/**
 * Differential tests: each scenario runs on real processes under this machine's KSM
 * (real.ts, configured like 2.6.33) and through Samepage (model.ts), and the two must
 * agree at every settle: the four statistics and the digest of every live region.
 *
 * Each scenario also states, literally, the statistics 2.6.33 converges to (the
 * comment above it says why), and the digests a naive shadow of every process's
 * memory predicts (`shadowDigests`: bytes as written, zeros where never written or
 * dropped by MADV_DONTNEED, copied on fork). Those checks run on the model alone, so
 * they still mean something where the real KSM is unavailable; the differential
 * check then skips and says why.
 *
 * Scenarios are written to converge whatever the real ksmd did between two steps
 * (it runs all the time; the model's only inside a settle): every settle waits for
 * at least three full scans, and a page needs at most two after its last change.
 *
 * The real KSM serves one user at a time: real.ts holds a lock (in-process queue and
 * flock), so these tests run in order, and may wait for another test file using it.
 */
import { describe, expect, it } from 'vitest';
import { runOnSamepage } from './model.js';
import { realKsmAvailable, runOnRealKernel } from './real.js';
import { shadowDigests } from './shadow.js';
import {
  SCENARIO_PAGE_SIZE,
  type Advice,
  type KsmStats,
  type Prot,
  type Scenario,
  type Step,
} from './scenario.js';

const skip = await realKsmAvailable();
if (skip !== null) console.warn(`test/oracle/differential.test.ts: real-kernel comparisons skipped: ${skip}`);
const real = it.skipIf(skip !== null);

/** The lock may be held by another test file for a while. */
const TIMEOUT = 120_000;

// ---------------------------------------------------------------------------------
// Steps, briefly

const spawn = (proc: string): Step => ({ op: 'spawn', proc });
const mmap = (proc: string, region: string, pages: number, prot?: Prot): Step => ({ op: 'mmap', proc, region, pages, prot });
const munmap = (proc: string, region: string, first: number, count: number): Step => ({ op: 'munmap', proc, region, first, count });
const fill = (proc: string, region: string, first: number, count: number, byte: number, more: { tag?: number; tailTag?: number } = {}): Step => ({
  op: 'fill',
  proc,
  region,
  first,
  count,
  byte,
  ...more,
});
const write = (proc: string, region: string, offset: number, bytes: number[]): Step => ({ op: 'write', proc, region, offset, bytes });
const madvise = (proc: string, region: string, first: number, count: number, advice: Advice): Step => ({ op: 'madvise', proc, region, first, count, advice });
const mergeable = (proc: string, region: string, first: number, count: number): Step => madvise(proc, region, first, count, 'MADV_MERGEABLE');
const mprotect = (proc: string, region: string, first: number, count: number, prot: Prot): Step => ({ op: 'mprotect', proc, region, first, count, prot });
const fork = (proc: string, child: string): Step => ({ op: 'fork', proc, child });
const exit = (proc: string): Step => ({ op: 'exit', proc });
const settle = (scans?: number): Step => ({ op: 'settle', scans });

const stats = (pages_shared: number, pages_sharing: number, pages_unshared: number, pages_volatile: number): KsmStats => ({
  pages_shared,
  pages_sharing,
  pages_unshared,
  pages_volatile,
});
const P = SCENARIO_PAGE_SIZE;

// ---------------------------------------------------------------------------------
// The scenarios, each with the statistics 2.6.33 converges to at each settle

interface Case {
  scenario: Scenario;
  expected: KsmStats[];
}

const cases: Case[] = [];
function scenario(name: string, steps: Step[], expected: KsmStats[]): void {
  cases.push({ scenario: { name, steps }, expected });
}

// One KSM page holds all 12; the other 11 rmap_items hang on its stable node.
scenario(
  'identical pages within one process merge into one KSM page',
  [spawn('a'), mmap('a', 'ram', 12), fill('a', 'ram', 0, 12, 0x61), mergeable('a', 'ram', 0, 12), settle()],
  [stats(1, 11, 0, 0)],
);

// Nothing to merge with: every rmap_item sits in the unstable tree.
scenario(
  'unique pages do not merge: all unshared',
  [spawn('a'), mmap('a', 'ram', 12), fill('a', 'ram', 0, 12, 0x61, { tag: 9 }), mergeable('a', 'ram', 0, 12), settle()],
  [stats(0, 0, 12, 0)],
);

// ksmpages' worst case: equal but for the last 8 bytes. memcmp tells them apart.
scenario(
  'pages equal but for their tails do not merge',
  [spawn('a'), mmap('a', 'ram', 8), fill('a', 'ram', 0, 8, 0x61, { tailTag: 5 }), mergeable('a', 'ram', 0, 8), settle()],
  [stats(0, 0, 8, 0)],
);

// 6 x 0x11 -> 1 + 5; 4 x 0x22 -> 1 + 3; 4 unique -> unshared; 2 pages written with
// zeros are ordinary anonymous pages, so they merge (1 + 1); 4 never-written pages
// are not anonymous pages at all (the digest's read maps the zero page): no rmap_item.
scenario(
  'a mix: two shared contents, zero-filled pages, unique and untouched pages',
  [
    spawn('a'),
    mmap('a', 'ram', 20),
    fill('a', 'ram', 0, 6, 0x11),
    fill('a', 'ram', 6, 4, 0x22),
    fill('a', 'ram', 10, 4, 0x00, { tag: 1 }),
    fill('a', 'ram', 14, 2, 0x00),
    mergeable('a', 'ram', 0, 20),
    settle(),
  ],
  [stats(3, 9, 4, 0)],
);

// 2 x 4 equal pages -> one KSM page (1 + 7); 2 x 4 unique.
scenario(
  'merging across two processes',
  [
    spawn('a'),
    spawn('b'),
    mmap('a', 'ram', 8),
    mmap('b', 'ram', 8),
    fill('a', 'ram', 0, 4, 0x33),
    fill('a', 'ram', 4, 4, 0x00, { tag: 1 }),
    fill('b', 'ram', 0, 4, 0x00, { tag: 2 }),
    fill('b', 'ram', 4, 4, 0x33),
    mergeable('a', 'ram', 0, 8),
    mergeable('b', 'ram', 0, 8),
    settle(),
  ],
  [stats(1, 7, 8, 0)],
);

// Three processes, three contents (3 pages of each per process, in different
// places), 3 unique pages each: 3 KSM pages with 9 mappings each (3 + 24), 9 unshared.
{
  const steps: Step[] = [];
  const layout: Record<string, number[]> = { a: [0x41, 0x42, 0x43], b: [0x43, 0x41, 0x42], c: [0x42, 0x43, 0x41] };
  for (const [proc, bytes] of Object.entries(layout)) {
    steps.push(spawn(proc), mmap(proc, 'ram', 12));
    bytes.forEach((b, k) => steps.push(fill(proc, 'ram', 3 * k, 3, b)));
    steps.push(fill(proc, 'ram', 9, 3, 0x44, { tag: proc.charCodeAt(0) }), mergeable(proc, 'ram', 0, 12));
  }
  steps.push(settle());
  scenario('three processes with three distinct shared contents', steps, [stats(3, 24, 9, 0)]);
}

// Stage 1: 1 + 9. Three pages get one different byte each (so three distinct
// contents): the KSM page is copied for each (COW), and the copies are unique:
// 1 + 6, 3 unshared. Stage 3: written back to 0x61, they merge again.
scenario(
  'content changing between stages: pages leave the KSM page and come back',
  [
    spawn('a'),
    mmap('a', 'ram', 10),
    fill('a', 'ram', 0, 10, 0x61),
    mergeable('a', 'ram', 0, 10),
    settle(),
    write('a', 'ram', 0 * P + 100, [1]),
    write('a', 'ram', 1 * P + 100, [2]),
    write('a', 'ram', 2 * P + 100, [3]),
    settle(),
    fill('a', 'ram', 0, 3, 0x61),
    settle(),
  ],
  [stats(1, 9, 0, 0), stats(1, 6, 3, 0), stats(1, 9, 0, 0)],
);

// Stage 1: 16 unique pages. Then b rewrites its pages to a's contents, page for
// page: 8 distinct contents, two pages each: 8 KSM pages, 8 sharing.
scenario(
  'pages written identical across two stages: unique, then pairwise equal',
  [
    spawn('a'),
    spawn('b'),
    mmap('a', 'ram', 8),
    mmap('b', 'ram', 8),
    fill('a', 'ram', 0, 8, 0x10, { tag: 1 }),
    fill('b', 'ram', 0, 8, 0x10, { tag: 2 }),
    mergeable('a', 'ram', 0, 8),
    mergeable('b', 'ram', 0, 8),
    settle(),
    fill('b', 'ram', 0, 8, 0x10, { tag: 1 }),
    settle(),
  ],
  [stats(0, 0, 16, 0), stats(8, 8, 0, 0)],
);

// Two processes share 0x71 (1 + 11). Each then rewrites one page to 0x72: COW
// copies, which are equal to each other: a second KSM page (1 + 1), and 1 + 9 left
// on the first.
scenario(
  'writes that break COW on a KSM page, and the copies merge again',
  [
    spawn('a'),
    spawn('b'),
    mmap('a', 'ram', 6),
    mmap('b', 'ram', 6),
    fill('a', 'ram', 0, 6, 0x71),
    fill('b', 'ram', 0, 6, 0x71),
    mergeable('a', 'ram', 0, 6),
    mergeable('b', 'ram', 0, 6),
    settle(),
    fill('a', 'ram', 2, 1, 0x72),
    fill('b', 'ram', 3, 1, 0x72),
    settle(),
  ],
  [stats(1, 11, 0, 0), stats(2, 10, 0, 0)],
);

// Merged (1 + 19 after the fork: the child's rmap_items find the KSM page itself
// in the stable tree, "ksm page forked"). The child's write copies its page 0: a
// unique page, unshared. When the child exits its rmap_items go: back to 1 + 9.
scenario(
  'fork after merge; the child writes, then exits',
  [
    spawn('a'),
    mmap('a', 'ram', 10),
    fill('a', 'ram', 0, 10, 0x61),
    mergeable('a', 'ram', 0, 10),
    settle(),
    fork('a', 'b'),
    settle(),
    write('b', 'ram', 0, [0xee]),
    settle(),
    exit('b'),
    settle(),
  ],
  [stats(1, 9, 0, 0), stats(1, 19, 0, 0), stats(1, 18, 1, 0), stats(1, 9, 0, 0)],
);

// The child inherits VM_MERGEABLE, then MADV_UNMERGEABLE breaks COW on every page
// of its region (private copies) and ksmd drops its rmap_items.
scenario(
  'a child forked after merging unmerges its copy',
  [
    spawn('a'),
    mmap('a', 'ram', 10),
    fill('a', 'ram', 0, 10, 0x61),
    mergeable('a', 'ram', 0, 10),
    settle(),
    fork('a', 'b'),
    settle(),
    madvise('b', 'ram', 0, 10, 'MADV_UNMERGEABLE'),
    settle(),
  ],
  [stats(1, 9, 0, 0), stats(1, 19, 0, 0), stats(1, 9, 0, 0)],
);

// Fork before any madvise: every page is COW-shared by a and b. Only a is
// registered: its 6 equal pages merge (write_protect_page accepts a page mapped
// twice: mapcount 2 + our reference = count 3), 4 unique ones are unshared; b still
// maps the original frames, one of which became the KSM page. Then b is madvised
// too: its 6 equal pages join the KSM page (one of them *is* it), and each of its 4
// unique pages is the very page a's rmap_item holds in the unstable tree, so it
// stays out ("don't substitute a ksm page for a forked page"): volatile.
scenario(
  'pages COW-shared by fork before madvise',
  [
    spawn('a'),
    mmap('a', 'ram', 10),
    fill('a', 'ram', 0, 6, 0x61),
    fill('a', 'ram', 6, 4, 0x00, { tag: 3 }),
    fork('a', 'b'),
    mergeable('a', 'ram', 0, 10),
    settle(),
    mergeable('b', 'ram', 0, 10),
    settle(),
    write('b', 'ram', 0, [1]),
    write('b', 'ram', 6 * P, [1]),
    settle(),
  ],
  // Stage 3: b's page 0 is now unique (unshared); b's page 6 is a private copy
  // differing from a's page 6: both unshared, no longer volatile.
  [stats(1, 5, 4, 0), stats(1, 11, 4, 4), stats(1, 10, 6, 3)],
);

// Fork after madvise, before ksmd could merge anything (or after: the end is the
// same): parent and child each map the 10 equal pages: one KSM page, 19 sharing.
scenario(
  'identical pages forked before merging',
  [spawn('a'), mmap('a', 'ram', 10), fill('a', 'ram', 0, 10, 0x61), mergeable('a', 'ram', 0, 10), fork('a', 'b'), settle()],
  [stats(1, 19, 0, 0)],
);

// MADV_DONTNEED drops 4 mappings of the KSM page: 1 + 5. Written again with the
// same contents, the 4 new pages merge back: 1 + 9.
scenario(
  'MADV_DONTNEED of merged pages, then the same contents written again',
  [
    spawn('a'),
    mmap('a', 'ram', 10),
    fill('a', 'ram', 0, 10, 0x61),
    mergeable('a', 'ram', 0, 10),
    settle(),
    madvise('a', 'ram', 2, 4, 'MADV_DONTNEED'),
    settle(),
    fill('a', 'ram', 2, 4, 0x61),
    settle(),
  ],
  [stats(1, 9, 0, 0), stats(1, 5, 0, 0), stats(1, 9, 0, 0)],
);

// Three sharers of one content (1 + 23) plus 4 unique pages in c. b exits: its 8
// rmap_items go (1 + 15). Then a and c exit: nothing mergeable is left, ksmd drops
// every mm_slot: all 0, and no region to digest.
scenario(
  'exit of one of three sharers, then of all',
  [
    spawn('a'),
    spawn('b'),
    spawn('c'),
    mmap('a', 'ram', 8),
    mmap('b', 'ram', 8),
    mmap('c', 'ram', 12),
    fill('a', 'ram', 0, 8, 0x5a),
    fill('b', 'ram', 0, 8, 0x5a),
    fill('c', 'ram', 0, 8, 0x5a),
    fill('c', 'ram', 8, 4, 0x00, { tag: 4 }),
    mergeable('a', 'ram', 0, 8),
    mergeable('b', 'ram', 0, 8),
    mergeable('c', 'ram', 0, 12),
    settle(),
    exit('b'),
    settle(),
    exit('a'),
    exit('c'),
    settle(),
  ],
  [stats(1, 23, 4, 0), stats(1, 15, 4, 0), stats(0, 0, 0, 0)],
);

// A merged region made PROT_NONE stays merged (x86: a PROT_NONE pte is still
// present, so follow_page finds the page); its digest skips every page. Made
// writable again, a write copies page 0 out of the KSM page: 1 + 8, 1 unshared.
scenario(
  'a merged region made PROT_NONE, then writable again and written',
  [
    spawn('a'),
    mmap('a', 'ram', 10),
    fill('a', 'ram', 0, 10, 0x61),
    mergeable('a', 'ram', 0, 10),
    settle(),
    mprotect('a', 'ram', 0, 10, 'none'),
    settle(),
    mprotect('a', 'ram', 0, 10, 'rw'),
    write('a', 'ram', 0, [7]),
    settle(),
  ],
  [stats(1, 9, 0, 0), stats(1, 9, 0, 0), stats(1, 8, 1, 0)],
);

// mprotect splits the region into read-only, PROT_NONE and writable areas before
// madvise; all three are mergeable and merge together (1 + 9). Then the read-only
// part is made writable and one page in it written: 1 + 8, 1 unshared.
scenario(
  'mprotect read-only and PROT_NONE parts before madvise',
  [
    spawn('a'),
    mmap('a', 'ram', 10),
    fill('a', 'ram', 0, 10, 0x61),
    mprotect('a', 'ram', 0, 3, 'r'),
    mprotect('a', 'ram', 3, 3, 'none'),
    mergeable('a', 'ram', 0, 10),
    settle(),
    mprotect('a', 'ram', 0, 3, 'rw'),
    write('a', 'ram', P + 9, [9]),
    settle(),
  ],
  [stats(1, 9, 0, 0), stats(1, 8, 1, 0)],
);

// Only pages 4..9 are advised: 1 + 5. Then 0..3 too: 1 + 9.
scenario(
  'partial madvise of a region, then the rest',
  [
    spawn('a'),
    mmap('a', 'ram', 12),
    fill('a', 'ram', 0, 12, 0x61),
    mergeable('a', 'ram', 4, 6),
    settle(),
    mergeable('a', 'ram', 0, 4),
    settle(),
  ],
  [stats(1, 5, 0, 0), stats(1, 9, 0, 0)],
);

// MADV_UNMERGEABLE of 4 merged pages breaks COW on them; ksmd drops their
// rmap_items: 1 + 5. Advised again, they merge again: 1 + 9.
scenario(
  'MADV_UNMERGEABLE of part of a merged region, then MADV_MERGEABLE again',
  [
    spawn('a'),
    mmap('a', 'ram', 10),
    fill('a', 'ram', 0, 10, 0x61),
    mergeable('a', 'ram', 0, 10),
    settle(),
    madvise('a', 'ram', 0, 4, 'MADV_UNMERGEABLE'),
    settle(),
    mergeable('a', 'ram', 0, 4),
    settle(),
  ],
  [stats(1, 9, 0, 0), stats(1, 5, 0, 0), stats(1, 9, 0, 0)],
);

// munmap of 3 merged pages: 1 + 6. munmap of the rest: nothing mergeable left,
// all 0; the region digests to FNV's basis.
scenario(
  'munmap of part of a merged region, then of the rest',
  [
    spawn('a'),
    mmap('a', 'ram', 10),
    fill('a', 'ram', 0, 10, 0x61),
    mergeable('a', 'ram', 0, 10),
    settle(),
    munmap('a', 'ram', 7, 3),
    settle(),
    munmap('a', 'ram', 0, 7),
    settle(),
  ],
  [stats(1, 9, 0, 0), stats(1, 6, 0, 0), stats(0, 0, 0, 0)],
);

// 10 unique pages, fork: each page is mapped by both; the parent's rmap_items are
// in the unstable tree, the child's meet their own page there: volatile. The child
// exits: its rmap_items go. (The child's region was partly unmapped before the
// fork, so it inherits the hole.)
scenario(
  'unique pages forked: the child\'s rmap_items stay volatile',
  [
    spawn('a'),
    mmap('a', 'ram', 12),
    fill('a', 'ram', 0, 12, 0x00, { tag: 7 }),
    munmap('a', 'ram', 10, 2),
    mergeable('a', 'ram', 0, 10),
    fork('a', 'b'),
    settle(),
    exit('b'),
    settle(),
  ],
  [stats(0, 0, 10, 10), stats(0, 0, 10, 0)],
);

// 300 sharers of one content: 2.6.33 has no max_page_sharing, so one KSM page
// (6.x's default of 256 would start a second one; real.ts pins it out of reach).
scenario(
  'three hundred identical pages: one KSM page',
  [spawn('a'), mmap('a', 'ram', 300), fill('a', 'ram', 0, 300, 0x61), mergeable('a', 'ram', 0, 300), settle()],
  [stats(1, 299, 0, 0)],
);

// Only the advised region is scanned, though the other holds the same contents.
scenario(
  'only the advised region of a process merges',
  [
    spawn('a'),
    mmap('a', 'x', 6),
    mmap('a', 'y', 6),
    fill('a', 'x', 0, 6, 0x61),
    fill('a', 'y', 0, 6, 0x61),
    mergeable('a', 'x', 0, 6),
    settle(),
    mergeable('a', 'y', 0, 6),
    settle(),
  ],
  [stats(1, 5, 0, 0), stats(1, 11, 0, 0)],
);

// Only the child is ever advised, and only pages 2..5, which it maps COW-shared with
// the parent: they merge (1 + 3); the parent keeps mapping its original frames,
// one of which is now the KSM page.
scenario(
  'a child advises part of what it shares with its never-advised parent',
  [
    spawn('a'),
    mmap('a', 'ram', 8),
    fill('a', 'ram', 0, 8, 0x61),
    fork('a', 'b'),
    mergeable('b', 'ram', 2, 4),
    settle(),
    write('a', 'ram', 3 * P, [5]),
    write('b', 'ram', 2 * P, [5]),
    settle(),
  ],
  // a's write copies a's own page; b's makes b's page 2 unique: 1 + 2, 1 unshared.
  [stats(1, 3, 0, 0), stats(1, 2, 1, 0)],
);

// The parent unmerges while its fork child still maps the KSM page: the child's 10
// rmap_items keep it (1 + 9). The parent advises again: its copies merge back onto
// the same content (1 + 19). Both unmerge: nothing mergeable, all 0.
scenario(
  'the parent unmerges while its fork child keeps sharing; then both unmerge',
  [
    spawn('a'),
    mmap('a', 'ram', 10),
    fill('a', 'ram', 0, 10, 0x61),
    mergeable('a', 'ram', 0, 10),
    settle(),
    fork('a', 'b'),
    madvise('a', 'ram', 0, 10, 'MADV_UNMERGEABLE'),
    settle(),
    mergeable('a', 'ram', 0, 10),
    settle(),
    madvise('a', 'ram', 0, 10, 'MADV_UNMERGEABLE'),
    madvise('b', 'ram', 0, 10, 'MADV_UNMERGEABLE'),
    settle(),
  ],
  [stats(1, 9, 0, 0), stats(1, 9, 0, 0), stats(1, 19, 0, 0), stats(0, 0, 0, 0)],
);

// 6 equal + 2 unique pages, forked twice (a -> b -> c). The equal pages of every
// generation map the one KSM page; each unique page is mapped by every generation
// (COW), so one rmap_item per page is in the unstable tree and the others volatile.
// Exits in creation order take their rmap_items away.
scenario(
  'a grandchild, and exits in creation order',
  [
    spawn('a'),
    mmap('a', 'ram', 8),
    fill('a', 'ram', 0, 6, 0x61),
    fill('a', 'ram', 6, 2, 0x00, { tag: 6 }),
    mergeable('a', 'ram', 0, 8),
    settle(),
    fork('a', 'b'),
    settle(),
    fork('b', 'c'),
    settle(),
    exit('a'),
    settle(),
    exit('b'),
    settle(),
  ],
  [stats(1, 5, 2, 0), stats(1, 11, 2, 2), stats(1, 17, 2, 4), stats(1, 11, 2, 2), stats(1, 5, 2, 0)],
);

// Every mapping of the first KSM page is rewritten (0x62): the page is freed, and
// its stable node goes stale (found through the keyhole and removed). The new
// contents make a new KSM page (1 + 7). a writes 0x61 back: two KSM pages, 1 + 3 each.
scenario(
  'a KSM page rewritten everywhere is freed; its contents can merge again later',
  [
    spawn('a'),
    spawn('b'),
    mmap('a', 'ram', 4),
    mmap('b', 'ram', 4),
    fill('a', 'ram', 0, 4, 0x61),
    fill('b', 'ram', 0, 4, 0x61),
    mergeable('a', 'ram', 0, 4),
    mergeable('b', 'ram', 0, 4),
    settle(),
    fill('a', 'ram', 0, 4, 0x62),
    fill('b', 'ram', 0, 4, 0x62),
    settle(),
    fill('a', 'ram', 0, 4, 0x61),
    settle(),
  ],
  [stats(1, 7, 0, 0), stats(1, 7, 0, 0), stats(2, 6, 0, 0)],
);

// A hole punched in the middle of a merged region (1 + 7 left), then a fork: the
// child inherits both halves (1 + 15). The child rewrites its first and last pages
// to 0x62: a second KSM page for those two (1 + 1), 1 + 13 on the first.
scenario(
  'munmap of the middle of a merged region, then fork and child writes',
  [
    spawn('a'),
    mmap('a', 'ram', 12),
    fill('a', 'ram', 0, 12, 0x61),
    mergeable('a', 'ram', 0, 12),
    settle(),
    munmap('a', 'ram', 4, 4),
    settle(),
    fork('a', 'b'),
    settle(),
    fill('b', 'ram', 0, 1, 0x62),
    fill('b', 'ram', 11, 1, 0x62),
    settle(),
  ],
  [stats(1, 11, 0, 0), stats(1, 7, 0, 0), stats(1, 15, 0, 0), stats(2, 14, 0, 0)],
);

// Merged pages made read-only stay merged and readable. Made writable and half of
// them rewritten to 0x62: two KSM pages of 5 mappings each.
scenario(
  'merged pages made read-only, then writable and half rewritten',
  [
    spawn('a'),
    mmap('a', 'ram', 10),
    fill('a', 'ram', 0, 10, 0x61),
    mergeable('a', 'ram', 0, 10),
    settle(),
    mprotect('a', 'ram', 0, 5, 'r'),
    settle(),
    mprotect('a', 'ram', 0, 5, 'rw'),
    fill('a', 'ram', 0, 5, 0x62),
    settle(),
  ],
  [stats(1, 9, 0, 0), stats(1, 9, 0, 0), stats(2, 8, 0, 0)],
);

// ---------------------------------------------------------------------------------

describe.sequential('differential: the real KSM and Samepage converge to the same statistics and memory', () => {
  it('has 29 scenarios, each named once, with one expected statistic per settle', () => {
    expect(new Set(cases.map((c) => c.scenario.name)).size).toBe(29);
    expect(cases.length).toBe(29);
    const mismatched = cases.filter((c) => c.expected.length !== c.scenario.steps.filter((s) => s.op === 'settle').length);
    expect(mismatched.map((c) => c.scenario.name)).toEqual([]);
  });

  for (const { scenario: s, expected } of cases) {
    describe(s.name, () => {
      it('model: converges to the statistics 2.6.33 gives, memory as written', () => {
        const model = runOnSamepage(s);
        expect(model.map((r) => r.stats)).toEqual(expected);
        expect(model.map((r) => r.digests)).toEqual(shadowDigests(s));
      });

      real(
        `real kernel: equal to the model at every settle${skip === null ? '' : ` [skipped: ${skip}]`}`,
        async () => {
          const model = runOnSamepage(s);
          const onReal = await runOnRealKernel(s);
          expect(onReal).toEqual(model);
        },
        TIMEOUT,
      );
    });
  }
});
