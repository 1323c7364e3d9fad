/**
 * What is kept of each exchange. The proxy calls, in order:
 *   begin()           — the request is recorded durably; only then may it be forwarded
 *   responseStarted() — upstream's status and headers arrived
 *   chunk()           — each body chunk, *after* it was written to the client
 *   finish()/fail()   — the exchange ended, one way or another
 *
 * Every write goes through `write()` / the write queue: the single point where a redaction stage sits.
 */
import { isUtf8 } from 'node:buffer';
import type { IncomingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';
import { finished } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { isStackOverflow, messageOf, shuttingDown, tooDeeplyNested, VigilError } from '../errors.js';
import { PendingPromises } from '../pending-promises.js';
import { nextPause } from '../retry-pause.js';
import type { Principal } from '../identity/principal.js';
import { contentCodings, streamDecoder, type StreamDecoder } from '../net/content-coding.js';
import type { AuditStore, BlobWrite, NewRecord, Outcome, SearchText, StoredRecord } from '../store/audit-store.js';
import { conversationKey, eventDataText, hourLongCacheWrites } from '../store/record-types.js';
import type {
  ExchangeRequestData,
  ExchangeResponseData,
  HeaderMap,
  RecordedEvent,
  Usage,
} from '../store/record-types.js';
import { KnownBlobs } from './body-splitter.js';
import {
  accessDeniedChannel,
  exchangeCompletedChannel,
  type AccessDenied,
  type ExchangeCompleted,
} from './diagnostics.js';
import { MessageAssembler } from './message-assembler.js';
import { parseEventData, type ExchangeRedaction, type Redactor } from './redactor.js';
import { searchTextOf } from './search-text.js';
import type { RequestBody } from './request-body.js';
import { resolveAgent, resolveSession } from './session-key.js';
import { SseDecoder } from './sse-decoder.js';
import { WriteQueue } from './write-queue.js';

/** Characters of a refused call's path and of the reason it was refused kept in its `access.denied` record. */
const DENIED_PATH_KEPT = 256;
const DENIED_REASON_KEPT = 512;
/** Lost records a log line names (it counts them all). */
const LOST_RECORDS_NAMED = 100;

/** At most `max` characters of `s`, marked when cut. */
function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}

/** Headers that carry the caller's credentials: never recorded. */
const CREDENTIAL_HEADERS = new Set(['authorization', 'x-api-key', 'proxy-authorization', 'cookie']);

export interface BeginInput {
  readonly exchangeId: string;
  readonly connection: string;
  readonly principal: Principal;
  readonly clientAddress: string | null;
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: RequestBody;
  /** `best_effort`: a failed write is reported, not fatal. */
  readonly bestEffort: boolean;
  /**
   * `full`: everything; `metadata`: identity, model, tokens, timings, outcome, masking counts — no bodies, headers or
   * events; `off`: nothing is recorded.
   */
  readonly level: RecordingLevel;
  /** The connection's masking stage: every stored byte of this exchange passes through it. */
  readonly redactor: Redactor;
}

export type RecordingLevel = 'full' | 'metadata' | 'off';

export interface RecorderOptions {
  readonly log: Logger;
  readonly maxRecordedResponseBody: number;
  /** How often buffered stream events are written. */
  readonly eventFlushMs?: number;
  /** Told of each exchange as it ends (this gateway's own, unlike `vigil:exchange.completed`): usage limits count it. */
  readonly onCompleted?: ((e: ExchangeCompleted) => void) | undefined;
}

/**
 * A body cut at a byte limit may end inside a UTF-8 character: then it is not valid UTF-8, and would be stored and
 * masked as bytes rather than as text. Returns it without that partial character when the rest is UTF-8 text, else
 * unchanged.
 */
function withoutCutCharacter(raw: Buffer): Buffer {
  for (let i = raw.length - 1; i >= 0 && i >= raw.length - 3; i--) {
    const b = raw[i]!;
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: the character starts further back
    const length = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    if (i + length <= raw.length) return raw;
    const kept = raw.subarray(0, i);
    return isUtf8(kept) ? kept : raw;
  }
  return raw;
}

export function recordableHeaders(
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
): HeaderMap {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || CREDENTIAL_HEADERS.has(k)) continue;
    out[k] = v;
  }
  return out;
}

