import type { Principal } from '../identity/principal.js';

/**
 * The one interface every store implements (SQLite embedded, PostgreSQL shared).
 *
 * The store is a ledger: an append-only list of records, each chained to the previous record of its *chain* by a
 * SHA-256 hash. Every process that writes opens its own chain, whose first record (`chain.opened`) commits to the
 * heads of all chains that existed at that moment, so that removing a record, a chain's tail or a whole older chain is
 * detected by `verify()`. Large payloads (request bodies, split at message boundaries) live in a content-addressed
 * blob table so a conversation that is resent every turn is stored once; records refer to blobs by hash, which puts
 * them under the chain too.
 *
 * Query tables (exchanges, their results, sessions) are derived from records inside the same transaction; they are
 * indexes, not the evidence. The evidence is the chain.
 */

export type RecordKind =
  | 'chain.opened'
  | 'exchange.request'
  | 'exchange.events'
  | 'exchange.response'
  | 'key.created'
  | 'key.revoked'
  | 'recording.read'
  | (string & {});

export interface NewRecord {
  readonly kind: RecordKind;
  readonly exchangeId?: string | undefined;
  readonly sessionId?: string | undefined;
  /** Epoch milliseconds. */
  readonly at: number;
  /** JSON-serialisable payload. Serialised once, by the store, and hashed as serialised. */
  readonly data: unknown;
  /**
   * The payload already serialised (valid JSON text), used instead of `data` when given: lets the recorder embed
   * stream events' JSON as received instead of escaping it inside strings.
   */
  readonly json?: string;
}

export interface StoredRecord {
  readonly seq: number;
  readonly chain: string;
  readonly chainSeq: number;
  readonly kind: RecordKind;
  readonly exchangeId: string | null;
  readonly sessionId: string | null;
  readonly at: number;
  /** The payload exactly as hashed (JSON text). */
  readonly data: string;
  readonly prevHash: string;
  readonly hash: string;
}

export interface BlobWrite {
  /** Hex SHA-256 of `data`. */
  readonly hash: string;
  readonly data: Buffer;
}

/** Masked text of an exchange for full-text search (the turn's new prompt, the response, tool calls). */
export interface SearchText {
  readonly exchangeId: string;
  readonly text: string;
}

export interface WriteBatch {
  readonly blobs?: readonly BlobWrite[];
  readonly records: readonly NewRecord[];
  /** Search index entries; an index, not evidence: not chained. */
  readonly searchText?: readonly SearchText[];
}

export type Outcome = 'ok' | 'upstream_error' | 'client_aborted' | 'upstream_aborted' | 'gateway_error' | 'interrupted';

/** One row of the exchange index: what lists and filters need, without bodies. */
export interface ExchangeSummary {
  readonly id: string;
  readonly sessionId: string;
  readonly connection: string;
  readonly callerSubject: string;
  readonly callerMethod: string;
  readonly method: string;
  readonly path: string;
  readonly model: string | null;
  readonly stream: boolean;
  readonly startedAt: number;
  readonly endedAt: number | null;
  readonly status: number | null;
  readonly outcome: Outcome | null;
  readonly inputTokens: number | null;
  readonly outputTokens: number | null;
}

export interface SessionSummary {
  readonly id: string;
  readonly connection: string;
  readonly callerSubject: string;
  readonly firstAt: number;
  readonly lastAt: number;
  readonly exchanges: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
}

/**
 * What exchange lists, session lists, search and exports can be narrowed to. Every condition is on one exchange, and
 * all given conditions must hold. Absent (or undefined) means "any".
 */
