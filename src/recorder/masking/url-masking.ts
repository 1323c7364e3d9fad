/**
 * Masking the request target: the path and the query string are recorded too, even at `record: metadata`, and a
 * client may put a token or an e-mail address in either (`?token=ghp_…`, `/v1/files/…/alice%40example.org`).
 * Components are decoded before they are scanned, so an encoded address is found; a component in which something was
 * masked is encoded again with its `[REDACTED:type]` markers left readable. Anything unchanged is kept as sent.
 */
import type { Masker, MaskFinding, MaskResult } from './masker.js';
import type { MaskingMemo } from './masking-memo.js';

const MARKER = /%5BREDACTED%3A([a-z0-9_]+)%5D/g;

function encode(s: string): string {
  return encodeURIComponent(s).replace(MARKER, '[REDACTED:$1]');
}

function decode(s: string, plusIsSpace: boolean): string {
  const t = plusIsSpace && s.includes('+') ? s.replaceAll('+', ' ') : s;
  if (!t.includes('%')) return t;
  try {
    return decodeURIComponent(t);
  } catch {
    return t; // not valid percent-encoding: scanned as it is
  }
}

/** A path: scanned whole; when it holds percent-encoding, segment by segment, decoded. */
export function maskPath(masker: Masker, path: string, memo: MaskingMemo): MaskResult<string> {
  if (!path.includes('%')) return masker.maskJson(path, '$', memo) as MaskResult<string>;
  const findings: MaskFinding[] = [];
  const segments = path.split('/').map((segment) => {
    const decoded = decode(segment, false);
    const r = masker.maskJson(decoded, '$', memo);
    if (!r.changed) return segment;
    findings.push(...r.findings);
    return encode(r.value as string);
  });
  if (findings.length === 0) return { value: path, findings, changed: false };
  return { value: segments.join('/'), findings, changed: true };
}

/**
 * A query string, parameter by parameter: each `name=value` is masked as the JSON member `{ name: value }`, so a
 * secret-sounding name (`token`, `password`) counts as it does for a header or a JSON key, and findings are named
 * by parameter (`$.token`).
 */
export function maskQuery(masker: Masker, query: string, memo: MaskingMemo): MaskResult<string> {
  const findings: MaskFinding[] = [];
  const params = query.split('&').map((param) => {
    if (param === '') return param;
    const eq = param.indexOf('=');
    const name = decode(eq < 0 ? param : param.slice(0, eq), true);
    if (eq < 0) {
      const r = masker.maskJson(name, '$', memo);
      if (!r.changed) return param;
      findings.push(...r.findings);
      return encode(r.value as string);
    }
    const r = masker.maskJson({ [name]: decode(param.slice(eq + 1), true) }, '$', memo);
    if (!r.changed) return param;
    findings.push(...r.findings);
    const [maskedName, maskedValue] = Object.entries(r.value as Record<string, string>)[0]!;
    return `${encode(maskedName)}=${encode(maskedValue)}`;
  });
  if (findings.length === 0) return { value: query, findings, changed: false };
  return { value: params.join('&'), findings, changed: true };
}
