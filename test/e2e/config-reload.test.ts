/**
 * Reloading the config of a running gateway (SIGHUP, Gateway.reload): connections, who may call, approval rules,
 * usage limits and retention windows change for calls from then on, with the official SDK as the client; a stream
 * under way finishes on the connection it began with; a reload that changes what only a restart applies, or that
 * would not start, changes nothing; and the ledger (so the SIEM) records what changed.
 */
import Anthropic from '@anthropic-ai/sdk';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { VigilConfigInput } from '../../src/config/config-schema.js';
import { validateConfig } from '../../src/config/load-config.js';
import { configDigest, type ConfigReloadedData } from '../../src/config/config-changes.js';
import { ConfigError } from '../../src/errors.js';
import { auditEventOf } from '../../src/export/record-events.js';
import { startFakeAnthropic, type FakeAnthropic } from '../../src/sandbox/fake-anthropic.js';
import { appendOldExchanges } from '../support/old-exchanges.js';
import {
  CLIENT_KEY,
  GATEWAY_KEY,
  postMessages,
  postSlowStream,
  startHarness,
  tempDir,
  type Harness,
} from '../support/gateway-harness.js';
import { serve, vigil } from '../support/cli.js';
import { postedEvents, startRecordingHttpServer } from '../support/recording-http-server.js';
import { until } from '../support/until.js';

type Connection = NonNullable<VigilConfigInput['connections']>[number];

const connection = (name: string, upstream: string, extra: Partial<Connection> = {}): Connection => ({
  name,
  upstream,
  credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
  upstream_timeout: '5s',
  ...extra,
});

let h: Harness | undefined;
const others: FakeAnthropic[] = [];
afterEach(async () => {
  await h?.close();
  h = undefined;
  for (const f of others.splice(0)) await f.close();
});

/** A gateway whose config is `input` (listener and data directory aside); `reload(next)` reloads it with `next`. */
async function gatewayWith(input: (upstream: string) => Partial<VigilConfigInput>) {
  const gw = await startHarness(input);
  h = gw;
  return {
    h: gw,
    reload: (next: Partial<VigilConfigInput>) =>
      gw.gateway.reload(validateConfig({ listen: '127.0.0.1:0', data_dir: gw.dataDir, ...next })),
  };
}

const ask = (client: Anthropic, session: string): Promise<Anthropic.Message> =>
  client.messages.create(
    { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'hello' }] },
    { headers: { 'x-vigil-session': session } },
  );

async function reloadRecords(g: Harness): Promise<ConfigReloadedData[]> {
  const records = await g.gateway.store.recordsOfKinds(['config.reloaded'], 0, 100);
  return records.map((r) => JSON.parse(r.data) as ConfigReloadedData);
}

