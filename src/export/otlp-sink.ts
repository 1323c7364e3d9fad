/**
 * OpenTelemetry sink: audit events as OTLP/HTTP JSON logs, `POST <endpoint>/v1/logs`, one request per batch.
 * https://opentelemetry.io/docs/specs/otlp/#otlphttp
 *
 * A 2xx is delivered. A `partialSuccess` with rejected records is delivered too: the spec says those must not be
 * retried (the collector will refuse them again), so the rejection is published on the diagnostics channel
 * `vigil:export:otlp-rejected` for whoever reports it, instead of blocking the outbox behind an unsendable batch.
 */
import { channel } from 'node:diagnostics_channel';
import { hostname as osHostname } from 'node:os';
import type { AuditEvent } from './audit-event.js';
import { describeError } from './internal/describe-error.js';
import { HttpTarget } from './internal/http-target.js';
import { outgoingEvent } from './internal/outgoing-event.js';
import { serialiseBatch } from './internal/serialise-batch.js';
import { readConfigFile } from '../config/read-secret.js';
import { readHeaders } from './internal/read-secret.js';
import { otlpLogRecord } from './otlp-log-record.js';
import type { Sink } from './sink.js';
import { rejectsContent, SinkDeliveryError } from './sink-delivery-error.js';
import type { OtlpSinkConfig } from './sinks-config.js';

/** Published when a collector accepted a batch but rejected some records: `{ sink, rejected, message }`. */
export const otlpRejectedChannel = channel('vigil:export:otlp-rejected');

/** The instrumentation scope every record is under. */
export const OTLP_SCOPE_NAME = 'vigil.audit';

export class OtlpSink implements Sink {
  readonly name: string;
  get includeContent(): boolean {
    return this.#config.include_content;
  }
  readonly #config: OtlpSinkConfig;
  readonly #target: HttpTarget;
  readonly #path: string;
  readonly #headers: Record<string, string>;
  readonly #host: string;

  constructor(config: OtlpSinkConfig, opts: { hostname?: string } = {}) {
    const where = `siem.sinks (${config.name})`;
    this.name = config.name;
    this.#config = config;
    this.#host = opts.hostname ?? osHostname();
    const url = new URL(config.endpoint);
    this.#path = `${url.pathname.replace(/\/+$/, '')}/v1/logs`;
    this.#headers = { ...readHeaders(config.headers, where), 'content-type': 'application/json' };
    this.#target = new HttpTarget(url.origin, {
      timeoutMs: config.timeout,
      ca: config.ca ? readConfigFile(config.ca, `${where}.ca`) : undefined,
    });
  }

  async deliver(events: readonly AuditEvent[]): Promise<void> {
    if (events.length === 0) return;
    const observedAt = new Date();
    const body = serialiseBatch(this.name, () =>
      JSON.stringify({
        resourceLogs: [
          {
            resource: {
              attributes: [
                { key: 'service.name', value: { stringValue: 'vigil' } },
                { key: 'host.name', value: { stringValue: this.#host } },
              ],
            },
            scopeLogs: [
              {
                scope: { name: OTLP_SCOPE_NAME },
                logRecords: events.map((e) =>
                  otlpLogRecord(outgoingEvent(e, this.#config.include_content), observedAt),
                ),
              },
            ],
          },
        ],
      }),
    );
    const where = `POST ${new URL(this.#path, this.#config.endpoint).href}`;
    let res;
    try {
      res = await this.#target.post(this.#path, body, this.#headers);
    } catch (err) {
      throw new SinkDeliveryError(this.name, `${where} failed: ${describeError(err)}`, { cause: err });
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
