/**
 * Verifying one session finds what was done to its records behind the store's back, on a real store, without
 * walking the whole ledger.
 */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { recordedPurgeRuns, verifySession } from '../../../src/admin/session-verify.js';
import type { AuditStore, NewRecord } from '../../../src/store/audit-store.js';
import { recordHash } from '../../../src/store/ledger.js';
import { createStoreFixture, storeKinds, type StoreFixture } from '../../support/stores.js';

const T0 = Date.UTC(2025, 0, 15);
const messages = Buffer.from('[{"role":"user","content":"the session under test"}]');
const messagesHash = createHash('sha256').update(messages).digest('hex');

/** An exchange whose request refers to the blob `body` (messages, by default) and whose response's message is `message`. */
function exchange(
  id: string,
  session: string,
  at: number,
  { body = messagesHash, message = null as unknown } = {},
): NewRecord[] {
  const request = {
    connection: 'anthropic',
    caller: { method: 'oidc', subject: 'alice', issuer: 'https://idp.example' },
    client: { address: null, userAgent: null },
    session: { id: session, source: 'header' },
    request: {
      method: 'POST',
      path: '/v1/messages',
      query: '',
      headers: {},
      body: { size: messages.length, parts: [{ $blob: body }] },
    },
    model: 'claude-sonnet-4-5',
    stream: false,
    startedAt: at,
  };
  const response = {
    status: 200,
    headers: {},
    body: null,
    message,
    usage: null,
    model: null,
    stopReason: 'end_turn',
    outcome: 'ok',
    error: null,
    eventCount: 0,
    timing: { startedAt: at, firstByteMs: 1, endedAt: at + 5, durationMs: 5 },
  };
  return [
    { kind: 'exchange.request', exchangeId: id, sessionId: session, at, data: request },
    { kind: 'exchange.response', exchangeId: id, sessionId: session, at: at + 5, data: response },
  ];
}

