/**
 * The AuditStore contract, run against every implementation (`STORES=sqlite,postgres`, both by default). What is
 * checked is what a user of the ledger observes: what append returns, what the lists show, what the database refuses,
 * and what verify() reports after someone with database access changed history behind the store's back.
 */
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  SESSION_RECENT_LIMIT,
  SESSION_TOTALS_NAMES,
  VERIFY_PAGE,
  type AuditStore,
  type ExchangeCaller,
  type ExchangeFilter,
  type RecentExchanges,
  type SessionFilter,
  type SessionListItem,
  type NewRecord,
  type PurgedRun,
  type RetentionQuery,
  type StoredGatewayKey,
  type StoredRecord,
  type WriteBatch,
} from '../../src/store/audit-store.js';
import { GENESIS_HASH, recordHash } from '../../src/store/ledger.js';
import { PostgresAuditStore } from '../../src/store/postgres/postgres-audit-store.js';
import { appendOnlyGrantsSql, POSTGRES_MIGRATIONS } from '../../src/store/postgres/postgres-migrations.js';
import type { ExchangeEventsData, ExchangeRequestData, ExchangeResponseData } from '../../src/store/record-types.js';
import { createStoreFixture, POSTGRES_TEST_URL, storeKinds, type StoreFixture } from '../support/stores.js';
import { until } from '../support/until.js';
import { Digester, type DigestSignedData } from '../../src/store/digests.js';
import { addHold, releaseHold } from '../../src/store/holds.js';
import { authenticateGatewayKey, gatewayKeyId } from '../../src/identity/gateway-keys.js';
import { createGatewayKey, keyState, revokeGatewayKey, rotateGatewayKey } from '../../src/identity/key-admin.js';
import { purgedRuns } from '../../src/store/purge-runs.js';
import {
  retentionQuery,
  runRetention,
  sealPurge,
  type RetentionPolicy,
  type RetentionPurgedData,
} from '../../src/store/retention.js';
import { SigningKey } from '../../src/store/signing-key.js';
import { pricingFrom, pricingSchema } from '../../src/store/pricing.js';

const DAY = 86_400_000;
const signingKey = (): SigningKey =>
  SigningKey.load(path.join(mkdtempSync(path.join(tmpdir(), 'vigil-key-')), 'key.pem'), { create: true });
/** The gateway's key, and one an attacker made for themselves. */
const KEY = signingKey();
const FORGER = signingKey();

const T0 = Date.UTC(2025, 0, 15, 9, 0, 0);

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

function blob(text: string): { hash: string; data: Buffer } {
  const data = Buffer.from(text);
  return { hash: sha256(data), data };
}

/** What PostgreSQL migration 15 added: a store of an earlier version has none of it. */
const DROP_CACHE_COLUMNS =
  'ALTER TABLE exchange_results DROP COLUMN cache_read_tokens, DROP COLUMN cache_write_tokens, DROP COLUMN cache_write_1h_tokens';

interface ExchangeSpec {
  readonly id: string;
  readonly session: string;
  readonly at: number;
  readonly connection?: string;
  readonly caller?: string;
  /** The caller's e-mail (default alice@example.com). */
  readonly email?: string;
  readonly model?: string;
  readonly stream?: boolean;
  readonly inputTokens?: number;
  readonly outputTokens?: number;
  /** Cache writes (default none), and of them the ones kept an hour. */
  readonly cacheWrite?: number;
  readonly cacheWrite1h?: number;
  /** Cache reads (default 5). */
  readonly cacheRead?: number;
  readonly status?: number;
  readonly issuer?: string;
  readonly groups?: readonly string[];
  readonly outcome?: ExchangeResponseData['outcome'];
  /** Masking counts per detector type, as the recorder's masking summary. */
  readonly masking?: Record<string, number>;
  /** Why the answer stopped (default end_turn). */
  readonly stopReason?: string;
  /** A blob holding the request's messages, referred to from the request body. */
  readonly messages?: { hash: string; data: Buffer };
}

/** An `exchange.request` record shaped like the recorder's. */
function requestRecord(x: ExchangeSpec): NewRecord {
  const bodyHead = '{"model":"' + (x.model ?? 'claude-sonnet-4-5') + '","max_tokens":1024,"messages":';
  const data: ExchangeRequestData = {
    connection: x.connection ?? 'anthropic',
    caller: {
      method: 'oidc',
      subject: x.caller ?? 'alice',
      issuer: x.issuer ?? 'https://idp.example',
      email: x.email ?? 'alice@example.com',
      ...(x.groups ? { groups: x.groups } : {}),
    },
    client: { address: '127.0.0.1', userAgent: 'claude-cli/1.0.0' },
    session: { id: x.session, source: 'header' },
    request: {
      method: 'POST',
      path: '/v1/messages',
      query: '',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: x.messages
        ? { size: bodyHead.length + x.messages.data.length + 1, parts: [bodyHead, { $blob: x.messages.hash }, '}'] }
        : { size: bodyHead.length + 3, parts: [bodyHead + '[]}'] },
    },
    model: x.model ?? 'claude-sonnet-4-5',
    stream: x.stream ?? true,
    startedAt: x.at,
  };
  return { kind: 'exchange.request', exchangeId: x.id, sessionId: x.session, at: x.at, data };
}

/** An `exchange.events` record: the SSE events of a short streamed answer. */
function eventsRecord(x: ExchangeSpec): NewRecord {
  const data: ExchangeEventsData = {
    events: [
      { i: 0, type: 'message_start', data: '{"type":"message_start","message":{"id":"msg_1"}}', offset_ms: 120.5 },
      {
        i: 1,
        type: 'content_block_delta',
        data: '{"type":"content_block_delta","delta":{"text":"Hi \\"there\\"\\n"}}',
        offset_ms: 130,
      },
      { i: 2, type: 'message_stop', data: '{"type":"message_stop"}', offset_ms: 140.25 },
    ],
  };
  return { kind: 'exchange.events', exchangeId: x.id, sessionId: x.session, at: x.at + 140, data };
}

/** An `exchange.response` record, ending the exchange 200 ms after it started. */
function responseRecord(x: ExchangeSpec): NewRecord {
  const data: ExchangeResponseData = {
    status: x.status ?? 200,
    headers: { 'content-type': 'text/event-stream', 'request-id': `req_${x.id}` },
    body: null,
    message: { role: 'assistant', content: [{ type: 'text', text: 'Hi "there"\n' }] },
    usage: {
      input_tokens: x.inputTokens ?? 10,
      cache_read_input_tokens: x.cacheRead ?? 5,
      ...(x.cacheWrite !== undefined
        ? {
            cache_creation_input_tokens: x.cacheWrite,
            cache_creation: {
              ephemeral_5m_input_tokens: x.cacheWrite - (x.cacheWrite1h ?? 0),
              ephemeral_1h_input_tokens: x.cacheWrite1h ?? 0,
            },
          }
        : {}),
      output_tokens: x.outputTokens ?? 7,
    },
    model: `${x.model ?? 'claude-sonnet-4-5'}-20250929`,
    stopReason: x.stopReason ?? 'end_turn',
    outcome: x.outcome ?? 'ok',
    error: null,
    eventCount: 3,
    ...(x.masking
      ? {
          masking: {
            counts: x.masking,
            findings: Object.entries(x.masking).map(([type, count]) => ({
              type,
              path: 'request.body$.messages[0].content',
              count,
            })),
          },
        }
      : {}),
    timing: { startedAt: x.at, firstByteMs: 120.5, endedAt: x.at + 200, durationMs: 200 },
  };
  return { kind: 'exchange.response', exchangeId: x.id, sessionId: x.session, at: x.at + 200, data };
}

/** A whole exchange as the recorder writes it: request (with its blob), events, response. */
function exchangeBatch(x: ExchangeSpec): WriteBatch {
  return {
    blobs: x.messages ? [x.messages] : [],
    records: [requestRecord(x), eventsRecord(x), responseRecord(x)],
  };
}

/**
 * `x` as the recorder writes it when the model called a tool with `input` (a caller can make it choose any input): the
 * events embed the tool call as received (as JSON text, the way the recorder writes them), the response the message.
 */
function toolCallBatch(x: ExchangeSpec, input: unknown): WriteBatch {
  const toolUse = { type: 'tool_use', id: 'toolu_1', name: 'T', input };
  const batch = exchangeBatch(x);
  return {
    ...batch,
    records: batch.records.map((r): NewRecord => {
      if (r.kind === 'exchange.events') {
        const start = { type: 'content_block_start', index: 0, content_block: toolUse };
        const json = `{"events":[{"i":0,"type":"content_block_start","data":${JSON.stringify(start)},"offset_ms":1}]}`;
        return { ...r, data: null, json };
      }
      if (r.kind !== 'exchange.response') return r;
      const data = r.data as ExchangeResponseData;
      return { ...r, data: { ...data, message: { role: 'assistant', content: [toolUse] }, stopReason: 'tool_use' } };
    }),
  };
}

/** A request record whose stored body refers to each of these blobs. */
function requestReferring(x: ExchangeSpec, hashes: readonly string[]): NewRecord {
  const r = requestRecord(x);
  const data = r.data as ExchangeRequestData;
  const body = { size: 2, parts: ['[', ...hashes.map((h) => ({ $blob: h })), ']'] };
  return { ...r, data: { ...data, request: { ...data.request, body } } };
}

const count = async (fixture: StoreFixture, table: string): Promise<number> =>
  Number((await fixture.sql(`SELECT count(*) AS n FROM ${table}`))[0]!.n);

function expectChained(records: readonly StoredRecord[]): void {
  for (const [i, r] of records.entries()) {
    expect(r.hash).toBe(recordHash(r.prevHash, r));
    if (i > 0) {
      expect(r.chainSeq).toBe(records[i - 1]!.chainSeq + 1);
      expect(r.prevHash).toBe(records[i - 1]!.hash);
      expect(r.seq).toBeGreaterThan(records[i - 1]!.seq);
    }
  }
}

/**
 * Exchanges of callers whose e-mails a hold names in another case of non-ASCII letters (É, and Greek Σ, whose small
 * form at the end of a word is ς), between two that are due: the candidates, a dry run and a run must all leave the
 * held ones out, so the one batch (retention.batch: 2) takes both due exchanges.
 */
async function expectNonAsciiHoldsLeftOut(store: AuditStore): Promise<void> {
  const policy: RetentionPolicy = { windows: { anthropic: 30 * DAY }, defaultWindow: null, batch: 2, sinks: [] };
  const now = T0 + 100 * DAY;
  const exchange = (id: string, email: string, n: number) =>
    store.append(exchangeBatch({ id, session: `ses_${id}`, caller: `sub_${id}`, email, at: T0 + n * 1000 }));
  await exchange('ex_e1', 'élodie@example.com', 0);
  await exchange('ex_o1', 'ΟΔΥΣΣΕΥΣ@example.com', 1);
  await exchange('ex_a', 'ann@example.com', 2);
  await exchange('ex_e2', 'ÉLODIE@EXAMPLE.COM', 3);
  await exchange('ex_o2', 'Οδυσσευς@example.com', 4);
  await exchange('ex_b', 'bea@example.com', 5);
  await addHold(store, { caller: 'Élodie@Example.com', reason: 'HR investigation', by: 'cli:legal' }, T0 + 6000);
  await addHold(store, { caller: 'οδυσσευς@example.com', reason: 'litigation', by: 'cli:legal' }, T0 + 7000);

  const candidates = await store.retentionCandidates(retentionQuery(policy, now)!);
  expect(candidates.map((c) => c.id)).toEqual(['ex_a', 'ex_b']);
  const dry = await runRetention(store, policy, KEY, { now, dryRun: true });
  const batches: number[] = [];
  const run = await runRetention(store, policy, KEY, { now, pauseMs: 0, onBatch: (b) => batches.push(b.exchanges) });
  expect(batches).toEqual([2]);
  expect(run).toMatchObject({ exchanges: 2, batches: 1 });
  expect(dry).toMatchObject({ exchanges: run.exchanges, records: run.records, batches: run.batches });
  for (const id of ['ex_e1', 'ex_o1', 'ex_e2', 'ex_o2']) {
    expect((await store.listExchanges(`ses_${id}`)).map((x) => x.id)).toEqual([id]);
  }
  expect(await store.verify()).toMatchObject({ ok: true, problems: [] });
}

