/**
 * The outbox against a receiver that refuses some content: a SIEM that answers 400 to one event used to stall its
 * whole feed forever, every later event waiting behind the one it would never take.
 */
import path from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/export/audit-event.js';
import { MAX_REJECTIONS, Outbox } from '../../../src/export/outbox.js';
import { createSink } from '../../../src/export/sink.js';
import { sinkConfigSchema } from '../../../src/export/sinks-config.js';
import { SqliteAuditStore } from '../../../src/store/sqlite/sqlite-audit-store.js';
import { startRecordingHttpServer, type RecordingHttpServer } from '../../support/recording-http-server.js';
import { useTempDir } from '../../support/temp-dir.js';

let server: RecordingHttpServer;
beforeAll(async () => {
  server = await startRecordingHttpServer();
});
afterEach(() => {
  server.requests.length = 0;
  server.reply = () => ({ status: 200 });
});
afterAll(async () => {
  await server.close();
});

/** Accepted events, in the order the receiver took them. */
function acceptedEvents(): AuditEvent[] {
  return server.requests
    .filter((_, i) => acceptedIndexes.has(i))
    .flatMap((r) => (JSON.parse(r.body) as { events: AuditEvent[] }).events);
}
const acceptedIndexes = new Set<number>();

/** The receiver refuses any batch holding an event that `refuse` picks (400, as a SIEM rejecting a field would). */
function receiverRefusing(refuse: (e: AuditEvent) => boolean): void {
  acceptedIndexes.clear();
  server.reply = (req) => {
    const events = (JSON.parse(req.body) as { events: AuditEvent[] }).events;
    if (events.some(refuse)) return { status: 400, body: '{"error":"field too long"}' };
    acceptedIndexes.add(server.requests.length - 1);
    return { status: 200 };
  };
}

const denied = (reason: string) => ({
  kind: 'access.denied',
  at: Date.now(),
  data: { connection: 'anthropic', status: 403, reason, path: '/v1/messages', clientAddress: '127.0.0.1' },
});

describe('outbox and a receiver that refuses content', () => {
  const tempDir = useTempDir('vigil-outbox');

  async function setup() {
    const store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db') });
    const sink = createSink(sinkConfigSchema.parse({ type: 'http', name: 'webhook', url: `${server.url}/events` }));
    const outbox = new Outbox(store, [sink], { gateway: 'test', log: pino({ level: 'silent' }) });
    // Each pass as if the backoff had passed.
    let clock = Date.now();
    const pass = () => outbox.runOnce((clock += 3_600_000));
    return { store, outbox, pass };
  }

  it('delivers around an event it refuses, and sets that one aside on the ledger after repeated refusals', async () => {
    const { store, outbox, pass } = await setup();
    await store.append({ records: ['first', 'poison', 'second', 'third'].map(denied) });
    receiverRefusing((e) => e.attributes.reason === 'poison');

    for (let i = 0; i < MAX_REJECTIONS; i++) await pass();
    // Everything before the refused event went through at once; it was retried, then set aside once the next
    // event was accepted; what followed went through.
    expect(acceptedEvents().map((e) => e.attributes.reason)).toEqual(['first', 'second', 'third']);
    const [undeliverable] = await store.recordsOfKinds(['siem.undeliverable'], 0, 10);
    expect(JSON.parse(undeliverable!.data)).toMatchObject({
      sink: 'webhook',
      eventType: 'access.denied',
      attempts: MAX_REJECTIONS,
      error: expect.stringContaining('answered 400'),
    });
    expect(outbox.statuses()[0]).toMatchObject({ undeliverable: 1, lag: 0 });

    // The record is an audit event too, and the receiver takes it.
    await pass();
    expect(acceptedEvents().at(-1)).toMatchObject({
      type: 'siem.undeliverable',
      severity: 'alert',
      attributes: { sink: 'webhook', event_type: 'access.denied' },
    });
    await outbox.close();
    await store.close();
  });

  it('waits for a receiver that refuses everything (misconfigured), setting nothing aside', async () => {
    const { store, outbox, pass } = await setup();
    await store.append({ records: ['one', 'two', 'three'].map(denied) });
    receiverRefusing(() => true);

    for (let i = 0; i < MAX_REJECTIONS * 3; i++) await pass();
    expect(acceptedEvents()).toEqual([]);
    expect(await store.recordsOfKinds(['siem.undeliverable'], 0, 10)).toEqual([]);
    // Lag counts ledger records behind the cursor (the chain's opening record too).
    expect(outbox.statuses()[0]).toMatchObject({ undeliverable: 0, lag: 4 });

    // Fixed: everything arrives, in order.
    receiverRefusing(() => false);
    await pass();
    expect(acceptedEvents().map((e) => e.attributes.reason)).toEqual(['one', 'two', 'three']);
    await outbox.close();
    await store.close();
  });

  it('never sets aside events for a receiver that is down (503)', async () => {
    const { store, outbox, pass } = await setup();
    await store.append({ records: ['one', 'two'].map(denied) });
    server.reply = () => ({ status: 503 });
    for (let i = 0; i < MAX_REJECTIONS * 2; i++) await pass();
    expect(await store.recordsOfKinds(['siem.undeliverable'], 0, 10)).toEqual([]);
    expect(outbox.statuses()[0]).toMatchObject({ undeliverable: 0, lag: 3 });
    await outbox.close();
    await store.close();
  });
});
