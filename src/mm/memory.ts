import { assert, bug } from '../lib/errors.js';
import {
  PG_ANON,
  PG_DIRTY,
  PG_KSM,
  PG_LOCKED,
  PG_MLOCKED,
  PG_SHMEM,
  PG_SWAPCACHE,
  PTE_DIRTY,
  PTE_KIND_MASK,
  PTE_MIGRATION,
  PTE_NONE,
  PTE_PRESENT,
  PTE_SPECIAL,
  PTE_SWAP,
  PTE_WRITE,
  PTE_YOUNG,
  VM_LOCKED,
  VM_MAYWRITE,
  VM_SHARED,
  VM_WRITE,
  mkPte,
  ptePayload,
  ptePresent,
  pteClear,
  pteSet,
} from './constants.js';
import type { HostKernel } from './kernel.js';
import type { MmStruct } from './mm.js';
import { LRU_ACTIVE_ANON, LRU_UNEVICTABLE } from './physmem.js';
import { SWAP_AGAIN, SWAP_MLOCK, pageAddNewAnonRmap, pageDupRmap, pageRemoveRmap, rmapWalk, type RmapWalkControl } from './rmap.js';
import { SWAP_CLUSTER_MAX, doSwapPage, freeSwapAndCache, shrinkPages, tryToFreeSwap } from './swapops.js';
import { AnonVma, ShmemFile, type Vma } from './vma.js';
import { VM_FAULT_FALLBACK, doHugePmdAnonymousPage, isThpFrame, splitHugeForRange, splitHugePmd } from './huge-memory.js';

/**
 * Faults, copy-on-write, unmapping and fork's page-table copy (mm/memory.c, 2.6.33).
 *
 * Fault results are VM_FAULT_* bits as in Linux: VM_FAULT_WRITE says a write fault
 * left the page writable-by-us (COW broken or page reused), which break_ksm() waits
 * for; VM_FAULT_OOM says no frame could be had even after reclaim.
 */
export const VM_FAULT_MINOR = 0;
export const VM_FAULT_OOM = 0x0001;
export const VM_FAULT_SIGBUS = 0x0002;
export const VM_FAULT_MAJOR = 0x0004;
export const VM_FAULT_WRITE = 0x0008;

/**
 * alloc_page_vma(): a frame, from node `nid` first (the faulting mm's: physmem.ts),
 * reclaiming (and so swapping) first when none is free. Returns -1 when memory is
 * exhausted: the caller reports VM_FAULT_OOM.
 */
export function allocPage(k: HostKernel, zero: boolean, nid = 0): number {
  let pfn = k.mem.allocFrame(zero, nid);
  if (pfn < 0 && k.swap !== null) {
    shrinkPages(k, SWAP_CLUSTER_MAX);
    pfn = k.mem.allocFrame(zero, nid);
  }
  return pfn;
}

/** anon_vma_prepare(): give the area an anon_vma before its first anonymous page. */
export function anonVmaPrepare(vma: Vma): AnonVma {
  if (vma.anonVma !== null) return vma.anonVma;
  // find_mergeable_anon_vma(): a neighbour that could merge with us shares its
  // anon_vma, so that a later vma_merge is not prevented by differing anon_vmas.
  const mm = vma.mm;
  const i = mm.vmas.indexOf(vma);
  const prev = i > 0 ? mm.vmas[i - 1]! : null;
  const next = i + 1 < mm.vmas.length ? mm.vmas[i + 1]! : null;
  let av: AnonVma | null = null;
  if (prev !== null && prev.end === vma.start && prev.anonVma !== null && prev.flags === vma.flags && prev.shmem === null && vma.shmem === null && prev.pgoff + prev.pages === vma.pgoff) av = prev.anonVma;
  else if (next !== null && next.start === vma.end && next.anonVma !== null && next.flags === vma.flags && next.shmem === null && vma.shmem === null && vma.pgoff + vma.pages === next.pgoff) av = next.anonVma;
  if (av === null) av = new AnonVma();
  vma.anonVma = av;
  av.link(vma);
  return av;
}

/**
 * mlock_vma_page(): the page is mapped in a VM_LOCKED area: PG_mlocked, and off
 * the evictable lists.
 */
export function mlockVmaPage(k: HostKernel, pfn: number): void {
  const mem = k.mem;
  if ((mem.flags[pfn]! & PG_MLOCKED) !== 0) return;
  mem.flags[pfn]! |= PG_MLOCKED;
  if ((mem.flags[pfn]! & PG_SHMEM) === 0) mem.lruMove(pfn, LRU_UNEVICTABLE);
}

/** try_to_munlock()'s walk: stops at the first VM_LOCKED area (but `except`) that still maps the page. */
class MunlockWalk implements RmapWalkControl {
  except: Vma | null = null;
  stillLocked = false;

