/**
 * Gateway keys through the admin API (admins): list them, create one (shown once, in the answer, never again), rotate
 * one (a new key of the same name, the old one working out an overlap), revoke one. The same as `vigil keys`, for automation and for admins without a shell on the gateway's host: each is a
 * `key.created` or `key.revoked` record naming who asked, as they authenticated.
 */
import { VigilError } from '../errors.js';
import {
  createGatewayKey,
  listedKeyView,
  revokeGatewayKey,
  rotateGatewayKey,
  shownKey,
} from '../identity/key-admin.js';
import type { RecordingReader } from '../store/audit-store.js';
import type { AdminCaller } from './admin-caller.js';
import { requireRole, sendJson, type AdminRoute, type RouteContext } from './admin-routes.js';
import { jsonBody, optionalString } from './json-body.js';

/**
 * The name a key's `createdBy` / `revokedBy` and its default owner go by: an OIDC user's e-mail (else subject), as
 * approvals match a key's owner; an admin token as `admin-token:<name>`; the local admin as `admin-api:localhost`.
 */
export function adminActorName(reader: RecordingReader): string {
  if (reader.method === 'admin_token') return `admin-token:${reader.subject}`;
  return ('email' in reader ? reader.email : undefined) ?? reader.subject;
}

function knownConnections(ctx: RouteContext): readonly string[] {
  if (!ctx.connectionNames) throw new VigilError('NOT_FOUND', 'this admin API manages no gateway keys');
  return ctx.connectionNames();
}

function admin(caller: AdminCaller): void {
  requireRole(caller, 'admin');
}

function stringList(body: Record<string, unknown>, key: string): string[] | undefined {
  const v = body[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((c) => typeof c !== 'string'))
    throw new VigilError('BAD_REQUEST', `${key} must be an array of connection names`);
  return v as string[];
}

export const KEY_ROUTES: readonly AdminRoute[] = [
  {
    method: 'GET',
    path: '/keys',
    authenticated: true,
    async handle(ctx) {
      admin(ctx.caller);
      knownConnections(ctx);
      const now = Date.now();
      sendJson(ctx.res, 200, { items: (await ctx.store.listGatewayKeys()).map((k) => listedKeyView(k, now)) });
    },
  },
  {
    method: 'POST',
    path: '/keys',
    authenticated: true,
    async handle(ctx) {
      admin(ctx.caller);
      const connections = knownConnections(ctx);
      const body = await jsonBody(ctx.req);
      const name = optionalString(body, 'name');
      if (!name) throw new VigilError('BAD_REQUEST', 'a key needs a name: {"name": "ci-nightly", …}');
      const by = adminActorName(ctx.caller.reader);
      const { key, record } = await createGatewayKey(
        ctx.store,
        {
          name,
          owner: optionalString(body, 'owner') ?? by,
          connections: stringList(body, 'connections') ?? [],
          expires: optionalString(body, 'expires'),
          createdBy: by,
          actor: ctx.caller.reader,
        },
        connections,
      );
      // The only time the key is shown: nothing may keep the answer.
      sendJson(ctx.res, 201, { key, ...shownKey(record) });
    },
  },
  {
    method: 'POST',
    path: '/keys/{name}/revoke',
    authenticated: true,
    async handle(ctx) {
      admin(ctx.caller);
      knownConnections(ctx);
      const revoked = await revokeGatewayKey(
        ctx.store,
        ctx.params.name!,
        adminActorName(ctx.caller.reader),
        Date.now(),
        {
          actor: ctx.caller.reader,
        },
      );
      sendJson(ctx.res, 200, shownKey(revoked));
    },
  },
  {
    method: 'POST',
    path: '/keys/{name}/rotate',
    authenticated: true,
    async handle(ctx) {
      admin(ctx.caller);
      knownConnections(ctx);
      const body = await jsonBody(ctx.req);
      const { key, record, replaced } = await rotateGatewayKey(ctx.store, ctx.params.name!, {
        overlap: optionalString(body, 'overlap'),
        expires: optionalString(body, 'expires'),
        rotatedBy: adminActorName(ctx.caller.reader),
        actor: ctx.caller.reader,
      });
      // The only time the new key is shown: nothing may keep the answer.
      sendJson(ctx.res, 201, { key, ...shownKey(record), replaced });
    },
  },
];
