/**
 * The pause before trying again after failures in a row: `firstMs` after the first (`previousMs` 0), then twice the
 * last, at most `maxMs`. Used where something periodic meets a store or a receiver that keeps failing: the write
 * queue's outage, the SIEM outbox's passes and sinks, the approvals poll.
 */
export function nextPause(previousMs: number, firstMs: number, maxMs: number): number {
  return Math.min(Math.max(previousMs * 2, firstMs), maxMs);
}
