/**
 * What went wrong: a batch with very large recorded content (past V8's string limit) threw RangeError while a sink
 * built its request body. That was not a refused delivery, so the outbox took the receiver for down and retried the
 * same batch forever, instead of sending its events one at a time; every later event waited behind it. The HEC and
 * OTLP sinks now build their bodies an event at a time, as the http sink does: an event whose content cannot be
 * serialised goes without it, and one that cannot be serialised at all is a refused delivery.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/export/audit-event.js';
import { createSink, type Sink } from '../../../src/export/sink.js';
import { SinkDeliveryError } from '../../../src/export/sink-delivery-error.js';
import { sinkConfigSchema } from '../../../src/export/sinks-config.js';
import { startRecordingHttpServer, type RecordingHttpServer } from '../../support/recording-http-server.js';
import { deniedEvent, exchangeEvent, unserialisable } from '../../support/sample-audit-events.js';

let server: RecordingHttpServer;
const sinks: Sink[] = [];

beforeAll(async () => {
  server = await startRecordingHttpServer();
  process.env.VIGIL_TEST_HEC_TOKEN = '11111111-2222-3333-4444-555555555555';
  // A HEC success is also a 2xx an OTLP collector could send.
  server.reply = () => ({ status: 200, body: JSON.stringify({ text: 'Success', code: 0 }) });
});
afterEach(async () => {
  await Promise.all(sinks.splice(0).map((s) => s.close()));
  server.requests.length = 0;
});
afterAll(async () => {
  await server.close();
});

/** Each sink's config, and the events of one body as the receiver reads them back. */
const kinds = {
  splunk_hec: {
    config: () => ({ type: 'splunk_hec', name: 'splunk', url: server.url, token: { env: 'VIGIL_TEST_HEC_TOKEN' } }),
    events: (body: string): AuditEvent[] =>
      body.split('\n').map((line) => (JSON.parse(line) as { event: AuditEvent }).event),
  },
  otlp: {
    config: () => ({ type: 'otlp', name: 'otel', endpoint: server.url }),
    events: (body: string): AuditEvent[] =>
      (
        JSON.parse(body) as {
          resourceLogs: Array<{ scopeLogs: Array<{ logRecords: Array<{ body: { stringValue: string } }> }> }>;
        }
      ).resourceLogs[0]!.scopeLogs[0]!.logRecords.map((r) => JSON.parse(r.body.stringValue) as AuditEvent),
  },
};

describe.each(Object.keys(kinds) as Array<keyof typeof kinds>)('%s sink', (type) => {
  const sink = (): Sink => {
    const s = createSink(sinkConfigSchema.parse({ ...kinds[type].config(), include_content: true }));
    sinks.push(s);
    return s;
  };

  it('sends an event whose content cannot be serialised without it, and the rest of the batch with theirs', async () => {
    const batch = [
      exchangeEvent(1, { content: { request: unserialisable } }),
      exchangeEvent(2, { content: { request: { text: 'fine' } } }),
    ];
    await sink().deliver(batch);
    expect(server.requests).toHaveLength(1);
    const events = kinds[type].events(server.requests[0]!.body);
    expect(events[0]!.content).toEqual({
      omitted: 'the event with its content could not be serialised: Invalid string length',
    });
    expect(events[1]).toEqual(batch[1]);
  });

  it('refuses, rather than retries, an event that cannot be serialised even without content', async () => {
    const broken = exchangeEvent(1, { attributes: unserialisable as AuditEvent['attributes'] });
    const err = await sink()
      .deliver([broken, deniedEvent(2)])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SinkDeliveryError);
    expect(err).toMatchObject({ rejected: true });
    expect((err as Error).message).toMatch(/event evt-0001 could not be serialised: Invalid string length/);
    expect(server.requests).toHaveLength(0);
  });
});