export interface ExchangeFilter {
  readonly session?: string | undefined;
  readonly connection?: string | undefined;
  /** The caller's subject (OIDC `sub`, gateway key name, `anonymous`). */
  readonly caller?: string | undefined;
  /** The caller's OIDC issuer: with `caller`, one person (subjects are unique per issuer only). */
  readonly callerIssuer?: string | undefined;
  /** A group the caller belonged to when the exchange was recorded. */
  readonly group?: string | undefined;
  /** The model asked for or the one that answered (`claude-sonnet-4-5` or `claude-sonnet-4-5-20250929`). */
  readonly model?: string | undefined;
  /** How the exchange ended; `in_progress` for exchanges without a response record yet. */
  readonly outcome?: Outcome | 'in_progress' | undefined;
  /** A masking detector type that replaced at least one value in the exchange (`anthropic_api_key`, `email`, …). */
  readonly masking?: string | undefined;
  /** Started at or after, epoch milliseconds. */
  readonly since?: number | undefined;
  /** Started before (exclusive), epoch milliseconds. */
  readonly until?: number | undefined;
}

export interface PageRequest {
  /** Items per page, 1..1000; default 50. */
  readonly limit?: number | undefined;
  /** Opaque cursor returned by the previous page. */
  readonly cursor?: string | undefined;
}

/**
 * Sessions with at least one exchange matching the filter; a session's counts and times cover its matching
 * exchanges only (as with since/until: a session filtered to one model shows that model's exchanges).
 */
export interface SessionFilter extends Omit<ExchangeFilter, 'session'>, PageRequest {}

/** Exchanges matching the filter, newest first. */
export interface ExchangeListFilter extends ExchangeFilter, PageRequest {}

/** An exchange as lists show it: the summary plus who-and-what columns filters use. */
export interface ExchangeListItem extends ExchangeSummary {
  readonly callerIssuer: string | null;
  readonly callerGroups: readonly string[];
  /** Masking detector type → values replaced (from the response record's masking summary). */
  readonly masking: Readonly<Record<string, number>>;
}

export interface SearchOptions extends PageRequest {
  readonly filter?: ExchangeFilter | undefined;
}

/** One exchange whose search text matches, newest first. */
export interface SearchHit {
  readonly exchangeId: string;
  readonly sessionId: string;
  readonly startedAt: number;
  readonly callerSubject: string;
  /** A fragment of the matching text with each match between « and » (plain text: no markup to escape). */
  readonly snippet: string;
}

/** Where a record sits on its chain. */
export interface ChainPosition {
  readonly chain: string;
  readonly chainSeq: number;
}

/** Who read a recording: an authenticated person or service, or an admin API token. */
export type RecordingReader = Principal | { readonly method: 'admin_token'; readonly subject: string };

/** Payload of a `recording.read` record: every read of recorded content through the admin API is itself recorded. */
export interface RecordingReadData {
  readonly actor: RecordingReader;
  readonly role: 'admin' | 'auditor' | 'user';
  readonly what: 'session' | 'exchange' | 'events' | 'search' | 'export';
  /** Session or exchange ids read (for search: the exchanges whose snippets were shown). */
  readonly ids: readonly string[];
  /** The search query, or the export's filter as a query string. */
  readonly query?: string;
  /** The reader's network address as the admin listener saw it. */
  readonly address?: string | null;
}

export interface AccessLogEntry {
  readonly seq: number;
  readonly at: number;
  readonly data: RecordingReadData;
}

export interface Page<T> {
  readonly items: readonly T[];
  readonly nextCursor: string | null;
}

export interface VerifyProblem {
  readonly chain: string;
  readonly chainSeq: number | null;
  readonly seq: number | null;
  readonly problem: 'changed' | 'missing' | 'reordered' | 'blob_changed' | 'blob_missing' | 'head_missing';
  readonly detail: string;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly chains: number;
  readonly records: number;
  readonly problems: readonly VerifyProblem[];
}

/** A gateway key as the store indexes it (from `key.created` / `key.revoked` records). Only the key's hash is kept. */
export interface StoredGatewayKey {
  readonly hash: string;
  readonly name: string;
  readonly owner: string;
  /** Connections the key may use; empty means every connection. */
  readonly connections: readonly string[];
  readonly createdAt: number;
  readonly expiresAt: number | null;
  readonly revokedAt: number | null;
}

/** Payload of a `key.created` record. */
export interface KeyCreatedData {
  readonly hash: string;
  readonly name: string;
  readonly owner: string;
  readonly connections: readonly string[];
  readonly createdAt: number;
  readonly expiresAt: number | null;
  readonly createdBy: string;
}

