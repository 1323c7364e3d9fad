/**
 * Gateway keys: long-lived secrets Vigil issues itself, for CI jobs and daemons that cannot fetch an OIDC token.
 *
 * A key is `vgk_` followed by 32 random bytes in base64url. It carries no name or other data, so a leaked key says
 * nothing about whose it is, and the store keeps only its SHA-256: whoever reads the store cannot use the keys.
 */
import { hash, randomBytes } from 'node:crypto';
import { VigilError } from '../errors.js';
import type { Principal } from './principal.js';

/** What every gateway key starts with, so a credential can be routed without a lookup and found by secret scanners. */
export const GATEWAY_KEY_PREFIX = 'vgk_';

const KEY_BYTES = 32;
// 32 bytes are 43 base64url characters without padding.
const KEY_PATTERN = /^vgk_[A-Za-z0-9_-]{43}$/;

/** What the store holds for one key, found by the key's hash. */
export interface GatewayKeyRow {
  readonly name: string;
  readonly owner: string;
  /** Connections the key may use; empty means every connection. Enforced by the caller of this module. */
  readonly connections: readonly string[];
  /** Epoch milliseconds, or null for a key that does not expire. */
  readonly expiresAt: number | null;
  /**
   * Epoch milliseconds, or null while the key is live. A time to come: the key was rotated with an overlap and works
   * until then.
   */
  readonly revokedAt: number | null;
}

/** Look a key's row up by its hash (see {@link hashGatewayKey}). */
export type GatewayKeyLookup = (hash: string) => Promise<GatewayKeyRow | undefined>;

/** A new key, to show once to whoever asked for it, and the hash to store. */
export function generateGatewayKey(): { key: string; hash: string } {
  const key = GATEWAY_KEY_PREFIX + randomBytes(KEY_BYTES).toString('base64url');
  return { key, hash: hashGatewayKey(key) };
}

/**
 * The hex SHA-256 of a key, as stored and looked up.
 *
 * A plain fast hash is the right tool here, not a slow password KDF (scrypt, argon2): the key is 256 bits from a
 * CSPRNG, so there is no dictionary to try and brute force is hopeless at any hash speed, while a KDF would cost CPU
 * on every request and rule out finding the row by an indexed equality lookup.
 */
export function hashGatewayKey(key: string): string {
  return hash('sha256', key, 'hex');
}

/**
 * A key's id: `key_` and the first 16 hex digits of its hash. It names one key for good, where the name may pass to a
 * new key once the old one is revoked; recorded with the caller, it says which key made a call. It is no secret (the
 * hash of a 256-bit random key says nothing of the key), and 64 bits keep the keys of one store apart.
 */
export function gatewayKeyId(hash: string): string {
  return `key_${hash.slice(0, 16)}`;
}

/** Whether `s` has the exact shape of a gateway key (prefix and 43 base64url characters). */
export function looksLikeGatewayKey(s: string): boolean {
  return KEY_PATTERN.test(s);
}

const LIFETIME = /^(\d+)(m|h|d)$/;
const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * A key lifetime such as `90m`, `12h` or `30d`, in milliseconds.
 *
 * @throws VigilError `BAD_REQUEST` for anything else, including zero.
 */
export function parseKeyLifetime(text: string): number {
  const m = LIFETIME.exec(text.trim());
  const ms = m ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : NaN;
  if (!Number.isSafeInteger(ms) || ms <= 0) {
    throw new VigilError(
      'BAD_REQUEST',
      `invalid key lifetime "${text}": use a positive number of minutes, hours or days, e.g. 90m, 12h or 30d`,
    );
  }
  return ms;
}

/**
 * Authenticate a gateway key against the store.
 *
 * @param now - epoch milliseconds to judge expiry by.
 * @returns the caller, and the connections the key is restricted to (empty: all) for the caller to enforce.
 * @throws VigilError `UNAUTHENTICATED` for a malformed, unknown, revoked or expired key. The message never contains
 *   the key; for a key that exists it names the key, which its holder knows anyway.
 */
export async function authenticateGatewayKey(
  key: string,
  lookup: GatewayKeyLookup,
  now: number = Date.now(),
): Promise<{ principal: Principal; connections: readonly string[] }> {
  if (!looksLikeGatewayKey(key)) {
    throw new VigilError(
      'UNAUTHENTICATED',
      `malformed gateway key: expected ${GATEWAY_KEY_PREFIX} followed by 43 base64url characters`,
    );
  }
  const hash = hashGatewayKey(key);
  const row = await lookup(hash);
  if (!row) throw new VigilError('UNAUTHENTICATED', 'unknown gateway key');
  if (row.revokedAt !== null && row.revokedAt <= now) {
    throw new VigilError(
      'UNAUTHENTICATED',
      `gateway key "${row.name}" was revoked at ${new Date(row.revokedAt).toISOString()}`,
    );
  }
  if (row.expiresAt !== null && row.expiresAt <= now) {
    throw new VigilError(
      'UNAUTHENTICATED',
      `gateway key "${row.name}" expired at ${new Date(row.expiresAt).toISOString()}`,
    );
  }
  return {
    principal: {
      method: 'gateway_key',
      subject: row.name,
      keyName: row.name,
      owner: row.owner,
      keyId: gatewayKeyId(hash),
    },
    connections: row.connections,
  };
}
