/**
 * Who is calling, end to end: OIDC tokens from a real OpenID provider and gateway keys, through the official SDK
 * and Claude Code, with per-connection access. The caller's token never reaches upstream or the store.
 */
import Anthropic, { APIError } from '@anthropic-ai/sdk';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGatewayKey, revokeGatewayKey } from '../../src/identity/key-admin.js';
import { runAgent } from '../support/agent.js';
import { vigil } from '../support/cli.js';
import { GATEWAY_KEY, filesContaining, startHarness, type Harness } from '../support/gateway-harness.js';
import { TEST_CLIENT, startOidcProvider, type OidcTestProvider } from '../support/oidc-provider.js';

let idp: OidcTestProvider;
let h: Harness;
const secrets: string[] = [];

beforeAll(async () => {
  idp = await startOidcProvider();
  h = await startHarness((upstream) => ({
    identity: { oidc: [{ issuer: idp.issuer, audience: 'vigil', groups_claim: 'groups' }] },
    connections: [
      { name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
      {
        name: 'restricted',
        upstream,
        credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
        allow: [{ group: 'ml-team' }, { key: 'ci-nightly' }],
      },
    ],
  }));
});
afterAll(async () => {
  await h?.close();
  await idp?.close();
});

const ask = (baseURL: string, auth: { apiKey?: string; authToken?: string }, session: string) =>
  new Anthropic({ baseURL, maxRetries: 0, apiKey: null, authToken: null, ...auth }).messages
    .create(
      { model: 'claude-haiku-4-5', max_tokens: 20, messages: [{ role: 'user', content: `hello from ${session}` }] },
      { headers: { 'x-vigil-session': session } },
    )
    .withResponse();

async function refusal(p: Promise<unknown>): Promise<APIError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(APIError);
  return err as APIError;
}

describe('OIDC bearer tokens', () => {
  it('a service’s client-credentials token is accepted, recorded as its identity, and never forwarded', async () => {
    const token = await idp.clientCredentialsToken('vigil');
    secrets.push(token);
    await ask(h.url, { authToken: token }, 'svc');
    const [x] = await h.session('svc', 1);
    expect(x!.caller).toMatchObject({ method: 'oidc', issuer: idp.issuer, subject: TEST_CLIENT.id });
    const sent = h.fake.requests.at(-1)!;
    expect(sent.headers['x-api-key']).toBe(GATEWAY_KEY);
    expect(JSON.stringify(sent.headers)).not.toContain(token);
  });

  it('a user token with groups opens a connection restricted to that group; without it, 403', async () => {
    const member = await idp.mintToken({
      sub: 'alice',
      name: 'Alice',
      email: 'alice@example.com',
      groups: ['ml-team'],
    });
    const outsider = await idp.mintToken({ sub: 'bob', email: 'bob@example.com', groups: ['sales'] });
    secrets.push(member, outsider);
    await ask(`${h.url}/c/restricted`, { apiKey: member }, 'alice-restricted');
    const [x] = await h.session('alice-restricted', 1);
    expect(x!.caller).toMatchObject({
      subject: 'alice',
      name: 'Alice',
      email: 'alice@example.com',
      groups: ['ml-team'],
    });

    const denied = await refusal(ask(`${h.url}/c/restricted`, { authToken: outsider }, 'bob-restricted'));
    expect(denied).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect(denied.error).toMatchObject({ type: 'error', error: { type: 'permission_error' } });
    expect(denied.message).toContain('bob@example.com');
    // Bob may still use the unrestricted connection.
    await ask(h.url, { authToken: outsider }, 'bob-open');
  });

  it('expired, forged, wrong-audience and missing credentials get 401 without the token echoed', async () => {
    const expired = await idp.mintToken({ sub: 'carol' }, { expiresIn: -600 });
    const forged = await idp.mintToken({ sub: 'mallory' }, { unpublishedKey: true });
    const wrongAud = await idp.mintToken({ sub: 'dave' }, { audience: 'another-service' });
    secrets.push(expired, forged, wrongAud);
    for (const [token, why] of [
      [expired, /expired/],
      [forged, /signing key|signature/],
      [wrongAud, /audience/],
    ] as const) {
      const err = await refusal(ask(h.url, { authToken: token }, 'refused'));
      expect(err).toBeInstanceOf(Anthropic.AuthenticationError);
      expect(err.error).toMatchObject({ error: { type: 'authentication_error' } });
      expect(err.message).toMatch(why);
      expect(err.message).not.toContain(token);
    }
    const none = await fetch(`${h.url}/v1/models`);
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({
      error: { type: 'authentication_error', message: expect.stringMatching(/missing credential/) },
    });
  });
});

