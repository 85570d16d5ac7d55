import { createHash } from 'node:crypto';
import { PAGE_SIZE } from '../mm/constants.js';
import { Prng } from '../lib/prng.js';

/*
 * QEMU's RAM blocks: what a QEMU process registers with KSM besides guest RAM.
 *
 * QEMU allocates every RAM block the same way (softmmu/physmem.c ram_block_add() in
 * 7.2): an anonymous private mmap of the block's max_length, 2 MiB-aligned
 * (util/mmap-alloc.c qemu_ram_mmap(), QEMU_VMALLOC_ALIGN), then MADV_MERGEABLE when
 * the machine's mem-merge is on (memory_try_enable_merging()) and MADV_HUGEPAGE
 * always (qemu_madvise(QEMU_MADV_HUGEPAGE)). Guest RAM (`pc.ram`) is one of them; the
 * others hold firmware and device memory: VGA memory, the BIOS, option ROMs and
 * fw_cfg blobs (the ACPI tables, their loader script, the RSDP).
 *
 * Sizes and contents below are what docs/real-guests.md measured on this machine
 * (QEMU 7.2.22, `-machine pc`, std VGA, Debian's 6.1 guest kernel with a busybox
 * initramfs), read from captures/busybox-4.cap: every block but guest RAM held the
 * same bytes in all four guests, so a block's contents are QEMU's and the machine
 * type's, not the guest's. Which pages are present, which are zero-filled and which
 * repeat one content are kept exactly; the non-zero contents themselves are not
 * shipped (firmware images, ACPI tables of this machine): each distinct one is
 * generated from the block's name and its number, so equal pages stay equal within
 * a block and across guests, and differ from everything else, which is all KSM sees.
 *
 * `e1000.rom` (the option ROM of QEMU's default NIC, `-nic e1000`) is 256 KiB; its
 * contents were not measured: the model takes all 64 pages as present and distinct
 * (an option ROM image loaded whole), which README, "Differences", says.
 */

/** The NIC a guest has: none (`-nic none`, as the real-guest harness boots) or QEMU's default e1000. */
export type QemuNic = 'none' | 'e1000';
export const QEMU_NICS: readonly QemuNic[] = ['none', 'e1000'];

/**
 * One present page of a block: its page offset in the block and its content: 0 for
 * a zero-filled page, n > 0 for the block's n-th distinct content, ZERO_PAGE_MAPPED
 * for a page only read (the shared zero page mapped: present, but no page of its own).
 */
export interface FirmwarePage {
  readonly offset: number;
  readonly content: number;
}

export const ZERO_PAGE_MAPPED = -1;

/**
 * A RAM block other than guest RAM: its name (`info ramblock`), size (max_length),
 * present pages in offset order, and how to fill content n (> 0) into a page.
 */
export interface FirmwareBlock {
  readonly name: string;
  readonly bytes: number;
  readonly pages: readonly FirmwarePage[];
  fill(content: number, out: Uint32Array): void;
}

const KiB = 1024;
const MiB = 1024 * KiB;

function run(from: number, to: number, content: (i: number) => number): FirmwarePage[] {
  const out: FirmwarePage[] = [];
  for (let i = from; i < to; i++) out.push({ offset: i, content: content(i) });
  return out;
}

/**
 * QEMU 7.2's blocks of `-machine pc` besides pc.ram, in the order of their addresses
 * in the QEMU process (lowest first, after pc.ram), as measured.
 */
export function qemuFirmwareBlocks(nic: QemuNic): FirmwareBlock[] {
  const blocks: Omit<FirmwareBlock, 'fill'>[] = [
    // fw_cfg blob: one page of RSDP.
    { name: '/rom@etc/acpi/rsdp', bytes: 4 * KiB, pages: run(0, 1, () => 1) },
    // fw_cfg blob: the table loader's script in its first page, the rest zero.
    { name: '/rom@etc/table-loader', bytes: 64 * KiB, pages: run(0, 16, (i) => (i === 0 ? 1 : 0)) },
    // fw_cfg blob: two pages of ACPI tables in a 2 MiB block, all present (one THP).
    { name: '/rom@etc/acpi/tables', bytes: 2 * MiB, pages: run(0, 512, (i) => (i < 2 ? i + 1 : 0)) },
    // std VGA memory: the first 2 MiB present (one THP), 8 distinct pages, 8 more of
    // one content (text-mode attribute fill), the rest zero.
    { name: '0000:00:02.0/vga.vram', bytes: 16 * MiB, pages: run(0, 512, (i) => (i < 8 ? i + 1 : i < 16 ? 9 : 0)) },
    // VGA BIOS: 40 KiB of the 64 KiB present, every page distinct.
    { name: '0000:00:02.0/vga.rom', bytes: 64 * KiB, pages: run(0, 10, (i) => i + 1) },
    // Option ROM space: never touched.
    { name: 'pc.rom', bytes: 128 * KiB, pages: [] },
    // SeaBIOS: 18 zero pages, then 46 distinct.
    { name: 'pc.bios', bytes: 256 * KiB, pages: run(0, 64, (i) => (i < 18 ? 0 : i - 17)) },
  ];
  if (nic === 'e1000') blocks.push({ name: '0000:00:03.0/e1000.rom', bytes: 256 * KiB, pages: run(0, 64, (i) => i + 1) });
  return blocks.map((b) => ({ ...b, fill: (n: number, out: Uint32Array) => fillFirmwarePage(b.name, n, out) }));
}

/**
 * Fill `out` (1024 words) with content `n` (> 0) of block `name`: pseudo-random
 * words from a seed hashed from both, so the same (name, n) gives the same page in
 * every guest and every run, and no two differ only a little.
 */
export function fillFirmwarePage(name: string, n: number, out: Uint32Array): void {
  const h = createHash('sha256').update(`qemu-7.2 ${name} ${n}`).digest();
  const prng = new Prng(h.readUInt32LE(0) ^ h.readUInt32LE(4));
  for (let i = 0; i < PAGE_SIZE / 4; i++) out[i] = prng.nextU32();
}
