/** Who the admin API lets in, and as what: admin tokens, OIDC groups mapped to roles, loopback without identity. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminAuthenticator, loadAdminTokens } from '../../../src/admin/admin-auth.js';
import { adminListenAddress, checkAdminExposure } from '../../../src/admin/admin-server.js';
import { uiClientAudience, uiSignInWarnings } from '../../../src/admin/ui-sign-in.js';
import { validateConfig } from '../../../src/config/load-config.js';
import { ConfigError, VigilError } from '../../../src/errors.js';
import { OidcVerifier } from '../../../src/identity/oidc-verifier.js';
import { startOidcProvider, type OidcTestProvider } from '../../support/oidc-provider.js';

const SECRET = 'a-long-enough-admin-token-0123456789';
const roles = { admin: ['vigil-admins'], auditor: ['security'] };

let idp: OidcTestProvider;
beforeAll(async () => {
  idp = await startOidcProvider();
});
afterAll(async () => {
  await idp?.close();
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function refusal(p: Promise<unknown>): Promise<VigilError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VigilError);
  return err as VigilError;
}

describe('admin tokens', () => {
  it('reads secrets from env, naming the config key of any that is missing or too short', () => {
    const tokens = loadAdminTokens([{ name: 'ci', role: 'auditor', token: { env: 'ADMIN_T' } }], { ADMIN_T: SECRET });
    expect(tokens.map((t) => [t.name, t.role])).toEqual([['ci', 'auditor']]);
    expect(JSON.stringify(tokens)).not.toContain(SECRET);

    let err: unknown;
    try {
      loadAdminTokens(
        [
          { name: 'a', role: 'admin', token: { env: 'UNSET_VAR' } },
          { name: 'b', role: 'admin', token: { env: 'SHORT' } },
          { name: 'c', role: 'admin', token: { file: '/nonexistent/token' } },
        ],
        { SHORT: 'abc' },
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([
      expect.stringContaining('admin.tokens[0] (a).token: environment variable UNSET_VAR is not set'),
      expect.stringContaining('admin.tokens[1] (b).token'),
      expect.stringContaining('admin.tokens[2] (c).token: cannot read /nonexistent/token'),
    ]);
  });

  it('admits a known token with its role, and refuses others', async () => {
    const auth = new AdminAuthenticator({
      tokens: loadAdminTokens([{ name: 'ci', role: 'auditor', token: { env: 'T' } }], { T: SECRET }),
      roles,
    });
    expect(await auth.authenticate(bearer(SECRET), '10.0.0.5')).toEqual({
      reader: { method: 'admin_token', subject: 'ci' },
      role: 'auditor',
      address: '10.0.0.5',
    });
    expect((await refusal(auth.authenticate(bearer(`${SECRET}x`), '127.0.0.1'))).code).toBe('UNAUTHENTICATED');
    // With identity configured, loopback is no pass.
    expect((await refusal(auth.authenticate({}, '127.0.0.1'))).message).toContain('missing credential');
  });
});

describe('OIDC roles', () => {
  it('maps groups to admin, auditor, or user', async () => {
    const oidc = new OidcVerifier([
      {
        issuer: idp.issuer,
        audience: 'vigil',
        groups_claim: 'groups',
        algorithms: ['RS256'],
        clock_skew: 30,
        jwks_cooldown: 30,
      },
    ]);
    const auth = new AdminAuthenticator({ oidc, tokens: [], roles });
    const as = async (groups: string[]) =>
      (await auth.authenticate(bearer(await idp.mintToken({ groups }, { subject: 'someone' })), '127.0.0.1')).role;
    expect(await as(['security', 'vigil-admins'])).toBe('admin');
    expect(await as(['security'])).toBe('auditor');
    expect(await as(['eng'])).toBe('user');
    const expired = await idp.mintToken({ groups: ['vigil-admins'] }, { expiresIn: -600 });
    expect((await refusal(auth.authenticate(bearer(expired), '127.0.0.1'))).message).toContain('expired');
  });
});

describe('the web UI’s sign-in (admin.ui.oidc)', () => {
  const issuerEntry = (audience: string | string[]) => ({
    issuer: idp.issuer,
    audience,
    groups_claim: 'groups',
    algorithms: ['RS256' as const],
    clock_skew: 30,
    jwks_cooldown: 30,
  });
  const signIn = (token: 'id_token' | 'access_token') => ({
    issuer: idp.issuer,
    client_id: 'vigil-ui',
    scopes: ['openid'],
    token,
  });

  it('accepts the UI’s ID tokens here, with the issuer’s audience left to the proxy’s callers', async () => {
    // The UI's client id had to be added to identity.oidc's audience, which the proxy shares: its ID tokens then spent
    // the connections' keys. The admin listener now accepts them by itself.
    const oidc = new OidcVerifier([issuerEntry('vigil')]);
    const auth = new AdminAuthenticator({ oidc, uiClient: uiClientAudience(signIn('id_token')), tokens: [], roles });
    const idToken = await idp.mintToken({ groups: ['vigil-admins'] }, { subject: 'alice', audience: 'vigil-ui' });
    expect(await auth.authenticate(bearer(idToken), '10.0.0.5')).toMatchObject({
      reader: { method: 'oidc', subject: 'alice' },
      role: 'admin',
    });
    const apiToken = await idp.mintToken({ groups: ['security'] }, { subject: 'svc' });
    expect((await auth.authenticate(bearer(apiToken), '10.0.0.5')).role).toBe('auditor');
    // What the proxy checks, the same verifier without the client: refused.
    expect((await refusal(oidc.verify(idToken))).message).toMatch(/^wrong audience: token is for "vigil-ui"/);

    // With token: access_token the UI sends a token for the issuer's audience; its client id is no audience here.
    expect(uiClientAudience(signIn('access_token'))).toBeUndefined();
    const accessOnly = new AdminAuthenticator({
      oidc,
      uiClient: uiClientAudience(signIn('access_token')),
      tokens: [],
      roles,
    });
    expect((await refusal(accessOnly.authenticate(bearer(idToken), '10.0.0.5'))).message).toMatch(/^wrong audience/);
  });

  it('warns when the UI’s client id is still an audience of the issuer, which the proxy accepts', () => {
    expect(uiSignInWarnings(signIn('id_token'), [issuerEntry('vigil')])).toEqual([]);
    expect(uiSignInWarnings(signIn('id_token'), [issuerEntry(['vigil', 'vigil-ui'])])).toEqual([
      'identity.oidc[0].audience includes admin.ui.oidc.client_id "vigil-ui": every ID token the web UI signs in ' +
        'with is then also accepted by the Claude API proxy. Remove it from identity.oidc[0].audience (the admin ' +
        'listener accepts the UI’s ID tokens on its own) unless that is intended',
    ]);
    expect(uiSignInWarnings(signIn('access_token'), [issuerEntry(['vigil', 'vigil-ui'])])).toEqual([]);
    expect(uiSignInWarnings(undefined, [issuerEntry('vigil-ui')])).toEqual([]);
  });
});

describe('without identity', () => {
  it('admits loopback callers as admin, and nobody else', async () => {
    const auth = new AdminAuthenticator({ tokens: [], roles });
    expect(await auth.authenticate({}, '127.0.0.1')).toMatchObject({
      reader: { method: 'local_user', subject: 'admin-api:localhost' },
      role: 'admin',
    });
    expect(await auth.authenticate({}, '::ffff:127.0.0.1')).toMatchObject({ role: 'admin' });
    expect((await refusal(auth.authenticate({}, '192.168.1.20'))).code).toBe('UNAUTHENTICATED');
  });
});

describe('where it listens', () => {
  const config = (extra: Record<string, unknown>) => validateConfig({ connections: [{ name: 'anthropic' }], ...extra });

  it('defaults to 127.0.0.1 on the proxy port + 1', () => {
    expect(adminListenAddress(config({}))).toEqual({ host: '127.0.0.1', port: 8081 });
    expect(adminListenAddress(config({ listen: '0.0.0.0:9000' }))).toEqual({ host: '127.0.0.1', port: 9001 });
    expect(adminListenAddress(config({ listen: '127.0.0.1:0' }))).toEqual({ host: '127.0.0.1', port: 0 });
    expect(adminListenAddress(config({ admin: { listen: '[::1]:7000' } }))).toEqual({ host: '::1', port: 7000 });
  });

  it('refuses a non-loopback address without identity', () => {
    expect(() => checkAdminExposure(config({ admin: { listen: '0.0.0.0:8081' } }))).toThrow(
      /refusing to serve the admin API on 0\.0\.0\.0/,
    );
    expect(() =>
      checkAdminExposure(
        config({ admin: { listen: '0.0.0.0:8081', tokens: [{ name: 'ci', role: 'admin', token: { env: 'X' } }] } }),
      ),
    ).not.toThrow();
    expect(() => checkAdminExposure(config({ admin: { enabled: false, listen: '0.0.0.0:8081' } }))).not.toThrow();
  });

  it('rejects unknown keys and duplicate token names in the admin section', () => {
    expect(() => config({ admin: { listen: '127.0.0.1:1', role: {} } })).toThrow(/admin.*role/);
    expect(() =>
      config({
        admin: {
          tokens: [
            { name: 'ci', role: 'admin', token: { env: 'X' } },
            { name: 'ci', role: 'auditor', token: { env: 'Y' } },
          ],
        },
      }),
    ).toThrow(/duplicate token name "ci"/);
  });
});
