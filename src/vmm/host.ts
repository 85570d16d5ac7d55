import { customRandom, urlAlphabet } from 'nanoid';
import { QEMU_NICS, type QemuNic } from './qemu-blocks.js';
import { Kernel } from '../ksm/kernel.js';
import { DEFAULT_KERNEL_VERSION, KSM_SYSFS_DIR, PROFILE_2_6_33, PROFILE_6_18, kernelProfile, knobFile, type KnobSpec, type KsmKnobField } from '../ksm/profile.js';
import { KernelError, assertNever } from '../lib/errors.js';
import { MAX_WAKEUPS_PER_CALL, UINT_MAX, checkBool, checkCount, checkInt, checkKnownKeys, checkOneOf, checkOptions, checkRecord, checkString, describe } from '../lib/validate.js';
import { checkKernelOptions, checkMergeDomain } from '../mm/kernel.js';
import { Prng } from '../lib/prng.js';
import { PAGE_SIZE } from '../mm/constants.js';
import type { Process } from '../mm/process.js';
import { formatSize } from './config.js';
import { Guest, type GuestSnapshot } from './guest.js';
import { restoreHost, saveHost } from './snapshot.js';
import { SyntheticSource, type GuestImage, type ImageCatalog } from './image.js';
import { pageSourceProblem, type PageSource } from './page-source.js';
import { checkGovernorSnapshot, restoreGovernor, startGovernor, type GovernedPolicy, type GovernorPort, type GovernorSnapshot, type KsmGovernor } from './governor.js';
import { KSMTUNED_DEFAULTS } from './ksmtuned.js';
import { KUBEVIRT_DEFAULTS } from './kubevirt.js';
import { MOM_DEFAULTS } from './mom.js';
import { DEFAULT_KSMD_COSTS, ksmdCpuNs, type KsmdCosts } from '../ksm/cost.js';
import type { GuestSample, HostEventKind, HostSample } from './types.js';
import type { WorkloadSpec } from './workload.js';

/**
 * KSM knobs to write, by the engine's names for them (src/ksm/profile.ts); undefined
 * leaves one alone. Which exist is the kernel's profile's business: 2.6.33 has four,
 * 6.18 thirteen, and a knob the kernel lacks is EINVAL. Values are numbers, as the
 * engine holds them: a bool as 0 or 1, advisor_mode as its index (0 none, 1
 * scan-time).
 */
export type KsmKnobSettings = { [K in KsmKnobField]?: number };

/**
 * How the host runs KSM: knobs written once, or a governor (src/vmm/governor.ts):
 * ksmtuned, oVirt MOM's KSM policy, or KubeVirt's KSM handler.
 */
export type KsmPolicy =
  | {
      policy: 'fixed';
      /** /sys/kernel/mm/ksm/run: 0 stop, 1 merge. */
      run: number;
      pagesToScan: number;
      sleepMillisecs: number;
      /** max_kernel_pages, or null to keep the kernel's default (a quarter of RAM). */
      maxKernelPages: number | null;
      /** Further knobs to write (a later kernel's: max_page_sharing, use_zero_pages, ...). */
      knobs?: KsmKnobSettings;
    }
  | (GovernedPolicy & { maxKernelPages: number | null; knobs?: KsmKnobSettings });

export interface HostOptions {
  memoryMiB: number;
  swapMiB?: number;
  blockMiB?: number;
  seed?: number;
  /** The kernel version whose KSM the host runs: '2.6.33' (the default) or '6.18' (src/ksm/profile.ts). */
  version?: string;
  ksm?: KsmPolicy;
  /** Images that createGuest() can name. */
  images?: ImageCatalog | null;
  /** Granularity of the guests' writes in simulated ms (100). */
  tickMs?: number;
}

export interface CreateGuestOptions {
  name: string;
  /** Its name in the host's catalog, an image descriptor, or any page source (page-source.ts). */
  image: string | GuestImage | PageSource;
  /** With an image name: its version (default: the newest). */
  version?: string;
  memoryMiB: number;
  memMerge?: boolean;
  /** Its KSM merge domain (guest.ts GuestOptions.mergeDomain; default '', the common one). */
  mergeDomain?: string;
  workload?: WorkloadSpec;
  /** Map QEMU's RAM blocks (GuestOptions.qemuBlocks; default: where the kernel has THP) and the NIC. */
  qemuBlocks?: boolean;
  nic?: QemuNic;
}

/** The host's own state as plain data (src/vmm/snapshot.ts packs it with the kernel's). */
export interface HostSnapshot {
  memoryMiB: number;
  swapMiB: number;
  blockMiB: number;
  tickMs: number;
  policy: KsmPolicy;
  governor: GovernorSnapshot | null;
  nextTickAt: number;
  prng: number[];
  idPrng: number[];
  guestsCreated: number;
  hogs: { pid: number; bytes: number }[];
  log: HostEvent[];
  /** Each names its page source (a ref, resolved through a catalog on restore), not the source itself. */
  guests: GuestSnapshot[];
}

