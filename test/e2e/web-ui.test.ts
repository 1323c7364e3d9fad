/**
 * The web UI end to end: real gateways record traffic from the official SDK (a streamed tool call, plain calls, a
 * prompt full of markup), then Debian's headless chromium, driven by playwright-core, reads it back through `/ui/`
 * the way a person would. One gateway has no identity (loopback callers are admins, no sign-in); the other has an
 * admin token and an approval rule (sign-in first, then a held call approved from the page).
 */
import Anthropic from '@anthropic-ai/sdk';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OUTCOMES } from '../../src/admin/query-params.js';
import { UI_SECURITY_HEADERS } from '../../src/admin/ui-assets.js';
import { createGatewayKey } from '../../src/identity/key-admin.js';
import { roleOf, turnStart } from '../../src/recorder/exchange-turn.js';
import type { AccessLogEntry } from '../../src/store/audit-store.js';
import { CLIENT_KEY, clientHeaders, startHarness, type Harness } from '../support/gateway-harness.js';
import { startOidcProvider, type OidcTestProvider } from '../support/oidc-provider.js';

const CHROMIUM = '/usr/bin/chromium';
const ADMIN_TOKEN = 'web-ui-admin-token-0123456789abcdefghij';
const AUDITOR_TOKEN = 'web-ui-auditor-token-0123456789abcdefgh';
const XSS = '<img src=x onerror="window.__xss=1"> and <script>window.__xss=2</script> please';

let browser: Browser;
let open: Harness; // no identity: loopback callers are admins
let guarded: Harness; // an admin token and an approval rule; reloadable, with this retention window
let guardedRetention = 'forever';
const contexts: BrowserContext[] = [];
/** Uncaught errors and CSP violations in any page: there must be none. */
const pageProblems: string[] = [];

const sdk = (h: Harness): Anthropic => new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
const inSession = (id: string) => ({ headers: { 'x-vigil-session': id } });

async function newPage(): Promise<Page> {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  contexts.push(context);
  const page = await context.newPage();
  page.on('pageerror', (err) => pageProblems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (/Content Security Policy/i.test(msg.text())) pageProblems.push(`csp: ${msg.text()}`);
  });
  return page;
}

/** A raw GET, the path sent exactly as given (fetch would normalise `..` away before sending). */
function rawGet(base: string, path: string): Promise<{ status: number; headers: Record<string, unknown> }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, path, method: 'GET' }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** An object where recorded text belongs, with keys every JavaScript object has (a `toString` that is no function). */
const ODD = '{"toString":"t","valueOf":"v","__proto__":{"p":1},"constructor":"c"}';
/** How the page shows {@link ODD}: its JSON (JSON.parse makes `__proto__` an own key, so it stays). */
const ODD_TEXT = JSON.stringify(JSON.parse(ODD));

/**
 * An upstream answering what no real API sends but a recording may hold anyway: {@link ODD} as a block's text, a
 * tool's name and id and input, a block's type; with `x-odd: error`, an error whose type is {@link ODD}.
 */
async function startOddUpstream(): Promise<{ url: string; close(): Promise<void> }> {
  const message =
    `{"id":"msg_odd","type":"message","role":"assistant","model":"odd-model","content":[` +
    `{"type":"text","text":${ODD}},{"type":"tool_use","id":${ODD},"name":${ODD},"input":${ODD}},` +
    `{"type":"image","source":{"media_type":${ODD}}},{"type":${ODD}}],` +
    `"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}`;
  const error = `{"type":"error","error":{"type":${ODD},"message":"refused"}}`;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const failing = req.headers['x-odd'] === 'error';
      res.writeHead(failing ? 400 : 200, { 'content-type': 'application/json' });
      res.end(failing ? error : message);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

beforeAll(async () => {
  process.env.VIGIL_TEST_UI_ADMIN_TOKEN = ADMIN_TOKEN;
  process.env.VIGIL_TEST_UI_AUDITOR_TOKEN = AUDITOR_TOKEN;
  [browser, open, guarded] = await Promise.all([
    chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // No internet here: without these chromium stalls on its own background fetches. playwright-core gives each
      // launch a fresh temporary profile (user-data-dir).
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    }),
    startHarness((upstream) => ({
      connections: [
        {
          name: 'anthropic',
          upstream,
          credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
          limits: [{ name: 'hourly', window: '1h', tokens: 1_000_000, requests: 1_000, cost: 1_000 }],
        },
      ],
      admin: { listen: '127.0.0.1:0' },
      // Priced dearly, so that the few tokens of the fake upstream come to more than a cent.
      pricing: { currency: 'EUR', models: [{ model: 'claude*', input: 3000, output: 15000 }] },
    })),
    startHarness(
      (upstream) => ({
        connections: [
          {
            name: 'anthropic',
            upstream,
            credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
            approvals: [{ name: 'large answers', action: 'hold', when: { max_tokens_above: 4096 }, timeout: '30s' }],
          },
        ],
        admin: {
          listen: '127.0.0.1:0',
          tokens: [
            { name: 'oncall', role: 'admin', token: { env: 'VIGIL_TEST_UI_ADMIN_TOKEN' } },
            { name: 'review', role: 'auditor', token: { env: 'VIGIL_TEST_UI_AUDITOR_TOKEN' } },
          ],
        },
        retention: { default: guardedRetention },
      }),
      {},
      { reloadable: true },
    ),
  ]);

  const client = sdk(open);
  const tools = [
    {
      name: 'get_weather',
      description: 'Weather for a city',
      input_schema: { type: 'object' as const, properties: { city: { type: 'string' } } },
    },
  ];
  const ask = 'What is the weather in Reykjavik? [[tool:get_weather {"city":"Reykjavik"}]]';
  // Cached as Claude Code caches its system prompt: the first call writes the cache, the second reads it.
  const system = [
    {
      type: 'text' as const,
      text: 'You answer about the weather. '.repeat(40),
      cache_control: { type: 'ephemeral' as const },
    },
  ];
  const first = await client.messages
    .stream(
      { model: 'claude-opus-4-5', max_tokens: 300, system, tools, messages: [{ role: 'user', content: ask }] },
      inSession('ui-tools'),
    )
    .finalMessage();
  const toolUse = first.content.find((b) => b.type === 'tool_use');
  await client.messages.create(
    {
      model: 'claude-opus-4-5',
      max_tokens: 300,
      system,
      tools,
      messages: [
        { role: 'user', content: ask },
        { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: toolUse!.id, content: 'Sleet, 2 °C' }] },
      ],
    },
    inSession('ui-tools'),
  );
  await client.messages.create(
    {
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'Describe the axolotl habitat' }],
    },
    inSession('ui-plain'),
  );
  await client.messages.create(
    { model: 'claude-haiku-4-5', max_tokens: 50, messages: [{ role: 'user', content: XSS }] },
    inSession('ui-xss'),
  );
  await sdk(guarded).messages.create(
    { model: 'claude-haiku-4-5', max_tokens: 50, messages: [{ role: 'user', content: 'hello from the guarded side' }] },
    inSession('guarded-1'),
  );
  await Promise.all([
    open.session('ui-tools', 2),
    open.session('ui-plain', 1),
    open.session('ui-xss', 1),
    guarded.session('guarded-1', 1),
  ]);
}, 30_000);

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
  await Promise.all([open?.close(), guarded?.close()]);
  delete process.env.VIGIL_TEST_UI_ADMIN_TOKEN;
  delete process.env.VIGIL_TEST_UI_AUDITOR_TOKEN;
});

