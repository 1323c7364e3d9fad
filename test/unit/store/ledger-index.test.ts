import { describe, expect, it } from 'vitest';
import type { StoredGatewayKey } from '../../../src/store/audit-store.js';
import {
  heldBy,
  keyRecordsVersion,
  LedgerKeyCache,
  ledgerHolds,
  ledgerKeys,
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
});
