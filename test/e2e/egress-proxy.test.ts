/**
 * A connection whose upstream is reached through a company's egress proxy: a real CONNECT proxy that wants
 * credentials, the official SDK as the client. The proxy sees a tunnel to the upstream and the gateway's proxy
 * credentials, nothing of the calls; the proxy's password is in no log; a proxy that refuses gives the client an
 * error in Anthropic's shape.
 */
import Anthropic from '@anthropic-ai/sdk';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';
import { ConnectProxy } from '../support/connect-proxy.js';

const PASSWORD = 'proxy-pass-5e3f9a';

describe('a connection through an egress proxy', () => {
  const proxy = new ConnectProxy(`vigil:${PASSWORD}`);
  const logs: string[] = [];
  let h: Harness;
  let proxyPort: number;

  beforeAll(async () => {
    proxyPort = await proxy.listen();
    process.env.VIGIL_TEST_PROXY = `http://vigil:${PASSWORD}@127.0.0.1:${proxyPort}`;
    process.env.VIGIL_TEST_BAD_PROXY = `http://vigil:wrong@127.0.0.1:${proxyPort}`;
    const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(line) });
    h = await startHarness(
      (upstream) => ({
        connections: [
          {
            name: 'anthropic',
            upstream,
            credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
            proxy: { env: 'VIGIL_TEST_PROXY' },
          },
          {
            name: 'refused',
            upstream,
            credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
            proxy: { env: 'VIGIL_TEST_BAD_PROXY' },
          },
        ],
      }),
      {},
      { log },
    );
  });
  afterAll(async () => {
    await h?.close();
    await proxy.close();
    delete process.env.VIGIL_TEST_PROXY;
    delete process.env.VIGIL_TEST_BAD_PROXY;
  });

  it('sends calls through a tunnel with the proxy credentials, and records them as any', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
    const params = {
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      messages: [{ role: 'user' as const, content: 'via proxy' }],
    };
    const { data: msg, response } = await client.messages.create(params).withResponse();
    expect(msg.content[0]).toMatchObject({ text: 'Echo: via proxy' });
    const streamed = await client.messages.stream(params).finalMessage();
    expect(streamed.content[0]).toMatchObject({ text: 'Echo: via proxy' });

    const upstream = new URL(h.fake.url);
    expect(proxy.tunnels.length).toBeGreaterThan(0);
    for (const t of proxy.tunnels.filter((t) => t.allowed)) {
      expect(t).toEqual({
        target: `${upstream.hostname}:${upstream.port}`,
        credentials: `vigil:${PASSWORD}`,
        allowed: true,
      });
    }
    expect((await h.exchange(response.headers.get('x-vigil-exchange-id')!)).outcome).toBe('ok');
    expect(
      logs.some((l) => l.includes('upstream reached through a proxy') && l.includes(`http://127.0.0.1:${proxyPort}`)),
    ).toBe(true);
  });

  it("answers 502 in Anthropic's shape when the proxy refuses, naming the connection; no log holds the password", async () => {
    const refused = await fetch(`${h.url}/c/refused/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': CLIENT_KEY, 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(refused.status).toBe(502);
    expect(await refused.json()).toEqual({
      type: 'error',
      error: { type: 'api_error', message: 'upstream of connection "refused" is unreachable' },
    });
    expect(proxy.tunnels.some((t) => !t.allowed && t.credentials === 'vigil:wrong')).toBe(true);
    const failed = logs.find((l) => l.includes('upstream request failed'));
    expect(failed).toContain(`"proxy":"http://127.0.0.1:${proxyPort}"`);
    expect(logs.join('\n')).not.toContain(PASSWORD);
    expect(logs.join('\n')).not.toContain('vigil:wrong');
  });
});
