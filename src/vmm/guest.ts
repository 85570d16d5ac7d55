import { KernelError } from '../lib/errors.js';
import { Prng } from '../lib/prng.js';
import { PAGE_SIZE, VM_WRITE } from '../mm/constants.js';
import { mergeDomainProblem, type HostKernel } from '../mm/kernel.js';
import type { Process } from '../mm/process.js';
import { newMemSizeStats } from '../mm/task-mmu.js';
import { sourceLayoutProblem, type PageSource, type PageSourceRef, type SourceLayout } from './page-source.js';
import type { GuestSample, GuestState } from './types.js';
import { IDLE_WORKLOAD, checkBurstPages, checkWorkload, startBurst, type ActiveBurst, type WorkloadSpec } from './workload.js';
import { MAX_RW_COUNT, checkAddr, checkBytes, checkCount, checkFinite, describe } from '../lib/validate.js';
import { ZERO_PAGE_MAPPED, qemuFirmwareBlocks, type FirmwareBlock, type QemuNic } from './qemu-blocks.js';

/** QEMU_VMALLOC_ALIGN on x86-64 Linux: every RAM block starts on a 2 MiB boundary. */
const RAM_BLOCK_ALIGN = 2 * 1024 * 1024;

/**
 * The key of the page being written (SourceLayout.bootKey/dirtyKey): the guest hands
 * it to the kernel's content store rather than generating 4 KiB and copying it in.
 */
const scratchKey = new Uint32Array(4);
/** One page of a QEMU firmware block being written. */
const firmwarePage = new Uint32Array(PAGE_SIZE / 4);
const firmwareBytes = Buffer.from(firmwarePage.buffer);

/** RAM below the PCI hole, as QEMU's pc machine lays it out: the rest goes above 4 GiB. */
const BELOW_4G_MAX = 3 * 1024 * 1024 * 1024;
const ABOVE_4G_BASE = 4 * 1024 * 1024 * 1024;

/**
 * A guest's whole state as plain data, for snapshots (src/vmm/snapshot.ts): what
 * cannot be derived from its page source, which it names (the layout and every page
 * it writes come from the source again on restore).
 */
export interface GuestSnapshot {
  id: string;
  name: string;
  /** Where its memory comes from (page-source.ts): resolved through a catalog on restore. */
  source: PageSourceRef;
  ramBytes: number;
  memMerge: boolean;
  /** Its KSM merge domain ('' the common one). */
  mergeDomain: string;
  workload: WorkloadSpec;
  state: GuestState;
  /** The QEMU process's pid, or null. */
  pid: number | null;
  slotHvas: number[];
  bootSeed: number;
  boots: number;
  pagesWritten: number;
  prng: number[];
  bootElapsed: number;
  bootCursor: number;
  pausedFrom: GuestState;
  runningMs: number;
  dirtyDebt: number;
  dirtyCounter: number;
  pendingDirty: number;
  /** null for "never" (Infinity). */
  nextBurstAt: number | null;
  bursts: ActiveBurst[];
  /** Guests that map QEMU's RAM blocks only: the NIC and where guest RAM and each other block are mapped (0 without a process). */
  qemu?: { nic: QemuNic; ramHva: number; blockHvas: number[] };
}

