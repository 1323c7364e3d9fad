import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/errors.js';
import type { AuditEvent } from '../../../src/export/audit-event.js';
import { createSink, type Sink } from '../../../src/export/sink.js';
import { SinkDeliveryError } from '../../../src/export/sink-delivery-error.js';
import { sinkConfigSchema, type SinkConfigInput } from '../../../src/export/sinks-config.js';
import { ConnectProxy } from '../../support/connect-proxy.js';
import { closedPort, startRecordingHttpServer, type RecordingHttpServer } from '../../support/recording-http-server.js';
import { deniedEvent, exchangeEvent, unserialisable, verifyFailedEvent } from '../../support/sample-audit-events.js';
import { batchOverMaxBodySize, expectCutAtMaxBodySize } from '../../support/sink-body-size.js';

let server: RecordingHttpServer;
const sinks: Sink[] = [];

beforeAll(async () => {
  server = await startRecordingHttpServer();
  process.env.VIGIL_TEST_WEBHOOK_SECRET = 'whsec-test-1234';
  process.env.VIGIL_TEST_WEBHOOK_TOKEN = 'Bearer abc';
});
afterEach(async () => {
  await Promise.all(sinks.splice(0).map((s) => s.close()));
  server.requests.length = 0;
  server.reply = () => ({ status: 200 });
});
afterAll(async () => {
  await server.close();
});

function httpSink(overrides: Partial<Extract<SinkConfigInput, { type: 'http' }>> = {}): Sink {
  const sink = createSink(
    sinkConfigSchema.parse({ type: 'http', name: 'webhook', url: `${server.url}/hooks/vigil?src=gw`, ...overrides }),
  );
  sinks.push(sink);
  return sink;
}

