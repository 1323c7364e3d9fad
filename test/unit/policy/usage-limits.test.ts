/**
 * Usage limits on each store: what callers used is read back from the store at start, calls and tokens are counted
 * from then on, a caller over a limit is refused until enough of the window has passed, and on a shared PostgreSQL
 * store what another gateway served counts too.
 */
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../../src/config/load-config.js';
import type { Principal } from '../../../src/identity/principal.js';
import { UsageLimits, type LimitConfig } from '../../../src/policy/usage-limits.js';
import { pricingFrom, pricingSchema } from '../../../src/store/pricing.js';
import type { ExchangeCompleted } from '../../../src/recorder/diagnostics.js';
import type { AuditStore } from '../../../src/store/audit-store.js';
import type { ExchangeRequestData, ExchangeResponseData } from '../../../src/store/record-types.js';
import { storeKinds, useStoreFixture } from '../../support/stores.js';
import { until } from '../../support/until.js';

const HOUR = 3_600_000;
const alice: Principal = {
  method: 'oidc',
  subject: 'alice',
  issuer: 'https://idp.example',
  email: 'alice@example.com',
};
const bob: Principal = { method: 'oidc', subject: 'bob', issuer: 'https://idp.example', groups: ['ci'] };
const carol: Principal = { method: 'gateway_key', subject: 'nightly', keyName: 'nightly' };

let counter = 0;
/** An exchange of `caller` on `connection` that started at `at` and used these tokens, appended to the store. */
async function recorded(
  store: AuditStore,
  caller: Principal,
  at: number,
  tokens: { input: number; output: number },
  connection = 'anthropic',
): Promise<void> {
  const id = `ex_limit_${++counter}_${at}`;
  const request: ExchangeRequestData = {
    connection,
    caller,
    client: { address: '127.0.0.1', userAgent: null },
    session: { id: `ses_${id}`, source: 'header' },
    request: { method: 'POST', path: '/v1/messages', query: '', headers: {}, body: null },
    model: 'claude-haiku-4-5',
    stream: false,
    startedAt: at,
  };
  const response: ExchangeResponseData = {
    status: 200,
    headers: null,
    body: null,
    message: null,
    usage: { input_tokens: tokens.input, output_tokens: tokens.output },
    model: 'claude-haiku-4-5',
    stopReason: 'end_turn',
    outcome: 'ok',
    error: null,
    eventCount: 0,
    timing: { startedAt: at, firstByteMs: 10, endedAt: at + 20, durationMs: 20 },
  };
  await store.append({
    records: [
      { kind: 'exchange.request', exchangeId: id, sessionId: `ses_${id}`, at, data: request },
      { kind: 'exchange.response', exchangeId: id, sessionId: `ses_${id}`, at: at + 20, data: response },
    ],
  });
}

/** Limits as the config gives them (validated, defaults filled). */
function limitsOf(limits: unknown[], connection = 'anthropic'): LimitConfig[] {
  // With some pricing, which a limit on cost needs (the UsageLimits under test are given their own).
  const pricing = { models: [{ model: 'claude*', input: 1, output: 1 }] };
  return validateConfig({ connections: [{ name: connection, limits }], pricing }).connections[0]!.limits;
}

function ended(
  caller: string,
  tokens: number,
  durationMs = 20,
  connection = 'anthropic',
  callerGroups: readonly string[] = [],
): ExchangeCompleted {
  return {
    connection,
    caller,
    callerGroups,
    outcome: 'ok',
    status: 200,
    model: 'claude-haiku-4-5',
    durationMs,
    firstByteMs: 5,
    recordedMs: 1,
    inputTokens: tokens,
    outputTokens: 0,
    cacheReadTokens: 0,
    cacheCreationTokens: 0,
    cacheCreation1hTokens: 0,
    stopReason: 'end_turn',
  };
}

