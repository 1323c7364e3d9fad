/**
 * Splunk HTTP Event Collector: POSTs to `/services/collector/event`, the body being the events as concatenated JSON
 * objects (HEC's batch format), each `{ time, host, source, sourcetype, index?, event }`; a batch is cut into POSTs of
 * at most `max_body_size` bytes (see internal/bounded-bodies.ts).
 * https://docs.splunk.com/Documentation/Splunk/latest/Data/FormateventsforHTTPEventCollector
 *
 * HEC answers `{"text":"Success","code":0}`; any other code (bad token, disabled token, unknown index, …) is a
 * failed delivery even when the status is 200, because HEC then has not accepted the batch.
 */
import { randomUUID } from 'node:crypto';
import { hostname as osHostname } from 'node:os';
import type { AuditEvent } from './audit-event.js';
import { bodyBounds, postInBodies, type BodyBounds, type BodyFormat } from './internal/bounded-bodies.js';
import { HttpTarget, postFailure } from './internal/http-target.js';
import { egressProxy } from '../net/egress-proxy.js';
import { readConfigFile, readSecret } from '../config/read-secret.js';
import { sinkConfigPath } from './internal/read-secret.js';
import type { Sink } from './sink.js';
import { rejectsContent, SinkDeliveryError } from './sink-delivery-error.js';
import type { SplunkHecSinkConfig } from './sinks-config.js';

export class SplunkHecSink implements Sink {
  readonly name: string;
  get includeContent(): boolean {
    return this.#config.include_content;
  }
  readonly #config: SplunkHecSinkConfig;
  readonly #target: HttpTarget;
  readonly #path: string;
  /** The full event URL, for error messages. */
  readonly #eventUrl: string;
  readonly #headers: Record<string, string>;
  readonly #host: string;
  readonly #bounds: BodyBounds;
  /** HEC objects one after another; a newline between them keeps the body readable. */
  readonly #body: BodyFormat = { head: '', separator: '\n', tail: '', item: (event) => this.#hecEvent(event) };

  constructor(config: SplunkHecSinkConfig, opts: { hostname?: string; where?: string } = {}) {
    const where = sinkConfigPath(config.name, opts.where);
    this.name = config.name;
    this.#config = config;
    this.#bounds = bodyBounds(config);
    this.#host = opts.hostname ?? osHostname();
    const url = new URL(config.url);
    this.#path = `${url.pathname.replace(/\/+$/, '')}/services/collector/event`;
    this.#eventUrl = new URL(this.#path, url.origin).href;
    this.#headers = {
      authorization: `Splunk ${readSecret(config.token, `${where}.token`)}`,
      'content-type': 'application/json',
      // Required when the token has indexer acknowledgement on (HEC answers code 10 without it), ignored otherwise.
      'x-splunk-request-channel': randomUUID(),
    };
    this.#target = new HttpTarget(url.origin, {
      timeoutMs: config.timeout,
      ca: config.ca ? readConfigFile(config.ca, `${where}.ca`) : undefined,
      proxy: egressProxy(config.url, config.proxy, `${where}.proxy`),
    });
  }

  /**
   * POSTs the events in order, in bodies of at most `max_body_size` bytes; resolves once HEC accepted every one. Once
   * `signal` aborts, the POST in flight is cut, no other is sent, and this rejects.
   */
  async deliver(events: readonly AuditEvent[], signal?: AbortSignal): Promise<void> {
    await postInBodies(events, this.#body, this.#bounds, (body) => this.#post(body, signal), signal);
  }

  async #post(body: string, signal: AbortSignal | undefined): Promise<void> {
    const where = `POST ${this.#eventUrl}`;
    let res;
    try {
      res = await this.#target.post(this.#path, body, this.#headers, signal);
    } catch (err) {
      throw postFailure(this.name, where, err, signal);
    }
    let answer: { text?: unknown; code?: unknown } | undefined;
    try {
      answer = JSON.parse(res.text) as typeof answer;
    } catch {
      answer = undefined;
    }
    if (res.status === 200 && answer?.code === 0) return;
    const detail = answer
      ? `HEC code ${String(answer.code)}: ${String(answer.text)}`
      : `not a HEC answer: ${res.text.slice(0, 200)}`;
    throw new SinkDeliveryError(this.name, `${where} answered ${res.status} (${detail})`, {
      rejected: rejectsContent(res.status),
    });
  }

  /** The HEC object around an event as it goes out (without content unless the sink takes it: see postInBodies). */
  #hecEvent(event: AuditEvent): Record<string, unknown> {
    const ms = Date.parse(event.time);
    return {
      // Epoch seconds with milliseconds as the fraction, as HEC expects; the receive time if `time` is unparseable.
      ...(Number.isFinite(ms) ? { time: ms / 1000 } : {}),
      host: this.#host,
      source: this.#config.source,
      sourcetype: this.#config.sourcetype,
      ...(this.#config.index !== undefined ? { index: this.#config.index } : {}),
      event,
    };
  }

  async close(): Promise<void> {
    await this.#target.close();
  }
}
