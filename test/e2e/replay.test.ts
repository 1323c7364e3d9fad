/**
 * Replay: a session recorded through the gateway is answered again by the replay server, so the same client code
 * (the official SDK, or Claude Code itself) gets the same answers without calling Claude; and resend: a recorded
 * request sent again through a gateway connection, with the fresh answer diffed against the recorded one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Anthropic, { APIError } from '@anthropic-ai/sdk';
import type { Message, MessageParam, Tool } from '@anthropic-ai/sdk/resources/messages';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExchangeView } from '../../src/recorder/exchange-reader.js';
import { startReplayServer, type ReplayLog, type ReplayServer } from '../../src/replay/replay-server.js';
import { resendExchange } from '../../src/replay/resend.js';
import { runAgent } from '../support/agent.js';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';

const MODEL = 'claude-sonnet-4-6';
const weather: Tool = {
  name: 'get_weather',
  description: 'Weather in a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } } },
};

interface Prompts {
  readonly first: string;
  readonly toolResult: string;
}
const RECORDED: Prompts = { first: 'hello replay', toolResult: '18°C and sunny' };

/** One client session: plain and streamed turns, a tool call and its result, a token count, and a slow stream. */
async function converse(
  client: Anthropic,
  prompts: Prompts = RECORDED,
): Promise<{ messages: Message[]; tokens: number }> {
  const messages: Message[] = [];
  const history: MessageParam[] = [{ role: 'user', content: prompts.first }];
  const first = await client.messages.create({ model: MODEL, max_tokens: 200, messages: history });
  messages.push(first);
  history.push({ role: 'assistant', content: first.content });
  history.push({ role: 'user', content: 'What is the weather? [[tool:get_weather {"city":"Paris"}]]' });
  const toolTurn = await client.messages
    .stream({ model: MODEL, max_tokens: 200, messages: history, tools: [weather] })
    .finalMessage();
  messages.push(toolTurn);
  const call = toolTurn.content.find((b) => b.type === 'tool_use')!;
  history.push({ role: 'assistant', content: toolTurn.content });
  history.push({ role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: prompts.toolResult }] });
  const answer = await client.messages.create({ model: MODEL, max_tokens: 200, messages: history, tools: [weather] });
  messages.push(answer);
  const { input_tokens: tokens } = await client.messages.countTokens({ model: MODEL, messages: history });
  messages.push(await slowTurn(client));
  return { messages, tokens };
}

/** A streamed answer the fake sends with 30 ms between events. */
function slowTurn(client: Anthropic): Promise<Message> {
  return client.messages
    .stream({
      model: MODEL,
      max_tokens: 200,
      messages: [{ role: 'user', content: 'take your time [[scenario:slow:30]]' }],
    })
    .finalMessage();
}

const sdk = (baseURL: string, session?: string) =>
  new Anthropic({
    baseURL,
    apiKey: CLIENT_KEY,
    maxRetries: 0,
    ...(session ? { defaultHeaders: { 'x-vigil-session': session } } : {}),
  });

let h: Harness;
let recorded: { messages: Message[]; tokens: number };
let xs: ExchangeView[];
const servers: ReplayServer[] = [];
const replay = async (
  speed: number,
  exchanges: readonly ExchangeView[] = xs,
  log?: ReplayLog,
): Promise<ReplayServer> => {
  const s = await startReplayServer({ exchanges, speed, ...(log ? { log } : {}) });
  servers.push(s);
  return s;
};

beforeAll(async () => {
  h = await startHarness();
  recorded = await converse(sdk(h.url, 'replay-sdk'));
  xs = await h.session('replay-sdk', 5);
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await h?.close();
});

