/** Keeps `promise` in `set` until it settles, fulfilled or rejected (what a close() then waits for), and returns it. */
export function track<P extends Promise<unknown>>(set: Set<Promise<unknown>>, promise: P): P {
  set.add(promise);
  const forget = (): void => void set.delete(promise);
  promise.then(forget, forget);
  return promise;
}
