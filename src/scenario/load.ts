import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { ConfigError } from '../vmm/config.js';
import type { ImageCatalog } from '../vmm/image.js';
import { displayName, loadImageCatalog } from './images.js';
import { parseScenario, type Scenario } from './schema.js';

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
  return parseScenario(text, display, images, { readFile });
}
