import { ConfigError, type ConfigProblem } from '../vmm/config.js';
import type { GuestImage, ImageCatalog } from '../vmm/image.js';
import { splitAssignment, splitShell } from '../vmm/shell.js';
import { sortNotes, imageFits, imageFromOption, scenarioName, sizeWords, wholeMiB, type ImportedGuest } from './import.js';

/**
 * A QEMU command line as a scenario guest: given as arguments (`samepage import qemu --
 * qemu-system-x86_64 -m 2G ...`), or saved in a file: shell words over several lines as
 * libvirt logs them in /var/log/libvirt/qemu/NAME.log (environment assignments first,
 * `\` continuations), or NUL-separated as /proc/PID/cmdline holds them.
 *
 * Options read, with QEMU's own syntax (qemu-options.hx; QemuOpts: `key=value` pairs
 * separated by `,`, `,,` for a comma in a value, a first bare value for the option's
 * implied key; `-object` also as JSON, which libvirt writes nowadays):
 *
 *  - `-m [size=]N[,slots=n,maxmem=M]`: a bare N is MiB (system/vl.c
 *    parse_memory_options: "Fix up legacy suffix-less format"), else a size with a suffix
 *    B, K, M, G, T, P or E, fractions allowed (`-m 1.5G`); QEMU's default is 128 MiB;
 *  - `-machine|-M [type=]T,mem-merge=on|off,memory-backend=ID`: mem-merge (default on)
 *    is the default of every memory backend's `merge`, and is QEMU's madvise(MADV_MERGEABLE);
 *  - `-object memory-backend-ram|-file|-memfd,id=ID,size=S[,merge=..][,share=..]
 *    [,mem-path=..][,hugetlb=..]`, used by `-numa node,memdev=ID` or
 *    `-machine memory-backend=ID` as guest RAM, or by `-device pc-dimm,memdev=ID` as
 *    hot-plugged RAM on top of -m;
 *  - `-mem-path PATH` (RAM from files under PATH), `-mem-prealloc`, `-name [guest=]NAME`,
 *    `-overcommit mem-lock=on`.
 *
 * RAM KSM can never merge: a backend with merge=off (or mem-merge=off), one mapped shared
 * (share=on: ksm_madvise ignores VM_SHARED areas), and huge-page memory (memfd
 * hugetlb=on, or a mem-path on hugetlbfs, recognised by its name: /dev/hugepages,
 * /hugetlbfs, /hugepages). The model's mem_merge is per guest: it is off when at most
 * half of the guest's RAM is mergeable, and a note says how the RAM splits.
 *
 * Which options take an argument: QEMU knows from its option table; here, the options
 * below take none and every other takes one, except that an argument that itself
 * starts with '-' and a letter is taken to be the next option (QEMU's arguments never do).
 */
const NO_ARGUMENT = new Set([
  'h', 'help', 'version', 'S', 's', 'snapshot', 'nographic', 'full-screen', 'no-fd-bootchk', 'no-acpi', 'no-hpet', 'no-reboot', 'no-shutdown',
  'daemonize', 'nodefaults', 'no-user-config', 'nodefconfig', 'preconfig', 'enable-kvm', 'no-kvm', 'mem-prealloc', 'enable-fips', 'only-migratable',
  'old-param', 'win2k-hack', 'no-quit', 'alt-grab', 'ctrl-grab', 'no-frame', 'portrait', 'sdl', 'curses', 'singlestep', 'one-insn-per-tb',
  'semihosting', 'xen-attach', 'enable-sync-profile', 'perfmap', 'jitdump', 'no-kvm-irqchip', 'no-kvm-pit', 'no-kvm-pit-reinjection',
]);

const MiB = 1024 * 1024;

/** One word of the command line and where it was: "argument 3" or "file:line". */
export interface QemuArg {
  readonly text: string;
  /** 1-based line in a file, 0 for arguments given directly. */
  readonly line: number;
  /** 1-based position on the command line. */
  readonly index: number;
}

/** The words of a command line given as arguments. */
export function qemuArgsFromArgv(argv: readonly string[]): QemuArg[] {
  return argv.map((text, i) => ({ text, line: 0, index: i + 1 }));
}

