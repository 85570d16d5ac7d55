/**
 * Where the mm calls KSM (src/mm/ksm-ops.ts): a recording KsmOps registered on a bare
 * host kernel shows each hook called at the place Linux calls it, with what Linux
 * passes; the 2.6.33 engine's answers to the hooks 2.6.33 does not have come last.
 */
import { describe, expect, it } from 'vitest';
import { Kernel, PAGE_SIZE } from '../../src/index.js';
import { PTE_SPECIAL, VM_MERGEABLE, ptePayload } from '../../src/mm/constants.js';
import { HostKernel } from '../../src/mm/kernel.js';
import type { KsmAdvice, KsmOps, PrctlOption } from '../../src/mm/ksm-ops.js';
import type { MmStruct } from '../../src/mm/mm.js';
import type { RmapWalkControl } from '../../src/mm/rmap.js';
import type { Vma } from '../../src/mm/vma.js';
import { expectErr, reclaimAll } from './helpers.js';

/** A KsmOps that writes down every call; `mergeAny` makes vmaFlags() add VM_MERGEABLE, as whole-process merging would. */
class RecordingKsm implements KsmOps {
  readonly calls: string[] = [];
  mergeAny = false;
  constructor(private readonly k: HostKernel) {}
  madvise(_vma: Vma, _start: number, _end: number, advice: KsmAdvice, vmFlags: number): number {
    this.calls.push(`madvise ${advice}`);
    return advice === 'MADV_MERGEABLE' ? vmFlags | VM_MERGEABLE : vmFlags & ~VM_MERGEABLE;
  }
  fork(mm: MmStruct, oldmm: MmStruct): void {
    this.calls.push(`fork ${oldmm.owner} -> ${mm.owner}`);
  }
  exit(mm: MmStruct): void {
    this.calls.push(`exit ${mm.owner}`);
  }
  prctl(mm: MmStruct, option: PrctlOption, arg2: number, arg3: number, arg4: number, arg5: number): number {
    this.calls.push(`prctl ${mm.owner} ${option} ${arg2} ${arg3} ${arg4} ${arg5}`);
    return 7;
  }
  vmaFlags(mm: MmStruct, vmFlags: number): number {
    this.calls.push(`vmaFlags ${mm.owner}`);
    return this.mergeAny ? vmFlags | VM_MERGEABLE : vmFlags;
  }
  mightUnmapZeroPage(mm: MmStruct, pte: number): void {
    const zero = ptePayload(pte) === this.k.mem.zeroPfn && (pte & PTE_SPECIAL) !== 0;
    this.calls.push(`mightUnmapZeroPage ${mm.owner}${zero ? ' zero' : ''}`);
  }
  mightNeedToCopy(pfn: number, vma: Vma, addr: number): number {
    this.calls.push(`mightNeedToCopy ${vma.mm.owner} 0x${addr.toString(16)}`);
    return pfn;
  }
  rmapWalk(_pfn: number, _rwc: RmapWalkControl): number {
    throw new Error('no KSM page exists here');
  }
  migratePage(): void {
    throw new Error('no KSM page exists here');
  }
}

function recorded(swapMiB = 0): { k: HostKernel; ksm: RecordingKsm } {
  const k = new HostKernel({ memoryMiB: 64, blockMiB: 16, swapMiB });
  const ksm = new RecordingKsm(k);
  k.registerKsm(ksm);
  return { k, ksm };
}

