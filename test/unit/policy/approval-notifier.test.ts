/** Webhook notifications of held calls, received by a real local HTTP server. */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ApprovalNotifier, redactUrl } from '../../../src/policy/approval-notifier.js';
import { approvalsConfigSchema, type ApprovalsConfig } from '../../../src/policy/approvals-config.js';
import { approvalRulesSchema, compileApprovalRules } from '../../../src/policy/approval-rules.js';
import { summarizeRequest } from '../../../src/policy/approval-summary.js';
import { ApprovalCoordinator, type ApprovalView } from '../../../src/policy/approvals.js';
import { compileMasker } from '../../../src/recorder/masking/masker.js';
import { maskingConfigSchema } from '../../../src/recorder/masking/masking-config.js';
import { SqliteAuditStore } from '../../../src/store/sqlite/sqlite-audit-store.js';
import { ConnectProxy } from '../../support/connect-proxy.js';
import { startRecordingHttpServer, type RecordingHttpServer } from '../../support/recording-http-server.js';

const SECRET = 'AKIAIOSFODNN7EXAMPLE';
const masker = compileMasker(maskingConfigSchema.parse({}));

const approval: ApprovalView = {
  id: 'apr_0123456789abcdef',
  exchangeId: 'ex_1',
  sessionId: 'ses_1',
  connection: 'prod',
  caller: { method: 'oidc', subject: 'u-1', issuer: 'https://idp', email: 'alice@example.com' },
  rule: {
    name: 'production credentials',
    message: 'Credentials in a prompt <need> a look & a yes',
    approvalsRequired: 2,
    approverGroups: ['sre'],
    grantMaxMs: 1_800_000,
  },
  matched: ['prompt matches /AKIA[0-9A-Z]{16}/'],
  request: summarizeRequest(
    {
      model: 'claude-opus-4-1',
      max_tokens: 2000,
      messages: [{ role: 'user', content: `use ${SECRET} to run \`\`\`aws s3 ls\`\`\`` }],
    },
    masker,
    [/aws s3/],
  ),
  heldAt: Date.UTC(2025, 0, 15, 12, 0),
  expiresAt: Date.UTC(2025, 0, 15, 12, 5),
  status: 'pending',
  approvals: [],
  denial: null,
  endReason: null,
};

let server: RecordingHttpServer;
beforeAll(async () => {
  server = await startRecordingHttpServer();
});
afterAll(async () => {
  await server.close();
});
beforeEach(() => {
  server.requests.length = 0;
  server.reply = () => ({ status: 200 });
  process.env.TEST_APPROVAL_HMAC = 'hmac-secret-for-tests';
  process.env.TEST_SLACK_URL = `${server.url}/services/T000/B000/XXXX`;
});

function config(input: unknown): ApprovalsConfig {
  return approvalsConfigSchema.parse(input);
}

