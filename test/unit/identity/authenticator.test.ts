import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VigilError } from '../../../src/errors.js';
import { Authenticator, extractCredential, MISSING_CREDENTIAL } from '../../../src/identity/authenticator.js';
import { gatewayKeyId, generateGatewayKey, type GatewayKeyRow } from '../../../src/identity/gateway-keys.js';
import { oidcIssuerSchema } from '../../../src/identity/identity-config.js';
import { OidcVerifier } from '../../../src/identity/oidc-verifier.js';
import { isLocalRequest } from '../../../src/identity/loopback.js';
import { ANONYMOUS } from '../../../src/identity/principal.js';
import { startOidcProvider, type OidcTestProvider } from '../../support/oidc-provider.js';

async function rejection(p: Promise<unknown>): Promise<VigilError> {
  const err = await p.then(
    () => expect.fail('request was authenticated'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VigilError);
  expect((err as VigilError).code).toBe('UNAUTHENTICATED');
  return err as VigilError;
}

describe('extractCredential', () => {
  it('takes a bearer token from Authorization', () => {
    expect(extractCredential({ authorization: 'Bearer abc.def.ghi' })).toEqual({
      kind: 'bearer',
      token: 'abc.def.ghi',
    });
    expect(extractCredential({ authorization: 'bearer   tok ' })).toEqual({ kind: 'bearer', token: 'tok' });
  });

  it('takes x-api-key when there is no Authorization header', () => {
    expect(extractCredential({ 'x-api-key': ' vgk_x ' })).toEqual({ kind: 'api-key', token: 'vgk_x' });
  });

  it('prefers Authorization when both are sent', () => {
    expect(extractCredential({ authorization: 'Bearer a.b.c', 'x-api-key': 'sk-ant-placeholder' })).toEqual({
      kind: 'bearer',
      token: 'a.b.c',
    });
  });

  it('returns null when no credential is sent', () => {
    expect(extractCredential({})).toBeNull();
    expect(extractCredential({ 'x-api-key': '' })).toBeNull();
  });

  it('refuses a malformed Authorization header', () => {
    for (const authorization of ['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer ', 'Bearer a b', 'tok']) {
      expect(() => extractCredential({ authorization })).toThrow(/^malformed Authorization header/);
    }
  });

  it('refuses more than one x-api-key', () => {
    expect(() => extractCredential({ 'x-api-key': 'a, b' })).toThrow(/malformed x-api-key header/);
    expect(() => extractCredential({ 'x-api-key': ['a', 'b'] as unknown as string })).toThrow(
      /malformed x-api-key header/,
    );
  });
});

describe('Authenticator', () => {
  let idp: OidcTestProvider;
  let oidc: OidcVerifier;
  const live = generateGatewayKey();
  const revoked = generateGatewayKey();
  const rows = new Map<string, GatewayKeyRow>([
    [live.hash, { name: 'nightly-ci', owner: 'platform', connections: ['prod'], expiresAt: null, revokedAt: null }],
    [revoked.hash, { name: 'old-bot', owner: 'platform', connections: [], expiresAt: null, revokedAt: 1 }],
  ]);
  const keyLookup = async (hash: string) => rows.get(hash);

  beforeAll(async () => {
    idp = await startOidcProvider();
    oidc = new OidcVerifier([oidcIssuerSchema.parse({ issuer: idp.issuer, audience: 'vigil' })]);
    await oidc.start();
  });
  afterAll(async () => {
    await idp.close();
  });

  it('with no identity configured, lets everyone in as anonymous whatever they send', async () => {
    const auth = new Authenticator({ anonymousAllowed: true });
    expect(await auth.authenticate({ 'x-api-key': 'sk-ant-whatever' }, '127.0.0.1')).toEqual({ principal: ANONYMOUS });
    expect(await auth.authenticate({ authorization: 'Basic Zm9vOmJhcg==' })).toEqual({ principal: ANONYMOUS });
    expect(await auth.authenticate({})).toEqual({ principal: ANONYMOUS });
  });

  it('can allow anonymous callers by their address only', async () => {
    const auth = new Authenticator({ anonymousAllowed: (address) => address === '127.0.0.1' });
    expect((await auth.authenticate({}, '127.0.0.1')).principal).toBe(ANONYMOUS);
    expect((await rejection(auth.authenticate({}, '192.0.2.7'))).message).toMatch(
      /anonymous calls are taken from this machine only/,
    );
  });

  it('can allow anonymous callers by their headers too (a request addressed to this machine)', async () => {
    const auth = new Authenticator({
      anonymousAllowed: (address, headers) => address === '127.0.0.1' && isLocalRequest(headers),
    });
    expect((await auth.authenticate({ host: 'localhost:8080' }, '127.0.0.1')).principal).toBe(ANONYMOUS);
    expect(
      (await auth.authenticate({ host: '[::1]:8080', origin: 'http://127.0.0.1:8081' }, '127.0.0.1')).principal,
    ).toBe(ANONYMOUS);
    for (const headers of [
      { host: 'rebound.attacker.example:8080' },
      { host: '127.0.0.1:8080', origin: 'https://attacker.example' },
      { host: '127.0.0.1:8080', origin: 'null' },
    ]) {
      await expect(auth.authenticate(headers, '127.0.0.1')).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    }
  });

  it('routes a JWT to OIDC, from either header', async () => {
    const auth = new Authenticator({ oidc, keyLookup, anonymousAllowed: false });
    const token = await idp.mintToken({ groups: ['eng'] }, { subject: 'u-ada' });
    for (const headers of [{ authorization: `Bearer ${token}` }, { 'x-api-key': token }]) {
      const { principal, keyConnections } = await auth.authenticate(headers);
      expect(principal).toMatchObject({ method: 'oidc', subject: 'u-ada', groups: ['eng'] });
      expect(keyConnections).toBeUndefined();
    }
  });

  it('routes a gateway key to the key store, from either header, with its connections', async () => {
    const auth = new Authenticator({ oidc, keyLookup, anonymousAllowed: false });
    for (const headers of [{ 'x-api-key': live.key }, { authorization: `Bearer ${live.key}` }]) {
      expect(await auth.authenticate(headers)).toEqual({
        principal: {
          method: 'gateway_key',
          subject: 'nightly-ci',
          keyName: 'nightly-ci',
          owner: 'platform',
          keyId: gatewayKeyId(live.hash),
        },
        keyConnections: ['prod'],
      });
    }
    expect((await rejection(auth.authenticate({ 'x-api-key': revoked.key }))).message).toMatch(/was revoked/);
  });

  it('refuses a request without a credential when identity is configured', async () => {
    const auth = new Authenticator({ oidc, anonymousAllowed: false });
    expect((await rejection(auth.authenticate({}))).message).toBe(MISSING_CREDENTIAL);
    expect(MISSING_CREDENTIAL).toBe(
      'missing credential: send an OIDC token as Authorization: Bearer … or a gateway key as x-api-key',
    );
  });

  it('refuses a credential of a kind that is not enabled', async () => {
    const keysOnly = new Authenticator({ keyLookup, anonymousAllowed: false });
    const token = await idp.mintToken();
    expect((await rejection(keysOnly.authenticate({ authorization: `Bearer ${token}` }))).message).toMatch(
      /^OIDC tokens are not accepted/,
    );
    const oidcOnly = new Authenticator({ oidc, anonymousAllowed: false });
    expect((await rejection(oidcOnly.authenticate({ 'x-api-key': live.key }))).message).toMatch(
      /^gateway keys are not accepted/,
    );
  });

  it('refuses an unrecognised credential, with a hint for an Anthropic key, and never echoes it', async () => {
    const auth = new Authenticator({ oidc, keyLookup, anonymousAllowed: false });
    const anthropicKey = 'sk-ant-api03-secretsecretsecret';
    const err = await rejection(auth.authenticate({ 'x-api-key': anthropicKey }));
    expect(err.message).toMatch(/^unrecognised credential \(an Anthropic API key is not a gateway credential/);
    expect(err.message).not.toContain('secretsecret');
  });

  it('with anonymous allowed alongside identity: no or unrecognised credential is anonymous, a bad token is refused', async () => {
    const auth = new Authenticator({ oidc, keyLookup, anonymousAllowed: true });
    expect((await auth.authenticate({})).principal).toBe(ANONYMOUS);
    expect((await auth.authenticate({ 'x-api-key': 'sk-ant-placeholder' })).principal).toBe(ANONYMOUS);
    await rejection(auth.authenticate({ authorization: `Bearer ${await idp.mintToken({}, { expiresIn: -3600 })}` }));
    await rejection(auth.authenticate({ 'x-api-key': revoked.key }));
  });
});
