/**
 * A real OpenID provider (panva's `oidc-provider`), in process on 127.0.0.1, for tests of anything that verifies
 * identity tokens: the unit tests of `src/identity/` and the end-to-end tests of the gateway.
 *
 * The provider itself serves discovery, the JWKS and a token endpoint that issues JWT access tokens through the
 * client-credentials grant (what a CI job or daemon would use). Tokens for people — with name, email and groups — and
 * deliberately broken tokens (expired, wrong audience, tampered, …) are minted by {@link OidcTestProvider.mintToken}
 * with the very private key the provider publishes, because driving a browser login flow in a unit test buys nothing
 * a verifier can tell apart.
 *
 * For tests that do drive a browser (the web UI's sign-in), public clients can be registered for the authorization-code
 * flow with PKCE, and the provider's login and consent pages complete at once as the person chosen with
 * {@link OidcTestProvider.signInAs} (or refuse, as someone pressing Cancel would).
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK, type JWTPayload } from 'jose';
// @ts-expect-error -- oidc-provider ships no type declarations; the small surface used here is typed below.
import ProviderModule from 'oidc-provider';

/** The slice of oidc-provider's `Provider` this helper uses. */
interface OidcProviderInstance {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  interactionDetails(
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<{
    prompt: { name: string; details: Record<string, unknown> };
    params: Record<string, unknown>;
    session?: { accountId: string };
  }>;
  interactionFinished(
    req: IncomingMessage,
    res: ServerResponse,
    result: Record<string, unknown>,
    opts?: { mergeWithLastSubmission?: boolean },
  ): Promise<void>;
  readonly Grant: new (props: { accountId: string; clientId: string }) => {
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: readonly string[]): void;
    save(): Promise<string>;
  };
}
type ProviderConstructor = new (issuer: string, configuration: Record<string, unknown>) => OidcProviderInstance;
const Provider = ProviderModule as ProviderConstructor;

/** The client registered for the client-credentials grant. */
export const TEST_CLIENT = { id: 'ci-runner', secret: 'ci-runner-secret-that-is-long-enough' } as const;

/** Someone who signs in through the browser: the claims of their ID token besides `sub`. */
export interface BrowserUser {
  readonly subject: string;
  readonly name?: string;
  readonly email?: string;
  readonly groups?: readonly string[];
}

/** A signing key: the private JWK (with `kid` and `alg`) and its public half as published. */
interface SigningKey {
  readonly privateJwk: JWK;
  readonly publicJwk: JWK;
}

export interface MintOptions {
  /** `aud`; default `vigil`. Pass `null` to leave it out. */
  readonly audience?: string | readonly string[] | null;
  /** `iss`; default the provider's issuer. */
  readonly issuer?: string;
  /** `sub`; default `user-1`. */
  readonly subject?: string;
  /** Seconds from now until `exp`; negative for an already expired token. Default 300. `null` leaves `exp` out. */
  readonly expiresIn?: number | null;
  /** Seconds from now for `nbf`; default: no `nbf`. */
  readonly notBefore?: number;
  /**
   * Sign with a fresh key the provider has never published (its `kid` is unknown to any JWKS), instead of the
   * provider's current key.
   */
  readonly unpublishedKey?: boolean;
}

export interface OidcTestProvider {
  /** `http://127.0.0.1:<port>` — discovery is at `<issuer>/.well-known/openid-configuration`. */
  readonly issuer: string;
  /** The public JWKS the provider currently publishes. */
  readonly jwks: { readonly keys: readonly JWK[] };
  /** The `kid` of the key currently used to sign. */
  readonly currentKid: string;
  /** A JWT access token from the real token endpoint (client-credentials grant) whose `aud` is `audience`. */
  clientCredentialsToken(audience: string): Promise<string>;
  /**
   * Sign arbitrary claims with the provider's current key (or an unpublished one), RS256. `iss`, `aud`, `exp`, `iat`
   * and `jti` are set from `opts`; `sub` defaults to `opts.subject` and can be removed with `{ sub: undefined }`.
   */
  mintToken(claims?: Record<string, unknown>, opts?: MintOptions): Promise<string>;
  /**
   * Register a public client (no secret; PKCE required) for the authorization-code flow, redirecting only to
   * `redirectUris`. Its ID tokens carry `aud` = `clientId`; the provider answers its token requests with CORS.
   */
  registerPublicClient(clientId: string, redirectUris: readonly string[]): void;
  /** Who the login page signs in from now on, or `'deny'`: the person cancels (`error=access_denied`). */
  signInAs(who: BrowserUser | 'deny'): void;
  /** Publish a new signing key with a new `kid` and sign with it from now on; the old key stays published if asked. */
  rotateKeys(opts?: { keepOld?: boolean }): Promise<void>;
  /** Stop listening: the issuer becomes unreachable (connection refused). */
  stop(): Promise<void>;
  /** Listen again on the same port. */
  start(): Promise<void>;
  /** Stop for good. */
  close(): Promise<void>;
}