describe('reloading the config', () => {
  it('applies a new connection, an allow list and an approval rule to the next calls, and records what changed', async () => {
    const { h, reload } = await gatewayWith((up) => ({ connections: [connection('anthropic', up)] }));
    const up = h.fake.url;
    const client = (prefix = '') => new Anthropic({ baseURL: h.url + prefix, apiKey: CLIENT_KEY, maxRetries: 0 });
    await ask(client(), 'before');
    const unknown = await ask(client('/c/team'), 'team-before').catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError);

    const changes = await reload({
      connections: [
        connection('anthropic', up, { allow: [{ subject: 'someone-else' }] }),
        connection('team', up, {
          approvals: [
            { name: 'no secrets', action: 'deny', message: 'not here', when: { prompt_matches: ['launch code'] } },
          ],
        }),
      ],
    });
    expect(changes.restartNeeded).toEqual([]);
    expect(changes.connections).toEqual({
      added: ['team'],
      changed: [{ name: 'anthropic', keys: ['allow'] }],
      removed: [],
    });

    // Anonymous loopback callers are no longer on the default connection's allow list.
    const refused = await ask(client(), 'after').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(Anthropic.PermissionDeniedError);
    // The new connection serves, with its rule.
    const answer = await ask(client('/c/team'), 'team-after');
    expect(answer.content[0]).toMatchObject({ type: 'text' });
    expect((await h.session('team-after', 1))[0]!.connection).toBe('team');
    const denied = await client('/c/team')
      .messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 10,
        messages: [{ role: 'user', content: 'the launch code is 1234' }],
      })
      .catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect((denied as Error).message).toMatch(/not here/);

    // On the ledger: what changed, the new values of what changed, and which config it was.
    const [record] = await reloadRecords(h);
    expect(record).toMatchObject({
      connections: {
        added: ['team'],
        changed: [{ name: 'anthropic', keys: ['allow'], now: { allow: [{ subject: 'someone-else' }] } }],
        removed: [],
      },
    });
    expect(record!.configSha256).toMatch(/^[0-9a-f]{64}$/);
    // And as an audit event for the SIEM, a warning.
    const [stored] = await h.gateway.store.recordsOfKinds(['config.reloaded'], 0, 1);
    expect(auditEventOf(stored!, 'gw')).toMatchObject({
      type: 'config.reloaded',
      severity: 'warning',
      attributes: { added: 'team', changed: 'anthropic(allow)', removed: null, default_connection: null },
    });
    // The chain still verifies with the new record in it.
    expect(await h.gateway.store.verify()).toMatchObject({ ok: true, problems: [] });
  });

  it('lets a stream under way finish on the upstream it began with while new calls go to the new one', async () => {
    const second = await startFakeAnthropic({ apiKey: GATEWAY_KEY });
    others.push(second);
    const { h, reload } = await gatewayWith((up) => ({ connections: [connection('anthropic', up)] }));
    const stream = await postSlowStream(h.url, 'long');
    expect(stream.status).toBe(200);
    const body = stream.text();
    await reload({ connections: [connection('anthropic', second.url)] });
    const client = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
    await ask(client, 'moved');
    // The new call went to the new upstream; the stream, which began before, to the first one.
    expect(second.requests).toHaveLength(1);
    expect(h.fake.requests).toHaveLength(1);
    expect(h.fake.requests[0]!.body.toString()).toMatch(/lighthouse keeper/);
    // It went on to its end while the new call was served, and is recorded whole.
    expect(await body).toMatch(/event: message_stop/);
    const [long] = await h.session('long', 1);
    expect(long!.outcome).toBe('ok');
    expect((await h.session('moved', 1))[0]!.outcome).toBe('ok');
  });

  it('loses no call when reloads come while calls are under way', async () => {
    const second = await startFakeAnthropic({ apiKey: GATEWAY_KEY });
    others.push(second);
    const { h, reload } = await gatewayWith((up) => ({ connections: [connection('anthropic', up)] }));
    const ups = [h.fake.url, second.url];
    const client = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
    const never = {
      name: 'never',
      action: 'deny' as const,
      message: 'no',
      when: { prompt_matches: ['/launch code/'] },
    };
    // 8 agents, 6 streamed calls each, while the connection's upstream and approval rules change 6 times.
    const agents = Array.from({ length: 8 }, async (_, a) => {
      for (let i = 0; i < 6; i++) {
        const text = await client.messages
          .stream(
            {
              model: 'claude-haiku-4-5',
              max_tokens: 30,
              messages: [{ role: 'user', content: `agent ${a} turn ${i}` }],
            },
            { headers: { 'x-vigil-session': `busy-${a}` } },
          )
          .finalText();
        expect(text.length).toBeGreaterThan(0);
      }
    });
    const done = Promise.all(agents);
    done.catch(() => undefined); // awaited below, after the reloads
    for (let r = 1; r <= 6; r++) {
      await new Promise((resolve) => setTimeout(resolve, 15));
      await reload({
        connections: [connection('anthropic', ups[r % 2]!, r % 2 ? { approvals: [never] } : {})],
      });
    }
    await done;
    for (let a = 0; a < 8; a++) {
      const xs = await h.session(`busy-${a}`, 6);
      expect(xs.map((x) => x.outcome)).toEqual(Array(6).fill('ok'));
    }
    // Both upstreams served some; every call went to one of them.
    expect(h.fake.requests.length + second.requests.length).toBe(48);
    expect(Math.min(h.fake.requests.length, second.requests.length)).toBeGreaterThan(0);
    expect(await reloadRecords(h)).toHaveLength(6);
    expect(await h.gateway.store.verify()).toMatchObject({ ok: true });
  });

  it('refuses a reload that changes what only a restart applies, or that would not start, and applies none of it', async () => {
    const { h, reload } = await gatewayWith((up) => ({ connections: [connection('anthropic', up)] }));
    const up = h.fake.url;
    const err = await reload({
      listen: '127.0.0.1:1',
      connections: [connection('anthropic', up), connection('team', up)],
      signing: { interval: '5m' },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([
      'listen: changed, and only a restart applies it (the gateway runs on with the config it had)',
      'signing: changed, and only a restart applies it (the gateway runs on with the config it had)',
    ]);
    // Bound to 127.0.0.1:1 it would not be: and the connection that came with it was not added either.
    const client = new Anthropic({ baseURL: `${h.url}/c/team`, apiKey: CLIENT_KEY, maxRetries: 0 });
    expect(await ask(client, 'refused').catch((e: unknown) => e)).toBeInstanceOf(Anthropic.NotFoundError);
    // Said where an alert can see it: the config pushed is not the config running.
    const scrape = async () => (await fetch(`${h.gateway.adminUrl}/metrics`)).text();
    expect(await scrape()).toMatch(/^vigil_config_last_reload_successful 0$/m);
    // A config that would not start changes nothing either: here a connection's proxy whose variable is not set.
    const unstartable = await reload({
      connections: [connection('anthropic', up), connection('team', up, { proxy: { env: 'VIGIL_TEST_UNSET_PROXY' } })],
    }).catch((e: unknown) => e);
    expect(unstartable).toBeInstanceOf(ConfigError);
    expect((unstartable as ConfigError).problems).toEqual([
      expect.stringMatching(/^connections\[1\] \(team\)\.proxy: .*VIGIL_TEST_UNSET_PROXY/),
    ]);
    expect(await ask(client, 'refused-again').catch((e: unknown) => e)).toBeInstanceOf(Anthropic.NotFoundError);
    // The same config again: nothing to apply, nothing recorded.
    const same = await reload({ connections: [connection('anthropic', up)] });
    expect(same.connections).toEqual({ added: [], changed: [], removed: [] });
    const metrics = await scrape();
    expect(metrics).toMatch(/^vigil_config_last_reload_successful 1$/m);
    const at = Number(/^vigil_config_last_reload_success_timestamp_seconds (\S+)$/m.exec(metrics)![1]);
    expect(Math.abs(at - Date.now() / 1000)).toBeLessThan(10);
    expect(await reloadRecords(h)).toEqual([]);
    // And the gateway serves on as before.
    await ask(new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 }), 'still');
  });

  it('counts what callers used in the window of a limit a reload adds, and keeps the count of a limit it changes', async () => {
    const { h, reload } = await gatewayWith((up) => ({ connections: [connection('anthropic', up)] }));
    const up = h.fake.url;
    const client = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
    await ask(client, 'u1');
    await ask(client, 'u2');
    await h.session('u2', 1);
    await reload({
      connections: [connection('anthropic', up, { limits: [{ name: 'burst', window: '1h', requests: 3 }] })],
    });
    // The two calls before the reload count: one more is admitted.
    await ask(client, 'u3');
    const over = await ask(client, 'u4').catch((e: unknown) => e);
    expect(over).toBeInstanceOf(Anthropic.RateLimitError);
    expect((over as Error).message).toMatch(
      /usage limit "burst" reached: anonymous callers used 3 of 3 calls in the last 1h/,
    );
    // Raised to 4: the 3 already used still count.
    await reload({
      connections: [connection('anthropic', up, { limits: [{ name: 'burst', window: '1h', requests: 4 }] })],
    });
    await ask(client, 'u5');
    expect(await ask(client, 'u6').catch((e: unknown) => e)).toBeInstanceOf(Anthropic.RateLimitError);
    // Removed: calls are admitted again.
    await reload({ connections: [connection('anthropic', up)] });
    await ask(client, 'u7');
  });

  it('announces calls held after a reload to the webhooks it adds', async () => {
    const hook = await startRecordingHttpServer();
    try {
      const hold = { name: 'deploys', action: 'hold' as const, when: { prompt_matches: ['/deploy/'] }, timeout: '2s' };
      const { h, reload } = await gatewayWith((up) => ({
        connections: [connection('anthropic', up, { approvals: [hold] })],
      }));
      const held = (session: string) =>
        postMessages(h.url, session, { messages: [{ role: 'user', content: 'deploy it' }] }).then((r) =>
          r.arrayBuffer(),
        );
      // No webhook yet: held (and timed out), nobody told.
      await held('before');
      expect(hook.requests).toEqual([]);
      const changes = await reload({
        connections: [connection('anthropic', h.fake.url, { approvals: [hold] })],
        approvals: { webhooks: [{ name: 'oncall', url: hook.url, retries: 0 }] },
      });
      expect(changes.approvals).toBe(true);
      const call = held('after');
      await until('the webhook to be told', async () => (hook.requests.length ? true : undefined));
      expect(JSON.parse(hook.requests[0]!.body)).toMatchObject({
        type: 'approval.held',
        approval: { connection: 'anthropic' },
      });
      await call;
      expect((await reloadRecords(h))[0]).toMatchObject({ approvals: { webhooks: ['oncall'] } });
    } finally {
      await hook.close();
    }
  });

  it('streams to the SIEM sinks a reload adds, goes on from its cursor at a sink’s new address, stops at a removed one', async () => {
    const [soc, moved] = [await startRecordingHttpServer(), await startRecordingHttpServer()];
    try {
      const { h, reload } = await gatewayWith((up) => ({ connections: [connection('anthropic', up)] }));
      const client = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
      const sink = (url: string) => ({ siem: { sinks: [{ type: 'http' as const, name: 'soc', url }] } });
      const completed = (requests: typeof soc.requests) =>
        postedEvents(requests).flatMap((e) => (e.type === 'exchange.completed' ? [e.session] : []));
      await ask(client, 'before-sink');
      await h.session('before-sink', 1);
      // Added: what the ledger holds reaches it, from the start (the call before it too), and the reload itself.
      const changes = await reload({ connections: [connection('anthropic', h.fake.url)], ...sink(soc.url) });
      expect(changes.siem).toBe(true);
      await until('the sink to get the call before it', async () =>
        completed(soc.requests).includes('before-sink') ? true : undefined,
      );
      await until('the sink to get the reload', async () =>
        postedEvents(soc.requests).some((e) => e.type === 'config.reloaded') ? true : undefined,
      );
      // Moved (same name, new address): it goes on from its cursor, nothing sent twice.
      await reload({ connections: [connection('anthropic', h.fake.url)], ...sink(moved.url) });
      await ask(client, 'after-move');
      await until('the moved sink to get the next call', async () =>
        completed(moved.requests).includes('after-move') ? true : undefined,
      );
      expect(completed(moved.requests)).not.toContain('before-sink');
      expect(completed(soc.requests)).not.toContain('after-move');
      // Removed: nothing more is sent.
      await reload({ connections: [connection('anthropic', h.fake.url)] });
      await ask(client, 'after-removal');
      await h.session('after-removal', 1);
      await new Promise((r) => setTimeout(r, 1200));
      expect(completed(moved.requests)).not.toContain('after-removal');
    } finally {
      await soc.close();
      await moved.close();
    }
  });

  it('takes a larger request body, a retention schedule and a shorter shutdown grace without a restart', async () => {
    const before = {
      limits: { max_request_body: 4096 },
      retention: { default: '1d', schedule: 0 },
      shutdown: { grace: '30s' },
      signing: { interval: 0 },
    } as const;
    const { h, reload } = await gatewayWith((up) => ({ connections: [connection('anthropic', up)], ...before }));
    const client = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
    const long = (session: string) =>
      client.messages.create(
        { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'x'.repeat(8000) }] },
        { headers: { 'x-vigil-session': session } },
      );
    const tooLarge = await long('large-before').catch((e: unknown) => e);
    expect(tooLarge).toBeInstanceOf(Anthropic.APIError);
    expect((tooLarge as InstanceType<typeof Anthropic.APIError>).status).toBe(413);
    // Retention has a window but no schedule: nothing is purged.
    await appendOldExchanges(h.gateway.store, 3, Date.now() - 3 * 86_400_000);
    await new Promise((r) => setTimeout(r, 400));
    expect((await h.gateway.store.listSessions({})).items.length).toBeGreaterThan(0);

    const changes = await reload({
      connections: [connection('anthropic', h.fake.url)],
      limits: { max_request_body: 1_048_576 },
      retention: { default: '1d', schedule: '200ms' },
      shutdown: { grace: '200ms' },
      signing: { interval: 0 },
    });
    expect(changes).toMatchObject({ limits: true, retention: true, shutdown: true, restartNeeded: [] });
    await long('large-after');
    await until('the old exchanges to be purged', async () =>
      (await h.gateway.store.listSessions({})).items.filter((x) => x.id !== 'large-after').length === 0
        ? true
        : undefined,
    );
    const [record] = await reloadRecords(h);
    expect(record).toMatchObject({
      limits: { maxRequestBody: 1_048_576, maxRecordedResponseBody: 67_108_864 },
      retention: { default: 86_400_000, schedule: 200 },
      shutdown: { grace: 200 },
    });
    expect(h.gateway.runningConfig().shutdown.grace).toBe(200);

    // A stream whose events come 2 s apart (within the connection's 5 s upstream timeout) for far longer than the new
    // grace: the gateway stops after the new grace, not the old one.
    const stream = await postSlowStream(h.url, 'cut-by-grace', 'slow:2000');
    expect(stream.status).toBe(200);
    const t0 = Date.now();
    await h.gateway.close();
    expect(Date.now() - t0).toBeLessThan(10_000);
    await stream.body?.cancel().catch(() => undefined);
  });

  it('purges on the retention window a reload sets', async () => {
    const { h, reload } = await gatewayWith((up) => ({
      connections: [connection('anthropic', up)],
      retention: { schedule: '200ms' },
      signing: { interval: 0 },
    }));
    await appendOldExchanges(h.gateway.store, 3, Date.now() - 3 * 86_400_000);
    await new Promise((r) => setTimeout(r, 400));
    // Kept forever (the default) so far.
    expect((await h.gateway.store.listSessions({})).items.length).toBeGreaterThan(0);
    await reload({
      connections: [connection('anthropic', h.fake.url)],
      retention: { schedule: '200ms', default: '1d' },
      signing: { interval: 0 },
    });
    await until('the old exchanges to be purged', async () =>
      (await h.gateway.store.listSessions({})).items.length === 0 ? true : undefined,
    );
    const [record] = await reloadRecords(h);
    expect(record).toMatchObject({ retention: { default: 86_400_000, batch: 1000 } });
  });
});

