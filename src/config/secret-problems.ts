/**
 * Every secret and certificate the gateway will read at start-up, checked at once: a config with three missing
 * environment variables is reported with all three, not one per attempt.
 */
import { ConfigError } from '../errors.js';
import { forEachConfigRef, isSecretRef, type ConfigRef } from './common-schemas.js';
import type { VigilConfig } from './config-schema.js';
import { formatPath } from './config-path.js';
import { readConfigFile, readSecret } from './read-secret.js';

/**
 * Sections whose `{ env }` / `{ file }` references stop start-up when they cannot be read. Not `connections` (a
 * connection without its credential is reported and refuses its requests), `store` (opened on its own) or `signing`
 * (the key is generated when absent).
 */
const CHECKED_SECTIONS = ['tls', 'admin', 'approvals', 'siem'] as const;

/** The problems with every secret reference and certificate file in the checked sections, each named by its config path. */
export function secretProblems(config: VigilConfig, env: NodeJS.ProcessEnv = process.env): string[] {
  const problems: string[] = [];
  const check = (ref: ConfigRef, path: readonly PropertyKey[]): void => {
    const where = formatPath(path, config);
    try {
      if (isSecretRef(ref)) readSecret(ref, where, env);
      else readConfigFile(ref, where);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
  };
  for (const section of CHECKED_SECTIONS) forEachConfigRef(config[section], [section], check);
  return problems;
}