export interface GuestOptions {
  name: string;
  /** Where its memory comes from: a synthetic image (ImageCatalog.source()), or later a capture. */
  source: PageSource;
  /** Guest RAM (`-m`), a multiple of 4 KiB. */
  ramBytes: number;
  /** QEMU `-machine mem-merge=on` (the default); false is libvirt's `<nosharepages/>`. */
  memMerge?: boolean;
  /**
   * Its KSM merge domain (default '', the common one): its QEMU process's pages merge
   * only with those of guests in the same domain (model-only: src/ksm/pages.ts
   * comparePagesInDomains), as with VMware's page-sharing salt.
   */
  mergeDomain?: string;
  workload?: WorkloadSpec;
  /**
   * Map QEMU's RAM blocks as QEMU does (src/vmm/qemu-blocks.ts): guest RAM as one
   * block `pc.ram` plus the firmware and device blocks, each 2 MiB-aligned,
   * MADV_MERGEABLE with mem-merge on and MADV_HUGEPAGE where the kernel has THP.
   * Default: on for a kernel with transparent huge pages (6.18), off for 2.6.33,
   * whose guests keep mapping their RAM slots alone (so its results stay as they were).
   */
  qemuBlocks?: boolean;
  /** With qemuBlocks: the NIC (`-nic none`, the default, or e1000, which adds its option ROM). */
  nic?: QemuNic;
}

/**
 * A KVM memory slot: guest-physical [gpa, gpa+size) backed by the QEMU process's
 * anonymous private mapping at `hva` (0 while the guest has no process). `firstPage`
 * is the slot's first page in the guest's RAM order, which the image layout uses.
 */
export interface MemSlot {
  readonly slot: number;
  readonly gpa: number;
  readonly size: number;
  readonly firstPage: number;
  hva: number;
}

/**
 * A KVM-like guest: a QEMU process whose guest RAM is one or two memory slots (below
 * and above the 4 GiB PCI hole), mapped anonymous private and, with mem-merge on,
 * registered MADV_MERGEABLE as QEMU's memory_try_enable_merging() does.
 *
 * Life: created (defined, no process) → boot() → booting (the image's pages are
 * written over its boot time) → running (the workload dirties pages) ⇄ paused →
 * stop() (the process exits, its RAM is freed) → boot() again, with a new boot seed
 * and so new unique pages → destroy().
 *
 * The host drives it: `tick(dt)` does the guest's writes for the next dt ms of
 * simulated time. Writes may fail with ENOMEM when the host is out of memory and
 * swap; the guest's own state is updated page by page, so nothing half-done remains.
 */
export class Guest {
  readonly id: string;
  readonly name: string;
  readonly source: PageSource;
  readonly ramBytes: number;
  readonly memMerge: boolean;
  readonly mergeDomain: string;
  /** The source laid out in this guest's RAM: what each page is, what boot writes there. */
  readonly layout: SourceLayout;
  readonly slots: readonly MemSlot[];
  state: GuestState;
  /** The QEMU process while the guest has one (booting, running, paused). */
  process: Process | null;
  /** Seed of the current boot: the unique pages depend on it. */
  bootSeed: number;
  /** Boots so far. */
  boots: number;
  /** Pages the guest has written (boot and workload). */
  pagesWritten: number;
  private readonly kernel: HostKernel;
  /** The source's generator, as the kernel's content store numbers it. */
  private readonly generatorId: number;
  private readonly prng: Prng;
  /** While booting: ms of boot done, and the next RAM page to write. */
  private bootElapsed: number;
  private bootCursor: number;
  /** The state pause() left, to resume to. */
  private pausedFrom: GuestState;
  /** ms spent running since boot (periodic bursts count from it). */
  private runningMs: number;
  private dirtyDebt: number;
  private dirtyCounter: number;
  /** Pages the workload has yet to dirty (due, not yet written). */
  private pendingDirty: number;
  private nextBurstAt: number;
  private readonly bursts: ActiveBurst[];
  /** What the guest runs; change it with setWorkload(). */
  private spec: WorkloadSpec;
  /** Whether it maps QEMU's RAM blocks (GuestOptions.qemuBlocks), its NIC, and the blocks besides guest RAM (empty without). */
  readonly qemuBlocks: boolean;
  readonly nic: QemuNic;
  readonly firmware: readonly FirmwareBlock[];
  /** With qemuBlocks, while it has a process: where pc.ram and each firmware block are mapped. */
  private ramHva: number;
  private readonly blockHvas: number[];

