import { PAGE_SIZE } from '../mm/constants.js';
import type { KsmPolicy } from '../vmm/host.js';
import { countPageKinds, layoutGuest, type ImageCatalog, type RegionKinds } from '../vmm/image.js';
import type { SourceLayout } from '../vmm/page-source.js';
import { captureSource } from './run.js';
import type { Scenario } from './schema.js';

/**
 * An up-front estimate of what a run costs this machine: real memory and wall time,
 * from the host's size, the guests' images (their page mixes, counted exactly: one
 * hash per page, no contents), their workloads and the KSM knobs. `samepage run`
 * refuses a run that will not fit in the memory free now (unless --force), and
 * `samepage run --estimate` prints this and nothing else.
 *
 * The model's memory (README, "Memory model"):
 *  - frame metadata for every frame of a memory block in use, and a pte per page;
 *  - KSM's rmap_items and stable nodes for every page it scans (numbered records in
 *    typed arrays, src/ksm/structs.ts);
 *  - one content per distinct generated page (image pages once per image, version
 *    pages once per version, unique and dirtied pages once per guest): ~74 bytes
 *    each, no page bytes (src/mm/contents.ts); zero pages cost nothing;
 *  - a fixed part: Node.js itself, the code, the content store's cache.
 * Wall time: writing the boot pages, ksmd's scanning (pages_to_scan every
 * sleep_millisecs, all run long), and a walk of the frames per sample.
 *
 * The per-unit figures are measurements on the development machine (bench/store.ts
 * prints them for this one); they are estimates, good to a factor of about 1.5.
 */

/** Bytes of frame metadata per frame of a block in use (flags, counts, mapping, index, private, LRU links, content id). */
export const FRAME_BYTES = 44;
/** Bytes of page table per mapped page (an f64 pte and its table's share). */
export const PTE_BYTES = 8.3;
/**
 * KSM metadata per page it scans: a 38-byte rmap_item record, a stable node's share
 * (37 B per KSM page) and the record tables' slack from doubling (src/ksm/structs.ts).
 * Measured (bench/ksm-metadata.ts, 2 x 256 MiB): 40.9 B of heap per rmap_item, 58.5 B
 * of records per merged page in ksmpages' worst case; rounded up.
 */
export const KSM_BYTES_PER_PAGE = 60;
/**
 * Per distinct generated page: its id's entries (kind 1, refs 4, slot 4, key 16,
 * checksum 5, abbreviated key 16, cache slot 4: 50 B), its interning slot, and the
 * slack of arrays that double.
 */
export const SOURCE_CONTENT_BYTES = 74;
/** Node.js, the code, the materialization cache. */
export const FIXED_BYTES = 160 * 1024 * 1024;
/** Wall time per boot page written (fault, rmap, content interning). */
export const BOOT_NS_PER_PAGE = 1500;
/**
 * Wall time per page ksmd scans (checksum memoized per content, tree walks). Measured
 * on the development machine, 3 December 2026 (bench/store.ts, idle machine, a whole
 * run's wall time over the pages it scanned): 2.57 µs a page on host-96g (149.6 M
 * pages scanned, 384.5 s), 3.38 µs on host-256g (59.6 M pages, 201.3 s), 1.9-3.0 µs in
 * a steady full scan of 256 MiB-64 GiB of generated pages; 3 µs sits within a factor
 * of 1.2 of both hosts. (It was 600 ns, measured on ksmpages' pages alone, and
 * under-estimated real fleets five-fold.)
 */
export const SCAN_NS_PER_PAGE = 3000;
/** Wall time per frame per sample (meminfo's walk of every frame in use). */
export const SAMPLE_NS_PER_FRAME = 3;

/** ksmd's rate under a governor, which moves it: its ceiling is unknown up front, so the kernel's defaults. */
const GOVERNED_PAGES_PER_SEC = (100 * 1000) / 20;

export interface RunEstimate {
  /** Pages the guests write at boot (not 'untouched'). */
  touchedPages: number;
  /** Frames in memory blocks in use (touched pages, at most the host's frames). */
  framesInUse: number;
  /** Distinct generated pages (boot and dirtied): contents the store names. */
  distinctContents: number;
  /** Pages ksmd scans over the run. */
  pagesScanned: number;
  /** Estimated peak real memory (bytes) and its parts. */
  bytes: number;
  parts: { frames: number; ptes: number; ksm: number; contents: number; fixed: number };
  /** Estimated wall time (s) and its parts. */
  seconds: number;
  timeParts: { boot: number; scan: number; samples: number };
  /** The host's RAM and swap, for the ratio. */
  hostBytes: number;
}

function pagesPerSecond(ksm: KsmPolicy): number {
  if (ksm.policy === 'fixed') {
    if (ksm.run !== 1) return 0;
    return (ksm.pagesToScan * 1000) / Math.max(1, ksm.sleepMillisecs);
  }
  return GOVERNED_PAGES_PER_SEC;
}

