#!/usr/bin/env node
/** The `vigil` executable: runs a command and exits with its code. */
import { nodeVersionProblem } from './node-version.js';

const problem = nodeVersionProblem(process.versions.node, process.execPath);
if (problem !== null) {
  process.stderr.write(`vigil: ${problem}\n`);
  process.exit(1);
}
// Loaded only now: on an older Node.js, loading it is what fails.
const { run } = await import('./main.js');

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
