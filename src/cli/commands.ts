/**
 * The `samepage` command's commands (src/cli/main.ts runs them): run guest-image
 * scenarios on a simulated KVM host with KSM, list the guest images, or show KSM on
 * the bare kernel.
 *
 * Exit codes: 0 success, 1 a scenario or image file that cannot be used (or a run
 * that failed, or an output that cannot be written), 2 a usage error, 3 (run and
 * resume with --fail-on-oom) a guest was OOM-killed or refused at start; plan has its
 * own (see PLAN_USAGE).
 */
import { readFileSync } from 'node:fs';
import { freemem } from 'node:os';
import { basename, dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { KernelError } from '../lib/errors.js';
import { ProgressBar } from '../report/progress.js';
import { renderChart } from '../report/svg.js';
import { formatSummary } from '../report/table.js';
import { toJson } from '../report/json.js';
import { toCsv } from '../report/csv.js';
import { defaultGuestsDir, loadImageCatalog } from '../scenario/images.js';
import { ScenarioRun, runScenario } from '../scenario/run.js';
import { estimateRun, type RunEstimate } from '../scenario/estimate.js';
import type { Scenario } from '../scenario/schema.js';
import type { RunResult } from '../scenario/types.js';
import { SnapshotError } from '../vmm/snapshot.js';
import { loadScenario } from '../scenario/load.js';
import { ConfigError, formatDuration, formatSize, parseDuration, parseSize } from '../vmm/config.js';
import { countPageKinds, layoutGuest, type ImageCatalog } from '../vmm/image.js';
import { displayName } from '../scenario/images.js';
import { formatImport, type ImportedGuest } from '../scenario/import.js';
import { importLibvirtDomain } from '../scenario/import-libvirt.js';
import { importQemuCommandLine, qemuArgsFromArgv, qemuArgsFromFile } from '../scenario/import-qemu.js';
import { KSMTUNED_CONF_VARIABLES, parseKsmtunedConf } from '../vmm/ksmtuned-conf.js';
import type { KsmPolicy } from '../vmm/host.js';
import { DEMO_USAGE, demoCommand } from './demo.js';
import { UsageError } from './usage.js';
import { PLAN_USAGE, planCommand } from './plan.js';
import { checkOutputs, guestCasualties, loadKsmdCosts, readText, writeOutput } from './outputs.js';
import { CAPTURE_USAGE, CaptureUsageError, captureCommand, describeCapture, loadCapture } from './capture.js';
import { CaptureFormatError } from '../vmm/capture-file.js';

const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const USAGE = `usage: samepage <command> [options]

Samepage models Linux KSM (2.6.33 mm/ksm.c) inside a simulated KVM host.

commands:
  run <scenario>   run a scenario file (YAML or JSON) and print its summary
  resume <file>    finish a run saved with 'run --save-at T --save FILE'
  plan <scenario>  how many copies of a guest fit on the scenario's host
  import <format>  libvirt domain XML, a QEMU command line or a ksmtuned.conf as scenario YAML
  images [FILE]    list the guest images, or describe a capture file
  capture          record what KSM would see of running processes or QEMU guests
  demo             KSM on the bare kernel: two processes, mostly identical
  help [command]   this text, or a command's

Run 'samepage <command> --help' for a command's options.
`;

const RUN_USAGE = `usage: samepage run <scenario.yaml|json> [options]

Runs the scenario on simulated time and prints a summary table per variant.

options:
  --json FILE      write the full timeline (every sample, every event) as JSON
  --csv FILE       write the samples as CSV, one row per sample per variant
  --svg FILE       write a chart of memory saved and free memory over time
                   (FILE '-' is standard output, for one of the three; the
                   summary then goes to standard error)
  --fail-on-oom    exit with status 3 when a guest was OOM-killed or refused at
                   start (the summary says which and when)
  --ksmd-costs FILE  ns per ksmd operation for the CPU estimate, as
                   bench/calibrate-ksmd.ts writes them (default: measured on the
                   development machine; see the README, "ksmd's CPU cost")
  --seed N         override the scenario's seed
  --variant NAME   run only this variant
  --images DIR     guest image descriptors (default: the package's guests/)
  --ksmtuned-conf FILE
                   run under ksmtuned configured from FILE (an /etc/ksmtuned.conf)
                   instead of the scenario's KSM policy and variants
  --check          run the kernel's deep invariant check at every sample (slow)
  --save-at T      at simulated time T (e.g. '90s'), save a snapshot of the host
  --save FILE      ... to FILE; the run then goes on ('samepage resume FILE' later
                   finishes it exactly as this run finishes)
  --estimate       print the estimate of the run's real memory and wall time on
                   this machine, and run nothing
  --force          run even when the estimate says the run will not fit in the
                   memory free on this machine
  --quiet          no progress bar
  -h, --help       this text

Before running, the run's real memory is estimated (see the README, "Estimating a
run"): when it exceeds the memory available now (MemAvailable), the run is refused
(exit 1) unless --force.

Every output path is checked before the run starts: one that cannot be written
fails at once (exit 1), with nothing run.

Exit status: 0 done, 1 a file that cannot be used or written, 2 a usage error,
3 with --fail-on-oom, a guest OOM-killed or refused at start.

Scenario format: see the README, section "Scenario files".
`;

const RESUME_USAGE = `usage: samepage resume <snapshot> [options]

Restores a host saved with 'samepage run --save-at T --save FILE' and runs the
scenario to its end, printing the same summary the uninterrupted run prints.

options:
  --json FILE      write the full timeline as JSON
  --csv FILE       write the samples as CSV
  --svg FILE       write the chart ('-' for standard output, as with run)
  --fail-on-oom    exit with status 3 when a guest was OOM-killed or refused at start
  --ksmd-costs FILE  ns per ksmd operation for the CPU estimate
  --images DIR     the image catalog the run used (default: the package's guests/):
                   the snapshot names each guest's image and restoring needs it
  --check          run the kernel's deep invariant check at every sample (slow)
  --quiet          no progress bar
  -h, --help       this text
`;

const IMPORT_USAGE = `usage: samepage import libvirt DOMAIN.xml... [options]
       samepage import qemu FILE... [options]
       samepage import qemu [options] -- QEMU-COMMAND-LINE...
       samepage import ksmtuned KSMTUNED.CONF

Prints scenario YAML made from an operator's own files: libvirt domains and QEMU
command lines become guests (a guests: list, or a whole scenario with
--host-memory); a ksmtuned.conf becomes a ksm: block. What the model does not
honour (a balloon, huge pages, NUMA placement...) is said in a comment above the
guest. A QEMU FILE holds one command line: as libvirt logs it (one option per line,
continued with '\\'), or NUL-separated as /proc/PID/cmdline holds it.

options:
  --image NAME[:VERSION]   the guest image for every guest (a QEMU command line
                           needs one; a domain's libosinfo metadata picks one otherwise)
  --images DIR             guest image descriptors (default: the package's guests/)
  --host-memory SIZE       print a whole scenario, for a host of SIZE (like 16GiB)
  --host-swap SIZE         ... with this much swap (default 0)
  --duration T             ... running this long (default 10min)
  --name NAME              ... named NAME (default import)
  -h, --help               this text
`;

const IMAGES_USAGE = `usage: samepage images [--images DIR] [--json]
       samepage images [--json] CAPTURE

Lists the guest images: name, version, OS, minimum RAM; what a guest of that RAM
writes at boot, and how it splits into page kinds (version: identical in every guest
of this image and version; image: in every version; zero; unique: per guest and boot);
boot time; the idle workload's dirty rate in pages per second.

With a capture file ('samepage capture'): per process, the pages captured, anonymous,
zero-filled, mapped to the zero page, in transparent huge pages, already KSM pages,
duplicated within the process and across processes; then each VMA.
`;

/** `samepage help <command>`: each command's usage. */
const COMMAND_USAGE: ReadonlyMap<string, string> = new Map([
  ['help', USAGE],
  ['run', RUN_USAGE],
  ['images', IMAGES_USAGE],
  ['resume', RESUME_USAGE],
  ['plan', PLAN_USAGE],
  ['import', IMPORT_USAGE],
  ['demo', DEMO_USAGE],
  ['capture', CAPTURE_USAGE],
]);

function version(): string {
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

function parse(argv: string[], usage: string, options: NonNullable<Parameters<typeof parseArgs>[0]>['options']): ReturnType<typeof parseArgs> {
  try {
    return parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify a positional argument.*$/, ''), usage);
  }
}

