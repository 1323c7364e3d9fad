/**
 * The generic webhook sink: POSTs `{ "events": [...] }` as JSON, optionally signed so the receiver can check the
 * batch came from this gateway and is recent.
 *
 * Signature: `x-vigil-timestamp: <unix seconds>` and `x-vigil-signature: sha256=<hex>` where the hex is
 * HMAC-SHA256(secret, `<timestamp>.<body>`). The timestamp is inside the MAC (as Stripe and Slack do) so a captured
 * request cannot be replayed later under a fresh timestamp; receivers should reject timestamps older than a few
 * minutes and de-duplicate events by `id`.
 *
 * A POST holds at most `batch_size` events and `max_body_size` bytes. Events are serialised one at a time, as their
 * POST is built, so a batch with large recorded content never becomes one string past V8's limit (~512 MiB), which
 * would throw the same way on every retry; an event too large alone goes without its content, as syslog does.
 */
import { createHmac } from 'node:crypto';
import type { AuditEvent } from './audit-event.js';
import { describeError } from './internal/describe-error.js';
import { HttpTarget } from './internal/http-target.js';
import { outgoingEvent, withoutContent } from './internal/outgoing-event.js';
import { serialiseBatch } from './internal/serialise-batch.js';
import { readConfigFile, readSecret } from '../config/read-secret.js';
import { readHeaders } from './internal/read-secret.js';
import type { Sink } from './sink.js';
import { rejectsContent, SinkDeliveryError } from './sink-delivery-error.js';
import type { HttpSinkConfig } from './sinks-config.js';

/** The MAC over one request: hex HMAC-SHA256 of `<timestamp>.<body>`. */
export function vigilSignature(secret: string, timestamp: string, body: string): string {
  // Fed in parts: a large body is not copied into yet another string.
  return createHmac('sha256', secret).update(timestamp).update('.').update(body).digest('hex');
}

/** A POST body is `{"events":[` + the events' JSON joined by commas + `]}`: exactly JSON.stringify({ events }). */
const BODY_HEAD = '{"events":[';
const BODY_TAIL = ']}';
const ENVELOPE_BYTES = BODY_HEAD.length + BODY_TAIL.length;

/** One event as it goes out: its JSON and that JSON's size in bytes. */
interface Serialised {
  readonly json: string;
  readonly bytes: number;
}

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

  /** Reads the secret and CA now: a missing one is a start-up error naming the config key. */
  constructor(config: HttpSinkConfig) {
    const where = `siem.sinks (${config.name})`;
    this.name = config.name;
    this.#config = config;
    const url = new URL(config.url);
    this.#path = url.pathname + url.search;
    this.#secret = config.secret ? readSecret(config.secret, `${where}.secret`) : undefined;
    this.#headers = readHeaders(config.headers, where);
    this.#target = new HttpTarget(url.origin, {
      timeoutMs: config.timeout,
      ca: config.ca ? readConfigFile(config.ca, `${where}.ca`) : undefined,
    });
  }

  /**
   * POSTs the events in order, each POST holding at most `batch_size` events and `max_body_size` bytes; resolves once
   * every POST got a 2xx. A body that cannot be built is a rejected delivery, like a 413: the same events would fail
   * the same way on every retry, so the outbox sends them one at a time and drops the content of the one that fails.
   */
  async deliver(events: readonly AuditEvent[]): Promise<void> {
    const { batch_size: maxEvents, max_body_size: maxBytes } = this.#config;
    let chunk: Serialised[] = [];
    let bytes = ENVELOPE_BYTES; // of the body `chunk` makes
    for (const event of events) {
      const s = this.#serialise(event);
      if (chunk.length > 0 && (chunk.length >= maxEvents || bytes + 1 + s.bytes > maxBytes)) {
        await this.#post(chunk);
        chunk = [];
        bytes = ENVELOPE_BYTES;
      }
      bytes += (chunk.length > 0 ? 1 : 0) + s.bytes; // the comma before it
      chunk.push(s);
    }
    if (chunk.length > 0) await this.#post(chunk);
  }

  /**
   * The event's JSON; without its content (`content: { omitted }`) when, with it, the event alone would not fit in a
   * POST or could not be serialised at all (longer than a JavaScript string can be).
   */
  #serialise(event: AuditEvent): Serialised {
    const outgoing = outgoingEvent(event, this.#config.include_content);
    let why: string;
    try {
      const json = JSON.stringify(outgoing);
      const bytes = Buffer.byteLength(json);
      const max = this.#config.max_body_size;
      if (ENVELOPE_BYTES + bytes <= max || outgoing.content === undefined || outgoing.content.omitted !== undefined) {
        return { json, bytes };
      }
      why = `the event with its content is ${bytes} bytes, over max_body_size (${max})`;
    } catch (err) {
      why = `the event with its content could not be serialised: ${describeError(err)}`;
    }
    try {
      const json = JSON.stringify(withoutContent(outgoing, why));
      return { json, bytes: Buffer.byteLength(json) };
    } catch (err) {
      throw new SinkDeliveryError(this.name, `event ${event.id} could not be serialised: ${describeError(err)}`, {
        cause: err,
        rejected: true,
      });
    }
  }

  async #post(chunk: readonly Serialised[]): Promise<void> {
    const headers: Record<string, string> = { ...this.#headers, 'content-type': 'application/json' };
    // Not expected to fail within max_body_size; if it does, it is a rejected delivery (see serialiseBatch).
    const body = serialiseBatch(this.name, () => BODY_HEAD + chunk.map((s) => s.json).join(',') + BODY_TAIL);
    if (this.#secret !== undefined) {
      const timestamp = String(Math.floor(Date.now() / 1000));
      headers['x-vigil-timestamp'] = timestamp;
      headers['x-vigil-signature'] = `sha256=${vigilSignature(this.#secret, timestamp, body)}`;
    }
    let res;
    try {
      res = await this.#target.post(this.#path, body, headers);
    } catch (err) {
      throw new SinkDeliveryError(this.name, `POST ${this.#config.url} failed: ${describeError(err)}`, { cause: err });
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