describe.each(storeKinds())('verifySession: %s', (kind) => {
  let fixture: StoreFixture;
  let store: AuditStore;

  beforeEach(async () => {
    fixture = await createStoreFixture(kind);
    store = await fixture.open();
    await store.append({ blobs: [{ hash: messagesHash, data: messages }], records: exchange('ex_1', 'ses_1', T0) });
    await store.append({ records: exchange('ex_other', 'ses_2', T0 + 10) });
    await store.append({ records: exchange('ex_2', 'ses_1', T0 + 20) });
  });
  afterEach(async () => {
    await fixture?.dispose();
  });

  it('reads every purge record, however many, a page at a time', async () => {
    // Went wrong: at most 100,000 purge records were read, and purges now write one per ~20 ms batch: past that, the
    // later purges' gaps were reported as removals.
    const purge = (from: number) => ({
      kind: 'retention.purged',
      at: T0 + from,
      data: { removed: [{ chain: 'ch_x', from, to: from }] },
    });
    await store.append({ records: [purge(1), purge(2), purge(3), purge(4), purge(5)] });
    expect((await recordedPurgeRuns(store, 2)).map((r) => r.from)).toEqual([1, 2, 3, 4, 5]);
  });

  it('reports an intact session as ok', async () => {
    expect(await verifySession(store, 'ses_1')).toEqual({
      ok: true,
      session: 'ses_1',
      scope: 'session',
      records: 4,
      exchanges: 2,
      problems: [],
    });
  });

  it('verifies only the exchanges given, and says nothing of the rest of the session', async () => {
    // A user sharing a session with other callers may see their own exchanges only, and used to be told how many
    // records the others had, and which of them were broken.
    await store.append({ records: exchange('ex_someone_else', 'ses_1', T0 + 30) });
    await fixture.tamper(
      `UPDATE records SET data = replace(data, '"outcome":"ok"', '"outcome":"gateway_error"') WHERE exchange_id = 'ex_someone_else' AND kind = 'exchange.response'`,
    );
    expect((await verifySession(store, 'ses_1')).problems).toHaveLength(1);
    expect(await verifySession(store, 'ses_1', new Set(['ex_1', 'ex_2']))).toEqual({
      ok: true,
      session: 'ses_1',
      scope: 'caller',
      records: 4,
      exchanges: 2,
      problems: [],
    });
    // Their own records are checked as ever, links to the others' neighbouring records included.
    await fixture.tamper(`DELETE FROM records WHERE exchange_id = 'ex_2' AND kind = 'exchange.request'`);
    expect(await verifySession(store, 'ses_1', new Set(['ex_2']))).toMatchObject({
      ok: false,
      records: 1,
      exchanges: 1,
      problems: [
        expect.objectContaining({ problem: 'missing', detail: expect.stringContaining('the record before') }),
        expect.objectContaining({ problem: 'missing', detail: expect.stringContaining('exchange ex_2 is indexed') }),
      ],
    });
  });

  it('detects an exchange moved to another session in the index, and shows none of its records there', async () => {
    // Went wrong (SQLite, reading a session through the exchanges index): re-pointing the index rows showed one
    // caller's conversation as another session's, and both verifies said ok.
    await fixture.tamper(
      `UPDATE exchanges SET session_id = CASE id WHEN 'ex_other' THEN 'ses_1' WHEN 'ex_2' THEN 'ses_2' ELSE session_id END`,
    );
    expect((await store.sessionRecords('ses_1')).map((r) => r.exchangeId)).not.toContain('ex_other');
    const report = await verifySession(store, 'ses_1');
    expect(report.ok).toBe(false);
    expect(report.problems).toContainEqual(
      expect.objectContaining({ problem: 'missing', detail: expect.stringContaining('exchange ex_other is indexed') }),
    );
  });

  it('detects a changed record', async () => {
    await fixture.tamper(
      `UPDATE records SET data = replace(data, '"outcome":"ok"', '"outcome":"gateway_error"') WHERE exchange_id = 'ex_2' AND kind = 'exchange.response'`,
    );
    const report = await verifySession(store, 'ses_1');
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual([
      expect.objectContaining({ problem: 'changed', detail: expect.stringContaining('was changed') }),
    ]);
  });

  it('detects a record rewritten with a recomputed hash, by its successor', async () => {
    // ex_1's response is followed on the chain by ex_other's request: its successor is not in the session.
    const [request] = (await store.exchangeRecords('ex_1')).filter((r) => r.kind === 'exchange.response');
    const data = request!.data.replace('"outcome":"ok"', '"outcome":"interrupted"');
    const hash = recordHash(request!.prevHash, { ...request!, data });
    await fixture.tamper(`UPDATE records SET data = '${data}', hash = '${hash}' WHERE seq = ${request!.seq}`);
    const report = await verifySession(store, 'ses_1');
    expect(report.problems).toEqual([
      expect.objectContaining({
        problem: 'changed',
        chainSeq: request!.chainSeq,
        detail: expect.stringContaining('replaced'),
      }),
    ]);
  });

  it('reports a replaced record inside the session once', async () => {
    const [request] = (await store.exchangeRecords('ex_1')).filter((r) => r.kind === 'exchange.request');
    const data = request!.data.replace('"subject":"alice"', '"subject":"mallory"');
    const hash = recordHash(request!.prevHash, { ...request!, data });
    await fixture.tamper(`UPDATE records SET data = '${data}', hash = '${hash}' WHERE seq = ${request!.seq}`);
    expect((await verifySession(store, 'ses_1')).problems).toEqual([
      expect.objectContaining({
        problem: 'changed',
        chainSeq: request!.chainSeq + 1,
        detail: expect.stringContaining('one of the two was replaced'),
      }),
    ]);
  });

  it('takes no JSON a record holds for a blob reference, and names the record that refers to a missing one', async () => {
    // Went wrong: a tool's input {"$blob": "<hash>"} (a caller can make the model choose it) in a response's message
    // was taken for a blob reference: the record could not be written, and would have been reported as missing a blob.
    const named = Buffer.from('[{"role":"user","content":"a turn of its own"}]');
    const namedHash = createHash('sha256').update(named).digest('hex');
    const toolCall = (input: unknown) => ({ role: 'assistant', content: [{ type: 'tool_use', name: 'T', input }] });
    await store.append({
      blobs: [{ hash: namedHash, data: named }],
      records: exchange('ex_t1', 'ses_t', T0 + 40, { message: toolCall({ $blob: namedHash }) }),
    });
    await store.append({
      records: exchange('ex_t2', 'ses_t', T0 + 50, { body: namedHash, message: toolCall({ $blob: 'f'.repeat(64) }) }),
    });
    expect(await verifySession(store, 'ses_t')).toMatchObject({ ok: true, records: 4, problems: [] });

    await fixture.tamper(`DELETE FROM blobs WHERE hash = '${namedHash}'`);
    const [request] = (await store.exchangeRecords('ex_t2')).filter((r) => r.kind === 'exchange.request');
    expect((await verifySession(store, 'ses_t')).problems).toEqual([
      expect.objectContaining({ problem: 'blob_missing', chainSeq: request!.chainSeq }),
    ]);
  });

  it('detects a removed neighbour, a removed request record and a changed blob', async () => {
    await fixture.tamper(`DELETE FROM records WHERE exchange_id = 'ex_other' AND kind = 'exchange.response'`);
    await fixture.tamper(`DELETE FROM records WHERE exchange_id = 'ex_2' AND kind = 'exchange.request'`);
    await fixture.tamper(
      `UPDATE blobs SET data = ${fixture.bytes(Buffer.from('forged'))} WHERE hash = '${messagesHash}'`,
    );
    const problems = (await verifySession(store, 'ses_1')).problems.map((p) => p.problem).sort();
    expect(problems).toEqual(['blob_changed', 'missing', 'missing']);
  });
});
