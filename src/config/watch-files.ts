/**
 * Files the config names that the gateway reads again when they change (a renewed TLS certificate, a rotated upstream
 * key): looked at every so often, by when and how each was last written, since a secret manager or cert-manager
 * replaces them in place or swaps a symlink, which `fs.watch` does not follow reliably.
 */
import { statSync } from 'node:fs';

/** When each file was last written (empty for one that cannot be read): a change of it is a new version. */
function stamp(files: readonly string[]): string {
  return files
    .map((f) => {
      try {
        const s = statSync(f);
        return `${s.mtimeMs}:${s.size}:${s.ino}`;
      } catch {
        return '';
      }
    })
    .join('|');
}

/** Calls `changed` each time one of `files` was written since the last look, looking every `everyMs`. Returns stop. */
export function onFilesChanged(files: readonly string[], everyMs: number, changed: () => void): () => void {
  let last = stamp(files);
  const timer = setInterval(() => {
    const now = stamp(files);
    if (now === last) return;
    last = now;
    changed();
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
