/**
 * The one shape of every list Vigil answers in JSON, through the admin API and the CLI's `--json`: the items, and the
 * cursor of the next page (null on the last page, and on lists that are never paged), so a client reads every list
 * the same way.
 */
import type { Page } from '../store/audit-store.js';

export interface ListBody<T> {
  readonly items: readonly T[];
  readonly next_cursor: string | null;
}

/** A page of a store list, or a whole list (`nextCursor` absent: never paged), as the list body. */
export function listBody<T>(list: {
  readonly items: readonly T[];
  readonly nextCursor?: Page<T>['nextCursor'];
}): ListBody<T> {
  return { items: list.items, next_cursor: list.nextCursor ?? null };
}
