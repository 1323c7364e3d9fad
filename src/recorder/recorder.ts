/**
 * What is kept of each exchange. The proxy calls, in order:
 *   begin()           — the request is recorded durably; only then may it be forwarded
 *   responseStarted() — upstream's status and headers arrived
 *   chunk()           — each body chunk, *after* it was written to the client
 *   finish()/fail()   — the exchange ended, one way or another
 *
 * Every write goes through `write()` / the write queue: the single point where a redaction stage sits.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { Logger } from 'pino';
import { VigilError } from '../errors.js';
import type { Principal } from '../identity/principal.js';
import type { AuditStore, NewRecord, Outcome } from '../store/audit-store.js';
import type {
  ExchangeRequestData,
  ExchangeResponseData,
  HeaderMap,
  RecordedEvent,
  Usage,
} from '../store/record-types.js';
import { KnownBlobs, splitBody } from './body-splitter.js';
import { MessageAssembler } from './message-assembler.js';
import { resolveAgent, resolveSession } from './session-key.js';
import { SseDecoder } from './sse-decoder.js';
import { WriteQueue } from './write-queue.js';

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
  readonly body: Buffer;
  /** The parsed JSON body, when it is JSON. */
  readonly json: unknown;
  /** `best_effort`: a failed write is reported, not fatal. */
  readonly bestEffort: boolean;
}

export interface RecorderOptions {
  readonly log: Logger;
  readonly maxRecordedResponseBody: number;
  /** How often buffered stream events are written. */
  readonly eventFlushMs?: number;
}

export function recordableHeaders(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): HeaderMap {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || CREDENTIAL_HEADERS.has(k)) continue;
    out[k] = v;
  }
  return out;
}

export class Recorder {
  readonly queue: WriteQueue;
  private readonly known = new KnownBlobs();
  private readonly active = new Set<ExchangeRecording>();
  /** Recording failures since start: surfaced by health and metrics. */
  failures = 0;

  constructor(
    readonly store: AuditStore,
    readonly options: RecorderOptions,
  ) {
    this.queue = new WriteQueue(store, {
      intervalMs: options.eventFlushMs ?? 20,
      onError: (err, lost) => {
        this.failures++;
        options.log.error({ err, lost }, 'recording failed: records could not be written to the store');
      },
      onWritten: (blobs) => {
        for (const b of blobs) this.known.add(b.hash);
      },
    });
  }

  /** Record the request durably. Throws STORE_UNAVAILABLE when it cannot and the connection requires recording. */
  async begin(input: BeginInput): Promise<ExchangeRecording> {
    const startedAt = Date.now();
    const t0 = performance.now();
    const session = resolveSession(input.headers, input.json, `ses_${input.exchangeId.slice(3)}`);
    const agent = resolveAgent(input.headers);
    const { body, blobs } = splitBody(input.body, input.json, { known: this.known });
    const json = input.json as { model?: unknown; stream?: unknown } | undefined;
    const data: ExchangeRequestData = {
      connection: input.connection,
      caller: input.principal,
      client: { address: input.clientAddress, userAgent: (input.headers['user-agent'] as string | undefined) ?? null },
      session,
      ...(agent ? { agent } : {}),
      request: {
        method: input.method,
        path: input.path,
        query: input.query,
        headers: recordableHeaders(input.headers),
        body: input.body.length ? body : null,
      },
      model: typeof json?.model === 'string' ? json.model : null,
      stream: json?.stream === true,
      startedAt,
    };
    const record: NewRecord = {
      kind: 'exchange.request',
      exchangeId: input.exchangeId,
      sessionId: session.id,
      at: startedAt,
      data,
    };
    try {
      await this.store.append({ records: [record], blobs });
      for (const b of blobs) this.known.add(b.hash);
    } catch (err) {
      this.failures++;
      if (!input.bestEffort) {
        throw new VigilError('STORE_UNAVAILABLE', 'the gateway cannot record this request, so it was not forwarded', {
          cause: err,
        });
      }
      this.options.log.error({ err, exchangeId: input.exchangeId }, 'recording failed; forwarding anyway (best_effort)');
    }
    const rec = new ExchangeRecording(this, input.exchangeId, session.id, startedAt, t0, data.model);
    this.active.add(rec);
    return rec;
  }

