/**
 * HTTPS on the gateway's own listeners: the official SDK and Claude Code reach the proxy over TLS with the company's
 * CA, the admin API is served over TLS too, a renewed certificate is served to new connections without a restart, and
 * a certificate and key that do not belong together stop start-up naming the key to fix.
 */
import Anthropic from '@anthropic-ai/sdk';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from 'node:tls';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load-config.js';
import { checkStartable, plainHttpWarning } from '../../src/gateway.js';
import { runAgent } from '../support/agent.js';
import { CLIENT_KEY, startHarness, type Harness } from '../support/gateway-harness.js';
import { selfSigned, type SelfSigned } from '../support/self-signed.js';
import { until } from '../support/until.js';

let dir: string;
let first: SelfSigned;
let renewed: SelfSigned;
let served: { cert: string; key: string };
let h: Harness;
let trusting: Agent;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'vigil-tls-'));
  [first, renewed] = await Promise.all([selfSigned(dir, 'first'), selfSigned(dir, 'renewed')]);
  // The files the config names; the renewal is copied over them.
  served = { cert: path.join(dir, 'gateway.crt'), key: path.join(dir, 'gateway.key') };
  copyFileSync(first.certFile, served.cert);
  copyFileSync(first.keyFile, served.key);
  const tls = { cert: { file: served.cert }, key: { file: served.key }, reload: '100ms' };
  h = await startHarness(() => ({ tls, admin: { listen: '127.0.0.1:0', tls } }));
  trusting = new Agent({ connect: { ca: [first.pem, renewed.pem] } });
});
afterAll(async () => {
  await trusting?.close();
  await h?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The SDK with the company's CA: fetch through an agent that trusts it. */
function sdk(baseURL: string): Anthropic {
  return new Anthropic({
    baseURL,
    apiKey: CLIENT_KEY,
    maxRetries: 0,
    fetch: ((url: string, init: RequestInit) =>
      undiciFetch(url, { ...(init as object), dispatcher: trusting })) as unknown as typeof fetch,
  });
}

/** The certificate a new TLS connection to `url` is served (its subject's CN). */
function servedName(url: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port), ca: [first.pem, renewed.pem] }, () => {
      const cn = socket.getPeerCertificate().subject.CN as string | string[] | undefined;
      socket.end();
      resolve(Array.isArray(cn) ? cn.join(',') : (cn ?? ''));
    });
    socket.on('error', reject);
  });
}

