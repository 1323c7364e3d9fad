/** Sink header values from config, secrets resolved (see config/read-secret.ts). */
import { readSecret } from '../../config/read-secret.js';
import type { SecretRef } from '../../config/common-schemas.js';

/**
 * How a sink's secret and file problems name its config: `where` as createSink was given it (`siem.sinks[2] (splunk)`),
 * else `siem.sinks[] (splunk)`.
 */
export function sinkConfigPath(name: string, where: string | undefined): string {
  return where ?? `siem.sinks[] (${name})`;
}

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
