/**
 * How a held call ends when something else happens while the gateway is still recording its hold: the gateway shuts
 * down, or the client hangs up. What the client received and what the store keeps must agree. On PostgreSQL, where a
 * test can make one kind of record wait (a trigger that takes an advisory lock the test holds): a slow store, made
 * deterministic.
 */
import pg from 'pg';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load-config.js';
import type { VigilConfigInput } from '../../src/config/config-schema.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import { readSession, type ExchangeView } from '../../src/recorder/exchange-reader.js';
import { startFakeAnthropic, type FakeAnthropic } from '../../src/sandbox/fake-anthropic.js';
import { CLIENT_KEY, GATEWAY_KEY } from '../support/gateway-harness.js';
import { POSTGRES_TEST_URL, storeKinds } from '../support/stores.js';
import { until } from '../support/until.js';

const STALL_LOCK = 7_310_001;

describe.runIf(storeKinds().includes('postgres'))('a held call on PostgreSQL', () => {
  const schema = `vigil_held_${process.pid}_${Date.now().toString(36)}`;
  let fake: FakeAnthropic;
  let sql: pg.Client;
  let gateway: Gateway | undefined;

  const config = (extra: Record<string, unknown> = {}): ReturnType<typeof validateConfig> =>
    validateConfig({
      listen: '127.0.0.1:0',
      store: { postgres: { url: POSTGRES_TEST_URL, schema } },
      connections: [
        {
          name: 'anthropic',
          upstream: fake.url,
          credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
          approvals: [
            { name: 'deploys', action: 'hold', when: { prompt_matches: ['/deploy/'] }, timeout: '1500ms', grant: '1h' },
          ],
        },
      ],
      ...extra,
    } as VigilConfigInput);
  const start = (): Promise<Gateway> => startGateway(config(), { log: pino({ level: 'silent' }) });

  beforeEach(async () => {
    process.env.VIGIL_TEST_UPSTREAM_KEY = GATEWAY_KEY;
    fake = await startFakeAnthropic({ apiKey: GATEWAY_KEY });
    gateway = await start();
    sql = new pg.Client({ connectionString: POSTGRES_TEST_URL });
    await sql.connect();
    await sql.query(`SET search_path = "${schema}"`);
    // Inserts of the kind named in vigil_test_stall wait while this session holds the advisory lock.
    await sql.query(`CREATE TABLE vigil_test_stall (kind text)`);
    await sql.query(`CREATE FUNCTION vigil_test_stall() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF EXISTS (SELECT 1 FROM vigil_test_stall s WHERE s.kind = NEW.kind) THEN
          PERFORM pg_advisory_xact_lock_shared(${STALL_LOCK});
        END IF;
        RETURN NEW;
      END $$`);
    await sql.query(
      `CREATE TRIGGER vigil_test_stall BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION vigil_test_stall()`,
    );
  });
  afterEach(async () => {
    await sql.query(`SELECT pg_advisory_unlock_all()`);
    await gateway?.close(0);
    gateway = undefined;
    await sql.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await sql.end();
    await fake.close();
  });

  /** Inserts of `kind` wait from now until {@link release}. */
  async function stall(kind: string): Promise<void> {
    await sql.query(`SELECT pg_advisory_lock(${STALL_LOCK})`);
    await sql.query(`INSERT INTO vigil_test_stall VALUES ($1)`, [kind]);
  }
  async function release(): Promise<void> {
    await sql.query(`DELETE FROM vigil_test_stall`);
    await sql.query(`SELECT pg_advisory_unlock(${STALL_LOCK})`);
  }
  /** Resolves once an insert is waiting on the stall. */
  function stalled(): Promise<unknown> {
    return until('an insert to wait on the stall', async () => {
      const r = await sql.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`);
      return r.rowCount ? true : undefined;
    });
  }

  function send(session: string, signal?: AbortSignal): Promise<{ status: number; body: unknown } | 'aborted'> {
    return fetch(`${gateway!.url}/v1/messages`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'anthropic-version': '2023-06-01',
        'x-api-key': CLIENT_KEY,
        'x-vigil-session': session,
      },
      body: JSON.stringify({
        model: 'claude-haiku-4-5',
        max_tokens: 20,
        messages: [{ role: 'user', content: 'deploy' }],
      }),
      ...(signal ? { signal } : {}),
    }).then(
      async (r) => ({ status: r.status, body: (await r.json()) as unknown }),
      () => 'aborted' as const,
    );
  }

  /** The `n`th exchange of `session` (from 0), once it has ended. */
  async function exchangeOf(g: Gateway, session: string, n = 0): Promise<ExchangeView> {
    return until(`exchange ${n} of ${session}`, async () => {
      const x = (await readSession(g.store, session))[n];
      return x && x.outcome !== 'in_progress' ? x : undefined;
    });
  }

  it('shutting down while the hold is being recorded: the 503 and the cancellation are stored before close() returns', async () => {
    // Went wrong: close() ended only the calls already waiting. A call whose `approval.held` record was still being
    // written was ended after close() had returned: its client was cut without the 503, its exchange recorded as
    // `interrupted` with no status, and its `approval.cancelled` record written while the store was closing (or lost).
    await stall('approval.held');
    const answer = send('shutdown-while-holding');
    await stalled();
    const closed = gateway!.close(0);
    await new Promise((r) => setTimeout(r, 300));
    await release();
    await closed;
    gateway = await start();
    const x = await exchangeOf(gateway, 'shutdown-while-holding');
    const received = await answer;
    expect(received).toMatchObject({ status: 503, body: { error: { type: 'overloaded_error' } } });
    expect(x.response).toMatchObject({ status: 503, error: { type: 'overloaded_error' } });
    const [approval] = await gateway.approvals.list();
    expect(approval).toMatchObject({
      exchangeId: x.id,
      status: 'cancelled',
      endReason: 'the gateway is shutting down',
    });
  });

  it('a client that leaves while its grant is being used is not forwarded, and is recorded as having left', async () => {
    // Went wrong: the grant let the call through after its client had gone; forward() waited for a `close` that had
    // already happened, sent the request to Claude for nobody, and recorded upstream's 200 as if the client had it.
    // An anonymous caller's grant covers the session it was given in.
    const first = send('grant');
    const [held] = await until('the first call to be held', async () => {
      const l = await gateway!.approvals.list({ pending: true });
      return l.length ? l : undefined;
    });
    await gateway!.approvals.approve(held!.id, { method: 'local_user', subject: 'cli:ops' }, { grantMinutes: 30 });
    expect(await first).toMatchObject({ status: 200 });
    const forwarded = fake.requests.length;

    await stall('approval.grant_used');
    const client = new AbortController();
    const answer = send('grant', client.signal);
    await stalled();
    client.abort();
    await new Promise((r) => setTimeout(r, 200));
    await release();
    expect(await answer).toBe('aborted');
    const x = await exchangeOf(gateway!, 'grant', 1);
    expect(x.outcome).toBe('client_aborted');
    expect(x.response.status).toBeNull();
    expect(x.response.error?.message).toMatch(/not forwarded/);
    expect(fake.requests.length).toBe(forwarded);
  });

  it('a client that leaves while its timeout is being recorded is recorded as having left, not as refused', async () => {
    // Went wrong: recorded as `gateway_error` with the 403 the client never received (it had gone).
    await stall('approval.timed_out');
    const client = new AbortController();
    const answer = send('timeout-gone', client.signal);
    await stalled();
    client.abort();
    await new Promise((r) => setTimeout(r, 200));
    await release();
    expect(await answer).toBe('aborted');
    const x = await exchangeOf(gateway!, 'timeout-gone');
    expect(x.outcome).toBe('client_aborted');
    expect(x.response.status).toBeNull();
    expect(x.response.error?.message).toMatch(/timed out.*not forwarded|not forwarded.*timed out/);
    const [approval] = await gateway!.approvals.list();
    expect(approval).toMatchObject({ status: 'timed_out' });
  });
});