/**
 * The request as it is stored: masked, in pieces. A body nested so deep that walking it runs out of stack cannot be
 * masked, so it cannot be recorded: refused as the caller's error (400), not the gateway's.
 */
function storedRequest(
  redaction: ExchangeRedaction,
  body: RequestBody,
  known: KnownBlobs,
): ReturnType<ExchangeRedaction['requestBody']> {
  try {
    return redaction.requestBody(body, known);
  } catch (err) {
    throw isStackOverflow(err) ? tooDeeplyNested() : err;
  }
}

export class Recorder {
  readonly queue: WriteQueue;
  private readonly known = new KnownBlobs();
  private readonly active = new Set<ExchangeRecording>();
  /** Requests whose record is being written ({@link begin}): in flight already, and what close() waits for. */
  private readonly beginning = new PendingPromises();
  /** Set by close(): a request written from then on is not forwarded (see {@link begin}). */
  private closing = false;
  /** Recording failures since start: surfaced by health and metrics. */
  failures = 0;
  /** Requests refused because their record's write failed with the store unavailable (see UnconfirmedRequests). */
  private readonly unconfirmed: UnconfirmedRequests;
  /**
   * Bytes of a non-streamed response kept in the record (`limits.max_recorded_response_body`); a reload may change it
   * for exchanges that begin after.
   */
  maxRecordedResponseBody: number;

  constructor(
    readonly store: AuditStore,
    readonly options: RecorderOptions,
  ) {
    this.maxRecordedResponseBody = options.maxRecordedResponseBody;
    this.queue = new WriteQueue(store, {
      intervalMs: options.eventFlushMs ?? 20,
      onError: (err, lost, waited) => {
        this.failures++;
        // A request's own failure is logged by whoever waited on it (record(), then the proxy), with what became of
        // the call: refused, or forwarded anyway.
        if (waited) return;
        if (lost.length === 0) {
          options.log.error(
            { err },
            'a write to the store failed; its records are written apart or kept for another try',
          );
          return;
        }
        options.log.error(
          {
            err,
            lost: lost.length,
            // Named, up to a point: an outage that held more than it may gives up many at once.
            records: lost.slice(0, LOST_RECORDS_NAMED).map((r) => ({ kind: r.kind, exchangeId: r.exchangeId ?? null })),
          },
          'recording failed: records could not be written to the store',
        );
      },
      onOutage: (change) => {
        if (change.began) {
          this.failures++;
          options.log.error(
            { err: change.err },
            'the store refuses writes: records of calls already forwarded are held in memory and written once it ' +
              'accepts them again; calls that must be recorded are refused meanwhile (503)',
          );
        } else {
          options.log.warn(
            { outageMs: change.ms, failedWrites: change.failedWrites, written: change.written },
            'the store accepts writes again; the records held meanwhile are being written',
          );
        }
      },
      onWritten: (blobs) => {
        for (const b of blobs) this.known.add(b.hash);
      },
    });
    this.unconfirmed = new UnconfirmedRequests(store, this.queue, options.log);
  }

  /**
   * Record the request durably. Throws STORE_UNAVAILABLE when it cannot and the connection requires recording, and
   * SHUTTING_DOWN (answer it: a 503 the client retries) when the recorder closed before the request was recorded: the
   * exchange has then ended recorded as `interrupted` with that 503, or, closed before it began, was never recorded.
   */
  begin(input: BeginInput): Promise<ExchangeRecording> {
    if (this.closing) return Promise.reject(shuttingDown());
    // In flight while its request is written, not only once it is: shutdown's grace waits for it, and close() too.
    return this.beginning.track(this.record(input));
  }

