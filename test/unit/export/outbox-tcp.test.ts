/**
 * The outbox and a syslog/TCP collector that restarts: a refused connect (nothing listens on the port) is most often
 * the collector coming back within milliseconds, as for UDP (outbox-udp.test.ts): one prompt retry, then the back-off.
 */
import net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/export/audit-event.js';
import { streamingOutbox } from '../../support/streaming-outbox.js';
import { useTempDir } from '../../support/temp-dir.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
const tempDir = useTempDir('vigil-outbox-tcp-restart');

const denied = (reason: string) => ({
  kind: 'access.denied',
  at: Date.now(),
  data: { connection: 'anthropic', status: 403, reason, path: '/v1/messages', clientAddress: '127.0.0.1' },
});

/** A collector on 127.0.0.1:`port` that notes the reason of each event in the octet-counted frames it reads. */
async function collector(port: number, seen: Set<unknown>): Promise<net.Server> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        const sp = buffered.indexOf(0x20);
        const length = sp < 0 ? NaN : Number(buffered.subarray(0, sp).toString('ascii'));
        if (!(length > 0) || buffered.length < sp + 1 + length) break;
        const text = buffered.subarray(sp + 1, sp + 1 + length).toString('utf8');
        seen.add((JSON.parse(text.slice(text.indexOf('] {') + 2)) as AuditEvent).attributes.reason);
        buffered = buffered.subarray(sp + 1 + length);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return server;
}

it('delivers promptly to a TCP collector that refused a connect and is back, not after a back-off', async () => {
  // Went wrong: a refused connect (the collector restarting) cost the 1 s back-off, though it listened again within
  // milliseconds; the prompt retry was for UDP's port unreachable only.
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));

  const seen = new Set<unknown>();
  let refusedAt = 0;
  let restarted: Promise<net.Server> | undefined;
  const { store, outbox } = streamingOutbox({
    dir: tempDir(),
    transport: 'tcp',
    port,
    onFailure: ({ at }) => {
      // The collector is back as soon as the refusal is known: what is measured is what the outbox does then.
      refusedAt ||= at;
      restarted ??= collector(port, seen);
    },
    cleanups,
  });
  const reasons = Array.from({ length: 20 }, (_, i) => `r${i}`);
  await store.append({ records: reasons.map(denied) });

  await expect.poll(() => seen.size, { timeout: 10_000, interval: 5 }).toBe(reasons.length);
  const deliveredIn = Date.now() - refusedAt;
  await restarted;
  expect([...seen].sort()).toEqual([...reasons].sort());
  expect(outbox.statuses()[0]).toMatchObject({ failures: 1 });
  // One retry 100 ms after the refusal: well under the 1 s back-off.
  expect(deliveredIn).toBeLessThan(800);
});
