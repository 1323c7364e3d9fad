/**
 * `include_content: true` on a SIEM sink: its exchange events carry the exchange's content as recorded — masked —
 * while a sink that did not opt in gets identities, counts and outcomes only.
 */
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/export/audit-event.js';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';
import { startRecordingHttpServer, type RecordingHttpServer, postedEvents } from '../support/recording-http-server.js';
import { until } from '../support/until.js';

const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';

let h: Harness;
let receiver: RecordingHttpServer;

beforeAll(async () => {
  receiver = await startRecordingHttpServer();
  h = await startHarness((upstream) => ({
    connections: [{ name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } }],
    siem: {
      sinks: [
        { type: 'http', name: 'dlp', url: `${receiver.url}/dlp`, include_content: true },
        { type: 'http', name: 'soc', url: `${receiver.url}/soc` },
      ],
    },
  }));
}, 30_000);

afterAll(async () => {
  await h?.close();
  await receiver?.close();
});

/** The exchange.completed events one receiver path has taken so far. */
function completedAt(path: string): AuditEvent[] {
  return postedEvents(receiver.requests.filter((r) => r.url === path)).filter((e) => e.type === 'exchange.completed');
}

describe('SIEM sinks with include_content', () => {
  it('send masked request and response content to the sink that opted in, and none to the others', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
    const stream = client.messages.stream({
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      messages: [{ role: 'user', content: `deploy with ${AWS_KEY} now` }],
    });
    const streamed = await stream.finalMessage();
    const plain = await client.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'a plain question' }],
    });

    const withContent = await until('both exchanges at the dlp sink', () => {
      const got = completedAt('/dlp');
      return got.length >= 2 ? got : undefined;
    });
    const withoutContent = await until('both exchanges at the soc sink', () => {
      const got = completedAt('/soc');
      return got.length >= 2 ? got : undefined;
    });

    // The stream: the request as recorded (the key masked), and the message assembled from its events (the fake
    // upstream echoes the prompt: the echoed key is masked too, though the client received it).
    const byResponse = (id: string) => withContent.find((e) => (e.content?.response as { id?: string })?.id === id);
    const first = byResponse(streamed.id);
    const second = byResponse(plain.id);
    const request = first!.content?.request as { messages: Array<{ content: string }>; model: string };
    expect(request.model).toBe('claude-haiku-4-5');
    expect(request.messages[0]!.content).toBe('deploy with [REDACTED:aws_access_key_id] now');
    const maskedText = JSON.parse(JSON.stringify(streamed.content).replace(AWS_KEY, '[REDACTED:aws_access_key_id]'));
    expect(streamed.content).toMatchObject([{ type: 'text', text: expect.stringContaining(AWS_KEY) }]);
    expect(first!.content?.response).toMatchObject({
      id: streamed.id,
      role: 'assistant',
      content: maskedText,
      stop_reason: streamed.stop_reason,
    });
    // Counted where it was masked: the request, the events and the assembled message.
    expect(first!.attributes.masking).toEqual({ aws_access_key_id: 3 });
    // The JSON exchange: its response body.
    expect(second!.content?.request).toMatchObject({ messages: [{ role: 'user', content: 'a plain question' }] });
    expect(second!.content?.response).toMatchObject({ id: plain.id, content: plain.content });

    // The other sink: the same events, without content.
    expect(withoutContent.map((e) => e.id)).toEqual(withContent.map((e) => e.id));
    for (const e of withoutContent) expect(e).not.toHaveProperty('content');
    // Nothing sent anywhere holds the key.
    expect(receiver.requests.some((r) => r.body.includes(AWS_KEY))).toBe(false);
  }, 30_000);
});
