import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { ConfigError, type ConfigProblem } from '../vmm/config.js';
import type { GuestImage, ImageCatalog } from '../vmm/image.js';
import { sortNotes, imageFits, imageFromOption, imageFromOsinfo, noImageMessage, scenarioName, sizeWords, wholeMiB, type ImportedGuest } from './import.js';

/**
 * A libvirt domain (`virsh dumpxml NAME`, /etc/libvirt/qemu/NAME.xml) as a scenario guest.
 * What is read, as libvirt's "Domain XML format" documents it (formatdomain.html,
 * "Memory Allocation", "Memory Backing", "NUMA Node Tuning", "CPU model and topology":
 * NUMA cells) and its parser does:
 *
 *  - `<memory unit=...>`: the guest's RAM (its maximum at boot, DIMMs included). Units as
 *    virScaleInteger (src/util/virutil.c) takes them, case-insensitively: b, byte, bytes;
 *    k/K/KiB, M/MiB, G/GiB, T/TiB, P/PiB, E/EiB (powers of 1024); KB, MB, GB, TB, PB, EB
 *    (powers of 1000); no unit means KiB. libvirt rounds the value up to a whole KiB;
 *    the model's guests are whole MiB, so it is rounded up to that, with a note.
 *  - `<currentMemory>`: the balloon's target at boot. The model has no balloon: the guest
 *    gets all of `<memory>`, and the note says so.
 *  - `<maxMemory slots=...>`: room for memory hotplug; not modelled, noted.
 *  - `<memoryBacking>`: `<nosharepages/>` is QEMU's mem-merge=off (mem_merge: off);
 *    `<hugepages>` puts guest RAM on hugetlbfs, which KSM never merges (ksm_madvise
 *    ignores VM_HUGETLB areas), so it is modelled as unmergeable (mem_merge: off), noted;
 *    `<access mode='shared'/>` maps RAM MAP_SHARED, which KSM never merges either;
 *    `<locked/>`, `<source>`, `<allocation mode='immediate'>`, `<discard/>` are noted.
 *  - `<numatune>` and `<cpu><numa><cell memory=...>`: NUMA placement; the model's host is
 *    one node, so placement is noted as not honoured. A cell with memAccess='shared' is
 *    RAM KSM cannot merge: when every cell is, the guest is mem_merge: off.
 *  - `<metadata><libosinfo:libosinfo><libosinfo:os id=...>`: the guest's OS, which picks
 *    an image of the catalog when one matches (import.ts), unless --image says.
 *
 * Every problem names file:line (the parser's offsets, counted into lines).
 */

interface Element {
  readonly name: string;
  readonly attrs: Readonly<Record<string, string>>;
  readonly children: readonly Element[];
  readonly text: string;
  readonly line: number;
}

const META = XMLParser.getMetaDataSymbol() as unknown as symbol;

/** fast-xml-parser's preserveOrder tree as Elements, with the line each starts on. */
function toElements(nodes: unknown[], lineAt: (offset: number) => number): Element[] {
  const out: Element[] = [];
  for (const node of nodes) {
    const rec = node as Record<string | symbol, unknown>;
    const name = Object.keys(rec).find((k) => k !== ':@' && k !== '#text');
    if (name === undefined || name.startsWith('?')) continue;
    const kids = (rec[name] ?? []) as unknown[];
    const text = kids
      .map((k) => (k as Record<string, unknown>)['#text'])
      .filter((t) => t !== undefined)
      .join('')
      .trim();
    const meta = rec[META] as { startIndex?: number } | undefined;
    out.push({
      name,
      attrs: (rec[':@'] ?? {}) as Record<string, string>,
      children: toElements(kids, lineAt),
      text,
      line: meta?.startIndex === undefined ? 0 : lineAt(meta.startIndex),
    });
  }
  return out;
}

/** The local part of a possibly prefixed name (`libosinfo:os` → `os`). */
function local(name: string): string {
  const i = name.indexOf(':');
  return i < 0 ? name : name.slice(i + 1);
}

function child(el: Element, name: string): Element | undefined {
  return el.children.find((c) => c.name === name);
}

function childrenNamed(el: Element | undefined, name: string): Element[] {
  return el === undefined ? [] : el.children.filter((c) => c.name === name);
}

