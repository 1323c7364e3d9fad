/**
 * What `vigil keys list`, `vigil holds list` and `vigil retention run --dry-run` show once someone with database
 * access has changed the key and hold indexes behind the ledger's back — on each store, through the built CLI.
 *
 * Went wrong: the three showed the `gateway_keys` and `holds` tables alone. A key un-revoked or minted there was listed
 * live, though authentication (which follows the ledger) refuses it; a hold released there without a record was listed
 * released and its exchanges counted as due, though every purge still keeps them; and nothing said the index was off.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { vigil } from '../support/cli.js';
import { oldExchange } from '../support/old-exchanges.js';
import { createStoreFixture, storeKinds, type StoreFixture } from '../support/stores.js';

const T0 = Date.UTC(2025, 0, 15, 9, 0, 0);

describe.each(storeKinds())('listings that follow the ledger: %s', (kind) => {
  let fixture: StoreFixture;
  let dir: string;
  const cli = (...args: string[]) => vigil([...args, '--config', path.join(dir, 'vigil.yaml')], fixture.env);

  beforeEach(async () => {
    fixture = await createStoreFixture(kind);
    dir = mkdtempSync(path.join(tmpdir(), 'vigil-listings-'));
    writeFileSync(
      path.join(dir, 'vigil.yaml'),
      `data_dir: ${dir}\n${fixture.storeYaml}retention:\n  default: 30d\nconnections:\n  - name: anthropic\n`,
    );
    // Three old exchanges in sessions old-0, old-1 and old-2, then a record after them (a chain's head is kept).
    const store = await fixture.open();
    for (const i of [0, 20, 40]) await store.append(oldExchange(i, T0 + i));
    await store.append({ records: [{ kind: 'note', at: T0 + 100, data: {} }] });
  });

  afterEach(async () => {
    await fixture.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keys list shows a key un-revoked or minted in the index as authentication has it, and says so', async () => {
    for (const name of ['ci', 'laptop']) expect((await cli('keys', 'create', '--name', name)).code).toBe(0);
    expect((await cli('keys', 'revoke', 'ci')).code).toBe(0);
    const clean = await cli('keys', 'list');
    expect(clean.stdout).not.toContain('disagrees');
    expect(clean.stderr).toBe('');

    const list = kind === 'sqlite' ? "'[]'" : "'{}'";
    await fixture.tamper(`UPDATE gateway_keys SET revoked_at = NULL WHERE name = 'ci'`);
    await fixture.tamper(
      `INSERT INTO gateway_keys (hash, name, owner, connections, created_at) VALUES ('${'f'.repeat(64)}', 'mallory', 'x', ${list}, ${T0})`,
    );

    const text = await cli('keys', 'list');
    expect(text.code).toBe(0);
    const lines = text.stdout.split('\n');
    expect(lines.find((l) => l.startsWith('ci  '))).toMatch(
      /^ci {2}revoked {2}.*id key_[0-9a-f]{16} {2}\(index disagrees with ledger\)$/,
    );
    expect(text.stdout).toMatch(
      /\n {2}- gateway key "ci" \(key_[0-9a-f]{16}\) in the gateway_keys index differs from its records .*revokedAt: index null, ledger \d+: the index was changed\n/,
    );
    expect(lines.find((l) => l.startsWith('mallory  '))).toMatch(
      /^mallory {2}refused {2}.*\(index disagrees with ledger\)$/,
    );
    expect(text.stdout).toContain('is in the gateway_keys index, but no key.created record made it');
    expect(lines.find((l) => l.startsWith('laptop  '))).toMatch(/^laptop {2}live {2}.*id key_[0-9a-f]{16}$/);
    expect(text.stderr).toMatch(/warning: the gateway_keys index disagrees with the ledger on 2 key\(s\)/);
    expect(text.stderr).toContain('Run `vigil verify`');

    const json = JSON.parse((await cli('keys', 'list', '--json')).stdout) as {
      items: Array<{ name: string; state: string; revokedAt: number | null; ledgerMismatch: string[] }>;
    };
    const byName = new Map(json.items.map((k) => [k.name, k]));
    expect(byName.get('ci')).toMatchObject({ state: 'revoked', revokedAt: expect.any(Number) });
    expect(byName.get('ci')!.ledgerMismatch).toHaveLength(1);
    expect(byName.get('mallory')).toMatchObject({ state: 'refused', ledgerMismatch: [expect.any(String)] });
    expect(byName.get('laptop')).toMatchObject({ state: 'live', ledgerMismatch: [] });
  });

  it('holds list and retention run --dry-run keep a hold released in the index alone as held, and say so', async () => {
    const add = async (session: string) => {
      const added = await cli('holds', 'add', '--session', session, '--reason', `keep ${session}`);
      expect(added.code, added.stderr).toBe(0);
      return added.stdout.trim();
    };
    const held = await add('old-0');
    await add('old-1');
    expect((await cli('retention', 'run', '--dry-run')).stdout).toMatch(/^dry run: would purge 1 exchanges/);

    await fixture.tamper(
      `UPDATE holds SET released_at = 1, released_by = 'x', release_reason = 'case closed' WHERE id = '${held}'`,
    );

    const text = await cli('holds', 'list');
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(
      new RegExp(`^${held} {2}active {2}session old-0 .*reason: keep old-0 {2}\\(index disagrees with ledger\\)$`, 'm'),
    );
    expect(text.stdout).toMatch(
      /^ {2}- hold \S+ \(session old-0\) in the holds index differs from its records .*releasedAt: index 1, ledger null/m,
    );
    expect(text.stderr).toMatch(/warning: the holds index disagrees with the ledger on 1 hold\(s\)/);
    const active = JSON.parse((await cli('holds', 'list', '--active', '--json')).stdout) as {
      items: Array<{ id: string; releasedAt: number | null; ledgerMismatch: string[] }>;
      next_cursor: string | null;
      holds: unknown[];
    };
    // Every list's shape (`next_cursor` null: not paged), with the old key for one release (deprecated).
    expect([active.next_cursor, active.holds]).toEqual([null, active.items]);
    expect(active.items.map((h) => h.id)).toContain(held);
    expect(active.items.find((h) => h.id === held)).toMatchObject({
      releasedAt: null,
      ledgerMismatch: [expect.any(String)],
    });

    const dry = await cli('retention', 'run', '--dry-run');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^dry run: would purge 1 exchanges/);
    expect(dry.stderr).toMatch(/warning: the holds index disagrees with the ledger on 1 hold\(s\).*so does this count/);
    const dryJson = JSON.parse((await cli('retention', 'run', '--dry-run', '--json')).stdout) as {
      exchanges: number;
      holdsLedgerMismatch: string[];
    };
    expect(dryJson).toMatchObject({
      exchanges: 1,
      holdsLedgerMismatch: [expect.stringContaining('releasedAt: index 1')],
    });

    // And the purge itself agrees with the dry run.
    const run = await cli('retention', 'run');
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^purged 1 exchanges/);
  });
});
