/** Admin API and CLI filter parameters: what parses, and what is refused with the parameter named. */
import { describe, expect, it } from 'vitest';
import { describeFilter, filterFrom, pageFrom } from '../../../src/admin/query-params.js';

const from = (q: string) => {
  const params = new URLSearchParams(q);
  return (n: string) => params.get(n);
};

describe('filters', () => {
  it('reads every filter, times as ISO 8601 or epoch milliseconds', () => {
    expect(
      filterFrom(
        from(
          'caller=alice&group=ml&connection=c&model=m&outcome=in_progress&masking=email&since=2025-01-15T09:00:00Z&until=1736935200000',
        ),
      ),
    ).toEqual({
      caller: 'alice',
      group: 'ml',
      connection: 'c',
      model: 'm',
      outcome: 'in_progress',
      masking: 'email',
      since: Date.UTC(2025, 0, 15, 9),
      until: 1736935200000,
    });
    expect(Object.values(filterFrom(from('caller=&limit=3'))).every((v) => v === undefined)).toBe(true);
  });

  it('refuses what does not parse, naming the parameter', () => {
    expect(() => filterFrom(from('outcome=great'))).toThrow(/^outcome: expected one of ok, /);
    expect(() => filterFrom(from('since=last+week'))).toThrow(/^since: expected an ISO 8601 time/);
    expect(() => pageFrom(from('limit=0'))).toThrow(/^limit: expected an integer from 1 to 1000/);
    expect(() => pageFrom(from('limit=2.5'))).toThrow(/^limit/);
    expect(pageFrom(from('limit=1000&cursor=abc'))).toEqual({ limit: 1000, cursor: 'abc' });
  });

  it('describes a filter as a query string for the access log', () => {
    expect(describeFilter({ caller: 'alice', group: undefined, since: 5 })).toBe('caller=alice&since=5');
  });
});
