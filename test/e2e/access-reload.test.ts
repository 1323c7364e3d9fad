/**
 * Reloading who may call and who may read, without a restart: OIDC issuers and anonymous callers (`identity`), and
 * the admin API's tokens and groups per role (`admin.tokens`, `admin.roles`). A leaked admin token or a person leaving
 * the auditors must not wait for a restart that cuts every stream. A real OpenID provider, the official SDK.
 */
import Anthropic, { APIError } from '@anthropic-ai/sdk';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigReloadedData } from '../../src/config/config-changes.js';
import type { VigilConfigInput } from '../../src/config/config-schema.js';
import { validateConfig } from '../../src/config/load-config.js';
import { ConfigError } from '../../src/errors.js';
import { auditEventOf } from '../../src/export/record-events.js';
import { startHarness, tempDir, type Harness } from '../support/gateway-harness.js';
import { startOidcProvider, type OidcTestProvider } from '../support/oidc-provider.js';
import { until } from '../support/until.js';

const TOKEN_A = 'admin-token-a-0123456789abcdef0123456789';
const TOKEN_B = 'admin-token-b-fedcba9876543210fedcba9876';

let idp: OidcTestProvider;
let h: Harness | undefined;

beforeAll(async () => {
  idp = await startOidcProvider();
  process.env.VIGIL_TEST_ADMIN_A = TOKEN_A;
  process.env.VIGIL_TEST_ADMIN_B = TOKEN_B;
  process.env.VIGIL_TEST_ADMIN_SHORT = 'too-short';
});
afterAll(async () => {
  await idp?.close();
});
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** A gateway started with `input`; `reload(next)` reloads it with `next` (listener, data dir and upstream kept). */
async function gatewayWith(input: Partial<VigilConfigInput>) {
  const gw = await startHarness(() => input);
  h = gw;
  const connections: VigilConfigInput['connections'] = [
    {
      name: 'anthropic',
      upstream: gw.fake.url,
      credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
      upstream_timeout: '5s',
    },
  ];
  return {
    h: gw,
    reload: (next: Partial<VigilConfigInput>) =>
      gw.gateway.reload(validateConfig({ listen: '127.0.0.1:0', data_dir: gw.dataDir, connections, ...next })),
  };
}

const ask = (baseURL: string, auth: { apiKey?: string; authToken?: string }, session: string) =>
  new Anthropic({ baseURL, maxRetries: 0, apiKey: null, authToken: null, ...auth }).messages.create(
    { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'hello' }] },
    { headers: { 'x-vigil-session': session } },
  );

async function refused(p: Promise<unknown>): Promise<APIError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(APIError);
  return err as APIError;
}

async function reloadRecords(g: Harness): Promise<ConfigReloadedData[]> {
  const records = await g.gateway.store.recordsOfKinds(['config.reloaded'], 0, 100);
  return records.map((r) => JSON.parse(r.data) as ConfigReloadedData);
}

/** The admin API's answer to `GET /api/v1/whoami` with `token`: its status and the role it gives. */
async function whoami(g: Harness, token: string): Promise<{ status: number; role: string | undefined }> {
  const res = await fetch(`${g.gateway.adminUrl}/api/v1/whoami`, { headers: { authorization: `Bearer ${token}` } });
  const body = (await res.json()) as { role?: string };
  return { status: res.status, role: body.role };
}

const issuerOf = (provider: OidcTestProvider) => ({
  issuer: provider.issuer,
  audience: 'vigil',
  groups_claim: 'groups',
});

