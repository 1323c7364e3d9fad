/**
 * Hints for misspelt config keys: the keys the schema knows at a given place, and the one closest to what was written
 * (`credentail` → `credential`, `connection` → `connections`).
 */
import type { z } from 'zod';

/** Keys people write by habit, mapped to the key this schema uses (checked before edit distance). */
export const RENAMED: Readonly<Record<string, string>> = {
  dataDir: 'data_dir',
  datadir: 'data_dir',
  upstream_url: 'upstream',
  upstreamUrl: 'upstream',
  url: 'upstream',
  api_key: 'credential',
  apiKey: 'credential',
  key: 'credential',
  defaultConnection: 'default_connection',
  listener: 'listen',
  port: 'listen',
};

interface SchemaDef {
  readonly type: string;
  readonly shape?: Record<string, z.ZodType>;
  readonly innerType?: z.ZodType;
  readonly in?: z.ZodType;
  readonly element?: z.ZodType;
  readonly options?: readonly z.ZodType[];
  readonly valueType?: z.ZodType;
}

const defOf = (schema: z.ZodType): SchemaDef => (schema as unknown as { def: SchemaDef }).def;

/** The object schemas `schema` may be at `path` (several where a union has object options). */
function objectsAt(schema: z.ZodType, path: readonly PropertyKey[]): SchemaDef[] {
  const def = defOf(schema);
  switch (def.type) {
    case 'optional':
    case 'default':
    case 'prefault':
    case 'nullable':
    case 'readonly':
    case 'catch':
      return objectsAt(def.innerType!, path);
    case 'pipe':
      return objectsAt(def.in!, path);
    case 'union':
      return (def.options ?? []).flatMap((o) => objectsAt(o, path));
    case 'array':
      return typeof path[0] === 'number' ? objectsAt(def.element!, path.slice(1)) : [];
    case 'record':
      return path.length ? objectsAt(def.valueType!, path.slice(1)) : [];
    case 'object': {
      if (!path.length) return [def];
      const next = def.shape?.[String(path[0])];
      return next ? objectsAt(next, path.slice(1)) : [];
    }
    default:
      return [];
  }
}

/** The keys the schema accepts for the object at `path` (empty when it cannot tell). */
export function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  return [...new Set(objectsAt(schema, path).flatMap((d) => Object.keys(d.shape ?? {})))];
}

/** Optimal string alignment distance: Levenshtein plus swapping two neighbours (`credentail`) as one edit. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** `dataDir`, `data-dir` and `DATA_DIR` all mean `data_dir`. */
const normalise = (key: string): string => key.replace(/[-_]/g, '').toLowerCase();

/**
 * The known key `key` was most likely meant to be: a habitual rename when it is one of `known`, else the closest key
 * within a small edit distance (1 for short keys, 2 from five characters), ignoring case, `-` and `_`, among the keys
 * not `present` already (a key that is there was not misspelt).
 */
export function closestKey(key: string, known: readonly string[], present: readonly string[] = []): string | undefined {
  const renamed = RENAMED[key];
  if (renamed !== undefined && (known.length === 0 || known.includes(renamed))) return renamed;
  const limit = key.length >= 5 ? 2 : 1;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    if (present.includes(candidate)) continue;
    const distance = editDistance(normalise(key), normalise(candidate));
    if (distance <= limit && distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}
