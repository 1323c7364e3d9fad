/**
 * Exchanges recorded long ago, shaped like the recorder's (a request whose body refers to blobs — a system prompt
 * its session shares and the turn's own messages —, streamed events in several group commits, a response, search
 * text), appended straight to a store: thousands in a few seconds, for tests of what retention does at scale.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { AuditStore, BlobWrite, WriteBatch } from '../../src/store/audit-store.js';
import type { ExchangeEventsData, ExchangeRequestData, ExchangeResponseData } from '../../src/store/record-types.js';

const blobOf = (text: string): BlobWrite => {
  const data = Buffer.from(text);
  return { hash: createHash('sha256').update(data).digest('hex'), data };
};

/** One old exchange: `i` numbers it (and its session, `old-<i / 20>`), `at` is when it started. */
export function oldExchange(i: number, at: number): WriteBatch {
  const id = `ex_old_${i}`;
  const session = `old-${Math.floor(i / 20)}`;
  const system = blobOf(`You are the assistant of session ${session}. `.repeat(40));
  const turn = blobOf(
    JSON.stringify([{ role: 'user', content: `question ${i}: ${randomBytes(1200).toString('hex')}` }]),
  );
  const request: ExchangeRequestData = {
    connection: 'anthropic',
    caller: { method: 'oidc', subject: 'alice', issuer: 'https://idp.example', email: 'alice@example.com' },
    client: { address: '127.0.0.1', userAgent: 'claude-cli/2.0.0' },
    session: { id: session, source: 'header' },
    request: {
      method: 'POST',
      path: '/v1/messages',
      query: '',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: {
        size: system.data.length + turn.data.length + 60,
        parts: [
          '{"model":"claude-sonnet-4-5","system":',
          { $blob: system.hash },
          ',"messages":',
          { $blob: turn.hash },
          '}',
        ],
      },
    },
    model: 'claude-sonnet-4-5',
    stream: true,
    startedAt: at,
  };
  const events = (commit: number): ExchangeEventsData => ({
    events: Array.from({ length: 25 }, (_, j) => ({
      i: commit * 25 + j,
      type: 'content_block_delta',
      data: JSON.stringify({
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'text_delta', text: `word ${j} ` },
      }),
      offset_ms: commit * 100 + j,
    })),
  });
  const response: ExchangeResponseData = {
    status: 200,
    headers: { 'content-type': 'text/event-stream', 'request-id': `req_${id}` },
    body: null,
    message: { role: 'assistant', content: [{ type: 'text', text: 'an answer of some length '.repeat(40) }] },
    usage: { input_tokens: 1200, output_tokens: 300 },
    model: 'claude-sonnet-4-5-20250929',
    stopReason: 'end_turn',
    outcome: 'ok',
    error: null,
    eventCount: 100,
    timing: { startedAt: at, firstByteMs: 300, endedAt: at + 500, durationMs: 500 },
  };
  const record = { exchangeId: id, sessionId: session };
  return {
    blobs: [system, turn],
    records: [
      { ...record, kind: 'exchange.request', at, data: request },
      ...[0, 1, 2, 3].map((c) => ({ ...record, kind: 'exchange.events', at: at + 100 * (c + 1), data: events(c) })),
      { ...record, kind: 'exchange.response', at: at + 500, data: response },
    ],
    searchText: [{ exchangeId: id, text: `question ${i} ${'and the answer to it '.repeat(60)}` }],
  };
}

/** Appends `count` old exchanges, one a millisecond from `at`, ten to a transaction. */
export async function appendOldExchanges(store: AuditStore, count: number, at: number): Promise<void> {
  for (let i = 0; i < count; i += 10) {
    const batches = Array.from({ length: Math.min(10, count - i) }, (_, k) => oldExchange(i + k, at + i + k));
    await store.append({
      blobs: batches.flatMap((b) => b.blobs ?? []),
      records: batches.flatMap((b) => b.records),
      searchText: batches.flatMap((b) => b.searchText ?? []),
    });
  }
}
