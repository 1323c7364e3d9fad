/**
 * Secrets and personal data never reach the store, while the client still receives exactly what upstream sent.
 * Planted values go in through every field a client or upstream can fill; afterwards the whole data directory is
 * searched for each of them.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import Anthropic, { APIError } from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_KEY, filesContaining, startHarness, type Harness } from '../support/gateway-harness.js';

// Correctly shaped fakes: a valid-Luhn card, a mod-97-valid IBAN, AWS's documented example key, etc.
const PLANTED = {
  aws: 'AKIAIOSFODNN7EXAMPLE',
  email: 'jane.doe@corp-example.com',
  card: '4111 1111 1111 1111',
  github: 'ghp_R4nd0mLooking1234567890abcdefGHIJKLM',
  anthropic: 'sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Jh1Gf0Ed-AbCdEfGhIjKlMnOp_QrStUvWxYz012345-6789AA',
  iban: 'GB82 WEST 1234 5698 7654 32',
} as const;

let h: Harness;
beforeAll(async () => {
  h = await startHarness((upstream) => ({
    connections: [
      { name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
      { name: 'dlp-mask', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' }, masking: { in_flight: 'mask' } },
      { name: 'dlp-block', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' }, masking: { in_flight: 'block' } },
      {
        name: 'custom',
        upstream,
        credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
        masking: { rules: [{ type: 'employee_id', pattern: 'EMP-\\d{6}' }], detectors: { email: false } },
      },
      { name: 'meta', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' }, record: 'metadata' },
      { name: 'closed', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' }, allow: [{ group: 'nobody' }] },
    ],
  }));
});
afterAll(() => h?.close());

const client = (path = '') => new Anthropic({ baseURL: `${h.url}${path}`, apiKey: CLIENT_KEY, maxRetries: 0 });

describe('masking before storage', () => {
  it('masks request, streamed response (secrets split across deltas), tool input and headers; the client gets the original', async () => {
    const prompt = `deploy with ${PLANTED.aws} and mail ${PLANTED.email}, card ${PLANTED.card}`;
    const stream = client().messages.stream(
      {
        model: 'claude-haiku-4-5',
        max_tokens: 500,
        system: `internal token ${PLANTED.github}`,
        messages: [{ role: 'user', content: prompt }],
      },
      { headers: { 'x-vigil-session': 'masked', 'x-debug-note': `iban ${PLANTED.iban}`, 'x-fake-scenario': 'slow:1' } },
    );
    const final = await stream.finalMessage();
    // The client received upstream's answer untouched, secrets included (the fake echoes the prompt).
    const text = final.content.find((b) => b.type === 'text');
    expect(text && 'text' in text ? text.text : '').toContain(PLANTED.aws);

    const toolCall = await client()
      .messages.stream(
        {
          model: 'claude-haiku-4-5',
          max_tokens: 500,
          tools: [{ name: 'Bash', input_schema: { type: 'object' } }],
          messages: [
            {
              role: 'user',
              content: `run [[tool:Bash {"command":"curl -H 'x-api-key: ${PLANTED.anthropic}' https://example.com"}]]`,
            },
          ],
        },
        { headers: { 'x-vigil-session': 'masked' } },
      )
      .finalMessage();
    expect(JSON.stringify(toolCall.content)).toContain(PLANTED.anthropic);

    const [x, t] = await h.session('masked', 2);
    const stored = JSON.stringify([x, t]);
    for (const v of Object.values(PLANTED)) expect(stored).not.toContain(v);
    expect(stored).toContain('[REDACTED:aws_access_key_id]');
    expect(stored).toContain('[REDACTED:email]');
    expect(stored).toContain('[REDACTED:payment_card]');
    expect(stored).toContain('[REDACTED:github_token]');
    expect(stored).toContain('[REDACTED:anthropic_api_key]');
    expect(x!.request.headers['x-debug-note']).toBe('iban [REDACTED:iban]');

    // Stored events are still a valid stream: the text deltas, joined, give the stored (masked) message text.
    const deltas = x!.response.events
      .filter(
        (e) => e.type === 'content_block_delta' && (e.data as { delta: { type: string } }).delta.type === 'text_delta',
      )
      .map((e) => (e.data as { delta: { text: string } }).delta.text)
      .join('');
    const message = x!.response.message as { content: Array<{ type: string; text?: string }> };
    expect(x!.response.events.filter((e) => e.type === 'content_block_delta').length).toBeGreaterThan(3);
    expect(deltas).toBe(message.content.find((b) => b.type === 'text')!.text);
    expect(deltas).toContain('[REDACTED:aws_access_key_id]');
    // The tool input was assembled from masked input_json_delta fragments and still parses.
    const toolMessage = t!.response.message as { content: Array<{ type: string; input?: unknown }> };
    const partial = t!.response.events
      .filter(
        (e) =>
          e.type === 'content_block_delta' && (e.data as { delta: { type: string } }).delta.type === 'input_json_delta',
      )
      .map((e) => (e.data as { delta: { partial_json: string } }).delta.partial_json)
      .join('');
    expect(JSON.parse(partial)).toEqual(toolMessage.content.find((b) => b.type === 'tool_use')!.input);
    expect(partial).toContain('[REDACTED:anthropic_api_key]');

    // Where and how many: the masking summary (never the values).
    const records = await h.gateway.store.exchangeRecords(x!.id);
    const summary = JSON.parse(records.find((r) => r.kind === 'exchange.response')!.data).masking;
    expect(summary.counts).toMatchObject({
      aws_access_key_id: expect.any(Number),
      email: expect.any(Number),
      payment_card: expect.any(Number),
    });
    expect(summary.findings.some((f: { path: string }) => f.path.startsWith('request.body'))).toBe(true);
  });

  it('masks a non-streamed JSON response and error bodies', async () => {
    await client().messages.create(
      {
        model: 'claude-haiku-4-5',
        max_tokens: 100,
        messages: [{ role: 'user', content: `call me at ${PLANTED.email}` }],
      },
      { headers: { 'x-vigil-session': 'masked-json' } },
    );
    const [x] = await h.session('masked-json', 1);
    expect(JSON.stringify(x!.response.body)).toContain('[REDACTED:email]');
    expect(JSON.stringify(x)).not.toContain(PLANTED.email);
  });

  it('custom rules and detector switches apply per connection', async () => {
    await client('/c/custom').messages.create(
      {
        model: 'm',
        max_tokens: 50,
        messages: [{ role: 'user', content: 'badge EMP-123456 for kept.on.purpose@example.org' }],
      },
      { headers: { 'x-vigil-session': 'custom-rules' } },
    );
    const [x] = await h.session('custom-rules', 1);
    const stored = JSON.stringify(x!.request.body);
    expect(stored).toContain('[REDACTED:employee_id]');
    expect(stored).toContain('kept.on.purpose@example.org'); // email detector switched off on this connection
  });
});

describe('field names the API uses for opaque values', () => {
  it('are masked inside tool inputs: in the request history and in the assembled message of a stream', async () => {
    // Went wrong: values under `id`, `signature`, `file_id`… were never masked, at any depth, so a tool input
    // `{"signature": "Jane <jane@…>", "id": "ghp_…"}` was stored raw — in the history, and in the message assembled
    // from a stream whose (text-masked) events did not show it.
    const input = { to: 'x', signature: `Jane <${PLANTED.email}>`, id: PLANTED.github };
    const tools = [{ name: 'send_email', input_schema: { type: 'object' as const } }];
    await client().messages.create(
      {
        model: 'm',
        max_tokens: 50,
        tools,
        messages: [
          { role: 'user', content: 'mail her' },
          { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_01', name: 'send_email', input }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_01', content: 'sent' }] },
        ],
      },
      { headers: { 'x-vigil-session': 'opaque-names' } },
    );
    const streamed = await client()
      .messages.stream(
        {
          model: 'm',
          max_tokens: 50,
          tools,
          messages: [{ role: 'user', content: `[[tool:send_email ${JSON.stringify(input)}]]` }],
        },
        { headers: { 'x-vigil-session': 'opaque-names' } },
      )
      .finalMessage();
    expect(streamed.content.find((b) => b.type === 'tool_use')).toMatchObject({ input }); // the client got it all

    const [history, stream] = await h.session('opaque-names', 2);
    const stored = JSON.stringify([history, stream]);
    expect(stored).not.toContain(PLANTED.email);
    expect(stored).not.toContain(PLANTED.github);
    const masked = { to: 'x', signature: 'Jane <[REDACTED:email]>', id: '[REDACTED:github_token]' };
    const message = stream!.response.message as { content: Array<{ type: string; id?: string; input?: unknown }> };
    const toolUse = message.content.find((b) => b.type === 'tool_use')!;
    expect(toolUse.input).toEqual(masked);
    expect(toolUse.id).toBe(streamed.content.find((b) => b.type === 'tool_use')!.id); // the API's own id: kept
    expect(JSON.stringify(history!.request.body)).toContain('"toolu_01"');
  });
});

describe('the request target and the client', () => {
  it('the path, each query parameter and the user agent are masked, at every recording level', async () => {
    // Went wrong: `?token=ghp_…`, a path segment and the User-Agent were recorded as sent, even at record: metadata.
    const email = encodeURIComponent(PLANTED.email);
    for (const [base, session] of [
      ['', 'target-full'],
      ['/c/meta', 'target-metadata'],
    ] as const) {
      const query = `beta=true&token=${PLANTED.github}&to=${email}&password=hunter2-Horse`;
      const res = await fetch(`${h.url}${base}/v1/files/${email}/content?${query}`, {
        headers: {
          'x-api-key': CLIENT_KEY,
          'user-agent': `mytool/1.0 (${PLANTED.aws}; ${PLANTED.email})`,
          'x-vigil-session': session,
        },
      });
      await res.arrayBuffer();
      expect(h.fake.requests.at(-1)!.query).toBe(query); // forwarded as sent
      const [x] = await h.session(session, 1);
      expect(x!.request.path).toBe('/v1/files/[REDACTED:email]/content');
      expect(x!.request.query).toBe(
        'beta=true&token=[REDACTED:github_token]&to=[REDACTED:email]&password=[REDACTED:generic_secret]',
      );
      expect(x!.client.userAgent).toBe('mytool/1.0 ([REDACTED:aws_access_key_id]; [REDACTED:email])');
      const records = await h.gateway.store.exchangeRecords(x!.id);
      const summary = JSON.parse(records.find((r) => r.kind === 'exchange.response')!.data).masking;
      expect(summary.findings).toEqual(
        expect.arrayContaining([
          { type: 'email', path: 'request.path', count: 1 },
          { type: 'github_token', path: 'request.query.token', count: 1 },
          { type: 'generic_secret', path: 'request.query.password', count: 1 },
          { type: 'aws_access_key_id', path: 'client.userAgent', count: 1 },
        ]),
      );
    }
  });

  it('the path of a refused call is masked in its access.denied record', async () => {
    const res = await fetch(`${h.url}/c/closed/v1/files/${PLANTED.github}`, { headers: { 'x-api-key': CLIENT_KEY } });
    expect(res.status).toBe(403);
    await h.gateway.recorder.queue.flush();
    const denied = (await h.gateway.store.recordsOfKinds(['access.denied'], 0, 100)).map(
      (r) => JSON.parse(r.data) as { path: string },
    );
    expect(denied.map((d) => d.path)).toContain('/v1/files/[REDACTED:github_token]');
  });
});

describe('in-flight masking (data-loss prevention)', () => {
  it('mask: upstream receives the masked request', async () => {
    await client('/c/dlp-mask').messages.create({
      model: 'm',
      max_tokens: 50,
      messages: [{ role: 'user', content: `key ${PLANTED.aws}` }],
    });
    const sent = h.fake.requests.at(-1)!.body.toString();
    expect(sent).not.toContain(PLANTED.aws);
    expect(sent).toContain('[REDACTED:aws_access_key_id]');
  });

  it('mask or block: a secret in the path or query string refuses the call; nothing is forwarded', async () => {
    // Went wrong: in-flight DLP read JSON bodies only, so a secret in the request target went upstream as it was.
    const before = h.fake.requests.length;
    for (const path of ['/c/dlp-block', '/c/dlp-mask']) {
      const res = await fetch(`${h.url}${path}/v1/messages?token=${PLANTED.github}`, {
        method: 'POST',
        headers: { 'x-api-key': CLIENT_KEY, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(res.status).toBe(400);
      const text = await res.text();
      expect(text).toContain('path or query string contains');
      expect(text).not.toContain(PLANTED.github);
    }
    expect(h.fake.requests.length).toBe(before);
  });

  it('block: 400 invalid_request_error naming the types found, never the values', async () => {
    const before = h.fake.requests.length;
    const err = (await client('/c/dlp-block')
      .messages.create({
        model: 'm',
        max_tokens: 50,
        messages: [{ role: 'user', content: `key ${PLANTED.aws} ${PLANTED.email}` }],
      })
      .catch((e: unknown) => e)) as APIError;
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect(err.error).toMatchObject({
      error: { type: 'invalid_request_error', message: expect.stringContaining('aws_access_key_id, email') },
    });
    expect(err.message).not.toContain(PLANTED.aws);
    expect(h.fake.requests.length).toBe(before); // never forwarded
  });
});

describe('whatever the body is labelled or encoded as', () => {
  const post = (path: string, body: Buffer | string, headers: Record<string, string>) =>
    fetch(`${h.url}${path}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': CLIENT_KEY, 'anthropic-version': '2023-06-01', ...headers },
      body,
    });
  const ask = (text: string) =>
    JSON.stringify({ model: 'm', max_tokens: 20, messages: [{ role: 'user', content: text }] });

  it('a gzip-compressed request is masked before it is stored, and forwarded decoded', async () => {
    // Went wrong: a compressed body was not valid UTF-8, so it was stored as an opaque blob no masking had seen.
    const res = await post('', gzipSync(ask(`key ${PLANTED.aws}`)), {
      'content-type': 'application/json',
      'content-encoding': 'gzip',
      'x-vigil-session': 'gzip-request',
    });
    expect(res.status).toBe(200);
    const sent = h.fake.requests.at(-1)!;
    expect(sent.headers['content-encoding']).toBeUndefined();
    expect(JSON.parse(sent.body.toString())).toMatchObject({ messages: [{ content: `key ${PLANTED.aws}` }] });
    const [x] = await h.session('gzip-request', 1);
    expect(JSON.stringify(x!.request.body)).toContain('key [REDACTED:aws_access_key_id]');
    expect(JSON.stringify(x)).not.toContain(PLANTED.aws);
  });

  it('a body that is not UTF-8 (a Latin-1 CSV upload) is masked too, every other byte stored as sent', async () => {
    // Went wrong: a body that was not valid UTF-8 was taken for binary and stored whole, without a scan.
    const csv = (token: string, email: string) =>
      Buffer.concat([Buffer.from('name,email,token\nRen'), Buffer.from([0xe9]), Buffer.from(`,${email},${token}\n`)]);
    const part = (file: Buffer) =>
      Buffer.concat([
        Buffer.from('--XyZ\r\nContent-Disposition: form-data; name="file"; filename="users.csv"\r\n'),
        Buffer.from('Content-Type: text/csv\r\n\r\n'),
        file,
        Buffer.from('\r\n--XyZ--\r\n'),
      ]);
    const res = await fetch(`${h.url}/v1/files`, {
      method: 'POST',
      headers: {
        'x-api-key': CLIENT_KEY,
        'anthropic-version': '2023-06-01',
        'anthropic-beta': 'files-api-2025-04-14',
        'content-type': 'multipart/form-data; boundary=XyZ',
        'x-vigil-session': 'latin1-upload',
      },
      body: part(csv(PLANTED.github, PLANTED.email)),
    });
    expect(res.status).toBe(200);
    expect(h.fake.requests.at(-1)!.body).toEqual(part(csv(PLANTED.github, PLANTED.email))); // forwarded as sent
    const [x] = await h.session('latin1-upload', 1);
    const stored = Buffer.from((x!.request.body as { base64: string }).base64, 'base64');
    expect(stored).toEqual(part(csv('[REDACTED:github_token]', '[REDACTED:email]')));
  });

  it('a JSON body labelled text/plain, or not at all, is still judged as JSON (in-flight block)', async () => {
    // Went wrong: JSON-ness came from the caller's content-type alone, so a mislabelled body skipped DLP and rules.
    const before = h.fake.requests.length;
    for (const headers of [{ 'content-type': 'text/plain' }, {}]) {
      const res = await post('/c/dlp-block', ask(`key ${PLANTED.aws}`), headers);
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: { message: expect.stringContaining('aws_access_key_id') } });
    }
    expect(h.fake.requests.length).toBe(before);
  });

  it('an encoding the gateway cannot undo → 400 naming it; a body that inflates past the limit → 413', async () => {
    const before = h.fake.requests.length;
    const zstd = await post('', ask('hello'), { 'content-type': 'application/json', 'content-encoding': 'zstd' });
    expect(zstd.status).toBe(400);
    expect(await zstd.json()).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error', message: expect.stringContaining('"zstd" is not supported') },
    });
    const garbled = await post('', Buffer.from('not gzip at all'), { 'content-encoding': 'gzip' });
    expect(garbled.status).toBe(400);
    // 33 MiB of zeros is ~33 KB gzipped: past the 32 MiB limit once decoded.
    const bomb = await post('', gzipSync(Buffer.alloc(33 * 1024 * 1024)), { 'content-encoding': 'gzip' });
    expect(bomb.status).toBe(413);
    expect(await bomb.json()).toMatchObject({ error: { type: 'request_too_large' } });
    expect(h.fake.requests.length).toBe(before);
  });
});

describe('what upstream sends, however it is cut or framed', () => {
  const LIMIT = 1000;
  /** A message whose text holds the planted values, then CJK text (3 bytes a character) past byte LIMIT. */
  function longMessage(pad: number): Buffer {
    const text = `${'x'.repeat(pad)}token ${PLANTED.github}, mail ${PLANTED.email}. ${'漢'.repeat(400)}`;
    return Buffer.from(
      JSON.stringify({ type: 'message', role: 'assistant', model: 'm', content: [{ type: 'text', text }] }),
    );
  }
  const START = { type: 'message_start', message: { id: 'msg_2', type: 'message', role: 'assistant', content: [] } };
  const BLOCK = { type: 'content_block_start', index: 0, content_block: { type: 'text', text: PLANTED.email } };
  const SSE = [
    `event: message_start\ndata: ${JSON.stringify(START)}\n\n`,
    // Data that is not a JSON object (an intermediary's notice), and a JSON object after two spaces.
    `event: notice\ndata: upstream note: key ${PLANTED.github} for ${PLANTED.email}\n\n`,
    `event: content_block_start\ndata:  ${JSON.stringify(BLOCK)}\n\n`,
    'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
    'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}}\n\n',
    'event: message_stop\ndata: {"type":"message_stop"}\n\n',
  ].join('');
  let up: Server;
  let g: Harness;
  beforeAll(async () => {
    up = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (req.headers['x-sse'] !== undefined) {
          res.writeHead(200, { 'content-type': 'text/event-stream' }).end(SSE);
          return;
        }
        const body = longMessage(Number(req.headers['x-pad']));
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }).end(body);
      });
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    const { port } = up.address() as AddressInfo;
    g = await startHarness(() => ({
      limits: { max_recorded_response_body: LIMIT },
      connections: [
        { name: 'anthropic', upstream: `http://127.0.0.1:${port}`, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
      ],
    }));
  });
  afterAll(async () => {
    await g?.close();
    up?.close();
  });
  const ask = (headers: Record<string, string>) =>
    fetch(`${g.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': CLIENT_KEY, ...headers },
      body: '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}',
    });

  it('a response cut at the recording limit inside a UTF-8 character is still masked, and stored as text', async () => {
    // Went wrong: the kept part ended inside a character, so it was not valid UTF-8 and was stored without a scan.
    for (const pad of [0, 1, 2]) {
      const res = await ask({ 'x-pad': String(pad), 'x-vigil-session': `cut-${pad}` });
      expect(Buffer.from(await res.arrayBuffer())).toEqual(longMessage(pad)); // the client gets all of it
      const [x] = await g.session(`cut-${pad}`, 1);
      expect(typeof x!.response.body).toBe('string');
      // Stored: the masked message, up to the last whole character before the limit.
      const stored = x!.response.body as string;
      const masked = longMessage(pad)
        .toString()
        .replace(PLANTED.github, '[REDACTED:github_token]')
        .replace(PLANTED.email, '[REDACTED:email]');
      expect(masked.startsWith(stored)).toBe(true);
      expect(stored).toContain('token [REDACTED:github_token], mail [REDACTED:email]. 漢漢');
      expect(JSON.stringify(x)).not.toContain(PLANTED.github);
    }
    await g.gateway.recorder.queue.flush();
    for (const v of [PLANTED.github, PLANTED.email]) expect(filesContaining(g.dataDir, v)).toEqual([]);
  });

  it('stream events whose data is not a JSON object, or starts with whitespace, are masked', async () => {
    // Went wrong: only data starting with `{` was parsed, and data that was not parsed was stored without a scan.
    const res = await ask({ 'x-sse': '1', 'x-vigil-session': 'sse-framing' });
    expect(await res.text()).toBe(SSE);
    const [x] = await g.session('sse-framing', 1);
    expect(x!.response.events.map((e) => e.data)).toEqual([
      START,
      'upstream note: key [REDACTED:github_token] for [REDACTED:email]',
      { ...BLOCK, content_block: { type: 'text', text: '[REDACTED:email]' } },
      { type: 'content_block_stop', index: 0 },
      expect.objectContaining({ type: 'message_delta' }),
      { type: 'message_stop' },
    ]);
    expect(x!.response.message).toMatchObject({ content: [{ type: 'text', text: '[REDACTED:email]' }] });
    await g.gateway.recorder.queue.flush();
    for (const v of [PLANTED.github, PLANTED.email]) expect(filesContaining(g.dataDir, v)).toEqual([]);
  });
});

describe('the data directory', () => {
  it('contains none of the planted values, anywhere', async () => {
    await h.gateway.recorder.queue.flush();
    for (const v of Object.values(PLANTED))
      expect({ v, files: filesContaining(h.dataDir, v) }).toEqual({ v, files: [] });
  });
});

describe('a body nested deeper than anything can be masked', () => {
  it('is refused with 400 invalid_request_error, and nothing is forwarded', async () => {
    // Went wrong: masking walks a body recursively and ran out of stack: a 500 "could not be recorded".
    const depth = 50_000;
    const body = `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"metadata":{"x":${'['.repeat(depth)}${']'.repeat(depth)}}}`;
    const before = h.fake.requests.length;
    const res = await fetch(`${h.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': CLIENT_KEY, 'content-type': 'application/json' },
      body,
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    expect(h.fake.requests.length).toBe(before);
    // …also where the request is masked in flight, before anything else.
    const inFlight = await fetch(`${h.url}/c/dlp-block/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': CLIENT_KEY, 'content-type': 'application/json' },
      body,
    });
    expect(inFlight.status).toBe(400);
    expect(h.fake.requests.length).toBe(before);
  });
});
