/**
 * THE HOT PATH. One request, top to bottom:
 *   route → identify → policy → read body → record request (durable) → forward → stream back while recording → finalize
 *
 * The client is served first: each upstream chunk is written to the client before the recorder sees it, and the
 * recorder never blocks a chunk. Only the request record is awaited before forwarding, because that is what
 * "recorded before forwarded" means.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { asVigilError, isStackOverflow, messageOf, shuttingDown, tooDeeplyNested, VigilError } from '../errors.js';
import type { Authentication } from '../identity/authenticator.js';
import type { Principal } from '../identity/principal.js';
import { deniedRecordMessage, evaluate, type Evaluation } from '../policy/approval-rules.js';
import { findingTypes } from '../recorder/masking/masker.js';
import { summarizeRequest } from '../policy/approval-summary.js';
import { describeActor, type ApprovalCoordinator, type HoldOutcome } from '../policy/approvals.js';
import type { PolicyDecision } from '../policy/policy.js';
import type { UsageLimits } from '../policy/usage-limits.js';
import type { ExchangeRecording, Recorder } from '../recorder/recorder.js';
import type { Outcome } from '../store/audit-store.js';
import { listenOn } from '../net/listen.js';
import { createListener, type Listener } from '../net/tls-listener.js';
import type { TlsListenerConfig } from '../net/tls-config.js';
import { answerParserRefusals, MAX_HEADER_BYTES } from '../net/parser-refusals.js';
import { newExchangeId } from '../recorder/ids.js';
import { RequestBody } from '../recorder/request-body.js';
import type { Connection, Connections } from './connections.js';
import { gatewayBaseUrl, isBatchPath, rewriteResultsUrls } from './batch-results-url.js';
import { clientResponseHeaders, upstreamRequestHeaders } from './header-rules.js';
import { decodeBody, readBody } from './request-body.js';

export interface ProxyDeps {
  readonly connections: Connections;
  readonly recorder: Recorder;
  readonly log: Logger;
  readonly maxRequestBody: number;
  /** The gateway's address as clients reach it (config `public_url`); default: http:// + the request's Host. */
  readonly publicUrl?: string | undefined;
  /** Who is calling; throws a VigilError (401) when the credential is missing or bad. */
  readonly identify: (req: IncomingMessage) => Promise<Authentication>;
  /** What they may do (a refusal is recorded with the caller, as `access.denied`). */
  readonly decide: (auth: Authentication, connection: Connection, req: IncomingMessage) => PolicyDecision;
  /** Holds calls that approval rules say need a person's yes; absent: such calls are refused (fail closed). */
  readonly approvals?: Pick<ApprovalCoordinator, 'hold'> | undefined;
  /** The listener's certificate and key (`tls`): HTTPS (absent: plain HTTP). */
  readonly tls?: { readonly config: TlsListenerConfig; readonly where: string } | undefined;
  /** Usage limits (429 once a caller's, or the connection's, is reached); absent: none. */
  readonly limits?: Pick<UsageLimits, 'check'> | undefined;
}

export const EXCHANGE_ID_HEADER = 'x-vigil-exchange-id';
/** A refusal whose `retry-after` is further away than this tells the SDKs not to retry (`x-should-retry: false`). */
const SDK_RETRY_WAIT_MS = 60_000;

interface Route {
  readonly connection: Connection;
  /** `/c/<name>` when the caller named the connection, else ''. */
  readonly prefix: string;
  /** The API path under the connection, e.g. `/v1/messages`. */
  readonly path: string;
  readonly query: string;
}

export class ProxyServer {
  readonly server: Listener['server'];
  private readonly listener: Listener;
  private draining = false;
  private admittingCount = 0;
  /** `limits.max_request_body` and `public_url`; a reload may change them for requests read after. */
  private maxRequestBody: number;
  private publicUrl: string | undefined;

