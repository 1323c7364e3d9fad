/**
 * What one exchange added to a conversation, for transcripts: the turn's new input (every message after the request's
 * last assistant message) and the answer's content blocks. Shared by the CLI's plain transcript, the admin API's
 * Markdown export, the recorder's redactor, and the web UI: the admin listener serves this module, compiled, as
 * `/ui/exchange-turn.js` (ui-assets.ts), so the UI draws a turn by this rule and no copy of it. Hence it imports
 * types only and uses no Node API (its eslint rule says so).
 */
import type { ExchangeView } from './exchange-reader.js';

/** The stop reason of an answer the model declined (its safety classifiers): a 200, outcome `ok`. */
export const REFUSAL = 'refusal';

/** Whether the model declined to answer: the one rule transcripts, the UI, the SIEM and the metrics mark it by. */
export function isRefusal(stopReason: string | null | undefined): boolean {
  return stopReason === REFUSAL;
}

/**
 * An exchange's token usage as one line, as the session totals and the usage reports count it: `in` is all input, with
 * the cache's part of it — `in 1,541 (of which cache reads 1,155, writes 200) · out 2` (upstream's own `input_tokens`
 * is the uncached part). A count that is not a number (recorded JSON holds what upstream sent) counts as 0.
 */
export function usageLine(usage: Readonly<Record<string, unknown>>): string {
  const n = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const f = (v: number): string => v.toLocaleString('en-US');
  const read = n(usage['cache_read_input_tokens']);
  const write = n(usage['cache_creation_input_tokens']);
  const cache = [read ? `cache reads ${f(read)}` : '', write ? `writes ${f(write)}` : ''].filter((p) => p !== '');
  const input = n(usage['input_tokens']) + read + write;
  return `in ${f(input)}${cache.length ? ` (of which ${cache.join(', ')})` : ''} · out ${f(n(usage['output_tokens']))}`;
}

/** A cost to the cent, as tables and transcripts show it; under a cent but not nothing: `<0.01`. */
export function centsText(cost: number): string {
  return cost > 0 && cost < 0.005 ? '<0.01' : cost.toFixed(2);
}

export interface ContentBlock {
  type?: string;
  text?: string;
  thinking?: string;
  name?: string;
  input?: unknown;
  content?: unknown;
  tool_use_id?: string;
}

/** Message content as blocks (a plain string is one text block). */
export function contentBlocks(content: unknown): ContentBlock[] {
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  return Array.isArray(content) ? (content as ContentBlock[]) : [];
}

export interface TurnMessage {
  readonly role: string;
  readonly blocks: ContentBlock[];
}

export interface ExchangeTurn {
  /**
   * The messages this turn added, in order: those after the last assistant message (all of them when there is none).
   * More than one on a first turn shaped like Claude Code's, where the user's prompt is followed by a message carrying
   * the environment; the tool results sent back after an assistant's tool calls otherwise; a prefill the client wrote
   * comes last. Empty when the request carries no messages.
   */
  readonly input: readonly TurnMessage[];
  /** The answer's blocks; null when there is no message (an error, or metadata-only recording). */
  readonly output: ContentBlock[] | null;
}

/**
 * The messages a request added to its conversation: those after its last assistant message, or all of them when it
 * has none. (The last message alone is not the turn: Claude Code's first request puts the environment after the
 * user's prompt.) An assistant message that ends the request is a prefill the client wrote, part of its turn: the
 * turn then starts after the assistant message before it.
 */
export function newMessages<M>(messages: readonly M[], role: (m: M) => unknown = roleOf): M[] {
  return messages.slice(turnStart(messages.length, (i) => role(messages[i]!)));
}

/**
 * Where the turn starts among `count` messages ({@link newMessages}), reading roles from the end, only as far back as
 * the assistant message the turn follows: `roleAt` may parse a message when asked (the recorder does).
 */
export function turnStart(count: number, roleAt: (i: number) => unknown): number {
  let end = count;
  while (end > 0 && roleAt(end - 1) === 'assistant') end--;
  let start = end;
  while (start > 0 && roleAt(start - 1) !== 'assistant') start--;
  return start;
}

/** A message's `role`, if it is an object that has one. */
export function roleOf(message: unknown): unknown {
  return typeof message === 'object' && message !== null ? (message as { role?: unknown }).role : undefined;
}

export function exchangeTurn(x: ExchangeView): ExchangeTurn {
  const body = x.request.body as { messages?: unknown } | null;
  const messages = Array.isArray(body?.messages) ? (body.messages as unknown[]) : [];
  const input = newMessages(messages).map((m) => {
    const msg = (typeof m === 'object' && m !== null ? m : {}) as { role?: unknown; content?: unknown };
    return { role: typeof msg.role === 'string' ? msg.role : 'user', blocks: contentBlocks(msg.content) };
  });
  const message = (x.response.message ?? x.response.body) as { content?: unknown; type?: string } | null;
  return {
    input,
    output:
      message && message.type !== 'error' && message.content !== undefined ? contentBlocks(message.content) : null,
  };
}
