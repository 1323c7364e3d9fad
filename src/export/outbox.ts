/**
 * Streams audit events to SIEM sinks without losing any: the ledger is the outbox. Each sink has a cursor per chain
 * (chains are written in order by one process each, so `chain_seq` is a gap-free, commit-ordered position — unlike a
 * global sequence, which concurrent writers can commit out of order). A batch is delivered, then the cursor moves; a
 * sink that is down keeps its cursor, and everything is delivered, in order, when it returns. Delivery is
 * at-least-once: event ids (`<chain>:<chain_seq>`) are stable, for de-duplication.
 *
 * With several gateways on one store, one of them delivers for each sink at a time (`tryLeadership`), and checks
 * that it still does before each batch it sends (`holdsLeadership`): a leader that lost its lock (PostgreSQL: its
 * lock session ended) stops after the batch in flight, so another gateway that took over does not receive the same
 * events twice from both — and the new leader starts from the cursors the old one left. The store says at once when
 * the lock is lost (`onLeadershipLost`), and the signal passed to Sink.deliver aborts: batches handed to the sink but
 * not yet written are dropped, an HTTP request in flight is cut and no further request of its batch sent, and the
 * cursor does not move past them (the new leader sends them; what the receiver had already may arrive twice).
 *
 * A receiver that is down, overloaded or misconfigured is waited for, however long, backing off between passes — except
 * that a batch which fails while one handed over after it (Sink.inFlightBatches) is delivered is sent again at once,
 * with the ones after it: the receiver is up (a collector back from a restart), so only a second failure at the same
 * position waits for the back-off. A receiver whose host says nothing listens on its port
 * (SinkDeliveryError.portUnreachable: most often a syslog collector restarting, back within milliseconds) is tried once
 * more {@link PROMPT_RETRY_MS} later, then backed off from as usual until a pass delivers. A receiver that refuses the
 * content of a batch (SinkDeliveryError.rejected: HTTP 400/413/422) gets its events one at a time, so the rest still
 * flows; an event refused {@link MAX_REJECTIONS} times in a row is set aside only if the next event is then accepted
 * (so a receiver that refuses everything — a wrong index, say — is waited for, not drained): a `siem.undeliverable`
 * record on the ledger names the sink, the event and the error, and is itself an audit event.
 */
import type { Logger } from 'pino';
import { nextPause } from '../retry-pause.js';
import type { StoredRecord, WriteBatch } from '../store/audit-store.js';
import type { ExchangeRequestData, ExchangeResponseData } from '../store/record-types.js';
import type { AuditEvent } from './audit-event.js';
import { withoutContent } from './internal/outgoing-event.js';
import { auditEventOf, contentBlobHashes, exchangeContent } from './record-events.js';
import type { Sink } from './sink.js';
import { SinkDeliveryError } from './sink-delivery-error.js';

/** Refusals in a row of one event before it may be set aside. */
export const MAX_REJECTIONS = 3;

/**
 * The pause before the one prompt retry of a receiver whose port was unreachable: long enough for a collector that
 * restarts to listen again, short next to the first back-off (1 s).
 */
export const PROMPT_RETRY_MS = 100;

