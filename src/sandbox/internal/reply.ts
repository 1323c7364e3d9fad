/**
 * What the fake answers to a Messages API request: a deterministic function of the request, so tests can assert
 * on exact text, plus fresh ids as the real API would mint.
 *
 * Rules, in order: a `tool_result` in the last user turn is acknowledged; otherwise a `[[tool:NAME {input}]]`
 * directive naming an offered tool produces a text block and a `tool_use` block; otherwise the last user text
 * is echoed. Extended thinking, when asked for, adds a thinking block first.
 * https://docs.anthropic.com/en/api/messages
 */
import { createHash } from 'node:crypto';
import {
  isObject,
  lastUserMessage,
  messageText,
  toolDirective,
  toolResultText,
  withoutSystemReminders,
} from './directives.js';
import { messageId, toolUseId } from './ids.js';

/** The parts of a valid Messages API request the fake acts on. */
export interface MessagesRequest {
  model: string;
  maxTokens: number;
  messages: readonly unknown[];
  stream: boolean;
  thinking: boolean;
  toolNames: ReadonlySet<string>;
}

export type ReplyBlock =
  | { type: 'thinking'; thinking: string; signature: string }
  | { type: 'text'; text: string }
  | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> };

export type StopReason = 'end_turn' | 'tool_use' | 'max_tokens' | 'refusal';

export interface Usage {
  input_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  output_tokens: number;
  /** Of the cache writes, those kept an hour (`cache_control.ttl: "1h"`); reported in `cache_creation`. */
  cache_creation_1h?: number;
}

/**
 * What the prompt cache does for a request: `none` without `cache_control`; else the cached part is `written` the first
 * time its prefix is seen (for an hour with `ttl: "1h"`) and `read` after.
 */
export type CacheUse = 'none' | 'read' | 'written' | 'written_1h';

/** One assistant message, before it is rendered as JSON or as a stream of events. */
export interface Reply {
  id: string;
  model: string;
  content: ReplyBlock[];
  stopReason: StopReason;
  usage: Usage;
}

/** How much of the user's text is quoted back; long prompts would otherwise make long, slow streams. */
const QUOTE_CHARS = 200;

/** Either the request, or the `invalid_request_error` message the real API would give for it. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

/** Parse a request body as JSON, with the real API's complaint when it is not. */
export function parseJsonBody(body: Buffer): Parsed<unknown> {
  try {
    return { ok: true, value: JSON.parse(body.toString('utf8')) as unknown };
  } catch {
    return { ok: false, message: 'Request body is not valid JSON' };
  }
}

/**
 * Check a parsed request body. `count_tokens` takes the same body without `max_tokens`, hence the flag.
 * Messages follow the real API's wording for missing fields (`max_tokens: Field required`).
 */
export function parseMessagesRequest(json: unknown, requireMaxTokens = true): Parsed<MessagesRequest> {
  if (!isObject(json)) return { ok: false, message: 'Request body must be a JSON object' };
  const { model, max_tokens: maxTokens, messages, stream, thinking, tools } = json;
  if (typeof model !== 'string' || model === '') return { ok: false, message: 'model: Field required' };
  if (!Array.isArray(messages)) return { ok: false, message: 'messages: Field required' };
  if (requireMaxTokens && (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens) || maxTokens < 1)) {
    return { ok: false, message: 'max_tokens: Field required' };
  }
  const toolNames = new Set<string>();
  if (Array.isArray(tools)) {
    for (const t of tools) if (isObject(t) && typeof t['name'] === 'string') toolNames.add(t['name']);
  }
  return {
    ok: true,
    value: {
      model,
      maxTokens: typeof maxTokens === 'number' ? maxTokens : Infinity,
      messages,
      stream: stream === true,
      thinking: isObject(thinking) && thinking['type'] === 'enabled',
      toolNames,
    },
  };
}

/**
 * Input tokens as the real API roughly counts them: about four bytes of request per token. When the request
 * marks anything with `cache_control`, three quarters are reported as cached: written to the cache the first time the
 * fake sees the request's cached prefix, read from it after (see `cacheUse`), so recorders and cost reports see both.
 */
export function inputUsage(bodyBytes: number, cache: CacheUse): Omit<Usage, 'output_tokens'> {
  const total = Math.max(1, Math.ceil(bodyBytes / 4));
  const cached = cache === 'none' ? 0 : Math.floor((total * 3) / 4);
  const written = cache === 'written' || cache === 'written_1h' ? cached : 0;
  return {
    input_tokens: total - cached,
    cache_creation_input_tokens: written,
    cache_read_input_tokens: cached - written,
    ...(cache === 'written_1h' ? { cache_creation_1h: written } : {}),
  };
}

const CACHE_CONTROL = Buffer.from('"cache_control"');
const ONE_HOUR_TTL = /"ttl"\s*:\s*"1h"/;
/** The most cached prefixes the fake remembers; past it, it forgets them all (and writes them again). */
const MAX_CACHED_PREFIXES = 10_000;

