/**
 * What an approver is answered after deciding a held call — by the admin API (`POST /approvals/{id}/approve`, `/deny`)
 * and by `vigil approvals approve|deny --json` alike (README, "Approvals"): the approval as it now stands, whether
 * this decision released the call (every approval it needs is in: the gateway holding it sends it on), and the grant
 * this approval made, with what it covers, or null.
 */
import type { ApprovalDecided, ApprovalView } from './approvals.js';

export interface DecisionBody extends ApprovalView {
  readonly released: boolean;
  readonly grant: {
    readonly id: string;
    readonly minutes: number;
    readonly expiresAt: number;
    readonly caller: unknown;
    readonly connection: string;
    readonly rule: string;
    /** An anonymous caller's grant covers only this session; null: every session. */
    readonly session: string | null;
  } | null;
}

/** The answer to a decision: an approval's result, or a denial's view with `grant: null`. */
export function decisionBody({ grant, ...v }: ApprovalDecided): DecisionBody {
  return {
    ...v,
    released: v.status === 'approved',
    grant:
      grant === null
        ? null
        : {
            id: grant.grantId,
            minutes: grantMinutes(grant.ms),
            expiresAt: grant.expiresAt,
            caller: grant.caller,
            connection: grant.connection,
            rule: grant.rule,
            session: grant.session ?? null,
          },
  };
}

/** A grant's length in minutes, as an approver would have typed it. */
export function grantMinutes(ms: number): number {
  return Math.round((ms / 60_000) * 100) / 100;
}
