/**
 * What a call the gateway refused or failed itself records as its response's status: the status the client received
 * (a deny rule's 403, an in-flight DLP block's 400, an unreachable upstream's 502, an upstream timeout's 504), in the
 * exchange, its index row, and `vigil sessions show` — on each store; and replaying it answers what the client received.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExchangeView } from '../../src/recorder/exchange-reader.js';
import { startReplayServer } from '../../src/replay/replay-server.js';
import { vigil } from '../support/cli.js';
import { CLIENT_KEY, clientHeaders, startHarness, type Harness } from '../support/gateway-harness.js';
import { POSTGRES_TEST_URL, storeKinds } from '../support/stores.js';

describe.each(storeKinds())('on %s', (kind) => {
  // Went wrong: these were recorded with `response.status: null`, and the transcript read `→ - gateway_error`,
  // though the client had received a 403, 400, 502 or 504 from the gateway.
  const schema = `vigil_refusals_${process.pid}_${Date.now().toString(36)}`;
  let h: Harness;
  let configFile: string;

  beforeAll(async () => {
    const store = kind === 'postgres' ? { store: { postgres: { url: POSTGRES_TEST_URL, schema } } } : {};
    const credential = { env: 'VIGIL_TEST_UPSTREAM_KEY' };
    h = await startHarness((upstream) => ({
      ...store,
      connections: [
        {
          name: 'anthropic',
          upstream,
          credential,
          upstream_timeout: '500ms',
          approvals: [
            {
              name: 'production credentials',
              action: 'deny',
              message: 'production credentials must not be sent to Claude',
              when: { prompt_matches: ['/prod-db\\.internal/i'] },
            },
          ],
        },
        { name: 'dlp-block', upstream, credential, masking: { in_flight: 'block' } },
        { name: 'nowhere', upstream: 'http://127.0.0.1:1', credential },
      ],
    }));
    configFile = path.join(h.dataDir, 'cli.yaml');
    writeFileSync(
      configFile,
      JSON.stringify({ data_dir: h.dataDir, ...store, connections: [{ name: 'anthropic', upstream: h.fake.url }] }),
    );
  });
  afterAll(async () => {
    await h?.close();
    if (kind === 'postgres') {
      const admin = new pg.Client({ connectionString: POSTGRES_TEST_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.end();
    }
  });

  const post = (prefix: string, text: string, session: string, headers: Record<string, string> = {}) =>
    fetch(`${h.url}${prefix}/v1/messages`, {
      method: 'POST',
      headers: { ...clientHeaders(session), ...headers },
      body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 20, messages: [{ role: 'user', content: text }] }),
    });

  it.each([
    ['a deny rule', '', 'connect to prod-db.internal', {}, 403, 'approval_rule_denied'],
    ['an in-flight DLP block', '/c/dlp-block', 'my key is AKIAIOSFODNN7EXAMPLE', {}, 400, 'dlp_blocked'],
    ['an unreachable upstream', '/c/nowhere', 'hello', {}, 502, 'api_error'],
    ['an upstream timeout', '', 'hello', { 'x-fake-scenario': 'hang' }, 504, 'timeout_error'],
  ])('records %s with the status the client received', async (_what, prefix, text, headers, status, type) => {
    const session = `refused-${status}`;
    const res = await post(prefix, text, session, headers);
    expect(res.status).toBe(status);
    const [x] = await h.session(session, 1);
    expect(x!.outcome).toBe('gateway_error');
    expect(x!.response.status).toBe(status);
    expect(x!.response.error?.type).toBe(type);
    // The index row the lists read.
    expect(await h.gateway.store.listExchanges(session)).toEqual([expect.objectContaining({ status })]);

    const shown = await vigil(['sessions', 'show', session, '--config', configFile]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain(`→ ${status} gateway_error`);

    // Went wrong: /metrics labelled these `status="none"`, though the recording carried the status.
    const metrics = await (await fetch(`${h.gateway.adminUrl}/metrics`)).text();
    const connection = prefix ? prefix.slice('/c/'.length) : 'anthropic';
    expect(metrics).toContain(
      `vigil_requests_total{connection="${connection}",outcome="gateway_error",status="${status}"}`,
    );
  });

  it.each([
    ['a deny rule', '', 'connect to prod-db.internal', {}],
    ['an in-flight DLP block', '/c/dlp-block', 'my key is AKIAIOSFODNN7EXAMPLE', {}],
    ['an unreachable upstream', '/c/nowhere', 'hello', {}],
    ['an upstream timeout', '', 'hello', { 'x-fake-scenario': 'hang' }],
  ])('replays %s as the client received it', async (_what, prefix, text, headers) => {
    // Went wrong: a replayed refusal had the recorded status but Vigil's internal reason as its error type
    // (`approval_rule_denied`, `dlp_blocked`) and a deny rule's message with the rule's name the record adds, where
    // the client had received `permission_error` / `invalid_request_error` and the rule's message.
    const session = `replayed-${prefix || 'anthropic'}-${text.length}-${Object.keys(headers).length}`;
    const res = await post(prefix, text, session, headers);
    const received = { status: res.status, body: (await res.json()) as unknown };
    const replay = await startReplayServer({ exchanges: await h.session(session, 1), speed: 0 });
    try {
      const again = await fetch(`${replay.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
        body: JSON.stringify({
          model: 'claude-haiku-4-5',
          max_tokens: 20,
          messages: [{ role: 'user', content: text }],
        }),
      });
      expect({ status: again.status, body: (await again.json()) as unknown }).toEqual(received);
    } finally {
      await replay.close();
    }
  });
});

describe('a call held for approval when the gateway shuts down', () => {
  it('is recorded, and replayed, as the 503 the client received', async () => {
    // Went wrong: it was recorded as `interrupted` with a message of its own, and replayed as 503 `api_error` with
    // that message; the client had received 503 `overloaded_error` "the gateway is shutting down; retry".
    const h = await startHarness((upstream) => ({
      connections: [
        {
          name: 'anthropic',
          upstream,
          credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
          approvals: [{ name: 'deploys', action: 'hold', when: { prompt_matches: ['/deploy/'] }, timeout: '5m' }],
        },
      ],
    }));
    let closed = false;
    try {
      const request = {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': CLIENT_KEY },
        body: JSON.stringify({
          model: 'claude-haiku-4-5',
          max_tokens: 20,
          messages: [{ role: 'user', content: 'deploy' }],
        }),
      };
      const answer = fetch(`${h.url}/v1/messages`, {
        ...request,
        headers: { ...request.headers, 'x-vigil-session': 'shutdown-held' },
      });
      for (let i = 0; i < 100; i++) {
        const listed = await vigil(['approvals', 'list', '--json', '--data-dir', h.dataDir]);
        if ((JSON.parse(listed.stdout) as { items: unknown[] }).items.length > 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      await h.gateway.close(1000);
      closed = true;
      const res = await answer;
      const received = { status: res.status, body: (await res.json()) as { error: { type: string; message: string } } };
      expect(received).toMatchObject({ status: 503, body: { error: { type: 'overloaded_error' } } });
      const shown = JSON.parse(
        (await vigil(['sessions', 'show', 'shutdown-held', '--json', '--data-dir', h.dataDir])).stdout,
      ) as { exchanges: ExchangeView[] };
      expect(shown.exchanges[0]!.response).toMatchObject({ status: 503, error: received.body.error });
      const replay = await startReplayServer({ exchanges: shown.exchanges, speed: 0 });
      try {
        const again = await fetch(`${replay.url}/v1/messages`, request);
        expect({ status: again.status, body: (await again.json()) as unknown }).toEqual(received);
      } finally {
        await replay.close();
      }
    } finally {
      if (!closed) await h.gateway.close(1000);
      await h.fake.close();
    }
  }, 30_000);
});
