/**
 * SIEM streaming without loss, end to end: real traffic through a gateway becomes audit events that reach a real
 * rsyslog over TCP and an HTTP receiver that is down for a while — every event arrives, in order, and exactly once
 * after de-duplication by id. Metrics show the lag and the failures.
 */
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/export/audit-event.js';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';
import { startRecordingHttpServer, type RecordingHttpServer } from '../support/recording-http-server.js';
import { until } from '../support/until.js';
import { RsyslogServer } from '../support/rsyslog.js';

let h: Harness;
let receiver: RecordingHttpServer;
let rsyslog: RsyslogServer;
let receiverUp = false;
/** Bodies the receiver accepted (answered 200): what the SIEM actually took in. */
const accepted: string[] = [];

beforeAll(async () => {
  rsyslog = await RsyslogServer.start();
  receiver = await startRecordingHttpServer();
  receiver.reply = (req) => {
    if (!receiverUp) return { status: 503 };
    accepted.push(req.body);
    return { status: 200 };
  };
  h = await startHarness((upstream) => ({
    connections: [{ name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } }],
    siem: {
      sinks: [
        { type: 'http', name: 'webhook', url: `${receiver.url}/events`, timeout: '2s' },
        { type: 'syslog', name: 'rsyslog', transport: 'tcp', host: '127.0.0.1', port: rsyslog.ports.tcp },
      ],
    },
  }));
}, 30_000);

afterAll(async () => {
  await h?.close();
  await receiver?.close();
  await rsyslog?.dispose();
});

const received = (): AuditEvent[] => accepted.flatMap((body) => (JSON.parse(body) as { events: AuditEvent[] }).events);

describe('SIEM streaming', () => {
  it('delivers every audit event, in order, once the receiver comes back; syslog gets them as they happen', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
    for (let i = 0; i < 12; i++) {
      await client.messages.create(
        { model: 'claude-haiku-4-5', max_tokens: 20, messages: [{ role: 'user', content: `event ${i}` }] },
        { headers: { 'x-vigil-session': 'siem-session' } },
      );
    }
    // A refusal is an audit event too.
    await fetch(`${h.url}/c/nowhere/v1/models`).catch(() => undefined);

    // rsyslog over TCP: twelve exchange.completed events, each with identity, model and tokens, and no body.
    const syslog = await rsyslog.waitFor('tcp', 12, 15_000);
    const completed = syslog
      .filter((m) => m.msgid === 'exchange.completed')
      .map((m) => JSON.parse(m.msg) as AuditEvent);
    expect(completed).toHaveLength(12);
    expect(completed[0]).toMatchObject({
      type: 'exchange.completed',
      session: 'siem-session',
      connection: 'anthropic',
      actor: { subject: 'anonymous' },
      attributes: { model: 'claude-haiku-4-5', outcome: 'ok', status: 200, input_tokens: expect.any(Number) },
    });
    expect(JSON.stringify(completed)).not.toContain('event 3'); // no prompt text leaves the gateway

    // The HTTP receiver was down: nothing delivered yet, the outbox is lagging and failing.
    expect(received()).toEqual([]);
    expect(receiver.requests.length).toBeGreaterThan(0); // it was tried
    const metrics = await (await fetch(`${h.gateway.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/vigil_outbox_lag_events\{sink="webhook"\} [1-9]/);
    expect(metrics).toMatch(/vigil_sink_failures_total\{sink="webhook"\} [1-9]/);
    expect(metrics).toMatch(/vigil_requests_total\{connection="anthropic",outcome="ok",status="200"\} 12/);

    receiverUp = true;
    const events = await until(
      'all events at the receiver',
      () => {
        const got = received().filter((e) => e.type === 'exchange.completed');
        return got.length >= 12 ? received() : undefined;
      },
      90_000,
    );
    const unique = [...new Map(events.map((e) => [e.id, e])).values()];
    expect(unique.filter((e) => e.type === 'exchange.completed')).toHaveLength(12);
    // In order: ids are chain positions, which rise.
    const positions = unique.map((e) => Number(e.id.split(':').at(-1)));
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    expect(new Set(unique.map((e) => e.id)).size).toBe(unique.length);
  }, 120_000);
});
