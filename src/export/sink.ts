/**
 * A sink streams audit events to one SIEM endpoint. The durable outbox in the store hands each sink batches in order,
 * with a cursor per sink name: `deliver` either delivers the whole batch or throws, and the outbox then retries the
 * same batch later. Delivery is therefore at-least-once; receivers de-duplicate by `event.id`.
 */
import type { AuditEvent } from './audit-event.js';
import { HttpSink } from './http-sink.js';
import { OtlpSink } from './otlp-sink.js';
import type { SinkConfig } from './sinks-config.js';
import { SplunkHecSink } from './splunk-hec-sink.js';
import { SyslogSink } from './syslog-sink.js';

export interface Sink {
  /** The configured name (`siem.sinks[].name`), which keys this sink's cursor in the outbox. */
  readonly name: string;
  /** Whether events carry masked request/response content (`include_content: true`); default false. */
  readonly includeContent?: boolean;
  /**
   * How many batches the outbox may hand over before the first one's `deliver` settles; default 1, one at a time.
   * A sink that takes more (syslog over UDP, which confirms a batch only once a refusal had time to come back) must
   * send overlapping batches in the order it got them; the outbox moves its cursor as they are confirmed, in order,
   * and after a failure sends again from the failed batch, whatever became of the ones handed over after it.
   */
  readonly inFlightBatches?: number;
  /**
   * Sends the events, in order. Resolves only when all were delivered (a 2xx or HEC success; for syslog, written to
   * the connection or socket without error); otherwise rejects with a SinkDeliveryError and the batch is retried whole.
   *
   * `signal` aborts once this gateway no longer delivers for the sink (another one took over and sends from the
   * cursor): a sink that holds batches before writing them (syslog over UDP) writes nothing more of them, and their
   * deliveries reject. What was written stays written.
   */
  deliver(events: readonly AuditEvent[], signal?: AbortSignal): Promise<void>;
  /** Lets an in-progress delivery finish, then releases connections. */
  close(): Promise<void>;
}

export interface CreateSinkOptions {
  /** This gateway's host name as SIEMs should see it (syslog HOSTNAME, HEC host, OTLP host.name); default os.hostname(). */
  readonly hostname?: string;
  /** How problems name this sink's config, `siem.sinks[2] (splunk)`; default `siem.sinks[] (splunk)`. */
  readonly where?: string;
}

/**
 * Builds the sink a validated config entry describes. Secrets, keys and CA files are read here, so a missing one
 * throws a ConfigError naming the key at start-up; no connection is opened until the first delivery.
 */
export function createSink(config: SinkConfig, opts: CreateSinkOptions = {}): Sink {
  switch (config.type) {
    case 'syslog':
      return new SyslogSink(config, opts);
    case 'http':
      return new HttpSink(config, opts);
    case 'splunk_hec':
      return new SplunkHecSink(config, opts);
    case 'otlp':
      return new OtlpSink(config, opts);
  }
}
