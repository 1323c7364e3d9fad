/**
 * The running gateway's watch on every chain's digests (see digest-overdue.ts for when they are overdue). Each check
 * asks the store for the chains whose last record is not a digest, judges each — up to now when its writer still runs,
 * up to its last record when it stopped — keeps what it found for `/metrics`, and appends a `digest.overdue` record for
 * each chain newly overdue, which the outbox streams to the SIEM as a `ledger.digest_overdue` alert.
 *
 * One alert per undigested run of a chain (its first undigested record), whichever gateway raises it and however often
 * they restart: the watch reads the alerts the ledger already holds and appends its own in one `appendIfNew`, which
 * two gateways that find the same run at the same moment take one after the other. Every gateway watches every chain,
 * its own included: a gateway whose digests fail to append most likely fails to append the alert too, and then its
 * peers raise it — and its own metrics still show it.
 *
 * A chain whose writer is gone never signs again: overdue, it would stay overdue for good, and an alarm that never
 * clears hides the next one. So once its writer is known gone and an alert of the run names the chain's last record
 * (one raised while the writer ran and named an earlier record does not: then one more alert says it stopped), the
 * chain is counted as `stopped` instead — still an undigested tail to `vigil verify`, which warns about it for good.
 * Known gone means, on PostgreSQL, its chain lock seen free at checks at least `store.postgres.reconnect_grace` apart:
 * a writer whose lock connection was lost (the server restarted) holds it again within that grace.
 * Its records stay tamper-evident: the alert is a new record on the raising gateway's chain, whose next digest commits
 * to every other chain's head that moved (see digests.ts), so cutting or rewriting that tail fails verify.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { AuditStore, OverdueDigest, UndigestedTail } from './audit-store.js';
import { describeOverdue, DIGEST_OVERDUE_KIND, judgeTail, type DigestOverdueData } from './digest-overdue.js';

export interface DigestWatchOptions {
  /** `signing.overdue_after`, in ms (> 0). */
  readonly overdueAfterMs: number;
  /** How often `start()` checks; default a third of `overdueAfterMs` (at least a second). */
  readonly everyMs?: number;
  /** The clock (epoch ms); tests move it instead of waiting. */
  readonly now?: () => number;
  readonly log: { warn(o: object, msg: string): void };
}

/** What the last check found. */
export interface DigestWatchStatus {
  /** When it ran (epoch ms); null before the first check. */
  readonly checkedAt: number | null;
  /** The chains whose digests are overdue, but for those in `stopped`: an alarm. */
  readonly overdue: readonly OverdueDigest[];
  /**
   * The overdue chains whose writer is gone, each alerted by an alert that names its last record: what `vigil verify`
   * warns about for good, no longer an alarm.
   */
  readonly stopped: readonly OverdueDigest[];
  /**
   * Every chain with records no digest of its own covers yet whose writer is running, or which is overdue and not
   * stopped: how long the oldest of them has waited (ms). A chain that ended on a digest, or whose writer stopped in
   * time, is not here.
   */
  readonly undigested: ReadonlyArray<{ readonly chain: string; readonly ms: number }>;
}

/** The status before the first check, and while the check is off. */
export const NOT_CHECKED: DigestWatchStatus = { checkedAt: null, overdue: [], stopped: [], undigested: [] };

/**
 * Whether a chain's writer runs, is gone, or cannot be told now (PostgreSQL, its lock connection being made again);
 * `free` while a check settles it: its lock was seen free, for less than a writer takes to connect again.
 */
type Writer = 'running' | 'gone' | 'unknown' | 'free';

/** One undigested tail as a check judged it. */
interface Judged {
  readonly tail: UndigestedTail;
  readonly writer: Writer;
  /** Up to when it was measured: now, when its writer runs; else its last record. */
  readonly end: number;
  readonly overdue: OverdueDigest | undefined;
}

type Overdue = Judged & { readonly overdue: OverdueDigest };

export class DigestWatch {
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();
  /**
   * Chains whose writer was seen stopped, and when. A stopped writer never comes back (each process writes a chain of
   * its own), but a running one can look stopped for a moment (its lock connection being made again): so the answer
   * is asked again once it is `overdueAfterMs` old, which bounds how late a writer that then stops signing is found.
   */
  private readonly stopped = new Map<string, number>();
  /**
   * Chains whose writer's lock was seen free, and since when, while it may still be connecting again
   * ({@link AuditStore.writerReconnectMs}): the writer counts as gone only once its lock has been free this long.
   */
  private readonly freeSince = new Map<string, number>();
  /**
   * Runs already alerted, here or (as the ledger said) elsewhere: `<chain>#<first undigested chain_seq>` → the last
   * record an alert of it named (the largest `toSeq`). Only runs still undigested are kept.
   */
  private readonly alerted = new Map<string, number>();
  private last: DigestWatchStatus = NOT_CHECKED;
  /** Aborted by close(): a check waiting out a reconnect grace stops waiting. */
  private readonly closing = new AbortController();

