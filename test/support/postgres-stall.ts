/**
 * A slow PostgreSQL store, made deterministic: inserts of the record kinds a test names wait on an advisory lock the
 * test holds (a trigger on the schema's `records`), until it lets them go.
 */
import pg from 'pg';
import { POSTGRES_TEST_URL } from './stores.js';
import { until } from './until.js';

export interface Stall {
  /** Inserts of `kind` wait from now until {@link release}. */
  stall(kind: string): Promise<void>;
  release(): Promise<void>;
  /** Inserts from now on go through; those already waiting go on waiting until {@link release}. */
  stopStalling(): Promise<void>;
  /** Resolves once an insert is waiting on the stall. */
  stalled(): Promise<unknown>;
  /** Lets every insert go, runs `stop` (closing what writes to the schema), then drops the schema. */
  dispose(stop: () => Promise<unknown>): Promise<void>;
}

/**
 * Installs the stall in `schema`, whose `records` table must exist (a gateway on it has started). The lock is this
 * run's (two keys, the second the process id): advisory locks are the whole database's, and other runs may stall too.
 */
export async function installStall(schema: string): Promise<Stall> {
  const sql = new pg.Client({ connectionString: POSTGRES_TEST_URL });
  await sql.connect();
  await sql.query(`SET search_path = "${schema}"`);
  const lock = [7310, process.pid] as const;
  const args = lock.join(', ');
  await sql.query(`CREATE TABLE vigil_test_stall (kind text)`);
  await sql.query(`CREATE FUNCTION vigil_test_stall() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF EXISTS (SELECT 1 FROM vigil_test_stall s WHERE s.kind = NEW.kind) THEN
        PERFORM pg_advisory_xact_lock_shared(${args});
      END IF;
      RETURN NEW;
    END $$`);
  await sql.query(
    `CREATE TRIGGER vigil_test_stall BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION vigil_test_stall()`,
  );
  return {
    async stall(kind) {
      await sql.query(`SELECT pg_advisory_lock(${args})`);
      await sql.query(`INSERT INTO vigil_test_stall VALUES ($1)`, [kind]);
    },
    async stopStalling() {
      await sql.query(`DELETE FROM vigil_test_stall`);
    },
    async release() {
      await sql.query(`DELETE FROM vigil_test_stall`);
      await sql.query(`SELECT pg_advisory_unlock(${args})`);
    },
    stalled: () =>
      until('an insert to wait on the stall', async () => {
        const r = await sql.query(
          `SELECT 1 FROM pg_locks
           WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND objsubid = 2 AND NOT granted`,
          [...lock],
        );
        return r.rowCount ? true : undefined;
      }),
    async dispose(stop) {
      try {
        await sql.query(`SELECT pg_advisory_unlock_all()`);
        await stop();
        await sql.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await sql.end();
      }
    },
  };
}
