/**
 * Reads exchanges back from the ledger: joins an exchange's records and blobs into one view, for the CLI, the audit
 * API, exports and replay.
 */
import type { AuditStore, Outcome, StoredRecord } from '../store/audit-store.js';
import type {
  ExchangeEventsData,
  ExchangeRequestData,
  ExchangeResponseData,
  HeaderMap,
  StoredBody,
  Usage,
} from '../store/record-types.js';
import { blobHashes, joinBody } from './body-splitter.js';

export interface EventView {
  readonly type: string;
  /** The event's data, parsed when it is JSON (Anthropic's always are), else the raw text. */
  readonly data: unknown;
  readonly offset_ms: number;
}

export interface ExchangeView {
  readonly id: string;
  readonly session_id: string;
  readonly connection: string;
  readonly caller: ExchangeRequestData['caller'];
  readonly client: ExchangeRequestData['client'];
  readonly agent: ExchangeRequestData['agent'] | null;
  readonly started_at: string;
  readonly ended_at: string | null;
  readonly model: string | null;
  readonly outcome: Outcome | 'in_progress';
  readonly usage: Usage | null;
  readonly request: {
    readonly method: string;
    readonly path: string;
    readonly query: string;
    readonly headers: HeaderMap;
    readonly body: unknown;
    readonly body_size: number;
  };
  readonly response: {
    readonly status: number | null;
    readonly headers: HeaderMap | null;
    readonly body: unknown;
    readonly stream: boolean;
    readonly events: readonly EventView[];
    readonly message: unknown;
    readonly stop_reason: string | null;
    readonly error: ExchangeResponseData['error'];
    readonly first_byte_ms: number | null;
    readonly duration_ms: number | null;
  };
}

function parseMaybe(text: string): unknown {
  const c = text.charCodeAt(0);
  if (c === 0x7b || c === 0x5b) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

/** A stored body as a reader wants it: parsed JSON, text, or `{ base64 }` for binary bodies. */
export function bodyValue(body: StoredBody | null, blobs: ReadonlyMap<string, Buffer>): unknown {
  if (!body) return null;
  const bytes = joinBody(body, blobs);
  if (body.binary) return { base64: bytes.toString('base64') };
  return parseMaybe(bytes.toString('utf8'));
}

/** Build the views of the exchanges found in `records` (any order of kinds; append order within an exchange). */
export async function viewExchanges(store: AuditStore, records: readonly StoredRecord[]): Promise<ExchangeView[]> {
  const byExchange = new Map<string, { req?: ExchangeRequestData; res?: ExchangeResponseData; events: EventView[] }>();
  for (const r of records) {
    if (!r.exchangeId) continue;
    let e = byExchange.get(r.exchangeId);
    if (!e) byExchange.set(r.exchangeId, (e = { events: [] }));
    if (r.kind === 'exchange.request') e.req = JSON.parse(r.data) as ExchangeRequestData;
    else if (r.kind === 'exchange.response') e.res = JSON.parse(r.data) as ExchangeResponseData;
    else if (r.kind === 'exchange.events') {
      for (const ev of (JSON.parse(r.data) as ExchangeEventsData).events) {
        e.events.push({
          type: ev.type,
          data: typeof ev.data === 'string' ? parseMaybe(ev.data) : ev.data,
          offset_ms: ev.offset_ms,
        });
      }
    }
  }
  const hashes = [...byExchange.values()].flatMap((e) => [
    ...blobHashes(e.req?.request.body),
    ...blobHashes(e.res?.body),
  ]);
  const blobs = await store.blobs(hashes);
  const views: ExchangeView[] = [];
  for (const [id, { req, res, events }] of byExchange) {
    if (!req) continue;
    views.push({
      id,
      session_id: req.session.id,
      connection: req.connection,
      caller: req.caller,
      client: req.client,
      agent: req.agent ?? null,
      started_at: new Date(req.startedAt).toISOString(),
      ended_at: res ? new Date(res.timing.endedAt).toISOString() : null,
      model: res?.model ?? req.model,
      outcome: res?.outcome ?? 'in_progress',
      usage: res?.usage ?? null,
      request: {
        method: req.request.method,
        path: req.request.path,
        query: req.request.query,
        headers: req.request.headers,
        body: bodyValue(req.request.body, blobs),
        body_size: req.request.body?.size ?? 0,
      },
      response: {
        status: res?.status ?? null,
        headers: res?.headers ?? null,
        body: bodyValue(res?.body ?? null, blobs),
        stream: req.stream || events.length > 0,
        events,
        message: res?.message ?? null,
        stop_reason: res?.stopReason ?? null,
        error: res?.error ?? null,
        first_byte_ms: res?.timing.firstByteMs ?? null,
        duration_ms: res?.timing.durationMs ?? null,
      },
    });
  }
  return views;
}

export async function readSession(store: AuditStore, sessionId: string): Promise<ExchangeView[]> {
  return viewExchanges(store, await store.sessionRecords(sessionId));
}

export async function readExchange(store: AuditStore, exchangeId: string): Promise<ExchangeView | undefined> {
  return (await readExchanges(store, [exchangeId])).get(exchangeId);
}

/**
 * Several exchanges by id, read together: one read of their records, one of their blobs. Ids with no request record
 * are absent.
 */
export async function readExchanges(
  store: AuditStore,
  exchangeIds: readonly string[],
): Promise<ReadonlyMap<string, ExchangeView>> {
  return new Map((await viewExchanges(store, await store.recordsOfExchanges(exchangeIds))).map((v) => [v.id, v]));
}
