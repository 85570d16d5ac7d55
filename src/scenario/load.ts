import { readFileSync } from 'node:fs';
import { ConfigError } from '../vmm/config.js';
import type { ImageCatalog } from '../vmm/image.js';
import { displayName, loadImageCatalog } from './images.js';
import { parseScenario, type Scenario } from './schema.js';

/**
 * Read and validate a scenario file. Messages name the file as given, relative to
 * the working directory when it lies below it.
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
  return parseScenario(text, display, images);
}
