/**
 * The page-source seam: where a guest's memory comes from.
 *
 * A Guest (guest.ts) knows nothing of how its bytes are made. It lays its source out
 * in its RAM once (`layout(ramBytes)`), then, page by page, asks the layout what kind
 * a page is and has it fill the page it writes at boot (`bootPage`), and picks and
 * fills the pages its workload dirties (`dirtyTarget`, `dirtyPage`). A source is
 * immutable, and two sources with the same `ref` give the same pages: a host snapshot
 * keeps each guest's `ref` (a name and a content hash), never the source itself, and
 * restoring resolves the ref again through a catalog (PageSourceCatalog).
 *
 * Snapshots used to carry each guest's image whole, which made a file restorable
 * anywhere; but a captured guest's source is its whole memory, tens of MB, and the
 * kernel's frames already hold everything a guest has written. So a snapshot needs
 * the catalog (or capture) it was made with, and says so when it is missing or
 * has changed, rather than carrying a second copy of every guest.
 *
 * Implementations:
 * - SyntheticSource (image.ts): pages generated from an image descriptor (guests/),
 *   its ref the descriptor's name, version and a hash of what decides the pages.
 * - CaptureSource (capture-source.ts): a captured real guest, pages read from a
 *   capture file. A page the capture found not present is 'untouched' (never
 *   written, so the host never allocates it); a zero-page mapping is read, not
 *   written (hostMapping 'zero-page'); a 2 MiB range the real host mapped with small
 *   pages is mapped small (hostMapping 'small'). Its ref names the capture file and
 *   the guest, and hashes the file.
 */

import type { PageGenerator } from '../mm/contents.js';
import type { FirmwareBlock, QemuNic } from './qemu-blocks.js';

/**
 * What one guest page holds after boot: 'untouched' (never written: the host never
 * allocates it), 'zero', or contents: for a synthetic image 'version' (identical in
 * every guest of an image and version), 'image' (identical across versions) or
 * 'unique' (per guest and boot).
 */
export type PageFill = 'zero' | 'version' | 'image' | 'unique' | 'untouched';

/**
 * How a snapshot names a source. `digest` is a sha-256 (64 hex digits) of everything
 * that decides the source's pages and timing, so a source whose pages would differ
 * never passes for the one saved.
 */
export interface PageSourceRef {
  /** 'synthetic': generated from an image descriptor in the catalog; 'capture': a guest of a capture file. */
  readonly type: 'synthetic' | 'capture';
  /** The image's name and version: 'fedora', '13'; for a capture, the file and the guest's name in it. */
  readonly name: string;
  readonly version: string;
  readonly digest: string;
}

export interface PageSource {
  readonly ref: PageSourceRef;
  /**
   * What makes the source's pages from a 4-word key (SourceLayout.bootKey/dirtyKey):
   * the guest registers it with the kernel's content store and hands over keys, so a
   * generated page costs the host no bytes until something writes it.
   */
  readonly generator: PageGenerator;
  /** How reports name it: 'fedora 13'. */
  readonly label: string;
  /** Simulated time a boot takes; the guest writes its boot pages progressively over it. */
  readonly bootMs: number;
  /** The smallest guest RAM it fits. */
  readonly minRamBytes: number;
  /** Pages per simulated second the idle workload dirties. */
  readonly dirtyRate: number;
  /** The source laid out in a guest of `ramBytes`; throws an Error saying why when it does not fit. */
  layout(ramBytes: number): SourceLayout;
  /**
   * QEMU's RAM blocks besides guest RAM as this source knows them (a capture of a
   * real QEMU), or absent: a guest that maps QEMU's blocks then has the measured
   * ones of qemu-blocks.ts.
   */
  firmware?(nic: QemuNic): FirmwareBlock[] | null;
}

/**
 * A source laid out in one guest's RAM, pages numbered 0..ramPages-1 in RAM order
 * (gfn). Nothing here allocates per page: contents go into the caller's 1024-word
 * page.
 */
