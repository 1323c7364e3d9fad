/**
 * "Sign in with <IdP>" on the web UI: the OAuth 2.0 authorization-code flow with PKCE, run by the browser as a public
 * client (no secret) against one of the OIDC issuers the gateway trusts (`admin.ui.oidc`). The gateway's part is
 * small: it tells the UI which issuer and client to use (`GET /api/v1/ui-config`) and lets the page's
 * Content-Security-Policy reach that issuer (discovery, token endpoint). The token the browser obtains is then sent
 * like a pasted one and verified by the admin API like any other OIDC token, except that an ID token's audience is
 * the UI's client id, which the admin listener alone accepts (see {@link uiClientAudience}).
 *
 * RFC 6749 §4.1 (authorization code), RFC 7636 (PKCE), OAuth 2.0 for Browser-Based Apps (public clients, CORS token
 * requests), OpenID Connect Core §3.1 (nonce) and Discovery §4.
 */
import { z } from 'zod';
import { audienceList, type OidcIssuerConfig } from '../identity/identity-config.js';
import type { ClientAudience } from '../identity/oidc-verifier.js';

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
     * The token the UI sends to the API: `id_token` (default; its audience is `client_id`, which the admin listener
     * accepts on its own, the proxy never) or `access_token` (for providers that issue JWT access tokens for an API
     * audience, one of the issuer's `audience` values).
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
 * The UI's client, whose ID tokens the admin listener accepts besides the issuer's `audience`; none with
 * `token: access_token`, whose tokens are for an audience of the issuer's own. Not added to `identity.oidc[].audience`:
 * that list is also the proxy's, and every person who can sign in to the UI would hold a credential for the Claude API.
 */
export function uiClientAudience(signIn: UiSignInConfig | undefined): ClientAudience | undefined {
  return signIn?.token === 'id_token' ? { issuer: signIn.issuer, clientId: signIn.client_id } : undefined;
}

/**
 * Problems of `admin.ui.oidc` against `identity.oidc`, with the path of the key to fix: the issuer must be trusted.
 */
export function uiSignInProblems(
  signIn: UiSignInConfig | undefined,
  issuers: readonly Pick<OidcIssuerConfig, 'issuer'>[],
): Array<{ path: (string | number)[]; message: string }> {
  if (!signIn || issuers.some((i) => i.issuer === signIn.issuer)) return [];
  return [
    {
      path: ['admin', 'ui', 'oidc', 'issuer'],
      message:
        `must be one of identity.oidc[].issuer (the admin API verifies the UI's tokens with it); ` +
        `configured: ${issuers.map((i) => i.issuer).join(', ') || 'none'}`,
    },
  ];
}

/**
 * What start-up should warn about: the UI's client id among the audiences of its issuer in `identity.oidc`, as
 * earlier versions required. It is legal (a provider may use one client id for an API and its single-page app), but
 * then every ID token issued to the UI is a credential on the proxy too, spending the connections' keys.
 */
export function uiSignInWarnings(
  signIn: UiSignInConfig | undefined,
  issuers: readonly Pick<OidcIssuerConfig, 'issuer' | 'audience'>[],
): string[] {
  const client = uiClientAudience(signIn);
  if (!client) return [];
  const index = issuers.findIndex((i) => i.issuer === client.issuer);
  const audience = issuers[index]?.audience;
  const audiences = audienceList(audience);
  if (!audiences.includes(client.clientId)) return [];
  return [
    `identity.oidc[${index}].audience includes admin.ui.oidc.client_id "${client.clientId}": every ID token the web ` +
      `UI signs in with is then also accepted by the Claude API proxy. Remove it from identity.oidc[${index}].audience ` +
      '(the admin listener accepts the UI’s ID tokens on its own) unless that is intended',
  ];
}
