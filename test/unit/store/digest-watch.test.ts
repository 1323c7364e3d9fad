/**
 * The running gateway's watch on every chain's digests, on real stores of both kinds: a chain whose writer stopped
 * signing is found, alerted once (a `digest.overdue` record, which goes to the SIEM as `ledger.digest_overdue`) and
 * shown in the metrics; chains that digest on time, or stopped on a final digest, are not. The clock is the watch's
 * own and is moved, never waited for.
 *
 * Went wrong: nothing told a gateway that stopped writing `ledger.digest` records (stuck, tampered, its digest writes
 * failing) from one with nothing new to sign, and what it recorded meanwhile was covered by nothing.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { auditEventOf } from '../../../src/export/record-events.js';
import { Metrics } from '../../../src/observability/metrics.js';
import type { AuditStore } from '../../../src/store/audit-store.js';
import type { DigestOverdueData } from '../../../src/store/digest-overdue.js';
import { DigestWatch, type DigestWatchStatus } from '../../../src/store/digest-watch.js';
import { Digester } from '../../../src/store/digests.js';
import { SigningKey } from '../../../src/store/signing-key.js';
import { createStoreFixture, POSTGRES_TEST_URL, storeKinds, type StoreFixture } from '../../support/stores.js';

const MIN = 60_000;
const AFTER = 3 * MIN;
const GRACE = 1500;
const KEY = SigningKey.load(path.join(mkdtempSync(path.join(tmpdir(), 'vigil-key-')), 'key.pem'), { create: true });
const warnings: string[] = [];
const log = { warn: (_o: object, msg: string) => void warnings.push(msg) };

const note = (store: AuditStore, at: number) => store.append({ records: [{ kind: 'note', at, data: {} }] });
const alertsIn = async (store: AuditStore) =>
  (await store.recordsOfKinds(['digest.overdue'], 0, 100)).map((r) => ({
    record: r,
    data: JSON.parse(r.data) as DigestOverdueData,
  }));

function metricsOf(watch: DigestWatch): Metrics {
  return new Metrics({
    recordingFailures: () => 0,
    recordingBacklog: () => 0,
    storeRefusingWrites: () => false,
    sinks: () => [],
    digests: () => watch.status(),
  });
}

describe.each(storeKinds())('DigestWatch on %s', (kind) => {
  let fixture: StoreFixture;
  let gateway: AuditStore;
  let t0: number;
  let now: number;

  beforeEach(async () => {
    fixture = await createStoreFixture(kind);
    // A writer's lock seen free is confirmed this long after (PostgreSQL; 15 s by default).
    gateway = await fixture.open({ writerReconnectMs: GRACE });
    warnings.length = 0;
    t0 = Date.now();
    now = t0;
  });
  afterEach(async () => {
    await fixture?.dispose();
  });

  const watch = (): DigestWatch => new DigestWatch(gateway, { overdueAfterMs: AFTER, now: () => now, log });

  it('alerts once for a chain that went on recording without signing, and shows it in the metrics', async () => {
    // The gateway itself and a peer that stopped on its final digest both sign on time.
    const digester = new Digester(gateway, KEY, { intervalMs: 0 });
    await note(gateway, t0);
    await digester.digestNow(t0 + 1);
    const clean = await fixture.open();
    await note(clean, t0);
    await new Digester(clean, KEY, { intervalMs: 0 }).close();
    // A writer that signed once, then recorded for five minutes without signing again.
    const stuck = await fixture.open();
    const stuckDigester = new Digester(stuck, KEY, { intervalMs: 0 });
    await note(stuck, t0);
    await stuckDigester.digestNow(t0 + 1);
    await note(stuck, t0 + 1000);
    await note(stuck, t0 + 5 * MIN);
    now = t0 + 5 * MIN + 1000;

    const w = watch();
    const metrics = metricsOf(w);
    // PostgreSQL tells that the writer still runs: an alarm until it signs. On SQLite only the gateway's own writer is
    // taken for running (one gateway per file): a peer is gone, and once alerted it is counted as stopped instead.
    const alarm = kind === 'postgres';
    const both = (s: DigestWatchStatus) => [...s.overdue, ...s.stopped];
    try {
      const found = await w.check();
      expect(found.overdue.map((o) => o.chain)).toEqual(alarm ? [stuck.chainId] : []);
      expect(found.stopped.map((o) => o.chain)).toEqual(alarm ? [] : [stuck.chainId]);
      // A writer still running is judged against the clock (PostgreSQL can tell; on SQLite only the gateway's own).
      const undigestedMs = kind === 'postgres' ? 5 * MIN : 5 * MIN - 1000;
      expect(both(found)[0]).toEqual({
        chain: stuck.chainId,
        lastDigest: { chainSeq: 3, at: t0 + 1 },
        from: { chainSeq: 4, at: t0 + 1000 },
        to: { chainSeq: 5, at: t0 + 5 * MIN },
        undigestedMs,
      });

      const alerts = await alertsIn(gateway);
      expect(alerts.map((a) => a.data)).toEqual([
        {
          chain: stuck.chainId,
          fromSeq: 4,
          toSeq: 5,
          since: t0 + 1000,
          lastDigest: { chainSeq: 3, at: t0 + 1 },
          undigestedMs,
          overdueAfterMs: AFTER,
          writerRunning: kind === 'postgres',
        },
      ]);
      expect(alerts[0]!.record.chain).toBe(gateway.chainId);
      expect(warnings).toEqual([expect.stringContaining(`: chain ${stuck.chainId}: records #4..#5`)]);
      // What the outbox sends the SIEM.
      expect(auditEventOf(alerts[0]!.record, 'gw-1')).toMatchObject({
        type: 'ledger.digest_overdue',
        severity: 'alert',
        gateway: `gw-1/${gateway.chainId}`,
        attributes: {
          chain: stuck.chainId,
          from_seq: 4,
          to_seq: 5,
          since: new Date(t0 + 1000).toISOString(),
          undigested_seconds: undigestedMs / 1000,
          overdue_after_seconds: 180,
          last_digest_seq: 3,
          writer_running: kind === 'postgres',
        },
      });

      const text = await metrics.text();
      expect(text).toContain(`vigil_ledger_digests_overdue ${alarm ? 1 : 0}`);
      expect(text).toContain(`vigil_ledger_chains_stopped_undigested ${alarm ? 0 : 1}`);
      if (alarm) {
        expect(text).toContain(`vigil_ledger_undigested_seconds{chain="${stuck.chainId}"} ${undigestedMs / 1000}`);
      } else expect(text).not.toContain(stuck.chainId);
      expect(text).not.toContain(gateway.chainId);
      expect(text).not.toContain(clean.chainId);

      // Found again later, and by a gateway started since: still one alert, as the ledger says.
      now += MIN;
      expect(both(await w.check())).toHaveLength(1);
      // The gateway's own chain has the alert waiting for its next digest since: shown, not overdue.
      expect(await metrics.text()).toContain(`vigil_ledger_undigested_seconds{chain="${gateway.chainId}"} 60`);
      expect(both(await watch().check())).toHaveLength(1);
      expect(await alertsIn(gateway)).toHaveLength(1);

      // Signed at last: nothing overdue, and its series is gone.
      await stuckDigester.digestNow(now);
      await digester.digestNow(now);
      expect(both(await w.check())).toEqual([]);
      const after = await metrics.text();
      expect(after).toContain('vigil_ledger_digests_overdue 0');
      expect(after).toContain('vigil_ledger_chains_stopped_undigested 0');
      expect(after).not.toContain(stuck.chainId);
    } finally {
      metrics.close();
    }
  });

  it('finds nothing while every chain signs within the bound', async () => {
    const digester = new Digester(gateway, KEY, { intervalMs: 0 });
    const peer = await fixture.open();
    const peerDigester = new Digester(peer, KEY, { intervalMs: 0 });
    const w = watch();
    // A minute's records, then a digest, every minute for ten minutes, on both chains.
    for (let m = 0; m < 10; m++) {
      now = t0 + m * MIN;
      await note(gateway, now);
      await note(peer, now + 1000);
      now += 59_000;
      expect((await w.check()).overdue).toEqual([]);
      await digester.digestNow(now);
      await peerDigester.digestNow(now);
    }
    expect(await alertsIn(gateway)).toEqual([]);
    expect(warnings).toEqual([]);
  });

  it('judges its own chain against the clock: a gateway whose digests stopped is found even if it records little', async () => {
    await note(gateway, t0); // and no digest ever follows
    // Undigested since its chain.opened record, written by the store's own clock as the chain began.
    const opened = (await gateway.chainRecords(gateway.chainId, 0, 1))[0]!;
    const w = watch();
    now = opened.at + AFTER;
    expect((await w.check()).overdue).toEqual([]);
    now = opened.at + AFTER + 1;
    expect((await w.check()).overdue).toEqual([
      {
        chain: gateway.chainId,
        lastDigest: null,
        from: { chainSeq: 1, at: opened.at },
        to: { chainSeq: 2, at: t0 },
        undigestedMs: AFTER + 1,
      },
    ]);
    expect((await alertsIn(gateway)).map((a) => a.data.writerRunning)).toEqual([true]);
  });

  it('does not take a writer that stopped without a final digest (a crash) for one that stopped signing', async () => {
    // Its records went unsigned for less than the bound before it stopped: it stopped, it did not stop signing. A
    // chain whose writer is gone is judged by its records alone, however long ago that was.
    const crashed = await fixture.open();
    const digester = new Digester(crashed, KEY, { intervalMs: 0 });
    await note(crashed, t0);
    await digester.digestNow(t0 + 1);
    await note(crashed, t0 + 30_000);
    await note(crashed, t0 + 50_000);
    await crashed.close();
    now = t0 + 60 * MIN;
    const found = await watch().check();
    expect(found.overdue).toEqual([]);
    expect(found.undigested).toEqual([]);
    expect(await alertsIn(gateway)).toEqual([]);
  });

  it('alerts once that a chain stopped with records no digest covers, then counts it as stopped, not overdue', async () => {
    // Went wrong: a chain whose writer stopped signing and then died was overdue for good — it never signs again — so
    // vigil_ledger_digests_overdue and its vigil_ledger_undigested_seconds series stayed raised, and hid the next one.
    const digester = new Digester(gateway, KEY, { intervalMs: 0 });
    await note(gateway, t0);
    await digester.digestNow(t0 + 1);
    const dead = await fixture.open();
    await note(dead, t0);
    await new Digester(dead, KEY, { intervalMs: 0 }).digestNow(t0 + 1);
    await note(dead, t0 + 1000);
    await note(dead, t0 + 5 * MIN); // five minutes of records without a digest, then the writer is gone
    await dead.close();
    now = t0 + 10 * MIN;
    const w = watch();
    const metrics = metricsOf(w);
    try {
      const found = await w.check();
      expect(found.overdue).toEqual([]);
      expect(found.stopped).toEqual([
        {
          chain: dead.chainId,
          lastDigest: { chainSeq: 3, at: t0 + 1 },
          from: { chainSeq: 4, at: t0 + 1000 },
          to: { chainSeq: 5, at: t0 + 5 * MIN },
          undigestedMs: 5 * MIN - 1000,
        },
      ]);
      expect((await alertsIn(gateway)).map((a) => a.data)).toEqual([
        expect.objectContaining({ chain: dead.chainId, fromSeq: 4, toSeq: 5, writerRunning: false }),
      ]);
      expect(warnings).toEqual([expect.stringContaining(`its writer is gone: chain ${dead.chainId}: records #4..#5`)]);
      await digester.digestNow(now); // the gateway's own chain, which the alert went on, stays signed
      const text = await metrics.text();
      expect(text).toContain('vigil_ledger_digests_overdue 0');
      expect(text).toContain('vigil_ledger_chains_stopped_undigested 1');
      expect(text).not.toContain(dead.chainId);

      // An hour later, and from a gateway started since: no other alert, and still no alarm.
      now += 60 * MIN;
      expect(await w.check()).toMatchObject({ overdue: [], stopped: [{ chain: dead.chainId }] });
      expect(await watch().check()).toMatchObject({ overdue: [], stopped: [{ chain: dead.chainId }] });
      expect(await alertsIn(gateway)).toHaveLength(1);

      // verify still warns about it, and its tail stays tamper-evident: the alert was new on the gateway's chain, whose
      // next digest committed to the dead chain's head, so cutting the dead chain's last record fails verify.
      const options = { publicKeys: [KEY.publicKey], digestsOverdueAfterMs: AFTER };
      const report = await gateway.verify(options);
      expect(report).toMatchObject({ ok: true, problems: [] });
      expect(report.digestsOverdue?.map((o) => o.chain)).toEqual([dead.chainId]);
      await fixture.tamper(`DELETE FROM records WHERE chain = '${dead.chainId}' AND chain_seq = 5`);
      const cut = await gateway.verify(options);
      expect(cut.ok).toBe(false);
      expect(cut.problems).toContainEqual(
        expect.objectContaining({ chain: dead.chainId, chainSeq: 5, problem: 'head_missing' }),
      );
    } finally {
      metrics.close();
    }
  });

  if (kind === 'postgres') {
    it('judges a peer whose writer still runs against the clock, as the store tells whether it does', async () => {
      const peer = await fixture.open();
      await note(peer, t0);
      await new Digester(peer, KEY, { intervalMs: 0 }).digestNow(t0 + 1);
      await note(peer, t0 + 1000); // one record, then nothing: its records alone span no time
      now = t0 + 1000 + AFTER + 1;
      const w = watch();
      expect((await w.check()).overdue.map((o) => [o.chain, o.undigestedMs])).toEqual([[peer.chainId, AFTER + 1]]);
      expect((await alertsIn(gateway)).map((a) => a.data.writerRunning)).toEqual([true]);
    });

    it('raises one alert when two gateways find the same overdue chain at the same moment', async () => {
      // Went wrong: each gateway read the ledger's alerts, found none, and appended its own, so a chain found by two
      // gateways checking at once was streamed to the SIEM twice. Several rounds, each a new run of the chain.
      const other = await fixture.open();
      const watches = [watch(), new DigestWatch(other, { overdueAfterMs: AFTER, now: () => now, log })];
      const stuck = await fixture.open();
      const digester = new Digester(stuck, KEY, { intervalMs: 0 });
      for (let round = 0; round < 5; round++) {
        await note(stuck, now); // a run no digest covers, signed after both gateways found it overdue
        now += AFTER + 1000;
        const found = await Promise.all(watches.map((w) => w.check()));
        for (const f of found) expect(f.overdue.map((o) => o.chain)).toContain(stuck.chainId);
        await digester.digestNow(now);
      }
      const alerts = (await alertsIn(gateway)).filter((a) => a.data.chain === stuck.chainId);
      expect(alerts.map((a) => a.data.fromSeq)).toEqual([1, 4, 6, 8, 10]);
    });

    it('says once more that a chain stopped when its writer, alerted while running, is gone', async () => {
      // One peer records on after its alert and then stops: a second alert names its last record, as the first did
      // not. The other stops right after its alert: that alert named its last record already, and is the only one.
      const digester = new Digester(gateway, KEY, { intervalMs: 0 });
      const [goesOn, stopsAtOnce] = [await fixture.open(), await fixture.open()];
      // Records spanning more than the bound, found while both writers run.
      await note(goesOn, t0);
      await note(stopsAtOnce, t0);
      const late = Date.now() + AFTER + 1; // after both chains opened (with their first record)
      await note(goesOn, late);
      await note(stopsAtOnce, late);
      now = late + 1000;
      const w = watch();
      const first = await w.check();
      expect(first.overdue.map((o) => o.chain).sort()).toEqual([goesOn.chainId, stopsAtOnce.chainId].sort());
      await digester.digestNow(now); // the gateway's own chain, which the alerts opened, stays signed
      await note(goesOn, now + 1000);
      await goesOn.close();
      await stopsAtOnce.close();
      now += MIN;
      const later = await w.check();
      await digester.digestNow(now);
      expect(later.overdue).toEqual([]);
      expect(later.stopped.map((o) => o.chain).sort()).toEqual([goesOn.chainId, stopsAtOnce.chainId].sort());
      now += MIN;
      expect((await w.check()).overdue).toEqual([]);
      const alerts = (await alertsIn(gateway)).map((a) => a.data);
      const of = (chain: string) =>
        alerts.filter((a) => a.chain === chain).map((a) => [a.fromSeq, a.toSeq, a.writerRunning]);
      expect(of(goesOn.chainId)).toEqual([
        [1, 3, true],
        [1, 4, false],
      ]);
      expect(of(stopsAtOnce.chainId)).toEqual([[1, 3, true]]);
    });

    /** The chain-lock key PostgreSQL writers hold while they run (postgres-audit-store.ts CHAIN_LOCK_CLASS). */
    const CHAIN_LOCK = 0x56474c31;
    const lockBackend = async (chain: string): Promise<number | undefined> =>
      (
        await fixture.sql(
          `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = ${CHAIN_LOCK}::int4::oid
             AND objid = hashtext('${chain}')::oid AND granted`,
        )
      )[0]?.pid as number | undefined;

    it('raises no alarm while it cannot tell which writers run (its lock connection being made again)', async () => {
      // Went wrong: while this gateway's lock connection was being made again, every chain was taken for running, so
      // one that stopped an hour ago was measured up to now and alerted (writerRunning: true).
      const old = await fixture.open();
      await note(old, t0 - 60 * MIN);
      await note(old, t0 - 60 * MIN + 10_000);
      await old.close();
      // This gateway's lock session is cut, and someone else takes its chain lock first: it cannot take it back.
      const taker = new pg.Client({ connectionString: POSTGRES_TEST_URL });
      await taker.connect();
      try {
        const pid = await lockBackend(gateway.chainId);
        const taken = taker.query('SELECT pg_advisory_lock($1, hashtext($2))', [CHAIN_LOCK, gateway.chainId]);
        await new Promise((r) => setTimeout(r, 200));
        await fixture.sql(`SELECT pg_terminate_backend(${pid})`);
        await taken;
        await new Promise((r) => setTimeout(r, 300));
        expect(await gateway.chainIsLive(old.chainId)).toBeUndefined();
        const found = await watch().check();
        expect(found.overdue).toEqual([]);
        expect(await alertsIn(gateway)).toEqual([]);
      } finally {
        await taker.end();
      }
    });

    /** A peer whose records span more than the bound without a digest, closed (its chain lock free). */
    const stoppedOverdue = async (): Promise<AuditStore> => {
      const peer = await fixture.open();
      await note(peer, t0);
      await note(peer, t0 + AFTER + 1000);
      await peer.close();
      return peer;
    };

    it('does not take a running writer for gone while its lock connection is made again (PostgreSQL restarted)', async () => {
      // Went wrong: one look at a free lock made a running writer gone. A peer overdue while it ran, whose lock
      // connection was then lost for a moment, was alerted as gone and counted as stopped — the alarm cleared while
      // the peer went on recording unsigned. Now a free lock is looked at again once the store's grace is over. The
      // writer here is a connection holding the chain's lock, as a writer does (its records were appended before).
      const peer = await stoppedOverdue();
      const writer = new pg.Client({ connectionString: POSTGRES_TEST_URL });
      await writer.connect();
      const lock = (fn: 'pg_advisory_lock' | 'pg_advisory_unlock') =>
        writer.query(`SELECT ${fn}($1, hashtext($2))`, [CHAIN_LOCK, peer.chainId]);
      try {
        await lock('pg_advisory_lock');
        now = t0 + AFTER + 2000;
        const w = watch();
        expect((await w.check()).overdue.map((o) => o.chain)).toEqual([peer.chainId]);
        await new Digester(gateway, KEY, { intervalMs: 0 }).digestNow(now); // the gateway's chain, which the alert opened
        warnings.length = 0;

        // Its lock free for a moment, then held again (its lock connection made again).
        await lock('pg_advisory_unlock');
        const back = new Promise((r) => setTimeout(r, 300)).then(() => lock('pg_advisory_lock'));
        now += 1000;
        const started = Date.now();
        const found = await w.check();
        await back;
        expect(Date.now() - started).toBeGreaterThanOrEqual(GRACE - 50); // it waited, and looked again
        expect(found).toMatchObject({ overdue: [{ chain: peer.chainId }], stopped: [] });
        expect(warnings).toEqual([]);
        expect((await alertsIn(gateway)).map((a) => [a.data.chain, a.data.writerRunning])).toEqual([
          [peer.chainId, true],
        ]);

        // Stopped for good: its lock is still free a grace later, and it is gone — stopped, as the alert raised while
        // it ran named its last record already.
        await lock('pg_advisory_unlock');
        now += MIN;
        const gone = await w.check();
        expect(gone.overdue.map((o) => o.chain)).not.toContain(peer.chainId);
        expect(gone.stopped.map((o) => o.chain)).toEqual([peer.chainId]);
        expect((await alertsIn(gateway)).filter((a) => a.data.chain === peer.chainId)).toHaveLength(1);
      } finally {
        await writer.end();
      }
    });

    it('stops waiting out a reconnect grace when closed: a gateway stopping is not held up by it', async () => {
      await stoppedOverdue(); // its lock free, and its tail overdue by its records: the check waits to look again
      now = t0 + AFTER + 2000;
      const w = watch();
      const started = Date.now();
      const checking = w.check();
      await new Promise((r) => setTimeout(r, 200));
      await w.close();
      await checking;
      expect(Date.now() - started).toBeLessThan(GRACE);
      expect(await alertsIn(gateway)).toEqual([]); // nothing judged on a look cut short
    });

    it('asks again whether a writer seen stopped runs, and then finds it overdue', async () => {
      // Went wrong: one look that found a running writer's lock free (its connection being made again) counted it as
      // stopped for good; when it then stopped signing, no peer ever raised the alarm. Here the writer's lock is free
      // at the first look, and held again (as a writer whose connection came back holds it) at the next.
      const peer = await fixture.open();
      await note(peer, t0);
      await peer.close();
      const w = watch();
      now = t0 + 1000;
      expect((await w.check()).overdue).toEqual([]);
      const writer = new pg.Client({ connectionString: POSTGRES_TEST_URL });
      await writer.connect();
      try {
        await writer.query('SELECT pg_advisory_lock($1, hashtext($2))', [CHAIN_LOCK, peer.chainId]);
        now = t0 + AFTER + 2000;
        const later = await w.check();
        expect(later.overdue.map((o) => o.chain)).toContain(peer.chainId);
        expect((await alertsIn(gateway)).find((x) => x.data.chain === peer.chainId)?.data.writerRunning).toBe(true);
      } finally {
        await writer.end();
      }
    });
  }
});
