/**
 * Query-string parameters of the admin API (and the CLI's filter options) turned into store filters, refusing what
 * does not parse with a message naming the parameter.
 */
import { USAGE_BY, type ExchangeFilter, type Outcome, type PageRequest, type UsageBy } from '../store/audit-store.js';
import { USAGE_MAX_ROWS } from '../store/usage-report.js';
import { VigilError } from '../errors.js';

export const OUTCOMES: ReadonlyArray<Outcome | 'in_progress'> = [
  'ok',
  'upstream_error',
  'client_aborted',
  'upstream_aborted',
  'gateway_error',
  'interrupted',
  'in_progress',
];

/** The filter parameters every list, search and export accepts. */
export const FILTER_PARAMS = [
  'caller',
  'group',
  'connection',
  'model',
  'outcome',
  'masking',
  'stop_reason',
  'since',
  'until',
] as const;

/** Parameter values by name: `URLSearchParams.get`, or the CLI's parsed options. */
export type ParamSource = (name: string) => string | null | undefined;

function badRequest(message: string): VigilError {
  return new VigilError('BAD_REQUEST', message);
}

/** An instant as an ISO 8601 date or date-time, or epoch milliseconds. */
function parseInstant(name: string, value: string): number {
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms))
    throw badRequest(`${name}: expected an ISO 8601 time (2025-01-15T09:00:00Z) or epoch milliseconds, got "${value}"`);
  return ms;
}

/** The exchange filter given by parameters; absent ones are left out. */
export function filterFrom(get: ParamSource): ExchangeFilter {
  const str = (name: string): string | undefined => {
    const v = get(name);
    return v === null || v === undefined || v === '' ? undefined : v;
  };
  const outcome = str('outcome');
  if (outcome !== undefined && !(OUTCOMES as readonly string[]).includes(outcome)) {
    throw badRequest(`outcome: expected one of ${OUTCOMES.join(', ')}, got "${outcome}"`);
  }
  const stopReason = str('stop_reason');
  if (stopReason !== undefined && !/^[a-z][a-z0-9_]{0,63}$/.test(stopReason)) {
    throw badRequest(
      `stop_reason: expected a stop reason such as end_turn, tool_use, max_tokens or refusal, got "${stopReason}"`,
    );
  }
  const since = str('since');
  const until = str('until');
  return {
    caller: str('caller'),
    group: str('group'),
    connection: str('connection'),
    model: str('model'),
    outcome: outcome as ExchangeFilter['outcome'],
    masking: str('masking'),
    stopReason,
    since: since === undefined ? undefined : parseInstant('since', since),
    until: until === undefined ? undefined : parseInstant('until', until),
  };
}

/** `by` and `limit` of a usage report (`GET /usage`, `vigil usage`): by caller and 100 rows unless asked. */
export function usageFrom(get: ParamSource): { by: UsageBy; limit: number | undefined } {
  const by = get('by') || 'caller';
  if (!(USAGE_BY as readonly string[]).includes(by)) {
    throw badRequest(`by: expected one of ${USAGE_BY.join(', ')}, got "${by}"`);
  }
  return { by: by as UsageBy, limit: pageFrom(get, USAGE_MAX_ROWS).limit };
}

/**
 * Exchanges in full per page of `GET /sessions/{id}`: by default, and at most. Each carries its whole request, and an
 * agent's requests resend the conversation: a long session in one answer was tens of MB, built on the event loop.
 */
export const SESSION_PAGE = { default: 20, max: 100 } as const;

/** `limit` (1..`max`, default 1000) and `cursor`. */
export function pageFrom(get: ParamSource, max = 1000): PageRequest {
  const limit = get('limit');
  const cursor = get('cursor');
  let n: number | undefined;
  if (limit !== null && limit !== undefined && limit !== '') {
    n = Number(limit);
    if (!Number.isInteger(n) || n < 1 || n > max)
      throw badRequest(`limit: expected an integer from 1 to ${max}, got "${limit}"`);
  }
  return { limit: n, cursor: cursor === null || cursor === undefined || cursor === '' ? undefined : cursor };
}

/** A yes/no parameter (`true` or `false`); undefined when absent. */
export function booleanParam(get: ParamSource, name: string): boolean | undefined {
  const v = get(name);
  if (v === null || v === undefined || v === '') return undefined;
  if (v === 'true' || v === 'false') return v === 'true';
  throw badRequest(`${name}: expected true or false, got "${v}"`);
}

/**
 * The cursor of a `GET /sessions/{id}` page: the store's cursor of the session's exchanges, oldest first, with how
 * many of them come before the page it opens (`offset`), counted as the reader paged. The offset rides in the cursor
 * because counting it again on every page went over every exchange before the page: O(n) a page for a long session.
 */
export function sessionPageCursor(storeCursor: string, offset: number): string {
  return Buffer.from(`${offset}:${storeCursor}`).toString('base64url');
}

/**
 * What a {@link sessionPageCursor} holds.
 *
 * @throws VigilError 400 for anything else (the store checks the cursor inside it in turn).
 */
export function readSessionPageCursor(cursor: string): { cursor: string; offset: number } {
  const text = Buffer.from(cursor, 'base64url').toString();
  const i = text.indexOf(':');
  const offset = Number(text.slice(0, i));
  const inner = text.slice(i + 1);
  if (i <= 0 || !Number.isSafeInteger(offset) || offset < 0 || sessionPageCursor(inner, offset) !== cursor) {
    throw badRequest('cursor: not a cursor from this list (pass next_cursor as it was given)');
  }
  return { cursor: inner, offset };
}

/** The filter as a query string, for the access log of an export. */
export function describeFilter(filter: ExchangeFilter): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(filter)) if (v !== undefined) params.set(k, String(v));
  return params.toString();
}
