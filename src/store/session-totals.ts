/**
 * What a session adds up to (`AuditStore.sessionTotals`), in SQL both SQLite and PostgreSQL accept: two statements of
 * aggregates over the exchange index, whose answer has the same few rows however long the session is. The database
 * still goes over the session's index rows each time (about the work of listing their summaries: ~3 ms per thousand
 * exchanges on SQLite), but none is read out into the process or sent.
 */
import { SESSION_TOTALS_NAMES, type ExchangeCaller, type SessionTotals } from './audit-store.js';
import { costColumns, costOfRow, type CostSqlColumns, type Pricing } from './pricing.js';

/**
 * What differs between the two stores' SQL; one per statement (SQLite binds `?` in the order they are placed, so a
 * statement calls `where` and `param` in the order their text appears).
 */
export interface AggregateDialect {
  /** The filter's conditions over `exchanges e LEFT JOIN exchange_results r`, binding their values (once per place). */
  readonly where: () => readonly string[];
  /** A placeholder bound to `value`. */
  readonly param: (value: unknown) => string;
  /** PostgreSQL: ` COLLATE "C"`, so text orders bytewise, as in SQLite. */
  readonly bytewise: string;
  /** PostgreSQL: `::bigint` (a sum of bigints is numeric there, which pg hands out as a string). */
  readonly int: string;
  /**
   * SQLite: ` INDEXED BY exchanges_session`, for reading one session's exchanges. SQLite has no statistics (Vigil does
   * not ANALYZE), and under a caller or connection filter it took that filter's index instead, reading all of the
   * filter's exchanges once per session. PostgreSQL's planner has statistics and no hints: empty.
   */
  readonly bySession: string;
  /**
   * What keeps an ordered subquery a loop of its own, its conditions all applied before the query around it looks at
   * a row: SQLite: ` LIMIT -1` (no limit; a subquery with a LIMIT is not merged into its query); PostgreSQL: empty (a
   * subquery with an ORDER BY is not merged there).
   */
  readonly unflattened: string;
  /**
   * SQLite: ` INDEXED BY exchanges_started`, for reading every exchange of a time span in time order. Without it, a
   * report over the whole store grouped by caller walked the caller index and looked each result up out of order:
   * 1.1 s for 200,000 exchanges where the time order took 0.2 s, and 15 ms where 1.6 ms would do for a recent span.
   * PostgreSQL: empty (its planner has statistics).
   */
  readonly byTime: string;
  /** The UTC day (`2026-12-07`) of a time in epoch milliseconds, as text. */
  readonly dayOf: (ms: string) => string;
}

/** The exchanges a filter's conditions (`AggregateDialect.where`) are written over. */
export const FROM = 'FROM exchanges e LEFT JOIN exchange_results r ON r.exchange_id = e.id';

/** The model an exchange is listed with: the one that answered, else the one asked for; NULL when neither is known. */
export const MODEL = `nullif(coalesce(r.model, e.model), '')`;

/** One row: counts, tokens (with `pricing`, their cost) and times of the matching exchanges. */
export function totalsStatement(d: AggregateDialect, pricing?: Pricing): string {
  return `SELECT count(*)${d.int} AS n, min(e.started_at) AS first_at, max(e.started_at) AS last_at,
            max(r.ended_at) AS ended_at, coalesce(sum(r.input_tokens), 0)${d.int} AS input_tokens,
            coalesce(sum(r.output_tokens), 0)${d.int} AS output_tokens,
            ${costColumns(pricing, MODEL, d.int)},
            min(e.connection${d.bytewise}) AS connection, min(e.caller_subject${d.bytewise}) AS caller
     ${FROM} WHERE ${d.where().join(' AND ')}`;
}

/**
 * Rows of names: the first {@link SESSION_TOTALS_NAMES} distinct callers, connections and models (`total`: how many
 * distinct in all; `pos`: order of first use), and each outcome (`total`: its count).
 */
export function namesStatement(d: AggregateDialect): string {
  const limit = SESSION_TOTALS_NAMES;
  /** Distinct values of `name` (callers: with their method and issuer), in order of first use. */
  const distinct = (
    kind: string,
    name: string,
    { method = 'NULL', issuer = 'NULL', join = '', also = [] as string[] } = {},
  ): string => {
    const grouped = [method, issuer, name].filter((c) => c !== 'NULL');
    const order = grouped.map((c) => `coalesce(${c}, '')${d.bytewise}`).join(', ');
    return `SELECT * FROM (
      SELECT '${kind}' AS kind, ${method} AS method, ${issuer} AS issuer, ${name} AS name,
             count(*) OVER ()${d.int} AS total, row_number() OVER (ORDER BY min(e.started_at), ${order})${d.int} AS pos
      ${FROM} ${join} WHERE ${[...d.where(), ...also].join(' AND ')}
      GROUP BY ${grouped.join(', ')} ORDER BY pos LIMIT ${limit}) ${kind}s`;
  };
  return [
    distinct('caller', 'e.caller_subject', {
      method: 'e.caller_method',
      issuer: 'c.issuer',
      join: 'LEFT JOIN exchange_callers c ON c.exchange_id = e.id',
    }),
    distinct('connection', 'e.connection'),
    distinct('model', MODEL, { also: [`${MODEL} IS NOT NULL`] }),
    `SELECT 'outcome' AS kind, NULL AS method, NULL AS issuer, coalesce(r.outcome, 'in_progress') AS name,
            count(*)${d.int} AS total, 0${d.int} AS pos
     ${FROM} WHERE ${d.where().join(' AND ')} GROUP BY coalesce(r.outcome, 'in_progress')`,
  ].join('\nUNION ALL\n');
}

/** The row of {@link totalsStatement}. */
export interface TotalsRow extends CostSqlColumns {
  n: number;
  first_at: number | null;
  last_at: number | null;
  ended_at: number | null;
  input_tokens: number;
  output_tokens: number;
  connection: string | null;
  caller: string | null;
}

/** A row of {@link namesStatement}. */
export interface NameRow {
  kind: string;
  method: string | null;
  issuer: string | null;
  name: string;
  total: number;
  pos: number;
}

/**
 * The session's totals from both statements' rows. Only for a `row` that counts an exchange: with none the session
 * has no totals, and the store asks no names.
 */
export function toSessionTotals(
  id: string,
  row: TotalsRow,
  names: readonly NameRow[],
  pricing: Pricing | undefined,
): SessionTotals {
  const of = (kind: string): NameRow[] => names.filter((r) => r.kind === kind).sort((a, b) => a.pos - b.pos);
  const count = (kind: string): number => of(kind)[0]?.total ?? 0;
  // A Map, not an object: outcomes are data, and an object would have keys of its own (`__proto__`).
  const outcomes = new Map(of('outcome').map((r) => [r.name, r.total]));
  return {
    id,
    connection: row.connection ?? '',
    callerSubject: row.caller ?? '',
    firstAt: row.first_at!,
    lastAt: row.last_at!,
    endedAt: row.ended_at ?? null,
    exchanges: row.n,
    inputTokens: row.input_tokens,
    outputTokens: row.output_tokens,
    ...costOfRow(row, pricing),
    currency: pricing?.currency ?? null,
    outcomes: Object.fromEntries(outcomes),
    callers: of('caller').map((r): ExchangeCaller => ({
      callerSubject: r.name,
      callerMethod: r.method ?? '',
      callerIssuer: r.issuer,
    })),
    callerCount: count('caller'),
    connections: of('connection').map((r) => r.name),
    connectionCount: count('connection'),
    models: of('model').map((r) => r.name),
    modelCount: count('model'),
  };
}
