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
 * records, and a record whose write failed is written after those that followed it. Flushes never overlap, so a chain
 * is appended in order even by an asynchronous store.
 *
 * When records nobody waits on fail to be written together, they are written in ever smaller parts, so that one
 * record that cannot be written (whatever the reason) takes no other down: only those that fail on their own are tried
 * again, then reported lost by name. While writes succeed this costs nothing: group commit is unchanged.
 *
 * When the store itself refuses writes (its `isUnavailable`: a full disk, a lost PostgreSQL connection, a closed
 * store), that is an outage, not a bad record: the records of calls already forwarded — events, responses, refusals —
 * are held in memory, in order, and tried again with a growing pause (up to {@link MAX_RETRY_MS}), until the store
 * takes them or the gateway stops; only past {@link MAX_HELD_RECORDS} records or {@link MAX_HELD_BLOB_BYTES} of blobs
 * are the oldest given up and reported lost. Requests that must be recorded are refused meanwhile (their waiters
 * are rejected at once), and each one arriving tries the store, so the first write it accepts ends the outage.
 */
import type { AuditStore, BlobWrite, NewRecord, SearchText } from '../store/audit-store.js';
import { nextPause } from '../retry-pause.js';
import { newRecordBlobRefs } from '../store/blob-refs.js';

export interface WriteQueueOptions {
  readonly intervalMs: number;
  /**
   * A write failed; `lost`: the records given up on (none when they were written apart or are kept for another try).
   * `waited`: they are requests someone waits on (appendDurably), who is told as well and decides what it means.
   */
  readonly onError: (err: unknown, lost: readonly NewRecord[], waited?: boolean) => void;
  readonly onWritten?: (blobs: readonly BlobWrite[]) => void;
  /**
   * The store began refusing writes (`began`, with its error), or took a write again after refusing them: `ms` since
   * the first refusal, `failedWrites` in between, and `written`, the records of that first accepted write.
   */
  readonly onOutage?: (change: OutageChange) => void;
}

export type OutageChange =
  | { readonly began: true; readonly err: unknown }
  | { readonly began: false; readonly ms: number; readonly failedWrites: number; readonly written: number };

/** Records, with the blobs and search text written with them. */
interface Pending {
  readonly records: NewRecord[];
  readonly blobs: BlobWrite[];
  readonly searchText: SearchText[];
}

function emptyPending(): Pending {
  return { records: [], blobs: [], searchText: [] };
}

/** Attempts at writing a record nobody waits on (events, responses, refusals) before it is reported lost. */
const MAX_ATTEMPTS = 3;

/**
 * Failed writes in a row, while records are written apart, after which the store itself is taken to be failing and
 * the rest is not tried this time: an outage must not cost a failed write per record. One bad record among n costs at
 * most log2(n) + 1 failures in a row (the parts holding it, down to itself), so this leaves room for a few bad records
 * among tens of thousands.
 */
const MAX_FAILURES_IN_A_ROW = 16;

/** The longest pause between attempts while the store refuses writes (the pause doubles from `intervalMs`). */
export const MAX_RETRY_MS = 1_000;
/**
 * What an outage may hold in memory: records (a stream in flight adds one every `intervalMs`), and bytes of blobs
 * (response bodies). Past either, the oldest held records are given up and reported lost.
 */
export const MAX_HELD_RECORDS = 100_000;
export const MAX_HELD_BLOB_BYTES = 256 * 1024 * 1024;
/**
 * Held records an attempt tries the store with while it refuses writes (the oldest); the rest follow once it takes
 * them.
 */
export const PROBE_RECORDS = 64;
/**
 * The most records one write takes from what lingers; more wait for the next turn of the event loop. Far above what
 * group commit gathers under load (a few hundred); it bounds the write of a backlog an outage held.
 */
export const MAX_BATCH_RECORDS = 1024;

interface Outage {
  readonly since: number;
  failedWrites: number;
  /** The pause before the next attempt that no request asks for. */
  pauseMs: number;
  retryAt: number;
}

