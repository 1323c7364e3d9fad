/**
 * An upstream that breaks HTTP's promises: the exchange still ends, is recorded, and never holds up shutdown.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest';
import { ExchangeRecording } from '../../src/recorder/recorder.js';
import { CLIENT_KEY, postMessages, startHarness, type Harness } from '../support/gateway-harness.js';

let h: Harness;
let broken: http.Server;

beforeAll(async () => {
  // Says gzip, sends bytes that are not.
  broken = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      res.write('this is not gzip at all');
      setTimeout(() => res.end('and neither is this'), 20);
    });
  });
  await new Promise<void>((resolve) => broken.listen(0, '127.0.0.1', resolve));
  const { port } = broken.address() as AddressInfo;
  h = await startHarness((upstream) => ({
    connections: [
      { name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
      { name: 'broken', upstream: `http://127.0.0.1:${port}`, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
    ],
  }));
});
afterAll(async () => {
  await h?.close();
  broken?.close();
});
afterEach(() => {
  vi.restoreAllMocks();
});

it('a response body that does not decode as its content-encoding says still ends the exchange', async () => {
  // Went wrong: the decoder failed before the end of the body, the recorder then waited for an `end` that never
  // came, and the exchange stayed in progress — and every shutdown waited its full grace period for it.
  // A raw client: it reads the bytes as they come and does not try to decode them (fetch would give up on them).
  const { status, id } = await new Promise<{ status: number; id: string }>((resolve, reject) => {
    const req = http.request(`${h.url}/c/broken/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': CLIENT_KEY, 'content-type': 'application/json', 'accept-encoding': 'gzip' },
    });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, id: String(res.headers['x-vigil-exchange-id']) }));
    });
    req.on('error', reject);
    req.end(JSON.stringify({ model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }));
  });
  expect(status).toBe(200); // the client gets upstream's answer as it came
  const x = await h.exchange(id);
  expect(x.outcome).toBe('ok');
  expect(h.gateway.recorder.inFlight).toBe(0);
});

it('a fault of the gateway’s own while the answer starts ends the exchange as a gateway error, answered in Anthropic’s shape', async () => {
  // Went wrong: an exception thrown by the gateway's own code inside undici's callbacks was answered with a 500 under
  // a new exchange id, and the exchange itself stayed in progress until the next start. A fault injected into the
  // recorder stands for such a bug: no upstream or client behaviour is known to cause one.
  const spy = vi.spyOn(ExchangeRecording.prototype, 'responseStarted').mockImplementationOnce(() => {
    throw new Error('injected fault');
  });
  const res = await postMessages(h.url, 'own-fault', { messages: [{ role: 'user', content: 'hi' }] });
  expect(spy).toHaveBeenCalledTimes(1);
  expect(res.status).toBe(500);
  const id = res.headers.get('x-vigil-exchange-id')!;
  expect(res.headers.get('request-id')).toBe(`vigil_${id}`);
  expect(await res.json()).toEqual({
    type: 'error',
    error: { type: 'api_error', message: 'internal gateway error' },
  });
  const x = await h.exchange(id);
  expect(x.outcome).toBe('gateway_error');
  expect(x.response.status).toBe(500);
  expect(x.response.error).toEqual({ type: 'api_error', message: 'internal gateway error' });
  expect(h.gateway.recorder.inFlight).toBe(0);

  // The next call goes through as usual.
  const next = await postMessages(h.url, 'own-fault', { messages: [{ role: 'user', content: 'hi again' }] });
  expect(next.status).toBe(200);
  expect((await h.exchange(next.headers.get('x-vigil-exchange-id')!)).outcome).toBe('ok');
});