describe('gateway keys', () => {
  it('a key authenticates a service, is limited to its connections, and stops working when revoked', async () => {
    const names = h.gateway.store;
    const { key } = await createGatewayKey(
      names,
      { name: 'ci-nightly', owner: 'platform-team', connections: ['anthropic'], createdBy: 'test' },
      ['anthropic', 'restricted'],
    );
    secrets.push(key);
    await ask(h.url, { apiKey: key }, 'ci-run');
    const [x] = await h.session('ci-run', 1);
    expect(x!.caller).toMatchObject({
      method: 'gateway_key',
      subject: 'ci-nightly',
      keyName: 'ci-nightly',
      owner: 'platform-team',
      keyId: expect.stringMatching(/^key_[0-9a-f]{16}$/),
    });

    const wrongConnection = await refusal(ask(`${h.url}/c/restricted`, { apiKey: key }, 'ci-elsewhere'));
    expect(wrongConnection.status).toBe(403);
    expect(wrongConnection.error).toMatchObject({
      error: { message: 'gateway key "ci-nightly" may not use connection "restricted"' },
    });

    // A key may not pass for the callers without identity (records and grants name callers by subject).
    await expect(
      createGatewayKey(names, { name: 'anonymous', owner: 'x', connections: [], createdBy: 'test' }, ['anthropic']),
    ).rejects.toThrow('key name "anonymous" is reserved for callers without identity');

    await revokeGatewayKey(names, 'ci-nightly', 'test');
    const revoked = await refusal(ask(h.url, { apiKey: key }, 'ci-revoked'));
    expect(revoked.status).toBe(401);
    expect(revoked.message).toMatch(/revoked/);
  });

  it('vigil keys create warns when, with OIDC, no --owner names who the key is for', async () => {
    // Approvals tell a key's calls from its owner's by the owner; cli:<user> matches no OIDC approver.
    const dir = mkdtempSync(path.join(tmpdir(), 'vigil-keys-owner-'));
    try {
      const config = path.join(dir, 'vigil.yaml');
      writeFileSync(
        config,
        `data_dir: ${dir}\nidentity:\n  oidc:\n    - { issuer: "${idp.issuer}", audience: vigil }\n` +
          'connections:\n  - name: anthropic\n',
      );
      const bare = await vigil(['keys', 'create', '--name', 'ci', '--config', config]);
      expect(bare.code).toBe(0);
      expect(bare.stderr).toMatch(/warning: no --owner/);
      const owned = await vigil([
        'keys',
        'create',
        '--name',
        'ci2',
        '--owner',
        'alice@example.com',
        '--config',
        config,
      ]);
      expect(owned.code).toBe(0);
      expect(owned.stderr).not.toMatch(/warning/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('vigil keys create / list / rotate / revoke from the command line', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vigil-keys-'));
    try {
      const created = await vigil([
        'keys',
        'create',
        '--name',
        'deploy-bot',
        '--connection',
        'anthropic',
        '--expires',
        '30d',
        '--data-dir',
        dir,
      ]);
      expect(created.code).toBe(0);
      const key = created.stdout.trim();
      expect(key).toMatch(/^vgk_[A-Za-z0-9_-]{43}$/);
      expect(created.stderr).toContain('shown once');
      const listed = JSON.parse((await vigil(['keys', 'list', '--json', '--data-dir', dir])).stdout);
      // Every list's shape (`next_cursor` null: not paged), with the old key for one release (deprecated).
      expect(listed.next_cursor).toBeNull();
      expect(listed.keys).toEqual(listed.items);
      expect(listed.items).toEqual([
        expect.objectContaining({
          id: expect.stringMatching(/^key_[0-9a-f]{16}$/),
          name: 'deploy-bot',
          connections: ['anthropic'],
          revokedAt: null,
        }),
      ]);
      expect(JSON.stringify(listed)).not.toContain(key);
      expect(filesContaining(dir, key)).toEqual([]);
      const dup = await vigil(['keys', 'create', '--name', 'deploy-bot', '--data-dir', dir]);
      expect(dup.code).toBe(1);
      expect(dup.stderr).toContain('revoke it first');
      // Rotated: a new key printed once, the old one working out the overlap, both listed as live.
      const rotated = await vigil(['keys', 'rotate', 'deploy-bot', '--overlap', '90m', '--data-dir', dir]);
      expect(rotated.code).toBe(0);
      const next = rotated.stdout.trim();
      expect(next).toMatch(/^vgk_[A-Za-z0-9_-]{43}$/);
      expect(next).not.toBe(key);
      expect(rotated.stderr).toMatch(
        /key "deploy-bot" rotated: the new key \(key_[0-9a-f]{16}\) has the same owner and connections and expires .*; the old one \(key_[0-9a-f]{16}\) keeps working until .*, then is refused\./,
      );
      const text = (await vigil(['keys', 'list', '--data-dir', dir])).stdout;
      expect(text.split('\n').filter((l) => l.startsWith('deploy-bot  live'))).toHaveLength(2);
      expect(text).toMatch(/ {2}until \S+ \(rotated\)/);
      const bad = await vigil(['keys', 'rotate', 'deploy-bot', '--overlap', 'later', '--data-dir', dir]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain('invalid overlap "later"');
      const revokedBoth = await vigil(['keys', 'revoke', 'deploy-bot', '--data-dir', dir]);
      expect(revokedBoth.code).toBe(0);
      expect(revokedBoth.stdout).toMatch(
        /^key "deploy-bot" revoked \(and key_[0-9a-f]{16}, still working out a rotation's overlap\)/,
      );
      const after = JSON.parse((await vigil(['keys', 'list', '--json', '--data-dir', dir])).stdout);
      expect(after.items.map((k: { state: string }) => k.state)).toEqual(['revoked', 'revoked']);
      expect(filesContaining(dir, next)).toEqual([]);
      expect((await vigil(['verify', '--data-dir', dir])).code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Claude Code with an OIDC token', () => {
  it('authenticates with ANTHROPIC_AUTH_TOKEN and is recorded as that user', async () => {
    const token = await idp.mintToken({ sub: 'erin', email: 'erin@example.com', groups: ['ml-team'] });
    secrets.push(token);
    const cwd = mkdtempSync(path.join(tmpdir(), 'vigil-agent-'));
    try {
      const messages = await runAgent(`${h.url}/c/restricted`, 'say hi', cwd, token, 'ANTHROPIC_AUTH_TOKEN');
      expect(messages.find((m) => m.type === 'result')).toMatchObject({ subtype: 'success' });
      const sessionId = (messages.find((m) => m.type === 'system') as { session_id: string }).session_id;
      const xs = await h.session(sessionId, 1);
      expect(xs.every((x) => x.caller.subject === 'erin' && x.connection === 'restricted')).toBe(true);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('the audit trail of refusals', () => {
  it('records every 401 and 403 as an access.denied record, naming who and why, never the token', async () => {
    await h.gateway.recorder.queue.flush();
    const db = new Database(path.join(h.dataDir, 'vigil.db'), { readonly: true });
    const denied = (db.prepare("SELECT data FROM records WHERE kind = 'access.denied'").pluck().all() as string[]).map(
      (d) => JSON.parse(d) as { status: number; reason: string; connection: string; caller?: { subject: string } },
    );
    db.close();
    expect(denied).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ status: 401, reason: expect.stringMatching(/expired/), connection: 'anthropic' }),
        expect.objectContaining({
          status: 403,
          connection: 'restricted',
          caller: expect.objectContaining({ subject: 'bob' }),
        }),
        // A gateway key used outside its connections: refused with the key named as the caller.
        expect.objectContaining({
          status: 403,
          connection: 'restricted',
          reason: 'gateway key "ci-nightly" may not use connection "restricted"',
          caller: expect.objectContaining({ method: 'gateway_key', subject: 'ci-nightly', owner: 'platform-team' }),
        }),
      ]),
    );
    for (const s of secrets) expect(JSON.stringify(denied)).not.toContain(s);
  });
});

describe('refusals cannot flood the store', () => {
  it('keeps at most the first 256 characters of a refused path', async () => {
    // Went wrong: every refusal stored the whole caller-chosen path (~15 KB each), unauthenticated, in the ledger.
    const long = `/v1/messages/${'x'.repeat(15_000)}`;
    expect((await fetch(`${h.url}${long}`, { method: 'POST' })).status).toBe(401);
    await h.gateway.recorder.queue.flush();
    const db = new Database(path.join(h.dataDir, 'vigil.db'), { readonly: true });
    const paths = (db.prepare("SELECT data FROM records WHERE kind = 'access.denied'").pluck().all() as string[]).map(
      (d) => (JSON.parse(d) as { path: string }).path,
    );
    db.close();
    const clipped = paths.find((p) => p.startsWith('/v1/messages/xxx'));
    expect(clipped).toBe(`${long.slice(0, 256)}…`);
  });

  it('masks the path before it clips it: a secret across the cut leaves nothing of itself', async () => {
    const token = `ghp_${'A1b2C3d4E5'.repeat(3)}abcdef`;
    const across = `/v1/files/${'y'.repeat(236)}/${token}`; // the token starts 10 characters before the cut
    expect((await fetch(`${h.url}${across}`)).status).toBe(401);
    await h.gateway.recorder.queue.flush();
    const db = new Database(path.join(h.dataDir, 'vigil.db'), { readonly: true });
    const stored = (db.prepare("SELECT data FROM records WHERE kind = 'access.denied'").pluck().all() as string[]).find(
      (d) => d.includes('yyyy'),
    );
    db.close();
    expect(stored).toBeDefined();
    expect(stored).not.toContain('ghp_');
  });
});

describe('the data directory', () => {
  it('holds none of the callers’ tokens or keys', async () => {
    await h.gateway.recorder.queue.flush();
    expect(secrets.length).toBeGreaterThanOrEqual(8);
    for (const s of secrets) expect(filesContaining(h.dataDir, s)).toEqual([]);
  });
});
