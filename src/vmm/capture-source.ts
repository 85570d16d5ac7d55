import { createHash } from 'node:crypto';
import { PAGE_SIZE } from '../mm/constants.js';
import { assertNever, bug } from '../lib/errors.js';
import { CP_PRESENT, CP_SWAPPED, CP_THP, CP_ZERO_PAGE, NO_CONTENT, ZERO_CONTENT, capturePage, type Capture, type CapturedProcess, type CapturedVma } from './capture-file.js';
import { SYNTHETIC_GENERATOR, dirtyPage, dirtyPageKey } from './image.js';
import type { PageGenerator } from '../mm/contents.js';
import type { HostMapping, PageFill, PageSource, PageSourceRef, SourceLayout } from './page-source.js';
import { ZERO_PAGE_MAPPED, type FirmwareBlock, type FirmwarePage, type QemuNic } from './qemu-blocks.js';

/*
 * Replay: a guest captured on a real host (src/vmm/capture-file.ts, `samepage
 * capture`) as a page source, so that `samepage run` can place it on a modelled host,
 * start copies of it, mix it with synthetic guests, and change the kernel or its knobs.
 *
 * Guest RAM is the captured process's `pc.ram` VMA (the one QEMU RAM block of that
 * name, or else the largest mergeable VMA), page for page:
 * - a page the capture did not list was never touched on the real host: 'untouched';
 * - a page that mapped the shared zero page is read, not written ('untouched' kind,
 *   hostMapping 'zero-page'): present, and in no KSM statistic;
 * - a zero-filled page is written with zeros ('zero'), any other with its captured
 *   bytes ('version': the same in every copy of the guest);
 * - a swapped-out page (its bytes unread) gets contents of its own ('unique').
 * Where the capture says a 2 MiB range of guest RAM held no THP though pages were
 * present (hostMapping 'small'), the guest maps it with small pages; elsewhere THPs
 * form as on the real host, at the first write of each range of a MADV_HUGEPAGE
 * block (a kernel with THP). QEMU's other blocks come from the capture too
 * (firmware()), by name, with the same rules.
 *
 * A copy of a captured guest is that guest again, byte for byte: the per-boot
 * differences a real second boot would bring (timestamps, random seeds) are not in
 * the capture, so copies merge more than real second guests would. README says so.
 * The workload dirties pages of RAM uniformly, with contents of its own.
 */

/** The pc.ram VMA of a captured QEMU process, or its largest mergeable VMA. */
export function guestRamVma(p: CapturedProcess): CapturedVma | null {
  const named = p.vmas.find((v) => v.block === 'pc.ram');
  if (named !== undefined) return named;
  let best: CapturedVma | null = null;
  for (const v of p.vmas) if (v.vmFlags.includes('mg') && (best === null || v.end - v.start > best.end - best.start)) best = v;
  return best;
}

/**
 * The first key word of a captured page (a key no synthetic page has: their tags are
 * 0x5350000x). Its key is (KEY_CAPTURED, content index, 0, 0). Every other key the
 * capture's generator meets is a synthetic page's (the workload's dirty pages, and the
 * pages of their own given to swapped-out pages), made by SYNTHETIC_GENERATOR.
 */
const KEY_CAPTURED = 0x43415054; // 'CAPT'

/**
 * The content store's generator for one capture's pages: the captured bytes are made
 * again from the capture whenever read, so a host of many copies of a captured guest
 * holds each captured page once, in the capture, until a guest writes it. Its pages do
 * not begin with their key (keyIsHead false): comparisons read the bytes.
 */
function captureGenerator(capture: Capture): PageGenerator {
  // The captured pages as words, made once (a view when the file's buffer is aligned):
  // a page is made whenever it is read out of the store's cache, tree comparisons
  // included, so making one copies words and allocates nothing.
  const bytes = capture.pages;
  const words =
    bytes.byteOffset % 4 === 0 ? new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2) : new Uint32Array(Uint8Array.from(bytes).buffer);
  const pageWords = PAGE_SIZE / 4;
  return {
    name: 'capture',
    keyIsHead: false,
    generate(k0: number, k1: number, k2: number, k3: number, out: Uint32Array, wordOffset: number): void {
      if (k0 !== KEY_CAPTURED) {
        SYNTHETIC_GENERATOR.generate(k0, k1, k2, k3, out, wordOffset);
        return;
      }
      if (k1 === ZERO_CONTENT) {
        out.fill(0, wordOffset, wordOffset + pageWords);
        return;
      }
      if (k1 < 1 || k1 > capture.pageCount) bug(`captured page key names content ${k1}, not 1..${capture.pageCount}`);
      const from = (k1 - 1) * pageWords;
      for (let i = 0; i < pageWords; i++) out[wordOffset + i] = words[from + i]!;
    },
  };
}