  constructor(
    private readonly store: AuditStore,
    private readonly options: DigestWatchOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  start(): void {
    if (this.timer) return;
    const every = this.options.everyMs ?? Math.max(1000, Math.round(this.options.overdueAfterMs / 3));
    this.timer = setInterval(() => {
      this.check().catch((err: unknown) =>
        this.options.log.warn({ err }, 'could not check the chains for overdue digests; retrying at the next check'),
      );
    }, every);
    // A pending check must not keep a process (or a test) alive.
    this.timer.unref();
  }

  /** What the last check found (for `/metrics`: read when scraped, never a query). */
  status(): DigestWatchStatus {
    return this.last;
  }

  /** Looks now; resolves with what it found. Calls are serialised. */
  check(): Promise<DigestWatchStatus> {
    const run = this.running.then(() => this.run());
    this.running = run.catch(() => undefined);
    return run;
  }

  /** Stops the timer and waits for a check under way. */
  async close(): Promise<void> {
    this.closing.abort();
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private async run(): Promise<DigestWatchStatus> {
    const now = this.now();
    const judged: Judged[] = [];
    for (const tail of await this.store.undigestedTails()) {
      judged.push(this.judge(tail, await this.writer(tail.chain, now), now));
    }
    await this.confirmFree(judged, now);
    if (this.closing.signal.aborted) return this.last;
    this.forgetAllBut(judged.map((j) => j.tail));
    const due = judged.filter((j): j is Overdue => j.overdue !== undefined && !this.alertedAsItIs(j));
    await this.alert(due, now).catch((err: unknown) =>
      this.options.log.warn(
        { err, chains: due.map((j) => j.tail.chain) },
        'could not record the overdue digest alert; retrying at the next check',
      ),
    );
    const overdue: OverdueDigest[] = [];
    const stopped: OverdueDigest[] = [];
    const undigested: Array<{ chain: string; ms: number }> = [];
    for (const j of judged) {
      const isStopped = j.overdue !== undefined && j.writer === 'gone' && this.alertedAsItIs(j);
      if (j.overdue) (isStopped ? stopped : overdue).push(j.overdue);
      if ((j.overdue && !isStopped) || j.writer === 'running') {
        undigested.push({ chain: j.tail.chain, ms: Math.max(0, j.end - j.tail.from.at) });
      }
    }
    this.last = { checkedAt: now, overdue, stopped, undigested };
    return this.last;
  }

  /**
   * Whether `chain`'s writer runs. When the store cannot tell now, it is judged by its records alone (as a stopped
   * one): a chain that stopped long ago must not be measured up to now and raise a false alarm meanwhile. But it is
   * not taken for gone either: only a writer known gone leaves the alarm.
   */
  private async writer(chain: string, now: number): Promise<Writer> {
    if (chain === this.store.chainId) return 'running';
    const seen = this.stopped.get(chain);
    if (seen !== undefined && now - seen < this.options.overdueAfterMs) return 'gone';
    const live = await this.store.chainIsLive(chain);
    if (live === undefined) return 'unknown';
    if (live) {
      this.stopped.delete(chain);
      this.freeSince.delete(chain);
      return 'running';
    }
    // A lock seen free may be a running writer's, lost with its connection (PostgreSQL restarted): it is gone only
    // once its lock has been free this long (see confirmFree).
    const free = this.freeSince.get(chain) ?? now;
    this.freeSince.set(chain, free);
    if (now - free < this.store.writerReconnectMs) return 'free';
    this.stopped.set(chain, now);
    return 'gone';
  }

  /**
   * Settles the writers seen free for less than the store's reconnect grace. Where it changes nothing (a tail its
   * records alone do not make overdue) such a writer is judged by its records, as one that cannot be told. Where it
   * does, the check waits out the rest of the grace and looks again, as recovery does (recorder.ts): a writer whose
   * lock connection came back holds its lock again by then, and one still free is gone.
   */
  private async confirmFree(judged: Judged[], now: number): Promise<void> {
    const grace = this.store.writerReconnectMs;
    const matters = (j: Judged) => j.writer === 'free' && j.overdue !== undefined;
    const waits = judged.filter(matters).map((j) => grace - (now - (this.freeSince.get(j.tail.chain) ?? now)));
    if (waits.length > 0 && !(await sleep(Math.max(...waits), this.closing.signal))) return;
    for (const [i, j] of judged.entries()) {
      if (j.writer !== 'free') continue;
      let writer: Writer = 'unknown';
      if (matters(j)) {
        const live = await this.store.chainIsLive(j.tail.chain);
        writer = live === undefined ? 'unknown' : live ? 'running' : 'gone';
        if (live) this.freeSince.delete(j.tail.chain);
        if (live === false) this.stopped.set(j.tail.chain, now);
      }
      judged[i] = this.judge(j.tail, writer, now);
    }
  }

  private judge(tail: UndigestedTail, writer: Writer, now: number): Judged {
    const end = writer === 'running' ? Math.max(now, tail.to.at) : tail.to.at;
    return { tail, writer, end, overdue: judgeTail(tail, end, this.options.overdueAfterMs) };
  }

  /**
   * Whether the run has the alert it calls for: any, while its writer runs (or may); one naming its last record, once
   * its writer is gone — the last word on a chain that will not sign again.
   */
  private alertedAsItIs(j: Judged): boolean {
    const named = this.alerted.get(runKey(j.tail.chain, j.tail.from.chainSeq));
    return named !== undefined && (j.writer !== 'gone' || named >= j.tail.to.chainSeq);
  }

  /** Drops what is remembered of chains and runs no longer undigested: signed since, they are over. */
  private forgetAllBut(tails: readonly UndigestedTail[]): void {
    const chains = new Set(tails.map((t) => t.chain));
    const runs = new Set(tails.map((t) => runKey(t.chain, t.from.chainSeq)));
    for (const chain of this.stopped.keys()) if (!chains.has(chain)) this.stopped.delete(chain);
    for (const chain of this.freeSince.keys()) if (!chains.has(chain)) this.freeSince.delete(chain);
    for (const run of this.alerted.keys()) if (!runs.has(run)) this.alerted.delete(run);
  }

  /**
   * Appends a `digest.overdue` record for each of `due` the ledger has no such alert of yet, here or elsewhere: the
   * ledger's alerts are read and the new ones appended in one `appendIfNew`, so two gateways that find the same run at
   * the same moment raise it once.
   */
  private async alert(due: readonly Overdue[], now: number): Promise<void> {
    if (due.length === 0) return;
    // An alert is raised after the run's oldest record was written: those since then are all that can name it.
    const since = Math.min(...due.map((j) => j.tail.from.at));
    const afterMs = this.options.overdueAfterMs;
    let raised: Overdue[] = [];
    await this.store.appendIfNew([DIGEST_OVERDUE_KIND], since, (existing) => {
      for (const r of existing) {
        const d = parseAlert(r.data);
        if (d) this.noteAlert(d);
      }
      raised = due.filter((j) => !this.alertedAsItIs(j));
      return raised.map(({ overdue: o, writer }) => {
        const data: DigestOverdueData = {
          chain: o.chain,
          fromSeq: o.from.chainSeq,
          toSeq: o.to.chainSeq,
          since: o.from.at,
          lastDigest: o.lastDigest,
          undigestedMs: o.undigestedMs,
          overdueAfterMs: afterMs,
          writerRunning: writer === 'running',
        };
        return { kind: DIGEST_OVERDUE_KIND, at: now, data };
      });
    });
    for (const { overdue: o, writer } of raised) {
      this.noteAlert({ chain: o.chain, fromSeq: o.from.chainSeq, toSeq: o.to.chainSeq });
      this.options.log.warn(
        { chain: o.chain, fromSeq: o.from.chainSeq, toSeq: o.to.chainSeq, writerRunning: writer === 'running' },
        `digests overdue${writer === 'gone' ? ', and its writer is gone' : ''}: ${describeOverdue(o, afterMs)}`,
      );
    }
  }

  private noteAlert(d: AlertedRun): void {
    const key = runKey(d.chain, d.fromSeq);
    this.alerted.set(key, Math.max(this.alerted.get(key) ?? 0, d.toSeq));
  }
}

/** Waits `ms`; false when `signal` aborted it. */
async function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return delay(ms, true, { signal, ref: false }).catch(() => false);
}

const runKey = (chain: string, fromSeq: number): string => `${chain}#${fromSeq}`;

type AlertedRun = Pick<DigestOverdueData, 'chain' | 'fromSeq' | 'toSeq'>;

function parseAlert(text: string): AlertedRun | undefined {
  try {
    const d = JSON.parse(text) as Partial<DigestOverdueData>;
    return typeof d.chain === 'string' && typeof d.fromSeq === 'number' && typeof d.toSeq === 'number'
      ? { chain: d.chain, fromSeq: d.fromSeq, toSeq: d.toSeq }
      : undefined;
  } catch {
    return undefined; // a changed record: verify reports it
  }
}
