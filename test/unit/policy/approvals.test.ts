/**
 * The approval coordinator on real stores: SQLite files (a second store instance on the same file is another process)
 * and PostgreSQL (two instances are two gateway replicas). Decisions only ever travel through the ledger.
 */
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { authenticateGatewayKey } from '../../../src/identity/gateway-keys.js';
import { createGatewayKey, revokeGatewayKey, rotateGatewayKey } from '../../../src/identity/key-admin.js';
import type { Principal } from '../../../src/identity/principal.js';
import {
  approvalRulesSchema,
  compileApprovalRules,
  type ApprovalRulesInput,
  type CompiledRule,
} from '../../../src/policy/approval-rules.js';
import { ApprovalNotifier } from '../../../src/policy/approval-notifier.js';
import { approvalsConfigSchema } from '../../../src/policy/approvals-config.js';
import { summarizeRequest } from '../../../src/policy/approval-summary.js';
import {
  ApprovalCoordinator,
  ApprovalRefused,
  type ApprovalLedger,
  type Approver,
  type HoldOutcome,
  type HoldRequest,
} from '../../../src/policy/approvals.js';
import { compileMasker } from '../../../src/recorder/masking/masker.js';
import { maskingConfigSchema } from '../../../src/recorder/masking/masking-config.js';
import type { AuditStore } from '../../../src/store/audit-store.js';
import { startRecordingHttpServer, type RecordingHttpServer } from '../../support/recording-http-server.js';
import { createStoreFixture, storeKinds, type StoreFixture } from '../../support/stores.js';

const alice: Principal = {
  method: 'oidc',
  subject: 'alice',
  issuer: 'https://idp',
  email: 'alice@example.com',
  groups: ['dev'],
};
const bob: Approver = {
  method: 'oidc',
  subject: 'bob',
  issuer: 'https://idp',
  email: 'bob@example.com',
  groups: ['sre'],
};
const dave: Approver = { method: 'oidc', subject: 'dave', issuer: 'https://idp', groups: ['sre', 'dev'] };
const carol: Approver = { method: 'oidc', subject: 'carol', issuer: 'https://idp', groups: ['dev'] };
const cliUser: Approver = { method: 'local_user', subject: 'cli:ops' };

const SECRET = 'AKIAIOSFODNN7EXAMPLE';
const masker = compileMasker(maskingConfigSchema.parse({}));

function rule(input: Partial<ApprovalRulesInput[number]> = {}): CompiledRule {
  return compileApprovalRules(approvalRulesSchema.parse([{ name: 'risky', action: 'hold', when: {}, ...input }]))
    .rules[0]!;
}

let n = 0;
function call(r: CompiledRule, extra: Partial<HoldRequest> = {}): HoldRequest {
  n++;
  const json = {
    model: 'claude-opus-4-1',
    max_tokens: 100,
    messages: [{ role: 'user', content: `deploy with key ${SECRET} please` }],
    tools: [{ name: 'Bash' }],
  };
  return {
    exchangeId: `ex_${n}`,
    sessionId: 'ses_1',
    connection: 'anthropic',
    caller: alice,
    rule: r,
    matched: ['tool offered: Bash'],
    request: summarizeRequest(json, masker, [/deploy/]),
    ...extra,
  };
}

/** Waits until the coordinator lists `count` pending approvals (the hold is recorded), returns the newest id. */
/** The id of a pending approval other than those in `known` (two held in the same millisecond list in any order). */
async function pendingId(c: ApprovalCoordinator, known: readonly string[] = []): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const fresh = (await c.list({ pending: true })).find((a) => !known.includes(a.id));
    if (fresh) return fresh.id;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('no pending approval');
}

/** Waits until the coordinator lists `count` pending approvals, returns their ids. */
async function pendingIds(c: ApprovalCoordinator, count: number): Promise<string[]> {
  for (let i = 0; i < 200; i++) {
    const list = await c.list({ pending: true });
    if (list.length >= count) return list.map((a) => a.id);
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`fewer than ${count} pending approvals`);
}

function settled(p: Promise<HoldOutcome>): Promise<HoldOutcome | 'pending'> {
  return Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), 50))]);
}

/** A new gateway key in the store, and the caller it authenticates as (as the proxy records it). */
async function keyCaller(store: AuditStore, name: string): Promise<Principal> {
  const { key } = await createGatewayKey(store, { name, owner: 'platform', connections: [], createdBy: 'test' }, [
    'anthropic',
  ]);
  return (await authenticateGatewayKey(key, (hash) => store.findGatewayKey(hash))).principal;
}

