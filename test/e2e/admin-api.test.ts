/**
 * The admin API end to end: a gateway with a real OpenID provider records traffic from two people through the
 * official SDK, then people with each role (and an automation token) read it back through the admin listener, and
 * the CLI searches and exports the same store. What is checked is what each reader receives and what the access log
 * says about them.
 */
import http from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_API_ROUTES } from '../../src/admin/admin-server.js';
import { run } from '../../src/cli/main.js';
import { renderTranscript } from '../../src/cli/transcript.js';
import { readExchange, type ExchangeView } from '../../src/recorder/exchange-reader.js';
import type {
  AccessLogEntry,
  ExchangeListItem,
  NewRecord,
  SearchHit,
  SearchText,
  SessionSummary,
  SessionTotals,
} from '../../src/store/audit-store.js';
import type { ExchangeRequestData, ExchangeResponseData } from '../../src/store/record-types.js';
import { until } from '../support/until.js';
import { startHarness, type Harness } from '../support/gateway-harness.js';
import { startOidcProvider, type OidcTestProvider } from '../support/oidc-provider.js';

const ADMIN_TOKEN = 'vigil-admin-token-for-automation-0123456789';
const NEEDLE = 'quetzalcoatlus';

let idp: OidcTestProvider;
let h: Harness;
let admin: string;
const tokens: Record<'alice' | 'bob' | 'carol' | 'dave', string> = { alice: '', bob: '', carol: '', dave: '' };

interface Answer<T = unknown> {
  status: number;
  headers: Headers;
  text: string;
  json: T;
}

async function api<T = unknown>(pathAndQuery: string, token?: string): Promise<Answer<T>> {
  const res = await fetch(`${admin}/api/v1${pathAndQuery}`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json: json as T };
}

interface Paged<T> {
  items: T[];
  next_cursor: string | null;
}

/**
 * `GET /sessions/{id}`: a page of exchanges in full with their summaries, and (on the first page, or when asked)
 * what the session adds up to.
 */
interface SessionPage {
  id: string;
  session: SessionTotals | null;
  offset: number;
  summaries: ExchangeListItem[];
  exchanges: ExchangeView[];
  next_cursor: string | null;
}

const client = (token: string): Anthropic =>
  new Anthropic({ baseURL: h.url, apiKey: null, authToken: token, maxRetries: 0 });

/** `n` exchanges written straight into the store, shaped as the recorder writes them, one containing the needle. */
async function bulkRecord(n: number, needleAt: number): Promise<void> {
  await recordDirectly(n, (i) => ({
    id: `ex_bulk_${String(i).padStart(4, '0')}`,
    session: `bulk-${Math.floor(i / 10)}`,
    prompt: i === needleAt ? `Tell me about the ${NEEDLE} please` : `Routine question number ${i} about deployments`,
  }));
}

/** Exchanges `from`…`from + n - 1`, written straight into the store as the recorder writes them, a second apart. */
async function recordDirectly(
  n: number,
  exchange: (i: number) => { id: string; session: string; prompt: string; caller?: string; group?: string },
  from = 0,
): Promise<void> {
  const t0 = Date.UTC(2024, 5, 1);
  for (let start = from; start < from + n; start += 100) {
    const records: NewRecord[] = [];
    const searchText: SearchText[] = [];
    for (let i = start; i < Math.min(from + n, start + 100); i++) {
      const { id, session, prompt, caller = 'batch-bot', group = 'robots' } = exchange(i);
      const at = t0 + i * 1000;
      const request: ExchangeRequestData = {
        connection: 'anthropic',
        caller: { method: 'oidc', subject: caller, issuer: idp.issuer, groups: [group] },
        client: { address: '127.0.0.1', userAgent: 'bulk' },
        session: { id: session, source: 'header' },
        request: {
          method: 'POST',
          path: '/v1/messages',
          query: '',
          headers: { 'content-type': 'application/json' },
          body: {
            size: 0,
            parts: [JSON.stringify({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: prompt }] })],
          },
        },
        model: 'claude-haiku-4-5',
        stream: false,
        startedAt: at,
      };
      const response: ExchangeResponseData = {
        status: 200,
        headers: { 'content-type': 'application/json' },
        body: null,
        message: { role: 'assistant', content: [{ type: 'text', text: `Answer ${i}` }] },
        usage: { input_tokens: 5, output_tokens: 2 },
        model: 'claude-haiku-4-5-20251001',
        stopReason: 'end_turn',
        outcome: 'ok',
        error: null,
        eventCount: 0,
        timing: { startedAt: at, firstByteMs: 10, endedAt: at + 20, durationMs: 20 },
      };
      records.push(
        { kind: 'exchange.request', exchangeId: id, sessionId: session, at, data: request },
        { kind: 'exchange.response', exchangeId: id, sessionId: session, at: at + 20, data: response },
      );
      searchText.push({ exchangeId: id, text: `${prompt}\nAnswer ${i}` });
    }
    await h.gateway.store.append({ records, searchText });
  }
}