  private async record(input: BeginInput): Promise<ExchangeRecording> {
    const startedAt = Date.now();
    const t0 = performance.now();
    const body = input.body;
    const session = resolveSession(
      input.headers,
      // Read only when no header names the session: the body is best scanned once it follows the previous one.
      {
        get metadata() {
          return body.field('metadata');
        },
      },
      `ses_${input.exchangeId.slice(3)}`,
    );
    const agent = resolveAgent(input.headers);
    // The conversation this body continues: what it shares with the previous body is neither scanned nor hashed again.
    const conversation = conversationKey(session.id, agent?.id);
    if (input.level !== 'off') {
      const previous = input.redactor.previousBody(conversation);
      if (previous) body.follow(previous);
    }
    const modelField = body.field('model');
    const model = typeof modelField === 'string' ? modelField : null;
    let redaction = input.redactor.begin(session.id);
    // In flight from here, whatever is kept of it (even nothing, `off`): shutdown waits for it.
    const recording = (turnMessages: readonly unknown[], recordedMs: number | null = null): ExchangeRecording => {
      const rec = new ExchangeRecording(
        this,
        input.exchangeId,
        session.id,
        startedAt,
        t0,
        model,
        input.connection,
        input.principal,
        redaction,
        input.level,
        turnMessages,
        recordedMs,
      );
      this.active.add(rec);
      return rec;
    };
    if (input.level === 'off') return recording([]);
    const full = input.level === 'full';
    let stored = full ? storedRequest(redaction, body, this.known) : undefined;
    input.redactor.rememberBody(conversation, body.layout());
    const userAgent = input.headers['user-agent'];
    // Session and agent ids are kept as the client chose them: they are the keys a session is found by (README).
    const requestData = (): ExchangeRequestData => ({
      connection: input.connection,
      caller: input.principal,
      client: {
        address: input.clientAddress,
        userAgent: userAgent === undefined ? null : redaction.requestPart('userAgent', userAgent, 'client.userAgent'),
      },
      session,
      ...(agent ? { agent } : {}),
      request: {
        method: input.method,
        path: redaction.requestPart('path', input.path, 'request.path'),
        query: redaction.requestPart('query', input.query, 'request.query'),
        headers: full ? redaction.headers(recordableHeaders(input.headers)) : {},
        body: stored && body.raw.length ? stored.body : null,
      },
      model,
      stream: body.field('stream') === true,
      startedAt,
    });
    let record: NewRecord = {
      kind: 'exchange.request',
      exchangeId: input.exchangeId,
      sessionId: session.id,
      at: startedAt,
      data: requestData(),
    };
    let recordedMs: number | null = null;
    try {
      // Durable before forwarding; requests arriving together share one transaction.
      try {
        await this.queue.appendDurably([record], stored?.blobs ?? []);
      } catch (err) {
        // A blob this process wrote earlier was removed by retention (here or by another process): forget what it
        // knows of stored blobs and write this request's pieces again, once.
        if (!stored || !/which the store does not hold/.test((err as Error).message)) throw err;
        this.known.clear();
        // A fresh redaction, so the request's findings are counted once.
        redaction = input.redactor.begin(session.id);
        stored = storedRequest(redaction, body, this.known);
        record = { ...record, data: requestData() };
        await this.queue.appendDurably([record], stored.blobs);
      }
      recordedMs = performance.now() - t0;
    } catch (err) {
      if (!input.bestEffort) {
        const refusal = new VigilError(
          'STORE_UNAVAILABLE',
          'the gateway cannot record this request, so it was not forwarded',
          { cause: err },
        );
        // A lost connection may have taken the store's answer, not the write: looked up once the store answers.
        if (this.store.isUnavailable(err)) this.unconfirmed.add(record, refusal);
        throw refusal;
      }
      if (this.queue.storeRefusing) {
        // The outage's first line has the error: one short line for each call let through meanwhile.
        this.options.log.warn(
          { exchangeId: input.exchangeId, cause: messageOf(err) },
          'recording failed: the store refuses writes; forwarding anyway (best_effort), the request held for it',
        );
      } else
        this.options.log.error(
          { err, exchangeId: input.exchangeId },
          'recording failed; forwarding anyway (best_effort), the request kept for another try',
        );
      // Not durable before forwarding, but not given up: written with (before) the rest of the exchange's records as
      // soon as the store takes them, as what lingers is.
      this.queue.enqueue([record], stored?.blobs ?? []);
    }
    const rec = recording(stored?.turnMessages ?? [], recordedMs);
    // Closed while the request was being written (shutdown with no grace left): it is not forwarded now, and its end
    // is queued before close() writes the last records, so nothing is left in progress.
    if (this.closing) {
      const err = shuttingDown();
      rec.fail('interrupted', { type: err.type, message: err.message }, err.status);
      throw err;
    }
    return rec;
  }

