/**
 * Reading what a test (or a person in a sandbox) asked the fake to do, from the conversation itself.
 *
 * Directives live in the text of the last user message so that a client which cannot set headers — Claude Code
 * typing a prompt — can still steer the fake: `[[tool:Bash {"command":"echo hi"}]]` asks for a tool call,
 * `[[scenario:rate_limit]]` for a failure mode.
 */

/** One message of a Messages API request, as far as the fake needs to understand it. */
export interface InputMessage {
  role?: unknown;
  content?: unknown;
}

/** A tool call the user asked the fake to make. */
export interface ToolDirective {
  name: string;
  input: Record<string, unknown>;
}

/** The last message whose role is `user`, which is the turn the fake is answering. */
export function lastUserMessage(messages: readonly unknown[]): InputMessage | undefined {
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (isObject(m) && m['role'] === 'user') return m;
  }
  return undefined;
}

/** The text of a message: the string itself, or its `text` blocks joined by newlines. */
export function messageText(message: InputMessage | undefined): string {
  const content = message?.content;
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  const parts: string[] = [];
  for (const block of content) {
    if (isObject(block) && block['type'] === 'text' && typeof block['text'] === 'string') parts.push(block['text']);
  }
  return parts.join('\n');
}

/**
 * The text of every `tool_result` block in a message, joined by newlines; `undefined` when there is none.
 * A result's `content` may be a string or an array of blocks, of which only text is kept.
 */
export function toolResultText(message: InputMessage | undefined): string | undefined {
  const content = message?.content;
  if (!Array.isArray(content)) return undefined;
  let found = false;
  const parts: string[] = [];
  for (const block of content) {
    if (!isObject(block) || block['type'] !== 'tool_result') continue;
    found = true;
    const inner = block['content'];
    if (typeof inner === 'string') parts.push(inner);
    else if (Array.isArray(inner)) parts.push(messageText({ content: inner }));
  }
  return found ? parts.join('\n') : undefined;
}

/**
 * Claude Code wraps context it injects into the user turn in `<system-reminder>` tags; echoing that back would
 * bury what the person typed, so the echo leaves it out.
 */
export function withoutSystemReminders(text: string): string {
  return text.replace(/<system-reminder>[\s\S]*?<\/system-reminder>\s*/g, '').trim();
}

const SCENARIO = /\[\[scenario:([^\]\s]+)\]\]/;

/** The `NAME` of the first `[[scenario:NAME]]` in `text`, e.g. `rate_limit` or `slow:20`. */
export function scenarioDirective(text: string): string | undefined {
  return SCENARIO.exec(text)?.[1];
}

const TOOL_OPEN = '[[tool:';
const TOOL_NAME = /^[A-Za-z0-9_-]+/;

/**
 * The first well-formed `[[tool:NAME {json}]]` in `text` (the JSON object is optional and defaults to `{}`).
 * The JSON is delimited by matching braces rather than by the closing `]]`, because the input itself may
 * contain `]]` (think of a shell command with `[[ … ]]`).
 */
export function toolDirective(text: string): ToolDirective | undefined {
  let from = 0;
  for (;;) {
    const open = text.indexOf(TOOL_OPEN, from);
    if (open < 0) return undefined;
    from = open + TOOL_OPEN.length;
    const name = TOOL_NAME.exec(text.slice(from, from + 200))?.[0];
    if (name === undefined) continue;
    let i = skipSpaces(text, from + name.length);
    let input: Record<string, unknown> = {};
    if (text[i] === '{') {
      const end = endOfJsonObject(text, i);
      if (end < 0) continue;
      try {
        const parsed: unknown = JSON.parse(text.slice(i, end));
        if (!isObject(parsed)) continue;
        input = parsed;
      } catch {
        continue; // Not JSON after all: look for a later directive.
      }
      i = skipSpaces(text, end);
    }
    if (text.startsWith(']]', i)) return { name, input };
  }
}

function skipSpaces(text: string, i: number): number {
  while (i < text.length && /\s/.test(text[i]!)) i++;
  return i;
}

/** Index just past the `}` that closes the object opening at `start`, honouring strings and escapes; -1 if none. */
function endOfJsonObject(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

/** A plain JSON object (not null, not an array). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
