import type { KeyObject } from 'node:crypto';
import type { LocalUser, Principal } from '../identity/principal.js';
import type { ChainHead } from './ledger.js';
import type { Pricing } from './pricing.js';

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
  | 'digest.signed'
  | 'retention.purged'
  | 'hold.added'
  | 'hold.released'
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
  /** Why the answer stopped (`end_turn`, `tool_use`, `max_tokens`, `refusal`, …); null while in progress or unsaid. */
  readonly stopReason: string | null;
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
  /** The model asked for or the one that answered (`claude-haiku-4-5` or `claude-haiku-4-5-20251001`). */
  readonly model?: string | undefined;
  /** How the exchange ended; `in_progress` for exchanges without a response record yet. */
  readonly outcome?: Outcome | 'in_progress' | undefined;
  /** A masking detector type that replaced at least one value in the exchange (`anthropic_api_key`, `email`, …). */
  readonly masking?: string | undefined;
  /** Why the answer stopped, as the response said (`end_turn`, `tool_use`, `max_tokens`, `refusal`, …). */
  readonly stopReason?: string | undefined;
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
export interface ExchangeListFilter extends ExchangeFilter, PageRequest {
  /** Oldest first instead (started_at, then id): a session read in order. The cursor then continues after its item. */
  readonly oldestFirst?: boolean | undefined;
}

/** An exchange as lists show it: the summary plus who-and-what columns filters use. */
export interface ExchangeListItem extends ExchangeSummary {
  readonly callerIssuer: string | null;
  readonly callerGroups: readonly string[];
  /** Masking detector type → values replaced (from the response record's masking summary). */
  readonly masking: Readonly<Record<string, number>>;
}

/** Who made an exchange, as exchange lists name them: subjects are unique per method and issuer only. */
export interface ExchangeCaller {
  readonly callerSubject: string;
  readonly callerMethod: string;
  readonly callerIssuer: string | null;
}

/** How many of a session's newest matching exchanges a session list row summarises ({@link RecentExchanges}). */
export const SESSION_RECENT_LIMIT = 100;

/** What a session's newest (up to {@link SESSION_RECENT_LIMIT}) matching exchanges say, for a session list row. */
export interface RecentExchanges {
  /** How many exchanges this covers: fewer than the session's `exchanges` when it has more than the limit. */
  readonly exchanges: number;
  /** Distinct callers, in order of first appearance, newest first (clients choose session ids: callers can share one). */
  readonly callers: readonly ExchangeCaller[];
  /** Distinct models (the one that answered, else the one asked for), in order of first appearance, newest first. */
  readonly models: readonly string[];
  /** Outcome → count; `in_progress` for exchanges without a response yet. */
  readonly outcomes: Readonly<Record<string, number>>;
}

/**
 * A session as session lists show it: its matching exchanges' counts and times, and who called, which models and how
 * the newest of them ended (a list row would otherwise need a request for its exchanges).
 */
export interface SessionListItem extends SessionSummary {
  readonly recent: RecentExchanges;
}

/** At most this many callers, connections and models are named in {@link SessionTotals}; their counts cover all. */
export const SESSION_TOTALS_NAMES = 10;

/** What a usage report ({@link AuditStore.usage}) groups exchanges by. */
export const USAGE_BY = ['caller', 'connection', 'model', 'day', 'group'] as const;
export type UsageBy = (typeof USAGE_BY)[number];

/** A usage report: the exchanges matching the filter, grouped `by` one of {@link USAGE_BY}. */
export interface UsageRequest extends Omit<ExchangeFilter, 'session'> {
  readonly by: UsageBy;
  /** The most rows (1..1000; default 100): the largest by tokens, or the first days. */
  readonly limit?: number | undefined;
}

