/**
 * Claude Code resends the whole conversation every turn. A long agent session must not cost the store the sum of
 * every request: measure stored bytes against raw bytes over a 30-turn session of ~42 KB requests.
 */
import Database from 'better-sqlite3';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h?.close());

const system = [
  {
    type: 'text',
    text: 'You are Claude Code, an interactive CLI tool. '.repeat(500),
    cache_control: { type: 'ephemeral' },
  },
];
const tools = Array.from({ length: 16 }, (_, i) => ({
  name: `Tool${i}`,
  description: `Tool ${i} reads and writes files in the workspace. `.repeat(20),
  input_schema: {
    type: 'object',
    properties: { path: { type: 'string' }, content: { type: 'string' } },
    required: ['path'],
  },
}));

it('stores a 30-turn session in a fraction of its raw bytes', async () => {
  const messages: Array<{ role: string; content: string }> = [];
  let rawBytes = 0;
  for (let turn = 0; turn < 30; turn++) {
    messages.push({ role: 'user', content: `step ${turn}: please look at file src/module-${turn}.ts and explain it` });
    const body = JSON.stringify({
      model: 'claude-haiku-4-5',
      max_tokens: 32000,
      system,
      tools,
      messages,
      metadata: { user_id: 'user_4b1d_account_0000_session_ratio-session' },
      stream: true,
    });
    const res = await fetch(`${h.url}/v1/messages?beta=true`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': CLIENT_KEY, 'anthropic-version': '2023-06-01' },
      body,
    });
    const text = await res.text();
    rawBytes += Buffer.byteLength(body) + Buffer.byteLength(text);
    const reply = /"text":"(Echo[^"]*)"/.exec(text)?.[1] ?? 'ok';
    messages.push({ role: 'assistant', content: reply });
  }
  const xs = await h.session('ratio-session', 30);
  expect(xs).toHaveLength(30);
  expect(xs.at(-1)!.request.body).toMatchObject({ messages: expect.arrayContaining([messages.at(-2)]) });

  await h.gateway.recorder.queue.flush();
  const db = new Database(path.join(h.dataDir, 'vigil.db'), { readonly: true });
  const stored =
    (db.prepare('SELECT coalesce(sum(length(data)), 0) FROM blobs').pluck().get() as number) +
    (db.prepare('SELECT coalesce(sum(length(data)), 0) FROM records').pluck().get() as number);
  db.close();
  const ratio = stored / rawBytes;
  console.log(
    `storage ratio over 30 turns: ${(rawBytes / 1e6).toFixed(2)} MB raw → ${(stored / 1e6).toFixed(3)} MB stored (${ratio.toFixed(3)})`,
  );
  expect(rawBytes).toBeGreaterThan(30 * 40_000);
  // Measured 0.157 (requests dedup to ~1 KB each; what remains is each turn's new response, events and headers).
  expect(ratio).toBeLessThan(0.2);
});