/** What a receiver does: recompute the MAC over `<timestamp>.<body>` and compare in constant time. */
function signatureVerifies(secret: string, timestamp: string, body: string, header: string): boolean {
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`);
  const got = Buffer.from(header);
  return expected.length === got.length && timingSafeEqual(expected, got);
}

describe('http sink', () => {
  it('reaches its receiver through the proxy it is given, a tunnel with the proxy credentials', async () => {
    const proxy = new ConnectProxy('siem:proxy-pw');
    const port = await proxy.listen();
    process.env.VIGIL_TEST_SINK_PROXY = `http://siem:proxy-pw@127.0.0.1:${port}`;
    try {
      await httpSink({ proxy: { env: 'VIGIL_TEST_SINK_PROXY' } }).deliver([deniedEvent(1)]);
      expect(server.requests).toHaveLength(1);
      expect(server.requests[0]!.url).toBe('/hooks/vigil?src=gw');
      const receiver = new URL(server.url);
      expect(proxy.tunnels).toEqual([
        { target: `${receiver.hostname}:${receiver.port}`, credentials: 'siem:proxy-pw', allowed: true },
      ]);
      // A proxy that refuses: a delivery error naming the sink, retried by the outbox like any.
      process.env.VIGIL_TEST_SINK_PROXY = `http://siem:wrong@127.0.0.1:${port}`;
      await expect(httpSink({ proxy: { env: 'VIGIL_TEST_SINK_PROXY' } }).deliver([deniedEvent(2)])).rejects.toThrow(
        SinkDeliveryError,
      );
      expect(server.requests).toHaveLength(1);
    } finally {
      delete process.env.VIGIL_TEST_SINK_PROXY;
      await Promise.all(sinks.splice(0).map((s) => s.close()));
      await proxy.close();
    }
  });

  it('POSTs {events:[…]} as JSON to the configured URL, without content unless opted in', async () => {
    const batch = [exchangeEvent(1, { content: { request: { secret: 'masked' } } }), deniedEvent(2)];
    await httpSink({ headers: { 'X-Team': 'sec', authorization: { env: 'VIGIL_TEST_WEBHOOK_TOKEN' } } }).deliver(batch);

    expect(server.requests).toHaveLength(1);
    const req = server.requests[0]!;
    expect([req.method, req.url, req.headers['content-type']]).toEqual([
      'POST',
      '/hooks/vigil?src=gw',
      'application/json',
    ]);
    expect(req.headers['x-team']).toBe('sec');
    expect(req.headers.authorization).toBe('Bearer abc');
    expect(req.headers['x-vigil-signature']).toBeUndefined();
    const { content: _c, ...first } = batch[0]!;
    expect(JSON.parse(req.body)).toEqual({ events: [first, batch[1]] });
  });

  it('sends content when the sink has include_content: true', async () => {
    const e = exchangeEvent(1, { content: { request: { messages: ['[masked]'] } } });
    await httpSink({ include_content: true }).deliver([e]);
    expect(JSON.parse(server.requests[0]!.body)).toEqual({ events: [e] });
  });

  it('signs the body with HMAC-SHA256 over "<timestamp>.<body>", which the receiver can verify', async () => {
    await httpSink({ secret: { env: 'VIGIL_TEST_WEBHOOK_SECRET' } }).deliver([exchangeEvent(1)]);
    const req = server.requests[0]!;
    const timestamp = String(req.headers['x-vigil-timestamp']);
    const signature = String(req.headers['x-vigil-signature']);
    expect(timestamp).toMatch(/^\d+$/);
    expect(Math.abs(Number(timestamp) - Date.now() / 1000)).toBeLessThan(5);
    expect(signature).toMatch(/^sha256=[0-9a-f]{64}$/);
    expect(signatureVerifies('whsec-test-1234', timestamp, req.body, signature)).toBe(true);
    // A tampered body or a replayed signature under another timestamp does not verify.
    expect(signatureVerifies('whsec-test-1234', timestamp, req.body.replace('alice', 'mallory'), signature)).toBe(
      false,
    );
    expect(signatureVerifies('whsec-test-1234', String(Number(timestamp) + 600), req.body, signature)).toBe(false);
  });

  it('splits a batch larger than batch_size into POSTs in order', async () => {
    const batch = Array.from({ length: 5 }, (_, i) => exchangeEvent(i + 1));
    await httpSink({ batch_size: 2 }).deliver(batch);
    const ids = server.requests.map((r) =>
      (JSON.parse(r.body) as { events: Array<{ id: string }> }).events.map((e) => e.id),
    );
    expect(ids).toEqual([['evt-0001', 'evt-0002'], ['evt-0003', 'evt-0004'], ['evt-0005']]);
  });

  it('throws on a non-2xx answer, naming the status', async () => {
    server.reply = () => ({ status: 500, body: 'database is down' });
    const err = await httpSink()
      .deliver([verifyFailedEvent()])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SinkDeliveryError);
    expect((err as Error).message).toMatch(/webhook.*answered 500: database is down/);
  });

  it('throws when a later chunk fails, so the outbox retries the batch', async () => {
    server.reply = () => (server.requests.length === 2 ? { status: 503 } : { status: 204 });
    await expect(httpSink({ batch_size: 1 }).deliver([exchangeEvent(1), exchangeEvent(2)])).rejects.toThrow(/503/);
  });

  it('throws when the receiver does not answer within the timeout', async () => {
    server.reply = () => ({ status: 200, hang: true });
    const started = Date.now();
    await expect(httpSink({ timeout: '200ms' }).deliver([exchangeEvent(1)])).rejects.toThrow(/timed out/);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('throws when the connection is refused', async () => {
    const port = await closedPort();
    const sink = createSink(
      sinkConfigSchema.parse({ type: 'http', name: 'webhook', url: `http://127.0.0.1:${port}/` }),
    );
    sinks.push(sink);
    await expect(sink.deliver([exchangeEvent(1)])).rejects.toThrow(/ECONNREFUSED/);
  });

  it('refuses to start when the secret is missing, naming the config key', () => {
    expect(() => httpSink({ secret: { env: 'VIGIL_TEST_NOT_SET' } })).toThrow(ConfigError);
    expect(() => httpSink({ secret: { env: 'VIGIL_TEST_NOT_SET' } })).toThrow(
      /siem\.sinks\[\] \(webhook\)\.secret.*VIGIL_TEST_NOT_SET/,
    );
  });
});

