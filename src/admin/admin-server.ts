/**
 * The admin listener: a node:http server of its own, apart from the proxy, serving the versioned REST API under
 * `/api/v1/` (routes in admin-routes.ts) and the web UI's static files under `/ui/` (ui-assets.ts; `/` redirects there).
 * Errors are JSON `{ error: { type, message } }`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createListener } from '../net/tls-listener.js';
import { once } from 'node:events';
import type { Logger } from 'pino';
import type { VigilConfig } from '../config/config-schema.js';
import { answerParserRefusals, MAX_HEADER_BYTES } from '../net/parser-refusals.js';
import { ConfigError, VigilError } from '../errors.js';
import { isLoopbackHost } from '../identity/loopback.js';
import type { OidcVerifier } from '../identity/oidc-verifier.js';
import { ANONYMOUS } from '../identity/principal.js';
import { listenOn } from '../net/listen.js';
import type { AuditStore } from '../store/audit-store.js';
import { pricingFrom, type Pricing } from '../store/pricing.js';
import { digestsOverdueAfterMs } from '../store/ledger-upkeep.js';
import { AdminAccess } from './admin-access.js';
import { ADMIN_ROUTES, COMMON_HEADERS, sendJson, type AdminRoute } from './admin-routes.js';
import { APPROVAL_ROUTES } from './approval-routes.js';
import { KEY_ROUTES } from './key-routes.js';
import { CONFIG_ROUTES } from './config-routes.js';
import type { ApprovalCoordinator } from '../policy/approvals.js';
import type { UsageLimits } from '../policy/usage-limits.js';
import type { ConfigChanges, ConfigStatus, ReloadActor } from '../config/config-changes.js';
import { loadUiAssets, sendUiFile, UI_PREFIX, uiFileFor } from './ui-assets.js';
import { uiSignInWarnings } from './ui-sign-in.js';

const API_PREFIX = '/api/v1';

/** Where the admin API listens: `admin.listen`, else 127.0.0.1 on the proxy's port + 1 (0 stays 0: a free port). */
export function adminListenAddress(config: VigilConfig): { host: string; port: number } {
  if (config.admin.listen) return config.admin.listen;
  const port = config.listen.port === 0 ? 0 : config.listen.port + 1;
  if (port > 65535)
    throw new VigilError('INTERNAL', `no default admin port after ${config.listen.port}: set admin.listen`);
  return { host: '127.0.0.1', port };
}

/**
 * Refuse an admin listener reachable from other machines when nobody would have to prove who they are.
 *
 * @throws VigilError naming the config keys that fix it.
 */
export function checkAdminExposure(config: VigilConfig): void {
  if (!config.admin.enabled) return;
  const { host } = adminListenAddress(config);
  if (!isLoopbackHost(host) && config.identity.oidc.length === 0 && config.admin.tokens.length === 0) {
    throw new VigilError(
      'INTERNAL',
      `refusing to serve the admin API on ${host}: no identity is configured, so anyone who can reach it could read ` +
        'every recording. Set admin.listen to 127.0.0.1:PORT, or configure identity.oidc issuers (with admin.roles) ' +
        'or admin.tokens (see README, "Audit access").',
    );
  }
}

interface CompiledRoute {
  readonly route: AdminRoute;
  readonly pattern: RegExp;
  readonly names: readonly string[];
}

function compile(route: AdminRoute): CompiledRoute {
  const names: string[] = [];
  const source = route.path
    .split('/')
    .map((segment) => {
      const m = /^\{(\w+)\}$/.exec(segment);
      if (!m) return segment.replace(/[.*+?^$()|[\]\\{}]/g, '\\$&');
      names.push(m[1]!);
      return '([^/]+)';
    })
    .join('/');
  return { route, pattern: new RegExp(`^${source}$`), names };
}

function sendError(res: ServerResponse, err: VigilError): void {
  if (err.code === 'UNAUTHENTICATED') res.setHeader('www-authenticate', 'Bearer realm="vigil-admin"');
  sendJson(res, err.status, { error: { type: err.type, message: err.message } });
}

