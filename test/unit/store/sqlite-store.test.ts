import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { smallExchange } from '../../../bench/small-exchange.mjs';
import { VERIFY_PAGE, type NewRecord } from '../../../src/store/audit-store.js';
import { sessionListStatement } from '../../../src/store/session-list.js';
import { SqliteAuditStore, sqliteAggregate } from '../../../src/store/sqlite/sqlite-audit-store.js';
import { SQLITE_MIGRATIONS } from '../../../src/store/sqlite/sqlite-migrations.js';
import { eventLoopLag } from '../../support/event-loop-lag.js';
import { useTempDir } from '../../support/temp-dir.js';
import { fillDisk, tmpfsMountable, withTmpfs } from '../../support/tmpfs.js';
import { until } from '../../support/until.js';

describe('SQLite store files', () => {
  const tempDir = useTempDir('vigil-modes');

  it('makes a new store readable by its owner alone, in a directory others may read; an existing one keeps its mode', async () => {
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const file = path.join(dir, 'vigil.db');
    const store = SqliteAuditStore.open({ file });
    await store.append({ records: [{ kind: 'note', at: 1, data: {} }] });
    for (const f of [file, `${file}-wal`, `${file}-shm`]) expect(statSync(f).mode & 0o777, f).toBe(0o600);
    await store.close();
    chmodSync(file, 0o640); // as an operator may set it, for a group of readers
    await SqliteAuditStore.open({ file }).close();
    expect(statSync(file).mode & 0o777).toBe(0o640);
  });
});

/** The SQLite store writes search text to a waiting table and indexes it in batches, off the exchange's commit. */
describe('SQLite search index batching', () => {
  const tempDir = useTempDir('vigil-fts');
  let file: string;
  beforeEach(() => {
    file = path.join(tempDir(), 'vigil.db');
  });

  const count = (table: string): number => {
    const db = new Database(file, { readonly: true });
    try {
      return (db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number) ?? 0;
    } finally {
      db.close();
    }
  };

  it('keeps text out of the full-text index at commit, and indexes a full batch on the next turn', async () => {
    const store = SqliteAuditStore.open({ file });
    await store.append({ records: [], searchText: [{ exchangeId: 'ex_1', text: 'waiting quietly' }] });
    expect(count('exchange_text_pending')).toBe(1);
    expect(count('exchange_text')).toBe(0);
    await store.append({
      records: [],
      searchText: Array.from({ length: 300 }, (_, i) => ({ exchangeId: `ex_b${i}`, text: `batch entry ${i}` })),
    });
    await new Promise((r) => setImmediate(r));
    expect(count('exchange_text_pending')).toBe(0);
    expect(count('exchange_text')).toBe(301);
    expect((await store.search('quietly')).items).toHaveLength(0); // no exchange row: search joins exchanges
    await store.close();
  });

  it('keeps text waiting when indexing fails, searches anyway, and indexes it on the next try', async () => {
    const store = SqliteAuditStore.open({ file });
    const raw = new Database(file);
    raw.exec(
      "CREATE TRIGGER stuck BEFORE DELETE ON exchange_text_pending BEGIN SELECT RAISE(ABORT, 'disk trouble'); END",
    );
    await store.append({ records: [], searchText: [{ exchangeId: 'ex_1', text: 'patience pays' }] });
    await expect(store.search('patience')).resolves.toEqual({ items: [], nextCursor: null });
    expect(count('exchange_text_pending')).toBe(1);
    expect(count('exchange_text')).toBe(0);
    raw.exec('DROP TRIGGER stuck');
    raw.close();
    await until('the text indexed on retry', () => (count('exchange_text') > 0 ? true : undefined), 5_000);
    expect([count('exchange_text'), count('exchange_text_pending')]).toEqual([1, 0]);
    await store.close();
  });

  it('indexes at start what a crashed gateway left waiting', async () => {
    const crashed = SqliteAuditStore.open({ file });
    await crashed.append({ records: [], searchText: [{ exchangeId: 'ex_1', text: 'left behind' }] });
    // No close(): the process died. Its connection is dropped as the OS would.
    expect(count('exchange_text_pending')).toBe(1);
    const next = SqliteAuditStore.open({ file });
    expect(count('exchange_text_pending')).toBe(0);
    expect(count('exchange_text')).toBe(1);
    await next.close();
    await crashed.close();
  });
});

