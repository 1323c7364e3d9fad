/**
 * Usage limits through the gateway, with the official SDK: a caller over a limit gets 429 `rate_limit_error` with
 * `retry-after` (and, for a window that frees only much later, `x-should-retry: false`, so the SDK does not ask again
 * in vain); each refusal is an `access.denied` record; and a restarted gateway remembers what was used.
 */
import Anthropic, { type APIError } from '@anthropic-ai/sdk';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VigilConfigInput } from '../../src/config/config-schema.js';
import { validateConfig } from '../../src/config/load-config.js';
import { startGateway } from '../../src/gateway.js';
import type { AuditStore } from '../../src/store/audit-store.js';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';
import { until } from '../support/until.js';
import { vigil } from '../support/cli.js';
import { startOidcProvider } from '../support/oidc-provider.js';

let h: Harness;
const connections = (upstream: string): VigilConfigInput['connections'] => [
  {
    name: 'anthropic',
    upstream,
    credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
    limits: [
      { name: 'burst', window: '1m', requests: 2 },
      { name: 'all', per: 'connection', window: '1h', requests: 100 },
    ],
  },
  {
    name: 'budget',
    upstream,
    credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
    limits: [{ name: 'daily', window: '1d', tokens: 1 }],
  },
];

beforeAll(async () => {
  h = await startHarness((upstream) => ({ connections: connections(upstream) }));
});
afterAll(() => h?.close());

const ask = (client: Anthropic, session: string): Promise<unknown> =>
  client.messages.create(
    { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'hello' }] },
    { headers: { 'x-vigil-session': session } },
  );

/** A config file for `vigil limits` over the gateway's data: `connections` are its YAML lines. */
function cliConfig(dataDir: string, connections: readonly string[]): string {
  const file = path.join(dataDir, 'vigil.yaml');
  writeFileSync(file, [`data_dir: ${dataDir}`, 'connections:', ...connections, ''].join('\n'));
  return file;
}

async function denied(store: AuditStore): Promise<Array<Record<string, unknown>>> {
  const records = await store.recordsOfKinds(['access.denied'], 0, 100);
  return records.map((r) => JSON.parse(r.data) as Record<string, unknown>);
}

