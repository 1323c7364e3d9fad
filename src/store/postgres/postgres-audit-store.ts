/**
 * The shared store: one PostgreSQL database that several gateway replicas write to at once. Each process writes its
 * own chain, so replicas never contend for a chain head; the database only serialises them on the unique
 * (chain, chain_seq) index and the identity sequence. Records, blobs and index rows of one `append` go in one
 * transaction — one statement, in one round trip (postgres-append.ts) — and `append` resolves after it commits, i.e.
 * once PostgreSQL reports the data durable.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { storeConnectionConfig } from './connection-config.js';
import type {
  AccessLogEntry,
  AuditStore,
  ChainPosition,
  ChainTip,
  PurgeCandidate,
  PurgeRemoval,
  RetentionQuery,
  VerifyOptions,
  ExchangeFilter,
  ExchangeListFilter,
  ExchangeListItem,
  ExchangeSummary,
  NewRecord,
  Page,
  PageRequest,
  SearchHit,
  SearchOptions,
  SessionFilter,
  SessionListItem,
  SessionTotals,
  SessionTotalsRequest,
  ListedGatewayKey,
  ListedHold,
  StoredGatewayKey,
  StoredHold,
  StoredRecord,
  UndigestedTail,
  VerifyReport,
  SearchText,
  WriteBatch,
  UsageReport,
  UsageRequest,
} from '../audit-store.js';
import { messageOf } from '../../errors.js';
import { VERIFY_PAGE } from '../audit-store.js';
import {
  namesStatement,
  toSessionTotals,
  totalsStatement,
  type NameRow,
  type AggregateDialect,
  type TotalsRow,
} from '../session-totals.js';
import { toUsageReport, usageRows, usageStatement, type UsageSqlRow } from '../usage-report.js';
import type { Pricing } from '../pricing.js';
import { sessionListStatement, toSessionListPage, type ListNameRow } from '../session-list.js';
import { decodeCursor, pageOf, pageSize } from '../exchange-index.js';
import { parseSearchQuery, tsQuery } from '../search-query.js';
import { indexedBlobRefs, newRecordBlobRefs } from '../blob-refs.js';
import { dependantRefs, RefBases } from '../ref-bases.js';
import { foldTable } from '../case-fold.js';
import {
  activeLedgerHolds,
  heldByLedger,
  HOLD_RECORD_KINDS,
  indexRecordsSql,
  KEY_RECORD_KINDS,
  keyRecordsVersionSql,
  LedgerKeyCache,
  type IndexRecord,
  listedHolds,
  listedKeys,
} from '../ledger-index.js';
import { newChainId, linkRecord, verifyLedger, type ChainHead } from '../ledger.js';
import {
  AT_HEAD,
  CHAIN_HEAD_EXCHANGES,
  CHAIN_HEADS,
  HELD,
  HELD_BY,
  UNDELIVERED,
  type FoldSql,
  UNDIGESTED_TAILS,
  toChainHead,
  toUndigestedTails,
  type ChainHeadRow,
  type UndigestedTailRow,
  toHold,
  toAccessLogEntry,
  toCandidate,
  toKey,
  toSearchHit,
  toStored,
  toSummary,
  type AccessLogRow,
  type CandidateRow,
  type ExchangeRow,
  type HoldRow,
  type IndexRecordRow,
  type KeyRow,
  toIndexRecord,
  type RecordRow,
  type SearchHitRow,
  type SessionRow,
} from '../store-rows.js';
import { purgeRemoval, type DueExchange } from '../purge-runs.js';
import { appendStatements, chunks, ROWS_PER_INSERT, runAppend, type PendingRecord } from './postgres-append.js';
import { INDEX_TRIGGER, POSTGRES_MIGRATIONS, quoteIdentifier } from './postgres-migrations.js';

export interface PostgresStoreOptions {
  /** `postgres://user@host:port/database`. A `?options=` parameter in the URL would override the schema setting. */
  readonly url: string;
  /** Schema holding Vigil's tables; created on first open. Default `public`. */
  readonly schema?: string;
  /** Connections in the pool. Default 10. */
  readonly poolSize?: number;
  /** See {@link AuditStore.writerReconnectMs}. Default {@link WRITER_RECONNECT_MS}. */
  readonly writerReconnectMs?: number;
}

/** The longest pause between a writer's attempts to connect its lock connection again after losing it. */
const LOCK_RECONNECT_MAX_PAUSE_MS = 5_000;
/**
 * How long another gateway's chain is given to be seen live again (its lock retaken) before its open exchanges are
 * recorded as interrupted: three of its longest pauses between attempts.
 */
export const WRITER_RECONNECT_MS = 3 * LOCK_RECONNECT_MAX_PAUSE_MS;

const INT8_OID = 20;

/**
 * pg returns bigint as a string because it can exceed 2^53. Every bigint here (seq, chain_seq, epoch milliseconds,
 * token counts, counts) stays far below that, so the pool parses them to numbers. Set on this pool only: changing
 * `pg.types` globally would alter every other pg user in the process.
 */
const POOL_TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary'
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format ?? 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

/** The records that make the gateway-key index, and those that make the hold index (see ledger-index.ts). */
const KEY_RECORDS = indexRecordsSql(KEY_RECORD_KINDS);
const HOLD_RECORDS = indexRecordsSql(HOLD_RECORD_KINDS);
/** See LedgerKeyCache: the version of the ledger's key records, read with a key's index row. */
const KEY_RECORDS_VERSION = keyRecordsVersionSql('true');
/**
 * Given to every connection a pool makes. A connection lost while checked out (a transaction between two statements,
 * or a statement waiting: the server restarted, the network dropped, an operator ended the backend) emits 'error',
 * and pg-pool listens only while a connection is idle: unhandled, that error stopped the process — every stream in
 * flight cut, and the records held for the store lost. The same loss fails the connection's current or next query,
 * whose caller reports it, and pg-pool discards a connection that can no longer be queried when it is released.
 */
function keepLostConnectionQuiet(client: pg.PoolClient): void {
  client.on('error', () => {});
}

/** First key of the two-key advisory lock that serialises migrations ("VIGL"); the second is the schema's hash. */
const MIGRATION_LOCK_CLASS = 0x5649474c;

/** The ledger's key or hold records (KEY_RECORDS, HOLD_RECORDS), read through the pool or in a transaction. */
async function indexRecords(db: pg.Pool | pg.PoolClient, sql: string): Promise<IndexRecord[]> {
  return (await db.query<IndexRecordRow>(sql)).rows.map(toIndexRecord);
}

/**
 * Which of the exchanges `ids` (each once) an active hold of the ledger's hold records covers, matched against their
 * own request records (see heldByLedger): a dry run's last test, and a purge's.
 */
async function ledgerHeld(c: pg.PoolClient, ids: readonly string[]): Promise<Set<string>> {
  const holdRecords = await indexRecords(c, HOLD_RECORDS);
  const requests = await c.query<RecordRow>(
    `SELECT * FROM records WHERE exchange_id = ANY($1::text[]) AND kind = 'exchange.request'`,
    [ids],
  );
  return heldByLedger(holdRecords, requests.rows.map(toStored));
}

/**
 * SQL that folds the case of a text as foldCase does, for the callers of the holds index's active holds (read through
 * `db`) and of `more`, and the e-mails they may match: translate() with a table made for them (see foldTable), since
 * lower() folds as the database's LC_CTYPE says — ASCII letters only under C. The holds are read once; the table is
 * bound through `param` for each statement that folds with it.
 */
async function holdsFold(db: pg.Pool | pg.PoolClient, more: readonly StoredHold[]): Promise<(param: Param) => FoldSql> {
  const index = await db.query<{ caller_subject: string }>(
    'SELECT caller_subject FROM holds WHERE released_at IS NULL AND caller_subject IS NOT NULL',
  );
  const callers = [...index.rows.map((r) => r.caller_subject), ...more.flatMap((h) => h.caller ?? [])];
  const table = foldTable(callers);
  return (param) => {
    const from = param(table.from);
    const to = param(table.to);
    return (text) => `translate(${text}, ${from}::text, ${to}::text)`;
  };
}

