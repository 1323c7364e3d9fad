/**
 * Syslog over UDP through a running gateway while the collector is down: what went wrong was that the receiver's
 * ICMP "port unreachable" closed the sink's socket without forgetting it, so with light traffic (one event per
 * outbox pass) each event went out on a fresh socket, was reported delivered, and was lost. Now a refused batch stays
 * in the outbox, and every event recorded while the collector was down reaches it once it is back.
 */
import dgram from 'node:dgram';
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/export/audit-event.js';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';
import { until } from '../support/until.js';

let h: Harness;
let port: number;
let collector: dgram.Socket | undefined;
const datagrams: string[] = [];

beforeAll(async () => {
  // A port nothing listens on yet: bound, then released; the collector binds it later.
  const probe = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => probe.bind(0, '127.0.0.1', resolve));
  port = probe.address().port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  h = await startHarness((upstream) => ({
    connections: [{ name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } }],
    siem: { sinks: [{ type: 'syslog', name: 'udp', transport: 'udp', host: '127.0.0.1', port }] },
  }));
}, 30_000);

afterAll(async () => {
  await h?.close();
  if (collector) await new Promise<void>((resolve) => collector!.close(() => resolve()));
});

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${h.gateway.adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{sink="udp"}`));
  return Number(line?.split(' ').at(-1) ?? 0);
}

describe('SIEM streaming over syslog/UDP', () => {
  it('keeps the events of a collector that is down, and delivers them when it is back', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
    const call = (i: number): Promise<unknown> =>
      client.messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 20,
        messages: [{ role: 'user', content: `udp ${i}` }],
      });

    // One call, then wait until the outbox has tried (and failed) to send its event alone.
    await call(0);
    await until('a failed delivery', async () => ((await metric('vigil_sink_failures_total')) >= 1 ? true : undefined));
    expect(await metric('vigil_outbox_lag_events')).toBeGreaterThan(0);
    for (let i = 1; i < 3; i++) await call(i);

    collector = dgram.createSocket('udp4');
    collector.on('message', (m) => datagrams.push(m.toString('utf8')));
    await new Promise<void>((resolve) => collector!.bind(port, '127.0.0.1', resolve));

    const completed = await until(
      'the three exchange.completed events at the collector',
      () => {
        const events = datagrams
          .filter((d) => d.includes(' exchange.completed '))
          .map((d) => JSON.parse(d.slice(d.indexOf('] {') + 2)) as AuditEvent);
        return new Set(events.map((e) => e.id)).size >= 3 ? events : undefined;
      },
      20_000,
    );
    const prompts = completed.map((e) => e.exchange);
    expect(new Set(prompts).size).toBe(3);
    await until('no lag', async () => ((await metric('vigil_outbox_lag_events')) === 0 ? true : undefined));
  }, 40_000);
});