/** One row of a usage report. */
export interface UsageRow {
  /**
   * The caller's subject (the same subject at two issuers is one row: filter by `callerIssuer` to tell them apart),
   * the connection, the model (the one that answered, else the one asked for; null when neither is known), or the
   * day the exchanges started (UTC, `2026-12-07`).
   */
  readonly key: string | null;
  /** By caller: the caller's e-mail as their identity token gave it (null without one, and by anything else). */
  readonly email: string | null;
  readonly exchanges: number;
  /** Input tokens, cache reads and writes included, as the exchange lists count them. */
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** Of the input, what was read from the prompt cache (billed at a fraction of input). */
  readonly cacheReadTokens: number;
  /** Of the input, what was written to the prompt cache (billed above input). */
  readonly cacheWriteTokens: number;
  /**
   * What the exchanges' tokens cost by the config's `pricing` (in {@link UsageReport.currency}, to a millionth), those
   * of models it prices; null when no pricing is given.
   */
  readonly cost: number | null;
  /** Exchanges with tokens whose model `pricing` does not price (so `cost` leaves them out); null without pricing. */
  readonly unpriced: number | null;
  /** Exchanges that ended other than `ok`. */
  readonly failed: number;
  /** Answers the model declined (`stop_reason: refusal`). */
  readonly refused: number;
  /** Exchanges without an ending yet. */
  readonly inProgress: number;
}

export interface UsageReport {
  readonly by: UsageBy;
  readonly items: readonly UsageRow[];
  /** More rows matched than `limit`: the smallest (or the latest days) are left out. */
  readonly truncated: boolean;
  /** What `cost` is in (`pricing.currency`); null when no pricing is given. */
  readonly currency: string | null;
}

/** Which of a session's exchanges {@link AuditStore.sessionTotals} adds up. */
export type SessionTotalsRequest = Omit<ExchangeFilter, 'session'>;

/**
 * What one session's matching exchanges add up to, computed by the database without reading them out: the same
 * fields as a session list row, and bounded lists of who, where and which model. Its size does not grow with the
 * session.
 */
