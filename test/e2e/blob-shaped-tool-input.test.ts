/**
 * A caller can make the model call a tool with any input, `{"$blob": "<hash>"}` included, and the gateway records the
 * assembled message as it came: on either store, that exchange and every other caller's around it are recorded, and
 * the ledger verifies.
 */
import Anthropic from '@anthropic-ai/sdk';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';
import { POSTGRES_TEST_URL, storeKinds } from '../support/stores.js';

const input = { $blob: '1'.repeat(64) };
const tools = [{ name: 'T', description: 'a tool', input_schema: { type: 'object' as const } }];
const user = (text: string) => [{ role: 'user' as const, content: text }];

describe.each(storeKinds())('a tool input shaped like a blob reference: %s', (kind) => {
  const schema = `vigil_blob_input_${process.pid}_${Date.now().toString(36)}`;
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness(() =>
      kind === 'postgres' ? { store: { postgres: { url: POSTGRES_TEST_URL, schema } } } : {},
    );
  });
  afterAll(async () => {
    await h?.close();
    if (kind !== 'postgres') return;
    const admin = new pg.Client({ connectionString: POSTGRES_TEST_URL });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  });

  it('is recorded as given, with the calls of others sharing its writes, and the ledger verifies', async () => {
    // Went wrong: the store took the tool's input in the response record for a reference to a blob it does not hold
    // and refused the write; the write queue tried the whole group commit again with newer records folded in, then
    // dropped all of it: the caller's response, and other callers' events and responses.
    const client = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
    const toolCall = {
      model: 'claude-haiku-4-5',
      max_tokens: 100,
      tools,
      messages: user(`[[tool:T ${JSON.stringify(input)}]]`),
    };
    const as = (session: string) => ({ headers: { 'x-vigil-session': session } });
    const calls: Array<Promise<Anthropic.Message>> = [];
    for (let round = 0; round < 3; round++) {
      calls.push(client.messages.stream(toolCall, as('caller')).finalMessage());
      calls.push(client.messages.create(toolCall, as('caller')));
      for (let v = 0; v < 4; v++) {
        const params = { model: 'claude-haiku-4-5', max_tokens: 50, messages: user(`innocent request ${round}-${v}`) };
        calls.push(client.messages.stream(params, as(`other-${round}-${v}`)).finalMessage());
      }
    }
    const answers = await Promise.all(calls);
    expect(answers.filter((m) => m.stop_reason === 'tool_use')).toHaveLength(6);

    const called = await h.session('caller', 6);
    for (const x of called) {
      expect(x.outcome).toBe('ok');
      expect(x.response.message).toMatchObject({
        content: expect.arrayContaining([expect.objectContaining({ type: 'tool_use', name: 'T', input })]),
      });
    }
    for (let round = 0; round < 3; round++) {
      for (let v = 0; v < 4; v++) {
        const [x] = await h.session(`other-${round}-${v}`, 1);
        expect(x!.outcome).toBe('ok');
        expect(x!.response.events.map((e) => e.type)).toContain('message_stop');
      }
    }
    expect(h.gateway.recorder.failures).toBe(0);
    expect(await h.gateway.store.verify()).toMatchObject({ ok: true, problems: [] });
  });
});
