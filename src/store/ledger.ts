/**
 * The hash chain shared by every store implementation: how a record is hashed and how chains are verified.
 * Both stores call these functions so a chain written by one verifies with the same rules as the other.
 */
import { createHash, hash, randomBytes } from 'node:crypto';
import type {
  ChainPoint,
  ChainTip,
  OverdueDigest,
  PurgedRun,
  SignatureReport,
  StoredGatewayKey,
  StoredHold,
  StoredRecord,
  VerifyOptions,
  VerifyProblem,
  VerifyReport,
} from './audit-store.js';
import { VERIFY_PAGE } from './audit-store.js';
import { blobRefs } from './blob-refs.js';
import { judgeTail } from './digest-overdue.js';
import type { DigestSignedData } from './digests.js';
import { HOLD_RECORD_KINDS, indexProblems, KEY_RECORD_KINDS, type IndexRecord } from './ledger-index.js';
import type { RetentionPurgedData } from './retention.js';
import { checkSignature, keyIdOf } from './signing-key.js';

export const GENESIS_HASH = '0'.repeat(64);

/** One-shot `hash()`: a fraction of `createHash()`'s cost on the small pieces every request is cut into. */
export function sha256Hex(data: string | Buffer): string {
  return hash('sha256', data, 'hex');
}

/** A new chain id: one per writing process, sortable by creation time. */
export function newChainId(): string {
  return `ch_${Date.now().toString(36)}_${randomBytes(6).toString('hex')}`;
}

export interface HashInput {
  readonly chain: string;
  readonly chainSeq: number;
  readonly kind: string;
  readonly exchangeId: string | null;
  readonly sessionId: string | null;
  readonly at: number;
  readonly data: string;
}

/**
 * hash = SHA-256(prevHash ‖ every field, newline-separated). Fields are fixed-position so no two different records
 * share an encoding; `data` is last and may itself contain newlines.
 */
export function recordHash(prevHash: string, r: HashInput): string {
  return createHash('sha256')
    .update(`${prevHash}\n${r.chain}\n${r.chainSeq}\n${r.kind}\n${r.exchangeId ?? ''}\n${r.sessionId ?? ''}\n${r.at}\n`)
    .update(r.data)
    .digest('hex');
}

/** A record linked after `tip` (null: the chain's first): its position, its predecessor's hash and its own. */
export type LinkedRecord = HashInput & { readonly prevHash: string; readonly hash: string };

/** Link a record into `chain` after `tip`; the caller stores it and makes it the new tip. */
export function linkRecord(
  chain: string,
  tip: ChainTip | null,
  r: Omit<HashInput, 'chain' | 'chainSeq'>,
): LinkedRecord {
  const prevHash = tip?.hash ?? GENESIS_HASH;
  const input: HashInput = {
    chain,
    chainSeq: (tip?.chainSeq ?? 0) + 1,
    kind: r.kind,
    exchangeId: r.exchangeId,
    sessionId: r.sessionId,
    at: r.at,
    data: r.data,
  };
  return { ...input, prevHash, hash: recordHash(prevHash, input) };
}

/** What `chain.opened` records: the heads of the chains that existed when this chain began. */
export interface ChainHead {
  readonly chain: string;
  readonly chainSeq: number;
  readonly hash: string;
}

export interface VerifySource {
  /** All records ordered by (chain, chainSeq), from one snapshot of the store (with `blob`). */
  records(): AsyncIterable<StoredRecord>;
  /** Blob content by hash, or undefined when missing. */
  blob(hash: string): Promise<Buffer | undefined>;
  /** The gateway-key and hold index rows, from the same snapshot, read once every record was. */
  indexes(): Promise<{ readonly keys: readonly StoredGatewayKey[]; readonly holds: readonly StoredHold[] }>;
}

