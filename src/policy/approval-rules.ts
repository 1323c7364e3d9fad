/**
 * Approval rules: which calls on a connection are refused at once (`deny`) or held for a person (`hold`).
 *
 * A connection's `approvals:` list is validated by {@link approvalRulesSchema} at start-up and compiled once by
 * {@link compileApprovalRules} (regexes, globs, time zones), so that {@link evaluate} on the hot path only runs
 * compiled matchers. `evaluate` is pure: the same rules, caller, body and time give the same answer.
 *
 * Conditions of one rule must all match; each list inside a condition matches when any of its entries does. Cheap
 * conditions (who, when, model, max_tokens) are checked first, and the body is parsed only when a rule that got that
 * far looks at content.
 */
import { z } from 'zod';
import { positiveDuration } from '../config/common-schemas.js';
import type { Principal } from '../identity/principal.js';
import { isOpaque } from '../recorder/masking/masker.js';
import { RequestBody } from '../recorder/request-body.js';

/** `pattern` or `/pattern/flags`; checked by compiling it, so a bad pattern is a config error, not a runtime one. */
const regexSource = z
  .string()
  .min(1)
  .superRefine((v, ctx) => {
    try {
      toRegExp(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `not a valid regular expression: ${(err as Error).message}` });
    }
  });

const CLOCK = /^([01]\d|2[0-3]):([0-5]\d)$/;

const timeOfDaySchema = z
  .object({
    /** `HH:MM`, inclusive. */
    from: z.string().regex(CLOCK, 'must be HH:MM (24-hour clock), e.g. 22:00'),
    /** `HH:MM`, exclusive; before `from` means the window crosses midnight. */
    to: z.string().regex(CLOCK, 'must be HH:MM (24-hour clock), e.g. 06:00'),
    /** IANA time zone, e.g. `Europe/Paris`. */
    tz: z
      .string()
      .default('UTC')
      .refine((tz) => {
        try {
          new Intl.DateTimeFormat('en-US', { timeZone: tz });
          return true;
        } catch {
          return false;
        }
      }, 'must be an IANA time zone such as UTC or Europe/Paris'),
  })
  .strict()
  .refine((t) => t.from !== t.to, {
    message: 'from and to must differ (a window of no time, or all day, is ambiguous)',
  });

const names = z.array(z.string().min(1)).min(1);

const whenSchema = z
  .object({
    /**
     * Regexes over all the request's text: the system prompt and every message, whatever block holds the text
     * (text, documents, search results, thinking, tool calls' input, tool results). Not tool definitions.
     */
    prompt_matches: z.array(regexSource).min(1).optional(),
    /**
     * Regexes over tool results only (what a tool brought back into the conversation: `tool_result` blocks and server
     * tools' results, with everything in them): for content to catch when a tool fetched it, not when a person wrote it.
     */
    tool_result_matches: z.array(regexSource).min(1).optional(),
    /** Tool names (globs) in the request's `tools`. */
    tools_offered: names.optional(),
    /** Tool names (globs) of `tool_use` blocks in the conversation: tools the model has called in this session. */
    tools_used: names.optional(),
    /** Model globs, e.g. `claude-opus-*`. */
    models: names.optional(),
    /** `max_tokens` strictly above this. */
    max_tokens_above: z.number().int().nonnegative().optional(),
    /** Callers by subject, email or gateway key name. */
    callers: names.optional(),
    /** Callers in any of these groups (from their OIDC token). */
    groups: names.optional(),
    time_of_day: timeOfDaySchema.optional(),
  })
  .strict();

