/**
 * What calls cost: `vigil serve` with `pricing`, called with the official SDK (prompt caching on, as agents use it),
 * then the usage report through the admin API and `vigil usage` — cache reads and writes apart, each exchange priced
 * by its model, a model without a price counted apart — and a reload that changes the prices, on record.
 */
import Anthropic from '@anthropic-ai/sdk';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic } from '../../src/sandbox/fake-anthropic.js';
import { serve, vigil, type ServeProcess } from '../support/cli.js';
import { tempDir } from '../support/gateway-harness.js';

interface UsageRow {
  key: string | null;
  exchanges: number;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  cost: number | null;
  unpriced: number | null;
}
interface UsageReport {
  currency: string | null;
  items: UsageRow[];
}

/** A YAML file of these lines. */
function writeYaml(file: string, ...lines: string[]): void {
  writeFileSync(file, [...lines, ''].join('\n'));
}

let upstream: FakeAnthropic;
let gateway: ServeProcess;
let dir: string;
let configFile: string;

/** The config, with `pricing` lines (YAML, indented under `pricing:`) or none. */
function writeConfig(pricing: readonly string[] | null): void {
  writeYaml(
    configFile,
    `data_dir: ${path.join(dir, 'data')}`,
    'listen: 127.0.0.1:0',
    'admin:',
    '  listen: 127.0.0.1:0',
    'connections:',
    '  - name: anthropic',
    `    upstream: ${upstream.url}`,
    '    credential: { env: VIGIL_TEST_UPSTREAM_KEY }',
    ...(pricing ? ['pricing:', ...pricing] : []),
  );
}

const SONNET = ['  currency: USD', '  models:', '    - { model: "claude-sonnet-4-5*", input: 3, output: 15 }'];

beforeAll(async () => {
  upstream = await startFakeAnthropic();
  dir = tempDir('vigil-usage-cost-');
  configFile = path.join(dir, 'vigil.yaml');
  writeConfig(SONNET);
  gateway = await serve(['--config', configFile], { VIGIL_TEST_UPSTREAM_KEY: 'sk-upstream-test' });
});
afterAll(async () => {
  gateway?.child.kill('SIGTERM');
  await gateway?.exited;
  await upstream?.close();
});

const usage = async (by: string): Promise<UsageReport> =>
  (await (await fetch(`${gateway.adminUrl}/usage?by=${by}`)).json()) as UsageReport;

/** What `usage` costs at `rate` per million input tokens (cache reads 0.1×, writes 1.25×) and `out` per million output. */
function costAt(u: Anthropic.Usage, rate: number, out: number): number {
  const read = u.cache_read_input_tokens ?? 0;
  const write = u.cache_creation_input_tokens ?? 0;
  return (u.input_tokens * rate + read * rate * 0.1 + write * rate * 1.25 + u.output_tokens * out) / 1e6;
}

