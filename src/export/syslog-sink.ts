/**
 * The syslog sink: RFC 5424 messages over UDP (one datagram each), TCP or TLS (octet-counted frames on a persistent
 * connection that is reopened after a failure). A batch is written as one buffer, so it reaches the receiver in order.
 * Over UDP the outbox may hand over the next batches before the first is confirmed (see syslog-udp-transport.ts).
 */
import { hostname as osHostname } from 'node:os';
import type { ConnectionOptions } from 'node:tls';
import type { AuditEvent } from './audit-event.js';
import { describeError } from './internal/describe-error.js';
import { outgoingEvent } from './internal/outgoing-event.js';
import { readConfigFile, readSecret } from '../config/read-secret.js';
import { sinkConfigPath } from './internal/read-secret.js';
import type { Sink } from './sink.js';
import { SinkDeliveryError } from './sink-delivery-error.js';
import type { SyslogSinkConfig } from './sinks-config.js';
import { formatSyslogMessage, octetCountedFrame, type SyslogMessageOptions } from './syslog-message.js';
import { SyslogStreamTransport } from './syslog-stream-transport.js';
import { SyslogUdpTransport, UDP_IN_FLIGHT_BATCHES } from './syslog-udp-transport.js';

export class SyslogSink implements Sink {
  readonly name: string;
  get includeContent(): boolean {
    return this.#config.include_content;
  }
  get inFlightBatches(): number {
    return this.#udp ? UDP_IN_FLIGHT_BATCHES : 1;
  }
  readonly #config: SyslogSinkConfig;
  readonly #format: SyslogMessageOptions;
  readonly #udp: SyslogUdpTransport | undefined;
  readonly #stream: SyslogStreamTransport | undefined;
  /** TCP/TLS deliveries run one after another so batches cannot interleave on the connection. */
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  /** Reads the TLS files now: a missing one is a start-up error naming the config key. */
  constructor(config: SyslogSinkConfig, opts: { hostname?: string; where?: string } = {}) {
    const where = sinkConfigPath(config.name, opts.where);
    this.name = config.name;
    this.#config = config;
    this.#format = {
      facility: config.facility,
      appName: config.app_name,
      hostname: opts.hostname ?? osHostname(),
      procId: String(process.pid),
      maxBytes: config.max_message_size,
    };
    if (config.transport === 'udp') {
      this.#udp = new SyslogUdpTransport(config.host, config.port);
    } else {
      let tls: ConnectionOptions | undefined;
      if (config.transport === 'tls') {
        tls = {
          rejectUnauthorized: config.reject_unauthorized,
          ...(config.ca ? { ca: readConfigFile(config.ca, `${where}.ca`) } : {}),
          ...(config.cert ? { cert: readConfigFile(config.cert, `${where}.cert`) } : {}),
          ...(config.key ? { key: readSecret(config.key, `${where}.key`) } : {}),
        };
      }
      this.#stream = new SyslogStreamTransport({
        host: config.host,
        port: config.port,
        timeoutMs: config.timeout,
        tls,
      });
    }
  }

  /**
   * Resolves once every message of the batch was handed to the kernel without error (over UDP: and no refusal came
   * back within the wait); otherwise throws. Over UDP the transport orders the datagrams of overlapping calls itself.
   */
  deliver(events: readonly AuditEvent[], signal?: AbortSignal): Promise<void> {
    const udp = this.#udp;
    if (udp) return this.#deliver(events, (messages) => udp.send(messages, signal));
    const stream = this.#stream!;
    const run = this.#queue.then(() =>
      this.#deliver(events, (messages) => {
        // Waited behind the batches before it: not written if this gateway no longer delivers for the sink.
        signal?.throwIfAborted();
        return stream.send(Buffer.concat(messages.map(octetCountedFrame)));
      }),
    );
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Formats the batch and hands its messages to `send` (the transport's); a failure is a SinkDeliveryError. */
  async #deliver(events: readonly AuditEvent[], send: (messages: Buffer[]) => Promise<void>): Promise<void> {
    if (this.#closed) throw new SinkDeliveryError(this.name, 'sink is closed');
    if (events.length === 0) return;
    const messages = events.map((e) =>
      formatSyslogMessage(outgoingEvent(e, this.#config.include_content), this.#format),
    );
    const target = `${this.#config.transport}://${this.#config.host}:${this.#config.port}`;
    try {
      await send(messages);
    } catch (err) {
      // Nothing listens on the port: over UDP, the receiver host's ICMP port unreachable (see syslog-udp-transport.ts);
      // over TCP (and TLS), a refused connect.
      const portUnreachable = (err as NodeJS.ErrnoException).code === 'ECONNREFUSED';
      throw new SinkDeliveryError(this.name, `syslog to ${target} failed: ${describeError(err)}`, {
        cause: err,
        portUnreachable,
      });
    }
  }

  /** Waits for the deliveries in progress (over UDP, for their confirmation), then closes the connection. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#queue;
    await (this.#udp ?? this.#stream)!.close();
  }
}
