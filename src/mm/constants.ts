/**
 * Every bit layout of the simulated host kernel, in one place.
 *
 * Page flags (`PhysMem.flags[pfn]`, a Uint32Array):
 *   read   `(mem.flags[pfn] & PG_LOCKED) !== 0`
 *   set    `mem.flags[pfn] |= PG_DIRTY`
 *   clear  `mem.flags[pfn] &= ~PG_DIRTY`
 * PG_ANON and PG_KSM stand for the low bits Linux keeps in `page->mapping`
 * (PAGE_MAPPING_ANON, PAGE_MAPPING_KSM): with PG_ANON alone `mapping[pfn]` is the
 * page's anon_vma; with both it is the KSM stable node (or null for a KSM page whose
 * stable node is not yet inserted, exactly as set_page_stable_node(page, NULL)).
 *
 * VMA flags (`Vma.flags`) keep Linux 2.6.33's values. VM_MERGEABLE is bit 31, so a
 * flags word may read back negative from `|`: always test with `(f & X) !== 0`.
 *
 * PTEs are integers below 2^53 in per-mm page tables of f64 (see mm.ts):
 *   bits 0-1  kind: 0 none, 1 present, 2 swap entry, 3 migration entry
 *   bit  2    write  (present: writable; migration: the pte was writable)
 *   bit  3    young  (present only: the accessed bit)
 *   bit  4    dirty  (present only)
 *   bit  5    special (present only: the shared zero page, never refcounted)
 *   bits 6-   payload: pfn (present, migration) or swap offset (swap)
 * The payload is pte / 64 (PTE_PAYLOAD_UNIT): a pte wider than 32 bits is no u32,
 * so the payload is never shifted and whole ptes are never `|`ed or `&~`ed; flags are
 * read with `&` as before (ToInt32 keeps the low 32 bits of an integer below 2^53),
 * and set or cleared with pteSet()/pteClear(). MAX_PTE_PAYLOAD bounds it: 2^30
 * frames (4 TiB of RAM) and as many swap slots.
 *
 * The road not taken: a u32 pte with 26 payload bits addressed 256 GiB, and no way
 * to free 4 bits of it (kind, write, young, dirty are all needed; special is the
 * only derivable one). A second u8 array per table for the high bits would keep 5 B
 * a pte, but every reader would then assemble two loads; f64 tables cost 4 B more a
 * pte (bench/mm.ts counts it) and keep a pte one number.
 */

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
export const WORDS_PER_PAGE = PAGE_SIZE / 4;

// ---- page flags ----------------------------------------------------------------
export const PG_LOCKED = 1 << 0;
export const PG_REFERENCED = 1 << 1;
export const PG_UPTODATE = 1 << 2;
export const PG_DIRTY = 1 << 3;
export const PG_LRU = 1 << 4;
export const PG_ACTIVE = 1 << 5;
export const PG_SWAPCACHE = 1 << 6;
export const PG_SWAPBACKED = 1 << 7;
export const PG_MLOCKED = 1 << 8;
export const PG_UNEVICTABLE = 1 << 9;
export const PG_RESERVED = 1 << 10;
/** mapping is an anon_vma (PAGE_MAPPING_ANON). */
export const PG_ANON = 1 << 11;
/** with PG_ANON: mapping is a KSM stable node (PAGE_MAPPING_KSM). */
export const PG_KSM = 1 << 12;
/** a page of a shared anonymous mapping (shmem): mapping is its ShmemFile. */
export const PG_SHMEM = 1 << 13;
/** the frame is free, in the allocator (PageBuddy). */
export const PG_BUDDY = 1 << 14;
/** the frame lies in a memory block that is offline. */
export const PG_OFFLINE = 1 << 16;
/**
 * The first frame of a transparent huge page (PageHead): 512 frames from a
 * 512-aligned pfn, the other 511 flagged PG_TAIL. Both bits live and die together:
 * huge-memory.ts sets them at a THP fault and clears all 512 at a split; a frame
 * freed alone (which a split always precedes) never has them.
 */
export const PG_HEAD = 1 << 17;
/** One of the 511 frames after a PG_HEAD frame (PageTail). */
export const PG_TAIL = 1 << 18;

