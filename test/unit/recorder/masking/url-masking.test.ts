import { describe, expect, it } from 'vitest';
import { compileMasker } from '../../../../src/recorder/masking/masker.js';
import { maskingConfigSchema } from '../../../../src/recorder/masking/masking-config.js';
import { createMaskingMemo } from '../../../../src/recorder/masking/masking-memo.js';
import { maskPath, maskQuery } from '../../../../src/recorder/masking/url-masking.js';

const masker = compileMasker(maskingConfigSchema.parse({}));
const memo = createMaskingMemo(100, 10_000, 1);
const GH = 'ghp_R4nd0mLooking1234567890abcdefGHIJKLM';
const query = (q: string) => maskQuery(masker, q, memo);
const path = (p: string) => maskPath(masker, p, memo);

describe('maskQuery', () => {
  it('masks each parameter, decoded, with secret-sounding names counting as they do for JSON keys', () => {
    const r = query(`beta=true&token=${GH}&to=jane.roe%40corp-mail.com&password=hunter2-Horse&flag&q=a+b`);
    expect(r.value).toBe(
      'beta=true&token=[REDACTED:github_token]&to=[REDACTED:email]&password=[REDACTED:generic_secret]&flag&q=a+b',
    );
    expect(r.findings).toEqual([
      { type: 'github_token', path: '$.token', count: 1 },
      { type: 'email', path: '$.to', count: 1 },
      { type: 'generic_secret', path: '$.password', count: 1 },
    ]);
  });

  it('re-encodes only what it masked, and keeps an unchanged query as sent', () => {
    expect(query('note=write+to+jane.roe%40corp-mail.com+today').value).toBe(
      'note=write%20to%20[REDACTED:email]%20today',
    );
    expect(query(`${GH}&x=1`).value).toBe('[REDACTED:github_token]&x=1');
    const clean = 'beta=true&limit=20&after_id=msg_01%2Bx&bad=%E0%A4%A';
    expect(query(clean)).toEqual({ value: clean, findings: [], changed: false });
  });
});

describe('maskPath', () => {
  it('masks a path, decoding its segments when it is percent-encoded', () => {
    expect(path(`/v1/files/${GH}/content`).value).toBe('/v1/files/[REDACTED:github_token]/content');
    expect(path('/v1/files/jane.roe%40corp-mail.com/content').value).toBe('/v1/files/[REDACTED:email]/content');
    expect(path('/v1/files/file_01%20x/content')).toMatchObject({
      value: '/v1/files/file_01%20x/content',
      changed: false,
    });
  });
});