/** `($1, $2, …), ($n+1, …)` for `rows` rows of `width` parameters, with optional casts per column. */
function valuesList(rows: number, casts: readonly string[]): string {
  const width = casts.length;
  const out: string[] = [];
  for (let i = 0; i < rows; i++) {
    out.push(`(${casts.map((cast, c) => `$${i * width + c + 1}${cast}`).join(', ')})`);
  }
  return out.join(', ');
}

/** What `query` resolves to, or a rejection once `ms` pass without an answer (a connection that went silent). */
async function answerWithin<T>(ms: number, query: Promise<T>): Promise<T> {
  const timer = new AbortController();
  const silence = sleep(ms, undefined, { ref: false, signal: timer.signal }).then(() => {
    throw new Error(`the database did not answer within ${ms} ms`);
  });
  try {
    return await Promise.race([query, silence]);
  } finally {
    timer.abort();
  }
}

type Param = (value: unknown) => string;

/** A statement's parameter values (starting with `first`), and `param`, which adds one and returns its `$n`. */
function parameters(...first: unknown[]): { values: unknown[]; param: Param } {
  const values = [...first];
  return { values, param: (v) => `$${values.push(v)}` };
}

/** How many due exchanges retentionCandidates tests on their own first, at least (see there). */
const CANDIDATE_CHUNK = 64;

/** SQL conditions for an exchange filter over `exchanges e LEFT JOIN exchange_results r`. */
function exchangeConditions(f: ExchangeFilter, param: Param): string[] {
  const where: string[] = [];
  if (f.session !== undefined) where.push(`e.session_id = ${param(f.session)}`);
  if (f.connection !== undefined) where.push(`e.connection = ${param(f.connection)}`);
  if (f.caller !== undefined) where.push(`e.caller_subject = ${param(f.caller)}`);
  if (f.callerIssuer !== undefined) {
    where.push(
      `EXISTS (SELECT 1 FROM exchange_callers c WHERE c.exchange_id = e.id AND c.issuer = ${param(f.callerIssuer)})`,
    );
  }
  if (f.group !== undefined) {
    where.push(
      `EXISTS (SELECT 1 FROM exchange_groups g WHERE g.group_name = ${param(f.group)} AND g.exchange_id = e.id)`,
    );
  }
  if (f.model !== undefined) {
    const m = param(f.model);
    where.push(`(e.model = ${m} OR r.model = ${m})`);
  }
  if (f.outcome === 'in_progress') where.push('r.exchange_id IS NULL');
  else if (f.outcome !== undefined) where.push(`r.outcome = ${param(f.outcome)}`);
  if (f.stopReason !== undefined) where.push(`r.stop_reason = ${param(f.stopReason)}`);
  if (f.masking !== undefined) {
    where.push(`EXISTS (SELECT 1 FROM exchange_masking m WHERE m.type = ${param(f.masking)} AND m.exchange_id = e.id)`);
  }
  if (f.since !== undefined) where.push(`e.started_at >= ${param(f.since)}::bigint`);
  if (f.until !== undefined) where.push(`e.started_at < ${param(f.until)}::bigint`);
  return where;
}

/**
 * A statement of session-totals.ts or session-list.ts in PostgreSQL's dialect (bytewise text order, as SQLite's; sums
 * cast back to bigint), with `filter`'s conditions.
 */
function aggregate(
  build: (d: AggregateDialect) => string,
  filter: ExchangeFilter,
): { text: string; values: unknown[] } {
  const { values, param } = parameters();
  const text = build({
    where: () => exchangeConditions(filter, param),
    param,
    bytewise: ' COLLATE "C"',
    int: '::bigint',
    bySession: '',
    unflattened: '',
    byTime: '',
    dayOf: (ms) => `to_char(to_timestamp(${ms} / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')`,
  });
  return { text, values };
}

/**
 * `(e.started_at, e.id)` strictly before the cursor's position, for newest-first keyset pages (after: oldest-first;
 * ids bytewise). The bound on started_at alone is implied by the other, and is there for the planner: an index range
 * on started_at starts at the cursor, where the OR alone made it read every index entry before it (or after it) and
 * sort them, so that a page deep into a long session cost O(position).
 */
function beforeCursor(cursor: string | undefined, param: Param, after = false): string[] {
  const c = cursor !== undefined ? decodeCursor(cursor) : undefined;
  if (!c) return [];
  const at = param(c.lastAt);
  const cmp = after ? '>' : '<';
  return [
    `e.started_at ${cmp}= ${at}::bigint`,
    `(e.started_at ${cmp} ${at}::bigint OR (e.started_at = ${at}::bigint AND e.id COLLATE "C" ${cmp} ${param(c.id)}))`,
  ];
}

export class PostgresAuditStore implements AuditStore {
  readonly kind = 'postgres' as const;
  readonly writesOnCallingThread = false;
  readonly chainId = newChainId();
  readonly writerReconnectMs: number;
  readonly schema: string;
  /** Where this store's appends are announced (see notifyChannel). */
  private readonly notifyChannel: string;
  private readonly pool: pg.Pool;
  /** The connection appends run on: see the constructor. */
  private readonly appendPool: pg.Pool;
  /** How a connection of the store's own is made: the pool's, and verify's outside it. */
  private readonly connection: pg.ClientConfig;
  /**
   * The last record of this process's chain: null before the first append (which then opens the chain), undefined
   * after a failed append, when the outcome of COMMIT may be unknown (a lost connection), so the next append reads the
   * tip back from the database instead of trusting memory.
   */
  private tip: ChainTip | null | undefined = null;
  /** Appends run one after another so each starts from the tip the previous one committed. */
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * The last append, when its connection was lost after what commits it was sent: it may have committed. Settled
   * before the next append reads the tip (see tipAfterDoubt).
   */
  private inDoubt: {
    /** The server process that ran it, which may still be running it. */
    backend: number | null;
    records: readonly PendingRecord[];
    searchText: readonly SearchText[];
  } | null = null;
  /**
   * Records of appends found committed after their answer was lost, as stored: the write queue tries again what
   * failed, with the same objects, and an append skips these (see appendNow), so nothing is written twice.
   */
  private readonly appendedInDoubt = new WeakMap<NewRecord, StoredRecord>();
  private readonly searchTextInDoubt = new WeakSet<SearchText>();
  /** Whether an append in doubt was ever found written: until then appends need not look for its records. */
  private foundInDoubt = false;
  private closed = false;
  /**
   * A connection held for the process's lifetime: it holds the advisory lock that says this chain's writer is alive,
   * and the leadership locks this process takes. Session-level locks are released when the connection ends — by
   * `close()`, or by the server when the process dies or the session is lost (a terminated backend, a dropped
   * connection): then this process steps down from every leadership at once and connects again (see locksLost).
   */
  private locks: pg.PoolClient | null = null;
  /** Connecting a new lock connection after the last one was lost. */
  private reconnecting: Promise<void> | null = null;
  /** Aborted by close(): a reconnection stops waiting between attempts. */
  private readonly closing = new AbortController();
  private readonly leaderships = new Set<string>();
  private readonly appendListeners = new Set<{ prefix: string; listener: () => void }>();
  private readonly leadershipListeners = new Set<() => void>();
  /** The last request record of each conversation, as the base of its next one (ref-bases.ts). */
  private readonly refBases = new RefBases();
  /** What the ledger says about gateway keys, for findGatewayKey. */
  private readonly ledgerKeys = new LedgerKeyCache(() => indexRecords(this.pool, KEY_RECORDS));

  /** Connects, creates the schema if needed and applies pending migrations, then returns a store ready to append. */
  static async open(options: PostgresStoreOptions): Promise<PostgresAuditStore> {
    const store = new PostgresAuditStore(options);
    try {
      await store.migrate();
      // A new chain's lock is free: wait for it rather than fail on a race with nothing.
      if (!(await store.connectLocks('SELECT pg_advisory_lock($1, hashtext($2)) IS NOT NULL AS ok'))) {
        throw new Error(`could not take the lock of chain ${store.chainId}`);
      }
    } catch (err) {
      await store.pool.end();
      throw err;
    }
    return store;
  }

