/**
 * Send a recorded request again, through a gateway connection, and compare the fresh answer with the recorded one:
 * "would the model (or this upstream) still answer the same?". Going through the gateway means the resent exchange
 * is itself recorded, in a session of its own (`resend-<exchange id>`) and marked `x-vigil-resend-of`.
 */
import type { VigilConfig } from '../config/config-schema.js';
import type { ExchangeView } from '../recorder/exchange-reader.js';
import { MessageAssembler, type StreamError } from '../recorder/message-assembler.js';
import { SseDecoder } from '../recorder/sse-decoder.js';
import { diffResponses, type ResponseDiff } from './response-diff.js';

export interface ResendOptions {
  readonly exchange: ExchangeView;
  /** The gateway's base URL for the connection to use, e.g. `http://127.0.0.1:8080/c/sandbox`. */
  readonly connectionUrl: string;
  /** Added to (and overriding) the recorded headers: the caller's credential for the gateway, a session name … */
  readonly headers?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
}

export interface ResendResult {
  readonly status: number;
  /** The gateway's id for the new recording (`x-vigil-exchange-id`), when it answered with one. */
  readonly exchangeId: string | null;
  /** The new answer: assembled from the stream, or the JSON body when it is a message; else `null`. */
  readonly message: unknown;
  /** An error answer (`{type, message}` from an error body or a stream's `error` event), else `null`. */
  readonly error: StreamError | null;
  readonly diff: ResponseDiff;
}

/**
 * Recorded request headers not sent again: per-connection ones, the encoding negotiation (the answer is read
 * decoded), the request's own `content-encoding` (its body was recorded decoded), and the gateway's own `x-vigil-*`,
 * which this function sets.
 */
const NOT_RESENT = new Set([
  'host',
  'content-length',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'te',
  'upgrade',
  'expect',
  'accept-encoding',
  'content-encoding',
]);

/**
 * The base URL of connection `name` on the gateway `config` describes: `public_url` when set, else its listener
 * (a wildcard listener is reached on loopback). Throws an Error naming the configured connections for an unknown name.
 */
export function connectionBaseUrl(config: VigilConfig, name: string): string {
  if (!config.connections.some((c) => c.name === name)) {
    throw new Error(`no connection named "${name}" (configured: ${config.connections.map((c) => c.name).join(', ')})`);
  }
  let base = config.public_url?.replace(/\/+$/, '');
  if (base === undefined) {
    const { host, port } = config.listen;
    const reach = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
    base = `http://${reach.includes(':') ? `[${reach}]` : reach}:${port}`;
  }
  return `${base}/c/${encodeURIComponent(name)}`;
}

/** Resend `opts.exchange`'s request (same method, path, query, body and headers) and diff the answers. */
export async function resendExchange(opts: ResendOptions): Promise<ResendResult> {
  const x = opts.exchange;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(x.request.headers)) {
    if (NOT_RESENT.has(k) || k.startsWith('x-vigil-')) continue;
    headers[k] = typeof v === 'string' ? v : v.join(', ');
  }
  headers['x-vigil-session'] = `resend-${x.id}`;
  headers['x-vigil-resend-of'] = x.id;
  Object.assign(headers, opts.headers ?? {});

  const url = `${opts.connectionUrl.replace(/\/+$/, '')}${x.request.path}${x.request.query ? `?${x.request.query}` : ''}`;
  const body = requestBytes(x.request.body);
  if (body !== undefined && !Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) {
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(url, {
    method: x.request.method,
    headers,
    ...(body !== undefined ? { body } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });

  let message: unknown = null;
  let error: StreamError | null = null;
  if ((res.headers.get('content-type') ?? '').includes('text/event-stream') && res.body) {
    const decoder = new SseDecoder();
    const assembler = new MessageAssembler();
    for await (const chunk of res.body) {
      for (const e of decoder.push(Buffer.from(chunk))) assembler.push(e);
    }
    for (const e of decoder.end().events) assembler.push(e);
    message = assembler.message();
    error = assembler.error;
  } else {
    const text = await res.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text);
    } catch {
      // Not JSON: compared as no message, with the text as the error below.
    }
    const record = json !== null && typeof json === 'object' ? (json as Record<string, unknown>) : null;
    if (record?.['type'] === 'error') error = errorOf(record['error']);
    else if (record && Array.isArray(record['content'])) message = record;
    else if (!res.ok) error = { type: 'unknown_error', message: text.slice(0, 1000) };
  }

  const recordedError = x.response.error ?? errorOf((x.response.body as { error?: unknown } | null)?.error);
  const diff = diffResponses(
    { status: x.response.status, message: x.response.message ?? messageBody(x.response.body), error: recordedError },
    { status: res.status, message, error },
  );
  return { status: res.status, exchangeId: res.headers.get('x-vigil-exchange-id'), message, error, diff };
}

/** The request body as bytes to send: JSON re-serialised (as SDKs send it: compact), text as is, binary decoded. */
function requestBytes(body: unknown): string | Buffer | undefined {
  if (body === null || body === undefined) return undefined;
  if (typeof body === 'string') return body;
  const keys = Object.keys(body);
  if (keys.length === 1 && typeof (body as { base64?: unknown }).base64 === 'string') {
    return Buffer.from((body as { base64: string }).base64, 'base64');
  }
  return JSON.stringify(body);
}

function messageBody(body: unknown): unknown {
  return body !== null && typeof body === 'object' && Array.isArray((body as { content?: unknown }).content)
    ? body
    : null;
}

function errorOf(e: unknown): StreamError | null {
  if (e === null || typeof e !== 'object') return null;
  const { type, message } = e as { type?: unknown; message?: unknown };
  return typeof type === 'string' ? { type, message: typeof message === 'string' ? message : '' } : null;
}
