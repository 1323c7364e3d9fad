/**
 * The syslog sink's transports against plain Node servers, byte for byte (the real receiver is in
 * test/e2e/rsyslog.test.ts): framing, ordering of concurrent deliveries, and the failures that must throw.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/export/audit-event.js';
import { createSink, type Sink } from '../../../src/export/sink.js';
import { SinkDeliveryError } from '../../../src/export/sink-delivery-error.js';
import { sinkConfigSchema } from '../../../src/export/sinks-config.js';
import { SyslogUdpTransport } from '../../../src/export/syslog-udp-transport.js';
import { closedPort } from '../../support/recording-http-server.js';
import { deniedEvent, exchangeEvent } from '../../support/sample-audit-events.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function syslogSink(transport: 'udp' | 'tcp' | 'tls', port: number, extra: Record<string, unknown> = {}): Sink {
  const sink = createSink(
    sinkConfigSchema.parse({ type: 'syslog', name: 's', transport, host: '127.0.0.1', port, ...extra }),
    { hostname: 'h' },
  );
  cleanups.push(() => sink.close());
  return sink;
}

/** A TCP server that keeps every byte received, per connection. */
async function tcpReceiver(
  onConnection?: (socket: net.Socket) => void,
): Promise<{ port: number; received: () => Buffer[] }> {
  const conns: Buffer[][] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const chunks: Buffer[] = [];
    conns.push(chunks);
    socket.on('data', (c: Buffer) => chunks.push(c));
    onConnection?.(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as net.AddressInfo).port, received: () => conns.map((c) => Buffer.concat(c)) };
}

/** Reads octet-counted frames; throws on a malformed stream. */
function frames(stream: Buffer): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < stream.length) {
    const sp = stream.indexOf(0x20, i);
    const len = Number(stream.subarray(i, sp).toString('ascii'));
    if (sp < 0 || !Number.isInteger(len) || len <= 0) throw new Error(`bad frame length at ${i}`);
    out.push(stream.subarray(sp + 1, sp + 1 + len).toString('utf8'));
    i = sp + 1 + len;
  }
  return out;
}