export class WriteQueue {
  /** Requests waited on (appendDurably). */
  private durable: Pending = emptyPending();
  /** Everything else (enqueue): it lingers until the next flush. */
  private pending: Pending = emptyPending();
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private linger: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();
  private readonly pullers = new Set<() => NewRecord | undefined>();
  /** Failed attempts at writing a record nobody waits on, for those that failed on their own (see MAX_ATTEMPTS). */
  private readonly attempts = new WeakMap<NewRecord, number>();
  private waiters: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];
  /** Set once close() has written what it could: the store closes next, so nothing is written after. */
  private closed = false;
  /** Set while the store refuses writes (see the module's comment). */
  private outage: Outage | null = null;
  /** Records close() could not write (the store refusing writes when the gateway stopped): reported lost. */
  private lostWhenClosed = 0;

  constructor(
    private readonly store: AuditStore,
    private readonly options: WriteQueueOptions,
  ) {}

  /**
   * Register a source of periodic records (an exchange's buffered events): on every flush it is asked for one record
   * to add, and may return undefined when it has nothing new.
   */
  addPuller(pull: () => NewRecord | undefined): () => void {
    if (this.closed) return () => undefined;
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
    if (this.closed) {
      const err = closedError();
      this.options.onError(err, records, true);
      return Promise.reject(err);
    }
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
    if (this.closed) {
      this.options.onError(closedError(), records);
      return;
    }
    this.pending.records.push(...records);
    this.pending.blobs.push(...blobs);
    this.pending.searchText.push(...searchText);
    this.scheduleLinger();
  }

  private scheduleLinger(): void {
    // Not unref'd: a process must not exit with records it has accepted still unwritten.
    this.linger ??= setTimeout(
      () => {
        this.linger = null;
        void this.flush();
      },
      this.outage === null ? this.options.intervalMs : Math.max(0, this.outage.retryAt - Date.now()),
    );
  }

  /** True while the store refuses writes and records are held for it. */
  get storeRefusing(): boolean {
    return this.outage !== null;
  }

  /** Records close() could not write, and reported lost (0 before it closes). */
  get lostAtClose(): number {
    return this.lostWhenClosed;
  }

  /** Records waiting to be written. */
  get backlog(): number {
    return this.pending.records.length + this.durable.records.length;
  }

  /** Write everything pending now; resolves when it is durable (or failed and was reported). */
  flush(): Promise<void> {
    this.running = this.running.then(() => this.writePending());
    return this.running;
  }

  private async writePending(): Promise<void> {
    if (this.closed) return;
    // While the store refuses writes, only a request, or the pause running out, tries it again (streams in flight ask
    // for a flush every intervalMs: their events stay with them meanwhile).
    const outage = this.outage;
    const probing = outage !== null;
    if (outage !== null && this.durable.records.length === 0 && Date.now() < outage.retryAt) {
      this.scheduleLinger();
      return;
    }
    const durable = this.durable;
    this.durable = emptyPending();
    const waiters = this.waiters;
    this.waiters = [];
    // A request waiting alone goes first, by itself; what lingers follows on the next turn. While the store refuses
    // writes, requests always go by themselves: an attempt must not cost a transaction of everything held.
    const alone =
      durable.records.length > 0 &&
      (probing || (durable.records.length === 1 && this.pending.records.length + this.pullers.size > 0));
    let batch: Pending;
    /** What lingered (nobody waits on it): kept for another attempt if this write fails. */
    let lingering: Pending | null = null;
    /** Only the oldest part of what lingers is in this write: the rest follows at once once it succeeds. */
    let partial = false;
    if (alone) {
      batch = durable;
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
        if (r) this.pending.records.push(r);
      }
      // While the store refuses writes, the oldest few held records try it; the rest follow once it takes them. And
      // a backlog (what an outage held) is written a part at a time: one SQLite append of 100,000 event records held
      // the event loop, and every stream with it, for 1.3 s (1,024: 13 ms).
      const most = probing ? PROBE_RECORDS : MAX_BATCH_RECORDS;
      if (this.pending.records.length > most) {
        [lingering, this.pending] = split(this.pending, (_r, i) => i < most);
        partial = true;
      } else {
        lingering = this.pending;
        this.pending = emptyPending();
      }
      batch = {
        records: lingering.records.concat(durable.records),
        blobs: lingering.blobs.concat(durable.blobs),
        searchText: lingering.searchText,
      };
    }
    if (batch.records.length === 0 && batch.blobs.length === 0) {
      for (const w of waiters) w.resolve();
      return;
    }
    const err = await this.tryAppend(batch);
    if (err === null) {
      for (const w of waiters) w.resolve();
      if (partial) this.flushSoon();
      return;
    }
    const down = this.store.isUnavailable(err);
    if (lingering === null || lingering.records.length === 0 || (down && durable.records.length > 0)) {
      // The outage (if this is one) begins before the requests' failure is reported: it is what their report says.
      if (lingering !== null && lingering.records.length > 0) this.hold(lingering, err);
      else if (down) this.hold(emptyPending(), err);
      if (durable.records.length > 0) {
        this.options.onError(err, durable.records, true);
        // Those waiting decide what a failed write means for them (fail closed, or best effort; a request that
        // refers to a blob retention removed is written again with its pieces).
        for (const w of waiters) w.reject(err);
      }
      return;
    }
    // When what lingered and requests shared the failed transaction, each part is tried alone now, so that neither
    // takes the other down (a record that cannot be written must not refuse requests, nor a request lose others).
    if (durable.records.length > 0) {
      const again = await this.tryAppend(durable);
      if (again === null) for (const w of waiters) w.resolve();
      else {
        this.options.onError(again, durable.records, true);
        for (const w of waiters) w.reject(again);
      }
    }
    const failed = durable.records.length > 0 ? await this.tryAppend(lingering) : err;
    if (failed !== null) await this.writeApart(lingering, failed);
  }

  /**
   * Records nobody waits on failed to be written together (with `err`): they are written in halves, in order, and a
   * half that fails in halves again, down to single records. Those that fail on their own are tried again after
   * `intervalMs`, a few times, before they are reported lost. When the store itself refuses writes (at once, or while
   * the halves are written), what is left is held for it instead (see hold).
   */
  private async writeApart(batch: Pending, err: unknown): Promise<void> {
    if (this.store.isUnavailable(err)) return this.hold(batch, err);
    const run = { err, failuresInARow: 1 };
    const failed = batch.records.length > 1 ? await this.bisect(batch, run) : [batch];
    // The store went down while the parts were written: what failed is held for it, not counted against the records.
    if (this.store.isUnavailable(run.err)) return this.hold(concat(failed), run.err);
    const lost: NewRecord[] = [];
    const kept: Pending[] = [];
    for (const part of failed) {
      const [again, given] = split(part, (r) => {
        const attempts = (this.attempts.get(r) ?? 0) + 1;
        this.attempts.set(r, attempts);
        return attempts < MAX_ATTEMPTS;
      });
      lost.push(...given.records);
      if (again.records.length > 0) kept.push(again);
    }
    for (const r of lost) this.attempts.delete(r);
    this.options.onError(run.err, lost);
    if (kept.length === 0) return;
    this.pending = concat([...kept, this.pending]);
    this.scheduleLinger();
  }

  /**
   * The store refuses writes: `batch` (records nobody waits on, in order) goes back in front of what is pending, to be
   * tried again after a pause that doubles with each refusal. The first refusal begins the outage.
   */
  private hold(batch: Pending, err: unknown): void {
    const now = Date.now();
    if (this.outage === null) {
      this.outage = { since: now, failedWrites: 0, pauseMs: 0, retryAt: now };
      this.options.onOutage?.({ began: true, err });
    }
    this.outage.pauseMs = nextPause(this.outage.pauseMs, this.options.intervalMs, MAX_RETRY_MS);
    this.outage.failedWrites++;
    this.outage.retryAt = now + this.outage.pauseMs;
    this.pending = concat([batch, this.pending]);
    this.giveUpOldest(err);
    if (this.linger !== null) {
      clearTimeout(this.linger);
      this.linger = null;
    }
    if (this.pending.records.length > 0 || this.pullers.size > 0) this.scheduleLinger();
  }

  /** Past what an outage may hold, the oldest records are given up (with the blobs only they referred to). */
  private giveUpOldest(err: unknown): void {
    const p = this.pending;
    let blobBytes = 0;
    for (const b of p.blobs) blobBytes += b.data.length;
    if (p.records.length <= MAX_HELD_RECORDS && blobBytes <= MAX_HELD_BLOB_BYTES) return;
    // Keep the newest records within both bounds, counting each blob with the newest record that refers to it.
    const blobSize = new Map(p.blobs.map((b) => [b.hash, b.data.length]));
    const counted = new Set<string>();
    let keep = 0;
    let bytes = 0;
    for (let i = p.records.length - 1; i >= 0 && keep < MAX_HELD_RECORDS; i--) {
      let add = 0;
      for (const h of newRecordBlobRefs(p.records[i]!)) if (!counted.has(h)) add += blobSize.get(h) ?? 0;
      if (bytes + add > MAX_HELD_BLOB_BYTES && keep > 0) break;
      for (const h of newRecordBlobRefs(p.records[i]!)) counted.add(h);
      bytes += add;
      keep++;
    }
    const cut = p.records.length - keep;
    const [given, kept] = split(p, (_r, i) => i < cut);
    // Blobs no kept record refers to go with the given-up ones (split gives a blob that neither part refers to to the
    // first).
    this.pending = kept;
    this.options.onError(err, given.records);
  }

  /** A write went through: an outage, if there was one, is over. */
  private storeAccepted(written: number): void {
    const o = this.outage;
    if (o === null) return;
    this.outage = null;
    this.options.onOutage?.({ began: false, ms: Date.now() - o.since, failedWrites: o.failedWrites, written });
  }

  /** Write `batch`, which failed as a whole, half by half; returns the parts that could not be written. */
  private async bisect(batch: Pending, run: { err: unknown; failuresInARow: number }): Promise<Pending[]> {
    const failed: Pending[] = [];
    const mid = Math.ceil(batch.records.length / 2);
    for (const half of split(batch, (_r, i) => i < mid)) {
      if (run.failuresInARow >= MAX_FAILURES_IN_A_ROW) {
        failed.push(half);
        continue;
      }
      const err = await this.tryAppend(half);
      if (err === null) {
        run.failuresInARow = 0;
        continue;
      }
      run.err = err;
      run.failuresInARow = this.store.isUnavailable(err) ? MAX_FAILURES_IN_A_ROW : run.failuresInARow + 1;
      if (half.records.length > 1) failed.push(...(await this.bisect(half, run)));
      else failed.push(half);
    }
    return failed;
  }

  /** One append; the error when it failed, else null (blobs written are reported to `onWritten`). */
  private async tryAppend({ records, blobs, searchText }: Pending): Promise<unknown> {
    try {
      await this.store.append({ records, blobs, ...(searchText.length ? { searchText } : {}) });
    } catch (err) {
      return err ?? new Error('append failed');
    }
    if (blobs.length) this.options.onWritten?.(blobs);
    this.storeAccepted(records.length);
    return null;
  }

  /**
   * Stop the timer and write what is pending. Nothing is written after: what is enqueued from then on is reported lost
   * at once (the caller closes the store next), and so is what close() kept for another try and could not write.
   */
  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.immediate = null;
    if (this.linger !== null) clearTimeout(this.linger);
    this.linger = null;
    // One last attempt, whatever pause a store refusing writes has asked for.
    if (this.outage !== null) this.outage.retryAt = 0;
    await this.flush();
    // A request written alone leaves what lingers for one more flush.
    if (this.backlog > 0) await this.flush();
    this.closed = true;
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.immediate = null;
    if (this.linger !== null) clearTimeout(this.linger);
    this.linger = null;
    const left = this.pending.records.concat(this.durable.records);
    this.pending = emptyPending();
    this.durable = emptyPending();
    this.lostWhenClosed = left.length;
    if (left.length > 0) this.options.onError(closedError(), left);
    const err = closedError();
    for (const w of this.waiters.splice(0)) w.reject(err);
  }
}

