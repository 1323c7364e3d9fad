/**
 * Several `vigil serve` processes sharing one PostgreSQL: every exchange from every replica is recorded, a session
 * whose calls land on different replicas is one session, and the chains verify — and stop verifying when a row is
 * changed or removed behind the gateways' backs.
 */
import Anthropic from '@anthropic-ai/sdk';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic } from '../../src/sandbox/fake-anthropic.js';
import { serve, vigil, type ServeProcess } from '../support/cli.js';
import { CLIENT_KEY, GATEWAY_KEY, tempDir } from '../support/gateway-harness.js';
import { POSTGRES_TEST_URL } from '../support/stores.js';
import { until } from '../support/until.js';

const ADMIN_TOKEN = 'replica-admin-token-0123456789abcdefghij';
const schema = `vigil_replicas_${process.pid}_${Date.now().toString(36)}`;
let fake: FakeAnthropic;
let dir: string;
let config: string;
let replicas: ServeProcess[] = [];
let admin: pg.Client;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: POSTGRES_TEST_URL });
  await admin.connect().catch((err: unknown) => {
    throw new Error(
      `PostgreSQL is not reachable at ${POSTGRES_TEST_URL} (${String(err)}). Start it with: ` +
        'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start',
    );
  });
  fake = await startFakeAnthropic({ apiKey: GATEWAY_KEY });
  dir = tempDir();
  config = path.join(dir, 'vigil.yaml');
  writeFileSync(
    config,
    [
      'store:',
      '  postgres:',
      '    url: { env: VIGIL_TEST_DATABASE_URL }',
      `    schema: ${schema}`,
      'admin:',
      '  tokens: [{ name: oncall, role: admin, token: { env: VIGIL_TEST_ADMIN_TOKEN } }]',
      'connections:',
      '  - name: anthropic',
      `    upstream: ${fake.url}`,
      '    credential: { env: ANTHROPIC_API_KEY }',
      '    approvals: [{ name: large answers, action: hold, when: { max_tokens_above: 4096 }, timeout: 30s }]',
      '',
    ].join('\n'),
  );
  const env = {
    ANTHROPIC_API_KEY: GATEWAY_KEY,
    VIGIL_TEST_DATABASE_URL: POSTGRES_TEST_URL,
    VIGIL_TEST_ADMIN_TOKEN: ADMIN_TOKEN,
  };
  // Started together: migrations on first start must not collide.
  replicas = await Promise.all([0, 1].map(() => serve(['--config', config, '--listen', '127.0.0.1:0'], env)));
}, 30_000);

afterAll(async () => {
  for (const r of replicas) r.child.kill('SIGTERM');
  await Promise.all(replicas.map((r) => r.exited));
  await fake?.close();
  await admin?.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin?.end();
  rmSync(dir, { recursive: true, force: true });
});

const cli = (...args: string[]) => vigil([...args, '--config', config], { VIGIL_TEST_DATABASE_URL: POSTGRES_TEST_URL });