describe('replay serve', () => {
  it('answers the same SDK code with the recorded answers, without calling upstream', async () => {
    const upstreamCalls = h.fake.requests.length;
    const server = await replay(0);
    const replayed = await converse(sdk(server.url));
    expect(replayed).toEqual(recorded);
    expect(server.served).toBe(5);
    expect(h.fake.requests.length).toBe(upstreamCalls);

    // What the SDK assembled from the replayed stream is the message the recorder assembled from the original one.
    expect(xs[1]!.response.stream).toBe(true);
    const { parsed_output: _parsed, ...streamed } = replayed.messages[1] as Message & { parsed_output?: unknown };
    expect(JSON.parse(JSON.stringify(streamed))).toEqual(xs[1]!.response.message);
    expect(replayed.messages[1]!.stop_reason).toBe('tool_use');
  });

  it('sends the recorded upstream headers and status', async () => {
    const server = await replay(0);
    const { response, data } = await sdk(server.url)
      .messages.create({ model: MODEL, max_tokens: 200, messages: [{ role: 'user', content: RECORDED.first }] })
      .withResponse();
    expect(response.status).toBe(200);
    expect(response.headers.get('request-id')).toBe(xs[0]!.response.headers?.['request-id']);
    expect(response.headers.get('x-vigil-replay-of')).toBe(xs[0]!.id);
    expect(data).toEqual(recorded.messages[0]);
  });

  it('keeps the recorded timing at speed 1, and goes as fast as it can at speed 0', async () => {
    const slow = xs[4]!;
    const events = slow.response.events;
    const span = events.at(-1)!.offset_ms - events[0]!.offset_ms;
    expect(span).toBeGreaterThan(150); // the fake paused 30 ms between events

    const timed = async (speed: number): Promise<{ ms: number; message: Message }> => {
      const server = await replay(speed);
      const t0 = performance.now();
      const message = await slowTurn(sdk(server.url));
      return { ms: performance.now() - t0, message };
    };
    const real = await timed(1);
    const fast = await timed(0);
    expect(real.message).toEqual(recorded.messages[3]);
    expect(fast.message).toEqual(recorded.messages[3]);
    expect(real.ms).toBeGreaterThanOrEqual(span * 0.8);
    expect(fast.ms).toBeLessThan(span * 0.5);
  });

  it('answers a changed prompt with an error naming the turn and the JSON path that diverged', async () => {
    const server = await replay(0);
    const err = (await converse(sdk(server.url), { ...RECORDED, first: 'hello replay!' }).catch(
      (e: unknown) => e,
    )) as APIError;
    expect(err).toBeInstanceOf(APIError);
    expect(err.status).toBe(412);
    expect(err.error).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    expect(err.message).toContain(
      `replay diverged at turn 1 of 5 (${xs[0]!.id}): the request's messages[0].content differs from the recording: ` +
        "recorded text 'hello replay', got 'hello replay!'",
    );
  });

  it('names a later turn when the conversation diverges there', async () => {
    const server = await replay(0);
    const err = (await converse(sdk(server.url), { ...RECORDED, toolResult: '3°C and raining' }).catch(
      (e: unknown) => e,
    )) as APIError;
    expect(err.status).toBe(412);
    expect(err.message).toContain(
      `replay diverged at turn 3 of 5 (${xs[2]!.id}): the request's messages[4].content[0].content differs`,
    );
    expect(err.message).toContain("recorded text '18°C and sunny', got '3°C and raining'");
    expect(server.served).toBe(2);
  });

  it('answers a request it holds no more copies of as diverged, and an unrecorded models call with a default', async () => {
    const server = await replay(0);
    const client = sdk(server.url);
    const again = () =>
      client.messages.create({ model: MODEL, max_tokens: 200, messages: [{ role: 'user', content: RECORDED.first }] });
    expect(await again()).toEqual(recorded.messages[0]);
    const err = (await again().catch((e: unknown) => e)) as APIError;
    expect(err.status).toBe(412);
    expect(err.message).toContain(
      `replay diverged: this request repeats turn 1 of 5 (${xs[0]!.id}), which was recorded once and has been answered`,
    );
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
  });
});

