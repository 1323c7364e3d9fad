/**
 * Reads `{ env }` / `{ file }` references from the config once, at start-up, so a missing secret stops the gateway
 * with the config key to fix rather than failing later (sinks, approval webhooks, admin tokens).
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import type { SecretRef } from './common-schemas.js';

/**
 * The secret's value, trimmed (files usually end with a newline); `where` names the config key for the error.
 * `env`: where `{ env }` references are looked up.
 */
export function readSecret(ref: SecretRef, where: string, env: NodeJS.ProcessEnv = process.env): string {
  if ('env' in ref) {
    const value = env[ref.env]?.trim();
    if (!value) throw new ConfigError([`${where}: environment variable ${ref.env} is not set or empty`]);
    return value;
  }
  const value = readConfigFile(ref, where).trim();
  if (!value) throw new ConfigError([`${where}: ${ref.file} is empty`]);
  return value;
}

/** Reads a file named by the config (a secret, a certificate), naming the config key when it cannot. */
export function readConfigFile(ref: { file: string }, where: string): string {
  try {
    return readFileSync(ref.file, 'utf8');
  } catch (err) {
    throw new ConfigError([
      `${where}: cannot read ${ref.file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    ]);
  }
}