export interface SessionTotals extends SessionSummary {
  /** When the last finished exchange ended (epoch ms); null while none has. */
  readonly endedAt: number | null;
  /** Of the input tokens, what was read from the prompt cache, and what was written to it. */
  readonly cacheReadTokens: number;
  readonly cacheWriteTokens: number;
  /** What the session's tokens cost by the config's `pricing` (in `currency`, to a millionth); null without pricing. */
  readonly cost: number | null;
  /** Exchanges with tokens whose model `pricing` does not price (left out of `cost`); null without pricing. */
  readonly unpriced: number | null;
  readonly currency: string | null;
  /** Outcome → count; `in_progress` for exchanges without a response yet. */
  readonly outcomes: Readonly<Record<string, number>>;
  /** Distinct callers in order of their first exchange, the first {@link SESSION_TOTALS_NAMES}. */
  readonly callers: readonly ExchangeCaller[];
  /** How many distinct callers there are in all. */
  readonly callerCount: number;
  /** Distinct connections in order of first use, the first {@link SESSION_TOTALS_NAMES}. */
  readonly connections: readonly string[];
  readonly connectionCount: number;
  /** Distinct models (the one that answered, else the one asked for) in order of first use, the first few. */
  readonly models: readonly string[];
  readonly modelCount: number;
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

/**
 * Who read a recording: an authenticated person or service, an admin API token, or a local user (the CLI's
 * `cli:<user>`, the admin API's `admin-api:localhost` without identity). Reads by the CLI recorded before it named its
 * user `local_user` say `anonymous`, with the same `cli:<user>` subject; reads through the admin API's local admin
 * recorded before it did say `anonymous` `anonymous`. Old entries keep what they say.
 */
export type RecordingReader = Principal | { readonly method: 'admin_token'; readonly subject: string } | LocalUser;

/** Payload of a `recording.read` record: every read of recorded content through the admin API is itself recorded. */
export interface RecordingReadData {
  readonly actor: RecordingReader;
  readonly role: 'admin' | 'auditor' | 'user';
  readonly what: 'session' | 'exchange' | 'events' | 'search' | 'export' | 'approval';
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

/** What `verify` can find wrong, in the order the OpenAPI document lists them. */
export const VERIFY_PROBLEMS = [
  'changed',
  'missing',
  'reordered',
  'blob_changed',
  'blob_missing',
  'head_missing',
  /** A signed digest or purge record whose signature does not verify with the public keys given. */
  'signature_invalid',
  /** A signed digest that does not follow its chain's previous digest, or names the wrong head. */
  'digest_invalid',
  /**
   * A gateway-key or legal-hold index row that its ledger records do not make (changed, added or removed behind
   * the ledger's back); `chain` and `chainSeq` name the record it contradicts, or are empty and null for a row no
   * record made.
   */
  'index_changed',
  /**
   * With public keys only: a `key.*` or `hold.*` record that no validly signed digest of its chain covers. Such a
   * record decides who may call or what may be purged, and every writer that appends one signs its chain before it
   * exits; one outside every signature was appended by someone without the signing key.
   */
  'index_unsigned',
] as const;

export interface VerifyProblem {
  readonly chain: string;
  readonly chainSeq: number | null;
  readonly seq: number | null;
  readonly problem: (typeof VERIFY_PROBLEMS)[number];
  readonly detail: string;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly chains: number;
  readonly records: number;
  readonly problems: readonly VerifyProblem[];
  /** Present when verified with public keys: what the signatures cover. */
  readonly signatures?: SignatureReport;
  /**
   * Present when verified with `digestsOverdueAfterMs`: the chains whose records went on without a digest of their
   * chain for longer than that. A warning, not a problem: `ok` does not depend on it (see digest-overdue.ts).
   */
  readonly digestsOverdue?: readonly OverdueDigest[];
}

/** A record's position on its chain and when it was written. */
export interface ChainPoint {
  readonly chainSeq: number;
  /** Epoch milliseconds (the record's `at`). */
  readonly at: number;
}

/**
 * A chain whose last record is not a signed digest: what comes after its last `digest.signed` record (the whole chain
 * when it has none), which no digest of its own chain covers yet.
 */
export interface UndigestedTail {
  readonly chain: string;
  /** The chain's last `digest.signed` record, or null when it has none. */
  readonly lastDigest: ChainPoint | null;
  /** The oldest record after it (that retention left). */
  readonly from: ChainPoint;
  /** The chain's last record. */
  readonly to: ChainPoint;
}

/** An undigested tail that has gone without a digest of its chain for longer than allowed. */
export interface OverdueDigest extends UndigestedTail {
  /**
   * How long its oldest record has gone without a digest, in ms: up to the chain's last record, or (the running
   * gateway's check, for a chain whose writer is still running) up to now.
   */
  readonly undigestedMs: number;
}

/** What signed digests and purge records vouched for, when a store is verified with public keys. */
export interface SignatureReport {
  /** Key ids (see `keyIdOf`) of the public keys given. */
  readonly keys: readonly string[];
  readonly digests: number;
  readonly purges: number;
  /** Records after the last digest of their chain: hash-chained, not yet signed (information, not a failure). */
  readonly unsignedTails: ReadonlyArray<{ readonly chain: string; readonly fromSeq: number; readonly toSeq: number }>;
}

/** How `verify()` checks signatures: with these Ed25519 public keys (any of them may have signed). */
export interface VerifyOptions {
  readonly publicKeys?: readonly KeyObject[];
  /**
   * Told how many records were checked so far, after every {@link VERIFY_PAGE} of them (a long verify can report
   * progress). The walk waits for a returned promise.
   */
  readonly onProgress?: (records: number) => void | Promise<void>;
  /**
   * Records known from outside the store to have existed — a `ledger.digest` event's anchor, kept by the SIEM — that
   * must still be there with this hash. What no record in the store commits to (the newest records of the chain
   * written last) can be cut off undetected otherwise.
   */
  readonly anchors?: readonly ChainHead[];
  /**
   * Report every chain whose records went on for longer than this (ms) after its last digest, judged from the records
   * alone (so a copy verifies as the store did): `VerifyReport.digestsOverdue`. Absent or 0: not checked.
   */
  readonly digestsOverdueAfterMs?: number;
}

/** How many records `verify()` reads at a time. */
export const VERIFY_PAGE = 1000;

/** The last record of this process's chain, or null before the chain is opened. */
export interface ChainTip {
  readonly chainSeq: number;
  readonly hash: string;
}

/** A legal hold (from `hold.added` / `hold.released` records): keeps a session's or a caller's exchanges from purges. */
export interface StoredHold {
  readonly id: string;
  readonly session: string | null;
  readonly caller: string | null;
  readonly reason: string;
  readonly createdBy: string;
  readonly createdAt: number;
  readonly releasedAt: number | null;
  readonly releasedBy: string | null;
  readonly releaseReason: string | null;
}

/**
 * A legal hold as listings show it: as purges have it, with where the `holds` index and the ledger disagree. Where a
 * `hold.added` record made the hold, its session, caller, reason and who placed it when are the record's; a hold no
 * record made shows its index row. It is active while the index row or the ledger's records say so — a purge keeps
 * what either holds — and released (with the `hold.released` record's who, when and why) once both say so.
 */
export interface ListedHold extends StoredHold {
  /** The hold's `holds` row as the index has it; null when the index has none. */
  readonly index: StoredHold | null;
  /** Whether a `hold.added` record made the hold. */
  readonly inLedger: boolean;
  /** How the index disagrees with the ledger's records, in verify's words (`index_changed`); empty when they agree. */
  readonly ledgerMismatch: readonly string[];
}

/** Payload of a `hold.added` record. Exactly one of `session` and `caller` is set. */
export interface HoldAddedData {
  readonly holdId: string;
  readonly session: string | null;
  readonly caller: string | null;
  readonly reason: string;
  readonly by: string;
  readonly at: number;
}

/** Payload of a `hold.released` record. */
export interface HoldReleasedData {
  readonly holdId: string;
  readonly reason: string;
  readonly by: string;
  readonly at: number;
}

/** Which finished exchanges are due for purging. */
export interface RetentionQuery {
  /** Connection name → cutoff (epoch ms): its exchanges that ended before the cutoff are due. */
  readonly cutoffs: Readonly<Record<string, number>>;
  /** Cutoff for connections not named in `cutoffs` (e.g. no longer configured); absent: keep them. */
  readonly otherCutoff?: number | undefined;
  readonly limit: number;
  /**
   * SIEM sinks that must have received an exchange's records before it is due: an exchange with a record past a
   * sink's delivery cursor on its chain (or on a chain the sink has no cursor for) waits.
   */
  readonly deliveredTo?: readonly string[] | undefined;
  /** Continue after this candidate (pages in ended-at order; for dry runs, which delete nothing). */
  readonly after?: { readonly endedAt: number; readonly id: string } | undefined;
}

/**
 * An exchange a purge may take: finished, past its connection's window, not under a hold, and with no record at the
 * head of its chain (heads stay, so chains stay anchored and writers keep appending after them).
 */
export interface PurgeCandidate {
  readonly id: string;
  readonly sessionId: string;
  readonly connection: string;
  readonly callerSubject: string;
  readonly startedAt: number;
  readonly endedAt: number;
  /** Records the exchange has on the ledger. */
  readonly records: number;
}

/** Consecutive chain positions a purge removed, with the hashes that let verification resume across the gap. */
export interface PurgedRun {
  readonly chain: string;
  readonly from: number;
  readonly to: number;
  /** `prevHash` of record `from`: the hash the record before the gap must still have. */
  readonly prevHash: string;
  /** Hash of record `to`: the hash the record after the gap must link to. */
  readonly hash: string;
}

/** What one purge transaction removed, handed to the caller to seal into the `retention.purged` record. */
export interface PurgeRemoval {
  readonly exchanges: readonly string[];
  readonly records: number;
  readonly blobs: number;
  readonly runs: readonly PurgedRun[];
  /** Earliest start and latest end of the purged exchanges. */
  readonly timeRange: { readonly from: number; readonly to: number };
  /** Every chain's head once the records were removed (before the purge record is appended). */
  readonly heads: ReadonlyArray<{ readonly chain: string; readonly chainSeq: number; readonly hash: string }>;
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

/**
 * A gateway key as listings show it: as authentication has it, with where the `gateway_keys` index and the ledger
 * disagree. Where a `key.created` record made the key, its name, owner, connections, creation and expiry are the
 * record's, and it is revoked when a `key.revoked` record or the index row says so; a key no record made shows its
 * index row. Authentication refuses a key the index or the ledger lacks (`index` null, `inLedger` false), whatever
 * the rest says.
 */
export interface ListedGatewayKey extends StoredGatewayKey {
  /** The key's `gateway_keys` row as the index has it; null when the index has none. */
  readonly index: StoredGatewayKey | null;
  /** Whether a `key.created` record made the key. */
  readonly inLedger: boolean;
  /** How the index disagrees with the ledger's records, in verify's words (`index_changed`); empty when they agree. */
  readonly ledgerMismatch: readonly string[];
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
  /** Who created it through the admin API, as they authenticated (absent: the CLI's local user, `createdBy`). */
  readonly actor?: RecordingReader;
  /** The id of the key of the same name this one replaces (`vigil keys rotate`), revoked in the same append. */
  readonly rotates?: string;
}

/** Payload of a `key.revoked` record. */
export interface KeyRevokedData {
  readonly name: string;
  readonly hash: string;
  /**
   * When the key stops working: the record's time, or later for a key rotated with an overlap (`vigil keys rotate`),
   * which keeps working until then. A later record may bring it forward, never back.
   */
  readonly revokedAt: number;
  readonly revokedBy: string;
  /** The id of the key that replaces it (`vigil keys rotate`), created in the same append. */
  readonly rotatedTo?: string;
  /** Who revoked it through the admin API, as they authenticated (absent: the CLI's local user, `revokedBy`). */
  readonly actor?: RecordingReader;
}

export interface AuditStore {
  readonly kind: 'sqlite' | 'postgres';
  /**
   * Whether append() does its work on the calling thread (SQLite, synchronously), holding the event loop while it
   * writes, rather than in a database server while this process goes on (PostgreSQL).
   */
  readonly writesOnCallingThread: boolean;
  /** This process's chain id. */
  readonly chainId: string;

