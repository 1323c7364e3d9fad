/**
 * The fake Anthropic upstream, driven by the official SDK: what matters is that real clients accept what it
 * sends exactly as they accept the real API's responses, failures included.
 */
import Anthropic, { toFile } from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic } from '../../../src/sandbox/fake-anthropic.js';

const MODEL = 'claude-sonnet-4-5';
const BASH_TOOL = {
  name: 'Bash',
  description: 'Run a shell command',
  input_schema: { type: 'object' as const, properties: { command: { type: 'string' } }, required: ['command'] },
};

let fake: FakeAnthropic;
let client: Anthropic;

beforeAll(async () => {
  fake = await startFakeAnthropic();
  client = new Anthropic({ baseURL: fake.url, apiKey: 'k', maxRetries: 0 });
});

afterAll(async () => {
  await fake.close();
});

/** A client whose every request carries `x-fake-scenario: <scenario>`, as a test harness would configure it. */
function clientWithScenario(scenario: string, maxRetries = 0): Anthropic {
  return new Anthropic({ baseURL: fake.url, apiKey: 'k', maxRetries, defaultHeaders: { 'x-fake-scenario': scenario } });
}

function ask(content: string, extra: Partial<Anthropic.MessageCreateParamsNonStreaming> = {}) {
  return { model: MODEL, max_tokens: 1024, messages: [{ role: 'user' as const, content }], ...extra };
}

