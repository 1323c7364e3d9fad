/**
 * The admin API's reads of a SQLite store, on a thread of their own. better-sqlite3 runs a statement on the thread
 * that calls it, so a read on the gateway's own connection held its event loop — every call being forwarded, every
 * stream — for as long as the read took: a search or a filtered list over a large store takes tens to hundreds of
 * milliseconds (README, "Reading recordings back"). Here they run on a read-only connection in a worker thread;
 * writes, and the reads the data path makes, stay on the gateway's connection.
 *
 * The worker runs the compiled store (`dist/`): from the TypeScript sources (the tests), the build next to them, which
 * `npm test` makes first, as it does for the CLI the tests run.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { VigilError, type VigilErrorCode } from '../../errors.js';
import type { AuditStore } from '../audit-store.js';
import type { SqliteAuditStore } from './sqlite-audit-store.js';

/**
 * The store's reads that the admin API makes and whose time grows with the store, or with a session: these go to the
 * thread. Reads of one exchange, of blobs by hash or of records by position stay on the gateway's connection: each is
 * short, and an export makes thousands of them, where a round trip to the thread each (~0.1 ms) made a 720-exchange
 * export 200 ms instead of 35.
 */
export const THREAD_READS = [
  'listSessions',
  'listExchanges',
  'listExchangesFiltered',
  'sessionTotals',
  'usage',
  'search',
  'listAccessLog',
  'sessionRecords',
] as const satisfies ReadonlyArray<keyof AuditStore>;
type ThreadRead = (typeof THREAD_READS)[number];

/** How long closing waits for a read still running in the thread (a gateway stopping). */
const CLOSE_WAIT_MS = 2_000;

/** Runs in the worker (CommonJS, evaluated from a string: see compiledStoreModule). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.module).then(({ SqliteAuditStore }) => {
  const store = SqliteAuditStore.open({ file: workerData.file, readonly: true });
  parentPort.on('message', async ({ id, method, args }) => {
    if (method === 'close') {
      await store.close();
      parentPort.postMessage({ id });
      return;
    }
    try {
      parentPort.postMessage({ id, value: await store[method](...args) });
    } catch (err) {
      parentPort.postMessage({ id, error: { message: String(err && err.message), code: err && err.code, vigil: err && err.name === 'VigilError' } });
    }
  });
  parentPort.postMessage({ ready: true });
}).catch((err) => parentPort.postMessage({ failed: String((err && err.message) || err) }));
`;

/** The compiled store module the worker imports. */
function compiledStoreModule(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.js')) return new URL('./sqlite-audit-store.js', import.meta.url).href;
  // src/store/sqlite/*.ts → dist/store/sqlite/sqlite-audit-store.js
  const built = fileURLToPath(new URL('../../../dist/store/sqlite/sqlite-audit-store.js', import.meta.url));
  if (!existsSync(built)) throw new Error(`${built} is missing: run \`npm run build\` first`);
  return pathToFileURL(built).href;
}

interface Reply {
  readonly id: number;
  readonly value?: unknown;
  readonly error?: { message: string; code?: string; vigil: boolean };
}

/** One thread and the calls it has not answered yet. */
interface Thread {
  readonly worker: Worker;
  readonly ready: Promise<void>;
  readonly calls: Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>;
}

export class SqliteReadWorker {
  private thread: Thread | null = null;
  private nextId = 0;
  private closed = false;
  private readonly module: string;

  constructor(
    private readonly file: string,
    /** How long {@link close} waits for a read still running (tests shorten it). */
    private readonly closeWaitMs = CLOSE_WAIT_MS,
  ) {
    this.module = compiledStoreModule();
    this.thread = this.start();
  }

  /** A thread with its own read-only connection; one that fails or stops is replaced at the next call. */
  private start(): Thread {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file: this.file, module: this.module } });
    // While it has nothing to answer, the thread keeps nothing alive.
    worker.unref();
    const calls: Thread['calls'] = new Map();
    let started!: { resolve: () => void; reject: (err: Error) => void };
    const thread: Thread = {
      worker,
      calls,
      ready: new Promise((resolve, reject) => (started = { resolve, reject })),
    };
    thread.ready.catch(() => undefined);
    const fail = (err: Error): void => {
      if (this.thread === thread) this.thread = null;
      started.reject(err); // a thread that stops before it is ready fails the calls waiting for it too
      for (const call of calls.values()) call.reject(err);
      calls.clear();
    };
    worker.on('message', (m: Reply & { ready?: true; failed?: string }) => {
      if (m.ready) return started.resolve();
      if (m.failed !== undefined) {
        // The next call starts another.
        fail(new Error(`the store's read thread did not start: ${m.failed}`));
        void worker.terminate();
        return;
      }
      const call = calls.get(m.id);
      if (!call) return;
      calls.delete(m.id);
      if (calls.size === 0) worker.unref();
      if (m.error) call.reject(toError(m.error));
      else call.resolve(m.value);
    });
    worker.on('error', (err) => fail(new Error(`the store's read thread failed: ${err.message}`)));
    worker.on('exit', () => fail(new Error("the store's read thread stopped")));
    return thread;
  }

  /** Call a read of the store in the thread. */
  async call(method: ThreadRead, args: readonly unknown[]): Promise<unknown> {
    if (this.closed) throw new Error("the store's read thread is closed");
    const thread = (this.thread ??= this.start());
    await thread.ready;
    // It may have stopped since it became ready: its calls were failed then, and this one would wait forever.
    if (this.thread !== thread) throw new Error("the store's read thread stopped");
    return this.send(thread, method, args);
  }

  private send(thread: Thread, method: ThreadRead | 'close', args: readonly unknown[]): Promise<unknown> {
    const id = this.nextId++;
    thread.worker.ref();
    return new Promise((resolve, reject) => {
      thread.calls.set(id, { resolve, reject });
      thread.worker.postMessage({ id, method, args });
    });
  }

  /**
   * Close the thread's connection and stop it. A read still running may finish first, for up to `closeWaitMs`; then
   * the thread is stopped wherever it is (a read-only connection loses nothing) and the read fails.
   */
  async close(): Promise<void> {
    this.closed = true;
    const thread = this.thread;
    if (!thread) return;
    const closed = thread.ready.then(() => this.send(thread, 'close', [])).catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise((resolve) => (timer = setTimeout(resolve, this.closeWaitMs)))]);
    clearTimeout(timer);
    await thread.worker.terminate();
  }
}

/** The thread's error as the store's own would be: with its code, so a caller can tell a store that is unavailable. */
function toError(e: NonNullable<Reply['error']>): Error {
  if (e.vigil && e.code) return new VigilError(e.code as VigilErrorCode, e.message);
  return Object.assign(new Error(e.message), e.code === undefined ? {} : { code: e.code });
}

/**
 * `store` with its {@link THREAD_READS} made by `reader` on its thread; everything else (writes, and the short reads)
 * is the store's own.
 */
export function readsOffThread(store: SqliteAuditStore, reader: SqliteReadWorker): AuditStore {
  const reads = new Set<PropertyKey>(THREAD_READS);
  return new Proxy(store, {
    get(target, property) {
      if (!reads.has(property)) {
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      }
      if (property === 'search') {
        // What the writer has not put in the full-text index yet is indexed first, as the store's own search does.
        return async (...args: unknown[]) => {
          target.indexPendingTextQuietly();
          return reader.call('search', args);
        };
      }
      return (...args: unknown[]) => reader.call(property as ThreadRead, args);
    },
  });
}
