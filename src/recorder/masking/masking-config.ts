/**
 * The `masking:` block of a connection: which detectors run, extra rules, JSON paths masked whole, and an allow-list
 * of known false positives. Custom patterns and paths are compiled here, so a bad one is a config error at start-up
 * (`masking.rules[0].pattern: …`), never a failure on the hot path.
 */
import { z } from 'zod';
import { DETECTOR_TYPES, type DetectorType } from './detectors.js';
import { parseJsonPath } from './json-path.js';

const TYPE_NAME = /^[a-z][a-z0-9_]{0,63}$/;

/** `/body/flags` in the allow-list is a regular expression; anything else is an exact value. */
const REGEX_LITERAL = /^\/(.+)\/([a-z]*)$/s;

function regexError(source: string, flags: string): string | undefined {
  try {
    const re = new RegExp(source, flags);
    if (re.test('')) return 'must not match the empty string';
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

const detectorSwitches = z
  .object(
    Object.fromEntries(DETECTOR_TYPES.map((t) => [t, z.boolean().optional()])) as Record<
      DetectorType,
      z.ZodOptional<z.ZodBoolean>
    >,
  )
  .strict();

const customRule = z
  .object({
    /** Shown in the mask `[REDACTED:<type>]` and in findings. */
    type: z.string().regex(TYPE_NAME, 'must be 1-64 characters of a-z, 0-9 or "_", starting with a letter'),
    /** A JavaScript regular expression (without slashes); matches should stay under 256 characters. */
    pattern: z.string().min(1),
    /** Any of `i`, `m`, `s`, `u`. */
    flags: z
      .string()
      .regex(/^[imsu]*$/, 'may only contain the flags i, m, s, u')
      .default(''),
  })
  .strict()
  .superRefine((r, ctx) => {
    const err = regexError(r.pattern, r.flags);
    if (err !== undefined)
      ctx.addIssue({ code: 'custom', path: ['pattern'], message: `invalid regular expression /${r.pattern}/: ${err}` });
  });

export const maskingConfigSchema = z
  .object({
    /** Off: bodies are stored exactly as exchanged. */
    enabled: z.boolean().default(true),
    /** Switch built-in detectors off (or back on) by type: `{ email: false }`. All are on by default. */
    detectors: detectorSwitches.default({}),
    /** Extra patterns, masked as `[REDACTED:<type>]`. */
    rules: z.array(customRule).default([]),
    /** JSON paths (`$.metadata.user_id`, `$..user_id`, `$.messages[*].name`) whose whole value is masked as `[REDACTED:path]`. */
    paths: z
      .array(
        z.string().superRefine((p, ctx) => {
          try {
            parseJsonPath(p);
          } catch (err) {
            ctx.addIssue({ code: 'custom', message: (err as Error).message });
          }
        }),
      )
      .default([]),
    /** Values never masked: exact strings, or `/regex/flags` tested against the matched value. */
    allow: z
      .array(
        z
          .string()
          .min(1)
          .superRefine((a, ctx) => {
            const m = REGEX_LITERAL.exec(a);
            if (!m) return;
            const flags = m[2]!;
            if (!/^[imsu]*$/.test(flags)) {
              ctx.addIssue({ code: 'custom', message: `allow-list regex ${a}: flags may only be i, m, s, u` });
              return;
            }
            const err = regexError(m[1]!, flags);
            if (err !== undefined) ctx.addIssue({ code: 'custom', message: `invalid allow-list regex ${a}: ${err}` });
          }),
      )
      .default([]),
    /**
     * Also mask private-range IP addresses (10/8, 172.16/12, 192.168/16, 100.64/10, 169.254/16, fc00::/7, fe80::/10).
     * Off by default: they name machines on a private network, not people, and audit readers need them. Loopback,
     * unspecified and documentation addresses are never masked.
     */
    mask_private_ips: z.boolean().default(false),
  })
  .strict();

export type MaskingConfigInput = z.input<typeof maskingConfigSchema>;
export type MaskingConfig = z.output<typeof maskingConfigSchema>;

/** Split an allow-list entry into an exact value or a compiled regex. */
export function compileAllowEntry(entry: string): string | RegExp {
  const m = REGEX_LITERAL.exec(entry);
  return m ? new RegExp(m[1]!, m[2]!) : entry;
}