describe('serving /ui/', () => {
  it('serves the UI with strict security headers, redirects / to it, and revalidates with ETags', async () => {
    const admin = open.gateway.adminUrl!;
    const root = await fetch(`${admin}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/ui/');

    const index = await fetch(`${admin}/ui/`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(index.headers.get('content-security-policy')).toBe(
      "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    expect(index.headers.get('x-content-type-options')).toBe('nosniff');
    expect(index.headers.get('referrer-policy')).toBe('no-referrer');
    expect(index.headers.get('cache-control')).toBe('no-cache');
    const html = await index.text();
    // No inline code: the only script is a module from this origin.
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/\sstyle=|<style|\son\w+=/i);

    const js = await fetch(`${admin}/ui/app.js`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    const etag = js.headers.get('etag')!;
    const again = await fetch(`${admin}/ui/app.js`, { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect((await fetch(`${admin}/ui/style.css`)).headers.get('content-type')).toBe('text/css; charset=utf-8');
  });

  it('answers 404 for anything but its own files, however the path is spelled', async () => {
    const admin = open.gateway.adminUrl!;
    for (const path of [
      '/ui/../package.json',
      '/ui/%2e%2e/package.json',
      '/ui/..%2fpackage.json',
      '/ui/..%2F..%2Fpackage.json',
      '/ui/../src/admin/ui-assets.ts',
      '/ui/nope.js',
      '/ui/ui-assets.ts',
      '/ui//etc/passwd',
      '/ui/index.html/',
    ]) {
      const res = await rawGet(admin, path);
      expect({ path, status: res.status }).toEqual({ path, status: 404 });
    }
    const missing = await rawGet(admin, '/ui/nope.js');
    expect(missing.headers['content-security-policy']).toBe(UI_SECURITY_HEADERS['content-security-policy']);
    expect((await fetch(`${admin}/ui/app.js`, { method: 'POST' })).status).toBe(405);
  });

  it('GET /api/v1/whoami names the caller and their role', async () => {
    const admin = guarded.gateway.adminUrl!;
    expect((await fetch(`${admin}/api/v1/whoami`)).status).toBe(401);
    const me = await fetch(`${admin}/api/v1/whoami`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(await me.json()).toEqual({ role: 'admin', reader: { method: 'admin_token', subject: 'oncall' } });
    const local = await fetch(`${open.gateway.adminUrl}/api/v1/whoami`);
    expect(await local.json()).toEqual({
      role: 'admin',
      reader: { method: 'local_user', subject: 'admin-api:localhost' },
    });
  });
});

describe('reading recordings (no identity configured: this machine is admin)', () => {
  let page: Page;
  beforeAll(async () => {
    page = await newPage();
  });

  it('lists sessions newest first and opens a transcript with the answer and the tool call', async () => {
    await page.goto(`${open.gateway.adminUrl}/`);
    await page.getByRole('heading', { name: 'Sessions' }).waitFor();
    const rows = page.locator('table.sessions tbody tr');
    await expect.poll(() => rows.count()).toBe(3);
    expect(await rows.locator('td:first-child').allTextContents()).toEqual(['ui-xss', 'ui-plain', 'ui-tools']);
    const tools = page.locator('tr[data-session="ui-tools"]');
    await expect.poll(() => tools.locator('td').nth(3).textContent()).toBe('claude-opus-4-5');
    expect(await tools.locator('td').nth(4).textContent()).toBe('2');
    // Verifying the whole store is on demand, never on page load (it rehashes every record).
    expect(await page.locator('header .badge.ok').count()).toBe(0);
    await page.getByRole('button', { name: 'Verify store' }).click();
    await expect.poll(() => page.locator('header .badge.ok').textContent()).toMatch(/^Store OK/);
    expect(await page.locator('#who').textContent()).toContain('local admin');

    await tools.getByRole('link', { name: 'ui-tools' }).click();
    await page.waitForURL(/#\/sessions\/ui-tools$/);
    const cards = page.locator('article.exchange-card');
    await expect.poll(() => cards.count()).toBe(2);
    const first = cards.nth(0);
    expect(await first.locator('.turn.user').textContent()).toContain('What is the weather in Reykjavik?');
    expect(await first.locator('.tool-name').textContent()).toBe('get_weather');
    expect(await first.locator('.tool-use pre').textContent()).toContain('"city": "Reykjavik"');
    expect(await first.textContent()).toContain('(stream)');
    const second = cards.nth(1);
    expect(await second.locator('.tool-result').textContent()).toContain('Sleet, 2 °C');
    expect(await second.locator('.turn.assistant').textContent()).toContain('Tool result received');
    // The second call read what the first wrote to the cache.
    expect(await first.textContent()).toMatch(/in [\d,]+ \(of which writes [\d,]+\) · out [\d,]+/);
    expect(await second.textContent()).toMatch(/in [\d,]+ \(of which cache reads [\d,]+\) · out [\d,]+/);
    // What the session cost, by the config's pricing, as the API adds it up; the cache's part of the input apart.
    const { session } = (await (await fetch(`${open.gateway.adminUrl}/api/v1/sessions/ui-tools`)).json()) as {
      session: {
        cost: number;
        cacheReadTokens: number;
        cacheWriteTokens: number;
        inputTokens: number;
        outputTokens: number;
      };
    };
    expect(session.cost).toBeGreaterThan(0.01);
    const fact = (label: string) => page.locator(`dl.session-facts dt:text-is("${label}") + dd`);
    expect(await fact('Cost').textContent()).toBe(`${session.cost.toFixed(2)} EUR`);
    // Each exchange's line counts input as the totals do (all of it, the cache's part among it): they add up.
    const cardInputs = await cards
      .locator('dl.facts dt:text-is("Tokens") + dd')
      .evaluateAll((dds) =>
        dds.map((dd) => Number(/^in ([\d,]+)/.exec(dd.textContent ?? '')![1]!.replaceAll(',', ''))),
      );
    expect(cardInputs.reduce((a, b) => a + b, 0)).toBe(session.inputTokens);
    const n = (x: number) => x.toLocaleString('en-US');
    expect(session.cacheReadTokens).toBeGreaterThan(0);
    expect(session.cacheWriteTokens).toBeGreaterThan(0);
    expect(await fact('Tokens').textContent()).toBe(
      `in ${n(session.inputTokens)} (of which cache reads ${n(session.cacheReadTokens)}, ` +
        `writes ${n(session.cacheWriteTokens)}) · out ${n(session.outputTokens)}`,
    );

    // Reload keeps the view; back returns to the list.
    await page.reload();
    await expect.poll(() => cards.count()).toBe(2);
    await page.goBack();
    await page.getByRole('heading', { name: 'Sessions' }).waitFor();
  });

  it('lists sessions with one request per page, not one more per row', async () => {
    // Each row asked /exchanges for its callers, models and outcomes: a page of 50 sessions cost 51 requests.
    const fresh = await newPage();
    const asked: string[] = [];
    fresh.on('request', (r) => {
      const { pathname } = new URL(r.url());
      if (pathname.startsWith('/api/v1/')) asked.push(pathname);
    });
    await fresh.goto(`${open.gateway.adminUrl}/ui/#/sessions`);
    const tools = fresh.locator('tr[data-session="ui-tools"]');
    await expect.poll(() => tools.locator('td').nth(7).textContent()).toBe('ok 2 ');
    expect(await tools.locator('td').nth(1).textContent()).toBe('anonymous');
    expect(await tools.locator('td').nth(3).textContent()).toBe('claude-opus-4-5');
    expect(asked.filter((p) => p === '/api/v1/sessions')).toHaveLength(1);
    expect(asked.filter((p) => p.startsWith('/api/v1/exchanges'))).toEqual([]);
  });

  it('offers the outcomes the server accepts, as the server lists them', async () => {
    // The UI kept its own copy of the server's outcome list, bound to fall behind it.
    const served = (await (await fetch(`${open.gateway.adminUrl}/api/v1/ui-config`)).json()) as { outcomes: string[] };
    expect(served.outcomes).toEqual(OUTCOMES);
    const fresh = await newPage();
    await fresh.route('**/api/v1/ui-config', async (route) => {
      const response = await route.fetch();
      const json = (await response.json()) as { outcomes: string[] };
      await route.fulfill({ response, json: { ...json, outcomes: [...json.outcomes, 'a_new_outcome'] } });
    });
    await fresh.goto(`${open.gateway.adminUrl}/ui/#/sessions`);
    const options = fresh.locator('select[name="outcome"] option');
    // A fresh page loads every asset cold: under a full suite that can take longer than poll's 1 s default.
    await expect
      .poll(() => options.allTextContents(), { timeout: 10_000 })
      .toEqual(['any', ...OUTCOMES, 'a_new_outcome']);
  });

  it('filters the session list through the API', async () => {
    await page.goto(`${open.gateway.adminUrl}/ui/#/sessions`);
    await page.locator('input[name="model"]').fill('claude-haiku-4-5');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/model=claude-haiku-4-5/);
    const rows = page.locator('table.sessions tbody tr');
    await expect.poll(() => rows.locator('td:first-child').allTextContents()).toEqual(['ui-xss', 'ui-plain']);
    // Why answers stopped: every answer so far ended its turn or called a tool, none was declined.
    await page.locator('input[name="model"]').fill('');
    await page.getByLabel('Stop reason').fill('tool_use');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/stop_reason=tool_use/);
    await expect.poll(() => rows.locator('td:first-child').allTextContents()).toEqual(['ui-tools']);
    await page.getByLabel('Stop reason').fill('refusal');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByText('No sessions match these filters.').waitFor();
    await page.getByLabel('Stop reason').fill('');
    await page.locator('input[name="caller"]').fill('nobody-at-all');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByText('No sessions match these filters.').waitFor();
  });

  it('shows usage by model and by day, each row leading to the sessions it adds up', async () => {
    await page.goto(`${open.gateway.adminUrl}/ui/#/usage`);
    await page.getByRole('heading', { name: 'Usage', exact: true }).waitFor();
    const rows = page.locator('table.usage tbody tr');
    // By caller (no identity configured: every call is anonymous's).
    await expect.poll(() => rows.locator('td:first-child').allTextContents()).toEqual(['anonymous']);
    // Above the report, the connection's limit and what is used of it, as the gateway counts it.
    const limits = (await (await fetch(`${open.gateway.adminUrl}/api/v1/limits`)).json()) as {
      items: Array<{ name: string; usage: Array<{ caller: string; tokens: number; requests: number; cost: number }> }>;
    };
    expect(limits.items).toMatchObject([{ name: 'hourly', usage: [{ caller: 'anonymous' }] }]);
    const used = limits.items[0]!.usage[0]!;
    expect(used.requests).toBeGreaterThan(0);
    const limitRow = page.locator('table.limits tbody tr');
    expect(await limitRow.locator('td').allTextContents()).toEqual([
      'anthropic · hourly (1h)',
      'anonymous',
      `${used.tokens.toLocaleString('en-US')} of 1,000,000`,
      `${used.requests.toLocaleString('en-US')} of 1,000`,
      `${used.cost.toFixed(2)} of 1000.00 EUR`,
      '',
    ]);
    expect(used.cost).toBeGreaterThan(0);
    await page.getByLabel('By').selectOption('model');
    await page.getByRole('button', { name: 'Show' }).click();
    await page.waitForURL(/by=model/);
    const api = (await (await fetch(`${open.gateway.adminUrl}/api/v1/usage?by=model`)).json()) as {
      items: Array<{ key: string; exchanges: number; cacheReadTokens: number; cost: number }>;
    };
    await expect.poll(() => rows.locator('td:first-child').allTextContents()).toEqual(api.items.map((r) => r.key));
    expect(await rows.first().locator('td:nth-child(2)').textContent()).toBe(String(api.items[0]!.exchanges));
    // Cache reads and writes apart, and the cost by the config's pricing, to the cent.
    expect(await page.locator('table.usage thead th').allTextContents()).toEqual([
      'Model',
      'Exchanges',
      'Input tokens',
      'Cache reads',
      'Cache writes',
      'Output tokens',
      'Cost (EUR)',
      'Failed',
      'Refused',
      'In progress',
    ]);
    const first = api.items[0]!;
    expect(first.cost).toBeGreaterThan(0.01);
    expect(await rows.first().locator('td:nth-child(4)').textContent()).toBe(
      first.cacheReadTokens.toLocaleString('en-US'),
    );
    expect(await rows.first().locator('td.cost').textContent()).toBe(first.cost.toFixed(2));
    // A hint not given leaves nothing behind (the page printed "null" under the table).
    expect(await page.locator('#view').textContent()).not.toContain('null');
    // By group: every caller here is anonymous, in no group: one row, said so.
    await page.getByLabel('By').selectOption('group');
    await page.getByRole('button', { name: 'Show' }).click();
    await page.waitForURL(/by=group/);
    await expect.poll(() => rows.locator('td:first-child').allTextContents()).toEqual(['no group']);
    await page.getByLabel('By').selectOption('day');
    await page.getByRole('button', { name: 'Show' }).click();
    // The days as the API has them (a run across midnight UTC has two).
    const days = (await (await fetch(`${open.gateway.adminUrl}/api/v1/usage?by=day`)).json()) as {
      items: Array<{ key: string }>;
    };
    await expect.poll(() => rows.locator('td:first-child').allTextContents()).toEqual(days.items.map((r) => r.key));
    const today = days.items[0]!.key;
    // A day's row leads to that day's sessions.
    await rows.first().getByRole('link', { name: today }).click();
    await page.waitForURL(new RegExp(`#/sessions\\?since=${today}`));
    await expect.poll(() => page.locator('table.sessions tbody tr').count()).toBeGreaterThan(0);
  });

  it('shows an exchange with its request, response and the recorded stream events', async () => {
    const [streamed] = await open.session('ui-tools', 2);
    await page.goto(`${open.gateway.adminUrl}/ui/#/sessions/ui-tools`);
    await page.locator('article.exchange-card').first().getByRole('link', { name: 'Exchange details' }).click();
    await page.waitForURL(new RegExp(`#/exchanges/${streamed!.id}$`));
    await page.getByRole('heading', { name: `Stream events (${streamed!.response.events.length})` }).waitFor();
    const types = await page.locator('table.events tbody tr td:nth-child(2)').allTextContents();
    expect(types).toEqual(streamed!.response.events.map((e) => e.type));
    expect(types).toContain('message_start');
    expect(types).toContain('content_block_delta');
    expect(types.at(-1)).toBe('message_stop');
    expect(await page.locator('section.request').textContent()).toContain('POST /v1/messages');
    expect(await page.locator('section.response .tool-name').textContent()).toBe('get_weather');
  });

  it('ends a plain exchange’s page with its response body, not a stray "null"', async () => {
    // The exchange view handed a null (no stream events) to replaceChildren, which printed it as text.
    const [plain] = await open.session('ui-plain', 1);
    await page.goto(`${open.gateway.adminUrl}/ui/#/exchanges/${plain!.id}`);
    await page.locator('section.response').waitFor();
    expect(await page.locator('#view').textContent()).not.toMatch(/null\s*$/);
    expect(await page.locator('#view > *').last().getAttribute('class')).toBe('response');
  });

  it('searches, highlights the match and opens the exchange it came from', async () => {
    const [plain] = await open.session('ui-plain', 1);
    await page.goto(`${open.gateway.adminUrl}/ui/#/search`);
    await page.getByRole('searchbox', { name: 'Search query' }).fill('axolotl');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/#\/search\?q=axolotl$/);
    const hit = page.locator('li.hit');
    await expect.poll(() => hit.count()).toBe(1);
    expect(await hit.locator('mark').first().textContent()).toBe('axolotl');
    expect(await hit.locator('.snippet').textContent()).not.toContain('«');
    await hit.locator('.snippet').click();
    await page.waitForURL(new RegExp(`#/exchanges/${plain!.id}$`));
    await page.getByRole('heading', { name: `Exchange ${plain!.id}` }).waitFor();
  });

  it('exports a session as JSONL: the download holds what the API exports', async () => {
    await page.goto(`${open.gateway.adminUrl}/ui/#/sessions/ui-tools`);
    await page.locator('article.exchange-card').first().waitFor();
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export JSONL' }).click(),
    ]);
    expect(download.suggestedFilename()).toBe('session-ui-tools.jsonl');
    const text = readFileSync((await download.path())!, 'utf8');
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string });
    expect(lines).toHaveLength(2);
    const fromApi = await (await fetch(`${open.gateway.adminUrl}/api/v1/sessions/ui-tools/export?format=jsonl`)).text();
    expect(lines).toEqual(
      fromApi
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as unknown),
    );
  });

  it('verifies a session on request', async () => {
    await page.goto(`${open.gateway.adminUrl}/ui/#/sessions/ui-plain`);
    await page.getByRole('button', { name: 'Verify session' }).click();
    await expect
      .poll(() => page.locator('.verify-result').textContent())
      .toMatch(/^Verified: \d+ records of 1 exchanges/);
  });

  it('renders recorded markup as literal text: nothing runs', async () => {
    await page.goto(`${open.gateway.adminUrl}/ui/#/sessions/ui-xss`);
    const card = page.locator('article.exchange-card');
    await card.waitFor();
    expect(await card.locator('.turn.user').textContent()).toContain(XSS);
    expect(await card.locator('.turn.assistant').textContent()).toContain(XSS); // the fake echoes it back
    expect(await page.locator('main img, main script').count()).toBe(0);
    // And the search snippet of it, and the exchange view.
    await page.goto(`${open.gateway.adminUrl}/ui/#/search?q=onerror`);
    await page.locator('li.hit mark').first().waitFor();
    expect(await page.locator('main img, main script').count()).toBe(0);
    await page.locator('li.hit .snippet').click();
    await page.locator('section.request').waitFor();
    expect(await page.locator('main img, main script').count()).toBe(0);
    expect(await page.evaluate(() => (globalThis as { __xss?: unknown }).__xss)).toBeUndefined();
  });

  it('shows the access log of those reads', async () => {
    await page.goto(`${open.gateway.adminUrl}/ui/#/access-log`);
    const rows = page.locator('table.access-log tbody tr');
    await expect.poll(() => rows.count()).toBeGreaterThan(3);
    const whats = await rows.locator('td:nth-child(4)').allTextContents();
    expect(whats).toEqual(expect.arrayContaining(['session', 'exchange', 'search', 'export']));
    // The local admin, as it decides approvals (it used to read as `anonymous`, the proxy's local callers).
    expect(await rows.first().locator('td:nth-child(2)').textContent()).toBe('admin-api:localhost');
  });

  it('shows the API’s message when something is not there, and empty states', async () => {
    await page.goto(`${open.gateway.adminUrl}/ui/#/sessions/no-such-session`);
    await expect.poll(() => page.getByRole('alert').textContent()).toBe('404: no session "no-such-session"');
    await page.goto(`${open.gateway.adminUrl}/ui/#/approvals`);
    await page.getByText('Nothing is waiting for approval.').waitFor();
    await page.goto(`${open.gateway.adminUrl}/ui/#/search?q=zzyzzxnotthere`);
    await page.getByText('Nothing recorded matches zzyzzxnotthere.').waitFor();
  });

  it('shows an error, not a blank page, for an address that does not decode', async () => {
    // The router decoded the hash outside any try: decodeURIComponent('%E0') threw a URIError and left the page empty.
    await page.goto(`${open.gateway.adminUrl}/ui/#/sessions/%E0`);
    await expect.poll(() => page.getByRole('alert').textContent()).toBe('Not a valid address: #/sessions/%E0');
    // And the next link works again.
    await page.getByRole('link', { name: 'Sessions' }).first().click();
    await page.getByRole('heading', { name: 'Sessions' }).waitFor();
  });
});