beforeAll(async () => {
  idp = await startOidcProvider();
  process.env.VIGIL_TEST_ADMIN_TOKEN = ADMIN_TOKEN;
  h = await startHarness((upstream) => ({
    connections: [
      {
        name: 'anthropic',
        upstream,
        credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
        approvals: [
          {
            name: 'large answers',
            action: 'hold',
            when: { max_tokens_above: 4096 },
            timeout: '30s',
            approver_groups: ['security'],
          },
        ],
        limits: [
          { name: 'daily', window: '1d', tokens: 10_000_000 },
          { name: 'shared', per: 'connection', window: '1h', requests: 100_000 },
        ],
      },
    ],
    identity: { oidc: [{ issuer: idp.issuer, audience: 'vigil' }] },
    admin: {
      listen: '127.0.0.1:0',
      roles: { admin: ['vigil-admins'], auditor: ['security'] },
      tokens: [{ name: 'nightly-export', role: 'auditor', token: { env: 'VIGIL_TEST_ADMIN_TOKEN' } }],
    },
  }));
  admin = h.gateway.adminUrl!;
  tokens.alice = await idp.mintToken(
    { name: 'Alice', email: 'alice@example.com', groups: ['ml-team'] },
    { subject: 'alice' },
  );
  tokens.bob = await idp.mintToken({ email: 'bob@example.com', groups: ['sales'] }, { subject: 'bob' });
  tokens.carol = await idp.mintToken({ groups: ['security'] }, { subject: 'carol' });
  tokens.dave = await idp.mintToken({ groups: ['vigil-admins', 'eng'] }, { subject: 'dave' });

  const headers = (session: string) => ({ headers: { 'x-vigil-session': session } });
  const alice = client(tokens.alice);
  await alice.messages.create(
    {
      model: 'claude-opus-4-5',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'Summarise the pelican migration report' }],
    },
    headers('alice-1'),
  );
  const stream = alice.messages.stream(
    {
      model: 'claude-opus-4-5',
      max_tokens: 50,
      messages: [
        { role: 'user', content: 'Summarise the pelican migration report' },
        { role: 'assistant', content: 'Done.' },
        { role: 'user', content: 'Now list the flamingo colonies' },
      ],
    },
    headers('alice-1'),
  );
  await stream.finalMessage();
  await client(tokens.bob).messages.create(
    {
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'Draft the walrus quarterly pitch' }],
    },
    headers('bob-1'),
  );
  await h.session('alice-1', 2);
  await h.session('bob-1', 1);
}, 20_000);

afterAll(async () => {
  await h?.close();
  await idp?.close();
  delete process.env.VIGIL_TEST_ADMIN_TOKEN;
});

