/**
 * The latency histograms in `/metrics`, after real calls through the gateway: how long each request was held to be
 * recorded before it was forwarded (only where something was written first), beside time to first byte and duration.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { postMessages, startHarness, type Harness } from '../support/gateway-harness.js';

let h: Harness;

beforeAll(async () => {
  h = await startHarness((upstream) => ({
    connections: [
      { name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
      { name: 'quiet', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' }, record: 'off' },
    ],
  }));
});
afterAll(async () => {
  await h.close();
});

/** The value of the sample `name{labels}` in the exposition text, or undefined when there is none. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

it('counts the time each recorded request was held before forwarding, within its duration; none for record: off', async () => {
  const messages = [{ role: 'user', content: 'hello' }];
  for (const stream of [false, true]) {
    const res = await postMessages(h.url, `ses_metrics_${stream}`, { messages, stream });
    expect(res.status).toBe(200);
    await res.text();
  }
  const quiet = await postMessages(`${h.url}/c/quiet`, 'ses_metrics_quiet', { messages });
  expect(quiet.status).toBe(200);
  await quiet.text();
  // An exchange is counted when its recording ends, just after the client has its last byte.
  const anthropic = 'connection="anthropic"';
  let text = '';
  for (const deadline = Date.now() + 5000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
    text = await (await fetch(`${h.gateway.adminUrl}/metrics`)).text();
    const counted = [anthropic, 'connection="quiet"'].map((c) =>
      sample(text, 'vigil_request_duration_seconds_count', c),
    );
    if (counted[0] === 2 && counted[1] === 1) break;
  }
  expect(sample(text, 'vigil_request_recording_seconds_count', anthropic)).toBe(2);
  expect(sample(text, 'vigil_time_to_first_byte_seconds_count', anthropic)).toBe(2);
  expect(sample(text, 'vigil_request_duration_seconds_count', anthropic)).toBe(2);
  const held = sample(text, 'vigil_request_recording_seconds_sum', anthropic)!;
  expect(held).toBeGreaterThan(0);
  expect(held).toBeLessThanOrEqual(sample(text, 'vigil_request_duration_seconds_sum', anthropic)!);
  // Sub-millisecond buckets: what recording costs is told apart from the rest of the request.
  expect(text).toContain('vigil_request_recording_seconds_bucket{le="0.0005",connection="anthropic"}');
  expect(sample(text, 'vigil_request_duration_seconds_count', 'connection="quiet"')).toBe(1);
  expect(sample(text, 'vigil_request_recording_seconds_count', 'connection="quiet"')).toBeUndefined();
});
