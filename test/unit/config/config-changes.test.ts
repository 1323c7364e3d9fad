/**
 * What a reload may apply to a running gateway, and what needs a restart (config-changes.ts).
 */
import { describe, expect, it } from 'vitest';
import type { VigilConfigInput } from '../../../src/config/config-schema.js';
import { validateConfig } from '../../../src/config/load-config.js';
import { configChanges, configReloadedData, nothingChanged, SIGHUP_ACTOR } from '../../../src/config/config-changes.js';

const base: VigilConfigInput = {
  listen: '127.0.0.1:8080',
  data_dir: '/tmp/vigil-config-changes',
  connections: [
    { name: 'anthropic', upstream: 'https://api.anthropic.com', credential: { env: 'K' } },
    { name: 'team', upstream: 'https://api.anthropic.com', credential: { env: 'K' }, record: 'metadata' },
  ],
};
const config = (over: Partial<VigilConfigInput> = {}) => validateConfig({ ...base, ...over });

describe('configChanges', () => {
  it('finds nothing to do in the same config', () => {
    const c = configChanges(config(), config());
    expect(c.restartNeeded).toEqual([]);
    expect(nothingChanged(c)).toBe(true);
  });

  it('names the connections added, removed and changed, with the keys that changed', () => {
    const c = configChanges(
      config(),
      config({
        connections: [
          {
            name: 'anthropic',
            upstream: 'https://api.anthropic.com',
            credential: { env: 'K2' },
            allow: [{ group: 'ml' }],
          },
          { name: 'ci', upstream: 'https://api.anthropic.com', credential: { env: 'K' } },
        ],
      }),
    );
    expect(c.restartNeeded).toEqual([]);
    expect(c.connections).toEqual({
      added: ['ci'],
      changed: [{ name: 'anthropic', keys: ['allow', 'credential'] }],
      removed: ['team'],
    });
    expect(nothingChanged(c)).toBe(false);
  });

  it('says when the default connection changes, by default_connection or by the order of connections', () => {
    expect(configChanges(config(), config({ default_connection: 'team' })).defaultConnection).toEqual({
      from: 'anthropic',
      to: 'team',
    });
    const reordered = config({ connections: [...base.connections!].reverse() });
    expect(configChanges(config(), reordered).defaultConnection).toEqual({ from: 'anthropic', to: 'team' });
  });

  it('takes pricing, and records the prices now (null once taken out)', () => {
    const pricing = { currency: 'EUR', models: [{ model: 'claude-opus-4-5*', input: 5, output: 25 }] };
    const priced = configChanges(config(), config({ pricing }));
    expect(priced).toMatchObject({ pricing: true, restartNeeded: [] });
    expect(nothingChanged(priced)).toBe(false);
    expect(configReloadedData(priced, config({ pricing }), SIGHUP_ACTOR).pricing).toEqual(pricing);
    const removed = configChanges(config({ pricing }), config());
    expect(configReloadedData(removed, config(), SIGHUP_ACTOR).pricing).toBeNull();
    // Unchanged: not in the record at all.
    const same = configChanges(config({ pricing }), config({ pricing }));
    expect(same.pricing).toBe(false);
    expect('pricing' in configReloadedData(same, config({ pricing }), SIGHUP_ACTOR)).toBe(false);
  });

  it('takes approval webhooks', () => {
    const c = configChanges(
      config(),
      config({ approvals: { webhooks: [{ name: 'oncall', url: 'https://hooks.example/x' }] } }),
    );
    expect(c.approvals).toBe(true);
    expect(c.restartNeeded).toEqual([]);
    expect(nothingChanged(c)).toBe(false);
  });

  it('takes retention (windows, batch size, schedule), sizes, the shutdown grace and the log level', () => {
    const c = configChanges(
      config(),
      config({
        retention: { default: '30d', batch: 10, schedule: '5m' },
        limits: { max_request_body: 1024 },
        shutdown: { grace: '1s' },
        log: { level: 'debug' },
      }),
    );
    expect(c).toMatchObject({ retention: true, limits: true, shutdown: true, restartNeeded: [] });
    expect(c.logLevel).toEqual({ from: 'info', to: 'debug' });
    expect(nothingChanged(c)).toBe(false);
  });

  it('takes identity and who may use the admin API, but not its listener or web UI sign-in', () => {
    const c = configChanges(
      config(),
      config({
        identity: { anonymous: 'never' },
        admin: { roles: { auditor: ['sec'] }, tokens: [{ name: 'ci', role: 'auditor', token: { env: 'T' } }] },
      }),
    );
    expect(c).toMatchObject({ identity: true, adminAccess: true, restartNeeded: [] });
    expect(nothingChanged(c)).toBe(false);
    expect(configChanges(config(), config({ admin: { roles: { admin: ['ops'] } } }))).toMatchObject({
      identity: false,
      adminAccess: true,
    });
    const listener = configChanges(config(), config({ admin: { listen: '127.0.0.1:9999', tokens: [] } }));
    expect(listener).toMatchObject({ restartNeeded: ['admin.listen'], adminAccess: false });
  });

  it('needs a restart for what is opened at start-up: listeners, the store, the admin listener, signing', () => {
    const c = configChanges(
      config(),
      config({
        listen: '127.0.0.1:8081',
        store: { sqlite: { synchronous: 'full' } },
        admin: { enabled: false },
        siem: { sinks: [{ name: 'local', type: 'syslog', transport: 'udp', host: '127.0.0.1', port: 514 }] },
        signing: { interval: '5m' },
      }),
    );
    expect(c.restartNeeded).toEqual(['admin.enabled', 'listen', 'signing', 'store']);
    expect(c.siem).toBe(true);
  });
});

describe('configReloadedData', () => {
  it('records the new values of what changed and a digest of the whole config', () => {
    const next = config({
      connections: [
        {
          name: 'anthropic',
          upstream: 'https://api.anthropic.com',
          credential: { env: 'K' },
          allow: [{ group: 'ml' }],
        },
      ],
    });
    const d = configReloadedData(configChanges(config(), next), next, SIGHUP_ACTOR);
    expect(d.by).toEqual({ method: 'signal', subject: 'SIGHUP' });
    expect(d.connections).toEqual({
      added: [],
      changed: [{ name: 'anthropic', keys: ['allow'], now: { allow: [{ group: 'ml' }] } }],
      removed: ['team'],
    });
    expect(d.configSha256).toMatch(/^[0-9a-f]{64}$/);
    expect(configReloadedData(configChanges(config(), next), next, SIGHUP_ACTOR).configSha256).toBe(d.configSha256);
    expect(d).not.toHaveProperty('retention');
    expect(d).not.toHaveProperty('identity');
    expect(d).not.toHaveProperty('admin');
  });

  it('records the issuers and admin tokens by name and role, never a secret', () => {
    const next = config({
      identity: { oidc: [{ issuer: 'https://idp.example', audience: 'vigil' }] },
      admin: {
        roles: { admin: ['ops'] },
        tokens: [{ name: 'soc', role: 'auditor', token: { env: 'SOC_TOKEN' } }],
      },
    });
    const d = configReloadedData(configChanges(config(), next), next, SIGHUP_ACTOR);
    expect(d.identity).toEqual({ issuers: [{ issuer: 'https://idp.example', audience: 'vigil' }], anonymous: 'never' });
    expect(d.admin).toEqual({
      roles: { admin: ['ops'], auditor: [] },
      tokens: [{ name: 'soc', role: 'auditor' }],
      uiSignIn: null,
    });
    expect(JSON.stringify(d)).not.toContain('SOC_TOKEN');
  });
});
