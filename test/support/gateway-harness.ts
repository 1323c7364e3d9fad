/**
 * A gateway under test: the fake Anthropic upstream plus a Vigil gateway in-process, on ports of their own, with a
 * fresh data directory. Everything stops in `close()`.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { validateConfig } from '../../src/config/load-config.js';
import type { VigilConfigInput } from '../../src/config/config-schema.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import type { ExchangeView } from '../../src/recorder/exchange-reader.js';
import { readExchange, readSession } from '../../src/recorder/exchange-reader.js';
import { startFakeAnthropic, type FakeAnthropic } from '../../src/sandbox/fake-anthropic.js';

export const GATEWAY_KEY = 'sk-ant-api03-GATEWAY-OWN-SECRET-0123456789abcdefghijklmnopqrstuvwxyz';
export const CLIENT_KEY = 'sk-ant-api03-CLIENT-TOKEN-THAT-MUST-NOT-LEAK-9876543210zyxwvu';

export interface Harness {
  readonly fake: FakeAnthropic;
  readonly gateway: Gateway;
  readonly dataDir: string;
  readonly url: string;
  /** Wait until `n` exchanges of the session (or in total, without a session) have their final record. */
  exchange(id: string): Promise<ExchangeView>;
  session(id: string, count: number): Promise<ExchangeView[]>;
  close(): Promise<void>;
}

export function tempDir(prefix = 'vigil-test-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

export async function startHarness(
  overrides: (upstream: string) => Partial<VigilConfigInput> = () => ({}),
  fakeOptions: Parameters<typeof startFakeAnthropic>[0] = {},
  /**
   * `log`: the gateway's logger (default: silent). `reloadable`: the gateway reads its config again for a reload (as
   * `vigil serve` does its file) by calling `overrides` again.
   */
  options: { log?: pino.Logger; reloadable?: boolean } = {},
): Promise<Harness> {
  process.env.VIGIL_TEST_UPSTREAM_KEY = GATEWAY_KEY;
  const fake = await startFakeAnthropic({ apiKey: GATEWAY_KEY, ...fakeOptions });
  const dataDir = tempDir();
  const readConfig = () =>
    validateConfig({
      listen: '127.0.0.1:0',
      data_dir: dataDir,
      connections: [
        {
          name: 'anthropic',
          upstream: fake.url,
          credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
          upstream_timeout: '5s',
        },
      ],
      ...overrides(fake.url),
    });
  const gateway = await startGateway(readConfig(), {
    log: options.log ?? pino({ level: 'silent' }),
    ...(options.reloadable ? { readConfig } : {}),
  });

  async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const v = await probe();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  return {
    fake,
    gateway,
    dataDir,
    url: gateway.url,
    exchange: (id) =>
      waitFor(`exchange ${id}`, async () => {
        const x = await readExchange(gateway.store, id);
        return x && x.outcome !== 'in_progress' ? x : undefined;
      }),
    session: (id, count) =>
      waitFor(`${count} exchanges in session ${id}`, async () => {
        const xs = await readSession(gateway.store, id);
        return xs.length >= count && xs.every((x) => x.outcome !== 'in_progress') ? xs : undefined;
      }),
    async close() {
      await gateway.close(1000);
      await fake.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The headers a client of the harness sends a Messages API request with: JSON, its key, in `session`. */
export function clientHeaders(session: string): Record<string, string> {
  return {
    'content-type': 'application/json',
    'anthropic-version': '2023-06-01',
    'x-api-key': CLIENT_KEY,
    'x-vigil-session': session,
  };
}

/**
 * POSTs a Messages API request to `${base}/v1/messages` with the client's key, in `session`: `request` is added to a
 * small default body (a model, max_tokens 20, no messages).
 */
export function postMessages(
  base: string,
  session: string,
  request: Record<string, unknown>,
  init: { signal?: AbortSignal } = {},
): Promise<Response> {
  return fetch(`${base}/v1/messages`, {
    method: 'POST',
    headers: clientHeaders(session),
    body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 20, messages: [], ...request }),
    ...init,
  });
}

/** A streamed Messages API call in `session` whose answer takes a while: 11 events, one every 40 ms (or as `scenario` says). */
export function postSlowStream(base: string, session: string, scenario = 'slow:40'): Promise<Response> {
  return fetch(`${base}/v1/messages`, {
    method: 'POST',
    headers: { ...clientHeaders(session), 'x-fake-scenario': scenario },
    body: JSON.stringify({
      model: 'claude-haiku-4-5',
      max_tokens: 200,
      stream: true,
      messages: [{ role: 'user', content: 'tell me a long story about a lighthouse keeper and the sea' }],
    }),
  });
}

/** Every file under `dir`, read as bytes, searched for `needle`: returns the files that contain it. */
export function filesContaining(dir: string, needle: string): string[] {
  const hits: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = path.join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (readFileSync(p).includes(Buffer.from(needle))) hits.push(p);
    }
  };
  walk(dir);
  return hits;
}