/**
 * A Map-backed adapter: the same thing as oidc-provider's built-in development adapter, declared here so the
 * provider does not warn about it in every test run. Nothing outlives the test process anyway.
 */
class MemoryAdapter {
  private readonly items = new Map<string, Record<string, unknown>>();
  async upsert(id: string, payload: Record<string, unknown>): Promise<void> {
    this.items.set(id, payload);
  }
  async find(id: string): Promise<Record<string, unknown> | undefined> {
    return this.items.get(id);
  }
  async findByUid(uid: string): Promise<Record<string, unknown> | undefined> {
    return [...this.items.values()].find((p) => p['uid'] === uid);
  }
  async findByUserCode(code: string): Promise<Record<string, unknown> | undefined> {
    return [...this.items.values()].find((p) => p['userCode'] === code);
  }
  async consume(id: string): Promise<void> {
    const item = this.items.get(id);
    if (item) item['consumed'] = Math.floor(Date.now() / 1000);
  }
  async destroy(id: string): Promise<void> {
    this.items.delete(id);
  }
  async revokeByGrantId(grantId: string): Promise<void> {
    for (const [id, p] of this.items) if (p['grantId'] === grantId) this.items.delete(id);
  }
}

async function newSigningKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomUUID();
  const privateJwk: JWK = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return { privateJwk, publicJwk };
}

/** The URN a test asks for as RFC 8707 resource indicator to get a token for `audience`. */
function resourceFor(audience: string): string {
  return `urn:vigil-test:audience:${encodeURIComponent(audience)}`;
}

/**
 * Start an in-process OpenID provider on 127.0.0.1:0.
 *
 * @param opts.listening - `false` reserves the port (so the issuer URL is known) but leaves the provider down until
 *   `start()`, for tests of a verifier that starts while its identity provider is unreachable.
 */
