/**
 * Splits a body into content-addressed blobs so that what a client resends is stored once.
 *
 * Claude Code resends the whole conversation on every turn (its first request alone carries ~40 KB of system prompt
 * and tool definitions). A JSON request body is cut at its top-level values and, for `messages`, at each message:
 * the pieces are the exact bytes of the body, so concatenating them gives the body back byte for byte, and a piece
 * seen on an earlier turn is a blob already stored. Bodies that are not compact JSON (pretty-printed, or not JSON
 * at all) are stored whole, still deduplicated when repeated exactly.
 */
import { isUtf8 } from 'node:buffer';
import type { BlobWrite } from '../store/audit-store.js';
import { sha256Hex } from '../store/ledger.js';
import type { StoredBody } from '../store/record-types.js';

/** Pieces shorter than this stay inline in the record: a blob row costs more than it saves. */
export const MIN_BLOB = 256;
/** A message this large is a group of its own (a big tool result resent every turn). */
export const LARGE_MESSAGE = 4096;
export const MAX_GROUP = 64 * 1024;
/** Message groups recur on every later turn, so even small ones are worth a blob. */
export const MIN_GROUP_BLOB = 64;

/**
 * Bytes at the end of a message that hold its last 64 characters whatever they are: a character is at most 3 bytes
 * per UTF-16 code unit, so 256 bytes decode to at least 84 code units after a character cut at the window's start.
 */
export const GROUP_TAIL_BYTES = 256;

/** On average one message in four ends a group: FNV-1a over the message's last 64 characters (UTF-16 code units). */
export function endsGroup(s: string): boolean {
  let h = 0x811c9dc5;
  for (let i = Math.max(0, s.length - 64); i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0) % 4 === 0;
}

export interface SplitBody {
  readonly body: StoredBody;
  readonly blobs: readonly BlobWrite[];
}

/**
 * Remembers which blob hashes this process has already written durably, so a resent piece costs a hash, not a write.
 * Bounded: the oldest entries are forgotten first (a forgotten blob is written again and ignored by the store).
 */
export class KnownBlobs {
  private readonly seen = new Set<string>();
  constructor(private readonly max = 100_000) {}

  has(hash: string): boolean {
    return this.seen.has(hash);
  }

  /** Forget everything: blobs may have been removed (retention), so they are written again when next used. */
  clear(): void {
    this.seen.clear();
  }

  add(hash: string): void {
    if (this.seen.size >= this.max) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    this.seen.add(hash);
  }
}

/** Builds a stored body: inline text and references to content-addressed blobs. */
export class PartsBuilder {
  readonly parts: Array<string | { $blob: string }> = [];
  readonly blobs: BlobWrite[] = [];
  private inline = '';

  constructor(private readonly known: KnownBlobs | undefined) {}

  text(s: string): void {
    this.inline += s;
  }

  piece(s: string, min = MIN_BLOB): void {
    if (s.length < min) {
      this.inline += s;
      return;
    }
    this.blob(Buffer.from(s, 'utf8'));
  }

  blob(data: Buffer): void {
    this.ref(sha256Hex(data), data);
  }

  /** A reference to the blob `hash`; `data` is written unless the blob is known to be stored already. */
  ref(hash: string, data?: Buffer): void {
    if (this.inline) {
      this.parts.push(this.inline);
      this.inline = '';
    }
    this.parts.push({ $blob: hash });
    // Known blobs are skipped; the caller marks new ones known only once they are durably written.
    if (data !== undefined && !this.known?.has(hash)) this.blobs.push({ hash, data });
  }

  /** Whether the blob `hash` is known to be stored already (so its data need not be produced). */
  isKnown(hash: string): boolean {
    return this.known?.has(hash) ?? false;
  }

  done(size: number, extra: Partial<Pick<StoredBody, 'truncated' | 'binary'>> = {}): SplitBody {
    if (this.inline) this.parts.push(this.inline);
    return { body: { size, parts: this.parts, ...extra }, blobs: this.blobs };
  }
}

