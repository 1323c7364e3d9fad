/**
 * `tls:` of the proxy and `admin.tls:` of the admin API, as the config declares them. Apart from the listener, so that
 * reading a config loads no TLS or HTTPS server.
 */
import { z } from 'zod';
import { certificateFile, positiveDuration, secretRef } from '../config/common-schemas.js';

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