describe('the hooks the mm calls', () => {
  it('mmap asks ksm_vma_flags() for each new area, before making it', () => {
    const { k, ksm } = recorded();
    const p = k.spawn('p');
    const a = p.mmap(2 * PAGE_SIZE);
    expect(ksm.calls).toEqual(['vmaFlags p']);
    expect(p.maps()[0]!.mergeable).toBe(false);
    ksm.mergeAny = true;
    const b = p.mmap(2 * PAGE_SIZE);
    expect(ksm.calls).toEqual(['vmaFlags p', 'vmaFlags p']);
    // The new area is born VM_MERGEABLE, so it does not merge with its plain neighbour.
    expect(p.maps().map((m) => [m.start, m.mergeable])).toEqual([
      [b, true],
      [a, false],
    ]);
  });

  it('zapping or copying a zero-page pte calls ksm_might_unmap_zero_page(); a normal page does not', () => {
    const { k, ksm } = recorded();
    const p = k.spawn('p');
    const addr = p.mmap(3 * PAGE_SIZE);
    p.read(addr, 3 * PAGE_SIZE); // three zero-page ptes
    p.write(addr + 2 * PAGE_SIZE, new Uint8Array([1])); // wp_page_copy() from the zero page
    expect(ksm.calls.slice(1)).toEqual(['mightUnmapZeroPage p zero']);
    p.munmap(addr + PAGE_SIZE, 2 * PAGE_SIZE); // one zero page, one normal page
    expect(ksm.calls.slice(1)).toEqual(['mightUnmapZeroPage p zero', 'mightUnmapZeroPage p zero']);
    p.exit(); // the last zero page
    expect(ksm.calls.slice(1)).toEqual(['mightUnmapZeroPage p zero', 'mightUnmapZeroPage p zero', 'mightUnmapZeroPage p zero']);
  });

  it('a swap-in asks ksm_might_need_to_copy() for the page it is about to map', () => {
    const { k, ksm } = recorded(64);
    const p = k.spawn('p');
    const addr = p.mmap(2 * PAGE_SIZE);
    p.memset(addr, 0x41, 2 * PAGE_SIZE);
    expect(reclaimAll(k)).toBe(2);
    ksm.calls.length = 0;
    expect(p.read(addr + PAGE_SIZE, 1)).toEqual(new Uint8Array([0x41]));
    expect(ksm.calls).toEqual([`mightNeedToCopy p 0x${(addr + PAGE_SIZE).toString(16)}`]);
  });

  it('prctl() passes the memory-merge options and their arguments through, and checks them first', () => {
    const { k, ksm } = recorded();
    const p = k.spawn('p');
    expect(p.prctl('PR_SET_MEMORY_MERGE', 1)).toBe(7);
    expect(p.prctl('PR_GET_MEMORY_MERGE', 0, 0, 0, 0)).toBe(7);
    expect(ksm.calls).toEqual(['prctl p PR_SET_MEMORY_MERGE 1 0 0 0', 'prctl p PR_GET_MEMORY_MERGE 0 0 0 0']);
    expectErr(() => p.prctl('PR_SET_NAME' as PrctlOption, 1), 'EINVAL');
    expectErr(() => p.prctl('PR_SET_MEMORY_MERGE', -1), 'EINVAL');
    expectErr(() => p.prctl('PR_SET_MEMORY_MERGE', 1, 0.5), 'EINVAL');
    expect(ksm.calls).toHaveLength(2);
    p.exit();
    expectErr(() => p.prctl('PR_GET_MEMORY_MERGE'), 'ESRCH');
  });

  it('without KSM (CONFIG_KSM=n) the memory-merge prctls are EINVAL', () => {
    const k = new HostKernel({ memoryMiB: 64, blockMiB: 16 });
    const e = expectErr(() => k.spawn('p').prctl('PR_SET_MEMORY_MERGE', 1), 'EINVAL');
    expect(e.message).toBe('EINVAL: prctl(PR_SET_MEMORY_MERGE) needs KSM, and this kernel has none (CONFIG_KSM=n)');
  });
});

describe("2.6.33's answers to the hooks it does not have", () => {
  it('prctl(PR_SET_MEMORY_MERGE / PR_GET_MEMORY_MERGE) is EINVAL: the option is unknown to 2.6.33', () => {
    const k = new Kernel({ memoryMiB: 64, blockMiB: 16 });
    const p = k.spawn('p');
    const e = expectErr(() => p.prctl('PR_SET_MEMORY_MERGE', 1), 'EINVAL');
    expect(e.message).toBe('EINVAL: prctl(PR_SET_MEMORY_MERGE): Linux 2.6.33 has no such option (whole-process merging came later)');
    expectErr(() => p.prctl('PR_GET_MEMORY_MERGE'), 'EINVAL');
  });

  it('a new area is not mergeable, even next to a mergeable one (no whole-process merging)', () => {
    const k = new Kernel({ memoryMiB: 64, blockMiB: 16 });
    const p = k.spawn('p');
    const a = p.mmap(2 * PAGE_SIZE);
    p.madvise(a, 2 * PAGE_SIZE, 'MADV_MERGEABLE');
    const b = p.mmap(2 * PAGE_SIZE);
    expect(p.maps().map((m) => [m.start, m.mergeable])).toEqual([
      [b, false],
      [a, true],
    ]);
    k.checkInvariants();
  });
});
