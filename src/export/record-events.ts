/**
 * Which ledger records are audit events, and what each says. The ledger is the outbox: an event's id is the record's
 * place in its chain (`<chain>:<chain_seq>`), stable across retries and replicas, so a SIEM can de-duplicate on it.
 * Bodies leave here only for sinks that opt in (`include_content`), and only as recorded: masked.
 */
import { gatewayKeyId } from '../identity/gateway-keys.js';
import type { Principal } from '../identity/principal.js';
import type { KeyCreatedData, KeyRevokedData, StoredRecord } from '../store/audit-store.js';
import { bodyValue } from '../recorder/exchange-reader.js';
import { blobHashes } from '../recorder/body-splitter.js';
import { isRefusal } from '../recorder/exchange-turn.js';
import type { ExchangeRequestData, ExchangeResponseData } from '../store/record-types.js';
import type { DigestOverdueData } from '../store/digest-overdue.js';
import type { ConfigReloadedData } from '../config/config-changes.js';
import type { AuditActor, AuditEvent, AuditEventType } from './audit-event.js';

function actor(p: Principal | undefined): AuditActor | undefined {
  if (!p) return undefined;
  return {
    method: p.method,
    subject: p.subject,
    ...(p.issuer !== undefined ? { issuer: p.issuer } : {}),
    ...(p.email !== undefined ? { email: p.email } : {}),
    ...(p.groups !== undefined ? { groups: p.groups } : {}),
  };
}

/**
 * The CLI's user, who creates and revokes keys and places and releases holds (recorded by name only, `cli:<user>`): as
 * the access log and approvals name them, `local_user` (see cliLocalUser). Until this release these events said `cli`.
 */
function localUser(subject: unknown): AuditActor {
  return { method: 'local_user', subject: typeof subject === 'string' ? subject : 'unknown' };
}

function eventId(r: Pick<StoredRecord, 'chain' | 'chainSeq'>): string {
  return `${r.chain}:${r.chainSeq}`;
}

/**
 * The audit event a record stands for, or null for records that are not events on their own (request and stream
 * records: an exchange is reported once, when it completes — `request` is its request record, when at hand).
 */
