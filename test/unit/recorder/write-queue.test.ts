import { createHash } from 'node:crypto';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  MAX_BATCH_RECORDS,
  MAX_HELD_RECORDS,
  PROBE_RECORDS,
  type OutageChange,
  WriteQueue,
} from '../../../src/recorder/write-queue.js';
import type { AuditStore, NewRecord, WriteBatch } from '../../../src/store/audit-store.js';
import { SqliteAuditStore } from '../../../src/store/sqlite/sqlite-audit-store.js';
import { useTempDir } from '../../support/temp-dir.js';
import { until } from '../../support/until.js';

/** A real SQLite store whose appends are also listed, to see how records were grouped into transactions. */
async function countingStore(dir: string): Promise<{ store: AuditStore; batches: string[][] }> {
  const store = SqliteAuditStore.open({ file: path.join(dir, 'vigil.db') });
  const batches: string[][] = [];
  const append = store.append.bind(store);
  store.append = (batch: WriteBatch) => {
    batches.push(batch.records.map((r) => r.kind));
    return append(batch);
  };
  return { store, batches };
}

const record = (kind: string) => ({ kind, at: Date.now(), data: { kind } });

/**
 * Holds `store`'s database at its size: from now on a write that needs a new page fails with SQLite's own "database
 * or disk is full" (SQLITE_FULL), as on a full disk. Returns what gives it room again.
 */
function fillUp(store: AuditStore): () => void {
  const db = (store as unknown as { db: { pragma(s: string, o?: object): unknown } }).db;
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
  return () => void db.pragma('max_page_count = 1073741823');
}

/**
 * A queue on a counting store that a first record made, then held at its size (fillUp), given `records` to write: they
 * are held. `makeRoom` lets the store take writes again.
 */
async function heldByFullStore(dir: string, records: NewRecord[]) {
  const { store, batches } = await countingStore(dir);
  const queue = new WriteQueue(store, { intervalMs: 5, onError: () => undefined });
  await queue.appendDurably([record('chain.note')], []);
  const makeRoom = fillUp(store);
  queue.enqueue(records);
  await queue.flush();
  return { store, batches, queue, makeRoom };
}

/** The `i` of each `exchange.events` record the store holds, in the order they were appended. */
async function writtenOrder(store: AuditStore): Promise<number[]> {
  const written = await store.recordsOfKinds(['exchange.events'], 0, 100_000);
  return written.map((r) => (JSON.parse(r.data) as { i: number }).i);
}

/** A queue on a counting store; `done()` closes both. */
async function setup(
  dir: string,
  intervalMs: number,
  onError: (err: unknown, lost: readonly NewRecord[]) => void = (err) => expect.fail(String(err)),
) {
  const { store, batches } = await countingStore(dir);
  const queue = new WriteQueue(store, { intervalMs, onError });
  const done = async (): Promise<void> => {
    await queue.close();
    await store.close();
  };
  return { store, batches, queue, done };
}

