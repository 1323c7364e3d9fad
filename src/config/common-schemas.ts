/**
 * Schema pieces every config section uses: durations, secret references and URLs. A module of its own so that any section
 * (connections, SIEM sinks, …) can import them without import cycles through config-schema.ts.
 */
import { z } from 'zod';

const DURATION = /^(\d+)(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

function parseDuration(v: number | string, ctx: z.core.$RefinementCtx, positive: boolean): number {
  if (typeof v === 'number') return v;
  const m = DURATION.exec(v.trim());
  const ms = m ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : Number.NaN;
  if (!m || (positive && ms <= 0)) {
    ctx.addIssue({ code: 'custom', message: `must be a duration such as 500ms, 30s, 5m, 2h or 30d (got "${v}")` });
    return z.NEVER;
  }
  return ms;
}

/**
 * A union that, when no option fits (a number where a string or `{ env }` goes, say), says `expected` rather than
 * zod's "Invalid input", which does not say what to write instead. An input one option fits the type of is reported
 * with that option's own message (a URL with a password, an empty string), as zod does anyway.
 */
export function unionOf<const T extends readonly [z.ZodType, ...z.ZodType[]]>(options: T, expected: string) {
  return z.union(options, { error: (issue) => (issue.code === 'invalid_union' ? expected : undefined) });
}

const DURATION_FORMAT = 'must be a duration such as 500ms, 30s, 5m, 2h or 30d, or a number of milliseconds';

/** `30s`, `5m`, `2h`, `30d`, `250ms`, or a number of milliseconds. */
export const duration = unionOf([z.number().int().nonnegative(), z.string()], DURATION_FORMAT).transform((v, ctx) =>
  parseDuration(v, ctx, false),
);

/** A duration of at least 1 ms (timeouts). */
export const positiveDuration = unionOf([z.number().int().positive(), z.string()], DURATION_FORMAT).transform(
  (v, ctx) => parseDuration(v, ctx, true),
);

/** What a secret reference must look like; the message never quotes the value, which may be the secret itself. */
export const SECRET_REF_FORMAT =
  'a secret is never written in the config file: give it as { env: NAME } (an environment variable holding it) or ' +
  '{ file: PATH } (a file holding it)';

/**
 * The objects the schema parsed as a secret reference or a certificate file, so that start-up can find the ones to read
 * by what the schema says they are, not by their shape: `headers: { env: production }` is a header, not `{ env: NAME }`.
 */
const parsedSecretRefs = new WeakSet<object>();
const parsedCertificateFiles = new WeakSet<object>();

/** Whether the config parser read `value` as a secret reference (`secretRef`, or the reference of `orSecretRef`). */
export function isSecretRef(value: object): value is SecretRef {
  return parsedSecretRefs.has(value);
}

/** Whether the config parser read `value` as a certificate file (`certificateFile`). */
export function isCertificateFile(value: object): value is { file: string } {
  return parsedCertificateFiles.has(value);
}

/** What start-up reads from outside the config: a secret reference or a certificate file. */
export type ConfigRef = SecretRef | { file: string };

/**
 * Calls `fn` with every secret reference and certificate file the schema parsed under `value`, and its path from
 * `path`: what start-up reads is found by what the schema says it is, not by its shape (a header named `env`).
 */
export function forEachConfigRef(
  value: unknown,
  path: readonly PropertyKey[],
  fn: (ref: ConfigRef, path: readonly PropertyKey[]) => void,
): void {
  if (value === null || typeof value !== 'object') return;
  if (isSecretRef(value) || isCertificateFile(value)) return fn(value, path);
  for (const [k, v] of Object.entries(value)) forEachConfigRef(v, [...path, Array.isArray(value) ? Number(k) : k], fn);
}

/** A secret is never written in the config itself: it is read from an environment variable or a file. */
export const secretRef = unionOf(
  [z.object({ env: z.string().min(1) }).strict(), z.object({ file: z.string().min(1) }).strict()],
  SECRET_REF_FORMAT,
).transform((ref) => {
  parsedSecretRefs.add(ref);
  return ref;
});
export type SecretRef = z.output<typeof secretRef>;

/** A certificate (a CA, a client certificate): not secret, but long, so only as a file. */
export const certificateFile = z
  .object({ file: z.string().min(1) })
  .strict()
  .transform((ref) => {
    parsedCertificateFiles.add(ref);
    return ref;
  });

/**
 * `value` (e.g. a URL without a password, a header value) or a reference to where it is kept. `what` says what `value`
 * is, for the message when the input is neither, e.g. "a string". The message never quotes the input.
 */
export function orSecretRef<T extends z.ZodType>(value: T, what: string) {
  return unionOf([value, secretRef], `must be ${what}, or { env: NAME } or { file: PATH } holding it`);
}

/** A valid HTTP header name (an RFC 9110 token). */
export const HTTP_HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

/** Whether `url` has a user name or password in it. */
export function hasCredentials(url: URL): boolean {
  return url.username !== '' || url.password !== '';
}

const absoluteHttpUrl = z.url({ protocol: /^https?$/, error: 'must be an absolute http(s) URL' });

/**
 * An absolute http(s) URL without `user:password@` in it, refused with `message`: fetch will not send such a URL (its
 * error quotes it), and whatever the gateway logs or records about the URL would carry the password. The refinement
 * runs even when the URL check failed, hence `canParse`.
 */
export function httpUrlWithout(message: string) {
  return absoluteHttpUrl.refine((v) => !URL.canParse(v) || !hasCredentials(new URL(v)), message);
}

/**
 * An HTTP proxy to reach something outside through (see proxy/egress-proxy.ts): `http://proxy.example:3128`,
 * `{ env: NAME }` or `{ file: PATH }` for one with a password in it, or `none`.
 */
export const proxySetting = orSecretRef(
  z.union([z.literal('none'), z.string().min(1)]).superRefine((v, ctx) => {
    if (v === 'none') return;
    const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(v) && URL.canParse(v) ? new URL(v) : null;
    if (url === null) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be an http(s) proxy URL such as http://proxy.example:3128, or none',
      });
    } else if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      ctx.addIssue({ code: 'custom', message: `must be an http:// or https:// proxy (got ${url.protocol})` });
    } else if (hasCredentials(url)) {
      ctx.addIssue({
        code: 'custom',
        message: 'must not contain a user or password: give a proxy URL with one as { env: NAME } or { file: PATH }',
      });
    }
  }),
  'an http(s) proxy URL or none',
);
export type ProxySetting = z.output<typeof proxySetting>;
