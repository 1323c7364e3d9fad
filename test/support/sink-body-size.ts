/**
 * The batch the sinks' max_body_size tests send, and what each must make of it, whatever its wire format: the events
 * cut into requests in order, the event too large for any request sent alone without its content.
 */
import { expect } from 'vitest';
import type { AuditEvent } from '../../src/export/audit-event.js';
import { exchangeEvent } from './sample-audit-events.js';

/**
 * Three exchanges with about 6 KB of content (two-byte characters, so UTF-8 bytes and string length differ), one with
 * 40 KB, and a small one after it.
 */
export function batchOverMaxBodySize(): AuditEvent[] {
  const withContent = (i: number, size: number) =>
    exchangeEvent(i, { content: { request: { messages: [{ role: 'user', content: 'é'.repeat(size / 2) }] } } });
  const batch = [withContent(1, 6000), withContent(2, 6000), withContent(3, 6000), withContent(4, 40_000)];
  batch.push(exchangeEvent(5, { content: { request: { text: 'after' } } }));
  return batch;
}

/**
 * Asserts that `posted` (the events of each request, in order) holds `batch` cut in two: two events fit in a request
 * and a third would not; the 40 KB one goes without its content, so it fits after the third.
 */
export function expectCutAtMaxBodySize(posted: AuditEvent[][], batch: AuditEvent[], maxBodySize: number): void {
  expect(posted.map((events) => events.map((e) => e.id))).toEqual([
    ['evt-0001', 'evt-0002'],
    ['evt-0003', 'evt-0004', 'evt-0005'],
  ]);
  expect(posted[0]![0]).toEqual(batch[0]); // content intact, UTF-8 counted in bytes
  expect(posted[1]![1]).toEqual({
    ...batch[3],
    content: {
      omitted: expect.stringMatching(
        new RegExp(`^the event with its content is \\d+ bytes, over max_body_size \\(${maxBodySize}\\)$`),
      ),
    },
  });
  expect(posted[1]![2]).toEqual(batch[4]);
}
