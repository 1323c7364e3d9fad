/**
 * What one `append` sends to PostgreSQL: a single statement that writes everything at once — blobs, records, blob
 * references, index rows, search text, NOTIFYs — as data-modifying CTEs. One statement is one round trip and, run on
 * its own, its own transaction: no BEGIN and COMMIT round trips, and nothing of it is visible (nor a NOTIFY delivered)
 * before all of it commits. A request's append is on the client's time to first byte, and this was a dozen round trips,
 * each with its parse and plan.
 *
 * Each statement is a named (prepared) statement: its text depends only on which parts the append has (records only;
 * records, blobs and references; …), so each connection parses and plans each shape once and then only binds values.
 * Rows travel as one array per column (`unnest`), blobs as one bytea cut by offsets, so the text does not grow with the
 * batch. Parts a batch does not have are left out of the text altogether: an append without blob references does not
 * lock blob_refs, so it does not wait for a retention purge (which holds that table's lock while it removes blobs).
 *
 * A batch of more than {@link ROWS_PER_INSERT} rows of a kind goes in several such statements, in one transaction
 * (the caller's BEGIN … COMMIT): blobs first, so a record refers only to blobs written by then or in its statement.
 */
import type pg from 'pg';
import type { BlobWrite, NewRecord, SearchText, StoredRecord } from '../audit-store.js';
import {
  callerIndexRow,
  exchangeIndexRow,
  maskingIndexRows,
  resultIndexRow,
  type CallerIndexRow,
  type ExchangeIndexRow,
  type ResultIndexRow,
} from '../exchange-index.js';
import type { LinkedRecord } from '../ledger.js';
import type { RefBase } from '../ref-bases.js';
import { indexableText } from '../search-query.js';

/**
 * Rows of a kind per statement. An append's arrays carry no parameter limit, so this only bounds the size of one
 * statement; elsewhere (multi-row VALUES) it keeps within PostgreSQL's 65535 parameters per statement.
 */
export const ROWS_PER_INSERT = 1000;
/** Search texts per statement: fewer, as each may be tens of kilobytes. */
const TEXTS_PER_INSERT = 100;

export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** A record linked into this process's chain, and what it was made from (none for the `chain.opened` it begins with). */
export interface PendingRecord {
  readonly linked: LinkedRecord;
  readonly source?: NewRecord;
  /** The blob references of `source` (newRecordBlobRefs), worked out once: the append and the caller both need them. */
  readonly refs?: readonly string[];
  /** The request record whose references this one leaves to it in blob_refs, if it is still stored (ref-bases.ts). */
  readonly base?: RefBase;
}

/** What one statement writes. */
interface Part {
  readonly blobs: readonly BlobWrite[];
  readonly records: readonly PendingRecord[];
  readonly texts: readonly SearchText[];
  /** Record kinds to NOTIFY other processes of (delivered when the transaction commits). */
  readonly notify: readonly string[];
}

/** What an append statement answers: the records' seqs in chain order, and the referred blobs the store lacks. */
interface AppendRow {
  readonly seqs?: ReadonlyArray<number | string>;
  readonly missing?: readonly string[];
}

/**
 * The statements that append these records (in chain order) with their blobs, index rows and search text; notifying
 * `channel` of `notify` kinds. One statement unless the batch is larger than {@link ROWS_PER_INSERT} rows of a kind;
 * several must run in one transaction, in order.
 */
export function appendStatements(
  chain: string,
  records: readonly PendingRecord[],
  blobs: readonly BlobWrite[],
  texts: readonly SearchText[],
  notify: { readonly channel: string; readonly kinds: readonly string[] },
): Array<pg.QueryConfig & { name: string }> {
  // Deduplicated here as well as by ON CONFLICT: a request often carries the same message twice, and sending the
  // bytes once is cheaper than having the server discard them.
  const unique = [...new Map(blobs.map((b) => [b.hash, b])).values()];
  const blobParts = chunks(unique, ROWS_PER_INSERT);
  const recordParts = chunks(records, ROWS_PER_INSERT);
  const textParts = chunks(texts, TEXTS_PER_INSERT);
  // All but the last chunk of blobs alone, first: every record then refers to blobs written before or with it.
  const parts: Part[] = blobParts.slice(0, -1).map((b) => ({ blobs: b, records: [], texts: [], notify: [] }));
  for (let i = 0; i < Math.max(recordParts.length, textParts.length, 1); i++) {
    parts.push({
      blobs: i === 0 ? (blobParts.at(-1) ?? []) : [],
      records: recordParts[i] ?? [],
      texts: textParts[i] ?? [],
      notify: i === 0 ? notify.kinds : [],
    });
  }
  return parts
    .filter((p) => p.blobs.length || p.records.length || p.texts.length || p.notify.length)
    .map((p) => statement(chain, notify.channel, p));
}

