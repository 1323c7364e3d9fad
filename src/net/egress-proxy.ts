/**
 * The HTTP proxy a connection reaches its upstream through (an HTTP SIEM sink its receiver, the gateway its OIDC
 * providers and approval webhooks), where the network
 * allows no direct way out (a company's egress proxy, as Claude Code itself honours). Chosen by the operator, never by
 * a caller:
 *   - `proxy:` on the connection (or sink): a URL (`http://proxy.example:3128`; one holding a password only as `{ env }` or
 *     `{ file }`), or `none`;
 *   - else the gateway's environment, as curl reads it: `https_proxy`/`HTTPS_PROXY` for an https upstream,
 *     `http_proxy`/`HTTP_PROXY` for an http one, unless `no_proxy`/`NO_PROXY` names the upstream's host; never for a
 *     loopback upstream.
 * The upstream is reached through a CONNECT tunnel, so the proxy sees the upstream's host and port, not the calls
 * (TLS runs inside it, end to end).
 */
import { BlockList, isIP } from 'node:net';
import { fetch as undiciFetch, Pool, ProxyAgent, type Dispatcher } from 'undici';
import { isLoopbackHost } from '../identity/loopback.js';
import type { ProxySetting } from '../config/common-schemas.js';
import type { VigilConfig } from '../config/config-schema.js';
import type { SinkConfig } from '../export/sinks-config.js';
import { formatPath } from '../config/config-path.js';
import { readSecret } from '../config/read-secret.js';
import { ConfigError } from '../errors.js';

export interface EgressProxy {
  /** The proxy's URL as undici is given it, credentials included. */
  readonly uri: string;
  /** The proxy's origin, without credentials: what logs and start-up name. */
  readonly shown: string;
  /** Where it was chosen: `connections[0].proxy`, `HTTPS_PROXY`, …. */
  readonly from: string;
}

/**
 * The proxy a call to `target` goes through, given its `proxy:` setting (at `where` in the config), or null to go
 * direct. A connection's upstream and an HTTP SIEM sink's receiver are chosen the same way.
 *
 * @throws ConfigError when `proxy:` names a secret that cannot be read, or a value that is not an http(s) URL: going
 *   direct instead would bypass the proxy the operator named.
 */
export function egressProxy(
  target: string,
  setting: ProxySetting | undefined,
  where: string,
  env: NodeJS.ProcessEnv = process.env,
): EgressProxy | null {
  const url = new URL(target);
  if (setting === 'none') return null;
  if (setting !== undefined) {
    const value = typeof setting === 'string' ? setting : readSecret(setting, where, env);
    return { ...parseProxy(value, where), from: where };
  }
  if (isLoopbackHost(url.hostname)) return null;
  const names = url.protocol === 'https:' ? ['https_proxy', 'HTTPS_PROXY'] : ['http_proxy', 'HTTP_PROXY'];
  const name = names.find((n) => env[n]?.trim());
  if (name === undefined) return null;
  const noProxy = env.no_proxy ?? env.NO_PROXY ?? '';
  if (noProxyMatches(url, noProxy)) return null;
  return { ...parseProxy(env[name]!.trim(), `${name} (the gateway's environment)`), from: name };
}

/**
 * Every proxy problem of the config — each connection's, each OIDC issuer's, each HTTP SIEM sink's — named by its
 * config path (for start-up, which reports them all at once; approval webhooks' are checked with their URLs).
 */
export function egressProxyProblems(config: VigilConfig, env: NodeJS.ProcessEnv = process.env): string[] {
  const problems: string[] = [];
  const check = (target: string, setting: ProxySetting | undefined, path: Array<string | number>): void => {
    try {
      egressProxy(target, setting, formatPath(path, config), env);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
    }
  };
  config.connections.forEach((c, i) => check(c.upstream, c.proxy, ['connections', i, 'proxy']));
  config.identity.oidc.forEach((o, i) => check(o.issuer, o.proxy, ['identity', 'oidc', i, 'proxy']));
  config.siem.sinks.forEach((sink, i) => {
    const http = sinkTarget(sink);
    if (http !== null) check(http.url, http.proxy, ['siem', 'sinks', i, 'proxy']);
  });
  return problems;
}

/** Where an HTTP SIEM sink sends, and its proxy setting (null for syslog, which is not HTTP). */
function sinkTarget(sink: SinkConfig): { url: string; proxy: ProxySetting | undefined } | null {
  if (sink.type === 'syslog') return null;
  return { url: sink.type === 'otlp' ? sink.endpoint : sink.url, proxy: sink.proxy };
}

