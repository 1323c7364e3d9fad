import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { maskingConfigSchema } from '../../../src/recorder/masking/masking-config.js';
import { Recorder } from '../../../src/recorder/recorder.js';
import { Redactor } from '../../../src/recorder/redactor.js';
import { beginCall } from '../../support/recorder-begin.js';
import { useStoreFixture, type StoreFixture } from '../../support/stores.js';
import { until } from '../../support/until.js';

const turns = (n: number): Promise<void> =>
  n === 0 ? Promise.resolve() : new Promise((r) => setImmediate(() => void turns(n - 1).then(r)));

/** A recorder on a real store whose linger is far longer than any test: only an explicit flush writes. */
async function setup(fixture: StoreFixture) {
  const store = await fixture.open();
  const recorder = new Recorder(store, {
    log: pino({ level: 'silent' }),
    maxRecordedResponseBody: 1 << 20,
    eventFlushMs: 60_000,
  });
  const redactor = new Redactor(maskingConfigSchema.parse({}));
  const begin = (exchangeId: string) => beginCall(recorder, exchangeId, redactor);
  const respond = async (rec: Awaited<ReturnType<typeof begin>>): Promise<void> => {
    rec.responseStarted(200, { 'content-type': 'application/json' });
    rec.chunk(Buffer.from('{"type":"message","content":[]}'));
    await rec.finish();
  };
  const responses = async (): Promise<string[]> =>
    (await store.recordsOfKinds(['exchange.response'], 0, 10)).map((r) => r.exchangeId ?? '');
  /** The exchange records on the chain, in chain order. */
  const chained = async (): Promise<string[]> =>
    [...(await store.recordsOfKinds(['exchange.request', 'exchange.response'], 0, 10))]
      .sort((a, b) => a.chainSeq - b.chainSeq)
      .map((r) => `${r.kind} ${r.exchangeId}`);
  const done = async (): Promise<void> => {
    await recorder.close();
    await store.close();
  };
  return { store, begin, respond, responses, chained, flush: () => recorder.queue.flush(), done };
}

describe('Recorder on sqlite, which writes on the event loop', () => {
  const fixture = useStoreFixture('sqlite');

  it('writes the last exchange in flight as soon as it ends, not after the linger', async () => {
    // SQLite writes on the event loop: left to the linger, it would be written while the client's next call waits on
    // upstream (and its answer on it).
    const { store, begin, respond, responses, done } = await setup(fixture());
    expect(store.writesOnCallingThread).toBe(true);
    await respond(await begin('ex_a'));
    await turns(3);
    expect(await responses()).toEqual(['ex_a']);
    await done();
  });
});

describe('Recorder on postgres, which writes in the database server', () => {
  const fixture = useStoreFixture('postgres');

  it('writes the next request before the last exchange that ended, not after it', async () => {
    // A database server's write holds nothing in this process, but the next request's would wait for it: the ended
    // exchange lingers, and the next request, coming within the linger, is written first.
    const { store, begin, respond, responses, chained, done } = await setup(fixture());
    expect(store.writesOnCallingThread).toBe(false);
    await respond(await begin('ex_a'));
    await turns(3);
    expect(await responses()).toEqual([]);
    await begin('ex_b');
    await until('the lingering exchange written after the request', async () =>
      (await responses()).length > 0 ? true : undefined,
    );
    expect(await chained()).toEqual(['exchange.request ex_a', 'exchange.request ex_b', 'exchange.response ex_a']);
    await done();
  });
});

describe.each(['sqlite', 'postgres'] as const)('Recorder on %s', (kind) => {
  const fixture = useStoreFixture(kind);

  it('lets an exchange that ends while others are in flight linger, to share their commit', async () => {
    const { begin, respond, responses, flush, done } = await setup(fixture());
    const [a, b] = await Promise.all([begin('ex_a'), begin('ex_b')]);
    await respond(a);
    await turns(3);
    expect(await responses()).toEqual([]);
    await respond(b);
    await turns(3);
    // The last one in flight ended: SQLite writes both at once; PostgreSQL leaves them to the linger (above).
    if (kind === 'postgres') {
      expect(await responses()).toEqual([]);
      await flush();
    }
    expect(await responses()).toEqual(['ex_a', 'ex_b']);
    await done();
  });
});
