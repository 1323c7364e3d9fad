/**
 * Usage limits: how many calls, or tokens, a caller (or a whole connection) may use in a rolling window, before the
 * gateway refuses further calls with 429 `rate_limit_error` until the window frees enough (README, "Usage limits").
 *
 * Counted in memory, in 60 steps of each window: a call when it is admitted, its tokens when it ends (in the step it
 * started in). At start the counts are read back from the store, so a restart forgets nothing; on a shared store
 * (PostgreSQL) each step is read again once it is over, so that what other gateways served is counted too.
 */
import { z } from 'zod';
import { positiveDuration } from '../config/common-schemas.js';
import { allowListSchema, isAllowed } from '../identity/identity-config.js';
import type { Principal } from '../identity/principal.js';
import { describeCaller } from './policy.js';
import { formatDuration } from '../store/digest-overdue.js';
import type { ExchangeCompleted } from '../recorder/diagnostics.js';
import type { AuditStore, UsageRow } from '../store/audit-store.js';
import { costOf, priceOf, type Pricing } from '../store/pricing.js';

/** Who a call is counted for: the caller's subject and groups. */
interface Counted {
  readonly subject: string;
  readonly groups?: readonly string[] | undefined;
}

/** The one key a limit the connection's callers share counts under. */
const CONNECTION_KEY: readonly string[] = [''];

/** Steps a window is counted in: a call's tokens free up at most 1/STEPS of the window late. */
export const STEPS = 60;
/** The shortest and longest windows. */
const MIN_WINDOW_MS = 60_000;
const MAX_WINDOW_MS = 90 * 86_400_000;
/** The most callers one step's read-back names (the store's usage report caps it). */
const READ_BACK_CALLERS = 1_000;

const limitSchema = z
  .object({
    /** Named in refusals and in the record of each; unique per connection. */
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1-63 letters, digits, ".", "_" or "-", starting with one'),
    /**
     * `caller` (default): each caller has the whole limit; `group`: each of the callers' OIDC groups has it, shared by
     * its members (a call counts in each of its caller's groups, or only those `for` names; callers without a group
     * are not counted by it); `connection`: all callers of the connection share it.
     */
    per: z.enum(['caller', 'group', 'connection']).default('caller'),
    /** The rolling window: `1h`, `1d`, `30d` (1 minute to 90 days). */
    window: positiveDuration.refine((ms) => ms >= MIN_WINDOW_MS && ms <= MAX_WINDOW_MS, {
      message: 'must be between 1m and 90d',
    }),
    /** Input tokens (cache reads and writes included) plus output tokens, as the usage report counts them. */
    tokens: z.number().int().positive().optional(),
    /** Calls admitted. */
    requests: z.number().int().positive().optional(),
    /**
     * What the calls cost, in `pricing.currency`, as usage reports price them (README, "Cost"): a budget. Counts the
     * models `pricing` prices; needs `pricing`.
     */
    cost: z.number().finite().positive().optional(),
    /** Whose calls it refuses (`[{subject}, {group}, {email}, {key}]`, any match); absent: every caller's. */
    for: allowListSchema.optional(),
  })
  .strict()
  .refine((l) => l.tokens !== undefined || l.requests !== undefined || l.cost !== undefined, {
    message: 'a limit needs tokens, requests or cost (one or more)',
  });
export type LimitConfig = z.output<typeof limitSchema>;