/**
 * Runs the statements of one append on `client` in order and returns the records as stored. Throws, naming the blob,
 * when a record refers to a blob the store does not hold and the append does not write: one removed by retention
 * (whose hash a writer still remembers as stored) must be written again (the recorder does, once). The statement that
 * finds it writes nothing; earlier ones are the caller's to roll back.
 */
export async function runAppend(
  client: pg.ClientBase,
  statements: ReadonlyArray<pg.QueryConfig & { name: string }>,
  records: readonly PendingRecord[],
): Promise<StoredRecord[]> {
  const seqs: number[] = [];
  for (const s of statements) {
    const row = (await client.query<AppendRow>(s)).rows[0];
    const missing = row?.missing?.[0];
    if (missing !== undefined) {
      throw new Error(
        `a record refers to blob ${missing}, which the store does not hold (removed by retention?): write it again`,
      );
    }
    // int8[] comes back as strings (the pool parses only plain int8).
    for (const seq of row?.seqs ?? []) seqs.push(Number(seq));
  }
  if (seqs.length !== records.length) {
    throw new Error(`the append stored ${seqs.length} of ${records.length} records`);
  }
  return records.map((r, i) => ({ seq: seqs[i]!, ...r.linked }));
}

/**
 * The statement writing one part. Its text (and name) depends only on which kinds of rows the part has, never on how
 * many, so each connection prepares each shape once.
 */
