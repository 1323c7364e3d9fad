/**
 * Whether the value assigned to a secret-sounding name (`password = …`, `"api_key": …`) is a real secret, or code,
 * a type, a variable reference or a documentation placeholder.
 *
 * The policy, in short:
 * - Password-like names (`password`, `passwd`, `pwd`, `passphrase`): people choose low-entropy passwords, so a literal
 *   of 6+ characters is masked whatever its entropy, unless it is a known placeholder (`changeme`, `password`,
 *   `<your-password>`, `${DB_PASSWORD}`, `****` …). An unquoted all-letter word (`password = newPassword`) reads as a
 *   variable in code and is kept.
 * - Other names (`secret`, `token`, `api_key`, `access_key`, `credentials` …): these hold machine-made values, so the
 *   value must look random: 12+ characters, no spaces, at least two character classes and Shannon entropy ≥ 3 bits/char.
 */
import { shannonEntropy } from './entropy.js';

/** Names whose value is a secret; the generic detector looks for these before `=`/`:`. */
export const SECRET_NAME_SOURCE =
  'passw(?:or)?d|passphrase|pwd|secret|token|api[_.-]?key|apikey|access[_.-]?key|private[_.-]?key|auth[_.-]?key|credentials?';

/** A whole JSON object key naming a secret: `password`, `DB_PASSWORD`, `clientSecret`, `api_key`; not `max_tokens`. */
export const SECRET_KEY = new RegExp(`(?:${SECRET_NAME_SOURCE})$`, 'i');

const PASSWORD_NAME = /passw(?:or)?d|passphrase|pwd/i;

const PLACEHOLDER_WORDS = new Set([
  'changeme',
  'change_me',
  'change-me',
  'changeit',
  'password',
  'passwd',
  'passw0rd',
  'secret',
  'token',
  'example',
  'sample',
  'dummy',
  'test',
  'testing',
  'placeholder',
  'redacted',
  'null',
  'none',
  'nil',
  'undefined',
  'true',
  'false',
  'string',
  'str',
  'bool',
  'boolean',
  'int',
  'number',
  'any',
  'unknown',
  'object',
  'required',
  'optional',
  'empty',
  'default',
  'value',
  'hidden',
  'masked',
  'foo',
  'bar',
  'foobar',
  'xyz',
  'abc123',
  'secret123',
  'password123',
  'your_password',
  'yourpassword',
  'mypassword',
  'my_password',
  'letmein',
  'admin',
  'root',
  'guest',
  'user',
]);

/** Template and variable syntax, angle-bracket placeholders, runs of one character, already-masked text. */
const PLACEHOLDER_SHAPE =
  /^(?:\$\{?[\w.:-]+\}?|%\(?\w*\)?s?|\{\{?[^}]*\}\}?|<[^>]*>|\[[^\]]*\]|(.)\1*|your[-_ ].*|.*[-_ ]here|process\.env\..*|os\.environ.*|env\..*|\*+|x+|\.\.\.|…)$/i;

/** `self.token`, `config.db.password`, `getToken` (a bare identifier), `os.getenv` … — code, not a literal. */
const DOTTED_IDENTIFIER = /^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+$/;
const LETTERS_ONLY_IDENTIFIER = /^[A-Za-z_$][A-Za-z_$]*$/;

/** Whether `name` (the key or variable name) is password-like rather than token-like. */
export function isPasswordName(name: string): boolean {
  return PASSWORD_NAME.test(name);
}

/** Known placeholder or variable reference: never masked. */
export function isPlaceholder(value: string): boolean {
  return PLACEHOLDER_WORDS.has(value.toLowerCase()) || PLACEHOLDER_SHAPE.test(value);
}

function charClasses(v: string): number {
  let lower = 0;
  let upper = 0;
  let digit = 0;
  let other = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c >= 97 && c <= 122) lower = 1;
    else if (c >= 65 && c <= 90) upper = 1;
    else if (c >= 48 && c <= 57) digit = 1;
    else other = 1;
  }
  return lower + upper + digit + other;
}

/** Machine-made-looking: long enough, no spaces, mixed classes, high entropy. */
export function looksRandom(v: string): boolean {
  if (v.length < 12 || /\s/.test(v) || /^\d+$/.test(v)) return false;
  return charClasses(v) >= 2 && shannonEntropy(v) >= 3;
}

/**
 * Decide for one assignment. `password` says whether the name is password-like, `quoted` whether the value was a
 * quoted literal (or a JSON string value) rather than a bare word that may be code.
 */
export function isSecretValue(value: string, password: boolean, quoted: boolean): boolean {
  if (value.length === 0 || value.length > 512 || isPlaceholder(value)) return false;
  if (value.startsWith('[REDACTED:')) return false;
  // A URL or a file path is where a secret lives, not the secret.
  if (/^[/.~]/.test(value) || value.includes('://')) return false;
  if (!quoted && (DOTTED_IDENTIFIER.test(value) || LETTERS_ONLY_IDENTIFIER.test(value))) return false;
  if (password) return value.length >= 6 && !/^\s|\s$/.test(value);
  return looksRandom(value);
}