/** Parse XML text into its root element; malformed XML is a ConfigError at its line. */
function parseXml(text: string, file: string): Element {
  const valid = XMLValidator.validate(text);
  if (valid !== true) throw new ConfigError(file, [{ line: valid.err.line, field: '', message: `not well-formed XML: ${valid.err.msg}` }]);
  const parser = new XMLParser({
    preserveOrder: true,
    ignoreAttributes: false,
    attributeNamePrefix: '',
    parseTagValue: false,
    parseAttributeValue: false,
    trimValues: true,
    captureMetaData: true,
  });
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1);
  const lineAt = (offset: number): number => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  const roots = toElements(parser.parse(text) as unknown[], lineAt);
  if (roots.length !== 1) throw new ConfigError(file, [{ line: 1, field: '', message: `expected one root element <domain>, found ${roots.length}` }]);
  return roots[0]!;
}

/**
 * virScaleInteger (libvirt src/util/virutil.c): bytes from a value and a unit, or a
 * message. `dflt` is the scale of a value without a unit (1024 for memory elements).
 */
export function libvirtScale(value: string, unit: string | undefined, dflt: number): number | string {
  if (!/^\d+$/.test(value.trim())) return `expected a whole number, got ${JSON.stringify(value)}`;
  const v = Number(value.trim());
  let scale: number;
  if (unit === undefined || unit === '') scale = dflt;
  else if (['b', 'byte', 'bytes'].includes(unit.toLowerCase())) scale = 1;
  else {
    let base: number;
    if (unit.length === 1 || unit.slice(1).toLowerCase() === 'ib') base = 1024;
    else if (unit.length === 2 && unit[1]!.toLowerCase() === 'b') base = 1000;
    else return `unknown unit ${JSON.stringify(unit)} (libvirt takes b, bytes, KB, k or KiB, MB, M or MiB, GB, G or GiB, TB, T or TiB, PB, P or PiB, EB, E or EiB)`;
    const power = 'kmgtpe'.indexOf(unit[0]!.toLowerCase()) + 1;
    if (power === 0) return `unknown unit ${JSON.stringify(unit)} (libvirt takes b, bytes, KB, k or KiB, MB, M or MiB, GB, G or GiB, TB, T or TiB, PB, P or PiB, EB, E or EiB)`;
    scale = base ** power;
  }
  const bytes = v * scale;
  if (!Number.isSafeInteger(bytes)) return `${value} ${unit ?? 'KiB'} is too large`;
  return bytes;
}

/** A memory element's size in bytes as libvirt stores it: rounded up to a whole KiB. */
function memoryOf(el: Element, problems: ConfigProblem[]): number | null {
  const r = libvirtScale(el.text, el.attrs.unit, 1024);
  if (typeof r === 'string') {
    problems.push({ line: el.line, field: `<${el.name}>`, message: r });
    return null;
  }
  return Math.ceil(r / 1024) * 1024;
}

export interface LibvirtImportOptions {
  /** --image NAME[:VERSION]: the image for every domain, whatever its metadata says. */
  image?: string;
}

