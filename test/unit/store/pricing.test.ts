/** `pricing:` as the config declares it, and the rates reports price by (pricing.ts). */
import { describe, expect, it } from 'vitest';
import { pricingFrom, pricingSchema } from '../../../src/store/pricing.js';

describe('pricing', () => {
  it('derives the cache rates Anthropic lists from input when they are not given', () => {
    const p = pricingFrom(pricingSchema.parse({ models: [{ model: 'claude-sonnet-4-5*', input: 3, output: 15 }] }))!;
    expect(p).toEqual({
      currency: 'USD',
      models: [
        { model: 'claude-sonnet-4-5*', input: 3, output: 15, cacheWrite: 3.75, cacheWrite1h: 6, cacheRead: 0.3 },
      ],
    });
    // Given rates win, 0 included (a model whose cache reads are free under a contract).
    const q = pricingFrom(
      pricingSchema.parse({ models: [{ model: 'm', input: 10, output: 50, cache_read: 0, cache_write: 12.5 }] }),
    )!;
    expect(q.models[0]).toMatchObject({ cacheRead: 0, cacheWrite: 12.5, cacheWrite1h: 20 });
    expect(pricingFrom(undefined)).toBeUndefined();
  });

  it('refuses what it could not apply: a * inside an id, a lone *, a quote, negative or missing rates, a currency', () => {
    const problems = (input: unknown) =>
      pricingSchema.safeParse(input).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
    expect(problems({ models: [{ model: 'claude-*-4-5', input: 1, output: 1 }] })[0]).toMatch(
      /^models\.0\.model: must be a model id, or a prefix of one ending in \*/,
    );
    expect(problems({ models: [{ model: '*', input: 1, output: 1 }] })).toHaveLength(1);
    expect(problems({ models: [{ model: "claude'; DROP TABLE x; --", input: 1, output: 1 }] })).toHaveLength(1);
    expect(problems({ models: [{ model: 'm', input: -1, output: 1 }] })[0]).toMatch(/^models\.0\.input: /);
    expect(problems({ models: [{ model: 'm', input: 1 }] })[0]).toMatch(/^models\.0\.output: /);
    expect(problems({ currency: 'dollars', models: [{ model: 'm', input: 1, output: 1 }] })[0]).toMatch(
      /^currency: must be a three-letter currency code/,
    );
    expect(problems({ models: [] })[0]).toMatch(/^models: must price at least one model/);
    expect(problems({ models: [{ model: 'm', input: 1, output: 1, cache: 1 }] })[0]).toMatch(/^models\.0: /);
  });
});
