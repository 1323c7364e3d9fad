/**
 * Just-in-time approval: a held call waits until enough people approve it, someone denies it, its time runs out, or
 * its client gives up.
 *
 * The ledger is the only shared state, so that any number of gateways on one store (and the CLI, and the admin API of
 * any of them) act on the same approvals: a held call is an `approval.held` record, each decision an `approval.decided`
 * record appended by whoever decides, a grant an `approval.granted` record. The process holding the call follows the
 * ledger (every {@link ApprovalCoordinatorOptions.pollMs}) and resolves the call from what it reads; deciders validate
 * before appending, and the holder validates again when it reads, so a decision written around the API counts for
 * nothing unless it was allowed. Every record carries the exchange and session of the held call: the whole story is
 * on the session's chain.
 *
 * While a call is held the gateway sends the client nothing: the status (200, or 403 if denied) is not known yet, and
 * a streaming response cannot start before it is. The client waits on an idle connection; the official SDKs and Claude
 * Code wait 10 minutes by default, so rule timeouts should stay under that (see README, "Approvals").
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { VigilError } from '../errors.js';
import { PendingPromises } from '../pending-promises.js';
import { gatewayKeyId } from '../identity/gateway-keys.js';
import type { LocalUser, Principal } from '../identity/principal.js';
import { nextPause } from '../retry-pause.js';
import type { AuditStore, KeyRevokedData, StoredRecord } from '../store/audit-store.js';
import type { CompiledRule } from './approval-rules.js';
import type { ApprovalRequestSummary } from './approval-summary.js';

/**
 * The longest pause between reads of a ledger that keeps failing while calls are held (a decision made meanwhile waits
 * that long).
 */
export const MAX_FAILED_POLL_PAUSE_MS = 5_000;

/** What the coordinator needs of the store: append, and follow records of some kinds. */
export type ApprovalLedger = Pick<AuditStore, 'append' | 'recordsOfKinds'> & Partial<Pick<AuditStore, 'onAppended'>>;

/** Who decides: a person or service with an OIDC token, an admin API token, or the local OS user of the CLI. */
export type Approver = Principal | { readonly method: 'admin_token'; readonly subject: string } | LocalUser;

/** The rule as recorded with the held call: all a decider (maybe another process, without this config) checks. */
export interface HeldRule {
  readonly name: string;
  readonly message: string | null;
  readonly approvalsRequired: number;
  readonly approverGroups: readonly string[];
  /** Longest grant, ms; 0: none. */
  readonly grantMaxMs: number;
}

/** Payload of `approval.held`. */
export interface HeldData {
  readonly id: string;
  readonly exchangeId: string;
  readonly sessionId: string;
  readonly connection: string;
  readonly caller: Principal;
  readonly rule: HeldRule;
  /** Why the rule matched (`tool offered: Bash`, `prompt matches /AKIA/`). */
  readonly matched: readonly string[];
  readonly request: ApprovalRequestSummary;
  readonly heldAt: number;
  readonly expiresAt: number;
}

/** Payload of `approval.decided`. */
export interface DecidedData {
  readonly approvalId: string;
  readonly decision: 'approve' | 'deny';
  readonly approver: Approver;
  readonly reason: string | null;
  /** approve only: the grant this approver asked for, ms. */
  readonly grantMs: number | null;
}

/** Payload of `approval.granted`: later calls by this caller, matching this rule on this connection, are not held. */
export interface GrantedData {
  readonly grantId: string;
  readonly approvalId: string;
  readonly caller: {
    readonly subject: string;
    readonly issuer: string | null;
    /** How the caller authenticated; absent in grants recorded before it was kept (see {@link grantMethod}). */
    readonly method?: Principal['method'];
    /** A gateway key's id: the grant covers that key only. Absent in grants recorded before it was kept. */
    readonly keyId?: string;
  };
  /**
   * Set for anonymous callers: everyone on the machine is `anonymous`, so their grant covers only the session it was
   * given in (Claude Code's session), not every local caller.
   */
  readonly session?: string;
  readonly connection: string;
  readonly rule: string;
  readonly expiresAt: number;
  readonly by: readonly Approver[];
}

/** Payload of `approval.timed_out` and `approval.cancelled`. */
export interface EndedData {
  readonly approvalId: string;
  readonly reason: string;
}

/** Payload of `approval.grant_used`: this exchange was not held, because of that grant. */
export interface GrantUsedData {
  readonly grantId: string;
  readonly approvalId: string;
  readonly rule: string;
  readonly connection: string;
}

/** Payload of `approval.notified`. */
export interface NotifiedData {
  readonly approvalId: string;
  readonly webhook: string;
  readonly ok: boolean;
  readonly attempts: number;
  readonly status: number | null;
  readonly error: string | null;
}

const APPROVAL_KINDS = {
  held: 'approval.held',
  decided: 'approval.decided',
  granted: 'approval.granted',
  timedOut: 'approval.timed_out',
  cancelled: 'approval.cancelled',
  grantUsed: 'approval.grant_used',
  notified: 'approval.notified',
} as const;