describe.each(storeKinds())('usage limits on %s', (kind) => {
  const fixture = useStoreFixture(kind);

  it('counts what calls cost against a budget, priced as reports price them, and reads it back at start', async () => {
    const store = await fixture().open();
    const now = Date.UTC(2026, 11, 7, 12, 0, 0);
    const pricing = pricingFrom(
      pricingSchema.parse({ currency: 'EUR', models: [{ model: 'claude-haiku-4-5*', input: 1, output: 5 }] }),
    );
    // 1,000,000 input and 100,000 output tokens half an hour ago: 1.00 + 0.50 EUR.
    await recorded(store, alice, now - HOUR / 2, { input: 1_000_000, output: 100_000 });
    const unpriced: Array<string | null> = [];
    const budget = limitsOf([{ name: 'budget', window: '1d', cost: 2 }]);
    const limits = new UsageLimits({
      limits: new Map([['anthropic', budget]]),
      store,
      now: () => now,
      pricing,
      onUnpriced: (model) => unpriced.push(model),
    });
    await limits.start();
    try {
      expect(limits.check('anthropic', alice)).toBeNull(); // 1.50 of 2.00
      // 600,000 uncached input tokens: 0.60 EUR more. A model without a price is not counted, and said once.
      limits.completed({ ...ended('alice', 600_000), model: 'claude-haiku-4-5-20251001' });
      limits.completed({ ...ended('alice', 5_000_000), model: 'claude-mystery-1' });
      limits.completed({ ...ended('alice', 5_000_000), model: 'claude-mystery-1' });
      expect(unpriced).toEqual(['claude-mystery-1']);
      const refusal = limits.check('anthropic', alice);
      expect(refusal!.message).toBe(
        'usage limit "budget" reached: "alice@example.com" used 2.10 of 2.00 EUR in the last 1d; calls are ' +
          `admitted again from ${new Date(refusal!.retryAt).toISOString()}`,
      );
      expect(limits.check('anthropic', bob)).toBeNull();
      expect(limits.status()[0]).toMatchObject({
        cost: 2,
        currency: 'EUR',
        tokens: null,
        usage: [
          { caller: 'alice', cost: 2.1, refusedUntil: new Date(refusal!.retryAt).toISOString() },
          { caller: 'bob', cost: 0, tokens: 0, requests: 1 },
        ],
      });
    } finally {
      await limits.close();
    }
    // A gateway started later reads the budget's use back from the store, at the report's prices.
    await recorded(store, alice, now - 60_000, { input: 600_000, output: 0 });
    const restarted = new UsageLimits({ limits: new Map([['anthropic', budget]]), store, now: () => now, pricing });
    await restarted.start();
    try {
      expect(restarted.check('anthropic', alice)?.message).toMatch(/used 2\.10 of 2\.00 EUR in the last 1d/);
    } finally {
      await restarted.close();
    }
  });

  it('reads back what each caller used in the window, and refuses until enough of it has passed', async () => {
    const store = await fixture().open();
    let now = Date.UTC(2026, 11, 7, 12, 0, 0);
    // Before the window (not counted), then 4,500 tokens of alice's 30 minutes ago, and some of bob's.
    await recorded(store, alice, now - 2 * HOUR, { input: 9000, output: 9000 });
    for (let i = 0; i < 3; i++) await recorded(store, alice, now - HOUR / 2 + i, { input: 1000, output: 500 });
    await recorded(store, bob, now - 10 * 60_000, { input: 4000, output: 900 });
    // Another connection's calls are not this one's.
    await recorded(store, alice, now - 60_000, { input: 9000, output: 9000 }, 'other');
    const limits = new UsageLimits({
      limits: new Map([['anthropic', limitsOf([{ name: 'hourly', window: '1h', tokens: 5000 }])]]),
      store,
      now: () => now,
    });
    await limits.start();
    try {
      expect(limits.check('anthropic', alice)).toBeNull(); // 4,500 of 5,000
      expect(limits.check('anthropic', bob)).toBeNull(); // 4,900
      limits.completed(ended('alice', 600));
      const refusal = limits.check('anthropic', alice);
      expect(refusal).toMatchObject({ limit: 'hourly' });
      expect(refusal!.message).toBe(
        'usage limit "hourly" reached: "alice@example.com" used 5,100 of 5,000 tokens in the last 1h; calls are ' +
          `admitted again from ${new Date(refusal!.retryAt).toISOString()}`,
      );
      // The 4,500 of half an hour ago leave the window in its 60th of an hour after that; then 600 are left.
      const step = HOUR / 60;
      expect(refusal!.retryAt).toBe((Math.floor((now - HOUR / 2) / step) + 60) * step);
      expect(limits.check('anthropic', bob)).toBeNull();
      expect(limits.check('other', alice)).toBeNull(); // no limits there
      // As GET /limits shows it: the most used first, and when a caller at the limit may call again.
      expect(limits.status()).toEqual([
        {
          connection: 'anthropic',
          name: 'hourly',
          per: 'caller',
          windowMs: HOUR,
          tokens: 5000,
          requests: null,
          cost: null,
          currency: null,
          for: null,
          usage: [
            {
              caller: 'alice',
              tokens: 5100,
              requests: 4,
              cost: 0,
              refusedUntil: new Date(refusal!.retryAt).toISOString(),
            },
            { caller: 'bob', tokens: 4900, requests: 3, cost: 0, refusedUntil: null },
          ],
          truncated: false,
        },
      ]);
      expect(limits.status({ caller: 'carol' })[0]!.usage).toEqual([
        { caller: 'carol', tokens: 0, requests: 0, cost: 0, refusedUntil: null },
      ]);
      expect(limits.status({ max: 1 })[0]).toMatchObject({ usage: [{ caller: 'alice' }], truncated: true });

      now = refusal!.retryAt - 1;
      expect(limits.check('anthropic', alice)).not.toBeNull();
      now = refusal!.retryAt;
      expect(limits.check('anthropic', alice)).toBeNull();
    } finally {
      await limits.close();
    }
  });

  it('counts calls per connection when asked, and refuses only the callers a limit is for', async () => {
    const store = await fixture().open();
    let now = Date.UTC(2026, 11, 7, 9, 30, 0);
    await recorded(store, alice, now - 5_000, { input: 10, output: 10 });
    const limits = new UsageLimits({
      limits: new Map([
        [
          'anthropic',
          limitsOf([
            { name: 'shared', per: 'connection', window: '1m', requests: 3 },
            { name: 'ci-tokens', window: '1d', tokens: 100, for: [{ group: 'ci' }] },
          ]),
        ],
      ]),
      store,
      now: () => now,
    });
    await limits.start();
    try {
      expect(limits.check('anthropic', bob)).toBeNull(); // alice's call (read back), bob's
      limits.completed(ended('bob', 150));
      // Over ci-tokens: bob is in ci, carol (a gateway key) is not.
      expect(limits.check('anthropic', bob)?.limit).toBe('ci-tokens');
      expect(limits.check('anthropic', carol)).toBeNull(); // the third call of the minute
      const shared = limits.check('anthropic', alice);
      expect(shared?.limit).toBe('shared');
      expect(shared?.message).toMatch(
        /^usage limit "shared" reached: the callers of connection "anthropic" used 3 of 3 calls in the last 1m;/,
      );
      expect(limits.check('anthropic', carol)?.limit).toBe('shared');
      now += 60_000;
      expect(limits.check('anthropic', carol)).toBeNull();
      expect(limits.check('anthropic', bob)?.limit).toBe('ci-tokens');
    } finally {
      await limits.close();
    }
  });

  it('counts a per-group limit for each of the caller’s groups (those `for` names), shared by their members', async () => {
    const store = await fixture().open();
    const now = Date.UTC(2026, 11, 7, 15, 0, 0);
    const dana: Principal = { method: 'oidc', subject: 'dana', issuer: 'https://idp.example', groups: ['ml', 'ci'] };
    const erin: Principal = { method: 'oidc', subject: 'erin', issuer: 'https://idp.example', groups: ['ml'] };
    // Read back by group: 700 tokens of ml's (dana's, who is in ci too), 200 of ci's (bob's); carol is in no group.
    await recorded(store, dana, now - HOUR, { input: 500, output: 200 });
    await recorded(store, bob, now - HOUR, { input: 100, output: 100 });
    await recorded(store, carol, now - HOUR, { input: 5000, output: 5000 });
    const limits = new UsageLimits({
      limits: new Map([
        [
          'anthropic',
          limitsOf([
            { name: 'team-daily', per: 'group', window: '1d', tokens: 1000 },
            { name: 'ml-calls', per: 'group', window: '1d', requests: 2, for: [{ group: 'ml' }] },
          ]),
        ],
      ]),
      store,
      now: () => now,
    });
    await limits.start();
    try {
      // A member's call counts for the whole group: erin's 400 tokens take ml over its 1,000.
      expect(limits.check('anthropic', erin)).toBeNull();
      limits.completed(ended('erin', 400, 20, 'anthropic', ['ml']));
      const refusal = limits.check('anthropic', dana);
      expect(refusal?.message).toMatch(
        /^usage limit "team-daily" reached: group "ml" used 1,100 of 1,000 tokens in the last 1d;/,
      );
      // bob's group, ci, has 900 left (dana's call counted in ci too); carol, in no group, is not counted by either.
      expect(limits.check('anthropic', bob)).toBeNull();
      expect(limits.check('anthropic', carol)).toBeNull();
      // ml-calls counts ml only (what `for` names): dana's call an hour ago (read back) and erin's; dana's refused one
      // was not counted. At 2 of 2, ml is refused until dana's leaves the window.
      const ml = limits.status().find((l) => l.name === 'ml-calls')!;
      expect(ml.usage).toEqual([
        // Tokens as read back too (it limits calls only); ci's calls are not this limit's.
        {
          caller: null,
          group: 'ml',
          tokens: 700,
          requests: 2,
          cost: 0,
          refusedUntil: expect.stringMatching(/^2026-12-08T/),
        },
      ]);
      const team = limits.status().find((l) => l.name === 'team-daily')!;
      expect(team).toMatchObject({ per: 'group' });
      expect(Object.fromEntries(team.usage.map((u) => [u.group, u.tokens]))).toEqual({ ml: 1100, ci: 700 + 200 });
      // A user sees the rows of their own groups.
      expect(limits.status({ caller: 'bob', groups: ['ci'] }).find((l) => l.name === 'team-daily')!.usage).toEqual([
        expect.objectContaining({ group: 'ci', tokens: 900 }),
      ]);
    } finally {
      await limits.close();
    }
  });

  it("counts a long call's tokens in the step it started in, and none of a call that outlived the window", async () => {
    const store = await fixture().open();
    let now = Date.UTC(2026, 11, 7, 9, 0, 0);
    const limits = new UsageLimits({
      limits: new Map([['anthropic', limitsOf([{ name: 'minute', window: '1m', tokens: 100 }])]]),
      store,
      now: () => now,
    });
    await limits.start();
    try {
      expect(limits.check('anthropic', alice)).toBeNull();
      now += 30_000;
      limits.completed(ended('alice', 100, 30_000)); // started 30 s ago: frees 30 s from now
      const refusal = limits.check('anthropic', alice);
      expect(refusal?.retryAt).toBe(now + 30_000);
      limits.completed(ended('alice', 500, 90_000)); // started before the window: not counted
      now += 30_000;
      expect(limits.check('anthropic', alice)).toBeNull();
    } finally {
      await limits.close();
    }
  });
});

