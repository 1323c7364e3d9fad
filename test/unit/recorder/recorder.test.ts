import path from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ANONYMOUS } from '../../../src/identity/principal.js';
import { maskingConfigSchema } from '../../../src/recorder/masking/masking-config.js';
import { Recorder } from '../../../src/recorder/recorder.js';
import { Redactor } from '../../../src/recorder/redactor.js';
import { RequestBody } from '../../../src/recorder/request-body.js';
import { SqliteAuditStore } from '../../../src/store/sqlite/sqlite-audit-store.js';
import { useTempDir } from '../../support/temp-dir.js';

const turns = (n: number): Promise<void> =>
  n === 0 ? Promise.resolve() : new Promise((r) => setImmediate(() => void turns(n - 1).then(r)));

describe('Recorder', () => {
  const tempDir = useTempDir('vigil-recorder');

  /** A recorder on a real store whose linger is far longer than any test: only an explicit flush writes. */
  function setup() {
    const store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db') });
    const recorder = new Recorder(store, {
      log: pino({ level: 'silent' }),
      maxRecordedResponseBody: 1 << 20,
      eventFlushMs: 60_000,
    });
    const redactor = new Redactor(maskingConfigSchema.parse({}));
    const begin = (exchangeId: string) =>
      recorder.begin({
        exchangeId,
        connection: 'anthropic',
        principal: ANONYMOUS,
        clientAddress: '127.0.0.1',
        method: 'POST',
        path: '/v1/messages',
        query: '',
        headers: { 'content-type': 'application/json' },
        body: RequestBody.received(Buffer.from('{"model":"claude-x","messages":[]}'), 'application/json'),
        bestEffort: false,
        level: 'full',
        redactor,
      });
    const respond = async (rec: Awaited<ReturnType<typeof begin>>): Promise<void> => {
      rec.responseStarted(200, { 'content-type': 'application/json' });
      rec.chunk(Buffer.from('{"type":"message","content":[]}'));
      await rec.finish();
    };
    const responses = async (): Promise<string[]> =>
      (await store.recordsOfKinds(['exchange.response'], 0, 10)).map((r) => r.exchangeId ?? '');
    const done = async (): Promise<void> => {
      await recorder.close();
      await store.close();
    };
    return { begin, respond, responses, done };
  }

  it('writes the last exchange in flight as soon as it ends, not after the linger', async () => {
    // Left to the linger, it would be written while the client's next call waits on upstream (and its answer on it).
    const { begin, respond, responses, done } = setup();
    await respond(await begin('ex_a'));
    await turns(3);
    expect(await responses()).toEqual(['ex_a']);
    await done();
  });

  it('lets an exchange that ends while others are in flight linger, to share their commit', async () => {
    const { begin, respond, responses, done } = setup();
    const [a, b] = await Promise.all([begin('ex_a'), begin('ex_b')]);
    await respond(a);
    await turns(3);
    expect(await responses()).toEqual([]);
    await respond(b);
    await turns(3);
    expect(await responses()).toEqual(['ex_a', 'ex_b']);
    await done();
  });
});
