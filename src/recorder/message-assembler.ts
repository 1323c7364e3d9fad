/**
 * Assembles the Anthropic `Message` a streamed response amounts to, from its decoded server-sent events.
 *
 * It follows what the official SDK's `MessageStream` does with the same events (`lib/MessageStream` in
 * @anthropic-ai/sdk), so what Vigil records is what the client saw, with three differences that suit a recorder:
 * it never throws (bad input is noted in `problems`), it keeps going after a cut (`message()` is valid mid-stream),
 * and a tool input that is still partial JSON is kept as its raw text rather than guessed at.
 * https://docs.anthropic.com/en/docs/build-with-claude/streaming
 *
 * Each event costs time in proportion to its own size: deltas are collected in arrays and joined only when
 * `message()` is called, and each block's joined form is cached until that block changes again.
 */
import type { SseEvent } from './sse-decoder.js';

/** Token usage, as `message_start` reports it and `message_delta` updates it. Unknown fields are kept. */
export interface Usage {
  readonly input_tokens?: number;
  readonly output_tokens?: number;
  readonly cache_creation_input_tokens?: number | null;
  readonly cache_read_input_tokens?: number | null;
  readonly cache_creation?: { readonly [ttl: string]: unknown } | null;
  readonly server_tool_use?: { readonly [tool: string]: unknown } | null;
  readonly service_tier?: string | null;
  readonly [field: string]: unknown;
}

/** A `text` block; `citations` grows by `citations_delta`. */
export interface TextBlock {
  readonly type: 'text';
  readonly text: string;
  readonly citations?: readonly unknown[] | null;
  readonly [field: string]: unknown;
}

/** A `tool_use` or `server_tool_use` block. */
export interface ToolUseBlock {
  readonly type: 'tool_use' | 'server_tool_use';
  readonly id: string;
  readonly name: string;
  /** The parsed input; `{}` while the input is still arriving or if it never became valid JSON. */
  readonly input: unknown;
  /** The raw input JSON received so far, present only while it is incomplete (or was invalid at the block's end). */
  readonly input_json_partial?: string;
  readonly [field: string]: unknown;
}

/** A `thinking` block; `signature` is set by `signature_delta`. */
export interface ThinkingBlock {
  readonly type: 'thinking';
  readonly thinking: string;
  readonly signature: string;
  readonly [field: string]: unknown;
}

/** A `redacted_thinking` block, kept exactly as `content_block_start` gave it. */
export interface RedactedThinkingBlock {
  readonly type: 'redacted_thinking';
  readonly data: string;
  readonly [field: string]: unknown;
}

/** Any other block type (server tool results, future types), kept as `content_block_start` gave it. */
export interface OtherBlock {
  readonly type: string;
  readonly [field: string]: unknown;
}

export type ContentBlock = TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock | OtherBlock;

/** The message as assembled so far. Fields of `message_start` not named here (e.g. `container`) are kept. */
export interface AssembledMessage {
  readonly id: string;
  readonly type: string;
  readonly role: string;
  readonly model: string;
  readonly content: readonly ContentBlock[];
  readonly stop_reason: string | null;
  readonly stop_sequence: string | null;
  readonly usage: Usage;
  readonly [field: string]: unknown;
}

/** An `error` event's error, as the API sends it mid-stream (e.g. `overloaded_error`). */
export interface StreamError {
  readonly type: string;
  readonly message: string;
}

type Json = Record<string, unknown>;

/** How a block grows; decided once at `content_block_start`. */
type BlockKind = 'text' | 'tool' | 'thinking' | 'fixed';

interface BlockState {
  readonly kind: BlockKind;
  /** The block as `content_block_start` gave it. */
  readonly start: Json;
  /** text / thinking deltas, or tool input JSON fragments. Collapsed to one part when joined. */
  parts: string[];
  /** A tool block has had at least one `input_json_delta` (even an empty one), so `input` comes from them. */
  sawJson: boolean;
  citations: unknown[] | null;
  signature: string | null;
  /** The tool input parsed at `content_block_stop`; `undefined` while the block is open or if it was invalid. */
  input: unknown;
  stopped: boolean;
  /** The block as last built by `message()`, until the block changes. */
  built: ContentBlock | null;
}

