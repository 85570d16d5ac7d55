import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ImageLoadError, defaultGuestsDir, loadImageCatalog } from '../../src/scenario/images.js';
import { ConfigError } from '../../src/vmm/config.js';
import { countPageKinds, layoutGuest } from '../../src/vmm/image.js';

const MiB = 1024 * 1024;
const FIXTURES = fileURLToPath(new URL('../vmm/fixtures/', import.meta.url));
const TINY = join(FIXTURES, 'tiny-1.yaml');

const made: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'samepage-images-'));
  made.push(d);
  return d;
}
afterEach(() => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error, nothing was thrown');
}

describe('the shipped guest images', () => {
  it('live in the package root guests/ directory', () => {
    expect(defaultGuestsDir()).toBe(resolve(fileURLToPath(new URL('../../guests', import.meta.url))));
  });

  it('all parse, and the catalog lists them by name, then version, named as guests/<file>', () => {
    const list = loadImageCatalog().list();
    expect(list.map((i) => [i.name, i.version, i.os, i.file])).toEqual([
      ['busybox', '6.1', 'linux', 'guests/busybox-6.1.yaml'],
      ['debian', '6.0', 'linux', 'guests/debian-6.0.yaml'],
      ['fedora', '12', 'linux', 'guests/fedora-12.yaml'],
      ['fedora', '13', 'linux', 'guests/fedora-13.yaml'],
      ['ubuntu', '10.04', 'linux', 'guests/ubuntu-10.04.yaml'],
      ['windows', '2008', 'windows', 'guests/windows-2008.yaml'],
    ]);
  });

  it('give the newest fedora when no version is named', () => {
    expect(loadImageCatalog().get('fedora').version).toBe('13');
  });

  it('boot in 512 MiB, and each in its minimum but not a page less', () => {
    const mins: string[] = [];
    for (const im of loadImageCatalog().list()) {
      expect(layoutGuest(im, 512 * MiB).ramPages).toBe(131_072);
      expect(layoutGuest(im, im.minRamBytes).ramPages).toBe(im.minRamBytes / 4096);
      expect(() => layoutGuest(im, im.minRamBytes - 4096)).toThrow(`image ${im.name} ${im.version} needs at least`);
      mins.push(`${im.name} ${im.version}: ${im.minRamBytes / MiB} MiB`);
    }
    expect(mins).toEqual(['busybox 6.1: 96 MiB', 'debian 6.0: 128 MiB', 'fedora 12: 256 MiB', 'fedora 13: 256 MiB', 'ubuntu 10.04: 128 MiB', 'windows 2008: 512 MiB']);
  });

  it('write 100-190 MiB at boot in 512 MiB for 2010-era Linux, and all of it for Windows and busybox 6.1 (init_on_free=1)', () => {
    const written: string[] = [];
    for (const im of loadImageCatalog().list()) {
      const kinds = countPageKinds(im, layoutGuest(im, 512 * MiB));
      const untouched = kinds.reduce((n, r) => n + r.kinds.untouched, 0);
      written.push(`${im.name} ${im.version}: ${Math.round(((131_072 - untouched) * 4096) / MiB)} MiB`);
    }
    expect(written).toEqual(['busybox 6.1: 512 MiB', 'debian 6.0: 103 MiB', 'fedora 12: 178 MiB', 'fedora 13: 189 MiB', 'ubuntu 10.04: 128 MiB', 'windows 2008: 512 MiB']);
  });
});

describe('loadImageCatalog', () => {
  it('reads *.yaml, *.yml and *.json in file-name order, ignoring other files, naming them relative to the working directory', () => {
    const list = loadImageCatalog(FIXTURES).list();
    expect(list.map((i) => `${i.name} ${i.version} ${i.file}`)).toEqual(['tiny 1 test/vmm/fixtures/tiny-1.yaml', 'tiny 2 test/vmm/fixtures/tiny-2.json']);
  });

  it('reads a .yml file and skips a README', () => {
    const dir = tempDir();
    copyFileSync(TINY, join(dir, 'tiny.yml'));
    writeFileSync(join(dir, 'README.md'), '# not a descriptor\n');
    expect(loadImageCatalog(dir).list().map((i) => i.file)).toEqual([`${dir}/tiny.yml`]);
  });

  it('throws the ConfigError of the one bad file', () => {
    const dir = tempDir();
    copyFileSync(TINY, join(dir, 'a.yaml'));
    writeFileSync(join(dir, 'b.yaml'), 'name: b\n');
    const e = thrown(() => loadImageCatalog(dir));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e).not.toBeInstanceOf(ImageLoadError);
    expect(e.message).toBe(
      [
        `${dir}/b.yaml:1: version: missing (expected string)`,
        `${dir}/b.yaml:1: os: expected 'linux' or 'windows', got nothing`,
        `${dir}/b.yaml:1: description: missing (expected string)`,
        `${dir}/b.yaml:1: boot_time: missing (expected string)`,
        `${dir}/b.yaml:1: min_ram: missing (expected string)`,
        `${dir}/b.yaml:1: regions: missing (expected array)`,
        `${dir}/b.yaml:1: workload: missing (expected object)`,
      ].join('\n'),
    );
  });

  it('lists every bad file in one error', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'a.yaml'), 'name: [\n');
    copyFileSync(TINY, join(dir, 'b.yaml'));
    writeFileSync(join(dir, 'c.json'), '{ "name": "c" }');
    const e = thrown(() => loadImageCatalog(dir));
    expect(e).toBeInstanceOf(ImageLoadError);
    expect((e as ImageLoadError).errors.map((x) => x.file)).toEqual([`${dir}/a.yaml`, `${dir}/c.json`]);
    expect((e as ImageLoadError).file).toBe(`${dir}/`);
    expect(e.message.split('\n').map((l) => l.replace(dir, '<dir>'))).toEqual([
      '<dir>/a.yaml:2: not valid YAML or JSON: Flow sequence in block collection must be sufficiently indented and end with a ]',
      '<dir>/c.json:1: version: missing (expected string)',
      "<dir>/c.json:1: os: expected 'linux' or 'windows', got nothing",
      '<dir>/c.json:1: description: missing (expected string)',
      '<dir>/c.json:1: boot_time: missing (expected string)',
      '<dir>/c.json:1: min_ram: missing (expected string)',
      '<dir>/c.json:1: regions: missing (expected array)',
      '<dir>/c.json:1: workload: missing (expected object)',
    ]);
  });

  it('refuses two files describing one image and version, naming both', () => {
    const dir = tempDir();
    copyFileSync(TINY, join(dir, 'tiny-1.yaml'));
    copyFileSync(TINY, join(dir, 'tiny-copy.yaml'));
    const e = thrown(() => loadImageCatalog(dir));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toBe(`${dir}/tiny-copy.yaml: image tiny 1 is already described in ${dir}/tiny-1.yaml`);
  });

  it('says which directory it cannot read', () => {
    const dir = join(tempDir(), 'missing');
    const e = thrown(() => loadImageCatalog(dir));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toBe(`${dir}/: cannot read the guest image directory (ENOENT)`);
  });
});
