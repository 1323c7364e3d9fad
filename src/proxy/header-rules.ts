/**
 * Which headers cross the gateway. RFC 9110 §7.6.1: hop-by-hop headers (and any named in `Connection`) belong to one
 * connection and are never forwarded. The caller's credentials (and cookies) are removed and replaced by the
 * connection's own; Vigil's own `x-vigil-*` headers are for the gateway. Everything else — anthropic-version, anthropic-beta, unknown
 * headers — passes unchanged.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Set by the HTTP client for the upstream connection, not copied from the caller. */
const REQUEST_ONLY_LOCAL = new Set(['host', 'content-length', 'expect']);
/**
 * The caller's credentials, never sent upstream. `cookie` too: the Anthropic API takes none, and a browser sends the
 * gateway host's cookies (other applications' sessions, whatever their port) with every call (the recorder keeps
 * none of these either).
 */
const CALLER_CREDENTIALS = new Set(['authorization', 'x-api-key', 'cookie']);

function connectionTokens(value: string | string[] | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value.join(',') : value;
  const tokens = text
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t && t !== 'keep-alive' && t !== 'close');
  return tokens.length ? new Set(tokens) : undefined;
}

/** Headers to send upstream: the caller's minus hop-by-hop, credentials and x-vigil-*, plus the connection's credential. */
export function upstreamRequestHeaders(
  incoming: IncomingHttpHeaders,
  credential: { header: 'x-api-key' | 'authorization'; value: string } | null,
  overrides?: Record<string, string>,
): Record<string, string | string[]> {
  const named = connectionTokens(incoming.connection);
  const out: Record<string, string | string[]> = {};
  for (const key in incoming) {
    const v = incoming[key];
    if (v === undefined) continue;
    if (HOP_BY_HOP.has(key) || REQUEST_ONLY_LOCAL.has(key) || CALLER_CREDENTIALS.has(key)) continue;
    if (key.startsWith('x-vigil-') || named?.has(key)) continue;
    out[key] = v;
  }
  if (overrides) Object.assign(out, overrides);
  if (credential)
    out[credential.header] = credential.header === 'authorization' ? `Bearer ${credential.value}` : credential.value;
  return out;
}

/** Headers to send the client: upstream's minus hop-by-hop. */
export function clientResponseHeaders(upstream: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const named = connectionTokens(upstream.connection);
  const out: OutgoingHttpHeaders = {};
  for (const key in upstream) {
    const v = upstream[key];
    if (v === undefined || HOP_BY_HOP.has(key) || named?.has(key)) continue;
    out[key] = v;
  }
  return out;
}
