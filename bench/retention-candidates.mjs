/**
 * How long the PostgreSQL store takes to find one batch of exchanges due for retention (`retentionCandidates`), and
 * the plans of its statements.
 *
 *   npm run build && node bench/retention-candidates.mjs [--dist DIR] [--exchanges N] [--limit N] [--url URL] [--plans]
 *
 * --dist DIR        the compiled store to measure (default: this checkout's dist/); point it at another build's dist/
 *                   to compare two versions on the same database
 * --exchanges N     exchanges in the store (default 20000), a minute apart, a third on a second connection
 * --limit N         the batch asked for (default 200)
 * --url URL         PostgreSQL (default VIGIL_TEST_POSTGRES_URL, or postgres://postgres@127.0.0.1:5432/test)
 * --plans           print each statement's EXPLAIN (ANALYZE, BUFFERS), not only its execution time
 *
 * Appends the exchanges (request, events, response) through the store in a fresh schema (a few seconds for 20k),
 * analyses it as autovacuum would, then times three calls in each case: every exchange due, or half, or none; with a
 * SIEM sink that has received everything (its cursor at the chain's head), one that has received nothing, and none.
 * The schema is dropped at the end.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { smallExchange } from './small-exchange.mjs';

const { values: args } = parseArgs({
  options: {
    dist: { type: 'string', default: path.join(import.meta.dirname, '..', 'dist') },
    exchanges: { type: 'string', default: '20000' },
    limit: { type: 'string', default: '200' },
    url: { type: 'string', default: process.env.VIGIL_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test' },
    plans: { type: 'boolean', default: false },
  },
});
const { PostgresAuditStore } = await import(
  pathToFileURL(path.join(path.resolve(args.dist), 'store/postgres/postgres-audit-store.js')).href
);
const N = Number(args.exchanges);
const T0 = Date.parse('2026-01-01T00:00:00Z');
const schema = `vigil_bench_${randomBytes(4).toString('hex')}`;
const store = await PostgresAuditStore.open({ url: args.url, schema, poolSize: 4 });
const admin = new pg.Client({ connectionString: args.url });
await admin.connect();
await admin.query(`SET search_path = "${schema}"`);

try {
  const started = performance.now();
  for (let b = 0; b < N; b += 250) {
    await store.append({
      records: Array.from({ length: Math.min(250, N - b) }, (_, k) =>
        smallExchange(b + k, T0, (b + k) % 3 ? 'anthropic' : 'other'),
      ).flat(),
    });
  }
  await admin.query('ANALYZE');
  console.log(`${N} exchanges appended in ${((performance.now() - started) / 1000).toFixed(1)} s (schema ${schema})`);

  // The statements the store runs on the exchange index, to EXPLAIN them afterwards.
  let statements = [];
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (text, params, ...rest) {
    if (typeof text === 'string' && /exchange_results|WITH ORDINALITY/.test(text)) statements.push({ text, params });
    return query.call(this, text, params, ...rest);
  };
  const end = T0 + N * 60_000;
  const dueAt = { all: end + 1, half: T0 + (N / 2) * 60_000, none: T0 };
  const sinks = {
    'caught up': async () => {
      await admin.query('DELETE FROM sink_cursors');
      await admin.query(
        "INSERT INTO sink_cursors (sink, chain, chain_seq) SELECT 'soc', chain, max(chain_seq) FROM records GROUP BY chain",
      );
      return ['soc'];
    },
    'received nothing': async () => {
      await admin.query('DELETE FROM sink_cursors');
      return ['soc'];
    },
    none: async () => undefined,
  };
  const results = [];
  for (const [sink, setUp] of Object.entries(sinks)) {
    const deliveredTo = await setUp();
    for (const [due, cutoff] of Object.entries(dueAt)) {
      const q = { cutoffs: { anthropic: cutoff, other: cutoff }, limit: Number(args.limit), deliveredTo };
      const ms = [];
      let found = 0;
      for (let k = 0; k < 3; k++) {
        statements = [];
        const t = performance.now();
        found = (await store.retentionCandidates(q)).length;
        ms.push(Math.round(performance.now() - t));
      }
      const plans = [];
      for (const s of statements) {
        const plan = (await query.call(admin, `EXPLAIN (ANALYZE, BUFFERS) ${s.text}`, s.params)).rows;
        plans.push(plan.map((r) => r['QUERY PLAN']).join('\n'));
      }
      const executions = plans.map((p) => /Execution Time: (\S+ ms)/.exec(p)?.[1]).join(' + ');
      console.log(`sink ${sink}, ${due} due: ${found} found, ${ms.join(' / ')} ms; executions ${executions}`);
      if (args.plans) console.log(plans.map((p) => p.replace(/'\{[^}]{200,}\}'/g, "'{…}'")).join('\n\n'));
      results.push({ sink, due, found, ms });
    }
  }
  pg.Client.prototype.query = query;
  console.log(JSON.stringify({ exchanges: N, limit: Number(args.limit), results }));
} finally {
  await store.close();
  await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
  await admin.end();
}
