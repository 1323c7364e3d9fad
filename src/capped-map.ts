/**
 * A Map that remembers recent entries within two bounds: how many entries it holds, and their total weight (the bytes
 * or characters they keep alive, as the caller weighs them). Setting an entry makes it the newest and then evicts the
 * oldest ones until both bounds hold again; the entry just set is never evicted, so one heavier than `maxWeight` on
 * its own is kept alone until the next `set` (callers that would rather not keep it use `offer`).
 *
 * Recency is by when an entry was last set. `get` leaves it where it is, so a hit costs one lookup: for a conversation,
 * where what was seen on turn 1 is resent on every turn, oldest first keeps what least-recently-used would while there
 * is room. `use` moves a hit to the back, for least-recently-used eviction.
 *
 * Nothing is allocated per call beyond what a Map does: the weight of an entry is computed again when it goes, not
 * stored with it.
 */
export class CappedMap<K, V extends NonNullable<unknown>> {
  private readonly map = new Map<K, V>();
  private total = 0;

  /**
   * @param maxEntries - entries kept at most (a positive integer, or Infinity).
   * @param maxWeight - total weight kept at most (Infinity for a bound by count only).
   * @param weigh - an entry's weight; must be the same each time it is asked for the same entry.
   */
  constructor(
    readonly maxEntries: number,
    readonly maxWeight: number,
    private readonly weigh: (value: V, key: K) => number,
  ) {
    if (!(maxEntries >= 1)) throw new RangeError('maxEntries must be at least 1');
  }

  get size(): number {
    return this.map.size;
  }

  /** The total weight of the entries held. */
  get weight(): number {
    return this.total;
  }

  /** The entry for `key`, leaving its place in the eviction order as it is. */
  get(key: K): V | undefined {
    return this.map.get(key);
  }

  /** The entry for `key`, made the newest: least-recently-used eviction. */
  use(key: K): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }

  /** Set `key` as the newest entry, then evict the oldest until both bounds hold (never this one). */
  set(key: K, value: V): void {
    this.delete(key);
    this.map.set(key, value);
    this.total += this.weigh(value, key);
    if (this.map.size <= this.maxEntries && this.total <= this.maxWeight) return;
    for (const [k, v] of this.map) {
      if (k === key || (this.map.size <= this.maxEntries && this.total <= this.maxWeight)) break;
      this.map.delete(k);
      this.total -= this.weigh(v, k);
    }
  }

  /**
   * {@link set}, unless the entry alone outweighs `maxWeight`: then it is not kept, and neither is what `key` held
   * before (it is no longer the latest for `key`). Returns whether it was kept.
   */
  offer(key: K, value: V): boolean {
    if (this.weigh(value, key) > this.maxWeight) {
      this.delete(key);
      return false;
    }
    this.set(key, value);
    return true;
  }

  delete(key: K): boolean {
    const old = this.map.get(key);
    if (old === undefined) return false;
    this.map.delete(key);
    this.total -= this.weigh(old, key);
    return true;
  }

  clear(): void {
    this.map.clear();
    this.total = 0;
  }
}
