import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { CAPTURE_PAGE_SIZE, CP_ANON, CP_FILE, CP_KSM, CP_PRESENT, CP_SWAPPED, CP_THP, CP_THP_HEAD, CP_ZERO_PAGE, NO_CONTENT, ZERO_CONTENT, type CapturedVma, type PageStore, type RamBlock } from '../vmm/capture-file.js';

/**
 * Reading what KSM would see of a live process, from /proc (Documentation/admin-guide/mm/
 * pagemap.rst and filesystems/proc.rst):
 *
 *  - /proc/PID/smaps: the VMAs, their VmFlags ("mg" = VM_MERGEABLE, "hg" =
 *    VM_HUGEPAGE) and counters. KSM scans only VM_MERGEABLE VMAs, so by default only
 *    those are captured.
 *  - /proc/PID/pagemap: 8 bytes per virtual page. Bit 63 present, 62 swapped, 61 file
 *    page or shared anon, bits 0-54 the PFN (zero unless CAP_SYS_ADMIN).
 *  - /proc/kpageflags: 8 bytes per PFN: ANON (12), COMPOUND_HEAD (15), KSM (21),
 *    THP (22), ZERO_PAGE (24). The huge zero page has THP and ZERO_PAGE both.
 *  - /proc/PID/mem: the bytes, read only where a page is present. Reading a page that
 *    is not present would fault it in (the zero page for a read of anonymous memory),
 *    changing the very page tables we are recording.
 *
 * Everything is read in runs (pagemap 64 Ki entries at a time, kpageflags per run of
 * consecutive PFNs, mem per run of consecutive present pages up to 4 MiB), so a
 * 128 MiB guest is a few hundred reads, not 32 768 per file.
 *
 * The process should be stopped (QMP `stop` for a guest) for a consistent image; a
 * running process can change a page between the pagemap read and the mem read, and
 * the capture then records a mix, which is what any live reading gives.
 */

export class CaptureError extends Error {
  constructor(message: string) {
    super(`samepage: ${message}`);
    this.name = 'CaptureError';
  }
}

// pagemap (high word) and kpageflags bits
const PM_PRESENT_HI = 1 << 31; // bit 63
const PM_SWAP_HI = 1 << 30; // bit 62
const PM_FILE_HI = 1 << 29; // bit 61
const PM_PFN_HI_MASK = 0x7fffff; // bits 32..54
const KPF_ANON = 1 << 12;
const KPF_COMPOUND_HEAD = 1 << 15;
const KPF_KSM = 1 << 21;
const KPF_THP = 1 << 22;
const KPF_ZERO_PAGE = 1 << 24;

const PAGEMAP_CHUNK = 65536;
const MEM_RUN_PAGES = 1024;

export interface SmapsVma {
  start: number;
  end: number;
  perms: string;
  name: string;
  vmFlags: string[];
  /** Counters in kB: Size, Rss, Pss, Anonymous, AnonHugePages, Swap, ... */
  counters: Record<string, number>;
}

/** Parses /proc/PID/smaps text. */
export function parseSmaps(text: string): SmapsVma[] {
  const out: SmapsVma[] = [];
  let cur: SmapsVma | null = null;
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head !== null) {
      cur = { start: parseInt(head[1]!, 16), end: parseInt(head[2]!, 16), perms: head[3]!, name: head[4]!.trim(), vmFlags: [], counters: {} };
      out.push(cur);
      continue;
    }
    if (cur === null) continue;
    const flags = /^VmFlags:\s*(.*)$/.exec(line);
    if (flags !== null) {
      cur.vmFlags = flags[1]!.trim().split(/\s+/).filter((f) => f.length > 0);
      continue;
    }
    const counter = /^(\w+):\s+(\d+) kB$/.exec(line);
    if (counter !== null) cur.counters[counter[1]!] = Number(counter[2]);
  }
  return out;
}

/** The bracketed choice of /sys/kernel/mm/transparent_hugepage/enabled, or 'unknown'. */
export function thpMode(): string {
  try {
    return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Parses HMP `info ramblock`: one line per block, "name  PSize  Offset  Used  Total". */
export function parseRamBlocks(text: string): RamBlock[] {
  const out: RamBlock[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\S+)\s+\d+ [KMG]?i?B\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)/i.exec(line);
    if (m !== null) out.push({ name: m[1]!, usedBytes: parseInt(m[3]!, 16), maxBytes: parseInt(m[4]!, 16) });
  }
  return out;
}

