import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, it } from 'vitest';
import { DEMO_USAGE } from '../../src/cli/demo.js';
import { PLAN_USAGE } from '../../src/cli/plan.js';
import { parseRunJson } from '../../src/report/json.js';
import { renderChart } from '../../src/report/svg.js';
import { loadImageCatalog } from '../../src/scenario/images.js';
import { formatSize } from '../../src/vmm/config.js';
import { SNAPSHOT_VERSION } from '../../src/vmm/snapshot.js';

/**
 * The `samepage` command, run as a child process (node --import tsx src/cli/main.ts)
 * from the package root, as a user would run it: exit code, stdout and stderr.
 * Scenarios here use the tiny test image, so every run passes --images
 * test/vmm/fixtures. Each spawn costs about half a second of start-up, so the tests
 * run concurrently.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const TINY = 'test/cli/fixtures/tiny.yaml';
const VARIANTS = 'test/cli/fixtures/variants.yaml';
const IMAGES = ['--images', 'test/vmm/fixtures'];

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `samepage ...args`; `closeStdout` closes the pipe before the command writes, as `| head` does after a line. */
function samepage(args: string[], opts: { closeStdout?: boolean } = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    if (opts.closeStdout === true) child.stdout.destroy();
    else child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const tmp = mkdtempSync(join(tmpdir(), 'samepage-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

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

describe.concurrent('samepage: help, version, usage errors', () => {
  it('--help prints the usage on stdout and exits 0', async ({ expect }) => {
    expect(await samepage(['--help'])).toEqual({ code: 0, stdout: USAGE, stderr: '' });
  });

  it("'help plan' and 'plan --help' print the plan command's usage", async ({ expect }) => {
    const [a, b] = await Promise.all([samepage(['help', 'plan']), samepage(['plan', '--help'])]);
    expect(a).toEqual({ code: 0, stdout: PLAN_USAGE, stderr: '' });
    expect(b).toEqual(a);
  });

  it("'help run' and 'run --help' print the run command's usage", async ({ expect }) => {
    const [help, flag] = await Promise.all([samepage(['help', 'run']), samepage(['run', '--help'])]);
    expect(help).toEqual({ code: 0, stdout: RUN_USAGE, stderr: '' });
    expect(flag).toEqual(help);
  });

  it('--version prints the package version', async ({ expect }) => {
    expect(await samepage(['--version'])).toEqual({ code: 0, stdout: `samepage ${VERSION}\n`, stderr: '' });
  });

  it('no command: exit 2, the usage on stderr', async ({ expect }) => {
    expect(await samepage([])).toEqual({ code: 2, stdout: '', stderr: `samepage: no command given\n\n${USAGE}` });
  });

  it('an unknown command, or help for one: exit 2 naming it', async ({ expect }) => {
    const [cmd, help] = await Promise.all([samepage(['frobnicate']), samepage(['help', 'frobnicate'])]);
    expect(cmd).toEqual({ code: 2, stdout: '', stderr: `samepage: unknown command "frobnicate"\n\n${USAGE}` });
    expect(help).toEqual({ code: 2, stdout: '', stderr: `samepage: no help for "frobnicate": not a command\n\n${USAGE}` });
  });

  it('an unknown option: exit 2, the message and the command usage', async ({ expect }) => {
    expect(await samepage(['run', '--frobnicate', TINY])).toEqual({ code: 2, stdout: '', stderr: `samepage: Unknown option '--frobnicate'\n\n${RUN_USAGE}` });
  });

  it('run without a file: exit 2', async ({ expect }) => {
    expect(await samepage(['run'])).toEqual({ code: 2, stdout: '', stderr: `samepage: run needs a scenario file\n\n${RUN_USAGE}` });
  });

  it('stops quietly when its reader goes away (| head): exit 0, no EPIPE trace', async ({ expect }) => {
    expect(await samepage(['--help'], { closeStdout: true })).toEqual({ code: 0, stdout: '', stderr: '' });
  });
});

describe.concurrent('samepage images', () => {
  it('lists the six images of guests/ in order, as a table', async ({ expect }) => {
    expect(await samepage(['images'])).toEqual({
      code: 0,
      stdout: [
        'image    version  os       min RAM  boot writes  version/image/zero/unique  boot  dirty  description',
        '-------  -------  -------  -------  -----------  -------------------------  ----  -----  -----------',
        'busybox  6.1      linux    96 MiB   96 MiB       0% 37% 48% 15%             10s   2/s    Debian 12 kernel 6.1 with a busybox initramfs (nokaslr init_on_free=1), idle after boot; calibrated from captures/busybox-4.cap',
        'debian   6.0      linux    128 MiB  97.0 MiB     43% 11% 11% 34%            20s   20/s   Debian 6.0 squeeze amd64 with the SSH server task, kernel 2.6.32, idle after boot',
        'fedora   12       linux    256 MiB  174.1 MiB    40% 15% 11% 34%            30s   30/s   Fedora 12 x86_64 minimal server, kernel 2.6.31, idle after boot',
        'fedora   13       linux    256 MiB  185.1 MiB    41% 14% 11% 34%            25s   30/s   Fedora 13 x86_64 minimal server, kernel 2.6.33, idle after boot',
        'ubuntu   10.04    linux    128 MiB  122.0 MiB    43% 12% 11% 34%            15s   25/s   Ubuntu 10.04 LTS Server amd64, kernel 2.6.32, idle after boot',
        'windows  2008     windows  512 MiB  512 MiB      29% 2% 43% 26%             60s   150/s  Windows-like guest (Server 2008 SP2 x64), zeroes its free memory',
        '',
      ].join('\n'),
      stderr: '',
    });
  });

  it('--json lists them as JSON', async ({ expect }) => {
    const all = await samepage(['images', '--json']);
    expect([all.code, all.stderr]).toEqual([0, '']);
    const list = JSON.parse(all.stdout) as { name: string; version: string; os: string; file: string; minRamBytes: number; bootMs: number; dirtyRate: number }[];
    expect(list.map((i) => [i.name, i.version, i.os, i.file, i.minRamBytes / 1024 / 1024, i.bootMs, i.dirtyRate])).toEqual([
      ['busybox', '6.1', 'linux', 'guests/busybox-6.1.yaml', 96, 10_000, 2],
      ['debian', '6.0', 'linux', 'guests/debian-6.0.yaml', 128, 20_000, 20],
      ['fedora', '12', 'linux', 'guests/fedora-12.yaml', 256, 30_000, 30],
      ['fedora', '13', 'linux', 'guests/fedora-13.yaml', 256, 25_000, 30],
      ['ubuntu', '10.04', 'linux', 'guests/ubuntu-10.04.yaml', 128, 15_000, 25],
      ['windows', '2008', 'windows', 'guests/windows-2008.yaml', 512, 60_000, 150],
    ]);
  });
});

describe.concurrent('samepage images, --images', () => {
  it('a directory without descriptors: exit 1, rather than an empty list', async ({ expect }) => {
    expect(await samepage(['images', '--images', 'test/cli'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'samepage: no guest image descriptors (*.yaml, *.yml, *.json) in test/cli\n',
    });
  });
});

describe.concurrent('samepage run', () => {
  it('on a missing file: exit 1, naming the file', async ({ expect }) => {
    expect(await samepage(['run', 'test/cli/fixtures/no-such.yaml'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'samepage: test/cli/fixtures/no-such.yaml cannot be used:\ntest/cli/fixtures/no-such.yaml: cannot read the file (ENOENT)\n',
    });
  });

  it('on an invalid scenario: exit 1, every problem in one pass, one file:line: field: message line each', async ({ expect }) => {
    expect(await samepage(['run', 'test/cli/fixtures/invalid.yaml', ...IMAGES])).toEqual({
      code: 1,
      stdout: '',
      stderr: [
        'samepage: test/cli/fixtures/invalid.yaml cannot be used:',
        'test/cli/fixtures/invalid.yaml:6: ksm.pages_to_scan: expected at most 4294967295 (UINT_MAX): the kernel refuses larger values with EINVAL, got 5000000000',
        'test/cli/fixtures/invalid.yaml:8: sample_evry: unknown field (misspelt?)',
        'test/cli/fixtures/invalid.yaml:10: guests[0].memory: image tiny 1 needs at least 16 MiB of RAM, the guest has 8 MiB',
        "test/cli/fixtures/invalid.yaml:11: guests[1].memory: expected a size like '512MiB' or a number of MiB, got \"lots\"",
        'test/cli/fixtures/invalid.yaml:13: events[0].stop: no guest named "c" (guests: a, b)',
        '',
      ].join('\n'),
    });
  });

  it('on a scenario naming an image the directory lacks: exit 1, listing the images it has', async ({ expect }) => {
    const r = await samepage(['run', TINY]);
    expect([r.code, r.stderr]).toEqual([
      1,
      'samepage: test/cli/fixtures/tiny.yaml cannot be used:\n' +
        'test/cli/fixtures/tiny.yaml:11: guests[0].image: no image named "tiny"; known images: busybox 6.1, debian 6.0, fedora 12, fedora 13, ubuntu 10.04, windows 2008\n',
    ]);
  });

  it('runs a scenario: the summary on stdout, the timeline as JSON and the chart as SVG; --seed overrides the seed', async ({ expect }) => {
    const json = join(tmp, 'out.json');
    const svg = join(tmp, 'out.svg');
    // tiny.yaml says seed 3.
    const r = await samepage(['run', TINY, ...IMAGES, '--json', json, '--svg', svg, '--seed', '7', '--quiet']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout.replace(/ in \d+\.\ds\)/, ' in Ns)')).toBe(
      [
        'tiny: 10s simulated, seed 7, policy fixed: run 1, pages_to_scan 100, sleep_millisecs 20',
        '',
        'guest  image            state       RAM  resident   merged    saved  swap',
        '-----  ---------------  -------  ------  --------  -------  -------  ----',
        'a-1    tiny 1           running  16 MiB  12.4 MiB  7.4 MiB  4.2 MiB   0 B',
        'a-2    tiny 1           running  16 MiB  12.4 MiB  7.4 MiB  4.2 MiB   0 B',
        'host   promised 32 MiB           64 MiB  16.4 MiB           8.4 MiB   0 B',
        '',
        'ksm: pages_shared 1627, pages_sharing 2163, pages_unshared 2572, pages_volatile 0, full_scans 10, pages scanned 49661',
        'ksmd: 1.6% of a core on average, peak 1.7% at 5s; 0.16 s of CPU (estimated from its work: 25611 checksums, 540623 tree comparisons, 3790 merges)',
        'peak saved 8.4 MiB at 5s; overcommit 0.50 (32 MiB promised / 64 MiB RAM)',
        'converged: 90% of the final saving at 5s; lowest free memory 47.6 MiB at 5s',
        '',
        '(simulated 10s in Ns)',
        `timeline written to ${json}`,
        `chart written to ${svg}`,
        '',
      ].join('\n'),
    );
    const { runs } = parseRunJson(readFileSync(json, 'utf8'));
    expect(runs.map((x) => [x.scenario, x.variant, x.seed, x.samples.map((s) => s.t), x.host.pagesSharing])).toEqual([['tiny', null, 7, [0, 5000, 10_000], 2163]]);
    // The chart of exactly this run (test/report/svg.test.ts tests the drawing).
    expect(readFileSync(svg, 'utf8')).toBe(renderChart(runs, { title: 'tiny' }));
  });

  it('runs every variant and compares them; --variant picks one', async ({ expect }) => {
    const [all, one] = await Promise.all([samepage(['run', VARIANTS, ...IMAGES, '--quiet']), samepage(['run', VARIANTS, ...IMAGES, '--variant', 'off', '--quiet'])]);
    const wall = (o: Outcome): Outcome => ({ ...o, stdout: o.stdout.replace(/ in \d+\.\ds\)/, ' in Ns)') });
    // One guest alone: its 269 zero pages are all it can merge (1 KSM page, 268 sharing).
    const off = [
      'tiny-variants (variant off): 5s simulated, seed 1, policy fixed: run 0, pages_to_scan 100, sleep_millisecs 20',
      '',
      'guest  image            state       RAM  resident  merged  saved  swap',
      '-----  ---------------  -------  ------  --------  ------  -----  ----',
      'a      tiny 1           running  16 MiB  12.4 MiB     0 B    0 B   0 B',
      'host   promised 16 MiB           64 MiB  12.4 MiB            0 B   0 B',
      '',
      'ksm: pages_shared 0, pages_sharing 0, pages_unshared 0, pages_volatile 0, full_scans 0, pages scanned 0',
      'ksmd: 0.0% of a core on average, peak 0.0% at 0s; 0.00 s of CPU (estimated from its work: 0 checksums, 0 tree comparisons, 0 merges)',
      'peak saved 0 B at 0s; overcommit 0.25 (16 MiB promised / 64 MiB RAM)',
      'converged: nothing saved at the end; lowest free memory 51.6 MiB at 5s',
      '',
    ];
    expect(wall(all)).toEqual({
      code: 0,
      stdout: [
        'tiny-variants (variant merge): 5s simulated, seed 1, policy fixed: run 1, pages_to_scan 100, sleep_millisecs 20',
        '',
        'guest  image            state       RAM  resident   merged    saved  swap',
        '-----  ---------------  -------  ------  --------  -------  -------  ----',
        'a      tiny 1           running  16 MiB  12.4 MiB  1.1 MiB  1.0 MiB   0 B',
        'host   promised 16 MiB           64 MiB  11.4 MiB           1.0 MiB   0 B',
        '',
        'ksm: pages_shared 1, pages_sharing 268, pages_unshared 2912, pages_volatile 0, full_scans 11, pages scanned 24513',
        'ksmd: 2.1% of a core on average, peak 2.1% at 5s; 0.10 s of CPU (estimated from its work: 22519 checksums, 245814 tree comparisons, 269 merges)',
        'peak saved 1.0 MiB at 5s; overcommit 0.25 (16 MiB promised / 64 MiB RAM)',
        'converged: 90% of the final saving at 5s; lowest free memory 52.6 MiB at 5s',
        '',
        ...off,
        '2 variants at the end of the run:',
        '',
        'variant    saved     peak saved  pages scanned  full scans  swap used      free  ksmd CPU  90% saved at',
        '-------  -------  -------------  -------------  ----------  ---------  --------  --------  ------------',
        'merge    1.0 MiB  1.0 MiB at 5s          24513          11        0 B  52.6 MiB      2.1%            5s',
        'off          0 B      0 B at 0s              0           0        0 B  51.6 MiB      0.0%             -',
        '',
        '(simulated 2 × 5s in Ns)',
        '',
      ].join('\n'),
      stderr: '',
    });
    expect(wall(one)).toEqual({ code: 0, stdout: [...off, '(simulated 5s in Ns)', ''].join('\n'), stderr: '' });
  });

  it('an output it cannot write: exit 1 at once, naming it, with nothing run', async ({ expect }) => {
    const json = join(tmp, 'no-such-dir', 'out.json');
    const readOnly = join(tmp, 'read-only.csv');
    writeFileSync(readOnly, 'keep me\n', { mode: 0o444 });
    const [missingDir, aDirectory, notWritable] = await Promise.all([
      samepage(['run', VARIANTS, ...IMAGES, '--variant', 'off', '--json', json, '--quiet']),
      samepage(['run', VARIANTS, ...IMAGES, '--svg', tmp, '--quiet']),
      // Root may write a mode-0444 file anyway: then the check rightly lets it through.
      process.getuid?.() === 0 ? Promise.resolve(null) : samepage(['run', VARIANTS, ...IMAGES, '--csv', readOnly, '--quiet']),
    ]);
    expect(missingDir).toEqual({ code: 1, stdout: '', stderr: `samepage: cannot write ${json} (ENOENT for ${join(tmp, 'no-such-dir')}), given to --json: nothing was run\n` });
    expect(aDirectory).toEqual({ code: 1, stdout: '', stderr: `samepage: cannot write ${tmp} (EISDIR), given to --svg: nothing was run\n` });
    if (notWritable !== null) expect(notWritable).toEqual({ code: 1, stdout: '', stderr: `samepage: cannot write ${readOnly} (EACCES), given to --csv: nothing was run\n` });
    expect(readFileSync(readOnly, 'utf8')).toBe('keep me\n');
  });

  it("--json - writes the run file on stdout and the summary on stderr; --csv - the samples", async ({ expect }) => {
    const [json, csv] = await Promise.all([
      samepage(['run', VARIANTS, ...IMAGES, '--variant', 'off', '--json', '-', '--quiet']),
      samepage(['run', VARIANTS, ...IMAGES, '--variant', 'merge', '--csv', '-', '--quiet']),
    ]);
    expect(json.code).toBe(0);
    const { runs } = parseRunJson(json.stdout);
    expect(runs.map((x) => [x.variant, x.samples.length, x.host.pagesSharing])).toEqual([['off', 2, 0]]);
    expect(json.stderr.split('\n')[0]).toBe('tiny-variants (variant off): 5s simulated, seed 1, policy fixed: run 0, pages_to_scan 100, sleep_millisecs 20');
    expect(json.stderr).not.toContain('written to');
    expect(csv.code).toBe(0);
    const rows = csv.stdout.split('\r\n');
    // The header, samples at 0 and 5 s, and the empty string after the last CRLF.
    expect(rows.length).toBe(4);
    expect(rows[0]!.startsWith('scenario,variant,kernel,t_ms,pages_shared,pages_sharing,')).toBe(true);
    expect(rows[2]!.startsWith('tiny-variants,merge,2.6.33,5000,1,268,2912,0,11,24513,,,,,,')).toBe(true);
    expect(csv.stderr.split('\n')[0]).toBe('tiny-variants (variant merge): 5s simulated, seed 1, policy fixed: run 1, pages_to_scan 100, sleep_millisecs 20');
  });

  it('a guest the OOM killer killed: its own state, a line saying when, and with --fail-on-oom exit 3', async ({ expect }) => {
    const OOM = 'test/cli/fixtures/oom.yaml';
    const [plain, failing] = await Promise.all([samepage(['run', OOM, ...IMAGES, '--quiet']), samepage(['run', OOM, ...IMAGES, '--quiet', '--fail-on-oom'])]);
    const summary = [
      'oom: 3s simulated, seed 1, policy fixed: run 0, pages_to_scan 100, sleep_millisecs 20',
      '',
      'guest  image            state          RAM  resident  merged  saved  swap',
      '-----  ---------------  ----------  ------  --------  ------  -----  ----',
      'a-1    tiny 1           oom-killed  16 MiB       0 B     0 B    0 B   0 B',
      'a-2    tiny 1           running     16 MiB  12.4 MiB     0 B    0 B   0 B',
      'a-3    tiny 1           running     16 MiB  12.4 MiB     0 B    0 B   0 B',
      'host   promised 48 MiB              32 MiB  24.9 MiB            0 B   0 B',
      '',
      'ksm: pages_shared 0, pages_sharing 0, pages_unshared 0, pages_volatile 0, full_scans 0, pages scanned 0',
      'ksmd: 0.0% of a core on average, peak 0.0% at 0s; 0.00 s of CPU (estimated from its work: 0 checksums, 0 tree comparisons, 0 merges)',
      'peak saved 0 B at 0s; overcommit 1.50 (48 MiB promised / 32 MiB RAM)',
      'converged: nothing saved at the end; lowest free memory 7.1 MiB at 2s',
      '1 guest OOM-killed: a-1 at 1.3s',
      '',
      '(simulated 3s in Ns)',
      '',
    ].join('\n');
    const wall = (o: Outcome): Outcome => ({ ...o, stdout: o.stdout.replace(/ in \d+\.\ds\)/, ' in Ns)') });
    expect(wall(plain)).toEqual({ code: 0, stdout: summary, stderr: '' });
    expect(wall(failing)).toEqual({ code: 3, stdout: summary, stderr: '' });
  });

  it('two outputs on stdout, or a snapshot there: exit 2', async ({ expect }) => {
    const [two, save] = await Promise.all([
      samepage(['run', VARIANTS, ...IMAGES, '--json', '-', '--csv', '-']),
      samepage(['run', VARIANTS, ...IMAGES, '--variant', 'off', '--save-at', '1s', '--save', '-']),
    ]);
    expect([two.code, two.stdout, two.stderr.split('\n')[0]]).toEqual([2, '', 'samepage: only one output can go to standard output, got --json - and --csv -']);
    expect([save.code, save.stdout, save.stderr.split('\n')[0]]).toEqual([2, '', 'samepage: --save needs a file: its output is binary, not for standard output']);
  });

  it('--variant the scenario does not have: a usage error (exit 2) before anything runs, listing those it has', async ({ expect }) => {
    expect(await samepage(['run', VARIANTS, ...IMAGES, '--variant', 'fast'])).toEqual({
      code: 2,
      stdout: '',
      stderr: `samepage: ${VARIANTS} has no variant "fast" (its variants: merge, off)\n\n${RUN_USAGE}`,
    });
  });
});

describe.concurrent('samepage demo', () => {
  it('--mib 8: merges the two processes and prints the statistics', async ({ expect }) => {
    const r = await samepage(['demo', '--mib', '8']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    // 2048 pages each, 75% identical across the two: 1536 KSM pages with one sharer each, 2 × 512 unshared.
    expect(r.stdout.split('\n').filter((l) => /^ {2}(run|pages_|full_scans)|^memory saved/.test(l))).toEqual([
      '  run             1',
      '  pages_shared    1536',
      '  pages_sharing   1536',
      '  pages_unshared  1024',
      '  pages_volatile  0',
      '  full_scans      3',
      'memory saved: 6.0 MiB (pages_sharing × 4 KiB)',
    ]);
  });

  it('--mib x: exit 2, the message and the demo usage', async ({ expect }) => {
    expect(await samepage(['demo', '--mib', 'x'])).toEqual({ code: 2, stdout: '', stderr: `samepage: --mib needs a non-negative integer, got "x"\n\n${DEMO_USAGE}` });
  });
});

describe.concurrent('samepage run --save-at, samepage resume', () => {
  const summary = (o: Outcome): string[] => o.stdout.split('\n').filter((l) => !l.startsWith('(simulated') && !l.startsWith('timeline written'));

  it('a run saved at 5s and resumed prints the same summary and timeline as the whole run', async ({ expect }) => {
    const snap = join(tmp, 'tiny.snap');
    const [whole, saved] = await Promise.all([
      samepage(['run', TINY, ...IMAGES, '--quiet', '--json', join(tmp, 'whole.json')]),
      samepage(['run', TINY, ...IMAGES, '--quiet', '--save-at', '5s', '--save', snap]),
    ]);
    expect([saved.code, saved.stderr]).toEqual([0, `snapshot at 5s written to ${snap} (${formatSize(statSync(snap).size)})\n`]);
    expect(summary(saved)).toEqual(summary(whole));
    const [resumed, elsewhere] = await Promise.all([
      samepage(['resume', snap, ...IMAGES, '--quiet', '--json', join(tmp, 'resumed.json')]),
      // The snapshot names the tiny test image; the default catalog (guests/) has no such image.
      samepage(['resume', snap, '--quiet']),
    ]);
    expect([resumed.code, resumed.stderr]).toEqual([0, 'resuming tiny at 5s of 10s\n']);
    expect(summary(resumed)).toEqual(summary(whole));
    const runs = (f: string): unknown => parseRunJson(readFileSync(join(tmp, f), 'utf8')).runs;
    expect(runs('resumed.json')).toEqual(runs('whole.json'));
    const digest = loadImageCatalog(join(ROOT, 'test/vmm/fixtures')).source('tiny', '1').ref.digest;
    expect(elsewhere).toEqual({
      code: 1,
      stdout: '',
      stderr: `samepage: ${snap}: snapshot guest a-1: tiny 1 (sha256 ${digest.slice(0, 12)}…) is not in the image catalog (it has busybox 6.1, debian 6.0, fedora 12, fedora 13, ubuntu 10.04, windows 2008)\n`,
    });
  });

  it('resume of a file that is not a snapshot, or is cut short: exit 1 naming what is wrong', async ({ expect }) => {
    const old = join(tmp, 'run-v1.snap');
    writeFileSync(old, gunzipSync(readFileSync(join(ROOT, 'test/fixtures/snapshot-v1/run-v1.snap.gz'))));
    const [foreign, missing, v1] = await Promise.all([samepage(['resume', TINY]), samepage(['resume', join(tmp, 'nothing.snap')]), samepage(['resume', old, ...IMAGES])]);
    expect(foreign).toEqual({ code: 1, stdout: '', stderr: `samepage: ${TINY}: not a Samepage snapshot: the file does not start with "SAMEPAGE"\n` });
    expect([missing.code, missing.stderr]).toEqual([1, `samepage: cannot read ${join(tmp, 'nothing.snap')} (ENOENT)\n`]);
    expect(v1).toEqual({ code: 1, stdout: '', stderr: `samepage: ${old}: snapshot format version 1, but this Samepage reads version ${SNAPSHOT_VERSION}\n` });
  });

  it('--save-at needs --save, a time within the run, and one variant', async ({ expect }) => {
    const [alone, late, bad, variants] = await Promise.all([
      samepage(['run', TINY, ...IMAGES, '--save-at', '5s']),
      samepage(['run', TINY, ...IMAGES, '--save-at', '1h', '--save', join(tmp, 'x.snap')]),
      samepage(['run', TINY, ...IMAGES, '--save-at', 'soon', '--save', join(tmp, 'x.snap')]),
      samepage(['run', VARIANTS, ...IMAGES, '--save-at', '1s', '--save', join(tmp, 'x.snap')]),
    ]);
    const usageError = (message: string): Outcome => ({ code: 2, stdout: '', stderr: `samepage: ${message}\n\n${RUN_USAGE}` });
    expect(alone).toEqual(usageError('--save-at and --save go together'));
    expect(late).toEqual(usageError('--save-at 1h is after the end of the scenario (10s)'));
    expect(bad).toEqual(usageError(`--save-at needs a time like '90s' or '1min 30s', got "soon"`));
    expect(variants).toEqual(usageError('test/cli/fixtures/variants.yaml has 2 variants: say which to save with --variant'));
  });
});

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

const LIBVIRT = 'test/scenario/fixtures/libvirt';

describe.concurrent('samepage import', () => {
  it("'help import' and 'import --help' print its usage", async ({ expect }) => {
    const [help, flag] = await Promise.all([samepage(['help', 'import']), samepage(['import', '--help'])]);
    expect(help).toEqual({ code: 0, stdout: IMPORT_USAGE, stderr: '' });
    expect(flag).toEqual(help);
  });

  it('libvirt: two domains as a guests: list, each with its notes', async ({ expect }) => {
    expect(await samepage(['import', 'libvirt', `${LIBVIRT}/fedora13-web.xml`, `${LIBVIRT}/win2008-nosharepages.xml`])).toEqual({
      code: 0,
      stderr: '',
      stdout: [
        `# samepage import libvirt ${LIBVIRT}/fedora13-web.xml ${LIBVIRT}/win2008-nosharepages.xml`,
        'guests:',
        `  # ${LIBVIRT}/fedora13-web.xml:6: libosinfo os http://fedoraproject.org/fedora/13 is image fedora 13`,
        `  # ${LIBVIRT}/fedora13-web.xml:10: <currentMemory> 768 MiB is below <memory> 1 GiB: libvirt starts the guest with its balloon inflated to 768 MiB; the model has no balloon, so the guest gets all 1 GiB (write memory: 768MiB for the ballooned size)`,
        '  - name: web-1',
        '    image: fedora',
        '    version: "13"',
        '    memory: 1GiB',
        '    mem_merge: on',
        `  # ${LIBVIRT}/win2008-nosharepages.xml:4: domain name "ad controller" written as ad-controller (scenario names are letters, digits, '.', '_' and '-')`,
        `  # ${LIBVIRT}/win2008-nosharepages.xml:7: libosinfo os http://microsoft.com/win/2k8 is image windows 2008`,
        `  # ${LIBVIRT}/win2008-nosharepages.xml:13: <nosharepages/>: QEMU runs with mem-merge=off, so KSM never sees this guest's RAM (mem_merge: off)`,
        `  # ${LIBVIRT}/win2008-nosharepages.xml:14: <locked/>: guest RAM locked in host memory (never swapped) is not modelled`,
        '  - name: ad-controller',
        '    image: windows',
        '    version: "2008"',
        '    memory: 2GiB',
        '    mem_merge: off',
        '',
      ].join('\n'),
    });
  });

  it('qemu -- a command line, as a whole scenario that then runs', async ({ expect }) => {
    const file = join(tmp, 'imported.yaml');
    const r = await samepage(['import', 'qemu', '--image', 'tiny:1', '--images', 'test/vmm/fixtures', '--host-memory', '64', '--duration', '10s', '--name', 'from-qemu', '--', 'qemu-system-x86_64', '-enable-kvm', '-m', '16', '-name', 'web']);
    expect(r).toEqual({
      code: 0,
      stderr: '',
      stdout: [
        '# samepage import qemu --image tiny:1 --images test/vmm/fixtures --host-memory 64 --duration 10s --name from-qemu -- qemu-system-x86_64 -enable-kvm -m 16 -name web',
        'name: from-qemu',
        'host:',
        '  memory: 64MiB',
        '  swap: 0MiB',
        '  block: 64MiB',
        'duration: 10s',
        'guests:',
        '  - name: web',
        '    image: tiny',
        '    version: "1"',
        '    memory: 16MiB',
        '    mem_merge: on',
        '',
      ].join('\n'),
    });
    writeFileSync(file, r.stdout);
    const run = await samepage(['run', file, ...IMAGES, '--quiet']);
    expect([run.code, run.stderr, run.stdout.split('\n')[0]]).toEqual([0, '', 'from-qemu: 10s simulated, seed 1, policy fixed: run 1, pages_to_scan 100, sleep_millisecs 20']);
  });

  it('qemu FILE: a libvirt log; the problems of a bad one, with file:line', async ({ expect }) => {
    const bad = join(tmp, 'bad.log');
    writeFileSync(bad, '/usr/bin/qemu-system-x86_64 \\\n  -name guest=x \\\n  -m size=lots \\\n  -numa node,memdev=ram0\n');
    const [good, broken] = await Promise.all([
      samepage(['import', 'qemu', 'test/scenario/fixtures/qemu/web2-libvirt.log', '--image', 'fedora:13']),
      samepage(['import', 'qemu', bad, '--image', 'fedora:13']),
    ]);
    expect(good).toEqual({
      code: 0,
      stderr: '',
      stdout: '# samepage import qemu test/scenario/fixtures/qemu/web2-libvirt.log --image fedora:13\nguests:\n  - name: web-2\n    image: fedora\n    version: "13"\n    memory: 2GiB\n    mem_merge: on\n',
    });
    expect(broken).toEqual({
      code: 1,
      stdout: '',
      stderr: [
        `samepage: ${bad} cannot be used:`,
        `${bad}:3: -m: expected a size like 2048 (MiB), 2G or size=4G,slots=4,maxmem=8G, got "lots"`,
        `${bad}:4: -numa: no memory backend with id "ram0" (-object memory-backend-...,id=ram0)`,
        '',
      ].join('\n'),
    });
  });

  it('libvirt: every file’s problems, each under its own name; nothing on stdout', async ({ expect }) => {
    expect(await samepage(['import', 'libvirt', `${LIBVIRT}/broken.xml`, `${LIBVIRT}/fedora13-web.xml`, `${LIBVIRT}/fedora38.xml`])).toEqual({
      code: 1,
      stdout: '',
      stderr: [
        `samepage: ${LIBVIRT}/broken.xml cannot be used:`,
        `${LIBVIRT}/broken.xml:4: not well-formed XML: Expected closing tag 'memory' (opened in line 3, col 3) instead of closing tag 'domain'.`,
        `samepage: ${LIBVIRT}/fedora38.xml cannot be used:`,
        `${LIBVIRT}/fedora38.xml:5: <libosinfo:os>: libosinfo os http://fedoraproject.org/fedora/38 (fedora 38) has no image in the catalog (images: busybox 6.1, debian 6.0, fedora 12, fedora 13, ubuntu 10.04, windows 2008); choose one with --image NAME[:VERSION]`,
        '',
      ].join('\n'),
    });
  });

  it('ksmtuned: a ksmtuned.conf as the ksm: block', async ({ expect }) => {
    expect(await samepage(['import', 'ksmtuned', 'test/scenario/fixtures/ksmtuned.conf'])).toEqual({
      code: 0,
      stderr: '',
      stdout: '# samepage import ksmtuned test/scenario/fixtures/ksmtuned.conf\nksm:\n  policy: ksmtuned\n  monitor_interval: 10s\n  npages_boost: 500\n  npages_max: 2000\n',
    });
  });

  it('usage errors: no format, an unknown one, -- with libvirt, --duration without --host-memory', async ({ expect }) => {
    const rs = await Promise.all([
      samepage(['import']),
      samepage(['import', 'vmware', 'x.vmx']),
      samepage(['import', 'libvirt', '--', 'qemu-kvm']),
      samepage(['import', 'libvirt', `${LIBVIRT}/fedora13-web.xml`, '--duration', '1min']),
    ]);
    expect(rs.map((r) => [r.code, r.stdout, r.stderr.split('\n')[0]])).toEqual([
      [2, '', 'samepage: import needs a format: libvirt, qemu or ksmtuned'],
      [2, '', 'samepage: import: unknown format "vmware" (libvirt, qemu or ksmtuned)'],
      [2, '', "samepage: '--' is for a QEMU command line: import qemu -- ..."],
      [2, '', 'samepage: --duration goes with --host-memory (a whole scenario)'],
    ]);
  });
});

describe.concurrent('samepage run --ksmtuned-conf', () => {
  it('runs under ksmtuned configured from the file, in place of the scenario’s policy', async ({ expect }) => {
    const conf = join(tmp, 'ksmtuned.conf');
    writeFileSync(conf, '# tuned for the test\nKSM_MONITOR_INTERVAL=2\nKSM_NPAGES_MAX=2000\n');
    const r = await samepage(['run', TINY, ...IMAGES, '--quiet', '--ksmtuned-conf', conf]);
    expect([r.code, r.stderr, r.stdout.split('\n')[0]]).toEqual([0, '', 'tiny: 10s simulated, seed 3, policy ksmtuned: monitor 2s, npages 64..2000 (+300/-50), thres 20%']);
    const bad = join(tmp, 'bad-ksmtuned.conf');
    writeFileSync(bad, 'KSM_NPAGES_MAXX=2000\n');
    expect(await samepage(['run', TINY, ...IMAGES, '--quiet', '--ksmtuned-conf', bad])).toEqual({
      code: 1,
      stdout: '',
      stderr: `samepage: ${bad} cannot be used:\n${bad}:1: KSM_NPAGES_MAXX: unknown variable (ksmtuned reads KSM_MONITOR_INTERVAL, KSM_NPAGES_BOOST, KSM_NPAGES_DECAY, KSM_NPAGES_MIN, KSM_NPAGES_MAX, KSM_SLEEP_MSEC, KSM_THRES_COEF, KSM_THRES_CONST, LOGFILE, DEBUG and PIDFILE)\n`,
    });
  });
});

describe.concurrent('samepage plan', () => {
  const PLAN = 'test/cli/fixtures/plan.yaml';
  const wall = (text: string): string => text.replace(/ in \d+\.\d s\n/, ' in N s\n');

  it('finds how many copies fit with KSM (once per swept value) and without, with the margin, the saving and ksmd’s cost; --json FILE', async ({ expect }) => {
    // test/scenario/plan.test.ts checks 7 and 8 at sleep_millisecs 10 without the planner.
    const json = join(tmp, 'plan.json');
    const r = await samepage(['plan', PLAN, '--guest', 'web', ...IMAGES, '--sweep', 'sleep_millisecs=10,100', '--quiet', '--jobs', '2', '--json', json]);
    expect({ ...r, stdout: wall(r.stdout) }).toEqual({
      code: 0,
      stderr: '',
      stdout: [
        "plan: how many web guests (tiny 1, 16 MiB each) fit on plan-tiny's host (48 MiB RAM, 0 B swap)",
        'fit: no OOM kill, no guest refused at start, swap used at most 0 B and free memory at least 2.4 MiB at every sample',
        '',
        'with KSM, sleep_millisecs 10 (fixed: run 1, pages_to_scan 300, sleep_millisecs 10): 7 guests fit',
        '  at 7: lowest free memory 6.3 MiB at 5s (limit 2.4 MiB), swap used at most 0 B (limit 0 B)',
        '  at 8: does not fit: OOM kill: web-1 at 4.9s',
        '  saved at 7: 45.5 MiB at the end (peak 45.5 MiB at 6s, 90% of it by 4s)',
        '  ksmd at 7: 8.8% of a core on average, peak 9.9% at 1s (0.66 s of CPU in 7.5s)',
        'with KSM, sleep_millisecs 100 (fixed: run 1, pages_to_scan 300, sleep_millisecs 100): 3 guests fit',
        '  at 3: lowest free memory 12.9 MiB at 3s (limit 2.4 MiB), swap used at most 0 B (limit 0 B)',
        '  at 4: does not fit: free memory 928 KiB at 3s (limit 2.4 MiB)',
        '  saved at 3: 3.1 MiB at the end (peak 3.1 MiB at 5s, 90% of it by 4s)',
        '  ksmd at 3: 0.8% of a core on average, peak 1.5% at 5.5s (0.05 s of CPU in 5.5s)',
        'without KSM (run 0): 3 guests fit',
        '  at 3: lowest free memory 10.7 MiB at 3s (limit 2.4 MiB), swap used at most 0 B (limit 0 B)',
        '  at 4: does not fit: OOM kill: web-1 at 2.8s',
        '',
        'sleep_millisecs  fit  saved at fit  ksmd avg  ksmd peak  one more: first limit broken',
        '---------------  ---  ------------  --------  ---------  -----------------------------------------',
        '10                 7      45.5 MiB      8.8%       9.9%  OOM kill: web-1 at 4.9s',
        '100                3       3.1 MiB      0.8%       1.5%  free memory 928 KiB at 3s (limit 2.4 MiB)',
        '',
        '14 trials (10 with KSM, 4 without), up to 256 guests, 2 at a time, in N s',
        `answers written to ${json}`,
        '',
      ].join('\n'),
    });
    const doc = JSON.parse(readFileSync(json, 'utf8')) as { format: string; version: number; withKsm: { sweep: { value: string }; answer: { count: number; next: { count: number } } }[]; withoutKsm: { answer: { count: number } }[] };
    expect([doc.format, doc.version]).toEqual(['samepage-plan', 1]);
    expect(doc.withKsm.map((p) => [p.sweep.value, p.answer.count, p.answer.next.count])).toEqual([
      ['10', 7, 8],
      ['100', 3, 4],
    ]);
    expect(doc.withoutKsm.map((p) => p.answer.count)).toEqual([3]);
  });

  it('when not even one guest fits: exit 1, saying what broke at 1; --json - puts the answers on stdout, the text on stderr', async ({ expect }) => {
    const r = await samepage(['plan', PLAN, '--guest', 'web', ...IMAGES, '--min-free', '40MiB', '--json', '-']);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n').slice(3, 7)).toEqual([
      'with KSM (fixed: run 1, pages_to_scan 300, sleep_millisecs 10): not even 1 guest fits',
      '  at 1: does not fit: free memory 36.6 MiB at 2s (limit 40 MiB)',
      'without KSM (run 0): not even 1 guest fits',
      '  at 1: does not fit: free memory 35.6 MiB at 2s (limit 40 MiB)',
    ]);
    const doc = JSON.parse(r.stdout) as { withKsm: { answer: { count: number; fit: null } }[] };
    expect(doc.withKsm.map((p) => [p.answer.count, p.answer.fit])).toEqual([[0, null]]);
  });

  it('usage errors: exit 2 with the message', async ({ expect }) => {
    const rs = await Promise.all([
      samepage(['plan', PLAN, ...IMAGES]),
      samepage(['plan', PLAN, '--guest', 'db', ...IMAGES]),
      samepage(['plan', PLAN, '--guest', 'web', '--sweep', 'max_page_sharing=256', ...IMAGES]),
      samepage(['plan', VARIANTS, '--guest', 'a', ...IMAGES]),
      samepage(['plan', PLAN, '--guest', 'web', '--jobs', '0', ...IMAGES]),
    ]);
    expect(rs.map((r) => [r.code, r.stdout, r.stderr.split('\n')[0]])).toEqual([
      [2, '', 'samepage: plan needs --guest NAME: the guests: entry to copy'],
      [2, '', 'samepage: --guest db: the scenario has no guests: entry named "db" (entries: web)'],
      [2, '', 'samepage: --sweep max_page_sharing: not a KSM knob of Linux 2.6.33 (knobs: max_kernel_pages, pages_to_scan, sleep_millisecs, run; or kernel)'],
      [2, '', 'samepage: test/cli/fixtures/variants.yaml has 2 variants (merge, off): say whose KSM policy to plan with, --variant NAME'],
      [2, '', 'samepage: --jobs needs a whole number of at least 1, got "0"'],
    ]);
  });
});
