/**
 * PostgreSQL out of reach for a while, for real: the gateway reaches the database through a TCP relay that this test
 * cuts (every connection dropped, new ones refused) and then restores. Calls that must be recorded are refused while
 * it is cut; the records of a stream already forwarded are held and written once the database is back; the chain
 * verifies.
 */
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGatewayKey, revokeGatewayKey } from '../../src/identity/key-admin.js';
import { clientHeaders, postMessages, postSlowStream, startHarness, type Harness } from '../support/gateway-harness.js';
import { installStall, type Stall } from '../support/postgres-stall.js';
import { POSTGRES_TEST_URL, storeKinds } from '../support/stores.js';
import { TcpRelay } from '../support/tcp-relay.js';
import type { VigilConfigInput } from '../../src/config/config-schema.js';
import { validateConfig } from '../../src/config/load-config.js';
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
  /** The config the gateway runs, but for its connections. */
  let storeConfig: VigilConfigInput['store'];

  beforeAll(async () => {
    const port = await relay.listen();
    const url = new URL(POSTGRES_TEST_URL);
    url.hostname = '127.0.0.1';
    url.port = String(port);
    const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
    storeConfig = { postgres: { url: url.toString(), schema } };
    h = await startHarness(() => ({ store: storeConfig }), {}, { log });
  });
  /** The stall, installed once (its table and trigger are the schema's). */
  let installed: Stall | undefined;
  const stallInstalled = async (): Promise<Stall> => (installed ??= await installStall(schema));
  afterAll(async () => {
    try {
      await (installed ? installed.dispose(async () => h?.close()) : h?.close());
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

  it('goes on when the connection of an append in progress drops, and ends its server process before appending again', async () => {
    // Went wrong: a connection lost while checked out of the pool emitted 'error' with nobody listening, and that
    // stopped the process (here an uncaught exception, which vitest reports as an error of this file). The append's
    // insert is held on a lock and the relay cut under it: the server process still runs it, and would commit it once
    // the lock is let go. Before its next append the gateway ends that process, so nothing of it commits.
    const stall = await stallInstalled();
    const admin = new pg.Client({ connectionString: POSTGRES_TEST_URL });
    await admin.connect();
    let refusedId = '';
    const stalledBackends = async (): Promise<number> =>
      (
        await admin.query(
          `SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND NOT l.granted AND l.classid = 7310 AND l.objid = $1`,
          [process.pid],
        )
      ).rowCount ?? 0;
    try {
      await stall.stall('exchange.request');
      const pending = postMessages(h.url, 'pg-lost', { messages: [{ role: 'user', content: 'stalled' }] });
      await stall.stalled();
      relay.cut();
      const refused = await pending;
      expect(refused.status).toBe(503);
      await refused.arrayBuffer();
      refusedId = refused.headers.get('x-vigil-exchange-id')!;
      await stall.stopStalling();
      relay.restore();
      const after = await postMessages(h.url, 'pg-lost', { messages: [{ role: 'user', content: 'and after?' }] });
      expect(after.status).toBe(200);
      expect((await h.exchange(after.headers.get('x-vigil-exchange-id')!)).outcome).toBe('ok');
      expect(await stalledBackends()).toBe(0);
    } finally {
      await stall.release();
      await admin.end();
      relay.restore();
    }
    expect((await h.gateway.store.verify()).ok).toBe(true);
    // Its server process ended before it could commit: nothing of the refused call is in the store.
    expect(await h.gateway.store.exchangeRecords(refusedId)).toEqual([]);
  });

  /**
   * The answer lost, not the write: an insert held on the stall while the relay is cut, then let go, commits with
   * nobody to tell. Before the gateway appends again it ends any such server process still running and reads its
   * chain back; what it finds written is not written again.
   */
  const lostAnswer = async (kind: string, during: () => Promise<void>): Promise<void> => {
    const stall = await stallInstalled();
    const admin = new pg.Client({ connectionString: POSTGRES_TEST_URL });
    await admin.connect();
    try {
      await admin.query(`SET search_path = "${schema}"`);
      const before = Number((await admin.query(`SELECT count(*) AS n FROM records WHERE kind = $1`, [kind])).rows[0].n);
      await stall.stall(kind);
      await during();
      await stall.stalled();
      relay.cut();
      await stall.release();
      await until('the stalled insert to commit', async () => {
        const n = Number((await admin.query(`SELECT count(*) AS n FROM records WHERE kind = $1`, [kind])).rows[0].n);
        return n > before ? true : undefined;
      });
    } finally {
      await stall.release();
      await admin.end();
      relay.restore();
    }
  };

  it('a request written though its answer was lost is ended as refused, as its client was told', async () => {
    let pending!: Promise<Response>;
    await lostAnswer('exchange.request', async () => {
      pending = postMessages(h.url, 'pg-lost-answer', { messages: [{ role: 'user', content: 'written?' }] });
    });
    const refused = await pending;
    expect(refused.status).toBe(503);
    await refused.arrayBuffer();
    const x = await h.exchange(refused.headers.get('x-vigil-exchange-id')!);
    expect(x).toMatchObject({ outcome: 'gateway_error', response: { status: 503 } });
    expect((await h.gateway.store.verify()).ok).toBe(true);
  });

  it('a gateway key written though its answer was lost is given to whoever created it', async () => {
    // Went wrong: creating a key failed when PostgreSQL's answer to the commit was lost with the connection, while
    // the key had been written: its name taken, and the key, shown only once, never shown.
    let pending!: ReturnType<typeof createGatewayKey>;
    await lostAnswer('key.created', async () => {
      pending = createGatewayKey(
        h.gateway.store,
        { name: 'lost-answer', owner: 'platform-team', connections: [], createdBy: 'test' },
        ['anthropic'],
      );
    });
    const { key } = await pending;
    const res = await fetch(`${h.url}/v1/messages`, {
      method: 'POST',
      headers: { ...clientHeaders('pg-lost-key'), 'x-api-key': key },
      body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(200);
    const x = await h.exchange(res.headers.get('x-vigil-exchange-id')!);
    expect(x.caller).toMatchObject({ method: 'gateway_key', keyName: 'lost-answer' });
    // Written once.
    const created = await h.gateway.store.recordsOfKinds(['key.created'], 0, 100);
    expect(created.filter((r) => (JSON.parse(r.data) as { name: string }).name === 'lost-answer')).toHaveLength(1);
  });

  it('a gateway key revoked though the answer was lost is reported revoked, and refused', async () => {
    const { key } = await createGatewayKey(
      h.gateway.store,
      { name: 'revoked-unanswered', owner: 'platform-team', connections: [], createdBy: 'test' },
      ['anthropic'],
    );
    let pending!: ReturnType<typeof revokeGatewayKey>;
    await lostAnswer('key.revoked', async () => {
      pending = revokeGatewayKey(h.gateway.store, 'revoked-unanswered', 'test');
    });
    expect((await pending).revokedAt).not.toBeNull();
    const res = await fetch(`${h.url}/v1/models`, { headers: { ...clientHeaders('pg-revoked'), 'x-api-key': key } });
    expect(res.status).toBe(401);
  });

  it('a gateway key whose answer was lost, the store not answering since, is reported as unknown, saying what to do', async () => {
    const stall = await stallInstalled();
    try {
      await stall.stall('key.created');
      const pending = createGatewayKey(
        h.gateway.store,
        { name: 'never-told', owner: 'platform-team', connections: [], createdBy: 'test', lostAnswerWaitMs: 1_000 },
        ['anthropic'],
      ).catch((e: unknown) => e as Error);
      await stall.stalled();
      relay.cut(); // and not restored while the key's creation waits for an answer
      const err = (await pending) as Error;
      expect(err).toBeInstanceOf(Error);
      expect(err.message).toBe(
        'the store stopped answering while key "never-told" was being created, and cannot say whether it was: if ' +
          'vigil keys list shows it, revoke it (its key was never shown) and create another',
      );
    } finally {
      await stall.release();
      relay.restore();
    }
  });

  it('refuses a config reload the ledger cannot record, and applies nothing of it', async () => {
    const next = validateConfig({
      listen: '127.0.0.1:0',
      data_dir: h.dataDir,
      store: storeConfig,
      connections: [
        {
          name: 'anthropic',
          upstream: h.fake.url,
          credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
          upstream_timeout: '5s',
        },
        { name: 'team', upstream: h.fake.url, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
      ],
    });
    const team = () =>
      postMessages(`${h.url}/c/team`, 'reload-outage', { messages: [{ role: 'user', content: 'hi' }] });
    relay.cut();
    try {
      const err = (await h.gateway.reload(next).catch((e: unknown) => e)) as Error;
      expect(err.message).toMatch(
        /^config not reloaded: the ledger could not record the change \(.+\); nothing was applied, send SIGHUP again once the store takes writes$/,
      );
      const refused = await team();
      expect(refused.status).toBe(404);
      await refused.arrayBuffer();
    } finally {
      relay.restore();
    }
    // Once the store takes writes, the same reload goes through.
    await until(
      'the reload to be applied',
      () =>
        h.gateway.reload(next).then(
          () => true,
          () => undefined,
        ),
      10_000,
    );
    const served = await team();
    expect(served.status).toBe(200);
    await served.arrayBuffer();
    expect(await h.gateway.store.recordsOfKinds(['config.reloaded'], 0, 10)).toHaveLength(1);
  });

  it('records of a stream written though their answer was lost are not written again', async () => {
    let text!: Promise<string>;
    let id!: string;
    await lostAnswer('exchange.events', async () => {
      const res = await postSlowStream(h.url, 'pg-lost-events');
      expect(res.status).toBe(200);
      id = res.headers.get('x-vigil-exchange-id')!;
      text = res.text();
    });
    const sent = (await text).match(/^event: /gm)!.length;
    const stream = await h.exchange(id);
    expect(stream.outcome).toBe('ok');
    // Each event once, in order: the batch that committed unanswered was not appended a second time.
    expect(stream.response.events).toHaveLength(sent);
    expect(stream.response.events.at(-1)?.type).toBe('message_stop');
    const responses = (await h.gateway.store.exchangeRecords(id)).filter((r) => r.kind === 'exchange.response');
    expect(responses).toHaveLength(1);
    expect((await h.gateway.store.verify()).ok).toBe(true);
  });
});
