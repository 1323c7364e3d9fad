/**
 * A small filesystem of the test's own, to fill up for real: a tmpfs mounted on a fresh directory. Mounting needs
 * root (CI has it); where it is refused, `mountTmpfs` answers null and the test is skipped (CI's skipped count shows
 * it).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A tmpfs of `size` (mount's syntax: `6m`) on a new directory, or null when this process may not mount. */
export function mountTmpfs(size: string): string | null {
  const dir = mkdtempSync(path.join(tmpdir(), 'vigil-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
    return dir;
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
}

export function unmountTmpfs(dir: string): void {
  execFileSync('umount', [dir]);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Whether this process may mount a tmpfs: tried once, a small one mounted and unmounted at once. Tests decide with it
 * whether to run, and mount their own when they run — mounted as a file is collected, a tmpfs outlived a run that
 * filtered its tests out (`vitest -t`), as their hooks did not run.
 */
export const tmpfsMountable: boolean = (() => {
  const dir = mountTmpfs('64k');
  if (dir === null) return false;
  unmountTmpfs(dir);
  return true;
})();

/** Runs `fn` on a tmpfs of `size` of its own, unmounted after however `fn` ends. */
export async function withTmpfs<T>(size: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mountTmpfs(size);
  if (dir === null) throw new Error('cannot mount a tmpfs here: skip the test where tmpfsMountable is false');
  try {
    return await fn(dir);
  } finally {
    unmountTmpfs(dir);
  }
}

/**
 * Writes zeros to `file` until its filesystem has `leave` bytes free at most (0: until it is full); returns the bytes
 * written.
 */
export function fillDisk(file: string, leave = 0): number {
  const fd = openSync(file, 'w');
  let written = 0;
  try {
    for (const size of [64 * 1024, 4096]) {
      const chunk = Buffer.alloc(size);
      for (;;) {
        const free = statfsSync(path.dirname(file));
        if (free.bavail * free.bsize - size < leave) break;
        try {
          written += writeSync(fd, chunk);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
          break;
        }
      }
    }
    return written;
  } finally {
    closeSync(fd);
  }
}