export interface OutboxStore {
  /** Every chain and its last chain_seq. */
  chainHeads(): Promise<ReadonlyArray<{ chain: string; chainSeq: number }>>;
  /** Records of one chain after `afterChainSeq`, in chain order. */
  chainRecords(chain: string, afterChainSeq: number, limit: number): Promise<readonly StoredRecord[]>;
  exchangeRecords(exchangeId: string): Promise<readonly StoredRecord[]>;
  /** For sinks that want content: the blobs of recorded bodies. */
  blobs(hashes: readonly string[]): Promise<ReadonlyMap<string, Buffer>>;
  sinkCursors(sink: string): Promise<ReadonlyMap<string, number>>;
  /** Moves the cursor forward (never back: a late confirmation by a former leader changes nothing). */
  setSinkCursor(sink: string, chain: string, chainSeq: number): Promise<void>;
  /** Whether this process should deliver for `name` now (PostgreSQL: an advisory lock; SQLite: always). */
  tryLeadership(name: string): Promise<boolean>;
  /** Whether this process still holds the leadership `tryLeadership` gave it (asked of the store, not remembered). */
  holdsLeadership(name: string): Promise<boolean>;
  /** Where leadership can be lost (PostgreSQL): calls `listener` as soon as the store knows it was. */
  onLeadershipLost?(listener: () => void): () => void;
  /** Where an event set aside is recorded (`siem.undeliverable`). */
  append(batch: WriteBatch): Promise<readonly StoredRecord[]>;
}

export interface SinkStatus {
  readonly sink: string;
  /** Events not yet delivered (records behind the cursors, over all chains). */
  lag: number;
  delivered: number;
  failures: number;
  /** Events the receiver refused and that were set aside (recorded as `siem.undeliverable`). */
  undeliverable: number;
  lastError: string | null;
  lastDeliveryAt: number | null;
}

export interface OutboxOptions {
  readonly gateway: string;
  readonly log: Logger;
  readonly batchSize?: number;
  readonly pollMs?: number;
  readonly maxBackoffMs?: number;
  /**
   * For sinks that take content: a batch ends once its events carry this many bytes of recorded bodies (it always
   * holds one), counting the batches still in flight to the sink. Default 64 MiB. A batch of 200 exchanges each with
   * a 30 MB PDF would otherwise be read whole.
   */
  readonly contentBudgetBytes?: number;
}

const CONTENT_BUDGET_BYTES = 64 * 1024 * 1024;

/** A batch handed to a sink whose delivery the outbox has not yet waited for (see Sink.inFlightBatches). */
interface InFlight {
  readonly events: readonly AuditEvent[];
  /** The chain position the cursor moves to once the batch is delivered. */
  readonly upTo: number;
  /** Bytes of recorded bodies the events carry. */
  readonly contentBytes: number;
  readonly delivered: Promise<void>;
}

/** Thrown inside a pass when this gateway no longer delivers for the sink: another one took over. */
class LeadershipLost extends Error {
  constructor() {
    super('this gateway no longer delivers for the sink: another one took over');
  }
}

export class Outbox {
  private readonly status = new Map<string, SinkStatus>();
  private readonly requests = new Map<string, ExchangeRequestData>();
  private timer: NodeJS.Timeout | null = null;
  /**
   * The pause after a pass that failed before delivering (the store unreachable, or refusing writes), doubling up to
   * maxBackoffMs: polling every 500 ms meanwhile logged 7,200 failures an hour. Zero while passes succeed.
   */
  private failedPassPauseMs = 0;
  private running: Promise<void> | null = null;
  private readonly backoffUntil = new Map<string, number>();
  private readonly backoff = new Map<string, number>();
  /** Sinks whose one prompt retry (see PROMPT_RETRY_MS) was spent since a pass last delivered to them. */
  private readonly retriedPromptly = new Set<string>();
  /** Per sink: the event it keeps refusing, and how many times in a row. */
  private readonly refused = new Map<string, { id: string; count: number }>();
  private stopped = false;
  /** close() was called: no pass is scheduled any more, but the final one still runs. */
  private closing = false;

  /** start() was called: passes run while there are sinks (see setSinks). */
  private started = false;

  constructor(
    private readonly store: OutboxStore,
    private sinks: readonly Sink[],
    private readonly options: OutboxOptions,
  ) {
    for (const s of sinks) this.status.set(s.name, freshStatus(s.name));
  }

