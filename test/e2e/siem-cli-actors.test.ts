/**
 * What the CLI does reaches the SIEM under the name the access log and approvals know its user by: a gateway key created
 * and revoked, a legal hold placed and released, and a held call approved with the `vigil` CLI (another process,
 * writing its own chain) arrive at a real HTTP receiver with the actor `local_user` `cli:<user>`. Needs
 * `npm run build` (the CLI runs from dist/).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/export/audit-event.js';
import { vigil } from '../support/cli.js';
import { startHarness, type Harness } from '../support/gateway-harness.js';
import { startRecordingHttpServer, type RecordingHttpServer, postedEvents } from '../support/recording-http-server.js';
import { until } from '../support/until.js';

let h: Harness;
let receiver: RecordingHttpServer;

beforeAll(async () => {
  receiver = await startRecordingHttpServer();
  h = await startHarness((upstream) => ({
    connections: [
      {
        name: 'anthropic',
        upstream,
        credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' },
        approvals: [{ name: 'large answers', action: 'hold', when: { max_tokens_above: 4096 }, timeout: '30s' }],
      },
    ],
    siem: { sinks: [{ type: 'http', name: 'webhook', url: `${receiver.url}/events`, timeout: '2s' }] },
  }));
}, 30_000);

afterAll(async () => {
  await h?.close();
  await receiver?.close();
});

const received = (): AuditEvent[] => postedEvents(receiver.requests);

it('keys, legal holds and approvals done with the CLI reach the SIEM as the local_user the access log names', async () => {
  // Went wrong: key and hold events named the CLI's user with method `cli`, approvals and the access log with
  // `local_user`: one person, two names, and a SIEM rule on `local_user` missed what they did to keys and holds.
  const cli = async (args: string[], user: string): Promise<string> => {
    const r = await vigil([...args, '--data-dir', h.dataDir], { USER: user });
    expect(r.stderr).not.toMatch(/^vigil: (?!warning)/m);
    expect(r.code).toBe(0);
    return r.stdout.trim();
  };
  await cli(['keys', 'create', '--name', 'ci-bot'], 'carol');
  await cli(['keys', 'revoke', 'ci-bot'], 'carol');
  const holdId = await cli(['holds', 'add', '--session', 'case-7', '--reason', 'litigation'], 'lena');
  await cli(['holds', 'release', holdId, '--reason', 'case closed'], 'lena');

  const call = fetch(`${h.url}/v1/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': 'unused' },
    body: JSON.stringify({
      model: 'claude-haiku-4-5',
      max_tokens: 8000,
      messages: [{ role: 'user', content: 'approve me from the shell' }],
    }),
  });
  const held = await until('a held call', async () => {
    const list = JSON.parse(await cli(['approvals', 'list', '--json'], 'dana')) as { items: Array<{ id: string }> };
    return list.items[0]?.id;
  });
  await cli(['approvals', 'approve', held], 'dana');
  expect((await call).status).toBe(200);

  const types = ['key.created', 'key.revoked', 'hold.added', 'hold.released', 'approval.decided'] as const;
  const events = await until(
    'the CLI’s events at the receiver',
    () => {
      const got = received();
      return types.every((t) => got.some((e) => e.type === t)) ? got : undefined;
    },
    30_000,
  );
  const actorOf = (type: (typeof types)[number]) => events.find((e) => e.type === type)?.actor;
  expect(actorOf('key.created')).toEqual({ method: 'local_user', subject: 'cli:carol' });
  expect(actorOf('key.revoked')).toEqual({ method: 'local_user', subject: 'cli:carol' });
  expect(actorOf('hold.added')).toEqual({ method: 'local_user', subject: 'cli:lena' });
  expect(actorOf('hold.released')).toEqual({ method: 'local_user', subject: 'cli:lena' });
  expect(actorOf('approval.decided')).toEqual({ method: 'local_user', subject: 'cli:dana' });
}, 90_000);
