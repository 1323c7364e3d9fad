/**
 * The top-level `approvals:` section of the config: the webhooks that tell approvers a call is waiting (the rules
 * themselves are per connection, in approval-rules.ts). Apart from the notifier, so that reading a config loads no
 * HTTP client.
 */
import { z } from 'zod';
import {
  HTTP_HEADER_NAME,
  httpUrlWithout,
  orSecretRef,
  positiveDuration,
  proxySetting,
  secretRef,
} from '../config/common-schemas.js';

const webhookName = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9._-]{0,62}$/,
    'must be 1-63 characters of a-z, 0-9, ".", "_" or "-", starting with a letter or digit',
  );

/**
 * Why a URL with `user:password@` is refused: fetch will not send it (and its error quotes the URL), and whatever the
 * gateway logs or records about the webhook would carry the password. The message never repeats the URL.
 */
export const CREDENTIALS_IN_URL =
  'must not carry credentials (user:password@): send them in a header instead, e.g. headers: { authorization: ' +
  '{ env: HOOK_AUTH } } with HOOK_AUTH set to "Basic <base64 of user:password>" or "Bearer <token>"';

/** Headers Vigil sets itself on every notification. */
const OWN_HEADERS = new Set(['content-type', 'content-length', 'host', 'x-vigil-timestamp', 'x-vigil-signature']);

/**
 * Extra request headers; values that carry credentials go by reference like any other secret. Names are checked here
 * rather than by a key schema, whose failures zod reports only as "Invalid key in record".
 */
const extraHeaders = z.record(z.string(), orSecretRef(z.string(), 'a string')).superRefine((headers, ctx) => {
  for (const name of Object.keys(headers)) {
    if (!HTTP_HEADER_NAME.test(name))
      ctx.addIssue({ code: 'custom', path: [name], message: 'must be a valid HTTP header name' });
    else if (OWN_HEADERS.has(name.toLowerCase()))
      ctx.addIssue({ code: 'custom', path: [name], message: 'is set by Vigil itself and cannot be replaced' });
  }
});

const webhookSchema = z
  .object({
    name: webhookName,
    /**
     * Where to POST. A Slack webhook URL is itself a credential: give it as `{ env }` or `{ file }`. Never with
     * `user:password@` in it (see `headers`).
     */
    url: orSecretRef(httpUrlWithout(CREDENTIALS_IN_URL), 'an absolute http(s) URL'),
    /** Extra headers, e.g. `authorization: { env: HOOK_AUTH }` for a receiver behind basic or bearer auth. */
    headers: extraHeaders.optional(),
    /** `json` (default): the generic payload, signed when `secret` is set. `slack`: `{ text, blocks }`. */
    format: z.enum(['json', 'slack']).default('json'),
    /** HMAC-SHA256 key for the `x-vigil-signature` header (json format). */
    secret: secretRef.optional(),
    /** Only calls held on these connections; absent: all. */
    connections: z.array(z.string().min(1)).optional(),
    /** Per attempt. */
    timeout: positiveDuration.default(5000),
    /** Attempts after the first, with backoff (0.5 s, 1 s, 2 s, …). */
    retries: z.number().int().min(0).max(10).default(3),
    /** The HTTP proxy it is reached through (see net/egress-proxy.ts); absent: the environment's, as connections. */
    proxy: proxySetting.optional(),
  })
  .strict();

/** The top-level `approvals:` section (the rules themselves are per connection). */
export const approvalsConfigSchema = z
  .object({
    webhooks: z.array(webhookSchema).default([]),
    /** The admin API's base URL as approvers reach it: notifications then carry approve and deny links. */
    admin_url: httpUrlWithout(
      'must not carry credentials (user:password@): its approve and deny links are sent to every webhook',
    ).optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.webhooks.forEach((w, i) => {
      if (seen.has(w.name))
        ctx.addIssue({ code: 'custom', path: ['webhooks', i, 'name'], message: `duplicate webhook name "${w.name}"` });
      seen.add(w.name);
      if (w.format === 'slack' && w.secret) {
        ctx.addIssue({
          code: 'custom',
          path: ['webhooks', i, 'secret'],
          message: 'Slack webhooks are not signed: the URL is the secret',
        });
      }
    });
  })
  .prefault({});
export type ApprovalsConfig = z.output<typeof approvalsConfigSchema>;
export type WebhookConfig = ApprovalsConfig['webhooks'][number];
