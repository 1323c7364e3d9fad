/**
 * The outbox against a receiver that refuses some content: a SIEM that answers 400 to one event used to stall its
 * whole feed forever, every later event waiting behind the one it would never take.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/export/audit-event.js';
import { MAX_REJECTIONS, Outbox } from '../../../src/export/outbox.js';
import { createSink, type Sink } from '../../../src/export/sink.js';
import { sinkConfigSchema } from '../../../src/export/sinks-config.js';
import { SqliteAuditStore } from '../../../src/store/sqlite/sqlite-audit-store.js';
import {
  startRecordingHttpServer,
  type RecordingHttpServer,
  postedEvents,
} from '../../support/recording-http-server.js';
import { useTempDir } from '../../support/temp-dir.js';
import { until } from '../../support/until.js';

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
  return postedEvents(server.requests.filter((_, i) => acceptedIndexes.has(i)));
}
const acceptedIndexes = new Set<number>();

/**
 * The receiver refuses any batch holding an event that `refuse` picks: with 400, as a SIEM rejecting a field would,
 * unless `answer` says otherwise (503: down for a moment).
 */
function receiverRefusing(
  refuse: (e: AuditEvent) => boolean,
  answer = { status: 400, body: '{"error":"field too long"}' },
): void {
  acceptedIndexes.clear();
  server.reply = (req) => {
    const events = (JSON.parse(req.body) as { events: AuditEvent[] }).events;
    if (events.some(refuse)) return answer;
    acceptedIndexes.add(server.requests.length - 1);
    return { status: 200 };
  };
}

/**
 * The sink, handed up to `inFlightBatches` batches before the first is delivered (as the outbox does for syslog over
 * UDP) and sending them in order; `inFlight()` says how many it holds now, `most` the most it held at once.
 */
function pipelined(sink: Sink, inFlightBatches: number): Sink & { most: number; inFlight: () => Sink[] } {
  let queue: Promise<unknown> = Promise.resolve();
  let holding = 0;
  const wrapper = {
    name: sink.name,
    includeContent: sink.includeContent === true,
    inFlightBatches,
    most: 0,
    inFlight: () => Array.from({ length: holding }, () => sink),
    deliver(events: Parameters<Sink['deliver']>[0]): Promise<void> {
      wrapper.most = Math.max(wrapper.most, ++holding);
      const run = queue.then(() => sink.deliver(events)).finally(() => holding--);
      queue = run.catch(() => undefined);
      return run;
    },
    close: () => sink.close(),
  };
  return wrapper;
}

/**
 * An outbox whose http sink at `/events` is handed three batches before the first is delivered, of two records each:
 * [chain opening, 1st], [2nd, 3rd], [4th, 5th], …
 */