export const PAGE_FLAG_NAMES: readonly (readonly [number, string])[] = [
  [PG_LOCKED, 'locked'],
  [PG_REFERENCED, 'referenced'],
  [PG_UPTODATE, 'uptodate'],
  [PG_DIRTY, 'dirty'],
  [PG_LRU, 'lru'],
  [PG_ACTIVE, 'active'],
  [PG_SWAPCACHE, 'swapcache'],
  [PG_SWAPBACKED, 'swapbacked'],
  [PG_MLOCKED, 'mlocked'],
  [PG_UNEVICTABLE, 'unevictable'],
  [PG_RESERVED, 'reserved'],
  [PG_ANON, 'anon'],
  [PG_KSM, 'ksm'],
  [PG_SHMEM, 'shmem'],
  [PG_BUDDY, 'buddy'],
  [PG_OFFLINE, 'offline'],
  [PG_HEAD, 'head'],
  [PG_TAIL, 'tail'],
];

export function decodePageFlags(flags: number): string {
  const names: string[] = [];
  for (const [bit, name] of PAGE_FLAG_NAMES) if ((flags & bit) !== 0) names.push(name);
  return names.length > 0 ? names.join('|') : '0';
}

// ---- vm_flags (include/linux/mm.h, 2.6.33) -------------------------------------
export const VM_READ = 0x00000001;
export const VM_WRITE = 0x00000002;
export const VM_EXEC = 0x00000004;
export const VM_SHARED = 0x00000008;
export const VM_MAYREAD = 0x00000010;
export const VM_MAYWRITE = 0x00000020;
export const VM_MAYEXEC = 0x00000040;
export const VM_MAYSHARE = 0x00000080;
export const VM_PFNMAP = 0x00000400;
export const VM_LOCKED = 0x00002000;
export const VM_IO = 0x00004000;
export const VM_DONTCOPY = 0x00020000;
export const VM_DONTEXPAND = 0x00040000;
export const VM_RESERVED = 0x00080000;
export const VM_HUGETLB = 0x00400000;
export const VM_NONLINEAR = 0x00800000;
/**
 * MADV_HUGEPAGE / MADV_NOHUGEPAGE (mm/khugepaged.c hugepage_madvise()): the values
 * 2.6.38 gave them when it added transparent huge pages, which do not collide with
 * 2.6.33's (later kernels moved VM_HUGEPAGE to 0x20000000, 2.6.33's VM_SAO).
 */
export const VM_HUGEPAGE = 0x01000000;
export const VM_NOHUGEPAGE = 0x40000000;
export const VM_INSERTPAGE = 0x02000000;
export const VM_MIXEDMAP = 0x10000000;
export const VM_SAO = 0x20000000;
export const VM_MERGEABLE = 0x80000000 | 0;

const VM_FLAG_NAMES: readonly (readonly [number, string])[] = [
  [VM_READ, 'read'],
  [VM_WRITE, 'write'],
  [VM_EXEC, 'exec'],
  [VM_SHARED, 'shared'],
  [VM_MAYSHARE, 'mayshare'],
  [VM_PFNMAP, 'pfnmap'],
  [VM_LOCKED, 'locked'],
  [VM_IO, 'io'],
  [VM_DONTCOPY, 'dontcopy'],
  [VM_DONTEXPAND, 'dontexpand'],
  [VM_RESERVED, 'reserved'],
  [VM_HUGETLB, 'hugetlb'],
  [VM_MIXEDMAP, 'mixedmap'],
  [VM_HUGEPAGE, 'hugepage'],
  [VM_NOHUGEPAGE, 'nohugepage'],
  [VM_MERGEABLE, 'mergeable'],
];

export function decodeVmFlags(flags: number): string {
  const names: string[] = [];
  for (const [bit, name] of VM_FLAG_NAMES) if ((flags & bit) !== 0) names.push(name);
  return names.length > 0 ? names.join('|') : '0';
}

// ---- mm->flags ------------------------------------------------------------------
/** The mm has an mm_slot in KSM (include/linux/sched.h MMF_VM_MERGEABLE). */
export const MMF_VM_MERGEABLE = 1 << 0;
/**
 * 6.x: prctl(PR_SET_MEMORY_MERGE) is on: every compatible area is VM_MERGEABLE,
 * now and from birth (include/linux/mm_types.h MMF_VM_MERGE_ANY).
 */
