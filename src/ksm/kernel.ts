import { InvariantError, KernelError } from '../lib/errors.js';
import { checkKnownKeys, checkOptions, describe } from '../lib/validate.js';
import { MEM_CANCEL_OFFLINE, MEM_GOING_OFFLINE, MEM_OFFLINE } from '../mm/hotplug.js';
import type { Process } from '../mm/process.js';
import { DevKsm, type DevKsmState } from './devksm.js';
import { HostKernel, type KernelOptions } from '../mm/kernel.js';
import { decodeKernelImage, restoreKernelImage, saveKernelImage, type KernelImage } from '../mm/snapshot.js';
import { checkKsmInvariants } from './check.js';
import { Ksm } from './ksm.js';
import { Ksmd } from './ksmd.js';
import { DEFAULT_KERNEL_VERSION, kernelProfile, type KernelVersion } from './profile.js';
import { formatKsmStat, type KsmProcessStats, type KsmStats } from './stats.js';
import { KSM_IMAGE_CHECKER, decodedKsmVersion, ksmImagePart } from './snapshot.js';
import { registerKsmSysfs } from './sysfs.js';
import { readKsmWork, type KsmWorkCounts } from './work.js';

/** The options of a kernel with KSM: the mm's, and which kernel version KSM behaves as. */
export interface KsmKernelOptions extends Omit<KernelOptions, 'thp'> {
  /**
   * The kernel version whose KSM this is (src/ksm/profile.ts): '2.6.33' (the
   * default) or '6.18'; anything else is EINVAL. Chosen here, on the KSM side: the
   * mm underneath is the same for every version.
   */
  version?: string;
}

const KSM_KERNEL_OPTIONS = ['memoryMiB', 'swapMiB', 'blockMiB', 'seed', 'nodes', 'version'] as const;

/**
 * The host kernel with KSM built in (CONFIG_KSM=y): what `samepage` exports as
 * `Kernel`. ksm_init(): the engine registers with the mm, its sysfs group, the ksmd
 * thread, its memory-hotplug callback, its invariant checker and its part of the
 * kernel's image.
 */
export class Kernel extends HostKernel {
  /** The kernel version KSM behaves as: '2.6.33' or '6.18'. */
  readonly version: KernelVersion;
  /** The KSM engine (mm/ksm.c state): trees, mm_slots, cursor, counters, knobs. */
  readonly ksmEngine: Ksm;
  readonly ksmd: Ksmd;
  /** /dev/ksm's own setting (max_pages_to_merge, which 2.6.33 has no knob for). */
  private readonly devKsmState: DevKsmState;

  constructor(optsIn: KsmKernelOptions = {}) {
    // Refuse bad options and an unknown version before any memory is set up.
    // THP is not among them: the version decides it (none in 2.6.33), so a `thp` the
    // caller passes is refused rather than silently overridden.
    const opts = checkOptions('Kernel options', optsIn) as KsmKernelOptions;
    checkKnownKeys('Kernel options', opts as Record<string, unknown>, KSM_KERNEL_OPTIONS);
    const profile = kernelProfile(opts.version ?? DEFAULT_KERNEL_VERSION);
    const { version: _version, ...mmOpts } = opts;
    super({ ...mmOpts, thp: profile.thp });
    this.version = profile.version;
    const ksm = new Ksm(this, profile);
    this.ksmEngine = ksm;
    this.registerKsm(ksm);
    registerKsmSysfs(this.sysfs, ksm);
    this.ksmd = new Ksmd(this, ksm);
    this.devKsmState = { maxPagesToMerge: 0 };
    this.registerThread(this.ksmd);
    // ksm_memory_callback(), at high priority since it takes ksm_thread_mutex.
    this.registerMemoryNotifier((action, mn) => {
      switch (action) {
        case MEM_GOING_OFFLINE:
          // Keep it simple: lock ksmd and MADV_UNMERGEABLE out while memory goes offline.
          ksm.offlineLock = true;
          break;
        case MEM_OFFLINE:
          // Migration did most of the work; prune stable nodes still pointing into
          // the removed range.
          ksm.pruneStableNodes(mn.startPfn, mn.startPfn + mn.nrPages);
          ksm.offlineLock = false;
          break;
        case MEM_CANCEL_OFFLINE:
          ksm.offlineLock = false;
          break;
        default:
          break;
      }
    }, 100);
    this.registerInvariantChecker('ksm', () => checkKsmInvariants(ksm));
    this.registerImagePart(ksmImagePart(ksm, this.ksmd));
    if (profile.features.procKsmStat) {
      // proc_pid_ksm_stat(), proc_pid_ksm_merging_pages(): files of every live process.
      this.sysfs.registerPattern(/^\/proc\/([1-9][0-9]*)\/(ksm_stat|ksm_merging_pages)$/, (m) => {
        const p = this.processes.get(Number(m[1]));
        if (p === undefined) return null;
        return m[2] === 'ksm_stat'
          ? { show: () => formatKsmStat(ksm.processStats(p.mm)) }
          : { show: () => `${ksm.processStats(p.mm).ksmMergingPages}\n` };
      });
    }
  }

