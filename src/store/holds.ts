/**
 * Legal holds: `hold.added` and `hold.released` records on the ledger, indexed by the store, which every purge
 * consults (inside its transaction) so a held session's or caller's exchanges are never removed while the hold lasts.
 * The purge checks the records themselves too, so a hold released in the index alone still holds.
 */
import { randomBytes } from 'node:crypto';
import { VigilError } from '../errors.js';
import type { AuditStore, HoldAddedData, HoldReleasedData, StoredHold } from './audit-store.js';

export interface AddHoldInput {
  readonly session?: string | undefined;
  /**
   * A caller: every exchange whose caller has this subject (OIDC `sub`, gateway key name), at any issuer, or this
   * e-mail (OIDC `email` claim, compared case-insensitively).
   */
  readonly caller?: string | undefined;
  readonly reason: string;
  /** Who placed it, e.g. `cli:alice`. */
  readonly by: string;
}

/** Places a hold; resolves with what was recorded. */
export async function addHold(store: AuditStore, input: AddHoldInput, now = Date.now()): Promise<HoldAddedData> {
  const session = input.session?.trim() || null;
  const caller = input.caller?.trim() || null;
  if ((session === null) === (caller === null)) {
    throw new VigilError(
      'BAD_REQUEST',
      'a hold names either a session (--session ID) or a caller (--caller SUBJECT-OR-EMAIL), not both',
    );
  }
  const reason = input.reason.trim();
  if (!reason)
    throw new VigilError('BAD_REQUEST', 'a hold needs a reason (--reason "…"): it is recorded with the hold');
  const data: HoldAddedData = {
    holdId: `hold_${randomBytes(6).toString('hex')}`,
    session,
    caller,
    reason,
    by: input.by,
    at: now,
  };
  await store.append({ records: [{ kind: 'hold.added', at: now, data }] });
  return data;
}

/**
 * Releases an active hold — active as purges have it (see `AuditStore.listHolds`): a hold released in the index alone
 * is still active, and is released by a record here — after which its exchanges fall under retention again from the
 * next purge.
 */
export async function releaseHold(
  store: AuditStore,
  holdId: string,
  input: { readonly reason: string; readonly by: string },
  now = Date.now(),
): Promise<StoredHold> {
  const hold = (await store.listHolds()).find((h) => h.id === holdId);
  if (!hold) throw new VigilError('NOT_FOUND', `no hold "${holdId}" (see: vigil holds list)`);
  if (hold.releasedAt !== null) {
    throw new VigilError(
      'BAD_REQUEST',
      `hold "${holdId}" was released on ${new Date(hold.releasedAt).toISOString()} by ${hold.releasedBy}`,
    );
  }
  const reason = input.reason.trim();
  if (!reason) throw new VigilError('BAD_REQUEST', 'releasing a hold needs a reason (--reason "…")');
  const data: HoldReleasedData = { holdId, reason, by: input.by, at: now };
  await store.append({ records: [{ kind: 'hold.released', at: now, data }] });
  const { id, session, caller, createdBy, createdAt } = hold;
  return {
    id,
    session,
    caller,
    reason: hold.reason,
    createdBy,
    createdAt,
    releasedAt: now,
    releasedBy: input.by,
    releaseReason: reason,
  };
}