describe('two gateways on one PostgreSQL', () => {
  it('records interleaved traffic from both replicas, one session across them, in verifiable chains', async () => {
    const clients = replicas.map((r) => new Anthropic({ baseURL: r.url, apiKey: CLIENT_KEY, maxRetries: 0 }));
    const calls: Array<Promise<unknown>> = [];
    for (let i = 0; i < 24; i++) {
      const client = clients[i % 2]!;
      const session = i % 3 === 0 ? 'shared-session' : `solo-${i}`;
      const params = {
        model: 'claude-haiku-4-5',
        max_tokens: 50,
        messages: [{ role: 'user' as const, content: `call ${i}` }],
      };
      const options = { headers: { 'x-vigil-session': session } };
      calls.push(
        i % 4 < 2 ? client.messages.create(params, options) : client.messages.stream(params, options).finalMessage(),
      );
    }
    await Promise.all(calls);

    const shared = await cli('sessions', 'show', 'shared-session', '--json');
    expect(shared.code).toBe(0);
    const { exchanges } = JSON.parse(shared.stdout) as {
      exchanges: Array<{ request: { body: { messages: Array<{ content: string }> } }; outcome: string }>;
    };
    expect(exchanges.map((x) => x.request.body.messages[0]!.content).sort()).toEqual(
      ['call 0', 'call 3', 'call 6', 'call 9', 'call 12', 'call 15', 'call 18', 'call 21'].sort(),
    );
    // Both replicas served this session: each writes its own chain.
    const chains = await admin.query(
      `SELECT DISTINCT chain FROM ${schema}.records WHERE session_id = 'shared-session'`,
    );
    expect(chains.rowCount).toBe(2);

    const list = JSON.parse((await cli('sessions', 'list', '--json', '--limit', '100')).stdout) as {
      items: unknown[];
    };
    expect(list.items).toHaveLength(1 + 16);

    const verified = await cli('verify');
    // One chain per replica, and one for the CLI process whose `sessions show` was recorded in the access log.
    expect(verified.stdout).toMatch(/^ok: \d+ records in 3 chains/);
    expect(verified.code).toBe(0);
  });

  it('a call held on one replica is approved through the other', async () => {
    const [a, b] = replicas as [ServeProcess, ServeProcess];
    const call = new Anthropic({ baseURL: a.url, apiKey: CLIENT_KEY, maxRetries: 0 }).messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 8000,
      messages: [{ role: 'user', content: 'held on A, approved on B' }],
    });
    const headers = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
    let id: string | undefined;
    for (let i = 0; i < 200 && !id; i++) {
      const list = (await (await fetch(`${b.adminUrl}/approvals`, { headers })).json()) as {
        items: Array<{ id: string }>;
      };
      id = list.items[0]?.id;
      if (!id) await new Promise((r) => setTimeout(r, 50));
    }
    expect(id).toBeDefined();
    const approved = await fetch(`${b.adminUrl}/approvals/${id}/approve`, {
      method: 'POST',
      headers,
      body: '{"reason":"ok from B"}',
    });
    expect(approved.status).toBe(200);
    const msg = await call;
    expect(msg.content[0]).toMatchObject({ text: 'Echo: held on A, approved on B' });
  });

  it('a replica killed mid-stream: one started after serves at once, and records the cut exchange once the grace is over', async () => {
    const outcomes = async (session: string) =>
      (
        await admin.query(
          `SELECT r.outcome FROM ${schema}.exchanges e LEFT JOIN ${schema}.exchange_results r ON r.exchange_id = e.id
           WHERE e.session_id = $1`,
          [session],
        )
      ).rows.map((r: { outcome: string | null }) => r.outcome);
    const killed = replicas[0]!;
    const answer = new Anthropic({ baseURL: killed.url, apiKey: CLIENT_KEY, maxRetries: 0 }).messages
      .stream(
        {
          model: 'claude-haiku-4-5',
          max_tokens: 300,
          messages: [{ role: 'user', content: 'one two three four five' }],
        },
        { headers: { 'x-vigil-session': 'killed-replica', 'x-fake-scenario': 'slow:40' } },
      )
      .finalMessage();
    answer.catch(() => undefined);
    for (let i = 0; i < 100 && (await outcomes('killed-replica')).length === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 100));
    killed.child.kill('SIGKILL');
    await expect(answer).rejects.toThrow();
    await killed.exited;
    expect(await outcomes('killed-replica')).toEqual([null]);

    // The killed replica's chain lock went with its session; its exchange is cut only if the lock is still free a
    // grace later (a replica whose session merely ended takes it again when it connects again).
    const graceConfig = path.join(dir, 'vigil-grace.yaml');
    writeFileSync(
      graceConfig,
      readFileSync(config, 'utf8').replace(/( {4}schema: .*\n)/, '$1    reconnect_grace: 5s\n'),
    );
    const started = await serve(['--config', graceConfig, '--listen', '127.0.0.1:0'], {
      ANTHROPIC_API_KEY: GATEWAY_KEY,
      VIGIL_TEST_DATABASE_URL: POSTGRES_TEST_URL,
      VIGIL_TEST_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    replicas.push(started);
    expect(await outcomes('killed-replica')).toEqual([null]);
    const served = await new Anthropic({ baseURL: started.url, apiKey: CLIENT_KEY, maxRetries: 0 }).messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'during the grace' }],
    });
    expect(served.content[0]).toMatchObject({ text: 'Echo: during the grace' });
    expect(await outcomes('killed-replica')).toEqual([null]);

    for (let i = 0; i < 200 && (await outcomes('killed-replica'))[0] === null; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await outcomes('killed-replica')).toEqual(['interrupted']);
    // Logged once the recovery is over, a moment after its record commits (and through the process's stderr pipe).
    const said = /"recovered":1,.*recorded exchanges cut by an earlier stop as interrupted/;
    await until('the recovery logged', () => (said.test(started.stderr()) ? true : undefined), 10_000);
  });

  it('the database refuses updates and deletes; verify catches them when the triggers are bypassed', async () => {
    await expect(admin.query(`UPDATE ${schema}.records SET at = at + 1`)).rejects.toThrow(/append-only/);
    await expect(admin.query(`DELETE FROM ${schema}.records`)).rejects.toThrow(/append-only/);

    const { rows } = await admin.query(
      `SELECT chain, chain_seq FROM ${schema}.records WHERE kind = 'exchange.request' ORDER BY seq LIMIT 1`,
    );
    const target = rows[0] as { chain: string; chain_seq: number };
    await admin.query('BEGIN');
    await admin.query(`SET LOCAL session_replication_role = replica`); // as an owner bypassing triggers would
    await admin.query(
      `UPDATE ${schema}.records SET data = replace(data, 'call', 'c4ll') WHERE chain = $1 AND chain_seq = $2`,
      [target.chain, target.chain_seq],
    );
    await admin.query(`DELETE FROM ${schema}.records WHERE chain = $1 AND chain_seq = $2`, [
      target.chain,
      Number(target.chain_seq) + 1,
    ]);
    await admin.query('COMMIT');

    const report = await cli('verify', '--json');
    expect(report.code).toBe(1);
    const problems = (JSON.parse(report.stdout) as { problems: Array<{ problem: string; chainSeq: number }> }).problems;
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ problem: 'changed', chainSeq: Number(target.chain_seq) }),
        expect.objectContaining({ problem: 'missing', chainSeq: Number(target.chain_seq) + 1 }),
      ]),
    );
  });
});
