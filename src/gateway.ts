/**
 * Wires config → store → recorder → proxy listener, and shuts them down in the reverse order.
 * Used by `vigil serve` and by tests that run a gateway in-process.
 */
import type { IncomingMessage } from 'node:http';
import { tlsOptions } from './net/tls-listener.js';
import { pino, type Logger } from 'pino';
import { checkAdminExposure, startAdminServer } from './admin/admin-server.js';
import type { VigilConfig } from './config/config-schema.js';
import { ConfigError, messageOf, VigilError } from './errors.js';
import { formatPath } from './config/config-path.js';
import { secretProblems } from './config/secret-problems.js';
import { shortAdminTokens } from './admin/admin-auth.js';
import { isLocalRequest, isLoopbackAddress, isLoopbackHost, localRequestRefusal } from './identity/loopback.js';
import { Authenticator, type Authentication } from './identity/authenticator.js';
import { OidcVerifier } from './identity/oidc-verifier.js';
import { ApprovalNotifier } from './policy/approval-notifier.js';
import { ApprovalCoordinator, NOTIFY_CLOSE_WAIT_MS } from './policy/approvals.js';
import { decide } from './policy/policy.js';
import { UsageLimits } from './policy/usage-limits.js';
import { Connections, type Connection } from './proxy/connections.js';
import { ProxyServer } from './proxy/proxy-server.js';
import { egressProxyProblems } from './net/egress-proxy.js';
import { Recorder } from './recorder/recorder.js';
import type { AuditStore } from './store/audit-store.js';
import { pricingFrom } from './store/pricing.js';
import { adminReads, describeStore, openStore, type AdminReads } from './store/open-store.js';
import { hostname } from 'node:os';
import { otlpRejectedChannel } from './export/otlp-sink.js';
import { Outbox } from './export/outbox.js';
import { createSink, type Sink } from './export/sink.js';
import { sameJson } from './canonical-json.js';
import type { SinkConfig } from './export/sinks-config.js';
import { Metrics } from './observability/metrics.js';
import {
  configChanges,
  anonymousPolicy,
  configDigest,
  configReloadedData,
  nothingChanged,
  SIGHUP_ACTOR,
  type ConfigChanges,
  type ConfigStatus,
  type ReloadActor,
} from './config/config-changes.js';
import { retentionPolicy } from './store/retention.js';
import { appendConfirmed } from './store/append-confirmed.js';
import { startLedgerUpkeep } from './store/ledger-upkeep.js';

export interface Gateway {
  readonly url: string;
  /** The admin API's base URL (its routes are under `/api/v1`), or null when `admin.enabled` is false. */
  readonly adminUrl: string | null;
  readonly store: AuditStore;
  readonly recorder: Recorder;
  /** Held calls and their decisions (the admin API's approval routes use it). */
  readonly approvals: ApprovalCoordinator;
  readonly log: Logger;
  /**
   * Apply a config read again (SIGHUP; README, "Reloading the config"): everything but the listeners, the store and
   * signing changes for calls from now on, and the ledger records what changed first (see config-changes.ts). Refused
   * whole, with nothing applied, when the config would not start or changes what only a restart applies (ConfigError
   * naming each path). Reloads run one at a time.
   */
  reload(next: VigilConfig, by?: ReloadActor): Promise<ConfigChanges>;
  /**
   * Read the config again from where it came from (StartOptions.readConfig: the file and flags `vigil serve` was
   * given) and reload it. Throws NOT_FOUND when the gateway was given no way to read it again.
   */
  reloadFromSource(by: ReloadActor): Promise<ConfigChanges>;
  /** The config the gateway runs: the one it started with, or the last one a reload applied. */
  runningConfig(): VigilConfig;
  /**
   * Stop accepting, let in-flight exchanges finish up to `graceMs` (default: the running config's `shutdown.grace`),
   * cut the rest, flush and close the store.
   */
  close(graceMs?: number): Promise<void>;
}

/** How long a reload asks a store that lost the answer to its `config.reloaded` append whether it was written. */
const RELOAD_RECORD_WAIT_MS = 3_000;

export interface StartOptions {
  readonly log?: Logger;
  /** Reads the config again for a reload (`vigil serve`: its file, with its flags over it); may throw ConfigError. */
  readonly readConfig?: () => VigilConfig;
}

/**
 * What start-up refuses before it opens anything, checked alone (`vigil config check` runs it too): a listener beyond
 * loopback with no identity, an admin API exposed without one, and every secret, proxy and webhook it reads — the
 * missing ones reported together.
 *
 * @throws VigilError or ConfigError naming what to fix
 */
