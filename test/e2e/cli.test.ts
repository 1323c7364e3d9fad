/**
 * The `vigil` executable as an operator uses it: serve, read sessions back, verify, shut down gracefully, and
 * recover after a crash.
 */
import Anthropic from '@anthropic-ai/sdk';
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeAnthropic, type FakeAnthropic } from '../../src/sandbox/fake-anthropic.js';
import { auditEventOf } from '../../src/export/record-events.js';
import { toStored, type RecordRow } from '../../src/store/store-rows.js';
import { spawn } from 'node:child_process';
import { selfSigned } from '../support/self-signed.js';
import { serve, vigil, VIGIL_BIN } from '../support/cli.js';
import { CLIENT_KEY, GATEWAY_KEY, tempDir } from '../support/gateway-harness.js';
import { fillDisk, tmpfsMountable, withTmpfs } from '../support/tmpfs.js';

let fake: FakeAnthropic;
const dirs: string[] = [];
const env = { ANTHROPIC_API_KEY: GATEWAY_KEY };

function dataDir(): string {
  const d = tempDir();
  dirs.push(d);
  return d;
}

beforeAll(async () => {
  fake = await startFakeAnthropic({ apiKey: GATEWAY_KEY });
});
afterAll(async () => {
  await fake.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const ask = (url: string, text: string, session: string, scenario?: string) =>
  new Anthropic({ baseURL: url, apiKey: CLIENT_KEY, maxRetries: 0 }).messages
    .stream(
      { model: 'claude-haiku-4-5', max_tokens: 300, messages: [{ role: 'user', content: text }] },
      { headers: { 'x-vigil-session': session, ...(scenario ? { 'x-fake-scenario': scenario } : {}) } },
    )
    .finalMessage();

describe('vigil serve, sessions, verify', () => {
  it('records through a served gateway and reads it back as JSON and as a transcript', async () => {
    const dir = dataDir();
    const gw = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir], env);
    try {
      await ask(gw.url, 'first question', 'cli-session');
      await ask(gw.url, 'second question', 'cli-session');
    } finally {
      gw.child.kill('SIGTERM');
      expect(await gw.exited).toBe(0);
    }
    const list = await vigil(['sessions', 'list', '--data-dir', dir, '--json']);
    expect(list.code).toBe(0);
    const listed = JSON.parse(list.stdout) as { items: unknown[]; next_cursor: string | null; sessions: unknown[] };
    // The admin API's list shape, its rows included (`recent`, as GET /sessions has them).
    expect(listed).toMatchObject({ next_cursor: null });
    expect(listed.items).toEqual([
      expect.objectContaining({
        id: 'cli-session',
        exchanges: 2,
        connection: 'anthropic',
        callerSubject: 'anonymous',
        recent: expect.objectContaining({ exchanges: 2, outcomes: { ok: 2 } }),
      }),
    ]);
    // The list's old key answers the same for one release (deprecated), so scripts reading it keep working.
    expect(listed.sessions).toEqual(listed.items);

    // A bad --limit or --cursor is an error saying what to fix, not silently ignored (or read as "from the top").
    const badLimit = await vigil(['sessions', 'list', '--data-dir', dir, '--limit', 'abc']);
    expect(badLimit.code).not.toBe(0);
    expect(badLimit.stderr).toContain('limit: expected an integer from 1 to 1000, got "abc"');
    const badCursor = await vigil(['search', 'question', '--data-dir', dir, '--cursor', 'garbage']);
    expect(badCursor.code).not.toBe(0);
    expect(badCursor.stderr).toContain('cursor: not a cursor from this list');

    const show = await vigil(['sessions', 'show', 'cli-session', '--data-dir', dir, '--json']);
    expect(show.code).toBe(0);
    const { exchanges } = JSON.parse(show.stdout) as { exchanges: Array<Record<string, any>> };
    expect(exchanges).toHaveLength(2);
    expect(exchanges[0]!.request.body.messages[0].content).toBe('first question');
    expect(exchanges[0]!.response.status).toBe(200);
    expect(exchanges[0]!.response.events[0]).toMatchObject({ type: 'message_start', data: { type: 'message_start' } });
    expect(exchanges[0]!.response.events[0].offset_ms).toEqual(expect.any(Number));
    expect(exchanges[1]!.response.message.content[0].text).toBe('Echo: second question');

    // A person reading a recording from the command line is in the access log too.
    const log = new Database(path.join(dir, 'vigil.db'), { readonly: true });
    const reads = (log.prepare("SELECT data FROM records WHERE kind = 'recording.read'").pluck().all() as string[]).map(
      (d) => JSON.parse(d) as { what: string; ids: string[]; actor: { subject: string } },
    );
    log.close();
    expect(reads).toEqual([
      expect.objectContaining({
        what: 'session',
        ids: ['cli-session'],
        actor: expect.objectContaining({ subject: expect.stringMatching(/^cli:/) }),
      }),
    ]);

    const transcript = await vigil(['sessions', 'show', 'cli-session', '--data-dir', dir]);
    expect(transcript.stdout).toContain('second question');
    expect(transcript.stdout).toContain('assistant:');
    expect(transcript.stdout).toContain('Echo: second question');

    const verified = await vigil(['verify', '--data-dir', dir]);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/^ok: \d+ records/);
  });

  it('shows the whole first turn of a Claude Code session: the prompt, then the environment sent after it', async () => {
    // Went wrong: a transcript showed only a request's last message as its turn. Claude Code's first request carries
    // the user's prompt followed by a message with the environment, so `claude -p "say hi"` read as the environment
    // text and then "Echo: say hi", the prompt itself missing (in `sessions show`, the Markdown export, the search
    // index). Tool results sent back after a tool call must still read as their turn.
    const dir = dataDir();
    const gw = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir], env);
    const post = (messages: unknown[]) =>
      fetch(`${gw.url}/v1/messages`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-api-key': CLIENT_KEY,
          'anthropic-version': '2023-06-01',
          'x-vigil-session': 'claude-code',
        },
        body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 100, messages }),
      });
    const environment = '# Environment\nWorking directory: /home/zanzibar/project';
    const firstTurn = [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'say hi' },
          { type: 'text', text: '<system-reminder>The project is codenamed wombat.</system-reminder>' },
        ],
      },
      { role: 'system', content: environment },
    ];
    const toolUse = { type: 'tool_use', id: 'toolu_1', name: 'Bash', input: { command: 'ls' } };
    try {
      expect((await post(firstTurn)).status).toBe(200);
      const second = await post([
        ...firstTurn,
        { role: 'assistant', content: [toolUse] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'README.md quokka.ts' }] },
      ]);
      expect(second.status).toBe(200);
    } finally {
      gw.child.kill('SIGTERM');
      expect(await gw.exited).toBe(0);
    }

    const transcript = (await vigil(['sessions', 'show', 'claude-code', '--data-dir', dir])).stdout;
    const [first, next] = transcript.split(/^── #2 /m);
    expect(first).toMatch(
      / {2}user:\n {4}say hi\n {4}<system-reminder>The project is codenamed wombat.<\/system-reminder>\n {2}system:\n {4}# Environment\n {4}Working directory: \/home\/zanzibar\/project\n {2}assistant:\n {4}Echo: say hi/,
    );
    // The second exchange's turn is the tool results alone: the history resent before them is not repeated.
    expect(next).toMatch(/ {2}user:\n {4}← result README.md quokka.ts\n {2}assistant:/);
    expect(next).not.toContain('say hi');

    const md = (await vigil(['sessions', 'export', 'claude-code', '--format', 'markdown', '--data-dir', dir])).stdout;
    const [mdFirst, mdNext] = md.split(/^## 2\. /m);
    expect(mdFirst).toContain(
      `**user:**\n\n> say hi\n\n> &lt;system-reminder&gt;The project is codenamed wombat.&lt;/system-reminder&gt;\n\n**system:**\n\n> # Environment\n> Working directory`,
    );
    expect(mdFirst).toContain('**assistant:**\n\n> Echo: say hi');
    expect(mdNext).toContain('**user:**\n\n*Tool result*\n\n```\nREADME.md quokka.ts\n```');
    expect(mdNext).not.toContain('say hi');

    // The search index holds the turn's every new message, and not the history resent with later turns.
    const hits = async (q: string) =>
      (
        JSON.parse((await vigil(['search', q, '--data-dir', dir, '--json'])).stdout) as {
          items: Array<{ exchangeId: string }>;
        }
      ).items.length;
    expect(await hits('wombat')).toBe(1);
    expect(await hits('zanzibar')).toBe(1);
    expect(await hits('quokka')).toBe(1);
  });

  // Fourteen CLI processes and a gateway, each starting Node (15 s alone here; past 30 s beside the browser tests).
  it('lists and exports the answers a model declined: --stop-reason refusal', async () => {
    const dir = dataDir();
    const gw = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir], env);
    try {
      expect((await ask(gw.url, 'write the exploit', 'declined', 'refusal')).stop_reason).toBe('refusal');
      expect((await ask(gw.url, 'write a poem', 'answered')).stop_reason).toBe('end_turn');
    } finally {
      gw.child.kill('SIGTERM');
      expect(await gw.exited).toBe(0);
    }
    // The transcript and the Markdown export say so in the exchange's line.
    const shown = (await vigil(['sessions', 'show', 'declined', '--data-dir', dir])).stdout;
    expect(shown).toMatch(/^── #1 .* → 200 ok · refused · in [\d,]+ · out 0/m);
    expect((await vigil(['sessions', 'show', 'answered', '--data-dir', dir])).stdout).not.toContain('refused');
    const md = (await vigil(['sessions', 'export', 'declined', '--format', 'markdown', '--data-dir', dir])).stdout;
    expect(md).toMatch(/→ 200 ok · refused · in [\d,]+ · out 0 tokens/);
    const exported = await vigil(['sessions', 'export', '--stop-reason', 'refusal', '--data-dir', dir]);
    expect(exported.code).toBe(0);
    const lines = exported.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { session_id: string });
    expect(lines.map((x) => x.session_id)).toEqual(['declined']);
    // Every filter the admin API's session list takes, sessions list takes too.
    const listed = async (...filters: string[]) =>
      (
        JSON.parse((await vigil(['sessions', 'list', ...filters, '--data-dir', dir, '--json'])).stdout) as {
          items: Array<{ id: string }>;
        }
      ).items.map((x) => x.id);
    expect(await listed('--stop-reason', 'refusal')).toEqual(['declined']);
    expect(await listed('--stop-reason', 'end_turn', '--model', 'claude-haiku-4-5')).toEqual(['answered']);
    expect(await listed('--outcome', 'ok')).toEqual(['answered', 'declined']);
    const none = await vigil(['sessions', 'list', '--outcome', 'interrupted', '--data-dir', dir]);
    expect(none.stdout).toBe('no sessions match these filters\n'); // not "no sessions recorded": there are some
    // Usage, as a table and as JSON: one refusal, among two exchanges of one caller.
    const table = await vigil(['usage', '--by', 'model', '--data-dir', dir]);
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(
      /^model\s+exchanges\s+input tokens\s+cache reads\s+cache writes\s+output tokens\s+failed\s+refused\s+in progress$/,
    );
    expect(table.stdout).toMatch(/^claude-haiku-4-5\s+2\s+\d+\s+\d+\s+\d+\s+\d+\s+0\s+1\s+0$/m);
    const report = JSON.parse((await vigil(['usage', '--stop-reason', 'refusal', '--json', '--data-dir', dir])).stdout);
    expect(report).toMatchObject({ by: 'caller', items: [{ key: 'anonymous', exchanges: 1, refused: 1 }] });
    // By caller, with the e-mail column (none here: anonymous), and as CSV for a spreadsheet.
    const callers = await vigil(['usage', '--data-dir', dir]);
    expect(callers.stdout.split('\n')[0]).toMatch(/^caller\s+email\s+exchanges\s+/);
    expect(callers.stdout).toMatch(/^anonymous\s+2\s+\d+\s+\d+\s+\d+\s+\d+\s+0\s+1\s+0$/m);
    const csv = (await vigil(['usage', '--by', 'model', '--csv', '--data-dir', dir])).stdout.split('\r\n');
    expect(csv[0]).toBe(
      '"model","exchanges","input tokens","cache reads","cache writes","output tokens","failed","refused","in progress"',
    );
    expect(csv[1]).toMatch(/^"claude-haiku-4-5","2","\d+","\d+","\d+","\d+","0","1","0"$/);
    expect(csv[2]).toBe('');
    expect((await vigil(['usage', '--by', 'team', '--data-dir', dir])).stderr).toContain('--by: expected one of');
    expect((await vigil(['usage', '--caller', 'nobody', '--data-dir', dir])).stdout).toBe(
      'no exchanges match these filters\n',
    );
    const found = await vigil(['search', 'poem', '--stop-reason', 'refusal', '--data-dir', dir, '--json']);
    expect(JSON.parse(found.stdout)).toMatchObject({ items: [] });
    const bad = await vigil(['sessions', 'export', '--stop-reason', 'Not one', '--data-dir', dir]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--stop-reason: expected a stop reason');
  }, 60_000);

  it('verify fails, naming the record, when a record is changed or removed behind the gateway’s back', async () => {
    const dir = dataDir();
    const gw = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir], env);
    await ask(gw.url, 'evidence one', 'tamper');
    await ask(gw.url, 'evidence two', 'tamper');
    gw.child.kill('SIGTERM');
    await gw.exited;

    // An attacker with the file: disable the append-only triggers and edit history.
    const db = new Database(path.join(dir, 'vigil.db'));
    expect(() => db.prepare("UPDATE records SET at = at + 1 WHERE kind = 'exchange.request'").run()).toThrow(
      /append-only/,
    );
    db.exec('DROP TRIGGER records_append_only_u; DROP TRIGGER records_append_only_d;');
    const target = db
      .prepare("SELECT chain, chain_seq FROM records WHERE kind = 'exchange.request' ORDER BY seq LIMIT 1")
      .get() as {
      chain: string;
      chain_seq: number;
    };
    db.prepare(
      "UPDATE records SET data = replace(data, 'evidence one', 'nothing here') WHERE chain = ? AND chain_seq = ?",
    ).run(target.chain, target.chain_seq);
    db.close();
    const changed = await vigil(['verify', '--data-dir', dir]);
    expect(changed.code).toBe(1);
    expect(changed.stdout).toContain(`changed: record ${target.chain}#${target.chain_seq}`);

    const db2 = new Database(path.join(dir, 'vigil.db'));
    db2.prepare('DELETE FROM records WHERE chain = ? AND chain_seq = ?').run(target.chain, target.chain_seq + 1);
    db2.close();
    const removed = await vigil(['verify', '--data-dir', dir, '--json']);
    expect(removed.code).toBe(1);
    expect(JSON.parse(removed.stdout).problems).toEqual(
      expect.arrayContaining([expect.objectContaining({ problem: 'missing', chainSeq: target.chain_seq + 1 })]),
    );
  });

  it('verify --anchor catches the newest records cut off with their digest, which the store alone cannot', async () => {
    // Went wrong: the tail of the chain written last — its final digest included — could be cut off, and verify
    // --public-key passed. The final digest's anchor, kept outside the store (the SIEM), tells the two apart.
    const dir = dataDir();
    const gw = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir], env);
    await ask(gw.url, 'evidence one', 'cut');
    await ask(gw.url, 'exfiltrate the customer database', 'cut');
    gw.child.kill('SIGTERM');
    expect(await gw.exited).toBe(0);
    const pub = path.join(dir, 'ledger.pub.pem');
    expect((await vigil(['keys', 'public', '--out', pub, '--data-dir', dir])).code).toBe(0);

    const db = new Database(path.join(dir, 'vigil.db'));
    const digest = db.prepare("SELECT * FROM records WHERE kind = 'digest.signed' ORDER BY seq DESC LIMIT 1").get();
    const anchor = auditEventOf(toStored(digest as RecordRow), 'gw')!.attributes.anchor as string;
    const ok = await vigil(['verify', '--data-dir', dir, '--public-key', pub, '--anchor', anchor]);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toContain('anchors: 1 found, with the hashes given');

    const cut = db
      .prepare("SELECT exchange_id FROM records WHERE kind = 'exchange.request' ORDER BY seq DESC LIMIT 1")
      .pluck()
      .get() as string;
    db.transaction(() => {
      db.exec("INSERT INTO purge_authorizations (purge_id, at) VALUES ('by-hand', 0)");
      db.prepare('DELETE FROM records WHERE seq >= (SELECT min(seq) FROM records WHERE exchange_id = ?)').run(cut);
      for (const table of ['exchange_results', 'exchange_text_rows', 'exchange_callers'])
        db.prepare(`DELETE FROM ${table} WHERE exchange_id = ?`).run(cut);
      db.prepare('DELETE FROM exchanges WHERE id = ?').run(cut);
      db.exec('DELETE FROM purge_authorizations');
    })();
    db.close();
    expect((await vigil(['verify', '--data-dir', dir, '--public-key', pub])).code).toBe(0);
    const caught = await vigil(['verify', '--data-dir', dir, '--public-key', pub, '--anchor', anchor]);
    expect(caught.code).toBe(1);
    expect(caught.stdout).toContain('head_missing: chain');
    expect(caught.stdout).toContain('which the anchor given names: records were removed');

    // A regression: an anchor from another store was reported as "chain … ends before record #4 …: records were
    // removed", which accuses this store of something it never held.
    const elsewhere = `ch_elsewhere:4:${'a'.repeat(64)}`;
    const foreign = await vigil(['verify', '--data-dir', dir, '--public-key', pub, '--anchor', elsewhere]);
    expect(foreign.code).toBe(1);
    expect(foreign.stdout).toContain(
      'no chain ch_elsewhere in this store, which the anchor given names (record #4): is this the store the anchor ' +
        'was taken from (--config, --data-dir)?',
    );
    expect(foreign.stdout).not.toContain('ch_elsewhere ends before record');

    const bad = await vigil(['verify', '--data-dir', dir, '--anchor', 'ch_1:2']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--anchor ch_1:2: expected CHAIN:SEQ:HASH');
  });

  it('signs what CLI commands append (keys, the access log), so verify --public-key finds no unsigned tail', async () => {
    // Went wrong: the chains `keys create|revoke`, `sessions show` (its recording.read) and `approvals approve|deny`
    // wrote were never signed, so what they recorded rested on hashes alone.
    const dir = dataDir();
    const gw = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir], env);
    await ask(gw.url, 'hello', 'signed');
    gw.child.kill('SIGTERM');
    expect(await gw.exited).toBe(0);
    expect((await vigil(['keys', 'create', '--name', 'ci', '--data-dir', dir])).code).toBe(0);
    expect((await vigil(['keys', 'revoke', 'ci', '--data-dir', dir])).code).toBe(0);
    expect((await vigil(['sessions', 'show', 'signed', '--data-dir', dir])).code).toBe(0);
    const pub = path.join(dir, 'ledger.pub.pem');
    expect((await vigil(['keys', 'public', '--out', pub, '--data-dir', dir])).code).toBe(0);
    const verified = await vigil(['verify', '--data-dir', dir, '--public-key', pub]);
    expect(verified.code, verified.stdout).toBe(0);
    expect(verified.stdout).toMatch(/^ok: \d+ records in 4 chains, all intact/);
    expect(verified.stdout).not.toContain('unsigned tail');
  });

  it('on SIGTERM lets an in-flight stream finish, then exits 0', async () => {
    const dir = dataDir();
    const gw = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir], env);
    const answer = ask(gw.url, 'a slow answer that takes a while to stream fully', 'graceful', 'slow:30');
    await new Promise((r) => setTimeout(r, 150));
    gw.child.kill('SIGTERM');
    const msg = await answer;
    expect(msg.stop_reason).toBe('end_turn');
    expect(await gw.exited).toBe(0);
    const show = JSON.parse((await vigil(['sessions', 'show', 'graceful', '--data-dir', dir, '--json'])).stdout);
    expect(show.exchanges[0].outcome).toBe('ok');
  });

  it('after a crash, the cut exchange is recorded up to the cut and marked interrupted on the next start', async () => {
    const dir = dataDir();
    const gw = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir], env);
    const answer = ask(gw.url, 'one two three four five six seven eight nine ten eleven twelve', 'crashed', 'slow:40');
    answer.catch(() => {});
    await new Promise((r) => setTimeout(r, 250));
    gw.child.kill('SIGKILL');
    await expect(answer).rejects.toThrow();
    await gw.exited;

    const again = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir], env);
    again.child.kill('SIGTERM');
    await again.exited;
    const show = JSON.parse((await vigil(['sessions', 'show', 'crashed', '--data-dir', dir, '--json'])).stdout);
    const [x] = show.exchanges;
    expect(x.outcome).toBe('interrupted');
    expect(x.response.events.length).toBeGreaterThan(1);
    expect(x.response.events.map((e: { type: string }) => e.type)).toContain('content_block_start');
    // The text itself may still have been held back by the masking stage when the gateway died (see README,
    // "Masking"): what is stored is a prefix of the masked text, never unmasked text.
    expect(
      'Echo: one two three four five six seven eight nine ten eleven twelve'.startsWith(
        x.response.message.content[0].text,
      ),
    ).toBe(true);
    expect((await vigil(['verify', '--data-dir', dir])).code).toBe(0);
  });

  it('refuses a second vigil serve on the same store, naming it; one killed leaves no lock behind', async () => {
    const dir = dataDir();
    const args = ['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir];
    const first = await serve(args, env);
    const second = await vigil(['serve', ...args], env);
    expect(second.code).toBe(2);
    expect(second.stderr).toMatch(/^vigil: cannot open the store:\n/);
    expect(second.stderr).toContain(
      `data_dir (--data-dir): the store ${path.join(dir, 'vigil.db')} is in use by another vigil serve`,
    );
    expect(second.stderr).not.toMatch(/\n\s+at /); // no stack trace
    // The first goes on, its record its own: the second cut none of its exchanges.
    expect((await ask(first.url, 'still here', 'lock-first')).content[0]).toMatchObject({ text: 'Echo: still here' });
    first.child.kill('SIGKILL');
    await first.exited;
    const third = await serve(args, env);
    third.child.kill('SIGTERM');
    expect(await third.exited).toBe(0);
  });

  it('stops gracefully on a SIGTERM sent the moment it says it listens', async () => {
    // Went wrong: the listening line was printed before the signal handlers were set, so a supervisor (or a test)
    // stopping the gateway as soon as it read the line could kill it outright (exit by SIGTERM, one start in three
    // on a 2-core host) instead of stopping it gracefully. Several starts, as the race was one of timing.
    const dir = dataDir();
    const args = ['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir];
    for (let start = 0; start < 5; start++) {
      const gw = await serve(args, env);
      gw.child.kill('SIGTERM');
      expect(await gw.exited).toBe(0);
    }
  });

  it('a fault of its own that nothing caught: one JSON fatal line naming what is lost, exit 1, recovered at the next start', async () => {
    // No input is known to cause one, so one is injected: a preloaded module that throws from a signal handler.
    const dir = dataDir();
    const inject = path.join(tempDir(), 'inject-fault.mjs');
    writeFileSync(inject, "process.on('SIGUSR2', () => { throw new Error('injected fault'); });\n");
    const gw = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir], {
      ...env,
      NODE_OPTIONS: `--import=${inject}`,
    });
    const answer = ask(gw.url, 'one two three four five six seven eight', 'faulted', 'slow:40');
    answer.catch(() => {});
    await new Promise((r) => setTimeout(r, 250));
    gw.child.kill('SIGUSR2');
    expect(await gw.exited).toBe(1);
    await expect(answer).rejects.toThrow();
    const lines = gw
      .stderr()
      .split('\n')
      .filter((l) => l.trim() !== '');
    // Every line the gateway wrote is JSON: no bare stack trace among them.
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const fatal = logged.find((l) => l.level === 60);
    expect(fatal).toMatchObject({
      msg: expect.stringMatching(/^uncaught exception: the gateway stops/),
      err: expect.objectContaining({ message: 'injected fault' }),
      inFlight: 1,
    });

    const again = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir], env);
    again.child.kill('SIGTERM');
    await again.exited;
    const show = JSON.parse((await vigil(['sessions', 'show', 'faulted', '--data-dir', dir, '--json'])).stdout);
    expect(show.exchanges[0].outcome).toBe('interrupted');
  });
});

