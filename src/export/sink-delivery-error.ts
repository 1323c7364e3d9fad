/**
 * What a sink throws when a batch was not (or not provably) delivered. The outbox keeps its cursor where it was and
 * retries the whole batch later, so the message names the sink and what to check; `cause` keeps the original error.
 */
export class SinkDeliveryError extends Error {
  override readonly name = 'SinkDeliveryError';
  /** The configured sink name (`siem.sinks[].name`). */
  readonly sink: string;

  constructor(sink: string, message: string, options?: { cause?: unknown }) {
    super(`siem sink "${sink}": ${message}`, options);
    this.sink = sink;
  }
}
