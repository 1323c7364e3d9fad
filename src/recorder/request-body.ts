import { isUtf8 } from 'node:buffer';

/**
 * A request body as the gateway sees it: the exact bytes, and — only when someone asks — its structure, single
 * top-level fields, or the whole parsed value. The hot path asks for `model`, `stream` and `metadata`, which costs a
 * structural scan and three small parses, not a parse of ~40 KB.
 */
import { sha256Hex } from '../store/ledger.js';
import type { MaskFinding } from './masking/masker.js';
import { commonPrefixLength, commonSuffixLength, scanObject, type EarlierScan, type Member } from './json-scan.js';

/** Whether `body` starts like a JSON object or array (after whitespace): worth a structural scan whatever its label. */
function looksLikeJson(body: Buffer): boolean {
  for (let i = 0; i < body.length; i++) {
    const b = body[i]!;
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) continue;
    return b === 0x7b || b === 0x5b;
  }
  return false;
}

/**
 * A piece of a body the recorder stored: its length, the SHA-256 of its bytes, and what masking made of it (the stored
 * blob's hash and what was found), once known. The same entry goes on to the next body that holds the same bytes.
 */
export interface PieceEntry {
  readonly length: number;
  /** Where in the body it is (a member's key, a range of messages): masking depends on it (`paths` rules, keys). */
  readonly place: string;
  readonly key: string;
  outcome?: { readonly hash: string; readonly findings: readonly MaskFinding[] };
}

/**
 * What is kept of a request body to read the next one of its conversation: its bytes, its members, and its pieces by
 * start offset.
 */
export interface BodyLayout {
  readonly raw: Buffer;
  readonly members: readonly Member[] | null;
  readonly pieces: ReadonlyMap<number, PieceEntry>;
}

export class RequestBody {
  private utf8_: boolean | undefined;
  private members_: Member[] | null | undefined;
  private json_: { value: unknown } | undefined;
  /** The previous body of the same conversation, and how many bytes at its start and end this one shares. */
  private earlier: (EarlierScan & { readonly pieces: BodyLayout['pieces'] }) | undefined;
  private readonly pieces = new Map<number, PieceEntry>();

  constructor(
    readonly raw: Buffer,
    /** Whether it is to be read as JSON (its content type says so, or it looks like it). */
    readonly isJson: boolean,
  ) {}

  /** Whether the body is valid UTF-8 text. */
  get isUtf8(): boolean {
    this.utf8_ ??= isUtf8(this.raw);
    return this.utf8_;
  }

  /**
   * Read this body as the next of the conversation `previous` was part of (Claude Code resends it every turn, with a
   * turn added): what lies in the bytes the two share at their start and end is taken from it rather than scanned and
   * hashed again (its structure is scanned from the previous one's only when it was not asked for yet).
   */
  follow(previous: BodyLayout): void {
    if (previous.members === null || !this.isJson) return;
    const prefix = commonPrefixLength(this.raw, previous.raw);
    if (prefix === 0) return;
    const suffix = commonSuffixLength(this.raw, previous.raw, Math.min(this.raw.length, previous.raw.length) - prefix);
    this.earlier = { raw: previous.raw, members: previous.members, prefix, suffix, pieces: previous.pieces };
  }

  /** The top-level members of a JSON object body, as byte ranges of `raw`; null when it is not one. */
  get members(): Member[] | null {
    if (this.members_ === undefined) {
      this.members_ = this.isJson && this.raw.length && this.isUtf8 ? scanObject(this.raw, this.earlier) : null;
    }
    return this.members_;
  }

  /** The text of bytes [start, end), which begin and end on character boundaries (as members and elements do). */
  slice(start: number, end: number): string {
    return this.raw.toString('utf8', start, end);
  }

  /**
   * The piece of bytes [start, end) at `place`: the previous body's entry when they lie in the bytes the two share and
   * it stored the same piece at the same place (its key and masking outcome come with it), else a new entry, hashed.
   * Remembered for the next body.
   */
  piece(start: number, end: number, place: string): PieceEntry {
    let entry: PieceEntry | undefined;
    const e = this.earlier;
    if (e) {
      // Where the same bytes were in the previous body: the same place in the shared start, shifted in the shared end.
      let shift: number | undefined;
      if (end <= e.prefix) shift = 0;
      else if (e.suffix > 0 && start >= this.raw.length - e.suffix) shift = this.raw.length - e.raw.length;
      const known = shift === undefined ? undefined : e.pieces.get(start - shift);
      if (known?.length === end - start && known.place === place) entry = known;
    }
    entry ??= { length: end - start, place, key: sha256Hex(this.raw.subarray(start, end)) };
    this.pieces.set(start, entry);
    return entry;
  }

  /** What the next body of the conversation can take from this one (see follow). */
  layout(): BodyLayout {
    return { raw: this.raw, members: this.members, pieces: this.pieces };
  }

  /** One top-level field, parsed; undefined when absent or unreadable. */
  field(key: string): unknown {
    if (this.json_) return (this.json_.value as Record<string, unknown> | null)?.[key];
    const members = this.members;
    if (!members) return undefined;
    // JSON.parse keeps the last of duplicate keys: so does this.
    for (let i = members.length - 1; i >= 0; i--) {
      const m = members[i]!;
      if (m.key !== key) continue;
      try {
        return JSON.parse(this.slice(m.start, m.end));
      } catch {
        return undefined;
      }
    }
    return undefined;
  }

  /** The whole body parsed, when it is JSON; undefined otherwise. */
  json(): unknown {
    if (this.json_ === undefined) {
      let value: unknown;
      if (this.isJson && this.raw.length && this.isUtf8) {
        try {
          value = JSON.parse(this.raw.toString('utf8'));
        } catch {
          value = undefined;
        }
      }
      this.json_ = { value };
    }
    return this.json_.value;
  }

  /**
   * A body as a client sent it: JSON by its label or by its look, so that a prompt cannot slip past masking and
   * approval rules under another content type.
   */
  static received(raw: Buffer, contentType: string | undefined): RequestBody {
    return new RequestBody(raw, (contentType ?? '').includes('json') || looksLikeJson(raw));
  }

  /** Replace the body (in-flight masking): the new bytes are what is forwarded and recorded. */
  static fromValue(value: unknown): RequestBody {
    const b = new RequestBody(Buffer.from(JSON.stringify(value)), true);
    b.json_ = { value };
    return b;
  }
}
