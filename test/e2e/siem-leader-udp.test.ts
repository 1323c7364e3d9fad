/**
 * Regression: with several gateways on one PostgreSQL store, a syslog/UDP outbox leader hands up to 8 batches to its
 * sink before the first is confirmed. When its lock session ended while some of them were still waiting to be written
 * (the collector's host name slow to resolve, say), they were written anyway, after the gateway knew it no longer led:
 * the new leader sent the same events again from the cursor, and the collector got them twice. Now the store tells the
 * outbox at once, and what is not yet written is dropped.
 *
 * Two outboxes on two stores of one real PostgreSQL schema deliver to one real UDP collector; the leader's lock
 * backend is terminated with pg_terminate_backend while its batches wait for the collector's address, which waits as
 * behind a slow DNS server because every libuv threadpool thread (where getaddrinfo runs) is held by a FIFO open.
 */
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { closeSync, constants, mkdtempSync, openSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/export/audit-event.js';
import { Outbox } from '../../src/export/outbox.js';
import { createSink } from '../../src/export/sink.js';
import { sinkConfigSchema } from '../../src/export/sinks-config.js';
import type { AuditStore } from '../../src/store/audit-store.js';
import { createStoreFixture, POSTGRES_TEST_URL, storeKinds, type StoreFixture } from '../support/stores.js';
import { until } from '../support/until.js';

/** The advisory lock class of leaderships (postgres-audit-store.ts, LEADER_LOCK_CLASS: 'VGL2'). */
const LEADER_LOCK_CLASS = 0x56474c32;
const LEADERSHIP = 'outbox:udp';

/**
 * Holds every libuv threadpool thread in an open() of a FIFO, which blocks until a writer opens it; returns the
 * release. Host name lookups (getaddrinfo) run on that pool, so they wait meanwhile.
 */
function holdThreadpool(dir: string): () => Promise<void> {
  const fifos = Array.from({ length: Number(process.env.UV_THREADPOOL_SIZE ?? 4) }, (_, i) =>
    path.join(dir, `fifo-${i}`),
  );
  for (const f of fifos) execFileSync('mkfifo', [f]);
  const readers = fifos.map((f) => open(f, 'r'));
  return async () => {
    // A reader blocked in open() counts as one, so a non-blocking open for writing succeeds and lets it through (ENXIO:
    // that reader's open has not started yet, its thread busy with something else for a moment).
    for (const f of fifos) {
      for (let tries = 0; ; tries++) {
        try {
          closeSync(openSync(f, constants.O_WRONLY | constants.O_NONBLOCK));
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENXIO' || tries > 500) throw err;
          await sleep(10);
        }
      }
    }
    for (const r of readers) await (await r).close();
  };
}

describe.runIf(storeKinds().includes('postgres'))('SIEM outbox leadership over syslog/UDP on PostgreSQL', () => {
  let fixture: StoreFixture;
  let admin: pg.Client;
  let collector: dgram.Socket;
  const dir = mkdtempSync(path.join(tmpdir(), 'vigil-leader-udp-'));
  const stores: Record<'a' | 'b', AuditStore> = {} as Record<'a' | 'b', AuditStore>;
  const outboxes: Record<'a' | 'b', Outbox> = {} as Record<'a' | 'b', Outbox>;
  const logs: Record<'a' | 'b', string[]> = { a: [], b: [] };
  /** Each event the collector got, with the sending socket's port. */
  const received: Array<{ id: string; from: number }> = [];

  beforeAll(async () => {
    fixture = await createStoreFixture('postgres');
    admin = new pg.Client({ connectionString: POSTGRES_TEST_URL });
    await admin.connect();
    // The sinks name the collector's host, so each new socket looks its address up.
    const { address, family } = await lookup('localhost');
    collector = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', recvBufferSize: 4 * 1024 * 1024 });
    collector.on('message', (m, rinfo) => {
      const text = m.toString('utf8');
      received.push({ id: (JSON.parse(text.slice(text.indexOf('] {') + 2)) as AuditEvent).id, from: rinfo.port });
    });
    await new Promise<void>((resolve) => collector.bind(0, address, resolve));
    for (const name of ['a', 'b'] as const) {
      stores[name] = await fixture.open();
      const sink = createSink(
        sinkConfigSchema.parse({
          type: 'syslog',
          name: 'udp',
          transport: 'udp',
          host: 'localhost',
          port: collector.address().port,
        }),
      );
      const log = pino({ level: 'info' }, { write: (line: string) => void logs[name].push(line) });
      outboxes[name] = new Outbox(stores[name], [sink], { gateway: name, log, batchSize: 50 });
    }
  });

  afterAll(async () => {
    for (const o of Object.values(outboxes)) await o.close(0);
    await fixture?.dispose();
    await admin?.end();
    collector?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a leader whose lock session ends drops the batches it has not yet written; none arrives twice', async () => {
    // a leads, with nothing to deliver yet; b does not.
    await outboxes.a.runOnce();
    await outboxes.b.runOnce();
    expect(await stores.a.holdsLeadership(LEADERSHIP)).toBe(true);
    await stores.a.append({
      records: Array.from({ length: 400 }, (_, i) => ({
        kind: 'access.denied',
        at: Date.now(),
        data: { connection: 'anthropic', status: 403, reason: `denial ${i}`, path: '/v1/messages' },
      })),
    });

    const release = holdThreadpool(dir);
    let passOfA: Promise<void>;
    try {
      // a reads its batches and hands them to the sink, whose socket waits for the collector's address.
      passOfA = outboxes.a.runOnce();
      await sleep(300);
      const { rows } = await admin.query<{ pid: number }>(
        `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND classid = $1::int4::oid AND objid = hashtext($2)::oid AND objsubid = 2`,
        [LEADER_LOCK_CLASS, LEADERSHIP],
      );
      expect(rows).toHaveLength(1);
      await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
      await until('a to know it lost the lock', async () =>
        (await stores.a.holdsLeadership(LEADERSHIP)) ? undefined : true,
      );
    } finally {
      await release();
    }
    await passOfA;
    expect(logs.a.join('')).toContain('no longer the SIEM outbox leader for this sink');
    expect(outboxes.a.statuses()[0]).toMatchObject({ failures: 0, lastError: null });

    // b takes over from the cursor a left, and sends everything, once.
    await until('b to take over', async () => {
      await outboxes.b.runOnce();
      return outboxes.b.statuses()[0]!.lag === 0 ? true : undefined;
    });
    await until('every event at the collector', () =>
      new Set(received.map((r) => r.id)).size === 400 ? true : undefined,
    );
    await sleep(100);
    const ids = received.map((r) => r.id);
    expect(ids.length - new Set(ids).size, 'events delivered twice').toBe(0);
    expect(new Set(received.map((r) => r.from)).size, 'senders').toBe(1);
  });
});