  constructor(kernel: HostKernel, prng: Prng, id: string, opts: GuestOptions) {
    if (!Number.isSafeInteger(opts.ramBytes) || opts.ramBytes <= 0 || opts.ramBytes % PAGE_SIZE !== 0) {
      throw new KernelError('EINVAL', `guest ${opts.name}: RAM must be a positive multiple of 4 KiB, got ${opts.ramBytes} bytes`);
    }
    let layout: SourceLayout;
    try {
      layout = opts.source.layout(opts.ramBytes);
    } catch (e) {
      throw new KernelError('EINVAL', `guest ${opts.name}: ${(e as Error).message}`);
    }
    const layoutProblem = sourceLayoutProblem(layout, opts.ramBytes / PAGE_SIZE);
    if (layoutProblem !== null) throw new KernelError('EINVAL', `guest ${opts.name}: ${opts.source.label}: ${layoutProblem}`);
    this.id = id;
    this.name = opts.name;
    this.source = opts.source;
    this.ramBytes = opts.ramBytes;
    this.memMerge = opts.memMerge ?? true;
    this.mergeDomain = opts.mergeDomain ?? '';
    const domainProblem = mergeDomainProblem(this.mergeDomain);
    if (domainProblem !== null) throw new KernelError('EINVAL', `guest ${opts.name}: merge domain ${domainProblem}`);
    this.layout = layout;
    const below = Math.min(opts.ramBytes, BELOW_4G_MAX);
    const slots: MemSlot[] = [{ slot: 0, gpa: 0, size: below, firstPage: 0, hva: 0 }];
    if (opts.ramBytes > below) {
      slots.push({ slot: 1, gpa: ABOVE_4G_BASE, size: opts.ramBytes - below, firstPage: below / PAGE_SIZE, hva: 0 });
    }
    this.slots = slots;
    this.spec = opts.workload === undefined ? IDLE_WORKLOAD : checkWorkload(opts.workload, `guest ${opts.name}`, opts.ramBytes / PAGE_SIZE);
    this.state = 'created';
    this.process = null;
    this.bootSeed = 0;
    this.boots = 0;
    this.pagesWritten = 0;
    this.kernel = kernel;
    this.generatorId = kernel.mem.store.registerGenerator(opts.source.generator);
    this.prng = prng;
    this.bootElapsed = 0;
    this.bootCursor = 0;
    this.pausedFrom = 'running';
    this.runningMs = 0;
    this.dirtyDebt = 0;
    this.dirtyCounter = 0;
    this.pendingDirty = 0;
    this.nextBurstAt = 0;
    this.bursts = [];
    this.qemuBlocks = opts.qemuBlocks ?? kernel.thp !== null;
    this.nic = opts.nic ?? 'none';
    if (this.nic !== 'none' && this.nic !== 'e1000') throw new KernelError('EINVAL', `guest ${opts.name}: nic must be none or e1000, got ${JSON.stringify(this.nic)}`);
    this.firmware = !this.qemuBlocks ? [] : (opts.source.firmware?.(this.nic) ?? qemuFirmwareBlocks(this.nic));
    this.ramHva = 0;
    this.blockHvas = this.firmware.map(() => 0);
  }

  get workload(): WorkloadSpec {
    return this.spec;
  }

  /**
   * Change what the guest runs from now on. A new periodic burst starts one period
   * from now, as it would one period after boot; bursts already under way go on.
   */
  setWorkload(wIn: WorkloadSpec): void {
    const w = checkWorkload(wIn, `guest ${this.name}`, this.ramPages);
    const old = this.spec.burst;
    this.spec = w;
    const b = w.burst;
    if (b === null) this.nextBurstAt = Infinity;
    else if (old === null || old.everyMs !== b.everyMs || old.pages !== b.pages || old.overMs !== b.overMs) this.nextBurstAt = this.runningMs + b.everyMs;
  }

  /** "fedora 13": its source's label. */
  get imageName(): string {
    return this.source.label;
  }

