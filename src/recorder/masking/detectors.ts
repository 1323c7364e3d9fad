/**
 * The built-in detectors: what counts as a secret or as personal data, each with the type name that appears in its
 * mask `[REDACTED:<type>]`.
 *
 * Hand-written rather than taken from a rule pack: secretlint's presets are per-file lint rules (an async `lintSource`
 * per file, positions computed as line/column, one package per provider) and carry no personal-data rules; gitleaks
 * packs are Go-RE2 TOML that would need translating anyway. The patterns below follow the token formats those projects
 * document, compiled once, each behind a cheap prefilter so a string is only scanned by the detectors that can match.
 *
 * Every detector obeys three invariants the scanner and the stream masker rely on:
 * 1. its prefilter (when present) only tests for something that lies *inside* every match;
 * 2. no match, plus the characters its lookaheads read, spans more than `maxSpan` characters;
 * 3. lookbehinds and validators read at most {@link CONTEXT_CHARS} characters before a match (the e-mail local part,
 *    up to 64 characters, is the longest).
 * A detector with `maxSpan` above {@link SHORT_SPAN_LIMIT} also names an `anchor`: a pattern found at the start of
 * every match, so a stream is held back only when one occurs.
 */
import { isIPv6 } from 'node:net';
import { ibanValid, luhnValid, plausibleCardNumber, ssnValid } from './checksums.js';
import { isPasswordName, isPlaceholder, isSecretValue, looksRandom, SECRET_NAME_SOURCE } from './secret-value.js';

/** Every built-in detector type; `masking.detectors` switches them by these names. */
export const DETECTOR_TYPES = [
  'anthropic_api_key',
  'openai_api_key',
  'aws_access_key_id',
  'aws_secret_access_key',
  'gcp_api_key',
  'gcp_service_account_key',
  'azure_storage_key',
  'azure_client_secret',
  'github_token',
  'gitlab_token',
  'slack_token',
  'slack_webhook',
  'stripe_key',
  'twilio',
  'sendgrid_api_key',
  'npm_token',
  'pypi_token',
  'huggingface_token',
  'jwt',
  'private_key',
  'url_password',
  'connection_string',
  'bearer_token',
  'generic_secret',
  'email',
  'phone',
  'payment_card',
  'iban',
  'us_ssn',
  'ipv4',
  'ipv6',
] as const;
export type DetectorType = (typeof DETECTOR_TYPES)[number];

/** Characters before a match that lookbehinds and validators may read. */
export const CONTEXT_CHARS = 96;
/** Detectors whose matches can be longer than this must name an anchor. */
export const SHORT_SPAN_LIMIT = 600;

/** One compiled detector. */
export interface Detector {
  readonly type: string;
  /** Lower wins when matches overlap: a specific token beats the generic assignment around it. */
  readonly priority: number;
  /**
   * Cheap necessary condition on the whole string (not global; flags `i` at most); the regex is skipped when it does
   * not match. The scanner also joins all prefilters into one gate, so most short strings cost one test.
   */
  readonly prefilter?: RegExp;
  /** Global (`g`), and with `d` when `range` reads group indices. */
  readonly regex: RegExp;
  /** Extra checks (checksums, boundaries, entropy); a rejected match is retried one character later. */
  readonly validate?: (m: RegExpExecArray, text: string) => boolean;
  /** The part of the match that is replaced; default: all of it. */
  readonly range?: (m: RegExpExecArray) => readonly [number, number];
  readonly maxSpan: number;
  readonly anchor?: RegExp;
}

/** Options that change what a detector accepts. */
export interface DetectorOptions {
  /** Also mask private (RFC 1918, CGNAT, link-local, unique-local) addresses; loopback and documentation never. */
  readonly maskPrivateIps: boolean;
}