export function auditEventOf(
  r: StoredRecord,
  gateway: string,
  request?: ExchangeRequestData,
  content?: AuditEvent['content'],
): AuditEvent | null {
  const base = { id: eventId(r), time: new Date(r.at).toISOString(), gateway: `${gateway}/${r.chain}` };
  const data = JSON.parse(r.data) as Record<string, unknown>;
  switch (r.kind) {
    case 'exchange.response': {
      const d = data as unknown as ExchangeResponseData;
      const a = actor(request?.caller);
      return {
        ...base,
        type: 'exchange.completed',
        // A failed exchange, or an answer the model declined (its safety classifiers: stop_reason refusal), is a
        // warning: what a SIEM alerting on severity should see.
        severity: d.outcome === 'ok' && !isRefusal(d.stopReason) ? 'info' : 'warning',
        ...(a ? { actor: a } : {}),
        ...(request ? { connection: request.connection } : {}),
        ...(r.sessionId ? { session: r.sessionId } : {}),
        ...(r.exchangeId ? { exchange: r.exchangeId } : {}),
        attributes: {
          model: d.model,
          outcome: d.outcome,
          status: d.status,
          stop_reason: d.stopReason,
          input_tokens: d.usage?.input_tokens ?? null,
          output_tokens: d.usage?.output_tokens ?? null,
          cache_read_input_tokens: d.usage?.cache_read_input_tokens ?? null,
          cache_creation_input_tokens: d.usage?.cache_creation_input_tokens ?? null,
          latency_ms: d.timing.durationMs,
          first_byte_ms: d.timing.firstByteMs,
          ...(request ? { method: request.request.method, path: request.request.path } : {}),
          ...(d.masking ? { masking: d.masking.counts } : {}),
        },
        ...(content ? { content } : {}),
      };
    }
    case 'access.denied': {
      const a = actor(data.caller as Principal | undefined);
      return {
        ...base,
        type: 'access.denied',
        severity: 'warning',
        ...(a ? { actor: a } : {}),
        ...(typeof data.connection === 'string' ? { connection: data.connection } : {}),
        attributes: {
          status: data.status as number,
          reason: data.reason as string,
          path: (data.path as string | undefined) ?? null,
          client_address: (data.clientAddress as string | undefined) ?? null,
        },
      };
    }
    case 'key.created':
    case 'key.revoked': {
      const d = data as unknown as KeyCreatedData & KeyRevokedData;
      return {
        ...base,
        type: r.kind === 'key.created' ? 'key.created' : 'key.revoked',
        severity: 'info',
        actor: d.actor ? actor(d.actor as Principal)! : localUser(r.kind === 'key.created' ? d.createdBy : d.revokedBy),
        attributes: {
          key_name: d.name,
          key_id: gatewayKeyId(d.hash),
          ...(r.kind === 'key.created'
            ? {
                owner: d.owner,
                expires_at: d.expiresAt,
                connections: d.connections.join(','),
                ...(d.rotates ? { rotates: d.rotates } : {}),
              }
            : // A rotated key is revoked for the end of its overlap: until then it still works.
              { revoked_at: d.revokedAt, ...(d.rotatedTo ? { rotated_to: d.rotatedTo } : {}) }),
        },
      };
    }
    case 'recording.read': {
      const a = actor(data.actor as Principal | undefined);
      return {
        ...base,
        type: 'recording.read',
        severity: 'info',
        ...(a ? { actor: a } : {}),
        attributes: {
          what: (data.what as string | undefined) ?? null,
          ids: Array.isArray(data.ids) ? (data.ids as string[]).slice(0, 50).join(',') : null,
        },
      };
    }
    case 'verify.failed':
      return {
        ...base,
        type: 'verify.failed',
        severity: 'alert',
        ...(data.by ? { actor: data.by as AuditActor } : {}),
        attributes: {
          problems: (data.problems as number | undefined) ?? null,
          first_problem:
            ((data.first as Array<{ detail?: string }> | undefined)?.[0]?.detail as string | undefined) ?? null,
        },
      };
    case 'siem.undeliverable':
      return {
        ...base,
        type: 'siem.undeliverable',
        severity: 'alert',
        attributes: {
          sink: data.sink as string,
          event: data.event as string,
          event_type: data.eventType as string,
          attempts: data.attempts as number,
          error: data.error as string,
        },
      };
    case 'hold.added':
    case 'hold.released':
      // A released hold lets retention purge what it kept: worth a warning, and worth seeing outside the store.
      return {
        ...base,
        type: r.kind === 'hold.added' ? 'hold.added' : 'hold.released',
        severity: r.kind === 'hold.released' ? 'warning' : 'info',
        actor: localUser(data.by),
        ...(typeof data.session === 'string' ? { session: data.session } : {}),
        attributes: {
          hold_id: (data.holdId as string | undefined) ?? null,
          reason: (data.reason as string | undefined) ?? null,
          ...(r.kind === 'hold.added' ? { caller: (data.caller as string | null | undefined) ?? null } : {}),
        },
      };
    case 'digest.signed':
      // The SIEM keeps what the store cannot vouch for itself: that this digest — and every record and other
      // chain's head it signs for — existed. `vigil verify --anchor <anchor>` checks the store still has it.
      return {
        ...base,
        type: 'ledger.digest',
        severity: 'info',
        attributes: {
          chain: r.chain,
          chain_seq: r.chainSeq,
          record_hash: r.hash,
          anchor: `${r.chain}:${r.chainSeq}:${r.hash}`,
          from_seq: (data.fromSeq as number | undefined) ?? null,
          to_seq: (data.toSeq as number | undefined) ?? null,
          head_hash: (data.headHash as string | undefined) ?? null,
          key_id: (data.keyId as string | undefined) ?? null,
          heads: Array.isArray(data.heads) ? data.heads.length : 0,
        },
      };
    case 'digest.overdue': {
      // A writer stopped signing its chain (see store/digest-overdue.ts): what it records meanwhile nothing in the
      // SIEM vouches for, and a stopped gateway shows as no more ledger.digest events only to a rule that looks.
      const d = data as Partial<DigestOverdueData>;
      return {
        ...base,
        type: 'ledger.digest_overdue',
        severity: 'alert',
        attributes: {
          chain: d.chain ?? null,
          from_seq: d.fromSeq ?? null,
          to_seq: d.toSeq ?? null,
          since: typeof d.since === 'number' ? new Date(d.since).toISOString() : null,
          undigested_seconds: typeof d.undigestedMs === 'number' ? Math.round(d.undigestedMs / 1000) : null,
          overdue_after_seconds: typeof d.overdueAfterMs === 'number' ? Math.round(d.overdueAfterMs / 1000) : null,
          last_digest_seq: d.lastDigest?.chainSeq ?? null,
          last_digest_at: d.lastDigest ? new Date(d.lastDigest.at).toISOString() : null,
          writer_running: d.writerRunning ?? null,
        },
      };
    }
    case 'retention.purged':
      return {
        ...base,
        type: 'retention.run',
        severity: 'info',
        attributes: {
          exchanges: (data.exchanges as number | undefined) ?? null,
          records: (data.records as number | undefined) ?? null,
          blobs: (data.blobs as number | undefined) ?? null,
        },
      };
    case 'config.reloaded': {
      // Who may call, what is held for approval, what is masked: a change an auditor must see, as a warning.
      const d = data as unknown as ConfigReloadedData;
      const by = d.by.method === 'signal' ? undefined : actor(d.by as Principal);
      return {
        ...base,
        type: 'config.reloaded',
        severity: 'warning',
        ...(by ? { actor: by } : {}),
        attributes: {
          added: d.connections.added.join(',') || null,
          changed: d.connections.changed.map((c) => `${c.name}(${c.keys.join('+')})`).join(',') || null,
          removed: d.connections.removed.join(',') || null,
          default_connection: d.defaultConnection?.to ?? null,
          // Who is trusted to say who calls, and who may read every recording: null when the reload left them as
          // they were, '' when there are none now.
          identity_issuers: d.identity ? d.identity.issuers.map((i) => i.issuer).join(',') : null,
          anonymous: d.identity?.anonymous ?? null,
          admin_tokens: d.admin ? d.admin.tokens.map((t) => `${t.name}:${t.role}`).join(',') : null,
          admin_roles: d.admin
            ? [
                ...d.admin.roles.admin.map((g) => `admin:${g}`),
                ...d.admin.roles.auditor.map((g) => `auditor:${g}`),
              ].join(',')
            : null,
          config_sha256: d.configSha256,
          by: d.by.method === 'signal' ? d.by.subject : d.by.method,
        },
      };
    }
    default:
      const approval = APPROVAL_EVENTS[r.kind];
      if (approval) {
        const a = actor((data.approver ?? data.caller) as Principal | undefined);
        return {
          ...base,
          type: approval.type,
          severity: approval.severity,
          ...(a ? { actor: a } : {}),
          ...(typeof data.connection === 'string' ? { connection: data.connection } : {}),
          ...(r.sessionId ? { session: r.sessionId } : {}),
          ...(r.exchangeId ? { exchange: r.exchangeId } : {}),
          attributes: {
            record: r.kind,
            approval_id: (data.approvalId as string | undefined) ?? (data.id as string | undefined) ?? null,
            decision: (data.decision as string | undefined) ?? null,
            rule:
              typeof data.rule === 'string' ? data.rule : ((data.rule as { name?: string } | undefined)?.name ?? null),
            reason: (data.reason as string | undefined) ?? null,
          },
        };
      }
      return null;
  }
}

