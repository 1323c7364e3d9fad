/**
 * A usage report (`AuditStore.usage`), in SQL both SQLite and PostgreSQL accept: one statement of aggregates over the
 * exchange index, grouped by caller, connection, model, day or group. Each matching exchange's index row is read
 * once; no body is. By group, an exchange counts in each of its caller's groups (so the rows may add up to more than
 * the exchanges), and in a row of its own (key null) when the caller had none.
 */
import type { UsageBy, UsageReport, UsageRequest, UsageRow } from './audit-store.js';
import { REFUSAL } from '../recorder/exchange-turn.js';
import { MODEL, type AggregateDialect } from './session-totals.js';
import { costColumns, costOfRow, type CostSqlColumns, type Pricing } from './pricing.js';

/** The most rows a report gives, and how many when not asked. */
export const USAGE_MAX_ROWS = 1000;
export const USAGE_DEFAULT_ROWS = 100;

/** The rows of a report, as the statement selects them (PostgreSQL hands bigints out as strings). */
export interface UsageSqlRow extends CostSqlColumns {
  key: string | null;
  email: string | null;
  exchanges: number | string;
  input_tokens: number | string;
  output_tokens: number | string;
  failed: number | string;
  refused: number | string;
  in_progress: number | string;
}

/** How many rows a request asks for, within bounds. */
export function usageRows(request: UsageRequest): number {
  const limit = request.limit ?? USAGE_DEFAULT_ROWS;
  return Math.min(Math.max(Math.trunc(limit), 1), USAGE_MAX_ROWS);
}

/**
 * The statement: at most `rows + 1` groups (the extra one says the report was cut), the largest by tokens first — or,
 * by day, the days in order.
 */
export function usageStatement(
  d: AggregateDialect,
  request: UsageRequest,
  rows: number,
  pricing: Pricing | undefined,
): string {
  const { by } = request;
  const key = {
    caller: 'e.caller_subject',
    connection: 'e.connection',
    model: MODEL,
    day: d.dayOf('e.started_at'),
    group: 'eg.group_name',
  }[by];
  const where = d.where();
  // By caller, the e-mail the identity token gave (the greatest, should it have changed): subjects are often opaque.
  const email = by === 'caller' ? 'max(c.email)' : 'NULL';
  const callers =
    by === 'caller'
      ? 'LEFT JOIN exchange_callers c ON c.exchange_id = e.id'
      : by === 'group'
        ? 'LEFT JOIN exchange_groups eg ON eg.exchange_id = e.id'
        : '';
  const tokens = 'coalesce(sum(r.input_tokens), 0) + coalesce(sum(r.output_tokens), 0)';
  // Ties in name order, bytewise on both stores (the key is selected with that collation); a null key (no group, no
  // model) last on both (SQLite would put it first, PostgreSQL last).
  const order = by === 'day' ? '1' : `${tokens} DESC, 1 NULLS LAST`;
  return `SELECT ${key}${d.bytewise} AS key, ${email} AS email, count(*)${d.int} AS exchanges,
            coalesce(sum(r.input_tokens), 0)${d.int} AS input_tokens,
            coalesce(sum(r.output_tokens), 0)${d.int} AS output_tokens,
            ${costColumns(pricing, MODEL, d.int)},
            sum(CASE WHEN r.outcome <> 'ok' THEN 1 ELSE 0 END)${d.int} AS failed,
            sum(CASE WHEN r.stop_reason = '${REFUSAL}' THEN 1 ELSE 0 END)${d.int} AS refused,
            sum(CASE WHEN r.exchange_id IS NULL THEN 1 ELSE 0 END)${d.int} AS in_progress
     FROM exchanges e${timeOnly(request) ? d.byTime : ''} LEFT JOIN exchange_results r ON r.exchange_id = e.id
     ${callers} ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
     GROUP BY 1 ORDER BY ${order} LIMIT ${d.param(rows + 1)}`;
}

/**
 * Whether the request narrows the exchanges by time alone (or not at all): they are then read in time order (see
 * `AggregateDialect.byTime`). Any other filter has an index of its own, or one of its own table, for the planner.
 */
function timeOnly(request: UsageRequest): boolean {
  return Object.entries(request).every(([k, v]) => v === undefined || ['by', 'limit', 'since', 'until'].includes(k));
}

/** The report from the statement's rows. */
export function toUsageReport(
  by: UsageBy,
  rows: number,
  found: readonly UsageSqlRow[],
  pricing: Pricing | undefined,
): UsageReport {
  const items = found.slice(0, rows).map((r): UsageRow => ({
    key: r.key,
    email: r.email,
    exchanges: Number(r.exchanges),
    inputTokens: Number(r.input_tokens),
    outputTokens: Number(r.output_tokens),
    ...costOfRow(r, pricing),
    failed: Number(r.failed),
    refused: Number(r.refused),
    inProgress: Number(r.in_progress),
  }));
  return { by, items, truncated: found.length > rows, currency: pricing?.currency ?? null };
}
