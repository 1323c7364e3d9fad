/**
 * How long one `append` of a request takes on the PostgreSQL store: the time every proxied call waits before it is
 * forwarded (the request record is durable first).
 *
 *   npm run build && node bench/postgres-append.mjs [--dist DIR] [--appends N] [--concurrency 1,16] [--refs N] [--url URL]
 *
 * --dist DIR        the compiled store to measure (default: this checkout's dist/); point it at another build's dist/
 *                   to compare two versions on the same database, run alternately
 * --appends N       appends per concurrency level (default 2000), after 200 of warm-up
 * --concurrency L   comma-separated numbers of appends in flight at once (default 1,16)
 * --refs N          blob references per request (default 3); a long Claude Code session's request has hundreds
 * --url URL         PostgreSQL (default VIGIL_TEST_POSTGRES_URL, or postgres://postgres@127.0.0.1:5432/test)
 *
 * Each append is what the recorder writes for a request: one `exchange.request` record shaped like the recorder's
 * (an OIDC caller with groups, a stored body of inline parts and --refs blob references) and one new ~1 KB blob; the
 * other referred blobs were written before, as a conversation's earlier messages are. Requests go to 50 sessions in
 * turn, each resending what the one before it in its session did (ref-bases.ts). Runs in a fresh schema, dropped at the
 * end. Prints mean, p50, p99 and appends/s per concurrency level, and one JSON line.
 */
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { percentile } from './stats.mjs';

const { values: args } = parseArgs({
  options: {
    dist: { type: 'string', default: path.join(import.meta.dirname, '..', 'dist') },
    appends: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '1,16' },
    refs: { type: 'string', default: '3' },
    url: { type: 'string', default: process.env.VIGIL_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test' },
  },
});

const { PostgresAuditStore } = await import(
  pathToFileURL(path.join(path.resolve(args.dist), 'store', 'postgres', 'postgres-audit-store.js')).href
);
const APPENDS = Number(args.appends);
const WARMUP = 200;
const LEVELS = args.concurrency.split(',').map(Number);

const sha256 = (data) => createHash('sha256').update(data).digest('hex');
const blob = (data) => ({ hash: sha256(data), data });

const REFS = Number(args.refs);
/** The earlier messages of the conversation, stored once. */
const earlier = [
  blob(Buffer.from(JSON.stringify({ role: 'user', content: 'x'.repeat(900) }))),
  blob(randomBytes(700)),
  ...Array.from({ length: Math.max(0, REFS - 3) }, (_, i) =>
    blob(Buffer.from(JSON.stringify({ role: i % 2 ? 'assistant' : 'user', content: `${i} ${'z'.repeat(1000)}` }))),
  ),
].slice(0, Math.max(0, REFS - 1));

let n = 0;
/** One request as the recorder writes it: its record, and the one message no earlier request carried. */
function requestBatch() {
  const i = n++;
  const fresh = blob(Buffer.from(JSON.stringify({ role: 'user', content: `question ${i} ${'y'.repeat(1000)}` })));
  const at = Date.now();
  const head = '{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"system":"You are helpful.","messages":[';
  return {
    blobs: [fresh],
    records: [
      {
        kind: 'exchange.request',
        exchangeId: `ex_${randomBytes(8).toString('hex')}`,
        sessionId: `ses_${i % 50}`,
        at,
        data: {
          connection: 'anthropic',
          caller: {
            method: 'oidc',
            subject: 'alice',
            issuer: 'https://idp.example',
            email: 'alice@example.com',
            groups: ['eng', 'ml'],
          },
          client: { address: '127.0.0.1', userAgent: 'claude-cli/2.0.0 (external, cli)' },
          session: { id: `ses_${i % 50}`, source: 'header' },
          request: {
            method: 'POST',
            path: '/v1/messages',
            query: '',
            headers: {
              'content-type': 'application/json',
              'anthropic-version': '2023-06-01',
              'anthropic-beta': 'interleaved-thinking-2025-05-14',
              'user-agent': 'claude-cli/2.0.0 (external, cli)',
              'x-api-key': '[masked]',
            },
            body: {
              size: 3200 + 1000 * Math.max(0, earlier.length - 2),
              parts: [head, ...[...earlier, fresh].flatMap((b, j) => [...(j ? [','] : []), { $blob: b.hash }]), ']}'],
            },
          },
          model: 'claude-sonnet-4-5',
          stream: true,
          startedAt: at,
        },
      },
    ],
  };
}

/** `count` appends, `concurrency` in flight at a time; the latency of each. */
async function run(store, count, concurrency) {
  const latencies = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      const batch = requestBatch();
      const t0 = process.hrtime.bigint();
      await store.append(batch);
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  };
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { latencies, seconds };
}

const schema = `vigil_bench_${randomBytes(6).toString('hex')}`;
const store = await PostgresAuditStore.open({ url: args.url, schema });
const results = [];
try {
  await store.append({ blobs: earlier, records: [{ kind: 'note', at: Date.now(), data: { bench: true } }] });
  for (const concurrency of LEVELS) {
    await run(store, WARMUP, concurrency);
    const { latencies, seconds } = await run(store, APPENDS, concurrency);
    latencies.sort((a, b) => a - b);
    const mean = latencies.reduce((s, x) => s + x, 0) / latencies.length;
    const r = {
      concurrency,
      mean: +mean.toFixed(3),
      p50: +percentile(latencies, 50).toFixed(3),
      p99: +percentile(latencies, 99).toFixed(3),
      perSecond: Math.round(APPENDS / seconds),
    };
    results.push(r);
    console.log(
      `concurrency ${String(concurrency).padStart(2)}: mean ${r.mean.toFixed(3)} ms  p50 ${r.p50.toFixed(3)} ms  ` +
        `p99 ${r.p99.toFixed(3)} ms  ${r.perSecond} appends/s`,
    );
  }
  const report = await store.verify();
  if (!report.ok) throw new Error(`verify failed: ${JSON.stringify(report.problems.slice(0, 3))}`);
} finally {
  await store.close();
  const admin = new pg.Client({ connectionString: args.url });
  await admin.connect();
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.end();
}
console.log(JSON.stringify({ dist: path.resolve(args.dist), appends: APPENDS, refs: REFS, results }));
