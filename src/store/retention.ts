/**
 * Retention: exchanges are kept for their connection's window after they end, then purged in small batches. Each
 * batch is one transaction that also appends a signed `retention.purged` record saying exactly which chain positions
 * went (with the hashes on either side of each gap) and what every chain's head was, so `verify` passes afterwards
 * and still catches any other deletion — and a run cut between two batches (a crash, a shutdown) leaves a store that
 * verifies, whose rest the next run purges. Legal holds keep a session's or a caller's exchanges out of every purge.
 *
 * A batch holds the store's write lock while it runs — on SQLite synchronously, on the gateway's own thread — and a
 * request is recorded before it is forwarded: so batches are sized by time ({@link BATCH_TARGET_MS}), not by count,
 * and the run pauses between them, so that streams in flight and new requests go on while a large purge runs.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { VigilConfig } from '../config/config-schema.js';
import type { AuditStore, PurgedRun, PurgeRemoval, RetentionQuery, StoredRecord } from './audit-store.js';
import type { SignedFields, SigningKey } from './signing-key.js';

/** Payload of a `retention.purged` record. */
export interface RetentionPurgedData extends SignedFields {
  readonly purgeId: string;
  /** One id per run of `vigil retention run` or scheduled pass; a run's batches share it. */
  readonly runId: string;
  readonly signedAt: number;
  /** The cutoffs applied: connection → epoch ms (exchanges that ended before were due); `*` for other connections. */
  readonly cutoffs: Readonly<Record<string, number>>;
  readonly exchanges: number;
  readonly records: number;
  readonly blobs: number;
  readonly timeRange: { readonly from: number; readonly to: number };
  /** Every removed chain position, as runs of consecutive positions. */
  readonly removed: readonly PurgedRun[];
  /** Every chain's head right after the removal. */
  readonly heads: ReadonlyArray<{ readonly chain: string; readonly chainSeq: number; readonly hash: string }>;
}

/** Retention windows in milliseconds; null keeps forever. */
export interface RetentionPolicy {
  readonly windows: Readonly<Record<string, number | null>>;
  /** For exchanges of connections not (or no longer) configured. */
  readonly defaultWindow: number | null;
  readonly batch: number;
  /** SIEM sinks every due exchange must have been delivered to first: what a SIEM has not received is not purged. */
  readonly sinks: readonly string[];
}

const windowMs = (w: 'forever' | number | undefined): number | null | undefined => (w === 'forever' ? null : w);

/** The policy the config states: each connection's `retention`, else `retention.default`. */
export function retentionPolicy(config: VigilConfig): RetentionPolicy {
  const defaultWindow = windowMs(config.retention.default) ?? null;
  const windows: Record<string, number | null> = {};
  for (const c of config.connections) {
    const w = windowMs(c.retention);
    windows[c.name] = w === undefined ? defaultWindow : w;
  }
  return { windows, defaultWindow, batch: config.retention.batch, sinks: config.siem.sinks.map((k) => k.name) };
}

/** The store query for exchanges due at `now` (at most `limit`), or undefined when every window is `forever`. */
export function retentionQuery(
  policy: RetentionPolicy,
  now: number,
  after?: RetentionQuery['after'],
  limit = policy.batch,
): RetentionQuery | undefined {
  const cutoffs: Record<string, number> = {};
  for (const [name, w] of Object.entries(policy.windows)) if (w !== null) cutoffs[name] = now - w;
  const otherCutoff = policy.defaultWindow === null ? undefined : now - policy.defaultWindow;
  // A connection kept forever must not fall under otherCutoff: it is named, with a cutoff nothing ends before.
  for (const [name, w] of Object.entries(policy.windows))
    if (w === null && otherCutoff !== undefined) cutoffs[name] = -1;
  if (Object.values(cutoffs).every((c) => c < 0) && otherCutoff === undefined) return undefined;
  return { cutoffs, otherCutoff, limit, after, ...(policy.sinks.length ? { deliveredTo: policy.sinks } : {}) };
}

/** What to tell an operator when a purge could not empty SQLite's write-ahead log. */
export const WAL_KEPT_WARNING =
  'the write-ahead log (vigil.db-wal) could not be emptied after the purge: another process kept reading the store; ' +
  'purged pages may stay in it until overwritten — run `vigil retention run` again when it is idle';

/** How long one purge transaction should hold the write lock: about one group commit of a busy gateway. */
export const BATCH_TARGET_MS = 20;
/** Exchanges in a run's first batch, before it knows how long one takes to remove. */
const FIRST_BATCH = 8;

