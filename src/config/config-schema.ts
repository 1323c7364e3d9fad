/**
 * The configuration schema: one zod schema that is both the validator and the TypeScript type.
 * Every key is documented in the README's config reference; keep the two in step.
 */
import { z } from 'zod';
import { duration, orSecretRef, positiveDuration, proxySetting, secretRef } from './common-schemas.js';
import { allowListSchema, identityConfigSchema } from '../identity/identity-config.js';
import { isLoopbackHost } from '../identity/loopback.js';
import { siemConfigSchema } from '../export/sinks-config.js';
import { maskingConfigSchema } from '../recorder/masking/masking-config.js';
import { approvalsConfigSchema } from '../policy/approvals-config.js';
import { pricingSchema } from '../store/pricing.js';
import { limitsSchema } from '../policy/usage-limits.js';
import { tlsListenerSchema } from '../net/tls-config.js';
import { approvalRulesSchema } from '../policy/approval-rules.js';
import { uiSignInProblems, uiSignInSchema } from '../admin/ui-sign-in.js';

/** How long recorded exchanges are kept: a duration (`30d`, `12h`) or `forever`. */
const retentionWindow = z
  .union([z.number().int().nonnegative(), z.string()])
  .transform((v, ctx): 'forever' | number => {
    if (v === 'forever') return v;
    const ms = duration.safeParse(v);
    if (!ms.success) {
      ctx.addIssue({ code: 'custom', message: `must be a duration such as 30d or 12h, or forever (got "${v}")` });
      return z.NEVER;
    }
    return ms.data;
  });

/** `HOST:PORT` (IPv6 as `[::1]:8080`). */
export const listenAddress = z.string().transform((v, ctx) => {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(v.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    ctx.addIssue({ code: 'custom', message: `must be HOST:PORT, e.g. 127.0.0.1:8080 (got "${v}")` });
    return z.NEVER;
  }
  return { host: (m[1] ?? m[2])!, port };
});
export type ListenAddress = z.output<typeof listenAddress>;

const connectionName = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9._-]{0,62}$/,
    'must be 1-63 characters of a-z, 0-9, ".", "_" or "-", starting with a letter or digit',
  );

const upstreamUrl = z.string().transform((v, ctx) => {
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    ctx.addIssue({ code: 'custom', message: `must be an absolute http(s) URL (got "${v}")` });
    return z.NEVER;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    ctx.addIssue({ code: 'custom', message: `must be an https URL (got protocol ${url.protocol})` });
    return z.NEVER;
  }
  if (url.search || url.hash || url.username || url.password) {
    ctx.addIssue({
      code: 'custom',
      message: 'must not contain a query, fragment or credentials; use credential: for the key',
    });
    return z.NEVER;
  }
  return url.origin + url.pathname.replace(/\/+$/, '');
});

