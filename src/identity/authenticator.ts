/**
 * Who is calling: finds the credential in a request's headers and routes it to the verifier that understands it.
 *
 * Callers send an OIDC token or a gateway key either as `Authorization: Bearer …` or as `x-api-key: …`, because
 * that is what the Anthropic clients can be told to send (Claude Code: ANTHROPIC_AUTH_TOKEN → Authorization,
 * ANTHROPIC_API_KEY → x-api-key). The kind of credential is told by its shape, not by the header it came in.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { VigilError } from '../errors.js';
import { authenticateGatewayKey, GATEWAY_KEY_PREFIX, type GatewayKeyLookup } from './gateway-keys.js';
import type { OidcVerifier } from './oidc-verifier.js';
import { ANONYMOUS, type Principal } from './principal.js';

/** A credential as found in the headers; `kind` says which header it came in, not what it is. */
export interface Credential {
  readonly kind: 'bearer' | 'api-key';
  readonly token: string;
}

/** Request headers as Node's HTTP server gives them (lower-case names). */
export type RequestHeaders = Readonly<IncomingHttpHeaders>;

/** The caller, and for a gateway key the connections it is restricted to (empty: all). */
export interface Authentication {
  readonly principal: Principal;
  readonly keyConnections?: readonly string[];
}

export const MISSING_CREDENTIAL =
  'missing credential: send an OIDC token as Authorization: Bearer … or a gateway key as x-api-key';

const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;
// Three base64url segments; the signature segment may be empty only so that `alg: none` tokens reach the verifier
// and are refused there with a clear message rather than called "unrecognised".
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Find the caller's credential: `Authorization: Bearer <token>` first, else `x-api-key`.
 *
 * @returns null when neither header carries one.
 * @throws VigilError `UNAUTHENTICATED` 'malformed Authorization header' for an Authorization header that is not a
 *   single `Bearer <token>` (Basic credentials, a missing token, …).
 */
export function extractCredential(headers: RequestHeaders): Credential | null {
  const authorization = headers.authorization;
  if (authorization !== undefined) {
    const m = BEARER.exec(authorization);
    if (!m) throw new VigilError('UNAUTHENTICATED', 'malformed Authorization header: expected "Bearer <token>"');
    return { kind: 'bearer', token: m[1]! };
  }
  const apiKey = headers['x-api-key'];
  // Node joins repeated x-api-key headers with ", "; two keys are no key.
  if (Array.isArray(apiKey)) throw new VigilError('UNAUTHENTICATED', 'malformed x-api-key header: sent more than once');
  const token = typeof apiKey === 'string' ? apiKey.trim() : '';
  if (token === '') return null;
  if (/[\s,]/.test(token)) throw new VigilError('UNAUTHENTICATED', 'malformed x-api-key header: expected a single key');
  return { kind: 'api-key', token };
}

export interface AuthenticatorOptions {
  /** Verifies OIDC tokens; absent: OIDC tokens are refused. */
  readonly oidc?: OidcVerifier | undefined;
  /** Finds gateway keys in the store; absent: gateway keys are refused. */
  readonly keyLookup?: GatewayKeyLookup | undefined;
  /**
   * With neither `oidc` nor `keyLookup`: every caller is {@link ANONYMOUS} whatever it sends. With either: a caller
   * that sends no credential, or one that is neither a JWT nor a gateway key (such as the placeholder API key an SDK
   * insists on sending), is anonymous instead of refused; a credential that is a JWT or a gateway key must verify.
   * A function decides per request from the caller's address and headers (e.g. anonymous from loopback only).
   */
  readonly anonymousAllowed: boolean | ((remoteAddress: string | undefined, headers: RequestHeaders) => boolean);
  /**
   * Why an anonymous caller was refused when the reason is not simply a missing credential (a loopback caller whose
   * Host or Origin header is not this machine's); null or absent: the missing-credential message.
   */
  readonly anonymousRefusal?: (remoteAddress: string | undefined, headers: RequestHeaders) => string | null;
  /** Clock for gateway-key expiry, epoch milliseconds. */
  readonly now?: () => number;
}

/** Authenticates requests with the configured verifiers. */
export class Authenticator {
  private readonly oidc: OidcVerifier | undefined;
  private readonly keyLookup: GatewayKeyLookup | undefined;
  private readonly anonymousAllowed: (remoteAddress: string | undefined, headers: RequestHeaders) => boolean;
  private readonly anonymousRefusal: (remoteAddress: string | undefined, headers: RequestHeaders) => string | null;
  private readonly now: () => number;

  constructor(opts: AuthenticatorOptions) {
    this.oidc = opts.oidc;
    this.keyLookup = opts.keyLookup;
    const anonymous = opts.anonymousAllowed;
    this.anonymousAllowed = typeof anonymous === 'function' ? anonymous : () => anonymous;
    this.anonymousRefusal = opts.anonymousRefusal ?? (() => null);
    this.now = opts.now ?? Date.now;
  }

  /** Whether any way of proving identity is configured. */
  get identityConfigured(): boolean {
    return this.oidc !== undefined || this.keyLookup !== undefined;
  }

  /**
   * Authenticate a request by its headers.
   *
   * @param remoteAddress - the caller's address, passed to an `anonymousAllowed` function; it proves no identity.
   * @throws VigilError `UNAUTHENTICATED` naming what is missing or wrong; never containing the credential.
   */
  async authenticate(headers: RequestHeaders, remoteAddress?: string): Promise<Authentication> {
    const anonymousAllowed = this.anonymousAllowed(remoteAddress, headers);
    if (!this.identityConfigured) {
      if (anonymousAllowed) return { principal: ANONYMOUS };
      throw new VigilError(
        'UNAUTHENTICATED',
        'no identity is configured: anonymous calls are taken from this machine only, addressed to it (Host ' +
          'localhost, 127.0.0.1 or [::1]) and not from web pages served elsewhere',
      );
    }

    const credential = extractCredential(headers);
    if (!credential) {
      if (anonymousAllowed) return { principal: ANONYMOUS };
      throw new VigilError('UNAUTHENTICATED', this.anonymousRefusal(remoteAddress, headers) ?? MISSING_CREDENTIAL);
    }
    const { token } = credential;

    if (token.startsWith(GATEWAY_KEY_PREFIX)) {
      if (!this.keyLookup) throw new VigilError('UNAUTHENTICATED', 'gateway keys are not accepted by this gateway');
      const { principal, connections } = await authenticateGatewayKey(token, this.keyLookup, this.now());
      return { principal, keyConnections: connections };
    }

    if (JWT_SHAPE.test(token)) {
      if (!this.oidc) {
        throw new VigilError(
          'UNAUTHENTICATED',
          'OIDC tokens are not accepted by this gateway: no identity.oidc issuer is configured',
        );
      }
      return { principal: await this.oidc.verify(token) };
    }

    if (anonymousAllowed) return { principal: ANONYMOUS };
    // A placeholder key (an SDK insists on one) from a caller that was refused only for its Host or Origin.
    const refusal = this.anonymousRefusal(remoteAddress, headers);
    if (refusal !== null && !token.startsWith('sk-ant-')) throw new VigilError('UNAUTHENTICATED', refusal);
    const hint = token.startsWith('sk-ant-')
      ? ' (an Anthropic API key is not a gateway credential: the gateway holds its own)'
      : '';
    throw new VigilError(
      'UNAUTHENTICATED',
      `unrecognised credential${hint}: send an OIDC token (a JWT) or a gateway key (${GATEWAY_KEY_PREFIX}…)`,
    );
  }
}
