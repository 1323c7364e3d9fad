/**
 * Fresh, real stores for tests: SQLite in a temporary directory, PostgreSQL in a fresh schema of the `test` database.
 * Each fixture also gives the raw SQL access an operator (or an attacker) with database rights would have, so tests can
 * check what the database itself refuses and what `verify()` detects after someone goes around the store.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterEach, beforeEach } from 'vitest';
import type { AuditStore } from '../../src/store/audit-store.js';
import { PostgresAuditStore } from '../../src/store/postgres/postgres-audit-store.js';
import { SqliteAuditStore } from '../../src/store/sqlite/sqlite-audit-store.js';

export type StoreKind = 'sqlite' | 'postgres';

/** Where PostgreSQL tests connect: `VIGIL_TEST_POSTGRES_URL`, or the local server's `test` database with trust auth. */
export const POSTGRES_TEST_URL = process.env.VIGIL_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** The store kinds to run contract suites against: `STORES=sqlite,postgres` (the default is both). */
export function storeKinds(): StoreKind[] {
  const kinds = process.env.STORES?.split(',')
    .map((k) => k.trim())
    .filter(Boolean) ?? ['sqlite', 'postgres'];
  for (const k of kinds) {
    if (k !== 'sqlite' && k !== 'postgres') throw new Error(`STORES: unknown store kind "${k}" (use sqlite, postgres)`);
  }
  return kinds as StoreKind[];
}

export interface StoreFixture {
  readonly kind: StoreKind;
  /** Opens a store on the fixture's database. Each call is another writer, hence another chain. */
  open(options?: OpenOptions): Promise<AuditStore>;
  /** Runs SQL directly on the database, as someone with access would; returns the rows of a query. */
  sql(text: string): Promise<Array<Record<string, unknown>>>;
  /** Runs SQL with the append-only triggers out of the way, as an attacker who owns the tables would. */
  tamper(text: string): Promise<void>;
  /** A literal of these bytes in the fixture's SQL dialect. */
  bytes(data: Buffer): string;
  /** The `store:` section of a config that opens this database (with {@link env}), for the `vigil` CLI. */
  readonly storeYaml: string;
  /** What the CLI's environment needs for {@link storeYaml}. */
  readonly env: NodeJS.ProcessEnv;
  /** Closes every store this fixture opened and removes the database. */
  dispose(): Promise<void>;
}

/** How a PostgreSQL store is opened (SQLite ignores them). */
export interface OpenOptions {
  /** Reach the server through this port on 127.0.0.1 (a TcpRelay, tcp-relay.ts, say). */
  readonly port?: number;
  readonly writerReconnectMs?: number;
}

export interface StoreFixtureOptions {
  /**
   * PostgreSQL: a database of its own whose LC_CTYPE (and LC_COLLATE) is this, instead of a schema in the `test`
   * database — `C` for one whose `lower()` folds ASCII letters only, as `initdb --locale=C` makes.
   */
  readonly postgresLocale?: string;
}

/** A fresh store fixture of `kind` for each test of the enclosing describe (or file), disposed after it. */
export function useStoreFixture(kind: StoreKind): () => StoreFixture {
  let fixture: StoreFixture;
  beforeEach(async () => {
    fixture = await createStoreFixture(kind);
  });
  afterEach(() => fixture.dispose());
  return () => fixture;
}

/**
 * Rows of `table` read so far (by sequential and index scans) and inserted, as PostgreSQL's statistics have them. A
 * connection reports its part when it ends (or every second or so while it lives).
 */
export async function postgresTableStats(
  fixture: StoreFixture,
  table: string,
): Promise<{ read: number; inserted: number }> {
  const [row] = await fixture.sql(
    `SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS read, n_tup_ins AS inserted
     FROM pg_stat_user_tables WHERE relid = '${table}'::regclass`,
  );
  return { read: Number(row!.read), inserted: Number(row!.inserted) };
}

/** A fixture on an empty database of the given kind. */
export function createStoreFixture(kind: StoreKind, options: StoreFixtureOptions = {}): Promise<StoreFixture> {
  return kind === 'sqlite' ? sqliteFixture() : postgresFixture(options.postgresLocale);
}

