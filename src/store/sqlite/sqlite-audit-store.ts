/**
 * The embedded store: one SQLite file in WAL mode, written synchronously by better-sqlite3 so that a record is durable
 * when `append` returns, with no thread hop on the hot path. Several processes may share the file (the gateway and a
 * CLI command): each writes its own chain, and writes take SQLite's write lock with a busy timeout.
 */
import { randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import type {
  AccessLogEntry,
  AuditStore,
  ChainPosition,
  ChainTip,
  HoldAddedData,
  HoldReleasedData,
  NewRecord,
  PurgeCandidate,
  PurgeRemoval,
  RetentionQuery,
  VerifyOptions,
  ExchangeFilter,
  ExchangeListFilter,
  ExchangeListItem,
  ExchangeSummary,
  KeyCreatedData,
  KeyRevokedData,
  ListedGatewayKey,
  ListedHold,
  Page,
  PageRequest,
  SearchHit,
  SearchOptions,
  SessionFilter,
  SessionListItem,
  SessionTotals,
  SessionTotalsRequest,
  StoredGatewayKey,
  StoredRecord,
  UndigestedTail,
  VerifyReport,
  WriteBatch,
  UsageReport,
  UsageRequest,
} from '../audit-store.js';
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
import {
  callerIndexRow,
  decodeCursor,
  pageOf,
  exchangeIndexRow,
  maskingIndexRows,
  pageSize,
  resultIndexRow,
} from '../exchange-index.js';
import { fts5Match, indexableText, parseSearchQuery } from '../search-query.js';
import { foldCase } from '../case-fold.js';
import { indexedBlobRefs, newRecordBlobRefs } from '../blob-refs.js';
import { dependantRefs, RefBases } from '../ref-bases.js';
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
  CHAIN_HEADS,
  HELD,
  HELD_BY,
  type FoldSql,
  UNDELIVERED,
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
import { GatewayLock } from './gateway-lock.js';
import { RESTART_WINDOW_MAX_MS, WalCheckpointer } from './wal-checkpointer.js';
import { EXCHANGE_KINDS, NOT_EXCHANGE_KIND_SQL, SQLITE_MIGRATIONS } from './sqlite-migrations.js';

export interface SqliteStoreOptions {
  readonly file: string;
  readonly synchronous?: 'normal' | 'full';
  readonly readonly?: boolean;
  /**
   * Checkpoint the WAL from a worker thread, and start it over there (see WalCheckpointer), instead of in the commit
   * that fills it: for the gateway's long-lived writer; short-lived CLI processes leave it to SQLite. An object tunes
   * the thread (tests): how often it checkpoints, and past how many frames it starts the log over.
   */
  readonly backgroundCheckpoints?: boolean | { readonly intervalMs?: number; readonly restartFrames?: number };
  /** Told when a background checkpoint fails (the store goes on; SQLite's own checkpoint is the backstop). */
  readonly onCheckpointError?: (message: string) => void;
  /** How long a purge keeps trying to empty the WAL while other connections are in the way. Default 10 s. */
  readonly purgeWalWaitMs?: number;
  /**
   * Hold the store's gateway lock (see gateway-lock.ts) while open: for `vigil serve`, one per store. CLI commands,
   * which read and append beside a running gateway, do not take it. @throws StoreInUseError when another holds it.
   */
  readonly gatewayLock?: boolean;
}

/** A store an older Vigil made, opened to read only: it cannot be upgraded by a reader. */
export class StoreOutdatedError extends Error {
  readonly code = 'VIGIL_STORE_OUTDATED';

  constructor(
    readonly file: string,
    readonly version: number,
    readonly expected: number,
  ) {
    super(`the store ${file} is at schema version ${version}; this Vigil reads version ${expected}`);
  }
}

/**
 * The filters whose values live in a table of their own (an exchange's groups, its caller's issuer, its masking
 * types) or in its result (why it stopped, how it ended), and that table's rows for a value, in the order of an index
 * led by it.
 */
const OWN_TABLE_FILTERS = {
  group: { table: 'exchange_groups', column: 'group_name' },
  callerIssuer: { table: 'exchange_callers', column: 'issuer' },
  masking: { table: 'exchange_masking', column: 'type' },
  stopReason: { table: 'exchange_results', column: 'stop_reason' },
  outcome: { table: 'exchange_results', column: 'outcome' },
} as const;
type OwnTableFilter = keyof typeof OWN_TABLE_FILTERS;

/**
 * Matches past which such a filter is tested on each exchange of the walk newest first, rather than read from its
 * own index and sorted; and past which a search walks the exchanges newest first rather than order every match (see
 * matchesNewestFirst). SQLite has no statistics to choose by (Vigil does not ANALYZE): the store counts, up to this.
 */
const FEW_MATCHES = 2000;

/** Whether a filter of its own table matches at most {@link FEW_MATCHES} exchanges (see `SqliteAuditStore.fewMatch`). */
type FewMatches = (filter: OwnTableFilter, value: string) => boolean;

/**
 * SQL conditions for an exchange filter over `exchanges e LEFT JOIN exchange_results r`, their values appended to
 * `params` in order. A group, issuer, masking type, stop reason or outcome that few exchanges have (`few`) is read
 * from its own index:
 * tested on each exchange instead, a filter that matches almost nothing read the whole store to fill a page (~0.5 s
 * per million exchanges); one that matches many is tested on each exchange, which finds a page after a few.
 */
function exchangeConditions(f: ExchangeFilter, params: unknown[], few?: FewMatches): string[] {
  const where: string[] = [];
  const add = (sql: string, ...values: unknown[]): void => {
    where.push(sql);
    params.push(...values);
  };
  const ownTable = (filter: OwnTableFilter, value: string, alias: string): void => {
    const { table, column } = OWN_TABLE_FILTERS[filter];
    if (few?.(filter, value)) add(`e.id IN (SELECT exchange_id FROM ${table} WHERE ${column} = ?)`, value);
    else
      add(
        `EXISTS (SELECT 1 FROM ${table} ${alias} WHERE ${alias}.${column} = ? AND ${alias}.exchange_id = e.id)`,
        value,
      );
  };
  if (f.session !== undefined) add('e.session_id = ?', f.session);
  if (f.connection !== undefined) add('e.connection = ?', f.connection);
  if (f.caller !== undefined) add('e.caller_subject = ?', f.caller);
  if (f.callerIssuer !== undefined) ownTable('callerIssuer', f.callerIssuer, 'c');
  if (f.group !== undefined) ownTable('group', f.group, 'g');
  if (f.model !== undefined) add('(e.model = ? OR r.model = ?)', f.model, f.model);
  if (f.outcome === 'in_progress') add('r.exchange_id IS NULL');
  else if (f.outcome !== undefined) ownTable('outcome', f.outcome, 'o');
  if (f.masking !== undefined) ownTable('masking', f.masking, 'm');
  if (f.stopReason !== undefined) ownTable('stopReason', f.stopReason, 's');
  if (f.since !== undefined) add('e.started_at >= ?', f.since);
  if (f.until !== undefined) add('e.started_at < ?', f.until);
  return where;
}

/** A statement of session-totals.ts or session-list.ts in SQLite's dialect, with `filter`'s conditions. */
export function sqliteAggregate(
  build: (d: AggregateDialect) => string,
  filter: ExchangeFilter,
  few?: FewMatches,
): { sql: string; params: unknown[] } {
  const params: unknown[] = [];
  const sql = build({
    where: () => exchangeConditions(filter, params, few),
    param: (value) => (params.push(value), '?'),
    bytewise: '',
    int: '',
    bySession: ' INDEXED BY exchanges_session',
    unflattened: ' LIMIT -1',
    byTime: ' INDEXED BY exchanges_started',
    dayOf: (ms) => `strftime('%Y-%m-%d', ${ms} / 1000, 'unixepoch')`,
  });
  return { sql, params };
}

/**
 * `(e.started_at, e.id)` strictly before the cursor's position, for newest-first keyset pages (after: oldest-first).
 * The bound on started_at alone is implied by the other, and is there for the planner: the (session_id, started_at)
 * index is then searched from the cursor on, where the OR alone made SQLite read the session's entries from its start.
 */
function beforeCursor(cursor: string | undefined, params: unknown[], after = false): string[] {
  return cursor !== undefined ? beforePosition(decodeCursor(cursor), params, after) : [];
}

/** {@link beforeCursor} at a position already decoded (a search's walk, step by step). */
function beforePosition(c: { lastAt: number; id: string }, params: unknown[], after = false): string[] {
  params.push(c.lastAt, c.lastAt, c.lastAt, c.id);
  const cmp = after ? '>' : '<';
  return [`e.started_at ${cmp}= ?`, `(e.started_at ${cmp} ? OR (e.started_at = ? AND e.id ${cmp} ?))`];
}

/** Exchanges a search for a common word reads per step of its walk newest first (see matchesNewestFirst). */
const SEARCH_WALK_STEP = 256;
/** A search's match: its exchange's summary and the full-text row that matched (for its snippet). */
type SearchMatchRow = Omit<SearchHitRow, 'snippet'> & { text_rowid: number };

/** Search text entries that are indexed at once rather than after {@link TEXT_LAG_MS}. */
const TEXT_BATCH = 256;
/** The longest a search text entry waits for the full-text index (a search in this process never waits). */
const TEXT_LAG_MS = 1_000;
/** How long one attempt may block this thread waiting for readers. */
const WAL_TRUNCATE_ATTEMPT_MS = 50;
/** Between the checkpointer thread's attempts: its window holds the gateway's appends. */
const WAL_TRUNCATE_PAUSE_MS = 200;
/** How long a write waits for another connection's write lock before it fails (SQLITE_BUSY). */
const BUSY_WAIT_MS = 10_000;
/** The gateway's writer: the most SQLite's busy handler may block its event loop at a time. */
const GATEWAY_BUSY_TIMEOUT_MS = 20;
/** How long verify's reader waits to start its snapshot (SQLite blocks this thread meanwhile; it is rare and short). */
const SNAPSHOT_BUSY_TIMEOUT_MS = 1_000;
/** WAL size, in frames (4 KiB pages), past which the background checkpointer starts the log over: ~32 MB. */
const WAL_RESTART_FRAMES = 8192;

/** The SQL function `foldCase` is registered as on each connection. */
const FOLD_FUNCTION = 'vigil_fold_case';
/** A text expression's case folded in SQL (see case-fold.ts). */
const fold: FoldSql = (text) => `${FOLD_FUNCTION}(${text})`;

export class SqliteAuditStore implements AuditStore {
  readonly kind = 'sqlite' as const;
  readonly writesOnCallingThread = true;
  readonly chainId = newChainId();
  readonly file: string;
  private readonly db: Database.Database;
  private head: ChainTip | null = null;
  private readonly stmts;
  /** Whether a group, issuer or masking type has few exchanges (see exchangeConditions). */
  private readonly fewMatch: FewMatches = (filter, value) =>
    (this.stmts.ownTableCounts[filter].get(value) as number) <= FEW_MATCHES;
  private readonly appendTx: Database.Transaction<(batch: WriteBatch) => StoredRecord[]>;
  private readonly readonly: boolean;
  /** The last request record of each conversation, as the base of its next one (ref-bases.ts). */
  private readonly refBases = new RefBases();
  /** Search text entries written since the last indexing (by this process). */
  private pendingText = 0;
  private textTimer: NodeJS.Timeout | null = null;
  private textImmediate: NodeJS.Immediate | null = null;
  /** Indexing failed; it is tried again on a timer. */
  private textRetrying = false;
  private checkpointer: WalCheckpointer | null = null;
  /** A truncation asked of the checkpointer and not answered yet (its window may wait for a verify to end). */
  private pendingTruncation: Promise<boolean> | null = null;
  private readonly purgeWalWaitMs: number;
  /** What the ledger says about gateway keys, for findGatewayKey. */
  private readonly ledgerKeys = new LedgerKeyCache(async () => this.indexRecords('keyRecords'));
  /** Verifications reading a snapshot of their own now; a window the checkpointer asked for meanwhile waits. */
  private snapshots = 0;
  private restartDeferred = false;
  /** Waits for another connection's write lock asynchronously (the gateway's writer), not in SQLite's busy handler. */
  private readonly busyWaitsAsync: boolean;
  /** Closed while the checkpointer starts the WAL over: this process's writes wait (asynchronously) for it. */
  private writeGate: {
    readonly opened: Promise<void>;
    readonly open: () => void;
    readonly timer: NodeJS.Timeout;
  } | null = null;

  static open(options: SqliteStoreOptions): SqliteAuditStore {
    if (!options.gatewayLock) return new SqliteAuditStore(options);
    mkdirSync(path.dirname(options.file), { recursive: true, mode: 0o700 });
    const lock = GatewayLock.take(options.file);
    try {
      const store = new SqliteAuditStore(options);
      store.gatewayLock = lock;
      return store;
    } catch (err) {
      lock.release();
      throw err;
    }
  }

  private constructor(options: SqliteStoreOptions) {
    this.file = options.file;
    this.readonly = options.readonly ?? false;
    this.purgeWalWaitMs = options.purgeWalWaitMs ?? 10_000;
    this.busyWaitsAsync =
      !this.readonly && options.backgroundCheckpoints !== undefined && options.backgroundCheckpoints !== false;
    const tuning = typeof options.backgroundCheckpoints === 'object' ? options.backgroundCheckpoints : {};
    const restartFrames = tuning.restartFrames ?? WAL_RESTART_FRAMES;
    if (!options.readonly) {
      mkdirSync(path.dirname(options.file), { recursive: true, mode: 0o700 });
      // A new store is its owner's alone, whatever the directory it is put in lets others do: SQLite gives its WAL and
      // shared-memory files the database file's mode. (One that exists keeps the mode its operator gave it.)
      closeSync(openSync(options.file, 'a', 0o600));
    }
    this.db = new Database(options.file, {
      readonly: options.readonly ?? false,
      fileMustExist: options.readonly ?? false,
    });
    this.db.pragma('busy_timeout = 10000');
    // Holds match e-mails folded as JavaScript folds them, not by lower(), which folds ASCII letters only here.
    this.db.function(FOLD_FUNCTION, { deterministic: true }, (text: unknown) =>
      typeof text === 'string' ? foldCase(text) : text,
    );
    if (!options.readonly) {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
      // The hot path appends small transactions: keep the working set in memory. With backgroundCheckpoints a worker
      // thread copies the WAL into the database file and starts it over (see WalCheckpointer); the writer's own
      // checkpoint, which syncs the file on the event loop, is then only a safety valve, far past where the thread
      // starts the log over.
      this.db.pragma('cache_size = -65536');
      this.db.pragma(`wal_autocheckpoint = ${options.backgroundCheckpoints ? 4 * restartFrames : 16384}`);
      this.db.pragma('temp_store = MEMORY');
      // Only retention deletes: what it removes is overwritten, not left readable in free pages.
      this.db.pragma('secure_delete = ON');
      this.migrate();
      // Migrations may wait for another process; from here on the gateway's writer waits asynchronously (see write).
      if (this.busyWaitsAsync) this.db.pragma(`busy_timeout = ${GATEWAY_BUSY_TIMEOUT_MS}`);
    } else {
      // A reader cannot migrate: on a store an older Vigil still records into, its statements name what is not there.
      const version = this.schemaVersion();
      if (version < SQLITE_MIGRATIONS.length) {
        this.db.close();
        throw new StoreOutdatedError(options.file, version, SQLITE_MIGRATIONS.length);
      }
    }
    const db = this.db;
    this.stmts = {
      insertRecord: db.prepare(
        `INSERT INTO records (chain, chain_seq, kind, exchange_id, session_id, at, data, prev_hash, hash)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      insertBlob: db.prepare('INSERT OR IGNORE INTO blobs (hash, data) VALUES (?, ?)'),
      insertExchange: db.prepare(
        `INSERT INTO exchanges (id, session_id, connection, caller_subject, caller_method, method, path, model, stream, started_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      insertResult: db.prepare(
        `INSERT OR IGNORE INTO exchange_results (exchange_id, ended_at, status, outcome, input_tokens, output_tokens, model,
           stop_reason, cache_read_tokens, cache_write_tokens, cache_write_1h_tokens)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      insertCaller: db.prepare('INSERT OR IGNORE INTO exchange_callers (exchange_id, issuer, email) VALUES (?, ?, ?)'),
      insertGroup: db.prepare('INSERT OR IGNORE INTO exchange_groups (group_name, exchange_id) VALUES (?, ?)'),
      insertMasking: db.prepare('INSERT OR IGNORE INTO exchange_masking (type, exchange_id, count) VALUES (?, ?, ?)'),
      insertText: db.prepare('INSERT INTO exchange_text_pending (exchange_id, text) VALUES (?, ?)'),
      // How many exchanges a group, issuer or masking type has, counted up to past FEW_MATCHES on its own index.
      ownTableCounts: Object.fromEntries(
        Object.entries(OWN_TABLE_FILTERS).map(([filter, { table, column }]) => [
          filter,
          db
            .prepare(`SELECT count(*) FROM (SELECT 1 FROM ${table} WHERE ${column} = ? LIMIT ${FEW_MATCHES + 1})`)
            .pluck(),
        ]),
      ) as Record<OwnTableFilter, Database.Statement>,
      // Matches of a search, counted up to past FEW_MATCHES; its matches among a range of full-text rows.
      matchCount: db
        .prepare(
          `SELECT count(*) FROM (SELECT 1 FROM exchange_text WHERE exchange_text MATCH ? LIMIT ${FEW_MATCHES + 1})`,
        )
        .pluck(),
      matchingRows: db
        .prepare('SELECT rowid FROM exchange_text WHERE exchange_text MATCH ? AND rowid BETWEEN ? AND ?')
        .pluck(),
      snippets: db.prepare(
        `SELECT rowid, snippet(exchange_text, 1, '«', '»', '…', 16) AS snippet FROM exchange_text
         WHERE exchange_text MATCH ? AND rowid IN (SELECT value FROM json_each(?))`,
      ),
      // Full-text rows get explicit rowids, numbered on from the last mapped one (`?`), so exchange_text_rows can say
      // whose they are.
      lastTextRow: db.prepare('SELECT coalesce(max(text_rowid), 0) FROM exchange_text_rows').pluck(),
      indexPending: db.prepare(
        `INSERT INTO exchange_text (rowid, exchange_id, text)
         SELECT ? + row_number() OVER (ORDER BY id), exchange_id, text FROM exchange_text_pending`,
      ),
      mapPending: db.prepare(
        `INSERT INTO exchange_text_rows (text_rowid, exchange_id)
         SELECT ? + row_number() OVER (ORDER BY id), exchange_id FROM exchange_text_pending`,
      ),
      clearPending: db.prepare('DELETE FROM exchange_text_pending'),
      // A record may only refer to a blob the store holds: one removed by retention must be written again.
      insertBlobRef: db.prepare(
        'INSERT OR IGNORE INTO blob_refs (blob_id, record_seq) SELECT id, ? FROM blobs WHERE hash = ?',
      ),
      blobExists: db.prepare('SELECT 1 FROM blobs WHERE hash = ?').pluck(),
      recordHashAt: db.prepare('SELECT hash FROM records WHERE seq = ?').pluck(),
      insertRefBase: db.prepare('INSERT INTO blob_ref_bases (record_seq, base_seq) VALUES (?, ?)'),
      insertHold: db.prepare(
        'INSERT INTO holds (id, session_id, caller_subject, reason, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      releaseHold: db.prepare(
        'UPDATE holds SET released_at = ?, released_by = ?, release_reason = ? WHERE id = ? AND released_at IS NULL',
      ),
      recordAt: db.prepare('SELECT * FROM records WHERE chain = ? AND chain_seq = ?'),
      insertKey: db.prepare(
        `INSERT INTO gateway_keys (hash, name, owner, connections, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
      ),
      // Set once, or brought forward (a key rotated with an overlap, then revoked at once): never moved back.
      revokeKey: db.prepare(
        'UPDATE gateway_keys SET revoked_at = ? WHERE hash = ? AND (revoked_at IS NULL OR revoked_at > ?)',
      ),
      // The key's index row, and the version of the ledger's key records (see LedgerKeyCache): one statement.
      keyByHash: db.prepare(
        `SELECT k.*, ${keyRecordsVersionSql(NOT_EXCHANGE_KIND_SQL)} AS key_records FROM gateway_keys k WHERE k.hash = ?`,
      ),
      holdRecords: db.prepare(indexRecordsSql(HOLD_RECORD_KINDS, NOT_EXCHANGE_KIND_SQL)),
      keyRecords: db.prepare(indexRecordsSql(KEY_RECORD_KINDS, NOT_EXCHANGE_KIND_SQL)),
      allKeys: db.prepare('SELECT * FROM gateway_keys'),
      allHolds: db.prepare('SELECT * FROM holds'),
      heads: db.prepare(CHAIN_HEADS),
      undigestedTails: db.prepare(UNDIGESTED_TAILS),
      byExchange: db.prepare('SELECT * FROM records WHERE exchange_id = ? ORDER BY seq'),
      byExchanges: db.prepare(
        'SELECT * FROM records WHERE exchange_id IN (SELECT value FROM json_each(?)) ORDER BY seq',
      ),
      // An exchange's own records through its index row (written with its request); the rest by records_session. The
      // session is the record's own (hashed), not only the index row's (which nothing hashes).
      bySession: db.prepare(
        `SELECT * FROM records WHERE exchange_id IN (SELECT id FROM exchanges WHERE session_id = ?)
           AND session_id = ? AND NOT (${NOT_EXCHANGE_KIND_SQL})
         UNION ALL
         SELECT * FROM records WHERE session_id = ? AND session_id IS NOT NULL AND ${NOT_EXCHANGE_KIND_SQL}
         ORDER BY seq`,
      ),
      blob: db.prepare('SELECT data FROM blobs WHERE hash = ?').pluck(),
      exchangesOfSession: db.prepare(
        `SELECT e.*, r.ended_at, r.status, r.outcome, r.input_tokens, r.output_tokens, r.model AS result_model, r.stop_reason
         FROM exchanges e LEFT JOIN exchange_results r ON r.exchange_id = e.id
         WHERE e.session_id = ? ORDER BY e.started_at, e.id`,
      ),
      unfinished: db
        .prepare(
          `SELECT e.id FROM exchanges e LEFT JOIN exchange_results r ON r.exchange_id = e.id
           WHERE r.exchange_id IS NULL ORDER BY e.started_at`,
        )
        .pluck(),
      chainRecords: db.prepare('SELECT * FROM records WHERE chain = ? AND chain_seq > ? ORDER BY chain_seq LIMIT ?'),
      recordsOfKinds: db.prepare(
        `SELECT * FROM records WHERE kind IN (SELECT value FROM json_each(?)) AND ${NOT_EXCHANGE_KIND_SQL}
         AND at >= ? AND seq > ? ORDER BY seq LIMIT ?`,
      ),
      // Exchange kinds are not in records_kind: read in order (nothing asks for them but tests and tools).
      recordsOfAnyKinds: db.prepare(
        'SELECT * FROM records WHERE kind IN (SELECT value FROM json_each(?)) AND at >= ? AND seq > ? ORDER BY seq LIMIT ?',
      ),
      sinkCursors: db.prepare('SELECT chain, chain_seq FROM sink_cursors WHERE sink = ?'),
      setSinkCursor: db.prepare(
        `INSERT INTO sink_cursors (sink, chain, chain_seq) VALUES (?, ?, ?)
         ON CONFLICT (sink, chain) DO UPDATE SET chain_seq = excluded.chain_seq
         WHERE sink_cursors.chain_seq < excluded.chain_seq`,
      ),
    };
    this.appendTx = db.transaction((batch: WriteBatch) => this.appendInTx(batch));
    // What a crash left waiting for the full-text index.
    if (!this.readonly) this.indexPendingTextQuietly();
    if (!this.readonly && options.backgroundCheckpoints) {
      this.checkpointer = new WalCheckpointer(this.file, {
        restartFrames,
        ...(tuning.intervalMs !== undefined ? { intervalMs: tuning.intervalMs } : {}),
        ...(options.onCheckpointError ? { onError: options.onCheckpointError } : {}),
        // The log cannot start over while a verify reads an old snapshot of it: holding appends for a window would
        // only stall them. The window waits for the verify.
        onRestartWanted: () => {
          if (this.snapshots > 0) this.restartDeferred = true;
          else this.closeWriteGate();
        },
        onRestarted: () => this.openWriteGate(),
      });
    }
  }

  /** The last migration the store ran (0 for one no Vigil made). */
  private schemaVersion(): number {
    const table = this.db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'");
    if (table.get() === undefined) return 0;
    return (this.db.prepare('SELECT max(version) FROM schema_migrations').pluck().get() as number | null) ?? 0;
  }

  private migrate(): void {
    this.db.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)',
    );
    const run = this.db.transaction(() => {
      const current = this.schemaVersion();
      if (current > SQLITE_MIGRATIONS.length) {
        throw new Error(
          `store schema version ${current} is newer than this Vigil (${SQLITE_MIGRATIONS.length}): upgrade Vigil, or point data_dir at another store`,
        );
      }
      for (let v = current + 1; v <= SQLITE_MIGRATIONS.length; v++) {
        this.db.exec(SQLITE_MIGRATIONS[v - 1]!);
        this.db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(v, Date.now());
      }
    });
    run.immediate();
  }

  /** Let the checkpointer start the WAL over: nothing is being written now (writes are synchronous), and none starts. */
  private closeWriteGate(): void {
    if (this.writeGate !== null || this.checkpointer === null) return;
    let open!: () => void;
    const opened = new Promise<void>((resolve) => (open = resolve));
    const timer = setTimeout(() => this.openWriteGate(), RESTART_WINDOW_MAX_MS);
    this.writeGate = { opened, open, timer };
    this.checkpointer.restart();
  }

  private openWriteGate(): void {
    const gate = this.writeGate;
    if (gate === null) return;
    this.writeGate = null;
    clearTimeout(gate.timer);
    gate.open();
  }

  /** Resolves once this process may write: at once, unless the checkpointer is starting the WAL over. */
  private async writable(): Promise<void> {
    while (this.writeGate !== null) await this.writeGate.opened;
  }

  /**
   * Run a write once this process may write (see writable). When another connection holds the write lock (a CLI
   * purge, another process), the gateway's writer does not wait on SQLite's busy handler, which would stop its event
   * loop — and every stream in flight — for as long: it waits asynchronously and tries again, for up to 10 s like
   * the busy timeout it replaces. A write that throws has rolled back (one transaction): so do the chain head and the
   * count of waiting search text, saved here right before it runs.
   */
  private async write<T>(write: () => T): Promise<T> {
    const deadline = Date.now() + BUSY_WAIT_MS;
    for (let pause = 2; ; pause = Math.min(pause * 2, 50)) {
      await this.writable();
      const head = this.head;
      const pending = this.pendingText;
      try {
        return write();
      } catch (err) {
        this.head = head;
        this.pendingText = pending;
        const busy = String((err as { code?: unknown }).code).startsWith('SQLITE_BUSY');
        if (!busy || !this.busyWaitsAsync || Date.now() >= deadline) throw err;
      }
      await sleep(pause);
    }
  }

  isUnavailable(err: unknown): boolean {
    if (!this.db.open) return true;
    const code = String((err as { code?: unknown } | null)?.code ?? '');
    return /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|NOMEM|PROTOCOL)/.test(code);
  }

  async append(batch: WriteBatch): Promise<readonly StoredRecord[]> {
    // `immediate` takes the write lock at BEGIN, so two processes never deadlock upgrading a read lock.
    const stored = await this.write(() => {
      // What another transaction left (one rolled back) is no base: its positions may have gone to other records.
      this.refBases.rollback();
      const out = this.appendTx.immediate(batch);
      this.refBases.commit();
      return out;
    });
    if (this.pendingText > 0) this.scheduleTextIndexing();
    return stored;
  }

  /**
   * Search text enters the full-text index in batches, off the commit that records the exchange: at once when
   * {@link TEXT_BATCH} entries wait, else within {@link TEXT_LAG_MS}; a search, a purge and close() index what waits
   * first, and opening the store indexes what a crash left waiting.
   */
  private scheduleTextIndexing(): void {
    if (this.textRetrying) return; // a failed indexing is tried again on its timer, not on every append
    if (this.pendingText >= TEXT_BATCH) {
      if (this.textTimer !== null) clearTimeout(this.textTimer);
      this.textTimer = null;
      this.textImmediate ??= setImmediate(() => {
        this.textImmediate = null;
        this.indexPendingTextQuietly();
      });
    } else if (this.textTimer === null && this.textImmediate === null) {
      this.textTimer = setTimeout(() => {
        this.textTimer = null;
        this.indexPendingTextQuietly();
      }, TEXT_LAG_MS);
      this.textTimer.unref();
    }
  }

  /**
   * Index what waits; when that fails (the database busy past its timeout, the disk full), the text stays waiting and
   * is tried again after TEXT_LAG_MS. Returns whether it was indexed: a search goes on either way.
   */
  indexPendingTextQuietly(): boolean {
    if (this.writeGate !== null) {
      // The checkpointer is starting the WAL over: index once it is done, rather than wait for it here.
      void this.writeGate.opened.then(() => this.scheduleTextIndexing());
      return false;
    }
    try {
      this.indexPendingText();
      this.textRetrying = false;
      return true;
    } catch {
      if (this.db.open && !this.textRetrying) {
        this.textRetrying = true;
        if (this.textTimer !== null) clearTimeout(this.textTimer);
        this.textTimer = setTimeout(() => {
          this.textTimer = null;
          this.textRetrying = false;
          this.indexPendingTextQuietly();
        }, TEXT_LAG_MS);
        this.textTimer.unref();
      }
      return false;
    }
  }

  /** Move waiting search text into the full-text index (one transaction). */
  indexPendingText(): void {
    if (this.readonly || !this.db.open) return;
    const pending = this.pendingText;
    try {
      this.db.transaction(() => this.movePendingText()).immediate();
    } catch (err) {
      this.pendingText = pending; // rolled back: the text still waits
      throw err;
    }
  }

  /** Inside a write transaction: waiting search text into the full-text index, each row mapped to its exchange. */
  private movePendingText(): void {
    const last = this.stmts.lastTextRow.get() as number;
    this.stmts.indexPending.run(last);
    this.stmts.mapPending.run(last);
    this.stmts.clearPending.run();
    this.pendingText = 0;
  }

  private appendInTx(batch: WriteBatch): StoredRecord[] {
    const s = this.stmts;
    if (batch.blobs) for (const b of batch.blobs) s.insertBlob.run(b.hash, b.data);
    const out: StoredRecord[] = [];
    if (this.head === null)
      out.push(this.writeRecord({ kind: 'chain.opened', at: Date.now(), data: this.openingData() }));
    for (const r of batch.records) {
      const stored = this.writeRecord(r);
      out.push(stored);
      this.indexBlobRefs(r, stored);
      const ex = exchangeIndexRow(r);
      if (ex) {
        s.insertExchange.run(
          ex.id,
          ex.sessionId,
          ex.connection,
          ex.callerSubject,
          ex.callerMethod,
          ex.method,
          ex.path,
          ex.model,
          ex.stream ? 1 : 0,
          ex.startedAt,
        );
      }
      const caller = callerIndexRow(r);
      if (caller) {
        s.insertCaller.run(caller.exchangeId, caller.issuer, caller.email);
        for (const g of caller.groups) s.insertGroup.run(g, caller.exchangeId);
      }
      const res = resultIndexRow(r);
      if (res) {
        s.insertResult.run(
          res.exchangeId,
          res.endedAt,
          res.status,
          res.outcome,
          res.inputTokens,
          res.outputTokens,
          res.model,
          res.stopReason,
          res.cacheReadTokens,
          res.cacheWriteTokens,
          res.cacheWrite1hTokens,
        );
      }
      for (const m of maskingIndexRows(r)) s.insertMasking.run(m.type, m.exchangeId, m.count);
      if (r.kind === 'key.created') {
        const k = r.data as KeyCreatedData;
        s.insertKey.run(k.hash, k.name, k.owner, JSON.stringify(k.connections), k.createdAt, k.expiresAt);
      } else if (r.kind === 'key.revoked') {
        const k = r.data as KeyRevokedData;
        s.revokeKey.run(k.revokedAt, k.hash, k.revokedAt);
      } else if (r.kind === 'hold.added') {
        const h = r.data as HoldAddedData;
        s.insertHold.run(h.holdId, h.session, h.caller, h.reason, h.by, h.at);
      } else if (r.kind === 'hold.released') {
        const h = r.data as HoldReleasedData;
        s.releaseHold.run(h.at, h.by, h.reason, h.holdId);
      }
    }
    if (batch.searchText) {
      for (const t of batch.searchText) s.insertText.run(t.exchangeId, indexableText(t.text));
      this.pendingText += batch.searchText.length;
    }
    return out;
  }

  /**
   * A record's blob references into blob_refs: for a request record with a base (ref-bases.ts), only those its base
   * does not have. A reference to a blob the store does not hold fails the append: a base's blobs are held while it is.
   */
  private indexBlobRefs(r: NewRecord, stored: StoredRecord): void {
    const refs = newRecordBlobRefs(r);
    if (refs.length === 0) return;
    const s = this.stmts;
    let own: readonly string[] = refs;
    const base = this.refBases.baseOf(r);
    if (base !== undefined && s.recordHashAt.get(base.seq) === base.hash) {
      own = refs.filter((h) => !base.refs.has(h));
      s.insertRefBase.run(stored.seq, base.seq);
    }
    this.refBases.written(r, stored, refs);
    for (const h of own) {
      if (s.insertBlobRef.run(stored.seq, h).changes === 0 && s.blobExists.get(h) === undefined) {
        throw new Error(
          `record ${r.kind} refers to blob ${h}, which the store does not hold (removed by retention?): write it again`,
        );
      }
    }
  }

  private openingData(): { heads: ChainHead[]; store: string } {
    const heads = (this.stmts.heads.all() as ChainHeadRow[]).map(toChainHead);
    return { heads, store: 'sqlite' };
  }

  private writeRecord(r: WriteBatch['records'][number]): StoredRecord {
    const linked = linkRecord(this.chainId, this.head, {
      kind: r.kind,
      exchangeId: r.exchangeId ?? null,
      sessionId: r.sessionId ?? null,
      at: r.at,
      data: r.json ?? JSON.stringify(r.data),
    });
    const info = this.stmts.insertRecord.run(
      linked.chain,
      linked.chainSeq,
      linked.kind,
      linked.exchangeId,
      linked.sessionId,
      linked.at,
      linked.data,
      linked.prevHash,
      linked.hash,
    );
    this.head = { chainSeq: linked.chainSeq, hash: linked.hash };
    return { ...linked, seq: Number(info.lastInsertRowid) };
  }

  async exchangeRecords(exchangeId: string): Promise<readonly StoredRecord[]> {
    return (this.stmts.byExchange.all(exchangeId) as RecordRow[]).map(toStored);
  }

  async recordsOfExchanges(exchangeIds: readonly string[]): Promise<readonly StoredRecord[]> {
    if (exchangeIds.length === 0) return [];
    return (this.stmts.byExchanges.all(JSON.stringify(exchangeIds)) as RecordRow[]).map(toStored);
  }

  async sessionRecords(sessionId: string): Promise<readonly StoredRecord[]> {
    return (this.stmts.bySession.all(sessionId, sessionId, sessionId) as RecordRow[]).map(toStored);
  }

  async blobs(hashes: readonly string[]): Promise<ReadonlyMap<string, Buffer>> {
    const out = new Map<string, Buffer>();
    for (const h of hashes) {
      if (out.has(h)) continue;
      const data = this.stmts.blob.get(h) as Buffer | undefined;
      if (data !== undefined) out.set(h, data);
    }
    return out;
  }

  async listSessions(filter: SessionFilter = {}): Promise<Page<SessionListItem>> {
    const limit = pageSize(filter.limit);
    const cursor = filter.cursor !== undefined ? decodeCursor(filter.cursor) : undefined;
    const { sql, params } = sqliteAggregate((d) => sessionListStatement(d, cursor, limit), filter, this.fewMatch);
    return toSessionListPage(this.db.prepare(sql).all(...params) as Array<SessionRow & ListNameRow>, limit);
  }

  async listExchanges(sessionId: string): Promise<readonly ExchangeSummary[]> {
    return (this.stmts.exchangesOfSession.all(sessionId) as ExchangeRow[]).map(toSummary);
  }

  async listExchangesFiltered(filter: ExchangeListFilter = {}): Promise<Page<ExchangeListItem>> {
    const params: unknown[] = [];
    const where = [
      ...exchangeConditions(filter, params, this.fewMatch),
      ...beforeCursor(filter.cursor, params, filter.oldestFirst),
    ];
    const limit = pageSize(filter.limit);
    const order = filter.oldestFirst ? 'ASC' : 'DESC';
    const rows = this.db
      .prepare(
        `SELECT e.*, r.ended_at, r.status, r.outcome, r.input_tokens, r.output_tokens, r.model AS result_model, r.stop_reason,
                c.issuer AS caller_issuer,
                (SELECT json_group_array(g.group_name) FROM exchange_groups g WHERE g.exchange_id = e.id) AS groups_json,
                (SELECT json_group_object(m.type, m.count) FROM exchange_masking m WHERE m.exchange_id = e.id) AS masking_json
         FROM exchanges e
         LEFT JOIN exchange_results r ON r.exchange_id = e.id
         LEFT JOIN exchange_callers c ON c.exchange_id = e.id
         ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
         ORDER BY e.started_at ${order}, e.id ${order} LIMIT ?`,
      )
      .all(...params, limit + 1) as Array<
      ExchangeRow & { caller_issuer: string | null; groups_json: string | null; masking_json: string | null }
    >;
    return pageOf(
      rows,
      limit,
      (r): ExchangeListItem => ({
        ...toSummary(r),
        callerIssuer: r.caller_issuer ?? null,
        callerGroups: (JSON.parse(r.groups_json ?? '[]') as string[]).sort(),
        masking: JSON.parse(r.masking_json ?? '{}') as Record<string, number>,
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
    const totals = sqliteAggregate((d) => totalsStatement(d, pricing), filter, this.fewMatch);
    const row = this.db.prepare(totals.sql).get(...totals.params) as TotalsRow | undefined;
    if (!row || row.n === 0) return undefined;
    const names = sqliteAggregate(namesStatement, filter, this.fewMatch);
    return toSessionTotals(sessionId, row, this.db.prepare(names.sql).all(...names.params) as NameRow[], pricing);
  }

  async usage(request: UsageRequest, pricing?: Pricing): Promise<UsageReport> {
    const rows = usageRows(request);
    const { sql, params } = sqliteAggregate((d) => usageStatement(d, request, rows, pricing), request, this.fewMatch);
    return toUsageReport(request.by, rows, this.db.prepare(sql).all(...params) as UsageSqlRow[], pricing);
  }

  async search(query: string, options: SearchOptions = {}): Promise<Page<SearchHit>> {
    const terms = parseSearchQuery(query);
    if (terms.length === 0) return { items: [], nextCursor: null };
    // Search text still waiting is indexed first; if that cannot be done now, the search runs on what is indexed.
    this.indexPendingTextQuietly();
    const match = fts5Match(terms);
    const limit = pageSize(options.limit);
    const rows =
      (this.stmts.matchCount.get(match) as number) > FEW_MATCHES
        ? this.matchesNewestFirst(match, options, limit)
        : this.matchesInOrder(match, options, limit);
    // Snippets for the page's rows only: made for every match, before the sort, they were ~90% of a search for a
    // common word (1.1 s of 1.2 s over 100,000 exchanges).
    const snippets = new Map(
      (
        this.stmts.snippets.all(match, JSON.stringify(rows.slice(0, limit).map((r) => r.text_rowid))) as Array<{
          rowid: number;
          snippet: string;
        }>
      ).map((r) => [r.rowid, r.snippet]),
    );
    return pageOf(
      rows,
      limit,
      (r) => toSearchHit({ ...r, snippet: snippets.get(r.text_rowid) ?? '' }),
      (i) => [i.startedAt, i.exchangeId],
    );
  }

  /**
   * A search's first `limit + 1` matches in list order, for a search few exchanges match: every match is read and
   * ordered. The exchange of a match comes from exchange_text_rows, not from the full-text row's own column, which
   * would read each match's text.
   */
  private matchesInOrder(match: string, options: SearchOptions, limit: number): SearchMatchRow[] {
    const params: unknown[] = [match];
    const where = [
      ...exchangeConditions(options.filter ?? {}, params, this.fewMatch),
      ...beforeCursor(options.cursor, params),
    ];
    return this.db
      .prepare(
        `SELECT t.rowid AS text_rowid, e.id, e.session_id, e.started_at, e.caller_subject
         FROM exchange_text t
         JOIN exchange_text_rows x ON x.text_rowid = t.rowid
         JOIN exchanges e ON e.id = x.exchange_id
         LEFT JOIN exchange_results r ON r.exchange_id = e.id
         WHERE exchange_text MATCH ? ${where.length ? `AND ${where.join(' AND ')}` : ''}
         ORDER BY e.started_at DESC, e.id DESC LIMIT ?`,
      )
      .all(...params, limit + 1) as SearchMatchRow[];
  }

  /**
   * The same, for a search many exchanges match (a common word): the exchanges are walked newest first,
   * {@link SEARCH_WALK_STEP} at a time (CROSS JOIN: SQLite joins in the order written; left to choose, it read all of
   * exchange_text_rows and sorted), and each step's text rows are checked against the full-text index, until the page
   * is full. Reading and ordering every match took 39 ms over 100,000 exchanges for a word nearly all of them
   * hold, and grew with the store; the walk reads about a page.
   */
  private matchesNewestFirst(match: string, options: SearchOptions, limit: number): SearchMatchRow[] {
    const found: SearchMatchRow[] = [];
    let position = options.cursor !== undefined ? decodeCursor(options.cursor) : undefined;
    for (;;) {
      const params: unknown[] = [];
      const where = [
        ...exchangeConditions(options.filter ?? {}, params, this.fewMatch),
        ...(position ? beforePosition(position, params) : []),
      ];
      const step = this.db
        .prepare(
          `SELECT x.text_rowid, e.id, e.session_id, e.started_at, e.caller_subject
           FROM exchanges e
           LEFT JOIN exchange_results r ON r.exchange_id = e.id
           CROSS JOIN exchange_text_rows x ON x.exchange_id = e.id
           ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
           ORDER BY e.started_at DESC, e.id DESC LIMIT ?`,
        )
        .all(...params, SEARCH_WALK_STEP) as SearchMatchRow[];
      // The step's text rows span a range of row ids (indexed in about the order the exchanges ended): the matches in
      // that range, one read of the index, rather than a look-up per row (30-100 µs each).
      let low = Infinity;
      let high = -Infinity;
      for (const r of step) {
        low = Math.min(low, r.text_rowid);
        high = Math.max(high, r.text_rowid);
      }
      const matched = new Set(step.length ? (this.stmts.matchingRows.all(match, low, high) as number[]) : []);
      for (const row of step) {
        if (!matched.has(row.text_rowid)) continue;
        found.push(row);
        if (found.length > limit) return found;
      }
      const last = step.at(-1);
      if (step.length < SEARCH_WALK_STEP || last === undefined) return found;
      position = { lastAt: last.started_at, id: last.id };
    }
  }

  async listAccessLog(page: PageRequest = {}): Promise<Page<AccessLogEntry>> {
    const limit = pageSize(page.limit);
    const before = page.cursor !== undefined ? decodeCursor(page.cursor).lastAt : undefined;
    const rows = this.db
      .prepare(
        `SELECT seq, at, data FROM records WHERE kind = 'recording.read' AND ${NOT_EXCHANGE_KIND_SQL}
         ${before !== undefined ? 'AND seq < ?' : ''}
         ORDER BY seq DESC LIMIT ?`,
      )
      .all(...(before !== undefined ? [before] : []), limit + 1) as AccessLogRow[];
    return pageOf(rows, limit, toAccessLogEntry, (i) => [i.seq, 'seq']);
  }

  async recordsAt(positions: readonly ChainPosition[]): Promise<readonly StoredRecord[]> {
    const out: StoredRecord[] = [];
    for (const p of positions) {
      const row = this.stmts.recordAt.get(p.chain, p.chainSeq) as RecordRow | undefined;
      if (row) out.push(toStored(row));
    }
    return out;
  }

  async unfinishedExchanges(): Promise<readonly string[]> {
    return this.stmts.unfinished.all() as string[];
  }

  /** The ledger's key or hold records (see ledger-index.ts). */
  private indexRecords(which: 'keyRecords' | 'holdRecords'): IndexRecord[] {
    return (this.stmts[which].all() as IndexRecordRow[]).map(toIndexRecord);
  }

  async findGatewayKey(hash: string): Promise<StoredGatewayKey | undefined> {
    const row = this.stmts.keyByHash.get(hash) as (KeyRow & { key_records: string }) | undefined;
    return this.ledgerKeys.judge(row && toKey(row), row?.key_records ?? '');
  }

  async listGatewayKeys(): Promise<readonly ListedGatewayKey[]> {
    // In one read transaction: a key created meanwhile (its record and its row) is seen whole or not at all.
    return this.db.transaction(() =>
      listedKeys(this.indexRecords('keyRecords'), (this.stmts.allKeys.all() as KeyRow[]).map(toKey)),
    )();
  }

  // The outbox and the approvals poll these several times a second: statements prepared once.
  async chainHeads(): Promise<ReadonlyArray<{ chain: string; chainSeq: number }>> {
    return (this.stmts.heads.all() as ChainHeadRow[]).map(toChainHead);
  }

  async undigestedTails(): Promise<readonly UndigestedTail[]> {
    return toUndigestedTails(this.stmts.undigestedTails.all() as UndigestedTailRow[]);
  }

  async chainRecords(chain: string, afterChainSeq: number, limit: number): Promise<readonly StoredRecord[]> {
    return (this.stmts.chainRecords.all(chain, afterChainSeq, limit) as RecordRow[]).map(toStored);
  }

  async recordsOfKinds(
    kinds: readonly string[],
    since: number,
    limit: number,
    afterSeq = 0,
  ): Promise<readonly StoredRecord[]> {
    return this.recordsOfKindsNow(kinds, since, limit, afterSeq);
  }

  private recordsOfKindsNow(kinds: readonly string[], since: number, limit: number, afterSeq = 0): StoredRecord[] {
    if (kinds.length === 0) return [];
    const stmt = kinds.some((k) => (EXCHANGE_KINDS as readonly string[]).includes(k))
      ? this.stmts.recordsOfAnyKinds
      : this.stmts.recordsOfKinds;
    return (stmt.all(JSON.stringify(kinds), since, afterSeq, limit) as RecordRow[]).map(toStored);
  }

  async sinkCursors(sink: string): Promise<ReadonlyMap<string, number>> {
    const rows = this.stmts.sinkCursors.all(sink) as Array<{ chain: string; chain_seq: number }>;
    return new Map(rows.map((r) => [r.chain, r.chain_seq]));
  }

  async setSinkCursor(sink: string, chain: string, chainSeq: number): Promise<void> {
    await this.write(() => this.stmts.setSinkCursor.run(sink, chain, chainSeq));
  }

  async tryLeadership(_name: string): Promise<boolean> {
    return true;
  }

  async holdsLeadership(_name: string): Promise<boolean> {
    return true;
  }

  /** One gateway per SQLite file: only this process's chain is live (CLI commands record no exchanges). */
  async chainIsLive(chain: string): Promise<boolean> {
    return chain === this.chainId;
  }

  readonly writerReconnectMs = 0;
  /** Held while a gateway has the store open (SqliteStoreOptions.gatewayLock). */
  private gatewayLock: GatewayLock | null = null;

  /**
   * A consistent copy of the whole store as of now, compacted, written to `file` (which must not exist, or be empty):
   * SQLite's VACUUM INTO, one read transaction, so a gateway appending meanwhile neither waits nor is half copied.
   * Works on a read-only connection.
   */
  backupTo(file: string): void {
    this.db.prepare('VACUUM INTO ?').run(file);
  }

  /** A transaction on this thread commits or rolls back before it throws. */
  async appendedDespiteFailure(_record: NewRecord): Promise<boolean> {
    return false;
  }

  async appendAtTip(
    build: (tip: ChainTip | null, heads: readonly ChainHead[]) => NewRecord | undefined,
  ): Promise<StoredRecord | undefined> {
    return this.write(() =>
      this.db
        .transaction(() => {
          const r = build(this.head, this.openingData().heads);
          return r ? this.appendInTx({ records: [r] }).at(-1) : undefined;
        })
        .immediate(),
    );
  }

  async appendIfNew(
    kinds: readonly string[],
    since: number,
    build: (existing: readonly StoredRecord[]) => readonly NewRecord[],
  ): Promise<readonly StoredRecord[]> {
    // BEGIN IMMEDIATE takes the write lock first: another process's call waits for it, then reads what this one wrote.
    return this.write(() =>
      this.db
        .transaction(() => {
          const records = build(this.recordsOfKindsNow(kinds, since, -1));
          return records.length ? this.appendInTx({ records }) : [];
        })
        .immediate(),
    );
  }

  async listHolds(options: { activeOnly?: boolean } = {}): Promise<readonly ListedHold[]> {
    const holds = this.db.transaction(() =>
      listedHolds(this.indexRecords('holdRecords'), (this.stmts.allHolds.all() as HoldRow[]).map(toHold)),
    )();
    return options.activeOnly ? holds.filter((h) => h.releasedAt === null) : holds;
  }

  async retentionCandidates(query: RetentionQuery): Promise<readonly PurgeCandidate[]> {
    const params: unknown[] = [];
    const entries = Object.entries(query.cutoffs);
    const other = query.otherCutoff ?? -1;
    const maxCutoff = Math.max(other, ...entries.map(([, c]) => c));
    const cutoff = entries.length
      ? `CASE e.connection ${entries.map(() => 'WHEN ? THEN ?').join(' ')} ELSE ? END`
      : '?';
    params.push(maxCutoff, ...entries.flat(), other);
    // Held by the ledger's hold records too, as a purge checks them: a hold released in the index alone still holds.
    let ledgerHeld = '';
    const active = activeLedgerHolds(this.indexRecords('holdRecords'));
    if (active.length) {
      ledgerHeld = `AND NOT EXISTS (${HELD_BY(
        `(SELECT json_extract(value, '$[0]') AS session_id, json_extract(value, '$[1]') AS caller_subject
          FROM json_each(?)) h`,
        fold,
      )})`;
      params.push(JSON.stringify(active.map((h) => [h.session, h.caller])));
    }
    let after = '';
    if (query.after) {
      after = 'AND (r.ended_at > ? OR (r.ended_at = ? AND e.id > ?))';
      params.push(query.after.endedAt, query.after.endedAt, query.after.id);
    }
    let undelivered = '';
    if (query.deliveredTo?.length) {
      undelivered = `AND NOT EXISTS (${UNDELIVERED('(SELECT value AS name FROM json_each(?)) s')})`;
      params.push(JSON.stringify(query.deliveredTo));
    }
    params.push(query.limit);
    const rows = this.db
      .prepare(
        `SELECT e.id, e.session_id, e.connection, e.caller_subject, e.started_at, r.ended_at,
                (SELECT count(*) FROM records x WHERE x.exchange_id = e.id) AS records
         FROM exchange_results r JOIN exchanges e ON e.id = r.exchange_id
         WHERE r.ended_at < ? AND r.ended_at < ${cutoff}
           AND NOT EXISTS (${HELD(fold)})
           ${ledgerHeld}
           AND NOT EXISTS (${AT_HEAD})
           ${after}
           ${undelivered}
         ORDER BY r.ended_at, e.id LIMIT ?`,
      )
      .all(...params) as CandidateRow[];
    return rows.map(toCandidate);
  }

  async ledgerHeldExchanges(ids: readonly string[]): Promise<ReadonlySet<string>> {
    return this.db.transaction(() =>
      heldByLedger(
        this.indexRecords('holdRecords'),
        (
          this.db
            .prepare(
              `SELECT * FROM records
               WHERE exchange_id IN (SELECT value FROM json_each(?)) AND kind = 'exchange.request'`,
            )
            .all(JSON.stringify([...new Set(ids)])) as RecordRow[]
        ).map(toStored),
      ),
    )();
  }

  async purgeExchanges(
    ids: readonly string[],
    seal: (removal: PurgeRemoval) => NewRecord,
  ): Promise<{ removal: PurgeRemoval; record: StoredRecord } | undefined> {
    const idList = JSON.stringify([...new Set(ids)]);
    const run = this.db.transaction(() => {
      const db = this.db;
      // Search text still waiting joins the index first, so the purge removes it with the rest.
      this.movePendingText();
      const chosen = db
        .prepare(
          `SELECT e.id, e.started_at, r.ended_at FROM exchanges e JOIN exchange_results r ON r.exchange_id = e.id
           WHERE e.id IN (SELECT value FROM json_each(?)) AND NOT EXISTS (${HELD(fold)}) AND NOT EXISTS (${AT_HEAD})`,
        )
        .all(idList) as DueExchange[];
      const chosenRecords = db
        .prepare(
          'SELECT * FROM records WHERE exchange_id IN (SELECT value FROM json_each(?)) ORDER BY chain, chain_seq',
        )
        .all(JSON.stringify(chosen.map((d) => d.id))) as RecordRow[];
      // The holds index chose these; the ledger's hold records have the last word, so a hold released in the index
      // alone (without a hold.released record) still keeps its exchanges.
      const held = heldByLedger(this.indexRecords('holdRecords'), chosenRecords.map(toStored));
      const due = chosen.filter((d) => !held.has(d.id));
      if (due.length === 0) return undefined;
      const records = chosenRecords.filter((r) => r.exchange_id === null || !held.has(r.exchange_id));
      db.prepare('INSERT INTO purge_authorizations (purge_id, at) VALUES (?, ?)').run(randomUUID(), Date.now());
      const dueList = JSON.stringify(due.map((d) => d.id));
      // A live record built on one this purge removes gets rows for all of its references first (ref-bases.ts).
      const removed = JSON.stringify(records.map((r) => r.seq));
      const dependants = db
        .prepare(
          `SELECT r.seq, r.kind, r.data FROM blob_ref_bases b JOIN records r ON r.seq = b.record_seq
           WHERE b.base_seq IN (SELECT value FROM json_each(?)) AND b.record_seq NOT IN (SELECT value FROM json_each(?))`,
        )
        .all(removed, removed) as Array<{ seq: number; kind: string; data: string }>;
      for (const [h, seq] of dependantRefs(dependants)) this.stmts.insertBlobRef.run(seq, h);
      db.prepare(
        `DELETE FROM blob_ref_bases
         WHERE base_seq IN (SELECT value FROM json_each(?)) OR record_seq IN (SELECT value FROM json_each(?))`,
      ).run(removed, removed);
      const candidates = new Set<string>();
      const delRef = db.prepare(
        'DELETE FROM blob_refs WHERE blob_id = (SELECT id FROM blobs WHERE hash = ?) AND record_seq = ?',
      );
      for (const r of records) {
        for (const h of indexedBlobRefs(r.data)) {
          delRef.run(h, r.seq);
          candidates.add(h);
        }
      }
      // The full-text rows go by the rowids exchange_text_rows keeps (exchange_id is UNINDEXED in the index itself).
      db.prepare(
        `DELETE FROM exchange_text WHERE rowid IN
           (SELECT text_rowid FROM exchange_text_rows WHERE exchange_id IN (SELECT value FROM json_each(?)))`,
      ).run(dueList);
      for (const table of [
        'exchange_text_rows',
        'exchange_groups',
        'exchange_masking',
        'exchange_callers',
        'exchange_results',
      ]) {
        db.prepare(`DELETE FROM ${table} WHERE exchange_id IN (SELECT value FROM json_each(?))`).run(dueList);
      }
      db.prepare('DELETE FROM exchanges WHERE id IN (SELECT value FROM json_each(?))').run(dueList);
      db.prepare('DELETE FROM records WHERE exchange_id IN (SELECT value FROM json_each(?))').run(dueList);
      const delBlob = db.prepare(
        'DELETE FROM blobs WHERE hash = ? AND NOT EXISTS (SELECT 1 FROM blob_refs WHERE blob_id = blobs.id)',
      );
      let blobs = 0;
      for (const h of candidates) blobs += delBlob.run(h).changes;
      db.prepare('DELETE FROM purge_authorizations').run();
      const removal = purgeRemoval(due, records.map(toStored), blobs, this.openingData().heads);
      const record = this.appendInTx({ records: [seal(removal)] }).at(-1)!;
      return { removal, record };
    });
    return this.write(() => run.immediate());
  }

  /** The WAL still holds the pages as they were before the purges: copy them back and empty it. */
  async finishPurges(): Promise<{ walKept?: true }> {
    return (await this.truncateWal()) ? {} : { walKept: true };
  }

  /**
   * Checkpoint the WAL and truncate it to nothing, so no copy of purged pages stays in it. Another connection in the
   * way — checkpointing (a gateway's background checkpointer, when the CLI purges: SQLite then gives up at once) or
   * still reading old pages (SQLite waits on its busy handler, which blocks this thread) — is waited out in short
   * attempts with pauses between them, for up to `purgeWalWaitMs` — a verify reading an old snapshot included, which
   * the gateway's checkpointer waits out whole. Returns whether the WAL was emptied by then.
   *
   * The gateway's store has the checkpointer thread do it, in a window like the ones it starts the WAL over in: the
   * checkpoint's sync (tens of milliseconds, more on a slow disk) then stops no stream, and appends wait for it
   * asynchronously; longer pauses between attempts leave them most of the time while a reader is in the way.
   */
  private async truncateWal(): Promise<boolean> {
    const deadline = Date.now() + this.purgeWalWaitMs;
    if (this.checkpointer !== null) {
      for (;;) {
        // The window waits for every verify holding a snapshot to end, which may take far longer than the deadline:
        // past it, the log is reported kept (and is emptied when the window comes, answered to the next caller).
        this.pendingTruncation ??= this.checkpointer
          .truncate(WAL_TRUNCATE_ATTEMPT_MS)
          .finally(() => (this.pendingTruncation = null));
        const timer = new AbortController();
        const emptied = await Promise.race([
          this.pendingTruncation,
          sleep(Math.max(0, deadline - Date.now()), undefined, { signal: timer.signal }).catch(() => undefined),
        ]);
        timer.abort();
        if (emptied === true) return true;
        if (emptied === undefined || this.checkpointer === null || Date.now() >= deadline) return false;
        await sleep(WAL_TRUNCATE_PAUSE_MS);
      }
    }
    const busyTimeout = this.db.pragma('busy_timeout', { simple: true }) as number;
    this.db.pragma(`busy_timeout = ${WAL_TRUNCATE_ATTEMPT_MS}`);
    try {
      for (;;) {
        await this.writable();
        const [r] = this.db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
        if (r?.busy === 0) return true;
        if (Date.now() >= deadline) return false;
        await sleep(25);
      }
    } finally {
      if (this.db.open) this.db.pragma(`busy_timeout = ${busyTimeout}`);
    }
  }

  /**
   * Verify reads one snapshot of the store, from a connection of its own held in one read transaction across its
   * pages: paged on this store's connection (each page its own snapshot), a purge or a new chain committing between
   * two pages was reported as tampering (a gap no purge record covered, a head some chain committed to but the walk
   * had passed). Not on this connection: it writes, and a read transaction held here would stop its writes.
   */
  async verify(options: VerifyOptions = {}): Promise<VerifyReport> {
    const reader = new Database(this.file, { readonly: true, fileMustExist: true });
    this.snapshots++;
    try {
      reader.pragma(`busy_timeout = ${SNAPSHOT_BUSY_TIMEOUT_MS}`);
      const page = reader.prepare(
        `SELECT * FROM records WHERE chain > ? OR (chain = ? AND chain_seq > ?) ORDER BY chain, chain_seq LIMIT ${VERIFY_PAGE}`,
      );
      const blob = reader.prepare('SELECT data FROM blobs WHERE hash = ?').pluck();
      // Deferred: the snapshot is taken by the first page's read, and kept until COMMIT.
      reader.exec('BEGIN');
      const report = await verifyLedger(
        {
          async *records() {
            let after = { chain: '', seq: 0 };
            for (;;) {
              const rows = page.all(after.chain, after.chain, after.seq) as RecordRow[];
              for (const row of rows) yield toStored(row);
              const last = rows.at(-1);
              if (!last) return;
              after = { chain: last.chain, seq: last.chain_seq };
              // Between pages, back to the event loop: a gateway verifying on an admin's request keeps serving calls
              // (an async generator alone never leaves the microtask queue, so a large store would stall the proxy).
              await new Promise((resolve) => setImmediate(resolve));
            }
          },
          blob: async (h) => (blob.get(h) as Buffer | undefined) ?? undefined,
          indexes: async () => {
            // A store written by an older Vigil and opened read-only here may predate either table (and its records).
            const has = (table: string): boolean =>
              reader.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) !== undefined;
            return {
              keys: has('gateway_keys')
                ? (reader.prepare('SELECT * FROM gateway_keys').all() as KeyRow[]).map(toKey)
                : [],
              holds: has('holds') ? (reader.prepare('SELECT * FROM holds').all() as HoldRow[]).map(toHold) : [],
            };
          },
        },
        options,
      );
      reader.exec('COMMIT');
      return report;
    } finally {
      reader.close();
      this.snapshots--;
      if (this.snapshots === 0 && this.restartDeferred) {
        this.restartDeferred = false;
        this.closeWriteGate();
      }
    }
  }

  async close(): Promise<void> {
    if (this.textTimer !== null) clearTimeout(this.textTimer);
    if (this.textImmediate !== null) clearImmediate(this.textImmediate);
    this.textTimer = null;
    this.textImmediate = null;
    const checkpointer = this.checkpointer;
    this.checkpointer = null;
    await checkpointer?.stop();
    this.openWriteGate();
    if (this.db.open) {
      // What waits is indexed at the next open if another process holds the write lock now.
      this.indexPendingTextQuietly();
      this.db.close();
    }
    this.gatewayLock?.release();
  }
}