  get ramPages(): number {
    return this.ramBytes / PAGE_SIZE;
  }

  /** Dirty rate in pages per simulated second. */
  get dirtyRate(): number {
    return this.workload.dirtyRate ?? this.source.dirtyRate;
  }

  private expect(what: string, ...states: GuestState[]): void {
    if (!states.includes(this.state)) {
      throw new KernelError('EINVAL', `guest ${this.name}: cannot ${what} a guest that is ${this.state} (needs ${states.join(' or ')})`);
    }
  }

  // ---- life --------------------------------------------------------------------------------

  /**
   * Start the QEMU process: map the RAM slots, register them MADV_MERGEABLE with
   * mem-merge on, and begin booting. Nothing is written yet; tick() writes the
   * image's pages over its boot time.
   */
  boot(): void {
    this.expect('boot', 'created', 'stopped', 'oom-killed', 'refused');
    const proc = this.kernel.spawn(`qemu:${this.name}`, { mergeDomain: this.mergeDomain });
    try {
      if (this.qemuBlocks) {
        this.mapQemuBlocks(proc);
      } else {
        for (const s of this.slots) {
          s.hva = proc.mmap(s.size, { prot: 'rw' });
          if (this.memMerge) proc.madvise(s.hva, s.size, 'MADV_MERGEABLE');
        }
      }
    } catch (e) {
      proc.exit();
      for (const s of this.slots) s.hva = 0;
      this.ramHva = 0;
      this.blockHvas.fill(0);
      throw e;
    }
    this.process = proc;
    this.state = 'booting';
    this.bootSeed = this.prng.nextU32();
    this.boots++;
    this.bootElapsed = 0;
    this.bootCursor = 0;
    this.runningMs = 0;
    this.dirtyDebt = 0;
    this.pendingDirty = 0;
    this.nextBurstAt = this.workload.burst === null ? Infinity : this.workload.burst.everyMs;
    this.bursts.length = 0;
  }

  /**
   * QEMU's start: every RAM block mapped as ram_block_add() maps it, then the
   * firmware's contents, which QEMU and the firmware write before the guest kernel
   * runs (a page only read maps the zero page).
   *
   * util/mmap-alloc.c qemu_ram_mmap() maps each block 2 MiB-aligned with a PROT_NONE
   * guard page after it, then ram_block_add() madvises it MERGEABLE (with mem-merge
   * on: memory_try_enable_merging()) and HUGEPAGE (qemu_madvise(), which ignores a
   * kernel without THP's EINVAL: the model does not ask one). The blocks lie in the
   * order a real QEMU 7.2 process has them (docs/real-guests.md): pc.ram lowest, then
   * the others as qemuFirmwareBlocks() lists them, each on the next 2 MiB boundary
   * after the previous one's guard page. The model reserves that whole stretch
   * PROT_NONE at once and carves it, rather than replaying QEMU's separate mmaps,
   * whose addresses depend on everything else QEMU maps.
   */
  private mapQemuBlocks(proc: Process): void {
    const sizes = [this.ramBytes, ...this.firmware.map((b) => b.bytes)];
    const span = (bytes: number): number => Math.ceil((bytes + PAGE_SIZE) / RAM_BLOCK_ALIGN) * RAM_BLOCK_ALIGN;
    const total = sizes.reduce((n, s) => n + span(s), 0) + RAM_BLOCK_ALIGN;
    const base = proc.mmap(total, { prot: 'none' });
    const start = base + ((RAM_BLOCK_ALIGN - (base % RAM_BLOCK_ALIGN)) % RAM_BLOCK_ALIGN);
    if (start > base) proc.munmap(base, start - base);
    let at = start;
    const hvas: number[] = [];
    for (const bytes of sizes) {
      // [at, at+bytes) the block, one guard page, then nothing up to the next boundary.
      const guardEnd = at + bytes + PAGE_SIZE;
      if (at + span(bytes) > guardEnd) proc.munmap(guardEnd, at + span(bytes) - guardEnd);
      proc.mprotect(at, bytes, 'rw');
      if (this.memMerge) proc.madvise(at, bytes, 'MADV_MERGEABLE');
      if (this.kernel.thp !== null) proc.madvise(at, bytes, 'MADV_HUGEPAGE');
      hvas.push(at);
      at += span(bytes);
    }
    if (base + total > at) proc.munmap(at, base + total - at);
    this.ramHva = hvas[0]!;
    for (let i = 0; i < this.firmware.length; i++) this.blockHvas[i] = hvas[i + 1]!;
    for (const s of this.slots) s.hva = this.ramHva + s.firstPage * PAGE_SIZE;
    this.firmware.forEach((b, i) => {
      const base = this.blockHvas[i]!;
      for (const pg of b.pages) {
        const hva = base + pg.offset * PAGE_SIZE;
        if (pg.content === ZERO_PAGE_MAPPED) {
          proc.read(hva, 1);
          continue;
        }
        if (pg.content === 0) {
          proc.writeFilledPage(hva, 0);
          continue;
        }
        // Firmware pages are few (a few MiB a guest): their bytes go to the store as written.
        b.fill(pg.content, firmwarePage);
        proc.write(hva, firmwareBytes);
      }
    });
  }

