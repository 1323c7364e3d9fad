/**
 * Tells approvers a call is waiting: a POST to each configured webhook, as generic JSON signed with HMAC-SHA256 or as
 * a Slack incoming-webhook message.
 *
 * Notifications never hold a call up: the coordinator starts them after the held call is recorded and does not
 * wait; each webhook gets a few tries with backoff, and what happened is recorded (`approval.notified`) and logged.
 * Only the coordinator's close() waits for them, for a bounded time, then stops them (see `ApprovalCoordinator.close`).
 *
 * The generic signature is the one the SIEM HTTP sink uses, so a receiver verifies both the same way:
 * `x-vigil-timestamp: <unix seconds>` and `x-vigil-signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
 * The timestamp is inside the MAC so a captured notification cannot be replayed later as a fresh one.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { hasCredentials } from '../config/common-schemas.js';
import { CREDENTIALS_IN_URL, type ApprovalsConfig, type WebhookConfig } from './approvals-config.js';
import { ConfigError } from '../errors.js';
import { egressFetch, egressProxy, type EgressProxy } from '../net/egress-proxy.js';
import { readSecret } from '../config/read-secret.js';
import { vigilSignature } from '../export/http-sink.js';
import { readHeaders } from '../export/internal/read-secret.js';
import type { ApprovalView, HeldNotifier, NotifiedData } from './approvals.js';

/** What is recorded for a webhook the gateway stopped waiting for (it was shutting down). */
const STOPPED = 'stopped: the gateway shut down before the webhook answered';

function who(a: {
  subject: string;
  email?: string | undefined;
  name?: string | undefined;
  keyName?: string | undefined;
  method: string;
}): string {
  if (a.method === 'gateway_key') return `gateway key ${a.keyName ?? a.subject}`;
  return a.email ?? a.name ?? a.subject;
}

/** The CLI commands that decide an approval. */
function cliCommands(id: string): { approve: string; deny: string } {
  return { approve: `vigil approvals approve ${id}`, deny: `vigil approvals deny ${id} --reason "…"` };
}

function links(id: string, adminUrl: string | undefined): { approve_url?: string; deny_url?: string } {
  if (!adminUrl) return {};
  const base = `${adminUrl.replace(/\/+$/, '')}/api/v1/approvals/${encodeURIComponent(id)}`;
  return { approve_url: `${base}/approve`, deny_url: `${base}/deny` };
}

/** The generic JSON notification. */
function genericPayload(a: ApprovalView, adminUrl?: string): object {
  return {
    type: 'approval.held',
    approval: {
      id: a.id,
      connection: a.connection,
      caller: a.caller,
      rule: a.rule.name,
      rule_message: a.rule.message,
      matched: a.matched,
      approvals_required: a.rule.approvalsRequired,
      approver_groups: a.rule.approverGroups,
      grant_max_minutes: a.rule.grantMaxMs / 60_000,
      request: a.request,
      held_at: new Date(a.heldAt).toISOString(),
      expires_at: new Date(a.expiresAt).toISOString(),
      exchange_id: a.exchangeId,
      session_id: a.sessionId,
    },
    ...links(a.id, adminUrl),
    cli: cliCommands(a.id),
  };
}

