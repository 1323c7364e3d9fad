/**
 * Signed digests: every so often (and at shutdown) each writing process appends a `digest.signed` record to its own
 * chain, signing the hash of the record right before it and linking to its previous digest's signature — CloudTrail's
 * log-file validation applied to a hash chain. Someone who rewrites records and recomputes every hash after them
 * cannot produce the signatures, so `vigil verify --public-key` catches what hashes alone cannot.
 *
 * A digest also commits to the heads of the other chains (those that moved since this process's previous digest),
 * as `chain.opened` does when a chain begins: cutting off the tail of a chain is then caught up to the last head any
 * later digest of another chain saw, not only up to the last chain that opened. What no later record commits to —
 * the newest records of the chain written last — can only be pinned outside the store: the SIEM receives every
 * digest (`ledger.digest` events), and `vigil verify --anchor` checks the store still holds the one it names.
 */
import type { AuditStore, ChainTip, StoredRecord } from './audit-store.js';
import type { ChainHead } from './ledger.js';
import type { SignedFields, SigningKey } from './signing-key.js';

/** Payload of a `digest.signed` record. The digest at chain position N always covers records fromSeq..N-1. */
export interface DigestSignedData extends SignedFields {
  readonly chain: string;
  readonly fromSeq: number;
  readonly toSeq: number;
  /** Hash of record `toSeq` (the digest record's own prevHash). */
  readonly headHash: string;
  /** Signature of this chain's previous digest; null for its first. */
  readonly previousSignature: string | null;
  readonly signedAt: number;
  /**
   * The heads of the other chains that moved since this chain's previous digest (all of them at its first), when it
   * was signed. Absent in digests written before digests carried heads.
   */
  readonly heads?: readonly ChainHead[];
}

export interface DigesterOptions {
  /** How often to sign what the chain gained since the last digest. 0: only when `digestNow()` is called. */
  readonly intervalMs: number;
  /** Told about a digest that could not be written (the next tick tries again). */
  readonly onError?: (err: unknown) => void;
}

/** Appends signed digests to this process's chain. */
export class Digester {
  private last: { readonly toSeq: number; readonly signature: string } | null = null;
  /** The other chains' heads the last digest committed to (with those before it): chain → chainSeq. */
  private committed = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: AuditStore,
    private readonly key: SigningKey,
    private readonly options: DigesterOptions,
  ) {}

  start(): void {
    if (this.options.intervalMs <= 0 || this.timer) return;
    this.timer = setInterval(() => {
      this.digestNow().catch((err: unknown) => this.options.onError?.(err));
    }, this.options.intervalMs);
    // A pending digest must not keep a CLI process (or a test) alive.
    this.timer.unref();
  }

  /**
   * Signs the records appended since the previous digest, if any. Resolves with the digest record, or undefined when
   * the chain has nothing new (or was never opened). Calls are serialised.
   */
  digestNow(now = Date.now()): Promise<StoredRecord | undefined> {
    const run = this.running.then(async () => {
      let signed: DigestSignedData | undefined;
      const record = await this.store.appendAtTip((tip, heads) => {
        const built = this.build(tip, heads, now);
        signed = built?.data;
        return built;
      });
      if (record && signed) {
        this.last = { toSeq: signed.toSeq, signature: signed.signature };
        for (const h of signed.heads ?? []) this.committed.set(h.chain, h.chainSeq);
      }
      return record;
    });
    this.running = run.catch(() => undefined);
    return run;
  }

  private build(
    tip: ChainTip | null,
    heads: readonly ChainHead[],
    now: number,
  ): { kind: string; at: number; data: DigestSignedData } | undefined {
    // Nothing new since the last digest (the tip is that digest), or no chain yet: nothing to sign.
    // (A digest lands right after what it signs: at toSeq + 1.) Other chains moving alone do not call for one: their
    // own digests commit to this chain, and a chain that stopped is committed to by its final digest.
    if (tip === null || (this.last !== null && tip.chainSeq === this.last.toSeq + 1)) return undefined;
    const chain = this.store.chainId;
    const data = this.key.sign({
      chain,
      fromSeq: this.last ? this.last.toSeq + 1 : 1,
      toSeq: tip.chainSeq,
      headHash: tip.hash,
      previousSignature: this.last?.signature ?? null,
      signedAt: now,
      heads: heads.filter((h) => h.chain !== chain && this.committed.get(h.chain) !== h.chainSeq),
    });
    return { kind: 'digest.signed', at: now, data };
  }

  /** Stops the timer without signing, once a digest under way has landed (or failed). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** Stops the timer and signs what is left (the final digest of this process's chain). */
  async close(): Promise<void> {
    await this.stop();
    await this.digestNow();
  }
}