  /**
   * A caller was refused before anything was forwarded (401/403): an audit event on the chain. Not awaited: a flood of
   * bad credentials must not slow the gateway down, and nothing was forwarded that needs a record first. Once the
   * recorder is closing (shutdown's grace is over) it is not queued, as no request would be (see {@link begin}): its
   * last records are being written and the store closes after; what was refused is logged instead.
   */
  accessDenied(info: {
    connection: string;
    status: number;
    reason: string;
    path: string;
    clientAddress: string | null;
    caller?: Principal | undefined;
    /**
     * The connection's masking stage: the path is the caller's and may hold a secret like any request's; the reason
     * may quote what the caller sent (a token's audience).
     */
    redactor: Redactor;
  }): void {
    const { redactor, ...data } = info;
    // Masked, then clipped: refusals are recorded for anyone who knocks, and what they send must not fill the ledger
    // (nor cost a scan of more than it keeps — the first clip bounds the masking, the second what is kept).
    data.path = clip(redactor.requestPart('path', clip(data.path, 4 * DENIED_PATH_KEPT)).value, DENIED_PATH_KEPT);
    data.reason = clip(redactor.masker.maskText(clip(data.reason, 4 * DENIED_REASON_KEPT)).value, DENIED_REASON_KEPT);
    if (this.closing) this.options.log.warn(data, 'refusal not recorded: the gateway is stopping');
    else this.queue.enqueue([{ kind: 'access.denied', at: Date.now(), data }]);
    if (accessDeniedChannel.hasSubscribers)
      accessDeniedChannel.publish({ connection: info.connection, status: info.status } satisfies AccessDenied);
  }

  /** @internal */
  ended(rec: ExchangeRecording): void {
    this.active.delete(rec);
  }

  /** Exchanges still open, including requests still being recorded (for shutdown). */
  get inFlight(): number {
    return this.active.size + this.beginning.size;
  }

  /**
   * Close every open recording as `interrupted` (shutdown deadline passed) and write everything. A request still being
   * recorded ends too, once its record is written (see {@link begin}); one that arrives after is refused.
   */
  async close(): Promise<void> {
    this.closing = true;
    for (const rec of [...this.active]) rec.fail('interrupted', { type: 'interrupted', message: 'gateway shut down' });
    await this.beginning.settled();
    await this.unconfirmed.close();
    await this.queue.close();
  }

  /**
   * After a crash, exchanges with a request but no response record get one, marked `interrupted`, with the message
   * assembled from whatever events were recorded before the crash — only those of a writer that is gone. Another
   * gateway sharing the store may be serving its exchanges right now; one whose database session just ended may be
   * connecting again, so where the store says a writer may look gone for a while ({@link AuditStore.writerReconnectMs}),
   * a chain is taken for gone only when it is seen gone again that long after (`signal` ends the wait: nothing more is
   * recovered). Resolves with the number of exchanges recorded as interrupted.
   */
  async recoverInterrupted(options: { signal?: AbortSignal } = {}): Promise<number> {
    const requests = new Map<string, StoredRecord>();
    const chains = new Map<string, string[]>();
    for (const id of await this.store.unfinishedExchanges()) {
      const request = (await this.store.exchangeRecords(id)).find((r) => r.kind === 'exchange.request');
      if (!request) continue;
      requests.set(id, request);
      chains.set(request.chain, [...(chains.get(request.chain) ?? []), id]);
    }
    // A store that cannot tell now (undefined) is taken to mean the writer may run: nothing of it is cut.
    const gone = async (chain: string): Promise<boolean> => (await this.store.chainIsLive(chain)) === false;
    let dead: string[] = [];
    for (const chain of chains.keys()) if (await gone(chain)) dead.push(chain);
    if (dead.length && this.store.writerReconnectMs > 0) {
      const waited = await sleep(this.store.writerReconnectMs, true, { signal: options.signal }).catch(() => false);
      if (!waited) return 0;
      const still: string[] = [];
      for (const chain of dead) if (await gone(chain)) still.push(chain);
      dead = still;
    }
    // Gateways starting together would each cut the same exchanges: one of them recovers a chain.
    const mine: string[] = [];
    for (const chain of dead) if (await this.store.tryLeadership(`recovery:${chain}`)) mine.push(chain);
    let recovered = 0;
    for (const id of mine.flatMap((chain) => chains.get(chain) ?? [])) {
      if (options.signal?.aborted) break;
      const records = await this.store.exchangeRecords(id);
      // Its writer finished it after all (it was connecting again when first looked at).
      if (records.some((r) => r.kind === 'exchange.response')) continue;
      const request = requests.get(id)!;
      recovered++;
      const req = JSON.parse(request.data) as ExchangeRequestData;
      const assembler = new MessageAssembler();
      let eventCount = 0;
      let lastAt = req.startedAt;
      for (const r of records) {
        if (r.kind !== 'exchange.events') continue;
        lastAt = Math.max(lastAt, r.at);
        for (const e of (JSON.parse(r.data) as { events: RecordedEvent[] }).events) {
          assembler.push({ type: e.type, data: eventDataText(e.data) });
          eventCount++;
        }
      }
      const data = endingWithoutResponse(req, {
        outcome: 'interrupted',
        error: { type: 'interrupted', message: 'the gateway stopped before this exchange finished' },
        endedAt: lastAt,
        message: assembler.message(),
        usage: (assembler.usage as Usage | null) ?? null,
        stopReason: assembler.stopReason,
        eventCount,
      });
      await this.store.append({
        records: [
          {
            kind: 'exchange.response',
            exchangeId: id,
            sessionId: request.sessionId ?? undefined,
            at: Date.now(),
            data,
          },
        ],
      });
    }
    return recovered;
  }
}

