/**
 * What went wrong: a batch with very large recorded content (past V8's string limit) threw RangeError while a sink
 * built its request body. That was not a refused delivery, so the outbox took the receiver for down and retried the
 * same batch forever, instead of sending its events one at a time; every later event waited behind it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
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
});
afterEach(async () => {
  await Promise.all(sinks.splice(0).map((s) => s.close()));
  server.requests.length = 0;
});
afterAll(async () => {
  await server.close();
});

const configs = {
  splunk_hec: () => ({ type: 'splunk_hec', name: 'splunk', url: server.url, token: { env: 'VIGIL_TEST_HEC_TOKEN' } }),
  otlp: () => ({ type: 'otlp', name: 'otel', endpoint: server.url }),
};

describe.each(Object.keys(configs) as Array<keyof typeof configs>)('%s sink', (type) => {
  it('refuses, rather than retries, a batch whose body cannot be built', async () => {
    const sink = createSink(sinkConfigSchema.parse({ ...configs[type](), include_content: true }));
    sinks.push(sink);
    const batch = [exchangeEvent(1, { content: { request: unserialisable } }), deniedEvent(2)];
    const err = await sink.deliver(batch).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SinkDeliveryError);
    expect(err).toMatchObject({ rejected: true });
    expect((err as Error).message).toMatch(/request body could not be built: Invalid string length/);
    expect(server.requests).toHaveLength(0);
  });
});