export async function startOidcProvider(opts: { listening?: boolean } = {}): Promise<OidcTestProvider> {
  let keys: SigningKey[] = [await newSigningKey()];
  let handler: (req: IncomingMessage, res: ServerResponse) => void = () => {};
  let provider: OidcProviderInstance | undefined;
  const publicClients: Array<Record<string, unknown>> = [];
  const people = new Map<string, BrowserUser>();
  let signingIn: BrowserUser | 'deny' = { subject: 'user-1' };

  /**
   * The provider's login and consent pages, without a page: the login is whoever {@link signingIn} names, consent is
   * granted for what the client asked.
   */
  const interact = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const p = provider!;
    const { prompt, params, session } = await p.interactionDetails(req, res);
    if (signingIn === 'deny') {
      await p.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'End-User aborted interaction' },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    if (prompt.name === 'login') {
      people.set(signingIn.subject, signingIn);
      await p.interactionFinished(req, res, { login: { accountId: signingIn.subject } });
      return;
    }
    const grant = new p.Grant({ accountId: session!.accountId, clientId: String(params['client_id']) });
    const missingScope = prompt.details['missingOIDCScope'] as string[] | undefined;
    const missingClaims = prompt.details['missingOIDCClaims'] as string[] | undefined;
    if (missingScope) grant.addOIDCScope(missingScope.join(' '));
    if (missingClaims) grant.addOIDCClaims(missingClaims);
    await p.interactionFinished(
      req,
      res,
      { consent: { grantId: await grant.save() } },
      { mergeWithLastSubmission: true },
    );
  };

  const server: Server = createServer((req, res) => {
    if (req.url?.startsWith('/interaction/')) {
      interact(req, res).catch((err: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`interaction failed: ${err instanceof Error ? err.message : String(err)}`);
      });
      return;
    }
    handler(req, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  // oidc-provider builds its keystore once, so a rotation builds a new provider for the same issuer and swaps the
  // request handler; clients of the issuer observe what they would at a real provider: a new kid in the JWKS.
  const build = (): void => {
    provider = new Provider(issuer, {
      adapter: MemoryAdapter,
      // Set rather than defaulted: the provider prints a notice for each default it is left with, in every test run.
      ttl: {
        ClientCredentials: 300,
        AccessToken: 300,
        AuthorizationCode: 60,
        IdToken: 300,
        Interaction: 600,
        Session: 3600,
        Grant: 3600,
      },
      // The default's rule: a public client's token requests are allowed from the origins it redirects to.
      clientBasedCORS: (_ctx: unknown, origin: string, client: { redirectUris: readonly string[] }) =>
        client.redirectUris.some((uri) => new URL(uri).origin === origin),
      jwks: { keys: keys.map((k) => k.privateJwk) },
      clients: [
        {
          client_id: TEST_CLIENT.id,
          client_secret: TEST_CLIENT.secret,
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
        },
        ...publicClients,
      ],
      // People who signed in through the browser, with the claims their ID tokens carry.
      findAccount: (_ctx: unknown, sub: string) => {
        const person = people.get(sub);
        if (!person) return undefined;
        return {
          accountId: sub,
          claims: () => ({
            sub,
            ...(person.name !== undefined ? { name: person.name } : {}),
            ...(person.email !== undefined ? { email: person.email, email_verified: true } : {}),
            ...(person.groups !== undefined ? { groups: person.groups } : {}),
          }),
        };
      },
      claims: { openid: ['sub'], profile: ['name'], email: ['email', 'email_verified'], groups: ['groups'] },
      // As Keycloak, Entra ID and Okta do: the ID token of the code flow carries the claims its scopes ask for (the
      // spec's default puts them at the userinfo endpoint only).
      conformIdTokenClaims: false,
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        // JWT (rather than opaque) access tokens are issued only for a resource server that asks for them.
        resourceIndicators: {
          enabled: true,
          defaultResource: () => undefined,
          getResourceServerInfo: (_ctx: unknown, resource: string) => {
            const prefix = 'urn:vigil-test:audience:';
            if (!resource.startsWith(prefix)) throw new Error(`unexpected resource indicator ${resource}`);
            return {
              audience: decodeURIComponent(resource.slice(prefix.length)),
              scope: '',
              accessTokenFormat: 'jwt',
              accessTokenTTL: 300,
              jwt: { sign: { alg: 'RS256' } },
            };
          },
        },
      },
    });
    handler = provider.callback();
  };
  build();

  const current = (): SigningKey => keys[0]!;
  const listening = { value: true };

  const stop = async (): Promise<void> => {
    if (!listening.value) return;
    listening.value = false;
    const closed = once(server, 'close');
    server.close();
    // Idle keep-alive sockets would otherwise let a client keep talking to a "stopped" provider.
    server.closeAllConnections();
    await closed;
  };

  const start = async (): Promise<void> => {
    if (listening.value) return;
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    listening.value = true;
  };

  if (opts.listening === false) await stop();

  return {
    issuer,
    get jwks() {
      return { keys: keys.map((k) => k.publicJwk) };
    },
    get currentKid() {
      return current().privateJwk.kid!;
    },

    async clientCredentialsToken(audience) {
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`${TEST_CLIENT.id}:${TEST_CLIENT.secret}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource: resourceFor(audience) }),
      });
      const body = (await res.json()) as { access_token?: string; error?: string; error_description?: string };
      if (!res.ok || !body.access_token) {
        throw new Error(`token endpoint answered ${res.status}: ${body.error ?? ''} ${body.error_description ?? ''}`);
      }
      return body.access_token;
    },

    async mintToken(claims = {}, o = {}) {
      const signing = o.unpublishedKey ? await newSigningKey() : current();
      const key = await importJWK(signing.privateJwk, 'RS256');
      const now = Math.floor(Date.now() / 1000);
      const payload: JWTPayload = { sub: o.subject ?? 'user-1', ...claims };
      const jwt = new SignJWT(payload)
        .setProtectedHeader({ alg: 'RS256', kid: signing.privateJwk.kid!, typ: 'JWT' })
        .setIssuer(o.issuer ?? issuer)
        .setIssuedAt(now)
        .setJti(randomUUID());
      const audience = o.audience === undefined ? 'vigil' : o.audience;
      if (audience !== null) jwt.setAudience(typeof audience === 'string' ? audience : [...audience]);
      const expiresIn = o.expiresIn === undefined ? 300 : o.expiresIn;
      if (expiresIn !== null) jwt.setExpirationTime(now + expiresIn);
      if (o.notBefore !== undefined) jwt.setNotBefore(now + o.notBefore);
      return jwt.sign(key);
    },

    registerPublicClient(clientId, redirectUris) {
      publicClients.push({
        client_id: clientId,
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: [...redirectUris],
      });
      // oidc-provider reads static clients once: a provider with the new client takes over, as rotateKeys does.
      build();
    },

    signInAs(who) {
      signingIn = who;
    },

    async rotateKeys(o = {}) {
      const next = await newSigningKey();
      // oidc-provider signs with the first matching key, so the new one goes first.
      keys = o.keepOld ? [next, ...keys] : [next];
      build();
    },

    stop,
    start,
    async close() {
      await stop();
    },
  };
}
