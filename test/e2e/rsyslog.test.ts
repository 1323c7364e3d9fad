/**
 * The syslog sink against a real rsyslogd: what the security team's collector receives and how it parses it, over
 * UDP, TCP and TLS; and what happens when the collector goes away and comes back.
 */
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/export/audit-event.js';
import { Outbox } from '../../src/export/outbox.js';
import { createSink, type Sink } from '../../src/export/sink.js';
import { SinkDeliveryError } from '../../src/export/sink-delivery-error.js';
import { sinkConfigSchema } from '../../src/export/sinks-config.js';
import { VIGIL_SD_ID } from '../../src/export/syslog-message.js';
import { UDP_REFUSAL_WAIT_MS } from '../../src/export/syslog-udp-transport.js';
import { SqliteAuditStore } from '../../src/store/sqlite/sqlite-audit-store.js';
import { parseStructuredData, RsyslogServer, type SyslogInput } from '../support/rsyslog.js';
import { deniedEvent, exchangeEvent, verifyFailedEvent } from '../support/sample-audit-events.js';
import { useTempDir } from '../support/temp-dir.js';

let rsyslog: RsyslogServer;
const sinks: Sink[] = [];

beforeAll(async () => {
  rsyslog = await RsyslogServer.start();
});

afterAll(async () => {
  await Promise.all(sinks.map((s) => s.close()));
  await rsyslog?.dispose();
});

function syslogSink(transport: SyslogInput, name = `siem-${transport}`): Sink {
  const config = sinkConfigSchema.parse({
    type: 'syslog',
    name,
    transport,
    host: '127.0.0.1',
    port: rsyslog.ports[transport],
    ...(transport === 'tls' ? { ca: { file: rsyslog.caFile } } : {}),
  });
  const sink = createSink(config, { hostname: 'vigil-test-host' });
  sinks.push(sink);
  return sink;
}

/** What a SIEM gets back out of MSG: the event, without `content` (no sink here opted in). */
function withoutContent(e: AuditEvent): unknown {
  const { content: _c, ...rest } = e;
  return rest;
}

