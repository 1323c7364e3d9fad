/**
 * An incremental Server-Sent Events decoder for the bytes the proxy has already sent on to the client.
 *
 * It follows the WHATWG "interpreting an event stream" algorithm
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
 * lines end at CRLF, LF or CR; a blank line dispatches the event; `data` lines are joined with LF; one space after
 * the colon is dropped; comments (`:`), `retry` and unknown fields are ignored; one leading UTF-8 BOM is skipped.
 *
 * It sits on the hot path, so each byte is scanned once: newlines are found with `indexOf` on the chunk as given,
 * complete lines are decoded straight out of the chunk, and only the incomplete last line of a chunk is kept
 * (copied, so the caller may reuse its buffer). Lines are kept as bytes until they are complete and decoded whole,
 * which makes a multi-byte UTF-8 character split across chunks decode correctly without a streaming TextDecoder.
 */

/** One dispatched event. */
export interface SseEvent {
  /** The `event` field, or `'message'` when the event had none (or an empty one), as the spec dispatches it. */
  readonly type: string;
  /** The `data` lines joined with `\n`. */
  readonly data: string;
  /**
   * The stream's last event ID at dispatch, when one is set. As in the spec it persists across events until another
   * `id` field changes it, so an event carries the ID of the last `id` line before it, not only of its own.
   */
  readonly id?: string;
}

/** Options for {@link SseDecoder}. */
export interface SseDecoderOptions {
  /**
   * When the stream ends after `data` lines but before the blank line that would dispatch them, return that event
   * from {@link SseDecoder.end} anyway. The spec says to discard it; a recorder may rather keep what was sent.
   * Default `false`.
   */
  readonly flushIncomplete?: boolean;
}

/** What {@link SseDecoder.end} reports. */
export interface SseEnd {
  /** The incomplete last event, only with `flushIncomplete` and only if it had `data`. */
  readonly events: SseEvent[];
  /**
   * Bytes after the last blank line, i.e. not part of any completed event: 0 for a stream that ended cleanly,
   * more for one cut mid-event (whether or not `flushIncomplete` turned them into an event).
   */
  readonly trailingBytes: number;
}

const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;
const DATA = Buffer.from('data');
const EVENT = Buffer.from('event');
const ID = Buffer.from('id');

/** Decodes one event stream; feed it with {@link SseDecoder.push} and finish with {@link SseDecoder.end}. */
export class SseDecoder {
  private readonly flushIncomplete: boolean;

  /** The incomplete last line, as copies of the chunk tails it spans; joined once the line completes. */
  private pending: Buffer[] = [];
  private pendingLength = 0;
  /** The last chunk ended with CR: an LF opening the next chunk belongs to the same line ending. */
  private skipLf = false;
  private atStreamStart = true;

  /** Data buffer of the event being built; `null` until its first `data` line (an empty `data:` still counts). */
  private data: string | null = null;
  private eventType = '';
  private lastEventId = '';

  /** Bytes pushed so far, and the stream offset just after the last blank line, for `trailingBytes`. */
  private total = 0;
  private boundary = 0;

  constructor(options: SseDecoderOptions = {}) {
    this.flushIncomplete = options.flushIncomplete ?? false;
  }

  /**
   * Feed the next chunk of the raw stream.
   *
   * @returns the events this chunk completed, in order (often none: an event may span chunks).
   */
  push(chunk: Buffer): SseEvent[] {
    const out: SseEvent[] = [];
    const length = chunk.length;
    if (length === 0) return out;
    const base = this.total;
    this.total += length;
    let pos = 0;
    if (this.skipLf) {
      this.skipLf = false;
      if (chunk[0] === LF) {
        pos = 1;
        // The CR that ended a blank line was the boundary; its LF is part of that line ending, not a trailing byte.
        if (this.boundary === base) this.boundary = base + 1;
      }
    }
    // Next LF and CR at or after `pos`: -2 means not searched yet, -1 means none left in this chunk. Each is searched
    // again only once `pos` passes it, so the chunk is scanned once whichever line endings it mixes.
    let nextLf = -2;
    let nextCr = -2;
    while (pos < length) {
      if (nextLf !== -1 && nextLf < pos) nextLf = chunk.indexOf(LF, pos);
      if (nextCr !== -1 && nextCr < pos) nextCr = chunk.indexOf(CR, pos);
      let eol: number;
      if (nextLf === -1) {
        if (nextCr === -1) break;
        eol = nextCr;
      } else {
        eol = nextCr === -1 || nextLf < nextCr ? nextLf : nextCr;
      }

      let blank: boolean;
      if (this.pendingLength > 0) {
        const line = this.takePending(chunk.subarray(pos, eol));
        blank = false;
        this.line(line, 0, line.length, out);
      } else {
        blank = eol === pos;
        this.line(chunk, pos, eol, out);
      }

      if (chunk[eol] === CR) {
        if (eol + 1 < length) {
          pos = chunk[eol + 1] === LF ? eol + 2 : eol + 1;
        } else {
          this.skipLf = true;
          pos = length;
        }
      } else {
        pos = eol + 1;
      }
      if (blank) this.boundary = base + pos;
    }
    if (pos < length) {
      // Copied: the caller (the proxy) owns the chunk and may reuse it once this returns.
      this.pending.push(Buffer.from(chunk.subarray(pos)));
      this.pendingLength += length - pos;
    }
    return out;
  }