describe('approval webhooks', () => {
  it('posts the generic JSON signed with HMAC-SHA256 over the timestamp and body', async () => {
    const notifier = new ApprovalNotifier(
      config({
        admin_url: 'https://vigil-admin.example.com/',
        webhooks: [{ name: 'ops', url: `${server.url}/hook`, secret: { env: 'TEST_APPROVAL_HMAC' } }],
      }),
    );
    expect(await notifier.notify(approval)).toEqual([
      { webhook: 'ops', ok: true, attempts: 1, status: 200, error: null },
    ]);
    const [req] = server.requests;
    expect(req).toMatchObject({ method: 'POST', url: '/hook' });

    // What a receiver does: recompute the MAC over `<timestamp>.<body>` and compare in constant time.
    const timestamp = req!.headers['x-vigil-timestamp'] as string;
    expect(Math.abs(Number(timestamp) - Date.now() / 1000)).toBeLessThan(5);
    const expected = Buffer.from(
      `sha256=${createHmac('sha256', 'hmac-secret-for-tests').update(`${timestamp}.${req!.body}`).digest('hex')}`,
    );
    const got = Buffer.from(req!.headers['x-vigil-signature'] as string);
    expect(got.length === expected.length && timingSafeEqual(got, expected)).toBe(true);

    const body = JSON.parse(req!.body) as Record<string, unknown>;
    expect(body).toMatchObject({
      type: 'approval.held',
      approval: {
        id: 'apr_0123456789abcdef',
        connection: 'prod',
        caller: { subject: 'u-1', email: 'alice@example.com' },
        rule: 'production credentials',
        approvals_required: 2,
        approver_groups: ['sre'],
        grant_max_minutes: 30,
        expires_at: '2025-01-15T12:05:00.000Z',
        exchange_id: 'ex_1',
        session_id: 'ses_1',
      },
      approve_url: 'https://vigil-admin.example.com/api/v1/approvals/apr_0123456789abcdef/approve',
      deny_url: 'https://vigil-admin.example.com/api/v1/approvals/apr_0123456789abcdef/deny',
      cli: { approve: 'vigil approvals approve apr_0123456789abcdef' },
    });
    expect(req!.body).not.toContain(SECRET);
  });

  it('posts a Slack incoming-webhook message: text, and blocks with the caller, rule, a masked excerpt and the command', async () => {
    const notifier = new ApprovalNotifier(
      config({ webhooks: [{ name: 'slack', format: 'slack', url: { env: 'TEST_SLACK_URL' } }] }),
    );
    await notifier.notify(approval);
    const [req] = server.requests;
    expect(req!.url).toBe('/services/T000/B000/XXXX');
    expect(req!.headers['x-vigil-signature']).toBeUndefined();
    const msg = JSON.parse(req!.body) as {
      text: string;
      blocks: Array<{
        type: string;
        text?: { type: string; text: string };
        fields?: Array<{ type: string; text: string }>;
        elements?: Array<{ type: string; text: string }>;
      }>;
    };
    expect(msg.text).toBe(
      'Call held for approval: alice@example.com on prod (rule "production credentials"): vigil approvals approve apr_0123456789abcdef',
    );
    expect(msg.blocks.map((b) => b.type)).toEqual(['section', 'section', 'section', 'context']);
    expect(msg.blocks[0]!.text!.text).toContain('Credentials in a prompt &lt;need&gt; a look &amp; a yes');
    expect(msg.blocks[1]!.fields!.map((f) => f.text.split('\n')[0])).toEqual([
      '*Caller*',
      '*Connection*',
      '*Rule*',
      '*Model*',
      '*Why*',
      '*Expires*',
    ]);
    expect(msg.blocks[1]!.fields![0]!.text).toBe('*Caller*\nalice@example.com');
    const excerpt = msg.blocks[2]!.text!.text;
    expect(excerpt.startsWith('```') && excerpt.endsWith('```')).toBe(true);
    expect(excerpt).toContain("'''aws s3 ls'''"); // fences inside the excerpt cannot close the block
    expect(req!.body).not.toContain(SECRET);
    expect(msg.blocks[3]!.elements![0]!.text).toContain('`vigil approvals approve apr_0123456789abcdef`');
    expect(msg.blocks[3]!.elements![0]!.text).toContain('Needs 2 approvals from sre.');
  });

  it('retries a failing webhook, gives up after the retries, and does not retry a 4xx', async () => {
    let calls = 0;
    server.reply = () => (++calls < 3 ? { status: 503 } : { status: 204 });
    const notifier = new ApprovalNotifier(config({ webhooks: [{ name: 'flaky', url: server.url, retries: 3 }] }), {
      backoffMs: 5,
    });
    expect(await notifier.notify(approval)).toEqual([
      { webhook: 'flaky', ok: true, attempts: 3, status: 204, error: null },
    ]);

    server.reply = () => ({ status: 500 });
    const warnings: object[] = [];
    const failing = new ApprovalNotifier(config({ webhooks: [{ name: 'down', url: server.url, retries: 2 }] }), {
      backoffMs: 5,
      log: { warn: (o) => warnings.push(o) },
    });
    expect(await failing.notify(approval)).toEqual([
      { webhook: 'down', ok: false, attempts: 3, status: 500, error: 'answered 500' },
    ]);
    expect(warnings).toHaveLength(1);

    server.requests.length = 0;
    server.reply = () => ({ status: 404 });
    expect(await failing.notify(approval)).toMatchObject([{ ok: false, attempts: 1, status: 404 }]);
    expect(server.requests).toHaveLength(1);
  });

  it('stopped (the gateway shutting down) between tries, tries no more and says so', async () => {
    server.reply = () => ({ status: 503 });
    const notifier = new ApprovalNotifier(config({ webhooks: [{ name: 'flaky', url: server.url, retries: 3 }] }), {
      backoffMs: 60_000,
    });
    const stop = new AbortController();
    const notifying = notifier.notify(approval, stop.signal);
    while (server.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50)); // the 503 is in: waiting to try again
    stop.abort();
    expect(await notifying).toEqual([
      {
        webhook: 'flaky',
        ok: false,
        attempts: 1,
        status: 503,
        error: 'answered 503; not tried again: the gateway shut down',
      },
    ]);
    expect(server.requests).toHaveLength(1);
  });

  it("only notifies webhooks for the held call's connection", async () => {
    const notifier = new ApprovalNotifier(
      config({
        webhooks: [
          { name: 'other', url: server.url, connections: ['staging'] },
          { name: 'all', url: server.url },
        ],
      }),
    );
    expect((await notifier.notify(approval)).map((r) => r.webhook)).toEqual(['all']);
  });

  it('posts through the egress proxy named for it, with its credentials; a proxy that refuses is a failed try', async () => {
    // Went wrong: webhooks were posted with Node's fetch, which ignores HTTPS_PROXY unless the gateway runs with
    // NODE_USE_ENV_PROXY=1: a Slack webhook behind the company's egress proxy was never reached.
    const proxy = new ConnectProxy('vigil:proxy-pass');
    const port = await proxy.listen();
    process.env.TEST_HOOK_PROXY = `http://vigil:proxy-pass@127.0.0.1:${port}`;
    process.env.TEST_HOOK_BAD_PROXY = `http://vigil:wrong@127.0.0.1:${port}`;
    try {
      const notifier = new ApprovalNotifier(
        config({
          webhooks: [
            { name: 'slack', format: 'slack', url: { env: 'TEST_SLACK_URL' }, proxy: { env: 'TEST_HOOK_PROXY' } },
            { name: 'refused', url: server.url, proxy: { env: 'TEST_HOOK_BAD_PROXY' }, retries: 0 },
          ],
        }),
        { backoffMs: 1 },
      );
      // What start-up logs: the proxy without its password.
      expect(notifier.proxies).toEqual([
        { webhook: 'slack', proxy: `http://127.0.0.1:${port}`, from: 'approvals.webhooks[0] (slack).proxy' },
        { webhook: 'refused', proxy: `http://127.0.0.1:${port}`, from: 'approvals.webhooks[1] (refused).proxy' },
      ]);
      const [slack, refused] = await notifier.notify(approval);
      expect(slack).toEqual({ webhook: 'slack', ok: true, attempts: 1, status: 200, error: null });
      expect(server.requests).toHaveLength(1);
      expect(server.requests[0]).toMatchObject({ method: 'POST', url: '/services/T000/B000/XXXX' });
      expect(refused).toMatchObject({ webhook: 'refused', ok: false, attempts: 1, status: null });
      expect(refused?.error).not.toContain('wrong'); // the proxy's password is never in what is recorded
      const target = new URL(server.url).host;
      expect(proxy.tunnels).toEqual([
        { target, credentials: 'vigil:proxy-pass', allowed: true },
        { target, credentials: 'vigil:wrong', allowed: false },
      ]);
      // A proxy that cannot be read stops start-up, naming its key.
      expect(
        () =>
          new ApprovalNotifier(
            config({ webhooks: [{ name: 'ops', url: server.url, proxy: { env: 'NOT_SET_ANYWHERE' } }] }),
          ),
      ).toThrow('approvals.webhooks[0] (ops).proxy: environment variable NOT_SET_ANYWHERE');
    } finally {
      await proxy.close();
      delete process.env.TEST_HOOK_PROXY;
      delete process.env.TEST_HOOK_BAD_PROXY;
    }
  });

  it('refuses a missing secret at start-up, naming the config key', () => {
    expect(
      () =>
        new ApprovalNotifier(
          config({ webhooks: [{ name: 'ops', url: server.url, secret: { env: 'NOT_SET_ANYWHERE' } }] }),
        ),
    ).toThrow('approvals.webhooks[0] (ops).secret: environment variable NOT_SET_ANYWHERE is not set or empty');
    expect(
      approvalsConfigSchema.safeParse({
        webhooks: [{ name: 's', format: 'slack', url: server.url, secret: { env: 'X' } }],
      }).success,
    ).toBe(false);
  });

  it('refuses a webhook URL with user:password@ in it, saying to use a header, and never repeats the password', () => {
    // Went wrong: fetch refused such a URL with an error quoting it whole, which was logged and recorded on the ledger
    // (approval.notified) for good.
    const written = approvalsConfigSchema.safeParse({
      webhooks: [{ name: 'ops', url: 'https://hookuser:HOOK-PASSWORD-123@hooks.example.com/vigil' }],
    });
    expect(written.success).toBe(false);
    const message = JSON.stringify(written.error!.issues);
    expect(message).toContain('must not carry credentials (user:password@): send them in a header instead');
    expect(message).not.toContain('HOOK-PASSWORD-123');

    process.env.TEST_HOOK_URL = 'https://hookuser:HOOK-PASSWORD-123@hooks.example.com/vigil';
    const fromSecret = (): ApprovalNotifier =>
      new ApprovalNotifier(config({ webhooks: [{ name: 'ops', url: { env: 'TEST_HOOK_URL' } }] }));
    expect(fromSecret).toThrow(
      'approvals.webhooks[0] (ops).url: the URL in TEST_HOOK_URL must not carry credentials (user:password@)',
    );
    expect(fromSecret).not.toThrow('HOOK-PASSWORD-123');
    process.env.TEST_HOOK_URL = 'not a URL, and secret';
    expect(fromSecret).toThrow(
      'approvals.webhooks[0] (ops).url: the URL in TEST_HOOK_URL is not an absolute http(s) URL',
    );
    expect(fromSecret).not.toThrow('and secret');

    // The admin URL's approve and deny links go to every webhook.
    expect(approvalsConfigSchema.safeParse({ admin_url: 'https://admin:pw@vigil.example.com' }).success).toBe(false);
  });

  it('sends extra headers, secrets read at start-up: credentials for a receiver behind basic or bearer auth', async () => {
    process.env.TEST_HOOK_AUTH = 'Basic aG9va3VzZXI6SE9PSy1QQVNTV09SRC0xMjM=';
    const notifier = new ApprovalNotifier(
      config({
        webhooks: [
          {
            name: 'ops',
            url: `${server.url}/hook`,
            headers: { Authorization: { env: 'TEST_HOOK_AUTH' }, 'x-team': 'sre' },
            secret: { env: 'TEST_APPROVAL_HMAC' },
          },
        ],
      }),
    );
    expect(await notifier.notify(approval)).toMatchObject([{ ok: true }]);
    expect(server.requests[0]!.headers).toMatchObject({
      authorization: 'Basic aG9va3VzZXI6SE9PSy1QQVNTV09SRC0xMjM=',
      'x-team': 'sre',
      'content-type': 'application/json',
    });
    expect(server.requests[0]!.headers['x-vigil-signature']).toMatch(/^sha256=/);
    const refused = approvalsConfigSchema.safeParse({
      webhooks: [{ name: 'ops', url: server.url, headers: { 'X-Vigil-Signature': 'forged', 'bad name': 'x' } }],
    });
    expect(refused.error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual([
      'webhooks.0.headers.X-Vigil-Signature: is set by Vigil itself and cannot be replaced',
      'webhooks.0.headers.bad name: must be a valid HTTP header name',
    ]);
  });

  it('takes a webhook URL and any user:password@ out of error texts before they are logged or recorded', () => {
    const slack = 'https://hooks.slack.com/services/T000/B000/XXXX';
    expect(redactUrl(`Failed to parse URL from ${slack}`, slack, 'slack')).toBe(
      'Failed to parse URL from <webhook slack URL>',
    );
    expect(
      redactUrl(
        'Request cannot be constructed from a URL that includes credentials: https://hookuser:HOOK-PASSWORD-123@127.0.0.1:1/vigil',
        'https://127.0.0.1:1/vigil',
        'ops',
      ),
    ).toBe(
      'Request cannot be constructed from a URL that includes credentials: https://<credentials>@127.0.0.1:1/vigil',
    );
    expect(redactUrl('connect ECONNREFUSED 127.0.0.1:1', slack, 'slack')).toBe('connect ECONNREFUSED 127.0.0.1:1');
  });

  it('a held call is notified without waiting, and the outcome is recorded on its session', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vigil-notify-'));
    const store = SqliteAuditStore.open({ file: path.join(dir, 'vigil.db') });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    server.reply = () => ({ status: 200 });
    const slow = new ApprovalNotifier(config({ webhooks: [{ name: 'ops', url: server.url }] }));
    const coordinator = new ApprovalCoordinator(store, {
      pollMs: 20,
      notifier: { notify: async (a) => (await gate, slow.notify(a)) },
    });
    try {
      const rule = compileApprovalRules(approvalRulesSchema.parse([{ name: 'r', action: 'hold', when: {} }])).rules[0]!;
      const held = coordinator.hold({ ...approval, rule, caller: approval.caller, request: approval.request });
      const [pending] = await waitFor(() => coordinator.list({ pending: true }));
      // The webhook has not answered yet; the approval can still be decided.
      await coordinator.approve(pending!.id, { method: 'local_user', subject: 'cli:ops' });
      expect(await held).toMatchObject({ outcome: 'approved' });
      release();
      const records = await waitFor(async () =>
        (await store.sessionRecords('ses_1')).filter((r) => r.kind === 'approval.notified'),
      );
      expect(JSON.parse(records[0]!.data)).toEqual({
        approvalId: pending!.id,
        webhook: 'ops',
        ok: true,
        attempts: 1,
        status: 200,
        error: null,
      });
      expect(records[0]!.exchangeId).toBe('ex_1');
    } finally {
      await coordinator.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function waitFor<T>(probe: () => Promise<T[]>): Promise<T[]> {
  for (let i = 0; i < 200; i++) {
    const v = await probe();
    if (v.length) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('timed out');
}
