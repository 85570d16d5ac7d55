/**
 * A `samepage plan` trial in a worker thread (piscina runs this module's default
 * export): one deterministic run of the trial's scenario, judged against the limits.
 * The scenario comes built and validated from the main thread; the image catalog is
 * loaded once per worker and directory.
 */
import { performance } from 'node:perf_hooks';
import type { KsmdCosts } from '../ksm/cost.js';
import { loadImageCatalog } from '../scenario/images.js';
import { runTrial, type PlanLimits, type TrialOutcome } from '../scenario/plan.js';
import type { Scenario } from '../scenario/schema.js';
import type { ImageCatalog } from '../vmm/image.js';

export interface TrialTask {
  scenario: Scenario;
  count: number;
  /** --images, or null for the package's guests/. */
  imagesDir: string | null;
  limits: PlanLimits;
  costs: KsmdCosts;
}

const catalogs = new Map<string | null, ImageCatalog>();

export default function trial(task: TrialTask): TrialOutcome {
  let images = catalogs.get(task.imagesDir);
  if (images === undefined) {
    images = task.imagesDir === null ? loadImageCatalog() : loadImageCatalog(task.imagesDir);
    catalogs.set(task.imagesDir, images);
  }
  return runTrial(task.scenario, task.count, images, task.limits, task.costs, () => performance.now());
}
