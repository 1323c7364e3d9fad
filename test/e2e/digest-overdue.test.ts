/**
 * A writer that stops signing its chain is an alert, end to end: a running gateway finds the chain, streams a
 * `ledger.digest_overdue` event to a real SIEM receiver and shows it in `/metrics` (a writer that is gone, as here, as
 * a chain stopped undigested); `vigil verify` warns about it and still passes. The gateway's own chain, which it signs every interval and once more when it stops, is never flagged.
 *
 * Went wrong: the newest records of a chain after its last digest were covered by nothing, and a gateway that stopped
 * writing `ledger.digest` records (stuck, tampered, failing to append them) went unnoticed.
 */
import Anthropic from '@anthropic-ai/sdk';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/export/audit-event.js';
import type { VerifyReport } from '../../src/store/audit-store.js';
import { SqliteAuditStore } from '../../src/store/sqlite/sqlite-audit-store.js';
import { vigil } from '../support/cli.js';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';
import { startRecordingHttpServer, type RecordingHttpServer, postedEvents } from '../support/recording-http-server.js';
import { until } from '../support/until.js';

let h: Harness;
let siem: RecordingHttpServer;
/** A small bound, so the test waits seconds: digests every second, overdue after three. */
const signing = { interval: '1s', overdue_after: '3s' };

beforeAll(async () => {
  siem = await startRecordingHttpServer();
  h = await startHarness((upstream) => ({
    connections: [{ name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } }],
    siem: { sinks: [{ type: 'http', name: 'soc', url: `${siem.url}/events` }] },
    signing,
  }));
});
afterAll(async () => {
  await h?.close();
  await siem?.close();
});

const events = (): AuditEvent[] => postedEvents(siem.requests);

it('streams ledger.digest_overdue for a chain whose writer stopped signing, shows it in /metrics, and verify warns', async () => {
  const client = new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 });
  await client.messages.create(
    { model: 'claude-haiku-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'hello' }] },
    { headers: { 'x-vigil-session': 'digests' } },
  );
  await h.session('digests', 1);

  // Another writer on the store, which recorded for ten seconds (by its clock) and never signed.
  const file = path.join(h.dataDir, 'vigil.db');
  const stuck = SqliteAuditStore.open({ file });
  await stuck.append({ records: [{ kind: 'note', at: Date.now(), data: {} }] });
  const began = (await stuck.chainRecords(stuck.chainId, 0, 1))[0]!.at;
  await stuck.append({ records: [{ kind: 'note', at: began + 10_000, data: {} }] });
  await stuck.close();

  const alert = await until('the alert at the SIEM', () =>
    events().find((e) => e.type === 'ledger.digest_overdue' && e.attributes.chain === stuck.chainId),
  );
  expect(alert).toMatchObject({
    severity: 'alert',
    attributes: {
      from_seq: 1,
      to_seq: 3,
      undigested_seconds: 10,
      overdue_after_seconds: 3,
      last_digest_seq: null,
      writer_running: false,
    },
  });

  // Its writer is gone: alerted once, it is counted as stopped, not as an alarm that could never clear.
  const metrics = await (await fetch(`${h.gateway.adminUrl}/metrics`)).text();
  expect(metrics).toContain('vigil_ledger_digests_overdue 0');
  expect(metrics).toContain('vigil_ledger_chains_stopped_undigested 1');
  expect(metrics).not.toContain(`vigil_ledger_undigested_seconds{chain="${stuck.chainId}"}`);

  // verify, with the same signing settings: intact, with a warning naming the chain and how long.
  const config = path.join(h.dataDir, 'verify.yaml');
  writeFileSync(
    config,
    `data_dir: ${h.dataDir}\nconnections: [{ name: anthropic }]\nsigning: { interval: 1s, overdue_after: 3s }\n`,
  );
  const verified = await vigil(['verify', '--config', config]);
  expect(verified.code).toBe(0);
  expect(verified.stdout).toMatch(/^ok: \d+ records in 2 chains, all intact$/m);
  expect(verified.stdout).toContain('warning: digests overdue on 1 chain(s)');
  expect(verified.stdout).toContain(
    `  digest_overdue: chain ${stuck.chainId}: records #1..#3 went 10s without a digest of their chain`,
  );

  // The gateway stops, signing its final digest: its chain still is not flagged, the stuck one still is.
  await h.gateway.close(1000);
  const json = await vigil(['verify', '--config', config, '--json']);
  expect(json.code).toBe(0);
  const report = JSON.parse(json.stdout) as VerifyReport;
  expect(report.ok).toBe(true);
  expect(report.digestsOverdue?.map((o) => o.chain)).toEqual([stuck.chainId]);
}, 60_000);
