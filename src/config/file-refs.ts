/** Relative `{ file }` references in the config resolve against the config file's folder. */
import path from 'node:path';
import { forEachConfigRef } from './common-schemas.js';

/**
 * Resolve, in place, the path of every `{ file: PATH }` reference under `value` (a section the schema parsed) against
 * `baseDir`. A reference is what the schema parsed as one, not whatever has that shape: `headers: { file: audit }` is a
 * header named `file`.
 */
export function resolveFileRefs(value: unknown, baseDir: string): void {
  forEachConfigRef(value, [], (ref) => {
    if ('file' in ref) (ref as { file: string }).file = path.resolve(baseDir, ref.file);
  });
}
