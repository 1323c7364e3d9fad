/**
 * The gateway-key and legal-hold indexes as the ledger says they are: replayed from `key.created`/`key.revoked` and
 * `hold.added`/`hold.released` records in append order, by the same rules the stores apply when they append them.
 *
 * Those two indexes decide who may call (authentication reads `gateway_keys`) and what retention may purge (a purge
 * skips what `holds` says is held), yet they are tables someone with database access can change without a record:
 * un-revoke a key, add a key row nobody created, release a hold. So `verify` compares them with what the ledger says
 * (see {@link indexProblems}), authentication trusts a key only as far as the ledger does, and a purge re-checks
 * holds from the ledger inside its transaction.
 */
import type {
  HoldAddedData,
  HoldReleasedData,
  KeyCreatedData,
  KeyRevokedData,
  ListedGatewayKey,
  ListedHold,
  StoredGatewayKey,
  StoredHold,
  StoredRecord,
  VerifyProblem,
} from './audit-store.js';
import { gatewayKeyId } from '../identity/gateway-keys.js';
import { foldCase } from './case-fold.js';

/** The record kinds that make the gateway-key index. */
export const KEY_RECORD_KINDS = ['key.created', 'key.revoked'] as const;
/** The record kinds that make the hold index. */
export const HOLD_RECORD_KINDS = ['hold.added', 'hold.released'] as const;

/** A record that makes an index row, as much of it as replaying needs. */
export type IndexRecord = Pick<StoredRecord, 'seq' | 'chain' | 'chainSeq' | 'kind' | 'data'>;

/** Where a record sits, for messages: `ch_…#12`. */
type Position = Pick<StoredRecord, 'chain' | 'chainSeq'>;
const at = (p: Position): string => `${p.chain}#${p.chainSeq}`;

/** A key index row as the ledger makes it, with the records that made it. */
export interface LedgerKey extends StoredGatewayKey {
  readonly created: Position;
  readonly revoked: Position | null;
}

/** A hold index row as the ledger makes it, with the records that made it. */
export interface LedgerHold extends StoredHold {
  readonly added: Position;
  readonly released: Position | null;
}

function parse<T>(r: IndexRecord): T | undefined {
  try {
    return JSON.parse(r.data) as T;
  } catch {
    return undefined; // a changed record: verify reports it by its hash
  }
}

/**
 * In append order, without records at a chain position below 1: no writer puts one there (chains start at #1), so
 * one is forged, and verify reports it as not linking. On PostgreSQL the database refuses them since migration 8.
 */
const bySeq = (records: Iterable<IndexRecord>): IndexRecord[] =>
  [...records].filter((r) => r.chainSeq >= 1).sort((a, b) => a.seq - b.seq);

/**
 * One index the ledger makes (gateway keys, holds): the record kind that makes a row and the one that ends it (a
 * revocation, a release), what each does to the row, and how the index table's rows compare with the ledger's.
 */
interface LedgerIndex<Row, Made extends Row, MadeData, EndedData> {
  /** The index table. */
  readonly table: string;
  readonly made: string;
  readonly ended: string;
  /** The id of the row a record of either kind names. */
  readonly recordId: (d: MadeData | EndedData) => string;
  readonly make: (d: MadeData, at: Position) => Made;
  readonly end: (row: Made, d: EndedData, at: Position) => Made;
  /**
   * Whether an `ended` record changes the row, as the stores' updates test: a hold is released once (`released_at IS
   * NULL`); a key's revocation may be brought forward (`revoked_at IS NULL OR revoked_at > $revokedAt`: a key rotated
   * with an overlap, then revoked at once), never back.
   */
  readonly endsNow: (row: Made, d: EndedData) => boolean;
  readonly madeAt: (row: Made) => Position;
  /** The record that ended the row; null while none has. */
  readonly endedAt: (row: Made) => Position | null;
  readonly idOf: (row: Row) => string;
  readonly rowLabel: (row: Row) => string;
  readonly ledgerLabel: (row: Made) => string;
  /** The fields verify compares. */
  readonly fields: ReadonlyArray<keyof Row>;
}

const position = (r: IndexRecord): Position => ({ chain: r.chain, chainSeq: r.chainSeq });

