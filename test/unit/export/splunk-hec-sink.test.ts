import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/export/audit-event.js';
import { createSink, type Sink } from '../../../src/export/sink.js';
import { SinkDeliveryError } from '../../../src/export/sink-delivery-error.js';
import { sinkConfigSchema, type SinkConfigInput } from '../../../src/export/sinks-config.js';
import { closedPort, startRecordingHttpServer, type RecordingHttpServer } from '../../support/recording-http-server.js';
import { deniedEvent, exchangeEvent } from '../../support/sample-audit-events.js';
import { batchOverMaxBodySize, expectCutAtMaxBodySize } from '../../support/sink-body-size.js';

const SUCCESS = JSON.stringify({ text: 'Success', code: 0 });

let server: RecordingHttpServer;
let dir: string;
let tokenFile: string;
const sinks: Sink[] = [];

beforeAll(async () => {
  server = await startRecordingHttpServer();
  dir = await mkdtemp(path.join(tmpdir(), 'vigil-hec-'));
  tokenFile = path.join(dir, 'hec-token');
  await writeFile(tokenFile, '11111111-2222-3333-4444-555555555555\n');
});
afterEach(async () => {
  await Promise.all(sinks.splice(0).map((s) => s.close()));
  server.requests.length = 0;
});
afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

function hecSink(overrides: Partial<Extract<SinkConfigInput, { type: 'splunk_hec' }>> = {}): Sink {
  const config = sinkConfigSchema.parse({
    type: 'splunk_hec',
    name: 'splunk',
    url: server.url,
    token: { file: tokenFile },
    ...overrides,
  });
  const sink = createSink(config, { hostname: 'gw-host-1' });
  sinks.push(sink);
  return sink;
}

/** HEC's batch body: JSON objects one after another. */
function hecObjects(body: string): Array<Record<string, unknown>> {
  return body.split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('splunk_hec sink', () => {
  it('POSTs the batch as concatenated HEC event objects with the Splunk token', async () => {
    server.reply = () => ({ status: 200, body: SUCCESS });
    const batch = [exchangeEvent(1, { content: { request: 'x' } }), deniedEvent(2)];
    await hecSink({ index: 'security' }).deliver(batch);

    expect(server.requests).toHaveLength(1);
    const req = server.requests[0]!;
    expect([req.method, req.url]).toEqual(['POST', '/services/collector/event']);
    expect(req.headers.authorization).toBe('Splunk 11111111-2222-3333-4444-555555555555');
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.headers['x-splunk-request-channel']).toMatch(/^[0-9a-f-]{36}$/);
    const { content: _c, ...first } = batch[0]!;
    expect(hecObjects(req.body)).toEqual([
      {
        time: 1748779201.123,
        host: 'gw-host-1',
        source: 'vigil',
        sourcetype: 'vigil:audit',
        index: 'security',
        event: first,
      },
      {
        time: 1748779260,
        host: 'gw-host-1',
        source: 'vigil',
        sourcetype: 'vigil:audit',
        index: 'security',
        event: batch[1],
      },
    ]);
  });

  it('keeps a path prefix of the base URL and leaves index out when not configured', async () => {
    server.reply = () => ({ status: 200, body: SUCCESS });
    await hecSink({ url: `${server.url}/splunk/`, source: 'gw', sourcetype: 'custom' }).deliver([deniedEvent()]);
    expect(server.requests[0]!.url).toBe('/splunk/services/collector/event');
    const [obj] = hecObjects(server.requests[0]!.body);
    expect([obj!.source, obj!.sourcetype, 'index' in obj!]).toEqual(['gw', 'custom', false]);
  });

  it('cuts a batch into POSTs of at most max_body_size bytes, and sends an event too large alone without content', async () => {
    // What went wrong: only the outbox's 64 MiB content budget bounded a HEC POST, whatever the collector accepts.
    server.reply = () => ({ status: 200, body: SUCCESS });
    const batch = batchOverMaxBodySize();
    await hecSink({ include_content: true, max_body_size: 16 * 1024 }).deliver(batch);

    const bodies = server.requests.map((r) => r.body);
    for (const b of bodies) expect(Buffer.byteLength(b)).toBeLessThanOrEqual(16 * 1024);
    const posted = bodies.map((b) => hecObjects(b).map((o) => o.event as AuditEvent));
    expectCutAtMaxBodySize(posted, batch, 16 * 1024);
  });

  it('throws with HEC text and code when HEC refuses the token', async () => {
    server.reply = () => ({ status: 403, body: JSON.stringify({ text: 'Invalid token', code: 4 }) });
    const err = await hecSink()
      .deliver([deniedEvent()])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SinkDeliveryError);
    expect((err as Error).message).toMatch(/answered 403 \(HEC code 4: Invalid token\)/);
  });

  it('throws on a 200 that is not a HEC success (a proxy page, or a non-zero code)', async () => {
    server.reply = () => ({ status: 200, body: '<html>login</html>', contentType: 'text/html' });
    await expect(hecSink().deliver([deniedEvent()])).rejects.toThrow(/not a HEC answer/);
    server.reply = () => ({ status: 200, body: JSON.stringify({ text: 'Data channel is missing', code: 10 }) });
    await expect(hecSink().deliver([deniedEvent()])).rejects.toThrow(/HEC code 10/);
  });

  it('throws on a timeout and on a refused connection', async () => {
    server.reply = () => ({ status: 200, hang: true });
    await expect(hecSink({ timeout: 150 }).deliver([deniedEvent()])).rejects.toThrow(/timed out/);
    const port = await closedPort();
    await expect(hecSink({ url: `http://127.0.0.1:${port}` }).deliver([deniedEvent()])).rejects.toThrow(/ECONNREFUSED/);
  });
});