  constructor(private readonly deps: ProxyDeps) {
    this.maxRequestBody = deps.maxRequestBody;
    this.publicUrl = deps.publicUrl;
    const options = { noDelay: true, keepAliveTimeout: 65_000, maxHeaderSize: MAX_HEADER_BYTES };
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      // handle() answers every failure it expects; anything else still gets an answer, never an unhandled rejection
      // (which would stop the process).
      this.handle(req, res).catch((err: unknown) => {
        this.deps.log.error({ err }, 'request failed unexpectedly');
        this.sendError(res, newExchangeId(), asVigilError(err));
      });
    };
    this.listener = createListener(options, handler, deps.tls && { ...deps.tls, log: deps.log });
    this.server = this.listener.server;
    answerParserRefusals(this.server, deps.log, (refusal) => refusal.toAnthropicBody());
  }

  listen(host: string, port: number): Promise<{ url: string; address: AddressInfo }> {
    return listenOn(this.server, host, port, this.listener.scheme);
  }

  /** What a reload changed: the largest request body accepted, and the gateway's address as clients reach it. */
  reconfigure(next: { readonly maxRequestBody: number; readonly publicUrl: string | undefined }): void {
    this.maxRequestBody = next.maxRequestBody;
    this.publicUrl = next.publicUrl;
  }

  /** Stop looking for a renewed TLS certificate (when the gateway stops, or fails to start). */
  stopRenewals(): void {
    this.listener.stopRenewals();
  }

  /** Stop accepting; idle keep-alive connections are closed, in-flight requests continue. */
  stopAccepting(): Promise<void> {
    this.draining = true;
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  /**
   * Calls accepted and not yet handed to the recorder: being identified, read or checked. In flight for shutdown as
   * much as the exchanges the recorder holds: its grace waits for them, so that a refusal among them (a 401 or 403) is
   * answered and recorded before the recorder closes, and a call let through is forwarded rather than answered 503.
   */
  get admitting(): number {
    return this.admittingCount;
  }

  /** Cut whatever is still open (after the shutdown deadline). */
  destroyAll(): void {
    this.server.closeAllConnections();
  }

  private route(url: string): Route | VigilError {
    const q = url.indexOf('?');
    const rawPath = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q + 1);
    let connection: Connection | undefined;
    let path = rawPath;
    let prefix = '';
    if (rawPath.startsWith('/c/')) {
      const end = rawPath.indexOf('/', 3);
      let name: string;
      try {
        name = decodeURIComponent(rawPath.slice(3, end < 0 ? undefined : end));
      } catch {
        return new VigilError('BAD_REQUEST', 'malformed percent-encoding in the connection name');
      }
      connection = this.deps.connections.get(name);
      if (!connection) {
        return new VigilError(
          'UNKNOWN_CONNECTION',
          `no connection named "${name}" on this gateway (use /c/<name>/ with a configured connection, or / for the default)`,
        );
      }
      path = end < 0 ? '/' : rawPath.slice(end);
      prefix = rawPath.slice(0, end < 0 ? undefined : end);
    } else {
      connection = this.deps.connections.default;
    }
    if (!path.startsWith('/v1/')) {
      return new VigilError('NOT_FOUND', `the gateway forwards Anthropic API paths under /v1/ only (got ${path})`);
    }
    const problem = pathProblem(path);
    if (problem !== null) return new VigilError('BAD_REQUEST', `request path ${problem} (got ${path})`);
    return { connection, prefix, path, query };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    if (url === '/healthz') return this.health(res);
    const exchangeId = newExchangeId();
    if (!url.startsWith('/')) {
      // Absolute-form targets (`GET http://host/…`) would let a caller name a host: never.
      return this.sendError(res, exchangeId, new VigilError('BAD_REQUEST', 'request target must be a path'));
    }
    if (this.draining) {
      return this.sendError(res, exchangeId, shuttingDown());
    }
    const route = this.route(url);
    if (route instanceof VigilError) {
      req.resume();
      return this.sendError(res, exchangeId, route);
    }
    const { connection } = route;
    // Counted until the request is handed to the recorder, or the call is answered without it (or cut).
    let admitting = true;
    this.admittingCount++;
    const admitted = (): void => {
      if (!admitting) return;
      admitting = false;
      this.admittingCount--;
    };
    // A client may hang up while its call is authenticated, read or recorded: it must then not be forwarded (nobody
    // would read the answer, and a paused, unread upstream stream would never end). Until forward() takes over, a
    // `close` means exactly that: nothing has been answered yet. The same listener ends the count above when the call
    // is answered (or cut) before it reaches the recorder.
    let clientGone = false;
    const onEarlyClose = (): void => {
      clientGone = true;
      admitted();
    };
    res.once('close', onEarlyClose);

    let principal: Principal | undefined;
    try {
      const auth = await this.deps.identify(req);
      principal = auth.principal;
      const decision = this.deps.decide(auth, connection, req);
      if (decision.action === 'deny') throw new VigilError('NOT_ALLOWED', decision.message);
      // Usage limits last: a call refused for who makes it is not counted against what they may use.
      const limited = this.deps.limits?.check(connection.name, principal);
      if (limited)
        throw new VigilError('LIMIT_REACHED', limited.message, {
          retryAfterMs: Math.max(0, limited.retryAt - Date.now()),
        });
    } catch (err) {
      req.resume();
      const e = asVigilError(err);
      if (e.code === 'UNAUTHENTICATED' || e.code === 'NOT_ALLOWED' || e.code === 'LIMIT_REACHED') {
        this.deps.recorder.accessDenied({
          connection: connection.name,
          status: e.status,
          reason: e.message,
          path: route.path,
          clientAddress: req.socket.remoteAddress ?? null,
          caller: principal,
          redactor: connection.redactor,
        });
      }
      return this.sendError(res, exchangeId, e);
    }

    let body: Buffer;
    let decoded: Buffer | null;
    try {
      const limit = this.maxRequestBody;
      body = await readBody(req, limit);
      decoded = decodeBody(body, req.headers['content-encoding'], limit);
    } catch (err) {
      return this.sendError(res, exchangeId, asVigilError(err), true);
    }
    if (decoded !== null) body = decoded;
    let request = RequestBody.received(body, req.headers['content-type']);

    // Data-loss prevention, when the connection asks for it: the request itself is masked or refused.
    let dlp: VigilError | null = null;
    const inFlight = connection.config.masking.in_flight;
    const json = inFlight !== 'off' ? request.json() : undefined;
    if (json !== undefined) {
      let r: ReturnType<typeof connection.redactor.masker.maskJson>;
      try {
        r = connection.redactor.masker.maskJson(json, '$', connection.redactor.inFlightMemo);
      } catch (err) {
        if (!isStackOverflow(err)) throw err;
        return this.sendError(res, exchangeId, tooDeeplyNested());
      }
      if (r.changed) {
        if (inFlight === 'block') {
          dlp = new VigilError(
            'BAD_REQUEST',
            `request refused by data-loss prevention: it contains ${findingTypes(r.findings).join(', ')}`,
          );
        } else {
          request = RequestBody.fromValue(r.value);
        }
      }
    }

    // The request target is no body to rewrite: a secret in the path or query string is refused, in either mode.
    if (inFlight !== 'off' && dlp === null) {
      const path = connection.redactor.requestPart('path', route.path);
      const query = connection.redactor.requestPart('query', route.query);
      if (path.findings.length > 0 || query.findings.length > 0) {
        const types = findingTypes([...path.findings, ...query.findings]).join(', ');
        dlp = new VigilError(
          'BAD_REQUEST',
          `request refused by data-loss prevention: its path or query string contains ${types}`,
        );
      }
    }

    // Approval rules, only when the connection has some: judged on what would be sent upstream.
    const verdict: Evaluation | null = connection.approvalRules.rules.length
      ? evaluate(connection.approvalRules, principal, request)
      : null;

    let rec: ExchangeRecording;
    try {
      // begin() counts it as in flight from now.
      admitted();
      rec = await this.deps.recorder.begin({
        exchangeId,
        connection: connection.name,
        principal,
        clientAddress: req.socket.remoteAddress ?? null,
        method: req.method ?? 'GET',
        path: route.path,
        query: route.query,
        headers: req.headers,
        body: request,
        bestEffort: connection.config.recording === 'best_effort',
        level: connection.config.record,
        redactor: connection.redactor,
      });
    } catch (err) {
      const refusal = asVigilError(err);
      // Shutting down: the recorder closed while (or before) the request was recorded, and has recorded its end.
      if (refusal.code === 'SHUTTING_DOWN')
        this.deps.log.warn({ exchangeId }, 'request refused: the gateway is stopping');
      else if (this.deps.recorder.queue.storeRefusing) {
        // The outage was logged when it began, with its error: one short line for each call refused meanwhile.
        this.deps.log.warn(
          { exchangeId, connection: connection.name, cause: messageOf(refusal.cause) },
          'request refused: the store refuses writes, so it could not be recorded',
        );
      } else this.deps.log.error({ err, exchangeId }, 'request refused: it could not be recorded');
      return this.sendError(res, exchangeId, refusal);
    }

    if (clientGone) {
      rec.fail('client_aborted', {
        type: 'client_aborted',
        message: 'the client closed the connection before the request was forwarded',
      });
      return;
    }
    if (dlp !== null) return this.refuse(res, rec, dlp, { type: 'dlp_blocked' });
    if (connection.credentialProblem !== null) {
      return this.refuse(res, rec, new VigilError('NO_CREDENTIAL', connection.credentialProblem));
    }
    if (verdict?.action === 'deny') {
      return this.refuse(res, rec, new VigilError('NOT_ALLOWED', verdict.message), {
        type: 'approval_rule_denied',
        message: deniedRecordMessage(verdict.rule.name, verdict.message),
      });
    }
    res.off('close', onEarlyClose);
    if (verdict?.action === 'hold' && !(await this.awaitApproval(res, connection, principal, request, rec, verdict)))
      return;
    await this.forward(req, res, route, request.raw, rec, decoded !== null);
  }

  /**
   * Hold the call until people decide (README, "Approvals"). The client is sent nothing meanwhile: its status is not
   * known yet. Returns true when the call may go ahead; otherwise the client has been answered (or has left) and the
   * exchange is recorded as refused.
   */
  private async awaitApproval(
    res: ServerResponse,
    connection: Connection,
    principal: Principal,
    request: RequestBody,
    rec: ExchangeRecording,
    verdict: Extract<Evaluation, { action: 'hold' }>,
  ): Promise<boolean> {
    const rule = verdict.rule.name;
    const refuse = (type: string, err: VigilError): false => {
      this.refuse(res, rec, err, { type });
      return false;
    };
    if (!this.deps.approvals) {
      return refuse(
        'approval_unavailable',
        new VigilError('NOT_ALLOWED', `rule "${rule}" needs an approval, and this gateway takes none`),
      );
    }
    const clientGone = new AbortController();
    const onClose = (): void => clientGone.abort();
    res.once('close', onClose);
    let outcome: HoldOutcome;
    try {
      outcome = await this.deps.approvals.hold({
        exchangeId: rec.id,
        sessionId: rec.sessionId,
        connection: connection.name,
        caller: principal,
        rule: verdict.rule,
        matched: verdict.matched,
        request: summarizeRequest(request.json(), connection.redactor.masker, verdict.rule.patterns),
        signal: clientGone.signal,
      });
    } catch (err) {
      this.deps.log.error({ err, exchangeId: rec.id }, 'a call to hold for approval could not be recorded');
      return refuse(
        'approval_unrecorded',
        new VigilError(
          'STORE_UNAVAILABLE',
          'this call needs an approval, which cannot be recorded now; it was not forwarded',
          { cause: err },
        ),
      );
    } finally {
      res.off('close', onClose);
    }
    // The client may have left while the hold was ending (a grant or a timeout being recorded, a decision landing): it
    // received nothing, so nothing goes upstream, and the exchange is recorded as the client's leaving, with what became
    // of the hold, not with a status nobody received. Once forward() starts, its own `close` listener takes over.
    if (clientGone.signal.aborted) {
      rec.fail('client_aborted', { type: 'client_aborted', message: leftWhileHeld(outcome) });
      return false;
    }
    switch (outcome.outcome) {
      case 'approved':
      case 'granted':
        return true;
      case 'denied': {
        const why = outcome.reason ? `: ${outcome.reason}` : '';
        return refuse(
          'approval_denied',
          new VigilError(
            'NOT_ALLOWED',
            `denied by ${describeActor(outcome.by)} (approval ${outcome.approvalId}, rule "${rule}")${why}`,
          ),
        );
      }
      case 'timed_out': {
        const s = outcome.timeoutMs / 1000;
        const wait = s >= 60 && s % 60 === 0 ? `${s / 60} min` : `${s} s`;
        return refuse(
          'approval_timed_out',
          new VigilError(
            'NOT_ALLOWED',
            `no approval within ${wait} (approval ${outcome.approvalId}, rule "${rule}"); the call was not sent to Claude`,
          ),
        );
      }
      case 'cancelled': {
        // The gateway is stopping: a retry (the SDKs retry 503) lands on a gateway that is not.
        // Recorded as the client received it (the approval's own records say it was cancelled by the shutdown).
        this.refuse(res, rec, shuttingDown(), {
          outcome: 'interrupted',
        });
        return false;
      }
    }
  }

  /**
   * Send the call upstream and stream the answer back while recording it. Resolves once the answer has started (or
   * the call failed); the rest streams on. Through undici's `dispatch` and a handler, not `request()`: the response
   * stream `request()` wraps around each answer kept every call's objects alive through young-generation collections
   * (~40 KB a call), and the collections that copied them were what the first byte waited on at p99 (README,
   * "Performance").
   */
  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    route: Route,
    body: Buffer,
    rec: ExchangeRecording,
    /** The body is sent decoded: the caller's `content-encoding` no longer describes it. */
    decoded = false,
  ): Promise<void> {
    const { connection } = route;
    const batch = isBatchPath(route.path);
    return new Promise<void>((started) => {
      let finished = false;
      let controller: Dispatcher.DispatchController | undefined;
      let streaming = false;
      let wrote = false;
      /** A batch response's chunks, buffered (see finishBatch), or null for a response streamed through. */
      let batchChunks: Buffer[] | null = null;
      let status = 0;
      let headers: Record<string, string | string[] | undefined> = {};

      res.once('close', () => {
        if (finished) return;
        finished = true;
        controller?.abort(clientClosed());
        rec.fail('client_aborted', {
          type: 'client_aborted',
          message: 'the client closed the connection before the response ended',
        });
        started();
      });
      /**
       * Our own code threw inside undici's callbacks (a bug): cut the call upstream, answer the client with a 500 if it
       * has no status yet (else cut its response), and end the exchange as a gateway error, so that it is not left in
       * progress until the next start.
       */
      const unexpected = (err: unknown): void => {
        finished = true;
        controller?.abort(err instanceof Error ? err : new Error(String(err)));
        this.deps.log.error({ err, exchangeId: rec.id, connection: connection.name }, 'forwarding failed unexpectedly');
        this.refuse(res, rec, asVigilError(err));
        started();
      };
      const upstreamFailed = (err: Error): void => {
        if (finished) return;
        finished = true;
        if (!streaming && batchChunks === null) {
          // No answer yet: the client gets the gateway's error.
          this.deps.log.warn(
            {
              err,
              exchangeId: rec.id,
              connection: connection.name,
              ...(connection.proxy && { proxy: connection.proxy.shown }),
            },
            'upstream request failed',
          );
          this.refuse(res, rec, upstreamError(err, connection.name));
          started();
          return;
        }
        // The client has the status and part of the body (or, for a batch, nothing yet): all we can do is cut it,
        // as upstream cut us.
        res.destroy(streaming ? err : undefined);
        const message =
          streaming && isTimeout(err)
            ? 'upstream stopped sending before the response ended'
            : 'upstream closed the connection before the response ended';
        rec.fail('upstream_aborted', { type: 'upstream_aborted', message });
        this.deps.log.warn({ err, exchangeId: rec.id }, 'upstream response cut');
        started();
      };

      const handler: Dispatcher.DispatchHandler = {
        onRequestStart: (c) => {
          controller = c;
          if (finished) c.abort(clientClosed());
        },
        onResponseStart: (_c, statusCode, responseHeaders) => {
          if (statusCode < 200 || finished) return; // 1xx: informational, the answer follows
          try {
            status = statusCode;
            headers = responseHeaders as Record<string, string | string[] | undefined>;
            if (batch && String(headers['content-type']).includes('json') && !headers['content-encoding']) {
              batchChunks = [];
              return;
            }
            streaming = true;
            rec.responseStarted(status, headers);
            const out = clientResponseHeaders(headers);
            out[EXCHANGE_ID_HEADER] = rec.id;
            res.writeHead(status, out);
            if (
              typeof headers['content-type'] === 'string' &&
              headers['content-type'].startsWith('text/event-stream')
            ) {
              // A stream's headers reach the client at once, but in the same write as the first events when those
              // came with them (they usually do: one write, and one wake-up of the client, instead of two).
              setImmediate(() => {
                if (!wrote && !finished) res.flushHeaders();
              });
            }
            started();
          } catch (err) {
            unexpected(err);
          }
        },
        onResponseData: (c, chunk) => {
          if (finished) return;
          if (batchChunks !== null) {
            batchChunks.push(chunk);
            return;
          }
          wrote = true;
          if (!res.write(chunk)) {
            c.pause();
            res.once('drain', () => c.resume());
          }
          rec.chunk(chunk);
        },
        onResponseEnd: () => {
          if (finished) return;
          finished = true;
          if (batchChunks !== null) {
            this.finishBatch(req, res, route, status, headers, Buffer.concat(batchChunks), rec).then(
              started,
              unexpected,
            );
            return;
          }
          res.end();
          void rec.finish();
        },
        onResponseError: (_c, err) => upstreamFailed(err),
      };
      try {
        connection.dispatcher.dispatch(
          {
            origin: connection.origin,
            method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
            path: connection.basePath + route.path + (route.query ? `?${route.query}` : ''),
            headers: upstreamRequestHeaders(
              decoded ? { ...req.headers, 'content-encoding': undefined } : req.headers,
              connection.credential,
              batch ? { 'accept-encoding': 'identity' } : undefined,
            ),
            body: body.length ? body : null,
          },
          handler,
        );
      } catch (err) {
        upstreamFailed(err as Error);
      }
    });
  }

  /** Batch responses are small JSON: buffered whole so `results_url` can point back at the gateway. */
  private async finishBatch(
    req: IncomingMessage,
    res: ServerResponse,
    route: Route,
    status: number,
    headers: Record<string, string | string[] | undefined>,
    body: Buffer,
    rec: ExchangeRecording,
  ): Promise<void> {
    const { connection } = route;
    const upstreamBase = new URL(connection.config.upstream).origin + connection.basePath;
    const gatewayBase = gatewayBaseUrl(this.publicUrl, req.headers.host, route.prefix, this.listener.scheme);
    const out = rewriteResultsUrls(body, upstreamBase, gatewayBase);
    rec.responseStarted(status, headers);
    const clientHeaders = clientResponseHeaders(headers);
    clientHeaders['content-length'] = String(out.length);
    clientHeaders[EXCHANGE_ID_HEADER] = rec.id;
    res.writeHead(status, clientHeaders);
    res.end(out);
    rec.chunk(body); // what upstream sent is what is recorded
    await rec.finish();
  }

  private health(res: ServerResponse): void {
    const ok = !this.draining;
    res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
    const queue = this.deps.recorder.queue;
    res.end(
      JSON.stringify({
        status: ok ? 'ok' : 'draining',
        recording_failures: this.deps.recorder.failures,
        // Ready still: calls whose connection records best effort go through, and the held records need this process.
        store: queue.storeRefusing ? 'refusing_writes' : 'ok',
        recording_backlog: queue.backlog,
      }),
    );
  }

  /**
   * Answer `err` to the client and end the exchange's record with it: as the client received it (status, type and
   * message), unless `recorded` names the reason the record keeps instead.
   */
  private refuse(
    res: ServerResponse,
    rec: ExchangeRecording,
    err: VigilError,
    recorded: { readonly outcome?: Outcome; readonly type?: string; readonly message?: string } = {},
  ): void {
    rec.fail(
      recorded.outcome ?? 'gateway_error',
      { type: recorded.type ?? err.type, message: recorded.message ?? err.message },
      err.status,
    );
    this.sendError(res, rec.id, err);
  }

  private sendError(res: ServerResponse, exchangeId: string, err: VigilError, close = false): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'application/json',
      'request-id': `vigil_${exchangeId}`,
      [EXCHANGE_ID_HEADER]: exchangeId,
    };
    if (err.retryAfterMs !== undefined) {
      headers['retry-after'] = String(Math.max(1, Math.ceil(err.retryAfterMs / 1000)));
      // The SDKs retry a 429 within a minute or so whatever the hint says: a limit that frees later would only be
      // asked again, and refused again, to no purpose.
      if (err.retryAfterMs > SDK_RETRY_WAIT_MS) headers['x-should-retry'] = 'false';
    }
    if (close) headers.connection = 'close';
    res.writeHead(err.status, headers);
    res.end(err.toAnthropicBody());
  }
}