/**
 * The rows `records` make of an index, by id, in append order: a `made` record adds a row (another for the same id
 * changes nothing), an `ended` record naming an existing row ends it when `endsNow` says so (the first one, or for a
 * key one that revokes it earlier; one before the row existed changes nothing), as the stores' updates do.
 */
function replay<Row, Made extends Row, MadeData, EndedData>(
  records: Iterable<IndexRecord>,
  index: LedgerIndex<Row, Made, MadeData, EndedData>,
): Map<string, Made> {
  const rows = new Map<string, Made>();
  for (const r of bySeq(records)) {
    if (r.kind === index.made) {
      const d = parse<MadeData>(r);
      if (!d || rows.has(index.recordId(d))) continue;
      rows.set(index.recordId(d), index.make(d, position(r)));
    } else if (r.kind === index.ended) {
      const d = parse<EndedData>(r);
      const row = d && rows.get(index.recordId(d));
      if (!d || !row || !index.endsNow(row, d)) continue;
      rows.set(index.recordId(d), index.end(row, d, position(r)));
    }
  }
  return rows;
}

const KEY_FIELDS = ['name', 'owner', 'connections', 'createdAt', 'expiresAt', 'revokedAt'] as const;
const HOLD_FIELDS = [
  'session',
  'caller',
  'reason',
  'createdBy',
  'createdAt',
  'releasedAt',
  'releasedBy',
  'releaseReason',
] as const;

const keyLabel = (k: StoredGatewayKey): string => `gateway key "${k.name}" (${gatewayKeyId(k.hash)})`;

/** The gateway-key index: `key.created` adds a key, `key.revoked` sets its `revokedAt`. */
const KEYS: LedgerIndex<StoredGatewayKey, LedgerKey, KeyCreatedData, KeyRevokedData> = {
  table: 'gateway_keys',
  made: 'key.created',
  ended: 'key.revoked',
  recordId: (d) => d.hash,
  make: (d, created) => ({
    hash: d.hash,
    name: d.name,
    owner: d.owner,
    connections: d.connections,
    createdAt: d.createdAt,
    expiresAt: d.expiresAt,
    revokedAt: null,
    created,
    revoked: null,
  }),
  end: (key, d, revoked) => ({ ...key, revokedAt: d.revokedAt, revoked }),
  endsNow: (k, d) => k.revokedAt === null || d.revokedAt < k.revokedAt,
  madeAt: (k) => k.created,
  endedAt: (k) => k.revoked,
  idOf: (k) => k.hash,
  rowLabel: keyLabel,
  ledgerLabel: keyLabel,
  fields: KEY_FIELDS,
};

/** The hold index: `hold.added` adds a hold, `hold.released` releases it. */
const HOLDS: LedgerIndex<StoredHold, LedgerHold, HoldAddedData, HoldReleasedData> = {
  table: 'holds',
  made: 'hold.added',
  ended: 'hold.released',
  recordId: (d) => d.holdId,
  make: (d, added) => ({
    id: d.holdId,
    session: d.session,
    caller: d.caller,
    reason: d.reason,
    createdBy: d.by,
    createdAt: d.at,
    releasedAt: null,
    releasedBy: null,
    releaseReason: null,
    added,
    released: null,
  }),
  end: (hold, d, released) => ({
    ...hold,
    releasedAt: d.at,
    releasedBy: d.by,
    releaseReason: d.reason,
    released,
  }),
  endsNow: (h) => h.releasedAt === null,
  madeAt: (h) => h.added,
  endedAt: (h) => h.released,
  idOf: (h) => h.id,
  rowLabel: (h) => `hold ${h.id} (${h.session !== null ? `session ${h.session}` : `caller ${h.caller}`})`,
  ledgerLabel: (h) => `hold ${h.id}`,
  fields: HOLD_FIELDS,
};

/** The key index the ledger makes, by key hash. */
export const ledgerKeys = (records: Iterable<IndexRecord>): Map<string, LedgerKey> => replay(records, KEYS);

/** The hold index the ledger makes, by hold id. */
export const ledgerHolds = (records: Iterable<IndexRecord>): Map<string, LedgerHold> => replay(records, HOLDS);

