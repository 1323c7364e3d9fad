/**
 * Approvers acting through the admin REST API: a held call is listed, approved (and goes on to Claude) or denied
 * (and the client gets 403 with the approver's reason).
 */
import Anthropic, { APIError } from '@anthropic-ai/sdk';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { pino } from 'pino';
import { validateConfig } from '../../src/config/load-config.js';
import { startGateway } from '../../src/gateway.js';
import { createGatewayKey, revokeGatewayKey } from '../../src/identity/key-admin.js';
import { CLIENT_KEY, filesContaining, startHarness, tempDir, type Harness } from '../support/gateway-harness.js';
import { until } from '../support/until.js';

const TOKEN = 'approver-token-0123456789abcdefghijklmnop';
let h: Harness;

beforeAll(async () => {
  process.env.VIGIL_TEST_ADMIN_TOKEN = TOKEN;
  h = await startHarness((upstream) => ({
    connections: [
      {
        name: 'anthropic',
        upstream,
        credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
        approvals: [
          { name: 'large answers', action: 'hold', when: { max_tokens_above: 4096 }, timeout: '30s', grant: '1h' },
        ],
      },
    ],
    admin: { tokens: [{ name: 'oncall', role: 'admin', token: { env: 'VIGIL_TEST_ADMIN_TOKEN' } }] },
  }));
});
afterAll(() => h?.close());

const api = async (path: string, init: RequestInit = {}) => {
  const res = await fetch(`${h.gateway.adminUrl}/api/v1${path}`, {
    ...init,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...(init.headers ?? {}) },
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
};

async function held(): Promise<{ id: string; rule: { name: string } }> {
  for (let i = 0; i < 200; i++) {
    const { json } = await api('/approvals');
    expect(json.next_cursor).toBeNull(); // every list's shape; this one is never paged
    const items = json.items as Array<{ id: string; rule: { name: string } }>;
    if (items.length) return items[0]!;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('nothing held');
}

const bigAsk = (text: string, apiKey = CLIENT_KEY) =>
  new Anthropic({ baseURL: h.url, apiKey, maxRetries: 0 }).messages.create({
    model: 'claude-haiku-4-5',
    max_tokens: 8000,
    messages: [{ role: 'user', content: text }],
  });

it('approve through the API: the held call goes on to Claude', async () => {
  const call = bigAsk('please approve me');
  const approval = await held();
  expect(approval.rule.name).toBe('large answers');
  const decided = await api(`/approvals/${approval.id}/approve`, {
    method: 'POST',
    body: JSON.stringify({ reason: 'budget ok' }),
  });
  expect(decided.status).toBe(200);
  const msg = await call;
  expect(msg.content[0]).toMatchObject({ text: 'Echo: please approve me' });
  expect((await api(`/approvals/${approval.id}`)).json).toMatchObject({ id: approval.id, status: 'approved' });
});

it('deny through the API: the client gets 403 with the reason; a denial needs one', async () => {
  const call = bigAsk('please deny me').catch((e: unknown) => e);
  const approval = await held();
  expect((await api(`/approvals/${approval.id}/deny`, { method: 'POST', body: '{}' })).status).toBe(400);
  const denied = await api(`/approvals/${approval.id}/deny`, {
    method: 'POST',
    body: JSON.stringify({ reason: 'not today' }),
  });
  expect(denied).toMatchObject({ status: 200, json: { status: 'denied', released: false, grant: null } });
  const err = (await call) as APIError;
  expect(err).toBeInstanceOf(Anthropic.PermissionDeniedError);
  expect(err.message).toContain('not today');
  expect((await api(`/approvals/${approval.id}/approve`, { method: 'POST', body: '{}' })).status).toBe(400); // already decided
});

it('a grant to a gateway key does not carry over to a new key given its name after it was revoked', async () => {
  // Went wrong: grants named a key's caller by name only, and a name is free again once its key is revoked: the new
  // key went through on the old key's grant, without anyone approving it.
  const keyFor = async () =>
    (
      await createGatewayKey(
        h.gateway.store,
        { name: 'deploy-bot', owner: 'platform', connections: [], createdBy: 'test' },
        ['anthropic'],
      )
    ).key;
  const first = await keyFor();
  const call = bigAsk('first key, first call', first);
  const approval = await held();
  const approved = await api(`/approvals/${approval.id}/approve`, {
    method: 'POST',
    body: JSON.stringify({ reason: 'for this deploy', grant_minutes: 30 }),
  });
  expect(approved.status).toBe(200);
  // The API says what the approval did, as `vigil approvals approve --json` does (it used to drop the grant).
  expect(approved.json).toMatchObject({
    id: approval.id,
    status: 'approved',
    released: true,
    grant: { minutes: 30, connection: 'anthropic', caller: { subject: 'deploy-bot' }, session: null },
  });
  await call;
  // The grant spares the same key the next hold.
  expect((await bigAsk('first key, second call', first)).content[0]).toMatchObject({
    text: 'Echo: first key, second call',
  });

  await revokeGatewayKey(h.gateway.store, 'deploy-bot', 'test');
  const second = await keyFor();
  const refused = bigAsk('second key, same name', second).catch((e: unknown) => e);
  const again = await held();
  expect(again).toMatchObject({ caller: { subject: 'deploy-bot', keyId: expect.stringMatching(/^key_/) } });
  expect(again.id).not.toBe(approval.id);
  await api(`/approvals/${again.id}/deny`, { method: 'POST', body: JSON.stringify({ reason: 'a new key' }) });
  expect(await refused).toBeInstanceOf(Anthropic.PermissionDeniedError);
});

it('without identity, the local admin approves through the API (it is not taken for the anonymous caller)', async () => {
  // Went wrong: the API's caller and every local proxy caller were both `anonymous`, so an approval through the
  // API (and the web UI) was refused as self-approval; only the CLI could approve.
  const local = await startHarness((upstream) => ({
    connections: [
      {
        name: 'anthropic',
        upstream,
        credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
        approvals: [{ name: 'large answers', action: 'hold', when: { max_tokens_above: 4096 }, timeout: '30s' }],
      },
    ],
  }));
  try {
    const adminApi = `${local.gateway.adminUrl}/api/v1`;
    const call = new Anthropic({ baseURL: local.url, apiKey: 'unused', maxRetries: 0 }).messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 8000,
      messages: [{ role: 'user', content: 'approve me locally' }],
    });
    const id = await until('a held call', async () => {
      const { items } = (await (await fetch(`${adminApi}/approvals`)).json()) as { items: Array<{ id: string }> };
      return items[0]?.id;
    });
    const res = await fetch(`${adminApi}/approvals/${id}/approve`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      status: 'approved',
      approvals: [{ by: { method: 'local_user', subject: 'admin-api:localhost' } }],
    });
    expect((await call).content[0]).toMatchObject({ text: 'Echo: approve me locally' });

    // Went wrong: the same local admin's reads were logged as `anonymous` (the proxy's local callers' name) while
    // its decisions said `local_user admin-api:localhost`, so one person went by two names in the audit trail.
    const session = await until('the approved call recorded', async () => {
      const { items } = (await (await fetch(`${adminApi}/sessions`)).json()) as { items: Array<{ id: string }> };
      return items[0]?.id;
    });
    expect((await fetch(`${adminApi}/sessions/${session}`)).status).toBe(200);
    const log = (await (await fetch(`${adminApi}/access-log`)).json()) as {
      items: Array<{ data: { what: string; actor: unknown } }>;
    };
    expect(new Set(log.items.map((e) => e.data.what))).toEqual(new Set(['approval', 'session']));
    for (const e of log.items) expect(e.data.actor).toEqual({ method: 'local_user', subject: 'admin-api:localhost' });
    const me = (await (await fetch(`${adminApi}/whoami`)).json()) as { reader: unknown };
    expect(me.reader).toEqual({ method: 'local_user', subject: 'admin-api:localhost' });
  } finally {
    await local.close();
  }
});

