import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { WriteQueue } from '../../../src/recorder/write-queue.js';
import type { AuditStore, WriteBatch } from '../../../src/store/audit-store.js';
import { SqliteAuditStore } from '../../../src/store/sqlite/sqlite-audit-store.js';
import { useTempDir } from '../../support/temp-dir.js';

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
async function setup(dir: string, intervalMs: number) {
  const { store, batches } = await countingStore(dir);
  const queue = new WriteQueue(store, { intervalMs, onError: (err) => expect.fail(String(err)) });
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
    const { store, batches, queue, done } = await setup(tempDir(), 1_000);
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
    const deadline = Date.now() + 2_000;
    while (batches.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(batches).toEqual([['exchange.response']]);
    expect(await store.recordsOfKinds(['exchange.response'], 0, 10)).toHaveLength(1);
    await done();
  });

  it('writes what lingers when closed', async () => {
    const { store, batches, queue, done } = await setup(tempDir(), 60_000);
    queue.enqueue([record('exchange.response')]);
    await queue.close();
    expect(batches).toEqual([['exchange.response']]);
    await store.close();
  });
});
