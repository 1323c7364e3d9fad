/**
 * HTTPS on the gateway's own listeners (`tls:` for the proxy, `admin.tls:` for the admin API): callers' OIDC tokens and
 * gateway keys must not cross a network in clear. The certificate and key are read at start-up (a pair that does not
 * match stops it, naming the keys), and read again when their files change, so a renewed certificate (cert-manager,
 * certbot) is served to new connections without a restart.
 */
import { statSync } from 'node:fs';
import type { Server as HttpsServer } from 'node:https';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import { z } from 'zod';
import { certificateFile, positiveDuration, secretRef } from '../config/common-schemas.js';
import { readConfigFile, readSecret } from '../config/read-secret.js';
import { ConfigError } from '../errors.js';

export const tlsListenerSchema = z
  .object({
    /** The certificate chain (PEM): the server's certificate first, then its intermediates. */
    cert: certificateFile,
    /** Its private key (PEM): `{ file }` or `{ env }`. */
    key: secretRef,
    /** How often the files are looked at for a renewed certificate. */
    reload: positiveDuration.default(60_000),
  })
  .strict();
export type TlsListenerConfig = z.output<typeof tlsListenerSchema>;

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

/** When each of the files was last changed (0: cannot be read), to tell a renewal. */
function stamp(config: TlsListenerConfig): string {
  const files = [config.cert.file, ...('file' in config.key ? [config.key.file] : [])];
  return files
    .map((f) => {
      try {
        const s = statSync(f);
        return `${s.mtimeMs}:${s.size}:${s.ino}`;
      } catch {
        return '0';
      }
    })
    .join('|');
}

/**
 * Serve a renewed certificate to new connections once its files change; connections already open keep theirs. A
 * renewal that cannot be used (a key that does not match, a file half written) is logged and the old one kept.
 * Returns what stops the watch.
 */
export function reloadOnRenewal(
  server: HttpsServer,
  config: TlsListenerConfig,
  where: string,
  log: Logger,
): () => void {
  let last = stamp(config);
  const timer = setInterval(() => {
    const now = stamp(config);
    if (now === last) return;
    try {
      server.setSecureContext(tlsOptions(config, where));
      last = now;
      log.info({ listener: where }, 'TLS certificate renewed: new connections get the new one');
    } catch (err) {
      // Not tried again until the files change again (a file caught half written changes once it is complete).
      log.error(
        { listener: where, err: err instanceof ConfigError ? err.problems.join('; ') : (err as Error).message },
        'TLS certificate changed but cannot be used: the previous one is still served',
      );
      last = now;
    }
  }, config.reload);
  timer.unref();
  return () => clearInterval(timer);
}