/** Past this many, problems are counted rather than kept: a broken stream must not grow memory without bound. */
const MAX_PROBLEMS = 100;

/** Assembles one streamed message; feed it every decoded event with {@link MessageAssembler.push}. */
export class MessageAssembler {
  private base: Json | null = null;
  private mergedUsage: Json | null = null;
  private readonly blocks: BlockState[] = [];
  private cached: AssembledMessage | null = null;
  private streamError: StreamError | null = null;
  private readonly problemList: string[] = [];
  private droppedProblems = 0;
  private eventCount = 0;
  private stopped = false;

  /** `stop_reason` from `message_delta` (or `message_start`); `null` until the model stops. */
  get stopReason(): string | null {
    const reason = this.base?.['stop_reason'];
    return typeof reason === 'string' ? reason : null;
  }

  /** Usage from `message_start`, with the fields of each `message_delta.usage` laid over it; `null` before it. */
  get usage(): Usage | null {
    return this.mergedUsage;
  }

  /** The error of an `error` event, if the stream carried one. */
  get error(): StreamError | null {
    return this.streamError;
  }

  /** What was wrong with the stream (malformed JSON, events out of order …), in order; empty for a sound stream. */
  get problems(): readonly string[] {
    return this.problemList;
  }

  /** Whether `message_stop` arrived: the message is complete. */
  get complete(): boolean {
    return this.stopped;
  }

  /** Feed one decoded event. Never throws on bad input: the problem is recorded in `problems` instead. */
  push(event: SseEvent, parsed?: unknown): void {
    const n = this.eventCount++;
    // `ping` keeps a connection alive; an event with no `event:` field is skipped by the SDK too.
    if (event.type === 'ping' || event.type === 'message') return;
    this.cached = null;

    let body: unknown = parsed;
    try {
      // The recorder may have parsed the data already (for masking): parse once per event.
      if (body === undefined) body = JSON.parse(event.data);
    } catch (err) {
      this.problem(n, event.type, `malformed JSON: ${(err as Error).message}`);
      // An error event is kept as an error even unreadable: the stream failed either way.
      if (event.type === 'error') this.streamError = { type: 'unknown_error', message: event.data.slice(0, 1000) };
      return;
    }
    if (!isObject(body)) {
      this.problem(n, event.type, 'data is not a JSON object');
      if (event.type === 'error') this.streamError = { type: 'unknown_error', message: event.data.slice(0, 1000) };
      return;
    }
    if (event.type === 'error') {
      this.onError(n, body);
      return;
    }
    // The SDK dispatches on the data's own `type`; the SSE event name is the same in every stream the API sends.
    const type = typeof body['type'] === 'string' ? body['type'] : event.type;
    if (type !== event.type) this.problem(n, event.type, `data has type ${JSON.stringify(type)}`);

    if (type === 'message_start') {
      this.onMessageStart(n, body);
      return;
    }
    if (this.base === null) {
      this.problem(n, type, 'before message_start; ignored');
      return;
    }
    if (this.stopped) {
      this.problem(n, type, 'after message_stop; ignored');
      return;
    }
    switch (type) {
      case 'content_block_start':
        this.onBlockStart(n, body);
        return;
      case 'content_block_delta':
        this.onBlockDelta(n, body);
        return;
      case 'content_block_stop':
        this.onBlockStop(n, body);
        return;
      case 'message_delta':
        this.onMessageDelta(n, body);
        return;
      case 'message_stop':
        this.stopped = true;
        return;
      case 'ping':
        return;
      default:
        // New event types are added to the API from time to time; skipping them is what the SDK does.
        return;
    }
  }

  /**
   * The message so far, or `null` before `message_start`. Valid mid-stream (e.g. for a stream cut short): an open
   * tool block has `input: {}` and its raw JSON so far in `input_json_partial`. The result is cached until the next
   * `push`, and shares unchanged blocks with earlier results: treat it as read-only.
   */
  message(): AssembledMessage | null {
    if (this.cached !== null) return this.cached;
    if (this.base === null) return null;
    const content: ContentBlock[] = new Array<ContentBlock>(this.blocks.length);
    for (let i = 0; i < this.blocks.length; i++) content[i] = this.build(this.blocks[i]!);
    this.cached = { ...this.base, content, usage: this.mergedUsage ?? {} } as unknown as AssembledMessage;
    return this.cached;
  }