  /** @internal */
  ended(rec: ExchangeRecording): void {
    this.active.delete(rec);
  }

  /** Exchanges still open (for shutdown). */
  get inFlight(): number {
    return this.active.size;
  }

  /** Close every open recording as `interrupted` (shutdown deadline passed) and write everything. */
  async close(): Promise<void> {
    for (const rec of [...this.active]) rec.fail('interrupted', { type: 'interrupted', message: 'gateway shut down' });
    await this.queue.close();
  }

  /**
   * After a crash, exchanges with a request but no response record get one, marked `interrupted`, with the message
   * assembled from whatever events were recorded before the crash.
   */
  async recoverInterrupted(): Promise<number> {
    const ids = await this.store.unfinishedExchanges();
    for (const id of ids) {
      const records = await this.store.exchangeRecords(id);
      const request = records.find((r) => r.kind === 'exchange.request');
      if (!request) continue;
      const req = JSON.parse(request.data) as ExchangeRequestData;
      const assembler = new MessageAssembler();
      let eventCount = 0;
      let lastAt = req.startedAt;
      for (const r of records) {
        if (r.kind !== 'exchange.events') continue;
        lastAt = Math.max(lastAt, r.at);
        for (const e of (JSON.parse(r.data) as { events: RecordedEvent[] }).events) {
          assembler.push({ type: e.type, data: e.data });
          eventCount++;
        }
      }
      const data: ExchangeResponseData = {
        status: null,
        headers: null,
        body: null,
        message: assembler.message(),
        usage: (assembler.usage as Usage | null) ?? null,
        model: req.model,
        stopReason: assembler.stopReason,
        outcome: 'interrupted',
        error: { type: 'interrupted', message: 'the gateway stopped before this exchange finished' },
        eventCount,
        timing: { startedAt: req.startedAt, firstByteMs: null, endedAt: lastAt, durationMs: lastAt - req.startedAt },
      };
      await this.store.append({
        records: [{ kind: 'exchange.response', exchangeId: id, sessionId: request.sessionId ?? undefined, at: Date.now(), data }],
      });
    }
    return ids.length;
  }
}

type Decoder = Transform;

function decoderFor(encoding: string | undefined): Decoder | null {
  switch (encoding?.trim().toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return createGunzip();
    case 'deflate':
      return createInflate();
    case 'br':
      return createBrotliDecompress();
    default:
      return null;
  }
}

export class ExchangeRecording {
  private status: number | null = null;
  private headers: HeaderMap | null = null;
  private firstByteMs: number | null = null;
  private sse: SseDecoder | null = null;
  private assembler: MessageAssembler | null = null;
  private decoder: Decoder | null = null;
  private pending: RecordedEvent[] = [];
  private eventCount = 0;
  private bodyChunks: Buffer[] = [];
  private bodyBytes = 0;
  private truncated = false;
  private detach: (() => void) | null = null;
  private done = false;

  constructor(
    private readonly recorder: Recorder,
    readonly id: string,
    readonly sessionId: string,
    private readonly startedAt: number,
    private readonly t0: number,
    private readonly model: string | null,
  ) {}

  responseStarted(status: number, headers: Record<string, string | string[] | undefined>): void {
    this.firstByteMs = performance.now() - this.t0;
    this.status = status;
    this.headers = recordableHeaders(headers);
    const type = headers['content-type'];
    const isSse = typeof type === 'string' && type.startsWith('text/event-stream');
    const encoding = headers['content-encoding'];
    this.decoder = decoderFor(typeof encoding === 'string' ? encoding : undefined);
    if (isSse) {
      this.sse = new SseDecoder();
      this.assembler = new MessageAssembler();
      this.detach = this.recorder.queue.addPuller(() => this.takeEvents());
    }
    if (this.decoder) {
      this.decoder.on('data', (c: Buffer) => this.decoded(c));
      this.decoder.on('error', (err: Error) => {
        this.recorder.options.log.warn({ err, exchangeId: this.id }, 'could not decode the response body for the record');
      });
    }
  }