/** A gateway key's grant ends when the key is revoked (see {@link ApprovalCoordinator.covers}). */
const KEY_REVOKED = 'key.revoked';

const FOLLOWED = [
  APPROVAL_KINDS.held,
  APPROVAL_KINDS.decided,
  APPROVAL_KINDS.granted,
  APPROVAL_KINDS.timedOut,
  APPROVAL_KINDS.cancelled,
  KEY_REVOKED,
];

export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'timed_out' | 'cancelled';

/** One approval as the API and CLI show it. */
export interface ApprovalView extends HeldData {
  readonly status: ApprovalStatus;
  readonly approvals: ReadonlyArray<{ readonly by: Approver; readonly at: number; readonly reason: string | null }>;
  readonly denial: { readonly by: Approver; readonly at: number; readonly reason: string | null } | null;
  /** timed_out / cancelled: why. */
  readonly endReason: string | null;
}

/** What an approval did: the approval as it now stands, and the grant it made with its length in ms (null: none). */
export type ApprovalDecided = ApprovalView & { readonly grant: (GrantedData & { readonly ms: number }) | null };

/** How a held call ended, for the proxy. */
export type HoldOutcome =
  | { readonly outcome: 'approved'; readonly approvalId: string; readonly by: readonly Approver[] }
  | { readonly outcome: 'granted'; readonly grant: GrantedData }
  | { readonly outcome: 'denied'; readonly approvalId: string; readonly by: Approver; readonly reason: string | null }
  | { readonly outcome: 'timed_out'; readonly approvalId: string; readonly timeoutMs: number }
  /** `approvalId` is '' when the call was never held (nothing was recorded of it). */
  | { readonly outcome: 'cancelled'; readonly approvalId: string; readonly reason: string };

/** Why a call is cancelled when nobody decided it: its client left, or the gateway is closing. */
const CLIENT_GONE = 'the client closed the connection';
const SHUTTING_DOWN = 'the gateway is shutting down';

/** A call cancelled, for the proxy; `approvalId` is '' when the call was never held. */
function cancelled(reason: string, approvalId = ''): HoldOutcome {
  return { outcome: 'cancelled', approvalId, reason };
}

export interface HoldRequest {
  readonly exchangeId: string;
  readonly sessionId: string;
  readonly connection: string;
  readonly caller: Principal;
  readonly rule: CompiledRule;
  readonly matched: readonly string[];
  /** Already masked ({@link summarizeRequest}). */
  readonly request: ApprovalRequestSummary;
  /** Aborted when the client gives up: the call is recorded as cancelled. */
  readonly signal?: AbortSignal | undefined;
}

/** Sends notifications of a held call (webhooks); results are recorded as `approval.notified`. */
export interface HeldNotifier {
  /**
   * `stop` is aborted when the gateway will not wait any longer (see {@link ApprovalCoordinator.close}): the notifier
   * then ends what is in flight, tries no more, and resolves at once with what happened (one result per webhook).
   */
  notify(approval: ApprovalView, stop?: AbortSignal): Promise<ReadonlyArray<Omit<NotifiedData, 'approvalId'>>>;
}

/** How long {@link ApprovalCoordinator.close} waits for webhooks by default: one attempt at a webhook's default timeout. */
export const NOTIFY_CLOSE_WAIT_MS = 5000;

export interface ApprovalCoordinatorOptions {
  readonly notifier?: HeldNotifier | undefined;
  readonly log?: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void } | undefined;
  /** How often a process with held calls reads the ledger for decisions. Default 200 ms. */
  readonly pollMs?: number;
  /** How far back the first read goes (pending approvals and grants made before this process started). Default 24 h. */
  readonly historyMs?: number;
  /**
   * Each read re-reads this much before the previous one, for records committed late or stamped by a slower clock.
   * Default 30 s.
   */
  readonly overlapMs?: number;
  readonly clock?: () => number;
  /**
   * Approvers prove who they are with OIDC tokens (`identity.oidc` is configured), so none decides as a local user:
   * a held gateway key whose owner is a local user (`cli:<user>`, the default of `vigil keys create`) is warned about,
   * since its owner approving its calls cannot be recognised.
   */
  readonly oidcApprovers?: boolean;
}

/** Why a decision was refused; `problem` lets an API map it to a status (404, 403, 409). */
export class ApprovalRefused extends VigilError {
  constructor(
    readonly problem:
      'not_found' | 'self_approval' | 'not_an_approver' | 'already_approved' | 'not_pending' | 'bad_grant',
    message: string,
  ) {
    super(
      problem === 'not_found'
        ? 'NOT_FOUND'
        : problem === 'not_pending' || problem === 'bad_grant'
          ? 'BAD_REQUEST'
          : 'NOT_ALLOWED',
      message,
    );
  }
}

interface State {
  held: HeldData;
  decisions: Array<{ data: DecidedData; at: number }>;
  ended: { status: 'timed_out' | 'cancelled'; reason: string } | null;
}

interface Waiter {
  readonly held: HeldData;
  readonly resolve: (o: HoldOutcome) => void;
  readonly cleanup: () => void;
  settling: boolean;
}

