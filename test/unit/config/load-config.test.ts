import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, validateConfig } from '../../../src/config/load-config.js';
import { ConfigError } from '../../../src/errors.js';
import { digestsOverdueAfterMs } from '../../../src/store/ledger-upkeep.js';
import { useTempDir } from '../../support/temp-dir.js';

function problems(input: unknown): string[] {
  try {
    validateConfig(input);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe('config', () => {
  const tempDir = useTempDir('vigil-cfg');
  it('the embedded default: loopback 8080, ./vigil-data, one anthropic connection keyed by ANTHROPIC_API_KEY', () => {
    const c = loadConfig();
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(c.data_dir).toBe(path.resolve('vigil-data'));
    expect(c.connections).toEqual([
      expect.objectContaining({
        name: 'anthropic',
        upstream: 'https://api.anthropic.com',
        credential: { env: 'ANTHROPIC_API_KEY' },
        recording: 'required',
      }),
    ]);
    expect(Object.isFrozen(c.connections[0])).toBe(true);
  });

  it('signing.overdue_after: three intervals by default, off without an interval, longer than the interval', () => {
    const conn = { connections: [{ name: 'a' }] };
    expect(digestsOverdueAfterMs(validateConfig(conn))).toBe(180_000);
    expect(digestsOverdueAfterMs(validateConfig({ ...conn, signing: { interval: '10s' } }))).toBe(30_000);
    expect(digestsOverdueAfterMs(validateConfig({ ...conn, signing: { interval: 0 } }))).toBe(0);
    expect(digestsOverdueAfterMs(validateConfig({ ...conn, signing: { overdue_after: '1h' } }))).toBe(3_600_000);
    expect(digestsOverdueAfterMs(validateConfig({ ...conn, signing: { overdue_after: 0 } }))).toBe(0);
    expect(digestsOverdueAfterMs(validateConfig({ ...conn, signing: { interval: 0, overdue_after: '5m' } }))).toBe(
      300_000,
    );
    expect(problems({ ...conn, signing: { interval: '1m', overdue_after: '60s' } })).toEqual([
      expect.stringMatching(/^signing\.overdue_after: must be longer than signing\.interval/),
    ]);
  });

  it('flags override the default connection and listener', () => {
    const c = loadConfig({ listen: '127.0.0.1:9999', upstream: 'http://127.0.0.1:7000/', dataDir: '/tmp/x' });
    expect(c.listen.port).toBe(9999);
    expect(c.connections[0]!.upstream).toBe('http://127.0.0.1:7000');
    expect(c.data_dir).toBe('/tmp/x');
  });

  it('--data-dir is relative to where the command runs; data_dir in a file, to the file', () => {
    // Went wrong: `--data-dir ./x --config /etc/vigil.yaml` opened /etc/x.
    const dir = tempDir();
    const file = path.join(dir, 'vigil.yaml');
    writeFileSync(file, 'data_dir: ./from-file\nconnections:\n  - name: a\n    credential: { env: K }\n');
    expect(loadConfig({ configFile: file }).data_dir).toBe(path.join(dir, 'from-file'));
    expect(loadConfig({ configFile: file, dataDir: './from-flag' }).data_dir).toBe(path.resolve('from-flag'));
  });

  it('reports every problem with its path, naming the connection, with hints for renamed keys', () => {
    expect(
      problems({
        listen: 'bad',
        connections: [
          { name: 'ok', upstream: 'https://a.example' },
          { name: 'ok', upstream: 'http://remote.example', recording: 'sometimes', apiKey: 'x', upstream_url: 'x' },
        ],
        default_connection: 'missing',
      }),
    ).toEqual(
      expect.arrayContaining([
        'listen: must be HOST:PORT, e.g. 127.0.0.1:8080 (got "bad")',
        expect.stringMatching(/^connections\[1\] \(ok\)\.recording: /),
        'connections[1] (ok).apiKey: unknown key (did you mean "credential"?)',
        // A habitual rename is named even when the key it stands for is there too.
        'connections[1] (ok).upstream_url: unknown key (did you mean "upstream"?)',
      ]),
    );
    expect(problems({ connections: [{ name: 'a', upstream: 'http://remote.example' }] })).toEqual([
      'connections[0] (a).upstream: must be an https URL (plain http is accepted for loopback only, or with allow_insecure_upstream: true)',
    ]);
    // A name of its own that merely starts like a loopback address is not loopback.
    expect(problems({ connections: [{ name: 'a', upstream: 'http://127.0.0.1.attacker.example' }] })).toEqual([
      'connections[0] (a).upstream: must be an https URL (plain http is accepted for loopback only, or with allow_insecure_upstream: true)',
    ]);
    expect(problems({ connections: [{ name: 'a', upstream: 'http://127.0.0.1:9' }] })).toEqual([]);
    expect(problems({ connections: [{ name: 'a' }, { name: 'a' }] })).toEqual([
      'connections[1] (a).name: duplicate connection name "a"',
    ]);
    expect(problems({ connections: [{ name: 'a', credential: 'sk-ant-inline' }] })[0]).toMatch(
      /^connections\[0\] \(a\)\.credential/,
    );
  });

  it('a secret written in the file says to give it as { env } or { file }, and never echoes it', () => {
    // A regression: `credential: sk-ant-…` was reported as "credential: Invalid input", which says nothing of what to
    // write instead.
    const secretRef =
      'a secret is never written in the config file: give it as { env: NAME } (an environment variable holding it) ' +
      'or { file: PATH } (a file holding it)';
    const found = problems({
      connections: [{ name: 'a', credential: 'sk-ant-inline-secret' }],
      admin: { tokens: [{ name: 't', role: 'admin', token: 'inline-admin-token-0123456789abcdef' }] },
      approvals: { webhooks: [{ name: 'oncall', url: 'https://hooks.example', secret: 'inline-hook-secret' }] },
    });
    expect(found).toEqual([
      `connections[0] (a).credential: ${secretRef}`,
      `approvals.webhooks[0] (oncall).secret: ${secretRef}`,
      `admin.tokens[0] (t).token: ${secretRef}`,
    ]);
    expect(found.join('\n')).not.toMatch(/inline/);
  });

  it('a misspelt key names the known key closest to it, and a missing key the misspelling that stands for it', () => {
    // A regression: `credentail` was only an "unknown key", and `connection:` for `connections:` said
    // "connections: Invalid input: expected array, received undefined".
    expect(problems({ connections: [{ name: 'a', credentail: { env: 'KEY' } }] })).toEqual([
      'connections[0] (a).credentail: unknown key (did you mean "credential"?)',
    ]);
    expect(problems({ connection: [{ name: 'a' }] })).toEqual([
      'connections: required, but missing (the file has "connection": did you mean "connections"?)',
      'connection: unknown key (did you mean "connections"?)',
    ]);
    expect(
      problems({
        connections: [{ name: 'a', zzzzzz: 1 }],
        admin: { tokns: [], enable: true },
        store: { postgres: { uri: 'postgres://db/vigil' } },
        siem: { sinks: [{ name: 'h', type: 'http', url: 'https://siem.example', secrett: { env: 'S' } }] },
      }),
    ).toEqual(
      expect.arrayContaining([
        'connections[0] (a).zzzzzz: unknown key',
        'admin.tokns: unknown key (did you mean "tokens"?)',
        'admin.enable: unknown key (did you mean "enabled"?)',
        'store.postgres.url: required, but missing (the file has "uri": did you mean "url"?)',
        'store.postgres.uri: unknown key (did you mean "url"?)',
        'siem.sinks[0] (h).secrett: unknown key (did you mean "secret"?)',
      ]),
    );
  });

  it('a value of the wrong type where a string or a secret reference goes says what is expected', () => {
    // A regression: a number for store.postgres.url, a SIEM sink's or an approval webhook's header value, a webhook
    // URL, a duration or an audience was reported as "Invalid input", which says nothing of what to write instead.
    const held = (what: string) => `must be ${what}, or { env: NAME } or { file: PATH } holding it`;
    expect(
      problems({
        store: { postgres: { url: 5432 } },
        connections: [{ name: 'a', upstream: 'https://api.anthropic.com', upstream_timeout: true }],
        identity: { oidc: [{ issuer: 'https://idp.example.com', audience: 5 }] },
        siem: { sinks: [{ type: 'http', name: 'w', url: 'https://siem.example', headers: { 'x-tenant': 7 } }] },
        approvals: { webhooks: [{ name: 'oncall', url: 42, headers: { 'x-team': { env: 5 } } }] },
      }),
    ).toEqual([
      `store.postgres.url: ${held('a PostgreSQL URL without a password (postgres://user@host/db)')}`,
      'identity.oidc[0].audience: must be a string or a list of strings',
      'connections[0] (a).upstream_timeout: must be a duration such as 500ms, 30s, 5m, 2h or 30d, or a number of ' +
        'milliseconds',
      `siem.sinks[0] (w).headers.x-tenant: ${held('a string')}`,
      `approvals.webhooks[0] (oncall).url: ${held('an absolute http(s) URL')}`,
      `approvals.webhooks[0] (oncall).headers.x-team: ${held('a string')}`,
    ]);
  });

  it('checks the web UI’s sign-in against the trusted issuers, naming the key to fix', () => {
    const issuer = 'https://idp.example.com/realms/main';
    const withSignIn = (oidc: Record<string, unknown>, audience: string | string[] = 'vigil') =>
      problems({ connections: [{ name: 'a' }], identity: { oidc: [{ issuer, audience }] }, admin: { ui: { oidc } } });
    // The UI's client id need not be (and should not be) an audience of the issuer: the admin listener accepts its
    // ID tokens on its own. Requiring it made every ID token of the UI a credential for the Claude API proxy.
    expect(withSignIn({ issuer, client_id: 'vigil-ui' })).toEqual([]);
    const c = validateConfig({
      connections: [{ name: 'a' }],
      identity: { oidc: [{ issuer, audience: 'vigil' }] },
      admin: { ui: { oidc: { issuer, client_id: 'vigil-ui' } } },
    });
    expect(c.admin.ui.oidc).toEqual({
      issuer,
      client_id: 'vigil-ui',
      scopes: ['openid', 'profile', 'email'],
      token: 'id_token',
    });

    expect(withSignIn({ issuer: 'https://other.example.com', client_id: 'vigil-ui' })).toEqual([
      `admin.ui.oidc.issuer: must be one of identity.oidc[].issuer (the admin API verifies the UI's tokens with it); configured: ${issuer}`,
    ]);
    expect(withSignIn({ issuer, client_id: 'vigil-ui' }, ['vigil', 'vigil-ui'])).toEqual([]);
    expect(withSignIn({ issuer, client_id: 'vigil-ui', token: 'access_token' })).toEqual([]);
    expect(withSignIn({ issuer, client_id: 'vigil-ui', scopes: ['profile'] })).toEqual([
      'admin.ui.oidc.scopes: must include openid',
    ]);
    expect(withSignIn({ issuer, client_id: 'vigil-ui', secret: 'x' })[0]).toMatch(/^admin\.ui\.oidc\.secret: /);
  });

  it('reads YAML and resolves relative paths against the file', () => {
    const dir = tempDir();
    const file = path.join(dir, 'vigil.yaml');
    writeFileSync(file, 'data_dir: ./data\nconnections:\n  - name: prod\n    credential: { file: ./key.txt }\n');
    const c = loadConfig({ configFile: file });
    expect(c.data_dir).toBe(path.join(dir, 'data'));
    expect(c.connections[0]!.credential).toEqual({ file: path.join(dir, 'key.txt') });
    writeFileSync(file, 'connections: [\n');
    expect(() => loadConfig({ configFile: file })).toThrow(ConfigError);
  });

  it('resolves every { file } reference against the file, except the signing key (data_dir)', () => {
    // A regression: only connection credentials and sink files were resolved; admin tokens, approval webhooks and the
    // PostgreSQL URL were read relative to the working directory, unlike the README says.
    const dir = tempDir();
    const file = path.join(dir, 'vigil.yaml');
    writeFileSync(
      file,
      [
        'store:',
        '  postgres: { url: { file: pg.url } }',
        'admin:',
        '  tokens: [{ name: ci, role: auditor, token: { file: secrets/ci.token } }]',
        'approvals:',
        '  webhooks: [{ name: hook, url: { file: hook.url }, secret: { file: hook.secret } }]',
        'signing:',
        '  key: { file: keys/signing.pem }',
        'connections: [{ name: anthropic }]',
      ].join('\n'),
    );
    const c = loadConfig({ configFile: file });
    expect(c.store.postgres?.url).toEqual({ file: path.join(dir, 'pg.url') });
    expect(c.admin.tokens[0]!.token).toEqual({ file: path.join(dir, 'secrets/ci.token') });
    expect(c.approvals.webhooks[0]).toMatchObject({
      url: { file: path.join(dir, 'hook.url') },
      secret: { file: path.join(dir, 'hook.secret') },
    });
    expect(c.signing.key).toEqual({ file: 'keys/signing.pem' });
  });

  it('a header named file is a header: its value is not resolved as a path', () => {
    // Went wrong: `headers: { file: audit }` was taken for a { file } reference, and the sink and the webhook sent
    // `file: /etc/vigil/audit`.
    const c = validateConfig(
      {
        connections: [{ name: 'a' }],
        siem: { sinks: [{ name: 'hec', type: 'http', url: 'https://siem.example/in', headers: { file: 'audit' } }] },
        approvals: {
          webhooks: [
            { name: 'oncall', url: 'https://hooks.example/x', headers: { file: 'audit', 'x-k': { file: 'k' } } },
          ],
        },
      },
      '/etc/vigil',
    );
    expect(c.siem.sinks[0]).toMatchObject({ headers: { file: 'audit' } });
    expect(c.approvals.webhooks[0]!.headers).toEqual({
      file: 'audit',
      'x-k': { file: path.resolve('/etc/vigil', 'k') },
    });
  });
});
