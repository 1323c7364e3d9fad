/**
 * The admin API's routes (under `/api/v1`): what each answers, who may call it, and which reads are recorded.
 *
 * Every read of recorded content (a session, an exchange, its events, search snippets, an export) appends a
 * `recording.read` record before the content is sent; if that record cannot be written the read is refused (fail
 * closed), so no recording is ever read without a trace. Lists of summaries (who, when, which model, tokens) and
 * verify reports carry no content and are not logged.
 *
 * A `user` sees only exchanges they made; anything else answers 404, the same as something that does not exist, so
 * that ids cannot be probed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { VigilError } from '../errors.js';
import type { ConfigChanges, ConfigStatus, ReloadActor } from '../config/config-changes.js';
import type { Pricing } from '../store/pricing.js';
import { readExchange, readExchanges, type ExchangeView } from '../recorder/exchange-reader.js';
import type { UsageLimits } from '../policy/usage-limits.js';
import type { ApprovalCoordinator } from '../policy/approvals.js';
import { recordVerifyFailure } from '../store/verify-alert.js';
import type {
  AuditStore,
  ExchangeFilter,
  ExchangeListItem,
  RecordingReadData,
  SessionTotalsRequest,
} from '../store/audit-store.js';
import type { ExchangeRequestData } from '../store/record-types.js';
import { maySee, visibleTo, type AdminCaller } from './admin-caller.js';
import { recordedEvents, sseEvent } from './event-stream.js';
import {
  drained,
  EXPORT_FORMATS,
  filteredExchanges,
  sessionExchanges,
  writeExport,
  type ExportFormat,
} from './exchange-export.js';
import { listBody } from './list-body.js';
import { OPENAPI_DOCUMENT } from './openapi.js';
import {
  booleanParam,
  describeFilter,
  filterFrom,
  OUTCOMES,
  pageFrom,
  readSessionPageCursor,
  SESSION_PAGE,
  sessionPageCursor,
  usageFrom,
} from './query-params.js';
import { verifySession } from './session-verify.js';
import type { PublicSignIn } from './ui-sign-in.js';

export interface RouteContext {
  readonly store: AuditStore;
  /** Who is calling; on routes that need no authentication, an unauthenticated `user` nothing is shown to. */
  readonly caller: AdminCaller;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly log: Logger;
  /** Held calls, when the gateway has approval rules. */
  readonly approvals?: ApprovalCoordinator | undefined;
  /** The proxy's usage limits (absent: none are configured). */
  readonly limits?: Pick<UsageLimits, 'status'> | undefined;
  /** The connections a gateway key may name (the running config's); absent: this admin API manages no keys. */
  readonly connectionNames?: (() => readonly string[]) | undefined;
  /** Reads the config again and applies it (Gateway.reloadFromSource); absent: the gateway cannot. */
  readonly reloadConfig?: ((by: ReloadActor) => Promise<ConfigChanges>) | undefined;
  /** What tokens cost (`pricing` in the config), for usage reports; absent: none is configured. */
  readonly pricing?: Pricing | undefined;
  /** Which config runs, and how the last reload went (absent: not a gateway's admin API). */
  readonly configStatus?: (() => ConfigStatus) | undefined;
  /** The web UI's OIDC sign-in (`admin.ui.oidc`), as the UI is told it. */
  readonly signIn?: PublicSignIn | undefined;
  /** `signing.overdue_after` in ms (0: off): `/verify` reports chains whose digests are overdue. */
  readonly digestsOverdueAfterMs?: number | undefined;
}

export interface AdminRoute {
  readonly method: 'GET' | 'POST';
  /** OpenAPI path template relative to `/api/v1`, e.g. `/sessions/{id}`. */
  readonly path: string;
  /** false: answered without authentication (health, the API description). */
  readonly authenticated: boolean;
  handle(ctx: RouteContext): Promise<void>;
}

/** Headers every admin response carries: nothing here may be cached or sniffed into another type. */
export const COMMON_HEADERS = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' } as const;

