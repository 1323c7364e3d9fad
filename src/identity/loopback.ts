import { isIPv4 } from 'node:net';

/** An IPv4 address literal in 127.0.0.0/8 — not a host name that starts like one (`127.0.0.1.attacker.example`). */
function isLoopbackV4(s: string): boolean {
  return isIPv4(s) && s.startsWith('127.');
}

/** Loopback addresses: with no identity configured, only callers on this machine may use the gateway. */
export function isLoopbackAddress(address: string | undefined | null): boolean {
  if (!address) return false;
  if (address === '::1' || address === 'localhost') return true;
  return isLoopbackV4(address.startsWith('::ffff:') ? address.slice(7) : address);
}

/** A host (as in a URL or a listen address) that names this machine: `localhost`, `::1`, or an address in 127/8. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || isLoopbackV4(host);
}

/**
 * Whether a request from this machine is also addressed to it by a page of its own. A loopback caller may be a web
 * page from elsewhere acting through a browser here: by DNS rebinding (its own host name resolving to 127.0.0.1 —
 * the Host header gives it away) or by a cross-site request (the Origin header). Neither is trusted as this machine.
 */
export function isLocalRequest(headers: {
  readonly host?: string | undefined;
  readonly origin?: string | undefined;
}): boolean {
  return isLoopbackHostHeader(headers.host) && (headers.origin === undefined || isLoopbackOrigin(headers.origin));
}

/** A Host header naming this machine (`127.0.0.1:8081`, `localhost`, `[::1]:8081`); absent (HTTP/1.0) counts as such. */
function isLoopbackHostHeader(host: string | undefined): boolean {
  if (host === undefined) return true;
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':')[0]!;
  return isLoopbackHost(name.toLowerCase());
}

/** An Origin header of a page served from this machine; `null` (a sandboxed or file page) is not one. */
function isLoopbackOrigin(origin: string): boolean {
  try {
    return isLoopbackHost(new URL(origin).hostname.toLowerCase());
  } catch {
    return false;
  }
}

/**
 * Why an anonymous caller on this machine was not taken as local (its Host or Origin header), and what to do; null when
 * the request is local. The headers are the caller's own, so naming them tells it nothing it did not send.
 */
export function localRequestRefusal(headers: {
  readonly host?: string | undefined;
  readonly origin?: string | undefined;
}): string | null {
  const why = !isLoopbackHostHeader(headers.host)
    ? `this request has Host ${JSON.stringify(headers.host)}`
    : headers.origin !== undefined && !isLoopbackOrigin(headers.origin)
      ? `this request has Origin ${JSON.stringify(headers.origin)}`
      : null;
  if (why === null) return null;
  return (
    'anonymous calls are accepted only for requests addressed to this machine (Host 127.0.0.1, localhost or [::1]) ' +
    `with no Origin from elsewhere, and ${why}: call the gateway as http://127.0.0.1:PORT (not by another host ` +
    'name) and not from a web page, or send a gateway key (vigil keys create) as x-api-key or an OIDC token as ' +
    'Authorization: Bearer …'
  );
}
