/**
 * Promises still pending, each kept until it settles: for a close() that waits on work begun before it (see
 * `settled`), and a count of that work in flight.
 */
export class PendingPromises {
  private readonly promises = new Set<Promise<unknown>>();

  /** Keep `promise` until it settles; returns it. */
  track<T>(promise: Promise<T>): Promise<T> {
    this.promises.add(promise);
    const forget = (): void => void this.promises.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  /** How many are still pending. */
  get size(): number {
    return this.promises.size;
  }

  /** Resolves once every promise pending now has settled (whether fulfilled or rejected). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.promises]);
  }
}