  /** A chunk of the response body exactly as it went to the client. */
  chunk(chunk: Buffer): void {
    if (this.decoder) this.decoder.write(chunk);
    else this.decoded(chunk);
  }

  private decoded(chunk: Buffer): void {
    if (this.sse) {
      const now = performance.now() - this.t0;
      for (const e of this.sse.push(chunk)) {
        this.assembler!.push(e);
        this.pending.push({ i: this.eventCount++, type: e.type, data: e.data, offset_ms: Math.round(now * 1000) / 1000 });
      }
      return;
    }
    const room = this.recorder.options.maxRecordedResponseBody - this.bodyBytes;
    if (room <= 0) {
      this.truncated = true;
      return;
    }
    const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (kept !== chunk) this.truncated = true;
    this.bodyChunks.push(kept);
    this.bodyBytes += kept.length;
  }

  private takeEvents(): NewRecord | undefined {
    if (this.pending.length === 0) return undefined;
    const events = this.pending;
    this.pending = [];
    return { kind: 'exchange.events', exchangeId: this.id, sessionId: this.sessionId, at: Date.now(), data: { events } };
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

  /** The exchange ended abnormally. */
  fail(outcome: Outcome, error: { type: string; message: string }): void {
    this.end(outcome, error);
  }

  private async drainDecoder(): Promise<void> {
    const d = this.decoder;
    if (!d) return;
    await new Promise<void>((resolve) => {
      d.once('end', resolve);
      d.once('error', () => resolve());
      d.end();
    });
  }

  private end(outcome: Outcome, error: ExchangeResponseData['error']): void {
    if (this.done) return;
    this.done = true;
    this.detach?.();
    this.recorder.ended(this);
    const endedAt = Date.now();
    const records: NewRecord[] = [];
    if (this.sse) {
      for (const e of this.sse.end().events) {
        this.assembler!.push(e);
        this.pending.push({ i: this.eventCount++, type: e.type, data: e.data, offset_ms: performance.now() - this.t0 });
      }
    }
    const events = this.takeEvents();
    if (events) records.push(events);

    let body: ExchangeResponseData['body'] = null;
    let blobs: ReturnType<typeof splitBody>['blobs'] = [];
    let usage: Usage | null = null;
    let message: unknown = null;
    let stopReason: string | null = null;
    let model = this.model;
    if (this.assembler) {
      message = this.assembler.message();
      usage = (this.assembler.usage as Usage | null) ?? null;
      stopReason = this.assembler.stopReason;
      const m = message as { model?: unknown } | null;
      if (typeof m?.model === 'string') model = m.model;
    } else if (this.bodyChunks.length || this.truncated) {
      const raw = Buffer.concat(this.bodyChunks);
      let json: unknown;
      if (!this.truncated && raw.length && (raw[0] === 0x7b || raw[0] === 0x5b)) {
        try {
          json = JSON.parse(raw.toString('utf8'));
        } catch {
          json = undefined;
        }
      }
      ({ body, blobs } = splitBody(raw, json, { truncated: this.truncated }));
      const j = json as { usage?: Usage; stop_reason?: string; model?: string; type?: string; error?: unknown } | undefined;
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
    const data: ExchangeResponseData = {
      status: this.status,
      headers: this.headers,
      body,
      message,
      usage,
      model,
      stopReason,
      outcome,
      error,
      eventCount: this.eventCount,
      timing: {
        startedAt: this.startedAt,
        firstByteMs: this.firstByteMs === null ? null : Math.round(this.firstByteMs * 1000) / 1000,
        endedAt,
        durationMs: endedAt - this.startedAt,
      },
    };
    records.push({ kind: 'exchange.response', exchangeId: this.id, sessionId: this.sessionId, at: endedAt, data });
    this.recorder.queue.enqueue(records, blobs);
  }
}
