import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadImageCatalog } from '../../src/scenario/images.js';
import { formatImport, imageFromOsinfo, type ImportedGuest } from '../../src/scenario/import.js';
import { importLibvirtDomain, libvirtScale } from '../../src/scenario/import-libvirt.js';
import { importQemuCommandLine, parseQemuOpts, parseQemuSize, qemuArgsFromArgv, qemuArgsFromFile } from '../../src/scenario/import-qemu.js';
import { parseScenario } from '../../src/scenario/schema.js';
import { ConfigError } from '../../src/vmm/config.js';

/**
 * The importers on realistic libvirt domain XML (test/scenario/fixtures/libvirt: what
 * virt-install and virsh dumpxml write, with every memory element libvirt documents)
 * and QEMU command lines (test/scenario/fixtures/qemu: a libvirt log, a wrapper script,
 * a /proc/PID/cmdline), against the package's guest images.
 */

const images = loadImageCatalog();
const fixture = (p: string): string => readFileSync(fileURLToPath(new URL(`./fixtures/${p}`, import.meta.url)), 'utf8');
const MiB = 1024 * 1024;

/** What an import gives, compactly. */
function summary(g: ImportedGuest): unknown {
  return { name: g.name, image: `${g.image.name} ${g.image.version}`, memoryMiB: g.memoryBytes / MiB, memMerge: g.memMerge, notes: g.notes };
}

