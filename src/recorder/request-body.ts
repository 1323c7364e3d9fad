import { isAscii, isUtf8 } from 'node:buffer';

/**
 * A request body as the gateway sees it: the exact bytes, and — only when someone asks — its structure, single
 * top-level fields, or the whole parsed value. The hot path asks for `model`, `stream` and `metadata`, which costs a
 * structural scan and three small parses, not a parse of ~40 KB.
 */
import { scanObject, type Member } from './json-scan.js';

/** Whether `body` starts like a JSON object or array (after whitespace): worth a structural scan whatever its label. */
function looksLikeJson(body: Buffer): boolean {
  for (let i = 0; i < body.length; i++) {
    const b = body[i]!;
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) continue;
    return b === 0x7b || b === 0x5b;
  }
  return false;
}

export class RequestBody {
  private text_: string | undefined;
  private ascii_: boolean | undefined;
  private members_: Member[] | null | undefined;
  private json_: { value: unknown } | undefined;

  constructor(
    readonly raw: Buffer,
    /** Whether it is to be read as JSON (its content type says so, or it looks like it). */
    readonly isJson: boolean,
  ) {}

  /** The body as UTF-8 text, or undefined when it is not valid UTF-8 (a binary upload). */
  get text(): string | undefined {
    this.text_ ??= isUtf8(this.raw) ? this.raw.toString('utf8') : '';
    return this.text_ === '' && this.raw.length ? undefined : this.text_;
  }

  /**
   * The raw bytes when every one is ASCII: then an offset into `text` is the same offset into the bytes, and a slice
   * can be hashed without encoding it again. Undefined otherwise.
   */
  get asciiBytes(): Buffer | undefined {
    this.ascii_ ??= isAscii(this.raw);
    return this.ascii_ ? this.raw : undefined;
  }

  /** The top-level members of a JSON object body, as slices of `text`; null when it is not one. */
  get members(): Member[] | null {
    if (this.members_ === undefined) {
      const text = this.isJson ? this.text : undefined;
      this.members_ = text ? scanObject(text) : null;
    }
    return this.members_;
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
        return JSON.parse(this.text!.slice(m.start, m.end));
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
      if (this.isJson && this.raw.length) {
        try {
          value = JSON.parse(this.text ?? '');
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
