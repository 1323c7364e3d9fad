/**
 * The case folding caller holds match e-mails by, the same in JavaScript, SQLite and PostgreSQL (see case-fold.ts):
 * variants of one letter meet, and the PostgreSQL translate() table folds exactly as foldCase does.
 */
import { describe, expect, it } from 'vitest';
import { foldCase, foldTable } from '../../../src/store/case-fold.js';

/** What PostgreSQL's translate(text, from, to) does. */
function translate(text: string, table: { from: string; to: string }): string {
  const from = [...table.from];
  const to = [...table.to];
  return Array.from(text, (c) => {
    const i = from.indexOf(c);
    return i < 0 ? c : (to[i] ?? '');
  }).join('');
}

describe('foldCase', () => {
  it('folds the case of every letter, ASCII or not, one code point at a time', () => {
    expect(foldCase('Élodie@Example.COM')).toBe('élodie@example.com');
    expect(foldCase('ÉLODIE@EXAMPLE.COM')).toBe(foldCase('élodie@example.com'));
    // A final sigma meets the other two; ſ meets s, the Kelvin sign k; ẞ meets ß.
    expect(new Set(['ΟΔΥΣΣΕΥΣ', 'οδυσσευς', 'Οδυσσευσ'].map(foldCase)).size).toBe(1);
    expect(foldCase('ſ\u212a')).toBe('sk');
    expect(foldCase('ẞ')).toBe('ß');
    // Small or capital forms of more than one code point: the letter keeps its length.
    expect(foldCase('İrem')).toBe('İrem');
    expect(foldCase('STRAẞE')).toBe('straße');
    expect(foldCase('\u{10400}')).toBe('\u{10428}'); // Deseret, beyond the BMP
  });

  it('is a fold: one code point for each, the same again when folded twice, nothing beyond U+1FFFF changed', () => {
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      const c = String.fromCodePoint(cp);
      const f = foldCase(c);
      if (f === c) continue;
      expect([...f], c).toHaveLength(1);
      expect(foldCase(f), c).toBe(f);
      expect(cp, c).toBeLessThanOrEqual(0x1ffff);
    }
  });
});

describe('foldTable', () => {
  it('folds as foldCase does every text that matches one of those it was made for, and no other', () => {
    const holds = ['Élodie@Example.com', 'οδυσσευς@example.com', 'K.Ng@x.io'];
    const table = foldTable(holds);
    expect([...table.from]).toHaveLength([...table.to].length);
    expect([...table.from].length).toBeLessThan(60);
    for (const h of holds) expect(translate(h, table)).toBe(foldCase(h));
    const emails = [
      'élodie@example.com',
      'ÉLODIE@EXAMPLE.COM',
      'elodie@example.com',
      'ΟΔΥΣΣΕΥΣ@EXAMPLE.COM',
      'ΟΔΥΣΣΕΥς@example.com',
      'k.ng@X.IO',
      '\u212a.NG@x.io',
      'k.ng@x.iö',
      'zoe@example.com',
    ];
    for (const x of emails) {
      for (const h of holds) {
        expect(translate(x, table) === translate(h, table), `${x} ~ ${h}`).toBe(foldCase(x) === foldCase(h));
      }
    }
  });

  it('is empty for no texts', () => {
    expect(foldTable([])).toEqual({ from: '', to: '' });
  });
});
