/**
 * How long the admin API's session reads take over a store of ~10,000 exchanges, on SQLite and PostgreSQL: a page of
 * `GET /sessions` (50 sessions with their `recent` summaries), unfiltered, by caller, and by filters few exchanges
 * match (a group, in progress) with the same filters' page of `GET /exchanges`; `GET /search` for a common word and a
 * rare one; an export of one caller's hour; and pages of one long session
 * (`GET /sessions/{id}`: the first page, and pages deep into it, as "Load more" reads them).
 *
 *   npm run build && node bench/session-reads.mjs [--dist DIR] [--stores sqlite,postgres] [--exchanges N] [--runs N]
 *
 * --dist DIR        the compiled gateway to measure (default: this checkout's dist/); point it at another build's
 *                   dist/ to compare two versions on the same data
 * --stores LIST     sqlite, postgres or both (default both)
 * --exchanges N     exchanges in short sessions (default 10000), the store the session list pages through
 * --sessions N      how many short sessions they make, round-robin (default 400)
 * --long N          exchanges in one long session besides (default 10000), the session read page by page; 0: none,
 *                   and only the session list is measured
 * --runs N          timed requests per measurement (default 20), after 3 of warm-up; the median is reported
 * --url URL         PostgreSQL (default VIGIL_TEST_POSTGRES_URL, or postgres://postgres@127.0.0.1:5432/test)
 *
 * Requests go through a real admin listener on 127.0.0.1 (no identity: a loopback admin). The exchanges are written
 * straight to the store, shaped like the recorder's (5 callers, 3 models, some errors and some unanswered). Prints
 * one line per measurement and one JSON line at the end.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';

const { values: args } = parseArgs({
  options: {
    dist: { type: 'string', default: path.join(import.meta.dirname, '..', 'dist') },
    stores: { type: 'string', default: 'sqlite,postgres' },
    exchanges: { type: 'string', default: '10000' },
    sessions: { type: 'string', default: '400' },
    long: { type: 'string', default: '10000' },
    runs: { type: 'string', default: '20' },
    url: { type: 'string', default: process.env.VIGIL_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test' },
  },
});

const dist = path.resolve(args.dist);
const load = (file) => import(pathToFileURL(path.join(dist, file)).href);
const { SqliteAuditStore } = await load('store/sqlite/sqlite-audit-store.js');
const { PostgresAuditStore } = await load('store/postgres/postgres-audit-store.js');
const { startAdminServer } = await load('admin/admin-server.js');
const { validateConfig } = await load('config/load-config.js');
// As the gateway gives its admin API the store (SQLite's reads on a thread of their own); builds before that, as is.
const { adminReads = (store) => ({ store, close: async () => undefined }) } = await load('store/open-store.js');

const SHORT = Number(args.exchanges);
const LONG = Number(args.long);
const RUNS = Number(args.runs);
const WARMUP = 3;
const SHORT_SESSIONS = Number(args.sessions);
const LONG_SESSION = 'ses_long';
const T0 = Date.UTC(2025, 0, 15, 9, 0, 0);
const CALLERS = ['alice', 'bob', 'carol', 'dave', 'erin'];
const MODELS = ['claude-sonnet-4-5', 'claude-haiku-4-5', 'claude-opus-4-1'];
/** One exchange in RARE is in RARE_GROUP (the rest in `engineering`): a filter that matches few of a big store. */
const RARE = 1000;
const RARE_GROUP = 'auditors';

