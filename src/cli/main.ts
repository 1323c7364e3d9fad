/**
 * `vigil`: the gateway and the tools around its records.
 *   vigil serve [--config FILE] [--listen HOST:PORT] [--upstream URL] [--data-dir DIR]
 *   vigil sessions list [--config FILE | --data-dir DIR] [--json] [--limit N] [--connection NAME] [--caller SUBJECT]
 *   vigil sessions show <session-id> [--config FILE | --data-dir DIR] [--json]
 *   vigil sessions export [<session-id>] [--format jsonl|markdown] [--out FILE] [filters…]
 *   vigil search <query> [--json] [--limit N] [filters…]
 *   vigil verify [--config FILE | --data-dir DIR] [--json] [--public-key FILE]… [--anchor CHAIN:SEQ:HASH]…
 *   vigil sandbox [--listen HOST:PORT]      a fake Anthropic API for offline tries and tests
 */
import { CliError } from './cli-error.js';
import { parseOptions, UnknownOptionError } from './parse-options.js';
import {
  chmodSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { ParseArgsConfig } from 'node:util';
import {
  drained,
  filteredExchanges,
  sessionExchanges,
  writeExport,
  EXPORT_FORMATS,
  type ExportFormat,
} from '../admin/exchange-export.js';
import { filterFrom, FILTER_PARAMS, pageFrom, usageFrom, type ParamSource } from '../admin/query-params.js';
import { USAGE_MAX_ROWS } from '../store/usage-report.js';
import { pricingFrom } from '../store/pricing.js';
import { centsText } from '../recorder/exchange-turn.js';
import { listenAddress, type ListenAddress, type VigilConfig } from '../config/config-schema.js';
import { loadConfig } from '../config/load-config.js';
import { formatPath } from '../config/config-path.js';
import { ConfigError, VigilError } from '../errors.js';
import { configDigest, SIGHUP_ACTOR } from '../config/config-changes.js';
import {
  createGatewayKey,
  listedKeyView,
  revokeGatewayKey,
  rotateGatewayKey,
  shownKey,
} from '../identity/key-admin.js';
import { isLoopbackHost } from '../identity/loopback.js';
import { recordCliRead } from './cli-reads.js';
import type { ReplayLog } from '../replay/replay-server.js';
import { listJson } from './list-json.js';
import { readExchange, readSession, type ExchangeView } from '../recorder/exchange-reader.js';
import type { AuditStore, ExchangeFilter } from '../store/audit-store.js';
import { describeOverdue } from '../store/digest-overdue.js';
import { digestsOverdueAfterMs, signChain } from '../store/ledger-upkeep.js';
import { describeStore, openStore, usesPostgres } from '../store/open-store.js';
import { SqliteAuditStore } from '../store/sqlite/sqlite-audit-store.js';
import { describeLimit, formatCount, formatMoney, UsageLimits, type LimitStatus } from '../policy/usage-limits.js';
import { renderExchange } from './transcript.js';
import { cliActor } from './cli-actor.js';
import {
  holdsCommand,
  mismatchMarked,
  publicKeyCommand,
  retentionCommand,
  warnLedgerMismatch,
} from './ledger-commands.js';
import { readPublicKey } from '../store/signing-key.js';

const USAGE = `usage: vigil <command> [options]

commands:
  serve                      run the gateway (default: 127.0.0.1:8080 → https://api.anthropic.com, data in ./vigil-data)
  config check [serve's options]
                             what serve would refuse before opening anything (exit 2, each problem by its path), else
                             what it would run; opens no store and no port
  sessions list [filters as for export] [--limit N] [--cursor C]
                             list recorded sessions, newest first
  sessions show <id>         one session as a transcript (or --json)
  sessions export [<id>] [--format jsonl|markdown] [--out FILE] [--caller S] [--group G] [--connection C]
                  [--model M] [--outcome O] [--masking TYPE] [--stop-reason R] [--since T] [--until T]
                             export a session, or every exchange matching the filters (JSONL: one exchange a line)
  usage [--by caller|connection|model|day|group] [--limit N] [filters as for export] [--json | --csv]
                             exchanges, tokens, failures and refusals per caller, connection, model or day
  limits [--caller SUBJECT] [--json]
                             the connections' usage limits and what each caller used of each, read from the store
  search <query> [--limit N] [--cursor C] [filters as for export]
                             full-text search of prompts, responses and tool calls ("phrases", prefix*)
  verify [--public-key FILE]… [--anchor CHAIN:SEQ:HASH]…
                             check the store's hash chains; exit 1 naming any changed, removed or reordered record;
                             with the public key, also every signed digest and purge record; with an anchor (a
                             ledger.digest event's, from the SIEM), also that the store still holds that record;
                             warns of chains whose records went on unsigned past signing.overdue_after
  retention run [--dry-run] [--json]
                             purge exchanges past their connection's retention window (holds excepted)
  holds add --session ID | --caller SUBJECT|EMAIL --reason "…"
                             keep a session's or a caller's exchanges out of every purge
  holds list [--active]      list legal holds
  holds release HOLD-ID --reason "…"
                             release a hold
  keys create --name NAME [--connection C]… [--owner WHO] [--expires 30d]
                             issue a gateway key for a service (printed once; only its hash is stored)
  keys list                  list gateway keys
  keys rotate NAME [--overlap 1h] [--expires 30d]
                             replace a key with a new one of the same name; the old one works out the overlap
  keys revoke NAME           revoke a key (takes effect on the next request)
  approvals list [--all] [--json]
                             calls held for approval (see README, "Approvals")
  approvals show ID [--json] one held call, waiting or decided: caller, rule, why, prompt excerpt, decisions
  approvals approve ID [--reason TEXT] [--grant MINUTES] [--json]
  approvals deny ID --reason TEXT [--json]
                             decide a held call (--token or VIGIL_TOKEN: your OIDC token when identity is configured)
  keys public [--out FILE]   print the public half of the ledger signing key (for verify --public-key)
  store grants --role ROLE [--schema NAME | --config FILE]
                             print the SQL that lets a PostgreSQL role append and read, never change or delete
                             (schema: --schema, else the config's store.postgres.schema, else public)
  store backup --out DIR     a consistent copy of the embedded SQLite store, taken while the gateway runs, as a data
                             directory of its own (DIR/vigil.db: vigil verify --data-dir DIR checks it)
  replay serve --session ID [--listen HOST:PORT] [--speed 1|0]
                             answer a client from a recorded session, without calling Claude (default 127.0.0.1:8090)
  replay resend EXCHANGE-ID --connection NAME
                             send a recorded request again through this gateway's connection; diff the answers
                             (exit 1 when the answer changed; VIGIL_GATEWAY_KEY is sent as x-api-key when set)
  sandbox                    run a fake Anthropic API (for trying Vigil offline)

options:
  --config FILE              YAML config (see README); default: the embedded default
  --listen HOST:PORT         proxy listener (serve), or sandbox listener
  --upstream URL             upstream of the default connection
  --data-dir DIR             where the embedded store lives (default ./vigil-data)
  --json                     machine-readable output
  -h, --help                 this help
`;

const COMMON = {
  config: { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies ParseArgsConfig['options'];

type Out = { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O) {
  return parseOptions(args, { ...COMMON, ...options });
}

async function withStore<T>(
  values: { config?: string; 'data-dir'?: string },
  fn: (store: AuditStore, config: VigilConfig) => Promise<T>,
): Promise<T> {
  const config = loadConfig({ configFile: values.config, dataDir: values['data-dir'] });
  const store = await openStore(config, { readonly: true }).catch((err: unknown) => {
    if (err instanceof ConfigError) throw err; // says what to fix already
    throw new CliError(`cannot open the store (${(err as Error).message}); is --data-dir or --config right?`);
  });
  try {
    return await fn(store, config);
  } finally {
    await store.close();
  }
}

/** The config `vigil serve` runs with these arguments (its flags over the file); null when it was asked for help. */
function serveConfig(args: string[], out: Out): { config: VigilConfig; file: string | undefined } | null {
  const { values } = parse(args, { listen: { type: 'string' }, upstream: { type: 'string' } });
  if (values.help) return (out.stdout.write(USAGE), null);
  const config = loadConfig({
    configFile: values.config,
    listen: values.listen,
    upstream: values.upstream,
    dataDir: values['data-dir'],
  });
  return { config, file: values.config };
}

async function serve(args: string[], out: Out): Promise<number> {
  const serving = serveConfig(args, out);
  if (serving === null) return 0;
  const { config } = serving;
  const { startGateway } = await import('../gateway.js');
  // Read again, with the same flags over the file, for a reload (SIGHUP, or POST /api/v1/config/reload).
  const gateway = await startGateway(config, { readConfig: () => serveConfig(args, out)!.config });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        gateway.log.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      gateway.log.info({ signal, graceMs: gateway.runningConfig().shutdown.grace }, 'shutting down');
      gateway.close().then(
        () => {
          // Records the store would not take before the end (it refused writes): logged by kind and exchange above;
          // a stop that lost records is a failed one, for whoever watches the exit code.
          const lost = gateway.recorder.queue.lostAtClose;
          if (lost === 0) return resolve(0);
          gateway.log.error({ lost }, 'stopped with records not written: the store refused writes to the end');
          resolve(1);
        },
        (err: unknown) => {
          gateway.log.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    // SIGHUP: read the config again, with the same flags over it, and apply what a running gateway can (README,
    // "Reloading the config"). A config that is invalid, or that changes what needs a restart, changes nothing.
    const reload = (): void => {
      if (stopping) return;
      gateway.log.info({ signal: 'SIGHUP', file: serving.file ?? null }, 'reloading the config');
      gateway.reloadFromSource(SIGHUP_ACTOR).catch((err: unknown) => {
        const message = (err as Error).message;
        gateway.log.error(
          { problems: err instanceof ConfigError ? err.problems : undefined },
          message.startsWith('config not reloaded') ? message : `config not reloaded: ${message}`,
        );
      });
    };
    process.on('SIGHUP', reload);
    // A fault of the gateway's own that nothing caught leaves it in a state no one can vouch for: it stops, as Node
    // would, but says so in the log's own shape (one JSON line, not a bare stack among them) with what is lost.
    const fatal = (kind: string) => (err: unknown) => {
      gateway.log.fatal(
        { err, inFlight: gateway.recorder.inFlight, recordsNotWritten: gateway.recorder.queue.backlog },
        `${kind}: the gateway stops. Exchanges in flight are recorded as interrupted at the next start; please ` +
          'report this error',
      );
      process.exit(1);
    };
    process.once('uncaughtException', fatal('uncaught exception'));
    process.once('unhandledRejection', fatal('unhandled promise rejection'));
    // Said once the signals are handled: a supervisor that stops the gateway as soon as it reads this line gets a
    // graceful stop. (Printed before, a SIGTERM sent at once could arrive first and kill it: seen, one start in three.)
    out.stdout.write(`vigil listening on ${gateway.url} (store: ${describeStore(config)})\n`);
    out.stdout.write(
      gateway.adminUrl
        ? `admin API on ${gateway.adminUrl}/api/v1\nweb UI on ${gateway.adminUrl}/ui/\n`
        : 'admin API off (admin.enabled: false)\n',
    );
  });
}

/**
 * `vigil config check`: what `vigil serve` with the same options would refuse before opening anything (every problem
 * named by its path, exit 2), else what it would run — listeners, store, each connection's upstream and proxy — and
 * what it would warn of (a connection whose credential cannot be read refuses its calls). Opens no store and no port:
 * for CI, before a deployment.
 */
/** ` through PROXY (where it was chosen)` for an issuer or webhook reached through a proxy, else nothing. */
const through = (p: { readonly proxy: string; readonly from: string } | undefined): string =>
  p ? ` through ${p.proxy} (${p.from})` : '';

async function configCheck(args: string[], out: Out): Promise<number> {
  const serving = serveConfig(args, out);
  if (serving === null) return 0;
  const { config } = serving;
  // Loaded here, not with the CLI: the gateway and its HTTP clients are most of what `vigil` would load otherwise.
  const [{ checkStartable, plainHttpWarning }, { adminListenAddress }, { OidcVerifier }, { ApprovalNotifier }] =
    await Promise.all([
      import('../gateway.js'),
      import('../admin/admin-server.js'),
      import('../identity/oidc-verifier.js'),
      import('../policy/approval-notifier.js'),
    ]);
  const [{ egressProxy }, { readCredential }] = await Promise.all([
    import('../net/egress-proxy.js'),
    import('../proxy/connections.js'),
  ]);
  checkStartable(config);
  const admin = config.admin.enabled ? adminListenAddress(config) : null;
  const lines = [
    `config ok: ${serving.file ?? 'the embedded default'}`,
    `  listen ${config.listen.host}:${config.listen.port}${config.tls ? ' over TLS' : ''}${admin ? ` (admin API ${admin.host}:${admin.port}${config.admin.tls ? ' over TLS' : ''})` : ' (admin API off)'}`,
    `  store ${describeStore(config)}`,
    `  identity ${config.identity.oidc.length ? '' : 'none (loopback callers only)'}`.trimEnd(),
  ];
  // Last, after the connections: the digest a gateway running this config reports as vigil_config_info.
  const digest = `  sha256 ${configDigest(config)}`;
  const issuers = new Map(new OidcVerifier(config.identity.oidc).proxies.map((p) => [p.issuer, p]));
  for (const o of config.identity.oidc) lines.push(`    issuer ${o.issuer}${through(issuers.get(o.issuer))}`);
  const warnings: string[] = [];
  const clear = plainHttpWarning(config);
  if (clear) warnings.push(clear);
  config.connections.forEach((c, i) => {
    const proxy = egressProxy(c.upstream, c.proxy, formatPath(['connections', i, 'proxy'], config));
    lines.push(`  connection ${c.name} → ${c.upstream}${proxy ? ` through ${proxy.shown} (${proxy.from})` : ''}`);
    for (const l of c.limits) lines.push(`    limit ${describeLimit(l, config.pricing?.currency)}`);
    const { problem } = readCredential(c);
    if (problem) warnings.push(`${problem}; its calls are refused until it is`);
  });
  // Webhooks by name only: a URL can be a credential (Slack's is).
  const webhooks = new Map(new ApprovalNotifier(config.approvals).proxies.map((p) => [p.webhook, p]));
  for (const w of config.approvals.webhooks) lines.push(`  approval webhook ${w.name}${through(webhooks.get(w.name))}`);
  // What usage reports and cost limits price calls at: the models, in the order the first match is taken.
  if (config.pricing) {
    lines.push(`  pricing ${config.pricing.currency}: ${config.pricing.models.map((m) => m.model).join(', ')}`);
  }
  lines.push(digest);
  out.stdout.write(`${lines.join('\n')}\n`);
  for (const w of warnings) out.stderr.write(`vigil: warning: ${w}\n`);
  return 0;
}

async function sessions(args: string[], out: Out): Promise<number> {
  const [verb, ...rest] = args;
  if (verb === 'list') {
    const { values } = parse(rest, {
      limit: { type: 'string' },
      cursor: { type: 'string' },
      ...FILTER_OPTIONS,
    });
    // Every filter the admin API's session list takes (`--model`, `--outcome`, `--stop-reason`, …).
    const filter = cliFilter(values);
    return withStore(values, async (store) => {
      const { limit, cursor } = cliPage(values);
      const page = await store.listSessions({ ...filter, limit, cursor });
      if (values.json) {
        out.stdout.write(listJson(page, 'sessions'));
        return 0;
      }
      if (page.items.length === 0) {
        out.stdout.write(filtered(filter) ? 'no sessions match these filters\n' : 'no sessions recorded\n');
      }
      for (const s of page.items) {
        out.stdout.write(
          `${s.id}  ${new Date(s.lastAt).toISOString()}  ${s.connection}  ${s.callerSubject}  ` +
            `${s.exchanges} exchange${s.exchanges === 1 ? '' : 's'}  in ${s.inputTokens} out ${s.outputTokens}\n`,
        );
      }
      if (page.nextCursor) out.stdout.write(`more: --cursor ${page.nextCursor}\n`);
      return 0;
    });
  }
  if (verb === 'show') {
    const { values, positionals } = parse(rest, {});
    const id = positionals[0];
    if (!id) throw new CliError('usage: vigil sessions show <session-id> [--json]');
    return withStore(values, async (store) => {
      // Written an exchange at a time: a long agent session can be far larger than one string may hold.
      const exchanges = sessionExchanges(store, id);
      const first = await exchanges.next();
      if (first.done) throw new CliError(`no session "${id}" in this store (see: vigil sessions list)`, 1);
      await recordCliRead(values, 'session', [id], out);
      const write = (s: string): Promise<void> | undefined =>
        out.stdout.write(s) ? undefined : drained(out.stdout as Writable);
      let i = 0;
      for (let x: IteratorResult<ExchangeView> = first; !x.done; x = await exchanges.next(), i++) {
        // The same text as JSON.stringify({ session_id, exchanges }, null, 2), one exchange at a time.
        if (values.json) {
          const item = JSON.stringify(x.value, null, 2).replaceAll('\n', '\n    ');
          await write(
            `${i === 0 ? `{\n  "session_id": ${JSON.stringify(id)},\n  "exchanges": [\n` : ',\n'}    ${item}`,
          );
        } else await write(`${i === 0 ? '' : '\n'}${renderExchange(x.value, i)}`);
      }
      if (values.json) await write('\n  ]\n}\n');
      return 0;
    });
  }
  if (verb === 'export') return exportSessions(rest, out);
  throw new CliError('usage: vigil sessions list|show|export …');
}

/** A filter parameter as a CLI option (`stop_reason` → `--stop-reason`). */
const cliOption = (param: string): string => param.replaceAll('_', '-');

/** Options of the filters shared by `search` and `sessions export` (the admin API's query parameters). */
const FILTER_OPTIONS = Object.fromEntries(FILTER_PARAMS.map((p) => [cliOption(p), { type: 'string' }])) as Record<
  string,
  { type: 'string' }
>;

/**
 * Parameters read as the admin API reads them (`read`: filterFrom, pageFrom, usageFrom), from the CLI's options
 * (`stop_reason` is `--stop-reason`); a parameter the API would refuse is refused naming its option.
 */
function cliParams<T>(values: Partial<Record<string, unknown>>, read: (get: ParamSource) => T): T {
  try {
    return read((n) => values[cliOption(n)] as string | undefined);
  } catch (err) {
    // The message names the parameter (`stop_reason: …`): named here as its option.
    throw new CliError(`--${(err as Error).message.replace(/^[a-z_]+/, cliOption)}`);
  }
}

/** The filters shared by `search`, `sessions list`, `sessions export` and `usage`. */
const cliFilter = (values: Partial<Record<string, unknown>>) => cliParams(values, filterFrom);
/** `--limit` and `--cursor`, checked as the admin API checks them. */
const cliPage = (values: Partial<Record<string, unknown>>) => cliParams(values, (get) => pageFrom(get));

/** Whether a filter narrows anything: an empty answer then says "match these filters", not "recorded". */
const filtered = (filter: ExchangeFilter): boolean => Object.values(filter).some((v) => v !== undefined);

async function exportSessions(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parse(args, {
    format: { type: 'string' },
    out: { type: 'string' },
    ...FILTER_OPTIONS,
  });
  const format = (values.format ?? 'jsonl') as ExportFormat;
  if (!EXPORT_FORMATS.includes(format)) throw new CliError(`--format: expected ${EXPORT_FORMATS.join(' or ')}`);
  const id = positionals[0];
  const filter = cliFilter(values);
  return withStore(values, async (store) => {
    if (id !== undefined && (await store.listExchanges(id)).length === 0) {
      throw new CliError(`no session "${id}" in this store (see: vigil sessions list)`, 1);
    }
    {
      const described = FILTER_PARAMS.flatMap((p) => {
        const v = (values as Record<string, unknown>)[cliOption(p)];
        return typeof v === 'string' ? [[p, v] as [string, string]] : [];
      });
      await recordCliRead(
        values,
        'export',
        id !== undefined ? [id] : [],
        out,
        new URLSearchParams(described).toString(),
      );
    }
    // Recorded content, readable by its owner alone (when the file is new), whatever directory it is written to.
    const file = values.out !== undefined ? createWriteStream(values.out, { mode: 0o600 }) : undefined;
    const dest = (file ?? out.stdout) as Writable;
    const started = Date.now();
    const n = await writeExport(
      id !== undefined ? sessionExchanges(store, id) : filteredExchanges(store, filter),
      dest,
      {
        format,
        title: id !== undefined ? `Session ${id}` : 'Vigil export',
        // Long exports say how far they are, on stderr so that stdout stays the export.
        onProgress: (written) => {
          if (written % 100 === 0) out.stderr.write(`… ${written} exchanges\n`);
        },
      },
    );
    if (file) {
      file.end();
      await finished(file);
    }
    out.stderr.write(
      `${n} exchange${n === 1 ? '' : 's'} written${values.out ? ` to ${values.out}` : ''} in ${Date.now() - started} ms\n`,
    );
    return 0;
  });
}

async function search(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parse(args, {
    limit: { type: 'string' },
    cursor: { type: 'string' },
    ...FILTER_OPTIONS,
  });
  const query = positionals.join(' ').trim();
  if (!query) throw new CliError('usage: vigil search <query> [--json] [--limit N] [--cursor C] [filters…]');
  const filter = cliFilter(values);
  return withStore(values, async (store) => {
    const { limit, cursor } = cliPage(values);
    const page = await store.search(query, {
      filter,
      ...(limit !== undefined ? { limit } : {}),
      ...(cursor !== undefined ? { cursor } : {}),
    });
    await recordCliRead(
      values,
      'search',
      page.items.map((h) => h.exchangeId),
      out,
      query,
    );
    if (values.json) {
      out.stdout.write(listJson(page));
      return 0;
    }
    if (page.items.length === 0) out.stdout.write('no matches\n');
    for (const h of page.items) {
      out.stdout.write(
        `${new Date(h.startedAt).toISOString()}  ${h.exchangeId}  session ${h.sessionId}  ${h.callerSubject}\n` +
          `    ${h.snippet.replace(/\s+/g, ' ')}\n`,
      );
    }
    if (page.nextCursor) out.stdout.write(`more: --cursor ${page.nextCursor}\n`);
    return 0;
  });
}

/** `vigil usage`: the admin API's usage report (`GET /usage`), from the store. */
async function usage(args: string[], out: Out): Promise<number> {
  const { values } = parse(args, {
    by: { type: 'string' },
    limit: { type: 'string' },
    csv: { type: 'boolean', default: false },
    ...FILTER_OPTIONS,
  });
  const filter = cliFilter(values);
  const asked = cliParams(values, usageFrom);
  return withStore(values, async (store, config) => {
    const report = await store.usage({ ...filter, ...asked }, pricingFrom(config.pricing));
    if (values.json) {
      out.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return 0;
    }
    const byCaller = report.by === 'caller';
    const priced = report.currency !== null;
    const csv = values.csv;
    const head = [
      report.by,
      ...(byCaller ? ['email'] : []),
      ...['exchanges', 'input tokens', 'cache reads', 'cache writes', 'output tokens'],
      ...(priced ? [`cost ${report.currency}`, ...(csv ? ['unpriced'] : [])] : []),
      ...['failed', 'refused', 'in progress'],
    ];
    const rows = report.items.map((r) => [
      r.key ?? '',
      ...(byCaller ? [r.email ?? ''] : []),
      ...[r.exchanges, r.inputTokens, r.cacheReadTokens, r.cacheWriteTokens, r.outputTokens].map(String),
      // The table rounds to a cent and marks a cost that leaves exchanges out; CSV gives it whole, and how many.
      ...(priced
        ? csv
          ? [String(r.cost), String(r.unpriced)]
          : [`${centsText(r.cost!)}${r.unpriced ? '*' : ''}`]
        : []),
      ...[r.failed, r.refused, r.inProgress].map(String),
    ]);
    if (csv) {
      // RFC 4180: every field quoted, quotes doubled; for spreadsheets and chargeback scripts.
      const line = (cells: string[]) => cells.map((c) => `"${c.replaceAll('"', '""')}"`).join(',');
      out.stdout.write([head, ...rows].map((r) => `${line(r)}\r\n`).join(''));
      return 0;
    }
    if (rows.length === 0) {
      out.stdout.write(filtered(filter) ? 'no exchanges match these filters\n' : 'no exchanges recorded\n');
      return 0;
    }
    const texts = rows.map(([key, ...rest]) => [key || (report.by === 'group' ? '(no group)' : '(unknown)'), ...rest]);
    const widths = head.map((h, i) => Math.max(h.length, ...texts.map((r) => r[i]!.length)));
    // The key (and e-mail) left-aligned, the counts right-aligned.
    const counts = byCaller ? 2 : 1;
    const line = (cells: string[]) =>
      cells
        .map((c, i) => (i < counts ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
        .join('  ')
        .trimEnd();
    out.stdout.write(`${[head, ...texts].map(line).join('\n')}\n`);
    if (report.truncated) out.stdout.write(`… more rows matched (--limit up to ${USAGE_MAX_ROWS})\n`);
    const unpriced = report.items.reduce((n, r) => n + (r.unpriced ?? 0), 0);
    if (unpriced > 0) {
      out.stdout.write(
        `* leaves out ${formatCount(unpriced)} exchange${unpriced === 1 ? '' : 's'} of models pricing does not price ` +
          '(see pricing.models in the config)\n',
      );
    }
    return 0;
  });
}

/**
 * `vigil limits`: each usage limit of the config, and what is used of it, as a gateway starting now would count it (read
 * back from the store, in the same steps): calls the gateway admitted but has not yet recorded are not in it.
 */
async function limitsCommand(args: string[], out: Out): Promise<number> {
  const { values } = parse(args, { caller: { type: 'string' } });
  return withStore(values, async (store, config) => {
    const pricing = pricingFrom(config.pricing);
    const limits = new UsageLimits({
      limits: new Map(config.connections.map((c) => [c.name, c.limits])),
      store,
      pricing,
    });
    if (!limits.configured) {
      out.stdout.write('no usage limits configured (connections[].limits in the config; see README, "Usage limits")\n');
      return 0;
    }
    let items: LimitStatus[];
    try {
      await limits.start();
      items = limits.status(values.caller === undefined ? {} : { caller: values.caller });
    } finally {
      await limits.close();
    }
    if (values.json) {
      out.stdout.write(`${JSON.stringify({ items }, null, 2)}\n`);
      return 0;
    }
    const lines: string[] = [];
    for (const l of items) {
      const configured = config.connections
        .find((c) => c.name === l.connection)!
        .limits.find((c) => c.name === l.name)!;
      lines.push(`${l.connection} · ${describeLimit(configured, pricing?.currency)}`);
      // The caller, then what the limit counts (right-aligned), then when a caller at it may call again.
      const rows = l.usage.map((u) => [
        u.group !== undefined ? `group ${u.group}` : (u.caller ?? '(all callers)'),
        ...(l.tokens === null ? [] : [`${formatCount(u.tokens)} tokens`]),
        ...(l.requests === null ? [] : [`${formatCount(u.requests)} calls`]),
        ...(l.cost === null ? [] : [formatMoney(u.cost, pricing?.currency)]),
        u.refusedUntil === null ? '' : `refused until ${u.refusedUntil}`,
      ]);
      if (rows.length === 0) lines.push('  nothing used in the window');
      const columns = rows[0]?.length ?? 0;
      const widths = Array.from({ length: columns }, (_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      const aligned = (c: string, i: number): string =>
        i === 0 || i === columns - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!);
      for (const r of rows) lines.push(`  ${r.map(aligned).join('  ').trimEnd()}`);
      if (l.truncated) lines.push(`  … the ${l.usage.length} most used are listed`);
    }
    out.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  });
}

/** `--anchor`: a record's chain, position and hash (a `ledger.digest` event's `anchor` attribute). */
const ANCHOR = /^(ch_[A-Za-z0-9_]+):([1-9]\d*):([0-9a-fA-F]{64})$/;

async function verify(args: string[], out: Out): Promise<number> {
  const { values } = parse(args, {
    'public-key': { type: 'string', multiple: true },
    anchor: { type: 'string', multiple: true },
  });
  const publicKeys = (values['public-key'] ?? []).map((file) => {
    try {
      return readPublicKey(file);
    } catch (err) {
      throw new CliError(`--public-key ${file}: ${(err as Error).message}`);
    }
  });
  const anchors = (values.anchor ?? []).map((text) => {
    const m = ANCHOR.exec(text.trim());
    if (!m) {
      throw new CliError(
        `--anchor ${text}: expected CHAIN:SEQ:HASH, as a ledger.digest event's "anchor" attribute (ch_…:12:<64 hex digits>)`,
      );
    }
    return { chain: m[1]!, chainSeq: Number(m[2]), hash: m[3]!.toLowerCase() };
  });
  return withStore(values, async (store, config) => {
    const overdueAfterMs = digestsOverdueAfterMs(config);
    const report = await store.verify({
      ...(publicKeys.length ? { publicKeys } : {}),
      ...(anchors.length ? { anchors } : {}),
      digestsOverdueAfterMs: overdueAfterMs,
    });
    const s = report.signatures;
    if (values.json) out.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else if (report.ok) {
      out.stdout.write(`ok: ${report.records} records in ${report.chains} chains, all intact\n`);
      if (s) {
        out.stdout.write(
          `signatures: ${s.digests} digests and ${s.purges} purge records verified with key ${s.keys.join(', ')}\n`,
        );
        for (const t of s.unsignedTails)
          out.stdout.write(`  unsigned tail: ${t.chain} #${t.fromSeq}..#${t.toSeq} (after its last digest)\n`);
      } else out.stdout.write('signatures not checked: pass --public-key FILE (from vigil keys public)\n');
      if (anchors.length) out.stdout.write(`anchors: ${anchors.length} found, with the hashes given\n`);
    } else {
      out.stdout.write(`FAILED: ${report.problems.length} problem(s) in ${report.records} records:\n`);
      for (const p of report.problems) out.stdout.write(`  ${p.problem}: ${p.detail}\n`);
    }
    // A warning, whatever the verdict: no evidence of tampering, but records their writer stopped signing.
    const overdue = report.digestsOverdue ?? [];
    if (!values.json && overdue.length) {
      out.stdout.write(
        `warning: digests overdue on ${overdue.length} chain(s): their writer stopped signing (a stuck gateway, ` +
          'failing digest writes, or a writer without the signing key; see its log):\n',
      );
      for (const o of overdue) out.stdout.write(`  digest_overdue: ${describeOverdue(o, overdueAfterMs)}\n`);
    }
    return report.ok ? 0 : 1;
  });
}

async function keys(args: string[], out: Out): Promise<number> {
  const [verb, ...rest] = args;
  if (verb === 'public') return publicKeyCommand(rest, out);
  const { values, positionals } = parse(rest, {
    name: { type: 'string' },
    connection: { type: 'string', multiple: true },
    owner: { type: 'string' },
    expires: { type: 'string' },
    overlap: { type: 'string' },
  });
  const config = loadConfig({ configFile: values.config, dataDir: values['data-dir'] });
  const store = await openStore(config);
  const actor = cliActor();
  try {
    if (verb === 'create') {
      if (!values.name)
        throw new CliError('usage: vigil keys create --name NAME [--connection C]… [--owner WHO] [--expires 30d]');
      const { key, record } = await createGatewayKey(
        store,
        {
          name: values.name,
          owner: values.owner ?? actor,
          connections: values.connection ?? [],
          expires: values.expires,
          createdBy: actor,
        },
        config.connections.map((c) => c.name),
      );
      // Approvals tell a key's calls from its owner's by the owner: with OIDC, cli:<user> is nobody an approver can be.
      if (values.owner === undefined && config.identity.oidc.length > 0)
        out.stderr.write(
          `vigil: warning: no --owner: the key's owner is "${actor}", which matches no OIDC identity, so its owner could ` +
            'approve its held calls; give --owner <e-mail> (revoke and create again)\n',
        );
      await signChain(config, store, { create: true });
      if (values.json) out.stdout.write(`${JSON.stringify({ key, ...shownKey(record) }, null, 2)}\n`);
      else {
        out.stdout.write(`${key}\n`);
        out.stderr.write(
          `key "${record.name}" created for ${record.connections.length ? record.connections.join(', ') : 'every connection'}` +
            `${record.expiresAt ? `, expires ${new Date(record.expiresAt).toISOString()}` : ', no expiry'}.\n` +
            "It is shown once: store it now (e.g. as the service's ANTHROPIC_API_KEY).\n",
        );
      }
      return 0;
    }
    if (verb === 'list') {
      const now = Date.now();
      const all = (await store.listGatewayKeys()).map((k) => listedKeyView(k, now));
      if (values.json) out.stdout.write(listJson({ items: all }, 'keys'));
      else if (all.length === 0) out.stdout.write('no gateway keys\n');
      else {
        for (const k of all) {
          out.stdout.write(
            `${k.name}  ${k.state}  owner ${k.owner}  connections ${k.connections.length ? k.connections.join(',') : '*'}  ` +
              `created ${new Date(k.createdAt).toISOString()}  expires ${k.expiresAt ? new Date(k.expiresAt).toISOString() : 'never'}  ` +
              `id ${k.id}` +
              // A key rotated with an overlap: live, and refused from then on.
              `${k.state === 'live' && k.revokedAt !== null ? `  until ${new Date(k.revokedAt).toISOString()} (rotated)` : ''}` +
              `${mismatchMarked(k.ledgerMismatch)}`,
          );
        }
      }
      warnLedgerMismatch(
        out,
        'gateway_keys',
        all,
        'They are marked above, and shown as authentication has them: from their key.created and key.revoked ' +
          'records, "refused" when the index or the ledger lacks the key',
      );
      return 0;
    }
    if (verb === 'revoke') {
      const name = positionals[0] ?? values.name;
      if (!name) throw new CliError('usage: vigil keys revoke NAME');
      const revoked = await revokeGatewayKey(store, name, actor);
      await signChain(config, store, { create: true });
      const also = revoked.alsoRevoked.length
        ? ` (and ${revoked.alsoRevoked.join(', ')}, still working out a rotation's overlap)`
        : '';
      out.stdout.write(`key "${name}" revoked${also}\n`);
      return 0;
    }
    if (verb === 'rotate') {
      const name = positionals[0] ?? values.name;
      if (!name) throw new CliError('usage: vigil keys rotate NAME [--overlap 1h] [--expires 30d]');
      const { key, record, replaced } = await rotateGatewayKey(store, name, {
        overlap: values.overlap,
        expires: values.expires,
        rotatedBy: actor,
      });
      await signChain(config, store, { create: true });
      if (values.json) out.stdout.write(`${JSON.stringify({ key, ...shownKey(record), replaced }, null, 2)}\n`);
      else {
        out.stdout.write(`${key}\n`);
        const until =
          replaced.revokedAt <= record.createdAt
            ? 'is revoked now'
            : `keeps working until ${new Date(replaced.revokedAt).toISOString()}, then is refused`;
        out.stderr.write(
          `key "${record.name}" rotated: the new key (${shownKey(record).id}) has the same owner and connections` +
            `${record.expiresAt ? ` and expires ${new Date(record.expiresAt).toISOString()}` : ''}; the old one ` +
            `(${replaced.id}) ${until}.\nThe new key is shown once: store it now where the old one was.\n`,
        );
      }
      return 0;
    }
    throw new CliError('usage: vigil keys create|list|rotate|revoke …');
  } catch (err) {
    if (err instanceof VigilError) throw new CliError(err.message, 1);
    throw err;
  } finally {
    await store.close();
  }
}

const STORE_USAGE =
  'usage: vigil store grants --role ROLE [--schema NAME | --config FILE]\n' +
  '       vigil store backup --out DIR [--config FILE | --data-dir DIR]';

async function storeCommand(args: string[], out: Out): Promise<number> {
  const [verb, ...rest] = args;
  if (verb === 'backup') return storeBackup(rest, out);
  const { values } = parse(rest, { role: { type: 'string' }, schema: { type: 'string' } });
  if (verb !== 'grants' || !values.role) throw new CliError(STORE_USAGE);
  const config = values.config ? loadConfig({ configFile: values.config }) : undefined;
  const schema = values.schema ?? config?.store.postgres?.schema ?? 'public';
  const { appendOnlyGrantsSql } = await import('../store/postgres/postgres-migrations.js');
  out.stdout.write(`${appendOnlyGrantsSql(schema, values.role)}\n`);
  return 0;
}

/**
 * `vigil store backup --out DIR`: a consistent copy of the embedded store, taken while the gateway runs, as a data
 * directory of its own (DIR/vigil.db) that `vigil verify --data-dir DIR` checks and `vigil serve --data-dir DIR` serves
 * from. Written to a partial file first, renamed once complete. The making of the copy is in the access log (and in
 * the copy): it holds everything recorded.
 */
async function storeBackup(args: string[], out: Out): Promise<number> {
  const { values } = parse(args, { out: { type: 'string' } });
  if (!values.out) throw new CliError(STORE_USAGE);
  const config = loadConfig({ configFile: values.config, dataDir: values['data-dir'] });
  if (usesPostgres(config)) {
    throw new CliError(
      'store backup copies the embedded SQLite store; this config uses PostgreSQL: back it up with pg_dump ' +
        `(schema ${config.store.postgres?.schema ?? 'public'}) or your database's own backups`,
    );
  }
  const dir = path.resolve(values.out);
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new CliError(`--out ${dir} is not empty: give a new or empty directory, so no backup is written over`);
  }
  await recordCliRead(values, 'export', [], out, `store backup to ${dir}`);
  return withStore(values, async (store) => {
    if (!(store instanceof SqliteAuditStore)) throw new CliError('store backup copies the embedded SQLite store only');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const target = path.join(dir, 'vigil.db');
    const partial = `${target}.partial`;
    const started = Date.now();
    try {
      store.backupTo(partial);
      // Everything recorded, readable by its owner alone, whatever the directory it was put in lets others do.
      chmodSync(partial, 0o600);
      renameSync(partial, target);
    } catch (err) {
      rmSync(partial, { force: true });
      throw new CliError(`the backup failed (${(err as Error).message}); nothing was written to ${dir}`);
    }
    const mib = (statSync(target).size / (1 << 20)).toFixed(1);
    out.stdout.write(
      `wrote ${target} (${mib} MiB): the store as it was at ${new Date(started).toISOString()}\n` +
        `check it with: vigil verify --data-dir ${dir} (add --public-key FILE to check its signatures)\n` +
        `the signing key is not in it: keep ${path.join(config.data_dir, 'signing-key.pem')} apart, as the secret it is\n`,
    );
    return 0;
  });
}

/** Replay log lines for a person at a terminal: what was served, and why a request diverged. */
function replayLog(out: Out): ReplayLog {
  const line = (o: object, msg: string): void => {
    const { reason, ...rest } = o as { reason?: string };
    out.stderr.write(`${msg} ${JSON.stringify(rest)}${reason ? `\n  ${reason}` : ''}\n`);
  };
  return { info: line, warn: line };
}

async function replay(args: string[], out: Out): Promise<number> {
  const [verb, ...rest] = args;
  if (verb === 'serve') {
    const { values } = parse(rest, {
      session: { type: 'string' },
      listen: { type: 'string' },
      speed: { type: 'string' },
    });
    const session = values.session;
    if (!session) throw new CliError('usage: vigil replay serve --session <id> [--listen HOST:PORT] [--speed 1|0]');
    const speed = Number(values.speed ?? '1');
    if (!Number.isFinite(speed) || speed < 0) {
      throw new CliError(
        `--speed must be 1 (recorded timing), 0 (as fast as possible) or another factor (got "${values.speed}")`,
      );
    }
    const { host, port } = listenOption(values.listen, '127.0.0.1:8090');
    // It answers anyone who reaches it with what was recorded, and asks nobody who they are.
    if (!isLoopbackHost(host))
      throw new CliError(
        `--listen ${host}: the replay server has no authentication and serves recorded conversations, so it listens on this machine only (127.0.0.1, localhost or ::1)`,
        2,
      );
    const exchanges = await withStore(values, (store) => readSession(store, session));
    if (exchanges.length === 0)
      throw new CliError(`no session "${session}" in this store (see: vigil sessions list)`, 1);
    await recordCliRead(values, 'session', [session], out);
    const { startReplayServer } = await import('../replay/replay-server.js');
    const server = await startReplayServer({
      exchanges,
      host,
      port,
      speed,
      log: replayLog(out),
    });
    return new Promise<number>((resolve) => {
      const stop = (): void =>
        void server.close().then(() => {
          out.stderr.write(`served ${server.served} of ${exchanges.length} recorded exchanges\n`);
          resolve(0);
        });
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      // Said once the signals are handled (see serve).
      out.stdout.write(`replaying session ${session} (${exchanges.length} exchanges) on ${server.url}\n`);
      out.stdout.write(`point the client at it: ANTHROPIC_BASE_URL=${server.url}\n`);
    });
  }
  if (verb === 'resend') {
    const { values, positionals } = parse(rest, { connection: { type: 'string' } });
    const id = positionals[0];
    if (!id || !values.connection)
      throw new CliError('usage: vigil replay resend <exchange-id> --connection <name> [--json]');
    const config = loadConfig({ configFile: values.config, dataDir: values['data-dir'] });
    const { connectionBaseUrl, resendExchange } = await import('../replay/resend.js');
    let connectionUrl: string;
    try {
      connectionUrl = connectionBaseUrl(config, values.connection);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    const exchange = await withStore(values, (store) => readExchange(store, id));
    if (!exchange) throw new CliError(`no exchange "${id}" in this store (see: vigil sessions show <session-id>)`, 1);
    await recordCliRead(values, 'exchange', [id], out);
    const key = process.env.VIGIL_GATEWAY_KEY;
    const result = await resendExchange({
      exchange,
      connectionUrl,
      ...(key ? { headers: { 'x-api-key': key } } : {}),
    }).catch((err: unknown) => {
      throw new CliError(
        `cannot reach the gateway at ${connectionUrl} (${(err as Error).message}); is \`vigil serve\` running?`,
        1,
      );
    });
    if (values.json) {
      const { status, exchangeId, message, error, diff } = result;
      out.stdout.write(
        `${JSON.stringify({ status, exchange_id: exchangeId, message, error, same: diff.same, changes: diff.changes }, null, 2)}\n`,
      );
    } else {
      out.stdout.write(
        `resent ${id} through ${values.connection}: ${result.status}, recorded as ${result.exchangeId ?? '(no id)'}\n`,
      );
      out.stdout.write(result.diff.same ? 'same answer as recorded\n' : result.diff.text);
    }
    return result.diff.same ? 0 : 1;
  }
  throw new CliError('usage: vigil replay serve|resend …');
}

/** `--listen HOST:PORT` (IPv6 as [::1]:PORT), parsed as the config's `listen` is. */
function listenOption(value: string | undefined, fallback: string): ListenAddress {
  const r = listenAddress.safeParse(value ?? fallback);
  if (!r.success) throw new CliError(`--listen ${r.error.issues[0]?.message ?? 'must be HOST:PORT'}`, 2);
  return r.data;
}

async function sandbox(args: string[], out: Out): Promise<number> {
  const { values } = parse(args, { listen: { type: 'string' } });
  const { host, port } = listenOption(values.listen, '127.0.0.1:9090');
  const { startFakeAnthropic } = await import('../sandbox/fake-anthropic.js');
  const fake = await startFakeAnthropic({ host, port });
  return new Promise((resolve) => {
    const stop = (): void => void fake.close().then(() => resolve(0));
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    // Said once the signals are handled (see serve).
    out.stdout.write(`fake Anthropic API on ${fake.url} — point a connection's upstream at it\n`);
  });
}

/** A PostgreSQL error with SQLSTATE insufficient_privilege (42501), as node-postgres reports it (`severity` set). */
function isPrivilegeRefusal(err: unknown): err is Error & { hint?: string } {
  return err instanceof Error && (err as { code?: unknown }).code === '42501' && 'severity' in err;
}

/** Commands whose first argument is a verb (`vigil keys create`), named with it when an option is unknown. */
const SUBCOMMANDS = new Set(['sessions', 'retention', 'holds', 'keys', 'store', 'approvals', 'config']);

export async function run(
  argv: string[],
  out: Out = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const [command, ...args] = argv;
  try {
    switch (command) {
      case 'serve':
        return await serve(args, out);
      case 'sessions':
        return await sessions(args, out);
      case 'verify':
        return await verify(args, out);
      case 'search':
        return await search(args, out);
      case 'usage':
        return await usage(args, out);
      case 'limits':
        return await limitsCommand(args, out);
      case 'retention':
        return await retentionCommand(args, out);
      case 'holds':
        return await holdsCommand(args, out);
      case 'keys':
        return await keys(args, out);
      case 'store':
        return await storeCommand(args, out);
      case 'config':
        if (args[0] !== 'check') throw new CliError('usage: vigil config check [--config FILE] [serve options]');
        return await configCheck(args.slice(1), out);
      case 'approvals':
        return await (await import('./approvals-command.js')).approvalsCommand(args, out);
      case 'replay':
        return await replay(args, out);
      case 'sandbox':
        return await sandbox(args, out);
      case undefined:
      case 'help':
      case '-h':
      case '--help':
        out.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new CliError(`unknown command "${command}"\n\n${USAGE}`);
    }
  } catch (err) {
    if (err instanceof ConfigError || err instanceof CliError) {
      out.stderr.write(`vigil: ${err.message}\n`);
      return err instanceof CliError ? err.exitCode : 2;
    }
    if (err instanceof UnknownOptionError) {
      const sub = SUBCOMMANDS.has(command!) && args[0] && !args[0].startsWith('-') ? ` ${args[0]}` : '';
      out.stderr.write(`vigil: ${err.describe(`vigil ${command}${sub}`)}\n`);
      return 2;
    }
    if (err instanceof VigilError) {
      out.stderr.write(`vigil: ${(err as Error).message}\n`);
      return 2;
    }
    if (isPrivilegeRefusal(err)) {
      // The store's own refusals (the append-only ledger; key and hold records are the schema owner's) say what to do.
      out.stderr.write(`vigil: ${err.message}${err.hint ? ` (${err.hint})` : ''}\n`);
      return 2;
    }
    if ((err as { code?: string }).code === 'EADDRINUSE') {
      out.stderr.write(`vigil: ${(err as Error).message}: another process listens there; choose --listen HOST:PORT\n`);
      return 2;
    }
    throw err;
  }
}