const connectionSchema = z
  .object({
    name: connectionName,
    upstream: upstreamUrl.default('https://api.anthropic.com'),
    /** The gateway's own credential for this upstream; callers never see it. Absent: nothing is sent upstream. */
    credential: secretRef.optional(),
    /** How often a `{ file }` credential's file is looked at for a rotated key (read again when it changed). */
    credential_reload: positiveDuration.default(10_000),
    /** How the credential is sent: Anthropic API keys as x-api-key, OAuth-style tokens as Authorization: Bearer. */
    credential_header: z.enum(['x-api-key', 'authorization']).default('x-api-key'),
    /**
     * `required` (default): a request that cannot be recorded is refused with 503 (fail closed).
     * `best_effort`: forward anyway and report the recording failure.
     */
    recording: z.enum(['required', 'best_effort']).default('required'),
    /**
     * How much is kept: `full` (default) everything; `metadata` identity, model, tokens, timings, outcome and masking
     * counts, no bodies, headers or events; `off` nothing (the connection is unrecorded).
     */
    record: z.enum(['full', 'metadata', 'off']).default('full'),
    /**
     * Secrets and personal data are masked before anything is stored (on by default). `in_flight` also acts on the
     * request before it goes upstream: `mask` sends the masked request, `block` refuses it (400) naming what was found.
     */
    masking: maskingConfigSchema.extend({ in_flight: z.enum(['off', 'mask', 'block']).default('off') }).prefault({}),
    /** Allow plain http to a non-loopback upstream (never recommended). */
    allow_insecure_upstream: z.boolean().default(false),
    /**
     * The HTTP proxy the upstream is reached through (a CONNECT tunnel): `http://proxy.example:3128`, `{ env: NAME }`
     * or `{ file: PATH }` (one with a password in it), or `none`. Absent: the gateway's `https_proxy`/`HTTPS_PROXY`
     * (`http_proxy` for an http upstream) unless `no_proxy` names the upstream's host; never for a loopback upstream.
     */
    proxy: proxySetting.optional(),
    /**
     * Who may use this connection: `[{subject}, {group}, {email}, {key}]`; any match allows. Absent: every caller the
     * gateway authenticates (including anonymous loopback callers when identity is not configured).
     */
    allow: allowListSchema.optional(),
    /** Time allowed for upstream to send response headers, and idle time between body chunks. */
    upstream_timeout: duration.default(600_000),
    /** Calls refused at once (`deny`) or held until people approve them (`hold`); see README, "Approvals". */
    approvals: approvalRulesSchema.default([]),
    /** How long this connection's exchanges are kept after they end (`30d`, `forever`); default: `retention.default`. */
    retention: retentionWindow.optional(),
    /** Calls or tokens a caller (or the connection) may use in a rolling window; see README, "Usage limits". */
    limits: limitsSchema.default([]),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.record === 'off') {
      c.limits.forEach((l, i) => {
        for (const [key, what] of [
          ['tokens', 'token'],
          ['cost', 'cost'],
        ] as const) {
          if (l[key] === undefined) continue;
          ctx.addIssue({
            code: 'custom',
            path: ['limits', i, key],
            message: `a ${what} limit needs the usage a recording reads: set record: metadata (or full), or limit requests only`,
          });
        }
      });
    }
    const host = new URL(c.upstream).hostname;
    const loopback = isLoopbackHost(host);
    if (c.upstream.startsWith('http:') && !loopback && !c.allow_insecure_upstream) {
      ctx.addIssue({
        code: 'custom',
        path: ['upstream'],
        message:
          'must be an https URL (plain http is accepted for loopback only, or with allow_insecure_upstream: true)',
      });
    }
  });
export type ConnectionConfig = z.output<typeof connectionSchema>;

/** Who may use the admin API beyond what `identity` proves: OIDC groups per role, and tokens for automation. */
const adminConfigSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** Default: 127.0.0.1 on the proxy's port + 1 (127.0.0.1:8081 by default; a free port when listen's port is 0). */
    listen: listenAddress.optional(),
    /** Serve the admin API (and web UI) over HTTPS with this certificate and key. */
    tls: tlsListenerSchema.optional(),
    /** OIDC groups whose members get a role; any other authenticated caller is a `user` (sees own sessions only). */
    roles: z
      .object({
        admin: z.array(z.string().min(1)).default([]),
        auditor: z.array(z.string().min(1)).default([]),
      })
      .strict()
      .prefault({}),
    /** API tokens for automation, sent as Authorization: Bearer …; compared in constant time. */
    tokens: z
      .array(
        z
          .object({
            name: connectionName,
            role: z.enum(['admin', 'auditor']),
            token: secretRef,
          })
          .strict(),
      )
      .default([]),
    /** How often the files of `{ file }` tokens are looked at for a rotated token (read again when they changed). */
    token_reload: positiveDuration.default(10_000),
    /** The web UI: `oidc` adds "Sign in with <IdP>" (authorization code + PKCE; see README, "Web UI"). */
    ui: z.object({ oidc: uiSignInSchema.optional() }).strict().prefault({}),
  })
  .strict()
  .superRefine((a, ctx) => {
    const seen = new Set<string>();
    a.tokens.forEach((t, i) => {
      if (seen.has(t.name))
        ctx.addIssue({ code: 'custom', path: ['tokens', i, 'name'], message: `duplicate token name "${t.name}"` });
      seen.add(t.name);
    });
  })
  .prefault({});
