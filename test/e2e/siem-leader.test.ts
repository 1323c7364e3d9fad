/**
 * Regression: with several gateways on one PostgreSQL store, the SIEM outbox leader took its advisory lock once and
 * never checked it again. When its lock session was lost (backend terminated, connection dropped) it went on
 * delivering while another gateway took the lock and delivered too: the receiver got the same events from both (and
 * the lost connection's unhandled 'error' could crash the gateway). Here two outboxes on two stores of one real
 * PostgreSQL schema deliver to one real HTTP receiver, each through its own path, and the leader's lock backend is
 * terminated with pg_terminate_backend: between passes, and in the middle of one.
 */
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/export/audit-event.js';
import { Outbox } from '../../src/export/outbox.js';
import { createSink } from '../../src/export/sink.js';
import { sinkConfigSchema } from '../../src/export/sinks-config.js';
import type { AuditStore } from '../../src/store/audit-store.js';
import { startRecordingHttpServer, type RecordingHttpServer } from '../support/recording-http-server.js';
import { createStoreFixture, POSTGRES_TEST_URL, type StoreFixture } from '../support/stores.js';
import { until } from '../support/until.js';

/** The advisory lock class of leaderships (postgres-audit-store.ts, LEADER_LOCK_CLASS: 'VGL2'). */
const LEADER_LOCK_CLASS = 0x56474c32;
const LEADERSHIP = 'outbox:webhook';

let fixture: StoreFixture;
let receiver: RecordingHttpServer;
let admin: pg.Client;
const stores: Record<'a' | 'b', AuditStore> = {} as Record<'a' | 'b', AuditStore>;
const outboxes: Record<'a' | 'b', Outbox> = {} as Record<'a' | 'b', Outbox>;

beforeAll(async () => {
  fixture = await createStoreFixture('postgres');
  receiver = await startRecordingHttpServer();
  admin = new pg.Client({ connectionString: POSTGRES_TEST_URL });
  await admin.connect();
  for (const name of ['a', 'b'] as const) {
    stores[name] = await fixture.open();
    // One sink, `webhook`, on both gateways (so one leadership and one set of cursors), each posting to a path of
    // its own so the receiver can tell who sent what.
    const sink = createSink(
      sinkConfigSchema.parse({ type: 'http', name: 'webhook', url: `${receiver.url}/${name}`, timeout: '2s' }),
    );
    outboxes[name] = new Outbox(stores[name], [sink], {
      gateway: name,
      log: pino({ level: 'silent' }),
      batchSize: 5,
    });
  }
});

afterAll(async () => {
  for (const o of Object.values(outboxes)) await o.close(0);
  await fixture?.dispose();
  await admin?.end();
  await receiver?.close();
});

let n = 0;
/** Appends `count` audit-worthy records (access denials), each one event, on `store`'s chain. */
async function record(store: AuditStore, count: number): Promise<void> {
  const records = Array.from({ length: count }, () => ({
    kind: 'access.denied',
    at: Date.now(),
    data: { connection: 'anthropic', status: 403, reason: `denial ${++n}`, path: '/v1/messages' },
  }));
  await store.append({ records });
}

/** Every event the receiver got, with who sent it, in arrival order. */
function received(): Array<{ from: string; id: string }> {
  return receiver.requests.flatMap((r) =>
    (JSON.parse(r.body) as { events: AuditEvent[] }).events.map((e) => ({ from: r.url.slice(1), id: e.id })),
  );
}

/** Which of the two leads now, asked of each store. */
async function leader(): Promise<'a' | 'b' | undefined> {
  const [a, b] = [await stores.a.holdsLeadership(LEADERSHIP), await stores.b.holdsLeadership(LEADERSHIP)];
  expect(a && b, 'both gateways think they lead').toBe(false);
  return a ? 'a' : b ? 'b' : undefined;
}

/** Ends the database session that holds the leadership lock, as an administrator or a network failure would. */
async function terminateLeaderLockSession(): Promise<void> {
  const { rows } = await admin.query<{ pid: number }>(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
       AND classid = $1::int4::oid AND objid = hashtext($2)::oid AND objsubid = 2`,
    [LEADER_LOCK_CLASS, LEADERSHIP],
  );
  expect(rows).toHaveLength(1);
  const pid = rows[0]!.pid;
  await admin.query('SELECT pg_terminate_backend($1)', [pid]);
  await until('the lock session to end', async () => {
    const left = await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
    return left.rowCount === 0 ? true : undefined;
  });
}

const expectEachOnce = (events: Array<{ id: string }>, total: number): void => {
  const ids = events.map((e) => e.id);
  expect(ids.length - new Set(ids).size, 'events delivered twice').toBe(0);
  expect(new Set(ids).size).toBe(total);
};

describe('SIEM outbox leadership on PostgreSQL', () => {
  it('a leader whose lock session ends stops delivering; one gateway takes over; no event arrives twice', async () => {
    await record(stores.a, 6);
    await record(stores.b, 4);
    await outboxes.a.runOnce();
    await outboxes.b.runOnce();
    expect(await leader()).toBe('a');
    expect(received().map((e) => e.from)).toEqual(Array(10).fill('a'));

    await terminateLeaderLockSession();
    // Both gateways poll at once, with new events to deliver: one of them leads, the other sends nothing.
    for (let round = 0; round < 3; round++) {
      await record(stores.a, 3);
      await record(stores.b, 3);
      await Promise.all([outboxes.a.runOnce(), outboxes.b.runOnce()]);
    }
    expectEachOnce(received(), 28);
    expect(await leader()).toBeDefined();
  });

  it('a leader whose lock session ends in the middle of a pass stops at once: the new leader sends the batch it cut', async () => {
    const from = await leader();
    expect(from).toBeDefined();
    const other = from === 'a' ? 'b' : 'a';
    const before = received().length;
    await record(stores[from!], 23); // five batches of five
    // The leader's first batch is not answered: its lock session ends meanwhile, and the leader gives the batch up at
    // once, not at the sink's 2 s timeout.
    let termination: Promise<void> | undefined;
    receiver.reply = async () => {
      if (termination) return { status: 200 };
      termination = terminateLeaderLockSession();
      await termination;
      return { status: 200, hang: true };
    };
    const started = Date.now();
    await outboxes[from!].runOnce();
    expect(Date.now() - started).toBeLessThan(1500);
    // The leader may give up before the administrator's poll sees the lock session gone: wait for that poll, so it
    // does not outlive the test (and its client).
    expect(termination, 'the receiver never got the first batch').toBeDefined();
    await termination;
    receiver.reply = () => ({ status: 200 });
    const pass = received().slice(before);
    // The receiver had the batch (its request was cut, unanswered); nothing after it was sent.
    expect(pass.map((e) => e.from)).toEqual(Array(5).fill(from));

    // The other gateway takes over from the cursors the old leader left: the cut batch was not counted as delivered,
    // so it is sent again (the one batch that may arrive twice, README "No loss"), then the rest.
    await until('the other gateway to take over', async () => {
      await outboxes[other].runOnce();
      return received().length - before >= 5 + 23 ? true : undefined;
    });
    expect(await leader()).toBe(other);
    const takenOver = received().slice(before + 5);
    expect(takenOver.every((e) => e.from === other)).toBe(true);
    expect(takenOver.slice(0, 5).map((e) => e.id)).toEqual(pass.map((e) => e.id));
    expectEachOnce(takenOver, 23);
    expectEachOnce(received().slice(0, before + 5), before + 5);
  });
});