/**
 * The response record of an exchange that got no answer from upstream to record: cut by a stop (recovered at the next
 * start), or refused by the gateway itself. `status`: what the client was sent, if anything.
 */
function endingWithoutResponse(
  req: ExchangeRequestData,
  end: {
    outcome: Outcome;
    error: { type: string; message: string };
    endedAt: number;
    status?: number;
    message?: unknown;
    usage?: Usage | null;
    stopReason?: string | null;
    eventCount?: number;
  },
): ExchangeResponseData {
  return {
    status: end.status ?? null,
    headers: null,
    body: null,
    message: end.message ?? null,
    usage: end.usage ?? null,
    model: req.model,
    stopReason: end.stopReason ?? null,
    outcome: end.outcome,
    error: end.error,
    eventCount: end.eventCount ?? 0,
    timing: {
      startedAt: req.startedAt,
      firstByteMs: null,
      endedAt: end.endedAt,
      durationMs: end.endedAt - req.startedAt,
    },
  };
}

/** The most refused requests {@link UnconfirmedRequests} keeps; past it the oldest are left to the next start. */
const MAX_UNCONFIRMED = 10_000;
/** The longest pause between lookups while the store does not answer. */
const MAX_UNCONFIRMED_PAUSE_MS = 5_000;

/**
 * Requests refused (503) because the write of their record failed with the store unavailable. Such a write may have
 * committed all the same — PostgreSQL's answer lost with the connection, not the write — which left an exchange with a
 * request and no end for as long as the gateway ran (its chain is live: no start-up recovery cuts it). Once the store
 * can tell (AuditStore.appendedDespiteFailure), one that was written is ended as what its client got: 503,
 * `gateway_error`. One still unknown at stop is ended by the next start, as `interrupted`.
 */
class UnconfirmedRequests {
  private readonly pending = new Map<string, { record: NewRecord; refusal: VigilError; refusedAt: number }>();
  private looking: Promise<void> | null = null;
  private readonly stop = new AbortController();

  constructor(
    private readonly store: AuditStore,
    private readonly queue: WriteQueue,
    private readonly log: Logger,
  ) {}

  add(record: NewRecord, refusal: VigilError): void {
    if (this.stop.signal.aborted || record.exchangeId === undefined) return;
    if (this.pending.size >= MAX_UNCONFIRMED) this.pending.delete(this.pending.keys().next().value!);
    this.pending.set(record.exchangeId, { record, refusal, refusedAt: Date.now() });
    this.looking ??= this.lookUp().finally(() => (this.looking = null));
  }

  private async lookUp(): Promise<void> {
    let pause = 0;
    while (this.pending.size && !this.stop.signal.aborted) {
      const [id, refused] = this.pending.entries().next().value!;
      let appended: boolean;
      try {
        appended = await this.store.appendedDespiteFailure(refused.record);
      } catch {
        pause = nextPause(pause, 100, MAX_UNCONFIRMED_PAUSE_MS);
        await sleep(pause, undefined, { ref: false, signal: this.stop.signal }).catch(() => undefined);
        continue;
      }
      pause = 0;
      this.pending.delete(id);
      if (appended) this.end(refused.record, refused.refusal, refused.refusedAt);
    }
  }