const PAGE = 2000;
/** Allowance for the clocks of the process that approved and the one that granted (usually the same). */
const GRANT_CLOCK_SLACK_MS = 60_000;

/**
 * How a grant's caller authenticated. Grants recorded before the method was kept tell it apart all the same: OIDC
 * callers have an issuer, and only anonymous callers' grants are limited to a session.
 */
function grantMethod(g: GrantedData): Principal['method'] {
  if (g.caller.method !== undefined) return g.caller.method;
  if (g.caller.issuer !== null) return 'oidc';
  return g.session !== undefined ? 'anonymous' : 'gateway_key';
}

/** `method|issuer|subject`, and a gateway key's id: one identity, for distinct-approver counting. */
export function actorKey(a: Approver): string {
  const keyId = 'keyId' in a && a.keyId !== undefined ? `|${a.keyId}` : '';
  return `${a.method}|${'issuer' in a ? (a.issuer ?? '') : ''}|${a.subject}${keyId}`;
}

/**
 * The names an approver goes by, as a gateway key's owner may be written (lower case): an OIDC subject and e-mail, an
 * admin token's name, the CLI's local user both as `cli:<user>` (what `vigil keys create` records by default) and as
 * `<user>`, the admin API's local admin as `admin-api:localhost`.
 */
function namesOf(a: Approver): string[] {
  switch (a.method) {
    case 'oidc':
      return a.email !== undefined ? [a.subject, a.email] : [a.subject];
    case 'local_user':
      return a.subject.startsWith('cli:') ? [a.subject, a.subject.slice('cli:'.length)] : [a.subject];
    case 'admin_token':
      return [a.subject];
    default:
      // Gateway keys are compared key to key; an anonymous caller is nobody in particular.
      return [];
  }
}

/**
 * Whether a gateway key's `owner` names `approver`. Case-insensitive: an owner typed as `Alice@Example.com` is still
 * Alice, and erring this way only ever asks for another approver.
 */
function ownedBy(owner: string, approver: Approver): boolean {
  const o = owner.trim().toLowerCase();
  return o !== '' && namesOf(approver).some((n) => n.toLowerCase() === o);
}

/**
 * Whether `approver` is the caller: same OIDC subject and issuer, the same key or token, or the key's owner under any
 * name the owner can decide as (OIDC, the CLI's local user, an admin token: see {@link namesOf}).
 */
export function isSameActor(caller: Principal, approver: Approver): boolean {
  if (caller.method === 'gateway_key' && approver.method === 'gateway_key') {
    // A key's name passes to a new key once it is revoked: the id tells the two apart. A record from before ids were
    // kept has the name only, and is taken for the same key (no self-approval slips through).
    return (
      caller.subject === approver.subject &&
      (caller.keyId === undefined || approver.keyId === undefined || caller.keyId === approver.keyId)
    );
  }
  if (actorKey(caller) === actorKey(approver)) return true;
  // Without OIDC, `vigil keys create` records its user as the owner (`cli:alice`) and `vigil approvals approve` decides
  // as that same user: comparing the owner with OIDC approvers only let the owner approve her own key's calls.
  return caller.method === 'gateway_key' && caller.owner !== undefined && ownedBy(caller.owner, approver);
}

function groupsOf(a: Approver): readonly string[] {
  return 'groups' in a ? (a.groups ?? []) : [];
}

/** Whether `a` is among the approvers `groups` name (none named: anyone). */
export function inGroups(a: Approver, groups: readonly string[]): boolean {
  return groups.length === 0 || groupsOf(a).some((g) => groups.includes(g));
}

/** An approver as messages name them: the e-mail when there is one, else the subject. */
export function describeActor(a: Approver): string {
  return 'email' in a && a.email ? a.email : a.subject;
}

/** The state an approval is in, from its records: decisions that were not allowed are ignored. */
function tally(s: State, now: number): Omit<ApprovalView, keyof HeldData> {
  const approvals: Array<{ by: Approver; at: number; reason: string | null; grantMs: number | null }> = [];
  let denial: ApprovalView['denial'] = null;
  for (const { data: d, at } of s.decisions) {
    if (d.decision === 'deny') {
      if (!isSameActor(s.held.caller, d.approver) && !inGroups(d.approver, s.held.rule.approverGroups)) continue;
      denial = { by: d.approver, at, reason: d.reason };
      break;
    }
    if (isSameActor(s.held.caller, d.approver) || !inGroups(d.approver, s.held.rule.approverGroups)) continue;
    if (approvals.some((a) => actorKey(a.by) === actorKey(d.approver))) continue;
    approvals.push({ by: d.approver, at, reason: d.reason, grantMs: d.grantMs });
    if (approvals.length >= s.held.rule.approvalsRequired) break;
  }
  let status: ApprovalStatus;
  if (s.ended) status = s.ended.status;
  else if (denial) status = 'denied';
  else if (approvals.length >= s.held.rule.approvalsRequired) status = 'approved';
  else if (now >= s.held.expiresAt) status = 'timed_out';
  else status = 'pending';
  return {
    status,
    approvals: approvals.map(({ by, at, reason }) => ({ by, at, reason })),
    denial,
    endReason: s.ended?.reason ?? (status === 'timed_out' ? 'no decision in time' : null),
  };
}

