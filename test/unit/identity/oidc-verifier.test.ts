import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { createLocalJWKSet, jwtVerify, SignJWT, type JSONWebKeySet } from 'jose';
import { VigilError } from '../../../src/errors.js';
import { oidcIssuerSchema } from '../../../src/identity/identity-config.js';
import { OidcVerifier, type VerifyOptions } from '../../../src/identity/oidc-verifier.js';
import { ConnectProxy } from '../../support/connect-proxy.js';
import { startOidcProvider, TEST_CLIENT, type OidcTestProvider } from '../../support/oidc-provider.js';

/** An issuer entry as the config loader would hand it over. */
function issuerConfig(issuer: string, extra: Record<string, unknown> = {}) {
  return oidcIssuerSchema.parse({ issuer, audience: 'vigil', ...extra });
}

/** A fetch that counts the requests to each path, so a test can see what the verifier asked the provider. */
function countingFetch(): { fetch: typeof fetch; count: (path: string) => number } {
  const counts = new Map<string, number>();
  return {
    fetch: (input, init) => {
      const path = new URL(input instanceof Request ? input.url : String(input)).pathname;
      counts.set(path, (counts.get(path) ?? 0) + 1);
      return fetch(input, init);
    },
    count: (path) => counts.get(path) ?? 0,
  };
}

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** Assert the verifier refuses `token` as UNAUTHENTICATED with a message matching `why`, and does not echo it. */
async function expectRejected(
  verifier: OidcVerifier,
  token: string,
  why: RegExp,
  options?: VerifyOptions,
): Promise<VigilError> {
  const err = await verifier.verify(token, options).then(
    () => expect.fail('token was accepted'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VigilError);
  const vigil = err as VigilError;
  expect(vigil.code).toBe('UNAUTHENTICATED');
  expect(vigil.status).toBe(401);
  expect(vigil.message).toMatch(why);
  // No part of the credential that gives it power is repeated back (or, through logs, kept).
  expect(vigil.message).not.toContain(token);
  const [, payload, signature] = token.split('.');
  if (payload) expect(vigil.message).not.toContain(payload);
  if (signature) expect(vigil.message).not.toContain(signature);
  return vigil;
}

describe('OidcVerifier against a real OpenID provider', () => {
  let idp: OidcTestProvider;
  let verifier: OidcVerifier;

  beforeAll(async () => {
    idp = await startOidcProvider();
    verifier = new OidcVerifier([issuerConfig(idp.issuer)]);
    expect(await verifier.start()).toEqual([]);
  });
  afterAll(async () => {
    await idp.close();
  });

  it('accepts a client-credentials access token from the token endpoint and names the client', async () => {
    const token = await idp.clientCredentialsToken('vigil');
    const principal = await verifier.verify(token);
    expect(principal).toEqual({ method: 'oidc', issuer: idp.issuer, subject: TEST_CLIENT.id });
  });

  it('accepts a user token and reads name, email and groups', async () => {
    const token = await idp.mintToken(
      { name: 'Ada Lovelace', email: 'ada@example.com', email_verified: true, groups: ['eng', 'ml-platform'] },
      { subject: 'u-ada' },
    );
    expect(await verifier.verify(token)).toEqual({
      method: 'oidc',
      issuer: idp.issuer,
      subject: 'u-ada',
      name: 'Ada Lovelace',
      email: 'ada@example.com',
      groups: ['eng', 'ml-platform'],
    });
  });

  it('reads groups given as a space-separated string', async () => {
    const token = await idp.mintToken({ groups: 'eng  ops' });
    expect((await verifier.verify(token)).groups).toEqual(['eng', 'ops']);
  });

  it('reads groups from a configured nested claim', async () => {
    const nested = new OidcVerifier([issuerConfig(idp.issuer, { groups_claim: 'realm_access.roles' })]);
    const token = await idp.mintToken({ realm_access: { roles: ['auditor'] } });
    expect((await nested.verify(token)).groups).toEqual(['auditor']);
  });

  it('leaves out an email the provider says is not verified', async () => {
    const token = await idp.mintToken({ email: 'ceo@example.com', email_verified: false });
    expect((await verifier.verify(token)).email).toBeUndefined();
  });

  it('accepts a token whose audience list includes the configured audience', async () => {
    const token = await idp.mintToken({}, { audience: ['other', 'vigil'] });
    expect((await verifier.verify(token)).subject).toBe('user-1');
  });

  it('refuses an expired token', async () => {
    await expectRejected(verifier, await idp.mintToken({}, { expiresIn: -120 }), /^token expired at \d{4}-/);
  });

  it('tolerates clock skew within the configured allowance', async () => {
    const token = await idp.mintToken({}, { expiresIn: -10 });
    expect((await verifier.verify(token)).subject).toBe('user-1');
  });

  it('refuses a token that is not yet valid', async () => {
    await expectRejected(verifier, await idp.mintToken({}, { notBefore: 600 }), /^token not yet valid before \d{4}-/);
  });

  it('refuses a token for another audience', async () => {
    await expectRejected(
      verifier,
      await idp.mintToken({}, { audience: 'billing' }),
      /^wrong audience: token is for "billing", expected vigil/,
    );
    await expectRejected(verifier, await idp.clientCredentialsToken('billing'), /^wrong audience/);
  });

  it('accepts a client’s ID tokens only where asked to, and only those issued to that client (azp)', async () => {
    // The web UI's ID tokens (aud: its client id) were accepted by the one verifier both listeners share, so every
    // sign-in to the UI was also a credential for the Claude API. Only the admin listener asks for the client now.
    const ui = { client: { issuer: idp.issuer, clientId: 'vigil-ui' } };
    const idToken = await idp.mintToken({}, { subject: 'alice', audience: 'vigil-ui' });
    await expectRejected(verifier, idToken, /^wrong audience: token is for "vigil-ui", expected vigil$/);
    expect((await verifier.verify(idToken, ui)).subject).toBe('alice');
    // A client of another issuer widens nothing for this one.
    const elsewhere = { client: { issuer: 'https://other.example.com', clientId: 'vigil-ui' } };
    await expectRejected(verifier, idToken, /^wrong audience/, elsewhere);
    // Still only tokens for the issuer's audience or the client, with the client named in the refusal.
    await expectRejected(
      verifier,
      await idp.mintToken({}, { audience: 'billing' }),
      /^wrong audience: token is for "billing", expected vigil or vigil-ui$/,
      ui,
    );

    // Issued to another client that merely lists the UI among its audiences: refused unless azp names the UI.
    const listed = (azp?: string) =>
      idp.mintToken(azp === undefined ? {} : { azp }, { subject: 'alice', audience: ['vigil-ui', 'billing'] });
    await expectRejected(
      verifier,
      await listed(),
      /^token for \["vigil-ui","billing"\] was not issued to client vigil-ui: its "azp" \(authorized party\) is null$/,
      ui,
    );
    await expectRejected(verifier, await listed('billing-app'), /not issued to client vigil-ui.*"billing-app"$/, ui);
    expect((await verifier.verify(await listed('vigil-ui'), ui)).subject).toBe('alice');
    // With the client as its only audience, an azp (when present) must name it too.
    const foreign = await idp.mintToken({ azp: 'billing-app' }, { audience: 'vigil-ui' });
    await expectRejected(verifier, foreign, /not issued to client vigil-ui/, ui);
    // A token for the issuer's own audience is accepted as anywhere else, whatever client it was issued to.
    const own = await idp.mintToken({ azp: 'billing-app' }, { subject: 'svc', audience: ['vigil', 'vigil-ui'] });
    expect((await verifier.verify(own, ui)).subject).toBe('svc');
  });

  it('refuses a token without an expiry or without a subject', async () => {
    await expectRejected(verifier, await idp.mintToken({}, { expiresIn: null }), /no "exp" claim/);
    await expectRejected(verifier, await idp.mintToken({ sub: undefined }), /no "sub" claim/);
  });

  it('refuses a token from an issuer it does not trust', async () => {
    await expectRejected(
      verifier,
      await idp.mintToken({}, { issuer: 'https://evil.example.com' }),
      /^token from unknown issuer "https:\/\/evil\.example\.com"; trusted issuers: http:\/\/127\.0\.0\.1:\d+$/,
    );
  });

  it('refuses a token signed by a key the provider never published', async () => {
    const err = await expectRejected(
      verifier,
      await idp.mintToken({}, { unpublishedKey: true }),
      /^unknown signing key/,
    );
    expect(err.message).toContain(idp.issuer);
  });

  it('refuses a token whose claims were changed after signing', async () => {
    const genuine = await idp.mintToken({ groups: ['eng'] });
    const [header, , signature] = genuine.split('.');
    const forged = `${header}.${b64url({ iss: idp.issuer, aud: 'vigil', sub: 'user-1', groups: ['admin'], exp: Math.floor(Date.now() / 1000) + 300 })}.${signature}`;
    await expectRejected(verifier, forged, /^bad signature$/);
  });

  it('refuses a token with a corrupted signature', async () => {
    const genuine = await idp.mintToken();
    const [header, payload, signature] = genuine.split('.');
    const flipped = signature!.startsWith('A') ? `B${signature!.slice(1)}` : `A${signature!.slice(1)}`;
    await expectRejected(verifier, `${header}.${payload}.${flipped}`, /^bad signature$/);
  });

  it('refuses an unsigned token (alg: none), with or without a signature segment', async () => {
    const payload = b64url({ iss: idp.issuer, aud: 'vigil', sub: 'root', exp: Math.floor(Date.now() / 1000) + 300 });
    const header = b64url({ alg: 'none', kid: idp.currentKid });
    await expectRejected(verifier, `${header}.${payload}.`, /^unsigned token \(alg "none"\) rejected$/);
    await expectRejected(verifier, `${header}.${payload}.c2ln`, /^unsigned token/);
  });

  it("refuses HS256 signed with the provider's public key as the HMAC secret (algorithm confusion)", async () => {
    const publicJwk = idp.jwks.keys[0]!;
    const pem = createPublicKey({ key: publicJwk as JsonWebKey, format: 'jwk' })
      .export({ type: 'spki', format: 'pem' })
      .toString();
    const forged = await new SignJWT({ sub: 'root', groups: ['admin'] })
      .setProtectedHeader({ alg: 'HS256', kid: publicJwk.kid! })
      .setIssuer(idp.issuer)
      .setAudience('vigil')
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(pem));
    await expectRejected(
      verifier,
      forged,
      /^unsupported algorithm "HS256": symmetric \(HMAC\) signatures are never accepted$/,
    );

    // Second line of defence, below the verifier's own check: jose will not use an RSA key for HMAC either.
    await expect(
      jwtVerify(forged, createLocalJWKSet(idp.jwks as JSONWebKeySet), { algorithms: ['HS256'] }),
    ).rejects.toThrow();
  });

  it('refuses an algorithm outside the configured allow-list', async () => {
    const strict = new OidcVerifier([issuerConfig(idp.issuer, { algorithms: ['ES256'] })]);
    await expectRejected(
      strict,
      await idp.mintToken(),
      /^unsupported algorithm "RS256" for issuer .*: accepted are ES256$/,
    );
  });

  it('refuses things that are not JWTs as malformed', async () => {
    await expectRejected(verifier, 'not-a-token', /^malformed token/);
    await expectRejected(verifier, 'aaaa.bbbb.cccc', /^malformed token/);
    await expectRejected(
      verifier,
      `${b64url({ alg: 'RS256' })}.${Buffer.from('not json').toString('base64url')}.sig`,
      /^malformed token/,
    );
  });
});