/**
 * Why a path could leave `/v1/` once an upstream, or a proxy in front of it, normalises it, or null. Dot segments are
 * refused in every spelling (`..`, `%2e%2e`, `.%2E`, …), and so are backslashes and encoded slashes, which some
 * servers treat as separators: the caller chooses a path under the connection's upstream, never one above it
 * (RFC 3986 §5.2.4; WHATWG URL also decodes `%2e` in dot segments). Anthropic API paths contain none of these.
 */
export function pathProblem(path: string): string | null {
  if (path.includes('\\')) return 'must not contain a backslash';
  if (!path.includes('%') && !path.includes('/.')) return null; // the usual path: nothing to look at
  for (const segment of path.split('/')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      return 'has a malformed percent-encoding';
    }
    if (decoded === '.' || decoded === '..') return "must not contain '.' or '..' segments, in any encoding";
    if (decoded.includes('/') || decoded.includes('\\')) return 'must not contain an encoded slash or backslash';
  }
  return null;
}

/** What the record of a held call keeps when its client left before it was answered: what became of the hold. */
function leftWhileHeld(o: HoldOutcome): string {
  if (o.outcome === 'granted') {
    return `the client closed the connection while grant ${o.grant.grantId} was letting the call through; it was not forwarded`;
  }
  if (o.approvalId === '') return 'the client closed the connection before the call was held; it was not forwarded';
  const held = `the client closed the connection while the call was held for approval (${o.approvalId})`;
  switch (o.outcome) {
    case 'approved':
      return `${held}; it was then approved by ${o.by.map(describeActor).join(', ')}, but not forwarded`;
    case 'denied':
      return `${held}; it was then denied by ${describeActor(o.by)}, and not forwarded`;
    case 'timed_out':
      return `${held}; it then timed out, and was not forwarded`;
    case 'cancelled':
      return `${held}; it was not forwarded`;
  }
}

/** The reason an upstream call is aborted with when its client left. */
const clientClosed = (): Error => new Error('the client closed the connection');

function isTimeout(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT';
}

function upstreamError(err: unknown, connection: string): VigilError {
  if (isTimeout(err)) {
    return new VigilError('UPSTREAM_TIMEOUT', `upstream of connection "${connection}" did not answer in time`, {
      cause: err,
    });
  }
  return new VigilError('UPSTREAM_UNREACHABLE', `upstream of connection "${connection}" is unreachable`, {
    cause: err,
  });
}