/**
 * How many exchanges the next batch takes, after `size` took `tookMs`: as many as fit {@link BATCH_TARGET_MS} at
 * that pace, growing at most twofold (one batch of small exchanges says little about the next), from 1 to `max`.
 */
export function nextBatchSize(size: number, tookMs: number, max: number): number {
  const fit = Math.floor((size * BATCH_TARGET_MS) / Math.max(tookMs, 0.1));
  return Math.max(1, Math.min(fit, size * 2, max));
}

export interface RetentionRunOptions {
  readonly dryRun?: boolean;
  readonly now?: number;
  /** Told after each batch (what it removed, or for a dry run what it would). */
  readonly onBatch?: (batch: { exchanges: number; records: number; blobs: number }) => void;
  /** Pause between batches so the data path runs and appends get the write lock in between. Default 10 ms. */
  readonly pauseMs?: number;
  /** Stop after the batch in progress (a gateway shutting down); what is left waits for the next run. */
  readonly signal?: AbortSignal;
}

export interface RetentionRunResult {
  readonly dryRun: boolean;
  readonly exchanges: number;
  readonly records: number;
  /** Blobs removed (a dry run cannot tell which blobs other exchanges still share: 0). */
  readonly blobs: number;
  readonly batches: number;
  readonly timeRange: { readonly from: number; readonly to: number } | null;
  /** Exchanges per connection. */
  readonly byConnection: Readonly<Record<string, number>>;
  /** The `retention.purged` records written. */
  readonly purgeRecords: readonly StoredRecord[];
  /** SQLite: after the run the write-ahead log could not be emptied (see AuditStore.finishPurges). */
  readonly walKept: boolean;
}

/**
 * Purges every exchange due under `policy` at `now`, batch by batch, each batch sealed by a signed record; or, with
 * `dryRun`, only reports what would go (in batches of `policy.batch`). Batches are sized to take about
 * {@link BATCH_TARGET_MS} each, at most `policy.batch` exchanges, with `pauseMs` between them.
 */
export async function runRetention(
  store: AuditStore,
  policy: RetentionPolicy,
  key: SigningKey,
  options: RetentionRunOptions = {},
): Promise<RetentionRunResult> {
  const now = options.now ?? Date.now();
  const runId = randomUUID();
  const totals = { exchanges: 0, records: 0, blobs: 0, batches: 0 };
  const byConnection: Record<string, number> = {};
  let timeRange: { from: number; to: number } | null = null;
  const widen = (from: number, to: number): void => {
    timeRange = timeRange ? { from: Math.min(timeRange.from, from), to: Math.max(timeRange.to, to) } : { from, to };
  };
  /** Counts one batch (removed, or for a dry run due) by its exchanges' connections, and tells `onBatch`. */
  const tally = (connections: readonly string[], records: number, blobs: number): void => {
    for (const c of connections) byConnection[c] = (byConnection[c] ?? 0) + 1;
    totals.exchanges += connections.length;
    totals.records += records;
    totals.blobs += blobs;
    totals.batches++;
    options.onBatch?.({ exchanges: connections.length, records, blobs });
  };
  const purgeRecords: StoredRecord[] = [];
  // Each query goes on after the last candidate seen, so exchanges a batch skipped (held meanwhile) are not read
  // again by every later query. Nothing new falls due during a run: the cutoffs are fixed at `now`.
  let after: RetentionQuery['after'];
  let size = Math.min(FIRST_BATCH, policy.batch);

  while (!options.signal?.aborted) {
    const query = retentionQuery(policy, now, after, options.dryRun ? policy.batch : size);
    if (!query) break;
    const candidates = await store.retentionCandidates(query);
    if (candidates.length === 0) break;
    const last = candidates.at(-1)!;
    after = { endedAt: last.endedAt, id: last.id };
    if (options.dryRun) {
      // What the purge would keep, by the ledger's holds as it checks them, against each exchange's own request record
      // (the candidate query goes by the exchange index). The page goes on after the last candidate all the same.
      const held = await store.ledgerHeldExchanges(candidates.map((c) => c.id));
      const due = candidates.filter((c) => !held.has(c.id));
      if (due.length === 0) continue;
      for (const c of due) widen(c.startedAt, c.endedAt);
      tally(
        due.map((c) => c.connection),
        due.reduce((n, c) => n + c.records, 0),
        0,
      );
      continue;
    }
    const connectionOf = new Map(candidates.map((c) => [c.id, c.connection]));
    const signedAt = Date.now();
    const started = performance.now();
    const result = await store.purgeExchanges(
      candidates.map((c) => c.id),
      (removal) => ({
        kind: 'retention.purged',
        at: signedAt,
        data: sealPurge(key, removal, { runId, signedAt, cutoffs: cutoffsOf(query) }),
      }),
    );
    size = nextBatchSize(candidates.length, performance.now() - started, policy.batch);
    // Undefined: everything in the batch came under a hold meanwhile; the next query starts after it.
    if (result) {
      const { removal } = result;
      purgeRecords.push(result.record);
      widen(removal.timeRange.from, removal.timeRange.to);
      tally(
        removal.exchanges.map((id) => connectionOf.get(id) ?? '?'),
        removal.records,
        removal.blobs,
      );
    }
    await new Promise((r) => setTimeout(r, options.pauseMs ?? 10));
  }
  const walKept = purgeRecords.length > 0 && (await store.finishPurges()).walKept === true;
  return { dryRun: options.dryRun ?? false, ...totals, timeRange, byConnection, purgeRecords, walKept };
}

