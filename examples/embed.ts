/**
 * Embedding Samepage in a VM-manager host program: npx tsx examples/embed.ts
 *
 * A 1 GiB host runs four small guests of two images under the ksmtuned governor.
 * The program boots them, watches KSM find the identical pages minute by minute,
 * asks what one guest's memory holds through guest-physical reads, and finally
 * decides whether a fifth guest fits — the question the model exists to answer.
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

// Does a fifth 256 MiB guest fit without swapping? Boot it and see.
host.createGuest({ name: 'web-3', image: 'fedora', version: '13', memoryMiB: 256 });
try {
  host.startGuest('web-3');
  host.advance(120_000);
  const s = host.sample();
  console.log(`\nwith web-3: free ${mib(s.freeBytes)}, swap used ${mib(s.swapUsedBytes)}, saved ${mib(s.savedBytes)}`);
} catch (e) {
  if (!(e instanceof KernelError)) throw e;
  console.log(`web-3 could not start: ${e.message}`);
}
host.checkInvariants();
console.log(`\n${host.log.filter((e) => e.what.startsWith('ksmtuned')).length} ksmtuned adjustments; page size ${PAGE_SIZE} bytes`);