describe('who may see what', () => {
  it('refuses a caller without a credential, or with an unknown token, with 401 and a JSON error', async () => {
    const none = await api('/sessions');
    expect(none.status).toBe(401);
    expect(none.json).toEqual({
      error: { type: 'authentication_error', message: expect.stringContaining('missing credential') },
    });
    expect(none.headers.get('www-authenticate')).toContain('Bearer');
    expect((await api('/sessions', 'not-the-admin-token-but-long-enough')).status).toBe(401);
    // Health and the API description need no credential.
    expect((await api('/healthz')).json).toEqual({ status: 'ok' });
  });

  it('shows a user their own sessions only; anything else is 404, admin routes 403', async () => {
    const sessions = await api<Paged<SessionSummary>>('/sessions', tokens.alice);
    expect(sessions.status).toBe(200);
    expect(sessions.json.items.map((s) => s.id)).toEqual(['alice-1']);
    // Asking for someone else's does not widen what a user sees.
    expect(
      (await api<Paged<ExchangeListItem>>('/exchanges?caller=bob', tokens.alice)).json.items.map(
        (x) => x.callerSubject,
      ),
    ).toEqual(['alice', 'alice']);

    const own = await api<SessionPage>('/sessions/alice-1', tokens.alice);
    expect(own.status).toBe(200);
    expect(own.json.exchanges).toHaveLength(2);
    expect(own.json.summaries.map((s) => s.id)).toEqual(own.json.exchanges.map((x) => x.id));
    expect(own.json.session).toMatchObject({
      exchanges: 2,
      callers: [{ callerSubject: 'alice', callerMethod: 'oidc', callerIssuer: idp.issuer }],
    });

    const [bobs] = await h.session('bob-1', 1);
    for (const p of [
      '/sessions/bob-1',
      `/exchanges/${bobs!.id}`,
      `/exchanges/${bobs!.id}/events`,
      '/sessions/bob-1/export',
      '/sessions/bob-1/verify',
    ]) {
      const r = await api(p, tokens.alice);
      expect(r.status, p).toBe(404);
      expect(r.json).toMatchObject({ error: { type: 'not_found_error' } });
    }
    expect((await api('/access-log', tokens.alice)).status).toBe(403);
    expect((await api('/verify', tokens.alice)).json).toMatchObject({ error: { type: 'permission_error' } });
    expect((await api<Paged<SearchHit>>('/search?q=walrus', tokens.alice)).json.items).toEqual([]);
  });

  it('shows an auditor every recording, but not the access log', async () => {
    const sessions = await api<Paged<SessionSummary>>('/sessions?limit=1000', tokens.carol);
    expect(sessions.json.items.map((s) => s.id)).toEqual(expect.arrayContaining(['alice-1', 'bob-1']));
    const bob = await api<{ exchanges: ExchangeView[] }>('/sessions/bob-1', tokens.carol);
    expect(bob.status).toBe(200);
    expect(bob.json.exchanges[0]!.caller).toMatchObject({ subject: 'bob', email: 'bob@example.com' });
    expect((await api('/verify', tokens.carol)).json).toMatchObject({ ok: true, problems: [] });
    expect((await api('/access-log', tokens.carol)).status).toBe(403);
  });

  it('pages a session’s full exchanges on request (limit, cursor), with the session’s totals on the first page', async () => {
    // A long agent session in full is a very large answer, built in one go; the web UI asks for pages.
    const all = await api<SessionPage>('/sessions/alice-1', tokens.carol);
    expect(all.json.exchanges).toHaveLength(2);
    expect(all.json.next_cursor).toBeNull();
    const first = await api<SessionPage>('/sessions/alice-1?limit=1', tokens.carol);
    expect(first.json.summaries.map((x) => x.id)).toEqual([all.json.exchanges[0]!.id]);
    expect(first.json.exchanges.map((x) => x.id)).toEqual([all.json.exchanges[0]!.id]);
    expect(first.json.exchanges[0]).toEqual(all.json.exchanges[0]);
    expect(first.json.session).toEqual(all.json.session);
    expect(first.json.session).toMatchObject({ id: 'alice-1', exchanges: 2, outcomes: { ok: 2 } });
    const second = await api<SessionPage>(`/sessions/alice-1?limit=1&cursor=${first.json.next_cursor}`, tokens.carol);
    expect(second.json.exchanges.map((x) => x.id)).toEqual([all.json.exchanges[1]!.id]);
    expect([second.json.offset, second.json.session]).toEqual([1, null]);
    expect(second.json.next_cursor).toBeNull();
    const asked = `/sessions/alice-1?limit=1&totals=true&cursor=${first.json.next_cursor}`;
    expect((await api<SessionPage>(asked, tokens.carol)).json).toMatchObject({ offset: 1, session: all.json.session });
    expect((await api<SessionPage>('/sessions/alice-1?totals=false', tokens.carol)).json).toMatchObject({
      offset: 0,
      session: null,
      summaries: all.json.summaries,
    });
    const notYesOrNo = await api<{ error: { message: string } }>('/sessions/alice-1?totals=yes', tokens.carol);
    expect([notYesOrNo.status, notYesOrNo.json.error.message]).toEqual([
      400,
      'totals: expected true or false, got "yes"',
    ]);
    // A cursor of another list (the exchanges'), or none at all.
    const exchangesCursor = (await api<Paged<ExchangeListItem>>('/exchanges?limit=1&session=alice-1', tokens.carol))
      .json.next_cursor!;
    for (const cursor of ['ex_not_here', exchangesCursor, `${first.json.next_cursor}x`]) {
      const wrong = await api<{ error: { message: string } }>(`/sessions/alice-1?cursor=${cursor}`, tokens.carol);
      expect(wrong.status).toBe(400);
      expect(wrong.json.error.message).toBe('cursor: not a cursor from this list (pass next_cursor as it was given)');
    }
    expect((await api('/sessions/alice-1?limit=1', tokens.bob)).status).toBe(404); // still only one's own
    // Later pages too, though they add nothing up: a user who made none of the session's exchanges learns nothing.
    const later = `/sessions/alice-1?limit=1&cursor=${first.json.next_cursor}`;
    expect((await api(later, tokens.bob)).status).toBe(404);
    expect((await api('/sessions/nobody-here?totals=false', tokens.carol)).status).toBe(404);
  });

  it('answers a long session a page at a time without limit too (20 by default, at most 100)', async () => {
    // Went wrong: without limit, every exchange of the session came back in full in one answer; a long agent
    // session (each request resends the conversation) built a ~64 MB answer on the gateway's event loop.
    const erin = client(await idp.mintToken({ email: 'erin@example.com' }, { subject: 'erin' }));
    for (let i = 0; i < 23; i++) {
      await erin.messages.create(
        { model: 'claude-haiku-4-5', max_tokens: 20, messages: [{ role: 'user', content: `turn ${i}` }] },
        { headers: { 'x-vigil-session': 'erin-long' } },
      );
    }
    const recorded = (await h.session('erin-long', 23)).map((x) => x.id);

    const first = await api<SessionPage>('/sessions/erin-long', tokens.carol);
    expect(first.json.summaries.map((x) => x.id)).toEqual(recorded.slice(0, 20));
    expect(first.json.exchanges.map((x) => x.id)).toEqual(recorded.slice(0, 20));
    expect(first.json.session!.exchanges).toBe(23);
    const rest = await api<SessionPage>(`/sessions/erin-long?cursor=${first.json.next_cursor}`, tokens.carol);
    expect(rest.json.exchanges.map((x) => x.id)).toEqual(recorded.slice(20));
    expect(rest.json.next_cursor).toBeNull();

    expect((await api<SessionPage>('/sessions/erin-long?limit=100', tokens.carol)).json.exchanges).toHaveLength(23);
    const tooMany = await api<{ error: { message: string } }>('/sessions/erin-long?limit=101', tokens.carol);
    expect(tooMany.status).toBe(400);
    expect(tooMany.json.error.message).toBe('limit: expected an integer from 1 to 100, got "101"');
  });

  it('answers every page of a long session at the same size, and pages to the end through every exchange once', async () => {
    // Went wrong: every page carried the summaries of all the session's exchanges, so a page grew with the session
    // and reading a session of n exchanges page by page cost O(n²). Then every page carried the session's totals,
    // SQL aggregates over all its exchanges (and a count of those before the page): O(n) in the database per page,
    // ~100 ms a page at 10,000 exchanges on PostgreSQL. The totals now come with the first page only.
    const session = 'agent-250';
    const exchange = (i: number) => ({
      id: `ex_agent_${String(i).padStart(4, '0')}`,
      session,
      prompt: `Step ${i} of the migration plan`,
      caller: 'agent-bot',
      group: 'agents',
    });
    const pageBytes = async (q: string): Promise<number> =>
      Buffer.byteLength((await api(`/sessions/${session}${q}`, tokens.carol)).text);
    await recordDirectly(50, exchange, 20_000);
    const firstOf50 = await pageBytes('?limit=20');
    await recordDirectly(200, exchange, 20_050);
    const firstOf250 = await pageBytes('?limit=20');
    // The same page, 200 exchanges later: only the totals' numbers changed.
    expect(Math.abs(firstOf250 - firstOf50)).toBeLessThan(100);

    const readsBefore = (await api<Paged<AccessLogEntry>>('/access-log?limit=1000', tokens.dave)).json.items.length;
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r: Answer<SessionPage> = await api(
        `/sessions/${session}?limit=20${cursor ? `&cursor=${cursor}` : ''}`,
        tokens.carol,
      );
      expect(r.status).toBe(200);
      const p = r.json;
      expect(p.exchanges.length).toBeLessThanOrEqual(20);
      expect(p.summaries.map((x) => x.id)).toEqual(p.exchanges.map((x) => x.id));
      expect(p.offset).toBe(seen.length);
      if (pages > 0) expect(p.session).toBeNull();
      else
        expect(p.session).toMatchObject({
          id: session,
          exchanges: 250,
          inputTokens: 1250,
          outputTokens: 500,
          outcomes: { ok: 250 },
          callers: [{ callerSubject: 'agent-bot', callerMethod: 'oidc', callerIssuer: idp.issuer }],
          callerCount: 1,
          connections: ['anthropic'],
          models: ['claude-haiku-4-5-20251001'],
        });
      // Nothing in the answer but the page's exchanges and (on the first) the session's totals.
      expect(Object.keys(p).sort()).toEqual(['exchanges', 'id', 'next_cursor', 'offset', 'session', 'summaries']);
      seen.push(...p.exchanges.map((x) => x.id));
      sizes.push(Buffer.byteLength(r.text) / Math.max(p.exchanges.length, 1));
      cursor = p.next_cursor;
      pages++;
    } while (cursor !== null);
    expect(seen).toEqual(Array.from({ length: 250 }, (_, i) => exchange(20_000 + i).id));
    expect(pages).toBe(13);
    // The last page (10 exchanges) costs per exchange what the first one does.
    expect(Math.max(...sizes) / Math.min(...sizes)).toBeLessThan(1.5);

    // Each page read is a read of the session's content, recorded as one.
    const log = (await api<Paged<AccessLogEntry>>('/access-log?limit=1000', tokens.dave)).json.items;
    const reads = log.slice(0, log.length - readsBefore);
    expect(reads).toHaveLength(pages);
    expect(reads.map((e) => [e.data.actor.subject, e.data.role, e.data.what, e.data.ids])).toEqual(
      Array(pages).fill(['carol', 'auditor', 'session', [session]]),
    );
  }, 30_000);

  it('accepts an admin API token for automation, with its role', async () => {
    const r = await api<Paged<SessionSummary>>('/sessions?limit=1000', ADMIN_TOKEN);
    expect(r.status).toBe(200);
    expect(r.json.items.map((s) => s.id)).toContain('bob-1');
    expect((await api('/access-log', ADMIN_TOKEN)).status).toBe(403); // an auditor token
  });
});

