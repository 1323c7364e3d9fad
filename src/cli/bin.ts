#!/usr/bin/env node
/** The `vigil` executable: runs a command and exits with its code. */
import { run } from './main.js';

// `vigil sessions list | head`: the reader went away, so there is nobody left to write to. Stop quietly, as Unix tools
// do, instead of dying on an unhandled EPIPE.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(0);
});

run(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`vigil: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
