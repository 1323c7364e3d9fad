/**
 * A gateway that stops delivers to its SIEM sinks what it recorded since their last pass: the exchanges that ended
 * during the shutdown must not wait for a next start that, for a gateway scaled down for good, never comes.
 */
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/export/audit-event.js';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';
import { startRecordingHttpServer, type RecordingHttpServer, postedEvents } from '../support/recording-http-server.js';
import { until } from '../support/until.js';

let h: Harness;
let receiver: RecordingHttpServer;

beforeAll(async () => {
  receiver = await startRecordingHttpServer();
  h = await startHarness((upstream) => ({
    connections: [{ name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } }],
    siem: { sinks: [{ type: 'http', name: 'webhook', url: `${receiver.url}/events`, timeout: '2s' }] },
  }));
});
afterAll(async () => {
  await h?.close();
  await receiver?.close();
});

const events = (): AuditEvent[] => postedEvents(receiver.requests);

it('delivers the exchanges recorded since the last pass when it stops', async () => {
  // Went wrong: close() stopped the delivery loop first and ran no final pass, so these waited for a next start.
  const client = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
  await client.messages.create(
    { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'first' }] },
    { headers: { 'x-vigil-session': 'before-stop' } },
  );
  // A pass has run (it delivered the first exchange): the next one is a poll interval away.
  await until('the first exchange at the SIEM', () =>
    events().some((e) => e.type === 'exchange.completed' && e.session === 'before-stop') ? true : undefined,
  );
  const delivered = events().length;
  await client.messages.create(
    { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'last' }] },
    { headers: { 'x-vigil-session': 'at-stop' } },
  );
  await h.gateway.close();
  const late = events().slice(delivered);
  const last = late.find((e) => e.type === 'exchange.completed' && e.session === 'at-stop');
  expect(last).toBeDefined();
  // Went wrong: the final digest was signed after the outbox's last pass, so the SIEM — the one place a cut-off
  // tail can be told from a chain that ended — never held the digest that signs the last exchange.
  const [chain, seq] = last!.id.split(':');
  const digest = late.find((e) => e.type === 'ledger.digest' && e.attributes.chain === chain);
  expect(digest?.attributes.to_seq).toBeGreaterThanOrEqual(Number(seq));
  expect(digest?.attributes.anchor).toBe(`${digest!.id}:${String(digest!.attributes.record_hash)}`);
});
