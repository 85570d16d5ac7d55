import { KernelError } from '../lib/errors.js';
import { PAGE_SIZE, PG_ANON, PG_BUDDY, PG_RESERVED, PG_SWAPCACHE } from './constants.js';
import type { HostKernel } from './kernel.js';
import { migratePage, migrationBlocker } from './migrate.js';
import type { MemoryBlock } from './physmem.js';
import { swapOutPage } from './swapops.js';

/** Memory notifier actions (include/linux/memory.h). */
export const MEM_ONLINE = 1 << 0;
export const MEM_GOING_OFFLINE = 1 << 1;
export const MEM_OFFLINE = 1 << 3;
export const MEM_GOING_ONLINE = 1 << 4;
export const MEM_CANCEL_OFFLINE = 1 << 5;

export interface MemoryNotify {
  startPfn: number;
  nrPages: number;
}

export type MemoryNotifier = (action: number, arg: MemoryNotify) => void;

/**
 * Memory hot-remove and hot-add of whole memory blocks (drivers/base/memory.c,
 * mm/memory_hotplug.c, 2.6.33), through the sysfs files Linux has:
 *
 *   /sys/devices/system/memory/block_size_bytes          hex, read-only
 *   /sys/devices/system/memory/memoryN/state             'online' | 'offline'
 *   /sys/devices/system/memory/memoryN/removable         '1' or '0'
 *   /sys/devices/system/memory/memoryN/phys_index        hex block number
 *
 * offline_pages(): isolate the block so nothing new is allocated in it, tell the
 * memory notifiers MEM_GOING_OFFLINE (KSM locks ksmd out), migrate every page in
 * use to another block — or, with no free frame elsewhere, swap it out — then
 * MEM_OFFLINE (KSM prunes stable nodes still pointing into the block) and release
 * the block's frames. If any page cannot leave (pinned, locked, reserved, not
 * movable, no room anywhere) the offline is cancelled: MEM_CANCEL_OFFLINE, the block
 * is un-isolated and stays online, and the caller gets EBUSY. Pages already moved
 * stay where they went: their contents are intact either way.
 */
export const MEMORY_SYSFS_DIR = '/sys/devices/system/memory';

export function registerMemorySysfs(k: HostKernel): void {
  const mem = k.mem;
  k.sysfs.register(`${MEMORY_SYSFS_DIR}/block_size_bytes`, {
    show: () => `${(mem.blockPages * PAGE_SIZE).toString(16)}\n`,
  });
  for (const block of mem.blocks) {
    const dir = `${MEMORY_SYSFS_DIR}/memory${block.index}`;
    k.sysfs.register(`${dir}/state`, {
      show: () => `${block.online ? 'online' : 'offline'}\n`,
      store: (v) => {
        const want = v.endsWith('\n') ? v.slice(0, -1) : v;
        if (want === 'offline') offlineBlock(k, block);
        else if (want === 'online') onlineBlock(k, block);
        else throw new KernelError('EINVAL', `${dir}/state: expected 'online' or 'offline', got ${JSON.stringify(v)}`);
      },
    });
    k.sysfs.register(`${dir}/removable`, { show: () => (isRemovable(k, block) ? '1\n' : '0\n') });
    k.sysfs.register(`${dir}/phys_index`, { show: () => `${block.index.toString(16).padStart(8, '0')}\n` });
  }
}

/** is_mem_section_removable(): every frame free, or an anonymous page that could move. */
function isRemovable(k: HostKernel, block: MemoryBlock): boolean {
  const mem = k.mem;
  if (!block.online) return false;
  if (!block.initialized) return true; // never used: every frame free
  const end = block.startPfn + mem.framesIn(block);
  for (let pfn = block.startPfn; pfn < end; pfn++) {
    const f = mem.flags[pfn]!;
    if ((f & PG_BUDDY) !== 0) continue;
    if ((f & PG_RESERVED) !== 0 || (f & PG_ANON) === 0) return false;
  }
  return true;
}

export function offlineBlock(k: HostKernel, block: MemoryBlock): void {
  const mem = k.mem;
  const where = `memory${block.index}`;
  if (!block.online) throw new KernelError('EINVAL', `${where} is already offline`);
  const arg = { startPfn: block.startPfn, nrPages: mem.framesIn(block) };
  mem.isolateBlock(block);
  k.notifyMemory(MEM_GOING_OFFLINE, arg);
  const end = block.startPfn + mem.framesIn(block);
  let failure: string | null = null;
  for (let pfn = block.startPfn; pfn < end && failure === null; pfn++) {
    if ((mem.flags[pfn]! & PG_BUDDY) !== 0) continue;
    failure = evacuate(k, block, pfn);
  }
  if (failure !== null) {
    mem.unisolateBlock(block);
    k.notifyMemory(MEM_CANCEL_OFFLINE, arg);
    throw new KernelError('EBUSY', `offlining ${where} cancelled: ${failure}`);
  }
  k.notifyMemory(MEM_OFFLINE, arg);
  mem.offlineBlock(block);
}

/** Move one page out of an isolated block. Returns why it cannot leave, or null. */
function evacuate(k: HostKernel, block: MemoryBlock, pfn: number): string | null {
  const mem = k.mem;
  const blocker = migrationBlocker(k, pfn);
  if (blocker !== null) return blocker.why;
  const target = mem.allocFrameOutside(block);
  if (target >= 0) {
    // Migration can still fail after the checks above: a KSM page faulted back from
    // the swap cache by a process that has no rmap_item for it yet is mapped where
    // no rmap walk reaches until ksmd comes round (EAGAIN, everything put back and
    // the target freed). That page cannot leave now: cancel the offline, don't let
    // the error escape with the block isolated and KSM locked out.
    try {
      migratePage(k, pfn, target);
    } catch (e) {
      if (e instanceof KernelError) return e.message;
      throw e;
    }
    return null;
  }
  // No room in any other block: write the page to swap instead.
  if (k.swap === null) return `no free frame outside the block for pfn ${pfn}, and no swap`;
  const ok = swapOutPage(k, pfn);
  if (!ok) return `no free frame outside the block for pfn ${pfn}, and it could not be swapped out${(mem.flags[pfn]! & PG_SWAPCACHE) !== 0 ? '' : ' (swap full?)'}`;
  return null;
}

export function onlineBlock(k: HostKernel, block: MemoryBlock): void {
  if (block.online) throw new KernelError('EINVAL', `memory${block.index} is already online`);
  const arg = { startPfn: block.startPfn, nrPages: k.mem.framesIn(block) };
  k.notifyMemory(MEM_GOING_ONLINE, arg);
  k.mem.onlineBlock(block);
  k.notifyMemory(MEM_ONLINE, arg);
}
