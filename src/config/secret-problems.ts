/**
 * Every secret and certificate the gateway will read at start-up, checked at once: a config with three missing
 * environment variables is reported with all three, not one per attempt.
 */
import { ConfigError } from '../errors.js';
import { isCertificateFile, isSecretRef } from './common-schemas.js';
import type { VigilConfig } from './config-schema.js';
import { formatPath } from './config-path.js';
import { readConfigFile, readSecret } from './read-secret.js';

/**
 * Sections whose `{ env }` / `{ file }` references stop start-up when they cannot be read. Not `connections` (a
 * connection without its credential is reported and refuses its requests), `store` (opened on its own) or `signing`
 * (the key is generated when absent).
 */
const CHECKED_SECTIONS = ['admin', 'approvals', 'siem'] as const;

/** The problems with every secret reference and certificate file in the checked sections, each named by its config path. */
export function secretProblems(config: VigilConfig, env: NodeJS.ProcessEnv = process.env): string[] {
  const problems: string[] = [];
  const visit = (value: unknown, path: PropertyKey[]): void => {
    if (value === null || typeof value !== 'object') return;
    // What is read is what the schema parsed as a reference, not whatever looks like one (a header named `env`).
    if (!isSecretRef(value) && !isCertificateFile(value)) {
      for (const [k, v] of Object.entries(value)) visit(v, [...path, Array.isArray(value) ? Number(k) : k]);
      return;
    }
    const where = formatPath(path, config);
    try {
      if (isSecretRef(value)) readSecret(value, where, env);
      else readConfigFile(value, where);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
  };
  for (const section of CHECKED_SECTIONS) visit(config[section], [section]);
  return problems;
}
