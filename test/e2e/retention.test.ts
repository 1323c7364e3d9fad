/**
 * Retention as an operator runs it: a gateway records real exchanges, a legal hold is placed with the CLI, `vigil
 * retention run` purges what is past the window (a 1 ms window: every finished exchange is past it), and
 * `vigil verify --public-key` passes afterwards — and fails once someone deletes a record by hand.
 */
import Anthropic from '@anthropic-ai/sdk';
import Database from 'better-sqlite3';
import { statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vigil } from '../support/cli.js';
import { CLIENT_KEY, filesContaining, startHarness, type Harness } from '../support/gateway-harness.js';

let h: Harness;
let config: string;

const ask = (text: string, session: string) =>
  new Anthropic({ baseURL: h.url, apiKey: CLIENT_KEY, maxRetries: 0 }).messages.create(
    { model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content: text }] },
    { headers: { 'x-vigil-session': session } },
  );

beforeAll(async () => {
  // The gateway never purges on its own here (schedule 0): the CLI does, on demand.
  h = await startHarness(() => ({ retention: { default: '1ms', schedule: 0 }, signing: { interval: 0 } }));
  config = path.join(h.dataDir, 'vigil.yaml');
  writeFileSync(
    config,
    `data_dir: ${h.dataDir}\nretention:\n  default: 1ms\nconnections:\n  - name: anthropic\n    upstream: http://127.0.0.1:9\n`,
  );
});

afterAll(async () => {
  await h.close();
});

describe('vigil retention run, holds and verify --public-key', () => {
  it('purges expired exchanges except held ones, and the store still verifies with the public key alone', async () => {
    await ask('Remember the quokka codeword for the audit', 'ses_keep');
    await ask('Plan a trip to Zanzibar', 'ses_gone');
    await ask('And the flights to Zanzibar?', 'ses_gone');
    await ask('Last question of the day', 'ses_tail');
    await h.session('ses_tail', 1);

    const held = await vigil([
      'holds',
      'add',
      '--session',
      'ses_keep',
      '--reason',
      'litigation hold 2025-17',
      '--config',
      config,
    ]);
    expect(held).toMatchObject({ code: 0 });
    const holdId = held.stdout.trim();
    expect(holdId).toMatch(/^hold_/);
    const list = await vigil(['holds', 'list', '--config', config]);
    expect(list.stdout).toContain(`${holdId}  active  session ses_keep`);
    expect(list.stdout).toContain('reason: litigation hold 2025-17');

    const dry = await vigil(['retention', 'run', '--dry-run', '--config', config]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^dry run: would purge 2 exchanges \(\d+ records\)/);

    const run = await vigil(['retention', 'run', '--config', config]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^purged 2 exchanges \(\d+ records, \d+ blobs\)/);

    const sessions = JSON.parse((await vigil(['sessions', 'list', '--json', '--config', config])).stdout) as {
      items: Array<{ id: string }>;
    };
    // ses_keep is held; ses_tail's exchange holds the head of the gateway's chain, which is always kept.
    expect(sessions.items.map((s) => s.id).sort()).toEqual(['ses_keep', 'ses_tail']);
    // Gone from the data directory, not only from the lists: rows, blobs, search index and write-ahead log.
    expect(filesContaining(h.dataDir, 'Zanzibar')).toEqual([]);
    expect(filesContaining(h.dataDir, 'zanzibar')).toEqual([]);

    const pub = path.join(h.dataDir, 'ledger-public.pem');
    expect(await vigil(['keys', 'public', '--out', pub, '--config', config])).toMatchObject({ code: 0 });
    expect(statSync(path.join(h.dataDir, 'signing-key.pem')).mode & 0o777).toBe(0o600);

    await h.gateway.close(1000); // signs the gateway chain's final digest
    const verified = await vigil(['verify', '--public-key', pub, '--config', config]);
    expect(verified.code, verified.stdout).toBe(0);
    expect(verified.stdout).toMatch(/^ok: \d+ records in 3 chains, all intact/);
    expect(verified.stdout).toMatch(/signatures: [1-9]\d* digests and 1 purge records verified/);

    // Someone with the database file takes the same way around the append-only triggers that a purge takes.
    const db = new Database(path.join(h.dataDir, 'vigil.db'));
    db.transaction(() => {
      db.exec("INSERT INTO purge_authorizations (purge_id, at) VALUES ('by-hand', 0)");
      db.exec("DELETE FROM records WHERE session_id = 'ses_keep'");
      db.exec('DELETE FROM purge_authorizations');
    })();
    db.close();
    const caught = await vigil(['verify', '--public-key', pub, '--config', config]);
    expect(caught.code).toBe(1);
    expect(caught.stdout).toMatch(
      /missing: records \d+\.\.\d+ of chain \S+ are missing, and no valid purge record removed/,
    );
  });
});
