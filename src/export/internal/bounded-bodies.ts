/**
 * The request bodies of the HTTP sinks (http, splunk_hec, otlp), within the sink's bounds: a batch is cut into bodies
 * of at most `maxEvents` events and `maxBytes` bytes (`max_body_size`), posted in order. Events are serialised one at
 * a time, as their body is built, so a batch with large recorded content never becomes one string past V8's limit
 * (~512 MiB), which would throw the same way on every retry; an event too large alone goes without its content, as
 * syslog does.
 */
import type { AuditEvent } from '../audit-event.js';
import { SinkDeliveryError } from '../sink-delivery-error.js';
import { describeError } from './describe-error.js';
import { outgoingEvent, withoutContent } from './outgoing-event.js';
import { serialiseBatch } from './serialise-batch.js';

/** How a sink's body wraps its events: `head` + the items' JSON joined by `separator` + `tail`. */
export interface BodyFormat {
  readonly head: string;
  readonly separator: string;
  readonly tail: string;
  /** What goes on the wire for one event, given the event as the sink sends it (see outgoingEvent). */
  readonly item: (event: AuditEvent) => unknown;
}

export interface BodyBounds {
  /** The sink's name, for errors. */
  readonly sink: string;
  readonly includeContent: boolean;
  /** Most events in one body. */
  readonly maxEvents: number;
  /** Most bytes in one body: the sink's `max_body_size`. */
  readonly maxBytes: number;
}

/** The bounds of a sink with `max_body_size` (and, for http, `batch_size`: `maxEvents`) as its config gives them. */
export function bodyBounds(
  config: { readonly name: string; readonly include_content: boolean; readonly max_body_size: number },
  maxEvents = Infinity,
): BodyBounds {
  return { sink: config.name, includeContent: config.include_content, maxEvents, maxBytes: config.max_body_size };
}

/** One event as it goes out: its item's JSON and that JSON's size in bytes. */
interface Serialised {
  readonly json: string;
  readonly bytes: number;
}

/**
 * Calls `post` with each body, in order, waiting for each; resolves once every body was posted. Throws what `post`
 * throws, or, for an event that cannot be serialised even without its content or a body that cannot be built, a
 * rejected delivery (like a 413: the same events would fail the same way on every retry, so the outbox sends them
 * one at a time and drops the content of the one that fails). Once `stop` aborts (this gateway no longer delivers
 * for the sink, see Sink.deliver), no further body is posted, and this throws `stop`'s reason.
 */
export async function postInBodies(
  events: readonly AuditEvent[],
  format: BodyFormat,
  bounds: BodyBounds,
  post: (body: string) => Promise<void>,
  stop?: AbortSignal,
): Promise<void> {
  const envelope = Buffer.byteLength(format.head) + Buffer.byteLength(format.tail);
  const separator = Buffer.byteLength(format.separator);
  const send = (chunk: readonly Serialised[]): Promise<void> => {
    stop?.throwIfAborted();
    // Not expected to fail within max_body_size; if it does, it is a rejected delivery (see serialiseBatch).
    return post(
      serialiseBatch(bounds.sink, () => format.head + chunk.map((s) => s.json).join(format.separator) + format.tail),
    );
  };
  let chunk: Serialised[] = [];
  let bytes = envelope; // of the body `chunk` makes
  for (const event of events) {
    const s = serialise(event, format, bounds, envelope);
    if (chunk.length > 0 && (chunk.length >= bounds.maxEvents || bytes + separator + s.bytes > bounds.maxBytes)) {
      await send(chunk);
      chunk = [];
      bytes = envelope;
    }
    bytes += (chunk.length > 0 ? separator : 0) + s.bytes;
    chunk.push(s);
  }
  if (chunk.length > 0) await send(chunk);
}

/**
 * The event's item as JSON; without the event's content (`content: { omitted }`) when, with it, the event alone would
 * not fit in a body or could not be serialised at all (longer than a JavaScript string can be).
 */
function serialise(event: AuditEvent, format: BodyFormat, bounds: BodyBounds, envelope: number): Serialised {
  const outgoing = outgoingEvent(event, bounds.includeContent);
  let why: string;
  try {
    const json = JSON.stringify(format.item(outgoing));
    const bytes = Buffer.byteLength(json);
    if (
      envelope + bytes <= bounds.maxBytes ||
      outgoing.content === undefined ||
      outgoing.content.omitted !== undefined
    ) {
      return { json, bytes };
    }
    why = `the event with its content is ${bytes} bytes, over max_body_size (${bounds.maxBytes})`;
  } catch (err) {
    why = `the event with its content could not be serialised: ${describeError(err)}`;
  }
  try {
    const json = JSON.stringify(format.item(withoutContent(outgoing, why)));
    return { json, bytes: Buffer.byteLength(json) };
  } catch (err) {
    throw new SinkDeliveryError(bounds.sink, `event ${event.id} could not be serialised: ${describeError(err)}`, {
      cause: err,
      rejected: true,
    });
  }
}
