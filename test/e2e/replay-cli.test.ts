/**
 * Replay as a user runs it: `vigil replay serve` answers the official SDK from a recorded session, refuses a
 * diverging request with 412 naming the turn, and `vigil replay resend` sends a recorded request through the gateway
 * again and reports whether the answer changed.
 */
import Anthropic, { APIError } from '@anthropic-ai/sdk';
import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic } from '../../src/sandbox/fake-anthropic.js';
import { serve, vigil, VIGIL_BIN, type ServeProcess } from '../support/cli.js';
import { CLIENT_KEY, GATEWAY_KEY, tempDir } from '../support/gateway-harness.js';

let fake: FakeAnthropic;
let gw: ServeProcess;
let dir: string;
let replay: ChildProcess | undefined;

/** The access log, read from the store file. */
function recordingReads(): Array<{ what: string; ids: string[] }> {
  const db = new Database(path.join(dir, 'vigil.db'), { readonly: true });
  try {
    return (db.prepare("SELECT data FROM records WHERE kind = 'recording.read'").pluck().all() as string[]).map(
      (d) => JSON.parse(d) as { what: string; ids: string[] },
    );
  } finally {
    db.close();
  }
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

beforeAll(async () => {
  fake = await startFakeAnthropic({ apiKey: GATEWAY_KEY });
  dir = tempDir();
  gw = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir], {
    ANTHROPIC_API_KEY: GATEWAY_KEY,
  });
});
afterAll(async () => {
  replay?.kill('SIGTERM');
  gw?.child.kill('SIGTERM');
  await gw?.exited;
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
});

const turn = (baseURL: string, text: string) =>
  new Anthropic({ baseURL, apiKey: CLIENT_KEY, maxRetries: 0 }).messages
    .create(
      { model: 'claude-haiku-4-5', max_tokens: 50, messages: [{ role: 'user', content: text }] },
      { headers: { 'x-vigil-session': 'to-replay' } },
    )
    .withResponse();

it('replay serve answers from the recording; resend reports an unchanged answer', async () => {
  const recorded = await turn(gw.url, 'first recorded question');
  await turn(gw.url, 'second recorded question');
  const exchangeId = recorded.response.headers.get('x-vigil-exchange-id')!;

  const port = await freePort();
  replay = spawn(process.execPath, [
    VIGIL_BIN,
    'replay',
    'serve',
    '--session',
    'to-replay',
    '--listen',
    `127.0.0.1:${port}`,
    '--speed',
    '0',
    '--data-dir',
    dir,
  ]);
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    replay!.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    replay!.once('exit', (code) => reject(new Error(`replay serve exited ${code}: ${out}`)));
  });
  const before = fake.requests.length;
  const replayed = await turn(url, 'first recorded question');
  expect(replayed.data.content).toEqual(recorded.data.content);
  expect(fake.requests.length).toBe(before); // Claude was not called

  const diverged = (await turn(url, 'a question never asked').catch((e: unknown) => e)) as APIError;
  expect(diverged.status).toBe(412);
  expect(diverged.message).toMatch(/replay diverged at turn/);

  // Not for a web page acting through a browser here (DNS rebinding: its own name in Host).
  const rebound = await new Promise<number>((resolve, reject) => {
    const req = request(`${url}/v1/messages`, { method: 'POST', headers: { host: `attacker.example:${port}` } });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    req.end('{}');
  });
  expect(rebound).toBe(403);
  // Serving a session is reading it: in the access log, as any read.
  expect(recordingReads()).toContainEqual(expect.objectContaining({ what: 'session', ids: ['to-replay'] }));

  const cliConfig = path.join(dir, 'cli.yaml');
  writeFileSync(
    cliConfig,
    `data_dir: ${dir}\npublic_url: ${gw.url}\nconnections:\n  - name: anthropic\n    upstream: ${fake.url}\n`,
  );
  const resent = await vigil(['replay', 'resend', exchangeId, '--connection', 'anthropic', '--config', cliConfig]);
  expect(resent.stdout).toContain('same answer as recorded');
  expect(resent.code).toBe(0);
  expect(recordingReads()).toContainEqual(expect.objectContaining({ what: 'exchange', ids: [exchangeId] }));
});

it('replay serve listens on this machine only: it asks nobody who they are', async () => {
  const r = await vigil(['replay', 'serve', '--session', 'to-replay', '--listen', '0.0.0.0:0', '--data-dir', dir]);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/listens on this machine only/);
});
