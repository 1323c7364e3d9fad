// Masking throughput on a realistic Claude Code request body (~40 KB: system prompt prose, tool JSON schemas, code).
// Run after `npm run build`:  node bench/masking.mjs
import { compileMasker } from '../dist/recorder/masking/masker.js';
import { maskingConfigSchema } from '../dist/recorder/masking/masking-config.js';
import { createMaskingMemo } from '../dist/recorder/masking/masking-memo.js';
import { StreamMasker } from '../dist/recorder/masking/stream-masker.js';

const SENTENCES = [
  'You are an interactive CLI tool that helps users with software engineering tasks.',
  'Use the instructions below and the tools available to you to assist the user.',
  'IMPORTANT: Assist with defensive security tasks only. Refuse to create code that may be used maliciously.',
  'When the user asks about a file, read it with the Read tool before answering; never guess at its contents.',
  'Keep your responses short, since they will be displayed on a command line interface.',
  'Only use emojis if the user explicitly requests it. Avoid using emojis in all communication unless asked.',
  'If you cannot or will not help the user with something, do not say why or what it could lead to.',
  'Before you begin work, think about what the code you are editing is supposed to do based on the filenames and directory structure.',
  'Never introduce code that exposes or logs secrets and keys. Never commit secrets or keys to the repository.',
  "When making changes to files, first understand the file's code conventions; mimic code style and use existing libraries.",
  'You MUST answer concisely with fewer than 4 lines of text, unless the user asks for detail.',
  'Run the lint and typecheck commands (eg. npm run lint, npm run typecheck, ruff) after completing a task, if they were provided.',
];
const prose = (n) => Array.from({ length: n }, (_, i) => SENTENCES[(i * 7) % SENTENCES.length]).join(' ');

const tool = (name, description, props) => ({
  name,
  description,
  input_schema: {
    type: 'object',
    properties: Object.fromEntries(props.map(([k, t, d]) => [k, { type: t, description: d }])),
    required: [props[0][0]],
    additionalProperties: false,
    $schema: 'http://json-schema.org/draft-07/schema#',
  },
});
const tools = [
  tool('Bash', prose(14), [
    ['command', 'string', 'The command to execute'],
    ['timeout', 'number', 'Optional timeout in milliseconds (max 600000)'],
    ['description', 'string', 'Clear, concise description of what this command does in 5-10 words'],
  ]),
  tool('Read', prose(10), [
    ['file_path', 'string', 'The absolute path to the file to read'],
    ['offset', 'number', 'The line number to start reading from'],
    ['limit', 'number', 'The number of lines to read'],
  ]),
  tool('Edit', prose(12), [
    ['file_path', 'string', 'The absolute path to the file to modify'],
    ['old_string', 'string', 'The text to replace'],
    ['new_string', 'string', 'The text to replace it with'],
    ['replace_all', 'boolean', 'Replace all occurences of old_string (default false)'],
  ]),
  tool('Write', prose(8), [
    ['file_path', 'string', 'The absolute path to the file to write'],
    ['content', 'string', 'The content to write to the file'],
  ]),
  tool('Grep', prose(12), [
    ['pattern', 'string', 'The regular expression pattern to search for in file contents'],
    ['path', 'string', 'File or directory to search in'],
    ['glob', 'string', 'Glob pattern to filter files (e.g. "*.js", "*.{ts,tsx}")'],
  ]),
  tool('Glob', prose(6), [
    ['pattern', 'string', 'The glob pattern to match files against'],
    ['path', 'string', 'The directory to search in'],
  ]),
  tool('TodoWrite', prose(16), [['todos', 'array', 'The updated todo list']]),
  tool('WebFetch', prose(8), [
    ['url', 'string', 'The URL to fetch content from'],
    ['prompt', 'string', 'The prompt to run on the fetched content'],
  ]),
];

const CODE = `import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Options { port: number; host: string; password?: string; token?: string }

export async function start(options: Options): Promise<AddressInfo> {
  const server = createServer((req, res) => {
    if (req.headers.authorization !== \`Bearer \${options.token}\`) { res.statusCode = 401; return res.end(); }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ ok: true, version: '1.4.2', uptime: process.uptime() }));
  });
  await new Promise<void>((resolve) => server.listen(options.port, options.host, resolve));
  return server.address() as AddressInfo;
}
`;

function body(turns) {
  const messages = [];
  for (let t = 0; t < turns; t++) {
    messages.push({
      role: 'user',
      content: [
        { type: 'text', text: `Turn ${t}: please fix the failing test in src/server.ts and explain. ${prose(2)}` },
      ],
    });
    messages.push({
      role: 'assistant',
      content: [
        { type: 'text', text: `I'll read the file first. ${prose(1)}` },
        {
          type: 'tool_use',
          id: `toolu_01${t}abcdef`,
          name: 'Read',
          input: { file_path: '/home/dev/app/src/server.ts' },
        },
      ],
    });
    messages.push({
      role: 'user',
      content: [{ type: 'tool_result', tool_use_id: `toolu_01${t}abcdef`, content: CODE.repeat(t % 3 === 0 ? 2 : 1) }],
    });
  }
  messages.push({ role: 'user', content: 'Thanks! Also email the report to dana.lee@corp-mail.com when done.' });
  return {
    model: 'claude-sonnet-4-5',
    max_tokens: 32000,
    stream: true,
    metadata: { user_id: 'user_0f3a_account_7c1e_session_9b2d' },
    system: [{ type: 'text', text: prose(90), cache_control: { type: 'ephemeral' } }],
    tools,
    messages,
  };
}

function bench(label, bytes, fn, ms = 1500) {
  for (let i = 0; i < 20; i++) fn(i);
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    fn(n++);
    t = performance.now();
  }
  const sec = (t - t0) / 1000;
  const mbps = (bytes * n) / sec / 1e6;
  console.log(
    `${label.padEnd(58)} ${((sec * 1000) / n).toFixed(3).padStart(8)} ms/op  ${mbps.toFixed(1).padStart(8)} MB/s`,
  );
}

const masker = compileMasker(maskingConfigSchema.parse({}));
const req = body(10);
const json = JSON.stringify(req);
const bytes = Buffer.byteLength(json);
console.log(`body: ${(bytes / 1024).toFixed(1)} KB, ${req.messages.length} messages, ${req.tools.length} tools`);
const check = masker.maskJson(req);
console.log(`findings: ${JSON.stringify(check.findings)}`);

bench('maskJson, no memo (every string scanned)', bytes, () => masker.maskJson(req));
bench('maskText on the serialised body (one 40 KB string)', bytes, () => masker.maskText(json));

// Turn N of a session: the same history plus one new message, through a session memo.
const memo = createMaskingMemo(20_000);
masker.maskJson(req, '$', memo);
const next = (i) => ({
  ...req,
  messages: [...req.messages, { role: 'user', content: `follow-up question number ${i} about the server` }],
});
bench('maskJson, session memo, turn N (history seen at N-1)', bytes, (i) => masker.maskJson(next(i), '$', memo));

// A streamed answer: 20 KB of assistant text in ~10-character text_delta fragments.
const answer = `${prose(40)}\n\n\`\`\`ts\n${CODE}\`\`\`\n${prose(40)}`.slice(0, 20_000);
const deltas = answer.match(/[\s\S]{1,10}/g);
bench('StreamMasker, 20 KB in 10-char deltas', Buffer.byteLength(answer), () => {
  const s = new StreamMasker(masker);
  for (const d of deltas) s.push(d);
  s.end();
});
