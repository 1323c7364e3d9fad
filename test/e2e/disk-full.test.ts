/**
 * The disk under the store fills up, for real: the data directory is on a small tmpfs this test mounts (it needs root,
 * as CI has; where it may not mount, the test is skipped and CI's skipped count shows it). While the disk is full,
 * calls that must be recorded are refused (503, so SDKs retry); the records of a stream already forwarded are held,
 * and written — complete, in order — once there is room again; the chain verifies.
 */
import { mkdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postMessages, postSlowStream, startHarness, type Harness } from '../support/gateway-harness.js';
import { fillDisk, mountTmpfs, tmpfsMountable, unmountTmpfs } from '../support/tmpfs.js';
import { until } from '../support/until.js';

interface LogLine {
  level: number;
  msg: string;
  err?: { stack?: string };
  cause?: string;
  outageMs?: number;
}

/** `vigil_store_refusing_writes` as /metrics reads it. */
async function refusingGauge(h: Harness): Promise<string | undefined> {
  const text = await (await fetch(`${h.gateway.adminUrl}/metrics`)).text();
  return /^vigil_store_refusing_writes (\d+)$/m.exec(text)?.[1];
}

async function health(h: Harness): Promise<{ store: string; recording_backlog: number }> {
  return (await (await fetch(`${h.url}/healthz`)).json()) as { store: string; recording_backlog: number };
}

describe.skipIf(!tmpfsMountable)('a full disk under the embedded store', () => {
  // Mounted when the tests run, not as the file is collected (see tmpfsMountable).
  let mountDir: string | null = null;
  let h: Harness;
  let dataDir: string;
  let filler: string;
  const logs: LogLine[] = [];

  beforeAll(async () => {
    mountDir = mountTmpfs('6m')!;
    dataDir = path.join(mountDir, 'data');
    filler = path.join(mountDir, 'filler');
    mkdirSync(dataDir);
    const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
    h = await startHarness(
      (upstream) => ({
        data_dir: dataDir,
        connections: [
          { name: 'anthropic', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' } },
          { name: 'lenient', upstream, credential: { env: 'VIGIL_TEST_UPSTREAM_KEY' }, recording: 'best_effort' },
        ],
      }),
      {},
      { log },
    );
  });
  afterAll(async () => {
    try {
      await h?.close();
    } finally {
      if (mountDir !== null) unmountTmpfs(mountDir);
    }
  });

  it('refuses calls while full, keeps the records of a stream in flight, and writes them once there is room', async () => {
    // A stream forwarded before the disk fills: one event every 40 ms.
    const res = await postSlowStream(h.url, 'disk-full');
    expect(res.status).toBe(200);
    const streamId = res.headers.get('x-vigil-exchange-id')!;
    const reader = res.body!.getReader();
    const received: string[] = [];
    const first = await reader.read();
    received.push(Buffer.from(first.value!).toString());
    const rest = (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        received.push(Buffer.from(value).toString());
      }
    })();

    expect(fillDisk(filler)).toBeGreaterThan(0);
    // Calls until one is refused: the log may still have room for a few.
    const statuses: number[] = [];
    for (let i = 0; i < 100 && !statuses.includes(503); i++) {
      const r = await postMessages(h.url, 'disk-full-others', { messages: [{ role: 'user', content: `call ${i}` }] });
      statuses.push(r.status);
      if (r.status === 503) {
        expect(r.headers.get('retry-after')).toBe('1');
        expect(await r.json()).toEqual({
          type: 'error',
          error: { type: 'api_error', message: 'the gateway cannot record this request, so it was not forwarded' },
        });
      } else await r.arrayBuffer();
    }
    expect(statuses.at(-1)).toBe(503);
    await until(
      'the store to refuse writes',
      async () => ((await health(h)).store === 'refusing_writes' ? true : undefined),
      3_000,
    );
    // Read apart from health: a probe of the few records held may still fit (the log's file has room it made before),
    // ending the outage for a moment until the next write fails. The gauge must say so while it lasts.
    await until(
      'the refusing-writes gauge to say so',
      async () => ((await refusingGauge(h)) === '1' ? true : undefined),
      3_000,
    );

    // A connection that records best effort forwards meanwhile; its request is held with the rest of its records.
    const lenient = await postMessages(`${h.url}/c/lenient`, 'disk-full-lenient', {
      messages: [{ role: 'user', content: 'recorded later' }],
    });
    expect(lenient.status).toBe(200);
    await lenient.arrayBuffer();
    const lenientId = lenient.headers.get('x-vigil-exchange-id')!;

    unlinkSync(filler); // room again
    await rest;
    const stream = await h.exchange(streamId);
    expect(stream.outcome).toBe('ok');
    const sent = received.join('').match(/^event: /gm)!.length;
    expect(stream.response.events).toHaveLength(sent);
    expect(stream.response.events.at(-1)?.type).toBe('message_stop');
    expect(stream.response.stop_reason).toBe('end_turn');

    const late = await h.exchange(lenientId);
    expect(late).toMatchObject({ outcome: 'ok', connection: 'lenient', response: { status: 200 } });
    expect(late.request.body).toMatchObject({ messages: [{ role: 'user', content: 'recorded later' }] });

    await until(
      'the store to take writes again',
      async () => ((await health(h)).store === 'ok' ? true : undefined),
      5_000,
    );
    expect(await refusingGauge(h)).toBe('0');
    const after = await postMessages(h.url, 'disk-full-others', { messages: [{ role: 'user', content: 'after' }] });
    expect(after.status).toBe(200);
    expect((await h.exchange(after.headers.get('x-vigil-exchange-id')!)).outcome).toBe('ok');
    expect((await h.gateway.store.verify()).ok).toBe(true);

    // The log: the outage's beginning with its error, a short line per call refused meanwhile, its end.
    const refusedCalls = statuses.filter((s) => s === 503).length;
    // Once when an outage began and once when it ended. Usually one outage; on a loaded host the WAL can be started
    // over (the background checkpointer) and take a write while the disk is still full, ending it early: then a second
    // outage begins and ends, and is logged the same way — never two beginnings in a row.
    const began = logs.filter((l) => l.msg.startsWith('the store refuses writes'));
    expect(began.length).toBeGreaterThanOrEqual(1);
    expect(began[0]!.err?.stack).toMatch(/database or disk is full/);
    const outageLines = logs
      .filter((l) => began.includes(l) || l.msg.startsWith('the store accepts writes again'))
      .map((l) => (began.includes(l) ? 'began' : 'ended'));
    expect(outageLines).toEqual(began.flatMap(() => ['began', 'ended']));
    const refused = logs.filter((l) => l.msg.startsWith('request refused'));
    expect(refused).toHaveLength(refusedCalls);
    for (const l of refused) {
      expect(l).toMatchObject({ level: 40, cause: 'database or disk is full' });
      expect(l.err).toBeUndefined();
    }
    expect(logs.filter((l) => l.msg.startsWith('recording failed'))).toMatchObject([
      { level: 40, msg: expect.stringMatching(/forwarding anyway \(best_effort\), the request held for it$/) },
    ]);
    const ended = logs.filter((l) => l.msg.startsWith('the store accepts writes again'));
    for (const l of ended) expect(l.outageMs).toBeGreaterThan(0);
  });
});
