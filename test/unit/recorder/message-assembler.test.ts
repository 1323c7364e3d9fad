import Anthropic from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { assembleFromEvents, MessageAssembler } from '../../../src/recorder/message-assembler.js';
import { SseDecoder, type SseEvent } from '../../../src/recorder/sse-decoder.js';

/** One frame as the Messages API writes it. */
function frame(type: string, data: unknown): string {
  return `event: ${type}\ndata: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}

function delta(index: number, d: Record<string, unknown>): string {
  return frame('content_block_delta', { type: 'content_block_delta', index, delta: d });
}

function start(index: number, block: Record<string, unknown>): string {
  return frame('content_block_start', { type: 'content_block_start', index, content_block: block });
}

function stop(index: number): string {
  return frame('content_block_stop', { type: 'content_block_stop', index });
}

const MESSAGE_START = frame('message_start', {
  type: 'message_start',
  message: {
    id: 'msg_01XFDUDYJgAACzvnptvVoYEL',
    type: 'message',
    role: 'assistant',
    model: 'claude-sonnet-4-5-20250929',
    content: [],
    stop_reason: null,
    stop_sequence: null,
    usage: {
      input_tokens: 12,
      cache_creation_input_tokens: 1846,
      cache_read_input_tokens: 20310,
      cache_creation: { ephemeral_5m_input_tokens: 1846, ephemeral_1h_input_tokens: 0 },
      output_tokens: 3,
      service_tier: 'standard',
    },
  },
});

/**
 * A stream shaped like one captured from the API for a request with extended thinking and a tool: thinking with a
 * signature, text with non-ASCII characters, then a tool call whose input JSON arrives in fragments cut mid-key.
 */
const CAPTURED = [
  MESSAGE_START,
  start(0, { type: 'thinking', thinking: '', signature: '' }),
  frame('ping', '{"type": "ping"}'),
  delta(0, { type: 'thinking_delta', thinking: 'The user wants the weather in Paris. ' }),
  delta(0, { type: 'thinking_delta', thinking: 'I should call get_weather — in °C.' }),
  delta(0, { type: 'signature_delta', signature: 'EqQBCkYIBxgCKkD0xV3mZcY2pQ==' }),
  stop(0),
  start(1, { type: 'text', text: '' }),
  delta(1, { type: 'text_delta', text: 'Je vais vérifier ' }),
  delta(1, { type: 'text_delta', text: 'la météo à Paris 🌤️ ' }),
  delta(1, { type: 'text_delta', text: '(巴黎).' }),
  stop(1),
  start(2, { type: 'tool_use', id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6', name: 'get_weather', input: {} }),
  delta(2, { type: 'input_json_delta', partial_json: '' }),
  delta(2, { type: 'input_json_delta', partial_json: '{"locat' }),
  delta(2, { type: 'input_json_delta', partial_json: 'ion": "Paris' }),
  delta(2, { type: 'input_json_delta', partial_json: ', FR", "unit"' }),
  delta(2, { type: 'input_json_delta', partial_json: ': "celsius"}' }),
  stop(2),
  frame('message_delta', {
    type: 'message_delta',
    delta: { stop_reason: 'tool_use', stop_sequence: null },
    usage: {
      input_tokens: 12,
      cache_creation_input_tokens: 1846,
      cache_read_input_tokens: 20310,
      output_tokens: 187,
      server_tool_use: null,
    },
  }),
  frame('message_stop', { type: 'message_stop' }),
].join('');

const EXPECTED_USAGE = {
  input_tokens: 12,
  cache_creation_input_tokens: 1846,
  cache_read_input_tokens: 20310,
  cache_creation: { ephemeral_5m_input_tokens: 1846, ephemeral_1h_input_tokens: 0 },
  output_tokens: 187,
  service_tier: 'standard',
};

const EXPECTED = {
  id: 'msg_01XFDUDYJgAACzvnptvVoYEL',
  type: 'message',
  role: 'assistant',
  model: 'claude-sonnet-4-5-20250929',
  content: [
    {
      type: 'thinking',
      thinking: 'The user wants the weather in Paris. I should call get_weather — in °C.',
      signature: 'EqQBCkYIBxgCKkD0xV3mZcY2pQ==',
    },
    { type: 'text', text: 'Je vais vérifier la météo à Paris 🌤️ (巴黎).' },
    {
      type: 'tool_use',
      id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6',
      name: 'get_weather',
      input: { location: 'Paris, FR', unit: 'celsius' },
    },
  ],
  stop_reason: 'tool_use',
  stop_sequence: null,
  usage: EXPECTED_USAGE,
};

/** Decode `bytes` cut at `cuts` and assemble what they carry: what the recorder does with a tapped stream. */
function record(bytes: Buffer, cuts: readonly number[] = []) {
  const decoder = new SseDecoder();
  const assembler = new MessageAssembler();
  const events: SseEvent[] = [];
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    for (const event of decoder.push(bytes.subarray(from, cut))) {
      events.push(event);
      assembler.push(event);
    }
    from = cut;
  }
  return { events, trailingBytes: decoder.end().trailingBytes, assembler, message: assembler.message() };
}

function decodeAll(text: string): SseEvent[] {
  return record(Buffer.from(text)).events;
}

/** What the official SDK's MessageStream makes of the same bytes, served by a fetch that never leaves the process. */
async function sdkFinalMessage(body: string): Promise<unknown> {
  const client = new Anthropic({
    apiKey: 'test-key',
    maxRetries: 0,
    fetch: async () => new Response(body, { headers: { 'content-type': 'text/event-stream' } }),
  });
  const message = await client.messages
    .stream({
      model: 'claude-sonnet-5-5',
      max_tokens: 1024,
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
    })
    .finalMessage();
  // The SDK adds its structured-output field, which is no part of what the API sent.
  const { parsed_output: _parsed, ...sent } = JSON.parse(JSON.stringify(message)) as Record<string, unknown>;
  return sent;
}

describe('MessageAssembler', () => {
  it('assembles a captured stream into the message the API sent', () => {
    const { message, assembler, trailingBytes } = record(Buffer.from(CAPTURED));
    expect(message).toEqual(EXPECTED);
    expect(assembler.stopReason).toBe('tool_use');
    expect(assembler.usage).toEqual(EXPECTED_USAGE);
    expect(assembler.error).toBeNull();
    expect(assembler.problems).toEqual([]);
    expect(assembler.complete).toBe(true);
    expect(trailingBytes).toBe(0);
  });

  it('assembles the same message as the official SDK does from the same bytes', async () => {
    expect(await sdkFinalMessage(CAPTURED)).toEqual(record(Buffer.from(CAPTURED)).message);
  });

  it('gives the same events and message whole, byte by byte, and cut in two at every offset', () => {
    const bytes = Buffer.from(CAPTURED);
    const whole = record(bytes);
    const byByte = record(
      bytes,
      Array.from({ length: bytes.length - 1 }, (_, i) => i + 1),
    );
    expect(byByte.events).toEqual(whole.events);
    expect(byByte.message).toEqual(EXPECTED);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const split = record(bytes, [cut]);
      expect(split.events, `cut at ${cut}`).toEqual(whole.events);
      expect(split.message, `cut at ${cut}`).toEqual(EXPECTED);
    }
  });

  it('gives the same message for CRLF and CR framing', () => {
    expect(record(Buffer.from(CAPTURED.replaceAll('\n', '\r\n'))).message).toEqual(EXPECTED);
    expect(record(Buffer.from(CAPTURED.replaceAll('\n', '\r'))).message).toEqual(EXPECTED);
  });

  it('returns a valid message at every point mid-stream, and the same object until the next push', () => {
    const events = decodeAll(CAPTURED);
    const assembler = new MessageAssembler();
    expect(assembler.message()).toBeNull();
    expect(assembler.usage).toBeNull();
    for (const event of events) {
      assembler.push(event);
      const message = assembler.message();
      expect(message).not.toBeNull();
      expect(assembler.message()).toBe(message);
    }
    expect(assembler.message()).toEqual(EXPECTED);
  });

  it('leaves a message already returned as it was when later events arrive', () => {
    const events = decodeAll(CAPTURED);
    const assembler = new MessageAssembler();
    const snapshots: { message: unknown; json: string }[] = [];
    for (const event of events) {
      assembler.push(event);
      const message = assembler.message();
      snapshots.push({ message, json: JSON.stringify(message) });
    }
    for (const { message, json } of snapshots) expect(JSON.stringify(message)).toBe(json);
  });

  it('keeps the partial block and the raw input JSON of a stream cut mid tool input', () => {
    const cutAt = CAPTURED.indexOf('ion\\": \\"Paris');
    const cut = record(Buffer.from(CAPTURED.slice(0, cutAt)));
    expect(cut.trailingBytes).toBeGreaterThan(0);
    expect(cut.assembler.complete).toBe(false);
    expect(cut.assembler.stopReason).toBeNull();
    expect(cut.message?.content).toEqual([
      EXPECTED.content[0],
      EXPECTED.content[1],
      {
        type: 'tool_use',
        id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6',
        name: 'get_weather',
        input: {},
        input_json_partial: '{"locat',
      },
    ]);
    // Provisional usage from message_start: what was known when the stream broke.
    expect(cut.assembler.usage).toMatchObject({ input_tokens: 12, output_tokens: 3 });
    expect(cut.assembler.problems).toEqual([]);
  });

  it('records an error event sent mid-stream, keeping what came before it', () => {
    const body =
      MESSAGE_START +
      start(0, { type: 'text', text: '' }) +
      delta(0, { type: 'text_delta', text: 'Partial answer' }) +
      frame('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
    const { assembler, message } = record(Buffer.from(body));
    expect(assembler.error).toEqual({ type: 'overloaded_error', message: 'Overloaded' });
    expect(message?.content).toEqual([{ type: 'text', text: 'Partial answer' }]);
    expect(assembler.complete).toBe(false);
    expect(assembler.problems).toEqual([]);
  });

  it('records malformed JSON in problems without throwing, and goes on assembling', () => {
    const body =
      MESSAGE_START +
      start(0, { type: 'text', text: '' }) +
      delta(0, { type: 'text_delta', text: 'Hello' }) +
      frame('content_block_delta', '{"type":"content_block_delta","index":0,"delta":{"type":"text_de') +
      delta(0, { type: 'text_delta', text: ', world' }) +
      frame('content_block_delta', '[1, 2]') +
      frame('error', 'not json either') +
      stop(0) +
      frame('message_stop', { type: 'message_stop' });
    const assembler = new MessageAssembler();
    expect(() => {
      for (const event of decodeAll(body)) assembler.push(event);
    }).not.toThrow();
    expect(assembler.message()?.content).toEqual([{ type: 'text', text: 'Hello, world' }]);
    expect(assembler.problems).toHaveLength(3);
    expect(assembler.problems[0]).toMatch(/^event 3 \(content_block_delta\): malformed JSON/);
    expect(assembler.problems[1]).toBe('event 5 (content_block_delta): data is not a JSON object');
    expect(assembler.problems[2]).toMatch(/^event 6 \(error\): malformed JSON/);
    expect(assembler.error).toEqual({ type: 'unknown_error', message: 'not json either' });
  });

  it('records a tool input that is not valid JSON at its block end, keeping the raw text', () => {
    const body =
      MESSAGE_START +
      start(0, { type: 'tool_use', id: 'toolu_1', name: 'f', input: {} }) +
      delta(0, { type: 'input_json_delta', partial_json: '{"a": ' }) +
      stop(0);
    const { assembler, message } = record(Buffer.from(body));
    expect(message?.content).toEqual([
      { type: 'tool_use', id: 'toolu_1', name: 'f', input: {}, input_json_partial: '{"a": ' },
    ]);
    expect(assembler.problems).toHaveLength(1);
    expect(assembler.problems[0]).toMatch(/^event 3 \(content_block_stop\): tool input is not valid JSON/);
  });

  it('reads an empty tool input as {} and keeps server tool blocks, results and redacted thinking', () => {
    const searchResult = {
      type: 'web_search_tool_result',
      tool_use_id: 'srvtoolu_1',
      content: [{ type: 'web_search_result', title: 'Météo', url: 'https://example.com', encrypted_content: 'abc' }],
    };
    const body =
      MESSAGE_START +
      start(0, { type: 'redacted_thinking', data: 'EmwKAhgBEgy3va3pzix/LafPsn4a' }) +
      stop(0) +
      start(1, { type: 'server_tool_use', id: 'srvtoolu_1', name: 'web_search', input: {} }) +
      delta(1, { type: 'input_json_delta', partial_json: '{"query": "météo paris"}' }) +
      stop(1) +
      start(2, searchResult) +
      stop(2) +
      start(3, { type: 'tool_use', id: 'toolu_2', name: 'now', input: {} }) +
      delta(3, { type: 'input_json_delta', partial_json: '' }) +
      stop(3) +
      frame('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: 'tool_use', stop_sequence: null },
        usage: { output_tokens: 50, server_tool_use: { web_search_requests: 1 } },
      }) +
      frame('message_stop', { type: 'message_stop' });
    const { assembler, message } = record(Buffer.from(body));
    expect(message?.content).toEqual([
      { type: 'redacted_thinking', data: 'EmwKAhgBEgy3va3pzix/LafPsn4a' },
      { type: 'server_tool_use', id: 'srvtoolu_1', name: 'web_search', input: { query: 'météo paris' } },
      searchResult,
      { type: 'tool_use', id: 'toolu_2', name: 'now', input: {} },
    ]);
    expect(assembler.usage).toEqual({
      ...EXPECTED_USAGE,
      output_tokens: 50,
      server_tool_use: { web_search_requests: 1 },
    });
    expect(assembler.problems).toEqual([]);
  });

  it('appends citations_delta citations to the text block', async () => {
    const citation = {
      type: 'char_location',
      cited_text: 'The grass is green.',
      document_index: 0,
      document_title: 'Facts',
      start_char_index: 0,
      end_char_index: 19,
    };
    const body =
      MESSAGE_START +
      start(0, { type: 'text', text: '', citations: [] }) +
      delta(0, { type: 'citations_delta', citation }) +
      delta(0, { type: 'text_delta', text: 'the grass is green' }) +
      delta(0, { type: 'citations_delta', citation: { ...citation, cited_text: 'Sky.' } }) +
      stop(0) +
      frame('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: 'end_turn', stop_sequence: null },
        usage: { output_tokens: 9 },
      }) +
      frame('message_stop', { type: 'message_stop' });
    const { message } = record(Buffer.from(body));
    expect(message?.content).toEqual([
      { type: 'text', text: 'the grass is green', citations: [citation, { ...citation, cited_text: 'Sky.' }] },
    ]);
    expect(await sdkFinalMessage(body)).toEqual(message);
  });

  it('records events that do not fit the message, and ignores them', () => {
    const body =
      start(0, { type: 'text', text: '' }) + // before message_start
      MESSAGE_START +
      start(0, { type: 'text', text: '' }) +
      delta(0, { type: 'thinking_delta', thinking: 'wrong block' }) +
      delta(0, { type: 'future_delta', x: 1 }) +
      delta(7, { type: 'text_delta', text: 'no such block' }) +
      delta(0, { type: 'text_delta', text: 'ok' }) +
      frame('message_stop', { type: 'message_stop' }) +
      delta(0, { type: 'text_delta', text: 'too late' });
    const { assembler, message } = record(Buffer.from(body));
    expect(message?.content).toEqual([{ type: 'text', text: 'ok' }]);
    expect(assembler.problems).toEqual([
      'event 0 (content_block_start): before message_start; ignored',
      'event 3 (content_block_delta): thinking_delta for a text block; ignored',
      'event 4 (content_block_delta): unknown delta type "future_delta"; ignored',
      'event 5 (content_block_delta): no open block at index 7; ignored',
      'event 8 (content_block_delta): after message_stop; ignored',
    ]);
  });

  it('keeps at most a bounded number of problems from a broken stream', () => {
    const assembler = new MessageAssembler();
    for (let i = 0; i < 1000; i++) assembler.push({ type: 'content_block_delta', data: '{' });
    expect(assembler.problems).toHaveLength(101);
    expect(assembler.problems.at(-1)).toMatch(/further problems not recorded/);
  });

  it('returns null from a stream that never started a message', () => {
    expect(assembleFromEvents([])).toBeNull();
    expect(assembleFromEvents([{ type: 'ping', data: '{"type":"ping"}' }])).toBeNull();
  });

  it('assembles recorded events offline with assembleFromEvents', () => {
    expect(assembleFromEvents(decodeAll(CAPTURED))).toEqual(EXPECTED);
  });
});
