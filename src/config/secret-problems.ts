/**
 * Every secret and certificate the gateway will read at start-up, checked at once: a config with three missing
 * environment variables is reported with all three, not one per attempt.
 */
import { ConfigError } from '../errors.js';
import type { VigilConfig } from './config-schema.js';
import { formatPath } from './config-path.js';
import { readConfigFile, readSecret } from './read-secret.js';

/**
 * Sections whose `{ env }` / `{ file }` references stop start-up when they cannot be read. Not `connections` (a
 * connection without its credential is reported and refuses its requests), `store` (opened on its own) or `signing`
 * (the key is generated when absent).
 */
const CHECKED_SECTIONS = ['admin', 'approvals', 'siem'] as const;

/** Keys holding certificates: files that must be readable but are not secrets. */
const CERTIFICATE_KEYS = new Set(['ca', 'cert']);

/** The problems with every secret reference in the checked sections, each named by its config path. */
export function secretProblems(config: VigilConfig, env: NodeJS.ProcessEnv = process.env): string[] {
  const problems: string[] = [];
  const visit = (value: unknown, path: PropertyKey[]): void => {
    if (Array.isArray(value)) {
      value.forEach((v, i) => visit(v, [...path, i]));
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj);
    // A `headers` map is name → value (a value may be a reference): a header named `env` or `file` is no reference.
    const isRef =
      path.at(-1) !== 'headers' &&
      keys.length === 1 &&
      (keys[0] === 'env' || keys[0] === 'file') &&
      typeof obj[keys[0]] === 'string';
    if (!isRef) {
      for (const k of keys) visit(obj[k], [...path, k]);
      return;
    }
    const where = formatPath(path, config);
    try {
      if ('file' in obj && CERTIFICATE_KEYS.has(String(path.at(-1)))) readConfigFile(obj as { file: string }, where);
      else readSecret(obj as { env: string } | { file: string }, where, env);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
  };
  for (const section of CHECKED_SECTIONS) visit(config[section], [section]);
  return problems;
}