/** Something the host did or was asked to do, at simulated time `t`. */
export interface HostEvent {
  t: number;
  kind: HostEventKind;
  /** The guest it concerns, or null (a host process, the governor, memory). */
  guest: string | null;
  what: string;
  error: string | null;
}

/** The ksmd policy a report prints: "fixed: run 1, pages_to_scan 1250, sleep_millisecs 20". */
export function describePolicy(p: KsmPolicy): string {
  const knobs = describeKnobs(p.knobs);
  switch (p.policy) {
    case 'fixed':
      return `fixed: run ${p.run}, pages_to_scan ${p.pagesToScan}, sleep_millisecs ${p.sleepMillisecs}${knobs}`;
    case 'ksmtuned': {
      const c = { ...KSMTUNED_DEFAULTS, ...p.config };
      return `ksmtuned: monitor ${c.monitorInterval}s, npages ${c.npagesMin}..${c.npagesMax} (+${c.npagesBoost}/${c.npagesDecay}), thres ${c.thresCoef}%${knobs}`;
    }
    case 'mom': {
      const c = { ...MOM_DEFAULTS, ...p.config };
      return `mom: policy every ${c.policyEngineInterval}s, npages ${c.npagesMin}..${c.npagesMax} (+${c.pagesBoost}/${c.pagesDecay}), free ${Math.round(c.freePercent * 100)}%${knobs}`;
    }
    case 'kubevirt': {
      const c = { ...KUBEVIRT_DEFAULTS, ...p.config };
      return `kubevirt: every ${c.interval}s, npages ${c.nPagesMin}..${c.nPagesMax} (init ${c.nPagesInit}, +${c.pagesBoost}/${c.pagesDecay}), free ${Math.round(c.freePercent * 100)}%${knobs}`;
    }
    default:
      return assertNever(p, 'KSM policy');
  }
}

const GOVERNED = ['ksmtuned', 'mom', 'kubevirt'] as const;

/**
 * A policy checked, as a fresh record of its own (a caller changing theirs later
 * changes nothing here): the same rules for setPolicy() and for a snapshot's policy
 * (checkHostSnapshot), so a host never takes a policy its snapshot would refuse.
 * The governors' configs are checked field by field when the governor starts
 * (ksmtuned.ts, mom.ts, kubevirt.ts); here, that each is a record.
 */
export function checkKsmPolicy(what: string, pIn: unknown): KsmPolicy {
  const p = checkRecord(what, pIn);
  const maxKernelPages = p.maxKernelPages === undefined || p.maxKernelPages === null ? null : checkCount(`${what}: maxKernelPages`, p.maxKernelPages, UINT_MAX);
  const knobs = p.knobs === undefined ? {} : { knobs: checkKnobSettings(`${what}: knobs`, p.knobs) };
  if (p.policy === 'fixed') {
    checkKnownKeys(what, p, ['policy', 'run', 'pagesToScan', 'sleepMillisecs', 'maxKernelPages', 'knobs']);
    return {
      policy: 'fixed',
      run: checkCount(`${what}: run`, p.run, 2),
      pagesToScan: checkCount(`${what}: pagesToScan`, p.pagesToScan, UINT_MAX),
      sleepMillisecs: checkCount(`${what}: sleepMillisecs`, p.sleepMillisecs, UINT_MAX),
      maxKernelPages,
      ...knobs,
    };
  }
  if (typeof p.policy !== 'string' || !(GOVERNED as readonly string[]).includes(p.policy)) {
    throw new KernelError('EINVAL', `${what}: policy: expected one of fixed, ${GOVERNED.join(', ')}, found ${describe(p.policy)}`);
  }
  checkKnownKeys(what, p, ['policy', 'config', 'maxKernelPages', 'knobs']);
  const config = { ...checkOptions(`${what}: config`, p.config) };
  for (const [k, v] of Object.entries(config)) {
    if (typeof v !== 'number' && typeof v !== 'boolean') throw new KernelError('EINVAL', `${what}: config.${k}: expected a number, found ${describe(v)}`);
  }
  return { policy: p.policy as (typeof GOVERNED)[number], config, maxKernelPages, ...knobs } as KsmPolicy;
}

/**
 * KsmKnobSettings checked as a record: each key a knob some profile has, each value a
 * whole number (undefined: left alone). Whether this kernel has the knob, and what its
 * file takes, the file's own parser (src/ksm/profile.ts) decides as it is written:
 * writeKnobs() refuses the whole set before, or undoes it after, any refusal.
 */
export function checkKnobSettings(what: string, kIn: unknown): KsmKnobSettings {
  const k = checkRecord(what, kIn);
  checkKnownKeys(what, k, KNOB_FIELDS);
  const out: KsmKnobSettings = {};
  for (const [field, v] of Object.entries(k)) {
    if (v === undefined) continue;
    // The range the knob's own spec accepts (a choice: one of its words, by index).
    const spec = KNOB_SPECS.get(field)!;
    const max = spec.choices === null ? spec.max : BigInt(spec.choices.length - 1);
    const n = checkCount(`${what}: ${field}`, v, Number.MAX_SAFE_INTEGER);
    if (BigInt(n) < spec.min || BigInt(n) > max) throw new KernelError('EINVAL', `${what}: ${field}: expected ${spec.min} to ${max} (${spec.file}), found ${n}`);
    out[field as KsmKnobField] = n;
  }
  return out;
}