describe('lists, filters and pages', () => {
  it('filters exchanges by caller, group, model, outcome and time', async () => {
    const ids = async (q: string): Promise<string[]> =>
      (await api<Paged<ExchangeListItem>>(`/exchanges?${q}`, tokens.dave)).json.items.map((x) => x.callerSubject);
    expect(await ids('group=sales')).toEqual(['bob']);
    expect(await ids('caller=alice')).toEqual(['alice', 'alice']);
    expect(await ids('model=claude-haiku-4-5&connection=anthropic&caller=bob')).toEqual(['bob']);
    expect(await ids('outcome=ok&group=ml-team')).toEqual(['alice', 'alice']);
    expect(await ids('outcome=upstream_error&group=ml-team')).toEqual([]);
    expect(await ids(`group=ml-team&since=${new Date(Date.now() + 60_000).toISOString()}`)).toEqual([]);
    const item = (await api<Paged<ExchangeListItem>>('/exchanges?group=sales', tokens.dave)).json.items[0]!;
    expect(item).toMatchObject({
      callerIssuer: idp.issuer,
      callerGroups: ['sales'],
      sessionId: 'bob-1',
      outcome: 'ok',
    });

    const bad = await api('/exchanges?outcome=fine&limit=5', tokens.dave);
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({
      error: { type: 'invalid_request_error', message: expect.stringContaining('outcome') },
    });
    expect((await api('/exchanges?since=yesterday', tokens.dave)).status).toBe(400);
  });

  it('summarises each listed session’s recent exchanges: callers, models and outcomes', async () => {
    // The web UI asked /exchanges once per listed session for these; the list now carries them.
    const r = await api<Paged<SessionSummary & { recent: unknown }>>('/sessions?limit=1000', tokens.dave);
    const alice = r.json.items.find((s) => s.id === 'alice-1')!;
    const exchanges = (await api<Paged<ExchangeListItem>>('/exchanges?session=alice-1', tokens.dave)).json.items;
    expect(alice.recent).toEqual({
      exchanges: 2,
      callers: [{ callerSubject: 'alice', callerMethod: 'oidc', callerIssuer: idp.issuer }],
      models: [...new Set(exchanges.map((x) => x.model))],
      outcomes: { ok: 2 },
    });
    // Filtered like the list itself: a user's rows summarise their own exchanges only.
    const own = await api<Paged<SessionSummary & { recent: { callers: unknown[] } }>>('/sessions', tokens.bob);
    expect(own.json.items.map((s) => [s.id, s.recent.callers])).toEqual([
      ['bob-1', [{ callerSubject: 'bob', callerMethod: 'oidc', callerIssuer: idp.issuer }]],
    ]);
    const none = await api<Paged<SessionSummary & { recent: unknown }>>('/sessions?outcome=interrupted', tokens.dave);
    expect(none.json.items).toEqual([]);
  });

  it('pages through sessions and exchanges with cursors', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const r: Answer<Paged<SessionSummary>> = await api(
        `/sessions?limit=1${cursor ? `&cursor=${cursor}` : ''}&caller=alice`,
        tokens.dave,
      );
      seen.push(...r.json.items.map((s) => s.id));
      cursor = r.json.next_cursor;
    } while (cursor);
    expect(seen).toEqual(['alice-1']);

    const first = await api<Paged<ExchangeListItem>>('/exchanges?limit=1&session=alice-1', tokens.alice);
    const second = await api<Paged<ExchangeListItem>>(
      `/exchanges?limit=1&session=alice-1&cursor=${first.json.next_cursor}`,
      tokens.alice,
    );
    expect(second.json.next_cursor).toBeNull();
    const [x1, x2] = await h.session('alice-1', 2);
    expect([first.json.items[0]!.id, second.json.items[0]!.id]).toEqual([x2!.id, x1!.id]);
  });

  it('reports usage by caller, model or day: everyone’s to an admin, a user’s own to that user', async () => {
    type Usage = { by: string; items: Array<{ key: string | null; exchanges: number; outputTokens: number }> };
    const byCaller = await api<Usage>('/usage?by=caller', tokens.dave);
    expect(byCaller.status).toBe(200);
    const keys = byCaller.json.items.map((r) => r.key);
    expect(keys).toEqual(expect.arrayContaining(['alice', 'bob']));
    expect(byCaller.json.items.find((r) => r.key === 'bob')).toMatchObject({ exchanges: 1 });
    // Largest by tokens first.
    const sizes = byCaller.json.items.map((r) => r.outputTokens);
    expect(sizes).toEqual([...sizes].sort((a, b) => b - a));
    const models = await api<Usage>('/usage?by=model&group=sales', tokens.dave);
    expect(models.json.items.map((r) => [r.key, r.exchanges])).toEqual([['claude-haiku-4-5', 1]]);
    const days = await api<Usage>('/usage?by=day&caller=alice', tokens.dave);
    expect(days.json.items.map((r) => r.key)).toEqual([new Date().toISOString().slice(0, 10)]);
    // A user: their own row only, whatever they ask.
    const own = await api<Usage>('/usage?by=caller', tokens.alice);
    expect(own.json.items.map((r) => r.key)).toEqual(['alice']);
    expect((await api<Usage>('/usage?caller=bob', tokens.alice)).json.items.map((r) => r.key)).toEqual(['alice']);
    const bad = await api('/usage?by=team', tokens.dave);
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({
      error: { type: 'invalid_request_error', message: expect.stringContaining('by: expected one of caller') },
    });
    expect((await api('/usage')).status).toBe(401);
  });

  it('shows the usage limits and what is used of them: every caller’s to an admin, a user’s own to that user', async () => {
    type Limits = {
      items: Array<{
        name: string;
        per: string;
        usage: Array<{ caller: string | null; tokens: number; requests: number }>;
      }>;
    };
    const all = await api<Limits>('/limits', tokens.dave);
    expect(all.status).toBe(200);
    expect(all.json.items.map((l) => [l.name, l.per])).toEqual([
      ['daily', 'caller'],
      ['shared', 'connection'],
    ]);
    const daily = all.json.items[0]!.usage;
    expect(daily.map((u) => u.caller)).toEqual(expect.arrayContaining(['alice', 'bob']));
    // As the usage report counts them: input (cache included) and output tokens of each caller's exchanges.
    type Usage = { items: Array<{ key: string; inputTokens: number; outputTokens: number; exchanges: number }> };
    const report = (await api<Usage>('/usage?by=caller', tokens.dave)).json.items.find((r) => r.key === 'bob')!;
    expect(daily.find((u) => u.caller === 'bob')).toMatchObject({
      tokens: report.inputTokens + report.outputTokens,
      requests: report.exchanges,
    });
    const [shared] = all.json.items[1]!.usage;
    expect(shared!.caller).toBeNull();
    expect(shared!.requests).toBe(daily.reduce((n, u) => n + u.requests, 0));

    const own = await api<Limits>('/limits', tokens.alice);
    expect(own.json.items.map((l) => l.usage.map((u) => u.caller))).toEqual([['alice'], [null]]);
    expect((await api('/limits')).status).toBe(401);
  });

  it('finds the answers a model declined: stop_reason=refusal', async () => {
    // A model whose safety classifiers decline answers 200 with stop_reason "refusal" (Claude Fable): not an error,
    // so no outcome filter found them, and they are what an auditor looks for first.
    const frank = client(await idp.mintToken({ groups: ['research'] }, { subject: 'frank' }));
    const params = {
      model: 'claude-fable-5-1',
      max_tokens: 50,
      messages: [{ role: 'user' as const, content: 'Write the exploit [[scenario:refusal]]' }],
    };
    const headers = { headers: { 'x-vigil-session': 'frank-1' } };
    const declined = await frank.messages.create(params, headers);
    expect(declined).toMatchObject({ stop_reason: 'refusal', content: [] });
    expect((await frank.messages.stream(params, headers).finalMessage()).stop_reason).toBe('refusal');
    await frank.messages.create({ ...params, messages: [{ role: 'user', content: 'And a poem' }] }, headers);
    await h.session('frank-1', 3);

    const refused = (await api<Paged<ExchangeListItem>>('/exchanges?stop_reason=refusal', tokens.dave)).json.items;
    expect(refused.map((x) => [x.callerSubject, x.stream, x.outcome, x.stopReason])).toEqual([
      ['frank', true, 'ok', 'refusal'],
      ['frank', false, 'ok', 'refusal'],
    ]);
    const frankEnded = await api<Paged<ExchangeListItem>>('/exchanges?caller=frank&stop_reason=end_turn', tokens.dave);
    expect(frankEnded.json.items.map((x) => x.stopReason)).toEqual(['end_turn']);
    const sessions = await api<Paged<SessionSummary>>('/sessions?stop_reason=refusal', tokens.dave);
    expect(sessions.json.items.map((s) => [s.id, s.exchanges])).toEqual([['frank-1', 2]]);
    // A user sees their own only.
    expect((await api<Paged<ExchangeListItem>>('/exchanges?stop_reason=refusal', tokens.alice)).json.items).toEqual([]);

    // Counted for Prometheus, by connection and model, to alert on.
    const metrics = await (
      await fetch(`${admin}/metrics`, { headers: { authorization: `Bearer ${tokens.dave}` } })
    ).text();
    expect(metrics).toMatch(/^vigil_refusals_total\{connection="anthropic",model="claude-fable-5-1"\} 2$/m);

    const bad = await api('/exchanges?stop_reason=Refusal%20OR%201', tokens.dave);
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({
      error: { type: 'invalid_request_error', message: expect.stringContaining('stop_reason: expected a stop reason') },
    });
  });
});