describe.each(['udp', 'tcp', 'tls'] as const)('syslog over %s to rsyslog', (transport) => {
  it('delivers a batch intact and in order, parsed by rsyslog as RFC 5424', async () => {
    const sink = syslogSink(transport);
    const before = (await rsyslog.received(transport)).length;
    const batch = [
      exchangeEvent(1, { content: { request: { messages: [] } } }),
      deniedEvent(2),
      verifyFailedEvent(3),
      exchangeEvent(4),
    ];
    await sink.deliver(batch);

    const got = (await rsyslog.waitFor(transport, before + batch.length)).slice(before);
    expect(got.map((r) => JSON.parse(r.msg))).toEqual(batch.map(withoutContent));
    expect(got.map((r) => [r.facility, r.severity, r.msgid])).toEqual([
      ['authpriv', 'info', 'exchange.completed'],
      ['authpriv', 'warning', 'access.denied'],
      ['authpriv', 'alert', 'verify.failed'],
      ['authpriv', 'info', 'exchange.completed'],
    ]);
    for (const r of got) {
      expect([r.hostname, r.app, r.procid]).toEqual(['vigil-test-host', 'vigil', String(process.pid)]);
      expect(r.raw).toMatch(/^<\d+>1 2025-06-01T12:0\d:\d\d[.\dZ]* vigil-test-host vigil \d+ [a-z.]+ \[vigil@32473 /);
    }
    expect(parseStructuredData(got[0]!.sd)).toEqual({
      [VIGIL_SD_ID]: {
        id: 'evt-0001',
        type: 'exchange.completed',
        subject: 'alice@example.com',
        connection: 'anthropic',
        session: 'sess-42',
        exchange: 'ex-1',
      },
    });
    // `"`, `\` and `]` escaped in the SD param, non-ASCII passed as UTF-8: rsyslog reads the subject back exactly.
    expect(parseStructuredData(got[1]!.sd)[VIGIL_SD_ID]).toEqual({
      id: 'evt-0002',
      type: 'access.denied',
      subject: 'ci "bot" \\ [x] é✓',
      connection: 'anthropic',
    });
    expect(parseStructuredData(got[2]!.sd)[VIGIL_SD_ID]).toEqual({ id: 'evt-0003', type: 'verify.failed' });
    // MSG is plain ASCII JSON: non-ASCII text travels as \u escapes and comes back unchanged.
    expect(got[1]!.msg).toMatch(/^[\x20-\x7e]+$/);
    expect(got[1]!.msg).toContain(String.raw`\u00e9\u2713`);
  });
});

// Over UDP, "down" is rsyslog's ICMP port unreachable: the batch sent into it must throw, not count as delivered.
describe.each(['udp', 'tcp', 'tls'] as const)('syslog over %s when rsyslog restarts', (transport) => {
  it('throws while rsyslog is down and delivers on a new connection once it is back', async () => {
    const sink = syslogSink(transport, `restart-${transport}`);
    const start = (await rsyslog.received(transport)).length;
    await sink.deliver([exchangeEvent(10)]);
    await rsyslog.waitFor(transport, start + 1);

    await rsyslog.stop();
    try {
      await expect(sink.deliver([exchangeEvent(11)])).rejects.toThrow(SinkDeliveryError);
      await expect(sink.deliver([exchangeEvent(11)])).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await rsyslog.restart(); // also when this fails: the tests after it need rsyslog
    }
    await sink.deliver([exchangeEvent(11), exchangeEvent(12)]);
    const got = (await rsyslog.waitFor(transport, start + 3)).slice(start);
    expect(got.map((r) => (JSON.parse(r.msg) as AuditEvent).id)).toEqual(['evt-0010', 'evt-0011', 'evt-0012']);
  });
});

describe('syslog over udp with a backlog', () => {
  const tempDir = useTempDir('vigil-udp-backlog');

  it('delivers it much faster than one batch per refusal wait', async () => {
    // What was slow: each batch waited 50 ms for a refusal before the next was sent, so a backlog of 120 batches took
    // at least 6 s however healthy the collector. Now the next batches go out while earlier ones wait.
    const store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db') });
    const reasons = Array.from({ length: 6000 }, (_, i) => `backlog ${i}`);
    await store.append({
      records: reasons.map((reason) => ({
        kind: 'access.denied',
        at: Date.now(),
        data: { connection: 'anthropic', status: 403, reason, path: '/v1/messages', clientAddress: '127.0.0.1' },
      })),
    });
    const batchSize = 50;
    const sink = syslogSink('udp', 'udp-backlog');
    const outbox = new Outbox(store, [sink], { gateway: 'test', log: pino({ level: 'silent' }), batchSize });
    const before = (await rsyslog.received('udp')).length;
    try {
      const started = performance.now();
      await outbox.runOnce();
      const elapsed = performance.now() - started;
      expect(outbox.statuses()[0]).toMatchObject({ lag: 0, failures: 0, delivered: reasons.length });

      const got = (await rsyslog.waitFor('udp', before + reasons.length, 15_000)).slice(before);
      const received = got.map((r) => (JSON.parse(r.msg) as AuditEvent).attributes.reason);
      expect(new Set(received)).toEqual(new Set(reasons));
      // The old floor, waits alone, is 6 s; half of it leaves room for a busy machine (this takes about 1 s).
      const oldFloor = (reasons.length / batchSize) * UDP_REFUSAL_WAIT_MS;
      expect(elapsed).toBeLessThan(oldFloor / 2);
    } finally {
      await outbox.close(0);
      await store.close();
    }
  }, 30_000);
});

describe('syslog over tls certificate checks', () => {
  it("refuses rsyslog's self-signed certificate when it is not the configured CA", async () => {
    const config = sinkConfigSchema.parse({
      type: 'syslog',
      name: 'no-ca',
      transport: 'tls',
      host: '127.0.0.1',
      port: rsyslog.ports.tls,
    });
    const sink = createSink(config);
    sinks.push(sink);
    const before = (await rsyslog.received('tls')).length;
    await expect(sink.deliver([exchangeEvent(20)])).rejects.toThrow(/self-signed certificate/);
    expect((await rsyslog.received('tls')).length).toBe(before);
  });
});