/** A guest's boot pages by kind: touched (not 'untouched'), and those of the image, the version, its own. */
interface PageKinds {
  touched: number;
  image: number;
  version: number;
  unique: number;
}

function sumRegionKinds(regions: RegionKinds[]): PageKinds {
  const k: PageKinds = { touched: 0, image: 0, version: 0, unique: 0 };
  for (const r of regions) {
    k.touched += r.pages - r.kinds.untouched;
    k.image += r.kinds.image;
    k.version += r.kinds.version;
    k.unique += r.kinds.unique;
  }
  return k;
}

/** PageKinds of any page source's layout, page by page (kindOf reads no contents). */
function countLayoutKinds(layout: SourceLayout): PageKinds {
  const k: PageKinds = { touched: 0, image: 0, version: 0, unique: 0 };
  for (let gfn = 0; gfn < layout.ramPages; gfn++) {
    const kind = layout.kindOf(gfn);
    if (kind !== 'untouched') k.touched++;
    if (kind === 'image') k.image++;
    else if (kind === 'version') k.version++;
    else if (kind === 'unique') k.unique++;
  }
  return k;
}

export function estimateRun(s: Scenario, images: ImageCatalog, ksm: KsmPolicy = s.ksm): RunEstimate {
  let touched = 0;
  let distinct = 0;
  let mergeable = 0;
  let dirtied = 0;
  const seenImage = new Set<string>();
  const seenVersion = new Set<string>();
  // A page's kind depends on its image (or capture) and the guest's RAM only: guests
  // of one entry's count (up to 262144 of them) are counted once, so the estimate
  // costs the distinct guests' pages, not the fleet's.
  const counted = new Map<string, Map<number, PageKinds>>();
  for (const g of s.guests) {
    const ramBytes = g.memoryMiB * 1024 * 1024;
    // A captured guest's pages are counted from its capture as the run lays it out (a
    // capture is its own "image" and "version"); an image's by its regions.
    const capture = g.capture === null ? null : captureSource(g.capture);
    const image = capture === null ? images.get(g.image, g.version ?? undefined) : null;
    const name = capture !== null ? capture.label : image!.name;
    const version = capture !== null ? capture.label : `${image!.name} ${image!.version}`;
    let byRam = counted.get(version);
    if (byRam === undefined) counted.set(version, (byRam = new Map()));
    let k = byRam.get(ramBytes);
    if (k === undefined) byRam.set(ramBytes, (k = capture !== null ? countLayoutKinds(capture.layout(ramBytes)) : sumRegionKinds(countPageKinds(image!, layoutGuest(image!, ramBytes)))));
    touched += k.touched;
    if (g.memMerge) mergeable += k.touched;
    if (!seenImage.has(name)) {
      seenImage.add(name);
      distinct += k.image;
    }
    if (!seenVersion.has(version)) {
      seenVersion.add(version);
      distinct += k.version;
    }
    distinct += k.unique;
    const bootMs = capture !== null ? capture.bootMs : image!.bootMs;
    const running = g.startAt === null ? 0 : Math.max(0, s.durationMs - g.startAt - bootMs) / 1000;
    const rate = g.workload.dirtyRate ?? (capture !== null ? capture.dirtyRate : image!.workload.dirtyRate);
    dirtied += Math.round(rate * running);
  }
  distinct += dirtied;
  const hostFrames = (s.memoryMiB * 1024 * 1024) / PAGE_SIZE;
  const framesInUse = Math.min(hostFrames, touched);
  const rate = pagesPerSecond(ksm);
  const pagesScanned = mergeable === 0 ? 0 : Math.round((rate * s.durationMs) / 1000);
  const ksmPages = rate > 0 ? mergeable : 0;
  const parts = {
    frames: framesInUse * FRAME_BYTES,
    ptes: touched * PTE_BYTES,
    ksm: ksmPages * KSM_BYTES_PER_PAGE,
    contents: distinct * SOURCE_CONTENT_BYTES,
    fixed: FIXED_BYTES,
  };
  const samples = Math.floor(s.durationMs / s.sampleEveryMs) + 1;
  const timeParts = {
    boot: ((touched + dirtied) * BOOT_NS_PER_PAGE) / 1e9,
    scan: (pagesScanned * SCAN_NS_PER_PAGE) / 1e9,
    samples: (samples * framesInUse * SAMPLE_NS_PER_FRAME) / 1e9,
  };
  return {
    touchedPages: touched,
    framesInUse,
    distinctContents: distinct,
    pagesScanned,
    bytes: parts.frames + parts.ptes + parts.ksm + parts.contents + parts.fixed,
    parts,
    seconds: timeParts.boot + timeParts.scan + timeParts.samples,
    timeParts,
    hostBytes: (s.memoryMiB + s.swapMiB) * 1024 * 1024,
  };
}
