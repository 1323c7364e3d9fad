/**
 * The official Anthropic SDK through a running gateway: what the client receives, what upstream was sent, and what
 * was recorded.
 */
import http from 'node:http';
import path from 'node:path';
import Anthropic, { APIError } from '@anthropic-ai/sdk';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_KEY, GATEWAY_KEY, filesContaining, startHarness, type Harness } from '../support/gateway-harness.js';
import { until } from '../support/until.js';

let h: Harness;
let client: Anthropic;

beforeAll(async () => {
  h = await startHarness((upstream) => ({
    connections: [
      { name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' }, upstream_timeout: '2s' },
      { name: 'second', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
      { name: 'nowhere', upstream: 'http://127.0.0.1:1', credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
      { name: 'nokey', upstream, credential: { env: 'VIGIL_TEST_UNSET_VARIABLE' } },
    ],
  }));
  client = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
});
afterAll(() => h?.close());

const user = (text: string) => [{ role: 'user' as const, content: text }];

describe('non-streaming messages', () => {
  it('returns upstream’s answer unchanged and records request and response', async () => {
    const { data, response } = await client.messages
      .create({ model: 'claude-haiku-4-5', max_tokens: 100, messages: user('hello gateway') })
      .withResponse();
    expect(data.content[0]).toMatchObject({ type: 'text', text: 'Echo: hello gateway' });
    const id = response.headers.get('x-vigil-exchange-id')!;
    expect(response.headers.get('request-id')).toMatch(/^req_/); // upstream's own header reached the client

    const sent = h.fake.requests.at(-1)!;
    expect(sent.headers['x-api-key']).toBe(GATEWAY_KEY);
    expect(sent.headers.authorization).toBeUndefined();
    expect(sent.headers['anthropic-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/);

    const x = await h.exchange(id);
    expect(x.outcome).toBe('ok');
    expect(x.caller.subject).toBe('anonymous');
    expect(x.request.body).toEqual(JSON.parse(sent.body.toString()));
    expect(x.request.headers['x-api-key']).toBeUndefined();
    expect(x.request.headers['anthropic-version']).toBe(sent.headers['anthropic-version']);
    expect(x.response.status).toBe(200);
    expect(x.response.body).toEqual(JSON.parse(JSON.stringify(data)));
    expect(x.model).toBe('claude-haiku-4-5');
    expect(x.usage?.output_tokens).toBe(data.usage.output_tokens);
  });

  it('records a gzip-compressed upstream body decoded, while the client gets it as sent', async () => {
    const { data, response } = await client.messages
      .create(
        { model: 'claude-haiku-4-5', max_tokens: 50, messages: user('zip it') },
        { headers: { 'x-fake-scenario': 'gzip', 'accept-encoding': 'gzip' } },
      )
      .withResponse();
    expect(data.content[0]).toMatchObject({ text: 'Echo: zip it' });
    const x = await h.exchange(response.headers.get('x-vigil-exchange-id')!);
    expect(x.response.headers?.['content-encoding']).toBe('gzip');
    expect((x.response.body as { content: unknown[] }).content[0]).toMatchObject({ text: 'Echo: zip it' });
  });
});

describe('streaming messages', () => {
  it('records every SSE event in order with its offset, and the assembled message', async () => {
    const stream = client.messages.stream(
      { model: 'claude-haiku-4-5', max_tokens: 200, messages: user('stream a fairly long answer back to me please') },
      { headers: { 'x-vigil-session': 'stream-session-1' } },
    );
    const seen: string[] = [];
    stream.on('streamEvent', (e) => seen.push(e.type));
    const final = await stream.finalMessage();
    const [x] = await h.session('stream-session-1', 1);
    expect(x!.response.stream).toBe(true);
    expect(x!.response.events.map((e) => e.type).filter((t) => t !== 'ping')).toEqual(seen);
    const offsets = x!.response.events.map((e) => e.offset_ms);
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    expect(x!.response.message).toMatchObject({ id: final.id, content: final.content, stop_reason: 'end_turn' });
    expect(x!.usage?.output_tokens).toBe(final.usage.output_tokens);
    expect(x!.response.first_byte_ms).toBeGreaterThan(0);
  });

  it('passes each event through as upstream sends it, without buffering the stream', async () => {
    const arrivals: number[] = [];
    const t0 = performance.now();
    const stream = client.messages.stream(
      {
        model: 'claude-haiku-4-5',
        max_tokens: 200,
        messages: user('one two three four five six seven eight nine ten'),
      },
      { headers: { 'x-fake-scenario': 'slow:40', 'x-vigil-session': 'paced' } },
    );
    stream.on('streamEvent', () => arrivals.push(performance.now() - t0));
    await stream.finalMessage();
    // Upstream paces events 40 ms apart; the client sees them spread the same way, not all at the end.
    expect(arrivals.length).toBeGreaterThan(6);
    const gaps = arrivals.slice(1).map((t, i) => t - arrivals[i]!);
    expect(gaps.filter((g) => g >= 25).length).toBeGreaterThanOrEqual(arrivals.length - 3);
    const [x] = await h.session('paced', 1);
    const offsets = x!.response.events.map((e) => e.offset_ms);
    expect(offsets.at(-1)! - offsets[0]!).toBeGreaterThan(200); // and the record keeps that timing
  });

  it('sends a stream’s headers at once when its first event is slow to come', async () => {
    // The gateway holds a stream's headers for a moment, to send them with the first events in one write: a model
    // slow to start must not hold them back for as long.
    const t0 = performance.now();
    const res = await fetch(`${h.url}/v1/messages`, {
      method: 'POST',
      headers: {
        'x-api-key': CLIENT_KEY,
        'anthropic-version': '2023-06-01',
        'content-type': 'application/json',
        'x-fake-scenario': 'slow_start:400',
      },
      body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 50, stream: true, messages: user('hello') }),
    });
    const headersAt = performance.now() - t0;
    const text = await res.text();
    const endedAt = performance.now() - t0;
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(text).toContain('event: message_stop');
    expect(endedAt - headersAt).toBeGreaterThan(300);
  });

  it('assembles tool_use input from input_json_delta fragments and keeps thinking with its signature', async () => {
    const stream = client.messages.stream(
      {
        model: 'claude-haiku-4-5',
        max_tokens: 2000,
        thinking: { type: 'enabled', budget_tokens: 1024 },
        tools: [
          {
            name: 'Bash',
            description: 'run',
            input_schema: { type: 'object', properties: { command: { type: 'string' } } },
          },
        ],
        messages: user('please [[tool:Bash {"command":"ls -la /tmp && echo done"}]]'),
      },
      { headers: { 'x-vigil-session': 'tool-session' } },
    );
    const final = await stream.finalMessage();
    const [x] = await h.session('tool-session', 1);
    const msg = x!.response.message as { content: Array<Record<string, unknown>> };
    expect(msg.content).toEqual(JSON.parse(JSON.stringify(final.content)));
    expect(msg.content.find((b) => b.type === 'tool_use')?.input).toEqual({ command: 'ls -la /tmp && echo done' });
    expect(msg.content.find((b) => b.type === 'thinking')?.signature).toEqual(expect.any(String));
    expect(x!.response.stop_reason).toBe('tool_use');
  });

  it('records an error event in the middle of a stream as upstream_error', async () => {
    const stream = client.messages.stream(
      { model: 'claude-haiku-4-5', max_tokens: 100, messages: user('fail midway') },
      { headers: { 'x-fake-scenario': 'error_mid_stream', 'x-vigil-session': 'mid-error' } },
    );
    await expect(stream.finalMessage()).rejects.toThrow(/Overloaded/);
    const [x] = await h.session('mid-error', 1);
    expect(x!.outcome).toBe('upstream_error');
    expect(x!.response.error).toMatchObject({ type: 'overloaded_error' });
    expect(x!.response.events.some((e) => e.type === 'error')).toBe(true);
  });

  it('records an answer the model declined midway: what it said before, stop_reason refusal, outcome ok', async () => {
    const stream = client.messages.stream(
      { model: 'claude-fable-5-1', max_tokens: 100, messages: user('one two three four five six') },
      { headers: { 'x-fake-scenario': 'refusal_mid_stream', 'x-vigil-session': 'declined-midway' } },
    );
    const received = await stream.finalMessage();
    expect(received).toMatchObject({ stop_reason: 'refusal', content: [{ type: 'text', text: 'Echo: one two thr' }] });
    const [x] = await h.session('declined-midway', 1);
    expect(x!.outcome).toBe('ok'); // a 200: the model's answer, not a failure
    expect(x!.response.stop_reason).toBe('refusal');
    expect(x!.response.message).toMatchObject({ stop_reason: 'refusal', content: received.content });
    const delta = x!.response.events.find((e) => e.type === 'message_delta');
    expect(JSON.stringify(delta?.data)).toContain('"stop_reason":"refusal"');
  });

  it('records a stream cut by upstream up to the cut, as upstream_aborted', async () => {
    const stream = client.messages.stream(
      { model: 'claude-haiku-4-5', max_tokens: 100, messages: user('cut me off') },
      { headers: { 'x-fake-scenario': 'cut_stream', 'x-vigil-session': 'cut-up' } },
    );
    await expect(stream.finalMessage()).rejects.toThrow();
    const [x] = await h.session('cut-up', 1);
    expect(x!.outcome).toBe('upstream_aborted');
    expect(x!.response.events[0]?.type).toBe('message_start');
  });

  it('cuts a stream whose upstream stops sending for longer than upstream_timeout, recorded as upstream_aborted', async () => {
    // upstream_timeout is 2 s here; the fake waits 2.5 s between events, after sending the headers at once.
    const stream = client.messages.stream(
      { model: 'claude-haiku-4-5', max_tokens: 100, messages: user('a stream that stalls') },
      { headers: { 'x-fake-scenario': 'slow:2500', 'x-vigil-session': 'stalled-up' } },
    );
    stream.on('error', () => {}); // the cut rejects the stream; that is the point
    await expect(stream.finalMessage()).rejects.toThrow();
    const [x] = await h.session('stalled-up', 1);
    expect(x!.outcome).toBe('upstream_aborted');
    expect(x!.response.status).toBe(200);
    expect(x!.response.error).toMatchObject({ message: 'upstream stopped sending before the response ended' });
  });

  it('records a stream the client gave up on as client_aborted', async () => {
    const stream = client.messages.stream(
      { model: 'claude-haiku-4-5', max_tokens: 100, messages: user('a slow answer that the client abandons midway') },
      { headers: { 'x-fake-scenario': 'slow:40', 'x-vigil-session': 'client-gone' } },
    );
    stream.on('error', () => {}); // the abort below rejects the stream; that is the point
    stream.finalMessage().catch(() => {});
    await new Promise<void>((resolve) => stream.on('text', () => resolve()));
    stream.abort();
    const [x] = await h.session('client-gone', 1);
    expect(x!.outcome).toBe('client_aborted');
    expect(x!.response.events.length).toBeGreaterThan(0);
  });

  it('does not forward a call whose client hung up while it was being recorded', async () => {
    // Went wrong: the close went unnoticed until forwarding, so the call was sent (and billed) anyway, and its
    // answer, written to a closed socket, paused upstream's stream for good — the exchange never ended and shutdown
    // waited on it. Here another connection holds the store's write lock, as a CLI purge would, so recording waits.
    const blocker = new Database(path.join(h.dataDir, 'vigil.db'));
    blocker.exec('BEGIN IMMEDIATE');
    const sent = h.fake.requests.length;
    const inFlight = h.gateway.recorder.inFlight;
    const req = http.request(`${h.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': CLIENT_KEY, 'x-vigil-session': 'gone-early' },
    });
    req.on('error', () => {}); // the abort below is the point
    req.end(JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 10, stream: true, messages: user('hello?') }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    req.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    blocker.exec('ROLLBACK');
    blocker.close();
    const [x] = await h.session('gone-early', 1);
    expect(x!.outcome).toBe('client_aborted');
    expect(x!.response.error).toMatchObject({ message: expect.stringMatching(/before the request was forwarded/) });
    expect(h.fake.requests.length).toBe(sent);
    await until('the exchange to end', () => (h.gateway.recorder.inFlight === inFlight ? true : undefined));
  });
});

describe('upstream errors and retries', () => {
  it('passes a 429 through unchanged so the SDK raises RateLimitError', async () => {
    const err = await client.messages
      .create(
        { model: 'claude-haiku-4-5', max_tokens: 10, messages: user('x') },
        { headers: { 'x-fake-scenario': 'rate_limit', 'x-vigil-session': 'limited' } },
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    expect((err as APIError).headers?.get('retry-after')).toBe('1');
    const [x] = await h.session('limited', 1);
    expect(x!.outcome).toBe('upstream_error');
    expect(x!.response.status).toBe(429);
    expect(x!.response.error).toMatchObject({ type: 'rate_limit_error' });
  });

  it('lets the SDK retry through the gateway, recording each attempt in one session', async () => {
    const retrying = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 2 });
    const msg = await retrying.messages.create(
      { model: 'claude-haiku-4-5', max_tokens: 10, messages: user('retry me') },
      { headers: { 'x-fake-scenario': 'rate_limit_once:retry-1', 'x-vigil-session': 'retried' } },
    );
    expect(msg.content[0]).toMatchObject({ text: 'Echo: retry me' });
    const xs = await h.session('retried', 2);
    expect(xs.map((x) => x.response.status)).toEqual([429, 200]);
  });
});

describe('gateway errors in Anthropic’s shape', () => {
  it('unknown connection → 404 not_found_error with a request-id', async () => {
    const c = new Anthropic({ baseURL: `${h.url}/c/missing`, apiKey: CLIENT_KEY, maxRetries: 0 });
    const err = (await c.models.list().catch((e: unknown) => e)) as APIError;
    expect(err).toBeInstanceOf(Anthropic.NotFoundError);
    expect(err.error).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
    expect(err.requestID).toMatch(/^vigil_ex_/);
  });

  it('a malformed percent-encoding in the path → 400, and the gateway keeps serving', async () => {
    // A regression: decodeURIComponent threw outside any handler, an unhandled rejection that stopped the process.
    const res = await fetch(`${h.url}/c/%zz/v1/models`);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    expect((await fetch(`${h.url}/healthz`)).status).toBe(200);
  });

  it('upstream unreachable → 502 api_error, recorded as gateway_error', async () => {
    const c = new Anthropic({ baseURL: `${h.url}/c/nowhere`, apiKey: CLIENT_KEY, maxRetries: 0 });
    const err = (await c.messages
      .create({ model: 'm', max_tokens: 1, messages: user('x') }, { headers: { 'x-vigil-session': 'unreachable' } })
      .catch((e: unknown) => e)) as APIError;
    expect(err).toBeInstanceOf(Anthropic.InternalServerError);
    expect(err.status).toBe(502);
    const [x] = await h.session('unreachable', 1);
    expect(x!.outcome).toBe('gateway_error');
  });

  it('upstream timeout → 504 timeout_error', async () => {
    const err = (await client.messages
      .create(
        { model: 'm', max_tokens: 1, messages: user('x') },
        { headers: { 'x-fake-scenario': 'hang', 'x-vigil-session': 'hung' } },
      )
      .catch((e: unknown) => e)) as APIError;
    expect(err.status).toBe(504);
    expect(err.error).toMatchObject({ error: { type: 'timeout_error' } });
    const [x] = await h.session('hung', 1);
    expect(x!.outcome).toBe('gateway_error');
  });

  it('a connection whose credential is not set → 500 naming the variable to set', async () => {
    const c = new Anthropic({ baseURL: `${h.url}/c/nokey`, apiKey: CLIENT_KEY, maxRetries: 0 });
    const err = (await c.models.list().catch((e: unknown) => e)) as APIError;
    expect(err.status).toBe(500);
    expect(err.message).toMatch(/VIGIL_TEST_UNSET_VARIABLE/);
  });

  it('a body over the limit → 413 request_too_large', async () => {
    const res = await fetch(`${h.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: 'x'.repeat(33 * 1024 * 1024),
    });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'request_too_large' } });
  });

  it('a path that would climb out of /v1/ once normalised → 400, and nothing reaches upstream', async () => {
    // Went wrong: only a literal `/../` was refused; `%2e%2e` (which WHATWG URL parsers and many proxies decode as
    // a dot segment), backslashes and encoded slashes were forwarded with the gateway's credential.
    const raw = (target: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request(`${h.url}/`, { method: 'GET', path: target, headers: { 'x-api-key': CLIENT_KEY } });
        req.on('response', (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        });
        req.on('error', reject);
        req.end();
      });
    const sent = h.fake.requests.length;
    for (const target of [
      '/v1/%2e%2e/%2e%2e/admin/secret',
      '/v1/.%2E/x',
      '/v1/%2E%2e/models',
      '/v1/models/..',
      '/v1/../models',
      '/v1/models/..%2f..%2fadmin',
      '/v1/models%5c..%5cadmin',
      '/v1/models\\..\\..\\admin',
      '/c/second/v1/%2e%2e/x',
    ]) {
      const res = await raw(target);
      expect([target, res.status]).toEqual([target, 400]);
      expect(JSON.parse(res.body)).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    }
    expect(h.fake.requests.length).toBe(sent);
    expect((await raw('/v1/models?after=%2e%2e')).status).toBe(200); // a query string is not a path
  });

  it('without identity, a call addressed to another host name or sent by a page elsewhere → 401', async () => {
    // Loopback callers are trusted as this machine: a web page open in a local browser must not spend the
    // gateway's credential by DNS rebinding (Host) or a cross-site request (Origin).
    const call = (headers: Record<string, string>) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const { port } = new URL(h.url);
        const req = http.request({ host: '127.0.0.1', port, path: '/v1/messages', method: 'POST', headers });
        req.on('response', (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        });
        req.on('error', reject);
        req.end(JSON.stringify({ model: 'm', max_tokens: 5, messages: user('spend it') }));
      });
    const { port } = new URL(h.url);
    const json = { 'content-type': 'application/json' };
    const sent = h.fake.requests.length;
    for (const [headers, which] of [
      [{ ...json, host: `attacker.example:${port}` }, `Host "attacker.example:${port}"`],
      [{ ...json, host: `127.0.0.1:${port}`, origin: 'https://attacker.example' }, 'Origin "https://attacker.example"'],
      // Names of its own that merely start like a loopback address.
      [
        { ...json, host: `127.0.0.1.attacker.example:${port}`, origin: `http://127.0.0.1.attacker.example:${port}` },
        `Host "127.0.0.1.attacker.example:${port}"`,
      ],
      [
        { ...json, host: `127.0.0.1:${port}`, origin: 'http://127.x.attacker.example' },
        'Origin "http://127.x.attacker.example"',
      ],
    ] as const) {
      const res = await call(headers);
      expect(res.status).toBe(401);
      // A regression: this said "missing credential: send an OIDC token … or a gateway key", although the call was
      // refused only for its Host or Origin.
      expect(JSON.parse(res.body)).toMatchObject({
        type: 'error',
        error: {
          type: 'authentication_error',
          message: expect.stringMatching(
            /^anonymous calls are accepted only for requests addressed to this machine \(Host 127\.0\.0\.1, localhost or \[::1\]\) with no Origin from elsewhere, and this request has .*: call the gateway as http:\/\/127\.0\.0\.1:PORT/,
          ),
        },
      });
      expect(JSON.parse(res.body).error.message).toContain(`this request has ${which}`);
    }
    // With an SDK's placeholder key too (it is no credential, so the call would have been anonymous).
    const placeholder = await call({ ...json, host: `attacker.example:${port}`, 'x-api-key': 'placeholder' });
    expect(placeholder.status).toBe(401);
    expect(JSON.parse(placeholder.body).error.message).toMatch(/^anonymous calls are accepted only/);
    expect(h.fake.requests.length).toBe(sent);
    expect((await call({ ...json, host: `localhost:${port}` })).status).toBe(200);
  });

  it('a path outside the API → 404; /healthz → 200', async () => {
    expect((await fetch(`${h.url}/etc/passwd`)).status).toBe(404);
    const health = await fetch(`${h.url}/healthz`);
    expect(health.status).toBe(200);
  });
});

