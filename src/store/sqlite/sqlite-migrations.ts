/**
 * Forward-only schema migrations for the SQLite store. Append a new entry; never edit a released one.
 */
export const SQLITE_MIGRATIONS: readonly string[] = [
  // 1: the ledger, blobs, and the exchange indexes.
  `
  CREATE TABLE records (
    seq         INTEGER PRIMARY KEY,
    chain       TEXT    NOT NULL,
    chain_seq   INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    exchange_id TEXT,
    session_id  TEXT,
    at          INTEGER NOT NULL,
    data        TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL,
    UNIQUE (chain, chain_seq)
  );
  CREATE INDEX records_exchange ON records (exchange_id) WHERE exchange_id IS NOT NULL;
  CREATE INDEX records_session ON records (session_id) WHERE session_id IS NOT NULL;
  CREATE INDEX records_kind ON records (kind, seq);

  CREATE TABLE blobs (
    hash TEXT PRIMARY KEY,
    data BLOB NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE exchanges (
    id             TEXT PRIMARY KEY,
    session_id     TEXT    NOT NULL,
    connection     TEXT    NOT NULL,
    caller_subject TEXT    NOT NULL,
    caller_method  TEXT    NOT NULL,
    method         TEXT    NOT NULL,
    path           TEXT    NOT NULL,
    model          TEXT,
    stream         INTEGER NOT NULL,
    started_at     INTEGER NOT NULL
  );
  CREATE INDEX exchanges_session ON exchanges (session_id, started_at);
  CREATE INDEX exchanges_started ON exchanges (started_at);
  CREATE INDEX exchanges_connection ON exchanges (connection, started_at);
  CREATE INDEX exchanges_caller ON exchanges (caller_subject, started_at);
  CREATE INDEX exchanges_model ON exchanges (model, started_at);

  CREATE TABLE exchange_results (
    exchange_id   TEXT PRIMARY KEY,
    ended_at      INTEGER NOT NULL,
    status        INTEGER,
    outcome       TEXT    NOT NULL,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    model         TEXT
  );
  CREATE INDEX exchange_results_outcome ON exchange_results (outcome, ended_at);

  -- Append-only, enforced by the database: recorded rows cannot be changed or removed through SQL.
  CREATE TRIGGER records_append_only_u BEFORE UPDATE ON records BEGIN SELECT RAISE(ABORT, 'records are append-only'); END;
  CREATE TRIGGER records_append_only_d BEFORE DELETE ON records BEGIN SELECT RAISE(ABORT, 'records are append-only'); END;
  CREATE TRIGGER blobs_append_only_u BEFORE UPDATE ON blobs BEGIN SELECT RAISE(ABORT, 'blobs are append-only'); END;
  CREATE TRIGGER blobs_append_only_d BEFORE DELETE ON blobs BEGIN SELECT RAISE(ABORT, 'blobs are append-only'); END;
  CREATE TRIGGER exchanges_append_only_u BEFORE UPDATE ON exchanges BEGIN SELECT RAISE(ABORT, 'exchanges are append-only'); END;
  CREATE TRIGGER exchanges_append_only_d BEFORE DELETE ON exchanges BEGIN SELECT RAISE(ABORT, 'exchanges are append-only'); END;
  CREATE TRIGGER results_append_only_u BEFORE UPDATE ON exchange_results BEGIN SELECT RAISE(ABORT, 'exchange results are append-only'); END;
  CREATE TRIGGER results_append_only_d BEFORE DELETE ON exchange_results BEGIN SELECT RAISE(ABORT, 'exchange results are append-only'); END;
  `,
  // 2: gateway keys, indexed from key.created / key.revoked records. revoked_at is set once, by a key.revoked record.
  `
  CREATE TABLE gateway_keys (
    hash        TEXT PRIMARY KEY,
    name        TEXT    NOT NULL,
    owner       TEXT    NOT NULL,
    connections TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
  );
  CREATE UNIQUE INDEX gateway_keys_live_name ON gateway_keys (name) WHERE revoked_at IS NULL;
  `,
];
