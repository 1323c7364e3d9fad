import { describe, expect, it } from 'vitest';
import { PendingPromises } from '../../src/pending-promises.js';

describe('PendingPromises', () => {
  it('keeps a promise until it settles, fulfilled or rejected, and returns it as given', async () => {
    const pending = new PendingPromises();
    let resolve!: (v: number) => void;
    let reject!: (e: Error) => void;
    const a = new Promise<number>((r) => (resolve = r));
    const b = new Promise<number>((_, r) => (reject = r));
    expect(pending.track(a)).toBe(a);
    expect(pending.track(b)).toBe(b);
    expect(pending.size).toBe(2);
    resolve(1);
    reject(new Error('no'));
    await pending.settled();
    await b.catch(() => undefined);
    expect(pending.size).toBe(0);
  });
});