/** The holds the ledger's records leave active. */
export const activeLedgerHolds = (records: Iterable<IndexRecord>): LedgerHold[] =>
  [...ledgerHolds(records).values()].filter((h) => h.releasedAt === null);

/** Who an exchange's request record says called, for matching holds. */
export interface HoldSubject {
  readonly session: string;
  readonly callerSubject: string;
  readonly callerEmail: string | null;
}

/**
 * The active hold that covers an exchange, if any: by its session, or its caller — the subject, or the e-mail in
 * any case, folded as the stores' HELD query folds it (see case-fold.ts).
 */
export function heldBy(holds: Iterable<StoredHold>, x: HoldSubject): StoredHold | undefined {
  const email = x.callerEmail === null ? undefined : foldCase(x.callerEmail);
  for (const h of holds) {
    if (h.releasedAt !== null) continue;
    if (h.session !== null && h.session === x.session) return h;
    if (h.caller !== null && (h.caller === x.callerSubject || foldCase(h.caller) === email)) return h;
  }
  return undefined;
}

/**
 * The exchanges among `records` (by their `exchange.request` records: the session and the caller as recorded, under
 * the hash) that an active hold of the ledger covers. A purge takes this, not only the holds index, as the last word.
 */
export function heldByLedger(
  holdRecords: Iterable<IndexRecord>,
  records: Iterable<Pick<StoredRecord, 'kind' | 'exchangeId' | 'sessionId' | 'data'>>,
): Set<string> {
  const held = new Set<string>();
  const active = activeLedgerHolds(holdRecords);
  if (active.length === 0) return held;
  for (const r of records) {
    if (r.kind !== 'exchange.request' || r.exchangeId === null) continue;
    let caller: { subject?: unknown; email?: unknown } | undefined;
    let session: unknown;
    try {
      const d = JSON.parse(r.data) as { caller?: typeof caller; session?: { id?: unknown } };
      caller = d.caller;
      session = d.session?.id;
    } catch {
      // A changed record: verify reports it; held by its session alone here.
    }
    const subject: HoldSubject = {
      session: r.sessionId ?? (typeof session === 'string' ? session : ''),
      callerSubject: typeof caller?.subject === 'string' ? caller.subject : '',
      callerEmail: typeof caller?.email === 'string' ? caller.email : null,
    };
    if (heldBy(active, subject)) held.add(r.exchangeId);
  }
  return held;
}

/** The fields of `row` that differ from `want`, as `field: index X, ledger Y`. */
function differences<T>(row: T, want: T, fields: ReadonlyArray<keyof T>): string[] {
  return fields
    .filter((f) => JSON.stringify(row[f]) !== JSON.stringify(want[f]))
    .map((f) => `${String(f)}: index ${JSON.stringify(row[f])}, ledger ${JSON.stringify(want[f])}`);
}

/**
 * Every way an index's rows differ from the rows `ledger` (its records replayed) makes of it, told to `problem` with
 * the record it contradicts (null: none) and the id of the row.
 */
function compareIndex<Row, Made extends Row, MadeData, EndedData>(
  index: LedgerIndex<Row, Made, MadeData, EndedData>,
  rows: readonly Row[],
  ledger: ReadonlyMap<string, Made>,
  problem: (where: Position | null, detail: string, id: string) => void,
): void {
  const seen = new Set<string>();
  for (const row of rows) {
    const id = index.idOf(row);
    const label = index.rowLabel(row);
    const want = ledger.get(id);
    seen.add(id);
    if (!want) {
      problem(
        null,
        `${label} is in the ${index.table} index, but no ${index.made} record made it: the index was changed`,
        id,
      );
      continue;
    }
    const diff = differences<Row>(row, want, index.fields);
    if (diff.length) {
      const made = index.madeAt(want);
      const ended = index.endedAt(want);
      const records = [`${index.made} ${at(made)}`, ...(ended ? [`${index.ended} ${at(ended)}`] : [])];
      problem(
        ended ?? made,
        `${label} in the ${index.table} index differs from its records (${records.join(', ')}): ${diff.join('; ')}: the index was changed`,
        id,
      );
    }
  }
  for (const [id, want] of ledger) {
    if (seen.has(id)) continue;
    problem(
      index.madeAt(want),
      `${index.ledgerLabel(want)} of ${index.made} ${at(index.madeAt(want))} is missing from the ${index.table} index: the index was changed`,
      id,
    );
  }
}