describe('search', () => {
  it('finds a word used once among a thousand recorded exchanges, with a highlighted snippet', async () => {
    const started = Date.now();
    await bulkRecord(1000, 637);
    const hits = await api<Paged<SearchHit>>(`/search?q=${NEEDLE}`, tokens.carol);
    expect(hits.status).toBe(200);
    expect(hits.json.items).toEqual([
      {
        exchangeId: 'ex_bulk_0637',
        sessionId: 'bulk-63',
        startedAt: expect.any(Number),
        callerSubject: 'batch-bot',
        snippet: expect.stringContaining(`«${NEEDLE}»`),
      },
    ]);
    // A common word pages.
    const page = await api<Paged<SearchHit>>('/search?q=routine+deployments&limit=100', tokens.carol);
    expect(page.json.items).toHaveLength(100);
    expect(page.json.next_cursor).not.toBeNull();
    expect(Date.now() - started).toBeLessThan(10_000);
  }, 20_000);

  it('searches what was recorded through the gateway, and only what the reader may see', async () => {
    const all = await api<Paged<SearchHit>>('/search?q=flamingo', tokens.carol);
    expect(all.json.items.map((h) => h.sessionId)).toEqual(['alice-1']);
    expect((await api<Paged<SearchHit>>('/search?q=flamingo', tokens.alice)).json.items).toHaveLength(1);
    expect((await api<Paged<SearchHit>>('/search?q=flamingo', tokens.bob)).json.items).toHaveLength(0);
    // Input that looks like query syntax is searched as text.
    expect((await api('/search?q=%22walrus%20OR%20*%22%20NEAR(', tokens.carol)).status).toBe(200);
    expect((await api('/search', tokens.carol)).status).toBe(400);
  });
});

