/**
 * Approvers act on held calls through the admin API: list them, read one, approve (optionally granting the caller a
 * window), deny with a reason. Eligibility (approver groups, no self-approval, N distinct approvers) is the
 * coordinator's, checked again by the gateway that holds the call.
 */
import { VigilError } from '../errors.js';
import { actorKey, inGroups, isSameActor, type ApprovalCoordinator, type ApprovalView } from '../policy/approvals.js';
import type { AdminCaller } from './admin-caller.js';
import { recordRead, sendJson, type AdminRoute, type RouteContext } from './admin-routes.js';
import { jsonBody, optionalString } from './json-body.js';
import { listBody } from './list-body.js';
import { decisionBody } from '../policy/approval-decision.js';

function coordinator(ctx: RouteContext): ApprovalCoordinator {
  if (!ctx.approvals) throw new VigilError('NOT_FOUND', 'approvals are not enabled on this gateway');
  return ctx.approvals;
}

/**
 * Whether `caller` may see a held call (its prompt excerpts are recorded content): admins and auditors all of them,
 * a user only their own calls and the ones they may decide.
 */
function mayView(caller: AdminCaller, a: ApprovalView): boolean {
  if (caller.role !== 'user') return true;
  return isSameActor(a.caller, caller.reader) || inGroups(caller.reader, a.rule.approverGroups);
}

/**
 * The access log gets a `recording.read` for the held calls a person sees — once per new set of them, not on every
 * poll of a page that refreshes itself (the web UI's does every 2 s).
 */
const lastSeen = new Map<string, string>();
async function recordApprovalRead(ctx: RouteContext, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  const key = actorKey(ctx.caller.reader);
  const seen = ids.join(',');
  if (lastSeen.get(key) === seen) return;
  await recordRead(ctx, 'approval', ids);
  if (lastSeen.size >= 1000) lastSeen.clear();
  lastSeen.set(key, seen);
}

export const APPROVAL_ROUTES: readonly AdminRoute[] = [
  {
    method: 'GET',
    path: '/approvals',
    authenticated: true,
    async handle(ctx) {
      const status = ctx.query.get('status') ?? 'pending';
      if (status !== 'pending' && status !== 'all')
        throw new VigilError('BAD_REQUEST', 'status must be pending or all');
      const connection = ctx.query.get('connection') ?? undefined;
      const items = (
        await coordinator(ctx).list({
          pending: status === 'pending',
          ...(connection ? { connection } : {}),
        })
      ).filter((a) => mayView(ctx.caller, a));
      await recordApprovalRead(
        ctx,
        items.map((a) => a.id),
      );
      sendJson(ctx.res, 200, listBody({ items }));
    },
  },
  {
    method: 'GET',
    path: '/approvals/{id}',
    authenticated: true,
    async handle(ctx) {
      const approval = await coordinator(ctx).get(ctx.params.id!);
      if (!approval || !mayView(ctx.caller, approval))
        throw new VigilError('NOT_FOUND', `no approval ${ctx.params.id}`);
      await recordApprovalRead(ctx, [approval.id]);
      sendJson(ctx.res, 200, approval);
    },
  },
  {
    method: 'POST',
    path: '/approvals/{id}/approve',
    authenticated: true,
    async handle(ctx) {
      const body = await jsonBody(ctx.req);
      const grant = body.grant_minutes;
      if (grant !== undefined && typeof grant !== 'number')
        throw new VigilError('BAD_REQUEST', 'grant_minutes must be a number');
      const decided = await coordinator(ctx).approve(ctx.params.id!, ctx.caller.reader, {
        reason: optionalString(body, 'reason'),
        grantMinutes: grant,
      });
      sendJson(ctx.res, 200, decisionBody(decided));
    },
  },
  {
    method: 'POST',
    path: '/approvals/{id}/deny',
    authenticated: true,
    async handle(ctx) {
      const body = await jsonBody(ctx.req);
      const reason = optionalString(body, 'reason');
      if (!reason) throw new VigilError('BAD_REQUEST', 'a denial needs a reason: {"reason": "…"}');
      sendJson(
        ctx.res,
        200,
        decisionBody({ ...(await coordinator(ctx).deny(ctx.params.id!, ctx.caller.reader, reason)), grant: null }),
      );
    },
  },
];