  rmapOne(pfn: number, vma: Vma, addr: number): number {
    if (vma === this.except || (vma.flags & VM_LOCKED) === 0) return SWAP_AGAIN;
    const pte = vma.mm.getPte(addr);
    if (ptePresent(pte) && ptePayload(pte) === pfn) {
      this.stillLocked = true;
      return SWAP_MLOCK;
    }
    return SWAP_AGAIN;
  }

  done(): boolean {
    return false;
  }
}
const scratchMunlockWalk = new MunlockWalk();

/**
 * munlock_vma_page() with try_to_munlock(): clear PG_mlocked unless some other
 * VM_LOCKED area still maps the page.
 */
export function munlockVmaPage(k: HostKernel, pfn: number, except: Vma | null): void {
  const mem = k.mem;
  if ((mem.flags[pfn]! & PG_MLOCKED) === 0) return;
  let stillLocked = false;
  if ((mem.flags[pfn]! & PG_SHMEM) === 0) {
    const w = scratchMunlockWalk;
    w.except = except;
    w.stillLocked = false;
    rmapWalk(k, pfn, w);
    stillLocked = w.stillLocked;
    w.except = null;
  }
  if (stillLocked) return;
  mem.flags[pfn]! &= ~PG_MLOCKED;
  if ((mem.flags[pfn]! & PG_SHMEM) === 0) mem.lruMove(pfn, LRU_ACTIVE_ANON);
}

/** handle_mm_fault() for an address inside `vma`. Access rights were checked by the caller. */
export function handleMmFault(k: HostKernel, vma: Vma, addr: number, write: boolean): number {
  const mm = vma.mm;
  const pte = mm.getPte(addr);
  k.vmstat.pgfault++;
  switch (pte & PTE_KIND_MASK) {
    case PTE_NONE:
      return vma.shmem !== null ? doSharedFault(k, vma, addr, write) : doAnonymousPage(k, vma, addr, write);
    case PTE_PRESENT:
      if (write && (pte & PTE_WRITE) === 0) return doWpPage(k, vma, addr, pte);
      mm.setPte(addr, pteSet(pte, PTE_YOUNG | (write ? PTE_DIRTY : 0)));
      return VM_FAULT_MINOR;
    case PTE_SWAP:
      return doSwapPage(k, vma, addr, pte, write);
    case PTE_MIGRATION:
      // Migration unmaps, copies and remaps inside one call: nobody can fault between.
      return bug(`fault on a migration entry at ${mm.owner} ${addr}`);
    default:
      return bug(`unknown pte kind ${pte & PTE_KIND_MASK}`);
  }
}

/** do_anonymous_page(): a read maps the zero page; a write gets a fresh zeroed page. */
function doAnonymousPage(k: HostKernel, vma: Vma, addr: number, write: boolean): number {
  const mm = vma.mm;
  if (!write) {
    mm.setPte(addr, mkPte(k.mem.zeroPfn, PTE_SPECIAL | PTE_YOUNG));
    return VM_FAULT_MINOR;
  }
  // create_huge_pmd(): an area that may have THPs tries for one first.
  if (k.thp !== null) {
    const r = doHugePmdAnonymousPage(k, vma, addr, anonVmaPrepare);
    if (r !== VM_FAULT_FALLBACK) return r;
  }
  anonVmaPrepare(vma);
  const pfn = allocPage(k, true, mm.node);
  if (pfn < 0) return VM_FAULT_OOM;
  const writable = (vma.flags & VM_WRITE) !== 0;
  mm.setPte(addr, mkPte(pfn, PTE_YOUNG | (writable ? PTE_WRITE | PTE_DIRTY : 0)));
  if (!writable) k.mem.flags[pfn]! |= PG_DIRTY;
  pageAddNewAnonRmap(k, pfn, vma, addr);
  return VM_FAULT_WRITE;
}

/** shmem_fault() + __do_fault() for a shared anonymous area. */
function doSharedFault(k: HostKernel, vma: Vma, addr: number, write: boolean): number {
  const mem = k.mem;
  const file = vma.shmem!;
  const index = vma.linearIndex(addr);
  let pfn = file.pages.get(index) ?? -1;
  if (pfn < 0) {
    pfn = allocPage(k, true, vma.mm.node);
    if (pfn < 0) return VM_FAULT_OOM;
    mem.flags[pfn]! |= PG_SHMEM | PG_DIRTY;
    mem.setMapping(pfn, file);
    mem.index[pfn] = index;
    file.pages.set(index, pfn); // the file's own reference is the allocation's
  }
  mem.getPage(pfn);
  mem.mapcount[pfn]!++;
  const writable = write && (vma.flags & VM_WRITE) !== 0;
  vma.mm.setPte(addr, mkPte(pfn, PTE_YOUNG | (writable ? PTE_WRITE | PTE_DIRTY : 0)));
  if ((vma.flags & VM_LOCKED) !== 0) mem.flags[pfn]! |= PG_MLOCKED;
  return write ? VM_FAULT_WRITE : VM_FAULT_MINOR;
}