function loadImages(dir: string | undefined): ImageCatalog {
  return dir === undefined ? loadImageCatalog() : loadImageCatalog(dir);
}

function nonNegativeInt(name: string, v: string | undefined, usage: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new UsageError(`${name} needs a whole number, got ${JSON.stringify(v)}`, usage);
  return Number(v);
}

function runCommand(argv: string[]): number {
  const { values, positionals } = parse(argv, RUN_USAGE, {
    json: { type: 'string' },
    csv: { type: 'string' },
    svg: { type: 'string' },
    'fail-on-oom': { type: 'boolean' },
    'ksmd-costs': { type: 'string' },
    seed: { type: 'string' },
    variant: { type: 'string' },
    images: { type: 'string' },
    check: { type: 'boolean' },
    quiet: { type: 'boolean' },
    'save-at': { type: 'string' },
    save: { type: 'string' },
    'ksmtuned-conf': { type: 'string' },
    estimate: { type: 'boolean' },
    force: { type: 'boolean' },
  });
  if (values.help === true) {
    process.stdout.write(RUN_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'run needs a scenario file' : `run takes one scenario file, got ${positionals.length}`, RUN_USAGE);
  const path = positionals[0]!;
  const seed = nonNegativeInt('--seed', values.seed as string | undefined, RUN_USAGE);
  const images = loadImages(values.images as string | undefined);
  let scenario = loadScenario(path, images);
  const confPath = values['ksmtuned-conf'] as string | undefined;
  if (confPath !== undefined) {
    const conf = parseKsmtunedConf(readText(confPath), displayName(confPath));
    const ksm: KsmPolicy = { policy: 'ksmtuned', config: conf.config, maxKernelPages: null };
    scenario = { ...scenario, ksm, variants: [{ name: null, ksm, kernel: scenario.kernel, mergeDomains: true }] };
  }
  const saveAt = values['save-at'] === undefined ? undefined : parseTime('--save-at', values['save-at'] as string, RUN_USAGE);
  const savePath = values.save as string | undefined;
  if ((saveAt === undefined) !== (savePath === undefined)) throw new UsageError('--save-at and --save go together', RUN_USAGE);
  if (saveAt !== undefined && saveAt > scenario.durationMs) {
    throw new UsageError(`--save-at ${values['save-at'] as string} is after the end of the scenario (${formatDuration(scenario.durationMs)})`, RUN_USAGE);
  }
  if (saveAt !== undefined && values.variant === undefined && scenario.variants.length > 1) {
    throw new UsageError(`${scenario.file} has ${scenario.variants.length} variants: say which to save with --variant`, RUN_USAGE);
  }
  if (values.variant !== undefined && !scenario.variants.some((v) => v.name === values.variant)) {
    const names = scenario.variants.map((v) => v.name).filter((n) => n !== null);
    throw new UsageError(`${scenario.file} has no variant ${JSON.stringify(values.variant)} (${names.length === 0 ? 'it has no variants' : `its variants: ${names.join(', ')}`})`, RUN_USAGE);
  }
  checkOutputs(
    [
      { option: '--json', path: values.json as string | undefined, dashOk: true },
      { option: '--csv', path: values.csv as string | undefined, dashOk: true },
      { option: '--svg', path: values.svg as string | undefined, dashOk: true },
      { option: '--save', path: savePath, dashOk: false },
    ],
    RUN_USAGE,
  );
  const variants = values.variant === undefined ? scenario.variants : scenario.variants.filter((v) => v.name === values.variant);
  const estimates = (variants.length > 0 ? variants : scenario.variants).map((v) => estimateRun(scenario, images, v.ksm));
  const worst = estimates.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  const seconds = estimates.reduce((sum, e) => sum + e.seconds, 0);
  if (values.estimate === true) {
    process.stdout.write(formatEstimate(scenario.name, worst, seconds, estimates.length, availableBytes()));
    return 0;
  }
  const available = availableBytes();
  if (worst.bytes > available && values.force !== true) {
    process.stderr.write(
      `samepage: ${scenario.name} would need about ${formatSize(Math.round(worst.bytes))} of real memory, and ${formatSize(available)} is available on this machine: not run (--force runs it anyway; --estimate shows where the memory goes)\n`,
    );
    return 1;
  }
  const ksmdCosts = loadKsmdCosts(values['ksmd-costs'] as string | undefined);
  const bar = values.quiet === true ? null : new ProgressBar(process.stderr);
  const started = Date.now();
  const results = runScenario(scenario, {
    images,
    ...(seed === undefined ? {} : { seed }),
    ...(values.variant === undefined ? {} : { variant: values.variant as string }),
    checkInvariants: values.check === true,
    ksmdCosts,
    onProgress: progress(bar, scenario.name),
    onStep: step(bar, scenario.name),
    ...(saveAt === undefined
      ? {}
      : {
          saveAt,
          onSave: (bytes: Uint8Array) => {
            writeOutput(savePath!, bytes);
            bar?.done();
            process.stderr.write(`snapshot at ${formatDuration(saveAt)} written to ${savePath!} (${formatSize(bytes.length)})\n`);
          },
        }),
  });
  bar?.done();
  report(results, scenario, values, started);
  return values['fail-on-oom'] === true && guestCasualties(results) > 0 ? 3 : 0;
}

/** Memory available to a new run now: /proc/meminfo's MemAvailable, else what Node.js calls free. */
function availableBytes(): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m !== null) return Number(m[1]) * 1024;
  } catch {
    // Not Linux: fall through.
  }
  return freemem();
}