/** Positions missing from a chain, with the hashes on either side, checked against purge records once all are read. */
interface Gap {
  readonly chain: string;
  readonly from: number;
  readonly to: number;
  /** Hash of record `from - 1` as stored (GENESIS_HASH when the gap starts the chain). */
  readonly before: string;
  /** The prevHash of record `to + 1`: what the missing record `to` must have hashed to. */
  readonly after: string;
}

/** The runs of valid purge records, per chain, sorted by position. */
class PurgeCoverage {
  private readonly byChain = new Map<string, PurgedRun[]>();

  add(run: PurgedRun): void {
    const runs = this.byChain.get(run.chain) ?? [];
    runs.push(run);
    this.byChain.set(run.chain, runs);
  }

  seal(): void {
    for (const runs of this.byChain.values()) runs.sort((a, b) => a.from - b.from);
  }

  /** Whether a valid purge removed any record of this chain. */
  has(chain: string): boolean {
    return this.byChain.has(chain);
  }

  /** The run covering this position, if a valid purge removed it. */
  at(chain: string, chainSeq: number): PurgedRun | undefined {
    const runs = this.byChain.get(chain);
    if (!runs) return undefined;
    let lo = 0;
    let hi = runs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = runs[mid]!;
      if (chainSeq < r.from) hi = mid - 1;
      else if (chainSeq > r.to) lo = mid + 1;
      else return r;
    }
    return undefined;
  }
}

/**
 * Walk every chain: recompute each hash, require contiguous chain sequence numbers from 1, require that global append
 * order (seq) rises along the chain, check every referenced blob, and check that the heads each `chain.opened`,
 * `digest.signed` and `retention.purged` record committed to are still present with the same hash (this catches the
 * removal of a chain's tail, or of a whole chain, up to the last head another chain's record saw).
 *
 * Retention leaves gaps: a gap passes only when valid `retention.purged` records name exactly those positions, the
 * record before the gap still has the hash the purge stated for it and the record after still links to the hash it
 * stated for the last removed one. Signed digests are checked for linkage always, and with `publicKeys` every digest
 * and purge record must carry a valid signature: then even a rewrite that recomputes every later hash is caught, up
 * to each chain's last digest (what follows it is reported as its unsigned tail).
 *
 * Last, the gateway-key and hold index rows, which decide who may call and what may be purged, are compared with
 * what the ledger's key and hold records make of them (see ledger-index.ts).
 *
 * With `digestsOverdueAfterMs`, each chain whose records went on for longer than that after its last digest is
 * reported too (a warning: see digest-overdue.ts), judged as `undigestedTails()` finds tails, from this snapshot.
 */
