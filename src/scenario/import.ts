import { stringify } from 'yaml';
import { formatSize } from '../vmm/config.js';
import { compareVersions, layoutGuest, type GuestImage, type ImageCatalog } from '../vmm/image.js';

/**
 * What `samepage import` makes of an operator's domain definitions (libvirt domain XML,
 * import-libvirt.ts; a QEMU command line, import-qemu.ts): scenario guests, each with
 * the notes that say what the model does not honour, printed as a YAML fragment (a
 * `guests:` list) or, given a host, a whole scenario.
 */

export interface ImportedGuest {
  name: string;
  /** Guest RAM in bytes: a whole number of MiB. */
  memoryBytes: number;
  memMerge: boolean;
  image: GuestImage;
  /** What the model does not honour or had to choose, each starting with its file:line. */
  notes: string[];
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** A guest name the scenario format takes: other characters become '-'. */
export function scenarioName(name: string): string {
  const s = name.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return s === '' ? 'guest' : s;
}

/** A version without trailing zero parts: libosinfo's debian "6" is the catalog's "6.0". */
function shortVersion(v: string): string {
  return v.replace(/(\.0+)+$/, '');
}

/**
 * libosinfo operating-system ids (https://libosinfo.org, the ids virt-install writes into
 * `<metadata><libosinfo:os id=...>`) for the images our catalogs name: the id's prefix
 * names the image, the rest its version (Windows Server ids use their own short names).
 */
const OSINFO_FAMILIES: readonly { prefix: string; image: string; versions?: Readonly<Record<string, string>> }[] = [
  { prefix: 'http://fedoraproject.org/fedora/', image: 'fedora' },
  { prefix: 'http://ubuntu.com/ubuntu/', image: 'ubuntu' },
  { prefix: 'http://debian.org/debian/', image: 'debian' },
  { prefix: 'http://centos.org/centos/', image: 'centos' },
  { prefix: 'http://redhat.com/rhel/', image: 'rhel' },
  { prefix: 'http://microsoft.com/win/', image: 'windows', versions: { '2k8': '2008', '2k8r2': '2008r2', '2k12': '2012', '2k12r2': '2012r2', '2k16': '2016', '2k19': '2019', '2k22': '2022' } },
];

/** The catalog's images, listed for a message. */
function choices(images: ImageCatalog): string {
  return images
    .list()
    .map((i) => `${i.name} ${i.version}`)
    .join(', ');
}

/** `--image NAME[:VERSION]`: the image, or a message naming the choices. */
export function imageFromOption(images: ImageCatalog, spec: string): GuestImage | string {
  const [name, version] = spec.split(':', 2) as [string, string | undefined];
  try {
    return images.get(name, version);
  } catch (e) {
    return (e as Error).message;
  }
}

/** The catalog image a libosinfo id names, or a message saying why none fits. */
export function imageFromOsinfo(images: ImageCatalog, id: string): GuestImage | string {
  const family = OSINFO_FAMILIES.find((f) => id.startsWith(f.prefix));
  const known = `images: ${choices(images)}`;
  if (family === undefined) return `libosinfo os ${id} is not one the importer knows (${known}); choose one with --image NAME[:VERSION]`;
  const rest = id.slice(family.prefix.length);
  const version = family.versions?.[rest] ?? rest;
  const match = images.list().find((i) => i.name === family.image && compareVersions(shortVersion(i.version), shortVersion(version)) === 0);
  if (match === undefined) return `libosinfo os ${id} (${family.image} ${version}) has no image in the catalog (${known}); choose one with --image NAME[:VERSION]`;
  return match;
}

/** The message when a domain says nothing of its OS and no --image is given. */
export function noImageMessage(images: ImageCatalog): string {
  return `no OS named (no <libosinfo:os> metadata), so no guest image can be chosen (images: ${choices(images)}); choose one with --image NAME[:VERSION]`;
}

/** Whether a guest of `bytes` fits its image: null, or why not. */
export function imageFits(image: GuestImage, bytes: number): string | null {
  try {
    layoutGuest(image, bytes);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Round a size up to a whole MiB (the model's guests are whole MiB), with a note when it moved. */
export function wholeMiB(bytes: number, where: string, what: string, notes: string[]): number {
  const mib = Math.ceil(bytes / MiB);
  if (mib * MiB !== bytes) notes.push(`${where}: ${what} ${bytes} bytes is not a whole number of MiB: rounded up to ${mib} MiB`);
  return mib * MiB;
}

/**
 * Notes in the order of the file: "<source>:<line>: ..." by line, and notes about the
 * whole source ("<source>: ...", or an argument position) first, in the order made.
 */
export function sortNotes(notes: readonly string[], source: string): string[] {
  const lineOf = (n: string): number => {
    if (!n.startsWith(`${source}:`)) return 0;
    const m = /^(\d+):/.exec(n.slice(source.length + 1));
    return m === null ? 0 : Number(m[1]);
  };
  return notes.map((n, i) => ({ n, i, line: lineOf(n) })).sort((a, b) => a.line - b.line || a.i - b.i).map((x) => x.n);
}

/** A size as a scenario writes it: whole GiB when it is, else MiB. */
function sizeText(bytes: number): string {
  return bytes % GiB === 0 && bytes > 0 ? `${bytes / GiB}GiB` : `${bytes / MiB}MiB`;
}

/** A whole scenario around the guests: `--host-memory` and friends. */
export interface ScenarioShell {
  name: string;
  hostMemoryBytes: number;
  hostSwapBytes: number;
  duration: string;
}

/**
 * The guests as YAML: a `guests:` fragment, or a whole scenario when `shell` is given.
 * Each guest's notes are comments above it; `header` is a comment on top (the command).
 */
export function formatImport(guests: readonly ImportedGuest[], header: string, shell: ScenarioShell | null): string {
  const lines: string[] = [`# ${header}`];
  if (shell !== null) {
    // Memory blocks of 128 MiB, as Linux's, unless the host is not a whole number of them.
    let block = 128 * MiB;
    while (block > MiB && shell.hostMemoryBytes % block !== 0) block /= 2;
    const host = { memory: sizeText(shell.hostMemoryBytes), swap: sizeText(shell.hostSwapBytes), ...(block === 128 * MiB ? {} : { block: sizeText(block) }) };
    lines.push(stringify({ name: shell.name, host, duration: shell.duration }).trimEnd());
  }
  lines.push('guests:');
  for (const g of guests) {
    for (const n of g.notes) lines.push(`  # ${n}`);
    lines.push(`  - name: ${stringify(g.name).trimEnd()}`);
    lines.push(`    image: ${g.image.name}`);
    lines.push(`    version: ${JSON.stringify(g.image.version)}`);
    lines.push(`    memory: ${sizeText(g.memoryBytes)}`);
    lines.push(`    mem_merge: ${g.memMerge ? 'on' : 'off'}`);
  }
  return `${lines.join('\n')}\n`;
}

/** "2 GiB" for notes. */
export function sizeWords(bytes: number): string {
  return formatSize(bytes);
}
