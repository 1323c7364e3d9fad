/**
 * Forward-only schema migrations for the PostgreSQL store. Append a new entry; never edit a released one.
 *
 * Each migration runs unqualified inside the store's schema (the connection's `search_path`), in the one transaction
 * that also holds the migration lock, so a migration either lands whole or not at all.
 */
/**
 * The function that indexes key and hold records as they are inserted (migration 6; migration 14 replaces it so that a
 * key's revocation may be brought forward). `revokes`: which `gateway_keys` rows a `key.revoked` record updates.
 */
function indexKeysAndHoldsFunction(create: string, revokes: string): string {
  return `  ${create} vigil_index_keys_and_holds() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $fn$
  DECLARE
    d jsonb := NEW.data::jsonb;
  BEGIN
    IF NEW.kind = 'key.created' THEN
      INSERT INTO gateway_keys (hash, name, owner, connections, created_at, expires_at)
        VALUES (d->>'hash', d->>'name', d->>'owner',
                ARRAY(SELECT c FROM jsonb_array_elements_text(d->'connections') WITH ORDINALITY AS t(c, i) ORDER BY i),
                (d->>'createdAt')::bigint, (d->>'expiresAt')::bigint);
    ELSIF NEW.kind = 'key.revoked' THEN
      UPDATE gateway_keys SET revoked_at = (d->>'revokedAt')::bigint WHERE hash = d->>'hash' AND ${revokes};
    ELSIF NEW.kind = 'hold.added' THEN
      INSERT INTO holds (id, session_id, caller_subject, reason, created_by, created_at)
        VALUES (d->>'holdId', d->>'session', d->>'caller', d->>'reason', d->>'by', (d->>'at')::bigint);
    ELSIF NEW.kind = 'hold.released' THEN
      UPDATE holds SET released_at = (d->>'at')::bigint, released_by = d->>'by', release_reason = d->>'reason'
        WHERE id = d->>'holdId' AND released_at IS NULL;
    END IF;
    RETURN NULL;
  END
  $fn$;
`;
}