export interface SourceLayout {
  readonly ramPages: number;
  /** The kind of page `gfn` after boot, without filling it. */
  kindOf(gfn: number): PageFill;
  /** Fill `out` with page `gfn` of a boot with `bootSeed` and return its kind; 'untouched' leaves `out` alone. */
  bootPage(gfn: number, bootSeed: number, out: Uint32Array): PageFill;
  /** The gfn the workload dirties next, from two uniform u32 draws. */
  dirtyTarget(r1: number, r2: number): number;
  /** Fill `out` with the workload's `counter`-th dirtied page of the boot with `bootSeed`: never equal to any other page. */
  dirtyPage(bootSeed: number, counter: number, out: Uint32Array): void;
  /**
   * bootPage() without the bytes: the kind, and for a page with contents other than
   * zero the key (4 words) from which the source's generator makes exactly the bytes
   * bootPage() would write. 'zero' and 'untouched' leave `key` alone.
   */
  bootKey(gfn: number, bootSeed: number, key: Uint32Array): PageFill;
  /** dirtyPage() without the bytes: its key for the generator. */
  dirtyKey(bootSeed: number, counter: number, key: Uint32Array): void;
  /**
   * Optional, for sources that know how a real host mapped each page (captures):
   * 'zero-page' (only read: the guest reads it, mapping the shared zero page),
   * 'small' (its 2 MiB range held small pages only: the guest maps the range small
   * even where the kernel would give it a THP), 'any' (as the model's kernel does).
   */
  hostMapping?(gfn: number): HostMapping;
}

export type HostMapping = 'any' | 'zero-page' | 'small';

/** What finds a source again from a snapshot's ref: the image catalog (later, captures too). */
export interface PageSourceCatalog {
  /** The source `ref` names, or why there is none: missing, or changed since the ref was taken. */
  resolve(ref: PageSourceRef): PageSource | string;
}

/** 'fedora 13 (sha256 1a2b3c4d…)': a ref in messages. */
export function describeRef(ref: PageSourceRef): string {
  return `${ref.name} ${ref.version} (sha256 ${ref.digest.slice(0, 12)}…)`;
}

const SOURCE_METHODS = ['layout'] as const;
const LAYOUT_METHODS = ['kindOf', 'bootPage', 'dirtyTarget', 'dirtyPage', 'bootKey', 'dirtyKey'] as const;

/**
 * What is wrong with a page source a caller built by hand, or null: the shape the
 * guest calls page after page (a source without bootKey would otherwise fail at the
 * guest's first tick, far from the call that handed it over). The values its methods
 * return are the source's own business; the shape is checked at the door.
 */
export function pageSourceProblem(src: unknown): string | null {
  if (src === null || typeof src !== 'object') return 'expected a page source';
  const o = src as Record<string, unknown>;
  for (const m of SOURCE_METHODS) if (typeof o[m] !== 'function') return `a page source has a ${m}() method`;
  const ref = o.ref as Record<string, unknown> | null | undefined;
  if (ref === null || typeof ref !== 'object' || (ref.type !== 'synthetic' && ref.type !== 'capture') || typeof ref.name !== 'string' || typeof ref.version !== 'string' || typeof ref.digest !== 'string') {
    return "a page source has a ref { type: 'synthetic' or 'capture', name, version, digest }";
  }
  const g = o.generator as Record<string, unknown> | null | undefined;
  if (g === null || typeof g !== 'object' || typeof g.name !== 'string' || typeof g.keyIsHead !== 'boolean' || typeof g.generate !== 'function') {
    return 'a page source has a generator { name, keyIsHead, generate() }';
  }
  if (typeof o.label !== 'string') return 'a page source has a label';
  for (const f of ['bootMs', 'minRamBytes', 'dirtyRate']) {
    const v = o[f];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) return `a page source's ${f} is a finite number ≥ 0`;
  }
  return null;
}

/** What is wrong with the layout a page source made for `ramPages` pages, or null. */
export function sourceLayoutProblem(layout: unknown, ramPages: number): string | null {
  if (layout === null || typeof layout !== 'object') return 'its layout() returned no layout';
  const o = layout as Record<string, unknown>;
  if (o.ramPages !== ramPages) return `its layout has ${String(o.ramPages)} pages, the guest ${ramPages}`;
  for (const m of LAYOUT_METHODS) if (typeof o[m] !== 'function') return `its layout has no ${m}() method`;
  return null;
}