/** A captured guest: one process of a capture file, as a page source. */
export class CaptureSource implements PageSource {
  readonly ref: PageSourceRef;
  readonly label: string;
  /** A paused capture boots in no time: every page is written in the first tick. */
  readonly bootMs = 0;
  readonly minRamBytes: number;
  readonly dirtyRate: number;
  readonly capture: Capture;
  readonly process: CapturedProcess;
  readonly generator: PageGenerator;
  private readonly ram: CapturedVma;

  /**
   * `file` names the capture in messages and refs; `digest` is the sha-256 of the
   * file's bytes (computed by whoever read it), so a snapshot knows a changed file.
   */
  constructor(capture: Capture, guest: string, file: string, digest: string, dirtyRate = 0) {
    const p = capture.processes.find((x) => x.name === guest);
    if (p === undefined) throw new Error(`${file} has no guest ${guest} (it has ${capture.processes.map((x) => x.name).join(', ')})`);
    const ram = guestRamVma(p);
    if (ram === null) throw new Error(`${file}: guest ${guest} has no mergeable VMA to take as its RAM`);
    this.capture = capture;
    this.generator = captureGenerator(capture);
    this.process = p;
    this.ram = ram;
    this.ref = { type: 'capture', name: file, version: guest, digest };
    this.label = `${guest} (${file})`;
    this.minRamBytes = ram.end - ram.start;
    this.dirtyRate = dirtyRate;
  }

  layout(ramBytes: number): SourceLayout {
    if (ramBytes < this.minRamBytes) throw new Error(`${this.label} has ${this.minRamBytes / 1048576} MiB of RAM; a guest of ${ramBytes / 1048576} MiB cannot hold it`);
    return new CaptureLayout(this.capture, this.ram, ramBytes / PAGE_SIZE);
  }

  /** QEMU's other RAM blocks as captured: every mergeable VMA but RAM, named by its block. */
  firmware(_nic: QemuNic): FirmwareBlock[] | null {
    const out: FirmwareBlock[] = [];
    const c = this.capture;
    for (const v of this.process.vmas) {
      if (v === this.ram || !v.vmFlags.includes('mg')) continue;
      const pages: FirmwarePage[] = [];
      for (let i = 0; i < v.offsets.length; i++) {
        const f = v.flags[i]!;
        const ct = v.contents[i]!;
        if ((f & CP_ZERO_PAGE) !== 0) pages.push({ offset: v.offsets[i]!, content: ZERO_PAGE_MAPPED });
        else if ((f & (CP_PRESENT | CP_SWAPPED)) !== 0) pages.push({ offset: v.offsets[i]!, content: ct === NO_CONTENT ? 0 : ct });
      }
      out.push({
        name: v.block ?? (v.blockCandidates.length > 0 ? v.blockCandidates.join('|') : v.name),
        bytes: v.end - v.start,
        pages,
        fill: (n, words) => {
          const page = capturePage(c, n);
          Buffer.from(words.buffer, words.byteOffset, PAGE_SIZE).set(page);
        },
      });
    }
    // The model maps them in this order, lowest first (Guest.mapQemuBlocks); the capture lists VMAs by address.
    return out;
  }
}

/** Per-page facts of the RAM VMA, by gfn, built once per layout: kind codes (0: untouched) and content indexes. */
const K_ZERO = 1;
const K_CONTENT = 2;
const K_ZERO_PAGE = 3;
const K_SWAPPED = 4;

class CaptureLayout implements SourceLayout {
  readonly ramPages: number;
  private readonly capture: Capture;
  private readonly kind: Uint8Array;
  private readonly content: Uint32Array;
  /** Per 2 MiB range of RAM: 1 when pages were present there but none in a THP. */
  private readonly smallRange: Uint8Array;
  private readonly present: Uint32Array;