describe.runIf(storeKinds().includes('postgres'))('usage limits on a shared PostgreSQL store', () => {
  const fixture = useStoreFixture('postgres');

  it('counts what another gateway served once the step it was served in is over', async () => {
    const mine = await fixture().open();
    const theirs = await fixture().open();
    const limits = new UsageLimits({
      limits: new Map([['anthropic', limitsOf([{ name: 'minute', window: '1m', tokens: 1000 }])]]),
      store: mine,
    });
    await limits.start();
    try {
      expect(limits.check('anthropic', alice)).toBeNull();
      // Another gateway records alice's call: counted here once its second (a 60th of the window) is over.
      await recorded(theirs, alice, Date.now(), { input: 700, output: 400 });
      await until(
        "the other gateway's call to count",
        async () => (limits.check('anthropic', alice) ? true : undefined),
        5_000,
      );
      expect(limits.check('anthropic', bob)).toBeNull();
    } finally {
      await limits.close();
    }
  });
});

describe.runIf(storeKinds().includes('postgres'))('usage limits while the shared store does not answer', () => {
  const fixture = useStoreFixture('postgres');

  it('says so once, counts its own calls meanwhile, and reads what it missed once the store answers', async () => {
    const real = await fixture().open();
    const theirs = await fixture().open();
    let down = false;
    // The store as the limits see it: its usage reads fail while `down`.
    const store = new Proxy(real, {
      get(target, key, receiver) {
        if (key === 'usage' && down) return () => Promise.reject(new Error('connection terminated unexpectedly'));
        return Reflect.get(target, key, receiver) as unknown;
      },
    });
    const told: string[] = [];
    const limits = new UsageLimits({
      limits: new Map([['anthropic', limitsOf([{ name: 'minute', window: '1m', tokens: 1000, requests: 5 }])]]),
      store,
      onReadBackError: (err) => told.push(`failing: ${(err as Error).message}`),
      onReadBackRecovered: () => told.push('recovered'),
    });
    await limits.start();
    try {
      down = true;
      await recorded(theirs, alice, Date.now(), { input: 700, output: 400 });
      for (let i = 0; i < 4; i++) expect(limits.check('anthropic', bob)).toBeNull();
      await new Promise((r) => setTimeout(r, 2_500)); // a few steps' read-backs fail
      expect(told).toEqual(['failing: connection terminated unexpectedly']);
      expect(limits.check('anthropic', alice)).toBeNull(); // the other gateway's call is not known yet
      expect(limits.check('anthropic', bob)).toBeNull(); // bob's fifth call of the minute
      expect(limits.check('anthropic', bob)?.limit).toBe('minute');
      down = false;
      await until(
        'the read-backs to succeed again',
        async () => (told.includes('recovered') ? true : undefined),
        5_000,
      );
      await until(
        'the missed steps to be read',
        async () => (limits.check('anthropic', alice) ? true : undefined),
        5_000,
      );
      expect(told).toEqual(['failing: connection terminated unexpectedly', 'recovered']);
    } finally {
      await limits.close();
    }
  });
});

