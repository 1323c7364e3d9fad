/**
 * A gateway shutting down while a caller is still being identified: its refusal (401, an `access.denied` record) is
 * answered and recorded while the shutdown's grace lasts, and once the recorder has closed it is never written to a
 * store that has closed. The caller's token is signed by a key the gateway must fetch first, from an identity
 * provider whose key set the test holds back (a key rotation, as the gateway sees it).
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load-config.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import { startFakeAnthropic, type FakeAnthropic } from '../../src/sandbox/fake-anthropic.js';
import { openStore } from '../../src/store/open-store.js';
import { GATEWAY_KEY } from '../support/gateway-harness.js';
import { useTempDir } from '../support/temp-dir.js';
import { until } from '../support/until.js';

/** An identity provider whose key set requests wait, once {@link hold} is called, until {@link release}. */
interface HeldIssuer {
  readonly issuer: string;
  /** A token for audience `vigil` signed by a key the provider does not publish yet: verifying it fetches the keys. */
  readonly token: string;
  hold(): void;
  /** Resolves once a key set request is waiting. */
  held(): Promise<void>;
  release(): void;
  close(): Promise<void>;
}

async function startHeldIssuer(): Promise<HeldIssuer> {
  const published = await generateKeyPair('RS256', { extractable: true });
  const rotated = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(published.publicKey)), kid: 'published', alg: 'RS256', use: 'sig' };
  let gate: { open: Promise<void>; release: () => void } | null = null;
  let arrived: () => void = () => {};
  let waiting = new Promise<void>((r) => (arrived = r));
  const server: Server = createServer((req, res) => {
    const json = (body: unknown): void => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.url === '/.well-known/openid-configuration') return json({ issuer, jwks_uri: `${issuer}/jwks` });
    if (req.url !== '/jwks') {
      res.writeHead(404).end();
      return;
    }
    if (!gate) return json({ keys: [jwk] });
    arrived();
    void gate.open.then(() => json({ keys: [jwk] }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ sub: 'user-1' })
    .setProtectedHeader({ alg: 'RS256', kid: 'rotated', typ: 'JWT' })
    .setIssuer(issuer)
    .setAudience('vigil')
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(rotated.privateKey);
  return {
    issuer,
    token,
    hold() {
      let release!: () => void;
      const open = new Promise<void>((r) => (release = r));
      gate = { open, release };
      waiting = new Promise<void>((r) => (arrived = r));
    },
    held: () => waiting,
    release() {
      gate?.release();
      gate = null;
    },
    async close() {
      gate?.release();
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

describe('shutting down while a caller is being identified', () => {
  const dir = useTempDir('vigil-shutdown-refusals');
  let idp: HeldIssuer;
  let fake: FakeAnthropic;
  let gateway: Gateway | undefined;
  let logged: Array<{ level: number; msg: string } & Record<string, unknown>>;

  const config = (): ReturnType<typeof validateConfig> =>
    validateConfig({
      listen: '127.0.0.1:0',
      data_dir: dir(),
      identity: { oidc: [{ issuer: idp.issuer, audience: 'vigil', jwks_cooldown: 0 }] },
      connections: [{ name: 'anthropic', upstream: fake.url, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } }],
    });

  beforeEach(async () => {
    process.env.VIGIL_TEST_UPSTREAM_KEY = GATEWAY_KEY;
    idp = await startHeldIssuer();
    fake = await startFakeAnthropic({ apiKey: GATEWAY_KEY });
    logged = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    gateway = await startGateway(config(), { log });
  });
  afterEach(async () => {
    idp.release();
    await gateway?.close(0);
    gateway = undefined;
    await fake.close();
    await idp.close();
  });

  /**
   * Sends a call whose token needs the provider's keys, closes the gateway with `graceMs` while the keys are being
   * fetched, lets the fetch go 300 ms later. Returns what the client received, once the gateway has stopped.
   */
  async function shutDownWhileIdentifying(graceMs: number): Promise<{ status?: number; body?: unknown }> {
    idp.hold();
    const answer = fetch(`${gateway!.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${idp.token}` },
      body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 20, messages: [] }),
    }).then(
      async (r) => ({ status: r.status, body: (await r.json()) as unknown }),
      () => ({}),
    );
    await idp.held();
    const closed = gateway!.close(graceMs);
    await new Promise((r) => setTimeout(r, 300));
    idp.release();
    await closed;
    return answer;
  }

  async function recordedRefusals(): Promise<unknown[]> {
    const store = await openStore(config());
    try {
      return (await store.recordsOfKinds(['access.denied'], 0, 100)).map((r) => JSON.parse(r.data) as unknown);
    } finally {
      await store.close();
    }
  }

  it('with grace left, the caller being identified is in flight: it is answered 401 and its refusal is recorded', async () => {
    // Went wrong: shutdown saw nothing in flight while the caller was being identified. The recorder and the store
    // closed at once, the client's connection was cut, and its refusal, arriving after, was queued and then written to
    // the closed store (failing: the record was lost).
    const received = await shutDownWhileIdentifying(10_000);
    const g = gateway!;
    gateway = undefined;
    expect(received).toMatchObject({ status: 401, body: { error: { type: 'authentication_error' } } });
    expect(await recordedRefusals()).toMatchObject([
      { status: 401, reason: expect.stringContaining('signing key') as unknown, path: '/v1/messages' },
    ]);
    expect(g.recorder.failures).toBe(0);
    expect(logged.filter((l) => l.level >= 50)).toEqual([]);
  });

  it('grace 0: a refusal that comes after the recorder closed is logged, not written to the closed store', async () => {
    // Went wrong: the refusal was queued after the recorder closed, and its write failed on the closed store
    // ("recording failed", a recording failure counted): neither recorded nor said what was refused.
    const received = await shutDownWhileIdentifying(0);
    const g = gateway!;
    gateway = undefined;
    // Cut at the deadline, as every call still in flight then is.
    expect(received).toEqual({});
    const warning = await until('the refusal to be logged', () =>
      logged.find((l) => l.msg.startsWith('refusal not recorded')),
    );
    expect(warning).toMatchObject({
      level: 40,
      connection: 'anthropic',
      status: 401,
      path: '/v1/messages',
      reason: expect.stringContaining('signing key') as unknown,
    });
    // Long enough for a write queued with the refusal to have been tried.
    await new Promise((r) => setTimeout(r, 200));
    expect(g.recorder.failures).toBe(0);
    expect(logged.filter((l) => l.level >= 50)).toEqual([]);
    expect(await recordedRefusals()).toEqual([]);
  });
});