/** Expects `c` to hold this call (no grant lets it through), then lets the client give up. */
async function expectHeld(c: ApprovalCoordinator, req: HoldRequest): Promise<void> {
  const abort = new AbortController();
  const held = c.hold({ ...req, signal: abort.signal });
  expect(await settled(held)).toBe('pending');
  abort.abort();
  expect(await held).toMatchObject({ outcome: 'cancelled' });
}

describe.each(storeKinds())('approval coordinator on %s', (kind) => {
  let fixture: StoreFixture;
  let store: AuditStore;
  let gateway: ApprovalCoordinator;

  beforeEach(async () => {
    fixture = await createStoreFixture(kind);
    store = await fixture.open();
    gateway = new ApprovalCoordinator(store, { pollMs: 50 });
  });
  afterEach(async () => {
    await gateway.close();
    await fixture.dispose();
  });

  it('reads a ledger that keeps failing less and less often while a call waits, and settles the call once it answers', async () => {
    // Went wrong: with the store unreachable, every poll (200 ms) failed and was logged: 18,000 lines an hour.
    let down = false;
    let failedReads = 0;
    const flaky: ApprovalLedger = {
      append: (batch) => store.append(batch),
      recordsOfKinds: async (...args) => {
        if (down) {
          failedReads++;
          throw new Error('Connection terminated unexpectedly');
        }
        return store.recordsOfKinds(...args);
      },
    };
    const warnings: Array<{ retryInMs: number }> = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line)) });
    const waiting = new ApprovalCoordinator(flaky, { pollMs: 10, log });
    try {
      const held = waiting.hold(call(rule()));
      const id = await pendingId(gateway);
      down = true;
      await new Promise((r) => setTimeout(r, 700));
      // 10, 20, 40, 80, 160, 320 ms: about six reads in 700 ms, where polling every 10 ms made seventy.
      expect(failedReads).toBeGreaterThanOrEqual(3);
      expect(failedReads).toBeLessThanOrEqual(8);
      expect(warnings.map((w) => w.retryInMs).slice(0, 4)).toEqual([10, 20, 40, 80]);
      await gateway.approve(id, bob);
      down = false;
      // Within the pause then reached (640 ms at most) and one more poll.
      expect(await held).toEqual({ outcome: 'approved', approvalId: id, by: [bob] });
    } finally {
      await waiting.close();
    }
  });

  it('holds a call until someone else approves it, and records it all on the session', async () => {
    const held = gateway.hold(call(rule({ message: 'Bash needs a second pair of eyes' })));
    const id = await pendingId(gateway);
    expect(await settled(held)).toBe('pending');

    const view = (await gateway.get(id))!;
    expect(view).toMatchObject({
      status: 'pending',
      connection: 'anthropic',
      caller: { subject: 'alice' },
      rule: { name: 'risky', message: 'Bash needs a second pair of eyes', approvalsRequired: 1 },
      matched: ['tool offered: Bash'],
      request: { model: 'claude-opus-4-1', toolsOffered: ['Bash'], masked: ['aws_access_key_id'] },
    });
    expect(JSON.stringify(view)).not.toContain(SECRET);
    expect(view.request.lastTurn).toContain('deploy with key');

    await gateway.approve(id, bob, { reason: 'looks fine' });
    expect(await held).toEqual({ outcome: 'approved', approvalId: id, by: [bob] });
    expect((await gateway.get(id))!).toMatchObject({
      status: 'approved',
      approvals: [{ by: bob, reason: 'looks fine' }],
    });

    const records = await store.sessionRecords('ses_1');
    expect(records.map((r) => r.kind)).toEqual(['approval.held', 'approval.decided']);
    expect(records.every((r) => r.exchangeId === view.exchangeId)).toBe(true);
    expect(records.map((r) => r.data).join('')).not.toContain(SECRET);
  });

  it('a denial ends the hold with the approver and reason', async () => {
    const held = gateway.hold(call(rule()));
    const id = await pendingId(gateway);
    await gateway.deny(id, bob, 'not on a Friday');
    expect(await held).toEqual({ outcome: 'denied', approvalId: id, by: bob, reason: 'not on a Friday' });
    await expect(gateway.approve(id, dave)).rejects.toThrow(`${id} is no longer pending: denied`);
  });

  it('times out when nobody decides in time', async () => {
    const started = Date.now();
    const outcome = await gateway.hold(call(rule({ timeout: '300ms' })));
    expect(outcome).toMatchObject({ outcome: 'timed_out', timeoutMs: 300 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    const id = (outcome as { approvalId: string }).approvalId;
    expect((await store.sessionRecords('ses_1')).map((r) => r.kind)).toEqual(['approval.held', 'approval.timed_out']);
    expect((await gateway.get(id))!.status).toBe('timed_out');
    await expect(gateway.approve(id, bob)).rejects.toMatchObject({ problem: 'not_pending' });
  });

  it('refuses self-approval (same subject and issuer; a gateway key by its owner), and lets the caller withdraw', async () => {
    const held = gateway.hold(call(rule()));
    const id = await pendingId(gateway);
    const self: Approver = { method: 'oidc', subject: 'alice', issuer: 'https://idp', groups: ['sre'] };
    const err = await gateway.approve(id, self).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApprovalRefused);
    expect(err).toMatchObject({
      problem: 'self_approval',
      status: 403,
      message: 'alice made this call and cannot approve it: someone else must',
    });
    // The same subject from another issuer is someone else.
    await gateway.approve(id, { ...self, issuer: 'https://other-idp' });
    expect(await held).toMatchObject({ outcome: 'approved' });

    const keyCall = gateway.hold(
      call(rule(), { caller: { method: 'gateway_key', subject: 'ci', keyName: 'ci', owner: 'bob@example.com' } }),
    );
    const keyId = await pendingId(gateway);
    await expect(gateway.approve(keyId, bob)).rejects.toMatchObject({ problem: 'self_approval' });
    await gateway.deny(keyId, bob, 'withdrawn by its owner');
    expect(await keyCall).toMatchObject({ outcome: 'denied', reason: 'withdrawn by its owner' });
  });

  it('a gateway key’s owner cannot approve its calls as the CLI’s local user or an admin token either', async () => {
    // Went wrong: the owner was compared with OIDC approvers only, but without OIDC `vigil keys create` records its user
    // as the owner (`cli:alice`) and `vigil approvals approve` decides as that same `cli:alice`.
    const byKey = (owner: string) =>
      call(rule(), { caller: { method: 'gateway_key', subject: 'agent', keyName: 'agent', owner, keyId: 'key_1' } });
    const refusedTo = async (owner: string, approver: Approver): Promise<void> => {
      const held = gateway.hold(byKey(owner));
      const id = await pendingId(gateway);
      await expect(gateway.approve(id, approver), `${owner} / ${approver.subject}`).rejects.toMatchObject({
        problem: 'self_approval',
      });
      await gateway.deny(id, approver, 'withdrawn by its owner');
      expect(await held).toMatchObject({ outcome: 'denied' });
    };
    await refusedTo('cli:alice', { method: 'local_user', subject: 'cli:alice' });
    await refusedTo('alice', { method: 'local_user', subject: 'cli:alice' }); // --owner alice
    await refusedTo('oncall', { method: 'admin_token', subject: 'oncall' });
    await refusedTo('Alice@Example.com', alice);

    const held = gateway.hold(byKey('cli:alice'));
    const id = await pendingId(gateway);
    await gateway.approve(id, { method: 'local_user', subject: 'cli:bob' });
    expect(await held).toMatchObject({ outcome: 'approved' });
  });

  it('warns once per key when approvers sign in with OIDC but the key’s owner is a local user', async () => {
    const warnings: Array<{ obj: object; msg: string }> = [];
    const log = { warn: (obj: object, msg: string) => warnings.push({ obj, msg }), error: () => undefined };
    const oidc = new ApprovalCoordinator(store, { pollMs: 20, log, oidcApprovers: true });
    const local = new ApprovalCoordinator(store, { pollMs: 20, log });
    const byKey = (owner: string, keyId: string) =>
      call(rule(), { caller: { method: 'gateway_key', subject: 'agent', keyName: 'agent', owner, keyId } });
    try {
      const calls = [
        oidc.hold(byKey('cli:alice', 'key_1')),
        oidc.hold(byKey('cli:alice', 'key_1')),
        oidc.hold(byKey('alice@example.com', 'key_2')),
        local.hold(byKey('cli:alice', 'key_3')),
      ];
      const ids = await pendingIds(oidc, 4);
      expect(warnings).toEqual([
        {
          obj: { key: 'agent', keyId: 'key_1', owner: 'cli:alice' },
          msg: expect.stringContaining(
            'gateway key "agent" is owned by the local user "cli:alice", but approvers sign in with OIDC',
          ) as string,
        },
      ]);
      for (const id of ids) await oidc.deny(id, bob, 'done');
      await Promise.all(calls);
    } finally {
      await oidc.close();
      await local.close();
    }
  });

  it('N of M: two distinct approvers from the approver groups', async () => {
    const held = gateway.hold(call(rule({ approvals_required: 2, approver_groups: ['sre'] })));
    const id = await pendingId(gateway);
    await expect(gateway.approve(id, carol)).rejects.toMatchObject({
      problem: 'not_an_approver',
      message: 'rule "risky" needs an approver in sre; carol is not',
    });
    await expect(gateway.approve(id, cliUser)).rejects.toMatchObject({ problem: 'not_an_approver' });
    const after1 = await gateway.approve(id, bob);
    expect(after1).toMatchObject({ status: 'pending', approvals: [{ by: bob }] });
    expect(await settled(held)).toBe('pending');
    await expect(gateway.approve(id, bob)).rejects.toMatchObject({ problem: 'already_approved' });
    await gateway.approve(id, dave);
    expect(await held).toEqual({ outcome: 'approved', approvalId: id, by: [bob, dave] });
  });

  it('a decision written around the API (an ineligible approver) counts for nothing', async () => {
    const held = gateway.hold(call(rule({ approver_groups: ['sre'] })));
    const id = await pendingId(gateway);
    const view = (await gateway.get(id))!;
    await store.append({
      records: [
        {
          kind: 'approval.decided',
          exchangeId: view.exchangeId,
          sessionId: view.sessionId,
          at: Date.now(),
          data: { approvalId: id, decision: 'approve', approver: carol, reason: null, grantMs: null },
        },
      ],
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(await settled(held)).toBe('pending');
    await gateway.approve(id, bob);
    expect(await held).toMatchObject({ outcome: 'approved', by: [bob] });
  });

  it('a grant to an anonymous (loopback) caller covers only the session it was given in', async () => {
    const anonymous = { method: 'anonymous' as const, subject: 'anonymous' };
    const r = rule({ grant: '10m' });
    const first = gateway.hold(call(r, { caller: anonymous, sessionId: 'ses_agent' }));
    const id = await pendingId(gateway);
    await gateway.approve(id, bob, { grantMinutes: 5 });
    expect(await first).toMatchObject({ outcome: 'approved' });
    // The same agent session goes through on the grant…
    expect(await gateway.hold(call(r, { caller: anonymous, sessionId: 'ses_agent' }))).toMatchObject({
      outcome: 'granted',
      grant: { session: 'ses_agent' },
    });
    // …another local process, also `anonymous`, does not.
    const abort = new AbortController();
    const other = gateway.hold(call(r, { caller: anonymous, sessionId: 'ses_someone_else', signal: abort.signal }));
    expect(await settled(other)).toBe('pending');
    abort.abort();
    expect(await other).toMatchObject({ outcome: 'cancelled' });
  });

  it('a grant covers only callers who authenticated the same way', async () => {
    // Went wrong: grants matched subject and issuer only, and gateway keys and anonymous callers both have no
    // issuer: a grant to a key named like another caller covered that caller too.
    const key = { method: 'gateway_key' as const, subject: 'anonymous', keyName: 'anonymous' };
    const anonymous = { method: 'anonymous' as const, subject: 'anonymous' };
    const r = rule({ grant: '10m' });
    const first = gateway.hold(call(r, { caller: key, sessionId: 'ses_1' }));
    const id = await pendingId(gateway);
    await gateway.approve(id, bob, { grantMinutes: 5 });
    expect(await first).toMatchObject({ outcome: 'approved' });
    expect(await gateway.hold(call(r, { caller: key, sessionId: 'ses_2' }))).toMatchObject({
      outcome: 'granted',
      grant: { caller: { method: 'gateway_key' } },
    });
    const abort = new AbortController();
    const other = gateway.hold(call(r, { caller: anonymous, sessionId: 'ses_1', signal: abort.signal }));
    expect(await settled(other)).toBe('pending');
    abort.abort();
    expect(await other).toMatchObject({ outcome: 'cancelled' });
  });

  it('a grant to a gateway key covers that key only: not a new key given its name, nor the key once revoked', async () => {
    // Went wrong: a grant named a key's caller by name, and a name passes to a new key once the old one is revoked,
    // so the new key (another service, maybe another team's) went through on the old key's grant.
    const r = rule({ grant: '10m' });
    const first = await keyCaller(store, 'ci-nightly');
    const held = gateway.hold(call(r, { caller: first }));
    await gateway.approve(await pendingId(gateway), bob, { grantMinutes: 5 });
    expect(await held).toMatchObject({ outcome: 'approved' });
    expect(await gateway.hold(call(r, { caller: first }))).toMatchObject({
      outcome: 'granted',
      grant: { caller: { subject: 'ci-nightly', keyId: first.keyId } },
    });

    await revokeGatewayKey(store, 'ci-nightly', 'test');
    const second = await keyCaller(store, 'ci-nightly');
    expect(second).toMatchObject({ subject: 'ci-nightly', keyName: 'ci-nightly' });
    expect(second.keyId).not.toBe(first.keyId);
    await expectHeld(gateway, call(r, { caller: second }));
    // A call the revoked key made just before its revocation is held too: its grant ended with it.
    await expectHeld(gateway, call(r, { caller: first }));
  });

  it('a grant to a rotated key lasts as long as the key works out its overlap, and does not pass to the new key', async () => {
    const r = rule({ grant: '10m' });
    const first = await keyCaller(store, 'ci-nightly');
    const held = gateway.hold(call(r, { caller: first }));
    await gateway.approve(await pendingId(gateway), bob, { grantMinutes: 5 });
    expect(await held).toMatchObject({ outcome: 'approved' });

    const rotated = await rotateGatewayKey(store, 'ci-nightly', { overlap: '1h', rotatedBy: 'test' });
    const second = (await authenticateGatewayKey(rotated.key, (hash) => store.findGatewayKey(hash))).principal;
    // The old key still works, and so does its grant; the new key is another key: held.
    expect(await gateway.hold(call(r, { caller: first }))).toMatchObject({ outcome: 'granted' });
    await expectHeld(gateway, call(r, { caller: second }));
    // Revoked at once (a leak): its grant ends with it.
    await revokeGatewayKey(store, 'ci-nightly', 'test');
    await expectHeld(gateway, call(r, { caller: first }));
  });

  it('a grant recorded before key ids were kept stands for its key until a key of that name is revoked', async () => {
    // Such a grant names the key only. Taken for every key of that name, it would cover the next key given the name;
    // refused outright, it would hold the key it was given to. It covers the key that had the name when the call was
    // held, until a key of that name is revoked.
    const r = rule({ grant: '10m' });
    const current = await keyCaller(store, 'ci-nightly');
    const { keyId, ...asRecordedBefore } = current;
    expect(keyId).toBeDefined();
    const held = gateway.hold(call(r, { caller: asRecordedBefore }));
    await gateway.approve(await pendingId(gateway), bob, { grantMinutes: 5 });
    await held;
    const [granted] = (await store.sessionRecords('ses_1')).filter((x) => x.kind === 'approval.granted');
    expect(JSON.parse(granted!.data).caller).toEqual({ subject: 'ci-nightly', issuer: null, method: 'gateway_key' });
    expect(await gateway.hold(call(r, { caller: current }))).toMatchObject({ outcome: 'granted' });

    await revokeGatewayKey(store, 'ci-nightly', 'test');
    await expectHeld(gateway, call(r, { caller: await keyCaller(store, 'ci-nightly') }));
    await expectHeld(gateway, call(r, { caller: current }));
  });

  it('a new key given the name of the caller’s revoked key is someone else: it may not withdraw the call, and may approve it', async () => {
    // Went wrong: self-approval was judged by name, so the new key passed for the caller.
    const first = await keyCaller(store, 'ci-nightly');
    const toDeny = gateway.hold(call(rule({ approver_groups: ['sre'] }), { caller: first }));
    const denyId = await pendingId(gateway);
    const toApprove = gateway.hold(call(rule(), { caller: first }));
    const approveId = await pendingId(gateway, [denyId]);
    await revokeGatewayKey(store, 'ci-nightly', 'test');
    const second = await keyCaller(store, 'ci-nightly');

    await expect(gateway.deny(denyId, second, 'not mine to withdraw')).rejects.toMatchObject({
      problem: 'not_an_approver',
    });
    await expect(gateway.approve(approveId, first)).rejects.toMatchObject({ problem: 'self_approval' });
    await gateway.approve(approveId, second);
    expect(await toApprove).toMatchObject({ outcome: 'approved', by: [second] });
    await gateway.deny(denyId, first, 'withdrawn');
    expect(await toDeny).toMatchObject({ outcome: 'denied', reason: 'withdrawn' });
  });

  it('a grant lets the same caller through on the same rule until it expires', async () => {
    let now = Date.now();
    const c = new ApprovalCoordinator(store, { pollMs: 20, clock: () => now });
    try {
      const r = rule({ grant: '10m' });
      const first = c.hold(call(r));
      const id = await pendingId(c);
      await expect(c.approve(id, bob, { grantMinutes: 20 })).rejects.toMatchObject({
        problem: 'bad_grant',
        message: 'rule "risky" allows grants of at most 10 minutes',
      });
      await c.approve(id, bob, { grantMinutes: 5, reason: 'for this task' });
      expect(await first).toMatchObject({ outcome: 'approved' });

      now += 60_000;
      const second = await c.hold(call(r));
      expect(second).toMatchObject({
        outcome: 'granted',
        grant: { approvalId: id, rule: 'risky', caller: { subject: 'alice' }, by: [bob] },
      });
      expect((await store.sessionRecords('ses_1')).map((x) => x.kind)).toEqual([
        'approval.held',
        'approval.decided',
        'approval.granted',
        'approval.grant_used',
      ]);

      // Another caller, or another rule, is still held.
      const abort = new AbortController();
      const other = c.hold(call(r, { caller: { ...alice, subject: 'erin' }, signal: abort.signal }));
      expect(await settled(other)).toBe('pending');
      abort.abort();
      expect(await other).toMatchObject({ outcome: 'cancelled' });

      now += 5 * 60_000; // past the grant
      const abort2 = new AbortController();
      const third = c.hold(call(r, { signal: abort2.signal }));
      expect(await settled(third)).toBe('pending');
      abort2.abort();
      expect(await third).toMatchObject({ outcome: 'cancelled' });
    } finally {
      await c.close();
    }
  });

  it('a rule without grant: refuses to grant', async () => {
    const held = gateway.hold(call(rule()));
    const id = await pendingId(gateway);
    await expect(gateway.approve(id, bob, { grantMinutes: 5 })).rejects.toThrow(
      'rule "risky" allows no grants (set grant: on the rule)',
    );
    await gateway.approve(id, bob);
    await held;
  });

  it('records a client that gives up as cancelled', async () => {
    const abort = new AbortController();
    const held = gateway.hold(call(rule(), { signal: abort.signal }));
    const id = await pendingId(gateway);
    abort.abort();
    expect(await held).toEqual({ outcome: 'cancelled', approvalId: id, reason: 'the client closed the connection' });
    expect((await store.sessionRecords('ses_1')).map((r) => r.kind)).toEqual(['approval.held', 'approval.cancelled']);
    await expect(gateway.approve(id, bob)).rejects.toThrow(
      /no longer pending: cancelled \(the client closed the connection\)/,
    );
  });

  it('sees decisions made by another process on the same store within a second', async () => {
    const other = await fixture.open();
    const elsewhere = new ApprovalCoordinator(other);
    try {
      const held = gateway.hold(call(rule({ approvals_required: 2 })));
      await pendingId(gateway);
      // The other process knows of the held call from the ledger alone.
      const [pending] = await elsewhere.list({ pending: true });
      expect(pending).toMatchObject({ caller: { subject: 'alice' }, status: 'pending' });
      // Its first append also opens its chain: the view it returns still counts the decision.
      expect(await elsewhere.approve(pending!.id, bob)).toMatchObject({ status: 'pending', approvals: [{ by: bob }] });
      await gateway.approve(pending!.id, cliUser); // and one from this side
      const t0 = Date.now();
      expect(await held).toMatchObject({ outcome: 'approved', by: [bob, cliUser] });

      const again = gateway.hold(call(rule()));
      const id2 = await pendingId(gateway);
      const t1 = Date.now();
      await elsewhere.deny(id2, bob, 'decided on another replica');
      expect(await again).toMatchObject({ outcome: 'denied', reason: 'decided on another replica' });
      expect(Date.now() - t1).toBeLessThan(1000);
      expect(Date.now() - t0).toBeLessThan(5000);
      expect((await gateway.list()).map((v) => v.status).sort()).toEqual(['approved', 'denied']);
    } finally {
      await elsewhere.close();
    }
  });

  if (kind === 'postgres') {
    it('hears a decision made by another process through LISTEN/NOTIFY, long before its next poll', async () => {
      const slow = new ApprovalCoordinator(store, { pollMs: 60_000 });
      const other = await fixture.open();
      const elsewhere = new ApprovalCoordinator(other);
      try {
        const held = slow.hold(call(rule()));
        const id = await pendingId(slow);
        const t0 = Date.now();
        await elsewhere.approve(id, bob);
        expect(await held).toMatchObject({ outcome: 'approved', approvalId: id });
        expect(Date.now() - t0).toBeLessThan(2000); // the poll alone would take a minute
      } finally {
        await elsewhere.close();
        await slow.close();
      }
    });
  }

  it('a restarted gateway still knows pending approvals and active grants', async () => {
    const r = rule({ grant: '1h' });
    const held = gateway.hold(call(r));
    const id = await pendingId(gateway);
    await gateway.approve(id, bob, { grantMinutes: 30 });
    await held;
    const restarted = new ApprovalCoordinator(await fixture.open());
    try {
      expect(await restarted.hold(call(r))).toMatchObject({ outcome: 'granted' });
    } finally {
      await restarted.close();
    }
  });

  it('calls still held when the gateway closes end as cancelled', async () => {
    const held = gateway.hold(call(rule()));
    await pendingId(gateway);
    await gateway.close();
    expect(await held).toMatchObject({ outcome: 'cancelled', reason: 'the gateway is shutting down' });
  });

  it('a call being held as the gateway closes ends as cancelled too, not never', async () => {
    // Went wrong (a CI run on PostgreSQL timed out here): close() ended the calls it found waiting; a call whose held
    // record was still being written registered its waiter after that, and nothing ever answered it.
    const held = gateway.hold(call(rule()));
    await gateway.close();
    expect(await held).toMatchObject({ outcome: 'cancelled', reason: 'the gateway is shutting down' });
  }, 10_000);

  it('close() returns once every call it was holding has its outcome and its end is recorded', async () => {
    // Went wrong: close() returned while a call's held record was still being written; the call was cancelled (and its
    // cancellation written) only after, when the gateway had gone on to cut its client and close the store: the client
    // never had its 503, and the exchange was recorded as interrupted.
    const outcomes = new Map<string, HoldOutcome['outcome']>();
    const track = (name: string, p: Promise<HoldOutcome>): void => void p.then((o) => outcomes.set(name, o.outcome));
    const abort = new AbortController();
    track('left', gateway.hold(call(rule(), { signal: abort.signal })));
    const leftId = await pendingId(gateway);
    track('waiting', gateway.hold(call(rule())));
    const waitingId = await pendingId(gateway, [leftId]);
    abort.abort();
    track('arriving', gateway.hold(call(rule())));
    await gateway.close();
    expect(outcomes).toEqual(
      new Map([
        ['left', 'cancelled'],
        ['waiting', 'cancelled'],
        ['arriving', 'cancelled'],
      ]),
    );
    await store.close(); // what the gateway does next
    const restarted = new ApprovalCoordinator(await fixture.open());
    try {
      // The call arriving as the gateway closed was never held: nothing of it is pending.
      const ended = (await restarted.list()).map((a) => [a.id, a.status, a.endReason]);
      expect(ended.sort()).toEqual(
        [
          [leftId, 'cancelled', 'the client closed the connection'],
          [waitingId, 'cancelled', 'the gateway is shutting down'],
        ].sort(),
      );
    } finally {
      await restarted.close();
    }
  });

  it('a hold read back from the ledger before its own append answers is one approval: decisions made meanwhile count', async () => {
    // Went wrong (about 1 run in 12 on PostgreSQL, under load): the held record committed and another read listed it
    // before this connection's answer arrived; the hold then replaced the approval it had read with a new empty one.
    // A decision made in between went to the replaced one: its grant was never made, or the call was held forever.
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    let slowHeld = true;
    const ledger: ApprovalLedger = {
      append: async (batch) => {
        const stored = await store.append(batch);
        if (slowHeld && batch.records[0]!.kind === 'approval.held') {
          slowHeld = false;
          await answered;
        }
        return stored;
      },
      recordsOfKinds: (kinds, since, limit) => store.recordsOfKinds(kinds, since, limit),
    };
    const c = new ApprovalCoordinator(ledger, { pollMs: 50 });
    try {
      const r = rule({ grant: '10m' });
      const first = c.hold(call(r));
      const id = await pendingId(c);
      const decided = await c.approve(id, bob, { grantMinutes: 5 });
      expect(decided).toMatchObject({ status: 'approved', grant: { approvalId: id } });
      answer();
      expect(
        await Promise.race([first, new Promise((r) => setTimeout(() => r('still held after 5 s'), 5000))]),
      ).toEqual({ outcome: 'approved', approvalId: id, by: [bob] });
      expect(await c.hold(call(r))).toMatchObject({ outcome: 'granted', grant: { approvalId: id } });
    } finally {
      answer();
      await c.close();
    }
  });

  it('a grant does not let through a call whose client has already gone, nor records its use', async () => {
    // Went wrong: the grant was checked without looking at the client, and its use was recorded for a call that was
    // then sent upstream for nobody.
    const r = rule({ grant: '1h' });
    const first = gateway.hold(call(r));
    await gateway.approve(await pendingId(gateway), bob, { grantMinutes: 30 });
    await first;
    const gone = new AbortController();
    gone.abort();
    expect(await gateway.hold(call(r, { signal: gone.signal }))).toEqual({
      outcome: 'cancelled',
      approvalId: '',
      reason: 'the client closed the connection',
    });
    expect((await store.recordsOfKinds(['approval.grant_used', 'approval.held'], 0, 100)).map((x) => x.kind)).toEqual([
      'approval.held',
    ]);
  });

  describe('webhook notifications at close()', () => {
    let hook: RecordingHttpServer;
    beforeEach(async () => {
      hook = await startRecordingHttpServer();
    });
    afterEach(async () => {
      await hook.close();
    });

    /** The `approval.notified` records a gateway started on the same database reads after this one closed. */
    async function notifiedAfterRestart(): Promise<unknown[]> {
      const restarted = await fixture.open();
      return (await restarted.recordsOfKinds(['approval.notified'], 0, 100)).map((r) => JSON.parse(r.data) as unknown);
    }

    it('close() waits for a slow webhook and records its answer before the store closes', async () => {
      // Went wrong: close() did not wait for notifications; the webhook's answer came after the gateway had closed the
      // store, and its `approval.notified` record was lost (only logged).
      hook.reply = async () => (await new Promise((r) => setTimeout(r, 400)), { status: 200 });
      const notifier = new ApprovalNotifier(
        approvalsConfigSchema.parse({ webhooks: [{ name: 'ops', url: hook.url }] }),
      );
      const c = new ApprovalCoordinator(store, { pollMs: 50, notifier });
      const held = c.hold(call(rule()));
      const id = await pendingId(c);
      while (hook.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
      await c.close();
      expect(await held).toMatchObject({ outcome: 'cancelled' });
      await store.close(); // what the gateway does next
      expect(await notifiedAfterRestart()).toEqual([
        { approvalId: id, webhook: 'ops', ok: true, attempts: 1, status: 200, error: null },
      ]);
    });

    it('close() stops a webhook that does not answer within its bound, and records that it was stopped', async () => {
      hook.reply = () => ({ status: 200, hang: true });
      const notifier = new ApprovalNotifier(
        approvalsConfigSchema.parse({ webhooks: [{ name: 'ops', url: hook.url, timeout: '1m' }] }),
      );
      const c = new ApprovalCoordinator(store, { pollMs: 50, notifier });
      c.hold(call(rule())).catch(() => undefined);
      const id = await pendingId(c);
      while (hook.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
      const started = Date.now();
      await c.close(300);
      const took = Date.now() - started;
      expect(took).toBeGreaterThanOrEqual(250);
      expect(took).toBeLessThan(3000);
      await store.close();
      expect(await notifiedAfterRestart()).toEqual([
        {
          approvalId: id,
          webhook: 'ops',
          ok: false,
          attempts: 1,
          status: null,
          error: 'stopped: the gateway shut down before the webhook answered',
        },
      ]);
    });
  });
});
