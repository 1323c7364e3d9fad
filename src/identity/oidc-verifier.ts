/**
 * Verifies OIDC bearer tokens (JWTs from the company's identity provider) and turns them into a {@link Principal}.
 *
 * Keys come from each issuer's JWKS, found through OpenID discovery and cached: a token whose `kid` is not cached
 * triggers one refetch per cool-down (that is how a key rotation at the provider is picked up), and if the provider
 * cannot be reached the cached keys keep verifying tokens while unknown kids fail closed. An issuer that cannot be
 * reached when Vigil starts is not fatal: discovery is retried when a token from it arrives.
 */
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type FetchImplementation,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { sameJson } from '../canonical-json.js';
import { VigilError } from '../errors.js';
import { egressFetch, egressProxy, type EgressProxy } from '../net/egress-proxy.js';
import { ASYMMETRIC_ALGORITHMS, audienceList, type OidcIssuerConfig } from './identity-config.js';
import type { Principal } from './principal.js';

export interface OidcVerifierOptions {
  /**
   * The fetch used for discovery and JWKS requests; default: each issuer's own, direct or through the proxy its
   * `proxy` (or the environment) names.
   */
  readonly fetch?: typeof fetch;
  /** Time allowed for one discovery or JWKS request, in milliseconds; default 5000. */
  readonly timeoutMs?: number;
  /**
   * The verifier this one replaces (a config reload): an issuer configured exactly as there keeps what it knows —
   * its discovered key set, and the last one fetched, which verifies while the provider cannot be reached — so that
   * adding an issuer does not lock out the callers of another whose provider is down at that moment.
   */
  readonly replacing?: OidcVerifier | undefined;
}

/** The configuration an issuer needs here: what the `identity.oidc` schema outputs. */
export type OidcVerifierIssuer = Pick<
  OidcIssuerConfig,
  'issuer' | 'audience' | 'groups_claim' | 'algorithms' | 'clock_skew' | 'jwks_cooldown'
> &
  Partial<Pick<OidcIssuerConfig, 'jwks_max_age' | 'proxy'>>;

/**
 * A client of one issuer whose ID tokens a caller of {@link OidcVerifier.verify} accepts besides the issuer's own
 * audience: the web UI's (`admin.ui.oidc.client_id`), on the admin listener only. An ID token's audience is the client
 * it was issued to (OpenID Connect Core §2), so accepting that client id everywhere would make every sign-in to the UI
 * a credential for the Claude API too.
 */
export interface ClientAudience {
  readonly issuer: string;
  readonly clientId: string;
}

export interface VerifyOptions {
  /** Also accept tokens issued to this client (see {@link ClientAudience}). */
  readonly client?: ClientAudience | undefined;
}

type RemoteJwks = ReturnType<typeof createRemoteJWKSet>;

/** What Vigil knows about one trusted issuer. */
interface IssuerState {
  readonly config: OidcVerifierIssuer;
  /** The proxy its discovery document is fetched through, or null: direct (its key set may go another way). */
  readonly proxy: EgressProxy | null;
  /** Fetches its discovery document and key set. */
  readonly fetch: typeof fetch;
  jwks?: RemoteJwks | undefined;
  /** A discovery in flight, shared by every request that needs it. */
  discovering?: Promise<RemoteJwks> | undefined;
  /** When discovery or a JWKS fetch last failed; within the cool-down after it nothing is fetched. */
  failedAt?: number | undefined;
  failure?: string | undefined;
  /** The last key set fetched, ready to verify with, while the provider cannot be reached (stale-if-error). */
  fallback?: JWTVerifyGetKey | undefined;
}

/** Thrown by the key resolver when the answer is known to be "no": passed through jose untouched. */
class KeyUnavailable extends Error {}

const MAX_ECHO = 120;

/** A claim value from an unverified token, safe and short enough to put in an error message. */
function echo(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > MAX_ECHO ? `${s.slice(0, MAX_ECHO)}…"` : s;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}

/** Verifies JWTs from the configured issuers. */
export class OidcVerifier {
  private readonly issuers = new Map<string, IssuerState>();
  private readonly timeoutMs: number;

  /** @throws ConfigError when an issuer's proxy cannot be read (going direct would bypass it). */
  constructor(configs: readonly OidcVerifierIssuer[], opts: OidcVerifierOptions = {}) {
    configs.forEach((config, i) => {
      const kept = opts.replacing?.issuers.get(config.issuer);
      if (kept && sameJson(kept.config, config)) {
        this.issuers.set(config.issuer, kept);
        return;
      }
      const where = `identity.oidc[${i}].proxy`;
      const proxy = egressProxy(config.issuer, config.proxy, where);
      this.issuers.set(config.issuer, { config, proxy, fetch: opts.fetch ?? egressFetch(config.proxy, where) });
    });
    this.timeoutMs = opts.timeoutMs ?? 5000;
  }

