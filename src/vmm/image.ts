import { createHash } from 'node:crypto';
import { z } from 'zod';
import { PAGE_SIZE } from '../mm/constants.js';
import type { PageGenerator } from '../mm/contents.js';
import { assertNever } from '../lib/errors.js';
import { ConfigDocument, ConfigError, describe, formatSize, parseSize, zDuration, zFraction, zSize, type ConfigProblem } from './config.js';
import { describeRef, type PageFill, type PageSource, type PageSourceCatalog, type PageSourceRef, type SourceLayout } from './page-source.js';

/**
 * Guest images: what the RAM of a freshly booted guest holds, and how its idle
 * workload dirties it. A descriptor (guests/*.yaml, format in guests/README.md) lists
 * the guest's memory as regions in guest-physical order (kernel, libraries, page
 * cache, heap, free...), each a mix of page kinds:
 *
 *   zero       all-zero page
 *   version    identical in every guest of this image and version (kernel text, libraries)
 *   image      identical in every guest of this image, any version (files unchanged between releases)
 *   unique     different in every boot (heap, stacks, private page cache)
 *   untouched  never written at boot: the host never allocates it
 *
 * What matters for KSM is which pages are equal to which, not what the bytes say, so
 * contents are generated, never stored. Invariants the generator keeps:
 *
 *  - The kind of page `index` of region `r` is a hash of (image name, r, index) only.
 *    So every guest of one image+version has the same kinds at the same gfn, and two
 *    versions agree on which indices of a region they both have are 'image' pages
 *    (the kinds are cut from one hash in the order image, zero, version, unique,
 *    untouched, so the version with the smaller image fraction has a subset of the
 *    other's image pages).
 *  - Contents depend on: version pages (name, version, region, index); image pages
 *    (name, region, index); unique pages (name, version, region, index, bootSeed).
 *  - A generated page starts with four header words: a tag per kind, a hash of the
 *    names its contents depend on, the index, and the boot seed (unique pages; 0
 *    otherwise). So pages of different kinds, regions or indices can never be equal;
 *    pages of different images or versions differ unless 32-bit hashes of their
 *    names collide. The other 1020 words are a cheap sequence seeded from the
 *    header: realistic sharing, not realistic bytes.
 *  - Nothing here allocates per page: guestPage() and dirtyPage() fill the caller's
 *    Uint32Array; the string hashes are computed once, when the image is built.
 */

export type { PageFill } from './page-source.js';

/** Every kind, in the order the kind hash is cut into (see the invariants above). */
export const PAGE_FILLS: readonly PageFill[] = ['image', 'zero', 'version', 'unique', 'untouched'];

/** Fractions of a region's pages by kind; they add up to 1. */
export type PageMix = Readonly<Record<PageFill, number>>;

/** A region's size: bytes, a share of guest RAM, or whatever the other regions leave. */
export type RegionSize = { readonly unit: 'bytes'; readonly bytes: number } | { readonly unit: 'percent'; readonly percent: number } | { readonly unit: 'rest' };

/**
 * One region of a guest's RAM. The seeds are hashes of the names, computed once so
 * that guestPage() hashes only integers; `cuts[k]` is the upper bound (on the u32
 * kind hash) of PAGE_FILLS[k], cumulative, the last kind present ending at 2^32.
 */
export interface ImageRegion {
  readonly name: string;
  readonly size: RegionSize;
  readonly mix: PageMix;
  /** hash(name, region): which kind each page is. */
  readonly kindSeed: number;
  /** hash(name, region): 'image' contents. */
  readonly imageSeed: number;
  /** hash(name, version, region): 'version' contents. */
  readonly versionSeed: number;
  /** hash(name, version, region): 'unique' contents, with the boot seed. */
  readonly uniqueSeed: number;
  readonly cuts: readonly number[];
}

/** A region the workload dirties, and how often relative to the others. */
export interface WorkloadTarget {
  readonly region: string;
  /** Index in the image's (and the layout's) regions. */
  readonly regionIndex: number;
  /** Fraction of the dirtied pages that land in this region; the targets' weights add up to 1. */
  readonly weight: number;
  /** Cumulative upper bound on a u32 draw, the last target ending at 2^32. */
  readonly cut: number;
}

