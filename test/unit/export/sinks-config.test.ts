import { describe, expect, it } from 'vitest';
import { resolveFileRefs } from '../../../src/config/file-refs.js';
import { siemConfigSchema, sinkConfigSchema } from '../../../src/export/sinks-config.js';

/** The messages an operator would see, as `path: message`. */
function problems(input: unknown): string[] {
  const result = siemConfigSchema.safeParse(input);
  if (result.success) return [];
  return result.error.issues.map((i) => {
    const keys = i.code === 'unrecognized_keys' ? ` ${i.keys.join(',')}` : '';
    return `${i.path.join('.')}: ${i.message}${keys}`;
  });
}

describe('siem.sinks config', () => {
  it('refuses credentials in a URL, which would reach logs and error texts, and says where to put them', () => {
    const found = problems({
      sinks: [
        { type: 'http', name: 'hook', url: 'https://user:s3cret@hooks.example.com/vigil' },
        { type: 'otlp', name: 'otel', endpoint: 'https://user:s3cret@collector:4318' },
      ],
    });
    expect(found).toEqual([
      expect.stringMatching(/^sinks\.0\.url: must not carry credentials \(user:password@\): put them in headers/),
      expect.stringMatching(/^sinks\.1\.endpoint: must not carry credentials/),
    ]);
    expect(found.join('\n')).not.toContain('s3cret');
  });

  it('fills the documented defaults', () => {
    const { sinks } = siemConfigSchema.parse({
      sinks: [
        { type: 'syslog', name: 'soc', transport: 'tls', host: 'siem.example.com', port: 6514 },
        { type: 'http', name: 'hook', url: 'https://hooks.example.com/vigil' },
        { type: 'splunk_hec', name: 'splunk', url: 'https://splunk:8088', token: { env: 'HEC_TOKEN' } },
        { type: 'otlp', name: 'otel', endpoint: 'http://collector:4318' },
      ],
    });
    expect(sinks[0]).toEqual({
      type: 'syslog',
      name: 'soc',
      transport: 'tls',
      host: 'siem.example.com',
      port: 6514,
      reject_unauthorized: true,
      app_name: 'vigil',
      facility: 'authpriv',
      max_message_size: 8192,
      timeout: 10_000,
      include_content: false,
    });
    expect(sinks[1]).toMatchObject({
      batch_size: 100,
      max_body_size: 64 * 1024 * 1024,
      timeout: 10_000,
      include_content: false,
    });
    expect(sinks[2]).toMatchObject({ source: 'vigil', sourcetype: 'vigil:audit', timeout: 10_000 });
    expect(sinks[3]).toMatchObject({ endpoint: 'http://collector:4318', timeout: 10_000 });
    expect(siemConfigSchema.parse({})).toEqual({ sinks: [] });
  });

  it('parses durations', () => {
    const parse = (timeout: unknown): number => {
      const sink = sinkConfigSchema.parse({ type: 'otlp', name: 'o', endpoint: 'http://c:4318', timeout });
      return sink.timeout;
    };
    expect([parse('250ms'), parse('10s'), parse('2m'), parse(1500)]).toEqual([250, 10_000, 120_000, 1500]);
    expect(problems({ sinks: [{ type: 'otlp', name: 'o', endpoint: 'http://c:4318', timeout: 'soon' }] })).toEqual([
      'sinks.0.timeout: must be a duration such as 500ms, 30s, 5m, 2h or 30d (got "soon")',
    ]);
  });

  it('rejects unknown keys, secrets written inline and unknown sink types', () => {
    expect(problems({ sinks: [{ type: 'http', name: 'h', url: 'https://x', batchSize: 5 }] })).toEqual([
      'sinks.0: Unrecognized key: "batchSize" batchSize',
    ]);
    expect(problems({ sinks: [{ type: 'splunk_hec', name: 's', url: 'https://x', token: 'abc-123' }] })).toHaveLength(
      1,
    );
    expect(problems({ sinks: [{ type: 'http', name: 'h', url: 'https://x', secret: { value: 'x' } }] })).toHaveLength(
      1,
    );
    expect(problems({ sinks: [{ type: 'kafka', name: 'k' }] })[0]).toMatch(/^sinks.0.type: /);
  });

  it('checks syslog options against the transport', () => {
    const base = { type: 'syslog', name: 's', host: 'h', port: 514 };
    expect(problems({ sinks: [{ ...base, transport: 'tcp', ca: { file: 'ca.pem' } }] })).toEqual([
      'sinks.0.ca: applies only to transport: tls',
    ]);
    expect(problems({ sinks: [{ ...base, transport: 'tls', cert: { file: 'c.pem' } }] })).toEqual([
      'sinks.0.key: cert and key go together (mutual TLS)',
    ]);
    expect(problems({ sinks: [{ ...base, transport: 'udp', facility: 'kern' }] })[0]).toMatch(/^sinks.0.facility: /);
    expect(problems({ sinks: [{ ...base, transport: 'tcp', app_name: 'has space' }] })[0]).toMatch(
      /^sinks.0.app_name: /,
    );
  });

  it('rejects duplicate sink names, which would share an outbox cursor', () => {
    const sink = { type: 'otlp', name: 'otel', endpoint: 'http://c:4318' };
    expect(problems({ sinks: [sink, sink] })).toEqual(['sinks.1.name: duplicate sink name "otel"']);
  });

  it('rejects URLs that are not http(s)', () => {
    expect(problems({ sinks: [{ type: 'http', name: 'h', url: 'ftp://x/' }] })[0]).toMatch(/^sinks.0.url: /);
    expect(problems({ sinks: [{ type: 'otlp', name: 'o', endpoint: 'collector:4318' }] })[0]).toMatch(
      /^sinks.0.endpoint: /,
    );
  });

  it('resolves relative file references against the config folder', () => {
    const sink = sinkConfigSchema.parse({
      type: 'syslog',
      name: 's',
      transport: 'tls',
      host: 'h',
      port: 6514,
      ca: { file: 'certs/ca.pem' },
      cert: { file: '/etc/vigil/client.pem' },
      key: { file: 'client.key' },
    });
    resolveFileRefs(sink, '/etc/vigil');
    expect(sink.type === 'syslog' && [sink.ca, sink.cert, sink.key]).toEqual([
      { file: '/etc/vigil/certs/ca.pem' },
      { file: '/etc/vigil/client.pem' },
      { file: '/etc/vigil/client.key' },
    ]);
    const hook = sinkConfigSchema.parse({
      type: 'http',
      name: 'h',
      url: 'https://x',
      secret: { file: 'hook.secret' },
      headers: { authorization: { file: 'auth' }, 'x-a': 'b' },
    });
    resolveFileRefs(hook, '/cfg');
    expect(hook.type === 'http' && [hook.secret, hook.headers]).toEqual([
      { file: '/cfg/hook.secret' },
      { authorization: { file: '/cfg/auth' }, 'x-a': 'b' },
    ]);
  });
});
