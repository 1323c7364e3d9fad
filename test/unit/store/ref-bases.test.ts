/**
 * The bases a store remembers per conversation: only what committed, the last one of each conversation, and no more
 * references in all than the bound, the conversations written longest ago forgotten first.
 */
import { describe, expect, it } from 'vitest';
import { conversationOf, RefBases, type RefBase } from '../../../src/store/ref-bases.js';

function base(seq: number, refs: number): RefBase {
  return { seq, hash: `h${seq}`, refs: new Set(Array.from({ length: refs }, (_, i) => `${seq}:${i}`)) };
}

function request(session: string): Parameters<RefBases['written']>[0] {
  return { kind: 'exchange.request', data: { session: { id: session, source: 'header' } } } as Parameters<
    RefBases['written']
  >[0];
}

describe('RefBases', () => {
  it('forgets the conversations set longest ago once they hold more references than the bound', () => {
    const b = new RefBases(10);
    b.set('a', base(1, 4));
    b.set('b', base(2, 4));
    expect(b.get('a')?.seq).toBe(1); // looking one up does not keep it longer
    b.set('c', base(3, 4));
    expect([b.get('a'), b.get('b')?.seq, b.get('c')?.seq]).toEqual([undefined, 2, 3]);
    // A conversation's new base replaces its old one, and counts only its own references.
    b.set('b', base(4, 6));
    expect([b.get('b')?.seq, b.get('c')?.seq]).toEqual([4, 3]);
    b.set('d', base(5, 1));
    expect([b.get('c'), b.get('b')?.seq, b.get('d')?.seq]).toEqual([undefined, 4, 5]);
  });

  it('keeps no base with more references than the bound, nor the earlier base of its conversation', () => {
    const b = new RefBases(10);
    b.set('a', base(1, 3));
    b.set('b', base(2, 3));
    b.set('a', base(3, 11));
    expect([b.get('a'), b.get('b')?.seq]).toEqual([undefined, 2]);
    // What it held no longer counts: 3 + 7 fits.
    b.set('c', base(4, 7));
    expect([b.get('b')?.seq, b.get('c')?.seq]).toEqual([2, 4]);
  });

  it('makes bases only of what committed', () => {
    const b = new RefBases(10);
    b.written(request('s1'), { seq: 1, hash: 'h1' }, ['x']);
    expect(b.baseOf(request('s1'))).toBeUndefined();
    b.rollback();
    b.commit();
    expect(b.baseOf(request('s1'))).toBeUndefined();
    b.written(request('s1'), { seq: 2, hash: 'h2' }, ['x', 'y']);
    b.written(request('s2'), { seq: 3, hash: 'h3' }, []);
    b.commit();
    expect(b.baseOf(request('s1'))).toEqual({ seq: 2, hash: 'h2', refs: new Set(['x', 'y']) });
    expect(b.baseOf(request('s2'))).toBeUndefined();
    // A purge took it: no base any more.
    b.delete(conversationOf(request('s1'))!);
    expect(b.baseOf(request('s1'))).toBeUndefined();
  });
});