  /**
   * Takes a connection for the locks, takes this chain's lock on it with `takeChainLock` (a query answering `ok`),
   * and listens there for NOTIFYs. Resolves whether the lock was taken (the connection is then `this.locks`).
   */
  private async connectLocks(takeChainLock: string): Promise<boolean> {
    const client = await this.pool.connect();
    // A connection checked out of the pool has no 'error' listener: unhandled, a lost connection would crash the
    // process. Its session's locks are lost with it.
    client.on('error', (err) => this.locksLost(client, err));
    try {
      const taken = await client.query<{ ok: boolean }>(takeChainLock, [CHAIN_LOCK_CLASS, this.chainId]);
      if (!taken.rows[0]?.ok || this.closed) {
        client.release();
        return false;
      }
      // The same long-lived connection hears NOTIFYs: other processes' appends of kinds someone waits for.
      client.on('notification', (msg) => {
        for (const l of this.appendListeners) if (msg.payload?.startsWith(l.prefix)) l.listener();
      });
      await client.query(`LISTEN ${this.notifyChannel}`);
    } catch (err) {
      client.release(err as Error);
      throw err;
    }
    this.locks = client;
    return true;
  }

  /**
   * The lock connection is lost (or stopped answering), and with it every lock its session held: another gateway
   * may already have taken over a leadership. Step down from all of them at once — a job that checks
   * `holdsLeadership` stops before its next step — and connect again, retaking this chain's lock (the next
   * `tryLeadership` competes for leaderships anew).
   */
  private locksLost(client: pg.PoolClient, err: Error): void {
    if (this.locks !== client) return;
    this.locks = null;
    this.leaderships.clear();
    for (const listener of this.leadershipListeners) listener();
    client.release(err); // closes it rather than returning it to the pool
    this.reconnecting ??= this.reconnectLocks().finally(() => (this.reconnecting = null));
  }

  private async reconnectLocks(): Promise<void> {
    for (let pause = 100; !this.closed; pause = Math.min(pause * 2, LOCK_RECONNECT_MAX_PAUSE_MS)) {
      // Not waiting for the chain's lock: if the lost session lingers on the server, it still holds it.
      const ok = await this.connectLocks('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok').catch(() => false);
      if (ok) return;
      await sleep(pause, undefined, { ref: false, signal: this.closing.signal }).catch(() => undefined);
    }
  }

  /**
   * Whether this connection's session holds the leadership lock `name`, asked of the server (pg_locks) within
   * {@link LOCK_CHECK_TIMEOUT_MS}. A failed or unanswered check means the connection is lost: see locksLost.
   */
  private async holdsLock(locks: pg.PoolClient, name: string): Promise<boolean> {
    try {
      const res = await answerWithin(
        LOCK_CHECK_TIMEOUT_MS,
        locks.query<{ held: boolean }>(
          // Two-key advisory locks show their keys as classid and objid (int4 read as oid), objsubid 2.
          `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
             AND classid = $1::int4::oid AND objid = hashtext($2)::oid AND objsubid = 2) AS held`,
          [LEADER_LOCK_CLASS, name],
        ),
      );
      return res.rows[0]?.held === true;
    } catch (err) {
      this.locksLost(locks, err as Error);
      return false;
    }
  }

  private constructor(options: PostgresStoreOptions) {
    this.schema = options.schema ?? 'public';
    this.writerReconnectMs = options.writerReconnectMs ?? WRITER_RECONNECT_MS;
    this.notifyChannel = notifyChannel(this.schema);
    this.connection = {
      // Unqualified SQL everywhere, one schema per store: the startup packet sets it, so no connection ever runs a
      // query with another search_path. `$user` and `public` are left out so nothing resolves outside the schema.
      // No JIT: the store's statements read index ranges, and where the planner overestimates one (correlated
      // subqueries, tables not yet analysed) compiling it took 50–500 ms, many times the query itself.
      // random_page_cost 1.1, unless the URL says otherwise: the default (4) prices a random read as on a spinning
      // disk, and the planner scanned whole tables rather than look up a page of sessions' exchanges by index — a
      // second per page of the session list over a million exchanges, where the lookups take tens of ms.
      ...storeConnectionConfig(
        options.url,
        `-c search_path=${quoteIdentifier(this.schema)} -c jit=off`,
        '-c random_page_cost=1.1',
      ),
      types: POOL_TYPES,
    };
    // A query that cannot get a connection fails after this, rather than waiting forever: a caller (a request, the
    // approvals poll) errs and tries again instead of hanging with the connection it waits behind.
    this.pool = new pg.Pool({ ...this.connection, max: options.poolSize ?? 10, connectionTimeoutMillis: 10_000 });
    // An idle connection the server drops (restart, idle timeout) emits 'error' on the pool; unhandled, that would
    // crash the process. The pool has already discarded the connection, and the next query either gets a fresh one
    // or rejects to its caller, who decides; so there is nothing to do here.
    this.pool.on('error', () => {});
    this.pool.on('connect', keepLostConnectionQuiet);
    // Appends (serialised by enqueue, so one connection) run where their prepared statements keep one generic plan.
    // Left to choose, PostgreSQL planned the append anew at every execution — its estimate of the generic plan being
    // higher — and that bind took as long as the execution: ~0.3 ms of the wait of every request before it is
    // forwarded. The statements are written so that a generic plan looks rows up by key whatever the statistics
    // (postgres-ref-bases-scan.test.ts); every other query keeps being planned with its values, on the main pool.
    this.appendPool = new pg.Pool({
      ...this.connection,
      options: `${this.connection.options} -c plan_cache_mode=force_generic_plan`,
      max: 1,
      connectionTimeoutMillis: 10_000,
    });
    this.appendPool.on('error', () => {});
    this.appendPool.on('connect', keepLostConnectionQuiet);
  }

