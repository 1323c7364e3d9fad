/**
 * HTTPS on the gateway's own listeners (`tls:` for the proxy, `admin.tls:` for the admin API): callers' OIDC tokens and
 * gateway keys must not cross a network in clear. The certificate and key are read at start-up (a pair that does not
 * match stops it, naming the keys), and read again when their files change, so a renewed certificate (cert-manager,
 * certbot) is served to new connections without a restart.
 */
import http from 'node:http';
import https from 'node:https';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { TlsListenerConfig } from './tls-config.js';
import { readConfigFile, readSecret } from '../config/read-secret.js';
import { onFilesChanged } from '../config/watch-files.js';
import { ConfigError } from '../errors.js';

/** The certificate and key as a server takes them; throws a ConfigError naming `where` when they cannot be used. */
export function tlsOptions(config: TlsListenerConfig, where: string): SecureContextOptions {
  const options = {
    cert: readConfigFile(config.cert, `${where}.cert`),
    key: readSecret(config.key, `${where}.key`),
  };
  try {
    createSecureContext(options);
  } catch (err) {
    throw new ConfigError([
      `${where}: the certificate and key cannot be used together (${(err as Error).message}): ` +
        'cert must be a PEM certificate chain and key the PEM private key of its first certificate',
    ]);
  }
  return options;
}

/** A listener's server: HTTPS when `tls` is given (its certificate renewed as its files change), else HTTP. */
export interface Listener {
  readonly server: http.Server | https.Server;
  readonly scheme: 'http' | 'https';
  /** Stop looking for a renewed certificate. */
  stopRenewals(): void;
}

export function createListener(
  options: http.ServerOptions,
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void,
  tls: { readonly config: TlsListenerConfig; readonly where: string; readonly log: Logger } | undefined,
): Listener {
  if (!tls) return { server: http.createServer(options, handler), scheme: 'http', stopRenewals: () => {} };
  const { config, where, log } = tls;
  const server = https.createServer({ ...options, ...tlsOptions(config, where) }, handler);
  // New connections get a renewed certificate; open ones keep theirs. One that cannot be used (a key that does not
  // match, a file caught half written) is logged and the previous one kept until the files change again.
  const files = [config.cert.file, ...('file' in config.key ? [config.key.file] : [])];
  const stopRenewals = onFilesChanged(files, config.reload, () => {
    try {
      server.setSecureContext(tlsOptions(config, where));
      log.info({ listener: where }, 'TLS certificate renewed: new connections get the new one');
    } catch (err) {
      log.error(
        { listener: where, err: err instanceof ConfigError ? err.problems.join('; ') : (err as Error).message },
        'TLS certificate changed but cannot be used: the previous one is still served',
      );
    }
  });
  return { server, scheme: 'https', stopRenewals };
}
