/**
 * Audit events as the outbox would hand them to sinks: one of each shape that matters for the wire formats
 * (an exchange with token usage, a denial, a verify failure), with the characters syslog and JSON must escape.
 */
import type { AuditEvent } from '../../src/export/audit-event.js';

/** A completed exchange; `i` varies the ids so batches have distinct, ordered events. */
export function exchangeEvent(i = 1, overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    id: `evt-${String(i).padStart(4, '0')}`,
    type: 'exchange.completed',
    time: `2025-06-01T12:00:${String(i % 60).padStart(2, '0')}.123456Z`,
    gateway: 'gw-1/chain-a',
    actor: { method: 'oidc', subject: 'alice@example.com', issuer: 'https://idp.example.com', groups: ['eng', 'sec'] },
    connection: 'anthropic',
    session: 'sess-42',
    exchange: `ex-${i}`,
    severity: 'info',
    attributes: {
      model: 'claude-sonnet-4-5',
      input_tokens: 12,
      output_tokens: 340,
      cache_read_input_tokens: 1000,
      cache_creation_input_tokens: 200,
      outcome: 'completed',
      status: 200,
      latency_ms: 1532.5,
      first_byte_ms: 210,
      stop_reason: 'end_turn',
      masking: { email: 2, aws_access_key_id: 1 },
    },
    ...overrides,
  };
}

/** A denial whose subject holds every character RFC 5424 PARAM-VALUE escaping covers, and non-ASCII text. */
export function deniedEvent(i = 2): AuditEvent {
  return {
    id: `evt-${String(i).padStart(4, '0')}`,
    type: 'access.denied',
    time: '2025-06-01T12:01:00.000Z',
    gateway: 'gw-1/chain-a',
    actor: { method: 'gateway_key', subject: 'ci "bot" \\ [x] é✓' },
    connection: 'anthropic',
    severity: 'warning',
    attributes: { reason: 'not in allow list: “prod”', status: 403, retry: false, note: null },
  };
}

/** A ledger verification failure: no actor, no connection. */
export function verifyFailedEvent(i = 3): AuditEvent {
  return {
    id: `evt-${String(i).padStart(4, '0')}`,
    type: 'verify.failed',
    time: '2025-06-01T12:02:00Z',
    gateway: 'gw-2/chain-b',
    severity: 'alert',
    attributes: { chain: 'chain-b', seq: 1234, problem: 'hash mismatch' },
  };
}

/**
 * Content that throws as JSON.stringify does past V8's string limit (~512 MiB), without allocating it: what a batch of
 * exchanges with very large recorded bodies does to a sink building one request body.
 */
export const unserialisable: unknown = {
  toJSON(): never {
    throw new RangeError('Invalid string length');
  },
};