describe('SQLite background WAL checkpoints', () => {
  const tempDir = useTempDir('vigil-wal');

  it('copies committed pages into the database file from a worker thread, and stops on close', async () => {
    const file = path.join(tempDir(), 'vigil.db');
    const errors: string[] = [];
    const store = SqliteAuditStore.open({
      file,
      backgroundCheckpoints: true,
      onCheckpointError: (m) => errors.push(m),
    });
    const before = statSync(file).size;
    // ~2 MB: far below where the thread starts the log over (32 MB) and the connection's own checkpoint (128 MB).
    const blobs = Array.from({ length: 8 }, (_, i) => ({ hash: `h${i}`, data: randomBytes(256 * 1024) }));
    await store.append({ records: [{ kind: 'test.blobs', at: Date.now(), data: {} }], blobs });
    expect(statSync(`${file}-wal`).size).toBeGreaterThan(2 * 1024 * 1024);
    const deadline = Date.now() + 5_000;
    while (statSync(file).size < before + 2 * 1024 * 1024 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(statSync(file).size).toBeGreaterThanOrEqual(before + 2 * 1024 * 1024);
    expect(errors).toEqual([]);
    await store.close();
  });

  it.skipIf(!tmpfsMountable)(
    'pauses longer after each failed checkpoint (a full disk), and checkpoints again when there is room',
    () =>
      withTmpfs('16m', async (tmpfs) => {
        // Went wrong: a checkpoint the disk had no room for failed, and was reported, every 250 ms while it lasted.
        const dir = mkdtempSync(path.join(tmpfs, 'store-'));
        const file = path.join(dir, 'vigil.db');
        const errors: string[] = [];
        const store = SqliteAuditStore.open({
          file,
          backgroundCheckpoints: true,
          onCheckpointError: (m) => errors.push(m),
        });
        try {
          // Room for the log to take ~4 MB, not for the database file to take them over as well.
          const filler = path.join(dir, 'filler');
          fillDisk(filler, 6 * 1024 * 1024);
          const before = statSync(file).size;
          const blobs = Array.from({ length: 16 }, (_, i) => ({ hash: `h${i}`, data: randomBytes(256 * 1024) }));
          await store.append({ records: [{ kind: 'test.blobs', at: Date.now(), data: {} }], blobs });
          await new Promise((r) => setTimeout(r, 3_500));
          // At 0.25 s, then 1 and 2 s later: three or four, where every 250 ms made fourteen.
          expect(errors.length).toBeGreaterThanOrEqual(1);
          expect(errors.length).toBeLessThanOrEqual(4);
          expect(errors[0]).toMatch(/full/);
          unlinkSync(filler);
          await until(
            'a checkpoint with room',
            () => (statSync(file).size >= before + 4 * 1024 * 1024 ? true : undefined),
            10_000,
          );
        } finally {
          await store.close();
        }
      }),
    20_000,
  );

  /** A store whose checkpointer starts the log over past 100 frames (its writer's own checkpoint: past 400). */
  async function storeWithWindows(file: string) {
    await SqliteAuditStore.open({ file }).close(); // the schema's pages, written at creation, out of the way
    const errors: string[] = [];
    const store = SqliteAuditStore.open({
      file,
      backgroundCheckpoints: { intervalMs: 20, restartFrames: 100 },
      onCheckpointError: (m) => errors.push(m),
    });
    const checkpointer = (store as unknown as { checkpointer: { restart: () => void } }).checkpointer;
    const restart = checkpointer.restart.bind(checkpointer);
    let windows = 0;
    checkpointer.restart = () => {
      windows++;
      restart();
    };
    await new Promise((r) => setTimeout(r, 500)); // the thread starts (it loads its own SQLite driver)
    return { store, errors, windows: () => windows };
  }

  it('starts the log over from the thread while appends wait, so the writer never checkpoints itself', async () => {
    const file = path.join(tempDir(), 'vigil.db');
    const { store, errors, windows } = await storeWithWindows(file);
    const frames = (): number => Math.max(0, statSync(`${file}-wal`).size - 32) / (4096 + 24);
    let largest = 0;
    // A few frames per append, one append per turn of the event loop as a gateway's requests come: enough of them
    // that the thread's passes (every 20 ms) find the log past its threshold several times whatever the host's pace.
    for (let i = 0; i < 400; i++) {
      const blob = { hash: `b${i}`, data: randomBytes(8 * 1024) };
      await store.append({ records: [{ kind: 'test.blob', at: Date.now(), data: { i } }], blobs: [blob] });
      largest = Math.max(largest, frames());
      await new Promise((r) => setTimeout(r, 3));
    }
    // Started over by the thread, again and again, each time it passed 100 frames (plus what came before its next
    // pass), never reaching the 400 at which the writer would have checkpointed on the event loop.
    expect(windows()).toBeGreaterThanOrEqual(3);
    expect(largest).toBeGreaterThan(100);
    expect(largest).toBeLessThan(400);

    // Then idle with the log past the threshold: one window starts it over, and no other follows while nothing is
    // written (the log keeps its size until the next commit).
    for (let i = 0; i < 40; i++) {
      const blob = { hash: `c${i}`, data: randomBytes(8 * 1024) };
      await store.append({ records: [{ kind: 'test.blob', at: Date.now(), data: { i } }], blobs: [blob] });
    }
    const before = windows();
    await new Promise((r) => setTimeout(r, 400));
    expect(windows() - before).toBeLessThanOrEqual(1);
    expect(errors).toEqual([]);
    expect(await store.verify()).toMatchObject({ ok: true });
    await store.close();
  });

  it('backs off while a reader keeps the log from being started over', async () => {
    const file = path.join(tempDir(), 'vigil.db');
    const { store, windows } = await storeWithWindows(file);
    const reader = new Database(file, { readonly: true });
    reader.prepare('BEGIN').run();
    reader.prepare('SELECT count(*) FROM records').get(); // a snapshot of old pages, held
    for (let i = 0; i < 40; i++) {
      await store.append({
        records: [{ kind: 'test.blob', at: Date.now(), data: { i } }],
        blobs: [{ hash: `r${i}`, data: randomBytes(8 * 1024) }],
      });
    }
    // Each window waits up to 500 ms for the reader, then the thread waits 1 s, 2 s, … before the next one.
    await new Promise((r) => setTimeout(r, 2_500));
    expect(windows()).toBeGreaterThanOrEqual(1);
    expect(windows()).toBeLessThanOrEqual(3);
    reader.prepare('COMMIT').run();
    reader.close();
    await store.close();
  });

  it("waits for another connection's write lock without stopping the event loop", async () => {
    const file = path.join(tempDir(), 'vigil.db');
    const store = SqliteAuditStore.open({ file, backgroundCheckpoints: true });
    await store.append({ records: [{ kind: 'test.first', at: Date.now(), data: {} }] });
    // Another writer (a CLI purge, say) holds the write lock for 400 ms; here on this thread, so the store's waiting
    // must leave the event loop free for it to finish at all.
    const other = new Database(file);
    other.prepare('BEGIN IMMEDIATE').run();
    other.prepare('CREATE TABLE IF NOT EXISTS scratch (x)').run();
    setTimeout(() => other.prepare('COMMIT').run(), 400);
    const lag = eventLoopLag();
    const t0 = Date.now();
    await store.append({ records: [{ kind: 'test.second', at: Date.now(), data: {} }] });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(350);
    // Blocked in SQLite's busy handler, the loop would not turn until the lock was given up — never, since the COMMIT
    // that gives it up runs on this loop: the append would fail after the busy timeout. A loaded machine (CI running
    // PostgreSQL tests alongside) can delay a 10 ms tick by a good part of 150 ms, so the bound leaves room for that.
    expect(lag.stop()).toBeLessThan(300);
    other.close();
    expect(await store.verify()).toMatchObject({ ok: true });
    await store.close();
  });

  /** A store whose checkpointer asks for a window at once, and is never told to go; resolves once it asked. */
  async function storeAskingForAWindow(file: string) {
    const store = SqliteAuditStore.open({ file, backgroundCheckpoints: { intervalMs: 10, restartFrames: 1 } });
    const checkpointer = (store as unknown as { checkpointer: { restart: () => void; worker: Worker } }).checkpointer;
    const append = (i: number) => store.append({ records: [{ kind: 'test.blob', at: Date.now(), data: { i } }] });
    await new Promise((r) => setTimeout(r, 500)); // the thread starts
    const asked = new Promise<void>((resolve) => (checkpointer.restart = resolve));
    await append(0);
    await asked;
    return { store, checkpointer, append };
  }

  it('lets appends go after at most 2 s when the checkpointer asked for a window and never took it', async () => {
    const { store, append } = await storeAskingForAWindow(path.join(tempDir(), 'vigil.db'));
    const t0 = Date.now();
    await append(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1_500);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect((await store.verify()).ok).toBe(true);
    await store.close();
  });

  it('lets appends go at once when the checkpointer dies while they wait for it', async () => {
    const { store, checkpointer, append } = await storeAskingForAWindow(path.join(tempDir(), 'vigil.db'));
    const t0 = Date.now();
    const waiting = append(1);
    await checkpointer.worker.terminate();
    await waiting;
    expect(Date.now() - t0).toBeLessThan(1_500);
    expect((await store.verify()).ok).toBe(true);
    await store.close();
  });
});

/**
 * A purge run ends by emptying the WAL (finishPurges), so no copy of purged pages stays on disk. When the CLI purges,
 * the gateway's background checkpointer holds the checkpoint lock now and then, and SQLite then refuses a TRUNCATE
 * checkpoint at once (busy).
 */
const require = createRequire(import.meta.url);

describe('SQLite purge and the write-ahead log', () => {
  const tempDir = useTempDir('vigil-purge-wal');

  const exchange = (id: string, at: number, text: string): NewRecord[] => [
    {
      kind: 'exchange.request',
      exchangeId: id,
      sessionId: `ses_${id}`,
      at,
      data: {
        connection: 'anthropic',
        caller: { method: 'anonymous', subject: 'anonymous' },
        client: { address: null, userAgent: null },
        session: { id: `ses_${id}`, source: 'header' },
        request: { method: 'POST', path: '/v1/messages', query: '', headers: {}, body: { size: 1, parts: [text] } },
        model: 'claude-haiku-4-5',
        stream: false,
        startedAt: at,
      },
    },
    {
      kind: 'exchange.response',
      exchangeId: id,
      sessionId: `ses_${id}`,
      at: at + 1,
      data: {
        status: 200,
        headers: {},
        body: null,
        message: null,
        usage: null,
        model: 'claude-haiku-4-5',
        stopReason: 'end_turn',
        outcome: 'ok',
        error: null,
        eventCount: 0,
        timing: { startedAt: at, firstByteMs: 1, endedAt: at + 1, durationMs: 1 },
      },
    },
  ];

  it('truncates the WAL to nothing even while another connection keeps checkpointing', async () => {
    const file = path.join(tempDir(), 'vigil.db');
    const store = SqliteAuditStore.open({ file });
    await store.append({ records: exchange('ex_old', 1_000, 'Zanzibar itinerary') });
    await store.append({ records: exchange('ex_new', 2_000, 'kept') }); // holds the chain's head: never purged

    // Another connection checkpointing in a loop, as a gateway's background checkpointer does every 250 ms.
    const checkpointer = new Worker(
      `const Database = require(${JSON.stringify(require.resolve('better-sqlite3'))});
       const { parentPort } = require('node:worker_threads');
       const db = new Database(${JSON.stringify(file)});
       let stop = false;
       parentPort.on('message', () => { stop = true; });
       (function loop() {
         for (let i = 0; i < 100; i++) db.pragma('wal_checkpoint(PASSIVE)');
         if (stop) { db.close(); parentPort.close(); } else setImmediate(loop);
       })();`,
      { eval: true },
    );
    try {
      await new Promise((r) => setTimeout(r, 100));
      const purged = await store.purgeExchanges(['ex_old'], (removal) => ({
        kind: 'retention.purged',
        at: 3_000,
        data: { removal },
      }));
      expect(purged?.removal.exchanges).toEqual(['ex_old']);
      expect(await store.finishPurges()).toEqual({});
      expect(statSync(`${file}-wal`).size).toBe(0);
    } finally {
      checkpointer.postMessage('stop');
      await new Promise((r) => checkpointer.once('exit', r));
    }
    await store.close();
  });

  it('in the gateway, has the checkpointer thread empty the WAL (its sync off the event loop) while appends wait', async () => {
    const file = path.join(tempDir(), 'vigil.db');
    const store = SqliteAuditStore.open({ file, backgroundCheckpoints: true });
    await store.append({ records: exchange('ex_old', 1_000, 'Zanzibar itinerary') });
    await store.append({ records: exchange('ex_new', 2_000, 'kept') });
    await store.purgeExchanges(['ex_old'], (removal) => ({ kind: 'retention.purged', at: 3_000, data: { removal } }));
    expect(statSync(`${file}-wal`).size).toBeGreaterThan(0);

    const finishing = store.finishPurges();
    const appended = store.append({ records: [{ kind: 'note', at: 4_000, data: { during: 'the window' } }] });
    expect(await finishing).toEqual({});
    expect((await appended).at(-1)).toMatchObject({ kind: 'note' });
    // Only the append made after the log was emptied is in it.
    const db = new Database(file, { readonly: true });
    expect(db.prepare("SELECT count(*) FROM records WHERE data LIKE '%Zanzibar%'").pluck().get()).toBe(0);
    db.close();
    expect(readFileSync(`${file}-wal`).includes('Zanzibar')).toBe(false);
    expect(readFileSync(file).includes('Zanzibar')).toBe(false);
    await store.close();
  });

  it('waits out a reader on old pages without blocking the event loop, and says so when it cannot', async () => {
    const file = path.join(tempDir(), 'vigil.db');
    const store = SqliteAuditStore.open({ file, purgeWalWaitMs: 1_000 });
    const seal = (removal: unknown): NewRecord => ({ kind: 'retention.purged', at: 3_000, data: { removal } });
    for (const [id, at] of [
      ['ex_a', 1_000],
      ['ex_b', 1_100],
      ['ex_c', 1_200],
    ] as const) {
      await store.append({ records: exchange(id, at, `text of ${id}`) });
    }
    // A reader that holds a snapshot of the old pages (a CLI export, say) while the purge runs.
    const reader = new Database(file, { readonly: true });
    const holdSnapshot = (): void => {
      reader.prepare('BEGIN').run();
      reader.prepare('SELECT count(*) FROM records').get();
    };

    // Released after 300 ms: the WAL is emptied, and no timer was kept waiting for long meanwhile.
    holdSnapshot();
    setTimeout(() => reader.prepare('COMMIT').run(), 300);
    const lag = eventLoopLag();
    await store.purgeExchanges(['ex_a'], seal);
    const first = await store.finishPurges();
    expect(lag.stop()).toBeLessThan(250);
    expect(first).toEqual({});
    expect(statSync(`${file}-wal`).size).toBe(0);

    // Never released: the purge is done, and says the WAL was kept.
    holdSnapshot();
    const second = await store.purgeExchanges(['ex_b'], seal);
    expect(second?.removal.exchanges).toEqual(['ex_b']);
    expect(await store.finishPurges()).toEqual({ walKept: true });
    reader.prepare('COMMIT').run();
    reader.close();
    await store.close();
  });

  it('gives up on the gateway checkpointer at purgeWalWaitMs while a verify holds its snapshot', async () => {
    // Went wrong: the checkpointer's truncation window waits for every verify to end, and finishPurges waited for
    // it with no deadline: a retention run (and the gateway's shutdown) waited for the whole verify.
    const file = path.join(tempDir(), 'vigil.db');
    const store = SqliteAuditStore.open({ file, backgroundCheckpoints: true, purgeWalWaitMs: 300 });
    const notes = Array.from({ length: VERIFY_PAGE + 100 }, (_, i): NewRecord => ({
      kind: 'note',
      at: i,
      data: { i },
    }));
    await store.append({ records: notes });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let paused!: () => void;
    const verifying = new Promise<void>((resolve) => (paused = resolve));
    const verify = store.verify({
      onProgress: async () => {
        paused();
        await released;
      },
    });
    await verifying;

    const started = Date.now();
    expect(await store.finishPurges()).toEqual({ walKept: true });
    expect(Date.now() - started).toBeLessThan(2_000);
    // Asked again while the first truncation still waits for its window: the same deadline, no error.
    expect(await store.finishPurges()).toEqual({ walKept: true });

    release();
    expect(await verify).toMatchObject({ ok: true });
    // The window comes once the verify ends: the log is emptied.
    expect(await store.finishPurges()).toEqual({});
    expect(statSync(`${file}-wal`).size).toBe(0);
    await store.close();
  });
});

/** A SQLite store as migration `version` left it, open for the test to add the rows a store of that age had. */
function storeAtVersion(file: string, version: number): Database.Database {
  const old = new Database(file);
  old.pragma('journal_mode = WAL');
  old.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
  SQLITE_MIGRATIONS.slice(0, version).forEach((sql, i) => {
    old.exec(sql);
    old.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(i + 1, Date.now());
  });
  return old;
}

/**
 * What `run` answers, and the query plan of the statement it prepared whose text holds `marker`, as SQLite plans it
 * for `values` (on a connection of its own to `file`).
 */
async function withPlan<T>(
  file: string,
  marker: string,
  values: unknown[],
  run: () => Promise<T>,
): Promise<{ answer: T; plan: string[] }> {
  const spy = vi.spyOn(Database.prototype, 'prepare');
  const answer = await run();
  const sql = spy.mock.calls.map(([s]) => s).find((s) => s.includes(marker))!;
  spy.mockRestore();
  const db = new Database(file, { readonly: true });
  try {
    const plan = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...values) as Array<{ detail: string }>;
    return { answer, plan: plan.map((r) => r.detail) };
  } finally {
    db.close();
  }
}