  pause(): void {
    this.expect('pause', 'booting', 'running');
    this.pausedFrom = this.state;
    this.state = 'paused';
  }

  resume(): void {
    this.expect('resume', 'paused');
    this.state = this.pausedFrom;
  }

  /** Power off: the QEMU process exits and its RAM goes back to the host. */
  stop(): void {
    this.expect('stop', 'booting', 'running', 'paused');
    this.end('stopped');
  }

  /** The OOM killer chose the QEMU process: it dies as on stop(), in its own state. */
  oomKill(): void {
    this.expect('kill', 'booting', 'running', 'paused');
    this.end('oom-killed');
  }

  /** A start that failed (boot() threw): the guest, which has no process, is refused. */
  refuse(): void {
    this.expect('refuse', 'created', 'stopped', 'oom-killed', 'refused');
    this.state = 'refused';
  }

  private end(state: 'stopped' | 'oom-killed'): void {
    this.process!.exit();
    this.process = null;
    for (const s of this.slots) s.hva = 0;
    this.ramHva = 0;
    this.blockHvas.fill(0);
    this.state = state;
    this.bursts.length = 0;
    this.pendingDirty = 0;
  }

  /** Remove the guest for good (stopping it first if it has a process). */
  destroy(): void {
    if (this.state === 'destroyed') throw new KernelError('EINVAL', `guest ${this.name} is already destroyed`);
    if (this.process !== null) this.stop();
    this.state = 'destroyed';
  }

  /** A one-off burst: dirty `pages` pages over the next `overMs` ms of running. */
  burst(pages: number, overMs: number): void {
    checkBurstPages(`guest ${this.name}`, pages, this.ramPages);
    checkFinite(`guest ${this.name}: burst duration (ms)`, overMs, 0);
    this.expect('burst', 'booting', 'running', 'paused');
    this.bursts.push(startBurst(pages, overMs));
  }

  // ---- the guest's own writes ------------------------------------------------------------------