  private onError(n: number, body: Json): void {
    const error = body['error'];
    if (isObject(error) && typeof error['type'] === 'string') {
      this.streamError = {
        type: error['type'],
        message: typeof error['message'] === 'string' ? error['message'] : '',
      };
    } else {
      this.problem(n, 'error', 'no error.type');
      this.streamError = { type: 'unknown_error', message: JSON.stringify(body) };
    }
  }

  private onMessageStart(n: number, body: Json): void {
    if (this.base !== null) {
      this.problem(n, 'message_start', 'a second message_start; ignored');
      return;
    }
    const message = body['message'];
    if (!isObject(message)) {
      this.problem(n, 'message_start', 'no message object');
      return;
    }
    const { content, usage, ...rest } = message;
    this.base = rest;
    this.mergedUsage = isObject(usage) ? { ...usage } : {};
    // The API opens with empty content; blocks given here anyway are kept, as the SDK keeps them.
    if (Array.isArray(content)) {
      for (const block of content) if (isObject(block)) this.blocks.push(newBlock(block));
    }
  }

  private onMessageDelta(n: number, body: Json): void {
    const delta = body['delta'];
    if (isObject(delta)) {
      for (const key in delta) {
        if (key === '__proto__') continue; // JSON.parse makes it an own key; assigning it would swap a prototype
        const value = delta[key];
        // As in the SDK: a null `container` does not clear one set earlier.
        if (key === 'container' && value == null) continue;
        this.base![key] = value;
      }
    } else {
      this.problem(n, 'message_delta', 'no delta object');
    }
    const usage = body['usage'];
    if (isObject(usage)) {
      // Counters in message_delta are cumulative totals, omitted or null when they don't apply: overwrite, never add.
      // Copied, not changed in place: earlier `usage` and `message()` results are in callers' hands.
      const merged = { ...this.mergedUsage };
      for (const key in usage) {
        if (key === '__proto__') continue;
        const value = usage[key];
        if (value != null) merged[key] = value;
      }
      this.mergedUsage = merged;
    }
  }

  private onBlockStart(n: number, body: Json): void {
    const block = body['content_block'];
    if (!isObject(block) || typeof block['type'] !== 'string') {
      this.problem(n, 'content_block_start', 'no content_block with a type');
      return;
    }
    const index = body['index'];
    // Like the SDK, append; the index only matters if it disagrees.
    if (index !== this.blocks.length) {
      this.problem(n, 'content_block_start', `index ${JSON.stringify(index)} where ${this.blocks.length} was next`);
    }
    this.blocks.push(newBlock(block));
  }

  private onBlockDelta(n: number, body: Json): void {
    const state = this.blockAt(n, 'content_block_delta', body['index']);
    if (state === undefined) return;
    const delta = body['delta'];
    if (!isObject(delta) || typeof delta['type'] !== 'string') {
      this.problem(n, 'content_block_delta', 'no delta with a type');
      return;
    }
    const deltaType = delta['type'];
    let field: string;
    let expected: BlockKind;
    switch (deltaType) {
      case 'text_delta':
        field = 'text';
        expected = 'text';
        break;
      case 'citations_delta':
        field = 'citation';
        expected = 'text';
        break;
      case 'input_json_delta':
        field = 'partial_json';
        expected = 'tool';
        break;
      case 'thinking_delta':
        field = 'thinking';
        expected = 'thinking';
        break;
      case 'signature_delta':
        field = 'signature';
        expected = 'thinking';
        break;
      default:
        this.problem(n, 'content_block_delta', `unknown delta type ${JSON.stringify(deltaType)}; ignored`);
        return;
    }
    if (state.kind !== expected) {
      this.problem(n, 'content_block_delta', `${deltaType} for a ${String(state.start['type'])} block; ignored`);
      return;
    }
    if (state.stopped) this.problem(n, 'content_block_delta', 'after content_block_stop');
    const value = delta[field];
    if (deltaType === 'citations_delta') {
      (state.citations ??= []).push(value);
    } else if (typeof value !== 'string') {
      this.problem(n, 'content_block_delta', `${deltaType} without a string ${field}; ignored`);
      return;
    } else if (deltaType === 'signature_delta') {
      state.signature = value;
    } else {
      state.parts.push(value);
      if (expected === 'tool') {
        state.sawJson = true;
        state.input = undefined;
      }
    }
    state.built = null;
  }