/** `n` small exchanges from `t0` on (bench/small-exchange.mjs), each response's data changed by `edit`. */
function smallExchanges(
  n: number,
  t0: number,
  edit: (i: number, response: Record<string, unknown>) => void,
): NewRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const exchange = smallExchange(i, t0);
    edit(i, exchange[2]!.data as Record<string, unknown>);
    return exchange;
  }).flat();
}

/** What migration 13 added: a store of an earlier version has none of it. */
const DROP_CACHE_COLUMNS = `
  ALTER TABLE exchange_results DROP COLUMN cache_read_tokens;
  ALTER TABLE exchange_results DROP COLUMN cache_write_tokens;
  ALTER TABLE exchange_results DROP COLUMN cache_write_1h_tokens;
`;

/** Each exchange's cache columns, read on a connection of its own. */
function cacheColumns(file: string): unknown[] {
  const db = new Database(file, { readonly: true });
  try {
    return db
      .prepare(
        'SELECT exchange_id, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens FROM exchange_results ORDER BY 1',
      )
      .all();
  } finally {
    db.close();
  }
}

describe('SQLite migration 13: cache reads and writes apart', () => {
  const tempDir = useTempDir('vigil-migrate-13');

  it('fills the cache tokens of exchanges recorded before, from their response records', async () => {
    const file = path.join(tempDir(), 'vigil.db');
    const store = SqliteAuditStore.open({ file });
    const records = smallExchanges(3, Date.UTC(2025, 0, 15, 9), (i, response) => {
      if (i === 0) response.usage = null; // no usage reported: stays null
      if (i === 1) {
        response.usage = {
          input_tokens: 10,
          cache_read_input_tokens: 1000,
          cache_creation_input_tokens: 300,
          cache_creation: { ephemeral_5m_input_tokens: 100, ephemeral_1h_input_tokens: 200 },
          output_tokens: 5,
        };
      }
      // A count that is not one is taken as 0, as the index takes it when it is written.
      if (i === 2) response.usage = { input_tokens: 7, cache_read_input_tokens: 'many', output_tokens: 1 };
    });
    await store.append({ records });
    const rowsNow = cacheColumns(file);
    await store.close();
    expect(rowsNow).toEqual([
      { exchange_id: 'ex_0', cache_read_tokens: null, cache_write_tokens: null, cache_write_1h_tokens: null },
      { exchange_id: 'ex_1', cache_read_tokens: 1000, cache_write_tokens: 300, cache_write_1h_tokens: 200 },
      { exchange_id: 'ex_2', cache_read_tokens: 0, cache_write_tokens: 0, cache_write_1h_tokens: 0 },
    ]);
    // As version 12 left them: the columns did not exist.
    const old = new Database(file);
    old.exec(`${DROP_CACHE_COLUMNS} DELETE FROM schema_migrations WHERE version >= 13;`);
    old.close();

    const upgraded = SqliteAuditStore.open({ file });
    try {
      // Filled from the ledger exactly as the gateway indexes them now.
      expect(cacheColumns(file)).toEqual(rowsNow);
      const raw = new Database(file);
      expect(() => raw.exec('UPDATE exchange_results SET cache_read_tokens = 1')).toThrow(/append-only/);
      raw.close();
      expect((await upgraded.verify()).ok).toBe(true);
    } finally {
      await upgraded.close();
    }
  });
});