export interface ImageWorkload {
  /** Pages per simulated second when running with the image's default (idle) workload. */
  readonly dirtyRate: number;
  readonly targets: readonly WorkloadTarget[];
}

export interface GuestImage {
  /** 'fedora'. */
  readonly name: string;
  /** '13': a string, compared part by part (compareVersions). */
  readonly version: string;
  readonly os: 'linux' | 'windows';
  readonly description: string;
  /** The file it was parsed from, as the caller named it. */
  readonly file: string;
  /** Simulated time a boot takes; the caller writes the pages progressively over it. */
  readonly bootMs: number;
  /** The smallest guest RAM it boots in. */
  readonly minRamBytes: number;
  readonly workload: ImageWorkload;
  /** In guest-physical order; exactly one has size 'rest'. */
  readonly regions: readonly ImageRegion[];
}

const TWO_POW_32 = 0x100000000;
const PAGE_WORDS = PAGE_SIZE / 4;

/** Header tags ('SP' and a kind number): the first word of every generated page. */
const TAG_IMAGE = 0x53500001;
const TAG_VERSION = 0x53500002;
const TAG_UNIQUE = 0x53500003;
const TAG_DIRTY = 0x53500004;

// ---- hashing ---------------------------------------------------------------------------------

// MurmurHash3 (x86_32) body and finaliser: all Math.imul and shifts, so it is fast and
// gives the same u32 on every platform. Used for the name hashes and the per-page seeds.
function murmurMix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Hash of strings (their UTF-16 code units, each string ended by its length). */
function hashStrings(...parts: string[]): number {
  let h = 0x53616d65; // 'Same'
  for (const s of parts) {
    for (let i = 0; i < s.length; i++) h = murmurMix(h, s.charCodeAt(i));
    h = murmurMix(h, s.length | 0x80000000);
  }
  return fmix32(h);
}

/** The kind hash of page `index` of a region. */
function kindHash(kindSeed: number, index: number): number {
  return fmix32(murmurMix(kindSeed, index));
}

/**
 * Fill `out` with a generated page: four header words, then a Weyl sequence (an odd
 * step from the header's hash) passed through an xorshift, unrolled by four. A plain
 * xorshift generator was tried first: 1.7 µs a page against 0.6 µs for this, and the
 * header already makes every page distinct, so the cheaper sequence does.
 */
function fillPage(out: Uint32Array, tag: number, a: number, b: number, c: number, o = 0): void {
  out[o] = tag;
  out[o + 1] = a;
  out[o + 2] = b;
  out[o + 3] = c;
  const h = fmix32(murmurMix(murmurMix(murmurMix(tag, a), b), c));
  let x = h | 0;
  const step = Math.imul(h, 0x9e3779b1) | 1;
  for (let i = o + 4; i < o + PAGE_WORDS; i += 4) {
    x = (x + step) | 0;
    out[i] = x ^ (x >>> 15);
    x = (x + step) | 0;
    out[i + 1] = x ^ (x >>> 15);
    x = (x + step) | 0;
    out[i + 2] = x ^ (x >>> 15);
    x = (x + step) | 0;
    out[i + 3] = x ^ (x >>> 15);
  }
}

/**
 * Every generated page is decided by its four header words (fillPage()), so they are
 * the key the kernel's content store names it by: a guest hands the key over instead
 * of 4 KiB, and the page is made again from it whenever someone reads it. One
 * generator serves every image (the seeds in the key tell images apart).
 */
export const SYNTHETIC_GENERATOR: PageGenerator = {
  name: 'synthetic',
  keyIsHead: true, // fillPage() writes the key as the page's four header words
  generate(k0: number, k1: number, k2: number, k3: number, out: Uint32Array, wordOffset: number): void {
    fillPage(out, k0, k1, k2, k3, wordOffset);
  },
};

/** The key of a generated page: its four header words. */
function setKey(key: Uint32Array, tag: number, a: number, b: number, c: number): void {
  key[0] = tag;
  key[1] = a;
  key[2] = b;
  key[3] = c;
}

// ---- versions ---------------------------------------------------------------------------------

