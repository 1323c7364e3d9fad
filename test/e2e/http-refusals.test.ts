/**
 * Requests Node's HTTP parser refuses before the gateway reads them — headers too large, not HTTP — are answered in
 * Anthropic's error shape like every other gateway error (the admin API: in its own), where Node's own answers have
 * no body; and headers of the size a large identity-provider token makes are accepted.
 */
import net from 'node:net';
import Anthropic, { APIError } from '@anthropic-ai/sdk';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { MAX_HEADER_BYTES } from '../../src/net/parser-refusals.js';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h?.close());

/** What a listener (the proxy's by default) answers to `text` sent as is on a new connection, split up. */
function raw(
  text: string,
  port = new URL(h.url).port,
): Promise<{ status: number; headers: Map<string, string>; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => socket.end(text));
    let out = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (out += d));
    socket.on('error', reject);
    socket.on('close', () => {
      const [head = '', body = ''] = out.split('\r\n\r\n');
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers = new Map(
        lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
      );
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body });
    });
  });
}

const sdk = (headers: Record<string, string>) =>
  new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0, defaultHeaders: headers });
const ask = { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user' as const, content: 'hi' }] };

it('accepts headers of the size a large identity-provider token makes (32 KiB)', async () => {
  // Node's default limit is 16 KiB. The token, a caller's credential, is not forwarded: upstream never sees its size.
  const r = await sdk({ authorization: `Bearer ${'g'.repeat(32 * 1024)}` }).messages.create(ask);
  expect(r.content).toHaveLength(1);
  expect(h.fake.requests.at(-1)!.headers.authorization).toBeUndefined();
});

it('answers headers over the limit with 431 in Anthropic’s shape, forwarding and recording nothing', async () => {
  const forwarded = h.fake.requests.length;
  const requests = async () => (await h.gateway.store.recordsOfKinds(['exchange.request'], 0, 1000)).length;
  const recorded = await requests();
  const err = (await sdk({ 'x-large-claims': 'g'.repeat(MAX_HEADER_BYTES) })
    .messages.create(ask)
    .catch((e: unknown) => e)) as APIError;
  expect(err).toBeInstanceOf(APIError);
  expect(err.status).toBe(431);
  expect(err.error).toEqual({
    type: 'error',
    error: {
      type: 'invalid_request_error',
      message: "the request's headers are larger than the gateway accepts (64 KiB in all)",
    },
  });
  expect(err.requestID).toMatch(/^vigil_ex_/);
  expect(h.fake.requests.length).toBe(forwarded);
  expect(await requests()).toBe(recorded);
});

it('answers a request that is not valid HTTP with 400 in Anthropic’s shape', async () => {
  const r = await raw('POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Length: twelve\r\n\r\n{}');
  expect(r.status).toBe(400);
  expect(r.headers.get('content-type')).toBe('application/json');
  expect(r.headers.get('request-id')).toMatch(/^vigil_ex_/);
  expect(JSON.parse(r.body)).toEqual({
    type: 'error',
    error: { type: 'invalid_request_error', message: 'the request is not valid HTTP/1.1 (HPE_INVALID_CONTENT_LENGTH)' },
  });
});

it('answers the admin API’s callers the same way, in its own error shape', async () => {
  // An admin signs in with the identity provider's token too.
  const ok = await fetch(`${h.gateway.adminUrl}/api/v1/sessions`, {
    headers: { 'x-large-claims': 'g'.repeat(32 * 1024) },
  });
  expect(ok.status).toBe(200);
  await ok.arrayBuffer();
  const { port } = new URL(h.gateway.adminUrl!);
  const r = await raw(
    `GET /api/v1/sessions HTTP/1.1\r\nHost: gw\r\nX-Large: ${'g'.repeat(MAX_HEADER_BYTES)}\r\n\r\n`,
    port,
  );
  expect(r.status).toBe(431);
  expect(JSON.parse(r.body)).toEqual({
    error: {
      type: 'invalid_request_error',
      message: "the request's headers are larger than the gateway accepts (64 KiB in all)",
    },
  });
});