describe('SQLite migration 12: why each answer stopped', () => {
  const tempDir = useTempDir('vigil-migrate-12');

  it('fills the stop reason of exchanges recorded before, from their response records', async () => {
    const file = path.join(tempDir(), 'vigil.db');
    const store = SqliteAuditStore.open({ file });
    const records = smallExchanges(3, Date.UTC(2025, 0, 15, 9), (i, response) => {
      if (i === 1) response.stopReason = 'refusal';
    });
    await store.append({ records });
    await store.close();
    // As version 11 left them: no stop reason in the index (the column did not exist), and version 11 recorded.
    const old = new Database(file);
    old.exec(`
      DROP INDEX exchange_results_stop_reason;
      ALTER TABLE exchange_results DROP COLUMN stop_reason;
      ${DROP_CACHE_COLUMNS}
      DELETE FROM schema_migrations WHERE version >= 12;
    `);
    old.close();

    // A reader cannot upgrade it, and says so rather than failing on a column it does not find.
    expect(() => SqliteAuditStore.open({ file, readonly: true })).toThrow(
      /is at schema version 11; this Vigil reads version 13/,
    );
    const upgraded = SqliteAuditStore.open({ file });
    try {
      const ids = async (stopReason: string) =>
        (await upgraded.listExchangesFiltered({ stopReason })).items.map((x) => x.id);
      expect(await ids('refusal')).toEqual(['ex_1']);
      expect(await ids('end_turn')).toEqual(['ex_2', 'ex_0']);
      // Still append-only once filled.
      const raw = new Database(file);
      expect(() => raw.exec("UPDATE exchange_results SET stop_reason = 'x'")).toThrow(/append-only/);
      raw.close();
      expect((await upgraded.verify()).ok).toBe(true);
    } finally {
      await upgraded.close();
    }
  });
});