export const POSTGRES_MIGRATIONS: readonly string[] = [
  // 1: the ledger, blobs, and the exchange indexes; the same tables as SQLite's first migration.
  //
  // Ready for time partitioning, not partitioned yet: when one table grows past what a single heap serves well,
  // recreate `records` as `PARTITION BY RANGE (at)` (monthly partitions) and `exchanges` by `started_at`. PostgreSQL
  // requires the partition key in every unique constraint, so the keys then become PRIMARY KEY (seq, at) and
  // UNIQUE (chain, chain_seq, at); nothing the store queries changes, because every lookup already goes through
  // secondary indexes and verification pages by (chain, chain_seq). The append-only triggers below are row triggers
  // and statement triggers, which PostgreSQL 13+ clones onto every partition. Old partitions can then be detached to
  // cold storage as a whole, which is how retention works on an append-only ledger.
  `
  CREATE TABLE records (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain       text   NOT NULL,
    chain_seq   bigint NOT NULL,
    kind        text   NOT NULL,
    exchange_id text,
    session_id  text,
    at          bigint NOT NULL,
    -- The exact JSON text that was hashed. Not jsonb: jsonb normalises key order and whitespace, which would change
    -- the bytes and break every hash.
    data        text   NOT NULL,
    prev_hash   text   NOT NULL,
    hash        text   NOT NULL,
    UNIQUE (chain, chain_seq)
  );
  CREATE INDEX records_exchange ON records (exchange_id) WHERE exchange_id IS NOT NULL;
  CREATE INDEX records_session ON records (session_id) WHERE session_id IS NOT NULL;
  CREATE INDEX records_kind ON records (kind, seq);
  CREATE INDEX records_at ON records (at);

  CREATE TABLE blobs (
    hash text  PRIMARY KEY,
    data bytea NOT NULL
  );

  CREATE TABLE exchanges (
    id             text    PRIMARY KEY,
    session_id     text    NOT NULL,
    connection     text    NOT NULL,
    caller_subject text    NOT NULL,
    caller_method  text    NOT NULL,
    method         text    NOT NULL,
    path           text    NOT NULL,
    model          text,
    stream         boolean NOT NULL,
    started_at     bigint  NOT NULL
  );
  CREATE INDEX exchanges_session ON exchanges (session_id, started_at);
  CREATE INDEX exchanges_started ON exchanges (started_at);
  CREATE INDEX exchanges_connection ON exchanges (connection, started_at);
  CREATE INDEX exchanges_caller ON exchanges (caller_subject, started_at);
  CREATE INDEX exchanges_model ON exchanges (model, started_at);

  CREATE TABLE exchange_results (
    exchange_id   text    PRIMARY KEY,
    ended_at      bigint  NOT NULL,
    status        integer,
    outcome       text    NOT NULL,
    input_tokens  bigint,
    output_tokens bigint,
    model         text
  );
  CREATE INDEX exchange_results_outcome ON exchange_results (outcome, ended_at);

  -- Append-only, enforced by the database: recorded rows cannot be changed or removed through SQL. Row triggers do
  -- not fire on TRUNCATE, hence the statement triggers. Whoever owns the tables can still disable triggers; the
  -- gateway should therefore not connect as the owner (see appendOnlyGrantsSql) and verify() is the final word.
  CREATE FUNCTION vigil_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    RAISE EXCEPTION '% are append-only', replace(TG_TABLE_NAME, '_', ' ')
      USING ERRCODE = 'insufficient_privilege', HINT = 'the audit ledger can only be appended to';
  END
  $fn$;
  CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE ON records
    FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER blobs_append_only BEFORE UPDATE OR DELETE ON blobs
    FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER blobs_no_truncate BEFORE TRUNCATE ON blobs
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER exchanges_append_only BEFORE UPDATE OR DELETE ON exchanges
    FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER exchanges_no_truncate BEFORE TRUNCATE ON exchanges
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER exchange_results_append_only BEFORE UPDATE OR DELETE ON exchange_results
    FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER exchange_results_no_truncate BEFORE TRUNCATE ON exchange_results
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
  `,
  // 2: gateway keys, indexed from key.created / key.revoked records (same number as SQLite's). Not append-only:
  // revoked_at is set once, by a key.revoked record; the records are the evidence, this table only answers lookups.
  `
  CREATE TABLE gateway_keys (
    hash        text   PRIMARY KEY,
    name        text   NOT NULL,
    owner       text   NOT NULL,
    connections text[] NOT NULL,
    created_at  bigint NOT NULL,
    expires_at  bigint,
    revoked_at  bigint
  );
  CREATE UNIQUE INDEX gateway_keys_live_name ON gateway_keys (name) WHERE revoked_at IS NULL;
  `,
  // 3: what the audit API filters and searches on (same number as SQLite's). Callers' issuer and groups and the
  // masking types found are filled in from the ledger for exchanges recorded before; the full-text index holds the
  // masked search text the recorder writes from now on.
  //
  // Full-text configuration 'simple': lower-cased whole words, no stemming and no stop words, so a search finds the
  // word that was used in any language (and matches SQLite's unicode61 tokenizer).
  `
  CREATE TABLE exchange_callers (
    exchange_id text PRIMARY KEY,
    issuer      text,
    email       text
  );
  CREATE INDEX exchange_callers_issuer ON exchange_callers (issuer);

  CREATE TABLE exchange_groups (
    group_name  text NOT NULL,
    exchange_id text NOT NULL,
    PRIMARY KEY (group_name, exchange_id)
  );
  CREATE INDEX exchange_groups_exchange ON exchange_groups (exchange_id);

  CREATE TABLE exchange_masking (
    type        text   NOT NULL,
    exchange_id text   NOT NULL,
    count       bigint NOT NULL,
    PRIMARY KEY (type, exchange_id)
  );
  CREATE INDEX exchange_masking_exchange ON exchange_masking (exchange_id);

  CREATE TABLE exchange_text (
    exchange_id text PRIMARY KEY,
    text        text NOT NULL,
    tsv         tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED
  );
  CREATE INDEX exchange_text_tsv ON exchange_text USING gin (tsv);

  -- json operators refuse a \\u0000 escape anywhere in the value; one turned into a space keeps every other
  -- escape intact (an escaped backslash followed by "u0000" stays an escaped backslash followed by "u0020").
  CREATE FUNCTION pg_temp.vigil_json(data text) RETURNS json LANGUAGE sql IMMUTABLE
    AS $fn$ SELECT replace(data, '\\u0000', '\\u0020')::json $fn$;

  INSERT INTO exchange_callers (exchange_id, issuer, email)
    SELECT exchange_id, pg_temp.vigil_json(data) #>> '{caller,issuer}', pg_temp.vigil_json(data) #>> '{caller,email}'
    FROM records WHERE kind = 'exchange.request' AND exchange_id IS NOT NULL
    ON CONFLICT DO NOTHING;
  INSERT INTO exchange_groups (group_name, exchange_id)
    SELECT DISTINCT g, r.exchange_id
    FROM records r, json_array_elements_text(
      CASE WHEN json_typeof(pg_temp.vigil_json(r.data) #> '{caller,groups}') = 'array' THEN pg_temp.vigil_json(r.data) #> '{caller,groups}' ELSE '[]'::json END
    ) g
    WHERE r.kind = 'exchange.request' AND r.exchange_id IS NOT NULL
    ON CONFLICT DO NOTHING;
  INSERT INTO exchange_masking (type, exchange_id, count)
    SELECT m.key, r.exchange_id, (m.value #>> '{}')::bigint
    FROM records r, json_each(
      CASE WHEN json_typeof(pg_temp.vigil_json(r.data) #> '{masking,counts}') = 'object' THEN pg_temp.vigil_json(r.data) #> '{masking,counts}' ELSE '{}'::json END
    ) m
    WHERE r.kind = 'exchange.response' AND r.exchange_id IS NOT NULL AND json_typeof(m.value) = 'number'
      AND (m.value #>> '{}')::numeric > 0
    ON CONFLICT DO NOTHING;

  CREATE TRIGGER exchange_callers_append_only BEFORE UPDATE OR DELETE ON exchange_callers
    FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER exchange_callers_no_truncate BEFORE TRUNCATE ON exchange_callers
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER exchange_groups_append_only BEFORE UPDATE OR DELETE ON exchange_groups
    FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER exchange_groups_no_truncate BEFORE TRUNCATE ON exchange_groups
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER exchange_masking_append_only BEFORE UPDATE OR DELETE ON exchange_masking
    FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER exchange_masking_no_truncate BEFORE TRUNCATE ON exchange_masking
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER exchange_text_append_only BEFORE UPDATE OR DELETE ON exchange_text
    FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER exchange_text_no_truncate BEFORE TRUNCATE ON exchange_text
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
  `,
  // 4: SIEM delivery cursors, one per sink and chain (same number as SQLite's). Positions, not evidence.
  `
  CREATE TABLE sink_cursors (
    sink      text   NOT NULL,
    chain     text   NOT NULL,
    chain_seq bigint NOT NULL,
    PRIMARY KEY (sink, chain)
  );
  `,
  // 5: retention, legal holds and signed digests (same number as SQLite's).
  //  - The append-only trigger function lets a DELETE through only inside a retention purge's transaction, which sets
  //    vigil.purge (SET LOCAL). Any role can set that, so what keeps the gateway from deleting is its grants: the
  //    append-only role has no DELETE (appendOnlyGrantsSql); purges run as the schema owner.
  //  - blob_refs says which records refer to which blob (filled in from the ledger for records written before).
  //  - holds indexes hold.added / hold.released records.
  `
  CREATE OR REPLACE FUNCTION vigil_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
  BEGIN
    IF TG_OP = 'DELETE' AND current_setting('vigil.purge', true) = 'on' THEN
      RETURN OLD;
    END IF;
    RAISE EXCEPTION '% are append-only', replace(TG_TABLE_NAME, '_', ' ')
      USING ERRCODE = 'insufficient_privilege', HINT = 'the audit ledger can only be appended to';
  END
  $fn$;

  CREATE TABLE blob_refs (
    blob_hash  text   NOT NULL,
    record_seq bigint NOT NULL,
    PRIMARY KEY (blob_hash, record_seq)
  );
  INSERT INTO blob_refs (blob_hash, record_seq)
    SELECT DISTINCT m[1], r.seq FROM records r, regexp_matches(r.data, '"\\$blob":"([0-9a-f]{64})"', 'g') m
    WHERE r.data LIKE '%"$blob"%'
    ON CONFLICT DO NOTHING;
  CREATE TRIGGER blob_refs_append_only BEFORE UPDATE OR DELETE ON blob_refs
    FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER blob_refs_no_truncate BEFORE TRUNCATE ON blob_refs
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();

  CREATE TABLE holds (
    id             text   PRIMARY KEY,
    session_id     text,
    caller_subject text,
    reason         text   NOT NULL,
    created_by     text   NOT NULL,
    created_at     bigint NOT NULL,
    released_at    bigint,
    released_by    text,
    release_reason text
  );
  CREATE INDEX holds_session ON holds (session_id) WHERE released_at IS NULL;
  CREATE INDEX holds_caller ON holds (caller_subject) WHERE released_at IS NULL;

  CREATE INDEX exchange_results_ended ON exchange_results (ended_at);
  `,
  // 6: the gateway-key and hold indexes are written by the database from the records, no longer by the writer.
  //  - They decide who may call and what retention may purge, and the append-only gateway role could UPDATE and
  //    INSERT them (to revoke a key, release a hold) — so it could also un-revoke a key, add a working key with no
  //    key.created record, or release a hold with no hold.released record. Now a trigger on records, running as
  //    the owner of this function (SECURITY DEFINER, search_path fixed to this schema, then pg_temp), indexes key.created /
  //    key.revoked / hold.added / hold.released records as they are inserted, by the rules the writer used, and the
  //    gateway role needs only SELECT on them (appendOnlyGrantsSql).
  //  - Every INSERT and UPDATE granted on the two tables to a role other than their owner is revoked here, so a
  //    store upgraded without running `vigil store grants` again is closed too.
  //  - What the gateway role can still do is append such records, like every writer: they are on the ledger,
  //    hash-chained, and go to the SIEM.
  `
${indexKeysAndHoldsFunction('CREATE FUNCTION', 'revoked_at IS NULL')}  -- Row by row, in insertion order, at the end of the INSERT: a key created and revoked in one batch is indexed, then
  -- revoked. Other records do not fire it (WHEN is checked as each row is inserted).
  CREATE TRIGGER records_index_keys_and_holds AFTER INSERT ON records FOR EACH ROW
    WHEN (NEW.kind IN ('key.created', 'key.revoked', 'hold.added', 'hold.released'))
    EXECUTE FUNCTION vigil_index_keys_and_holds();

  DO $do$
  DECLARE
    g text;
  BEGIN
    -- A SECURITY DEFINER function must not resolve names through the caller's search_path: this schema, then the
    -- session's temporary schema last (not first, where PostgreSQL otherwise looks for tables).
    EXECUTE format('ALTER FUNCTION vigil_index_keys_and_holds() SET search_path = %I, pg_temp', current_schema());
    FOR g IN
      SELECT DISTINCT p.grantee FROM information_schema.column_privileges p
      JOIN pg_tables t ON t.schemaname = p.table_schema AND t.tablename = p.table_name
      WHERE p.table_schema = current_schema() AND p.table_name IN ('gateway_keys', 'holds')
        AND p.privilege_type IN ('INSERT', 'UPDATE') AND p.grantee NOT IN (current_user, t.tableowner)
    LOOP
      EXECUTE format('REVOKE INSERT, UPDATE ON gateway_keys, holds FROM %s',
                     CASE WHEN g = 'PUBLIC' THEN 'PUBLIC' ELSE quote_ident(g) END);
    END LOOP;
  END
  $do$;
  `,
  // 7: which migrations ran is the owner's to write. A gateway role that could insert a version made an upgrade skip
  // the migration (6: the trigger that keeps the key and hold indexes) or stopped every gateway from starting.
  `
  DO $do$
  DECLARE
    g text;
  BEGIN
    FOR g IN
      SELECT DISTINCT p.grantee FROM information_schema.table_privileges p
      JOIN pg_tables t ON t.schemaname = p.table_schema AND t.tablename = p.table_name
      WHERE p.table_schema = current_schema() AND p.table_name = 'schema_migrations'
        AND p.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
        AND p.grantee NOT IN (current_user, t.tableowner)
    LOOP
      EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations FROM %s',
                     CASE WHEN g = 'PUBLIC' THEN 'PUBLIC' ELSE quote_ident(g) END);
    END LOOP;
  END
  $do$;
  `,
  // 8: a record is appended only where its chain continues: chain_seq one past the chain's head (1 for a new chain) and
  //    prev_hash the head's hash (GENESIS for the first record). The append-only gateway role could insert a
  //    record anywhere — at chain_seq 0 or below, or after a gap — and the key and hold index trigger indexed it.
  //  - Each process appends to its own chain, one transaction at a time, so the head a row is checked against is its
  //    own last append. A row sees the rows inserted before it in the same statement (a BEFORE ROW trigger function is
  //    volatile). Two transactions racing on one chain both pass the check, and the unique (chain, chain_seq) index
  //    lets one of them commit.
  //  - The head is never purged (retention skips exchanges at a chain's head), so it is there to check against.
  //  - SECURITY DEFINER with search_path fixed (as migration 6): the caller's search_path (a temporary `records`
  //    first) must not decide which table the head is read from.
  //  - What it does not refuse: a well-formed new chain (chain_seq 1, GENESIS). A key or hold record in one is refused
  //    by migration 9 unless the owner writes it; `verify --public-key` reports one no signed digest covers.
  `
  CREATE FUNCTION vigil_records_continue_chain() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $fn$
  DECLARE
    head_seq bigint;
    head_hash text;
  BEGIN
    SELECT chain_seq, hash INTO head_seq, head_hash FROM records WHERE chain = NEW.chain
      ORDER BY chain_seq DESC LIMIT 1;
    IF NOT FOUND THEN
      head_seq := 0;
      head_hash := repeat('0', 64); -- GENESIS_HASH
    END IF;
    IF NEW.chain_seq IS DISTINCT FROM head_seq + 1 OR NEW.prev_hash IS DISTINCT FROM head_hash THEN
      RAISE EXCEPTION 'record %#% does not continue its chain (head #%)', NEW.chain, NEW.chain_seq, head_seq
        USING ERRCODE = 'integrity_constraint_violation',
              HINT = 'a record goes right after its chain''s head and links to its hash';
    END IF;
    RETURN NEW;
  END
  $fn$;
  CREATE TRIGGER records_continue_chain BEFORE INSERT ON records FOR EACH ROW
    EXECUTE FUNCTION vigil_records_continue_chain();
  DO $do$
  BEGIN
    EXECUTE format('ALTER FUNCTION vigil_records_continue_chain() SET search_path = %I, pg_temp', current_schema());
  END
  $do$;
  `,
  // 9: key and hold records are the schema owner's to write. The append-only gateway role could start a well-formed
  //    chain of its own holding a key.created (a working key) or a hold.released (a purge of held sessions) — detected
  //    by `verify --public-key`, not prevented. Only the CLI writes such records (`vigil keys`, `vigil holds`), and it
  //    now does so as the owner, as retention purges already do; the gateway itself never writes them.
  //  - Not SECURITY DEFINER: current_user is the role that inserts. Allowed: the owner of `records`, and any role
  //    that has its privileges (a member, pg_has_role … USAGE; superusers). Every name is schema-qualified and the
  //    search_path fixed, so the inserting role cannot substitute a function of its own.
  `
  CREATE FUNCTION vigil_records_key_hold_writer() RETURNS trigger LANGUAGE plpgsql AS $fn$
  DECLARE
    owner name;
  BEGIN
    SELECT t.tableowner INTO owner FROM pg_catalog.pg_tables t
      WHERE t.schemaname = TG_TABLE_SCHEMA AND t.tablename = TG_TABLE_NAME;
    IF NOT pg_catalog.pg_has_role(current_user, owner, 'USAGE') THEN
      RAISE EXCEPTION '% records are written by the owner of schema % (%), not by role %: run vigil keys / vigil holds '
          'with a config whose store.postgres.url logs in as the owner', NEW.kind, TG_TABLE_SCHEMA, owner, current_user
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
  END
  $fn$;
  ALTER FUNCTION vigil_records_key_hold_writer() SET search_path = pg_catalog, pg_temp;
  CREATE TRIGGER records_key_hold_writer BEFORE INSERT ON records FOR EACH ROW
    WHEN (NEW.kind IN ('key.created', 'key.revoked', 'hold.added', 'hold.released'))
    EXECUTE FUNCTION vigil_records_key_hold_writer();
  `,
  // 10: each chain's last digest, found without walking the chain back to it: every gateway asks for every chain's on
  //     each check of overdue digests (UNDIGESTED_TAILS), and a chain that stopped signing can be long since. One entry
  //     per digest. (Built in the migration's transaction, which blocks appends while it reads `records` once.)
  `
  CREATE INDEX records_digests ON records (chain, chain_seq) WHERE kind = 'digest.signed';
  `,
  // 11: a SIEM delivery cursor moves forward only, and no further than its chain's last record, unless the schema owner
  //     moves it. The append-only gateway role needs to write sink_cursors (a cursor moves as events are delivered),
  //     and could move one anywhere: past records a SIEM never received (hiding them from it, and letting retention
  //     purge them) or back (sending old events again). The gateway only ever moves a cursor forward over records it
  //     delivered; the owner (operator tooling) may still reset one either way.
  //  - As migration 9: not SECURITY DEFINER (current_user is the role that writes), allowed for any role with the
  //    owner's privileges. Unlike it, it runs once per delivered batch, so the owner is found by the table's oid
  //    (not through the pg_tables view) and the chain's last record by a static query (one index seek on UNIQUE
  //    (chain, chain_seq), planned once per connection), with the search_path fixed to this schema, then pg_temp
  //    (as migration 8), so the writing role cannot put a `records` of its own in the way: ~0.1 ms per cursor move
  //    where the view and dynamic SQL took ~1 ms. The owner's writes skip the lookup.
  //  - Deleting a cursor moves it back to the start: refused too (the gateway role has no DELETE grant anyway), and a
  //    cursor does not change sink or chain.
  `
  CREATE FUNCTION vigil_sink_cursor_forward() RETURNS trigger LANGUAGE plpgsql AS $fn$
  DECLARE
    owner oid;
    head bigint;
  BEGIN
    SELECT c.relowner INTO owner FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID;
    IF pg_catalog.pg_has_role(current_user, owner, 'USAGE') THEN
      RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
      RAISE EXCEPTION 'sink cursors may not be deleted by role %: only the owner of schema % (%) resets a cursor',
          current_user, TG_TABLE_SCHEMA, owner::regrole
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.sink IS DISTINCT FROM OLD.sink OR NEW.chain IS DISTINCT FROM OLD.chain) THEN
      RAISE EXCEPTION 'sink cursor %/% may not move to another sink or chain (role %)', OLD.sink, OLD.chain, current_user
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.chain_seq < OLD.chain_seq THEN
      RAISE EXCEPTION 'sink cursor %/% may not move back (from % to %) as role %: only the owner of schema % (%) resets a '
          'cursor', NEW.sink, NEW.chain, OLD.chain_seq, NEW.chain_seq, current_user, TG_TABLE_SCHEMA, owner::regrole
        USING ERRCODE = 'insufficient_privilege', HINT = 'a cursor moves forward as events are delivered';
    END IF;
    SELECT r.chain_seq INTO head FROM records r WHERE r.chain = NEW.chain ORDER BY r.chain_seq DESC LIMIT 1;
    IF NEW.chain_seq > coalesce(head, 0) THEN
      RAISE EXCEPTION 'sink cursor %/% may not move past its chain''s last record (#%) to #% as role %: events a SIEM '
          'never received would be skipped', NEW.sink, NEW.chain, coalesce(head, 0), NEW.chain_seq, current_user
        USING ERRCODE = 'insufficient_privilege', HINT = 'only the owner of the schema may move a cursor there';
    END IF;
    RETURN NEW;
  END
  $fn$;
  DO $do$
  BEGIN
    EXECUTE format('ALTER FUNCTION vigil_sink_cursor_forward() SET search_path = %I, pg_temp', current_schema());
  END
  $do$;
  CREATE TRIGGER sink_cursors_forward BEFORE INSERT OR UPDATE OR DELETE ON sink_cursors FOR EACH ROW
    EXECUTE FUNCTION vigil_sink_cursor_forward();
  CREATE TRIGGER sink_cursors_no_truncate BEFORE TRUNCATE ON sink_cursors FOR EACH STATEMENT
    EXECUTE FUNCTION vigil_sink_cursor_forward();
  `,
  // 12: a request record's references are indexed in blob_refs only where its base — the previous request of its
  //     conversation, still in the store — has none (see ref-bases.ts; SQLite's migration 11): a long session's request
  //     refers to hundreds of message groups, and a row for each was written by every append. A purge that removes a
  //     base gives the records built on it rows of their own first. Roles that may append blob references (the
  //     append-only gateway role of `vigil store grants`) may append bases too: otherwise a gateway upgraded without
  //     the new grants would fail the second request of every conversation.
  `
  CREATE TABLE blob_ref_bases (
    record_seq bigint PRIMARY KEY,
    base_seq   bigint NOT NULL
  );
  CREATE INDEX blob_ref_bases_base ON blob_ref_bases (base_seq);
  CREATE TRIGGER blob_ref_bases_append_only BEFORE UPDATE OR DELETE ON blob_ref_bases
    FOR EACH ROW EXECUTE FUNCTION vigil_append_only();
  CREATE TRIGGER blob_ref_bases_no_truncate BEFORE TRUNCATE ON blob_ref_bases
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_append_only();
  DO $do$
  DECLARE
    g oid;
  BEGIN
    FOR g IN
      SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a
      WHERE c.oid = 'blob_refs'::regclass AND a.privilege_type = 'INSERT' AND a.grantee <> c.relowner
    LOOP
      -- A regrole's text is the role's name, quoted where it needs to be.
      EXECUTE format('GRANT SELECT, INSERT ON blob_ref_bases TO %s', CASE WHEN g = 0 THEN 'PUBLIC' ELSE g::regrole::text END);
    END LOOP;
  END
  $do$;
  `,
  // 13: why each exchange's answer stopped, for the `stop_reason` filter (SQLite's migration 12). Exchanges recorded
  //     before are filled from their first response record, with the append-only trigger set aside for that update in
  //     this migration's transaction (migrations run as the schema owner). Gateways of the previous version, still
  //     running during an upgrade, name their columns and leave it null.
  `
  ALTER TABLE exchange_results ADD COLUMN stop_reason text;
  ALTER TABLE exchange_results DISABLE TRIGGER exchange_results_append_only;
  CREATE OR REPLACE FUNCTION pg_temp.vigil_json(data text) RETURNS json LANGUAGE sql IMMUTABLE
    AS $fn$ SELECT replace(data, '\\u0000', '\\u0020')::json $fn$;
  UPDATE exchange_results x SET stop_reason = f.stop_reason
    FROM (
      SELECT DISTINCT ON (r.exchange_id) r.exchange_id, pg_temp.vigil_json(r.data) ->> 'stopReason' AS stop_reason
      FROM records r WHERE r.kind = 'exchange.response' AND r.exchange_id IS NOT NULL
      ORDER BY r.exchange_id, r.seq
    ) f
    WHERE f.exchange_id = x.exchange_id AND f.stop_reason IS NOT NULL;
  ALTER TABLE exchange_results ENABLE TRIGGER exchange_results_append_only;
  CREATE INDEX exchange_results_stop_reason ON exchange_results (stop_reason, ended_at) WHERE stop_reason IS NOT NULL;
  `,
  // 14: a key's revocation may be brought forward (SQLite's writer does the same). `vigil keys rotate` revokes the key
  //     it replaces for a time to come (the overlap), and a revocation made meanwhile must take effect at once: the
  //     trigger of migration 6 set revoked_at only where it was null. Never moved back. The function keeps its owner,
  //     grants and trigger; its search_path is set again (CREATE OR REPLACE drops it).
  `
${indexKeysAndHoldsFunction('CREATE OR REPLACE FUNCTION', "(revoked_at IS NULL OR revoked_at > (d->>'revokedAt')::bigint)")}  DO $do$
  BEGIN
    EXECUTE format('ALTER FUNCTION vigil_index_keys_and_holds() SET search_path = %I, pg_temp', current_schema());
  END
  $do$;
  `,
  // 15: the input an exchange read from the prompt cache and wrote to it (of those writes, the ones kept an hour), for
  //     usage reports that price them apart (SQLite's migration 13). Exchanges recorded before are filled from their
  //     first response record, as in migration 13; a count that is not a whole number is 0, as the index takes it.
  `
  ALTER TABLE exchange_results ADD COLUMN cache_read_tokens bigint, ADD COLUMN cache_write_tokens bigint,
    ADD COLUMN cache_write_1h_tokens bigint;
  ALTER TABLE exchange_results DISABLE TRIGGER exchange_results_append_only;
  CREATE OR REPLACE FUNCTION pg_temp.vigil_json(data text) RETURNS json LANGUAGE sql IMMUTABLE
    AS $fn$ SELECT replace(data, '\\u0000', '\\u0020')::json $fn$;
  CREATE OR REPLACE FUNCTION pg_temp.vigil_count(v json) RETURNS bigint LANGUAGE sql IMMUTABLE
    AS $fn$ SELECT CASE WHEN json_typeof(v) = 'number' AND v::text ~ '^[0-9]{1,15}$' THEN v::text::bigint ELSE 0 END $fn$;
  UPDATE exchange_results x SET
      cache_read_tokens = pg_temp.vigil_count(f.u -> 'cache_read_input_tokens'),
      cache_write_tokens = pg_temp.vigil_count(f.u -> 'cache_creation_input_tokens'),
      cache_write_1h_tokens = least(pg_temp.vigil_count(f.u -> 'cache_creation' -> 'ephemeral_1h_input_tokens'),
        pg_temp.vigil_count(f.u -> 'cache_creation_input_tokens'))
    FROM (
      SELECT DISTINCT ON (r.exchange_id) r.exchange_id, pg_temp.vigil_json(r.data) -> 'usage' AS u
      FROM records r WHERE r.kind = 'exchange.response' AND r.exchange_id IS NOT NULL
      ORDER BY r.exchange_id, r.seq
    ) f
    WHERE f.exchange_id = x.exchange_id AND x.input_tokens IS NOT NULL;
  ALTER TABLE exchange_results ENABLE TRIGGER exchange_results_append_only;
  `,
];

