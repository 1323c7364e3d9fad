import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { VigilError } from '../../../src/errors.js';
import {
  authenticateGatewayKey,
  gatewayKeyId,
  generateGatewayKey,
  hashGatewayKey,
  looksLikeGatewayKey,
  parseKeyLifetime,
  type GatewayKeyRow,
} from '../../../src/identity/gateway-keys.js';

const NOW = Date.parse('2025-06-01T12:00:00Z');

/** A key store as small as it gets: rows by hash, as the real store's findGatewayKey returns them. */
function storeWith(rows: Record<string, GatewayKeyRow>): (hash: string) => Promise<GatewayKeyRow | undefined> {
  return async (hash) => rows[hash];
}

function row(over: Partial<GatewayKeyRow> = {}): GatewayKeyRow {
  return { name: 'nightly-ci', owner: 'platform-team', connections: [], expiresAt: null, revokedAt: null, ...over };
}

async function rejection(p: Promise<unknown>): Promise<VigilError> {
  const err = await p.then(
    () => expect.fail('key was accepted'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VigilError);
  expect((err as VigilError).code).toBe('UNAUTHENTICATED');
  return err as VigilError;
}

describe('gateway keys', () => {
  it('generates vgk_ keys of 32 random bytes that carry no name, with their SHA-256 as hash', () => {
    const { key, hash } = generateGatewayKey();
    expect(key).toMatch(/^vgk_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(key.slice(4), 'base64url')).toHaveLength(32);
    expect(hash).toBe(createHash('sha256').update(key).digest('hex'));
    expect(hashGatewayKey(key)).toBe(hash);
    expect(looksLikeGatewayKey(key)).toBe(true);

    const keys = new Set(Array.from({ length: 100 }, () => generateGatewayKey().key));
    expect(keys.size).toBe(100);
  });

  it('tells gateway keys from other credentials by shape', () => {
    expect(looksLikeGatewayKey('vgk_short')).toBe(false);
    expect(looksLikeGatewayKey('sk-ant-api03-xxxxxxxx')).toBe(false);
    expect(looksLikeGatewayKey(`vgk_${'a'.repeat(43)}x`)).toBe(false);
    expect(looksLikeGatewayKey(`vgk_${'a'.repeat(42)}+`)).toBe(false);
  });

  it('authenticates a live key as its name, owner and id, with its connection restriction', async () => {
    const { key, hash } = generateGatewayKey();
    const lookup = storeWith({ [hash]: row({ connections: ['prod'], expiresAt: NOW + 60_000 }) });
    const { principal, connections } = await authenticateGatewayKey(key, lookup, NOW);
    expect(principal).toEqual({
      method: 'gateway_key',
      subject: 'nightly-ci',
      keyName: 'nightly-ci',
      owner: 'platform-team',
      keyId: gatewayKeyId(hash),
    });
    expect(gatewayKeyId(hash)).toBe(`key_${hash.slice(0, 16)}`);
    expect(connections).toEqual(['prod']);
  });

  it('refuses an unknown key without repeating it', async () => {
    const { key } = generateGatewayKey();
    const err = await rejection(authenticateGatewayKey(key, storeWith({}), NOW));
    expect(err.message).toBe('unknown gateway key');
  });

  it('refuses a revoked key, saying when it was revoked', async () => {
    const { key, hash } = generateGatewayKey();
    const lookup = storeWith({ [hash]: row({ revokedAt: NOW - 1000 }) });
    const err = await rejection(authenticateGatewayKey(key, lookup, NOW));
    expect(err.message).toBe('gateway key "nightly-ci" was revoked at 2025-06-01T11:59:59.000Z');
    expect(err.message).not.toContain(key);
  });

  it('refuses an expired key from the instant it expires', async () => {
    const { key, hash } = generateGatewayKey();
    const lookup = storeWith({ [hash]: row({ expiresAt: NOW }) });
    const err = await rejection(authenticateGatewayKey(key, lookup, NOW));
    expect(err.message).toBe('gateway key "nightly-ci" expired at 2025-06-01T12:00:00.000Z');
    await expect(authenticateGatewayKey(key, lookup, NOW - 1)).resolves.toMatchObject({
      principal: { subject: 'nightly-ci' },
    });
  });

  it('refuses a malformed key without asking the store', async () => {
    let asked = false;
    const err = await rejection(
      authenticateGatewayKey('vgk_tooshort', async () => {
        asked = true;
        return row();
      }),
    );
    expect(err.message).toMatch(/^malformed gateway key/);
    expect(err.message).not.toContain('tooshort');
    expect(asked).toBe(false);
  });

  it('parses key lifetimes in minutes, hours and days', () => {
    expect(parseKeyLifetime('90m')).toBe(90 * 60_000);
    expect(parseKeyLifetime('12h')).toBe(12 * 3_600_000);
    expect(parseKeyLifetime('30d')).toBe(30 * 86_400_000);
    for (const bad of ['0d', '30', '1y', '-1d', 'd', '1.5h', '']) {
      expect(() => parseKeyLifetime(bad)).toThrow(/invalid key lifetime/);
    }
  });
});