/** Every knob of any profile by field (2.6.33's max_kernel_pages, 6.18's thirteen; a field both have, as 6.18 takes it). */
const KNOB_SPECS: ReadonlyMap<string, KnobSpec> = new Map([...PROFILE_2_6_33.knobs, ...PROFILE_6_18.knobs].map((k) => [k.field, k]));
const KNOB_FIELDS: readonly string[] = [...KNOB_SPECS.keys()];

/**
 * ", max_page_sharing 2, use_zero_pages 1": a policy's further knobs by their file
 * names, in the 6.18 profile's order ('' for none, so a policy without them prints
 * as it always did).
 */
function describeKnobs(knobs: KsmKnobSettings | undefined): string {
  if (knobs === undefined) return '';
  const parts: string[] = [];
  for (const spec of PROFILE_6_18.knobs) {
    const v = knobs[spec.field];
    if (v !== undefined) parts.push(`${spec.file} ${spec.choices === null ? v : (spec.choices[v] ?? v)}`);
  }
  return parts.length === 0 ? '' : `, ${parts.join(', ')}`;
}

/** The boot-time knobs of 2.6.33: run 0, pages_to_scan 100, sleep_millisecs 20. */
export const DEFAULT_KSM_POLICY: KsmPolicy = { policy: 'fixed', run: 0, pagesToScan: 100, sleepMillisecs: 20, maxKernelPages: null };

/**
 * A VM host: a simulated Linux kernel with KSM (RAM, swap, ksmd), its KVM-like
 * guests, and simulated time.
 *
 * Time moves only in advance(ms). Guests act on a fixed grid of `tickMs`: at each
 * grid point t the ksmtuned governor adjusts (when due), then every guest does its
 * writes for [t, t + tickMs); between grid points the kernel runs ksmd and anything
 * else due. advance(ms) covers [now, now + ms): a grid point at its end waits for
 * the next call. Because the grid is absolute, how a caller splits advance() calls never
 * changes what happens: advance(1000) equals ten advance(100).
 *
 * When a guest's write finds no memory (RAM and swap full), the host does what the
 * OOM killer would: it kills the process with the most memory (resident plus
 * swapped), a guest's QEMU or a pressure process, and logs it.
 */
/** A guest's name: what a snapshot, a scenario file and the log can carry as it is. */
export const GUEST_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** The most RAM a guest may ask for: its bytes a safe integer (more than fits an address space: ENOMEM at start). */
const MAX_GUEST_MIB = 2 ** 33 - 1;

export class Host {
  readonly kernel: Kernel;
  readonly images: ImageCatalog | null;
  readonly tickMs: number;
  readonly memoryMiB: number;
  readonly swapMiB: number;
  readonly blockMiB: number;
  /** Every guest created and not destroyed, in creation order. */
  readonly guests: Guest[];
  /** What happened, in order. */
  readonly log: HostEvent[];
  policy: KsmPolicy;
  /** The governor while the policy is one (ksmtuned, mom, kubevirt). */
  governor: KsmGovernor | null;
  private nextTickAt: number;
  private readonly prng: Prng;
  /** Draws the guests' nanoids. */
  private readonly idPrng: Prng;
  private readonly newId: () => string;
  /** Host processes allocating memory (pressure events). */
  private readonly hogs: { proc: Process; bytes: number }[];
  private guestsCreated: number;
  /** What a governor sees of this host: meminfo, the qemu processes, the KSM files. */
  private readonly port: GovernorPort;

