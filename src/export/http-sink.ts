/**
 * The generic webhook sink: POSTs `{ "events": [...] }` as JSON, optionally signed so the receiver can check the
 * batch came from this gateway and is recent.
 *
 * Signature: `x-vigil-timestamp: <unix seconds>` and `x-vigil-signature: sha256=<hex>` where the hex is
 * HMAC-SHA256(secret, `<timestamp>.<body>`). The timestamp is inside the MAC (as Stripe and Slack do) so a captured
 * request cannot be replayed later under a fresh timestamp; receivers should reject timestamps older than a few
 * minutes and de-duplicate events by `id`.
 *
 * A POST holds at most `batch_size` events and `max_body_size` bytes (see internal/bounded-bodies.ts).
 */
import { createHmac } from 'node:crypto';
import type { AuditEvent } from './audit-event.js';
import { bodyBounds, postInBodies, type BodyBounds, type BodyFormat } from './internal/bounded-bodies.js';
import { HttpTarget, postFailure } from './internal/http-target.js';
import { egressProxy } from '../net/egress-proxy.js';
import { readConfigFile, readSecret } from '../config/read-secret.js';
import { readHeaders, sinkConfigPath } from './internal/read-secret.js';
import type { Sink } from './sink.js';
import { rejectsContent, SinkDeliveryError } from './sink-delivery-error.js';
import type { HttpSinkConfig } from './sinks-config.js';

/** The MAC over one request: hex HMAC-SHA256 of `<timestamp>.<body>`. */
export function vigilSignature(secret: string, timestamp: string, body: string): string {
  // Fed in parts: a large body is not copied into yet another string.
  return createHmac('sha256', secret).update(timestamp).update('.').update(body).digest('hex');
}

/** A POST body is `{"events":[` + the events' JSON joined by commas + `]}`: exactly JSON.stringify({ events }). */
const BODY: BodyFormat = { head: '{"events":[', separator: ',', tail: ']}', item: (event) => event };

export class HttpSink implements Sink {
  readonly name: string;
  get includeContent(): boolean {
    return this.#config.include_content;
  }
  readonly #config: HttpSinkConfig;
  readonly #target: HttpTarget;
  readonly #path: string;
  readonly #secret: string | undefined;
  readonly #headers: Record<string, string>;
  readonly #bounds: BodyBounds;

  /** Reads the secret and CA now: a missing one is a start-up error naming the config key. */
  constructor(config: HttpSinkConfig, opts: { where?: string } = {}) {
    const where = sinkConfigPath(config.name, opts.where);
    this.name = config.name;
    this.#config = config;
    this.#bounds = bodyBounds(config, config.batch_size);
    const url = new URL(config.url);
    this.#path = url.pathname + url.search;
    this.#secret = config.secret ? readSecret(config.secret, `${where}.secret`) : undefined;
    this.#headers = readHeaders(config.headers, where);
    this.#target = new HttpTarget(url.origin, {
      timeoutMs: config.timeout,
      ca: config.ca ? readConfigFile(config.ca, `${where}.ca`) : undefined,
      proxy: egressProxy(config.url, config.proxy, `${where}.proxy`),
    });
  }

  /**
   * POSTs the events in order, each POST holding at most `batch_size` events and `max_body_size` bytes; resolves once
   * every POST got a 2xx. An event that cannot be serialised even without its content is a rejected delivery, like a
   * 413 (see postInBodies). Once `signal` aborts, the POST in flight is cut, no other is sent, and this rejects.
   */
  async deliver(events: readonly AuditEvent[], signal?: AbortSignal): Promise<void> {
    await postInBodies(events, BODY, this.#bounds, (body) => this.#post(body, signal), signal);
  }

  async #post(body: string, signal: AbortSignal | undefined): Promise<void> {
    const headers: Record<string, string> = { ...this.#headers, 'content-type': 'application/json' };
    if (this.#secret !== undefined) {
      const timestamp = String(Math.floor(Date.now() / 1000));
      headers['x-vigil-timestamp'] = timestamp;
      headers['x-vigil-signature'] = `sha256=${vigilSignature(this.#secret, timestamp, body)}`;
    }
    let res;
    try {
      res = await this.#target.post(this.#path, body, headers, signal);
    } catch (err) {
      throw postFailure(this.name, `POST ${this.#config.url}`, err, signal);
    }
    if (res.status < 200 || res.status > 299) {
      throw new SinkDeliveryError(
        this.name,
        `POST ${this.#config.url} answered ${res.status}: ${res.text.slice(0, 300)}`,
        { rejected: rejectsContent(res.status) },
      );
    }
  }

  async close(): Promise<void> {
    await this.#target.close();
  }
}