  /**
   * The sinks of a reloaded config, from the next pass on (one under way finishes with those it began with). A sink
   * that keeps its name goes on from its cursor, a new name starts from its own (the ledger's start, for a name never
   * delivered to), and a sink no longer configured is closed once the pass under way ends.
   */
  setSinks(sinks: readonly Sink[]): void {
    const retired = this.sinks.filter((s) => !sinks.includes(s));
    this.sinks = sinks;
    const names = new Set(sinks.map((s) => s.name));
    for (const s of sinks) if (!this.status.has(s.name)) this.status.set(s.name, freshStatus(s.name));
    for (const name of [...this.status.keys()]) {
      if (names.has(name)) continue;
      this.status.delete(name);
      this.backoff.delete(name);
      this.backoffUntil.delete(name);
      this.refused.delete(name);
    }
    void (this.running ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => Promise.all(retired.map((s) => s.close().catch(() => undefined))));
    if (this.started) this.start();
  }

  start(): void {
    this.started = true;
    // One loop: it runs while there are sinks, and setSinks starts it again when a reload adds some.
    if (this.sinks.length === 0 || this.timer !== null || this.running !== null || this.stopped || this.closing) return;
    const tick = (): void => {
      this.timer = null;
      if (this.stopped || this.closing) return;
      // A pass that fails before delivering (the store unreachable) is tried again after a pause that grows.
      const pass = this.runOnce().then(
        () => {
          this.failedPassPauseMs = 0;
        },
        (err: unknown) => {
          this.failedPassPauseMs = nextPause(
            this.failedPassPauseMs,
            this.options.pollMs ?? 500,
            this.options.maxBackoffMs ?? 60_000,
          );
          this.options.log.warn(
            { err, retryInMs: this.failedPassPauseMs },
            'SIEM outbox pass failed; events wait in the outbox',
          );
        },
      );
      this.running = pass.finally(() => {
        this.running = null;
        const wait = this.failedPassPauseMs || this.nextPassIn();
        if (!this.stopped && !this.closing && this.sinks.length > 0) this.timer = setTimeout(tick, wait).unref();
      });
    };
    tick();
  }

  /** Until the next poll, or sooner when a sink's back-off ends before it (a prompt retry, say). */
  private nextPassIn(): number {
    const now = Date.now();
    let wait = this.options.pollMs ?? 500;
    for (const until of this.backoffUntil.values()) if (until > now) wait = Math.min(wait, until - now);
    return wait;
  }

  statuses(): SinkStatus[] {
    return [...this.status.values()].map((s) => ({ ...s }));
  }

  /** One pass: deliver what is pending to every sink that is not backing off. Resolves when done (for tests). */
  async runOnce(now = Date.now()): Promise<void> {
    const heads = await this.store.chainHeads();
    for (const sink of this.sinks) {
      if ((this.backoffUntil.get(sink.name) ?? 0) > now) continue;
      if (!(await this.store.tryLeadership(leadership(sink)))) continue;
      await this.deliverTo(sink, heads);
    }
  }

  /** Before each send: stop the pass, and call off what the sink holds, if another gateway delivers for `sink` now. */
  private async stillLeader(sink: Sink, lost: AbortController): Promise<void> {
    if (lost.signal.aborted || !(await this.store.holdsLeadership(leadership(sink)))) {
      lost.abort(new LeadershipLost());
      throw new LeadershipLost();
    }
  }