describe('reloading identity', () => {
  it('trusts an issuer added by a reload, refuses anonymous callers it now refuses, and trusts it no more once removed', async () => {
    const { h, reload } = await gatewayWith({});
    const token = await idp.mintToken({ email: 'ana@example.com' }, { subject: 'ana' });
    // No identity: anonymous loopback callers are let in, OIDC tokens are not accepted.
    await ask(h.url, { apiKey: 'placeholder' }, 'anon-before');
    const notYet = await refused(ask(h.url, { authToken: token }, 'oidc-before'));
    expect(notYet.status).toBe(401);
    expect(notYet.message).toMatch(/no identity\.oidc issuer is configured/);

    const changes = await reload({ identity: { oidc: [issuerOf(idp)] } });
    expect(changes).toMatchObject({ identity: true, restartNeeded: [] });
    // The issuer's token is accepted and recorded as its caller; anonymous callers are refused now that OIDC is on
    // (identity.anonymous defaults to never with an issuer).
    await ask(h.url, { authToken: token }, 'oidc-after');
    const [x] = await h.session('oidc-after', 1);
    expect(x!.caller).toMatchObject({ method: 'oidc', subject: 'ana', issuer: idp.issuer });
    expect((await refused(ask(h.url, { apiKey: 'placeholder' }, 'anon-after'))).status).toBe(401);

    // On the ledger, and to the SIEM: the issuers trusted now and who is admitted without a credential.
    const [record] = await reloadRecords(h);
    expect(record!.identity).toEqual({ issuers: [{ issuer: idp.issuer, audience: 'vigil' }], anonymous: 'never' });
    const [stored] = await h.gateway.store.recordsOfKinds(['config.reloaded'], 0, 1);
    expect(auditEventOf(stored!, 'gw')!.attributes).toMatchObject({
      identity_issuers: idp.issuer,
      anonymous: 'never',
      admin_tokens: null,
    });

    // Back to no identity: the token is refused again, anonymous loopback callers are let in.
    await reload({});
    expect((await refused(ask(h.url, { authToken: token }, 'oidc-removed'))).status).toBe(401);
    await ask(h.url, { apiKey: 'placeholder' }, 'anon-again');
    expect((await reloadRecords(h))[1]!.identity).toEqual({ issuers: [], anonymous: 'loopback' });
    expect(await h.gateway.store.verify()).toMatchObject({ ok: true, problems: [] });
  });

  it('a second issuer added keeps the first one trusted, with the keys it already fetched', async () => {
    const other = await startOidcProvider();
    try {
      const { h, reload } = await gatewayWith({ identity: { oidc: [issuerOf(idp)] } });
      const first = await idp.mintToken({}, { subject: 'first' });
      await ask(h.url, { authToken: first }, 'first-before');
      const second = await other.mintToken({}, { subject: 'second' });
      expect((await refused(ask(h.url, { authToken: second }, 'second-before'))).status).toBe(401);

      // The first provider is down as the second is added: its keys, fetched before the reload, still verify its
      // tokens (a new verifier that asked it again would lock its callers out until it is back).
      await idp.stop();
      try {
        await reload({ identity: { oidc: [issuerOf(idp), issuerOf(other)] } });
        await ask(h.url, { authToken: first }, 'first-after');
      } finally {
        await idp.start();
      }
      await ask(h.url, { authToken: second }, 'second-after');
      expect((await h.session('second-after', 1))[0]!.caller).toMatchObject({
        subject: 'second',
        issuer: other.issuer,
      });
    } finally {
      await other.close();
    }
  });
});

describe('reloading the web UI’s sign-in and the gateway’s public address', () => {
  it('offers the provider a reload names, lets the page reach it, and writes results URLs with the new address', async () => {
    const { h, reload } = await gatewayWith({ identity: { oidc: [issuerOf(idp)] } });
    const uiConfig = async () => (await (await fetch(`${h.gateway.adminUrl}/api/v1/ui-config`)).json()) as object;
    const csp = async () => (await fetch(`${h.gateway.adminUrl}/ui/`)).headers.get('content-security-policy');
    expect(await uiConfig()).toMatchObject({ sign_in: null });
    expect(await csp()).not.toContain(idp.issuer);
    const token = await idp.mintToken({}, { subject: 'batcher' });
    const client = new Anthropic({ baseURL: h.url, authToken: token, apiKey: null, maxRetries: 0 });
    const batch = () =>
      client.messages.batches.create({
        requests: [
          {
            custom_id: 'a',
            params: { model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'in a batch' }] },
          },
        ],
      });
    expect((await batch()).results_url).toMatch(new RegExp(`^${h.url}/v1/messages/batches/`));

    const changes = await reload({
      identity: { oidc: [issuerOf(idp)] },
      public_url: 'https://claude-gw.example.com',
      admin: { ui: { oidc: { issuer: idp.issuer, client_id: 'vigil-ui', name: 'Example SSO' } } },
    });
    expect(changes).toMatchObject({ adminAccess: true, publicUrl: true, restartNeeded: [] });
    expect(await uiConfig()).toMatchObject({
      sign_in: { name: 'Example SSO', issuer: idp.issuer, client_id: 'vigil-ui' },
    });
    expect(await csp()).toContain(`connect-src 'self' ${idp.issuer};`);
    expect((await batch()).results_url).toMatch(/^https:\/\/claude-gw\.example\.com\/v1\/messages\/batches\//);
    const [record] = await reloadRecords(h);
    expect(record).toMatchObject({
      publicUrl: 'https://claude-gw.example.com',
      admin: { uiSignIn: { issuer: idp.issuer, clientId: 'vigil-ui' } },
    });
  });
});