/**
 * The words of a command line saved in a file: NUL-separated (/proc/PID/cmdline), or
 * shell words (a libvirt log's command line, or a wrapper script's `exec qemu ...`);
 * environment assignments and `exec` before the command are skipped. Throws ConfigError naming the line.
 */
export function qemuArgsFromFile(text: string, file: string): QemuArg[] {
  if (text.includes('\0')) {
    return text
      .split('\0')
      .filter((w, i, all) => !(w === '' && i === all.length - 1))
      .map((w, i) => ({ text: w, line: 1, index: i + 1 }));
  }
  const { commands, problems } = splitShell(text);
  if (problems.length > 0) throw new ConfigError(file, problems.map((p) => ({ line: p.line, field: '', message: `not valid shell: ${p.message}` })));
  if (commands.length === 0) throw new ConfigError(file, [{ line: 0, field: '', message: 'no command line in the file' }]);
  if (commands.length > 1) {
    throw new ConfigError(file, [{ line: commands[1]![0]!.line, field: '', message: 'expected one QEMU command line, found a second command here (import one command line per file)' }]);
  }
  const words = commands[0]!;
  let first = 0;
  // `VAR=value ... qemu` (a libvirt log), or `exec qemu` (a wrapper script).
  while (first < words.length && (splitAssignment(words[first]!) !== null || (words[first]!.text === 'exec' && !words[first]!.quoted))) first++;
  const op = words.find((w) => w.operator);
  if (op !== undefined) throw new ConfigError(file, [{ line: op.line, field: '', message: `${JSON.stringify(op.text)}: pipes, redirections and command lists are not part of a QEMU command line` }]);
  return words.slice(first).map((w, i) => ({ text: w.text, line: w.line, index: i + 1 }));
}

/** QemuOpts: `a=1,b=2`, `,,` for a literal comma, a first bare value for the implied key. */
export function parseQemuOpts(value: string, implied: string | null): Map<string, string> {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === ',') {
      if (value[i + 1] === ',') {
        cur += ',';
        i++;
        continue;
      }
      parts.push(cur);
      cur = '';
      continue;
    }
    cur += c;
  }
  parts.push(cur);
  const out = new Map<string, string>();
  parts.forEach((p, i) => {
    if (p === '') return;
    const eq = p.indexOf('=');
    if (eq >= 0) out.set(p.slice(0, eq), p.slice(eq + 1));
    else if (i === 0 && implied !== null) out.set(implied, p);
    else out.set(p, 'on');
  });
  return out;
}

/**
 * qemu_strtosz: a size with an optional fraction and suffix B, K, M, G, T, P or E
 * (either case); `dflt` is the unit without a suffix (MiB for -m, bytes elsewhere).
 * null when it is not one, or not a whole number of bytes.
 */
export function parseQemuSize(s: string, dflt: number): number | null {
  const m = /^(\d+)(?:\.(\d+))?([bkmgtpeBKMGTPE])?$/.exec(s.trim());
  if (m === null) return null;
  const unit = m[3] === undefined ? dflt : 1024 ** 'bkmgtpe'.indexOf(m[3].toLowerCase());
  const v = Number(`${m[1]!}.${m[2] ?? '0'}`) * unit;
  return Number.isSafeInteger(v) ? v : null;
}

/** QEMU's booleans (qapi_bool_parse): on/yes/true/y and off/no/false/n. */
function parseQemuBool(s: string): boolean | null {
  if (['on', 'yes', 'true', 'y'].includes(s)) return true;
  if (['off', 'no', 'false', 'n'].includes(s)) return false;
  return null;
}

interface Backend {
  type: string;
  id: string;
  size: number | null;
  merge: boolean | null;
  share: boolean;
  hugetlb: boolean;
  memPath: string | null;
  arg: QemuArg;
}

/** A path on hugetlbfs, judged by its name. */
function looksHugetlbfs(path: string): boolean {
  return /\/dev\/hugepages|hugetlbfs|\/hugepages/.test(path);
}

export interface QemuImportOptions {
  /** --image NAME[:VERSION]: required, since a command line does not name the guest's OS. */
  image?: string;
  /** The guest's name when the command line has no -name. */
  defaultName?: string;
}

