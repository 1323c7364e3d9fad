/**
 * A page of `GET /sessions`, each session with what a list row shows beyond the store's counts: who called, which
 * models, how the exchanges ended. The store's session list carries one caller and neither models nor outcomes, and
 * a session id is the client's choice, so callers may share one; a client that needs the rest would otherwise ask
 * for every row's exchanges (one more request per row).
 */
import type { AuditStore, ExchangeCaller, ExchangeFilter, Page, SessionSummary } from '../store/audit-store.js';

/** At most this many exchanges, the newest, are read per session for its summary. */
export const RECENT_LIMIT = 100;
/** Sessions summarised at once (PostgreSQL's pool is shared with the proxy). */
const CONCURRENCY = 4;

/** What the session's newest (up to {@link RECENT_LIMIT}) matching exchanges say. */
export interface RecentExchanges {
  /** How many exchanges this covers: fewer than the session's `exchanges` when it has more than the limit. */
  readonly exchanges: number;
  readonly callers: readonly ExchangeCaller[];
  /** Distinct models, in order of first appearance (newest first). */
  readonly models: readonly string[];
  /** Outcome → count; `in_progress` for exchanges without a response yet. */
  readonly outcomes: Readonly<Record<string, number>>;
}

export type SessionListItem = SessionSummary & { readonly recent: RecentExchanges };

async function recentOf(store: AuditStore, filter: ExchangeFilter, id: string): Promise<RecentExchanges> {
  const { items } = await store.listExchangesFiltered({ ...filter, session: id, limit: RECENT_LIMIT });
  const callers = new Map<string, ExchangeCaller>();
  const models = new Set<string>();
  // A Map, not an object: the counts are keyed by data, and an object would have keys of its own (`__proto__`).
  const outcomes = new Map<string, number>();
  for (const x of items) {
    const { callerSubject, callerMethod, callerIssuer } = x;
    const key = JSON.stringify([callerMethod, callerIssuer, callerSubject]);
    if (!callers.has(key)) callers.set(key, { callerSubject, callerMethod, callerIssuer });
    if (x.model !== null) models.add(x.model);
    const outcome = x.outcome ?? 'in_progress';
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  }
  return {
    exchanges: items.length,
    callers: [...callers.values()],
    models: [...models],
    outcomes: Object.fromEntries(outcomes),
  };
}

/**
 * The page with each session's {@link RecentExchanges}, read with `filter` (the list's own filter, already limited
 * to what the caller may see), so a row summarises the exchanges that made the session match.
 */
export async function withRecentExchanges(
  store: AuditStore,
  filter: ExchangeFilter,
  page: Page<SessionSummary>,
): Promise<Page<SessionListItem>> {
  const items: SessionListItem[] = new Array<SessionListItem>(page.items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < page.items.length) {
      const i = next++;
      const session = page.items[i]!;
      items[i] = { ...session, recent: await recentOf(store, filter, session.id) };
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, page.items.length) }, worker));
  return { items, nextCursor: page.nextCursor };
}
