/**
 * A local Anthropic API that answers from one recorded session, so an agent run can be reproduced without calling
 * Claude: point the client's base URL (ANTHROPIC_BASE_URL) at it and run the same code.
 *
 * Requests are matched to recorded exchanges by content (request-matcher.ts). A match is answered with the recorded
 * status, upstream headers (`request-id`, `content-type`, rate-limit headers …; not content-length or
 * content-encoding, since the body is re-serialised from its decoded record) and body, or for a stream with the
 * recorded events at their recorded offsets (`speed` 1), scaled (`speed` 2 is twice as fast), or all at once
 * (`speed` 0). A stream that was cut in the recording is cut again.
 *
 * A request that matches nothing gets a 412 `invalid_request_error` in Anthropic's error shape (see DIVERGED_STATUS
 * for why 412) saying at which turn and JSON path it diverged. Two side calls that never steer a conversation are
 * answered even when not recorded: `GET /v1/models[/id]` lists the models the session used, and `count_tokens`
 * answers with a rough estimate (about four bytes per token), so a client's bookkeeping does not end a replay.
 */
import { listenOn } from '../net/listen.js';
import { isUtf8 } from 'node:buffer';
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { anthropicErrorBody, anthropicErrorTypeOf, isAnthropicErrorType } from '../errors.js';
import { isLocalRequest } from '../identity/loopback.js';
import { deniedClientMessage } from '../policy/approval-rules.js';
import type { EventView, ExchangeView } from '../recorder/exchange-reader.js';
import { RequestMatcher } from './request-matcher.js';

/** Where the replay server reports what it served; a pino logger fits. */
export interface ReplayLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ReplayServerOptions {
  /** One session's exchanges in recorded order, as `readSession` returns them. */
  readonly exchanges: readonly ExchangeView[];
  /** Default `127.0.0.1`. */
  readonly host?: string;
  /** Default `0` (any free port). */
  readonly port?: number;
  /** 1: the recorded timing; 0: as fast as possible; other values scale the recorded delays (2 = twice as fast). */
  readonly speed: number;
  readonly log?: ReplayLog;
}

export interface ReplayServer {
  /** Base URL for a client, e.g. `http://127.0.0.1:41234` (no trailing slash). */
  readonly url: string;
  /** Requests answered from the recording so far. */
  readonly served: number;
  /** Stop listening and cut any response still being replayed. */
  close(): Promise<void>;
}

/**
 * The status of a diverged request. Not 400: Claude Code answers a 400 (or 422) by retrying with reshaped requests
 * (thinking display dropped, ToolSearch switched off; six requests in all) and shows the last one's difference, which
 * points at its own fallback rather than at the divergence. 412 Precondition Failed (the precondition being "this
 * request was recorded") is retried by no SDK (they retry 408, 409, 429 and 5xx) nor by Claude Code, which shows
 * "API Error: 412 replay diverged at …". `x-should-retry: false` says the same to SDKs that read it.
 */
const DIVERGED_STATUS = 412;
/** How long a cut stream's events have to reach the client's reader before the cut. */
const CUT_GRACE_MS = 50;

/** Same limit as the gateway's default `limits.max_request_body`. */
const MAX_BODY = 32 * 1024 * 1024;

/** Not forwarded from the record: they describe the original bytes on the wire, not the re-serialised body. */
const DROPPED_HEADERS = new Set([
  'content-length',
  'content-encoding',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'date',
]);

const ERROR_STATUS: Record<string, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  timeout_error: 504,
  overloaded_error: 529,
};

/**
 * Start answering from `opts.exchanges`.
 *
 * @example
 * const replay = await startReplayServer({ exchanges: await readSession(store, id), speed: 0 });
 * const client = new Anthropic({ baseURL: replay.url, apiKey: 'unused' });
 */