  /** The end of a request recorded after all: refused, as its client was told. */
  private end(request: NewRecord, refusal: VigilError, refusedAt: number): void {
    const req = request.data as ExchangeRequestData;
    const data = endingWithoutResponse(req, {
      outcome: 'gateway_error',
      error: { type: refusal.type, message: refusal.message },
      endedAt: refusedAt,
      status: refusal.status,
    });
    this.log.warn(
      { exchangeId: request.exchangeId },
      'a refused request was recorded after all (the store lost its answer, not the write): recording its refusal',
    );
    this.queue.enqueue([
      { kind: 'exchange.response', exchangeId: request.exchangeId, sessionId: request.sessionId, at: Date.now(), data },
    ]);
  }

  /** Stops looking (what is left is ended by the next start) once a look in progress has queued what it found. */
  async close(): Promise<void> {
    this.stop.abort();
    await this.looking;
  }
}

const NO_GROUPS: readonly string[] = [];

export class ExchangeRecording {
  private status: number | null = null;
  private headers: HeaderMap | null = null;
  private firstByteMs: number | null = null;
  private sse: SseDecoder | null = null;
  private assembler: MessageAssembler | null = null;
  private decoder: StreamDecoder | null = null;
  /** Decoded events not yet handed to the redaction stage and the store. */
  private pending: Array<{ event: RecordedEvent; parsed: unknown }> = [];
  private eventCount = 0;
  private bodyChunks: Buffer[] = [];
  private bodyBytes = 0;
  private truncated = false;
  /** The recorder's limit when the exchange began: a reload does not change it half-way. */
  private readonly maxBodyBytes: number;
  private detach: (() => void) | null = null;
  private done = false;

  constructor(
    private readonly recorder: Recorder,
    readonly id: string,
    readonly sessionId: string,
    private readonly startedAt: number,
    private readonly t0: number,
    private readonly model: string | null,
    private readonly connection: string,
    private readonly caller: Principal,
    private readonly redaction: ExchangeRedaction,
    readonly level: RecordingLevel,
    /** The turn's new messages as stored (masked), for the search index. */
    private readonly turnMessages: readonly unknown[],
    /** How long recording held the request before it could be forwarded (see {@link ExchangeCompleted}). */
    private readonly recordedMs: number | null = null,
  ) {
    this.maxBodyBytes = recorder.maxRecordedResponseBody;
  }

  responseStarted(status: number, headers: Record<string, string | string[] | undefined>): void {
    this.firstByteMs = performance.now() - this.t0;
    this.status = status;
    if (this.level === 'off') return;
    this.headers = this.level === 'full' ? this.redaction.headers(recordableHeaders(headers)) : null;
    const type = headers['content-type'];
    const isSse = typeof type === 'string' && type.startsWith('text/event-stream');
    const encoding = headers['content-encoding'];
    this.decoder = streamDecoder(contentCodings(typeof encoding === 'string' ? encoding : undefined));
    if (isSse) {
      this.sse = new SseDecoder();
      this.assembler = new MessageAssembler();
      if (this.level === 'full') this.detach = this.recorder.queue.addPuller(() => this.takeEvents());
    }
    if (this.decoder) {
      this.decoder.output.on('data', (c: Buffer) => this.decoded(c));
      this.decoder.output.on('error', (err: Error) => {
        this.recorder.options.log.warn(
          { err, exchangeId: this.id },
          'could not decode the response body for the record',
        );
      });
    }
  }

  /** A chunk of the response body exactly as it went to the client. */
  chunk(chunk: Buffer): void {
    if (this.level === 'off') return;
    if (this.decoder) this.decoder.input.write(chunk);
    else this.decoded(chunk);
  }

  private decoded(chunk: Buffer): void {
    if (this.sse) {
      const now = performance.now() - this.t0;
      for (const e of this.sse.push(chunk)) this.event(e.type, e.data, now);
      return;
    }
    const room = this.maxBodyBytes - this.bodyBytes;
    if (room <= 0) {
      this.truncated = true;
      return;
    }
    const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (kept !== chunk) this.truncated = true;
    this.bodyChunks.push(kept);
    this.bodyBytes += kept.length;
  }

