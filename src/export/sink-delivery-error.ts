/**
 * What a sink throws when a batch was not (or not provably) delivered. The outbox keeps its cursor where it was and
 * retries the whole batch later, so the message names the sink and what to check; `cause` keeps the original error.
 */
export class SinkDeliveryError extends Error {
  override readonly name = 'SinkDeliveryError';
  /** The configured sink name (`siem.sinks[].name`). */
  readonly sink: string;

  /**
   * The receiver was reached and refused the content (HTTP 400, 413, 422): sending the same events again will not
   * help, unlike a receiver that is down, overloaded or misconfigured (connection errors, 401/403/404, 429, 5xx).
   */
  readonly rejected: boolean;

  /**
   * The receiver's host answered that nothing listens on the port (a UDP collector's ICMP port unreachable, a TCP
   * collector's refused connect): most often a collector restarting, back within milliseconds, so the outbox tries
   * once more shortly before it backs off.
   */
  readonly portUnreachable: boolean;

  constructor(
    sink: string,
    message: string,
    options?: { cause?: unknown; rejected?: boolean; portUnreachable?: boolean },
  ) {
    super(`siem sink "${sink}": ${message}`, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.sink = sink;
    this.rejected = options?.rejected ?? false;
    this.portUnreachable = options?.portUnreachable ?? false;
  }
}

/** Statuses by which a receiver says the content itself is unacceptable (see SinkDeliveryError.rejected). */
export function rejectsContent(status: number): boolean {
  return status === 400 || status === 413 || status === 422;
}
