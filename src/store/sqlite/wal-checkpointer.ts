/**
 * Copies the SQLite write-ahead log back into the database file from a worker thread, and starts the log over, so
 * the gateway's own thread never checkpoints.
 *
 * Left to SQLite, the commit that crosses `wal_autocheckpoint` pages checkpoints in the writer: it copies what is
 * left of the log and syncs the database file before it returns — an fsync, 50–90 ms on a virtual disk, during which
 * the gateway's event loop stands still and every stream in flight with it (p99). A background PASSIVE checkpoint
 * does not end that on its own: under load, commits made during its own sync keep it from ever catching up exactly,
 * so the log is never started over and grows until the writer's checkpoint fires.
 *
 * Here a second connection, on its own thread, runs a PASSIVE checkpoint every `intervalMs`: it copies what is
 * committed and syncs without waiting for, or blocking, the writer. When the log passes `restartFrames`, it asks the
 * store for a window (`onRestartWanted`): the store holds its appends — they wait asynchronously, while the event loop
 * goes on serving — and calls `restart()`; the thread then runs a RESTART checkpoint (the few frames since its last
 * pass, a sync, and the log starts over) and reports back (`onRestarted`), and the store lets its appends go. The
 * writer keeps a far higher `wal_autocheckpoint` as a safety valve should this thread stop.
 *
 * After a purge the store asks for the log to be emptied (`truncate()`): the thread asks for a window the same way,
 * and runs a TRUNCATE checkpoint in it instead — its sync, too, off the gateway's thread.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** The longest a writer holds its appends for a window, whatever becomes of the thread. */
export const RESTART_WINDOW_MAX_MS = 2_000;