describe('with identity configured', () => {
  let page: Page;
  beforeAll(async () => {
    page = await newPage();
  });

  it('asks for a token first, refuses a bad one with the API’s message, and accepts an admin token', async () => {
    await page.goto(`${guarded.gateway.adminUrl}/ui/`);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    expect(await page.getByRole('alert').textContent()).toContain('missing credential');
    const token = page.getByLabel('Token');
    await token.fill('not-a-real-token-but-long-enough-to-try');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('unknown admin token');
    expect(await page.evaluate(() => sessionStorage.getItem('vigil.token'))).toBeNull();

    await token.fill(ADMIN_TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Sessions' }).waitFor();
    await page.locator('tr[data-session="guarded-1"]').waitFor();
    expect(await page.locator('#who').textContent()).toMatch(/token oncall\s*admin/);
    // The token is this tab's only: in sessionStorage, never localStorage.
    expect(await page.evaluate(() => sessionStorage.getItem('vigil.token'))).toBe(ADMIN_TOKEN);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
  });

  it('shows a held call on the approvals page; Approve lets the client’s call complete', async () => {
    const call = sdk(guarded).messages.create(
      {
        model: 'claude-haiku-4-5',
        max_tokens: 8000,
        messages: [{ role: 'user', content: 'a very long essay please' }],
      },
      inSession('guarded-held'),
    );
    let settled = false;
    void call.then(
      () => (settled = true),
      () => (settled = true),
    );
    await page.getByRole('link', { name: 'Approvals' }).click();
    const card = page.locator('article.approval');
    await card.waitFor({ timeout: 10_000 });
    expect(await card.locator('header').textContent()).toContain('large answers');
    expect(await card.textContent()).toContain('a very long essay please');
    expect(await card.textContent()).toContain('8000');
    expect(settled).toBe(false);

    // A refused decision shows the API's reason and leaves the call held.
    await card.getByRole('button', { name: 'Deny' }).click();
    await expect.poll(() => card.getByRole('alert').textContent()).toContain('a denial needs a reason');
    expect(settled).toBe(false);

    await card.getByLabel('Reason').fill('budget ok');
    await card.getByRole('button', { name: 'Approve' }).click();
    const msg = await call;
    expect(msg.content[0]).toMatchObject({ type: 'text', text: 'Echo: a very long essay please' });
    await expect.poll(() => card.locator('.decision').textContent()).toContain('Approved');
    // The next refresh finds nothing pending.
    await page.getByText('Nothing is waiting for approval.').waitFor({ timeout: 5000 });
  });

  it('lists reads of approvals in the access log without a link to an exchange that does not exist', async () => {
    // An approval's id was linked as an exchange's (#/exchanges/<approval id>), a page that answers 404.
    await page.getByRole('link', { name: 'Access log' }).click();
    const row = page.locator('table.access-log tbody tr', {
      has: page.locator('td:nth-child(4)', { hasText: /^approval$/ }),
    });
    await expect.poll(() => row.count()).toBeGreaterThan(0);
    const which = row.first().locator('td:nth-child(5)');
    expect(await which.textContent()).toMatch(/^apr_\S+ $/);
    expect(await which.locator('a').count()).toBe(0);
    await page.getByRole('link', { name: 'Approvals' }).click();
  });

  it('signs out: the token is gone and sign-in is asked again, without an error', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem('vigil.token'))).toBeNull();
    // Signing out used to greet the person with "401: missing credential", as if something had gone wrong.
    expect(await page.getByRole('alert').count()).toBe(0);
  });

  it('drops a store verify still running when the person signs out: its answer is not drawn after', async () => {
    // The answer came after sign-out and was drawn in the header of the signed-out page.
    const own = await newPage();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let answered!: Promise<unknown>;
    const asked = new Promise<void>((resolve) => {
      void own.route(
        (url) => url.pathname === '/api/v1/verify',
        (route) => {
          resolve();
          answered = (async () => {
            const response = await route.fetch();
            await held;
            // The page cancelled the request: fulfilling it fails, which is the point.
            await route.fulfill({ response }).catch((err: unknown) => err);
          })();
        },
      );
    });
    await own.goto(`${guarded.gateway.adminUrl}/ui/`);
    await own.getByLabel('Token').fill(ADMIN_TOKEN);
    await own.getByRole('button', { name: 'Sign in' }).click();
    await own.getByRole('button', { name: 'Verify store' }).click();
    await asked;
    expect(await own.locator('#verify').textContent()).toBe('Store: verifying…');
    await own.getByRole('button', { name: 'Sign out' }).click();
    await own.getByRole('heading', { name: 'Sign in' }).waitFor();
    expect(await own.locator('#verify').textContent()).toBe('');

    release();
    await answered;
    // Time for a stale answer to be drawn, had it been let through (it took a few milliseconds).
    await own.waitForTimeout(300);
    expect(await own.locator('#verify').textContent()).toBe('');
    expect(await own.getByRole('heading', { name: 'Sign in' }).count()).toBe(1);

    // Signed in again, verifying works as before.
    await own.unroute((url) => url.pathname === '/api/v1/verify');
    await own.getByLabel('Token').fill(ADMIN_TOKEN);
    await own.getByRole('button', { name: 'Sign in' }).click();
    await own.getByRole('button', { name: 'Verify store' }).click();
    await expect
      .poll(() => own.locator('#verify').textContent(), { timeout: 10_000 })
      .toMatch(/^Store OK · \d+ records$/);
  });

  it('creates a gateway key, shows it once, rotates it and revokes it: the keys work, then are refused', async () => {
    const page = await newPage();
    await page.goto(`${guarded.gateway.adminUrl}/ui/#/keys`);
    await page.getByLabel('Token').fill(ADMIN_TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Gateway keys' }).waitFor();
    await page.getByLabel('Name').fill('ui-made');
    await page.getByLabel('Connections').fill('anthropic');
    await page.getByLabel('Expires').fill('1d');
    await page.getByRole('button', { name: 'Create key' }).click();
    const shown = page.getByLabel('New key');
    await shown.waitFor();
    const key = (await shown.textContent())!;
    expect(key).toMatch(/^vgk_/);
    const row = page.locator('tr[data-key="ui-made"]');
    await row.waitFor();
    expect(await row.locator('td').allTextContents()).toEqual(
      expect.arrayContaining(['ui-made', 'live', 'admin-token:oncall', 'anthropic']),
    );
    // The service calls with it.
    await new Anthropic({ baseURL: guarded.url, apiKey: key, maxRetries: 0 }).messages.create(
      { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] },
      inSession('ui-key'),
    );
    // A second key by the same name is refused with the API's message.
    await page.getByLabel('Name').fill('ui-made');
    await page.getByRole('button', { name: 'Create key' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('a live key named "ui-made" exists');
    // Rotate, answering the browser's question with an overlap: a new key, shown once; the old one still works.
    let asked = '';
    page.once('dialog', (d) => {
      asked = d.message();
      void d.accept('2h');
    });
    await row.getByRole('button', { name: 'Rotate' }).click();
    await expect.poll(() => shown.textContent()).not.toBe(key);
    expect(asked).toMatch(/^Rotate key "ui-made": a new key of the same name/);
    const next = (await shown.textContent())!;
    expect(next).toMatch(/^vgk_/);
    expect(await page.locator('.key-result').textContent()).toMatch(/Key "ui-made" rotated: the old one \(key_/);
    const rows = page.locator('tr[data-key="ui-made"]');
    await expect.poll(() => rows.count()).toBe(2);
    const old = rows.filter({ hasText: '(rotated)' });
    // Until when, as a date (a time element whose ISO value is the end of the 2 h overlap), not an object's name.
    expect(await old.locator('td:nth-child(2)').textContent()).toMatch(/^live until \d.* \(rotated\)$/);
    const until = Date.parse((await old.locator('td:nth-child(2) time').getAttribute('datetime'))!);
    expect(until - Date.now()).toBeGreaterThan(115 * 60_000);
    expect(until - Date.now()).toBeLessThanOrEqual(120 * 60_000);
    expect(await old.getByRole('button', { name: 'Rotate' }).count()).toBe(0);
    const ask = (apiKey: string) =>
      new Anthropic({ baseURL: guarded.url, apiKey, maxRetries: 0 }).messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'hi' }],
      });
    await ask(next);
    await ask(key);
    // Revoke the name, confirming the browser's question: both keys are refused.
    page.once('dialog', (d) => void d.accept());
    await rows.filter({ hasNotText: '(rotated)' }).getByRole('button', { name: 'Revoke' }).click();
    await expect.poll(() => rows.locator('td:nth-child(2)').allTextContents()).toEqual(['revoked', 'revoked']);
    for (const k of [key, next]) {
      const refused = await ask(k).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(Anthropic.AuthenticationError);
    }
  });

  it('shows the config running, reloads it on request, and lists each reload with who asked', async () => {
    const page = await newPage();
    await page.goto(`${guarded.gateway.adminUrl}/ui/#/config`);
    await page.getByLabel('Token').fill(ADMIN_TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Config' }).waitFor();
    const sha = page.getByLabel('Running config SHA-256');
    await expect.poll(() => sha.textContent()).toMatch(/^[0-9a-f]{64}$/);
    const before = (await sha.textContent())!;
    // When it was applied (start-up here), as a date; no word of a refused reload.
    const applied = page.locator('dl.facts dd').nth(1);
    expect(await applied.textContent()).toMatch(/^\d/);
    expect(await applied.locator('time').count()).toBe(1);
    expect(await page.locator('dl.facts').textContent()).not.toContain('refused');
    // The config file changes (here: a retention window), and an admin applies it from the page.
    guardedRetention = '3650d';
    await page.getByRole('button', { name: 'Reload config' }).click();
    await expect.poll(() => page.locator('.reload-result').textContent()).toBe('Config reloaded: retention.');
    await expect.poll(() => sha.textContent()).not.toBe(before);
    const row = page.locator('table.reloads tbody tr').first();
    expect(await row.locator('td').allTextContents()).toEqual([
      expect.any(String),
      'token oncall',
      'retention',
      (await sha.textContent())!.slice(0, 12),
    ]);
    // One the gateway refuses: the API's message, and the page says the config pushed is not the one running.
    guardedRetention = 'someday';
    await page.getByRole('button', { name: 'Reload config' }).click();
    await expect
      .poll(() => page.getByRole('alert').textContent())
      .toMatch(/^400: invalid configuration:\s+- retention\.default/);
    await expect.poll(() => page.locator('dl.facts').textContent()).toContain('refused — the config pushed is not');
    guardedRetention = '3650d';
  });

  it('shows an auditor only the access log’s refusal, no empty table', async () => {
    // The 403 used to sit under the header of an empty table.
    const auditor = await newPage();
    await auditor.goto(`${guarded.gateway.adminUrl}/ui/#/access-log`);
    await auditor.getByLabel('Token').fill(AUDITOR_TOKEN);
    await auditor.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => auditor.getByRole('alert').textContent()).toMatch(/^403: /);
    expect(await auditor.locator('table.access-log').isVisible()).toBe(false);
  });
});

