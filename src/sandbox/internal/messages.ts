/**
 * `POST /v1/messages` and `POST /v1/messages/count_tokens`: the reply as JSON or as a stream of events, and the
 * ways a stream can go wrong on purpose.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { lastUserMessage, messageText, scenarioDirective } from './directives.js';
import type { Exchange } from './exchange.js';
import { sendError, sendJson } from './exchange.js';
import { messageEvents, sseEvent, type SseEvent } from './message-events.js';
import { cacheUse, inputUsage, messageBody, parseJsonBody, parseMessagesRequest, planReply, refused } from './reply.js';
import { answerFailure, parseScenario, type Scenario } from './scenarios.js';

/** State and settings the endpoint shares with the rest of the fake. */
export interface MessagesSettings {
  /** `rate_limit_once` keys already answered with a 429. */
  readonly seenOnceKeys: Set<string>;
  /** Pause between stream events unless the `slow` scenario says otherwise. */
  readonly eventDelayMs: number;
  /** The prompt-cache prefixes already written (see `cacheUse`). */
  readonly cachedPrefixes: Set<string>;
}

/** Deltas sent before `error_mid_stream` sends its error event, and before `cut_stream` drops the connection. */
const DELTAS_BEFORE_ERROR = 2;
const DELTAS_BEFORE_CUT = 3;

/**
 * Answer `POST /v1/messages`. `headerScenario` is what `x-fake-scenario` asked for, whose failures the caller
 * has already answered; without it a `[[scenario:…]]` directive in the last user turn applies.
 */
export async function createMessage(
  ex: Exchange,
  headerScenario: Scenario | undefined,
  settings: MessagesSettings,
): Promise<void> {
  const json = parseJsonBody(ex.body);
  if (!json.ok) return sendError(ex, 400, 'invalid_request_error', json.message);
  const parsed = parseMessagesRequest(json.value);
  if (!parsed.ok) return sendError(ex, 400, 'invalid_request_error', parsed.message);
  const request = parsed.value;

  let scenario = headerScenario;
  if (scenario === undefined) {
    const named = scenarioDirective(messageText(lastUserMessage(request.messages)));
    if (named !== undefined) {
      const resolved = parseScenario(named);
      if (!resolved.ok) return sendError(ex, 400, 'invalid_request_error', resolved.message);
      scenario = resolved.value;
      if (answerFailure(ex, scenario, settings.seenOnceKeys)) return;
    }
  }
  scenario ??= {};
  ex.gzip = scenario.gzip === true;

  const planned = planReply(request, ex.body.length, cacheUse(ex.body, settings.cachedPrefixes));
  const reply = scenario.refusal ? refused(planned, scenario.refusal) : planned;
  if (!request.stream) {
    const body = JSON.stringify(messageBody(reply));
    if (scenario.earlyEnd === 'cut_stream') return cutBody(ex, body);
    return sendJson(ex, 200, body);
  }
  await stream(ex, messageEvents(reply), scenario, scenario.delayMs ?? settings.eventDelayMs);
}

/** Answer `POST /v1/messages/count_tokens` with the same estimate `/v1/messages` reports as input usage. */
export function countTokens(ex: Exchange): void {
  const json = parseJsonBody(ex.body);
  if (!json.ok) return sendError(ex, 400, 'invalid_request_error', json.message);
  const parsed = parseMessagesRequest(json.value, false);
  if (!parsed.ok) return sendError(ex, 400, 'invalid_request_error', parsed.message);
  sendJson(ex, 200, { input_tokens: inputUsage(ex.body.length, 'none').input_tokens });
}

async function stream(ex: Exchange, all: SseEvent[], scenario: Scenario, delayMs: number): Promise<void> {
  const { res } = ex;
  let events = all;
  if (scenario.earlyEnd === 'error_mid_stream') {
    events = untilDeltas(all, DELTAS_BEFORE_ERROR);
    // The real API reports overload inside a 200 stream this way.
    // https://docs.anthropic.com/en/docs/build-with-claude/streaming#error-events
    events.push(sseEvent('error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }));
  } else if (scenario.earlyEnd === 'cut_stream') {
    events = untilDeltas(all, DELTAS_BEFORE_CUT);
  }
  const cut = scenario.earlyEnd === 'cut_stream';

  res.writeHead(200, {
    ...ex.headers,
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
  });
  if (scenario.startDelayMs !== undefined) {
    res.flushHeaders();
    await sleep(scenario.startDelayMs);
    if (res.destroyed) return;
  }
  if (delayMs <= 0) {
    // One write for the whole stream: the fake is the upstream in benchmarks and must cost next to nothing.
    const chunk = events.map((e) => e.frame).join('');
    if (cut) res.write(chunk, () => res.destroy());
    else res.end(chunk);
    return;
  }
  for (const event of events) {
    if (res.destroyed) return; // the client went away, or the fake is closing
    res.write(event.frame);
    await sleep(delayMs);
  }
  if (res.destroyed) return;
  if (cut) res.destroy();
  else res.end();
}

/** The events up to and including the `n`th content_block_delta. */
function untilDeltas(events: readonly SseEvent[], n: number): SseEvent[] {
  const kept: SseEvent[] = [];
  let deltas = 0;
  for (const event of events) {
    kept.push(event);
    if (event.type === 'content_block_delta' && ++deltas === n) break;
  }
  return kept;
}

/** A non-streaming reply that promises its full length and delivers half before the connection drops. */
function cutBody(ex: Exchange, body: string): void {
  const bytes = Buffer.from(body);
  ex.res.writeHead(200, { ...ex.headers, 'content-type': 'application/json', 'content-length': bytes.length });
  ex.res.write(bytes.subarray(0, bytes.length >> 1), () => ex.res.destroy());
}