  private onBlockStop(n: number, body: Json): void {
    const state = this.blockAt(n, 'content_block_stop', body['index']);
    if (state === undefined) return;
    state.stopped = true;
    state.built = null;
    if (state.kind !== 'tool' || !state.sawJson) return;
    const json = joinParts(state);
    // The API sends an empty input as no JSON at all, or as whitespace; the SDK reads both as {}.
    if (json.trim() === '') {
      state.input = {};
      return;
    }
    try {
      state.input = JSON.parse(json);
    } catch (err) {
      this.problem(n, 'content_block_stop', `tool input is not valid JSON: ${(err as Error).message}`);
    }
  }

  private blockAt(n: number, type: string, index: unknown): BlockState | undefined {
    const state = typeof index === 'number' ? this.blocks[index] : undefined;
    if (state === undefined) this.problem(n, type, `no open block at index ${JSON.stringify(index)}; ignored`);
    return state;
  }

  private build(state: BlockState): ContentBlock {
    if (state.built !== null) return state.built;
    let block: Json;
    switch (state.kind) {
      case 'text':
        block = { ...state.start, text: joinParts(state) };
        if (state.citations !== null) {
          const given = state.start['citations'];
          // A copy: the state's array grows on, and an earlier message() result must not change with it.
          const earlier = Array.isArray(given) ? (given as unknown[]) : [];
          block['citations'] = [...earlier, ...state.citations];
        }
        break;
      case 'thinking':
        block = { ...state.start, thinking: joinParts(state) };
        if (state.signature !== null) block['signature'] = state.signature;
        break;
      case 'tool':
        if (!state.sawJson) {
          block = { ...state.start };
        } else if (state.input !== undefined) {
          block = { ...state.start, input: state.input };
        } else {
          // Still arriving (or invalid at its end): keep the raw text rather than guess at a partial parse.
          block = { ...state.start, input: {}, input_json_partial: joinParts(state) };
        }
        break;
      case 'fixed':
        block = state.start;
        break;
    }
    state.built = block as ContentBlock;
    return state.built;
  }

  private problem(n: number, type: string, what: string): void {
    if (this.problemList.length < MAX_PROBLEMS) {
      this.problemList.push(`event ${n} (${type}): ${what}`);
    } else if (this.droppedProblems++ === 0) {
      this.problemList.push(`further problems not recorded (more than ${MAX_PROBLEMS})`);
    }
  }
}

/**
 * Assemble a message from events already decoded, e.g. when re-reading a recorded stream.
 *
 * @returns the message, or `null` if the events hold no `message_start`.
 */
export function assembleFromEvents(events: Iterable<SseEvent>): AssembledMessage | null {
  const assembler = new MessageAssembler();
  for (const event of events) assembler.push(event);
  return assembler.message();
}

function newBlock(start: Json): BlockState {
  const type = start['type'];
  let kind: BlockKind;
  const parts: string[] = [];
  if (type === 'text') {
    kind = 'text';
    if (typeof start['text'] === 'string' && start['text'] !== '') parts.push(start['text']);
  } else if (type === 'thinking') {
    kind = 'thinking';
    if (typeof start['thinking'] === 'string' && start['thinking'] !== '') parts.push(start['thinking']);
  } else if (type === 'tool_use' || type === 'server_tool_use') {
    kind = 'tool';
  } else {
    kind = 'fixed';
  }
  return {
    kind,
    start: { ...start },
    parts,
    sawJson: false,
    citations: null,
    signature: null,
    input: undefined,
    stopped: false,
    built: null,
  };
}

/** The parts joined, collapsed to one so a later join starts from it rather than from every delta again. */
function joinParts(state: BlockState): string {
  const { parts } = state;
  if (parts.length === 0) return '';
  if (parts.length > 1) {
    const joined = parts.join('');
    state.parts = [joined];
    return joined;
  }
  return parts[0]!;
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
