import { InvariantError } from '../lib/errors.js';
import {
  PAGE_SIZE,
  PG_ANON,
  PG_BUDDY,
  PG_KSM,
  PG_LRU,
  PG_OFFLINE,
  PG_RESERVED,
  PG_SHMEM,
  PG_SWAPCACHE,
  PTE_KIND_MASK,
  PTE_MIGRATION,
  PTE_PRESENT,
  PTE_SPECIAL,
  PTE_SWAP,
  decodePte,
  hexAddr,
  ptePayload,
} from './constants.js';
import { CONTENT_ZERO, FILL_CONTENTS } from './contents.js';
import type { HostKernel } from './kernel.js';
import { checkHugeInvariants } from './huge-memory.js';
import type { AnonVma, ShmemFile } from './vma.js';

/**
 * The mm's deep check (kernel.checkInvariants() runs it before the checkers other
 * layers register): recount every frame's references and mappings from the page
 * tables, the swap cache, shmem files and pins, and compare with the metadata;
 * check every mm's areas and every anon_vma, every swap slot, the allocator's free
 * count and the LRU lists. Throws InvariantError naming the first thing that broke.
 */
export function checkMmInvariants(k: HostKernel): void {
  const mem = k.mem;
  const n = mem.nrFrames;
  const mapped = new Int32Array(n);
  const refs = new Int32Array(n);
  const swapRefs = k.swap === null ? null : new Int32Array(k.swap.nrSlots + 1);
  const anonVmas = new Set<AnonVma>();
  const shmems = new Set<ShmemFile>();

  for (const p of k.processes.values()) {
    const mm = p.mm;
    let prevEnd = 0;
    for (const vma of mm.vmas) {
      const where = `${vma}`;
      if (vma.mm !== mm) throw new InvariantError(`${where}: vma.mm is ${vma.mm.owner}`);
      if (vma.start % PAGE_SIZE !== 0 || vma.end % PAGE_SIZE !== 0 || vma.end <= vma.start) {
        throw new InvariantError(`${where}: bad bounds`);
      }
      if (vma.start < prevEnd) throw new InvariantError(`${where}: overlaps or is out of order`);
      prevEnd = vma.end;
      if (vma.anonVma !== null) {
        if (vma.anonVma.freed) throw new InvariantError(`${where}: uses freed anon_vma ${vma.anonVma.id}`);
        if (!vma.anonVma.vmas.includes(vma)) throw new InvariantError(`${where}: not on its anon_vma ${vma.anonVma.id}'s list`);
        anonVmas.add(vma.anonVma);
      }
      if (vma.shmem !== null) shmems.add(vma.shmem);
    }
    // The messages below name the pte as `${where}`; the string is built only when
    // one is thrown (every pte of every process passes here on each check).
    const where = { addr: 0, pte: 0, toString: (): string => `${mm.owner} ${hexAddr(where.addr)} (${decodePte(where.pte)})` };
    mm.forEachPte(0, Number.MAX_SAFE_INTEGER, (addr, pte) => {
      const vma = mm.vmaAt(addr);
      where.addr = addr;
      where.pte = pte;
      if (vma === null) throw new InvariantError(`${where}: pte outside any vma`);
      switch (pte & PTE_KIND_MASK) {
        case PTE_PRESENT: {
          const pfn = ptePayload(pte);
          if (pfn >= n) throw new InvariantError(`${where}: pfn beyond memory`);
          if ((pte & PTE_SPECIAL) !== 0) {
            if (pfn !== mem.zeroPfn) throw new InvariantError(`${where}: special pte not on the zero page`);
            return;
          }
          if ((mem.flags[pfn]! & (PG_BUDDY | PG_OFFLINE)) !== 0) {
            throw new InvariantError(`${where}: maps a free frame: ${mem.describe(pfn)}`);
          }
          mapped[pfn]!++;
          refs[pfn]!++;
          const f = mem.flags[pfn]!;
          if ((f & PG_ANON) !== 0 && (f & PG_KSM) === 0) {
            if (mem.mappingOf(pfn) !== vma.anonVma) {
              throw new InvariantError(`${where}: anon page's anon_vma is not the area's: ${mem.describe(pfn)}`);
            }
            if (vma.addressOf(mem.index[pfn]!) !== addr) {
              throw new InvariantError(`${where}: page index ${mem.index[pfn]} does not map back to this address`);
            }
          } else if ((f & PG_KSM) !== 0) {
            if (vma.anonVma === null) throw new InvariantError(`${where}: KSM page in an area without anon_vma`);
          } else if ((f & PG_SHMEM) === 0) {
            throw new InvariantError(`${where}: maps a page that is neither anon nor shmem: ${mem.describe(pfn)}`);
          }
          return;
        }
        case PTE_SWAP: {
          const off = ptePayload(pte);
          if (swapRefs === null || off < 1 || off > swapRefs.length - 1) throw new InvariantError(`${where}: swap entry with no such slot`);
          swapRefs[off]!++;
          return;
        }
        case PTE_MIGRATION:
          throw new InvariantError(`${where}: migration entry left behind`);
        default:
          throw new InvariantError(`${where}: unknown pte kind`);
      }
    });
  }
  for (const av of anonVmas) {
    for (const vma of av.vmas) {
      if (vma.anonVma !== av) throw new InvariantError(`anon_vma ${av.id} lists ${vma} which uses another anon_vma`);
      if (!vma.mm.vmas.includes(vma)) throw new InvariantError(`anon_vma ${av.id} lists ${vma} which is no longer mapped`);
    }
  }
  for (const sf of shmems) {
    for (const pfn of sf.pages.values()) refs[pfn]!++;
  }
  for (const [pfn, c] of k.pins) refs[pfn]! += c;
  if (k.swap !== null) {
    const sw = k.swap;
    let used = 0;
    for (let off = 1; off <= sw.nrSlots; off++) {
      if (sw.refs[off] !== swapRefs![off]) {
        throw new InvariantError(`swap slot ${off}: swap_map count ${sw.refs[off]} but ${swapRefs![off]} swap ptes`);
      }
      const c = sw.cache[off]!;
      if (c !== -1) {
        refs[c]!++;
        if ((mem.flags[c]! & PG_SWAPCACHE) === 0 || mem.private[c] !== off) {
          throw new InvariantError(`swap slot ${off}: cached by ${mem.describe(c)} which does not point back`);
        }
      }
      if (sw.refs[off]! > 0 || c !== -1) used++;
    }
    if (used !== sw.usedSlots) throw new InvariantError(`swap: ${sw.usedSlots} slots counted in use, ${used} really`);
  }
  // Frames
  let free = 0;
  const lruCount = new Int32Array(3);
  for (let pfn = 0; pfn < n; pfn++) {
    if (mem.untouched(pfn)) {
      // A block never used: every frame free, no metadata yet (physmem.ts initBlock).
      const b = mem.blockOf(pfn);
      if (b.nrFree !== mem.framesIn(b)) throw new InvariantError(`memory block ${b.index} is untouched but counts ${b.nrFree} of ${mem.framesIn(b)} frames free`);
      if (b.online && !b.isolated) free += b.nrFree;
      pfn = b.startPfn + mem.framesIn(b) - 1;
      continue;
    }
    const f = mem.flags[pfn]!;
    if ((f & PG_BUDDY) !== 0) {
      if (mem.count[pfn] !== 0 || mem.mapcount[pfn] !== -1 || mem.mappingOf(pfn) !== null || (f & ~(PG_BUDDY | PG_OFFLINE)) !== 0) {
        throw new InvariantError(`free frame in use: ${mem.describe(pfn)}`);
      }
      if (mem.content[pfn] !== CONTENT_ZERO) throw new InvariantError(`free frame ${mem.describe(pfn)} holds ${mem.store.describe(mem.content[pfn]!)}, not the zero content`);
      const b = mem.blockOf(pfn);
      if (b.online && !b.isolated) free++;
      continue;
    }
    if (pfn === mem.zeroPfn) {
      // Its own reference, plus get_user_pages pins (follow_page() takes a
      // reference on the zero page too); special ptes never count.
      if (mem.count[pfn] !== 1 + refs[pfn]! || mem.mapcount[pfn] !== -1 || (f & PG_RESERVED) === 0) {
        throw new InvariantError(`zero page disturbed: ${mem.describe(pfn)} (expected count ${1 + refs[pfn]!})`);
      }
      continue;
    }
    if (mem.pageMapcount(pfn) !== mapped[pfn]) {
      throw new InvariantError(`${mem.describe(pfn)}: mapcount ${mem.pageMapcount(pfn)} but ${mapped[pfn]} ptes map it`);
    }
    if (mem.count[pfn] !== refs[pfn]) {
      throw new InvariantError(`${mem.describe(pfn)}: count ${mem.count[pfn]} but ${refs[pfn]} references (ptes, swap cache, shmem, pins)`);
    }
    if (refs[pfn] === 0) throw new InvariantError(`${mem.describe(pfn)}: in use with no reference`);
    if ((f & PG_LRU) !== 0) lruCount[mem.lruListOf(pfn)]!++;
  }
  if (free !== mem.nrFreeOnline) throw new InvariantError(`allocator counts ${mem.nrFreeOnline} free frames, ${free} really`);
  // The content store: every content's references are the frames and swap slots naming it.
  const named = new Map<number, number>();
  const name = (c: number): void => {
    if (c >= FILL_CONTENTS) named.set(c, (named.get(c) ?? 0) + 1);
  };
  for (let pfn = 0; pfn < n; pfn++) {
    if (mem.untouched(pfn)) pfn = mem.blockOf(pfn).startPfn + mem.framesIn(mem.blockOf(pfn)) - 1;
    else name(mem.content[pfn]!);
  }
  const swc = k.swap;
  if (swc !== null) for (let off = 1; off <= swc.nrSlots; off++) name(swc.content[off]!);
  mem.store.check(named, (msg) => {
    throw new InvariantError(msg);
  });
  for (let l = 0; l < 3; l++) {
    let walked = 0;
    for (let p = mem.lruHead[l]!; p >= 0; p = mem.lruNext[p]!) {
      if (++walked > n) throw new InvariantError(`LRU list ${l} has a cycle`);
      if ((mem.flags[p]! & PG_LRU) === 0 || mem.lruListOf(p) !== l) throw new InvariantError(`LRU list ${l} holds ${mem.describe(p)}`);
    }
    if (walked !== lruCount[l] || walked !== mem.lruSize[l]) {
      throw new InvariantError(`LRU list ${l}: size ${mem.lruSize[l]}, walked ${walked}, flagged ${lruCount[l]}`);
    }
  }
  checkHugeInvariants(k);
}