function closedError(): Error {
  return new Error('the write queue has closed (the gateway is stopping): nothing more is written');
}

/** Parts of records, in order, as one. */
function concat(parts: readonly Pending[]): Pending {
  return {
    records: parts.flatMap((p) => p.records),
    blobs: parts.flatMap((p) => p.blobs),
    searchText: parts.flatMap((p) => p.searchText),
  };
}

/**
 * Records in two parts, in order: those `first` picks, then the others. A blob goes with the records that refer to it
 * (both parts when both do), search text with the later part holding records of its exchange (its response comes
 * last); anything that belongs to no record goes with the first part.
 */
function split(p: Pending, first: (r: NewRecord, i: number) => boolean): [Pending, Pending] {
  const parts: [Pending, Pending] = [emptyPending(), emptyPending()];
  const refs = [new Set<string>(), new Set<string>()] as const;
  const exchanges = [new Set<string>(), new Set<string>()] as const;
  p.records.forEach((r, i) => {
    const k = first(r, i) ? 0 : 1;
    parts[k].records.push(r);
    for (const h of newRecordBlobRefs(r)) refs[k].add(h);
    if (r.exchangeId !== undefined) exchanges[k].add(r.exchangeId);
  });
  for (const b of p.blobs) {
    const second = refs[1].has(b.hash);
    if (refs[0].has(b.hash) || !second) parts[0].blobs.push(b);
    if (second) parts[1].blobs.push(b);
  }
  for (const t of p.searchText) parts[exchanges[1].has(t.exchangeId) ? 1 : 0].searchText.push(t);
  return parts;
}
