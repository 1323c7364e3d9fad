/**
 * Recording levels per connection: `metadata` keeps who, what model, tokens, timings and outcome but no body bytes;
 * `off` keeps nothing.
 */
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLIENT_KEY, filesContaining, startHarness, type Harness } from '../support/gateway-harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness((upstream) => ({
    connections: [
      { name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
      { name: 'meta', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' }, record: 'metadata' },
      { name: 'unrecorded', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' }, record: 'off' },
    ],
  }));
});
afterAll(() => h?.close());

const ask = (path: string, text: string, session: string, stream: boolean) => {
  const c = new Anthropic({ baseURL: `${h.url}${path}`, apiKey: CLIENT_KEY, maxRetries: 0 });
  const params = { model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user' as const, content: text }] };
  const options = { headers: { 'x-vigil-session': session } };
  return stream ? c.messages.stream(params, options).finalMessage() : c.messages.create(params, options);
};

it('metadata: identity, model, tokens, timings and outcome, without a byte of any body', async () => {
  await ask('/c/meta', 'UNIQUE-METADATA-PROMPT-streamed', 'meta-session', true);
  await ask('/c/meta', 'UNIQUE-METADATA-PROMPT-json', 'meta-session', false);
  const xs = await h.session('meta-session', 2);
  for (const x of xs) {
    expect(x).toMatchObject({
      connection: 'meta',
      outcome: 'ok',
      model: 'claude-haiku-4-5',
      caller: { subject: 'anonymous' },
    });
    expect(x.usage?.output_tokens).toBeGreaterThan(0);
    expect(x.response.duration_ms).toEqual(expect.any(Number));
    expect(x.request.body).toBeNull();
    expect(x.request.headers).toEqual({});
    expect(x.response.body).toBeNull();
    expect(x.response.message).toBeNull();
    expect(x.response.events).toEqual([]);
  }
  await h.gateway.recorder.queue.flush();
  expect(filesContaining(h.dataDir, 'UNIQUE-METADATA-PROMPT')).toEqual([]);
  expect(filesContaining(h.dataDir, 'Echo:')).toEqual([]);
});

it('off: nothing is recorded, and the client is served as usual', async () => {
  const msg = await ask('/c/unrecorded', 'UNIQUE-OFF-PROMPT', 'off-session', true);
  expect(msg.content[0]).toMatchObject({ text: 'Echo: UNIQUE-OFF-PROMPT' });
  await h.gateway.recorder.queue.flush();
  expect((await h.gateway.store.sessionRecords('off-session')).length).toBe(0);
  expect(filesContaining(h.dataDir, 'UNIQUE-OFF-PROMPT')).toEqual([]);
});

it('full (the default) next to them still records everything', async () => {
  await ask('', 'UNIQUE-FULL-PROMPT', 'full-session', true);
  const [x] = await h.session('full-session', 1);
  expect(x!.response.events.length).toBeGreaterThan(3);
  await h.gateway.recorder.queue.flush();
  expect(filesContaining(h.dataDir, 'UNIQUE-FULL-PROMPT').length).toBeGreaterThan(0);
});

// Last: it shuts the gateway down.
it('off: a stream in flight at shutdown still finishes within the grace period', async () => {
  // Went wrong: unrecorded exchanges were not counted as in flight, so shutdown cut them at once.
  const c = new Anthropic({ baseURL: `${h.url}/c/unrecorded`, apiKey: CLIENT_KEY, maxRetries: 0 });
  const stream = c.messages.stream(
    { model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'a slow answer, unrecorded' }] },
    { headers: { 'x-fake-scenario': 'slow:40' } },
  );
  await new Promise<void>((resolve) => stream.once('text', () => resolve()));
  const closed = h.gateway.close(10_000);
  const msg = await stream.finalMessage();
  expect(msg.stop_reason).toBe('end_turn');
  expect(msg.content[0]).toMatchObject({ text: 'Echo: a slow answer, unrecorded' });
  await closed;
});
