/**
 * Recording the exchanges an earlier stop cut as interrupted, on a PostgreSQL store that several gateways share: only
 * a writer that stays gone has its open exchanges cut. One whose database session ended (here: a real TCP relay
 * between it and the server, cut) loses its chain lock until it connects again, and a gateway starting meanwhile must
 * not take it for dead — it would record as interrupted an exchange the writer then finishes: two endings for one.
 */
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Recorder } from '../../../src/recorder/recorder.js';
import type { AuditStore } from '../../../src/store/audit-store.js';
import { beginCall } from '../../support/recorder-begin.js';
import { POSTGRES_TEST_URL, createStoreFixture, storeKinds, type StoreFixture } from '../../support/stores.js';
import { TcpRelay } from '../../support/tcp-relay.js';
import { until } from '../../support/until.js';

const CHAIN_LOCK_CLASS = 0x56474c31;
const silent = pino({ level: 'silent' });

describe.runIf(storeKinds().includes('postgres'))('recovering interrupted exchanges on a shared PostgreSQL', () => {
  let fixture: StoreFixture;
  let relay: TcpRelay;
  let relayPort: number;
  const recorders: Recorder[] = [];

  beforeEach(async () => {
    fixture = await createStoreFixture('postgres');
    const target = new URL(POSTGRES_TEST_URL);
    relay = new TcpRelay({ host: target.hostname, port: Number(target.port || 5432) });
    relayPort = await relay.listen();
  });
  afterEach(async () => {
    for (const r of recorders.splice(0)) await r.close();
    await relay.close();
    await fixture.dispose();
  });

  const recorderOn = (store: AuditStore): Recorder => {
    const recorder = new Recorder(store, { log: silent, maxRecordedResponseBody: 1 << 20 });
    recorders.push(recorder);
    return recorder;
  };
  /** The recorder of a writer whose process ends with its exchanges open: never closed, so they stay open. */
  const crashingRecorderOn = (store: AuditStore): Recorder =>
    new Recorder(store, { log: silent, maxRecordedResponseBody: 1 << 20 });
  /** The outcomes recorded for `exchangeId`, in order. */
  const outcomes = async (store: AuditStore, exchangeId: string): Promise<string[]> =>
    (await store.exchangeRecords(exchangeId))
      .filter((r) => r.kind === 'exchange.response')
      .map((r) => (JSON.parse(r.data) as { outcome: string }).outcome);
  /** Whether the server shows `chain`'s lock held (by its writer's session). */
  const lockHeld = async (chain: string): Promise<boolean> =>
    (
      await fixture.sql(
        `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = ${CHAIN_LOCK_CLASS}::int4::oid
           AND objid = hashtext('${chain}')::oid`,
      )
    ).length > 0;

  it('leaves alone the open exchange of a writer cut off from the database and back within the grace', async () => {
    const a = await fixture.open({ port: relayPort });
    const rec = await beginCall(recorderOn(a), 'ex_cut');
    relay.cut();
    await until("the server to end the cut writer's session", async () =>
      (await lockHeld(a.chainId)) ? undefined : true,
    );

    const b = await fixture.open({ writerReconnectMs: 4_000 });
    const writer = recorders[0]!;
    const recovering = recorderOn(b).recoverInterrupted();
    await new Promise((r) => setTimeout(r, 200));
    relay.restore();
    await until('the writer to take its chain lock again', async () =>
      (await lockHeld(a.chainId)) ? true : undefined,
    );
    expect(await recovering).toBe(0);

    rec.responseStarted(200, { 'content-type': 'application/json' });
    rec.chunk(Buffer.from('{"type":"message","content":[]}'));
    await rec.finish();
    await writer.queue.flush();
    expect(await outcomes(b, 'ex_cut')).toEqual(['ok']);
    expect((await b.verify()).ok).toBe(true);
  });

  it("records a gone writer's open exchange as interrupted once the grace has passed, and not before", async () => {
    const a = await fixture.open();
    await beginCall(crashingRecorderOn(a), 'ex_dead');
    // The writer's process ends with the exchange open: its session, hence its chain lock, with it.
    await a.close();

    const b = await fixture.open({ writerReconnectMs: 2_000 });
    const started = Date.now();
    let recovered: number | undefined;
    const recovering = recorderOn(b)
      .recoverInterrupted()
      .then((n) => (recovered = n));
    await new Promise((r) => setTimeout(r, 300));
    expect(recovered).toBeUndefined();
    expect(await outcomes(b, 'ex_dead')).toEqual([]);
    await recovering;
    expect(recovered).toBe(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_000);
    expect(await outcomes(b, 'ex_dead')).toEqual(['interrupted']);
  });

  it("two gateways starting together record a gone writer's exchange as interrupted once between them", async () => {
    const a = await fixture.open();
    await beginCall(crashingRecorderOn(a), 'ex_both');
    await a.close();

    const [b, c] = await Promise.all([fixture.open({ writerReconnectMs: 0 }), fixture.open({ writerReconnectMs: 0 })]);
    const counts = await Promise.all([recorderOn(b).recoverInterrupted(), recorderOn(c).recoverInterrupted()]);
    expect(counts.sort()).toEqual([0, 1]);
    expect(await outcomes(b, 'ex_both')).toEqual(['interrupted']);
  });

  it('records nothing when stopped during the grace', async () => {
    const a = await fixture.open();
    await beginCall(crashingRecorderOn(a), 'ex_stopped');
    await a.close();

    const b = await fixture.open({ writerReconnectMs: 60_000 });
    const stop = new AbortController();
    const recovering = recorderOn(b).recoverInterrupted({ signal: stop.signal });
    await new Promise((r) => setTimeout(r, 100));
    stop.abort();
    expect(await recovering).toBe(0);
    expect(await outcomes(b, 'ex_stopped')).toEqual([]);
  });
});