describe('messages', () => {
  it('answers a plain request with a deterministic echo and Anthropic-shaped usage', async () => {
    const { data: message, response } = await client.messages.create(ask('Hello there')).withResponse();
    expect(message.id).toMatch(/^msg_01[0-9A-Za-z]{22}$/);
    expect(message.content).toEqual([{ type: 'text', text: 'Echo: Hello there' }]);
    expect(message.stop_reason).toBe('end_turn');
    expect(message.usage.input_tokens).toBeGreaterThan(0);
    expect(message.usage.output_tokens).toBeGreaterThan(0);
    expect(message.usage.cache_read_input_tokens).toBe(0);
    expect(response.headers.get('request-id')).toMatch(/^req_011C/);
    expect(response.headers.get('anthropic-ratelimit-requests-limit')).toBe('4000');
    expect(response.headers.get('content-type')).toBe('application/json');
  });

  it('streams the echo as many text deltas that the SDK reassembles', async () => {
    const text = 'one two three four five six seven eight nine ten eleven twelve';
    const stream = client.messages.stream(ask(text));
    const deltas: string[] = [];
    stream.on('text', (delta) => deltas.push(delta));
    const message = await stream.finalMessage();
    expect(message.content).toEqual([{ type: 'text', text: `Echo: ${text}` }]);
    expect(deltas.length).toBeGreaterThanOrEqual(4);
    expect(deltas.join('')).toBe(`Echo: ${text}`);
    expect(message.usage.output_tokens).toBeGreaterThan(1);
  });

  it('frames the stream as the real API does, with request-id and event-stream content type', async () => {
    const res = await fetch(`${fake.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': 'k' },
      body: JSON.stringify({ ...ask('frame check'), stream: true }),
    });
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(res.headers.get('request-id')).toMatch(/^req_/);
    const body = await res.text();
    const frames = body.split('\n\n').filter(Boolean);
    for (const frame of frames) expect(frame).toMatch(/^event: [a-z_]+\ndata: \{.*\}$/);
    const types = frames.map((f) => /^event: (\w+)/.exec(f)?.[1]);
    expect(types.slice(0, 3)).toEqual(['message_start', 'content_block_start', 'ping']);
    expect(types.slice(-4)).toEqual(['content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
  });

  it('thinks first when extended thinking is enabled', async () => {
    const stream = client.messages.stream({
      ...ask('Why is the sky blue?'),
      thinking: { type: 'enabled', budget_tokens: 1024 },
    });
    const thinkingDeltas: string[] = [];
    stream.on('thinking', (delta) => thinkingDeltas.push(delta));
    const message = await stream.finalMessage();
    const [thinking, text] = message.content;
    expect(thinking?.type).toBe('thinking');
    if (thinking?.type !== 'thinking') return;
    expect(thinking.thinking).toContain('Why is the sky blue?');
    expect(thinking.signature.length).toBeGreaterThan(20);
    expect(thinkingDeltas.length).toBeGreaterThan(1);
    expect(text).toMatchObject({ type: 'text', text: 'Echo: Why is the sky blue?' });
  });

  it('calls an offered tool named by a [[tool:…]] directive, streaming its input in fragments', async () => {
    const input = { command: 'echo "hi" && [[ -d / ]]' };
    const stream = client.messages.stream({
      ...ask(`Please run it [[tool:Bash ${JSON.stringify(input)}]]`),
      tools: [BASH_TOOL],
    });
    const fragments: string[] = [];
    stream.on('inputJson', (fragment) => fragments.push(fragment));
    const message = await stream.finalMessage();
    expect(message.stop_reason).toBe('tool_use');
    expect(message.content[0]).toMatchObject({ type: 'text' });
    const toolUse = message.content[1];
    expect(toolUse).toMatchObject({ type: 'tool_use', name: 'Bash', input });
    expect(toolUse?.type === 'tool_use' && toolUse.id).toMatch(/^toolu_01/);
    expect(fragments.length).toBeGreaterThan(3);
    expect(fragments.join('')).toBe(JSON.stringify(input));
  });

  it('does not call a tool the request does not offer', async () => {
    const message = await client.messages.create(ask('[[tool:Bash {"command":"ls"}]]'));
    expect(message.stop_reason).toBe('end_turn');
    expect(message.content).toEqual([{ type: 'text', text: 'Echo: [[tool:Bash {"command":"ls"}]]' }]);
  });

  it('acknowledges a tool_result turn and ends the turn', async () => {
    const message = await client.messages.create({
      model: MODEL,
      max_tokens: 1024,
      tools: [BASH_TOOL],
      messages: [
        { role: 'user', content: '[[tool:Bash {"command":"echo hi"}]]' },
        {
          role: 'assistant',
          content: [{ type: 'tool_use', id: 'toolu_01abc', name: 'Bash', input: { command: 'echo hi' } }],
        },
        {
          role: 'user',
          content: [{ type: 'tool_result', tool_use_id: 'toolu_01abc', content: [{ type: 'text', text: 'hi' }] }],
        },
      ],
    });
    expect(message.stop_reason).toBe('end_turn');
    expect(message.content).toEqual([{ type: 'text', text: 'Tool result received: hi' }]);
  });

  it('accepts a Claude Code-shaped request: system blocks, cache_control, metadata, ?beta=true', async () => {
    const message = await client.messages.create(
      {
        model: MODEL,
        max_tokens: 4096,
        system: [{ type: 'text', text: 'You are Claude Code.'.repeat(200), cache_control: { type: 'ephemeral' } }],
        tools: Array.from({ length: 20 }, (_, i) => ({ ...BASH_TOOL, name: `Tool${i}` })),
        metadata: { user_id: 'user_abc' },
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: '<system-reminder>context</system-reminder>' },
              { type: 'text', text: 'What is 2+2?', cache_control: { type: 'ephemeral' } },
            ],
          },
        ],
      },
      // Claude Code calls the beta endpoint this way.
      { query: { beta: 'true' } },
    );
    expect(message.content).toEqual([{ type: 'text', text: 'Echo: What is 2+2?' }]);
    // The first time its cached prefix is seen, the cache is written.
    expect(message.usage.cache_creation_input_tokens).toBeGreaterThan(0);
    expect(message.usage.cache_read_input_tokens).toBe(0);
    const seen = fake.requests.at(-1);
    expect(seen).toMatchObject({ method: 'POST', path: '/v1/messages', query: 'beta=true' });
    expect(seen?.headers['authorization'] ?? seen?.headers['x-api-key']).toMatch(/^(Bearer )?k$/);
    expect(JSON.parse(seen!.body.toString()).metadata).toEqual({ user_id: 'user_abc' });
  });

  it('writes the prompt cache the first time a prefix is seen (for an hour when asked), and reads it after', async () => {
    const ask = (system: string, ttl?: '1h') =>
      client.messages.create({
        model: MODEL,
        max_tokens: 64,
        system: [
          { type: 'text', text: system.repeat(300), cache_control: { type: 'ephemeral', ...(ttl ? { ttl } : {}) } },
        ],
        messages: [{ role: 'user', content: `turn ${Math.random()}` }],
      });
    const first = (await ask('Cache me. ')).usage;
    const second = (await ask('Cache me. ')).usage;
    expect(first.cache_creation_input_tokens).toBeGreaterThan(0);
    expect(first.cache_creation).toEqual({
      ephemeral_5m_input_tokens: first.cache_creation_input_tokens,
      ephemeral_1h_input_tokens: 0,
    });
    expect(second).toMatchObject({
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: first.cache_creation_input_tokens,
    });
    // Another prefix, kept an hour: written as such.
    const hour = (await ask('Keep me an hour. ', '1h')).usage;
    expect(hour.cache_creation).toEqual({
      ephemeral_5m_input_tokens: 0,
      ephemeral_1h_input_tokens: hour.cache_creation_input_tokens,
    });
    expect(hour.cache_creation_input_tokens).toBeGreaterThan(0);
  });

  it('cuts the answer at max_tokens and says so', async () => {
    const message = await client.messages.create(ask('a fairly long question', { max_tokens: 1 }));
    expect(message.stop_reason).toBe('max_tokens');
    expect(message.content).toEqual([{ type: 'text', text: 'Echo' }]);
  });

  it('refuses a request without max_tokens, or that is not JSON, with invalid_request_error', async () => {
    const missing = client.messages.create({ model: MODEL, messages: [] } as never);
    await expect(missing).rejects.toBeInstanceOf(Anthropic.BadRequestError);
    await expect(missing).rejects.toMatchObject({ error: { error: { message: 'max_tokens: Field required' } } });
    const res = await fetch(`${fake.url}/v1/messages`, { method: 'POST', body: '{nope' });
    expect(res.status).toBe(400);
    expect(res.headers.get('request-id')).toMatch(/^req_/);
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
  });
});

describe('scenarios', () => {
  it('rate_limit answers 429 with retry-after, which the SDK raises as RateLimitError', async () => {
    const err = await clientWithScenario('rate_limit')
      .messages.create(ask('hi'))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    expect((err as InstanceType<typeof Anthropic.RateLimitError>).headers.get('retry-after')).toBe('1');
  });

  it('rate_limit_once fails only the first time, so the SDK retry succeeds', async () => {
    const before = fake.requests.length;
    const message = await clientWithScenario('rate_limit_once:retry-test', 2).messages.create(ask('again'));
    expect(message.content).toEqual([{ type: 'text', text: 'Echo: again' }]);
    expect(fake.requests.length - before).toBe(2);
  });

  it('overloaded, server_error and bad_request map to the SDK error classes', async () => {
    await expect(clientWithScenario('overloaded').messages.create(ask('x'))).rejects.toMatchObject({
      status: 529,
      error: { error: { type: 'overloaded_error' } },
    });
    await expect(clientWithScenario('server_error').messages.create(ask('x'))).rejects.toBeInstanceOf(
      Anthropic.InternalServerError,
    );
    await expect(clientWithScenario('bad_request').messages.create(ask('x'))).rejects.toBeInstanceOf(
      Anthropic.BadRequestError,
    );
  });

  it('a [[scenario:…]] directive in the user text works like the header', async () => {
    await expect(client.messages.create(ask('[[scenario:rate_limit]] hi'))).rejects.toBeInstanceOf(
      Anthropic.RateLimitError,
    );
  });

  it('error_mid_stream sends an error event after some deltas, and the stream rejects', async () => {
    const stream = clientWithScenario('error_mid_stream').messages.stream(ask('one two three four five six seven'));
    const deltas: string[] = [];
    stream.on('text', (d) => deltas.push(d));
    const err = await stream.finalMessage().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.APIError);
    expect(String(err)).toContain('Overloaded');
    expect(deltas.length).toBe(2);
  });

  it('cut_stream drops the connection mid-stream, and the stream rejects', async () => {
    const long = ask('one two three four five six seven eight nine ten');
    await expect(clientWithScenario('cut_stream').messages.stream(long).finalMessage()).rejects.toThrow();
    await expect(clientWithScenario('slow:1,cut_stream').messages.stream(long).finalMessage()).rejects.toThrow();
    // Without streaming, the body stops short of its content-length: the SDK (1.17) says it lost the connection,
    // with fetch's own error as the cause.
    const cut = await clientWithScenario('cut_stream')
      .messages.create(long)
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(cut).toBeInstanceOf(Anthropic.APIConnectionError);
    expect(String((cut as Error).cause)).toMatch(/terminated/);
  });

  it('slow spaces events out in time, with the same result', async () => {
    const started = Date.now();
    const message = await clientWithScenario('slow:5').messages.stream(ask('slowly now')).finalMessage();
    expect(message.content).toEqual([{ type: 'text', text: 'Echo: slowly now' }]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(5 * 6);
  });

  it('slow_start sends the headers at once and the first event later', async () => {
    const started = Date.now();
    const { data: stream, response } = await clientWithScenario('slow_start:150')
      .messages.create({ ...ask('late start'), stream: true })
      .withResponse();
    const headersAfter = Date.now() - started;
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(types.at(-1)).toBe('message_stop');
    expect(Date.now() - started - headersAfter).toBeGreaterThanOrEqual(100);
  });

  it('gzip compresses a JSON reply, which the SDK decodes', async () => {
    const { data, response } = await clientWithScenario('gzip').messages.create(ask('zip it')).withResponse();
    expect(response.headers.get('content-encoding')).toBe('gzip');
    expect(data.content).toEqual([{ type: 'text', text: 'Echo: zip it' }]);
  });

  it('an unknown scenario name is refused rather than ignored', async () => {
    await expect(clientWithScenario('rate_limt').messages.create(ask('x'))).rejects.toMatchObject({
      status: 400,
      error: { error: { message: expect.stringContaining("unknown fake scenario 'rate_limt'") } },
    });
  });

  it('hang never answers, and close() still ends the request', async () => {
    const own = await startFakeAnthropic();
    const pending = fetch(`${own.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-fake-scenario': 'hang' },
      body: JSON.stringify(ask('wait')),
    });
    const outcome = pending.then(
      () => 'answered',
      () => 'dropped',
    );
    await new Promise((r) => setTimeout(r, 30));
    await own.close();
    expect(await outcome).toBe('dropped');
  });
});

