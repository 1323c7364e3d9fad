/** Relative `{ file }` references in the config resolve against the config file's folder. */
import path from 'node:path';

/** Resolve, in place, the path of every `{ file: PATH }` object under `value` against `baseDir`. */
export function resolveFileRefs(value: unknown, baseDir: string): void {
  if (Array.isArray(value)) {
    for (const v of value) resolveFileRefs(v, baseDir);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (keys.length === 1 && keys[0] === 'file' && typeof obj.file === 'string') {
    obj.file = path.resolve(baseDir, obj.file);
    return;
  }
  for (const k of keys) resolveFileRefs(obj[k], baseDir);
}
