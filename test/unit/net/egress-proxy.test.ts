import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../../src/config/load-config.js';
import { ConfigError } from '../../../src/errors.js';
import { egressProxy, egressProxyProblems, noProxyMatches } from '../../../src/net/egress-proxy.js';

/** The first connection of a config with these connection fields. */
const connection = (fields: Record<string, unknown>) =>
  validateConfig({ connections: [{ name: 'anthropic', credential: { env: 'K' }, ...fields }] }).connections[0]!;

const WHERE = 'connections[0].proxy';
/** The proxy of a connection, as the gateway chooses it. */
const via = (c: ReturnType<typeof connection>, env: NodeJS.ProcessEnv) => egressProxy(c.upstream, c.proxy, WHERE, env);

describe('which proxy a connection goes through', () => {
  it('takes the one its config names, reading it from the environment when it holds a password', () => {
    expect(via(connection({ proxy: 'http://proxy.example:3128' }), {})).toEqual({
      uri: 'http://proxy.example:3128/',
      shown: 'http://proxy.example:3128',
      from: WHERE,
    });
    const fromEnv = via(connection({ proxy: { env: 'CORP_PROXY' } }), {
      CORP_PROXY: 'http://svc:pw@proxy.example:3128',
    });
    expect(fromEnv).toEqual({
      uri: 'http://svc:pw@proxy.example:3128/',
      shown: 'http://proxy.example:3128',
      from: WHERE,
    });
    // Named, even for a loopback upstream, and whatever the environment's proxies say.
    expect(via(connection({ upstream: 'http://127.0.0.1:9090', proxy: 'http://p:1' }), { NO_PROXY: '*' })?.shown).toBe(
      'http://p:1',
    );
  });

  it('reads https_proxy for an https upstream unless no_proxy names its host; none for a loopback upstream or proxy: none', () => {
    const c = connection({});
    expect(via(c, {})).toBeNull();
    expect(via(c, { HTTPS_PROXY: 'http://proxy:3128' })).toMatchObject({
      shown: 'http://proxy:3128',
      from: 'HTTPS_PROXY',
    });
    expect(via(c, { https_proxy: 'http://lower:1', HTTPS_PROXY: 'http://upper:2' })?.from).toBe('https_proxy');
    expect(via(c, { HTTP_PROXY: 'http://proxy:3128' })).toBeNull(); // http_proxy is for http upstreams
    // Without a scheme, as environments often give it: http, as curl reads it.
    expect(via(c, { HTTPS_PROXY: 'proxy.corp:3128' })?.uri).toBe('http://proxy.corp:3128/');
    expect(via(c, { HTTPS_PROXY: 'http://proxy:3128', NO_PROXY: 'localhost,.anthropic.com' })).toBeNull();
    expect(via(connection({ proxy: 'none' }), { HTTPS_PROXY: 'http://proxy:3128' })).toBeNull();
    const loopback = connection({ upstream: 'http://127.0.0.1:9090' });
    expect(via(loopback, { HTTP_PROXY: 'http://proxy:3128', http_proxy: 'http://proxy:3128' })).toBeNull();
  });

  it('names what to fix rather than go direct when the proxy it was given cannot be used', () => {
    expect(() => via(connection({ proxy: { env: 'UNSET_PROXY' } }), {})).toThrow(ConfigError);
    const config = validateConfig({
      connections: [
        { name: 'a', credential: { env: 'K' }, proxy: { env: 'UNSET_PROXY' } },
        { name: 'b', credential: { env: 'K' } },
      ],
      siem: {
        sinks: [
          { type: 'syslog', name: 'local', transport: 'udp', host: '127.0.0.1', port: 514 },
          { type: 'http', name: 'soc', url: 'http://127.0.0.1:9000/events', proxy: { env: 'UNSET_SINK_PROXY' } },
        ],
      },
    });
    expect(egressProxyProblems(config, { HTTPS_PROXY: 'socks5://proxy:1080' })).toEqual([
      'connections[0] (a).proxy: environment variable UNSET_PROXY is not set or empty',
      "HTTPS_PROXY (the gateway's environment): a socks5: proxy is not supported; give an http:// or https:// proxy",
      'siem.sinks[1] (soc).proxy: environment variable UNSET_SINK_PROXY is not set or empty',
    ]);
  });

  it('refuses a proxy URL with a password written in the config, or not http(s)', () => {
    const problems = (proxy: unknown): string[] => {
      try {
        connection({ proxy });
        return [];
      } catch (err) {
        return [...(err as ConfigError).problems];
      }
    };
    expect(problems('http://svc:pw@proxy.example:3128')).toEqual([
      expect.stringContaining('must not contain a user or password: give a proxy URL with one as { env: NAME }'),
    ]);
    expect(problems('socks5://proxy:1080')).toEqual([expect.stringContaining('must be an http:// or https:// proxy')]);
    expect(problems('proxy.example:3128')).toEqual([expect.stringContaining('http(s) proxy URL')]);
    expect(problems('none')).toEqual([]);
  });
});

