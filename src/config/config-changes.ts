/**
 * What changed between the config a gateway runs and the one it is asked to reload (SIGHUP), and whether it can take
 * it without a restart. Connections (upstreams, credentials, who may call, approvals, masking, recording, usage
 * limits, retention), `default_connection`, `identity` (OIDC issuers, anonymous callers), who may use the admin API
 * (`admin.roles`, `admin.tokens`, the web UI's sign-in), `public_url`, `retention`, `limits` (sizes), `shutdown`,
 * `approvals` (webhooks and the admin URL their links use), `siem` (its sinks), `pricing` and `log.level` are applied to a running
 * gateway; anything else (listeners and their TLS, the data directory and the store, signing) is opened once at
 * start-up, so a change to it needs a restart and the reload is refused whole: a gateway never runs half of one config
 * and half of another.
 */
import { createHash } from 'node:crypto';
import { canonicalJson, sameJson as same } from '../canonical-json.js';
import type { ConnectionConfig, VigilConfig } from './config-schema.js';
import type { PricingConfig } from '../store/pricing.js';

/** The top-level keys a running gateway takes on reload whole; `admin` only in part (see RELOADABLE_PARTS). */
const RELOADABLE = new Set<string>([
  'connections',
  'default_connection',
  'identity',
  'log',
  'approvals',
  'siem',
  'limits',
  'shutdown',
  'retention',
  'public_url',
  'pricing',
]);
/**
 * The keys of a section a running gateway takes in part: `admin`'s listener and TLS are opened at start-up, while who
 * may use it — groups per role, tokens, the web UI's sign-in — is looked up on each request.
 */
const RELOADABLE_PARTS = {
  admin: new Set<string>(['roles', 'tokens', 'token_reload', 'ui']),
} as const;

export interface ConnectionChange {
  readonly name: string;
  /** The connection's keys that differ (`allow`, `approvals`, `limits`, …). */
  readonly keys: readonly string[];
}

export interface ConfigChanges {
  /** Config paths whose change needs a restart (`listen`, `identity`, `retention.schedule`); empty when none. */
  readonly restartNeeded: readonly string[];
  readonly connections: {
    readonly added: readonly string[];
    readonly changed: readonly ConnectionChange[];
    readonly removed: readonly string[];
  };
  /** The default connection, when it changed (it is the first connection unless `default_connection` names one). */
  readonly defaultConnection: { readonly from: string; readonly to: string } | null;
  /** `retention` (its windows, batch size or schedule) changed. */
  readonly retention: boolean;
  /** `limits` (the largest request body accepted, and response body recorded) changed. */
  readonly limits: boolean;
  /** `shutdown.grace` changed. */
  readonly shutdown: boolean;
  /** `approvals` (its webhooks, its admin URL) changed. */
  readonly approvals: boolean;
  /** `siem` (its sinks) changed. */
  readonly siem: boolean;
  /** `identity` (its OIDC issuers, or who is admitted without a credential) changed. */
  readonly identity: boolean;
  /**
   * Who may use the admin API changed: `admin.roles`, `admin.tokens` (or how often token files are looked at), the web
   * UI's sign-in (`admin.ui`).
   */
  readonly adminAccess: boolean;
  /** `public_url` changed (the gateway's address in Message Batches' results URLs). */
  readonly publicUrl: boolean;
  /** `pricing` (what tokens cost, in usage reports) changed. */
  readonly pricing: boolean;
  readonly logLevel: { readonly from: string; readonly to: string } | null;
}

function differingKeys(a: object, b: object): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((k) => !same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])).sort();
}

/** Who is admitted without credentials: the config's choice, else loopback callers unless OIDC is configured. */
export function anonymousPolicy(config: VigilConfig): 'never' | 'loopback' {
  return config.identity.anonymous ?? (config.identity.oidc.length ? 'never' : 'loopback');
}

export function defaultConnectionOf(config: VigilConfig): string {
  return config.default_connection ?? config.connections[0]!.name;
}

