/**
 * Query-string parameters of the admin API (and the CLI's filter options) turned into store filters, refusing what
 * does not parse with a message naming the parameter.
 */
import type { ExchangeFilter, Outcome, PageRequest } from '../store/audit-store.js';
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
  const since = str('since');
  const until = str('until');
  return {
    caller: str('caller'),
    group: str('group'),
    connection: str('connection'),
    model: str('model'),
    outcome: outcome as ExchangeFilter['outcome'],
    masking: str('masking'),
    since: since === undefined ? undefined : parseInstant('since', since),
    until: until === undefined ? undefined : parseInstant('until', until),
  };
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

/** The filter as a query string, for the access log of an export. */
export function describeFilter(filter: ExchangeFilter): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(filter)) if (v !== undefined) params.set(k, String(v));
  return params.toString();
}
