/**
 * What both stores share below their SQL dialects: row shapes and their mapping to the interface's types, and the
 * retention predicates (written in SQL both SQLite and PostgreSQL accept).
 */
import type {
  AccessLogEntry,
  UndigestedTail,
  ExchangeSummary,
  Outcome,
  PurgeCandidate,
  RecordingReadData,
  SearchHit,
  SessionSummary,
  StoredGatewayKey,
  StoredHold,
  StoredRecord,
} from './audit-store.js';
import type { ChainHead } from './ledger.js';
import type { IndexRecord } from './ledger-index.js';

/** An exchange row joined with its result, as the list queries select it. */
export interface ExchangeRow {
  id: string;
  session_id: string;
  connection: string;
  caller_subject: string;
  caller_method: string;
  method: string;
  path: string;
  model: string | null;
  /** PostgreSQL: boolean; SQLite: 0 or 1. */
  stream: boolean | number;
  started_at: number;
  ended_at: number | null;
  status: number | null;
  outcome: Outcome | null;
  input_tokens: number | null;
  output_tokens: number | null;
  result_model: string | null;
  stop_reason: string | null;
}

export const toSummary = (r: ExchangeRow): ExchangeSummary => ({
  id: r.id,
  sessionId: r.session_id,
  connection: r.connection,
  callerSubject: r.caller_subject,
  callerMethod: r.caller_method,
  method: r.method,
  path: r.path,
  // The response names the model that answered; the request only the one asked for. Empty means unknown.
  model: (r.result_model ?? r.model) || null,
  stream: r.stream === true || r.stream === 1,
  startedAt: r.started_at,
  endedAt: r.ended_at ?? null,
  status: r.status ?? null,
  outcome: r.outcome ?? null,
  inputTokens: r.input_tokens ?? null,
  outputTokens: r.output_tokens ?? null,
  stopReason: r.stop_reason ?? null,
});

export interface RecordRow {
  seq: number;
  chain: string;
  chain_seq: number;
  kind: string;
  exchange_id: string | null;
  session_id: string | null;
  at: number;
  data: string;
  prev_hash: string;
  hash: string;
}

export const toStored = (r: RecordRow): StoredRecord => ({
  seq: r.seq,
  chain: r.chain,
  chainSeq: r.chain_seq,
  kind: r.kind,
  exchangeId: r.exchange_id,
  sessionId: r.session_id,
  at: r.at,
  data: r.data,
  prevHash: r.prev_hash,
  hash: r.hash,
});

export interface HoldRow {
  id: string;
  session_id: string | null;
  caller_subject: string | null;
  reason: string;
  created_by: string;
  created_at: number;
  released_at: number | null;
  released_by: string | null;
  release_reason: string | null;
}

export const toHold = (r: HoldRow): StoredHold => ({
  id: r.id,
  session: r.session_id,
  caller: r.caller_subject,
  reason: r.reason,
  createdBy: r.created_by,
  createdAt: r.created_at,
  releasedAt: r.released_at,
  releasedBy: r.released_by,
  releaseReason: r.release_reason,
});

/** One session of the session list, as both stores' GROUP BY selects it. */
export interface SessionRow {
  id: string;
  connection: string;
  caller: string;
  first_at: number;
  last_at: number;
  n: number;
  input_tokens: number;
  output_tokens: number;
}

export const toSessionSummary = (r: SessionRow): SessionSummary => ({
  id: r.id,
  connection: r.connection,
  callerSubject: r.caller,
  firstAt: r.first_at,
  lastAt: r.last_at,
  exchanges: r.n,
  inputTokens: r.input_tokens,
  outputTokens: r.output_tokens,
});

export interface SearchHitRow {
  id: string;
  session_id: string;
  started_at: number;
  caller_subject: string;
  snippet: string;
}

export const toSearchHit = (r: SearchHitRow): SearchHit => ({
  exchangeId: r.id,
  sessionId: r.session_id,
  startedAt: r.started_at,
  callerSubject: r.caller_subject,
  snippet: r.snippet,
});

export interface AccessLogRow {
  seq: number;
  at: number;
  data: string;
}

