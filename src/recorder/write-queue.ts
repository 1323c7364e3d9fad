/**
 * Group commit for everything recorded after the request: stream events and final response records from all
 * exchanges in flight are appended together, one transaction per flush, in the order they were enqueued.
 *
 * A request that must be durable before it is forwarded is written on the next turn of the event loop, with
 * everything pending. Everything else (stream events, final response records, refusals) lingers at most
 * `intervalMs` (so a crash loses at most that much) and usually rides along with the next request's transaction:
 * an agent sends its next request as soon as it has read a response, so one transaction per exchange carries the
 * previous response and the next request, and no commit runs between a response and the next request. Flushes never
 * overlap, so a chain is appended in order even by an asynchronous store.
 */
import type { AuditStore, BlobWrite, NewRecord, SearchText } from '../store/audit-store.js';

export interface WriteQueueOptions {
  readonly intervalMs: number;
  readonly onError: (err: unknown, lost: number) => void;
  readonly onWritten?: (blobs: readonly BlobWrite[]) => void;
}

export class WriteQueue {
  private records: NewRecord[] = [];
  private blobs: BlobWrite[] = [];
  private searchText: SearchText[] = [];
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private linger: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();
  private readonly pullers = new Set<() => NewRecord | undefined>();
  private waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];

  constructor(
    private readonly store: AuditStore,
    private readonly options: WriteQueueOptions,
  ) {}

  /**
   * Register a source of periodic records (an exchange's buffered events): on every flush it is asked for one record
   * to add, and may return undefined when it has nothing new.
   */
  addPuller(pull: () => NewRecord | undefined): () => void {
    this.pullers.add(pull);
    if (this.timer === null) {
      this.timer = setInterval(() => void this.flush(), this.options.intervalMs);
      this.timer.unref();
    }
    return () => {
      this.pullers.delete(pull);
      if (this.pullers.size === 0 && this.timer !== null) {
        clearInterval(this.timer);
        this.timer = null;
      }
    };
  }

  /**
   * Append durably on the next turn of the event loop, together with everything else enqueued by then (group commit:
   * requests that arrive together share one transaction). Resolves when written; rejects if the write failed.
   */
  appendDurably(records: readonly NewRecord[], blobs: readonly BlobWrite[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.add(records, blobs);
      this.immediate ??= setImmediate(() => {
        this.immediate = null;
        void this.flush();
      });
    });
  }

  /** Append within `intervalMs` (sooner if a durable append comes first), after everything enqueued before. */
  enqueue(
    records: readonly NewRecord[],
    blobs: readonly BlobWrite[] = [],
    searchText: readonly SearchText[] = [],
  ): void {
    this.add(records, blobs, searchText);
    if (this.immediate === null) {
      // Not unref'd: a process must not exit with records it has accepted still unwritten.
      this.linger ??= setTimeout(() => {
        this.linger = null;
        void this.flush();
      }, this.options.intervalMs);
    }
  }

  private add(
    records: readonly NewRecord[],
    blobs: readonly BlobWrite[],
    searchText: readonly SearchText[] = [],
  ): void {
    this.records.push(...records);
    this.blobs.push(...blobs);
    this.searchText.push(...searchText);
  }

  /** Records waiting to be written. */
  get backlog(): number {
    return this.records.length;
  }

  /** Write everything pending now; resolves when it is durable (or failed and was reported). */
  flush(): Promise<void> {
    this.running = this.running.then(() => this.writePending());
    return this.running;
  }

  private async writePending(): Promise<void> {
    if (this.linger !== null) {
      clearTimeout(this.linger);
      this.linger = null;
    }
    for (const pull of this.pullers) {
      const r = pull();
      if (r) this.records.push(r);
    }
    const waiters = this.waiters;
    this.waiters = [];
    if (this.records.length === 0 && this.blobs.length === 0) {
      for (const w of waiters) w.resolve();
      return;
    }
    const records = this.records;
    const blobs = this.blobs;
    const searchText = this.searchText;
    this.records = [];
    this.blobs = [];
    this.searchText = [];
    try {
      await this.store.append({ records, blobs, ...(searchText.length ? { searchText } : {}) });
      if (blobs.length) this.options.onWritten?.(blobs);
      for (const w of waiters) w.resolve();
    } catch (err) {
      this.options.onError(err, records.length);
      // Those waiting decide what a failed write means for them (fail closed, or best effort).
      for (const w of waiters) w.reject(err);
    }
  }

  /** Stop the timer and write what is pending. */
  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.immediate = null;
    if (this.linger !== null) clearTimeout(this.linger);
    this.linger = null;
    await this.flush();
  }
}