describe('POST /api/v1/config/reload', () => {
  it('reads the config again for an admin, records who asked, and answers what is wrong with one it refuses', async () => {
    let connections: Connection[] = [];
    const gw = await startHarness(
      (up) => ({ connections: connections.length ? connections : [connection('anthropic', up)] }),
      {},
      {
        reloadable: true,
      },
    );
    h = gw;
    const up = gw.fake.url;
    const post = (headers: Record<string, string> = {}) =>
      fetch(`${gw.gateway.adminUrl}/api/v1/config/reload`, { method: 'POST', headers });

    connections = [connection('anthropic', up), connection('team', up)];
    const res = await post();
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      restartNeeded: [],
      connections: { added: ['team'], changed: [], removed: [] },
    });
    const team = new Anthropic({ baseURL: `${gw.url}/c/team`, apiKey: CLIENT_KEY, maxRetries: 0 });
    await ask(team, 'via-api');
    // The record names who asked: here the local admin (loopback, no identity configured).
    const [record] = await reloadRecords(gw);
    expect(record!.by).toMatchObject({ subject: expect.any(String) });
    expect(record!.by.method).not.toBe('signal');
    const [stored] = await gw.gateway.store.recordsOfKinds(['config.reloaded'], 0, 1);
    expect(auditEventOf(stored!, 'gw')).toMatchObject({ actor: { method: record!.by.method } });

    // One it refuses: 400, in the admin API's error shape, with every problem by its path; nothing applied.
    connections = [connection('anthropic', up), connection('team', up), connection('third', 'ftp://nowhere')];
    const bad = await post();
    expect(bad.status).toBe(400);
    const body = (await bad.json()) as { error: { type: string; message: string } };
    expect(body.error.type).toBe('invalid_request_error');
    expect(body.error.message).toMatch(/^invalid configuration:\n {2}- connections\[2\] \(third\)\.upstream/);
    const third = new Anthropic({ baseURL: `${gw.url}/c/third`, apiKey: CLIENT_KEY, maxRetries: 0 });
    expect(await ask(third, 'refused').catch((e: unknown) => e)).toBeInstanceOf(Anthropic.NotFoundError);
    expect(await (await fetch(`${gw.gateway.adminUrl}/metrics`)).text()).toMatch(
      /^vigil_config_last_reload_successful 0$/m,
    );
  });

  it('GET /config says which config runs, whether the last reload was applied, and the reloads with who asked', async () => {
    let connections: Connection[] = [];
    const gw = await startHarness(
      (up) => ({ connections: connections.length ? connections : [connection('anthropic', up)] }),
      {},
      { reloadable: true },
    );
    h = gw;
    const up = gw.fake.url;
    const status = async () =>
      (await (await fetch(`${gw.gateway.adminUrl}/api/v1/config`)).json()) as {
        sha256: string;
        lastReload: { successful: boolean; lastSuccessAt: number };
        reloadable: boolean;
        reloads: Array<ConfigReloadedData & { at: number }>;
      };
    const first = await status();
    expect(first).toMatchObject({ reloadable: true, lastReload: { successful: true }, reloads: [] });
    expect(first.sha256).toBe(configDigest(gw.gateway.runningConfig()));

    for (const names of [
      ['anthropic', 'team'],
      ['anthropic', 'team', 'ci'],
    ]) {
      connections = names.map((n) => connection(n, up));
      expect((await fetch(`${gw.gateway.adminUrl}/api/v1/config/reload`, { method: 'POST' })).status).toBe(200);
    }
    connections = [connection('anthropic', 'ftp://nowhere')];
    expect((await fetch(`${gw.gateway.adminUrl}/api/v1/config/reload`, { method: 'POST' })).status).toBe(400);

    const after = await status();
    // The config running is the last one applied; the refused one is said, not run.
    expect(after.sha256).toBe(configDigest(gw.gateway.runningConfig()));
    expect(after.sha256).not.toBe(first.sha256);
    expect(after.lastReload.successful).toBe(false);
    expect(after.reloads.map((r) => r.connections.added)).toEqual([['ci'], ['team']]);
    expect(after.reloads[0]).toMatchObject({
      by: { method: 'local_user', subject: 'admin-api:localhost' },
      configSha256: after.sha256,
      at: expect.any(Number),
    });
  });

  it('is not there for a gateway that cannot read its config again', async () => {
    const { h } = await gatewayWith((up) => ({ connections: [connection('anthropic', up)] }));
    const res = await fetch(`${h.gateway.adminUrl}/api/v1/config/reload`, { method: 'POST' });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({
      error: { message: 'this gateway was started without a config it can read again' },
    });
  });
});

