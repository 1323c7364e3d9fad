/**
 * Runtime connections: each named connection owns a pooled, kept-alive upstream client and the gateway's credential
 * for that upstream. The upstream origin is fixed by config; nothing a caller sends can change it.
 */
import { readFileSync } from 'node:fs';
import type { Dispatcher } from 'undici';
import type { ConnectionConfig, VigilConfig } from '../config/config-schema.js';
import { formatPath } from '../config/config-path.js';
import { onFilesChanged } from '../config/watch-files.js';
import { egressDispatcher, egressProxy, type EgressProxy } from '../net/egress-proxy.js';
import { compileApprovalRules, type CompiledRules } from '../policy/approval-rules.js';
import { Redactor, RedactorMemory } from '../recorder/redactor.js';
import { sameJson } from '../canonical-json.js';
import { defaultConnectionOf, type ConfigChanges } from '../config/config-changes.js';

export interface Credential {
  readonly header: 'x-api-key' | 'authorization';
  readonly value: string;
}

export interface Connection {
  readonly name: string;
  readonly config: ConnectionConfig;
  /** Where calls go: a pool of kept-alive connections to the upstream, or through its proxy (see egress-proxy.ts). */
  readonly dispatcher: Dispatcher;
  /** The upstream's origin (`https://api.anthropic.com`). */
  readonly origin: string;
  /** The proxy it is reached through, or null for a direct connection. */
  readonly proxy: EgressProxy | null;
  /** Path prefix of the upstream URL (e.g. `/anthropic` for https://proxy.example.com/anthropic), or ''. */
  readonly basePath: string;
  /** null when the connection declares no credential. A `{ file }` one is read again when the file changes. */
  credential: Credential | null;
  /** Set when a credential is declared but could not be read: requests are refused with this message. */
  credentialProblem: string | null;
  /** This connection's masking stage (compiled once, with a memo per session). */
  readonly redactor: Redactor;
  /** The connection's approval rules, compiled once (empty: nothing is evaluated). */
  readonly approvalRules: CompiledRules;
}

export function readCredential(c: ConnectionConfig): { credential: Credential | null; problem: string | null } {
  if (!c.credential) return { credential: null, problem: null };
  if ('env' in c.credential) {
    const value = process.env[c.credential.env]?.trim();
    if (!value) {
      return {
        credential: null,
        problem: `connection "${c.name}" has no credential: set ${c.credential.env} in the gateway's environment`,
      };
    }
    return { credential: { header: c.credential_header, value }, problem: null };
  }
  try {
    const value = readFileSync(c.credential.file, 'utf8').trim();
    if (!value) throw new Error('empty file');
    return { credential: { header: c.credential_header, value }, problem: null };
  } catch (err) {
    return {
      credential: null,
      problem: `connection "${c.name}" has no credential: cannot read ${c.credential.file} (${(err as Error).message})`,
    };
  }
}

interface CredentialEvents {
  renewed: (connection: string, file: string) => void;
  unreadable: (connection: string, problem: string, kept: boolean) => void;
}

/** Settings a connection's upstream client is made with: while they stay the same, a reload keeps its pool. */
const DISPATCHER_KEYS = ['upstream', 'proxy', 'upstream_timeout'] as const;

export class Connections {
  private byName = new Map<string, Connection>();
  private defaultConnection: string;
  /** One memory for all connections' redactors: several busy connections hold what one would (README, "Memory"). */
  private readonly memory = new RedactorMemory();
  /** Each watched `{ file }` credential's watch, by connection (see watchCredentials). */
  private readonly watches = new Map<string, () => void>();
  private credentialEvents: CredentialEvents | null = null;
  /**
   * Upstream clients of connections a reload removed or re-pointed. Calls that began before it (a stream, a call held
   * for approval) still use them, so they are closed with the gateway, not at the reload; idle, they hold no socket
   * once their keep-alive runs out.
   */
  private readonly retired: Dispatcher[] = [];

  constructor(config: VigilConfig) {
    config.connections.forEach((c, i) => this.byName.set(c.name, this.build(c, i, config)));
    this.defaultConnection = defaultConnectionOf(config);
  }