function parse<T>(r: StoredRecord): T | undefined {
  try {
    return JSON.parse(r.data) as T;
  } catch {
    return undefined;
  }
}

/** The record this process appended, among what `append` returns (a chain's first append also returns `chain.opened`). */
function ownRecord(stored: readonly StoredRecord[], kind: string): StoredRecord | undefined {
  return stored.find((r) => r.kind === kind);
}

function newApprovalId(): string {
  return `apr_${randomBytes(8).toString('hex')}`;
}

/**
 * One per gateway process (and one per CLI invocation that decides). Holds calls, follows the ledger for decisions,
 * and validates and records decisions.
 */
export class ApprovalCoordinator {
  private readonly approvals = new Map<string, State>();
  private readonly grants = new Map<string, GrantedData>();
  /** Revoked gateway keys seen in the ledger: key id → name and when. Few, and kept: see {@link covers}. */
  private readonly revokedKeys = new Map<string, { readonly name: string; readonly at: number }>();
  /** Records already read (chain:chainSeq → at), so that overlapping reads count each once. */
  private readonly seen = new Map<string, number>();
  private readonly waiters = new Map<string, Waiter>();
  /** Calls in {@link hold}, from the start until their outcome: what close() waits for. */
  private readonly holds = new PendingPromises();
  /** Notifications in flight, until their `approval.notified` records are written: close() waits for them too. */
  private readonly notifications = new PendingPromises();
  /** Aborted by close() once it has waited for notifications as long as it will. */
  private readonly stopNotifying = new AbortController();
  /** Gateway keys already warned about (see {@link ApprovalCoordinatorOptions.oidcApprovers}), once per process. */
  private readonly warnedOwners = new Set<string>();
  private lastReadStart: number | null = null;
  private reading: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  /**
   * The pause after a read of the ledger failed (the store unreachable), doubling from pollMs up to
   * {@link MAX_FAILED_POLL_PAUSE_MS}: polling every 200 ms meanwhile logged 18,000 failures an hour. Zero while reads
   * work.
   */
  private failedPollPauseMs = 0;
  private closed = false;
  private readonly pollMs: number;
  private readonly historyMs: number;
  private readonly overlapMs: number;
  private readonly clock: () => number;
  private readonly unsubscribe: (() => void) | undefined;
  /** Where held calls are announced (see setNotifier). */
  private notifier: HeldNotifier | undefined;
  /** See {@link ApprovalCoordinatorOptions.oidcApprovers} and setOidcApprovers. */
  private oidcApprovers: boolean;

  constructor(
    private readonly ledger: ApprovalLedger,
    private readonly options: ApprovalCoordinatorOptions = {},
  ) {
    this.notifier = options.notifier;
    this.oidcApprovers = options.oidcApprovers ?? false;
    this.pollMs = options.pollMs ?? 200;
    this.historyMs = options.historyMs ?? 24 * 3_600_000;
    this.overlapMs = options.overlapMs ?? 30_000;
    this.clock = options.clock ?? Date.now;
    // Where the store can signal (PostgreSQL LISTEN/NOTIFY), a decision made anywhere is read at once; polling stays
    // the fallback for stores without a signal and for lost notifications.
    this.unsubscribe = ledger.onAppended?.('approval.', () => this.pollSoon());
  }

  /** Read the ledger now instead of at the next poll (a signal said something was appended). */
  private pollSoon(): void {
    if (this.closed || this.waiters.size === 0 || this.timer === null) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.schedulePoll(0);
  }

  /** Calls held by this process right now. */
  get holding(): number {
    return this.waiters.size;
  }

  /**
   * Hold a call until it is decided. Resolves at once with `granted` when an active grant covers the caller and rule.
   * Rejects only when the held call cannot be recorded (the proxy then fails closed). Resolves with `cancelled` and no
   * `approvalId` when the call was never held: the gateway is closing, or the client left first.
   */
  hold(req: HoldRequest): Promise<HoldOutcome> {
    // Until it ends, close() waits for it (see there). Only held calls pay for this.
    return this.holds.track(this.holdCall(req));
  }