it('a webhook URL carrying user:password@ stops start-up, and its password is neither shown, logged nor recorded', async () => {
  // Went wrong: fetch refused the URL with an error quoting it whole, password and all, which was logged and recorded
  // for good on the held call's session (approval.notified).
  process.env.VIGIL_TEST_HOOK_URL = 'https://hookuser:HOOK-PASSWORD-123@127.0.0.1:1/vigil';
  const dataDir = tempDir();
  const logged: string[] = [];
  const config = validateConfig({
    listen: '127.0.0.1:0',
    data_dir: dataDir,
    connections: [{ name: 'prod', upstream: h.fake.url, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } }],
    approvals: { webhooks: [{ name: 'oncall', url: { env: 'VIGIL_TEST_HOOK_URL' }, retries: 0 }] },
  });
  try {
    const started = startGateway(config, {
      log: pino({ level: 'debug' }, { write: (line: string) => void logged.push(line) }),
    });
    const err = (await started.then(
      async (g) => (await g.close(), null),
      (e: unknown) => e,
    )) as Error | null;
    expect(err?.message).toContain(
      'approvals.webhooks[0] (oncall).url: the URL in VIGIL_TEST_HOOK_URL must not carry credentials (user:password@): ' +
        'send them in a header instead',
    );
    expect(err?.message).not.toContain('HOOK-PASSWORD-123');
    expect(logged.filter((l) => l.includes('HOOK-PASSWORD-123'))).toEqual([]);
    expect(filesContaining(dataDir, 'HOOK-PASSWORD-123')).toEqual([]);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
