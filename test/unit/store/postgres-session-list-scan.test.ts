/**
 * How much of the exchange index the PostgreSQL store reads for a page of the session list, on the real database,
 * counted by its own statistics (pg_stat_user_tables).
 *
 * Went wrong: grouping the page's exchanges by exchanges.session_id, PostgreSQL took the page for as many sessions as
 * the store holds, and with random reads priced as on a spinning disk (random_page_cost 4) it scanned whole tables —
 * the exchanges twice, their results and callers once — for 50 sessions: 1.1 s a page over a million exchanges.
 */
import { expect, it } from 'vitest';
import { smallExchange } from '../../../bench/small-exchange.mjs';
import { postgresTableStats, useStoreFixture } from '../../support/stores.js';
import { until } from '../../support/until.js';

const T0 = Date.UTC(2025, 0, 15, 9, 0, 0);
/** Exchanges in the store: 1,000 sessions of 20 (small-exchange.mjs). */
const EXCHANGES = 20_000;

const fixture = useStoreFixture('postgres');

/** Rows of `table` read so far, by sequential and index scans. */
const rowsRead = async (table: string): Promise<number> => (await postgresTableStats(fixture(), table)).read;

it('reads the page’s sessions’ exchanges for a page of sessions, not the whole store', async () => {
  const store = await fixture().open();
  for (let i = 0; i < EXCHANGES; i += 1000) {
    await store.append({ records: Array.from({ length: 1000 }, (_, k) => smallExchange(i + k, T0)).flat() });
  }
  await fixture().sql('ANALYZE'); // as autovacuum would have by now
  await store.close();
  const tables = ['exchanges', 'exchange_results', 'exchange_callers'];
  const readNow = async (): Promise<number[]> => {
    const out: number[] = [];
    for (const table of tables) out.push(await rowsRead(table)); // one client: one query at a time
    return out;
  };
  const before = await readNow();

  const reader = await fixture().open();
  const page = await reader.listSessions({ limit: 50 });
  expect(page.items.map((s) => s.id).slice(0, 3)).toEqual(['s-999', 's-998', 's-997']);
  expect(page.items.every((s) => s.exchanges === 20)).toBe(true);
  // A connection reports what it read when it ends (or every second or so while it lives).
  await reader.close();
  const read = await until('the reads reported', async () => {
    const now = await readNow();
    return now[0]! > before[0]! ? now.map((n, k) => n - before[k]!) : undefined;
  });
  // 51 sessions of 20 exchanges, read a few times over (the walk, the page, its recent exchanges): ~6,000, 2,000 and
  // 1,000 rows here, where whole-table scans read 44,000, 21,000 and 20,000.
  for (const [k, table] of tables.entries()) expect(read[k], table).toBeLessThan(EXCHANGES / 2);
}, 60_000);
