import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/export/audit-event.js';
import { OTLP_SCOPE_NAME } from '../../../src/export/otlp-sink.js';
import { Metrics } from '../../../src/observability/metrics.js';
import { createSink, type Sink } from '../../../src/export/sink.js';
import { SinkDeliveryError } from '../../../src/export/sink-delivery-error.js';
import { sinkConfigSchema, type SinkConfigInput } from '../../../src/export/sinks-config.js';
import { closedPort, startRecordingHttpServer, type RecordingHttpServer } from '../../support/recording-http-server.js';
import { deniedEvent, exchangeEvent, verifyFailedEvent } from '../../support/sample-audit-events.js';
import { batchOverMaxBodySize, expectCutAtMaxBodySize } from '../../support/sink-body-size.js';

interface KeyValue {
  key: string;
  value: Record<string, unknown>;
}
interface LogRecord {
  timeUnixNano: string;
  observedTimeUnixNano: string;
  severityNumber: number;
  severityText: string;
  eventName: string;
  body: { stringValue: string };
  attributes: KeyValue[];
}
interface ExportLogsRequest {
  resourceLogs: Array<{
    resource: { attributes: KeyValue[] };
    scopeLogs: Array<{ scope: { name: string }; logRecords: LogRecord[] }>;
  }>;
}

let server: RecordingHttpServer;
const sinks: Sink[] = [];

beforeAll(async () => {
  server = await startRecordingHttpServer();
  process.env.VIGIL_TEST_OTLP_KEY = 'Api-Token xyz';
});
afterEach(async () => {
  await Promise.all(sinks.splice(0).map((s) => s.close()));
  server.requests.length = 0;
  server.reply = () => ({ status: 200 });
});
afterAll(async () => {
  await server.close();
});

function otlpSink(overrides: Partial<Extract<SinkConfigInput, { type: 'otlp' }>> = {}): Sink {
  const sink = createSink(sinkConfigSchema.parse({ type: 'otlp', name: 'otel', endpoint: server.url, ...overrides }), {
    hostname: 'gw-host-1',
  });
  sinks.push(sink);
  return sink;
}

/** Attributes as a plain map, values still in their OTLP/JSON form. */
function attrs(list: KeyValue[]): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const { key, value } of list) {
    expect(out[key], `duplicate attribute ${key}`).toBeUndefined();
    out[key] = value;
  }
  return out;
}