  private async deliverTo(sink: Sink, heads: ReadonlyArray<{ chain: string; chainSeq: number }>): Promise<void> {
    const status = this.status.get(sink.name)!;
    // Read after taking (or confirming) the leadership: a previous leader may have moved them.
    const cursors = new Map(await this.store.sinkCursors(sink.name));
    const batchSize = this.options.batchSize ?? 200;
    const depth = Math.max(1, sink.inFlightBatches ?? 1);
    const budget = this.options.contentBudgetBytes ?? CONTENT_BUDGET_BYTES;
    // Aborted once this gateway no longer delivers for the sink: what the sink has not yet written is not written.
    const lost = new AbortController();
    const unsubscribe = this.store.onLeadershipLost?.(() => lost.abort(new LeadershipLost()));
    try {
      for (const { chain, chainSeq: head } of heads) {
        /** Where the next batch starts: past the batches in flight, whose events the cursor does not cover yet. */
        let next = cursors.get(chain) ?? 0;
        const inFlight: InFlight[] = [];
        const carried = (): number => inFlight.reduce((n, b) => n + b.contentBytes, 0);
        const moveCursor = async (chainSeq: number): Promise<void> => {
          cursors.set(chain, chainSeq);
          await this.store.setSinkCursor(sink.name, chain, chainSeq);
        };
        /** The cursor when a failed batch was last sent again at once (see settleOldest). */
        let resentFrom: number | undefined;
        /** Waits for the oldest batch in flight and moves the cursor past it. */
        const settleOldest = async (): Promise<void> => {
          const batch = inFlight.shift()!;
          try {
            await batch.delivered;
            status.delivered += batch.events.length;
          } catch (err) {
            // Neither it nor, as far as the cursor goes, anything handed over after it is delivered: sent again.
            const later = inFlight.splice(0);
            const settled = await Promise.allSettled(later.map((b) => b.delivered));
            if (lost.signal.aborted) throw new LeadershipLost();
            if (!(err instanceof SinkDeliveryError && err.rejected)) {
              // The receiver took a batch handed over after this one, so it is up (a collector back from a restart,
              // a late refusal): this batch and the ones after it go again at once, not after a back-off. Once per
              // position, so a receiver that takes everything but this batch is backed off from like one that is down.
              const from = cursors.get(chain) ?? 0;
              const tookLater = later.some((b, i) => b.events.length > 0 && settled[i]!.status === 'fulfilled');
              if (!tookLater || resentFrom === from) throw err;
              resentFrom = from;
              next = from;
              this.failed(sink, err, 0);
              return;
            }
            next = batch.upTo;
            // The receiver refuses something in this batch: find what, one event at a time.
            await this.deliverOneByOne(sink, chain, batch.events, moveCursor, lost);
          }
          await moveCursor(batch.upTo);
          status.lastDeliveryAt = Date.now();
        };
        let readAll = false;
        try {
          // Hand over batches while there is room in flight, else wait for the oldest; a refused batch (settleOldest)
          // moves `next` back, and reading goes on from there.
          for (;;) {
            // The content budget bounds what is in memory: the batches in flight and the next one together.
            const room = inFlight.length < depth && (inFlight.length === 0 || carried() < budget);
            if (room && !readAll && next < head && !this.stopped) {
              const records = await this.store.chainRecords(chain, next, batchSize);
              if (records.length === 0) {
                readAll = true;
                continue;
              }
              const { events, used, contentBytes } = await this.eventsOf(
                records,
                sink.includeContent === true,
                budget - carried(),
              );
              let delivered: Promise<void> = Promise.resolve();
              if (events.length) {
                await this.stillLeader(sink, lost);
                delivered = sink.deliver(events, lost.signal);
                delivered.catch(() => undefined); // awaited, in order, by settleOldest
              }
              next = records[used - 1]!.chainSeq;
              inFlight.push({ events, upTo: next, contentBytes, delivered });
              continue;
            }
            if (inFlight.length === 0) break;
            await settleOldest();
          }
        } finally {
          // Leadership lost, or a failure: what is still in flight does not move the cursor; the pass ends after it.
          await Promise.allSettled(inFlight.splice(0).map((b) => b.delivered));
        }
      }
      this.backoff.delete(sink.name);
      this.retriedPromptly.delete(sink.name);
      status.lastError = null;
    } catch (err) {
      if (err instanceof LeadershipLost || lost.signal.aborted) {
        this.options.log.info(
          { sink: sink.name },
          'no longer the SIEM outbox leader for this sink; another gateway delivers',
        );
        return;
      }
      if (err instanceof SinkDeliveryError && err.portUnreachable && !this.retriedPromptly.has(sink.name)) {
        this.retriedPromptly.add(sink.name);
        this.backoffUntil.set(sink.name, Date.now() + PROMPT_RETRY_MS);
        this.failed(sink, err, PROMPT_RETRY_MS);
        return;
      }
      const wait = nextPause(this.backoff.get(sink.name) ?? 0, 1_000, this.options.maxBackoffMs ?? 60_000);
      this.backoff.set(sink.name, wait);
      this.backoffUntil.set(sink.name, Date.now() + wait);
      this.failed(sink, err, wait);
    } finally {
      unsubscribe?.();
      status.lag = heads.reduce((n, h) => n + Math.max(0, h.chainSeq - (cursors.get(h.chain) ?? 0)), 0);
    }
  }

