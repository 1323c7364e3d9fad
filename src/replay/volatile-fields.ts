/**
 * What may legitimately differ between two runs of the same conversation, and how a request body is normalised so
 * that two runs compare equal. Replay matches a request to the recording exactly when it can, and on this normalised
 * form otherwise (see request-matcher.ts).
 *
 * Found by diffing the request bodies of two recorded Claude Code runs of the same prompt (Claude Agent SDK, fresh
 * temp working directory each): only `metadata.user_id` (device id + session id) and the environment reminder's
 * working directory differed; tool_use ids differ too between live runs, but a replayed run echoes the recorded ids.
 * The other rules cover what differs across days, machines and Claude Code versions:
 *
 * - `metadata.user_id` is dropped: a device hash and session id (Claude Code), or the caller's own user id.
 * - every `cache_control` member is dropped: it is a hint where to cache the prompt prefix, it never changes what the
 *   model answers, and clients move it as a conversation grows.
 * - the working directory, read from the body's own `Primary working directory:` / `Working directory:` line, is
 *   replaced by `<cwd>` wherever it occurs (tool results quote it), and so is its slug form (`-tmp-x`), which Claude
 *   Code uses in paths of its own.
 * - values of the environment lines Claude Code writes (platform, shell, OS version, git repository or not, extra
 *   working directories) become `<volatile>`; the `gitStatus:` snapshot is cut to its label.
 * - UUIDs become `<uuid>` (session ids in paths and reminders).
 * - ISO dates and timestamps become `<date>` inside the system prompt and `<system-reminder>` spans only: a date the
 *   user typed stays significant.
 * - the billing header's `cc_version=…` becomes `cc_version=<version>`.
 *
 * Text the recorder masked (`[REDACTED:<type>]`) is not normalised here: the matcher lets it stand for any text.
 */

/** Replaced for a volatile value in normalised bodies; shown as is in divergence messages. */
const CWD = '<cwd>';

const ENV_LINE =
  /^([ \t]*(?:- )?)(Primary working directory|Working directory|Additional working directories|Is a git repository|Is directory a git repo|Platform|Shell|OS Version)(:[ \t]*)(.*)$/gm;
const CWD_LINE = /^[ \t]*(?:- )?(?:Primary working directory|Working directory):[ \t]*(\S.*?)[ \t]*$/m;
const GIT_STATUS = /gitStatus:[\s\S]*$/;
const UUID = /\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi;
const ISO_DATE = /\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b/g;
const REMINDER = /<system-reminder>[\s\S]*?(?:<\/system-reminder>|$)/g;
const CC_VERSION = /cc_version=[^;\s]*/g;

/** The working directory a Claude Code request names in its environment block, if any. */
export function workingDirectory(body: unknown): string | undefined {
  let found: string | undefined;
  visitStrings(body, (s) => {
    if (found !== undefined) return;
    const dir = CWD_LINE.exec(s)?.[1];
    if (dir !== undefined && (dir.startsWith('/') || /^[A-Za-z]:\\/.test(dir))) found = dir;
  });
  return found;
}

/**
 * A normalised copy of a request body (the input is not changed). Deterministic, so a recorded body is normalised
 * once and compared by its canonical JSON.
 */
export function normaliseBody(body: unknown): unknown {
  const cwd = workingDirectory(body);
  // A root or very short path would replace too much; real working directories are longer.
  const cwds = cwd !== undefined && cwd.length > 3 ? [cwd, cwd.replace(/[^A-Za-z0-9]/g, '-')] : [];
  const text = (s: string, inSystem: boolean): string => normaliseText(s, cwds, inSystem);
  return walk(body, undefined, 0, text);
}

function normaliseText(s: string, cwds: readonly string[], inSystem: boolean): string {
  let out = s;
  for (const c of cwds) if (out.includes(c)) out = out.split(c).join(CWD);
  out = out.replace(ENV_LINE, '$1$2$3<volatile>');
  if (out.includes('gitStatus:')) out = out.replace(GIT_STATUS, 'gitStatus: <volatile>');
  out = out.replace(UUID, '<uuid>');
  out = out.replace(CC_VERSION, 'cc_version=<version>');
  if (inSystem) out = out.replace(ISO_DATE, '<date>');
  else if (out.includes('<system-reminder>')) out = out.replace(REMINDER, (span) => span.replace(ISO_DATE, '<date>'));
  return out;
}

/** `top` is the body member the value sits under (`system`, `messages` …); `depth` its object nesting. */
function walk(
  value: unknown,
  top: string | undefined,
  depth: number,
  text: (s: string, inSystem: boolean) => string,
): unknown {
  if (typeof value === 'string') return text(value, top === 'system');
  if (Array.isArray(value)) return value.map((v) => walk(v, top, depth, text));
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (k === 'cache_control') continue;
    if (k === 'user_id' && depth === 1 && top === 'metadata') continue;
    out[k] = walk(v, top ?? k, depth + 1, text);
  }
  return out;
}

function visitStrings(value: unknown, fn: (s: string) => void): void {
  if (typeof value === 'string') fn(value);
  else if (Array.isArray(value)) for (const v of value) visitStrings(v, fn);
  else if (value !== null && typeof value === 'object') for (const v of Object.values(value)) visitStrings(v, fn);
}