describe('otlp sink', () => {
  it('POSTs one OTLP/JSON ExportLogsServiceRequest per batch to /v1/logs', async () => {
    await otlpSink({ headers: { authorization: { env: 'VIGIL_TEST_OTLP_KEY' } } }).deliver([
      exchangeEvent(1),
      deniedEvent(2),
      verifyFailedEvent(3),
    ]);
    expect(server.requests).toHaveLength(1);
    const req = server.requests[0]!;
    expect([req.method, req.url, req.headers['content-type']]).toEqual(['POST', '/v1/logs', 'application/json']);
    expect(req.headers.authorization).toBe('Api-Token xyz');

    const body = JSON.parse(req.body) as ExportLogsRequest;
    expect(body.resourceLogs).toHaveLength(1);
    const [resourceLogs] = body.resourceLogs;
    expect(attrs(resourceLogs!.resource.attributes)).toEqual({
      'service.name': { stringValue: 'vigil' },
      'host.name': { stringValue: 'gw-host-1' },
    });
    expect(resourceLogs!.scopeLogs).toHaveLength(1);
    expect(resourceLogs!.scopeLogs[0]!.scope).toEqual({ name: OTLP_SCOPE_NAME });
    const records = resourceLogs!.scopeLogs[0]!.logRecords;
    expect(records.map((r) => [r.eventName, r.severityNumber, r.severityText])).toEqual([
      ['exchange.completed', 9, 'info'],
      ['access.denied', 13, 'warning'],
      ['verify.failed', 19, 'alert'],
    ]);
    // 64-bit integers are decimal strings in OTLP/JSON; sub-millisecond digits of the event time are kept.
    expect(records[0]!.timeUnixNano).toBe('1748779201123456000');
    expect(records[2]!.timeUnixNano).toBe('1748779320000000000');
    expect(records[0]!.observedTimeUnixNano).toMatch(/^\d{19}$/);
    expect(JSON.parse(records[1]!.body.stringValue)).toEqual(deniedEvent(2));
  });

  it('puts the GenAI semantic conventions on exchange events, and every fact under vigil.*', async () => {
    await otlpSink().deliver([exchangeEvent(1)]);
    const record = (JSON.parse(server.requests[0]!.body) as ExportLogsRequest).resourceLogs[0]!.scopeLogs[0]!
      .logRecords[0]!;
    expect(attrs(record.attributes)).toEqual({
      'event.name': { stringValue: 'exchange.completed' },
      'vigil.event.id': { stringValue: 'evt-0001' },
      'vigil.gateway': { stringValue: 'gw-1/chain-a' },
      'vigil.actor.method': { stringValue: 'oidc' },
      'vigil.actor.subject': { stringValue: 'alice@example.com' },
      'vigil.actor.issuer': { stringValue: 'https://idp.example.com' },
      'vigil.actor.groups': { arrayValue: { values: [{ stringValue: 'eng' }, { stringValue: 'sec' }] } },
      'vigil.connection': { stringValue: 'anthropic' },
      'vigil.session': { stringValue: 'sess-42' },
      'vigil.exchange': { stringValue: 'ex-1' },
      'gen_ai.provider.name': { stringValue: 'anthropic' },
      'gen_ai.operation.name': { stringValue: 'chat' },
      'gen_ai.request.model': { stringValue: 'claude-sonnet-4-5' },
      'gen_ai.conversation.id': { stringValue: 'sess-42' },
      // Anthropic's input_tokens excludes cached tokens; the convention's count includes them: 12 + 1000 + 200.
      'gen_ai.usage.input_tokens': { intValue: '1212' },
      'gen_ai.usage.output_tokens': { intValue: '340' },
      'gen_ai.usage.cache_read.input_tokens': { intValue: '1000' },
      'gen_ai.usage.cache_creation.input_tokens': { intValue: '200' },
      'gen_ai.response.finish_reasons': { arrayValue: { values: [{ stringValue: 'end_turn' }] } },
      'vigil.model': { stringValue: 'claude-sonnet-4-5' },
      'vigil.input_tokens': { intValue: '12' },
      'vigil.output_tokens': { intValue: '340' },
      'vigil.cache_read_input_tokens': { intValue: '1000' },
      'vigil.cache_creation_input_tokens': { intValue: '200' },
      'vigil.outcome': { stringValue: 'completed' },
      'vigil.status': { intValue: '200' },
      'vigil.latency_ms': { doubleValue: 1532.5 },
      'vigil.first_byte_ms': { intValue: '210' },
      'vigil.stop_reason': { stringValue: 'end_turn' },
      'vigil.masking': {
        kvlistValue: {
          values: [
            { key: 'email', value: { intValue: '2' } },
            { key: 'aws_access_key_id', value: { intValue: '1' } },
          ],
        },
      },
    });
  });

  it('leaves gen_ai.* off other events and null attributes out', async () => {
    await otlpSink().deliver([deniedEvent(2)]);
    const record = (JSON.parse(server.requests[0]!.body) as ExportLogsRequest).resourceLogs[0]!.scopeLogs[0]!
      .logRecords[0]!;
    const a = attrs(record.attributes);
    expect(Object.keys(a).filter((k) => k.startsWith('gen_ai.'))).toEqual([]);
    expect(a['vigil.retry']).toEqual({ boolValue: false });
    expect(a['vigil.reason']).toEqual({ stringValue: 'not in allow list: “prod”' });
    expect('vigil.note' in a).toBe(false);
  });

  it('cuts a batch into requests of at most max_body_size bytes, each a whole ExportLogsServiceRequest', async () => {
    // What went wrong: only the outbox's 64 MiB content budget bounded a request; a collector takes 20 MiB by default.
    const batch = batchOverMaxBodySize();
    await otlpSink({ include_content: true, max_body_size: 24 * 1024 }).deliver(batch);

    const bodies = server.requests.map((r) => JSON.parse(r.body) as ExportLogsRequest);
    for (const r of server.requests) expect(Buffer.byteLength(r.body)).toBeLessThanOrEqual(24 * 1024);
    for (const b of bodies) {
      expect(attrs(b.resourceLogs[0]!.resource.attributes)['host.name']).toEqual({ stringValue: 'gw-host-1' });
      expect(b.resourceLogs[0]!.scopeLogs[0]!.scope).toEqual({ name: OTLP_SCOPE_NAME });
    }
    const posted = bodies.map((b) =>
      b.resourceLogs[0]!.scopeLogs[0]!.logRecords.map((r) => JSON.parse(r.body.stringValue) as AuditEvent),
    );
    // Records of 9 KB here: two fit in 24 KB, a third would not.
    expectCutAtMaxBodySize(posted, batch, 24 * 1024);
  });

  it('throws on a non-2xx answer, a timeout and a refused connection', async () => {
    server.reply = () => ({ status: 503, body: '{"code":14,"message":"unavailable"}' });
    const err = await otlpSink()
      .deliver([deniedEvent()])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SinkDeliveryError);
    expect((err as Error).message).toMatch(/\/v1\/logs answered 503/);

    server.reply = () => ({ status: 200, hang: true });
    await expect(otlpSink({ timeout: 150 }).deliver([deniedEvent()])).rejects.toThrow(/timed out/);

    const port = await closedPort();
    await expect(otlpSink({ endpoint: `http://127.0.0.1:${port}` }).deliver([deniedEvent()])).rejects.toThrow(
      /ECONNREFUSED/,
    );
  });

  it('accepts a partial success without retrying, and reports it on the diagnostics channel', async () => {
    server.reply = () => ({
      status: 200,
      body: JSON.stringify({ partialSuccess: { rejectedLogRecords: '1', errorMessage: 'attribute too long' } }),
    });
    const seen: unknown[] = [];
    const listener = (message: unknown): void => void seen.push(message);
    subscribe('vigil:export:otlp-rejected', listener);
    try {
      await otlpSink().deliver([deniedEvent()]);
    } finally {
      unsubscribe('vigil:export:otlp-rejected', listener);
    }
    expect(seen).toEqual([{ sink: 'otel', rejected: 1, message: 'attribute too long' }]);
  });

  it('counts records a collector rejected in /metrics, so the drop is visible', async () => {
    server.reply = () => ({
      status: 200,
      body: JSON.stringify({ partialSuccess: { rejectedLogRecords: '2', errorMessage: 'attribute too long' } }),
    });
    const metrics = new Metrics({
      recordingFailures: () => 0,
      recordingBacklog: () => 0,
      storeRefusingWrites: () => false,
      sinks: () => [],
    });
    try {
      await otlpSink().deliver([deniedEvent(), deniedEvent(2)]);
      expect(await metrics.text()).toMatch(/vigil_sink_rejected_records_total\{sink="otel"\} 2/);
    } finally {
      metrics.close();
    }
  });
});