describe('other endpoints', () => {
  it('requires the configured key, as x-api-key or as the bearer token this SDK version sends', async () => {
    const own = await startFakeAnthropic({ apiKey: 'right' });
    try {
      const wrong = new Anthropic({ baseURL: own.url, apiKey: 'wrong', maxRetries: 0 });
      await expect(wrong.messages.create(ask('x'))).rejects.toBeInstanceOf(Anthropic.AuthenticationError);
      const right = new Anthropic({ baseURL: own.url, apiKey: 'right', maxRetries: 0 });
      await expect(right.messages.create(ask('x'))).resolves.toMatchObject({ type: 'message' });
      const viaHeader = await fetch(`${own.url}/v1/models`, { headers: { 'x-api-key': 'right' } });
      expect(viaHeader.status).toBe(200);
    } finally {
      await own.close();
    }
  });

  it('counts tokens', async () => {
    const count = await client.messages.countTokens({ model: MODEL, messages: [{ role: 'user', content: 'hello' }] });
    expect(count.input_tokens).toBeGreaterThan(0);
  });

  it('declines with stop_reason refusal and no content when asked (scenario refusal), JSON and streamed', async () => {
    const client = clientWithScenario('refusal');
    const params = { model: 'claude-fable-5-1', max_tokens: 50, messages: [{ role: 'user' as const, content: 'hi' }] };
    const message = await client.messages.create(params);
    expect(message).toMatchObject({ stop_reason: 'refusal', content: [], usage: { output_tokens: 0 } });
    const streamed = await client.messages.stream(params).finalMessage();
    expect(streamed).toMatchObject({ stop_reason: 'refusal', content: [] });

    // Declined after some output: the first half of the answer, then the refusal.
    const midway = clientWithScenario('refusal_mid_stream');
    const long = { ...params, messages: [{ role: 'user' as const, content: 'one two three four five six' }] };
    const partial = await midway.messages.stream(long).finalMessage();
    expect(partial.stop_reason).toBe('refusal');
    expect(partial.content).toEqual([{ type: 'text', text: 'Echo: one two thr' }]); // half of 'Echo: one two … six'
    expect((await midway.messages.create(long)).content).toEqual(partial.content);
  });

  it('lists models and retrieves one by id or alias', async () => {
    const page = await client.models.list();
    expect(page.data.length).toBeGreaterThanOrEqual(3);
    expect(page.data.every((m) => m.id.startsWith('claude-'))).toBe(true);
    const first = page.data[0]!;
    expect(await client.models.retrieve(first.id)).toMatchObject({ id: first.id, type: 'model' });
    expect(first).toMatchObject({ id: 'claude-sonnet-5-5', max_input_tokens: 1_000_000, max_tokens: 128_000 });
    expect(await client.models.retrieve('claude-haiku-4-5')).toMatchObject({ id: 'claude-haiku-4-5-20251001' });
    await expect(client.models.retrieve('gpt-4')).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    // Retired (2026-11-30): neither listed nor found.
    expect(page.data.map((m) => m.id)).not.toContain('claude-sonnet-4-5-20250929');
    await expect(client.models.retrieve('claude-sonnet-4-5')).rejects.toBeInstanceOf(Anthropic.NotFoundError);
  });

  it('creates a message batch that has ended, with JSONL results per custom_id', async () => {
    const batch = await client.messages.batches.create({
      requests: [
        { custom_id: 'first', params: ask('batch one') },
        { custom_id: 'second', params: ask('batch two') },
      ],
    });
    expect(batch).toMatchObject({ type: 'message_batch', processing_status: 'ended' });
    expect(batch.id).toMatch(/^msgbatch_01/);
    expect(batch.request_counts.succeeded).toBe(2);
    const results: Anthropic.Messages.MessageBatchIndividualResponse[] = [];
    for await (const r of await client.messages.batches.results(batch.id)) results.push(r);
    expect(results.map((r) => r.custom_id)).toEqual(['first', 'second']);
    expect(results[1]?.result).toMatchObject({
      type: 'succeeded',
      message: { content: [{ text: 'Echo: batch two' }] },
    });
    const listed = await client.messages.batches.list();
    expect(listed.data.map((b) => b.id)).toContain(batch.id);
  });

  it('keeps an uploaded file and serves its bytes back', async () => {
    const uploaded = await client.files.upload({
      file: await toFile(Buffer.from('hello, file'), 'hello.txt', { type: 'text/plain' }),
    });
    expect(uploaded).toMatchObject({ type: 'file', filename: 'hello.txt', mime_type: 'text/plain', size_bytes: 11 });
    const content = await client.files.download(uploaded.id);
    expect(await content.text()).toBe('hello, file');
    expect(await client.files.retrieveMetadata(uploaded.id)).toMatchObject({ id: uploaded.id });
    const listed = await client.files.list();
    expect(listed.data.map((f) => f.id)).toContain(uploaded.id);
    await client.files.delete(uploaded.id);
    await expect(client.files.retrieveMetadata(uploaded.id)).rejects.toBeInstanceOf(Anthropic.NotFoundError);
  });

  it('answers an unknown path with not_found_error', async () => {
    const res = await fetch(`${fake.url}/v1/nothing-here`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
  });
});
