import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileMasker } from '../../../../src/recorder/masking/masker.js';
import { maskingConfigSchema } from '../../../../src/recorder/masking/masking-config.js';
import { StreamMasker } from '../../../../src/recorder/masking/stream-masker.js';
import { NEGATIVES, pem, POSITIVES } from './corpus.js';

const masker = compileMasker(maskingConfigSchema.parse({ rules: [{ type: 'employee_id', pattern: 'EMP-\\d{6}' }] }));

/** Feed fragments through a StreamMasker; return what would be stored for each. */
function stream(fragments: readonly string[]): string[] {
  const s = new StreamMasker(masker, '$.content[0].text');
  const stored = fragments.map((f) => s.push(f));
  stored.push(s.end());
  return stored;
}

function splitAt(text: string, cuts: readonly number[]): string[] {
  const points = [...new Set(cuts.map((c) => Math.min(text.length, Math.max(0, c))))].sort((a, b) => a - b);
  const out: string[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(text.slice(prev, p));
    prev = p;
  }
  out.push(text.slice(prev));
  return out;
}

const PROSE =
  'Sure — here is the plan. First we read the config file, then we run the migration and check the logs for errors. ';

describe('StreamMasker', () => {
  it('masks a secret split into two fragments at every offset, and the stored fragments add up to maskText(whole)', () => {
    for (const pos of POSITIVES) {
      const whole = `${PROSE}${pos.text} and then we continue.`;
      const expected = masker.maskText(whole).value;
      for (let cut = 0; cut <= whole.length; cut++) {
        const stored = stream([whole.slice(0, cut), whole.slice(cut)]);
        const joined = stored.join('');
        if (joined !== expected) throw new Error(`${pos.type} split at ${cut}: ${JSON.stringify(joined)}`);
        for (const piece of stored) expect(piece).not.toContain(pos.secret);
      }
    }
  });

  it('gives maskText(whole) for many random fragments of long mixed text', () => {
    const pieces = [
      ...POSITIVES.map((p) => p.text),
      ...NEGATIVES.map((n) => n.text.slice(0, 400)),
      PROSE,
      'EMP-123456',
    ];
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: pieces.length - 1 }), { minLength: 1, maxLength: 40 }),
        fc.array(fc.nat(), { maxLength: 120 }),
        fc.constantFrom(' ', '\n', '', ', '),
        (idx, cuts, sep) => {
          const whole = idx.map((i) => pieces[i]!).join(sep);
          const stored = stream(
            splitAt(
              whole,
              cuts.map((c) => c % (whole.length + 1)),
            ),
          );
          expect(stored.join('')).toBe(masker.maskText(whole).value);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('gives maskText(whole) wherever the release cut falls relative to a secret', () => {
    const filler = (PROSE + 'Numbers like 2024-01-15 or v1.2.3 are fine. ').repeat(40);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: POSITIVES.length - 1 }),
        fc.integer({ min: 0, max: 1600 }),
        fc.integer({ min: 0, max: 1600 }),
        fc.array(fc.integer({ min: 1, max: 90 }), { minLength: 1, maxLength: 200 }),
        (i, before, after, sizes) => {
          const whole = `${filler.slice(0, before)} ${POSITIVES[i]!.text} ${filler.slice(0, after)}`;
          const fragments: string[] = [];
          for (let at = 0, k = 0; at < whole.length; k++) {
            const size = sizes[k % sizes.length]!;
            fragments.push(whole.slice(at, at + size));
            at += size;
          }
          const stored = stream(fragments);
          expect(stored.join('')).toBe(masker.maskText(whole).value);
          for (const piece of stored) expect(piece).not.toContain(POSITIVES[i]!.secret);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('holds a PEM block or JWT until it is complete, however small the deltas', () => {
    const key = pem('RSA PRIVATE KEY', 26);
    const whole = `${PROSE.repeat(20)}\n${key.text}\n${PROSE.repeat(20)}`;
    const deltas = whole.match(/[\s\S]{1,7}/g)!;
    const stored = stream(deltas);
    expect(stored.join('')).toBe(masker.maskText(whole).value);
    expect(stored.join('')).toContain('[REDACTED:private_key]');
    for (const piece of stored) expect(piece).not.toContain(key.body.slice(0, 40));
    // Text before the key is released while the stream runs, not all at the end.
    const releasedEarly = stored.slice(0, deltas.length).join('');
    expect(releasedEarly.length).toBeGreaterThan(PROSE.length * 10);
  });

  it('keeps partial JSON fragments valid when concatenated', () => {
    const input = JSON.stringify({
      command: `curl -H "Authorization: Bearer Xy9${'k'.repeat(10)}Qz81LmN0pR" https://x`,
      path: '/tmp/a',
    });
    const stored = stream(input.match(/[\s\S]{1,5}/g)!);
    const parsed = JSON.parse(stored.join('')) as { command: string; path: string };
    expect(parsed.command).toContain('[REDACTED:bearer_token]');
    expect(parsed.path).toBe('/tmp/a');
  });

  it('reports findings for the block', () => {
    const s = new StreamMasker(masker, '$.content[0].text');
    s.push('write to jane.roe@');
    s.push('corp-mail.com now');
    s.end();
    expect(s.findings).toEqual([{ type: 'email', path: '$.content[0].text', count: 1 }]);
  });

  it('passes fragments through unchanged when masking is disabled', () => {
    const s = new StreamMasker(compileMasker(maskingConfigSchema.parse({ enabled: false })));
    expect(s.push('a@b.example.com')).toBe('a@b.example.com');
    expect(s.end()).toBe('');
  });
});