export async function verifyLedger(source: VerifySource, options: VerifyOptions = {}): Promise<VerifyReport> {
  const problems: VerifyProblem[] = [];
  const keys = options.publicKeys ? new Map(options.publicKeys.map((k) => [keyIdOf(k), k])) : undefined;
  const seen = new Map<string, Map<number, string>>(); // chain → chainSeq → hash
  /** Heads records committed to, each with who committed (for messages: "chain X saw when it opened"). */
  const committedHeads: Array<{ saw: string; head: ChainHead; anchor?: true }> = (options.anchors ?? []).map(
    (head) => ({ saw: 'the anchor given names', head, anchor: true }),
  );
  const checkedBlobs = new Map<string, boolean>();
  const gaps: Gap[] = [];
  const coverage = new PurgeCoverage();
  const unsignedTails: Array<{ chain: string; fromSeq: number; toSeq: number }> = [];
  const indexRecords: IndexRecord[] = [];
  const overdueAfter = options.digestsOverdueAfterMs ?? 0;
  const digestsOverdue: OverdueDigest[] = [];
  let digests = 0;
  let purges = 0;
  let chains = 0;
  let records = 0;
  let current: string | null = null;
  let prevHash = GENESIS_HASH;
  let expectedSeq = 1;
  let lastGlobalSeq = -Infinity;
  let lastDigest: { toSeq: number; signature: string; at: number } | null = null;
  /** The chain's key and hold records no validly signed digest covers yet (with keys only). */
  let unsignedIndex: StoredRecord[] = [];
  /** The chain's last `digest.signed` record (valid or not: as undigestedTails() takes it), and the first after it. */
  let digestPoint: ChainPoint | null = null;
  let undigestedFrom: ChainPoint | null = null;
  let head: ChainPoint = { chainSeq: 0, at: 0 };

  const problem = (r: StoredRecord, kind: VerifyProblem['problem'], detail: string): void => {
    problems.push({ chain: r.chain, chainSeq: r.chainSeq, seq: r.seq, problem: kind, detail });
  };
  /** A signed record's signature, when keys were given; false (and a problem) when it does not verify. */
  const signatureHolds = (r: StoredRecord, data: Record<string, unknown>, what: string): boolean => {
    if (!keys) return true;
    const verdict = checkSignature(data, keys);
    if (verdict === 'ok') return true;
    problem(
      r,
      'signature_invalid',
      verdict === 'unknown_key'
        ? `${what} ${r.chain}#${r.chainSeq} is signed with key ${String(data.keyId)}, not one of the public keys given`
        : `${what} ${r.chain}#${r.chainSeq} has a signature that does not verify: it was forged or changed`,
    );
    return false;
  };
  const endChain = (): void => {
    if (current === null) return;
    const last = expectedSeq - 1;
    const from = lastDigest ? lastDigest.at + 1 : 1;
    if (keys && from <= last) unsignedTails.push({ chain: current, fromSeq: from, toSeq: last });
    if (undigestedFrom) {
      const tail = { chain: current, lastDigest: digestPoint, from: undigestedFrom, to: head };
      const late = judgeTail(tail, head.at, overdueAfter);
      if (late) digestsOverdue.push(late);
    }
    // Every writer of key and hold records (the CLI) signs its chain before it exits: one outside every valid
    // signature was appended by someone without the signing key — the gateway role can append a well-formed chain.
    for (const r of unsignedIndex) {
      problem(
        r,
        'index_unsigned',
        `${r.kind} record ${r.chain}#${r.chainSeq} is not covered by a validly signed digest of its chain: ` +
          'it was appended without the signing key',
      );
    }
    unsignedIndex = [];
  };

  for await (const r of source.records()) {
    records++;
    if (r.chain !== current) {
      endChain();
      current = r.chain;
      chains++;
      prevHash = GENESIS_HASH;
      expectedSeq = 1;
      lastGlobalSeq = -Infinity;
      lastDigest = null;
      digestPoint = null;
      undigestedFrom = null;
      seen.set(r.chain, new Map());
    }
    head = { chainSeq: r.chainSeq, at: r.at };
    if (r.kind === 'digest.signed') {
      digestPoint = head;
      undigestedFrom = null;
    } else undigestedFrom ??= head;
    if (r.chainSeq !== expectedSeq) {
      // Judged once every purge record has been read (they may sit on chains read later).
      gaps.push({ chain: r.chain, from: expectedSeq, to: r.chainSeq - 1, before: prevHash, after: r.prevHash });
      prevHash = r.prevHash;
    }
    if (r.prevHash !== prevHash) {
      problem(r, 'changed', `record ${r.chain}#${r.chainSeq} does not link to the record before it`);
    }
    const intact = recordHash(r.prevHash, r) === r.hash;
    if (!intact) {
      problem(
        r,
        'changed',
        `record ${r.chain}#${r.chainSeq} (seq ${r.seq}, ${r.kind}) was changed after it was written`,
      );
    }
    if (r.seq <= lastGlobalSeq) {
      problem(
        r,
        'reordered',
        `record ${r.chain}#${r.chainSeq} has global seq ${r.seq}, not after its predecessor's ${lastGlobalSeq}`,
      );
    }
    lastGlobalSeq = r.seq;
    seen.get(r.chain)!.set(r.chainSeq, r.hash);
    if (INDEX_KINDS.has(r.kind)) {
      indexRecords.push(r);
      if (keys) unsignedIndex.push(r);
    }
    if (r.kind === 'chain.opened' || r.kind === 'retention.purged' || r.kind === 'digest.signed') {
      let data: Record<string, unknown> | undefined;
      try {
        data = JSON.parse(r.data) as Record<string, unknown>;
      } catch {
        // A changed record was already reported above.
      }
      if (data && r.kind === 'chain.opened') {
        const saw = `chain ${r.chain} saw when it opened`;
        for (const head of (data.heads as ChainHead[] | undefined) ?? []) committedHeads.push({ saw, head });
      } else if (data && r.kind === 'retention.purged') {
        purges++;
        const d = data as unknown as RetentionPurgedData;
        // A purge record vouches for its gaps only while intact (and, with keys, validly signed).
        if (signatureHolds(r, data, 'purge record') && intact) {
          for (const run of d.removed ?? []) coverage.add(run);
          const saw = `purge record ${r.chain}#${r.chainSeq} saw`;
          for (const head of d.heads ?? []) committedHeads.push({ saw, head });
        }
      } else if (data && r.kind === 'digest.signed') {
        digests++;
        const d = data as unknown as DigestSignedData;
        const wanted = {
          fromSeq: lastDigest ? lastDigest.toSeq + 1 : 1,
          previousSignature: lastDigest?.signature ?? null,
        };
        const signsHead = d.chain === r.chain && d.toSeq === r.chainSeq - 1 && d.headHash === r.prevHash;
        if (!signsHead) {
          problem(
            r,
            'digest_invalid',
            `digest ${r.chain}#${r.chainSeq} signs ${d.chain}#${d.toSeq} with hash ${String(d.headHash).slice(0, 12)}…, ` +
              `but the record before it is ${r.chain}#${r.chainSeq - 1} with hash ${r.prevHash.slice(0, 12)}…: the chain was rewritten`,
          );
        } else if (d.fromSeq !== wanted.fromSeq || d.previousSignature !== wanted.previousSignature) {
          problem(
            r,
            'digest_invalid',
            `digest ${r.chain}#${r.chainSeq} does not follow the chain's previous digest (covers from #${d.fromSeq}, ` +
              `expected #${wanted.fromSeq}): a digest was removed or replaced`,
          );
        }
        // Signing the hash of the record before it, it covers every record before it that links up to that one.
        if (signatureHolds(r, data, 'digest') && signsHead && intact && r.prevHash === prevHash) unsignedIndex = [];
        lastDigest = { toSeq: d.toSeq, signature: d.signature, at: r.chainSeq };
        // The other chains' heads when it was signed (digests written before they carried heads have none).
        if (intact) {
          const saw = `digest ${r.chain}#${r.chainSeq} signed for`;
          for (const head of d.heads ?? []) committedHeads.push({ saw, head });
        }
      }
    }
    let refs: string[] = [];
    try {
      refs = blobRefs(r);
    } catch {
      // Unparseable data means the record was changed; its hash check reported it.
    }
    for (const h of refs) {
      let ok = checkedBlobs.get(h);
      if (ok === undefined) {
        const data = await source.blob(h);
        if (data === undefined) {
          problem(r, 'blob_missing', `blob ${h} referred to by ${r.chain}#${r.chainSeq} is missing`);
          ok = false;
        } else if (sha256Hex(data) !== h) {
          problem(r, 'blob_changed', `blob ${h} referred to by ${r.chain}#${r.chainSeq} was changed`);
          ok = false;
        } else {
          ok = true;
        }
        checkedBlobs.set(h, ok);
      }
    }
    prevHash = r.hash;
    expectedSeq = r.chainSeq + 1;
    if (options.onProgress && records % VERIFY_PAGE === 0) await options.onProgress(records);
  }
  endChain();
  coverage.seal();

  for (const gap of gaps) problems.push(...judgeGap(gap, coverage));

  for (const { saw, head, anchor } of committedHeads) {
    const hash = seen.get(head.chain)?.get(head.chainSeq);
    if (hash === undefined && coverage.at(head.chain, head.chainSeq)) continue; // purged, and a valid purge says so
    if (hash !== head.hash) {
      // An anchor is given from outside (the SIEM): one naming a chain this store never had, not even as purged
      // records, most likely comes from another store. A chain whose records were all purged by valid purge records
      // passed above; one whose records were removed without them is told apart only by the operator's knowledge.
      const unknownChain = anchor && !seen.has(head.chain) && !coverage.has(head.chain);
      problems.push({
        chain: head.chain,
        chainSeq: head.chainSeq,
        seq: null,
        problem: 'head_missing',
        detail: unknownChain
          ? `no chain ${head.chain} in this store, which the anchor given names (record #${head.chainSeq}): is this ` +
            'the store the anchor was taken from (--config, --data-dir)? If it is, every record of that chain was ' +
            'removed, and no purge record says so'
          : hash === undefined
            ? `chain ${head.chain} ends before record #${head.chainSeq}, which ${saw}: records were removed`
            : `record ${head.chain}#${head.chainSeq} differs from what ${saw}`,
      });
    }
  }

  problems.push(...indexProblems(indexRecords, await source.indexes()));

  const signatures: SignatureReport | undefined = keys && { keys: [...keys.keys()], digests, purges, unsignedTails };
  return {
    ok: problems.length === 0,
    chains,
    records,
    problems,
    ...(signatures ? { signatures } : {}),
    ...(overdueAfter > 0 ? { digestsOverdue } : {}),
  };
}

