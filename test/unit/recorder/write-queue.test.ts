import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { WriteQueue } from '../../../src/recorder/write-queue.js';
import type { AuditStore, WriteBatch } from '../../../src/store/audit-store.js';
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

/** A queue on a counting store; `done()` closes both. */
async function setup(
  dir: string,
  intervalMs: number,
  onError: (err: unknown, lost: number) => void = (err) => expect.fail(String(err)),
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
});

describe('WriteQueue when a write fails', () => {
  const tempDir = useTempDir('vigil-queue-fail');

  it('writes the records nobody waits on again, when a request in the same transaction refers to a missing blob', async () => {
    const lost: number[] = [];
    const { store, batches, queue, done } = await setup(tempDir(), 1_000, (_err, n) => lost.push(n));
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
    const { store, queue, done } = await setup(tempDir(), 5, (_err, n) => lost.push(n));
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

  it('gives records nobody waits on a few attempts, then reports them lost', async () => {
    const dir = tempDir();
    const { store, batches } = await countingStore(dir);
    const failing = new Error('disk on fire');
    const append = store.append.bind(store);
    let fail = true;
    store.append = (batch) => (fail ? (batches.push(['failed']), Promise.reject(failing)) : append(batch));
    const lost: number[] = [];
    const queue = new WriteQueue(store, { intervalMs: 5, onError: (_err, n) => lost.push(n) });
    queue.enqueue([record('exchange.response')]);
    await until('three losses reported', () => (lost.length >= 3 ? true : undefined), 2_000);
    expect(lost).toEqual([0, 0, 1]);
    fail = false;
    await queue.close();
    expect(await store.recordsOfKinds(['exchange.response'], 0, 10)).toHaveLength(0);
    await store.close();
  });
});