  private async migrate(): Promise<void> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      // Replicas starting together queue here; the transaction-scoped lock is released by COMMIT (when the new schema
      // is visible to the next in line) or by the connection dying, so a crashed replica never leaves it held.
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [MIGRATION_LOCK_CLASS, this.schema]);
      // Checked before creating: CREATE … IF NOT EXISTS still demands CREATE privilege, which an append-only gateway
      // role (appendOnlyGrantsSql) does not have once the schema exists.
      const exists = await client.query<{ schema: boolean; table: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS schema,
                to_regclass(format('%I.schema_migrations', $1::text)) IS NOT NULL AS table`,
        [this.schema],
      );
      if (!exists.rows[0]?.schema) await client.query(`CREATE SCHEMA ${quoteIdentifier(this.schema)}`);
      if (!exists.rows[0]?.table) {
        await client.query('CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)');
      }
      const res = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations');
      const current = res.rows[0]?.v ?? 0;
      if (current > POSTGRES_MIGRATIONS.length) {
        throw new Error(
          `store schema version ${current} in schema "${this.schema}" is newer than this Vigil (${POSTGRES_MIGRATIONS.length}): upgrade Vigil, or point store.postgres at another schema`,
        );
      }
      for (let v = current + 1; v <= POSTGRES_MIGRATIONS.length; v++) {
        await client.query(POSTGRES_MIGRATIONS[v - 1]!);
        await client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [v, Date.now()]);
      }
      // Trust the version numbers only as far as what they stand for exists.
      const trigger = await client.query<{ ok: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
           WHERE c.relname = 'records' AND t.tgname = $2
             AND c.relnamespace = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = $1)) AS ok`,
        [this.schema, INDEX_TRIGGER],
      );
      if (trigger.rows[0]?.ok !== true) {
        throw new Error(
          `schema "${this.schema}" says migration 6 ran, but its trigger ${INDEX_TRIGGER} is missing: someone wrote ` +
            "schema_migrations (versions are the owner's to write). As the owner, delete the versions from 6 on and " +
            'start Vigil again so they run, then re-run `vigil store grants`',
        );
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        // The connection is already broken; the original error is the one worth reporting.
      });
      throw err;
    } finally {
      client.release();
    }
  }

  isUnavailable(err: unknown): boolean {
    if (this.closed) return true;
    const code = String((err as { code?: unknown } | null)?.code ?? '');
    if (/^(ECONN|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN)/.test(code)) return true;
    // SQLSTATE classes: 08 connection exception, 53 insufficient resources, 57 operator intervention.
    if (/^(08|53|57)[0-9A-Z]{3}$/.test(code)) return true;
    // What pg and pg-pool throw when the connection is lost or cannot be made (no code).
    return /Connection terminated|connection error|timeout exceeded when trying to connect/i.test(messageOf(err) ?? '');
  }

  async appendedDespiteFailure(record: NewRecord): Promise<boolean> {
    if (this.inDoubt !== null) {
      await this.enqueue(async () => {
        if (this.inDoubt === null) return;
        const client = await this.appendPool.connect();
        let failed: Error | undefined;
        try {
          this.tip = await this.tipAfterDoubt(client);
        } catch (err) {
          failed = err as Error;
          throw err;
        } finally {
          client.release(failed);
        }
      });
    }
    return this.appendedInDoubt.has(record);
  }

  append(batch: WriteBatch): Promise<readonly StoredRecord[]> {
    // Serialise before touching the database, so a payload that cannot be serialised costs no round trip.
    let payloads: Payload[];
    try {
      payloads = batch.records.map((r) => ({ record: r, data: serialise(r) }));
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.enqueue(() => this.appendNow(batch, payloads));
  }

  /**
   * The append of a batch on its own: one statement, which is its own transaction (see postgres-append.ts), or, for a
   * batch too large for one, its statements in one transaction. Resolves once PostgreSQL reports it committed.
   */
  private async appendNow(batch: WriteBatch, payloads: readonly Payload[]): Promise<StoredRecord[]> {
    const client = await this.appendPool.connect();
    let broken = false;
    let inTransaction = false;
    /** Set once what commits the append has been sent: from then on, a lost connection leaves it in doubt. */
    let committing = false;
    let pending: PendingRecord[] = [];
    try {
      const from = this.tip === undefined ? await this.tipAfterDoubt(client) : this.tip;
      // Records (and search text) an append whose answer was lost wrote all the same are not written again.
      const doubted = this.foundInDoubt;
      const written = doubted ? payloads.filter(({ record }) => this.appendedInDoubt.has(record)) : [];
      const toWrite = written.length ? payloads.filter(({ record }) => !this.appendedInDoubt.has(record)) : payloads;
      const searchText = doubted ? batch.searchText?.filter((t) => !this.searchTextInDoubt.has(t)) : batch.searchText;
      if (written.length && !toWrite.length) return written.map(({ record }) => this.appendedInDoubt.get(record)!);
      const linked = await this.link(client, from, toWrite);
      pending = linked.pending;
      const statements = this.statements({ ...batch, ...(searchText && { searchText }) }, pending);
      inTransaction = statements.length > 1;
      if (inTransaction) await client.query('BEGIN');
      committing = !inTransaction;
      const stored = await this.runAppend(client, statements, pending);
      committing = true;
      if (inTransaction) await client.query('COMMIT');
      this.tip = linked.tip;
      this.refBases.commit();
      return written.length ? [...written.map(({ record }) => this.appendedInDoubt.get(record)!), ...stored] : stored;
    } catch (err) {
      // Failed, or unknown if the connection died before the answer (the statement may have committed): the tip in
      // memory may no longer match the database, so the next append reads it back; what it wrote is no base.
      if (committing && pending.length && this.isUnavailable(err)) {
        this.inDoubt = {
          backend: (client as unknown as { processID?: number | null }).processID ?? null,
          records: pending,
          searchText: batch.searchText ?? [],
        };
      }
      this.tip = undefined;
      this.refBases.rollback();
      if (inTransaction) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
      }
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /** The records linked after `tip`, opening the chain first when it has none yet; and the tip they make. */
  private async link(
    client: pg.PoolClient,
    tip: ChainTip | null,
    payloads: readonly Payload[],
  ): Promise<{ pending: PendingRecord[]; tip: ChainTip | null }> {
    const pending: PendingRecord[] = [];
    const chain = (r: Parameters<typeof linkRecord>[2], source?: NewRecord): void => {
      const linked = linkRecord(this.chainId, tip, r);
      if (source) {
        const base = this.refBases.baseOf(source);
        pending.push({ linked, source, refs: newRecordBlobRefs(source), ...(base && { base }) });
      } else {
        pending.push({ linked });
      }
      tip = { chainSeq: linked.chainSeq, hash: linked.hash };
    };
    if (tip === null) {
      chain({
        kind: 'chain.opened',
        exchangeId: null,
        sessionId: null,
        at: Date.now(),
        data: JSON.stringify(await this.openingData(client)),
      });
    }
    for (const { record, data } of payloads) {
      chain(
        {
          kind: record.kind,
          exchangeId: record.exchangeId ?? null,
          sessionId: record.sessionId ?? null,
          at: record.at,
          data,
        },
        record,
      );
    }
    return { pending, tip };
  }

  /** {@link runAppend}, noting the request records it wrote as bases of their conversations' next (once committed). */
  private async runAppend(
    client: pg.ClientBase,
    statements: ReturnType<typeof appendStatements>,
    pending: readonly PendingRecord[],
  ): Promise<StoredRecord[]> {
    const stored = await runAppend(client, statements, pending);
    for (const [i, { source, refs }] of pending.entries())
      if (source && refs) this.refBases.written(source, stored[i]!, refs);
    return stored;
  }

  private statements(batch: WriteBatch, pending: readonly PendingRecord[]): ReturnType<typeof appendStatements> {
    return appendStatements(this.chainId, pending, batch.blobs ?? [], batch.searchText ?? [], {
      channel: this.notifyChannel,
      kinds: [...new Set(batch.records.map((r) => r.kind).filter((k) => NOTIFIED_KINDS.test(k)))],
    });
  }

  /** Runs `work` after every append already called, so each starts from the tip the previous one committed. */
  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error('the audit store is closed'));
    const run = this.queue.then(work);
    this.queue = run.catch(() => {
      // The caller of this append gets the rejection; the queue only keeps order.
    });
    return run;
  }

  /**
   * Runs `work` on a connection of the pool inside a transaction begun by `begin`: committed when it resolves, rolled
   * back when it throws. A connection whose ROLLBACK fails is broken, and is closed rather than returned to the pool.
   */
  private async inTransaction<T>(begin: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken = false;
    try {
      await client.query(begin);
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /** Reads in one snapshot (a REPEATABLE READ, READ ONLY transaction): what commits meanwhile is not half seen. */
  private snapshot<T>(read: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.inTransaction('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', read);
  }

  /**
   * One transaction in which records may be appended to this chain (after reading or changing other tables first); the
   * tip moves only if it commits.
   */
  private async transaction<T>(work: (tx: ChainTransaction) => Promise<T>): Promise<T> {
    let tip: ChainTip | null = null;
    try {
      const result = await this.inTransaction('BEGIN', async (client) => {
        tip = this.tip === undefined ? await this.tipAfterDoubt(client) : this.tip;
        return work({
          client,
          tip: () => tip,
          append: async (batch, payloads) => {
            const linked = await this.link(client, tip, payloads);
            const stored = await this.runAppend(client, this.statements(batch, linked.pending), linked.pending);
            tip = linked.tip;
            return stored;
          },
        });
      });
      this.tip = tip;
      this.refBases.commit();
      return result;
    } catch (err) {
      // Rolled back (or unknown, if the connection died mid-COMMIT): the tip in memory may no longer match the
      // database, so the next append reads it back; what it wrote is no base.
      this.tip = undefined;
      this.refBases.rollback();
      throw err;
    }
  }

  /**
   * The chain's tip, read back, once an append in doubt is settled: its server process is ended if it still runs it
   * (it could otherwise commit after records linked to the tip read now), then its records are looked for. Found, they
   * are remembered as written (appendedInDoubt); throws, leaving it in doubt, when the server cannot be asked.
   */
  private async tipAfterDoubt(client: pg.PoolClient): Promise<ChainTip | null> {
    const doubt = this.inDoubt;
    if (doubt !== null) {
      if (doubt.backend !== null) await this.endBackend(doubt.backend);
      const seqs = doubt.records.map((r) => r.linked.chainSeq);
      const found = await client.query<RecordRow>('SELECT * FROM records WHERE chain = $1 AND chain_seq = ANY($2)', [
        this.chainId,
        seqs,
      ]);
      const bySeq = new Map(found.rows.map((row) => [Number(row.chain_seq), toStored(row)]));
      // Committed whole or not at all: its last record, with the hash it was linked with, tells which.
      const last = doubt.records.at(-1)!.linked;
      if (bySeq.get(last.chainSeq)?.hash === last.hash) {
        this.foundInDoubt = true;
        for (const { linked, source } of doubt.records)
          if (source) this.appendedInDoubt.set(source, bySeq.get(linked.chainSeq)!);
        for (const t of doubt.searchText) this.searchTextInDoubt.add(t);
      }
      this.inDoubt = null;
    }
    return this.readTip(client);
  }

  /**
   * Ends server process `pid` if it still runs a statement, and waits until it runs none — at most
   * {@link BACKEND_END_WAIT_MS}: a process that cannot be ended (a role without the right to) must not stop every
   * append after it. Should it commit later after all, the chain's own rule (each record continues its chain's head)
   * refuses either it or the append linked after the tip read meanwhile, and that append is tried again.
   */
  private async endBackend(pid: number): Promise<void> {
    // A connection of its own, not the pool's: the caller may hold the pool's last (a transaction, pool_size 1).
    const client = new pg.Client(this.connection);
    client.on('error', () => {}); // a dropped connection fails the next query, which the caller sees
    await client.connect();
    try {
      const running = async (): Promise<boolean> =>
        (await client.query<{ state: string | null }>('SELECT state FROM pg_stat_activity WHERE pid = $1', [pid]))
          .rows[0]?.state === 'active';
      if (!(await running())) return;
      await client.query('SELECT pg_terminate_backend($1)', [pid]).catch(() => undefined);
      for (let waited = 0; waited < BACKEND_END_WAIT_MS && (await running()); waited += 20) await sleep(20);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** This chain's last committed record, or null when the chain has none yet (then the next append opens it). */
  private async readTip(client: pg.PoolClient): Promise<ChainTip | null> {
    const res = await client.query<{ chain_seq: number; hash: string }>(
      'SELECT chain_seq, hash FROM records WHERE chain = $1 ORDER BY chain_seq DESC LIMIT 1',
      [this.chainId],
    );
    const row = res.rows[0];
    return row ? { chainSeq: row.chain_seq, hash: row.hash } : null;
  }

  private async openingData(client: pg.PoolClient): Promise<{ heads: ChainHead[]; store: string }> {
    const heads = (await client.query<ChainHeadRow>(CHAIN_HEADS)).rows.map(toChainHead);
    return { heads, store: 'postgres' };
  }

  async findGatewayKey(hash: string): Promise<StoredGatewayKey | undefined> {
    // The key's index row, and the version of the ledger's key records (see LedgerKeyCache): one statement.
    // A named statement: planned once per connection (planning its two subqueries cost more than running them).
    const res = await this.pool.query<KeyRow & { key_records: string }>({
      name: 'vigil_find_gateway_key',
      text: `SELECT k.*, ${KEY_RECORDS_VERSION} AS key_records FROM gateway_keys k WHERE k.hash = $1`,
      values: [hash],
    });
    const row = res.rows[0];
    return this.ledgerKeys.judge(row && toKey(row), row?.key_records ?? '');
  }

  async listGatewayKeys(): Promise<readonly ListedGatewayKey[]> {
    // In one snapshot: a key created meanwhile (its record and its row) is seen whole or not at all.
    return this.snapshot(async (c) =>
      listedKeys(
        await indexRecords(c, KEY_RECORDS),
        (await c.query<KeyRow>('SELECT * FROM gateway_keys')).rows.map(toKey),
      ),
    );
  }

  async exchangeRecords(exchangeId: string): Promise<readonly StoredRecord[]> {
    const res = await this.pool.query<RecordRow>('SELECT * FROM records WHERE exchange_id = $1 ORDER BY seq', [
      exchangeId,
    ]);
    return res.rows.map(toStored);
  }

  async recordsOfExchanges(exchangeIds: readonly string[]): Promise<readonly StoredRecord[]> {
    if (exchangeIds.length === 0) return [];
    const res = await this.pool.query<RecordRow>(
      'SELECT * FROM records WHERE exchange_id = ANY($1::text[]) ORDER BY seq',
      [exchangeIds],
    );
    return res.rows.map(toStored);
  }

  async sessionRecords(sessionId: string): Promise<readonly StoredRecord[]> {
    const res = await this.pool.query<RecordRow>('SELECT * FROM records WHERE session_id = $1 ORDER BY seq', [
      sessionId,
    ]);
    return res.rows.map(toStored);
  }

  async blobs(hashes: readonly string[]): Promise<ReadonlyMap<string, Buffer>> {
    const out = new Map<string, Buffer>();
    if (hashes.length === 0) return out;
    const res = await this.pool.query<{ hash: string; data: Buffer }>(
      'SELECT hash, data FROM blobs WHERE hash = ANY($1::text[])',
      [[...new Set(hashes)]],
    );
    for (const row of res.rows) out.set(row.hash, row.data);
    return out;
  }

  async listSessions(filter: SessionFilter = {}): Promise<Page<SessionListItem>> {
    const limit = pageSize(filter.limit);
    const cursor = filter.cursor !== undefined ? decodeCursor(filter.cursor) : undefined;
    const res = await this.pool.query<SessionRow & ListNameRow>(
      aggregate((d) => sessionListStatement(d, cursor, limit), filter),
    );
    return toSessionListPage(res.rows, limit);
  }

  async listExchanges(sessionId: string): Promise<readonly ExchangeSummary[]> {
    const res = await this.pool.query<ExchangeRow>(
      `SELECT e.*, r.ended_at, r.status, r.outcome, r.input_tokens, r.output_tokens, r.model AS result_model, r.stop_reason
       FROM exchanges e LEFT JOIN exchange_results r ON r.exchange_id = e.id
       WHERE e.session_id = $1 ORDER BY e.started_at, e.id COLLATE "C"`,
      [sessionId],
    );
    return res.rows.map(toSummary);
  }

  async listExchangesFiltered(filter: ExchangeListFilter = {}): Promise<Page<ExchangeListItem>> {
    const { values: params, param } = parameters();
    const where = [...exchangeConditions(filter, param), ...beforeCursor(filter.cursor, param, filter.oldestFirst)];
    const limit = pageSize(filter.limit);
    const order = filter.oldestFirst ? 'ASC' : 'DESC';
    const res = await this.pool.query<
      ExchangeRow & { caller_issuer: string | null; groups: string[]; masking: Record<string, number> }
    >(
      `SELECT e.*, r.ended_at, r.status, r.outcome, r.input_tokens, r.output_tokens, r.model AS result_model, r.stop_reason,
              c.issuer AS caller_issuer,
              ARRAY(SELECT g.group_name FROM exchange_groups g WHERE g.exchange_id = e.id ORDER BY g.group_name COLLATE "C") AS groups,
              (SELECT coalesce(json_object_agg(m.type, m.count), '{}'::json) FROM exchange_masking m WHERE m.exchange_id = e.id) AS masking
       FROM exchanges e
       LEFT JOIN exchange_results r ON r.exchange_id = e.id
       LEFT JOIN exchange_callers c ON c.exchange_id = e.id
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY e.started_at ${order}, e.id COLLATE "C" ${order} LIMIT ${param(limit + 1)}`,
      params,
    );
    return pageOf(
      res.rows,
      limit,
      (r): ExchangeListItem => ({
        ...toSummary(r),
        callerIssuer: r.caller_issuer,
        callerGroups: r.groups,
        masking: r.masking,
      }),
      (i) => [i.startedAt, i.id],
    );
  }

  async sessionTotals(
    sessionId: string,
    request: SessionTotalsRequest = {},
    pricing?: Pricing,
  ): Promise<SessionTotals | undefined> {
    const filter = { ...request, session: sessionId };
    const totals = await this.pool.query<TotalsRow>(aggregate((d) => totalsStatement(d, pricing), filter));
    const row = totals.rows[0];
    if (!row || row.n === 0) return undefined;
    const names = await this.pool.query<NameRow>(aggregate(namesStatement, filter));
    return toSessionTotals(sessionId, row, names.rows, pricing);
  }

  async usage(request: UsageRequest, pricing?: Pricing): Promise<UsageReport> {
    const rows = usageRows(request);
    const { text, values } = aggregate((d) => usageStatement(d, request, rows, pricing), request);
    return toUsageReport(request.by, rows, (await this.pool.query<UsageSqlRow>(text, values)).rows, pricing);
  }

  async search(query: string, options: SearchOptions = {}): Promise<Page<SearchHit>> {
    const terms = parseSearchQuery(query);
    if (terms.length === 0) return { items: [], nextCursor: null };
    const { values: params, param } = parameters();
    const q = tsQuery(terms, 'simple', param);
    const where = [...exchangeConditions(options.filter ?? {}, param), ...beforeCursor(options.cursor, param)];
    const limit = pageSize(options.limit);
    // The headline is computed for the page's rows only (the outer query), not for every match. The query is written
    // out where it is used, not taken from a CTE: from a CTE the planner could not see the words, guessed every
    // search matched 0.5% of the exchanges, and read and sorted every match of a word nearly all of them hold (0.3 s
    // over 200,000 exchanges); seeing them, it walks the exchanges newest first for such a word (5 ms) and still
    // reads a rare word's few matches through the full-text index.
    const res = await this.pool.query<SearchHitRow>(
      `SELECT hits.id, hits.session_id, hits.started_at, hits.caller_subject,
              ts_headline('simple', hits.text, (${q}),
                'StartSel=«, StopSel=», MaxWords=24, MinWords=8, ShortWord=0, MaxFragments=2, FragmentDelimiter=" … "') AS snippet
       FROM (
         SELECT e.id, e.session_id, e.started_at, e.caller_subject, t.text
         FROM exchange_text t
         JOIN exchanges e ON e.id = t.exchange_id
         LEFT JOIN exchange_results r ON r.exchange_id = e.id
         WHERE t.tsv @@ (${q}) ${where.length ? `AND ${where.join(' AND ')}` : ''}
         ORDER BY e.started_at DESC, e.id COLLATE "C" DESC LIMIT ${param(limit + 1)}
       ) hits
       ORDER BY hits.started_at DESC, hits.id COLLATE "C" DESC`,
      params,
    );
    return pageOf(res.rows, limit, toSearchHit, (i) => [i.startedAt, i.exchangeId]);
  }

  async listAccessLog(page: PageRequest = {}): Promise<Page<AccessLogEntry>> {
    const limit = pageSize(page.limit);
    const before = page.cursor !== undefined ? decodeCursor(page.cursor).lastAt : undefined;
    const res = await this.pool.query<AccessLogRow>(
      `SELECT seq, at, data FROM records WHERE kind = 'recording.read' ${before !== undefined ? 'AND seq < $2::bigint' : ''}
       ORDER BY seq DESC LIMIT $1`,
      before !== undefined ? [limit + 1, before] : [limit + 1],
    );
    return pageOf(res.rows, limit, toAccessLogEntry, (i) => [i.seq, 'seq']);
  }

  async recordsAt(positions: readonly ChainPosition[]): Promise<readonly StoredRecord[]> {
    if (positions.length === 0) return [];
    const res = await this.pool.query<RecordRow>(
      `SELECT r.* FROM records r JOIN unnest($1::text[], $2::bigint[]) AS p(chain, chain_seq)
         ON r.chain = p.chain AND r.chain_seq = p.chain_seq`,
      [positions.map((p) => p.chain), positions.map((p) => p.chainSeq)],
    );
    return res.rows.map(toStored);
  }

  async unfinishedExchanges(): Promise<readonly string[]> {
    const res = await this.pool.query<{ id: string }>(
      `SELECT e.id FROM exchanges e LEFT JOIN exchange_results r ON r.exchange_id = e.id
       WHERE r.exchange_id IS NULL ORDER BY e.started_at, e.id COLLATE "C"`,
    );
    return res.rows.map((r) => r.id);
  }

  async chainHeads(): Promise<ReadonlyArray<{ chain: string; chainSeq: number }>> {
    return (await this.pool.query<ChainHeadRow>(CHAIN_HEADS)).rows.map(toChainHead);
  }

  async undigestedTails(): Promise<readonly UndigestedTail[]> {
    return toUndigestedTails((await this.pool.query<UndigestedTailRow>(UNDIGESTED_TAILS)).rows);
  }

  async chainRecords(chain: string, afterChainSeq: number, limit: number): Promise<readonly StoredRecord[]> {
    const res = await this.pool.query<RecordRow>(
      'SELECT * FROM records WHERE chain = $1 AND chain_seq > $2 ORDER BY chain_seq LIMIT $3',
      [chain, afterChainSeq, limit],
    );
    return res.rows.map(toStored);
  }

  async recordsOfKinds(
    kinds: readonly string[],
    since: number,
    limit: number,
    afterSeq = 0,
  ): Promise<readonly StoredRecord[]> {
    const res = await this.pool.query<RecordRow>(
      'SELECT * FROM records WHERE kind = ANY($1::text[]) AND at >= $2 AND seq > $4 ORDER BY seq LIMIT $3',
      [kinds, since, limit, afterSeq],
    );
    return res.rows.map(toStored);
  }

  async sinkCursors(sink: string): Promise<ReadonlyMap<string, number>> {
    const res = await this.pool.query<{ chain: string; chain_seq: number }>(
      'SELECT chain, chain_seq FROM sink_cursors WHERE sink = $1',
      [sink],
    );
    return new Map(res.rows.map((r) => [r.chain, Number(r.chain_seq)]));
  }

  async setSinkCursor(sink: string, chain: string, chainSeq: number): Promise<void> {
    await this.pool.query(
      `INSERT INTO sink_cursors (sink, chain, chain_seq) VALUES ($1, $2, $3)
       ON CONFLICT (sink, chain) DO UPDATE SET chain_seq = excluded.chain_seq
         WHERE sink_cursors.chain_seq < excluded.chain_seq`,
      [sink, chain, chainSeq],
    );
  }

  onAppended(kindPrefix: string, listener: () => void): () => void {
    const entry = { prefix: kindPrefix, listener };
    this.appendListeners.add(entry);
    return () => this.appendListeners.delete(entry);
  }

  onLeadershipLost(listener: () => void): () => void {
    this.leadershipListeners.add(listener);
    return () => this.leadershipListeners.delete(listener);
  }

  async tryLeadership(name: string): Promise<boolean> {
    if (await this.holdsLeadership(name)) return true;
    const locks = this.locks;
    if (!locks) return false;
    try {
      const res = await locks.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [
        LEADER_LOCK_CLASS,
        name,
      ]);
      if (res.rows[0]?.ok && this.locks === locks) this.leaderships.add(name);
    } catch (err) {
      this.locksLost(locks, err as Error);
    }
    return this.leaderships.has(name);
  }

  async holdsLeadership(name: string): Promise<boolean> {
    const locks = this.locks;
    if (!locks || !this.leaderships.has(name)) return false;
    if (await this.holdsLock(locks, name)) return true;
    this.leaderships.delete(name);
    return false;
  }

  /** A chain's writer holds an advisory lock on it while it runs; if we can take the lock, the writer is gone. */
  async chainIsLive(chain: string): Promise<boolean | undefined> {
    if (chain === this.chainId) return true;
    // The lock connection is being made again: which chains' writers run cannot be told until it is back.
    if (!this.locks) return undefined;
    const res = await this.locks.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [
      CHAIN_LOCK_CLASS,
      chain,
    ]);
    if (!res.rows[0]?.ok) return true;
    await this.locks.query('SELECT pg_advisory_unlock($1, hashtext($2))', [CHAIN_LOCK_CLASS, chain]);
    return false;
  }

  appendAtTip(
    build: (tip: ChainTip | null, heads: readonly ChainHead[]) => NewRecord | undefined,
  ): Promise<StoredRecord | undefined> {
    return this.enqueue(() =>
      this.transaction(async (tx) => {
        const r = build(tx.tip(), (await this.openingData(tx.client)).heads);
        if (!r) return undefined;
        return (await tx.append({ records: [r] }, [{ record: r, data: serialise(r) }])).at(-1);
      }),
    );
  }

  appendIfNew(
    kinds: readonly string[],
    since: number,
    build: (existing: readonly StoredRecord[]) => readonly NewRecord[],
  ): Promise<readonly StoredRecord[]> {
    return this.enqueue(() =>
      this.transaction(async (tx) => {
        // Held until this transaction ends: another process's call for these kinds waits here, and its read below
        // (a statement begun after the lock was granted: READ COMMITTED) sees what this one committed.
        await tx.client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [
          APPEND_IF_NEW_LOCK_CLASS,
          [...new Set(kinds)].sort().join(' '),
        ]);
        const existing = await tx.client.query<RecordRow>(
          'SELECT * FROM records WHERE kind = ANY($1::text[]) AND at >= $2 ORDER BY seq',
          [kinds, since],
        );
        const records = build(existing.rows.map(toStored));
        if (records.length === 0) return [];
        return tx.append(
          { records },
          records.map((r) => ({ record: r, data: serialise(r) })),
        );
      }),
    );
  }

  async listHolds(options: { activeOnly?: boolean } = {}): Promise<readonly ListedHold[]> {
    const holds = await this.snapshot(async (c) =>
      listedHolds(
        await indexRecords(c, HOLD_RECORDS),
        (await c.query<HoldRow>('SELECT * FROM holds')).rows.map(toHold),
      ),
    );
    return options.activeOnly ? holds.filter((h) => h.releasedAt === null) : holds;
  }

  async retentionCandidates(query: RetentionQuery): Promise<readonly PurgeCandidate[]> {
    // In one statement (the second step below), the planner cannot tell how many due exchanges the tests of what a
    // purge keeps let through. It guesses few, so it tests every due exchange and sorts them all for the first
    // `limit`: 0.7 s for 20k exchanges with a SIEM sink caught up (a minute before the tables were first analysed),
    // where the first `limit` off the ended-at index would do. So first the first due exchanges alone, in order off
    // the index, then tested; only if too many of them are kept does the one statement take the rest, as it did.
    return this.snapshot(async (c) => {
      const entries = Object.entries(query.cutoffs);
      const other = query.otherCutoff ?? -1;
      const maxCutoff = Math.max(other, ...entries.map(([, cut]) => cut));
      // Held by the ledger's hold records too, as a purge checks them: a hold released in the index alone still holds.
      const active = activeLedgerHolds(await indexRecords(c, HOLD_RECORDS));
      // Chain heads stay (AT_HEAD): their few exchanges found once, not the head of a chain looked up per record.
      const heads = (await c.query<{ exchange_id: string }>(CHAIN_HEAD_EXCHANGES)).rows.map((r) => r.exchange_id);
      /** Exchanges `e` (joined with `r`, their results) due at the cutoffs, after `from`. */
      const due = (param: Param, from: RetentionQuery['after']): string => {
        const cutoff = entries.length
          ? `CASE e.connection ${entries.map(([name, cut]) => `WHEN ${param(name)} THEN ${param(cut)}::bigint`).join(' ')} ELSE ${param(other)}::bigint END`
          : `${param(other)}::bigint`;
        // `>=` on its own, so a range scan starts there (an OR of `>` and `=` made a bitmap scan of all the rest).
        const after = from
          ? `AND r.ended_at >= ${param(from.endedAt)}::bigint
             AND (r.ended_at > ${param(from.endedAt)}::bigint OR e.id COLLATE "C" > ${param(from.id)})`
          : '';
        return `r.ended_at < ${param(maxCutoff)}::bigint AND r.ended_at < ${cutoff} ${after}`;
      };
      /** Exchange `e` (id, session_id, caller_subject) is one a purge may take, with `foldWith` (holdsFold). */
      const purgeable = (param: Param, foldWith: (param: Param) => FoldSql): string => {
        const fold = foldWith(param);
        const ledgerHeld = active.length
          ? `AND NOT EXISTS (${HELD_BY(
              `unnest(${param(active.map((h) => h.session))}::text[], ${param(active.map((h) => h.caller))}::text[]) AS h(session_id, caller_subject)`,
              fold,
            )})`
          : '';
        const undelivered = query.deliveredTo?.length
          ? `AND NOT EXISTS (${UNDELIVERED(`unnest(${param([...query.deliveredTo])}::text[]) s(name)`)})`
          : '';
        return `NOT (e.id = ANY(${param(heads)}::text[])) AND NOT EXISTS (${HELD(fold)}) ${ledgerHeld} ${undelivered}`;
      };
      const records = '(SELECT count(*) FROM records x WHERE x.exchange_id = e.id) AS records';

      // 1. The first due exchanges (a range scan of exchange_results_ended that stops there), then those of them a
      //    purge may take.
      const chunk = Math.max(2 * query.limit, CANDIDATE_CHUNK);
      const { values: firstParams, param: firstParam } = parameters();
      const first = (
        await c.query<CandidateRow>(
          `SELECT e.id, e.session_id, e.connection, e.caller_subject, e.started_at, r.ended_at, 0 AS records
           FROM exchange_results r JOIN exchanges e ON e.id = r.exchange_id
           WHERE ${due(firstParam, query.after)}
           ORDER BY r.ended_at, e.id COLLATE "C" LIMIT ${firstParam(chunk)}`,
          firstParams,
        )
      ).rows;
      if (first.length === 0) return [];
      const foldWith = await holdsFold(c, active);
      const { values: params, param } = parameters();
      const taken = await c.query<{ id: string; records: number }>(
        `SELECT e.id, ${records}
         FROM unnest(${param(first.map((r) => r.id))}::text[], ${param(first.map((r) => r.session_id))}::text[],
           ${param(first.map((r) => r.caller_subject))}::text[]) WITH ORDINALITY AS e(id, session_id, caller_subject, n)
         WHERE ${purgeable(param, foldWith)}
         ORDER BY e.n LIMIT ${param(query.limit)}`,
        params,
      );
      const byId = new Map(first.map((r) => [r.id, r]));
      const found = taken.rows.map((t) => toCandidate({ ...byId.get(t.id)!, records: t.records }));
      if (found.length >= query.limit || first.length < chunk) return found;

      // 2. Most of those were kept (held, not yet at a SIEM sink): the rest in one statement, where the planner's guess
      //    is right.
      const last = first.at(-1)!;
      const { values: restParams, param: restParam } = parameters();
      const rest = await c.query<CandidateRow>(
        `SELECT e.id, e.session_id, e.connection, e.caller_subject, e.started_at, r.ended_at, ${records}
         FROM exchange_results r JOIN exchanges e ON e.id = r.exchange_id
         WHERE ${due(restParam, { endedAt: last.ended_at, id: last.id })} AND ${purgeable(restParam, foldWith)}
         ORDER BY r.ended_at, e.id COLLATE "C" LIMIT ${restParam(query.limit - found.length)}`,
        restParams,
      );
      return [...found, ...rest.rows.map(toCandidate)];
    });
  }

  async ledgerHeldExchanges(ids: readonly string[]): Promise<ReadonlySet<string>> {
    return this.snapshot((c) => ledgerHeld(c, [...new Set(ids)]));
  }

  purgeExchanges(
    ids: readonly string[],
    seal: (removal: PurgeRemoval) => NewRecord,
  ): Promise<{ removal: PurgeRemoval; record: StoredRecord } | undefined> {
    return this.enqueue(() =>
      this.transaction(async (tx) => {
        const c = tx.client;
        // Holds placed and blob references appended while the purge runs wait for it: otherwise a hold committed
        // a moment after the purge looked, or a new reference to a blob it is removing, could be missed.
        await c.query('LOCK TABLE holds, blob_refs IN SHARE MODE');
        const { values: params, param } = parameters([...new Set(ids)]);
        const fold = (await holdsFold(c, []))(param);
        const chosen = await c.query<DueExchange>(
          `SELECT e.id, e.started_at, r.ended_at FROM exchanges e JOIN exchange_results r ON r.exchange_id = e.id
           WHERE e.id = ANY($1::text[]) AND NOT EXISTS (${HELD(fold)}) AND NOT EXISTS (${AT_HEAD})`,
          params,
        );
        // The holds index chose these; the ledger's hold records have the last word, so a hold released in the index
        // alone (without a hold.released record) still keeps its exchanges. Hold records cannot commit meanwhile:
        // their index rows wait for the lock above.
        const held = await ledgerHeld(
          c,
          chosen.rows.map((d) => d.id),
        );
        const dueRows = chosen.rows.filter((d) => !held.has(d.id));
        if (dueRows.length === 0) return undefined;
        // The append-only triggers let deletions through in this transaction only (see migration 5).
        await c.query(`SET LOCAL vigil.purge = 'on'`);
        const dueIds = dueRows.map((d) => d.id);
        const removed = await c.query<RecordRow>(
          'DELETE FROM records WHERE exchange_id = ANY($1::text[]) RETURNING *',
          [dueIds],
        );
        const records = removed.rows.map(toStored);
        // A live record built on one removed here gets rows for all of its references first (ref-bases.ts). New ones
        // cannot commit meanwhile: their statements write blob_refs, which waits for the lock above.
        const removedSeqs = records.map((r) => r.seq);
        const dependants = await c.query<{ seq: number; kind: string; data: string }>(
          `SELECT r.seq, r.kind, r.data FROM blob_ref_bases b JOIN records r ON r.seq = b.record_seq
           WHERE b.base_seq = ANY($1::int8[])`,
          [removedSeqs],
        );
        for (const part of chunks(dependantRefs(dependants.rows), ROWS_PER_INSERT)) {
          await c.query(
            `INSERT INTO blob_refs (blob_hash, record_seq)
             SELECT * FROM unnest($1::text[], $2::int8[]) ON CONFLICT DO NOTHING`,
            [part.map(([h]) => h), part.map(([, seq]) => seq)],
          );
        }
        await c.query('DELETE FROM blob_ref_bases WHERE base_seq = ANY($1::int8[]) OR record_seq = ANY($1::int8[])', [
          removedSeqs,
        ]);
        const refs: Array<readonly [string, number]> = [];
        for (const r of records) for (const h of indexedBlobRefs(r.data)) refs.push([h, r.seq]);
        for (const part of chunks(refs, ROWS_PER_INSERT)) {
          await c.query(
            `DELETE FROM blob_refs USING (VALUES ${valuesList(part.length, ['', '::bigint'])}) AS v(h, s)
             WHERE blob_refs.blob_hash = v.h AND blob_refs.record_seq = v.s`,
            part.flat(),
          );
        }
        for (const table of [
          'exchange_groups',
          'exchange_masking',
          'exchange_callers',
          'exchange_results',
          'exchange_text',
        ]) {
          await c.query(`DELETE FROM ${table} WHERE exchange_id = ANY($1::text[])`, [dueIds]);
        }
        await c.query('DELETE FROM exchanges WHERE id = ANY($1::text[])', [dueIds]);
        const blobs = await c.query(
          `DELETE FROM blobs WHERE hash = ANY($1::text[]) AND NOT EXISTS (SELECT 1 FROM blob_refs r WHERE r.blob_hash = blobs.hash)`,
          [[...new Set(refs.map(([h]) => h))]],
        );
        await c.query(`SET LOCAL vigil.purge = 'off'`);
        const removal = purgeRemoval(dueRows, records, blobs.rowCount ?? 0, (await this.openingData(c)).heads);
        const sealed = seal(removal);
        const record = (await tx.append({ records: [sealed] }, [{ record: sealed, data: serialise(sealed) }])).at(-1)!;
        return { removal, record };
      }),
    );
  }

  async finishPurges(): Promise<{ walKept?: true }> {
    return {};
  }

  /**
   * Verify reads one snapshot of the store: a connection of its own in a REPEATABLE READ, READ ONLY transaction for
   * the whole walk. Paged through the pool (each page its own snapshot), a purge or a new chain committing between two
   * pages was reported as tampering (a gap no purge record covered, a head some chain committed to but the walk had
   * passed).
   */
  async verify(options: VerifyOptions = {}): Promise<VerifyReport> {
    // Not one of the pool's: a walk holds its connection for minutes on a large store, and a few verifies at once
    // would leave nothing for appends and key lookups.
    const client = new pg.Client(this.connection);
    client.on('error', () => {}); // a dropped connection fails the walk's next query, which reports it
    await client.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const report = await verifyLedger(
        {
          // Keyset pages over the (chain, chain_seq) unique index: memory stays at one page however large the ledger.
          async *records() {
            let after: { chain: string; chainSeq: number } | null = null;
            for (;;) {
              const res: pg.QueryResult<RecordRow> = after
                ? await client.query<RecordRow>(
                    'SELECT * FROM records WHERE (chain, chain_seq) > ($1, $2::bigint) ORDER BY chain, chain_seq LIMIT $3',
                    [after.chain, after.chainSeq, VERIFY_PAGE],
                  )
                : await client.query<RecordRow>('SELECT * FROM records ORDER BY chain, chain_seq LIMIT $1', [
                    VERIFY_PAGE,
                  ]);
              for (const row of res.rows) yield toStored(row);
              const last = res.rows.at(-1);
              if (!last || res.rows.length < VERIFY_PAGE) return;
              after = { chain: last.chain, chainSeq: last.chain_seq };
            }
          },
          blob: async (hash) => {
            const res = await client.query<{ data: Buffer }>('SELECT data FROM blobs WHERE hash = $1', [hash]);
            return res.rows[0]?.data;
          },
          indexes: async () => ({
            keys: (await client.query<KeyRow>('SELECT * FROM gateway_keys')).rows.map(toKey),
            holds: (await client.query<HoldRow>('SELECT * FROM holds')).rows.map(toHold),
          }),
        },
        options,
      );
      await client.query('COMMIT');
      return report;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      await client.end().catch(() => {});
    }
  }

  /** Waits for appends already called to settle, then closes the pool. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort();
    await this.queue;
    await this.reconnecting;
    // Say so at once rather than when the server notices the connection is gone.
    await this.locks?.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
    this.locks?.release();
    this.locks = null;
    await this.appendPool.end();
    await this.pool.end();
  }
}

/** Advisory lock classes (the first key of the two-key form): one per kind of lock Vigil takes. */
/**
 * NOTIFY channel for appends others may be waiting for (approval decisions); payload: the record kind. One per
 * schema: a channel is the whole database's, and stores in other schemas (other Vigil deployments, tests running side
 * by side) must not wake this one's waiters with their records. A hash keeps it a short plain identifier.
 */
