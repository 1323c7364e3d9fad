/**
 * A self-signed certificate for 127.0.0.1 and localhost, made by `openssl` (a Debian package CI installs): its own CA,
 * so a client trusts it by taking the certificate itself as `ca` (or NODE_EXTRA_CA_CERTS).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

export interface SelfSigned {
  /** Where the certificate and its private key are (PEM). */
  readonly certFile: string;
  readonly keyFile: string;
  /** The certificate's PEM text. */
  readonly pem: string;
}

/** Writes `<name>.crt` and `<name>.key` in `dir` (or the files `files` names), for the subject CN `name`. */
export async function selfSigned(
  dir: string,
  name: string,
  files: { certFile?: string; keyFile?: string } = {},
): Promise<SelfSigned> {
  const certFile = files.certFile ?? path.join(dir, `${name}.crt`);
  const keyFile = files.keyFile ?? path.join(dir, `${name}.key`);
  await promisify(execFile)('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ]);
  return { certFile, keyFile, pem: readFileSync(certFile, 'utf8') };
}
