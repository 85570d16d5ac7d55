import { KernelError, assertNever } from '../lib/errors.js';
import type { Sysfs } from '../mm/sysfs.js';
import { strictStrtoul } from '../mm/sysfs.js';
import type { Ksm } from './ksm.js';
import { KSM_SYSFS_DIR, type KnobSpec } from './profile.js';
import { KSM_STATS } from './stats.js';
import { KSM_RUN_UNMERGE } from './structs.js';

/**
 * The files of /sys/kernel/mm/ksm, as the engine's profile lists them: its knobs
 * (0644: show and store) and its statistics files (0444: show only, so a write is
 * EACCES). Every show() ends in a newline, as sprintf("%u\n") does.
 */
export function registerKsmSysfs(sysfs: Sysfs, ksm: Ksm): void {
  for (const knob of ksm.profile.knobs) {
    sysfs.register(`${KSM_SYSFS_DIR}/${knob.file}`, {
      show: () => `${ksm[knob.field]}\n`,
      store: (v) => storeKnob(ksm, knob, v),
    });
  }
  for (const f of ksm.profile.statFiles) {
    const spec = KSM_STATS.find((s) => s.name === f.stat)!;
    sysfs.register(`${KSM_SYSFS_DIR}/${f.file}`, { show: () => `${spec.read(ksm)}\n` });
  }
}

/**
 * The knob's store(): parse as its kernel parses, check the limits, then apply. A
 * refused write changes nothing.
 */
function storeKnob(ksm: Ksm, knob: KnobSpec, buf: string): void {
  const v = parseKnob(knob, buf);
  switch (knob.store) {
    case 'set':
      if (knob.field === 'maxKernelPages') ksm.maxKernelPages = v;
      else ksm[knob.field] = Number(v);
      return;
    case 'run': {
      const flags = Number(v);
      if (flags > KSM_RUN_UNMERGE) throw new KernelError('EINVAL', `${knob.file}: ${flags} is not 0 (stop), 1 (merge) or 2 (unmerge)`);
      if (ksm.offlineLock) throw new KernelError('EBUSY', `${knob.file}: memory is going offline`);
      ksm.setRun(flags);
      return;
    }
    default:
      assertNever(knob.store, 'knob store');
  }
}

/** The value written, as the knob's parser reads it, within its limits (EINVAL otherwise). */
function parseKnob(knob: KnobSpec, buf: string): bigint {
  switch (knob.parse) {
    case 'strict_strtoul': {
      const v = strictStrtoul(knob.file, buf);
      if (v > knob.max) throw new KernelError('EINVAL', `${knob.file}: ${v} is above the largest accepted value ${knob.max}`);
      if (v < knob.min) throw new KernelError('EINVAL', `${knob.file}: ${v} is below the smallest accepted value ${knob.min}`);
      return v;
    }
    default:
      return assertNever(knob.parse, 'knob parser');
  }
}
