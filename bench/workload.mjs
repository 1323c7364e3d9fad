/**
 * What the load generator sends: requests shaped like Claude Code's, from agents whose conversations grow.
 *
 * Each agent session sends the same ~38 KB prefix Claude Code sends (system prompt as text blocks with
 * cache_control, 15 tools with JSON schemas), then its conversation. Every request appends a turn — the assistant's
 * tool call and the tool's result — and moves cache_control to the newest block, as Claude Code does, so the bytes
 * of the previous last message change between requests. After {@link TURNS_PER_SESSION} requests the agent starts a
 * new session. This is what a recording gateway's dedup meets in practice: a large prefix resent verbatim, a
 * growing tail, and one message that changes shape each turn.
 *
 * Text comes from a seeded generator, so every target is sent byte-for-byte the same sizes; only the session
 * and tool-use ids (fixed-length) are random.
 */
import { randomUUID, createHash } from 'node:crypto';
import { mulberry32 } from './prng.mjs';

/** Requests per agent session before it starts a new one (bounds how far a body grows). */
export const TURNS_PER_SESSION = 20;

const WORDS = (
  'the a to of and in is for that you use when with tool file this be not or if are on should user code it ' +
  'command must can do your as by an from any read path only run before never always output test repository ' +
  'instead commit change function directory search result content git example important will which task todo ' +
  'edit write line string parameter return error message project review make sure following absolute relative ' +
  'pattern match glob grep bash shell environment background process timeout description format markdown'
).split(' ');

function prose(rand, bytes) {
  let s = '';
  while (s.length < bytes) {
    const w = WORDS[Math.floor(rand() * WORDS.length)];
    s += s.length === 0 ? w[0].toUpperCase() + w.slice(1) : rand() < 0.08 ? `. ${w}` : ` ${w}`;
    if (rand() < 0.01) s += '.\n\n- ';
  }
  return `${s}.`;
}

const TOOL_NAMES = [
  'Task',
  'Bash',
  'Glob',
  'Grep',
  'ExitPlanMode',
  'Read',
  'Edit',
  'Write',
  'NotebookEdit',
  'WebFetch',
  'TodoWrite',
  'WebSearch',
  'BashOutput',
  'KillShell',
  'SlashCommand',
];

/** The part every request of every session shares, up to the messages. Built once. */
function buildPrefix() {
  const rand = mulberry32(0x5eed);
  const cache = { type: 'ephemeral' };
  const system = [
    { type: 'text', text: "You are Claude Code, Anthropic's official CLI for Claude.", cache_control: cache },
    { type: 'text', text: prose(rand, 10_500), cache_control: cache },
  ];
  const tools = TOOL_NAMES.map((name, i) => ({
    name,
    description: prose(rand, i < 3 ? 2_400 : 700),
    input_schema: {
      type: 'object',
      properties: {
        [i % 2 ? 'file_path' : 'command']: { type: 'string', description: prose(rand, 120) },
        description: { type: 'string', description: prose(rand, 90) },
        timeout: { type: 'number', description: 'Optional timeout in milliseconds (max 600000)' },
        options: {
          type: 'array',
          items: {
            type: 'object',
            properties: { key: { type: 'string' }, value: { type: 'string' } },
            required: ['key'],
          },
        },
      },
      required: [i % 2 ? 'file_path' : 'command'],
      additionalProperties: false,
      $schema: 'http://json-schema.org/draft-07/schema#',
    },
  }));
  // The CLAUDE.md reminder Claude Code puts in the first user turn: the same in every session of a project.
  const reminder = `<system-reminder>\nAs you answer the user's questions, you can use the following context:\n# claudeMd\n${prose(rand, 2_500)}\n</system-reminder>`;
  return { system, tools, reminder, rand };
}

const PREFIX = buildPrefix();