/**
 * Compare two version strings part by part ('.', '-' separate parts): numeric parts
 * as numbers, so '10.04' < '10.10' < '12' and '9' < '10'; other parts as strings,
 * after numbers; a missing part sorts first ('2008' < '2008-r2').
 */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/);
  const pb = b.split(/[.-]/);
  const n = Math.max(pa.length, pb.length);
  for (let i = 0; i < n; i++) {
    const x = pa[i];
    const y = pb[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d+$/.test(x);
    const ny = /^\d+$/.test(y);
    if (nx && ny) {
      const d = Number(x) - Number(y);
      if (d !== 0) return d < 0 ? -1 : 1;
    } else if (nx !== ny) {
      return nx ? -1 : 1; // digits before words: '6.0' < '6.beta'
    } else if (x !== y) {
      return x < y ? -1 : 1;
    }
  }
  return 0;
}

// ---- the descriptor schema -----------------------------------------------------------------------

const SIZE_EXPECTED = "expected a size like '64MiB', a share of guest RAM like '25%', or 'rest'";

const zRegionSize = z.string({ error: (i) => `${SIZE_EXPECTED}, got ${describe(i.input)}` }).transform((s, ctx): RegionSize => {
  const t = s.trim();
  if (t === 'rest') return { unit: 'rest' };
  const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(t);
  if (pct !== null) {
    const percent = Number(pct[1]);
    if (percent > 0 && percent < 100) return { unit: 'percent', percent };
    ctx.addIssue({ code: 'custom', message: `expected a share of guest RAM above 0% and below 100%, got ${describe(s)}` });
    return z.NEVER;
  }
  const bytes = parseSize(t);
  if (bytes === null) {
    ctx.addIssue({ code: 'custom', message: `${SIZE_EXPECTED}, got ${describe(s)}` });
    return z.NEVER;
  }
  if (bytes === 0 || bytes % PAGE_SIZE !== 0) {
    ctx.addIssue({ code: 'custom', message: `expected a size that is a positive multiple of 4KiB, got ${describe(s)}` });
    return z.NEVER;
  }
  return { unit: 'bytes', bytes };
});

const zIdentifier = (what: string, pattern: RegExp, example: string) =>
  z.string({ error: (i) => `expected ${what} like ${example}, got ${describe(i.input)}` }).regex(pattern, { error: (i) => `expected ${what} like ${example}, got ${describe(i.input)}` });

const zMix = z.strictObject(
  {
    zero: zFraction.optional(),
    version: zFraction.optional(),
    image: zFraction.optional(),
    unique: zFraction.optional(),
    untouched: zFraction.optional(),
  },
  { error: (i) => `expected a map of page kinds to fractions like { version: 0.9, zero: 0.1 }, got ${describe(i.input)}` },
);

const zRegion = z.strictObject(
  {
    name: zIdentifier('a region name', /^[a-z][a-z0-9_]*$/, "'page_cache' (lower case, digits, '_')"),
    size: zRegionSize,
    mix: zMix,
  },
  { error: (i) => `expected a region (a map with name, size and mix), got ${describe(i.input)}` },
);

const rateError = (i: { input?: unknown }) => `expected pages per second (a number, 0 or more), got ${describe(i.input)}`;

const zWorkload = z.strictObject(
  {
    dirty_rate: z.number({ error: rateError }).min(0, { error: rateError }),
    targets: z.record(z.string(), zFraction, {
      error: (i) => `expected a map of region names to weights like { heap: 0.8, page_cache: 0.2 }, got ${describe(i.input)}`,
    }),
  },
  { error: (i) => `expected a map with dirty_rate and targets, got ${describe(i.input)}` },
);

const DESCRIPTOR_EXPECTED = 'expected a guest image descriptor: a map with name, version, os, description, boot_time, min_ram, regions and workload';