describe('TLS on the listeners', () => {
  it('serves the proxy over HTTPS to the SDK, streaming, and records the call', async () => {
    expect(h.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const stream = sdk(h.url).messages.stream(
      { model: 'claude-haiku-4-5', max_tokens: 30, messages: [{ role: 'user', content: 'hello over tls' }] },
      { headers: { 'x-vigil-session': 'tls-sdk' } },
    );
    const message = await stream.finalMessage();
    expect(message.stop_reason).toBe('end_turn');
    const [x] = await h.session('tls-sdk', 1);
    expect(x!.response.events.length).toBeGreaterThan(3);
    expect(x!.request.body).toMatchObject({ messages: [{ content: 'hello over tls' }] });
    // Plain HTTP on the TLS port gets no answer, and a client that does not trust the CA is refused the handshake.
    await expect(fetch(h.url.replace('https:', 'http:') + '/healthz')).rejects.toThrow();
    await expect(fetch(`${h.url}/healthz`)).rejects.toThrow();
  });

  it('points a batch’s results_url back at the gateway’s https address', async () => {
    const client = sdk(h.url);
    const batch = await client.messages.batches.create({
      requests: [
        {
          custom_id: 'a',
          params: { model: 'claude-haiku-4-5', max_tokens: 5, messages: [{ role: 'user', content: 'in a batch' }] },
        },
      ],
    });
    expect(batch.results_url).toBe(`${h.url}/v1/messages/batches/${batch.id}/results`);
    const results = [];
    for await (const r of await client.messages.batches.results(batch.id)) results.push(r.custom_id);
    expect(results).toEqual(['a']);
  });

  it('serves the admin API over HTTPS', async () => {
    expect(h.gateway.adminUrl).toMatch(/^https:\/\//);
    const res = await undiciFetch(`${h.gateway.adminUrl}/api/v1/sessions?caller=anonymous`, { dispatcher: trusting });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { items: Array<{ id: string }> }).items.map((s) => s.id)).toContain('tls-sdk');
  });

  it('runs Claude Code against the gateway over HTTPS with the CA in NODE_EXTRA_CA_CERTS', async () => {
    const work = mkdtempSync(path.join(tmpdir(), 'vigil-tls-agent-'));
    try {
      const messages = await runAgent(h.url, 'Say hello over TLS', work, CLIENT_KEY, 'ANTHROPIC_API_KEY', {
        NODE_EXTRA_CA_CERTS: first.certFile,
      });
      expect(messages.find((m) => m.type === 'result')).toMatchObject({ subtype: 'success' });
      const sessionId = (messages.find((m) => m.type === 'system') as { session_id: string }).session_id;
      const [x] = await h.session(sessionId, 1);
      expect(x!.outcome).toBe('ok');
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 120_000);

  it('serves a renewed certificate to new connections, without a restart', async () => {
    expect(await servedName(h.url)).toBe('first');
    const kept = sdk(h.url); // its pooled connection keeps the first certificate; new ones get the renewal
    await kept.models.list();
    copyFileSync(renewed.keyFile, served.key);
    copyFileSync(renewed.certFile, served.cert);
    await until('the renewed certificate to be served', async () =>
      (await servedName(h.url)) === 'renewed' ? true : undefined,
    );
    // The admin listener looks at the files on its own timer.
    await until('the admin listener to serve it too', async () =>
      (await servedName(h.gateway.adminUrl!)) === 'renewed' ? true : undefined,
    );
    const models = await kept.models.list();
    expect(models.data.length).toBeGreaterThan(0);
  });
});

describe('TLS in the config', () => {
  it('stops start-up when the certificate and key do not belong together, or cannot be read', () => {
    const problems = (tls: unknown, admin: unknown = undefined): string => {
      try {
        checkStartable(
          validateConfig({ connections: [{ name: 'anthropic' }], tls, ...(admin ? { admin: { tls: admin } } : {}) }),
        );
        return '';
      } catch (err) {
        return (err as Error).message;
      }
    };
    const mismatched = { cert: { file: first.certFile }, key: { file: renewed.keyFile } };
    expect(problems(mismatched, mismatched)).toMatch(
      /^invalid configuration:\n {2}- tls: the certificate and key cannot be used together \(.*\): cert must be a PEM certificate chain and key the PEM private key of its first certificate\n {2}- admin\.tls: the certificate and key cannot be used together/,
    );
    expect(problems({ cert: { file: path.join(dir, 'missing.crt') }, key: { env: 'VIGIL_TEST_UNSET_TLS_KEY' } })).toBe(
      'invalid configuration:\n' +
        `  - tls.cert: cannot read ${path.join(dir, 'missing.crt')} (ENOENT)\n` +
        '  - tls.key: environment variable VIGIL_TEST_UNSET_TLS_KEY is not set or empty',
    );
    expect(problems({ cert: { file: first.certFile }, key: { file: first.keyFile } })).toBe('');
  });

  it('warns when callers’ credentials would cross the network in clear', () => {
    const warning = (input: Record<string, unknown>): string | null =>
      plainHttpWarning(validateConfig({ connections: [{ name: 'anthropic' }], ...input }));
    expect(warning({ listen: '0.0.0.0:8080' })).toMatch(/^the proxy listens beyond loopback over plain HTTP/);
    expect(warning({ listen: '127.0.0.1:8080' })).toBeNull();
    expect(warning({ listen: '0.0.0.0:8080', public_url: 'https://claude-gw.example.com' })).toBeNull();
    expect(
      warning({ listen: '0.0.0.0:8443', tls: { cert: { file: first.certFile }, key: { file: first.keyFile } } }),
    ).toBeNull();
  });
});