  /** Each issuer reached through a proxy, and the proxy (without its password): for start-up and config check. */
  get proxies(): ReadonlyArray<{ readonly issuer: string; readonly proxy: string; readonly from: string }> {
    return [...this.issuers.values()].flatMap((s) =>
      s.proxy ? [{ issuer: s.config.issuer, proxy: s.proxy.shown, from: s.proxy.from }] : [],
    );
  }

  /** How each issuer is configured, in order. */
  get issuerConfigs(): readonly OidcVerifierIssuer[] {
    return [...this.issuers.values()].map((s) => s.config);
  }

  /** The issuers this verifier trusts. */
  get issuerUrls(): readonly string[] {
    return [...this.issuers.keys()];
  }

  /**
   * Discover every issuer and fetch its keys, so that the first requests do not wait for it and a provider that goes
   * down soon after start does not lock everyone out.
   *
   * Issuers kept from the verifier this one replaces, whose keys are already known, are not asked again.
   *
   * @returns one warning per issuer that could not be reached; those are retried when a token from them arrives.
   *   Never rejects: an identity provider being down must not keep the gateway from starting.
   */
  async start(): Promise<string[]> {
    const warnings: string[] = [];
    await Promise.all(
      [...this.issuers.values()].map(async (state) => {
        if (state.jwks !== undefined) return;
        try {
          const jwks = await this.discover(state);
          await jwks.reload();
        } catch (err) {
          state.failedAt = Date.now();
          state.failure = describe(err);
          warnings.push(
            `identity.oidc issuer ${state.config.issuer} is unreachable (${state.failure}); ` +
              'tokens from it are refused until it can be reached, which is retried when one arrives',
          );
        }
      }),
    );
    return warnings;
  }

  /**
   * Verify a JWT and return who it identifies.
   *
   * @throws VigilError `UNAUTHENTICATED` with a message naming what is wrong (malformed, unsupported algorithm,
   *   unknown issuer, bad signature, unknown signing key, expired, not yet valid, wrong audience, provider
   *   unreachable, issued to another client). The message never contains the token.
   */
  async verify(token: string, options: VerifyOptions = {}): Promise<Principal> {
    const { alg, kid, iss } = this.inspect(token);
    const state = this.issuers.get(iss);
    if (!state) {
      throw unauthenticated(
        `token from unknown issuer ${echo(iss)}; trusted issuers: ${this.issuerUrls.join(', ') || 'none'}`,
      );
    }
    const { config } = state;
    if (!config.algorithms.includes(alg as (typeof config.algorithms)[number])) {
      throw unauthenticated(
        `unsupported algorithm ${echo(alg)} for issuer ${config.issuer}: accepted are ${config.algorithms.join(', ')}`,
      );
    }

    const own = audienceList(config.audience);
    const client = options.client?.issuer === config.issuer ? options.client.clientId : undefined;
    const audience = client === undefined || own.includes(client) ? own : [...own, client];

    const jwks = await this.jwksFor(state);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keyResolver(state, jwks), {
        issuer: config.issuer,
        audience,
        algorithms: [...config.algorithms],
        clockTolerance: config.clock_skew,
        // A token without an expiry would be good forever; one without a subject names nobody.
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      throw this.explain(err, config, audience, kid);
    }
    if (client !== undefined) checkAuthorizedParty(payload, own, client);
    return toPrincipal(payload, config);
  }

