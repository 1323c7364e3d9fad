/**
 * One HTTP receiver of audit events (a webhook, Splunk HEC, an OpenTelemetry collector): a keep-alive undici Pool to
 * its origin and a POST with one deadline per attempt. Retrying is the outbox's job, not this one's.
 */
import type { Dispatcher } from 'undici';
import { egressDispatcher, type EgressProxy } from '../../net/egress-proxy.js';
import { SinkDeliveryError } from '../sink-delivery-error.js';
import { describeError } from './describe-error.js';

/** How much of a response body is kept: enough for an error message or a HEC status, never a runaway body. */
const MAX_RESPONSE_BYTES = 64 * 1024;

export interface HttpTargetResponse {
  readonly status: number;
  readonly contentType: string;
  /** The first 64 KiB of the body, as text. */
  readonly text: string;
}

/**
 * What a sink throws when its {@link HttpTarget.post} to `where` (`POST <url>`) threw `err`: `stop`'s reason as it is
 * (the sink's deliver was called off, see Sink.deliver), else a delivery error naming the sink.
 */
export function postFailure(sink: string, where: string, err: unknown, stop: AbortSignal | undefined): Error {
  if (stop?.aborted && err === stop.reason) return err as Error;
  return new SinkDeliveryError(sink, `${where} failed: ${describeError(err)}`, { cause: err });
}

export class HttpTarget {
  readonly #pool: Dispatcher;
  readonly #origin: string;
  readonly #timeoutMs: number;

  /**
   * `ca`: PEM bundle replacing Node's bundled CAs for this origin. `proxy`: the HTTP proxy the receiver is reached
   * through, as a CONNECT tunnel (see net/egress-proxy.ts).
   */
  constructor(
    origin: string,
    options: { timeoutMs: number; ca?: string | undefined; proxy?: EgressProxy | null | undefined },
  ) {
    this.#origin = origin;
    this.#timeoutMs = options.timeoutMs;
    this.#pool = egressDispatcher(origin, options.proxy, {
      // Deliveries to one receiver are sequential; a second connection only helps a close racing a new batch.
      connections: 2,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connectTimeoutMs: options.timeoutMs,
      ca: options.ca,
    });
  }

  /**
   * POSTs `body` to `path` (with its query, if any) and returns the response. Throws on connection failure and when
   * the whole attempt, response body included, takes longer than the timeout. Once `stop` aborts, the request is cut
   * and this throws `stop`'s reason.
   */
  async post(
    path: string,
    body: string,
    headers: Record<string, string>,
    stop?: AbortSignal,
  ): Promise<HttpTargetResponse> {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const signal = stop ? AbortSignal.any([timeout, stop]) : timeout;
    try {
      const res = await this.#pool.request({ origin: this.#origin, path, method: 'POST', headers, body, signal });
      const text = await readBounded(res.body, MAX_RESPONSE_BYTES);
      const type = res.headers['content-type'];
      return { status: res.statusCode, contentType: (Array.isArray(type) ? type[0] : type) ?? '', text };
    } catch (err) {
      // Cut because this gateway no longer delivers (see Sink.deliver): say so, not what undici made of it.
      stop?.throwIfAborted();
      throw err;
    }
  }

  /** Closes idle connections and waits for in-flight requests. */
  async close(): Promise<void> {
    await this.#pool.close();
  }
}

/** Reads at most `limit` bytes and discards the rest, so the connection can be reused without buffering it. */
async function readBounded(body: Dispatcher.ResponseData['body'], limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    if (size < limit) {
      chunks.push(chunk.subarray(0, limit - size));
      size += Math.min(chunk.length, limit - size);
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}