/** Runs in the worker (CommonJS, evaluated from a string: the same code whether Vigil runs from dist/ or src/). */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
// Short waits: during a window the writer holds its appends for at most RESTART_WINDOW_MAX_MS, and a RESTART can wait
// twice (for another process's writer, then for readers), so each wait stays well under half of that.
db.pragma('busy_timeout = ' + workerData.busyTimeoutMs);
const fail = (err) => parentPort.postMessage({ error: String((err && err.message) || err) });
let waitingForWindow = false;
// After a RESTART the log keeps its size until the writer's next commit starts it over (which that commit may also
// fail to do, when it meets this connection reading): while the log is exactly as the RESTART left it, the writer has
// not written since, and another window would only churn.
let restartedAt = -1;
// A RESTART that found a reader in the way (busy): no new window before this time, backing off while it lasts.
let retryAt = 0;
let backoffMs = 0;
// The store asked for the log to be emptied (after a purge): the next window truncates it, waiting this long at most.
let truncateBusyMs = null;
const askForWindow = () => {
  waitingForWindow = true;
  parentPort.postMessage({ restartWanted: true });
};
// A checkpoint that failed (a full disk: the database file cannot grow) is tried again after a pause that doubles up
// to a minute, rather than every interval: each failure is reported, and an hour of full disk was 14,400 of them.
let failedUntil = 0;
let failPauseMs = 0;
const checkpoint = () => {
  if (waitingForWindow || Date.now() < failedUntil) return;
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)');
    failPauseMs = 0;
    if (r.log > workerData.restartFrames && r.log !== restartedAt && Date.now() >= retryAt) askForWindow();
  } catch (err) {
    failPauseMs = Math.min(Math.max(failPauseMs * 2, 1000), 60000);
    failedUntil = Date.now() + failPauseMs;
    fail(err);
  }
};
const timer = setInterval(checkpoint, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m && m.truncate !== undefined) {
    truncateBusyMs = m.truncate;
    if (!waitingForWindow) askForWindow();
    return;
  }
  if (m === 'restart') {
    const truncating = truncateBusyMs !== null;
    let result = null;
    try {
      if (truncating) db.pragma('busy_timeout = ' + truncateBusyMs);
      result = db.pragma(truncating ? 'wal_checkpoint(TRUNCATE)' : 'wal_checkpoint(RESTART)')[0];
    } catch (err) {
      fail(err);
    } finally {
      if (truncating) db.pragma('busy_timeout = ' + workerData.busyTimeoutMs);
    }
    truncateBusyMs = null;
    if (result && result.busy === 0) {
      restartedAt = result.log;
      backoffMs = 0;
    } else if (!truncating) {
      backoffMs = Math.min(Math.max(backoffMs * 2, 1000), 60000);
      retryAt = Date.now() + backoffMs;
    }
    waitingForWindow = false;
    const emptied = truncating ? { truncated: !!result && result.busy === 0 } : {};
    parentPort.postMessage({ restarted: true, ...emptied });
    return;
  }
  if (m !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

export interface WalCheckpointerOptions {
  /** How often the background PASSIVE checkpoint runs. Default 250 ms. */
  readonly intervalMs?: number;
  /** Log size, in frames (pages), past which the thread asks for a window to start the log over. */
  readonly restartFrames: number;
  /** Told when a checkpoint fails (the store goes on; SQLite's own checkpoint is the backstop). */
  readonly onError?: (message: string) => void;
  /** The thread wants the writer to pause: call `restart()` once nothing is being written. */
  readonly onRestartWanted: () => void;
  /** The window is over (the log was started over, or the attempt failed, or the thread stopped): write again. */
  readonly onRestarted: () => void;
}

export class WalCheckpointer {
  private readonly worker: Worker;
  private readonly exited: Promise<void>;
  /** Told whether the log was emptied, once the window a `truncate()` asked for is over. */
  private truncated: ((emptied: boolean) => void) | null = null;
  private gone = false;

  /** Start checkpointing `file` (an existing SQLite database in WAL mode). */
  constructor(file: string, options: WalCheckpointerOptions) {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const onError = options.onError ?? (() => {});
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        file,
        driver,
        intervalMs: options.intervalMs ?? 250,
        restartFrames: options.restartFrames,
        busyTimeoutMs: Math.floor(RESTART_WINDOW_MAX_MS / 4),
      },
    });
    this.worker.on('message', (m: { error?: string; restartWanted?: true; restarted?: true; truncated?: boolean }) => {
      if (m.error) onError(m.error);
      if (m.restartWanted) options.onRestartWanted();
      if (m.restarted) options.onRestarted();
      if (m.truncated !== undefined) this.settleTruncation(m.truncated);
    });
    this.worker.on('error', (err) => onError(err.message));
    // A thread that is gone answers nothing: whoever waits for a window must not wait forever.
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', () => {
        this.gone = true;
        options.onRestarted();
        this.settleTruncation(false);
        resolve();
      }),
    );
    // A gateway that is otherwise done must not be kept alive by its checkpointer.
    this.worker.unref();
  }

  /** Run the RESTART checkpoint now (after `onRestartWanted`, once the writer holds its appends). */
  restart(): void {
    this.worker.postMessage('restart');
  }

  /**
   * Empty the log: in a window asked for at once (see `onRestartWanted`), checkpoint all of it and truncate it to
   * nothing, waiting at most `busyMs` for another connection in the way. Resolves whether the log was emptied.
   */
  truncate(busyMs: number): Promise<boolean> {
    if (this.gone) return Promise.resolve(false);
    if (this.truncated !== null) throw new Error('a truncation of the write-ahead log is already under way');
    const done = new Promise<boolean>((resolve) => (this.truncated = resolve));
    // Someone waits for the answer: until it comes, the thread keeps the process alive.
    this.worker.ref();
    this.worker.postMessage({ truncate: busyMs });
    return done;
  }

  private settleTruncation(emptied: boolean): void {
    const settle = this.truncated;
    this.truncated = null;
    if (!this.gone) this.worker.unref();
    settle?.(emptied);
  }

  /** Stop the thread and close its connection. */
  async stop(): Promise<void> {
    this.worker.postMessage('stop');
    const timeout = setTimeout(() => void this.worker.terminate(), 2_000);
    await this.exited;
    clearTimeout(timeout);
  }
}
