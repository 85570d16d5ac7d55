/**
 * Embedding Samepage in a VM-manager host program: npx tsx examples/embed.ts
 *
 * A 1 GiB host runs four small guests of three images under the ksmtuned governor.
 * While they fit comfortably, ksmtuned keeps ksmd stopped (committed memory plus its
 * threshold stays below MemTotal). The program reads and writes one guest's memory
 * through guest-physical addresses, then boots a fifth guest: committed memory
 * crosses the line, the governor starts ksmd, and the guests' identical pages merge
 * minute by minute — the question the model exists to answer: does it fit, and
 * what does KSM save?
 */
import { Host, KernelError, PAGE_SIZE, loadImageCatalog } from '../src/index.js';

const MiB = 1024 * 1024;
const images = loadImageCatalog();
const host = new Host({
  memoryMiB: 1024,
  swapMiB: 256,
  blockMiB: 128,
  seed: 7,
  images,
  ksm: { policy: 'ksmtuned', config: { monitorInterval: 10, npagesMax: 2000 }, maxKernelPages: null },
});

for (const [name, image, version] of [
  ['web-1', 'fedora', '13'],
  ['web-2', 'fedora', '13'],
  ['db-1', 'fedora', '12'],
  ['build-1', 'ubuntu', '10.04'],
] as const) {
  host.createGuest({ name, image, version, memoryMiB: 256 });
  host.startGuest(name);
}

const mib = (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`;
for (let minute = 1; minute <= 5; minute++) {
  host.advance(60_000);
  const s = host.sample();
  console.log(
    `t=${minute}min  saved ${mib(s.savedBytes).padStart(9)}  free ${mib(s.freeBytes).padStart(9)}  ` +
      `pages_shared ${s.pagesShared}  pages_sharing ${s.pagesSharing}  ksmd pages_to_scan ${s.pagesToScan} (run=${s.run})`,
  );
}

// Guest-physical access: what does web-1 hold at 1 MiB? Write a marker and read it back.
const web1 = host.guest('web-1');
web1.writePhys(MiB, new TextEncoder().encode('hello from the guest'));
console.log(`\nweb-1 at guest-physical 1 MiB: "${new TextDecoder().decode(web1.readPhys(MiB, 20))}"`);

for (const g of host.sample().guests) {
  console.log(`${g.name.padEnd(8)} resident ${mib(g.residentBytes).padStart(9)}  merged ${mib(g.mergedBytes).padStart(9)}  its share of the saving ${mib(g.savedBytes)}`);
}

// A fifth 256 MiB guest: does it fit, and what does KSM find?
host.createGuest({ name: 'web-3', image: 'fedora', version: '13', memoryMiB: 256 });
try {
  host.startGuest('web-3');
} catch (e) {
  if (!(e instanceof KernelError)) throw e;
  console.log(`web-3 could not start: ${e.message}`);
}
console.log('\nwith web-3:');
for (let minute = 6; minute <= 9; minute++) {
  host.advance(60_000);
  const s = host.sample();
  console.log(
    `t=${minute}min  saved ${mib(s.savedBytes).padStart(9)}  free ${mib(s.freeBytes).padStart(9)}  swap ${mib(s.swapUsedBytes).padStart(8)}  ` +
      `pages_shared ${s.pagesShared}  pages_sharing ${s.pagesSharing}  pages_to_scan ${s.pagesToScan} (run=${s.run})`,
  );
}
host.checkInvariants();
const decisions = host.log.filter((e) => e.what.startsWith('ksmtuned'));
const firstStart = decisions.find((e) => !e.what.endsWith('stop ksmd'));
console.log(`\n${decisions.length} ksmtuned adjustments; ksmd first started at ${firstStart === undefined ? 'never' : `${firstStart.t / 1000}s: ${firstStart.what}`}`);
console.log(`${PAGE_SIZE}-byte pages; the host's log has ${host.log.length} entries`);
