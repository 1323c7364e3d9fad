/**
 * The admin API described as OpenAPI 3.1, served at `/api/v1/openapi.json`. Written by hand, next to the routes; a
 * test checks that every route served is described here.
 */
import { SESSION_RECENT_LIMIT, SESSION_TOTALS_NAMES, USAGE_BY, VERIFY_PROBLEMS } from '../store/audit-store.js';
import { USAGE_DEFAULT_ROWS, USAGE_MAX_ROWS } from '../store/usage-report.js';
import { EXPORT_FORMATS } from './exchange-export.js';
import { FILTER_PARAMS, OUTCOMES, SESSION_PAGE } from './query-params.js';

const ref = (name: string): { $ref: string } => ({ $ref: `#/components/schemas/${name}` });
const param = (name: string): { $ref: string } => ({ $ref: `#/components/parameters/${name}` });

const FILTERS = FILTER_PARAMS.map(param);
const PAGING = [param('limit'), param('cursor')];

const json = (schema: unknown, description: string): unknown => ({
  description,
  content: { 'application/json': { schema } },
});

/** The cursor of a list's next page, as every paged answer carries it. */
const NEXT_CURSOR = {
  type: ['string', 'null'],
  description: 'Pass as `cursor` for the next page; null on the last page.',
};

/** How many exchanges had each outcome, as session summaries and totals count them. */
const OUTCOME_COUNTS = {
  type: 'object',
  description: 'Outcome → count; `in_progress` for exchanges without a response yet.',
  additionalProperties: { type: 'integer' },
};

const pageOf = (item: string): unknown => ({
  type: 'object',
  required: ['items', 'next_cursor'],
  properties: {
    items: { type: 'array', items: ref(item) },
    next_cursor: NEXT_CURSOR,
  },
});

/** References to the shared error responses (components.responses.E<code>). */
const errors = (...codes: number[]): Record<string, unknown> =>
  Object.fromEntries(codes.map((c) => [String(c), { $ref: `#/components/responses/E${c}` }]));

const readErrors = errors(400, 401, 404, 503);