  private event(type: string, data: string, offsetMs: number): void {
    const e = { type, data };
    const parsed = parseEventData(e);
    this.assembler!.push(e, parsed);
    if (this.level !== 'full') {
      this.eventCount++;
      return;
    }
    const event: RecordedEvent = { i: this.eventCount++, type, data, offset_ms: Math.round(offsetMs * 1000) / 1000 };
    this.pending.push({ event: parsed !== undefined ? { ...event, isJson: true } : event, parsed });
  }

  /** Buffered events, through the redaction stage, as one record (or nothing yet). */
  private takeEvents(): NewRecord | undefined {
    const ready = this.pending.length ? this.redaction.events(this.pending) : [];
    this.pending = [];
    return this.eventsRecord(ready);
  }

  /**
   * One `exchange.events` record. Serialised here, embedding each event's JSON data as received (it is JSON text
   * already: escaping it into a string would cost CPU and about a third more bytes).
   */
  private eventsRecord(events: RecordedEvent[]): NewRecord | undefined {
    if (events.length === 0) return undefined;
    let json = '{"events":[';
    events.forEach((e, n) => {
      const data = e.isJson ? e.data : JSON.stringify(e.data);
      json += `${n ? ',' : ''}{"i":${e.i},"type":${JSON.stringify(e.type)},"data":${data},"offset_ms":${e.offset_ms}}`;
    });
    json += ']}';
    return {
      kind: 'exchange.events',
      exchangeId: this.id,
      sessionId: this.sessionId,
      at: Date.now(),
      data: null,
      json,
    };
  }

  /** Upstream finished the body. */
  async finish(): Promise<void> {
    await this.drainDecoder();
    let outcome: Outcome = this.status !== null && this.status >= 400 ? 'upstream_error' : 'ok';
    let error: ExchangeResponseData['error'] = null;
    if (this.assembler) {
      if (this.assembler.error) {
        outcome = 'upstream_error';
        error = this.assembler.error;
      } else if (outcome === 'ok' && this.assembler.stopReason === null && this.eventCount > 0) {
        outcome = 'upstream_aborted';
        error = { type: 'upstream_aborted', message: 'the stream ended before message_stop' };
      }
    }
    this.end(outcome, error);
  }

  /**
   * The exchange ended abnormally. `sentStatus`: the status the gateway answered the client with itself, when it
   * refused or failed the call before upstream answered (a deny rule's 403, an unreachable upstream's 502); recorded as
   * the response's status, since that is what the client received. None when the client received nothing (it left).
   */
  fail(outcome: Outcome, error: { type: string; message: string }, sentStatus: number | null = null): void {
    this.end(outcome, error, sentStatus);
  }

  /**
   * Let the decoder give out what it holds. `finished` also settles for a decoder that already failed (upstream's
   * bytes were not what its content-encoding said): waiting for an `end` that never comes left the exchange open.
   */
  private async drainDecoder(): Promise<void> {
    const d = this.decoder;
    if (!d) return;
    if (!d.input.destroyed) d.input.end();
    await finished(d.output).catch(() => undefined);
  }

  /**
   * Tell metrics (and any other subscriber) that the exchange completed; free when nobody listens. `status`: the one
   * the client received, upstream's or the gateway's own (a refusal's 403), as recorded.
   */
  private announce(
    outcome: Outcome,
    status: number | null,
    model: string | null,
    durationMs: number,
    usage: Usage | null,
    stopReason: string | null,
  ): void {
    const onCompleted = this.recorder.options.onCompleted;
    if (!exchangeCompletedChannel.hasSubscribers && !onCompleted) return;
    const completed: ExchangeCompleted = {
      connection: this.connection,
      caller: this.caller.subject,
      callerGroups: this.caller.groups ?? NO_GROUPS,
      outcome,
      status,
      model,
      durationMs,
      firstByteMs: this.firstByteMs,
      recordedMs: this.recordedMs,
      inputTokens: usage?.input_tokens ?? 0,
      outputTokens: usage?.output_tokens ?? 0,
      cacheReadTokens: usage?.cache_read_input_tokens ?? 0,
      cacheCreationTokens: usage?.cache_creation_input_tokens ?? 0,
      cacheCreation1hTokens: usage ? hourLongCacheWrites(usage) : 0,
      stopReason,
    };
    onCompleted?.(completed);
    if (exchangeCompletedChannel.hasSubscribers) exchangeCompletedChannel.publish(completed);
  }