/** A prefilter that looks for any of some literal strings. */
const needles = (...ns: string[]): RegExp =>
  new RegExp(ns.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'));

const has = (re: RegExp): RegExp => re;

/** The first defined named group's span, for patterns whose value sits in one of several alternatives. */
function groupRange(...names: string[]) {
  return (m: RegExpExecArray): readonly [number, number] => {
    const groups = m.indices?.groups;
    for (const n of names) {
      const r = groups?.[n];
      if (r) return r;
    }
    return [m.index, m.index + m[0].length];
  };
}

function groupText(m: RegExpExecArray, ...names: string[]): string {
  for (const n of names) {
    const v = m.groups?.[n];
    if (v !== undefined) return v;
  }
  return m[0];
}

/** True when the character before `index` is not one of `chars` (a word boundary for token alphabets). */
function clearBefore(text: string, index: number, chars: RegExp): boolean {
  return index === 0 || !chars.test(text[index - 1]!);
}

const TOKEN_CHAR = /[A-Za-z0-9_-]/;
const ALNUM = /[A-Za-z0-9]/;
const ASSIGN = String.raw`[\w.-]{0,20}\\?["']?\s{0,4}(?::=|=>|=|:)\s{0,4}\\?["']?`;

function mixedCase(s: string): boolean {
  return /\d/.test(s) || (/[a-z]/.test(s) && /[A-Z]/.test(s));
}

// --- IP ranges -------------------------------------------------------------------------------------------------

type IpClass = 'public' | 'private' | 'never';

function ipv4Class(o: readonly number[]): IpClass {
  const [a = 0, b = 0, c = 0] = o;
  if (a === 127 || a === 0 || (a === 255 && b === 255)) return 'never'; // loopback, unspecified/this-network, broadcast
  if ((a === 192 && b === 0 && c === 2) || (a === 198 && b === 51 && c === 100) || (a === 203 && b === 0 && c === 113))
    return 'never'; // RFC 5737 documentation ranges: fake by definition
  if (a >= 224) return 'never'; // multicast and reserved
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return 'private';
  if ((a === 100 && b >= 64 && b <= 127) || (a === 169 && b === 254)) return 'private'; // CGNAT, link-local
  return 'public';
}

function ipv6Class(addr: string): IpClass {
  const a = addr.toLowerCase();
  if (/^(?:0{0,4}:){0,7}:?0{0,3}1?$/.test(a.replace(/%.*/, '')) || a === '::') return 'never'; // ::, ::1
  if (a.startsWith('2001:db8:') || a.startsWith('2001:0db8:')) return 'never'; // RFC 3849 documentation
  if (/^ff/.test(a)) return 'never'; // multicast
  if (/^fe[89ab]/.test(a) || /^f[cd]/.test(a)) return 'private'; // link-local, unique local
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) return ipv4Class(mapped[1]!.split('.').map(Number));
  return 'public';
}

const VERSION_CONTEXT = /(?:\bv|\bversions?|\bver|\brelease|\btag|\bbuild|[-\w]==|>=|<=|~|\^)\s*[:=]?\s*$/i;

/** `logo@2x.png` is an asset name, not an address: a "TLD" that is a common file extension rejects the match. */
const FILE_EXTENSION_TLD = new Set(
  'png jpg jpeg gif svg webp ico bmp js mjs cjs ts tsx jsx css scss less json md txt py rb go rs java kt lock yml yaml toml html htm xml pdf zip gz tgz wasm map'.split(
    ' ',
  ),
);
/** `git@github.com` (SSH remotes) and `noreply@…` (Co-Authored-By trailers) name no person. */
const NON_PERSONAL_LOCAL = new Set(['git', 'noreply', 'no-reply']);

