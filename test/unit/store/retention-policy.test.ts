import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../../src/config/load-config.js';
import { retentionPolicy, retentionQuery } from '../../../src/store/retention.js';

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

  it('reports a bad window with its path', () => {
    expect(() =>
      validateConfig({ connections: [{ name: 'chat', upstream: 'http://127.0.0.1:1', retention: 'a while' }] }),
    ).toThrow(
      /connections\[0\] \(chat\)\.retention: must be a duration such as 30d or 12h, or forever \(got "a while"\)/,
    );
  });
});