  private async holdCall(req: HoldRequest): Promise<HoldOutcome> {
    if (this.closed) return cancelled(SHUTTING_DOWN);
    await this.refresh();
    // Checked again after the read: a call whose client has gone is neither let through by a grant (whose use would
    // be recorded for a call never sent) nor held.
    if (req.signal?.aborted) return cancelled(CLIENT_GONE);
    if (this.closed) return cancelled(SHUTTING_DOWN);
    const now = this.clock();
    const grant = this.activeGrant(req.caller, req.connection, req.rule.name, now, req.sessionId);
    if (grant) {
      await this.append(APPROVAL_KINDS.grantUsed, req.exchangeId, req.sessionId, {
        grantId: grant.grantId,
        approvalId: grant.approvalId,
        rule: grant.rule,
        connection: grant.connection,
      } satisfies GrantUsedData);
      return { outcome: 'granted', grant };
    }
    const held: HeldData = {
      id: newApprovalId(),
      exchangeId: req.exchangeId,
      sessionId: req.sessionId,
      connection: req.connection,
      caller: req.caller,
      rule: {
        name: req.rule.name,
        message: req.rule.message ?? null,
        approvalsRequired: req.rule.approvalsRequired,
        approverGroups: req.rule.approverGroups,
        grantMaxMs: req.rule.grantMaxMs,
      },
      matched: req.matched,
      request: req.request,
      heldAt: now,
      expiresAt: now + req.rule.timeoutMs,
    };
    if (req.signal?.aborted) return cancelled(CLIENT_GONE);
    this.warnOfUnmatchableOwner(req.caller);
    const stored = ownRecord(
      await this.ledger.append({
        records: [
          { kind: APPROVAL_KINDS.held, exchangeId: held.exchangeId, sessionId: held.sessionId, at: now, data: held },
        ],
      }),
      APPROVAL_KINDS.held,
    );
    if (stored) this.seen.set(`${stored.chain}:${stored.chainSeq}`, stored.at);
    // A read may have listed the held record (and a decision on it) before this append's answer arrived: keep the
    // approval it made, so that nothing decided meanwhile is lost to a fresh, empty one.
    let state = this.approvals.get(held.id);
    if (!state) {
      state = { held, decisions: [], ended: null };
      this.approvals.set(held.id, state);
    }

    const outcome = new Promise<HoldOutcome>((resolve) => {
      const onAbort = (): void => void this.end(held.id, 'cancelled', CLIENT_GONE);
      const timeout = setTimeout(() => void this.expire(held.id), Math.max(0, held.expiresAt - this.clock()));
      timeout.unref();
      req.signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.set(held.id, {
        held,
        resolve,
        settling: false,
        cleanup: () => {
          clearTimeout(timeout);
          req.signal?.removeEventListener('abort', onAbort);
        },
      });
    });
    if (req.signal?.aborted) void this.end(held.id, 'cancelled', CLIENT_GONE);
    // Closed while the call was being held (close() ended only the waiters there were): end this one too.
    else if (this.closed) void this.end(held.id, 'cancelled', SHUTTING_DOWN);
    // Decided while its record was being appended (see above): answer now, not at the next poll.
    else if (state.decisions.length > 0) this.settleAll();
    this.schedulePoll();
    const notifier = this.notifier;
    if (notifier) void this.notifications.track(this.notify(state, notifier));
    return outcome;
  }

  /**
   * With OIDC approvers, a key owned by a local user (`cli:alice`) can be approved by that very person under her OIDC
   * identity, and nothing ties the two names together: say so, once per key, naming the fix.
   */
  private warnOfUnmatchableOwner(caller: Principal): void {
    if (!this.oidcApprovers || caller.method !== 'gateway_key' || !caller.owner?.startsWith('cli:')) return;
    const key = caller.keyId ?? caller.subject;
    if (this.warnedOwners.has(key)) return;
    this.warnedOwners.add(key);
    this.options.log?.warn(
      { key: caller.keyName ?? caller.subject, keyId: caller.keyId, owner: caller.owner },
      `approvals: gateway key "${caller.keyName ?? caller.subject}" is owned by the local user "${caller.owner}", but ` +
        'approvers sign in with OIDC: Vigil cannot tell if its owner approves its calls. Create the key again with ' +
        '--owner <the owner’s OIDC e-mail or subject> (vigil keys create), then revoke this one',
    );
  }

  /** Approvals seen in the ledger (the last `historyMs`), newest first; only pending ones with `pending`. */
  async list(filter: { pending?: boolean; connection?: string } = {}): Promise<ApprovalView[]> {
    await this.refresh();
    const now = this.clock();
    const views = [...this.approvals.values()]
      .map((s) => this.viewOf(s, now))
      .filter(
        (v) =>
          (!filter.pending || v.status === 'pending') &&
          (filter.connection === undefined || v.connection === filter.connection),
      );
    return views.sort((a, b) => b.heldAt - a.heldAt);
  }

  async get(id: string): Promise<ApprovalView | undefined> {
    await this.refresh();
    const s = this.approvals.get(id);
    return s ? this.viewOf(s, this.clock()) : undefined;
  }