describe('http sink with large content', () => {
  it('sends a batch larger than a JavaScript string can hold, in POSTs within max_body_size', async () => {
    // What went wrong: 20 exchanges that each carried a 27 MiB PDF made one body past V8's string limit; the RangeError
    // was not a refused delivery, so the outbox retried the same batch forever and everything behind it waited.
    const sizes: number[] = [];
    const ids: string[][] = [];
    let omitted = 0;
    const receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        sizes.push(body.length);
        // Not parsed (hundreds of MiB): the ids and that every event kept its content are enough.
        ids.push([...body.toString('latin1').matchAll(/"id":"(c:\d+)"/g)].map((m) => m[1]!));
        if (body.includes('"omitted"')) omitted++;
        res.end();
      });
    });
    // Serialising the next 64 MiB body can take longer than Node's 5 s keep-alive on a loaded host: the receiver then
    // closes the idle connection as the sink reuses it (ECONNRESET; the outbox would send the batch again). Here,
    // where deliver() is called once, the receiver keeps it open.
    receiver.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = receiver.address() as AddressInfo;
      const sink = httpSink({ url: `http://127.0.0.1:${port}/dlp`, include_content: true, timeout: '20s' });
      const pdf = 'A'.repeat(27 * 1024 * 1024);
      const events = Array.from({ length: 20 }, (_, i) =>
        exchangeEvent(i + 1, {
          id: `c:${i + 1}`,
          content: { request: { messages: [{ role: 'user', content: [{ type: 'document', data: pdf }] }] } },
        }),
      );
      await sink.deliver(events);
      expect(ids.flat()).toEqual(events.map((e) => e.id));
      expect(omitted).toBe(0);
      expect(sizes.length).toBeGreaterThan(1);
      for (const size of sizes) expect(size).toBeLessThanOrEqual(64 * 1024 * 1024);
    } finally {
      await new Promise<void>((resolve) => receiver.close(() => resolve()));
    }
  }, 60_000);

  it('cuts a batch into POSTs of at most max_body_size bytes, and sends an event too large alone without content', async () => {
    const batch = batchOverMaxBodySize();
    await httpSink({ include_content: true, max_body_size: 16 * 1024 }).deliver(batch);

    const bodies = server.requests.map((r) => r.body);
    for (const b of bodies) expect(Buffer.byteLength(b)).toBeLessThanOrEqual(16 * 1024);
    const posted = bodies.map((b) => (JSON.parse(b) as { events: AuditEvent[] }).events);
    expectCutAtMaxBodySize(posted, batch, 16 * 1024);
  });

  it('sends an event whose content cannot be serialised without it, and the rest of the batch with theirs', async () => {
    const batch = [
      exchangeEvent(1, { content: { request: unserialisable } }),
      exchangeEvent(2, { content: { request: { text: 'fine' } } }),
    ];
    await httpSink({ include_content: true }).deliver(batch);
    const [events] = server.requests.map((r) => (JSON.parse(r.body) as { events: AuditEvent[] }).events);
    expect(events![0]!.content).toEqual({
      omitted: 'the event with its content could not be serialised: Invalid string length',
    });
    expect(events![1]).toEqual(batch[1]);
  });

  it('throws a refused delivery when an event cannot be serialised even without content', async () => {
    // Sending it again would fail the same way: the outbox must go one event at a time, not retry the batch forever.
    const broken = exchangeEvent(1, { attributes: unserialisable as AuditEvent['attributes'] });
    const err = await httpSink()
      .deliver([broken])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SinkDeliveryError);
    expect(err).toMatchObject({ rejected: true });
    expect((err as Error).message).toMatch(/event evt-0001 could not be serialised: Invalid string length/);
    expect(server.requests).toHaveLength(0);
  });
});