  /** Counts and logs a failed delivery, retried in `retryInMs` (0: at once). */
  private failed(sink: Sink, err: unknown, retryInMs: number): void {
    const status = this.status.get(sink.name)!;
    status.failures++;
    status.lastError = (err as Error).message;
    this.options.log.warn({ sink: sink.name, err, retryInMs }, 'SIEM sink delivery failed; events wait in the outbox');
  }

  /**
   * Deliver `events` one by one, moving the cursor after each; throws (the batch is retried later, from the cursor)
   * on the first event refused fewer than MAX_REJECTIONS times in a row, or when the event after it is refused too.
   */
  private async deliverOneByOne(
    sink: Sink,
    chain: string,
    events: readonly AuditEvent[],
    moveCursor: (chainSeq: number) => Promise<void>,
    lost: AbortController,
  ): Promise<void> {
    const status = this.status.get(sink.name)!;
    const seqOf = (e: AuditEvent): number => Number(e.id.slice(e.id.lastIndexOf(':') + 1));
    const queue = [...events];
    for (let i = 0; i < queue.length; i++) {
      const e = queue[i]!;
      await this.stillLeader(sink, lost);
      try {
        await sink.deliver([e], lost.signal);
        status.delivered++;
        this.refused.delete(sink.name);
        await moveCursor(seqOf(e));
        continue;
      } catch (err) {
        if (!(err instanceof SinkDeliveryError && err.rejected)) throw err;
        if (e.content && !e.content.omitted) {
          // Refused with its content (too large for the receiver, say): the event itself is sent again without it.
          queue[i] = withoutContent(e, `refused by the receiver with its content (${err.message})`);
          i--;
          continue;
        }
        const prev = this.refused.get(sink.name);
        const count = prev?.id === e.id ? prev.count + 1 : 1;
        this.refused.set(sink.name, { id: e.id, count });
        const next = queue[i + 1];
        if (count < MAX_REJECTIONS || next === undefined) throw err;
        // Set aside only if the receiver takes the next event: otherwise it refuses everything, and is waited for.
        // The next one, too, may be refused only for its content (too large): then it goes without.
        let probe = next;
        try {
          await sink.deliver([probe], lost.signal);
        } catch (probeErr) {
          const withContent = probe.content !== undefined && !probe.content.omitted;
          if (!(probeErr instanceof SinkDeliveryError && probeErr.rejected) || !withContent) throw err;
          probe = withoutContent(probe, `refused by the receiver with its content (${probeErr.message})`);
          await sink.deliver([probe], lost.signal);
        }
        await this.store.append({
          records: [
            {
              kind: 'siem.undeliverable',
              at: Date.now(),
              data: { sink: sink.name, event: e.id, eventType: e.type, attempts: count, error: err.message },
            },
          ],
        });
        this.options.log.error(
          { sink: sink.name, event: e.id, eventType: e.type, err },
          'SIEM sink refuses an audit event; set aside (siem.undeliverable on the ledger)',
        );
        status.undeliverable++;
        status.delivered++;
        this.refused.delete(sink.name);
        await moveCursor(seqOf(next));
        i++;
      }
    }
  }

