/**
 * `vigil approvals list|show|approve|deny`: decide held calls from a terminal, through the store.
 *
 * The CLI needs no running gateway of its own: it reads held calls from the ledger and appends its decision there,
 * where the gateway holding the call (this machine's or a replica on the same PostgreSQL) picks it up within a poll.
 *
 * Who is approving: when the config trusts OIDC issuers, an OIDC token (`--token` or `VIGIL_TOKEN`), verified as the
 * proxy verifies callers, so groups and self-approval are judged on a proven identity. Without identity configured
 * (a single-machine setup, reachable on loopback only) the approver is the local OS user, `cli:<user>`.
 */
import { parseOptions } from './parse-options.js';
import { loadConfig } from '../config/load-config.js';
import type { VigilConfig } from '../config/config-schema.js';
import { VigilError } from '../errors.js';
import { OidcVerifier } from '../identity/oidc-verifier.js';
import {
  ApprovalCoordinator,
  ApprovalRefused,
  type ApprovalDecided,
  type Approver,
  type ApprovalView,
} from '../policy/approvals.js';
import { signChain } from '../store/ledger-upkeep.js';
import { openStore } from '../store/open-store.js';
import { CliError } from './cli-error.js';
import { recordCliRead } from './cli-reads.js';
import { cliLocalUser } from './cli-actor.js';
import { listJson } from './list-json.js';
import { decisionBody, grantMinutes as minutesOf } from '../policy/approval-decision.js';

type Out = { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };

const USAGE = `usage:
  vigil approvals list [--all] [--json]                 held calls waiting for a decision (--all: the last 24 h)
  vigil approvals show <id> [--json]
  vigil approvals approve <id> [--reason TEXT] [--grant MINUTES] [--json]
  vigil approvals deny <id> --reason TEXT [--json]
options: --config FILE | --data-dir DIR; --token JWT (or VIGIL_TOKEN) when identity.oidc is configured`;

function usage(): never {
  throw new CliError(USAGE);
}

/** The approver: a verified OIDC token when identity is configured, else the local OS user. */
async function approverFor(config: VigilConfig, token: string | undefined): Promise<Approver> {
  if (config.identity.oidc.length === 0) {
    return cliLocalUser();
  }
  if (!token) {
    throw new VigilError(
      'UNAUTHENTICATED',
      `identity is configured: pass --token or set VIGIL_TOKEN to an OIDC token from ${config.identity.oidc.map((i) => i.issuer).join(' or ')}`,
    );
  }
  const verifier = new OidcVerifier(config.identity.oidc);
  return verifier.verify(token);
}

function who(a: { subject: string; email?: string | undefined; method: string; keyName?: string | undefined }): string {
  if (a.method === 'gateway_key') return `key:${a.keyName ?? a.subject}`;
  return a.email ?? a.subject;
}

function describe(v: ApprovalView, now: number): string {
  const left = Math.max(0, Math.round((v.expiresAt - now) / 1000));
  const when =
    v.status === 'pending'
      ? `expires in ${Math.floor(left / 60)}m${String(left % 60).padStart(2, '0')}s`
      : v.status.replace('_', ' ');
  const lines = [
    `${v.id}  ${when}  ${who(v.caller)}  ${v.connection}  rule "${v.rule.name}"  ` +
      `${v.approvals.length}/${v.rule.approvalsRequired} approval${v.rule.approvalsRequired > 1 ? 's' : ''}` +
      `${v.rule.approverGroups.length ? ` from ${v.rule.approverGroups.join(',')}` : ''}`,
    `    why: ${v.matched.join('; ') || 'rule matched'}${v.request.model ? `  model ${v.request.model}` : ''}` +
      `${v.request.maxTokens !== null ? `  max_tokens ${v.request.maxTokens}` : ''}`,
  ];
  const excerpt = (v.request.excerpts[0] ?? v.request.lastTurn).replace(/\s+/g, ' ').trim();
  if (excerpt) lines.push(`    ${excerpt.length > 200 ? `${excerpt.slice(0, 200)}…` : excerpt}`);
  if (v.denial) lines.push(`    denied by ${who(v.denial.by)}${v.denial.reason ? `: ${v.denial.reason}` : ''}`);
  for (const a of v.approvals) lines.push(`    approved by ${who(a.by)}${a.reason ? `: ${a.reason}` : ''}`);
  return `${lines.join('\n')}\n`;
}

