/**
 * A failed verification is itself an audit event: it is appended to the ledger (and so reaches the SIEM through the
 * outbox) as a `verify.failed` record naming how many problems were found and the first of them.
 */
import type { AuditStore, VerifyReport } from './audit-store.js';

export async function recordVerifyFailure(
  store: AuditStore,
  report: VerifyReport,
  by: { method: string; subject: string },
): Promise<void> {
  if (report.ok) return;
  await store.append({
    records: [
      {
        kind: 'verify.failed',
        at: Date.now(),
        data: {
          by,
          problems: report.problems.length,
          records: report.records,
          first: report.problems
            .slice(0, 5)
            .map((p) => ({ problem: p.problem, chain: p.chain, chainSeq: p.chainSeq, detail: p.detail })),
        },
      },
    ],
  });
}