function cutoffsOf(query: RetentionQuery): Record<string, number> {
  return { ...query.cutoffs, ...(query.otherCutoff !== undefined ? { '*': query.otherCutoff } : {}) };
}

/** The signed payload of the `retention.purged` record for one removal. */
export function sealPurge(
  key: SigningKey,
  removal: PurgeRemoval,
  context: { runId: string; signedAt: number; cutoffs: Readonly<Record<string, number>> },
): RetentionPurgedData {
  return key.sign({
    purgeId: randomUUID(),
    runId: context.runId,
    signedAt: context.signedAt,
    cutoffs: context.cutoffs,
    exchanges: removal.exchanges.length,
    records: removal.records,
    blobs: removal.blobs,
    timeRange: removal.timeRange,
    removed: removal.runs,
    heads: removal.heads,
  });
}

export interface RetentionSchedulerOptions {
  readonly everyMs: number;
  readonly log: { info(o: object, msg: string): void; warn(o: object, msg: string): void };
}

/**
 * Runs retention in the gateway on a schedule. With several replicas on one PostgreSQL store, one of them at a time
 * (the `retention` leader) does it.
 */
export class RetentionScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();
  /** How often a pass runs (`retention.schedule`); 0: never. */
  private everyMs: number;
  /** Aborted by close(): a run in progress stops after its batch, so a long purge does not hold up shutdown. */
  private readonly stopping = new AbortController();

  constructor(
    private readonly store: AuditStore,
    private policy: RetentionPolicy,
    private readonly key: SigningKey,
    private readonly options: RetentionSchedulerOptions,
  ) {
    this.everyMs = options.everyMs;
  }

  start(): void {
    if (this.timer !== undefined || this.stopping.signal.aborted) return;
    if (this.everyMs <= 0 || retentionQuery(this.policy, Date.now()) === undefined) return;
    this.timer = setInterval(() => void this.tick(), this.everyMs);
    this.timer.unref();
  }

  /**
   * The windows and schedule of a reloaded config, from the next run on (one under way finishes with those it began
   * with). A schedule that had nothing to purge (every window `forever`) starts when one is set; a new period starts
   * counting now; `everyMs` 0 stops the schedule.
   */
  setPolicy(policy: RetentionPolicy, everyMs: number = this.everyMs): void {
    this.policy = policy;
    if (everyMs !== this.everyMs) {
      this.everyMs = everyMs;
      clearInterval(this.timer);
      this.timer = undefined;
    }
    this.start();
  }

  /** One scheduled pass (also callable directly); never rejects: failures are logged and retried next time. */
  tick(): Promise<unknown> {
    this.running = this.running.then(async () => {
      const signal = this.stopping.signal;
      if (signal.aborted || !(await this.store.tryLeadership('retention'))) return;
      try {
        const r = await runRetention(this.store, this.policy, this.key, { signal });
        if (r.exchanges > 0) {
          this.options.log.info(
            { exchanges: r.exchanges, records: r.records, blobs: r.blobs, batches: r.batches },
            'retention purged expired exchanges',
          );
        }
        if (r.walKept) this.options.log.warn({}, WAL_KEPT_WARNING);
      } catch (err) {
        const denied = (err as { code?: string }).code === '42501';
        this.options.log.warn(
          { err },
          denied
            ? 'retention: this database role may not delete (append-only grants); run `vigil retention run --config <owner config>` as the schema owner instead, and set retention.schedule: 0'
            : 'retention run failed; retrying at the next scheduled run',
        );
      }
    });
    return this.running;
  }

  async close(): Promise<void> {
    this.stopping.abort();
    clearInterval(this.timer);
    await this.running;
  }
}
