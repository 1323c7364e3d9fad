/**
 * Reads a `{ env }` or `{ file }` secret reference once, when a sink is created, so a missing secret stops the gateway
 * at start-up with the config key to fix rather than failing every delivery later.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../../errors.js';
import type { SinkSecretRef } from '../sinks-config.js';

/** The secret's value, trimmed (files usually end with a newline); `where` names the config key for the error. */
export function readSecret(ref: SinkSecretRef, where: string): string {
  if ('env' in ref) {
    const value = process.env[ref.env]?.trim();
    if (!value) throw new ConfigError([`${where}: environment variable ${ref.env} is not set or empty`]);
    return value;
  }
  let value: string;
  try {
    value = readFileSync(ref.file, 'utf8').trim();
  } catch (err) {
    throw new ConfigError([
      `${where}: cannot read ${ref.file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    ]);
  }
  if (!value) throw new ConfigError([`${where}: ${ref.file} is empty`]);
  return value;
}

/** Reads a file that is not a secret (a certificate), with the same error reporting. */
export function readConfigFile(ref: { file: string }, where: string): string {
  try {
    return readFileSync(ref.file, 'utf8');
  } catch (err) {
    throw new ConfigError([
      `${where}: cannot read ${ref.file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    ]);
  }
}

/** Header values from config, secrets resolved. */
export function readHeaders(
  headers: Readonly<Record<string, string | SinkSecretRef>> | undefined,
  where: string,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    out[name.toLowerCase()] = typeof value === 'string' ? value : readSecret(value, `${where}.headers.${name}`);
  }
  return out;
}
