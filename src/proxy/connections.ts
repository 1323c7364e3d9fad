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

export class Connections {
  private readonly byName = new Map<string, Connection>();
  readonly defaultName: string;

  constructor(config: VigilConfig) {
    // One memory for all connections' redactors: several busy connections hold what one would (README, "Memory").
    const memory = new RedactorMemory();
    config.connections.forEach((c, i) => {
      const url = new URL(c.upstream);
      const { credential, problem } = readCredential(c);
      const proxy = egressProxy(c.upstream, c.proxy, formatPath(['connections', i, 'proxy'], config));
      this.byName.set(c.name, {
        name: c.name,
        config: c,
        dispatcher: egressDispatcher(url.origin, proxy, {
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
        redactor: new Redactor(c.masking, memory),
        approvalRules: compileApprovalRules(c.approvals),
      });
    });
    this.defaultName = config.default_connection ?? config.connections[0]!.name;
  }

  get(name: string): Connection | undefined {
    return this.byName.get(name);
  }

  get default(): Connection {
    return this.byName.get(this.defaultName)!;
  }

  all(): Connection[] {
    return [...this.byName.values()];
  }

  /**
   * Read `{ file }` credentials again whenever their file changes (a secret manager rotating the key): calls from
   * then on are sent with the new one. A file that cannot be read any more (removed, empty) keeps the one read before,
   * and says so; one that becomes readable gives a connection that had none its credential. Each connection's file is
   * looked at every `credential_reload`. Returns what stops it.
   */
  watchCredentials(events: {
    renewed: (connection: string, file: string) => void;
    unreadable: (connection: string, problem: string, kept: boolean) => void;
  }): () => void {
    const stops = this.all().flatMap((c) => {
      const ref = c.config.credential;
      if (!ref || !('file' in ref)) return [];
      const stop = onFilesChanged([ref.file], c.config.credential_reload, () => {
        const { credential, problem } = readCredential(c.config);
        if (credential) {
          if (credential.value === c.credential?.value) return; // touched, not changed
          c.credential = credential;
          c.credentialProblem = null;
          events.renewed(c.name, ref.file);
        } else if (problem) events.unreadable(c.name, problem, c.credential !== null);
      });
      return [stop];
    });
    return () => {
      for (const stop of stops) stop();
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.all().map((c) => c.dispatcher.close()));
  }
}
