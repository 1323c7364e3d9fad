/**
 * What Vigil tells a SIEM: one event per thing that happened, never a body unless a sink opts into masked content.
 * Events leave through a durable outbox in the store, so `id` is stable across retries: receivers de-duplicate on it.
 */

export type AuditEventType =
  | 'exchange.completed'
  | 'access.denied'
  | 'approval.held'
  | 'approval.notified'
  | 'approval.decided'
  | 'approval.granted'
  | 'approval.grant_used'
  | 'approval.timed_out'
  | 'approval.cancelled'
  | 'key.created'
  | 'key.revoked'
  | 'recording.read'
  | 'retention.run'
  | 'config.reloaded'
  | 'hold.added'
  | 'hold.released'
  | 'ledger.digest'
  | 'ledger.digest_overdue'
  | 'verify.failed'
  | 'siem.undeliverable';

export interface AuditActor {
  readonly method: string;
  readonly subject: string;
  readonly issuer?: string;
  readonly email?: string;
  readonly groups?: readonly string[];
}

export interface AuditEvent {
  /** Stable unique id (the outbox row's id), for at-least-once delivery with de-duplication. */
  readonly id: string;
  readonly type: AuditEventType;
  /** ISO 8601 time of what happened. */
  readonly time: string;
  /** Which gateway process emitted it (host name and chain). */
  readonly gateway: string;
  readonly actor?: AuditActor;
  readonly connection?: string;
  readonly session?: string;
  readonly exchange?: string;
  /** `info`, `warning` (denials, timeouts) or `alert` (verify failures, overdue digests, undeliverable events). */
  readonly severity: 'info' | 'warning' | 'alert';
  /**
   * Type-specific facts. For `exchange.completed`: model, input_tokens, output_tokens, cache_read_input_tokens,
   * cache_creation_input_tokens, outcome, status, latency_ms, first_byte_ms, stop_reason, masking (counts per type).
   */
  readonly attributes: Readonly<Record<string, string | number | boolean | null | Readonly<Record<string, number>>>>;
  /**
   * Masked request/response content, only for sinks that opt in (`include_content: true`). `omitted` says why there
   * is none: the recorded bodies are gone (purged by retention), or the receiver refused the event with them.
   */
  readonly content?: { readonly request?: unknown; readonly response?: unknown; readonly omitted?: string };
}