/**
 * One QEMU command line as a scenario guest. `source` names it in messages (a file,
 * or "qemu command line"); throws ConfigError listing every problem.
 */
export function importQemuCommandLine(args: readonly QemuArg[], source: string, images: ImageCatalog, opts: QemuImportOptions = {}): ImportedGuest {
  // Each problem with the argument it is about (0: the whole command line), to report
  // them in command-line order.
  const problems: { p: ConfigProblem; index: number }[] = [];
  const notes: string[] = [];
  const where = (a: QemuArg): string => (a.line > 0 ? `${source}:${a.line}` : `${source}: argument ${a.index}`);
  const problem = (a: QemuArg, option: string, message: string): void => {
    problems.push({ p: { line: a.line, field: a.line > 0 ? option : `argument ${a.index} (${option})`, message }, index: a.index });
  };
  const binary = args[0];
  if (binary === undefined) throw new ConfigError(source, [{ line: 0, field: '', message: 'no command line given' }]);
  if (!/qemu|^kvm$/.test(binary.text.split('/').pop()!)) {
    problem(binary, binary.text, 'expected a QEMU command (qemu-system-x86_64, qemu-kvm, ...)');
  }

  let memOpts: { opts: Map<string, string>; arg: QemuArg } | null = null;
  const machine = new Map<string, string>();
  let machineArg: QemuArg | null = null;
  const backends = new Map<string, Backend>();
  const numa: { opts: Map<string, string>; arg: QemuArg }[] = [];
  const dimms: { memdev: string; type: string; arg: QemuArg }[] = [];
  let memPath: { path: string; arg: QemuArg } | null = null;
  let name: string | null = null;

  for (let i = 1; i < args.length; i++) {
    const a = args[i]!;
    if (!a.text.startsWith('-') || a.text === '-') {
      notes.push(`${where(a)}: ${JSON.stringify(a.text)} (a disk image without an option) is not modelled`);
      continue;
    }
    const opt = a.text.replace(/^--?/, '');
    if (NO_ARGUMENT.has(opt)) {
      if (opt === 'mem-prealloc') notes.push(`${where(a)}: -mem-prealloc: preallocated RAM is not modelled; the guest touches only what its image writes`);
      continue;
    }
    const next = args[i + 1];
    if (next === undefined || /^-[A-Za-z]/.test(next.text)) {
      if (['m', 'machine', 'M', 'object', 'numa', 'mem-path', 'name', 'device', 'overcommit'].includes(opt)) problem(a, `-${opt}`, 'needs an argument');
      continue;
    }
    i++;
    const v = next.text;
    switch (opt) {
      case 'm': {
        const o = parseQemuOpts(v, 'size');
        // Repeated -m options merge, the last value of each key winning (merge_lists).
        if (memOpts !== null) for (const [k, x] of o) memOpts.opts.set(k, x);
        else memOpts = { opts: o, arg: next };
        memOpts.arg = next;
        break;
      }
      case 'machine':
      case 'M':
        for (const [k, x] of parseQemuOpts(v, 'type')) machine.set(k, x);
        machineArg = next;
        break;
      case 'object': {
        let o: Map<string, string>;
        if (v.trim().startsWith('{')) {
          try {
            o = new Map(Object.entries(JSON.parse(v) as Record<string, unknown>).map(([k, x]) => [k, typeof x === 'boolean' ? (x ? 'on' : 'off') : String(x)]));
          } catch (e) {
            problem(next, '-object', `not valid JSON: ${(e as Error).message}`);
            break;
          }
        } else o = parseQemuOpts(v, 'qom-type');
        const type = o.get('qom-type') ?? '';
        if (!type.startsWith('memory-backend-')) break;
        const id = o.get('id');
        if (id === undefined) {
          problem(next, '-object', `${type} needs an id`);
          break;
        }
        const sizeText = o.get('size');
        const size = sizeText === undefined ? null : parseQemuSize(sizeText, 1);
        if (sizeText === undefined || size === null) problem(next, '-object', `${type} ${id}: expected size=SIZE (like 2G), got ${sizeText === undefined ? 'none' : JSON.stringify(sizeText)}`);
        const bool = (k: string, dflt: boolean | null): boolean | null => {
          const x = o.get(k);
          if (x === undefined) return dflt;
          const b = parseQemuBool(x);
          if (b === null) problem(next, '-object', `${type} ${id}: ${k} expects on or off, got ${JSON.stringify(x)}`);
          return b ?? dflt;
        };
        backends.set(id, { type, id, size, merge: bool('merge', null), share: bool('share', type === 'memory-backend-memfd') ?? false, hugetlb: bool('hugetlb', false) ?? false, memPath: o.get('mem-path') ?? null, arg: next });
        break;
      }
      case 'numa': {
        const o = parseQemuOpts(v, 'type');
        if ((o.get('type') ?? 'node') === 'node') numa.push({ opts: o, arg: next });
        break;
      }
      case 'device': {
        const o = parseQemuOpts(v, 'driver');
        const driver = o.get('driver') ?? '';
        const memdev = o.get('memdev');
        if (memdev !== undefined && /dimm|virtio-mem/.test(driver)) dimms.push({ memdev, type: driver, arg: next });
        break;
      }
      case 'mem-path':
        memPath = { path: v, arg: next };
        break;
      case 'name':
        name = parseQemuOpts(v, 'guest').get('guest') ?? null;
        break;
      case 'overcommit':
        if (parseQemuOpts(v, null).get('mem-lock') === 'on') notes.push(`${where(next)}: -overcommit mem-lock=on: guest RAM locked in host memory (never swapped) is not modelled`);
        break;
      default:
        break;
    }
  }

  // ---- mem-merge ----
  let machineMerge = true;
  const mm = machine.get('mem-merge');
  if (mm !== undefined) {
    const b = parseQemuBool(mm);
    if (b === null) problem(machineArg!, '-machine', `mem-merge expects on or off, got ${JSON.stringify(mm)}`);
    else machineMerge = b;
  }

  // ---- RAM: -m, or the backends that make it ----
  const pieces: { bytes: number; mergeable: boolean; what: string }[] = [];
  const backendPiece = (id: string, a: QemuArg, by: string): Backend | null => {
    const b = backends.get(id);
    if (b === undefined) {
      problem(a, by, `no memory backend with id ${JSON.stringify(id)} (-object memory-backend-...,id=${id})`);
      return null;
    }
    const why = b.share ? 'share=on' : b.hugetlb ? 'hugetlb=on' : b.memPath !== null && looksHugetlbfs(b.memPath) ? `mem-path ${b.memPath} (hugetlbfs)` : (b.merge ?? machineMerge) ? null : b.merge === false ? 'merge=off' : 'mem-merge=off';
    if (b.size !== null) pieces.push({ bytes: b.size, mergeable: why === null, what: `${b.id} (${sizeWords(b.size)}${why === null ? '' : `, ${why}`})` });
    return b;
  };
  let ram: number | null = null;
  const mSize = memOpts?.opts.get('size');
  if (memOpts !== null && mSize !== undefined) {
    // system/vl.c: a size without a suffix is MiB.
    ram = parseQemuSize(mSize, MiB);
    if (ram === null || ram === 0) {
      problem(memOpts.arg, '-m', `expected a size like 2048 (MiB), 2G or size=4G,slots=4,maxmem=8G, got ${JSON.stringify(mSize)}`);
      ram = null;
    }
  }
  if (memOpts !== null && (memOpts.opts.has('maxmem') || memOpts.opts.has('slots'))) {
    notes.push(`${where(memOpts.arg)}: -m slots=${memOpts.opts.get('slots') ?? '?'},maxmem=${memOpts.opts.get('maxmem') ?? '?'}: memory hotplug room is not modelled`);
  }
  const memdevNodes = numa.filter((n) => n.opts.has('memdev'));
  const machineBackend = machine.get('memory-backend');
  if (memdevNodes.length > 0) {
    let total = 0;
    for (const n of memdevNodes) total += backendPiece(n.opts.get('memdev')!, n.arg, '-numa')?.size ?? 0;
    if (ram === null && memOpts === null) ram = total;
    else if (ram !== null && total !== ram) problem(memdevNodes[0]!.arg, '-numa', `the NUMA nodes' memory backends add up to ${sizeWords(total)}, not the -m ${sizeWords(ram)}: QEMU refuses this ("total memory for NUMA nodes should equal RAM size")`);
    notes.push(`${where(memdevNodes[0]!.arg)}: ${memdevNodes.length} NUMA node${memdevNodes.length > 1 ? 's' : ''}: placement (host-nodes, policy) is not honoured; the model's host is one node`);
  } else if (machineBackend !== undefined) {
    const b = backendPiece(machineBackend, machineArg!, '-machine');
    if (ram === null && memOpts === null && b !== null) ram = b.size;
  } else {
    if (ram === null && memOpts === null) {
      ram = 128 * MiB;
      notes.push(`${source}: no -m: QEMU's default, 128 MiB`);
    }
    if (numa.length > 0) notes.push(`${where(numa[0]!.arg)}: ${numa.length} NUMA node${numa.length > 1 ? 's' : ''}: placement is not honoured; the model's host is one node`);
    if (ram !== null) {
      const huge = memPath !== null && looksHugetlbfs(memPath.path);
      const why = huge ? `-mem-path ${memPath!.path} (hugetlbfs)` : machineMerge ? null : 'mem-merge=off';
      pieces.push({ bytes: ram, mergeable: why === null, what: `RAM (${sizeWords(ram)}${why === null ? '' : `, ${why}`})` });
      if (memPath !== null && !huge) notes.push(`${where(memPath.arg)}: -mem-path ${memPath.path}: file-backed private RAM is modelled as anonymous memory`);
    }
  }
  for (const d of dimms) {
    const b = backendPiece(d.memdev, d.arg, '-device');
    if (b !== null && b.size !== null) notes.push(`${where(d.arg)}: ${d.type} ${b.id} adds ${sizeWords(b.size)} to the guest's RAM; modelled as boot RAM`);
  }
  const total = pieces.reduce((x, p) => x + p.bytes, 0);
  const mergeable = pieces.filter((p) => p.mergeable).reduce((x, p) => x + p.bytes, 0);
  const memMerge = mergeable * 2 > total;
  if (pieces.some((p) => !p.mergeable)) {
    if (mergeable === 0) notes.push(`${source}: KSM can never merge this guest's RAM: ${pieces.map((p) => p.what).join(', ')} (mem_merge: off)`);
    else notes.push(`${source}: ${sizeWords(mergeable)} of ${sizeWords(total)} mergeable (${pieces.map((p) => p.what).join(', ')}); the model merges a guest whole or not at all: mem_merge: ${memMerge ? 'on' : 'off'}`);
  }

  // ---- name and image ----
  let guestName = name ?? opts.defaultName ?? 'guest';
  if (name === null) notes.push(`${source}: no -name: the guest is called ${guestName}`);
  const cleaned = scenarioName(guestName);
  if (cleaned !== guestName) notes.push(`${source}: -name ${JSON.stringify(guestName)} written as ${cleaned} (scenario names are letters, digits, '.', '_' and '-')`);
  guestName = cleaned;
  let image: GuestImage | null = null;
  if (opts.image === undefined) {
    problems.push({ index: Infinity, p: { line: 0, field: '', message: `a QEMU command line does not say which OS the guest runs: choose an image with --image NAME[:VERSION] (images: ${images.list().map((i) => `${i.name} ${i.version}`).join(', ')})` } });
  } else {
    const r = imageFromOption(images, opts.image);
    if (typeof r === 'string') problems.push({ index: Infinity, p: { line: 0, field: '--image', message: r } });
    else image = r;
  }
  let memoryBytes = 0;
  if (total > 0) {
    memoryBytes = wholeMiB(total, source, 'guest RAM', notes);
    if (image !== null) {
      const fit = imageFits(image, memoryBytes);
      if (fit !== null) {
        if (memOpts === null) problems.push({ index: Infinity, p: { line: 0, field: '', message: fit } });
        else problem(memOpts.arg, '-m', fit);
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(source, problems.sort((a, b) => a.p.line - b.p.line || a.index - b.index).map((x) => x.p));
  return { name: guestName, memoryBytes, memMerge, image: image!, notes: sortNotes(notes, source) };
}
