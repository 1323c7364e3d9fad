/**
 * How much of the full-text index the PostgreSQL store reads for a page of search results, on the real database,
 * counted by its own statistics (pg_stat_user_tables).
 *
 * Went wrong: the search's words came from a CTE, where the planner could not see them; it guessed a search matched
 * 0.5% of the exchanges, and for a word nearly all of them hold it read and sorted every match (0.3 s over 200,000
 * exchanges). Seeing the words, it walks the exchanges newest first until the page is full.
 */
import { expect, it } from 'vitest';
import { smallExchange } from '../../../bench/small-exchange.mjs';
import { postgresTableStats, useStoreFixture } from '../../support/stores.js';
import { until } from '../../support/until.js';

const T0 = Date.UTC(2025, 0, 15, 9, 0, 0);
const EXCHANGES = 4000;

const fixture = useStoreFixture('postgres');

it('reads about a page of matches for a word every exchange holds, and finds a rare word through the index', async () => {
  const store = await fixture().open();
  for (let i = 0; i < EXCHANGES; i += 1000) {
    const ids = Array.from({ length: 1000 }, (_, k) => i + k);
    await store.append({
      records: ids.flatMap((n) => smallExchange(n, T0)),
      searchText: ids.map((n) => ({
        exchangeId: `ex_${n}`,
        text: `the build of module ${n} failed${n % 1000 === 17 ? ' with a marmalade error' : ''}`,
      })),
    });
  }
  await fixture().sql('ANALYZE'); // as autovacuum would have by now
  await store.close();
  const readText = async (): Promise<number> => (await postgresTableStats(fixture(), 'exchange_text')).read;

  const reader = await fixture().open();
  const before = await readText();
  const common = await reader.search('the', { limit: 50 });
  expect(common.items.map((h) => h.exchangeId).slice(0, 3)).toEqual(['ex_3999', 'ex_3998', 'ex_3997']);
  expect(common.items).toHaveLength(50);
  expect(common.items[0]!.snippet).toContain('«the»');
  const rare = await reader.search('marmalade', { limit: 50 });
  expect(rare.items.map((h) => h.exchangeId)).toEqual(['ex_3017', 'ex_2017', 'ex_1017', 'ex_17']);
  // A connection reports what it read when it ends (or every second or so while it lives).
  await reader.close();
  const read =
    (await until('the reads reported', async () => ((await readText()) > before ? readText() : undefined))) - before;
  // The common word's page (~50 rows, a few more for the walk) and the rare word's 4 matches: not the 4,000 matches
  // of the common word.
  expect(read).toBeLessThan(EXCHANGES / 4);
}, 60_000);