  /** A connection as `c` declares it; with `reuse`, the one it replaces, whose pool and masking memo it keeps if it can. */
  private build(c: ConnectionConfig, i: number, config: VigilConfig, reuse?: Connection): Connection {
    const url = new URL(c.upstream);
    const { credential, problem } = readCredential(c);
    const samePool = reuse !== undefined && DISPATCHER_KEYS.every((k) => sameJson(reuse.config[k], c[k]));
    const proxy = samePool
      ? reuse.proxy
      : egressProxy(c.upstream, c.proxy, formatPath(['connections', i, 'proxy'], config));
    return {
      name: c.name,
      config: c,
      dispatcher: samePool
        ? reuse.dispatcher
        : egressDispatcher(url.origin, proxy, {
            connections: 256,
            keepAliveTimeout: 30_000,
            headersTimeout: c.upstream_timeout,
            bodyTimeout: c.upstream_timeout,
            connectTimeoutMs: 10_000,
          }),
      origin: url.origin,
      proxy,
      basePath: url.pathname === '/' ? '' : url.pathname,
      credential,
      credentialProblem: problem,
      redactor:
        reuse !== undefined && sameJson(reuse.config.masking, c.masking)
          ? reuse.redactor
          : new Redactor(c.masking, this.memory),
      approvalRules: compileApprovalRules(c.approvals),
    };
  }

  get defaultName(): string {
    return this.defaultConnection;
  }

  get(name: string): Connection | undefined {
    return this.byName.get(name);
  }

  get default(): Connection {
    return this.byName.get(this.defaultConnection)!;
  }

  all(): Connection[] {
    return [...this.byName.values()];
  }

  /**
   * Take the connections of a reloaded config (see config-changes.ts): those it adds or changes are made anew (keeping
   * their upstream pool and masking memo where those settings are the same), those it removes are gone for new calls.
   * Calls already under way finish with the connection they began with. Returns the connections made anew.
   */
  reconfigure(config: VigilConfig, changes: ConfigChanges): Connection[] {
    const changed = new Set([...changes.connections.added, ...changes.connections.changed.map((c) => c.name)]);
    const next = new Map<string, Connection>();
    const made: Connection[] = [];
    config.connections.forEach((c, i) => {
      const old = this.byName.get(c.name);
      if (old !== undefined && !changed.has(c.name)) {
        next.set(c.name, old);
        return;
      }
      const conn = this.build(c, i, config, old);
      if (old !== undefined && old.dispatcher !== conn.dispatcher) this.retired.push(old.dispatcher);
      next.set(c.name, conn);
      made.push(conn);
    });
    for (const name of changes.connections.removed) {
      const old = this.byName.get(name);
      if (old) this.retired.push(old.dispatcher);
    }
    this.byName = next;
    this.defaultConnection = defaultConnectionOf(config);
    if (this.credentialEvents !== null) {
      for (const name of [...changed, ...changes.connections.removed]) {
        this.watches.get(name)?.();
        this.watches.delete(name);
      }
      for (const c of made) this.watch(c);
    }
    return made;
  }

  /**
   * Read `{ file }` credentials again whenever their file changes (a secret manager rotating the key): calls from
   * then on are sent with the new one. A file that cannot be read any more (removed, empty) keeps the one read before,
   * and says so; one that becomes readable gives a connection that had none its credential. Each connection's file is
   * looked at every `credential_reload`; connections a reload makes are watched too. Returns what stops it.
   */
  watchCredentials(events: CredentialEvents): () => void {
    this.credentialEvents = events;
    for (const c of this.all()) this.watch(c);
    return () => {
      this.credentialEvents = null;
      for (const stop of this.watches.values()) stop();
      this.watches.clear();
    };
  }

  private watch(c: Connection): void {
    const ref = c.config.credential;
    const events = this.credentialEvents;
    if (!ref || !('file' in ref) || events === null) return;
    const stop = onFilesChanged([ref.file], c.config.credential_reload, () => {
      const { credential, problem } = readCredential(c.config);
      if (credential) {
        if (credential.value === c.credential?.value) return; // touched, not changed
        c.credential = credential;
        c.credentialProblem = null;
        events.renewed(c.name, ref.file);
      } else if (problem) events.unreadable(c.name, problem, c.credential !== null);
    });
    this.watches.set(c.name, stop);
  }

  async close(): Promise<void> {
    const dispatchers = new Set([...this.all().map((c) => c.dispatcher), ...this.retired]);
    await Promise.all([...dispatchers].map((d) => d.close()));
  }
}