  /**
   * Let `dt` ms of the guest's time pass: boot progress, or the pages its workload
   * wants to dirty. The writes themselves happen in work(), so that a write that
   * fails for lack of memory can be retried without counting the time twice.
   */
  tick(dt: number): void {
    if (this.state === 'booting') {
      this.bootElapsed += dt;
      return;
    }
    if (this.state !== 'running') return;
    this.runningMs += dt;
    const b = this.workload.burst;
    while (b !== null && this.runningMs >= this.nextBurstAt) {
      this.bursts.push(startBurst(b.pages, b.overMs));
      this.nextBurstAt += b.everyMs;
    }
    this.dirtyDebt += (this.dirtyRate * dt) / 1000;
    let n = Math.floor(this.dirtyDebt);
    this.dirtyDebt -= n;
    for (let i = 0; i < this.bursts.length; i++) {
      const burst = this.bursts[i]!;
      burst.debt += burst.rate * dt;
      const k = Math.min(burst.pages, Math.floor(burst.debt));
      burst.debt -= k;
      burst.pages -= k;
      n += k;
    }
    for (let i = this.bursts.length - 1; i >= 0; i--) if (this.bursts[i]!.pages === 0) this.bursts.splice(i, 1);
    this.pendingDirty += n;
  }

  /**
   * Do the writes that are due: the boot's pages up to where its time has reached,
   * or the pages the workload has to dirty. Returns true when this call finished
   * the boot. May throw ENOMEM; what was written stays written, the rest stays due.
   */
  work(): boolean {
    if (this.state === 'booting') return this.bootWork();
    if (this.state !== 'running') return false;
    while (this.pendingDirty > 0) {
      this.dirtyOne();
      this.pendingDirty--;
    }
    return false;
  }

  private bootWork(): boolean {
    const total = this.ramPages;
    const bootMs = this.source.bootMs;
    const target = bootMs <= 0 || this.bootElapsed >= bootMs ? total : Math.floor((total * this.bootElapsed) / bootMs);
    const hm = this.layout.hostMapping;
    while (this.bootCursor < target) {
      const page = this.bootCursor;
      if (hm !== undefined && page % 512 === 0 && this.layout.hostMapping!(page) === 'small') {
        // The real host mapped this 2 MiB range with small pages: a read fault first
        // (the zero page in one pte) keeps the model's kernel from giving it a THP,
        // as it needs the range's pmd empty. The write below replaces it.
        this.process!.read(this.hvaOfPage(page), 1);
      }
      const kind = this.layout.bootKey(page, this.bootSeed, scratchKey);
      if (kind === 'zero') this.writeZeroPage(page);
      else if (kind !== 'untouched') this.writeRamPage(page);
      else if (hm !== undefined && this.layout.hostMapping!(page) === 'zero-page') this.process!.read(this.hvaOfPage(page), 1);
      this.bootCursor = page + 1;
    }
    if (this.bootCursor < total) return false;
    this.state = 'running';
    this.runningMs = 0;
    return true;
  }

  /** Dirty one page the workload picks, with fresh contents. */
  private dirtyOne(): void {
    const page = this.layout.dirtyTarget(this.prng.nextU32(), this.prng.nextU32());
    this.layout.dirtyKey(this.bootSeed, this.dirtyCounter, scratchKey);
    this.writeRamPage(page);
    this.dirtyCounter++;
  }

  /**
   * Write the page scratchKey names to RAM page `page` (in RAM order) through the QEMU
   * process's MMU: the same write fault as writing its bytes, the frame naming the
   * generated content (Process.writeGeneratedPage).
   */
  private writeRamPage(page: number): void {
    const k = scratchKey;
    this.process!.writeGeneratedPage(this.hvaOfPage(page), this.generatorId, k[0]!, k[1]!, k[2]!, k[3]!);
    this.pagesWritten++;
  }

  /** Write a page of zeros to RAM page `page`, as the boot does for its zeroed memory. */
  private writeZeroPage(page: number): void {
    this.process!.writeFilledPage(this.hvaOfPage(page), 0);
    this.pagesWritten++;
  }

  private hvaOfPage(page: number): number {
    const s = this.slots.length > 1 && page >= this.slots[1]!.firstPage ? this.slots[1]! : this.slots[0]!;
    return s.hva + (page - s.firstPage) * PAGE_SIZE;
  }

  // ---- guest-physical access -------------------------------------------------------------------

