/**
 * A reply rendered as the Messages API's server-sent events, framed exactly as the real API frames them:
 * `event: <type>\ndata: <json>\n\n`, with a `ping` after the first block opens.
 * https://docs.anthropic.com/en/docs/build-with-claude/streaming
 */
import { fullUsage, type Reply, type ReplyBlock } from './reply.js';

/** One SSE frame and the event type it carries, so callers can cut a stream after a given event. */
export interface SseEvent {
  type: string;
  frame: string;
}

/** Frame one event. */
export function sseEvent(type: string, data: unknown): SseEvent {
  return { type, frame: `event: ${type}\ndata: ${JSON.stringify(data)}\n\n` };
}

/** Words per text or thinking delta: enough deltas that a stream has many events, few enough to stay cheap. */
const WORDS_PER_DELTA = 3;

/**
 * Sizes that tool input JSON is cut into, cycled. Irregular on purpose: fragments end mid-key, mid-string and
 * mid-escape, as the real API's do, so a consumer that parses fragments on their own is caught out.
 */
const JSON_FRAGMENT_SIZES = [3, 7, 1, 11, 5, 2, 13] as const;

/** Every event of the streamed form of `reply`, from `message_start` to `message_stop`. */
export function messageEvents(reply: Reply): SseEvent[] {
  const events: SseEvent[] = [
    sseEvent('message_start', {
      type: 'message_start',
      message: {
        id: reply.id,
        type: 'message',
        role: 'assistant',
        model: reply.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        // The real API reports a provisional output count of 1 until message_delta.
        usage: fullUsage({ ...reply.usage, output_tokens: 1 }),
      },
    }),
  ];
  reply.content.forEach((block, index) => {
    events.push(
      sseEvent('content_block_start', { type: 'content_block_start', index, content_block: emptyBlock(block) }),
    );
    if (index === 0) events.push(sseEvent('ping', { type: 'ping' }));
    for (const delta of blockDeltas(block)) {
      events.push(sseEvent('content_block_delta', { type: 'content_block_delta', index, delta }));
    }
    events.push(sseEvent('content_block_stop', { type: 'content_block_stop', index }));
  });
  events.push(
    sseEvent('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: reply.stopReason, stop_sequence: null },
      usage: {
        input_tokens: reply.usage.input_tokens,
        cache_creation_input_tokens: reply.usage.cache_creation_input_tokens,
        cache_read_input_tokens: reply.usage.cache_read_input_tokens,
        output_tokens: reply.usage.output_tokens,
      },
    }),
    sseEvent('message_stop', { type: 'message_stop' }),
  );
  return events;
}

/** The block as `content_block_start` announces it: the same shape with its growing parts empty. */
function emptyBlock(block: ReplyBlock): ReplyBlock {
  switch (block.type) {
    case 'thinking':
      return { type: 'thinking', thinking: '', signature: '' };
    case 'text':
      return { type: 'text', text: '' };
    case 'tool_use':
      return { type: 'tool_use', id: block.id, name: block.name, input: {} };
  }
}

function blockDeltas(block: ReplyBlock): Record<string, string>[] {
  switch (block.type) {
    case 'thinking':
      return [
        ...wordGroups(block.thinking).map((thinking) => ({ type: 'thinking_delta', thinking })),
        { type: 'signature_delta', signature: block.signature },
      ];
    case 'text':
      return wordGroups(block.text).map((text) => ({ type: 'text_delta', text }));
    case 'tool_use':
      // The real API opens with an empty fragment before any JSON arrives.
      return ['', ...jsonFragments(JSON.stringify(block.input))].map((partial_json) => ({
        type: 'input_json_delta',
        partial_json,
      }));
  }
}

/** `text` in pieces of a few words each, whitespace kept, so joining the pieces gives `text` back. */
function wordGroups(text: string): string[] {
  const words = text.match(/\S+\s*|\s+/g) ?? [];
  const groups: string[] = [];
  for (let i = 0; i < words.length; i += WORDS_PER_DELTA) groups.push(words.slice(i, i + WORDS_PER_DELTA).join(''));
  return groups.length > 0 ? groups : [''];
}

/** `json` cut at the irregular points of JSON_FRAGMENT_SIZES. */
function jsonFragments(json: string): string[] {
  const fragments: string[] = [];
  for (let i = 0, k = 0; i < json.length; k++) {
    const size = JSON_FRAGMENT_SIZES[k % JSON_FRAGMENT_SIZES.length]!;
    fragments.push(json.slice(i, i + size));
    i += size;
  }
  return fragments;
}
