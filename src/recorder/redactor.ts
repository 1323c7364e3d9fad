/**
 * THE redaction point. Everything the recorder stores about an exchange — request body and headers, every stream
 * event, the assembled message, the response body and headers, error text, search text — is produced by an
 * `ExchangeRedaction`, and the recorder builds its records only from what this returns: there is no other path from
 * exchanged bytes to the store.
 *
 * Stream events are masked with a `StreamMasker` per content block, so a secret split across `text_delta` or
 * `input_json_delta` fragments is masked in the stored fragments too. A delta event is stored once the masker has
 * released all of its text: a fragment in unchanged text is stored exactly as received, and the masked text of a
 * replaced span goes on the first fragment it touches (the others of that span store ''). The stored fragments, joined,
 * are exactly the masked block; a stream in which nothing was masked is stored exactly as received; and the stored
 * events remain a valid stream a replay can reproduce. Events behind a held delta wait with it, so the stored order is
 * the received order.
 */
import { isUtf8 } from 'node:buffer';
import { CappedMap } from '../capped-map.js';
import type { MaskingConfig } from './masking/masking-config.js';
import { compileMasker } from './masking/masker.js';
import type { Masker, MaskFinding, MaskResult } from './masking/masker.js';
import { formatJsonPath } from './masking/json-path.js';
import { createMaskingMemo, type MaskingMemo } from './masking/masking-memo.js';
import { StreamMasker } from './masking/stream-masker.js';
import { maskPath, maskQuery } from './masking/url-masking.js';
import type { BlobWrite } from '../store/audit-store.js';
import type { HeaderMap, MaskingSummary, RecordedEvent, StoredBody } from '../store/record-types.js';
import {
  endsGroup,
  GROUP_TAIL_BYTES,
  LARGE_MESSAGE,
  MAX_GROUP,
  MIN_BLOB,
  MIN_GROUP_BLOB,
  PartsBuilder,
  splitBody,
  type KnownBlobs,
} from './body-splitter.js';
import type { BodyLayout, PieceEntry, RequestBody } from './request-body.js';
import { newMessages, roleOf, turnStart } from './exchange-turn.js';
import { sha256Hex } from '../store/ledger.js';
import type { SseEvent } from './sse-decoder.js';

/** Fields of a content_block_delta whose text is streamed in fragments. */
const FRAGMENT_FIELD: Readonly<Record<string, string>> = {
  text_delta: 'text',
  thinking_delta: 'thinking',
  input_json_delta: 'partial_json',
};

/** Events that never carry content worth scanning. */
const CONTENT_FREE = new Set(['ping', 'message_stop', 'content_block_stop']);

interface Queued {
  event: RecordedEvent;
  parsed: Record<string, unknown> | undefined;
  /** For a delta: the field holding its fragment, the fragment as received, and what to store instead. */
  field?: string;
  fragment?: string;
  out?: string;
  final: boolean;
}

/** One streamed content block being masked. */
interface BlockState {
  readonly masker: StreamMasker;
  /** Delta events of this block not yet assigned their stored text, in order. */
  readonly held: Queued[];
  /** Original text pushed but not yet released by the masker. */
  pending: string;
  /** Released original text not yet assigned to a fragment, and its masked form. */
  orig: string;
  out: string;
  /** Characters at the start of `orig` whose masked form was already assigned. */
  skip: number;
}