/** Slack mrkdwn treats these three as control characters. */
function slackEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Text shown in a Slack code block: escaped, without fences that would close it, short. */
function slackCode(s: string, max = 500): string {
  const t = s.length > max ? `${s.slice(0, max)}…` : s;
  return slackEscape(t.replace(/```/g, "'''"));
}

/** A Slack incoming-webhook message: `text` for notifications, `blocks` for the message itself. */
function slackPayload(a: ApprovalView, adminUrl?: string): { text: string; blocks: object[] } {
  const caller = who(a.caller);
  const cli = cliCommands(a.id);
  const excerpt = a.request.excerpts[0] ?? a.request.lastTurn;
  const minutes = Math.max(1, Math.round((a.expiresAt - a.heldAt) / 60_000));
  const fields = [
    `*Caller*\n${slackEscape(caller)}`,
    `*Connection*\n${slackEscape(a.connection)}`,
    `*Rule*\n${slackEscape(a.rule.name)}`,
    `*Model*\n${slackEscape(a.request.model ?? 'n/a')}`,
    `*Why*\n${slackEscape(a.matched.join('; ') || 'rule matched')}`,
    `*Expires*\n<!date^${Math.floor(a.expiresAt / 1000)}^{time}|in ${minutes} min>`,
  ];
  const blocks: object[] = [
    {
      type: 'section',
      text: {
        type: 'mrkdwn',
        text: `:raised_hand: *Call held for approval* \`${a.id}\`${a.rule.message ? `\n${slackEscape(a.rule.message)}` : ''}`,
      },
    },
    { type: 'section', fields: fields.map((text) => ({ type: 'mrkdwn', text })) },
  ];
  if (excerpt) blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `\`\`\`${slackCode(excerpt)}\`\`\`` } });
  const approvers =
    a.rule.approvalsRequired > 1 || a.rule.approverGroups.length
      ? ` Needs ${a.rule.approvalsRequired} approval${a.rule.approvalsRequired > 1 ? 's' : ''}${a.rule.approverGroups.length ? ` from ${a.rule.approverGroups.join(', ')}` : ''}.`
      : '';
  const l = links(a.id, adminUrl);
  blocks.push({
    type: 'context',
    elements: [
      {
        type: 'mrkdwn',
        text: `Approve: \`${cli.approve}\`  Deny: \`${cli.deny}\`${l.approve_url ? `  API: POST ${l.approve_url}` : ''}.${approvers}`,
      },
    ],
  });
  return {
    text: `Call held for approval: ${caller} on ${a.connection} (rule "${a.rule.name}"): ${cli.approve}`,
    blocks,
  };
}

interface Target {
  readonly config: WebhookConfig;
  readonly url: string;
  /** The proxy chosen for it, or null: direct. */
  readonly proxy: EgressProxy | null;
  /** Direct, or through that proxy. */
  readonly fetch: typeof fetch;
  readonly headers: Readonly<Record<string, string>>;
  readonly secret: string | undefined;
}

/**
 * An error's text with `url` taken out, and any other `scheme://user:password@` credentials: what fetch or a
 * receiver says about a webhook is logged and recorded on the ledger for good, and a webhook's URL can be a
 * credential of its own (Slack's is).
 */
export function redactUrl(message: string, url: string, name: string): string {
  let out = message;
  const forms = new Set([url]);
  try {
    forms.add(new URL(url).href);
  } catch {
    // Not a URL: only its raw form can appear.
  }
  for (const form of forms) out = out.split(form).join(`<webhook ${name} URL>`);
  return out.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]*@/gi, '$1<credentials>@');
}

/**
 * The webhook's URL, from the config or its secret, checked like a URL written in the config (the schema has checked
 * a written one already; this also holds for a config built in code). Errors name the key, never the value.
 */
function targetUrl(w: WebhookConfig, where: string): string {
  const url = typeof w.url === 'string' ? w.url : readSecret(w.url, `${where}.url`);
  const what = typeof w.url === 'string' ? 'the URL' : `the URL in ${'env' in w.url ? w.url.env : w.url.file}`;
  const parsed = URL.canParse(url) ? new URL(url) : null;
  if (parsed === null || (parsed.protocol !== 'https:' && parsed.protocol !== 'http:'))
    throw new ConfigError([`${where}.url: ${what} is not an absolute http(s) URL`]);
  if (hasCredentials(parsed)) throw new ConfigError([`${where}.url: ${what} ${CREDENTIALS_IN_URL}`]);
  return url;
}

export interface ApprovalNotifierOptions {
  readonly log?: { warn(obj: object, msg: string): void } | undefined;
  /** Milliseconds before the first retry; doubled each time. Default 500. */
  readonly backoffMs?: number;
}

/** Posts held calls to the configured webhooks. */
export class ApprovalNotifier implements HeldNotifier {
  private readonly targets: readonly Target[];
  private readonly adminUrl: string | undefined;

