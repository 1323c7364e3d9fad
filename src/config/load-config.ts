/**
 * Reads the YAML config (or the embedded default), applies command-line overrides, validates once and freezes.
 * Every problem is reported with the path of the key to fix.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { resolveFileRefs } from './file-refs.js';
import { configSchema, type VigilConfig } from './config-schema.js';
import { formatPath } from './config-path.js';
import { closestKey, knownKeysAt } from './key-hints.js';

export interface ConfigOverrides {
  readonly configFile?: string | undefined;
  readonly listen?: string | undefined;
  readonly upstream?: string | undefined;
  readonly dataDir?: string | undefined;
}

/** The embedded default: one connection to Anthropic with the gateway's own ANTHROPIC_API_KEY. */
function defaultConfigInput(): Record<string, unknown> {
  return {
    connections: [
      { name: 'anthropic', upstream: 'https://api.anthropic.com', credential: { env: 'ANTHROPIC_API_KEY' } },
    ],
  };
}

export function loadConfig(overrides: ConfigOverrides = {}): VigilConfig {
  let input: Record<string, unknown>;
  let baseDir = process.cwd();
  if (overrides.configFile) {
    const file = path.resolve(overrides.configFile);
    baseDir = path.dirname(file);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError([`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`]);
    }
    try {
      const parsed: unknown = parseYaml(text) ?? {};
      if (typeof parsed !== 'object' || Array.isArray(parsed))
        throw new ConfigError([`${file}: must be a YAML mapping`]);
      input = parsed as Record<string, unknown>;
    } catch (err) {
      if (err instanceof YAMLParseError) throw new ConfigError([`${file}: ${err.message}`]);
      throw err;
    }
  } else {
    input = defaultConfigInput();
  }

  if (overrides.listen !== undefined) input.listen = overrides.listen;
  // A path given on the command line is relative to where the command runs, not to the config file's folder.
  if (overrides.dataDir !== undefined) input.data_dir = path.resolve(overrides.dataDir);
  if (overrides.upstream !== undefined) {
    const conns = Array.isArray(input.connections) ? (input.connections as Array<Record<string, unknown>>) : [];
    if (conns.length === 0) {
      input.connections = [
        { name: 'anthropic', upstream: overrides.upstream, credential: { env: 'ANTHROPIC_API_KEY' } },
      ];
    } else {
      const defName = input.default_connection;
      const target = conns.find((c) => c.name === defName) ?? conns[0]!;
      target.upstream = overrides.upstream;
    }
  }

  return validateConfig(input, baseDir);
}

/** Validate a config object; relative paths resolve against `baseDir` (the config file's folder). */
export function validateConfig(input: unknown, baseDir: string = process.cwd()): VigilConfig {
  const result = configSchema.safeParse(input);
  if (!result.success) throw new ConfigError(formatIssues(result.error.issues, input));
  const config = result.data;
  config.data_dir = path.resolve(baseDir, config.data_dir);
  if (config.store.sqlite.path !== undefined)
    config.store.sqlite.path = path.resolve(baseDir, config.store.sqlite.path);
  // Every `{ file }` reference (credentials, sink secrets and certificates, admin tokens, approval webhooks, the
  // PostgreSQL URL) is relative to the config file; the signing key alone is relative to data_dir (see signing).
  for (const [section, value] of Object.entries(config)) if (section !== 'signing') resolveFileRefs(value, baseDir);
  return deepFreeze(config);
}

function formatIssues(issues: readonly z.core.$ZodIssue[], input: unknown): string[] {
  return issues.flatMap((issue) => {
    const where = formatPath(issue.path, input);
    if (issue.code === 'unrecognized_keys') {
      const present = keysOf(valueAt(input, issue.path));
      const known = knownKeysAt(configSchema, issue.path);
      return issue.keys.map((k) => {
        const meant = closestKey(k, known, present);
        const hint = meant ? ` (did you mean "${meant}"?)` : '';
        return `${where ? `${where}.` : ''}${k}: unknown key${hint}`;
      });
    }
    if (
      (issue.code === 'invalid_type' || issue.code === 'invalid_union') &&
      issue.path.length &&
      valueAt(input, issue.path) === undefined
    ) {
      // A required key that is missing, often because it is misspelt: zod would say "expected array, received undefined".
      const key = String(issue.path.at(-1));
      const siblings = keysOf(valueAt(input, issue.path.slice(0, -1)));
      const misspelt = siblings.find((s) => closestKey(s, [key]) === key);
      const hint = misspelt ? ` (the file has "${misspelt}": did you mean "${key}"?)` : '';
      return `${where}: required, but missing${hint}`;
    }
    return `${where || '(top level)'}: ${issue.message}`;
  });
}

/** The input's value at `p`, or undefined. */
function valueAt(input: unknown, p: readonly PropertyKey[]): unknown {
  let node: unknown = input;
  for (const key of p) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/** The keys of a mapping in the input (none for anything else). */
const keysOf = (v: unknown): string[] =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.keys(v) : [];

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
