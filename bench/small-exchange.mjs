/**
 * A small finished exchange as the store's records (request, events, response, no blobs), for filling a store with
 * thousands of them in seconds: `bench/retention-candidates.mjs` and the tests of what retention reads at scale.
 */

/**
 * Exchange `ex_<i>` of session `s-<i / 20>`, by one of 50 OIDC callers, started `i` minutes after `t0` and ended 500 ms
 * later, on `connection`.
 */
export function smallExchange(i, t0, connection = 'anthropic') {
  const at = t0 + i * 60_000;
  const ids = { exchangeId: `ex_${i}`, sessionId: `s-${Math.floor(i / 20)}` };
  const caller = { method: 'oidc', subject: `u${i % 50}`, issuer: 'https://idp', email: `u${i % 50}@example.com` };
  return [
    {
      ...ids,
      kind: 'exchange.request',
      at,
      data: {
        connection,
        caller,
        client: { address: '127.0.0.1' },
        session: { id: ids.sessionId, source: 'header' },
        request: { method: 'POST', path: '/v1/messages', query: '', headers: {}, body: { size: 2, parts: ['{}'] } },
        model: 'claude-sonnet-4-5',
        stream: true,
        startedAt: at,
      },
    },
    { ...ids, kind: 'exchange.events', at: at + 100, data: { events: [] } },
    {
      ...ids,
      kind: 'exchange.response',
      at: at + 500,
      data: {
        status: 200,
        headers: {},
        body: null,
        usage: { input_tokens: 10, output_tokens: 5 },
        model: 'claude-sonnet-4-5',
        stopReason: 'end_turn',
        outcome: 'ok',
        error: null,
        eventCount: 0,
        timing: { startedAt: at, firstByteMs: 1, endedAt: at + 500, durationMs: 500 },
      },
    },
  ];
}
