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