/** Exchange `i` of session `session`, as the recorder writes it: request and (mostly) response. */
function exchangeRecords(i, session) {
  const at = T0 + i * 1000;
  const id = `ex_${String(i).padStart(6, '0')}`;
  const model = MODELS[i % MODELS.length];
  const caller = CALLERS[Math.floor(i / 7) % CALLERS.length];
  const request = {
    kind: 'exchange.request',
    exchangeId: id,
    sessionId: session,
    at,
    data: {
      connection: 'anthropic',
      caller: {
        method: 'oidc',
        subject: caller,
        issuer: 'https://idp.example',
        email: `${caller}@example.com`,
        groups: [i % RARE === 0 ? RARE_GROUP : 'engineering'],
      },
      client: { address: '127.0.0.1', userAgent: 'claude-cli/2.0.0 (external, cli)' },
      session: { id: session, source: 'header' },
      request: {
        method: 'POST',
        path: '/v1/messages',
        query: '',
        headers: { 'content-type': 'application/json' },
        body: { size: 60, parts: [`{"model":"${model}","max_tokens":1024,"messages":[]}`] },
      },
      model,
      stream: false,
      startedAt: at,
    },
  };
  if (i % 97 === 0) return [request];
  const outcome = i % 31 === 0 ? 'upstream_error' : 'ok';
  const response = {
    kind: 'exchange.response',
    exchangeId: id,
    sessionId: session,
    at: at + 200,
    data: {
      status: outcome === 'ok' ? 200 : 529,
      headers: {},
      body: null,
      message: outcome === 'ok' ? { role: 'assistant', content: [{ type: 'text', text: 'ok' }] } : null,
      usage: { input_tokens: 100, output_tokens: 20 },
      model: `${model}-20250929`,
      stopReason: 'end_turn',
      outcome,
      error: null,
      eventCount: 0,
      timing: { startedAt: at, firstByteMs: 100, endedAt: at + 200, durationMs: 200 },
    },
  };
  return [request, response];
}

/**
 * Exchange `i`'s search text: 200 words, a few common ones (`the` in nearly every exchange, as in prose and code) and
 * the rest drawn from 5,000 rarer ones.
 */
function searchText(i) {
  const words = [];
  for (let k = 0; k < 200; k++) {
    const r = (i * 7919 + k * 104729) % 9973;
    words.push(r % 10 === 0 ? 'the' : r % 17 === 0 ? 'error' : `w${r % 5000}`);
  }
  return words.join(' ');
}

/** The short sessions' exchanges round-robin, interleaved in time with the long session's. */
async function fill(store) {
  let batch = [];
  let texts = [];
  let short = 0;
  let long = 0;
  for (let i = 0; i < SHORT + LONG; i++) {
    // Alternately, while both have exchanges left.
    const inLong = long < LONG && (short >= SHORT || i % 2 === 1);
    const session = inLong ? LONG_SESSION : `ses_${String(short % SHORT_SESSIONS).padStart(6, '0')}`;
    if (inLong) long++;
    else short++;
    batch.push(...exchangeRecords(i, session));
    texts.push({ exchangeId: exchangeRecords(i, session)[0].exchangeId, text: searchText(i) });
    if (batch.length >= 400) {
      await store.append({ records: batch, searchText: texts });
      batch = [];
      texts = [];
    }
  }
  if (batch.length) await store.append({ records: batch, searchText: texts });
}

