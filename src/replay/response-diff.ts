/**
 * How a fresh answer differs from the recorded one: a readable unified-style text and a machine-readable list.
 *
 * Compared: the HTTP status, an error's type and message, the model, each content block (text and thinking line by
 * line; a tool call as its name and pretty-printed input; other blocks as JSON), stop_reason and each usage field.
 * Not compared: ids the API mints afresh on every call (message id, tool_use ids) and opaque signatures, which differ
 * every time without the answer changing.
 */
import { diffLines, renderDiff } from './line-diff.js';

/** One side of the comparison: what a response amounted to. */
export interface ResponseSide {
  readonly status: number | null;
  /** The Messages API message (assembled from a stream, or the JSON body); `null` when there is none. */
  readonly message: unknown;
  readonly error?: { readonly type: string; readonly message: string } | null;
}

export type ResponseChange =
  | { readonly kind: 'status'; readonly recorded: number | null; readonly resent: number | null }
  | { readonly kind: 'error'; readonly recorded: string | null; readonly resent: string | null }
  | { readonly kind: 'model'; readonly recorded: string | null; readonly resent: string | null }
  | {
      readonly kind: 'content';
      /** Index of the block in the recorded message (or the resent one, for an added block). */
      readonly index: number;
      readonly change: 'added' | 'removed' | 'changed';
      /** The block as compared: its type line and its lines (`null` when absent on that side). */
      readonly recorded: readonly string[] | null;
      readonly resent: readonly string[] | null;
    }
  | { readonly kind: 'stop_reason'; readonly recorded: string | null; readonly resent: string | null }
  | { readonly kind: 'usage'; readonly field: string; readonly recorded: unknown; readonly resent: unknown };

export interface ResponseDiff {
  /** No change at all. */
  readonly same: boolean;
  readonly changes: readonly ResponseChange[];
  /** Unified-style text, `---`/`+++` header and one `@@ … @@` hunk per change; empty when `same`. */
  readonly text: string;
}

interface Block {
  readonly type?: unknown;
  readonly [k: string]: unknown;
}

/** Compare the recorded response with a resent one. */
export function diffResponses(recorded: ResponseSide, resent: ResponseSide): ResponseDiff {
  const changes: ResponseChange[] = [];
  const hunks: string[] = [];
  const scalar = (name: string, a: unknown, b: unknown): boolean => {
    if (a === b) return false;
    hunks.push(`@@ ${name} @@`, `-${show(a)}`, `+${show(b)}`);
    return true;
  };

  if (scalar('status', recorded.status, resent.status)) {
    changes.push({ kind: 'status', recorded: recorded.status, resent: resent.status });
  }
  const errA = errorText(recorded.error);
  const errB = errorText(resent.error);
  if (scalar('error', errA, errB)) changes.push({ kind: 'error', recorded: errA, resent: errB });

  const a = asMessage(recorded.message);
  const b = asMessage(resent.message);
  const modelA = typeof a?.model === 'string' ? a.model : null;
  const modelB = typeof b?.model === 'string' ? b.model : null;
  if (scalar('model', modelA, modelB)) changes.push({ kind: 'model', recorded: modelA, resent: modelB });

  const blocksA = blocksOf(a);
  const blocksB = blocksOf(b);
  for (let i = 0; i < Math.max(blocksA.length, blocksB.length); i++) {
    const la = i < blocksA.length ? blockLines(blocksA[i]!) : null;
    const lb = i < blocksB.length ? blockLines(blocksB[i]!) : null;
    if (la && lb && la.length === lb.length && la.every((l, k) => l === lb[k])) continue;
    const change = la === null ? 'added' : lb === null ? 'removed' : 'changed';
    changes.push({ kind: 'content', index: i, change, recorded: la, resent: lb });
    hunks.push(
      `@@ content[${i}] ${blockTitle(i < blocksA.length ? blocksA[i]! : undefined, i < blocksB.length ? blocksB[i]! : undefined)} @@`,
    );
    hunks.push(...renderDiff(diffLines(la ?? [], lb ?? [])));
  }

  const stopA = typeof a?.stop_reason === 'string' ? a.stop_reason : null;
  const stopB = typeof b?.stop_reason === 'string' ? b.stop_reason : null;
  if (scalar('stop_reason', stopA, stopB)) changes.push({ kind: 'stop_reason', recorded: stopA, resent: stopB });

  const usageA = asRecord(a?.usage) ?? {};
  const usageB = asRecord(b?.usage) ?? {};
  for (const field of new Set([...Object.keys(usageA), ...Object.keys(usageB)])) {
    const va = usageA[field];
    const vb = usageB[field];
    if (JSON.stringify(va) === JSON.stringify(vb)) continue;
    changes.push({ kind: 'usage', field, recorded: va ?? null, resent: vb ?? null });
    hunks.push(`@@ usage.${field} @@`, `-${show(va)}`, `+${show(vb)}`);
  }

  const same = changes.length === 0;
  return { same, changes, text: same ? '' : ['--- recorded', '+++ resent', ...hunks, ''].join('\n') };
}

/** The lines a block is compared by: a type line (tool name included) and its content. */
function blockLines(block: Block): string[] {
  switch (block.type) {
    case 'text':
      return String(block['text'] ?? '').split('\n');
    case 'thinking':
      return ['(thinking)', ...String(block['thinking'] ?? '').split('\n')];
    case 'redacted_thinking':
      return ['(redacted thinking)'];
    case 'tool_use':
    case 'server_tool_use':
      return [
        `${String(block.type)} ${String(block['name'])}`,
        ...JSON.stringify(block['input'] ?? {}, null, 2).split('\n'),
      ];
    default: {
      const { id: _id, tool_use_id: _toolUseId, ...rest } = block;
      return [`(${String(block.type)})`, ...JSON.stringify(rest, null, 2).split('\n')];
    }
  }
}

function blockTitle(a: Block | undefined, b: Block | undefined): string {
  const title = (x: Block | undefined): string =>
    x === undefined ? '(none)' : typeof x['name'] === 'string' ? `${String(x.type)} ${x['name']}` : String(x.type);
  const ta = title(a);
  const tb = title(b);
  return ta === tb ? ta : `${ta} → ${tb}`;
}

function asMessage(v: unknown): Record<string, unknown> | null {
  const m = asRecord(v);
  return m && Array.isArray(m['content']) ? m : null;
}

function blocksOf(m: Record<string, unknown> | null): Block[] {
  const content = m?.['content'];
  return Array.isArray(content) ? content.filter((b): b is Block => asRecord(b) !== null) : [];
}

function asRecord(v: unknown): Record<string, unknown> | null {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

function errorText(e: ResponseSide['error']): string | null {
  return e ? `${e.type}: ${e.message}` : null;
}

function show(v: unknown): string {
  if (v === undefined || v === null) return '(none)';
  return typeof v === 'string' ? v : JSON.stringify(v);
}
