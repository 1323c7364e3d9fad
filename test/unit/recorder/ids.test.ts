import { describe, expect, it } from 'vitest';
import { newExchangeId } from '../../../src/recorder/ids.js';

describe('newExchangeId', () => {
  it('never repeats the random part, across refills of its random pool', () => {
    // 2,000 ids draw 16,000 random bytes: the 4 KB pool is refilled three times.
    const at = Date.UTC(2026, 10, 23);
    const ids = Array.from({ length: 2000 }, () => newExchangeId(at));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^ex_[0-9a-z]{9}[0-9a-f]{16}$/);
    // Same millisecond: the random parts differ in more than a counter would (no sequential pattern).
    const tails = ids.map((id) => id.slice(-16));
    expect(new Set(tails.map((t) => t.slice(0, 8))).size).toBeGreaterThan(1990);
  });

  it('sorts by time', () => {
    const a = newExchangeId(Date.UTC(2026, 0, 1));
    const b = newExchangeId(Date.UTC(2026, 0, 1, 0, 0, 0, 1));
    const c = newExchangeId(Date.UTC(2030, 0, 1));
    expect([c, a, b].sort()).toEqual([a, b, c]);
  });
});