  /**
   * The audit events `records` stand for; with `withContent`, exchange events carry their masked content, and the
   * batch ends early once that content passes `budget` bytes (it always holds one event): `used` says how many of
   * `records` the events cover, `contentBytes` how many bytes of recorded bodies they carry.
   */
  private async eventsOf(
    records: readonly StoredRecord[],
    withContent: boolean,
    budget: number,
  ): Promise<{ events: AuditEvent[]; used: number; contentBytes: number }> {
    // First each exchange's request, then (for sinks that want content) the bodies, an exchange at a time.
    const items: Array<{
      r: StoredRecord;
      index: number;
      request?: ExchangeRequestData;
      response?: ExchangeResponseData;
    }> = [];
    for (const [index, r] of records.entries()) {
      if (r.kind === 'exchange.request' && r.exchangeId) {
        this.remember(r.exchangeId, JSON.parse(r.data) as ExchangeRequestData);
        continue;
      }
      if (r.kind !== 'exchange.response' || !r.exchangeId) {
        items.push({ r, index });
        continue;
      }
      let request = this.requests.get(r.exchangeId);
      if (!request) {
        const req = (await this.store.exchangeRecords(r.exchangeId)).find((x) => x.kind === 'exchange.request');
        if (req) request = JSON.parse(req.data) as ExchangeRequestData;
      }
      this.requests.delete(r.exchangeId);
      items.push({
        r,
        index,
        ...(request ? { request } : {}),
        ...(withContent ? { response: JSON.parse(r.data) as ExchangeResponseData } : {}),
      });
    }
    let carried = 0;
    const events: AuditEvent[] = [];
    for (const { r, index, request, response } of items) {
      let content: AuditEvent['content'];
      if (response) {
        if (carried >= budget && events.length > 0) return { events, used: index, contentBytes: carried };
        try {
          const blobs = await this.store.blobs(contentBlobHashes(request, response));
          for (const b of blobs.values()) carried += b.length;
          content = exchangeContent(request, response, blobs);
        } catch (err) {
          // A body's blobs gone (retention purged the exchange since it was read): the event goes without it.
          content = { omitted: `the recorded content could not be read: ${(err as Error).message}` };
        }
      }
      const e = auditEventOf(r, this.options.gateway, request, content);
      if (e) events.push(e);
    }
    return { events, used: records.length, contentBytes: carried };
  }

  private remember(id: string, req: ExchangeRequestData): void {
    if (this.requests.size >= 10_000) this.requests.delete(this.requests.keys().next().value!);
    this.requests.set(id, req);
  }

  /**
   * Stop polling; a final pass delivers what was recorded since the last one — the streams drained at shutdown, say
   * — as far as `deadlineMs` allows (what it cannot deliver waits in the store for the next start).
   */
  async close(deadlineMs = 2000): Promise<void> {
    this.closing = true;
    if (this.timer) clearTimeout(this.timer);
    const finalPass = (async () => {
      if (this.running) await this.running;
      if (deadlineMs > 0 && this.sinks.length > 0 && !this.stopped) await this.runOnce();
    })().catch((err: unknown) => this.options.log.warn({ err }, 'the final delivery to SIEM sinks failed'));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([finalPass, new Promise((r) => (timer = setTimeout(r, deadlineMs)))]);
    clearTimeout(timer);
    this.stopped = true; // a pass still delivering stops after its batch
    await Promise.all(this.sinks.map((s) => s.close().catch(() => undefined)));
  }
}

function freshStatus(sink: string): SinkStatus {
  return { sink, lag: 0, delivered: 0, failures: 0, undeliverable: 0, lastError: null, lastDeliveryAt: null };
}

/** The leadership a gateway holds while it delivers to `sink`. */
const leadership = (sink: Sink): string => `outbox:${sink.name}`;