function statement(chain: string, channel: string, part: Part): pg.QueryConfig & { name: string } {
  const values: unknown[] = [];
  const param = (value: unknown, type: string): string => `$${values.push(value)}::${type}`;
  /** Column arrays of `rows`, as `unnest(…)` arguments. */
  const columns = <R>(rows: readonly R[], cols: ReadonlyArray<readonly [type: string, get: (row: R) => unknown]>) =>
    cols.map(([type, get]) => param(rows.map(get), `${type}[]`)).join(', ');
  const ctes: string[] = [];
  const answers: string[] = [];
  let shape = '';

  const refs: Array<readonly [hash: string, chainSeq: number, inBase: boolean]> = [];
  const bases: Array<readonly [chainSeq: number, base: RefBase]> = [];
  const exchanges: ExchangeIndexRow[] = [];
  const results: ResultIndexRow[] = [];
  const callers: CallerIndexRow[] = [];
  const masking: Array<{ exchangeId: string; type: string; count: number }> = [];
  for (const { linked, source, refs: referred = [], base } of part.records) {
    if (!source) continue;
    if (base && referred.length) bases.push([linked.chainSeq, base]);
    for (const h of referred) refs.push([h, linked.chainSeq, base?.refs.has(h) ?? false]);
    const ex = exchangeIndexRow(source);
    if (ex) exchanges.push(ex);
    const res = resultIndexRow(source);
    if (res) results.push(res);
    const caller = callerIndexRow(source);
    if (caller) callers.push(caller);
    masking.push(...maskingIndexRows(source));
  }
  const groups = callers.flatMap((c) => c.groups.map((g) => [g, c.exchangeId] as const));

  // Bound when first used: the numbering, hence the text, still depends on the shape alone.
  let hashes: string | undefined;
  const blobHashes = (): string =>
    (hashes ??= param(
      part.blobs.map((b) => b.hash),
      'text[]',
    ));
  // A record may only refer to a blob the store holds. Nothing is written when one is missing: every part below is
  // conditional on this. It reads the statement's snapshot, which lacks the blobs the statement inserts itself (and one
  // another writer committed while ON CONFLICT waited on its row), so the part's own blobs count as held: they are
  // there once it is done. Nor can a purge remove one meanwhile: it locks blob_refs, as this statement does before
  // taking its snapshot, so one waits for the other (a purge that commits first is seen here). Each blob is looked up by
  // its key, a subquery per reference (as with the bases below): as an anti join, a table not yet analysed, or a
  // request naming many blobs, had blobs read whole and hashed for it.
  let written = '';
  if (bases.length) {
    shape += 'a';
    // The bases still stored as this process wrote them (ref-bases.ts), read in the statement's snapshot: a purge that
    // removed one either committed before it (it locks blob_refs, which this statement waits for) and is seen here,
    // or waits for this statement, and then gives the records built on it rows of their own. Each base is looked up by
    // its key, one subquery per row: as a join (EXISTS), a store not yet analysed had the whole ledger hashed for it on
    // every request.
    ctes.push(
      `bases AS (
         SELECT b.chain_seq, b.base_seq FROM unnest(${columns(bases, [
           ['int8', (x) => x[0]],
           ['int8', (x) => x[1].seq],
           ['text', (x) => x[1].hash],
         ])}) AS b(chain_seq, base_seq, base_hash)
         WHERE (SELECT r.hash FROM records r WHERE r.seq = b.base_seq) = b.base_hash)`,
    );
  }
  if (refs.length) {
    shape += 'r';
    // The rows to index: every reference, but those a record's base has when the base is still stored. Those blobs
    // need no check either: a stored base's blobs are held (each has a row of a live record).
    ctes.push(
      bases.length
        ? `refs AS (
             SELECT f.h, f.chain_seq FROM unnest(${columns(refs, [
               ['text', (x) => x[0]],
               ['int8', (x) => x[1]],
               ['bool', (x) => x[2]],
             ])}) AS f(h, chain_seq, in_base)
             WHERE NOT (f.in_base AND f.chain_seq IN (SELECT chain_seq FROM bases)))`
        : `refs AS (
             SELECT * FROM unnest(${columns(refs, [
               ['text', (x) => x[0]],
               ['int8', (x) => x[1]],
             ])}) AS f(h, chain_seq))`,
      `missing AS (
         SELECT DISTINCT f.h FROM refs f
         WHERE f.h <> ALL (${blobHashes()}) AND (SELECT 1 FROM blobs b WHERE b.hash = f.h) IS NULL)`,
    );
    answers.push('ARRAY(SELECT h FROM missing) AS missing');
    written = 'WHERE NOT EXISTS (SELECT 1 FROM missing)';
  }
  if (part.blobs.length) {
    shape += 'b';
    // One bytea and each blob's place in it: sent as binary, where an array of bytea would go as hex text.
    const offsets: number[] = [];
    let offset = 1;
    for (const b of part.blobs) {
      offsets.push(offset);
      offset += b.data.length;
    }
    const data = param(Buffer.concat(part.blobs.map((b) => b.data)), 'bytea');
    const places = `${param(offsets, 'int4[]')}, ${param(
      part.blobs.map((b) => b.data.length),
      'int4[]',
    )}`;
    ctes.push(
      `new_blobs AS (
         INSERT INTO blobs (hash, data)
         SELECT b.h, substring(${data} FROM b.o FOR b.l) FROM unnest(${blobHashes()}, ${places}) AS b(h, o, l)
         ${written}
         ON CONFLICT (hash) DO NOTHING)`,
    );
  }
  if (part.records.length) {
    shape += 'c';
    const r = part.records.map((p) => p.linked);
    // Inserted in chain order (ORDER BY the array position): identity values are drawn in that order, so seq rises
    // along the chain as verifyLedger requires, and each row passes the continuity trigger (migration 8), which sees
    // the rows inserted before it in the statement.
    ctes.push(
      `new_records AS (
         INSERT INTO records (chain, chain_seq, kind, exchange_id, session_id, at, data, prev_hash, hash)
         SELECT ${param(chain, 'text')}, r.chain_seq, r.kind, r.exchange_id, r.session_id, r.at, r.data, r.prev_hash, r.hash
         FROM unnest(${columns(r, [
           ['int8', (x) => x.chainSeq],
           ['text', (x) => x.kind],
           ['text', (x) => x.exchangeId],
           ['text', (x) => x.sessionId],
           ['int8', (x) => x.at],
           ['text', (x) => x.data],
           ['text', (x) => x.prevHash],
           ['text', (x) => x.hash],
         ])}) WITH ORDINALITY AS r(chain_seq, kind, exchange_id, session_id, at, data, prev_hash, hash, n)
         ${written}
         ORDER BY r.n
         RETURNING seq, chain_seq)`,
    );
    answers.push('ARRAY(SELECT seq FROM new_records ORDER BY chain_seq) AS seqs');
  }
  if (refs.length) {
    // Which records refer to which blob, for retention.
    ctes.push(
      `new_refs AS (
         INSERT INTO blob_refs (blob_hash, record_seq)
         SELECT f.h, r.seq FROM refs f JOIN new_records r ON r.chain_seq = f.chain_seq
         ON CONFLICT DO NOTHING)`,
    );
  }
  if (bases.length) {
    // Which record each one's references were left to, for a purge that removes it.
    ctes.push(
      `new_ref_bases AS (
         INSERT INTO blob_ref_bases (record_seq, base_seq)
         SELECT r.seq, b.base_seq FROM bases b JOIN new_records r ON r.chain_seq = b.chain_seq)`,
    );
  }
  /**
   * A CTE inserting `rows` into `table`'s columns (name, SQL type, value), unless a referred blob is missing. `first`:
   * in the order given, so of two rows for one exchange the first is kept (ON CONFLICT skips the later).
   */
  const insert = <R>(
    letter: string,
    table: string,
    rows: readonly R[],
    cols: ReadonlyArray<readonly [column: string, type: string, get: (row: R) => unknown]>,
    { conflict = 'ON CONFLICT DO NOTHING', first = false } = {},
  ): void => {
    if (!rows.length) return;
    shape += letter;
    const names = cols.map(([column]) => column);
    const arrays = columns(
      rows,
      cols.map(([, type, get]) => [type, get] as const),
    );
    const from = first
      ? `SELECT ${names.map((c) => `x.${c}`).join(', ')}
         FROM unnest(${arrays}) WITH ORDINALITY AS x(${names.join(', ')}, n)
         ${written}
         ORDER BY x.n`
      : `SELECT * FROM unnest(${arrays})
         ${written}`;
    ctes.push(
      `new_${table} AS (
         INSERT INTO ${table} (${names.join(', ')})
         ${from}
         ${conflict})`,
    );
  };
  // A second request record for the same exchange id fails the append, as in SQLite: ids are unique per exchange.
  insert(
    'e',
    'exchanges',
    exchanges,
    [
      ['id', 'text', (e) => e.id],
      ['session_id', 'text', (e) => e.sessionId],
      ['connection', 'text', (e) => e.connection],
      ['caller_subject', 'text', (e) => e.callerSubject],
      ['caller_method', 'text', (e) => e.callerMethod],
      ['method', 'text', (e) => e.method],
      ['path', 'text', (e) => e.path],
      ['model', 'text', (e) => e.model],
      ['stream', 'bool', (e) => e.stream],
      ['started_at', 'int8', (e) => e.startedAt],
    ],
    { conflict: '' },
  );
  // The first result recorded for an exchange is the one indexed, as with SQLite's INSERT OR IGNORE.
  insert(
    'x',
    'exchange_results',
    results,
    [
      ['exchange_id', 'text', (x) => x.exchangeId],
      ['ended_at', 'int8', (x) => x.endedAt],
      ['status', 'int4', (x) => x.status],
      ['outcome', 'text', (x) => x.outcome],
      ['input_tokens', 'int8', (x) => x.inputTokens],
      ['output_tokens', 'int8', (x) => x.outputTokens],
      ['model', 'text', (x) => x.model],
      ['stop_reason', 'text', (x) => x.stopReason],
      ['cache_read_tokens', 'int8', (x) => x.cacheReadTokens],
      ['cache_write_tokens', 'int8', (x) => x.cacheWriteTokens],
      ['cache_write_1h_tokens', 'int8', (x) => x.cacheWrite1hTokens],
    ],
    { conflict: 'ON CONFLICT (exchange_id) DO NOTHING', first: true },
  );
  insert(
    'i',
    'exchange_callers',
    callers,
    [
      ['exchange_id', 'text', (c) => c.exchangeId],
      ['issuer', 'text', (c) => c.issuer],
      ['email', 'text', (c) => c.email],
    ],
    { conflict: 'ON CONFLICT (exchange_id) DO NOTHING', first: true },
  );
  insert('g', 'exchange_groups', groups, [
    ['group_name', 'text', (g) => g[0]],
    ['exchange_id', 'text', (g) => g[1]],
  ]);
  insert('m', 'exchange_masking', masking, [
    ['type', 'text', (m) => m.type],
    ['exchange_id', 'text', (m) => m.exchangeId],
    ['count', 'int8', (m) => m.count],
  ]);
  insert('t', 'exchange_text', part.texts, [
    ['exchange_id', 'text', (t) => t.exchangeId],
    ['text', 'text', (t) => indexableText(t.text)],
  ]);
  if (part.notify.length) {
    shape += 'n';
    // Delivered at COMMIT, only if it commits. A subquery of the answer, so it runs (an unused CTE would not).
    answers.push(
      `(SELECT count(pg_notify(${param(channel, 'text')}, k)) FROM unnest(${param(part.notify, 'text[]')}) AS k
        ${written}) AS notified`,
    );
  }
  const text = `${ctes.length ? `WITH ${ctes.join(',\n')}\n` : ''}SELECT ${answers.length ? answers.join(', ') : 'true AS ok'}`;
  return { name: `vigil_append_${shape}`, text, values };
}
