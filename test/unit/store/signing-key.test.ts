import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../../src/canonical-json.js';
import { checkSignature, keyIdOf, readPublicKey, SigningKey } from '../../../src/store/signing-key.js';

const dir = (): string => mkdtempSync(path.join(tmpdir(), 'vigil-signing-'));

describe('canonicalJson', () => {
  it('gives one text per value whatever the key order', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, 'x', null], c: true } })).toBe('{"a":{"c":true,"d":[1,"x",null]},"b":1}');
    expect(canonicalJson({ a: 1, b: 2 })).toBe(canonicalJson({ b: 2, a: 1 }));
  });
});

describe('SigningKey', () => {
  it('generates an Ed25519 key readable by its owner only, and loads the same key again', () => {
    const file = path.join(dir(), 'nested', 'signing-key.pem');
    const key = SigningKey.load(file, { create: true });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toContain('BEGIN PRIVATE KEY');
    expect(SigningKey.load(file).keyId).toBe(key.keyId);
    expect(key.keyId).toMatch(/^[0-9a-f]{16}$/);
  });

  it('signs fields so that the public key alone verifies them, and any change breaks the signature', () => {
    const d = dir();
    const key = SigningKey.load(path.join(d, 'k.pem'), { create: true });
    writeFileSync(path.join(d, 'pub.pem'), key.publicKeyPem());
    const pub = readPublicKey(path.join(d, 'pub.pem'));
    expect(keyIdOf(pub)).toBe(key.keyId);
    const keys = new Map([[key.keyId, pub]]);

    const signed = key.sign({ chain: 'ch_1', toSeq: 7, headHash: 'ab'.repeat(32) });
    expect(checkSignature({ ...signed }, keys)).toBe('ok');
    // Key order in the stored JSON does not matter: the signature is over canonical JSON.
    const { signature, ...fields } = signed;
    const reordered = JSON.parse(
      JSON.stringify({ signature, ...Object.fromEntries(Object.entries(fields).reverse()) }),
    ) as Record<string, unknown>;
    expect(checkSignature(reordered, keys)).toBe('ok');
    expect(checkSignature({ ...signed, toSeq: 8 }, keys)).toBe('bad_signature');
    expect(checkSignature({ ...signed, keyId: 'feedfacefeedface' }, keys)).toBe('unknown_key');
  });

  it('refuses a key that is not Ed25519, naming the config key', () => {
    const file = path.join(dir(), 'rsa.pem');
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    expect(() => SigningKey.load(file)).toThrow(/rsa key; signing.key.file must be an Ed25519 key/);
    expect(() => SigningKey.load(path.join(dir(), 'absent.pem'))).toThrow(/check signing.key.file/);
  });
});