  /** Read what routing and the first checks need from the unverified token, rejecting what is not a signed JWT. */
  private inspect(token: string): { alg: string; kid: string | undefined; iss: string } {
    if (typeof token !== 'string' || token.split('.').length !== 3) {
      throw unauthenticated('malformed token: expected a signed JWT (three base64url segments)');
    }
    let header: ReturnType<typeof decodeProtectedHeader>;
    let payload: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
      payload = decodeJwt(token);
    } catch (err) {
      throw unauthenticated(`malformed token: ${describe(err)}`, err);
    }
    const { alg } = header;
    if (typeof alg !== 'string') throw unauthenticated('malformed token: no "alg" in its header');
    if (alg === 'none') throw unauthenticated('unsigned token (alg "none") rejected');
    // HMAC is refused outright: with a symmetric algorithm the "key" would be the provider's public key, which
    // anyone can fetch — the classic RS256→HS256 confusion attack.
    if (/^HS\d+$/i.test(alg)) {
      throw unauthenticated(`unsupported algorithm ${echo(alg)}: symmetric (HMAC) signatures are never accepted`);
    }
    if (!(ASYMMETRIC_ALGORITHMS as readonly string[]).includes(alg)) {
      throw unauthenticated(`unsupported algorithm ${echo(alg)}`);
    }
    if (typeof payload.iss !== 'string' || payload.iss === '')
      throw unauthenticated('token has no "iss" (issuer) claim');
    return { alg, kid: typeof header.kid === 'string' ? header.kid : undefined, iss: payload.iss };
  }

  /** The issuer's key set, discovering the issuer first if that has not succeeded yet. */
  private async jwksFor(state: IssuerState): Promise<RemoteJwks> {
    if (state.jwks) return state.jwks;
    if (!state.discovering && state.failedAt !== undefined && this.coolingDown(state)) {
      throw unauthenticated(
        `cannot verify token: identity provider ${state.config.issuer} is unreachable (${state.failure ?? 'unknown error'})`,
      );
    }
    try {
      return await this.discover(state);
    } catch (err) {
      state.failedAt = Date.now();
      state.failure = describe(err);
      throw unauthenticated(
        `cannot verify token: identity provider ${state.config.issuer} is unreachable (${state.failure})`,
        err,
      );
    }
  }

  private coolingDown(state: IssuerState): boolean {
    return state.failedAt !== undefined && Date.now() - state.failedAt < state.config.jwks_cooldown * 1000;
  }

  /** OpenID Connect Discovery 1.0 §4: fetch the provider metadata and set up its JWKS. */
  private discover(state: IssuerState): Promise<RemoteJwks> {
    state.discovering ??= (async () => {
      const { issuer } = state.config;
      const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
      const res = await state.fetch(url, {
        headers: { accept: 'application/json' },
        redirect: 'error',
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      if (res.status !== 200) throw new Error(`discovery at ${url} answered HTTP ${res.status}`);
      const meta = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown };
      // §4.3: the issuer in the metadata must be identical to the one it was fetched for, or tokens could be
      // verified with keys of a provider that merely hosts the document.
      if (meta.issuer !== issuer) {
        throw new Error(
          `discovery at ${url} names issuer ${echo(meta.issuer)}, not ${issuer}: fix identity.oidc[].issuer`,
        );
      }
      if (typeof meta.jwks_uri !== 'string' || !/^https?:\/\//.test(meta.jwks_uri)) {
        throw new Error(`discovery at ${url} has no usable jwks_uri`);
      }
      const jwks = createRemoteJWKSet(new URL(meta.jwks_uri), {
        timeoutDuration: this.timeoutMs,
        cooldownDuration: state.config.jwks_cooldown * 1000,
        cacheMaxAge: (state.config.jwks_max_age ?? 600) * 1000,
        [customFetch]: state.fetch as FetchImplementation,
      });
      state.jwks = jwks;
      state.failedAt = undefined;
      state.failure = undefined;
      state.fallback = undefined;
      return jwks;
    })().finally(() => {
      state.discovering = undefined;
    });
    return state.discovering;
  }

  /**
   * jose's remote key set, except that when the provider cannot be reached the last keys fetched keep working
   * (stale-if-error) instead of failing every token once the cache is older than `jwks_max_age`; a kid that is not
   * among them fails closed. After a failed fetch nothing is fetched again within the cool-down, so a provider that
   * is down does not add a connection attempt to every request.
   */
  private keyResolver(state: IssuerState, remote: RemoteJwks): JWTVerifyGetKey {
    return async (header, token) => {
      // remote.jwks() copies the key set: only asked for when the provider cannot be.
      if (this.coolingDown(state)) {
        const cached = remote.jwks();
        if (cached) return fromCache(state, cached, header, token);
      }
      try {
        const key = await remote(header, token);
        state.failedAt = undefined;
        state.fallback = undefined;
        return key;
      } catch (err) {
        if (
          err instanceof errors.JWKSNoMatchingKey ||
          err instanceof errors.JWKSMultipleMatchingKeys ||
          err instanceof errors.JOSENotSupported ||
          err instanceof errors.JWKSInvalid
        ) {
          throw err;
        }
        state.failedAt = Date.now();
        state.failure = describe(err);
        const cached = remote.jwks();
        if (cached) return fromCache(state, cached, header, token);
        throw new KeyUnavailable(
          `cannot verify token: identity provider ${state.config.issuer} is unreachable (${state.failure})`,
          { cause: err },
        );
      }
    };
  }

  /** Turn whatever verification threw into an UNAUTHENTICATED error that says why, without the token. */
  private explain(
    err: unknown,
    config: OidcVerifierIssuer,
    audience: readonly string[],
    kid: string | undefined,
  ): VigilError {
    if (err instanceof KeyUnavailable) return unauthenticated(err.message, err.cause);
    if (err instanceof errors.JWTExpired) {
      const exp =
        typeof err.payload['exp'] === 'number' ? ` at ${new Date(err.payload['exp'] * 1000).toISOString()}` : '';
      return unauthenticated(`token expired${exp}`, err);
    }
    if (err instanceof errors.JWTClaimValidationFailed) {
      const { claim, reason, payload } = err;
      if (claim === 'nbf') {
        const nbf =
          typeof payload['nbf'] === 'number' ? ` before ${new Date(payload['nbf'] * 1000).toISOString()}` : '';
        return unauthenticated(`token not yet valid${nbf}`, err);
      }
      if (claim === 'aud') {
        return unauthenticated(
          `wrong audience: token is for ${echo(payload.aud ?? null)}, expected ${audience.join(' or ')}`,
          err,
        );
      }
      if (claim === 'iss') return unauthenticated(`wrong issuer: expected ${config.issuer}`, err);
      if (reason === 'missing') return unauthenticated(`token has no "${claim}" claim`, err);
      return unauthenticated(`invalid "${claim}" claim: ${err.message}`, err);
    }
    if (err instanceof errors.JWSSignatureVerificationFailed) return unauthenticated('bad signature', err);
    if (err instanceof errors.JWKSNoMatchingKey) {
      return unauthenticated(
        `unknown signing key: issuer ${config.issuer} publishes no key with kid ${echo(kid ?? null)}`,
        err,
      );
    }
    if (err instanceof errors.JOSEAlgNotAllowed) return unauthenticated('unsupported algorithm', err);
    if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) {
      return unauthenticated(`malformed token: ${err.message}`, err);
    }
    if (err instanceof errors.JOSEError) return unauthenticated(`token rejected: ${err.message}`, err);
    return unauthenticated(`token could not be verified: ${describe(err)}`, err);
  }
}