describe('SQLite migration 7: which full-text rows are whose', () => {
  const tempDir = useTempDir('vigil-migrate-7');

  it('maps the full-text rows a store already had, and numbers new ones after them', async () => {
    const file = path.join(tempDir(), 'vigil.db');
    // A store as version 6 left it, with search text already indexed.
    const old = storeAtVersion(file, 6);
    old.prepare('INSERT INTO exchange_text (exchange_id, text) VALUES (?, ?)').run('ex_a', 'alpha words');
    old.prepare('INSERT INTO exchange_text (exchange_id, text) VALUES (?, ?)').run('ex_b', 'beta words');
    old.close();

    const store = SqliteAuditStore.open({ file });
    await store.append({ records: [], searchText: [{ exchangeId: 'ex_c', text: 'gamma words' }] });
    store.indexPendingText();
    await store.close();

    const db = new Database(file, { readonly: true });
    const rows = db
      .prepare(
        `SELECT m.text_rowid, m.exchange_id, t.text FROM exchange_text_rows m
         JOIN exchange_text t ON t.rowid = m.text_rowid ORDER BY m.text_rowid`,
      )
      .all();
    db.close();
    expect(rows).toEqual([
      { text_rowid: 1, exchange_id: 'ex_a', text: 'alpha words' },
      { text_rowid: 2, exchange_id: 'ex_b', text: 'beta words' },
      { text_rowid: 3, exchange_id: 'ex_c', text: 'gamma words' },
    ]);
  });
});