export function checkStartable(config: VigilConfig): void {
  if (!isLoopbackHost(config.listen.host) && anonymousPolicy(config) !== 'never') {
    throw new VigilError(
      'INTERNAL',
      `refusing to listen on ${config.listen.host}: no identity is configured, so anyone who can reach the gateway ` +
        'could use its credentials. Listen on 127.0.0.1, or configure identity: identity.oidc issuers, or ' +
        'identity.anonymous: never to admit gateway keys only (see README, "Identity").',
    );
  }
  checkAdminExposure(config);
  // Every secret the gateway reads at start-up, checked together so that each missing one is reported at once.
  const secretsMissing = [
    ...secretProblems(config),
    ...egressProxyProblems(config),
    ...(config.admin.enabled ? shortAdminTokens(config.admin.tokens) : []),
  ];
  if (secretsMissing.length) throw new ConfigError(secretsMissing);
  // A certificate and a key that do not belong together, each listener's at once.
  const unusable: string[] = [];
  for (const [tls, where] of [
    [config.tls, 'tls'],
    [config.admin.tls, 'admin.tls'],
  ] as const) {
    try {
      if (tls) tlsOptions(tls, where);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      unusable.push(...err.problems);
    }
  }
  if (unusable.length) throw new ConfigError(unusable);
  // Webhook URLs and secrets are read now: one that is missing or refused stops start-up before anything is opened.
  if (config.approvals.webhooks.length) new ApprovalNotifier(config.approvals);
}

/**
 * What start-up warns of when callers' credentials would cross a network in clear: a proxy listener beyond loopback
 * without `tls`, unless `public_url` says TLS is terminated in front of it. Null when there is nothing to say.
 */
export function plainHttpWarning(config: VigilConfig): string | null {
  if (config.tls || isLoopbackHost(config.listen.host) || config.public_url?.startsWith('https:')) return null;
  return (
    'the proxy listens beyond loopback over plain HTTP: callers’ tokens and keys cross the network in clear. Set tls ' +
    '(a certificate and key), or terminate TLS in front of the gateway and set public_url to its https:// URL'
  );
}