function commonPrefix(a: string, b: string, max: number): number {
  let i = 0;
  const n = Math.min(a.length, b.length, max);
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

function commonSuffix(a: string, b: string): number {
  let i = 0;
  const n = Math.min(a.length, b.length);
  while (i < n && a.charCodeAt(a.length - 1 - i) === b.charCodeAt(b.length - 1 - i)) i++;
  return i;
}

/** What masking made of a piece of a request seen before: the stored blob's hash and what was found in it. */
type PieceOutcome = NonNullable<PieceEntry['outcome']>;

interface MaskedHeader {
  readonly original: string | readonly string[];
  readonly name: string;
  readonly value: string | readonly string[];
  readonly findings: readonly MaskFinding[];
}

function sameHeaderValue(a: string | readonly string[], b: string | readonly string[]): boolean {
  if (typeof a === 'string' || typeof b === 'string') return a === b;
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** A map of at most `max` entries, least recently used first out: read it with `use`. */
function lru<V extends NonNullable<unknown>>(max: number): CappedMap<string, V> {
  return new CappedMap<string, V>(max, Infinity, () => 0);
}

/** Parts of a request recorded even at `record: metadata`. */
export type RequestPart = 'path' | 'query' | 'userAgent';

/** Sessions whose strings are remembered, most recently used kept. */
const MAX_SESSION_MEMOS = 256;
/** Characters one session's memo may keep alive. */
const SESSION_MEMO_CHARS = 8 * 1024 * 1024;
/** Characters all sessions' memos together may keep alive. */
const MEMO_BUDGET_CHARS = 32 * 1024 * 1024;
/** Conversations whose last request body is kept, and the bytes those bodies may keep alive. */
const MAX_BODIES = 1024;
const MAX_BODY_BYTES = 64 * 1024 * 1024;
/** Request pieces whose masking outcome is remembered. */
const MAX_PIECES = 50_000;

/**
 * What redactors remember between requests that grows with traffic — the session memos, the last request body of
 * each conversation, the masking outcomes of request pieces — under one set of bounds for all the redactors that
 * share it: the gateway's connections share one, so several busy connections hold what one busy connection would
 * (they held that much each). Each redactor keys its entries with a scope of its own: connections mask differently,
 * and never see each other's.
 */
export class RedactorMemory {
  private scopes = 0;
  /** Session memos by scope and session, most recently used last. */
  private readonly memos = new Map<string, MaskingMemo>();
  /** The last request body of each conversation by scope and conversation, most recently remembered last. */
  readonly bodies = new CappedMap<string, BodyLayout>(MAX_BODIES, MAX_BODY_BYTES, (layout) => layout.raw.length);
  /** Request pieces by scope, place and the hash of their bytes: resent history is never parsed or scanned again. */
  readonly pieces = lru<PieceOutcome>(MAX_PIECES);

  /** A key prefix no other redactor of this memory has. */
  newScope(): string {
    return `${this.scopes++}\0`;
  }

  /** The memo of a session (`key`: scope and session), made the most recently used; a new one when there is none. */
  sessionMemo(key: string): MaskingMemo {
    const { memos } = this;
    let m = memos.get(key);
    if (m) {
      // Most recently used last: the map's first entry is the one to evict.
      memos.delete(key);
    } else {
      m = createMaskingMemo(20_000, SESSION_MEMO_CHARS);
      if (memos.size >= MAX_SESSION_MEMOS) memos.delete(memos.keys().next().value!);
    }
    memos.set(key, m);
    // One budget over all sessions: a gateway serving many long sessions at once would otherwise hold up to
    // MAX_SESSION_MEMOS × SESSION_MEMO_CHARS. The least recently used sessions go first (their next turn is scanned
    // once more). Not a CappedMap: a memo's weight grows while it is held.
    let held = this.memoHeldChars;
    for (const [id, memo] of memos) {
      if (held <= MEMO_BUDGET_CHARS || memo === m) break;
      held -= memo.heldChars;
      memos.delete(id);
    }
    return m;
  }

  /** Characters the session memos keep alive together (at most MEMO_BUDGET_CHARS plus the session in use). */
  get memoHeldChars(): number {
    let held = 0;
    for (const memo of this.memos.values()) held += memo.heldChars;
    return held;
  }
}

export class Redactor {
  readonly masker: Masker;
  private readonly scope: string;
  /**
   * Header names and values, whatever their length: nearly all of them repeat on every request of every session
   * (user agent, beta flags, SDK versions), and short ones like dates and version numbers pass the detectors' cheap
   * prefilters, so scanning them each time cost more than masking the body.
   */
  readonly headerMemo = createMaskingMemo(4096, 1024 * 1024, 1);
  /**
   * Each header name's last value and what masking made of it: most headers carry the same value on every request,
   * and comparing it with the last one costs less than any lookup.
   */
  readonly lastHeaders = new Map<string, MaskedHeader>();
  /**
   * For masking requests in flight (`masking.in_flight`): the conversation a client resends every turn is scanned once,
   * not on every request before it is forwarded. Shared by all sessions: an entry depends only on the text.
   */
  readonly inFlightMemo = createMaskingMemo(20_000, SESSION_MEMO_CHARS);
  /**
   * Paths, query strings and user agents, and what masking made of them: nearly all repeat on every request
   * (`/v1/messages`, `beta=true`, the client's user agent), so a lookup replaces the parse and the scan.
   */
  private readonly requestParts = lru<MaskResult<string>>(1024);

  /**
   * @param memory - what grows with traffic, under bounds shared with the other redactors given the same memory (the
   *   gateway's connections); by default a memory of its own.
   */
  constructor(
    config: MaskingConfig,
    private readonly memory: RedactorMemory = new RedactorMemory(),
  ) {
    this.masker = compileMasker(config);
    this.scope = memory.newScope();
  }

  /**
   * The last request body of a conversation (session and agent): the next one shares most of its bytes (see
   * `RequestBody.follow`).
   */
  previousBody(conversation: string): BodyLayout | undefined {
    return this.memory.bodies.get(this.scope + conversation);
  }

  rememberBody(conversation: string, layout: BodyLayout): void {
    // A body that cannot be followed, or larger than all may hold, is not kept; nor is the conversation's earlier one.
    const key = this.scope + conversation;
    if (layout.members === null) this.memory.bodies.delete(key);
    else this.memory.bodies.offer(key, layout);
  }

  get enabled(): boolean {
    return this.masker.enabled;
  }

  memo(sessionId: string): MaskingMemo {
    return this.memory.sessionMemo(this.scope + sessionId);
  }

  /** Characters the session memos of this redactor's memory keep alive together (see {@link RedactorMemory}). */
  get memoHeldChars(): number {
    return this.memory.memoHeldChars;
  }

  begin(sessionId: string): ExchangeRedaction {
    return new ExchangeRedaction(
      this.masker,
      this.enabled ? this.memo(sessionId) : undefined,
      this.memory.pieces,
      this.scope,
      this.headerMemo,
      this.lastHeaders,
      this.maskRequestPart,
    );
  }

  /** {@link requestPart}, bound once for the exchanges' redactions. */
  private readonly maskRequestPart = (part: RequestPart, value: string): MaskResult<string> =>
    this.requestPart(part, value);

  /** A request's path, query string (parameter by parameter) or user agent, masked. */
  requestPart(part: RequestPart, value: string): MaskResult<string> {
    if (!this.enabled || value === '') return { value, findings: [], changed: false };
    const key = `${part}\0${value}`;
    let r = this.requestParts.use(key);
    if (r === undefined) {
      if (part === 'query') r = maskQuery(this.masker, value, this.headerMemo);
      else if (part === 'path') r = maskPath(this.masker, value, this.headerMemo);
      else r = this.masker.maskJson(value, '$', this.headerMemo) as MaskResult<string>;
      this.requestParts.set(key, r);
    }
    return r;
  }
}

export class ExchangeRedaction {
  private readonly counts = new Map<string, number>();
  private readonly findings = new Map<string, { type: string; path: string; count: number }>();
  private readonly blocks = new Map<number, BlockState>();
  private queue: Queued[] = [];

  constructor(
    private readonly masker: Masker,
    private readonly memo: MaskingMemo | undefined,
    private readonly pieces: CappedMap<string, PieceOutcome>,
    /** The redactor's key prefix in `pieces`. */
    private readonly scope: string,
    private readonly headerMemo: MaskingMemo,
    private readonly lastHeaders: Map<string, MaskedHeader>,
    private readonly maskRequestPart: (part: RequestPart, value: string) => MaskResult<string>,
  ) {}

  get enabled(): boolean {
    return this.masker.enabled;
  }

  private note(found: readonly MaskFinding[], where: string): void {
    for (const f of found) {
      this.counts.set(f.type, (this.counts.get(f.type) ?? 0) + f.count);
      const path = `${where}${f.path === '$' || f.path === 'text' ? '' : f.path.replace(/^\$/, '')}`;
      const key = `${f.type}\0${path}`;
      const prev = this.findings.get(key);
      if (prev) prev.count += f.count;
      else this.findings.set(key, { type: f.type, path, count: f.count });
    }
  }

  /** Mask any JSON value (a message, a parsed body, an error) before it is stored. */
  json<T>(value: T, where: string): T {
    if (!this.enabled || value === null || value === undefined) return value;
    const r = this.masker.maskJson(value, '$', this.memo);
    this.note(r.findings, where);
    return r.value as T;
  }

  text(value: string, where: string): string {
    if (!this.enabled || value === '') return value;
    // Unlabelled: note() puts `where` in front of the findings' paths (a label would come out twice).
    const r = this.masker.maskText(value);
    this.note(r.findings, where);
    return r.value;
  }

  /** The request's path, query string or user agent as it is recorded; `where` names its findings. */
  requestPart(part: RequestPart, value: string, where: string): string {
    if (!this.enabled) return value;
    const r = this.maskRequestPart(part, value);
    if (r.changed) this.note(r.findings, where);
    return r.value;
  }

  headers(headers: HeaderMap): HeaderMap {
    if (!this.enabled) return headers;
    let out: Record<string, string | readonly string[]> | undefined;
    const names = Object.keys(headers);
    for (let i = 0; i < names.length; i++) {
      const name = names[i]!;
      const value = headers[name]!;
      const m = this.maskedHeader(name, value);
      if (m.findings.length) this.note(m.findings, 'headers');
      if ((m.name !== name || m.value !== value) && out === undefined) {
        out = {};
        for (let j = 0; j < i; j++) out[names[j]!] = headers[names[j]!]!;
      }
      if (out !== undefined) {
        let key = m.name;
        for (let n = 2; key !== name && Object.hasOwn(out, key); n++) key = `${m.name}#${n}`;
        out[key] = m.value;
      }
    }
    return out ?? headers;
  }

  /** One header through the masker, as part of a header object (same paths and findings), remembered by name. */
  private maskedHeader(name: string, value: string | readonly string[]): MaskedHeader {
    const last = this.lastHeaders.get(name);
    if (last !== undefined && sameHeaderValue(last.original, value)) return last;
    const r = this.masker.maskJson({ [name]: value }, '$', this.headerMemo);
    const [maskedName, maskedValue] = Object.entries(r.value as HeaderMap)[0]!;
    const m: MaskedHeader = { original: value, name: maskedName, value: maskedValue, findings: r.findings };
    if (this.lastHeaders.size >= 1024 && last === undefined) this.lastHeaders.clear();
    this.lastHeaders.set(name, m);
    return m;
  }

  /**
   * A request body to store. A JSON object is stored piece by piece — each top-level value, and the messages in
   * content-defined groups — as exact slices of what the client sent, each masked on its own; a piece seen before
   * (Claude Code resends the conversation every turn) costs one hash, or nothing when it lies in the bytes this body
   * shares with the previous one of its conversation (`RequestBody.follow`). Anything else goes through `body()`.
   * Returns also the turn's new messages as stored (masked), for the search index: those after the last assistant
   * message (`newMessages`).
   */
  requestBody(
    req: RequestBody,
    known: KnownBlobs,
  ): { body: StoredBody; blobs: readonly BlobWrite[]; turnMessages: readonly unknown[] } {
    const members = req.members;
    if (!members) {
      const r = this.body(req.raw, req.json(), 'request.body', { known });
      const messages = (r.json as { messages?: unknown } | undefined)?.messages;
      return {
        body: r.body,
        blobs: r.blobs,
        turnMessages: Array.isArray(messages) ? newMessages(messages) : [],
      };
    }
    const b = new PartsBuilder(known);
    let turnMessages: readonly unknown[] = [];
    let cursor = 0;
    const literal = (to: number): void => {
      if (to > cursor) b.text(this.text(req.slice(cursor, to), 'request.body'));
      cursor = to;
    };
    for (const m of members) {
      literal(m.start);
      if (m.elements) {
        literal(m.elements[0]?.[0] ?? m.start + 1);
        let groupStart = 0;
        let groupBytes = 0;
        m.elements.forEach(([start, end], i) => {
          const size = end - start;
          groupBytes += size;
          const last = i === m.elements!.length - 1;
          if (
            last ||
            size >= LARGE_MESSAGE ||
            groupBytes >= MAX_GROUP ||
            endsGroup(req.slice(Math.max(start, end - GROUP_TAIL_BYTES), end)) ||
            m.elements![i + 1]![1] - m.elements![i + 1]![0] >= LARGE_MESSAGE
          ) {
            const els = m.elements!.slice(groupStart, i + 1);
            literal(els[0]![0]);
            this.piece(b, req, els[0]![0], end, MIN_GROUP_BLOB, els, groupStart);
            cursor = end;
            groupStart = i + 1;
            groupBytes = 0;
          }
        });
        turnMessages = this.turnMessagesOf(req, m.elements);
        literal(m.end);
      } else {
        this.piece(b, req, m.start, m.end, MIN_BLOB, undefined, 0, [m.key]);
        cursor = m.end;
      }
    }
    literal(req.raw.length);
    const out = b.done(req.raw.length);
    return { body: out.body, blobs: out.blobs, turnMessages };
  }

  /**
   * The turn's new messages as stored (masked), for the search index; their findings were noted with their pieces.
   * Parsed from the end, only as far back as the assistant message the turn follows: the resent history is not.
   */
  private turnMessagesOf(req: RequestBody, elements: ReadonlyArray<readonly [number, number]>): unknown[] {
    const parsed: unknown[] = [];
    const at = (i: number): unknown => (parsed[i] ??= this.messageOf(req.slice(elements[i]![0], elements[i]![1]), i));
    const out: unknown[] = [];
    for (let i = turnStart(elements.length, (j) => roleOf(at(j))); i < elements.length; i++) out.push(at(i));
    return out;
  }

  /** A message of the request as stored (masked); undefined when its text is no JSON. */
  private messageOf(elementText: string, index: number): unknown {
    try {
      const value = JSON.parse(elementText) as unknown;
      return this.enabled ? this.masker.maskJson(value, ['messages', index], this.memo).value : value;
    } catch {
      return undefined;
    }
  }

  /**
   * One piece: bytes [start, end) of the body, either one value (`path`) or a group of messages (`elements`, the first
   * being messages[firstIndex]). Stored inline when short, else as a blob of its masked text.
   */
  private piece(
    b: PartsBuilder,
    req: RequestBody,
    start: number,
    end: number,
    minBlob: number,
    elements: ReadonlyArray<readonly [number, number]> | undefined,
    firstIndex: number,
    path: readonly (string | number)[] = [],
  ): void {
    if (end - start < minBlob) {
      b.text(this.maskPiece(req, start, end, elements, firstIndex, path).text);
      return;
    }
    // Resent history: the previous body's entry knows what masking made of it; else a piece seen in another body at
    // the same place (masking depends on the place as well as the bytes: `paths` rules, a member's key, the paths of
    // findings).
    const place = elements ? `messages[${firstIndex}+${elements.length}]` : JSON.stringify(path);
    const entry = req.piece(start, end, place);
    const cacheKey = `${this.scope}${place}\0${entry.key}`;
    const seen = entry.outcome ?? this.pieces.use(cacheKey);
    if (seen && b.isKnown(seen.hash)) {
      this.note(seen.findings, 'request.body');
      b.ref(seen.hash);
      entry.outcome = seen;
      return;
    }
    const { text: masked, findings, changed } = this.maskPiece(req, start, end, elements, firstIndex, path);
    const outcome = { hash: changed ? sha256Hex(masked) : entry.key, findings };
    this.pieces.set(cacheKey, outcome);
    entry.outcome = outcome;
    b.ref(outcome.hash, changed ? Buffer.from(masked) : req.raw.subarray(start, end));
  }

  /**
   * The masked text of a piece (its findings noted), keeping the original bytes of everything unchanged; `changed`
   * when masking changed anything.
   */
  private maskPiece(
    req: RequestBody,
    start: number,
    end: number,
    elements: ReadonlyArray<readonly [number, number]> | undefined,
    firstIndex: number,
    path: readonly (string | number)[],
  ): { text: string; findings: MaskFinding[]; changed: boolean } {
    if (!this.enabled) return { text: req.slice(start, end), findings: [], changed: false };
    const findings: MaskFinding[] = [];
    let changed = false;
    // Each piece is masked at its place in the whole body, so `paths` rules and secret-sounding keys apply to it.
    const one = (s: number, e: number, at: readonly (string | number)[]): string => {
      const slice = req.slice(s, e);
      let value: unknown;
      try {
        value = JSON.parse(slice);
      } catch {
        const r = this.masker.maskText(slice, formatJsonPath('$', at));
        findings.push(...r.findings);
        if (r.value !== slice) changed = true;
        return r.value;
      }
      const r = this.masker.maskJson(value, at, this.memo);
      findings.push(...r.findings);
      if (!r.changed) return slice;
      changed = true;
      return JSON.stringify(r.value);
    };
    let out: string;
    if (!elements) out = one(start, end, path);
    else {
      out = '';
      let cursor = start;
      elements.forEach(([s, e], i) => {
        const between = req.slice(cursor, s);
        out += between + one(s, e, ['messages', firstIndex + i]);
        cursor = e;
      });
      out += req.slice(cursor, end);
    }
    this.note(findings, 'request.body');
    return { text: out, findings, changed };
  }

  /**
   * A body to store: masked, then split into blobs. An unmasked body is split exactly as received; a masked one is
   * stored as the masked serialisation (JSON), or with each found span replaced (anything else).
   */
  body(
    raw: Buffer,
    json: unknown,
    where: string,
    options: { known?: KnownBlobs; truncated?: boolean } = {},
  ): {
    body: StoredBody;
    blobs: readonly BlobWrite[];
    /** The parsed body as stored (masked), when it is JSON. */
    json: unknown;
  } {
    const split = {
      ...(options.known ? { known: options.known } : {}),
      ...(options.truncated ? { truncated: true } : {}),
    };
    if (!this.enabled || raw.length === 0) return { ...splitBody(raw, json, split), json };
    if (json !== undefined) {
      const r = this.masker.maskJson(json, '$', this.memo);
      this.note(r.findings, where);
      const stored = r.changed
        ? splitBody(Buffer.from(JSON.stringify(r.value)), r.value, { ...split, exact: false })
        : splitBody(raw, json, split);
      return { ...stored, json: r.value };
    }
    // Not UTF-8 (a Latin-1 CSV, a binary upload): scanned as Latin-1, where each byte is one character, and the masks
    // written back the same way, so every byte outside a masked span is stored as received.
    const encoding = isUtf8(raw) ? 'utf8' : 'latin1';
    const r = this.masker.maskText(raw.toString(encoding));
    this.note(r.findings, where);
    return {
      ...(r.changed ? splitBody(Buffer.from(r.value, encoding), undefined, split) : splitBody(raw, undefined, split)),
      json,
    };
  }

  /**
   * Take decoded stream events (with their parse, when the caller has it) and return the events ready to store, in
   * order. Some may be held until later events arrive; `flushEvents()` releases everything.
   */
  events(events: ReadonlyArray<{ event: RecordedEvent; parsed: unknown }>): RecordedEvent[] {
    if (!this.enabled) return events.map((e) => e.event);
    for (const { event, parsed } of events) this.accept(event, parsed as Record<string, unknown> | undefined);
    return this.release();
  }

  /** End of the exchange: whatever the stream maskers still hold goes onto the blocks' last deltas. */
  flushEvents(): RecordedEvent[] {
    if (!this.enabled) return [];
    for (const index of [...this.blocks.keys()]) this.closeBlock(index);
    for (const q of this.queue) q.final = true;
    return this.release();
  }

  private accept(event: RecordedEvent, parsed: Record<string, unknown> | undefined): void {
    if (parsed === undefined) {
      // Not a JSON object (an intermediary's notice, a malformed event): its text is masked like any other.
      const data = this.text(event.data, `response.events.${event.type}`);
      this.queue.push({ event: data === event.data ? event : { ...event, data }, parsed, final: true });
      return;
    }
    if (CONTENT_FREE.has(event.type)) {
      if (event.type === 'content_block_stop' && typeof parsed.index === 'number') this.closeBlock(parsed.index);
      this.queue.push({ event, parsed, final: true });
      return;
    }
    const delta = parsed.delta as Record<string, unknown> | undefined;
    const field =
      event.type === 'content_block_delta' && typeof delta?.type === 'string' ? FRAGMENT_FIELD[delta.type] : undefined;
    const index = parsed.index;
    if (field !== undefined && typeof index === 'number' && typeof delta?.[field] === 'string') {
      let block = this.blocks.get(index);
      if (!block) {
        const masker = new StreamMasker(this.masker, `response.events[${index}]`);
        this.blocks.set(index, (block = { masker, held: [], pending: '', orig: '', out: '', skip: 0 }));
      }
      const fragment = delta[field] as string;
      const q: Queued = { event, parsed, field, fragment, final: false };
      this.queue.push(q);
      block.held.push(q);
      const before = block.masker.releasedUpTo;
      const out = block.masker.push(fragment);
      this.released(block, out, block.masker.releasedUpTo - before, fragment);
      return;
    }
    const r = this.masker.maskJson(parsed, '$', this.memo);
    this.note(r.findings, `response.events.${event.type}`);
    this.queue.push({
      event: r.changed ? { ...event, data: JSON.stringify(r.value) } : event,
      parsed: r.value as Record<string, unknown>,
      final: true,
    });
  }

  /** The masker released `n` more original characters as `out`: assign them to the held fragments they cover. */
  private released(block: BlockState, out: string, n: number, pushed: string): void {
    block.pending += pushed;
    block.orig += block.pending.slice(0, n);
    block.pending = block.pending.slice(n);
    block.out += out;
    while (block.held.length) {
      const q = block.held[0]!;
      const length = q.fragment!.length;
      if (length > block.orig.length) return; // not all of it released yet
      let stored = '';
      for (let k = 0; k < length;) {
        if (block.skip > 0) {
          // Original characters inside a span whose masked form an earlier fragment already stored.
          const t = Math.min(length - k, block.skip);
          block.skip -= t;
          block.orig = block.orig.slice(t);
          k += t;
          continue;
        }
        const p = commonPrefix(block.orig, block.out, length - k);
        if (p > 0) {
          stored += block.out.slice(0, p);
          block.orig = block.orig.slice(p);
          block.out = block.out.slice(p);
          k += p;
          continue;
        }
        // A replaced span starts here: everything up to the unchanged tail of what was released is masked text.
        const tail = commonSuffix(block.orig, block.out);
        const changedOut = block.out.length - tail;
        stored += block.out.slice(0, changedOut);
        block.out = block.out.slice(changedOut);
        block.skip = block.orig.length - tail;
      }
      q.out = stored;
      q.final = true;
      block.held.shift();
    }
  }

  private closeBlock(index: number): void {
    const block = this.blocks.get(index);
    if (!block) return;
    this.blocks.delete(index);
    const before = block.masker.releasedUpTo;
    const rest = block.masker.end();
    this.released(block, rest, block.masker.releasedUpTo - before, '');
    this.note(block.masker.findings, '');
    // Whatever is left (only possible if the masker returned more than it was given) goes on the last fragment.
    const last = block.held.at(-1);
    for (const q of block.held) {
      q.out = q === last ? block.out : '';
      q.final = true;
    }
  }

  private release(): RecordedEvent[] {
    let n = 0;
    while (n < this.queue.length && this.queue[n]!.final) n++;
    if (n === 0) return [];
    const ready = this.queue.slice(0, n);
    this.queue = this.queue.slice(n);
    return ready.map((q) => {
      if (q.field === undefined) return q.event;
      const delta = q.parsed!.delta as Record<string, unknown>;
      if (q.fragment === q.out) return q.event;
      return { ...q.event, data: JSON.stringify({ ...q.parsed, delta: { ...delta, [q.field]: q.out } }) };
    });
  }

  /** What was masked in this exchange: counts per type and where. Never the values. */
  summary(): MaskingSummary | undefined {
    if (this.counts.size === 0) return undefined;
    return { counts: Object.fromEntries(this.counts), findings: [...this.findings.values()] };
  }
}

/** The decoded event as the redactor and the assembler both need it: parsed once. */
export function parseEventData(e: SseEvent): unknown {
  // Only a JSON object is parsed; whitespace may come first (`data:  {…}`: the SSE decoder drops one space only).
  const d = e.data;
  let i = 0;
  let c = d.charCodeAt(0);
  while (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) c = d.charCodeAt(++i);
  if (c !== 0x7b) return undefined;
  try {
    return JSON.parse(e.data);
  } catch {
    return undefined;
  }
}