async function until(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const idOf = (message: string): string => (JSON.parse(message.slice(message.indexOf('] {') + 2)) as AuditEvent).id;

describe('syslog sink over tcp', () => {
  it('sends octet-counted frames on one connection, concurrent deliveries in call order', async () => {
    const rx = await tcpReceiver();
    const sink = syslogSink('tcp', rx.port);
    await Promise.all([
      sink.deliver([exchangeEvent(1), deniedEvent(2)]),
      sink.deliver([exchangeEvent(3)]),
      sink.deliver([exchangeEvent(4), exchangeEvent(5)]),
    ]);
    await until(() => rx.received().length === 1 && frames(rx.received()[0]!).length === 5);
    expect(rx.received()).toHaveLength(1);
    const got = frames(rx.received()[0]!);
    expect(got.map(idOf)).toEqual(['evt-0001', 'evt-0002', 'evt-0003', 'evt-0004', 'evt-0005']);
    // The subject's é is two bytes: the frame length counts bytes, and the frame still parses.
    expect(got[1]).toContain('subject="ci \\"bot\\" \\\\ [x\\] é✓"');
  });

  it('reconnects after the receiver closed the connection', async () => {
    const rx = await tcpReceiver((socket) => {
      // The first connection is closed by the receiver after its first batch.
      if (rx?.received().length === 1) socket.once('data', () => setTimeout(() => socket.end(), 5));
    });
    const sink = syslogSink('tcp', rx.port);
    await sink.deliver([exchangeEvent(1)]);
    await until(() => rx.received().length === 1 && rx.received()[0]!.length > 0);
    await new Promise((r) => setTimeout(r, 50));
    await sink.deliver([exchangeEvent(2)]);
    await until(() => rx.received().length === 2 && rx.received()[1]!.length > 0);
    expect(rx.received().map((b) => frames(b).map(idOf))).toEqual([['evt-0001'], ['evt-0002']]);
  });

  it('throws when the connection is refused', async () => {
    const sink = syslogSink('tcp', await closedPort());
    const err = await sink.deliver([exchangeEvent(1)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SinkDeliveryError);
    expect((err as Error).message).toMatch(/syslog to tcp:\/\/127\.0\.0\.1:\d+ failed: .*ECONNREFUSED/);
  });
});

describe('syslog sink over tls', () => {
  it('throws when the TLS handshake does not complete within the timeout', async () => {
    const rx = await tcpReceiver(); // accepts TCP, never speaks TLS
    const sink = syslogSink('tls', rx.port, { timeout: '200ms' });
    const started = Date.now();
    await expect(sink.deliver([exchangeEvent(1)])).rejects.toThrow(/connect timed out after 200 ms/);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('throws when the server does not speak TLS', async () => {
    const rx = await tcpReceiver((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    const sink = syslogSink('tls', rx.port);
    await expect(sink.deliver([exchangeEvent(1)])).rejects.toThrow(SinkDeliveryError);
  });
});

/** A UDP socket on 127.0.0.1 (`port`, or a free one) that keeps every datagram received. */
async function udpReceiver(port = 0): Promise<{ port: number; got: Buffer[] }> {
  const socket = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  socket.on('message', (m) => got.push(m));
  await new Promise<void>((resolve) => socket.bind(port, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return { port: socket.address().port, got };
}

/** A loopback UDP port nothing listens on (bound, then released). */
async function closedUdpPort(): Promise<number> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('syslog sink over udp', () => {
  it('sends one datagram per message, within max_message_size', async () => {
    const { port, got } = await udpReceiver();
    const sink = syslogSink('udp', port, { max_message_size: 1024 });
    const big = exchangeEvent(3, { attributes: { reason: 'z'.repeat(4000) } });
    await sink.deliver([exchangeEvent(1), deniedEvent(2), big]);
    await until(() => got.length === 3);
    expect(got.map((m) => idOf(m.toString('utf8')))).toEqual(['evt-0001', 'evt-0002', 'evt-0003']);
    expect(got[0]!.toString('utf8')).toMatch(
      /^<86>1 2025-06-01T12:00:01.123456Z h vigil \d+ exchange.completed \[vigil@32473 /,
    );
    expect(got[2]!.length).toBeLessThanOrEqual(1024);
  });

  it('throws on every delivery while nothing listens on the port, and delivers once a receiver is back', async () => {
    // What went wrong: the receiver's ICMP "port unreachable" closed the socket without forgetting it, so every other
    // one-event batch went out on a fresh socket, was reported delivered, and was lost — the outbox moved on.
    const port = await closedUdpPort();
    const sink = syslogSink('udp', port);
    for (let i = 1; i <= 4; i++) {
      const err = await sink.deliver([exchangeEvent(i)]).catch((e: unknown) => e);
      expect(err, `delivery ${i}`).toBeInstanceOf(SinkDeliveryError);
      expect((err as Error).message).toMatch(/syslog to udp:\/\/127\.0\.0\.1:\d+ failed: ECONNREFUSED/);
      await sleep(20); // like the outbox's passes: the refusal has long arrived when the next batch goes
    }
    const rx = await udpReceiver(port);
    await sink.deliver([exchangeEvent(1), exchangeEvent(2)]);
    await until(() => rx.got.length === 2);
    expect(rx.got.map((m) => idOf(m.toString('utf8')))).toEqual(['evt-0001', 'evt-0002']);
  });

  it('fails the next batch when a refusal comes back after its own batch was reported', async () => {
    // A refusal slower than the wait cannot be pinned on its batch; it still must not pass unseen.
    const transport = new SyslogUdpTransport('127.0.0.1', await closedUdpPort(), { refusalWaitMs: 0 });
    cleanups.push(() => transport.close());
    await transport.send([Buffer.from('<14>1 - - - - - - one')]);
    await sleep(50);
    await expect(transport.send([Buffer.from('<14>1 - - - - - - two')])).rejects.toThrow(/ECONNREFUSED/);
  });

  it('writes nothing more of the batches it holds once their signal aborts (another gateway delivers now)', async () => {
    // Went wrong: batches handed over before this gateway lost its leadership for the sink were still written after
    // it knew — and the new leader sent the same events again, from the cursor.
    const { port, got } = await udpReceiver();
    const sink = syslogSink('udp', port);
    const lost = new AbortController();
    await sink.deliver([exchangeEvent(1)], lost.signal);
    await until(() => got.length === 1);
    const held = [
      sink.deliver([exchangeEvent(2), exchangeEvent(3)], lost.signal),
      sink.deliver([exchangeEvent(4)], lost.signal),
    ];
    lost.abort(new Error('another gateway delivers for this sink now'));
    // Both at once: awaited one after the other, the second could reject before its expectation is attached.
    await Promise.all(held.map((d) => expect(d).rejects.toThrow(/another gateway delivers for this sink now/)));
    // The socket is still good for the next batches, under a leadership held again.
    await sink.deliver([exchangeEvent(5)], new AbortController().signal);
    await until(() => got.length === 2);
    await sleep(50);
    expect(got.map((m) => idOf(m.toString('utf8')))).toEqual(['evt-0001', 'evt-0005']);
  });

  it('rejects a udp max_message_size larger than a datagram can carry', () => {
    expect(() =>
      sinkConfigSchema.parse({
        type: 'syslog',
        name: 's',
        transport: 'udp',
        host: 'h',
        port: 514,
        max_message_size: 70_000,
      }),
    ).toThrow(/at most 65507/);
  });
});
