/**
 * "Sign in with <IdP>" on the web UI: the OAuth 2.0 authorization-code flow with PKCE, run by the browser as a public
 * client (no secret) against one of the OIDC issuers the gateway trusts (`admin.ui.oidc`). The gateway's part is
 * small: it tells the UI which issuer and client to use (`GET /api/v1/ui-config`) and lets the page's
 * Content-Security-Policy reach that issuer (discovery, token endpoint). The token the browser obtains is then sent
 * like a pasted one and verified by the admin API like any other OIDC token.
 *
 * RFC 6749 §4.1 (authorization code), RFC 7636 (PKCE), OAuth 2.0 for Browser-Based Apps (public clients, CORS token
 * requests), OpenID Connect Core §3.1 (nonce) and Discovery §4.
 */
import { z } from 'zod';
import type { OidcIssuerConfig } from '../identity/identity-config.js';

/** `admin.ui.oidc`. */
export const uiSignInSchema = z
  .object({
    /** One of `identity.oidc[].issuer`: the admin API verifies what the UI obtains with the same settings. */
    issuer: z.string().min(1),
    /** The UI's client at the provider: public (no secret), PKCE S256, redirect URI `<the UI's address>/ui/`. */
    client_id: z.string().min(1),
    /** The button reads "Sign in with <name>"; default: the issuer's host name. */
    name: z.string().min(1).max(60).optional(),
    /** Scopes asked for; `openid` is required. Add what your provider needs to put the groups claim in the token. */
    scopes: z
      .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'must be a scope token (no spaces or quotes)'))
      .default(['openid', 'profile', 'email'])
      .refine((s) => s.includes('openid'), { message: 'must include openid' }),
    /**
     * The token the UI sends to the API: `id_token` (default; its audience is `client_id`, so that must be one of the
     * issuer's `audience` values) or `access_token` (for providers that issue JWT access tokens for an API audience).
     */
    token: z.enum(['id_token', 'access_token']).default('id_token'),
  })
  .strict();
export type UiSignInConfig = z.output<typeof uiSignInSchema>;

/** What the UI is told (`/ui-config`): all of it public, as in any browser app's source. */
export interface PublicSignIn {
  readonly name: string;
  readonly issuer: string;
  readonly client_id: string;
  readonly scope: string;
  readonly token: UiSignInConfig['token'];
}

export function publicSignIn(signIn: UiSignInConfig): PublicSignIn {
  return {
    name: signIn.name ?? new URL(signIn.issuer).hostname,
    issuer: signIn.issuer,
    client_id: signIn.client_id,
    scope: signIn.scopes.join(' '),
    token: signIn.token,
  };
}

/**
 * Origins the UI's pages may connect to besides their own: the issuer's, for discovery and the token request. A
 * provider whose token endpoint is on another origin is refused by the CSP; the UI says so.
 */
export function signInConnectSources(signIn: UiSignInConfig | undefined): string[] {
  return signIn ? [new URL(signIn.issuer).origin] : [];
}

/**
 * Problems of `admin.ui.oidc` against `identity.oidc`, with the path of the key to fix: the issuer must be trusted,
 * and an ID token (whose audience is the client id) must be an audience the API accepts.
 */
export function uiSignInProblems(
  signIn: UiSignInConfig | undefined,
  issuers: readonly Pick<OidcIssuerConfig, 'issuer' | 'audience'>[],
): Array<{ path: (string | number)[]; message: string }> {
  if (!signIn) return [];
  const issuer = issuers.find((i) => i.issuer === signIn.issuer);
  if (!issuer) {
    return [
      {
        path: ['admin', 'ui', 'oidc', 'issuer'],
        message:
          `must be one of identity.oidc[].issuer (the admin API verifies the UI's tokens with it); ` +
          `configured: ${issuers.map((i) => i.issuer).join(', ') || 'none'}`,
      },
    ];
  }
  const audiences = typeof issuer.audience === 'string' ? [issuer.audience] : issuer.audience;
  if (signIn.token === 'id_token' && !audiences.includes(signIn.client_id)) {
    return [
      {
        path: ['admin', 'ui', 'oidc', 'client_id'],
        message:
          `an ID token's audience is the client id: add "${signIn.client_id}" to the audience of identity.oidc ` +
          `issuer ${issuer.issuer} (now ${audiences.join(', ')}), or set admin.ui.oidc.token: access_token`,
      },
    ];
  }
  return [];
}
