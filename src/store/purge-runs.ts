/** How a purge describes what it removed: runs of consecutive chain positions, with the hashes around each run. */
import type { PurgedRun, PurgeRemoval, StoredRecord } from './audit-store.js';

/**
 * The runs of consecutive positions among `records` (the removed records, any order): each with the prevHash of its
 * first record and the hash of its last, which is what verification needs to step across the gap.
 */
export function purgedRuns(records: readonly StoredRecord[]): PurgedRun[] {
  const sorted = [...records].sort((a, b) =>
    a.chain < b.chain ? -1 : a.chain > b.chain ? 1 : a.chainSeq - b.chainSeq,
  );
  const runs: PurgedRun[] = [];
  let open: { chain: string; from: number; to: number; prevHash: string; hash: string } | undefined;
  for (const r of sorted) {
    if (open && open.chain === r.chain && open.to + 1 === r.chainSeq) {
      open.to = r.chainSeq;
      open.hash = r.hash;
      continue;
    }
    if (open) runs.push(open);
    open = { chain: r.chain, from: r.chainSeq, to: r.chainSeq, prevHash: r.prevHash, hash: r.hash };
  }
  if (open) runs.push(open);
  return runs;
}

/** The exchanges a purge removes, as both stores select them. */
export interface DueExchange {
  readonly id: string;
  readonly started_at: number;
  readonly ended_at: number;
}

/** What a purge removed, for its sealing record: `heads` are every chain's head once the records are gone. */
export function purgeRemoval(
  due: readonly DueExchange[],
  records: readonly StoredRecord[],
  blobs: number,
  heads: PurgeRemoval['heads'],
): PurgeRemoval {
  return {
    exchanges: due.map((d) => d.id),
    records: records.length,
    blobs,
    runs: purgedRuns(records),
    timeRange: { from: Math.min(...due.map((d) => d.started_at)), to: Math.max(...due.map((d) => d.ended_at)) },
    heads,
  };
}
