#!/usr/bin/env node
/**
 * The `samepage` command: run guest-image scenarios on a simulated KVM host with KSM,
 * list the guest images, or show KSM on the bare kernel. The commands are in
 * commands.ts (main(), which tests also call in-process); this is the process around
 * them.
 *
 * Exit codes: 0 success, 1 a scenario or image file that cannot be used (or a run
 * that failed, or an output that cannot be written), 2 a usage error, 3 (run and
 * resume with --fail-on-oom) a guest was OOM-killed or refused at start; plan has its
 * own (see PLAN_USAGE); 70 an internal error.
 */
import { main } from './commands.js';

// A reader that stops reading (`samepage run x.yaml | head -3`) is not a failure of
// ours: without this, the write's EPIPE is an unhandled 'error' event and Node prints
// a stack trace. Stop quietly instead, as a C program killed by SIGPIPE would.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code !== 'EPIPE') throw e;
  process.exit(process.exitCode ?? 0);
});

process.exitCode = await main(process.argv.slice(2));