describe('no_proxy', () => {
  const api = new URL('https://api.anthropic.com');
  it.each([
    ['*', true],
    ['anthropic.com', true],
    ['.anthropic.com', true],
    ['*.anthropic.com', true],
    ['api.anthropic.com:443', true],
    ['api.anthropic.com:8443', false],
    ['thropic.com', false],
    ['localhost, 10.0.0.1  api.anthropic.com', true],
    ['', false],
  ])('%j exempts https://api.anthropic.com: %s', (list, exempt) => {
    expect(noProxyMatches(api, list)).toBe(exempt);
  });

  it('matches IP addresses exactly, v6 with or without brackets', () => {
    expect(noProxyMatches(new URL('http://10.1.2.3:8080'), '10.1.2.3')).toBe(true);
    expect(noProxyMatches(new URL('http://10.1.2.30:8080'), '10.1.2.3')).toBe(false);
    expect(noProxyMatches(new URL('http://[fd00::1]:8080'), '[fd00::1]')).toBe(true);
    expect(noProxyMatches(new URL('http://[fd00::1]:8080'), 'fd00::1')).toBe(true);
  });

  it('matches IP addresses within CIDR ranges, and never a host name by its range', () => {
    // Went wrong: `NO_PROXY=10.0.0.0/8`, as clusters set it, was read as a host name, so internal upstreams given by
    // address went through the egress proxy.
    const list = 'localhost, 10.0.0.0/8, 192.168.10.0/24, fd00::/8';
    expect(noProxyMatches(new URL('http://10.200.3.4:8080'), list)).toBe(true);
    expect(noProxyMatches(new URL('https://192.168.10.77'), list)).toBe(true);
    expect(noProxyMatches(new URL('https://192.168.11.77'), list)).toBe(false);
    expect(noProxyMatches(new URL('https://11.0.0.1'), list)).toBe(false);
    expect(noProxyMatches(new URL('http://[fd12::7]:8080'), list)).toBe(true);
    expect(noProxyMatches(new URL('http://[fe80::1]:8080'), list)).toBe(false);
    expect(noProxyMatches(new URL('https://api.anthropic.com'), list)).toBe(false); // not resolved
    expect(noProxyMatches(new URL('https://10.1.1.1'), '10.0.0.0/33, 10.0.0.0/x, ::/0')).toBe(false); // malformed, or v6
    expect(noProxyMatches(new URL('https://10.1.1.1'), '0.0.0.0/0')).toBe(true);
    // From the environment, as the gateway reads it.
    const env = { HTTPS_PROXY: 'http://egress.example:3128', NO_PROXY: list };
    expect(egressProxy('https://10.9.9.9/', undefined, WHERE, env)).toBeNull();
    expect(egressProxy('https://api.anthropic.com/', undefined, WHERE, env)?.from).toBe('HTTPS_PROXY');
  });
});
