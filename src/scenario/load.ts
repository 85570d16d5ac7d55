import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { ConfigError } from '../vmm/config.js';
import type { ImageCatalog } from '../vmm/image.js';
import { displayName, loadImageCatalog } from './images.js';
import { parseScenario, type Scenario } from './schema.js';
import { readCapture, type Capture } from '../vmm/capture-file.js';
import { captureDigest } from '../vmm/capture-source.js';

/**
 * Capture files read so far, by path: a scenario that starts four copies of a
 * captured guest, or its variants, read and decompress the file once.
 */
const captures = new Map<string, { path: string; capture: Capture; digest: string }>();

/** Read a capture file (cached by path): its contents and the sha-256 of its bytes. Throws an Error naming the file. */
export function loadCapture(path: string): { path: string; capture: Capture; digest: string } {
  const hit = captures.get(path);
  if (hit !== undefined) return hit;
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read capture ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const r = { path, capture: readCapture(bytes, path), digest: captureDigest(bytes) };
  captures.set(path, r);
  return r;
}

/**
 * Read and validate a scenario file. Messages name the file as given, relative to
 * the working directory when it lies below it. Files the scenario names (a
 * ksmtuned.conf) are read relative to the scenario's own directory.
 */
export function loadScenario(path: string, images: ImageCatalog = loadImageCatalog()): Scenario {
  let text: string;
  const display = displayName(path);
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(display, [{ line: 0, field: '', message: `cannot read the file (${code ?? (e as Error).message})` }]);
  }
  const readFile = (p: string): string => readFileSync(isAbsolute(p) ? p : join(dirname(path), p), 'utf8');
  const readCapture = (p: string): { path: string; capture: Capture; digest: string } => loadCapture(displayName(isAbsolute(p) ? p : join(dirname(path), p)));
  return parseScenario(text, display, images, { readFile, readCapture });
}