  /** The host virtual address of guest-physical `gpa`, or throws EFAULT outside RAM. */
  hvaOf(gpa: number): number {
    if (this.process === null) throw new KernelError('EINVAL', `guest ${this.name} is ${this.state}: its RAM is not mapped`);
    for (const s of this.slots) {
      if (gpa >= s.gpa && gpa < s.gpa + s.size) return s.hva + (gpa - s.gpa);
    }
    throw new KernelError('EFAULT', `guest ${this.name}: guest-physical ${typeof gpa === 'number' ? `0x${gpa.toString(16)}` : describe(gpa)} is not RAM`);
  }

  /** Split [gpa, gpa+len) into pieces inside one slot each. */
  private pieces(gpa: number, len: number, fn: (hva: number, off: number, n: number) => void): void {
    checkAddr(`guest ${this.name}: guest-physical address`, gpa);
    checkCount(`guest ${this.name}: length`, len, MAX_RW_COUNT);
    // Check the whole range first, so a bad range changes nothing.
    const parts: { hva: number; off: number; n: number }[] = [];
    let a = gpa;
    while (a < gpa + len) {
      const hva = this.hvaOf(a);
      const s = this.slots.find((x) => a >= x.gpa && a < x.gpa + x.size)!;
      const n = Math.min(gpa + len - a, s.gpa + s.size - a);
      parts.push({ hva, off: a - gpa, n });
      a += n;
    }
    for (const p of parts) fn(p.hva, p.off, p.n);
  }

  /** Read guest-physical memory, as the guest (or a device model) sees it. */
  readPhys(gpa: number, len: number): Uint8Array {
    checkCount(`guest ${this.name}: readPhys length`, len, MAX_RW_COUNT);
    const out = new Uint8Array(len);
    this.pieces(gpa, len, (hva, off, n) => out.set(this.process!.read(hva, n), off));
    return out;
  }

  /** Write guest-physical memory, as the guest does. */
  writePhys(gpa: number, bytesIn: ArrayBufferView): void {
    const bytes = checkBytes(`guest ${this.name}: writePhys bytes`, bytesIn);
    this.pieces(gpa, bytes.byteLength, (hva, off, n) => this.process!.write(hva, bytes.subarray(off, off + n)));
    this.pagesWritten += Math.ceil(bytes.byteLength / PAGE_SIZE);
  }

  // ---- snapshots -----------------------------------------------------------------------------

  toSnapshot(): GuestSnapshot {
    return {
      id: this.id,
      name: this.name,
      source: { ...this.source.ref },
      ramBytes: this.ramBytes,
      memMerge: this.memMerge,
      mergeDomain: this.mergeDomain,
      workload: { dirtyRate: this.workload.dirtyRate, burst: this.workload.burst === null ? null : { ...this.workload.burst } },
      state: this.state,
      pid: this.process === null ? null : this.process.pid,
      slotHvas: this.slots.map((s) => s.hva),
      bootSeed: this.bootSeed,
      boots: this.boots,
      pagesWritten: this.pagesWritten,
      prng: this.prng.getState(),
      bootElapsed: this.bootElapsed,
      bootCursor: this.bootCursor,
      pausedFrom: this.pausedFrom,
      runningMs: this.runningMs,
      dirtyDebt: this.dirtyDebt,
      dirtyCounter: this.dirtyCounter,
      pendingDirty: this.pendingDirty,
      nextBurstAt: Number.isFinite(this.nextBurstAt) ? this.nextBurstAt : null,
      bursts: this.bursts.map((b) => ({ ...b })),
      ...(this.qemuBlocks ? { qemu: { nic: this.nic, ramHva: this.ramHva, blockHvas: [...this.blockHvas] } } : {}),
    };
  }