const ImageSchema = z.strictObject(
  {
    name: zIdentifier('an image name', /^[a-z][a-z0-9-]*$/, "'fedora' (lower case, digits, '-')"),
    version: z
      .string({ error: (i) => `expected a version in quotes like '10.04' (unquoted, YAML reads a number), got ${describe(i.input)}` })
      .regex(/^[0-9A-Za-z][0-9A-Za-z.-]*$/, { error: (i) => `expected a version like '13' or '10.04', got ${describe(i.input)}` }),
    os: z.enum(['linux', 'windows'], { error: (i) => `expected 'linux' or 'windows', got ${describe(i.input)}` }),
    description: z
      .string({ error: (i) => `expected a sentence saying what the guest is, got ${describe(i.input)}` })
      .min(1, { error: 'expected a sentence saying what the guest is, got ""' }),
    boot_time: zDuration,
    min_ram: zSize,
    regions: z.array(zRegion, { error: (i) => `expected a list of regions, got ${describe(i.input)}` }).min(1, { error: 'expected at least one region' }),
    workload: zWorkload,
  },
  { error: (i) => `${DESCRIPTOR_EXPECTED}, got ${i.input === null || i.input === undefined ? 'an empty file' : describe(i.input)}` },
);

type ImageSpec = z.output<typeof ImageSchema>;

/** Fractions that add up to 1 within this are taken as 1 (0.1 + 0.2 ≠ 0.3 in floating point). */
const SUM_TOLERANCE = 1e-6;

function formatFraction(x: number): string {
  return String(Math.round(x * 1e6) / 1e6);
}

// ---- parsing -------------------------------------------------------------------------------------

/**
 * Parse and validate a descriptor (YAML or JSON text; `file` names it in messages).
 * Throws ConfigError listing every problem: schema problems first (all of them), or,
 * when the schema is satisfied, every cross-field problem.
 */
export function parseImage(text: string, file: string): GuestImage {
  const doc = ConfigDocument.parse(text, file);
  const spec = doc.validate(ImageSchema);
  const problems = crossCheck(doc, spec);
  if (problems.length > 0) {
    problems.sort((a, b) => a.line - b.line);
    throw new ConfigError(file, problems);
  }
  return buildImage(spec, file);
}

function crossCheck(doc: ConfigDocument, spec: ImageSpec): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const seen = new Map<string, number>();
  let restAt = -1;
  let absolute = 0;
  let percent = 0;
  spec.regions.forEach((r, i) => {
    const first = seen.get(r.name);
    if (first !== undefined) problems.push(doc.problem(['regions', i, 'name'], `${describe(r.name)} is already the name of regions[${first}]`));
    else seen.set(r.name, i);
    const sum = mixSum(r.mix);
    if (Math.abs(sum - 1) > SUM_TOLERANCE) {
      problems.push(doc.problem(['regions', i, 'mix'], `expected fractions that add up to 1, got ${formatFraction(sum)}`));
    }
    if (r.size.unit === 'rest') {
      if (restAt >= 0) problems.push(doc.problem(['regions', i, 'size'], `only one region may take 'rest', and regions[${restAt}] does already`));
      else restAt = i;
    } else if (r.size.unit === 'percent') {
      percent += r.size.percent;
    } else {
      absolute += r.size.bytes;
    }
  });
  if (restAt < 0) problems.push(doc.problem(['regions'], "expected one region with size 'rest', to take the RAM the others leave"));
  if (percent >= 100) {
    problems.push(doc.problem(['regions'], `expected shares of guest RAM that add up to less than 100%, got ${formatFraction(percent)}%`));
  } else {
    // Fits at min_ram ⇒ fits at any larger RAM: the absolute part is fixed and the shares grow with the RAM.
    const need = absolute + (spec.min_ram * percent) / 100;
    if (need > spec.min_ram) {
      problems.push(
        doc.problem(
          ['min_ram'],
          `expected enough RAM for the regions, but at ${formatSize(spec.min_ram)} they need ${formatSize(Math.ceil(need / PAGE_SIZE) * PAGE_SIZE)} (${formatSize(absolute)} + ${formatFraction(percent)}% of RAM)`,
        ),
      );
    }
  }
  let weights = 0;
  for (const [region, weight] of Object.entries(spec.workload.targets)) {
    weights += weight;
    if (!seen.has(region)) {
      problems.push(doc.problem(['workload', 'targets', region], `expected the name of a region (${[...seen.keys()].join(', ')}), got ${describe(region)}`));
    }
  }
  if (Math.abs(weights - 1) > SUM_TOLERANCE) {
    problems.push(doc.problem(['workload', 'targets'], `expected weights that add up to 1, got ${formatFraction(weights)}`));
  }
  return problems;
}