describe('WriteQueue', () => {
  const tempDir = useTempDir('vigil-queue');

  it('writes a request waiting alone by itself, then what lingers, in the order it was enqueued', async () => {
    const { store, batches, queue, done } = await setup(tempDir(), 1_000);
    queue.enqueue([record('exchange.response')]);
    queue.enqueue([record('access.denied')]);
    await queue.appendDurably([record('exchange.request')], []);
    // The request is durable without waiting for the previous exchange's records…
    expect(batches).toEqual([['exchange.request']]);
    // …which follow a couple of turns later, not after the linger interval.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([['exchange.request'], ['exchange.response', 'access.denied']]);
    const kinds = (await store.recordsOfKinds(['exchange.response', 'access.denied', 'exchange.request'], 0, 10)).map(
      (r) => r.kind,
    );
    expect(kinds).toEqual(['exchange.request', 'exchange.response', 'access.denied']);
    await done();
  });

  it('writes requests waiting together in one transaction with everything that lingers', async () => {
    const { batches, queue, done } = await setup(tempDir(), 1_000);
    queue.enqueue([record('exchange.response')]);
    await Promise.all([
      queue.appendDurably([record('exchange.request')], []),
      queue.appendDurably([record('exchange.request')], []),
    ]);
    expect(batches).toEqual([['exchange.response', 'exchange.request', 'exchange.request']]);
    await done();
  });

  it('writes lingering records on its own within intervalMs when no request comes', async () => {
    const { store, batches, queue, done } = await setup(tempDir(), 30);
    queue.enqueue([record('exchange.response')]);
    expect(batches).toEqual([]);
    await until('the lingering write', () => (batches.length > 0 ? true : undefined), 2_000);
    expect(batches).toEqual([['exchange.response']]);
    expect(await store.recordsOfKinds(['exchange.response'], 0, 10)).toHaveLength(1);
    await done();
  });

  it('writes what lingers when closed', async () => {
    const { store, batches, queue } = await setup(tempDir(), 60_000);
    queue.enqueue([record('exchange.response')]);
    await queue.close();
    expect(batches).toEqual([['exchange.response']]);
    await store.close();
  });

  it('writes nothing once closed: a record that comes after is reported lost, not written to the closed store', async () => {
    // Went wrong: a record enqueued after close() (a refusal arriving during shutdown) was written when its linger
    // ended, after the store had closed: the write failed ("The database connection is not open"), was retried, and
    // only then reported lost, as if the store had failed.
    const reported: Array<{ message: string; lost: string[] }> = [];
    const { store, batches, queue } = await setup(tempDir(), 10, (err, lost) =>
      reported.push({ message: (err as Error).message, lost: lost.map((r) => r.kind) }),
    );
    await queue.close();
    await store.close();
    queue.enqueue([record('access.denied')]);
    await expect(queue.appendDurably([record('exchange.request')], [])).rejects.toThrow(/closed/);
    await new Promise((r) => setTimeout(r, 100));
    expect(batches).toEqual([]);
    expect(reported).toEqual([
      { message: expect.stringMatching(/write queue has closed/) as unknown, lost: ['access.denied'] },
      { message: expect.stringMatching(/write queue has closed/) as unknown, lost: ['exchange.request'] },
    ]);
  });
});