/** One domain XML file's text as a scenario guest; throws ConfigError with every problem. */
export function importLibvirtDomain(text: string, file: string, images: ImageCatalog, opts: LibvirtImportOptions = {}): ImportedGuest {
  const domain = parseXml(text, file);
  const problems: ConfigProblem[] = [];
  const notes: string[] = [];
  const at = (el: Element): string => `${file}:${el.line}`;
  if (domain.name !== 'domain') throw new ConfigError(file, [{ line: domain.line, field: '', message: `expected a libvirt <domain>, found <${domain.name}>` }]);
  const type = domain.attrs.type;
  if (type !== undefined && type !== 'kvm' && type !== 'qemu') {
    problems.push({ line: domain.line, field: '<domain type>', message: `expected a QEMU/KVM domain (type 'kvm' or 'qemu'), got ${JSON.stringify(type)}` });
  }

  // ---- name ----
  const nameEl = child(domain, 'name');
  let name = 'guest';
  if (nameEl === undefined || nameEl.text === '') problems.push({ line: domain.line, field: '<name>', message: 'missing: every libvirt domain has a name' });
  else {
    name = scenarioName(nameEl.text);
    if (name !== nameEl.text) notes.push(`${at(nameEl)}: domain name ${JSON.stringify(nameEl.text)} written as ${name} (scenario names are letters, digits, '.', '_' and '-')`);
  }

  // ---- NUMA cells (they also give the memory when <memory> is absent) ----
  const cpu = child(domain, 'cpu');
  const cells = cpu === undefined ? [] : childrenNamed(child(cpu, 'numa'), 'cell');
  let cellTotal = 0;
  let sharedCells = 0;
  let sharedBytes = 0;
  for (const c of cells) {
    const mem = c.attrs.memory;
    if (mem === undefined) {
      problems.push({ line: c.line, field: '<cell memory>', message: 'missing: a NUMA cell gives its memory' });
      continue;
    }
    const r = libvirtScale(mem, c.attrs.unit, 1024);
    if (typeof r === 'string') {
      problems.push({ line: c.line, field: '<cell memory>', message: r });
      continue;
    }
    cellTotal += r;
    if (c.attrs.memAccess === 'shared') {
      sharedCells++;
      sharedBytes += r;
    }
  }

  // ---- memory, currentMemory, maxMemory ----
  const memoryEl = child(domain, 'memory');
  let memory: number | null = null;
  if (memoryEl !== undefined) memory = memoryOf(memoryEl, problems);
  else if (cells.length > 0 && cellTotal > 0) {
    memory = cellTotal;
    notes.push(`${file}:${cells[0]!.line}: no <memory>: the NUMA cells' ${sizeWords(cellTotal)}, as libvirt computes it`);
  } else problems.push({ line: domain.line, field: '<memory>', message: 'missing: the domain says nothing of its memory' });
  const currentEl = child(domain, 'currentMemory');
  const cur = currentEl === undefined ? null : memoryOf(currentEl, problems);
  if (currentEl !== undefined && memory !== null) {
    if (cur !== null && cur < memory) {
      notes.push(`${at(currentEl)}: <currentMemory> ${sizeWords(cur)} is below <memory> ${sizeWords(memory)}: libvirt starts the guest with its balloon inflated to ${sizeWords(cur)}; the model has no balloon, so the guest gets all ${sizeWords(memory)} (write memory: ${cur / 1048576}MiB for the ballooned size)`);
    }
  }
  const maxEl = child(domain, 'maxMemory');
  if (maxEl !== undefined) {
    const max = memoryOf(maxEl, problems);
    if (max !== null) notes.push(`${at(maxEl)}: <maxMemory> ${sizeWords(max)}${maxEl.attrs.slots === undefined ? '' : ` in ${maxEl.attrs.slots} slots`}: memory hotplug is not modelled; the guest keeps its boot memory`);
  }
  const dimms = childrenNamed(child(domain, 'devices'), 'memory');
  for (const d of dimms) notes.push(`${at(d)}: <memory model='${d.attrs.model ?? '?'}'> device: counted in <memory>, as libvirt counts it; modelled as boot RAM`);
  if (memoryEl !== undefined && memory !== null && cells.length > 0 && cellTotal !== memory && dimms.length === 0) {
    problems.push({ line: cells[0]!.line, field: '<cell memory>', message: `the NUMA cells add up to ${sizeWords(cellTotal)}, not the <memory> ${sizeWords(memory)}: libvirt refuses such a domain` });
  }

  // ---- memoryBacking ----
  let memMerge = true;
  const backing = child(domain, 'memoryBacking');
  if (backing !== undefined) {
    for (const el of backing.children) {
      switch (el.name) {
        case 'nosharepages':
          memMerge = false;
          notes.push(`${at(el)}: <nosharepages/>: QEMU runs with mem-merge=off, so KSM never sees this guest's RAM (mem_merge: off)`);
          break;
        case 'hugepages':
          memMerge = false;
          notes.push(`${at(el)}: <hugepages>: guest RAM on hugetlbfs is never merged by KSM (it ignores huge-page mappings), so it is modelled as unmergeable (mem_merge: off); huge pages are never swapped either, which the model does not show`);
          break;
        case 'access':
          if (el.attrs.mode === 'shared') {
            memMerge = false;
            notes.push(`${at(el)}: <access mode='shared'/>: RAM mapped shared is never merged by KSM (mem_merge: off)`);
          }
          break;
        case 'locked':
          notes.push(`${at(el)}: <locked/>: guest RAM locked in host memory (never swapped) is not modelled`);
          break;
        case 'source':
          notes.push(`${at(el)}: <source type='${el.attrs.type ?? 'anonymous'}'/>: modelled as anonymous memory`);
          break;
        case 'allocation':
          if (el.attrs.mode === 'immediate') notes.push(`${at(el)}: <allocation mode='immediate'/>: preallocated RAM is not modelled; the guest touches only what its image writes`);
          break;
        case 'discard':
          notes.push(`${at(el)}: <discard/>: not modelled`);
          break;
        default:
          notes.push(`${at(el)}: <${el.name}> in <memoryBacking>: not modelled`);
      }
    }
  }
  if (cells.length > 0 && sharedCells === cells.length) {
    if (memMerge) notes.push(`${file}:${cells[0]!.line}: every NUMA cell has memAccess='shared': RAM mapped shared is never merged by KSM (mem_merge: off)`);
    memMerge = false;
  } else if (sharedCells > 0 && memMerge) {
    notes.push(`${file}:${cells[0]!.line}: ${sharedCells} of ${cells.length} NUMA cells (${sizeWords(sharedBytes)}) have memAccess='shared' and would never be merged; the model merges a guest whole or not at all: modelled as mergeable`);
  }

  // ---- NUMA placement ----
  const numatune = child(domain, 'numatune');
  if (numatune !== undefined) {
    const m = child(numatune, 'memory');
    const what = m === undefined ? `${childrenNamed(numatune, 'memnode').length} <memnode> bindings` : `mode ${m.attrs.mode ?? 'strict'}${m.attrs.nodeset === undefined ? '' : ` on host nodes ${m.attrs.nodeset}`}${m.attrs.placement === undefined ? '' : `, placement ${m.attrs.placement}`}`;
    notes.push(`${at(numatune)}: <numatune> (${what}) is not honoured: the model's host is one NUMA node, and KSM merges across all of it (merge_across_nodes=1)`);
  }
  if (cells.length > 1) notes.push(`${file}:${cells[0]!.line}: ${cells.length} guest NUMA cells: the model's guest is one flat RAM`);

  // ---- image ----
  let image: GuestImage | null = null;
  const osEl = findOsinfo(domain);
  if (opts.image !== undefined) {
    const r = imageFromOption(images, opts.image);
    if (typeof r === 'string') problems.push({ line: 0, field: '--image', message: r });
    else {
      image = r;
      if (osEl !== undefined) notes.push(`${at(osEl)}: libosinfo os ${osEl.attrs.id ?? '?'}; --image chose ${r.name} ${r.version}`);
    }
  } else if (osEl !== undefined && osEl.attrs.id !== undefined) {
    const r = imageFromOsinfo(images, osEl.attrs.id);
    if (typeof r === 'string') problems.push({ line: osEl.line, field: '<libosinfo:os>', message: r });
    else {
      image = r;
      notes.push(`${at(osEl)}: libosinfo os ${osEl.attrs.id} is image ${r.name} ${r.version}`);
    }
  } else {
    problems.push({ line: domain.line, field: '', message: noImageMessage(images) });
  }

  let memoryBytes = 0;
  if (memory !== null) {
    memoryBytes = wholeMiB(memory, memoryEl === undefined ? file : at(memoryEl), '<memory>', notes);
    if (image !== null) {
      const fit = imageFits(image, memoryBytes);
      if (fit !== null) problems.push({ line: memoryEl?.line ?? domain.line, field: '<memory>', message: fit });
    }
  }
  if (problems.length > 0) throw new ConfigError(file, problems.sort((a, b) => a.line - b.line));
  return { name, memoryBytes, memMerge, image: image!, notes: sortNotes(notes, file) };
}

/** `<metadata><libosinfo:libosinfo><libosinfo:os id=...>`, whatever the prefix. */
function findOsinfo(domain: Element): Element | undefined {
  for (const m of childrenNamed(domain, 'metadata')) {
    for (const lib of m.children) {
      if (local(lib.name) !== 'libosinfo') continue;
      const os = lib.children.find((c) => local(c.name) === 'os');
      if (os !== undefined) return os;
    }
  }
  return undefined;
}
