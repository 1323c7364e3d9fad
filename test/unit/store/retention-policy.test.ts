import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../../src/config/load-config.js';
import { BATCH_TARGET_MS, nextBatchSize, retentionPolicy, retentionQuery } from '../../../src/store/retention.js';

const DAY = 86_400_000;

describe('retention policy from config', () => {
  it("applies each connection's window, else retention.default, and keeps `forever` connections out of the default", () => {
    const config = validateConfig({
      retention: { default: '90d' },
      connections: [
        { name: 'chat', upstream: 'http://127.0.0.1:1', retention: '30d' },
        { name: 'legal', upstream: 'http://127.0.0.1:1', retention: 'forever' },
        { name: 'other', upstream: 'http://127.0.0.1:1' },
      ],
    });
    const policy = retentionPolicy(config);
    expect(policy).toEqual({
      windows: { chat: 30 * DAY, legal: null, other: 90 * DAY },
      defaultWindow: 90 * DAY,
      batch: 1000,
      sinks: [],
    });
    const now = 1_000 * DAY;
    expect(retentionQuery(policy, now)).toEqual({
      cutoffs: { chat: now - 30 * DAY, other: now - 90 * DAY, legal: -1 },
      otherCutoff: now - 90 * DAY,
      limit: 1000,
      after: undefined,
    });
  });

  it('keeps everything by default: there is nothing to query', () => {
    const config = validateConfig({ connections: [{ name: 'chat', upstream: 'http://127.0.0.1:1' }] });
    expect(config.retention).toEqual({ default: 'forever', schedule: 3_600_000, batch: 1000 });
    expect(config.signing).toEqual({ interval: 60_000 });
    expect(retentionQuery(retentionPolicy(config), Date.now())).toBeUndefined();
  });

  it('holds every purge back for the configured SIEM sinks, so that none misses an event', () => {
    const config = validateConfig({
      retention: { default: '30d' },
      connections: [{ name: 'chat', upstream: 'http://127.0.0.1:1' }],
      siem: { sinks: [{ type: 'http', name: 'soc', url: 'https://siem.example/events' }] },
    });
    expect(retentionQuery(retentionPolicy(config), 1_000 * DAY)).toMatchObject({ deliveredTo: ['soc'] });
  });

  it('reports a bad window with its path', () => {
    expect(() =>
      validateConfig({ connections: [{ name: 'chat', upstream: 'http://127.0.0.1:1', retention: 'a while' }] }),
    ).toThrow(
      /connections\[0\] \(chat\)\.retention: must be a duration such as 30d or 12h, or forever \(got "a while"\)/,
    );
  });
});

describe('purge batch sizes', () => {
  it('takes as many exchanges as fit the time target at the last batch’s pace, growing at most twofold', () => {
    expect(nextBatchSize(40, BATCH_TARGET_MS * 4, 1000)).toBe(10);
    expect(nextBatchSize(40, BATCH_TARGET_MS, 1000)).toBe(40);
    expect(nextBatchSize(8, 1, 1000)).toBe(16);
    expect(nextBatchSize(8, 0, 1000)).toBe(16);
  });

  it('never takes fewer than one, nor more than retention.batch', () => {
    expect(nextBatchSize(1, 10_000, 1000)).toBe(1);
    expect(nextBatchSize(600, 1, 1000)).toBe(1000);
    expect(nextBatchSize(2, 1, 2)).toBe(2);
  });
});
