/**
 * Gateway keys through the admin API: an admin creates a key for a service (shown once), the service calls with it
 * through the official SDK, the key is listed and revoked, and each step is a ledger record naming who asked — streamed
 * to the SIEM with that actor. Auditors and users may not manage keys; mistakes get 400/404 saying what to fix.
 */
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KeyCreatedData, KeyRevokedData } from '../../src/store/audit-store.js';
import { auditEventOf } from '../../src/export/record-events.js';
import { filesContaining, startHarness, type Harness } from '../support/gateway-harness.js';

const ADMIN_TOKEN = 'vigil-test-admin-token-0123456789-abcdef';
const AUDITOR_TOKEN = 'vigil-test-auditor-token-0123456789-abcdef';

let h: Harness;
beforeAll(async () => {
  process.env.VIGIL_TEST_KEYS_ADMIN = ADMIN_TOKEN;
  process.env.VIGIL_TEST_KEYS_AUDITOR = AUDITOR_TOKEN;
  h = await startHarness((up) => ({
    connections: [
      { name: 'anthropic', upstream: up, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
      { name: 'restricted', upstream: up, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
      // Admits one caller, by key name: a rotated key must keep its place on such lists.
      { name: 'deploys', upstream: up, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' }, allow: [{ key: 'deployer' }] },
    ],
    admin: {
      tokens: [
        { name: 'provisioner', role: 'admin', token: { env: 'VIGIL_TEST_KEYS_ADMIN' } },
        { name: 'soc', role: 'auditor', token: { env: 'VIGIL_TEST_KEYS_AUDITOR' } },
      ],
    },
  }));
});
afterAll(() => h?.close());

const api = (path: string, init: { method?: string; body?: unknown; token?: string } = {}) =>
  fetch(`${h.gateway.adminUrl}/api/v1${path}`, {
    method: init.method ?? 'GET',
    headers: {
      'content-type': 'application/json',
      ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
    },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });

const ask = (baseURL: string, apiKey: string, session: string) =>
  new Anthropic({ baseURL, apiKey, maxRetries: 0 }).messages.create(
    { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'hello' }] },
    { headers: { 'x-vigil-session': session } },
  );

describe('gateway keys through the admin API', () => {
  it('creates a key shown once, lists it, revokes it, and records who did each', async () => {
    const created = await api('/keys', {
      method: 'POST',
      token: ADMIN_TOKEN,
      body: { name: 'ci-nightly', connections: ['anthropic'], expires: '30d', owner: 'platform@example.com' },
    });
    expect(created.status).toBe(201);
    const body = (await created.json()) as { key: string; id: string; name: string; owner: string };
    expect(body).toMatchObject({
      name: 'ci-nightly',
      owner: 'platform@example.com',
      connections: ['anthropic'],
      id: expect.stringMatching(/^key_[0-9a-f]{16}$/),
      expiresAt: expect.any(Number),
      revokedAt: null,
    });
    expect(body).not.toHaveProperty('hash');

    // The service calls with it, on its connection only.
    await ask(h.url, body.key, 'ci-run');
    const [x] = await h.session('ci-run', 1);
    expect(x!.caller).toMatchObject({ method: 'gateway_key', subject: 'ci-nightly', owner: 'platform@example.com' });
    const elsewhere = await ask(`${h.url}/c/restricted`, body.key, 'ci-elsewhere').catch((e: unknown) => e);
    expect(elsewhere).toBeInstanceOf(Anthropic.PermissionDeniedError);

    const listed = (await (await api('/keys', { token: ADMIN_TOKEN })).json()) as {
      items: Array<Record<string, unknown>>;
    };
    expect(listed.items).toEqual([
      expect.objectContaining({ id: body.id, name: 'ci-nightly', state: 'live', ledgerMismatch: [] }),
    ]);
    expect(JSON.stringify(listed)).not.toContain(body.key);

    const revoked = await api('/keys/ci-nightly/revoke', { method: 'POST', token: ADMIN_TOKEN });
    expect(revoked.status).toBe(200);
    expect(await revoked.json()).toMatchObject({ id: body.id, revokedAt: expect.any(Number) });
    const refused = await ask(h.url, body.key, 'ci-after').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((refused as Error).message).toMatch(/revoked/);

    // On the ledger, each naming the admin token that asked; as SIEM events, with it as the actor.
    const [made] = await h.gateway.store.recordsOfKinds(['key.created'], 0, 10);
    const [gone] = await h.gateway.store.recordsOfKinds(['key.revoked'], 0, 10);
    expect(JSON.parse(made!.data) as KeyCreatedData).toMatchObject({
      createdBy: 'admin-token:provisioner',
      actor: { method: 'admin_token', subject: 'provisioner' },
    });
    expect(JSON.parse(gone!.data) as KeyRevokedData).toMatchObject({ revokedBy: 'admin-token:provisioner' });
    expect(auditEventOf(made!, 'gw')).toMatchObject({
      type: 'key.created',
      actor: { method: 'admin_token', subject: 'provisioner' },
      attributes: { key_name: 'ci-nightly', owner: 'platform@example.com', connections: 'anthropic' },
    });
    expect(auditEventOf(gone!, 'gw')).toMatchObject({ type: 'key.revoked', actor: { subject: 'provisioner' } });
    // The key itself is nowhere in the data directory: only its hash.
    expect(filesContaining(h.dataDir, body.key)).toEqual([]);
  });

  it('names whoever asked as the owner when none is given, and says what is wrong with a request', async () => {
    const made = await api('/keys', { method: 'POST', token: ADMIN_TOKEN, body: { name: 'local-tool' } });
    expect(made.status).toBe(201);
    expect(await made.json()).toMatchObject({ owner: 'admin-token:provisioner', connections: [] });

    const problems: Array<[unknown, number, RegExp]> = [
      [{}, 400, /a key needs a name/],
      [{ name: 'has space' }, 400, /must be 1-63 characters/],
      [
        { name: 'x', connections: ['nowhere'] },
        400,
        /no connection named "nowhere" \(configured: anthropic, restricted, deploys\)/,
      ],
      [{ name: 'x', connections: 'anthropic' }, 400, /connections must be an array of connection names/],
      [{ name: 'x', expires: 'soon' }, 400, /invalid key lifetime "soon"/],
      [{ name: 'local-tool' }, 400, /a live key named "local-tool" exists: revoke it first/],
    ];
    for (const [body, status, message] of problems) {
      const res = await api('/keys', { method: 'POST', token: ADMIN_TOKEN, body });
      expect(res.status).toBe(status);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(message);
    }
    const unknown = await api('/keys/nobody/revoke', { method: 'POST', token: ADMIN_TOKEN });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({
      error: { message: expect.stringMatching(/no live key named "nobody"/) },
    });
  });

  it('rotates a key: the new one works at once under the same name, the old one through the overlap; revoking the name ends both', async () => {
    const made = await api('/keys', { method: 'POST', token: ADMIN_TOKEN, body: { name: 'deployer', expires: '7d' } });
    const old = (await made.json()) as { key: string; id: string; expiresAt: number; createdAt: number };
    await ask(`${h.url}/c/deploys`, old.key, 'deploy-1');

    const res = await api('/keys/deployer/rotate', { method: 'POST', token: ADMIN_TOKEN, body: { overlap: '2h' } });
    expect(res.status).toBe(201);
    const rotated = (await res.json()) as {
      key: string;
      id: string;
      createdAt: number;
      expiresAt: number;
      replaced: { id: string; revokedAt: number };
    };
    expect(rotated).toMatchObject({ name: 'deployer', owner: 'admin-token:provisioner', revokedAt: null });
    expect(rotated.key).not.toBe(old.key);
    expect(rotated.replaced).toEqual({ id: old.id, revokedAt: rotated.createdAt + 2 * 3_600_000 });
    // The lifetime the old key was given, from now.
    expect(rotated.expiresAt - rotated.createdAt).toBe(old.expiresAt - old.createdAt);

    // Both keys call, as the same caller on the allow list, each recorded with its own key id.
    await ask(`${h.url}/c/deploys`, rotated.key, 'deploy-2');
    await ask(`${h.url}/c/deploys`, old.key, 'deploy-3');
    const callers = [...(await h.session('deploy-2', 1)), ...(await h.session('deploy-3', 1))].map((x) => x.caller);
    expect(callers).toEqual([
      expect.objectContaining({ subject: 'deployer', keyId: rotated.id }),
      expect.objectContaining({ subject: 'deployer', keyId: old.id }),
    ]);
    const listed = (await (await api('/keys', { token: ADMIN_TOKEN })).json()) as {
      items: Array<{ id: string; state: string; revokedAt: number | null }>;
    };
    expect(listed.items.filter((k) => k.id === old.id || k.id === rotated.id)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ id: old.id, state: 'live', revokedAt: rotated.replaced.revokedAt }),
        expect.objectContaining({ id: rotated.id, state: 'live', revokedAt: null }),
      ]),
    );

    // On the ledger and to the SIEM: which key replaced which.
    const created = (await h.gateway.store.recordsOfKinds(['key.created'], 0, 100)).at(-1)!;
    const revokedRecord = (await h.gateway.store.recordsOfKinds(['key.revoked'], 0, 100)).at(-1)!;
    expect(auditEventOf(created, 'gw')!.attributes).toMatchObject({ key_id: rotated.id, rotates: old.id });
    expect(auditEventOf(revokedRecord, 'gw')!.attributes).toMatchObject({
      key_id: old.id,
      rotated_to: rotated.id,
      revoked_at: rotated.replaced.revokedAt,
    });

    const problems: Array<[string, unknown, number, RegExp]> = [
      ['deployer', { overlap: 'soon' }, 400, /invalid overlap "soon"/],
      ['deployer', { overlap: '45d' }, 400, /longer than 30d/],
      ['nobody', {}, 404, /no live key named "nobody" to rotate/],
    ];
    for (const [name, body, status, message] of problems) {
      const r = await api(`/keys/${name}/rotate`, { method: 'POST', token: ADMIN_TOKEN, body });
      expect(r.status).toBe(status);
      expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(message);
    }

    // A leak found during the overlap: revoking the name stops both keys at once.
    const revoked = await api('/keys/deployer/revoke', { method: 'POST', token: ADMIN_TOKEN });
    expect(await revoked.json()).toMatchObject({ id: rotated.id, alsoRevoked: [old.id] });
    for (const key of [old.key, rotated.key]) {
      const refused = await ask(`${h.url}/c/deploys`, key, 'deploy-after').catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(Anthropic.AuthenticationError);
    }
    expect(filesContaining(h.dataDir, rotated.key)).toEqual([]);
    expect(await h.gateway.store.verify()).toMatchObject({ ok: true, problems: [] });
  });

  it('is for admins only', async () => {
    for (const res of [
      await api('/keys', { token: AUDITOR_TOKEN }),
      await api('/keys', { method: 'POST', token: AUDITOR_TOKEN, body: { name: 'sneaky' } }),
      await api('/keys/local-tool/revoke', { method: 'POST', token: AUDITOR_TOKEN }),
      await api('/keys/local-tool/rotate', { method: 'POST', token: AUDITOR_TOKEN }),
    ]) {
      expect(res.status).toBe(403);
      expect(await res.json()).toMatchObject({
        error: { message: 'this needs the admin role; you are auditor (see admin.roles)' },
      });
    }
    const anonymous = await api('/keys');
    expect(anonymous.status).toBe(401);
    const listed = (await (await api('/keys', { token: ADMIN_TOKEN })).json()) as { items: Array<{ name: string }> };
    expect(listed.items.map((k) => k.name)).not.toContain('sneaky');
  });
});