export function configChanges(running: VigilConfig, next: VigilConfig): ConfigChanges {
  const restartNeeded: string[] = [];
  for (const key of differingKeys(running, next)) {
    if (key === 'admin') {
      for (const k of differingKeys(running[key], next[key]))
        if (!RELOADABLE_PARTS[key].has(k)) restartNeeded.push(`${key}.${k}`);
    } else if (!RELOADABLE.has(key)) restartNeeded.push(key);
  }
  const before = new Map<string, ConnectionConfig>(running.connections.map((c) => [c.name, c]));
  const after = new Map<string, ConnectionConfig>(next.connections.map((c) => [c.name, c]));
  const changed: ConnectionChange[] = [];
  for (const [name, c] of after) {
    const old = before.get(name);
    if (old === undefined) continue;
    const keys = differingKeys(old, c);
    if (keys.length) changed.push({ name, keys });
  }
  const from = defaultConnectionOf(running);
  const to = defaultConnectionOf(next);
  return {
    restartNeeded,
    connections: {
      added: [...after.keys()].filter((n) => !before.has(n)),
      changed,
      removed: [...before.keys()].filter((n) => !after.has(n)),
    },
    defaultConnection: from === to ? null : { from, to },
    retention: !same(running.retention, next.retention),
    limits: !same(running.limits, next.limits),
    shutdown: !same(running.shutdown, next.shutdown),
    approvals: !same(running.approvals, next.approvals),
    siem: !same(running.siem, next.siem),
    identity: !same(running.identity, next.identity),
    adminAccess: [...RELOADABLE_PARTS.admin].some((k) => !same(running.admin[k as 'roles'], next.admin[k as 'roles'])),
    publicUrl: running.public_url !== next.public_url,
    pricing: !same(running.pricing, next.pricing),
    logLevel: running.log.level === next.log.level ? null : { from: running.log.level, to: next.log.level },
  };
}

/**
 * SHA-256 of a config as validated (canonical JSON): what `vigil config check` prints, `vigil_config_info` says of
 * the config a gateway runs, and a `config.reloaded` record holds — so a config pushed can be told from the one
 * running. The same file read with the same flags gives the same digest.
 */
export function configDigest(config: VigilConfig): string {
  return createHash('sha256').update(canonicalJson(config)).digest('hex');
}

/** True when nothing a running gateway applies differs. */
export function nothingChanged(c: ConfigChanges): boolean {
  return (
    c.connections.added.length === 0 &&
    c.connections.changed.length === 0 &&
    c.connections.removed.length === 0 &&
    c.defaultConnection === null &&
    !c.retention &&
    !c.limits &&
    !c.shutdown &&
    !c.approvals &&
    !c.siem &&
    !c.identity &&
    !c.adminAccess &&
    !c.publicUrl &&
    !c.pricing &&
    c.logLevel === null
  );
}

/**
 * Who asked for a reload: the signal (`{ method: 'signal', subject: 'SIGHUP' }`), or the admin API's caller as it
 * authenticated (an OIDC user, an admin token, a local admin).
 */
export interface ReloadActor {
  readonly method: string;
  readonly subject: string;
}

export const SIGHUP_ACTOR: ReloadActor = { method: 'signal', subject: 'SIGHUP' };

/**
 * Which config a gateway runs and how its last reload went: what `/metrics` says as `vigil_config_info` and
 * `vigil_config_last_reload_*`, and `GET /api/v1/config` with the reloads on the ledger.
 */
export interface ConfigStatus {
  /** {@link configDigest} of the config running. */
  readonly sha256: string;
  /** False after a reload was refused (the config pushed is not the one running), until one is applied. */
  readonly successful: boolean;
  /** Start-up, or the last reload applied (epoch ms). */
  readonly lastSuccessAt: number;
}