  /**
   * open("/dev/ksm") by process `p`: the 2009 ioctl interface (seed 003) as a
   * compatibility device over the 2.6.33 engine (src/ksm/devksm.ts). A later kernel
   * has no /dev/ksm: ENOENT.
   */
  openDevKsm(p: Process): DevKsm {
    if (this.version !== '2.6.33') throw new KernelError('ENOENT', `/dev/ksm: Linux ${this.version} has no such device (it is the 2009 driver's interface, kept over the 2.6.33 profile)`);
    // The process is looked up by identity before any of its fields is read: anything
    // but a live process of this kernel (null, a number, another kernel's) is ESRCH.
    const pid = typeof p === 'object' && p !== null ? (p as { pid?: unknown }).pid : undefined;
    if (typeof pid !== 'number' || this.processes.get(pid) !== p) throw new KernelError('ESRCH', `/dev/ksm: ${describe(p)} is not a live process of this kernel`);
    if (!p.alive) throw new KernelError('ESRCH', `/dev/ksm: process ${p.name} (pid ${p.pid}) is not alive`);
    return new DevKsm(this.ksmEngine, this.devKsmState, p);
  }

  /** Every KSM statistic now: the record /sys/kernel/mm/ksm shows a part of (src/ksm/stats.ts). */
  ksmStats(): KsmStats {
    return this.ksmEngine.stats();
  }

  /**
   * ksmd's work so far, counted as the kernel does it (src/ksm/work.ts): pages scanned,
   * checksums, tree comparisons and the bytes they read, merges, unmerges, rmap_items
   * made and freed. Not a file of Linux's; src/ksm/cost.ts turns it into CPU time.
   */
  ksmWork(): KsmWorkCounts {
    return readKsmWork(this.ksmEngine);
  }

  /**
   * KSM's view of the process with this pid: the kernel's /proc/<pid>/ksm_stat (in
   * 2.6.33, the fields its engine keeps: its rmap_items and its merging pages).
   * ESRCH for a pid that is not a live process.
   */
  ksmStat(pid: number): KsmProcessStats {
    return this.ksmEngine.processStats(this.liveProcess(pid).mm);
  }
}

// ---- snapshots of the whole kernel --------------------------------------------------------

/** The image parts a Kernel registers, to check an image before any kernel is built. */
const KERNEL_IMAGE_PARTS = [KSM_IMAGE_CHECKER];

/**
 * The whole kernel as a KernelImage of plain data: the mm's state (src/mm/snapshot.ts
 * has the format) with KSM's part (src/ksm/snapshot.ts). Reads the kernel only.
 * Throws KernelError EBUSY while any get_user_pages pin is held.
 */
export function saveKernel(k: Kernel): KernelImage {
  return saveKernelImage(k);
}

/**
 * null when `img` (say, just decoded from a file) can be restored; otherwise what is
 * wrong with it, naming the field: missing, of the wrong type, out of range, or
 * referring to something that is not there.
 */
export function checkKernelImage(img: unknown): string | null {
  const d = decodeKernelImage(img, KERNEL_IMAGE_PARTS);
  return typeof d === 'string' ? d : null;
}

/**
 * A new Kernel, built with the image's options and kernel version, in exactly the saved state: it
 * continues as the saved kernel would have. The image is checked in full first
 * (checkKernelImage), and a bad one throws KernelError EINVAL naming the problem
 * before anything is built. The kernel never shares memory with the image.
 */
export function restoreKernel(img: KernelImage): Kernel {
  const k = restoreUntrustedKernel(img);
  if (typeof k === 'string') throw new KernelError('EINVAL', `bad kernel image: ${k}`);
  return k;
}

/**
 * restoreKernel() for an image not yet checked (say, just decoded from a file): the
 * kernel, or what checkKernelImage() would say is wrong with the image. The image is
 * decoded once; checkKernelImage() then restoreKernel() would check it twice, which
 * for a host of GiBs is about half a second.
 */
export function restoreUntrustedKernel(img: unknown): Kernel | string {
  const d = decodeKernelImage(img, KERNEL_IMAGE_PARTS);
  if (typeof d === 'string') return d;
  // The kernel is built as the version KSM's part names (checked: one there is a profile for).
  const ksmPart = d.parts.find((p) => p.name === 'ksm')!;
  const k = new Kernel({ ...d.options, version: decodedKsmVersion(ksmPart.decoded) });
  // The decoder checks each field's type, range and references; whether the records
  // fit together (every frame's counts, the swap_map, KSM's counters and trees) is
  // what the deep check recounts. A kernel that fails it is never handed out: an image
  // off by one in a count would otherwise restore, and fail later, far from the cause.
  try {
    restoreKernelImage(k, d);
    k.checkInvariants();
  } catch (e) {
    if (e instanceof InvariantError) return `the records do not fit together: ${e.message}`;
    throw e;
  }
  return k;
}
