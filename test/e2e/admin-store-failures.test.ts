/**
 * The admin API when the store fails it: a read of recordings whose access-log record cannot be written is refused
 * (reads are recorded before they are answered), and a store that is gone answers 503 "unavailable", not a 500.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { postMessages, startHarness, type Harness } from '../support/gateway-harness.js';

let h: Harness;
let sessionUrl: string;
beforeAll(async () => {
  h = await startHarness();
  const r = await postMessages(h.url, 'to-read', { messages: [{ role: 'user', content: 'hi' }] });
  await h.exchange(r.headers.get('x-vigil-exchange-id')!);
  sessionUrl = `${h.gateway.adminUrl}/api/v1/sessions/to-read`;
});
afterAll(() => h?.close());

it('refuses a read of recordings that the access log cannot take', async () => {
  expect((await fetch(sessionUrl)).status).toBe(200);
  // The store itself refuses the access log's record, as a full disk would refuse a write: a trigger of the database's.
  const db = new Database(path.join(h.dataDir, 'vigil.db'));
  db.exec(`CREATE TRIGGER test_refuse_reads BEFORE INSERT ON records WHEN NEW.kind = 'recording.read'
           BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`);
  try {
    const read = await fetch(sessionUrl);
    expect(read.status).toBe(503);
    expect(await read.json()).toEqual({
      error: { type: 'api_error', message: 'the read could not be recorded in the access log, so it is refused' },
    });
  } finally {
    db.exec('DROP TRIGGER test_refuse_reads');
    db.close();
  }
  expect((await fetch(sessionUrl)).status).toBe(200);
});

it('answers 503 when the store is gone, not 500', async () => {
  await h.gateway.store.close();
  const read = await fetch(sessionUrl);
  expect(read.status).toBe(503);
  expect(await read.json()).toEqual({
    error: { type: 'api_error', message: 'the store is unavailable; try again later' },
  });
});
