/**
 * Remembers what the masker made of strings it already scanned, so the conversation a client resends every turn is
 * scanned once per session, not once per turn (Claude Code resends ~40 KB+ of history on each request).
 *
 * Keys: strings up to {@link HASH_THRESHOLD} characters are their own key (V8 hashes them once and the memo keeps a
 * reference to a string the caller already holds); longer ones are keyed by SHA-256 of their text, so the memo does
 * not pin large tool results in memory and a lookup costs one native hash instead of a scan. Entries are evicted
 * oldest first, by count and by the characters of masked text they hold.
 */
import { hash } from 'node:crypto';
import { CappedMap } from '../../capped-map.js';

/** Strings longer than this are keyed by hash. */
export const HASH_THRESHOLD = 2048;
/** Strings shorter than this are scanned directly: a lookup costs about as much as the scan. */
export const MIN_MEMO_LENGTH = 24;

/** What the masker made of one string. */
export interface MemoEntry {
  readonly length: number;
  /**
   * The masked string, or null when masking changed nothing: the memo then holds no copy of the text (a long tool
   * result, keyed by its hash, is not kept alive by the memo).
   */
  readonly value: string | null;
  /** Findings by type. */
  readonly counts: readonly (readonly [string, number])[];
}

/** Characters an entry keeps alive beyond what the caller holds: the key, and the masked copy when it differs. */
function weight(e: MemoEntry, key: string): number {
  return key.length + (e.value !== null ? e.value.length : 0);
}

export class MaskingMemo {
  private readonly entries: CappedMap<string, MemoEntry>;
  /** The masker the entries belong to: a memo shared by two configurations would hand out the wrong masks. */
  owner: object | undefined;
  hits = 0;
  misses = 0;

  constructor(
    readonly maxEntries: number,
    readonly maxChars: number,
    /** Shorter strings are scanned every time, not remembered. */
    readonly minLength: number = MIN_MEMO_LENGTH,
  ) {
    // Evicted oldest first, by count and by the characters held; one entry heavier than maxChars is kept alone.
    this.entries = new CappedMap<string, MemoEntry>(maxEntries, maxChars, weight);
  }

  /** Characters this memo keeps alive (keys, and masked copies where they differ). */
  get heldChars(): number {
    return this.entries.weight;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Bind to a masker; entries made by another one are dropped. */
  bind(owner: object): void {
    if (this.owner !== owner) {
      this.entries.clear();
      this.owner = owner;
    }
  }

  key(text: string): string {
    return text.length <= HASH_THRESHOLD ? text : `\0sha256:${hash('sha256', text, 'base64')}`;
  }

  get(key: string, length: number): MemoEntry | undefined {
    const e = this.entries.get(key);
    // The length check keeps a short string that happens to spell a hash key from being taken for the long one.
    if (e === undefined || e.length !== length) {
      this.misses++;
      return undefined;
    }
    // Not moved to the back: a hit costs one lookup. Eviction is oldest first; for a conversation, where what was
    // seen on turn 1 is resent on every turn, that keeps what least-recently-used would while there is room, and
    // once full it may evict a string still in use, which is then scanned once more.
    this.hits++;
    return e;
  }

  set(key: string, entry: MemoEntry): void {
    this.entries.set(key, entry);
  }

  clear(): void {
    this.entries.clear();
  }
}

/**
 * A memo for one session. `maxEntries` bounds the number of strings remembered, `maxChars` the text held
 * (default 16 Mi characters).
 */
export function createMaskingMemo(
  maxEntries: number,
  maxChars = 16 * 1024 * 1024,
  minLength = MIN_MEMO_LENGTH,
): MaskingMemo {
  if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError('maxEntries must be a positive integer');
  return new MaskingMemo(maxEntries, maxChars, minLength);
}