  /**
   * End of stream. Discards (or, with `flushIncomplete`, returns) an event that was never completed by a blank
   * line, and resets the decoder for another stream.
   */
  end(): SseEnd {
    const events: SseEvent[] = [];
    const trailingBytes = this.total - this.boundary;
    if (this.flushIncomplete) {
      if (this.pendingLength > 0) {
        const line = this.takePending(undefined);
        this.line(line, 0, line.length, events);
      }
      this.dispatch(events);
    }
    this.pending = [];
    this.pendingLength = 0;
    this.skipLf = false;
    this.atStreamStart = true;
    this.data = null;
    this.eventType = '';
    this.lastEventId = '';
    this.total = 0;
    this.boundary = 0;
    return { events, trailingBytes };
  }

  /** The pending line tail plus `rest`, as one buffer; clears the pending tail. */
  private takePending(rest: Buffer | undefined): Buffer {
    if (rest !== undefined && rest.length > 0) this.pending.push(rest);
    const length = this.pendingLength + (rest?.length ?? 0);
    const line = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, length);
    this.pending = [];
    this.pendingLength = 0;
    return line;
  }

  /** Interpret the line `buf[start, end)` (without its line ending). */
  private line(buf: Buffer, start: number, end: number, out: SseEvent[]): void {
    if (this.atStreamStart) {
      this.atStreamStart = false;
      // A UTF-8 BOM holds no CR or LF, so if the stream opens with one it lies wholly in the first line.
      if (end - start >= 3 && buf[start] === 0xef && buf[start + 1] === 0xbb && buf[start + 2] === 0xbf) start += 3;
    }
    if (start === end) {
      this.dispatch(out);
      return;
    }
    if (buf[start] === COLON) return; // comment, e.g. a keep-alive
    // Field names are short: a bounded loop, rather than indexOf, which would scan on past the line's end.
    let colon = start;
    while (colon < end && buf[colon] !== COLON) colon++;
    let valueStart = colon + 1;
    if (valueStart < end && buf[valueStart] === SPACE) valueStart++;
    if (isField(buf, start, colon, DATA)) {
      const value = valueStart < end ? buf.toString('utf8', valueStart, end) : '';
      this.data = this.data === null ? value : this.data + '\n' + value;
    } else if (isField(buf, start, colon, EVENT)) {
      this.eventType = valueStart < end ? buf.toString('utf8', valueStart, end) : '';
    } else if (isField(buf, start, colon, ID)) {
      // The spec ignores an id holding NULL.
      const value = valueStart < end ? buf.toString('utf8', valueStart, end) : '';
      if (!value.includes('\0')) this.lastEventId = value;
    }
    // retry and unknown fields are ignored: the recorder never reconnects.
  }

  /** Blank line: dispatch the event being built if it has data, then start a new one. */
  private dispatch(out: SseEvent[]): void {
    if (this.data !== null) {
      const type = this.eventType === '' ? 'message' : this.eventType;
      out.push(this.lastEventId === '' ? { type, data: this.data } : { type, data: this.data, id: this.lastEventId });
    }
    this.data = null;
    this.eventType = '';
  }
}

/** Whether the field name `buf[start, end)` is `name`, compared as bytes so that no string is made for it. */
function isField(buf: Buffer, start: number, end: number, name: Buffer): boolean {
  if (end - start !== name.length) return false;
  for (let i = 0; i < name.length; i++) if (buf[start + i] !== name[i]) return false;
  return true;
}