export const MMF_VM_MERGE_ANY = 1 << 1;
/** The mm flags fork copies to the child (include/linux/mm_types.h MMF_INIT_MASK, the part the model has). */
export const MMF_INIT_MASK = MMF_VM_MERGE_ANY;

// ---- PTEs -------------------------------------------------------------------------
export const PTE_NONE = 0;
export const PTE_KIND_MASK = 3;
export const PTE_PRESENT = 1;
export const PTE_SWAP = 2;
export const PTE_MIGRATION = 3;
export const PTE_WRITE = 1 << 2;
export const PTE_YOUNG = 1 << 3;
export const PTE_DIRTY = 1 << 4;
export const PTE_SPECIAL = 1 << 5;
/** The flag bits, all below the payload. */
export const PTE_FLAGS_MASK = 63;
/** The payload's unit: payload = floor(pte / PTE_PAYLOAD_UNIT). */
export const PTE_PAYLOAD_UNIT = 64;
/** The largest payload: frames 0..2^30-1 (4 TiB of RAM), swap offsets up to it. */
export const MAX_PTE_PAYLOAD = 2 ** 30 - 1;
/** The most RAM a kernel can have: every frame must fit in a pte's payload. */
export const MAX_MEMORY_MIB = ((MAX_PTE_PAYLOAD + 1) * PAGE_SIZE) / (1024 * 1024);

export function mkPte(pfn: number, bits: number): number {
  return pfn * PTE_PAYLOAD_UNIT + ((bits | PTE_PRESENT) & PTE_FLAGS_MASK);
}
export function mkSwapPte(offset: number): number {
  return offset * PTE_PAYLOAD_UNIT + PTE_SWAP;
}
export function mkMigrationPte(pfn: number, write: boolean): number {
  return pfn * PTE_PAYLOAD_UNIT + ((write ? PTE_WRITE : 0) | PTE_MIGRATION);
}
export function ptePayload(pte: number): number {
  return (pte - (pte & PTE_FLAGS_MASK)) / PTE_PAYLOAD_UNIT;
}
/** pte with flag `bits` set (pte | bits, for ptes wider than 32 bits). */
export function pteSet(pte: number, bits: number): number {
  const f = pte & PTE_FLAGS_MASK;
  return pte - f + ((f | bits) & PTE_FLAGS_MASK);
}
/** pte with flag `bits` clear (pte & ~bits, for ptes wider than 32 bits). */
export function pteClear(pte: number, bits: number): number {
  const f = pte & PTE_FLAGS_MASK;
  return pte - f + (f & ~bits);
}
export function ptePresent(pte: number): boolean {
  return (pte & PTE_KIND_MASK) === PTE_PRESENT;
}

export function decodePte(pte: number): string {
  switch (pte & PTE_KIND_MASK) {
    case PTE_NONE:
      return 'none';
    case PTE_PRESENT: {
      const bits = [
        (pte & PTE_WRITE) !== 0 ? 'write' : 'ro',
        (pte & PTE_YOUNG) !== 0 ? 'young' : '',
        (pte & PTE_DIRTY) !== 0 ? 'dirty' : '',
        (pte & PTE_SPECIAL) !== 0 ? 'special' : '',
      ].filter((s) => s !== '');
      return `present pfn=${ptePayload(pte)} ${bits.join('|')}`;
    }
    case PTE_SWAP:
      return `swap offset=${ptePayload(pte)}`;
    default:
      return `migration pfn=${ptePayload(pte)}${(pte & PTE_WRITE) !== 0 ? ' write' : ''}`;
  }
}

/** Address formatting for messages: 0x7f0000201000. */
export function hexAddr(addr: number): string {
  return '0x' + addr.toString(16);
}

/** Where mmap() starts looking, top down (like mm->mmap_base on x86-64). */
export const MMAP_BASE = 0x7f0000000000;
/** The top of the user address space: 2^47 on x86-64 (arch/x86/include/asm/processor.h TASK_SIZE_MAX). */
export const TASK_SIZE = 0x800000000000;
/** Lowest address mmap() hands out (mmap_min_addr). */
export const MMAP_MIN_ADDR = 0x10000;