export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'Vigil admin API',
    version: '1',
    description:
      'Audit access to what Vigil recorded: sessions and exchanges with filters, full-text search, exports, the raw ' +
      'event stream of an exchange, verification, and the access log. Roles: `admin` (everything), `auditor` (every ' +
      'recording), `user` (own exchanges only). Every read of recorded content appends a `recording.read` record.',
  },
  servers: [{ url: '/api/v1' }],
  security: [{ bearer: [] }],
  paths: {
    '/healthz': {
      get: {
        summary: 'Liveness',
        security: [],
        responses: {
          '200': json({ type: 'object', properties: { status: { const: 'ok' } } }, 'The admin listener is up.'),
        },
      },
    },
    '/openapi.json': {
      get: {
        summary: 'This document',
        security: [],
        responses: { '200': json({ type: 'object' }, 'The OpenAPI 3.1 description of this API.') },
      },
    },
    '/ui-config': {
      get: {
        summary: 'What the web UI needs before sign-in',
        security: [],
        responses: {
          '200': json(
            {
              type: 'object',
              required: ['outcomes', 'sign_in'],
              properties: {
                outcomes: { type: 'array', items: { enum: OUTCOMES }, description: 'Every outcome.' },
                sign_in: {
                  type: ['object', 'null'],
                  description:
                    'The OIDC provider the UI signs in with (authorization code + PKCE, public client), from ' +
                    'admin.ui.oidc; null without one.',
                  properties: {
                    name: { type: 'string' },
                    issuer: { type: 'string' },
                    client_id: { type: 'string' },
                    scope: { type: 'string' },
                    token: { enum: ['id_token', 'access_token'] },
                  },
                },
              },
            },
            'The values the UI offers, and how it signs in.',
          ),
        },
      },
    },
    '/whoami': {
      get: {
        summary: 'The caller: their role and identity as the API sees them',
        description:
          'Without identity configured, callers on this machine are admins, as the local user ' +
          '`{"method": "local_user", "subject": "admin-api:localhost"}` (before this release: `anonymous`). Not recorded in ' +
          'the access log (no recorded content).',
        responses: {
          '200': json(
            {
              type: 'object',
              required: ['role', 'reader'],
              properties: {
                role: { enum: ['admin', 'auditor', 'user'] },
                reader: {
                  type: 'object',
                  description:
                    'The OIDC principal (subject, issuer, email, groups), an admin token, or the local admin ' +
                    '(`local_user`, `admin-api:localhost`) when no identity is configured.',
                },
              },
            },
            'The caller.',
          ),
          ...errors(401),
        },
      },
    },
    '/sessions': {
      get: {
        summary: 'List sessions, newest activity first',
        description:
          'Sessions with at least one exchange matching the filters; counts and times cover the matching exchanges. ' +
          `\`recent\` summarises the newest (up to ${SESSION_RECENT_LIMIT}) matching exchanges of each: callers, models, outcomes. ` +
          'Not recorded in the access log (summaries only).',
        parameters: [...FILTERS, ...PAGING],
        responses: { '200': json(pageOf('SessionSummary'), 'A page of sessions.'), ...errors(400, 401) },
      },
    },
    '/sessions/{id}': {
      get: {
        summary: 'One session, a page of its exchanges at a time, oldest first',
        description:
          `Each page carries up to \`limit\` exchanges (${SESSION_PAGE.default} by default, at most ${SESSION_PAGE.max}) in ` +
          'full, with their summaries and `offset`, where the page starts. The first page also carries `session`: what ' +
          'all the session’s exchanges add up to (counts, tokens, times, outcomes, the first ' +
          `${SESSION_TOTALS_NAMES} callers, connections and models); later pages carry \`session: null\` unless asked ` +
          'with `totals=true`, since adding up goes over every exchange of the session (every page used to carry it). ' +
          'A page’s size and cost do not grow with the session. Pass `next_cursor` as `cursor` for the next page; ' +
          'it is null after the last. A `user` sees their own exchanges of the session, and totals of those only. ' +
          'Every page read is recorded in the access log.',
        parameters: [
          param('id'),
          {
            name: 'limit',
            in: 'query',
            schema: { type: 'integer', minimum: 1, maximum: SESSION_PAGE.max, default: SESSION_PAGE.default },
          },
          param('cursor'),
          {
            name: 'totals',
            in: 'query',
            description:
              'Whether the page carries `session`, the session’s totals: by default on the first page (no `cursor`) ' +
              'and not after it. Each time costs the database a pass over the session’s exchanges.',
            schema: { type: 'boolean' },
          },
        ],
        responses: {
          '200': json(
            {
              type: 'object',
              required: ['id', 'session', 'offset', 'summaries', 'exchanges', 'next_cursor'],
              properties: {
                id: { type: 'string' },
                session: {
                  oneOf: [ref('SessionTotals'), { type: 'null' }],
                  description: 'The session’s totals; null on pages after the first unless `totals=true`.',
                },
                offset: {
                  type: 'integer',
                  description:
                    'How many of the session’s exchanges come before this page (0 on the first), as the pages before ' +
                    'it were read (the cursor carries it).',
                },
                summaries: {
                  type: 'array',
                  description: 'The summaries of this page’s exchanges, in the same order as `exchanges`.',
                  items: ref('ExchangeListItem'),
                },
                exchanges: { type: 'array', items: ref('ExchangeView') },
                next_cursor: NEXT_CURSOR,
              },
            },
            'A page of the session (recorded as a read).',
          ),
          ...readErrors,
        },
      },
    },
    '/sessions/{id}/export': {
      get: {
        summary: 'Export one session (streamed)',
        parameters: [param('id'), param('format')],
        responses: { '200': { $ref: '#/components/responses/Export' }, ...readErrors },
      },
    },
    '/sessions/{id}/verify': {
      get: {
        summary: 'Verify one session’s records',
        description:
          'Rehashes every record of the session, checks its links to the neighbouring records of its chain and its ' +
          'blobs, and that every indexed exchange still has its request record. `/verify` is the final word. A `user` ' +
          'gets the same checks of their own exchanges only (`scope: "caller"`): callers can share a session, and ' +
          'nothing is said of the others’ records.',
        parameters: [param('id')],
        responses: { '200': json(ref('SessionVerifyReport'), 'The report.'), ...errors(401, 404) },
      },
    },
    '/exchanges': {
      get: {
        summary: 'List exchanges, newest first',
        parameters: [param('session'), ...FILTERS, ...PAGING],
        responses: { '200': json(pageOf('ExchangeListItem'), 'A page of exchanges.'), ...errors(400, 401) },
      },
    },
    '/usage': {
      get: {
        summary: 'Usage: exchanges, tokens, failures and refusals, grouped by caller, connection, model or day',
        description:
          'Aggregates over the exchange index (no content is read, so it is not recorded in the access log). A user ' +
          'gets their own. Rows are the largest by tokens first, or the days in order; `truncated` says more matched.',
        parameters: [
          { name: 'by', in: 'query', schema: { enum: USAGE_BY, default: 'caller' } },
          {
            name: 'limit',
            in: 'query',
            schema: { type: 'integer', minimum: 1, maximum: USAGE_MAX_ROWS, default: USAGE_DEFAULT_ROWS },
          },
          ...FILTERS,
        ],
        responses: { '200': json(ref('UsageReport'), 'The report.'), ...errors(400, 401) },
      },
    },
    '/limits': {
      get: {
        summary: 'Usage limits, and what is used of each in its window now',
        description:
          "The connections' `limits`, as this gateway counts them (what it admits or refuses by): per caller with " +
          "something in the window, the most used first (at most 1,000), or one row for a limit the connection's " +
          'callers share. A user gets their own row of each. Counts, never content.',
        responses: {
          '200': json(
            {
              type: 'object',
              required: ['items'],
              properties: { items: { type: 'array', items: ref('LimitStatus') } },
            },
            'The limits.',
          ),
          ...errors(401),
        },
      },
    },
    '/exchanges/{id}': {
      get: {
        summary: 'One exchange in full',
        parameters: [param('id')],
        responses: { '200': json(ref('ExchangeView'), 'The exchange (recorded as a read).'), ...readErrors },
      },
    },
    '/exchanges/{id}/events': {
      get: {
        summary: 'The raw server-sent event stream of one exchange',
        description: 'Each recorded event as `event: <type>` and `data: <data>` lines, in stream order.',
        parameters: [param('id')],
        responses: {
          '200': {
            description: 'The event stream (recorded as a read).',
            content: { 'text/event-stream': { schema: { type: 'string' } } },
          },
          ...readErrors,
        },
      },
    },
    '/search': {
      get: {
        summary: 'Full-text search over prompts, responses and tool calls',
        description:
          'Words and "quoted phrases", all of which must match (case-insensitive, whole words); `word*` matches a ' +
          'prefix. Nothing else is syntax. Newest first. Matches in snippets are marked « ».',
        parameters: [param('q'), param('session'), ...FILTERS, ...PAGING],
        responses: { '200': json(pageOf('SearchHit'), 'A page of hits (recorded as a read).'), ...readErrors },
      },
    },
    '/export': {
      get: {
        summary: 'Export every exchange matching the filters (streamed, newest first)',
        parameters: [param('format'), param('session'), ...FILTERS],
        responses: { '200': { $ref: '#/components/responses/Export' }, ...errors(400, 401, 503) },
      },
    },
    '/verify': {
      get: {
        summary: 'Verify the whole store (admin, auditor)',
        responses: { '200': json(ref('VerifyReport'), 'The report.'), ...errors(401, 403) },
      },
    },
    '/approvals': {
      get: {
        summary: 'Calls held for approval (status=pending, the default, or all)',
        parameters: [
          { name: 'status', in: 'query', schema: { type: 'string', enum: ['pending', 'all'] } },
          { name: 'connection', in: 'query', schema: { type: 'string' } },
        ],
        responses: {
          '200': json(pageOf('Approval'), 'Held calls, the whole list (`next_cursor` is null: it is not paged).'),
          ...errors(400, 401),
        },
      },
    },
    '/approvals/{id}': {
      get: {
        summary: 'One held call: caller, connection, rule, masked request summary, decisions',
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
        responses: { '200': json(ref('Approval'), 'The approval.'), ...errors(401, 404) },
      },
    },
    '/approvals/{id}/approve': {
      post: {
        summary: 'Approve a held call; optionally grant the caller this rule for N minutes',
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
        requestBody: {
          content: {
            'application/json': {
              schema: { type: 'object', properties: { reason: { type: 'string' }, grant_minutes: { type: 'number' } } },
            },
          },
        },
        responses: {
          '200': json(ref('ApprovalDecision'), 'The approval after this decision.'),
          ...errors(400, 401, 403, 404),
        },
      },
    },
    '/approvals/{id}/deny': {
      post: {
        summary: 'Deny a held call, with a reason the caller receives',
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: { type: 'object', required: ['reason'], properties: { reason: { type: 'string' } } },
            },
          },
        },
        responses: {
          '200': json(ref('ApprovalDecision'), 'The approval after this decision.'),
          ...errors(400, 401, 403, 404),
        },
      },
    },
    '/keys': {
      get: {
        summary: 'Gateway keys, as authentication has them (admin)',
        description:
          'The same as `vigil keys list --json`: by id (the SHA-256 prefix callers are recorded with), never the key ' +
          'or its hash; `state` is live, expired, revoked or refused, and `ledgerMismatch` says how the index ' +
          "disagrees with the key's records.",
        responses: {
          '200': json(
            { type: 'object', required: ['items'], properties: { items: { type: 'array', items: ref('GatewayKey') } } },
            'Every key.',
          ),
          ...errors(401, 403, 404),
        },
      },
      post: {
        summary: 'Create a gateway key for a service (admin); the key is in this answer only',
        description:
          'A `key.created` record naming who asked. `owner` defaults to the caller (an e-mail, `admin-token:<name>`, ' +
          '`admin-api:localhost`); `connections` empty or absent: every connection; `expires`: `90m`, `12h`, `30d`.',
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: {
                type: 'object',
                required: ['name'],
                properties: {
                  name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$' },
                  owner: { type: 'string' },
                  connections: { type: 'array', items: { type: 'string' } },
                  expires: { type: 'string' },
                },
              },
            },
          },
        },
        responses: {
          '201': json(
            {
              allOf: [
                ref('GatewayKey'),
                { type: 'object', required: ['key'], properties: { key: { type: 'string' } } },
              ],
            },
            'The key (shown once: store it now) and its record.',
          ),
          ...errors(400, 401, 403, 404, 503),
        },
      },
    },
    '/keys/{name}/revoke': {
      post: {
        summary: 'Revoke a live gateway key by name (admin); refused from the next call on',
        parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }],
        description:
          'Revokes the live key of this name and any key of the name still working out the overlap of a rotation; ' +
          '`alsoRevoked` lists the ids of those.',
        responses: {
          '200': json(
            {
              allOf: [
                ref('GatewayKey'),
                {
                  type: 'object',
                  required: ['alsoRevoked'],
                  properties: { alsoRevoked: { type: 'array', items: { type: 'string' } } },
                },
              ],
            },
            'The key, revoked.',
          ),
          ...errors(401, 403, 404, 503),
        },
      },
    },
    '/keys/{name}/rotate': {
      post: {
        summary: 'Replace a live gateway key with a new one of the same name (admin)',
        description:
          "The new key has the old one's name, owner and connections, so allow lists, approval rules, usage and limits " +
          'go on as before. The old key keeps working for `overlap` (default 1h; `0`: revoked now; at most 30d), then ' +
          "is refused; revoking the name meanwhile revokes both. `expires`: the new key's lifetime (default: the one " +
          'the old key was given). One append of a `key.revoked` record (`rotatedTo`) and a `key.created` record ' +
          '(`rotates`).',
        parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string' } }],
        requestBody: {
          required: false,
          content: {
            'application/json': {
              schema: {
                type: 'object',
                properties: { overlap: { type: 'string', examples: ['1h', '0'] }, expires: { type: 'string' } },
              },
            },
          },
        },
        responses: {
          '201': json(
            {
              allOf: [
                ref('GatewayKey'),
                {
                  type: 'object',
                  required: ['key', 'replaced'],
                  properties: {
                    key: { type: 'string' },
                    replaced: {
                      type: 'object',
                      required: ['id', 'revokedAt'],
                      properties: { id: { type: 'string' }, revokedAt: { type: 'integer' } },
                    },
                  },
                },
              ],
            },
            'The new key (shown once: store it now), its record, and the key it replaces with when it stops working.',
          ),
          ...errors(400, 401, 403, 404, 503),
        },
      },
    },
    '/config': {
      get: {
        summary: 'The config this gateway runs, and the reloads on the ledger (admin)',
        description:
          "`sha256`: the running config's digest, as `vigil config check` prints it; `lastReload`: whether the last " +
          'reload was applied (false: the config pushed is not the one running) and when one last was (or start-up); ' +
          '`reloadable`: whether `POST /config/reload` can read the config again; `reloads`: the newest 50 ' +
          '`config.reloaded` records, newest first, each with `at`, `by` and what changed.',
        responses: {
          '200': json(
            {
              type: 'object',
              required: ['sha256', 'lastReload', 'reloadable', 'reloads'],
              properties: {
                sha256: { type: 'string' },
                lastReload: {
                  type: 'object',
                  required: ['successful', 'lastSuccessAt'],
                  properties: { successful: { type: 'boolean' }, lastSuccessAt: { type: 'integer' } },
                },
                reloadable: { type: 'boolean' },
                reloads: { type: 'array', items: { type: 'object' } },
              },
            },
            'The running config and its reloads.',
          ),
          ...errors(401, 403, 404, 503),
        },
      },
    },
    '/config/reload': {
      post: {
        summary: 'Read the config again and apply it, as SIGHUP does (admin)',
        description:
          "Reads `vigil serve`'s config file again (with its flags over it) and applies what a running gateway takes: " +
          'everything but the listeners, the store and signing (connections, identity, admin tokens and roles, ' +
          'retention, sizes, the shutdown grace, approval webhooks, SIEM sinks, `log.level`). Recorded on the ledger first, with who ' +
          'asked (a `config.reloaded` record, streamed to the SIEM). A config that is not valid, that would not start, ' +
          'or that changes what only a restart applies changes nothing (400, every problem in the message); a store ' +
          'that does not take the record changes nothing either (503). 404 for a gateway started without a config it ' +
          'can read again.',
        responses: {
          '200': json(ref('ConfigChanges'), 'What changed (nothing, when the config is the same).'),
          ...errors(400, 401, 403, 404, 503),
        },
      },
    },
    '/access-log': {
      get: {
        summary: 'Who read which recording, newest first (admin)',
        parameters: PAGING,
        responses: { '200': json(pageOf('AccessLogEntry'), 'A page of reads.'), ...errors(400, 401, 403) },
      },
    },
  },
  components: {
    securitySchemes: {
      bearer: {
        type: 'http',
        scheme: 'bearer',
        description:
          'An admin API token (admin.tokens) or an OIDC token from a trusted issuer; its groups give the role ' +
          '(admin.roles). Without any identity configured, callers on this machine are admins without a token.',
      },
    },
    parameters: {
      id: { name: 'id', in: 'path', required: true, schema: { type: 'string' } },
      q: { name: 'q', in: 'query', required: true, schema: { type: 'string', minLength: 1 } },
      session: { name: 'session', in: 'query', schema: { type: 'string' }, description: 'Only this session.' },
      caller: { name: 'caller', in: 'query', schema: { type: 'string' }, description: 'Caller subject.' },
      group: { name: 'group', in: 'query', schema: { type: 'string' }, description: 'A group the caller was in.' },
      connection: { name: 'connection', in: 'query', schema: { type: 'string' } },
      model: {
        name: 'model',
        in: 'query',
        schema: { type: 'string' },
        description: 'Model asked for or that answered.',
      },
      outcome: {
        name: 'outcome',
        in: 'query',
        schema: { enum: OUTCOMES },
      },
      masking: {
        name: 'masking',
        in: 'query',
        schema: { type: 'string' },
        description: 'A masking detector type that was found.',
      },
      stop_reason: {
        name: 'stop_reason',
        in: 'query',
        schema: { type: 'string', pattern: '^[a-z][a-z0-9_]{0,63}$' },
        description: 'Why the answer stopped, as the response said: end_turn, tool_use, max_tokens, refusal, …',
      },
      since: {
        name: 'since',
        in: 'query',
        schema: { type: 'string' },
        description: 'Started at or after: ISO 8601 or epoch ms.',
      },
      until: {
        name: 'until',
        in: 'query',
        schema: { type: 'string' },
        description: 'Started before: ISO 8601 or epoch ms.',
      },
      limit: { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 50 } },
      cursor: {
        name: 'cursor',
        in: 'query',
        schema: { type: 'string' },
        description: 'next_cursor of the previous page.',
      },
      format: { name: 'format', in: 'query', schema: { enum: EXPORT_FORMATS, default: 'jsonl' } },
    },
    responses: {
      Export: {
        description:
          'JSONL: one ExchangeView per line, exactly as GET /exchanges/{id} returns it. Markdown: a transcript.',
        content: {
          'application/x-ndjson': { schema: { type: 'string' } },
          'text/markdown': { schema: { type: 'string' } },
        },
      },
      E400: json(ref('Error'), 'A parameter is invalid (the message names it).'),
      E401: json(ref('Error'), 'No credential, or one that is not valid.'),
      E403: json(ref('Error'), 'The caller’s role does not allow this.'),
      E404: json(ref('Error'), 'Not found, or not visible to the caller (users see their own exchanges only).'),
      E503: json(ref('Error'), 'The read could not be recorded in the access log, so it was refused.'),
    },
    schemas: {
      Approval: {
        type: 'object',
        description: 'A held call: id, status, caller, connection, rule, masked request summary, decisions, expiry.',
        additionalProperties: true,
      },
      ApprovalDecision: {
        allOf: [
          ref('Approval'),
          {
            type: 'object',
            required: ['released', 'grant'],
            properties: {
              released: {
                type: 'boolean',
                description: 'Every approval the rule needs is in: the gateway holding the call sends it on.',
              },
              grant: {
                description: 'The grant this approval made (null: none, e.g. not every approver asked for one yet).',
                oneOf: [
                  { type: 'null' },
                  {
                    type: 'object',
                    properties: {
                      id: { type: 'string' },
                      minutes: { type: 'number' },
                      expiresAt: { type: 'integer', description: 'epoch ms' },
                      caller: { type: 'object', additionalProperties: true },
                      connection: { type: 'string' },
                      rule: { type: 'string' },
                      session: {
                        type: ['string', 'null'],
                        description: 'An anonymous caller’s grant covers only this session; null: every session.',
                      },
                    },
                  },
                ],
              },
            },
          },
        ],
      },
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['type', 'message'],
            properties: { type: { type: 'string' }, message: { type: 'string' } },
          },
        },
      },
      SessionSummary: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          connection: { type: 'string' },
          callerSubject: { type: 'string' },
          firstAt: { type: 'integer', description: 'epoch ms' },
          lastAt: { type: 'integer', description: 'epoch ms' },
          exchanges: { type: 'integer' },
          inputTokens: { type: 'integer' },
          outputTokens: { type: 'integer' },
          recent: {
            type: 'object',
            description: `The newest (up to ${SESSION_RECENT_LIMIT}) matching exchanges of the session, summarised.`,
            properties: {
              exchanges: { type: 'integer', description: 'How many exchanges this covers.' },
              callers: {
                type: 'array',
                description: 'Distinct callers (clients choose session ids, so callers can share one).',
                items: ref('ExchangeCaller'),
              },
              models: { type: 'array', items: { type: 'string' } },
              outcomes: OUTCOME_COUNTS,
            },
          },
        },
      },
      ExchangeCaller: {
        type: 'object',
        description: 'Who made an exchange: subjects are unique per method and issuer only.',
        properties: {
          callerSubject: { type: 'string' },
          callerMethod: { type: 'string' },
          callerIssuer: { type: ['string', 'null'] },
        },
      },
      SessionTotals: {
        type: 'object',
        description:
          'What a session’s exchanges (those the caller may see) add up to. Its size does not grow with the session: ' +
          `callers, connections and models name the first ${SESSION_TOTALS_NAMES} in order of first use, and the ` +
          'counts say how many there are in all.',
        properties: {
          id: { type: 'string' },
          connection: { type: 'string', description: 'The first connection, bytewise (as in `GET /sessions`).' },
          callerSubject: { type: 'string', description: 'The first caller subject, bytewise (as in `GET /sessions`).' },
          firstAt: { type: 'integer', description: 'When the first exchange started, epoch ms' },
          lastAt: { type: 'integer', description: 'When the last exchange started, epoch ms' },
          endedAt: { type: ['integer', 'null'], description: 'When the last finished exchange ended, epoch ms' },
          exchanges: { type: 'integer' },
          inputTokens: { type: 'integer', description: 'All input: uncached, cache writes and cache reads.' },
          outputTokens: { type: 'integer' },
          cacheReadTokens: { type: 'integer', description: 'Of the input, read from the prompt cache.' },
          cacheWriteTokens: { type: 'integer', description: 'Of the input, written to the prompt cache.' },
          cost: {
            type: ['number', 'null'],
            description: 'What the tokens cost by `pricing`, in `currency` (as in `GET /usage`); null without pricing.',
          },
          unpriced: { type: ['integer', 'null'], description: 'Exchanges of models without a price, not in `cost`.' },
          currency: { type: ['string', 'null'] },
          outcomes: OUTCOME_COUNTS,
          callers: { type: 'array', items: ref('ExchangeCaller') },
          callerCount: { type: 'integer' },
          connections: { type: 'array', items: { type: 'string' } },
          connectionCount: { type: 'integer' },
          models: {
            type: 'array',
            description: 'The model that answered, else the one asked for.',
            items: { type: 'string' },
          },
          modelCount: { type: 'integer' },
        },
      },
      ExchangeListItem: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          sessionId: { type: 'string' },
          connection: { type: 'string' },
          callerSubject: { type: 'string' },
          callerMethod: { type: 'string' },
          callerIssuer: { type: ['string', 'null'] },
          callerGroups: { type: 'array', items: { type: 'string' } },
          method: { type: 'string' },
          path: { type: 'string' },
          model: { type: ['string', 'null'] },
          stream: { type: 'boolean' },
          startedAt: { type: 'integer' },
          endedAt: { type: ['integer', 'null'] },
          status: { type: ['integer', 'null'] },
          outcome: { type: ['string', 'null'] },
          inputTokens: { type: ['integer', 'null'] },
          outputTokens: { type: ['integer', 'null'] },
          stopReason: { type: ['string', 'null'] },
          masking: { type: 'object', additionalProperties: { type: 'integer' } },
        },
      },
      ExchangeView: {
        type: 'object',
        description: 'An exchange as recorded: request and response with bodies, events, usage and timing.',
        properties: {
          id: { type: 'string' },
          session_id: { type: 'string' },
          connection: { type: 'string' },
          caller: { type: 'object' },
          client: { type: 'object' },
          agent: { type: ['object', 'null'] },
          started_at: { type: 'string', format: 'date-time' },
          ended_at: { type: ['string', 'null'], format: 'date-time' },
          model: { type: ['string', 'null'] },
          outcome: { type: 'string' },
          usage: { type: ['object', 'null'] },
          request: { type: 'object' },
          response: { type: 'object' },
        },
      },
      UsageReport: {
        type: 'object',
        required: ['by', 'items', 'truncated', 'currency'],
        properties: {
          by: { enum: USAGE_BY },
          truncated: { type: 'boolean' },
          currency: {
            type: ['string', 'null'],
            description: "What `cost` is in (the config's `pricing.currency`); null when no pricing is configured.",
          },
          items: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                key: { type: ['string', 'null'], description: 'Caller subject, connection, model, or UTC day.' },
                email: { type: ['string', 'null'], description: 'By caller: the e-mail of their identity token.' },
                exchanges: { type: 'integer' },
                inputTokens: { type: 'integer', description: 'All input: uncached, cache writes and cache reads.' },
                outputTokens: { type: 'integer' },
                cacheReadTokens: { type: 'integer', description: 'Of the input, read from the prompt cache.' },
                cacheWriteTokens: { type: 'integer', description: 'Of the input, written to the prompt cache.' },
                cost: {
                  type: ['number', 'null'],
                  description:
                    'What the tokens cost by `pricing` (to a millionth), each exchange priced by its model; ' +
                    'exchanges of models without a price are left out. Null when no pricing is configured.',
                },
                unpriced: {
                  type: ['integer', 'null'],
                  description: 'Exchanges with tokens whose model has no price (not in `cost`); null without pricing.',
                },
                failed: { type: 'integer' },
                refused: { type: 'integer' },
                inProgress: { type: 'integer' },
              },
            },
          },
        },
      },
      GatewayKey: {
        type: 'object',
        required: ['id', 'name', 'owner', 'connections', 'createdAt', 'expiresAt', 'revokedAt'],
        properties: {
          id: { type: 'string' },
          name: { type: 'string' },
          owner: { type: 'string' },
          connections: { type: 'array', items: { type: 'string' }, description: 'Empty: every connection.' },
          createdAt: { type: 'integer', description: 'ms since the epoch' },
          expiresAt: { type: ['integer', 'null'] },
          revokedAt: { type: ['integer', 'null'] },
          state: { enum: ['live', 'expired', 'revoked', 'refused'], description: 'In listings.' },
          ledgerMismatch: { type: 'array', items: { type: 'string' }, description: 'In listings.' },
        },
      },
      ConfigChanges: {
        type: 'object',
        required: [
          'restartNeeded',
          'connections',
          'defaultConnection',
          'retention',
          'approvals',
          'siem',
          'identity',
          'adminAccess',
          'limits',
          'shutdown',
          'logLevel',
        ],
        properties: {
          restartNeeded: { type: 'array', items: { type: 'string' }, description: 'Always empty when applied.' },
          connections: {
            type: 'object',
            required: ['added', 'changed', 'removed'],
            properties: {
              added: { type: 'array', items: { type: 'string' } },
              changed: {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['name', 'keys'],
                  properties: { name: { type: 'string' }, keys: { type: 'array', items: { type: 'string' } } },
                },
              },
              removed: { type: 'array', items: { type: 'string' } },
            },
          },
          defaultConnection: {
            type: ['object', 'null'],
            properties: { from: { type: 'string' }, to: { type: 'string' } },
          },
          retention: { type: 'boolean', description: '`retention` (windows, batch size, schedule) changed.' },
          limits: { type: 'boolean', description: '`limits` (request and recorded response sizes) changed.' },
          shutdown: { type: 'boolean', description: '`shutdown.grace` changed.' },
          approvals: { type: 'boolean', description: '`approvals` (webhooks, admin URL) changed.' },
          siem: { type: 'boolean', description: '`siem` (its sinks) changed.' },
          identity: { type: 'boolean', description: '`identity` (OIDC issuers, anonymous callers) changed.' },
          adminAccess: {
            type: 'boolean',
            description: 'Who may use the admin API (`admin.tokens`, `admin.roles`) changed.',
          },
          logLevel: { type: ['object', 'null'], properties: { from: { type: 'string' }, to: { type: 'string' } } },
        },
      },
      LimitStatus: {
        type: 'object',
        required: [
          'connection',
          'name',
          'per',
          'windowMs',
          'tokens',
          'requests',
          'cost',
          'currency',
          'for',
          'usage',
          'truncated',
        ],
        properties: {
          connection: { type: 'string' },
          name: { type: 'string' },
          per: { enum: ['caller', 'group', 'connection'] },
          windowMs: { type: 'integer', description: 'The rolling window.' },
          tokens: { type: ['integer', 'null'], description: 'Tokens allowed in the window (null: not limited).' },
          requests: { type: ['integer', 'null'], description: 'Calls allowed in the window (null: not limited).' },
          cost: {
            type: ['number', 'null'],
            description: 'What calls may cost in the window, in `currency` (null: not limited).',
          },
          currency: { type: ['string', 'null'], description: '`pricing.currency`; null without pricing.' },
          for: { type: ['array', 'null'], description: "Whose calls it refuses (null: everyone's)." },
          truncated: { type: 'boolean' },
          usage: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                caller: {
                  type: ['string', 'null'],
                  description: "The caller's subject; null for a group or the connection.",
                },
                group: { type: 'string', description: 'With `per: group`: the group.' },
                tokens: { type: 'integer' },
                requests: { type: 'integer' },
                cost: { type: 'number', description: 'What the calls cost, priced as usage reports price them.' },
                refusedUntil: {
                  type: ['string', 'null'],
                  description: 'At the limit: when calls are admitted again (ISO time); else null.',
                },
              },
            },
          },
        },
      },
      SearchHit: {
        type: 'object',
        properties: {
          exchangeId: { type: 'string' },
          sessionId: { type: 'string' },
          startedAt: { type: 'integer' },
          callerSubject: { type: 'string' },
          snippet: { type: 'string', description: 'Matches between « and ».' },
        },
      },
      VerifyProblem: {
        type: 'object',
        properties: {
          chain: { type: 'string', description: 'Empty for an index row that no record made.' },
          chainSeq: { type: ['integer', 'null'] },
          seq: { type: ['integer', 'null'] },
          problem: { enum: VERIFY_PROBLEMS },
          detail: { type: 'string' },
        },
      },
      VerifyReport: {
        type: 'object',
        properties: {
          ok: { type: 'boolean' },
          chains: { type: 'integer' },
          records: { type: 'integer' },
          problems: { type: 'array', items: ref('VerifyProblem') },
          digestsOverdue: {
            type: 'array',
            items: ref('OverdueDigest'),
            description:
              'A warning (`ok` does not depend on it), present unless `signing.overdue_after` is 0: chains whose ' +
              'records went on for longer than that after their last digest.',
          },
        },
      },
      OverdueDigest: {
        type: 'object',
        properties: {
          chain: { type: 'string' },
          lastDigest: { oneOf: [ref('ChainPoint'), { type: 'null' }] },
          from: { ...ref('ChainPoint'), description: 'The oldest record after the last digest.' },
          to: { ...ref('ChainPoint'), description: "The chain's last record." },
          undigestedMs: { type: 'integer', description: 'From `from.at` to `to.at`.' },
        },
      },
      ChainPoint: {
        type: 'object',
        properties: { chainSeq: { type: 'integer' }, at: { type: 'integer', description: 'Epoch milliseconds.' } },
      },
      SessionVerifyReport: {
        type: 'object',
        properties: {
          ok: { type: 'boolean' },
          session: { type: 'string' },
          scope: {
            enum: ['session', 'caller'],
            description: '`caller`: only the records of the reader’s own exchanges were checked and counted.',
          },
          records: { type: 'integer' },
          exchanges: { type: 'integer' },
          problems: { type: 'array', items: ref('VerifyProblem') },
        },
      },
      AccessLogEntry: {
        type: 'object',
        properties: {
          seq: { type: 'integer' },
          at: { type: 'integer' },
          data: {
            type: 'object',
            properties: {
              actor: {
                type: 'object',
                description:
                  'Who read: the OIDC principal, an admin token, or a local user (`local_user`): the CLI’s ' +
                  '(`cli:<user>`) or, without identity configured, the admin API’s local admin (`admin-api:localhost`). ' +
                  'Entries recorded before this release say `anonymous` for both, and are listed as recorded.',
              },
              role: { enum: ['admin', 'auditor', 'user'] },
              what: { enum: ['session', 'exchange', 'events', 'search', 'export', 'approval'] },
              ids: { type: 'array', items: { type: 'string' } },
              query: { type: 'string' },
              address: { type: ['string', 'null'] },
            },
          },
        },
      },
    },
  },
} as const;
