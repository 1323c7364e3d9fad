/**
 * How much of the exchange index the PostgreSQL store reads to find a batch of exchanges due for retention, on the
 * real database, counted by its own statistics (pg_stat_user_tables).
 *
 * Went wrong: with a SIEM sink configured, the candidate query tested every due exchange (its records against the
 * sink's cursor, the chain heads, the holds) and sorted them all to return the first few: 1–2 s per batch at 20k
 * exchanges, every batch of every retention run, the more the longer retention had not run. (The planner could not
 * tell how many due exchanges the tests let through, and guessed few.)
 */
import { expect, it } from 'vitest';
import { smallExchange } from '../../../bench/small-exchange.mjs';
import { retentionQuery } from '../../../src/store/retention.js';
import { postgresTableStats, useStoreFixture } from '../../support/stores.js';
import { until } from '../../support/until.js';

const DAY = 86_400_000;
const T0 = Date.UTC(2025, 0, 15, 9, 0, 0);
const DUE = 3000;

const fixture = useStoreFixture('postgres');

/** Rows of exchange_results read so far, by sequential and index scans. */
const resultRowsRead = async (): Promise<number> => (await postgresTableStats(fixture(), 'exchange_results')).read;

it('reads a batch’s worth of due exchanges to find a batch, not every due exchange', async () => {
  const store = await fixture().open();
  for (let i = 0; i < DUE; i += 500) {
    await store.append({ records: Array.from({ length: 500 }, (_, k) => smallExchange(i + k, T0)).flat() });
  }
  // The SIEM has every record: all but the chain's head (kept) can go.
  const [head] = await fixture().sql(`SELECT chain, max(chain_seq) AS seq FROM records GROUP BY chain`);
  await store.setSinkCursor('soc', String(head!.chain), Number(head!.seq));
  await fixture().sql('ANALYZE'); // as autovacuum would have by now
  await store.close();
  const before = await resultRowsRead();

  const reader = await fixture().open();
  const policy = { windows: { anthropic: 30 * DAY }, defaultWindow: null, batch: 8, sinks: ['soc'] };
  const batch = await reader.retentionCandidates(retentionQuery(policy, T0 + 400 * DAY)!);
  expect(batch.map((c) => c.id)).toEqual(['ex_0', 'ex_1', 'ex_2', 'ex_3', 'ex_4', 'ex_5', 'ex_6', 'ex_7']);
  // A connection reports what it read when it ends (or every second or so while it lives).
  await reader.close();
  const read =
    (await until('the reads reported', async () =>
      (await resultRowsRead()) > before ? resultRowsRead() : undefined,
    )) - before;
  expect(read).toBeLessThan(200);
}, 60_000);
