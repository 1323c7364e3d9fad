/**
 * The `siem` config section: where audit events are streamed, as a list of sinks under `siem.sinks`.
 */
import { z } from 'zod';
import {
  certificateFile,
  proxySetting,
  HTTP_HEADER_NAME,
  httpUrlWithout,
  orSecretRef,
  positiveDuration,
  secretRef,
} from '../config/common-schemas.js';

const timeout = positiveDuration;
export type SinkSecretRef = z.output<typeof secretRef>;

/** The sink's name keys its delivery cursor in the outbox, so it must stay stable across restarts. */
const sinkName = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9._-]{0,62}$/,
    'must be 1-63 characters of a-z, 0-9, ".", "_" or "-", starting with a letter or digit',
  );

/** Credentials go in `token`, `secret` or `headers` (by reference), never in a URL the gateway may log or report. */
const httpUrl = httpUrlWithout(
  "must not carry credentials (user:password@): put them in headers (e.g. authorization: { env: SIEM_AUTH }) or the sink's token/secret",
);

/** Extra request headers; values that carry credentials go by reference like any other secret. */
const extraHeaders = z.record(
  z.string().regex(HTTP_HEADER_NAME, 'must be a valid HTTP header name'),
  orSecretRef(z.string(), 'a string'),
);

/** Masked request/response content leaves the gateway only where a sink asks for it. */
const includeContent = z.boolean().default(false);

/**
 * Largest request body of an http, splunk_hec or otlp sink, in bytes: a batch is cut into requests that stay under it,
 * and an event too large alone is sent without its content. At most 256 MiB, so a body stays well within what a
 * JavaScript string can hold.
 */
const maxBodySize = (defaultBytes: number) =>
  z
    .number()
    .int()
    .min(16 * 1024)
    .max(256 * 1024 * 1024)
    .default(defaultBytes);

/** RFC 5424 §6.2.1 facility codes a security team would route audit events by. */
export const SYSLOG_FACILITIES = {
  auth: 4,
  authpriv: 10,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
} as const;
export type SyslogFacility = keyof typeof SYSLOG_FACILITIES;

/** The largest UDP payload over IPv4 (65535 - 8 UDP header - 20 IP header). */
const MAX_UDP_PAYLOAD = 65_507;

const syslogSinkSchema = z
  .object({
    type: z.literal('syslog'),
    name: sinkName,
    transport: z.enum(['udp', 'tcp', 'tls']),
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535),
    /** CA bundle to verify the server's certificate (TLS); default: Node's bundled CAs. */
    ca: certificateFile.optional(),
    /** Client certificate and key for mutual TLS. */
    cert: certificateFile.optional(),
    key: secretRef.optional(),
    /** Verify the server's certificate and name (TLS). Turning this off lets anyone on the path read the events. */
    reject_unauthorized: z.boolean().default(true),
    /** RFC 5424 APP-NAME: printable US-ASCII, at most 48 characters. */
    app_name: z
      .string()
      .regex(/^[!-~]{1,48}$/, 'must be 1-48 printable US-ASCII characters without spaces')
      .default('vigil'),
    facility: z.enum(Object.keys(SYSLOG_FACILITIES) as [SyslogFacility, ...SyslogFacility[]]).default('authpriv'),
    /**
     * Largest message sent, header included. A larger event is shortened so its JSON stays whole: first without
     * `content`, then without `attributes` and `actor` (marked `"truncated": true`). The default matches rsyslog's
     * default maxMessageSize; raise both together for TCP/TLS.
     */
    max_message_size: z
      .number()
      .int()
      .min(480)
      .max(1024 * 1024)
      .default(8192),
    /** Time allowed to connect and to hand a batch to the kernel. */
    timeout: timeout.default(10_000),
    include_content: includeContent,
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.transport !== 'tls') {
      for (const key of ['ca', 'cert', 'key'] as const) {
        if (c[key] !== undefined)
          ctx.addIssue({ code: 'custom', path: [key], message: 'applies only to transport: tls' });
      }
    }
    if ((c.cert === undefined) !== (c.key === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [c.cert ? 'key' : 'cert'],
        message: 'cert and key go together (mutual TLS)',
      });
    }
    if (c.transport === 'udp' && c.max_message_size > MAX_UDP_PAYLOAD) {
      ctx.addIssue({
        code: 'custom',
        path: ['max_message_size'],
        message: `must be at most ${MAX_UDP_PAYLOAD} for transport: udp (one datagram per message)`,
      });
    }
  });