/** Resolve a key from the last key set fetched, for when the provider cannot be asked. */
async function fromCache(
  state: IssuerState,
  cached: JSONWebKeySet,
  header: Parameters<JWTVerifyGetKey>[0],
  token: Parameters<JWTVerifyGetKey>[1],
): Promise<Awaited<ReturnType<JWTVerifyGetKey>>> {
  try {
    // Built once per outage, so keys are imported once rather than for every token.
    state.fallback ??= createLocalJWKSet(cached);
    return await state.fallback(header, token);
  } catch (err) {
    if (err instanceof errors.JWKSNoMatchingKey) {
      throw new KeyUnavailable(
        `unknown signing key: kid ${echo(header.kid ?? null)} is not among the cached keys of issuer ${state.config.issuer}, ` +
          `and the provider cannot be reached to fetch new ones (${state.failure ?? 'unknown error'})`,
        { cause: err },
      );
    }
    throw err;
  }
}

/**
 * A token let in only because its audience includes `client` must have been issued to that client: with more
 * audiences than that one, or with an `azp` (authorized party) at all, `azp` must be the client id (OpenID Connect Core
 * §2 and §3.1.3.7, items 3 to 5). Otherwise it is another client's token that merely names this one among its
 * audiences. A token for one of the issuer's own audiences is accepted as it would be anywhere.
 *
 * @throws VigilError `UNAUTHENTICATED` naming the audiences and the authorized party.
 */
function checkAuthorizedParty(payload: JWTPayload, own: readonly string[], client: string): void {
  const aud = audienceList(payload.aud);
  if (aud.some((a) => own.includes(a))) return;
  const azp = payload['azp'];
  if ((aud.length > 1 || azp !== undefined) && azp !== client) {
    throw unauthenticated(
      `token for ${echo(aud)} was not issued to client ${client}: its "azp" (authorized party) is ${echo(azp ?? null)}`,
    );
  }
}

function unauthenticated(message: string, cause?: unknown): VigilError {
  return new VigilError('UNAUTHENTICATED', message, cause === undefined ? undefined : { cause });
}

/** Read a claim by name, or by dotted path into nested objects (e.g. Keycloak's `realm_access.roles`). */
function claim(payload: JWTPayload, name: string): unknown {
  if (name in payload) return payload[name];
  let value: unknown = payload;
  for (const part of name.split('.')) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

function groupsOf(value: unknown): string[] | undefined {
  if (Array.isArray(value)) return value.filter((g): g is string => typeof g === 'string');
  if (typeof value === 'string') return value.split(/\s+/).filter(Boolean);
  return undefined;
}

function toPrincipal(payload: JWTPayload, config: OidcVerifierIssuer): Principal {
  const name = payload['name'] ?? payload['preferred_username'];
  const email = payload['email'];
  const groups = groupsOf(claim(payload, config.groups_claim));
  return {
    method: 'oidc',
    issuer: config.issuer,
    subject: payload.sub!,
    ...(typeof name === 'string' ? { name } : {}),
    // An address the provider says it has not verified is not an identity: a user could type in anyone's.
    ...(typeof email === 'string' && payload['email_verified'] !== false ? { email } : {}),
    ...(groups ? { groups } : {}),
  };
}