/**
 * Each approval record as an event of its own type: a SIEM rule on decisions must not fire on notifications, or on
 * every call a grant lets through. Warnings: what a person decided, a grant (later calls skip approval), a timeout.
 */
const APPROVAL_EVENTS: Readonly<Record<string, { type: AuditEventType; severity: AuditEvent['severity'] }>> = {
  'approval.held': { type: 'approval.held', severity: 'info' },
  'approval.notified': { type: 'approval.notified', severity: 'info' },
  'approval.decided': { type: 'approval.decided', severity: 'warning' },
  'approval.granted': { type: 'approval.granted', severity: 'warning' },
  'approval.grant_used': { type: 'approval.grant_used', severity: 'info' },
  'approval.timed_out': { type: 'approval.timed_out', severity: 'warning' },
  'approval.cancelled': { type: 'approval.cancelled', severity: 'info' },
};

/** The blobs {@link exchangeContent} needs. */
export function contentBlobHashes(request: ExchangeRequestData | undefined, response: ExchangeResponseData): string[] {
  return [...blobHashes(request?.request.body), ...blobHashes(response.body)];
}

/**
 * An exchange's content as recorded (so masked), for sinks with `include_content: true`: the request body, and the
 * response's assembled message for a stream, else its body. JSON is embedded parsed; a body recorded truncated
 * (over `max_body_bytes`) is its recorded text.
 */
export function exchangeContent(
  request: ExchangeRequestData | undefined,
  response: ExchangeResponseData,
  blobs: ReadonlyMap<string, Buffer>,
): NonNullable<AuditEvent['content']> {
  return {
    ...(request ? { request: bodyValue(request.request.body, blobs) } : {}),
    response: response.message ?? bodyValue(response.body, blobs),
  };
}