  /** Reads every URL and secret now: a missing one stops start-up naming the config key. */
  constructor(
    config: ApprovalsConfig,
    private readonly options: ApprovalNotifierOptions = {},
  ) {
    this.adminUrl = config.admin_url;
    this.targets = config.webhooks.map((w, i) => {
      const where = `approvals.webhooks[${i}] (${w.name})`;
      const url = targetUrl(w, where);
      return {
        config: w,
        url,
        // A proxy that cannot be read stops start-up here, naming its key, rather than failing each notification.
        proxy: egressProxy(url, w.proxy, `${where}.proxy`),
        fetch: egressFetch(w.proxy, `${where}.proxy`),
        headers: readHeaders(w.headers, where),
        secret: w.secret ? readSecret(w.secret, `${where}.secret`) : undefined,
      };
    });
  }

  get size(): number {
    return this.targets.length;
  }

  /** Each webhook reached through a proxy, by name, and the proxy (without its password): for start-up to log. */
  get proxies(): ReadonlyArray<{ readonly webhook: string; readonly proxy: string; readonly from: string }> {
    return this.targets.flatMap((t) =>
      t.proxy ? [{ webhook: t.config.name, proxy: t.proxy.shown, from: t.proxy.from }] : [],
    );
  }

  async notify(approval: ApprovalView, stop?: AbortSignal): Promise<Array<Omit<NotifiedData, 'approvalId'>>> {
    const targets = this.targets.filter(
      (t) => !t.config.connections || t.config.connections.includes(approval.connection),
    );
    return Promise.all(targets.map((t) => this.send(t, approval, stop)));
  }

  private async send(
    t: Target,
    approval: ApprovalView,
    stop: AbortSignal | undefined,
  ): Promise<Omit<NotifiedData, 'approvalId'>> {
    const payload =
      t.config.format === 'slack' ? slackPayload(approval, this.adminUrl) : genericPayload(approval, this.adminUrl);
    const body = JSON.stringify(payload);
    let status: number | null = null;
    let error: string | null = null;
    const attempts = t.config.retries + 1;
    /** A notification that failed after `tries` tries, with the last status (null: no answer) and `reason`. */
    const failed = (tries: number, reason: string | null): Omit<NotifiedData, 'approvalId'> => ({
      webhook: t.config.name,
      ok: false,
      attempts: tries,
      status,
      error: reason,
    });
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const headers: Record<string, string> = {
        'user-agent': 'vigil-approvals',
        ...t.headers,
        'content-type': 'application/json',
      };
      if (t.secret !== undefined) {
        const timestamp = String(Math.floor(Date.now() / 1000));
        headers['x-vigil-timestamp'] = timestamp;
        headers['x-vigil-signature'] = `sha256=${vigilSignature(t.secret, timestamp, body)}`;
      }
      try {
        const timeout = AbortSignal.timeout(t.config.timeout);
        const res = await t.fetch(t.url, {
          method: 'POST',
          headers,
          body,
          signal: stop ? AbortSignal.any([timeout, stop]) : timeout,
        });
        status = res.status;
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) return { webhook: t.config.name, ok: true, attempts: attempt, status, error: null };
        error = `answered ${res.status}`;
        // A 4xx other than 408/429 will not get better by asking again.
        if (res.status < 500 && res.status !== 408 && res.status !== 429) return failed(attempt, error);
      } catch (err) {
        status = null;
        if (stop?.aborted) return failed(attempt, STOPPED);
        error =
          (err as Error).name === 'TimeoutError'
            ? `no answer within ${t.config.timeout} ms`
            : redactUrl((err as { cause?: Error }).cause?.message ?? (err as Error).message, t.url, t.config.name);
      }
      if (attempt < attempts) {
        const backoff = (this.options.backoffMs ?? 500) * 2 ** (attempt - 1);
        const stopped = await sleep(backoff, false, { signal: stop }).catch(() => true);
        // Stopped between tries: the last answer is what happened, and no other try was made.
        if (stopped) return failed(attempt, `${error}; not tried again: the gateway shut down`);
      }
    }
    this.options.log?.warn({ webhook: t.config.name, approvalId: approval.id, error }, 'approval notification failed');
    return failed(attempts, error);
  }
}