describe('SQLite migration 8: blob refs by row id', () => {
  const tempDir = useTempDir('vigil-migrate-8');

  it('carries every ref over to the blob’s row id, and refers new records the same way', async () => {
    const file = path.join(tempDir(), 'vigil.db');
    // A store as version 7 left it: two blobs, refs by hash from two records.
    const old = storeAtVersion(file, 7);
    const [h1, h2] = ['a'.repeat(64), 'b'.repeat(64)];
    old.prepare('INSERT INTO blobs (id, hash, data) VALUES (?, ?, ?)').run(7, h1, Buffer.from('one'));
    old.prepare('INSERT INTO blobs (id, hash, data) VALUES (?, ?, ?)').run(9, h2, Buffer.from('two'));
    const ref = old.prepare('INSERT INTO blob_refs (blob_hash, record_seq) VALUES (?, ?)');
    ref.run(h1, 1001);
    ref.run(h2, 1001);
    ref.run(h2, 1002);
    old.close();

    const store = SqliteAuditStore.open({ file });
    const response = { kind: 'exchange.response', at: 1, data: { body: { size: 3, parts: [{ $blob: h2 }] } } };
    const stored = (await store.append({ records: [response] })).at(-1);
    await store.close();

    const db = new Database(file, { readonly: true });
    const refs = db.prepare('SELECT blob_id, record_seq FROM blob_refs ORDER BY blob_id, record_seq').all();
    db.close();
    expect(refs).toEqual([
      { blob_id: 7, record_seq: 1001 },
      { blob_id: 9, record_seq: stored!.seq },
      { blob_id: 9, record_seq: 1001 },
      { blob_id: 9, record_seq: 1002 },
    ]);
  });
});

describe('SQLite blob refs of a conversation (ref-bases.ts)', () => {
  const tempDir = useTempDir('vigil-ref-bases');
  const hashOf = (text: string): string => createHash('sha256').update(text).digest('hex');
  const blob = (text: string): { hash: string; data: Buffer } => ({ hash: hashOf(text), data: Buffer.from(text) });
  const a = blob('message a');
  const b = blob('message b');
  const c = blob('message c');
  const d = blob('message d');
  const missing = blob('a message never written');
  const request = (id: string, refs: readonly { hash: string }[], session = 'ses_1'): NewRecord => ({
    kind: 'exchange.request',
    exchangeId: id,
    sessionId: session,
    at: 1,
    data: {
      connection: 'anthropic',
      caller: { method: 'anonymous', subject: 'anonymous' },
      client: { address: '127.0.0.1', userAgent: null },
      session: { id: session, source: 'header' },
      request: {
        method: 'POST',
        path: '/v1/messages',
        query: '',
        headers: {},
        body: { size: 2, parts: ['[', ...refs.map((r) => ({ $blob: r.hash })), ']'] },
      },
      model: null,
      stream: false,
      startedAt: 1,
    },
  });
  const rowsOf = (file: string, seq: number): number => {
    const db = new Database(file, { readonly: true });
    const n = db.prepare('SELECT count(*) FROM blob_refs WHERE record_seq = ?').pluck().get(seq) as number;
    db.close();
    return n;
  };

  it('indexes only what a request adds to the one before it, and never takes a rolled-back one for a base', async () => {
    // A long session's request refers to hundreds of message groups it resent; one blob_refs row each was a page
    // written by every commit. Went wrong in the first draft: a base remembered before its transaction committed was
    // a position a later record could take.
    const file = path.join(tempDir(), 'vigil.db');
    const store = SqliteAuditStore.open({ file });
    const first = (await store.append({ blobs: [a, b, c], records: [request('ex_1', [a, b, c])] })).at(-1)!;
    await expect(store.append({ blobs: [d], records: [request('ex_2', [a, b, c, d, missing])] })).rejects.toThrow(
      /does not hold/,
    );
    const third = (await store.append({ blobs: [d], records: [request('ex_3', [a, b, c, d])] })).at(-1)!;
    const other = (await store.append({ records: [request('ex_4', [a, b], 'ses_2')] })).at(-1)!;
    await store.close();

    expect(rowsOf(file, first.seq)).toBe(3);
    expect(rowsOf(file, third.seq)).toBe(1); // d: a, b and c are ex_1's
    expect(rowsOf(file, other.seq)).toBe(2); // another conversation: no base
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT record_seq, base_seq FROM blob_ref_bases').all()).toEqual([
      { record_seq: third.seq, base_seq: first.seq },
    ]);
    db.close();
  });
});