describe('OidcVerifier key rotation and provider outages', () => {
  const providers: OidcTestProvider[] = [];
  async function provider(opts?: { listening?: boolean }): Promise<OidcTestProvider> {
    const p = await startOidcProvider(opts);
    providers.push(p);
    return p;
  }
  afterAll(async () => {
    await Promise.all(providers.map((p) => p.close()));
  });

  it('picks up a rotated key by refetching the JWKS when an unknown kid arrives', async () => {
    const idp = await provider();
    const seen = countingFetch();
    const verifier = new OidcVerifier([issuerConfig(idp.issuer, { jwks_cooldown: 0 })], { fetch: seen.fetch });
    await verifier.start();
    const oldToken = await idp.mintToken();
    expect((await verifier.verify(oldToken)).subject).toBe('user-1');
    expect(seen.count('/jwks')).toBe(1);

    await idp.rotateKeys();
    const newToken = await idp.clientCredentialsToken('vigil');
    expect((await verifier.verify(newToken)).subject).toBe(TEST_CLIENT.id);
    expect(seen.count('/jwks')).toBe(2);
    // The old key is no longer published: once the JWKS has been refetched, tokens signed with it stop working.
    await expectRejected(verifier, oldToken, /^unknown signing key/);
  });

  it('keeps accepting tokens signed with the old key while the provider still publishes it', async () => {
    const idp = await provider();
    const verifier = new OidcVerifier([issuerConfig(idp.issuer, { jwks_cooldown: 0 })]);
    await verifier.start();
    const oldToken = await idp.mintToken();
    await idp.rotateKeys({ keepOld: true });
    expect((await verifier.verify(await idp.mintToken({}, { subject: 'new' }))).subject).toBe('new');
    expect((await verifier.verify(oldToken)).subject).toBe('user-1');
  });

  it('refetches the JWKS for unknown kids at most once per cool-down', async () => {
    const idp = await provider();
    const seen = countingFetch();
    const verifier = new OidcVerifier([issuerConfig(idp.issuer, { jwks_cooldown: '1m' })], { fetch: seen.fetch });
    await verifier.start();
    for (let i = 0; i < 5; i++) {
      await expectRejected(verifier, await idp.mintToken({}, { unpublishedKey: true }), /^unknown signing key/);
    }
    // The fetch at start is the only one: a flood of made-up kids cannot make the gateway hammer the provider.
    expect(seen.count('/jwks')).toBe(1);
  });

  it('starts while the provider is unreachable, and verifies once it is up', async () => {
    const idp = await provider({ listening: false });
    const verifier = new OidcVerifier([issuerConfig(idp.issuer, { jwks_cooldown: 0 })]);
    const warnings = await verifier.start();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(idp.issuer);
    expect(warnings[0]).toMatch(/unreachable/);

    const token = await idp.mintToken();
    await expectRejected(
      verifier,
      token,
      /^cannot verify token: identity provider http:\/\/127\.0\.0\.1:\d+ is unreachable/,
    );

    await idp.start();
    expect((await verifier.verify(token)).subject).toBe('user-1');
  });

  it('does not retry discovery of an unreachable provider on every request within the cool-down', async () => {
    const idp = await provider({ listening: false });
    const seen = countingFetch();
    const verifier = new OidcVerifier([issuerConfig(idp.issuer, { jwks_cooldown: '1m' })], { fetch: seen.fetch });
    await verifier.start();
    await idp.start();
    await expectRejected(verifier, await idp.mintToken(), /is unreachable/);
    expect(seen.count('/.well-known/openid-configuration')).toBe(1);
  });

  it('keeps verifying with cached keys when the provider goes down, and fails closed on unknown kids', async () => {
    const idp = await provider();
    // A zero max-age makes every verification want a fresh JWKS, the worst case for an outage.
    const verifier = new OidcVerifier([issuerConfig(idp.issuer, { jwks_cooldown: 0, jwks_max_age: 0 })]);
    await verifier.start();
    const token = await idp.mintToken();
    await idp.stop();

    expect((await verifier.verify(token)).subject).toBe('user-1');
    expect((await verifier.verify(await idp.mintToken({}, { subject: 'second' }))).subject).toBe('second');
    const err = await expectRejected(
      verifier,
      await idp.mintToken({}, { unpublishedKey: true }),
      /^unknown signing key: kid ".+" is not among the cached keys/,
    );
    expect(err.message).toMatch(/cannot be reached/);

    await idp.start();
    await idp.rotateKeys();
    expect((await verifier.verify(await idp.mintToken({}, { subject: 'after' }))).subject).toBe('after');
  });

  it('does not try a provider that is down again on every request within the cool-down', async () => {
    const idp = await provider();
    const seen = countingFetch();
    const verifier = new OidcVerifier([issuerConfig(idp.issuer, { jwks_cooldown: '1m', jwks_max_age: 0 })], {
      fetch: seen.fetch,
    });
    await verifier.start();
    await idp.stop();
    for (let i = 0; i < 3; i++) expect((await verifier.verify(await idp.mintToken())).subject).toBe('user-1');
    // One attempt at start, one when the cache went stale; the outage is then remembered for the cool-down.
    expect(seen.count('/jwks')).toBe(2);
  });

  it('trusts several issuers, each with its own keys', async () => {
    const a = await provider();
    const b = await provider();
    const verifier = new OidcVerifier([issuerConfig(a.issuer), issuerConfig(b.issuer, { audience: ['vigil-b'] })]);
    expect(await verifier.start()).toEqual([]);

    expect(await verifier.verify(await a.mintToken({}, { subject: 'alice' }))).toMatchObject({
      issuer: a.issuer,
      subject: 'alice',
    });
    expect(await verifier.verify(await b.clientCredentialsToken('vigil-b'))).toMatchObject({
      issuer: b.issuer,
      subject: TEST_CLIENT.id,
    });
    // Each issuer's own audience applies.
    await expectRejected(verifier, await b.mintToken({}, { audience: 'vigil' }), /^wrong audience/);
    // A token signed by A that claims to come from B is checked against B's keys, and fails.
    await expectRejected(
      verifier,
      await a.mintToken({}, { issuer: b.issuer, audience: 'vigil-b' }),
      /^unknown signing key/,
    );
  });

  it('reaches the provider through the egress proxy named for it (discovery and keys), with its credentials', async () => {
    // Went wrong: discovery and the key set were fetched with Node's fetch, which ignores HTTPS_PROXY unless the
    // gateway runs with NODE_USE_ENV_PROXY=1: where the way out is an egress proxy, every token was refused.
    const idp = await provider();
    const proxy = new ConnectProxy('vigil:proxy-pass');
    const port = await proxy.listen();
    process.env.VIGIL_TEST_IDP_PROXY = `http://vigil:proxy-pass@127.0.0.1:${port}`;
    process.env.VIGIL_TEST_IDP_BAD_PROXY = `http://vigil:wrong@127.0.0.1:${port}`;
    try {
      const verifier = new OidcVerifier([issuerConfig(idp.issuer, { proxy: { env: 'VIGIL_TEST_IDP_PROXY' } })]);
      expect(await verifier.start()).toEqual([]);
      expect(await verifier.verify(await idp.clientCredentialsToken('vigil'))).toMatchObject({
        subject: TEST_CLIENT.id,
      });
      const target = new URL(idp.issuer).host;
      expect(proxy.tunnels.length).toBeGreaterThan(0);
      expect(proxy.tunnels).toEqual(
        proxy.tunnels.map(() => ({ target, credentials: 'vigil:proxy-pass', allowed: true })),
      );

      // A proxy that refuses (wrong credentials): the provider is unreachable, never tried directly.
      const refused = new OidcVerifier([issuerConfig(idp.issuer, { proxy: { env: 'VIGIL_TEST_IDP_BAD_PROXY' } })]);
      const [warning] = await refused.start();
      expect(warning).toMatch(/is unreachable/);
      expect(proxy.tunnels.at(-1)).toMatchObject({ target, allowed: false });
      await expectRejected(
        refused,
        await idp.clientCredentialsToken('vigil'),
        /^cannot verify token: identity provider/,
      );
    } finally {
      await proxy.close();
      delete process.env.VIGIL_TEST_IDP_PROXY;
      delete process.env.VIGIL_TEST_IDP_BAD_PROXY;
    }
  });

  it('warns at start about a provider whose discovery names another issuer', async () => {
    const idp = await provider();
    const verifier = new OidcVerifier([issuerConfig(`${idp.issuer}/`)]);
    const warnings = await verifier.start();
    expect(warnings[0]).toMatch(
      /names issuer "http:\/\/127\.0\.0\.1:\d+", not http:\/\/127\.0\.0\.1:\d+\/: fix identity\.oidc\[\]\.issuer/,
    );
  });
});
