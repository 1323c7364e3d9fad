/** Builds ExchangeViews as `readSession` returns them, for replay unit tests that need a recording of a given shape. */
import { ANONYMOUS } from '../../../src/identity/principal.js';
import type { EventView, ExchangeView } from '../../../src/recorder/exchange-reader.js';

export interface RecordedShape {
  readonly id?: string;
  readonly method?: string;
  readonly path?: string;
  readonly body?: unknown;
  readonly status?: number | null;
  readonly headers?: Record<string, string>;
  readonly responseBody?: unknown;
  readonly events?: readonly EventView[];
  readonly outcome?: ExchangeView['outcome'];
  readonly error?: ExchangeView['response']['error'];
  readonly firstByteMs?: number | null;
}

let n = 0;

export function recorded(shape: RecordedShape): ExchangeView {
  const id = shape.id ?? `ex_test${++n}`;
  const events = shape.events ?? [];
  return {
    id,
    session_id: 'ses_test',
    connection: 'anthropic',
    caller: ANONYMOUS,
    client: { address: '127.0.0.1', userAgent: null },
    agent: null,
    started_at: new Date(0).toISOString(),
    ended_at: new Date(0).toISOString(),
    model: 'claude-test',
    outcome: shape.outcome ?? 'ok',
    usage: null,
    request: {
      method: shape.method ?? 'POST',
      path: shape.path ?? '/v1/messages',
      query: '',
      headers: {},
      body: shape.body ?? null,
      body_size: 0,
    },
    response: {
      status: shape.status === undefined ? 200 : shape.status,
      headers: shape.headers ?? { 'content-type': events.length ? 'text/event-stream' : 'application/json' },
      body: shape.responseBody ?? null,
      stream: events.length > 0,
      events,
      message: null,
      stop_reason: null,
      error: shape.error ?? null,
      first_byte_ms: shape.firstByteMs === undefined ? 0 : shape.firstByteMs,
      duration_ms: 0,
    },
  };
}

/** A Messages API request body with one user turn per text. */
export function messages(...texts: string[]): Record<string, unknown> {
  return { model: 'claude-test', max_tokens: 100, messages: texts.map((content) => ({ role: 'user', content })) };
}