describe('helper verbs', () => {
  it('vigil sandbox serves the fake Anthropic API until stopped', async () => {
    const child = spawn(process.execPath, [VIGIL_BIN, 'sandbox', '--listen', '127.0.0.1:0']);
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          const m = /on (http:\/\/\S+)/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.once('exit', (code) => reject(new Error(`sandbox exited ${code}`)));
      });
      const msg = await new Anthropic({ baseURL: url, apiKey: 'any', maxRetries: 0 }).messages.create({
        model: 'claude-haiku-4-5',
        max_tokens: 20,
        messages: [{ role: 'user', content: 'sandbox?' }],
      });
      expect(msg.content[0]).toMatchObject({ text: 'Echo: sandbox?' });
    } finally {
      child.kill('SIGTERM');
    }
    expect(await new Promise((r) => child.once('exit', r))).toBe(0);
  });

  it('vigil store grants prints SQL for an append-only role', async () => {
    const r = await vigil(['store', 'grants', '--role', 'vigil_gateway', '--schema', 'vigil']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('GRANT SELECT, INSERT ON "vigil".records');
    expect(r.stdout).toContain('REVOKE UPDATE, DELETE, TRUNCATE');
  });

  it('vigil store backup copies the store while the gateway records, into a data dir that verifies and serves', async () => {
    const dir = dataDir();
    const gw = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir], env);
    const copy = path.join(dataDir(), 'backup');
    try {
      await ask(gw.url, 'kept in the copy', 'backed-up');
      // A stream in flight while the copy is made: the copy has what was committed when it began.
      const streaming = ask(gw.url, 'one two three four five six seven eight', 'in-flight', 'slow:40');
      await new Promise((r) => setTimeout(r, 150));
      const r = await vigil(['store', 'backup', '--data-dir', dir, '--out', copy]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`wrote ${path.join(copy, 'vigil.db')}`);
      expect(r.stdout).toContain(`vigil verify --data-dir ${copy}`);
      await streaming;
    } finally {
      gw.child.kill('SIGTERM');
      await gw.exited;
    }
    expect(readdirSync(copy)).toEqual(['vigil.db']); // no partial file, and not the signing key
    expect(statSync(path.join(copy, 'vigil.db')).mode & 0o777).toBe(0o600);
    const verified = await vigil(['verify', '--data-dir', copy]);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/^ok: \d+ records in \d+ chains?, all intact/);
    const show = JSON.parse((await vigil(['sessions', 'show', 'backed-up', '--data-dir', copy, '--json'])).stdout);
    expect(show.exchanges[0].response.message.content[0].text).toBe('Echo: kept in the copy');
    // The copy holds the record of its own making (and so does the store).
    const db = new Database(path.join(copy, 'vigil.db'), { readonly: true });
    const backups = db
      .prepare(`SELECT data FROM records WHERE kind = 'recording.read' AND data LIKE '%store backup to%'`)
      .all();
    db.close();
    expect(backups).toHaveLength(1);

    const again = await vigil(['store', 'backup', '--data-dir', dir, '--out', copy]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`--out ${copy} is not empty: give a new or empty directory`);
    const pgConfig = path.join(dataDir(), 'pg.yaml');
    writeFileSync(
      pgConfig,
      'store:\n  postgres:\n    url: postgres://vigil@127.0.0.1/vigil\n' +
        'connections:\n  - name: anthropic\n    credential: { env: ANTHROPIC_API_KEY }\n',
    );
    const onPostgres = await vigil(['store', 'backup', '--config', pgConfig, '--out', path.join(dataDir(), 'x')]);
    expect(onPostgres.code).toBe(2);
    expect(onPostgres.stderr).toContain('back it up with pg_dump');

    // What the copy is for: a gateway serves from it (the in-flight exchange, cut in the copy, ends interrupted).
    const restored = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', copy], env);
    try {
      expect((await ask(restored.url, 'after the restore', 'backed-up')).content[0]).toMatchObject({
        text: 'Echo: after the restore',
      });
    } finally {
      restored.child.kill('SIGTERM');
      await restored.exited;
    }
    expect((await vigil(['verify', '--data-dir', copy])).code).toBe(0);
  });
});

