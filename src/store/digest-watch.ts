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
 */
import type { AuditStore, OverdueDigest } from './audit-store.js';
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
  /** The chains whose digests are overdue. */
  readonly overdue: readonly OverdueDigest[];
  /**
   * Every chain with records no digest of its own covers yet whose writer is running, or which is overdue: how long the
   * oldest of them has waited (ms). A chain that ended on a digest, or whose writer stopped in time, is not here.
   */
  readonly undigested: ReadonlyArray<{ readonly chain: string; readonly ms: number }>;
}

/** The status before the first check, and while the check is off. */
export const NOT_CHECKED: DigestWatchStatus = { checkedAt: null, overdue: [], undigested: [] };

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
  /** Runs already alerted: `<chain>#<first undigested chain_seq>`. */
  private readonly alerted = new Set<string>();
  private last: DigestWatchStatus = NOT_CHECKED;

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
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private async run(): Promise<DigestWatchStatus> {
    const now = this.now();
    const afterMs = this.options.overdueAfterMs;
    const found: Array<{ readonly overdue: OverdueDigest; readonly writerRunning: boolean }> = [];
    const undigested: Array<{ chain: string; ms: number }> = [];
    for (const tail of await this.store.undigestedTails()) {
      const writerRunning = await this.writerRunning(tail.chain, now);
      const end = writerRunning ? Math.max(now, tail.to.at) : tail.to.at;
      const overdue = judgeTail(tail, end, afterMs);
      if (overdue) found.push({ overdue, writerRunning });
      if (overdue || writerRunning) undigested.push({ chain: tail.chain, ms: Math.max(0, end - tail.from.at) });
    }
    this.last = { checkedAt: now, overdue: found.map((f) => f.overdue), undigested };
    await this.alert(found, now).catch((err: unknown) =>
      this.options.log.warn(
        { err, chains: found.map((f) => f.overdue.chain) },
        'could not record the overdue digest alert; retrying at the next check',
      ),
    );
    return this.last;
  }

  /**
   * Whether `chain`'s writer runs. When the store cannot tell now, it is judged by its records alone (as a stopped
   * one): a chain that stopped long ago must not be measured up to now and raise a false alarm meanwhile.
   */
  private async writerRunning(chain: string, now: number): Promise<boolean> {
    if (chain === this.store.chainId) return true;
    const seen = this.stopped.get(chain);
    if (seen !== undefined && now - seen < this.options.overdueAfterMs) return false;
    const live = await this.store.chainIsLive(chain);
    if (live === false) this.stopped.set(chain, now);
    else this.stopped.delete(chain);
    return live === true;
  }

  /**
   * Appends a `digest.overdue` record for each run not yet alerted, here or (as the ledger says) elsewhere: the
   * ledger's alerts are read and the new ones appended in one `appendIfNew`, so two gateways that find the same run at
   * the same moment raise it once.
   */
  private async alert(
    found: ReadonlyArray<{ readonly overdue: OverdueDigest; readonly writerRunning: boolean }>,
    now: number,
  ): Promise<void> {
    const key = (chain: string, fromSeq: number): string => `${chain}#${fromSeq}`;
    const fresh = (): typeof found =>
      found.filter((f) => !this.alerted.has(key(f.overdue.chain, f.overdue.from.chainSeq)));
    if (fresh().length === 0) return;
    // An alert is raised after the run's oldest record was written: those since then are all that can name it.
    const since = Math.min(...fresh().map((f) => f.overdue.from.at));
    const afterMs = this.options.overdueAfterMs;
    let raised: typeof found = [];
    await this.store.appendIfNew([DIGEST_OVERDUE_KIND], since, (existing) => {
      for (const r of existing) {
        const d = parseAlert(r.data);
        if (d) this.alerted.add(key(d.chain, d.fromSeq));
      }
      raised = fresh();
      return raised.map(({ overdue: o, writerRunning }) => {
        const data: DigestOverdueData = {
          chain: o.chain,
          fromSeq: o.from.chainSeq,
          toSeq: o.to.chainSeq,
          since: o.from.at,
          lastDigest: o.lastDigest,
          undigestedMs: o.undigestedMs,
          overdueAfterMs: afterMs,
          writerRunning,
        };
        return { kind: DIGEST_OVERDUE_KIND, at: now, data };
      });
    });
    for (const { overdue: o, writerRunning } of raised) {
      this.alerted.add(key(o.chain, o.from.chainSeq));
      this.options.log.warn(
        { chain: o.chain, fromSeq: o.from.chainSeq, toSeq: o.to.chainSeq, writerRunning },
        `digests overdue: ${describeOverdue(o, afterMs)}`,
      );
    }
  }
}

function parseAlert(text: string): Pick<DigestOverdueData, 'chain' | 'fromSeq'> | undefined {
  try {
    const d = JSON.parse(text) as Partial<DigestOverdueData>;
    return typeof d.chain === 'string' && typeof d.fromSeq === 'number'
      ? { chain: d.chain, fromSeq: d.fromSeq }
      : undefined;
  } catch {
    return undefined; // a changed record: verify reports it
  }
}