const ruleSchema = z
  .object({
    /** Shown to approvers and recorded; unique per connection. */
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$/, 'must be 1-63 letters, digits, spaces, ".", "_" or "-"'),
    action: z.enum(['hold', 'deny']),
    /** `deny`: what the client is told. `hold`: shown to approvers. */
    message: z.string().min(1).max(1000).optional(),
    /** All given conditions must match. `{}` matches every call. */
    when: whenSchema,
    /** hold: how long a call waits for a decision before it is refused. Default 5m. */
    timeout: positiveDuration.optional(),
    /** hold: distinct approvers needed. Default 1. */
    approvals_required: z.number().int().min(1).max(10).optional(),
    /** hold: groups whose members may approve; empty or absent: anyone authenticated except the caller. */
    approver_groups: z.array(z.string().min(1)).optional(),
    /** hold: longest grant an approver may give ("this caller, this rule, for the next N minutes"); absent: no grants. */
    grant: positiveDuration.optional(),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.action === 'deny') {
      for (const key of ['timeout', 'approvals_required', 'approver_groups', 'grant'] as const) {
        if (r[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `only hold rules take ${key}` });
      }
    }
  });

/** A connection's `approvals:` list. */
export const approvalRulesSchema = z.array(ruleSchema).superRefine((rules, ctx) => {
  const seen = new Set<string>();
  rules.forEach((r, i) => {
    if (seen.has(r.name))
      ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate rule name "${r.name}"` });
    seen.add(r.name);
  });
});
export type ApprovalRuleConfig = z.output<typeof ruleSchema>;
export type ApprovalRulesInput = z.input<typeof approvalRulesSchema>;

const DEFAULT_HOLD_TIMEOUT_MS = 5 * 60_000;

/** A rule ready for the hot path. */
export interface CompiledRule {
  readonly name: string;
  readonly action: 'hold' | 'deny';
  readonly message: string | undefined;
  readonly timeoutMs: number;
  readonly approvalsRequired: number;
  readonly approverGroups: readonly string[];
  /** Longest grant allowed, ms; 0: no grants. */
  readonly grantMaxMs: number;
  /** Whether any condition needs the parsed body beyond top-level fields. */
  readonly needsContent: boolean;
  /** The rule's content patterns, to show approvers where they matched. */
  readonly patterns: readonly RegExp[];
  /** Conditions in the order they are tried (cheapest first); each returns a description when it matches. */
  readonly conditions: readonly Condition[];
}

/** The rules of one connection, deny rules first. Empty: nothing to evaluate. */
export interface CompiledRules {
  readonly rules: readonly CompiledRule[];
}

type Condition = (ctx: MatchContext) => string | null;

/** What a condition sees: the caller, the time, and the body, read lazily and at most once. */
class MatchContext {
  private content_: RequestContent | undefined;

  constructor(
    readonly principal: Principal,
    readonly body: RequestBody,
    readonly now: number,
  ) {}

  get content(): RequestContent {
    return (this.content_ ??= requestContent(this.body.json()));
  }
}

/** Text and names pulled out of a Messages API request, once per request. */
export interface RequestContent {
  /** Every piece of text in the system prompt and messages (see {@link collectText}), joined by newlines. */
  readonly text: string;
  /** The text inside tool results only (`tool_result` and server tools' `*_tool_result` blocks). */
  readonly toolResults: string;
  readonly toolsOffered: readonly string[];
  readonly toolsUsed: readonly string[];
}

/** `/pattern/flags` or a bare pattern. */
function toRegExp(source: string): RegExp {
  const m = /^\/(.+)\/([dimsuv]*)$/s.exec(source);
  // `g` and `y` are left out on purpose: they make test() stateful between calls.
  return m ? new RegExp(m[1]!, m[2]) : new RegExp(source);
}

/** `*` any run of characters, `?` one character; everything else literal. */
function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

function anyGlob(globs: readonly string[]): (name: string) => boolean {
  const res = globs.map(globToRegExp);
  return (name) => res.some((re) => re.test(name));
}

function minutesOf(clock: string): number {
  const [h, m] = clock.split(':');
  return Number(h) * 60 + Number(m);
}

/** Minutes since midnight at `now` in `tz`. */
function clockIn(tz: string): (now: number) => number {
  if (tz === 'UTC' || tz === 'Etc/UTC') {
    return (now) => {
      const d = new Date(now);
      return d.getUTCHours() * 60 + d.getUTCMinutes();
    };
  }
  const fmt = new Intl.DateTimeFormat('en-GB', { timeZone: tz, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  return (now) => {
    let h = 0;
    let m = 0;
    for (const p of fmt.formatToParts(now)) {
      if (p.type === 'hour') h = Number(p.value);
      else if (p.type === 'minute') m = Number(p.value);
    }
    return h * 60 + m;
  };
}

function compileRule(r: ApprovalRuleConfig): CompiledRule {
  const w = r.when;
  const cheap: Condition[] = [];
  const content: Condition[] = [];
  if (w.callers) {
    const set = new Set(w.callers);
    cheap.push(({ principal: p }) => {
      const hit = [p.subject, p.email, p.keyName].find((v) => v !== undefined && set.has(v));
      return hit !== undefined ? `caller ${hit}` : null;
    });
  }
  if (w.groups) {
    const set = new Set(w.groups);
    cheap.push(({ principal: p }) => {
      const hit = p.groups?.find((g) => set.has(g));
      return hit !== undefined ? `group ${hit}` : null;
    });
  }
  if (w.time_of_day) {
    const { from, to, tz } = w.time_of_day;
    const a = minutesOf(from);
    const b = minutesOf(to);
    const clock = clockIn(tz);
    cheap.push(({ now }) => {
      const t = clock(now);
      // A window like 22:00-06:00 crosses midnight: it is the complement of 06:00-22:00.
      const inside = a < b ? t >= a && t < b : t >= a || t < b;
      return inside ? `time ${from}-${to} ${tz}` : null;
    });
  }
  if (w.models) {
    const match = anyGlob(w.models);
    cheap.push(({ body }) => {
      const model = body.field('model');
      return typeof model === 'string' && match(model) ? `model ${model}` : null;
    });
  }
  if (w.max_tokens_above !== undefined) {
    const limit = w.max_tokens_above;
    cheap.push(({ body }) => {
      const max = body.field('max_tokens');
      return typeof max === 'number' && max > limit ? `max_tokens ${max} > ${limit}` : null;
    });
  }
  if (w.tools_offered) {
    const match = anyGlob(w.tools_offered);
    content.push(({ content: c }) => {
      const hit = c.toolsOffered.find(match);
      return hit !== undefined ? `tool offered: ${hit}` : null;
    });
  }
  if (w.tools_used) {
    const match = anyGlob(w.tools_used);
    content.push(({ content: c }) => {
      const hit = c.toolsUsed.find(match);
      return hit !== undefined ? `tool used: ${hit}` : null;
    });
  }
  if (w.prompt_matches) {
    const res = w.prompt_matches.map((s) => ({ s, re: toRegExp(s) }));
    content.push(({ content: c }) => {
      const hit = res.find(({ re }) => re.test(c.text));
      return hit ? `prompt matches ${hit.s}` : null;
    });
  }
  if (w.tool_result_matches) {
    const res = w.tool_result_matches.map((s) => ({ s, re: toRegExp(s) }));
    content.push(({ content: c }) => {
      const hit = res.find(({ re }) => re.test(c.toolResults));
      return hit ? `tool result matches ${hit.s}` : null;
    });
  }
  return {
    name: r.name,
    action: r.action,
    message: r.message,
    timeoutMs: r.timeout ?? DEFAULT_HOLD_TIMEOUT_MS,
    approvalsRequired: r.approvals_required ?? 1,
    approverGroups: r.approver_groups ?? [],
    grantMaxMs: r.grant ?? 0,
    needsContent: content.length > 0,
    patterns: [...(w.prompt_matches ?? []), ...(w.tool_result_matches ?? [])].map(toRegExp),
    conditions: [...cheap, ...content],
  };
}

/** Compile a connection's rules once, at start-up. Deny rules are put first: a refusal wins over a hold. */
export function compileApprovalRules(rules: readonly ApprovalRuleConfig[] | undefined): CompiledRules {
  const compiled = (rules ?? []).map(compileRule);
  return { rules: [...compiled.filter((r) => r.action === 'deny'), ...compiled.filter((r) => r.action === 'hold')] };
}

export type Evaluation =
  | { readonly action: 'allow' }
  | {
      readonly action: 'deny';
      readonly rule: CompiledRule;
      readonly message: string;
      readonly matched: readonly string[];
    }
  | { readonly action: 'hold'; readonly rule: CompiledRule; readonly matched: readonly string[] };

const ALLOW: Evaluation = Object.freeze({ action: 'allow' });

/**
 * What the rules say about one call: the first matching deny rule, else the first matching hold rule, else allow.
 * `matched` describes why, for the record and for approvers (`model claude-opus-4-1`, `prompt matches /AKIA/`).
 *
 * A Message Batch (`{"requests": [{"custom_id", "params"}, …]}`) is judged request by request, as if each had been
 * sent on its own — a batch must not be a way around a rule: one denied request refuses the batch, else one held
 * request holds it; `matched` names the requests (`requests[3] (custom_id job-7): tool offered: Bash`).
 */
export function evaluate(
  rules: CompiledRules,
  principal: Principal,
  body: RequestBody,
  now: number = Date.now(),
): Evaluation {
  if (rules.rules.length === 0) return ALLOW;
  const batch = batchRequests(body);
  if (batch === null) return evaluateOne(rules, principal, body, now);
  let hold: { rule: CompiledRule; matched: string[] } | null = null;
  for (const [i, item] of batch.entries()) {
    const e = evaluateOne(rules, principal, RequestBody.fromValue(item.params), now);
    if (e.action === 'allow') continue;
    const where = `requests[${i}]${item.customId !== null ? ` (custom_id ${item.customId})` : ''}`;
    const matched = e.matched.map((m) => `${where}: ${m}`);
    if (e.action === 'deny') return { ...e, matched };
    if (hold === null) hold = { rule: e.rule, matched };
    else if (hold.rule === e.rule) hold.matched.push(...matched);
  }
  return hold === null ? ALLOW : { action: 'hold', rule: hold.rule, matched: hold.matched };
}

/** The requests of a Message Batch body, or null when the body is not one. */
function batchRequests(body: RequestBody): Array<{ customId: string | null; params: unknown }> | null {
  const requests = body.field('requests');
  if (!Array.isArray(requests) || requests.length === 0) return null;
  const out: Array<{ customId: string | null; params: unknown }> = [];
  for (const r of requests as unknown[]) {
    if (typeof r !== 'object' || r === null) return null;
    const { custom_id: customId, params } = r as { custom_id?: unknown; params?: unknown };
    if (typeof params !== 'object' || params === null) return null;
    out.push({ customId: typeof customId === 'string' ? customId : null, params });
  }
  return out;
}

function evaluateOne(rules: CompiledRules, principal: Principal, body: RequestBody, now: number): Evaluation {
  const ctx = new MatchContext(principal, body, now);
  for (const rule of rules.rules) {
    const matched: string[] = [];
    let all = true;
    for (const cond of rule.conditions) {
      const why = cond(ctx);
      if (why === null) {
        all = false;
        break;
      }
      matched.push(why);
    }
    if (!all) continue;
    if (rule.action === 'deny') {
      return { action: 'deny', rule, matched, message: rule.message ?? `refused by approval rule "${rule.name}"` };
    }
    return { action: 'hold', rule, matched };
  }
  return ALLOW;
}

/**
 * The error message recorded for a call a deny rule refused: the message the client received, after the rule's name
 * (quoted as a JSON string, so that deniedClientMessage can take it off again whatever the name holds).
 */
export function deniedRecordMessage(rule: string, message: string): string {
  return `rule ${JSON.stringify(rule)}: ${message}`;
}

/** The message the client received for a call recorded as refused by a deny rule: deniedRecordMessage undone. */
export function deniedClientMessage(recorded: string): string {
  const name = /^rule "(?:[^"\\]|\\.)*": /.exec(recorded);
  return name ? recorded.slice(name[0].length) : recorded;
}

/**
 * Labels, not text anyone wrote or read: `type` (`text`, `document`) and `media_type` would make
 * `prompt_matches: [text]` hit every request. Identifiers, signatures and binary data are left out by the masker's own
 * rule (`isOpaque`), so rules and masking agree on what is text.
 */
const LABELS = new Set(['type', 'media_type']);

function isToolResult(type: unknown): boolean {
  return type === 'tool_result' || (typeof type === 'string' && type.endsWith('_tool_result'));
}

/** How a value still to read is read: `DATA` free-form (a tool call's `input`), `IN_RESULT` inside a tool result. */
const DATA = 1;
const IN_RESULT = 2;

/**
 * Collects every piece of text in `system` or a message's `content`, at any depth: `text` blocks, plain-text and
 * content `document` sources, `search_result` blocks, thinking, citations, tool results (also into `toolResults`)
 * and tool calls' `input` — every string and object key there, and numbers, since a tool's input is whatever the
 * model wrote. Left out: block types and labels, identifiers and signatures, and binary data (`base64` sources,
 * `redacted_thinking`). A deny rule must see what goes upstream, whichever block it was put in.
 *
 * Iterative, so that a body nested thousands of levels deep cannot overflow the stack; two parallel stacks rather than
 * an object per value, since this reads every string of megabyte-sized conversations on the hot path. Children are
 * pushed last-first so that text comes out in document order (the excerpts shown to approvers read naturally).
 */
function collectText(root: unknown, text: string[], toolResults: string[], used: string[]): void {
  const values: unknown[] = [root];
  const modes: number[] = [0];
  for (;;) {
    const mode = modes.pop();
    if (mode === undefined) return;
    const value = values.pop();
    if (typeof value === 'string') {
      text.push(value);
      if (mode & IN_RESULT) toolResults.push(value);
    } else if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) {
        values.push(value[i]);
        modes.push(mode);
      }
    } else if (typeof value === 'object' && value !== null) {
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj);
      if (mode & DATA) {
        for (let i = keys.length - 1; i >= 0; i--) {
          const k = keys[i]!;
          values.push(obj[k], k);
          modes.push(mode, mode);
        }
        continue;
      }
      const type = obj['type'];
      const name = obj['name'];
      if ((type === 'tool_use' || type === 'server_tool_use') && typeof name === 'string') used.push(name);
      const inner = mode | (isToolResult(type) ? IN_RESULT : 0);
      for (let i = keys.length - 1; i >= 0; i--) {
        const k = keys[i]!;
        const v = obj[k];
        if (k === 'cache_control' || (typeof v === 'string' && (LABELS.has(k) || isOpaque(k, obj, v)))) continue;
        values.push(v);
        modes.push(k === 'input' ? inner | DATA : inner);
      }
    } else if (mode & DATA && (typeof value === 'number' || typeof value === 'boolean')) {
      const s = String(value);
      text.push(s);
      if (mode & IN_RESULT) toolResults.push(s);
    }
  }
}

/**
 * The text and tool names of a Messages API request body (anything else yields empty content). `text` is every
 * piece of text in `system` and `messages` (see {@link collectText}); `toolResults` the part of it inside tool results
 * (`tool_result` and server tools' `*_tool_result` blocks). Tool definitions (`tools`) give their names only.
 */
export function requestContent(json: unknown): RequestContent {
  const text: string[] = [];
  const toolResults: string[] = [];
  const used: string[] = [];
  const offered: string[] = [];
  if (typeof json === 'object' && json !== null) {
    const req = json as { system?: unknown; messages?: unknown; tools?: unknown };
    collectText(req.system, text, toolResults, used);
    if (Array.isArray(req.messages)) {
      for (const m of req.messages as unknown[]) {
        if (typeof m === 'object' && m !== null)
          collectText((m as { content?: unknown }).content, text, toolResults, used);
      }
    }
    if (Array.isArray(req.tools)) {
      for (const t of req.tools as Array<{ name?: unknown }>) if (typeof t?.name === 'string') offered.push(t.name);
    }
  }
  return { text: text.join('\n'), toolResults: toolResults.join('\n'), toolsOffered: offered, toolsUsed: used };
}