describe('SQLite listings under filters few exchanges match', () => {
  const tempDir = useTempDir('vigil-filters');
  const T0 = Date.UTC(2025, 0, 15, 9, 0, 0);

  /** A store of `n` small exchanges (see small-exchange.mjs), exchange i's caller in the groups `groupsOf(i)`. */
  async function storeOf(
    n: number,
    groupsOf: (i: number) => string[],
  ): Promise<{ file: string; store: SqliteAuditStore }> {
    const file = path.join(tempDir(), 'vigil.db');
    const store = SqliteAuditStore.open({ file });
    const records = Array.from({ length: n }, (_, i) => {
      const exchange = smallExchange(i, T0);
      (exchange[0]!.data as { caller: Record<string, unknown> }).caller.groups = groupsOf(i);
      return exchange;
    }).flat();
    await store.append({ records });
    return { file, store };
  }

  it('session list: applies the filter to each exchange of its walk before looking for a newer one in its session', async () => {
    // Went wrong: merged into the walk's loop, the look for a newer matching exchange of the same session (a
    // correlated subquery) ran for every exchange of the store, before the filter: a group that few exchanges are in
    // took 67 s over a million exchanges in sessions of 200 (`bench/session-reads.mjs`). Its time is the bench's to
    // measure; the shape of the plan, which decides it, is checked here.
    const { file, store } = await storeOf(200, (i) => (i === 42 ? ['auditors'] : []));
    expect((await store.listSessions({ group: 'auditors' })).items.map((s) => [s.id, s.exchanges])).toEqual([
      ['s-2', 1],
    ]);
    await store.close();

    const db = new Database(file, { readonly: true });
    try {
      const filter = { group: 'auditors' };
      const cursor = { lastAt: T0 + 150 * 60_000, id: 's-7' };
      for (const c of [undefined, cursor]) {
        const { sql, params } = sqliteAggregate((d) => sessionListStatement(d, c, 50), filter);
        const plan = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{
          id: number;
          parent: number;
          detail: string;
        }>;
        const node = (detail: RegExp) => plan.find((p) => detail.test(p.detail));
        const newest = node(/^MATERIALIZE newest$/)!;
        const walk = node(/^CO-ROUTINE w$/);
        // The walk is a loop of its own inside `newest`, the filter joined in it; the look for a newer exchange is
        // made on the rows it hands out.
        expect(walk?.parent).toBe(newest.id);
        const under = (p: { parent: number }, ancestor: number): boolean =>
          p.parent === ancestor || plan.some((q) => q.id === p.parent && under(q, ancestor));
        expect(under(node(/^SCAN e USING INDEX exchanges_started/)!, walk!.id)).toBe(true);
        expect(under(node(/^SEARCH g EXISTS/)!, walk!.id)).toBe(true);
        const look = plan.find((p) => /^CORRELATED SCALAR SUBQUERY/.test(p.detail) && under(p, newest.id))!;
        expect(under(look, walk!.id)).toBe(false);
      }
    } finally {
      db.close();
    }
  });

  /**
   * The first page of exchanges matching `filter` (one key, one value), and the query plan of the statement that read
   * it, as SQLite plans it for that value.
   */
  async function pageAndPlan(
    file: string,
    store: SqliteAuditStore,
    filter: { group: string } | { stopReason: string } | { outcome: 'ok' | 'upstream_error' },
  ): Promise<{ ids: string[]; plan: string[] }> {
    const { answer, plan } = await withPlan(file, 'FROM exchanges e', [Object.values(filter)[0], 51], () =>
      store.listExchangesFiltered({ ...filter, limit: 50 }),
    );
    return { ids: answer.items.map((x) => x.id), plan };
  }

  it('group, issuer, masking type: reads one few exchanges match from its own index, tests one many match on each exchange', async () => {
    // Went wrong: tested on each exchange walked newest first, a group almost nobody is in read the whole store to
    // fill a page (~0.5 s per million exchanges); read from its index, a group everybody is in read all of it and
    // sorted it. SQLite has no statistics to choose by: the store counts the filter's rows, up to 2,000.
    const { file, store } = await storeOf(2100, (i) => ['engineering', ...(i % 500 === 7 ? ['auditors'] : [])]);
    const few = await pageAndPlan(file, store, { group: 'auditors' });
    const many = await pageAndPlan(file, store, { group: 'engineering' });
    await store.close();
    expect(few.ids).toEqual(['ex_2007', 'ex_1507', 'ex_1007', 'ex_507', 'ex_7']);
    expect(many.ids).toEqual(Array.from({ length: 50 }, (_, k) => `ex_${2099 - k}`));
    expect(few.plan).toContain('SEARCH exchange_groups USING PRIMARY KEY (group_name=?)');
    expect(few.plan.some((d) => d.startsWith('SCAN e'))).toBe(false);
    expect(many.plan.some((d) => d.startsWith('SCAN e USING INDEX exchanges_started'))).toBe(true);
  });

  // Refusals and failures are what an auditor looks for, and few answers are: tested on each exchange walked newest
  // first, finding them read the whole store (an outcome: 5–15 ms at 200,000 exchanges, bench/session-reads.mjs).
  it.each([
    {
      what: 'stop reason',
      few: { stopReason: 'refusal' },
      many: { stopReason: 'end_turn' },
      rare: { stopReason: 'refusal' },
      index: 'exchange_results_stop_reason (stop_reason=?)',
    },
    {
      what: 'outcome',
      few: { outcome: 'upstream_error' as const },
      many: { outcome: 'ok' as const },
      rare: { outcome: 'upstream_error', status: 529 },
      index: 'exchange_results_outcome (outcome=?)',
    },
  ])(
    '$what: reads a rare value from its index, tests a common one on each exchange',
    async ({ few, many, rare, index }) => {
      const file = path.join(tempDir(), 'vigil.db');
      const store = SqliteAuditStore.open({ file });
      const isRare = (i: number): boolean => i % 500 === 7;
      await store.append({
        records: smallExchanges(2100, T0, (i, response) => {
          if (isRare(i)) Object.assign(response, rare);
        }),
      });
      const fewPage = await pageAndPlan(file, store, few);
      const manyPage = await pageAndPlan(file, store, many);
      await store.close();
      expect(fewPage.ids).toEqual(['ex_2007', 'ex_1507', 'ex_1007', 'ex_507', 'ex_7']);
      const newest = Array.from({ length: 2100 }, (_, k) => 2099 - k).filter((i) => !isRare(i));
      expect(manyPage.ids).toEqual(newest.slice(0, 50).map((i) => `ex_${i}`));
      expect(fewPage.plan.join('\n')).toContain(`USING INDEX ${index}`);
      expect(fewPage.plan.some((d) => d.startsWith('SCAN e'))).toBe(false);
      expect(manyPage.plan.some((d) => d.startsWith('SCAN e USING INDEX exchanges_started'))).toBe(true);
    },
  );
});

