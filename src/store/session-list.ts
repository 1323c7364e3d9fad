/**
 * A page of the session list (`AuditStore.listSessions`) in one statement both SQLite and PostgreSQL accept: the
 * sessions with a matching exchange, newest activity first, and for each the callers, models and outcomes of its
 * newest {@link SESSION_RECENT_LIMIT} matching exchanges ({@link RecentExchanges}).
 *
 * The work is bounded by the page, not the store: its sessions are found by walking the exchanges newest first (see
 * `newest`), their totals read through the (session_id, started_at) index, and the time of each one's 100th newest
 * matching exchange found by walking that index back from the newest, so that only exchanges from then on are read.
 * (Ordering the sessions used to group every matching exchange of the store; the admin API used to ask for each
 * row's newest exchanges with one more query per row.)
 */
import {
  SESSION_RECENT_LIMIT,
  type ExchangeCaller,
  type Page,
  type RecentExchanges,
  type SessionListItem,
} from './audit-store.js';
import { pageOf } from './exchange-index.js';
import { FROM, MODEL, type AggregateDialect } from './session-totals.js';
import { toSessionSummary, type SessionRow } from './store-rows.js';

/**
 * The statement: rows of a session (`SessionRow`'s columns) and one of its names (a {@link ListNameRow}'s), ordered
 * as the list, one row per name — or one row with null names for a session with none. Sessions after `cursor` (a
 * session list position: last activity, then id), at most `limit + 1` of them (the extra one says a next page exists).
 */
export function sessionListStatement(
  d: AggregateDialect,
  cursor: { lastAt: number; id: string } | undefined,
  limit: number,
): string {
  const b = d.bytewise;
  // Built in text order: SQLite binds `?` in the order `where` and `param` are called.
  const where = (...also: string[]): string => {
    const all = [...also, ...d.where()];
    return all.length ? `WHERE ${all.join(' AND ')}` : '';
  };
  /** The filter's exchanges of one session, read through the (session_id, started_at) index (see `bySession`). */
  const sessionExchanges = `exchanges e${d.bySession} LEFT JOIN exchange_results r ON r.exchange_id = e.id`;
  const ofSession = `FROM ${sessionExchanges}`;
  // The sessions of the page, found from their newest matching exchanges: walking the exchanges newest first (the
  // started_at index), an exchange counts when its session has no newer matching one, until the page is full. That
  // newest exchange's start is the session's last activity, so the cursor condition applies to it as it stands; and
  // the walk reads the exchanges of the page's time span, not the store's. The walk is a subquery of its own
  // (`d.unflattened`) so that the filter is applied to an exchange before the look for a newer one: merged into one
  // loop, SQLite looked first, for every exchange of the store, and a filter that few exchanges match (a group, or
  // `in_progress`) read each session's exchanges once per exchange — a minute for a million exchanges.
  // (Built before `where` runs, so that its values are bound before the filter's, as its text comes first.)
  const afterCursor = cursor
    ? [
        `(e.started_at < ${d.param(cursor.lastAt)}${d.int} OR (e.started_at = ${d.param(cursor.lastAt)}${d.int}` +
          ` AND e.session_id${b} < ${d.param(cursor.id)}))`,
      ]
    : [];
  const walk = `SELECT e.id AS xid, e.session_id AS sid, e.started_at AS at ${FROM} ${where(...afterCursor)}
      ORDER BY e.started_at DESC, e.session_id${b} DESC${d.unflattened}`;
  const newest = `SELECT w.sid AS id, w.at AS last_at
    FROM (${walk}) w
    WHERE NOT EXISTS (SELECT 1 ${ofSession} ${where(
      'e.session_id = w.sid',
      'e.started_at >= w.at',
      `(e.started_at > w.at OR e.id${b} > w.xid${b})`,
    )})
    ORDER BY w.at DESC, w.sid${b} DESC LIMIT ${d.param(limit + 1)}`;
  // Their rows, from every matching exchange of each (CROSS JOIN: SQLite joins in the order written). Grouped by the
  // page's own column, not exchanges.session_id: PostgreSQL estimates the groups from the grouped column's statistics,
  // and took the page for as many sessions as the store holds (4,999 over a million exchanges), planning the page's
  // recent exchanges below by scanning whole tables.
  const page = `SELECT s.id AS id, min(e.connection${b}) AS connection, min(e.caller_subject${b}) AS caller,
           min(e.started_at) AS first_at, max(e.started_at) AS last_at, count(*)${d.int} AS n,
           coalesce(sum(r.input_tokens), 0)${d.int} AS input_tokens,
           coalesce(sum(r.output_tokens), 0)${d.int} AS output_tokens
    FROM newest s CROSS JOIN ${sessionExchanges} ${where('e.session_id = s.id')}
    GROUP BY s.id`;
  // When the newest SESSION_RECENT_LIMIT matching exchanges began: the start time of the last of them (ties included
  // here; row_number below keeps exactly the limit), or the session's first when it has fewer.
  const since = `coalesce((SELECT e.started_at ${ofSession} ${where('e.session_id = p.id')}
      ORDER BY e.started_at DESC LIMIT 1 OFFSET ${SESSION_RECENT_LIMIT - 1}), p.first_at)`;
  const recent = `SELECT e.session_id, e.caller_method AS method, c.issuer, e.caller_subject AS subject,
           ${MODEL} AS model, coalesce(r.outcome, 'in_progress') AS outcome,
           row_number() OVER (PARTITION BY e.session_id ORDER BY e.started_at DESC, e.id${b} DESC)${d.int} AS rn
    FROM bounds s CROSS JOIN ${sessionExchanges}
    LEFT JOIN exchange_callers c ON c.exchange_id = e.id
    ${where('e.session_id = s.id', 'e.started_at >= s.since')}`;
  /** Distinct values of `columns` among the kept exchanges, in order of first appearance (newest first), counted. */
  const names = (kind: string, columns: { method?: string; issuer?: string; name: string }, also = ''): string => {
    const { method = 'NULL', issuer = 'NULL', name } = columns;
    const grouped = ['session_id', method, issuer, name].filter((c) => c !== 'NULL');
    return `SELECT session_id, '${kind}' AS kind, ${method} AS method, ${issuer} AS issuer, ${name} AS name,
           count(*)${d.int} AS total, min(rn)${d.int} AS pos
      FROM recent WHERE rn <= ${SESSION_RECENT_LIMIT}${also} GROUP BY ${grouped.join(', ')}`;
  };
  return `WITH newest AS MATERIALIZED (${newest}),
  page AS MATERIALIZED (${page}),
  bounds AS MATERIALIZED (SELECT p.id, ${since} AS since FROM page p),
  recent AS MATERIALIZED (${recent}),
  names AS (
    ${names('caller', { method: 'method', issuer: 'issuer', name: 'subject' })}
    UNION ALL ${names('model', { name: 'model' }, ' AND model IS NOT NULL')}
    UNION ALL ${names('outcome', { name: 'outcome' })})
  SELECT p.*, x.kind, x.method, x.issuer, x.name, x.total, x.pos
  FROM page p LEFT JOIN names x ON x.session_id = p.id
  ORDER BY p.last_at DESC, p.id${b} DESC`;
}