function mixSum(mix: ImageSpec['regions'][number]['mix']): number {
  return (mix.zero ?? 0) + (mix.version ?? 0) + (mix.image ?? 0) + (mix.unique ?? 0) + (mix.untouched ?? 0);
}

function buildImage(spec: ImageSpec, file: string): GuestImage {
  const regions = spec.regions.map((r): ImageRegion => {
    const mix: PageMix = { zero: r.mix.zero ?? 0, version: r.mix.version ?? 0, image: r.mix.image ?? 0, unique: r.mix.unique ?? 0, untouched: r.mix.untouched ?? 0 };
    return {
      name: r.name,
      size: r.size,
      mix,
      kindSeed: hashStrings('kind', spec.name, r.name),
      imageSeed: hashStrings('image', spec.name, r.name),
      versionSeed: hashStrings('version', spec.name, spec.version, r.name),
      uniqueSeed: hashStrings('unique', spec.name, spec.version, r.name),
      cuts: cumulativeCuts(PAGE_FILLS.map((k) => mix[k])),
    };
  });
  const entries = Object.entries(spec.workload.targets).filter(([, w]) => w > 0);
  const cuts = cumulativeCuts(entries.map(([, w]) => w));
  const targets = entries.map(([region, weight], i): WorkloadTarget => ({ region, regionIndex: regions.findIndex((r) => r.name === region), weight, cut: cuts[i]! }));
  return {
    name: spec.name,
    version: spec.version,
    os: spec.os,
    description: spec.description,
    file,
    bootMs: spec.boot_time,
    minRamBytes: spec.min_ram,
    workload: { dirtyRate: spec.workload.dirty_rate, targets },
    regions,
  };
}

/**
 * Cumulative u32-scale bounds for fractions adding up to 1. The last nonzero one is
 * pinned to 2^32 (and so is every zero after it), so rounding can never leave a draw
 * that falls past the end.
 */
function cumulativeCuts(fractions: readonly number[]): number[] {
  let last = -1;
  fractions.forEach((f, i) => {
    if (f > 0) last = i;
  });
  let sum = 0;
  return fractions.map((f, i) => {
    sum += f;
    return i >= last ? TWO_POW_32 : Math.min(TWO_POW_32, Math.round(sum * TWO_POW_32));
  });
}

// ---- the page source ------------------------------------------------------------------------------

/**
 * sha-256 (hex) of everything in an image that decides what its guests write and
 * when: name, version, OS, boot time, minimum RAM, the regions (size, mix and the
 * seeds and kind bounds derived from them) and the workload. Not the description or
 * the file it was read from: rewording or moving a descriptor changes no page.
 */
export function imageDigest(image: GuestImage): string {
  const canonical = {
    name: image.name,
    version: image.version,
    os: image.os,
    bootMs: image.bootMs,
    minRamBytes: image.minRamBytes,
    regions: image.regions.map((r) => ({
      name: r.name,
      size: r.size.unit === 'bytes' ? { unit: 'bytes', bytes: r.size.bytes } : r.size.unit === 'percent' ? { unit: 'percent', percent: r.size.percent } : { unit: 'rest' },
      mix: PAGE_FILLS.map((k) => r.mix[k]),
      seeds: [r.kindSeed, r.imageSeed, r.versionSeed, r.uniqueSeed],
      cuts: r.cuts,
    })),
    workload: {
      dirtyRate: image.workload.dirtyRate,
      targets: image.workload.targets.map((t) => ({ region: t.region, regionIndex: t.regionIndex, weight: t.weight, cut: t.cut })),
    },
  };
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex');
}

/**
 * A synthetic image as a page source: the generator of this file behind the seam
 * (page-source.ts). Its ref is the image's name, version and imageDigest().
 */
export class SyntheticSource implements PageSource {
  readonly image: GuestImage;
  readonly ref: PageSourceRef;
  readonly label: string;
  readonly bootMs: number;
  readonly minRamBytes: number;
  readonly dirtyRate: number;
  readonly generator: PageGenerator;

  constructor(image: GuestImage) {
    this.image = image;
    this.generator = SYNTHETIC_GENERATOR;
    this.ref = { type: 'synthetic', name: image.name, version: image.version, digest: imageDigest(image) };
    this.label = `${image.name} ${image.version}`;
    this.bootMs = image.bootMs;
    this.minRamBytes = image.minRamBytes;
    this.dirtyRate = image.workload.dirtyRate;
  }

