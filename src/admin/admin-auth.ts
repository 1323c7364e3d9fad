/**
 * Authenticates admin API callers: admin API tokens (automation), OIDC tokens verified by the proxy's own
 * {@link OidcVerifier} (people, whose groups give their role) plus the ID tokens of the web UI's sign-in, and, when
 * neither is configured, callers on this machine as `admin` (the embedded default, where whoever can reach 127.0.0.1
 * can read the store file anyway), known as {@link LOCAL_ADMIN}.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AdminConfig } from '../config/config-schema.js';
import { readSecret } from '../config/read-secret.js';
import { ConfigError, VigilError } from '../errors.js';
import { extractCredential, type RequestHeaders } from '../identity/authenticator.js';
import { isLocalRequest, isLoopbackAddress } from '../identity/loopback.js';
import type { ClientAudience, OidcVerifier } from '../identity/oidc-verifier.js';
import type { LocalUser } from '../identity/principal.js';
import { roleOf, type AdminCaller, type RoleGroups } from './admin-caller.js';

/**
 * The admin API's caller on this machine when no identity is configured: one person of its own, under one name in
 * every audit trail — what it reads (the access log), decides (approvals) and verifies. Not `anonymous`: that is every
 * local caller of the proxy, so an approval by `anonymous` would be taken for the caller's own (no self-approval), and
 * its reads would be told apart from its decisions. The CLI's local user is `cli:<user>` likewise.
 */
export const LOCAL_ADMIN: LocalUser = Object.freeze({ method: 'local_user', subject: 'admin-api:localhost' });

/** An admin API token with its secret read; only the secret's digest is kept. */
export interface AdminToken {
  readonly name: string;
  readonly role: 'admin' | 'auditor';
  readonly digest: Buffer;
}

/** Shorter tokens are refused at start-up: an admin token reads every recording. */
const MIN_ADMIN_TOKEN_LENGTH = 24;

const digest = (secret: string): Buffer => createHash('sha256').update(secret).digest();

/**
 * Read the configured tokens' secrets from their env variables or files.
 *
 * @throws ConfigError naming `admin.tokens[i] (name).token` for a secret that is missing or too short.
 */
export function loadAdminTokens(tokens: AdminConfig['tokens'], env: NodeJS.ProcessEnv = process.env): AdminToken[] {
  const { loaded, problems } = readAdminTokens(tokens, env);
  if (problems.length) throw new ConfigError(problems);
  return loaded;
}

/**
 * The admin tokens that can be read but are too short, by path: what start-up and a reload would refuse beyond a
 * missing secret (which `secretProblems` reports), so that `vigil config check` refuses them too.
 */
export function shortAdminTokens(tokens: AdminConfig['tokens'], env: NodeJS.ProcessEnv = process.env): string[] {
  return readAdminTokens(tokens, env).short;
}

function readAdminTokens(
  tokens: AdminConfig['tokens'],
  env: NodeJS.ProcessEnv,
): { loaded: AdminToken[]; problems: string[]; short: string[] } {
  const problems: string[] = [];
  const short: string[] = [];
  const out: AdminToken[] = [];
  tokens.forEach((t, i) => {
    const where = `admin.tokens[${i}] (${t.name}).token`;
    let secret: string;
    try {
      secret = readSecret(t.token, where, env);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
      return;
    }
    if (secret.length < MIN_ADMIN_TOKEN_LENGTH) {
      const problem = `${where}: the token of "${t.name}" is shorter than ${MIN_ADMIN_TOKEN_LENGTH} characters; use e.g. openssl rand -hex 32`;
      problems.push(problem);
      short.push(problem);
      return;
    }
    out.push({ name: t.name, role: t.role, digest: digest(secret) });
  });
  return { loaded: out, problems, short };
}

/** Whether two lists hold the same tokens (names, roles and secrets), in the same order. */
export function sameTokens(a: readonly AdminToken[], b: readonly AdminToken[]): boolean {
  return (
    a.length === b.length &&
    a.every((t, i) => t.name === b[i]!.name && t.role === b[i]!.role && t.digest.equals(b[i]!.digest))
  );
}

export interface AdminAuthOptions {
  readonly oidc?: OidcVerifier | undefined;
  /**
   * The web UI's client (`admin.ui.oidc` with `token: id_token`): its ID tokens are accepted here, and here only, besides
   * the issuer's own audience; the proxy's listener refuses them.
   */
  readonly uiClient?: ClientAudience | undefined;
  readonly tokens: readonly AdminToken[];
  readonly roles: RoleGroups;
}

export class AdminAuthenticator {
  private readonly oidc: OidcVerifier | undefined;
  private readonly uiClient: ClientAudience | undefined;
  private readonly tokens: readonly AdminToken[];
  private readonly roles: RoleGroups;

  constructor(opts: AdminAuthOptions) {
    this.oidc = opts.oidc;
    this.uiClient = opts.uiClient;
    this.tokens = opts.tokens;
    this.roles = opts.roles;
  }

  /** Whether callers must prove who they are; without it, loopback callers are admins. */
  get identityConfigured(): boolean {
    return this.oidc !== undefined || this.tokens.length > 0;
  }

  /**
   * @throws VigilError `UNAUTHENTICATED` for a missing, unknown or invalid credential.
   */
  async authenticate(headers: RequestHeaders, remoteAddress: string | undefined): Promise<AdminCaller> {
    const address = remoteAddress ?? null;
    if (!this.identityConfigured) {
      if (!isLoopbackAddress(remoteAddress)) {
        throw new VigilError(
          'UNAUTHENTICATED',
          'no identity is configured: the admin API answers callers on this machine only',
        );
      }
      // A loopback caller may still be a web page from elsewhere, acting through a browser on this machine: by DNS
      // rebinding (its own host name resolving to 127.0.0.1: the Host header gives it away) or by a cross-site request
      // (the Origin header). Neither may read recordings or decide approvals as this machine's admin.
      if (!isLocalRequest(headers)) {
        throw new VigilError(
          'NOT_ALLOWED',
          'no identity is configured: the admin API answers requests addressed to this machine (Host localhost, ' +
            '127.0.0.1 or [::1]) from its own pages only; configure identity (admin.tokens or identity.oidc) to ' +
            'serve it under another name',
        );
      }
      return { reader: LOCAL_ADMIN, role: 'admin', address };
    }
    const credential = extractCredential(headers);
    if (!credential) {
      throw new VigilError(
        'UNAUTHENTICATED',
        'missing credential: send an admin API token or an OIDC token as Authorization: Bearer …',
      );
    }
    const token = this.matchToken(credential.token);
    if (token) return { reader: { method: 'admin_token', subject: token.name }, role: token.role, address };
    if (this.oidc && credential.token.split('.').length === 3) {
      const principal = await this.oidc.verify(credential.token, { client: this.uiClient });
      return { reader: principal, role: roleOf(principal, this.roles), address };
    }
    throw new VigilError(
      'UNAUTHENTICATED',
      this.oidc
        ? 'unknown admin token, and not an OIDC token'
        : 'unknown admin token (admin.tokens); OIDC tokens are not accepted: no identity.oidc issuer is configured',
    );
  }

  /** Compares against every token, each in constant time, so timing tells neither which token nor how much matched. */
  private matchToken(candidate: string): AdminToken | undefined {
    const d = digest(candidate);
    let found: AdminToken | undefined;
    for (const t of this.tokens) if (timingSafeEqual(t.digest, d) && !found) found = t;
    return found;
  }
}