/** Runs `vigil approvals …`; returns the exit code (1 when a decision is refused). */
export async function approvalsCommand(args: string[], out: Out): Promise<number> {
  const [verb, ...rest] = args;
  const { values, positionals } = parseOptions(rest, {
    config: { type: 'string' },
    'data-dir': { type: 'string' },
    json: { type: 'boolean', default: false },
    all: { type: 'boolean', default: false },
    reason: { type: 'string' },
    grant: { type: 'string' },
    token: { type: 'string' },
  });
  if (verb !== 'list' && verb !== 'show' && verb !== 'approve' && verb !== 'deny') usage();
  const id = positionals[0];
  if (verb !== 'list' && !id) usage();
  if (verb === 'deny' && !values.reason?.trim())
    throw new CliError('vigil approvals deny: --reason is required (the caller is told it)');
  const grantMinutes = values.grant !== undefined ? Number(values.grant) : undefined;
  if (grantMinutes !== undefined && !(grantMinutes > 0))
    throw new CliError(`--grant: a number of minutes (got "${values.grant}")`);

  const config = loadConfig({ configFile: values.config, dataDir: values['data-dir'] });
  const deciding = verb === 'approve' || verb === 'deny';
  // Check who is approving before touching the store: a bad token changes nothing.
  const approver = deciding ? await approverFor(config, values.token ?? process.env.VIGIL_TOKEN) : undefined;
  const store = await openStore(config, { readonly: !deciding });
  const approvals = new ApprovalCoordinator(store);
  try {
    const now = Date.now();
    if (verb === 'list') {
      const list = await approvals.list({ pending: !values.all });
      // Held calls carry excerpts of their prompts: reading them is logged, as through the admin API.
      if (list.length > 0)
        await recordCliRead(
          values,
          'approval',
          list.map((v) => v.id),
          out,
        );
      if (values.json) out.stdout.write(listJson({ items: list }, 'approvals'));
      else if (list.length === 0)
        out.stdout.write(values.all ? 'no held calls in the last 24 hours\n' : 'no calls waiting for approval\n');
      else for (const v of list) out.stdout.write(describe(v, now));
      return 0;
    }
    if (verb === 'show') {
      const v = await approvals.get(id!);
      if (!v) throw new ApprovalRefused('not_found', `no held call "${id}" (see: vigil approvals list)`);
      await recordCliRead(values, 'approval', [v.id], out);
      out.stdout.write(values.json ? `${JSON.stringify(v, null, 2)}\n` : describe(v, now));
      return 0;
    }
    const decided: ApprovalDecided =
      verb === 'approve'
        ? await approvals.approve(id!, approver!, { reason: values.reason, grantMinutes })
        : { ...(await approvals.deny(id!, approver!, values.reason!)), grant: null };
    const { grant, ...v } = decided;
    await signChain(config, store, { create: false });
    // With approvals_required > 1, a grant is made only when the last approval comes and every approver asked for one
    // (for the shortest asked): say what this approval did, not what was asked, in JSON as in words.
    if (values.json) out.stdout.write(`${JSON.stringify(decisionBody(decided), null, 2)}\n`);
    else if (v.status === 'approved') {
      // What a grant covers (README, "Approvals"): this caller on this connection's rule; an anonymous caller only in
      // this session, since everyone on the machine is `anonymous`.
      const scope = grant?.session !== undefined ? ` in session ${grant.session}` : ` on connection ${v.connection}`;
      const made =
        grant !== null
          ? `; ${who(v.caller)} is not held on rule "${grant.rule}"${scope} for ${minutesOf(grant.ms)} min`
          : grantMinutes
            ? `; no grant was made: rule "${v.rule.name}" needs ${v.rule.approvalsRequired} approvals, and a grant is made only when every approver asks for one`
            : '';
      out.stdout.write(`approved ${v.id}: the call goes ahead${made}\n`);
    } else if (v.status === 'denied') out.stdout.write(`denied ${v.id}: the caller is told "${values.reason}"\n`);
    else
      out.stdout.write(
        `${v.id}: ${v.approvals.length} of ${v.rule.approvalsRequired} approvals; waiting for another approver` +
          (grantMinutes
            ? `; no grant yet: one is made when the last approval comes, if every approver asked for one (for the shortest asked)`
            : '') +
          '\n',
      );
    return 0;
  } catch (err) {
    if (err instanceof ApprovalRefused) throw new CliError(err.message, 1);
    throw err;
  } finally {
    await approvals.close();
    await store.close();
  }
}
