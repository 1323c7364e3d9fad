/** Relative `{ file }` references in the config resolve against the config file's folder. */
import path from 'node:path';
import { isCertificateFile, isSecretRef } from './common-schemas.js';

/**
 * Resolve, in place, the path of every `{ file: PATH }` reference under `value` (a section the schema parsed) against
 * `baseDir`. A reference is what the schema parsed as one, not whatever has that shape: `headers: { file: audit }` is a
 * header named `file`.
 */
export function resolveFileRefs(value: unknown, baseDir: string): void {
  if (value === null || typeof value !== 'object') return;
  if (isSecretRef(value) || isCertificateFile(value)) {
    if ('file' in value) (value as { file: string }).file = path.resolve(baseDir, value.file);
    return;
  }
  for (const v of Object.values(value)) resolveFileRefs(v, baseDir);
}