describe('usage limits', () => {
  it('refuses a call over a limit with 429 rate_limit_error and when to come back', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
    await ask(client, 'burst-1');
    await ask(client, 'burst-2');
    const err = (await ask(client, 'burst-3').catch((e: unknown) => e)) as APIError;
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    expect(err.status).toBe(429);
    expect(err.error).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
    expect(err.message).toMatch(
      /usage limit "burst" reached: anonymous callers used 2 of 2 calls in the last 1m; calls are admitted again from \d{4}-/,
    );
    const retryAfter = Number(err.headers?.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    // Soon enough for the SDK's own retries to be worth it.
    expect(err.headers?.get('x-should-retry')).toBeNull();
    expect(err.headers?.get('request-id')).toMatch(/^vigil_ex_/);
    // Two exchanges recorded, the third refused before anything was read or forwarded.
    expect((await h.session('burst-1', 1)).length).toBe(1);
    expect((await h.session('burst-2', 1)).length).toBe(1);
    expect(h.fake.requests.filter((r) => r.headers['x-vigil-session'] === 'burst-3')).toHaveLength(0);
    // Queued, not awaited (a flood of refusals must not slow the gateway): written within the queue's linger.
    const refusals = await until('the refusal to be recorded', async () => {
      const found = (await denied(h.gateway.store)).filter((d) => d.connection === 'anthropic');
      return found.length ? found : undefined;
    });
    expect(refusals).toEqual([
      expect.objectContaining({
        status: 429,
        path: '/v1/messages',
        reason: expect.stringMatching(/^usage limit "burst" reached/),
        caller: expect.objectContaining({ method: 'anonymous' }),
      }),
    ]);
    const metrics = await (await fetch(`${h.gateway.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/^vigil_access_denied_total\{connection="anthropic",status="429"\} 1$/m);
    // Each limit, what the connection's callers used of the one they share, and whom each refuses now.
    expect(metrics).toMatch(/^vigil_usage_limit\{connection="anthropic",limit="burst",unit="calls"\} 2$/m);
    expect(metrics).toMatch(/^vigil_usage_limit\{connection="budget",limit="daily",unit="tokens"\} 1$/m);
    expect(metrics).toMatch(/^vigil_usage_limit_used\{connection="anthropic",limit="all",unit="calls"\} 2$/m);
    expect(metrics).toMatch(/^vigil_usage_limit_refusing\{connection="anthropic",limit="burst"\} 1$/m);
    expect(metrics).toMatch(/^vigil_usage_limit_refusing\{connection="anthropic",limit="all"\} 0$/m);
  });

  it('vigil limits prints each limit and what each caller used of it, read from the store', async () => {
    const config = cliConfig(h.dataDir, [
      '  - name: anthropic',
      '    limits: [{ name: burst, window: 1m, requests: 2 }, { name: all, per: connection, window: 1h, requests: 100 }]',
      '  - name: budget',
      '    limits: [{ name: daily, window: 1d, tokens: 1 }]',
    ]);
    const text = await vigil(['limits', '--config', config]);
    expect(text.code).toBe(0);
    // The two calls of the previous test; the refused third is not counted.
    expect(text.stdout).toMatch(
      /^anthropic · burst: 2 calls per caller in 1m\n {2}anonymous {2}2 calls {2}refused until \d{4}-\S+Z\nanthropic · all: 100 calls per connection in 1h\n {2}\(all callers\) {2}2 calls\nbudget · daily: 1 tokens per caller in 1d\n {2}nothing used in the window\n$/,
    );
    const json = await vigil(['limits', '--config', config, '--json', '--caller', 'someone-else']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      items: [
        {
          connection: 'anthropic',
          name: 'burst',
          usage: [{ caller: 'someone-else', requests: 0, refusedUntil: null }],
        },
        { connection: 'anthropic', name: 'all', usage: [{ caller: null, requests: 2 }] },
        { connection: 'budget', name: 'daily', usage: [{ caller: 'someone-else', tokens: 0 }] },
      ],
    });
    const none = await vigil(['limits', '--data-dir', h.dataDir]);
    expect(none.stdout).toBe(
      'no usage limits configured (connections[].limits in the config; see README, "Usage limits")\n',
    );
  });

  it('tells the SDK not to retry when the window frees only much later, and remembers across a restart', async () => {
    // The SDK's default: two retries. A day's budget spent, none of them is sent.
    const client = new Anthropic({ baseURL: `${h.url}/c/budget`, apiKey: CLIENT_KEY });
    await ask(client, 'budget-1');
    await h.session('budget-1', 1);
    const err = (await ask(client, 'budget-2').catch((e: unknown) => e)) as APIError;
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    expect(err.message).toMatch(/usage limit "daily" reached: anonymous callers used \d+ of 1 tokens in the last 1d/);
    expect(err.headers?.get('x-should-retry')).toBe('false');
    // A day, less at most the 60th of it the window is counted in.
    expect(Number(err.headers?.get('retry-after'))).toBeGreaterThan(86_400 - 1_440);
    const budgetRefusals = async (store: AuditStore): Promise<number> =>
      (await denied(store)).filter((d) => d.connection === 'budget').length;
    await until('the refusal to be recorded', async () => ((await budgetRefusals(h.gateway.store)) ? true : undefined));
    expect(await budgetRefusals(h.gateway.store)).toBe(1);

    // Another gateway on the same data, after this one stops: it reads back what the day used.
    await h.gateway.close(1000);
    const again = await startGateway(
      validateConfig({ listen: '127.0.0.1:0', data_dir: h.dataDir, connections: connections(h.fake.url) }),
      { log: pino({ level: 'silent' }) },
    );
    try {
      const restarted = new Anthropic({ baseURL: `${again.url}/c/budget`, apiKey: CLIENT_KEY, maxRetries: 0 });
      const after = (await ask(restarted, 'budget-3').catch((e: unknown) => e)) as APIError;
      expect(after).toBeInstanceOf(Anthropic.RateLimitError);
      expect(after.message).toMatch(/usage limit "daily" reached/);
      await until('the refusal to be recorded', async () =>
        (await budgetRefusals(again.store)) === 2 ? true : undefined,
      );
    } finally {
      await again.close(1000);
    }
  });
});

describe('a usage limit per group (OIDC)', () => {
  it('is shared by the members of a group: one member’s tokens count for the other, not for other groups', async () => {
    const idp = await startOidcProvider();
    const g = await startHarness((upstream) => ({
      identity: { oidc: [{ issuer: idp.issuer, audience: 'vigil', groups_claim: 'groups' }] },
      connections: [
        {
          name: 'anthropic',
          upstream,
          credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
          limits: [
            { name: 'team-daily', per: 'group', window: '1d', tokens: 20 },
            { name: 'ml-calls', per: 'group', window: '1h', requests: 100, for: [{ group: 'ml' }] },
          ],
        },
      ],
      admin: { roles: { admin: ['vigil-admins'] } },
    }));
    try {
      const as = async (sub: string, groups: string[]) =>
        new Anthropic({
          baseURL: g.url,
          apiKey: null,
          authToken: await idp.mintToken({ sub, email: `${sub}@example.com`, groups }),
          maxRetries: 0,
        });
      const [dana, erin, finn] = await Promise.all([as('dana', ['ml']), as('erin', ['ml']), as('finn', ['sales'])]);
      // The fake answers each call with more than 20 tokens in all: dana's call takes ml over its budget.
      await ask(dana, 'ml-1');
      await g.session('ml-1', 1);
      const refused = (await ask(erin, 'ml-2').catch((e: unknown) => e)) as APIError;
      expect(refused).toBeInstanceOf(Anthropic.RateLimitError);
      expect(refused.message).toMatch(
        /usage limit "team-daily" reached: group "ml" used \d+ of 20 tokens in the last 1d/,
      );
      // Another team's budget is its own.
      await ask(finn, 'sales-1');
      const admin = await idp.mintToken({ sub: 'root', groups: ['vigil-admins'] });
      const limits = (await (
        await fetch(`${g.gateway.adminUrl}/api/v1/limits`, { headers: { authorization: `Bearer ${admin}` } })
      ).json()) as {
        items: Array<{ per: string; usage: Array<{ group?: string; tokens: number }> }>;
      };
      expect(limits.items[0]!.per).toBe('group');
      expect(limits.items[0]!.usage.map((u) => u.group).sort()).toEqual(['ml', 'sales']);
      // For alerting on a team's budget: the groups a limit names, as metrics (dana's call; erin's was refused).
      const metrics = await (
        await fetch(`${g.gateway.adminUrl}/metrics`, { headers: { authorization: `Bearer ${admin}` } })
      ).text();
      expect(metrics).toMatch(
        /^vigil_usage_limit_group_used\{connection="anthropic",limit="ml-calls",group="ml",unit="calls"\} 1$/m,
      );
      expect(metrics).not.toMatch(/^vigil_usage_limit_group_used\{[^}]*limit="team-daily"/m);
      // The CLI reads the same back from the store, by group.
      await g.session('sales-1', 1);
      const config = cliConfig(g.dataDir, [
        '  - name: anthropic',
        '    limits:',
        '      - { name: team-daily, per: group, window: 1d, tokens: 20 }',
      ]);
      const text = await vigil(['limits', '--config', config]);
      expect(text.stdout).toMatch(
        /^anthropic · team-daily: 20 tokens per group in 1d\n {2}group (ml|sales) +\d+ tokens {2}refused until \S+\n {2}group (ml|sales) +\d+ tokens {2}refused until \S+\n$/,
      );
    } finally {
      await g.close();
      await idp.close();
    }
  });
});

// Last: its gateway runs in this process too, and a gateway's metrics count every gateway's refusals in the process
// (diagnostics channels are process-wide), which the metrics test above counts exactly.
describe('a budget in money', () => {
  it('refuses a caller once their calls cost the limit, saying how much in which currency', async () => {
    const priced = await startHarness((upstream) => ({
      connections: [
        {
          name: 'anthropic',
          upstream,
          credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
          limits: [{ name: 'daily-eur', window: '1d', cost: 0.00001 }],
        },
      ],
      // Dear enough that the fake upstream's few hundred tokens cost more than the budget.
      pricing: { currency: 'EUR', models: [{ model: 'claude-haiku*', input: 1, output: 1 }] },
    }));
    try {
      const client = new Anthropic({ baseURL: priced.url, apiKey: CLIENT_KEY, maxRetries: 0 });
      const answer = (await ask(client, 'budget-1')) as Anthropic.Message;
      const spent =
        (answer.usage.input_tokens + (answer.usage.cache_read_input_tokens ?? 0) * 0.1 + answer.usage.output_tokens) /
        1e6;
      expect(spent).toBeGreaterThan(0.00001);
      await priced.session('budget-1', 1); // counted when it ends
      const err = (await ask(client, 'budget-2').catch((e: unknown) => e)) as APIError;
      expect(err).toBeInstanceOf(Anthropic.RateLimitError);
      expect(err.message).toContain(
        `usage limit "daily-eur" reached: anonymous callers used ${spent.toFixed(6)} of 0.000010 EUR in the last 1d;`,
      );
      // A day's window: not worth the SDK's retries.
      expect(err.headers?.get('x-should-retry')).toBe('false');
      // For alerting: the budget in its currency, and the caller it refuses.
      const metrics = await (await fetch(`${priced.gateway.adminUrl}/metrics`)).text();
      expect(metrics).toMatch(/^vigil_usage_limit\{connection="anthropic",limit="daily-eur",unit="EUR"\} 0\.00001$/m);
      expect(metrics).toMatch(/^vigil_usage_limit_refusing\{connection="anthropic",limit="daily-eur"\} 1$/m);
    } finally {
      await priced.close();
    }
  });

  it('is refused without pricing, by its path', () => {
    expect(() =>
      validateConfig({ connections: [{ name: 'anthropic', limits: [{ name: 'budget', window: '1d', cost: 50 }] }] }),
    ).toThrow(
      /connections\[0\] \(anthropic\)\.limits\[0\] \(budget\)\.cost: needs pricing: a cost limit counts what calls cost/,
    );
  });
});