/** Build the built-in detectors for the given options. */
export function builtinDetectors(options: DetectorOptions): Detector[] {
  const keep = (c: IpClass) => c === 'public' || (c === 'private' && options.maskPrivateIps);
  const d: Detector[] = [];

  // --- private keys --------------------------------------------------------------------------------------------
  d.push({
    type: 'gcp_service_account_key',
    priority: 0,
    prefilter: needles('private_key'),
    // The service-account JSON as text (a file read by a tool), quoted normally or JSON-escaped inside a string.
    regex: /\\?"private_key\\?"\s{0,8}:\s{0,8}\\?"(?<v>-----BEGIN[^"]{0,12000}?)\\?"/dg,
    range: groupRange('v'),
    maxSpan: 12_100,
    anchor: /private_key/g,
  });
  d.push({
    type: 'private_key',
    priority: 1,
    prefilter: needles('PRIVATE KEY'),
    // A complete PEM block, or, when the END line is missing (a truncated paste), the base64 lines that follow.
    regex:
      /-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[^"]{0,12000}?-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----|(?:(?:\\[rn]|\s){1,4}[A-Za-z0-9+/=]{16,100}){0,160})/g,
    maxSpan: 17_000,
    anchor: /-----BEGIN/g,
  });

  // --- provider tokens with a distinctive prefix -----------------------------------------------------------------
  const token = (type: string, prefilter: RegExp, regex: RegExp, maxSpan: number, validate?: Detector['validate']) =>
    d.push({ type, priority: 2, prefilter, regex, maxSpan, ...(validate ? { validate } : {}) });

  token('anthropic_api_key', needles('sk-ant-'), /sk-ant-[a-z0-9]{2,12}-[A-Za-z0-9_-]{20,256}/g, 290);
  token(
    'openai_api_key',
    needles('sk-'),
    /sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,256}/g,
    280,
    (m, t) =>
      clearBefore(t, m.index, TOKEN_CHAR) && /\d/.test(m[0]) && /[A-Z]/.test(m[0]) && /[a-z]/.test(m[0].slice(3)),
  );
  token(
    'aws_access_key_id',
    needles('AKIA', 'ASIA', 'ABIA', 'ACCA', 'A3T'),
    /(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16}(?![A-Za-z0-9])/g,
    22,
    (m, t) => clearBefore(t, m.index, ALNUM),
  );
  token('gcp_api_key', needles('AIza'), /AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])/g, 41);
  token(
    'azure_client_secret',
    needles('Q~'),
    /[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34}(?![A-Za-z0-9_~.-])/g,
    42,
    (m, t) => clearBefore(t, m.index, /[A-Za-z0-9_~.-]/),
  );
  token(
    'github_token',
    needles('ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_', 'github_pat_'),
    /(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})/g,
    270,
  );
  token('gitlab_token', needles('glpat-'), /glpat-[A-Za-z0-9_-]{20,255}/g, 262);
  token('slack_token', needles('xox'), /xox[baprs]-[A-Za-z0-9-]{10,255}/g, 262, (m) => /\d/.test(m[0]));
  token(
    'slack_webhook',
    needles('hooks.slack.com'),
    /https:\/\/hooks\.slack\.com\/(?:services|workflows|triggers)\/[A-Za-z0-9+/_-]{20,255}/g,
    300,
  );
  token('stripe_key', needles('_live_', '_test_'), /(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,255}/g, 265);
  token('twilio', needles('AC', 'SK'), /(?:AC|SK)[0-9a-f]{32}(?![0-9A-Za-z])/g, 35, (m, t) =>
    clearBefore(t, m.index, ALNUM),
  );
  token('sendgrid_api_key', needles('SG.'), /SG\.[A-Za-z0-9_-]{16,64}\.[A-Za-z0-9_-]{16,128}/g, 200);
  token(
    'npm_token',
    needles('npm_'),
    /npm_[A-Za-z0-9]{36,64}(?![A-Za-z0-9])/g,
    70,
    (m, t) => clearBefore(t, m.index, ALNUM) && mixedCase(m[0].slice(4)),
  );
  token(
    'huggingface_token',
    needles('hf_'),
    /hf_[A-Za-z0-9]{30,64}(?![A-Za-z0-9])/g,
    70,
    (m, t) => clearBefore(t, m.index, ALNUM) && mixedCase(m[0].slice(3)),
  );
  d.push({
    type: 'pypi_token',
    priority: 2,
    prefilter: needles('pypi-AgE'),
    regex: /pypi-AgE[A-Za-z0-9_-]{50,1024}/g,
    maxSpan: 1040,
    anchor: /pypi-AgE/g,
  });
  d.push({
    type: 'jwt',
    priority: 2,
    prefilter: needles('eyJ'),
    regex: /eyJ[A-Za-z0-9_-]{8,2048}\.ey[A-Za-z0-9_-]{8,8192}\.[A-Za-z0-9_-]{0,2048}/g,
    validate: (m, t) => clearBefore(t, m.index, TOKEN_CHAR),
    maxSpan: 12_310,
    anchor: /eyJ/g,
  });

  // --- secrets recognised by the name or syntax around them ------------------------------------------------------
  d.push({
    type: 'aws_secret_access_key',
    priority: 3,
    prefilter: has(/aws|secret/i),
    regex: new RegExp(
      String.raw`(?:aws[\w.-]{0,30}?(?:secret|key)|secret[_.-]?access[_.-]?key)${ASSIGN}(?<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])`,
      'dgi',
    ),
    range: groupRange('v'),
    maxSpan: 130,
  });
  d.push({
    type: 'azure_storage_key',
    priority: 3,
    prefilter: needles('AccountKey=', 'SharedAccessKey='),
    regex: /(?:AccountKey|SharedAccessKey)=(?<v>[A-Za-z0-9+/]{20,120}={0,2})/dg,
    range: groupRange('v'),
    maxSpan: 140,
  });
  d.push({
    type: 'azure_client_secret',
    priority: 3,
    prefilter: has(/azure/i),
    regex: new RegExp(
      String.raw`azure[\w.-]{0,30}?(?:secret|password|key)${ASSIGN}(?<v>[A-Za-z0-9_~.\-]{32,64})`,
      'dgi',
    ),
    range: groupRange('v'),
    maxSpan: 150,
  });
  d.push({
    type: 'twilio',
    priority: 3,
    prefilter: has(/twilio/i),
    regex: new RegExp(
      String.raw`twilio[\w.-]{0,30}?(?:token|secret|key)${ASSIGN}(?<v>[0-9a-f]{32})(?![0-9a-f])`,
      'dgi',
    ),
    range: groupRange('v'),
    maxSpan: 120,
  });
  d.push({
    type: 'url_password',
    priority: 3,
    prefilter: needles('://'),
    // Only the password between `user:` and `@host` is masked; the URL stays readable.
    regex: /(?<=[A-Za-z0-9]):\/\/(?<u>[^\s:/@?#'"<>\\]{0,128}):(?<v>[^\s/@?#'"<>\\]{1,256})@(?=[A-Za-z0-9[])/dg,
    range: groupRange('v'),
    validate: (m) => !isPlaceholder(groupText(m, 'v')),
    maxSpan: 400,
  });
  // Quoted values keep their quotes (so JSON text stays JSON); a backslash ends a value for the same reason.
  const connValue = (g: string): string =>
    String.raw`(?:\\?"(?<${g}1>[^"\\\n]{1,256})\\?"|'(?<${g}2>[^'\\\n]{1,256})'|(?<${g}3>[^;&\s"'<>\\]{1,256}))`;
  d.push({
    type: 'connection_string',
    priority: 3,
    prefilter: has(/password|pwd/i),
    // ADO.NET / ODBC `…;Password=…;` and JDBC / URL query `?user=…&password=…`.
    regex: new RegExp(
      String.raw`(?:(?<=[;?&]\s{0,4})(?:password|pwd)\s{0,4}=\s{0,4}${connValue('v')}|(?<![\w-])(?:password|pwd)=(?<w>[^;&\s"'<>\\]{1,256})(?=;))`,
      'dgi',
    ),
    range: groupRange('v1', 'v2', 'v3', 'w'),
    validate: (m) => !isPlaceholder(groupText(m, 'v1', 'v2', 'v3', 'w')),
    maxSpan: 290,
  });
  d.push({
    type: 'bearer_token',
    priority: 3,
    prefilter: has(/bearer/i),
    regex: /\b[Bb]earer\s{1,4}(?<v>[A-Za-z0-9._~+/-]{16,512}=*)(?![A-Za-z0-9._~+/=-])/dg,
    range: groupRange('v'),
    validate: (m) => looksRandom(groupText(m, 'v')) && !isPlaceholder(groupText(m, 'v')),
    maxSpan: 540,
  });
  d.push({
    type: 'generic_secret',
    priority: 4,
    prefilter: has(/pass|pwd|secret|token|key|credential/i),
    regex: new RegExp(
      String.raw`(?<n>${SECRET_NAME_SOURCE})[A-Za-z0-9_]{0,12}\\?["']?\s{0,4}(?::=|=>|==?|:)\s{0,4}` +
        String.raw`(?:\\?"(?<v1>[^"\\\n]{1,256})\\?"|'(?<v2>[^'\\\n]{1,256})'|(?<v3>[^\s"'\x60,;()\[\]{}<>\\]{1,256}))`,
      'dgi',
    ),
    range: groupRange('v1', 'v2', 'v3'),
    validate: (m) => {
      const unquoted = m.groups?.['v3'];
      return isSecretValue(
        groupText(m, 'v1', 'v2', 'v3'),
        isPasswordName(m.groups?.['n'] ?? ''),
        unquoted === undefined,
      );
    },
    maxSpan: 300,
  });

  // --- personal data ---------------------------------------------------------------------------------------------
  d.push({
    type: 'email',
    priority: 5,
    prefilter: needles('@'),
    // Anchored on `@` with the local part in a lookbehind: scanning from every letter for a local part is ~60× slower.
    regex:
      /(?<=(?<![A-Za-z0-9._%+-])(?<l>[A-Za-z0-9._%+-]{1,64}))@(?<d>[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.(?<tld>[A-Za-z]{2,24}))(?![A-Za-z0-9-])/dg,
    range: (m) => [m.indices!.groups!['l']![0], m.indices!.groups!['d']![1]],
    validate: (m) => {
      const local = m.groups?.['l'] ?? '';
      return (
        !NON_PERSONAL_LOCAL.has(local.toLowerCase()) &&
        !local.startsWith('.') &&
        !FILE_EXTENSION_TLD.has((m.groups?.['tld'] ?? '').toLowerCase())
      );
    },
    maxSpan: 620,
  });
  d.push({
    type: 'payment_card',
    priority: 5,
    prefilter: has(/\d{4}[ -]?\d{4}/),
    regex: /(?<![\d.,+-])[2-6]\d{3}(?:[ -]?\d){9,15}(?!\d)/g,
    validate: (m) => {
      const s = m[0];
      const seps = s.replace(/\d/g, '');
      if (seps.length > 0) {
        if (!/^(?: +|-+)$/.test(seps) || /[ -]{2}/.test(s)) return false;
        const groups = s.split(/[ -]/).map((g) => g.length);
        const fours = groups.slice(0, -1).every((g) => g === 4) && (groups.at(-1) ?? 0) <= 4;
        const amex = groups.length === 3 && groups[0] === 4 && groups[1] === 6 && (groups[2] === 5 || groups[2] === 4);
        if (!fours && !amex) return false;
      }
      const digits = s.replace(/\D/g, '');
      return luhnValid(digits) && plausibleCardNumber(digits);
    },
    maxSpan: 40,
  });
  d.push({
    type: 'iban',
    priority: 5,
    prefilter: has(/[A-Z]{2}\d{2}/),
    regex: /(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])/g,
    validate: (m) => ibanValid(m[0].replace(/ /g, '')),
    maxSpan: 50,
  });
  d.push({
    type: 'us_ssn',
    priority: 5,
    prefilter: has(/\d-\d\d-\d/),
    regex: /(?<![\w-])(?<a>\d{3})-(?<g>\d{2})-(?<s>\d{4})(?![\w-])/g,
    validate: (m) => ssnValid(m.groups!['a']!, m.groups!['g']!, m.groups!['s']!),
    maxSpan: 13,
  });
  d.push({
    type: 'phone',
    priority: 6,
    prefilter: has(/\+[1-9]/),
    // E.164 and its written forms: +1 (415) 555-0132, +44 20 7946 0958, +4915112345678.
    regex: /(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]?(?:\(\d{1,4}\)|\d{1,5})){1,6}(?![\d\w])/g,
    validate: (m) => {
      const n = m[0].replace(/\D/g, '').length;
      return n >= 8 && n <= 15;
    },
    maxSpan: 45,
  });
  d.push({
    type: 'phone',
    priority: 6,
    prefilter: has(/\d{3}[-. )]/),
    // North American numbers: (415) 555-0132, 415-555-0132, 415.555.0132; area code and exchange start with 2–9.
    regex:
      /(?<![\w.+-])(?:\((?<a1>\d{3})\) ?(?<e1>\d{3})[-. ]\d{4}|(?<a2>\d{3})(?<s>[-.])(?<e2>\d{3})\k<s>\d{4})(?![\w-]|\.\d)/g,
    validate: (m) => {
      const area = m.groups?.['a1'] ?? m.groups?.['a2'] ?? '';
      const exchange = m.groups?.['e1'] ?? m.groups?.['e2'] ?? '';
      return area[0]! >= '2' && exchange[0]! >= '2';
    },
    maxSpan: 20,
  });
  d.push({
    type: 'phone',
    priority: 6,
    prefilter: has(/0\d{1,4}[ /-]\d{2}/),
    // European national forms with a trunk 0: 030 12345678, 06 12 34 56 78, 0171-1234567, 020 7946 0958.
    regex: /(?<![\w.+\/:-])0\d{1,4}(?<s>[ /-])\d{2,8}(?:\k<s>\d{2,8}){0,3}(?![\w-]|[.:/]\d)/g,
    validate: (m) => {
      const n = m[0].replace(/\D/g, '').length;
      // 123-45-6789 is an SSN's shape (valid or not), never a European phone number.
      return n >= 9 && n <= 12 && !/^\d{3}-\d{2}-\d{4}$/.test(m[0]);
    },
    maxSpan: 45,
  });
  d.push({
    type: 'ipv4',
    priority: 6,
    prefilter: has(/\d\.\d{1,3}\.\d/),
    regex: /(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w-]|\.\d)/g,
    validate: (m, t) => {
      const octets = m[0].split('.');
      if (octets.some((o) => (o.length > 1 && o[0] === '0') || Number(o) > 255)) return false;
      // `v1.2.3.4`, `version 10.0.0.1`, `pkg@1.2.3.4`, `foo==1.2.3.4` are versions, not hosts.
      if (VERSION_CONTEXT.test(t.slice(Math.max(0, m.index - 24), m.index))) return false;
      return keep(ipv4Class(octets.map(Number)));
    },
    maxSpan: 18,
  });
  d.push({
    type: 'ipv6',
    priority: 6,
    prefilter: has(/[0-9A-Fa-f]:[0-9A-Fa-f]{0,4}:/),
    regex:
      /(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:|::)[0-9A-Fa-f:]{1,38}(?:\.\d{1,3}){0,3}(?:%[A-Za-z0-9_.]{1,16})?(?![\w:]|\.\d)/g,
    validate: (m) => {
      const addr = m[0].replace(/%.*/, '');
      // Three or more groups: `a::b`, `Foo::bar` and `dead::beef` are code far more often than addresses.
      if (!isIPv6(addr) || addr.split(':').filter((g) => g !== '').length < 3) return false;
      return keep(ipv6Class(addr));
    },
    maxSpan: 70,
  });
  return d;
}