/** What migration 6 made, which the key and hold indexes depend on: a store that says it ran 6 must have it. */
export const INDEX_TRIGGER = 'records_index_keys_and_holds';

/** Tables the store appends to; the ones role-based enforcement covers. */
const LEDGER_TABLES = [
  'records',
  'blobs',
  'exchanges',
  'exchange_results',
  'exchange_callers',
  'exchange_groups',
  'exchange_masking',
  'exchange_text',
  'blob_refs',
  'blob_ref_bases',
] as const;

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Quotes a schema or role name after checking it is a plain identifier (no quoting games in config values). */
export function quoteIdentifier(name: string): string {
  if (!IDENTIFIER.test(name)) {
    throw new Error(
      `"${name}" is not a plain PostgreSQL identifier (letters, digits and _, at most 63, not starting with a digit)`,
    );
  }
  return `"${name}"`;
}

/**
 * The SQL an administrator runs once so that the gateway's own database role can only append: the triggers stop
 * UPDATE/DELETE from any role, but a table owner can disable triggers, so the gateway should connect as a role that
 * owns nothing and holds only these grants. Run it as the owner, after the store has migrated the schema once
 * (for example by starting Vigil once as the owner, or `vigil` CLI with the owner's URL).
 *
 * @example
 * ```sql
 * CREATE ROLE vigil_gateway LOGIN PASSWORD '…';
 * -- then the output of appendOnlyGrantsSql('vigil', 'vigil_gateway')
 * ```
 */