/** Answer with a JSON body. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...COMMON_HEADERS,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

const notFound = (what: string): VigilError => new VigilError('NOT_FOUND', what);

export function requireRole(caller: AdminCaller, ...roles: AdminCaller['role'][]): void {
  if (!roles.includes(caller.role)) {
    throw new VigilError(
      'NOT_ALLOWED',
      `this needs the ${roles.join(' or ')} role; you are ${caller.role} (see admin.roles)`,
    );
  }
}

/** Appends the `recording.read` record of this read; refuses the read if that fails. */
export async function recordRead(
  ctx: RouteContext,
  what: RecordingReadData['what'],
  ids: readonly string[],
  query?: string,
): Promise<void> {
  const data: RecordingReadData = {
    actor: ctx.caller.reader,
    role: ctx.caller.role,
    what,
    ids,
    ...(query !== undefined ? { query } : {}),
    address: ctx.caller.address,
  };
  try {
    await ctx.store.append({ records: [{ kind: 'recording.read', at: Date.now(), data }] });
  } catch (err) {
    throw new VigilError('STORE_UNAVAILABLE', 'the read could not be recorded in the access log, so it is refused', {
      cause: err,
    });
  }
}

/** The filter of a list, search or export request, limited to what the caller may see. */
function requestedFilter(ctx: RouteContext, withSession: boolean): ExchangeFilter {
  const session = ctx.query.get('session');
  return visibleTo(ctx.caller, {
    ...filterFrom((n) => ctx.query.get(n)),
    ...(withSession && session ? { session } : {}),
  });
}

/** Summaries of the session's exchanges the caller may see, oldest first. */
async function visibleSummaries(ctx: RouteContext, id: string): Promise<ExchangeListItem[]> {
  const summaries: ExchangeListItem[] = [];
  let cursor: string | undefined;
  do {
    const p = await ctx.store.listExchangesFiltered(visibleTo(ctx.caller, { session: id, limit: 1000, cursor }));
    summaries.push(...p.items);
    cursor = p.nextCursor ?? undefined;
  } while (cursor !== undefined);
  return summaries.reverse();
}

/** Whether the session has an exchange the caller may see (used before anything about it is answered). */
async function visibleSession(ctx: RouteContext, id: string): Promise<void> {
  const page = await ctx.store.listExchangesFiltered(visibleTo(ctx.caller, { session: id, limit: 1 }));
  if (page.items.length === 0) throw notFound(`no session "${id}"`);
}

function exportFormat(ctx: RouteContext): ExportFormat {
  const format = ctx.query.get('format') ?? 'jsonl';
  if (!(EXPORT_FORMATS as readonly string[]).includes(format)) {
    throw new VigilError('BAD_REQUEST', `format: expected ${EXPORT_FORMATS.join(' or ')}, got "${format}"`);
  }
  return format as ExportFormat;
}

function startExport(res: ServerResponse, format: ExportFormat, name: string): void {
  res.writeHead(200, {
    ...COMMON_HEADERS,
    'content-type': format === 'jsonl' ? 'application/x-ndjson; charset=utf-8' : 'text/markdown; charset=utf-8',
    'content-disposition': `attachment; filename="${name.replace(/[^A-Za-z0-9._-]/g, '_')}.${format === 'jsonl' ? 'jsonl' : 'md'}"`,
  });
}

