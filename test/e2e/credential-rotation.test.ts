/**
 * The upstream credential rotated in its file (a secret manager, a Kubernetes secret): the gateway sends the new key
 * from then on, without a restart; a file that goes away keeps the key read before; a connection whose file appears
 * after start-up begins to serve. No key is ever recorded.
 */
import Anthropic from '@anthropic-ai/sdk';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_KEY, filesContaining, startHarness, tempDir, type Harness } from '../support/gateway-harness.js';
import { until } from '../support/until.js';

const KEY_A = 'sk-ant-api03-ROTATION-FIRST-KEY-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
const KEY_B = 'sk-ant-api03-ROTATION-SECOND-KEY-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb';
const KEY_C = 'sk-ant-api03-ROTATION-LATE-KEY-ccccccccccccccccccccccccccccccccc';

let h: Harness;
let dir: string;
const logs: Array<{ level: number; msg: string; connection?: string }> = [];
const keyFile = (): string => path.join(dir, 'anthropic.key');
const lateFile = (): string => path.join(dir, 'late.key');

beforeAll(async () => {
  dir = tempDir('vigil-rotation-');
  writeFileSync(keyFile(), `${KEY_A}\n`);
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as never) });
  h = await startHarness(
    (upstream) => ({
      connections: [
        { name: 'anthropic', upstream, credential: { file: keyFile() }, credential_reload: '50ms' },
        { name: 'late', upstream, credential: { file: lateFile() }, credential_reload: '50ms' },
      ],
    }),
    { apiKey: undefined }, // the fake takes any key: the test reads which one it was sent
    { log },
  );
});
afterAll(async () => {
  await h?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One call through `connection`; the key upstream received. */
async function sentKey(connection = 'anthropic'): Promise<string | undefined> {
  const client = new Anthropic({ baseURL: `${h.url}/c/${connection}`, apiKey: CLIENT_KEY, maxRetries: 0 });
  await client.messages.create({
    model: 'claude-haiku-4-5',
    max_tokens: 5,
    messages: [{ role: 'user', content: 'hi' }],
  });
  return h.fake.requests.at(-1)!.headers['x-api-key'] as string | undefined;
}

describe('a rotated upstream credential', () => {
  it('is sent from the next call on once its file changes, without a restart', async () => {
    expect(await sentKey()).toBe(KEY_A);
    writeFileSync(keyFile(), `${KEY_B}\n`);
    await until('the new key to be sent', async () => ((await sentKey()) === KEY_B ? true : undefined));
    expect(logs).toContainEqual(
      expect.objectContaining({ connection: 'anthropic', msg: expect.stringMatching(/^upstream credential renewed/) }),
    );

    // Gone (a rotation that removes before it writes): the key read before goes on, and the log says so.
    rmSync(keyFile());
    await until('the missing file to be noticed', async () =>
      logs.some((l) => l.level === 50 && /calls go on with the credential read before/.test(l.msg)) ? true : undefined,
    );
    expect(await sentKey()).toBe(KEY_B);
    writeFileSync(keyFile(), `${KEY_A}\n`);
    await until('the key to be read again', async () => ((await sentKey()) === KEY_A ? true : undefined));
  });

  it('lets a connection whose file appears after start-up serve', async () => {
    const refused = await new Anthropic({ baseURL: `${h.url}/c/late`, apiKey: CLIENT_KEY, maxRetries: 0 }).messages
      .create({ model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e as { status: number; message: string });
    expect(refused).toMatchObject({ status: 500, message: expect.stringContaining(`cannot read ${lateFile()}`) });
    writeFileSync(lateFile(), KEY_C);
    await until('the late connection to serve', async () =>
      (await sentKey('late').catch(() => undefined)) === KEY_C ? true : undefined,
    );
  });

  it('never records a key', async () => {
    await h.gateway.recorder.queue.flush();
    for (const key of [KEY_A, KEY_B, KEY_C]) expect(filesContaining(h.dataDir, key)).toEqual([]);
    expect(JSON.stringify(logs)).not.toMatch(/ROTATION-(FIRST|SECOND|LATE)/);
  });
});
