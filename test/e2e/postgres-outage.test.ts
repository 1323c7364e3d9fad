/**
 * PostgreSQL out of reach for a while, for real: the gateway reaches the database through a TCP relay that this test
 * cuts (every connection dropped, new ones refused) and then restores. Calls that must be recorded are refused while
 * it is cut; the records of a stream already forwarded are held and written once the database is back; the chain
 * verifies.
 */
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postMessages, postSlowStream, startHarness, type Harness } from '../support/gateway-harness.js';
import { installStall } from '../support/postgres-stall.js';
import { POSTGRES_TEST_URL, storeKinds } from '../support/stores.js';
import { TcpRelay } from '../support/tcp-relay.js';
import { until } from '../support/until.js';

interface LogLine {
  msg: string;
  outageMs?: number;
}

describe.runIf(storeKinds().includes('postgres'))('PostgreSQL out of reach for a while', () => {
  const schema = `vigil_outage_${process.pid}_${Date.now().toString(36)}`;
  const target = new URL(POSTGRES_TEST_URL);
  const relay = new TcpRelay({ host: target.hostname, port: Number(target.port || 5432) });
  const logs: LogLine[] = [];
  let h: Harness;

  beforeAll(async () => {
    const port = await relay.listen();
    const url = new URL(POSTGRES_TEST_URL);
    url.hostname = '127.0.0.1';
    url.port = String(port);
    const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
    h = await startHarness(() => ({ store: { postgres: { url: url.toString(), schema } } }), {}, { log });
  });
  afterAll(async () => {
    try {
      await h?.close();
    } finally {
      await relay.close();
      const admin = new pg.Client({ connectionString: POSTGRES_TEST_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    }
  });

  it('refuses calls while cut off, keeps the records of a stream in flight, and writes them once it is back', async () => {
    const res = await postSlowStream(h.url, 'pg-outage');
    expect(res.status).toBe(200);
    const streamId = res.headers.get('x-vigil-exchange-id')!;
    const text = res.text();

    relay.cut();
    const refused = await postMessages(h.url, 'pg-outage-others', { messages: [{ role: 'user', content: 'now?' }] });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    await refused.arrayBuffer();
    const health = async () => ((await (await fetch(`${h.url}/healthz`)).json()) as { store: string }).store;
    await until('the store to refuse writes', async () => ((await health()) === 'refusing_writes' ? true : undefined));
    await new Promise((r) => setTimeout(r, 300)); // the stream goes on meanwhile

    relay.restore();
    const sent = (await text).match(/^event: /gm)!.length;
    const stream = await h.exchange(streamId);
    expect(stream.outcome).toBe('ok');
    expect(stream.response.events).toHaveLength(sent);
    expect(stream.response.events.at(-1)?.type).toBe('message_stop');
    await until('the store to take writes again', async () => ((await health()) === 'ok' ? true : undefined), 5_000);

    const after = await postMessages(h.url, 'pg-outage-others', { messages: [{ role: 'user', content: 'and now?' }] });
    expect(after.status).toBe(200);
    expect((await h.exchange(after.headers.get('x-vigil-exchange-id')!)).outcome).toBe('ok');
    expect((await h.gateway.store.verify()).ok).toBe(true);
    expect(logs.filter((l) => l.msg.startsWith('the store refuses writes'))).toHaveLength(1);
    expect(logs.filter((l) => l.msg.startsWith('the store accepts writes again'))).toHaveLength(1);
  });

  it('goes on when the connection of an append in progress drops', async () => {
    // Went wrong: a connection lost while checked out of the pool emitted 'error' with nobody listening, and that
    // stopped the process (here an uncaught exception, which vitest reports as an error of this file). The append's
    // insert is held on a lock, the relay cut under it, and its backend ended on the server before the lock is let go,
    // so that nothing of it commits.
    const stall = await installStall(schema);
    const admin = new pg.Client({ connectionString: POSTGRES_TEST_URL });
    await admin.connect();
    try {
      await stall.stall('exchange.request');
      const pending = postMessages(h.url, 'pg-lost', { messages: [{ role: 'user', content: 'stalled' }] });
      await stall.stalled();
      relay.cut();
      const ended = await admin.query<{ ok: boolean }>(
        `SELECT pg_terminate_backend(l.pid) AS ok FROM pg_locks l
         WHERE l.locktype = 'advisory' AND NOT l.granted AND l.classid = 7310 AND l.objid = $1`,
        [process.pid],
      );
      expect(ended.rows).toEqual([{ ok: true }]);
      const refused = await pending;
      expect(refused.status).toBe(503);
      await refused.arrayBuffer();
    } finally {
      await stall.release();
      await admin.end();
      relay.restore();
    }
    const after = await postMessages(h.url, 'pg-lost', { messages: [{ role: 'user', content: 'and after?' }] });
    expect(after.status).toBe(200);
    expect((await h.exchange(after.headers.get('x-vigil-exchange-id')!)).outcome).toBe('ok');
    expect((await h.gateway.store.verify()).ok).toBe(true);
  });
});