  /**
   * Append records (and the blobs they refer to) in one durable transaction, chaining each record.
   * Resolves once the data is durable; rejects if it is not, so a caller can fail closed. Concurrent calls are
   * serialised by the store: each batch lands whole, in call order, on this process's chain.
   */
  append(batch: WriteBatch): Promise<readonly StoredRecord[]>;

  /**
   * Whether `err`, thrown by this store, says the store itself cannot write now — locked, full, gone, its connection
   * lost — rather than that something in the batch was bad: then writing the batch apart would only fail again.
   */
  isUnavailable(err: unknown): boolean;
  /**
   * Whether `record`, from an append that failed, was written all the same. An append whose connection was lost after
   * what commits it was sent may have committed (PostgreSQL's answer lost, not the write): the store settles that
   * before its next append — ending the server process that ran it if it still runs, then reading its chain back —
   * and an append of the same record objects again skips those written, so a batch tried again is never written twice.
   * SQLite: never (a write on this thread commits or rolls back before it throws). Throws when the store cannot tell
   * now (unreachable).
   */
  appendedDespiteFailure(record: NewRecord): Promise<boolean>;

  /** Records of one exchange, in append order. */
  exchangeRecords(exchangeId: string): Promise<readonly StoredRecord[]>;
  /** Records of these exchanges, in append order: one read for a page of exchanges (exports, a session's page). */
  recordsOfExchanges(exchangeIds: readonly string[]): Promise<readonly StoredRecord[]>;
  /** Records of one session, in append order. */
  sessionRecords(sessionId: string): Promise<readonly StoredRecord[]>;
  /** Blob contents by hash; unknown hashes are absent from the map. */
  blobs(hashes: readonly string[]): Promise<ReadonlyMap<string, Buffer>>;

