/**
 * The hash chain shared by every store implementation: how a record is hashed and how chains are verified.
 * Both stores call these functions so a chain written by one verifies with the same rules as the other.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { StoredRecord, VerifyProblem, VerifyReport } from './audit-store.js';

export const GENESIS_HASH = '0'.repeat(64);

/** A key in record data whose string value is the SHA-256 of a blob the record depends on. */
export const BLOB_REF_KEY = '$blob';

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
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
    .update(
      `${prevHash}\n${r.chain}\n${r.chainSeq}\n${r.kind}\n${r.exchangeId ?? ''}\n${r.sessionId ?? ''}\n${r.at}\n`,
    )
    .update(r.data)
    .digest('hex');
}

/** Every blob hash a record's data refers to (objects of the form `{"$blob": "<hex>"}`, at any depth). */
export function blobRefs(data: string): string[] {
  if (!data.includes(BLOB_REF_KEY)) return [];
  const found: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x);
    } else if (v !== null && typeof v === 'object') {
      const ref = (v as Record<string, unknown>)[BLOB_REF_KEY];
      if (typeof ref === 'string') found.push(ref);
      for (const x of Object.values(v)) walk(x);
    }
  };
  walk(JSON.parse(data));
  return found;
}

/** What `chain.opened` records: the heads of the chains that existed when this chain began. */
export interface ChainHead {
  readonly chain: string;
  readonly chainSeq: number;
  readonly hash: string;
}

export interface VerifySource {
  /** All records ordered by (chain, chainSeq). */
  records(): AsyncIterable<StoredRecord>;
  /** Blob content by hash, or undefined when missing. */
  blob(hash: string): Promise<Buffer | undefined>;
}

/**
 * Walk every chain: recompute each hash, require contiguous chain sequence numbers from 1, require that global append
 * order (seq) rises along the chain, check every referenced blob, and check that the heads each `chain.opened` record
 * committed to are still present with the same hash (this catches the removal of an older chain's tail or of a whole
 * chain). The newest tail of the newest chains can only be anchored externally: signed digests do that.
 */
export async function verifyLedger(source: VerifySource): Promise<VerifyReport> {
  const problems: VerifyProblem[] = [];
  const seen = new Map<string, Map<number, string>>(); // chain → chainSeq → hash
  const committedHeads: Array<{ by: string; head: ChainHead }> = [];
  const checkedBlobs = new Map<string, boolean>();
  let chains = 0;
  let records = 0;
  let current: string | null = null;
  let prevHash = GENESIS_HASH;
  let expectedSeq = 1;
  let lastGlobalSeq = -Infinity;

  for await (const r of source.records()) {
    records++;
    if (r.chain !== current) {
      current = r.chain;
      chains++;
      prevHash = GENESIS_HASH;
      expectedSeq = 1;
      lastGlobalSeq = -Infinity;
      seen.set(r.chain, new Map());
    }
    if (r.chainSeq !== expectedSeq) {
      problems.push({
        chain: r.chain,
        chainSeq: expectedSeq,
        seq: null,
        problem: 'missing',
        detail: `records ${expectedSeq}..${r.chainSeq - 1} of chain ${r.chain} are missing`,
      });
      // Resynchronise on the record we have so that one gap is one problem, not a cascade.
      prevHash = r.prevHash;
    }
    if (r.prevHash !== prevHash) {
      problems.push({
        chain: r.chain,
        chainSeq: r.chainSeq,
        seq: r.seq,
        problem: 'changed',
        detail: `record ${r.chain}#${r.chainSeq} does not link to the record before it`,
      });
    }
    const recomputed = recordHash(r.prevHash, r);
    if (recomputed !== r.hash) {
      problems.push({
        chain: r.chain,
        chainSeq: r.chainSeq,
        seq: r.seq,
        problem: 'changed',
        detail: `record ${r.chain}#${r.chainSeq} (seq ${r.seq}, ${r.kind}) was changed after it was written`,
      });
    }
    if (r.seq <= lastGlobalSeq) {
      problems.push({
        chain: r.chain,
        chainSeq: r.chainSeq,
        seq: r.seq,
        problem: 'reordered',
        detail: `record ${r.chain}#${r.chainSeq} has global seq ${r.seq}, not after its predecessor's ${lastGlobalSeq}`,
      });
    }
    lastGlobalSeq = r.seq;
    seen.get(r.chain)!.set(r.chainSeq, r.hash);
    if (r.kind === 'chain.opened') {
      try {
        const heads = (JSON.parse(r.data) as { heads?: ChainHead[] }).heads ?? [];
        for (const head of heads) committedHeads.push({ by: r.chain, head });
      } catch {
        // A changed record was already reported above.
      }
    }
    let refs: string[] = [];
    try {
      refs = blobRefs(r.data);
    } catch {
      // Unparseable data means the record was changed; its hash check reported it.
    }
    for (const h of refs) {
      let ok = checkedBlobs.get(h);
      if (ok === undefined) {
        const data = await source.blob(h);
        if (data === undefined) {
          problems.push({
            chain: r.chain,
            chainSeq: r.chainSeq,
            seq: r.seq,
            problem: 'blob_missing',
            detail: `blob ${h} referred to by ${r.chain}#${r.chainSeq} is missing`,
          });
          ok = false;
        } else if (sha256Hex(data) !== h) {
          problems.push({
            chain: r.chain,
            chainSeq: r.chainSeq,
            seq: r.seq,
            problem: 'blob_changed',
            detail: `blob ${h} referred to by ${r.chain}#${r.chainSeq} was changed`,
          });
          ok = false;
        } else {
          ok = true;
        }
        checkedBlobs.set(h, ok);
      }
    }
    prevHash = r.hash;
    expectedSeq = r.chainSeq + 1;
  }

  for (const { by, head } of committedHeads) {
    const hash = seen.get(head.chain)?.get(head.chainSeq);
    if (hash !== head.hash) {
      problems.push({
        chain: head.chain,
        chainSeq: head.chainSeq,
        seq: null,
        problem: 'head_missing',
        detail:
          hash === undefined
            ? `chain ${head.chain} ends before record #${head.chainSeq}, which chain ${by} saw when it opened: records were removed`
            : `record ${head.chain}#${head.chainSeq} differs from what chain ${by} saw when it opened`,
      });
    }
  }

  return { ok: problems.length === 0, chains, records, problems };
}
