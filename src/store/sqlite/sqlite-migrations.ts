/**
 * Forward-only schema migrations for the SQLite store. Append a new entry; never edit a released one.
 */
/**
 * A token count from a response record's usage (`d`, its data), as the exchange index takes it (exchange-index.ts): a
 * positive integer, else 0.
 */
function usageCount(field: string): string {
  const path = `'$.usage.${field}'`;
  return `CASE WHEN json_type(d, ${path}) = 'integer' AND json_extract(d, ${path}) > 0 THEN json_extract(d, ${path}) ELSE 0 END`;
}

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

  -- A rowid table: blobs are appended in order, only the small hash index takes random inserts (a WITHOUT ROWID
  -- table keyed by a random hash would split pages of kilobyte rows at random).
  CREATE TABLE blobs (
    id   INTEGER PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    data BLOB NOT NULL
  );

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
  // 3: what the audit API filters and searches on. Callers' issuer and groups (from exchange.request records) and the
  // masking types found (from exchange.response records) are filled in from the ledger for exchanges recorded before
  // this migration; the full-text index holds the masked search text the recorder writes from now on.
  `
  CREATE TABLE exchange_callers (
    exchange_id TEXT PRIMARY KEY,
    issuer      TEXT,
    email       TEXT
  ) WITHOUT ROWID;
  CREATE INDEX exchange_callers_issuer ON exchange_callers (issuer);

  CREATE TABLE exchange_groups (
    group_name  TEXT NOT NULL,
    exchange_id TEXT NOT NULL,
    PRIMARY KEY (group_name, exchange_id)
  ) WITHOUT ROWID;
  CREATE INDEX exchange_groups_exchange ON exchange_groups (exchange_id);

  CREATE TABLE exchange_masking (
    type        TEXT    NOT NULL,
    exchange_id TEXT    NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (type, exchange_id)
  ) WITHOUT ROWID;
  CREATE INDEX exchange_masking_exchange ON exchange_masking (exchange_id);

  -- unicode61: whole words, case and diacritics folded, no stemming, so a search finds the word that was used
  -- (and matches what PostgreSQL's 'simple' configuration does).
  CREATE VIRTUAL TABLE exchange_text USING fts5(exchange_id UNINDEXED, text, tokenize = 'unicode61');

  INSERT OR IGNORE INTO exchange_callers (exchange_id, issuer, email)
    SELECT exchange_id, json_extract(data, '$.caller.issuer'), json_extract(data, '$.caller.email')
    FROM records WHERE kind = 'exchange.request' AND exchange_id IS NOT NULL;
  INSERT OR IGNORE INTO exchange_groups (group_name, exchange_id)
    SELECT g.value, r.exchange_id FROM records r, json_each(r.data, '$.caller.groups') g
    WHERE r.kind = 'exchange.request' AND r.exchange_id IS NOT NULL AND g.type = 'text';
  INSERT OR IGNORE INTO exchange_masking (type, exchange_id, count)
    SELECT m.key, r.exchange_id, m.value FROM records r, json_each(r.data, '$.masking.counts') m
    WHERE r.kind = 'exchange.response' AND r.exchange_id IS NOT NULL AND m.type = 'integer' AND m.value > 0;

  CREATE TRIGGER exchange_callers_append_only_u BEFORE UPDATE ON exchange_callers BEGIN SELECT RAISE(ABORT, 'exchange callers are append-only'); END;
  CREATE TRIGGER exchange_callers_append_only_d BEFORE DELETE ON exchange_callers BEGIN SELECT RAISE(ABORT, 'exchange callers are append-only'); END;
  CREATE TRIGGER exchange_groups_append_only_u BEFORE UPDATE ON exchange_groups BEGIN SELECT RAISE(ABORT, 'exchange groups are append-only'); END;
  CREATE TRIGGER exchange_groups_append_only_d BEFORE DELETE ON exchange_groups BEGIN SELECT RAISE(ABORT, 'exchange groups are append-only'); END;
  CREATE TRIGGER exchange_masking_append_only_u BEFORE UPDATE ON exchange_masking BEGIN SELECT RAISE(ABORT, 'exchange masking is append-only'); END;
  CREATE TRIGGER exchange_masking_append_only_d BEFORE DELETE ON exchange_masking BEGIN SELECT RAISE(ABORT, 'exchange masking is append-only'); END;
  `,
  // 4: SIEM delivery cursors, one per sink and chain. Positions, not evidence: updated in place.
  `
  CREATE TABLE sink_cursors (
    sink      TEXT    NOT NULL,
    chain     TEXT    NOT NULL,
    chain_seq INTEGER NOT NULL,
    PRIMARY KEY (sink, chain)
  ) WITHOUT ROWID;
  `,
  // 5: retention, legal holds and signed digests.
  //  - Deletes stay refused except inside a retention purge, which inserts a row in purge_authorizations and removes
  //    it again in the same transaction (so no committed state ever holds one). Updates stay refused always. This
  //    guards against mistakes, not against someone who can write the file: verify() is what catches deletions.
  //  - blob_refs says which records refer to which blob, so a purge can remove the blobs nothing refers to any more;
  //    filled in here from the ledger for records written before.
  //  - holds indexes hold.added / hold.released records.
  `
  CREATE TABLE purge_authorizations (
    purge_id TEXT PRIMARY KEY,
    at       INTEGER NOT NULL
  );

  CREATE TABLE blob_refs (
    blob_hash  TEXT    NOT NULL,
    record_seq INTEGER NOT NULL,
    PRIMARY KEY (blob_hash, record_seq)
  ) WITHOUT ROWID;
  INSERT OR IGNORE INTO blob_refs (blob_hash, record_seq)
    SELECT j.value, r.seq FROM records r, json_tree(r.data) j
    WHERE r.data LIKE '%"$blob"%' AND j.key = '$blob' AND j.type = 'text';

  CREATE TABLE holds (
    id             TEXT PRIMARY KEY,
    session_id     TEXT,
    caller_subject TEXT,
    reason         TEXT    NOT NULL,
    created_by     TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    released_at    INTEGER,
    released_by    TEXT,
    release_reason TEXT
  );
  CREATE INDEX holds_session ON holds (session_id) WHERE released_at IS NULL;
  CREATE INDEX holds_caller ON holds (caller_subject) WHERE released_at IS NULL;

  CREATE INDEX exchange_results_ended ON exchange_results (ended_at);
  -- A purged exchange's words leave the full-text index too, not only its rows (SQLite 3.44+).
  INSERT INTO exchange_text (exchange_text, rank) VALUES ('secure-delete', 1);

  DROP TRIGGER records_append_only_d;
  CREATE TRIGGER records_append_only_d BEFORE DELETE ON records WHEN NOT EXISTS (SELECT 1 FROM purge_authorizations)
    BEGIN SELECT RAISE(ABORT, 'records are append-only'); END;
  DROP TRIGGER blobs_append_only_d;
  CREATE TRIGGER blobs_append_only_d BEFORE DELETE ON blobs WHEN NOT EXISTS (SELECT 1 FROM purge_authorizations)
    BEGIN SELECT RAISE(ABORT, 'blobs are append-only'); END;
  DROP TRIGGER exchanges_append_only_d;
  CREATE TRIGGER exchanges_append_only_d BEFORE DELETE ON exchanges WHEN NOT EXISTS (SELECT 1 FROM purge_authorizations)
    BEGIN SELECT RAISE(ABORT, 'exchanges are append-only'); END;
  DROP TRIGGER results_append_only_d;
  CREATE TRIGGER results_append_only_d BEFORE DELETE ON exchange_results WHEN NOT EXISTS (SELECT 1 FROM purge_authorizations)
    BEGIN SELECT RAISE(ABORT, 'exchange results are append-only'); END;
  DROP TRIGGER exchange_callers_append_only_d;
  CREATE TRIGGER exchange_callers_append_only_d BEFORE DELETE ON exchange_callers WHEN NOT EXISTS (SELECT 1 FROM purge_authorizations)
    BEGIN SELECT RAISE(ABORT, 'exchange callers are append-only'); END;
  DROP TRIGGER exchange_groups_append_only_d;
  CREATE TRIGGER exchange_groups_append_only_d BEFORE DELETE ON exchange_groups WHEN NOT EXISTS (SELECT 1 FROM purge_authorizations)
    BEGIN SELECT RAISE(ABORT, 'exchange groups are append-only'); END;
  DROP TRIGGER exchange_masking_append_only_d;
  CREATE TRIGGER exchange_masking_append_only_d BEFORE DELETE ON exchange_masking WHEN NOT EXISTS (SELECT 1 FROM purge_authorizations)
    BEGIN SELECT RAISE(ABORT, 'exchange masking is append-only'); END;
  CREATE TRIGGER blob_refs_append_only_u BEFORE UPDATE ON blob_refs BEGIN SELECT RAISE(ABORT, 'blob refs are append-only'); END;
  CREATE TRIGGER blob_refs_append_only_d BEFORE DELETE ON blob_refs WHEN NOT EXISTS (SELECT 1 FROM purge_authorizations)
    BEGIN SELECT RAISE(ABORT, 'blob refs are append-only'); END;
  `,
  // 6: search text waits in a plain table and enters the full-text index in batches (an FTS5 insert per commit writes
  // a segment of its own: a few pages per exchange), see SqliteAuditStore.indexPendingText. A queue, not evidence.
  `
  CREATE TABLE exchange_text_pending (id INTEGER PRIMARY KEY, exchange_id TEXT NOT NULL, text TEXT NOT NULL);
  `,
  // 7: which full-text rows are an exchange's. exchange_id is UNINDEXED in the full-text table, so a purge found an
  // exchange's rows by reading the whole table (all the text) once per batch. An index, not evidence.
  `
  CREATE TABLE exchange_text_rows (text_rowid INTEGER PRIMARY KEY, exchange_id TEXT NOT NULL);
  CREATE INDEX exchange_text_rows_exchange ON exchange_text_rows (exchange_id);
  INSERT INTO exchange_text_rows (text_rowid, exchange_id) SELECT rowid, exchange_id FROM exchange_text;
  `,
  // 8: blob_refs keyed by the blob's row id, not its hash. Keyed by a hash, each piece a request refers to (a dozen
  // for an agent's turn) landed on a leaf of its own at random: a third of the pages the request's commit wrote, before
  // it could be forwarded. Row ids are handed out in order, so the pieces of one conversation are neighbours, and the
  // pieces every request shares (system prompt, tools) keep appending to the same few leaves.
  `
  CREATE TABLE blob_refs_by_id (
    blob_id    INTEGER NOT NULL,
    record_seq INTEGER NOT NULL,
    PRIMARY KEY (blob_id, record_seq)
  ) WITHOUT ROWID;
  INSERT INTO blob_refs_by_id (blob_id, record_seq)
    SELECT b.id, r.record_seq FROM blob_refs r JOIN blobs b ON b.hash = r.blob_hash;
  DROP TABLE blob_refs;
  ALTER TABLE blob_refs_by_id RENAME TO blob_refs;
  CREATE TRIGGER blob_refs_append_only_u BEFORE UPDATE ON blob_refs BEGIN SELECT RAISE(ABORT, 'blob refs are append-only'); END;
  CREATE TRIGGER blob_refs_append_only_d BEFORE DELETE ON blob_refs WHEN NOT EXISTS (SELECT 1 FROM purge_authorizations)
    BEGIN SELECT RAISE(ABORT, 'blob refs are append-only'); END;
  `,
  // 9: two record indexes without the exchanges' records, which are most of them and are found by exchange instead:
  // each was one more page written by every commit of an exchange (the request's before it is forwarded).
  //  - by kind: asked for approvals, purges, reads, deliveries (the predicate is repeated in those queries, so
  //    SQLite can use it; see NOT_EXCHANGE_KIND_SQL);
  //  - by session: an exchange's own records are found through exchanges.session_id, the rest (approvals…) here.
  `
  DROP INDEX records_kind;
  CREATE INDEX records_kind ON records (kind, seq)
    WHERE kind NOT IN ('exchange.request', 'exchange.events', 'exchange.response');
  DROP INDEX records_session;
  CREATE INDEX records_session ON records (session_id)
    WHERE session_id IS NOT NULL AND kind NOT IN ('exchange.request', 'exchange.events', 'exchange.response');
  `,
  // 10: each chain's last digest, found without walking the chain back to it: the running gateway asks for every
  // chain's on each check of overdue digests (UNDIGESTED_TAILS), and a chain that stopped signing can be long since.
  `
  CREATE INDEX records_digests ON records (chain, chain_seq) WHERE kind = 'digest.signed';
  `,
  // 11: a request record's references are indexed in blob_refs only where its base — the previous request of its
  // conversation, still in the store — has none (see ref-bases.ts): a long session's request refers to hundreds of
  // message groups, and a row for each was a page written by every commit. A purge that removes a base gives the
  // records built on it rows of their own first.
  `
  CREATE TABLE blob_ref_bases (
    record_seq INTEGER PRIMARY KEY,
    base_seq   INTEGER NOT NULL
  );
  CREATE INDEX blob_ref_bases_base ON blob_ref_bases (base_seq);
  CREATE TRIGGER blob_ref_bases_append_only_u BEFORE UPDATE ON blob_ref_bases BEGIN SELECT RAISE(ABORT, 'blob ref bases are append-only'); END;
  CREATE TRIGGER blob_ref_bases_append_only_d BEFORE DELETE ON blob_ref_bases WHEN NOT EXISTS (SELECT 1 FROM purge_authorizations)
    BEGIN SELECT RAISE(ABORT, 'blob ref bases are append-only'); END;
  `,
  // 12: why each exchange's answer stopped (`stop_reason`: end_turn, tool_use, max_tokens, refusal, …), as the
  // response record has it, for the `stop_reason` filter: a refusal by a model's safety classifiers is one to find.
  // Exchanges recorded before are filled from their response records (the first, as the index keeps); the row
  // cannot be changed otherwise, so the update runs with the append-only trigger set aside, in this migration's
  // transaction. Indexed by value alone: few values, each one's rows appended at its end.
  `
  ALTER TABLE exchange_results ADD COLUMN stop_reason TEXT;
  DROP TRIGGER results_append_only_u;
  UPDATE exchange_results SET stop_reason = (
    SELECT CASE WHEN json_valid(r.data) THEN json_extract(r.data, '$.stopReason') END FROM records r
    WHERE r.exchange_id = exchange_results.exchange_id AND r.kind = 'exchange.response' ORDER BY r.seq LIMIT 1
  );
  CREATE TRIGGER results_append_only_u BEFORE UPDATE ON exchange_results BEGIN SELECT RAISE(ABORT, 'exchange results are append-only'); END;
  CREATE INDEX exchange_results_stop_reason ON exchange_results (stop_reason) WHERE stop_reason IS NOT NULL;
  `,
  // 13: the input an exchange read from the prompt cache and wrote to it (of those writes, the ones kept an hour), apart
  // from input_tokens, which counts them all: they are billed at other rates (a cache read at a tenth of input or
  // less), so a usage report prices them apart (see pricing.ts). Exchanges recorded before are filled from their
  // first response record, as in migration 12 (null where it reported no usage).
  `
  ALTER TABLE exchange_results ADD COLUMN cache_read_tokens INTEGER;
  ALTER TABLE exchange_results ADD COLUMN cache_write_tokens INTEGER;
  ALTER TABLE exchange_results ADD COLUMN cache_write_1h_tokens INTEGER;
  DROP TRIGGER results_append_only_u;
  UPDATE exchange_results SET (cache_read_tokens, cache_write_tokens, cache_write_1h_tokens) = (
    SELECT ${usageCount('cache_read_input_tokens')}, ${usageCount('cache_creation_input_tokens')},
      min(${usageCount('cache_creation.ephemeral_1h_input_tokens')}, ${usageCount('cache_creation_input_tokens')})
    FROM (
      SELECT CASE WHEN json_valid(r.data) THEN r.data END AS d FROM records r
      WHERE r.exchange_id = exchange_results.exchange_id AND r.kind = 'exchange.response' ORDER BY r.seq LIMIT 1
    )
  ) WHERE input_tokens IS NOT NULL;
  CREATE TRIGGER results_append_only_u BEFORE UPDATE ON exchange_results BEGIN SELECT RAISE(ABORT, 'exchange results are append-only'); END;
  `,
];

/** The records left out of `records_kind` (migration 9), as its predicate spells them. */
export const EXCHANGE_KINDS = ['exchange.request', 'exchange.events', 'exchange.response'] as const;
/** That predicate, repeated word for word in a query so that SQLite may use the index. */
export const NOT_EXCHANGE_KIND_SQL = `kind NOT IN (${EXCHANGE_KINDS.map((k) => `'${k}'`).join(', ')})`;