/** What a `config.reloaded` ledger record says. */
export interface ConfigReloadedData {
  readonly by: ReloadActor;
  readonly connections: {
    readonly added: readonly string[];
    /** Each changed connection, its changed keys and what they are now (secrets are references, never values). */
    readonly changed: ReadonlyArray<ConnectionChange & { readonly now: Readonly<Record<string, unknown>> }>;
    readonly removed: readonly string[];
  };
  readonly defaultConnection?: { readonly from: string; readonly to: string };
  readonly retention?: { readonly default: unknown; readonly batch: number; readonly schedule: number };
  /** Sizes now, in bytes. */
  readonly limits?: { readonly maxRequestBody: number; readonly maxRecordedResponseBody: number };
  /** The shutdown grace now, in milliseconds. */
  readonly shutdown?: { readonly grace: number };
  /** The approval webhooks now, by name (their URLs and secrets may be references to secrets: not recorded). */
  readonly approvals?: { readonly webhooks: readonly string[] };
  /** The SIEM sinks now, by name. */
  readonly siem?: { readonly sinks: readonly string[] };
  /** Who is trusted to say who calls, now: the OIDC issuers with their audiences, and anonymous callers. */
  readonly identity?: {
    readonly issuers: ReadonlyArray<{ readonly issuer: string; readonly audience: string | readonly string[] }>;
    readonly anonymous: 'loopback' | 'never';
  };
  /** Who may use the admin API now: OIDC groups per role, and the tokens by name and role (never their secrets). */
  readonly admin?: {
    readonly roles: { readonly admin: readonly string[]; readonly auditor: readonly string[] };
    readonly tokens: ReadonlyArray<{ readonly name: string; readonly role: string }>;
    /** The web UI's sign-in provider and client, or null for none. */
    readonly uiSignIn: { readonly issuer: string; readonly clientId: string } | null;
  };
  /** The gateway's address as clients reach it now (null: from each request's Host). */
  readonly publicUrl?: string | null;
  /** What tokens cost now, as configured (null: no pricing); a report's costs change with it, so it is on record. */
  readonly pricing?: PricingConfig | null;
  readonly logLevel?: { readonly from: string; readonly to: string };
  /** SHA-256 of the reloaded config (canonical JSON, as validated): which version of the file this was. */
  readonly configSha256: string;
}

export function configReloadedData(changes: ConfigChanges, next: VigilConfig, by: ReloadActor): ConfigReloadedData {
  const byName = new Map(next.connections.map((c) => [c.name, c as unknown as Record<string, unknown>]));
  return {
    by,
    connections: {
      added: changes.connections.added,
      changed: changes.connections.changed.map((c) => ({
        ...c,
        now: Object.fromEntries(c.keys.map((k) => [k, byName.get(c.name)?.[k] ?? null])),
      })),
      removed: changes.connections.removed,
    },
    ...(changes.defaultConnection ? { defaultConnection: changes.defaultConnection } : {}),
    ...(changes.retention
      ? {
          retention: {
            default: next.retention.default ?? null,
            batch: next.retention.batch,
            schedule: next.retention.schedule,
          },
        }
      : {}),
    ...(changes.limits
      ? {
          limits: {
            maxRequestBody: next.limits.max_request_body,
            maxRecordedResponseBody: next.limits.max_recorded_response_body,
          },
        }
      : {}),
    ...(changes.shutdown ? { shutdown: { grace: next.shutdown.grace } } : {}),
    ...(changes.approvals ? { approvals: { webhooks: next.approvals.webhooks.map((w) => w.name) } } : {}),
    ...(changes.siem ? { siem: { sinks: next.siem.sinks.map((k) => k.name) } } : {}),
    ...(changes.identity
      ? {
          identity: {
            issuers: next.identity.oidc.map((o) => ({ issuer: o.issuer, audience: o.audience })),
            anonymous: anonymousPolicy(next),
          },
        }
      : {}),
    ...(changes.adminAccess
      ? {
          admin: {
            roles: next.admin.roles,
            tokens: next.admin.tokens.map((t) => ({ name: t.name, role: t.role })),
            uiSignIn: next.admin.ui.oidc
              ? { issuer: next.admin.ui.oidc.issuer, clientId: next.admin.ui.oidc.client_id }
              : null,
          },
        }
      : {}),
    ...(changes.publicUrl ? { publicUrl: next.public_url ?? null } : {}),
    ...(changes.pricing ? { pricing: next.pricing ?? null } : {}),
    ...(changes.logLevel ? { logLevel: changes.logLevel } : {}),
    configSha256: configDigest(next),
  };
}
