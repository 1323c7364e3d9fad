/**
 * The payloads of the ledger's exchange records: the stored format, shared by the recorder that writes them, the
 * stores that index them, and the readers (CLI, API, replay) that assemble them back.
 */
import type { Principal } from '../identity/principal.js';
import type { Outcome } from './audit-store.js';

/**
 * A body stored by reference: the exact bytes are the concatenation of `parts`, where a string is inline text and
 * `{ $blob }` is a content-addressed blob (SHA-256 of its bytes). Requests are split at message boundaries so a
 * conversation resent every turn shares its blobs with the previous turn.
 */
export interface StoredBody {
  readonly size: number;
  readonly parts: ReadonlyArray<string | { readonly $blob: string }>;
  /** Set when the recorded body is shorter than what passed (over the recording limit). */
  readonly truncated?: true;
  /** Set when the body is not UTF-8 text: blobs then hold raw bytes. */
  readonly binary?: true;
}

export type HeaderMap = Readonly<Record<string, string | readonly string[]>>;

/**
 * The conversation an exchange belongs to: its session and, for a Claude Code subagent, the agent. Each request of a
 * conversation resends the one before it, which the recorder (scan and hash only what changed) and the SQLite store
 * (index only the blob refs the previous request lacked, ref-bases.ts) both build on.
 */
export function conversationKey(sessionId: string, agentId: string | undefined): string {
  return `${sessionId}\0${agentId ?? ''}`;
}

export interface ExchangeRequestData {
  readonly connection: string;
  readonly caller: Principal;
  readonly client: { readonly address: string | null; readonly userAgent: string | null };
  readonly session: { readonly id: string; readonly source: 'header' | 'claude-code' | 'metadata' | 'generated' };
  readonly agent?: { readonly id?: string; readonly parentId?: string };
  readonly request: {
    readonly method: string;
    readonly path: string;
    readonly query: string;
    readonly headers: HeaderMap;
    readonly body: StoredBody | null;
  };
  readonly model: string | null;
  readonly stream: boolean;
  readonly startedAt: number;
}

export interface RecordedEvent {
  /** Index of the event in the stream, from 0. */
  readonly i: number;
  readonly type: string;
  /**
   * The event's `data:` text. In a stored `exchange.events` record, data that is JSON (all of Anthropic's) is embedded
   * as the JSON value itself, as received; anything else is stored as a string. Use `eventDataText()` to get text.
   */
  readonly data: string;
  /** In memory only: `data` is known to be JSON text (it was parsed), so it can be embedded as is. */
  readonly isJson?: true;
  /** Milliseconds since the exchange started (fractional). */
  readonly offset_ms: number;
}

/** A stored event's data as text, whichever way it was stored. */
export function eventDataText(data: unknown): string {
  return typeof data === 'string' ? data : JSON.stringify(data);
}

export interface ExchangeEventsData {
  readonly events: readonly RecordedEvent[];
}

export interface Usage {
  readonly input_tokens?: number;
  readonly output_tokens?: number;
  readonly cache_creation_input_tokens?: number;
  readonly cache_read_input_tokens?: number;
  readonly [k: string]: unknown;
}

/** A token count from upstream's usage: a positive integer, else 0 (absent, null, or not a count). */
export function tokenCount(n: unknown): number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 ? n : 0;
}

/**
 * Of a usage's cache writes, those kept an hour (`cache_creation.ephemeral_1h_input_tokens`, billed higher than the
 * default five minutes), as a count: at most the writes' total, whatever the breakdown says (it is newer than the
 * total, and a proxy may garble it).
 */
export function hourLongCacheWrites(usage: Usage): number {
  const breakdown = usage['cache_creation'] as { ephemeral_1h_input_tokens?: unknown } | null | undefined;
  return Math.min(tokenCount(breakdown?.ephemeral_1h_input_tokens), tokenCount(usage.cache_creation_input_tokens));
}

export interface MaskingSummary {
  /** Detector type → number of values replaced, over the whole exchange (request and response). */
  readonly counts: Readonly<Record<string, number>>;
  /** Where: `request.body$.messages[3].content[0].text`, `response.events`, `request.headers.x-foo`, … */
  readonly findings: ReadonlyArray<{ readonly type: string; readonly path: string; readonly count: number }>;
}

export interface ExchangeResponseData {
  readonly status: number | null;
  readonly headers: HeaderMap | null;
  /** Non-streaming bodies, decoded (content-encoding removed). Streams are in `exchange.events` records. */
  readonly body: StoredBody | null;
  /** For streams: the message assembled from the events. */
  readonly message: unknown;
  readonly usage: Usage | null;
  readonly model: string | null;
  readonly stopReason: string | null;
  readonly outcome: Outcome;
  /** What went wrong, for any outcome but ok: upstream error type/message, abort reason, gateway error. */
  readonly error: { readonly type: string; readonly message: string } | null;
  readonly eventCount: number;
  /** What masking replaced before anything was stored: counts per detector type, and where. Never the values. */
  readonly masking?: MaskingSummary;
  readonly timing: {
    readonly startedAt: number;
    readonly firstByteMs: number | null;
    readonly endedAt: number;
    readonly durationMs: number;
  };
}
