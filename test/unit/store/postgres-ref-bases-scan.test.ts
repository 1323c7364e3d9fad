/**
 * How much of the ledger the PostgreSQL store reads to append a request that continues a conversation, on the real
 * database, counted by its own statistics (pg_stat_user_tables).
 *
 * Went wrong, both while PostgreSQL took `records` for small (a store in its first minutes, before autovacuum analysed
 * it, or of some ten thousand records), each time hashing the whole ledger to find a few rows:
 * - a gateway's first append, and every check of the SIEM outbox (twice a second), joined the chains' heads to
 *   `records` (CHAIN_HEADS);
 * - every request continuing a conversation joined its base (the previous request of its conversation, ref-bases.ts)
 *   to `records`, to check it is still stored: the append statement is prepared, and its plan, made while the table
 *   was tiny, was kept as it grew (~1 ms at 3,700 records, on the client's time to first byte);
 * - a request referring to blobs it does not write (a conversation's first request, whose system prompt and tools
 *   earlier sessions stored) checked them against `blobs` with a hash anti join, reading the whole table.
 */
import { createHash } from 'node:crypto';
import { beforeEach, expect, it } from 'vitest';
import { smallExchange } from '../../../bench/small-exchange.mjs';
import type { AuditStore, BlobWrite, NewRecord } from '../../../src/store/audit-store.js';
import { newRecordBlobRefs } from '../../../src/store/blob-refs.js';
import { linkRecord } from '../../../src/store/ledger.js';
import { appendStatements } from '../../../src/store/postgres/postgres-append.js';
import { postgresTableStats, useStoreFixture } from '../../support/stores.js';
import { until } from '../../support/until.js';

const T0 = Date.UTC(2025, 0, 15, 9, 0, 0);
const FILL = 3000; // exchanges, three records each

const fixture = useStoreFixture('postgres');
let store: AuditStore;

beforeEach(async () => {
  store = await fixture().open();
});

/** Reads of `records` and rows inserted into it, as the server's statistics have them. */
const recordsStats = () => postgresTableStats(fixture(), 'records');

/** Statistics once every closed connection has reported its part (a connection reports when it ends). */
const reported = (inserted: number) =>
  until(`the inserts of ${inserted} records reported`, async () => {
    const s = await recordsStats();
    return s.inserted >= inserted ? s : undefined;
  });

function blob(text: string): BlobWrite {
  const data = Buffer.from(text);
  return { hash: createHash('sha256').update(data).digest('hex'), data };
}

/** Turn `t` of one conversation: its request refers to a message blob for each turn so far. */
function turn(t: number, messages: readonly BlobWrite[]): { records: NewRecord[]; blobs: BlobWrite[] } {
  const [request, ...rest] = smallExchange(FILL + t, T0) as NewRecord[];
  const data = request!.data as { request: Record<string, unknown> };
  const parts = ['[', ...messages.slice(0, t + 1).map((b) => ({ $blob: b.hash })), ']'];
  const records = [request!, ...rest].map((r) => ({ ...r, sessionId: 'ses_conversation' }));
  records[0] = {
    ...records[0]!,
    data: { ...data, request: { ...data.request, body: { size: 2, parts } } },
  };
  return { records, blobs: messages.slice(0, t + 1) };
}

it('opens on a ledger not yet analysed and appends a conversation to it reading a few records, not the ledger', async () => {
  for (let i = 0; i < FILL; i += 500) {
    await store.append({ records: Array.from({ length: 500 }, (_, k) => smallExchange(i + k, T0)).flat() });
  }
  // Not analysed: a store in its first minute, before autovacuum has looked at it.
  await store.close();
  const before = await reported(FILL * 3);

  const writer = await fixture().open();
  const messages = Array.from({ length: 4 }, (_, i) => blob(`[{"role":"user","content":"turn ${i}"}]`));
  for (let t = 0; t < messages.length; t++) await writer.append(turn(t, messages));
  // Each request after the first had a base: only the references it adds were indexed.
  const [refs] = await fixture().sql('SELECT count(*) AS n FROM blob_refs');
  expect(Number(refs!.n)).toBe(messages.length);
  const [bases] = await fixture().sql('SELECT count(*) AS n FROM blob_ref_bases');
  expect(Number(bases!.n)).toBe(messages.length - 1);
  await writer.close();

  const after = await reported(FILL * 3 + messages.length * 3);
  expect(after.read - before.read).toBeLessThan(200);
}, 60_000);