/** Headers Claude Code sends (a recent 2.x CLI through the Anthropic TypeScript SDK). */
function claudeCodeHeaders(sessionId) {
  return {
    accept: 'application/json',
    'content-type': 'application/json',
    'anthropic-version': '2023-06-01',
    'anthropic-beta':
      'claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,' +
      'context-management-2025-06-27,token-efficient-tools-2025-02-19,prompt-caching-scope-2026-01-05',
    'anthropic-dangerous-direct-browser-access': 'true',
    'x-api-key': 'sk-ant-api03-bench-client-key-not-a-real-key-000000000000000000000000000000000000000',
    'user-agent': 'claude-cli/2.1.14 (external, cli)',
    'x-app': 'cli',
    'x-claude-code-session-id': sessionId,
    'x-stainless-arch': 'x64',
    'x-stainless-lang': 'js',
    'x-stainless-os': 'Linux',
    'x-stainless-package-version': '0.70.0',
    'x-stainless-retry-count': '0',
    'x-stainless-runtime': 'node',
    'x-stainless-runtime-version': 'v24.3.0',
    'x-stainless-timeout': '600',
  };
}

/** Claude Code's `metadata.user_id`: `user_<sha256>_account_<uuid>_session_<uuid>`. */
function userId(sessionId) {
  const hash = createHash('sha256')
    .update(`bench-user:${sessionId.slice(0, 4)}`)
    .digest('hex');
  return `user_${hash}_account_${'8c0d7f3e-2b4a-4c55-9e1f-5a6b7c8d9e0f'}_session_${sessionId}`;
}

/** One message, serialized once with and once without cache_control on its last block. */
function message(role, content) {
  const plain = Buffer.from(JSON.stringify({ role, content }));
  const last = content.length - 1;
  const marked = Buffer.from(
    JSON.stringify({
      role,
      content: content.map((b, i) => (i === last ? { ...b, cache_control: { type: 'ephemeral' } } : b)),
    }),
  );
  return { plain, marked };
}

/**
 * One agent: each {@link AgentSession.next} is the next request of its conversation. Not thread-safe by design:
 * one agent has one request in flight, as Claude Code's main loop does.
 */
export class AgentSession {
  /**
   * @param {{ stream: boolean, seed: number }} opts
   */
  constructor(opts) {
    this.stream = opts.stream;
    this.rand = mulberry32(opts.seed);
    this.#begin();
  }

  #begin() {
    this.sessionId = randomUUID();
    this.headers = claudeCodeHeaders(this.sessionId);
    this.turns = 0;
    const head = {
      model: 'claude-sonnet-4-5-20250929',
      max_tokens: 32000,
      system: PREFIX.system,
      tools: PREFIX.tools,
      metadata: { user_id: userId(this.sessionId) },
      stream: this.stream,
      messages: [],
    };
    // Claude Code's key order puts messages first; any order is valid JSON for the API.
    const json = JSON.stringify(head);
    const cut = json.lastIndexOf('"messages":[]');
    this.before = Buffer.from(`${json.slice(0, cut)}"messages":[`);
    this.after = Buffer.from(`]${json.slice(cut + '"messages":[]'.length)}`);
    this.messages = [
      message('user', [
        { type: 'text', text: PREFIX.reminder },
        {
          type: 'text',
          text: `Please fix the failing test in src/module-${Math.floor(this.rand() * 1e6)}.ts and explain.`,
        },
      ]),
    ];
  }

  /** Append the turn an agent would: the model's tool call and the tool's result (~0.8 KB of file contents). */
  #grow() {
    const id = `toolu_01${randomUUID().replaceAll('-', '').slice(0, 22)}`;
    const path = `/home/dev/project/src/file-${Math.floor(this.rand() * 1e6)}.ts`;
    this.messages.push(
      message('assistant', [
        { type: 'text', text: prose(this.rand, 120) },
        { type: 'tool_use', id, name: 'Read', input: { file_path: path } },
      ]),
      message('user', [{ type: 'tool_result', tool_use_id: id, content: prose(this.rand, 800) }]),
    );
  }

  /** The next request: `{ headers, body }`, body as one Buffer. */
  next() {
    if (this.turns === TURNS_PER_SESSION) this.#begin();
    else if (this.turns > 0) this.#grow();
    this.turns++;
    const parts = [this.before];
    const last = this.messages.length - 1;
    this.messages.forEach((m, i) => {
      if (i > 0) parts.push(COMMA);
      parts.push(i === last ? m.marked : m.plain);
    });
    parts.push(this.after);
    return { headers: this.headers, body: Buffer.concat(parts) };
  }
}

const COMMA = Buffer.from(',');

/** Claude Code posts to `/v1/messages?beta=true`. */
export const MESSAGES_PATH = '/v1/messages?beta=true';