export type SyslogSinkConfig = z.output<typeof syslogSinkSchema>;

const httpSinkSchema = z
  .object({
    type: z.literal('http'),
    name: sinkName,
    url: httpUrl,
    /** Signs each body with HMAC-SHA256 (`x-vigil-signature`) so the receiver can tell it came from this gateway. */
    secret: secretRef.optional(),
    /** Most events in one POST; a larger batch is sent as several POSTs in order. */
    batch_size: z.number().int().min(1).max(10_000).default(100),
    max_body_size: maxBodySize(64 * 1024 * 1024),
    /** Time allowed for one POST, from connecting to the end of the response. */
    timeout: timeout.default(10_000),
    headers: extraHeaders.optional(),
    /** CA bundle to verify the receiver's certificate; default: Node's bundled CAs. */
    ca: certificateFile.optional(),
    /** The HTTP proxy the receiver is reached through; default: the environment's (see connections[].proxy). */
    proxy: proxySetting.optional(),
    include_content: includeContent,
  })
  .strict();
export type HttpSinkConfig = z.output<typeof httpSinkSchema>;

const splunkHecSinkSchema = z
  .object({
    type: z.literal('splunk_hec'),
    name: sinkName,
    /** The HEC base URL, e.g. https://splunk.example.com:8088 (the event path is appended). */
    url: httpUrl,
    token: secretRef,
    index: z.string().min(1).optional(),
    source: z.string().min(1).default('vigil'),
    sourcetype: z.string().min(1).default('vigil:audit'),
    /** Splunk Enterprise takes 800 MiB (limits.conf [http_input] max_content_length); Splunk Cloud far less. */
    max_body_size: maxBodySize(64 * 1024 * 1024),
    timeout: timeout.default(10_000),
    ca: certificateFile.optional(),
    /** The HTTP proxy the receiver is reached through; default: the environment's (see connections[].proxy). */
    proxy: proxySetting.optional(),
    include_content: includeContent,
  })
  .strict();
export type SplunkHecSinkConfig = z.output<typeof splunkHecSinkSchema>;

const otlpSinkSchema = z
  .object({
    type: z.literal('otlp'),
    name: sinkName,
    /** The collector's OTLP/HTTP base URL, e.g. http://collector:4318 (`/v1/logs` is appended). */
    endpoint: httpUrl,
    headers: extraHeaders.optional(),
    /** The OpenTelemetry Collector's OTLP/HTTP receiver takes 20 MiB by default (confighttp max_request_body_size). */
    max_body_size: maxBodySize(20 * 1024 * 1024),
    timeout: timeout.default(10_000),
    ca: certificateFile.optional(),
    /** The HTTP proxy the receiver is reached through; default: the environment's (see connections[].proxy). */
    proxy: proxySetting.optional(),
    include_content: includeContent,
  })
  .strict();
export type OtlpSinkConfig = z.output<typeof otlpSinkSchema>;

export const sinkConfigSchema = z.discriminatedUnion('type', [
  syslogSinkSchema,
  httpSinkSchema,
  splunkHecSinkSchema,
  otlpSinkSchema,
]);
export type SinkConfig = z.output<typeof sinkConfigSchema>;
export type SinkConfigInput = z.input<typeof sinkConfigSchema>;

/** The `siem` section. */
export const siemConfigSchema = z
  .object({ sinks: z.array(sinkConfigSchema).default([]) })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.sinks.forEach((sink, i) => {
      if (seen.has(sink.name)) {
        ctx.addIssue({ code: 'custom', path: ['sinks', i, 'name'], message: `duplicate sink name "${sink.name}"` });
      }
      seen.add(sink.name);
    });
  });
export type SiemConfig = z.output<typeof siemConfigSchema>;