function pipelinedOutbox(store: SqliteAuditStore): { sink: ReturnType<typeof pipelined>; outbox: Outbox } {
  const sink = pipelined(
    createSink(sinkConfigSchema.parse({ type: 'http', name: 'webhook', url: `${server.url}/events` })),
    3,
  );
  return { sink, outbox: new Outbox(store, [sink], { gateway: 'test', log: pino({ level: 'silent' }), batchSize: 2 }) };
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

  it('with several batches in flight, sends again those after a refused one and sets the refused event aside', async () => {
    const store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db') });
    await store.append({ records: ['first', 'poison', 'second', 'third', 'fourth'].map(denied) });
    receiverRefusing((e) => e.attributes.reason === 'poison');
    // Batches [chain opening, first], [poison, second], [third, fourth], all handed over at once.
    const { sink, outbox } = pipelinedOutbox(store);
    let clock = Date.now();
    for (let i = 0; i < MAX_REJECTIONS; i++) await outbox.runOnce((clock += 3_600_000));

    expect(sink.most).toBe(3);
    // The batch after the refused one reached the receiver, but the cursor stayed before it: it came again, and last
    // in cursor order, after the refused event was set aside and the one next to it delivered alone.
    const reasons = acceptedEvents().map((e) => e.attributes.reason);
    expect(new Set(reasons)).toEqual(new Set(['first', 'second', 'third', 'fourth']));
    expect(reasons.slice(-3)).toEqual(['second', 'third', 'fourth']);
    const [undeliverable] = await store.recordsOfKinds(['siem.undeliverable'], 0, 10);
    expect(JSON.parse(undeliverable!.data)).toMatchObject({ sink: 'webhook', attempts: MAX_REJECTIONS });
    expect(outbox.statuses()[0]).toMatchObject({ undeliverable: 1, lag: 0 });
    await outbox.close();
    await store.close();
  });

  it('with several batches in flight, sends a batch that failed again at once when a later one was delivered', async () => {
    // Went wrong: one batch in the middle of the pipeline failed (a collector restarting, a receiver overloaded for a
    // moment) while the ones after it were delivered; the pass ended on the failure and everything from that batch on
    // waited for the back-off (a second at first, up to a minute), though the receiver had just taken a later batch.
    const store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db') });
    await store.append({ records: ['first', 'unlucky', 'second', 'third', 'fourth', 'fifth'].map(denied) });
    let failed = false;
    const once = (e: AuditEvent): boolean => !failed && e.attributes.reason === 'unlucky' && (failed = true);
    receiverRefusing(once, { status: 503, body: 'restarting' });
    // Batches [chain opening, first], [unlucky, second], [third, fourth], … three at a time.
    const { outbox } = pipelinedOutbox(store);
    await outbox.runOnce();

    // All of it in the one pass: the failed batch and the ones after it were sent again, in order, right away.
    const reasons = acceptedEvents().map((e) => e.attributes.reason);
    expect(new Set(reasons)).toEqual(new Set(['first', 'unlucky', 'second', 'third', 'fourth', 'fifth']));
    expect(reasons.slice(reasons.indexOf('unlucky'))).toEqual(['unlucky', 'second', 'third', 'fourth', 'fifth']);
    expect(outbox.statuses()[0]).toMatchObject({ lag: 0, failures: 1, lastError: null });
    await outbox.close();
    await store.close();
  });

  it('backs off from a batch that fails again although later ones are delivered', async () => {
    // The prompt resend above is once per position: a receiver that takes every batch but one is not hammered.
    const store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db') });
    await store.append({ records: ['first', 'stuck', 'second', 'third', 'fourth', 'fifth'].map(denied) });
    let refusals = 0;
    receiverRefusing((e) => e.attributes.reason === 'stuck' && ++refusals > 0, { status: 503, body: 'busy' });
    const { outbox } = pipelinedOutbox(store);
    await outbox.runOnce();

    expect(refusals).toBe(2);
    // The cursor stays before the batch that failed: everything from it on (opening record and `first` delivered).
    expect(outbox.statuses()[0]).toMatchObject({ lag: 5, failures: 2, lastError: expect.stringContaining('503') });
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

describe('outbox and sinks that take content', () => {
  const tempDir = useTempDir('vigil-outbox-content');

  /** One exchange as the recorder writes it: the request body in a blob, the response message assembled. */
  async function recordExchange(store: SqliteAuditStore, id: string, prompt: string): Promise<void> {
    const body = Buffer.from(
      JSON.stringify({ model: 'claude-haiku-4-5', messages: [{ role: 'user', content: prompt }] }),
    );
    const hash = createHash('sha256').update(body).digest('hex');
    const at = Date.now();
    await store.append({
      blobs: [{ hash, data: body }],
      records: [
        {
          kind: 'exchange.request',
          exchangeId: id,
          sessionId: 'ses_1',
          at,
          data: {
            connection: 'anthropic',
            caller: { method: 'anonymous', subject: 'anonymous' },
            client: { address: null, userAgent: null },
            session: { id: 'ses_1', source: 'header' },
            request: {
              method: 'POST',
              path: '/v1/messages',
              query: '',
              headers: {},
              body: { size: body.length, parts: [{ $blob: hash }] },
            },
            model: 'claude-haiku-4-5',
            stream: true,
            startedAt: at,
          },
        },
        {
          kind: 'exchange.response',
          exchangeId: id,
          sessionId: 'ses_1',
          at: at + 1,
          data: {
            status: 200,
            headers: {},
            body: null,
            message: { role: 'assistant', content: [{ type: 'text', text: `re: ${prompt.slice(0, 20)}` }] },
            usage: null,
            model: 'claude-haiku-4-5',
            stopReason: 'end_turn',
            outcome: 'ok',
            error: null,
            eventCount: 3,
            timing: { startedAt: at, firstByteMs: 1, endedAt: at + 1, durationMs: 1 },
          },
        },
      ],
    });
  }

  /** An outbox with one HTTP sink that takes content, at the test receiver's `/dlp`. */
  const contentOutbox = (store: SqliteAuditStore, options: { contentBudgetBytes?: number } = {}): Outbox =>
    new Outbox(
      store,
      [
        createSink(
          sinkConfigSchema.parse({ type: 'http', name: 'dlp', url: `${server.url}/dlp`, include_content: true }),
        ),
      ],
      { gateway: 'test', log: pino({ level: 'silent' }), ...options },
    );

  const completed = (): AuditEvent[] =>
    postedEvents(
      server.requests.filter((r) => r.url === '/dlp' && acceptedIndexes.has(server.requests.indexOf(r))),
    ).filter((e) => e.type === 'exchange.completed');

  it('ends a content batch once its bodies pass the budget, and delivers the rest after it, in order', async () => {
    // Went wrong: a content sink read the bodies of a whole 200-record batch at once (gigabytes of PDFs).
    const store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db') });
    for (const id of ['ex_1', 'ex_2', 'ex_3']) await recordExchange(store, id, `${id}: ${'y'.repeat(2_000)}`);
    acceptedIndexes.clear();
    server.reply = () => {
      acceptedIndexes.add(server.requests.length - 1);
      return { status: 200 };
    };
    const before = server.requests.filter((r) => r.url === '/dlp').length;
    const outbox = contentOutbox(store, { contentBudgetBytes: 1_000 });
    await outbox.runOnce();
    const posts = server.requests.filter((r) => r.url === '/dlp').slice(before);
    const perPost = posts.map(
      (r) =>
        (JSON.parse(r.body) as { events: AuditEvent[] }).events.filter((e) => e.type === 'exchange.completed').length,
    );
    expect(perPost.filter((n) => n > 0)).toEqual([1, 1, 1]);
    expect(completed().map((e) => e.exchange)).toEqual(['ex_1', 'ex_2', 'ex_3']);
    expect(completed().every((e) => e.content && !('omitted' in e.content))).toBe(true);
    expect(outbox.statuses()[0]).toMatchObject({ lag: 0 });
    await outbox.close();
    await store.close();
  });

  it('counts the content of the batches in flight against the budget', async () => {
    // A sink that takes several batches at once must not make the outbox hold several budgets of bodies.
    const store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db') });
    for (const id of ['ex_1', 'ex_2', 'ex_3', 'ex_4']) await recordExchange(store, id, `${id}: ${'y'.repeat(2_000)}`);
    receiverRefusing(() => false);
    const sink = pipelined(
      createSink(
        sinkConfigSchema.parse({ type: 'http', name: 'dlp', url: `${server.url}/dlp`, include_content: true }),
      ),
      4,
    );
    const outbox = new Outbox(store, [sink], {
      gateway: 'test',
      log: pino({ level: 'silent' }),
      contentBudgetBytes: 1_000,
    });
    await outbox.runOnce();
    expect(completed().map((e) => e.exchange)).toEqual(['ex_1', 'ex_2', 'ex_3', 'ex_4']);
    expect(sink.most).toBe(1); // each exchange's body alone passes the budget
    expect(outbox.statuses()[0]).toMatchObject({ lag: 0 });
    await outbox.close();
    await store.close();
  });

  it('sends an event the receiver refuses with its content again without it, and the others with theirs', async () => {
    const store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db') });
    await recordExchange(store, 'ex_small', 'a short question');
    await recordExchange(store, 'ex_huge', `a long paste: ${'x'.repeat(20_000)}`);
    // A receiver that takes requests of at most 8 KB (413 beyond).
    acceptedIndexes.clear();
    server.reply = (req) => {
      if (req.body.length > 8_000) return { status: 413, body: 'payload too large' };
      acceptedIndexes.add(server.requests.length - 1);
      return { status: 200 };
    };
    const outbox = contentOutbox(store);
    await outbox.runOnce();

    const [small, huge] = completed();
    expect(small).toMatchObject({
      exchange: 'ex_small',
      content: { request: { messages: [{ content: 'a short question' }] } },
    });
    expect(huge).toMatchObject({ exchange: 'ex_huge', content: { omitted: expect.stringContaining('answered 413') } });
    expect(huge!.content).not.toHaveProperty('request');
    expect(outbox.statuses()[0]).toMatchObject({ undeliverable: 0, lag: 0 });
    await outbox.close();
    await store.close();
  });

  it('sets aside an event it refuses even when the next one is refused for its content', async () => {
    // Went wrong: the next event, sent as a probe with its content, was refused for its size; the probe failed on
    // every pass and the sink stalled for good.
    const store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db') });
    await recordExchange(store, 'ex_bad', 'the receiver refuses this one, whatever it carries');
    await recordExchange(store, 'ex_huge', `a long paste: ${'x'.repeat(20_000)}`);
    acceptedIndexes.clear();
    server.reply = (req) => {
      if (req.body.includes('ex_bad')) return { status: 400, body: 'schema violation' };
      if (req.body.length > 8_000) return { status: 413, body: 'payload too large' };
      acceptedIndexes.add(server.requests.length - 1);
      return { status: 200 };
    };
    const outbox = contentOutbox(store);
    // Each pass as if the backoff after the last had passed.
    let clock = Date.now();
    for (let i = 0; i < MAX_REJECTIONS; i++) await outbox.runOnce((clock += 3_600_000));

    expect(completed().map((e) => e.exchange)).toEqual(['ex_huge']);
    expect(completed()[0]!.content).toMatchObject({ omitted: expect.stringContaining('answered 413') });
    const [aside] = await store.recordsOfKinds(['siem.undeliverable'], 0, 10);
    expect(JSON.parse(aside!.data)).toMatchObject({ sink: 'dlp', eventType: 'exchange.completed' });
    await outbox.close();
    await store.close();
  });

  it('sends the event without content when the recorded bodies can no longer be read', async () => {
    const store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db') });
    await recordExchange(store, 'ex_gone', 'purged meanwhile');
    receiverRefusing(() => false);
    const sink = createSink(
      sinkConfigSchema.parse({ type: 'http', name: 'dlp', url: `${server.url}/dlp`, include_content: true }),
    );
    // As if retention removed the exchange's blobs between reading its records and reading its bodies.
    const withoutBlobs = Object.assign(Object.create(store) as SqliteAuditStore, {
      blobs: async () => new Map<string, Buffer>(),
    });
    const outbox = new Outbox(withoutBlobs, [sink], { gateway: 'test', log: pino({ level: 'silent' }) });
    await outbox.runOnce();

    expect(completed()).toEqual([
      expect.objectContaining({
        exchange: 'ex_gone',
        content: { omitted: expect.stringContaining('could not be read') },
      }),
    ]);
    await outbox.close();
    await store.close();
  });
});

describe('outbox and a store that fails', () => {
  const tempDir = useTempDir('vigil-outbox-store');

  it('logs a pass that fails before delivering and delivers at the next poll', async () => {
    // Went wrong: a pass whose first read failed (PostgreSQL unreachable for a moment) rejected with nobody to handle
    // it — an unhandled rejection, which ends the gateway's process.
    const store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db') });
    await store.append({ records: [denied('while the store hiccups')] });
    let failures = 1;
    const flaky = Object.assign(Object.create(store) as SqliteAuditStore, {
      chainHeads: async () => {
        if (failures-- > 0) throw new Error('Connection terminated unexpectedly');
        return store.chainHeads();
      },
    });
    receiverRefusing(() => false);
    const warnings: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) });
    const sink = createSink(sinkConfigSchema.parse({ type: 'http', name: 'webhook', url: `${server.url}/events` }));
    const outbox = new Outbox(flaky, [sink], { gateway: 'test', log, pollMs: 20 });
    outbox.start();
    await until('the event delivered', () => (acceptedEvents().length > 0 ? true : undefined));
    expect(acceptedEvents()).toEqual([expect.objectContaining({ type: 'access.denied' })]);
    expect(warnings.join('')).toContain('SIEM outbox pass failed');
    await outbox.close();
    await store.close();
  });

  it('tries a store that keeps failing less and less often, and at the poll interval again once it answers', async () => {
    // Went wrong: with the store unreachable, a pass failed and was logged every poll (500 ms): 7,200 lines an hour.
    const store = SqliteAuditStore.open({ file: path.join(tempDir(), 'vigil.db') });
    await store.append({ records: [denied('after the outage')] });
    let down = true;
    let passes = 0;
    const flaky = Object.assign(Object.create(store) as SqliteAuditStore, {
      chainHeads: async () => {
        passes++;
        if (down) throw new Error('Connection terminated unexpectedly');
        return store.chainHeads();
      },
    });
    receiverRefusing(() => false);
    const warnings: Array<{ retryInMs: number }> = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line)) });
    const sink = createSink(sinkConfigSchema.parse({ type: 'http', name: 'webhook', url: `${server.url}/events` }));
    const outbox = new Outbox(flaky, [sink], { gateway: 'test', log, pollMs: 10, maxBackoffMs: 200 });
    outbox.start();
    await new Promise((r) => setTimeout(r, 700));
    // 10, 20, 40, 80, 160, 200, 200 ms…: about 8 passes in 700 ms, where polling every 10 ms made 70.
    expect(passes).toBeGreaterThanOrEqual(4);
    expect(passes).toBeLessThanOrEqual(10);
    expect(warnings.map((w) => w.retryInMs).slice(0, 5)).toEqual([10, 20, 40, 80, 160]);
    down = false;
    await until('the event delivered', () => (acceptedEvents().length > 0 ? true : undefined), 2_000);
    const after = passes;
    await new Promise((r) => setTimeout(r, 200));
    expect(passes - after).toBeGreaterThanOrEqual(4); // polling every 10 ms again (at most 1 at the 200 ms cap)
    await outbox.close();
    await store.close();
  });
});
