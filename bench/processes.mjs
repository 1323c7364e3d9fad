/**
 * The benchmark's child processes: start them, wait until they say they are ready, read their CPU time, and make
 * sure none outlives the benchmark — on success, on error, and on Ctrl-C.
 */
import { spawn, execFileSync } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';

/** Every child still running, with the signal that stops it without orphaning its own children. */
const running = new Map();

// A synchronous last resort: `exit` handlers cannot wait, so children get their kill signal and are left to it.
process.on('exit', () => {
  for (const [child, signal] of running) {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping children\n`);
    process.exit(130);
  });
}

/**
 * Spawn `command args`, its stderr into `logFile`, and wait until a stdout line matches `ready`.
 *
 * @param {string} command
 * @param {string[]} args
 * @param {{ ready?: RegExp, env?: NodeJS.ProcessEnv, cwd?: string, logFile: string, timeoutMs?: number,
 *           exitSignal?: NodeJS.Signals }} opts
 *   `exitSignal` is what the exit handler sends: SIGKILL for a single process, SIGTERM for a master that must
 *   stop its workers (nginx).
 * @returns {Promise<{ child: import('node:child_process').ChildProcess, match: RegExpMatchArray | null }>}
 */
export async function startChild(command, args, opts) {
  const errFd = openSync(opts.logFile, 'a');
  let child;
  try {
    child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', 'pipe', errFd],
    });
  } finally {
    closeSync(errFd);
  }
  running.set(child, opts.exitSignal ?? 'SIGKILL');
  child.once('exit', () => running.delete(child));

  const timeoutMs = opts.timeoutMs ?? 15_000;
  const name = [command, ...args]
    .map((a) => path.basename(a))
    .slice(0, 3)
    .join(' ');
  const lines = createInterface({ input: child.stdout });
  try {
    const match = await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`${name} did not report ready within ${timeoutMs} ms; its stderr ends:\n${tail(opts.logFile)}`),
          ),
        timeoutMs,
      );
      child.once('error', (err) => (clearTimeout(timer), reject(err)));
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(
          new Error(`${name} exited early (code ${code}, signal ${signal}); its stderr ends:\n${tail(opts.logFile)}`),
        );
      });
      if (!opts.ready) {
        clearTimeout(timer);
        resolve(null);
        return;
      }
      lines.on('line', (line) => {
        const m = opts.ready.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m);
        }
      });
    });
    child.removeAllListeners('exit');
    child.once('exit', () => running.delete(child));
    // Keep draining stdout so a chatty child never blocks on a full pipe.
    lines.removeAllListeners('line');
    lines.on('line', () => {});
    return { child, match };
  } catch (err) {
    await stopChild(child);
    throw err;
  }
}

/** The last lines of a log file, for an error message (the work dir may be gone by the time someone looks). */
export function tail(file, bytes = 2000) {
  try {
    const text = readFileSync(file, 'utf8');
    return text.slice(-bytes).trim() || '(empty)';
  } catch {
    return '(unreadable)';
  }
}

/**
 * Stop a child with SIGTERM (graceful: Vigil flushes and closes its store), escalating to SIGKILL after `graceMs`.
 * Resolves once it has exited.
 *
 * @param {import('node:child_process').ChildProcess} child
 * @returns {Promise<{ code: number | null, signal: NodeJS.Signals | null }>}
 */
export function stopChild(child, graceMs = 10_000) {
  if (child.exitCode !== null || child.signalCode !== null) {
    running.delete(child);
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, signal });
    });
    child.kill('SIGTERM');
  });
}

/** Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, almost always 100). */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of one process, all its threads included, in clock ticks. */
function ownTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces and parentheses; fields after the last ')' are plain.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so utime (field 14) and stime (field 15) are at 11 and 12.
  return Number(fields[11]) + Number(fields[12]);
}

function childrenOf(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * CPU time used so far by `pid` and its live descendants (nginx's workers), in milliseconds.
 * Resolution is one clock tick (10 ms at CLK_TCK=100): divide by enough requests.
 *
 * @param {number} pid
 * @returns {{ ms: number, ticks: number }}
 */
export function cpuTime(pid) {
  let ticks = 0;
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop();
    try {
      ticks += ownTicks(p);
    } catch {
      continue; // exited between listing and reading
    }
    stack.push(...childrenOf(p));
  }
  return { ticks, ms: (ticks * 1000) / CLK_TCK };
}

/** Peak resident set size of `pid` (VmHWM), in MiB, or null when it cannot be read. */
export function peakRssMiB(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}
