/**
 * How a held call ends when something else happens while the gateway is still recording its hold: the gateway shuts
 * down, or the client hangs up. What the client received and what the store keeps must agree. On PostgreSQL, where a
 * test can make one kind of record wait (a trigger that takes an advisory lock the test holds): a slow store, made
 * deterministic.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { Socket } from 'node:net';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load-config.js';
import type { VigilConfigInput } from '../../src/config/config-schema.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import { readSession, type ExchangeView } from '../../src/recorder/exchange-reader.js';
import { startFakeAnthropic, type FakeAnthropic } from '../../src/sandbox/fake-anthropic.js';
import { GATEWAY_KEY, postMessages } from '../support/gateway-harness.js';
import { installStall, type Stall } from '../support/postgres-stall.js';
import { POSTGRES_TEST_URL, storeKinds } from '../support/stores.js';
import { until } from '../support/until.js';

describe.runIf(storeKinds().includes('postgres'))('a held call on PostgreSQL', () => {
  const schema = `vigil_held_${process.pid}_${Date.now().toString(36)}`;
  let fake: FakeAnthropic;
  let stalls: Stall;
  let gateway: Gateway | undefined;
  let stall: Stall['stall'];
  let release: Stall['release'];
  let stalled: Stall['stalled'];

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

  // Connections accepted in this process (the gateway's, the fake upstream's), to know when the gateway has seen a
  // client leave.
  const serverSockets = new Set<Socket>();
  const onSocket = ({ socket }: { socket: Socket }): void => {
    serverSockets.add(socket);
    socket.once('close', () => serverSockets.delete(socket));
  };
  beforeAll(() => subscribe('net.server.socket', onSocket as (m: unknown) => void));
  afterAll(() => unsubscribe('net.server.socket', onSocket as (m: unknown) => void));

  beforeEach(async () => {
    process.env.VIGIL_TEST_UPSTREAM_KEY = GATEWAY_KEY;
    fake = await startFakeAnthropic({ apiKey: GATEWAY_KEY });
    gateway = await start();
    stalls = await installStall(schema);
    ({ stall, release, stalled } = stalls);
  });
  afterEach(async () => {
    await stalls.dispose(async () => {
      await gateway?.close(0);
      gateway = undefined;
    });
    await fake.close();
  });

  /** Aborts the client's call and waits until the gateway has seen its connection close. */
  async function hangUp(client: AbortController): Promise<void> {
    const port = Number(new URL(gateway!.url).port);
    const clients = (): number => [...serverSockets].filter((s) => s.localPort === port).length;
    const open = clients();
    client.abort();
    await until('the gateway to see the client leave', () => (clients() < open ? true : undefined));
    await new Promise((r) => setImmediate(r));
  }

  function send(session: string, signal?: AbortSignal): Promise<{ status: number; body: unknown } | 'aborted'> {
    const deploy = { messages: [{ role: 'user', content: 'deploy' }] };
    return postMessages(gateway!.url, session, deploy, signal ? { signal } : {}).then(
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
    await hangUp(client);
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
    await hangUp(client);
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
