/**
 * Which blob references of a request the store must index, and which it may leave to the request before it.
 *
 * Claude Code resends its whole conversation on every turn: a request of a long session refers to hundreds of message
 * groups, nearly all of which the previous request of its conversation referred to as well. The `blob_refs` index
 * (blob → the records that refer to it) is what lets a purge remove exactly the blobs nothing refers to any more; one
 * row per reference per request made every request's commit grow with its conversation, each row landing beside the
 * rows of the same blob for earlier turns, on a page of its own (~2 ms per request at ~300 groups).
 *
 * So a request record may have a *base*: an earlier record that is still in the store, whose references this process
 * knows. The record's own rows are then only the references its base does not have. The invariant a purge relies on:
 * every blob a live record refers to has a row from some live record — its own, or its base's (and so on down). A
 * purge that removes a base first gives each live record built on it rows for all of its references
 * ({@link dependantRefs}; SqliteAuditStore and PostgresAuditStore.purgeExchanges), so a base is never gone while a
 * record relies on it.
 *
 * The base is the last request this store wrote for the same conversation (session and Claude Code agent), checked
 * inside the append's transaction to still be in the store unchanged (its hash at its position): a purge, or a write
 * that was rolled back and whose position was taken by another record, makes it no base. On PostgreSQL the check is
 * part of the append's one statement (postgres-append.ts), which indexes every reference when it fails.
 */
import { CappedMap } from '../capped-map.js';
import type { NewRecord } from './audit-store.js';
import { blobRefs } from './blob-refs.js';
import { conversationKey, type ExchangeRequestData } from './record-types.js';

/** A request record this process wrote, as a possible base. */
export interface RefBase {
  readonly seq: number;
  readonly hash: string;
  readonly refs: ReadonlySet<string>;
}

/** References remembered across all conversations: ~130 bytes each, so ~13 MB at most. */
const MAX_REFS = 100_000;

/** The conversation a request record belongs to, or undefined for records that have no base. */
export function conversationOf(r: NewRecord): string | undefined {
  if (r.kind !== 'exchange.request' || r.data === null || typeof r.data !== 'object') return undefined;
  const d = r.data as Partial<ExchangeRequestData>;
  const session = d.session?.id;
  return typeof session === 'string' ? conversationKey(session, d.agent?.id) : undefined;
}

/**
 * The index rows a purge gives the live records built on the ones it removes (`dependants`, as stored): one per
 * reference, as [blob hash, record seq].
 */
export function dependantRefs(
  dependants: ReadonlyArray<{ readonly seq: number; readonly kind: string; readonly data: string }>,
): Array<readonly [hash: string, seq: number]> {
  return dependants.flatMap((d) => blobRefs(d).map((h) => [h, d.seq] as const));
}

/** References a base keeps alive. */
function weight(base: RefBase): number {
  return base.refs.size;
}

export class RefBases {
  /** By conversation, oldest first; bounded by the references they hold together, not by count. */
  private readonly last: CappedMap<string, RefBase>;
  /** Written by the transaction in progress: bases once it commits ({@link commit}). */
  private pending: Array<[string, RefBase]> = [];

  constructor(maxRefs = MAX_REFS) {
    this.last = new CappedMap<string, RefBase>(Infinity, maxRefs, weight);
  }

  /** The last request record written for `conversation`, if any is remembered. */
  get(conversation: string): RefBase | undefined {
    return this.last.get(conversation);
  }

  /** The base request record `r` may leave references to, if one is remembered (still to be checked in the store). */
  baseOf(r: NewRecord): RefBase | undefined {
    const conversation = conversationOf(r);
    return conversation === undefined ? undefined : this.last.get(conversation);
  }

  /** `base` is now the last request record of `conversation` (call once it is committed). */
  set(conversation: string, base: RefBase): void {
    // One with more references than all may hold is no base, and the conversation's earlier one is no longer its last.
    this.last.offer(conversation, base);
  }

  /**
   * `r`, stored as `stored` with these blob references, is the last request of its conversation once the transaction
   * in progress commits. Records of no conversation, or with no references, are no base.
   */
  written(r: NewRecord, stored: { readonly seq: number; readonly hash: string }, refs: readonly string[]): void {
    const conversation = conversationOf(r);
    if (conversation === undefined || refs.length === 0) return;
    this.pending.push([conversation, { seq: stored.seq, hash: stored.hash, refs: new Set(refs) }]);
  }

  /** The transaction in progress committed: what it wrote are bases now. Only what committed may be one. */
  commit(): void {
    for (const [conversation, base] of this.pending) this.set(conversation, base);
    this.pending = [];
  }

  /** The transaction in progress rolled back, or may have: a position it wrote may go to another record. */
  rollback(): void {
    this.pending = [];
  }

  delete(conversation: string): void {
    this.last.delete(conversation);
  }
}
