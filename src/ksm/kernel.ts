import { MEM_CANCEL_OFFLINE, MEM_GOING_OFFLINE, MEM_OFFLINE } from '../mm/hotplug.js';
import { HostKernel, type KernelOptions } from '../mm/kernel.js';
import { checkKsmInvariants } from './check.js';
import { Ksm } from './ksm.js';
import { Ksmd } from './ksmd.js';
import { registerKsmSysfs } from './sysfs.js';

/**
 * The host kernel with KSM built in (CONFIG_KSM=y): what `samepage` exports as
 * `Kernel`. ksm_init(): the engine registers with the mm, its sysfs group, the ksmd
 * thread, its memory-hotplug callback and its invariant checker.
 */
export class Kernel extends HostKernel {
  /** The KSM engine (mm/ksm.c state): trees, mm_slots, cursor, counters, knobs. */
  readonly ksmEngine: Ksm;
  readonly ksmd: Ksmd;

  constructor(opts: KernelOptions = {}) {
    super(opts);
    const ksm = new Ksm(this);
    this.ksmEngine = ksm;
    this.registerKsm(ksm);
    registerKsmSysfs(this.sysfs, ksm);
    this.ksmd = new Ksmd(this, ksm);
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
  }
}
