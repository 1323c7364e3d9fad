/**
 * Who may use the admin API right now: its tokens and groups per role, the OIDC issuers it trusts, and how the web UI
 * signs people in (`admin.ui.oidc`: the provider it offers, and the origin its CSP lets it reach), as the config
 * running says. A config reload replaces them (prepare, then apply), and tokens kept in files (a mounted secret) are
 * read again when a file changes, so a rotated token is taken, and the one it replaces refused, without either.
 */
import type { Logger } from 'pino';
import type { VigilConfig } from '../config/config-schema.js';
import { onFilesChanged } from '../config/watch-files.js';
import { ConfigError } from '../errors.js';
import type { RequestHeaders } from '../identity/authenticator.js';
import type { OidcVerifier } from '../identity/oidc-verifier.js';
import { AdminAuthenticator, loadAdminTokens, sameTokens, type AdminToken } from './admin-auth.js';
import type { AdminCaller } from './admin-caller.js';
import { uiSecurityHeaders } from './ui-assets.js';
import {
  publicSignIn,
  signInConnectSources,
  uiClientAudience,
  uiSignInWarnings,
  type PublicSignIn,
} from './ui-sign-in.js';

interface Settings {
  readonly config: VigilConfig;
  readonly oidc: OidcVerifier | undefined;
  readonly tokens: readonly AdminToken[];
}

/** What the web UI's pages are served with, and the provider its sign-in page offers. */
export interface UiSignIn {
  readonly headers: Readonly<Record<string, string>>;
  readonly signIn: PublicSignIn | undefined;
}

function uiSignInOf(config: VigilConfig): UiSignIn {
  const oidc = config.admin.ui.oidc;
  return { headers: uiSecurityHeaders(signInConnectSources(oidc)), signIn: oidc ? publicSignIn(oidc) : undefined };
}

export class AdminAccess {
  private settings: Settings;
  private auth: AdminAuthenticator;
  private ui: UiSignIn;
  private stopWatching: () => void = () => undefined;
  private watching = false;

  /** @throws ConfigError naming `admin.tokens[i] (name).token` for a secret that is missing or too short */
  constructor(
    config: VigilConfig,
    oidc: OidcVerifier | undefined,
    private readonly log: Logger,
  ) {
    this.settings = { config, oidc, tokens: loadAdminTokens(config.admin.tokens) };
    this.auth = authenticatorOf(this.settings);
    this.ui = uiSignInOf(config);
  }

  /** The web UI's headers and sign-in provider, as the running config says. */
  get uiSignIn(): UiSignIn {
    return this.ui;
  }

  /** Whether callers must prove who they are; without it, loopback callers are admins. */
  get identityConfigured(): boolean {
    return this.auth.identityConfigured;
  }

  authenticate(headers: RequestHeaders, remoteAddress: string | undefined): Promise<AdminCaller> {
    return this.auth.authenticate(headers, remoteAddress);
  }

  /**
   * Access under `next` and the issuers `oidc` trusts, ready to apply: the tokens' secrets are read now, so a reload
   * whose tokens cannot be read is refused before anything changes. Requests authenticated after `apply` follow it.
   *
   * @throws ConfigError naming `admin.tokens[i] (name).token` for a secret that is missing or too short
   */
  prepare(next: VigilConfig, oidc: OidcVerifier | undefined): () => void {
    const settings: Settings = { config: next, oidc, tokens: loadAdminTokens(next.admin.tokens) };
    const auth = authenticatorOf(settings);
    const ui = uiSignInOf(next);
    return () => {
      for (const warning of uiSignInWarnings(next.admin.ui.oidc, next.identity.oidc)) this.log.warn(warning);
      if (this.auth.identityConfigured && !auth.identityConfigured)
        this.log.warn('admin API without identity: callers on this machine are admins');
      this.settings = settings;
      this.auth = auth;
      this.ui = ui;
      if (this.watching) this.watch();
    };
  }

  /** Read `{ file }` tokens again when their files change (every `admin.token_reload`), until close. */
  watch(): void {
    this.watching = true;
    this.stopWatching();
    const { config } = this.settings;
    const files = config.admin.tokens.flatMap((t) => ('file' in t.token ? [t.token.file] : []));
    this.stopWatching =
      files.length === 0 ? () => undefined : onFilesChanged(files, config.admin.token_reload, () => this.reread());
  }

  close(): void {
    this.watching = false;
    this.stopWatching();
  }

  /** A token file changed: its token replaces the one read before, unless it cannot be used (logged, kept). */
  private reread(): void {
    const { config, oidc } = this.settings;
    let tokens: AdminToken[];
    try {
      tokens = loadAdminTokens(config.admin.tokens);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      this.log.error(
        { problems: err.problems },
        'admin token files changed but cannot be used; the tokens read before stay in use',
      );
      return;
    }
    if (sameTokens(tokens, this.settings.tokens)) return; // touched, not changed
    this.settings = { config, oidc, tokens };
    this.auth = authenticatorOf(this.settings);
    this.log.warn(
      { tokens: tokens.map((t) => t.name) },
      'admin tokens read again from their files: requests from now on are checked against them',
    );
  }
}

function authenticatorOf(s: Settings): AdminAuthenticator {
  return new AdminAuthenticator({
    oidc: s.oidc,
    // The UI's ID tokens are for its client id: accepted on this listener only, never by the proxy's.
    uiClient: uiClientAudience(s.config.admin.ui.oidc),
    tokens: s.tokens,
    roles: s.config.admin.roles,
  });
}
