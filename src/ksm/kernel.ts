import { KernelError } from '../lib/errors.js';
import { MEM_CANCEL_OFFLINE, MEM_GOING_OFFLINE, MEM_OFFLINE } from '../mm/hotplug.js';
import type { Process } from '../mm/process.js';
import { DevKsm, type DevKsmState } from './devksm.js';
import { HostKernel, type KernelOptions } from '../mm/kernel.js';
import { checkKsmInvariants } from './check.js';
import { Ksm } from './ksm.js';
import { Ksmd } from './ksmd.js';
import { DEFAULT_KERNEL_VERSION, kernelProfile, type KernelVersion } from './profile.js';
import { formatKsmStat, type KsmProcessStats, type KsmStats } from './stats.js';
import { registerKsmSysfs } from './sysfs.js';

/** The options of a kernel with KSM: the mm's, and which kernel version KSM behaves as. */
export interface KsmKernelOptions extends KernelOptions {
  /**
   * The kernel version whose KSM this is (src/ksm/profile.ts): '2.6.33' (the
   * default) or '6.18'; anything else is EINVAL. Chosen here, on the KSM side: the
   * mm underneath is the same for every version.
   */
  version?: string;
}

/**
 * The host kernel with KSM built in (CONFIG_KSM=y): what `samepage` exports as
 * `Kernel`. ksm_init(): the engine registers with the mm, its sysfs group, the ksmd
 * thread, its memory-hotplug callback and its invariant checker.
 */
export class Kernel extends HostKernel {
  /** The kernel version KSM behaves as: '2.6.33' or '6.18'. */
  readonly version: KernelVersion;
  /** The KSM engine (mm/ksm.c state): trees, mm_slots, cursor, counters, knobs. */
  readonly ksmEngine: Ksm;
  readonly ksmd: Ksmd;
  /** /dev/ksm's own setting (max_pages_to_merge, which 2.6.33 has no knob for). */
  private readonly devKsmState: DevKsmState;

  constructor(opts: KsmKernelOptions = {}) {
    // Refuse an unknown version before any memory is set up.
    const profile = kernelProfile(opts.version ?? DEFAULT_KERNEL_VERSION);
    super(opts);
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
    if (!p.alive || this.processes.get(p.pid) !== p) throw new KernelError('ESRCH', `/dev/ksm: process ${p.name} (pid ${p.pid}) is not alive`);
    return new DevKsm(this.ksmEngine, this.devKsmState, p);
  }

  /** Every KSM statistic now: the record /sys/kernel/mm/ksm shows a part of (src/ksm/stats.ts). */
  ksmStats(): KsmStats {
    return this.ksmEngine.stats();
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
