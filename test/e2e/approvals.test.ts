/**
 * Just-in-time approval end to end: Claude Code (through the Claude Agent SDK) pauses on a held call and goes on once
 * someone approves it with the `vigil` CLI, in another process, through the store; a denial reaches the agent as a
 * clean error; a call nobody decides is refused as timed out; deny rules refuse at once. Needs `npm run build` (the CLI
 * runs from dist/, as users run it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SDKMessage } from '@anthropic-ai/claude-agent-sdk';
import { runAgent } from '../support/agent.js';
import { vigil } from '../support/cli.js';
import { CLIENT_KEY, postMessages, startHarness, type Harness } from '../support/gateway-harness.js';

let h: Harness;
let workDir: string;
const credential = { env: 'VIGIL_TEST_UPSTREAM_KEY' };

beforeAll(async () => {
  h = await startHarness((upstream) => ({
    connections: [
      {
        name: 'anthropic',
        upstream,
        credential,
        approvals: [
          {
            name: 'shell access',
            action: 'hold',
            message: 'Claude may run shell commands',
            when: { tools_offered: ['Bash'] },
            timeout: '60s',
            grant: '30m',
          },
        ],
      },
      {
        name: 'review',
        upstream,
        credential,
        approvals: [
          { name: 'shell access', action: 'hold', when: { tools_offered: ['Bash'] }, timeout: '60s', grant: '30m' },
        ],
      },
      {
        name: 'pair',
        upstream,
        credential,
        approvals: [
          {
            name: 'shell access',
            action: 'hold',
            when: { tools_offered: ['Bash'] },
            timeout: '60s',
            grant: '30m',
            approvals_required: 2,
          },
        ],
      },
      {
        name: 'night',
        upstream,
        credential,
        approvals: [
          {
            name: 'production credentials',
            action: 'deny',
            message: 'production credentials must not be sent to Claude',
            when: { prompt_matches: ['/prod-db\\.internal/i'] },
          },
          { name: 'large answers', action: 'hold', when: { max_tokens_above: 4096 }, timeout: '1500ms' },
        ],
      },
    ],
  }));
  workDir = mkdtempSync(path.join(tmpdir(), 'vigil-agent-'));
});
afterAll(async () => {
  await h?.close();
  rmSync(workDir, { recursive: true, force: true });
});

interface ListedApproval {
  id: string;
  status: string;
  connection: string;
  sessionId: string;
  rule: { name: string };
  matched: string[];
  caller: { subject: string };
}

/** Polls `vigil approvals list --json` (another process, reading the store) until a call on `connection` is held. */
async function waitForHeld(connection: string): Promise<ListedApproval> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const r = await vigil(['approvals', 'list', '--json', '--data-dir', h.dataDir]);
    expect(r.stderr).toBe('');
    const list = JSON.parse(r.stdout) as { items: ListedApproval[]; next_cursor: null; approvals: ListedApproval[] };
    // Every list's shape (`next_cursor` null: not paged), with the old key for one release (deprecated).
    expect([list.next_cursor, list.approvals]).toEqual([null, list.items]);
    const held = list.items.find((a) => a.connection === connection);
    if (held) return held;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error(`no call held on ${connection}`);
}

/**
 * Makes a gateway key named `name` with `vigil keys create` (run with `env`, which says who its owner is), sends a call
 * with it on `review` that is held, and returns the call (pending until decided) and its approval, found by the key.
 */
async function holdCallWithKey(
  name: string,
  env: NodeJS.ProcessEnv,
): Promise<{ call: Promise<Response>; held: ListedApproval }> {
  const created = await vigil(['keys', 'create', '--name', name, '--data-dir', h.dataDir], env);
  expect(created.code).toBe(0);
  const call = fetch(`${h.url}/c/review/v1/messages`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'anthropic-version': '2023-06-01',
      'x-api-key': created.stdout.trim(),
    },
    body: JSON.stringify({
      model: 'claude-haiku-4-5',
      max_tokens: 50,
      tools: [{ name: 'Bash', input_schema: { type: 'object' } }],
      messages: [{ role: 'user', content: 'clean up the release branch' }],
    }),
  });
  let held: ListedApproval | undefined;
  while (!held) {
    const r = await vigil(['approvals', 'list', '--json', '--data-dir', h.dataDir]);
    held = (JSON.parse(r.stdout) as { items: ListedApproval[] }).items.find((a) => a.caller.subject === name);
    if (!held) await new Promise((res) => setTimeout(res, 100));
  }
  return { call, held };
}

