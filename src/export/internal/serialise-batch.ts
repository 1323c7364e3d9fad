import { describeError } from './describe-error.js';
import { SinkDeliveryError } from '../sink-delivery-error.js';

/**
 * Builds a request body. A failure here — a batch with large recorded content past V8's string limit (~512 MiB)
 * throws RangeError — would fail the same way on every retry, so it is a rejected delivery, like a 413: the outbox then
 * sends the events one at a time and drops the content of one that still fails, instead of retrying the batch forever.
 */
export function serialiseBatch(sink: string, build: () => string): string {
  try {
    return build();
  } catch (err) {
    throw new SinkDeliveryError(sink, `the request body could not be built: ${describeError(err)}`, {
      cause: err,
      rejected: true,
    });
  }
}
