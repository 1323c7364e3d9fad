/** Runs the built `vigil` executable as a user would, in a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export const VIGIL_BIN = path.resolve(import.meta.dirname, '../../dist/cli/bin.js');

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function vigil(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [VIGIL_BIN, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly url: string;
  /** The admin API's base URL (`…/api/v1`), when the admin listener runs. */
  readonly adminUrl: string | null;
  stderr(): string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/** `vigil serve …`: resolves once it prints the URL it listens on. */
export function serve(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ServeProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [VIGIL_BIN, 'serve', ...args], { env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const timer = setTimeout(() => reject(new Error(`vigil serve did not start:\n${err}`)), 10_000);
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      const admin = /admin API on (http:\/\/\S+)/.exec(out);
      // serve prints the admin line right after the proxy's (or not at all when admin.enabled is false).
      if (m && (admin || /admin API off/.test(out))) {
        clearTimeout(timer);
        resolve({ child, url: m[1]!, adminUrl: admin?.[1] ?? null, stderr: () => err, exited });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`vigil serve exited (${code}) before listening:\n${err}`));
    });
  });
}