  constructor(capture: Capture, ram: CapturedVma, ramPages: number) {
    this.ramPages = ramPages;
    this.capture = capture;
    this.kind = new Uint8Array(ramPages);
    this.content = new Uint32Array(ramPages);
    const ranges = Math.ceil(ramPages / 512);
    const thp = new Uint8Array(ranges);
    const any = new Uint8Array(ranges);
    const present: number[] = [];
    for (let i = 0; i < ram.offsets.length; i++) {
      const gfn = ram.offsets[i]!;
      const f = ram.flags[i]!;
      const ct = ram.contents[i]!;
      if ((f & CP_ZERO_PAGE) !== 0) this.kind[gfn] = K_ZERO_PAGE;
      else if ((f & CP_SWAPPED) !== 0 || ct === NO_CONTENT) this.kind[gfn] = K_SWAPPED;
      else this.kind[gfn] = ct === ZERO_CONTENT ? K_ZERO : K_CONTENT;
      this.content[gfn] = ct === NO_CONTENT ? 0 : ct;
      if (this.kind[gfn] !== K_ZERO_PAGE) {
        any[gfn >>> 9] = 1;
        present.push(gfn);
      }
      if ((f & CP_THP) !== 0) thp[gfn >>> 9] = 1;
    }
    this.smallRange = new Uint8Array(ranges);
    // A guest view (no host flags) says nothing of THPs: leave them to the model.
    const hostView = ram.flags.some((f) => f !== 0);
    for (let r = 0; r < ranges; r++) this.smallRange[r] = hostView && any[r] === 1 && thp[r] === 0 ? 1 : 0;
    this.present = Uint32Array.from(present);
  }

  kindOf(gfn: number): PageFill {
    switch (this.kind[gfn]) {
      case K_ZERO:
        return 'zero';
      case K_CONTENT:
        return 'version';
      case K_SWAPPED:
        return 'unique';
      default:
        return 'untouched';
    }
  }

  bootPage(gfn: number, bootSeed: number, out: Uint32Array): PageFill {
    const kind = this.kindOf(gfn);
    switch (kind) {
      case 'zero':
        out.fill(0);
        break;
      case 'version':
        Buffer.from(out.buffer, out.byteOffset, PAGE_SIZE).set(capturePage(this.capture, this.content[gfn]!));
        break;
      case 'unique':
        // Bytes the capture could not read (swapped out): a page of its own, per boot.
        dirtyPage(bootSeed ^ 0x5a5a5a5a, gfn, out);
        break;
      default:
        break;
    }
    return kind;
  }

  bootKey(gfn: number, bootSeed: number, key: Uint32Array): PageFill {
    const kind = this.kindOf(gfn);
    switch (kind) {
      case 'version':
        key[0] = KEY_CAPTURED;
        key[1] = this.content[gfn]!;
        key[2] = 0;
        key[3] = 0;
        break;
      case 'unique':
        dirtyPageKey(bootSeed ^ 0x5a5a5a5a, gfn, key); // bootPage()'s page of its own
        break;
      case 'zero':
      case 'untouched':
      case 'image':
        break;
      default:
        assertNever(kind, 'page fill');
    }
    return kind;
  }

  dirtyKey(bootSeed: number, counter: number, key: Uint32Array): void {
    dirtyPageKey(bootSeed, counter, key);
  }

  hostMapping(gfn: number): HostMapping {
    if (this.kind[gfn] === K_ZERO_PAGE) return 'zero-page';
    return this.smallRange[gfn >>> 9] === 1 ? 'small' : 'any';
  }

  dirtyTarget(_r1: number, r2: number): number {
    // A page the real guest had touched, uniformly (all of RAM when it had none).
    const n = this.present.length;
    if (n === 0) return Math.floor(((r2 >>> 0) * this.ramPages) / 0x100000000);
    return this.present[Math.floor(((r2 >>> 0) * n) / 0x100000000)]!;
  }

  dirtyPage(bootSeed: number, counter: number, out: Uint32Array): void {
    dirtyPage(bootSeed, counter, out);
  }
}

/** The sha-256 of a capture file's bytes, for CaptureSource's ref. */
export function captureDigest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