export async function startReplayServer(opts: ReplayServerOptions): Promise<ReplayServer> {
  const speed = opts.speed;
  if (!(speed >= 0) || !Number.isFinite(speed))
    throw new RangeError(`speed must be 0 or a positive number (got ${speed})`);
  const matcher = new RequestMatcher(opts.exchanges);
  const closing = new AbortController();
  const models = [...new Set(opts.exchanges.map((x) => x.model).filter((m): m is string => m !== null))];
  let requestCount = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse, raw: Buffer): Promise<void> => {
    const t0 = performance.now();
    const n = ++requestCount;
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    // A client may still carry a gateway connection prefix in its base URL (`…/c/<name>`).
    const path = (q < 0 ? target : target.slice(0, q)).replace(/^\/c\/[^/]+(?=\/)/, '');
    const method = req.method ?? 'GET';
    const result = matcher.match({ method, path, body: parseBody(raw) });

    if (result.kind === 'recorded') {
      opts.log?.info({ request: n, turn: result.turn, exchange: result.exchange.id, how: result.how }, 'replayed');
      return sendRecorded(res, result.exchange, t0, speed, closing.signal);
    }
    const fallback = sideCall(method, path, raw, models, matcher);
    if (fallback) {
      opts.log?.warn({ request: n, method, path }, 'not recorded; answered with a default');
      return sendJson(res, fallback.status, fallback.body, { 'x-vigil-replay': 'default' });
    }
    opts.log?.warn({ request: n, method, path, reason: result.message }, 'replay diverged');
    sendJson(res, DIVERGED_STATUS, anthropicErrorBody('invalid_request_error', result.message), {
      'x-vigil-replay': 'diverged',
      'x-should-retry': 'false',
    });
  };

  const server = createServer({ noDelay: true }, (req, res) => {
    // Recorded conversations, to nobody in particular: not to a web page acting through a browser on this machine
    // (DNS rebinding gives itself away in Host, a cross-site request in Origin).
    if (!isLocalRequest(req.headers)) {
      req.resume();
      sendJson(
        res,
        403,
        anthropicErrorBody('permission_error', 'the replay server answers requests addressed to this machine only'),
        {},
      );
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > MAX_BODY) {
        sendJson(res, 413, anthropicErrorBody('request_too_large', `request body over ${MAX_BODY} bytes`), {});
        return;
      }
      handle(req, res, Buffer.concat(chunks)).catch((err: unknown) => {
        opts.log?.warn({ err }, 'replay failed');
        if (!res.headersSent) sendJson(res, 500, anthropicErrorBody('api_error', `replay failed: ${String(err)}`), {});
        else res.destroy();
      });
    });
  });

  const { url: listenedUrl } = await listenOn(server, opts.host ?? '127.0.0.1', opts.port ?? 0);

  return {
    url: listenedUrl,
    get served() {
      return matcher.served;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        closing.abort();
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** The body as the recorder reads it back: JSON when it parses, text when UTF-8, else `{ base64 }`; none is null. */
function parseBody(raw: Buffer): unknown {
  if (raw.length === 0) return null;
  if (!isUtf8(raw)) return { base64: raw.toString('base64') };
  const text = raw.toString('utf8');
  const c = text.charCodeAt(0);
  if (c === 0x7b || c === 0x5b) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  }
  return text;
}

async function sendRecorded(
  res: ServerResponse,
  x: ExchangeView,
  t0: number,
  speed: number,
  closing: AbortSignal,
): Promise<void> {
  const headers: OutgoingHttpHeaders = { 'x-vigil-replay-of': x.id };
  for (const [k, v] of Object.entries(x.response.headers ?? {})) {
    if (!DROPPED_HEADERS.has(k)) headers[k] = v as string | string[];
  }
  const wait = async (offsetMs: number | null): Promise<boolean> => {
    if (speed === 0 || offsetMs === null) return !res.destroyed;
    const due = t0 + offsetMs / speed - performance.now();
    if (due > 1) await sleep(due, undefined, { signal: closing }).catch(() => undefined);
    return !res.destroyed && !closing.aborted;
  };

  if (x.response.stream && x.response.status !== null && x.response.status < 300) {
    headers['content-type'] ??= 'text/event-stream; charset=utf-8';
    if (!(await wait(x.response.first_byte_ms))) return;
    res.writeHead(x.response.status, headers);
    const events = x.response.events;
    const write = (text: string): Promise<void> => new Promise((resolve) => res.write(text, () => resolve()));
    let written: Promise<void> = Promise.resolve();
    if (speed === 0) written = write(events.map(frame).join(''));
    else {
      for (const e of events) {
        if (!(await wait(e.offset_ms))) return;
        written = write(frame(e));
      }
    }
    // A recorded stream that ended without message_stop (or an error event) was cut: cut it again.
    const whole = events.some((e) => e.type === 'message_stop' || e.type === 'error');
    if (whole || x.outcome === 'ok') {
      res.end();
      return;
    }
    // The client must read the events before it sees the cut: a fetch body that fails while chunks still wait in its
    // queue drops them (WHATWG streams), and a client that got headers, events and the cut in one read had not begun
    // reading the body yet. So: the events leave, a moment passes, then the socket ends (not destroyed: what was
    // written still arrives).
    await written;
    await sleep(CUT_GRACE_MS, undefined, { signal: closing }).catch(() => undefined);
    res.socket?.end();
    return;
  }

  if (!(await wait(x.response.first_byte_ms ?? x.response.duration_ms))) return;
  if (x.response.status === null || x.response.first_byte_ms === null) {
    // The gateway answered itself (a deny rule, upstream unreachable, no credential …): give back what the client
    // received, with the status recorded (recordings made before that was kept have none). The recorded error's type
    // may be Vigil's internal reason (`approval_rule_denied`, `dlp_blocked` …); the client got the Anthropic type the
    // gateway answers that status with, and a deny rule's message without the rule's name the record adds.
    const recorded = x.response.error;
    const status = x.response.status ?? ERROR_STATUS[recorded?.type ?? ''] ?? 502;
    const type =
      recorded && isAnthropicErrorType(recorded.type) ? recorded.type : (anthropicErrorTypeOf(status) ?? 'api_error');
    const message =
      recorded === null || recorded === undefined
        ? `the recorded exchange ended without a response (${x.outcome})`
        : recorded.type === 'approval_rule_denied'
          ? deniedClientMessage(recorded.message)
          : recorded.message;
    sendJson(res, status, anthropicErrorBody(type, message), { 'x-vigil-replay-of': x.id });
    return;
  }
  const body = x.response.body;
  let bytes: Buffer;
  if (body === null || body === undefined) bytes = Buffer.alloc(0);
  else if (typeof body === 'string') bytes = Buffer.from(body);
  else if (isBase64Body(body)) bytes = Buffer.from(body.base64, 'base64');
  else {
    bytes = Buffer.from(JSON.stringify(body));
    headers['content-type'] ??= 'application/json';
  }
  headers['content-length'] = bytes.length;
  res.writeHead(x.response.status, headers);
  res.end(bytes);
}

function isBase64Body(body: unknown): body is { base64: string } {
  if (body === null || typeof body !== 'object') return false;
  const keys = Object.keys(body);
  return keys.length === 1 && typeof (body as { base64?: unknown }).base64 === 'string';
}

/** One event as the API frames it: https://docs.anthropic.com/en/docs/build-with-claude/streaming */
function frame(e: EventView): string {
  const data = typeof e.data === 'string' ? e.data : JSON.stringify(e.data);
  return `event: ${e.type}\n${data
    .split(/\r\n|\r|\n/)
    .map((line) => `data: ${line}\n`)
    .join('')}\n`;
}

function sendJson(res: ServerResponse, status: number, body: string, headers: OutgoingHttpHeaders): void {
  const bytes = Buffer.from(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': bytes.length });
  res.end(bytes);
}

/** The default answer to a side call the session did not record (see the file comment), or undefined. */
function sideCall(
  method: string,
  path: string,
  raw: Buffer,
  models: readonly string[],
  matcher: RequestMatcher,
): { status: number; body: string } | undefined {
  if (method === 'POST' && path === '/v1/messages/count_tokens') {
    return { status: 200, body: JSON.stringify({ input_tokens: Math.max(1, Math.ceil(raw.length / 4)) }) };
  }
  if (method !== 'GET' || matcher.recorded(method, path)) return undefined;
  const model = (id: string) => ({ type: 'model', id, display_name: id, created_at: '1970-01-01T00:00:00Z' });
  if (path === '/v1/models') {
    const data = models.map(model);
    return {
      status: 200,
      body: JSON.stringify({ data, has_more: false, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null }),
    };
  }
  const m = /^\/v1\/models\/([^/]+)$/.exec(path);
  if (!m) return undefined;
  const id = decodeURIComponent(m[1]!);
  if (models.includes(id)) return { status: 200, body: JSON.stringify(model(id)) };
  return {
    status: 404,
    body: anthropicErrorBody('not_found_error', `model: ${id} (not used in the recorded session)`),
  };
}