function formatEstimate(name: string, e: RunEstimate, seconds: number, runs: number, available: number): string {
  const mib = (b: number): string => formatSize(Math.round(b / 1048576) * 1048576);
  const lines = [
    `${name}: estimated real memory ${mib(e.bytes)} (${(e.hostBytes / e.bytes).toFixed(1)}× less than the ${formatSize(e.hostBytes)} of RAM and swap it models), ${mib(available)} available`,
    `  frames in use  ${mib(e.parts.frames).padStart(9)}  ${e.framesInUse} frames`,
    `  page tables    ${mib(e.parts.ptes).padStart(9)}  ${e.touchedPages} pages written at boot`,
    `  KSM metadata   ${mib(e.parts.ksm).padStart(9)}  an rmap_item per page scanned`,
    `  contents       ${mib(e.parts.contents).padStart(9)}  ${e.distinctContents} distinct generated pages`,
    `  fixed          ${mib(e.parts.fixed).padStart(9)}  Node.js, code, caches`,
    `estimated wall time ${formatDuration(Math.round(seconds * 1000))}${runs > 1 ? ` for ${runs} variants` : ''}: boot ${e.timeParts.boot.toFixed(0)} s, ksmd ${e.timeParts.scan.toFixed(0)} s (${e.pagesScanned} pages scanned), samples ${e.timeParts.samples.toFixed(0)} s (per variant)`,
    e.bytes > available ? 'it does not fit in the memory available: samepage run refuses it without --force' : 'it fits',
  ];
  return lines.join('\n') + '\n';
}