function libvirtError(file: string, opts = {}): string {
  try {
    importLibvirtDomain(fixture(`libvirt/${file}`), file, images, opts);
  } catch (e) {
    if (e instanceof ConfigError) return e.message;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('libvirt: units as virScaleInteger reads them (memory elements default to KiB)', () => {
  it('no unit is KiB; b and bytes; one letter and iB are powers of 1024; two letters ending in B are powers of 1000; any case', () => {
    const cases: [string, string | undefined, number][] = [
      ['1024', undefined, 1024 * 1024],
      ['4096', 'b', 4096],
      ['4096', 'bytes', 4096],
      ['1', 'k', 1024],
      ['1', 'KiB', 1024],
      ['1', 'KB', 1000],
      ['2', 'M', 2 * MiB],
      ['2', 'mib', 2 * MiB],
      ['2', 'MB', 2_000_000],
      ['1', 'G', 1024 ** 3],
      ['1', 'GiB', 1024 ** 3],
      ['1', 'GB', 1e9],
      ['1', 'T', 1024 ** 4],
      ['1', 'TB', 1e12],
      ['1', 'PiB', 1024 ** 5],
    ];
    for (const [v, unit, bytes] of cases) expect([v, unit, libvirtScale(v, unit, 1024)]).toEqual([v, unit, bytes]);
  });

  it('refuses a unit it does not know, and a value that is not a whole number', () => {
    expect(libvirtScale('1', 'MiBs', 1024)).toBe('unknown unit "MiBs" (libvirt takes b, bytes, KB, k or KiB, MB, M or MiB, GB, G or GiB, TB, T or TiB, PB, P or PiB, EB, E or EiB)');
    expect(libvirtScale('1.5', 'GiB', 1024)).toBe('expected a whole number, got "1.5"');
  });
});

describe('libvirt: domain XML as scenario guests', () => {
  it('a virt-install domain: libosinfo picks fedora 13; currentMemory below memory is the balloon the model does not have', () => {
    expect(summary(importLibvirtDomain(fixture('libvirt/fedora13-web.xml'), 'web.xml', images))).toEqual({
      name: 'web-1',
      image: 'fedora 13',
      memoryMiB: 1024,
      memMerge: true,
      notes: [
        'web.xml:6: libosinfo os http://fedoraproject.org/fedora/13 is image fedora 13',
        'web.xml:10: <currentMemory> 768 MiB is below <memory> 1 GiB: libvirt starts the guest with its balloon inflated to 768 MiB; the model has no balloon, so the guest gets all 1 GiB (write memory: 768MiB for the ballooned size)',
      ],
    });
  });

  it('<nosharepages/> is mem_merge off; a name with a space is made a scenario name; <locked/> is noted', () => {
    expect(summary(importLibvirtDomain(fixture('libvirt/win2008-nosharepages.xml'), 'ad.xml', images))).toEqual({
      name: 'ad-controller',
      image: 'windows 2008',
      memoryMiB: 2048,
      memMerge: false,
      notes: [
        'ad.xml:4: domain name "ad controller" written as ad-controller (scenario names are letters, digits, \'.\', \'_\' and \'-\')',
        'ad.xml:7: libosinfo os http://microsoft.com/win/2k8 is image windows 2008',
        'ad.xml:13: <nosharepages/>: QEMU runs with mem-merge=off, so KSM never sees this guest\'s RAM (mem_merge: off)',
        'ad.xml:14: <locked/>: guest RAM locked in host memory (never swapped) is not modelled',
      ],
    });
  });

  it('hugepages are never merged (mem_merge off); maxMemory, preallocation, numatune and NUMA cells are reported as not honoured', () => {
    expect(summary(importLibvirtDomain(fixture('libvirt/ubuntu-hugepages-numa.xml'), 'db.xml', images))).toEqual({
      name: 'db-numa',
      image: 'ubuntu 10.04',
      memoryMiB: 4096,
      memMerge: false,
      notes: [
        'db.xml:5: libosinfo os http://ubuntu.com/ubuntu/10.04 is image ubuntu 10.04',
        'db.xml:8: <maxMemory> 16 GiB in 16 slots: memory hotplug is not modelled; the guest keeps its boot memory',
        'db.xml:12: <hugepages>: guest RAM on hugetlbfs is never merged by KSM (it ignores huge-page mappings), so it is modelled as unmergeable (mem_merge: off); huge pages are never swapped either, which the model does not show',
        "db.xml:15: <allocation mode='immediate'/>: preallocated RAM is not modelled; the guest touches only what its image writes",
        "db.xml:18: <numatune> (mode strict on host nodes 0-1) is not honoured: the model's host is one NUMA node, and KSM merges across all of it (merge_across_nodes=1)",
        "db.xml:28: 2 guest NUMA cells: the model's guest is one flat RAM",
      ],
    });
  });

  it('memory in MB (powers of 1000) is rounded up to KiB as libvirt does, then to a whole MiB; shared access is never merged', () => {
    // 1000 MB = 1000000000 bytes → 976563 KiB (1000000512 bytes) → 954 MiB.
    expect(summary(importLibvirtDomain(fixture('libvirt/debian-vhost-user.xml'), 'dpdk.xml', images))).toEqual({
      name: 'dpdk-router',
      image: 'debian 6.0',
      memoryMiB: 954,
      memMerge: false,
      notes: [
        'dpdk.xml:5: libosinfo os http://debian.org/debian/6 is image debian 6.0',
        'dpdk.xml:8: <memory> 1000000512 bytes is not a whole number of MiB: rounded up to 954 MiB',
        "dpdk.xml:10: <source type='memfd'/>: modelled as anonymous memory",
        "dpdk.xml:11: <access mode='shared'/>: RAM mapped shared is never merged by KSM (mem_merge: off)",
      ],
    });
  });

  it('--image chooses the image whatever the metadata says', () => {
    expect(summary(importLibvirtDomain(fixture('libvirt/fedora38.xml'), 'new.xml', images, { image: 'fedora:12' }))).toEqual({
      name: 'new-web',
      image: 'fedora 12',
      memoryMiB: 2048,
      memMerge: true,
      notes: ['new.xml:5: libosinfo os http://fedoraproject.org/fedora/38; --image chose fedora 12'],
    });
  });

  it('no OS metadata, an OS the catalog lacks: a message naming the choices', () => {
    expect(libvirtError('no-os.xml')).toBe(
      'no-os.xml:1: no OS named (no <libosinfo:os> metadata), so no guest image can be chosen (images: busybox 6.1, debian 6.0, fedora 12, fedora 13, ubuntu 10.04, windows 2008); choose one with --image NAME[:VERSION]',
    );
    expect(libvirtError('fedora38.xml')).toBe(
      'fedora38.xml:5: <libosinfo:os>: libosinfo os http://fedoraproject.org/fedora/38 (fedora 38) has no image in the catalog (images: busybox 6.1, debian 6.0, fedora 12, fedora 13, ubuntu 10.04, windows 2008); choose one with --image NAME[:VERSION]',
    );
  });

  it('malformed XML, and every problem of a domain at once with its line', () => {
    expect(libvirtError('broken.xml')).toBe("broken.xml:4: not well-formed XML: Expected closing tag 'memory' (opened in line 3, col 3) instead of closing tag 'domain'.");
    expect(libvirtError('bad-units.xml')).toBe(
      [
        'bad-units.xml:1: <domain type>: expected a QEMU/KVM domain (type \'kvm\' or \'qemu\'), got "xen"',
        'bad-units.xml:3: <memory>: unknown unit "MiBs" (libvirt takes b, bytes, KB, k or KiB, MB, M or MiB, GB, G or GiB, TB, T or TiB, PB, P or PiB, EB, E or EiB)',
        'bad-units.xml:4: <currentMemory>: expected a whole number, got "lots"',
      ].join('\n'),
    );
  });

  it('a guest too small for its image', () => {
    const xml = "<domain type='kvm'>\n  <name>tiny</name>\n  <memory unit='MiB'>64</memory>\n  <metadata><libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'><libosinfo:os id='http://fedoraproject.org/fedora/13'/></libosinfo:libosinfo></metadata>\n</domain>\n";
    expect(() => importLibvirtDomain(xml, 'small.xml', images)).toThrow('small.xml:3: <memory>: image fedora 13 needs at least 256 MiB of RAM, the guest has 64 MiB');
  });

  it('libosinfo ids: Windows short names, Debian major versions', () => {
    expect(imageFromOsinfo(images, 'http://microsoft.com/win/2k8')).toMatchObject({ name: 'windows', version: '2008' });
    expect(imageFromOsinfo(images, 'http://debian.org/debian/6')).toMatchObject({ name: 'debian', version: '6.0' });
    expect(imageFromOsinfo(images, 'http://opensuse.org/opensuse/15.5')).toBe(
      'libosinfo os http://opensuse.org/opensuse/15.5 is not one the importer knows (images: busybox 6.1, debian 6.0, fedora 12, fedora 13, ubuntu 10.04, windows 2008); choose one with --image NAME[:VERSION]',
    );
  });
});

describe('QEMU: options as QemuOpts and qemu_strtosz read them', () => {
  it('-m sizes: a bare number is MiB, suffixes B K M G T, fractions', () => {
    expect([parseQemuSize('2048', MiB), parseQemuSize('2G', MiB), parseQemuSize('2097152k', MiB), parseQemuSize('1.5G', MiB), parseQemuSize('512m', MiB), parseQemuSize('lots', MiB)]).toEqual([
      2048 * MiB,
      2048 * MiB,
      2048 * MiB,
      1536 * MiB,
      512 * MiB,
      null,
    ]);
  });

  it('QemuOpts: the implied key, ,, for a comma, a bare flag is on', () => {
    expect([...parseQemuOpts('q35,mem-merge=off,usb', 'type')]).toEqual([
      ['type', 'q35'],
      ['mem-merge', 'off'],
      ['usb', 'on'],
    ]);
    expect([...parseQemuOpts('memory-backend-file,id=m,mem-path=/srv/a,,b', 'qom-type')]).toEqual([
      ['qom-type', 'memory-backend-file'],
      ['id', 'm'],
      ['mem-path', '/srv/a,b'],
    ]);
  });
});

describe('QEMU: command lines as scenario guests', () => {
  const argv = (line: string, image = 'fedora:13'): unknown => summary(importQemuCommandLine(qemuArgsFromArgv(line.split(' ')), 'qemu', images, { image }));

  it('-m in every spelling: 2048, 2G, size=4G,slots=4,maxmem=8G', () => {
    expect(argv('qemu-system-x86_64 -enable-kvm -m 2048 -name web')).toEqual({ name: 'web', image: 'fedora 13', memoryMiB: 2048, memMerge: true, notes: [] });
    expect(argv('qemu-kvm -m 2G -name guest=web,debug-threads=on')).toEqual({ name: 'web', image: 'fedora 13', memoryMiB: 2048, memMerge: true, notes: [] });
    expect(argv('qemu-kvm -name w -m size=4G,slots=4,maxmem=8G')).toEqual({
      name: 'w',
      image: 'fedora 13',
      memoryMiB: 4096,
      memMerge: true,
      notes: ['qemu: argument 5: -m slots=4,maxmem=8G: memory hotplug room is not modelled'],
    });
  });

  it('no -m is QEMU’s 128 MiB default; no -name names the guest "guest"', () => {
    expect(argv('qemu-system-x86_64 -nographic', 'debian:6.0')).toEqual({
      name: 'guest',
      image: 'debian 6.0',
      memoryMiB: 128,
      memMerge: true,
      notes: ["qemu: no -m: QEMU's default, 128 MiB", 'qemu: no -name: the guest is called guest'],
    });
  });

  it('-machine mem-merge=off, and a hugetlbfs -mem-path: never merged', () => {
    expect(argv('qemu-kvm -name a -m 1G -machine pc,mem-merge=off')).toMatchObject({ memMerge: false, notes: ["qemu: KSM can never merge this guest's RAM: RAM (1 GiB, mem-merge=off) (mem_merge: off)"] });
    expect(argv('qemu-kvm -name a -m 1G -mem-path /dev/hugepages')).toMatchObject({ memMerge: false, notes: ["qemu: KSM can never merge this guest's RAM: RAM (1 GiB, -mem-path /dev/hugepages (hugetlbfs)) (mem_merge: off)"] });
  });

  it('memory backends per NUMA node, merge= overriding mem-merge; the model takes the majority and says so', () => {
    expect(
      argv('qemu-kvm -name n -machine q35,mem-merge=off -m 3G -object memory-backend-ram,id=r0,size=2G,merge=on -object memory-backend-ram,id=r1,size=1G -numa node,nodeid=0,memdev=r0 -numa node,nodeid=1,memdev=r1'),
    ).toEqual({
      name: 'n',
      image: 'fedora 13',
      memoryMiB: 3072,
      memMerge: true,
      notes: [
        "qemu: argument 13: 2 NUMA nodes: placement (host-nodes, policy) is not honoured; the model's host is one node",
        'qemu: 2 GiB of 3 GiB mergeable (r0 (2 GiB), r1 (1 GiB, mem-merge=off)); the model merges a guest whole or not at all: mem_merge: on',
      ],
    });
  });

  it('a pc-dimm adds its backend to the RAM', () => {
    expect(argv('qemu-kvm -name d -m 1G,slots=2,maxmem=4G -object memory-backend-ram,id=dimm1,size=512M -device pc-dimm,id=dimm1,memdev=dimm1')).toEqual({
      name: 'd',
      image: 'fedora 13',
      memoryMiB: 1536,
      memMerge: true,
      notes: ['qemu: argument 5: -m slots=2,maxmem=4G: memory hotplug room is not modelled', "qemu: argument 9: pc-dimm dimm1 adds 512 MiB to the guest's RAM; modelled as boot RAM"],
    });
  });

  it('a libvirt log: environment first, one option per line, JSON -object, -machine memory-backend', () => {
    const args = qemuArgsFromFile(fixture('qemu/web2-libvirt.log'), 'web-2.log');
    expect(args.slice(0, 3)).toEqual([
      { text: '/usr/bin/qemu-system-x86_64', line: 5, index: 1 },
      { text: '-name', line: 6, index: 2 },
      { text: 'guest=web-2,debug-threads=on', line: 6, index: 3 },
    ]);
    expect(summary(importQemuCommandLine(args, 'web-2.log', images, { image: 'fedora:13' }))).toEqual({ name: 'web-2', image: 'fedora 13', memoryMiB: 2048, memMerge: true, notes: [] });
  });

  it('a wrapper script: exec qemu; a shared hugetlbfs node and a merge=off node are never merged', () => {
    expect(summary(importQemuCommandLine(qemuArgsFromFile(fixture('qemu/db-numa.sh'), 'db.sh'), 'db.sh', images, { image: 'ubuntu:10.04' }))).toEqual({
      name: 'db',
      image: 'ubuntu 10.04',
      memoryMiB: 4096,
      memMerge: false,
      notes: ["db.sh: KSM can never merge this guest's RAM: mem0 (2 GiB, share=on), mem1 (2 GiB, merge=off) (mem_merge: off)", "db.sh:8: 2 NUMA nodes: placement (host-nodes, policy) is not honoured; the model's host is one node"],
    });
  });

  it('/proc/PID/cmdline: NUL-separated', () => {
    const args = qemuArgsFromFile(fixture('qemu/batch.cmdline'), 'batch.cmdline');
    expect(args.map((a) => a.text)).toEqual(['qemu-system-x86_64', '-machine', 'pc,accel=kvm,mem-merge=off', '-m', '2048', '-name', 'batch', '-nographic']);
    expect(summary(importQemuCommandLine(args, 'batch.cmdline', images, { image: 'fedora:13' }))).toMatchObject({ name: 'batch', memoryMiB: 2048, memMerge: false });
  });

  it('every problem at once, by argument position or file:line', () => {
    const problems = (args: Parameters<typeof importQemuCommandLine>[0], src: string, image?: string): string => {
      try {
        importQemuCommandLine(args, src, images, image === undefined ? {} : { image });
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    };
    expect(problems(qemuArgsFromArgv('kvmtool -m lots -numa node,memdev=ram9 -object memory-backend-ram,id=ram1,size=1G -machine mem-merge=maybe'.split(' ')), 'qemu', 'fedora:13')).toBe(
      [
        'qemu: argument 1 (kvmtool): expected a QEMU command (qemu-system-x86_64, qemu-kvm, ...)',
        'qemu: argument 3 (-m): expected a size like 2048 (MiB), 2G or size=4G,slots=4,maxmem=8G, got "lots"',
        'qemu: argument 5 (-numa): no memory backend with id "ram9" (-object memory-backend-...,id=ram9)',
        'qemu: argument 9 (-machine): mem-merge expects on or off, got "maybe"',
      ].join('\n'),
    );
    expect(problems(qemuArgsFromFile('qemu-kvm \\\n  -m 2G \\\n  -m size=x\n', 'x.log'), 'x.log', 'fedora:13')).toBe('x.log:3: -m: expected a size like 2048 (MiB), 2G or size=4G,slots=4,maxmem=8G, got "x"');
    expect(problems(qemuArgsFromArgv(['qemu-kvm', '-m', '2G']), 'qemu')).toBe(
      'qemu: a QEMU command line does not say which OS the guest runs: choose an image with --image NAME[:VERSION] (images: busybox 6.1, debian 6.0, fedora 12, fedora 13, ubuntu 10.04, windows 2008)',
    );
    expect(() => qemuArgsFromFile('qemu-kvm -m 2G\nqemu-kvm -m 1G\n', 'two.sh')).toThrow('two.sh:2: expected one QEMU command line, found a second command here (import one command line per file)');
  });
});

describe('formatImport: YAML a scenario takes', () => {
  it('a guests: fragment with each guest’s notes as comments, or a whole scenario that parses', () => {
    const guests = [importLibvirtDomain(fixture('libvirt/fedora13-web.xml'), 'web.xml', images), importLibvirtDomain(fixture('libvirt/win2008-nosharepages.xml'), 'ad.xml', images)];
    const yaml = formatImport(guests, 'samepage import libvirt web.xml ad.xml', { name: 'imported', hostMemoryBytes: 4096 * MiB, hostSwapBytes: 1024 * MiB, duration: '5min' });
    expect(yaml.split('\n').filter((l) => !l.trimStart().startsWith('#'))).toEqual([
      'name: imported',
      'host:',
      '  memory: 4GiB',
      '  swap: 1GiB',
      'duration: 5min',
      'guests:',
      '  - name: web-1',
      '    image: fedora',
      '    version: "13"',
      '    memory: 1GiB',
      '    mem_merge: on',
      '  - name: ad-controller',
      '    image: windows',
      '    version: "2008"',
      '    memory: 2GiB',
      '    mem_merge: off',
      '',
    ]);
    const s = parseScenario(yaml, 'imported.yaml', images);
    expect(s.guests.map((g) => [g.name, g.image, g.version, g.memoryMiB, g.memMerge])).toEqual([
      ['web-1', 'fedora', '13', 1024, true],
      ['ad-controller', 'windows', '2008', 2048, false],
    ]);
  });
});