/**
 * mm/swapfile.c reuse_swap_page(): may a write fault simply make this anonymous
 * page writable? Only when nothing else maps it or holds its swap slot; a reused
 * page leaves the swap cache, since its contents are about to diverge from the
 * slot's. Never a KSM page: do_swap_page() can read one back from the swap cache.
 * do_wp_page() asks with the faulting pte still mapping the page (a count of 1 is
 * that pte); do_swap_page() asks before mapping it (1 is its own swap pte).
 */
export function reuseSwapPage(k: HostKernel, pfn: number): boolean {
  const mem = k.mem;
  if (mem.isKsm(pfn)) return false;
  let count = mem.pageMapcount(pfn);
  if (count <= 1 && (mem.flags[pfn]! & PG_SWAPCACHE) !== 0) {
    const off = mem.private[pfn]!;
    count += k.swap!.refs[off]!;
    if (count === 1) {
      deleteFromSwapCache(k, pfn);
      mem.flags[pfn]! |= PG_DIRTY;
    }
  }
  return count <= 1;
}

/** delete_from_swap_cache(): the page lets go of its slot and the cache's reference. */
export function deleteFromSwapCache(k: HostKernel, pfn: number): void {
  const mem = k.mem;
  assert((mem.flags[pfn]! & PG_SWAPCACHE) !== 0, () => `${mem.describe(pfn)} is not in the swap cache`);
  const off = mem.private[pfn]!;
  mem.flags[pfn]! &= ~PG_SWAPCACHE;
  mem.private[pfn] = 0;
  k.swap!.dropCache(off);
  mem.putPage(pfn);
}

/**
 * do_wp_page(): a write to a write-protected pte. An anonymous page that is not a
 * KSM page and is ours alone is reused; everything else (the zero page, a page
 * shared by fork, a KSM page — always) is copied.
 */
export function doWpPage(k: HostKernel, vma: Vma, addr: number, pte: number): number {
  const mem = k.mem;
  const mm = vma.mm;
  const writable = (vma.flags & VM_WRITE) !== 0;
  const old = ptePayload(pte);
  const special = (pte & PTE_SPECIAL) !== 0;
  if (!special && (mem.flags[old]! & (PG_ANON | PG_KSM)) === PG_ANON && (mem.flags[old]! & PG_LOCKED) === 0) {
    if (reuseSwapPage(k, old)) {
      mm.setPte(addr, pteSet(pte, PTE_YOUNG | (writable ? PTE_WRITE | PTE_DIRTY : 0)));
      if (!writable) mem.flags[old]! |= PG_DIRTY;
      return VM_FAULT_WRITE;
    }
  }
  if (!special && (mem.flags[old]! & PG_SHMEM) !== 0) {
    // A shared mapping is never copied: the write just needs the pte writable.
    mm.setPte(addr, pteSet(pte, PTE_YOUNG | (writable ? PTE_WRITE | PTE_DIRTY : 0)));
    return VM_FAULT_WRITE;
  }
  // do_huge_pmd_wp_page(): a THP that must be copied (fork shares it) is split
  // into small pages first, and the small page at addr is copied.
  if (!special && isThpFrame(mem.flags, old)) splitHugePmd(k, old);
  anonVmaPrepare(vma);
  // Hold the old page across the allocation: reclaim may run inside it.
  if (!special) mem.getPage(old);
  const pfn = allocPage(k, special, mm.node);
  if (pfn < 0) {
    if (!special) mem.putPage(old);
    return VM_FAULT_OOM;
  }
  if (!special) mem.copyPage(pfn, old);
  // Reclaim inside the allocation may have swapped this very pte out: then back
  // out and let the caller fault again (the pte_same() check).
  if (pteClear(mm.getPte(addr), PTE_YOUNG | PTE_DIRTY) !== pteClear(pte, PTE_YOUNG | PTE_DIRTY)) {
    mem.putPage(pfn);
    if (!special) mem.putPage(old);
    return VM_FAULT_MINOR;
  }
  k.vmstat.cow_faults++;
  // wp_page_copy(): the zero page's pte is going; KSM uncounts it if it mapped it there.
  if (special && k.ksm !== null) k.ksm.mightUnmapZeroPage(mm, pte);
  mm.setPte(addr, mkPte(pfn, PTE_YOUNG | (writable ? PTE_WRITE | PTE_DIRTY : 0)));
  if (!writable) mem.flags[pfn]! |= PG_DIRTY;
  pageAddNewAnonRmap(k, pfn, vma, addr);
  if (!special) {
    pageRemoveRmap(k, old);
    if ((mem.flags[old]! & PG_MLOCKED) !== 0 && (vma.flags & VM_LOCKED) !== 0) munlockVmaPage(k, old, vma);
    mem.putPage(old); // the pte's reference
    mem.putPage(old); // ours
  }
  return VM_FAULT_WRITE;
}

