/**
 * OpenTelemetry sink: audit events as OTLP/HTTP JSON logs, `POST <endpoint>/v1/logs`, a batch cut into requests of at
 * most `max_body_size` bytes (see internal/bounded-bodies.ts), each one ExportLogsServiceRequest.
 * https://opentelemetry.io/docs/specs/otlp/#otlphttp
 *
 * A 2xx is delivered. A `partialSuccess` with rejected records is delivered too: the spec says those must not be
 * retried (the collector will refuse them again), so the rejection is published on the diagnostics channel
 * `vigil:export:otlp-rejected` for whoever reports it, instead of blocking the outbox behind an unsendable batch.
 */
import { channel } from 'node:diagnostics_channel';
import { hostname as osHostname } from 'node:os';
import type { AuditEvent } from './audit-event.js';
import { bodyBounds, postInBodies, type BodyBounds, type BodyFormat } from './internal/bounded-bodies.js';
import { HttpTarget, postFailure } from './internal/http-target.js';
import { egressProxy } from '../net/egress-proxy.js';
import { readConfigFile } from '../config/read-secret.js';
import { readHeaders, sinkConfigPath } from './internal/read-secret.js';
import { otlpLogRecord } from './otlp-log-record.js';
import type { Sink } from './sink.js';
import { rejectsContent, SinkDeliveryError } from './sink-delivery-error.js';
import type { OtlpSinkConfig } from './sinks-config.js';

/** Published when a collector accepted a batch but rejected some records: `{ sink, rejected, message }`. */
export const otlpRejectedChannel = channel('vigil:export:otlp-rejected');

/** The instrumentation scope every record is under. */
export const OTLP_SCOPE_NAME = 'vigil.audit';

/** Closes what the head of a body opens: logRecords, the scopeLogs entry and list, the resourceLogs entry and list. */
const BODY_TAIL = ']}]}]}';

export class OtlpSink implements Sink {
  readonly name: string;
  get includeContent(): boolean {
    return this.#config.include_content;
  }
  readonly #config: OtlpSinkConfig;
  readonly #target: HttpTarget;
  readonly #path: string;
  readonly #headers: Record<string, string>;
  readonly #bounds: BodyBounds;
  /** What goes before a request's log records: the resource (this gateway) and the instrumentation scope. */
  readonly #head: string;

  constructor(config: OtlpSinkConfig, opts: { hostname?: string; where?: string } = {}) {
    const where = sinkConfigPath(config.name, opts.where);
    this.name = config.name;
    this.#config = config;
    this.#bounds = bodyBounds(config);
    const resource = {
      attributes: [
        { key: 'service.name', value: { stringValue: 'vigil' } },
        { key: 'host.name', value: { stringValue: opts.hostname ?? osHostname() } },
      ],
    };
    const scope = { name: OTLP_SCOPE_NAME };
    this.#head =
      `{"resourceLogs":[{"resource":${JSON.stringify(resource)},` +
      `"scopeLogs":[{"scope":${JSON.stringify(scope)},"logRecords":[`;
    const url = new URL(config.endpoint);
    this.#path = `${url.pathname.replace(/\/+$/, '')}/v1/logs`;
    this.#headers = { ...readHeaders(config.headers, where), 'content-type': 'application/json' };
    this.#target = new HttpTarget(url.origin, {
      timeoutMs: config.timeout,
      ca: config.ca ? readConfigFile(config.ca, `${where}.ca`) : undefined,
      proxy: egressProxy(config.endpoint, config.proxy, `${where}.proxy`),
    });
  }

  /**
   * POSTs the events in order, in requests of at most `max_body_size` bytes; resolves once every one got a 2xx. A body
   * is exactly JSON.stringify of `{ resourceLogs: [{ resource, scopeLogs: [{ scope, logRecords }] }] }`. Once `signal`
   * aborts, the request in flight is cut, no other is sent, and this rejects.
   */
  async deliver(events: readonly AuditEvent[], signal?: AbortSignal): Promise<void> {
    const observedAt = new Date();
    const body: BodyFormat = {
      head: this.#head,
      separator: ',',
      tail: BODY_TAIL,
      item: (event) => otlpLogRecord(event, observedAt),
    };
    await postInBodies(events, body, this.#bounds, (b) => this.#post(b, signal), signal);
  }

  async #post(body: string, signal: AbortSignal | undefined): Promise<void> {
    const where = `POST ${new URL(this.#path, this.#config.endpoint).href}`;
    let res;
    try {
      res = await this.#target.post(this.#path, body, this.#headers, signal);
    } catch (err) {
      throw postFailure(this.name, where, err, signal);
    }
    if (res.status < 200 || res.status > 299) {
      throw new SinkDeliveryError(this.name, `${where} answered ${res.status}: ${res.text.slice(0, 300)}`, {
        rejected: rejectsContent(res.status),
      });
    }
    this.#reportPartialSuccess(res.text);
  }

  #reportPartialSuccess(text: string): void {
    if (!otlpRejectedChannel.hasSubscribers || !text) return;
    let answer: { partialSuccess?: { rejectedLogRecords?: unknown; errorMessage?: unknown } };
    try {
      answer = JSON.parse(text) as typeof answer;
    } catch {
      return;
    }
    const rejected = Number(answer.partialSuccess?.rejectedLogRecords ?? 0);
    const message = answer.partialSuccess?.errorMessage;
    if (rejected > 0 || (typeof message === 'string' && message)) {
      otlpRejectedChannel.publish({ sink: this.name, rejected, message: typeof message === 'string' ? message : '' });
    }
  }

  async close(): Promise<void> {
    await this.#target.close();
  }
}
