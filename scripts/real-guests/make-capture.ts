/**
 * Remakes captures/busybox-4.cap, the capture that ships with the repository:
 *
 *   bash scripts/real-guests/setup.sh && npx tsx scripts/real-guests/make-capture.ts [OUT]
 *
 * Boots four busybox guests under TCG (test/real/qemu.ts): id-1 and id-2 from
 * initramfs a (identical), and the mixed pair mix-a (a) and mix-b (b, 1 MiB more file
 * data), each 96 MiB of RAM on QEMU's pc machine with mem-merge on, kernel command line
 * "nokaslr init_on_free=1" (docs/real-guests.md says why: without them the file is
 * 50 MB instead of 18). Then runs `samepage capture` on their QMP sockets, which pauses
 * all four for the capture and resumes them, and kills the guests. Needs root.
 */
import { spawnSync } from 'node:child_process';
import { withRealGuests, guestManifest } from '../../test/real/qemu.js';

const out = process.argv[2] ?? 'captures/busybox-4.cap';
const append = 'nokaslr init_on_free=1';
const specs = [
  { name: 'id-1', initramfs: 'a' as const },
  { name: 'id-2', initramfs: 'a' as const },
  { name: 'mix-a', initramfs: 'a' as const },
  { name: 'mix-b', initramfs: 'b' as const },
].map((s) => ({ ...s, memoryMiB: 96, machine: 'pc' as const, memMerge: true, append }));
const m = guestManifest();
const note =
  `4 busybox guests under TCG (${m.qemu}; guest kernel ${m.kernel}; busybox-static ${m['busybox-static']}), ` +
  `96 MiB each, -machine pc,mem-merge=on, append "console=ttyS0 panic=-1 quiet ${append}"; ` +
  'id-1, id-2, mix-a boot initramfs a, mix-b initramfs b (1 MiB more); captured right after boot, paused; ' +
  'made by scripts/real-guests/make-capture.ts';
await withRealGuests(specs, async (guests) => {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'src/cli/main.ts', 'capture', '-o', out, '--level', '7', '--note', note, ...guests.map((g) => `${g.spec.name}=qmp:${g.capturePath}`)],
    { stdio: 'inherit' },
  );
  if (r.status !== 0) throw new Error(`samepage capture failed (${r.status ?? r.signal})`);
});