describe('export', () => {
  it('exports a session as JSONL that reads back equal to what was stored', async () => {
    const r = await api('/sessions/alice-1/export?format=jsonl', tokens.alice);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('application/x-ndjson');
    const lines = r.text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as ExchangeView);
    expect(lines).toHaveLength(2);
    for (const x of lines) expect(x).toEqual(await readExchange(h.gateway.store, x.id));
  });

  it('exports a session as a Markdown transcript with its turns', async () => {
    const r = await api('/sessions/alice-1/export?format=markdown', tokens.carol);
    expect(r.headers.get('content-type')).toContain('text/markdown');
    expect(r.text).toMatch(/^# Session alice-1\n/);
    expect(r.text).toContain('## 1. ');
    expect(r.text).toContain('Summarise the pelican migration report');
    expect(r.text).toContain('## 2. ');
    expect(r.text).toContain('Now list the flamingo colonies');
    expect(r.text).toContain('**assistant:**');
    expect((await api('/sessions/alice-1/export?format=pdf', tokens.carol)).status).toBe(400);
  });

  it('exports a filtered set, limited to what the reader may see', async () => {
    const r = await api('/export?group=sales', tokens.carol);
    const lines = r.text
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as ExchangeView);
    expect(lines.map((x) => x.session_id)).toEqual(['bob-1']);
    const own = await api('/export?group=sales', tokens.bob);
    expect(own.text.trimEnd().split('\n')).toHaveLength(1);
    expect((await api('/export?group=sales', tokens.alice)).text).toBe('');
  });
});

