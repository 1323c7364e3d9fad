/**
 * Regression: after retention removed a conversation's blobs, the gateway still believed they were stored and
 * referred to them; the store refused the record and the client got 503. A conversation resumed after a purge must be
 * recorded in full (the pieces written again).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { retentionPolicy, runRetention } from '../../src/store/retention.js';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';
import { verifySession } from '../../src/admin/session-verify.js';
import { validateConfig } from '../../src/config/load-config.js';
import { addHold } from '../../src/store/holds.js';
import { signingKeyFile } from '../../src/store/ledger-upkeep.js';
import { SigningKey } from '../../src/store/signing-key.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness(() => ({ retention: { default: '1ms', schedule: 0 }, signing: { interval: 0 } }));
});
afterAll(() => h?.close());

const system = 'You are a careful assistant. '.repeat(100); // large enough to be a blob of its own

const ask = (messages: Array<{ role: string; content: string }>, session: string, sys = system) =>
  fetch(`${h.url}/v1/messages`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-api-key': CLIENT_KEY,
      'anthropic-version': '2023-06-01',
      'x-vigil-session': session,
    },
    body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 50, system: sys, messages }),
  });

it('records a conversation resumed after retention removed its earlier turns', async () => {
  const first = [{ role: 'user', content: 'first turn' }];
  expect((await ask(first, 'before-purge')).status).toBe(200);
  await h.session('before-purge', 1);
  // A later exchange, held: it stays, right after the positions the purge removes.
  expect(
    (await ask([{ role: 'user', content: 'unrelated' }], 'other', 'Another prompt entirely. '.repeat(100))).status,
  ).toBe(200);
  await h.session('other', 1);
  await addHold(h.gateway.store, { session: 'other', reason: 'kept for the test', by: 'test' });
  await h.gateway.recorder.queue.flush();

  const config = validateConfig({
    data_dir: h.dataDir,
    retention: { default: '1ms' },
    connections: [{ name: 'anthropic' }],
  });
  await new Promise((r) => setTimeout(r, 5));
  const key = SigningKey.load(signingKeyFile(config), { create: true });
  const result = await runRetention(h.gateway.store, retentionPolicy(config), key);
  expect(result.exchanges).toBeGreaterThan(0);
  expect(result.blobs).toBeGreaterThan(0);
  expect(await h.gateway.store.sessionRecords('before-purge')).toEqual([]);
  // The kept session's first record follows purged positions: its own verification vouches for the gap via the purge.
  expect((await h.gateway.store.sessionRecords('other')).length).toBeGreaterThan(0);
  expect(await verifySession(h.gateway.store, 'other')).toMatchObject({ ok: true });

  // The same system prompt again: its blob was purged, though this process wrote it before.
  const again = await ask(
    [...first, { role: 'assistant', content: 'ok' }, { role: 'user', content: 'second turn' }],
    'after-purge',
  );
  expect(again.status).toBe(200);
  const [x] = await h.session('after-purge', 1);
  expect((x!.request.body as { system: string }).system).toBe(system);
  expect((await h.gateway.store.verify()).ok).toBe(true);
});
