/** Opens the store the config names. The rest of Vigil sees only the AuditStore interface. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { VigilConfig } from '../config/config-schema.js';
import { ConfigError } from '../errors.js';
import type { AuditStore } from './audit-store.js';
import { StoreInUseError } from './sqlite/gateway-lock.js';
import { SqliteAuditStore, StoreOutdatedError } from './sqlite/sqlite-audit-store.js';
import { readsOffThread, SqliteReadWorker } from './sqlite/sqlite-read-worker.js';

function sqlitePath(config: VigilConfig): string {
  return config.store.sqlite.path ?? path.join(config.data_dir, 'vigil.db');
}

/** The PostgreSQL URL the config selects, or undefined for the embedded SQLite store. */
function postgresUrl(config: VigilConfig, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const pg = config.store.postgres;
  if (!pg) return env.DATABASE_URL?.trim() || undefined;
  if (typeof pg.url === 'string') return pg.url;
  if ('env' in pg.url) {
    const v = env[pg.url.env]?.trim();
    if (!v) throw new ConfigError([`store.postgres.url: environment variable ${pg.url.env} is not set`]);
    return v;
  }
  try {
    return readFileSync(pg.url.file, 'utf8').trim();
  } catch (err) {
    throw new ConfigError([`store.postgres.url: cannot read ${pg.url.file} (${(err as Error).message})`]);
  }
}

/** Whether the config selects PostgreSQL (a `store.postgres` section, or DATABASE_URL) rather than SQLite. */
export function usesPostgres(config: VigilConfig): boolean {
  return config.store.postgres !== undefined || Boolean(process.env.DATABASE_URL?.trim());
}

export function describeStore(config: VigilConfig): string {
  const url = postgresUrl(config);
  if (url === undefined) return `sqlite ${sqlitePath(config)}`;
  const u = new URL(url);
  return `postgres ${u.host}${u.pathname} schema ${config.store.postgres?.schema ?? 'public'}`;
}

export interface OpenStoreOptions {
  readonly readonly?: boolean;
  /** The gateway's long-lived store: SQLite checkpoints its WAL from a worker thread, errors go here. */
  readonly gateway?: { readonly onCheckpointError: (message: string) => void };
}

/** The store as the admin API reads it, and what to close when the gateway stops. */
export interface AdminReads {
  readonly store: AuditStore;
  close(): Promise<void>;
}

/**
 * The gateway's store for its admin API: on SQLite, its searches and listings on a read-only connection in a thread
 * of their own (see sqlite-read-worker.ts), so that they never hold the proxy's event loop; PostgreSQL's reads hold
 * nothing there already.
 */
export function adminReads(store: AuditStore): AdminReads {
  if (!(store instanceof SqliteAuditStore)) return { store, close: async () => undefined };
  const worker = new SqliteReadWorker(store.file);
  return { store: readsOffThread(store, worker), close: () => worker.close() };
}

