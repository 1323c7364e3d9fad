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
