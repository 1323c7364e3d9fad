import Anthropic, { APIError } from '@anthropic-ai/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import type { EventView } from '../../../src/recorder/exchange-reader.js';
import { startReplayServer, type ReplayServer } from '../../../src/replay/replay-server.js';
import { recorded } from './recorded-exchange.js';

const open: ReplayServer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});
async function serve(...xs: Parameters<typeof recorded>[0][]): Promise<ReplayServer> {
  const s = await startReplayServer({ exchanges: xs.map(recorded), speed: 0 });
  open.push(s);
  return s;
}
/** A Messages API request with one user turn, typed as the SDK takes it; recorded bodies use the same shape. */
const messages = (text: string) => ({
  model: 'claude-test',
  max_tokens: 100,
  messages: [{ role: 'user' as const, content: text }],
});
const post = (url: string, body: unknown, path = '/v1/messages') =>
  fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

const reply = {
  id: 'msg_1',
  type: 'message',
  role: 'assistant',
  model: 'claude-test',
  content: [{ type: 'text', text: 'Hello!' }],
  stop_reason: 'end_turn',
  stop_sequence: null,
  usage: { input_tokens: 3, output_tokens: 2 },
};

/** The events of a streamed `Hello!`, with offsets; `upTo` keeps only the first events (a cut stream). */
function helloEvents(upTo?: number): EventView[] {
  const data = [
    {
      type: 'message_start',
      message: { ...reply, content: [], stop_reason: null, usage: { input_tokens: 3, output_tokens: 0 } },
    },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hel' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'lo!' } },
    { type: 'content_block_stop', index: 0 },
    { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 2 } },
    { type: 'message_stop' },
  ];
  return data.slice(0, upTo).map((d, i) => ({ type: d.type, data: d, offset_ms: 10 + i * 5 }));
}

describe('replay server', () => {
  it('replays a recorded 529 and then the recorded retry, as the SDK retries', async () => {
    const s = await serve(
      {
        body: messages('hi'),
        status: 529,
        headers: { 'content-type': 'application/json', 'retry-after-ms': '1', 'request-id': 'req_a' },
        responseBody: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } },
      },
      {
        body: messages('hi'),
        responseBody: reply,
        headers: { 'content-type': 'application/json', 'request-id': 'req_b' },
      },
    );
    const client = new Anthropic({ baseURL: s.url, apiKey: 'unused', maxRetries: 2 });
    const { data, response } = await client.messages.create(messages('hi')).withResponse();
    expect(data).toEqual(reply);
    expect(response.headers.get('request-id')).toBe('req_b');
    expect(s.served).toBe(2);
  });

  it('streams the recorded events as SSE frames', async () => {
    const s = await serve({ body: { ...messages('hi'), stream: true }, events: helloEvents() });
    const res = await post(s.url, { ...messages('hi'), stream: true });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const text = await res.text();
    expect(text.startsWith(`event: message_start\ndata: ${JSON.stringify(helloEvents()[0]!.data)}\n\n`)).toBe(true);
    expect(text.endsWith('event: message_stop\ndata: {"type":"message_stop"}\n\n')).toBe(true);

    const again = await serve({ body: { ...messages('hi'), stream: true }, events: helloEvents() });
    const client = new Anthropic({ baseURL: again.url, apiKey: 'unused', maxRetries: 0 });
    expect((await client.messages.stream(messages('hi')).finalMessage()).content).toEqual(reply.content);
  });

  it('cuts a stream again where the recording was cut', async () => {
    const s = await serve({
      body: { ...messages('hi'), stream: true },
      events: helloEvents(3),
      outcome: 'upstream_aborted',
    });
    const client = new Anthropic({ baseURL: s.url, apiKey: 'unused', maxRetries: 0 });
    const stream = client.messages.stream(messages('hi'));
    const texts: string[] = [];
    stream.on('text', (t) => texts.push(t));
    await expect(stream.finalMessage()).rejects.toThrow();
    expect(texts).toEqual(['Hel']);
  });

  it('gives back the error the gateway recorded when there was no upstream response', async () => {
    const s = await serve({
      body: messages('hi'),
      status: null,
      outcome: 'gateway_error',
      error: { type: 'api_error', message: 'upstream unreachable: connect ECONNREFUSED' },
    });
    const res = await post(s.url, messages('hi'));
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({
      type: 'error',
      error: { type: 'api_error', message: 'upstream unreachable: connect ECONNREFUSED' },
    });
  });

  it('gives back a refusal the gateway recorded with the status the client received', async () => {
    // Went wrong (once refusals recorded their status): a recorded 403 without an upstream response replayed as an
    // empty 403, not the recorded error.
    const s = await serve({
      body: messages('hi'),
      status: 403,
      headers: {},
      firstByteMs: null,
      outcome: 'gateway_error',
      error: { type: 'approval_rule_denied', message: 'rule "prod": production credentials must not be sent' },
    });
    const res = await post(s.url, messages('hi'));
    expect(res.status).toBe(403);
    // Went wrong: the replay answered with Vigil's internal reason as the type and the recorded message, rule name
    // and all; the client had received `permission_error` and the rule's message.
    expect(await res.json()).toEqual({
      type: 'error',
      error: { type: 'permission_error', message: 'production credentials must not be sent' },
    });
  });

  it('answers count_tokens and models with defaults when the session did not record them, and diverges otherwise', async () => {
    const s = await serve({ id: 'ex_only', body: messages('hi'), responseBody: reply });
    const count = await post(s.url, messages('something else'), '/v1/messages/count_tokens');
    expect(count.status).toBe(200);
    expect(count.headers.get('x-vigil-replay')).toBe('default');
    expect((await count.json()) as unknown).toEqual({ input_tokens: expect.any(Number) });

    const client = new Anthropic({ baseURL: s.url, apiKey: 'unused', maxRetries: 0 });
    expect((await client.models.retrieve('claude-test')).id).toBe('claude-test');
    const missing = (await client.models.retrieve('claude-other').catch((e: unknown) => e)) as APIError;
    expect(missing.status).toBe(404);

    const err = (await client.messages.create(messages('bye')).catch((e: unknown) => e)) as APIError;
    expect(err.status).toBe(412);
    expect(err.headers?.get('x-should-retry')).toBe('false');
    expect(err.error).toEqual({
      type: 'error',
      error: {
        type: 'invalid_request_error',
        message:
          "replay diverged at turn 1 of 1 (ex_only): the request's messages[0].content differs from the recording: " +
          "recorded text 'hi', got 'bye'",
      },
    });
    expect(s.served).toBe(0);
  });
});
