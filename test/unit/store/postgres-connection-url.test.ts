/**
 * Regression: a store URL carrying its own startup options (`?options=-c …`) replaced the store's, search_path
 * included, so the store's statements ran outside its schema and open() failed with a migration error. The URL's
 * options must be kept, and the store's schema must still be the one everything is written in.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresAuditStore } from '../../../src/store/postgres/postgres-audit-store.js';
import { storeConnectionConfig } from '../../../src/store/postgres/connection-config.js';
import { POSTGRES_TEST_URL } from '../../support/stores.js';

const schema = `vigil_test_${randomBytes(6).toString('hex')}`;
const applicationName = `vigil-url-${randomBytes(3).toString('hex')}`;
let admin: pg.Client;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: POSTGRES_TEST_URL });
  await admin.connect();
});

afterAll(async () => {
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.end();
});

describe('PostgreSQL store URL with its own startup options', () => {
  it('keeps them, and the store still works in its own schema', async () => {
    // The URL also asks for another search_path: the store's must win.
    const options = `-c application_name=${applicationName} -c statement_timeout=4321 -c search_path=public`;
    const url = `${POSTGRES_TEST_URL}?options=${encodeURIComponent(options)}`;
    const store = await PostgresAuditStore.open({ url, schema, poolSize: 2 });
    try {
      await store.append({
        records: [{ kind: 'access.denied', at: Date.now(), data: { connection: 'a', status: 401, reason: 'r' } }],
      });
      const { rows } = await admin.query<{ n: string }>(
        `SELECT count(*) AS n FROM "${schema}".records WHERE kind = 'access.denied'`,
      );
      expect(Number(rows[0]!.n)).toBe(1);
      // The store's connections carry the URL's settings (seen from outside, in pg_stat_activity).
      const seen = await admin.query('SELECT 1 FROM pg_stat_activity WHERE application_name = $1', [applicationName]);
      expect(seen.rowCount).toBeGreaterThan(0);
    } finally {
      await store.close();
    }
  });

  it('puts the store’s options after the URL’s, and leaves a URL without options as pg reads it', () => {
    const withOptions = storeConnectionConfig(
      'postgres://u:p%40ss@db.example:6543/audit?options=-c%20statement_timeout%3D5000&application_name=x',
      '-c search_path="s" -c jit=off',
    );
    expect(withOptions).toMatchObject({
      user: 'u',
      password: 'p@ss',
      host: 'db.example',
      port: '6543',
      database: 'audit',
      application_name: 'x',
      options: '-c statement_timeout=5000 -c search_path="s" -c jit=off',
    });
    expect(storeConnectionConfig('postgres://db.example/audit', '-c jit=off').options).toBe('-c jit=off');
    // The store's defaults go first: a URL that sets the same setting wins (PostgreSQL keeps the last).
    expect(
      storeConnectionConfig(
        'postgres://db.example/audit?options=-c%20random_page_cost%3D2',
        '-c jit=off',
        '-c random_page_cost=1.1',
      ).options,
    ).toBe('-c random_page_cost=1.1 -c random_page_cost=2 -c jit=off');
  });

  it('gives the store’s connections random_page_cost 1.1, unless the URL sets it', async () => {
    const setting = async (url: string): Promise<string> => {
      const store = await PostgresAuditStore.open({ url, schema, poolSize: 2 });
      try {
        // Another session's settings cannot be read from outside: asked on the store's own pool.
        const { rows } = await (store as unknown as { pool: pg.Pool }).pool.query<{ cost: string }>(
          "SELECT current_setting('random_page_cost') AS cost",
        );
        return rows[0]!.cost;
      } finally {
        await store.close();
      }
    };
    expect(await setting(POSTGRES_TEST_URL)).toBe('1.1');
    expect(await setting(`${POSTGRES_TEST_URL}?options=${encodeURIComponent('-c random_page_cost=3')}`)).toBe('3');
  });
});
