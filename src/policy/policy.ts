/**
 * What a caller may do on a connection: a pure decision, so rules are testable without a server.
 * Access lists come with identity; approvals (hold) extend the decision later.
 */
import type { IncomingMessage } from 'node:http';
import type { Principal } from '../identity/principal.js';

export type PolicyDecision = { readonly action: 'allow' } | { readonly action: 'deny'; readonly message: string };

export const ALLOW: PolicyDecision = Object.freeze({ action: 'allow' });

/** A policy that allows every identified caller: the default when no rules are configured. */
export function allowAll(_principal: Principal, _connection: unknown, _req: IncomingMessage): PolicyDecision {
  return ALLOW;
}