/** A name of {@link sessionListStatement}'s rows; all null on the row of a session without names. */
export interface ListNameRow {
  kind: 'caller' | 'model' | 'outcome' | null;
  method: string | null;
  issuer: string | null;
  name: string | null;
  total: number | null;
  pos: number | null;
}

/** The page {@link sessionListStatement}'s rows make, `limit` sessions at most. */
export function toSessionListPage(rows: ReadonlyArray<SessionRow & ListNameRow>, limit: number): Page<SessionListItem> {
  const sessions = new Map<string, { row: SessionRow; names: Array<SessionRow & ListNameRow> }>();
  for (const r of rows) {
    const s = sessions.get(r.id) ?? sessions.set(r.id, { row: r, names: [] }).get(r.id)!;
    if (r.kind !== null) s.names.push(r);
  }
  return pageOf(
    [...sessions.values()],
    limit,
    ({ row, names }): SessionListItem => ({ ...toSessionSummary(row), recent: recentOf(row.n, names) }),
    (i) => [i.lastAt, i.id],
  );
}

function recentOf(exchanges: number, names: ReadonlyArray<ListNameRow>): RecentExchanges {
  const of = (kind: ListNameRow['kind']): ListNameRow[] =>
    names.filter((r) => r.kind === kind).sort((a, b) => a.pos! - b.pos!);
  return {
    exchanges: Math.min(exchanges, SESSION_RECENT_LIMIT),
    callers: of('caller').map((r): ExchangeCaller => ({
      callerSubject: r.name!,
      callerMethod: r.method!,
      callerIssuer: r.issuer,
    })),
    models: of('model').map((r) => r.name!),
    // A Map, not an object: outcomes are data, and an object would have keys of its own (`__proto__`).
    outcomes: Object.fromEntries(new Map(of('outcome').map((r) => [r.name!, r.total!]))),
  };
}