describe('raw events', () => {
  it('reproduces the SSE stream the client received, byte for byte', async () => {
    const res = await fetch(`${h.url}/v1/messages`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${tokens.bob}`,
        'content-type': 'application/json',
        'anthropic-version': '2023-06-01',
        'x-vigil-session': 'bob-stream',
      },
      body: JSON.stringify({
        model: 'claude-opus-4-5',
        max_tokens: 30,
        stream: true,
        messages: [{ role: 'user', content: 'stream me' }],
      }),
    });
    const received = await res.text();
    const [x] = await h.session('bob-stream', 1);
    const events = await api(`/exchanges/${x!.id}/events`, tokens.bob);
    expect(events.status).toBe(200);
    expect(events.headers.get('content-type')).toContain('text/event-stream');
    expect(events.text).toBe(received);
    expect(events.text).toContain('event: message_stop\n');

    // A non-streamed exchange has no event stream.
    const [plain] = await h.session('bob-1', 1);
    expect((await api(`/exchanges/${plain!.id}/events`, tokens.bob)).status).toBe(404);
  });
});

describe('verify', () => {
  it('verifies one session', async () => {
    expect((await api('/sessions/alice-1/verify', tokens.alice)).json).toMatchObject({
      ok: true,
      session: 'alice-1',
      scope: 'caller',
      exchanges: 2,
      problems: [],
    });
    expect((await api('/sessions/alice-1/verify', tokens.carol)).json).toMatchObject({
      scope: 'session',
      exchanges: 2,
    });
  });

  it('tells a user sharing a session about their own exchanges only', async () => {
    // Went wrong: clients choose session ids, so callers can share one; a user who may see only their own exchanges
    // was told how many records and exchanges the others had in it, and any problem found in theirs.
    const ask = (token: string, text: string) =>
      client(token).messages.create(
        { model: 'claude-haiku-4-5', max_tokens: 20, messages: [{ role: 'user', content: text }] },
        { headers: { 'x-vigil-session': 'shared-1' } },
      );
    await ask(tokens.alice, 'my part of the shared session');
    await ask(tokens.bob, 'his part');
    await ask(tokens.bob, 'and some more');
    const [mine] = (await h.session('shared-1', 3)).filter((x) => x.caller.subject === 'alice');
    const ownRecords = (await h.gateway.store.sessionRecords('shared-1')).filter((r) => r.exchangeId === mine!.id);

    const alices = await api<{ records: number; exchanges: number }>('/sessions/shared-1/verify', tokens.alice);
    expect(alices.json).toEqual({
      ok: true,
      session: 'shared-1',
      scope: 'caller',
      records: ownRecords.length,
      exchanges: 1,
      problems: [],
    });
    expect((await api('/sessions/shared-1/verify', tokens.carol)).json).toMatchObject({
      scope: 'session',
      exchanges: 3,
    });
    expect((await api('/sessions/shared-1/verify', tokens.dave)).json).toMatchObject({ exchanges: 3 });
    // Reading the session, too: her exchange, and totals of hers alone.
    const page = (await api<SessionPage>('/sessions/shared-1', tokens.alice)).json;
    expect(page.exchanges.map((x) => x.id)).toEqual([mine!.id]);
    expect(page.session).toMatchObject({ exchanges: 1, callerCount: 1, callers: [{ callerSubject: 'alice' }] });
    expect((await api<SessionPage>('/sessions/shared-1', tokens.carol)).json.session).toMatchObject({
      exchanges: 3,
      callerCount: 2,
    });
  });
});

describe('access log', () => {
  it('shows admins who read which recording, and when', async () => {
    const [bobs] = await h.session('bob-1', 1);
    await api(`/exchanges/${bobs!.id}`, tokens.carol);
    const log = await api<Paged<AccessLogEntry>>('/access-log?limit=1000', tokens.dave);
    expect(log.status).toBe(200);
    const entries = log.json.items;
    expect(entries[0]).toMatchObject({
      at: expect.any(Number),
      data: {
        actor: { method: 'oidc', subject: 'carol', issuer: idp.issuer },
        role: 'auditor',
        what: 'exchange',
        ids: [bobs!.id],
      },
    });
    const summary = entries.map((e) => `${e.data.actor.subject}:${e.data.role}:${e.data.what}:${e.data.ids.join(',')}`);
    expect(summary).toEqual(
      expect.arrayContaining([
        'alice:user:session:alice-1',
        'carol:auditor:session:bob-1',
        'alice:user:export:alice-1',
        'carol:auditor:search:ex_bulk_0637',
      ]),
    );
    expect(entries.find((e) => e.data.what === 'search' && e.data.ids[0] === 'ex_bulk_0637')!.data.query).toBe(NEEDLE);
    expect(entries.find((e) => e.data.what === 'events')!.data).toMatchObject({
      actor: { subject: 'bob' },
      role: 'user',
    });
    // Lists are not reads of content: nothing was logged for them, and nothing for refused reads.
    expect(entries.every((e) => ['session', 'exchange', 'events', 'search', 'export'].includes(e.data.what))).toBe(
      true,
    );
    expect(entries.some((e) => e.data.actor.subject === 'alice' && e.data.ids.includes('bob-1'))).toBe(false);
  });
});

describe('openapi', () => {
  it('describes every route served, and serves every route it describes', async () => {
    const doc = (await api<{ openapi: string; paths: Record<string, Record<string, unknown>> }>('/openapi.json')).json;
    expect(doc.openapi).toBe('3.1.0');
    const served = ADMIN_API_ROUTES;
    for (const route of served) {
      expect(doc.paths[route.path], route.path).toBeDefined();
      expect(doc.paths[route.path]![route.method.toLowerCase()], `${route.method} ${route.path}`).toBeDefined();
    }
    for (const [p, methods] of Object.entries(doc.paths)) {
      for (const m of Object.keys(methods)) {
        expect(
          served.some((r) => r.path === p && r.method.toLowerCase() === m),
          `${m} ${p}`,
        ).toBe(true);
      }
      // Served: a route that does not exist answers 404 "no such route"; these answer something else for an admin.
      const r = await api(p.replace('{id}', 'alice-1'), tokens.dave);
      expect(JSON.stringify(r.json ?? {}), p).not.toContain('no such route');
    }
    expect((await api('/nothing-here', tokens.dave)).json).toMatchObject({
      error: { message: expect.stringContaining('no such route') },
    });
    const post = await fetch(`${admin}/api/v1/sessions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.dave}` },
    });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET');
  });
});

describe('CLI', () => {
  class Capture extends Writable {
    text = '';
    override _write(chunk: Buffer, _enc: string, done: () => void): void {
      this.text += chunk.toString();
      done();
    }
  }
  const cli = async (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await run(args, { stdout, stderr });
    return { code, stdout: stdout.text, stderr: stderr.text };
  };

  it('vigil search finds the word and prints the hit', async () => {
    const text = await cli('search', NEEDLE, '--data-dir', h.dataDir);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('ex_bulk_0637');
    expect(text.stdout).toContain(`«${NEEDLE}»`);
    const json = await cli('search', 'flamingo', '--json', '--data-dir', h.dataDir);
    expect(JSON.parse(json.stdout)).toMatchObject({ items: [{ sessionId: 'alice-1' }], next_cursor: null });
    expect((await cli('search', 'nothing-recorded-like-this', '--data-dir', h.dataDir)).stdout).toContain('no matches');
  });

  it('vigil sessions show gives a long session whole (it reads the store, not a page of the API)', async () => {
    const recorded = (await h.session('erin-long', 23)).map((x) => x.id);
    const json = await cli('sessions', 'show', 'erin-long', '--json', '--data-dir', h.dataDir);
    expect(json.code).toBe(0);
    const shown = JSON.parse(json.stdout) as { session_id: string; exchanges: ExchangeView[] };
    expect(shown.exchanges.map((x) => x.id)).toEqual(recorded);
    // Written an exchange at a time (a long session may not fit one string), as the whole document would be.
    const views = await Promise.all(recorded.map(async (id) => (await readExchange(h.gateway.store, id))!));
    expect(json.stdout).toBe(`${JSON.stringify({ session_id: 'erin-long', exchanges: views }, null, 2)}\n`);
    const transcript = await cli('sessions', 'show', 'erin-long', '--data-dir', h.dataDir);
    expect(transcript.stdout).toContain('turn 0');
    expect(transcript.stdout).toContain('turn 22');
    expect(transcript.stdout).toBe(renderTranscript(views));
  });

  it('vigil sessions export writes a session, or a filtered set, with progress on long exports', async () => {
    const session = await cli('sessions', 'export', 'alice-1', '--data-dir', h.dataDir);
    expect(session.code).toBe(0);
    const lines = session.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as ExchangeView);
    for (const x of lines) expect(x).toEqual(await readExchange(h.gateway.store, x.id));

    const dir = mkdtempSync(path.join(tmpdir(), 'vigil-export-'));
    try {
      const out = path.join(dir, 'bots.md');
      const bulk = await cli(
        'sessions',
        'export',
        '--group',
        'robots',
        '--format',
        'markdown',
        '--out',
        out,
        '--data-dir',
        h.dataDir,
      );
      expect(bulk.code).toBe(0);
      expect(bulk.stderr).toContain('100 exchanges');
      expect(bulk.stderr).toMatch(/1000 exchanges written/);
      expect(statSync(out).mode & 0o777).toBe(0o600);
      const md = readFileSync(out, 'utf8');
      expect(md.match(/^## \d+\. /gm)).toHaveLength(1000);
      expect(md).toContain(NEEDLE);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect((await cli('sessions', 'export', 'no-such-session', '--data-dir', h.dataDir)).code).toBe(1);
  });
});

describe('without identity', () => {
  it('answers callers on this machine as admins, and logs their reads as the local admin they decide as', async () => {
    const local = await startHarness(() => ({ admin: { listen: '127.0.0.1:0' } }));
    try {
      await new Anthropic({ baseURL: local.url, apiKey: 'unused', maxRetries: 0 }).messages.create(
        { model: 'claude-opus-4-5', max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] },
        { headers: { 'x-vigil-session': 'local-1' } },
      );
      await local.session('local-1', 1);
      const base = `${local.gateway.adminUrl}/api/v1`;
      expect((await fetch(`${base}/sessions/local-1`)).status).toBe(200);
      const log = (await (await fetch(`${base}/access-log`)).json()) as Paged<AccessLogEntry>;
      expect(log.items[0]!.data).toMatchObject({
        actor: { method: 'local_user', subject: 'admin-api:localhost' },
        role: 'admin',
        what: 'session',
        address: expect.stringMatching(/127\.0\.0\.1/),
      });
    } finally {
      await local.close();
    }
  });

  it('refuses pages from elsewhere acting through a browser on this machine (DNS rebinding, cross-site requests)', async () => {
    const local = await startHarness(() => ({ admin: { listen: '127.0.0.1:0' } }));
    try {
      const admin = new URL(local.gateway.adminUrl!);
      const get = (path: string, headers: Record<string, string>, method = 'GET') =>
        new Promise<number>((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port: admin.port, path, method, headers }, (res) => {
            res.resume();
            resolve(res.statusCode!);
          });
          req.on('error', reject);
          req.end();
        });
      const port = admin.port;
      expect(await get('/api/v1/sessions', { host: `127.0.0.1:${port}` })).toBe(200);
      expect(await get('/api/v1/sessions', { host: `localhost:${port}`, origin: `http://localhost:${port}` })).toBe(
        200,
      );
      expect(await get('/api/v1/sessions', { host: `[::1]:${port}` })).toBe(200);
      // A rebinding attacker's page: its own name, resolved to 127.0.0.1.
      expect(await get('/api/v1/sessions', { host: `attacker.example:${port}` })).toBe(403);
      // …or a name of its own that merely starts like a loopback address.
      const lookalike = `127.0.0.1.attacker.example:${port}`;
      expect(await get('/api/v1/whoami', { host: lookalike, origin: `http://${lookalike}` })).toBe(403);
      expect(await get('/api/v1/whoami', { host: `127.0.0.1:${port}`, origin: 'http://127.x.attacker.example' })).toBe(
        403,
      );
      // A cross-site request from a page elsewhere, here trying to decide an approval.
      const crossSite = { host: `127.0.0.1:${port}`, origin: 'https://attacker.example' };
      expect(await get('/api/v1/approvals/apr_0123456789abcdef/approve', crossSite, 'POST')).toBe(403);
      expect(await get('/api/v1/sessions', { host: `127.0.0.1:${port}`, origin: 'null' })).toBe(403);
    } finally {
      await local.close();
    }
  });
});

