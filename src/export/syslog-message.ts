/**
 * An audit event as an RFC 5424 syslog message, and the octet-counting frame TCP and TLS carry it in.
 *
 *   <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [vigil@32473 id="…" type="…" …] {"id":…}
 *
 * MSGID is the event type; the SD element repeats the identifiers a SIEM correlates on, so they can be searched
 * without parsing MSG; MSG is the whole event as JSON. The JSON is pure ASCII (every non-ASCII character escaped as
 * \uXXXX), which makes it valid under any reading of MSG: RFC 5424 §6.4 asks for a BOM before UTF-8 text, and a BOM
 * in front of JSON breaks most SIEM parsers, whereas ASCII needs none.
 * https://www.rfc-editor.org/rfc/rfc5424
 */
import type { AuditEvent } from './audit-event.js';
import { SYSLOG_FACILITIES, type SyslogFacility } from './sinks-config.js';

/** The SD-ID: name@PEN, with the enterprise number RFC 5612 reserves for documentation and examples. */
export const VIGIL_SD_ID = 'vigil@32473';

/** RFC 5424 §6.2.1 severities: alert (1) for verify failures, warning (4) for denials, informational (6). */
const SEVERITY = { alert: 1, warning: 4, info: 6 } as const;

export interface SyslogMessageOptions {
  readonly facility: SyslogFacility;
  readonly appName: string;
  readonly hostname: string;
  readonly procId: string;
  /** Largest message in bytes; a larger event is shortened (see {@link formatSyslogMessage}). */
  readonly maxBytes: number;
}

/** RFC 5424 §6.3.3: inside PARAM-VALUE, `"`, `\` and `]` must be escaped with a backslash. */
export function escapeParamValue(value: string): string {
  return value.replace(/["\\\]]/g, (c) => `\\${c}`);
}

/** A header field: PRINTUSASCII only, at most `max` characters, NILVALUE when empty. */
function headerField(value: string | undefined, max: number): string {
  const v = (value ?? '').replace(/[^!-~]/g, '_').slice(0, max);
  return v || '-';
}

/** RFC 5424 TIMESTAMP: RFC 3339 with an upper-case T and Z and at most 6 fraction digits; NILVALUE if unknown. */
function timestamp(time: string): string {
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$/.test(time)) return time;
  const ms = Date.parse(time);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : '-';
}

/** JSON with every character above U+007E escaped, so MSG is plain ASCII. */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

function structuredData(event: AuditEvent, full: boolean): string {
  const params: Array<[string, string | undefined]> = [
    ['id', event.id],
    ['type', event.type],
    ...(full
      ? ([
          ['subject', event.actor?.subject],
          ['connection', event.connection],
          ['session', event.session],
          ['exchange', event.exchange],
        ] as Array<[string, string | undefined]>)
      : []),
  ];
  const body = params
    .filter((p): p is [string, string] => p[1] !== undefined)
    .map(([k, v]) => ` ${k}="${escapeParamValue(v)}"`)
    .join('');
  return `[${VIGIL_SD_ID}${body}]`;
}

/**
 * Formats one event. When the message would exceed `maxBytes` it is shortened so the JSON stays parseable rather than
 * being cut mid-token by the receiver: first `content` is dropped, then `attributes` and `actor`; the MSG then says
 * `"truncated": true`, and the id in both SD and MSG lets the SIEM join it to the full record in Vigil.
 */
export function formatSyslogMessage(event: AuditEvent, opts: SyslogMessageOptions): Buffer {
  const pri = SYSLOG_FACILITIES[opts.facility] * 8 + SEVERITY[event.severity];
  const header =
    `<${pri}>1 ${timestamp(event.time)} ${headerField(opts.hostname, 255)} ${headerField(opts.appName, 48)} ` +
    `${headerField(opts.procId, 128)} ${headerField(event.type, 32)} `;
  const { content: _content, ...withoutContent } = event;
  const { attributes: _attributes, actor: _actor, ...core } = withoutContent;
  const attempts: Array<[boolean, unknown]> = [
    [true, event],
    [true, { ...withoutContent, truncated: true }],
    [true, { ...core, truncated: true }],
    [false, { id: event.id, type: event.type, time: event.time, severity: event.severity, truncated: true }],
  ];
  let msg = Buffer.alloc(0);
  for (const [fullSd, body] of attempts) {
    msg = Buffer.from(`${header}${structuredData(event, fullSd)} ${asciiJson(body)}`, 'utf8');
    if (msg.length <= opts.maxBytes) return msg;
  }
  return msg;
}

/** RFC 6587 §3.4.1 / RFC 5425 §4.3 octet counting: `MSG-LEN SP SYSLOG-MSG`, the length in bytes. */
export function octetCountedFrame(message: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${message.length} `, 'ascii'), message]);
}