export interface AdminServerOptions {
  readonly config: VigilConfig;
  readonly store: AuditStore;
  /**
   * The proxy's verifier, so both listeners trust the same issuers and share their key caches; this listener also
   * accepts the web UI's ID tokens with it (`admin.ui.oidc`), which the proxy does not.
   */
  readonly oidc?: OidcVerifier | undefined;
  readonly log: Logger;
  /** Held calls: the /approvals routes act on them. */
  readonly approvals?: ApprovalCoordinator | undefined;
  /** The proxy's usage limits: `GET /limits` shows what is used of them. */
  readonly limits?: Pick<UsageLimits, 'status'> | undefined;
  /** The connections gateway keys may name: the `/keys` routes manage keys (admins). */
  readonly connectionNames?: (() => readonly string[]) | undefined;
  /** Reads the config again and applies it: `POST /config/reload` (admins). */
  readonly reloadConfig?: ((by: ReloadActor) => Promise<ConfigChanges>) | undefined;
  /** Which config runs and how the last reload went: `GET /config` (admins). */
  readonly configStatus?: (() => ConfigStatus) | undefined;
  /** What tokens cost, for `GET /usage` (the running config's, which a reload changes); absent: `config.pricing`. */
  readonly pricing?: (() => Pricing | undefined) | undefined;
  /** Prometheus metrics, served at `GET /metrics` to admins and auditors (and admin tokens). */
  readonly metrics?: { text(): Promise<string>; readonly contentType: string } | undefined;
}

/** Every route the admin API serves under `/api/v1` (its OpenAPI document describes each). */
export const ADMIN_API_ROUTES: readonly AdminRoute[] = [
  ...ADMIN_ROUTES,
  ...APPROVAL_ROUTES,
  ...KEY_ROUTES,
  ...CONFIG_ROUTES,
];