async function sqliteFixture(): Promise<StoreFixture> {
  const dir = await mkdtemp(path.join(tmpdir(), 'vigil-store-'));
  const file = path.join(dir, 'vigil.db');
  const stores: AuditStore[] = [];
  let raw: Database.Database | undefined;
  const db = (): Database.Database => (raw ??= new Database(file));
  return {
    kind: 'sqlite',
    async open() {
      const store = SqliteAuditStore.open({ file });
      stores.push(store);
      return store;
    },
    async sql(text) {
      const stmt = db().prepare(text);
      if (stmt.reader) return stmt.all() as Array<Record<string, unknown>>;
      stmt.run();
      return [];
    },
    async tamper(text) {
      // SQLite cannot disable a trigger, so drop them all, do the deed, and put them back.
      const conn = db();
      const triggers = conn.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").all() as Array<{
        name: string;
        sql: string;
      }>;
      conn.transaction(() => {
        for (const t of triggers) conn.exec(`DROP TRIGGER "${t.name}"`);
        conn.exec(text);
        for (const t of triggers) conn.exec(t.sql);
      })();
    },
    bytes: (data) => `X'${data.toString('hex')}'`,
    storeYaml: `store:\n  sqlite:\n    path: ${file}\n`,
    env: {},
    async dispose() {
      for (const s of stores) await s.close();
      raw?.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function postgresFixture(locale?: string): Promise<StoreFixture> {
  const schema = `vigil_test_${randomBytes(6).toString('hex')}`;
  const url = locale === undefined ? POSTGRES_TEST_URL : await createDatabase(schema, locale);
  const admin = new pg.Client({ connectionString: url });
  try {
    await admin.connect();
  } catch (err) {
    await admin.end().catch(() => {});
    throw new Error(
      `PostgreSQL is not reachable at ${POSTGRES_TEST_URL} (${(err as Error).message}). ` +
        'Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start ' +
        '(or point VIGIL_TEST_POSTGRES_URL at a server; STORES=sqlite runs only the SQLite half, deliberately).',
      { cause: err },
    );
  }
  const stores: AuditStore[] = [];
  // Every raw statement runs inside the schema, like the store's own connections.
  await admin.query(`SET search_path = "${schema}"`);
  return {
    kind: 'postgres',
    async open(options = {}) {
      const via = new URL(url);
      if (options.port !== undefined) [via.hostname, via.port] = ['127.0.0.1', String(options.port)];
      const store = await PostgresAuditStore.open({
        url: via.toString(),
        schema,
        poolSize: 4,
        ...(options.writerReconnectMs === undefined ? {} : { writerReconnectMs: options.writerReconnectMs }),
      });
      stores.push(store);
      return store;
    },
    async sql(text) {
      return (await admin.query(text)).rows as Array<Record<string, unknown>>;
    },
    async tamper(text) {
      // What a table owner can do: switch the append-only triggers off, change history, switch them on again.
      const tables = ['records', 'blobs', 'exchanges', 'exchange_results'];
      await admin.query('BEGIN');
      try {
        for (const t of tables) await admin.query(`ALTER TABLE ${t} DISABLE TRIGGER USER`);
        await admin.query(text);
        for (const t of tables) await admin.query(`ALTER TABLE ${t} ENABLE TRIGGER USER`);
        await admin.query('COMMIT');
      } catch (err) {
        await admin.query('ROLLBACK');
        throw err;
      }
    },
    bytes: (data) => `'\\x${data.toString('hex')}'::bytea`,
    storeYaml: `store:\n  postgres:\n    url: { env: VIGIL_TEST_DATABASE_URL }\n    schema: ${schema}\n`,
    env: { VIGIL_TEST_DATABASE_URL: url },
    async dispose() {
      for (const s of stores) await s.close();
      try {
        await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await admin.end();
      }
      if (locale !== undefined) await onTestServer(`DROP DATABASE IF EXISTS "${schema}"`);
    },
  };
}

/** Creates a database named `name` with this locale on the test server; resolves with its URL. */
async function createDatabase(name: string, locale: string): Promise<string> {
  await onTestServer(
    `CREATE DATABASE "${name}" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE '${locale}' LC_CTYPE '${locale}'`,
  );
  const url = new URL(POSTGRES_TEST_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function onTestServer(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_TEST_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