  /** `restoredKernel` is for snapshots only: the host adopts it instead of booting a new kernel. */
  constructor(optsIn: HostOptions, restoredKernel: Kernel | null = null) {
    // Everything checked before the kernel boots: the kernel's own options by the
    // kernel's rules, then the host's.
    const opts = checkRecord('Host options', optsIn) as unknown as HostOptions;
    checkKnownKeys('Host options', opts as unknown as Record<string, unknown>, ['memoryMiB', 'swapMiB', 'blockMiB', 'seed', 'version', 'ksm', 'images', 'tickMs']);
    if (opts.memoryMiB === undefined) throw new KernelError('EINVAL', 'Host options: memoryMiB: expected the RAM in MiB, found undefined');
    const ko = checkKernelOptions({ memoryMiB: opts.memoryMiB, swapMiB: opts.swapMiB, blockMiB: opts.blockMiB, seed: opts.seed });
    // kernelProfile() is the one judge of a version, here as in a snapshot's KSM part.
    const version = kernelProfile(opts.version ?? DEFAULT_KERNEL_VERSION).version;
    const tickMs = opts.tickMs === undefined ? 100 : checkInt('Host options: tickMs', opts.tickMs, 1, 24 * 3600 * 1000);
    const images = opts.images ?? null;
    if (images !== null && (typeof images !== 'object' || typeof (images as ImageCatalog).source !== 'function')) {
      throw new KernelError('EINVAL', `Host options: images: expected an image catalog or null, found ${describe(images)}`);
    }
    const policy = checkKsmPolicy('Host options: ksm', opts.ksm ?? DEFAULT_KSM_POLICY);
    this.memoryMiB = ko.memoryMiB;
    this.swapMiB = ko.swapMiB;
    this.blockMiB = ko.blockMiB;
    const seed = ko.seed;
    this.kernel = restoredKernel ?? new Kernel({ memoryMiB: ko.memoryMiB, swapMiB: ko.swapMiB, blockMiB: ko.blockMiB, seed, version });
    this.images = images;
    this.tickMs = tickMs;
    this.guests = [];
    this.log = [];
    // The host's own randomness is separate from the kernel's, so guest activity
    // never shifts what the kernel draws.
    this.prng = new Prng(seed).fork(0x766d6d);
    const idPrng = this.prng.fork(0x6964);
    this.idPrng = idPrng;
    this.newId = customRandom(urlAlphabet, 12, (bytes) => {
      const out = new Uint8Array(bytes);
      for (let i = 0; i < bytes; i++) out[i] = idPrng.nextU32() & 0xff;
      return out;
    });
    this.hogs = [];
    this.guestsCreated = 0;
    this.policy = DEFAULT_KSM_POLICY;
    this.governor = null;
    this.nextTickAt = 0;
    this.port = {
      meminfo: () => this.kernel.meminfo(),
      qemuProcesses: () => this.qemuProcesses(),
      readKsm: (file) => Number(this.kernel.sysfs.read(`${KSM_SYSFS_DIR}/${file}`)),
      writeKsm: (file, value) => this.kernel.sysfs.write(`${KSM_SYSFS_DIR}/${file}`, String(value)),
    };
    if (restoredKernel === null) this.setPolicy(policy);
    else this.policy = policy;
  }

  get now(): number {
    return this.kernel.now;
  }

  private note(kind: HostEventKind, guest: string | null, what: string, error: string | null = null): void {
    this.log.push({ t: this.now, kind, guest, what, error });
  }

  // ---- KSM policy ----------------------------------------------------------------------------

  /**
   * Apply a policy now: fixed knobs are written at once; a governor starts as its
   * daemon does (ksmtuned first adjusts one monitor interval from now, MOM samples at
   * once and evaluates its policy later, KubeVirt's handler spins at once). A policy
   * refused (EINVAL) changes nothing.
   */
  setPolicy(pIn: KsmPolicy): void {
    const p = checkKsmPolicy('setPolicy', pIn);
    const maxKernelPages = p.maxKernelPages ?? undefined;
    // A knob the kernel lacks (max_kernel_pages on 6.18) is refused before a governor starts.
    if (maxKernelPages !== undefined) knobFile(this.kernel.ksmEngine.profile, 'maxKernelPages');
    if (p.policy === 'fixed') {
      this.writeKnobs({ ...p.knobs, maxKernelPages, pagesToScan: p.pagesToScan, sleepMillisecs: p.sleepMillisecs, run: p.run });
      this.governor = null;
    } else {
      const g = startGovernor(p, this.port, this.now);
      this.writeKnobs({ ...p.knobs, maxKernelPages });
      this.governor = g;
    }
    this.policy = p;
  }

  /**
   * Write KSM knobs directly (the policy stays as it is; ksmtuned will overwrite them
   * at its next adjust). A value a file refuses changes nothing.
   */
  setKnobs(knobs: KsmKnobSettings): void {
    this.writeKnobs(checkKnobSettings('setKnobs', knobs));
  }