// Last: the held call it makes would show up in the lists the tests above count.
describe('held calls', () => {
  it('shows a held call only to its caller and to those who may decide it, and logs who saw it', async () => {
    // Went wrong: any authenticated person could list every held call, prompt excerpts included, unlogged.
    const call = client(tokens.alice)
      .messages.create(
        { model: 'claude-haiku-4-5', max_tokens: 8000, messages: [{ role: 'user', content: 'the okapi budget plan' }] },
        { headers: { 'x-vigil-session': 'alice-held' } },
      )
      .catch((e: unknown) => e);
    type Listed = { items: Array<{ id: string; caller: { subject: string } }> };
    const id = await until(
      'a held call',
      async () => (await api<Listed>('/approvals', tokens.carol)).json.items[0]?.id,
    );
    expect((await api<Listed>('/approvals', tokens.bob)).json.items).toEqual([]); // neither his nor his to decide
    expect((await api(`/approvals/${id}`, tokens.bob)).status).toBe(404);
    expect((await api<Listed>('/approvals', tokens.alice)).json.items.map((a) => a.id)).toEqual([id]); // her own
    await api('/approvals', tokens.carol); // the same set again: not logged twice
    const log = await api<Paged<AccessLogEntry>>('/access-log?limit=1000', tokens.dave);
    const seen = log.json.items.filter((e) => e.data.what === 'approval' && e.data.ids.includes(id));
    expect(seen.map((e) => e.data.actor.subject).sort()).toEqual(['alice', 'carol']);
    const denied = await fetch(`${admin}/api/v1/approvals/${id}/deny`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.carol}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'not this quarter' }),
    });
    expect(denied.status).toBe(200);
    expect(await call).toMatchObject({ status: 403 });
  });
});