/**
 * Store `raw` (whose parsed JSON value is `value`, when it parsed) as parts. When `value` is given and re-serialises
 * to exactly `raw`, the body is split at message boundaries; `value` may also be a *masked* copy of the body, in
 * which case the stored pieces are the masked serialisation (`exact` false).
 */
export function splitBody(
  raw: Buffer,
  value: unknown,
  options: { known?: KnownBlobs; exact?: boolean; truncated?: boolean } = {},
): SplitBody {
  const b = new PartsBuilder(options.known);
  const extra = options.truncated ? { truncated: true as const } : {};
  if (raw.length === 0) return b.done(0, extra);
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const text = serialiseInPieces(value as Record<string, unknown>, b);
    if (options.exact === false || text.length === raw.length) {
      // Same length is necessary; equality of content is checked once, against the joined pieces.
      if (options.exact === false || raw.toString('utf8') === text) return b.done(Buffer.byteLength(text), extra);
    }
    return splitWhole(raw, options, extra);
  }
  return splitWhole(raw, options, extra);
}

function splitWhole(
  raw: Buffer,
  options: { known?: KnownBlobs },
  extra: Partial<Pick<StoredBody, 'truncated' | 'binary'>>,
): SplitBody {
  const b = new PartsBuilder(options.known);
  if (raw.length < MIN_BLOB && isUtf8(raw)) {
    b.text(raw.toString('utf8'));
    return b.done(raw.length, extra);
  }
  b.blob(raw);
  return b.done(raw.length, isUtf8(raw) ? extra : { ...extra, binary: true });
}

/** JSON.stringify of an object, emitted piece by piece into `b`; returns the whole serialisation. */
function serialiseInPieces(obj: Record<string, unknown>, b: PartsBuilder): string {
  let whole = '{';
  b.text('{');
  let first = true;
  for (const key of Object.keys(obj)) {
    const v = obj[key];
    // JSON.stringify drops undefined, functions and symbols as object members; match it exactly.
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
    const head = `${first ? '' : ','}${JSON.stringify(key)}:`;
    first = false;
    whole += head;
    b.text(head);
    if (key === 'messages' && Array.isArray(v)) {
      whole += '[';
      b.text('[');
      // Messages are grouped by content-defined boundaries: whether a message ends a group depends on that message
      // alone, so the groups of earlier turns come out identical on every later turn and are stored once, while a
      // long conversation needs a few references per turn rather than one per message.
      let group = '';
      v.forEach((m, i) => {
        const s = (JSON.stringify(m) as string | undefined) ?? 'null';
        const sep = i === 0 ? '' : ',';
        whole += sep + s;
        if (s.length >= LARGE_MESSAGE && group) {
          b.piece(group, MIN_GROUP_BLOB);
          group = '';
        }
        group += sep + s;
        if (s.length >= LARGE_MESSAGE || group.length >= MAX_GROUP || endsGroup(s)) {
          b.piece(group, MIN_GROUP_BLOB);
          group = '';
        }
      });
      if (group) b.piece(group, MIN_GROUP_BLOB);
      whole += ']';
      b.text(']');
    } else {
      const s = JSON.stringify(v);
      whole += s;
      b.piece(s);
    }
  }
  whole += '}';
  b.text('}');
  return whole;
}

/** The exact bytes of a stored body, given its blobs. Throws naming the blob when one is missing. */
export function joinBody(body: StoredBody, blobs: ReadonlyMap<string, Buffer>): Buffer {
  const chunks = body.parts.map((p) => {
    if (typeof p === 'string') return Buffer.from(p, 'utf8');
    const data = blobs.get(p.$blob);
    if (data === undefined) throw new Error(`blob ${p.$blob} is missing from the store`);
    return data;
  });
  return Buffer.concat(chunks);
}

export function blobHashes(body: StoredBody | null | undefined): string[] {
  if (!body) return [];
  return body.parts.flatMap((p) => (typeof p === 'string' ? [] : [p.$blob]));
}