  /**
   * Sessions with an exchange matching `filter`, newest activity first, each with its {@link RecentExchanges}: one
   * statement per page, whose work per session is bounded by {@link SESSION_RECENT_LIMIT} (beyond the grouping of
   * the matching exchanges that orders the sessions).
   */
  listSessions(filter?: SessionFilter): Promise<Page<SessionListItem>>;
  listExchanges(sessionId: string): Promise<readonly ExchangeSummary[]>;
  /**
   * Exchanges matching `filter`, newest first (started_at, then id) or oldest first (`oldestFirst`), with cursor
   * pagination.
   */
  listExchangesFiltered(filter?: ExchangeListFilter): Promise<Page<ExchangeListItem>>;
  /**
   * What the session's exchanges matching `request` add up to (counts, tokens, times, outcomes, the first few callers,
   * connections and models), by SQL aggregates over the exchange index; undefined when none match.
   */
  /** `pricing`: what tokens cost, for the totals' `cost`; absent, they have none. */
  sessionTotals(
    sessionId: string,
    request?: SessionTotalsRequest,
    pricing?: Pricing,
  ): Promise<SessionTotals | undefined>;
  /**
   * Exchanges, tokens, failures and refusals matching the filter, grouped by caller, connection, model or day: who
   * used what (by SQL aggregates over the exchange index; the bodies are not read).
   */
  /** `pricing`: what tokens cost, for each row's `cost`; absent, rows have none. */
  usage(request: UsageRequest, pricing?: Pricing): Promise<UsageReport>;
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

