/**
 * A fake Anthropic API for tests, benchmarks and sandboxes without internet: the wire format of the real
 * Messages, Models, Message Batches and Files APIs, with deterministic replies and failure modes on request.
 *
 * Replies echo the last user turn (`Echo: …`). The conversation can steer the fake:
 * - `[[tool:NAME {json}]]` makes it call an offered tool with that input; a turn holding `tool_result` blocks
 *   is acknowledged with `Tool result received: …`. This is enough for Claude Code to run a tool-using session.
 * - `[[scenario:NAME]]`, or the `x-fake-scenario` header (which wins), picks a failure mode: `rate_limit`,
 *   `rate_limit_once:<key>`, `overloaded`, `server_error`, `bad_request`, `error_mid_stream`, `cut_stream`,
 *   `slow[:<ms>]`, `gzip`, `hang`; combine with commas.
 *
 * Every request is recorded in {@link FakeAnthropic.requests}, so a test can check what a gateway forwarded.
 */
import { listenOn } from '../net/listen.js';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { BatchStore } from './internal/batches.js';
import { type Exchange, responseHeaders, sendError } from './internal/exchange.js';
import { FileStore } from './internal/files.js';
import { countTokens, createMessage, type MessagesSettings } from './internal/messages.js';
import { getModel, listModels } from './internal/models.js';
import { answerFailure, parseScenario, type Scenario } from './internal/scenarios.js';

export interface FakeAnthropicOptions {
  /** Interface to listen on; default `127.0.0.1`. */
  host?: string;
  /** Port to listen on; default `0` (any free port). */
  port?: number;
  /**
   * When set, every request must carry the key, or gets a 401 `authentication_error`. Accepted as
   * `x-api-key: <apiKey>` or as `authorization: Bearer <apiKey>`, which is how current SDKs send API keys. Unset (or
   * undefined): any key, or none, is taken.
   */
  apiKey?: string | undefined;
  /** Pause between stream events, in milliseconds; default 0 (the whole stream in one write). */
  eventDelayMs?: number;
  /**
   * Keep every request in {@link FakeAnthropic.requests}; default true. Benchmarks turn it off, since a long run
   * of ~40 KB Claude Code requests would otherwise hold gigabytes.
   */
  recordRequests?: boolean;
}

/** One request as the fake received it. */
export interface ReceivedRequest {
  method: string;
  /** Path without the query string, e.g. `/v1/messages`. */
  path: string;
  /** Query string without the leading `?`, e.g. `beta=true`; empty when there is none. */
  query: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface FakeAnthropic {
  /** Base URL to give a client, e.g. `http://127.0.0.1:41234` (no trailing slash). */
  readonly url: string;
  /**
   * Every request received so far, oldest first (empty if `recordRequests` is false). Tests may clear it with
   * `requests.length = 0`.
   */
  readonly requests: ReceivedRequest[];
  /** Stop listening and drop every open connection, including streams in progress and `hang`ing requests. */
  close(): Promise<void>;
}

/** Idle keep-alive sockets are kept this long, so a gateway's connection pool is not churned between requests. */
const KEEP_ALIVE_MS = 30_000;

/**
 * Start a fake Anthropic API on `opts.host:opts.port` (default `127.0.0.1:0`).
 *
 * @example
 * const fake = await startFakeAnthropic();
 * const client = new Anthropic({ baseURL: fake.url, apiKey: 'k' });
 * await client.messages.create({ model: 'claude-sonnet-5-5', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] });
 * // → content: [{ type: 'text', text: 'Echo: hi' }]
 * await fake.close();
 */
export async function startFakeAnthropic(opts: FakeAnthropicOptions = {}): Promise<FakeAnthropic> {
  const requests: ReceivedRequest[] = [];
  let url = '';
  let served = 0;
  const settings: MessagesSettings = {
    seenOnceKeys: new Set(),
    eventDelayMs: opts.eventDelayMs ?? 0,
    cachedPrefixes: new Set(),
  };
  const batches = new BatchStore(() => url);
  const files = new FileStore();
  const record = opts.recordRequests ?? true;
  const bearer = opts.apiKey === undefined ? undefined : `Bearer ${opts.apiKey}`;

  const route = async (ex: Exchange, scenario: Scenario | undefined): Promise<void> => {
    const { method, path } = ex;
    if (path === '/v1/messages' && method === 'POST') return createMessage(ex, scenario, settings);
    if (path === '/v1/messages/count_tokens' && method === 'POST') return countTokens(ex);
    const segments = path.split('/').slice(1); // '' before the leading slash
    const [version, resource, ...rest] = segments;
    if (version === 'v1') {
      if (resource === 'models' && method === 'GET') {
        if (rest.length === 0) return listModels(ex);
        if (rest.length === 1) return getModel(ex, decodeURIComponent(rest[0]!));
      }
      if (resource === 'messages' && rest[0] === 'batches') return batches.handle(ex, rest.slice(1));
      if (resource === 'files') return files.handle(ex, rest);
    }
    sendError(ex, 404, 'not_found_error', `Not found: ${method} ${path}`);
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse, body: Buffer): void => {
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const query = q < 0 ? '' : target.slice(q + 1);
    const method = req.method ?? 'GET';
    if (record) requests.push({ method, path, query, headers: req.headers, body });

    const ex: Exchange = { req, res, method, path, query, body, headers: responseHeaders(served++), gzip: false };
    if (bearer !== undefined && req.headers['x-api-key'] !== opts.apiKey && req.headers.authorization !== bearer) {
      return sendError(ex, 401, 'authentication_error', 'invalid x-api-key');
    }
    const header = req.headers['x-fake-scenario'];
    let scenario: Scenario | undefined;
    if (typeof header === 'string') {
      const parsed = parseScenario(header);
      if (!parsed.ok) return sendError(ex, 400, 'invalid_request_error', parsed.message);
      scenario = parsed.value;
      if (answerFailure(ex, scenario, settings.seenOnceKeys)) return;
      ex.gzip = scenario.gzip === true;
    }
    route(ex, scenario).catch((err: unknown) => {
      // A bug in the fake should fail the test that met it, visibly, rather than hang it.
      if (!res.headersSent) sendError(ex, 500, 'api_error', `fake-anthropic failed: ${String(err)}`);
      else res.destroy(err instanceof Error ? err : undefined);
    });
  };

  const server = createServer({ noDelay: true }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => onRequest(req, res, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
  });
  server.keepAliveTimeout = KEEP_ALIVE_MS;

  const { url: listenedUrl } = await listenOn(server, opts.host ?? '127.0.0.1', opts.port ?? 0);
  url = listenedUrl;

  return {
    url,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