  private end(outcome: Outcome, upstreamError: ExchangeResponseData['error'], sentStatus: number | null = null): void {
    if (this.done) return;
    this.done = true;
    this.detach?.();
    this.recorder.ended(this);
    if (this.level === 'off') {
      this.announce(outcome, this.status ?? sentStatus, this.model, Date.now() - this.startedAt, null, null);
      return;
    }
    const full = this.level === 'full';
    const endedAt = Date.now();
    const records: NewRecord[] = [];
    if (this.sse) {
      const now = performance.now() - this.t0;
      for (const e of this.sse.end().events) this.event(e.type, e.data, now);
    }
    if (full) {
      const ready = this.pending.length ? this.redaction.events(this.pending) : [];
      this.pending = [];
      const events = this.eventsRecord([...ready, ...this.redaction.flushEvents()]);
      if (events) records.push(events);
    }

    let body: ExchangeResponseData['body'] = null;
    let blobs: readonly BlobWrite[] = [];
    let usage: Usage | null = null;
    let message: unknown = null;
    let stopReason: string | null = null;
    let model = this.model;
    let error = upstreamError;
    if (this.assembler) {
      message = this.redaction.json(this.assembler.message(), 'response.message');
      usage = (this.assembler.usage as Usage | null) ?? null;
      stopReason = this.assembler.stopReason;
      const m = message as { model?: unknown } | null;
      if (typeof m?.model === 'string') model = m.model;
    } else if (this.bodyChunks.length || this.truncated) {
      let raw: Buffer = Buffer.concat(this.bodyChunks);
      if (this.truncated) raw = withoutCutCharacter(raw);
      let json: unknown;
      if (!this.truncated && raw.length && (raw[0] === 0x7b || raw[0] === 0x5b)) {
        try {
          json = JSON.parse(raw.toString('utf8'));
        } catch {
          json = undefined;
        }
      }
      const stored = this.redaction.body(raw, json, 'response.body', { truncated: this.truncated });
      if (full) ({ body, blobs } = stored);
      const j = stored.json as
        { usage?: Usage; stop_reason?: string; model?: string; type?: string; error?: unknown } | undefined;
      if (j?.type === 'message') {
        usage = j.usage ?? null;
        stopReason = j.stop_reason ?? null;
        message = j;
        if (typeof j.model === 'string') model = j.model;
      }
      if (j?.type === 'error' && error === null) {
        const e = j.error as { type?: string; message?: string } | undefined;
        error = { type: e?.type ?? 'error', message: e?.message ?? '' };
      }
    }
    if (error) error = { type: error.type, message: this.redaction.text(error.message, 'response.error') };
    const masking = this.redaction.summary();
    const data: ExchangeResponseData = {
      status: this.status ?? sentStatus,
      headers: full ? this.headers : null,
      body,
      message: full ? message : null,
      usage,
      model,
      stopReason,
      outcome,
      error,
      eventCount: this.eventCount,
      ...(masking ? { masking } : {}),
      timing: {
        startedAt: this.startedAt,
        firstByteMs: this.firstByteMs === null ? null : Math.round(this.firstByteMs * 1000) / 1000,
        endedAt,
        durationMs: endedAt - this.startedAt,
      },
    };
    records.push({ kind: 'exchange.response', exchangeId: this.id, sessionId: this.sessionId, at: endedAt, data });
    this.announce(outcome, data.status, model, data.timing.durationMs, usage, stopReason);
    const searchText: SearchText[] = [];
    if (full) {
      const text = searchTextOf(this.turnMessages, message);
      if (text) searchText.push({ exchangeId: this.id, text });
    }
    this.recorder.queue.enqueue(records, blobs, searchText);
    // The last exchange in flight ended: nothing will join its records in a group commit. A store that writes on this
    // thread writes them now, while the client reads the answer, rather than after the linger — when the client's next
    // call would be waiting on upstream, and its answer on this write. A database server's write holds nothing here:
    // they linger, so that the client's next request, if it comes within the linger, is written first (alone) and
    // these right after it, while that call is on its way upstream; written now, the next request would wait for them.
    if (this.recorder.inFlight === 0 && this.recorder.store.writesOnCallingThread) this.recorder.queue.flushSoon();
  }
}