  /**
   * A gateway key by the SHA-256 of the key, revoked and expired ones included — as its ledger records make it, not
   * only as the index row says: undefined when no `key.created` record made it, revoked when a `key.revoked` record
   * (or the row) says so, with the `key.created` record's name, owner, connections and expiry. Authentication's
   * lookup: one statement, with the ledger's key records cached (see LedgerKeyCache).
   */
  findGatewayKey(hash: string): Promise<StoredGatewayKey | undefined>;
  /**
   * Every gateway key the index or the ledger has, newest first, as authentication has it and with where the two
   * disagree (see ListedGatewayKey). Both are read as of one moment.
   */
  listGatewayKeys(): Promise<readonly ListedGatewayKey[]>;

  /** Every chain and its last chain_seq. */
  chainHeads(): Promise<ReadonlyArray<{ chain: string; chainSeq: number }>>;
  /**
   * Every chain whose last record is not a `digest.signed` record, with what follows its last digest, in chain order.
   * A few index seeks per chain (the last digest through a partial index of digests), so the running gateway can ask
   * on every check.
   */
  undigestedTails(): Promise<readonly UndigestedTail[]>;
  /** Records of one chain after `afterChainSeq`, in chain order. */
  chainRecords(chain: string, afterChainSeq: number, limit: number): Promise<readonly StoredRecord[]>;
  /**
   * Records of the given kinds appended at or after `since` (epoch ms), in append order. Used to follow decisions made
   * by other processes (approvals); callers de-duplicate by position, since concurrent writers may commit out of order.
   * `afterSeq`: only records after this store position (to page through all of them: the last page's last `seq`).
   */
  recordsOfKinds(
    kinds: readonly string[],
    since: number,
    limit: number,
    afterSeq?: number,
  ): Promise<readonly StoredRecord[]>;
  /** A SIEM sink's delivery cursor per chain (last delivered chain_seq). Not evidence: a mutable index. */
  sinkCursors(sink: string): Promise<ReadonlyMap<string, number>>;
  /**
   * Moves a sink's cursor forward to `chainSeq`; never back (a position at or behind the cursor changes nothing), so a
   * leader that lost its leadership and confirms a batch late cannot undo what the new leader delivered. PostgreSQL
   * also refuses, for a role without the schema owner's privileges, a position past the chain's last record.
   */
  setSinkCursor(sink: string, chain: string, chainSeq: number): Promise<void>;
  /**
   * Whether this process should do a singleton job now (deliver to a sink): takes the leadership, or confirms it is
   * still held. SQLite: always (one gateway per file). PostgreSQL: held by one process at a time through an advisory
   * lock, taken over when that process goes away — or loses its lock session (a terminated backend, a dropped
   * connection), when it steps down at once.
   */
  tryLeadership(name: string): Promise<boolean>;
  /**
   * Whether this process still holds a leadership `tryLeadership` gave it, asked of the database rather than
   * remembered: a singleton job checks before each step with effects outside the store (a delivery), and stops when
   * it no longer holds it, since another process may have taken over. Never takes a leadership.
   */
  holdsLeadership(name: string): Promise<boolean>;
  /**
   * Where leadership can be lost (PostgreSQL): `listener` is called as soon as the store learns that this process lost
   * every leadership it held (its lock session ended), so a job can call off what it handed over and not yet sent
   * rather than wait for its next `holdsLeadership`. Returns the unsubscribe function.
   */
  onLeadershipLost?(listener: () => void): () => void;
  /**
   * A fast signal, where the store has one (PostgreSQL: LISTEN/NOTIFY): `listener` is called soon after any process
   * appends a record whose kind starts with `kindPrefix`. Absent or silent, callers poll (`recordsOfKinds`); the
   * signal only shortens the wait. Returns the unsubscribe function.
   */
  onAppended?(kindPrefix: string, listener: () => void): () => void;
  /**
   * Whether the process that writes `chain` is still running (so its open exchanges are not interrupted); undefined
   * when the store cannot tell now (PostgreSQL, while its lock connection is being made again).
   */
  chainIsLive(chain: string): Promise<boolean | undefined>;
  /**
   * How long a writer that still runs may be seen as gone by {@link chainIsLive}: 0 where that answer is final
   * (SQLite: one gateway per file). On PostgreSQL a writer's chain lock is lost with its connection (the server
   * restarted, the backend was ended) until it connects again, so a chain is taken for gone only when it is seen gone
   * again this long after.
   */
  readonly writerReconnectMs: number;