  /**
   * Approve a held call. With `grantMinutes`, also let later calls by the same caller that match the same rule on the
   * same connection through without a hold, for that long (at most the rule's `grant`); with `approvals_required` > 1,
   * a grant is made when every approval asked for one, for the shortest asked (so not by an approval that leaves the
   * call pending). The result's `grant` says whether this approval made one.
   *
   * @throws ApprovalRefused
   */
  async approve(
    id: string,
    approver: Approver,
    opts: { reason?: string | undefined; grantMinutes?: number | undefined } = {},
  ): Promise<ApprovalDecided> {
    const s = await this.pending(id);
    const { held } = s;
    if (isSameActor(held.caller, approver)) {
      throw new ApprovalRefused(
        'self_approval',
        `${describeActor(approver)} made this call and cannot approve it: someone else must`,
      );
    }
    if (!inGroups(approver, held.rule.approverGroups)) {
      throw new ApprovalRefused(
        'not_an_approver',
        `rule "${held.rule.name}" needs an approver in ${held.rule.approverGroups.join(', ')}; ${describeActor(approver)} is not`,
      );
    }
    if (tally(s, this.clock()).approvals.some((a) => actorKey(a.by) === actorKey(approver))) {
      throw new ApprovalRefused(
        'already_approved',
        `${describeActor(approver)} has already approved ${id}; another approver is needed`,
      );
    }
    let grantMs: number | null = null;
    if (opts.grantMinutes !== undefined) {
      if (!Number.isFinite(opts.grantMinutes) || opts.grantMinutes <= 0)
        throw new ApprovalRefused('bad_grant', 'a grant is a positive number of minutes');
      if (held.rule.grantMaxMs === 0)
        throw new ApprovalRefused('bad_grant', `rule "${held.rule.name}" allows no grants (set grant: on the rule)`);
      grantMs = Math.round(opts.grantMinutes * 60_000);
      if (grantMs > held.rule.grantMaxMs) {
        throw new ApprovalRefused(
          'bad_grant',
          `rule "${held.rule.name}" allows grants of at most ${held.rule.grantMaxMs / 60_000} minutes`,
        );
      }
    }
    await this.decide(s, { approvalId: id, decision: 'approve', approver, reason: opts.reason ?? null, grantMs });
    const now = this.clock();
    const after = tally(s, now);
    let granted: ApprovalDecided['grant'] = null;
    if (after.status === 'approved' && !s.ended) {
      const asked = s.decisions
        .filter(
          (d) =>
            d.data.decision === 'approve' && after.approvals.some((a) => actorKey(a.by) === actorKey(d.data.approver)),
        )
        .map((d) => d.data.grantMs);
      if (asked.length > 0 && asked.every((g) => g !== null)) {
        const grant: GrantedData = {
          grantId: `grt_${randomBytes(8).toString('hex')}`,
          approvalId: id,
          caller: {
            subject: held.caller.subject,
            issuer: held.caller.issuer ?? null,
            method: held.caller.method,
            ...(held.caller.keyId !== undefined ? { keyId: held.caller.keyId } : {}),
          },
          ...(held.caller.method === 'anonymous' ? { session: held.sessionId } : {}),
          connection: held.connection,
          rule: held.rule.name,
          expiresAt: now + Math.min(...(asked as number[])),
          by: after.approvals.map((a) => a.by),
        };
        await this.append(APPROVAL_KINDS.granted, held.exchangeId, held.sessionId, grant);
        this.grants.set(grant.grantId, grant);
        granted = { ...grant, ms: grant.expiresAt - now };
      }
    }
    return { ...this.viewOf(s, now), grant: granted };
  }

  /** Deny a held call; the client receives 403 with `reason`. The caller may withdraw their own call this way. */
  async deny(id: string, approver: Approver, reason: string): Promise<ApprovalView> {
    const s = await this.pending(id);
    const { held } = s;
    if (!isSameActor(held.caller, approver) && !inGroups(approver, held.rule.approverGroups)) {
      throw new ApprovalRefused(
        'not_an_approver',
        `rule "${held.rule.name}" needs an approver in ${held.rule.approverGroups.join(', ')}; ${describeActor(approver)} is not`,
      );
    }
    await this.decide(s, { approvalId: id, decision: 'deny', approver, reason: reason.trim() || null, grantMs: null });
    return this.viewOf(s, this.clock());
  }

