/**
 * An append whose caller must know whether it happened: a person at a command line creating or revoking a key. When the
 * store's answer is lost with its connection (PostgreSQL: the commit may have happened), the store is asked until it
 * can tell (AuditStore.appendedDespiteFailure).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { VigilError } from '../errors.js';
import { nextPause } from '../retry-pause.js';
import type { AuditStore, NewRecord } from './audit-store.js';

/**
 * Appends `record` (or several, in one append: all or none). A failure with the store unavailable is a failure only if
 * the records were not written after all, asked for up to `waitMs`; when the store cannot tell by then, throws
 * `unknown` (STORE_UNAVAILABLE), which says what to do.
 */
export async function appendConfirmed(
  store: AuditStore,
  records: NewRecord | readonly NewRecord[],
  opts: { readonly waitMs: number; readonly unknown: string },
): Promise<void> {
  const batch = Array.isArray(records) ? (records as readonly NewRecord[]) : [records as NewRecord];
  // One transaction: the last record written means all were.
  const record = batch.at(-1)!;
  try {
    await store.append({ records: batch });
  } catch (err) {
    if (!store.isUnavailable(err)) throw err;
    const deadline = Date.now() + opts.waitMs;
    for (let pause = 0; ;) {
      let written: boolean;
      try {
        written = await store.appendedDespiteFailure(record);
      } catch {
        // The store cannot tell yet: ask again after a pause, until the deadline.
        pause = nextPause(pause, 250, 2_000);
        if (Date.now() + pause > deadline) throw new VigilError('STORE_UNAVAILABLE', opts.unknown, { cause: err });
        await sleep(pause);
        continue;
      }
      if (written) return;
      throw err;
    }
  }
}
