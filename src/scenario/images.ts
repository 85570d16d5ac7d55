import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, type ConfigProblem } from '../vmm/config.js';
import { ImageCatalog, compareVersions, parseImage, type GuestImage } from '../vmm/image.js';

/**
 * Reading guest image descriptors from a directory. src/vmm parses text and does no
 * I/O; this layer finds the files, reads them and names them in messages.
 */

/** Descriptor files: YAML, or JSON (which the YAML parser reads too). */
const DESCRIPTOR = /\.(ya?ml|json)$/i;

/**
 * The package's `guests/` directory. This file is src/scenario/images.ts under tsx
 * and vitest, dist/scenario/images.js after tsc: two levels below the package root
 * either way, so one relative URL serves both.
 */
export function defaultGuestsDir(): string {
  return fileURLToPath(new URL('../../guests/', import.meta.url)).replace(/[\\/]$/, '');
}

/**
 * Several descriptors that cannot be used: every one's problems, each line naming
 * its own file. `file` is the directory (with a trailing '/'), so a caller that
 * prints "<file> cannot be used:" before the message says the right thing.
 */
export class ImageLoadError extends ConfigError {
  readonly errors: readonly ConfigError[];

  constructor(dir: string, errors: readonly ConfigError[]) {
    const problems: ConfigProblem[] = errors.flatMap((e) => e.problems);
    super(`${dir}/`, problems);
    this.message = errors.map((e) => e.message).join('\n');
    this.name = 'ImageLoadError';
    this.errors = errors;
  }
}

/** How a path is named in messages: relative to the working directory when below it. */
export function displayName(path: string): string {
  const rel = relative(process.cwd(), path);
  const shown = rel !== '' && !rel.startsWith('..') ? rel : path;
  return shown.split('\\').join('/');
}

/**
 * Read every descriptor (*.yaml, *.yml, *.json) in `dir`, in file-name order, into a
 * catalog. One bad file throws its ConfigError; several throw an ImageLoadError that
 * lists them all; two files describing the same image and version count as a
 * problem of the second one.
 */
export function loadImageCatalog(dir: string = defaultGuestsDir()): ImageCatalog {
  const dirName = displayName(dir);
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => DESCRIPTOR.test(n));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(`${dirName}/`, [{ line: 0, field: '', message: `cannot read the guest image directory (${code ?? (e as Error).message})` }]);
  }
  // Code-unit order, not localeCompare: the same on every machine.
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const images: GuestImage[] = [];
  const errors: ConfigError[] = [];
  for (const name of names) {
    const file = displayName(join(dir, name));
    try {
      let text: string;
      try {
        text = readFileSync(join(dir, name), 'utf8');
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new ConfigError(file, [{ line: 0, field: '', message: `cannot read the file (${code ?? (e as Error).message})` }]);
      }
      const image = parseImage(text, file);
      // The catalog would refuse the pair too, but as a plain Error; here it is a
      // problem of the file, listed with the others.
      const first = images.find((im) => im.name === image.name && compareVersions(im.version, image.version) === 0);
      if (first !== undefined) {
        throw new ConfigError(file, [{ line: 0, field: '', message: `image ${image.name} ${image.version} is already described in ${first.file}` }]);
      }
      images.push(image);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      errors.push(e);
    }
  }
  if (errors.length === 1) throw errors[0]!;
  if (errors.length > 1) throw new ImageLoadError(dirName, errors);
  return new ImageCatalog(images);
}