/**
 * Every way the gateway-key and hold index rows differ from what the ledger's records make of them: a row no record
 * made, a row whose fields the records contradict (a revoked key live again, a hold released without a record), a
 * record's row missing. Each problem names the row and, where there is one, the record.
 */
export function indexProblems(
  records: Iterable<IndexRecord>,
  rows: { readonly keys: readonly StoredGatewayKey[]; readonly holds: readonly StoredHold[] },
): VerifyProblem[] {
  const all = [...records];
  const problems: VerifyProblem[] = [];
  const problem = (where: Position | null, detail: string): void => {
    problems.push({
      chain: where?.chain ?? '',
      chainSeq: where?.chainSeq ?? null,
      seq: null,
      problem: 'index_changed',
      detail,
    });
  };
  compareIndex(KEYS, rows.keys, ledgerKeys(all), problem);
  compareIndex(HOLDS, rows.holds, ledgerHolds(all), problem);
  return problems;
}

/** An index's rows beside the ledger's, by id (each id once, the index's first), with how they disagree. */
function sideBySide<Row, Made extends Row, MadeData, EndedData>(
  index: LedgerIndex<Row, Made, MadeData, EndedData>,
  records: Iterable<IndexRecord>,
  rows: readonly Row[],
): Array<{ row: Row | null; made: Made | null; ledgerMismatch: string[] }> {
  const ledger = replay(records, index);
  const mismatch = new Map<string, string[]>();
  compareIndex(index, rows, ledger, (_, detail, id) => mismatch.set(id, [...(mismatch.get(id) ?? []), detail]));
  const byId = new Map(rows.map((r) => [index.idOf(r), r]));
  return [...new Set([...byId.keys(), ...ledger.keys()])].map((id) => ({
    row: byId.get(id) ?? null,
    made: ledger.get(id) ?? null,
    ledgerMismatch: mismatch.get(id) ?? [],
  }));
}

/** Newest first; then by `tie` (ascending), as the stores' `ORDER BY created_at DESC, …` did. */
const newestFirst =
  <T extends { createdAt: number }>(tie: (a: T, b: T) => number) =>
  (a: T, b: T): number =>
    b.createdAt - a.createdAt || tie(a, b);
const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The gateway keys as listings show them (see {@link ListedGatewayKey}): as authentication has them — the
 * `key.created` record's fields, revoked when a `key.revoked` record or the index row says so (the rule of
 * {@link LedgerKeyCache}) — beside the `gateway_keys` rows, given every key record and every row read as of one
 * moment. Newest first, then by name.
 */
export function listedKeys(records: Iterable<IndexRecord>, rows: readonly StoredGatewayKey[]): ListedGatewayKey[] {
  return sideBySide(KEYS, records, rows)
    .map(({ row, made, ledgerMismatch }): ListedGatewayKey => {
      const shown = made ?? row!;
      return {
        hash: shown.hash,
        name: shown.name,
        owner: shown.owner,
        connections: shown.connections,
        createdAt: shown.createdAt,
        expiresAt: shown.expiresAt,
        revokedAt: made?.revokedAt ?? row?.revokedAt ?? null,
        index: row,
        inLedger: made !== null,
        ledgerMismatch,
      };
    })
    .sort(newestFirst((a, b) => byText(a.name, b.name)));
}

/**
 * The legal holds as listings show them (see {@link ListedHold}): as purges have them — the `hold.added` record's
 * fields, active while the index row or the ledger's records say so (a purge keeps what either holds) — beside the
 * `holds` rows, given every hold record and every row read as of one moment. Newest first, then by id, descending.
 */
export function listedHolds(records: Iterable<IndexRecord>, rows: readonly StoredHold[]): ListedHold[] {
  return sideBySide(HOLDS, records, rows)
    .map(({ row, made, ledgerMismatch }): ListedHold => {
      const shown = made ?? row!;
      const active = made?.releasedAt === null || row?.releasedAt === null;
      return {
        id: shown.id,
        session: shown.session,
        caller: shown.caller,
        reason: shown.reason,
        createdBy: shown.createdBy,
        createdAt: shown.createdAt,
        releasedAt: active ? null : shown.releasedAt,
        releasedBy: active ? null : shown.releasedBy,
        releaseReason: active ? null : shown.releaseReason,
        index: row,
        inLedger: made !== null,
        ledgerMismatch,
      };
    })
    .sort(newestFirst((a, b) => byText(b.id, a.id)));
}

