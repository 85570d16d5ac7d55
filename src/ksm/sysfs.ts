import { KernelError } from '../lib/errors.js';
import type { Sysfs } from '../mm/sysfs.js';
import { parseUintKnob, strictStrtoul } from '../mm/sysfs.js';
import { KSM_RUN_UNMERGE, type Ksm } from './ksm.js';

export const KSM_SYSFS_DIR = '/sys/kernel/mm/ksm';

/**
 * The files of /sys/kernel/mm/ksm as 2.6.33 has them: four knobs (0644) and five
 * statistics (0444). Every show() ends in a newline, as sprintf("%u\n") does.
 */
export function registerKsmSysfs(sysfs: Sysfs, ksm: Ksm): void {
  const dir = KSM_SYSFS_DIR;
  sysfs.register(`${dir}/sleep_millisecs`, {
    show: () => `${ksm.sleepMillisecs}\n`,
    store: (v) => {
      ksm.sleepMillisecs = parseUintKnob('sleep_millisecs', v);
    },
  });
  sysfs.register(`${dir}/pages_to_scan`, {
    show: () => `${ksm.pagesToScan}\n`,
    store: (v) => {
      ksm.pagesToScan = parseUintKnob('pages_to_scan', v);
    },
  });
  sysfs.register(`${dir}/run`, {
    show: () => `${ksm.run}\n`,
    store: (v) => {
      const flags = parseUintKnob('run', v);
      if (flags > KSM_RUN_UNMERGE) throw new KernelError('EINVAL', `run: ${flags} is not 0 (stop), 1 (merge) or 2 (unmerge)`);
      if (ksm.offlineLock) throw new KernelError('EBUSY', 'run: memory is going offline');
      ksm.setRun(flags);
    },
  });
  sysfs.register(`${dir}/max_kernel_pages`, {
    show: () => `${ksm.maxKernelPages}\n`,
    store: (v) => {
      // Only strict_strtoul here: any unsigned long is accepted.
      ksm.maxKernelPages = strictStrtoul('max_kernel_pages', v);
    },
  });
  sysfs.register(`${dir}/pages_shared`, { show: () => `${ksm.pagesShared}\n` });
  sysfs.register(`${dir}/pages_sharing`, { show: () => `${ksm.pagesSharing}\n` });
  sysfs.register(`${dir}/pages_unshared`, { show: () => `${ksm.pagesUnshared}\n` });
  sysfs.register(`${dir}/pages_volatile`, { show: () => `${ksm.pagesVolatile}\n` });
  sysfs.register(`${dir}/full_scans`, { show: () => `${ksm.seqnr}\n` });
}
