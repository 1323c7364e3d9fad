/**
 * Which blobs a record refers to. A reference is an element `{ "$blob": "<sha-256>" }` of the `parts` of a stored body
 * (`StoredBody`, written by the recorder's `PartsBuilder`), and a stored body sits at exactly two places:
 *   - `exchange.request`:  `data.request.body`
 *   - `exchange.response`: `data.body`
 * Nothing else in a record is a reference, however it looks: a response embeds upstream's JSON (the assembled
 * message, a tool's `input`), events embed each event's JSON as received, and a caller can make the model produce
 * `{"$blob": …}` there. Appends (which refuse a reference to a blob the store does not hold), the purge and verify all
 * use this one definition.
 */
import type { StoredBody } from './record-types.js';

const BLOB_KEY = '$blob';

/** Where a record of this kind keeps its stored body, if it has one. */
const STORED_BODY: ReadonlyMap<string, (data: Record<string, unknown>) => unknown> = new Map([
  ['exchange.request', (data) => (data.request as { body?: unknown } | null | undefined)?.body],
  ['exchange.response', (data) => data.body],
]);

/** The `$blob` hashes among a stored body's parts (anything not shaped like a stored body has none). */
function partsRefs(body: unknown): string[] {
  const parts = (body as Partial<StoredBody> | null | undefined)?.parts;
  if (!Array.isArray(parts)) return [];
  const found: string[] = [];
  for (const p of parts as unknown[]) {
    if (p !== null && typeof p === 'object') {
      const h = (p as Record<string, unknown>)[BLOB_KEY];
      if (typeof h === 'string') found.push(h);
    }
  }
  return found;
}

function bodyRefs(kind: string, data: unknown): string[] {
  const at = STORED_BODY.get(kind);
  return at && data !== null && typeof data === 'object' ? partsRefs(at(data as Record<string, unknown>)) : [];
}

/** The blob hashes a stored record refers to, given its data as stored (JSON text). Throws when it is not JSON. */
export function blobRefs(record: { readonly kind: string; readonly data: string }): string[] {
  // Most records have no stored body, and most bodies are short enough to be inline: no parse for those.
  if (!STORED_BODY.has(record.kind) || !record.data.includes(BLOB_KEY)) return [];
  return bodyRefs(record.kind, JSON.parse(record.data));
}

/** The blob hashes a record about to be appended refers to, each once (a message resent inside one request). */
export function newRecordBlobRefs(r: {
  readonly kind: string;
  readonly data: unknown;
  readonly json?: string;
}): string[] {
  const refs = r.json !== undefined ? blobRefs({ kind: r.kind, data: r.json }) : bodyRefs(r.kind, r.data);
  return refs.length > 1 ? [...new Set(refs)] : refs;
}

/** Every `{"$blob": "<string>"}` in a JSON value, at any depth. */
function anyDepthRefs(value: unknown, found: string[]): string[] {
  if (Array.isArray(value)) {
    for (const x of value) anyDepthRefs(x, found);
  } else if (value !== null && typeof value === 'object') {
    const h = (value as Record<string, unknown>)[BLOB_KEY];
    if (typeof h === 'string') found.push(h);
    for (const x of Object.values(value)) anyDepthRefs(x, found);
  }
  return found;
}

/**
 * The hashes the store may have indexed as this record's references: its blob references, and, for records written
 * before references were only those of stored bodies, any `{"$blob": "<string>"}` at any depth of its data (what
 * earlier versions, and the migrations that filled the index in, took for one). A purge removes the index rows of all
 * of them, so no row left behind by a removed record keeps a blob from being removed with it. Throws when the data is
 * not JSON.
 */
export function indexedBlobRefs(data: string): string[] {
  return data.includes(BLOB_KEY) ? [...new Set(anyDepthRefs(JSON.parse(data), []))] : [];
}
