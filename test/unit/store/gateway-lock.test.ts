import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GatewayLock, StoreInUseError } from '../../../src/store/sqlite/gateway-lock.js';
import { SqliteAuditStore } from '../../../src/store/sqlite/sqlite-audit-store.js';
import { tempDir } from '../../support/gateway-harness.js';

describe('the SQLite store’s gateway lock', () => {
  const held: Array<{ release(): void } | { close(): Promise<void> }> = [];
  afterEach(async () => {
    for (const h of held.splice(0)) await ('release' in h ? h.release() : h.close());
  });

  it('is held by one at a time, and free again once released', () => {
    const dir = tempDir();
    const store = path.join(dir, 'vigil.db');
    const first = GatewayLock.take(store);
    held.push(first);
    expect(first.file).toBe(`${store}.gateway-lock`);
    expect(readdirSync(dir)).toEqual(['vigil.db.gateway-lock']); // no journal beside it
    const asked = Date.now();
    expect(() => GatewayLock.take(store)).toThrow(StoreInUseError);
    // Refused at once, not after SQLite's busy wait (better-sqlite3's default is 5 s): a property, not a speed goal.
    expect(Date.now() - asked).toBeLessThan(2_000);
    expect(() => GatewayLock.take(store)).toThrow(`another vigil serve holds ${store}.gateway-lock`);
    first.release();
    const again = GatewayLock.take(store);
    held.push(again);
    expect(() => GatewayLock.take(path.join(tempDir(), 'vigil.db'))).not.toThrow();
  });

  it('is taken by a store opened for a gateway, not by one opened for a CLI command, and released at close', async () => {
    const file = path.join(tempDir(), 'data', 'vigil.db');
    const gateway = SqliteAuditStore.open({ file, gatewayLock: true });
    held.push(gateway);
    expect(existsSync(`${file}.gateway-lock`)).toBe(true);
    expect(() => SqliteAuditStore.open({ file, gatewayLock: true })).toThrow(StoreInUseError);
    // A CLI command reads and appends beside the running gateway.
    const cli = SqliteAuditStore.open({ file });
    await cli.append({ records: [{ kind: 'note', at: 1, data: {} }] });
    await cli.close();
    await gateway.close();
    const next = SqliteAuditStore.open({ file, gatewayLock: true });
    held.push(next);
    expect((await next.verify()).ok).toBe(true);
  });
});