/** Payload of a `key.revoked` record. */
export interface KeyRevokedData {
  readonly name: string;
  readonly hash: string;
  readonly revokedAt: number;
  readonly revokedBy: string;
}

export interface AuditStore {
  readonly kind: 'sqlite' | 'postgres';
  /** This process's chain id. */
  readonly chainId: string;

  /**
   * Append records (and the blobs they refer to) in one durable transaction, chaining each record.
   * Resolves once the data is durable; rejects if it is not, so a caller can fail closed. Concurrent calls are
   * serialised by the store: each batch lands whole, in call order, on this process's chain.
   */
  append(batch: WriteBatch): Promise<readonly StoredRecord[]>;

  /** Records of one exchange, in append order. */
  exchangeRecords(exchangeId: string): Promise<readonly StoredRecord[]>;
  /** Records of one session, in append order. */
  sessionRecords(sessionId: string): Promise<readonly StoredRecord[]>;
  /** Blob contents by hash; unknown hashes are absent from the map. */
  blobs(hashes: readonly string[]): Promise<ReadonlyMap<string, Buffer>>;

  listSessions(filter?: SessionFilter): Promise<Page<SessionSummary>>;
  listExchanges(sessionId: string): Promise<readonly ExchangeSummary[]>;
  /** Exchanges matching `filter`, newest first (started_at, then id), with cursor pagination. */
  listExchangesFiltered(filter?: ExchangeListFilter): Promise<Page<ExchangeListItem>>;
  /**
   * Full-text search over the search text written with each exchange (`WriteBatch.searchText`). The query is words
   * and "quoted phrases", all of which must match (case-insensitive, whole words; `word*` matches a prefix); no other
   * syntax is interpreted, so user input is always safe to pass. Newest first.
   */
  search(query: string, options?: SearchOptions): Promise<Page<SearchHit>>;
  /** `recording.read` records, newest first. */
  listAccessLog(page?: PageRequest): Promise<Page<AccessLogEntry>>;
  /** The records at these chain positions (absent ones are left out), in no particular order. */
  recordsAt(positions: readonly ChainPosition[]): Promise<readonly StoredRecord[]>;
  /** Exchanges that have a request record but no response record (a crash cut them). */
  unfinishedExchanges(): Promise<readonly string[]>;

  /** A gateway key by the SHA-256 of the key, revoked and expired ones included. */
  findGatewayKey(hash: string): Promise<StoredGatewayKey | undefined>;
  /** All gateway keys, newest first. */
  listGatewayKeys(): Promise<readonly StoredGatewayKey[]>;

  /** Every chain and its last chain_seq. */
  chainHeads(): Promise<ReadonlyArray<{ chain: string; chainSeq: number }>>;
  /** Records of one chain after `afterChainSeq`, in chain order. */
  chainRecords(chain: string, afterChainSeq: number, limit: number): Promise<readonly StoredRecord[]>;
  /**
   * Records of the given kinds appended at or after `since` (epoch ms), in append order. Used to follow decisions made
   * by other processes (approvals); callers de-duplicate by position, since concurrent writers may commit out of order.
   */
  recordsOfKinds(kinds: readonly string[], since: number, limit: number): Promise<readonly StoredRecord[]>;
  /** A SIEM sink's delivery cursor per chain (last delivered chain_seq). Not evidence: a mutable index. */
  sinkCursors(sink: string): Promise<ReadonlyMap<string, number>>;
  setSinkCursor(sink: string, chain: string, chainSeq: number): Promise<void>;
  /**
   * Whether this process should do a singleton job now (deliver to a sink). SQLite: always (one gateway per file).
   * PostgreSQL: held by one process at a time through an advisory lock, taken over when that process goes away.
   */
  tryLeadership(name: string): Promise<boolean>;
  /** Whether the process that writes `chain` is still running (so its open exchanges are not interrupted). */
  chainIsLive(chain: string): Promise<boolean>;

  /** Walk every chain and every referenced blob; report what was changed, removed or reordered. */
  verify(): Promise<VerifyReport>;

  close(): Promise<void>;
}