describe('replay serve with Claude Code', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const workDir = () => {
    const d = mkdtempSync(path.join(tmpdir(), 'vigil-replay-agent-'));
    dirs.push(d);
    return d;
  };

  it('reproduces a tool-using agent run in a fresh working directory', async () => {
    // `pwd` puts the working directory into the tool result: replay must see past it, as past the env block.
    const prompt = 'Run this for me [[tool:Bash {"command":"echo hi-from-bash; pwd"}]]';
    const before = h.fake.requests.length;
    const liveDir = workDir();
    const live = await runAgent(h.url, prompt, liveDir);
    const liveResult = live.find((m) => m.type === 'result') as { subtype: string; result: string };
    expect(liveResult.subtype).toBe('success');
    expect(liveResult.result).toContain('Tool result received: hi-from-bash');
    const sessionId = (live.find((m) => m.type === 'system') as { session_id: string }).session_id;
    const calls = h.fake.requests.length - before;
    const session = await h.session(sessionId, calls);
    expect(JSON.stringify(session.at(-1)!.request.body)).toContain(`hi-from-bash\\n${liveDir}`);

    const served: Array<{ how?: string }> = [];
    const server = await replay(0, session, { info: (o) => served.push(o), warn: (o) => served.push(o) });
    const replayed = await runAgent(server.url, prompt, workDir());
    const replayedResult = replayed.find((m) => m.type === 'result') as { subtype: string; result: string };
    expect(replayedResult).toMatchObject({ subtype: 'success', result: liveResult.result });
    expect(server.served).toBe(session.length);
    // The two runs' requests were not identical (working directory, session and device ids): matched normalised.
    expect(served.map((o) => o.how)).toEqual(session.map(() => 'normalised'));
    expect(h.fake.requests.length - before).toBe(calls);

    // Another prompt was not recorded: Claude Code stops at once and shows the replay server's explanation.
    const other = await replay(0, session);
    const err = (await runAgent(other.url, 'Run this instead [[tool:Bash {"command":"echo other"}]]', workDir()).catch(
      (e: unknown) => e,
    )) as Error;
    expect(err.message).toContain(`API Error: 412 replay diverged at turn 1 of ${session.length} (${session[0]!.id})`);
    expect(err.message).toMatch(
      /the request's messages\[0\]\.content\[\d+\]\.text differs from the recording: recorded text 'Run this for me \[\[tool:Bash/,
    );
    expect(other.served).toBe(0);
  }, 60_000);
});

describe('replay resend', () => {
  let second: Harness;
  beforeAll(async () => {
    // A second gateway with its own upstream, its connection named as a user would name it.
    second = await startHarness((upstream) => ({
      connections: [{ name: 'sandbox', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } }],
    }));
  });
  afterAll(() => second?.close());

  it('finds an unchanged answer unchanged, and records the resent exchange', async () => {
    const original = xs[0]!;
    const result = await resendExchange({ exchange: original, connectionUrl: `${second.url}/c/sandbox` });
    expect(result.status).toBe(200);
    expect(result.diff).toEqual({ same: true, changes: [], text: '' });
    expect((result.message as Message).content).toEqual(recorded.messages[0]!.content);

    const [again] = await second.session(`resend-${original.id}`, 1);
    expect(again!.id).toBe(result.exchangeId);
    expect(again!.connection).toBe('sandbox');
    expect(again!.request.body).toEqual(original.request.body);
    expect(again!.request.headers['x-vigil-resend-of']).toBe(original.id);
  });

  it('collects a resent stream and shows how the answer changed', async () => {
    const original = xs[1]!; // the streamed tool call
    // The second upstream now fails two deltas into the stream, as an overloaded API does.
    const result = await resendExchange({
      exchange: original,
      connectionUrl: `${second.url}/c/sandbox`,
      headers: { 'x-fake-scenario': 'error_mid_stream' },
    });
    expect(result.status).toBe(200);
    expect(result.error).toEqual({ type: 'overloaded_error', message: 'Overloaded' });
    expect(result.diff.same).toBe(false);
    // The text block arrived whole; the tool call, the stop reason and most output did not.
    expect(result.diff.changes).toEqual([
      { kind: 'error', recorded: null, resent: 'overloaded_error: Overloaded' },
      {
        kind: 'content',
        index: 1,
        change: 'removed',
        recorded: ['tool_use get_weather', '{', '  "city": "Paris"', '}'],
        resent: null,
      },
      { kind: 'stop_reason', recorded: 'tool_use', resent: null },
      { kind: 'usage', field: 'output_tokens', recorded: 15, resent: 1 },
    ]);
    expect(result.diff.text).toBe(
      [
        '--- recorded',
        '+++ resent',
        '@@ error @@',
        '-(none)',
        '+overloaded_error: Overloaded',
        '@@ content[1] tool_use get_weather → (none) @@',
        '-tool_use get_weather',
        '-{',
        '-  "city": "Paris"',
        '-}',
        '@@ stop_reason @@',
        '-tool_use',
        '+(none)',
        '@@ usage.output_tokens @@',
        '-15',
        '+1',
        '',
      ].join('\n'),
    );
  });
});
