/**
 * An audit event as an OpenTelemetry log record, in the OTLP/JSON encoding: 64-bit integers as decimal strings,
 * attributes as `{ key, value: { stringValue | intValue | doubleValue | boolValue | arrayValue | kvlistValue } }`.
 * https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding
 *
 * Exchange events also carry the GenAI semantic conventions (gen_ai.*), so GenAI dashboards work on them unchanged:
 * https://opentelemetry.io/docs/specs/semconv/gen-ai/anthropic/ — note that Anthropic's `input_tokens` excludes cached
 * tokens, and the convention asks for `gen_ai.usage.input_tokens = input + cache_read + cache_creation`.
 * Every fact of the event is also under `vigil.*` unchanged, so nothing is lost to the mapping.
 */
import type { AuditEvent } from './audit-event.js';

export type OtlpAnyValue =
  | { stringValue: string }
  | { boolValue: boolean }
  | { intValue: string }
  | { doubleValue: number }
  | { arrayValue: { values: OtlpAnyValue[] } }
  | { kvlistValue: { values: OtlpKeyValue[] } };

export interface OtlpKeyValue {
  key: string;
  value: OtlpAnyValue;
}

export interface OtlpLogRecord {
  timeUnixNano: string;
  observedTimeUnixNano: string;
  severityNumber: number;
  severityText: string;
  eventName: string;
  body: OtlpAnyValue;
  attributes: OtlpKeyValue[];
}

/**
 * Severity numbers from the log data model's syslog mapping (Informational → INFO, Warning → WARN, Alert → ERROR3).
 * https://opentelemetry.io/docs/specs/otel/logs/data-model/#severity-fields
 */
const SEVERITY_NUMBER = { info: 9, warning: 13, alert: 19 } as const;

/** An OTLP attribute value for a JSON value; null has no OTLP value and yields undefined (the key is left out). */
function otlpValue(v: unknown): OtlpAnyValue | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v)) return { intValue: String(v) };
    // JSON has no NaN or Infinity; OTLP/JSON would need them as strings, which some receivers refuse.
    return Number.isFinite(v) ? { doubleValue: v } : { stringValue: String(v) };
  }
  if (Array.isArray(v)) {
    return { arrayValue: { values: v.map(otlpValue).filter((x): x is OtlpAnyValue => x !== undefined) } };
  }
  if (typeof v === 'object') return { kvlistValue: { values: keyValues(v as Record<string, unknown>, '') } };
  return { stringValue: String(v) };
}

function keyValues(obj: Readonly<Record<string, unknown>>, prefix: string): OtlpKeyValue[] {
  const out: OtlpKeyValue[] = [];
  for (const [k, v] of Object.entries(obj)) {
    const value = otlpValue(v);
    if (value !== undefined) out.push({ key: prefix + k, value });
  }
  return out;
}

/** Nanoseconds since the epoch as a decimal string, keeping sub-millisecond digits that `Date` would drop. */
function unixNanos(iso: string): string | undefined {
  const m = /^(.*T\d{2}:\d{2}:\d{2})(?:[.,](\d+))?(.*)$/.exec(iso);
  const seconds = Date.parse(m ? `${m[1]}${m[3]}` : iso);
  if (!Number.isFinite(seconds)) return undefined;
  const fraction = BigInt((m?.[2] ?? '').padEnd(9, '0').slice(0, 9));
  return (BigInt(seconds) * 1_000_000n + fraction).toString();
}

/** The gen_ai.* attributes of an `exchange.completed` event. */
function genAiAttributes(event: AuditEvent): OtlpKeyValue[] {
  const a = event.attributes;
  const num = (k: string): number | undefined => (typeof a[k] === 'number' ? (a[k] as number) : undefined);
  const input = num('input_tokens');
  const cacheRead = num('cache_read_input_tokens');
  const cacheCreation = num('cache_creation_input_tokens');
  const facts: Record<string, unknown> = {
    'gen_ai.provider.name': 'anthropic',
    'gen_ai.operation.name': 'chat',
    'gen_ai.request.model': typeof a.model === 'string' ? a.model : undefined,
    'gen_ai.conversation.id': event.session,
    'gen_ai.usage.input_tokens': input === undefined ? undefined : input + (cacheRead ?? 0) + (cacheCreation ?? 0),
    'gen_ai.usage.output_tokens': num('output_tokens'),
    'gen_ai.usage.cache_read.input_tokens': cacheRead,
    'gen_ai.usage.cache_creation.input_tokens': cacheCreation,
    'gen_ai.response.finish_reasons': typeof a.stop_reason === 'string' ? [a.stop_reason] : undefined,
  };
  return keyValues(facts, '');
}

/**
 * The log record for one event. `body` is the event itself as JSON text (the SIEM's copy of record; masked content
 * appears only there and only when the sink opted in); attributes are the searchable facts.
 */
export function otlpLogRecord(event: AuditEvent, observedAt: Date = new Date()): OtlpLogRecord {
  const observed = (BigInt(observedAt.getTime()) * 1_000_000n).toString();
  const facts: Record<string, unknown> = {
    'event.name': event.type,
    'vigil.event.id': event.id,
    'vigil.gateway': event.gateway,
    'vigil.actor.method': event.actor?.method,
    'vigil.actor.subject': event.actor?.subject,
    'vigil.actor.issuer': event.actor?.issuer,
    'vigil.actor.email': event.actor?.email,
    'vigil.actor.groups': event.actor?.groups,
    'vigil.connection': event.connection,
    'vigil.session': event.session,
    'vigil.exchange': event.exchange,
  };
  return {
    timeUnixNano: unixNanos(event.time) ?? observed,
    observedTimeUnixNano: observed,
    severityNumber: SEVERITY_NUMBER[event.severity],
    severityText: event.severity,
    eventName: event.type,
    body: { stringValue: JSON.stringify(event) },
    attributes: [
      ...keyValues(facts, ''),
      ...(event.type === 'exchange.completed' ? genAiAttributes(event) : []),
      ...keyValues(event.attributes, 'vigil.'),
    ],
  };
}
