/**
 * Verifies one session without walking the whole ledger: every record of the session is rehashed, linked to its
 * neighbours on its chain (so a record rewritten with a recomputed hash is caught by the next record's `prevHash`),
 * its blobs are rehashed, and every exchange the index lists for the session must still have its request record.
 *
 * What this cannot see is the removal of a whole exchange together with its index rows, or of a chain's tail: the
 * store-wide `verify()` (which also checks what each chain committed to when it opened) is the final word.
 *
 * Clients choose session ids, so callers can share a session: a reader who may see only their own exchanges gets a
 * verification of those alone (their records, blobs and links), and learns nothing of the other callers' records.
 */
import type { AuditStore, ChainPosition, StoredRecord, VerifyProblem, PurgedRun } from '../store/audit-store.js';
import { blobRefs } from '../store/blob-refs.js';
import { recordHash, sha256Hex } from '../store/ledger.js';
import type { RetentionPurgedData } from '../store/retention.js';

export interface SessionVerifyReport {
  readonly ok: boolean;
  readonly session: string;
  /** `session`: every record of the session was checked; `caller`: only the records of the reader's own exchanges. */
  readonly scope: 'session' | 'caller';
  readonly records: number;
  readonly exchanges: number;
  readonly problems: readonly VerifyProblem[];
}

const key = (p: ChainPosition): string => `${p.chain}#${p.chainSeq}`;

/** Purge records read per query. */
const PURGE_PAGE = 10_000;

/**
 * Every run of positions that `retention.purged` records say they removed — all of them, a page at a time: purges run
 * in batches of ~20 ms, each with its own record, so a store collects many.
 */
export async function recordedPurgeRuns(store: AuditStore, pageSize = PURGE_PAGE): Promise<PurgedRun[]> {
  const records: StoredRecord[] = [];
  for (let after = 0; ;) {
    const page = await store.recordsOfKinds(['retention.purged'], 0, pageSize, after);
    records.push(...page);
    if (page.length < pageSize) break;
    after = page.at(-1)!.seq;
  }
  return records.flatMap((r) => {
    try {
      // `?? []`: a record written without `removed` (malformed, or by hand) removed nothing here.
      return (JSON.parse(r.data) as RetentionPurgedData).removed ?? [];
    } catch {
      return [];
    }
  });
}

/**
 * Verify the records of one session.
 *
 * @param only - the exchanges to verify (the reader's own), when the reader may not see the whole session.
 */
export async function verifySession(
  store: AuditStore,
  sessionId: string,
  only?: ReadonlySet<string>,
): Promise<SessionVerifyReport> {
  const inScope = (exchangeId: string | null): boolean =>
    only === undefined || (exchangeId !== null && only.has(exchangeId));
  const records = (await store.sessionRecords(sessionId)).filter((r) => inScope(r.exchangeId));
  const problems: VerifyProblem[] = [];
  const problem = (r: StoredRecord | ChainPosition, kind: VerifyProblem['problem'], detail: string): void => {
    problems.push({ chain: r.chain, chainSeq: r.chainSeq, seq: 'seq' in r ? r.seq : null, problem: kind, detail });
  };

  const neighbours: ChainPosition[] = [];
  for (const r of records) {
    if (r.chainSeq > 1) neighbours.push({ chain: r.chain, chainSeq: r.chainSeq - 1 });
    neighbours.push({ chain: r.chain, chainSeq: r.chainSeq + 1 });
  }
  const byPosition = new Map((await store.recordsAt(neighbours)).map((r) => [key(r), r]));
  for (const r of records) byPosition.set(key(r), r);
  const inSession = new Set(records.map(key));
  // Positions retention removed (the store-wide verify checks the purge records themselves, signatures included).
  const purged = await recordedPurgeRuns(store);
  const wasPurged = (p: ChainPosition): PurgedRun | undefined =>
    purged.find((run) => run.chain === p.chain && run.from <= p.chainSeq && p.chainSeq <= run.to);

  /** Each blob referred to, with the first record that refers to it. */
  const referrers = new Map<string, StoredRecord>();
  for (const r of records) {
    const where = `record ${r.chain}#${r.chainSeq} (seq ${r.seq}, ${r.kind})`;
    if (recordHash(r.prevHash, r) !== r.hash) problem(r, 'changed', `${where} was changed after it was written`);
    if (r.chainSeq > 1) {
      const position = { chain: r.chain, chainSeq: r.chainSeq - 1 };
      const before = byPosition.get(key(position));
      const run = before ? undefined : wasPurged(position);
      if (run) {
        if (run.hash !== r.prevHash)
          problem(r, 'changed', `${where} does not link to the hash the purge stated for the record before it`);
      } else if (!before) problem(position, 'missing', `the record before ${where} is missing`);
      else if (before.hash !== r.prevHash) {
        problem(r, 'changed', `${where} does not link to the record before it: one of the two was replaced`);
      }
    }
    // Each link is checked once: from the record after it when that record is the session's too.
    const next = { chain: r.chain, chainSeq: r.chainSeq + 1 };
    const after = inSession.has(key(next)) ? undefined : byPosition.get(key(next));
    if (after && after.prevHash !== r.hash) {
      problem(r, 'changed', `${where} is not the record its successor was chained to: it was replaced`);
    }
    try {
      for (const h of blobRefs(r)) if (!referrers.has(h)) referrers.set(h, r);
    } catch {
      // Unparseable data: the hash check above has reported the record as changed.
    }
  }

  const blobs = await store.blobs([...referrers.keys()]);
  for (const [h, first] of referrers) {
    const data = blobs.get(h);
    if (!data) problem(first, 'blob_missing', `blob ${h} referred to by ${first.chain}#${first.chainSeq} is missing`);
    else if (sha256Hex(data) !== h)
      problem(first, 'blob_changed', `blob ${h} referred to by ${first.chain}#${first.chainSeq} was changed`);
  }

  const exchanges = (await store.listExchanges(sessionId)).filter((x) => inScope(x.id));
  const requested = new Set(records.filter((r) => r.kind === 'exchange.request').map((r) => r.exchangeId));
  for (const x of exchanges) {
    if (!requested.has(x.id)) {
      problems.push({
        chain: '',
        chainSeq: null,
        seq: null,
        problem: 'missing',
        detail: `exchange ${x.id} is indexed in session ${sessionId} but its request record is missing`,
      });
    }
  }
  return {
    ok: problems.length === 0,
    session: sessionId,
    scope: only === undefined ? 'session' : 'caller',
    records: records.length,
    exchanges: exchanges.length,
    problems,
  };
}