  /**
   * Stop following the ledger; calls still held end as cancelled (the gateway is going away). Resolves once every call
   * this coordinator was holding has ended and its end is recorded, including a call whose hold was still being
   * recorded (it ends as soon as it is): the store may close next. A caller awaiting {@link hold} has had its outcome
   * by then, since it was waiting on the same promise first (the proxy answers such a call at once, without waiting).
   *
   * Webhook notifications still in flight get up to `notifyWaitMs` (retries included) to be answered; those that are
   * not are stopped then. Either way their `approval.notified` records are written before this resolves, a stopped one
   * saying it was stopped, so the bound is what a webhook that never answers can add to a shutdown.
   */
  async close(notifyWaitMs = NOTIFY_CLOSE_WAIT_MS): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const id of [...this.waiters.keys()]) void this.end(id, 'cancelled', SHUTTING_DOWN);
    await this.holds.settled();
    // Every notification has started by now: a hold starts its own before its outcome can settle.
    if (this.notifications.size > 0) {
      const waited = new AbortController();
      const bound = sleep(notifyWaitMs, undefined, { signal: waited.signal }).catch(() => undefined);
      await Promise.race([this.notifications.settled(), bound]);
      waited.abort();
      this.stopNotifying.abort();
      await this.notifications.settled();
    }
    await this.reading?.catch(() => undefined);
  }

  private async pending(id: string): Promise<State> {
    await this.refresh();
    const s = this.approvals.get(id);
    if (!s) throw new ApprovalRefused('not_found', `no held call "${id}" (see: vigil approvals list)`);
    const { status, endReason } = tally(s, this.clock());
    if (status !== 'pending') {
      throw new ApprovalRefused(
        'not_pending',
        `${id} is no longer pending: ${status.replace('_', ' ')}${endReason ? ` (${endReason})` : ''}`,
      );
    }
    return s;
  }

  private async decide(s: State, data: DecidedData): Promise<void> {
    await this.append(APPROVAL_KINDS.decided, s.held.exchangeId, s.held.sessionId, data);
    this.settleAll();
  }

  private viewOf(s: State, now: number): ApprovalView {
    return { ...s.held, ...tally(s, now) };
  }

  private activeGrant(
    caller: Principal,
    connection: string,
    rule: string,
    now: number,
    sessionId: string,
  ): GrantedData | undefined {
    for (const g of this.grants.values()) {
      if (g.expiresAt <= now) {
        this.grants.delete(g.grantId);
        continue;
      }
      if (g.connection !== connection || g.rule !== rule) continue;
      // A grant counts only as the approval it came with allowed: that approval was approved, and the grant is no
      // longer than its rule lets approvers give (a record written around the API gets nothing).
      const s = this.approvals.get(g.approvalId);
      if (!s || !this.covers(g, s.held.heldAt, caller, sessionId, now)) continue;
      const t = tally(s, now);
      const approvedAt = t.approvals.at(-1)?.at;
      if (t.status !== 'approved' || approvedAt === undefined) continue;
      if (g.expiresAt > approvedAt + s.held.rule.grantMaxMs + GRANT_CLOCK_SLACK_MS) continue;
      return g;
    }
    return undefined;
  }

  /**
   * Whether grant `g`, given for a call held at `heldAt`, covers this caller: the same subject, issuer and way of
   * authenticating, the same session for anonymous callers, and for a gateway key the same key, not revoked (a key
   * rotated with an overlap is revoked when the overlap ends: its grants last as long as it works).
   */
  private covers(g: GrantedData, heldAt: number, caller: Principal, sessionId: string, now: number): boolean {
    if (
      g.caller.subject !== caller.subject ||
      g.caller.issuer !== (caller.issuer ?? null) ||
      grantMethod(g) !== caller.method ||
      (g.session !== undefined && g.session !== sessionId)
    ) {
      return false;
    }
    if (caller.method !== 'gateway_key') return true;
    const { keyId } = g.caller;
    if (keyId !== undefined) {
      const revoked = this.revokedKeys.get(keyId);
      return keyId === caller.keyId && (revoked === undefined || revoked.at > now);
    }
    // A grant recorded before key ids were kept names the key only: it stands for the key of that name when the call
    // was held, until a key of that name is revoked (the name may then pass to a new key, another caller). Clock
    // slack errs towards holding the call again.
    for (const r of this.revokedKeys.values()) {
      if (r.name === g.caller.subject && r.at >= heldAt - GRANT_CLOCK_SLACK_MS) return false;
    }
    return true;
  }

  private async append(kind: string, exchangeId: string, sessionId: string, data: unknown): Promise<void> {
    const stored = ownRecord(
      await this.ledger.append({ records: [{ kind, exchangeId, sessionId, at: this.clock(), data }] }),
      kind,
    );
    if (stored && FOLLOWED.includes(kind as (typeof FOLLOWED)[number])) this.ingest(stored);
  }

  /** Read the ledger now; waits for a read in progress and then reads again, so what is appended before is seen. */
  private async refresh(): Promise<void> {
    while (this.reading) await this.reading.catch(() => undefined);
    this.reading = this.read().finally(() => {
      this.reading = null;
    });
    await this.reading;
  }

  private async read(): Promise<void> {
    const started = this.clock();
    let since = this.lastReadStart === null ? started - this.historyMs : this.lastReadStart - this.overlapMs;
    for (;;) {
      const rows = await this.ledger.recordsOfKinds(FOLLOWED, since, PAGE);
      for (const r of rows) this.ingest(r);
      if (rows.length < PAGE) break;
      const lastAt = rows[rows.length - 1]!.at;
      if (lastAt <= since) break; // more than a page in one millisecond: the rest is read next time round
      since = lastAt;
    }
    this.lastReadStart = started;
    // Records before the next read's start are never returned again: forget their positions.
    const horizon = started - this.overlapMs;
    for (const [pos, at] of this.seen) if (at < horizon) this.seen.delete(pos);
    for (const [id, s] of this.approvals) {
      if (s.held.expiresAt < started - this.historyMs && !this.waiters.has(id)) this.approvals.delete(id);
    }
  }

  private ingest(r: StoredRecord): void {
    const pos = `${r.chain}:${r.chainSeq}`;
    if (this.seen.has(pos)) return;
    this.seen.set(pos, r.at);
    switch (r.kind) {
      case APPROVAL_KINDS.held: {
        const d = parse<HeldData>(r);
        if (d && !this.approvals.has(d.id)) this.approvals.set(d.id, { held: d, decisions: [], ended: null });
        break;
      }
      case APPROVAL_KINDS.decided: {
        const d = parse<DecidedData>(r);
        if (d) this.approvals.get(d.approvalId)?.decisions.push({ data: d, at: r.at });
        break;
      }
      case APPROVAL_KINDS.granted: {
        const d = parse<GrantedData>(r);
        if (d) this.grants.set(d.grantId, d);
        break;
      }
      case KEY_REVOKED: {
        const d = parse<KeyRevokedData>(r);
        if (d) {
          // A revocation may be brought forward (a rotated key revoked at once), never back.
          const id = gatewayKeyId(d.hash);
          const at = Math.min(d.revokedAt, this.revokedKeys.get(id)?.at ?? Infinity);
          this.revokedKeys.set(id, { name: d.name, at });
        }
        break;
      }
      case APPROVAL_KINDS.timedOut:
      case APPROVAL_KINDS.cancelled: {
        const d = parse<EndedData>(r);
        const s = d && this.approvals.get(d.approvalId);
        if (s && !s.ended)
          s.ended = { status: r.kind === APPROVAL_KINDS.timedOut ? 'timed_out' : 'cancelled', reason: d.reason };
        break;
      }
    }
  }

  private schedulePoll(delayMs = this.pollMs): void {
    if (this.timer || this.closed || this.waiters.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.refresh()
        .then(
          () => {
            this.failedPollPauseMs = 0;
            this.settleAll();
          },
          (err: unknown) => {
            this.failedPollPauseMs = nextPause(this.failedPollPauseMs, this.pollMs, MAX_FAILED_POLL_PAUSE_MS);
            this.options.log?.warn(
              { err, retryInMs: this.failedPollPauseMs },
              'approvals: reading the ledger failed; retrying',
            );
          },
        )
        .finally(() => this.schedulePoll(this.failedPollPauseMs || this.pollMs));
    }, delayMs);
    this.timer.unref();
  }

  /** Resolve every held call whose approval is now decided. */
  private settleAll(): void {
    const now = this.clock();
    for (const [id, w] of this.waiters) {
      const s = this.approvals.get(id);
      if (!s || w.settling) continue;
      const t = tally(s, now);
      if (t.status === 'approved')
        this.settle(w, { outcome: 'approved', approvalId: id, by: t.approvals.map((a) => a.by) });
      else if (t.status === 'denied' && t.denial)
        this.settle(w, { outcome: 'denied', approvalId: id, by: t.denial.by, reason: t.denial.reason });
    }
  }

  private settle(w: Waiter, outcome: HoldOutcome): void {
    w.settling = true;
    w.cleanup();
    this.waiters.delete(w.held.id);
    w.resolve(outcome);
  }

  /** The rule's time is up: one last read (a decision may have just landed), then refuse. */
  private async expire(id: string): Promise<void> {
    const w = this.waiters.get(id);
    if (!w || w.settling) return;
    try {
      await this.refresh();
      this.settleAll();
    } catch (err) {
      this.options.log?.warn({ err, approvalId: id }, 'approvals: last read before timing out failed');
    }
    await this.end(id, 'timed_out', 'no decision in time');
  }

  /** End a held call that nobody decided: timed out, or cancelled. Recorded before the waiter is told. */
  private async end(id: string, status: 'timed_out' | 'cancelled', reason: string): Promise<void> {
    const w = this.waiters.get(id);
    if (!w || w.settling) return;
    w.settling = true;
    const s = this.approvals.get(id);
    if (s && !s.ended) s.ended = { status, reason };
    try {
      await this.append(
        status === 'timed_out' ? APPROVAL_KINDS.timedOut : APPROVAL_KINDS.cancelled,
        w.held.exchangeId,
        w.held.sessionId,
        {
          approvalId: id,
          reason,
        } satisfies EndedData,
      );
    } catch (err) {
      this.options.log?.error(
        { err, approvalId: id },
        `approvals: could not record that ${id} ${status.replace('_', ' ')}`,
      );
    }
    w.cleanup();
    this.waiters.delete(id);
    w.resolve(
      status === 'timed_out'
        ? { outcome: 'timed_out', approvalId: id, timeoutMs: w.held.expiresAt - w.held.heldAt }
        : cancelled(reason, id),
    );
  }

  /**
   * Where calls held from now on are announced (a config reload changed `approvals`); those already announced keep
   * the webhooks they were sent to.
   */
  setNotifier(notifier: HeldNotifier | undefined): void {
    this.notifier = notifier;
  }

  /** Whether approvers prove who they are with OIDC tokens (a config reload changed `identity`). */
  setOidcApprovers(oidcApprovers: boolean): void {
    this.oidcApprovers = oidcApprovers;
  }

  private async notify(s: State, notifier: HeldNotifier): Promise<void> {
    const { held } = s;
    try {
      const results = await notifier.notify(this.viewOf(s, this.clock()), this.stopNotifying.signal);
      if (results.length === 0) return;
      await this.ledger.append({
        records: results.map((r) => ({
          kind: APPROVAL_KINDS.notified,
          exchangeId: held.exchangeId,
          sessionId: held.sessionId,
          at: this.clock(),
          data: { approvalId: held.id, ...r } satisfies NotifiedData,
        })),
      });
    } catch (err) {
      this.options.log?.warn({ err, approvalId: held.id }, 'approvals: notifying or recording the notification failed');
    }
  }
}
