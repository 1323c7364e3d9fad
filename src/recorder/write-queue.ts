/**
 * Group commit for everything the recorder writes: requests that must be durable before they are forwarded, and what
 * follows them (stream events, final response records, refusals), from every exchange in flight.
 *
 * A request waiting to be forwarded is written on the next turn of the event loop. Everything else lingers at most
 * `intervalMs` (so a crash loses at most that much of a stream) or until a request is written:
 * - several requests waiting together (concurrency) share one transaction with everything that lingers;
 * - a request waiting alone (an agent that sends its next request as soon as it has read the last response) is
 *   written alone, and what lingers follows on the next turn, while upstream works on that request. Its forwarding
 *   never waits for the previous response's records, and that commit never runs as the next request arrives.
 * Records are appended in the order they were enqueued, except that a request waiting alone goes ahead of lingering
 * records. Flushes never overlap, so a chain is appended in order even by an asynchronous store.
 */
import type { AuditStore, BlobWrite, NewRecord, SearchText } from '../store/audit-store.js';

export interface WriteQueueOptions {
  readonly intervalMs: number;
  /** A write failed; `lost`: records given up on (0 when they are kept for another attempt). */
  readonly onError: (err: unknown, lost: number) => void;
  readonly onWritten?: (blobs: readonly BlobWrite[]) => void;
}

/** Attempts at writing records nobody waits on (events, responses, refusals) before they are reported lost. */
const MAX_ATTEMPTS = 3;

export class WriteQueue {
  /** Requests waited on (appendDurably). */
  private durable: { records: NewRecord[]; blobs: BlobWrite[] } = { records: [], blobs: [] };
  /** Everything else (enqueue). */
  private records: NewRecord[] = [];
  private blobs: BlobWrite[] = [];
  private searchText: SearchText[] = [];
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private linger: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();
  private readonly pullers = new Set<() => NewRecord | undefined>();
  /** Failed writes in a row of records nobody waits on (see MAX_ATTEMPTS). */
  private failedAttempts = 0;
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
      this.durable.records.push(...records);
      this.durable.blobs.push(...blobs);
      this.flushSoon();
    });
  }

  /** Write what is pending on the next turn of the event loop, without waiting for the linger. */
  flushSoon(): void {
    this.immediate ??= setImmediate(() => {
      this.immediate = null;
      void this.flush();
    });
  }

  /** Append within `intervalMs` (sooner when a request is written), after everything enqueued before. */
  enqueue(
    records: readonly NewRecord[],
    blobs: readonly BlobWrite[] = [],
    searchText: readonly SearchText[] = [],
  ): void {
    this.records.push(...records);
    this.blobs.push(...blobs);
    this.searchText.push(...searchText);
    this.scheduleLinger();
  }

  private scheduleLinger(): void {
    // Not unref'd: a process must not exit with records it has accepted still unwritten.
    this.linger ??= setTimeout(() => {
      this.linger = null;
      void this.flush();
    }, this.options.intervalMs);
  }

  /** Records waiting to be written. */
  get backlog(): number {
    return this.records.length + this.durable.records.length;
  }

  /** Write everything pending now; resolves when it is durable (or failed and was reported). */
  flush(): Promise<void> {
    this.running = this.running.then(() => this.writePending());
    return this.running;
  }

  private async writePending(): Promise<void> {
    const durable = this.durable;
    this.durable = { records: [], blobs: [] };
    const waiters = this.waiters;
    this.waiters = [];
    // A request waiting alone goes first, by itself; what lingers follows on the next turn.
    const alone = durable.records.length === 1 && this.records.length + this.pullers.size > 0;
    let records: NewRecord[];
    let blobs: BlobWrite[];
    let searchText: SearchText[] = [];
    /** What lingered (nobody waits on it): kept for another attempt if this write fails. */
    let lingering: { records: NewRecord[]; blobs: BlobWrite[]; searchText: SearchText[] } | null = null;
    if (alone) {
      ({ records, blobs } = durable);
      // Two turns later: the forwarding this write unblocks is sent upstream first (undici writes on a later turn).
      this.immediate ??= setImmediate(() => {
        this.immediate = setImmediate(() => {
          this.immediate = null;
          void this.flush();
        });
      });
    } else {
      if (this.linger !== null) {
        clearTimeout(this.linger);
        this.linger = null;
      }
      for (const pull of this.pullers) {
        const r = pull();
        if (r) this.records.push(r);
      }
      lingering = { records: this.records, blobs: this.blobs, searchText: this.searchText };
      records = this.records.concat(durable.records);
      blobs = this.blobs.concat(durable.blobs);
      searchText = this.searchText;
      this.records = [];
      this.blobs = [];
      this.searchText = [];
    }
    if (records.length === 0 && blobs.length === 0) {
      for (const w of waiters) w.resolve();
      return;
    }
    const err = await this.tryAppend(records, blobs, searchText);
    if (err === null) {
      this.failedAttempts = 0;
      for (const w of waiters) w.resolve();
      return;
    }
    if (lingering === null || lingering.records.length === 0) {
      this.options.onError(err, records.length);
      // Those waiting decide what a failed write means for them (fail closed, or best effort; a request that
      // refers to a blob retention removed is written again with its pieces).
      for (const w of waiters) w.reject(err);
      return;
    }
    // When what lingered and requests shared the failed transaction, each part is tried alone now, so that neither
    // takes the other down (a record that cannot be written must not refuse requests, nor a request lose others).
    if (durable.records.length > 0) {
      const again = await this.tryAppend(durable.records, durable.blobs, []);
      if (again === null) for (const w of waiters) w.resolve();
      else {
        this.options.onError(again, durable.records.length);
        for (const w of waiters) w.reject(again);
      }
    }
    const failed =
      durable.records.length > 0 ? await this.tryAppend(lingering.records, lingering.blobs, lingering.searchText) : err;
    if (failed === null) {
      this.failedAttempts = 0;
      return;
    }
    // Nobody waits on these: tried again after `intervalMs`, a few times, before they are reported lost.
    if (++this.failedAttempts < MAX_ATTEMPTS) {
      this.options.onError(failed, 0);
      this.records = lingering.records.concat(this.records);
      this.blobs = lingering.blobs.concat(this.blobs);
      this.searchText = lingering.searchText.concat(this.searchText);
      this.scheduleLinger();
      return;
    }
    this.failedAttempts = 0;
    this.options.onError(failed, lingering.records.length);
  }

  /** One append; the error when it failed, else null (blobs written are reported to `onWritten`). */
  private async tryAppend(records: NewRecord[], blobs: BlobWrite[], searchText: SearchText[]): Promise<unknown> {
    try {
      await this.store.append({ records, blobs, ...(searchText.length ? { searchText } : {}) });
    } catch (err) {
      return err ?? new Error('append failed');
    }
    if (blobs.length) this.options.onWritten?.(blobs);
    return null;
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
    // A request written alone leaves what lingers for one more flush.
    if (this.backlog > 0) await this.flush();
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.immediate = null;
  }
}
