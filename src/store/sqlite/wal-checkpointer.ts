/**
 * Copies the SQLite write-ahead log back into the database file from a worker thread, so the gateway's own thread
 * never does. Left to SQLite, the commit that crosses `wal_autocheckpoint` pages copies the whole log and syncs the
 * file before it returns: on the bench workload a tenth of the store's CPU, spent in stalls of tens of milliseconds
 * on the request that happened to cross the line (p99). Here a second connection, on its own thread, runs a PASSIVE
 * checkpoint every `intervalMs`: it copies what is committed without waiting for, or blocking, the writer. The
 * writer's own checkpoint still runs when the log passes `wal_autocheckpoint`, but finds little left to copy; it is
 * what lets the next commit start the log over (under load a background checkpoint rarely catches up exactly between
 * two commits), which keeps the log bounded.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** Runs in the worker (CommonJS, evaluated from a string: the same code whether Vigil runs from dist/ or src/). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = 1000');
const checkpoint = () => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message || err) });
  }
};
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

export class WalCheckpointer {
  private readonly worker: Worker;
  private readonly exited: Promise<void>;

  private constructor(file: string, intervalMs: number, onError: (message: string) => void) {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file, intervalMs, driver } });
    this.worker.on('message', (m: { error?: string }) => {
      if (m.error) onError(m.error);
    });
    this.worker.on('error', (err) => onError(err.message));
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    // A gateway that is otherwise done must not be kept alive by its checkpointer.
    this.worker.unref();
  }

  /** Start checkpointing `file` (an existing SQLite database in WAL mode) every `intervalMs`. */
  static start(file: string, options: { intervalMs?: number; onError?: (message: string) => void } = {}) {
    return new WalCheckpointer(file, options.intervalMs ?? 250, options.onError ?? (() => {}));
  }

  /** Stop the thread and close its connection. */
  async stop(): Promise<void> {
    this.worker.postMessage('stop');
    const timeout = setTimeout(() => void this.worker.terminate(), 2_000);
    await this.exited;
    clearTimeout(timeout);
  }
}
