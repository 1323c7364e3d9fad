/**
 * The admin API's reads of a SQLite store on a thread of their own (sqlite-read-worker.ts): the same answers as the
 * store's own reads, and the gateway's event loop free while they run.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { smallExchange } from '../../../bench/small-exchange.mjs';
import { VigilError } from '../../../src/errors.js';
import type { AuditStore } from '../../../src/store/audit-store.js';
import { adminReads, type AdminReads } from '../../../src/store/open-store.js';
import { SqliteAuditStore } from '../../../src/store/sqlite/sqlite-audit-store.js';
import { SqliteReadWorker } from '../../../src/store/sqlite/sqlite-read-worker.js';
import { eventLoopLag } from '../../support/event-loop-lag.js';
import { useTempDir } from '../../support/temp-dir.js';

const T0 = Date.UTC(2025, 0, 15, 9, 0, 0);

describe('SQLite reads on a thread of their own', () => {
  const tempDir = useTempDir('vigil-read-worker');
  let store: SqliteAuditStore | undefined;
  let reads: AdminReads | undefined;
  afterEach(async () => {
    await reads?.close();
    await store?.close();
    reads = store = undefined;
  });

  function open(): { store: SqliteAuditStore; threaded: AuditStore } {
    store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db'), backgroundCheckpoints: true });
    reads = adminReads(store);
    expect(reads.store).not.toBe(store);
    return { store, threaded: reads.store };
  }

  it("answers as the store's own reads do: listings, totals, a session's records, errors as VigilErrors", async () => {
    const { store, threaded } = open();
    await store.append({ records: Array.from({ length: 30 }, (_, i) => smallExchange(i, T0)).flat() });

    for (const [name, call] of [
      ['listSessions', (s: AuditStore) => s.listSessions({ limit: 5 })],
      ['listExchangesFiltered', (s: AuditStore) => s.listExchangesFiltered({ caller: 'u3' })],
      ['listExchanges', (s: AuditStore) => s.listExchanges('s-1')],
      ['sessionTotals', (s: AuditStore) => s.sessionTotals('s-0')],
      ['listAccessLog', (s: AuditStore) => s.listAccessLog({})],
      ['sessionRecords', (s: AuditStore) => s.sessionRecords('s-1')],
    ] as const) {
      const own = await call(store);
      expect(own, name).toBeTruthy();
      expect(await call(threaded), name).toEqual(own);
    }
    const refused = await threaded.listSessions({ cursor: 'not-a-cursor' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(VigilError);
    expect(refused).toMatchObject({ code: 'BAD_REQUEST', message: expect.stringContaining('cursor') });
    // Writes stay the store's own.
    await threaded.append({ records: smallExchange(99, T0) });
    expect((await store.exchangeRecords('ex_99')).length).toBe(3);
  });

  it("keeps the code of SQLite's own errors, so that a caller can tell a store that is unavailable", async () => {
    // Went wrong: an error met on the thread came back as a bare Error, without SQLite's code.
    const { store, threaded } = open();
    await threaded.listSessions({ limit: 5 }); // the thread is up, its store open
    const db = new Database(store.file);
    db.exec('DROP TABLE exchange_results'); // what a read of the list needs is gone
    db.close();
    const err = await threaded.listSessions({ limit: 5 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ message: 'no such table: exchange_results', code: 'SQLITE_ERROR' });
  });

  it('finds search text the writer has not put in the full-text index yet', async () => {
    const { store, threaded } = open();
    await store.append({
      records: smallExchange(1, T0),
      searchText: [{ exchangeId: 'ex_1', text: 'the quince marmalade incident' }],
    });
    const hits = await threaded.search('marmalade');
    expect(hits.items).toEqual([
      expect.objectContaining({ exchangeId: 'ex_1', snippet: expect.stringContaining('«marmalade»') }),
    ]);
  });

  it('answers on a new thread after its thread stopped, failing only the calls that thread had', async () => {
    const { store } = open();
    await store.append({ records: smallExchange(1, T0) });
    const reader = new SqliteReadWorker(store.file);
    try {
      expect((await reader.call('sessionRecords', ['s-0'])) as unknown[]).toHaveLength(3);
      // As if the thread had died (out of memory, say).
      const { worker } = (reader as unknown as { thread: { worker: { terminate(): Promise<number> } } }).thread;
      const cut = reader.call('sessionRecords', ['s-0']);
      await worker.terminate();
      await expect(cut).rejects.toThrow(/read thread stopped/);
      expect((await reader.call('sessionRecords', ['s-0'])) as unknown[]).toHaveLength(3);
    } finally {
      await reader.close();
    }
    await expect(reader.call('sessionRecords', ['s-0'])).rejects.toThrow(/closed/);
  });

  it('fails the calls of a thread that cannot open the store, and tries again at the next call', async () => {
    const file = path.join(tempDir(), 'not-yet.db');
    const reader = new SqliteReadWorker(file);
    try {
      await expect(reader.call('listSessions', [{}])).rejects.toThrow(/read thread did not start: .*/);
      store = SqliteAuditStore.open({ file });
      await store.append({ records: smallExchange(1, T0) });
      expect((await reader.call('sessionRecords', ['s-0'])) as unknown[]).toHaveLength(3);
    } finally {
      await reader.close();
    }
  });

  it('leaves the event loop free while a long read runs', async () => {
    // Half a million exchanges, straight into the tables, and a filter none of them matches: the listing reads them
    // all. On the store's own connection that holds this thread for its whole length; from the read thread, timers
    // here keep firing.
    const { store, threaded } = open();
    const db = new Database(store.file);
    const insert = db.prepare(
      `INSERT INTO exchanges (id, session_id, connection, caller_subject, caller_method, method, path, model, stream, started_at)
       VALUES (?, ?, 'anthropic', 'u', 'oidc', 'POST', '/v1/messages', 'm', 1, ?)`,
    );
    db.transaction(() => {
      for (let i = 0; i < 500_000; i++) insert.run(`ex_${i}`, `s-${i % 1000}`, T0 + i);
    })();
    db.close();

    const filter = { model: 'no-such-model' }; // a model the exchange asked for, or the one that answered: no index
    let started = performance.now();
    expect((await store.listExchangesFiltered(filter)).items).toEqual([]);
    const held = performance.now() - started; // the event loop did nothing else meanwhile
    expect(held).toBeGreaterThan(60);

    const lag = eventLoopLag(5);
    started = performance.now();
    expect((await threaded.listExchangesFiltered(filter)).items).toEqual([]);
    const took = performance.now() - started;
    // A timer held up by the read fires late once the thread is free again: let it.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const worst = lag.stop();
    expect(took).toBeGreaterThan(held / 2); // the same work, done elsewhere
    expect(worst).toBeLessThan(held / 2);

    // A gateway stopping: a read still running may finish, for a while; then the thread is stopped under it.
    const patient = new SqliteReadWorker(store.file);
    const finishing = patient.call('listExchangesFiltered', [filter]);
    await new Promise((resolve) => setTimeout(resolve, 20)); // under way
    await patient.close();
    expect(((await finishing) as { items: unknown[] }).items).toEqual([]);
    const hasty = new SqliteReadWorker(store.file, 5);
    const cut = hasty.call('listExchangesFiltered', [filter]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    started = performance.now();
    await hasty.close();
    expect(performance.now() - started).toBeLessThan(held);
    await expect(cut).rejects.toThrow(/read thread stopped/);
  }, 60_000);
});