/** Every route the admin listener serves; `openapi.ts` describes each (a test holds the two together). */
export const ADMIN_ROUTES: readonly AdminRoute[] = [
  {
    method: 'GET',
    path: '/healthz',
    authenticated: false,
    async handle({ res }) {
      sendJson(res, 200, { status: 'ok' });
    },
  },
  {
    method: 'GET',
    path: '/openapi.json',
    authenticated: false,
    async handle({ res }) {
      sendJson(res, 200, OPENAPI_DOCUMENT);
    },
  },
  {
    // What the web UI needs before anyone signs in: the server's own lists (no copy in the UI) and how to sign in.
    method: 'GET',
    path: '/ui-config',
    authenticated: false,
    async handle({ res, signIn }) {
      sendJson(res, 200, { outcomes: OUTCOMES, sign_in: signIn ?? null });
    },
  },
  {
    // Who the caller is and what role they have: the web UI shows it, and a sign-in form checks a pasted token with it.
    method: 'GET',
    path: '/whoami',
    authenticated: true,
    async handle({ res, caller }) {
      sendJson(res, 200, { role: caller.role, reader: caller.reader });
    },
  },
  {
    method: 'GET',
    path: '/sessions',
    authenticated: true,
    async handle(ctx) {
      // Each row's `recent` (callers, models, outcomes) comes from the same filter as the list, in the store's one
      // statement per page: a row summarises the exchanges that made its session match, and a user's only their own.
      const filter = { ...requestedFilter(ctx, false), ...pageFrom((n) => ctx.query.get(n)) };
      sendJson(ctx.res, 200, listBody(await ctx.store.listSessions(filter)));
    },
  },
  {
    method: 'GET',
    path: '/sessions/{id}',
    authenticated: true,
    async handle(ctx) {
      const id = ctx.params.id!;
      // A page of exchanges in full and their summaries, oldest first, with where it starts in the session (`offset`,
      // carried in the cursor), and on the first page (or with totals=true) what the whole session adds up to: SQL
      // aggregates over all the session's exchanges, O(n) in the database, so not on every page. Every page is as
      // large as its exchanges, and no other page's exchange is read.
      const get = (n: string): string | null => ctx.query.get(n);
      const { limit = SESSION_PAGE.default, cursor } = pageFrom(get, SESSION_PAGE.max);
      const at = cursor === undefined ? { cursor: undefined, offset: 0 } : readSessionPageCursor(cursor);
      const totals =
        (booleanParam(get, 'totals') ?? cursor === undefined)
          ? await ctx.store.sessionTotals(id, visibleTo<SessionTotalsRequest>(ctx.caller, {}), ctx.pricing)
          : null;
      if (totals === undefined) throw notFound(`no session "${id}"`);
      const page = await ctx.store.listExchangesFiltered(
        visibleTo(ctx.caller, { session: id, oldestFirst: true, limit, cursor: at.cursor }),
      );
      if (totals === null && page.items.length === 0) await visibleSession(ctx, id);
      const summaries: ExchangeListItem[] = [];
      const exchanges: ExchangeView[] = [];
      const views = await readExchanges(
        ctx.store,
        page.items.map((x) => x.id),
      );
      for (const summary of page.items) {
        const view = views.get(summary.id);
        if (!view || !maySee(ctx.caller, view.caller)) continue;
        summaries.push(summary);
        exchanges.push(view);
      }
      await recordRead(ctx, 'session', [id]);
      sendJson(ctx.res, 200, {
        id,
        session: totals,
        offset: at.offset,
        summaries,
        exchanges,
        next_cursor: page.nextCursor && sessionPageCursor(page.nextCursor, at.offset + page.items.length),
      });
    },
  },
  {
    method: 'GET',
    path: '/sessions/{id}/export',
    authenticated: true,
    async handle(ctx) {
      const id = ctx.params.id!;
      const format = exportFormat(ctx);
      await visibleSession(ctx, id);
      await recordRead(ctx, 'export', [id]);
      startExport(ctx.res, format, `session-${id}`);
      const views = sessionExchanges(ctx.store, id, (x) => maySee(ctx.caller, x.caller));
      await writeExport(views, ctx.res, { format, title: `Session ${id}` });
      ctx.res.end();
    },
  },
  {
    method: 'GET',
    path: '/sessions/{id}/verify',
    authenticated: true,
    async handle(ctx) {
      const id = ctx.params.id!;
      if (ctx.caller.role !== 'user') {
        await visibleSession(ctx, id);
        sendJson(ctx.res, 200, await verifySession(ctx.store, id));
        return;
      }
      // A user may share the session with other callers: their own exchanges are verified, and nothing is said of
      // the others' records (not even how many there are).
      const own = await visibleSummaries(ctx, id);
      if (own.length === 0) throw notFound(`no session "${id}"`);
      sendJson(ctx.res, 200, await verifySession(ctx.store, id, new Set(own.map((x) => x.id))));
    },
  },
  {
    method: 'GET',
    path: '/exchanges',
    authenticated: true,
    async handle(ctx) {
      const filter = { ...requestedFilter(ctx, true), ...pageFrom((n) => ctx.query.get(n)) };
      sendJson(ctx.res, 200, listBody(await ctx.store.listExchangesFiltered(filter)));
    },
  },
  {
    method: 'GET',
    path: '/usage',
    authenticated: true,
    async handle(ctx) {
      // Counts and tokens, never content: not a read of recordings for the access log. A user's report is their own.
      const request = { ...requestedFilter(ctx, false), ...usageFrom((n) => ctx.query.get(n)) };
      sendJson(ctx.res, 200, await ctx.store.usage(request, ctx.pricing));
    },
  },
  {
    method: 'GET',
    path: '/limits',
    authenticated: true,
    async handle(ctx) {
      // Counts, never content. A user sees what they used of each limit (and what a connection's callers share).
      const reader = ctx.caller.reader;
      const own =
        ctx.caller.role === 'user' ? { caller: reader.subject, groups: 'groups' in reader ? reader.groups : [] } : {};
      sendJson(ctx.res, 200, { items: ctx.limits?.status(own) ?? [] });
    },
  },
  {
    method: 'GET',
    path: '/exchanges/{id}',
    authenticated: true,
    async handle(ctx) {
      const id = ctx.params.id!;
      const view = await readExchange(ctx.store, id);
      if (!view || !maySee(ctx.caller, view.caller)) throw notFound(`no exchange "${id}"`);
      await recordRead(ctx, 'exchange', [id]);
      sendJson(ctx.res, 200, view);
    },
  },
  {
    method: 'GET',
    path: '/exchanges/{id}/events',
    authenticated: true,
    async handle(ctx) {
      const id = ctx.params.id!;
      const records = await ctx.store.exchangeRecords(id);
      const request = records.find((r) => r.kind === 'exchange.request');
      if (!request || !maySee(ctx.caller, (JSON.parse(request.data) as ExchangeRequestData).caller)) {
        throw notFound(`no exchange "${id}"`);
      }
      const events = recordedEvents(records);
      if (events.length === 0) {
        throw notFound(
          `exchange "${id}" has no recorded event stream (it was not streamed, or was recorded as metadata only)`,
        );
      }
      await recordRead(ctx, 'events', [id]);
      ctx.res.writeHead(200, { ...COMMON_HEADERS, 'content-type': 'text/event-stream; charset=utf-8' });
      for (const e of events) {
        if (ctx.res.destroyed) return;
        if (!ctx.res.write(sseEvent(e))) await drained(ctx.res);
      }
      ctx.res.end();
    },
  },
  {
    method: 'GET',
    path: '/search',
    authenticated: true,
    async handle(ctx) {
      const q = ctx.query.get('q')?.trim();
      if (!q) throw new VigilError('BAD_REQUEST', 'q: the search query is missing');
      const result = await ctx.store.search(q, {
        ...pageFrom((n) => ctx.query.get(n)),
        filter: requestedFilter(ctx, true),
      });
      await recordRead(
        ctx,
        'search',
        result.items.map((h) => h.exchangeId),
        q,
      );
      sendJson(ctx.res, 200, listBody(result));
    },
  },
  {
    method: 'GET',
    path: '/export',
    authenticated: true,
    async handle(ctx) {
      const format = exportFormat(ctx);
      const filter = requestedFilter(ctx, true);
      await recordRead(ctx, 'export', filter.session ? [filter.session] : [], describeFilter(filter));
      startExport(ctx.res, format, 'vigil-export');
      await writeExport(filteredExchanges(ctx.store, filter), ctx.res, { format, title: 'Vigil export' });
      ctx.res.end();
    },
  },
  {
    method: 'GET',
    path: '/verify',
    authenticated: true,
    async handle(ctx) {
      requireRole(ctx.caller, 'admin', 'auditor');
      const report = await ctx.store.verify({ digestsOverdueAfterMs: ctx.digestsOverdueAfterMs ?? 0 });
      await recordVerifyFailure(ctx.store, report, {
        method: ctx.caller.reader.method,
        subject: ctx.caller.reader.subject,
      }).catch((err: unknown) => ctx.log.error({ err }, 'could not record the failed verification'));
      sendJson(ctx.res, 200, report);
    },
  },
  {
    method: 'GET',
    path: '/access-log',
    authenticated: true,
    async handle(ctx) {
      requireRole(ctx.caller, 'admin');
      sendJson(ctx.res, 200, listBody(await ctx.store.listAccessLog(pageFrom((n) => ctx.query.get(n)))));
    },
  },
];