/** A connection's `limits:` list. */
export const limitsSchema = z.array(limitSchema).superRefine((limits, ctx) => {
  const seen = new Set<string>();
  limits.forEach((l, i) => {
    if (seen.has(l.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate limit "${l.name}"` });
    seen.add(l.name);
  });
});

/** What a call was refused for: the client gets 429 with this message and `retry-after`. */
export interface LimitRefusal {
  readonly limit: string;
  readonly message: string;
  /** When enough of the window has passed for a call to be admitted again (epoch ms). */
  readonly retryAt: number;
}

/** A limit as `GET /limits` shows it, with what is used of it. */
export interface LimitStatus {
  readonly connection: string;
  readonly name: string;
  readonly per: 'caller' | 'group' | 'connection';
  readonly windowMs: number;
  /** The limit's tokens, calls and cost (null: not limited). */
  readonly tokens: number | null;
  readonly requests: number | null;
  readonly cost: number | null;
  /** What `cost` is in (`pricing.currency`); null without pricing. */
  readonly currency: string | null;
  readonly for: LimitConfig['for'] | null;
  /** Per caller (their subject) or group, or one row for the connection (both null): used in the window now. */
  readonly usage: ReadonlyArray<{
    readonly caller: string | null;
    /** With `per: group`: the group. */
    readonly group?: string;
    readonly tokens: number;
    readonly requests: number;
    /** What the calls cost (to a millionth), with `pricing`; 0 without. */
    readonly cost: number;
    /** At the limit: when calls are admitted again (ISO time); else null. */
    readonly refusedUntil: string | null;
  }>;
  /** More callers used it than are listed. */
  readonly truncated: boolean;
}

/** What a window (or one of its steps) counted. */
interface Used {
  readonly tokens: number;
  readonly calls: number;
  /** In the pricing's currency. */
  readonly cost: number;
}

/** The limit's key for each count, in the order a call over several is said to be over them. */
const LIMIT_OF = { tokens: 'tokens', calls: 'requests', cost: 'cost' } as const satisfies Record<
  keyof Used,
  keyof LimitConfig
>;
const COUNTS = Object.keys(LIMIT_OF) as Array<keyof Used>;

/** One window's counts, in STEPS steps; step n covers [n·stepMs, (n+1)·stepMs). */
class Steps {
  private readonly step = new Array<number>(STEPS).fill(-1);
  private readonly tokens = new Array<number>(STEPS).fill(0);
  private readonly calls = new Array<number>(STEPS).fill(0);
  private readonly costs = new Array<number>(STEPS).fill(0);

  /** The counts of step `n` (0 when it is not held: older than the window, or never counted). */
  private slot(n: number, create: boolean): number | null {
    const i = n % STEPS;
    if (this.step[i] === n) return i;
    if (!create) return null;
    this.step[i] = n;
    this.tokens[i] = 0;
    this.calls[i] = 0;
    this.costs[i] = 0;
    return i;
  }

  add(n: number, now: number, tokens: number, calls: number, cost = 0): void {
    if (n <= now - STEPS || n > now) return; // out of the window (a call that outlived it), or from the future
    const i = this.slot(n, true)!;
    this.tokens[i]! += tokens;
    this.calls[i]! += calls;
    this.costs[i]! += cost;
  }

  /** Step `n`'s counts become at least what the store says (it holds other gateways' calls; this one's may lag). */
  atLeast(n: number, now: number, tokens: number, calls: number, cost = 0): void {
    if (n <= now - STEPS || n > now) return;
    const i = this.slot(n, true)!;
    this.tokens[i] = Math.max(this.tokens[i]!, tokens);
    this.calls[i] = Math.max(this.calls[i]!, calls);
    this.costs[i] = Math.max(this.costs[i]!, cost);
  }

  /** What the window ending with step `now` adds up to (on every call: no step list is built). */
  sum(now: number): Used {
    let tokens = 0;
    let calls = 0;
    let cost = 0;
    for (let i = 0; i < STEPS; i++) {
      const n = this.step[i]!;
      if (n > now - STEPS && n <= now) {
        tokens += this.tokens[i]!;
        calls += this.calls[i]!;
        cost += this.costs[i]!;
      }
    }
    return { tokens, calls, cost };
  }

  /** The steps of the window ending with step `now` that counted something, oldest first. */
  stepsIn(now: number): Array<Used & { n: number }> {
    const out: Array<Used & { n: number }> = [];
    for (let n = now - STEPS + 1; n <= now; n++) {
      const i = this.slot(n, false);
      if (i !== null && (this.tokens[i]! > 0 || this.calls[i]! > 0 || this.costs[i]! > 0))
        out.push({ n, tokens: this.tokens[i]!, calls: this.calls[i]!, cost: this.costs[i]! });
    }
    return out;
  }

  /** Nothing counted in the window ending with step `now`: may be forgotten. */
  empty(now: number): boolean {
    const { tokens, calls, cost } = this.sum(now);
    return tokens === 0 && calls === 0 && cost === 0;
  }
}

/** Made on first use: building a number format loads locale data (~20 ms), which a CLI command may never need. */
let count: Intl.NumberFormat | undefined;
/** Counts as people read them: `2,000,000`. */
export const formatCount = (n: number): string => (count ??= new Intl.NumberFormat('en-US')).format(n);

/** `50.00` (to the cent; an amount under a cent to the millionth). */
function formatAmount(amount: number): string {
  return amount.toFixed(amount !== 0 && Math.abs(amount) < 0.01 ? 6 : 2);
}

/** `50.00 USD`: an amount as {@link formatAmount} gives it, in its currency. */
export function formatMoney(amount: number, currency = 'USD'): string {
  return `${formatAmount(amount)} ${currency}`;
}

/** `daily: 2,000,000 tokens, 500 calls per caller in 1d (for group ci)`, as `vigil config check` prints it. */
export function describeLimit(l: LimitConfig, currency?: string): string {
  const what = [
    ...(l.tokens !== undefined ? [`${formatCount(l.tokens)} tokens`] : []),
    ...(l.requests !== undefined ? [`${formatCount(l.requests)} calls`] : []),
    ...(l.cost !== undefined ? [formatMoney(l.cost, currency)] : []),
  ].join(', ');
  const who = l.for
    ?.map((r) =>
      Object.entries(r)
        .map(([k, v]) => `${k} ${v}`)
        .join(' '),
    )
    .join(', ');
  return `${l.name}: ${what} per ${l.per} in ${formatDuration(l.window)}${who ? ` (for ${who})` : ''}`;
}

class Limit {
  readonly stepMs: number;
  private readonly counts = new Map<string, Steps>();
  /** The last step read back from the store (see readBack). */
  readBackThrough: number;

  private current!: LimitConfig;
  /** The groups `for` names, with `per: group` (none: every group counts); worked out when the config is set. */
  private namedGroups: readonly string[] = [];

  constructor(
    readonly connection: string,
    config: LimitConfig,
    now: number,
  ) {
    this.config = config;
    this.stepMs = Math.ceil(config.window / STEPS);
    this.readBackThrough = this.stepOf(now) - STEPS;
  }

  stepOf(t: number): number {
    return Math.floor(t / this.stepMs);
  }

  applies(p: Principal): boolean {
    return this.config.for === undefined || isAllowed(p, this.config.for);
  }

  /**
   * The keys a caller is counted under: their subject (as the store's usage report groups callers), their groups (those
   * `for` names, when it names groups), or the connection's one (`''`).
   */
  keysOf(caller: Counted): readonly string[] {
    if (this.config.per === 'connection') return CONNECTION_KEY;
    if (this.config.per === 'caller') return [caller.subject];
    return (caller.groups ?? []).filter((g) => this.countsUnder(g));
  }

  /** Whether this limit counts under `key`: with `per: group`, a group `for` names, when it names groups. */
  countsUnder(key: string): boolean {
    return this.namedGroups.length === 0 || this.namedGroups.includes(key);
  }

  get config(): LimitConfig {
    return this.current;
  }

  /** Replaced by a reload that keeps the limit (its name, window and `per`): its amounts and `for` may change. */
  set config(c: LimitConfig) {
    this.current = c;
    this.namedGroups =
      c.per === 'group' ? (c.for ?? []).flatMap((r) => ('group' in r && r.group !== undefined ? [r.group] : [])) : [];
  }

  steps(key: string): Steps {
    let s = this.counts.get(key);
    if (!s) this.counts.set(key, (s = new Steps()));
    return s;
  }

  /** What `key` used in the window, and when it may call again if it is at the limit (else null). */
  usage(key: string, now: number): Used & { over: keyof Used | null; until: number | null } {
    const s = this.counts.get(key);
    if (!s) return { tokens: 0, calls: 0, cost: 0, over: null, until: null };
    const current = this.stepOf(now);
    const used = s.sum(current);
    const max = (k: keyof Used): number | undefined => this.config[LIMIT_OF[k]];
    const over = COUNTS.find((k) => used[k] >= (max(k) ?? Infinity)) ?? null;
    if (over === null) return { ...used, over, until: null };
    // Admitted again once enough of the oldest steps have left the window for the count to fall below the limit.
    const limit = max(over)!;
    let left = used[over];
    let until = (current + 1) * this.stepMs;
    for (const st of s.stepsIn(current)) {
      left -= st[over];
      until = (st.n + STEPS) * this.stepMs;
      if (left < limit) break;
    }
    return { ...used, over, until };
  }

  /** Why `p` may not make a call now (as counted under `key`, one of keysOf(p)), or null. */
  refusal(p: Principal, key: string, now: number, currency: string | undefined): LimitRefusal | null {
    const used = this.usage(key, now);
    if (used.over === null) return null;
    const of = this.config[LIMIT_OF[used.over]]!;
    const amounts =
      used.over === 'cost'
        ? `${formatAmount(used.cost)} of ${formatMoney(of, currency)}`
        : `${formatCount(used[used.over])} of ${formatCount(of)} ${used.over}`;
    const who =
      this.config.per === 'connection'
        ? `the callers of connection "${this.connection}"`
        : this.config.per === 'group'
          ? `group "${key}"`
          : p.method === 'anonymous'
            ? 'anonymous callers'
            : describeCaller(p);
    const retryAt = used.until!;
    return {
      limit: this.config.name,
      retryAt,
      message:
        `usage limit "${this.config.name}" reached: ${who} used ${amounts} in the last ` +
        `${formatDuration(this.config.window)}; ` +
        `calls are admitted again from ${new Date(retryAt).toISOString()}`,
    };
  }

  /** Every key with something in the window (`''` for the connection as a whole). */
  keys(): IterableIterator<string> {
    return this.counts.keys();
  }

  /** Forget callers with nothing in their window (bounded memory however many callers came and went). */
  sweep(now: number): void {
    const current = this.stepOf(now);
    for (const [key, s] of this.counts) if (s.empty(current)) this.counts.delete(key);
  }
}

export interface UsageLimitsOptions {
  /** Every connection's limits, by connection name. */
  readonly limits: ReadonlyMap<string, readonly LimitConfig[]>;
  readonly store: AuditStore;
  readonly now?: () => number;
  /** Told when read-backs from the store start failing (they are tried again each step), and when one succeeds again. */
  readonly onReadBackError?: (err: unknown) => void;
  readonly onReadBackRecovered?: () => void;
  /** What tokens cost (`pricing`), for limits on `cost`; a reload replaces it (setPricing). */
  readonly pricing?: Pricing | undefined;
  /**
   * An exchange a cost limit would count ended with a model `pricing` does not price: its cost is not counted. Told
   * once per model (per pricing: a reload that changes it tells again).
   */
  readonly onUnpriced?: (model: string | null, connection: string) => void;
}

/**
 * The gateway's usage limits. check() admits or refuses a call (synchronously, on the hot path); the tokens of each
 * exchange are counted when it ends (completed(), told by the recorder).
 */
export class UsageLimits {
  private byConnection = new Map<string, Limit[]>();
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  /** The step of the read-back schedule (the shortest limit's step), while it runs. */
  private timerStepMs = 0;
  private started = false;
  private reading: Promise<void> = Promise.resolve();
  private closed = false;
  private pricing: Pricing | undefined;
  /** Models told of as unpriced under the current pricing (see onUnpriced). */
  private readonly unpricedTold = new Set<string | null>();

  constructor(private readonly options: UsageLimitsOptions) {
    this.now = options.now ?? Date.now;
    this.pricing = options.pricing;
    this.byConnection = this.limitsOf(options.limits);
  }

  /**
   * A reload's pricing: exchanges that end from now on are priced by it. What was counted stays as it was priced (a
   * gateway started now would read the window back at the new prices).
   */
  setPricing(pricing: Pricing | undefined): void {
    this.pricing = pricing;
    this.unpricedTold.clear();
  }

  /**
   * Each connection's limits as `limits` configures them. A limit this gateway counts already under the same connection,
   * name, window and `per` is kept with its counts (its amounts and `for` take the new config's); any other is new.
   */
  private limitsOf(limits: ReadonlyMap<string, readonly LimitConfig[]>): Map<string, Limit[]> {
    const now = this.now();
    const out = new Map<string, Limit[]>();
    for (const [connection, configs] of limits) {
      if (!configs.length) continue;
      const old = this.byConnection.get(connection) ?? [];
      out.set(
        connection,
        configs.map((c) => {
          const kept = old.find(
            (l) => l.config.name === c.name && l.config.window === c.window && l.config.per === c.per,
          );
          if (kept === undefined) return new Limit(connection, c, now);
          kept.config = c;
          return kept;
        }),
      );
    }
    return out;
  }

  get configured(): boolean {
    return this.byConnection.size > 0;
  }

  /**
   * Read each window's counts back from the store, then (on a store several gateways share) every step again once it
   * is over. Resolves once the first read-back is done: until then, calls are checked against this gateway's counts.
   */
  async start(): Promise<void> {
    this.started = true;
    if (!this.configured) return;
    await this.readBack();
    if (this.closed) return;
    this.schedule();
  }

  /**
   * Take the limits of a reloaded config. A limit that keeps its connection, name, window and `per` keeps what was
   * counted of it (its amounts and `for` take effect at once); any other limit is new, and what its callers used in
   * its window is read back from the store before this resolves. Limits no longer configured are forgotten.
   */
  async reconfigure(limits: ReadonlyMap<string, readonly LimitConfig[]>): Promise<void> {
    this.byConnection = this.limitsOf(limits);
    if (!this.started || this.closed) return;
    // New limits read their whole window; kept ones only what they had not read yet (read-backs take the larger count).
    await this.readBack();
    if (!this.closed) this.schedule();
  }

  /** The periodic read-back and sweep, every step of the shortest limit (at least a second); none without limits. */
  private schedule(): void {
    const shortest = this.configured ? Math.min(...[...this.byConnection.values()].flat().map((l) => l.stepMs)) : 0;
    if (this.timer !== null && shortest === this.timerStepMs) return;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.timerStepMs = shortest;
    if (!this.configured) return;
    const shared = this.options.store.kind === 'postgres';
    let busy = false;
    let failing = false;
    this.timer = setInterval(
      () => {
        // One read-back at a time: a store slow to answer is not asked again meanwhile.
        if (busy) return;
        busy = true;
        this.reading = (shared ? this.readBack() : Promise.resolve())
          .then(
            () => {
              if (failing) this.options.onReadBackRecovered?.();
              failing = false;
            },
            (err: unknown) => {
              // Told once, when read-backs start failing, not every step until the store answers again.
              if (!failing) this.options.onReadBackError?.(err);
              failing = true;
            },
          )
          .finally(() => {
            busy = false;
            this.sweep();
          });
      },
      Math.max(1_000, shortest),
    );
    this.timer.unref();
  }

  /** Forget callers with nothing left in a window. */
  private sweep(): void {
    const now = this.now();
    for (const limits of this.byConnection.values()) for (const limit of limits) limit.sweep(now);
  }

  /**
   * The steps of each limit's window that are over and not yet read back from the store; at start, the whole window
   * (the current step too, and again once it is over).
   */
  private async readBack(): Promise<void> {
    for (const limits of this.byConnection.values()) {
      for (const limit of limits) {
        const current = limit.stepOf(this.now());
        const last = limit.readBackThrough < current - STEPS + 1 ? current : current - 1;
        for (let n = Math.max(limit.readBackThrough + 1, current - STEPS + 1); n <= last; n++) {
          if (this.closed) return;
          const report = await this.options.store.usage(
            {
              by: limit.config.per,
              connection: limit.connection,
              since: n * limit.stepMs,
              until: (n + 1) * limit.stepMs,
              limit: READ_BACK_CALLERS,
            },
            limit.config.cost !== undefined ? this.pricing : undefined,
          );
          const at = limit.stepOf(this.now());
          for (const row of report.items) this.readRow(limit, n, at, row);
          limit.readBackThrough = Math.min(n, current - 1);
        }
      }
    }
  }

  private readRow(limit: Limit, n: number, current: number, row: UsageRow): void {
    // By group, the row of callers in no group counts against nothing, nor do groups the limit does not name.
    if (row.key === null || !limit.countsUnder(row.key)) return;
    const key = limit.config.per === 'connection' ? '' : row.key;
    limit.steps(key).atLeast(n, current, row.inputTokens + row.outputTokens, row.exchanges, row.cost ?? 0);
  }

  /** Why `principal` may not call through `connection` now, or null; a call admitted is counted at once. */
  check(connection: string, principal: Principal): LimitRefusal | null {
    const limits = this.byConnection.get(connection);
    if (!limits) return null;
    const now = this.now();
    for (const limit of limits) {
      if (!limit.applies(principal)) continue;
      for (const key of limit.keysOf(principal)) {
        const refusal = limit.refusal(principal, key, now, this.pricing?.currency);
        if (refusal) return refusal;
      }
    }
    for (const limit of limits) {
      const n = limit.stepOf(now);
      for (const key of limit.keysOf(principal)) limit.steps(key).add(n, n, 0, 1);
    }
    return null;
  }

  /** An exchange ended: its tokens count in the step it started in. */
  completed(e: ExchangeCompleted): void {
    const limits = this.byConnection.get(e.connection);
    if (!limits) return;
    const tokens = e.inputTokens + e.outputTokens + e.cacheReadTokens + e.cacheCreationTokens;
    if (tokens === 0) return;
    const now = this.now();
    const caller: Counted = { subject: e.caller, groups: e.callerGroups };
    const cost = limits.some((l) => l.config.cost !== undefined) ? this.costOf(e) : 0;
    for (const limit of limits) {
      if (limit.config.tokens === undefined && limit.config.cost === undefined) continue;
      for (const key of limit.keysOf(caller))
        limit.steps(key).add(limit.stepOf(now - e.durationMs), limit.stepOf(now), tokens, 0, cost);
    }
  }

  /** What an exchange cost, as reports price it; 0 (and told, once per model) for a model without a price. */
  private costOf(e: ExchangeCompleted): number {
    const price = this.pricing ? priceOf(this.pricing, e.model) : undefined;
    if (price === undefined) {
      if (!this.unpricedTold.has(e.model)) {
        this.unpricedTold.add(e.model);
        this.options.onUnpriced?.(e.model, e.connection);
      }
      return 0;
    }
    return costOf(price, {
      input: e.inputTokens,
      output: e.outputTokens,
      cacheRead: e.cacheReadTokens,
      cacheWrite: e.cacheCreationTokens,
      cacheWrite1h: e.cacheCreation1hTokens,
    });
  }

  /**
   * Each limit with what is used of it now: by every caller with something in its window (the most used first, at
   * most `max` of them), or, with `caller`, by that caller alone (and the connection, for limits it shares; and, with
   * `groups`, the caller's groups, for per-group limits).
   */
  status(options: { caller?: string; groups?: readonly string[] | undefined; max?: number } = {}): LimitStatus[] {
    const now = this.now();
    const out: LimitStatus[] = [];
    for (const limits of this.byConnection.values()) {
      for (const limit of limits) {
        const c = limit.config;
        const keys =
          c.per === 'connection'
            ? ['']
            : options.caller !== undefined
              ? limit.keysOf({ subject: options.caller, groups: options.groups })
              : [...limit.keys()];
        const usage = keys
          .map((key) => {
            const u = limit.usage(key, now);
            return {
              caller: c.per === 'caller' ? key : null,
              ...(c.per === 'group' ? { group: key } : {}),
              tokens: u.tokens,
              requests: u.calls,
              cost: Math.round(u.cost * 1e6) / 1e6,
              refusedUntil: u.until === null ? null : new Date(u.until).toISOString(),
            };
          })
          .filter(
            (u) =>
              u.tokens > 0 || u.requests > 0 || u.cost > 0 || options.caller !== undefined || c.per === 'connection',
          )
          .sort((a, b) => b.tokens - a.tokens || b.requests - a.requests || b.cost - a.cost);
        const max = options.max ?? 1_000;
        out.push({
          connection: limit.connection,
          name: c.name,
          per: c.per,
          windowMs: c.window,
          tokens: c.tokens ?? null,
          requests: c.requests ?? null,
          cost: c.cost ?? null,
          currency: this.pricing?.currency ?? null,
          for: c.for ?? null,
          usage: usage.slice(0, max),
          truncated: usage.length > max,
        });
      }
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.reading.catch(() => undefined);
  }
}