function notifyChannel(schema: string): string {
  return `vigil_ledger_${createHash('sha256').update(schema).digest('hex').slice(0, 16)}`;
}
/** Kinds worth a NOTIFY: someone may be holding a call for them. Exchange records never are (the hot path). */
const NOTIFIED_KINDS = /^approval\./;
const CHAIN_LOCK_CLASS = 0x56474c31; // 'VGL1': "the writer of this chain is alive"
const LEADER_LOCK_CLASS = 0x56474c32; // 'VGL2': "this process does that singleton job"
const APPEND_IF_NEW_LOCK_CLASS = 0x56474c33; // 'VGL3': "this process appends records of these kinds if new"
/** A lock connection that does not answer a check within this long is taken for lost. */
const LOCK_CHECK_TIMEOUT_MS = 5_000;
/** How long an append waits for the server process of an append in doubt to end (see tipAfterDoubt). */
const BACKEND_END_WAIT_MS = 5_000;

interface Payload {
  readonly record: NewRecord;
  readonly data: string;
}

/** What a transaction on this chain can do: query, and append records after the tip. */
interface ChainTransaction {
  readonly client: pg.PoolClient;
  tip(): ChainTip | null;
  append(batch: WriteBatch, payloads: readonly Payload[]): Promise<StoredRecord[]>;
}

/** The record's payload as the JSON text that gets hashed and stored; throws for data JSON cannot represent. */
function serialise(r: NewRecord): string {
  const text = r.json ?? (JSON.stringify(r.data) as string | undefined);
  if (text === undefined) throw new TypeError(`record ${r.kind} has no JSON representation (data is ${typeof r.data})`);
  return text;
}
