/**
 * What approvers see of a held call: enough to decide (model, limits, tools, the latest turn, where a rule's pattern
 * matched), masked, and small. The full request is on the chain under the same exchange id, masked by the recorder;
 * the approval record does not copy it.
 *
 * Masking runs over the whole request before anything is cut, so an excerpt never ends in the middle of a secret
 * that the masker would no longer recognise.
 */
import { findingTypes, type Masker } from '../recorder/masking/masker.js';
import { requestContent } from './approval-rules.js';

/** The masked summary of a held request, as stored in `approval.held` and sent to webhooks. */
export interface ApprovalRequestSummary {
  readonly model: string | null;
  readonly maxTokens: number | null;
  readonly stream: boolean;
  readonly messages: number;
  readonly toolsOffered: readonly string[];
  readonly toolsUsed: readonly string[];
  /** The end of the latest user turn (text and tool results), masked. */
  readonly lastTurn: string;
  /** Text around each place a rule pattern matched, masked. */
  readonly excerpts: readonly string[];
  /** Masking detector types found in the request (`aws_access_key`, …). */
  readonly masked: readonly string[];
}

const LAST_TURN_CHARS = 600;
const EXCERPT_SIDE = 80;
const MAX_EXCERPTS = 3;
const MAX_TOOLS = 64;

function clip(text: string, max: number): string {
  return text.length <= max ? text : `…${text.slice(text.length - max)}`;
}

function lastUserTurn(json: unknown): string {
  const messages = (json as { messages?: unknown } | null)?.messages;
  if (!Array.isArray(messages)) return '';
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as { role?: unknown } | null;
    if (m?.role === 'user') return requestContent({ messages: [m] }).text;
  }
  return '';
}

/**
 * Summarise a Messages API request for approvers. `patterns` are the rule's content patterns: where they still match
 * after masking, the text around the match is shown (a pattern that matched a secret no longer matches once the secret
 * is masked, which is the point).
 */
export function summarizeRequest(
  json: unknown,
  masker: Masker,
  patterns: readonly RegExp[] = [],
): ApprovalRequestSummary {
  // A Message Batch: its first request stands for it (the approval's `matched` names every request that matched).
  const requests = (json as { requests?: unknown } | null)?.requests;
  const first = Array.isArray(requests) ? (requests[0] as { params?: unknown } | undefined)?.params : undefined;
  if (typeof first === 'object' && first !== null) {
    const s = summarizeRequest(first, masker, patterns);
    const n = (requests as unknown[]).length;
    return { ...s, lastTurn: `[Message Batch of ${n} request${n === 1 ? '' : 's'}; the first:] ${s.lastTurn}` };
  }
  const { value, findings } = masker.maskJson(json);
  const req = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const content = requestContent(value);
  const excerpts: string[] = [];
  for (const re of patterns) {
    if (excerpts.length >= MAX_EXCERPTS) break;
    const m = new RegExp(re.source, re.flags.replace(/[gy]/g, '')).exec(content.text);
    if (!m) continue;
    const start = Math.max(0, m.index - EXCERPT_SIDE);
    const end = Math.min(content.text.length, m.index + m[0].length + EXCERPT_SIDE);
    excerpts.push(`${start > 0 ? '…' : ''}${content.text.slice(start, end)}${end < content.text.length ? '…' : ''}`);
  }
  return {
    model: typeof req.model === 'string' ? req.model : null,
    maxTokens: typeof req.max_tokens === 'number' ? req.max_tokens : null,
    stream: req.stream === true,
    messages: Array.isArray(req.messages) ? req.messages.length : 0,
    toolsOffered: content.toolsOffered.slice(0, MAX_TOOLS),
    toolsUsed: [...new Set(content.toolsUsed)].slice(0, MAX_TOOLS),
    lastTurn: clip(lastUserTurn(value), LAST_TURN_CHARS),
    excerpts,
    masked: findingTypes(findings),
  };
}
