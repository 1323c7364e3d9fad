/**
 * A request that cannot be recorded is not forwarded (503 api_error, so SDKs retry), unless its connection says
 * `recording: best_effort`. The store failing here is real: its database connection is closed under the gateway.
 */
import Anthropic, { APIError } from '@anthropic-ai/sdk';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness((upstream) => ({
    connections: [
      { name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
      { name: 'lenient', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' }, recording: 'best_effort' },
    ],
  }));
  await h.gateway.store.close(); // the store is gone: every write now fails
});
afterAll(() => h?.close());

const ask = (path: string) =>
  new Anthropic({ baseURL: `${h.url}${path}`, apiKey: CLIENT_KEY, maxRetries: 0 }).messages.create({
    model: 'claude-haiku-4-5',
    max_tokens: 10,
    messages: [{ role: 'user', content: 'must be recorded' }],
  });

it('refuses with 503 api_error and forwards nothing when the request cannot be recorded', async () => {
  const before = h.fake.requests.length;
  const err = (await ask('').catch((e: unknown) => e)) as APIError;
  expect(err).toBeInstanceOf(Anthropic.InternalServerError);
  expect(err.status).toBe(503);
  expect(err.error).toMatchObject({
    type: 'error',
    error: { type: 'api_error', message: expect.stringMatching(/cannot record/) },
  });
  expect(err.headers?.get('retry-after')).toBe('1');
  expect(h.fake.requests.length).toBe(before);
});

it('forwards anyway on a best_effort connection, and counts the failure', async () => {
  const msg = await ask('/c/lenient');
  expect(msg.content[0]).toMatchObject({ text: 'Echo: must be recorded' });
  expect(h.gateway.recorder.failures).toBeGreaterThan(0);
  const health = (await (await fetch(`${h.url}/healthz`)).json()) as { recording_failures: number };
  expect(health.recording_failures).toBeGreaterThan(0);
});