  /**
   * Append one record built from this chain's tip at the moment of appending, in the same transaction (a signed
   * digest must name the record right before it), given every chain's head at that moment too (this one's
   * included; in chain order). `build` returns undefined to append nothing.
   */
  appendAtTip(
    build: (tip: ChainTip | null, heads: readonly ChainHead[]) => NewRecord | undefined,
  ): Promise<StoredRecord | undefined>;
  /**
   * Appends to this chain the records `build` makes of the records of `kinds` already appended at or after `since`
   * (epoch ms, by any process; given in append order), in one transaction: a record that two processes would both
   * append is appended once, since calls for the same kinds run one at a time across processes (PostgreSQL: a
   * transaction-level advisory lock on the kinds; SQLite: the write lock) and each reads what those before it
   * appended. `build` may be called more than once (a retried transaction). Resolves with what was appended.
   */
  appendIfNew(
    kinds: readonly string[],
    since: number,
    build: (existing: readonly StoredRecord[]) => readonly NewRecord[],
  ): Promise<readonly StoredRecord[]>;

  /**
   * Every legal hold the index or the ledger has, newest first, as purges have it and with where the two disagree
   * (see ListedHold); released ones too unless `activeOnly`. Both are read as of one moment.
   */
  listHolds(options?: { activeOnly?: boolean }): Promise<readonly ListedHold[]>;
  /**
   * Exchanges due for purging, oldest end first: none that a hold covers, as the holds index or the ledger's hold
   * records have it (matched against the exchange index's session, caller and e-mail, its case folded as case-fold.ts
   * folds it; the purge checks again against the exchange's own request record).
   */
  retentionCandidates(query: RetentionQuery): Promise<readonly PurgeCandidate[]>;
  /**
   * Which of these exchanges an active hold of the ledger's hold records covers, matched against each exchange's own
   * request record: the test {@link purgeExchanges} makes last. A dry run drops these from its candidates, so that it
   * counts what a run purges even where the candidate query, which matches holds against the exchange index, was told
   * otherwise (an index row changed behind the store's back).
   */
  ledgerHeldExchanges(ids: readonly string[]): Promise<ReadonlySet<string>>;
  /**
   * Remove these exchanges in one transaction: their records, index rows and search text, and the blobs no remaining
   * record refers to; exchanges that came under a hold meanwhile (or are not candidates) are skipped — held as the
   * holds index says, or as the ledger's hold records say (a hold released in the index alone still holds). `seal` then
   * builds the `retention.purged` record describing the removal, which is appended to this chain in the same
   * transaction. Resolves undefined when nothing was left to remove. The only way records ever leave the ledger.
   * The transaction holds the write lock (SQLite: on this thread) for as long as it runs: callers keep `ids` few.
   */
  purgeExchanges(
    ids: readonly string[],
    seal: (removal: PurgeRemoval) => NewRecord,
  ): Promise<{ removal: PurgeRemoval; record: StoredRecord } | undefined>;
  /**
   * After a run of purges: SQLite checkpoints its write-ahead log and truncates it, so no copy of removed pages stays
   * in it; `walKept` when that could not be done (another connection kept reading old pages too long), and the log
   * may hold them until they are overwritten. PostgreSQL: nothing to do.
   */
  finishPurges(): Promise<{ walKept?: true }>;

  /**
   * Walk every chain and every referenced blob; report what was changed, removed or reordered. Gaps left by
   * retention pass when a purge record covers them exactly; with public keys, signed digests and purge records must
   * verify, so a rewrite with recomputed hashes is caught too. The walk reads one consistent snapshot of the store:
   * what other writers (a purge, a new chain) commit while it runs is not seen, and not mistaken for tampering.
   */
  verify(options?: VerifyOptions): Promise<VerifyReport>;

  close(): Promise<void>;
}
