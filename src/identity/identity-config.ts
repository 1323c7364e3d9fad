/**
 * The `identity` config section (which OpenID providers Vigil trusts) and the per-connection `allow` list (who may
 * use a connection), with the one function that applies an allow list to a caller.
 */
import { z } from 'zod';
import { proxySetting, unionOf } from '../config/common-schemas.js';
import type { Principal } from './principal.js';

/**
 * Signature algorithms a token may use. Only asymmetric ones: a gateway that accepted HS256 would let anyone who
 * knows the provider's *public* key forge tokens (the RS256→HS256 confusion attack), and `none` is no signature.
 */
export const ASYMMETRIC_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;
export type AsymmetricAlgorithm = (typeof ASYMMETRIC_ALGORITHMS)[number];

/** Accepted when `algorithms` is not configured. */
export const DEFAULT_ALGORITHMS: readonly AsymmetricAlgorithm[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'EdDSA',
  'Ed25519',
];

const SECONDS_DURATION = /^(\d+)(s|m|h)$/;
const UNIT_SECONDS = { s: 1, m: 60, h: 3600 } as const;

/**
 * A short duration as a number of seconds, or `30s`, `2m`, `1h`. Parsed to **seconds** (what JWT clock-skew is
 * counted in), unlike the millisecond `duration` of the main config.
 */
export const secondsDuration = unionOf(
  [z.number().nonnegative(), z.string()],
  'must be a number of seconds or a duration such as 30s, 2m or 1h',
).transform((v, ctx) => {
  if (typeof v === 'number') return v;
  const m = SECONDS_DURATION.exec(v.trim());
  if (!m) {
    ctx.addIssue({
      code: 'custom',
      message: `must be a number of seconds or a duration such as 30s, 2m or 1h (got "${v}")`,
    });
    return z.NEVER;
  }
  return Number(m[1]) * UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS];
});

const issuerUrl = z.string().refine(
  (v) => {
    try {
      const u = new URL(v);
      return (u.protocol === 'https:' || u.protocol === 'http:') && !u.search && !u.hash;
    } catch {
      return false;
    }
  },
  {
    message:
      'must be the issuer URL exactly as it appears in the tokens\' "iss" claim, e.g. https://idp.example.com/realms/main',
  },
);

/** One trusted OpenID provider. */
export const oidcIssuerSchema = z
  .object({
    /** Discovery is fetched from `<issuer>/.well-known/openid-configuration`; tokens must carry this exact `iss`. */
    issuer: issuerUrl,
    /** The `aud` a token must carry (one of, when a list). */
    audience: unionOf([z.string().min(1), z.array(z.string().min(1)).min(1)], 'must be a string or a list of strings'),
    /** Claim holding the caller's groups: an array or a space-separated string. A dotted path reaches nested claims. */
    groups_claim: z.string().min(1).default('groups'),
    /** Allow-list of signature algorithms; only asymmetric algorithms can be listed. */
    algorithms: z
      .array(
        z.enum(ASYMMETRIC_ALGORITHMS, {
          error: (issue) =>
            `unsupported algorithm "${String(issue.input)}": only asymmetric algorithms (${ASYMMETRIC_ALGORITHMS.join(', ')}) are accepted, never "none" or HS*`,
        }),
      )
      .min(1)
      .default([...DEFAULT_ALGORITHMS]),
    /** Tolerance for `exp`, `nbf` and `iat` against clocks that disagree, in seconds. */
    clock_skew: secondsDuration.default(30),
    /** Least time between two JWKS fetches triggered by a token whose `kid` is not in the cached key set, in seconds. */
    jwks_cooldown: secondsDuration.default(30),
    /**
     * How long a fetched JWKS is used before it is fetched again, in seconds. If the provider cannot be reached then,
     * the keys already known keep verifying tokens; keys it has since withdrawn stop doing so after this long.
     */
    jwks_max_age: secondsDuration.default(600),
    /**
     * The HTTP proxy discovery and the key set are fetched through (see net/egress-proxy.ts); absent: the
     * environment's `https_proxy`, as connections.
     */
    proxy: proxySetting.optional(),
  })
  .strict();
export type OidcIssuerConfig = z.output<typeof oidcIssuerSchema>;

/** Audiences written as one string or a list (an issuer's `audience`, a token's `aud` claim), as a list; none when absent. */
export function audienceList(audience: string | readonly string[] | undefined): string[] {
  return typeof audience === 'string' ? [audience] : [...(audience ?? [])];
}

/** The `identity` section. Gateway keys need no configuration: they live in the store. */
export const identityConfigSchema = z
  .object({
    oidc: z
      .array(oidcIssuerSchema)
      .default([])
      .superRefine((list, ctx) => {
        const seen = new Set<string>();
        list.forEach((c, i) => {
          if (seen.has(c.issuer))
            ctx.addIssue({ code: 'custom', path: [i, 'issuer'], message: `duplicate issuer "${c.issuer}"` });
          seen.add(c.issuer);
        });
      }),
  })
  .strict();
export type IdentityConfig = z.output<typeof identityConfigSchema>;

/**
 * One entry of a connection's `allow` list. A caller is allowed when any entry matches.
 *
 * - `subject`: an OIDC `sub` (optionally pinned to one `issuer`, since two providers may reuse a subject).
 * - `group`: a group from the OIDC token's groups claim.
 * - `email`: an OIDC email, compared case-insensitively; `*@example.com` matches a whole domain.
 * - `key`: a gateway key by its name.
 */
export const allowRuleSchema = z.union([
  z.object({ subject: z.string().min(1), issuer: issuerUrl.optional() }).strict(),
  z.object({ group: z.string().min(1) }).strict(),
  z
    .object({
      email: z.string().regex(/^(\*|[^@\s*]+)@[^@\s*]+$/, 'must be an email address or *@domain'),
    })
    .strict(),
  z.object({ key: z.string().min(1) }).strict(),
]);
export type AllowRule = z.output<typeof allowRuleSchema>;

/** A connection's `allow` list. Whether an absent list means "everyone authenticated" is the caller's decision. */
export const allowListSchema = z.array(allowRuleSchema);
export type AllowList = z.output<typeof allowListSchema>;

/**
 * Whether `principal` matches any rule of `allow`. An empty list allows nobody, and the anonymous principal matches
 * no rule: deciding what an absent list means is left to the caller.
 */
export function isAllowed(principal: Principal, allow: readonly AllowRule[]): boolean {
  return allow.some((rule) => matches(principal, rule));
}

function matches(p: Principal, rule: AllowRule): boolean {
  if ('key' in rule) return p.method === 'gateway_key' && p.keyName === rule.key;
  // The remaining rules speak of people and services known to an identity provider, never of gateway keys, whose
  // names are chosen by whoever creates them and could otherwise be made to collide with a subject or a group.
  if (p.method !== 'oidc') return false;
  if ('subject' in rule) return p.subject === rule.subject && (rule.issuer === undefined || rule.issuer === p.issuer);
  if ('group' in rule) return p.groups?.includes(rule.group) ?? false;
  if (p.email === undefined) return false;
  const email = p.email.toLowerCase();
  const wanted = rule.email.toLowerCase();
  return wanted.startsWith('*@') ? email.endsWith(wanted.slice(1)) : email === wanted;
}