describe('reloading who may use the admin API', () => {
  const adminWith = (tokens: Array<{ name: string; role: 'admin' | 'auditor'; env: string }>, auditors: string[]) => ({
    identity: { oidc: [issuerOf(idp)], anonymous: 'loopback' as const },
    admin: {
      tokens: tokens.map((t) => ({ name: t.name, role: t.role, token: { env: t.env } })),
      roles: { auditor: auditors },
    },
  });

  it('a token removed by a reload is refused at once, a new one admitted, and a group no longer an auditor role reads as a user', async () => {
    const { h, reload } = await gatewayWith(
      adminWith([{ name: 'ops', role: 'admin', env: 'VIGIL_TEST_ADMIN_A' }], ['sec']),
    );
    const person = await idp.mintToken({ groups: ['sec'] }, { subject: 'sam' });
    expect(await whoami(h, TOKEN_A)).toEqual({ status: 200, role: 'admin' });
    expect(await whoami(h, TOKEN_B)).toMatchObject({ status: 401 });
    expect(await whoami(h, person)).toEqual({ status: 200, role: 'auditor' });

    const changes = await reload(adminWith([{ name: 'soc', role: 'auditor', env: 'VIGIL_TEST_ADMIN_B' }], []));
    expect(changes).toMatchObject({ adminAccess: true, identity: false, restartNeeded: [] });
    expect(await whoami(h, TOKEN_A)).toMatchObject({ status: 401 });
    expect(await whoami(h, TOKEN_B)).toEqual({ status: 200, role: 'auditor' });
    expect(await whoami(h, person)).toEqual({ status: 200, role: 'user' });
    // An auditor token reads, and may not reload the config (admins only).
    expect(
      (await fetch(`${h.gateway.adminUrl}/api/v1/sessions`, { headers: { authorization: `Bearer ${TOKEN_B}` } }))
        .status,
    ).toBe(200);

    // Recorded by name and role; the secrets are nowhere in the data directory.
    const [record] = await reloadRecords(h);
    expect(record!.admin).toEqual({
      roles: { admin: [], auditor: [] },
      tokens: [{ name: 'soc', role: 'auditor' }],
      uiSignIn: null,
    });
    const [stored] = await h.gateway.store.recordsOfKinds(['config.reloaded'], 0, 1);
    expect(auditEventOf(stored!, 'gw')!.attributes).toMatchObject({
      admin_tokens: 'soc:auditor',
      admin_roles: '',
      identity_issuers: null,
    });
    await h.gateway.close(1000);
    for (const name of readdirSync(h.dataDir)) {
      const bytes = readFileSync(path.join(h.dataDir, name));
      expect(bytes.includes(TOKEN_A), name).toBe(false);
      expect(bytes.includes(TOKEN_B), name).toBe(false);
    }
  });

  it('a token kept in a file is rotated when the file changes, without a reload; one too short is not taken', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'ops-token');
    writeFileSync(file, `${TOKEN_A}\n`);
    try {
      const { h } = await gatewayWith({
        admin: { tokens: [{ name: 'ops', role: 'admin', token: { file } }], token_reload: '50ms' },
      });
      expect(await whoami(h, TOKEN_A)).toEqual({ status: 200, role: 'admin' });
      writeFileSync(file, `${TOKEN_B}\n`);
      await until('the rotated token to be taken', async () =>
        (await whoami(h, TOKEN_B)).status === 200 ? true : undefined,
      );
      expect(await whoami(h, TOKEN_A)).toMatchObject({ status: 401 });
      // A token too short (a half-written secret, a mistake) is not taken: the one read before stays.
      writeFileSync(file, 'short\n');
      await new Promise((r) => setTimeout(r, 300));
      expect(await whoami(h, TOKEN_B)).toEqual({ status: 200, role: 'admin' });
      expect(await whoami(h, 'short')).toMatchObject({ status: 401 });
      // Not a config change: nothing on the ledger.
      expect(await reloadRecords(h)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a reload whose admin token is too short, or that moves the admin listener, changes nothing', async () => {
    const { h, reload } = await gatewayWith(adminWith([{ name: 'ops', role: 'admin', env: 'VIGIL_TEST_ADMIN_A' }], []));
    const short = await reload(adminWith([{ name: 'weak', role: 'admin', env: 'VIGIL_TEST_ADMIN_SHORT' }], [])).catch(
      (e: unknown) => e,
    );
    expect(short).toBeInstanceOf(ConfigError);
    expect((short as ConfigError).problems.join('\n')).toMatch(/admin\.tokens\[0\] \(weak\)\.token: .*shorter than 24/);
    const moved = await reload({
      ...adminWith([{ name: 'soc', role: 'admin', env: 'VIGIL_TEST_ADMIN_B' }], []),
      admin: { listen: '127.0.0.1:1', tokens: [{ name: 'soc', role: 'admin', token: { env: 'VIGIL_TEST_ADMIN_B' } }] },
    }).catch((e: unknown) => e);
    expect(moved).toBeInstanceOf(ConfigError);
    expect((moved as ConfigError).problems.join('\n')).toMatch(
      /^admin\.listen: changed, and only a restart applies it/,
    );
    // Neither took effect, and neither is on the ledger.
    expect(await whoami(h, TOKEN_A)).toEqual({ status: 200, role: 'admin' });
    expect(await whoami(h, TOKEN_B)).toMatchObject({ status: 401 });
    expect(await reloadRecords(h)).toEqual([]);
  });
});