describe('other API paths pass through faithfully', () => {
  it('routes /c/<name>/ to that connection and keeps query strings', async () => {
    // As Claude Code calls it: POST /v1/messages?beta=true with an anthropic-beta list and an unknown header.
    const res = await fetch(`${h.url}/c/second/v1/messages?beta=true`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-api-key': CLIENT_KEY,
        'anthropic-version': '2023-06-01',
        'anthropic-beta': 'x-beta-1,x-beta-2',
        'x-custom-thing': 'kept',
      },
      body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 5, messages: user('beta') }),
    });
    expect(res.status).toBe(200);
    const sent = h.fake.requests.at(-1)!;
    expect(sent.query).toBe('beta=true');
    expect(sent.headers['anthropic-beta']).toBe('x-beta-1,x-beta-2');
    expect(sent.headers['x-custom-thing']).toBe('kept');
    expect(sent.headers['x-api-key']).toBe(GATEWAY_KEY);
    const x = await h.exchange(res.headers.get('x-vigil-exchange-id')!);
    expect(x.connection).toBe('second');
    expect(x.request.query).toBe('beta=true');
  });

  it('count_tokens, models, batches and files', async () => {
    expect(
      (await client.messages.countTokens({ model: 'm', messages: user('count these') })).input_tokens,
    ).toBeGreaterThan(0);
    expect((await client.models.list()).data.length).toBeGreaterThan(0);
    const batch = await client.messages.batches.create({
      requests: [{ custom_id: 'a', params: { model: 'm', max_tokens: 5, messages: user('in a batch') } }],
    });
    expect((await client.messages.batches.retrieve(batch.id)).id).toBe(batch.id);
    // results_url points back at the gateway, so the results are fetched (and recorded) through it
    expect(batch.results_url).toBe(`${h.url}/v1/messages/batches/${batch.id}/results`);
    const results = [];
    for await (const r of await client.messages.batches.results(batch.id)) results.push(r);
    expect(results).toEqual([
      expect.objectContaining({ custom_id: 'a', result: expect.objectContaining({ type: 'succeeded' }) }),
    ]);
    const file = await client.beta.files.upload({ file: await Anthropic.toFile(Buffer.from('file body'), 'a.txt') });
    expect(file.filename).toBe('a.txt');
    // A download larger than the sockets' buffers, read by a client that stops reading for a while: the gateway waits
    // for it (upstream paused, not buffered) and then sends the rest, byte for byte.
    const big = Buffer.alloc(24 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
    const bigFile = await client.beta.files.upload({ file: await Anthropic.toFile(big, 'big.bin') });
    const downloaded = await new Promise<{ body: Buffer; exchange: string }>((resolve, reject) => {
      const req = http.get(
        `${h.url}/v1/files/${bigFile.id}/content`,
        {
          headers: {
            'x-api-key': CLIENT_KEY,
            'anthropic-version': '2023-06-01',
            'anthropic-beta': 'files-api-2025-04-14',
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.once('data', () => {
            res.pause();
            setTimeout(() => res.resume(), 500);
          });
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ body: Buffer.concat(chunks), exchange: String(res.headers['x-vigil-exchange-id']) }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
    });
    expect(downloaded.body.equals(big)).toBe(true);
    expect((await h.exchange(downloaded.exchange)).outcome).toBe('ok');
    const paths = h.fake.requests.map((r) => `${r.method} ${r.path}`);
    expect(paths).toEqual(
      expect.arrayContaining([
        'POST /v1/messages/count_tokens',
        'GET /v1/models',
        'POST /v1/messages/batches',
        'POST /v1/files',
      ]),
    );
  });
});

describe('the data directory', () => {
  it('holds no credential, the caller’s or the gateway’s', async () => {
    await h.gateway.recorder.queue.flush();
    expect(filesContaining(h.dataDir, CLIENT_KEY)).toEqual([]);
    expect(filesContaining(h.dataDir, GATEWAY_KEY)).toEqual([]);
  });

  it('verifies as intact', async () => {
    await h.gateway.recorder.queue.flush();
    const report = await h.gateway.store.verify();
    expect(report.problems).toEqual([]);
    expect(report.records).toBeGreaterThan(10);
  });
});
