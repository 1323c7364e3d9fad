import { describe, expect, it } from 'vitest';
import { allowListSchema, identityConfigSchema, isAllowed } from '../../../src/identity/identity-config.js';
import { ANONYMOUS, type Principal } from '../../../src/identity/principal.js';

function problems(input: unknown): string[] {
  const r = identityConfigSchema.safeParse(input);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

describe('identity config', () => {
  it('fills in the defaults', () => {
    const c = identityConfigSchema.parse({
      oidc: [{ issuer: 'https://idp.example.com/realms/main', audience: 'vigil' }],
    });
    expect(c.oidc[0]).toEqual({
      issuer: 'https://idp.example.com/realms/main',
      audience: 'vigil',
      groups_claim: 'groups',
      algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'EdDSA', 'Ed25519'],
      clock_skew: 30,
      jwks_cooldown: 30,
      jwks_max_age: 600,
    });
    expect(identityConfigSchema.parse({})).toEqual({ oidc: [] });
  });

  it('reads durations as seconds or with a unit', () => {
    const c = identityConfigSchema.parse({
      oidc: [
        {
          issuer: 'https://idp.example.com',
          audience: ['a', 'b'],
          clock_skew: '2m',
          jwks_cooldown: 5,
          jwks_max_age: '1h',
        },
      ],
    });
    expect(c.oidc[0]).toMatchObject({ audience: ['a', 'b'], clock_skew: 120, jwks_cooldown: 5, jwks_max_age: 3600 });
  });

  it('never accepts none or HMAC algorithms', () => {
    expect(
      problems({ oidc: [{ issuer: 'https://idp.example.com', audience: 'v', algorithms: ['RS256', 'HS256'] }] }),
    ).toEqual([
      expect.stringMatching(/^oidc\.0\.algorithms\.1: unsupported algorithm "HS256": only asymmetric algorithms/),
    ]);
    expect(
      problems({ oidc: [{ issuer: 'https://idp.example.com', audience: 'v', algorithms: ['none'] }] }),
    ).toHaveLength(1);
  });

  it('reports unknown keys, bad issuers, bad durations and duplicates with their path', () => {
    expect(
      problems({
        oidc: [
          { issuer: 'https://idp.example.com', audience: 'v', group_claim: 'roles' },
          { issuer: 'idp.example.com', audience: 'v' },
          { issuer: 'https://idp.example.com', audience: 'v', clock_skew: 'soon' },
        ],
      }),
    ).toEqual([
      expect.stringMatching(/^oidc\.0: Unrecognized key: "group_claim"/),
      expect.stringMatching(/^oidc\.1\.issuer: must be the issuer URL/),
      expect.stringMatching(/^oidc\.2\.clock_skew: must be a number of seconds or a duration/),
    ]);
    expect(
      problems({
        oidc: [
          { issuer: 'https://a.example', audience: 'v' },
          { issuer: 'https://a.example', audience: 'v' },
        ],
      }),
    ).toEqual(['oidc.1.issuer: duplicate issuer "https://a.example"']);
  });
});

describe('isAllowed', () => {
  const ada: Principal = {
    method: 'oidc',
    issuer: 'https://idp.example.com',
    subject: 'u-ada',
    email: 'Ada@Example.com',
    groups: ['eng'],
  };
  const ciKey: Principal = { method: 'gateway_key', subject: 'nightly-ci', keyName: 'nightly-ci', owner: 'platform' };
  const allow = (rules: unknown) => allowListSchema.parse(rules);

  it('matches people by subject, group or email, and keys by name', () => {
    expect(isAllowed(ada, allow([{ subject: 'u-ada' }]))).toBe(true);
    expect(isAllowed(ada, allow([{ subject: 'u-ada', issuer: 'https://other.example.com' }]))).toBe(false);
    expect(isAllowed(ada, allow([{ group: 'eng' }]))).toBe(true);
    expect(isAllowed(ada, allow([{ group: 'finance' }]))).toBe(false);
    expect(isAllowed(ada, allow([{ email: 'ada@example.com' }]))).toBe(true);
    expect(isAllowed(ada, allow([{ email: '*@example.com' }]))).toBe(true);
    expect(isAllowed(ada, allow([{ email: '*@ample.com' }]))).toBe(false);
    expect(isAllowed(ciKey, allow([{ group: 'finance' }, { key: 'nightly-ci' }]))).toBe(true);
  });

  it('never lets a gateway key pass as a subject or a person as a key', () => {
    expect(isAllowed(ciKey, allow([{ subject: 'nightly-ci' }]))).toBe(false);
    expect(isAllowed({ ...ada, subject: 'nightly-ci' }, allow([{ key: 'nightly-ci' }]))).toBe(false);
  });

  it('allows nobody with an empty list, and never the anonymous caller', () => {
    expect(isAllowed(ada, [])).toBe(false);
    expect(isAllowed(ANONYMOUS, allow([{ subject: 'anonymous' }, { key: 'anonymous' }]))).toBe(false);
  });

  it('rejects malformed rules', () => {
    expect(allowListSchema.safeParse([{ subject: 'a', group: 'b' }]).success).toBe(false);
    expect(allowListSchema.safeParse([{ email: 'not-an-email' }]).success).toBe(false);
    expect(allowListSchema.safeParse([{ role: 'admin' }]).success).toBe(false);
  });
});
