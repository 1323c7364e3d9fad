/**
 * The outbox and a syslog/UDP sink, whose batches it keeps in flight while each waits for the collector's refusal
 * (see src/export/syslog-udp-transport.ts). What must not happen: a collector that goes away while batches are in
 * flight loses the ones sent just before its refusal came back. Every batch not yet confirmed is sent again.
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/export/audit-event.js';
import { Outbox } from '../../../src/export/outbox.js';
import { createSink } from '../../../src/export/sink.js';
import { sinkConfigSchema } from '../../../src/export/sinks-config.js';
import { SqliteAuditStore } from '../../../src/store/sqlite/sqlite-audit-store.js';
import { streamingOutbox, type DeliveryFailure } from '../../support/streaming-outbox.js';
import { useTempDir } from '../../support/temp-dir.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const denied = (reason: string) => ({
  kind: 'access.denied',
  at: Date.now(),
  data: { connection: 'anthropic', status: 403, reason, path: '/v1/messages', clientAddress: '127.0.0.1' },
});

/** The event in a syslog datagram's MSG. */
const eventOf = (datagram: Buffer): AuditEvent => {
  const text = datagram.toString('utf8');
  return JSON.parse(text.slice(text.indexOf('] {') + 2)) as AuditEvent;
};

/** A collector on `port` (0: any) that notes each event's reason; `onMessage` may close it. */
async function collector(
  port: number,
  seen: Set<unknown>,
  onMessage: (socket: dgram.Socket) => void = () => undefined,
): Promise<dgram.Socket> {
  // A large receive buffer: what is tested is what the sender sees, not a full buffer it cannot see.
  const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
  socket.on('message', (m) => {
    seen.add(eventOf(m).attributes.reason);
    onMessage(socket);
  });
  await new Promise<void>((resolve) => socket.bind(port, '127.0.0.1', resolve));
  return socket;
}

/**
 * Bytes waiting unread in the receive queue of the UDP socket bound to 127.0.0.1:`port` (Linux: /proc/net/udp, whose
 * addresses and queue sizes are hex).
 */
function unreadBytes(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const line = readFileSync('/proc/net/udp', 'utf8')
    .split('\n')
    .find((l) => l.trim().split(/\s+/)[1] === local);
  if (!line) throw new Error(`no UDP socket on 127.0.0.1:${port}`);
  return parseInt(line.trim().split(/\s+/)[4]!.split(':')[1]!, 16);
}

describe('outbox and a syslog/UDP collector that goes away mid-backlog', () => {
  const tempDir = useTempDir('vigil-outbox-udp');

  it('sends again every batch that was in flight, so no event is lost', async () => {
    const store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db') });
    cleanups.push(() => store.close());
    const reasons = Array.from({ length: 240 }, (_, i) => `e${i}`);
    await store.append({ records: reasons.map(denied) });

    // The collector reads 80 datagrams or more, and closes once it has read all it got: from then on, what arrives is
    // refused. (Closing with datagrams unread would lose them without a trace, whatever the sender does. The sink
    // sends from this thread too, so none can arrive between the look and the close.)
    const seen = new Set<unknown>();
    let received = 0;
    const first = await collector(0, seen, (socket) => {
      if (++received >= 80 && unreadBytes(socket.address().port) === 0) socket.close();
    });
    const port = first.address().port;
    const sink = createSink(
      sinkConfigSchema.parse({ type: 'syslog', name: 'udp', transport: 'udp', host: '127.0.0.1', port }),
    );
    // A batch per event: the refusal of a batch's only datagram comes back while it waits, or fails the send of a
    // batch after it, and either way must fail it too.
    const outbox = new Outbox(store, [sink], { gateway: 'test', log: pino({ level: 'silent' }), batchSize: 1 });
    cleanups.push(() => outbox.close(0));
    let clock = Date.now();
    const pass = () => outbox.runOnce((clock += 3_600_000)); // each pass as if the back-off had passed

    await pass();
    expect(received).toBeGreaterThanOrEqual(80);
    expect(received).toBeLessThan(reasons.length);
    expect(outbox.statuses()[0]).toMatchObject({ failures: 1, lastError: expect.stringMatching(/ECONNREFUSED/) });
    // The cursor did not pass an event the collector did not read (the first record opens the chain).
    expect(outbox.statuses()[0]!.lag).toBeGreaterThanOrEqual(reasons.length - received);

    const second = await collector(port, seen);
    cleanups.push(() => new Promise<void>((resolve) => second.close(() => resolve())));
    await pass();
    expect(outbox.statuses()[0]).toMatchObject({ lag: 0, failures: 1 });
    await expect.poll(() => seen.size).toBe(reasons.length);
    expect([...seen].sort()).toEqual([...reasons].sort());
  });
});

describe('outbox and a syslog/UDP collector that restarts', () => {
  const tempDir = useTempDir('vigil-outbox-udp-restart');

  /** A running outbox to a UDP sink on `port` (see streamingOutbox). */
  const streaming = (port: number, onFailure: (failure: DeliveryFailure) => void) =>
    streamingOutbox({ dir: tempDir(), transport: 'udp', port, onFailure, cleanups });

  it('delivers the refused batch promptly once the collector is back, not after a back-off', async () => {
    // Went wrong: the batch sent while the collector restarted was refused (ICMP port unreachable), and the outbox
    // backed off 1 s (1.0–1.5 s measured, with the default poll) although the collector was back within milliseconds.
    const seen = new Set<unknown>();
    const before = await collector(0, seen);
    const port = before.address().port;
    let restarted: Promise<dgram.Socket> | undefined;
    let refusedAt = 0;
    const { store, outbox } = streaming(port, ({ at }) => {
      // The collector is back as soon as its refusal is known: what is measured is what the outbox does then.
      refusedAt ||= at;
      restarted ??= collector(port, seen);
    });
    await new Promise<void>((resolve) => before.close(() => resolve()));
    const reasons = Array.from({ length: 20 }, (_, i) => `r${i}`);
    await store.append({ records: reasons.map(denied) });

    await expect.poll(() => seen.size, { timeout: 10_000, interval: 5 }).toBe(reasons.length);
    const deliveredIn = Date.now() - refusedAt;
    const after = await restarted!;
    cleanups.push(() => new Promise<void>((resolve) => after.close(() => resolve())));
    expect([...seen].sort()).toEqual([...reasons].sort());
    expect(outbox.statuses()[0]).toMatchObject({ failures: 1, lastError: expect.stringMatching(/ECONNREFUSED/) });
    // One retry 100 ms after the refusal, and its 50 ms wait for a refusal: well under the 1 s back-off.
    expect(deliveredIn).toBeLessThan(800);
  });

  it('still backs off from a collector that stays down, after that one prompt retry', async () => {
    const probe = await collector(0, new Set());
    const port = probe.address().port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const failures: Array<{ at: number; retryInMs: number }> = [];
    const { store } = streaming(port, (f) => failures.push(f));
    await store.append({ records: [denied('nobody listens')] });

    await expect.poll(() => failures.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(3);
    const [first, second, third] = failures as [(typeof failures)[0], (typeof failures)[0], (typeof failures)[0]];
    expect(failures.slice(0, 3).map((f) => f.retryInMs)).toEqual([100, 1000, 2000]);
    // Each failure is timed as it is logged, after its back-off was set: a loaded machine puts a few ms (seen: 10) in
    // between, so the bounds leave room below the 100 ms and 1 s waited.
    expect(second.at - first.at).toBeGreaterThanOrEqual(50);
    expect(third.at - second.at).toBeGreaterThanOrEqual(900);
  });
});
