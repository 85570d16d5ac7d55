import { KernelError, assertNever } from '../lib/errors.js';
import { kstrtobool, kstrtoint, kstrtouint, kstrtoull, sysfsStreq, type KstrtoxResult } from '../lib/kstrtox.js';
import type { Sysfs } from '../mm/sysfs.js';
import { strictStrtoul } from '../mm/sysfs.js';
import { KSM_ADVISOR_NONE, setAdvisorDefaults } from './advisor.js';
import { setKnobField, type Ksm } from './ksm.js';
import { KSM_SYSFS_DIR, type KnobSpec } from './profile.js';
import { removeAllStableNodes } from './stable-tree.js';
import { KSM_STATS } from './stats.js';
import { KSM_RUN_UNMERGE } from './structs.js';

/**
 * The files of /sys/kernel/mm/ksm, as the engine's profile lists them: its knobs
 * (0644: show and store) and its statistics files (0444: show only, so a write is
 * EACCES). Every show() ends in a newline, as sprintf("%u\n") does; advisor_mode
 * lists its choices with the current one in brackets ("[none] scan-time").
 */
export function registerKsmSysfs(sysfs: Sysfs, ksm: Ksm): void {
  for (const knob of ksm.profile.knobs) {
    sysfs.register(`${KSM_SYSFS_DIR}/${knob.file}`, {
      show: () => showKnob(ksm, knob),
      store: (v) => storeKnob(ksm, knob, v),
    });
  }
  for (const f of ksm.profile.statFiles) {
    const spec = KSM_STATS.find((s) => s.name === f.stat)!;
    sysfs.register(`${KSM_SYSFS_DIR}/${f.file}`, { show: () => `${spec.read(ksm)}\n` });
  }
}

function showKnob(ksm: Ksm, knob: KnobSpec): string {
  const v = ksm[knob.field];
  if (knob.choices === null) return `${v}\n`;
  return `${knob.choices.map((c, i) => (i === Number(v) ? `[${c}]` : c)).join(' ')}\n`;
}

/**
 * The knob's store(): parse as its kernel parses, check the limits, then apply. A
 * refused write changes nothing.
 */
function storeKnob(ksm: Ksm, knob: KnobSpec, buf: string): void {
  // A write of no bytes never reaches a 6.x store() (kernfs returns 0 at once).
  // 2.6.33's sysfs did the same, but the 2.6.33 profile keeps the EINVAL it has
  // always answered (README, Differences from Linux).
  if (buf === '' && knob.parse !== 'strict_strtoul') return;
  // pages_to_scan_store() refuses any write, even junk, while an advisor runs.
  if (knob.store === 'pages_to_scan' && ksm.advisorMode !== KSM_ADVISOR_NONE) {
    throw new KernelError('EINVAL', `${knob.file}: the scan-time advisor sets pages_to_scan while advisor_mode is scan-time`);
  }
  const v = parseKnob(knob, buf);
  switch (knob.store) {
    case 'set':
    case 'pages_to_scan':
      setKnobField(ksm, knob.field, v);
      return;
    case 'sleep': {
      // sleep_millisecs_store() wakes ksmd from its nap (ksm_iter_wait); ksmd goes
      // back to sleep only if the value it napped with is still the knob's.
      const changed = Number(v) !== ksm.sleepMillisecs;
      setKnobField(ksm, knob.field, v);
      if (changed) ksm.onSleepChanged();
      return;
    }
    case 'run': {
      const flags = Number(v);
      if (flags > KSM_RUN_UNMERGE) throw new KernelError('EINVAL', `${knob.file}: ${flags} is not 0 (stop), 1 (merge) or 2 (unmerge)`);
      if (ksm.offlineLock) throw new KernelError('EBUSY', `${knob.file}: memory is going offline`);
      ksm.setRun(flags);
      return;
    }
    case 'stable_tree': {
      // max_page_sharing_store(), merge_across_nodes_store(): the same value changes
      // nothing. Another one would reorganise the stable tree: only while no KSM
      // page is shared and every stable node can go.
      if (BigInt(ksm[knob.field] as number) === v) return;
      if (ksm.offlineLock) throw new KernelError('EBUSY', `${knob.file}: memory is going offline`);
      if (ksm.pagesShared !== 0) throw new KernelError('EBUSY', `${knob.file}: ${ksm.pagesShared} KSM pages are shared (write 2 to run first)`);
      if (removeAllStableNodes(ksm) !== 0) throw new KernelError('EBUSY', `${knob.file}: a KSM page is still mapped (write 2 to run first)`);
      setKnobField(ksm, knob.field, v);
      if (knob.field === 'mergeAcrossNodes') ksm.nrNodeIds = v !== 0n ? 1 : ksm.kernel.mem.nrNodes;
      return;
    }
    case 'advisor_mode': {
      const before = ksm.advisorMode;
      setKnobField(ksm, knob.field, v);
      if (ksm.advisorMode !== before) setAdvisorDefaults(ksm);
      return;
    }
    default:
      assertNever(knob.store, 'knob store');
  }
}

/** What a kstrto*() error becomes: EINVAL, or the error itself where the store passes it on. */
function parseError(knob: KnobSpec, buf: string, err: 'EINVAL' | 'ERANGE'): never {
  const code = knob.parseErrors === 'returned' ? err : 'EINVAL';
  const what = err === 'ERANGE' ? `a number too large for ${knob.parse}` : `not a number ${knob.parse} accepts`;
  throw new KernelError(code, `${knob.file}: ${JSON.stringify(buf)} is ${what}`);
}

/**
 * The value written, as the knob's parser reads it, within its limits (EINVAL
 * otherwise), converted as the C variable it lands in converts it.
 */
function parseKnob(knob: KnobSpec, buf: string): bigint {
  let r: KstrtoxResult;
  switch (knob.parse) {
    case 'strict_strtoul':
      r = strictStrtoul(knob.file, buf);
      break;
    case 'kstrtouint':
      r = kstrtouint(buf);
      break;
    case 'kstrtoul':
      r = kstrtoull(buf);
      break;
    case 'kstrtoint':
      r = kstrtoint(buf);
      break;
    case 'kstrtobool':
      r = kstrtobool(buf);
      break;
    case 'sysfs_streq': {
      const i = knob.choices!.findIndex((c) => sysfsStreq(c, buf));
      if (i < 0) throw new KernelError('EINVAL', `${knob.file}: expected one of ${knob.choices!.join(', ')}, got ${JSON.stringify(buf)}`);
      r = BigInt(i);
      break;
    }
    default:
      return assertNever(knob.parse, 'knob parser');
  }
  if (typeof r !== 'bigint') return parseError(knob, buf, r);
  if (r > knob.max) throw new KernelError('EINVAL', `${knob.file}: ${r} is above the largest accepted value ${knob.max}`);
  if (r < knob.min) throw new KernelError('EINVAL', `${knob.file}: ${r} is below the smallest accepted value ${knob.min}`);
  switch (knob.ctype) {
    case 'unsigned int':
      return BigInt.asUintN(32, r);
    case 'unsigned long':
    case 'int':
    case 'bool':
    case 'enum':
      return r;
    default:
      return assertNever(knob.ctype, 'knob C type');
  }
}