describe('usage cost', () => {
  const seen: Anthropic.Usage[] = [];

  it('reports cache reads apart and prices each exchange by its model; a model without a price is counted apart', async () => {
    const client = new Anthropic({ baseURL: gateway.url, apiKey: 'client-token', maxRetries: 0 });
    // A long system prompt marked for caching, as Claude Code's: the fake upstream reports most of it read from cache.
    const system = [
      { type: 'text' as const, text: 'You are terse. '.repeat(400), cache_control: { type: 'ephemeral' as const } },
    ];
    for (const [i, stream] of [false, true, false].entries()) {
      const params = {
        model: 'claude-sonnet-4-5',
        max_tokens: 64,
        system,
        messages: [{ role: 'user' as const, content: `question ${i}` }],
      };
      seen.push(
        stream
          ? (await client.messages.stream(params).finalMessage()).usage
          : (await client.messages.create(params)).usage,
      );
    }
    await client.messages.create({
      model: 'claude-unpriced-1',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
    });
    // The first call writes the cache (priced above input), the next ones read it (priced far below).
    expect(seen[0]!.cache_creation_input_tokens).toBeGreaterThan(0);
    expect(seen.slice(1).every((u) => (u.cache_read_input_tokens ?? 0) > 0)).toBe(true);

    // The last call's records follow its response by a group commit at most.
    let report: UsageReport;
    for (let t = Date.now(); ;) {
      report = await usage('model');
      if (report.items.reduce((n, r) => n + r.exchanges, 0) === 4 || Date.now() - t > 5000) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(report.currency).toBe('USD');
    const sonnet = report.items.find((r) => r.key === 'claude-sonnet-4-5')!;
    const sum = (f: (u: Anthropic.Usage) => number) => seen.reduce((n, u) => n + f(u), 0);
    // The counts the client was given, added up: input counts every input token, the cache reads among them.
    expect(sonnet).toMatchObject({
      exchanges: 3,
      cacheReadTokens: sum((u) => u.cache_read_input_tokens ?? 0),
      cacheWriteTokens: sum((u) => u.cache_creation_input_tokens ?? 0),
      inputTokens: sum((u) => u.input_tokens + (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0)),
      outputTokens: sum((u) => u.output_tokens),
      unpriced: 0,
    });
    // To a millionth, as the report rounds it.
    expect(sonnet.cost).toBeCloseTo(
      sum((u) => costAt(u, 3, 15)),
      5,
    );
    // Pricing cache reads as input would have overstated it.
    expect(sonnet.cost!).toBeLessThan(
      sum((u) =>
        costAt(
          { ...u, input_tokens: u.input_tokens + (u.cache_read_input_tokens ?? 0), cache_read_input_tokens: 0 },
          3,
          15,
        ),
      ),
    );
    expect(report.items.find((r) => r.key === 'claude-unpriced-1')).toMatchObject({
      exchanges: 1,
      cost: 0,
      unpriced: 1,
    });

    // The CLI reads the same config: a cost column in its currency, the unpriced model marked and explained.
    const table = await vigil(['usage', '--by', 'model', '--config', configFile]);
    expect(table.code).toBe(0);
    const [head, ...lines] = table.stdout.trimEnd().split('\n');
    expect(head).toMatch(
      /^model\s+exchanges\s+input tokens\s+cache reads\s+cache writes\s+output tokens\s+cost USD\s+failed/,
    );
    expect(lines.find((l) => l.startsWith('claude-sonnet-4-5 '))).toContain(` ${sonnet.cost!.toFixed(2)} `);
    expect(lines.find((l) => l.startsWith('claude-unpriced-1 '))).toMatch(/ 0\.00\* /);
    expect(lines.at(-1)).toBe(
      '* leaves out 1 exchange of models pricing does not price (see pricing.models in the config)',
    );
    // CSV: the cost whole, and how many exchanges it leaves out.
    const csv = (await vigil(['usage', '--by', 'model', '--csv', '--config', configFile])).stdout.split('\r\n');
    expect(csv[0]).toContain('"cost USD","unpriced"');
    expect(csv.find((l) => l.startsWith('"claude-sonnet-4-5"'))).toContain(`"${sonnet.cost}","0"`);
  });

  it('takes new prices on a reload, and puts them on record', async () => {
    const before = (await usage('model')).items.find((r) => r.key === 'claude-sonnet-4-5')!;
    writeConfig([
      '  currency: EUR',
      '  models:',
      '    - { model: "claude-sonnet-4-5*", input: 6, output: 30, cache_read: 0 }',
    ]);
    const reload = await fetch(`${gateway.adminUrl}/config/reload`, { method: 'POST' });
    expect(reload.status).toBe(200);
    const after = await usage('model');
    expect(after.currency).toBe('EUR');
    const sonnet = after.items.find((r) => r.key === 'claude-sonnet-4-5')!;
    // Input and output at twice the rate (cache writes too: 1.25 × input by default), cache reads now free.
    const expected = seen.reduce(
      (n, u) => n + (u.input_tokens * 6 + (u.cache_creation_input_tokens ?? 0) * 7.5 + u.output_tokens * 30) / 1e6,
      0,
    );
    expect(sonnet.cost).toBeCloseTo(expected, 5);
    expect(sonnet.cost).not.toBeCloseTo(before.cost!, 5);
    const config = (await (await fetch(`${gateway.adminUrl}/config`)).json()) as {
      reloads: Array<{ pricing?: unknown }>;
    };
    expect(config.reloads[0]!.pricing).toEqual({
      currency: 'EUR',
      models: [{ model: 'claude-sonnet-4-5*', input: 6, output: 30, cache_read: 0 }],
    });
    // Pricing taken out: tokens only, and the reload says so.
    writeConfig(null);
    expect((await fetch(`${gateway.adminUrl}/config/reload`, { method: 'POST' })).status).toBe(200);
    expect((await usage('model')).currency).toBeNull();
    expect((await usage('caller')).items[0]).toMatchObject({ cost: null, unpriced: null });
  });

  it('shows a budget in money and what is used of it: vigil config check and vigil limits', async () => {
    // The same store, read with a config that budgets the connection's callers.
    const budget = path.join(dir, 'budget.yaml');
    writeYaml(
      budget,
      `data_dir: ${path.join(dir, 'data')}`,
      'connections:',
      '  - name: anthropic',
      `    upstream: ${upstream.url}`,
      '    limits: [{ name: monthly, window: 30d, cost: 50 }]',
      'pricing:',
      '  currency: EUR',
      '  models: [{ model: "claude*", input: 3, output: 15 }]',
    );
    const check = await vigil(['config', 'check', '--config', budget]);
    expect(check.stdout).toContain('    limit monthly: 50.00 EUR per caller in 30d');
    expect(check.stdout).toContain('  pricing EUR: claude*\n');
    const limits = JSON.parse((await vigil(['limits', '--json', '--config', budget])).stdout) as {
      items: Array<{ cost: number; currency: string; usage: Array<{ caller: string; cost: number }> }>;
    };
    // What a gateway starting now would count: the callers' calls in the window, priced as the usage report prices them.
    const report = JSON.parse((await vigil(['usage', '--json', '--config', budget])).stdout) as UsageReport;
    expect(limits.items[0]).toMatchObject({ cost: 50, currency: 'EUR' });
    expect(limits.items[0]!.usage).toEqual([
      expect.objectContaining({ caller: 'anonymous', cost: report.items.find((r) => r.key === 'anonymous')!.cost }),
    ]);
    expect(limits.items[0]!.usage[0]!.cost).toBeGreaterThan(0);
    const text = await vigil(['limits', '--config', budget]);
    // Under a cent: to the millionth, not 0.00.
    expect(text.stdout).toBe(
      `anthropic · monthly: 50.00 EUR per caller in 30d\n  anonymous  ${limits.items[0]!.usage[0]!.cost.toFixed(6)} EUR\n`,
    );
  });

  it('refuses pricing it cannot apply, naming the key', async () => {
    const bad = path.join(dir, 'bad.yaml');
    writeYaml(
      bad,
      `data_dir: ${path.join(dir, 'other')}`,
      'pricing:',
      '  models:',
      '    - { model: "claude-*-4-5", input: 3, output: 15 }',
      '    - { model: "claude-haiku-4-5", input: -1, output: 5 }',
      '    - { model: "claude-haiku-4-5", input: 1, output: 5 }',
    );
    const r = await vigil(['config', 'check', '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('pricing.models[0].model: must be a model id, or a prefix of one ending in *');
    expect(r.stderr).toContain('pricing.models[1].input');
    expect(r.stderr).toContain(
      'pricing.models[2].model: "claude-haiku-4-5" is priced already at pricing.models[1]; the first match wins',
    );
  });
});