export async function openStore(config: VigilConfig, options: OpenStoreOptions = {}): Promise<AuditStore> {
  const url = postgresUrl(config);
  if (url !== undefined) {
    // Loaded only for a PostgreSQL store: a CLI command on the embedded one does not pay for the client.
    const { PostgresAuditStore, WRITER_RECONNECT_MS } = await import('./postgres/postgres-audit-store.js');
    try {
      return await PostgresAuditStore.open({
        url,
        schema: config.store.postgres?.schema ?? 'public',
        poolSize: config.store.postgres?.pool_size ?? 10,
        writerReconnectMs: config.store.postgres?.reconnect_grace ?? WRITER_RECONNECT_MS,
      });
    } catch (err) {
      const code = (err as { code?: string }).code;
      const where = config.store.postgres ? 'store.postgres.url' : 'DATABASE_URL';
      if (code === INSUFFICIENT_PRIVILEGE) {
        throw new ConfigError([insufficientPrivilegeProblem(config, url, where, err as Error)], { cause: err });
      }
      throw new ConfigError(
        [
          `cannot open the PostgreSQL store at ${describeStore(config)} (${code ?? (err as Error).message}): ` +
            `is it running, and is ${where} right?`,
        ],
        { cause: err },
      );
    }
  }
  const file = sqlitePath(config);
  try {
    return SqliteAuditStore.open({
      file,
      synchronous: config.store.sqlite.synchronous,
      readonly: options.readonly ?? false,
      ...(options.gateway
        ? { backgroundCheckpoints: true, onCheckpointError: options.gateway.onCheckpointError, gatewayLock: true }
        : {}),
    });
  } catch (err) {
    if (err instanceof StoreOutdatedError) {
      throw new ConfigError(
        [
          `${sqliteKey(config)}: ${err.message}. Start this version's vigil serve on it once (it upgrades the store as ` +
            'it opens it), or read it with the vigil that records into it now',
        ],
        { cause: err, heading: 'cannot open the store' },
      );
    }
    if (err instanceof StoreInUseError) {
      throw new ConfigError(
        [
          `${sqliteKey(config)}: the store ${file} is in use by another vigil serve (it holds ${err.lockFile}); ` +
            `stop that one first, or give this one another ${sqliteKey(config)}. Several gateways share one store on ` +
            'PostgreSQL (see README, "Several gateways on PostgreSQL")',
        ],
        { cause: err, heading: 'cannot open the store' },
      );
    }
    const code = (err as { code?: string }).code;
    if (options.readonly && !existsSync(path.dirname(file))) {
      // better-sqlite3 says only "Cannot open database because the directory does not exist" (a TypeError, no code).
      throw new ConfigError(
        [
          `${sqliteKey(config)}: no store at ${file}, its folder does not exist; name the folder vigil serve records into`,
        ],
        { cause: err },
      );
    }
    if (options.readonly && !existsSync(file)) {
      // The folder is there but nothing was ever recorded into it: SQLite says only "unable to open database file",
      // which read as if the folder were not writable.
      throw new ConfigError(
        [
          `${sqliteKey(config)}: no store at ${file}: nothing has been recorded there yet; name the folder vigil ` +
            'serve records into, or start vigil serve with it first',
        ],
        { cause: err },
      );
    }
    if (code === 'SQLITE_FULL' || code === 'ENOSPC') {
      throw new ConfigError([diskFullProblem(config, file, err as Error)], {
        cause: err,
        heading: 'cannot open the store',
      });
    }
    if (code === undefined || !UNWRITABLE.has(code)) throw err;
    throw new ConfigError([unwritableStoreProblem(config, file, err as Error)], { cause: err });
  }
}

/** SQLSTATE insufficient_privilege: the server is up and the login worked, but the role may not do this. */
const INSUFFICIENT_PRIVILEGE = '42501';

/**
 * Opening creates the schema and runs its migrations, which the append-only gateway role may not do: on a first start
 * with that role, or with DATABASE_URL and the default `public` schema on PostgreSQL 15+ (no CREATE on it for others).
 */
function insufficientPrivilegeProblem(config: VigilConfig, url: string, where: string, err: Error): string {
  const schema = config.store.postgres?.schema ?? 'public';
  const role = new URL(url).username || `the role ${where} logs in as`;
  return (
    `${where}: role ${role} may not create or migrate schema ${schema} (42501: ${err.message}); the schema owner must ` +
    'start Vigil (or run a CLI command such as vigil keys list) once first, with a URL that logs in as the owner, which ' +
    `creates and migrates the schema; then give this role access with vigil store grants --role ${role}`
  );
}

/** Errors that mean the store's folder or file cannot be created or written (fs errno codes, SQLite result codes). */
const UNWRITABLE = new Set(['EACCES', 'EPERM', 'ENOTDIR', 'EROFS', 'EEXIST', 'SQLITE_CANTOPEN', 'SQLITE_READONLY']);

/** The config key that places the SQLite store, as an operator-facing message names it. */
function sqliteKey(config: VigilConfig): string {
  return config.store.sqlite.path !== undefined ? 'store.sqlite.path' : 'data_dir (--data-dir)';
}

/** Opening writes (the log, migrations): on a full disk it cannot. */
function diskFullProblem(config: VigilConfig, file: string, err: Error): string {
  const where = config.store.sqlite.path !== undefined ? 'store.sqlite.path' : '--data-dir or data_dir';
  return (
    `${sqliteKey(config)}: the disk holding ${file} is full (${err.message.split('\n')[0]}); free space on it, or ` +
    `give ${where} another place`
  );
}

function unwritableStoreProblem(config: VigilConfig, file: string, err: Error): string {
  const reason = err.message.split('\n')[0];
  if (config.store.sqlite.path !== undefined) {
    return (
      `store.sqlite.path ${file}: cannot create or write the store there (${reason}); its folder must be a ` +
      'writable directory: create it, or give store.sqlite.path another place'
    );
  }
  return (
    `data_dir (--data-dir) ${config.data_dir}: must be a writable directory (${reason}); create it with write permission for ` +
    'this user, or choose another with --data-dir or data_dir in the config'
  );
}
