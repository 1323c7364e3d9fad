import { describe, expect, it } from 'vitest';
import { auditEventOf } from '../../../src/export/record-events.js';
import type { StoredRecord } from '../../../src/store/audit-store.js';

const record = (kind: string, data: Record<string, unknown>): StoredRecord => ({
  seq: 7,
  chain: 'ch_1',
  chainSeq: 7,
  kind: kind as StoredRecord['kind'],
  exchangeId: 'ex_1',
  sessionId: 'ses_1',
  at: 1_700_000_000_000,
  data: JSON.stringify(data),
  prevHash: '0'.repeat(64),
  hash: '1'.repeat(64),
});

describe('approval records as audit events', () => {
  it('each kind is an event type of its own, so a rule on decisions fires on decisions only', () => {
    // Went wrong: every approval record but `held` went out as `approval.decided` (warning) — notifications and
    // each call a grant let through included.
    const base = { approvalId: 'apr_1', connection: 'anthropic', rule: { name: 'risky' } };
    const cases: Array<[string, Record<string, unknown>, string, string]> = [
      ['approval.held', { ...base, caller: { method: 'oidc', subject: 'alice' } }, 'approval.held', 'info'],
      ['approval.notified', base, 'approval.notified', 'info'],
      [
        'approval.decided',
        { ...base, decision: 'approve', approver: { method: 'oidc', subject: 'bob' } },
        'approval.decided',
        'warning',
      ],
      [
        'approval.granted',
        { ...base, rule: 'risky', caller: { subject: 'alice', issuer: null } },
        'approval.granted',
        'warning',
      ],
      ['approval.grant_used', base, 'approval.grant_used', 'info'],
      ['approval.timed_out', base, 'approval.timed_out', 'warning'],
      ['approval.cancelled', base, 'approval.cancelled', 'info'],
    ];
    for (const [kind, data, type, severity] of cases) {
      const e = auditEventOf(record(kind, data), 'gw-1');
      expect({ kind, type: e?.type, severity: e?.severity }).toEqual({ kind, type, severity });
      expect(e?.attributes).toMatchObject({ record: kind, approval_id: 'apr_1', rule: 'risky' });
    }
    expect(auditEventOf(record('approval.decided', { ...base, decision: 'deny' }), 'gw-1')?.attributes).toMatchObject({
      decision: 'deny',
    });
  });
});

describe('exchanges as audit events', () => {
  it('an answer the model declined (stop_reason refusal) is a warning, as a failed exchange is', () => {
    // A model's safety classifiers declining an agent's request is what a SIEM alerting on severity should see; it
    // is a 200, so the outcome alone made it `info`.
    const response = (outcome: string, stopReason: string | null) =>
      record('exchange.response', {
        status: outcome === 'ok' ? 200 : 529,
        model: 'claude-fable-5-1',
        stopReason,
        outcome,
        usage: null,
        timing: { startedAt: 1, firstByteMs: 1, endedAt: 2, durationMs: 1 },
      });
    const seen = (outcome: string, stopReason: string | null) => {
      const e = auditEventOf(response(outcome, stopReason), 'gw');
      return [e?.type, e?.severity, e?.attributes.stop_reason];
    };
    expect(seen('ok', 'end_turn')).toEqual(['exchange.completed', 'info', 'end_turn']);
    expect(seen('ok', 'refusal')).toEqual(['exchange.completed', 'warning', 'refusal']);
    expect(seen('upstream_error', null)).toEqual(['exchange.completed', 'warning', null]);
  });
});

describe('signed digests as audit events', () => {
  it('go to the SIEM as ledger.digest events carrying the anchor verify --anchor takes', () => {
    // Went wrong: digest.signed records were no audit event, so nothing outside the store kept what a digest signed,
    // and the newest records of a chain could be cut off with their digests undetected.
    const event = auditEventOf(
      record('digest.signed', {
        chain: 'ch_1',
        fromSeq: 1,
        toSeq: 6,
        headHash: 'a'.repeat(64),
        previousSignature: null,
        signedAt: 1_700_000_000_000,
        heads: [{ chain: 'ch_0', chainSeq: 3, hash: 'b'.repeat(64) }],
        keyId: 'k1',
        signature: 'sig',
      }),
      'gw',
    );
    expect(event).toMatchObject({
      id: 'ch_1:7',
      type: 'ledger.digest',
      severity: 'info',
      attributes: {
        chain: 'ch_1',
        chain_seq: 7,
        record_hash: '1'.repeat(64),
        anchor: `ch_1:7:${'1'.repeat(64)}`,
        from_seq: 1,
        to_seq: 6,
        head_hash: 'a'.repeat(64),
        key_id: 'k1',
        heads: 1,
      },
    });
  });
});

describe('legal holds as audit events', () => {
  it('placing and releasing a hold reach the SIEM, a release as a warning', () => {
    // Went wrong: holds were on the ledger only, so a hold released by whoever could append records went unseen.
    const added = auditEventOf(
      record('hold.added', { holdId: 'hold_1', session: 'ses_9', caller: null, reason: 'litigation', by: 'cli:legal' }),
      'gw',
    );
    expect(added).toMatchObject({
      type: 'hold.added',
      severity: 'info',
      actor: { method: 'local_user', subject: 'cli:legal' },
      session: 'ses_9',
      attributes: { hold_id: 'hold_1', reason: 'litigation', caller: null },
    });
    const released = auditEventOf(
      record('hold.released', { holdId: 'hold_1', reason: 'case closed', by: 'cli:legal', at: 1 }),
      'gw',
    );
    expect(released).toMatchObject({
      type: 'hold.released',
      severity: 'warning',
      attributes: { hold_id: 'hold_1', reason: 'case closed' },
    });
  });
});
