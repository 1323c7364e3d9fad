import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../../src/config/load-config.js';
import { secretProblems } from '../../../src/config/secret-problems.js';
import { ConfigError } from '../../../src/errors.js';
import { startGateway } from '../../../src/gateway.js';

// A regression: start-up stopped at the first secret it could not read (one missing environment variable per
// attempt, although the README promises every problem at once), and named sinks `siem.sinks (name)` but webhooks
// `approvals.webhooks[0] (name)`.
describe('secret references read at start-up', () => {
  const config = validateConfig({
    connections: [{ name: 'a' }],
    admin: { tokens: [{ name: 'ci', role: 'auditor', token: { env: 'VIGIL_TEST_UNSET_TOKEN' } }] },
    approvals: {
      webhooks: [
        {
          name: 'oncall',
          url: 'https://hooks.example/x',
          secret: { env: 'VIGIL_TEST_UNSET_HOOK' },
          headers: { 'x-k': { file: '/nonexistent/hook-header' } },
        },
      ],
    },
    siem: {
      sinks: [
        {
          name: 'syslog',
          type: 'syslog',
          transport: 'tls',
          host: '127.0.0.1',
          port: 6514,
          ca: { file: '/nonexistent/ca.pem' },
        },
        { name: 'webhook', type: 'http', url: 'https://siem.example/in', secret: { env: 'VIGIL_TEST_UNSET_SINK' } },
      ],
    },
  });
  const expected = [
    'admin.tokens[0] (ci).token: environment variable VIGIL_TEST_UNSET_TOKEN is not set or empty',
    'approvals.webhooks[0] (oncall).headers.x-k: cannot read /nonexistent/hook-header (ENOENT)',
    'approvals.webhooks[0] (oncall).secret: environment variable VIGIL_TEST_UNSET_HOOK is not set or empty',
    'siem.sinks[0] (syslog).ca: cannot read /nonexistent/ca.pem (ENOENT)',
    'siem.sinks[1] (webhook).secret: environment variable VIGIL_TEST_UNSET_SINK is not set or empty',
  ];

  it('every missing one is reported, each in the same path format', () => {
    expect(secretProblems(config, {}).sort()).toEqual(expected);
  });

  it('the gateway refuses to start naming all of them', async () => {
    const err = await startGateway(config).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect([...(err as ConfigError).problems].sort()).toEqual(expected);
  });

  it('a header named env or file is a header, not a secret reference', () => {
    // Went wrong: `headers: { env: 'production' }` was read as { env: NAME } and refused start-up.
    const headers = validateConfig({
      connections: [{ name: 'a' }],
      siem: { sinks: [{ name: 'hec', type: 'http', url: 'https://siem.example/in', headers: { env: 'production' } }] },
      approvals: { webhooks: [{ name: 'oncall', url: 'https://hooks.example/x', headers: { file: 'audit' } }] },
    });
    expect(secretProblems(headers, {})).toEqual([]);
  });
});