export async function startGateway(config: VigilConfig, options: StartOptions = {}): Promise<Gateway> {
  const log = options.log ?? pino({ level: config.log.level, base: { service: 'vigil' } }, pino.destination(2));
  checkStartable(config);
  const notifier = config.approvals.webhooks.length ? new ApprovalNotifier(config.approvals, { log }) : undefined;
  for (const p of notifier?.proxies ?? []) log.info(p, 'approval webhook reached through a proxy');
  const store = await openStore(config, {
    gateway: { onCheckpointError: (message) => log.warn({ message }, 'background WAL checkpoint failed; retrying') },
  });
  /** What tokens cost as the running config says (usage limits on cost, the admin API's reports); a reload replaces it. */
  let pricing = pricingFrom(config.pricing);
  const limits = new UsageLimits({
    limits: new Map(config.connections.map((c) => [c.name, c.limits])),
    store,
    onReadBackError: (err) =>
      log.warn(
        { err: messageOf(err) },
        'usage limits: cannot read what other gateways served (trying again each step); counting this gateway’s calls',
      ),
    onReadBackRecovered: () => log.info('usage limits: reading what other gateways served again'),
    pricing,
    onUnpriced: (model, connection) =>
      log.warn(
        { model, connection },
        `usage limits: model ${model === null ? '(unknown)' : `"${model}"`} has no price in pricing.models, so cost ` +
          'limits do not count its calls; price it, or add a catch-all such as claude* last',
      ),
  });
  const recorder = new Recorder(store, {
    log,
    maxRecordedResponseBody: config.limits.max_recorded_response_body,
    // Always told, even with no limits yet: a reload may set some.
    onCompleted: (e) => limits.completed(e),
  });
  // Exchanges an earlier stop cut. Another gateway's chain that looks gone is looked at again a while later on
  // PostgreSQL (see recoverInterrupted): meanwhile this one serves.
  const recovery = new AbortController();
  const recovering = recorder.recoverInterrupted({ signal: recovery.signal });
  const recovered = (count: number): void => {
    if (count) log.warn({ recovered: count }, 'recorded exchanges cut by an earlier stop as interrupted');
  };
  if (store.writerReconnectMs === 0) recovered(await recovering);
  else {
    recovering.then(recovered, (err: unknown) =>
      log.error({ err: messageOf(err) }, 'could not record exchanges cut by an earlier stop as interrupted'),
    );
  }
  // Signed digests of this chain, and retention purges on schedule (see README, "Retention and legal holds").
  const upkeep = startLedgerUpkeep(config, store, log);
  const connections = new Connections(config);
  /** What start-up, and a reload for the connections it makes, says of a connection: no credential, a proxy. */
  const announce = (c: Connection): void => {
    if (c.credentialProblem) log.warn({ connection: c.name }, c.credentialProblem);
    if (c.proxy) {
      log.info({ connection: c.name, proxy: c.proxy.shown, from: c.proxy.from }, 'upstream reached through a proxy');
    }
  };
  connections.all().forEach(announce);
  const stopWatchingCredentials = connections.watchCredentials({
    renewed: (connection, file) =>
      log.info({ connection, file }, 'upstream credential renewed: calls from now on are sent with the new one'),
    unreadable: (connection, problem, kept) =>
      log.error(
        { connection },
        kept ? `${problem}; calls go on with the credential read before` : `${problem}; its calls are refused`,
      ),
  });

  /**
   * The OIDC issuers `next` trusts, discovered. A reload keeps the running verifier when they stay the same, and in a
   * new one each issuer configured as before keeps its keys (see OidcVerifierOptions.replacing).
   */
  const verifierFor = async (next: VigilConfig, running?: OidcVerifier): Promise<OidcVerifier | undefined> => {
    if (next.identity.oidc.length === 0) return undefined;
    if (running && sameJson(running.issuerConfigs, next.identity.oidc)) return running;
    const made = new OidcVerifier(next.identity.oidc, { replacing: running });
    for (const p of made.proxies) log.info(p, 'identity provider reached through a proxy');
    for (const warning of await made.start()) log.warn(warning);
    return made;
  };
  const authenticatorFor = (next: VigilConfig, verifier: OidcVerifier | undefined): Authenticator => {
    const anonymous = anonymousPolicy(next);
    return new Authenticator({
      oidc: verifier,
      keyLookup: (hash) => store.findGatewayKey(hash),
      // From this machine, and not a page from elsewhere acting through a browser here (see isLocalRequest).
      anonymousAllowed:
        anonymous === 'loopback' ? (address, headers) => isLoopbackAddress(address) && isLocalRequest(headers) : false,
      anonymousRefusal: (address, headers) =>
        anonymous === 'loopback' && isLoopbackAddress(address) ? localRequestRefusal(headers) : null,
    });
  };
  // Both replaced together by a reload that changes `identity`; a call being authenticated finishes with the ones it
  // began with.
  let oidc = await verifierFor(config);
  let authenticator = authenticatorFor(config, oidc);
  const identify = (req: IncomingMessage): Promise<Authentication> =>
    authenticator.authenticate(req.headers, req.socket.remoteAddress);

  const approvals = new ApprovalCoordinator(store, { log, notifier, oidcApprovers: config.identity.oidc.length > 0 });
  const proxy = new ProxyServer({
    tls: config.tls && { config: config.tls, where: 'tls' },
    connections,
    recorder,
    log,
    maxRequestBody: config.limits.max_request_body,
    publicUrl: config.public_url,
    identify,
    decide,
    approvals,
    limits,
  });
  /** Each SIEM sink by name, with the config it was made from: a reload keeps those whose config stays the same. */
  const makeSinks = (next: VigilConfig, kept: ReadonlyMap<string, { config: SinkConfig; sink: Sink }>) =>
    new Map(
      next.siem.sinks.map((c, i) => {
        const made = kept.get(c.name);
        if (made && sameJson(made.config, c)) return [c.name, made] as const;
        const where = formatPath(['siem', 'sinks', i], next);
        return [c.name, { config: c, sink: createSink(c, { hostname: hostname(), where }) }] as const;
      }),
    );
  let sinks = makeSinks(config, new Map());
  const outbox = new Outbox(
    store,
    [...sinks.values()].map((s) => s.sink),
    { gateway: hostname(), log },
  );
  // OTLP partial success: the collector took the batch but dropped some records, which the spec says not to resend.
  const onOtlpRejected = (m: unknown): void => {
    const d = m as { sink: string; rejected: number; message: string };
    log.warn({ sink: d.sink, rejected: d.rejected, reason: d.message }, 'OTLP collector rejected audit events');
  };
  otlpRejectedChannel.subscribe(onOtlpRejected);
  outbox.start();
  /** What `vigil_config_last_reload_successful` and its timestamp say: the start-up config counts as a success. */
  let reloadState = { successful: true, lastSuccessAt: Date.now() };
  const configStatus = (): ConfigStatus => ({ ...reloadState, sha256: configDigest(running) });
  const metrics = new Metrics({
    recordingFailures: () => recorder.failures,
    recordingBacklog: () => recorder.queue.backlog,
    storeRefusingWrites: () => recorder.queue.storeRefusing,
    sinks: () => outbox.statuses(),
    digests: () => upkeep.digests(),
    limits: () => limits.status({ max: Number.MAX_SAFE_INTEGER }),
    configReload: () => configStatus(),
  });
  // Reloads (SIGHUP, the admin API): defined before the admin API listens, which may ask for one.
  let closing: Promise<void> | null = null;
  let running = config;
  let reloading: Promise<unknown> = Promise.resolve();
  /** One reload at a time: the config `read` gives (a file that does not read counts as a failed reload). */
  const reloadWith = (read: () => VigilConfig, by: ReloadActor): Promise<ConfigChanges> => {
    const applied = reloading.then(() => applyConfig(read(), by));
    reloading = applied.then(
      () => (reloadState = { successful: true, lastSuccessAt: Date.now() }),
      () => (reloadState = { ...reloadState, successful: false }),
    );
    return applied;
  };
  const reload = (next: VigilConfig, by: ReloadActor = SIGHUP_ACTOR): Promise<ConfigChanges> =>
    reloadWith(() => next, by);
  const reloadFromSource = (by: ReloadActor): Promise<ConfigChanges> => {
    const read = options.readConfig;
    if (!read) {
      return Promise.reject(new VigilError('NOT_FOUND', 'this gateway was started without a config it can read again'));
    }
    return reloadWith(read, by);
  };
  const applyConfig = async (next: VigilConfig, by: ReloadActor): Promise<ConfigChanges> => {
    if (closing !== null) throw new VigilError('SHUTTING_DOWN', 'the gateway is stopping: the config was not reloaded');
    const changes = configChanges(running, next);
    if (changes.restartNeeded.length) {
      throw new ConfigError(
        changes.restartNeeded.map(
          (p) => `${p}: changed, and only a restart applies it (the gateway runs on with the config it had)`,
        ),
        { heading: 'config not reloaded' },
      );
    }
    checkStartable(next);
    if (nothingChanged(changes)) {
      running = next;
      log.info({}, 'config reloaded: nothing a running gateway applies changed');
      return changes;
    }
    // Who may call and who may read, made ready before anything is recorded or applied: the admin tokens' secrets are
    // read (one that is too short refuses the reload), new issuers discovered (one unreachable is warned about and
    // retried when its tokens arrive, as at start-up). Issuers that stay the same keep their verifier and its keys.
    let nextOidc = oidc;
    let nextAuthenticator = authenticator;
    if (changes.identity) {
      nextOidc = await verifierFor(next, oidc);
      nextAuthenticator = authenticatorFor(next, nextOidc);
    }
    const applyAdminAccess = changes.identity || changes.adminAccess ? admin?.prepareAccess(next, nextOidc) : undefined;
    const recorded = configReloadedData(changes, next, by);
    // On the ledger (and so to the SIEM) before it applies: a change of who may call that the audit trail cannot show
    // is not made.
    try {
      // A commit whose answer was lost (PostgreSQL) is asked after: a record of a change never made would mislead.
      await appendConfirmed(
        store,
        { kind: 'config.reloaded', at: Date.now(), data: recorded },
        { waitMs: RELOAD_RECORD_WAIT_MS, unknown: 'the store does not answer' },
      );
    } catch (err) {
      throw new VigilError(
        'STORE_UNAVAILABLE',
        `config not reloaded: the ledger could not record the change (${messageOf(err) ?? 'unknown error'}); ` +
          'nothing was applied, send SIGHUP again once the store takes writes',
        { cause: err },
      );
    }
    connections.reconfigure(next, changes).forEach(announce);
    // The limits change with the connections; what callers used of new ones is read back after (at the new prices).
    pricing = pricingFrom(next.pricing);
    limits.setPricing(pricing);
    const counted = limits.reconfigure(new Map(next.connections.map((c) => [c.name, c.limits])));
    upkeep.setRetention(retentionPolicy(next), next.retention.schedule);
    proxy.reconfigure({ maxRequestBody: next.limits.max_request_body, publicUrl: next.public_url });
    const plainHttp = changes.publicUrl ? plainHttpWarning(next) : null;
    if (plainHttp) log.warn({ url }, plainHttp);
    recorder.maxRecordedResponseBody = next.limits.max_recorded_response_body;
    if (changes.siem) {
      // A sink that keeps its name goes on from its cursor; a new name starts from its own (see Outbox.setSinks).
      sinks = makeSinks(next, sinks);
      outbox.setSinks([...sinks.values()].map((s) => s.sink));
    }
    if (changes.approvals) {
      // Calls held from now on are announced to these webhooks; those already announced keep theirs.
      const notifier = next.approvals.webhooks.length ? new ApprovalNotifier(next.approvals, { log }) : undefined;
      for (const p of notifier?.proxies ?? []) log.info(p, 'approval webhook reached through a proxy');
      approvals.setNotifier(notifier);
    }
    if (changes.identity) {
      oidc = nextOidc;
      authenticator = nextAuthenticator;
      approvals.setOidcApprovers(next.identity.oidc.length > 0);
    }
    applyAdminAccess?.();
    if (changes.logLevel) log.level = changes.logLevel.to;
    running = next;
    // What the ledger holds of it, said in the log too.
    log.warn(recorded, 'config reloaded: calls from now on follow it');
    await counted.catch((err: unknown) =>
      log.warn(
        { err: messageOf(err) },
        'usage limits: cannot read back what callers used of the reloaded limits; counting from now',
      ),
    );
    return changes;
  };

  // What close() and a failed start both release, in this order.
  let admin: Awaited<ReturnType<typeof startAdminServer>> | undefined;
  // On SQLite, the admin API's searches and listings run on a thread of their own, not on the proxy's event loop.
  let reads: AdminReads | undefined;
  const release = async (outboxGraceMs?: number): Promise<void> => {
    recovery.abort();
    proxy.stopRenewals();
    stopWatchingCredentials();
    await recovering.catch(() => undefined);
    await admin?.close();
    await reads?.close();
    // The chain's final digest first, so the outbox's last pass takes it to the SIEM: kept there, it pins down
    // everything this gateway recorded, which nothing left in the store commits to (see `vigil verify --anchor`).
    await upkeep.close();
    await outbox.close(outboxGraceMs);
    metrics.close();
    otlpRejectedChannel.unsubscribe(onOtlpRejected);
    await connections.close();
    await limits.close();
    await store.close();
  };
  let url: string;
  try {
    if (config.admin.enabled) {
      reads = adminReads(store);
      admin = await startAdminServer({
        config,
        store: reads.store,
        oidc,
        log,
        metrics,
        approvals,
        limits,
        reloadConfig: options.readConfig ? reloadFromSource : undefined,
        configStatus,
        connectionNames: () => connections.all().map((c) => c.name),
        pricing: () => pricing,
      });
    }
    // What callers used of each limit's window before this start (and, on PostgreSQL, through other gateways).
    await limits.start();
    ({ url } = await proxy.listen(config.listen.host, config.listen.port));
    const warning = plainHttpWarning(config);
    if (warning) log.warn({ url }, warning);
  } catch (err) {
    // Nothing may outlive a start that failed (a port in use, say): the process must be free to exit.
    await approvals.close();
    await recorder.close();
    await release(0);
    throw err;
  }
  log.info(
    { url, store: describeStore(config), connections: connections.all().map((c) => c.name) },
    'vigil gateway listening',
  );

  // The grace of the config running: a reload may have changed it.
  const close = (graceMs = running.shutdown.grace): Promise<void> => {
    closing ??= (async () => {
      const stopped = proxy.stopAccepting();
      // Calls still held (or still being held) are answered 503 now, so clients retry on a gateway that stays up; this
      // returns once each has its answer and its cancellation is recorded, whatever the grace. Webhooks still being
      // notified get up to NOTIFY_CLOSE_WAIT_MS (the grace if shorter) to answer, and their outcome is recorded either
      // way.
      await approvals.close(Math.min(graceMs, NOTIFY_CLOSE_WAIT_MS));
      // Calls still being identified or read count too: a refusal among them is recorded before the recorder closes.
      const inFlight = (): number => recorder.inFlight + proxy.admitting;
      const deadline = Date.now() + graceMs;
      while (inFlight() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      if (inFlight() > 0) log.warn({ inFlight: inFlight() }, 'shutdown deadline passed: cutting open streams');
      await recorder.close();
      proxy.destroyAll();
      await stopped;
      await release();
      log.info('vigil gateway stopped');
    })();
    return closing;
  };

  return {
    url,
    adminUrl: admin?.url ?? null,
    store,
    recorder,
    approvals,
    log,
    reload,
    reloadFromSource,
    runningConfig: () => running,
    close,
  };
}