/** Between samples: the bar moves every simulated second, and says while guests are still booting (setup). */
function step(bar: ProgressBar | null, name: string): (variant: string | null, t: number, total: number, booting: number) => void {
  return (variant, t, total, booting) =>
    bar?.update(t / total, `${formatDuration(t)} / ${formatDuration(total)}  ${name}${variant === null ? '' : ` [${variant}]`}${booting > 0 ? `  (${booting} guest${booting === 1 ? '' : 's'} booting)` : ''}`);
}

function progress(bar: ProgressBar | null, name: string): (variant: string | null, t: number, total: number) => void {
  return (variant, t, total) => bar?.update(t / total, `${formatDuration(t)} / ${formatDuration(total)}  ${name}${variant === null ? '' : ` [${variant}]`}`);
}

/**
 * The summary, then the --json, --csv and --svg outputs. The summary goes to standard
 * output, or to standard error when one of the outputs does ('-'), so that standard
 * output holds nothing but that output.
 */
/** `fromMs`: where a resumed run started in this process (its summary covers the whole run, its wall time only this part). */
function report(results: RunResult[], scenario: Scenario, values: Record<string, unknown>, started: number, fromMs = 0): void {
  const wall = (Date.now() - started) / 1000;
  const outputs: [option: string, what: string, make: () => string][] = [
    ['json', 'timeline', () => toJson(results, { file: scenario.file, samepageVersion: version() })],
    ['csv', 'samples', () => toCsv(results)],
    ['svg', 'chart', () => renderChart(results, { title: scenario.name })],
  ];
  const toStdout = outputs.some(([o]) => values[o] === '-');
  const say = (text: string): void => void (toStdout ? process.stderr : process.stdout).write(text);
  say(formatSummary(results));
  const simulated = (scenario.durationMs - fromMs) / 1000;
  const resumed = fromMs > 0 ? ` (resumed at ${fromMs / 1000}s of ${scenario.durationMs / 1000}s)` : '';
  say(`\n(simulated ${results.length > 1 ? `${results.length} × ` : ''}${simulated}s${resumed} in ${wall.toFixed(1)}s)\n`);
  for (const [option, what, make] of outputs) {
    const path = values[option] as string | undefined;
    if (path === undefined) continue;
    writeOutput(path, make());
    if (path !== '-') say(`${what} written to ${path}\n`);
  }
}