/**
 * The RAM blocks a VMA can hold. QEMU maps each block's whole max_length, rounded to
 * the host page, as one anonymous VMA (util/mmap-alloc.c qemu_ram_mmap(), with a
 * PROT_NONE guard page after it that keeps neighbours from merging into one VMA). So
 * the VMA's size names the block, unless two blocks have the same size (with the
 * default devices, vga.rom and /rom@etc/table-loader are both 64 KiB). QEMU 7.2 has
 * no QMP command giving a block's host address, and the kernel does not name the
 * VMA, so a tie is reported as candidates rather than guessed.
 */
export function blockCandidates(size: number, blocks: readonly RamBlock[]): string[] {
  return blocks.filter((b) => Math.ceil(b.maxBytes / CAPTURE_PAGE_SIZE) * CAPTURE_PAGE_SIZE === size).map((b) => b.name);
}

function preadFully(fd: number, buf: Buffer, length: number, position: number, what: string): number {
  let got = 0;
  while (got < length) {
    let n: number;
    try {
      n = readSync(fd, buf, got, length - got, position + got);
    } catch (e) {
      throw new CaptureError(`reading ${what} at 0x${(position + got).toString(16)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (n === 0) break;
    got += n;
  }
  return got;
}

function open(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const hint = code === 'EACCES' || code === 'EPERM' ? ' (capture reads other processes\' memory and PFNs: run it as root)' : code === 'ENOENT' ? ' (no such process?)' : '';
    throw new CaptureError(`cannot open ${path}: ${code ?? (e as Error).message}${hint}`);
  }
}

export interface ProcCaptureOptions {
  /** Every VMA, not only VM_MERGEABLE ones. */
  allVmas?: boolean;
  /** QEMU's RAM blocks, to name the VMAs that hold them. */
  ramBlocks?: readonly RamBlock[] | null;
}

/** /proc/PID/comm, trimmed. */
export function readComm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch (e) {
    throw new CaptureError(`cannot read /proc/${pid}/comm: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} (no such process?)`);
  }
}

/**
 * Captures the pages of process `pid` into `store`: one CapturedVma per VMA selected
 * (VM_MERGEABLE ones, or all). A VMA that is not mergeable and has no resident or
 * swapped memory (Rss and Swap 0 in smaps) is listed without a page walk: it may map
 * the shared zero page, which KSM never looks at, and walking the pagemap of the
 * terabytes of PROT_NONE reservations some runtimes make would take minutes.
 */
export function captureProcPages(pid: number, store: PageStore, opts: ProcCaptureOptions = {}): CapturedVma[] {
  let smapsText: string;
  try {
    smapsText = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CaptureError(`cannot read /proc/${pid}/smaps: ${code ?? (e as Error).message}${code === 'ENOENT' ? ' (no such process)' : ''}`);
  }
  // [vsyscall] sits at 0xffffffffff600000, past what a JavaScript number holds exactly;
  // it is a fixed kernel page that no process can madvise, so it is left out.
  const vmas = parseSmaps(smapsText).filter((v) => v.end <= Number.MAX_SAFE_INTEGER && (opts.allVmas === true || v.vmFlags.includes('mg')));
  const pagemap = open(`/proc/${pid}/pagemap`);
  const kpageflags = open('/proc/kpageflags');
  const mem = open(`/proc/${pid}/mem`);
  const pm = Buffer.allocUnsafe(PAGEMAP_CHUNK * 8);
  const kf = Buffer.allocUnsafe(512 * 8);
  const data = Buffer.allocUnsafe(MEM_RUN_PAGES * CAPTURE_PAGE_SIZE);
  try {
    return vmas.map((v): CapturedVma => {
      const span = (v.end - v.start) / CAPTURE_PAGE_SIZE;
      const walk = v.vmFlags.includes('mg') || (v.counters.Rss ?? 0) > 0 || (v.counters.Swap ?? 0) > 0;
      const offsets: number[] = [];
      const contents: number[] = [];
      const flags: number[] = [];
      const pfns: number[] = [];
      for (let first = 0; walk && first < span; first += PAGEMAP_CHUNK) {
        const n = Math.min(PAGEMAP_CHUNK, span - first);
        const got = preadFully(pagemap, pm, n * 8, (v.start / CAPTURE_PAGE_SIZE + first) * 8, `/proc/${pid}/pagemap`);
        if (got !== n * 8) throw new CaptureError(`/proc/${pid}/pagemap ended early at page 0x${(v.start / CAPTURE_PAGE_SIZE + first).toString(16)} (the process exited?)`);
        for (let i = 0; i < n; i++) {
          const lo = pm.readUInt32LE(8 * i);
          const hi = pm.readUInt32LE(8 * i + 4);
          if ((hi & PM_PRESENT_HI) !== 0) {
            const pfn = (hi & PM_PFN_HI_MASK) * 0x100000000 + lo;
            if (pfn === 0) throw new CaptureError(`/proc/${pid}/pagemap gives no PFNs (they read as 0 without CAP_SYS_ADMIN): run capture as root`);
            offsets.push(first + i);
            flags.push(CP_PRESENT | ((hi & PM_FILE_HI) !== 0 ? CP_FILE : 0));
            pfns.push(pfn);
            contents.push(ZERO_CONTENT);
          } else if ((hi & PM_SWAP_HI) !== 0) {
            offsets.push(first + i);
            flags.push(CP_SWAPPED);
            pfns.push(0);
            contents.push(NO_CONTENT);
          }
        }
      }
      // kpageflags, per run of consecutive PFNs (a THP is 512 of them).
      for (let i = 0; i < pfns.length; ) {
        if ((flags[i]! & CP_PRESENT) === 0) {
          i++;
          continue;
        }
        let j = i + 1;
        while (j < pfns.length && j - i < 512 && (flags[j]! & CP_PRESENT) !== 0 && pfns[j] === pfns[j - 1]! + 1) j++;
        const got = preadFully(kpageflags, kf, (j - i) * 8, pfns[i]! * 8, '/proc/kpageflags');
        if (got !== (j - i) * 8) throw new CaptureError(`/proc/kpageflags ended early at PFN 0x${pfns[i]!.toString(16)}`);
        for (let k = i; k < j; k++) {
          const f = kf.readUInt32LE(8 * (k - i));
          let cf = flags[k]!;
          if ((f & KPF_ZERO_PAGE) !== 0) cf |= CP_ZERO_PAGE; // the huge zero page is THP too, but maps no anon memory
          else {
            if ((f & KPF_ANON) !== 0) cf |= CP_ANON;
            if ((f & KPF_THP) !== 0) cf |= CP_THP | ((f & KPF_COMPOUND_HEAD) !== 0 ? CP_THP_HEAD : 0);
            if ((f & KPF_KSM) !== 0) cf |= CP_KSM;
          }
          if ((cf & CP_ZERO_PAGE) !== 0) cf &= ~CP_FILE; // pagemap marks zero-page ptes as not anon
          flags[k] = cf;
        }
        i = j;
      }
      // Contents, per run of consecutive present pages that are not the zero page.
      for (let i = 0; i < offsets.length; ) {
        const readable = (k: number): boolean => (flags[k]! & CP_PRESENT) !== 0 && (flags[k]! & CP_ZERO_PAGE) === 0;
        if (!readable(i)) {
          i++;
          continue;
        }
        let j = i + 1;
        while (j < offsets.length && j - i < MEM_RUN_PAGES && readable(j) && offsets[j] === offsets[j - 1]! + 1) j++;
        const bytes = (j - i) * CAPTURE_PAGE_SIZE;
        const got = preadFully(mem, data, bytes, v.start + offsets[i]! * CAPTURE_PAGE_SIZE, `/proc/${pid}/mem`);
        if (got !== bytes) throw new CaptureError(`/proc/${pid}/mem ended early at 0x${(v.start + offsets[i]! * CAPTURE_PAGE_SIZE + got).toString(16)}`);
        for (let k = i; k < j; k++) contents[k] = store.add(data.subarray((k - i) * CAPTURE_PAGE_SIZE, (k - i + 1) * CAPTURE_PAGE_SIZE));
        i = j;
      }
      const candidates = opts.ramBlocks ? blockCandidates(v.end - v.start, opts.ramBlocks) : [];
      return {
        start: v.start,
        end: v.end,
        perms: v.perms,
        name: v.name,
        vmFlags: v.vmFlags,
        block: candidates.length === 1 && v.vmFlags.includes('mg') ? candidates[0]! : null,
        blockCandidates: v.vmFlags.includes('mg') ? candidates : [],
        smaps: v.counters,
        offsets: Uint32Array.from(offsets),
        contents: Uint32Array.from(contents),
        flags: Uint8Array.from(flags),
      };
    });
  } finally {
    closeSync(pagemap);
    closeSync(kpageflags);
    closeSync(mem);
  }
}