  /**
   * Write the given knobs of /sys/kernel/mm/ksm, skipping undefined ones, in the
   * order the kernel's profile lists them (`run` last). A knob the kernel does not
   * have (max_kernel_pages is 2.6.33's) is EINVAL before anything is written. Each
   * file checks its value only as it stores it, so a refused value would leave the
   * knobs before it written: those get their old values back before the error goes
   * on. That is safe because `run`, the one knob whose store acts, always comes last:
   * nothing written after it can fail.
   */
  private writeKnobs(knobs: KsmKnobSettings): void {
    const sysfs = this.kernel.sysfs;
    const profile = this.kernel.ksmEngine.profile;
    for (const field of Object.keys(knobs) as KsmKnobField[]) if (knobs[field] !== undefined) knobFile(profile, field);
    const written: [path: string, old: string][] = [];
    try {
      for (const knob of profile.knobs) {
        const value = knobs[knob.field];
        if (value === undefined) continue;
        const path = knobFile(profile, knob.field);
        // A choice (advisor_mode) reads "[none] scan-time": write back the word in brackets.
        const old = knob.choices === null ? sysfs.read(path) : /\[([^\]]+)\]/.exec(sysfs.read(path))![1]!;
        sysfs.write(path, knob.choices === null ? String(value) : (knob.choices[value] ?? String(value)));
        written.push([path, old]);
      }
    } catch (e) {
      for (let i = written.length - 1; i >= 0; i--) sysfs.write(written[i]![0], written[i]![1]);
      throw e;
    }
  }

  /** What `pgrep qemu` and `ps -o rsz,vsz` show of the guests' QEMU processes, in kB. */
  private qemuProcesses(): { rssKb: number; vszKb: number }[] {
    const out: { rssKb: number; vszKb: number }[] = [];
    for (const guest of this.guests) {
      const p = guest.process;
      if (p === null) continue;
      let vsz = 0;
      for (const v of p.mm.vmas) vsz += v.end - v.start;
      out.push({ rssKb: this.rssPages(p) * (PAGE_SIZE / 1024), vszKb: vsz / 1024 });
    }
    return out;
  }

  // ---- guests ----------------------------------------------------------------------------------

  createGuest(optsIn: CreateGuestOptions): Guest {
    const opts = checkRecord('createGuest', optsIn) as unknown as CreateGuestOptions;
    checkKnownKeys('createGuest', opts as unknown as Record<string, unknown>, ['name', 'image', 'version', 'memoryMiB', 'memMerge', 'mergeDomain', 'workload', 'qemuBlocks', 'nic']);
    if (typeof opts.name !== 'string' || opts.name.length > 255 || !GUEST_NAME.test(opts.name)) {
      throw new KernelError('EINVAL', `guest name ${describe(opts.name)}: use letters, digits, '.', '_' and '-'`);
    }
    if (this.guests.some((g) => g.name === opts.name)) throw new KernelError('EEXIST', `a guest named ${opts.name} already exists`);
    checkInt(`guest ${opts.name}: memoryMiB`, opts.memoryMiB, 1, MAX_GUEST_MIB);
    if (opts.memMerge !== undefined) checkBool(`guest ${opts.name}: memMerge`, opts.memMerge);
    // The rules a snapshot's guest record is held to (vmm/snapshot.ts checkHostSnapshot).
    if (opts.mergeDomain !== undefined) checkMergeDomain(`guest ${opts.name}: merge domain`, opts.mergeDomain);
    if (opts.qemuBlocks !== undefined) checkBool(`guest ${opts.name}: qemuBlocks`, opts.qemuBlocks);
    if (opts.nic !== undefined) checkOneOf(`guest ${opts.name}: nic`, opts.nic, QEMU_NICS);
    if (opts.version !== undefined) checkString(`guest ${opts.name}: version`, opts.version, 255);
    if (typeof opts.image !== 'string' && (opts.image === null || typeof opts.image !== 'object')) {
      throw new KernelError('EINVAL', `guest ${opts.name}: image: expected an image name, an image descriptor or a page source, found ${describe(opts.image)}`);
    }
    let source: PageSource;
    if (typeof opts.image === 'string') {
      if (this.images === null) throw new KernelError('EINVAL', `guest ${opts.name}: image ${opts.image} named, but the host has no image catalog`);
      try {
        source = this.images.source(opts.image, opts.version);
      } catch (e) {
        throw new KernelError('ENOENT', `guest ${opts.name}: ${(e as Error).message}`);
      }
    } else if (Array.isArray(opts.image)) {
      throw new KernelError('EINVAL', `guest ${opts.name}: image: expected an image name, an image descriptor or a page source, found ${describe(opts.image)}`);
    } else if ('layout' in opts.image) {
      const problem = pageSourceProblem(opts.image);
      if (problem !== null) throw new KernelError('EINVAL', `guest ${opts.name}: image: ${problem}`);
      source = opts.image;
    } else {
      // A descriptor from parseImage() is checked; one built by hand may not be. What
      // it lacks is the caller's mistake, whatever the generator tripped on.
      try {
        source = new SyntheticSource(opts.image);
      } catch (e) {
        if (e instanceof KernelError) throw e;
        throw new KernelError('EINVAL', `guest ${opts.name}: image: not a usable image descriptor (${(e as Error).message})`);
      }
    }
    const ramBytes = opts.memoryMiB * 1024 * 1024;
    const init = {
      name: opts.name,
      source,
      ramBytes,
      ...(opts.memMerge === undefined ? {} : { memMerge: opts.memMerge }),
      ...(opts.mergeDomain === undefined ? {} : { mergeDomain: opts.mergeDomain }),
      ...(opts.workload === undefined ? {} : { workload: opts.workload }),
      ...(opts.qemuBlocks === undefined ? {} : { qemuBlocks: opts.qemuBlocks }),
      ...(opts.nic === undefined ? {} : { nic: opts.nic }),
    };
    // A guest the constructor refuses (RAM too small for its image) must not have
    // drawn an id: the ids of the guests created after it would shift.
    const idState = this.idPrng.getState();
    let guest: Guest;
    try {
      guest = new Guest(this.kernel, this.prng.fork(this.guestsCreated + 1), this.newId(), init);
    } catch (e) {
      this.idPrng.setState(idState);
      throw e;
    }
    this.guestsCreated++;
    this.guests.push(guest);
    this.note('guest', guest.name, `create ${guest.name} (${guest.imageName}, ${opts.memoryMiB} MiB${guest.memMerge ? '' : ', mem-merge off'}${guest.mergeDomain === '' ? '' : `, merge domain ${guest.mergeDomain}`})`);
    return guest;
  }

  /** The guest named `name` (ENOENT if none). */
  guest(name: string): Guest {
    const g = this.guests.find((x) => x.name === name);
    if (g === undefined) throw new KernelError('ENOENT', `no guest named ${typeof name === 'string' ? name : describe(name)} (guests: ${this.guests.map((x) => x.name).join(', ') || 'none'})`);
    return g;
  }

  /**
   * Boot a guest, logged. A failure is logged and rethrown; a guest that had no
   * process (created, stopped, OOM-killed, refused before) and could not get one
   * (ENOMEM mapping its RAM, or any other failure of boot) is `refused`, and the
   * entry says so. Asking to start a guest that is already up fails too, but the
   * guest runs on: that is a failed action, not a refused guest.
   */
  startGuest(name: string): Guest {
    const g = this.guest(name);
    const down = g.process === null && g.state !== 'destroyed';
    try {
      g.boot();
    } catch (e) {
      const error = e instanceof Error ? e.message : String(e);
      if (down) g.refuse();
      this.note(down ? 'refused' : 'action', name, `start ${name}`, error);
      throw e;
    }
    this.note('action', name, `start ${name}`);
    return g;
  }

  stopGuest(name: string): void {
    const g = this.guest(name);
    this.try(name, `stop ${name}`, () => g.stop());
  }

  destroyGuest(name: string): void {
    const g = this.guest(name);
    this.try(name, `destroy ${name}`, () => g.destroy());
    this.guests.splice(this.guests.indexOf(g), 1);
  }

  /** Run `fn`, logging `what` as an action and any KernelError (which is rethrown). */
  private try(guest: string | null, what: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.note('action', guest, what, e instanceof Error ? e.message : String(e));
      throw e;
    }
    this.note('action', guest, what);
  }

  // ---- time ------------------------------------------------------------------------------------

  /** Move simulated time on by `ms`: guests write, the governor adjusts, ksmd scans. */
  advance(ms: number): void {
    const k = this.kernel;
    // The kernel's bounds (a number ≥ 0, time exact, ksmd's wakeups), then the host's
    // own wakeups: one tick per tickMs.
    const end = k.checkSpan('Host.advance', ms);
    if (ms / this.tickMs > MAX_WAKEUPS_PER_CALL) {
      throw new KernelError('E2BIG', `Host.advance(${ms}): ${Math.round(ms / this.tickMs)} guest ticks of ${this.tickMs} ms, more than the ${MAX_WAKEUPS_PER_CALL} one call may take; advance in smaller steps`);
    }
    for (;;) {
      // A grid point at `end` belongs to the next span: its tick covers [end, end + tick).
      const g = this.governor;
      const next = Math.min(this.nextTickAt, g === null ? Infinity : g.nextAt);
      if (next >= end) break;
      if (next > k.now) k.advance(next - k.now);
      if (g !== null && g.nextAt === next) {
        const before = this.knobsNow();
        const notes = g.wake(this.port, next);
        const kind = this.knobsNow() === before ? 'governor-idle' : 'governor';
        for (const n of notes) this.note(kind, null, n.what, n.error);
      }
      if (this.nextTickAt === next) {
        this.tickGuests();
        this.nextTickAt = next + this.tickMs;
      }
    }
    if (end > k.now) k.advance(end - k.now);
  }

  /** The knob files a governor writes, as one string: equal strings, equal knobs. */
  private knobsNow(): string {
    const ksm = this.kernel.ksmEngine;
    return `${ksm.run} ${ksm.pagesToScan} ${ksm.sleepMillisecs} ${ksm.maxKernelPages}`;
  }

  private tickGuests(): void {
    for (const g of this.guests) {
      g.tick(this.tickMs);
      for (let attempt = 0; ; attempt++) {
        try {
          if (g.work()) this.note('guest', g.name, `${g.name} booted`);
          break;
        } catch (e) {
          if (!(e instanceof KernelError) || e.code !== 'ENOMEM' || attempt > this.guests.length + this.hogs.length) throw e;
          // Killing g itself (its process is then null) ends its writes.
          if (this.oomKill() === null || g.process === null) break;
        }
      }
    }
  }

  // ---- memory pressure and the OOM killer --------------------------------------------------------

  /** RSS in pages: what smaps_rollup calls Rss (the zero page is in no one's RSS, as Linux counts MM_ANONPAGES). */
  rssPages(proc: Process): number {
    return proc.smapsRollup().resident;
  }

  /** The OOM killer's score: resident plus swapped pages (get_mm_rss() + MM_SWAPENTS). */
  private badness(proc: Process): number {
    const mss = proc.smapsRollup();
    return mss.resident + mss.swap;
  }

  /**
   * out_of_memory(): kill the process with the highest badness (resident + swapped
   * pages; ties go to the earliest), log it, and return it; null if there is none.
   */
  private oomKill(): Process | null {
    let best: Process | null = null;
    let bestScore = -1;
    let bestGuest: Guest | null = null;
    for (const g of this.guests) {
      if (g.process === null) continue;
      const s = this.badness(g.process);
      if (s > bestScore) {
        best = g.process;
        bestScore = s;
        bestGuest = g;
      }
    }
    for (const h of this.hogs) {
      const s = this.badness(h.proc);
      if (s > bestScore) {
        best = h.proc;
        bestScore = s;
        bestGuest = null;
      }
    }
    if (best === null) return null;
    const score = `${formatSize(bestScore * PAGE_SIZE)} resident+swap`;
    if (bestGuest !== null) {
      bestGuest.oomKill();
      this.note('oom-kill', bestGuest.name, `Out of memory: killed ${best.name} (guest ${bestGuest.name}, ${score})`);
    } else {
      const i = this.hogs.findIndex((h) => h.proc === best);
      this.hogs.splice(i, 1);
      best.exit();
      this.note('oom-kill', null, `Out of memory: killed ${best.name} (${score})`);
    }
    return best;
  }

  /**
   * Memory pressure: a host process allocates and touches `bytes` of anonymous memory
   * (not mergeable), pushing the kernel to reclaim. Returns the bytes it holds: fewer
   * when the OOM killer chose it. Pressure adds up until releasePressure().
   */
  pressure(bytes: number): number {
    if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % PAGE_SIZE !== 0) {
      throw new KernelError('EINVAL', `pressure needs a positive multiple of 4 KiB, got ${describe(bytes)}`);
    }
    const proc = this.kernel.spawn(`stress-${this.hogs.length + 1}`);
    let base: number;
    try {
      base = proc.mmap(bytes, { prot: 'rw' });
    } catch (e) {
      proc.exit();
      throw e;
    }
    this.hogs.push({ proc, bytes });
    const chunk = 256 * PAGE_SIZE;
    for (let off = 0; off < bytes; ) {
      const n = Math.min(chunk, bytes - off);
      try {
        proc.memset(base + off, 0x5a, n);
        off += n;
      } catch (e) {
        if (!(e instanceof KernelError) || e.code !== 'ENOMEM') throw e;
        const victim = this.oomKill();
        if (victim === null || victim === proc) {
          this.note('action', null, `pressure ${formatSize(bytes)}`, `ENOMEM: the OOM killer chose the pressure process after ${formatSize(off)}`);
          return victim === proc ? 0 : off;
        }
      }
    }
    this.note('action', null, `pressure ${formatSize(bytes)}`);
    return bytes;
  }

  /** End every pressure process. */
  releasePressure(): number {
    let freed = 0;
    for (const h of this.hogs) {
      h.proc.exit();
      freed += h.bytes;
    }
    this.hogs.length = 0;
    this.note('action', null, `release pressure (${formatSize(freed)})`);
    return freed;
  }

  // ---- migration and memory hotplug ---------------------------------------------------------------

  /** compact_memory: returns the pages moved. */
  compact(): number {
    const moved = this.kernel.compactMemory();
    this.note('action', null, `compact memory: ${moved} pages moved`);
    return moved;
  }

  /**
   * Migrate up to `pages` resident pages of a guest (picked at random) to new frames,
   * as NUMA balancing or memory-failure handling would. Returns {moved, failed}.
   */
  migrateGuestPages(name: string, pages: number): { moved: number; failed: number } {
    const g = this.guest(name);
    checkCount('migrateGuestPages: pages', pages);
    const proc = g.process;
    if (proc === null) throw new KernelError('EINVAL', `guest ${name} is ${g.state}: nothing to migrate`);
    const frames: number[] = [];
    for (const s of g.slots) proc.residentFrames(s.hva, s.size, frames);
    let moved = 0;
    let failed = 0;
    const seen = new Set<number>();
    for (let i = 0; i < pages && frames.length > 0; i++) {
      const j = this.prng.int(0, frames.length);
      const pfn = frames[j]!;
      frames[j] = frames[frames.length - 1]!;
      frames.pop();
      if (seen.has(pfn)) continue;
      seen.add(pfn);
      try {
        this.kernel.migratePage(pfn);
        moved++;
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
        failed++;
      }
    }
    this.note('action', name, `migrate ${name}: ${moved} pages moved, ${failed} failed`);
    return { moved, failed };
  }

  /** Take memory block `n` offline (EBUSY and a clean cancel when a page cannot leave). */
  offlineBlock(n: number): void {
    checkCount('offlineBlock: block', n, this.kernel.mem.blocks.length - 1);
    this.try(null, `offline memory${n}`, () => this.kernel.sysfs.write(`/sys/devices/system/memory/memory${n}/state`, 'offline'));
  }

  onlineBlock(n: number): void {
    checkCount('onlineBlock: block', n, this.kernel.mem.blocks.length - 1);
    this.try(null, `online memory${n}`, () => this.kernel.sysfs.write(`/sys/devices/system/memory/memory${n}/state`, 'online'));
  }

  /** Swap out up to `pages` pages now (like memory.reclaim); returns the pages freed. */
  reclaim(pages: number): number {
    checkCount('reclaim: pages', pages);
    const freed = this.kernel.reclaim(pages);
    this.note('action', null, `reclaim ${pages} pages: ${freed} freed`);
    return freed;
  }

  // ---- snapshots -----------------------------------------------------------------------------

  /**
   * The whole host — kernel, guests, workloads, governor, time, PRNG state — as a
   * snapshot file's bytes (src/vmm/snapshot.ts has the format). `extra` is carried
   * along for the caller (a scenario run keeps its position there).
   */
  save(extra: unknown = null): Uint8Array {
    return saveHost(this, extra);
  }

  /**
   * A host from save()'s bytes, continuing exactly where it was. `images` must have
   * the page source of every guest (the snapshot names them: src/vmm/snapshot.ts), and
   * is the catalog later createGuest() calls name. Throws SnapshotError.
   */
  static restore(bytes: Uint8Array, images: ImageCatalog | null = null): Host {
    return restoreHost(bytes, images).host;
  }

  /** The host's own state as plain data (the kernel is saved separately). */
  toSnapshot(): HostSnapshot {
    return {
      memoryMiB: this.memoryMiB,
      swapMiB: this.swapMiB,
      blockMiB: this.blockMiB,
      tickMs: this.tickMs,
      policy: this.policy,
      governor: this.governor === null ? null : this.governor.snapshot(),
      nextTickAt: this.nextTickAt,
      prng: this.prng.getState(),
      idPrng: this.idPrng.getState(),
      guestsCreated: this.guestsCreated,
      hogs: this.hogs.map((h) => ({ pid: h.proc.pid, bytes: h.bytes })),
      log: this.log.map((e) => ({ ...e })),
      guests: this.guests.map((g) => g.toSnapshot()),
    };
  }

  /**
   * Rebuild a host around a kernel restored from the same snapshot, `sources[i]`
   * being what guest i's ref resolved to (src/vmm/snapshot.ts resolves them before the
   * kernel is built). Throws an Error naming what does not fit; nothing outside the
   * new objects is touched.
   */
  static fromSnapshot(snap: HostSnapshot, kernel: Kernel, catalog: ImageCatalog | null, sources: readonly PageSource[]): Host {
    const host = new Host({ memoryMiB: snap.memoryMiB, swapMiB: snap.swapMiB, blockMiB: snap.blockMiB, tickMs: snap.tickMs, ksm: snap.policy, images: catalog }, kernel);
    if (snap.governor !== null) {
      const problem = checkGovernorSnapshot(snap.governor);
      if (problem !== null) throw new Error(`governor: ${problem}`);
      host.governor = restoreGovernor(snap.governor);
    }
    host.nextTickAt = snap.nextTickAt;
    host.prng.setState(snap.prng);
    host.idPrng.setState(snap.idPrng);
    host.guestsCreated = snap.guestsCreated;
    for (const h of snap.hogs) {
      const proc = kernel.processes.get(h.pid);
      if (proc === undefined) throw new Error(`pressure process ${h.pid} is not in the kernel`);
      host.hogs.push({ proc, bytes: h.bytes });
    }
    for (const e of snap.log) host.log.push({ t: e.t, kind: e.kind, guest: e.guest, what: e.what, error: e.error });
    if (sources.length !== snap.guests.length) throw new Error(`${snap.guests.length} guests, ${sources.length} page sources`);
    snap.guests.forEach((gs, i) => host.guests.push(Guest.fromSnapshot(kernel, gs, sources[i]!)));
    return host;
  }

  // ---- figures ---------------------------------------------------------------------------------

  /**
   * The host now. `since`, an earlier sample of this host, is what ksmdCpu is measured
   * from (0 without one); `costs` turn ksmd's counted work into CPU time.
   */
  sample(since: HostSample | null = null, costs: KsmdCosts = DEFAULT_KSMD_COSTS): HostSample {
    const k = this.kernel;
    const ksm = k.ksmEngine;
    const guests: GuestSample[] = this.guests.map((g) => g.sample());
    const swap = k.swap;
    const stats = k.ksmStats();
    const work = k.ksmWork();
    const ksmdCpuMs = ksmdCpuNs(work, costs) / 1e6;
    const dt = since === null ? 0 : k.now - since.t;
    return {
      t: k.now,
      ...stats,
      // What KSM saves: a page per extra sharer, and (6.x) each page it put on the zero page.
      savedBytes: (stats.pagesSharing + (stats.ksmZeroPages ?? 0)) * PAGE_SIZE,
      totalBytes: k.mem.onlineFrames() * PAGE_SIZE,
      freeBytes: k.mem.nrFreeOnline * PAGE_SIZE,
      swapUsedBytes: swap === null ? 0 : (swap.nrSlots - swap.nrFree) * PAGE_SIZE,
      run: ksm.run,
      pagesToScan: ksm.pagesToScan,
      sleepMillisecs: ksm.sleepMillisecs,
      work,
      ksmdCpuMs,
      ksmdCpu: dt > 0 ? (ksmdCpuMs - since!.ksmdCpuMs) / dt : 0,
      guests,
    };
  }

  /** The deep consistency check of the kernel underneath (throws InvariantError). */
  checkInvariants(): void {
    this.kernel.checkInvariants();
  }
}
