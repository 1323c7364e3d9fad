/**
 * The recorded server-sent event stream of one exchange, written back in the wire format Anthropic uses
 * (`event: <type>` then `data: <data>`, a blank line after each event), from the event records exactly as stored.
 */
import type { StoredRecord } from '../store/audit-store.js';
import { eventDataText, type RecordedEvent } from '../store/record-types.js';

/**
 * The exchange's events in stream order, from all its `exchange.events` records (a long stream spans several), with
 * each event's data as text. Data stored as an embedded JSON value is serialised again, which reproduces Anthropic's
 * compact JSON exactly.
 */
export function recordedEvents(records: readonly StoredRecord[]): RecordedEvent[] {
  const events: RecordedEvent[] = [];
  for (const r of records) {
    if (r.kind !== 'exchange.events') continue;
    for (const e of (JSON.parse(r.data) as { events: Array<Omit<RecordedEvent, 'data'> & { data: unknown }> }).events) {
      events.push({ i: e.i, type: e.type, data: eventDataText(e.data), offset_ms: e.offset_ms });
    }
  }
  return events.sort((a, b) => a.i - b.i);
}

/** One event as SSE text. Data spanning lines becomes one `data:` line per line, as the SSE format requires. */
export function sseEvent(e: Pick<RecordedEvent, 'type' | 'data'>): string {
  const data = e.data
    .split(/\r\n|\r|\n/)
    .map((line) => `data: ${line}\n`)
    .join('');
  return `event: ${e.type}\n${data}\n`;
}
