// The admin REST API as the UI calls it: same origin, `Authorization: Bearer <token>` when a token was given.
// The token is kept in sessionStorage (this tab only, gone when it closes), never in localStorage or a cookie: a
// cookie would be sent by the browser on its own (CSRF), localStorage would outlive the session.

const TOKEN_KEY = 'vigil.token';
const BASE = '/api/v1';

/** An error answered by the API, with its status and its own message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

let onUnauthenticated = () => {};

/** Who to tell when the API answers 401 (the app shows its sign-in view). */
export function setUnauthenticatedHandler(fn) {
  onUnauthenticated = fn;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

async function request(path, { method = 'GET', body, signal, signIn = true } = {}) {
  const headers = {};
  const token = getToken();
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${BASE}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    credentials: 'omit',
    cache: 'no-store',
  });
  if (res.ok) return res;
  let message = `${res.status} ${res.statusText}`;
  try {
    const json = await res.json();
    if (json && json.error && json.error.message) message = json.error.message;
  } catch {
    // Not JSON (a proxy in front, say): the status line is all there is to show.
  }
  const err = new ApiError(res.status, message);
  if (res.status === 401 && signIn) onUnauthenticated(err);
  throw err;
}

/**
 * Call the API and parse its JSON answer.
 * Options: `method`, `body` (sent as JSON), `signal`, `signIn: false` to not switch to the sign-in view on 401.
 *
 * @throws ApiError with the API's message, or the fetch's own error (network, abort).
 */
export async function api(path, options) {
  const res = await request(path, options);
  return res.json();
}

let config = null;

/** What the gateway tells its UI before sign-in (`/ui-config`): outcomes; asked once per page load. */
export function uiConfig() {
  config ??= api('/ui-config', { signIn: false }).catch((err) => {
    config = null; // asked again next time: a gateway that was restarting may answer then
    throw err;
  });
  return config;
}

/** Fetch an export with the auth header and hand it to the browser as a download (Blob + object URL). */
export async function download(path, filename, options) {
  const res = await request(path, options);
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  // The download has taken its copy once click() returns; revoke a little later for slower browsers.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Whether an error is only the abort of a view the user navigated away from. */
export function isAbort(err) {
  return err && err.name === 'AbortError';
}
