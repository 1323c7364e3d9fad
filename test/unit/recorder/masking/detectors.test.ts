import { describe, expect, it } from 'vitest';
import { compileMasker } from '../../../../src/recorder/masking/masker.js';
import { maskingConfigSchema } from '../../../../src/recorder/masking/masking-config.js';
import { DETECTOR_TYPES } from '../../../../src/recorder/masking/detectors.js';
import { NEGATIVES, POSITIVES } from './corpus.js';

const masker = compileMasker(maskingConfigSchema.parse({}));

describe('built-in detectors on the corpus', () => {
  it('has at least one true positive for every detector type', () => {
    const covered = new Set(POSITIVES.map((p) => p.type));
    expect(DETECTOR_TYPES.filter((t) => !covered.has(t))).toEqual([]);
  });

  for (const [i, pos] of POSITIVES.entries()) {
    it(`masks ${pos.type} #${i}: ${JSON.stringify(pos.text.slice(0, 60))}`, () => {
      const r = masker.maskText(pos.text, 'corpus');
      expect(r.value).not.toContain(pos.secret);
      expect(r.value).toContain(`[REDACTED:${pos.type}]`);
      expect(r.changed).toBe(true);
      expect(r.findings).toContainEqual(expect.objectContaining({ type: pos.type, path: 'corpus' }));
    });
  }

  for (const neg of NEGATIVES) {
    it(`leaves alone: ${neg.name}`, () => {
      const r = masker.maskText(neg.text);
      expect(r.value).toBe(neg.text);
      expect(r.findings).toEqual([]);
      expect(r.changed).toBe(false);
    });
  }
});