async function analyze(schema) {
  const client = new pg.Client({ connectionString: args.url });
  await client.connect();
  try {
    await client.query(`SET search_path TO "${schema}"`);
    await client.query('ANALYZE');
  } finally {
    await client.end();
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function timed(url, as = 'json') {
  const started = performance.now();
  const res = await fetch(url);
  const body = as === 'json' ? await res.json() : await res.text();
  if (!res.ok) throw new Error(`${url}: ${res.status} ${JSON.stringify(body)}`);
  return { ms: performance.now() - started, body };
}

/** Median ms over RUNS requests of `url()` (a function: each run may ask for another page). */
async function measure(url, as = 'json') {
  for (let i = 0; i < WARMUP; i++) await timed(url(i), as);
  const times = [];
  for (let i = 0; i < RUNS; i++) times.push((await timed(url(i), as)).ms);
  return median(times);
}

async function run(kind) {
  let store;
  let cleanup;
  if (kind === 'sqlite') {
    const dir = mkdtempSync(path.join(tmpdir(), 'vigil-bench-sessions-'));
    store = SqliteAuditStore.open({ file: path.join(dir, 'vigil.db') });
    cleanup = async () => rmSync(dir, { recursive: true, force: true });
  } else {
    const schema = `vigil_bench_${process.pid}`;
    store = await PostgresAuditStore.open({ url: args.url, schema });
    cleanup = async () => {
      const client = new pg.Client({ connectionString: args.url });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await client.end();
    };
  }
  const dataDir = mkdtempSync(path.join(tmpdir(), 'vigil-bench-admin-'));
  const config = validateConfig({
    listen: '127.0.0.1:0',
    data_dir: dataDir,
    connections: [{ name: 'anthropic', upstream: 'https://api.anthropic.com' }],
    admin: { listen: '127.0.0.1:0' },
  });
  let admin;
  let reads;
  try {
    const filled = performance.now();
    await fill(store);
    console.log(`${kind}: ${SHORT} + ${LONG} exchanges written in ${Math.round(performance.now() - filled)} ms`);
    // The planner's statistics, as autovacuum keeps them on a live store (a fresh table has none for a while).
    if (kind === 'postgres') await analyze(`vigil_bench_${process.pid}`);
    reads = adminReads(store);
    admin = await startAdminServer({ config, store: reads.store, log: pino({ level: 'silent' }) });
    const api = `${admin.url}/api/v1`;
    const results = {};

    results.sessionsPage = await measure(() => `${api}/sessions?limit=50`);
    // The second page of sessions, as "Load more" asks for it.
    const { body: first } = await timed(`${api}/sessions?limit=50`);
    results.sessionsPage2 = await measure(() => `${api}/sessions?limit=50&cursor=${first.next_cursor}`);
    // Filtered: one caller's sessions (a fifth of the exchanges), first page and the next.
    results.sessionsPageByCaller = await measure(() => `${api}/sessions?limit=50&caller=alice`);
    const { body: byCaller } = await timed(`${api}/sessions?limit=50&caller=alice`);
    results.sessionsPageByCaller2 = await measure(
      () => `${api}/sessions?limit=50&caller=alice&cursor=${byCaller.next_cursor}`,
    );

    // Filters that match few exchanges, which no index of the exchanges' own serves: an exchange's group (1 in
    // RARE), and exchanges still in progress (1 in 97). The session list and the exchange list, first pages.
    results.sessionsPageRareGroup = await measure(() => `${api}/sessions?limit=50&group=${RARE_GROUP}`);
    results.sessionsPageInProgress = await measure(() => `${api}/sessions?limit=50&outcome=in_progress`);
    results.exchangesPageRareGroup = await measure(() => `${api}/exchanges?limit=50&group=${RARE_GROUP}`);
    results.exchangesPageInProgress = await measure(() => `${api}/exchanges?limit=50&outcome=in_progress`);
    // Full-text search, first page: a word nearly every exchange holds, and one that 4% do.
    results.searchCommonWord = await measure(() => `${api}/search?q=the&limit=50`);
    results.searchRareWord = await measure(() => `${api}/search?q=w4321&limit=50`);
    // An export of one caller's exchanges over an hour (~720 of them), each read in full.
    const hour = `since=${new Date(T0).toISOString()}&until=${new Date(T0 + 3_600_000).toISOString()}`;
    results.exportCallerHour = await measure(() => `${api}/export?format=jsonl&caller=alice&${hour}`, 'text');

    if (LONG === 0) return report(kind, results);
    // The long session, 20 exchanges a page: its first page, and pages deep into it, each with the cursor of the page
    // before (collected once, untimed).
    const session = `${api}/sessions/${LONG_SESSION}`;
    results.sessionFirstPage = await measure(() => `${session}?limit=20`);
    const cursors = [];
    let cursor = null;
    for (let p = 0; p < 150 && (p === 0 || cursor); p++) {
      const { body } = await timed(`${session}?limit=20${cursor ? `&cursor=${cursor}` : ''}`);
      cursor = body.next_cursor;
      if (p >= 100 && cursor) cursors.push(cursor);
    }
    results.sessionLaterPage = await measure((i) => `${session}?limit=20&cursor=${cursors[i % cursors.length]}`);
    results.sessionLaterPageWithTotals = await measure(
      (i) => `${session}?limit=20&totals=true&cursor=${cursors[i % cursors.length]}`,
    );
    return report(kind, results);
  } finally {
    await admin?.close();
    await reads?.close();
    await store.close();
    await cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function report(kind, results) {
  for (const [name, ms] of Object.entries(results)) console.log(`${kind}: ${name.padEnd(28)} ${ms.toFixed(1)} ms`);
  return results;
}

const out = { dist, exchanges: SHORT, sessions: SHORT_SESSIONS, long: LONG, runs: RUNS };
for (const kind of args.stores.split(',')) out[kind] = await run(kind.trim());
console.log(JSON.stringify(out));
