// "Sign in with <IdP>": the OAuth 2.0 authorization-code flow with PKCE, run by this page as a public client (no
// secret) of the OpenID provider the gateway names in /ui-config (admin.ui.oidc). The page finds the provider's
// endpoints by discovery, sends the browser to its login with a fresh state, nonce and PKCE challenge (kept in this
// tab's sessionStorage), and on the way back trades the code for tokens itself (a CORS request to the token endpoint,
// which the page's CSP allows for the issuer's origin). The token it keeps is then used exactly like a pasted one.
//
// RFC 6749 §4.1 and §10.12 (state), RFC 7636 (PKCE), RFC 9207 (iss), OpenID Connect Core §3.1 (nonce, ID token),
// OpenID Connect Discovery §4.

/** What a sign-in in progress remembers across the trip to the provider: this tab only, one use. */
const PENDING_KEY = 'vigil.sign-in';

function base64url(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomToken(bytes) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** Where the provider sends the browser back: this UI's own address, without file, query or fragment. */
function redirectUri() {
  return new URL('./', location.href).href;
}

/** The payload of a JWT, unverified: the admin API verifies the signature of every token it is sent. */
function jwtClaims(jwt) {
  const part = String(jwt).split('.')[1];
  if (!part) throw new Error('The provider’s ID token is not a JWT.');
  const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
  const binary = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0))));
}

