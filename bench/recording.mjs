// What recording costs as a conversation grows: the recorder and the embedded SQLite store in-process (no HTTP), fed
// Claude-Code-shaped conversations whose requests resend everything before them, at several body sizes.
// Run after `npm run build`:  node --expose-gc bench/recording.mjs
//
// Prints CPU per exchange (this process: masking, hashing, the ledger, SQLite and its checkpointer thread) for each
// size. A recorder that reads every request whole grows with the body; one that reads only what a turn added (see
// README, "Read once") grows with the turn.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { loadConfig } from '../dist/config/load-config.js';
import { Connections } from '../dist/proxy/connections.js';
import { newExchangeId } from '../dist/recorder/ids.js';
import { Recorder } from '../dist/recorder/recorder.js';
import { RequestBody } from '../dist/recorder/request-body.js';
import { openStore } from '../dist/store/open-store.js';

const SIZES_KB = process.env.SIZES_KB ? process.env.SIZES_KB.split(',').map(Number) : [50, 150, 300, 600];
const TURNS = 20;
/** What each turn adds: the model's tool call and a ~4 KB tool result. */
const TURN_BYTES = 4096;

const WORDS = 'the of and to in is that for it as with was on be by this are or from at an but not have which'.split(
  ' ',
);
let seed = 1;
const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
const prose = (bytes) => {
  const out = [];
  for (let n = 0; n < bytes;) {
    const w = rand() < 0.1 ? `id${Math.floor(rand() * 1e6)}` : WORDS[Math.floor(rand() * WORDS.length)];
    out.push(w);
    n += w.length + 1;
  }
  return out.join(' ');
};

function conversation(sizeKb, n) {
  const sessionId = `bench-recording-${sizeKb}-${n}`;
  const messages = [{ role: 'user', content: [{ type: 'text', text: `Fix the failing test (${n}).` }] }];
  // History up to the size asked: earlier turns, as a long session has them.
  const system = [{ type: 'text', text: prose(12_000) }];
  const tools = [{ name: 'Read', description: prose(2_000), input_schema: { type: 'object' } }];
  let turn = 0;
  const grow = () => {
    const id = `toolu_${n}_${turn++}`;
    messages.push(
      { role: 'assistant', content: [{ type: 'tool_use', id, name: 'Read', input: { file_path: `/src/${id}.ts` } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: id, content: prose(TURN_BYTES) }] },
    );
  };
  const body = () =>
    Buffer.from(
      JSON.stringify({ model: 'claude-sonnet-4-5', messages, system, tools, max_tokens: 32000, stream: false }),
    );
  while (body().length < sizeKb * 1024) grow();
  return { sessionId, next: () => (grow(), body()) };
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-recording-'));
const configFile = path.join(dir, 'vigil.yaml');
writeFileSync(configFile, 'connections:\n  - name: anthropic\n    credential: { env: ANTHROPIC_API_KEY }\n');
process.env.ANTHROPIC_API_KEY ??= 'bench';
const config = loadConfig({ configFile, dataDir: path.join(dir, 'data'), upstream: 'http://127.0.0.1:9' });
const store = await openStore(config, { gateway: {} });
const recorder = new Recorder(store, {
  log: pino({ level: 'silent' }),
  maxRecordedResponseBody: config.limits.max_recorded_response_body,
});
const connection = new Connections(config).default;
const response = Buffer.from(
  JSON.stringify({
    id: 'msg_1',
    type: 'message',
    role: 'assistant',
    model: 'claude-sonnet-4-5',
    content: [{ type: 'text', text: prose(600) }],
    stop_reason: 'end_turn',
    usage: { input_tokens: 12000, output_tokens: 150 },
  }),
);

async function exchange(sessionId, raw) {
  const rec = await recorder.begin({
    exchangeId: newExchangeId(),
    connection: connection.name,
    principal: { method: 'anonymous', subject: 'anonymous' },
    clientAddress: '127.0.0.1',
    method: 'POST',
    path: '/v1/messages',
    query: 'beta=true',
    headers: { 'content-type': 'application/json', 'x-claude-code-session-id': sessionId, 'user-agent': 'claude-cli' },
    body: RequestBody.received(raw, 'application/json'),
    bestEffort: false,
    level: connection.config.record,
    redactor: connection.redactor,
  });
  rec.responseStarted(200, { 'content-type': 'application/json' });
  rec.chunk(response);
  await rec.finish();
}

console.log('| request body | exchanges | CPU ms per exchange | body MB/s of CPU |');
console.log('| ---: | ---: | ---: | ---: |');
for (const kb of SIZES_KB) {
  // Two conversations warm up the JIT and the caches at this size; three are measured. Their bodies are built first,
  // and their garbage collected, before the clock starts: serialising a 600 KB conversation costs about what
  // recording it does.
  const runs = [0, 1, 2, 3, 4].map((n) => {
    const c = conversation(kb, n);
    return { sessionId: c.sessionId, bodies: Array.from({ length: TURNS }, () => c.next()) };
  });
  globalThis.gc?.();
  let bytes = 0;
  let exchanges = 0;
  let cpu = 0;
  for (const [i, c] of runs.entries()) {
    const t0 = process.cpuUsage();
    for (const raw of c.bodies) await exchange(c.sessionId, raw);
    await recorder.queue.flush();
    const used = process.cpuUsage(t0);
    if (i < 2) continue;
    cpu += (used.user + used.system) / 1000;
    bytes += c.bodies.reduce((n, raw) => n + raw.length, 0);
    exchanges += TURNS;
  }
  const avgKb = bytes / exchanges / 1024;
  console.log(
    `| ${avgKb.toFixed(0)} KB | ${exchanges} | ${(cpu / exchanges).toFixed(3)} | ${(bytes / 1e6 / (cpu / 1000)).toFixed(0)} |`,
  );
}
await recorder.close?.();
await store.close();
rmSync(dir, { recursive: true, force: true });