describe('usage limits in the config', () => {
  const problems = (connection: Record<string, unknown>): string => {
    try {
      validateConfig({ connections: [{ name: 'anthropic', ...connection }] });
      return '';
    } catch (err) {
      return (err as Error).message;
    }
  };

  it('says what is wrong with a limit, by its path', () => {
    expect(problems({ limits: [{ name: 'a', window: '1h' }] })).toContain(
      'connections[0] (anthropic).limits[0] (a): a limit needs tokens, requests or cost (one or more)',
    );
    expect(problems({ limits: [{ name: 'a', window: '10s', requests: 5 }] })).toContain(
      'connections[0] (anthropic).limits[0] (a).window: must be between 1m and 90d',
    );
    expect(
      problems({
        limits: [
          { name: 'a', window: '1h', requests: 5 },
          { name: 'a', window: '1d', tokens: 5 },
        ],
      }),
    ).toContain('connections[0] (anthropic).limits[1] (a).name: duplicate limit "a"');
    expect(problems({ record: 'off', limits: [{ name: 'a', window: '1h', tokens: 5 }] })).toContain(
      'connections[0] (anthropic).limits[0] (a).tokens: a token limit needs the usage a recording reads',
    );
    expect(problems({ record: 'off', limits: [{ name: 'a', window: '1h', requests: 5 }] })).toBe('');
    expect(problems({ record: 'off', limits: [{ name: 'a', window: '1h', cost: 5 }] })).toContain(
      'connections[0] (anthropic).limits[0] (a).cost: a cost limit needs the usage a recording reads',
    );
    expect(problems({ limits: [{ name: 'a', window: '1h', cost: -5 }] })).toContain(
      'connections[0] (anthropic).limits[0] (a).cost: Too small: expected number to be >0',
    );
    expect(problems({ limits: [{ name: 'a', window: '1h', requests: 5, per: 'team' }] })).toContain(
      'connections[0] (anthropic).limits[0] (a).per: Invalid option: expected one of "caller"|"group"|"connection"',
    );
  });
});