describe.each(storeKinds())('AuditStore contract: %s', (kind) => {
  let fixture: StoreFixture;
  let store: AuditStore;

  beforeEach(async () => {
    fixture = await createStoreFixture(kind);
    store = await fixture.open();
  });

  afterEach(async () => {
    await fixture?.dispose();
  });

  describe('append', () => {
    it('opens the chain, then chains every record to the one before', async () => {
      const x = { id: 'ex_1', session: 'ses_1', at: T0 };
      const first = await store.append({ records: [requestRecord(x)] });
      const second = await store.append({ records: [eventsRecord(x), responseRecord(x)] });

      expect(first.map((r) => r.kind)).toEqual(['chain.opened', 'exchange.request']);
      expect(second.map((r) => r.kind)).toEqual(['exchange.events', 'exchange.response']);
      const all = [...first, ...second];
      expect(all.map((r) => r.chainSeq)).toEqual([1, 2, 3, 4]);
      expect(all.every((r) => r.chain === store.chainId)).toBe(true);
      expect(all[0]!.prevHash).toBe(GENESIS_HASH);
      expect(JSON.parse(all[0]!.data)).toEqual({ heads: [], store: kind });
      expectChained(all);

      // The data is kept exactly as hashed, and what is read back is what append returned.
      expect(all[1]!.data).toBe(JSON.stringify(requestRecord(x).data));
      expect(all[1]).toMatchObject({ exchangeId: 'ex_1', sessionId: 'ses_1', at: T0 });
      expect(await store.exchangeRecords('ex_1')).toEqual(all.slice(1));
      expect(await store.sessionRecords('ses_1')).toEqual(all.slice(1));
      expect(await store.exchangeRecords('ex_unknown')).toEqual([]);
    });

    it('reads the records of several exchanges at once, in append order, and only theirs', async () => {
      const x1 = { id: 'ex_1', session: 'ses_1', at: T0 };
      const x2 = { id: 'ex_2', session: 'ses_2', at: T0 + 1 };
      const x3 = { id: 'ex_3', session: 'ses_1', at: T0 + 2 };
      // Interleaved, as concurrent exchanges are recorded.
      const written = await store.append({
        records: [requestRecord(x1), requestRecord(x2), requestRecord(x3), responseRecord(x2), responseRecord(x1)],
      });
      const ofExchanges = written.filter((r) => r.exchangeId === 'ex_1' || r.exchangeId === 'ex_2');
      expect(await store.recordsOfExchanges(['ex_2', 'ex_1', 'ex_unknown'])).toEqual(ofExchanges);
      expect((await store.recordsOfExchanges(['ex_3'])).map((r) => r.kind)).toEqual(['exchange.request']);
      expect(await store.recordsOfExchanges([])).toEqual([]);
    });

    it('commits a new chain to the heads of the chains already there', async () => {
      const mine = await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }));
      const other = await fixture.open();
      const theirs = await other.append({ records: [requestRecord({ id: 'ex_2', session: 'ses_1', at: T0 + 1 })] });

      expect(other.chainId).not.toBe(store.chainId);
      expect(theirs[0]!.kind).toBe('chain.opened');
      const tip = mine.at(-1)!;
      expect(JSON.parse(theirs[0]!.data)).toEqual({
        heads: [{ chain: store.chainId, chainSeq: tip.chainSeq, hash: tip.hash }],
        store: kind,
      });
      expect(theirs[0]!.seq).toBeGreaterThan(tip.seq);
    });

    it('lands concurrent calls whole and in call order', async () => {
      const batches = Array.from({ length: 20 }, (_, i) =>
        exchangeBatch({ id: `ex_${i}`, session: 'ses_1', at: T0 + i }),
      );
      const results = await Promise.all(batches.map((b) => store.append(b)));

      const all = results.flat();
      expect(all).toHaveLength(1 + 20 * 3);
      expectChained(all);
      expect(results.slice(1).every((r) => r[0]!.kind === 'exchange.request')).toBe(true);
      expect(results.map((r) => r.at(-1)!.exchangeId)).toEqual(batches.map((_, i) => `ex_${i}`));
    });

    it('leaves the chain appendable and intact after a failed append', async () => {
      // The first append fails before anything is written: its payload has no JSON form.
      await expect(store.append({ records: [{ kind: 'note', at: T0, data: { tokens: 10n } }] })).rejects.toThrow();
      const x = { id: 'ex_1', session: 'ses_1', at: T0 };
      const ok = await store.append({ records: [requestRecord(x)] });
      expect(ok.map((r) => [r.kind, r.chainSeq])).toEqual([
        ['chain.opened', 1],
        ['exchange.request', 2],
      ]);

      // This one fails inside the database: a second request for the same exchange breaks the index's key, after
      // the blob and the records of the batch were already inserted. None of them may remain.
      const lost = blob('messages that must not survive the rollback');
      await expect(
        store.append({
          blobs: [lost],
          records: [eventsRecord(x), requestRecord({ ...x, messages: lost })],
        }),
      ).rejects.toThrow();
      expect((await store.blobs([lost.hash])).size).toBe(0);
      expect((await store.exchangeRecords('ex_1')).map((r) => r.kind)).toEqual(['exchange.request']);

      const after = await store.append({ records: [eventsRecord(x), responseRecord(x)] });
      expect(after.map((r) => r.chainSeq)).toEqual([3, 4]);
      expect(after[0]!.prevHash).toBe(ok.at(-1)!.hash);
      expect(await store.verify()).toMatchObject({ ok: true, chains: 1, records: 4, problems: [] });
      expect((await store.listExchanges('ses_1'))[0]).toMatchObject({ id: 'ex_1', outcome: 'ok' });
    });

    it('writes none of a batch when a record refers to a blob the store does not hold', async () => {
      // On PostgreSQL an append is one statement whose parts cannot see the blobs it inserts: the check takes the
      // batch's own blobs as written, and a missing one must stop every part, not only the references.
      const x = { id: 'ex_1', session: 'ses_1', at: T0 };
      await store.append({ records: [{ kind: 'note', at: T0, data: {} }] });
      const carried = blob('a message this batch writes');
      const gone = sha256(Buffer.from('a message retention removed'));
      await expect(
        store.append({
          blobs: [carried],
          records: [
            requestReferring(x, [carried.hash]),
            eventsRecord(x),
            requestReferring({ ...x, id: 'ex_2' }, [gone]),
          ],
          searchText: [{ exchangeId: 'ex_1', text: 'zanzibar' }],
        }),
      ).rejects.toThrow(
        new RegExp(`refers to blob ${gone}, which the store does not hold \\(removed by retention\\?\\)`),
      );
      expect((await store.blobs([carried.hash])).size).toBe(0);
      expect(await store.exchangeRecords('ex_1')).toEqual([]);
      for (const table of ['exchanges', 'exchange_callers', 'blob_refs']) expect(await count(fixture, table)).toBe(0);
      expect((await store.search('zanzibar')).items).toEqual([]);

      const next = await store.append({ blobs: [carried], records: [requestReferring(x, [carried.hash])] });
      expect(next.map((r) => r.chainSeq)).toEqual([3]);
      expect(await store.verify()).toMatchObject({ ok: true, records: 3, problems: [] });
    });

    it('tells a store that cannot write from a batch that is bad', async () => {
      // The write queue writes a failed batch apart only when the batch may be at fault: an outage must not cost a
      // failed write per record. Each store knows its own errors.
      const x = { id: 'ex_1', session: 'ses_1', at: T0 };
      const gone = sha256(Buffer.from('a message retention removed'));
      const bad = await store.append({ records: [requestReferring(x, [gone])] }).catch((err: unknown) => err);
      expect(bad).toBeInstanceOf(Error);
      expect(store.isUnavailable(bad)).toBe(false);

      const closed = await fixture.open();
      await closed.close();
      const down = await closed.append({ records: [{ kind: 'note', at: T0, data: {} }] }).catch((err: unknown) => err);
      expect(down).toBeInstanceOf(Error);
      expect(closed.isUnavailable(down)).toBe(true);
    });

    it('appends a batch too large for one statement whole and in order, referring to blobs anywhere in it', async () => {
      // PostgreSQL writes at most 1000 rows of a kind per statement: this batch takes several, in one transaction.
      // Each record refers to its own blob and to one 1500 places on, in another statement's share of the blobs.
      const n = 2500;
      const blobs = Array.from({ length: n }, (_, i) => blob(`message ${i}`));
      const records = blobs.map((own, i) =>
        requestReferring({ id: `ex_${i}`, session: 'ses_1', at: T0 + i }, [own.hash, blobs[(i + 1500) % n]!.hash]),
      );
      const searchText = Array.from({ length: 250 }, (_, i) => ({ exchangeId: `ex_${i * 10}`, text: `word${i}` }));
      const stored = await store.append({ blobs, records, searchText });
      expect(stored.map((r) => r.exchangeId)).toEqual([null, ...records.map((r) => r.exchangeId)]);
      expectChained(stored);
      expect(await store.chainRecords(store.chainId, 0, n + 1)).toEqual(stored);
      expect(await count(fixture, 'blob_refs')).toBe(2 * n);
      expect(await count(fixture, 'exchanges')).toBe(n);
      expect((await store.search('word249')).items.map((h) => h.exchangeId)).toEqual(['ex_2490']);
      expect(await store.verify()).toEqual({ ok: true, chains: 1, records: n + 1, problems: [] });

      // The same batch with one more reference, in its last record, to a blob the store does not hold: none of it is
      // written, though the statements before the last had written their share.
      const gone = sha256(Buffer.from('removed by retention'));
      const more = blobs.map((b) => blob(`again ${b.data.toString()}`));
      const refused = more.map((own, i) =>
        requestReferring({ id: `ex_again_${i}`, session: 'ses_1', at: T0 + n + i }, [
          own.hash,
          ...(i === n - 1 ? [gone] : []),
        ]),
      );
      await expect(store.append({ blobs: more, records: refused })).rejects.toThrow(/does not hold/);
      expect(await count(fixture, 'records')).toBe(n + 1);
      expect(await count(fixture, 'blobs')).toBe(n);
      expect(await count(fixture, 'exchanges')).toBe(n);
      const next = await store.append({ records: [{ kind: 'note', at: T0, data: {} }] });
      expect(next[0]!.chainSeq).toBe(n + 2);
      expect(next[0]!.prevHash).toBe(stored.at(-1)!.hash);
    }, 30_000);

    if (kind === 'postgres') {
      it('takes a blob another writer commits while the append waits on it as written', async () => {
        // Went wrong in a draft: one statement reads one snapshot, which lacks a blob another gateway inserts and
        // commits while this statement waits on its row (ON CONFLICT then skips it); taken for missing, a request
        // carrying that message was refused.
        const shared = blob('a message two gateways record at once');
        await fixture.sql('BEGIN');
        await fixture.sql(`INSERT INTO blobs (hash, data) VALUES ('${shared.hash}', ${fixture.bytes(shared.data)})`);
        let settled = false;
        const appending = store
          .append({
            blobs: [shared],
            records: [requestReferring({ id: 'ex_1', session: 'ses_1', at: T0 }, [shared.hash])],
          })
          .finally(() => (settled = true));
        await sleep(200);
        expect(settled).toBe(false); // waiting for the other transaction's row
        await fixture.sql('COMMIT');
        expect((await appending).map((r) => r.kind)).toEqual(['chain.opened', 'exchange.request']);
        expect(await store.verify()).toMatchObject({ ok: true, problems: [] });
      });

      it('makes an append referring to a blob wait for a purge removing it, then refuses it; others go on', async () => {
        const old = blob('stored before the purge');
        await fixture.sql(`INSERT INTO blobs (hash, data) VALUES ('${old.hash}', ${fixture.bytes(old.data)})`);
        const x = { id: 'ex_1', session: 'ses_1', at: T0 };
        // What a purge does (purgeExchanges): lock the references, then remove the blobs nothing refers to any more.
        await fixture.sql('BEGIN');
        await fixture.sql(`SET LOCAL vigil.purge = 'on'`);
        await fixture.sql('LOCK TABLE holds, blob_refs IN SHARE MODE');
        await fixture.sql(`DELETE FROM blobs WHERE hash = '${old.hash}'`);
        let settled = false;
        const referring = store.append({ records: [requestReferring(x, [old.hash])] }).finally(() => (settled = true));
        // Its rejection is asserted below; it can arrive while the COMMIT's own answer is still on its way, before
        // the assertion is attached, which would count as an unhandled rejection.
        referring.catch(() => {});
        // An append that refers to no blob does not wait for the purge.
        const other = await fixture.open();
        await other.append({ records: [requestRecord({ id: 'ex_2', session: 'ses_2', at: T0 })] });
        expect(settled).toBe(false);
        await fixture.sql('COMMIT');
        await expect(referring).rejects.toThrow(`refers to blob ${old.hash}, which the store does not hold`);
        // What the recorder does then: write the blob again.
        await store.append({ blobs: [old], records: [requestReferring(x, [old.hash])] });
        expect(await store.verify()).toMatchObject({ ok: true, chains: 2, problems: [] });
      });
    }
  });

  describe('indexes', () => {
    it('summarises exchanges from their request, events and response records', async () => {
      await store.append(exchangeBatch({ id: 'ex_a', session: 'ses_1', at: T0, inputTokens: 100, outputTokens: 20 }));
      await store.append(
        exchangeBatch({
          id: 'ex_b',
          session: 'ses_1',
          at: T0 + 1000,
          stream: false,
          inputTokens: 200,
          outputTokens: 30,
        }),
      );
      // A request the gateway never answered (it crashed): listed without a result, and unfinished.
      await store.append({
        records: [requestRecord({ id: 'ex_c', session: 'ses_1', at: T0 + 2000, model: 'claude-haiku-4-5' })],
      });
      await store.append(exchangeBatch({ id: 'ex_d', session: 'ses_2', at: T0 + 500, caller: 'bob' }));

      const exchanges = await store.listExchanges('ses_1');
      expect(exchanges).toEqual([
        {
          id: 'ex_a',
          sessionId: 'ses_1',
          connection: 'anthropic',
          callerSubject: 'alice',
          callerMethod: 'oidc',
          method: 'POST',
          path: '/v1/messages',
          model: 'claude-sonnet-4-5-20250929',
          stream: true,
          startedAt: T0,
          endedAt: T0 + 200,
          status: 200,
          outcome: 'ok',
          inputTokens: 105,
          outputTokens: 20,
          stopReason: 'end_turn',
        },
        expect.objectContaining({ id: 'ex_b', stream: false, inputTokens: 205, outputTokens: 30, outcome: 'ok' }),
        expect.objectContaining({
          id: 'ex_c',
          model: 'claude-haiku-4-5',
          endedAt: null,
          status: null,
          outcome: null,
          inputTokens: null,
          outputTokens: null,
        }),
      ]);
      expect(await store.listExchanges('ses_unknown')).toEqual([]);
      expect(await store.unfinishedExchanges()).toEqual(['ex_c']);

      const sessions = await store.listSessions();
      expect(sessions).toEqual({
        items: [
          {
            id: 'ses_1',
            connection: 'anthropic',
            callerSubject: 'alice',
            firstAt: T0,
            lastAt: T0 + 2000,
            exchanges: 3,
            inputTokens: 310,
            outputTokens: 50,
            // The newest first: ex_c (unanswered, listed with the model it asked for), ex_b, ex_a.
            recent: {
              exchanges: 3,
              callers: [{ callerSubject: 'alice', callerMethod: 'oidc', callerIssuer: 'https://idp.example' }],
              models: ['claude-haiku-4-5', 'claude-sonnet-4-5-20250929'],
              outcomes: { in_progress: 1, ok: 2 },
            },
          },
          expect.objectContaining({
            id: 'ses_2',
            callerSubject: 'bob',
            exchanges: 1,
            inputTokens: 15,
            outputTokens: 7,
          }),
        ],
        nextCursor: null,
      });
    });

    it('filters sessions and pages through them with a cursor', async () => {
      // Seven sessions; two share their last activity, so the id breaks the tie.
      const spec = [
        { session: 'ses_1', at: T0 + 1000, connection: 'anthropic', caller: 'alice' },
        { session: 'ses_2', at: T0 + 2000, connection: 'bedrock', caller: 'alice' },
        { session: 'ses_3', at: T0 + 3000, connection: 'anthropic', caller: 'bob' },
        { session: 'ses_4', at: T0 + 4000, connection: 'anthropic', caller: 'alice' },
        { session: 'ses_5', at: T0 + 4000, connection: 'bedrock', caller: 'bob' },
        { session: 'ses_6', at: T0 + 6000, connection: 'anthropic', caller: 'alice' },
        { session: 'ses_7', at: T0 + 7000, connection: 'anthropic', caller: 'carol' },
      ];
      for (const [i, s] of spec.entries()) {
        await store.append(exchangeBatch({ id: `ex_${i}`, ...s }));
        // An earlier exchange in the same session: firstAt differs from lastAt and counts add up.
        await store.append(exchangeBatch({ id: `ex_${i}_early`, ...s, at: s.at - 500 }));
      }

      const pages: string[][] = [];
      let cursor: string | undefined;
      do {
        const page = await store.listSessions({ limit: 3, ...(cursor !== undefined ? { cursor } : {}) });
        pages.push(page.items.map((s) => s.id));
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
      expect(pages).toEqual([['ses_7', 'ses_6', 'ses_5'], ['ses_4', 'ses_3', 'ses_2'], ['ses_1']]);

      const first = (await store.listSessions({ limit: 3 })).items[0]!;
      expect(first).toMatchObject({ id: 'ses_7', firstAt: T0 + 6500, lastAt: T0 + 7000, exchanges: 2 });

      const ids = async (filter: Parameters<AuditStore['listSessions']>[0]): Promise<string[]> =>
        (await store.listSessions(filter)).items.map((s) => s.id);
      expect(await ids({ connection: 'bedrock' })).toEqual(['ses_5', 'ses_2']);
      expect(await ids({ caller: 'alice' })).toEqual(['ses_6', 'ses_4', 'ses_2', 'ses_1']);
      expect(await ids({ caller: 'alice', connection: 'anthropic' })).toEqual(['ses_6', 'ses_4', 'ses_1']);
      // since/until bound when exchanges started (until is exclusive); sessions show only their matching exchanges.
      expect(await ids({ since: T0 + 3000, until: T0 + 6000 })).toEqual(['ses_6', 'ses_5', 'ses_4', 'ses_3']);
      expect(
        (await store.listSessions({ since: T0 + 3800, until: T0 + 6000 })).items.map((s) => [
          s.id,
          s.exchanges,
          s.lastAt,
        ]),
      ).toEqual([
        ['ses_6', 1, T0 + 5500],
        ['ses_5', 1, T0 + 4000],
        ['ses_4', 1, T0 + 4000],
      ]);
      expect(await ids({ caller: 'nobody' })).toEqual([]);

      const filtered = await store.listSessions({ caller: 'alice', limit: 2 });
      expect(filtered.items.map((s) => s.id)).toEqual(['ses_6', 'ses_4']);
      const rest = await store.listSessions({ caller: 'alice', limit: 2, cursor: filtered.nextCursor! });
      expect(rest).toEqual({
        items: [expect.objectContaining({ id: 'ses_2' }), expect.objectContaining({ id: 'ses_1' })],
        nextCursor: null,
      });
      // Went wrong: a cursor that did not decode was read as "from the top", so a client sending a mangled one got
      // page 1 again (and looped) instead of an error.
      // And one with a fractional time (a 500 on PostgreSQL, whose bigint parameter refused it).
      const fractional = Buffer.from('1.5:ex_x').toString('base64url');
      for (const cursor of ['garbage', `${filtered.nextCursor!}x`, 'OnNlc18x', fractional]) {
        await expect(store.listSessions({ caller: 'alice', limit: 2, cursor })).rejects.toMatchObject({
          code: 'BAD_REQUEST',
          message: expect.stringContaining('cursor: not a cursor from this list'),
        });
        await expect(store.listExchangesFiltered({ limit: 2, cursor })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
      }
    });

    it('indexes gateway keys from key.created and key.revoked records', async () => {
      const created = (name: string, hash: string, at: number): NewRecord => ({
        kind: 'key.created',
        at,
        data: {
          hash,
          name,
          owner: 'alice',
          connections: ['anthropic'],
          createdAt: at,
          expiresAt: null,
          createdBy: 'admin',
        },
      });
      await store.append({ records: [created('ci', 'a'.repeat(64), T0), created('laptop', 'b'.repeat(64), T0 + 1)] });
      await store.append({
        records: [
          {
            kind: 'key.revoked',
            at: T0 + 2,
            data: { name: 'ci', hash: 'a'.repeat(64), revokedAt: T0 + 2, revokedBy: 'admin' },
          },
        ],
      });

      expect(await store.findGatewayKey('a'.repeat(64))).toEqual({
        hash: 'a'.repeat(64),
        name: 'ci',
        owner: 'alice',
        connections: ['anthropic'],
        createdAt: T0,
        expiresAt: null,
        revokedAt: T0 + 2,
      });
      expect(await store.findGatewayKey('c'.repeat(64))).toBeUndefined();
      expect((await store.listGatewayKeys()).map((k) => [k.name, k.revokedAt])).toEqual([
        ['laptop', null],
        ['ci', T0 + 2],
      ]);
      // A revoked key's name can be reused; a live one cannot.
      await store.append({ records: [created('ci', 'd'.repeat(64), T0 + 3)] });
      await expect(store.append({ records: [created('laptop', 'e'.repeat(64), T0 + 4)] })).rejects.toThrow();
      expect(await store.verify()).toMatchObject({ ok: true });
    });
  });

  describe('audit access', () => {
    /** Five exchanges over three sessions, callers at two issuers, groups, models, outcomes and masking. */
    async function fillVaried(): Promise<void> {
      const specs: ExchangeSpec[] = [
        {
          id: 'ex_1',
          session: 'ses_a',
          at: T0 + 1000,
          caller: 'alice',
          groups: ['ml-team', 'eng'],
          masking: { email: 2 },
        },
        {
          id: 'ex_2',
          session: 'ses_a',
          at: T0 + 2000,
          caller: 'alice',
          groups: ['ml-team', 'eng'],
          model: 'claude-haiku-4-5',
        },
        {
          id: 'ex_3',
          session: 'ses_b',
          at: T0 + 3000,
          caller: 'bob',
          groups: ['sales'],
          outcome: 'upstream_error',
          status: 529,
        },
        // Same subject, another issuer: another person.
        {
          id: 'ex_4',
          session: 'ses_c',
          at: T0 + 4000,
          caller: 'alice',
          issuer: 'https://other-idp.example',
          connection: 'bedrock',
        },
        {
          id: 'ex_5',
          session: 'ses_b',
          at: T0 + 5000,
          caller: 'bob',
          groups: ['sales'],
          masking: { anthropic_api_key: 1, email: 0 },
          stopReason: 'refusal',
        },
      ];
      for (const x of specs) await store.append(exchangeBatch(x));
      // Still running: a request without its response.
      await store.append({ records: [requestRecord({ id: 'ex_6', session: 'ses_b', at: T0 + 6000, caller: 'bob' })] });
    }

    const ids = async (filter: Parameters<AuditStore['listExchangesFiltered']>[0]): Promise<string[]> =>
      (await store.listExchangesFiltered(filter)).items.map((x) => x.id);

    it('lists exchanges newest first with who, groups and masking, filtered by any combination', async () => {
      await fillVaried();
      const all = await store.listExchangesFiltered();
      expect(all.nextCursor).toBeNull();
      expect(all.items.map((x) => x.id)).toEqual(['ex_6', 'ex_5', 'ex_4', 'ex_3', 'ex_2', 'ex_1']);
      expect(all.items.find((x) => x.id === 'ex_1')).toEqual({
        id: 'ex_1',
        sessionId: 'ses_a',
        connection: 'anthropic',
        callerSubject: 'alice',
        callerMethod: 'oidc',
        callerIssuer: 'https://idp.example',
        callerGroups: ['eng', 'ml-team'],
        method: 'POST',
        path: '/v1/messages',
        model: 'claude-sonnet-4-5-20250929',
        stream: true,
        startedAt: T0 + 1000,
        endedAt: T0 + 1200,
        status: 200,
        outcome: 'ok',
        inputTokens: 15,
        outputTokens: 7,
        stopReason: 'end_turn',
        masking: { email: 2 },
      });
      expect(all.items.find((x) => x.id === 'ex_5')!.masking).toEqual({ anthropic_api_key: 1 });
      expect(all.items.find((x) => x.id === 'ex_6')).toMatchObject({ outcome: null, callerGroups: [], masking: {} });

      expect(await ids({ caller: 'alice' })).toEqual(['ex_4', 'ex_2', 'ex_1']);
      expect(await ids({ caller: 'alice', callerIssuer: 'https://idp.example' })).toEqual(['ex_2', 'ex_1']);
      expect(await ids({ group: 'ml-team' })).toEqual(['ex_2', 'ex_1']);
      expect(await ids({ group: 'sales' })).toEqual(['ex_5', 'ex_3']);
      expect(await ids({ connection: 'bedrock' })).toEqual(['ex_4']);
      // The model asked for, or the one that answered.
      expect(await ids({ model: 'claude-haiku-4-5' })).toEqual(['ex_2']);
      expect(await ids({ model: 'claude-haiku-4-5-20250929' })).toEqual(['ex_2']);
      expect(await ids({ outcome: 'upstream_error' })).toEqual(['ex_3']);
      expect(await ids({ outcome: 'in_progress' })).toEqual(['ex_6']);
      expect(await ids({ masking: 'email' })).toEqual(['ex_1']);
      expect(await ids({ masking: 'anthropic_api_key' })).toEqual(['ex_5']);
      // Why the answer stopped: a refusal (a model's safety classifiers declined), or the usual end of a turn.
      expect(await ids({ stopReason: 'refusal' })).toEqual(['ex_5']);
      expect(await ids({ stopReason: 'end_turn' })).toEqual(['ex_4', 'ex_3', 'ex_2', 'ex_1']);
      expect(await ids({ stopReason: 'refusal', caller: 'alice' })).toEqual([]);
      expect(all.items.find((x) => x.id === 'ex_5')!.stopReason).toBe('refusal');
      expect(all.items.find((x) => x.id === 'ex_6')!.stopReason).toBeNull();
      expect(await ids({ since: T0 + 2000, until: T0 + 5000 })).toEqual(['ex_4', 'ex_3', 'ex_2']);
      expect(await ids({ session: 'ses_b', outcome: 'ok' })).toEqual(['ex_5']);
      expect(await ids({ group: 'nobody' })).toEqual([]);
    });

    it('pages through exchanges with a cursor, ties broken by id', async () => {
      for (let i = 0; i < 7; i++) {
        await store.append(exchangeBatch({ id: `ex_${i}`, session: 'ses_1', at: T0 + Math.floor(i / 2) * 1000 }));
      }
      const pages: string[][] = [];
      let cursor: string | undefined;
      do {
        const page = await store.listExchangesFiltered({ limit: 3, cursor });
        pages.push(page.items.map((x) => x.id));
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
      expect(pages).toEqual([['ex_6', 'ex_5', 'ex_4'], ['ex_3', 'ex_2', 'ex_1'], ['ex_0']]);
    });

    it('pages through a session oldest first with a cursor, ties broken by id', async () => {
      for (let i = 6; i >= 0; i--) {
        await store.append(exchangeBatch({ id: `ex_${i}`, session: 'ses_1', at: T0 + Math.floor(i / 2) * 1000 }));
      }
      await store.append(exchangeBatch({ id: 'ex_other', session: 'ses_2', at: T0 + 1500 }));
      const pages: string[][] = [];
      let cursor: string | undefined;
      do {
        const page = await store.listExchangesFiltered({ session: 'ses_1', oldestFirst: true, limit: 3, cursor });
        pages.push(page.items.map((x) => x.id));
        cursor = page.nextCursor ?? undefined;
      } while (cursor !== undefined);
      expect(pages).toEqual([['ex_0', 'ex_1', 'ex_2'], ['ex_3', 'ex_4', 'ex_5'], ['ex_6']]);
    });

    it("adds up a session's matching exchanges: counts, tokens, times, outcomes, callers, connections, models", async () => {
      await fillVaried();
      // Same subject at another issuer, and a third caller, in ses_b.
      await store.append(
        exchangeBatch({
          id: 'ex_7',
          session: 'ses_b',
          at: T0 + 7000,
          caller: 'bob',
          issuer: 'https://other-idp.example',
          connection: 'bedrock',
          model: 'claude-haiku-4-5',
          inputTokens: 100,
          outputTokens: 50,
        }),
      );
      const b = await store.sessionTotals('ses_b');
      expect(b).toEqual({
        id: 'ses_b',
        connection: 'anthropic',
        callerSubject: 'bob',
        firstAt: T0 + 3000,
        lastAt: T0 + 7000,
        endedAt: T0 + 7200,
        exchanges: 4,
        // ex_3 and ex_5 (10 + 5 cache reads, 7 each), ex_6 unanswered, ex_7 (100 + 5, 50).
        inputTokens: 135,
        outputTokens: 64,
        cacheReadTokens: 15,
        cacheWriteTokens: 0,
        // No pricing asked for: no cost, not 0.
        cost: null,
        unpriced: null,
        currency: null,
        outcomes: { upstream_error: 1, ok: 2, in_progress: 1 },
        callers: [
          { callerSubject: 'bob', callerMethod: 'oidc', callerIssuer: 'https://idp.example' },
          { callerSubject: 'bob', callerMethod: 'oidc', callerIssuer: 'https://other-idp.example' },
        ],
        callerCount: 2,
        connections: ['anthropic', 'bedrock'],
        connectionCount: 2,
        // The model that answered, else the one asked for (ex_6 has no answer yet).
        models: ['claude-sonnet-4-5-20250929', 'claude-sonnet-4-5', 'claude-haiku-4-5-20250929'],
        modelCount: 3,
      });
      // Narrowed like a list: one caller's exchanges only (what a `user` sees), or one outcome.
      expect(
        await store.sessionTotals('ses_b', { caller: 'bob', callerIssuer: 'https://other-idp.example' }),
      ).toMatchObject({
        exchanges: 1,
        callers: [expect.objectContaining({ callerIssuer: 'https://other-idp.example' })],
      });
      expect(await store.sessionTotals('ses_b', { outcome: 'in_progress' })).toMatchObject({
        exchanges: 1,
        endedAt: null,
        inputTokens: 0,
        outcomes: { in_progress: 1 },
      });
      expect(await store.sessionTotals('ses_b', { caller: 'alice' })).toBeUndefined();
      expect(await store.sessionTotals('ses_unknown')).toBeUndefined();
    });

    it('names at most the first few callers, connections and models of a session, and counts them all', async () => {
      for (let i = 0; i < SESSION_TOTALS_NAMES + 2; i++) {
        const n = String(i).padStart(2, '0');
        await store.append(
          exchangeBatch({
            id: `ex_${n}`,
            session: 'ses_crowd',
            at: T0 + i * 1000,
            caller: `caller-${n}`,
            connection: `conn-${n}`,
            model: `model-${n}`,
          }),
        );
      }
      const totals = (await store.sessionTotals('ses_crowd'))!;
      const first = Array.from({ length: SESSION_TOTALS_NAMES }, (_, i) => String(i).padStart(2, '0'));
      expect(totals.callers.map((c) => c.callerSubject)).toEqual(first.map((n) => `caller-${n}`));
      expect(totals.connections).toEqual(first.map((n) => `conn-${n}`));
      expect(totals.models).toEqual(first.map((n) => `model-${n}-20250929`));
      expect([totals.callerCount, totals.connectionCount, totals.modelCount, totals.exchanges]).toEqual(
        Array(4).fill(SESSION_TOTALS_NAMES + 2),
      );
    });

    it('reports usage by caller, connection, model and day, filtered, largest first, cut at the limit', async () => {
      await fillVaried();
      // A day later, one more of bob's.
      await store.append(exchangeBatch({ id: 'ex_7', session: 'ses_d', at: T0 + 86_400_000, caller: 'bob' }));
      const row = (
        key: string | null,
        n: number,
        input: number,
        output: number,
        failed = 0,
        refused = 0,
        open = 0,
      ) => ({
        key,
        email: null as string | null,
        exchanges: n,
        inputTokens: input,
        outputTokens: output,
        cacheReadTokens: (input / 15) * 5,
        cacheWriteTokens: 0,
        cost: null,
        unpriced: null,
        failed,
        refused,
        inProgress: open,
      });
      // Each answered exchange: 15 input tokens (10, and 5 read from the cache) and 7 output.
      // By caller, with the e-mail their identity token gave (every caller here was given alice's).
      const withEmail = (r: ReturnType<typeof row>) => ({ ...r, email: 'alice@example.com' });
      expect(await store.usage({ by: 'caller' })).toEqual({
        by: 'caller',
        items: [withEmail(row('alice', 3, 45, 21)), withEmail(row('bob', 4, 45, 21, 1, 1, 1))], // as many tokens: by name
        truncated: false,
        currency: null,
      });
      expect((await store.usage({ by: 'connection' })).items).toEqual([
        row('anthropic', 6, 75, 35, 1, 1, 1),
        row('bedrock', 1, 15, 7),
      ]);
      // The model that answered, else the one asked for (ex_6 is still running).
      expect((await store.usage({ by: 'model' })).items.map((r) => [r.key, r.exchanges])).toEqual([
        ['claude-sonnet-4-5-20250929', 5],
        ['claude-haiku-4-5-20250929', 1],
        ['claude-sonnet-4-5', 1],
      ]);
      expect((await store.usage({ by: 'day' })).items.map((r) => [r.key, r.exchanges])).toEqual([
        ['2025-01-15', 6],
        ['2025-01-16', 1],
      ]);
      // By group: an exchange counts in each of its caller's groups, and those of callers without one in a row of
      // their own (key null); largest by tokens first, ties by name.
      expect((await store.usage({ by: 'group' })).items.map((r) => [r.key, r.exchanges, r.inputTokens])).toEqual([
        ['eng', 2, 30],
        ['ml-team', 2, 30],
        ['sales', 2, 30],
        [null, 3, 30], // alice at the other issuer, and bob's two without groups (one still running)
      ]);
      expect((await store.usage({ by: 'group', connection: 'anthropic' })).items.map((r) => r.key)).toEqual([
        'eng',
        'ml-team',
        'sales',
        null,
      ]);
      // Filtered as lists are; cut at the limit, saying so.
      expect((await store.usage({ by: 'caller', group: 'sales' })).items).toEqual([
        withEmail(row('bob', 2, 30, 14, 1, 1)),
      ]);
      expect((await store.usage({ by: 'caller', stopReason: 'refusal' })).items).toEqual([
        withEmail(row('bob', 1, 15, 7, 0, 1)),
      ]);
      // Filtered by issuer as lists are (its own table, beside the one the e-mails come from).
      expect((await store.usage({ by: 'caller', callerIssuer: 'https://other-idp.example' })).items).toEqual([
        withEmail(row('alice', 1, 15, 7)),
      ]);
      expect(await store.usage({ by: 'caller', limit: 1 })).toMatchObject({
        items: [{ key: 'alice' }],
        truncated: true,
      });
      expect((await store.usage({ by: 'caller', connection: 'anthropic' })).items.map((r) => r.key)).toEqual([
        'bob', // 45 + 21 tokens on this connection, alice 30 + 14
        'alice',
      ]);
      expect(await store.usage({ by: 'day', since: T0 + 86_400_000 })).toMatchObject({
        items: [{ key: '2025-01-16', exchanges: 1 }],
        truncated: false,
      });
      expect(await store.usage({ by: 'caller', caller: 'nobody' })).toEqual({
        by: 'caller',
        items: [],
        truncated: false,
        currency: null,
      });
    });

    it('prices usage by model: uncached input, cache writes of 5 minutes and an hour, cache reads and output apart', async () => {
      const specs: ExchangeSpec[] = [
        // 1,000 uncached input, 2,000,000 cache reads, 400,000 cache writes (100,000 for an hour), 10,000 output.
        {
          id: 'ex_p1',
          session: 'ses_p',
          at: T0 + 1000,
          caller: 'alice',
          model: 'claude-opus-4-5',
          inputTokens: 1000,
          cacheRead: 2_000_000,
          cacheWrite: 400_000,
          cacheWrite1h: 100_000,
          outputTokens: 10_000,
        },
        // Priced by the prefix rule (the model that answered is claude-sonnet-4-5-20250929).
        {
          id: 'ex_p2',
          session: 'ses_p',
          at: T0 + 2000,
          caller: 'alice',
          model: 'claude-sonnet-4-5',
          inputTokens: 500_000,
          cacheRead: 0,
          outputTokens: 100_000,
        },
        // A model nobody priced: counted apart, not guessed.
        { id: 'ex_p3', session: 'ses_p', at: T0 + 3000, caller: 'bob', model: 'claude-fable-5' },
      ];
      for (const x of specs) await store.append(exchangeBatch(x));
      const pricing = pricingFrom(
        pricingSchema.parse({
          currency: 'EUR',
          models: [
            // Exact ids first; the first match wins. Cache rates given for opus, derived for sonnet.
            {
              model: 'claude-opus-4-5-20250929',
              input: 5,
              output: 25,
              cache_write: 6.25,
              cache_write_1h: 10,
              cache_read: 0.5,
            },
            { model: 'claude-sonnet-4-5*', input: 3, output: 15 },
            { model: 'claude-sonnet*', input: 1000, output: 1000 },
          ],
        }),
      );
      const opus = (1000 * 5 + 300_000 * 6.25 + 100_000 * 10 + 2_000_000 * 0.5 + 10_000 * 25) / 1e6; // 4.13
      const sonnet = (500_000 * 3 + 100_000 * 15) / 1e6; // 3.0
      const byModel = await store.usage({ by: 'model' }, pricing);
      expect(byModel.currency).toBe('EUR');
      expect(byModel.items).toEqual([
        expect.objectContaining({
          key: 'claude-opus-4-5-20250929',
          inputTokens: 2_401_000,
          cacheReadTokens: 2_000_000,
          cacheWriteTokens: 400_000,
          cost: opus,
          unpriced: 0,
        }),
        expect.objectContaining({ key: 'claude-sonnet-4-5-20250929', cost: sonnet, unpriced: 0 }),
        expect.objectContaining({ key: 'claude-fable-5-20250929', cost: 0, unpriced: 1 }),
      ]);
      expect(opus).toBeCloseTo(4.13, 10);
      // By caller: each exchange priced by its own model before they are added up.
      const byCaller = await store.usage({ by: 'caller' }, pricing);
      expect(byCaller.items.map((r) => [r.key, r.cost, r.unpriced])).toEqual([
        ['alice', Math.round((opus + sonnet) * 1e6) / 1e6, 0],
        ['bob', 0, 1],
      ]);
      // Without pricing, no cost at all (not zero).
      expect((await store.usage({ by: 'caller' })).items.map((r) => [r.cost, r.unpriced])).toEqual([
        [null, null],
        [null, null],
      ]);
      // A session's totals add up the same way.
      expect(await store.sessionTotals('ses_p', {}, pricing)).toMatchObject({
        cacheReadTokens: 2_000_000 + 0 + 5,
        cacheWriteTokens: 400_000,
        cost: Math.round((opus + sonnet) * 1e6) / 1e6,
        unpriced: 1,
        currency: 'EUR',
      });
      expect(await store.sessionTotals('ses_p', { caller: 'bob' }, pricing)).toMatchObject({ cost: 0, unpriced: 1 });
      expect(await store.sessionTotals('ses_p')).toMatchObject({ cost: null, unpriced: null, currency: null });
    });

    it('filters sessions by group, model, outcome, masking, stop reason and issuer', async () => {
      await fillVaried();
      const sessions = async (filter: Parameters<AuditStore['listSessions']>[0]): Promise<Array<[string, number]>> =>
        (await store.listSessions(filter)).items.map((x) => [x.id, x.exchanges]);
      expect(await sessions({ group: 'ml-team' })).toEqual([['ses_a', 2]]);
      expect(await sessions({ model: 'claude-haiku-4-5' })).toEqual([['ses_a', 1]]);
      expect(await sessions({ outcome: 'ok' })).toEqual([
        ['ses_b', 1],
        ['ses_c', 1],
        ['ses_a', 2],
      ]);
      expect(await sessions({ outcome: 'in_progress' })).toEqual([['ses_b', 1]]);
      expect(await sessions({ masking: 'email' })).toEqual([['ses_a', 1]]);
      expect(await sessions({ stopReason: 'refusal' })).toEqual([['ses_b', 1]]);
      expect(await sessions({ caller: 'alice', callerIssuer: 'https://other-idp.example' })).toEqual([['ses_c', 1]]);
    });

    it('orders sessions by their newest matching exchange, ties by id, and pages through each once', async () => {
      // The list finds a page's sessions by walking the exchanges newest first and counting each session at its newest
      // matching exchange: a session's older exchanges met further down (A's at 1) must not list it again, and under a
      // filter a session whose newest exchange does not match is listed at its newest that does.
      const spec: Array<[session: string, at: number, caller: string]> = [
        ['ses_a', 1, 'alice'],
        ['ses_a', 9, 'bob'],
        ['ses_b', 5, 'alice'],
        ['ses_b', 7, 'alice'],
        ['ses_c', 7, 'bob'],
        ['ses_c', 3, 'alice'],
        ['ses_d', 8, 'alice'],
        ['ses_e', 2, 'bob'],
        ['ses_e', 2, 'bob'],
      ];
      for (const [i, [session, at, caller]] of spec.entries()) {
        await store.append(exchangeBatch({ id: `ex_${i}`, session, at: T0 + at * 1000, caller }));
      }
      const all = async (filter: Parameters<AuditStore['listSessions']>[0]): Promise<Array<[string, number]>> => {
        const out: Array<[string, number]> = [];
        let cursor: string | undefined;
        do {
          const page = await store.listSessions({ ...filter, limit: 2, ...(cursor !== undefined ? { cursor } : {}) });
          out.push(...page.items.map((x): [string, number] => [x.id, (x.lastAt - T0) / 1000]));
          cursor = page.nextCursor ?? undefined;
        } while (cursor !== undefined);
        return out;
      };
      const expected: Array<[string, number]> = [
        ['ses_a', 9],
        ['ses_d', 8],
        ['ses_c', 7],
        ['ses_b', 7],
        ['ses_e', 2],
      ];
      expect(await all({})).toEqual(expected);
      expect((await store.listSessions({})).items.map((x) => [x.id, x.exchanges])).toEqual([
        ['ses_a', 2],
        ['ses_d', 1],
        ['ses_c', 2],
        ['ses_b', 2],
        ['ses_e', 2],
      ]);
      expect(await all({ caller: 'alice' })).toEqual([
        ['ses_d', 8],
        ['ses_b', 7],
        ['ses_c', 3],
        ['ses_a', 1],
      ]);
      expect((await store.listSessions({ caller: 'bob' })).items.map((x) => [x.id, x.exchanges])).toEqual([
        ['ses_a', 1],
        ['ses_c', 1],
        ['ses_e', 2],
      ]);
    });

    it("summarises each listed session's newest matching exchanges, as its exchange list has them", async () => {
      // The admin API derived each row's callers, models and outcomes from one more exchange list per row; the store
      // now answers them in its page's statement, and must give what those lists gave.
      await fillVaried();
      // A session longer than the summary: its oldest exchanges (zed's, the only in_progress ones) fall outside it, and
      // four share a start time across the cut, so the id decides which are in.
      const cut = SESSION_RECENT_LIMIT + 5;
      for (let i = 0; i < cut; i++) {
        const x: ExchangeSpec = {
          id: `ex_long_${String(i).padStart(3, '0')}`,
          session: 'ses_long',
          at: T0 + 10_000 + (i >= 3 && i <= 6 ? 3 : i) * 1000,
          caller: i < 5 ? 'zed' : ['bob', 'carol', 'bob'][i % 3]!,
          ...(i % 3 === 2 ? { issuer: 'https://other-idp.example' } : {}),
          model: ['claude-sonnet-4-5', 'claude-haiku-4-5'][i % 2]!,
          ...(i % 17 === 0 ? { outcome: 'upstream_error' as const, status: 529 } : {}),
        };
        await store.append(i < 5 ? { records: [requestRecord(x)] } : exchangeBatch(x));
      }
      /** What the admin API computed from the session's newest exchanges, as listExchangesFiltered lists them. */
      const fromExchanges = async (filter: ExchangeFilter, id: string): Promise<RecentExchanges> => {
        const { items } = await store.listExchangesFiltered({ ...filter, session: id, limit: SESSION_RECENT_LIMIT });
        const callers = new Map<string, ExchangeCaller>();
        const outcomes = new Map<string, number>();
        for (const { callerSubject, callerMethod, callerIssuer, outcome } of items) {
          const key = JSON.stringify([callerMethod, callerIssuer, callerSubject]);
          if (!callers.has(key)) callers.set(key, { callerSubject, callerMethod, callerIssuer });
          outcomes.set(outcome ?? 'in_progress', (outcomes.get(outcome ?? 'in_progress') ?? 0) + 1);
        }
        return {
          exchanges: items.length,
          callers: [...callers.values()],
          models: [...new Set(items.flatMap((x) => (x.model === null ? [] : [x.model])))],
          outcomes: Object.fromEntries(outcomes),
        };
      };
      const filters: SessionFilter[] = [
        {},
        { caller: 'bob' },
        { caller: 'bob', callerIssuer: 'https://other-idp.example' },
        { outcome: 'ok' },
        { outcome: 'in_progress' },
        { model: 'claude-haiku-4-5' },
        { since: T0 + 3000, until: T0 + 10_000 + 50 * 1000 },
      ];
      for (const filter of filters) {
        const listed: SessionListItem[] = [];
        let cursor: string | undefined;
        do {
          const page = await store.listSessions({ ...filter, limit: 2, ...(cursor !== undefined ? { cursor } : {}) });
          listed.push(...page.items);
          cursor = page.nextCursor ?? undefined;
        } while (cursor !== undefined);
        expect(listed.length, JSON.stringify(filter)).toBeGreaterThan(0);
        for (const s of listed) {
          const recent = await fromExchanges(filter, s.id);
          expect(s.recent, `${s.id} ${JSON.stringify(filter)}`).toEqual(recent);
          // The same order too (toEqual does not compare the order of an object's keys).
          expect(Object.keys(s.recent.outcomes)).toEqual(Object.keys(recent.outcomes));
        }
      }
      const long = (await store.listSessions()).items.find((s) => s.id === 'ses_long')!;
      expect(long.exchanges).toBe(cut);
      expect(long.recent).toEqual({
        exchanges: SESSION_RECENT_LIMIT,
        // Newest first; zed's exchanges are older than the newest 100.
        callers: [
          { callerSubject: 'bob', callerMethod: 'oidc', callerIssuer: 'https://other-idp.example' },
          { callerSubject: 'carol', callerMethod: 'oidc', callerIssuer: 'https://idp.example' },
          { callerSubject: 'bob', callerMethod: 'oidc', callerIssuer: 'https://idp.example' },
        ],
        models: ['claude-sonnet-4-5-20250929', 'claude-haiku-4-5-20250929'],
        outcomes: { ok: 94, upstream_error: 6 },
      });
    });

    it('searches the search text: words, phrases, prefixes, with highlighted snippets and filters', async () => {
      await fillVaried();
      await store.append({
        records: [],
        searchText: [
          { exchangeId: 'ex_1', text: 'How do I rotate the Xylophone credentials in production?' },
          { exchangeId: 'ex_2', text: 'The deployment of xylophone-service failed with exit code 137.' },
          { exchangeId: 'ex_3', text: 'Résumé of the quarterly sales figures, with a \u0000 NUL in it.' },
        ],
      });
      // The recorder writes the text with the response record, in the same append.
      await store.append({
        ...exchangeBatch({ id: 'ex_7', session: 'ses_d', at: T0 + 7000, caller: 'carol' }),
        searchText: [{ exchangeId: 'ex_7', text: 'Rotate every credential: run `vault rotate --all`.' }],
      });

      const hits = await store.search('xylophone');
      expect(hits.items.map((h) => h.exchangeId)).toEqual(['ex_2', 'ex_1']);
      expect(hits.items[1]).toEqual({
        exchangeId: 'ex_1',
        sessionId: 'ses_a',
        startedAt: T0 + 1000,
        callerSubject: 'alice',
        snippet: expect.stringContaining('«Xylophone»'),
      });
      expect(hits.items[0]!.snippet).toContain('«xylophone»');
      const search = async (q: string, options?: Parameters<AuditStore['search']>[1]): Promise<string[]> =>
        (await store.search(q, options)).items.map((h) => h.exchangeId);
      // Every term must match; case does not matter; a phrase must match in order.
      expect(await search('ROTATE credentials')).toEqual(['ex_1']);
      expect(await search('"rotate the xylophone"')).toEqual(['ex_1']);
      expect(await search('"xylophone rotate"')).toEqual([]);
      expect(await search('rotat*')).toEqual(['ex_7', 'ex_1']);
      expect(await search('quarterly')).toEqual(['ex_3']);
      expect(await search('nothing-like-this')).toEqual([]);
      // Filters apply as in exchange lists.
      expect(await search('xylophone', { filter: { model: 'claude-haiku-4-5' } })).toEqual(['ex_2']);
      expect(await search('rotate', { filter: { caller: 'carol' } })).toEqual(['ex_7']);
      // Pages.
      const first = await store.search('xylophone', { limit: 1 });
      expect(first.items.map((h) => h.exchangeId)).toEqual(['ex_2']);
      const rest = await store.search('xylophone', { limit: 1, cursor: first.nextCursor! });
      expect(rest).toEqual({
        items: [expect.objectContaining({ exchangeId: 'ex_1', snippet: expect.stringContaining('«Xylophone»') })],
        nextCursor: null,
      });
      expect(first.items[0]!.snippet).toContain('deployment');
    });

    it("finds a writer's search text at once from another store, exactly once, and after the writer stopped", async () => {
      await store.append({
        ...exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }),
        searchText: [{ exchangeId: 'ex_1', text: 'the marmalade incident' }],
      });
      const reader = await fixture.open();
      expect((await reader.search('marmalade')).items.map((h) => h.exchangeId)).toEqual(['ex_1']);
      expect((await store.search('marmalade')).items.map((h) => h.exchangeId)).toEqual(['ex_1']);
      await store.append({
        ...exchangeBatch({ id: 'ex_2', session: 'ses_1', at: T0 + 1000 }),
        searchText: [{ exchangeId: 'ex_2', text: 'marmalade, again' }],
      });
      // The writer goes away with that text maybe still waiting to be indexed (SQLite indexes in batches).
      await store.close();
      const later = await fixture.open();
      expect((await later.search('marmalade')).items.map((h) => h.exchangeId)).toEqual(['ex_2', 'ex_1']);
      expect((await reader.search('incident')).items.map((h) => h.exchangeId)).toEqual(['ex_1']);
    });

    it('treats search input as text, never as query syntax', async () => {
      await store.append({
        ...exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }),
        searchText: [{ exchangeId: 'ex_1', text: 'alpha OR beta NOT gamma NEAR delta: (epsilon) "quoted" zeta-eta' }],
      });
      for (const q of [
        '"',
        '""',
        '*',
        'alpha"',
        'alpha OR',
        'NOT gamma',
        'NEAR(alpha beta)',
        'delta:',
        '(epsilon',
        '-zeta',
        "'; DROP TABLE records; --",
        'alpha & !beta | gamma <-> delta',
        '^alpha',
        'text:alpha',
        '{alpha}',
        '\\',
        'alpha*beta',
      ]) {
        await expect(store.search(q), q).resolves.toBeDefined();
      }
      expect((await store.search('alpha OR')).items).toHaveLength(1); // "OR" is a word of the text
      expect((await store.search('alpha OR missing')).items).toHaveLength(0); // not an OR
      expect((await store.search('NOT gamma')).items).toHaveLength(1);
      expect((await store.search('"')).items).toHaveLength(0);
      expect((await store.search('   ')).items).toHaveLength(0);
      expect(await store.verify()).toMatchObject({ ok: true });
    });

    it('lists recording.read records newest first as the access log', async () => {
      await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }));
      const read = (i: number): NewRecord => ({
        kind: 'recording.read',
        at: T0 + 10_000 + i,
        data: {
          actor: { method: 'oidc', subject: `auditor-${i}`, issuer: 'https://idp.example' },
          role: 'auditor',
          what: i % 2 ? 'exchange' : 'session',
          ids: [i % 2 ? 'ex_1' : 'ses_1'],
          address: '127.0.0.1',
        },
      });
      for (let i = 0; i < 5; i++) await store.append({ records: [read(i)] });
      const first = await store.listAccessLog({ limit: 3 });
      expect(first.items.map((e) => e.data.actor.subject)).toEqual(['auditor-4', 'auditor-3', 'auditor-2']);
      expect(first.items[0]).toEqual({ seq: expect.any(Number), at: T0 + 10_004, data: read(4).data });
      const rest = await store.listAccessLog({ limit: 3, cursor: first.nextCursor! });
      expect(rest.items.map((e) => e.data.actor.subject)).toEqual(['auditor-1', 'auditor-0']);
      expect(rest.nextCursor).toBeNull();
      // A read is not part of the session it read.
      expect((await store.sessionRecords('ses_1')).map((r) => r.kind)).toEqual([
        'exchange.request',
        'exchange.events',
        'exchange.response',
      ]);
    });

    it('reads records by chain position', async () => {
      const written = await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }));
      const found = await store.recordsAt([
        { chain: store.chainId, chainSeq: 3 },
        { chain: store.chainId, chainSeq: 99 },
        { chain: 'ch_unknown', chainSeq: 1 },
        { chain: store.chainId, chainSeq: 1 },
      ]);
      expect([...found].sort((a, b) => a.chainSeq - b.chainSeq)).toEqual([written[0], written[2]]);
      expect(await store.recordsAt([])).toEqual([]);
    });

    it.each(['exchange_callers', 'exchange_groups', 'exchange_masking'])(
      'refuses UPDATE and DELETE on %s',
      async (table) => {
        await fillVaried();
        await expect(fixture.sql(`DELETE FROM ${table}`)).rejects.toThrow(/append-only/);
      },
    );
  });

  describe('blobs', () => {
    it('stores each blob once and reads it back byte for byte', async () => {
      const binary = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x5c, 0x27, 0x22, 0, 0x80]);
      const text = blob('[{"role":"user","content":"héllo \\u0000 \u{1f600}"}]');
      const bin = { hash: sha256(binary), data: binary };
      await store.append({
        blobs: [text, bin, text],
        records: [requestRecord({ id: 'ex_1', session: 'ses_1', at: T0, messages: text })],
      });
      // The next turn resends the same conversation: same blob, stored once, still readable.
      await store.append({
        blobs: [text],
        records: [requestRecord({ id: 'ex_2', session: 'ses_1', at: T0 + 1, messages: text })],
      });

      const read = await store.blobs([text.hash, bin.hash, 'f'.repeat(64), text.hash]);
      expect([...read.keys()].sort()).toEqual([text.hash, bin.hash].sort());
      expect(read.get(text.hash)!.equals(text.data)).toBe(true);
      expect(read.get(bin.hash)!.equals(binary)).toBe(true);
      expect(Buffer.isBuffer(read.get(bin.hash))).toBe(true);
      expect(Number((await fixture.sql('SELECT count(*) AS n FROM blobs'))[0]!.n)).toBe(2);
      expect((await store.blobs([])).size).toBe(0);
      expect(await store.verify()).toMatchObject({ ok: true });
    });

    it('takes only the parts of stored bodies for blob references, not JSON a record holds', async () => {
      // Went wrong: a caller made the model call a tool with input {"$blob": "<hash>"}; the store took the response
      // record's message (and the events) for a reference to a blob it does not hold, and refused the write — and
      // with it every record of other callers sharing the group commit.
      const messages = blob('[{"role":"user","content":"call T"}]');
      const decoy = '1'.repeat(64);
      const stored = await store.append(
        toolCallBatch({ id: 'ex_1', session: 'ses_1', at: T0, messages }, { $blob: decoy, nested: [{ $blob: decoy }] }),
      );
      await store.append({ records: [{ kind: 'note', at: T0 + 1, data: { $blob: decoy } }] });
      expect(stored.map((r) => r.kind)).toEqual([
        'chain.opened',
        'exchange.request',
        'exchange.events',
        'exchange.response',
      ]);
      expect(JSON.parse(stored[3]!.data)).toMatchObject({ message: { content: [{ input: { $blob: decoy } }] } });
      expect(await store.verify()).toEqual({ ok: true, chains: 1, records: 5, problems: [] });
      // A stored body's parts still are references: one to a blob the store does not hold is refused.
      const response = responseRecord({ id: 'ex_2', session: 'ses_1', at: T0 + 2 });
      const body = { size: 3, parts: [{ $blob: decoy }] };
      await expect(
        store.append({ records: [{ ...response, data: { ...(response.data as ExchangeResponseData), body } }] }),
      ).rejects.toThrow(/does not hold/);
    });
  });

  describe('append-only', () => {
    it.each(['records', 'blobs', 'exchanges', 'exchange_results'])('refuses UPDATE and DELETE on %s', async (table) => {
      const messages = blob('[{"role":"user","content":"hi"}]');
      await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0, messages }));
      const column = { records: 'kind', blobs: 'hash', exchanges: 'path', exchange_results: 'outcome' }[table]!;
      const before = await fixture.sql(`SELECT * FROM ${table}`);

      await expect(fixture.sql(`UPDATE ${table} SET ${column} = 'x'`)).rejects.toThrow(/append-only/);
      await expect(fixture.sql(`DELETE FROM ${table}`)).rejects.toThrow(/append-only/);

      expect(await fixture.sql(`SELECT * FROM ${table}`)).toEqual(before);
      expect(await store.verify()).toMatchObject({ ok: true });
    });

    // SQLite has no TRUNCATE; PostgreSQL's bypasses row triggers, so it needs its own.
    if (kind === 'postgres') {
      it('migration 15 fills the cache tokens of exchanges recorded before, from their response records', async () => {
        await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }));
        await store.append(
          exchangeBatch({
            id: 'ex_2',
            session: 'ses_1',
            at: T0 + 1,
            cacheWrite: 300,
            cacheWrite1h: 200,
            cacheRead: 1000,
          }),
        );
        const columns =
          'SELECT exchange_id, cache_read_tokens::int AS r, cache_write_tokens::int AS w, cache_write_1h_tokens::int AS h FROM exchange_results ORDER BY 1';
        const now = await fixture.sql(columns);
        expect(now).toEqual([
          { exchange_id: 'ex_1', r: 5, w: 0, h: 0 },
          { exchange_id: 'ex_2', r: 1000, w: 300, h: 200 },
        ]);
        await store.close();
        // As version 14 left them: the columns did not exist.
        await fixture.sql(DROP_CACHE_COLUMNS);
        await fixture.sql('DELETE FROM schema_migrations WHERE version >= 15');
        store = await fixture.open(); // upgrades
        expect(await fixture.sql(columns)).toEqual(now);
        await expect(fixture.sql('UPDATE exchange_results SET cache_read_tokens = 1')).rejects.toThrow(/append-only/);
        expect(await store.verify()).toMatchObject({ ok: true });
      });

      it('migration 13 fills the stop reason of exchanges recorded before, from their response records', async () => {
        await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }));
        await store.append(exchangeBatch({ id: 'ex_2', session: 'ses_1', at: T0 + 1, stopReason: 'refusal' }));
        await store.close();
        // As version 12 left them: no stop reason in the index (the column did not exist).
        await fixture.sql('DROP INDEX exchange_results_stop_reason');
        await fixture.sql('ALTER TABLE exchange_results DROP COLUMN stop_reason');
        await fixture.sql(DROP_CACHE_COLUMNS); // migration 15's, run again with it
        await fixture.sql('DELETE FROM schema_migrations WHERE version >= 13');
        store = await fixture.open(); // upgrades
        const ids = async (stopReason: string) =>
          (await store.listExchangesFiltered({ stopReason })).items.map((x) => x.id);
        expect(await ids('refusal')).toEqual(['ex_2']);
        expect(await ids('end_turn')).toEqual(['ex_1']);
        await expect(fixture.sql("UPDATE exchange_results SET stop_reason = 'x'")).rejects.toThrow(/append-only/);
        expect(await store.verify()).toMatchObject({ ok: true });
      });

      it('refuses TRUNCATE', async () => {
        await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }));
        for (const table of ['records', 'blobs', 'exchanges', 'exchange_results']) {
          await expect(fixture.sql(`TRUNCATE ${table}`)).rejects.toThrow(/append-only/);
        }
        expect(await store.verify()).toMatchObject({ ok: true, records: 4 });
      });

      it('verifies on a connection of its own: a walk leaves the pool to appends', async () => {
        // Went wrong: verify held one of the pool's connections for its whole walk (minutes on a large store); as many
        // verifies as the pool size stalled every append and key lookup.
        const [{ schema }] = (await fixture.sql('SELECT current_schema() AS schema')) as [{ schema: string }];
        // The smallest pool appends work with: one verify holding one of its connections stalled them.
        const one = await PostgresAuditStore.open({ url: POSTGRES_TEST_URL, schema, poolSize: 2 });
        try {
          await one.append({
            records: Array.from({ length: 1100 }, (_, i) => ({ kind: 'note', at: T0 + i, data: {} })),
          });
          let appendedMidWalk = false;
          const report = await one.verify({
            onProgress: async () => {
              await one.append({ records: [{ kind: 'note', at: T0 + 5000, data: { mid: 'walk' } }] });
              appendedMidWalk = true;
            },
          });
          expect(appendedMidWalk).toBe(true);
          expect(report.ok).toBe(true);
        } finally {
          await one.close();
        }
      }, 20_000);

      /**
       * Runs `use` as a fresh login role holding the append-only grants on the fixture's schema (what `vigil store
       * grants` gives gateways): `url` logs in as it, and so will `gateway` once connected. Dropped afterwards.
       */
      async function asGatewayRole(
        use: (role: { schema: string; url: string; gateway: pg.Client }) => Promise<void>,
      ): Promise<void> {
        const [{ schema }] = (await fixture.sql('SELECT current_schema() AS schema')) as [{ schema: string }];
        const role = `vigil_gw_${randomBytes(4).toString('hex')}`;
        await fixture.sql(`CREATE ROLE ${role} LOGIN`);
        const url = new URL(POSTGRES_TEST_URL);
        url.username = role;
        const gateway = new pg.Client({ connectionString: url.href });
        try {
          await fixture.sql(appendOnlyGrantsSql(schema, role));
          await use({ schema, url: url.href, gateway });
        } finally {
          await gateway.end();
          await fixture.sql(`DROP OWNED BY ${role}`);
          await fixture.sql(`DROP ROLE ${role}`);
        }
      }

      it('lets a gateway role with the append-only grants append, and nothing more', async () => {
        await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }));
        await asGatewayRole(async ({ schema, url, gateway }) => {
          // Opening checks migrations without needing CREATE on the database or schema.
          const replica = await PostgresAuditStore.open({ url, schema, poolSize: 2 });
          try {
            await replica.append(exchangeBatch({ id: 'ex_2', session: 'ses_1', at: T0 + 1, messages: blob('hi') }));
            // Key and hold records are the owner's to write (the CLI, run as the owner), and the database indexes them
            // (a trigger); this role reads what they say.
            const { record: key } = await createGatewayKey(
              store,
              { name: 'ci', owner: 'alice', connections: [], createdBy: 'cli:admin' },
              [],
            );
            await revokeGatewayKey(store, 'ci', 'cli:admin');
            const hold = await addHold(store, { session: 'ses_1', reason: 'litigation', by: 'cli:legal' });
            expect(await replica.findGatewayKey(key.hash)).toMatchObject({ name: 'ci', revokedAt: expect.any(Number) });
            expect(await replica.listHolds({ activeOnly: true })).toEqual([
              expect.objectContaining({ id: hold.holdId, session: 'ses_1' }),
            ]);
            // Went wrong: this role could write a key.created (a working key) or a hold.released (sessions purged
            // despite a legal hold) — on its own chain, or on a new well-formed one — and the indexes obeyed.
            const refused = /records are written by the owner of schema .* not by role/;
            await expect(
              createGatewayKey(replica, { name: 'mine', owner: 'mallory', connections: [], createdBy: 'x' }, []),
            ).rejects.toThrow(refused);
            await expect(releaseHold(replica, hold.holdId, { by: 'x', reason: 'x' })).rejects.toThrow(refused);
            await expect(addHold(replica, { session: 'ses_1', reason: 'r', by: 'x' })).rejects.toThrow(refused);
            expect(await replica.listHolds({ activeOnly: true })).toHaveLength(1);
            expect((await replica.listGatewayKeys()).map((k) => k.name)).toEqual(['ci']);
            expect(await replica.verify()).toMatchObject({ ok: true });
          } finally {
            await replica.close();
          }
          await gateway.connect();
          await gateway.query(`SET search_path = ${schema}`);
          for (const attempt of [
            'UPDATE records SET kind = kind',
            'DELETE FROM blobs',
            'TRUNCATE exchanges',
            'ALTER TABLE records DISABLE TRIGGER USER',
            // Went wrong: this role could un-revoke a key, add one no key.created record made, or release a hold.
            'UPDATE gateway_keys SET revoked_at = NULL',
            `INSERT INTO gateway_keys (hash, name, owner, connections, created_at) VALUES ('${'f'.repeat(64)}', 'm', 'x', '{}', 0)`,
            "UPDATE holds SET released_at = 1, released_by = 'x', release_reason = 'x'",
            "INSERT INTO holds (id, reason, created_by, created_at) VALUES ('h', 'r', 'x', 0)",
            // Went wrong: a version inserted by this role made an upgrade skip a migration, or stopped every gateway.
            'INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)',
          ]) {
            await expect(gateway.query(attempt), attempt).rejects.toThrow(/permission denied|must be owner/);
          }
          // A well-formed chain of its own, written by hand, is refused too (before migration 9 it was indexed).
          const forged = JSON.stringify({ hash: 'e'.repeat(64), name: 'x', owner: 'x', connections: [], createdAt: 0 });
          await expect(
            gateway.query(
              `INSERT INTO records (chain, chain_seq, kind, at, data, prev_hash, hash)
               VALUES ('ch_zz_forged', 1, 'key.created', 0, $1, $2, $3)`,
              [forged, '0'.repeat(64), 'e'.repeat(64)],
            ),
          ).rejects.toThrow(/key\.created records are written by the owner of schema/);
        });
      });

      it('lets the gateway role move a delivery cursor only forward, up to its chain’s last record', async () => {
        // Went wrong: the append-only role could write sink_cursors at will — past records a SIEM never received
        // (hiding them from it, and letting retention purge them), or back (sending old events again).
        await store.append({ records: ['a', 'b', 'c'].map((n) => ({ kind: 'note', at: T0, data: { n } })) });
        const chain = store.chainId;
        const head = (await store.chainHeads()).find((h) => h.chain === chain)!.chainSeq;
        await asGatewayRole(async ({ schema, url, gateway }) => {
          const replica = await PostgresAuditStore.open({ url, schema, poolSize: 2 });
          try {
            await replica.setSinkCursor('siem', chain, head - 2);
            await replica.setSinkCursor('siem', chain, head);
            await replica.setSinkCursor('siem', chain, 1); // what a leader that lost its lock may still write
            expect(await replica.sinkCursors('siem')).toEqual(new Map([[chain, head]]));
            const pastHead = /may not move past its chain's last record/;
            await expect(replica.setSinkCursor('siem', chain, head + 1)).rejects.toThrow(pastHead);
            await expect(replica.setSinkCursor('other', chain, head + 1000)).rejects.toThrow(pastHead);
            await expect(replica.setSinkCursor('siem', 'ch_zz_no_records', 1)).rejects.toThrow(pastHead);
          } finally {
            await replica.close();
          }
          await gateway.connect();
          await gateway.query(`SET search_path = ${schema}`);
          for (const [attempt, refused] of [
            ['UPDATE sink_cursors SET chain_seq = 0', /may not move back/],
            [`UPDATE sink_cursors SET chain_seq = ${head + 1}`, /may not move past its chain's last record/],
            [`UPDATE sink_cursors SET chain = 'ch_zz_other'`, /may not move to another sink or chain/],
            [`UPDATE sink_cursors SET sink = 'other'`, /may not move to another sink or chain/],
            ['DELETE FROM sink_cursors', /permission denied/],
          ] as const) {
            await expect(gateway.query(attempt), attempt).rejects.toThrow(refused);
          }
          // A `records` of its own, made longer, is not where the trigger looks for the chain's last record.
          await gateway.query(
            `CREATE TEMP TABLE records AS SELECT '${chain}'::text AS chain, 1000000::bigint AS chain_seq`,
          );
          await gateway.query('SET search_path = pg_temp, ' + schema);
          await expect(gateway.query(`UPDATE sink_cursors SET chain_seq = ${head + 1}`)).rejects.toThrow(
            /may not move past its chain's last record/,
          );
          expect(await store.sinkCursors('siem')).toEqual(new Map([[chain, head]]));
          // The owner (operator tooling) may still put a cursor anywhere: back, to send events again, or forward.
          await fixture.sql(`UPDATE sink_cursors SET chain_seq = 0 WHERE sink = 'siem'`);
          expect(await store.sinkCursors('siem')).toEqual(new Map([[chain, 0]]));
          await fixture.sql(`UPDATE sink_cursors SET chain_seq = ${head + 5} WHERE sink = 'siem'`);
          expect(await store.sinkCursors('siem')).toEqual(new Map([[chain, head + 5]]));
          await fixture.sql(`DELETE FROM sink_cursors WHERE sink = 'siem'`);
          expect(await store.sinkCursors('siem')).toEqual(new Map());
        });
      });

      it('refuses to open a store whose migration table says more than its schema holds', async () => {
        // Someone marked migration 6 done without running it: its trigger keeps the key and hold indexes.
        const [{ schema }] = (await fixture.sql('SELECT current_schema() AS schema')) as [{ schema: string }];
        await fixture.sql('DROP TRIGGER records_index_keys_and_holds ON records');
        await expect(PostgresAuditStore.open({ url: POSTGRES_TEST_URL, schema, poolSize: 2 })).rejects.toThrow(
          /says migration 6 ran, but its trigger records_index_keys_and_holds is missing/,
        );
      });

      /**
       * Runs `use` on a fresh schema migrated as far as `version` (as an older Vigil left it), with a fresh login role
       * `role`, and a connection `old` of the owner's in that schema. Dropped afterwards.
       */
      async function withOldSchema(
        version: number,
        use: (old: { schema: string; role: string; old: pg.Client }) => Promise<void>,
      ): Promise<void> {
        const schema = `vigil_test_old_${randomBytes(4).toString('hex')}`;
        const role = `vigil_gw_${randomBytes(4).toString('hex')}`;
        await fixture.sql(`CREATE ROLE ${role} LOGIN`);
        const old = new pg.Client({ connectionString: POSTGRES_TEST_URL });
        await old.connect();
        try {
          await old.query(`CREATE SCHEMA ${schema}`);
          await old.query(`SET search_path = ${schema}`);
          await old.query('CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)');
          for (const [i, sql] of POSTGRES_MIGRATIONS.slice(0, version).entries()) {
            await old.query(sql);
            await old.query('INSERT INTO schema_migrations VALUES ($1, 0)', [i + 1]);
          }
          await use({ schema, role, old });
        } finally {
          await old.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
          await old.query(`DROP OWNED BY ${role}`);
          await old.query(`DROP ROLE ${role}`);
          await old.end();
        }
      }

      it('lets a gateway role granted before migration 12 append the bases of its requests (blob_ref_bases)', async () => {
        // An upgrade that added blob_ref_bases without granting it would fail a conversation's second request on every
        // gateway whose role had the grants of an older `vigil store grants`, until someone ran the new ones.
        await withOldSchema(11, async ({ schema, role, old }) => {
          // What appendOnlyGrantsSql gave before migration 12.
          await old.query(appendOnlyGrantsSql(schema, role).replaceAll(`, "${schema}".blob_ref_bases`, ''));
          await (await PostgresAuditStore.open({ url: POSTGRES_TEST_URL, schema, poolSize: 1 })).close(); // upgrades

          const url = new URL(POSTGRES_TEST_URL);
          url.username = role;
          const gateway = await PostgresAuditStore.open({ url: url.href, schema, poolSize: 2 });
          try {
            const messages = [blob('[{"role":"user","content":"one"}]'), blob('[{"role":"user","content":"two"}]')];
            for (const t of [1, 2]) {
              const x = { id: `ex_${t}`, session: 'ses_1', at: T0 + t };
              const refs = messages.slice(0, t).map((b) => b.hash);
              await gateway.append({ blobs: messages.slice(0, t), records: [requestReferring(x, refs)] });
            }
          } finally {
            await gateway.close();
          }
          expect((await old.query('SELECT count(*)::int AS n FROM blob_refs')).rows[0]).toEqual({ n: 2 });
          expect((await old.query('SELECT count(*)::int AS n FROM blob_ref_bases')).rows[0]).toEqual({ n: 1 });
        });
      });

      it('takes back, on upgrade, the write grants on the key and hold indexes that older grants gave', async () => {
        // Went wrong: older `vigil store grants` let the gateway role UPDATE and INSERT gateway_keys and holds; a store
        // upgraded without running the new grants must not keep that.
        await withOldSchema(5, async ({ schema, role, old }) => {
          await old.query(`GRANT USAGE ON SCHEMA ${schema} TO ${role}`);
          await old.query(`GRANT SELECT, INSERT, UPDATE (revoked_at) ON gateway_keys TO ${role}`);
          await old.query(
            `GRANT SELECT, INSERT, UPDATE (released_at, released_by, release_reason) ON holds TO ${role}`,
          );
          const may = async (privilege: string): Promise<unknown> =>
            (
              await old.query(
                `SELECT has_any_column_privilege($1, 'gateway_keys', $2) OR has_any_column_privilege($1, 'holds', $2) AS ok`,
                [role, privilege],
              )
            ).rows[0]?.ok;
          expect(await may('UPDATE')).toBe(true);

          const upgraded = await PostgresAuditStore.open({ url: POSTGRES_TEST_URL, schema, poolSize: 1 });
          await upgraded.close();
          expect(await may('UPDATE')).toBe(false);
          expect(await may('INSERT')).toBe(false);
          expect(await may('SELECT')).toBe(true);
        });
      });
    }
  });

  describe('verify', () => {
    const messages = blob('[{"role":"user","content":"What is the capital of France?"}]');

    async function fill(): Promise<StoredRecord[]> {
      const out: StoredRecord[] = [];
      for (let i = 0; i < 3; i++) {
        out.push(
          ...(await store.append(exchangeBatch({ id: `ex_${i}`, session: 'ses_1', at: T0 + i * 1000, messages }))),
        );
      }
      return out; // chain.opened + 3 × (request, events, response): chainSeq 1..10
    }

    it('lets the event loop run while it reads a large store', async () => {
      // Went wrong (SQLite): pages were read through an async generator that never left the microtask queue, so an
      // admin's verify of a large store stalled every call the gateway was serving until it was done.
      for (let b = 0; b < 5; b++) {
        await store.append({
          records: Array.from({ length: 300 }, (_, i) => ({ kind: 'note.bulk', at: T0 + b * 300 + i, data: { i } })),
        });
      }
      let ticks = 0;
      const timer = setInterval(() => ticks++, 0);
      try {
        const report = await store.verify();
        expect(report).toMatchObject({ ok: true, records: 1501 });
        expect(ticks).toBeGreaterThan(0);
      } finally {
        clearInterval(timer);
      }
    });

    it('reports an intact store as ok', async () => {
      await fill();
      const other = await fixture.open();
      await other.append(exchangeBatch({ id: 'ex_x', session: 'ses_2', at: T0 + 5000 }));
      expect(await store.verify()).toEqual({ ok: true, chains: 2, records: 14, problems: [] });
      expect(await other.verify()).toEqual({ ok: true, chains: 2, records: 14, problems: [] });
    });

    it('walks a ledger larger than one page', async () => {
      const records = Array.from({ length: 2500 }, (_, i) => ({ kind: 'note', at: T0 + i, data: { i } }));
      const stored = await store.append({ records });
      expectChained(stored);
      expect(await store.verify()).toEqual({ ok: true, chains: 1, records: 2501, problems: [] });
    });

    it('detects a changed record', async () => {
      await fill();
      await fixture.tamper(
        `UPDATE records SET data = replace(data, '"outcome":"ok"', '"outcome":"upstream_error"') WHERE chain_seq = 7`,
      );
      const report = await store.verify();
      expect(report.ok).toBe(false);
      expect(report.problems).toEqual([
        expect.objectContaining({ problem: 'changed', chain: store.chainId, chainSeq: 7 }),
      ]);
    });

    it('detects a record removed from the middle of a chain', async () => {
      await fill();
      await fixture.tamper('DELETE FROM records WHERE chain_seq = 5');
      const report = await store.verify();
      expect(report).toMatchObject({ ok: false, records: 9 });
      expect(report.problems).toEqual([
        expect.objectContaining({ problem: 'missing', chain: store.chainId, chainSeq: 5 }),
      ]);
    });

    it('detects a removed blob', async () => {
      await fill();
      await fixture.tamper(`DELETE FROM blobs WHERE hash = '${messages.hash}'`);
      const report = await store.verify();
      expect(report.ok).toBe(false);
      // Reported once, at the first record that refers to it.
      expect(report.problems).toEqual([expect.objectContaining({ problem: 'blob_missing', chainSeq: 2 })]);
    });

    it('detects a changed blob', async () => {
      await fill();
      const forged = Buffer.from('[{"role":"user","content":"What is the capital of Spain?"}]');
      await fixture.tamper(`UPDATE blobs SET data = ${fixture.bytes(forged)} WHERE hash = '${messages.hash}'`);
      expect((await store.blobs([messages.hash])).get(messages.hash)!.equals(forged)).toBe(true);
      const report = await store.verify();
      expect(report.ok).toBe(false);
      expect(report.problems).toEqual([expect.objectContaining({ problem: 'blob_changed', chainSeq: 2 })]);
    });

    it('does not take a purge that commits while it walks for tampering', async () => {
      // Went wrong: verify read its pages in separate statements, so a purge committing between two of them removed
      // records on both sides of the page boundary: the walk had seen the first, not the second, nor (yet) the purge
      // record — "no valid purge record removed #1001", which the admin API turns into a verify.failed alert.
      // chain.opened is #1; exchange i has #2i (request) and #2i+1 (response): ex_500 straddles the first page.
      const ids = Array.from({ length: 600 }, (_, i) => i + 1);
      await store.append({
        records: ids.flatMap((i) => [
          requestRecord({ id: `ex_${i}`, session: 'ses_1', at: T0 + i }),
          responseRecord({ id: `ex_${i}`, session: 'ses_1', at: T0 + i }),
        ]),
      });
      await store.append({ records: [{ kind: 'note', at: T0 + DAY, data: {} }] });
      let purged: readonly PurgedRun[] = [];
      const report = await store.verify({
        onProgress: async (n) => {
          if (n !== VERIFY_PAGE) return;
          const done = await store.purgeExchanges(['ex_500'], (removal) => ({
            kind: 'retention.purged',
            at: T0 + DAY,
            data: sealPurge(KEY, removal, { runId: 'r', signedAt: T0 + DAY, cutoffs: {} }),
          }));
          purged = done?.removal.runs ?? [];
        },
      });
      expect(purged).toEqual([expect.objectContaining({ chain: store.chainId, from: 1000, to: 1001 })]);
      // What was there when the walk began, whole.
      expect(report).toEqual({ ok: true, chains: 1, records: 1202, problems: [] });
      // The next walk sees the purge whole: the gap, and the record that covers it.
      expect(await store.verify()).toEqual({ ok: true, chains: 1, records: 1201, problems: [] });
    });

    it('does not take a chain that opens while it walks for a removal', async () => {
      // Went wrong: a chain opening between two of verify's pages committed to the head of an older chain that had
      // grown after the walk passed it: "chain … ends before record #3, which chain … saw when it opened".
      await store.append({ records: [{ kind: 'note', at: T0, data: {} }] });
      await sleep(2); // chain ids sort by creation time: the walk reads `store`'s chain first, then `busy`'s
      const busy = await fixture.open();
      await busy.append({
        records: Array.from({ length: 1500 }, (_, i) => ({ kind: 'note', at: T0 + i, data: { i } })),
      });
      let late: AuditStore | undefined;
      const report = await store.verify({
        onProgress: async (n) => {
          if (n !== VERIFY_PAGE) return;
          await store.append({ records: [{ kind: 'note', at: T0 + 2000, data: {} }] });
          await sleep(2);
          late = await fixture.open();
          await late.append({ records: [{ kind: 'note', at: T0 + 2001, data: {} }] });
        },
      });
      expect([store.chainId, busy.chainId, late!.chainId]).toEqual([store.chainId, busy.chainId, late!.chainId].sort());
      expect(report).toEqual({ ok: true, chains: 2, records: 2 + 1501, problems: [] });
      expect(await store.verify()).toEqual({ ok: true, chains: 3, records: 3 + 1501 + 2, problems: [] });
    });

    it("detects the removal of an older chain's tail", async () => {
      const mine = await fill();
      const other = await fixture.open();
      await other.append(exchangeBatch({ id: 'ex_x', session: 'ses_2', at: T0 + 5000 }));
      // Without the other chain's commitment this would look like a chain that simply ended earlier.
      await fixture.tamper(
        `DELETE FROM records WHERE chain = '${store.chainId}' AND chain_seq = ${mine.at(-1)!.chainSeq}`,
      );
      const report = await other.verify();
      expect(report.ok).toBe(false);
      expect(report.problems).toEqual([
        expect.objectContaining({ problem: 'head_missing', chain: store.chainId, chainSeq: mine.at(-1)!.chainSeq }),
      ]);
    });
  });

  describe('rotating a gateway key', () => {
    const connections = ['anthropic'];
    const HOUR = 3_600_000;
    const ciKey = (at: number, expires?: string) =>
      createGatewayKey(
        store,
        { name: 'ci', owner: 'alice', connections, createdBy: 'cli:admin', expires },
        connections,
        at,
      );

    it('gives the name a new key while the old one works out the overlap, then refuses it; the index matches the ledger', async () => {
      const t0 = Date.now();
      const old = await ciKey(t0, '30d');
      const rotated = await rotateGatewayKey(store, 'ci', { overlap: '1h', rotatedBy: 'cli:admin' }, t0 + 1000);
      expect(rotated.replaced).toEqual({ id: gatewayKeyId(old.record.hash), revokedAt: t0 + 1000 + HOUR });
      // Same name, owner and connections; the same lifetime as the old key was given.
      expect(rotated.record).toMatchObject({ name: 'ci', owner: 'alice', connections, revokedAt: null });
      expect(rotated.record.expiresAt).toBe(t0 + 1000 + 30 * 24 * HOUR);
      const lookup = (hash: string) => store.findGatewayKey(hash);
      // Both work during the overlap, under the one name.
      for (const [key, at] of [
        [old.key, t0 + 2000],
        [rotated.key, t0 + 2000],
        [rotated.key, t0 + 2 * HOUR],
      ] as const) {
        expect((await authenticateGatewayKey(key, lookup, at)).principal).toMatchObject({ subject: 'ci' });
      }
      await expect(authenticateGatewayKey(old.key, lookup, t0 + 1000 + HOUR)).rejects.toThrow(/was revoked at/);
      const listed = await store.listGatewayKeys();
      expect(listed.map((k) => [k.name, keyState(k, t0 + 2000), k.ledgerMismatch])).toEqual([
        ['ci', 'live', []],
        ['ci', 'live', []],
      ]);
      expect(await store.verify()).toMatchObject({ ok: true, problems: [] });
      // Only one key of the name is the live one: it is what a second rotation replaces.
      await expect(
        createGatewayKey(store, { name: 'ci', owner: 'x', connections, createdBy: 'cli:admin' }, connections),
      ).rejects.toThrow(/a live key named "ci" exists/);
    });

    it('a revocation during the overlap revokes both keys at once, and a later one never moves it back', async () => {
      const t0 = Date.now();
      const old = await ciKey(t0);
      const rotated = await rotateGatewayKey(store, 'ci', { overlap: '7d', rotatedBy: 'cli:admin' }, t0);
      const revoked = await revokeGatewayKey(store, 'ci', 'cli:admin', t0 + 5000);
      expect(revoked).toMatchObject({ hash: rotated.record.hash, revokedAt: t0 + 5000 });
      expect(revoked.alsoRevoked).toEqual([gatewayKeyId(old.record.hash)]);
      expect(await store.findGatewayKey(old.record.hash)).toMatchObject({ revokedAt: t0 + 5000 });
      expect(await store.findGatewayKey(rotated.record.hash)).toMatchObject({ revokedAt: t0 + 5000 });
      // A revocation for a later time, written around the CLI, does not bring a revoked key back for a while.
      await store.append({
        records: [
          {
            kind: 'key.revoked',
            at: t0 + 6000,
            data: { name: 'ci', hash: old.record.hash, revokedAt: t0 + 9 * HOUR, revokedBy: 'x' },
          },
        ],
      });
      expect(await store.findGatewayKey(old.record.hash)).toMatchObject({ revokedAt: t0 + 5000 });
      expect(await store.verify()).toMatchObject({ ok: true, problems: [] });
      await expect(revokeGatewayKey(store, 'ci', 'cli:admin', t0 + 7000)).rejects.toThrow(/no live key named "ci"/);
    });

    it('passes on what the ledger says of the key, not what its index row was changed to; refuses a row nobody created', async () => {
      const old = await ciKey(Date.now());
      await fixture.tamper(
        `UPDATE gateway_keys SET connections = ${fixture.kind === 'sqlite' ? "'[]'" : "'{}'"}, owner = 'mallory' WHERE hash = '${old.record.hash}'`,
      );
      const rotated = await rotateGatewayKey(store, 'ci', { rotatedBy: 'cli:admin' });
      expect(rotated.record).toMatchObject({ owner: 'alice', connections });
      const minted = 'e'.repeat(64);
      await fixture.tamper(
        `INSERT INTO gateway_keys (hash, name, owner, connections, created_at) VALUES ('${minted}', 'mallory', 'x', ${fixture.kind === 'sqlite' ? "'[]'" : "'{}'"}, 0)`,
      );
      await expect(rotateGatewayKey(store, 'mallory', { rotatedBy: 'cli:admin' })).rejects.toThrow(
        /key "mallory" is refused as authentication has it/,
      );
    });

    it('a rotation that read the keys before another one wrote writes nothing, and says why', async () => {
      await ciKey(Date.now());
      // What a second `keys rotate` read just before the first one appended (another process, another gateway).
      const before = await store.listGatewayKeys();
      await rotateGatewayKey(store, 'ci', { rotatedBy: 'a' });
      const stale = new Proxy(store, {
        get: (target, p) =>
          p === 'listGatewayKeys'
            ? async () => before
            : ((v: unknown) => (typeof v === 'function' ? v.bind(target) : v))(Reflect.get(target, p)),
      });
      await expect(rotateGatewayKey(stale, 'ci', { rotatedBy: 'b' })).rejects.toThrow(
        /a live key named "ci" was created meanwhile \(another create or rotate\): nothing was written/,
      );
      expect((await store.listGatewayKeys()).filter((k) => k.name === 'ci')).toHaveLength(2);
      expect(await store.verify()).toMatchObject({ ok: true, problems: [] });
    });

    it('an overlap of 0 revokes the old key now; a key without expiry gives one without expiry', async () => {
      const t0 = Date.now();
      const old = await ciKey(t0);
      const rotated = await rotateGatewayKey(store, 'ci', { overlap: '0', rotatedBy: 'cli:admin' }, t0 + 10);
      expect(rotated.record.expiresAt).toBeNull();
      await expect(authenticateGatewayKey(old.key, (h) => store.findGatewayKey(h), t0 + 10)).rejects.toThrow(
        /was revoked at/,
      );
      await expect(rotateGatewayKey(store, 'ci', { overlap: '31d', rotatedBy: 'x' })).rejects.toThrow(
        /longer than 30d/,
      );
      await expect(rotateGatewayKey(store, 'ci', { overlap: 'soon', rotatedBy: 'x' })).rejects.toThrow(
        /invalid overlap "soon"/,
      );
      await expect(rotateGatewayKey(store, 'cd', { rotatedBy: 'x' })).rejects.toThrow(/no live key named "cd"/);
    });
  });

  describe('the key and hold indexes against the ledger', () => {
    // Went wrong: gateway_keys and holds decide who may call and what retention may purge, but nothing compared them
    // with the key and hold records: an UPDATE or INSERT on them (PostgreSQL's append-only gateway role could do
    // both) un-revoked a key, minted one, or released a legal hold, and verify --public-key still passed.
    const connections = ['anthropic'];

    it('catches a revoked key made live again in the index', async () => {
      const { record } = await createGatewayKey(
        store,
        { name: 'ci', owner: 'alice', connections, createdBy: 'cli:admin' },
        connections,
      );
      await revokeGatewayKey(store, 'ci', 'cli:admin');
      expect(await store.verify()).toMatchObject({ ok: true });

      await fixture.tamper(`UPDATE gateway_keys SET revoked_at = NULL`);
      const report = await store.verify();
      expect(report.ok).toBe(false);
      expect(report.problems).toEqual([
        expect.objectContaining({
          problem: 'index_changed',
          chain: store.chainId,
          chainSeq: 3, // the key.revoked record
          detail: expect.stringMatching(
            new RegExp(`gateway key "ci" \\(${gatewayKeyId(record.hash)}\\) .*revokedAt: index null, ledger \\d+`),
          ),
        }),
      ]);
    });

    it('catches a key row that no key.created record made, and a key whose connections were widened', async () => {
      const { record } = await createGatewayKey(
        store,
        { name: 'ci', owner: 'alice', connections, createdBy: 'cli:admin' },
        connections,
      );
      const minted = 'f'.repeat(64);
      await fixture.tamper(
        `INSERT INTO gateway_keys (hash, name, owner, connections, created_at) VALUES ('${minted}', 'mallory', 'x', ${fixture.kind === 'sqlite' ? "'[]'" : "'{}'"}, 0)`,
      );
      await fixture.tamper(
        `UPDATE gateway_keys SET connections = ${fixture.kind === 'sqlite' ? "'[]'" : "'{}'"} WHERE hash = '${record.hash}'`,
      );
      const report = await store.verify();
      expect(report.ok).toBe(false);
      expect(report.problems).toHaveLength(2);
      expect(report.problems).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            problem: 'index_changed',
            chain: '',
            chainSeq: null,
            detail: expect.stringContaining(
              `gateway key "mallory" (${gatewayKeyId(minted)}) is in the gateway_keys index, but no key.created record made it`,
            ),
          }),
          expect.objectContaining({
            problem: 'index_changed',
            chainSeq: 2,
            detail: expect.stringContaining('connections: index [], ledger ["anthropic"]'),
          }),
        ]),
      );
    });

    it('finds a key only as the ledger has it: not un-revoked, minted or widened in the index alone', async () => {
      // Went wrong: authentication read gateway_keys alone, so a key un-revoked or minted there was let in.
      const create = (name: string) =>
        createGatewayKey(store, { name, owner: 'alice', connections, createdBy: 'cli:admin' }, connections);
      const live = (k: StoredGatewayKey): StoredGatewayKey => {
        const { hash, name, owner, connections, createdAt, expiresAt } = k;
        return { hash, name, owner, connections, createdAt, expiresAt, revokedAt: null };
      };
      const { record: ci } = await create('ci');
      const { record: laptop } = await create('laptop');
      await revokeGatewayKey(store, 'ci', 'cli:admin');
      // Looked up once, so what the ledger says is cached before the index is changed.
      expect(await store.findGatewayKey(ci.hash)).toMatchObject({ name: 'ci', revokedAt: expect.any(Number) });
      expect(await store.findGatewayKey(laptop.hash)).toEqual(live(laptop));

      const minted = 'f'.repeat(64);
      const list = fixture.kind === 'sqlite' ? "'[]'" : "'{}'";
      await fixture.tamper(`UPDATE gateway_keys SET revoked_at = NULL WHERE hash = '${ci.hash}'`);
      await fixture.tamper(
        `UPDATE gateway_keys SET connections = ${list}, expires_at = NULL WHERE hash = '${laptop.hash}'`,
      );
      await fixture.tamper(
        `INSERT INTO gateway_keys (hash, name, owner, connections, created_at) VALUES ('${minted}', 'mallory', 'x', ${list}, 0)`,
      );

      expect(await store.findGatewayKey(ci.hash)).toMatchObject({ name: 'ci', revokedAt: expect.any(Number) });
      expect(await store.findGatewayKey(laptop.hash)).toEqual(live(laptop));
      expect(await store.findGatewayKey(minted)).toBeUndefined();
      // Another process's key records are seen at once (the cache follows the ledger), the index tamper still not.
      const other = await fixture.open();
      const { record: later } = await createGatewayKey(
        other,
        { name: 'later', owner: 'bob', connections, createdBy: 'cli:admin' },
        connections,
      );
      expect(await store.findGatewayKey(later.hash)).toEqual(live(later));
      await revokeGatewayKey(other, 'laptop', 'cli:admin');
      expect(await store.findGatewayKey(laptop.hash)).toMatchObject({ revokedAt: expect.any(Number) });
      expect(await store.findGatewayKey(ci.hash)).toMatchObject({ revokedAt: expect.any(Number) });
      expect(await store.findGatewayKey(minted)).toBeUndefined();
    });

    it('catches a hold released in the index without a hold.released record', async () => {
      const hold = await addHold(store, { session: 'ses_1', reason: 'litigation', by: 'cli:legal' }, T0);
      await fixture.tamper(`UPDATE holds SET released_at = 1, released_by = 'x', release_reason = 'case closed'`);
      const report = await store.verify();
      expect(report.ok).toBe(false);
      expect(report.problems).toEqual([
        expect.objectContaining({
          problem: 'index_changed',
          chain: store.chainId,
          chainSeq: 2,
          detail: expect.stringContaining(
            `hold ${hold.holdId} (session ses_1) in the holds index differs from its records`,
          ),
        }),
      ]);
      expect(report.problems[0]!.detail).toContain('releasedAt: index 1, ledger null');
    });

    it('lists keys as authentication has them, and says where the index disagrees with the ledger', async () => {
      // Went wrong: `vigil keys list` showed the gateway_keys index alone, so a key un-revoked or minted there was
      // listed live — though authentication, which follows the ledger, refuses it — and nothing said the index was off.
      const create = (name: string) =>
        createGatewayKey(store, { name, owner: 'alice', connections, createdBy: 'cli:admin' }, connections);
      const { record: ci } = await create('ci');
      const { record: laptop } = await create('laptop');
      const { record: gone } = await create('gone');
      const { record: fine } = await create('fine');
      await revokeGatewayKey(store, 'ci', 'cli:admin');
      expect((await store.listGatewayKeys()).map((k) => k.ledgerMismatch)).toEqual([[], [], [], []]);

      const minted = 'f'.repeat(64);
      const list = fixture.kind === 'sqlite' ? "'[]'" : "'{}'";
      await fixture.tamper(`UPDATE gateway_keys SET revoked_at = NULL WHERE hash = '${ci.hash}'`);
      await fixture.tamper(`UPDATE gateway_keys SET connections = ${list} WHERE hash = '${laptop.hash}'`);
      await fixture.tamper(
        `INSERT INTO gateway_keys (hash, name, owner, connections, created_at) VALUES ('${minted}', 'mallory', 'x', ${list}, ${T0})`,
      );
      await fixture.tamper(`DELETE FROM gateway_keys WHERE hash = '${gone.hash}'`);

      const keys = new Map((await store.listGatewayKeys()).map((k) => [k.name, k]));
      expect([...keys.keys()].sort()).toEqual(['ci', 'fine', 'gone', 'laptop', 'mallory']);
      expect(keys.get('ci')).toMatchObject({
        revokedAt: expect.any(Number),
        index: expect.objectContaining({ revokedAt: null }),
        inLedger: true,
        ledgerMismatch: [
          expect.stringMatching(/^gateway key "ci" .*revokedAt: index null, ledger \d+: the index was changed$/),
        ],
      });
      expect(keys.get('laptop')).toMatchObject({
        connections: ['anthropic'],
        index: expect.objectContaining({ connections: [] }),
        ledgerMismatch: [expect.stringContaining('connections: index [], ledger ["anthropic"]')],
      });
      expect(keys.get('mallory')).toMatchObject({
        hash: minted,
        revokedAt: null,
        index: expect.objectContaining({ name: 'mallory' }),
        inLedger: false,
        ledgerMismatch: [expect.stringContaining('is in the gateway_keys index, but no key.created record made it')],
      });
      expect(keys.get('gone')).toMatchObject({
        hash: gone.hash,
        revokedAt: null,
        index: null,
        inLedger: true,
        ledgerMismatch: [expect.stringContaining('is missing from the gateway_keys index')],
      });
      const { hash, name, owner, createdAt, expiresAt } = fine;
      const stored: StoredGatewayKey = {
        hash,
        name,
        owner,
        connections: fine.connections,
        createdAt,
        expiresAt,
        revokedAt: null,
      };
      expect(keys.get('fine')).toEqual({ ...stored, index: stored, inLedger: true, ledgerMismatch: [] });
      // The same keys verify reports, in the same words.
      const report = await store.verify();
      expect(report.problems.map((p) => p.detail).sort()).toEqual(
        [...keys.values()].flatMap((k) => k.ledgerMismatch).sort(),
      );
    });

    it('lists holds as purges have them: a hold released in the index alone is still active', async () => {
      // Went wrong: `vigil holds list` showed the holds index alone, so a hold released there without a record was
      // listed released, though every purge still keeps its exchanges.
      const held = await addHold(store, { session: 'ses_1', reason: 'litigation', by: 'cli:legal' }, T0);
      const done = await addHold(store, { caller: 'bob', reason: 'audit', by: 'cli:legal' }, T0 + 1);
      await releaseHold(store, done.holdId, { reason: 'closed', by: 'cli:legal' }, T0 + 2);
      await fixture.tamper(
        `UPDATE holds SET released_at = 1, released_by = 'x', release_reason = 'case closed' WHERE id = '${held.holdId}'`,
      );
      await fixture.tamper(
        `INSERT INTO holds (id, session_id, reason, created_by, created_at) VALUES ('hold_forged', 'ses_9', 'r', 'x', ${T0 + 3})`,
      );

      const active = await store.listHolds({ activeOnly: true });
      expect(active.map((h) => h.id)).toEqual(['hold_forged', held.holdId]);
      expect(active[0]).toMatchObject({
        inLedger: false,
        ledgerMismatch: [expect.stringContaining('is in the holds index, but no hold.added record made it')],
      });
      expect(active[1]).toMatchObject({
        session: 'ses_1',
        releasedAt: null,
        releasedBy: null,
        releaseReason: null,
        index: expect.objectContaining({ releasedAt: 1, releaseReason: 'case closed' }),
        inLedger: true,
        ledgerMismatch: [expect.stringContaining('releasedAt: index 1, ledger null')],
      });
      expect((await store.listHolds()).find((h) => h.id === done.holdId)).toMatchObject({
        releasedAt: T0 + 2,
        releasedBy: 'cli:legal',
        ledgerMismatch: [],
      });

      // Active as the listing says, so it can be released — by a record, which the ledger then has too.
      await releaseHold(store, held.holdId, { reason: 'case closed', by: 'cli:legal' }, T0 + 4);
      expect((await store.listHolds()).find((h) => h.id === held.holdId)).toMatchObject({
        releasedAt: T0 + 4,
        releaseReason: 'case closed',
      });
      expect((await store.listHolds({ activeOnly: true })).map((h) => h.id)).toEqual(['hold_forged']);
    });
  });

  describe('following the ledger', () => {
    it('lists chain heads and reads a chain after a position', async () => {
      const other = await fixture.open();
      await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }));
      await other.append({ records: [{ kind: 'note', at: T0, data: { n: 1 } }] });
      const heads = new Map((await store.chainHeads()).map((h) => [h.chain, h.chainSeq]));
      expect(heads).toEqual(
        new Map([
          [store.chainId, 4],
          [other.chainId, 2],
        ]),
      );
      const tail = await store.chainRecords(store.chainId, 2, 10);
      expect(tail.map((r) => [r.chainSeq, r.kind])).toEqual([
        [3, 'exchange.events'],
        [4, 'exchange.response'],
      ]);
      expect(await store.chainRecords(store.chainId, 1, 1)).toHaveLength(1);
    });

    if (kind === 'postgres') {
      it('tells other processes of an approval record once it commits, and never of one rolled back', async () => {
        const other = await fixture.open();
        const heard: string[] = [];
        other.onAppended!('approval.held', () => heard.push('held'));
        other.onAppended!('approval.decided', () => heard.push('decided'));
        const x = { id: 'ex_1', session: 'ses_1', at: T0 };
        await store.append({ records: [requestRecord(x)] });
        // Refused as a whole: a second request record for the exchange.
        await expect(
          store.append({ records: [{ kind: 'approval.held', at: T0, data: { id: 'a1' } }, requestRecord(x)] }),
        ).rejects.toThrow();
        await store.append({ records: [{ kind: 'approval.decided', at: T0 + 1, data: { id: 'a1' } }] });
        // Notifications arrive in commit order: one of the refused batch would have come first.
        await until('the decision heard', () => (heard.length ? true : undefined));
        await sleep(100);
        expect(heard).toEqual(['decided']);
        // In a batch written in several statements too.
        const blobs = Array.from({ length: 1500 }, (_, i) => blob(`piece ${i}`));
        await store.append({ blobs, records: [{ kind: 'approval.held', at: T0 + 2, data: { id: 'a2' } }] });
        await until('the hold heard', () => (heard.length > 1 ? true : undefined));
        expect(heard).toEqual(['decided', 'held']);
      });
    }

    it('finds records of given kinds since a time, in append order', async () => {
      await store.append({ records: [{ kind: 'approval.held', at: T0, data: { id: 'a1' } }] });
      await store.append({ records: [{ kind: 'note', at: T0 + 5, data: {} }] });
      await store.append({ records: [{ kind: 'approval.decided', at: T0 + 10, data: { id: 'a1' } }] });
      const found = await store.recordsOfKinds(['approval.held', 'approval.decided'], T0, 10);
      expect(found.map((r) => r.kind)).toEqual(['approval.held', 'approval.decided']);
      expect((await store.recordsOfKinds(['approval.decided'], T0 + 11, 10)).length).toBe(0);
      expect(await store.recordsOfKinds([], T0, 10)).toEqual([]);
    });

    it('keeps a delivery cursor per sink and chain', async () => {
      expect(await store.sinkCursors('siem')).toEqual(new Map());
      await store.setSinkCursor('siem', 'ch_a', 3);
      await store.setSinkCursor('siem', 'ch_a', 7);
      await store.setSinkCursor('siem', 'ch_b', 1);
      await store.setSinkCursor('other', 'ch_a', 2);
      expect(await store.sinkCursors('siem')).toEqual(
        new Map([
          ['ch_a', 7],
          ['ch_b', 1],
        ]),
      );
    });

    it('never moves a delivery cursor back', async () => {
      // Went wrong: a leader that had lost its lock, confirming a batch late, wrote its older position over the one
      // the new leader had reached, and everything in between was sent again.
      await store.setSinkCursor('siem', 'ch_a', 7);
      await store.setSinkCursor('siem', 'ch_a', 3);
      expect(await store.sinkCursors('siem')).toEqual(new Map([['ch_a', 7]]));
    });

    it('knows its own chain is live', async () => {
      await store.append({ records: [{ kind: 'note', at: T0, data: {} }] });
      expect(await store.chainIsLive(store.chainId)).toBe(true);
      expect(await store.tryLeadership('outbox:siem')).toBe(true);
      expect(await store.tryLeadership('outbox:siem')).toBe(true);
      expect(await store.holdsLeadership('outbox:siem')).toBe(true);
    });

    if (kind === 'postgres') {
      it('sees another writer as live while it runs, and as gone once it stops; one leader at a time', async () => {
        const other = await fixture.open();
        await other.append({ records: [{ kind: 'note', at: T0, data: {} }] });
        expect(await store.chainIsLive(other.chainId)).toBe(true);
        expect(await store.tryLeadership('outbox:x')).toBe(true);
        expect(await other.tryLeadership('outbox:x')).toBe(false);
        expect(await store.holdsLeadership('outbox:x')).toBe(true);
        expect(await other.holdsLeadership('outbox:x')).toBe(false);
        expect(await store.holdsLeadership('outbox:never-taken')).toBe(false);
        await other.close();
        expect(await store.chainIsLive(other.chainId)).toBe(false);
        const third = await fixture.open();
        expect(await third.tryLeadership('outbox:x')).toBe(false);
        await store.close();
        expect(await third.tryLeadership('outbox:x')).toBe(true);
      });

      it('steps down when its lock session ends, lets another take over, and takes its chain lock again', async () => {
        // Went wrong: the leadership was remembered, not checked: a leader whose session was gone went on leading
        // alongside the one that took the lock over (and the lost connection's 'error' went unhandled).
        const other = await fixture.open();
        expect(await store.tryLeadership('outbox:x')).toBe(true);
        // Told at once, not at its next check: a job can call off what it handed over and has not yet sent.
        let told = 0;
        store.onLeadershipLost!(() => told++);
        const [lock] = await fixture.sql(
          `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND classid = ${0x56474c32}::int4::oid AND objid = hashtext('outbox:x')::oid AND objsubid = 2`,
        );
        await fixture.sql(`SELECT pg_terminate_backend(${lock!.pid as number})`);
        await until('the lock session to end', async () =>
          (await fixture.sql(`SELECT 1 FROM pg_stat_activity WHERE pid = ${lock!.pid as number}`)).length === 0
            ? true
            : undefined,
        );
        await until('the loss told', () => (told > 0 ? true : undefined));
        expect(await store.holdsLeadership('outbox:x')).toBe(false);
        expect(told).toBe(1);
        expect(await other.tryLeadership('outbox:x')).toBe(true);
        expect(await store.tryLeadership('outbox:x')).toBe(false);
        // It connects again and retakes its chain's lock, so other processes still see it as running.
        await until('the chain lock taken again', async () =>
          (
            await fixture.sql(
              `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = ${0x56474c31}::int4::oid
               AND objid = hashtext('${store.chainId}')::oid`,
            )
          ).length === 1
            ? true
            : undefined,
        );
        expect(await other.chainIsLive(store.chainId)).toBe(true);
        await store.append({ records: [{ kind: 'note', at: T0, data: {} }] });
        expect((await store.verify()).ok).toBe(true);
      });
    } else {
      it('treats every other chain as stopped (one gateway per SQLite file)', async () => {
        const other = await fixture.open();
        await other.append({ records: [{ kind: 'note', at: T0, data: {} }] });
        expect(await store.chainIsLive(other.chainId)).toBe(false);
      });
    }
  });

  describe('several writers', () => {
    it('opens several stores on a new database at once', async () => {
      const fresh = await createStoreFixture(kind);
      try {
        const stores = await Promise.all([fresh.open(), fresh.open(), fresh.open()]);
        await Promise.all(stores.map((s, i) => s.append({ records: [{ kind: 'note', at: T0, data: { i } }] })));
        expect(await stores[0]!.verify()).toMatchObject({ ok: true, chains: 3, records: 6 });
      } finally {
        await fresh.dispose();
      }
    });

    it('interleaves two chains appending concurrently into a store that verifies', async () => {
      const other = await fixture.open();
      const writes: Array<Promise<readonly StoredRecord[]>> = [];
      for (let i = 0; i < 25; i++) {
        writes.push(
          store.append(exchangeBatch({ id: `ex_a${i}`, session: 'ses_a', at: T0 + i, messages: blob(`a${i % 3}`) })),
        );
        writes.push(
          other.append(exchangeBatch({ id: `ex_b${i}`, session: 'ses_b', at: T0 + i, messages: blob(`a${i % 4}`) })),
        );
      }
      const results = await Promise.all(writes);

      for (const s of [store, other]) {
        const chain = results.flat().filter((r) => r.chain === s.chainId);
        expect(chain).toHaveLength(1 + 25 * 3);
        expectChained(chain);
      }
      expect(await store.verify()).toEqual({ ok: true, chains: 2, records: 152, problems: [] });
      expect((await store.listSessions()).items.map((s) => [s.id, s.exchanges])).toEqual([
        ['ses_b', 25],
        ['ses_a', 25],
      ]);
      expect(await store.unfinishedExchanges()).toEqual([]);
    });
    it('appends a record several writers would each append once, when they append it if new at the same moment', async () => {
      // What two gateways alerting about the same overdue chain rely on: each reads what the others appended first.
      const writers = [store, await fixture.open(), await fixture.open()];
      const once = (s: AuditStore, name: string) =>
        s.appendIfNew(['claim'], T0, (existing) =>
          existing.some((r) => (JSON.parse(r.data) as { name: string }).name === name)
            ? []
            : [{ kind: 'claim', at: T0 + 1, data: { name } }],
        );
      const results = await Promise.all(writers.flatMap((s) => ['a', 'b'].map((n) => once(s, n))));
      // (A writer's first append opens its chain: its chain.opened record is among what it appended.)
      const claims = results.flat().filter((r) => r.kind === 'claim');
      expect(claims.map((r) => r.data).sort()).toEqual(['{"name":"a"}', '{"name":"b"}']);
      expect((await store.recordsOfKinds(['claim'], 0, 10)).map((r) => r.data).sort()).toEqual([
        '{"name":"a"}',
        '{"name":"b"}',
      ]);
      // Records from before `since` are not read: the builder is told only of those at or after it.
      expect(await once(store, 'a')).toEqual([]);
      const later = await store.appendIfNew(['claim'], T0 + 2, (existing) =>
        existing.length ? [] : [{ kind: 'claim', at: T0 + 3, data: {} }],
      );
      expect(later.filter((r) => r.kind === 'claim')).toHaveLength(1);
      expect(await store.verify()).toMatchObject({ ok: true, problems: [] });
    });
  });

  describe('retention, holds and signed digests', () => {
    const NOW = T0 + 100 * DAY;
    const keep30d: RetentionPolicy = { windows: { anthropic: 30 * DAY }, defaultWindow: null, batch: 2, sinks: [] };
    const shared = blob('[{"role":"user","content":"a prefix every turn resends"}]');
    const onlyOld = blob('[{"role":"user","content":"said once, long ago"}]');
    const withKey = { publicKeys: [KEY.publicKey] };

    /** chain.opened, then: ex_old1 #2-4, ex_old2 #5-7, ex_held #8-10, ex_carol #11-13, two holds #14-15, ex_new #16-18, a digest #19. */
    async function history(): Promise<void> {
      await store.append(exchangeBatch({ id: 'ex_old1', session: 'ses_old', at: T0, messages: shared }));
      await store.append({
        ...exchangeBatch({ id: 'ex_old2', session: 'ses_old', at: T0 + 1000, messages: onlyOld }),
        searchText: [{ exchangeId: 'ex_old2', text: 'zanzibar itinerary' }],
      });
      await store.append(exchangeBatch({ id: 'ex_held', session: 'ses_held', at: T0 + 2000 }));
      await store.append(exchangeBatch({ id: 'ex_carol', session: 'ses_c', caller: 'carol', at: T0 + 3000 }));
      await addHold(store, { session: 'ses_held', reason: 'litigation 2025-17', by: 'cli:legal' }, T0 + 4000);
      await addHold(store, { caller: 'carol', reason: 'investigation', by: 'cli:legal' }, T0 + 4000);
      await store.append(exchangeBatch({ id: 'ex_new', session: 'ses_new', at: NOW - DAY, messages: shared }));
      // What places holds (the CLI) signs its chain before it exits: #19.
      await new Digester(store, KEY, { intervalMs: 0 }).close();
    }

    it('purges what is past the window, keeps held exchanges and blobs still referenced, and verifies', async () => {
      await history();
      const dry = await runRetention(store, keep30d, KEY, { now: NOW, dryRun: true });
      expect(dry).toMatchObject({ dryRun: true, exchanges: 2, records: 6, byConnection: { anthropic: 2 } });
      expect(await store.exchangeRecords('ex_old1')).toHaveLength(3);

      const result = await runRetention(store, keep30d, KEY, { now: NOW, pauseMs: 0 });
      expect(result).toMatchObject({
        exchanges: 2,
        records: 6,
        blobs: 1,
        batches: 1,
        timeRange: { from: T0, to: T0 + 1200 },
      });

      expect(await store.exchangeRecords('ex_old1')).toEqual([]);
      expect(await store.listExchanges('ses_old')).toEqual([]);
      expect((await store.search('zanzibar')).items).toEqual([]);
      expect((await store.listExchanges('ses_held')).map((x) => x.id)).toEqual(['ex_held']);
      expect((await store.listExchanges('ses_c')).map((x) => x.id)).toEqual(['ex_carol']);
      const left = await store.blobs([shared.hash, onlyOld.hash]);
      expect([...left.keys()]).toEqual([shared.hash]);

      const [purge] = await store.recordsOfKinds(['retention.purged'], 0, 10);
      const data = JSON.parse(purge!.data) as RetentionPurgedData;
      expect(data).toMatchObject({
        exchanges: 2,
        records: 6,
        blobs: 1,
        removed: [{ chain: store.chainId, from: 2, to: 7 }],
        keyId: KEY.keyId,
      });
      expect(data.heads).toContainEqual(expect.objectContaining({ chain: store.chainId, chainSeq: 19 }));

      expect(await store.verify()).toEqual({ ok: true, chains: 1, records: 14, problems: [] });
      expect(await store.verify(withKey)).toMatchObject({ ok: true, signatures: { purges: 1, digests: 1 } });
      const other = await fixture.open();
      expect(await other.verify(withKey)).toMatchObject({ ok: true });
    });

    it('waits until every SIEM sink has received an exchange’s records before purging it', async () => {
      // Went wrong: a SIEM down for longer than a retention window lost those exchanges' events for good.
      await history();
      const withSinks: RetentionPolicy = { ...keep30d, sinks: ['siem-a', 'siem-b'] };
      // siem-a has everything up to ex_old1 (#2-4); siem-b has nothing yet.
      await store.setSinkCursor('siem-a', store.chainId, 4);
      expect(await runRetention(store, withSinks, KEY, { now: NOW, pauseMs: 0 })).toMatchObject({ exchanges: 0 });
      await store.setSinkCursor('siem-b', store.chainId, 7);
      expect(await runRetention(store, withSinks, KEY, { now: NOW, pauseMs: 0 })).toMatchObject({ exchanges: 1 });
      expect(await store.exchangeRecords('ex_old1')).toEqual([]);
      expect(await store.exchangeRecords('ex_old2')).toHaveLength(3); // siem-a has not received it yet
      await store.setSinkCursor('siem-a', store.chainId, 7);
      expect(await runRetention(store, withSinks, KEY, { now: NOW, pauseMs: 0 })).toMatchObject({ exchanges: 1 });
      expect(await store.exchangeRecords('ex_old2')).toEqual([]);
      expect(await store.verify()).toMatchObject({ ok: true });
    });

    it('finds what is due past a long run of held exchanges, in ended-at then id order, a page at a time', async () => {
      // The PostgreSQL store tests the first due exchanges on its own, then (when too many of them are kept) the rest
      // in one statement: it used to test every due exchange in one, and took 1–2 s at 20k exchanges. Each page must
      // be what that statement found, across the seam and across exchanges that ended at the same instant.
      const kept = Array.from({ length: 150 }, (_, i) =>
        exchangeBatch({ id: `ex_a${String(i).padStart(3, '0')}`, session: 'ses_kept', at: T0 }),
      );
      await store.append({ records: kept.flatMap((b) => b.records) });
      for (const id of ['ex_0', 'ex_b1', 'ex_b2', 'ex_b3'])
        await store.append(exchangeBatch({ id, session: 'ses_free', at: T0 }));
      await store.append(exchangeBatch({ id: 'ex_c', session: 'ses_free', at: T0 + 1000 }));
      await store.append(exchangeBatch({ id: 'ex_new', session: 'ses_new', at: NOW - DAY }));
      await addHold(store, { session: 'ses_kept', reason: 'litigation 2025-17', by: 'cli:legal' }, T0 + 4000);

      const pages: string[][] = [];
      let after: RetentionQuery['after'];
      for (;;) {
        const page = await store.retentionCandidates(retentionQuery(keep30d, NOW, after, 3)!);
        if (page.length === 0) break;
        pages.push(page.map((c) => c.id));
        after = { endedAt: page.at(-1)!.endedAt, id: page.at(-1)!.id };
      }
      expect(pages).toEqual([
        ['ex_0', 'ex_b1', 'ex_b2'],
        ['ex_b3', 'ex_c'],
      ]);
      const [first] = await store.retentionCandidates(retentionQuery(keep30d, NOW, undefined, 1)!);
      expect(first).toEqual({
        id: 'ex_0',
        sessionId: 'ses_free',
        connection: 'anthropic',
        callerSubject: 'alice',
        startedAt: T0,
        endedAt: T0 + 200,
        records: 3,
      });
    });

    it('a caller hold by e-mail keeps that caller’s exchanges, whatever their subject and the e-mail’s case', async () => {
      // Went wrong: holds matched the subject only, which for OIDC callers is an opaque id (Okta, Entra, Google), so
      // the README's `holds add --caller alice@example.com` protected nothing and retention purged the evidence.
      await store.append(
        exchangeBatch({ id: 'ex_dave', session: 'ses_d', caller: '0oa1b2c3d4', email: 'Dave@Example.com', at: T0 }),
      );
      await store.append(
        exchangeBatch({ id: 'ex_erin', session: 'ses_e', caller: 'erin', email: 'erin@x.io', at: T0 }),
      );
      await addHold(store, { caller: 'dave@example.com', reason: 'HR investigation', by: 'cli:legal' }, T0 + 1);
      expect(await runRetention(store, keep30d, KEY, { now: NOW, pauseMs: 0 })).toMatchObject({ exchanges: 1 });
      expect((await store.listExchanges('ses_d')).map((x) => x.id)).toEqual(['ex_dave']);
      expect(await store.listExchanges('ses_e')).toEqual([]);
    });

    it('a dry run counts what the run purges when a hold’s e-mail differs in the case of non-ASCII letters', async () => {
      // Went wrong: the dry run took the candidate query's word, whose SQL lower() folds ASCII only on SQLite, so it
      // counted ÉMILE@example.com's exchange as purgeable while the run (checking holds in JavaScript) kept it.
      const at = (id: string, session: string, caller: string, email: string, n: number) =>
        exchangeBatch({ id, session, caller, email, at: T0 + n * 1000 });
      await store.append(at('ex_a', 'ses_a', 'ann', 'ann@example.com', 0));
      await store.append(at('ex_emile', 'ses_e', '0oa9emile', 'émile@example.com', 1));
      await store.append(at('ex_b', 'ses_b', 'bea', 'bea@example.com', 2));
      await store.append(at('ex_c', 'ses_c', 'cy', 'cy@example.com', 3));
      await store.append(at('ex_tail', 'ses_t', 'tod', 'tod@example.com', 4));
      await addHold(store, { caller: 'ÉMILE@example.com', reason: 'HR investigation', by: 'cli:legal' }, T0 + 5000);

      const dry = await runRetention(store, keep30d, KEY, { now: NOW, dryRun: true });
      expect(dry).toMatchObject({ exchanges: 4, records: 12, byConnection: { anthropic: 4 } });
      const run = await runRetention(store, keep30d, KEY, { now: NOW, pauseMs: 0 });
      expect(run).toMatchObject({ exchanges: dry.exchanges, records: dry.records, byConnection: dry.byConnection });
      expect((await store.listExchanges('ses_e')).map((x) => x.id)).toEqual(['ex_emile']);
    });

    it('leaves out of a batch what a hold covers by an e-mail in another case of non-ASCII letters', async () => {
      // Went wrong: the candidate query folded case with SQL lower() — ASCII letters only on SQLite (and on PostgreSQL
      // under the C locale), and not as JavaScript does elsewhere — while a purge's last check folds in JavaScript:
      // held exchanges were taken as candidates, filled the batch and were then skipped, so it removed less than it
      // should, and the dry run's batches were not the run's.
      await expectNonAsciiHoldsLeftOut(store);
    });

    it('keeps held exchanges when their hold was released in the index alone, without a hold.released record', async () => {
      // Went wrong: a purge read only the holds index, so an UPDATE there released a legal hold without a record, and
      // the next retention run purged the held session under a valid signed purge record.
      await history();
      await fixture.tamper(`UPDATE holds SET released_at = 1, released_by = 'x', release_reason = 'case closed'`);
      // Listed active as the ledger has them, and left out of a dry run's count (which counted them before).
      expect(await store.listHolds({ activeOnly: true })).toHaveLength(2);
      expect(await runRetention(store, keep30d, KEY, { now: NOW, dryRun: true })).toMatchObject({ exchanges: 2 });

      expect(await runRetention(store, keep30d, KEY, { now: NOW, pauseMs: 0 })).toMatchObject({ exchanges: 2 });
      expect(await store.exchangeRecords('ex_old1')).toEqual([]);
      expect((await store.listExchanges('ses_held')).map((x) => x.id)).toEqual(['ex_held']);
      expect((await store.listExchanges('ses_c')).map((x) => x.id)).toEqual(['ex_carol']);
      const report = await store.verify();
      expect(report.problems.map((p) => p.problem)).toEqual(['index_changed', 'index_changed']);
    });

    it('takes held exchanges once the hold is released, and verifies across the joined gap', async () => {
      await history();
      await runRetention(store, keep30d, KEY, { now: NOW, pauseMs: 0 });
      const [hold] = await store
        .listHolds({ activeOnly: true })
        .then((hs) => hs.filter((h) => h.session === 'ses_held'));
      // Released as the CLI does: a writer of its own, which signs its chain before it exits.
      const cli = await fixture.open();
      await releaseHold(cli, hold!.id, { reason: 'case closed', by: 'cli:legal' });
      await new Digester(cli, KEY, { intervalMs: 0 }).close();
      expect((await store.listHolds({ activeOnly: true })).map((h) => h.caller)).toEqual(['carol']);

      expect(await runRetention(store, keep30d, KEY, { now: NOW, pauseMs: 0 })).toMatchObject({
        exchanges: 1,
        records: 3,
      });
      expect(await store.listExchanges('ses_held')).toEqual([]);
      expect(await store.listExchanges('ses_c')).toHaveLength(1);
      // Positions 2..10 are gone, removed by two purges: the gap passes because together they cover it exactly.
      expect(await store.verify(withKey)).toMatchObject({ ok: true, problems: [], signatures: { purges: 2 } });
    });

    it('purges in batches of at most retention.batch, each sealed; a run cut between two verifies, the next ends it', async () => {
      for (let i = 0; i < 30; i++) {
        await store.append(exchangeBatch({ id: `ex_${i}`, session: `ses_${i % 4}`, at: T0 + i, messages: shared }));
      }
      await store.append(exchangeBatch({ id: 'ex_new', session: 'ses_new', at: NOW - DAY }));
      const policy = { ...keep30d, batch: 4 };
      // A gateway shutting down stops its run after the batch in progress, as a crash between two batches would.
      const stop = new AbortController();
      let batches = 0;
      const cut = await runRetention(store, policy, KEY, {
        now: NOW,
        pauseMs: 0,
        signal: stop.signal,
        onBatch: () => ++batches === 3 && stop.abort(),
      });
      expect(cut.batches).toBe(3);
      expect(cut.exchanges).toBeGreaterThanOrEqual(3);
      expect(cut.exchanges).toBeLessThanOrEqual(12); // batches are sized by time, at most 4 here
      expect(await store.verify(withKey)).toMatchObject({ ok: true, problems: [], signatures: { purges: 3 } });

      const rest = await runRetention(store, policy, KEY, { now: NOW, pauseMs: 0 });
      expect(rest.exchanges).toBe(30 - cut.exchanges);
      expect(rest.batches).toBeGreaterThanOrEqual(rest.exchanges / 4);
      expect((await store.listSessions()).items.map((x) => x.id)).toEqual(['ses_new']);
      expect(await store.verify(withKey)).toMatchObject({
        ok: true,
        problems: [],
        signatures: { purges: 3 + rest.batches },
      });
    });

    it('catches a manual deletion made after a purge, even next to the purged gap', async () => {
      await history();
      await runRetention(store, keep30d, KEY, { now: NOW, pauseMs: 0 });
      await fixture.tamper(`DELETE FROM records WHERE chain = '${store.chainId}' AND chain_seq = 8`);
      const report = await store.verify();
      expect(report.ok).toBe(false);
      expect(report.problems).toEqual([
        expect.objectContaining({ problem: 'missing', chain: store.chainId, chainSeq: 8 }),
      ]);
    });

    it('keeps the head of every chain, so chains stay anchored', async () => {
      await store.append(exchangeBatch({ id: 'ex_last', session: 'ses_1', at: T0 }));
      expect(await runRetention(store, keep30d, KEY, { now: NOW })).toMatchObject({ exchanges: 0 });
      expect(await store.exchangeRecords('ex_last')).toHaveLength(3);
    });

    it('keeps what the kept turns of a conversation refer to, and removes what only its purged turns did', async () => {
      // Each request of a conversation resends the ones before it, and the SQLite store indexes only what a request
      // adds to the one before (ref-bases.ts). Purging the early turns must keep every blob a later turn refers to —
      // though only an early turn's rows named it — and remove what no kept turn refers to: here a message the
      // conversation dropped (compacted away) after turn 2.
      const messages = Array.from({ length: 7 }, (_, i) => blob(`[{"role":"user","content":"turn ${i}"}]`));
      const dropped = blob('[{"role":"user","content":"compacted away after turn 2"}]');
      const turn = (t: number, at: number): WriteBatch => {
        const x = { id: `ex_${t}`, session: 'ses_long', at };
        const refs = [...messages.slice(0, t + 1).map((b) => b.hash), ...(t <= 2 ? [dropped.hash] : [])];
        return {
          blobs: [messages[t]!, ...(t === 0 ? [dropped] : [])],
          records: [requestReferring(x, refs), eventsRecord(x), responseRecord(x)],
        };
      };
      for (let t = 0; t < 4; t++) await store.append(turn(t, T0 + t * 1000)); // past the window
      for (let t = 4; t < 7; t++) await store.append(turn(t, NOW - DAY + t * 1000));

      expect(await runRetention(store, keep30d, KEY, { now: NOW, pauseMs: 0 })).toMatchObject({
        exchanges: 4,
        blobs: 1,
      });
      expect((await store.blobs([dropped.hash])).size).toBe(0);
      const kept = await store.blobs(messages.map((b) => b.hash));
      expect([...kept.keys()].sort()).toEqual(messages.map((b) => b.hash).sort());
      expect(await store.verify(withKey)).toMatchObject({ ok: true, problems: [] });

      // Its last turns are purged in turn (another session's exchange keeps the head of the chain): nothing is left.
      await store.append(exchangeBatch({ id: 'ex_other', session: 'ses_other', at: NOW + 39 * DAY }));
      expect(await runRetention(store, keep30d, KEY, { now: NOW + 40 * DAY, pauseMs: 0 })).toMatchObject({
        exchanges: 3,
        blobs: messages.length,
      });
      expect((await store.blobs(messages.map((b) => b.hash))).size).toBe(0);
      expect(await count(fixture, 'blob_refs')).toBe(0);
      expect(await store.verify(withKey)).toMatchObject({ ok: true, problems: [] });
    });

    it('indexes only what a request adds to its base, and all of it where it has none still stored', async () => {
      // Went wrong (PostgreSQL): every request of a conversation got a blob_refs row for each piece it resent, so a
      // long session's append wrote hundreds of rows, O(n²) over the session. A request leaves to its base (the last
      // request of its conversation this writer committed, still stored) the references that one has (ref-bases.ts).
      const messages = Array.from({ length: 6 }, (_, i) => blob(`[{"role":"user","content":"turn ${i}"}]`));
      const turn = (t: number, at: number, extra: readonly string[] = []): WriteBatch => {
        const x = { id: `ex_${t}`, session: 'ses_long', at };
        const refs = [...messages.slice(0, t + 1).map((b) => b.hash), ...extra];
        // Every message of the conversation, as the recorder writes again what retention removed.
        return {
          blobs: messages.slice(0, t + 1),
          records: [requestReferring(x, refs), eventsRecord(x), responseRecord(x)],
        };
      };
      const rowsOf = async (id: string): Promise<number> =>
        Number(
          (
            await fixture.sql(
              `SELECT count(*) AS n FROM blob_refs WHERE record_seq =
                 (SELECT seq FROM records WHERE exchange_id = '${id}' AND kind = 'exchange.request')`,
            )
          )[0]!.n,
        );
      const bases = async (): Promise<Array<Record<string, unknown>>> =>
        fixture.sql(
          `SELECT r.exchange_id AS record, b.exchange_id AS base FROM blob_ref_bases x
           JOIN records r ON r.seq = x.record_seq JOIN records b ON b.seq = x.base_seq ORDER BY r.seq`,
        );

      await store.append(turn(0, T0));
      await store.append(turn(1, T0 + 1000));
      expect([await rowsOf('ex_0'), await rowsOf('ex_1')]).toEqual([1, 1]);
      // Rolled back (a blob it refers to is missing): no base for the next.
      await expect(store.append(turn(9, T0 + 1500, ['f'.repeat(64)]))).rejects.toThrow(/does not hold/);
      // Another writer (another gateway: a chain of its own) knows no base for the conversation: all of them.
      const other = await fixture.open();
      await other.append(turn(2, T0 + 2000));
      expect(await rowsOf('ex_2')).toBe(3);
      // This writer's base is its own last request of the conversation: 2 and 3 are what ex_1 lacks.
      await store.append(turn(3, T0 + 3000));
      expect(await rowsOf('ex_3')).toBe(2);
      expect(await bases()).toEqual([
        { record: 'ex_1', base: 'ex_0' },
        { record: 'ex_3', base: 'ex_1' },
      ]);

      // The base is purged (by another process, on PostgreSQL, as likely as by this one): the next request has none.
      await store.append(exchangeBatch({ id: 'ex_a', session: 'ses_a', at: NOW - DAY }));
      await other.append(exchangeBatch({ id: 'ex_b', session: 'ses_b', at: NOW - DAY }));
      expect(await runRetention(store, keep30d, KEY, { now: NOW, pauseMs: 0 })).toMatchObject({
        exchanges: 4,
        blobs: 4,
      });
      expect(await bases()).toEqual([]);
      await store.append(turn(4, NOW));
      expect(await rowsOf('ex_4')).toBe(5);
      await store.append(turn(5, NOW + 1000));
      expect(await rowsOf('ex_5')).toBe(1);
      expect(await bases()).toEqual([{ record: 'ex_5', base: 'ex_4' }]);
      expect(await store.verify(withKey)).toMatchObject({ ok: true, problems: [] });
    });

    it('removes a blob that only JSON in a kept record names, and verifies', async () => {
      // Went wrong: JSON a record held (a tool's input a caller chose) was taken for a reference to the blob it named,
      // which then outlived retention, and was reported missing by verify if removed.
      const named = blob('[{"role":"user","content":"said once, long ago"}]');
      await store.append(exchangeBatch({ id: 'ex_old', session: 'ses_old', at: T0, messages: named }));
      await store.append(toolCallBatch({ id: 'ex_new', session: 'ses_new', at: NOW - DAY }, { $blob: named.hash }));
      expect(await runRetention(store, keep30d, KEY, { now: NOW, pauseMs: 0 })).toMatchObject({
        exchanges: 1,
        blobs: 1,
      });
      expect((await store.blobs([named.hash])).size).toBe(0);
      expect(await store.exchangeRecords('ex_new')).toHaveLength(3);
      expect(await store.verify(withKey)).toMatchObject({ ok: true, problems: [] });
    });

    it('removes the index rows an earlier version made of JSON that looked like a blob reference', async () => {
      // Earlier versions (and the migrations that filled blob_refs in) indexed any {"$blob": …} in a record. A purge
      // removes those rows too: left behind by a removed record, one would keep its blob for ever.
      const named = blob('[{"role":"user","content":"said once, long ago"}]');
      await store.append(exchangeBatch({ id: 'ex_a', session: 'ses_old', at: T0, messages: named }));
      const b = await store.append(
        toolCallBatch({ id: 'ex_b', session: 'ses_old', at: T0 + 1000 }, { $blob: named.hash }),
      );
      const seq = b.find((r) => r.kind === 'exchange.response')!.seq;
      await fixture.sql(
        fixture.kind === 'sqlite'
          ? `INSERT INTO blob_refs (blob_id, record_seq) SELECT id, ${seq} FROM blobs WHERE hash = '${named.hash}'`
          : `INSERT INTO blob_refs (blob_hash, record_seq) VALUES ('${named.hash}', ${seq})`,
      );
      await store.append(exchangeBatch({ id: 'ex_new', session: 'ses_new', at: NOW - DAY }));
      expect(await runRetention(store, keep30d, KEY, { now: NOW, pauseMs: 0 })).toMatchObject({
        exchanges: 2,
        blobs: 1,
      });
      expect((await store.blobs([named.hash])).size).toBe(0);
      expect(await fixture.sql('SELECT * FROM blob_refs')).toEqual([]);
      expect(await store.verify(withKey)).toMatchObject({ ok: true, problems: [] });
    });

    it('refuses a record that refers to a blob retention removed', async () => {
      await history();
      await runRetention(store, keep30d, KEY, { now: NOW, pauseMs: 0 });
      const again = exchangeBatch({ id: 'ex_resumed', session: 'ses_old', at: NOW, messages: onlyOld });
      await expect(store.append({ records: again.records })).rejects.toThrow(/does not hold/);
      await store.append(again); // with the blob written again
      expect(await store.verify()).toMatchObject({ ok: true });
    });

    it('fails verify with the public key when a purge record is forged', async () => {
      await history();
      const doomed = await store.exchangeRecords('ex_held');
      await fixture.tamper(`DELETE FROM records WHERE exchange_id = 'ex_held'`);
      const attacker = await fixture.open();
      const removal = {
        exchanges: ['ex_held'],
        records: 3,
        blobs: 0,
        runs: purgedRuns(doomed),
        timeRange: { from: T0 + 2000, to: T0 + 2200 },
        heads: [],
      };
      await attacker.append({
        records: [
          {
            kind: 'retention.purged',
            at: NOW,
            data: sealPurge(FORGER, removal, { runId: 'r', signedAt: NOW, cutoffs: {} }),
          },
        ],
      });
      // Hashes alone cannot tell a forged purge record from a real one…
      expect(await store.verify()).toMatchObject({ ok: true });
      // …the signature can.
      const report = await store.verify(withKey);
      expect(report.ok).toBe(false);
      expect(report.problems.map((p) => p.problem).sort()).toEqual(['missing', 'signature_invalid']);
    });

    it('signs digests of each segment, linked to the previous one, with an unsigned tail after the last', async () => {
      const digester = new Digester(store, KEY, { intervalMs: 0 });
      expect(await digester.digestNow()).toBeUndefined(); // no chain yet
      await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }));
      const first = await digester.digestNow();
      expect(await digester.digestNow()).toBeUndefined(); // nothing new
      await store.append(exchangeBatch({ id: 'ex_2', session: 'ses_1', at: T0 + 1000 }));
      const second = await digester.digestNow();
      await store.append({ records: [{ kind: 'note', at: T0 + 2000, data: {} }] });

      const d1 = JSON.parse(first!.data) as DigestSignedData;
      const d2 = JSON.parse(second!.data) as DigestSignedData;
      expect(first!.chainSeq).toBe(5);
      expect(d1).toMatchObject({
        chain: store.chainId,
        fromSeq: 1,
        toSeq: 4,
        headHash: first!.prevHash,
        previousSignature: null,
      });
      expect(d2).toMatchObject({ fromSeq: 5, toSeq: 8, previousSignature: d1.signature, keyId: KEY.keyId });
      expect(await store.verify(withKey)).toEqual({
        ok: true,
        chains: 1,
        records: 10,
        problems: [],
        signatures: {
          keys: [KEY.keyId],
          digests: 2,
          purges: 0,
          unsignedTails: [{ chain: store.chainId, fromSeq: 10, toSeq: 10 }],
        },
      });
      // The same store checked with someone else's public key: every digest is refused.
      const foreign = await store.verify({ publicKeys: [FORGER.publicKey] });
      expect(foreign.problems.map((p) => p.problem)).toEqual(['signature_invalid', 'signature_invalid']);
    });

    it("catches the tail of a chain cut after the newest chain opened, through another chain's later digest", async () => {
      // Went wrong: only chain.opened committed to other chains' heads, so what a chain gained after the newest chain
      // opened — its digests included — could be cut off, and verify passed, with the public key too.
      const other = await fixture.open(); // another replica, or a CLI command: opens now, seeing ex_1 only
      await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }));
      await other.append({ records: [{ kind: 'note', at: T0, data: {} }] });
      const mine = new Digester(store, KEY, { intervalMs: 0 });
      const theirs = new Digester(other, KEY, { intervalMs: 0 });
      await mine.digestNow();
      await store.append(exchangeBatch({ id: 'ex_2', session: 'ses_1', at: T0 + 1000 }));
      await mine.digestNow(); // #9: signs #5..#8, and is the tail that gets cut
      await other.append({ records: [{ kind: 'note', at: T0 + 2000, data: {} }] });
      const signed = await theirs.digestNow();
      expect((JSON.parse(signed!.data) as DigestSignedData).heads).toEqual([
        { chain: store.chainId, chainSeq: 9, hash: (await store.chainRecords(store.chainId, 8, 1))[0]!.hash },
      ]);
      // Heads that did not move since its previous digest are not signed for again.
      await other.append({ records: [{ kind: 'note', at: T0 + 3000, data: {} }] });
      expect((JSON.parse((await theirs.digestNow())!.data) as DigestSignedData).heads).toEqual([]);
      expect(await store.verify(withKey)).toMatchObject({ ok: true });

      await fixture.tamper(`DELETE FROM records WHERE chain = '${store.chainId}' AND chain_seq > 5`);
      await fixture.tamper(`DELETE FROM exchange_results WHERE exchange_id = 'ex_2'`);
      await fixture.tamper(`DELETE FROM exchanges WHERE id = 'ex_2'`);
      const report = await store.verify(withKey);
      expect(report.ok).toBe(false);
      expect(report.problems).toEqual([
        expect.objectContaining({
          problem: 'head_missing',
          chain: store.chainId,
          chainSeq: 9,
          detail: expect.stringContaining(`which digest ${other.chainId}#${signed!.chainSeq} signed for`),
        }),
      ]);
    });

    it('catches the newest records cut off with their digest, given the digest as an anchor from outside', async () => {
      // Went wrong (and still does without an anchor): nothing in the store commits to the newest records of the
      // chain written last, so they could be cut off with the digests that signed them and verify passed.
      await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }));
      const digester = new Digester(store, KEY, { intervalMs: 0 });
      await digester.digestNow();
      await store.append(exchangeBatch({ id: 'ex_2', session: 'ses_1', at: T0 + 1000 }));
      const last = (await digester.digestNow())!; // what the SIEM received as a ledger.digest event
      const anchors = [{ chain: last.chain, chainSeq: last.chainSeq, hash: last.hash }];
      expect(await store.verify({ ...withKey, anchors })).toMatchObject({ ok: true });

      await fixture.tamper(`DELETE FROM records WHERE chain = '${store.chainId}' AND chain_seq > 5`);
      expect(await store.verify(withKey)).toMatchObject({ ok: true }); // what the store alone can tell
      const report = await store.verify({ ...withKey, anchors });
      expect(report.ok).toBe(false);
      expect(report.problems).toEqual([
        expect.objectContaining({
          problem: 'head_missing',
          chain: store.chainId,
          chainSeq: last.chainSeq,
          detail: expect.stringContaining('which the anchor given names: records were removed'),
        }),
      ]);
    });

    it('still verifies digests signed before digests carried heads', async () => {
      await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }));
      await store.appendAtTip((tip) => ({
        kind: 'digest.signed',
        at: T0 + 1,
        data: KEY.sign({
          chain: store.chainId,
          fromSeq: 1,
          toSeq: tip!.chainSeq,
          headHash: tip!.hash,
          previousSignature: null,
          signedAt: T0 + 1,
        }),
      }));
      expect(await store.verify(withKey)).toMatchObject({ ok: true, problems: [], signatures: { digests: 1 } });
    });

    it('catches a rewrite that recomputes every later hash, with the public key', async () => {
      await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }));
      await store.append(exchangeBatch({ id: 'ex_2', session: 'ses_1', at: T0 + 1000 }));
      await new Digester(store, KEY, { intervalMs: 0 }).digestNow();

      // The attacker changes ex_1's outcome, then rehashes the chain from there on, digest included.
      const chain = [...(await store.chainRecords(store.chainId, 0, 100))];
      let prev = chain[2]!.prevHash;
      const updates: string[] = [];
      for (const r of chain.slice(2)) {
        let data = r.data;
        if (r.chainSeq === 4) data = data.replace('"outcome":"ok"', '"outcome":"upstream_error"');
        if (r.kind === 'digest.signed') data = JSON.stringify({ ...(JSON.parse(data) as object), headHash: prev });
        const hash = recordHash(prev, { ...r, data });
        updates.push(
          `UPDATE records SET data = '${data.replaceAll("'", "''")}', prev_hash = '${prev}', hash = '${hash}' ` +
            `WHERE chain = '${r.chain}' AND chain_seq = ${r.chainSeq}`,
        );
        prev = hash;
      }
      await fixture.tamper(updates.join(';\n'));

      expect(await store.verify()).toMatchObject({ ok: true }); // every hash checks out
      const report = await store.verify(withKey);
      expect(report.ok).toBe(false);
      expect(report.problems).toEqual([expect.objectContaining({ problem: 'signature_invalid', chainSeq: 8 })]);
    });
  });
  describe('digests overdue', () => {
    // Went wrong: the newest records of a chain after its last digest were covered by nothing until the next digest,
    // and nothing told a writer that stopped signing (a stuck or tampered gateway, failing digest writes) from one
    // that simply had nothing new: verify passed and no alert was raised however long its records went unsigned.
    const MIN = 60_000;

    it("finds each chain's records after its own last digest, as verify does, and verify reports those that went on too long", async () => {
      const base = Date.now();
      // A writer that signed, then went on recording for ten minutes without signing again: #4..#5.
      await store.append({ records: [{ kind: 'note', at: base, data: { n: 1 } }] });
      const digester = new Digester(store, KEY, { intervalMs: 0 });
      const digest = (await digester.digestNow(base + 1))!;
      await store.append({ records: [{ kind: 'note', at: base + 2000, data: { n: 2 } }] });
      await store.append({ records: [{ kind: 'note', at: base + 10 * MIN, data: { n: 3 } }] });
      // One with no digest at all, whose records span no time; and one that stopped cleanly, on a final digest —
      // signed after the others' records, so it names their heads: another chain's digest does not count.
      const unsigned = await fixture.open();
      await unsigned.append({ records: [{ kind: 'recording.read', at: base, data: {} }] });
      const clean = await fixture.open();
      await clean.append({ records: [{ kind: 'note', at: base, data: {} }] });
      await new Digester(clean, KEY, { intervalMs: 0 }).close();

      const opened = (await unsigned.chainRecords(unsigned.chainId, 0, 1))[0]!;
      const late = {
        chain: store.chainId,
        lastDigest: { chainSeq: digest.chainSeq, at: base + 1 },
        from: { chainSeq: 4, at: base + 2000 },
        to: { chainSeq: 5, at: base + 10 * MIN },
      };
      const tails = await store.undigestedTails();
      expect(tails).toEqual(
        [
          late,
          {
            chain: unsigned.chainId,
            lastDigest: null,
            from: { chainSeq: 1, at: opened.at },
            to: { chainSeq: 2, at: base },
          },
        ].sort((a, b) => (a.chain < b.chain ? -1 : 1)),
      );

      const report = await store.verify({ digestsOverdueAfterMs: 3 * MIN });
      expect(report).toMatchObject({ ok: true, problems: [] });
      expect(report.digestsOverdue).toEqual([{ ...late, undigestedMs: 10 * MIN - 2000 }]);
      expect(await store.verify({ digestsOverdueAfterMs: 10 * MIN })).toMatchObject({ digestsOverdue: [] });
      expect(await store.verify()).not.toHaveProperty('digestsOverdue');

      // Signed at last: nothing is undigested any more.
      await digester.digestNow(base + 10 * MIN + 1);
      expect((await store.undigestedTails()).map((t) => t.chain)).toEqual([unsigned.chainId]);
      expect(await store.verify({ digestsOverdueAfterMs: 3 * MIN })).toMatchObject({ ok: true, digestsOverdue: [] });
    });

    it('starts a tail at the oldest record left after the last digest', async () => {
      const base = Date.now();
      await store.append({ records: [{ kind: 'note', at: base, data: {} }] });
      await new Digester(store, KEY, { intervalMs: 0 }).digestNow(base + 1); // #3
      for (const n of [4, 5, 6]) await store.append({ records: [{ kind: 'note', at: base + n, data: { n } }] });
      // Removed (as retention removes an exchange's records): the tail starts at the next one that is there.
      await fixture.tamper(`DELETE FROM records WHERE chain = '${store.chainId}' AND chain_seq = 4`);
      expect(await store.undigestedTails()).toEqual([
        {
          chain: store.chainId,
          lastDigest: { chainSeq: 3, at: base + 1 },
          from: { chainSeq: 5, at: base + 5 },
          to: { chainSeq: 6, at: base + 6 },
        },
      ]);
    });
  });

  describe('key and hold records appended without the signing key', () => {
    // Went wrong: PostgreSQL's append-only gateway role appended a well-formed one-record chain holding a key.created
    // (or a record at chain_seq 0): the database indexed it, authentication took the key, and verify --public-key
    // passed with only an "unsigned tail" for that chain.
    const withKey = { publicKeys: [KEY.publicKey] };
    const forgedKey = {
      hash: 'e'.repeat(64),
      name: 'nightly-2',
      owner: 'ops',
      connections: [],
      createdAt: T0,
      expiresAt: null,
      createdBy: 'cli:ops',
    };
    /** A key.created record for `forgedKey` on a chain of its own, as the gateway role could append it. */
    const forged = { chain: 'ch_zz_forged', kind: 'key.created', data: forgedKey };

    /** A record linked as a writer would, inserted with plain SQL; `raw` runs it (as the gateway role could). */
    async function insert(
      raw: (text: string) => Promise<unknown>,
      r: { chain: string; chainSeq: number; prevHash: string; kind: string; data: unknown },
    ): Promise<string> {
      const input = { ...r, exchangeId: null, sessionId: null, at: T0, data: JSON.stringify(r.data) };
      const hash = recordHash(r.prevHash, input);
      const q = (v: string): string => `'${v.replaceAll("'", "''")}'`;
      await raw(
        `INSERT INTO records (chain, chain_seq, kind, exchange_id, session_id, at, data, prev_hash, hash) VALUES ` +
          `(${q(r.chain)}, ${r.chainSeq}, ${q(r.kind)}, NULL, NULL, ${T0}, ${q(input.data)}, ${q(r.prevHash)}, ${q(hash)})`,
      );
      return hash;
    }
    /** On PostgreSQL the triggers stay on (what the gateway role meets); SQLite has no roles to stop anyone. */
    const raw = (text: string): Promise<unknown> => (kind === 'postgres' ? fixture.sql(text) : fixture.tamper(text));

    it('verify --public-key fails on a key.created in a well-formed chain no signed digest covers', async () => {
      // Legitimate key records are covered: their writer signs its chain before it exits.
      await createGatewayKey(store, { name: 'ci', owner: 'alice', connections: [], createdBy: 'cli:admin' }, []);
      await new Digester(store, KEY, { intervalMs: 0 }).close();
      expect(await store.verify(withKey)).toMatchObject({ ok: true });

      await insert(raw, { ...forged, chainSeq: 1, prevHash: GENESIS_HASH });
      const report = await store.verify(withKey);
      expect(report.ok).toBe(false);
      expect(report.problems).toContainEqual(
        expect.objectContaining({ problem: 'index_unsigned', chain: 'ch_zz_forged', chainSeq: 1 }),
      );
      // A digest signed with another key covers nothing either.
      const other = await fixture.open();
      await createGatewayKey(other, { name: 'cd', owner: 'bob', connections: [], createdBy: 'cli:admin' }, []);
      await new Digester(other, FORGER, { intervalMs: 0 }).close();
      expect((await store.verify(withKey)).problems).toContainEqual(
        expect.objectContaining({ problem: 'index_unsigned', chain: other.chainId, chainSeq: 2 }),
      );
    });

    it('does not take a key record at chain_seq 0 for a key', async () => {
      if (kind === 'postgres') {
        // The database refuses it, and any record that does not continue its chain.
        await expect(insert(raw, { ...forged, chainSeq: 0, prevHash: GENESIS_HASH })).rejects.toThrow(
          /does not continue its chain/,
        );
        await expect(insert(raw, { ...forged, chainSeq: 2, prevHash: GENESIS_HASH })).rejects.toThrow(
          /does not continue its chain/,
        );
        await expect(insert(raw, { ...forged, chainSeq: 1, prevHash: 'a'.repeat(64) })).rejects.toThrow(
          /does not continue its chain/,
        );
        // The store's own appends, several rows in one statement, go in.
        await store.append(exchangeBatch({ id: 'ex_1', session: 'ses_1', at: T0 }));
        expect(await store.verify()).toMatchObject({ ok: true, records: 4 });
        const [head] = (await fixture.sql(
          `SELECT chain_seq, hash FROM records WHERE chain = '${store.chainId}' ORDER BY chain_seq DESC LIMIT 1`,
        )) as [{ chain_seq: number | string; hash: string }];
        const next = {
          chain: store.chainId,
          chainSeq: Number(head.chain_seq) + 1,
          kind: 'key.created',
          data: forgedKey,
        };
        await expect(insert(raw, { ...next, prevHash: GENESIS_HASH })).rejects.toThrow(/does not continue its chain/);
        await expect(insert(raw, { ...next, chainSeq: next.chainSeq + 1, prevHash: head.hash })).rejects.toThrow(
          /does not continue its chain/,
        );
        // The owner can still switch the triggers off: the replay does not take the record's word.
      }
      await fixture.tamper(
        `INSERT INTO records (chain, chain_seq, kind, exchange_id, session_id, at, data, prev_hash, hash) VALUES ` +
          `('ch_zz_forged', 0, 'key.created', NULL, NULL, ${T0}, '${JSON.stringify(forgedKey)}', '${GENESIS_HASH}', '${'0'.repeat(64)}')`,
      );
      await fixture.tamper(
        `INSERT INTO gateway_keys (hash, name, owner, connections, created_at) VALUES ('${forgedKey.hash}', 'nightly-2', 'ops', ${kind === 'sqlite' ? "'[]'" : "'{}'"}, ${T0})`,
      );
      expect(await store.findGatewayKey(forgedKey.hash)).toBeUndefined();
    });
  });
});

describe.runIf(storeKinds().includes('postgres'))('AuditStore contract: postgres under the C locale', () => {
  let fixture: StoreFixture | undefined;
  afterEach(async () => {
    await fixture?.dispose();
  });

  it('folds the case of e-mails as JavaScript does, whatever lower() does in the database', async () => {
    // Went wrong: under LC_CTYPE C (initdb --locale=C) PostgreSQL's lower() folds ASCII letters only, as SQLite's
    // does, so its candidate query took exchanges a hold covers for due ones.
    fixture = await createStoreFixture('postgres', { postgresLocale: 'C' });
    const store = await fixture.open();
    expect(await fixture.sql("SELECT lower('É') AS folded")).toEqual([{ folded: 'É' }]);
    await expectNonAsciiHoldsLeftOut(store);
  });
});
