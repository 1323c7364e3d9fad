/**
 * Response bodies with several content codings (RFC 9110 §8.4: listed in the order they were applied): the client
 * gets upstream's bytes as they are; the record holds the body decoded — streams event by event.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';

let h: Harness;
let layered: http.Server;

const MESSAGE = {
  id: 'msg_layered',
  type: 'message',
  role: 'assistant',
  model: 'claude-haiku-4-5',
  content: [{ type: 'text', text: 'twice wrapped' }],
  stop_reason: 'end_turn',
  stop_sequence: null,
  usage: { input_tokens: 3, output_tokens: 2 },
};
const SSE = [
  ['message_start', { type: 'message_start', message: { ...MESSAGE, content: [], stop_reason: null } }],
  ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }],
  ['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'twice' } }],
  ['content_block_stop', { type: 'content_block_stop', index: 0 }],
  ['message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 2 } }],
  ['message_stop', { type: 'message_stop' }],
]
  .map(([event, data]) => `event: ${event as string}\ndata: ${JSON.stringify(data)}\n\n`)
  .join('');

/** gzip first, then br: `content-encoding: gzip, br`. */
const layer = (text: string): Buffer => brotliCompressSync(gzipSync(Buffer.from(text)));

beforeAll(async () => {
  layered = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const stream = req.url?.includes('stream') === true;
      res.writeHead(200, {
        'content-type': stream ? 'text/event-stream' : 'application/json',
        'content-encoding': 'gzip, br',
      });
      res.end(layer(stream ? SSE : JSON.stringify(MESSAGE)));
    });
  });
  await new Promise<void>((resolve) => layered.listen(0, '127.0.0.1', resolve));
  const { port } = layered.address() as AddressInfo;
  h = await startHarness(() => ({
    connections: [
      { name: 'anthropic', upstream: `http://127.0.0.1:${port}`, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
    ],
  }));
});
afterAll(async () => {
  await h?.close();
  layered?.close();
});

/** POST with a raw client, which leaves the body as it came (fetch would try to undo the codings itself). */
function post(path: string): Promise<{ id: string; body: Buffer; encoding: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${h.url}${path}`, {
      method: 'POST',
      headers: { 'x-api-key': CLIENT_KEY, 'content-type': 'application/json', 'accept-encoding': 'gzip, br' },
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          id: String(res.headers['x-vigil-exchange-id']),
          body: Buffer.concat(chunks),
          encoding: res.headers['content-encoding'],
        }),
      );
    });
    req.on('error', reject);
    req.end(JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }));
  });
}

it('a JSON body in two codings reaches the client as sent and the record decoded', async () => {
  const { id, body, encoding } = await post('/v1/messages');
  expect(encoding).toBe('gzip, br');
  expect(body.equals(layer(JSON.stringify(MESSAGE)))).toBe(true);
  const x = await h.exchange(id);
  expect(x.outcome).toBe('ok');
  expect(x.response.body).toEqual(MESSAGE);
});

it('a stream in two codings is recorded event by event, and its message assembled', async () => {
  const { id, encoding } = await post('/v1/messages?stream');
  expect(encoding).toBe('gzip, br');
  const x = await h.exchange(id);
  expect(x.outcome).toBe('ok');
  expect(x.response.events?.map((e) => e.type)).toEqual(SSE.match(/^event: (\S+)/gm)!.map((l) => l.slice(7)));
  expect(x.response.message).toMatchObject({ content: [{ type: 'text', text: 'twice' }], stop_reason: 'end_turn' });
});
