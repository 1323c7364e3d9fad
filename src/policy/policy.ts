/**
 * What a caller may do on a connection: a pure decision, so rules are testable without a server.
 * Today: the connections a gateway key is restricted to, then the connection's `allow` list. Approval rules (hold)
 * extend the decision.
 */
import type { IncomingMessage } from 'node:http';
import type { Authentication } from '../identity/authenticator.js';
import { isAllowed } from '../identity/identity-config.js';
import type { Principal } from '../identity/principal.js';
import type { Connection } from '../proxy/connections.js';

export type PolicyDecision = { readonly action: 'allow' } | { readonly action: 'deny'; readonly message: string };

const ALLOW: PolicyDecision = Object.freeze({ action: 'allow' });

/** A caller as refusals name them: `gateway key "ci"`, `"alice@example.com"`, `an anonymous caller`. */
export function describeCaller(p: Principal): string {
  if (p.method === 'gateway_key') return `gateway key "${p.keyName ?? p.subject}"`;
  if (p.method === 'anonymous') return 'an anonymous caller';
  return `"${p.email ?? p.subject}"`;
}

/** Decide whether the authenticated caller may call through `connection`. */
export function decide(auth: Authentication, connection: Connection, _req: IncomingMessage): PolicyDecision {
  const { principal, keyConnections } = auth;
  if (keyConnections?.length && !keyConnections.includes(connection.name)) {
    return { action: 'deny', message: `${describeCaller(principal)} may not use connection "${connection.name}"` };
  }
  const allow = connection.config.allow;
  if (allow !== undefined && !isAllowed(principal, allow)) {
    return {
      action: 'deny',
      message: `${describeCaller(principal)} is not allowed to use connection "${connection.name}"`,
    };
  }
  return ALLOW;
}
