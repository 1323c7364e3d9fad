/**
 * A failed verification is an alert: verifying a tampered store through the admin API records `verify.failed`, and
 * the SIEM receives it with severity `alert`.
 */
import Database from 'better-sqlite3';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/export/audit-event.js';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';
import { startRecordingHttpServer, type RecordingHttpServer, postedEvents } from '../support/recording-http-server.js';

let h: Harness;
let siem: RecordingHttpServer;
beforeAll(async () => {
  siem = await startRecordingHttpServer();
  h = await startHarness((upstream) => ({
    connections: [{ name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } }],
    siem: { sinks: [{ type: 'http', name: 'soc', url: `${siem.url}/events` }] },
  }));
});
afterAll(async () => {
  await h?.close();
  await siem?.close();
});

it('records verify.failed and streams it to the SIEM as an alert', async () => {
  const res = await fetch(`${h.url}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': CLIENT_KEY, 'x-vigil-session': 'tampered' },
    body: JSON.stringify({
      model: 'claude-haiku-4-5',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'original words' }],
    }),
  });
  expect(res.status).toBe(200);
  await h.session('tampered', 1);

  const db = new Database(path.join(h.dataDir, 'vigil.db'));
  db.exec('DROP TRIGGER records_append_only_u');
  db.prepare("UPDATE records SET data = replace(data, 'original', 'doctored') WHERE kind = 'exchange.request'").run();
  db.close();

  const report = (await (await fetch(`${h.gateway.adminUrl}/api/v1/verify`)).json()) as { ok: boolean };
  expect(report.ok).toBe(false);
  const alerts = await h.gateway.store.recordsOfKinds(['verify.failed'], 0, 10);
  expect(alerts).toHaveLength(1);

  const deadline = Date.now() + 10_000;
  let alert: AuditEvent | undefined;
  while (!alert && Date.now() < deadline) {
    alert = postedEvents(siem.requests).find((e) => e.type === 'verify.failed');
    if (!alert) await new Promise((r) => setTimeout(r, 50));
  }
  expect(alert).toMatchObject({
    type: 'verify.failed',
    severity: 'alert',
    attributes: { problems: expect.any(Number) },
  });
});