  layout(ramBytes: number): SourceLayout {
    return new SyntheticLayout(this.image, layoutGuest(this.image, ramBytes));
  }
}

/** A synthetic image laid out in one guest's RAM: guestPage(), pageKind(), dirtyTarget() and dirtyPage() bound to it. */
class SyntheticLayout implements SourceLayout {
  readonly ramPages: number;
  private readonly image: GuestImage;
  private readonly layout: GuestLayout;

  constructor(image: GuestImage, layout: GuestLayout) {
    this.ramPages = layout.ramPages;
    this.image = image;
    this.layout = layout;
  }

  kindOf(gfn: number): PageFill {
    return pageKind(this.image, this.layout, gfn);
  }

  bootPage(gfn: number, bootSeed: number, out: Uint32Array): PageFill {
    return guestPage(this.image, this.layout, gfn, bootSeed, out);
  }

  dirtyTarget(r1: number, r2: number): number {
    return dirtyTarget(this.image, this.layout, r1, r2);
  }

  dirtyPage(bootSeed: number, counter: number, out: Uint32Array): void {
    dirtyPage(bootSeed, counter, out);
  }

  bootKey(gfn: number, bootSeed: number, key: Uint32Array): PageFill {
    return guestPageKey(this.image, this.layout, gfn, bootSeed, key);
  }

  dirtyKey(bootSeed: number, counter: number, key: Uint32Array): void {
    dirtyPageKey(bootSeed, counter, key);
  }
}

// ---- the catalog ----------------------------------------------------------------------------------

/**
 * The images a host can boot, by name and version, and the page sources a snapshot's
 * guests name (resolve()).
 */
export class ImageCatalog implements PageSourceCatalog {
  private readonly images: readonly GuestImage[];
  /** The source of each image, made when first asked for (its digest hashes the image once). */
  private readonly sources: Map<GuestImage, SyntheticSource>;

  constructor(images: readonly GuestImage[]) {
    const sorted = [...images].sort((a, b) => (a.name === b.name ? compareVersions(a.version, b.version) : a.name < b.name ? -1 : 1));
    for (let i = 1; i < sorted.length; i++) {
      const a = sorted[i - 1]!;
      const b = sorted[i]!;
      if (a.name === b.name && compareVersions(a.version, b.version) === 0) {
        throw new Error(`image ${a.name} ${b.version} is described twice: in ${a.file} and in ${b.file}`);
      }
    }
    this.images = sorted;
    this.sources = new Map();
  }

  /** The image `name` at `version` (or its newest version) as a page source. */
  source(name: string, version?: string): SyntheticSource {
    return this.sourceOf(this.get(name, version));
  }

  private sourceOf(image: GuestImage): SyntheticSource {
    let s = this.sources.get(image);
    if (s === undefined) {
      s = new SyntheticSource(image);
      this.sources.set(image, s);
    }
    return s;
  }

  resolve(ref: PageSourceRef): PageSource | string {
    const image = this.images.find((im) => im.name === ref.name && im.version === ref.version);
    if (image === undefined) {
      const known = this.images.length === 0 ? 'none' : this.images.map((im) => `${im.name} ${im.version}`).join(', ');
      return `${describeRef(ref)} is not in the image catalog (it has ${known})`;
    }
    const source = this.sourceOf(image);
    if (source.ref.digest !== ref.digest) {
      return `${describeRef(ref)} has changed since the snapshot: ${image.file} now describes other pages (sha256 ${source.ref.digest.slice(0, 12)}…)`;
    }
    return source;
  }

  /** The image `name` at `version`, or its newest version. */
  get(name: string, version?: string): GuestImage {
    let found: GuestImage | null = null;
    for (const im of this.images) {
      if (im.name !== name) continue;
      if (version === undefined || compareVersions(im.version, version) === 0) found = im; // sorted: the last is the newest
    }
    if (found !== null) return found;
    const known = this.images.length === 0 ? 'none' : this.images.map((im) => `${im.name} ${im.version}`).join(', ');
    if (version !== undefined && this.images.some((im) => im.name === name)) {
      throw new Error(`no image ${name} ${version}; known images: ${known}`);
    }
    throw new Error(`no image named ${JSON.stringify(name)}; known images: ${known}`);
  }