/** A call offering the Bash tool (held on every connection here but `night`), from this machine, in `session`. */
function callWithBash(connection: string, session: string, content = 'tidy the build directory'): Promise<Response> {
  return postMessages(`${h.url}/c/${connection}`, session, {
    max_tokens: 50,
    tools: [{ name: 'Bash', input_schema: { type: 'object' } }],
    messages: [{ role: 'user', content }],
  });
}

function resultOf(messages: SDKMessage[]): { subtype: string; result?: string; is_error?: boolean } {
  return messages.find((m) => m.type === 'result') as { subtype: string; result?: string; is_error?: boolean };
}

describe('approvals through a running gateway', () => {
  it('an agent pauses on a held call and goes on after approval through the CLI; a grant spares it the next turns', async () => {
    const run = runAgent(h.url, 'Run this for me [[tool:Bash {"command":"echo hi-after-approval"}]]', workDir);
    const held = await waitForHeld('anthropic');
    // Listing held calls shows excerpts of their prompts: logged as a read, as through the admin API.
    await h.gateway.recorder.queue.flush();
    expect((await h.gateway.store.recordsOfKinds(['recording.read'], 0, 1000)).map((r) => r.data)).toContainEqual(
      expect.stringContaining(`"what":"approval","ids":["${held.id}"]`),
    );
    expect(held).toMatchObject({
      status: 'pending',
      rule: { name: 'shell access' },
      matched: ['tool offered: Bash'],
      caller: { subject: 'anonymous' },
    });
    expect(
      h.fake.requests.filter((r) => r.path === '/v1/messages' && JSON.stringify(r.body.toString()).includes('"Bash"')),
    ).toEqual([]);

    // Nobody approves their own call: with no identity configured, the CLI acts as the local user, not as the caller.
    const approved = await vigil([
      'approvals',
      'approve',
      held.id,
      '--grant',
      '10',
      '--reason',
      'echo is harmless',
      '--data-dir',
      h.dataDir,
    ]);
    expect(approved.stderr).toBe('');
    expect(approved.code).toBe(0);
    // A grant to an anonymous caller covers only the session it was given in: the message says so (it used to read
    // as if every anonymous call were let through).
    expect(approved.stdout).toBe(
      `approved ${held.id}: the call goes ahead; anonymous is not held on rule "shell access" in session ${held.sessionId} for 10 min\n`,
    );

    const messages = await run;
    expect(resultOf(messages)).toMatchObject({ subtype: 'success' });
    expect(resultOf(messages).result).toContain('Tool result received: hi-after-approval');

    const kinds = (await h.gateway.store.sessionRecords(held.sessionId))
      .map((r) => r.kind)
      .filter((k) => k.startsWith('approval.'));
    expect(kinds.slice(0, 3)).toEqual(['approval.held', 'approval.decided', 'approval.granted']);
    expect(kinds.slice(3).every((k) => k === 'approval.grant_used')).toBe(true);
    expect(kinds.length).toBeGreaterThan(3); // the turn after the tool ran was not held
    const again = await vigil(['approvals', 'approve', held.id, '--data-dir', h.dataDir]);
    expect(again).toMatchObject({ code: 1, stderr: `vigil: ${held.id} is no longer pending: approved\n` });
    expect((await h.gateway.store.verify()).ok).toBe(true);
  }, 120_000);

  it('a denial reaches the agent as a clean error carrying the reason', async () => {
    const run = runAgent(`${h.url}/c/review`, 'Run this [[tool:Bash {"command":"rm -rf build"}]]', workDir);
    // Its rejection is asserted below; it can come while the CLI that denies the call is still exiting, before the
    // assertion is attached, which would count as an unhandled rejection.
    run.catch(() => {});
    const held = await waitForHeld('review');
    const denied = await vigil([
      'approvals',
      'deny',
      held.id,
      '--reason',
      'no deletions during the release freeze',
      '--data-dir',
      h.dataDir,
    ]);
    expect(denied).toMatchObject({ code: 0 });
    // Claude Code stops with the gateway's message (its own wording around a 403 is "Failed to authenticate").
    await expect(run).rejects.toThrow(
      /API Error: 403 denied by cli:\S+ \(approval apr_\w+, rule "shell access"\): no deletions during the release freeze/,
    );
    expect(h.fake.requests.filter((r) => r.body.toString().includes('rm -rf build'))).toEqual([]);
  }, 120_000);

  it('the owner of a gateway key made with the CLI cannot approve its calls with the CLI; someone else can', async () => {
    // Went wrong: `vigil keys create` recorded the owner as cli:<USER>, `vigil approvals approve` decided as
    // cli:<USER>, and the owner was compared with OIDC approvers only: alice approved the calls of her own key.
    const { call, held } = await holdCallWithKey('alice-agent', { USER: 'alice' });
    const byAlice = await vigil(['approvals', 'approve', held.id, '--data-dir', h.dataDir], { USER: 'alice' });
    expect(byAlice).toMatchObject({
      code: 1,
      stderr: 'vigil: cli:alice made this call and cannot approve it: someone else must\n',
    });
    const byBob = await vigil(['approvals', 'approve', held.id, '--grant', '5', '--data-dir', h.dataDir], {
      USER: 'bob',
    });
    expect(byBob, byBob.stderr).toMatchObject({ code: 0 });
    // A key's grant is not limited to a session, but to the key on this connection's rule.
    expect(byBob.stdout).toBe(
      `approved ${held.id}: the call goes ahead; key:alice-agent is not held on rule "shell access" on connection review for 5 min\n`,
    );
    expect((await call).status).toBe(200);
  }, 60_000);

  it('with two approvers required, `approve --grant` says whether a grant was made, and for how long', async () => {
    // Went wrong: each `approve --grant N` printed that the caller was not held for N min, though with
    // approvals_required 2 a grant is made only by the last approval, only if every approver asked for one, and for the
    // shortest asked.
    // One session: an anonymous caller's grant covers the session it was given in.
    const call = () => callWithBash('pair', 'pair-grants');
    const approve = (id: string, user: string, grant?: string) =>
      vigil(['approvals', 'approve', id, ...(grant ? ['--grant', grant] : []), '--data-dir', h.dataDir], {
        USER: user,
      });

    // Bob asks for no grant, Carol for 10 min: the call goes ahead, no grant is made.
    const first = call();
    let held = await waitForHeld('pair');
    expect(await approve(held.id, 'bob')).toMatchObject({
      code: 0,
      stdout: `${held.id}: 1 of 2 approvals; waiting for another approver\n`,
    });
    expect(await approve(held.id, 'carol', '10')).toMatchObject({
      code: 0,
      stdout:
        `approved ${held.id}: the call goes ahead; no grant was made: rule "shell access" needs 2 approvals, and a ` +
        'grant is made only when every approver asks for one\n',
    });
    expect((await first).status).toBe(200);

    // Bob asks for 5 min, Carol for 10: the grant is made by Carol's approval, for 5.
    const second = call();
    held = await waitForHeld('pair');
    expect(await approve(held.id, 'bob', '5')).toMatchObject({
      code: 0,
      stdout:
        `${held.id}: 1 of 2 approvals; waiting for another approver; no grant yet: one is made when the last ` +
        'approval comes, if every approver asked for one (for the shortest asked)\n',
    });
    expect(await approve(held.id, 'carol', '10')).toMatchObject({
      code: 0,
      stdout: `approved ${held.id}: the call goes ahead; anonymous is not held on rule "shell access" in session ${held.sessionId} for 5 min\n`,
    });
    expect((await second).status).toBe(200);
    // The grant covers the next call: it is not held.
    expect((await call()).status).toBe(200);
  }, 60_000);

  it('`approve --json` says, as the words do, whether the call was released and what grant was made', async () => {
    // Went wrong: `approve --json` printed the approval only: with two approvers required, nothing in it said whether
    // this approval released the call or made a grant (one asked for is made only by the last approval, if every
    // approver asked for one), nor what a grant covered.
    const call = (session = 'pair-grants-json') => callWithBash('pair', session);
    const approve = async (id: string, user: string, grant?: string) => {
      const r = await vigil(
        ['approvals', 'approve', id, '--json', ...(grant ? ['--grant', grant] : []), '--data-dir', h.dataDir],
        { USER: user },
      );
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };

    // Bob asks for no grant, Carol for 10 min: Carol's approval releases the call, and makes no grant.
    const first = call();
    let held = await waitForHeld('pair');
    expect(await approve(held.id, 'bob')).toMatchObject({
      id: held.id,
      status: 'pending',
      released: false,
      grant: null,
    });
    expect(await approve(held.id, 'carol', '10')).toMatchObject({ status: 'approved', released: true, grant: null });
    expect((await first).status).toBe(200);

    // Bob asks for 5 min, Carol for 10: Carol's approval releases the call and makes the grant, for 5.
    const second = call();
    held = await waitForHeld('pair');
    expect(await approve(held.id, 'bob', '5')).toMatchObject({ status: 'pending', released: false, grant: null });
    const last = await approve(held.id, 'carol', '10');
    expect(last).toMatchObject({
      status: 'approved',
      released: true,
      grant: {
        id: expect.stringMatching(/^grt_/) as unknown,
        minutes: 5,
        expiresAt: expect.any(Number) as unknown,
        caller: { method: 'anonymous', subject: 'anonymous' },
        connection: 'pair',
        rule: 'shell access',
        session: held.sessionId,
      },
    });
    expect((await second).status).toBe(200);

    // A denial releases nothing either (in another session: the grant covers this one).
    const third = call('pair-denied-json');
    held = await waitForHeld('pair');
    const denied = await vigil(
      ['approvals', 'deny', held.id, '--reason', 'not now', '--json', '--data-dir', h.dataDir],
      { USER: 'bob' },
    );
    expect(JSON.parse(denied.stdout)).toMatchObject({ status: 'denied', released: false, grant: null });
    expect((await third).status).toBe(403);
  }, 60_000);

  it('the CLI names its local user the same way when it reads and when it decides, in the access log too', async () => {
    // Went wrong: `vigil approvals list` (and every CLI read) recorded its reader as `anonymous cli:<user>`, while
    // `vigil approvals approve` recorded the same person as `local_user cli:<user>`: one user, two identities.
    // Reads recorded that way before stay in the access log as they were written.
    await h.gateway.store.append({
      records: [
        {
          kind: 'recording.read',
          at: Date.now(),
          data: { actor: { method: 'anonymous', subject: 'cli:olddana' }, role: 'admin', what: 'session', ids: ['s1'] },
        },
      ],
    });
    const call = callWithBash('review', 'local-user-reads', 'who reads this?');
    const held = await waitForHeld('review');
    const dana = { USER: 'dana' };
    expect(await vigil(['approvals', 'show', held.id, '--json', '--data-dir', h.dataDir], dana)).toMatchObject({
      code: 0,
    });
    const approved = await vigil(['approvals', 'approve', held.id, '--json', '--data-dir', h.dataDir], dana);
    const decidedBy = (JSON.parse(approved.stdout) as { approvals: Array<{ by: unknown }> }).approvals[0]!.by;
    expect(decidedBy).toEqual({ method: 'local_user', subject: 'cli:dana' });
    expect((await call).status).toBe(200);

    const log = (await (await fetch(`${h.gateway.adminUrl}/api/v1/access-log?limit=1000`)).json()) as {
      items: Array<{ data: { actor: unknown; what: string; ids: string[] } }>;
    };
    const reads = log.items.map((e) => e.data);
    expect(reads).toContainEqual(expect.objectContaining({ what: 'approval', ids: [held.id], actor: decidedBy }));
    expect(reads).toContainEqual(
      expect.objectContaining({ what: 'session', ids: ['s1'], actor: { method: 'anonymous', subject: 'cli:olddana' } }),
    );
  }, 60_000);

  it('with neither USER nor LOGNAME set (cron, containers), the key’s owner still cannot approve its calls', async () => {
    // Went wrong: `keys create` fell back to cli:unknown, `approvals approve` to the OS account, so the owner did not
    // match and approved the calls of their own key.
    const noUser = { USER: undefined, LOGNAME: undefined };
    const { call, held } = await holdCallWithKey('cron-agent', noUser);
    const byOwner = await vigil(['approvals', 'approve', held.id, '--data-dir', h.dataDir], noUser);
    expect(byOwner).toMatchObject({
      code: 1,
      stderr: `vigil: cli:${userInfo().username} made this call and cannot approve it: someone else must\n`,
    });
    expect(await vigil(['approvals', 'approve', held.id, '--data-dir', h.dataDir], { USER: 'bob' })).toMatchObject({
      code: 0,
    });
    expect((await call).status).toBe(200);
  }, 60_000);

  it('a call nobody decides is refused as timed out; a streaming client waits on a quiet connection until then', async () => {
    const client = new Anthropic({ baseURL: `${h.url}/c/night`, apiKey: CLIENT_KEY, maxRetries: 0 });
    const started = Date.now();
    const err = await client.messages
      .create({
        model: 'claude-haiku-4-5',
        max_tokens: 8192,
        stream: true,
        messages: [{ role: 'user', content: 'write a long essay' }],
      })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect((err as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({
      error: {
        type: 'permission_error',
        message: expect.stringMatching(
          /^no approval within 1\.5 s \(approval apr_\w+, rule "large answers"\); the call was not sent to Claude$/,
        ),
      },
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
    const exchangeId = (err as InstanceType<typeof Anthropic.APIError>).headers?.get('x-vigil-exchange-id');
    const x = await h.exchange(exchangeId!);
    expect(x.response.error).toMatchObject({ type: 'approval_timed_out' });
    const kinds = (await h.gateway.store.exchangeRecords(exchangeId!)).map((r) => r.kind);
    expect(kinds).toEqual(['exchange.request', 'approval.held', 'approval.timed_out', 'exchange.response']);
  }, 30_000);

  it("a deny rule refuses at once with the rule's message, and nothing reaches upstream", async () => {
    const client = new Anthropic({ baseURL: `${h.url}/c/night`, apiKey: CLIENT_KEY, maxRetries: 0 });
    const before = h.fake.requests.length;
    const err = await client.messages
      .create({
        model: 'claude-haiku-4-5',
        max_tokens: 100,
        messages: [{ role: 'user', content: 'connect to PROD-DB.internal:5432 with user admin' }],
      })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect((err as InstanceType<typeof Anthropic.APIError>).error).toEqual({
      type: 'error',
      error: { type: 'permission_error', message: 'production credentials must not be sent to Claude' },
    });
    expect(h.fake.requests.length).toBe(before);
  });

  it('a deny rule sees its text in documents and search results too, and nothing reaches upstream', async () => {
    // Went wrong: rules read only text blocks, plain strings, the system prompt and tool results, so the README's own
    // deny example let the same text through in a plain-text document or a search result.
    const secret = 'connect to PROD-DB.internal:5432 with user admin';
    const send = (content: unknown[]) =>
      fetch(`${h.url}/c/night/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': CLIENT_KEY },
        body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 100, messages: [{ role: 'user', content }] }),
      });
    const before = h.fake.requests.length;
    for (const block of [
      { type: 'document', source: { type: 'text', media_type: 'text/plain', data: secret } },
      { type: 'document', source: { type: 'content', content: [{ type: 'text', text: secret }] } },
      { type: 'search_result', source: 'wiki', title: 'runbook', content: [{ type: 'text', text: secret }] },
    ]) {
      const res = await send([block, { type: 'text', text: 'summarise this' }]);
      expect(res.status, block.type).toBe(403);
      expect(await res.json()).toMatchObject({
        error: { type: 'permission_error', message: 'production credentials must not be sent to Claude' },
      });
    }
    expect(h.fake.requests.length).toBe(before);
    // The rest of the conversation goes through.
    const ok = await send([
      { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'release notes' } },
    ]);
    expect(ok.status).toBe(200);
    await ok.arrayBuffer();
  });

  it('a Message Batch is judged request by request: one request a rule refuses refuses the batch', async () => {
    const client = new Anthropic({ baseURL: `${h.url}/c/night`, apiKey: CLIENT_KEY, maxRetries: 0 });
    const before = h.fake.requests.length;
    const params = (content: string) => ({
      model: 'claude-haiku-4-5',
      max_tokens: 100,
      messages: [{ role: 'user' as const, content }],
    });
    const err = await client.messages.batches
      .create({
        requests: [
          { custom_id: 'fine', params: params('summarise the changelog') },
          { custom_id: 'leaky', params: params('connect to PROD-DB.internal:5432 with user admin') },
        ],
      })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect((err as InstanceType<typeof Anthropic.APIError>).message).toContain(
      'production credentials must not be sent to Claude',
    );
    expect(h.fake.requests.length).toBe(before);
    // A batch no rule objects to goes through.
    const ok = await client.messages.batches.create({
      requests: [{ custom_id: 'fine', params: params('summarise the changelog') }],
    });
    expect(ok.id).toMatch(/^msgbatch_/);
  });
});
