/**
 * Failure modes a test can ask for, by the `x-fake-scenario` header or a `[[scenario:NAME]]` directive.
 * Several may be combined with commas, e.g. `slow:20,cut_stream`.
 */
import type { Exchange } from './exchange.js';
import { sendError } from './exchange.js';

/** What was asked for, resolved from one or more scenario names. */
export interface Scenario {
  /** Answer with this error instead of a reply, or (`hang`) never answer. */
  failure?: 'rate_limit' | 'overloaded' | 'server_error' | 'bad_request' | 'hang';
  /** 429 the first time this key is seen, then behave normally. */
  rateLimitOnceKey?: string;
  /** How a stream (or, for `cut_stream`, any reply body) ends early. */
  earlyEnd?: 'error_mid_stream' | 'cut_stream';
  /** Milliseconds between stream events. */
  delayMs?: number;
  /** Milliseconds between a stream's headers (sent at once) and its first event, as a model slow to start does. */
  startDelayMs?: number;
  gzip?: boolean;
  /**
   * The model declines, as a model's safety classifiers do (Claude Fable): a 200 whose `stop_reason` is `refusal` —
   * `before` any output (no content), or `mid_stream`, after the first half of its text.
   */
  refusal?: 'before' | 'mid_stream';
}

/** Delay of `slow` without a number. */
const SLOW_DEFAULT_MS = 50;

const NAMES = [
  'rate_limit',
  'rate_limit_once:<key>',
  'overloaded',
  'server_error',
  'bad_request',
  'error_mid_stream',
  'cut_stream',
  'slow[:<ms>]',
  'slow_start[:<ms>]',
  'gzip',
  'hang',
  'refusal',
  'refusal_mid_stream',
].join(', ');

/**
 * Parse `names` (comma-separated). An unknown name is an error rather than ignored: a typo in a test's
 * scenario would otherwise pass silently as the happy path.
 */
export function parseScenario(names: string): { ok: true; value: Scenario } | { ok: false; message: string } {
  const scenario: Scenario = {};
  for (const raw of names.split(',')) {
    const name = raw.trim();
    if (name === '') continue;
    const colon = name.indexOf(':');
    const head = colon < 0 ? name : name.slice(0, colon);
    const arg = colon < 0 ? undefined : name.slice(colon + 1);
    switch (head) {
      case 'rate_limit':
      case 'overloaded':
      case 'server_error':
      case 'bad_request':
      case 'hang':
        scenario.failure = head;
        break;
      case 'rate_limit_once':
        if (!arg) return { ok: false, message: 'scenario rate_limit_once needs a key: rate_limit_once:<key>' };
        scenario.rateLimitOnceKey = arg;
        break;
      case 'error_mid_stream':
      case 'cut_stream':
        scenario.earlyEnd = head;
        break;
      case 'slow':
      case 'slow_start': {
        const ms = arg === undefined ? SLOW_DEFAULT_MS : Number(arg);
        if (!Number.isFinite(ms) || ms < 0)
          return { ok: false, message: `scenario ${head} needs milliseconds, got '${arg}'` };
        if (head === 'slow') scenario.delayMs = ms;
        else scenario.startDelayMs = ms;
        break;
      }
      case 'gzip':
        scenario.gzip = true;
        break;
      case 'refusal':
        scenario.refusal = 'before';
        break;
      case 'refusal_mid_stream':
        scenario.refusal = 'mid_stream';
        break;
      default:
        return { ok: false, message: `unknown fake scenario '${name}'; known: ${NAMES}` };
    }
  }
  return { ok: true, value: scenario };
}

/**
 * Answer with the failure `scenario` asks for, if any, and say whether it did. `seenOnceKeys` is the fake's
 * memory of `rate_limit_once` keys. Status codes and error types are the real API's.
 * https://docs.anthropic.com/en/api/errors
 */
export function answerFailure(ex: Exchange, scenario: Scenario, seenOnceKeys: Set<string>): boolean {
  if (scenario.rateLimitOnceKey !== undefined && !seenOnceKeys.has(scenario.rateLimitOnceKey)) {
    seenOnceKeys.add(scenario.rateLimitOnceKey);
    rateLimited(ex);
    return true;
  }
  switch (scenario.failure) {
    case undefined:
      return false;
    case 'rate_limit':
      rateLimited(ex);
      return true;
    case 'overloaded':
      sendError(ex, 529, 'overloaded_error', 'Overloaded');
      return true;
    case 'server_error':
      sendError(ex, 500, 'api_error', 'Internal server error');
      return true;
    case 'bad_request':
      sendError(ex, 400, 'invalid_request_error', 'Invalid request (fake scenario bad_request)');
      return true;
    case 'hang':
      // Deliberately never answered; closing the fake destroys the socket.
      return true;
    default:
      return scenario.failure satisfies never;
  }
}

function rateLimited(ex: Exchange): void {
  sendError(
    ex,
    429,
    'rate_limit_error',
    'This request would exceed the rate limit for your organization. Please try again later.',
    { 'retry-after': '1', 'anthropic-ratelimit-requests-remaining': '0' },
  );
}