/**
 * zap_pte_range() over [start, end) of one area: drop every mapping, swap
 * reference and migration-free pte; free page tables left empty.
 */
export function zapRange(k: HostKernel, vma: Vma, start: number, end: number): void {
  const mem = k.mem;
  const mm = vma.mm;
  // zap_huge_pmd() takes a THP whole; one covered in part is split first.
  if (k.thp !== null) splitHugeForRange(k, mm, start, end);
  mm.forEachPte(start, end, (addr, pte, table, slot) => {
    table[slot] = PTE_NONE;
    switch (pte & PTE_KIND_MASK) {
      case PTE_PRESENT: {
        if ((pte & PTE_SPECIAL) !== 0) {
          // No normal page (the zero page): KSM uncounts it if it mapped it there.
          if (k.ksm !== null) k.ksm.mightUnmapZeroPage(mm, pte);
          return;
        }
        const pfn = ptePayload(pte);
        if ((pte & PTE_DIRTY) !== 0) mem.flags[pfn]! |= PG_DIRTY;
        pageRemoveRmap(k, pfn);
        if ((vma.flags & VM_LOCKED) !== 0) munlockVmaPage(k, pfn, vma);
        // free_page_and_swap_cache() → free_swap_cache(): the last mapping of a
        // swap-cache page whose slot no swap pte needs takes the swap cache with it;
        // otherwise page and slot would linger until reclaim happened to find them.
        if ((mem.flags[pfn]! & (PG_SWAPCACHE | PG_LOCKED)) === PG_SWAPCACHE && mem.mapcount[pfn] === -1) tryToFreeSwap(k, pfn);
        mem.putPage(pfn);
        return;
      }
      case PTE_SWAP:
        freeSwapAndCache(k, ptePayload(pte));
        return;
      case PTE_MIGRATION:
        bug(`zap of a migration entry at ${mm.owner} ${addr}`);
        return;
      default:
        bug(`zap of unknown pte ${pte} at ${addr}`);
    }
  });
  mm.freePgtables(start, end);
}

/** Release the area's hold on its anon_vma or shmem file (unlink_anon_vmas / fput). */
export function unlinkVma(k: HostKernel, vma: Vma): void {
  if (vma.anonVma !== null) vma.anonVma.unlink(vma);
  if (vma.shmem !== null) releaseShmem(k, vma.shmem);
}

function releaseShmem(k: HostKernel, file: ShmemFile): void {
  if (--file.users > 0) return;
  for (const pfn of file.pages.values()) {
    k.mem.setMapping(pfn, null);
    k.mem.flags[pfn]! &= ~PG_SHMEM;
    k.mem.putPage(pfn);
  }
  file.pages.clear();
}

/**
 * copy_page_range() for fork: the child maps every page the parent maps; private
 * writable mappings are write-protected in both, so the first write copies.
 * Shared areas are not copied (the child faults them from the shared file), as
 * Linux skips areas without anon_vma.
 */
export function copyPageRange(k: HostKernel, dst: MmStruct, src: MmStruct, vma: Vma): void {
  if (vma.anonVma === null) return;
  const mem = k.mem;
  const cow = (vma.flags & (VM_SHARED | VM_MAYWRITE)) === VM_MAYWRITE;
  src.forEachPte(vma.start, vma.end, (addr, pte, table, slot) => {
    let child = pte;
    switch (pte & PTE_KIND_MASK) {
      case PTE_PRESENT: {
        if ((pte & PTE_SPECIAL) === 0) {
          const pfn = ptePayload(pte);
          mem.getPage(pfn);
          pageDupRmap(k, pfn);
        }
        if (cow && (pte & PTE_WRITE) !== 0) {
          table[slot] = pteClear(pte, PTE_WRITE);
          child = pteClear(pte, PTE_WRITE);
        }
        child &= ~PTE_YOUNG;
        break;
      }
      case PTE_SWAP:
        k.swap!.duplicate(ptePayload(pte));
        break;
      case PTE_MIGRATION:
        bug(`fork met a migration entry at ${src.owner} ${addr}`);
        break;
      default:
        bug(`fork met an unknown pte ${pte}`);
    }
    dst.setPte(addr, child);
  });
}
