/**
 * The ledger's Ed25519 signing key, and how signed records (digests, purge records) are signed and checked.
 *
 * A signed record's data carries `keyId` and `signature`; the signature is Ed25519 over the canonical JSON (keys
 * sorted, no whitespace) of every other field, so anyone holding the public key alone can check it, whatever the JSON
 * text of the record looks like. This is the scheme of CloudTrail's log-file validation, with Ed25519 instead of RSA:
 * https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-log-file-validation-intro.html
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { canonicalJson } from '../canonical-json.js';

/** A public key's id: the first 16 hex digits of the SHA-256 of its SubjectPublicKeyInfo (DER). */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
}

/** The two fields every signed record's data ends with. */
export interface SignedFields {
  readonly keyId: string;
  /** Base64 Ed25519 signature over the canonical JSON of every other field (keyId included). */
  readonly signature: string;
}

/** The ledger's private key, loaded once at start-up. */
export class SigningKey {
  readonly keyId: string;
  readonly publicKey: KeyObject;

  private constructor(private readonly privateKey: KeyObject) {
    this.publicKey = createPublicKey(privateKey);
    this.keyId = keyIdOf(this.publicKey);
  }

  /**
   * Reads the PEM (PKCS #8) private key in `file`; when the file does not exist and `create` is set, generates a new
   * key there first, readable by its owner only (mode 0600).
   */
  static load(file: string, options: { create?: boolean } = {}): SigningKey {
    let pem: string;
    try {
      pem = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || !options.create) {
        throw new Error(`cannot read the signing key ${file} (${(err as Error).message}): check signing.key.file`, {
          cause: err,
        });
      }
      pem = SigningKey.generate(file);
    }
    let key: KeyObject;
    try {
      key = createPrivateKey(pem);
    } catch (err) {
      throw new Error(`${file} does not hold a PEM private key (signing.key.file)`, { cause: err });
    }
    if (key.asymmetricKeyType !== 'ed25519') {
      throw new Error(`${file} holds an ${key.asymmetricKeyType} key; signing.key.file must be an Ed25519 key`);
    }
    return new SigningKey(key);
  }

  private static generate(file: string): string {
    const { privateKey } = generateKeyPairSync('ed25519');
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    try {
      // `wx`: two processes starting at once must not overwrite each other's key; the loser reads the winner's.
      writeFileSync(file, pem, { mode: 0o600, flag: 'wx' });
      return pem;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFileSync(file, 'utf8');
      throw new Error(`cannot write a new signing key to ${file} (${(err as Error).message})`, { cause: err });
    }
  }

  /** The public key as PEM (SPKI), for `vigil verify --public-key`. */
  publicKeyPem(): string {
    return this.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  }

  /** `fields` with `keyId` and `signature` added. */
  sign<T extends object>(fields: T): T & SignedFields {
    const unsigned = { ...fields, keyId: this.keyId };
    const signature = sign(null, Buffer.from(canonicalJson(unsigned)), this.privateKey).toString('base64');
    return { ...unsigned, signature };
  }
}

/**
 * Checks the signature of a signed record's data against the given public keys (by key id).
 * @returns `ok`, or why not: no key with that id was given, or the signature does not match.
 */
export function checkSignature(
  data: Record<string, unknown>,
  publicKeys: ReadonlyMap<string, KeyObject>,
): 'ok' | 'unknown_key' | 'bad_signature' {
  const { signature, ...unsigned } = data;
  const key = typeof data.keyId === 'string' ? publicKeys.get(data.keyId) : undefined;
  if (!key) return 'unknown_key';
  if (typeof signature !== 'string') return 'bad_signature';
  try {
    return verify(null, Buffer.from(canonicalJson(unsigned)), key, Buffer.from(signature, 'base64'))
      ? 'ok'
      : 'bad_signature';
  } catch {
    return 'bad_signature';
  }
}

/** A public key from a PEM file: an SPKI public key, or a private key whose public half is taken. */
export function readPublicKey(file: string): KeyObject {
  const pem = readFileSync(file, 'utf8');
  const key = pem.includes('PRIVATE KEY') ? createPublicKey(createPrivateKey(pem)) : createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519')
    throw new Error(`${file} holds an ${key.asymmetricKeyType} key, not Ed25519`);
  return key;
}
