/**
 * `--json` of the CLI's list commands: the admin API's list shape ({@link listBody}). Until the next release the
 * list is also under the key each command used before (`sessions`, `keys`, `holds`, `approvals`), deprecated (README,
 * "Command line"), so that scripts reading it keep working while they move to `items`.
 */
import { listBody } from '../admin/list-body.js';

/** The JSON text of a list with its next-page cursor, and its deprecated old key when the command had one. */
export function listJson<T>(
  list: { readonly items: readonly T[]; readonly nextCursor?: string | null },
  deprecatedKey?: 'sessions' | 'keys' | 'holds' | 'approvals',
): string {
  const body = deprecatedKey === undefined ? listBody(list) : { ...listBody(list), [deprecatedKey]: list.items };
  return `${JSON.stringify(body, null, 2)}\n`;
}
