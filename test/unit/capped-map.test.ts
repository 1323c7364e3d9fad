/**
 * The bounded map behind the masking memo, the request bodies each conversation shares with its next request, the
 * stores' reference bases and the redactor's least-recently-used lookups: what it keeps, what it evicts first, and
 * that its weight stays the sum of what it holds.
 */
import { describe, expect, it } from 'vitest';
import { CappedMap } from '../../src/capped-map.js';

const byLength = (v: string): number => v.length;

describe('CappedMap', () => {
  it('evicts the oldest entries once it holds more than maxEntries', () => {
    const m = new CappedMap<string, string>(3, Infinity, byLength);
    for (const k of ['a', 'b', 'c', 'd', 'e']) m.set(k, k);
    expect(m.size).toBe(3);
    expect([m.get('a'), m.get('b'), m.get('c'), m.get('d'), m.get('e')]).toEqual([undefined, undefined, 'c', 'd', 'e']);
  });

  it('evicts the oldest entries until their total weight is within maxWeight, and keeps the weight exact', () => {
    const m = new CappedMap<string, string>(Infinity, 10, byLength);
    m.set('a', 'xxxx');
    m.set('b', 'xxxx');
    expect(m.weight).toBe(8);
    m.set('c', 'xxxxxxx'); // 15: 'a' goes (11), then 'b' (7)
    expect([m.get('a'), m.get('b'), m.get('c')]).toEqual([undefined, undefined, 'xxxxxxx']);
    expect(m.weight).toBe(7);
    expect(m.size).toBe(1);
  });

  it('weighs an entry by its key too when asked', () => {
    const m = new CappedMap<string, string>(Infinity, 10, (v, k) => k.length + v.length);
    m.set('key', 'xx');
    m.set('other', 'x'); // 5 + 6: 'key' goes
    expect(m.get('key')).toBeUndefined();
    expect(m.weight).toBe(6);
  });

  it('does not let get refresh an entry: the first set is the first out', () => {
    const m = new CappedMap<string, string>(2, Infinity, byLength);
    m.set('a', 'A');
    m.set('b', 'B');
    expect(m.get('a')).toBe('A');
    m.set('c', 'C');
    expect(m.get('a')).toBeUndefined();
    expect(m.get('b')).toBe('B');
  });

  it('lets use refresh an entry: least recently used first out', () => {
    const m = new CappedMap<string, string>(2, Infinity, byLength);
    m.set('a', 'A');
    m.set('b', 'B');
    expect(m.use('a')).toBe('A');
    expect(m.use('missing')).toBeUndefined();
    m.set('c', 'C');
    expect(m.get('a')).toBe('A');
    expect(m.get('b')).toBeUndefined();
  });

  it('moves a key set again to the back and counts only its new weight', () => {
    const m = new CappedMap<string, string>(2, Infinity, byLength);
    m.set('a', 'A');
    m.set('b', 'B');
    m.set('a', 'AAAA');
    expect(m.weight).toBe(5);
    m.set('c', 'C');
    expect(m.get('b')).toBeUndefined();
    expect(m.get('a')).toBe('AAAA');
    expect(m.weight).toBe(5);
  });

  it('keeps an entry heavier than maxWeight alone, until the next set', () => {
    const m = new CappedMap<string, string>(Infinity, 4, byLength);
    m.set('a', 'xx');
    m.set('big', 'xxxxxxxx');
    expect(m.size).toBe(1);
    expect(m.get('big')).toBe('xxxxxxxx');
    m.set('b', 'x');
    expect(m.get('big')).toBeUndefined();
    expect(m.weight).toBe(1);
  });

  it('takes a deleted or cleared entry out of the weight', () => {
    const m = new CappedMap<string, string>(10, 100, byLength);
    m.set('a', 'xxx');
    m.set('b', 'xx');
    expect(m.delete('a')).toBe(true);
    expect(m.delete('a')).toBe(false);
    expect(m.weight).toBe(2);
    m.clear();
    expect([m.size, m.weight]).toEqual([0, 0]);
  });

  it('offer keeps an entry that fits, and forgets the key for one heavier than maxWeight on its own', () => {
    const m = new CappedMap<string, string>(Infinity, 5, byLength);
    expect(m.offer('a', 'xxx')).toBe(true);
    m.set('b', 'x');
    expect(m.offer('a', 'xxxxxx')).toBe(false);
    expect([m.get('a'), m.get('b'), m.weight]).toEqual([undefined, 'x', 1]);
  });

  it('refuses a bound by count below one', () => {
    expect(() => new CappedMap<string, string>(0, 10, byLength)).toThrow(RangeError);
    expect(() => new CappedMap<string, string>(Number.NaN, 10, byLength)).toThrow(RangeError);
  });
});
