/** Sink header values from config, secrets resolved (see config/read-secret.ts). */
import { readSecret } from '../../config/read-secret.js';
import type { SecretRef } from '../../config/common-schemas.js';

/** Header values from config, secrets resolved. */
export function readHeaders(
  headers: Readonly<Record<string, string | SecretRef>> | undefined,
  where: string,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    out[name.toLowerCase()] = typeof value === 'string' ? value : readSecret(value, `${where}.headers.${name}`);
  }
  return out;
}