describe('vigil serve on SIGHUP', () => {
  it('reads its config file again and applies it; a config that is not valid changes nothing and says why', async () => {
    const fake = await startFakeAnthropic({ apiKey: GATEWAY_KEY });
    others.push(fake);
    const dir = tempDir();
    const file = path.join(dir, 'vigil.yaml');
    const yaml = (names: string[]) =>
      [
        'listen: 127.0.0.1:0',
        `data_dir: ${path.join(dir, 'data')}`,
        'connections:',
        ...names.flatMap((n) => [
          `  - name: ${n}`,
          `    upstream: ${fake.url}`,
          '    credential: { env: VIGIL_TEST_KEY }',
        ]),
        '',
      ].join('\n');
    writeFileSync(file, yaml(['anthropic']));
    const gw = await serve(['--config', file], { VIGIL_TEST_KEY: GATEWAY_KEY });
    try {
      const team = new Anthropic({ baseURL: `${gw.url}/c/team`, apiKey: CLIENT_KEY, maxRetries: 0 });
      expect(await ask(team, 'before').catch((e: unknown) => e)).toBeInstanceOf(Anthropic.NotFoundError);

      writeFileSync(file, yaml(['anthropic', 'team']));
      // `vigil config check` names the config by a digest, which the running gateway reports once it runs it.
      const checked = await vigil(['config', 'check', '--config', file], { VIGIL_TEST_KEY: GATEWAY_KEY });
      const digest = /^ {2}sha256 ([0-9a-f]{64})$/m.exec(checked.stdout)![1]!;
      const metricsUrl = `${gw.adminUrl!.replace(/\/api\/v1$/, '')}/metrics`;
      const info = async () =>
        /^vigil_config_info\{sha256="([0-9a-f]{64})"\} 1$/m.exec(await (await fetch(metricsUrl)).text())?.[1];
      expect(await info()).not.toBe(digest);
      gw.child.kill('SIGHUP');
      await until('the reload to be logged', async () =>
        /"msg":"config reloaded/.test(gw.stderr()) ? true : undefined,
      );
      await ask(team, 'after');
      expect(await info()).toBe(digest);

      writeFileSync(file, `${yaml(['anthropic', 'team'])}  - name: broken\n    upstream: ftp://nowhere\n`);
      gw.child.kill('SIGHUP');
      await until('the refusal to be logged', async () => (/config not reloaded/.test(gw.stderr()) ? true : undefined));
      expect(gw.stderr()).toMatch(
        /config not reloaded: invalid configuration:[^"]*connections\[2\] \(broken\)\.upstream/,
      );
      // A change only a restart applies: refused, by its path.
      writeFileSync(file, yaml(['anthropic', 'team']).replace('listen: 127.0.0.1:0', 'listen: 127.0.0.1:1'));
      gw.child.kill('SIGHUP');
      await until('the second refusal to be logged', async () =>
        /config not reloaded:\\n {2}- listen: changed, and only a restart applies it/.test(gw.stderr())
          ? true
          : undefined,
      );
      // Still serving, both connections.
      await ask(team, 'still');
      await ask(new Anthropic({ baseURL: gw.url, apiKey: CLIENT_KEY, maxRetries: 0 }), 'default');
    } finally {
      gw.child.kill('SIGTERM');
      expect(await gw.exited).toBe(0);
    }
  });
});