function parseTime(name: string, v: string, usage: string): number {
  const ms = parseDuration(v);
  if (ms === null) throw new UsageError(`${name} needs a time like '90s' or '1min 30s', got ${JSON.stringify(v)}`, usage);
  return ms;
}

function resumeCommand(argv: string[]): number {
  const { values, positionals } = parse(argv, RESUME_USAGE, {
    json: { type: 'string' },
    csv: { type: 'string' },
    svg: { type: 'string' },
    'fail-on-oom': { type: 'boolean' },
    'ksmd-costs': { type: 'string' },
    images: { type: 'string' },
    check: { type: 'boolean' },
    quiet: { type: 'boolean' },
  });
  if (values.help === true) {
    process.stdout.write(RESUME_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'resume needs a snapshot file' : `resume takes one snapshot file, got ${positionals.length}`, RESUME_USAGE);
  const path = positionals[0]!;
  checkOutputs(
    [
      { option: '--json', path: values.json as string | undefined, dashOk: true },
      { option: '--csv', path: values.csv as string | undefined, dashOk: true },
      { option: '--svg', path: values.svg as string | undefined, dashOk: true },
    ],
    RESUME_USAGE,
  );
  const ksmdCosts = loadKsmdCosts(values['ksmd-costs'] as string | undefined);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new Error(`samepage: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const images = loadImages(values.images as string | undefined);
  let run: ScenarioRun;
  try {
    run = ScenarioRun.resume(bytes, images);
  } catch (e) {
    // Name the file: "snapshot truncated" alone does not say which.
    if (e instanceof SnapshotError) throw new SnapshotError(e.problem, `${path}: ${e.message}`);
    throw e;
  }
  const fromMs = run.host.now;
  process.stderr.write(`resuming ${run.scenario.name}${run.variant === null ? '' : ` [${run.variant}]`} at ${formatDuration(run.host.now)} of ${formatDuration(run.scenario.durationMs)}\n`);
  const bar = values.quiet === true ? null : new ProgressBar(process.stderr);
  const started = Date.now();
  const result = run.finish({ checkInvariants: values.check === true, ksmdCosts, onProgress: progress(bar, run.scenario.name) });
  bar?.done();
  report([result], run.scenario, values, started, fromMs);
  return values['fail-on-oom'] === true && guestCasualties([result]) > 0 ? 3 : 0;
}

/** Several files that cannot be used: each one's problems, then exit 1. */
class ConfigErrors extends Error {
  readonly errors: readonly ConfigError[];
  constructor(errors: readonly ConfigError[]) {
    super(errors.map((e) => e.message).join('\n'));
    this.errors = errors;
  }
}

function importCommand(argv: string[]): number {
  // Everything after `--` is the QEMU command line, options and all.
  const dash = argv.indexOf('--');
  const mine = dash < 0 ? argv : argv.slice(0, dash);
  const { values, positionals } = parse(mine, IMPORT_USAGE, {
    image: { type: 'string' },
    images: { type: 'string' },
    'host-memory': { type: 'string' },
    'host-swap': { type: 'string' },
    duration: { type: 'string' },
    name: { type: 'string' },
  });
  if (values.help === true) {
    process.stdout.write(IMPORT_USAGE);
    return 0;
  }
  const [format, ...files] = positionals;
  if (format === undefined) throw new UsageError('import needs a format: libvirt, qemu or ksmtuned', IMPORT_USAGE);
  const header = `samepage import ${argv.join(' ')}`;
  if (format === 'ksmtuned') {
    if (files.length !== 1 || dash >= 0) throw new UsageError('import ksmtuned takes one ksmtuned.conf', IMPORT_USAGE);
    const conf = parseKsmtunedConf(readText(files[0]!), displayName(files[0]!));
    const lines = [`# ${header}`, 'ksm:', '  policy: ksmtuned'];
    for (const [variable, field] of Object.entries(KSMTUNED_CONF_VARIABLES)) {
      const v = conf.config[field];
      if (v === undefined) continue;
      const key = variable.replace(/^KSM_/, '').toLowerCase();
      lines.push(`  ${key}: ${field === 'monitorInterval' ? `${v}s` : v}`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  }
  if (format !== 'libvirt' && format !== 'qemu') throw new UsageError(`import: unknown format ${JSON.stringify(format)} (libvirt, qemu or ksmtuned)`, IMPORT_USAGE);
  const images = loadImages(values.images as string | undefined);
  const image = values.image as string | undefined;
  const guests: ImportedGuest[] = [];
  const errors: ConfigError[] = [];
  const add = (f: () => ImportedGuest): void => {
    try {
      guests.push(f());
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      errors.push(e);
    }
  };
  if (format === 'libvirt') {
    if (dash >= 0) throw new UsageError("'--' is for a QEMU command line: import qemu -- ...", IMPORT_USAGE);
    if (files.length === 0) throw new UsageError('import libvirt needs one or more domain XML files', IMPORT_USAGE);
    for (const f of files) add(() => importLibvirtDomain(readText(f), displayName(f), images, image === undefined ? {} : { image }));
  } else if (dash >= 0) {
    if (files.length > 0) throw new UsageError('import qemu takes files or a command line after --, not both', IMPORT_USAGE);
    add(() => importQemuCommandLine(qemuArgsFromArgv(argv.slice(dash + 1)), 'qemu command line', images, image === undefined ? {} : { image }));
  } else {
    if (files.length === 0) throw new UsageError('import qemu needs a file with a command line, or the command line after --', IMPORT_USAGE);
    for (const f of files) {
      const shown = displayName(f);
      add(() => importQemuCommandLine(qemuArgsFromFile(readText(f), shown), shown, images, { defaultName: basename(f, extname(f)), ...(image === undefined ? {} : { image }) }));
    }
  }
  if (errors.length > 0) throw errors.length === 1 ? errors[0]! : new ConfigErrors(errors);
  // Two guests of one name: the later ones get -2, -3...
  const seen = new Map<string, number>();
  for (const g of guests) {
    const n = (seen.get(g.name) ?? 0) + 1;
    seen.set(g.name, n);
    if (n > 1) {
      g.notes.push(`the name ${g.name} is taken by an earlier guest: written as ${g.name}-${n}`);
      g.name = `${g.name}-${n}`;
    }
  }
  let shell = null;
  if (values['host-memory'] !== undefined) {
    const memory = parseSizeOption('--host-memory', values['host-memory'] as string);
    const swap = values['host-swap'] === undefined ? 0 : parseSizeOption('--host-swap', values['host-swap'] as string);
    const duration = (values.duration as string | undefined) ?? '10min';
    if (parseDuration(duration) === null) throw new UsageError(`--duration needs a time like '10min', got ${JSON.stringify(duration)}`, IMPORT_USAGE);
    shell = { name: (values.name as string | undefined) ?? 'import', hostMemoryBytes: memory, hostSwapBytes: swap, duration };
  } else {
    for (const k of ['host-swap', 'duration', 'name']) {
      if (values[k] !== undefined) throw new UsageError(`--${k} goes with --host-memory (a whole scenario)`, IMPORT_USAGE);
    }
  }
  process.stdout.write(formatImport(guests, header, shell));
  return 0;
}

function parseSizeOption(name: string, v: string): number {
  const bytes = /^\d+$/.test(v) ? Number(v) * 1024 * 1024 : parseSize(v);
  if (bytes === null || bytes % (1024 * 1024) !== 0) throw new UsageError(`${name} needs a size like '16GiB' (a bare number is MiB), got ${JSON.stringify(v)}`, IMPORT_USAGE);
  return bytes;
}

function imagesCommand(argv: string[]): number {
  const { values, positionals } = parse(argv, IMAGES_USAGE, { images: { type: 'string' }, json: { type: 'boolean' } });
  if (values.help === true) {
    process.stdout.write(IMAGES_USAGE);
    return 0;
  }
  if (positionals.length === 1 && values.images === undefined) {
    process.stdout.write(describeCapture(loadCapture(positionals[0]!), positionals[0]!, values.json === true));
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`images takes at most one capture file (and then no --images), got ${positionals.join(' ')}`, IMAGES_USAGE);
  const catalog = loadImages(values.images as string | undefined);
  const list = catalog.list();
  if (list.length === 0) {
    // An empty table would look like success: most likely the wrong directory.
    throw new Error(`samepage: no guest image descriptors (*.yaml, *.yml, *.json) in ${(values.images as string | undefined) ?? defaultGuestsDir()}`);
  }
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(list.map((i) => ({ name: i.name, version: i.version, os: i.os, description: i.description, file: i.file, minRamBytes: i.minRamBytes, bootMs: i.bootMs, dirtyRate: i.workload.dirtyRate })), null, 2)}\n`);
    return 0;
  }
  const rows = list.map((i) => {
    // What a guest of the minimum RAM writes at boot, by kind: version and image pages
    // merge across guests, zero pages into one page, unique pages not at all.
    const kinds = { version: 0, image: 0, zero: 0, unique: 0 };
    for (const r of countPageKinds(i, layoutGuest(i, i.minRamBytes))) {
      for (const k of ['version', 'image', 'zero', 'unique'] as const) kinds[k] += r.kinds[k];
    }
    const written = kinds.version + kinds.image + kinds.zero + kinds.unique;
    const pct = (n: number): string => `${Math.round((100 * n) / Math.max(1, written))}%`;
    const mix = `${pct(kinds.version)} ${pct(kinds.image)} ${pct(kinds.zero)} ${pct(kinds.unique)}`;
    return [i.name, i.version, i.os, formatSize(i.minRamBytes), formatSize(written * 4096), mix, `${i.bootMs / 1000}s`, `${i.workload.dirtyRate}/s`, i.description];
  });
  const header = ['image', 'version', 'os', 'min RAM', 'boot writes', 'version/image/zero/unique', 'boot', 'dirty', 'description'];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]): string => r.map((x, c) => (c === r.length - 1 ? x : x.padEnd(widths[c]!))).join('  ').trimEnd();
  process.stdout.write(`${[line(header), line(widths.map((w, c) => '-'.repeat(c === widths.length - 1 ? header[c]!.length : w))), ...rows.map(line)].join('\n')}\n`);
  return 0;
}

/**
 * One command line, as `samepage` runs it: writes to process.stdout and
 * process.stderr and returns the exit status. Never throws: an error of ours is an
 * internal error (exit 70). Tests call it in-process.
 */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'capture':
        try {
          return await captureCommand(rest, `samepage ${version()}`);
        } catch (e) {
          if (e instanceof CaptureUsageError) throw new UsageError(e.message, CAPTURE_USAGE);
          throw e;
        }
      case 'run':
        return runCommand(rest);
      case 'images':
        return imagesCommand(rest);
      case 'resume':
        return resumeCommand(rest);
      case 'plan':
        return await planCommand(rest, version());
      case 'import':
        return importCommand(rest);
      case 'demo':
        try {
          return demoCommand(rest);
        } catch (e) {
          if (e instanceof Error && !(e instanceof KernelError)) throw new UsageError(e.message, DEMO_USAGE);
          throw e;
        }
      case undefined:
        // A usage error like any other: the usage goes to stderr, stdout stays empty.
        throw new UsageError('no command given', USAGE);
      case 'help':
      case '--help':
      case '-h': {
        const topic = rest[0];
        const usage = topic === undefined ? USAGE : COMMAND_USAGE.get(topic);
        if (usage === undefined) throw new UsageError(`no help for ${JSON.stringify(topic)}: not a command`, USAGE);
        process.stdout.write(usage);
        return 0;
      }
      case '--version':
      case '-V':
        process.stdout.write(`samepage ${version()}\n`);
        return 0;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(cmd)}`, USAGE);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`samepage: ${e.message}\n\n${e.usage}`);
      return 2;
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`samepage: ${e.file} cannot be used:\n${e.message}\n`);
      return 1;
    }
    if (e instanceof ConfigErrors) {
      for (const x of e.errors) process.stderr.write(`samepage: ${x.file} cannot be used:\n${x.message}\n`);
      return 1;
    }
    if (e instanceof KernelError) {
      process.stderr.write(`samepage: ${e.message}\n`);
      return 1;
    }
    if (e instanceof CaptureFormatError) {
      process.stderr.write(`samepage: ${e.message}\n`);
      return 1;
    }
    if (e instanceof SnapshotError) {
      process.stderr.write(`samepage: ${e.message}\n`);
      return 1;
    }
    if (e instanceof Error && e.message.startsWith('samepage:')) {
      process.stderr.write(`${e.message}\n`);
      return 1;
    }
    return internalError(e);
  }
}

/**
 * Anything else is a bug of ours, not the user's: one line saying so, the version and
 * where to report it, and exit 70 (EX_SOFTWARE, sysexits.h). No stack trace unless
 * SAMEPAGE_DEBUG is set: it helps whoever fixes the bug, not whoever met it.
 */
function internalError(e: unknown): number {
  const what = e instanceof Error ? `${e.name}: ${e.message.split('\n')[0]!}` : String(e);
  process.stderr.write(`samepage: internal error: ${what}\n`);
  process.stderr.write(`samepage ${version()}: this is a bug in Samepage. Please report it with the command line and the files it read (SAMEPAGE_DEBUG=1 prints the stack trace).\n`);
  if (process.env.SAMEPAGE_DEBUG !== undefined && e instanceof Error && e.stack !== undefined) process.stderr.write(`${e.stack}\n`);
  return 70;
}