/**
 * How the prompt cache treats `body`: its prefix up to the first `cache_control` (the system prompt and tools, where
 * Claude Code marks them) is written the first time `cached` meets it, and read after — as the real API does within
 * the cache's lifetime.
 */
export function cacheUse(body: Buffer, cached: Set<string>): CacheUse {
  const at = body.indexOf(CACHE_CONTROL);
  if (at < 0) return 'none';
  const key = createHash('sha256').update(body.subarray(0, at)).digest('base64');
  if (cached.has(key)) return 'read';
  if (cached.size >= MAX_CACHED_PREFIXES) cached.clear();
  cached.add(key);
  return ONE_HOUR_TTL.test(body.subarray(at, at + 200).toString('latin1')) ? 'written_1h' : 'written';
}

/** Decide the reply to `request`, whose raw body was `bodyBytes` long. */
export function planReply(request: MessagesRequest, bodyBytes: number, cache: CacheUse): Reply {
  const turn = lastUserMessage(request.messages);
  const text = messageText(turn);
  const content: ReplyBlock[] = [];
  let stopReason: StopReason = 'end_turn';

  if (request.thinking) {
    const thinking = `The user wrote: "${quote(withoutSystemReminders(text), 100)}". I should answer faithfully.`;
    content.push({ type: 'thinking', thinking, signature: signatureFor(thinking) });
  }

  const results = toolResultText(turn);
  const directive = results === undefined ? toolDirective(text) : undefined;
  if (results !== undefined) {
    content.push({ type: 'text', text: `Tool result received: ${quote(results, QUOTE_CHARS)}` });
  } else if (directive !== undefined && request.toolNames.has(directive.name)) {
    content.push({ type: 'text', text: `I'll use the ${directive.name} tool.` });
    content.push({ type: 'tool_use', id: toolUseId(), name: directive.name, input: directive.input });
    stopReason = 'tool_use';
  } else {
    let answer = `Echo: ${quote(withoutSystemReminders(text), QUOTE_CHARS)}`;
    // Claude Code probes with `max_tokens: 1`; the real API cuts the answer short and says so.
    const allowedChars = request.maxTokens * 4;
    if (answer.length > allowedChars) {
      answer = answer.slice(0, allowedChars);
      stopReason = 'max_tokens';
    }
    content.push({ type: 'text', text: answer });
  }

  return {
    id: messageId(),
    model: request.model,
    content,
    stopReason,
    usage: { ...inputUsage(bodyBytes, cache), output_tokens: outputTokens(content) },
  };
}

/**
 * `reply` declined (`stop_reason: refusal`, a 200, not an error): `before` any output, with no content; or
 * `mid_stream`, after the first half of its first text block, its other blocks dropped.
 */
export function refused(reply: Reply, when: 'before' | 'mid_stream'): Reply {
  const text = reply.content.find((b) => b.type === 'text');
  const content: ReplyBlock[] =
    when === 'mid_stream' && text ? [{ ...text, text: text.text.slice(0, Math.ceil(text.text.length / 2)) }] : [];
  const output = content.length ? outputTokens(content) : 0; // declined before any output: nothing billed
  return { ...reply, content, stopReason: 'refusal', usage: { ...reply.usage, output_tokens: output } };
}

/** The reply as the non-streaming API returns it. https://docs.anthropic.com/en/api/messages */
export function messageBody(reply: Reply): Record<string, unknown> {
  return {
    id: reply.id,
    type: 'message',
    role: 'assistant',
    model: reply.model,
    content: reply.content,
    stop_reason: reply.stopReason,
    stop_sequence: null,
    usage: fullUsage(reply.usage),
  };
}

/** Usage with the breakdown fields current API versions add alongside the four counters. */
export function fullUsage(usage: Usage): Record<string, unknown> {
  return {
    input_tokens: usage.input_tokens,
    cache_creation_input_tokens: usage.cache_creation_input_tokens,
    cache_read_input_tokens: usage.cache_read_input_tokens,
    cache_creation: {
      ephemeral_5m_input_tokens: usage.cache_creation_input_tokens - (usage.cache_creation_1h ?? 0),
      ephemeral_1h_input_tokens: usage.cache_creation_1h ?? 0,
    },
    output_tokens: usage.output_tokens,
    service_tier: 'standard',
  };
}

function quote(text: string, max: number): string {
  return text.length > max ? text.slice(0, max) : text;
}

function outputTokens(content: readonly ReplyBlock[]): number {
  let chars = 0;
  for (const block of content) {
    if (block.type === 'text') chars += block.text.length;
    else if (block.type === 'thinking') chars += block.thinking.length;
    else chars += JSON.stringify(block.input).length + block.name.length;
  }
  return Math.max(1, Math.ceil(chars / 4));
}

/** Real signatures are opaque base64; a hash of the thinking keeps this one stable for the same request. */
function signatureFor(thinking: string): string {
  return createHash('sha256').update(thinking).digest('base64');
}