/** The provider's OpenID configuration, checked for what this flow needs. */
async function discover(signIn) {
  const url = `${signIn.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  let res;
  try {
    res = await fetch(url, { credentials: 'omit', cache: 'no-store' });
  } catch (err) {
    throw new Error(`${signIn.name} (${url}) could not be reached: ${err.message}.`);
  }
  if (!res.ok) throw new Error(`${signIn.name}’s OpenID configuration (${url}) answered ${res.status}.`);
  const d = await res.json();
  if (d.issuer !== signIn.issuer) {
    throw new Error(`The OpenID configuration at ${url} is for another issuer (${d.issuer}).`);
  }
  if (typeof d.authorization_endpoint !== 'string' || typeof d.token_endpoint !== 'string') {
    throw new Error(`${signIn.name}’s OpenID configuration names no authorization or token endpoint.`);
  }
  if (new URL(d.token_endpoint).origin !== new URL(signIn.issuer).origin) {
    throw new Error(
      `${signIn.name}’s token endpoint (${d.token_endpoint}) is not on the issuer’s origin, the only one this page ` +
        'may connect to besides the gateway (Content-Security-Policy). Paste a token instead.',
    );
  }
  const methods = d.code_challenge_methods_supported;
  if (Array.isArray(methods) && !methods.includes('S256')) {
    throw new Error(`${signIn.name} does not support PKCE with S256, which this sign-in needs.`);
  }
  return d;
}

/**
 * Start signing in: send the browser to the provider's login. Resolves only if it could not (the page is leaving).
 *
 * @param signIn - `/ui-config`'s `sign_in`: name, issuer, client_id, scope, token.
 * @throws Error saying why the sign-in cannot start.
 */
export async function startSignIn(signIn) {
  // crypto.subtle exists in secure contexts only: https, or http to localhost / 127.0.0.1.
  if (!globalThis.crypto || !crypto.subtle) {
    throw new Error(
      `Signing in with ${signIn.name} needs this page on https (or on localhost): browsers offer the SHA-256 that ` +
        'PKCE uses to secure pages only. Paste a token instead.',
    );
  }
  const d = await discover(signIn);
  const pending = {
    state: randomToken(16),
    nonce: randomToken(16),
    verifier: randomToken(32),
    name: signIn.name,
    issuer: signIn.issuer,
    clientId: signIn.client_id,
    token: signIn.token,
    redirectUri: redirectUri(),
    tokenEndpoint: d.token_endpoint,
    returnTo: location.hash,
  };
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(pending.verifier));
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  const url = new URL(d.authorization_endpoint);
  const params = {
    response_type: 'code',
    client_id: pending.clientId,
    redirect_uri: pending.redirectUri,
    scope: signIn.scope,
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: base64url(new Uint8Array(digest)),
    code_challenge_method: 'S256',
  };
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  location.assign(url.href);
}

/**
 * The provider's answer in this page's address (`?code=…&state=…`, or `?error=…`), taken: the sign-in it belongs
 * to is forgotten (an answer is good once) and the caller should drop the query from the address, returning to
 * `returnTo` (the view the sign-in started from). Null when the address carries no answer.
 */
export function takeSignInAnswer() {
  const answer = new URLSearchParams(location.search);
  if (!answer.has('state') && !answer.has('code') && !answer.has('error')) return null;
  const raw = sessionStorage.getItem(PENDING_KEY);
  sessionStorage.removeItem(PENDING_KEY);
  let pending = null;
  try {
    pending = raw ? JSON.parse(raw) : null;
  } catch {
    // Not ours to read: as good as no sign-in in progress.
  }
  return { answer, pending, returnTo: pending ? pending.returnTo : location.hash };
}

/**
 * Finish a sign-in from a taken answer: check that it answers the sign-in this tab started (state) from the
 * provider asked (iss), trade the code for tokens with the PKCE verifier, and check the ID token was issued for this
 * sign-in (nonce) to this client by that issuer.
 *
 * @returns the token to send to the API (the ID token, or the access token if admin.ui.oidc.token says so).
 * @throws Error saying what went wrong, for the sign-in page.
 */
export async function finishSignIn({ answer, pending }) {
  // Without this check anyone could send a browser here with their own code and sign it in as them (RFC 6749 §10.12).
  if (!pending || !pending.state || answer.get('state') !== pending.state) {
    throw new Error(
      'This answer from the identity provider does not belong to a sign-in started in this tab (its state does not ' +
        'match), so it was ignored.',
    );
  }
  const name = pending.name;
  if (answer.has('iss') && answer.get('iss') !== pending.issuer) {
    throw new Error(`This answer comes from ${answer.get('iss')}, not from ${pending.issuer}: it was ignored.`);
  }
  const error = answer.get('error');
  if (error) {
    const description = answer.get('error_description');
    const detail = `${error}${description ? `: ${description}` : ''}`;
    throw new Error(
      error === 'access_denied'
        ? `Sign-in with ${name} was cancelled or refused (${detail}).`
        : `${name} could not sign you in (${detail}).`,
    );
  }
  const code = answer.get('code');
  if (!code) throw new Error(`${name} answered without a code.`);

  let res;
  try {
    res = await fetch(pending.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        redirect_uri: pending.redirectUri,
        client_id: pending.clientId,
        code_verifier: pending.verifier,
      }),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (err) {
    throw new Error(
      `${name}’s token endpoint could not be reached (${err.message}); it must allow this page’s origin (CORS).`,
    );
  }
  let tokens = {};
  try {
    tokens = (await res.json()) ?? {};
  } catch {
    // Not JSON: the status says enough.
  }
  if (!res.ok) {
    const why = tokens.error ? `${tokens.error}${tokens.error_description ? `: ${tokens.error_description}` : ''}` : '';
    throw new Error(`${name} refused to trade the code for a token (${res.status}${why ? `, ${why}` : ''}).`);
  }
  if (typeof tokens.id_token !== 'string') throw new Error(`${name} sent no ID token (is openid among the scopes?).`);
  // The ID token came straight from the token endpoint over the connection this page opened, so its claims are the
  // provider's (OpenID Connect Core §3.1.3.7); the signature is the API's to check, on every call.
  const claims = jwtClaims(tokens.id_token);
  if (claims.nonce !== pending.nonce) throw new Error(`${name}’s ID token was not issued for this sign-in (nonce).`);
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (claims.iss !== pending.issuer || !audiences.includes(pending.clientId)) {
    throw new Error(`${name}’s ID token is not from ${pending.issuer} for ${pending.clientId}.`);
  }
  const token = pending.token === 'access_token' ? tokens.access_token : tokens.id_token;
  if (typeof token !== 'string') throw new Error(`${name} sent no access token.`);
  return token;
}