  /** Every image, by name, then version (oldest first). */
  list(): readonly GuestImage[] {
    return this.images;
  }
}

// ---- layout and contents ------------------------------------------------------------------------

export interface LayoutRegion {
  readonly name: string;
  /** First gfn. */
  readonly start: number;
  readonly pages: number;
}

/** Where an image's regions lie in one guest's RAM: consecutive, covering [0, ramPages). */
export interface GuestLayout {
  readonly ramPages: number;
  /** In the image's region order (layout.regions[i] is image.regions[i]); a region may have 0 pages. */
  readonly regions: readonly LayoutRegion[];
}

/**
 * Lay out `image` in `ramBytes` of guest RAM: absolute sizes as given, shares of RAM
 * rounded down to whole pages, and the 'rest' region takes what is left.
 */
export function layoutGuest(image: GuestImage, ramBytes: number): GuestLayout {
  if (!Number.isSafeInteger(ramBytes) || ramBytes <= 0 || ramBytes % PAGE_SIZE !== 0) {
    throw new Error(`image ${image.name} ${image.version}: guest RAM must be a positive multiple of 4 KiB, got ${ramBytes} bytes`);
  }
  if (ramBytes < image.minRamBytes) {
    throw new Error(`image ${image.name} ${image.version} needs at least ${formatSize(image.minRamBytes)} of RAM, the guest has ${formatSize(ramBytes)}`);
  }
  const ramPages = ramBytes / PAGE_SIZE;
  const sizes = image.regions.map((r) => {
    const s = r.size;
    return s.unit === 'bytes' ? s.bytes / PAGE_SIZE : s.unit === 'percent' ? Math.floor((ramPages * s.percent) / 100) : 0;
  });
  const fixed = sizes.reduce((a, b) => a + b, 0);
  if (fixed > ramPages) {
    // parseImage checked this at min_ram; an image built by hand may still get here.
    throw new Error(`image ${image.name} ${image.version}: its regions need ${formatSize(fixed * PAGE_SIZE)}, more than the guest's ${formatSize(ramBytes)}`);
  }
  let start = 0;
  const regions = image.regions.map((r, i): LayoutRegion => {
    const pages = r.size.unit === 'rest' ? ramPages - fixed : sizes[i]!;
    const region = { name: r.name, start, pages };
    start += pages;
    return region;
  });
  if (image.workload.dirtyRate > 0 && image.workload.targets.every((t) => regions[t.regionIndex]!.pages === 0)) {
    throw new Error(`image ${image.name} ${image.version}: at ${formatSize(ramBytes)} every region its workload dirties (${image.workload.targets.map((t) => t.region).join(', ')}) is empty`);
  }
  return { ramPages, regions };
}

/** Index in layout.regions of the region holding `gfn` (gfn must be in [0, ramPages)). */
function regionOf(layout: GuestLayout, gfn: number): number {
  const regions = layout.regions;
  let i = regions.length - 1;
  while (i > 0 && gfn < regions[i]!.start) i--;
  return i;
}

function kindAt(region: ImageRegion, index: number): PageFill {
  const h = kindHash(region.kindSeed, index);
  const cuts = region.cuts;
  for (let k = 0; k < 4; k++) if (h < cuts[k]!) return PAGE_FILLS[k]!;
  return 'untouched';
}

function checkGfn(layout: GuestLayout, gfn: number): void {
  if (!(gfn >= 0 && gfn < layout.ramPages && Number.isInteger(gfn))) {
    throw new Error(`gfn ${gfn} is outside the guest's RAM (0..${layout.ramPages - 1})`);
  }
}

/** The kind of page `gfn` after boot, without generating it (cheap: one hash). */
export function pageKind(image: GuestImage, layout: GuestLayout, gfn: number): PageFill {
  checkGfn(layout, gfn);
  const i = regionOf(layout, gfn);
  return kindAt(image.regions[i]!, gfn - layout.regions[i]!.start);
}

/**
 * Fill `out` (one 4 KiB page as 1024 32-bit words) with page `gfn` of a guest booted
 * from `image` with `bootSeed`; return its kind. For 'untouched' `out` is left alone.
 * `layout` must come from layoutGuest(image, ...). Allocates nothing (≈0.7 µs a page).
 */