export interface AdminServer {
  readonly url: string;
  /** Who may use the API under `next`, ready to apply (see AdminAccess.prepare). */
  prepareAccess(next: VigilConfig, oidc: OidcVerifier | undefined): () => void;
  close(): Promise<void>;
}

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const { config, store, log } = options;
  checkAdminExposure(config);
  // Who may use it: changed by a reload, and when a token's file changes.
  const access = new AdminAccess(config, options.oidc, log);
  for (const warning of uiSignInWarnings(config.admin.ui.oidc, config.identity.oidc)) log.warn(warning);
  const routes = ADMIN_API_ROUTES.map(compile);
  const ui = loadUiAssets();
  if (!ui.ok) log.warn({ problem: ui.problem }, 'the web UI is not available');
  const overdueAfterMs = digestsOverdueAfterMs(config);
  const configured = pricingFrom(config.pricing);
  const pricingNow = options.pricing ?? ((): Pricing | undefined => configured);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://admin.invalid');
    if ((url.pathname === '/' || url.pathname === '/ui') && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(302, { ...COMMON_HEADERS, location: UI_PREFIX });
      res.end();
      return;
    }
    if (url.pathname.startsWith(UI_PREFIX)) {
      // Static files only; the data behind them is the API's, with its own authentication.
      const uiHeaders = access.uiSignIn.headers;
      for (const [name, value] of Object.entries(uiHeaders)) res.setHeader(name, value);
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        sendJson(res, 405, { error: { type: 'invalid_request_error', message: `${req.method} is not allowed here` } });
        return;
      }
      const name = uiFileFor(url.pathname);
      if (name !== undefined && sendUiFile(ui, name, req, res, uiHeaders)) return;
      throw new VigilError('NOT_FOUND', ui.ok ? `no such file: ${url.pathname}` : ui.problem);
    }
    if (url.pathname === '/metrics' && options.metrics && req.method === 'GET') {
      // Counts and timings only, no recorded content; still not for every authenticated user.
      const caller = await access.authenticate(req.headers, req.socket.remoteAddress);
      if (caller.role === 'user') throw new VigilError('NOT_ALLOWED', 'metrics are for admins and auditors');
      const body = await options.metrics.text();
      res.writeHead(200, { ...COMMON_HEADERS, 'content-type': options.metrics.contentType });
      res.end(body);
      return;
    }
    const path = url.pathname.startsWith(`${API_PREFIX}/`) ? url.pathname.slice(API_PREFIX.length) : undefined;
    const matches = path === undefined ? [] : routes.map((r) => ({ r, m: r.pattern.exec(path) })).filter((x) => x.m);
    if (matches.length === 0)
      throw new VigilError('NOT_FOUND', `no such route: ${url.pathname} (see ${API_PREFIX}/openapi.json)`);
    const found = matches.find((x) => x.r.route.method === req.method);
    if (!found) {
      res.setHeader('allow', [...new Set(matches.map((x) => x.r.route.method))].join(', '));
      res.writeHead(405, { ...COMMON_HEADERS, 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ error: { type: 'invalid_request_error', message: `${req.method} is not allowed here` } }),
      );
      return;
    }
    const { route, names } = found.r;
    const params: Record<string, string> = {};
    names.forEach((n, i) => (params[n] = decodeURIComponent(found.m![i + 1]!)));
    const caller = route.authenticated
      ? await access.authenticate(req.headers, req.socket.remoteAddress)
      : { reader: ANONYMOUS, role: 'user' as const, address: req.socket.remoteAddress ?? null };
    await route.handle({
      store,
      caller,
      params,
      query: url.searchParams,
      req,
      res,
      log,
      approvals: options.approvals,
      limits: options.limits,
      reloadConfig: options.reloadConfig,
      configStatus: options.configStatus,
      connectionNames: options.connectionNames,
      pricing: pricingNow(),
      signIn: access.uiSignIn.signIn,
      digestsOverdueAfterMs: overdueAfterMs,
    });
  };

  const serve = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        // A stream (export, events) failed half-way: cutting the connection is the only honest signal left.
        log.error({ err, url: req.url }, 'admin API response failed after it started');
        res.destroy();
        return;
      }
      if (err instanceof VigilError) {
        if (err.status >= 500) log.error({ err, url: req.url }, 'admin API request failed');
        sendError(res, err);
        return;
      }
      if (err instanceof URIError) {
        sendError(res, new VigilError('BAD_REQUEST', 'malformed percent-encoding in the path'));
        return;
      }
      if (store.isUnavailable(err)) {
        // Not the caller's fault nor a bug: the store is down or refusing (PostgreSQL unreachable, a closed store).
        log.warn({ err, url: req.url }, 'admin API request failed: the store is unavailable');
        sendError(
          res,
          new VigilError('STORE_UNAVAILABLE', 'the store is unavailable; try again later', { cause: err }),
        );
        return;
      }
      log.error({ err, url: req.url }, 'admin API request failed');
      sendError(res, new VigilError('INTERNAL', 'internal error', { cause: err }));
    });
  };
  const { server, scheme, stopRenewals } = createListener(
    { maxHeaderSize: MAX_HEADER_BYTES },
    serve,
    config.admin.tls && { config: config.admin.tls, where: 'admin.tls', log },
  );
  answerParserRefusals(server, log, (refusal) =>
    JSON.stringify({ error: { type: refusal.type, message: refusal.message } }),
  );
  const { host, port } = adminListenAddress(config);
  const { url } = await listenOn(server, host, port, scheme).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EADDRINUSE') {
      throw new ConfigError([
        `admin.listen: ${host}:${port} is already in use (the admin API listens on the proxy's port + 1 unless ` +
          'admin.listen says otherwise): set admin.listen to a free HOST:PORT, or admin.enabled: false',
      ]);
    }
    throw err;
  });
  if (!access.identityConfigured) log.warn({ url }, 'admin API without identity: callers on this machine are admins');
  log.info({ url: `${url}${API_PREFIX}` }, 'vigil admin API listening');
  access.watch();

  return {
    url,
    prepareAccess: (next, oidc) => access.prepare(next, oidc),
    async close() {
      stopRenewals();
      access.close();
      const closed = once(server, 'close');
      server.close();
      // Exports in progress are cut: the store they read is about to close.
      server.closeAllConnections();
      await closed;
    },
  };
}
