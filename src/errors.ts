/**
 * One error type for everything Vigil itself refuses or fails at.
 *
 * Each code maps to the HTTP status and the Anthropic error `type` a client sees, so the official SDKs raise the
 * right exception class and retry exactly when Anthropic's own API would make them retry.
 * https://docs.anthropic.com/en/api/errors
 */

const ANTHROPIC_ERROR_TYPES = [
  'invalid_request_error',
  'authentication_error',
  'permission_error',
  'not_found_error',
  'request_too_large',
  'rate_limit_error',
  'api_error',
  'overloaded_error',
  'timeout_error',
] as const;

export type AnthropicErrorType = (typeof ANTHROPIC_ERROR_TYPES)[number];

/** Whether `type` is one of Anthropic's error types (not one of Vigil's internal reasons, such as `dlp_blocked`). */
export function isAnthropicErrorType(type: string): type is AnthropicErrorType {
  return (ANTHROPIC_ERROR_TYPES as readonly string[]).includes(type);
}

const REGISTRY = {
  BAD_REQUEST: { status: 400, type: 'invalid_request_error' },
  REQUEST_TIMEOUT: { status: 408, type: 'timeout_error' },
  HEADERS_TOO_LARGE: { status: 431, type: 'invalid_request_error' },
  UNAUTHENTICATED: { status: 401, type: 'authentication_error' },
  NOT_ALLOWED: { status: 403, type: 'permission_error' },
  UNKNOWN_CONNECTION: { status: 404, type: 'not_found_error' },
  NOT_FOUND: { status: 404, type: 'not_found_error' },
  BODY_TOO_LARGE: { status: 413, type: 'request_too_large' },
  LIMIT_REACHED: { status: 429, type: 'rate_limit_error' },
  NO_CREDENTIAL: { status: 500, type: 'api_error' },
  UPSTREAM_UNREACHABLE: { status: 502, type: 'api_error' },
  STORE_UNAVAILABLE: { status: 503, type: 'api_error' },
  SHUTTING_DOWN: { status: 503, type: 'overloaded_error' },
  UPSTREAM_TIMEOUT: { status: 504, type: 'timeout_error' },
  INTERNAL: { status: 500, type: 'api_error' },
} as const satisfies Record<string, { status: number; type: AnthropicErrorType }>;

export type VigilErrorCode = keyof typeof REGISTRY;

export class VigilError extends Error {
  override readonly name = 'VigilError';
  readonly code: VigilErrorCode;
  /**
   * How long the client should wait before it tries again (`retry-after`), when the gateway knows: given (a usage
   * limit's window), or a second for the gateway's own transient 503s, which the SDKs retry.
   */
  readonly retryAfterMs: number | undefined;

  constructor(code: VigilErrorCode, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message, options);
    this.code = code;
    this.retryAfterMs =
      options?.retryAfterMs ?? (code === 'SHUTTING_DOWN' || code === 'STORE_UNAVAILABLE' ? 1000 : undefined);
  }

  get status(): number {
    return REGISTRY[this.code].status;
  }

  get type(): AnthropicErrorType {
    return REGISTRY[this.code].type;
  }

  /** The body a client receives: Anthropic's error shape. */
  toAnthropicBody(): string {
    return anthropicErrorBody(this.type, this.message);
  }
}

export function anthropicErrorBody(type: AnthropicErrorType, message: string): string {
  return JSON.stringify({ type: 'error', error: { type, message } });
}

/**
 * The Anthropic error type of the gateway's own answers with `status` (the registry above), or null for a status the
 * gateway never answers with itself. What a client received when the gateway refused or failed its call, whose
 * recording keeps the status and Vigil's internal reason (`approval_rule_denied`, `dlp_blocked` …) instead.
 *
 * 503 is both STORE_UNAVAILABLE (`api_error`) and SHUTTING_DOWN (`overloaded_error`): the first, since a call is refused
 * for a shutdown before it is recorded, so no recording holds that one.
 */
export function anthropicErrorTypeOf(status: number): AnthropicErrorType | null {
  for (const entry of Object.values(REGISTRY)) if (entry.status === status) return entry.type;
  return null;
}

/** Coerce anything thrown into a VigilError without losing the original as `cause`. */
/** The message of whatever was thrown, when it has one (a log line's `cause`). */
export function messageOf(err: unknown): string | undefined {
  const message = (err as { message?: unknown } | null | undefined)?.message;
  return typeof message === 'string' ? message : undefined;
}

export function asVigilError(err: unknown): VigilError {
  if (err instanceof VigilError) return err;
  return new VigilError('INTERNAL', 'internal gateway error', { cause: err });
}

/** An operator-facing configuration problem: names the path of the config key to fix. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly problems: readonly string[];

  /**
   * @param options.heading - what the list is, when the configuration is right but the place it names cannot be used
   *   (a full disk, a store in use); default `invalid configuration`
   */
  constructor(problems: readonly string[], options?: ErrorOptions & { heading?: string }) {
    super(`${options?.heading ?? 'invalid configuration'}:\n  - ${problems.join('\n  - ')}`, options);
    this.problems = problems;
  }
}

/** Whether `err` is V8 running out of stack: what walking a JSON value nested tens of thousands deep comes to. */
export function isStackOverflow(err: unknown): boolean {
  return err instanceof RangeError && /call stack/i.test(err.message);
}

/** The caller's error for a body nested too deeply to walk (mask, judge, record). */
export const tooDeeplyNested = (): VigilError =>
  new VigilError('BAD_REQUEST', 'request body is nested too deeply to be masked and recorded');

/** What a call the gateway will not forward because it is stopping is answered with: a 503 the SDKs retry. */
export const shuttingDown = (): VigilError => new VigilError('SHUTTING_DOWN', 'the gateway is shutting down; retry');
