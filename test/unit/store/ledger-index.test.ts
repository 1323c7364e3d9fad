import { describe, expect, it } from 'vitest';
import type { StoredGatewayKey, StoredHold } from '../../../src/store/audit-store.js';
import {
  heldBy,
  keyRecordsVersion,
  LedgerKeyCache,
  ledgerHolds,
  ledgerKeys,
  listedHolds,
  listedKeys,
  type IndexRecord,
} from '../../../src/store/ledger-index.js';

let seq = 0;
const rec = (kind: string, data: object): IndexRecord => ({
  seq: ++seq,
  chain: 'ch_a',
  chainSeq: seq,
  kind,
  data: JSON.stringify(data),
});
const created = (hash: string, name: string): IndexRecord =>
  rec('key.created', { hash, name, owner: 'o', connections: ['c'], createdAt: 1, expiresAt: null, createdBy: 'x' });
const revoked = (hash: string, at: number): IndexRecord =>
  rec('key.revoked', { hash, name: 'n', revokedAt: at, revokedBy: 'x' });
const row = (hash: string, revokedAt: number | null = null): StoredGatewayKey => ({
  hash,
  name: 'tampered',
  owner: 'x',
  connections: [],
  createdAt: 0,
  expiresAt: null,
  revokedAt,
});

describe('ledger-index', () => {
  it('replays key records by the stores’ rules: the first revocation counts, in append order whatever the input order', () => {
    const records = [created('a', 'ci'), revoked('a', 10), revoked('a', 20), revoked('b', 30), created('b', 'late')];
    const keys = ledgerKeys([...records].reverse());
    expect(keys.get('a')).toMatchObject({ name: 'ci', revokedAt: 10, revoked: { chainSeq: records[1]!.chainSeq } });
    // A revocation before the key existed revoked nothing (the index's UPDATE found no row).
    expect(keys.get('b')).toMatchObject({ name: 'late', revokedAt: null });
  });

  it('lets a revocation bring a key’s end forward (a rotated key revoked at once), never move it back', () => {
    const records = [created('c', 'ci'), revoked('c', 100), revoked('c', 40), revoked('c', 70)];
    expect(ledgerKeys(records).get('c')).toMatchObject({ revokedAt: 40, revoked: { chainSeq: records[2]!.chainSeq } });
  });

  it('replays holds, and finds the active hold covering an exchange by session, subject or e-mail in any case', () => {
    const holds = ledgerHolds([
      rec('hold.added', { holdId: 'h1', session: 's1', caller: null, reason: 'r', by: 'b', at: 1 }),
      rec('hold.added', { holdId: 'h2', session: null, caller: 'Dave@Example.com', reason: 'r', by: 'b', at: 1 }),
      rec('hold.added', { holdId: 'h3', session: 's3', caller: null, reason: 'r', by: 'b', at: 1 }),
      rec('hold.released', { holdId: 'h3', reason: 'done', by: 'b', at: 5 }),
    ]);
    const all = [...holds.values()];
    expect(heldBy(all, { session: 's1', callerSubject: 'x', callerEmail: null })?.id).toBe('h1');
    expect(heldBy(all, { session: 's9', callerSubject: 'x', callerEmail: 'dave@example.com' })?.id).toBe('h2');
    expect(heldBy(all, { session: 's9', callerSubject: 'Dave@Example.com', callerEmail: null })?.id).toBe('h2');
    expect(heldBy(all, { session: 's3', callerSubject: 'x', callerEmail: null })).toBeUndefined();
  });

  it('caches the key records while their version holds, and reads them again when it changes or on a miss', async () => {
    const records = [created('a', 'ci'), created('b', 'laptop')];
    let reads = 0;
    const cache = new LedgerKeyCache(async () => {
      reads++;
      return records;
    });
    const version = keyRecordsVersion(records);
    expect(await cache.judge(row('a'), version)).toMatchObject({ name: 'ci', connections: ['c'], revokedAt: null });
    expect(await cache.judge(row('b'), version)).toMatchObject({ name: 'laptop' });
    expect(reads).toBe(1);
    expect(await cache.judge(undefined, version)).toBeUndefined(); // not in the index: no read
    expect(reads).toBe(1);

    // A row no key.created made: read again (a record may have committed out of seq order), still unknown.
    expect(await cache.judge(row('z'), version)).toBeUndefined();
    expect(reads).toBe(2);

    records.push(revoked('a', 42));
    expect(await cache.judge(row('a'), keyRecordsVersion(records))).toMatchObject({ revokedAt: 42 });
    expect(reads).toBe(3);
    // The index saying revoked is enough to refuse, whatever the cache says.
    expect(await cache.judge(row('b', 7), keyRecordsVersion(records))).toMatchObject({ revokedAt: 7 });
    expect(reads).toBe(3);
  });

  it('lists keys as authentication has them: revoked when the ledger or the index says so, refused when either lacks it', () => {
    const records = [created('a', 'ci'), created('b', 'laptop'), revoked('b', 9), created('c', 'gone')];
    const keys = new Map(listedKeys(records, [row('a', 7), row('b'), row('z')]).map((k) => [k.hash, k]));
    // Revoked in the index alone: revoked (authentication refuses it), with the ledger's fields.
    expect(keys.get('a')).toMatchObject({ name: 'ci', connections: ['c'], revokedAt: 7, inLedger: true });
    expect(keys.get('a')!.ledgerMismatch).toEqual([expect.stringContaining('revokedAt: index 7, ledger null')]);
    // Un-revoked in the index: the ledger's revocation stands.
    expect(keys.get('b')).toMatchObject({ revokedAt: 9, index: { revokedAt: null } });
    expect(keys.get('z')).toMatchObject({ name: 'tampered', inLedger: false, index: { hash: 'z' } });
    expect(keys.get('c')).toMatchObject({ name: 'gone', index: null, inLedger: true, revokedAt: null });
    expect(keys.get('c')!.ledgerMismatch).toEqual([expect.stringContaining('missing from the gateway_keys index')]);
  });

  it('lists holds as purges have them: active while the ledger or the index says so', () => {
    const added = (holdId: string, at: number) =>
      rec('hold.added', { holdId, session: 's', caller: null, reason: 'r', by: 'b', at });
    const released = (holdId: string, at: number) => rec('hold.released', { holdId, reason: 'done', by: 'c', at });
    const hold = (id: string, createdAt: number, releasedAt: number | null): StoredHold => ({
      id,
      session: 's',
      caller: null,
      reason: 'r',
      createdBy: 'b',
      createdAt,
      releasedAt,
      releasedBy: releasedAt === null ? null : 'c',
      releaseReason: releasedAt === null ? null : 'done',
    });
    const records = [added('h1', 1), added('h2', 2), released('h2', 5), added('h3', 3), released('h3', 6)];
    const holds = listedHolds(records, [hold('h1', 1, 4), hold('h2', 2, null), hold('h3', 3, 6)]);
    expect(holds.map((h) => [h.id, h.releasedAt, h.ledgerMismatch.length])).toEqual([
      ['h3', 6, 0],
      ['h2', null, 1], // released by a record, un-released in the index: purges still skip it
      ['h1', null, 1], // released in the index alone
    ]);
  });
});
