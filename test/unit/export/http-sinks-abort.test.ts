/**
 * The HTTP-based sinks (http, splunk_hec, otlp) when this gateway loses the export leadership mid-batch: the signal
 * Sink.deliver gets aborts, and nothing more of the batch goes out (another gateway sends it from the cursor). Real
 * receivers on 127.0.0.1.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSink, type Sink } from '../../../src/export/sink.js';
import { sinkConfigSchema } from '../../../src/export/sinks-config.js';
import { startRecordingHttpServer, type Reply, type RecordingHttpServer } from '../../support/recording-http-server.js';
import { batchOverMaxBodySize } from '../../support/sink-body-size.js';

let server: RecordingHttpServer;
const sinks: Sink[] = [];
beforeAll(async () => {
  server = await startRecordingHttpServer();
  process.env.VIGIL_TEST_HEC_TOKEN = '11111111-2222-3333-4444-555555555555';
});
afterEach(async () => {
  // A request left hanging would hold close() up: the receiver drops it first.
  server.reply = () => ({ status: 200 });
  await Promise.all(sinks.splice(0).map((s) => s.close()));
  server.requests.length = 0;
});
afterAll(async () => {
  await server.close();
});

/** Each HTTP-based sink, set to cut {@link batchOverMaxBodySize} into two requests, and the answer it takes as a yes. */
const kinds = [
  { type: 'http', config: () => ({ url: `${server.url}/hook`, max_body_size: 16 * 1024 }), ok: { status: 200 } },
  {
    type: 'splunk_hec',
    config: () => ({ url: server.url, token: { env: 'VIGIL_TEST_HEC_TOKEN' }, max_body_size: 16 * 1024 }),
    ok: { status: 200, body: '{"text":"Success","code":0}' },
  },
  { type: 'otlp', config: () => ({ endpoint: server.url, max_body_size: 24 * 1024 }), ok: { status: 200 } },
] as const;

/** The outcome of `p` if it settles within `ms`, else 'pending'. */
function within(ms: number, p: Promise<unknown>): Promise<unknown> {
  return Promise.race([
    p.then(
      () => 'delivered',
      (err: unknown) => err,
    ),
    new Promise((r) => setTimeout(() => r('pending'), ms)),
  ]);
}

describe.each(kinds)('$type sink, leadership lost mid-batch', ({ type, config, ok }) => {
  function sink(): Sink {
    const s = createSink(
      sinkConfigSchema.parse({ type, name: 'siem', include_content: true, timeout: '30s', ...config() }),
    );
    sinks.push(s);
    return s;
  }
  const lost = (): Error => new Error('leadership lost');

  it('cuts the batch into two requests when nothing aborts (what the tests below stop halfway)', async () => {
    server.reply = () => ok as Reply;
    await sink().deliver(batchOverMaxBodySize(), new AbortController().signal);
    expect(server.requests).toHaveLength(2);
  });

  it('sends no request after the abort: the batch is not delivered, and rejects with the reason', async () => {
    // Went wrong: the signal was ignored; the rest of the batch was still sent after another gateway had taken over,
    // so both delivered it.
    const abort = new AbortController();
    const reason = lost();
    server.reply = () => {
      abort.abort(reason); // while the first request's answer is on its way
      return ok as Reply;
    };
    expect(await within(5000, sink().deliver(batchOverMaxBodySize(), abort.signal))).toBe(reason);
    await new Promise((r) => setTimeout(r, 100));
    expect(server.requests).toHaveLength(1);
  });

  it('gives up the request in flight at once, not at its timeout', async () => {
    const abort = new AbortController();
    const reason = lost();
    server.reply = () => ({ status: 200, hang: true });
    const delivering = sink().deliver(batchOverMaxBodySize(), abort.signal);
    while (server.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
    abort.abort(reason);
    expect(await within(1000, delivering)).toBe(reason);
    server.reply = () => ok as Reply;
    await new Promise((r) => setTimeout(r, 100));
    expect(server.requests).toHaveLength(1);
  });

  it('sends nothing when the signal has already aborted', async () => {
    const abort = new AbortController();
    const reason = lost();
    abort.abort(reason);
    expect(await within(1000, sink().deliver(batchOverMaxBodySize(), abort.signal))).toBe(reason);
    expect(server.requests).toHaveLength(0);
  });
});