describe('SQLite usage report', () => {
  const tempDir = useTempDir('vigil-usage');

  it('reads a time span in time order, and a filtered report by the filter’s own index', async () => {
    // Went wrong: left to choose, SQLite grouped a whole-store report by caller through the caller index, looking each
    // result up out of order (1.1 s for 200,000 exchanges; 0.2 s in time order), and read that index whole for a
    // recent span too (15 ms, where the time index took 1.6).
    const file = path.join(tempDir(), 'vigil.db');
    const store = SqliteAuditStore.open({ file });
    const T0 = Date.UTC(2025, 0, 15, 9, 0, 0);
    await store.append({ records: smallExchanges(300, T0, () => {}) });
    const planOf = async (request: Parameters<SqliteAuditStore['usage']>[0]) => {
      const values = [request.since, request.caller, (request.limit ?? 100) + 1].filter((v) => v !== undefined);
      const { answer, plan } = await withPlan(file, 'AS in_progress', values, () => store.usage(request));
      return { report: answer, plan: plan.join(' | ') };
    };

    const whole = await planOf({ by: 'caller' });
    expect(whole.plan).toContain('SCAN e USING INDEX exchanges_started');
    expect(whole.report.items.reduce((n, r) => n + r.exchanges, 0)).toBe(300);
    const recent = await planOf({ by: 'caller', since: T0 + 290 * 60_000 });
    expect(recent.plan).toContain('SEARCH e USING INDEX exchanges_started (started_at>?)');
    expect(recent.report.items.reduce((n, r) => n + r.exchanges, 0)).toBe(10);
    const one = await planOf({ by: 'day', caller: 'alice' });
    expect(one.plan).not.toContain('exchanges_started');
    await store.close();
  });
});

describe('SQLite search for a word many exchanges hold', () => {
  const tempDir = useTempDir('vigil-search-walk');

  it('walks the exchanges newest first, and pages, filters and snippets as a search of few matches does', async () => {
    const file = path.join(tempDir(), 'vigil.db');
    const store = SqliteAuditStore.open({ file });
    const T0 = Date.UTC(2025, 0, 15, 9, 0, 0);
    // 2,400 exchanges; every one but each seventh says "the" (more than 2,000 matches: the walk), every 500th
    // "marmalade" (few: read from the index).
    const n = 2400;
    const says = (i: number): boolean => i % 7 !== 0;
    await store.append({
      records: Array.from({ length: n }, (_, i) => smallExchange(i, T0)).flat(),
      searchText: Array.from({ length: n }, (_, i) => ({
        exchangeId: `ex_${i}`,
        text: `${says(i) ? 'the ' : ''}build ${i}${i % 500 === 3 ? ' marmalade' : ''}`,
      })),
    });
    const newestSaying = (from: number, count: number, keep = (_i: number) => true): string[] => {
      const out: string[] = [];
      for (let i = from; i >= 0 && out.length < count; i--) if (says(i) && keep(i)) out.push(`ex_${i}`);
      return out;
    };

    const prepare = vi.spyOn(Database.prototype, 'prepare');
    const first = await store.search('the', { limit: 50 });
    const walked = prepare.mock.calls.some(([sql]) =>
      sql.includes('CROSS JOIN exchange_text_rows x ON x.exchange_id = e.id'),
    );
    prepare.mockRestore();
    expect(walked).toBe(true);
    expect(first.items.map((h) => h.exchangeId)).toEqual(newestSaying(n - 1, 50));
    expect(first.items[0]!.snippet).toBe('«the» build 2399');
    expect(first.items.every((h) => h.snippet.startsWith('«the» build '))).toBe(true);
    const second = await store.search('the', { limit: 50, cursor: first.nextCursor! });
    const last = Number(first.items.at(-1)!.exchangeId.slice(3));
    expect(second.items.map((h) => h.exchangeId)).toEqual(newestSaying(last - 1, 50));
    // A filter (one caller of 50: small-exchange.mjs's u<i % 50>) over the walk, past several of its steps.
    const mine = await store.search('the', { limit: 20, filter: { caller: 'u3' } });
    expect(mine.items.map((h) => h.exchangeId)).toEqual(newestSaying(n - 1, 20, (i) => i % 50 === 3));
    // Every match, page by page: the walk reaches the oldest exchange and says there is no next page.
    const all: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.search('the', { limit: 1000, ...(cursor ? { cursor } : {}) });
      all.push(...page.items.map((h) => h.exchangeId));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(all).toEqual(newestSaying(n - 1, n));
    expect((await store.search('marmalade')).items.map((h) => h.exchangeId)).toEqual([
      'ex_2003',
      'ex_1503',
      'ex_1003',
      'ex_503',
      'ex_3',
    ]);
    await store.close();
  });
});
