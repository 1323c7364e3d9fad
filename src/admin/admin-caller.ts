/**
 * Who is calling the admin API and what they may see. Three roles: `admin` (everything, including the access log),
 * `auditor` (every recording) and `user` (the exchanges they made themselves: same OIDC subject and issuer).
 */
import type { ExchangeFilter, RecordingReader } from '../store/audit-store.js';
import type { Principal } from '../identity/principal.js';

export type AdminRole = 'admin' | 'auditor' | 'user';

export interface AdminCaller {
  readonly reader: RecordingReader;
  readonly role: AdminRole;
  /** The caller's address as the admin listener saw it. */
  readonly address: string | null;
}

export interface RoleGroups {
  readonly admin: readonly string[];
  readonly auditor: readonly string[];
}

/** The role an authenticated person gets from their groups: the highest any of them grants, else `user`. */
export function roleOf(principal: Principal, roles: RoleGroups): AdminRole {
  const groups = principal.groups ?? [];
  if (groups.some((g) => roles.admin.includes(g))) return 'admin';
  if (groups.some((g) => roles.auditor.includes(g))) return 'auditor';
  return 'user';
}

/**
 * The filter that limits a caller to what they may see, merged into what they asked for. A `user` is pinned to their
 * own subject and issuer whatever they passed; admins and auditors get their filter unchanged.
 */
export function visibleTo<F extends ExchangeFilter>(caller: AdminCaller, filter: F): F {
  if (caller.role !== 'user') return filter;
  const { subject } = caller.reader;
  const issuer = 'issuer' in caller.reader ? caller.reader.issuer : undefined;
  // A user without an issuer (not an OIDC caller) has no recordings of their own to see: no issuer is empty.
  return { ...filter, caller: subject, callerIssuer: issuer ?? '' };
}

/** Whether the caller may see an exchange made by `exchangeCaller`. */
export function maySee(caller: AdminCaller, exchangeCaller: Pick<Principal, 'subject' | 'issuer'>): boolean {
  if (caller.role !== 'user') return true;
  const issuer = 'issuer' in caller.reader ? caller.reader.issuer : undefined;
  return issuer !== undefined && exchangeCaller.subject === caller.reader.subject && exchangeCaller.issuer === issuer;
}