export function appendOnlyGrantsSql(schema: string, gatewayRole: string): string {
  const s = quoteIdentifier(schema);
  const r = quoteIdentifier(gatewayRole);
  const tables = LEDGER_TABLES.map((t) => `${s}.${t}`).join(', ');
  return [
    `GRANT USAGE ON SCHEMA ${s} TO ${r};`,
    `REVOKE ALL ON ${tables} FROM ${r};`,
    `GRANT SELECT, INSERT ON ${tables} TO ${r};`,
    `REVOKE UPDATE, DELETE, TRUNCATE ON ${tables} FROM ${r};`,
    `GRANT USAGE ON SEQUENCE ${s}.records_seq_seq TO ${r};`,
    // The key and hold indexes are written by a trigger on records (migration 6), as the schema owner: reading is
    // all this role does with them. Retention purges need DELETE, which this role never gets: they run as the schema
    // owner (vigil retention run --config …).
    `REVOKE ALL ON ${s}.gateway_keys, ${s}.holds FROM ${r};`,
    `GRANT SELECT ON ${s}.gateway_keys, ${s}.holds TO ${r};`,
    // Delivery cursors move as events reach the SIEM.
    `GRANT SELECT, INSERT, UPDATE ON ${s}.sink_cursors TO ${r};`,
    // The gateway still takes the migration lock on open; with nothing to migrate it only reads schema_migrations,
    // which only the owner writes (a version inserted by this role would make an upgrade skip a migration).
    `REVOKE ALL ON ${s}.schema_migrations FROM ${r};`,
    `GRANT SELECT ON ${s}.schema_migrations TO ${r};`,
  ].join('\n');
}
