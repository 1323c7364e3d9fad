/**
 * What an operator sees when the PostgreSQL role in store.postgres.url may not do what was asked: create the schema,
 * or write key and hold records (the schema owner's).
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendOnlyGrantsSql } from '../../src/store/postgres/postgres-migrations.js';
import { vigil } from '../support/cli.js';
import { tempDir } from '../support/gateway-harness.js';
import { POSTGRES_TEST_URL, storeKinds } from '../support/stores.js';

describe.runIf(storeKinds().includes('postgres'))('PostgreSQL roles that may not do what was asked', () => {
  const suffix = randomBytes(4).toString('hex');
  const schema = `vigil_roles_${suffix}`;
  const role = `vigil_gw_${suffix}`;
  const admin = new pg.Client({ connectionString: POSTGRES_TEST_URL });
  const roleUrl = new URL(POSTGRES_TEST_URL);
  roleUrl.username = role;
  const dir = tempDir();
  const configFor = (url: string, name: string): string => {
    const file = path.join(dir, name);
    writeFileSync(file, `store:\n  postgres: { url: "${url}", schema: ${schema} }\nconnections: [{ name: a }]\n`);
    return file;
  };

  beforeAll(async () => {
    await admin.connect();
    await admin.query(`CREATE ROLE ${role} LOGIN`);
  });
  afterAll(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.query(`DROP OWNED BY ${role}`);
    await admin.query(`DROP ROLE ${role}`);
    await admin.end();
  });

  it('a role that may not create the schema is told the owner must start Vigil once first', async () => {
    // A regression: this said "cannot open the PostgreSQL store at … (42501): is it running, and is
    // store.postgres.url right?", which sends the operator looking for a server that is running fine.
    const r = await vigil(['keys', 'list', '--config', configFor(roleUrl.href, 'gateway.yaml')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`role ${role} may not create or migrate schema ${schema} (42501: `);
    expect(r.stderr).toContain('the schema owner must start Vigil (or run a CLI command such as vigil keys list) once');
    expect(r.stderr).not.toContain('is it running');
  });

  it('keys create and holds add as the gateway role print the owner-only refusal, without a stack trace', async () => {
    // A regression: printed as "vigil: unexpected error: error: key.created records are written by …" and pg's stack.
    const owner = await vigil(['keys', 'list', '--config', configFor(POSTGRES_TEST_URL, 'owner.yaml')]);
    expect(owner.code).toBe(0);
    await admin.query(appendOnlyGrantsSql(schema, role));
    const gateway = configFor(roleUrl.href, 'gateway.yaml');
    for (const args of [
      ['keys', 'create', '--name', 'ci', '--config', gateway],
      ['holds', 'add', '--session', 'ses_1', '--reason', 'litigation', '--config', gateway],
    ]) {
      const r = await vigil(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(
        new RegExp(
          `^vigil: \\S+ records are written by the owner of schema ${schema} \\(\\w+\\), not by role ${role}: run ` +
            'vigil keys / vigil holds with a config whose store.postgres.url logs in as the owner\\n$',
        ),
      );
    }
  });
});