export function guestPage(image: GuestImage, layout: GuestLayout, gfn: number, bootSeed: number, out: Uint32Array): PageFill {
  const kind = guestPageKey(image, layout, gfn, bootSeed, pageKey);
  if (kind === 'zero') out.fill(0);
  else if (kind !== 'untouched') fillPage(out, pageKey[0]!, pageKey[1]!, pageKey[2]!, pageKey[3]!);
  return kind;
}
/** guestPage()'s key, between guestPageKey() and fillPage(). */
const pageKey = new Uint32Array(4);

/**
 * guestPage() without the bytes: the kind of page `gfn`, and for a generated page its
 * key (SYNTHETIC_GENERATOR makes the same bytes guestPage() would write). 'zero' and
 * 'untouched' leave `key` alone.
 */
export function guestPageKey(image: GuestImage, layout: GuestLayout, gfn: number, bootSeed: number, key: Uint32Array): PageFill {
  checkGfn(layout, gfn);
  const i = regionOf(layout, gfn);
  const region = image.regions[i]!;
  const index = gfn - layout.regions[i]!.start;
  const kind = kindAt(region, index);
  switch (kind) {
    case 'zero':
    case 'untouched':
      break;
    case 'version':
      setKey(key, TAG_VERSION, region.versionSeed, index, 0);
      break;
    case 'image':
      setKey(key, TAG_IMAGE, region.imageSeed, index, 0);
      break;
    case 'unique':
      setKey(key, TAG_UNIQUE, region.uniqueSeed, index, bootSeed >>> 0);
      break;
    default:
      return assertNever(kind, 'page kind');
  }
  return kind;
}

/** dirtyPage() without the bytes: its key for SYNTHETIC_GENERATOR. */
export function dirtyPageKey(seed: number, counter: number, key: Uint32Array): void {
  setKey(key, TAG_DIRTY, seed >>> 0, counter >>> 0, Math.floor(counter / TWO_POW_32) >>> 0);
}

/**
 * What the running workload writes when it dirties a page: unique per (seed, counter)
 * (the tag word makes it never all-zero, and never equal to a boot page).
 */
export function dirtyPage(seed: number, counter: number, out: Uint32Array): void {
  fillPage(out, TAG_DIRTY, seed >>> 0, counter >>> 0, Math.floor(counter / TWO_POW_32) >>> 0);
}

/**
 * The gfn the workload dirties, from two uniform u32 draws: `r1` picks a target
 * region by weight, `r2` a page in it uniformly. A target with no pages in this
 * layout passes its share to the next target that has some (layoutGuest refuses a
 * layout where none has).
 */
export function dirtyTarget(image: GuestImage, layout: GuestLayout, r1: number, r2: number): number {
  const targets = image.workload.targets;
  const draw = r1 >>> 0;
  let t = 0;
  while (t < targets.length - 1 && draw >= targets[t]!.cut) t++;
  for (let tries = 0; tries < targets.length; tries++) {
    const region = layout.regions[targets[t]!.regionIndex]!;
    if (region.pages > 0) return region.start + Math.floor(((r2 >>> 0) * region.pages) / TWO_POW_32);
    t = (t + 1) % targets.length;
  }
  // No targets (a workload that never dirties), or all empty: anywhere in RAM.
  return Math.floor(((r2 >>> 0) * layout.ramPages) / TWO_POW_32);
}

/** Pages of each kind in each region of a layout: what `samepage images` prints. */
export interface RegionKinds {
  readonly name: string;
  readonly pages: number;
  readonly kinds: Readonly<Record<PageFill, number>>;
}

/** Exact counts of each kind, region by region (one hash per page, no contents). */
export function countPageKinds(image: GuestImage, layout: GuestLayout): RegionKinds[] {
  return layout.regions.map((lr, i) => {
    const kinds: Record<PageFill, number> = { image: 0, zero: 0, version: 0, unique: 0, untouched: 0 };
    const region = image.regions[i]!;
    for (let index = 0; index < lr.pages; index++) kinds[kindAt(region, index)]++;
    return { name: lr.name, pages: lr.pages, kinds };
  });
}
