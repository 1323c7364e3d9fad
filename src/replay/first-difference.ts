/**
 * Where two JSON values first differ, told the way a person debugging a replay wants it: the JSON path
 * (`messages[4].content[0].text`) and short excerpts of both sides around the first differing character.
 */

/** The first difference between a recorded value and the one a request carried. */
export interface Difference {
  /** JSON path from the body's root, e.g. `messages[4].content[0].text`; `` for the root itself. */
  readonly path: string;
  /** Human description of both sides, e.g. `recorded text '…lo wor…', got '…lo Wor…'`. */
  readonly detail: string;
}

/** How two strings compare; the default is plain equality. Replay passes one that lets `[REDACTED:…]` match. */
export type StringEquality = (recorded: string, got: string) => boolean;

const EXCERPT = 40;
const absent = Symbol('absent');

/**
 * The first place, walking `recorded` in its own member order (array items by index, then extra members of `got`),
 * where `got` differs; `null` when they are equal as JSON.
 */
export function firstDifference(
  recorded: unknown,
  got: unknown,
  equal: StringEquality = (a, b) => a === b,
): Difference | null {
  return walk(recorded, got, '', equal);
}

function walk(r: unknown, g: unknown, path: string, equal: StringEquality): Difference | null {
  if (typeof r === 'string' && typeof g === 'string') {
    return equal(r, g) ? null : { path, detail: describeStrings(r, g) };
  }
  if (Array.isArray(r) && Array.isArray(g)) {
    const n = Math.max(r.length, g.length);
    for (let i = 0; i < n; i++) {
      const d = walk(i < r.length ? r[i] : absent, i < g.length ? g[i] : absent, `${path}[${i}]`, equal);
      if (d)
        return r.length === g.length
          ? d
          : { path: d.path, detail: `${d.detail} (recorded ${r.length} items, got ${g.length})` };
    }
    return null;
  }
  if (isObject(r) && isObject(g)) {
    for (const k of Object.keys(r)) {
      const d = walk(r[k], k in g ? g[k] : absent, join(path, k), equal);
      if (d) return d;
    }
    for (const k of Object.keys(g)) {
      if (!(k in r)) return walk(absent, g[k], join(path, k), equal);
    }
    return null;
  }
  if (r === g) return null;
  return { path, detail: `recorded ${describe(r)}, got ${describe(g)}` };
}

function describeStrings(r: string, g: string): string {
  let i = 0;
  while (i < r.length && i < g.length && r.charCodeAt(i) === g.charCodeAt(i)) i++;
  const from = Math.max(0, i - EXCERPT / 2);
  return `recorded text '${excerpt(r, from)}', got '${excerpt(g, from)}'`;
}

function excerpt(s: string, from: number): string {
  const to = Math.min(s.length, from + EXCERPT);
  // JSON escapes make newlines and control characters visible in a one-line message.
  const inner = JSON.stringify(s.slice(from, to)).slice(1, -1);
  return `${from > 0 ? '…' : ''}${inner}${to < s.length ? '…' : ''}`;
}

function describe(v: unknown): string {
  if (v === absent) return 'nothing';
  if (typeof v === 'string') return `text '${excerpt(v, 0)}'`;
  const json = JSON.stringify(v) ?? String(v);
  const kind = v === null ? '' : Array.isArray(v) ? 'array ' : typeof v === 'object' ? 'object ' : '';
  return `${kind}${json.length > EXCERPT ? `${json.slice(0, EXCERPT)}…` : json}`;
}

function join(path: string, key: string): string {
  const part = /^[A-Za-z_$][\w$]*$/.test(key) ? key : `[${JSON.stringify(key)}]`;
  return path === '' || part.startsWith('[') ? `${path}${part}` : `${path}.${part}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
