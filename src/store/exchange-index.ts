/**
 * Which index rows a record adds. Both stores insert these in the same transaction as the record, so the indexes
 * never disagree with the ledger; they can always be rebuilt from it.
 */
import { VigilError } from '../errors.js';
import type { ExchangeSummary, NewRecord, Page } from './audit-store.js';
import {
  hourLongCacheWrites,
  tokenCount,
  type ExchangeRequestData,
  type ExchangeResponseData,
} from './record-types.js';

/** What the exchange index holds from the request record; the result columns come with the response. */
export type ExchangeIndexRow = Pick<
  ExchangeSummary,
  | 'id'
  | 'sessionId'
  | 'connection'
  | 'callerSubject'
  | 'callerMethod'
  | 'method'
  | 'path'
  | 'model'
  | 'stream'
  | 'startedAt'
>;

export interface ResultIndexRow {
  readonly exchangeId: string;
  readonly endedAt: number;
  readonly status: number | null;
  readonly outcome: string;
  /** All input: uncached, cache writes and cache reads (null: no usage was reported). */
  readonly inputTokens: number | null;
  readonly outputTokens: number | null;
  /** The part of the input read from the prompt cache. */
  readonly cacheReadTokens: number | null;
  /** The part of the input written to the prompt cache, for either lifetime. */
  readonly cacheWriteTokens: number | null;
  /** The part of `cacheWriteTokens` written for an hour (billed higher than the default five minutes). */
  readonly cacheWrite1hTokens: number | null;
  readonly model: string | null;
  /** Why the answer stopped (`end_turn`, `tool_use`, `max_tokens`, `refusal`, …); null when it did not say. */
  readonly stopReason: string | null;
}

export function exchangeIndexRow(r: NewRecord): ExchangeIndexRow | undefined {
  if (r.kind !== 'exchange.request' || r.exchangeId === undefined) return undefined;
  const d = r.data as ExchangeRequestData;
  return {
    id: r.exchangeId,
    sessionId: d.session.id,
    connection: d.connection,
    callerSubject: d.caller.subject,
    callerMethod: d.caller.method,
    method: d.request.method,
    path: d.request.path,
    model: d.model,
    stream: d.stream,
    startedAt: d.startedAt,
  };
}

export function resultIndexRow(r: NewRecord): ResultIndexRow | undefined {
  if (r.kind !== 'exchange.response' || r.exchangeId === undefined) return undefined;
  const d = r.data as ExchangeResponseData;
  const u = d.usage;
  const read = u === null ? null : tokenCount(u.cache_read_input_tokens);
  const write = u === null ? null : tokenCount(u.cache_creation_input_tokens);
  return {
    exchangeId: r.exchangeId,
    endedAt: d.timing.endedAt,
    status: d.status,
    outcome: d.outcome,
    inputTokens: u === null ? null : tokenCount(u.input_tokens) + write! + read!,
    outputTokens: u?.output_tokens ?? null,
    cacheReadTokens: read,
    cacheWriteTokens: write,
    cacheWrite1hTokens: u === null ? null : hourLongCacheWrites(u),
    model: d.model,
    // A string, or nothing (records from before it was recorded; a value that is not a string is not indexed).
    stopReason: typeof d.stopReason === 'string' ? d.stopReason : null,
  };
}

/** Who called, beyond the subject: the columns that tell people with the same subject at two issuers apart. */
export interface CallerIndexRow {
  readonly exchangeId: string;
  readonly issuer: string | null;
  readonly email: string | null;
  /** The caller's groups when the exchange was recorded (from the identity token), deduplicated. */
  readonly groups: readonly string[];
}

/**
 * The caller row of a request record; none when there is nothing to index beyond the subject (anonymous callers and
 * gateway keys): lists join callers with LEFT JOIN and filters look for a value, so a row of nulls would only cost
 * the request's commit two more pages before it is forwarded.
 */
export function callerIndexRow(r: NewRecord): CallerIndexRow | undefined {
  if (r.kind !== 'exchange.request' || r.exchangeId === undefined) return undefined;
  const { caller } = r.data as ExchangeRequestData;
  const row = {
    exchangeId: r.exchangeId,
    issuer: caller.issuer ?? null,
    email: caller.email ?? null,
    groups: [...new Set(caller.groups ?? [])],
  };
  return row.issuer === null && row.email === null && row.groups.length === 0 ? undefined : row;
}

/** Masking detector types found in an exchange (from its response record's summary), with how many values each. */
export function maskingIndexRows(r: NewRecord): Array<{ exchangeId: string; type: string; count: number }> {
  if (r.kind !== 'exchange.response' || r.exchangeId === undefined) return [];
  const counts = (r.data as ExchangeResponseData).masking?.counts ?? {};
  const exchangeId = r.exchangeId;
  return Object.entries(counts)
    .filter(([, count]) => count > 0)
    .map(([type, count]) => ({ exchangeId, type, count }));
}

/** List cursors (sessions, exchanges, search hits, access log): opaque to callers, `<time or seq>:<id>` inside. */
function encodeCursor(lastAt: number, id: string): string {
  return Buffer.from(`${lastAt}:${id}`).toString('base64url');
}

/**
 * The position a cursor names.
 *
 * @throws VigilError 400 for anything that is not a cursor this store handed out: read as "from the top", a
 *   tampered or truncated cursor would send a paginating client back to page 1, to loop or read duplicates.
 */
export function decodeCursor(cursor: string): { lastAt: number; id: string } {
  const text = Buffer.from(cursor, 'base64url').toString();
  const i = text.indexOf(':');
  const lastAt = Number(text.slice(0, i));
  if (i <= 0 || !Number.isSafeInteger(lastAt) || encodeCursor(lastAt, text.slice(i + 1)) !== cursor) {
    throw new VigilError('BAD_REQUEST', 'cursor: not a cursor from this list (pass next_cursor as it was given)');
  }
  return { lastAt, id: text.slice(i + 1) };
}

/**
 * One page from rows queried with `LIMIT limit + 1`: the extra row, when there, says a next page exists, and the
 * cursor is the last item's position (`at`, then a tie-breaking id).
 */
export function pageOf<R, T>(
  rows: readonly R[],
  limit: number,
  map: (row: R) => T,
  position: (item: T) => readonly [at: number, id: string],
): Page<T> {
  const items = rows.slice(0, limit).map(map);
  const last = items.at(-1);
  return { items, nextCursor: rows.length > limit && last ? encodeCursor(...position(last)) : null };
}

/** A page size within 1..1000 (default 50), whatever a caller asked for. */
export function pageSize(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit)) return 50;
  return Math.min(Math.max(Math.trunc(limit), 1), 1000);
}