/**
 * What calls to `origin` go through: a pool of kept-alive connections to it, or, with a proxy, undici's ProxyAgent —
 * always a CONNECT tunnel, for an http origin too, so the proxy sees where, never what. `connectTimeoutMs` bounds
 * connecting (to the proxy, and through it); `ca` replaces Node's bundled CAs for the origin's certificate.
 */
export function egressDispatcher(
  origin: string,
  proxy: EgressProxy | null | undefined,
  options: Omit<Pool.Options, 'connect' | 'connectTimeout'> & { connectTimeoutMs: number; ca?: string | undefined },
): Dispatcher {
  const { connectTimeoutMs, ca, ...pool } = options;
  const tls = { timeout: connectTimeoutMs, ...(ca !== undefined ? { ca } : {}) };
  if (!proxy) return new Pool(origin, { ...pool, connect: tls });
  return new ProxyAgent({
    ...pool,
    uri: proxy.uri,
    proxyTunnel: true,
    requestTls: tls,
    proxyTls: { timeout: connectTimeoutMs },
  });
}

function parseProxy(value: string, where: string): Omit<EgressProxy, 'from'> {
  let url: URL;
  try {
    // `proxy.example:3128`, as environments often give it, is read as curl reads it: http.
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`);
  } catch {
    throw new ConfigError([`${where}: not a URL; give the proxy as http://host:port (or https://)`]);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError([`${where}: a ${url.protocol} proxy is not supported; give an http:// or https:// proxy`]);
  }
  return { uri: url.href, shown: url.origin };
}

/**
 * Whether `no_proxy` exempts `upstream`, as curl reads it: a comma- or space-separated list of `*` (everything), host
 * names (which match the host and every host below it: `example.com` and `.example.com` both match
 * `api.example.com`), IP addresses, each optionally with `:port`, and CIDR ranges (`10.0.0.0/8`, `fd00::/8`), which
 * match a target given as an IP address (a host name is not resolved to be matched).
 */
export function noProxyMatches(upstream: URL, noProxy: string): boolean {
  const host = upstream.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  const port = upstream.port || (upstream.protocol === 'https:' ? '443' : '80');
  for (const raw of noProxy.split(/[\s,]+/)) {
    const entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return true;
    if (entry.includes('/')) {
      if (inCidr(host, entry)) return true;
      continue;
    }
    const m = /^(\[[^\]]+\]|[^:]+|[0-9a-f:]+)(?::(\d+))?$/.exec(entry);
    const name = (m?.[1] ?? entry).replace(/^\[|\]$/g, '').replace(/^\*?\./, '');
    if (m?.[2] !== undefined && m[2] !== port) continue;
    if (host === name || host.endsWith(`.${name}`)) return true;
  }
  return false;
}

/** Whether `host` is an IP address within `cidr` (`10.0.0.0/8`, `fd00::/8`); false for a name or a malformed range. */
function inCidr(host: string, cidr: string): boolean {
  const family = isIP(host);
  const m = /^\[?([0-9a-f.:]+)\]?\/(\d{1,3})$/.exec(cidr);
  if (family === 0 || !m || isIP(m[1]!) !== family) return false;
  const prefix = Number(m[2]);
  if (prefix > (family === 4 ? 32 : 128)) return false;
  const type = family === 4 ? 'ipv4' : 'ipv6';
  const range = new BlockList();
  range.addSubnet(m[1]!, prefix, type);
  return range.check(host, type);
}

/**
 * The fetch the gateway's own calls use — OIDC discovery and key sets, approval webhooks: each URL goes through the
 * proxy {@link egressProxy} chooses for it with this `proxy:` setting (so the environment's `https_proxy` and
 * `no_proxy` too), or direct. Decided per URL, as a provider's key set may be on another host than its discovery
 * document. A proxy that cannot be read fails the call, never goes direct.
 */
export function egressFetch(
  setting: ProxySetting | undefined,
  where: string,
  env: NodeJS.ProcessEnv = process.env,
): typeof fetch {
  const agents = new Map<string, ProxyAgent>();
  /** The proxy chosen for each origin asked for: chosen once, as a connection's is (a secret is read once). */
  const chosen = new Map<string, EgressProxy | null>();
  return ((input: string | URL | Request, init?: RequestInit) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const origin = new URL(url).origin;
    let proxy = chosen.get(origin);
    if (proxy === undefined) chosen.set(origin, (proxy = egressProxy(url, setting, where, env)));
    if (proxy === null) return fetch(input, init);
    let agent = agents.get(proxy.uri);
    if (agent === undefined) {
      agent = new ProxyAgent({ uri: proxy.uri, proxyTunnel: true });
      agents.set(proxy.uri, agent);
    }
    // undici's own fetch with its own agent: Node's global fetch bundles another undici.
    return undiciFetch(url, { ...(init as object), dispatcher: agent }) as unknown as Promise<Response>;
  }) as typeof fetch;
}
