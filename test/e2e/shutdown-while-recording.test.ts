/**
 * A gateway shutting down while a request's first record is still being written: the exchange ends recorded, by the
 * gateway that stops, not left in progress for the next start to find. On PostgreSQL, where a test can make the
 * request's insert wait (see postgres-stall.ts).
 */
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load-config.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import { readSession, type ExchangeView } from '../../src/recorder/exchange-reader.js';
import { startFakeAnthropic, type FakeAnthropic } from '../../src/sandbox/fake-anthropic.js';
import { openStore } from '../../src/store/open-store.js';
import { GATEWAY_KEY, postMessages } from '../support/gateway-harness.js';
import { installStall, type Stall } from '../support/postgres-stall.js';
import { POSTGRES_TEST_URL, storeKinds } from '../support/stores.js';

describe.runIf(storeKinds().includes('postgres'))('shutting down while a request is being recorded', () => {
  const schema = `vigil_shut_${process.pid}_${Date.now().toString(36)}`;
  let fake: FakeAnthropic;
  let gateway: Gateway | undefined;
  let stalls: Stall;

  const config = (): ReturnType<typeof validateConfig> =>
    validateConfig({
      listen: '127.0.0.1:0',
      store: { postgres: { url: POSTGRES_TEST_URL, schema } },
      connections: [{ name: 'anthropic', upstream: fake.url, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } }],
    });

  beforeEach(async () => {
    process.env.VIGIL_TEST_UPSTREAM_KEY = GATEWAY_KEY;
    fake = await startFakeAnthropic({ apiKey: GATEWAY_KEY });
    gateway = await startGateway(config(), { log: pino({ level: 'silent' }) });
    stalls = await installStall(schema);
  });
  afterEach(async () => {
    await stalls.dispose(async () => {
      await gateway?.close(0);
      gateway = undefined;
    });
    await fake.close();
  });

  /**
   * Sends a call, closes the gateway with `graceMs` while the call's request record is being written, lets the write
   * go 300 ms later. Returns what the client received and the session as the store holds it once the gateway has
   * stopped, read before any gateway starts again (a start marks what it finds unfinished).
   */
  async function shutDownWhileRecording(
    session: string,
    graceMs: number,
  ): Promise<{ received: unknown; recorded: ExchangeView[] }> {
    await stalls.stall('exchange.request');
    const answer = postMessages(gateway!.url, session, { messages: [{ role: 'user', content: 'hello' }] }).then(
      async (r) => ({ status: r.status, body: (await r.json()) as unknown }),
      (err: unknown) => ({ error: String(err) }),
    );
    await stalls.stalled();
    const closed = gateway!.close(graceMs);
    await new Promise((r) => setTimeout(r, 300));
    await stalls.release();
    await closed;
    gateway = undefined;
    const store = await openStore(config());
    try {
      return { received: await answer, recorded: await readSession(store, session) };
    } finally {
      await store.close();
    }
  }

  it('grace 0: the request is not forwarded, its client gets a 503 to retry, and it is recorded as interrupted', async () => {
    // Went wrong: an exchange counted as in flight only once its request record was written. Shutdown with grace 0
    // closed the recorder meanwhile; the request was then forwarded, cut, and its end never written: it stayed
    // `in_progress` until the next start marked it interrupted.
    const { received, recorded } = await shutDownWhileRecording('grace-0', 0);
    expect(received).toMatchObject({ status: 503, body: { error: { type: 'overloaded_error' } } });
    expect(fake.requests).toHaveLength(0);
    expect(recorded).toMatchObject([
      {
        outcome: 'interrupted',
        response: { status: 503, error: { type: 'overloaded_error', message: 'the gateway is shutting down; retry' } },
      },
    ]);
  });

  it('with grace left, the request being recorded counts as in flight: it is forwarded and finishes', async () => {
    // Went wrong: shutdown saw nothing in flight while the request record was being written, and cut it at once.
    const { received, recorded } = await shutDownWhileRecording('grace-10s', 10_000);
    expect(received).toMatchObject({ status: 200, body: { content: [{ text: 'Echo: hello' }] } });
    expect(recorded).toMatchObject([{ outcome: 'ok', response: { status: 200 } }]);
  });
});