  /**
   * Rebuild a guest from its snapshot, on a kernel restored from the same snapshot
   * (its QEMU process is looked up by pid), with the source its ref resolved to.
   * Throws an Error naming what does not fit.
   */
  static fromSnapshot(kernel: HostKernel, snap: GuestSnapshot, source: PageSource): Guest {
    const g = new Guest(kernel, new Prng(0), snap.id, {
      name: snap.name,
      source,
      ramBytes: snap.ramBytes,
      memMerge: snap.memMerge,
      mergeDomain: snap.mergeDomain,
      workload: snap.workload,
      qemuBlocks: snap.qemu !== undefined,
      ...(snap.qemu !== undefined ? { nic: snap.qemu.nic } : {}),
    });
    if (snap.slotHvas.length !== g.slots.length) throw new Error(`guest ${snap.name}: ${snap.slotHvas.length} memory slots saved, ${g.slots.length} expected`);
    if (snap.qemu !== undefined) {
      if (snap.qemu.blockHvas.length !== g.blockHvas.length) throw new Error(`guest ${snap.name}: ${snap.qemu.blockHvas.length} QEMU RAM blocks saved, ${g.blockHvas.length} expected`);
      g.ramHva = snap.qemu.ramHva;
      snap.qemu.blockHvas.forEach((hva, i) => {
        g.blockHvas[i] = hva;
      });
    }
    snap.slotHvas.forEach((hva, i) => {
      (g.slots[i] as MemSlot).hva = hva;
    });
    if (snap.pid !== null) {
      const proc = kernel.processes.get(snap.pid);
      if (proc === undefined) throw new Error(`guest ${snap.name}: its process ${snap.pid} is not in the kernel`);
      // Each slot's RAM is one area of its process, writable, as boot() maps it: the
      // guest writes there without asking again.
      for (const s of g.slots) {
        const vma = proc.mm.vmaAt(s.hva);
        if (vma === null || vma.start > s.hva || vma.end < s.hva + s.size || (vma.flags & VM_WRITE) === 0) {
          throw new Error(`guest ${snap.name}: memory slot ${s.slot} at 0x${s.hva.toString(16)} (${s.size} bytes) is not a writable area of its process`);
        }
      }
      g.process = proc;
    }
    g.state = snap.state;
    g.bootSeed = snap.bootSeed;
    g.boots = snap.boots;
    g.pagesWritten = snap.pagesWritten;
    g.prng.setState(snap.prng);
    g.bootElapsed = snap.bootElapsed;
    g.bootCursor = snap.bootCursor;
    g.pausedFrom = snap.pausedFrom;
    g.runningMs = snap.runningMs;
    g.dirtyDebt = snap.dirtyDebt;
    g.dirtyCounter = snap.dirtyCounter;
    g.pendingDirty = snap.pendingDirty;
    g.nextBurstAt = snap.nextBurstAt === null ? Infinity : snap.nextBurstAt;
    for (const b of snap.bursts) g.bursts.push({ pages: b.pages, rate: b.rate, debt: b.debt });
    return g;
  }

  // ---- figures -----------------------------------------------------------------------------

  /** This guest's figures now: what smaps says of its RAM slots in the QEMU process. */
  sample(): GuestSample {
    const mss = newMemSizeStats();
    const proc = this.process;
    if (proc !== null) {
      for (const s of this.slots) proc.smaps(s.hva, s.size, mss);
      this.firmware.forEach((b, i) => proc.smaps(this.blockHvas[i]!, b.bytes, mss));
    }
    return {
      name: this.name,
      id: this.id,
      state: this.state,
      ramBytes: this.ramBytes,
      residentBytes: mss.resident * PAGE_SIZE,
      // A page KSM put on the zero page (6.x use_zero_pages) is merged, and saved whole.
      mergedBytes: (mss.ksm + mss.ksmZero) * PAGE_SIZE,
      savedBytes: Math.round((mss.ksmSaved + mss.ksmZero) * PAGE_SIZE),
      swapBytes: mss.swap * PAGE_SIZE,
    };
  }
}