describe('WriteQueue when a write fails', () => {
  const tempDir = useTempDir('vigil-queue-fail');

  it('writes the records nobody waits on again, when a request in the same transaction refers to a missing blob', async () => {
    const lost: number[] = [];
    const { store, batches, queue, done } = await setup(tempDir(), 1_000, (_err, n) => lost.push(n.length));
    queue.enqueue([record('exchange.response')]);
    const missing = 'f'.repeat(64);
    const bad = {
      kind: 'exchange.request',
      at: Date.now(),
      data: { request: { body: { size: 1, parts: [{ $blob: missing }] } } },
    };
    // Two requests waiting together share the transaction with what lingers; one refers to a blob nobody holds.
    const results = await Promise.allSettled([
      queue.appendDurably([bad], []),
      queue.appendDurably([record('exchange.request')], []),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/which the store does not hold/);
    await until('two writes', () => (batches.length >= 2 ? true : undefined), 2_000);
    expect(batches.at(-1)).toEqual(['exchange.response']);
    expect(await store.recordsOfKinds(['exchange.response'], 0, 10)).toHaveLength(1);
    expect(await store.recordsOfKinds(['exchange.request'], 0, 10)).toHaveLength(0);
    expect(lost).toEqual([2]); // the two requests: their callers were told (and write again, or refuse)
    await done();
  });

  it('does not refuse requests that shared a transaction with a record that cannot be written', async () => {
    const lost: number[] = [];
    const { store, queue, done } = await setup(tempDir(), 5, (_err, n) => lost.push(n.length));
    // A response that refers to a blob nobody holds can never be written.
    const poison = {
      kind: 'exchange.response',
      at: Date.now(),
      data: { body: { size: 1, parts: [{ $blob: 'e'.repeat(64) }] } },
    };
    queue.enqueue([poison]);
    await Promise.all([
      queue.appendDurably([record('exchange.request')], []),
      queue.appendDurably([record('exchange.request')], []),
    ]);
    expect(await store.recordsOfKinds(['exchange.request'], 0, 10)).toHaveLength(2);
    // The poison is tried a few times on its own, then reported lost (1 record).
    await until('a record reported lost', () => (lost.includes(1) ? true : undefined), 2_000);
    expect(lost).toEqual([0, 0, 1]);
    expect(await store.recordsOfKinds(['exchange.response'], 0, 10)).toHaveLength(0);
    await done();
  });

  it('writes the records that shared a failed write apart, and reports lost only the one that cannot be written', async () => {
    // Went wrong: a response record the store refused failed the group commit it lingered in; each retry folded newer
    // records in, and after three attempts all of them were dropped — other callers' events and responses with it.
    const lost: NewRecord[][] = [];
    const { store, batches, queue, done } = await setup(tempDir(), 5, (_err, n) => lost.push([...n]));
    const answer = Buffer.from('{"type":"message","content":[{"type":"text","text":"' + 'x'.repeat(300) + '"}]}');
    const answerHash = createHash('sha256').update(answer).digest('hex');
    const exchangeRecord = (kind: string, exchangeId: string, data: unknown): NewRecord => ({
      kind,
      exchangeId,
      sessionId: 'ses_1',
      at: Date.now(),
      data,
    });
    /** A response record as the recorder writes it, its body stored as one blob. */
    const responseData = (hash: string, size: number) => ({
      status: 200,
      headers: {},
      body: { size, parts: [{ $blob: hash }] },
      message: null,
      usage: null,
      model: null,
      stopReason: 'end_turn',
      outcome: 'ok',
      error: null,
      eventCount: 0,
      timing: { startedAt: 1, firstByteMs: 1, endedAt: 2, durationMs: 1 },
    });
    const events = exchangeRecord('exchange.events', 'ex_a', { events: [] });
    // It refers to a blob nobody holds: the store refuses it, always.
    const poison = exchangeRecord('exchange.response', 'ex_p', responseData('e'.repeat(64), 1));
    const response = exchangeRecord('exchange.response', 'ex_b', responseData(answerHash, answer.length));
    // ex_b's request, so that its search text can be found.
    await store.append({
      records: [
        exchangeRecord('exchange.request', 'ex_b', {
          connection: 'anthropic',
          caller: { method: 'anonymous', subject: 'alice' },
          session: { id: 'ses_1', source: 'header' },
          request: { method: 'POST', path: '/v1/messages', query: '', headers: {}, body: null },
          model: null,
          stream: false,
          startedAt: 1,
        }),
      ],
    });
    batches.length = 0;
    queue.enqueue([events]);
    queue.enqueue([poison]);
    queue.enqueue(
      [response],
      [{ hash: answerHash, data: answer }],
      [{ exchangeId: 'ex_b', text: 'zanzibar itinerary' }],
    );
    queue.enqueue([record('access.denied')]);
    await queue.flush();
    // Refused together, then written in halves, in order: the others at once, each with its blob and search text.
    expect(batches).toEqual([
      ['exchange.events', 'exchange.response', 'exchange.response', 'access.denied'],
      ['exchange.events', 'exchange.response'],
      ['exchange.events'],
      ['exchange.response'], // the bad one, refused on its own
      ['exchange.response', 'access.denied'],
    ]);
    const written = async (): Promise<string[]> =>
      (await store.recordsOfKinds(['exchange.events', 'exchange.response', 'access.denied'], 0, 10)).map(
        (r) => `${r.kind} ${r.exchangeId ?? ''}`,
      );
    expect(await written()).toEqual(['exchange.events ex_a', 'exchange.response ex_b', 'access.denied ']);
    expect((await store.blobs([answerHash])).get(answerHash)?.equals(answer)).toBe(true);
    expect((await store.search('zanzibar')).items.map((x) => x.exchangeId)).toEqual(['ex_b']);
    expect(lost).toEqual([[]]);
    // The bad record is tried again on its own (with what came since), then reported lost, by name.
    queue.enqueue([record('access.denied')]);
    await until('a record reported lost', () => (lost.length >= 3 ? true : undefined), 2_000);
    expect(lost).toEqual([[], [], [poison]]);
    expect(await written()).toEqual([
      'exchange.events ex_a',
      'exchange.response ex_b',
      'access.denied ',
      'access.denied ',
    ]);
    await done();
  });

  it('does not try every record on its own when the store itself fails', async () => {
    const dir = tempDir();
    const { store, batches } = await countingStore(dir);
    const append = store.append.bind(store);
    let fail = true;
    store.append = (batch) =>
      fail ? (batches.push(['failed']), Promise.reject(new Error('disk on fire'))) : append(batch);
    const lost: number[] = [];
    const queue = new WriteQueue(store, { intervalMs: 5, onError: (_err, n) => lost.push(n.length) });
    queue.enqueue(Array.from({ length: 1000 }, () => record('exchange.events')));
    await queue.flush();
    // The whole batch, then halves of halves until 16 failures in a row: the store is down, not a record bad.
    expect(batches.length).toBe(16);
    await until('the records reported lost', () => (lost.length >= 3 ? true : undefined), 2_000);
    expect(lost).toEqual([0, 0, 1000]);
    fail = false;
    await queue.close();
    await store.close();
  });

  it('holds what it cannot write while the store says it is down, trying less and less often, and names it lost only when closed', async () => {
    // Went wrong: a store refusing writes cost records nobody waits on three attempts in 15 ms, then they were
    // reported lost — the responses of calls already forwarded, gone after an outage of a fraction of a second.
    const dir = tempDir();
    const { store, batches } = await countingStore(dir);
    await store.close(); // gone: every write fails as the store's own ("The database connection is not open")
    const lost: Array<{ err: string; n: number }> = [];
    const outages: OutageChange[] = [];
    const queue = new WriteQueue(store, {
      intervalMs: 5,
      onError: (err, n) => lost.push({ err: String(err), n: n.length }),
      onOutage: (c) => outages.push(c),
    });
    queue.enqueue(Array.from({ length: 100 }, () => record('exchange.events')));
    await queue.flush();
    expect(batches).toHaveLength(1); // not written apart: one failed write per attempt
    expect(queue.storeRefusing).toBe(true);
    expect(outages).toMatchObject([{ began: true }]);
    // Pauses of 10, 20, 40, 80, 160 ms…: a few attempts in 400 ms, not one every 5 ms.
    await new Promise((r) => setTimeout(r, 400));
    expect(batches.length).toBeGreaterThanOrEqual(4);
    expect(batches.length).toBeLessThanOrEqual(8);
    expect(lost).toEqual([]);
    expect(queue.backlog).toBe(100);
    await queue.close();
    expect(lost).toEqual([{ err: expect.stringMatching(/write queue has closed/), n: 100 }]);
  });

  it('writes what it held, in order and complete, once the store takes writes again', async () => {
    // A real refusal: SQLite's own "database or disk is full" (SQLITE_FULL), the database held at its size.
    const dir = tempDir();
    const { store, batches } = await countingStore(dir);
    const outages: OutageChange[] = [];
    const refused: number[] = [];
    const queue = new WriteQueue(store, {
      intervalMs: 5,
      onError: (err, n) => refused.push(n.length),
      onOutage: (c) => outages.push(c),
    });
    await queue.appendDurably([record('chain.note')], []);
    const makeRoom = fillUp(store);
    const big = (i: number) => ({ kind: 'exchange.events', at: Date.now(), data: { i, pad: 'x'.repeat(20_000) } });
    for (let i = 0; i < 30; i++) queue.enqueue([big(i)]);
    await queue.flush();
    expect(queue.storeRefusing).toBe(true);
    expect(outages).toEqual([{ began: true, err: expect.objectContaining({ code: 'SQLITE_FULL' }) }]);
    // A request that must be recorded meanwhile is refused at once, and what is held stays held.
    await expect(queue.appendDurably([{ ...big(-1), kind: 'exchange.request' }], [])).rejects.toMatchObject({
      code: 'SQLITE_FULL',
    });
    expect(refused).toEqual([1]);
    for (let i = 30; i < 40; i++) queue.enqueue([big(i)]);
    await new Promise((r) => setTimeout(r, 50));
    expect(queue.backlog).toBe(40);

    makeRoom(); // the disk has room again
    await until('the held records written', () => (queue.backlog === 0 ? true : undefined), 5_000);
    expect(queue.storeRefusing).toBe(false);
    expect(outages).toHaveLength(2);
    expect(outages[1]).toMatchObject({ began: false, written: 40 });
    expect((outages[1] as { failedWrites: number }).failedWrites).toBeGreaterThanOrEqual(2);
    expect(await writtenOrder(store)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(refused).toEqual([1]); // nothing else was refused or lost
    expect(batches.filter((b) => b.length > 0).length).toBeGreaterThan(2);
    expect((await store.verify()).ok).toBe(true);
    await queue.close();
    await store.close();
  });

  it('tries a store that refuses writes with a request alone, or the oldest few held records, never everything held', async () => {
    // An attempt with everything held (up to 100,000 records) would cost a transaction's worth of work each time a
    // request arrives while the disk is full.
    const big = (i: number) => ({ kind: 'exchange.events', at: Date.now(), data: { i, pad: 'x'.repeat(5_000) } });
    const { store, batches, queue, makeRoom } = await heldByFullStore(
      tempDir(),
      Array.from({ length: 200 }, (_, i) => big(i)),
    );
    expect(queue.storeRefusing).toBe(true);
    batches.length = 0;
    await expect(queue.appendDurably([{ ...big(-1), kind: 'exchange.request' }], [])).rejects.toMatchObject({
      code: 'SQLITE_FULL',
    });
    await new Promise((r) => setTimeout(r, 100)); // a few retries of what is held
    expect(batches[0]).toEqual(['exchange.request']);
    expect(batches.length).toBeGreaterThan(1);
    for (const b of batches.slice(1)) expect(b.length).toBeLessThanOrEqual(PROBE_RECORDS);

    makeRoom();
    batches.length = 0;
    await until('the held records written', () => (queue.backlog === 0 ? true : undefined), 5_000);
    expect(batches.map((b) => b.length)).toEqual([PROBE_RECORDS, 200 - PROBE_RECORDS]);
    expect(await writtenOrder(store)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    await queue.close();
    await store.close();
  });

  it('writes a backlog an outage held a part at a time, in order, so that no one write holds the event loop long', async () => {
    const n = 2 * MAX_BATCH_RECORDS + 300;
    const { store, batches, queue, makeRoom } = await heldByFullStore(
      tempDir(),
      Array.from({ length: n }, (_, i) => ({ kind: 'exchange.events', at: 0, data: { i, pad: 'x'.repeat(200) } })),
    );
    expect(queue.storeRefusing).toBe(true);
    makeRoom();
    batches.length = 0;
    await until('the backlog written', () => (queue.backlog === 0 ? true : undefined), 5_000);
    expect(batches.map((b) => b.length)).toEqual([
      PROBE_RECORDS,
      MAX_BATCH_RECORDS,
      MAX_BATCH_RECORDS,
      n - PROBE_RECORDS - 2 * MAX_BATCH_RECORDS,
    ]);
    expect(await writtenOrder(store)).toEqual(Array.from({ length: n }, (_, i) => i));
    await queue.close();
    await store.close();
  });

  it('gives up the oldest held records, and names them, past what an outage may hold', async () => {
    const dir = tempDir();
    const { store } = await countingStore(dir);
    await store.close();
    const lost: number[][] = [];
    const queue = new WriteQueue(store, {
      intervalMs: 5,
      onError: (_err, n) => lost.push(n.map((r) => (r.data as { i: number }).i)),
    });
    const n = MAX_HELD_RECORDS + 3;
    queue.enqueue(Array.from({ length: n }, (_, i) => ({ kind: 'exchange.events', at: 0, data: { i } })));
    await queue.flush();
    expect(lost).toEqual([[0, 1, 2]]);
    expect(queue.backlog).toBe(MAX_HELD_RECORDS);
    await queue.close();
  });

  it('gives records nobody waits on a few attempts, then reports them lost', async () => {
    const dir = tempDir();
    const { store, batches } = await countingStore(dir);
    const failing = new Error('disk on fire');
    const append = store.append.bind(store);
    let fail = true;
    store.append = (batch) => (fail ? (batches.push(['failed']), Promise.reject(failing)) : append(batch));
    const lost: number[] = [];
    const queue = new WriteQueue(store, { intervalMs: 5, onError: (_err, n) => lost.push(n.length) });
    queue.enqueue([record('exchange.response')]);
    await until('three losses reported', () => (lost.length >= 3 ? true : undefined), 2_000);
    expect(lost).toEqual([0, 0, 1]);
    fail = false;
    await queue.close();
    expect(await store.recordsOfKinds(['exchange.response'], 0, 10)).toHaveLength(0);
    await store.close();
  });
});
