/**
 * When a chain's digests are overdue. Every writer signs what its chain gained every `signing.interval` and signs a
 * final digest when it stops (see digests.ts), so a chain's records after its last digest are normally younger than
 * one interval, and a chain that stopped cleanly ends with a digest. Records that went without a digest of their own
 * chain for longer than `signing.overdue_after` mean the writer stopped signing — a stuck or tampered gateway, one
 * whose digest writes fail, a writer without the signing key — and until it signs, nothing the SIEM holds vouches
 * for them. Only the chain's own digests count: another gateway's digest naming this chain's head shows the records
 * existed, not that their own gateway is still signing.
 *
 * How long is measured from the oldest such record: by `vigil verify` up to the chain's last record, from the records
 * alone, so a copy or a backup verifies the same as the store did when it was taken (a writer that crashed right
 * after a digest leaves a tail shorter than an interval, and is not flagged); by the running gateway, for a chain
 * whose writer is still running, up to now (so one that stopped signing is flagged even if it records little).
 */
import type { ChainPoint, OverdueDigest, UndigestedTail } from './audit-store.js';

/** Record kind of the running gateway's alert, streamed to the SIEM as a `ledger.digest_overdue` event. */
export const DIGEST_OVERDUE_KIND = 'digest.overdue';

/** Payload of a `digest.overdue` record. */
export interface DigestOverdueData {
  readonly chain: string;
  /** The oldest record without a digest of its chain. */
  readonly fromSeq: number;
  /** The chain's last record when the alert was raised. */
  readonly toSeq: number;
  /** When the record `fromSeq` was written (epoch ms). */
  readonly since: number;
  /** The chain's last digest, or null when it has none. */
  readonly lastDigest: ChainPoint | null;
  readonly undigestedMs: number;
  /** `signing.overdue_after`, in ms. */
  readonly overdueAfterMs: number;
  /** Whether the chain's writer was still running (PostgreSQL: it holds its chain's lock; SQLite: this gateway). */
  readonly writerRunning: boolean;
}

/**
 * The tail as an overdue digest when its oldest record went without a digest for longer than `afterMs` up to `end`
 * (never before the chain's last record); undefined when it did not, or when `afterMs` is 0 (not checked).
 */
export function judgeTail(tail: UndigestedTail, end: number, afterMs: number): OverdueDigest | undefined {
  const undigestedMs = Math.max(end, tail.to.at) - tail.from.at;
  return afterMs > 0 && undigestedMs > afterMs ? { ...tail, undigestedMs } : undefined;
}

/** `45s`, `7m 3s`, `2h 5m`, `3d 4h`: the two largest units, for people. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = Math.floor(ms / 1000);
  const parts: Array<[number, string]> = [
    [Math.floor(s / 86_400), 'd'],
    [Math.floor(s / 3600) % 24, 'h'],
    [Math.floor(s / 60) % 60, 'm'],
    [s % 60, 's'],
  ];
  const first = parts.findIndex(([n]) => n > 0);
  return parts
    .slice(first, first + 2)
    .filter(([n]) => n > 0)
    .map(([n, unit]) => `${n}${unit}`)
    .join(' ');
}

/** One line for people: which chain, which records, how long, since when, and what is allowed. */
export function describeOverdue(o: OverdueDigest, afterMs: number): string {
  const records =
    o.from.chainSeq === o.to.chainSeq ? `record #${o.from.chainSeq}` : `records #${o.from.chainSeq}..#${o.to.chainSeq}`;
  const last = o.lastDigest
    ? `its last digest is #${o.lastDigest.chainSeq} of ${new Date(o.lastDigest.at).toISOString()}`
    : 'it has no digest';
  return (
    `chain ${o.chain}: ${records} went ${formatDuration(o.undigestedMs)} without a digest of their chain ` +
    `(the oldest written ${new Date(o.from.at).toISOString()}; ${last}; ` +
    `signing.overdue_after: ${formatDuration(afterMs)})`
  );
}