export type AdminConfig = z.output<typeof adminConfigSchema>;

export const configSchema = z
  .object({
    /** The proxy listener clients use as ANTHROPIC_BASE_URL. */
    listen: listenAddress.default({ host: '127.0.0.1', port: 8080 }),
    /** Serve the proxy listener over HTTPS with this certificate and key (README, "TLS"). */
    tls: tlsListenerSchema.optional(),
    /**
     * The gateway's base URL as clients reach it (e.g. behind a TLS load balancer: https://claude-gw.example.com).
     * Used where a response names the gateway's own address (batch results_url). Default: http:// (https:// with
     * `tls`) + the Host header.
     */
    public_url: z.url({ protocol: /^https?$/ }).optional(),
    /** Where the embedded store and generated keys live. */
    data_dir: z.string().default('./vigil-data'),
    store: z
      .object({
        /**
         * PostgreSQL, for several gateways sharing one store. `url` is `{ env: NAME }`, `{ file: PATH }`, or a URL without
         * a password. Without this section, the DATABASE_URL environment variable selects PostgreSQL when set.
         */
        postgres: z
          .object({
            url: orSecretRef(
              z.string().min(1),
              'a PostgreSQL URL without a password (postgres://user@host/db)',
            ).superRefine((v, ctx) => {
              if (typeof v === 'string' && /^[a-z]+:\/\/[^/@:]*:[^/@]+@/i.test(v)) {
                ctx.addIssue({
                  code: 'custom',
                  message: 'must not contain a password: use { env: NAME } or { file: PATH }',
                });
              }
            }),
            /** Schema holding Vigil's tables (created on first start). */
            schema: z
              .string()
              .regex(/^[a-z_][a-z0-9_]{0,62}$/)
              .default('public'),
            pool_size: z.number().int().min(1).max(200).default(10),
            /**
             * How long a gateway whose database session ended (the server restarted, its connection dropped) is given
             * to connect again before another gateway records its open exchanges as interrupted.
             */
            reconnect_grace: duration.default(15_000),
          })
          .strict()
          .optional(),
        sqlite: z
          .object({
            /** Default: <data_dir>/vigil.db */
            path: z.string().optional(),
            /**
             * `normal` (default): every commit survives a crash of the gateway process (WAL); a power loss may lose the
             * last commits. `full`: fsync at every commit, surviving power loss, at a cost per request.
             */
            synchronous: z.enum(['normal', 'full']).default('normal'),
          })
          .strict()
          .default({ synchronous: 'normal' }),
      })
      .strict()
      .default({ sqlite: { synchronous: 'normal' } }),
    /** Who is calling: OIDC issuers trusted for bearer tokens. Gateway keys need no config. */
    identity: identityConfigSchema
      .extend({
        /**
         * Callers that present no identity: `loopback` lets callers on this machine in as `anonymous`; `never` refuses
         * them (401). Default: `loopback` when no OIDC issuer is configured, else `never`.
         */
        anonymous: z.enum(['loopback', 'never']).optional(),
      })
      .default({ oidc: [] }),
    /** Name of the connection served at `/`; default: the first connection. */
    default_connection: connectionName.optional(),
    connections: z.array(connectionSchema).min(1, 'declare at least one connection'),
    limits: z
      .object({
        /** Largest request body accepted (413 request_too_large beyond). */
        max_request_body: z
          .number()
          .int()
          .positive()
          .default(32 * 1024 * 1024),
        /** Largest response body kept in the record; the client still receives all of it. */
        max_recorded_response_body: z
          .number()
          .int()
          .positive()
          .default(64 * 1024 * 1024),
      })
      .strict()
      .default({ max_request_body: 32 * 1024 * 1024, max_recorded_response_body: 64 * 1024 * 1024 }),
    shutdown: z
      .object({
        /** How long in-flight streams may run after SIGTERM before they are cut (and recorded as interrupted). */
        grace: duration.default(30_000),
      })
      .strict()
      .default({ grace: 30_000 }),
    /** Audit events streamed to SIEMs (syslog, HTTP, Splunk HEC, OpenTelemetry), through a durable outbox. */
    siem: siemConfigSchema.prefault({}),
    /** Where held calls are announced (webhooks) and the admin URL approvers use; rules are per connection. */
    approvals: approvalsConfigSchema,
    /** What tokens cost per model, for the cost column of usage reports (absent: reports count tokens only). */
    pricing: pricingSchema.optional(),
    /** Purging exchanges past their connection's window (see README, "Retention and legal holds"). */
    retention: z
      .object({
        /** Window for connections without their own `retention`; default `forever` (nothing is purged). */
        default: retentionWindow.default('forever'),
        /** How often the gateway purges; 0: never in the gateway (run `vigil retention run` from cron instead). */
        schedule: duration.default(3_600_000),
        /**
         * The most exchanges removed in one transaction. Each batch holds the store's write lock while it runs (on
         * SQLite, on the gateway's thread), and a request is recorded before it is forwarded: so batches are sized to
         * take about 20 ms (see BATCH_TARGET_MS in store/retention.ts), and this only caps them.
         */
        batch: z.number().int().min(1).max(10_000).default(1000),
      })
      .strict()
      .prefault({}),
    /** The Ed25519 key that signs digests and purge records (see README, "Verifying with the public key"). */
    signing: z
      .object({
        /** PEM private key; generated (mode 0600) when absent. Default <data_dir>/signing-key.pem; relative to data_dir. */
        key: z
          .object({ file: z.string().min(1) })
          .strict()
          .optional(),
        /** How often each gateway signs what its chain gained (also at shutdown); 0: at shutdown only. */
        interval: duration.default(60_000),
        /**
         * Records of a chain that go without a digest of their chain for longer than this are reported: by
         * `vigil verify` (a warning) and by every running gateway (a `ledger.digest_overdue` event and metrics).
         * Default three intervals; 0, or no interval: not checked. See digestsOverdueAfterMs().
         */
        overdue_after: duration.optional(),
      })
      .strict()
      .prefault({}),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .default({ level: 'info' }),
    /** The admin API (audit access: sessions, search, export, verify): a listener of its own. See README, "Audit access". */
    admin: adminConfigSchema,
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.connections.forEach((conn, i) => {
      if (seen.has(conn.name)) {
        ctx.addIssue({
          code: 'custom',
          path: ['connections', i, 'name'],
          message: `duplicate connection name "${conn.name}"`,
        });
      }
      seen.add(conn.name);
      // A budget in money needs to know what tokens cost.
      conn.limits.forEach((l, j) => {
        if (l.cost !== undefined && c.pricing === undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['connections', i, 'limits', j, 'cost'],
            message:
              'needs pricing: a cost limit counts what calls cost as usage reports price them; add pricing.models ' +
              '(README, "Cost"), or limit tokens instead',
          });
        }
      });
    });
    for (const problem of uiSignInProblems(c.admin.ui.oidc, c.identity.oidc))
      ctx.addIssue({ code: 'custom', ...problem });
    const { interval, overdue_after: overdueAfter } = c.signing;
    if (overdueAfter !== undefined && overdueAfter > 0 && interval > 0 && overdueAfter <= interval) {
      ctx.addIssue({
        code: 'custom',
        path: ['signing', 'overdue_after'],
        message:
          `must be longer than signing.interval (${interval} ms): a chain is signed once per interval, so its records ` +
          'would be overdue before their digest is due (the default is three intervals; 0 turns the check off)',
      });
    }
    if (c.default_connection !== undefined && !seen.has(c.default_connection)) {
      ctx.addIssue({
        code: 'custom',
        path: ['default_connection'],
        message: `names no declared connection (declared: ${[...seen].join(', ')})`,
      });
    }
  });

export type VigilConfigInput = z.input<typeof configSchema>;
export type VigilConfig = z.output<typeof configSchema>;