describe('operator errors say what to fix', () => {
  it('vigil config check says what serve would run, or every problem that would stop it, and opens nothing', async () => {
    const dir = dataDir();
    const config = path.join(dir, 'vigil.yaml');
    const data = path.join(dir, 'data');
    /** `vigil config check` of a config file of these lines. */
    const check = (lines: string[], env: NodeJS.ProcessEnv = {}) => {
      writeFileSync(config, `${lines.join('\n')}\n`);
      return vigil(['config', 'check', '--config', config], env);
    };
    /** One connection, whose credential's variable is not set (serve starts, and refuses its calls). */
    const unkeyed = ['connections:', '  - name: anthropic', '    credential: { env: VIGIL_TEST_UNSET_KEY }'];
    const ok = await check([
      `data_dir: ${data}`,
      ...unkeyed,
      '    proxy: http://proxy.example:3128',
      '    limits:',
      '      - { name: ci-daily, window: 1d, tokens: 2000000, requests: 500, for: [{ group: ci }, { key: nightly }] }',
      '      - { name: team, per: connection, window: 30d, tokens: 90000000 }',
    ]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`config ok: ${config}`);
    expect(ok.stdout).toContain('listen 127.0.0.1:8080 (admin API 127.0.0.1:8081)');
    expect(ok.stdout).toContain(`store sqlite ${path.join(data, 'vigil.db')}`);
    expect(ok.stdout).toContain(
      'connection anthropic → https://api.anthropic.com through http://proxy.example:3128 (connections[0] (anthropic).proxy)',
    );
    expect(ok.stdout).toContain(
      '    limit ci-daily: 2,000,000 tokens, 500 calls per caller in 1d (for group ci, key nightly)\n' +
        '    limit team: 90,000,000 tokens per connection in 30d\n',
    );
    expect(ok.stderr).toContain('vigil: warning: connection "anthropic" has no credential: set VIGIL_TEST_UNSET_KEY');
    expect(existsSync(data)).toBe(false); // no store opened

    // The environment's egress proxy, for the upstream and the identity provider alike.
    const egress = await check(
      [
        `data_dir: ${data}`,
        'identity:',
        '  oidc:',
        '    - { issuer: https://idp.example.com, audience: vigil }',
        '    - { issuer: https://idp.internal.example, audience: vigil }',
        'approvals:',
        '  webhooks:',
        '    - { name: oncall, url: { env: VIGIL_TEST_HOOK_URL }, format: slack }',
        '    - { name: chatops, url: "https://chat.internal.example/hook" }',
        ...unkeyed,
      ],
      {
        HTTPS_PROXY: 'egress.example:3128',
        NO_PROXY: '.internal.example',
        VIGIL_TEST_HOOK_URL: 'https://hooks.slack.com/services/T0/B0/secret-part',
      },
    );
    expect(egress.code).toBe(0);
    expect(egress.stdout).toContain(
      'connection anthropic → https://api.anthropic.com through http://egress.example:3128 (HTTPS_PROXY)',
    );
    expect(egress.stdout).toContain('issuer https://idp.example.com through http://egress.example:3128 (HTTPS_PROXY)');
    expect(egress.stdout).toMatch(/issuer https:\/\/idp\.internal\.example\n/); // no_proxy: direct
    expect(egress.stdout).toContain('approval webhook oncall through http://egress.example:3128 (HTTPS_PROXY)');
    expect(egress.stdout).toMatch(/approval webhook chatops\n/);
    expect(egress.stdout).not.toContain('secret-part'); // a webhook's URL can be a credential

    const exposed = await check(['listen: 0.0.0.0:8080', ...unkeyed]);
    expect(exposed.code).toBe(2);
    expect(exposed.stderr).toContain('refusing to listen on 0.0.0.0: no identity is configured');
    // Keys only, over plain HTTP beyond loopback: it would start, and says what crosses the network in clear.
    const clear = await check(['listen: 0.0.0.0:8080', 'identity: { anonymous: never }', ...unkeyed]);
    expect(clear.code).toBe(0);
    expect(clear.stderr).toContain('vigil: warning: the proxy listens beyond loopback over plain HTTP');
    const certs = await selfSigned(dir, 'gw');
    const tls = `{ cert: { file: ${certs.certFile} }, key: { file: ${certs.keyFile} } }`;
    const https = await check([
      'listen: 0.0.0.0:8443',
      'identity: { anonymous: never }',
      `tls: ${tls}`,
      `admin: { tls: ${tls} }`,
      ...unkeyed,
    ]);
    expect(https.stdout).toContain('listen 0.0.0.0:8443 over TLS (admin API 127.0.0.1:8444 over TLS)');
    expect(https.stderr).not.toContain('plain HTTP');

    const schema = await check([
      'connections:',
      '  - name: anthropic',
      '    proxy: { env: VIGIL_TEST_UNSET_PROXY }',
      '    upstream_timeout: soon',
    ]);
    expect(schema.code).toBe(2);
    expect(schema.stderr).toMatch(/connections\[0\] \(anthropic\)\.upstream_timeout/);
    const proxy = await check(['connections:', '  - name: anthropic', '    proxy: { env: VIGIL_TEST_UNSET_PROXY }']);
    expect(proxy.code).toBe(2);
    expect(proxy.stderr).toContain('connections[0] (anthropic).proxy: environment variable VIGIL_TEST_UNSET_PROXY');
    // Went wrong: an admin token too short passed the check, then stopped serve (and a reload said so only then).
    const weak = await check(
      ['admin:', '  tokens:', '    - { name: ops, role: admin, token: { env: VIGIL_TEST_WEAK } }', ...unkeyed],
      { VIGIL_TEST_WEAK: 'short' },
    );
    expect(weak.code).toBe(2);
    expect(weak.stderr).toContain('admin.tokens[0] (ops).token: the token of "ops" is shorter than 24 characters');
  });

  it('reports every config problem with its path', async () => {
    const dir = dataDir();
    const file = path.join(dir, 'vigil.yaml');
    writeFileSync(
      file,
      [
        'listen: nowhere',
        'connections:',
        '  - name: prod',
        '    upstream: ftp://x',
        '    upstream_url: https://y',
        '',
      ].join('\n'),
    );
    const r = await vigil(['serve', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('listen: must be HOST:PORT');
    expect(r.stderr).toContain('connections[0] (prod).upstream');
    expect(r.stderr).toContain('upstream_url: unknown key (did you mean "upstream"?)');
  });

  it('names admin.listen when the admin port is taken', async () => {
    const dir = dataDir();
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as AddressInfo).port;
    const file = path.join(dir, 'vigil.yaml');
    writeFileSync(
      file,
      `admin:\n  listen: 127.0.0.1:${port}\nconnections:\n  - name: anthropic\n    upstream: ${fake.url}\n`,
    );
    try {
      const r = await vigil(['serve', '--config', file, '--listen', '127.0.0.1:0'], env);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`admin.listen: 127.0.0.1:${port} is already in use`);
    } finally {
      busy.close();
    }
  });

  it('exits when the proxy port is taken, its admin API and store released', async () => {
    // A regression: only a failed admin start released what start-up had opened, so with the proxy port taken the
    // process stayed up with its admin API listening.
    // A taken port whose next one is free: the admin API defaults to the proxy's port + 1, and another test's server
    // there would fail start-up for the wrong reason.
    let busy = createServer();
    let port = 0;
    for (let attempt = 0; attempt < 20; attempt++) {
      await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
      port = (busy.address() as AddressInfo).port;
      const next = createServer();
      const nextFree = await new Promise<boolean>((r) => {
        next.once('error', () => r(false));
        next.listen(port + 1, '127.0.0.1', () => r(true));
      });
      if (nextFree) {
        await new Promise((r) => next.close(r));
        break;
      }
      await new Promise((r) => busy.close(r));
      busy = createServer();
    }
    try {
      const r = await vigil(['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir()], env);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('another process listens there');
    } finally {
      busy.close();
    }
  });

  it('parses --listen of sandbox and replay serve as the config does (a bad one is refused)', async () => {
    // A regression: they split HOST:PORT by hand, which broke on [::1]:PORT and fell back silently on nonsense.
    const r = await vigil(['sandbox', '--listen', 'nonsense']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--listen must be HOST:PORT');
  });

  it('refuses to listen beyond loopback with no identity configured', async () => {
    const r = await vigil(['serve', '--listen', '0.0.0.0:0', '--data-dir', dataDir()]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/refusing to listen on 0\.0\.0\.0.*configure identity/s);
  });

  it('names a missing session', async () => {
    const dir = dataDir();
    const gw = await serve(['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', dir], env);
    gw.child.kill('SIGTERM');
    await gw.exited;
    const r = await vigil(['sessions', 'show', 'nope', '--data-dir', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no session "nope"');
  });

  it('names an unknown option, the command, the option meant and the options there are', async () => {
    // A regression: `--limt` gave Node's "Unknown option '--limt'. To specify a positional argument starting with a
    // '-', place it at the end of the command after '--'", which names neither the command nor its options.
    const r = await vigil(['sessions', 'list', '--limt', '5', '--data-dir', dataDir()]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^vigil: unknown option --limt for `vigil sessions list` \(did you mean --limit\?\); options: --config, --data-dir, --json, -h\/--help, .*--limit/,
    );
    const s = await vigil(['serve', '--lisen', '127.0.0.1:0']);
    expect(s.code).toBe(2);
    expect(s.stderr).toContain('unknown option --lisen for `vigil serve` (did you mean --listen?); options: ');
  });

  it('names data_dir when it is not a writable directory, without a stack trace', async () => {
    // A regression: `vigil serve` and CLI commands died with "vigil: unexpected error: Error: ENOTDIR … mkdir" and a
    // stack trace. (Tests run as root here, so a file in the way stands for a folder without write permission.)
    const file = path.join(dataDir(), 'not-a-folder');
    writeFileSync(file, '');
    for (const args of [
      ['serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(file, 'data')],
      ['keys', 'create', '--name', 'ci', '--data-dir', path.join(file, 'data')],
    ]) {
      const r = await vigil(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        `data_dir (--data-dir) ${path.join(file, 'data')}: must be a writable directory (ENOTDIR`,
      );
      expect(r.stderr).toContain('or choose another with --data-dir or data_dir in the config');
      expect(r.stderr).not.toMatch(/unexpected error|\n\s+at /);
    }
    const missing = await vigil(['holds', 'list', '--data-dir', path.join(file, 'data')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('data_dir (--data-dir): no store at');
    expect(missing.stderr).not.toMatch(/unexpected error|\n\s+at /);
    // A folder that exists but that nothing was recorded into is not an unwritable one.
    const empty = path.join(dataDir(), 'empty');
    mkdirSync(empty);
    for (const args of [['sessions', 'list'], ['verify']]) {
      const r = await vigil([...args, '--data-dir', empty]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        `data_dir (--data-dir): no store at ${path.join(empty, 'vigil.db')}: nothing has been recorded there yet`,
      );
      expect(r.stderr).not.toContain('writable');
    }
  });

  it.skipIf(!tmpfsMountable)('exits 1 when it stops with records the store would not take', async () => {
    // A stop that lost records (the disk full to the end) exited 0 like any other. Whether the store takes the last
    // records is the disk's to say: once a checkpoint has copied the write-ahead log back, SQLite writes the log again
    // from its start, in blocks it already has, and the records fit (seen under load in CI). So the scenario runs
    // until a stop loses records (at most three times); a stop that lost none must then say so, and exit 0.
    for (let attempt = 1; ; attempt++) {
      const stop = await withTmpfs('6m', async (stopDisk) => {
        const s = await serve(
          ['--listen', '127.0.0.1:0', '--upstream', fake.url, '--data-dir', path.join(stopDisk, 'data')],
          env,
        );
        const stream = fetch(`${s.url}/v1/messages`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-api-key': CLIENT_KEY, 'x-fake-scenario': 'slow:40' },
          body: JSON.stringify({
            model: 'claude-haiku-4-5',
            max_tokens: 200,
            stream: true,
            messages: [{ role: 'user', content: 'tell me a long story about a lighthouse keeper and the sea' }],
          }),
        }).then((r) => r.text());
        await new Promise((r) => setTimeout(r, 100)); // its request recorded, its events on their way
        fillDisk(path.join(stopDisk, 'filler'));
        let status = 0;
        for (let i = 0; i < 100 && status !== 503; i++) {
          const r = await fetch(`${s.url}/v1/messages`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'x-api-key': CLIENT_KEY },
            body: JSON.stringify({
              model: 'claude-haiku-4-5',
              max_tokens: 5,
              messages: [{ role: 'user', content: `${i}` }],
            }),
          });
          await r.arrayBuffer();
          status = r.status;
        }
        expect(status).toBe(503);
        s.child.kill('SIGTERM');
        const exit = await s.exited;
        expect(await stream).toContain('event: message_stop'); // the client got its whole answer
        expect(s.stderr()).toMatch(/"msg":"recording failed: records could not be written to the store"/);
        return { exit, stderr: s.stderr() };
      });
      const lost = /"lost":\d+,"msg":"stopped with records not written: the store refused writes to the end"/;
      if (lost.test(stop.stderr)) {
        expect(stop.exit).toBe(1);
        return;
      }
      expect(stop.exit).toBe(0);
      if (attempt === 3) throw new Error('three stops in a row lost no records: the disk never stayed full to the end');
    }
  });

  it.skipIf(!tmpfsMountable)('says the disk is full when the store cannot be created for want of space', () =>
    withTmpfs('1m', async (fullDisk) => {
      // A regression: "vigil: unexpected error: SqliteError: database or disk is full" and a stack trace.
      fillDisk(path.join(fullDisk, 'filler'));
      const data = path.join(fullDisk, 'data');
      const r = await vigil(['serve', '--listen', '127.0.0.1:0', '--data-dir', data]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        `data_dir (--data-dir): the disk holding ${path.join(data, 'vigil.db')} is full (database or disk is full); ` +
          'free space on it, or give --data-dir or data_dir another place',
      );
      expect(r.stderr).not.toMatch(/unexpected error|\n\s+at /);
    }),
  );
});
