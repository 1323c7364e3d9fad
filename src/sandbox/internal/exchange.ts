/**
 * One request/response pair inside the fake, and the few ways the fake answers: JSON, an Anthropic-shaped error,
 * or raw bytes — each with the headers the real API puts on every response.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import { anthropicErrorBody, type AnthropicErrorType } from '../../errors.js';
import { requestId } from './ids.js';

export interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  /** Query string without the leading `?`. */
  readonly query: string;
  readonly body: Buffer;
  /** Headers every response to this request carries (`request-id`, rate-limit state). */
  readonly headers: OutgoingHttpHeaders;
  /** Set by the `gzip` scenario: compress JSON bodies when the client accepts gzip. */
  gzip: boolean;
}

/** Rate-limit budget the fake advertises; the numbers are plausible for a paid tier, nothing depends on them. */
const REQUESTS_LIMIT = 4000;
const TOKENS_LIMIT = 2_000_000;

let resetSecond = 0;
let resetStamp = '';

/** RFC 3339 time of the next whole second, computed at most once a second because every response carries it. */
function nextReset(): string {
  const now = Math.ceil(Date.now() / 1000);
  if (now !== resetSecond) {
    resetSecond = now;
    resetStamp = new Date(now * 1000).toISOString().replace('.000Z', 'Z');
  }
  return resetStamp;
}

/**
 * The headers of every response: a fresh `request-id` and the `anthropic-ratelimit-*` family.
 * `served` counts requests so far, so `remaining` moves as it does against the real API.
 * https://docs.anthropic.com/en/api/rate-limits#response-headers
 */
export function responseHeaders(served: number): OutgoingHttpHeaders {
  const reset = nextReset();
  const requestsRemaining = REQUESTS_LIMIT - 1 - (served % REQUESTS_LIMIT);
  const tokensRemaining = TOKENS_LIMIT;
  return {
    'request-id': requestId(),
    'anthropic-organization-id': '00000000-0000-4000-8000-000000000000',
    'anthropic-ratelimit-requests-limit': String(REQUESTS_LIMIT),
    'anthropic-ratelimit-requests-remaining': String(requestsRemaining),
    'anthropic-ratelimit-requests-reset': reset,
    'anthropic-ratelimit-tokens-limit': String(TOKENS_LIMIT),
    'anthropic-ratelimit-tokens-remaining': String(tokensRemaining),
    'anthropic-ratelimit-tokens-reset': reset,
    'anthropic-ratelimit-input-tokens-limit': String(TOKENS_LIMIT),
    'anthropic-ratelimit-input-tokens-remaining': String(tokensRemaining),
    'anthropic-ratelimit-input-tokens-reset': reset,
    'anthropic-ratelimit-output-tokens-limit': String(TOKENS_LIMIT / 5),
    'anthropic-ratelimit-output-tokens-remaining': String(tokensRemaining / 5),
    'anthropic-ratelimit-output-tokens-reset': reset,
  };
}

/** Answer with a JSON body (already serialised, or serialised here). */
export function sendJson(ex: Exchange, status: number, body: unknown, extra?: OutgoingHttpHeaders): void {
  let payload: Buffer = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const headers: OutgoingHttpHeaders = { ...ex.headers, ...extra, 'content-type': 'application/json' };
  if (ex.gzip && acceptsGzip(ex.req)) {
    payload = gzipSync(payload);
    headers['content-encoding'] = 'gzip';
  }
  headers['content-length'] = payload.length;
  ex.res.writeHead(status, headers);
  ex.res.end(payload);
}

/** Answer with Anthropic's error shape: `{"type":"error","error":{"type":…,"message":…}}`. */
export function sendError(
  ex: Exchange,
  status: number,
  type: AnthropicErrorType,
  message: string,
  extra?: OutgoingHttpHeaders,
): void {
  sendJson(ex, status, anthropicErrorBody(type, message), extra);
}

/** Answer with raw bytes, as file downloads and batch results are served. */
export function sendBytes(ex: Exchange, status: number, contentType: string, bytes: Buffer): void {
  ex.res.writeHead(status, { ...ex.headers, 'content-type': contentType, 'content-length': bytes.length });
  ex.res.end(bytes);
}

function acceptsGzip(req: IncomingMessage): boolean {
  const accept = req.headers['accept-encoding'];
  return typeof accept === 'string' && /\bgzip\b/i.test(accept);
}