describe('signing in with the OpenID provider (authorization code + PKCE)', () => {
  let idp: OidcTestProvider;
  let sso: Harness; // admin.ui.oidc names the provider and the UI's public client
  let admin: string;
  const alice = { subject: 'alice', name: 'Alice', email: 'alice@example.com', groups: ['vigil-admins'] };
  /** What the browser asked of the provider, by path: /auth (the login), /token (the code traded). */
  const atProvider = (page: Page): Array<{ path: string; params: URLSearchParams }> => {
    const seen: Array<{ path: string; params: URLSearchParams }> = [];
    page.on('request', (r) => {
      const url = new URL(r.url());
      if (url.origin !== idp.issuer) return;
      seen.push({ path: url.pathname, params: new URLSearchParams(r.postData() ?? url.search) });
    });
    return seen;
  };
  const storage = (page: Page) =>
    page.evaluate(() => ({
      token: sessionStorage.getItem('vigil.token'),
      pending: sessionStorage.getItem('vigil.sign-in'),
      local: localStorage.length,
    }));

  beforeAll(async () => {
    idp = await startOidcProvider();
    sso = await startHarness(() => ({
      // The UI's client id is no audience of the issuer: the admin listener accepts its ID tokens on its own.
      identity: { oidc: [{ issuer: idp.issuer, audience: 'vigil' }] },
      admin: {
        listen: '127.0.0.1:0',
        roles: { admin: ['vigil-admins'] },
        ui: {
          oidc: {
            issuer: idp.issuer,
            client_id: 'vigil-ui',
            name: 'Example SSO',
            scopes: ['openid', 'profile', 'email', 'groups'],
          },
        },
      },
    }));
    admin = sso.gateway.adminUrl!;
    idp.registerPublicClient('vigil-ui', [`${admin}/ui/`]);
  });
  afterAll(async () => {
    await sso?.close();
    await idp?.close();
  });

  it('lets the page reach the provider’s origin and no other, and tells the UI how to sign in', async () => {
    const index = await fetch(`${admin}/ui/`);
    expect(index.headers.get('content-security-policy')).toContain(`connect-src 'self' ${idp.issuer};`);
    expect(await (await fetch(`${admin}/api/v1/ui-config`)).json()).toMatchObject({
      sign_in: {
        name: 'Example SSO',
        issuer: idp.issuer,
        client_id: 'vigil-ui',
        scope: 'openid profile email groups',
        token: 'id_token',
      },
    });
  });

  it('signs in at the provider and comes back to the page it left, the token used like a pasted one', async () => {
    idp.signInAs(alice);
    const page = await newPage();
    const asked = atProvider(page);
    await page.goto(`${admin}/ui/#/access-log`);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await page.getByRole('button', { name: 'Sign in with Example SSO' }).click();
    await page.getByRole('heading', { name: 'Access log' }).waitFor();
    // Back where the person was, with the provider's answer gone from the address.
    expect(new URL(page.url()).search).toBe('');
    expect(new URL(page.url()).hash).toBe('#/access-log');
    expect(await page.locator('#who').textContent()).toMatch(/^alice \(alice@example\.com, Alice\)\s*admin/);

    // The flow: discovery, then the login with state, nonce and an S256 challenge, then the code traded with the
    // verifier by the page itself, as a public client.
    const auth = asked.find((r) => r.path === '/auth')!.params;
    expect(Object.fromEntries(auth)).toMatchObject({
      response_type: 'code',
      client_id: 'vigil-ui',
      redirect_uri: `${admin}/ui/`,
      scope: 'openid profile email groups',
      code_challenge_method: 'S256',
    });
    expect(auth.get('state')).toMatch(/^[\w-]{20,}$/);
    expect(auth.get('nonce')).toMatch(/^[\w-]{20,}$/);
    const token = asked.find((r) => r.path === '/token')!.params;
    expect(token.get('grant_type')).toBe('authorization_code');
    expect(token.get('code_verifier')).toMatch(/^[\w-]{43}$/);
    expect(token.has('client_secret')).toBe(false);

    // The ID token, for this client, kept for this tab only; the sign-in in progress is forgotten.
    const kept = await storage(page);
    expect(kept.pending).toBeNull();
    expect(kept.local).toBe(0);
    const claims = JSON.parse(Buffer.from(kept.token!.split('.')[1]!, 'base64url').toString()) as Record<
      string,
      unknown
    >;
    expect(claims).toMatchObject({ iss: idp.issuer, aud: 'vigil-ui', sub: 'alice', nonce: auth.get('nonce') });
    const me = await fetch(`${admin}/api/v1/whoami`, { headers: { authorization: `Bearer ${kept.token}` } });
    expect(await me.json()).toMatchObject({ role: 'admin', reader: { method: 'oidc', subject: 'alice' } });

    // Signing out forgets the token; the provider's button is there again.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in with Example SSO' }).waitFor();
    expect((await storage(page)).token).toBeNull();
    expect(await page.getByRole('alert').count()).toBe(0);
  });

  it('opens the admin API with the UI’s ID token, never the Claude API', async () => {
    // The UI's client id had to be an audience of identity.oidc, which the proxy's listener shares too: every ID token
    // the UI signed in with spent the connections' upstream keys.
    idp.signInAs(alice);
    const page = await newPage();
    await page.goto(`${admin}/ui/`);
    await page.getByRole('button', { name: 'Sign in with Example SSO' }).click();
    await page.getByRole('heading', { name: 'Sessions' }).waitFor();
    const { token } = await storage(page);
    const me = await fetch(`${admin}/api/v1/whoami`, { headers: { authorization: `Bearer ${token}` } });
    expect(await me.json()).toMatchObject({ role: 'admin', reader: { method: 'oidc', subject: 'alice' } });

    const upstreamCalls = sso.fake.requests.length;
    const claude = new Anthropic({ baseURL: sso.url, authToken: token!, apiKey: null, maxRetries: 0 });
    const err = await claude.messages
      .create(
        { model: 'claude-haiku-4-5', max_tokens: 20, messages: [{ role: 'user', content: 'spent with a UI token' }] },
        inSession('ui-id-token-at-proxy'),
      )
      .then(
        () => expect.fail('the proxy accepted the UI’s ID token'),
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((err as InstanceType<typeof Anthropic.AuthenticationError>).error).toMatchObject({
      type: 'error',
      error: {
        type: 'authentication_error',
        message: expect.stringMatching(/^wrong audience: token is for "vigil-ui", expected vigil$/),
      },
    });
    expect(sso.fake.requests.length).toBe(upstreamCalls);
  });

  it('says so when the person cancels at the provider, and keeps no token', async () => {
    idp.signInAs('deny');
    const page = await newPage();
    await page.goto(`${admin}/ui/`);
    await page.getByRole('button', { name: 'Sign in with Example SSO' }).click();
    await expect
      .poll(() => page.getByRole('alert').textContent(), { timeout: 5000 })
      .toBe('Sign-in with Example SSO was cancelled or refused (access_denied: End-User aborted interaction).');
    expect(new URL(page.url()).search).toBe('');
    expect(await storage(page)).toEqual({ token: null, pending: null, local: 0 });
    // And it can be tried again.
    idp.signInAs(alice);
    await page.getByRole('button', { name: 'Sign in with Example SSO' }).click();
    await page.getByRole('heading', { name: 'Sessions' }).waitFor();
  });

  it('ignores an answer that belongs to no sign-in of this tab (state), and never trades its code', async () => {
    // Someone else's code, slipped into a link: without the state check the page would sign in as them.
    const page = await newPage();
    const asked = atProvider(page);
    await page.goto(`${admin}/ui/?code=someone-elses-code&state=forged#/sessions`);
    await expect
      .poll(() => page.getByRole('alert').textContent(), { timeout: 5000 })
      .toMatch(/^This answer from the identity provider does not belong to a sign-in started in this tab/);
    expect(new URL(page.url()).search).toBe('');
    expect(new URL(page.url()).hash).toBe('#/sessions');
    expect(asked.filter((r) => r.path === '/token')).toEqual([]);
    expect((await storage(page)).token).toBeNull();

    // A sign-in started here, answered with another state (the login asked for with it changed on the way): the same.
    idp.signInAs(alice);
    await page.route(
      (url) => url.origin === idp.issuer && url.pathname === '/auth' && url.searchParams.has('state'),
      async (route) => {
        const url = new URL(route.request().url());
        url.searchParams.set('state', 'not-the-one-sent');
        await route.continue({ url: url.href });
      },
    );
    await page.getByRole('button', { name: 'Sign in with Example SSO' }).click();
    await expect
      .poll(() => page.getByRole('alert').textContent(), { timeout: 5000 })
      .toMatch(/does not belong to a sign-in started in this tab/);
    expect(asked.filter((r) => r.path === '/token')).toEqual([]);
    expect((await storage(page)).token).toBeNull();
  });

  it('keeps a signed-in tab signed in when an old answer comes back (a bookmark, Back), and says it was ignored', async () => {
    // The sign-in page was shown while the token stayed kept: the person believed they were signed out, and a reload
    // signed them back in.
    idp.signInAs(alice);
    const page = await newPage();
    const asked = atProvider(page);
    let answer = '';
    page.on('request', (r) => {
      const url = new URL(r.url());
      if (url.origin === new URL(admin).origin && url.searchParams.has('code')) answer = r.url();
    });
    await page.goto(`${admin}/ui/#/access-log`);
    await page.getByRole('button', { name: 'Sign in with Example SSO' }).click();
    await page.getByRole('heading', { name: 'Access log' }).waitFor();
    const { token } = await storage(page);
    expect(answer).toMatch(/[?&]code=/);
    const traded = asked.filter((r) => r.path === '/token').length;

    await page.goto(answer);
    await expect
      .poll(() => page.locator('#notice').getByRole('alert').textContent(), { timeout: 5000 })
      .toBe(
        'This answer from the identity provider does not belong to a sign-in started in this tab (its state does ' +
          'not match), so it was ignored.',
      );
    // The answer's own address holds no view: the default one.
    await page.getByRole('heading', { name: 'Sessions' }).waitFor();
    expect(await page.locator('#who').textContent()).toMatch(/^alice .*admin\s*Sign out$/);
    expect((await storage(page)).token).toBe(token);
    expect(new URL(page.url()).search).toBe('');
    expect(asked.filter((r) => r.path === '/token').length).toBe(traded);
    expect(await page.getByRole('heading', { name: 'Sign in' }).count()).toBe(0);

    // The notice is about that page: the next one drops it. Signed in still, as a reload shows.
    await page.getByRole('link', { name: 'Access log' }).click();
    await page.getByRole('heading', { name: 'Access log' }).waitFor();
    expect(await page.locator('#notice').textContent()).toBe('');
    await page.reload();
    await page.getByRole('heading', { name: 'Access log' }).waitFor();
    expect(await page.locator('#who').textContent()).toMatch(/^alice /);
  });

  it('drops a kept token the API refuses (expired) and asks again', async () => {
    // An ID token lives minutes to an hour; the UI kept an expired one and sent it with every request.
    const page = await newPage();
    await page.goto(`${admin}/ui/`);
    await page.getByRole('button', { name: 'Sign in with Example SSO' }).waitFor();
    const expired = await idp.mintToken(
      { groups: ['vigil-admins'] },
      { subject: 'alice', audience: 'vigil-ui', expiresIn: -600 },
    );
    await page.evaluate((t) => sessionStorage.setItem('vigil.token', t), expired);
    await page.reload();
    await expect.poll(() => page.getByRole('alert').textContent(), { timeout: 5000 }).toMatch(/^401: .*expired/);
    expect((await storage(page)).token).toBeNull();
    await page.getByRole('button', { name: 'Sign in with Example SSO' }).waitFor();
  });

  it('tells a user that verifying a session checked their own exchanges only', async () => {
    // The API verifies a user's own exchanges of a shared session (scope: caller); the page said nothing of it.
    const carol = await idp.mintToken({}, { subject: 'carol' });
    await new Anthropic({ baseURL: sso.url, apiKey: carol, maxRetries: 0 }).messages.create(
      { model: 'claude-haiku-4-5', max_tokens: 20, messages: [{ role: 'user', content: 'mine to verify' }] },
      inSession('carol-shared'),
    );
    const page = await newPage();
    await page.goto(`${admin}/ui/#/sessions/carol-shared`);
    await page.getByLabel('Token').fill(carol);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('button', { name: 'Verify session' }).click();
    await expect
      .poll(() => page.locator('.verify-result').textContent())
      .toMatch(/^Verified: \d+ records of 1 exchanges are intact \(your own exchanges/);
  });

  it('still takes a pasted token', async () => {
    const page = await newPage();
    await page.goto(`${admin}/ui/`);
    await page.getByLabel('Token').fill(await idp.mintToken({ groups: ['vigil-admins'] }, { subject: 'bob' }));
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('heading', { name: 'Sessions' }).waitFor();
    expect(await page.locator('#who').textContent()).toMatch(/^bob\s*admin/);
  });
});

describe('long, shared and malformed sessions', () => {
  let busy: Harness; // no identity, but gateway keys name their callers; a second connection to an odd upstream
  let odd: Awaited<ReturnType<typeof startOddUpstream>>;
  let page: Page;
  const ask = (client: Anthropic, text: string, session: string) =>
    client.messages.create(
      { model: 'claude-haiku-4-5', max_tokens: 20, messages: [{ role: 'user', content: text }] },
      inSession(session),
    );
  /** A body sent as is: the SDK would not send these. */
  const raw = (body: string, session: string, { path = '/v1/messages', headers = {} } = {}) =>
    fetch(`${busy.url}${path}`, {
      method: 'POST',
      headers: { ...clientHeaders(session), ...headers },
      body,
    });

  beforeAll(async () => {
    odd = await startOddUpstream();
    busy = await startHarness((upstream) => ({
      connections: [
        { name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
        { name: 'odd', upstream: odd.url },
      ],
      admin: { listen: '127.0.0.1:0' },
    }));
    const client = sdk(busy);
    for (let i = 1; i <= 22; i++) await ask(client, `turn ${i} of a long session`, 'ui-long');
    // Two callers choose the same session id.
    for (const name of ['build-bot', 'review-bot']) {
      const { key } = await createGatewayKey(
        busy.gateway.store,
        { name, owner: 'platform', connections: [], createdBy: 'web-ui test' },
        ['anthropic'],
      );
      await ask(new Anthropic({ baseURL: busy.url, apiKey: key, maxRetries: 0 }), `hello from ${name}`, 'ui-shared');
    }
    // More callers of one session than its header names.
    for (let i = 0; i < 12; i++) {
      const name = `crowd-${String(i).padStart(2, '0')}`;
      const { key } = await createGatewayKey(
        busy.gateway.store,
        { name, owner: 'platform', connections: [], createdBy: 'web-ui test' },
        ['anthropic'],
      );
      await ask(new Anthropic({ baseURL: busy.url, apiKey: key, maxRetries: 0 }), `hello from ${name}`, 'ui-crowd');
    }
    // A session with a normal exchange between recordings the transcript cannot draw as usual.
    await raw('{"model":"x","max_tokens":10,"messages":[null]}', 'ui-malformed');
    await ask(client, 'a perfectly normal question', 'ui-malformed');
    await raw(
      '{"model":"x","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":{"toString":1}}]}]}',
      'ui-malformed',
    );
    // A first turn shaped like Claude Code's: the user's prompt, then a message carrying the environment; then the
    // tool results sent back after a tool call; then a prompt with a prefill the client wrote.
    const firstTurn = [
      { role: 'user', content: [{ type: 'text', text: 'say hi' }] },
      { role: 'system', content: '# Environment\nWorking directory: /home/dev/project' },
    ];
    const toolResults = [
      ...firstTurn,
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'Bash', input: { command: 'ls' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'README.md' }] },
    ];
    const prefilled = [
      ...toolResults,
      { role: 'assistant', content: [{ type: 'text', text: 'There is a README.md.' }] },
      { role: 'user', content: [{ type: 'text', text: 'summarise it in one line' }] },
      { role: 'assistant', content: 'Summary:' },
    ];
    for (const messages of [firstTurn, toolResults, prefilled]) {
      await raw(JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 20, messages }), 'ui-claude-code');
    }
    // More hits than a page of search results (25).
    for (let i = 1; i <= 30; i++) await ask(client, `pangolin report ${i}`, 'ui-pangolin');
    // Objects where text belongs, in the request's last turn and in the answer; and an error typed with one.
    const oddTurn =
      `{"model":"odd-model","max_tokens":10,"messages":[{"role":"user","content":[{"type":"text","text":${ODD}},` +
      `{"type":"tool_result","tool_use_id":${ODD},"content":[{"type":"text","text":${ODD}},{"type":${ODD}}]},` +
      `{"type":"thinking","thinking":${ODD}}]}]}`;
    await raw(oddTurn, 'ui-odd-keys', { path: '/c/odd/v1/messages' });
    await raw(oddTurn, 'ui-odd-keys', { path: '/c/odd/v1/messages', headers: { 'x-odd': 'error' } });
    await Promise.all([
      busy.session('ui-long', 22),
      busy.session('ui-shared', 2),
      busy.session('ui-crowd', 12),
      busy.session('ui-malformed', 3),
      busy.session('ui-odd-keys', 2),
      busy.session('ui-pangolin', 30),
      busy.session('ui-claude-code', 3),
    ]);
    page = await newPage();
  });
  afterAll(async () => {
    await busy?.close();
    await odd?.close();
  });

  it('pages a long session 20 exchanges at a time, with Load more', async () => {
    // The session page asked for every exchange in full at once: tens of MB for a long agent session.
    const asked: string[] = [];
    page.on('request', (r) => {
      if (r.url().includes('/api/v1/sessions/ui-long')) asked.push(new URL(r.url()).search);
    });
    // What each page answered: its own exchanges' summaries (no longer every summary of the session on every page).
    const answered: Array<Promise<{ summaries: unknown[]; offset: number; session: { exchanges: number } | null }>> =
      [];
    page.on('response', (r) => {
      if (r.url().includes('/api/v1/sessions/ui-long')) answered.push(r.json());
    });
    await page.goto(`${busy.gateway.adminUrl}/ui/#/sessions/ui-long`);
    const cards = page.locator('article.exchange-card');
    await expect.poll(() => cards.count()).toBe(20);
    expect(await page.locator('dl.facts').first().textContent()).toContain('Exchanges22');
    expect(await cards.nth(19).locator('.turn.user').textContent()).toContain('turn 20 of a long session');
    expect(await cards.nth(19).locator('.index').textContent()).toBe('#20');
    await page.getByRole('button', { name: 'Load more' }).click();
    await expect.poll(() => cards.count()).toBe(22);
    expect(await cards.nth(21).locator('.turn.user').textContent()).toContain('turn 22 of a long session');
    expect(await cards.nth(21).locator('.index').textContent()).toBe('#22');
    expect(await page.getByRole('button', { name: 'Load more' }).count()).toBe(0);
    expect(asked).toHaveLength(2);
    expect(asked[0]).toBe('?limit=20');
    expect(asked[1]).toMatch(/^\?limit=20&cursor=[\w-]+$/);
    const pages = await Promise.all(answered);
    // The session's totals (aggregates over all its exchanges) with the first page only.
    expect(pages.map((p) => [p.summaries.length, p.offset, p.session?.exchanges ?? null])).toEqual([
      [20, 0, 22],
      [2, 20, null],
    ]);
  });

  it('names every caller of a shared session: in the list, the header and each exchange', async () => {
    // The session page showed the first exchange's caller for all; the list showed one caller too.
    await page.goto(`${busy.gateway.adminUrl}/ui/#/sessions`);
    const row = page.locator('tr[data-session="ui-shared"]');
    await expect.poll(() => row.locator('td').nth(1).textContent()).toBe('2 callers: build-bot, review-bot');
    expect(await page.locator('tr[data-session="ui-long"] td').nth(1).textContent()).toBe('anonymous');

    await page.goto(`${busy.gateway.adminUrl}/ui/#/sessions/ui-shared`);
    const cards = page.locator('article.exchange-card');
    await expect.poll(() => cards.count()).toBe(2);
    expect(await page.locator('dl.facts').first().textContent()).toContain('Callers2 callers: build-bot, review-bot');
    expect(await cards.nth(0).locator('header .caller').textContent()).toBe('build-bot');
    expect(await cards.nth(0).locator('.turn.user').textContent()).toContain('hello from build-bot');
    expect(await cards.nth(1).locator('header .caller').textContent()).toBe('review-bot');
    expect(await cards.nth(1).locator('.turn.user').textContent()).toContain('hello from review-bot');
  });

  it('names the first ten callers of a crowded session in its header, and how many more there are', async () => {
    // The header counted callers from the summaries of every exchange, which each page carried; a page now carries
    // the session's totals, with the first ten callers named.
    await page.goto(`${busy.gateway.adminUrl}/ui/#/sessions/ui-crowd`);
    const cards = page.locator('article.exchange-card');
    await expect.poll(() => cards.count()).toBe(12);
    const named = Array.from({ length: 10 }, (_, i) => `crowd-${String(i).padStart(2, '0')}`).join(', ');
    const header = page.locator('dl.facts').first();
    expect(await header.textContent()).toContain(`Callers12 callers: ${named} and 2 more`);
    expect(await header.textContent()).toContain('Exchanges12');
    expect(await cards.nth(11).locator('header .caller').textContent()).toBe('crowd-11');
    expect(await cards.nth(11).locator('.index').textContent()).toBe('#12');
  });

  it('marks an answer the model declined in the transcript and on the exchange’s page', async () => {
    const client = sdk(busy);
    await ask(client, 'Write the exploit [[scenario:refusal]]', 'ui-refused');
    await ask(client, 'Then a poem', 'ui-refused');
    const [declined] = await busy.session('ui-refused', 2);
    await page.goto(`${busy.gateway.adminUrl}/ui/#/sessions/ui-refused`);
    const cards = page.locator('article.exchange-card');
    await expect.poll(() => cards.count()).toBe(2);
    expect(await cards.nth(0).locator('header .badge.bad').allTextContents()).toEqual(['refused']);
    expect(await cards.nth(0).getAttribute('class')).toContain('not-ok');
    expect(await cards.nth(1).locator('header .badge.bad').count()).toBe(0);
    await cards.nth(0).getByRole('link', { name: 'Exchange details' }).click();
    await page.waitForURL(new RegExp(`#/exchanges/${declined!.id}$`));
    await expect.poll(() => page.locator('h1 .badge.bad').allTextContents()).toEqual(['refused']);
  });

  it('draws the rest of a session when one recorded request is malformed', async () => {
    // A recorded `messages: [null]` made the transcript throw, and the page showed nothing of the session.
    await page.goto(`${busy.gateway.adminUrl}/ui/#/sessions/ui-malformed`);
    const cards = page.locator('article.exchange-card');
    await expect.poll(() => cards.count()).toBe(3);
    expect(await cards.nth(0).locator('.turn.user').textContent()).toContain('Not a message object');
    expect(await cards.nth(0).locator('.turn.user pre').textContent()).toBe('null');
    expect(await cards.nth(1).locator('.turn.user').textContent()).toContain('a perfectly normal question');
    expect(await cards.nth(1).locator('.turn.assistant').textContent()).toContain('a perfectly normal question');
    // An object where the text belongs is shown as its JSON (it used to take the whole card down).
    expect(await cards.nth(2).textContent()).toContain('{"toString":1}');
    expect(await cards.nth(2).getByRole('alert').count()).toBe(0);

    // A card that cannot be drawn at all (here an answer without the request every exchange has) says so in its
    // place, with the way to the exchange itself.
    const isPage = (url: URL) => url.pathname === '/api/v1/sessions/ui-malformed';
    await page.route(isPage, async (route) => {
      const response = await route.fetch();
      const json = (await response.json()) as { exchanges: Array<Record<string, unknown>> };
      delete json.exchanges[2]!.request;
      await route.fulfill({ response, json });
    });
    await page.reload();
    await expect
      .poll(() => cards.nth(2).getByRole('alert').textContent())
      .toMatch(/^This exchange could not be shown: /);
    expect(await cards.nth(2).getByRole('link', { name: 'Exchange details' }).count()).toBe(1);
    expect(await cards.nth(1).locator('.turn.user').textContent()).toContain('a perfectly normal question');
    await page.unroute(isPage);
  });

  it('shows every message a turn added: Claude Code’s prompt before its environment, then the tool results', async () => {
    // Went wrong: a card showed only the request's last message as its turn, so Claude Code's first exchange read as
    // the environment text and then "Echo: say hi", the prompt itself missing.
    await page.goto(`${busy.gateway.adminUrl}/ui/#/sessions/ui-claude-code`);
    const cards = page.locator('article.exchange-card');
    await expect.poll(() => cards.count()).toBe(3);
    const turn = cards.nth(0).locator('.turn.user');
    expect(await turn.locator('.role').allTextContents()).toEqual(['user (message 1)', 'system (message 2)']);
    expect(await turn.nth(0).textContent()).toContain('say hi');
    expect(await turn.nth(1).textContent()).toContain('# Environment');
    expect(await cards.nth(0).locator('.turn.assistant').textContent()).toContain('Echo: say hi');
    // The second turn is the tool results alone, not the history resent before them.
    const next = cards.nth(1).locator('.turn.user');
    expect(await next.locator('.role').allTextContents()).toEqual(['user (message 4)']);
    expect(await next.locator('.tool-result').textContent()).toContain('README.md');
  });

  it('draws each turn by the server’s own rule: the UI and the server agree on a Claude Code conversation', async () => {
    // Went wrong: the UI kept its own copy of "which messages did this request add" (blocks.js), free to drift from
    // the server's (src/recorder/exchange-turn.ts: the CLI's transcript, the Markdown export). It now imports the
    // server's module, served compiled as /ui/exchange-turn.js.
    const fresh = await newPage();
    const shared: number[] = [];
    fresh.on('response', (r) => {
      if (new URL(r.url()).pathname === '/ui/exchange-turn.js') shared.push(r.status());
    });
    await fresh.goto(`${busy.gateway.adminUrl}/ui/#/sessions/ui-claude-code`);
    const cards = fresh.locator('article.exchange-card');
    await expect.poll(() => cards.count()).toBe(3);
    expect(shared).toEqual([200]);
    const recorded = await busy.session('ui-claude-code', 3);
    const shown: string[][] = [];
    const server: string[][] = [];
    for (const [i, x] of recorded.entries()) {
      const { messages } = x.request.body as { messages: Array<{ role: string }> };
      const start = turnStart(messages.length, (k) => roleOf(messages[k]));
      server.push(messages.slice(start).map((m, k) => `${m.role} (message ${start + k + 1})`));
      const labels = await cards.nth(i).locator('.role').allTextContents();
      shown.push(labels.filter((l) => l.includes('(message ')));
    }
    expect(shown).toEqual(server);
    // The prompt before the environment; the tool results alone; the prompt with the prefill that ends it.
    expect(server).toEqual([
      ['user (message 1)', 'system (message 2)'],
      ['user (message 4)'],
      ['user (message 6)', 'assistant (message 7)'],
    ]);
  });

  it('pages search results with Load more: every hit once, newest first', async () => {
    const pangolins = (await busy.session('ui-pangolin', 30)).reverse(); // newest first, as search answers
    await page.goto(`${busy.gateway.adminUrl}/ui/#/search?q=pangolin`);
    const hits = page.locator('li.hit');
    await expect.poll(() => hits.count()).toBe(25);
    await page.getByRole('button', { name: 'Load more' }).click();
    await expect.poll(() => hits.count()).toBe(30);
    const opened = await hits.locator('a.snippet').evaluateAll((links) => links.map((a) => a.getAttribute('href')));
    expect(opened).toEqual(pangolins.map((x) => `#/exchanges/${x.id}`));
    expect(await page.getByRole('button', { name: 'Load more' }).count()).toBe(0);
  });

  it('pages the access log with Load more: every read once, newest first', async () => {
    // Reads of recordings, more than a page of the log (100).
    for (const x of await busy.session('ui-pangolin', 30)) {
      for (let i = 0; i < 4; i++)
        expect((await fetch(`${busy.gateway.adminUrl}/api/v1/exchanges/${x.id}`)).ok).toBe(true);
    }
    const entries: AccessLogEntry[] = [];
    let cursor: string | null = '';
    while (cursor !== null) {
      const r = await fetch(`${busy.gateway.adminUrl}/api/v1/access-log?limit=1000&cursor=${cursor}`);
      const p = (await r.json()) as { items: AccessLogEntry[]; next_cursor: string | null };
      entries.push(...p.items);
      cursor = p.next_cursor;
    }
    expect(entries.length).toBeGreaterThan(120);
    expect(entries.length).toBeLessThanOrEqual(200);
    const which = (ids: readonly string[]) =>
      ids
        .slice(0, 5)
        .map((id) => `${id} `)
        .join('') + (ids.length > 5 ? `+${ids.length - 5} more` : '');

    await page.goto(`${busy.gateway.adminUrl}/ui/#/access-log`);
    const rows = page.locator('table.access-log tbody tr');
    await expect.poll(() => rows.count()).toBe(100);
    await page.getByRole('button', { name: 'Load more' }).click();
    await expect.poll(() => rows.count()).toBe(entries.length);
    expect(await rows.locator('td:nth-child(5)').allTextContents()).toEqual(entries.map((e) => which(e.data.ids)));
    expect(await page.getByRole('button', { name: 'Load more' }).count()).toBe(0);
  });

  it('draws recorded JSON whatever its keys: toString, valueOf, __proto__, constructor', async () => {
    // An object with a `toString` that is no function, where the UI expected text (a block's text, a tool's name, an
    // error's type), threw "Cannot convert object to primitive value": the exchange page showed only that error.
    const [answered, refused] = await busy.session('ui-odd-keys', 2);
    // The page's heading, or the error shown in its place.
    const shown = page.locator('#view h1, #view [role="alert"]').first();
    await page.goto(`${busy.gateway.adminUrl}/ui/#/exchanges/${answered!.id}`);
    await expect.poll(() => shown.textContent(), { timeout: 5000 }).toBe(`Exchange ${answered!.id} ok`);
    const response = page.locator('section.response');
    expect(await response.locator('.block.text').first().textContent()).toBe(ODD_TEXT);
    expect(await response.locator('.tool-name').textContent()).toBe(ODD_TEXT);
    expect(await response.locator('.tool-use .block-title').textContent()).toBe(`Tool call: ${ODD_TEXT} (${ODD_TEXT})`);
    expect(JSON.parse((await response.locator('.tool-use pre').textContent())!)).toEqual(JSON.parse(ODD));
    expect(await response.textContent()).toContain(`[image: ${ODD_TEXT}]`);
    expect(await response.textContent()).toContain(`[${ODD_TEXT}]`);
    expect(await page.locator('section.request pre').textContent()).toContain('"constructor": "c"');

    await page.goto(`${busy.gateway.adminUrl}/ui/#/exchanges/${refused!.id}`);
    await expect.poll(() => shown.textContent(), { timeout: 5000 }).toBe(`Exchange ${refused!.id} upstream_error`);
    expect(await page.locator('section.response .error').textContent()).toBe(`${ODD_TEXT}: refused`);

    // And the session's transcript: both cards drawn in full.
    await page.goto(`${busy.gateway.adminUrl}/ui/#/sessions/ui-odd-keys`);
    const cards = page.locator('article.exchange-card');
    await expect.poll(() => cards.count()).toBe(2);
    expect(await page.locator('main [role="alert"]').count()).toBe(0);
    const turn = cards.nth(0).locator('.turn.user');
    expect(await turn.locator('.block.text').first().textContent()).toBe(ODD_TEXT);
    expect(await turn.locator('.tool-result').textContent()).toBe(
      `Tool result for ${ODD_TEXT}${ODD_TEXT}\n[${ODD_TEXT}]`,
    );
    expect(await turn.locator('.thinking').textContent()).toBe(`Thinking${ODD_TEXT}`);
    expect(await cards.nth(1).locator('.turn.assistant .error').textContent()).toBe(`${ODD_TEXT}: refused`);
  });
});

describe('the pages', () => {
  it('raised no script errors and no CSP violations', () => {
    expect(pageProblems).toEqual([]);
  });
});