export const toAccessLogEntry = (r: AccessLogRow): AccessLogEntry => ({
  seq: r.seq,
  at: r.at,
  data: JSON.parse(r.data) as RecordingReadData,
});

/** An exchange retention may remove, with how many records it has. */
export interface CandidateRow {
  id: string;
  session_id: string;
  connection: string;
  caller_subject: string;
  started_at: number;
  ended_at: number;
  records: number;
}

export const toCandidate = (r: CandidateRow): PurgeCandidate => ({
  id: r.id,
  sessionId: r.session_id,
  connection: r.connection,
  callerSubject: r.caller_subject,
  startedAt: r.started_at,
  endedAt: r.ended_at,
  records: r.records,
});

/** A gateway key row; `connections` is JSON text in SQLite and a text[] in PostgreSQL. */
export interface KeyRow {
  hash: string;
  name: string;
  owner: string;
  connections: string | string[];
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

/** A key or hold record, as much of it as ledger-index.ts replays. */
export type IndexRecordRow = Pick<RecordRow, 'seq' | 'chain' | 'chain_seq' | 'kind' | 'data'>;

export const toIndexRecord = (r: IndexRecordRow): IndexRecord => ({
  seq: r.seq,
  chain: r.chain,
  chainSeq: r.chain_seq,
  kind: r.kind,
  data: r.data,
});

export const toKey = (r: KeyRow): StoredGatewayKey => ({
  hash: r.hash,
  name: r.name,
  owner: r.owner,
  connections: typeof r.connections === 'string' ? (JSON.parse(r.connections) as string[]) : r.connections,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  revokedAt: r.revoked_at,
});

/**
 * Every chain's last record (chain, chain_seq, hash), in chain order. The (chain, chain_seq) index is sought once
 * per chain — the next chain after the last, then its highest position — instead of read whole: `GROUP BY chain`
 * read every index entry (0.36 s for 1.5 M records), and the SIEM outbox asks every 500 ms, a purge once per batch
 * while it holds the write lock.
 */
export const CHAIN_HEADS = `WITH RECURSIVE ${chainsCte()}, ${headsCte()}
  SELECT h.chain, h.chain_seq, ${columnAt('hash')} AS hash FROM heads h
  ORDER BY h.chain`;

/** The exchanges that have the last record of a chain (see AT_HEAD): one index seek per chain. */
export const CHAIN_HEAD_EXCHANGES = `WITH RECURSIVE ${chainsCte()}, ${headsCte()}
  SELECT exchange_id FROM (SELECT ${columnAt('exchange_id')} AS exchange_id FROM heads h) x
  WHERE exchange_id IS NOT NULL`;

/**
 * `heads(chain, chain_seq)`: each chain of {@link chainsCte} with its highest position. Every record of a head is then
 * read by its key in a subquery of the select list (columnAt), never joined: a join let PostgreSQL hash the whole
 * ledger for a few heads whenever it took the table for small (a store not yet analysed, or of some ten thousand
 * records), on every check the SIEM outbox makes and on a gateway's first append.
 */
function headsCte(): string {
  return `heads(chain, chain_seq) AS (
    SELECT chain, (SELECT max(chain_seq) FROM records WHERE chain = chains.chain) FROM chains WHERE chain IS NOT NULL
  )`;
}

/** One column of the record of chain `h.chain` at position `at` (the head's, unless named), sought by its key. */
function columnAt(column: string, at = 'h.chain_seq'): string {
  return `(SELECT ${column} FROM records WHERE chain = h.chain AND chain_seq = ${at})`;
}

/** The recursive `chains(chain)` expression: every chain id, one index seek each (see CHAIN_HEADS). */
function chainsCte(): string {
  return `chains(chain) AS (
    SELECT (SELECT min(chain) FROM records)
    UNION ALL
    SELECT (SELECT min(chain) FROM records WHERE chain > chains.chain) FROM chains WHERE chains.chain IS NOT NULL
  )`;
}

/** A row of {@link CHAIN_HEADS}. */
export interface ChainHeadRow {
  chain: string;
  chain_seq: number;
  hash: string;
}

export const toChainHead = (r: ChainHeadRow): ChainHead => ({ chain: r.chain, chainSeq: r.chain_seq, hash: r.hash });

/**
 * Every chain whose last record is not a signed digest, with its last digest (the `records_digests` partial index: one
 * entry per digest, so this does not walk a chain that stopped signing), the oldest record after it (the
 * (chain, chain_seq) index) and its head. A chain ending in a digest costs the two head seeks CHAIN_HEADS makes.
 */
export const UNDIGESTED_TAILS = `WITH RECURSIVE ${chainsCte()}, ${headsCte()},
  tails AS (
    SELECT h.chain, h.chain_seq AS to_seq, ${columnAt('at')} AS to_at,
      (SELECT max(d.chain_seq) FROM records d WHERE d.chain = h.chain AND d.kind = 'digest.signed') AS digest_seq
    FROM heads h WHERE ${columnAt('kind')} <> 'digest.signed'
  ),
  spans AS (
    SELECT t.*, (SELECT min(chain_seq) FROM records WHERE chain = t.chain AND chain_seq > coalesce(t.digest_seq, 0))
      AS from_seq
    FROM tails t
  )
  SELECT h.chain, h.to_seq, h.to_at, h.digest_seq, ${columnAt('at', 'h.digest_seq')} AS digest_at, h.from_seq,
    ${columnAt('at', 'h.from_seq')} AS from_at
  FROM spans h WHERE h.from_seq IS NOT NULL`;

/** A row of {@link UNDIGESTED_TAILS}. */
export interface UndigestedTailRow {
  chain: string;
  to_seq: number;
  to_at: number;
  digest_seq: number | null;
  digest_at: number | null;
  from_seq: number;
  from_at: number;
}

/** The rows as tails, in chain order (by code point: PostgreSQL's collation may order ids differently from SQLite). */
export function toUndigestedTails(rows: readonly UndigestedTailRow[]): UndigestedTail[] {
  return rows
    .map((r): UndigestedTail => ({
      chain: r.chain,
      lastDigest: r.digest_seq === null || r.digest_at === null ? null : { chainSeq: r.digest_seq, at: r.digest_at },
      from: { chainSeq: r.from_seq, at: r.from_at },
      to: { chainSeq: r.to_seq, at: r.to_at },
    }))
    .sort((a, b) => (a.chain < b.chain ? -1 : a.chain > b.chain ? 1 : 0));
}

/** A store's SQL for a text expression with its case folded as `foldCase` folds it (see case-fold.ts). */
export type FoldSql = (text: string) => string;
/** Hold `h` covers exchange `e`: by its session, or its caller — the subject, or the e-mail (any case). */
const COVERS = (fold: FoldSql): string => `(h.session_id = e.session_id
  OR h.caller_subject = e.caller_subject
  OR ${fold('h.caller_subject')} = (SELECT ${fold('c.email')} FROM exchange_callers c WHERE c.exchange_id = e.id))`;
/** An active hold of the holds index covers exchange `e`. */
export const HELD = (fold: FoldSql): string => `SELECT 1 FROM holds h WHERE h.released_at IS NULL AND ${COVERS(fold)}`;
/**
 * One of `holds` covers exchange `e`: a table expression `h` with columns `session_id` and `caller_subject` (the
 * ledger's active holds, as SQLite `json_each` or PostgreSQL `unnest` of parameters).
 */
export const HELD_BY = (holds: string, fold: FoldSql): string => `SELECT 1 FROM ${holds} WHERE ${COVERS(fold)}`;
/**
 * Exchange `e` has a record some SIEM sink has not received: past that sink's cursor on its chain (none yet: 0).
 * `sinks` is a table expression of the sinks' names as column `name` (SQLite `json_each`, PostgreSQL `unnest`).
 */
export const UNDELIVERED = (sinks: string): string => `SELECT 1 FROM records x, ${sinks} WHERE x.exchange_id = e.id
  AND x.chain_seq > coalesce((SELECT c.chain_seq FROM sink_cursors c WHERE c.sink = s.name AND c.chain = x.chain), 0)`;

/** Exchange `e` has the last record of a chain: kept, so every chain keeps its head. */
export const AT_HEAD = `SELECT 1 FROM records x WHERE x.exchange_id = e.id
  AND x.chain_seq = (SELECT max(y.chain_seq) FROM records y WHERE y.chain = x.chain)`;
