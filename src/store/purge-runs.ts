/** How a purge describes what it removed: runs of consecutive chain positions, with the hashes around each run. */
import type { PurgedRun, StoredRecord } from './audit-store.js';

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