/** The plan PostgreSQL makes for `statement` as a prepared statement, under `mode` (plan_cache_mode). */
async function planOf(statement: { text: string; values?: unknown[] }, mode: string): Promise<string> {
  await fixture().sql(`SET plan_cache_mode = ${mode}`);
  await fixture().sql(`PREPARE planned AS ${statement.text}`);
  try {
    const plan = await fixture().sql(
      `EXPLAIN (COSTS OFF) EXECUTE planned(${(statement.values ?? []).map(literal).join(', ')})`,
    );
    return plan.map((r) => String(r['QUERY PLAN'])).join('\n');
  } finally {
    await fixture().sql('DEALLOCATE planned');
    await fixture().sql('RESET plan_cache_mode');
  }
}

/** A SQL literal of a parameter value, for EXECUTE. */
function literal(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (Buffer.isBuffer(v)) return `'\\x${v.toString('hex')}'::bytea`;
  if (Array.isArray(v)) return v.length ? `ARRAY[${v.map(literal).join(', ')}]` : `'{}'`;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return `'${String(v).replaceAll("'", "''")}'`;
}

it('looks a request’s base up by its key, in a plan kept for the statement from when the ledger was small', async () => {
  const messages = Array.from({ length: 2 }, (_, i) => blob(`[{"role":"user","content":"turn ${i}"}]`));
  await store.append(turn(0, messages));
  const [base] = await fixture().sql(`SELECT seq, chain, chain_seq, hash FROM records WHERE kind = 'exchange.request'`);
  // The next turn's request, linked after it, as the store would send it with its base.
  const next = turn(1, messages).records[0]!;
  const linked = linkRecord(
    String(base!.chain),
    { chainSeq: Number(base!.chain_seq) + 3, hash: 'f'.repeat(64) },
    {
      ...next,
      exchangeId: next.exchangeId ?? null,
      sessionId: next.sessionId ?? null,
      data: JSON.stringify(next.data),
    },
  );
  const refs = newRecordBlobRefs(next);
  const [statement, ...more] = appendStatements(
    String(base!.chain),
    [
      {
        linked,
        source: next,
        refs,
        base: { seq: Number(base!.seq), hash: String(base!.hash), refs: new Set(refs.slice(0, 1)) },
      },
    ],
    [],
    [],
    { channel: 'vigil', kinds: [] },
  );
  expect(more).toEqual([]);
  expect(statement!.text).toMatch(/^WITH bases AS/);

  // The plan PostgreSQL keeps for a prepared statement once it has run a few times: one for any values.
  const text = await planOf(statement!, 'force_generic_plan');
  expect(text).toMatch(/Index Scan using records_pkey on records/);
  expect(text).not.toMatch(/Seq Scan on records/);
});

it('looks up by key each blob a request refers to without writing it, however many', async () => {
  // Went wrong like the base: a conversation's first request names every piece of a ~40 KB body (its system prompt
  // and tools already stored by earlier sessions), and their check against blobs was planned as a hash anti join over
  // the whole table.
  const pieces = Array.from({ length: 100 }, (_, i) => blob(`[{"role":"user","content":"piece ${i}"}]`));
  await store.append({ records: [], blobs: pieces });
  const request = { ...turn(pieces.length - 1, pieces).records[0]!, sessionId: 'ses_new' };
  const linked = linkRecord('ch_test', null, {
    ...request,
    exchangeId: request.exchangeId ?? null,
    sessionId: request.sessionId ?? null,
    data: JSON.stringify(request.data),
  });
  const refs = newRecordBlobRefs(request);
  expect(refs).toHaveLength(pieces.length);
  const [statement] = appendStatements('ch_test', [{ linked, source: request, refs }], [], [], {
    channel: 'vigil',
    kinds: [],
  });
  expect(statement!.text).toMatch(/missing AS/);

  for (const mode of ['force_custom_plan', 'force_generic_plan']) {
    const text = await planOf(statement!, mode);
    expect(text, mode).toMatch(/Index Only Scan using blobs_pkey on blobs/);
    expect(text, mode).not.toMatch(/Seq Scan on blobs/);
  }
});