/** Records that make the gateway-key and hold indexes, which verify checks against them. */
const INDEX_KINDS: ReadonlySet<string> = new Set([...KEY_RECORD_KINDS, ...HOLD_RECORD_KINDS]);

/** A gap passes when valid purge runs tile it exactly and the hashes they stated match the records on either side. */
function judgeGap(gap: Gap, coverage: PurgeCoverage): VerifyProblem[] {
  const missing: VerifyProblem = {
    chain: gap.chain,
    chainSeq: gap.from,
    seq: null,
    problem: 'missing',
    detail: `records ${gap.from}..${gap.to} of chain ${gap.chain} are missing`,
  };
  let p = gap.from;
  let first: PurgedRun | undefined;
  let last: PurgedRun | undefined;
  while (p <= gap.to) {
    const run = coverage.at(gap.chain, p);
    if (!run || run.from !== p) {
      return [{ ...missing, chainSeq: p, detail: `${missing.detail}, and no valid purge record removed #${p}` }];
    }
    first ??= run;
    last = run;
    p = run.to + 1;
  }
  if (!first || !last) return [missing];
  if (last.to !== gap.to) {
    return [
      {
        ...missing,
        problem: 'changed',
        chainSeq: gap.to + 1,
        detail: `record ${gap.chain}#${gap.to + 1} exists although a purge record says it removed it`,
      },
    ];
  }
  const out: VerifyProblem[] = [];
  if (first.prevHash !== gap.before) {
    out.push({
      ...missing,
      problem: 'changed',
      chainSeq: gap.from - 1,
      detail: `record ${gap.chain}#${gap.from - 1} is not the record the purge of #${gap.from}..${first.to} found before the gap: it was replaced`,
    });
  }
  if (last.hash !== gap.after) {
    out.push({
      ...missing,
      problem: 'changed',
      chainSeq: gap.to + 1,
      detail: `record ${gap.chain}#${gap.to + 1} does not link to the record the purge of #${last.from}..${gap.to} removed: it was replaced`,
    });
  }
  return out;
}