/**
 * The last seq of each kind of key record, `created:revoked` (0 for none): a store reads it in the statement that
 * finds the key's index row (two index seeks), and {@link LedgerKeyCache} reads the key records again when it
 * changed. See {@link KEY_RECORDS_VERSION_SQL}.
 */
export function keyRecordsVersion(records: readonly Pick<IndexRecord, 'seq' | 'kind'>[]): string {
  const last = (kind: string): number => records.reduce((max, r) => (r.kind === kind ? Math.max(max, r.seq) : max), 0);
  return `${last('key.created')}:${last('key.revoked')}`;
}

/**
 * {@link keyRecordsVersion} in SQL both stores accept, given the predicate (SQLite's partial kind index needs its own
 * spelled out) that leaves exchange records out.
 */
export const keyRecordsVersionSql = (notExchangeKind: string): string =>
  KEY_RECORD_KINDS.map(
    (k) => `(SELECT coalesce(max(seq), 0) FROM records WHERE kind = '${k}' AND ${notExchangeKind})`,
  ).join(" || ':' || ");

/**
 * The records of `kinds` ({@link KEY_RECORD_KINDS}, {@link HOLD_RECORD_KINDS}) as {@link IndexRecord} rows, in SQL both
 * stores accept; `also`: a further condition (SQLite's partial kind index needs its predicate spelled out).
 */
export const indexRecordsSql = (kinds: readonly string[], also?: string): string =>
  `SELECT seq, chain, chain_seq, kind, data FROM records
   WHERE kind IN (${kinds.map((k) => `'${k}'`).join(', ')})${also !== undefined ? ` AND ${also}` : ''}`;

/**
 * What the ledger says about gateway keys, for authentication: a key is known only if a `key.created` record made
 * it, with that record's name, owner, connections and expiry, and revoked if a `key.revoked` record (or its index row)
 * says so. The ledger's key records are cached, and read again when their version (see {@link keyRecordsVersion}),
 * which the store reads with the index row in one statement, has changed, or when the index has a live key the cache
 * does not know: the hot path stays one statement.
 *
 * On PostgreSQL, concurrent transactions may commit out of seq order: a key record committed after one with a later
 * seq does not change the version. A key created so is found by the re-read on a miss; a key revoked so is refused by
 * its index row, which the same transaction updated — unless someone also changes that row back before the next key
 * record, which verify then reports.
 */
export class LedgerKeyCache {
  private keys = new Map<string, LedgerKey>();
  private version: string | null = null;

  /** @param readKeyRecords - every `key.created` and `key.revoked` record (any order). */
  constructor(private readonly readKeyRecords: () => Promise<readonly IndexRecord[]>) {}

  /**
   * The key as the ledger makes it, given its index row (undefined: not in the index) and the version of the key
   * records read with the row. Undefined when the index or the ledger does not know it.
   */
  async judge(row: StoredGatewayKey | undefined, version: string): Promise<StoredGatewayKey | undefined> {
    if (!row) return undefined;
    let key = version === this.version ? this.keys.get(row.hash) : undefined;
    if (key === undefined) {
      // Read after the row: at least as new. Used for this decision whatever another refresh leaves in the cache.
      const records = await this.readKeyRecords();
      const keys = ledgerKeys(records);
      this.keys = keys;
      this.version = keyRecordsVersion(records);
      key = keys.get(row.hash);
    }
    if (!key) return undefined;
    return {
      hash: key.hash,
      name: key.name,
      owner: key.owner,
      connections: key.connections,
      createdAt: key.createdAt,
      expiresAt: key.expiresAt,
      // The earlier of the two: a row revoked without a record is refused, a record the row does not show wins.
      revokedAt:
        key.revokedAt === null || row.revokedAt === null
          ? (key.revokedAt ?? row.revokedAt)
          : Math.min(key.revokedAt, row.revokedAt),
    };
  }
}
